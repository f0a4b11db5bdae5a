// A real Kubernetes control plane on loopback for tests: etcd, kube-apiserver
// and kube-scheduler (the binaries packages/dra/scripts/kube-binaries.sh
// builds and caches), each on a free 127.0.0.1 port, with a temporary folder
// that `stop()` removes. No controller-manager and no kubelet: the tests
// create Nodes themselves, and play the kubelet with kubelet-sim.
//
// Facts this follows (measured on this machine kind): the API server is
// ready in about 2 s and serves resource.k8s.io/v1 only; a Node created
// through the API gets the node.kubernetes.io/not-ready:NoSchedule taint,
// which only a controller-manager would remove, so `createNode` removes it.
import { spawn, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Cluster {
  /** https://127.0.0.1:PORT */
  readonly server: string;
  /** A kubeconfig with an admin token (system:masters). */
  readonly kubeconfig: string;
  readonly dir: string;
  /** JSON request as the admin; rejects on a non-2xx answer unless `accept` lists it. */
  api<T = any>(method: string, urlPath: string, body?: unknown, accept?: readonly number[], contentType?: string): Promise<{ status: number; body: T }>;
  /** Create a Node with no taints (what a kubelet plus a controller-manager would leave). */
  createNode(name: string): Promise<any>;
  /** Write a kubeconfig for this cluster with another token (or server) into the cluster's folder. */
  writeKubeconfig(name: string, o: { token?: string; server?: string }): string;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Folder with etcd, kube-apiserver and kube-scheduler. */
  readonly binDir: string;
  /** Start the scheduler (default true). */
  readonly scheduler?: boolean;
  /** Where the control plane's log lines go (default: kept in DIR/*.log only). */
  readonly log?: (line: string) => void;
  readonly readyTimeoutMs?: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const TOKEN = 'vfiokit-test-admin-token';
/** A user with no groups: what it may do, only RBAC rules bound to `vfiokit-dra-driver` say. */
export const DRIVER_TOKEN = 'vfiokit-test-driver-token';

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfiokit-kube-'));
  const children: ChildProcess[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const c of children.reverse()) await stopChild(c);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const start = (name: string, args: string[]) => {
      const out = fs.openSync(path.join(dir, `${name}.log`), 'a');
      const child = spawn(path.join(o.binDir, name), args, { stdio: ['ignore', out, out], detached: false });
      fs.closeSync(out);
      children.push(child);
      child.on('exit', (code, signal) => {
        if (!stopped) o.log?.(`${name} exited (${code ?? signal}); see ${dir}/${name}.log`);
      });
      return child;
    };
    start('etcd', [
      '--data-dir', path.join(dir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${etcdPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${etcdPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-cluster', `default=http://127.0.0.1:${peerPort}`,
      '--log-level', 'warn',
    ]);
    const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    fs.writeFileSync(path.join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    fs.writeFileSync(path.join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'tokens.csv'), `${TOKEN},admin,admin-uid,system:masters\n${DRIVER_TOKEN},vfiokit-dra-driver,driver-uid\n`, { mode: 0o600 });
    start('kube-apiserver', [
      '--etcd-servers', `http://127.0.0.1:${etcdPort}`,
      '--bind-address', '127.0.0.1',
      // No Service traffic goes anywhere: the kubernetes Service's endpoints are not kept.
      '--endpoint-reconciler-type', 'none',
      '--secure-port', String(apiPort),
      '--cert-dir', path.join(dir, 'certs'),
      '--token-auth-file', path.join(dir, 'tokens.csv'),
      '--authorization-mode', 'RBAC',
      '--service-account-issuer', `https://127.0.0.1:${apiPort}`,
      '--service-account-key-file', path.join(dir, 'sa.pub'),
      '--service-account-signing-key-file', path.join(dir, 'sa.key'),
      '--service-cluster-ip-range', '10.96.0.0/16',
      '--storage-media-type', 'application/json',
      ...(process.env.VFIOKIT_KUBE_AUDIT ? ['--audit-policy-file', auditPolicy(dir), '--audit-log-path', path.join(dir, 'audit.log')] : []),
    ]);
    const server = `https://127.0.0.1:${apiPort}`;
    const kubeconfigAt = (name: string, token: string, srv: string) => {
      const file = path.join(dir, name);
      fs.writeFileSync(
        file,
        [
          'apiVersion: v1', 'kind: Config', 'current-context: test',
          'clusters:', '- name: test', '  cluster:', `    server: ${srv}`, '    insecure-skip-tls-verify: true',
          'users:', '- name: test', '  user:', `    token: ${token}`,
          'contexts:', '- name: test', '  context:', '    cluster: test', '    user: test', '',
        ].join('\n'),
        { mode: 0o600 },
      );
      return file;
    };
    const kubeconfig = kubeconfigAt('admin.kubeconfig', TOKEN, server);
    const api = (method: string, urlPath: string, body?: unknown, accept: readonly number[] = [], contentType = 'application/json') =>
      request(server, method, urlPath, body, contentType).then((r) => {
        if ((r.status >= 200 && r.status < 300) || accept.includes(r.status)) return r;
        throw new Error(`${method} ${urlPath}: ${r.status} ${JSON.stringify(r.body).slice(0, 500)}`);
      });
    const deadline = Date.now() + (o.readyTimeoutMs ?? 120000);
    for (;;) {
      const r = await request(server, 'GET', '/readyz', undefined).catch(() => undefined);
      if (r?.status === 200) break;
      if (children.some((c) => c.exitCode !== null)) throw new Error(`the control plane did not start; logs in ${dir}: ${tail(dir)}`);
      if (Date.now() > deadline) throw new Error(`kube-apiserver was not ready within ${o.readyTimeoutMs ?? 120000} ms: ${tail(dir)}`);
      await sleep(250);
    }
    if (o.scheduler !== false) {
      start('kube-scheduler', ['--kubeconfig', kubeconfig, '--authentication-kubeconfig', kubeconfig, '--authorization-kubeconfig', kubeconfig, '--leader-elect=false', '--secure-port', '0']);
    }
    // The default namespace appears a moment after readyz.
    for (let i = 0; i < 200; i++) {
      const r = await api('GET', '/api/v1/namespaces/default', undefined, [404]);
      if (r.status === 200) break;
      await sleep(100);
    }
    // The ServiceAccount admission plugin wants the namespace's default
    // account, which only the controller-manager would create.
    await api('POST', '/api/v1/namespaces/default/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } }, [409]);
    return {
      server,
      kubeconfig,
      dir,
      api,
      async createNode(name: string) {
        await api('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name } } });
        await api('PATCH', `/api/v1/nodes/${name}`, [{ op: 'remove', path: '/spec/taints' }], [422], 'application/json-patch+json');
        // Ready and allocatable, as a kubelet reports them: the scheduler fits pods against allocatable.
        await api('PATCH', `/api/v1/nodes/${name}/status`, { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet-sim', lastHeartbeatTime: new Date().toISOString(), lastTransitionTime: new Date().toISOString() }], allocatable: { cpu: '4', memory: '8Gi', pods: '110' }, capacity: { cpu: '4', memory: '8Gi', pods: '110' } } }, [], 'application/strategic-merge-patch+json');
        return (await api('GET', `/api/v1/nodes/${name}`)).body;
      },
      writeKubeconfig(name: string, k: { token?: string; server?: string }) {
        return kubeconfigAt(name, k.token ?? TOKEN, k.server ?? server);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** VFIOKIT_KUBE_AUDIT=1: every write request in DIR/audit.log, for debugging a test. */
function auditPolicy(dir: string): string {
  const file = path.join(dir, 'audit-policy.yaml');
  fs.writeFileSync(file, 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  verbs: ["create", "update", "patch", "delete"]\n');
  return file;
}

function tail(dir: string): string {
  return ['etcd', 'kube-apiserver']
    .map((n) => {
      try {
        return `${n}: ${fs.readFileSync(path.join(dir, `${n}.log`), 'utf8').split('\n').slice(-5).join(' | ')}`;
      } catch {
        return '';
      }
    })
    .join('; ');
}

function request(server: string, method: string, urlPath: string, body: unknown, contentType = 'application/json'): Promise<{ status: number; body: any }> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(urlPath, server),
      {
        method,
        rejectUnauthorized: false,
        timeout: 30000,
        headers: { authorization: `Bearer ${TOKEN}`, accept: 'application/json', ...(payload ? { 'content-type': contentType, 'content-length': String(payload.length) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: any = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // readyz answers "ok"
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** SIGTERM, then SIGKILL after 10 s; resolves once the process is gone. */
export function stopChild(child: ChildProcess, graceMs = 10000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
