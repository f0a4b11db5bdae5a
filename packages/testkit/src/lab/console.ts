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

/** The first 20 problem lines of a console, trimmed. */
export function consoleProblems(consoleText: string): string[] {
  return consoleText
    .split(/\r?\n/)
    .filter((l) => PROBLEM.test(l))
    .map((l) => l.trim())
    .slice(0, 20);
}

/** One report: passes when the console shows no problem line, else quotes them. */
export function consoleProblemsReport(consoleText: string): CaseReport {
  const name = 'the guest kernel logged no Oops, BUG, WARNING or panic';
  const problems = consoleProblems(consoleText);
  return problems.length === 0 ? { name, ok: true } : { name, ok: false, detail: problems };
}
