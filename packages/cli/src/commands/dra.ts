// `vfiokit dra run` and `vfiokit dra status`: vfiokit as a Kubernetes DRA
// driver (packages/dra). run serves one node until SIGTERM or SIGINT, then
// withdraws its slices and leaves prepared claims to the checkpoint; status
// tells, without an API server, which groups the node offers, which it
// withholds and why, and which claims are prepared.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { fileBindingStore, isVfiokitError, processAlive } from '@vfiokit/core';
import { Checkpoint, DEFAULT_CDI_DIR, DEFAULT_DRIVER_NAME, DEFAULT_REGISTRY_DIR, DraDriver, defaultPluginDir, takeInventory, type DriverStatus } from '@vfiokit/dra';
import { action, RunState, withExamples } from '../program';
import { CliError } from '../errors';
import { ExitCode } from '../exit-codes';

const DRA_EXIT: Readonly<Record<string, ExitCode>> = {
  DRA_KUBECONFIG: ExitCode.InvalidInput,
  DRA_KUBE_UNREACHABLE: ExitCode.Unavailable,
  DRA_NODE_NOT_FOUND: ExitCode.NotFound,
  DRA_KUBE_API: ExitCode.Refused,
};

/** The DRA layer's errors with the exit code their kind means. */
function asCliError(err: unknown): unknown {
  if (!isVfiokitError(err) || !err.code.startsWith('DRA_')) return err;
  return new CliError(err.code, err.message, DRA_EXIT[err.code] ?? ExitCode.HostFailure, err.hint, { cause: err });
}

interface RunOptions {
  node: string;
  kubeconfig: string;
  driverName: string;
  pluginDir?: string;
  registryDir: string;
  cdiDir: string;
  rescan: string;
}

function runCommand(state: RunState): Command {
  const cmd = new Command('run')
    .description('serve this node as a DRA driver: publish one device per viable IOMMU group, prepare claims by binding whole groups')
    .requiredOption('--node <name>', 'the Kubernetes node name of this machine')
    .requiredOption('--kubeconfig <file>', 'kubeconfig of the driver (its account needs the rules in packages/dra/examples/rbac.yaml)')
    .option('--driver-name <name>', 'the DRA driver name (DeviceClasses select on it)', DEFAULT_DRIVER_NAME)
    .option('--plugin-dir <dir>', 'where dra.sock, the checkpoint and status.json live (default /var/lib/kubelet/plugins/<driver>)')
    .option('--registry-dir <dir>', "the kubelet's plugins_registry folder", DEFAULT_REGISTRY_DIR)
    .option('--cdi-dir <dir>', 'where CDI specs are written for the container runtime', DEFAULT_CDI_DIR)
    .addOption(new Option('--rescan <seconds>', 'how often the host is read again for changes').default('5'))
    .action(
      action(state, async (ctx, o: RunOptions) => {
        const rescanMs = Math.round(Number(o.rescan) * 1000);
        if (!Number.isFinite(rescanMs) || rescanMs < 100) {
          throw new CliError('INVALID_INPUT', `--rescan ${o.rescan} is not a number of seconds of at least 0.1`, ExitCode.InvalidInput, 'for example --rescan 5');
        }
        const host = await ctx.host();
        const log = (line: string) => process.stderr.write(`vfiokit dra: ${new Date().toISOString()} ${line}\n`);
        // A test seam for the crash cases: die like SIGKILL between the binds and the answer.
        const afterBind = process.env.VFIOKIT_DRA_FAULT === 'kill-after-bind' ? () => process.kill(process.pid, 'SIGKILL') : undefined;
        let driver: DraDriver;
        try {
          driver = await DraDriver.start({
            host: host.fs,
            store: fileBindingStore(host.stateDir),
            nodeName: o.node,
            kubeconfig: o.kubeconfig,
            driverName: o.driverName,
            pluginDir: o.pluginDir ?? defaultPluginDir(o.driverName),
            registryDir: o.registryDir,
            cdiDir: o.cdiDir,
            rescanMs,
            log,
            ...(afterBind ? { afterBind } : {}),
          });
        } catch (err) {
          throw asCliError(err);
        }
        // The binary's own handlers exit at once; a driver must first withdraw its slices.
        const signals = ['SIGINT', 'SIGTERM'] as const;
        const saved = signals.map((s) => process.listeners(s));
        signals.forEach((s) => process.removeAllListeners(s));
        const signal = await new Promise<string>((resolve) => signals.forEach((s) => process.once(s, () => resolve(s))));
        log(`${signal}: withdrawing the slices; prepared claims stay in the checkpoint`);
        try {
          await driver.stop();
        } catch (err) {
          throw asCliError(err);
        } finally {
          signals.forEach((s, i) => {
            process.removeAllListeners(s);
            for (const l of saved[i]!) process.on(s, l as () => void);
          });
        }
        return ExitCode.Ok;
      }),
    );
  return withExamples(
    cmd,
    'vfiokit dra run --node worker-1 --kubeconfig /etc/vfiokit/kubeconfig',
    'vfiokit --mock dra-node --mock-dir /tmp/node dra run --node worker-1 --kubeconfig kc --plugin-dir /tmp/p --registry-dir /tmp/r --cdi-dir /tmp/cdi',
  );
}

