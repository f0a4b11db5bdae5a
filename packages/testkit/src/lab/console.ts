// The guest kernel's own verdict on a lab run, read from its console: an
// Oops, BUG, WARNING or panic while the suite drove VFIO means the run
// cannot be trusted whatever the cases said (a mock that agrees with a
// kernel that warned proves little). Both profiles judge their console here.

import { CaseReport } from './profile';

/**
 * Lines the kernel prints when something went wrong: oops/BUG/WARN
 * (kernel/panic.c `__warn`, lib/bug.c `report_bug`), the x86 and powerpc
 * fault messages (arch/x86/kernel/traps.c, arch/powerpc/mm/fault.c), the
 * stack dump that follows them, and panic. QEMU's own `warning:` lines are
 * lower case and do not match.
 */
const PROBLEM = /\b(Oops|BUG:|WARNING:|general protection fault|Kernel panic|Unable to handle kernel|Call Trace:)/;

/**
 * A kernel warning one lab case causes on purpose, because the kernel
 * behaviour it checks ends in it: allowed once (the kernel's WARN_ON_ONCE),
 * only after the case has announced it on the console, and only as a whole
 * warning block (from its `WARNING:` line to `---[ end trace`) whose
 * `WARNING:` line matches `at`. Anything else stays a problem.
 */
export interface ExpectedWarning {
  /** Matches the block's `WARNING: CPU: n PID: n at <file>:<line> <function>+...` line. */
  readonly at: RegExp;
  /** The console line the case prints before the warning can come. */
  readonly after: string;
  /** Why the kernel prints it (the source that does), for the report. */
  readonly why: string;
}

interface Scan {
  readonly problems: string[];
  readonly expected: string[];
}

function scan(consoleText: string, expected: readonly ExpectedWarning[]): Scan {
  const lines = consoleText.split(/\r?\n/);
  const skip = new Set<number>();
  const seen: string[] = [];
  for (const e of expected) {
    const announced = lines.findIndex((l) => l.includes(e.after));
    if (announced < 0) continue;
    const start = lines.findIndex((l, i) => i > announced && /WARNING:/.test(l) && e.at.test(l));
    if (start < 0) continue;
    const end = lines.findIndex((l, i) => i > start && l.includes('---[ end trace'));
    if (end < 0) continue;
    // The `[ cut here ]` line report_bug prints before the block belongs to it.
    const first = start > 0 && lines[start - 1]!.includes('[ cut here ]') ? start - 1 : start;
    for (let i = first; i <= end; i++) skip.add(i);
    seen.push(`expected (${e.why}): ${lines[start]!.trim()}`);
  }
  const problems = lines
    .filter((l, i) => !skip.has(i) && PROBLEM.test(l))
    .map((l) => l.trim())
    .slice(0, 20);
  return { problems, expected: seen };
}

/** The first 20 problem lines of a console, trimmed (none of `expected`). */
export function consoleProblems(consoleText: string, expected: readonly ExpectedWarning[] = []): string[] {
  return scan(consoleText, expected).problems;
}

/**
 * One report: passes when the console shows no problem line, else quotes
 * them; an expected warning that came is named in the detail either way.
 */
export function consoleProblemsReport(consoleText: string, expected: readonly ExpectedWarning[] = []): CaseReport {
  const name = 'the guest kernel logged no Oops, BUG, WARNING or panic';
  const r = scan(consoleText, expected);
  const detail = [...r.problems, ...r.expected];
  return r.problems.length === 0 ? { name, ok: true, ...(detail.length > 0 ? { detail } : {}) } : { name, ok: false, detail };
}
