// Holds the mock to the kernel: reads the two results files the conformance
// suites (crates/vfio-lab) wrote, one per backend, and turns them into one
// case report per conformance case. Both lab profiles (x86, pseries) read
// and compare their results here: the Rust side writes one format for every
// suite (crates/vfio-lab/src/report.rs). A case passes when both sides ran it
// to its end, every check held on each side, and both recorded the same
// steps (each call's result, errno and returned values). A disagreement
// prints both sides.

import { CaseReport } from './profile';

export const RESULTS_FORMAT = 1;

export interface Step {
  readonly call: string;
  readonly result: string;
  readonly value?: string;
}

export interface Check {
  readonly what: string;
  readonly ok: boolean;
  readonly detail?: string;
}

export interface CaseLine {
  readonly kind: 'case';
  readonly name: string;
  readonly steps: readonly Step[];
  readonly checks: readonly Check[];
  readonly aborted: string | null;
}

export interface ResultsFile {
  readonly backend: string;
  readonly suite: string;
  readonly cases: readonly CaseLine[];
  /** False when the file has no `end` line: the run was cut short. */
  readonly complete: boolean;
}

/**
 * Parses a results file; throws with the file's label and line number on
 * malformed input. A results file read from a guest console may end its
 * lines with CR; the run is complete only when the `end` line counts the
 * cases read (a line lost on the way makes the run incomplete).
 */
export function parseResults(text: string, label: string): ResultsFile {
  let backend = '';
  let suite = '';
  let complete = false;
  const cases: CaseLine[] = [];
  text.split('\n').forEach((rawLine, i) => {
    const raw = rawLine.replace(/\r$/, '').trim();
    if (raw === '') return;
    let line: { kind?: string; [k: string]: unknown };
    try {
      line = JSON.parse(raw) as typeof line;
    } catch {
      throw new Error(`${label} line ${i + 1} is not JSON: ${raw.slice(0, 80)}`);
    }
    switch (line.kind) {
      case 'run':
        if (line.format !== RESULTS_FORMAT) {
          throw new Error(`${label} is results format ${String(line.format)}; this runner reads format ${RESULTS_FORMAT}`);
        }
        backend = String(line.backend);
        suite = String(line.suite);
        break;
      case 'case':
        cases.push(line as unknown as CaseLine);
        break;
      case 'end':
        complete = line.cases === cases.length;
        break;
      case 'host':
        break;
      default:
        throw new Error(`${label} line ${i + 1} has an unknown kind '${String(line.kind)}'`);
    }
  });
  if (backend === '') throw new Error(`${label} has no 'run' line: it is not a conformance results file`);
  return { backend, suite, cases, complete };
}

function stepText(s: Step | undefined): string {
  if (s === undefined) return '(no such step)';
  return `${s.result}${s.value ? ` ${s.value}` : ''}`;
}

/** Why `a` and `b` disagree, as lines naming each side, or [] when they agree. */
export function compareSteps(a: readonly Step[], b: readonly Step[], aName: string, bName: string): string[] {
  const width = Math.max(aName.length, bName.length);
  const pad = (s: string): string => s.padEnd(width);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x?.call === y?.call && x?.result === y?.result && (x?.value ?? '') === (y?.value ?? '')) continue;
    const out = [`step ${i + 1} differs:`];
    if (x?.call === y?.call) {
      out.push(`  ${x?.call}`, `    ${pad(aName)}: ${stepText(x)}`, `    ${pad(bName)}: ${stepText(y)}`);
    } else {
      out.push(`  ${pad(aName)}: ${x?.call ?? '(ended)'} -> ${stepText(x)}`, `  ${pad(bName)}: ${y?.call ?? '(ended)'} -> ${stepText(y)}`);
    }
    const rest = Math.max(a.length, b.length) - i - 1;
    if (rest > 0) out.push(`  (${rest} later step${rest === 1 ? '' : 's'} not compared)`);
    return out;
  }
  return [];
}

