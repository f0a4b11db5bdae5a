import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint } from './checkpoint';
import { loadKubeConfig } from './kube';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfiokit-ckpt-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a checkpoint survives a new process and names the owner of each group', (t) => {
  const file = path.join(tempDir(t), 'sub', 'checkpoint.json');
  new Checkpoint(file).put({ uid: 'u1', namespace: 'ns', name: 'a', state: 'preparing', groups: [3, 4] });
  const again = new Checkpoint(file);
  t.is(again.ownerOf(4)?.name, 'a');
  t.is(again.ownerOf(4, 'u1'), undefined);
  t.deepEqual([...again.groups()], [3, 4]);
  again.remove('u1');
  t.deepEqual(new Checkpoint(file).list(), []);
  t.deepEqual(fs.readdirSync(path.dirname(file)), ['checkpoint.json']);
});

test('a corrupt checkpoint is refused with the fix, never read as empty', (t) => {
  const file = path.join(tempDir(t), 'checkpoint.json');
  fs.writeFileSync(file, '{"version":1,"claims":');
  const err = t.throws(() => new Checkpoint(file));
  t.is((err as { code?: string }).code, 'DRA_CHECKPOINT');
  t.regex(err!.message, /is corrupt/);
});

test('a kubeconfig that is missing, not YAML or without a context is named with what is wrong', (t) => {
  const dir = tempDir(t);
  t.throws(() => loadKubeConfig(path.join(dir, 'nope')), { message: /nope cannot be read/ });
  fs.writeFileSync(path.join(dir, 'bad'), 'a: [');
  t.throws(() => loadKubeConfig(path.join(dir, 'bad')), { message: /is not YAML/ });
  fs.writeFileSync(path.join(dir, 'empty'), 'apiVersion: v1\nclusters: []\ncontexts: []\n');
  t.throws(() => loadKubeConfig(path.join(dir, 'empty')), { message: /sets no current-context/ });
  fs.writeFileSync(path.join(dir, 'http'), 'clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n');
  t.throws(() => loadKubeConfig(path.join(dir, 'http')), { message: /only https API servers/ });
});
