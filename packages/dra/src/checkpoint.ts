// What the driver has prepared, kept on disk so a plugin killed at any point
// and restarted still knows which claim owns which group. The record of a
// claim is written *before* its first bind (state `preparing`) and marked
// `prepared` after the CDI spec is written, so after a crash:
// - a retried prepare finishes the same groups (bind is idempotent: what is on
//   vfio-pci already stays, what is not gets moved),
// - an unprepare gives back exactly what the binding records say was moved,
// - no other claim can be given a group any record names.
// The original drivers themselves live in core's binding store, beside it.
import * as fs from 'node:fs';
import { writeFileAtomic } from './atomic';
import { DraError } from './errors';

/** One device returned to the kubelet for a claim. */
export interface PreparedDevice {
  readonly requestNames: readonly string[];
  readonly poolName: string;
  readonly deviceName: string;
  readonly cdiDeviceIds: readonly string[];
}

export interface ClaimRecord {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly state: 'preparing' | 'prepared';
  readonly groups: readonly number[];
  /** Set once prepared. */
  readonly devices?: readonly PreparedDevice[];
  readonly cdiSpec?: string;
  readonly updatedAt: string;
}

interface CheckpointFile {
  readonly version: 1;
  readonly claims: Record<string, ClaimRecord>;
}

export class Checkpoint {
  private claims: Map<string, ClaimRecord>;

  constructor(readonly file: string) {
    this.claims = new Map(Object.entries(readCheckpoint(file).claims));
  }

  get(uid: string): ClaimRecord | undefined {
    return this.claims.get(uid);
  }

  list(): readonly ClaimRecord[] {
    return [...this.claims.values()];
  }

  /** The claim (other than `uid`) that holds `group`, if any. */
  ownerOf(group: number, uid?: string): ClaimRecord | undefined {
    return this.list().find((c) => c.uid !== uid && c.groups.includes(group));
  }

  /** Every group some claim holds. */
  groups(): ReadonlySet<number> {
    return new Set(this.list().flatMap((c) => c.groups));
  }

  put(record: Omit<ClaimRecord, 'updatedAt'>): void {
    const next = new Map(this.claims);
    next.set(record.uid, { ...record, updatedAt: new Date().toISOString() });
    this.save(next);
  }

  remove(uid: string): void {
    if (!this.claims.has(uid)) return;
    const next = new Map(this.claims);
    next.delete(uid);
    this.save(next);
  }

  private save(next: Map<string, ClaimRecord>): void {
    const doc: CheckpointFile = { version: 1, claims: Object.fromEntries(next) };
    try {
      writeFileAtomic(this.file, JSON.stringify(doc, null, 2) + '\n');
    } catch (err) {
      throw new DraError('DRA_CHECKPOINT', `cannot write the checkpoint ${this.file}: ${(err as Error).message}`, {
        hint: 'make its folder writable (--plugin-dir); nothing was bound for this claim',
        cause: err,
      });
    }
    this.claims = next;
  }
}

function readCheckpoint(file: string): CheckpointFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, claims: {} };
    throw new DraError('DRA_CHECKPOINT', `cannot read the checkpoint ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const doc = JSON.parse(text) as CheckpointFile;
    if (doc.version !== 1 || typeof doc.claims !== 'object' || doc.claims === null) throw new Error(`unknown version ${String(doc.version)}`);
    return doc;
  } catch (err) {
    // Never guess: a checkpoint we cannot read may name groups that are bound for running pods.
    throw new DraError('DRA_CHECKPOINT', `the checkpoint ${file} is corrupt (${(err as Error).message})`, {
      hint: `check which claims are prepared ('vfiokit show' lists groups on vfio-pci), then move ${file} aside`,
      cause: err,
    });
  }
}
