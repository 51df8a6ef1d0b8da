import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { parseOsRelease } from '../../src/guest/detect.js';
import { recipeFor } from '../../src/guest/distros.js';

const osr = (fields: Record<string, string>) =>
  parseOsRelease(
    Object.entries(fields)
      .map(([k, v]) => `${k}="${v}"`)
      .join('\n'),
  );

function refusal(f: () => unknown): Img2vmError {
  try {
    f();
  } catch (e) {
    if (e instanceof Img2vmError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('recipeFor: supported releases', () => {
  const cases: [
    string,
    Record<string, string>,
    { id: string; version: string; template: string; kernel: string; release: string },
  ][] = [
    [
      'Debian 11',
      { ID: 'debian', VERSION_ID: '11', VERSION_CODENAME: 'bullseye' },
      { id: 'debian', version: '11', template: 'debian', kernel: 'linux-image-cloud-amd64', release: '' },
    ],
    [
      'Debian 12',
      { ID: 'debian', VERSION_ID: '12', VERSION_CODENAME: 'bookworm' },
      {
        id: 'debian',
        version: '12',
        template: 'debian',
        kernel: 'linux-image-cloud-amd64',
        release: 'systemd-resolved',
      },
    ],
    [
      'Debian 13',
      { ID: 'debian', VERSION_ID: '13', VERSION_CODENAME: 'trixie' },
      {
        id: 'debian',
        version: '13',
        template: 'debian',
        kernel: 'linux-image-cloud-amd64',
        release: 'systemd-resolved',
      },
    ],
    [
      'Debian sid',
      { ID: 'debian', PRETTY_NAME: 'Debian GNU/Linux forky/sid', VERSION_CODENAME: 'forky' },
      {
        id: 'debian',
        version: 'testing',
        template: 'debian',
        kernel: 'linux-image-cloud-amd64',
        release: 'systemd-resolved',
      },
    ],
    [
      'Ubuntu 20.04',
      { ID: 'ubuntu', ID_LIKE: 'debian', VERSION_ID: '20.04', UBUNTU_CODENAME: 'focal' },
      { id: 'ubuntu', version: '20.04', template: 'debian', kernel: 'linux-image-virtual', release: '' },
    ],
    [
      'Ubuntu 22.04',
      { ID: 'ubuntu', VERSION_ID: '22.04' },
      { id: 'ubuntu', version: '22.04', template: 'debian', kernel: 'linux-image-virtual', release: '' },
    ],
    [
      'Ubuntu 22.10',
      { ID: 'ubuntu', VERSION_ID: '22.10' },
      {
        id: 'ubuntu',
        version: '22.10',
        template: 'debian',
        kernel: 'linux-image-virtual',
        release: 'systemd-resolved',
      },
    ],
    [
      'Ubuntu 24.04',
      { ID: 'ubuntu', VERSION_ID: '24.04' },
      {
        id: 'ubuntu',
        version: '24.04',
        template: 'debian',
        kernel: 'linux-image-virtual',
        release: 'systemd-resolved',
      },
    ],
    [
      'Ubuntu 25.10',
      { ID: 'ubuntu', VERSION_ID: '25.10' },
      {
        id: 'ubuntu',
        version: '25.10',
        template: 'debian',
        kernel: 'linux-image-virtual',
        release: 'systemd-resolved',
      },
    ],
    [
      'Alpine 3.18',
      { ID: 'alpine', VERSION_ID: '3.18.9' },
      { id: 'alpine', version: '3.18', template: 'alpine', kernel: 'linux-virt', release: '' },
    ],
    [
      'Alpine 3.22',
      { ID: 'alpine', VERSION_ID: '3.22.1' },
      { id: 'alpine', version: '3.22', template: 'alpine', kernel: 'linux-virt', release: '' },
    ],
    [
      'Alpine edge',
      { ID: 'alpine', VERSION_ID: '3.23_alpha20250108', PRETTY_NAME: 'Alpine Linux edge' },
      { id: 'alpine', version: 'edge', template: 'alpine', kernel: 'linux-virt', release: '' },
    ],
    [
      'Fedora 39',
      { ID: 'fedora', VERSION_ID: '39' },
      { id: 'fedora', version: '39', template: 'fedora', kernel: 'kernel-core', release: '' },
    ],
    [
      'Fedora 42',
      { ID: 'fedora', VERSION_ID: '42' },
      { id: 'fedora', version: '42', template: 'fedora', kernel: 'kernel-core', release: '' },
    ],
    [
      'CentOS Stream 9',
      { ID: 'centos', ID_LIKE: 'rhel fedora', VERSION_ID: '9' },
      { id: 'centos', version: '9', template: 'fedora', kernel: 'kernel-core', release: '' },
    ],
    [
      'CentOS Stream 10',
      { ID: 'centos', ID_LIKE: 'rhel fedora', VERSION_ID: '10' },
      { id: 'centos', version: '10', template: 'fedora', kernel: 'kernel-core', release: '' },
    ],
    [
      'Rocky 8.10',
      { ID: 'rocky', ID_LIKE: 'rhel centos fedora', VERSION_ID: '8.10' },
      { id: 'rocky', version: '8', template: 'fedora', kernel: 'kernel-core', release: '' },
    ],
    [
      'Rocky 9.5',
      { ID: 'rocky', VERSION_ID: '9.5' },
      { id: 'rocky', version: '9', template: 'fedora', kernel: 'kernel-core', release: '' },
    ],
    [
      'AlmaLinux 10.0',
      { ID: 'almalinux', VERSION_ID: '10.0' },
      { id: 'almalinux', version: '10', template: 'fedora', kernel: 'kernel-core', release: '' },
    ],
  ];
  for (const [name, fields, want] of cases) {
    it(name, () => {
      const r = recipeFor(osr(fields), 'amd64');
      expect({
        id: r.distro.id,
        version: r.distro.version,
        template: r.template,
        kernel: r.values.kernel_package,
        release: r.values.release_packages,
      }).toEqual(want);
      expect(r.warnings).toEqual([]);
    });
  }

  it('picks the init, network stack and sudo group per family', () => {
    const pick = (f: Record<string, string>) => {
      const d = recipeFor(osr(f), 'amd64').distro;
      return [d.init, d.network, d.sudoGroup];
    };
    expect(pick({ ID: 'debian', VERSION_ID: '12' })).toEqual(['systemd', 'networkd', 'sudo']);
    expect(pick({ ID: 'alpine', VERSION_ID: '3.20.0' })).toEqual(['openrc', 'udhcpc', 'wheel']);
    expect(pick({ ID: 'rocky', VERSION_ID: '9.4' })).toEqual(['systemd', 'networkmanager', 'wheel']);
  });

  it('socket-activated sshd on Ubuntu from 22.10, the service elsewhere', () => {
    const ssh = (f: Record<string, string>) => recipeFor(osr(f), 'amd64').distro.features.ssh.enable;
    expect(ssh({ ID: 'ubuntu', VERSION_ID: '22.04' })).toEqual(['ssh.service', 'img2vm-ssh-keygen.service']);
    expect(ssh({ ID: 'ubuntu', VERSION_ID: '24.04' })).toEqual(['ssh.socket', 'img2vm-ssh-keygen.service']);
    expect(ssh({ ID: 'debian', VERSION_ID: '13' })).toEqual(['ssh.service', 'img2vm-ssh-keygen.service']);
    expect(ssh({ ID: 'fedora', VERSION_ID: '41' })).toEqual(['sshd.service', 'img2vm-ssh-keygen.service']);
    expect(ssh({ ID: 'alpine', VERSION_ID: '3.21.0' })).toEqual(['img2vm-ssh-keygen', 'sshd']);
  });

  it('Alpine needs its root file system module named on the kernel command line; the others need nothing', () => {
    expect(recipeFor(osr({ ID: 'alpine', VERSION_ID: '3.20.3' }), 'amd64').distro.kernelArgs).toEqual([
      'modules=sd-mod,usb-storage,ext4',
      'rootfstype=ext4',
    ]);
    expect(recipeFor(osr({ ID: 'debian', VERSION_ID: '12' }), 'amd64').distro.kernelArgs).toEqual([]);
  });

  it("labels with the image's PRETTY_NAME when it has one", () => {
    expect(
      recipeFor(osr({ ID: 'debian', VERSION_ID: '12', PRETTY_NAME: 'Debian GNU/Linux 12 (bookworm)' }), 'amd64').label,
    ).toBe('Debian GNU/Linux 12 (bookworm)');
    expect(recipeFor(osr({ ID: 'rocky', VERSION_ID: '9.4' }), 'amd64').label).toBe('Rocky Linux 9');
    expect(
      recipeFor(osr({ ID: 'debian', VERSION_ID: '12', PRETTY_NAME: `evil\x1b[2J${'x'.repeat(200)}` }), 'amd64').label,
    ).toBe(`evil[2J${'x'.repeat(73)}`);
  });
});

describe('recipeFor: derivatives (ID_LIKE)', () => {
  it('accepts an Ubuntu derivative that names its Ubuntu release, as that release, with a warning', () => {
    const r = recipeFor(
      osr({
        ID: 'linuxmint',
        ID_LIKE: 'ubuntu debian',
        VERSION_ID: '21.3',
        UBUNTU_CODENAME: 'jammy',
        PRETTY_NAME: 'Linux Mint 21.3',
      }),
      'amd64',
    );
    expect([r.distro.id, r.distro.version, r.values.kernel_package]).toEqual([
      'ubuntu',
      '22.04',
      'linux-image-virtual',
    ]);
    expect(r.warnings).toEqual([
      'Linux Mint 21.3 is not supported as such; treating it as Ubuntu 22.04, the release it is built on',
    ]);
  });
  it('accepts a Debian derivative whose codename is a Debian release', () => {
    const r = recipeFor(
      osr({ ID: 'raspbian', ID_LIKE: 'debian', VERSION_ID: '12', VERSION_CODENAME: 'bookworm' }),
      'amd64',
    );
    expect([r.distro.id, r.distro.version]).toEqual(['debian', '12']);
    expect(r.warnings[0]).toMatch(/treating it as Debian 12 \(bookworm\)/);
  });
  it('treats Oracle Linux as an Enterprise Linux rebuild', () => {
    const r = recipeFor(osr({ ID: 'ol', ID_LIKE: 'fedora', VERSION_ID: '9.4' }), 'amd64');
    expect([r.template, r.distro.version, r.distro.network]).toEqual(['fedora', '9', 'networkmanager']);
    expect(r.warnings).toHaveLength(1);
  });
  it('refuses a derivative that names no parent release img2vm knows', () => {
    expect(
      refusal(() =>
        recipeFor(
          osr({
            ID: 'kali',
            ID_LIKE: 'debian',
            VERSION_ID: '2024.1',
            VERSION_CODENAME: 'kali-rolling',
            PRETTY_NAME: 'Kali GNU/Linux Rolling',
          }),
          'amd64',
        ),
      ).message,
    ).toMatch(/^Kali GNU\/Linux Rolling is derived from debian but names no release of it img2vm knows/);
    expect(
      refusal(() => recipeFor(osr({ ID: 'amzn', ID_LIKE: 'fedora', VERSION_ID: '2023' }), 'amd64')).message,
    ).toMatch(/derived from fedora/);
    expect(
      refusal(() => recipeFor(osr({ ID: 'postmarketos', ID_LIKE: 'alpine', VERSION_ID: 'v24.06' }), 'amd64')).message,
    ).toMatch(/derived from alpine/);
    expect(
      refusal(() => recipeFor(osr({ ID: 'pop', ID_LIKE: 'ubuntu debian', UBUNTU_CODENAME: 'bionic' }), 'amd64'))
        .message,
    ).toMatch(/built on Ubuntu "bionic"/);
  });
});

describe('recipeFor: refusals', () => {
  const cases: [string, Record<string, string> | undefined, RegExp][] = [
    ['scratch (no os-release)', undefined, /^the image has no \/etc\/os-release/],
    ['Debian 10', { ID: 'debian', VERSION_ID: '10' }, /^Debian 10 is too old/],
    ['Ubuntu 18.04', { ID: 'ubuntu', VERSION_ID: '18.04' }, /^Ubuntu 18\.04 is too old/],
    ['Alpine 3.17', { ID: 'alpine', VERSION_ID: '3.17.2' }, /^Alpine 3\.17\.2 is too old/],
    ['Fedora 38', { ID: 'fedora', VERSION_ID: '38' }, /^Fedora 38 is too old/],
    ['CentOS Stream 8', { ID: 'centos', VERSION_ID: '8' }, /end of life/],
    ['CentOS 7', { ID: 'centos', VERSION_ID: '7' }, /^CentOS Stream 7 is not supported/],
    ['Rocky 7', { ID: 'rocky', VERSION_ID: '7' }, /^Rocky Linux 7 is not supported/],
    ['RHEL UBI', { ID: 'rhel', VERSION_ID: '9.4', PRETTY_NAME: 'Red Hat Enterprise Linux 9.4 (Plow)' }, /subscription/],
    ['Devuan', { ID: 'devuan', ID_LIKE: 'debian', VERSION_ID: '5' }, /does not use systemd/],
    ['Arch', { ID: 'arch', PRETTY_NAME: 'Arch Linux' }, /^distribution "Arch Linux" is not supported/],
    ['openSUSE', { ID: 'opensuse-tumbleweed', ID_LIKE: 'opensuse suse' }, /is not supported/],
  ];
  for (const [name, fields, message] of cases) {
    it(`${name}: unsupportedDistro naming what is supported and the other ways`, () => {
      const e = refusal(() => recipeFor(fields && osr(fields), 'amd64'));
      expect(e.kind).toBe('unsupportedDistro');
      expect(e.exitCode).toBe(6);
      expect(e.message).toMatch(message);
      expect(e.message).toMatch(
        /Debian 11, 12, 13 and testing\/sid; Ubuntu 20\.04 and newer; Alpine 3\.18 and newer; Fedora 39 and newer/,
      );
      expect(e.hint).toMatch(/--init img2vm/);
      expect(e.hint).toMatch(/--init image/);
    });
  }
  it('refuses architectures img2vm makes no guests for before looking at the distribution', () => {
    const e = refusal(() => recipeFor(osr({ ID: 'debian', VERSION_ID: '12' }), 'riscv64'));
    expect(e.message).toBe('image architecture riscv64 is not supported');
    expect(e.kind).toBe('unsupportedDistro');
  });

  it.each([
    ['Alpine 3.22', { ID: 'alpine', VERSION_ID: '3.22.1' }, 'alpine'],
    ['Fedora 42', { ID: 'fedora', VERSION_ID: '42' }, 'fedora'],
    ['Rocky Linux 9', { ID: 'rocky', ID_LIKE: 'rhel centos fedora', VERSION_ID: '9.5' }, 'fedora'],
  ])('refuses %s on arm64: its template names ttyS0 in files it copies as they are', (_n, fields, template) => {
    const e = refusal(() => recipeFor(osr(fields), 'arm64'));
    expect(e.kind).toBe('unsupportedDistro');
    expect(e.message).toMatch(
      new RegExp(
        `^img2vm's ${template} template installs a kernel into amd64 guests only, and .* here is linux/arm64$`,
      ),
    );
    expect(e.hint).toMatch(/--init img2vm/);
  });
});

describe('recipeFor: the architecture is data', () => {
  it.each([
    ['Debian 12', { ID: 'debian', VERSION_ID: '12' }, 'amd64', 'linux-image-cloud-amd64', 'ttyS0'],
    ['Debian 12', { ID: 'debian', VERSION_ID: '12' }, 'arm64', 'linux-image-cloud-arm64', 'ttyAMA0'],
    ['Debian 11', { ID: 'debian', VERSION_ID: '11' }, 'arm64', 'linux-image-cloud-arm64', 'ttyAMA0'],
    ['Debian testing', { ID: 'debian', VERSION_CODENAME: 'forky' }, 'arm64', 'linux-image-cloud-arm64', 'ttyAMA0'],
    ['Ubuntu 24.04', { ID: 'ubuntu', VERSION_ID: '24.04' }, 'arm64', 'linux-image-virtual', 'ttyAMA0'],
    ['Alpine 3.22', { ID: 'alpine', VERSION_ID: '3.22.1' }, 'amd64', 'linux-virt', undefined],
  ])('%s on %s: kernel %s, serial console %s', (_n, fields, arch, kernel, console) => {
    const r = recipeFor(osr(fields), arch);
    expect(r.distro.arch).toBe(arch);
    expect(r.distro.kernelPackage).toBe(kernel);
    expect(r.values.kernel_package).toBe(kernel);
    expect(r.values.serial_console).toBe(console);
  });

  it('defaults to amd64 when no architecture is given (plans of an image not read yet)', () => {
    expect(recipeFor(osr({ ID: 'debian', VERSION_ID: '12' })).distro.kernelPackage).toBe('linux-image-cloud-amd64');
  });
});