/** What went wrong in one side's run of a case: where it stopped early, each check that failed. */
export function caseProblems(side: string, line: CaseLine): string[] {
  const out = line.aborted !== null ? [`${side}: stopped early: ${line.aborted}`] : [];
  for (const check of line.checks.filter((k) => !k.ok)) {
    out.push(`${side}: check failed: ${check.what}${check.detail ? ` (${check.detail})` : ''}`);
  }
  return out;
}

export interface CompareOptions {
  /**
   * A stop both sides make at the same step for the same reason, matching
   * this, is agreement, not a problem: on a host without MSI isolation every
   * case that needs an IOMMU must stop where the kernel refuses it
   * (`SET_IOMMU TYPE1v2 failed with EPERM`).
   */
  readonly expectedStop?: RegExp;
}

/** One report per case, in the reference side's order, then cases only the other side ran. */
export function compareResults(reference: ResultsFile, candidate: ResultsFile, options: CompareOptions = {}): CaseReport[] {
  const ref = reference.backend;
  const cand = candidate.backend;
  const reports: CaseReport[] = [];
  const byName = new Map(candidate.cases.map((c) => [c.name, c]));
  const seen = new Set<string>();
  for (const r of reference.cases) {
    seen.add(r.name);
    const c = byName.get(r.name);
    const detail: string[] = [];
    if (c === undefined) {
      detail.push(`the ${cand} run has no result for this case${candidate.complete ? '' : ` (the ${cand} run was cut short)`}`);
    } else {
      const steps = compareSteps(r.steps, c.steps, ref, cand);
      const sameExpectedStop =
        options.expectedStop !== undefined && r.aborted !== null && r.aborted === c.aborted && options.expectedStop.test(r.aborted) && steps.length === 0;
      if (!sameExpectedStop) detail.push(...caseProblems(ref, r), ...caseProblems(cand, c));
      else detail.push(...caseProblems(ref, { ...r, aborted: null }), ...caseProblems(cand, { ...c, aborted: null }));
      detail.push(...steps);
    }
    reports.push(detail.length === 0 ? { name: r.name, ok: true } : { name: r.name, ok: false, detail });
  }
  for (const c of candidate.cases.filter((x) => !seen.has(x.name))) {
    reports.push({ name: c.name, ok: false, detail: [`the ${ref} run has no result for this case${reference.complete ? '' : ` (the ${ref} run was cut short)`}`] });
  }
  for (const f of [reference, candidate].filter((x) => !x.complete)) {
    reports.push({ name: `the ${f.backend} run finishes`, ok: false, detail: [`the ${f.backend} results end without an 'end' line: the run crashed or was killed`] });
  }
  return reports;
}

/**
 * What a host's facts make every IOMMU-needing case stop at: without MSI
 * isolation and without allow_unsafe_interrupts, the kernel refuses the
 * container's IOMMU (vfio_iommu_type1_attach_group: EPERM) at SET_IOMMU,
 * or at SET_CONTAINER for a group joining a container that has one.
 */
export function expectedStopFor(
  facts: { readonly msiIsolated: boolean; readonly allowUnsafeInterrupts: boolean },
  topology: { readonly bridgeDriver?: string } = {},
): CompareOptions {
  const stops: string[] = [];
  if (!facts.msiIsolated && !facts.allowUnsafeInterrupts) stops.push('(SET_IOMMU|Container::set_iommu)( \\S+)? failed with EPERM');
  // A bridge driven by a host driver (arm64's shpchp) makes its group not
  // viable: every case on that group stops at SET_CONTAINER with EPERM.
  if (topology.bridgeDriver !== undefined) stops.push('(GROUP_SET_CONTAINER|Group::set_container) failed with EPERM');
  return stops.length === 0 ? {} : { expectedStop: new RegExp(`^(${stops.join('|')})$`) };
}
