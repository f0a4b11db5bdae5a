import test from 'ava';
import { compareVersionedNames, privateAptOptions } from './debian';

test('kernel packages sort by their ABI number, not as text', (t) => {
  const names = ['linux-image-6.1.0-9-amd64', 'linux-image-6.1.0-50-amd64', 'linux-image-6.1.0-10-amd64'];
  t.deepEqual([...names].sort(compareVersionedNames), ['linux-image-6.1.0-9-amd64', 'linux-image-6.1.0-10-amd64', 'linux-image-6.1.0-50-amd64']);
});

test("a private apt keeps the machine's sources, lists and dpkg state out of it", (t) => {
  const o = privateAptOptions('/c/apt-arm64', 'arm64').join(' ');
  t.regex(o, /Dir::Etc::SourceList=\/dev\/null/);
  t.regex(o, /Dir::Etc::SourceParts=\/c\/apt-arm64\/sources/);
  t.regex(o, /Dir::State::Lists=\/c\/apt-arm64\/lists/);
  t.regex(o, /APT::Architecture=arm64/);
  t.regex(o, /Dir::State::status=\/dev\/null/);
});
