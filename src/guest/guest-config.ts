// Guest configuration options split in two: what the cached template build installs, and what each conversion writes.
import { posix } from 'node:path';
import type { Random } from '../core/random.js';
import { Img2vmError } from '../core/errors.js';
import type { ImageConfig } from '../source/image.js';
import { makeSalt, passwordChangeDays, sha512Crypt } from './credentials.js';
import type { DistroRecipe } from './distros.js';
import { type AccountEdits, type GuestFile, type ReadGuestFile, applyAccounts } from './config/accounts.js';
import {
  ENTRYPOINT_UNIT,
  OPENRC_LAUNCHER,
  OPENRC_SERVICE,
  entrypointSpec,
  openrcEntrypoint,
  systemdEntrypointUnit,
} from './config/entrypoint.js';
import { authorizedKeys, parseDns, parseSshKeys, validateHostname, validateUserName } from './config/validate.js';

export type { CurrentFile, GuestFile, ReadGuestFile } from './config/accounts.js';

/** The guest options as the CLI spells them (--ssh-key is the file's name and its content, read by the caller). */
export interface GuestOptions {
  password?: string;
  sshKey?: { file: string; text: string };
  user?: string;
  hostname?: string;
  /** --dns values: repeated and/or comma lists. */
  dns?: string[];
  cloudInit?: boolean;
  entrypointService?: boolean;
}

/** Everything about the options that the cached build depends on: booleans, never a secret. */
export interface BuildFeatures {
  ssh: boolean;
  sudo: boolean;
  cloudInit: boolean;
  entrypoint: boolean;
}

export function buildFeatures(o: GuestOptions): BuildFeatures {
  return { ssh: !!o.sshKey, sudo: !!o.user, cloudInit: !!o.cloudInit, entrypoint: !!o.entrypointService };
}

const list = (xs: Iterable<string>) => [...new Set(xs)].join(' ');

/**
 * The template values for a recipe with the selected features: packages to install and services to enable.
 * They depend on the features only, so conversions with different keys or passwords share a cached build.
 */
export function buildValues(recipe: DistroRecipe, features: BuildFeatures): Record<string, string> {
  const d = recipe.distro;
  const on = [
    features.ssh && d.features.ssh,
    features.sudo && d.features.sudo,
    features.cloudInit && d.features.cloudInit,
    features.entrypoint && d.features.entrypoint,
  ].filter((f): f is NonNullable<typeof f> & object => !!f);
  const values = { ...recipe.values };
  const extra = [values.extra_packages ?? '', ...on.flatMap((f) => f.packages)]
    .flatMap((s) => s.split(/\s+/))
    .filter(Boolean);
  values.extra_packages = list(extra);
  const enable = on.flatMap((f) => f.enable);
  if (d.init === 'openrc') {
    values.default_services = list(enable);
    values.boot_services = list(on.flatMap((f) => f.boot));
  } else {
    values.enable_units = list(enable);
  }
  return values;
}

export interface GuestDir {
  path: string;
  mode: number;
  uid: number;
  gid: number;
}

export interface GuestSymlink {
  path: string;
  target: string;
}

/** What a conversion writes, after flattening; `edits` need the image's account files (see applyEdits). */
export interface GuestPlan {
  /** Written whole, replacing whatever entry the image has at the path (a symlink is replaced, not followed). */
  files: GuestFile[];
  /** Created when missing (parents first, in this order); an existing directory is left as it is. */
  dirs: GuestDir[];
  symlinks: GuestSymlink[];
  /** Entries of `dir` whose names start with `prefix` are removed (SSH host keys an image may carry). */
  removes: { dir: string; prefix: string }[];
  edits: GuestEdits;
  warnings: string[];
}

export interface GuestEdits extends AccountEdits {
  /** authorized_keys content for root, and for the --user when there is one. */
  authorizedKeys?: string;
}

export interface GuestContext {
  random: Random;
  /** SOURCE_DATE_EPOCH or now: the shadow last-change day. */
  epochSeconds: number;
}

function file(path: string, content: string, mode = 0o644): GuestFile {
  return { path, content, mode, uid: 0, gid: 0 };
}

