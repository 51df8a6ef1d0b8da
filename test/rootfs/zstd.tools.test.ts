// zstd layers (buildah, podman, BuildKit) on every Node: the same tree as the gzip twin, damaged ones refused, no process left.
// Node's own zstd decompresses where it has one (22.15 and later), else the zstd host tool as a child process.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { nodeZstd, openLayer, type OpenedLayer } from '../../src/rootfs/decompress.js';
import { LayerFlattener } from '../../src/rootfs/layers.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import type { DirNode, Node } from '../../src/rootfs/tree.js';
import { makeTar, T0, type Ent } from './helpers.js';
import { EPOCH, flattenLayers, text } from './layers-helpers.js';

// Every layer the flattener opens, so a test can wait for its release the way the flattener's caller would.
const { opened } = vi.hoisted(() => ({ opened: [] as OpenedLayer[] }));
vi.mock('../../src/rootfs/decompress.js', async (original) => {
  const m = await original<typeof import('../../src/rootfs/decompress.js')>();
  return {
    ...m,
    openLayer: async (...a: Parameters<typeof m.openLayer>) => {
      const l = await m.openLayer(...a);
      opened.push(l);
      return l;
    },
  };
});

/** What the zstd CLI makes of data (as buildah and podman write it: one frame, level 3 unless told). */
function zstdCli(data: Buffer, args: string[] = ['-3']): Buffer {
  const r = spawnSync('zstd', ['-q', '-c', ...args], { input: data, maxBuffer: 1 << 30 });
  if (r.error || r.status !== 0)
    throw new Error(
      `zstd could not run (${r.error?.message ?? r.stderr.toString()}); install it with scripts/install-deps.sh`,
    );
  return r.stdout;
}

/** The zstd processes whose parent is this test process (from /proc). */
function zstdChildren(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue;
    }
    const m = /^\d+ \((.*)\) \S (\d+) /.exec(stat);
    if (m && m[1] === 'zstd' && Number(m[2]) === process.pid) out.push(Number(d));
  }
  return out;
}

