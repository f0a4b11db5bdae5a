// `pnpm bench` for the DRA driver, against a real kube-apiserver on loopback:
// 1. publishing the slices of a node with 256 single-function groups (two
//    slices: the API takes 128 devices a slice), beside a node with 8, and a
//    rescan that finds nothing changed (one LIST, no write);
// 2. prepare and unprepare latency per claim, through the real gRPC wire
//    (kubelet-sim, Kubernetes' own client) and a real claim read from the API
//    server: median, p90, p99 and max.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileBindingStore } from '@vfiokit/core';
import { createFixtureHostFromSpec, KubeletSim, manyGroupsSpec, startCluster, type Cluster } from '@vfiokit/testkit';
import { Checkpoint } from '../checkpoint';
import { PluginServers } from '../grpc';
import { takeInventory } from '../inventory';
import { KubeClient, loadKubeConfig, RESOURCE_API } from '../kube';
import { NodeService } from '../node-service';
import { SlicePublisher } from '../slices';

const DRIVER = 'vfiokit.dev';

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function row(label: string, ...cols: (string | number)[]): void {
  console.log(`  ${label.padEnd(44)}${cols.map((c) => String(c).padStart(12)).join('')}`);
}

function binDir(): string {
  const script = path.join(__dirname, '..', '..', 'scripts', 'kube-binaries.sh');
  return path.join(execFileSync('bash', [script, 'all'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop()!, 'bin');
}

async function publishBench(cluster: Cluster, work: string): Promise<void> {
  console.log('\n1. publishing ResourceSlices (median of 7 after a warm-up; ms)');
  row('', 'inventory', 'publish', 'no-change', 'slices');
  for (const groups of [8, 256]) {
    const node = `bench-${groups}`;
    const uid = (await cluster.createNode(node)).metadata.uid;
    const host = createFixtureHostFromSpec(manyGroupsSpec(groups), path.join(work, node));
    const client = new KubeClient(loadKubeConfig(cluster.kubeconfig));
    const publisher = new SlicePublisher({ client, driverName: DRIVER, nodeName: node, nodeUid: uid });
    const inv: number[] = [];
    const pub: number[] = [];
    const idle: number[] = [];
    for (let i = 0; i < 8; i++) {
      let t0 = process.hrtime.bigint();
      const { offers } = takeInventory(host.fs);
      inv.push(ms(t0));
      t0 = process.hrtime.bigint();
      await publisher.publish(offers, true);
      pub.push(ms(t0));
      t0 = process.hrtime.bigint();
      await publisher.publish(offers);
      idle.push(ms(t0));
    }
    const med = (xs: number[]) => quantile(xs.slice(1).sort((a, b) => a - b), 0.5).toFixed(1);
    const slices = (await publisher.current()).length;
    row(`${groups} groups`, med(inv), med(pub), med(idle), slices);
    await publisher.withdraw();
    client.close();
  }
}

async function prepareBench(cluster: Cluster, work: string, kubeletSim: string): Promise<void> {
  const claims = 100;
  console.log(`\n2. prepare / unprepare latency per claim over gRPC, ${claims} claims of one group each (ms)`);
  const node = 'bench-prepare';
  await cluster.createNode(node);
  const host = createFixtureHostFromSpec(manyGroupsSpec(claims), path.join(work, node));
  const client = new KubeClient(loadKubeConfig(cluster.kubeconfig));
  const pluginDir = path.join(work, 'plugin');
  const checkpoint = new Checkpoint(path.join(pluginDir, 'checkpoint.json'));
  const service = new NodeService({
    host: host.fs, store: fileBindingStore(path.join(host.root, 'run', 'vfiokit')), checkpoint, client,
    driverName: DRIVER, nodeName: node, cdiDir: path.join(work, 'cdi'),
  });
  const sockets = { registration: path.join(work, 'registry', `${DRIVER}-reg.sock`), dra: path.join(pluginDir, 'dra.sock') };
  const servers = await PluginServers.start({ sockets, driverName: DRIVER, service });
  const sim = new KubeletSim(kubeletSim);
  try {
    const refs = [];
    for (let i = 0; i < claims; i++) {
      const name = `bench-${i}`;
      const created = (await cluster.api('POST', `${RESOURCE_API}/namespaces/default/resourceclaims`, {
        apiVersion: 'resource.k8s.io/v1', kind: 'ResourceClaim', metadata: { name },
        spec: { devices: { requests: [{ name: 'group', exactly: { deviceClassName: 'vfio-group' } }] } },
      })).body;
      await cluster.api('PUT', `${RESOURCE_API}/namespaces/default/resourceclaims/${name}/status`, {
        ...created, status: { allocation: { devices: { results: [{ request: 'group', driver: DRIVER, pool: node, device: `group-${100 + i}` }] } } },
      });
      refs.push({ namespace: 'default', uid: created.metadata.uid, name });
    }
    const prep: number[] = [];
    const unprep: number[] = [];
    for (const ref of refs) {
      const t0 = process.hrtime.bigint();
      const r = await sim.prepare(sockets.dra, [ref]);
      prep.push(ms(t0));
      if (r.claims?.[ref.uid]?.error !== '') throw new Error(`prepare failed: ${JSON.stringify(r)}`);
    }
    for (const ref of refs) {
      const t0 = process.hrtime.bigint();
      const r = await sim.unprepare(sockets.dra, [ref]);
      unprep.push(ms(t0));
      if (r.claims?.[ref.uid]?.error !== '') throw new Error(`unprepare failed: ${JSON.stringify(r)}`);
    }
    row('', 'median', 'p90', 'p99', 'max');
    for (const [label, xs] of [['prepare (claim read + bind + CDI + checkpoint)', prep], ['unprepare (restore + remove spec + checkpoint)', unprep]] as const) {
      const s = [...xs].sort((a, b) => a - b);
      row(label, quantile(s, 0.5).toFixed(1), quantile(s, 0.9).toFixed(1), quantile(s, 0.99).toFixed(1), s[s.length - 1]!.toFixed(1));
    }
  } finally {
    await sim.stop();
    await servers.stop();
    client.close();
  }
}

async function main(): Promise<void> {
  const bins = binDir();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vfiokit-dra-bench-'));
  const cluster = await startCluster({ binDir: bins, scheduler: false });
  try {
    console.log(`DRA driver bench: kube-apiserver ${execFileSync(path.join(bins, 'kube-apiserver'), ['--version'], { encoding: 'utf8' }).trim()} on loopback, simulated hosts`);
    await cluster.api('POST', `${RESOURCE_API}/deviceclasses`, { apiVersion: 'resource.k8s.io/v1', kind: 'DeviceClass', metadata: { name: 'vfio-group' }, spec: { selectors: [{ cel: { expression: `device.driver == "${DRIVER}"` } }] } });
    await publishBench(cluster, work);
    await prepareBench(cluster, work, path.join(bins, 'kubelet-sim'));
  } finally {
    await cluster.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
