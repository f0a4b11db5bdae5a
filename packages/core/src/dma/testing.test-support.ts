// Test support for the DMA policy tests: a small guest, a reference model of
// the guest's grant computed independently of the translator, and a page view
// of a container. Not part of the package's API.
import type { GuestMemoryLayout } from './guest';
import type { ModelMapping } from './type1-model';

export const P = 4096n;

/** Page-level view of a container: IOVA page -> "hvaPage/flags". */
export function pageView(maps: readonly ModelMapping[]): Map<bigint, string> {
  const out = new Map<bigint, string>();
  for (const m of maps) for (let o = 0n; o < m.size; o += P) out.set((m.iova + o) / P, `${(m.vaddr + o) / P}/${m.flags}`);
  return out;
}

/** Host address of a guest physical address in `layout` (which must be RAM). */
export function hvaOf(layout: GuestMemoryLayout, gpa: bigint): bigint | undefined {
  for (const r of layout.regions) if (gpa >= r.gpa && gpa < r.gpa + r.size) return r.hva! + (gpa - r.gpa);
  return undefined;
}

/** The guest's grant as a page view: identity of all RAM, or a domain's pages. */
export class GuestReference {
  enabled: boolean;
  readonly domains = new Map<number, Map<bigint, { gpa: bigint; perm: number }>>();
  readonly attached = new Map<number, number>();

  constructor(
    readonly layout: GuestMemoryLayout,
    enabled: boolean,
  ) {
    this.enabled = enabled;
  }

  private dom(d: number): Map<bigint, { gpa: bigint; perm: number }> {
    let m = this.domains.get(d);
    if (!m) this.domains.set(d, (m = new Map()));
    return m;
  }

  /** Apply a map; false if the guest's own rules refuse it (overlap, not RAM). */
  map(d: number, iova: bigint, gpa: bigint, size: bigint, perm: number): boolean {
    const t = this.dom(d);
    for (let o = 0n; o < size; o += P) if (t.has((iova + o) / P) || hvaOf(this.layout, gpa + o) === undefined) return false;
    for (let o = 0n; o < size; o += P) t.set((iova + o) / P, { gpa: gpa + o, perm });
    return true;
  }

  unmap(d: number, iova: bigint, size: bigint): void {
    const t = this.dom(d);
    for (let o = 0n; o < size; o += P) t.delete((iova + o) / P);
  }

  /** What group g's container must hold. */
  grant(group: number): Map<bigint, string> {
    const out = new Map<bigint, string>();
    if (!this.enabled) {
      for (const r of this.layout.regions) for (let o = 0n; o < r.size; o += P) out.set((r.gpa + o) / P, `${(r.hva! + o) / P}/3`);
      return out;
    }
    const d = this.attached.get(group);
    if (d === undefined) return out;
    for (const [page, { gpa, perm }] of this.dom(d)) out.set(page, `${hvaOf(this.layout, gpa)! / P}/${perm}`);
    return out;
  }
}

/** Whether every page of `a` is in `b` with the same value. */
export function within(a: Map<bigint, string>, b: Map<bigint, string>): boolean {
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

export function sameView(a: Map<bigint, string>, b: Map<bigint, string>): boolean {
  return a.size === b.size && within(a, b);
}

import type { GuestIommuOp } from './ops';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Apply one op to the reference (each-op semantics); false if the guest's rules refuse it. */
export function applyToReference(ref: GuestReference, op: GuestIommuOp): boolean {
  switch (op.op) {
    case 'map':
      return ref.map(op.domain, op.iova, op.gpa, op.size, op.perm);
    case 'unmap':
      ref.unmap(op.domain, op.iova, op.size);
      return true;
    case 'attach':
      ref.attached.set(op.group, op.domain);
      return true;
    case 'detach':
      ref.attached.delete(op.group);
      return true;
    case 'enable':
    case 'disable':
      ref.enabled = op.op === 'enable';
      return true;
    default:
      return true;
  }
}

/** The repository's root: the folder holding pnpm-workspace.yaml above this file. */
export function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'pnpm-workspace.yaml'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no pnpm-workspace.yaml above ${__dirname}`);
    dir = up;
  }
  return dir;
}

/** The real recording, committed whole beside its excerpt (see TRACE-FORMAT.md). */
export const FULL_RECORDING = 'guest-iommu-e1000e-strict-6.1.txt';

/** The committed excerpt of the recording. */
export function fixturePath(file: string): string {
  return path.join(__dirname, 'fixtures', file);
}
