// GRUB 2.06's own ext2 driver (grub-fstest, grub-common) reads what the writer makes: features, htrees, extent trees, symlinks.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Node } from '../../../src/rootfs/tree.js';
import { chunksOf, dir, expectClean, file, meta, run, tmp, writeImage } from './helpers.js';

const t = tmp();
afterAll(() => t.done());

const kernel = Buffer.from(Buffer.alloc(5 * 1024 * 1024).map((_, i) => (i * 7 + (i >> 12)) & 0xff));
const sparse = Buffer.alloc(2000 * 4096);
for (let i = 0; i < 2000; i += 2) sparse.fill((i % 200) + 1, i * 4096, i * 4096 + 4096);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let img: string;
beforeAll(async () => {
  img = t.path('grub.img');
  const many = new Map<string, Node>();
  for (let i = 0; i < 3000; i++) many.set(`module-${i}.mod`, { kind: 'fifo', meta: meta(0o644) });
  await writeImage(img, async (w) => {
    many.set('normal.mod', file(w.putBuffer(Buffer.from('the normal module\n')), 18));
    return dir({
      boot: dir({
        'vmlinuz-6.1.0-img2vm': file(await w.put(chunksOf(kernel, 65536), kernel.length), kernel.length),
        grub: dir({ 'grub.cfg': file(w.putBuffer(Buffer.from('set timeout=0\n')), 14), 'x86_64-efi': dir(many) }),
      }),
      sparse: file(await w.put(chunksOf(sparse, 1 << 20), sparse.length), sparse.length),
      vmlinuz: { kind: 'symlink', meta: meta(0o777), target: 'boot/vmlinuz-6.1.0-img2vm' },
      longlink: { kind: 'symlink', meta: meta(0o777), target: `${'./'.repeat(40)}boot/grub/grub.cfg` },
      'caf\xc3\xa9': file(w.putBuffer(Buffer.from('utf-8 name\n')), 11),
    });
  });
});

function grub(...args: string[]): string {
  const r = run('grub-fstest', [img, ...args]);
  expect(r.status, `grub-fstest ${args.join(' ')}: ${r.out}`).toBe(0);
  return r.out;
}

describe('GRUB reads the file system', () => {
  it('is clean for e2fsck first', () => expectClean(img));

  it('lists directories, including a 3000-entry htree', () => {
    expect(grub('ls', '/').trim().split(/\s+/).sort()).toEqual(
      ['boot/', 'caf\xc3\xa9', 'longlink', 'lost+found/', 'sparse', 'vmlinuz'].sort(),
    );
    const mods = grub('ls', '/boot/grub/x86_64-efi').trim().split(/\s+/);
    expect(mods).toHaveLength(3001);
    expect(mods).toContain('module-2999.mod');
  });

  it('reads files through extents, extent trees with holes, and fast and slow symlinks', () => {
    const k = t.path('kernel');
    writeFileSync(k, kernel);
    grub('cmp', '/boot/vmlinuz-6.1.0-img2vm', k);
    grub('cmp', '/vmlinuz', k);
    const s = t.path('sparse');
    writeFileSync(s, sparse);
    grub('cmp', '/sparse', s);
    expect(sha(Buffer.from(grub('cat', '/longlink'), 'latin1'))).toBe(sha(Buffer.from('set timeout=0\n')));
    expect(grub('cat', '/boot/grub/x86_64-efi/normal.mod')).toBe('the normal module\n');
  });
});
