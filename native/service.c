/* The service of console mode (--entrypoint-service): the image's command beside the console, its output relayed. */

/*
 * The service is the image's ENTRYPOINT/CMD with its Env, WorkingDir and User (the spec's service, env, cwd and
 * user), started before the getty or shell. It runs in a session of its own with stdin /dev/null and stdout and
 * stderr a pipe: it never holds the console, so it never becomes the console's controlling process, and the
 * getty's hangups and the shell's job control never reach it.
 *
 * The relay is this binary again (exec'd through /proc/self/exe, so no copy of the nonce survives in it; see
 * init.c), writing each line of the pipe to /dev/console behind SERVICE_PREFIX, so the service's output stands
 * apart from the shell's. It writes to /dev/console and not to the tty behind it because the vhangup() of a
 * getty spares files opened through /dev/console. PID 1 holds both ends of the pipe: a service that outlives a
 * relay never gets SIGPIPE, and a new relay (a second later) picks up where the last stopped. When the relay
 * cannot start, the service writes to the console directly, without the prefix.
 *
 * Restart policy, as systemd's Restart=on-failure: an exit with status 0, or death by SIGHUP, SIGINT, SIGTERM or
 * SIGPIPE, is final (so `kill PID` on the console stops it for good); any other end restarts it after 1 s, the
 * delay doubling to at most 30 s while it keeps failing within 30 s of its start. Its end never ends the VM; the
 * console's does, and then shutdown_all() sends it TERM, later KILL, like every other process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"

#define FIRST_DELAY_S 1
#define MAX_DELAY_S 30
#define STEADY_S 30 /* a run this long was a success: the next failure restarts after FIRST_DELAY_S again */

static const char *name_of(const struct service *sv)
{
	return sv->p.argv[0];
}

/* Starts the relay on sv->rd; 0 when it runs (the exec succeeded), -1 with errno when not. */
static int start_relay(struct service *sv)
{
	int report[2];
	if (pipe2(report, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		static char *argv[] = { "img2vm-relay", "--relay", SERVICE_PREFIX, NULL };
		static char *envp[] = { NULL };
		close(report[0]);
		reset_signals();
		setsid();
		dup2(sv->rd, 0);
		execve("/proc/self/exe", argv, envp);
		int e = errno;
		write_all(report[1], (const char *)&e, sizeof e);
		_exit(127);
	}
	close(report[1]);
	int e = 0;
	ssize_t n = pid < 0 ? -1 : read(report[0], &e, sizeof e);
	int saved = pid < 0 ? errno : e;
	close(report[0]);
	if (pid < 0 || n > 0) {
		if (pid > 0)
			waitpid(pid, NULL, 0);
		errno = saved;
		return -1;
	}
	sv->relay = pid;
	return 0;
}

static void start(struct service *sv)
{
	sv->started = uptime();
	sv->due = 0;
	sv->pid = spawn(&sv->p);
	if (sv->pid > 0) {
		say("service %s started (pid %d)", name_of(sv), (int)sv->pid);
		return;
	}
	sv->pid = 0;
	int e = errno, secs = restart_after(1 << 8, 0, &sv->delay); /* as a failed run */
	say("service %s: fork: %s; trying again in %d s", name_of(sv), strerror(e), secs);
	sv->due = sv->started + secs;
}

void service_start(struct service *sv, const struct spec *s, const char *hostname)
{
	char err[256];
	memset(sv, 0, sizeof *sv);
	sv->rd = sv->wr = -1;
	sv->delay = FIRST_DELAY_S;
	if (resolve_user("", s->user, &sv->p.ids, err, sizeof err) < 0) {
		say("service: user %s: %s; the service does not start", s->user, err);
		return;
	}
	if (child_env(s, hostname, &sv->p, 0) < 0)
		return;
	sv->p.argv = s->service.v;
	sv->p.cwd = s->cwd;
	struct stat st;
	if (stat(s->cwd, &st) < 0 && errno == ENOENT)
		mkdir_p(s->cwd, 0755); /* as runc does for a WorkingDir the image lacks */
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) == 0) {
		sv->rd = fds[0], sv->wr = fds[1];
		if (start_relay(sv) < 0) {
			warn("service: the output relay did not start (%s): its output goes to the console unprefixed",
			     strerror(errno));
			close(sv->rd), close(sv->wr);
			sv->rd = sv->wr = -1;
		}
	}
	if (sv->wr < 0)
		sv->wr = fcntl(2, F_DUPFD_CLOEXEC, 3);
	sv->p.out_fd = sv->wr;
	start(sv);
}

