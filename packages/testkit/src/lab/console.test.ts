import test from 'ava';
import { consoleProblems, consoleProblemsReport } from './console';

test('an Oops on the console is a problem', (t) => {
  t.deepEqual(consoleProblems('ok\n[ 5.1] Oops: Kernel access of bad area\nmore'), ['[ 5.1] Oops: Kernel access of bad area']);
});

test('a kernel WARNING on the console is a problem but QEMU warnings are not', (t) => {
  const text = 'qemu-system-ppc64: warning: TCG does not support\r\n[ 3.0] WARNING: CPU: 0 PID: 1 at mm/vmalloc.c\r\n';
  t.deepEqual(consoleProblems(text), ['[ 3.0] WARNING: CPU: 0 PID: 1 at mm/vmalloc.c']);
});

test('an x86 general protection fault is a problem', (t) => {
  t.deepEqual(consoleProblems('[ 7.2] general protection fault, probably for non-canonical address'), ['[ 7.2] general protection fault, probably for non-canonical address']);
});

test('a clean console passes the verdict with no detail', (t) => {
  t.deepEqual(consoleProblemsReport('[ 1.0] booting\n'), { name: 'the guest kernel logged no Oops, BUG, WARNING or panic', ok: true });
});