/** Every node of a tree with its metadata and content hash, hard links as the first path of their node. */
async function snapshot(root: DirNode): Promise<string[]> {
  const out: string[] = [];
  const seen = new Map<Node, string>();
  const walk = async (d: DirNode, prefix: string): Promise<void> => {
    for (const [name, n] of [...d.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const p = prefix + name;
      const first = seen.get(n);
      if (first) {
        out.push(`${p} = ${first}`);
        continue;
      }
      seen.set(n, p);
      const m = n.meta;
      let what: string = n.kind;
      if (n.kind === 'symlink') what += ` → ${n.target}`;
      if (n.kind === 'file') {
        const h = createHash('sha256');
        for await (const c of n.data.store.read(n.data)) h.update(c);
        what += ` ${n.size} ${h.digest('hex')}`;
      }
      out.push(
        `${p} ${what} ${m.mode.toString(8)} ${m.uid}:${m.gid} ${m.mtime.sec}.${m.mtime.nsec} ${[...m.xattrs.keys()].join(',')}`,
      );
      if (n.kind === 'dir') await walk(n, `${p}/`);
    }
  };
  await walk(root, '/');
  return out;
}

const BIG = randomBytes(3 << 20);
const LOWER: Ent[] = [
  { name: 'etc/', type: 'directory', mode: 0o755 },
  { name: 'etc/hostname', content: 'box\n', uid: 1000, gid: 1001, mtime: new Date('2021-05-06T07:08:09Z') },
  { name: 'usr/bin/', type: 'directory' },
  { name: 'usr/bin/su', content: 'ELF', mode: 0o4755 },
  { name: 'usr/bin/sudo', type: 'link', linkname: 'usr/bin/su' },
  { name: 'bin', type: 'symlink', linkname: 'usr/bin' },
  { name: 'big', content: BIG },
  { name: 'zeros', content: Buffer.alloc(5 << 20) },
  { name: 'gone/file', content: 'deleted by the upper layer' },
  { name: 'x'.repeat(120) + '/long', content: 'a PAX path' },
];
const UPPER: Ent[] = [
  { name: '.wh.gone', content: '' },
  { name: 'etc/hostname', content: 'upper\n', mtime: T0 },
];

afterEach(() => expect(zstdChildren(), 'zstd processes left behind').toEqual([]));

describe('zstd layers', () => {
  const onThisNode = nodeZstd() ? "Node's own zstd" : 'the zstd host tool';

  it(`flatten (on this Node ${process.version}, by ${onThisNode}) to the same tree as their gzip twins`, async () => {
    const lower = await makeTar(LOWER);
    const upper = await makeTar(UPPER);
    const z = await flattenLayers([zstdCli(lower), zstdCli(upper, ['-19'])]);
    const g = await flattenLayers([gzipSync(lower), gzipSync(upper)]);
    const zs = await snapshot(z.root);
    expect(zs).toEqual(await snapshot(g.root));
    // The comparison covered what it claims to.
    expect(zs.join('\n')).toMatch(/^\/big file 3145728 /m);
    expect(zs).toContain('/usr/bin/sudo = /usr/bin/su');
    expect(zs.join('\n')).not.toMatch(/^\/gone/m);
    expect(z.stats).toEqual(g.stats);
  });

  for (const via of ['tool', 'node'] as const) {
    it(`decompress exactly through ${via === 'tool' ? 'the zstd host tool' : "Node's own zstd"}, several frames in a row too`, async (ctx) => {
      if (via === 'node' && !nodeZstd())
        ctx.skip(`Node ${process.version} has no zstd of its own (22.15 and later have)`);
      const tar = await makeTar(LOWER);
      const blob = Buffer.concat([zstdCli(tar.subarray(0, 1 << 20)), zstdCli(tar.subarray(1 << 20), ['-1'])]);
      const layer = await openLayer(Readable.from([blob.subarray(0, 100), blob.subarray(100)]), undefined, {
        zstd: via,
      });
      const parts: Buffer[] = [];
      try {
        for (let r = await layer.chunks.next(); !r.done; r = await layer.chunks.next()) parts.push(r.value);
      } finally {
        await layer.dispose();
      }
      expect(layer.compression).toBe('zstd');
      expect(Buffer.concat(parts).equals(tar)).toBe(true);
    });
  }

  it('a damaged or truncated zstd layer is a corrupt layer (badImage), not a crash or a silent short tree', async () => {
    const blob = zstdCli(await makeTar(LOWER));
    const flipped = Buffer.from(blob);
    for (let i = 1000; i < 1100; i++) flipped[i]! ^= 0x5a;
    const cases: [string, Buffer][] = [
      ['flipped bytes', flipped],
      ['truncated', blob.subarray(0, blob.length >> 1)],
      ['magic then garbage', Buffer.concat([blob.subarray(0, 4), randomBytes(4000)])],
    ];
    for (const [what, bad] of cases) {
      const e = await flattenLayers([bad]).catch((x: unknown) => x);
      expect(e, what).toBeInstanceOf(Img2vmError);
      expect((e as Img2vmError).kind, `${what}: ${(e as Error).message}`).toBe('badImage');
      expect((e as Img2vmError).exitCode).toBe(10);
      expect((e as Error).message, what).toMatch(/^layer is corrupt: zstd: /);
    }
  });

  it('an aborted read (Ctrl-C aborts the run) stops the zstd process', async () => {
    // Eight MiB of content after the fifth entry: the process is still writing (held by the pipe) when the abort comes.
    const blob = zstdCli(await makeTar(LOWER));
    const ac = new AbortController();
    let running: number[] = [];
    const f = new LayerFlattener({
      store: new MemoryStore(),
      epoch: EPOCH,
      signal: ac.signal,
      progressIntervalMs: 0,
      onProgress: (p) => {
        if (p.entries !== 5 || ac.signal.aborted) return;
        running = zstdChildren();
        ac.abort(new Error('interrupted by SIGINT'));
      },
    });
    opened.length = 0;
    const e = await f.applyLayer(Readable.from([blob])).catch((x: unknown) => x);
    expect((e as Error).message).toBe('interrupted by SIGINT');
    expect(running, 'the layer was read through a zstd process').toHaveLength(nodeZstd() ? 0 : 1);
    // The flattener does not wait for the layer's release (dispose): wait here, as its caller would, then look.
    expect(opened).toHaveLength(1);
    await opened[0]!.dispose();
    for (const pid of running) expect(existsSync(`/proc/${pid}`), `zstd ${pid} still exists`).toBe(false);
  });

  it("a source that fails mid-layer fails with its own error (not 'corrupt'), and the zstd process is gone", async () => {
    const blob = zstdCli(await makeTar(LOWER));
    const reset = Object.assign(new Error('connection reset by the registry'), { code: 'ECONNRESET' });
    // Half the layer arrives, then the connection breaks while the flattener is reading what came.
    const source = new Readable({ read() {} });
    source.push(blob.subarray(0, blob.length >> 1));
    let running: number[] = [];
    const f = new LayerFlattener({
      store: new MemoryStore(),
      epoch: EPOCH,
      progressIntervalMs: 0,
      onProgress: (p) => {
        if (p.entries !== 1 || source.destroyed) return;
        running = zstdChildren();
        source.destroy(reset);
      },
    });
    opened.length = 0;
    const e = await f.applyLayer(source).catch((x: unknown) => x);
    expect(e).toBe(reset);
    expect(running, 'the layer was read through a zstd process').toHaveLength(nodeZstd() ? 0 : 1);
    await opened[0]!.dispose();
    for (const pid of running) expect(existsSync(`/proc/${pid}`), `zstd ${pid} still exists`).toBe(false);
  });

  it('a reader that stops early (dispose) stops the zstd process', async () => {
    const layer = await openLayer(Readable.from([zstdCli(await makeTar(LOWER))]), undefined, { zstd: 'tool' });
    expect((await layer.chunks.next()).done).toBe(false);
    expect(zstdChildren()).toHaveLength(1);
    await layer.dispose();
  });

  it('without the zstd tool, a zstd layer on a Node without zstd is exit 5 naming the package', async () => {
    const blob = zstdCli(Buffer.from('x'));
    const empty = mkdtempSync(join(tmpdir(), 'img2vm-nopath-'));
    const path = process.env.PATH;
    process.env.PATH = empty;
    try {
      const e = await openLayer(Readable.from([blob]), undefined, { zstd: 'tool' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(Img2vmError);
      expect(e).toMatchObject({ kind: 'toolMissing', exitCode: 5 });
      expect((e as Error).message).toMatch(/zstd-compressed.*host tool "zstd".*missing/);
      expect((e as Img2vmError).hint).toMatch(/apt-get install zstd\b/);
    } finally {
      process.env.PATH = path;
      rmSync(empty, { recursive: true });
    }
  });
});

describe('zstd layers among the other compressions', () => {
  const corrupt = async (blob: Buffer): Promise<Img2vmError> => {
    const e = await flattenLayers([blob]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Img2vmError);
    expect((e as Img2vmError).kind).toBe('badImage');
    return e as Img2vmError;
  };

  it('zstd layers are unpacked on every Node (its own zstd, else the zstd tool); a damaged one is badImage', async () => {
    const r = spawnSync('zstd', ['-q', '-c'], { input: await makeTar([{ name: 'z', content: 'zstd' }]) });
    expect(r.status, `zstd: ${r.error?.message ?? r.stderr}`).toBe(0);
    expect(await text((await flattenLayers([r.stdout])).root, 'z')).toBe('zstd');
    expect((await corrupt(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]))).message).toMatch(
      /^layer is corrupt: zstd: /,
    );
  });
});
