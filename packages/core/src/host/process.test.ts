import test from 'ava';
import { spawnSync } from 'node:child_process';
import { processAlive } from './process';

test('this process is alive', (t) => {
  t.true(processAlive(process.pid));
});

test('a process that has exited and been reaped is not alive', (t) => {
  const child = spawnSync(process.execPath, ['-e', '0']);
  t.is(child.status, 0);
  t.false(processAlive(child.pid as number));
});

test('a process of another user (init) counts as alive, though signals to it may be refused', (t) => {
  t.true(processAlive(1));
});
