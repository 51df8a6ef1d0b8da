// Reference parsing: transports, docker's name normalisation, platforms, and the docker daemon endpoint.
import { describe, expect, it } from 'vitest';
import { parseSourceRef } from '../../src/source/index.js';
import { archiveMemberPath } from '../../src/source/archive.js';
import { dockerEndpoint } from '../../src/source/docker-api.js';
import { canonicalReference, familiarReference, parseDockerReference } from '../../src/source/reference.js';
import { defaultPlatform, formatPlatform, parsePlatform, platformMatches } from '../../src/source/platform.js';
import { credentialKey } from '../../src/source/auth.js';

const D = 'sha256:' + 'a'.repeat(64);

describe('parseSourceRef', () => {
  it.each([
    ['debian:bookworm', { transport: 'docker-daemon', target: 'debian:bookworm', bare: true }],
    ['localhost:5000/demo:1', { transport: 'docker-daemon', target: 'localhost:5000/demo:1', bare: true }],
    ['docker:latest', { transport: 'docker-daemon', target: 'docker:latest', bare: true }],
    ['docker-daemon:img:tag', { transport: 'docker-daemon', target: 'img:tag' }],
    ['docker-archive:/tmp/a.tar', { transport: 'docker-archive', target: '/tmp/a.tar' }],
    ['docker://debian', { transport: 'docker', target: 'debian' }],
    ['docker://127.0.0.1:5000/x:tag', { transport: 'docker', target: '127.0.0.1:5000/x:tag' }],
    ['oci:/srv/layout', { transport: 'oci', target: '/srv/layout' }],
    ['oci:/srv/layout:v1.2', { transport: 'oci', target: '/srv/layout', tag: 'v1.2' }],
    ['oci-archive:img.tar', { transport: 'oci-archive', target: 'img.tar' }],
    ['oci-archive:img.tar:latest', { transport: 'oci-archive', target: 'img.tar', tag: 'latest' }],
  ])('%s', (ref, want) => expect(parseSourceRef(ref)).toEqual(want));
  it('rejects empty, spaced and incomplete references', () => {
    expect(() => parseSourceRef('')).toThrow(/empty/);
    expect(() => parseSourceRef('a b')).toThrow(/not a valid/);
    expect(() => parseSourceRef('oci:')).toThrow(/needs a directory/);
    expect(() => parseSourceRef('oci-archive:')).toThrow(/needs a file/);
    expect(() => parseSourceRef('docker://Debian')).toThrow(/must be lowercase/);
  });
});

