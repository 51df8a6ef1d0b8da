// Access ACLs and the mode: the tree flattener ends where extracting the layer on Linux ends (GNU tar and bsdtar for ACLs as text, GNU tar --xattrs as Docker's and containerd's unpackers for ACLs as xattrs), checked against those extractors.
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aclXattrProblem } from '../../src/rootfs/acl.js';
import type { DirNode } from '../../src/rootfs/tree.js';
import { canonicalXattr } from '../model/listing.js';
import { padTo512, paxEntry, paxRecord, rawHeader, TAR_END } from './helpers.js';
import { flattenLayers, must } from './layers-helpers.js';

const U = 0xffffffff;
type E = [tag: number, perm: number, id?: number];
const [USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER] = [1, 2, 4, 8, 0x10, 0x20];

/** An ACL as the kernel's xattr value, entries as given (not sorted: a test may want them out of order). */
function acl(entries: E[]): Buffer {
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(2, 0);
  entries.forEach(([t, p, id], i) => {
    b.writeUInt16LE(t, 4 + 8 * i);
    b.writeUInt16LE(p, 6 + 8 * i);
    b.writeUInt32LE(id ?? U, 8 + 8 * i);
  });
  return b;
}

interface Case {
  name: string;
  dir?: boolean;
  mode: number;
  /** PAX records, values as binary strings. */
  records: Array<[string, string]>;
}

const bin = (b: Buffer): string => b.toString('latin1');
const XATTR = 'SCHILY.xattr.system.posix_acl_access';

/** ACLs as text, as GNU tar --acls and bsdtar write them: the extractors set them after the mode. */
const TEXT: Case[] = [
  // bsdtar's own /acls/dir of the producer matrix: group:: (r-x) in the header's mode, mask::rwx in the ACL.
  {
    name: 'bsd-dir',
    dir: true,
    mode: 0o750,
    records: [['SCHILY.acl.access', 'user::rwx,group::r-x,other::---,group:users:rwx:100,mask::rwx']],
  },
  {
    name: 'suid',
    mode: 0o4755,
    records: [['SCHILY.acl.access', 'user::rwx,user:5:rwx,group::r-x,mask::-wx,other::r-x']],
  },
  { name: 'no-mask', mode: 0o777, records: [['SCHILY.acl.access', 'user::rw-,group::r--,other::---']] },
  {
    name: 'default-only',
    dir: true,
    mode: 0o751,
    records: [['SCHILY.acl.default', 'user::rwx,group::r-x,other::---']],
  },
];

/** ACLs as the xattr, as Go's and Python's writers and GNU tar --xattrs carry them: Docker and containerd set them before the mode. */
const XATTRS: Case[] = [
  {
    name: 'x-file',
    mode: 0o644,
    records: [
      [
        XATTR,
        bin(
          acl([
            [USER_OBJ, 7],
            [USER, 4, 1000],
            [GROUP_OBJ, 5],
            [MASK, 4],
            [OTHER, 1],
          ]),
        ),
      ],
    ],
  },
  {
    name: 'x-dir',
    dir: true,
    mode: 0o750,
    records: [
      [
        XATTR,
        bin(
          acl([
            [USER_OBJ, 7],
            [GROUP_OBJ, 5],
            [GROUP, 7, 100],
            [MASK, 7],
            [OTHER, 0],
          ]),
        ),
      ],
    ],
  },
  {
    name: 'x-no-mask',
    mode: 0o777,
    records: [
      [
        XATTR,
        bin(
          acl([
            [USER_OBJ, 6],
            [GROUP_OBJ, 4],
            [OTHER, 0],
          ]),
        ),
      ],
    ],
  },
  {
    name: 'x-out-of-order',
    mode: 0o644,
    records: [
      [
        XATTR,
        bin(
          acl([
            [GROUP_OBJ, 5],
            [USER_OBJ, 7],
            [OTHER, 1],
          ]),
        ),
      ],
    ],
  },
  {
    name: 'x-named-no-mask',
    mode: 0o640,
    records: [
      [
        XATTR,
        bin(
          acl([
            [USER_OBJ, 7],
            [USER, 4, 1000],
            [GROUP_OBJ, 5],
            [OTHER, 1],
          ]),
        ),
      ],
    ],
  },
];

/** A PAX header with the records, then the entry with the case's mode. */
function entry(c: Case): Buffer {
  const pax = Buffer.from(c.records.map(([k, v]) => paxRecord(k, v)).join(''), 'latin1');
  const content = c.dir ? Buffer.alloc(0) : Buffer.from('x');
  return Buffer.concat([
    rawHeader({ name: 'PaxHeaders/e', typeflag: 'x', size: pax.length }),
    padTo512(pax),
    rawHeader({ name: c.dir ? `${c.name}/` : c.name, typeflag: c.dir ? '5' : '0', size: content.length, mode: c.mode }),
    padTo512(content),
  ]);
}

function layer(cases: readonly Case[]): Buffer {
  return Buffer.concat([...cases.map(entry), TAR_END]);
}