function hosts(name: string): string {
  const short = name.split('.')[0]!;
  const names = short === name ? name : `${name} ${short}`;
  return `127.0.0.1\tlocalhost\n127.0.1.1\t${names}\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n`;
}

function dnsFiles(recipe: DistroRecipe, servers: string[], warnings: string[]): GuestFile[] {
  const header = '# Written by img2vm (--dns): static DNS servers; those DHCP offers are not used.\n';
  switch (recipe.distro.network) {
    case 'networkd':
      return [
        file('/etc/systemd/resolved.conf.d/90-img2vm-dns.conf', `${header}[Resolve]\nDNS=${servers.join(' ')}\n`),
        file(
          '/etc/systemd/network/80-img2vm-dhcp.network.d/90-img2vm-dns.conf',
          `${header}[Network]\nDNS=${servers.join(' ')}\n\n[DHCPv4]\nUseDNS=no\n\n[DHCPv6]\nUseDNS=no\n\n[IPv6AcceptRA]\nUseDNS=no\n`,
        ),
      ];
    case 'networkmanager':
      // NetworkManager's global DNS overrides what every connection learns and is written to resolv.conf.
      return [
        file(
          '/etc/NetworkManager/conf.d/90-img2vm-dns.conf',
          `${header}[global-dns-domain-*]\nservers=${servers.join(',')}\n`,
        ),
      ];
    case 'udhcpc':
      // musl's resolver reads the first three nameservers only.
      if (servers.length > 3)
        warnings.push(`--dns: only the first 3 of ${servers.length} servers are used by Alpine's resolver`);
      return [
        file('/etc/resolv.conf', `${header}${servers.map((s) => `nameserver ${s}\n`).join('')}`),
        file('/etc/udhcpc/udhcpc.conf', `${header}RESOLV_CONF="no"\n`),
      ];
  }
}

/**
 * The per-conversion part of the guest configuration, as data. Secrets enter only here: passwords as
 * SHA-512 crypt hashes (salted from ctx.random, so --seed makes them reproducible), keys as authorized_keys.
 */
export function guestFiles(recipe: DistroRecipe, o: GuestOptions, image: ImageConfig, ctx: GuestContext): GuestPlan {
  const d = recipe.distro;
  const warnings: string[] = [];
  const files: GuestFile[] = [];
  const dirs: GuestDir[] = [];
  const symlinks: GuestSymlink[] = [];
  const removes: { dir: string; prefix: string }[] = [];
  const user = o.user === undefined ? undefined : validateUserName(o.user);
  if (user && o.password === undefined && !o.sshKey) {
    throw new Img2vmError(
      'usage',
      `--user ${user} needs --password or --ssh-key`,
      'without either the user could never log in',
    );
  }
  const keys = o.sshKey ? parseSshKeys(o.sshKey.text, o.sshKey.file) : undefined;
  if (o.password !== undefined && o.password === '')
    throw new Img2vmError(
      'usage',
      '--password is empty',
      'give a password, or leave --password out for no password login',
    );

  if (o.hostname !== undefined) {
    const name = validateHostname(o.hostname);
    files.push(file('/etc/hostname', `${name}\n`), file('/etc/hosts', hosts(name)));
  }
  // An empty machine-id makes systemd make a fresh one on the first boot, so clones of a disk differ.
  if (d.init === 'systemd') files.push(file('/etc/machine-id', '', 0o444));
  if (o.dns !== undefined) files.push(...dnsFiles(recipe, parseDns(o.dns), warnings));
  // What /etc/resolv.conf is matters more than what the image left there (often nothing, or docker's copy).
  if (d.network === 'networkd')
    symlinks.push({ path: '/etc/resolv.conf', target: '../run/systemd/resolve/stub-resolv.conf' });
  // A regular file: NetworkManager leaves a symlink alone (EL 8's systemd ships resolved, disabled, so a stub
  // link would point at nothing).
  if (d.network === 'networkmanager')
    files.push(
      file('/etc/resolv.conf', '# Written by img2vm: NetworkManager writes the DNS servers here once it is up.\n'),
    );

  if (o.entrypointService) {
    const spec = entrypointSpec(image);
    if (d.init === 'systemd') {
      const { unit, warnings: w } = systemdEntrypointUnit(spec);
      warnings.push(...w);
      files.push(file(ENTRYPOINT_UNIT, unit));
      symlinks.push({
        path: '/etc/systemd/system/multi-user.target.wants/img2vm-entrypoint.service',
        target: ENTRYPOINT_UNIT,
      });
    } else {
      warnings.push(...spec.warnings);
      const { service, launcher } = openrcEntrypoint(spec);
      dirs.push({ path: '/usr/local/lib/img2vm', mode: 0o755, uid: 0, gid: 0 });
      files.push(file(OPENRC_SERVICE, service, 0o755), file(OPENRC_LAUNCHER, launcher, 0o755));
      symlinks.push({ path: '/etc/runlevels/default/img2vm-entrypoint', target: OPENRC_SERVICE });
    }
  }
  // Keys an image was built with would be shared by every VM made from it.
  if (keys) removes.push({ dir: '/etc/ssh', prefix: 'ssh_host_' });

  const hash = () => sha512Crypt(o.password!, makeSalt(ctx.random));
  const edits: GuestEdits = {
    epochDays: passwordChangeDays(ctx.epochSeconds),
    shadow: d.shadow,
    ...(o.password !== undefined ? { rootPasswordHash: hash() } : {}),
    ...(user
      ? { user: { name: user, sudoGroup: d.sudoGroup, ...(o.password !== undefined ? { passwordHash: hash() } : {}) } }
      : {}),
    ...(keys ? { authorizedKeys: authorizedKeys(keys) } : {}),
  };
  return { files, dirs, symlinks, removes, edits, warnings };
}

