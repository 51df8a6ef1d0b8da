// Golden renders of every distribution's recipe: any change to a template, a value or a step shows up here.
// UPDATE_GOLDEN=1 npx vitest run --project unit test/guest/golden.test.ts rewrites them; review the diff.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseOsRelease } from '../../src/guest/detect.js';
import { recipeFor } from '../../src/guest/distros.js';
import { buildValues, type BuildFeatures } from '../../src/guest/guest-config.js';
import { withLuks } from '../../src/guest/distro-config.js';
import { renderRecipe, type RenderedRecipe } from '../../src/build/recipe.js';

/** A stable text form of a rendered recipe: what the golden files hold. */
function describeRecipe(r: RenderedRecipe): string {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const steps = r.steps.map((s) =>
    s.kind === 'copy'
      ? `${s.line} COPY ${s.src} -> ${s.dest}`
      : `${s.line} RUN user=${s.user} workdir=${s.workdir} network=${s.network ? 'yes' : 'no'} env=${Object.entries(
          s.env,
        )
          .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
          .join(',')}`,
  );
  return [
    '== Dockerfile',
    r.dockerfile.trimEnd(),
    '== files',
    ...r.files.map((f) => `${f.mode.toString(8).padStart(4, '0')} ${sha(f.content)} ${f.path}`),
    '== steps',
    ...steps,
    '',
  ].join('\n');
}

const GOLDEN = join(import.meta.dirname, 'golden', 'recipes');
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const NONE: BuildFeatures = { ssh: false, sudo: false, cloudInit: false, entrypoint: false };
const ALL: BuildFeatures = { ssh: true, sudo: true, cloudInit: true, entrypoint: true };

/** An encrypted root (--luks-password): the family's unlocking packages and initramfs settings on top. */
const LUKS = 'luks';

/** Name, os-release, features, and the guest's architecture (amd64 unless given) or LUKS. */
const CASES: [string, string, BuildFeatures, string?][] = [
  ['debian-11', 'ID=debian\nVERSION_ID="11"\nVERSION_CODENAME=bullseye', NONE],
  ['debian-12', 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm', NONE],
  ['debian-12-all-options', 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm', ALL],
  ['debian-12-arm64', 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm', NONE, 'arm64'],
  ['debian-12-luks', 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm', NONE, LUKS],
  ['debian-13', 'ID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie', NONE],
  ['debian-testing', 'ID=debian\nVERSION_CODENAME=forky\nPRETTY_NAME="Debian GNU/Linux forky/sid"', NONE],
  ['ubuntu-20.04', 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="20.04"', NONE],
  ['ubuntu-20.04-all-options', 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="20.04"', ALL],
  ['ubuntu-22.04', 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"', NONE],
  ['ubuntu-24.04', 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"', NONE],
  ['ubuntu-24.04-all-options', 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"', ALL],
  ['ubuntu-24.04-arm64', 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"', NONE, 'arm64'],
  ['ubuntu-25.04', 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="25.04"', NONE],
  ['alpine-3.18', 'ID=alpine\nVERSION_ID=3.18.9', NONE],
  ['alpine-3.22', 'ID=alpine\nVERSION_ID=3.22.1', NONE],
  ['alpine-3.22-all-options', 'ID=alpine\nVERSION_ID=3.22.1', ALL],
  ['alpine-3.22-luks', 'ID=alpine\nVERSION_ID=3.22.1', NONE, LUKS],
  ['alpine-edge', 'ID=alpine\nVERSION_ID=3.23_alpha20250108\nPRETTY_NAME="Alpine Linux edge"', NONE],
  ['fedora-41', 'ID=fedora\nVERSION_ID=41', NONE],
  ['fedora-42', 'ID=fedora\nVERSION_ID=42', NONE],
  ['fedora-42-all-options', 'ID=fedora\nVERSION_ID=42', ALL],
  ['fedora-42-luks', 'ID=fedora\nVERSION_ID=42', NONE, LUKS],
  ['centos-stream-9', 'ID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="9"', NONE],
  ['centos-stream-10', 'ID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="10"', NONE],
  ['rocky-8', 'ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.10"', NONE],
  ['rocky-9', 'ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.5"', NONE],
  ['rocky-9-all-options', 'ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.5"', ALL],
  ['rocky-9-luks', 'ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.5"', ALL, LUKS],
  ['rocky-10', 'ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="10.0"', NONE],
  ['almalinux-8', 'ID="almalinux"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.10"', NONE],
  ['almalinux-9', 'ID="almalinux"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.5"', NONE],
  ['almalinux-10', 'ID="almalinux"\nID_LIKE="rhel centos fedora"\nVERSION_ID="10.0"', NONE],
];

async function render(osRelease: string, features: BuildFeatures, archOrLuks = 'amd64'): Promise<string> {
  const luks = archOrLuks === LUKS;
  const recipe = recipeFor(parseOsRelease(osRelease), luks ? 'amd64' : archOrLuks);
  const values = buildValues(recipe, features);
  const r = await renderRecipe(recipe, { base: 'img2vm-golden-base', ...(luks ? withLuks(recipe, values) : values) });
  return describeRecipe(r);
}

describe('golden recipes', () => {
  if (UPDATE) mkdirSync(GOLDEN, { recursive: true });
  for (const [name, osRelease, features, arch] of CASES) {
    it(`${name} renders as test/guest/golden/${name}.txt`, async () => {
      const got = await render(osRelease, features, arch);
      const path = join(GOLDEN, `${name}.txt`);
      if (UPDATE) writeFileSync(path, got);
      let want: string;
      try {
        want = readFileSync(path, 'utf8');
      } catch {
        throw new Error(`missing golden file ${path}: run with UPDATE_GOLDEN=1 and review it`);
      }
      // toBe, not a snapshot: the diff shows which lines of the recipe moved.
      expect(got).toBe(want);
    });
  }

  it('has no golden file that no case produces', () => {
    const names = new Set(CASES.map(([n]) => `${n}.txt`));
    expect(readdirSync(GOLDEN).filter((f) => !names.has(f))).toEqual([]);
  });
});
