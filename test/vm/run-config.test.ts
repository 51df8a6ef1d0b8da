// `img2vm run IMAGE`'s per-run settings: docker run's flags parsed as docker parses them, the command as docker resolves
// it, the run config disk's bytes, the arguments split at the command, and the QEMU devices a run adds.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addRunImageOptions } from '../../src/cli/run-image-command.js';
import { cpusOf, isDiskTarget, runEnv, splitRunArgs } from '../../src/cli/run-image.js';
import { qemuArgs, type QemuOptions } from '../../src/vm/qemu.js';
import {
  envEntry,
  envFileEntries,
  parsePublishFlag,
  parseVolume,
  renderRunConfig,
  resolveCommand,
} from '../../src/vm/run-config.js';
import { readOnlyArgs, READ_ONLY_SCRIPT, virtiofsdArgs } from '../../src/vm/virtiofs.js';

describe('the command, as docker run resolves it', () => {
  it('keeps the image command when the run gives none', () => {
    expect(resolveCommand(['/entry'], undefined, [])).toBeUndefined();
  });
  it('puts COMMAND after the image ENTRYPOINT (replacing CMD)', () => {
    expect(resolveCommand(['/entry', '-x'], undefined, ['a', 'b c'])).toEqual(['/entry', '-x', 'a', 'b c']);
    expect(resolveCommand([], undefined, ['sh', '-c', 'exit 3'])).toEqual(['sh', '-c', 'exit 3']);
  });
  it('--entrypoint replaces ENTRYPOINT and drops CMD; "" clears it', () => {
    expect(resolveCommand(['/entry'], '/bin/sh', [])).toEqual(['/bin/sh']);
    expect(resolveCommand(['/entry'], '/bin/sh', ['-c', 'id'])).toEqual(['/bin/sh', '-c', 'id']);
    expect(resolveCommand(['/entry'], '', ['echo', 'x'])).toEqual(['echo', 'x']);
  });
  it('refuses an empty command with 125, as docker does', () => {
    expect(() => resolveCommand(['/entry'], '', [])).toThrow(expect.objectContaining({ exitCode: 125 }));
  });
});

describe('environment', () => {
  const host = { HOME: '/root', EMPTY: '' };
  it('-e NAME=VALUE as given; -e NAME takes the host value or is left out', () => {
    expect(envEntry('K=V=W', host)).toBe('K=V=W');
    expect(envEntry('HOME', host)).toBe('HOME=/root');
    expect(envEntry('EMPTY', host)).toBe('EMPTY=');
    expect(envEntry('UNSET', host)).toBeUndefined();
    expect(() => envEntry('=x', host)).toThrow(/invalid environment variable/);
  });
  it('--env-file: comments and blank lines skipped, CRLF tolerated', () => {
    expect(envFileEntries('# c\n\nA=1\r\n  B=two words\nHOME\nUNSET\n', host)).toEqual([
      'A=1',
      'B=two words',
      'HOME=/root',
    ]);
  });
  it('-e comes after --env-file, so it wins in the guest (the init sets in order)', () => {
    expect(runEnv({ env: ['A=2'], envFile: [] }, host)).toEqual(['A=2']);
  });
});

