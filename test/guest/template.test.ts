// Templates as data: placeholders, the docker builder's Dockerfile, shared files, what the steps do (the scripts: template.tools.test.ts).
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TEMPLATES_DIR } from '../../src/core/paths.js';
import { parseOsRelease } from '../../src/guest/detect.js';
import { recipeFor } from '../../src/guest/distros.js';
import { planBuild } from '../../src/build/docker.js';
import { buildValues } from '../../src/guest/guest-config.js';
import { renderRecipe } from '../../src/build/recipe.js';
import { renderTemplate } from '../../src/build/template.js';

const TEMPLATES = ['debian', 'fedora', 'alpine'];

const read = (t: string, p: string) => readFileSync(join(TEMPLATES_DIR, t, 'files', p), 'utf8');

describe('renderTemplate', () => {
  it('fills placeholders', () =>
    expect(renderTemplate('FROM {{base}}\n{{ x }}', { base: 'a', x: 'b' })).toBe('FROM a\nb'));
  it('refuses unknown and unused names', () => {
    expect(() => renderTemplate('{{nope}}', {})).toThrow(/no value for \{\{nope\}\}/);
    expect(() => renderTemplate('x', { y: '1' })).toThrow(/never used: y/);
  });
});

describe('templates', () => {
  it('the docker builder renders the same Dockerfile as the recipe model, with a cache key that follows the base', async () => {
    const recipe = recipeFor(parseOsRelease('ID=debian\nVERSION_ID=12'), 'amd64');
    const a = await planBuild('sha256:aaa', recipe);
    const b = await planBuild('sha256:bbb', recipe);
    const dockerfile = a.files.find((f) => f.path === 'Dockerfile')!.content.toString();
    expect(dockerfile).toBe((await renderRecipe(recipe, { base: 'sha256:aaa', ...recipe.values })).dockerfile);
    expect(a.key).not.toBe(b.key);
    expect(a.tag).toMatch(/^img2vm-cache:[0-9a-f]{32}$/);
  });

  it('files shared by several templates are byte-identical copies', () => {
    const shared = [
      'usr/local/sbin/img2vm-growroot',
      'usr/local/sbin/img2vm-ready',
      'etc/cloud/cloud.cfg.d/99-img2vm-datasource.cfg',
      'etc/systemd/system/img2vm-ready.service',
      'etc/systemd/system/img2vm-growroot.service',
      'etc/systemd/system/img2vm-ssh-keygen.service',
    ];
    for (const p of shared) {
      const copies = TEMPLATES.filter((t) => {
        try {
          return statSync(join(TEMPLATES_DIR, t, 'files', p)).isFile();
        } catch {
          return false;
        }
      });
      expect(copies.length, p).toBeGreaterThan(1);
      for (const t of copies) expect(read(t, p), `${t}/${p}`).toBe(read(copies[0]!, p));
    }
  });

  it('every package install removes the host keys it made, in the same step', async () => {
    for (const os of ['ID=debian\nVERSION_ID=12', 'ID=alpine\nVERSION_ID=3.20.0', 'ID=fedora\nVERSION_ID=41']) {
      const recipe = recipeFor(parseOsRelease(os), 'amd64');
      const r = await renderRecipe(recipe, {
        base: 'x',
        ...buildValues(recipe, { ssh: true, sudo: false, cloudInit: false, entrypoint: false }),
      });
      const installs = r.steps.filter((s) => s.kind === 'run' && s.network);
      expect(installs.length, os).toBe(1);
      expect(installs[0]).toMatchObject({
        script: expect.stringMatching(/openssh-server[\s\S]*rm -f \/etc\/ssh\/ssh_host_\*$/),
      });
    }
  });

  it('runs the readiness check on every init: announced before the serial login, the verdict once the system settled', () => {
    const unit = read('debian', 'etc/systemd/system/img2vm-ready.service');
    expect(unit).toContain("ExecStartPre=/bin/sh -c 'exec /usr/local/sbin/img2vm-ready announce > /dev/console'");
    expect(unit).toContain("ExecStart=/bin/sh -c 'exec /usr/local/sbin/img2vm-ready systemd > /dev/console'");
    // Both serial gettys img2vm's VMs have (ttyS0 on amd64, ttyAMA0 on arm64): ordering on an absent unit is a no-op.
    expect(unit).toMatch(/^Before=serial-getty@ttyS0\.service serial-getty@ttyAMA0\.service$/m);
    // A oneshot's own pending start job would keep `is-system-running --wait` waiting for it: a deadlock.
    expect(unit).toMatch(/^Type=simple$/m);
    expect(unit).not.toMatch(/^After=multi-user\.target$/m);
    const openrc = read('alpine', 'etc/init.d/img2vm-ready');
    expect(openrc).toContain(
      '/usr/local/sbin/img2vm-ready announce > /dev/console\n\t/usr/local/sbin/img2vm-ready openrc > /dev/console',
    );
    expect(openrc).toContain("after '*'");
  });

  it('DHCP covers every Ethernet interface whatever its name, and only those', () => {
    const networkd = read('debian', 'etc/systemd/network/80-img2vm-dhcp.network');
    expect(networkd).toMatch(/^Type=ether$/m);
    expect(networkd).toMatch(/^Kind=!\*$/m);
    expect(networkd).not.toMatch(/^Name=/m);
    const nm = read('fedora', 'etc/NetworkManager/system-connections/img2vm-dhcp.nmconnection');
    expect(nm).toMatch(/^type=ethernet$/m);
    expect(nm).toMatch(/^multi-connect=3$/m);
    expect(nm).not.toMatch(/^interface-name=/m);
    expect(readFileSync(join(TEMPLATES_DIR, 'fedora', 'Dockerfile'), 'utf8')).toContain(
      'chmod 600 /etc/NetworkManager/system-connections/img2vm-dhcp.nmconnection',
    );
    const udhcpc = read('alpine', 'etc/init.d/img2vm-dhcp');
    expect(udhcpc).toContain('for dev in /sys/class/net/*');
    expect(udhcpc).toContain('udhcpc -b');
  });

  it('the serial console gets a login on every init', () => {
    // The Debian template's serial console is a value of the architecture (golden renders show both).
    expect(readFileSync(join(TEMPLATES_DIR, 'debian', 'Dockerfile'), 'utf8')).toContain(
      'serial-getty@{{serial_console}}.service',
    );
    expect(readFileSync(join(TEMPLATES_DIR, 'fedora', 'Dockerfile'), 'utf8')).toContain('serial-getty@ttyS0.service');
    expect(read('alpine', 'etc/inittab')).toMatch(/^ttyS0::respawn:\/sbin\/getty -L 115200 ttyS0 vt100$/m);
  });

  it('initramfs generators are told to be generic and to carry the VM disk drivers', () => {
    expect(read('fedora', 'etc/dracut.conf.d/90-img2vm.conf')).toMatch(/^hostonly="no"$/m);
    expect(read('fedora', 'etc/dracut.conf.d/90-img2vm.conf')).toMatch(/virtio_blk virtio_scsi nvme/);
    expect(read('fedora', 'etc/kernel/install.d/95-img2vm.install')).toContain('dracut --force --no-hostonly');
    // mkinitfs' features are a value (an encrypted root adds cryptsetup), written into mkinitfs.conf by the build.
    const alpine = recipeFor(parseOsRelease('ID=alpine\nVERSION_ID=3.22.1'));
    expect(alpine.values.mkinitfs_features).toBe('ata base ext4 nvme scsi virtio img2vm');
    expect(readFileSync(join(TEMPLATES_DIR, 'alpine', 'Dockerfile'), 'utf8')).toContain(
      `features="%s"\\n' '{{mkinitfs_features}}' \\\n      > /etc/mkinitfs/mkinitfs.conf`,
    );
    // The initramfs loads the modules its /etc/modules names before mounting root: ext4 is one of them.
    expect(read('alpine', 'etc/mkinitfs/features.d/img2vm.files')).toBe('/etc/modules\n');
    expect(readFileSync(join(TEMPLATES_DIR, 'alpine', 'Dockerfile'), 'utf8')).toContain(
      'grep -qx ext4 /etc/modules 2>/dev/null || echo ext4 >> /etc/modules',
    );
    expect(read('debian', 'etc/initramfs-tools/conf.d/img2vm')).toMatch(/^FSTYPE=ext4$/m);
  });
});
