// A running guest handed to a new QEMU process with QEMU's cpr-transfer
// migration mode (docs/devel/migration/CPR.rst, "cpr-transfer mode"): guest
// RAM stays in place in its shared memfd and, since QEMU 10.1, VFIO devices
// keep their descriptors and pinned pages (qapi/migration.json MigMode:
// "Devices and their pinned pages are also preserved for VFIO and IOMMUFD.
// (since 10.1)"). The old QEMU sends its descriptors (memfd, VFIO container,
// groups, devices, eventfds) over the `cpr` channel with SCM_RIGHTS and the
// device state over the `main` channel; the new QEMU, started with the same
// machine and `-incoming` on both channels, resumes the guest.
//
// The order is QEMU's, not ours to choose: a QEMU started with a cpr channel
// reads the cpr state before it creates its monitors ("in cpr-transfer mode
// QEMU does not listen for monitor connections until we send the migrate
// command to source QEMU", QEMU commit 360b5d77, tests/qtest/migration), so
// the migrate command goes to the old QEMU while the new one's monitor is
// still closed, and migration parameters cannot be set on the new one.
import { existsSync, readFileSync } from 'node:fs';
import { CprTransferError, QemuUnsupportedError } from '../errors';
import type { QmpExecutor } from '../qmp/executor';
import { atLeast, type QemuRelease, releaseText } from './version';

/** cpr-transfer with VFIO devices: QEMU 10.1 (the mode alone came in 10.0, for guests without them). */
export const CPR_TRANSFER_WITH_VFIO: QemuRelease = { major: 10, minor: 1, micro: 0 };

/**
 * Why `v` cannot take part in a cpr-transfer of a guest with VFIO devices,
 * or undefined when it can. `who` names the process for the message.
 */
export function cprTransferRefusal(v: QemuRelease, who: string): string | undefined {
  if (atLeast(v, CPR_TRANSFER_WITH_VFIO)) return undefined;
  const what = v.major < 10 ? 'has no cpr-transfer migration mode (QEMU 10.0 added it)' : 'has cpr-transfer but not for VFIO devices';
  return `${who} is QEMU ${releaseText(v)}, which ${what}: handing a guest with VFIO devices to a new QEMU needs QEMU ${CPR_TRANSFER_WITH_VFIO.major}.${CPR_TRANSFER_WITH_VFIO.minor} or later on both sides`;
}

/** The two UNIX sockets the new QEMU listens on. */
export interface CprChannels {
  /** Device state (the usual migration stream). */
  readonly main: string;
  /** The cpr state: descriptors, sent with SCM_RIGHTS. */
  readonly cpr: string;
}

function channel(type: 'main' | 'cpr', path: string): Record<string, unknown> {
  return { 'channel-type': type, addr: { transport: 'socket', type: 'unix', path } };
}

/** What the new QEMU takes beside the old one's command line: `-incoming` on each channel (qemu-options.hx, -incoming CHANNEL). */
export function cprIncomingArgs(ch: CprChannels): string[] {
  return ['-incoming', JSON.stringify(channel('main', ch.main)), '-incoming', JSON.stringify(channel('cpr', ch.cpr))];
}

/**
 * The old command line with the machine type pinned to what the old QEMU
 * resolved (`q35` is an alias for the binary's newest pc-q35-X.Y, and a
 * newer binary would create a different machine, which the device state
 * does not fit) and the binary replaced.
 */
export function cprTargetArgv(oldArgv: readonly string[], binary: string, machineType: string, ch: CprChannels): string[] {
  const argv = [binary, ...oldArgv.slice(1)];
  const i = argv.indexOf('-machine');
  if (i < 0 || argv[i + 1] === undefined) throw new QemuUnsupportedError(['-machine'], 'the command line names no -machine to pin for the new QEMU');
  const [, ...props] = argv[i + 1]!.split(',');
  argv[i + 1] = [machineType, ...props].join(',');
  return [...argv, ...cprIncomingArgs(ch)];
}

/** The machine type QEMU resolved (`pc-q35-11.1`), from QOM's /machine (type `pc-q35-11.1-machine`). */
export async function resolvedMachineType(qmp: QmpExecutor): Promise<string> {
  const t = await qmp.execute('qom-get', { path: '/machine', property: 'type' });
  if (typeof t !== 'string' || !t.endsWith('-machine')) throw new QemuUnsupportedError(['qom-get /machine type'], `QEMU named its machine type ${JSON.stringify(t)}, not NAME-machine`);
  return t.slice(0, -'-machine'.length);
}

export interface CprOutcome {
  /** The pause query-migrate reports on the old side: from stopping the guest to the end of sending (ms). */
  readonly downtimeMs: number | undefined;
  /** query-migrate's total-time (ms). */
  readonly totalTimeMs: number | undefined;
}

/**
 * Whether a UNIX socket bound at `path` is listening, read from
 * /proc/net/unix (net/unix/af_unix.c, unix_seq_show: the flags column has
 * __SO_ACCEPTCON, 0x10000, once listen() ran). The file alone is not enough:
 * bind() creates it before listen(), and a migrate in that gap was refused
 * with ECONNREFUSED on a loaded machine. A trial connect is no way to ask:
 * QEMU takes the first connection on its cpr channel as the cpr stream.
 */
export function unixSocketListening(path: string, table = readFileSync('/proc/net/unix', 'utf8')): boolean {
  for (const line of table.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 8 && cols.slice(7).join(' ') === path && (Number.parseInt(cols[3]!, 16) & 0x10000) !== 0) return true;
  }
  return false;
}

/** Waits until the new QEMU listens on `path`, the deadline passes or `gone` says the process ended. */
export async function waitForSocket(path: string, timeoutMs: number, gone: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (existsSync(path) && unixSocketListening(path)) return;
    const why = gone();
    if (why !== undefined) throw new CprTransferError(why);
    if (Date.now() > deadline) throw new CprTransferError(`the new QEMU did not listen on its cpr channel ${path} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * On the old QEMU: mode cpr-transfer, migrate over both channels, and wait
 * until query-migrate says completed (resolves) or failed/cancelled (rejects
 * with QEMU's error-desc; the old QEMU then runs the guest on, as after any
 * failed outgoing migration). The new QEMU must already listen on `ch.cpr`.
 */
export async function cprTransfer(old: QmpExecutor, ch: CprChannels, timeoutMs = 120_000): Promise<CprOutcome> {
  await old.execute('migrate-set-parameters', { mode: 'cpr-transfer' });
  await old.execute('migrate', { channels: [channel('main', ch.main), channel('cpr', ch.cpr)] });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = (await old.execute('query-migrate')) as Record<string, unknown>;
    const status = String(r.status ?? 'none');
    if (status === 'completed') {
      return { downtimeMs: typeof r.downtime === 'number' ? r.downtime : undefined, totalTimeMs: typeof r['total-time'] === 'number' ? r['total-time'] : undefined };
    }
    if (status === 'failed' || status === 'cancelled') {
      throw new CprTransferError(`cpr-transfer ${status}: ${String(r['error-desc'] ?? 'QEMU gave no reason')}`);
    }
    if (Date.now() > deadline) throw new CprTransferError(`cpr-transfer still ${status} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
