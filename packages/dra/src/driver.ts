// The driver as one running thing: check the API server and the node first
// (a bad kubeconfig or an unreachable server fails before anything is
// created), serve the kubelet's two gRPC services, publish the node's groups
// and follow the host: every `rescanMs` the host is read again and the slices
// change when the offers do, so a device unbound or unplugged behind the
// driver's back leaves the slice within one rescan (plus one API round trip).
// Stopping withdraws the slices and leaves prepared claims as they are: the
// checkpoint keeps them for the next start.
import * as path from 'node:path';
import type { BindingStore, HostFs } from '@vfiokit/core';
import { writeFileAtomic } from './atomic';
import { Checkpoint } from './checkpoint';
import { describeError, DraError, KubeApiError } from './errors';
import { PluginServers, type RegistrationEvent } from './grpc';
import { takeInventory, type Inventory } from './inventory';
import { KubeClient, loadKubeConfig } from './kube';
import { NodeService, type ClaimRef } from './node-service';
import { SlicePublisher } from './slices';

export const DEFAULT_DRIVER_NAME = 'vfiokit.dev';
export const DEFAULT_REGISTRY_DIR = '/var/lib/kubelet/plugins_registry';
export const DEFAULT_CDI_DIR = '/var/run/cdi';

export function defaultPluginDir(driverName: string): string {
  return `/var/lib/kubelet/plugins/${driverName}`;
}

export interface DriverOptions {
  readonly host: HostFs;
  readonly store: BindingStore;
  readonly nodeName: string;
  readonly kubeconfig: string;
  readonly driverName?: string;
  /** Holds dra.sock, the checkpoint and status.json. */
  readonly pluginDir?: string;
  /** The kubelet's plugins_registry folder. */
  readonly registryDir?: string;
  readonly cdiDir?: string;
  /** How often the host is read again. */
  readonly rescanMs?: number;
  readonly log?: (line: string) => void;
  readonly afterBind?: (claim: ClaimRef) => void;
}

/** What `vfiokit dra status` shows of a running driver (status.json in the plugin folder). */
export interface DriverStatus {
  readonly driverName: string;
  readonly nodeName: string;
  readonly pid: number;
  readonly generation: number;
  readonly publishedAt?: string;
  readonly lastError?: string;
  readonly registered?: RegistrationEvent;
  readonly inventory: Inventory;
}

export class DraDriver {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private tick: Promise<void> = Promise.resolve();
  private lastError?: string;
  private publishedAt?: string;
  private registered?: RegistrationEvent;
  private inventory: Inventory = { offers: [], withheld: [] };

  private constructor(
    readonly options: Required<Omit<DriverOptions, 'log' | 'afterBind'>> & Pick<DriverOptions, 'log' | 'afterBind'>,
    private readonly client: KubeClient,
    private readonly publisher: SlicePublisher,
    private readonly checkpoint: Checkpoint,
    private servers?: PluginServers,
  ) {}

