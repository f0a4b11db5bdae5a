// TAP as the lab speaks it: the guest runner writes it, the host runner reads
// the guest's and writes the whole run's (which scripts/count-results.mjs
// counts through its `# pass N` / `# fail N` lines).

import { CaseReport } from './profile';

/** Reads `ok N - name`, `not ok N - name # SKIP why`, and the indented lines under a result. */
export function parseTap(text: string): CaseReport[] {
  const cases: { name: string; ok: boolean; skip?: string; detail: string[] }[] = [];
  for (const line of text.split('\n')) {
    const m = /^(not ok|ok)\s+\d+\s*(?:-\s*)?(.*)$/.exec(line);
    if (m) {
      const skip = /\s#\s*SKIP\b\s*(.*)$/i.exec(m[2]!);
      const name = skip ? m[2]!.slice(0, skip.index) : m[2]!;
      cases.push({ name: name.trim(), ok: m[1] === 'ok', ...(skip ? { skip: skip[1]!.trim() || 'skipped' } : {}), detail: [] });
    } else if (/^\s+\S/.test(line) && !/^\s+(---|\.\.\.)\s*$/.test(line) && cases.length > 0) {
      cases.at(-1)!.detail.push(line.trim());
    }
  }
  return cases.map((c) => (c.detail.length > 0 ? c : { name: c.name, ok: c.ok, ...(c.skip ? { skip: c.skip } : {}) }));
}

/** Writes TAP for `cases`, numbered from 1, closing with the plan and the counts. */
export function formatTap(cases: readonly CaseReport[]): string {
  const out = ['TAP version 13'];
  cases.forEach((c, i) => {
    const name = c.name.replace(/#/g, '\\#').replace(/\n/g, ' ');
    out.push(`${c.ok ? 'ok' : 'not ok'} ${i + 1} - ${name}${c.skip ? ` # SKIP ${c.skip}` : ''}`);
    if (c.detail && c.detail.length > 0) {
      out.push('  ---');
      for (const d of c.detail) out.push(`  ${d}`);
      out.push('  ...');
    }
  });
  const skipped = cases.filter((c) => c.skip).length;
  const failed = cases.filter((c) => !c.skip && !c.ok).length;
  out.push(`1..${cases.length}`);
  out.push(`# pass ${cases.length - skipped - failed}`);
  if (skipped > 0) out.push(`# skip ${skipped}`);
  out.push(`# fail ${failed}`);
  return `${out.join('\n')}\n`;
}
