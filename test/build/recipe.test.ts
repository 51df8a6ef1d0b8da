import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { needsNetwork, parseRecipe, RecipeSyntaxError, renderRecipe } from '../../src/build/recipe.js';

function syntaxError(text: string): RecipeSyntaxError {
  try {
    parseRecipe(text);
  } catch (e) {
    if (e instanceof RecipeSyntaxError) return e;
    throw e;
  }
  throw new Error('expected a syntax error');
}

const HEAD = 'FROM sha256:abc\nUSER root\nWORKDIR /\n';

describe('parseRecipe', () => {
  it('reads the subset into typed steps', () => {
    const r = parseRecipe(
      [
        '# a comment',
        'FROM sha256:abc',
        'user root',
        'WORKDIR /srv',
        'WORKDIR build',
        'ARG DEBIAN_FRONTEND=noninteractive',
        'ARG NO_DEFAULT',
        'ENV LANG=C.UTF-8 GREETING="hello world" Q=\'a b\' ESC=a\\ b',
        'COPY files/ /',
        'RUN apt-get update \\',
        '  # comments inside a continued line are dropped, as docker drops them',
        ' && apt-get install -y x \\   ',
        '',
        ' && true',
        'USER nobody:nogroup',
        'RUN systemctl enable foo.service',
        'COPY files/etc /etc',
      ].join('\n'),
    );
    expect(r.base).toBe('sha256:abc');
    expect(r.steps).toEqual([
      { kind: 'copy', src: 'files/', dest: '/', line: 9 },
      {
        kind: 'run',
        script: 'apt-get update  && apt-get install -y x  && true',
        env: { DEBIAN_FRONTEND: 'noninteractive', LANG: 'C.UTF-8', GREETING: 'hello world', Q: 'a b', ESC: 'a b' },
        user: 'root',
        workdir: '/srv/build',
        network: true,
        line: 10,
      },
      {
        kind: 'run',
        script: 'systemctl enable foo.service',
        env: expect.any(Object),
        user: 'nobody:nogroup',
        workdir: '/srv/build',
        network: false,
        line: 16,
      },
      { kind: 'copy', src: 'files/etc', dest: '/etc', line: 17 },
    ]);
  });

  it('lets ENV override an ARG of the same name', () => {
    const r = parseRecipe(`${HEAD}ARG X=1\nENV X=2\nRUN true`);
    expect(r.steps[0]).toMatchObject({ env: { X: '2' } });
  });

  const refused: [string, string, RegExp][] = [
    ['ADD', `${HEAD}ADD x /x`, /^line 4: ADD is not in the subset/],
    ['CMD', `${HEAD}CMD ["x"]`, /^line 4: CMD is not in the subset/],
    ['exec-form RUN', `${HEAD}RUN ["apt-get", "update"]`, /^line 4: RUN must use the shell form/],
    ['RUN --mount', `${HEAD}RUN --mount=type=cache,target=/x true`, /^line 4: RUN flags/],
    ['COPY --chown', `${HEAD}COPY --chown=1:1 files/ /`, /^line 4: COPY flags/],
    ['COPY from outside files/', `${HEAD}COPY Dockerfile /`, /^line 4: COPY source must be files\//],
    ['COPY escaping files/', `${HEAD}COPY files/../../etc /`, /^line 4: COPY source must be files\//],
    ['COPY relative destination', `${HEAD}COPY files/ etc`, /^line 4: COPY destination must be an absolute path/],
    ['two FROMs', `${HEAD}FROM x`, /^line 4: only one FROM/],
    ['FROM AS', 'FROM x AS y', /^line 1: FROM takes one image/],
    ['instruction before FROM', 'RUN true\nFROM x', /^line 1: RUN before FROM/],
    ['RUN before USER', 'FROM x\nWORKDIR /\nRUN true', /^line 3: USER and WORKDIR must be set before the first RUN/],
    ['RUN before WORKDIR', 'FROM x\nUSER root\nRUN true', /^line 3: USER and WORKDIR/],
    ['variable in ENV', `${HEAD}ENV PATH=$PATH:/x`, /^line 4: variable references/],
    ['ENV without value', `${HEAD}ENV LANG`, /^line 4: ENV LANG needs a value/],
    ['bad ARG name', `${HEAD}ARG 1X=a`, /^line 4: ARG name "1X"/],
    ['unterminated quote', `${HEAD}ENV A="x`, /^line 4: unterminated quote/],
    ['parser directive', '# escape=`\nFROM x', /^line 1: parser directives/],
    ['continuation at the end', `${HEAD}RUN true \\`, /^line 4: the file ends inside a continued line/],
    ['no FROM', '# only a comment\n', /^line 1: no FROM/],
    ['USER with spaces', 'FROM x\nUSER a b', /^line 2: USER takes one/],
  ];
  for (const [name, text, message] of refused) {
    it(`refuses ${name}, naming the line`, () => expect(syntaxError(text).message).toMatch(message));
  }
});

describe('needsNetwork', () => {
  it('is true for package managers that fetch and for downloaders', () => {
    for (const s of [
      'apt-get update',
      'DEBIAN_FRONTEND=noninteractive apt-get install -y x',
      'dnf -y install --setopt=install_weak_deps=False kernel-core',
      'apk add --no-cache linux-virt',
      'true && yum makecache',
      'cd /tmp; curl -fsSL https://example.invalid/x | sh',
      'env apk upgrade',
      '/usr/bin/dnf upgrade',
    ]) {
      expect(needsNetwork(s), s).toBe(true);
    }
  });
  it("is false for local work, and for package managers' offline subcommands", () => {
    for (const s of [
      'systemctl enable ssh.service img2vm-ready.service && systemctl mask systemd-firstboot.service',
      'apt-get clean && rm -rf /var/lib/apt/lists/*',
      'dnf clean all',
      'apk del build-base',
      'for s in devfs dmesg; do rc-update add "$s" sysinit; done',
      'mkinitfs -o /boot/initramfs-virt "$(cat /usr/share/kernel/virt/kernel.release)"',
      'dracut --force --no-hostonly --kver 6.1 /boot/initramfs-6.1.img',
    ]) {
      expect(needsNetwork(s), s).toBe(false);
    }
  });
});

describe('renderRecipe', () => {
  const tmpl = (files: Record<string, string>) => {
    const root = mkdtempSync(join(tmpdir(), 'img2vm-tmpl-'));
    for (const [p, c] of Object.entries(files)) {
      mkdirSync(dirname(join(root, 't', p)), { recursive: true });
      writeFileSync(join(root, 't', p), c);
    }
    return root;
  };
  it('renders, parses and lists the files with git modes, whatever the checkout umask', async () => {
    const root = tmpl({
      Dockerfile: 'FROM {{base}}\nUSER root\nWORKDIR /\nCOPY files/ /\nRUN {{cmd}}\n',
      'files/etc/a': 'a',
      'files/usr/bin/b': '#!/bin/sh\n',
    });
    chmodSync(join(root, 't/files/etc/a'), 0o664);
    chmodSync(join(root, 't/files/usr/bin/b'), 0o775);
    const r = await renderRecipe({ template: 't' }, { base: 'img', cmd: 'apk add x' }, root);
    expect(r.base).toBe('img');
    expect(r.steps.map((s) => s.kind)).toEqual(['copy', 'run']);
    expect(r.files.map((f) => [f.path, f.mode])).toEqual([
      ['files/etc/a', 0o644],
      ['files/usr/bin/b', 0o755],
    ]);
    rmSync(root, { recursive: true, force: true });
  });
  it('a template outside the subset, or with files outside files/, is an img2vm bug naming the template', async () => {
    const bad = tmpl({ Dockerfile: 'FROM {{base}}\nUSER root\nWORKDIR /\nADD x /\n' });
    await expect(renderRecipe({ template: 't' }, { base: 'img' }, bad)).rejects.toThrow(
      'templates/t/Dockerfile (rendered): line 4: ADD is not in the subset',
    );
    const stray = tmpl({ Dockerfile: 'FROM {{base}}\n', 'notes.txt': 'x' });
    await expect(renderRecipe({ template: 't' }, { base: 'img' }, stray)).rejects.toThrow(
      'templates/t/notes.txt: only files/ is copied into the guest',
    );
    await expect(renderRecipe({ template: 't' }, {}, stray)).rejects.toThrow('no value for {{base}}');
    rmSync(bad, { recursive: true, force: true });
    rmSync(stray, { recursive: true, force: true });
  });
});