  static async start(input: DriverOptions): Promise<DraDriver> {
    const driverName = input.driverName ?? DEFAULT_DRIVER_NAME;
    const o = {
      ...input,
      driverName,
      pluginDir: input.pluginDir ?? defaultPluginDir(driverName),
      registryDir: input.registryDir ?? DEFAULT_REGISTRY_DIR,
      cdiDir: input.cdiDir ?? DEFAULT_CDI_DIR,
      rescanMs: input.rescanMs ?? 5000,
    };
    const client = new KubeClient(loadKubeConfig(o.kubeconfig));
    try {
      const node = await findNode(client, o.nodeName);
      const checkpoint = new Checkpoint(path.join(o.pluginDir, 'checkpoint.json'));
      const publisher = new SlicePublisher({ client, driverName, nodeName: o.nodeName, nodeUid: node.metadata.uid, ...(o.log ? { log: o.log } : {}) });
      const driver = new DraDriver(o, client, publisher, checkpoint);
      const service = new NodeService({
        host: o.host, store: o.store, checkpoint, client, driverName, nodeName: o.nodeName, cdiDir: o.cdiDir,
        ...(o.log ? { log: o.log } : {}),
        ...(o.afterBind ? { afterBind: o.afterBind } : {}),
      });
      // Publish before registering: a kubelet that sees the plugin can expect its slices.
      await driver.rescan(true);
      if (driver.lastError) throw new DraError('DRA_PUBLISH', `publishing the slices of node ${o.nodeName} failed: ${driver.lastError}`);
      driver.servers = await PluginServers.start({
        sockets: { registration: path.join(o.registryDir, `${driverName}-reg.sock`), dra: path.join(o.pluginDir, 'dra.sock') },
        driverName,
        service,
        onRegistration: (e) => {
          driver.registered = e;
          o.log?.(e.registered ? 'the kubelet registered the plugin' : `the kubelet refused the plugin: ${e.error}`);
          driver.writeStatus();
        },
      });
      driver.schedule();
      o.log?.(`serving ${driverName} on node ${o.nodeName}: ${driver.inventory.offers.length} groups published, ${driver.inventory.withheld.length} withheld`);
      return driver;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** Read the host again and republish when the offers changed (or always, with `force`). */
  rescan(force = false): Promise<void> {
    this.tick = this.tick.then(async () => {
      if (this.stopped) return;
      try {
        this.inventory = takeInventory(this.options.host, { prepared: this.checkpoint.groups() });
        if (await this.publisher.publish(this.inventory.offers, force)) {
          this.publishedAt = new Date().toISOString();
          this.options.log?.(`published generation ${this.publisher.currentGeneration}: ${this.inventory.offers.map((g) => g.name).join(', ') || 'no groups'}`);
        }
        this.lastError = undefined;
      } catch (err) {
        const text = describeError(err);
        if (text !== this.lastError) this.options.log?.(`rescan failed (retrying every ${this.options.rescanMs} ms): ${text}`);
        this.lastError = text;
      }
      this.writeStatus();
    });
    return this.tick;
  }

  status(): DriverStatus {
    return {
      driverName: this.options.driverName,
      nodeName: this.options.nodeName,
      pid: process.pid,
      generation: this.publisher.currentGeneration,
      inventory: this.inventory,
      ...(this.publishedAt ? { publishedAt: this.publishedAt } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      ...(this.registered ? { registered: this.registered } : {}),
    };
  }

  /** Stop serving, withdraw the slices; prepared claims stay (the checkpoint keeps them). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    // Node unrefs idle keep-alive sockets: once the gRPC servers close, nothing
    // else would keep the process alive until the slices are withdrawn.
    const hold = setInterval(() => {}, 1000);
    try {
      await this.tick;
      await this.servers?.stop();
      const n = await this.publisher.withdraw();
      this.options.log?.(`withdrew ${n} slice(s) of node ${this.options.nodeName}`);
    } finally {
      clearInterval(hold);
      this.client.close();
    }
  }

  private schedule(): void {
    let ticks = 0;
    const next = () => {
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        // Every 12th rescan republishes even if nothing changed here: a
        // slice deleted or edited by someone else is put right.
        void this.rescan(++ticks % 12 === 0).then(next);
      }, this.options.rescanMs);
    };
    next();
  }

  private writeStatus(): void {
    try {
      writeFileAtomic(path.join(this.options.pluginDir, 'status.json'), JSON.stringify(this.status(), null, 2) + '\n', 0o644);
    } catch {
      // status.json is for people; a full disk must not stop the driver.
    }
  }
}

async function findNode(client: KubeClient, nodeName: string): Promise<any> {
  try {
    return (await client.request('GET', `/api/v1/nodes/${encodeURIComponent(nodeName)}`)).body;
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) {
      throw new DraError('DRA_NODE_NOT_FOUND', `node ${nodeName} is not registered with the API server ${client.config.server}`, {
        hint: `pass --node with this machine's node name (kubectl get nodes); the kubelet registers it`,
      });
    }
    throw err;
  }
}
