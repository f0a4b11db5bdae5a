// Sizes as people write them, one grammar for the command line and the guest
// spec alike: a plain number is bytes; a K, M, G, T or P suffix (optionally
// followed by iB) is binary, as QEMU's qemu_strtosz reads `-m 4G`; a fraction
// is allowed when it comes to whole bytes (`1.5G`). `4GB` is refused: disks
// mean 10^9 by GB, QEMU and the kernel 2^30, and a guess would be wrong for
// half the people who write it.
import { invalidInput } from './errors';

const UNIT: Readonly<Record<string, bigint>> = { K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n, P: 1n << 50n };
const SIZE = /^(\d+)(?:\.(\d+))?\s*(?:([KMGTP])(iB)?|(B))?$/i;
const DECIMAL_UNIT = /^(\d+(?:\.\d+)?)\s*([KMGTP])B$/i;

export const SIZE_GRAMMAR = 'a size such as 4G, 4GiB, 1.5G, 512M or a number of bytes';

/** Why `text` is not a size, in words, or the size in bytes. */
export function readSize(text: string): { bytes: bigint } | { problem: string } {
  const t = text.trim();
  const m = SIZE.exec(t);
  if (!m) {
    const d = DECIMAL_UNIT.exec(t);
    if (d) {
      const u = d[2]!.toUpperCase();
      return { problem: `"${text}" is ambiguous (${u}B is 10^${'KMGTP'.indexOf(u) * 3 + 3} bytes to a disk vendor, 2^${'KMGTP'.indexOf(u) * 10 + 10} to QEMU); write ${d[1]}${u} or ${d[1]}${u}iB` };
    }
    return { problem: `"${text}" is not ${SIZE_GRAMMAR}` };
  }
  const unit = m[3] ? UNIT[m[3].toUpperCase()]! : 1n;
  const fraction = m[2] ?? '';
  const scale = 10n ** BigInt(fraction.length);
  const scaled = (BigInt(m[1]!) * scale + BigInt(fraction || '0')) * unit;
  if (scaled % scale !== 0n) return { problem: `"${text}" is not a whole number of bytes` };
  return { bytes: scaled / scale };
}

/** Parse an option's size; throws an invalid-input CliError naming the option. */
export function parseSize(text: string, option: string): bigint {
  const r = readSize(text);
  if ('problem' in r) throw invalidInput(`${option} ${text}: ${r.problem}`, `write it as 8G, 8GiB, 1.5G, 512M or a number of bytes`);
  return r.bytes;
}

/** `16 GiB`, `1.5 GiB`, `4 KiB`, `512 bytes`. */
export function formatSize(n: bigint): string {
  const units: [bigint, string][] = [
    [1n << 40n, 'TiB'],
    [1n << 30n, 'GiB'],
    [1n << 20n, 'MiB'],
    [1n << 10n, 'KiB'],
  ];
  for (const [u, s] of units) {
    if (n >= u) {
      const whole = n / u;
      const tenth = ((n % u) * 10n) / u;
      return tenth === 0n ? `${whole} ${s}` : `${whole}.${tenth} ${s}`;
    }
  }
  return `${n} bytes`;
}

export function hex(n: bigint): string {
  return `0x${n.toString(16)}`;
}
