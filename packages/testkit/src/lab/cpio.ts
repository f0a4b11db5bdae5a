// A writer for the "newc" cpio format, the only one the kernel's initramfs
// unpacker accepts (init/initramfs.c, magic 070701). Written here rather than
// staged on disk for `cpio -o` because the archive needs a /dev/console
// character device, and creating one on disk would need mknod and root.

export type CpioEntry =
  | { readonly kind: 'dir'; readonly path: string; readonly mode?: number }
  | { readonly kind: 'file'; readonly path: string; readonly data: Buffer; readonly mode?: number }
  | { readonly kind: 'symlink'; readonly path: string; readonly target: string }
  | { readonly kind: 'char'; readonly path: string; readonly major: number; readonly minor: number; readonly mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function header(fields: {
  ino: number;
  mode: number;
  nlink: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  nameSize: number;
}): Buffer {
  const hex = (v: number): string => v.toString(16).padStart(8, '0');
  const text =
    '070701' +
    hex(fields.ino) +
    hex(fields.mode) +
    hex(0) + // uid: root
    hex(0) + // gid: root
    hex(fields.nlink) +
    hex(0) + // mtime: fixed, so the same inputs give the same archive
    hex(fields.size) +
    hex(0) + // devmajor
    hex(0) + // devminor
    hex(fields.rdevMajor) +
    hex(fields.rdevMinor) +
    hex(fields.nameSize) +
    hex(0); // check: unused by newc
  return Buffer.from(text, 'ascii');
}

function record(ino: number, path: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0]): Buffer[] {
  if (path.startsWith('/')) throw new Error(`cpio entry '${path}' must be relative (the kernel unpacks names as given)`);
  const name = Buffer.from(`${path}\0`, 'utf8');
  const head = header({
    ino,
    mode,
    nlink: (mode & S_IFDIR) === S_IFDIR ? 2 : 1,
    size: data.length,
    rdevMajor: rdev[0],
    rdevMinor: rdev[1],
    nameSize: name.length,
  });
  return [head, name, Buffer.alloc(pad4(head.length + name.length)), data, Buffer.alloc(pad4(data.length))];
}

/** Builds a newc archive; parents must come before their children. */
export function buildCpio(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    switch (e.kind) {
      case 'dir':
        parts.push(...record(ino++, e.path, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0)));
        break;
      case 'file':
        parts.push(...record(ino++, e.path, S_IFREG | (e.mode ?? 0o644), e.data));
        break;
      case 'symlink':
        parts.push(...record(ino++, e.path, S_IFLNK | 0o777, Buffer.from(e.target, 'utf8')));
        break;
      case 'char':
        parts.push(...record(ino++, e.path, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), [e.major, e.minor]));
        break;
    }
  }
  parts.push(...record(0, 'TRAILER!!!', 0, Buffer.alloc(0)));
  return Buffer.concat(parts);
}
