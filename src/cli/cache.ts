// `img2vm cache ls | verify | prune | rm`: what img2vm keeps between runs (guest builds, imported sources, registry blobs, kernels), re-checking it, and removing what is unused.
import type { Command } from 'commander';
import { formatSize } from '../core/units.js';
import {
  DEFAULT_PRUNE_AGE,
  inventory,
  parseAge,
  prune,
  removeNamed,
  verifyStore,
  type CacheEntry,
  type PruneReport,
  type VerifyReport,
} from '../cache/index.js';
import { stdout, stdoutJson } from './print.js';

const KIND_LABEL: Record<CacheEntry['kind'], string> = {
  'guest-build': 'guest build',
  'source-image': 'source image',
  'registry-blob': 'registry blob',
  kernel: 'kernel',
  'converted-disk': 'disk',
};

/** "5 minutes ago", "3 days ago": precise enough to decide what to prune. */
export function ago(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  const [n, unit] =
    s < 90
      ? [s, 'second']
      : s < 5400
        ? [Math.round(s / 60), 'minute']
        : s < 129600
          ? [Math.round(s / 3600), 'hour']
          : [Math.round(s / 86400), 'day'];
  return `${n} ${unit}${n === 1 ? '' : 's'} ago`;
}

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** The table `cache ls` prints: one line an entry, then the total and any store that could not be read. */
export function renderList(entries: CacheEntry[], notes: string[], now = Date.now()): string {
  const lines = [`${'KIND'.padEnd(14)} ${'STORE'.padEnd(7)} ${'NAME'.padEnd(56)} ${'SIZE'.padStart(10)}  LAST USED`];
  for (const e of entries) {
    const flag = e.busy ? `  (${e.busy})` : '';
    lines.push(
      `${KIND_LABEL[e.kind].padEnd(14)} ${e.store.padEnd(7)} ${clip(e.name, 56).padEnd(56)} ${formatSize(e.bytes).padStart(10)}  ${ago(e.lastUsed, now)}${flag}`,
    );
    lines.push(`${''.padEnd(23)}${clip(e.detail, 80)}`);
  }
  const total = entries.reduce((a, e) => a + e.bytes, 0);
  lines.push(
    '',
    `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}, ${formatSize(total)} (image sizes include the layers they share with other images)`,
  );
  for (const n of notes) lines.push(`note: ${n}`);
  return `${lines.join('\n')}\n`;
}

export function renderPrune(r: PruneReport): string {
  const lines: string[] = [];
  for (const { entry, outcome } of r.removed)
    lines.push(
      `removed  ${KIND_LABEL[entry.kind]} ${entry.name} (${formatSize(entry.bytes)})${outcome.removed && outcome.note ? `: ${outcome.note}` : ''}`,
    );
  for (const { entry, outcome } of r.kept)
    lines.push(`kept     ${KIND_LABEL[entry.kind]} ${entry.name}: ${outcome.removed ? '' : outcome.why}`);
  lines.push(
    `${r.removed.length} removed, ${formatSize(r.freed)} freed${r.kept.length ? `, ${r.kept.length} kept` : ''}`,
  );
  for (const n of r.notes) lines.push(`note: ${n}`);
  return `${lines.join('\n')}\n`;
}

export function renderVerify(r: VerifyReport): string {
  const lines = r.damaged.map(
    (d) => `damaged  ${d.kind} ${d.key}: removed (${d.path}); the next run fetches or makes it again`,
  );
  lines.push(
    `${r.checked} entr${r.checked === 1 ? 'y' : 'ies'} checked (${formatSize(r.hashedBytes)} hashed), ${r.damaged.length} damaged`,
  );
  return `${lines.join('\n')}\n`;
}

export function addCacheCommand(program: Command): void {
  const cache = program
    .command('cache')
    .description(
      'what img2vm keeps between runs: guest builds, imported sources, registry blobs, kernels, converted disks',
    );
  cache
    .command('ls')
    .description('list the cached entries with their sizes and last use')
    .option('--json', 'print the entries as JSON')
    .action(async (opts: { json?: boolean }) => {
      const inv = await inventory();
      const entries = inv.items.map((i) => i.entry);
      if (opts.json) stdoutJson({ entries, notes: inv.notes, bytes: entries.reduce((a, e) => a + e.bytes, 0) });
      else stdout(renderList(entries, inv.notes));
    });
  cache
    .command('verify')
    .description(
      'hash every cached blob and check every kernel and build against its record, removing what is damaged (runs trust what entered the cache verified)',
    )
    .option('--json', 'print what was checked and found damaged as JSON')
    .action(async (opts: { json?: boolean }) => {
      const r = await verifyStore();
      if (opts.json) stdoutJson(r);
      else stdout(renderVerify(r));
    });
  cache
    .command('prune')
    .description(
      `remove cached entries not used for ${DEFAULT_PRUNE_AGE.replace('d', ' days')} (or --older-than); never one a running img2vm holds`,
    )
    .option('--all', 'remove every entry, whatever its age')
    .option(
      '--older-than <age>',
      'remove entries last used longer ago than this: 45s, 90m, 12h, 7d, 2w',
      DEFAULT_PRUNE_AGE,
    )
    .option('--json', 'print what was removed and kept as JSON')
    .action(async (opts: { all?: boolean; olderThan: string; json?: boolean }) => {
      printRemoval(await prune({ all: !!opts.all, olderThan: parseAge(opts.olderThan) }), opts.json);
    });
  cache
    .command('rm')
    .description('remove the named entries (names as cache ls shows them, or a unique start of one)')
    .argument('<name...>', 'entries to remove')
    .option('--json', 'print what was removed and kept as JSON')
    .action(async (names: string[], opts: { json?: boolean }) => {
      const r = await removeNamed(names);
      printRemoval(r, opts.json);
      // An entry a running img2vm holds is kept: the user asked for it by name, so say it failed.
      if (r.kept.length) process.exitCode = 1;
    });
}

function printRemoval(r: PruneReport, json: boolean | undefined): void {
  if (!json) return stdout(renderPrune(r));
  const rec = (x: PruneReport['removed'][number]) => ({
    ...x.entry,
    ...(x.outcome.removed ? { freed: x.outcome.freed, note: x.outcome.note ?? null } : { why: x.outcome.why }),
  });
  stdoutJson({ removed: r.removed.map(rec), kept: r.kept.map(rec), freed: r.freed, notes: r.notes });
}
