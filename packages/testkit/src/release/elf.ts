// What a built addon is, read with binutils' readelf (a .node is an ELF
// shared object): its class, byte order and machine, that it is a shared
// object linked dynamically against glibc (napi addons are dlopen()ed by
// Node, so a static C runtime cannot be in one), the newest glibc symbol
// version it needs (the oldest glibc it runs on), and that it exports napi's
// entry point, napi_register_module_v1.

import { spawnSync } from 'node:child_process';
import type { Target } from './targets';

export interface ElfFacts {
  readonly class: string;
  readonly data: string;
  readonly type: string;
  readonly machine: string;
  /** e_flags as readelf prints them (`0x2, abiv2` for POWER's ELFv2 ABI). */
  readonly flags: string;
  readonly needed: readonly string[];
  /** GLIBC_x.y versions the file needs, oldest first. */
  readonly glibcVersions: readonly string[];
  /** Symbols the file defines in its dynamic symbol table. */
  readonly exports: readonly string[];
}

function readelf(args: readonly string[], file: string): string {
  const r = spawnSync('readelf', [...args, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`readelf ${args.join(' ')} ${file} failed: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** Compares GLIBC_2.17 and GLIBC_2.34 as versions, not as strings. */
export function compareGlibc(a: string, b: string): number {
  const pa = a.replace(/^GLIBC_/, '').split('.').map(Number);
  const pb = b.replace(/^GLIBC_/, '').split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Parses `readelf -h`, `readelf -d`, `readelf -V -W` and `readelf --dyn-syms -W` output. */
export function parseElf(header: string, dynamic: string, versions: string, symbols: string): ElfFacts {
  const field = (name: string) => new RegExp(`^\\s*${name}:\\s*(.*)$`, 'm').exec(header)?.[1]?.trim() ?? '';
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  // Only what the file needs (.gnu.version_r), not what it defines.
  const needSection = versions.split(/^(?=Version )/m).find((part) => part.startsWith('Version needs section')) ?? '';
  const glibcVersions = [...new Set([...needSection.matchAll(/Name: (GLIBC_[0-9.]+)/g)].map((m) => m[1]!))].sort(compareGlibc);
  const exports: string[] = [];
  for (const line of symbols.split('\n')) {
    // Num: Value Size Type Bind Vis Ndx Name; on ELFv2 POWER a function's Vis
    // is followed by its local entry offset, `[<localentry>: 8]`.
    const m = /^\s*\d+:\s+\S+\s+\d+\s+\S+\s+(GLOBAL|WEAK)\s+\S+(?:\s+\[[^\]]*\])?\s+(\S+)\s+(\S+)/.exec(line);
    if (m && m[2] !== 'UND') exports.push(m[3]!.replace(/@.*$/, ''));
  }
  return { class: field('Class'), data: field('Data'), type: field('Type'), machine: field('Machine'), flags: field('Flags'), needed, glibcVersions, exports };
}

export function inspectElf(file: string): ElfFacts {
  return parseElf(readelf(['-h'], file), readelf(['-d'], file), readelf(['-V', '-W'], file), readelf(['--dyn-syms', '-W'], file));
}

/** Every way `facts` is not a napi addon for `target`; empty when it is one. */
export function addonProblems(facts: ElfFacts, target: Target): string[] {
  const problems: string[] = [];
  const want = target.elf;
  if (facts.class !== want.class) problems.push(`class is ${facts.class}, not ${want.class}`);
  if (facts.data !== want.data) problems.push(`byte order is "${facts.data}", not "${want.data}"`);
  if (facts.machine !== want.machine) problems.push(`machine is ${facts.machine}, not ${want.machine}`);
  if (!facts.type.startsWith('DYN')) problems.push(`type is ${facts.type}, not a shared object (DYN)`);
  if (target.triple.startsWith('powerpc64le') && !/abiv2/.test(facts.flags)) problems.push(`flags ${facts.flags} do not say ELFv2 (abiv2), the ABI of little-endian POWER`);
  if (!facts.needed.includes('libc.so.6')) problems.push(`it does not link glibc dynamically (NEEDED: ${facts.needed.join(', ') || 'none'}): a static C runtime (+crt-static) in a dlopen()ed addon`);
  if (facts.glibcVersions.length === 0) problems.push('it needs no GLIBC_* symbol version, so it was not linked against glibc');
  if (!facts.exports.includes('napi_register_module_v1')) problems.push('it does not export napi_register_module_v1, the entry point Node calls');
  return problems;
}
