// Publishing the node's offers as ResourceSlices (resource.k8s.io/v1): one
// pool named after the node, split into slices of at most 128 devices (the
// API's ResourceSliceMaxDevices), every slice of a publication carrying the
// same pool generation, bumped whenever the devices change, so the scheduler
// never mixes an old slice with a new one (it uses the highest generation it
// sees: k8s.io/dynamic-resource-allocation/structured). The slices are owned
// by the Node object, so they go when the node goes.
import type { GroupOffer } from './inventory';
import { RESOURCE_API, type KubeClient } from './kube';

export const MAX_DEVICES_PER_SLICE = 128;

export interface PublisherOptions {
  readonly client: KubeClient;
  readonly driverName: string;
  readonly nodeName: string;
  readonly nodeUid: string;
  readonly log?: (line: string) => void;
}

/** The slice names of this driver on this node: `<node>-<driver>-<i>`, a DNS subdomain. */
export function sliceName(nodeName: string, driverName: string, index: number): string {
  return `${nodeName}-${driverName}-${index}`.toLowerCase().replace(/[^a-z0-9.-]/g, '-').slice(0, 253);
}

/** The slice objects for one publication. */
export function buildSlices(o: Omit<PublisherOptions, 'client'>, offers: readonly GroupOffer[], generation: number): any[] {
  const chunks: GroupOffer[][] = [];
  for (let i = 0; i < offers.length; i += MAX_DEVICES_PER_SLICE) chunks.push(offers.slice(i, i + MAX_DEVICES_PER_SLICE) as GroupOffer[]);
  if (chunks.length === 0) chunks.push([]); // an empty pool still says "this node has none"
  return chunks.map((chunk, i) => ({
    apiVersion: 'resource.k8s.io/v1',
    kind: 'ResourceSlice',
    metadata: {
      name: sliceName(o.nodeName, o.driverName, i),
      ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: o.nodeName, uid: o.nodeUid, controller: true }],
    },
    spec: {
      driver: o.driverName,
      nodeName: o.nodeName,
      pool: { name: o.nodeName, generation, resourceSliceCount: chunks.length },
      devices: chunk.map((g) => ({ name: g.name, attributes: g.attributes })),
    },
  }));
}

export class SlicePublisher {
  private generation = 0;
  private published?: string;

  constructor(private readonly o: PublisherOptions) {}

  /** The slices this driver has for this node now, as the API server lists them. */
  async current(): Promise<any[]> {
    const selector = encodeURIComponent(`spec.nodeName=${this.o.nodeName},spec.driver=${this.o.driverName}`);
    const { body } = await this.o.client.request('GET', `${RESOURCE_API}/resourceslices?fieldSelector=${selector}`);
    return body?.items ?? [];
  }

  /**
   * Make the slices say `offers`. Without `force` nothing is sent when the
   * offers are what was last published. Returns true when it wrote.
   */
  async publish(offers: readonly GroupOffer[], force = false): Promise<boolean> {
    const key = JSON.stringify(offers.map((g) => [g.name, g.attributes]));
    const existing = await this.current();
    const existingByName = new Map(existing.map((s) => [s.metadata.name as string, s]));
    const maxSeen = Math.max(0, ...existing.map((s) => Number(s.spec?.pool?.generation ?? 0)));
    if (!force && key === this.published && existing.length > 0) {
      const wanted = buildSlices(this.o, offers, this.generation);
      const intact =
        wanted.length === existing.length &&
        wanted.every((w) => existingByName.get(w.metadata.name)?.spec?.pool?.generation === this.generation);
      if (intact) return false;
    }
    // Continue from what the API server holds: a restarted plugin must not go back in generation.
    this.generation = Math.max(this.generation, maxSeen) + 1;
    const slices = buildSlices(this.o, offers, this.generation);
    for (const slice of slices) {
      const old = existingByName.get(slice.metadata.name);
      if (old) {
        slice.metadata.resourceVersion = old.metadata.resourceVersion;
        await this.o.client.request('PUT', `${RESOURCE_API}/resourceslices/${slice.metadata.name}`, { body: slice });
        this.o.log?.(`updated slice ${slice.metadata.name} to generation ${this.generation}`);
        existingByName.delete(slice.metadata.name);
      } else {
        await this.o.client.request('POST', `${RESOURCE_API}/resourceslices`, { body: slice });
        this.o.log?.(`created slice ${slice.metadata.name} at generation ${this.generation}`);
      }
    }
    for (const name of existingByName.keys()) {
      await this.o.client.request('DELETE', `${RESOURCE_API}/resourceslices/${name}`, { accept: [404] });
    }
    this.published = key;
    return true;
  }

  /** Delete every slice of this driver on this node (a clean shutdown). */
  async withdraw(): Promise<number> {
    const existing = await this.current();
    for (const s of existing) {
      await this.o.client.request('DELETE', `${RESOURCE_API}/resourceslices/${s.metadata.name}`, { accept: [404] });
      this.o.log?.(`deleted slice ${s.metadata.name} (generation ${s.spec?.pool?.generation})`);
    }
    this.published = undefined;
    return existing.length;
  }

  get currentGeneration(): number {
    return this.generation;
  }
}
