// docker run's flags on `img2vm run` (and `img2vm test`), spelled as docker spells them, and the action for an image.
import { Option, type Command } from 'commander';
import { Img2vmError } from '../core/errors.js';
import { stderr, stdoutJson } from './print.js';
import { withVmSignals } from './vm-signals.js';
import { runImage, type RunImageFlags } from './run-image.js';

const collect = (v: string, prev: string[]) => [...prev, v];

/** The flags only an image run takes (a disk keeps today's meaning and its own flags). */
export function addRunImageOptions(cmd: Command): Command {
  return cmd
    .option(
      '-e, --env <name=value>',
      'IMAGE: set an environment variable (NAME alone: the host value); repeatable',
      collect,
      [],
    )
    .option('--env-file <file>', 'IMAGE: read NAME=VALUE lines (# comments) from FILE; repeatable', collect, [])
    .option(
      '-v, --volume <host:guest[:ro]>',
      'IMAGE: share the host directory HOST, live, at GUEST (virtio-fs); repeatable',
      collect,
      [],
    )
    .option('-w, --workdir <dir>', "IMAGE: the workload's working directory")
    .option('-u, --user <user[:group]>', 'IMAGE: the user the workload runs as (name or uid, from the image)')
    .option('--entrypoint <program>', "IMAGE: replace the image's ENTRYPOINT (and drop its CMD)")
    .option('-i, --interactive', "IMAGE: pass this terminal's input to the workload")
    .option(
      '-t, --tty',
      'IMAGE: a terminal in the guest (raw mode here, the window size there, Ctrl-C to the workload)',
    )
    .option('--rm', 'IMAGE: discard what the run wrote (always: the cached disk is never written)')
    .option('-m, --memory <size>', 'guest memory, e.g. 512m or 2g (--mem)')
    .option('--name <name>', 'IMAGE: a name for this run (its temporary files and messages)')
    .addOption(
      new Option('--init <init>', 'IMAGE: how the image boots: img2vm (default) or distro').choices([
        'img2vm',
        'distro',
      ]),
    );
}

/** The first image-only flag given, for refusing it on a disk. */
export function imageOnlyFlags(f: RunImageFlags, command: string[]): string | undefined {
  if (command.length) return `a command (${command[0]})`;
  const given: [boolean, string][] = [
    [f.env.length > 0, '-e/--env'],
    [f.envFile.length > 0, '--env-file'],
    [f.volume.length > 0, '-v/--volume'],
    [f.workdir !== undefined, '-w/--workdir'],
    [f.user !== undefined, '-u/--user'],
    [f.entrypoint !== undefined, '--entrypoint'],
    [!!f.interactive, '-i'],
    [!!f.tty, '-t'],
    [f.name !== undefined, '--name'],
    [f.init !== undefined, '--init'],
  ];
  return given.find(([on]) => on)?.[1];
}

export async function runImageAction(image: string, command: string[], f: RunImageFlags): Promise<void> {
  const result = await withVmSignals((ctx) => runImage(image, command, f, ctx));
  if (f.json) stdoutJson(result);
  else if (f.verbose && result.image) stderr(`img2vm: ${result.image.converted ? 'converted' : 'cached'} ${image}\n`);
  if (result.workload) process.exitCode = result.workload.status;
}

/**
 * `img2vm test IMAGE`: the run as `img2vm run IMAGE` makes it (the workload's output on stdout), passing when the
 * workload exits with --expect-exit (default 0); a failed test exits 24 (commandFailed), as a failed --run does.
 */
export async function testImageAction(
  image: string,
  command: string[],
  f: RunImageFlags & { expectExit?: string; expect?: string; login?: string; run?: string; log?: string },
): Promise<void> {
  const diskOnly =
    f.expect !== undefined
      ? '--expect'
      : f.login !== undefined
        ? '--login'
        : f.run !== undefined
          ? '--run'
          : f.log !== undefined
            ? '--log'
            : undefined;
  if (diskOnly)
    throw new Img2vmError(
      'usage',
      `${diskOnly} is for img2vm test DISK`,
      "an image test passes on its workload's exit status (--expect-exit)",
    );
  const want = f.expectExit !== undefined ? Number(f.expectExit) : 0;
  if (!/^\d{1,3}$/.test(f.expectExit ?? '0') || want > 255)
    throw new Img2vmError(
      'usage',
      `invalid --expect-exit "${f.expectExit}"`,
      'an exit status is a whole number from 0 to 255',
    );
  const result = await withVmSignals((ctx) => runImage(image, command, f, ctx));
  const status = result.workload?.status;
  const passed = status === want;
  if (f.json) stdoutJson({ ...result, passed, expectExit: want });
  else if (!f.quiet && passed) stderr(`passed: the workload exited with status ${status} after ${result.seconds} s\n`);
  if (!passed)
    throw new Img2vmError(
      'commandFailed',
      status === undefined
        ? 'the guest reported no exit status'
        : `the workload exited with status ${status}, not ${want}`,
      'run it with img2vm run (the same flags) to see its output',
    );
}
