import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderTemplate } from '../../src/guest/template.js';
import { parseOsRelease } from '../../src/guest/detect.js';
import { recipeFor } from '../../src/guest/distros.js';
import { planBuild } from '../../src/guest/builders/docker.js';
import { TEMPLATES_DIR } from '../../src/core/paths.js';

describe('renderTemplate', () => {
  it('fills placeholders', () => expect(renderTemplate('FROM {{base}}\n{{ x }}', { base: 'a', x: 'b' })).toBe('FROM a\nb'));
  it('refuses unknown and unused names', () => {
    expect(() => renderTemplate('{{nope}}', {})).toThrow(/no value for \{\{nope\}\}/);
    expect(() => renderTemplate('x', { y: '1' })).toThrow(/never used: y/);
  });
});

describe('distribution detection', () => {
  const bookworm = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n';
  it('parses os-release', () => {
    expect(parseOsRelease(bookworm)).toMatchObject({ id: 'debian', versionId: '12', versionCodename: 'bookworm', prettyName: 'Debian GNU/Linux 12 (bookworm)' });
    expect(parseOsRelease('ID=ubuntu\nID_LIKE="debian"\n').idLike).toEqual(['debian']);
  });
  it('picks the Debian recipe and names what is supported otherwise', () => {
    expect(recipeFor(parseOsRelease(bookworm), 'amd64').template).toBe('debian');
    expect(recipeFor(parseOsRelease('ID=debian\nPRETTY_NAME="Debian GNU/Linux trixie/sid"\n'), 'amd64').template).toBe('debian');
    expect(() => recipeFor(parseOsRelease('ID=alpine\nPRETTY_NAME="Alpine Linux v3.20"'), 'amd64')).toThrow(/Alpine Linux v3.20.*not supported/);
    expect(() => recipeFor(undefined, 'amd64')).toThrow(/no \/etc\/os-release/);
    expect(() => recipeFor(parseOsRelease('ID=debian\nVERSION_ID="11"'), 'amd64')).toThrow(/too old/);
    expect(() => recipeFor(parseOsRelease(bookworm), 'arm64')).toThrow(/arm64/);
  });
});

describe('debian template', () => {
  it('renders with every placeholder filled, and a cache key that follows the base and the template', async () => {
    const recipe = recipeFor(parseOsRelease('ID=debian\nVERSION_ID=12'), 'amd64');
    const a = await planBuild('sha256:aaa', recipe);
    const b = await planBuild('sha256:bbb', recipe);
    const dockerfile = a.files.find((f) => f.path === 'Dockerfile')!.content.toString();
    expect(dockerfile).toContain('FROM sha256:aaa');
    expect(dockerfile).toContain('linux-image-cloud-amd64');
    expect(dockerfile).not.toMatch(/\{\{/);
    expect(a.key).not.toBe(b.key);
    expect(a.key).toBe((await planBuild('sha256:aaa', recipe)).key);
    expect(a.tag).toMatch(/^img2vm-cache:[0-9a-f]{32}$/);
    expect(a.files.map((f) => f.path)).toContain('files/etc/systemd/system/img2vm-ready.service');
  });
  it('prints the readiness marker img2vm test waits for', () => {
    const unit = readFileSync(join(TEMPLATES_DIR, 'debian/files/etc/systemd/system/img2vm-ready.service'), 'utf8');
    expect(unit).toContain('img2vm-ready: ');
  });
});