describe('docker references', () => {
  it.each([
    ['debian', 'docker.io/library/debian:latest', 'debian:latest'],
    ['debian:bookworm', 'docker.io/library/debian:bookworm', 'debian:bookworm'],
    ['user/x', 'docker.io/user/x:latest', 'user/x:latest'],
    ['docker.io/debian', 'docker.io/library/debian:latest', 'debian:latest'],
    ['index.docker.io/library/debian:12', 'docker.io/library/debian:12', 'debian:12'],
    ['localhost/x', 'localhost/x:latest', 'localhost/x:latest'],
    ['localhost:5000/x', 'localhost:5000/x:latest', 'localhost:5000/x:latest'],
    ['127.0.0.1:5000/x:tag', '127.0.0.1:5000/x:tag', '127.0.0.1:5000/x:tag'],
    ['[::1]:5000/team/x:1', '[::1]:5000/team/x:1', '[::1]:5000/team/x:1'],
    [
      'registry.example.com/a/b/c:v1.0-rc_1',
      'registry.example.com/a/b/c:v1.0-rc_1',
      'registry.example.com/a/b/c:v1.0-rc_1',
    ],
    ['Example.com/x', 'Example.com/x:latest', 'Example.com/x:latest'],
    [`x@${D}`, `docker.io/library/x@${D}`, `x@${D}`],
    [`x:tag@${D}`, `docker.io/library/x:tag@${D}`, `x:tag@${D}`],
    ['a__b/c-d--e.f:1', 'docker.io/a__b/c-d--e.f:1', 'a__b/c-d--e.f:1'],
  ])('%s → %s', (s, canonical, familiar) => {
    const r = parseDockerReference(s);
    expect(canonicalReference(r)).toBe(canonical);
    expect(familiarReference(r)).toBe(familiar);
  });

  it('splits domain and path as docker does', () => {
    expect(parseDockerReference('debian')).toEqual({ domain: 'docker.io', path: 'library/debian', tag: 'latest' });
    expect(parseDockerReference(`x@${D}`)).toEqual({ domain: 'docker.io', path: 'library/x', digest: D });
    expect(parseDockerReference('foo:5000')).toEqual({ domain: 'docker.io', path: 'library/foo', tag: '5000' });
  });

  it.each([
    ['Debian', /must be lowercase/],
    ['user/Debian', /must be lowercase/],
    ['a'.repeat(64).replace(/a/g, 'f'), /image ID/],
    ['x:', /not a valid tag/],
    ['x:-tag', /not a valid tag/],
    ['x@sha256:abc', /not a digest/],
    [`x@sha512:${'a'.repeat(128)}`, /only sha256/],
    ['-x', /not a valid repository name/],
    ['x//y', /not a valid repository name/],
    ['x_', /not a valid repository name/],
    [`${'a'.repeat(250)}/b/c`, /longer than 255/],
  ])('refuses %s', (s, re) => {
    expect(() => parseDockerReference(s)).toThrow(re);
  });
});

describe('platforms', () => {
  it('parses os/arch[/variant] with aliases', () => {
    expect(parsePlatform('linux/amd64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(parsePlatform('Linux/x86_64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(parsePlatform('linux/aarch64')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('linux/arm/v6')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v6' });
    expect(parsePlatform('linux/armhf')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(() => parsePlatform('amd64')).toThrow(/os\/arch/);
    expect(() => parsePlatform('linux/amd64/v1/x')).toThrow(/os\/arch/);
  });
  it('derives the default from process.arch', () => {
    expect(defaultPlatform('x64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(defaultPlatform('arm64')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(formatPlatform(defaultPlatform('arm'))).toBe('linux/arm/v7');
  });
  it('treats arm64 without a variant as v8', () => {
    expect(platformMatches({ os: 'linux', architecture: 'arm64' }, parsePlatform('linux/arm64/v8'))).toBe(true);
    expect(platformMatches({ os: 'linux', architecture: 'arm', variant: 'v6' }, parsePlatform('linux/arm/v7'))).toBe(
      false,
    );
    expect(
      platformMatches({ os: 'linux', architecture: 'arm', variant: 'v6' }, parsePlatform('linux/arm'.concat('/v6'))),
    ).toBe(true);
  });
});

describe('archive member names', () => {
  it('refuses names that climb out', () => {
    expect(archiveMemberPath('./abc/layer.tar')).toBe('abc/layer.tar');
    for (const bad of ['../x', '/etc/passwd', 'a/../../x']) expect(() => archiveMemberPath(bad)).toThrow(/unsafe/);
  });
});

describe('dockerEndpoint and credentials keys', () => {
  it('reads DOCKER_HOST', () => {
    expect(dockerEndpoint({})).toEqual({ socketPath: '/var/run/docker.sock' });
    expect(dockerEndpoint({ DOCKER_HOST: 'unix:///run/d.sock' })).toEqual({ socketPath: '/run/d.sock' });
    expect(() => dockerEndpoint({ DOCKER_HOST: 'tcp://1.2.3.4:2375' })).toThrow(/not supported/);
  });
  it('files Docker Hub credentials under its historical URL', () => {
    expect(credentialKey('docker.io')).toBe('https://index.docker.io/v1/');
    expect(credentialKey('127.0.0.1:5000')).toBe('127.0.0.1:5000');
  });
});
