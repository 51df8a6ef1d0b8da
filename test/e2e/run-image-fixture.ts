// The image the `img2vm run IMAGE` tests run: a busybox userland (shell, httpd, id) with a user, as an oci-archive.
import { readFile } from 'node:fs/promises';
import { layerOf, writeOciArchive, type ProcessConfig } from '../../fixtures/oci.js';

const APPLETS = [
  'sh',
  'echo',
  'cat',
  'ls',
  'id',
  'env',
  'pwd',
  'sleep',
  'httpd',
  'mkdir',
  'stat',
  'stty',
  'dd',
  'tty',
  'test',
  'seq',
  'sync',
  'rm',
  'mknod',
  'mkfifo',
  'chown',
  'chmod',
  'sha256sum',
  'cut',
];

/** A busybox image whose CMD prints a line; `app` is uid 1000 in its /etc/passwd; `tag` (in /etc/tag) makes it new. */
export async function writeBusyboxImage(
  dest: string,
  config: ProcessConfig = { Cmd: ['echo', 'hello from the image'] },
  tag = '',
): Promise<void> {
  await writeOciArchive(
    dest,
    [
      await layerOf([
        { name: 'bin/', dir: true },
        { name: 'bin/busybox', mode: 0o755, content: await readFile('/bin/busybox') },
        ...APPLETS.map((a) => ({ name: `bin/${a}`, symlink: 'busybox' })),
        { name: 'etc/', dir: true },
        { name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' },
        { name: 'etc/group', content: 'root:x:0:\napp:x:1000:\n' },
        { name: 'etc/tag', content: tag },
        { name: 'tmp/', dir: true, mode: 0o1777 },
      ]),
    ],
    { Env: ['PATH=/bin', 'FROM_IMAGE=yes'], ...config },
  );
}