describe('-p and -v', () => {
  it('-p binds 127.0.0.1 unless an address is given', () => {
    expect(parsePublishFlag('8080:80')).toEqual({ address: '127.0.0.1', host: 8080, guest: 80 });
    expect(parsePublishFlag('0.0.0.0:8080:80/tcp')).toEqual({ address: '0.0.0.0', host: 8080, guest: 80 });
    for (const bad of ['80', '8080:80/udp', '70000:80', '::1:8080:80', 'x:1:2'])
      expect(() => parsePublishFlag(bad), bad).toThrow();
  });
  it('-v HOST:GUEST[:ro]: absolute paths, no named volumes, not /', () => {
    expect(parseVolume('/srv/d:/data')).toEqual({ host: '/srv/d', guest: '/data', readOnly: false });
    expect(parseVolume('/srv/d:/data/./x/:ro')).toEqual({ host: '/srv/d', guest: '/data/x', readOnly: true });
    expect(() => parseVolume('named:/data')).toThrow(
      expect.objectContaining({ hint: expect.stringMatching(/no named volumes/) }),
    );
    expect(() => parseVolume('/srv:/')).toThrow(/not \//);
    expect(() => parseVolume('/srv:/a/../b')).toThrow();
    expect(() => parseVolume('/srv:/a:rx')).toThrow();
  });
  it('--cpus takes docker fractions, rounded up', () => {
    expect(cpusOf('1.5')).toBe(2);
    expect(cpusOf('2')).toBe(2);
    expect(() => cpusOf('0')).toThrow();
  });
});

describe('the run config disk', () => {
  it('is escaped KEY VALUE lines, then NUL to a whole 4 KiB block', () => {
    const b = renderRunConfig({
      argv: ['sh', '-c', 'echo a\nb\\'],
      env: ['K=V é'],
      cwd: '/w',
      user: 'app',
      tty: true,
      interactive: true,
      rows: 33,
      cols: 111,
      mounts: [{ tag: 'img2vm-vol0', path: '/data dir', readOnly: true }],
    });
    expect(b.length).toBe(4096);
    const text = b.toString('latin1');
    expect(text.slice(0, text.indexOf('\0'))).toBe(
      'img2vm-run 1\narg sh\narg -c\narg echo a\\nb\\\\\nenv K=V \\xc3\\xa9\ncwd /w\nuser app\ntty yes\ninteractive yes\n' +
        'rows 33\ncols 111\nvolume ro img2vm-vol0 /data dir\nend\n',
    );
    expect(b.subarray(text.indexOf('\0')).every((x) => x === 0)).toBe(true);
  });
  it('without a command it carries no arg line (the disk runs what the image says)', () => {
    const t = renderRunConfig({ env: [], tty: false, interactive: false, mounts: [] }).toString('latin1');
    expect(t.startsWith('img2vm-run 1\ntty no\ninteractive no\nend\n\0')).toBe(true);
  });
  it('refuses a relative --workdir and a NUL', () => {
    const base = { env: [], tty: false, interactive: false, mounts: [] };
    expect(() => renderRunConfig({ ...base, cwd: 'rel' })).toThrow(/not absolute/);
    expect(() => renderRunConfig({ ...base, argv: ['a\0b'] })).toThrow(/NUL/);
  });
});

describe('the arguments of run', () => {
  const cmd = addRunImageOptions(new Command('run'))
    .option('--timeout <s>')
    .option('-p, --publish <p>')
    .option('--verbose');
  it("options before and after IMAGE are img2vm's; from the first non-option on, the command", () => {
    expect(splitRunArgs(cmd, ['-it', 'img', 'ls', '-l', '-e', 'x'])).toEqual([
      '-it',
      'img',
      '--',
      'ls',
      '-l',
      '-e',
      'x',
    ]);
    expect(splitRunArgs(cmd, ['img', '-e', 'K=V', '-v', '/d:/data', '-p', '8080:80', '--', 'sh', '-c', 'x'])).toEqual([
      '-e',
      'K=V',
      '-v',
      '/d:/data',
      '-p',
      '8080:80',
      'img',
      '--',
      'sh',
      '-c',
      'x',
    ]);
    expect(splitRunArgs(cmd, ['--env=A=1', '-eB=2', '--timeout', '9', 'img'])).toEqual([
      '--env=A=1',
      '-eB=2',
      '--timeout',
      '9',
      'img',
      '--',
    ]);
    expect(splitRunArgs(cmd, ['-e', 'A', 'img', '--', '--help'])).toEqual(['-e', 'A', 'img', '--', '--help']);
  });
  it("a disk name keeps today's meaning; anything else is an image reference", () => {
    expect(isDiskTarget('vm.qcow2')).toBe(true);
    expect(isDiskTarget('/x/vm.firecracker.json')).toBe(true);
    expect(isDiskTarget('missing.img')).toBe(true);
    expect(isDiskTarget('debian:bookworm')).toBe(false);
    expect(isDiskTarget('oci-archive:/x/disk.qcow2')).toBe(false);
    expect(isDiskTarget('registry.example/app')).toBe(false);
  });
});

describe('QEMU devices of a run', () => {
  const base: QemuOptions = {
    disk: '/r/disk.qcow2',
    format: 'qcow2',
    firmware: 'bios',
    accel: 'tcg',
    memMiB: 512,
    cpus: 1,
    snapshot: true,
    publish: [{ host: 8080, guest: 80, address: '0.0.0.0' }],
    console: 'pipe',
    runConfig: '/r/run,config.raw',
    shares: [{ tag: 'img2vm-vol0', socket: '/r/vol0.sock' }],
  };
  it('firmware boot: the root first in boot order, the config read-only with its serial and an OEM string, shared memory', () => {
    const a = qemuArgs(base).join(' ');
    expect(a).toContain(
      '-drive id=root,file=/r/disk.qcow2,if=none,format=qcow2 -device virtio-blk-pci,drive=root,bootindex=0 ' +
        '-drive id=runcfg,file=/r/run,,config.raw,if=none,format=raw,readonly=on ' +
        '-device virtio-blk-pci,drive=runcfg,serial=img2vm-run ' +
        '-object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem ' +
        '-chardev socket,id=fs0,path=/r/vol0.sock -device vhost-user-fs-pci,chardev=fs0,tag=img2vm-vol0',
    );
    expect(a).toContain('-smbios type=11,value=img2vm.run=1');
    expect(a).toContain('-snapshot');
    expect(a).toContain('restrict=on,hostfwd=tcp:0.0.0.0:8080-:80');
  });
  it('-i without -t: a virtio-serial port on a socket QEMU waits on before the guest starts', () => {
    const a = qemuArgs({ ...base, stdinSocket: '/r/stdin.sock' }).join(' ');
    expect(a).toContain(
      '-device virtio-serial-pci -chardev socket,id=stdin,path=/r/stdin.sock,server=on,wait=on ' +
        '-device virtserialport,chardev=stdin,name=img2vm.stdin',
    );
    expect(qemuArgs(base).join(' ')).not.toContain('virtserialport');
  });

  it('-t: the window size port, which QEMU does not wait for', () => {
    const a = qemuArgs({ ...base, winsizeSocket: '/r/w.sock' }).join(' ');
    expect(a).toContain(
      '-device virtio-serial-pci -chardev socket,id=winsize,path=/r/w.sock,server=on,wait=off ' +
        '-device virtserialport,chardev=winsize,name=img2vm.winsize',
    );
  });

  it('direct boot: the flag on the kernel command line, virtio-mmio devices', () => {
    const a = qemuArgs({
      ...base,
      disk: '/r/vm.ext4',
      format: 'raw',
      firmware: 'direct',
      direct: { kernel: '/r/k', cmdline: 'root=/dev/vda', moreDisks: [] },
    });
    expect(a[a.indexOf('-append') + 1]).toBe('root=/dev/vda img2vm.run=1');
    expect(a.join(' ')).toContain('virtio-blk-device,drive=runcfg,serial=img2vm-run');
    expect(a.join(' ')).toContain('vhost-user-fs-device,chardev=fs0,tag=img2vm-vol0');
    expect(a).not.toContain('-smbios');
  });
  it('virtiofsd: sandboxed in the shared directory; :ro through a read-only bind mount only it sees', () => {
    expect(virtiofsdArgs('/srv/d', '/r/s.sock')).toEqual([
      '--socket-path=/r/s.sock',
      '-o',
      'source=/srv/d',
      '-o',
      'sandbox=namespace',
      '-o',
      'cache=auto',
      '-o',
      'modcaps=-mknod',
    ]);
    const ro = readOnlyArgs('/usr/lib/qemu/virtiofsd', '/srv/$(x)', '/r/s.sock');
    expect(ro.slice(0, 9)).toEqual([
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      READ_ONLY_SCRIPT,
      'sh',
      '/srv/$(x)',
    ]);
    expect(ro.slice(9)).toEqual(['/usr/lib/qemu/virtiofsd', ...virtiofsdArgs('/srv/$(x)', '/r/s.sock')]);
  });
});
