// What vfiokit remembers about the devices it moved to vfio-pci: the driver
// (and driver_override) each had before, so `unbind` can give it back, even
// from another process after a restart. One small JSON file per device, under
// a state folder that lives as long as the boot does (/run by default: after a
// reboot every device is back on its own driver, and so should the records be).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StateError } from './errors';
import { processAlive } from './process';

/** Where records go unless told otherwise: tmpfs, cleared at boot like the bindings it describes. */
export const DEFAULT_STATE_DIR = '/run/vfiokit';

/** What a device was before vfiokit moved it. */
export interface BindingRecord {
  readonly address: string;
  /** Ids, to notice a different card in the same slot after a hot-swap. */
  readonly vendorId: number;
  readonly deviceId: number;
  /** The driver it had, absent when it had none. */
  readonly originalDriver?: string;
  /** The driver_override it had, absent when none. */
  readonly originalOverride?: string;
  readonly group?: number;
  /** ISO time the record was written. */
  readonly movedAt: string;
}

/** The records of one state folder. */
export interface BindingStore {
  readonly dir: string;
  get(address: string): BindingRecord | undefined;
  put(record: BindingRecord): void;
  remove(address: string): void;
  list(): readonly BindingRecord[];
  /**
   * Take the folder's lock for one driver switch, so two vfiokit processes
   * never interleave writes to the same devices; returns the release.
   * Waits up to `waitMs` for a live holder, and takes over a lock whose
   * holder has died.
   */
  lock(waitMs?: number): () => void;
}

/** A store of one JSON file per device in `<dir>/devices/`. */
export function fileBindingStore(dir: string = DEFAULT_STATE_DIR): BindingStore {
  const devices = path.join(dir, 'devices');
  const fileOf = (address: string) => path.join(devices, `${address}.json`);
  const read = (file: string): BindingRecord | undefined => {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StateError(`cannot read binding record ${file}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const r = JSON.parse(text) as BindingRecord;
      if (typeof r.address !== 'string' || typeof r.vendorId !== 'number' || typeof r.deviceId !== 'number') throw new Error('missing fields');
      return r;
    } catch (err) {
      throw new StateError(`binding record ${file} is corrupt (${(err as Error).message})`, {
        hint: `check the device by hand, then delete ${file}`,
        cause: err,
      });
    }
  };
  return {
    dir,
    get: (address) => read(fileOf(address)),
    put(record) {
      try {
        fs.mkdirSync(devices, { recursive: true, mode: 0o700 });
        // Write then rename: a crash leaves the old record or the new one, never half of one.
        const tmp = `${fileOf(record.address)}.${process.pid}.tmp`;
        fs.writeFileSync(tmp, JSON.stringify(record, null, 2) + '\n', { mode: 0o600 });
        fs.renameSync(tmp, fileOf(record.address));
      } catch (err) {
        throw new StateError(`cannot write binding record for ${record.address} under ${dir}: ${(err as Error).message}`, {
          hint: 'make the state folder writable, or choose another with --state-dir',
          cause: err,
        });
      }
    },
    remove(address) {
      fs.rmSync(fileOf(address), { force: true });
    },
    lock(waitMs = 5000) {
      const file = path.join(dir, 'lock');
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const deadline = Date.now() + waitMs;
      for (;;) {
        try {
          fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
          return () => fs.rmSync(file, { force: true });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
            throw new StateError(`cannot take the lock ${file}: ${(err as Error).message}`, { cause: err });
          }
        }
        const holder = Number(fs.readFileSync(file, 'utf8').trim());
        if (!Number.isInteger(holder) || holder <= 0 || !processAlive(holder)) {
          fs.rmSync(file, { force: true }); // its holder died mid-switch: the records say what it did
          continue;
        }
        if (Date.now() >= deadline) {
          throw new StateError(`another vfiokit (pid ${holder}) is switching drivers (lock ${file})`, {
            hint: `wait for it to finish; if pid ${holder} is not vfiokit, remove ${file}`,
          });
        }
        sleep(50);
      }
    },
    list() {
      let names: string[];
      try {
        names = fs.readdirSync(devices);
      } catch {
        return [];
      }
      return names
        .filter((n) => n.endsWith('.json'))
        .sort()
        .map((n) => read(path.join(devices, n)))
        .filter((r): r is BindingRecord => r !== undefined);
    },
  };
}

/** A synchronous pause: driver switching is synchronous, and so is waiting for the lock. */
function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
