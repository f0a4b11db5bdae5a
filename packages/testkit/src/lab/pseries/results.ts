// The sPAPR suite's results (crates/vfio-lab/src/report.rs: JSON lines, one
// object per line) and their comparison: the same case run on the kernel in
// the pseries guest and on vfio-core's mock on the host must record the same
// steps; each side's own checks must hold. Cases named `kernel-only: ...`
// (DMA through edu, sysfs discovery) exist only in the guest.

import { CaseReport } from '../profile';

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

export interface Results {
  readonly backend: string;
  readonly cases: readonly CaseLine[];
  /** Whether the `end` line came, with the number of cases it counts. */
  readonly complete: boolean;
}

export const KERNEL_ONLY = 'kernel-only: ';

/** Parses a results file; lines that are not JSON objects (console noise) are errors naming their number. */
export function parseResults(text: string): Results {
  let backend = '';
  let complete = false;
  const cases: CaseLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '') return;
    let obj: { kind?: string; [k: string]: unknown };
    try {
      obj = JSON.parse(line) as typeof obj;
    } catch {
      throw new Error(`results line ${i + 1} is not JSON: ${line.slice(0, 120)}`);
    }
    if (obj.kind === 'run') backend = String(obj.backend);
    else if (obj.kind === 'case') cases.push(obj as unknown as CaseLine);
    else if (obj.kind === 'end') complete = obj.cases === cases.length;
  });
  return { backend, cases, complete };
}

function stepText(s: Step | undefined): string {
  if (s === undefined) return '(no step)';
  return `${s.call} -> ${s.result}${s.value ? ` ${s.value}` : ''}`;
}

function sameStep(a: Step | undefined, b: Step | undefined): boolean {
  return a !== undefined && b !== undefined && a.call === b.call && a.result === b.result && (a.value ?? '') === (b.value ?? '');
}

function failedChecks(side: string, c: CaseLine): string[] {
  return c.checks.filter((k) => !k.ok).map((k) => `${side} check failed: ${k.what}${k.detail ? ` (${k.detail})` : ''}`);
}

/**
 * One report per kernel case (and one per mock case the kernel lacks):
 * ok when the steps agree one for one, neither side aborted, and every
 * check held. A disagreement lists both sides step by step.
 */
export function compareResults(kernel: Results, mock: Results): CaseReport[] {
  const reports: CaseReport[] = [];
  const mockByName = new Map(mock.cases.map((c) => [c.name, c]));
  for (const k of kernel.cases) {
    if (k.name.startsWith(KERNEL_ONLY)) {
      const detail = [...failedChecks('kernel', k), ...(k.aborted ? [`kernel aborted: ${k.aborted}`] : [])];
      const passed = k.checks.filter((c) => c.ok).map((c) => `held: ${c.what}`);
      reports.push({ name: k.name.slice(KERNEL_ONLY.length), ok: detail.length === 0 && k.checks.length > 0, detail: detail.length > 0 ? [...detail, ...passed] : passed });
      continue;
    }
    const m = mockByName.get(k.name);
    mockByName.delete(k.name);
    if (m === undefined) {
      reports.push({ name: `conformance: ${k.name}`, ok: false, detail: ['the mock run has no such case'] });
      continue;
    }
    const detail: string[] = [];
    const n = Math.max(k.steps.length, m.steps.length);
    let agree = k.steps.length === m.steps.length;
    const table: string[] = [];
    for (let i = 0; i < n; i++) {
      const same = sameStep(k.steps[i], m.steps[i]);
      agree &&= same;
      table.push(`${same ? '  ' : '!='} kernel: ${stepText(k.steps[i])}`);
      if (!same) table.push(`   mock:   ${stepText(m.steps[i])}`);
    }
    if (!agree) detail.push('kernel and mock disagree:', ...table);
    if (k.aborted) detail.push(`kernel aborted: ${k.aborted}`);
    if (m.aborted) detail.push(`mock aborted: ${m.aborted}`);
    detail.push(...failedChecks('kernel', k), ...failedChecks('mock', m));
    reports.push({ name: `conformance: ${k.name}`, ok: detail.length === 0, ...(detail.length > 0 ? { detail } : {}) });
  }
  for (const m of mockByName.values()) {
    if (!m.name.startsWith(KERNEL_ONLY)) {
      reports.push({ name: `conformance: ${m.name}`, ok: false, detail: ['the kernel run has no such case (the guest stopped early?)'] });
    }
  }
  return reports;
}
