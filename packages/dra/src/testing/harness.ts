// The DRA end-to-end setup: a real control plane (testkit's startCluster),
// the node's simulated host (fixture dra-node, kept in a folder so the
// plugin process and the test see the same tree), the plugin as a real
// `vfiokit dra run` process, and kubelet-sim as the kubelet.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { DRIVER_TOKEN, fixtureHost, KubeletSim, startCluster, stopChild, type Cluster, type FixtureHost } from '@vfiokit/testkit';

const PACKAGE = path.join(__dirname, '..', '..');
export const CLI = path.join(PACKAGE, '..', 'cli', 'dist', 'main.js');
export const NODE = 'worker-1';
export const DRIVER = 'vfiokit.dev';

/** The cached binaries, built first if this machine has none (kube-binaries.sh). */
export function kubeBinDir(): string {
  const out = execFileSync('bash', [path.join(PACKAGE, 'scripts', 'kube-binaries.sh'), 'all'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return path.join(out.trim().split('\n').pop()!, 'bin');
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 60000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface Plugin {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly output: () => string;
}

/**
 * How a plugin process ended, or a rejection naming it and its output when it
 * has not ended within `ms`: a plugin that ignores a signal or a fault hook
 * that never fires must fail the case, not hang the file.
 */
export function exitOf(plugin: Plugin, what: string, ms = 60000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} had not exited after ${ms} ms; its output:\n${plugin.output()}`)), ms);
  });
  return Promise.race([plugin.exited, late]).finally(() => clearTimeout(timer));
}

export class DraLab {
  readonly dir: string;
  readonly hostDir: string;
  readonly pluginDir: string;
  readonly registryDir: string;
  readonly cdiDir: string;
  readonly kubelet: KubeletSim;
  driverKubeconfig = '';
  plugin?: Plugin;

  private constructor(
    readonly cluster: Cluster,
    readonly binDir: string,
  ) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfiokit-dra-'));
    this.hostDir = path.join(this.dir, 'host');
    this.pluginDir = path.join(this.dir, 'plugin');
    this.registryDir = path.join(this.dir, 'plugins_registry');
    this.cdiDir = path.join(this.dir, 'cdi');
    this.kubelet = new KubeletSim(path.join(binDir, 'kubelet-sim'));
  }

  static async start(): Promise<DraLab> {
    const binDir = kubeBinDir();
    const cluster = await startCluster({ binDir });
    try {
      const lab = new DraLab(cluster, binDir);
      await cluster.createNode(NODE);
      await lab.apply(path.join(PACKAGE, 'examples', 'rbac.yaml'));
      await lab.apply(path.join(PACKAGE, 'examples', 'deviceclass.yaml'));
      // The plugin runs as the driver's own account: the RBAC example is what it may do.
      lab.driverKubeconfig = cluster.writeKubeconfig('driver.kubeconfig', { token: DRIVER_TOKEN });
      return lab;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  /** The simulated host as it is now (the plugin process writes it). */
  host(): FixtureHost {
    return fixtureHost('dra-node', this.hostDir);
  }

  /** Create every object of a YAML file (or string) through the API. */
  async apply(fileOrText: string, namespace = 'default'): Promise<any[]> {
    const text = fs.existsSync(fileOrText) ? fs.readFileSync(fileOrText, 'utf8') : fileOrText;
    const created = [];
    for (const doc of parseAllDocuments(text)) {
      const obj = doc.toJSON();
      if (!obj) continue;
      created.push((await this.cluster.api('POST', collectionPath(obj, namespace), obj)).body);
    }
    return created;
  }

  async startPlugin(extraEnv: Record<string, string> = {}, args: string[] = []): Promise<Plugin> {
    const plugin = this.spawnPlugin(extraEnv, args);
    this.plugin = plugin;
    await waitFor('the plugin registration socket', () => fs.existsSync(path.join(this.registryDir, `${DRIVER}-reg.sock`)) || (plugin.child.exitCode !== null ? Promise.reject(new Error(`plugin exited: ${plugin.output()}`)) : undefined));
    // A killed plugin leaves its socket behind until the new one replaces it:
    // like the kubelet's plugin watcher, try again until this one answers.
    let last = '';
    await waitFor('the plugin to register', async () => {
      if (plugin.child.exitCode !== null) throw new Error(`plugin exited: ${plugin.output()}`);
      const reg = await this.kubelet.register(this.registryDir, 5000);
      last = reg.error ?? '';
      return reg.ok ? true : undefined;
    }).catch((err) => {
      throw new Error(`registration failed: ${last}; ${(err as Error).message}`);
    });
    return plugin;
  }

  spawnPlugin(extraEnv: Record<string, string> = {}, args: string[] = [], kubeconfig = this.driverKubeconfig): Plugin {
    const child = spawn(
      process.execPath,
      [CLI, '--mock', 'dra-node', '--mock-dir', this.hostDir, 'dra', 'run', '--node', NODE, '--kubeconfig', kubeconfig,
        '--plugin-dir', this.pluginDir, '--registry-dir', this.registryDir, '--cdi-dir', this.cdiDir, '--rescan', '0.3', ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...extraEnv } },
    );
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    return { child, exited, output: () => out };
  }

  get endpoint(): string {
    return path.join(this.pluginDir, 'dra.sock');
  }

  async stopPlugin(): Promise<void> {
    if (this.plugin) await stopChild(this.plugin.child, 20000);
    this.plugin = undefined;
  }

  /** The devices this driver publishes for the node, by name. */
  async publishedDevices(): Promise<Map<string, any>> {
    const { body } = await this.cluster.api('GET', `/apis/resource.k8s.io/v1/resourceslices?fieldSelector=spec.nodeName=${NODE}`);
    const slices = (body.items as any[]).filter((s) => s.spec.driver === DRIVER);
    const top = Math.max(0, ...slices.map((s) => s.spec.pool.generation));
    return new Map(slices.filter((s) => s.spec.pool.generation === top).flatMap((s) => (s.spec.devices ?? []).map((d: any) => [d.name, d])));
  }

  async claim(name: string, namespace = 'default'): Promise<any> {
    return (await this.cluster.api('GET', `/apis/resource.k8s.io/v1/namespaces/${namespace}/resourceclaims/${name}`)).body;
  }

  async pod(name: string, namespace = 'default'): Promise<any> {
    return (await this.cluster.api('GET', `/api/v1/namespaces/${namespace}/pods/${name}`)).body;
  }

  /** A claim for one device matching `cel`, and a pod that uses it. */
  async claimAndPod(name: string, cel: string): Promise<void> {
    await this.apply(`
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: ${name}, namespace: default}
spec:
  devices:
    requests:
    - name: group
      exactly:
        deviceClassName: vfio-group
        selectors:
        - cel:
            expression: '${cel}'
---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default}
spec:
  resourceClaims: [{name: group, resourceClaimName: ${name}}]
  containers: [{name: vm, image: virt-launcher, resources: {claims: [{name: group}]}}]
`);
  }

  async scheduledClaim(name: string, claimName = name): Promise<{ ref: { namespace: string; uid: string; name: string }; devices: string[] }> {
    const pod = await waitFor(`pod ${name} to be scheduled`, async () => {
      const p = await this.pod(name);
      return p.spec.nodeName ? p : undefined;
    }).catch(async (err) => {
      const p = await this.pod(name).catch(() => undefined);
      throw new Error(`${(err as Error).message}; pod status ${JSON.stringify(p?.status)}; scheduler: ${this.schedulerLog().slice(-1500)}`);
    });
    if (pod.spec.nodeName !== NODE) throw new Error(`pod ${name} went to ${pod.spec.nodeName}`);
    const claim = await this.claim(claimName);
    return {
      ref: { namespace: 'default', uid: claim.metadata.uid, name: claimName },
      devices: (claim.status?.allocation?.devices?.results ?? []).map((r: any) => `${r.driver}/${r.pool}/${r.device}`),
    };
  }

  /**
   * Delete a pod and its claim the way a cluster does: the pod goes (grace 0:
   * no kubelet will confirm it), then what kube-controller-manager's
   * resourceclaim controller would do, which this control plane lacks: the
   * claim's reservation and allocation are cleared (the scheduler then frees
   * its devices) and its delete-protection finalizer removed.
   */
  async deletePodAndClaim(name: string, claimName = name): Promise<void> {
    await this.cluster.api('DELETE', `/api/v1/namespaces/default/pods/${name}?gracePeriodSeconds=0`, undefined, [404]);
    await waitFor(`pod ${name} to go`, async () => (await this.cluster.api('GET', `/api/v1/namespaces/default/pods/${name}`, undefined, [404])).status === 404);
    await this.releaseClaim(claimName);
  }

  async releaseClaim(claimName: string): Promise<void> {
    const url = `/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/${claimName}`;
    const claim = (await this.cluster.api('GET', url, undefined, [404])).body;
    if (claim?.metadata?.uid) {
      await this.cluster.api('PUT', `${url}/status`, { ...claim, status: {} });
      await this.cluster.api('PATCH', url, { metadata: { finalizers: null } }, [404], 'application/merge-patch+json');
      await this.cluster.api('DELETE', url, undefined, [404]);
    }
  }

  /**
   * A claim whose allocation the test writes itself (as the admin, through
   * the status subresource), to ask the plugin for what the scheduler would
   * never give: a group already taken, a device from another node's pool.
   */
  async forgedClaim(name: string, pool: string, device: string): Promise<{ namespace: string; uid: string; name: string }> {
    const [created] = await this.apply(`
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: ${name}, namespace: default}
spec:
  devices:
    requests:
    - name: group
      exactly: {deviceClassName: vfio-group}
