import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const STEP = join(__dirname, '..', '..', '..', '..', 'scripts', 'install-step.sh');

/** Runs `body` in bash after sourcing install.sh's `step`, then `echo after`. */
function bash(body: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-c', `set -euo pipefail; source "$1"; ${body}; echo after`, 'bash', STEP], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('a step that succeeds prints the last line of its output as where it put the piece, and the install goes on', (t) => {
  const r = bash(`step "QEMU 10.0" printf 'fetching\\n/cache/qemu/10.0.2\\n'`);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, 'install: QEMU 10.0 at /cache/qemu/10.0.2\nafter\n');
});

test('a step that fails ends the install with its exit 1, naming the step and its command, and leaves its own messages on stderr', (t) => {
  const r = bash(`step "lab kernel" bash -c 'echo "no linux-source-9.9 in sid" >&2; exit 3'`);
  t.is(r.status, 1);
  t.is(r.stdout, '', 'nothing after the failed step ran');
  t.is(r.stderr, "no linux-source-9.9 in sid\ninstall: FAILED to get lab kernel (bash -c echo \"no linux-source-9.9 in sid\" >&2; exit 3); its messages are above\n");
});

test('a step fails even when its command printed a path before failing', (t) => {
  const r = bash(`step "Kubernetes binaries" bash -c 'echo /cache/kubernetes; exit 1'`);
  t.is(r.status, 1);
  t.notRegex(r.stdout, /install: Kubernetes binaries at/);
});
