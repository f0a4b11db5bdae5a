// The kubelet's two calls, as the driver answers them. Prepare reads the
// claim from the API server, takes the allocation results for this driver
// and this node's pool, moves each allocated group to vfio-pci with core's
// managed bind (all or nothing across the claim's groups), writes the CDI
// spec and returns the CDI device ids. Unprepare gives each function back the
// driver it had and removes the spec. Both are idempotent (the kubelet
// retries), serialized (one driver switch at a time), and a failure is that
// claim's error with the cause and the fix, never a crash of the plugin.
import { bindGroup, unbindGroup, type BindingStore, type HostFs } from '@vfiokit/core';
import { buildCdiSpec, cdiDeviceId, cdiSpecFile, removeCdiSpec, writeCdiSpec } from './cdi';
import type { Checkpoint, PreparedDevice } from './checkpoint';
import { describeError, DraError, KubeApiError } from './errors';
import { deviceNameOf, groupOfDeviceName, takeInventory } from './inventory';
import { RESOURCE_API, type KubeClient } from './kube';

export interface ClaimRef {
  readonly namespace: string;
  readonly uid: string;
  readonly name: string;
}

export interface PrepareAnswer {
  readonly devices: readonly PreparedDevice[];
  readonly error: string;
}

export interface NodeServiceOptions {
  readonly host: HostFs;
  readonly store: BindingStore;
  readonly checkpoint: Checkpoint;
  readonly client: KubeClient;
  readonly driverName: string;
  readonly nodeName: string;
  readonly cdiDir: string;
  readonly log?: (line: string) => void;
  /** Called after the binds of a prepare and before its answer (the crash tests kill the process here). */
  readonly afterBind?: (claim: ClaimRef) => void;
}

interface AllocatedDevice {
  readonly request: string;
  readonly group: number;
}

