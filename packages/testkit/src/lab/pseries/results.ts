// How the pseries profile compares the sPAPR suite's results: the same case
// run on the kernel in the pseries guest and on vfio-core's mock on the host
// goes through the lab's one comparison (../conformance.ts, which also reads
// the files). What is pseries' own: cases named `kernel-only: ...` (DMA
// through edu, sysfs discovery) exist only in the guest, have nothing to be
// compared with, and pass on their own checks.

import { caseProblems, CaseLine, compareResults as compareRuns, ResultsFile } from '../conformance';
import { CaseReport } from '../profile';

export const KERNEL_ONLY = 'kernel-only: ';

const isKernelOnly = (c: CaseLine): boolean => c.name.startsWith(KERNEL_ONLY);

/** A kernel-only case passes when it ran to its end and had checks, all of which held; the held ones are listed. */
function kernelOnlyReport(k: CaseLine): CaseReport {
  const detail = caseProblems('kernel', k);
  const passed = k.checks.filter((c) => c.ok).map((c) => `held: ${c.what}`);
  return { name: k.name.slice(KERNEL_ONLY.length), ok: detail.length === 0 && k.checks.length > 0, detail: [...detail, ...passed] };
}

/**
 * One report per conformance case the kernel or the mock ran (named
 * `conformance: <case>`), then one per kernel-only case.
 */
export function compareResults(kernel: ResultsFile, mock: ResultsFile): CaseReport[] {
  const compared = compareRuns(
    { ...kernel, cases: kernel.cases.filter((c) => !isKernelOnly(c)) },
    { ...mock, cases: mock.cases.filter((c) => !isKernelOnly(c)) },
  );
  return [...compared.map((r) => ({ ...r, name: `conformance: ${r.name}` })), ...kernel.cases.filter(isKernelOnly).map(kernelOnlyReport)];
}
