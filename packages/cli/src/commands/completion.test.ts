import { spawnSync } from 'node:child_process';
import test from 'ava';
import { vfiokit } from '../testing/run-cli';

test('the bash completion script completes commands, and the options of the command typed', async (t) => {
  const run = await vfiokit(['completion', 'bash']);
  t.is(run.code, 0);
  const complete = (line: string) => {
    const words = line.split(' ');
    const script = `${run.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _vfiokit; echo "\${COMPREPLY[@]}"`;
    return spawnSync('bash', ['-c', script], { encoding: 'utf8' }).stdout.trim().split(' ');
  };
  t.deepEqual(complete('vfiokit pl'), ['plan']);
  t.true(complete('vfiokit bind --').includes('--force'));
  t.true(complete('vfiokit trace replay --').includes('--device'));
});

test('zsh and fish completion scripts are printed and name every command', async (t) => {
  for (const shell of ['zsh', 'fish']) {
    const run = await vfiokit(['completion', shell]);
    t.is(run.code, 0);
    for (const c of ['ls', 'show', 'check', 'bind', 'unbind', 'plan', 'map', 'trace', 'attach', 'detach', 'lab', 'demo']) t.true(run.stdout.includes(`'${c}'`), `${shell}: ${c}`);
  }
  const fish = spawnSync('fish', ['--no-execute', '-c', (await vfiokit(['completion', 'fish'])).stdout]);
  if (fish.error === undefined) t.is(fish.status, 0);
});
