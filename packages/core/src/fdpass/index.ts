// Passing open file descriptors to another process over a UNIX socket
// (SCM_RIGHTS), through vfio-core's sendmsg. Node's net module cannot attach
// ancillary data; QEMU takes descriptors this way for QMP getfd / add-fd,
// which is how a VFIO device fd or an iommufd opened here reaches QEMU.
import * as native from '@vfiokit/vfio-core';
import { VfiokitError } from '../errors';

/** Most descriptors one message carries (QEMU's socket chardev takes 16 a read). */
export const MAX_PASSED_FDS = 16;

/** sendmsg failed; `code` is the errno's name (EAGAIN: the socket is full, nothing was sent). */
export class FdPassError extends VfiokitError {
  constructor(
    code: string,
    message: string,
    readonly errno: number,
  ) {
    super(code, message);
  }
}

/**
 * Sends `data` on the connected UNIX socket `socketFd` with `fds` attached to
 * its first byte. Never blocks; returns the bytes sent (a stream socket may
 * take fewer: write the rest without fds). Throws FdPassError.
 */
export function sendWithFds(socketFd: number, data: Uint8Array, fds: readonly number[]): number {
  try {
    return native.sendWithFds(socketFd, Buffer.from(data.buffer, data.byteOffset, data.byteLength), [...fds]);
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    const errno = /\(errno (\d+)\)$/.exec(String(e.message))?.[1];
    throw new FdPassError(
      typeof e.code === 'string' ? e.code : 'EIO',
      String(e.message).replace(/ \(errno \d+\)$/, ''),
      errno === undefined ? 0 : Number(errno),
    );
  }
}
