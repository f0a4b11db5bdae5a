// The QEMU builds the integration tests run on: the system's (Debian
// bookworm's 7.2, from apt), QEMU 10.0 from bookworm-backports, unpacked
// beside it by scripts/fetch-qemu.sh into the cache (never installed: it
// would replace 7.2), and QEMU 11.1 from sid in a sid root of its own
// (scripts/fetch-qemu.sh sid; `vfiokit upgrade` needs 10.1+). A test that needs a build states it as a precondition;
// a missing build fails with the command that fetches it.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface QemuBuild {
  /** "7.2", "10.0": major.minor, as tests are named. */
  readonly version: string;
  /** The qemu-system-x86_64 to run. */
  readonly binary: string;
}

/** ${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/qemu: where fetch-qemu.sh unpacks. */
export function qemuCacheDir(): string {
  return join(process.env.VFIOKIT_CACHE ?? join(homedir(), '.cache', 'vfiokit'), 'qemu');
}

function versionOf(binary: string): string | null {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  const m = r.status === 0 ? /version (\d+)\.(\d+)/.exec(r.stdout) : null;
  return m ? `${m[1]}.${m[2]}` : null;
}

/**
 * The qemu-system-x86_64 of `version`: the system's when it is that version,
 * else the newest unpacked build of it in the cache. Throws naming the fix.
 */
export function qemuBuild(version: string): QemuBuild {
  if (versionOf('qemu-system-x86_64') === version) return { version, binary: 'qemu-system-x86_64' };
  const dir = qemuCacheDir();
  const candidates = existsSync(dir)
    ? readdirSync(dir)
        .filter((d) => d.startsWith(`${version}.`) && !d.endsWith('.partial'))
        .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
        .reverse()
    : [];
  for (const d of candidates) {
    // bin/ holds fetch-qemu.sh's wrapper, which points QEMU at its own modules.
    const binary = join(dir, d, 'bin', 'qemu-system-x86_64');
    if (existsSync(binary) && versionOf(binary) === version) return { version, binary };
  }
  throw new Error(
    `no qemu-system-x86_64 ${version} here: the system has ${versionOf('qemu-system-x86_64') ?? 'none'} and ${dir} ` +
      `has no ${version}.x; run scripts/fetch-qemu.sh (QEMU 10.0 from bookworm-backports) or scripts/fetch-qemu.sh sid (QEMU 11.1 in a sid root); scripts/install.sh runs both`,
  );
}

/** The builds every QEMU-facing integration test runs on. */
export const QEMU_MATRIX: readonly string[] = ['7.2', '10.0'];
