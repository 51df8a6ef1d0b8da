// `img2vm plan` for people: the plan as a short report (--json prints the data itself).
import type { ConversionPlan } from '../core/plan.js';
import { formatSize } from '../core/units.js';

const ARCH_FROM: Record<ConversionPlan['architecture']['from'], string> = {
  image: "the image's config",
  platform: '--platform; the image not read yet',
  host: "the host's; the image not read yet",
};

export function renderPlan(p: ConversionPlan): string {
  const out: string[] = [];
  const line = (s = '') => out.push(s);
  line(
    `image     ${p.image} (${p.source.transport}${p.source.id ? `, ${p.source.id.slice(0, 19)}` : ''}${p.source.layers !== null ? `, ${p.source.layers} layer${p.source.layers === 1 ? '' : 's'}` : ''})`,
  );
  line(`arch      linux/${p.architecture.arch} (${ARCH_FROM[p.architecture.from]})`);
  line(
    `guest     ${p.guest.strategy}: ${p.guest.reason}${p.guest.distribution ? `; ${p.guest.distribution}` : ''}${p.guest.builder ? ` with ${p.guest.builder}` : ''}${p.guest.cached === null ? '' : p.guest.cached ? ' (cached)' : ' (to build)'}`,
  );
  const build = p.guest.build;
  if (build?.emulator)
    line(
      `          the build runs ${build.platform} programs under ${build.emulator.name} (${build.emulator.interpreter})`,
    );
  if (p.content)
    line(
      `content   ${p.content.files} files, ${formatSize(p.content.bytes)}${p.content.estimated ? ' (before the guest build: sizes are estimates)' : ''}`,
    );
  line(`kernel    ${p.kernel ? p.kernel.version : 'known after the guest build'}`);
  line(`boot      ${p.boot.mode}: ${p.boot.loaders.join(' + ')}${p.boot.cmdline ? `; ${p.boot.cmdline}` : ''}`);
  if (p.layout) {
    line(`disk      ${p.layout.table.toUpperCase()}, ${formatSize(p.layout.diskSize)} (${p.sizing})`);
    for (const x of p.layout.partitions)
      line(
        `  ${x.index}  ${x.role.padEnd(9)} ${formatSize(x.start).padStart(7)} +${formatSize(x.size).padEnd(8)} ${x.gptType} ${x.guid}`,
      );
  }
  if (p.luks) {
    const l = p.luks;
    line(
      `luks      root encrypted: LUKS2 ${l.uuid}, ${l.cipher} ${l.keyBytes * 8}-bit, ${l.sectorSize}-byte sectors, ${l.pbkdf}-${l.hash} (${l.keyslotIterations} iterations), master key ${l.masterKey === 'file' ? 'from --luks-master-key-file (test only)' : 'random'}; data at +${formatSize(l.dataOffset)}`,
    );
    const boot = p.filesystems.find((f) => f.role === 'boot') ?? p.filesystems.find((f) => f.role === 'esp');
    if (boot)
      line(
        `          /boot in the clear: ${boot.role === 'esp' ? 'the ESP' : `its own ext4 partition at ${boot.offset}`}`,
      );
  }
  for (const f of p.filesystems)
    line(
      `fs        ${f.role}: ${f.type} "${f.label}" ${f.uuid}, ${formatSize(f.size)} at ${f.offset}${f.inodes ? `, ${f.inodes} inodes` : ''}`,
    );
  line('guest files');
  for (const f of p.guestFiles)
    line(`  ${f.kind.padEnd(7)} ${f.fs.padEnd(4)} ${f.path}${f.note ? `  (${f.note})` : ''}`);
  line(
    `output    ${p.output.format} ${p.output.path ?? '(none: pushed only)'}${p.output.compress ? ', compressed' : ''}${p.output.push ? `, pushed to ${p.output.push}` : ''}`,
  );
  for (const s of p.output.sideFiles) line(`  + ${s}`);
  line('steps');
  p.steps.forEach((s, i) => line(`  ${String(i + 1).padStart(2)}. ${s.stage}/${s.id}: ${s.title}`));
  if (p.unknown.length) line(`not known yet: ${p.unknown.join(', ')}`);
  return `${out.join('\n')}\n`;
}
