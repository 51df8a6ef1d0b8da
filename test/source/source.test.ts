import { describe, expect, it } from 'vitest';
import { parseSourceRef } from '../../src/source/index.js';
import { archiveMemberPath } from '../../src/source/archive.js';
import { dockerEndpoint } from '../../src/source/docker-api.js';

describe('parseSourceRef', () => {
  it.each([
    ['debian:bookworm', { transport: 'docker-daemon', target: 'debian:bookworm' }],
    ['localhost:5000/demo:1', { transport: 'docker-daemon', target: 'localhost:5000/demo:1' }],
    ['docker-daemon:img:tag', { transport: 'docker-daemon', target: 'img:tag' }],
    ['docker-archive:/tmp/a.tar', { transport: 'docker-archive', target: '/tmp/a.tar' }],
  ])('%s', (ref, want) => expect(parseSourceRef(ref)).toEqual(want));
  it('rejects empty and spaced references', () => {
    expect(() => parseSourceRef('')).toThrow(/empty/);
    expect(() => parseSourceRef('a b')).toThrow(/not a valid/);
  });
});

describe('archive member names', () => {
  it('refuses names that climb out', () => {
    expect(archiveMemberPath('./abc/layer.tar')).toBe('abc/layer.tar');
    for (const bad of ['../x', '/etc/passwd', 'a/../../x']) expect(() => archiveMemberPath(bad)).toThrow(/unsafe/);
  });
});

describe('dockerEndpoint', () => {
  it('reads DOCKER_HOST', () => {
    expect(dockerEndpoint({})).toEqual({ socketPath: '/var/run/docker.sock' });
    expect(dockerEndpoint({ DOCKER_HOST: 'unix:///run/d.sock' })).toEqual({ socketPath: '/run/d.sock' });
    expect(() => dockerEndpoint({ DOCKER_HOST: 'tcp://1.2.3.4:2375' })).toThrow(/not supported/);
  });
});
