// A Dockerfile context for the img2vm build tests and the busybox base it builds on, made available to docker
// (imported into the daemon) and to buildah (an oci-archive its FROM names) without any registry.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { layerOf, writeOciArchive } from '../../fixtures/oci.js';
import { sh } from './helpers.js';

export const BASE_TAG = 'img2vm-e2e-build-base:busybox';

export interface BuildFixture {
  /** The context directory (Dockerfile, hello.txt). */
  context: string;
  /** --build-arg BASE=... for each builder. */
  base: { docker: string; buildah: string };
}

/** Dockerfile: a COPY, a RUN that uses a build argument, a CMD that prints both; FAIL=1 makes the RUN fail. */
export const DOCKERFILE = `ARG BASE
FROM \${BASE}
ARG GREETING=unset
ARG FAIL=0
COPY hello.txt /hello.txt
RUN if [ "$FAIL" = 1 ]; then echo "step failed on purpose" >&2; exit 3; fi; echo "greeting=\${GREETING}" > /greeting
CMD ["/bin/sh", "-c", "cat /hello.txt /greeting; exit 5"]
`;

export async function buildFixture(dir: string): Promise<BuildFixture> {
  const applets = ['sh', 'echo', 'cat', '['];
  const layer = await layerOf([
    { name: 'bin/', dir: true },
    { name: 'bin/busybox', mode: 0o755, content: await readFile('/bin/busybox') },
    ...applets.map((a) => ({ name: `bin/${a}`, symlink: 'busybox' })),
    { name: 'etc/', dir: true },
    { name: 'etc/os-release', content: 'ID=toyos\nNAME="Toy OS"\n' },
  ]);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'base-layer.tar'), layer);
  await sh('bash', [join(import.meta.dirname, '..', '..', 'scripts', 'start-docker.sh')]);
  await sh('docker', ['import', join(dir, 'base-layer.tar'), BASE_TAG]);
  const archive = join(dir, 'base.tar');
  await writeOciArchive(archive, [layer], { Cmd: ['/bin/sh'] }, 'latest', { history: true });
  const context = join(dir, 'ctx');
  await mkdir(context, { recursive: true });
  await writeFile(join(context, 'Dockerfile'), DOCKERFILE);
  await writeFile(join(context, 'hello.txt'), 'hello from the context\n');
  return { context, base: { docker: BASE_TAG, buildah: `oci-archive:${archive}` } };
}
