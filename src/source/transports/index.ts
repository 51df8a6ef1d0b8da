// The image transports, by the id their references spell (docker://, docker-daemon:, oci:, oci-archive:, docker-archive:).
import type { Transport as TransportId } from '../index.js';
import type { Transport } from '../transport.js';
import { dockerArchive } from './docker-archive.js';
import { dockerDaemon } from './docker-daemon.js';
import { docker } from './docker.js';
import { ociArchive } from './oci-archive.js';
import { oci } from './oci.js';

export const TRANSPORTS: Record<TransportId, Transport> = {
  docker,
  'docker-daemon': dockerDaemon,
  'docker-archive': dockerArchive,
  oci,
  'oci-archive': ociArchive,
};