function statusCommand(state: RunState): Command {
  const cmd = new Command('status')
    .description('which groups this node publishes, which it withholds and why, and the claims it has prepared')
    .option('--driver-name <name>', 'the DRA driver name', DEFAULT_DRIVER_NAME)
    .option('--plugin-dir <dir>', 'the driver\'s folder (default /var/lib/kubelet/plugins/<driver>)')
    .action(
      action(state, async (ctx, o: { driverName: string; pluginDir?: string }) => {
        const dir = o.pluginDir ?? defaultPluginDir(o.driverName);
        const host = await ctx.host();
        let claims;
        try {
          claims = new Checkpoint(path.join(dir, 'checkpoint.json')).list();
        } catch (err) {
          throw asCliError(err);
        }
        const inventory = takeInventory(host.fs, { prepared: new Set(claims.flatMap((c) => c.groups)) });
        let running: DriverStatus | undefined;
        try {
          running = JSON.parse(fs.readFileSync(path.join(dir, 'status.json'), 'utf8')) as DriverStatus;
        } catch {
          running = undefined;
        }
        const alive = running !== undefined && processAlive(running.pid);
        const value = { driverName: o.driverName, host: host.description, inventory, claims, driver: running && alive ? running : null };
        ctx.out.result(value, () => {
          const lines = [`host: ${host.description}`];
          lines.push(running && alive ? `driver: pid ${running.pid}, node ${running.nodeName}, generation ${running.generation}${running.lastError ? `, last error: ${running.lastError}` : ''}` : `driver: not running (no live status.json in ${dir})`);
          lines.push('', 'published:');
          for (const g of inventory.offers) lines.push(`  ${g.name}  ${g.addresses.join(', ')}`);
          if (inventory.offers.length === 0) lines.push('  none');
          lines.push('', 'withheld:');
          for (const w of inventory.withheld) lines.push(`  ${w.reason}${w.fix ? `\n    fix: ${w.fix}` : ''}`);
          if (inventory.withheld.length === 0) lines.push('  none');
          lines.push('', 'prepared claims:');
          for (const c of claims) lines.push(`  ${c.namespace}/${c.name} (${c.uid}): groups ${c.groups.join(', ')} [${c.state}]`);
          if (claims.length === 0) lines.push('  none');
          return lines.join('\n');
        });
      }),
    );
  return withExamples(cmd, 'vfiokit dra status', 'vfiokit --mock dra-node dra status --json');
}

export function draCommand(state: RunState): Command {
  return new Command('dra')
    .description('run vfiokit as a Kubernetes DRA driver that hands out whole IOMMU groups')
    .addCommand(runCommand(state))
    .addCommand(statusCommand(state));
}
