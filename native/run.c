/* What the init runs once the root is in place: the image's own init, the workload, or a console; and the shutdown. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "init.h"

void reset_signals(void)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
}

static int executable(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

void run_image_init(const struct spec *s)
{
	char *dflt[] = { "/sbin/init", NULL };
	char *const *argv = s->argv.n ? s->argv.v : dflt;
	char *envp[260];
	int n = 0;
	envp[n++] = "HOME=/";
	envp[n++] = "TERM=linux";
	for (int i = 0; i < s->env.n && n < 259; i++)
		envp[n++] = s->env.v[i];
	envp[n] = NULL;
	say("handing over to the image's init %s (%.2f s since boot)", argv[0], uptime());
	reset_signals();
	execve(argv[0], argv, envp);
	fatal("exec the image's init %s: %s", argv[0], strerror(errno));
}

/* The console's real tty (the last of /sys/class/tty/console/active is /dev/console's): job control needs it. */
static void console_tty(char *out, size_t len)
{
	char *a = read_file("/sys/class/tty/console/active", 4096, NULL);
	snprintf(out, len, "/dev/console");
	if (!a)
		return;
	char *end = a + strlen(a);
	while (end > a && (end[-1] == '\n' || end[-1] == ' '))
		*--end = 0;
	char *last = strrchr(a, ' ');
	last = last ? last + 1 : a;
	if (*last && !strchr(last, '/'))
		snprintf(out, len, "/dev/%s", last);
	free(a);
}

static const char *env_get(char **env, int n, const char *name)
{
	size_t k = strlen(name);
	for (int i = 0; i < n; i++)
		if (!strncmp(env[i], name, k) && env[i][k] == '=')
			return env[i] + k + 1;
	return NULL;
}

/* execvpe with the workload's own PATH; exits 127 (not found) or 126 (found, not runnable) like a shell. */
static void exec_search(char **argv, char **envp, int envn) __attribute__((noreturn));
static void exec_search(char **argv, char **envp, int envn)
{
	const char *name = argv[0];
	int denied = 0, err = ENOENT;
	char found[4096] = "";
	if (!*name) {
		say("exec: empty command");
		_exit(127);
	}
	if (strchr(name, '/')) {
		execve(name, argv, envp);
		err = errno;
		snprintf(found, sizeof found, "%s", name);
	} else {
		const char *path = env_get(envp, envn, "PATH");
		char dir[4096];
		for (const char *p = path ? path : DEFAULT_PATH;; p++) {
			const char *c = strchr(p, ':');
			size_t n = c ? (size_t)(c - p) : strlen(p);
			if (n + strlen(name) + 2 < sizeof dir) {
				snprintf(dir, sizeof dir, "%.*s%s%s", (int)n, p, n ? "/" : "", name);
				execve(dir, argv, envp);
				if (errno != ENOENT && errno != ENOTDIR) {
					if (!denied)
						snprintf(found, sizeof found, "%s", dir);
					denied = 1, err = errno;
				}
			}
			if (!c)
				break;
			p = c;
		}
	}
	struct stat st;
	if (err == ENOENT && found[0] && stat(found, &st) == 0) {
		say("exec %s: its interpreter (the ELF loader or the #! line) is missing", found);
		_exit(127);
	}
	if (err == ENOENT) {
		say("exec %s: not found%s", name, strchr(name, '/') ? "" : " in PATH");
		_exit(127);
	}
	say("exec %s: %s", found[0] ? found : name, strerror(err));
	_exit(126);
}

/*
 * The workload's session leader stays behind it, holding the console, until the workload has ended and the tty
 * has sent what it wrote. Were the workload the leader, its exit would hang the tty up, and a hangup discards
 * what the serial port had not sent yet: a short program's whole output, under a slow emulator.
 */
static pid_t g_worker;

static void keeper_forward(int sig, siginfo_t *si, void *unused)
{
	(void)unused;
	/* What the init sends (kill) is passed on; ^C on the tty already reached the worker itself. */
	if (si->si_code == SI_USER || si->si_code == SI_QUEUE)
		kill(g_worker, sig);
}

static void keep_tty(pid_t worker)
{
	g_worker = worker;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = keeper_forward;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	int fwd[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };
	for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++)
		sigaction(fwd[i], &sa, NULL);
	signal(SIGTSTP, SIG_IGN);
	signal(SIGTTOU, SIG_IGN); /* tcdrain from the background when a shell gave the tty to a job */
	int st = 0;
	while (waitpid(worker, &st, 0) < 0 && errno == EINTR)
		;
	tcdrain(1);
	_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/*
 * The terminal a run config asks for, on the session's tty: with -t the host's window size (the host terminal is
 * raw, so the guest's line discipline is the one the workload sees, Ctrl-C included); without -t no echo, no line
 * editing (what -i sends arrives as sent) and, without -i, stdin /dev/null as docker gives it.
 */
