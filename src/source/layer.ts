// Opens a layer blob as a plain tar stream, whatever its compression (detected by magic bytes, not by name).
import { createGunzip } from 'node:zlib';
import { PassThrough, type Readable } from 'node:stream';
import { Img2vmError } from '../core/errors.js';

export type Compression = 'none' | 'gzip' | 'zstd';

export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

/** Peeks at the first bytes and returns a stream of the uncompressed tar. */
export async function decompressLayer(input: Readable, name: string): Promise<Readable> {
  const head = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let len = 0;
    const onData = (c: Buffer) => {
      chunks.push(c);
      len += c.length;
      if (len >= 4) finish();
    };
    const finish = () => {
      input.off('data', onData);
      input.off('end', finish);
      input.off('error', reject);
      input.pause();
      resolve(Buffer.concat(chunks));
    };
    input.on('data', onData);
    input.once('end', finish);
    input.once('error', reject);
  });
  const body = new PassThrough();
  body.write(head);
  input.pipe(body);
  input.resume();
  input.once('error', (e) => body.destroy(e));
  const kind = detectCompression(head);
  if (kind === 'none') return body;
  if (kind === 'gzip') {
    const gunzip = createGunzip();
    body.once('error', (e) => gunzip.destroy(e));
    return body.pipe(gunzip);
  }
  throw new Img2vmError('badImage', `layer ${name} is zstd-compressed, which this Node runtime cannot decompress`, 'recompress the image with gzip (e.g. docker save, or skopeo copy --dest-compress-format gzip)');
}
