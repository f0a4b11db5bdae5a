// The socket side of QMP: opens a UNIX or TCP connection and hands the stream
// to the protocol layer. Reconnecting is the caller's decision: this module
// connects once and reports why it could not.
import { connect, isIP, type Socket } from 'node:net';
import { QmpConnectError } from '../errors';
import { unixFdChannel } from './fd-channel';
import { QmpSession, type QmpSessionOptions } from './protocol';

/** Where QEMU's monitor listens (`-qmp unix:PATH,server=on` or `-qmp tcp:HOST:PORT,server=on`). */
export type QmpAddress = { readonly path: string } | { readonly host: string; readonly port: number };

export interface ConnectOptions extends Omit<QmpSessionOptions, 'label' | 'fdChannel'> {
  /** How long to wait for the socket to connect. Default 5 s. */
  readonly connectTimeoutMs?: number;
}

export function describeAddress(address: QmpAddress): string {
  return 'path' in address ? `unix:${address.path}` : `tcp:${inetHost(address.host)}:${address.port}`;
}

/** A host in an address label: an IPv6 address in brackets, so the port stays readable. */
export function inetHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

/** Connects, reads the greeting and negotiates; resolves with a ready session. */
export async function connectQmp(address: QmpAddress, options: ConnectOptions = {}): Promise<QmpSession> {
  const label = `QEMU monitor at ${describeAddress(address)}`;
  const socket = await openSocket(address, label, options.connectTimeoutMs ?? 5_000);
  if (!('path' in address)) socket.setNoDelay(true);
  const fdChannel = 'path' in address ? unixFdChannel(socket, label) : undefined;
  return QmpSession.open(socket, { ...options, label, fdChannel });
}

function openSocket(address: QmpAddress, label: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = 'path' in address ? connect({ path: address.path }) : connect({ host: address.host, port: address.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new QmpConnectError(`could not connect to ${label} within ${timeoutMs} ms; is QEMU running and listening there?`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new QmpConnectError(`could not connect to ${label}: ${err.message}; ${connectHint(address, err.code)}`, { cause: err }));
    });
  });
}

function connectHint(address: QmpAddress, code: string | undefined): string {
  switch (code) {
    case 'ENOENT':
      return `no socket exists there: start QEMU with -qmp ${describeAddress(address)},server=on,wait=off`;
    case 'ECONNREFUSED':
      return 'nothing listens there: QEMU has exited, or its monitor was not started with server=on';
    case 'EACCES':
      return 'permission denied: run as the user that owns the QEMU process, or fix the socket mode';
    default:
      return 'check that QEMU is running with a QMP monitor at that address';
  }
}