static void run_terminal(const struct child_plan *p)
{
	struct termios t;
	if (p->tty == 1 && p->rows > 0 && p->cols > 0) {
		struct winsize ws = { .ws_row = (unsigned short)p->rows, .ws_col = (unsigned short)p->cols };
		ioctl(0, TIOCSWINSZ, &ws);
	}
	if (p->tty == 2 && tcgetattr(0, &t) == 0) {
		t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | IEXTEN);
		t.c_iflag &= ~(tcflag_t)(ICRNL | IXON);
		tcsetattr(0, TCSANOW, &t);
	}
	if (p->tty == 2) {
		/* -i: the host's input through its own port, byte for byte, with an end; else /dev/null, as docker gives */
		int in = p->interactive ? runcfg_stdin_port(10) : -1;
		if (in < 0)
			in = open("/dev/null", O_RDONLY);
		if (in > 0) {
			dup2(in, 0);
			close(in);
		}
	}
}

pid_t spawn(const struct child_plan *p)
{
	char tty[64];
	console_tty(tty, sizeof tty);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	reset_signals();
	setsid(); /* a getty takes the tty as its controlling terminal itself; it can only as a session leader */
	if (p->session) {
		int fd = open(tty, O_RDWR | O_NOCTTY);
		if (fd < 0)
			fd = open("/dev/console", O_RDWR | O_NOCTTY);
		if (fd >= 0) {
			if (ioctl(fd, TIOCSCTTY, 0) < 0)
				ioctl(fd, TIOCSCTTY, 1);
			for (int i = 0; i < 3; i++)
				dup2(fd, i);
			if (fd > 2)
				close(fd);
		}
		run_terminal(p);
		pid_t worker = fork();
		if (worker > 0)
			keep_tty(worker);
		if (worker < 0)
			say("fork for the workload: %s; it runs as the session leader", strerror(errno));
	} else if (p->out_fd >= 0) {
		int null = open("/dev/null", O_RDONLY);
		if (null > 0) {
			dup2(null, 0);
			close(null);
		}
		dup2(p->out_fd, 1);
		dup2(p->out_fd, 2);
	}
	if (setgroups((size_t)p->ids.ngroups, p->ids.groups) < 0 || setgid(p->ids.gid) < 0 || setuid(p->ids.uid) < 0) {
		say("switching to uid %u gid %u: %s", (unsigned)p->ids.uid, (unsigned)p->ids.gid, strerror(errno));
		_exit(126);
	}
	if (chdir(p->cwd) < 0) {
		say("chdir %s: %s", p->cwd, strerror(errno));
		_exit(126);
	}
	exec_search(p->argv, p->envp, p->envn);
}

/* Reaps every child (the service's end goes to sv); returns 1 when main ended, with its status as a shell
 * reports it (128+N for signal N). */
static int reap(pid_t main, int *status, struct service *sv)
{
	int st, done = 0;
	pid_t r;
	while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
		if (r == main) {
			done = 1;
			*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		} else if (sv) {
			service_reaped(sv, r, st);
		}
	}
	return done;
}

static int supervise(pid_t pid, struct service *sv)
{
	sigset_t set;
	sigemptyset(&set);
	int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGPWR };
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaddset(&set, sigs[i]);
	int status = 0;
	for (;;) {
		int ms = 1000, due = sv ? service_wait_ms(sv) : -1;
		if (due >= 0 && due < ms)
			ms = due;
		struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
		int sig = sigtimedwait(&set, NULL, &ts);
		if (reap(pid, &status, sv))
			return status;
		if (sv)
			service_tick(sv);
		if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP)
			kill(pid, sig);
		else if (sig == SIGUSR1 || sig == SIGUSR2 || sig == SIGPWR) /* busybox halt/poweroff, power button */
			kill(pid, SIGTERM);
	}
}

/* Sets name=value unless the environment already has name (the image's Env wins). */
void add_env(struct child_plan *p, const char *name, const char *value)
{
	if (env_get(p->envp, p->envn, name) || p->envn >= p->envcap)
		return;
	size_t len = strlen(name) + strlen(value) + 2;
	char *e = malloc(len);
	if (!e)
		return;
	snprintf(e, len, "%s=%s", name, value);
	p->envp[p->envn++] = e;
}

/* The image's Env, then what docker adds when it is missing (PATH, HOSTNAME, HOME of p->ids), and room for extra. */
int child_env(const struct spec *s, const char *hostname, struct child_plan *p, int extra)
{
	p->envcap = s->env.n + 3 + extra;
	p->envn = 0;
	p->envp = calloc((size_t)p->envcap + 1, sizeof(char *));
	if (!p->envp)
		return -1;
	for (int i = 0; i < s->env.n; i++)
		p->envp[p->envn++] = s->env.v[i];
	add_env(p, "PATH", DEFAULT_PATH);
	add_env(p, "HOSTNAME", hostname);
	add_env(p, "HOME", p->ids.home);
	return 0;
}

