// A tiny real Linux guest for integration tests that need an OS to answer:
// Debian's amd64 kernel and a busybox initramfs that prints a ready mark and
// idles, booted under TCG by startTestQemu. Its kernel handles PCI hot-plug
// (ACPI and pciehp are built into Debian's kernel), so device_del completes.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startTestQemu, type TestQemu } from './qemu-process';

export const GUEST_READY_MARK = 'vfiokit-guest-ready';

export interface TestGuestOptions {
  readonly args?: readonly string[];
  /** Default '256M'. */
  readonly memory?: string;
  /** How long the boot may take. Default 120 s (TCG on a busy machine). */
  readonly bootTimeoutMs?: number;
}

export interface TestGuest extends TestQemu {
  /** The guest's serial console so far. */
  console(): string;
}

/**
 * The newest Debian amd64 6.1 kernel image: from $VFIOKIT_TEST_KERNEL, the
 * lab's cache (.lab-cache/pkgs at the repository root, or $VFIOKIT_LAB_CACHE),
 * or fetched once with apt-get download into the same cache.
 */
export function testKernel(): string {
  if (process.env.VFIOKIT_TEST_KERNEL) return process.env.VFIOKIT_TEST_KERNEL;
  const cache = join(resolve(process.env.VFIOKIT_LAB_CACHE || join(__dirname, '..', '..', '..', '..', '.lab-cache')), 'pkgs');
  const found = findKernel(cache);
  if (found) return found;
  const search = execFileSync('apt-cache', ['search', '--names-only', '^linux-image-6\\.1\\.0-[0-9]+-amd64$'], { encoding: 'utf8' });
  const names = search.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
  if (names.length === 0) throw new Error('apt-cache lists no linux-image-6.1.0-*-amd64; run apt-get update');
  names.sort((a, b) => Number(/6\.1\.0-(\d+)/.exec(a)![1]) - Number(/6\.1\.0-(\d+)/.exec(b)![1]));
  const download = mkdtempSync(join(tmpdir(), 'vfiokit-kernel-'));
  try {
    execFileSync('apt-get', ['download', names.at(-1)!], { cwd: download, stdio: 'ignore' });
    const deb = readdirSync(download).find((f) => f.endsWith('.deb'))!;
    const into = join(cache, deb.replace(/\.deb$/, ''));
    mkdirSync(into, { recursive: true });
    execFileSync('dpkg-deb', ['-x', join(download, deb), into]);
  } finally {
    rmSync(download, { recursive: true, force: true });
  }
  const fetched = findKernel(cache);
  if (!fetched) throw new Error(`no vmlinuz under ${cache} after unpacking ${names.at(-1)}`);
  return fetched;
}

function findKernel(cache: string): string | null {
  if (!existsSync(cache)) return null;
  const dirs = readdirSync(cache)
    .filter((d) => /^linux-image-6\.1\.0-\d+-amd64_/.test(d))
    .sort((a, b) => Number(/6\.1\.0-(\d+)/.exec(a)![1]) - Number(/6\.1\.0-(\d+)/.exec(b)![1]));
  for (const d of dirs.reverse()) {
    const boot = join(cache, d, 'boot');
    const image = existsSync(boot) ? readdirSync(boot).find((f) => f.startsWith('vmlinuz-')) : undefined;
    if (image) return join(boot, image);
  }
  return null;
}

/** A static busybox: the lab cache's busybox-static, or the system's if it is static. */
function staticBusybox(): string {
  const system = '/bin/busybox';
  if (existsSync(system) && !readFileSync(system).subarray(0, 4096).includes('/lib64/ld-linux')) return system;
  throw new Error('no static busybox: apt-get install busybox-static');
}

function buildInitramfs(dir: string): string {
  const root = join(dir, 'root');
  for (const d of ['bin', 'proc', 'sys', 'dev']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(staticBusybox(), join(root, 'bin', 'busybox'));
  writeFileSync(
    join(root, 'init'),
    [
      '#!/bin/busybox sh',
      '/bin/busybox mount -t proc proc /proc',
      '/bin/busybox mount -t sysfs sys /sys',
      `echo ${GUEST_READY_MARK}`,
      'while true; do /bin/busybox sleep 1; done',
      '',
    ].join('\n'),
  );
  chmodSync(join(root, 'init'), 0o755);
  const image = join(dir, 'initramfs.cpio');
  execFileSync('sh', ['-c', 'find . | cpio -o -H newc --quiet > "$1"', 'sh', image], { cwd: root });
  return image;
}

/** Boots the guest and resolves once its init has printed the ready mark. */
export async function startTestGuest(options: TestGuestOptions = {}): Promise<TestGuest> {
  const kernel = testKernel();
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-guest-'));
  const consoleLog = join(dir, 'console.log');
  let qemu: TestQemu | undefined;
  try {
    const initrd = buildInitramfs(dir);
    qemu = await startTestQemu({
      running: true,
      memory: options.memory ?? '256M',
      args: [
        '-serial', `file:${consoleLog}`,
        '-kernel', kernel,
        '-initrd', initrd,
        // no_timer_check: under TCG on a busy machine the IO-APIC timer
        // check can miss its ticks and panic the boot (check_timer()).
        '-append', 'console=ttyS0 panic=-1 no_timer_check',
        '-no-reboot',
        ...(options.args ?? []),
      ],
    });
    const read = (): string => (existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '');
    const deadline = Date.now() + (options.bootTimeoutMs ?? 120_000);
    let gone = false;
    void qemu.exited.then(() => {
      gone = true;
    });
    while (!read().includes(GUEST_READY_MARK)) {
      if (gone) throw new Error(`the test guest exited while booting; console:\n${read().slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`the test guest did not boot in time; console:\n${read().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const running = qemu;
    return {
      ...running,
      console: read,
      async stop() {
        await running.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await qemu?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
