import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { it } from 'vitest';
import { RootfsBuilder } from '../../src/rootfs/flatten.js';
import { makeTar, sandbox, type Ent } from './helpers.js';
it('bench', async () => {
  const small: Ent[] = [];
  for (let d = 0; d < 500; d++) {
    small.push({ name: `usr/share/d${d}/`, type: 'directory' });
    for (let f = 0; f < 20; f++) small.push({ name: `usr/share/d${d}/file${f}.txt`, content: randomBytes(2000 + f * 300) });
  }
  const big: Ent[] = [{ name: 'big', content: Buffer.concat(Array.from({ length: 50 }, () => randomBytes(4 << 20))) }];
  for (const [label, ents] of [['small', small], ['big', big]] as const) {
    const tar = await makeTar(ents);
    for (let rep = 0; rep < 2; rep++) {
      const s2 = sandbox();
      const t = performance.now();
      const b = new RootfsBuilder(s2.root);
      await b.applyLayer(Readable.from([tar]));
      const t2 = performance.now();
      await b.finish();
      console.log(label, (t2 - t).toFixed(0), 'ms apply', (performance.now() - t2).toFixed(0), 'ms finish');
      s2.cleanup();
    }
  }
}, 120000);
