// Benchmark: one sparse file (bsdtar's PAX 1.0 form, 4 KiB of data in a huge hole) flattened into the ext4 writer, its holes skipped against its holes handed over as zeros, in one run.
// Usage (after `npm run build`): node bench/sparse.mjs [--size BYTES] [--no-zeros]
//   --size BYTES   the file's real size (default 1e12, a terabyte)
//   --no-zeros     leave out the baseline that hands the ext4 writer the holes as zeros (it is linear in the size)
// Prints, per way: wall seconds, bytes the ext4 writer was handed, blocks it allocated for the file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';

const dist = new URL('../dist/', import.meta.url);
const { LayerFlattener } = await import(new URL('rootfs/layers.js', dist).href);
const { Ext4Writer } = await import(new URL('disk/ext4/writer.js', dist).href);
const { RawFileTarget } = await import(new URL('disk/target.js', dist).href);

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? dflt : process.argv[i + 1];
};
const size = Number(arg('--size', '1e12'));
const withZeros = !process.argv.includes('--no-zeros');

function record(key, value) {
  const body = ` ${key}=${value}\n`;
  let n = body.length + 1;
  while (String(n).length + body.length !== n) n++;
  return `${n}${body}`;
}

function header(name, typeflag, bytes) {
  const b = Buffer.alloc(512);
  b.write(name, 0, 'latin1');
  const oct = (v, off, len) => b.write(`${v.toString(8).padStart(len - 1, '0')}\0`, off, 'latin1');
  oct(0o644, 100, 8);
  oct(0, 108, 8);
  oct(0, 116, 8);
  oct(bytes, 124, 12);
  oct(1_700_000_000, 136, 12);
  b.write(typeflag, 156, 'latin1');
  b.write('ustar\x0000', 257, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

const pad = (b) => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);

/** A layer of one file: size bytes, 4 KiB of data half way (on a block boundary), holes elsewhere. */
function layer() {
  const at = Math.floor(size / 2 / 4096) * 4096;
  const pax = Buffer.from(
    [
      record('GNU.sparse.major', '1'),
      record('GNU.sparse.minor', '0'),
      record('GNU.sparse.name', 'huge'),
      record('GNU.sparse.realsize', String(size)),
    ].join(''),
    'latin1',
  );
  const map = pad(Buffer.from(`1\n${at}\n4096\n`, 'latin1'));
  const data = Buffer.concat([map, Buffer.alloc(4096, 0x5a)]);
  return Buffer.concat([
    header('PaxHeaders/huge', 'x', pax.length),
    pad(pax),
    header('GNUSparseFile.0/huge', '0', data.length),
    data,
    Buffer.alloc(1024),
  ]);
}

/** The ext4 writer, counting what it is handed; without putSparse when the baseline asks for zeros. */
function store(dir, skipHoles) {
  const w = new Ext4Writer({
    target: new RawFileTarget(join(dir, skipHoles ? 'skip.img' : 'zeros.img')),
    offset: 0,
    uuid: '0b1c2d3e-4f50-4162-8374-8596a7b8c9da',
    label: 'bench',
    hashSeed: '1a2b3c4d-5e6f-4071-8293-a4b5c6d7e8f9',
    epoch: 1_700_000_000,
  });
  const counted = { handed: 0 };
  const count = async function* (parts) {
    for await (const p of parts) {
      counted.handed += typeof p === 'number' ? 0 : p.length;
      yield p;
    }
  };
  const s = {
    put: (chunks, n) => w.put(count(chunks), n),
    putBuffer: (d) => w.putBuffer(d),
    release: (r) => w.release(r),
    read: (r) => w.read(r),
  };
  if (skipHoles) {
    if (typeof w.putSparse !== 'function') return { s: undefined, counted };
    s.putSparse = (parts, n) => w.putSparse(count(parts), n);
  }
  return { s, counted, w };
}

async function run(dir, skipHoles) {
  const { s, counted } = store(dir, skipHoles);
  if (!s) return `holes skipped: the ext4 writer has no putSparse yet (src/disk/ext4), so img2vm hands it zeros`;
  const f = new LayerFlattener({ store: s, epoch: { sec: 1_700_000_000, nsec: 0 } });
  const t0 = performance.now();
  await f.applyLayer(Readable.from([layer()]));
  const { root, stats } = f.finish();
  const secs = (performance.now() - t0) / 1000;
  const node = root.entries.get('huge');
  return `${skipHoles ? 'holes skipped ' : 'holes as zeros'}: ${secs.toFixed(2)} s for ${size.toExponential(2)} bytes (${((secs * 1000 * 2 ** 30) / size).toFixed(1)} ms/GiB); handed ${counted.handed} bytes; file blocks ${node.data.blocks}; tree blocks4k ${stats.blocks4k}`;
}

const dir = mkdtempSync(join(tmpdir(), 'img2vm-bench-sparse-'));
try {
  console.log(await run(dir, true));
  if (withZeros) console.log(await run(dir, false));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
