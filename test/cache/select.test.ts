// `img2vm cache rm NAME...`: which entries a name means, and the names it refuses (none matched, several matched).
import { describe, expect, it } from 'vitest';
import { selectByName } from '../../src/cache/index.js';
import type { CacheEntry } from '../../src/cache/entries.js';
import { Img2vmError } from '../../src/core/errors.js';

const item = (name: string) => ({
  entry: {
    kind: 'converted-disk',
    store: 'img2vm',
    name,
    detail: '',
    bytes: 1,
    lastUsed: '',
    busy: null,
    location: '',
  } as CacheEntry,
});
const items = [item('disk:1c779de4'), item('disk:1facd6a9'), item('runc:c89ac755'), item('img2vm-demo:bookworm')];
const names = (ns: string[]) => selectByName(items, ns).map((i) => i.entry.name);

describe('cache rm selects', () => {
  it('an exact name, a unique start of one, each entry once', () => {
    expect(names(['runc:c89ac755'])).toEqual(['runc:c89ac755']);
    expect(names(['disk:1c7', 'img2vm-demo'])).toEqual(['disk:1c779de4', 'img2vm-demo:bookworm']);
    expect(names(['disk:1c779de4', 'disk:1c7'])).toEqual(['disk:1c779de4']);
  });

  it('an exact name even when it also starts another', () => {
    const both = [item('a:b'), item('a:bc')];
    expect(selectByName(both, ['a:b']).map((i) => i.entry.name)).toEqual(['a:b']);
  });

  it.each([
    [['disk:9'], /no cached entry is named disk:9/, /cache ls/],
    [['disk:1'], /disk:1 names 2 cached entries \(disk:1c779de4, disk:1facd6a9\)/, /give more of the name/],
    [[''], /no cached entry is named/, /cache ls/],
    [['runc:c89ac755', 'nope'], /no cached entry is named nope/, /cache ls/],
  ])('%j is refused as a usage error, nothing chosen', (ns, message, hint) => {
    let err: unknown;
    try {
      selectByName(items, ns);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Img2vmError);
    expect((err as Img2vmError).message).toMatch(message);
    expect((err as Img2vmError).hint).toMatch(hint);
    expect((err as Img2vmError).kind).toBe('usage');
  });
});
