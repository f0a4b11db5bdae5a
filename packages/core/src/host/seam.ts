// The one seam between the host model and the host. Everything core learns
// about devices, drivers, IOMMU groups, mounts, routes and limits is read
// through a HostFs, and every change (driver_override, bind, unbind,
// drivers_probe) is written through it. Tests and the CLI's `--mock` hand in a
// fixture host whose writes a small model of the kernel applies; production
// hands in `createHostFs()`, which is plain file access under a root.
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Host file access by the paths the kernel uses (`/sys/bus/pci/devices/...`,
 * `/proc/net/route`). Reads answer `undefined` (or `[]`) for what does not
 * exist, because absence is an answer in sysfs (no `driver` link = no driver).
 * `writeText` throws what the kernel's store function returned, as a Node
 * errno error (`code` = `ENODEV`, `EBUSY`, `EINVAL`...).
 */
export interface HostFs {
  readText(file: string): string | undefined;
  /** At most `length` bytes from the start of a binary file (PCI `config`). */
  readBytes(file: string, length: number): Uint8Array | undefined;
  /** The raw target of a symbolic link, as sysfs wrote it (usually relative). */
  readLink(file: string): string | undefined;
  /** Entry names of a directory, sorted; `[]` when it does not exist. */
  list(dir: string): readonly string[];
  exists(file: string): boolean;
  writeText(file: string, data: string): void;
}

/** Where the host's trees are; the CLI's `--sysfs-root` sets `sysfsRoot`. */
export interface HostRoots {
  /** Stands for `/`: every path not under /sys or /proc is read below it. Default `/`. */
  readonly root?: string;
  /** Stands for `/sys`. Default `<root>/sys`. */
  readonly sysfsRoot?: string;
  /** Stands for `/proc`. Default `<root>/proc`. */
  readonly procRoot?: string;
}

/** A HostFs on the real file system, with /, /sys and /proc moved where `roots` says. */
export function createHostFs(roots: HostRoots = {}): HostFs {
  const root = roots.root ?? '/';
  const sys = roots.sysfsRoot ?? path.join(root, 'sys');
  const proc = roots.procRoot ?? path.join(root, 'proc');
  const place = (file: string): string => {
    if (!file.startsWith('/')) throw new TypeError(`host path must be absolute: ${file}`);
    if (file === '/sys' || file.startsWith('/sys/')) return path.join(sys, file.slice(4));
    if (file === '/proc' || file.startsWith('/proc/')) return path.join(proc, file.slice(5));
    return path.join(root, file);
  };
  return {
    readText: (file) => absentAsUndefined(() => fs.readFileSync(place(file), 'utf8')),
    readBytes: (file, length) =>
      absentAsUndefined(() => {
        const fd = fs.openSync(place(file), 'r');
        try {
          const buf = Buffer.alloc(length);
          const n = fs.readSync(fd, buf, 0, length, 0);
          return new Uint8Array(buf.buffer, buf.byteOffset, n);
        } finally {
          fs.closeSync(fd);
        }
      }),
    readLink: (file) => absentAsUndefined(() => fs.readlinkSync(place(file))),
    list: (dir) => absentAsUndefined(() => fs.readdirSync(place(dir)).sort()) ?? [],
    exists: (file) => fs.existsSync(place(file)),
    // A sysfs store function sees one write(2) per call, so the whole string
    // goes in one writeSync. O_WRONLY without O_CREAT: an attribute that is
    // not there is an error (ENOENT), never a new file, and write-only
    // attributes (bind, unbind: mode 0200) refuse O_RDWR.
    writeText: (file, data) => {
      const fd = fs.openSync(place(file), fs.constants.O_WRONLY);
      try {
        fs.writeSync(fd, data);
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}

/**
 * Absence (ENOENT, ENOTDIR, EINVAL from readlink on a non-link) reads as
 * undefined, and so does EACCES: another user's /proc/PID/fd is as invisible
 * to us as a missing one.
 */
function absentAsUndefined<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EINVAL' || code === 'ENODEV' || code === 'EACCES') return undefined;
    throw err;
  }
}

/** The absolute path a sysfs link points at, resolved against the link's own folder. */
export function resolveLink(host: HostFs, link: string): string | undefined {
  const target = host.readLink(link);
  return target === undefined ? undefined : path.posix.resolve(path.posix.dirname(link), target);
}

/** The errno name of an error a HostFs write threw (`ENODEV`), if it carries one. */
export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}
