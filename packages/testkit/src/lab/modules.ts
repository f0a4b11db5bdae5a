// Kernel modules for the lab's initramfs: which files to take and in which
// order busybox `insmod` must load them. Debian's kernel packages ship no
// modules.dep (depmod runs at install time), so the dependencies come from
// each module's own `.modinfo` section (`depends=a,b`), the same field depmod
// reads. Modules built into the kernel (modules.builtin) are skipped: on 6.12,
// for example, vfio_virqfd is built in.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { LabError } from './errors';

/** Module names compare with '-' and '_' as the same character, as in kmod. */
export function moduleKey(name: string): string {
  return name.replace(/-/g, '_');
}

/** Reads the NUL-separated `key=value` strings of an ELF64 little-endian object's `.modinfo`. */
export function readModinfo(elf: Buffer): Map<string, string[]> {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) {
    throw new Error('not a 64-bit little-endian ELF object');
  }
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  const section = (i: number): { name: number; offset: number; size: number } => {
    const at = shoff + i * shentsize;
    return { name: elf.readUInt32LE(at), offset: Number(elf.readBigUInt64LE(at + 0x18)), size: Number(elf.readBigUInt64LE(at + 0x20)) };
  };
  const strtab = section(shstrndx);
  const info = new Map<string, string[]>();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameEnd = elf.indexOf(0, strtab.offset + s.name);
    if (elf.toString('latin1', strtab.offset + s.name, nameEnd) !== '.modinfo') continue;
    for (const entry of elf.toString('latin1', s.offset, s.offset + s.size).split('\0')) {
      const eq = entry.indexOf('=');
      if (eq <= 0) continue;
      const key = entry.slice(0, eq);
      info.set(key, [...(info.get(key) ?? []), entry.slice(eq + 1)]);
    }
  }
  return info;
}

export interface KernelModule {
  readonly name: string;
  /** Path relative to lib/modules/<version>/. */
  readonly path: string;
  /** The uncompressed object, ready for busybox insmod. */
  readonly object: Buffer;
}

/** Every `.ko`, `.ko.xz` under `moduleDir`, by key. */
function indexModules(moduleDir: string): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir)) {
      const full = join(dir, entry);
      if (statSync(full).isDirectory()) walk(full);
      else {
        const m = /^(.*)\.ko(\.xz|\.zst|\.gz)?$/.exec(entry);
        if (m) found.set(moduleKey(m[1]!), full);
      }
    }
  };
  walk(join(moduleDir, 'kernel'));
  return found;
}

function loadObject(file: string): Buffer {
  if (file.endsWith('.ko')) return readFileSync(file);
  const tool = file.endsWith('.xz') ? 'xz' : file.endsWith('.zst') ? 'zstd' : 'gzip';
  const res = spawnSync(tool, ['-dc', file], { maxBuffer: 256 << 20 });
  if (res.status !== 0) {
    throw new LabError(
      'MISSING_TOOL',
      `cannot decompress kernel module ${file} with '${tool} -dc' (busybox insmod loads only plain .ko): ${res.stderr?.toString().trim() ?? res.error?.message}; install ${tool === 'xz' ? 'xz-utils' : tool}`,
    );
  }
  return res.stdout;
}

/**
 * The modules `wanted` and everything they depend on, each after its
 * dependencies, uncompressed. Built-in modules are left out; a module that is
 * neither found nor built in is an error naming it.
 */
export function resolveModules(moduleDir: string, wanted: readonly string[]): KernelModule[] {
  const files = indexModules(moduleDir);
  const builtinFile = join(moduleDir, 'modules.builtin');
  const builtin = new Set(
    existsSync(builtinFile)
      ? readFileSync(builtinFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((p) => moduleKey(p.split('/').at(-1)!.replace(/\.ko$/, '')))
      : [],
  );

  const ordered: KernelModule[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (name: string, wantedBy: string): void => {
    const key = moduleKey(name);
    if (done.has(key) || builtin.has(key)) return;
    if (visiting.has(key)) throw new LabError('BAD_PACKAGE', `kernel modules depend on each other in a cycle through ${key}`);
    const file = files.get(key);
    if (file === undefined) {
      throw new LabError('BAD_PACKAGE', `kernel module ${key} (needed by ${wantedBy}) is neither in ${moduleDir} nor built in`);
    }
    visiting.add(key);
    const object = loadObject(file);
    const depends = (readModinfo(object).get('depends') ?? []).flatMap((d) => d.split(',')).filter(Boolean);
    for (const dep of depends) visit(dep, key);
    visiting.delete(key);
    done.add(key);
    ordered.push({ name: key, path: relative(moduleDir, file).replace(/\.(xz|zst|gz)$/, ''), object });
  };
  for (const name of wanted) visit(name, 'the lab');
  return ordered;
}
