// Quoting for the two languages img2vm writes image-controlled strings into: systemd unit settings and POSIX sh.
import { Img2vmError } from '../../core/errors.js';

function badImage(what: string, why: string): Img2vmError {
  return new Img2vmError(
    'badImage',
    `the image's ${what} ${why}`,
    'fix the image config, or convert without --entrypoint-service',
  );
}

/** Strings from the image config are JSON: a lone surrogate would turn into a replacement character on the way out. */
function wellFormed(s: string, what: string): void {
  if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s))
    throw badImage(what, 'is not valid Unicode');
  if (s.includes('\0')) throw badImage(what, 'contains a NUL character');
}

/**
 * One ExecStart= word, double-quoted. systemd unquotes and C-unescapes the word, then resolves % specifiers
 * (%% is a literal %), and expands $VAR and ${VAR} when the command runs ($$ is a literal $). So: \ and "
 * are backslash-escaped, % doubled, $ doubled, control characters (newlines included) written as C escapes,
 * which systemd has read in ExecStart= since long before any release img2vm supports.
 */
export function systemdWord(s: string, what: string): string {
  wellFormed(s, what);
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '\\' || ch === '"') out += `\\${ch}`;
    else if (ch === '%') out += '%%';
    else if (ch === '$') out += '$$';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/**
 * Whether a path can be ExecStart='s first word as it is. systemd refuses quotes, backslashes and control
 * characters there, splits at blanks, resolves % in it, and expands $ in argv[0] but not in the path it
 * runs; rather than escape for each of those, anything beyond plain path characters goes through sh.
 */
function plainExecutable(path: string): boolean {
  return /^\/[A-Za-z0-9._+@:,=/-]*$/.test(path) && !path.endsWith('/');
}

const MAX_COMMAND = 64 * 1024;

/**
 * ExecStart= for an argv. An absolute, plain executable is run directly. Anything else goes through
 * /bin/sh -c 'exec "$0" "$@"' so that, as under docker, a bare name is looked up on the image's PATH
 * (systemd's own lookup ignores Environment=) and a relative path is taken from WorkingDirectory=.
 */
export function execStart(argv: readonly string[]): string {
  if (!argv.length || argv[0] === '') throw badImage('ENTRYPOINT/CMD', 'is empty');
  // A leading - would be read as an option by sh's exec; docker would fail to find such a program too.
  if (argv[0]!.startsWith('-'))
    throw badImage('ENTRYPOINT/CMD', `starts with ${JSON.stringify(argv[0])}, which is not a program`);
  const words = plainExecutable(argv[0]!)
    ? [argv[0]!, ...argv.slice(1).map((a, i) => systemdWord(a, `CMD argument ${i + 1}`))]
    : [
        '/bin/sh',
        '-c',
        systemdWord('exec "$0" "$@"', 'wrapper'),
        ...argv.map((a, i) => systemdWord(a, `CMD argument ${i}`)),
      ];
  const line = words.join(' ');
  if (line.length > MAX_COMMAND) throw badImage('ENTRYPOINT/CMD', `is longer than ${MAX_COMMAND} bytes once quoted`);
  return line;
}

/** Names systemd (and every shell) accepts for environment variables. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Environment="NAME=value". systemd unquotes and C-unescapes it and resolves % specifiers; it does not
 * expand $. Older systemd (EL 8's 239) refuses values with control characters other than tab, so the caller
 * skips those; this only quotes.
 */
export function environmentLine(name: string, value: string): string {
  if (!ENV_NAME.test(name)) throw new Error(`not an environment variable name: ${name}`);
  wellFormed(value, `Env ${name}`);
  let out = '';
  for (const ch of `${name}=${value}`) {
    if (ch === '\\' || ch === '"') out += `\\${ch}`;
    else if (ch === '%') out += '%%';
    else if (ch === '\t') out += '\\t';
    else out += ch;
  }
  return `Environment="${out}"`;
}

/** A value for a systemd setting that is taken literally apart from % specifiers (WorkingDirectory=, User=). */
export function systemdLiteral(value: string, what: string): string {
  wellFormed(value, what);
  if (/[\x00-\x1f\x7f]/.test(value) || value.trim() !== value)
    throw badImage(what, `${JSON.stringify(value)} has control characters or surrounding blanks`);
  return value.replace(/%/g, '%%');
}

/** A POSIX sh word: single quotes hold everything but a single quote, which is closed, escaped and reopened. */
export function shWord(s: string, what: string): string {
  wellFormed(s, what);
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