`);
    const status = { ...created, status: { allocation: { devices: { results: [{ request: 'group', driver: DRIVER, pool, device }] } } } };
    await this.cluster.api('PUT', `/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/${name}/status`, status);
    return { namespace: 'default', uid: created.metadata.uid, name };
  }

  schedulerLog(): string {
    try {
      return fs.readFileSync(path.join(this.cluster.dir, 'kube-scheduler.log'), 'utf8');
    } catch {
      return '';
    }
  }

  checkpoint(): any {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.pluginDir, 'checkpoint.json'), 'utf8'));
    } catch {
      return { claims: {} };
    }
  }

  /** The binding records core keeps for the simulated host (one per device vfiokit moved). */
  bindingRecords(): string[] {
    const dir = path.join(this.hostDir, 'run', 'vfiokit', 'devices');
    return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort() : [];
  }

  async stop(): Promise<void> {
    await this.stopPlugin().catch(() => undefined);
    await this.kubelet.stop().catch(() => undefined);
    await this.cluster.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function collectionPath(obj: any, namespace: string): string {
  const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
  const base = group ? `/apis/${group}/${version}` : `/api/${version}`;
  const plural = `${obj.kind.toLowerCase()}${obj.kind.endsWith('s') ? 'es' : 's'}`;
  const cluster = ['DeviceClass', 'ClusterRole', 'ClusterRoleBinding', 'Node', 'Namespace'].includes(obj.kind);
  return cluster ? `${base}/${plural}` : `${base}/namespaces/${obj.metadata.namespace ?? namespace}/${plural}`;
}