/* The restart policy: -1 when the end (a wait status) is final, else the seconds to wait; *delay is the backoff. */
int restart_after(int st, double ran, int *delay)
{
	int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
	if ((WIFEXITED(st) && WEXITSTATUS(st) == 0) || sig == SIGHUP || sig == SIGINT || sig == SIGTERM || sig == SIGPIPE)
		return -1;
	if (ran >= STEADY_S || *delay < FIRST_DELAY_S)
		*delay = FIRST_DELAY_S;
	int now = *delay;
	*delay = now * 2 > MAX_DELAY_S ? MAX_DELAY_S : now * 2;
	return now;
}

void service_reaped(struct service *sv, pid_t pid, int st)
{
	double now = uptime();
	if (pid == sv->relay) {
		sv->relay = 0;
		if (sv->rd >= 0)
			sv->relay_due = now + 1;
		return;
	}
	if (pid != sv->pid)
		return;
	sv->pid = 0;
	char why[96];
	if (WIFEXITED(st))
		snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(st));
	else
		snprintf(why, sizeof why, "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	int secs = restart_after(st, now - sv->started, &sv->delay);
	if (secs < 0) {
		say("service %s %s: not restarted (status 0 and SIGHUP, SIGINT, SIGTERM, SIGPIPE are final)", name_of(sv),
		    why);
		return;
	}
	say("service %s %s: restarting in %d s", name_of(sv), why, secs);
	sv->due = now + secs;
}

/* Milliseconds until service_tick has something to do; -1 for nothing pending. */
int service_wait_ms(const struct service *sv)
{
	double next = 0;
	if (sv->due > 0)
		next = sv->due;
	if (sv->relay_due > 0 && (next == 0 || sv->relay_due < next))
		next = sv->relay_due;
	if (next == 0)
		return -1;
	double ms = (next - uptime()) * 1000;
	return ms <= 0 ? 0 : (int)ms + 1;
}

void service_tick(struct service *sv)
{
	double now = uptime();
	if (sv->relay_due > 0 && now >= sv->relay_due) {
		sv->relay_due = 0;
		if (start_relay(sv) < 0) { /* meanwhile the output waits in the pipe, and once it is full the service blocks */
			warn("service: restarting the output relay: %s; trying again in %d s", strerror(errno), MAX_DELAY_S);
			sv->relay_due = now + MAX_DELAY_S;
		}
	}
	if (sv->due > 0 && now >= sv->due)
		start(sv);
}

/* The console ended: no more restarts; PID 1 lets go of the pipe so the relay ends once the service has. */
void service_stop(struct service *sv)
{
	if (sv->pid > 0)
		say("the console ended: stopping service %s (pid %d)", name_of(sv), (int)sv->pid);
	sv->due = sv->relay_due = 0;
	if (sv->rd >= 0)
		close(sv->rd);
	if (sv->wr >= 0)
		close(sv->wr);
	sv->rd = sv->wr = -1;
}

/* Tool mode --restart-policy: for each END (exit=N/SECONDS or signal=N/SECONDS, how long the run lasted) of one
 * service in a row, "restart N" or "final". */
int restart_policy_main(int argc, char **argv)
{
	int delay = FIRST_DELAY_S;
	for (int i = 0; i < argc; i++) {
		unsigned n;
		double ran;
		char kind[8];
		if (sscanf(argv[i], "%7[a-z]=%u/%lf", kind, &n, &ran) != 3 || n > 255 ||
		    (strcmp(kind, "exit") && strcmp(kind, "signal")))
			fatal("usage: --restart-policy exit=N/SECONDS|signal=N/SECONDS...");
		int st = !strcmp(kind, "exit") ? (int)(n << 8) : (int)(n & 0x7f);
		int secs = restart_after(st, ran, &delay);
		if (secs < 0)
			printf("final\n");
		else
			printf("restart %d\n", secs);
	}
	return 0;
}

/*
 * The relay (tool mode --relay PREFIX): stdin to stdout, PREFIX at the start of every line, as bytes arrive (a
 * partial line is not held back). It outlives the TERM of the shutdown so the service's last words still reach
 * the console, and ends at end of input: when the service and PID 1 have let go of the pipe.
 */
int relay_main(const char *prefix)
{
	static char in[4096], out[16384];
	size_t plen = strnlen(prefix, 256), o = 0;
	int at_start = 1;
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN); /* a console that fails writes is skipped, never a reason to block the service */
	prctl(PR_SET_NAME, "img2vm-relay");
	for (;;) {
		ssize_t n = read(0, in, sizeof in);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		for (ssize_t i = 0; i < n; i++) {
			if (o + plen + 1 > sizeof out)
				write_all(1, out, o), o = 0;
			if (at_start)
				memcpy(out + o, prefix, plen), o += plen;
			out[o++] = in[i];
			at_start = in[i] == '\n';
		}
		write_all(1, out, o);
		o = 0;
	}
}
