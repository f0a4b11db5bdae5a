// Sizes as people write them on the command line and read them back.
import { invalidInput } from './errors';

const SIZE = /^(\d+)\s*([KMGT])?(?:i?B)?$/i;
const UNIT: Readonly<Record<string, bigint>> = { K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n };

/** `8G` (binary, as QEMU reads it), `512M`, `4096` (bytes here: options name bytes, unlike the spec's memory). */
export function parseSize(text: string, option: string): bigint {
  const m = SIZE.exec(text.trim());
  if (!m) throw invalidInput(`${option} ${text}: not a size`, `write it as 8G, 512M or a number of bytes`);
  return BigInt(m[1]!) * (m[2] ? UNIT[m[2].toUpperCase()]! : 1n);
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
