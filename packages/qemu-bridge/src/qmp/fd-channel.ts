// Writes a QMP command with file descriptors attached (SCM_RIGHTS), for
// getfd / add-fd. QEMU keeps the descriptors that arrive with any byte of a
// command and hands them to it (chardev/char-socket.c tcp_chr_recv, then
// monitor/qmp-cmds.c qmp_getfd / qmp_add_fd take them with
// qemu_chr_fe_get_msgfd), so the command's own bytes carry them, as libvirt
// does. Node's net cannot send ancillary data: vfio-core's sendmsg writes on
// the socket's descriptor, after every byte Node has queued, so the stream's
// order is kept.
import { FdPassError, sendWithFds } from '@vfiokit/core';
import type { Socket } from 'node:net';
import { QmpFdPassingError } from '../errors';

export interface FdChannel {
  /** Writes `data` with `fds` attached; resolves once every byte is handed to the kernel. */
  send(data: Buffer, fds: readonly number[]): Promise<void>;
}

/** How long a full socket may stay full before the send is given up. */
const FULL_SOCKET_MS = 10_000;

/** The fd channel of a connected UNIX socket. */
export function unixFdChannel(socket: Socket, label: string): FdChannel {
  return {
    async send(data, fds) {
      const started = Date.now();
      for (;;) {
        // Node's own queue first: its bytes precede this command.
        if (socket.writableLength > 0) await new Promise((resolve) => socket.once('drain', resolve));
        const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
        if (typeof fd !== 'number' || fd < 0) {
          throw new QmpFdPassingError(`cannot pass descriptors to ${label}: the connection has no socket descriptor (closed?)`);
        }
        let sent: number;
        try {
          sent = sendWithFds(fd, data, fds);
        } catch (err) {
          if (err instanceof FdPassError && err.code === 'EAGAIN' && Date.now() - started < FULL_SOCKET_MS) {
            // The kernel buffer is full (QEMU is not reading): nothing went out; retry shortly.
            await new Promise((resolve) => setTimeout(resolve, 5));
            continue;
          }
          throw new QmpFdPassingError(
            `cannot pass ${fds.length} descriptor(s) to ${label}: ${(err as Error).message}`,
            { cause: err },
          );
        }
        if (sent < data.length) socket.write(data.subarray(sent));
        return;
      }
    },
  };
}
