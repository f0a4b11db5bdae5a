// `pnpm bench` for qemu-bridge: the cost of framing one large QMP reply that
// arrives in 64 KiB socket chunks, at two sizes, with the decoder in use and
// with the string decoder it replaced, side by side in one run. Linear cost
// shows as a 64 MiB / 16 MiB ratio near 4; the old decoder's square as 16.
import { JsonMessageDecoder } from '../qmp/framing';
import { StringJsonDecoder } from './string-decoder';

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;

function chunksOf(size: number): Buffer[] {
  const text = Buffer.from(`{"return": "${'a'.repeat(size - 32)}", "id": "vfiokit-1"}\r\n`);
  const out: Buffer[] = [];
  for (let i = 0; i < text.length; i += CHUNK) out.push(text.subarray(i, i + CHUNK));
  return out;
}

/** CPU milliseconds to frame `chunks`, best of `runs`. */
function cost(make: () => { push(b: Buffer): unknown }, chunks: Buffer[], runs: number): number {
  let best = Infinity;
  for (let r = 0; r < runs; r++) {
    const d = make();
    const t0 = process.cpuUsage();
    for (const c of chunks) d.push(c);
    const u = process.cpuUsage(t0);
    best = Math.min(best, (u.user + u.system) / 1000);
  }
  return best;
}

function main(): void {
  console.log('qemu-bridge framing: CPU ms to frame one reply in 64 KiB chunks (best of 3)');
  const small = chunksOf(16 * MiB);
  const large = chunksOf(64 * MiB);
  const bytes = new JsonMessageDecoder();
  for (const c of large) bytes.push(c);
  const a = cost(() => new JsonMessageDecoder(), small, 3);
  const b = cost(() => new JsonMessageDecoder(), large, 3);
  console.log(`  byte decoder     16 MiB ${a.toFixed(0).padStart(7)} ms   64 MiB ${b.toFixed(0).padStart(7)} ms   ratio ${(b / a).toFixed(1)}x (linear: 4x)`);
  console.log(`  byte decoder work on 64 MiB: ${bytes.stats.bytesScanned} bytes scanned, ${bytes.stats.bytesCopied} copied`);
  // The old decoder at a quarter of the sizes: at 64 MiB it takes minutes.
  const s4 = chunksOf(4 * MiB);
  const c = cost(() => new StringJsonDecoder(), s4, 1);
  const d = cost(() => new StringJsonDecoder(), small, 1);
  console.log(`  string decoder    4 MiB ${c.toFixed(0).padStart(7)} ms   16 MiB ${d.toFixed(0).padStart(7)} ms   ratio ${(d / c).toFixed(1)}x (square: 16x)`);
  console.log(`  at 16 MiB the string decoder costs ${(d / a).toFixed(0)}x the byte decoder`);
}

main();
