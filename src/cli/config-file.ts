// --config FILE: conversion options from YAML or JSON, keyed by the long flag names, checked by the option table's own schemas.
import { open } from 'node:fs/promises';
import type * as Yaml from 'yaml';
import { z } from 'zod';
import { Img2vmError } from '../core/errors.js';
import { CONVERT_OPTIONS, GLOBAL_OPTIONS, longName, type OptionSpec } from '../core/options.js';
import { givenConvertOptions } from './options.js';
import { lazy } from '../core/lazy.js';

/** Only a --config file needs it. */
const yaml = lazy<typeof Yaml>('yaml');

/** A config file is a page of options, not data: anything larger is a mistake. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** The key `image:` and every conversion option by its long flag name, mapped to the table key. */
function keys(): Map<string, { key: string; spec?: OptionSpec }> {
  const m = new Map<string, { key: string; spec?: OptionSpec }>([['image', { key: 'image' }]]);
  for (const [key, spec] of Object.entries(CONVERT_OPTIONS)) {
    if (key !== 'config') m.set(longName(spec), { key, spec });
  }
  return m;
}

/** As ConvertOptionsSchema has it. */
const IMAGE_SCHEMA = z.string().min(1, 'the image reference is empty');

function describeIssue(name: string, issue: z.core.$ZodIssue, value: unknown): string {
  const sub = issue.path.map((p) => `[${String(p)}]`).join('');
  // YAML reads 42 and true as a number and a boolean; an option that takes text needs them quoted.
  const quote =
    issue.code === 'invalid_type' &&
    issue.expected === 'string' &&
    (typeof value === 'number' || typeof value === 'boolean');
  return `${name}${sub}: ${issue.message}${quote ? ` (quote it: ${name}: "${String(value)}")` : ''}`;
}

function unknownKey(name: string, table: Map<string, { key: string }>): string {
  if (name in GLOBAL_OPTIONS) return `${name}: not a conversion option (give --${name} on the command line)`;
  if (name === 'config') return 'config: a config file cannot name another one';
  const byTableKey = [...table].find(
    ([, v]) =>
      v.key.toLowerCase() === name.toLowerCase() || v.key.toLowerCase() === name.replace(/[-_]/g, '').toLowerCase(),
  );
  return `${name}: unknown option${byTableKey ? ` (did you mean ${byTableKey[0]}?)` : ''}`;
}

/**
 * Checks a parsed config document; returns its options by table key, values as written (the conversion parses
 * them again with the rest). Every problem is reported at once, each under its key, as `LABEL: key: problem; ...`.
 */
export function configOptions(doc: unknown, label: string): Record<string, unknown> {
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new Img2vmError(
      'usage',
      `${label}: a config file holds a mapping of options (key: value), not ${Array.isArray(doc) ? 'a list' : typeof doc}`,
      'e.g. boot: uefi',
    );
  }
  const table = keys();
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, raw] of Object.entries(doc as Record<string, unknown>)) {
    const entry = table.get(name);
    if (!entry) {
      problems.push(unknownKey(name, table));
      continue;
    }
    // An empty value (`boot:`) leaves the option unset.
    if (raw === null) continue;
    const value = entry.spec?.repeatable && !Array.isArray(raw) ? [raw] : raw;
    const r = (entry.spec?.schema ?? IMAGE_SCHEMA).safeParse(value);
    if (r.success) out[entry.key] = value;
    else problems.push(...r.error.issues.map((i) => describeIssue(name, i, value)));
  }
  if (problems.length)
    throw new Img2vmError(
      'usage',
      `${label}: ${problems.join('; ')}`,
      'keys are the long flag names (see img2vm --help), plus image:',
    );
  return out;
}

/** Parses YAML (JSON is YAML too; a .json file is read as strict JSON) with duplicate keys refused. */
export function parseConfigText(text: string, label: string, json: boolean): unknown {
  try {
    return json ? JSON.parse(text) : yaml().parse(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (e) {
    const first = (e as Error).message.split('\n')[0];
    throw new Img2vmError(
      'usage',
      `${label}: not valid ${json ? 'JSON' : 'YAML'}: ${first}`,
      'fix the file; keys are the long flag names, e.g. boot: uefi',
    );
  }
}

/** Reads a config file into options by table key. A pipe works too (--config <(...)); at most MAX_CONFIG_BYTES are read. */
export async function loadConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      if ((await fh.stat()).isDirectory()) throw new Error('it is a directory');
      const parts: Buffer[] = [];
      let n = 0;
      for await (const c of fh.createReadStream({ autoClose: false })) {
        n += (c as Buffer).length;
        if (n > MAX_CONFIG_BYTES) throw new Error(`larger than ${MAX_CONFIG_BYTES} bytes`);
        parts.push(c as Buffer);
      }
      text = Buffer.concat(parts).toString('utf8');
    } finally {
      await fh.close();
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : (e as Error).message;
    throw new Img2vmError(
      'usage',
      `cannot read the config file ${path}: ${why}`,
      'give a YAML or JSON file of options, e.g. --config img2vm.yaml',
    );
  }
  return configOptions(parseConfigText(text, path, /\.json$/i.test(path)), path);
}

/**
 * What `img2vm [convert|plan]` converts: the config file's options under those given as flags (flags win), and
 * the image from the argument or else the file's `image:`.
 */
export async function conversionInput(
  image: string | undefined,
  parsed: Record<string, unknown>,
): Promise<Record<string, unknown> & { image: string }> {
  const { config, ...flags } = givenConvertOptions(parsed);
  const file = typeof config === 'string' ? await loadConfigFile(config) : {};
  const img = image ?? (typeof file.image === 'string' ? file.image : undefined);
  if (img === undefined) {
    throw new Img2vmError(
      'usage',
      'no image given',
      typeof config === 'string'
        ? `name it as the argument or as image: in ${config}`
        : 'name it as the argument, e.g. img2vm debian:12 -o disk.qcow2',
    );
  }
  return { ...file, ...flags, image: img };
}
