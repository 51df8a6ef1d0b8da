// The parts of the cache that live in image stores: docker's and podman's img2vm-cache:* (guest builds) and img2vm-source:* (imported sources).
import { stat } from 'node:fs/promises';
import { z } from 'zod';
import type { BuildCache } from '../build/build-cache.js';
import { run, which } from '../tools/index.js';
import { isoOf, type CacheKind, type CacheStore, type Removable, type RemoveOutcome } from './entries.js';

/** Docker spells them without a registry; podman puts local images under localhost/. */
const REPOS: Record<CacheStore, Record<string, CacheKind>> = {
  docker: { 'img2vm-cache': 'guest-build', 'img2vm-source': 'source-image' },
  podman: { 'localhost/img2vm-cache': 'guest-build', 'localhost/img2vm-source': 'source-image' },
  img2vm: {},
};

export function dockerListArgv(): string[] {
  return [
    'image',
    'ls',
    '--no-trunc',
    '--filter',
    'reference=img2vm-cache:*',
    '--filter',
    'reference=img2vm-source:*',
    '--format',
    '{{.Repository}}:{{.Tag}}',
  ];
}

export function dockerInspectArgv(refs: readonly string[]): string[] {
  return ['image', 'inspect', ...refs];
}

/** Not forced: an image a container (a build in progress) uses stays, and only this tag goes if it has others. */
export function imageRemoveArgv(ref: string): string[] {
  return ['image', 'rm', ref];
}

export function podmanListArgv(): string[] {
  return ['images', '--format', 'json'];
}

const DockerInspectSchema = z.array(
  z
    .object({
      Id: z.string(),
      RepoTags: z.array(z.string()).nullish(),
      Created: z.string(),
      Size: z.number(),
      Metadata: z.object({ LastTagTime: z.string().nullish() }).passthrough().nullish(),
      Config: z
        .object({ Labels: z.record(z.string(), z.string()).nullish() })
        .passthrough()
        .nullish(),
    })
    .passthrough(),
);

const PodmanListSchema = z.array(
  z
    .object({
      Id: z.string(),
      Names: z.array(z.string()).nullish(),
      Created: z.number(),
      Size: z.number(),
      Labels: z.record(z.string(), z.string()).nullish(),
    })
    .passthrough(),
);

function splitRef(ref: string): [string, string] {
  const i = ref.lastIndexOf(':');
  return [ref.slice(0, i), ref.slice(i + 1)];
}

function detailOf(kind: CacheKind, labels: Record<string, string> | null | undefined): string {
  if (kind === 'source-image') return 'an image loaded for a builder to start from';
  const t = labels?.['org.img2vm.template'];
  const base = labels?.['org.img2vm.base'];
  return t ? `template ${t}${base ? `, base ${base.slice(7, 19)}` : ''}` : 'a guest build';
}

async function removeImage(tool: 'docker' | 'podman', ref: string, bytes: number): Promise<RemoveOutcome> {
  const r = await run(tool, imageRemoveArgv(ref), { reject: false });
  if (r.exitCode !== 0)
    return { removed: false, why: (r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? `${tool} image rm failed` };
  // An image with other tags is only untagged: its bytes stay.
  return /^Deleted:/m.test(r.stdout)
    ? { removed: true, freed: bytes }
    : { removed: true, freed: 0, note: 'untagged; the image has other tags' };
}

/** docker's img2vm-cache:* and img2vm-source:* images; last use is the later of creation and last tagging. */
export async function dockerImages(notes: string[]): Promise<Removable[]> {
  if (!which('docker')) {
    notes.push('docker: the docker command is not installed, so its images are not listed');
    return [];
  }
  const ls = await run('docker', dockerListArgv(), { reject: false });
  if (ls.exitCode !== 0) {
    notes.push(`docker: not listed (${(ls.stderr || ls.stdout).trim().split('\n')[0]})`);
    return [];
  }
  const refs = [
    ...new Set(
      ls.stdout
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.includes('<none>')),
    ),
  ];
  if (refs.length === 0) return [];
  const ins = await run('docker', dockerInspectArgv(refs), { reject: false });
  const parsed = DockerInspectSchema.safeParse(JSON.parse(ins.stdout || '[]'));
  if (!parsed.success) {
    notes.push('docker: image inspect gave output img2vm does not understand');
    return [];
  }
  const out: Removable[] = [];
  for (const img of parsed.data) {
    for (const ref of img.RepoTags ?? []) {
      const kind = REPOS.docker[splitRef(ref)[0]];
      if (!kind || !refs.includes(ref)) continue;
      const tagged = Date.parse(img.Metadata?.LastTagTime ?? '');
      const used = Math.max(Date.parse(img.Created) || 0, tagged > 0 ? tagged : 0);
      out.push({
        entry: {
          kind,
          store: 'docker',
          name: ref,
          detail: detailOf(kind, img.Config?.Labels),
          bytes: img.Size,
          lastUsed: isoOf(used),
          busy: null,
          location: img.Id,
        },
        remove: () => removeImage('docker', ref, img.Size),
      });
    }
  }
  return out.sort((a, b) => (a.entry.name < b.entry.name ? -1 : 1));
}

/** podman's img2vm-cache:* and img2vm-source:* images; last use from img2vm's stamp (podman keeps none). */
export async function podmanImages(cache: BuildCache, notes: string[]): Promise<Removable[]> {
  if (!which('podman')) return [];
  if (process.getuid?.() !== 0) {
    notes.push("podman: not listed (img2vm's podman builder uses root's storage; run as root)");
    return [];
  }
  const ls = await run('podman', podmanListArgv(), { reject: false });
  if (ls.exitCode !== 0) {
    notes.push(`podman: not listed (${(ls.stderr || ls.stdout).trim().split('\n')[0]})`);
    return [];
  }
  const parsed = PodmanListSchema.safeParse(JSON.parse(ls.stdout || '[]'));
  if (!parsed.success) {
    notes.push('podman: images gave output img2vm does not understand');
    return [];
  }
  const out: Removable[] = [];
  for (const img of parsed.data) {
    for (const ref of img.Names ?? []) {
      const [repo, tag] = splitRef(ref);
      const kind = REPOS.podman[repo];
      if (!kind) continue;
      const stamp = await stat(cache.podmanStamp(kind === 'guest-build' ? 'cache' : 'source', tag)).catch(
        () => undefined,
      );
      const used = Math.max(img.Created * 1000, stamp?.mtimeMs ?? 0);
      out.push({
        entry: {
          kind,
          store: 'podman',
          name: ref,
          detail: detailOf(kind, img.Labels),
          bytes: img.Size,
          lastUsed: isoOf(used),
          busy: null,
          location: img.Id,
        },
        remove: () => removeImage('podman', ref, img.Size),
      });
    }
  }
  return out.sort((a, b) => (a.entry.name < b.entry.name ? -1 : 1));
}
