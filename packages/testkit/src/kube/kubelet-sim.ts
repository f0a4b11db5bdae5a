// The kubelet's side of DRA, played by packages/dra/kubelet-sim (Go, with
// Kubernetes' own generated gRPC clients): one process, one JSON request a
// line, one JSON answer a line.
import { spawn, type ChildProcess } from 'node:child_process';
import * as readline from 'node:readline';
import { stopChild } from './cluster';

export interface SimClaim {
  readonly namespace: string;
  readonly uid: string;
  readonly name: string;
}

export interface SimAnswer {
  readonly ok: boolean;
  readonly error?: string;
  readonly code?: string;
  readonly info?: { type: string; name: string; endpoint: string; supportedVersions: string[] };
  readonly claims?: Record<string, { devices?: { requestNames: string[]; poolName: string; deviceName: string; cdiDeviceIds: string[] }[]; error: string }>;
  readonly elapsedMs: number;
}

export class KubeletSim {
  private readonly child: ChildProcess;
  private readonly waiting: ((line: string) => void)[] = [];
  private queue: Promise<unknown> = Promise.resolve();

  constructor(binary: string) {
    this.child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => this.waiting.shift()?.(line));
  }

  call(request: Record<string, unknown>): Promise<SimAnswer> {
    const run = this.queue.then(
      () =>
        new Promise<SimAnswer>((resolve, reject) => {
          if (this.child.exitCode !== null) return reject(new Error('kubelet-sim has exited'));
          this.waiting.push((line) => resolve(JSON.parse(line) as SimAnswer));
          this.child.stdin!.write(`${JSON.stringify(request)}\n`);
        }),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }

  register(registryDir: string, timeoutMs = 30000): Promise<SimAnswer> {
    return this.call({ op: 'register', registryDir, timeoutMs });
  }

  prepare(endpoint: string, claims: readonly SimClaim[], timeoutMs = 60000): Promise<SimAnswer> {
    return this.call({ op: 'prepare', endpoint, claims, timeoutMs });
  }

  unprepare(endpoint: string, claims: readonly SimClaim[], timeoutMs = 60000): Promise<SimAnswer> {
    return this.call({ op: 'unprepare', endpoint, claims, timeoutMs });
  }

  async stop(): Promise<void> {
    this.child.stdin!.end();
    await stopChild(this.child, 5000);
  }
}
