// Hands an image from any source to the Docker daemon (POST /images/load) so a docker build can start FROM it.
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import type * as TarStream from 'tar-stream';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { sha256 } from './digest.js';
import type { DockerClient } from './docker-api.js';
import type { SourceImage } from './image.js';
import { tarStream } from '../core/lazy.js';

export interface ImportOptions {
  /** Tag for the loaded image; default img2vm-source:<first 16 hex digits of the id>. */
  tag?: string;
}

/**
 * Makes img available in the daemon and returns its image ID there (sha256:… of the config, the
 * same as img.id when the source kept the config bytes). Nothing is sent when the daemon already
 * has it. The archive is generated on the fly: manifest.json, the config, one file per layer
 * (compressed layers are fine: the daemon decompresses and checks each against its diff_id).
 */
export async function importToDaemon(
  img: SourceImage,
  client: DockerClient,
  ctx: RunContext,
  o: ImportOptions = {},
): Promise<string> {
  if (img.daemonId && (await client.inspect(img.daemonId))) return img.daemonId;
  const configBytes = img.configBytes ?? Buffer.from(JSON.stringify(img.config));
  const id = sha256(configBytes);
  const tagged = o.tag ?? `img2vm-source:${id.slice(7, 23)}`;
  const [repo, tag] = splitTag(tagged);
  const have = await client.inspect(id);
  if (have) {
    await client.tag(id, repo, tag);
    return have.Id;
  }

  // Layers without a known size are spooled to the work directory first: a tar header needs the size.
  const sized: { open: () => Promise<Readable>; size: number }[] = [];
  let spool: string | undefined;
  try {
    for (const [i, l] of img.layers.entries()) {
      if (l.size !== undefined) {
        sized.push({ open: () => l.open(), size: l.size });
        continue;
      }
      spool ??= await mkdtemp(join(ctx.work, 'load-'));
      const p = join(spool, `${i}.tar`);
      await pipeline(await l.open(), createWriteStream(p, { mode: 0o600 }), { signal: ctx.signal });
      const size = (await stat(p)).size;
      sized.push({ open: async () => createReadStream(p), size });
    }

    const hex = id.slice(7);
    const names = sized.map((_, i) => `${String(i).padStart(3, '0')}/layer.tar`);
    const manifest = JSON.stringify([{ Config: `${hex}.json`, RepoTags: [`${repo}:${tag}`], Layers: names }]);
    const pack = tarStream().pack();
    const body = new PassThrough();
    const feeding = (async () => {
      const mtime = new Date(0);
      await entry(pack, { name: `${hex}.json`, size: configBytes.length, mtime }, configBytes);
      for (const [i, l] of sized.entries()) {
        const s = await l.open();
        const e = pack.entry({ name: names[i]!, size: l.size, mtime, mode: 0o644 });
        await pipeline(s, e, { signal: ctx.signal });
      }
      await entry(pack, { name: 'manifest.json', size: Buffer.byteLength(manifest), mtime }, Buffer.from(manifest));
      pack.finalize();
    })();
    // Whichever side fails first explains the failure (a bad layer, or the daemon refusing); the
    // other side is torn down so it cannot stay stuck on backpressure.
    let first: { e: unknown } | undefined;
    const loading = client.load(body);
    feeding.catch((e) => {
      first ??= { e };
      pack.destroy(e);
    });
    loading.catch((e) => {
      first ??= { e };
      pack.destroy(e);
      body.destroy(e);
    });
    pack.pipe(body);
    pack.on('error', (e) => body.destroy(e));
    const [, load] = await Promise.allSettled([feeding, loading]);
    if (first) throw first.e;
    const lines = (load as PromiseFulfilledResult<string[]>).value;
    const info = await client.inspect(`${repo}:${tag}`);
    if (!info)
      throw new Img2vmError(
        'toolFailed',
        `the Docker daemon did not keep the image it loaded (${lines.join('; ') || 'no output'})`,
        'see the daemon log',
      );
    ctx.sink({
      type: 'log',
      level: 'debug',
      stage: 'source',
      message: `loaded ${img.ref} into the Docker daemon as ${repo}:${tag} (${info.Id})`,
    });
    return info.Id;
  } finally {
    if (spool) await rm(spool, { recursive: true, force: true });
  }
}

function entry(pack: TarStream.Pack, header: Parameters<TarStream.Pack['entry']>[0], data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => pack.entry(header, data, (err) => (err ? reject(err) : resolve())));
}

function splitTag(s: string): [string, string] {
  const i = s.lastIndexOf(':');
  return i > s.lastIndexOf('/') ? [s.slice(0, i), s.slice(i + 1)] : [s, 'latest'];
}