/** Mode and ACLs of what an extractor left, or of the tree: the things compared. */
interface Seen {
  mode: string;
  access: string;
  default: string;
}

function getfattrHex(path: string, name: string): string {
  try {
    const out = execFileSync('getfattr', ['-h', '-e', 'hex', '-n', name, path], {
      encoding: 'latin1',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const m = /=0x([0-9a-f]*)\s*$/m.exec(out);
    return m ? canonicalXattr(name, Buffer.from(m[1]!, 'hex')).toString('hex') : '';
  } catch {
    return '';
  }
}

function extracted(dir: string, name: string): Seen {
  const p = join(dir, name);
  return {
    mode: (lstatSync(p).mode & 0o7777).toString(8),
    access: getfattrHex(p, 'system.posix_acl_access'),
    default: getfattrHex(p, 'system.posix_acl_default'),
  };
}

function fromTree(root: DirNode, name: string): Seen {
  const m = must(root, name).meta;
  const x = (k: string): string => {
    const v = m.xattrs.get(k);
    return v ? canonicalXattr(k, v).toString('hex') : '';
  };
  return { mode: m.mode.toString(8), access: x('system.posix_acl_access'), default: x('system.posix_acl_default') };
}

describe('the mode and access ACL are what extraction on Linux leaves', () => {
  let work: string;
  beforeAll(() => {
    expect(process.getuid?.(), 'extracting set-id bits and ACLs for the comparison needs root').toBe(0);
    work = mkdtempSync(join(tmpdir(), 'img2vm-acl-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  let n = 0;
  const extract = (cases: readonly Case[], argv: readonly string[]): string => {
    const dir = join(work, String(n++));
    mkdirSync(dir);
    execFileSync(argv[0]!, [...argv.slice(1), '-C', dir], { input: layer(cases), stdio: ['pipe', 'ignore', 'ignore'] });
    return dir;
  };

  const files = XATTRS.filter((c) => !c.dir);
  for (const [what, cases, argv] of [
    ['ACLs as text, extracted by bsdtar', TEXT, ['bsdtar', '-xpf', '-']],
    ['ACLs as text, extracted by GNU tar --acls', TEXT, ['tar', '--acls', '-xpf', '-']],
    // (GNU tar sets a directory's xattrs after its mode; Docker and containerd do not, see the next test.)
    [
      'ACLs as xattrs on files, extracted by GNU tar --xattrs (setxattr, then chmod)',
      files,
      ['tar', '--xattrs', '--xattrs-include=*', '-xpf', '-'],
    ],
  ] as const) {
    it(what, async () => {
      const dir = extract(cases, argv);
      const { root } = await flattenLayers([layer(cases)]);
      for (const c of cases) expect(fromTree(root, c.name), c.name).toEqual(extracted(dir, c.name));
    });
  }

  it("ACLs as xattrs, files and directories, set as Docker's and containerd's createTarFile sets them: setxattr, then chmod to the header's mode", async () => {
    const dir = join(work, 'docker-order');
    mkdirSync(dir);
    for (const c of XATTRS) {
      const p = join(dir, c.name);
      if (c.dir) mkdirSync(p, 0o700);
      else execFileSync('touch', [p]);
      const value = Buffer.from(c.records[0]![1], 'latin1');
      try {
        execFileSync('setfattr', ['-n', 'system.posix_acl_access', '-v', `0x${value.toString('hex')}`, p], {
          stdio: 'ignore',
        });
      } catch {
        // Linux refused the ACL (as it would for the unpacker, which then warns or fails)
      }
      execFileSync('chmod', [c.mode.toString(8), p]);
    }
    const { root } = await flattenLayers([layer(XATTRS)]);
    for (const c of XATTRS) expect(fromTree(root, c.name), c.name).toEqual(extracted(dir, c.name));
  });

  it('the cases say what they are about', async () => {
    const { root, warnings } = await flattenLayers([layer([...TEXT, ...XATTRS])]);
    // mask::rwx makes the group bits rwx; setuid stays; an ACL of user::, group::, other:: alone is not kept.
    expect(fromTree(root, 'bsd-dir').mode).toBe('770');
    expect(fromTree(root, 'suid').mode).toBe('4735');
    expect(fromTree(root, 'no-mask')).toEqual({ mode: '640', access: '', default: '' });
    expect(fromTree(root, 'default-only').mode).toBe('751');
    // As the xattr: the header's mode stays and the ACL follows it (user:: rw-, mask:: r--, other:: r--).
    expect(fromTree(root, 'x-file').mode).toBe('644');
    expect(must(root, 'x-file').meta.xattrs.get('system.posix_acl_access')).toEqual(
      acl([
        [USER_OBJ, 6],
        [USER, 4, 1000],
        [GROUP_OBJ, 5],
        [MASK, 4],
        [OTHER, 4],
      ]),
    );
    expect(fromTree(root, 'x-no-mask')).toEqual({ mode: '777', access: '', default: '' });
    expect(warnings).toEqual([
      expect.stringMatching(
        /"system.posix_acl_access" of "x-out-of-order": its entries are not user::, user:ID \.\.\., group::/,
      ),
      expect.stringMatching(/"system.posix_acl_access" of "x-named-no-mask": it has named entries but no mask:: entry/),
    ]);
  });
});

describe('which ACL values Linux refuses', () => {
  it('aclXattrProblem agrees with setxattr(2) on a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'img2vm-acl-valid-'));
    try {
      const values: Array<[string, Buffer]> = [
        [
          'base entries',
          acl([
            [USER_OBJ, 6],
            [GROUP_OBJ, 4],
            [OTHER, 4],
          ]),
        ],
        [
          'a mask without named entries',
          acl([
            [USER_OBJ, 6],
            [GROUP_OBJ, 4],
            [MASK, 4],
            [OTHER, 4],
          ]),
        ],
        [
          'named users and groups',
          acl([
            [USER_OBJ, 7],
            [USER, 5, 1],
            [USER, 1, 2],
            [GROUP_OBJ, 4],
            [GROUP, 2, 3],
            [MASK, 7],
            [OTHER, 0],
          ]),
        ],
        [
          'named entries out of id order',
          acl([
            [USER_OBJ, 7],
            [USER, 5, 9],
            [USER, 1, 2],
            [GROUP_OBJ, 4],
            [MASK, 7],
            [OTHER, 0],
          ]),
        ],
        ['no entries', acl([])],
        [
          'no other::',
          acl([
            [USER_OBJ, 6],
            [GROUP_OBJ, 4],
          ]),
        ],
        [
          'no user::',
          acl([
            [GROUP_OBJ, 4],
            [OTHER, 4],
          ]),
        ],
        [
          'user:: twice',
          acl([
            [USER_OBJ, 6],
            [USER_OBJ, 6],
            [GROUP_OBJ, 4],
            [OTHER, 4],
          ]),
        ],
        [
          'mask:: before group::',
          acl([
            [USER_OBJ, 6],
            [MASK, 4],
            [GROUP_OBJ, 4],
            [OTHER, 4],
          ]),
        ],
        [
          'a named user without a mask',
          acl([
            [USER_OBJ, 6],
            [USER, 4, 5],
            [GROUP_OBJ, 4],
            [OTHER, 4],
          ]),
        ],
        [
          'a named user with no id',
          acl([
            [USER_OBJ, 6],
            [USER, 4, U],
            [GROUP_OBJ, 4],
            [MASK, 4],
            [OTHER, 4],
          ]),
        ],
        [
          'permissions beyond rwx',
          acl([
            [USER_OBJ, 8],
            [GROUP_OBJ, 4],
            [OTHER, 4],
          ]),
        ],
        [
          'an unknown tag',
          acl([
            [USER_OBJ, 6],
            [GROUP_OBJ, 4],
            [0x40, 4],
            [OTHER, 4],
          ]),
        ],
        [
          'version 1',
          Buffer.concat([
            Buffer.from([1, 0, 0, 0]),
            acl([
              [USER_OBJ, 6],
              [GROUP_OBJ, 4],
              [OTHER, 4],
            ]).subarray(4),
          ]),
        ],
      ];
      for (const [what, v] of values) {
        const f = join(dir, what.replace(/\W+/g, '-'));
        execFileSync('touch', [f]);
        let linux = true;
        try {
          execFileSync('setfattr', ['-n', 'system.posix_acl_access', '-v', `0x${v.toString('hex')}`, f], {
            stdio: 'ignore',
          });
        } catch {
          linux = false;
        }
        // An empty ACL is accepted by setxattr(2) and means "none": nothing to keep either way.
        expect(aclXattrProblem(v) === undefined, `${what}: ${aclXattrProblem(v) ?? 'accepted'}`).toBe(
          linux && v.length > 4,
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ACLs on links', () => {
  it('a hard link entry with an ACL as text sets the shared inode’s bits', async () => {
    const l = Buffer.concat([
      paxEntry('a', Buffer.from('x'), '0'),
      paxEntry('b', Buffer.alloc(0), '1', [
        ['linkpath', 'a'],
        ['SCHILY.acl.access', 'user::rw-,user:7:rwx,group::r--,mask::rwx,other::---'],
      ]),
      TAR_END,
    ]);
    const { root } = await flattenLayers([l]);
    expect(must(root, 'b')).toBe(must(root, 'a'));
    expect(must(root, 'a').meta.mode).toBe(0o670);
  });

  it('a symlink cannot have an ACL (Linux refuses it): dropped with a warning', async () => {
    const l = Buffer.concat([
      paxEntry('s', Buffer.alloc(0), '2', [
        ['linkpath', 't'],
        [
          XATTR,
          bin(
            acl([
              [USER_OBJ, 7],
              [GROUP_OBJ, 5],
              [MASK, 7],
              [OTHER, 0],
            ]),
          ),
        ],
      ]),
      TAR_END,
    ]);
    const { root, warnings } = await flattenLayers([l]);
    expect(must(root, 's').meta.xattrs.size).toBe(0);
    expect(warnings).toEqual([
      expect.stringMatching(/"system.posix_acl_access" of "s": Linux has no ACLs on symlinks/),
    ]);
  });
});