static const char *find_first(const char *const *cands)
{
	for (; *cands; cands++)
		if (executable(*cands))
			return *cands;
	return NULL;
}

/*
 * Runs the workload (or the console) as a child of PID 1 and returns its exit status; 126 when it cannot start.
 * With a service, the image's User and WorkingDir are the service's: the console is root's, in /, with the Env.
 */
int run_workload(const struct spec *s, const char *hostname)
{
	struct child_plan p;
	struct service sv;
	char err[256], tty[64];
	int with_service = s->mode == MODE_CONSOLE && s->service.n > 0;
	const char *user = with_service ? "0" : s->user;
	memset(&p, 0, sizeof p);
	p.out_fd = -1;
	if (resolve_user("", user, &p.ids, err, sizeof err) < 0) {
		say("user %s: %s", user, err);
		return 126;
	}
	if (child_env(s, hostname, &p, 1) < 0)
		return 126;
	p.cwd = with_service ? "/" : s->cwd;
	p.argv = s->argv.v;
	p.session = 1;
	p.tty = s->tty, p.interactive = s->interactive, p.rows = s->rows, p.cols = s->cols;
	if (s->mode == MODE_CONSOLE) {
		static const char *gettys[] = { "/sbin/agetty", "/usr/sbin/agetty", "/sbin/getty", "/usr/sbin/getty", NULL };
		static const char *logins[] = { "/bin/login", "/usr/bin/login", NULL };
		static const char *shells[] = { "/bin/bash", "/bin/sh", NULL };
		const char *getty = find_first(gettys);
		add_env(&p, "TERM", "vt220");
		if (s->login && getty && find_first(logins)) {
			static char *gargv[6];
			console_tty(tty, sizeof tty);
			gargv[0] = (char *)getty, gargv[1] = "-L", gargv[2] = tty + 5, gargv[3] = "115200", gargv[4] = "vt220";
			p.argv = gargv, p.session = 0, p.cwd = "/";
			memset(&p.ids, 0, sizeof p.ids);
		} else if (s->argv.n == 0) {
			static char *sargv[2];
			const char *sh = p.ids.shell[0] && executable(p.ids.shell) ? p.ids.shell : find_first(shells);
			if (!sh)
				fatal("console: the image has no shell (%s's shell, /bin/bash, /bin/sh)", p.ids.name[0] ? p.ids.name : "root");
			sargv[0] = (char *)sh;
			p.argv = sargv;
		}
		if (s->login && !(getty && find_first(logins)))
			warn("console: the image has no getty and login: starting a shell without a password");
	}
	if (chdir(p.cwd) < 0 && errno == ENOENT)
		mkdir_p(p.cwd, 0755); /* as runc does for a WorkingDir the image lacks */
	chdir("/");
	if (with_service)
		service_start(&sv, s, hostname);
	say("starting %s (%.2f s since boot)", p.argv[0], uptime());
	if (s->tty == 1 && p.session) {
		console_tty(tty, sizeof tty);
		runcfg_winsize_relay(tty);
	}
	pid_t pid = spawn(&p);
	int status = 126;
	if (pid < 0)
		say("fork: %s", strerror(errno));
	else
		status = supervise(pid, with_service ? &sv : NULL);
	if (with_service)
		service_stop(&sv);
	return status;
}

/* Reaps until no child is left or ms passed. */
static void drain(int ms)
{
	double end = uptime() + ms / 1000.0;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	while (uptime() < end) {
		pid_t r;
		while ((r = waitpid(-1, NULL, WNOHANG)) > 0) {
		}
		if (r < 0 && errno == ECHILD)
			return;
		struct timespec ts = { 0, 100000000L };
		sigtimedwait(&set, NULL, &ts);
	}
}

static void unescape_mount(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

/* Everything left gets TERM, 5 s, then KILL; then the disks are synced and remounted read-only. */
void shutdown_all(void)
{
	kill(-1, SIGTERM);
	drain(5000);
	kill(-1, SIGKILL);
	drain(2000);
	sync();
	size_t len;
	char *m = read_file("/proc/self/mounts", 1 << 20, &len);
	if (!m)
		return;
	char *lines[512];
	int n = 0;
	for (char *save = NULL, *l = strtok_r(m, "\n", &save); l && n < 512; l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	static const char *skip[] = { "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "cgroup2", "mqueue", "ramfs",
				      "rootfs", NULL };
	while (n-- > 0) {
		char dev[512], dir[512], type[64];
		if (sscanf(lines[n], "%511s %511s %63s", dev, dir, type) != 3)
			continue;
		int virt = 0;
		for (int i = 0; skip[i]; i++)
			virt |= !strcmp(type, skip[i]);
		if (virt)
			continue;
		unescape_mount(dir);
		if (mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
			warn("remount %s read-only: %s", dir, strerror(errno));
	}
	free(m);
	sync();
}
