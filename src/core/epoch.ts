// SOURCE_DATE_EPOCH, validated once: every timestamp img2vm itself writes comes from here.
import { Img2vmError } from './errors.js';

/** Seconds since the epoch: SOURCE_DATE_EPOCH when set (reproducible builds), else now. */
export function epochSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return Math.floor(Date.now() / 1000);
  if (!/^\d{1,12}$/.test(v)) {
    throw new Img2vmError(
      'usage',
      `SOURCE_DATE_EPOCH="${v}" is not a number of seconds since 1970`,
      'set it to e.g. $(git log -1 --format=%ct), or unset it',
    );
  }
  return Number(v);
}

/** For timestamps that should not move without SOURCE_DATE_EPOCH either (archive members): 0 then. */
export function fixedEpochSeconds(env: NodeJS.ProcessEnv = process.env): number {
  return env.SOURCE_DATE_EPOCH === undefined || env.SOURCE_DATE_EPOCH === '' ? 0 : epochSeconds(env);
}
