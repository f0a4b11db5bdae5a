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

const leak = {
  at: /at arch\/powerpc\/mm\/book3s64\/mmu_context\.c:\d+ destroy_context\+/,
  after: 'vfiokit-pseries: expect-warning destroy_context',
  why: 'destroy_context',
};
const block = [
  '[ 9.0] ------------[ cut here ]------------',
  '[ 9.0] WARNING: CPU: 0 PID: 77 at arch/powerpc/mm/book3s64/mmu_context.c:274 destroy_context+0x58/0x70',
  '[ 9.0] NIP [c000000000095f58] destroy_context+0x58/0x70',
  '[ 9.0] Call Trace:',
  '[ 9.0] [c000000004c0fb90] [c0000000001664c8] __mmdrop+0x78/0x230',
  '[ 9.0] ---[ end trace 0000000000000000 ]---',
];

test('an expected warning block after its announcement is not a problem and is named', (t) => {
  const text = ['boot', 'vfiokit-pseries: expect-warning destroy_context: a child leaked', ...block, 'done'].join('\n');
  t.deepEqual(consoleProblemsReport(text, [leak]), {
    name: 'the guest kernel logged no Oops, BUG, WARNING or panic',
    ok: true,
    detail: [`expected (destroy_context): ${block[1]!.trim()}`],
  });
});

test('the expected warning before its announcement is still a problem', (t) => {
  const text = [...block, 'vfiokit-pseries: expect-warning destroy_context: a child leaked'].join('\n');
  t.is(consoleProblems(text, [leak]).length, 2);
});

test('only one expected warning block is excused, and other warnings beside it are problems', (t) => {
  const other = '[ 9.5] WARNING: CPU: 0 PID: 78 at mm/gup.c:1 unpin_user_pages+0x1/0x2';
  const text = ['vfiokit-pseries: expect-warning destroy_context', ...block, other, ...block].join('\n');
  t.deepEqual(consoleProblems(text, [leak]), [other, block[1]!.trim(), block[3]!.trim()]);
});