/**
 * The account part of a plan against the image's own files: new passwd/group/shadow/gshadow, home and
 * .ssh directories, authorized_keys, and the sudoers entry. `read` sees the flattened image.
 */
export function applyEdits(
  edits: GuestEdits,
  read: ReadGuestFile,
): { files: GuestFile[]; dirs: GuestDir[]; warnings: string[] } {
  const acc = applyAccounts(edits, read);
  const files = [...acc.files];
  const dirs: GuestDir[] = [];
  if (edits.authorizedKeys !== undefined) {
    // Container images sometimes have no /root at all.
    dirs.push(
      { path: acc.root.home, mode: 0o700, uid: 0, gid: 0 },
      { path: posix.join(acc.root.home, '.ssh'), mode: 0o700, uid: 0, gid: 0 },
    );
    files.push({
      path: posix.join(acc.root.home, '.ssh/authorized_keys'),
      content: edits.authorizedKeys,
      mode: 0o600,
      uid: 0,
      gid: 0,
    });
  }
  const u = acc.user;
  if (u) {
    if (u.created) dirs.push({ path: '/home', mode: 0o755, uid: 0, gid: 0 });
    dirs.push({ path: u.home, mode: 0o750, uid: u.uid, gid: u.gid });
    if (edits.authorizedKeys !== undefined) {
      dirs.push({ path: posix.join(u.home, '.ssh'), mode: 0o700, uid: u.uid, gid: u.gid });
      files.push({
        path: posix.join(u.home, '.ssh/authorized_keys'),
        content: edits.authorizedKeys,
        mode: 0o600,
        uid: u.uid,
        gid: u.gid,
      });
    }
    // Without a password sudo could never ask for one, so a key-only user gets it without.
    const rule = edits.user?.passwordHash !== undefined ? 'ALL=(ALL:ALL) ALL' : 'ALL=(ALL:ALL) NOPASSWD: ALL';
    dirs.push({ path: '/etc/sudoers.d', mode: 0o750, uid: 0, gid: 0 });
    // A fixed name: sudo skips files in sudoers.d whose names contain a dot, and user names may.
    files.push({
      path: '/etc/sudoers.d/90-img2vm',
      content: `# Written by img2vm (--user)\n${u.name} ${rule}\n`,
      mode: 0o440,
      uid: 0,
      gid: 0,
    });
  }
  return { files, dirs, warnings: acc.warnings };
}