export class NodeService {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: NodeServiceOptions) {}

  /** Prepare several claims; each gets its own answer. */
  async prepare(claims: readonly ClaimRef[]): Promise<Record<string, PrepareAnswer>> {
    const out: Record<string, PrepareAnswer> = {};
    for (const c of claims) {
      out[c.uid] = await this.serial(async () => {
        try {
          return { devices: await this.prepareOne(c), error: '' };
        } catch (err) {
          this.o.log?.(`prepare ${c.namespace}/${c.name} (${c.uid}) failed: ${describeError(err)}`);
          return { devices: [], error: describeError(err) };
        }
      });
    }
    return out;
  }

  async unprepare(claims: readonly ClaimRef[]): Promise<Record<string, { error: string }>> {
    const out: Record<string, { error: string }> = {};
    for (const c of claims) {
      out[c.uid] = await this.serial(async () => {
        try {
          this.unprepareOne(c);
          return { error: '' };
        } catch (err) {
          this.o.log?.(`unprepare ${c.namespace}/${c.name} (${c.uid}) failed: ${describeError(err)}`);
          return { error: describeError(err) };
        }
      });
    }
    return out;
  }

  private serial<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job, job);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async prepareOne(claim: ClaimRef): Promise<readonly PreparedDevice[]> {
    const { checkpoint, host, store, driverName } = this.o;
    const known = checkpoint.get(claim.uid);
    if (known?.state === 'prepared' && known.devices) {
      // A retry of a prepare that answered: same answer, spec still there.
      this.writeSpec(claim, known.groups);
      return known.devices;
    }
    const allocated = await this.allocation(claim);
    const groups = [...new Set(allocated.map((a) => a.group))];
    if (known && (known.groups.length !== groups.length || known.groups.some((g) => !groups.includes(g)))) {
      throw new DraError('DRA_CLAIM_CHANGED', `claim ${claim.namespace}/${claim.name} was being prepared with groups ${known.groups.join(', ')} but is now allocated groups ${groups.join(', ')}`, {
        hint: 'unprepare it (delete the pod) and let the scheduler allocate it again',
      });
    }
    for (const g of groups) {
      const owner = checkpoint.ownerOf(g, claim.uid);
      if (owner) {
        throw new DraError('DRA_GROUP_TAKEN', `IOMMU group ${g} is already prepared for claim ${owner.namespace}/${owner.name} (uid ${owner.uid}); one group serves one claim`, {
          hint: `the group is assigned whole: wait until ${owner.namespace}/${owner.name} is released, or request another group`,
        });
      }
    }
    if (!known) {
      // Only a first attempt checks offerability: a retry after a crash finds
      // its own groups half-bound, which is not a reason to refuse them.
      const inventory = takeInventory(host, { prepared: checkpoint.groups() });
      for (const g of groups) {
        if (inventory.offers.some((o) => o.group === g)) continue;
        const held = inventory.withheld.find((w) => w.group === g);
        throw new DraError('DRA_GROUP_UNAVAILABLE', held ? `cannot prepare ${deviceNameOf(g)} for ${claim.namespace}/${claim.name}: ${held.reason}` : `cannot prepare ${deviceNameOf(g)} for ${claim.namespace}/${claim.name}: IOMMU group ${g} is not on this host`, {
          hint: held?.fix ?? 'the slice is republished within one rescan; the scheduler will then allocate another device',
        });
      }
      checkpoint.put({ uid: claim.uid, namespace: claim.namespace, name: claim.name, state: 'preparing', groups });
    }
    const movedNow: { group: number; devices: string[] }[] = [];
    try {
      for (const g of groups) {
        const result = bindGroup(host, g, { store });
        movedNow.push({ group: g, devices: result.changes.map((c) => c.address) });
        this.o.log?.(`bound group ${g} for ${claim.namespace}/${claim.name}: ${result.changes.map((c) => `${c.address} ${c.from ?? 'none'} -> ${c.to ?? 'none'}`).join(', ') || 'already on vfio-pci'}`);
      }
    } catch (err) {
      // All or nothing across the claim: groups this call moved go back.
      const undo: string[] = [];
      for (const m of movedNow.reverse()) {
        if (m.devices.length === 0) continue;
        try {
          unbindGroup(host, m.group, { store, onlyRecorded: true, devices: m.devices });
          undo.push(`group ${m.group} put back`);
        } catch (again) {
          undo.push(`group ${m.group} could not be put back: ${describeError(again)}`);
        }
      }
      if (!known) checkpoint.remove(claim.uid);
      throw new DraError('DRA_PREPARE_FAILED', `preparing ${claim.namespace}/${claim.name} failed: ${describeError(err)}${undo.length ? `; ${undo.join('; ')}` : ''}`, {
        hint: (err as { hint?: string }).hint ?? 'the kubelet retries; vfiokit show GROUP tells the state of the host',
        cause: err,
      });
    }
    this.o.afterBind?.(claim);
    const specFile = this.writeSpec(claim, groups);
    const devices: PreparedDevice[] = allocated.map((a) => ({
      requestNames: [a.request],
      poolName: this.o.nodeName,
      deviceName: deviceNameOf(a.group),
      cdiDeviceIds: [cdiDeviceId(driverName, claim.uid, a.group)],
    }));
    checkpoint.put({ uid: claim.uid, namespace: claim.namespace, name: claim.name, state: 'prepared', groups, devices, cdiSpec: specFile });
    return devices;
  }

  private unprepareOne(claim: ClaimRef): void {
    const { checkpoint, host, store } = this.o;
    const known = checkpoint.get(claim.uid);
    // The kubelet unprepares what it may never have prepared (a retry after
    // success, a claim another plugin instance never saw): nothing to do.
    if (!known) return;
    const failed: string[] = [];
    for (const g of known.groups) {
      try {
        const r = unbindGroup(host, g, { store, onlyRecorded: true });
        this.o.log?.(`released group ${g} of ${claim.namespace}/${claim.name}: ${r.changes.map((c) => `${c.address} -> ${c.to ?? 'none'}`).join(', ') || 'nothing to give back'}`);
      } catch (err) {
        // A group that left the host (hot-unplugged) has nothing to give back.
        if ((err as { code?: string }).code === 'HOST_GROUP_NOT_FOUND') continue;
        failed.push(`group ${g}: ${describeError(err)}`);
      }
    }
    if (failed.length > 0) {
      throw new DraError('DRA_UNPREPARE_FAILED', `releasing ${claim.namespace}/${claim.name} failed: ${failed.join('; ')}`, {
        hint: 'the kubelet retries; the claim stays recorded until every group is given back',
      });
    }
    removeCdiSpec(cdiSpecFile(this.o.cdiDir, this.o.driverName, claim.uid));
    checkpoint.remove(claim.uid);
  }

  private writeSpec(claim: ClaimRef, groups: readonly number[]): string {
    const file = cdiSpecFile(this.o.cdiDir, this.o.driverName, claim.uid);
    const withAddresses = groups.map((g) => ({
      group: g,
      addresses: this.o.host.list(`/sys/kernel/iommu_groups/${g}/devices`),
    }));
    writeCdiSpec(file, buildCdiSpec(this.o.host, this.o.driverName, claim.uid, withAddresses));
    return file;
  }

  /** The claim's allocation results for this driver, checked against this node. */
  private async allocation(claim: ClaimRef): Promise<readonly AllocatedDevice[]> {
    const { client, driverName, nodeName } = this.o;
    const where = `${claim.namespace}/${claim.name}`;
    let body: any;
    try {
      body = (await client.request('GET', `${RESOURCE_API}/namespaces/${encodeURIComponent(claim.namespace)}/resourceclaims/${encodeURIComponent(claim.name)}`)).body;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) {
        throw new DraError('DRA_CLAIM_NOT_FOUND', `ResourceClaim ${where} does not exist`, { hint: 'the claim was deleted; the kubelet stops retrying once the pod is gone' });
      }
      throw err;
    }
    if (body?.metadata?.uid !== claim.uid) {
      throw new DraError('DRA_CLAIM_UID', `ResourceClaim ${where} has uid ${String(body?.metadata?.uid)}, not ${claim.uid}: it was deleted and created again`, {
        hint: 'the kubelet asks for the old claim; delete the pod so it is recreated with the new one',
      });
    }
    const results: any[] = body?.status?.allocation?.devices?.results ?? [];
    if (!body?.status?.allocation) {
      throw new DraError('DRA_CLAIM_NOT_ALLOCATED', `ResourceClaim ${where} is not allocated`, { hint: 'only the scheduler allocates claims; check the pod events' });
    }
    const ours = results.filter((r) => r.driver === driverName);
    if (ours.length === 0) {
      throw new DraError('DRA_CLAIM_NOT_OURS', `ResourceClaim ${where} has no device from driver ${driverName}`, {
        hint: `its devices come from ${[...new Set(results.map((r) => r.driver))].join(', ') || 'no driver'}`,
      });
    }
    const elsewhere = ours.filter((r) => r.pool !== nodeName);
    if (elsewhere.length > 0) {
      throw new DraError('DRA_CLAIM_OTHER_NODE', `ResourceClaim ${where} is allocated ${elsewhere.map((r) => `${r.device} from pool ${r.pool}`).join(', ')}, not from this node ${nodeName}`, {
        hint: `the claim must be prepared on node ${elsewhere[0].pool}; this node changed nothing`,
      });
    }
    return ours.map((r) => {
      const group = groupOfDeviceName(String(r.device));
      if (group === undefined) {
        throw new DraError('DRA_UNKNOWN_DEVICE', `ResourceClaim ${where} names device ${String(r.device)}, which driver ${driverName} never published`, {
          hint: 'devices of this driver are named group-N',
        });
      }
      return { request: String(r.request), group };
    });
  }
}
