// Unplug from a running VM with a bounded wait for the guest's consent: a
// PCIe or sPAPR unplug is a request to the guest, not an act.
import { deviceDel, qomGet, qomList, queryStatus } from '../commands/queries';
import { HotplugError, QmpCommandError, QmpTimeoutError } from '../errors';
import type { QmpEventOf } from '../qmp/events';
import type { QmpExecutor } from '../qmp/executor';
import { PERIPHERAL } from './peripheral';

export interface DetachOptions {
  /** How long the guest has to release the devices. Default 10 s. */
  readonly timeoutMs?: number;
}

/**
 * Asks QEMU to unplug the devices and waits for DEVICE_DELETED for each.
 * Functions that share a slot leave together: pass them together.
 */
export async function detachDevices(qmp: QmpExecutor, ids: readonly string[], options: DetachOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const wanted = new Set(ids);
  // Per slot, unplug one device: a PCIe slot ejects as a whole, and a second
  // device_del while the first is pending fails as "guest is busy"
  // (pcie_cap_slot_unplug_request_cb()).
  const toDelete: string[] = [];
  const slots = new Map<string, { id: string; devfn: number }[]>();
  for (const id of ids) {
    const path = `${PERIPHERAL}/${id}`;
    let bus: string;
    let devfn: number;
    try {
      bus = String(await qomGet(qmp, path, 'parent_bus'));
      devfn = Number(await qomGet(qmp, path, 'addr'));
    } catch (err) {
      if (err instanceof QmpCommandError) {
        throw new HotplugError('HOTPLUG_INVALID_REQUEST', `the VM has no device with id ${id} (${err.desc})`);
      }
      throw err;
    }
    const key = `${bus}#${devfn >> 3}`;
    const list = slots.get(key) ?? [];
    list.push({ id, devfn });
    slots.set(key, list);
  }
  for (const [key, list] of slots) {
    const bus = key.slice(0, key.indexOf('#'));
    const slot = Number(key.slice(key.indexOf('#') + 1));
    const siblings: string[] = [];
    for (const link of (await qomList(qmp, bus)).filter((p) => /^child\[\d+\]$/.test(p.name))) {
      const path = String(await qomGet(qmp, bus, link.name));
      const devfn = Number(await qomGet(qmp, path, 'addr'));
      if (devfn >> 3 === slot) siblings.push(path.slice(path.lastIndexOf('/') + 1));
    }
    const left = siblings.filter((s) => !wanted.has(s));
    if (left.length > 0) {
      throw new HotplugError(
        'HOTPLUG_INVALID_REQUEST',
        `${list.map((d) => d.id).join(', ')} ${list.length > 1 ? 'share' : 'shares'} a slot with ${left.join(', ')}; a PCIe slot is ejected whole, so detach them together`,
      );
    }
    list.sort((a, b) => a.devfn - b.devfn);
    toDelete.push(list[0]!.id);
  }

  const deleted = new Set<string>();
  const waits = ids.map((id) => qmp.waitForEvent('DEVICE_DELETED', (e) => e.data.device === id, timeoutMs));
  const refusal = qmp.waitForEvent('DEVICE_UNPLUG_GUEST_ERROR', (e) => e.data.device !== undefined && wanted.has(e.data.device), timeoutMs);
  const cancelAll = (): void => {
    for (const w of waits) w.cancel();
    refusal.cancel();
  };
  const allDeleted = Promise.all(
    waits.map((w, i) =>
      w.promise.then(() => {
        deleted.add(ids[i]!);
      }),
    ),
  );
  try {
    for (const id of toDelete) {
      try {
        await deviceDel(qmp, id);
      } catch (err) {
        // A repeated request is still pending in QEMU: keep waiting for it.
        if (err instanceof QmpCommandError && /already in the process of unplug/.test(err.desc)) continue;
        throw err;
      }
    }
    const outcome = await Promise.race([
      allDeleted.then(() => 'deleted' as const),
      refusal.promise.then((e: QmpEventOf<'DEVICE_UNPLUG_GUEST_ERROR'>) => e),
    ]);
    if (outcome !== 'deleted') {
      throw new HotplugError(
        'UNPLUG_REJECTED_BY_GUEST',
        `the guest refused to release ${outcome.data.device} (DEVICE_UNPLUG_GUEST_ERROR); it may be in use by the guest OS: stop using it there and retry`,
        ids.filter((id) => !deleted.has(id)),
      );
    }
  } catch (err) {
    if (err instanceof HotplugError) throw err;
    if (err instanceof QmpTimeoutError && err.command.startsWith('event ')) {
      const remaining = ids.filter((id) => !deleted.has(id));
      throw new HotplugError('UNPLUG_NOT_ACKNOWLEDGED', await notAcknowledged(qmp, remaining, timeoutMs), remaining, { cause: err });
    }
    throw err;
  } finally {
    cancelAll();
  }
}

async function notAcknowledged(qmp: QmpExecutor, remaining: readonly string[], timeoutMs: number): Promise<string> {
  // A device can leave QOM before DEVICE_DELETED: QEMU sends the event from
  // device_finalize(), once the last reference is dropped. On a running TCG
  // pseries VM whose vCPU only spins in firmware that has not happened after
  // the DR connector released the device at once; stopping the VM completes it.
  const gone: string[] = [];
  for (const id of remaining) {
    try {
      await qomGet(qmp, `${PERIPHERAL}/${id}`, 'realized');
    } catch (err) {
      if (err instanceof QmpCommandError) gone.push(id);
      else throw err;
    }
  }
  // Which action completes a pending unplug is QEMU's behaviour, checked on
  // q35 with 7.2 and 10.0 (src/real-qemu-matrix.test.ts): a pending unplug
  // survives `stop` (the VM pauses with the slot still asking the guest),
  // and a machine reset completes it, since no guest is left to answer.
  const pending = remaining.filter((id) => !gone.includes(id));
  let state: string;
  try {
    const s = await queryStatus(qmp);
    state = s.running
      ? 'The VM is running, so the guest OS ignored the request: it has no PCI hot-plug support (Linux: pciehp on q35, ' +
        'rpaphp/drmgr on pseries), or the device is busy in the guest'
      : `The VM is not running (status ${s.status}), so no guest can answer`;
  } catch {
    state = 'The VM state could not be read';
  }
  const parts: string[] = [];
  if (pending.length > 0) {
    parts.push(
      `device_del of ${pending.join(', ')} was accepted, but the guest did not release ${pending.length > 1 ? 'them' : 'it'} ` +
        `within ${timeoutMs} ms: QEMU only asks the guest to eject the slot and removes the device once the guest ` +
        `powers it off (q35: pcie_cap_slot_unplug_request_cb(); pseries: the guest isolates the slot's DR connector ` +
        `through RTAS before spapr_drc_release()). ${state}. The device${pending.length > 1 ? 's stay' : ' stays'} attached ` +
        `with the request pending; let the guest finish it, or reset the VM (QMP system_reset; the guest OS restarts) ` +
        `to make QEMU complete the unplug (RESET, then DEVICE_DELETED); QMP stop does not release it.`,
    );
  }
  if (gone.length > 0) {
    parts.push(
      `${gone.join(', ')} ${gone.length > 1 ? 'have' : 'has'} left the VM's device tree, but QEMU sent no DEVICE_DELETED ` +
        `within ${timeoutMs} ms: it sends it only once the device is freed (device_finalize()), and until then the ` +
        `host device stays open. Stop the VM (QMP stop) to let QEMU finish, or wait longer.`,
    );
  }
  return parts.join(' ');
}
