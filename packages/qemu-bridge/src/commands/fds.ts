// The commands that take file descriptors from this client: getfd / closefd
// (a named fd for one consumer, e.g. vfio-pci's fd=NAME) and add-fd /
// query-fdsets / remove-fd (fd sets, opened through /dev/fdset/N). Shapes are
// qapi/misc.json's. The descriptor travels with the command (SCM_RIGHTS,
// see qmp/fd-channel.ts); QEMU dups it, so the caller may close its own copy
// once the command returned.
import type { QmpExecutor } from '../qmp/executor';
import { arr, num, obj, optStr, type Json } from './reply';

/** qapi/misc.json getfd: QEMU keeps `fd` under `fdname` for a later consumer. */
export async function getfd(qmp: QmpExecutor, fdname: string, fd: number): Promise<void> {
  await qmp.execute('getfd', { fdname }, { fds: [fd] });
}

/** qapi/misc.json closefd: QEMU closes a named fd no consumer took. */
export async function closefd(qmp: QmpExecutor, fdname: string): Promise<void> {
  await qmp.execute('closefd', { fdname });
}

export interface AddedFd {
  readonly fdsetId: number;
  /** QEMU's own number for its copy of the descriptor. */
  readonly fd: number;
}

/** qapi/misc.json add-fd: puts `fd` in fd set `fdsetId` (a new set when absent). */
export async function addFd(
  qmp: QmpExecutor,
  fd: number,
  options: { readonly fdsetId?: number; readonly opaque?: string } = {},
): Promise<AddedFd> {
  const args: Record<string, unknown> = {};
  if (options.fdsetId !== undefined) args['fdset-id'] = options.fdsetId;
  if (options.opaque !== undefined) args.opaque = options.opaque;
  const r = obj(await qmp.execute('add-fd', args, { fds: [fd] }), 'add-fd');
  return { fdsetId: num(r, 'fdset-id', 'add-fd'), fd: num(r, 'fd', 'add-fd') };
}

export interface FdsetInfo {
  readonly fdsetId: number;
  readonly fds: readonly { readonly fd: number; readonly opaque?: string }[];
}

/** qapi/misc.json query-fdsets. */
export async function queryFdsets(qmp: QmpExecutor): Promise<FdsetInfo[]> {
  return arr(await qmp.execute('query-fdsets'), 'query-fdsets').map((v, i) => {
    const set = obj(v, `query-fdsets[${i}]`);
    return {
      fdsetId: num(set, 'fdset-id', `query-fdsets[${i}]`),
      fds: arr(set.fds, `query-fdsets[${i}].fds`).map((f, j) => {
        const o: Json = obj(f, `query-fdsets[${i}].fds[${j}]`);
        const opaque = optStr(o, 'opaque', `query-fdsets[${i}].fds[${j}]`);
        return opaque === undefined ? { fd: num(o, 'fd', 'query-fdsets') } : { fd: num(o, 'fd', 'query-fdsets'), opaque };
      }),
    };
  });
}

/** qapi/misc.json remove-fd: one fd of a set, or the whole set. */
export async function removeFd(qmp: QmpExecutor, fdsetId: number, fd?: number): Promise<void> {
  await qmp.execute('remove-fd', fd === undefined ? { 'fdset-id': fdsetId } : { 'fdset-id': fdsetId, fd });
}
