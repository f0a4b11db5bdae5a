import test from 'ava';
import { compareVersionedNames } from './debian';

test('kernel packages sort by their ABI number, not as text', (t) => {
  const names = ['linux-image-6.1.0-9-amd64', 'linux-image-6.1.0-50-amd64', 'linux-image-6.1.0-10-amd64'];
  t.deepEqual([...names].sort(compareVersionedNames), ['linux-image-6.1.0-9-amd64', 'linux-image-6.1.0-10-amd64', 'linux-image-6.1.0-50-amd64']);
});
