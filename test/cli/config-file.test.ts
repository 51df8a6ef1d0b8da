// --config FILE: the option table's schemas check it, every problem is reported at once under its key, flags win.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configOptions, conversionInput, loadConfigFile, parseConfigText } from '../../src/cli/config-file.js';
import { parseConvertOptions } from '../../src/core/options.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'img2vm-config-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const yaml = (text: string) => configOptions(parseConfigText(text, 'config.yaml', false), 'config.yaml');

describe('configOptions', () => {
  it('maps long flag names to the options the library takes, values as written', () => {
    const o = yaml(
      'image: debian:12\nboot: uefi\nboot-partition: 512M\ninsecure-registry: [a, b]\nkernel-cmdline: quiet loglevel=3\ncompress: true\nsize: 4G\n',
    );
    expect(o).toEqual({
      image: 'debian:12',
      boot: 'uefi',
      bootPartition: '512M',
      insecureRegistries: ['a', 'b'],
      kernelCmdline: 'quiet loglevel=3',
      compress: true,
      size: '4G',
    });
    // What the conversion then makes of them: the same as the flags would give.
    expect(parseConvertOptions({ ...o, output: 'd.qcow2' })).toMatchObject({
      boot: 'uefi',
      bootPartition: 512 * 1024 * 1024,
      size: 4 * 1024 ** 3,
      insecureRegistries: ['a', 'b'],
    });
  });

  it('reports every invalid value and unknown key at once, each with its path', () => {
    expect(() => yaml('boot: efi\nnosuchkey: 1\nboot-partition: lots\ninsecure-registry: [a, 3]\n')).toThrow(
      'config.yaml: boot: Invalid option: expected one of "hybrid"|"bios"|"uefi"; nosuchkey: unknown option; ' +
        'boot-partition: invalid size "lots": use a number with an optional unit, e.g. 512M, 4G; insecure-registry[1]: Invalid input: expected string, received number',
    );
    expect(() => yaml('boot: efi')).toThrow(expect.objectContaining({ kind: 'usage', exitCode: 2 }));
  });

  it('helps with the mistakes YAML invites: camelCase keys, unquoted numbers, output flags, nesting', () => {
    expect(() => yaml('bootPartition: 1G\nseed: 42\njson: true\nconfig: other.yaml\n')).toThrow(
      'config.yaml: bootPartition: unknown option (did you mean boot-partition?); seed: Invalid input: expected string, received number (quote it: seed: "42"); ' +
        'json: not a conversion option (give --json on the command line); config: a config file cannot name another one',
    );
  });

  it('a single value for a repeatable option is a list of one; an empty value leaves the option unset; an empty file is no options', () => {
    expect(yaml('insecure-registry: reg.lan\nhostname:\n')).toEqual({ insecureRegistries: ['reg.lan'] });
    expect(yaml('')).toEqual({});
    expect(yaml('# nothing yet\n')).toEqual({});
  });

  it('refuses a document that is not a mapping, broken YAML and duplicate keys', () => {
    expect(() => yaml('- boot: uefi\n')).toThrow(
      'config.yaml: a config file holds a mapping of options (key: value), not a list',
    );
    expect(() => yaml('boot: [uefi\n')).toThrow(/^config\.yaml: not valid YAML: /);
    expect(() => yaml('boot: uefi\nboot: bios\n')).toThrow(
      'config.yaml: not valid YAML: Map keys must be unique at line 2, column 1:',
    );
  });
});

describe('loading and merging', () => {
  it('reads YAML and JSON files; flags win over the file; the image comes from the argument or the file', async () => {
    const y = join(dir, 'c.yaml');
    await writeFile(y, 'image: debian:12\nboot: uefi\nsize: 4G\n');
    const j = join(dir, 'c.json');
    await writeFile(j, JSON.stringify({ image: 'alpine:3', 'partition-table': 'mbr' }));
    expect(await loadConfigFile(j)).toEqual({ image: 'alpine:3', partitionTable: 'mbr' });
    // commander's parsed flags, by attribute name
    expect(await conversionInput(undefined, { config: y, boot: 'bios', output: 'd.qcow2' })).toEqual({
      image: 'debian:12',
      boot: 'bios',
      size: '4G',
      output: 'd.qcow2',
    });
    expect(await conversionInput('fedora:40', { config: y })).toEqual({ image: 'fedora:40', boot: 'uefi', size: '4G' });
    expect(await conversionInput('x', { output: 'd.raw' })).toEqual({ image: 'x', output: 'd.raw' });
  });

  it('says what is missing: the file, or the image', async () => {
    await expect(conversionInput(undefined, { config: join(dir, 'none.yaml') })).rejects.toMatchObject({
      kind: 'usage',
      message: `cannot read the config file ${join(dir, 'none.yaml')}: no such file`,
    });
    const noImage = join(dir, 'noimage.yaml');
    await writeFile(noImage, 'boot: bios\n');
    await expect(conversionInput(undefined, { config: noImage })).rejects.toMatchObject({
      message: 'no image given',
      hint: `name it as the argument or as image: in ${noImage}`,
    });
    await expect(conversionInput(undefined, {})).rejects.toMatchObject({ message: 'no image given' });
    const big = join(dir, 'big.yaml');
    await writeFile(big, `# ${'x'.repeat(1024 * 1024)}\n`);
    await expect(loadConfigFile(big)).rejects.toThrow(/larger than 1048576 bytes/);
    await expect(loadConfigFile(dir)).rejects.toThrow(/it is a directory/);
  });
});
