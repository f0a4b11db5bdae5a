// A small client for the Kubernetes API: what the driver needs (ResourceSlices,
// ResourceClaims, Nodes) and no more. A kubeconfig is read the way kubectl
// reads one (current-context, clusters, users; inline *-data or file paths;
// bearer tokens or client certificates), and every request goes over
// node:https with the cluster's CA. Errors name the file, the server and
// the fix.
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DraError, KubeApiError } from './errors';

export interface KubeConfig {
  readonly server: string;
  readonly ca?: Buffer;
  readonly insecureSkipTlsVerify: boolean;
  readonly token?: string;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  /** The file it came from, for messages. */
  readonly source: string;
}

type Named<T> = { name: string } & Record<string, T>;

/** Read a kubeconfig file; throws DRA_KUBECONFIG naming the file and what is wrong. */
export function loadKubeConfig(file: string): KubeConfig {
  const bad = (why: string, cause?: unknown) =>
    new DraError('DRA_KUBECONFIG', `kubeconfig ${file} ${why}`, {
      hint: 'pass --kubeconfig with a file kubectl accepts (kubectl --kubeconfig FILE get nodes)',
      cause,
    });
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw bad(`cannot be read: ${(err as Error).message}`, err);
  }
  let doc: any;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw bad(`is not YAML: ${(err as Error).message}`, err);
  }
  if (!doc || typeof doc !== 'object' || !Array.isArray(doc.clusters) || !Array.isArray(doc.contexts)) {
    throw bad('has no clusters and contexts lists');
  }
  const ctxName: string | undefined = doc['current-context'];
  const ctx = (doc.contexts as Named<any>[]).find((c) => c.name === ctxName) ?? (doc.contexts.length === 1 ? doc.contexts[0] : undefined);
  if (!ctx?.context) throw bad(ctxName ? `has no context named '${ctxName}'` : 'sets no current-context');
  const cluster = (doc.clusters as Named<any>[]).find((c) => c.name === ctx.context.cluster)?.cluster;
  if (!cluster?.server) throw bad(`has no cluster '${ctx.context.cluster}' with a server`);
  const user = (doc.users as Named<any>[] | undefined)?.find((u) => u.name === ctx.context.user)?.user ?? {};
  const dir = path.dirname(file);
  const blob = (data: unknown, fileRef: unknown, what: string): Buffer | undefined => {
    if (typeof data === 'string') return Buffer.from(data, 'base64');
    if (typeof fileRef === 'string') {
      try {
        return fs.readFileSync(path.resolve(dir, fileRef));
      } catch (err) {
        throw bad(`names ${what} ${fileRef}, which cannot be read: ${(err as Error).message}`, err);
      }
    }
    return undefined;
  };
  let server: URL;
  try {
    server = new URL(cluster.server);
  } catch (err) {
    throw bad(`has a server that is not a URL: ${cluster.server}`, err);
  }
  if (server.protocol !== 'https:') throw bad(`has server ${cluster.server}: only https API servers are supported`);
  let token: string | undefined = typeof user.token === 'string' ? user.token : undefined;
  if (token === undefined && typeof user.tokenFile === 'string') token = blob(undefined, user.tokenFile, 'tokenFile')?.toString('utf8').trim();
  const ca = blob(cluster['certificate-authority-data'], cluster['certificate-authority'], 'certificate-authority');
  const cert = blob(user['client-certificate-data'], user['client-certificate'], 'client-certificate');
  const key = blob(user['client-key-data'], user['client-key'], 'client-key');
  return {
    server: server.origin,
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
    source: file,
    ...(ca ? { ca } : {}),
    ...(token ? { token } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
  };
}

export interface RequestOptions {
  readonly body?: unknown;
  readonly contentType?: string;
  /** Statuses that are answers rather than errors (404 on a delete, say). */
  readonly accept?: readonly number[];
  readonly timeoutMs?: number;
}

export interface KubeResponse<T = any> {
  readonly status: number;
  readonly body: T;
}

/** An API server connection. One keep-alive agent: the driver calls it every few seconds. */
export class KubeClient {
  private readonly agent: https.Agent;

  constructor(readonly config: KubeConfig) {
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets: 4,
      ...(config.ca ? { ca: config.ca } : {}),
      ...(config.cert ? { cert: config.cert } : {}),
      ...(config.key ? { key: config.key } : {}),
      rejectUnauthorized: !config.insecureSkipTlsVerify,
    });
  }

  close(): void {
    this.agent.destroy();
  }

  async request<T = any>(method: string, urlPath: string, options: RequestOptions = {}): Promise<KubeResponse<T>> {
    const url = new URL(urlPath, this.config.server);
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.config.token) headers.authorization = `Bearer ${this.config.token}`;
    if (payload) {
      headers['content-type'] = options.contentType ?? 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const timeoutMs = options.timeoutMs ?? 15000;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = https.request(url, { method, headers, agent: this.agent, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err) => reject(this.unreachable(method, url, err)));
      req.end(payload);
    });
    let body: any;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = text;
    }
    if ((status >= 200 && status < 300) || options.accept?.includes(status)) return { status, body };
    const reason = typeof body === 'object' && body?.reason ? String(body.reason) : String(status);
    const message = typeof body === 'object' && body?.message ? String(body.message) : text.slice(0, 300);
    const hint =
      status === 401
        ? `the credentials in ${this.config.source} are not accepted: renew the token or certificate`
        : status === 403
          ? `give the driver's account the RBAC rules in packages/dra/examples/rbac.yaml`
          : undefined;
    throw new KubeApiError(status, reason, `${method} ${url.pathname} on ${this.config.server} answered ${status} ${reason}: ${message}`, hint ? { hint } : {});
  }

  private unreachable(method: string, url: URL, err: Error): DraError {
    const code = (err as NodeJS.ErrnoException).code;
    return new DraError(
      'DRA_KUBE_UNREACHABLE',
      `the API server ${this.config.server} (from ${this.config.source}) cannot be reached for ${method} ${url.pathname}: ${code ?? err.message}`,
      {
        hint: code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' ? 'check that the API server is running and the kubeconfig names its address' : 'check the server address and the certificate authority in the kubeconfig',
        cause: err,
      },
    );
  }
}

export const RESOURCE_API = '/apis/resource.k8s.io/v1';
