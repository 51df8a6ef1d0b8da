// Derives commander options and help from the one option table in core/options.ts, and collects what was given.
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { CONVERT_OPTIONS, GLOBAL_OPTIONS, type OptionSpec } from '../core/options.js';

/** The choices of an enum schema (possibly wrapped in optional/default), for the help and shell completion. */
function choicesOf(schema: z.ZodType): readonly string[] | undefined {
  let s: z.ZodType = schema;
  for (let i = 0; i < 4; i++) {
    if (s instanceof z.ZodEnum) return s.options as readonly string[];
    if (s instanceof z.ZodOptional || s instanceof z.ZodDefault) s = s.unwrap() as z.ZodType;
    else break;
  }
  return undefined;
}

function toOption(spec: OptionSpec, more: readonly string[] = []): Option {
  const help = `${spec.help}${spec.defaultHelp ? ` (default: ${spec.defaultHelp})` : ''}`;
  const o = new Option(spec.flags, help);
  const own = choicesOf(spec.schema);
  const choices = own && [...own, ...more.filter((c) => !own.includes(c))];
  if (choices) o.choices(choices);
  if (spec.repeatable) o.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
  if (spec.hidden) o.hideHelp();
  return o;
}

/**
 * Adds every conversion option (and the global output flags) to a command. moreChoices widens an option's choices
 * for a command that reads it itself first (--builder buildah for img2vm build).
 */
export function addConvertOptions(cmd: Command, moreChoices: Record<string, readonly string[]> = {}): Command {
  for (const [key, spec] of Object.entries(CONVERT_OPTIONS)) cmd.addOption(toOption(spec, moreChoices[key]));
  return addGlobalOptions(cmd);
}

export function addGlobalOptions(cmd: Command): Command {
  for (const spec of Object.values(GLOBAL_OPTIONS)) cmd.addOption(toOption(spec));
  return cmd;
}

/**
 * The conversion options the user gave, by table key (values as commander parsed them: strings, booleans,
 * arrays). Flags left out are absent, so the schema's defaults apply (and, later, a config file's values).
 */
export function givenConvertOptions(parsed: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(CONVERT_OPTIONS)) {
    const attr = attributeName(spec);
    if (parsed[attr] !== undefined) out[key] = parsed[attr];
  }
  return out;
}

/** commander's property name for a flag: the long name in camelCase. */
function attributeName(spec: OptionSpec): string {
  const m = /--([a-z0-9-]+)/.exec(spec.flags)!;
  return m[1]!.replace(/-([a-z0-9])/g, (_x, c: string) => c.toUpperCase());
}
