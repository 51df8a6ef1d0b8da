/* The run config of `img2vm run IMAGE` (src/vm/run-config.ts writes it): per-run settings the cached disk never holds. */

/*
 * Why a disk: the converted disk is shared by every run of an image, so the command, environment, terminal and
 * volumes of one run must come from outside it. The kernel command line is capped at 2 KiB on x86 and firmware-less
 * microvm boots have no SMBIOS; fw_cfg needs qemu_fw_cfg, a module of Debian's cloud kernel. A read-only virtio disk
 * needs only virtio_blk, which the init loads for the root anyway, and works on q35 and microvm alike.
 *
 * The disk (serial "img2vm-run") holds this text from byte 0, then NUL bytes up to its end:
 *
 *   img2vm-run 1             magic and version
 *   arg VALUE                repeatable: the command, replacing the spec's (the host applied --entrypoint and CMD)
 *   env NAME=VALUE           repeatable: set, replacing the image's value of NAME
 *   cwd /PATH   user USER    the workload's directory and user
 *   tty yes|no   interactive yes|no   rows N   cols N
 *   volume ro|rw TAG PATH    repeatable: mount the virtio-fs share TAG at PATH
 *   end
 *
 * VALUEs are escaped as in the spec (spec.c). Strict for the same reason: img2vm writes it beside the boot.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "init.h"

static int yesno(const char *v, int *out)
{
	if (!strcmp(v, "yes"))
		return *out = 1, 0;
	if (!strcmp(v, "no"))
		return *out = 0, 0;
	return -1;
}

static int tag_ok(const char *t)
{
	if (!*t || strlen(t) > 36)
		return 0;
	for (; *t; t++)
		if (!((*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9') || *t == '-'))
			return 0;
	return 1;
}

static int rset(struct runcfg *r, const char *k, char *v, int cap, char *err, size_t n, int line)
{
	unsigned long u;
	int b;
	if (!strcmp(k, "arg")) {
		strv_push(&r->argv, v, cap);
	} else if (!strcmp(k, "env")) {
		if (!strchr(v, '=') || v[0] == '=')
			return cfg_fail(err, n, line, "env must be NAME=VALUE, not \"%s\"", v);
		strv_push(&r->env, v, cap);
	} else if (!strcmp(k, "cwd")) {
		if (v[0] != '/')
			return cfg_fail(err, n, line, "cwd must be an absolute path, not \"%s\"", v);
		r->cwd = v;
	} else if (!strcmp(k, "user")) {
		r->user = v;
	} else if (!strcmp(k, "tty") || !strcmp(k, "interactive")) {
		if (yesno(v, &b) < 0)
			return cfg_fail(err, n, line, "%s must be yes or no", k);
		if (k[0] == 't')
			r->tty = b ? 1 : 2;
		else
			r->interactive = b;
	} else if (!strcmp(k, "rows") || !strcmp(k, "cols")) {
		if (parse_uint(v, 10000, &u) < 0)
			return cfg_fail(err, n, line, "%s must be a number up to 10000, not \"%s\"", k, v);
		*(k[0] == 'r' ? &r->rows : &r->cols) = (int)u;
	} else if (!strcmp(k, "volume")) {
		char *tag = strchr(v, ' '), *path = tag ? strchr(tag + 1, ' ') : NULL;
		if (!path || r->nvol >= RUNCFG_MAX_VOLUMES)
			return cfg_fail(err, n, line, "volume must be \"ro|rw TAG PATH\" (at most %d)", RUNCFG_MAX_VOLUMES);
		*tag++ = 0, *path++ = 0;
		if ((strcmp(v, "ro") && strcmp(v, "rw")) || !tag_ok(tag) || path[0] != '/')
			return cfg_fail(err, n, line, "volume must be \"ro|rw TAG /PATH\"");
		r->vol[r->nvol++] = (struct volume){ tag, path, !strcmp(v, "ro") };
	} else {
		return cfg_fail(err, n, line, "unknown key \"%s\"", k);
	}
	return 0;
}

/* Parses buf (the text before the first NUL; modified in place). Returns 0, or -1 with err filled. */
int runcfg_parse(char *buf, size_t len, struct runcfg *r, char *err, size_t n)
{
	memset(r, 0, sizeof *r);
	char *nul = memchr(buf, 0, len);
	if (nul)
		len = (size_t)(nul - buf);
	if (len == 0 || buf[len - 1] != '\n')
		return cfg_fail(err, n, 0, "does not end with a newline (truncated?)");
	int cap = 0, line = 0, ended = 0;
	for (size_t i = 0; i < len; i++)
		cap += buf[i] == '\n';
	for (char *p = buf; p < buf + len;) {
		char *nl = memchr(p, '\n', (size_t)(buf + len - p)), *cur = p;
		*nl = 0;
		p = nl + 1;
		line++;
		if (ended)
			return cfg_fail(err, n, line, "text after \"end\"");
		if (line == 1) {
			char want[32];
			snprintf(want, sizeof want, "%s %d", RUNCFG_MAGIC, RUNCFG_VERSION);
			if (strcmp(cur, want))
				return cfg_fail(err, n, line, "not an img2vm run config (the first line must be \"%s\")", want);
			continue;
		}
		if (!strcmp(cur, "end")) {
			ended = 1;
			continue;
		}
		char *sp = strchr(cur, ' ');
		if (!sp)
			return cfg_fail(err, n, line, "malformed line (KEY VALUE expected)");
		*sp = 0;
		const char *why = NULL;
		char *val = (char *)spec_unescape(sp + 1, &why);
		if (!val)
			return cfg_fail(err, n, line, "%s: %s", cur, why);
		if (rset(r, cur, val, cap, err, n, line) < 0)
			return -1;
	}
	if (!ended)
		return cfg_fail(err, n, 0, "no \"end\" line (truncated?)");
	static char *none[1] = { NULL };
	if (!r->argv.v)
		r->argv.v = none;
	if (!r->env.v)
		r->env.v = none;
	r->present = 1;
	return 0;
}

/* The vd* block device whose virtio serial is RUNCFG_SERIAL, as /dev/NAME; 0 when there is none (yet). */
static int find_disk(char *out, size_t len)
{
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	int found = 0;
	while (d && !found && (e = readdir(d))) {
		char p[300];
		if (strncmp(e->d_name, "vd", 2))
			continue;
		snprintf(p, sizeof p, "/sys/block/%s/serial", e->d_name);
		char *serial = read_file(p, 256, NULL);
		if (serial && !strncmp(serial, RUNCFG_SERIAL, strlen(RUNCFG_SERIAL)) &&
		    (serial[strlen(RUNCFG_SERIAL)] == 0 || serial[strlen(RUNCFG_SERIAL)] == '\n'))
			found = snprintf(out, len, "/dev/%s", e->d_name) < (int)len;
		free(serial);
	}
	if (d)
		closedir(d);
	return found;
}

/* The /dev node of the virtio-serial port NAME, opened with flags; -1 when it does not come in wait_s seconds. */
static int open_port(const char *want, int flags, int wait_s)
{
	double start = uptime();
	for (;;) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char p[300], dev[300];
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
			char *name = read_file(p, 256, NULL);
			size_t k = strlen(want);
			int match = name && !strncmp(name, want, k) && (name[k] == 0 || name[k] == '\n');
			free(name);
			if (!match)
				continue;
			snprintf(dev, sizeof dev, "/dev/%s", e->d_name);
			closedir(d);
			int fd = open(dev, flags | O_CLOEXEC);
			if (fd < 0)
				say("port %s: %s", dev, strerror(errno));
			return fd;
		}
		if (d)
			closedir(d);
		if (uptime() - start >= wait_s)
			return -1;
		sleep_ms(50);
	}
}

/*
 * -i without -t: the workload's stdin is the virtio-serial port named RUNCFG_STDIN_PORT, which the host feeds and
 * closes at the end of its input (the guest then reads end of file). Returns an fd, or -1 (with a message).
 */
int runcfg_stdin_port(int wait_s)
{
	int fd = open_port(RUNCFG_STDIN_PORT, O_RDONLY, wait_s);
	if (fd < 0)
		say("no virtio-serial port %s: the workload's stdin is /dev/null", RUNCFG_STDIN_PORT);
	return fd;
}

/*
 * -t: a child of PID 1 that sets the console's window size from the host's "ROWS COLS" lines on the port
 * RUNCFG_WINSIZE_PORT; the tty itself then sends SIGWINCH to the workload's foreground process group.
 */
void runcfg_winsize_relay(const char *tty)
{
	pid_t pid = fork();
	if (pid != 0)
		return;
	reset_signals();
	int in = open_port(RUNCFG_WINSIZE_PORT, O_RDONLY, 10);
	int t = open(tty, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (in < 0 || t < 0)
		_exit(0);
	char buf[256];
	size_t n = 0;
	for (;;) {
		ssize_t r = read(in, buf + n, sizeof buf - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			_exit(0);
		n += (size_t)r;
		buf[n] = 0;
		char *nl;
		while ((nl = strchr(buf, '\n'))) {
			unsigned rows, cols;
			*nl = 0;
			if (sscanf(buf, "%u %u", &rows, &cols) == 2 && rows && cols && rows < 10000 && cols < 10000) {
				struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
				ioctl(t, TIOCSWINSZ, &ws);
			}
			n -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, n + 1);
		}
		if (n >= sizeof buf - 1)
			n = 0;
	}
}

/* Reads the run config disk the host attached (img2vm.run on the command line); fatal when it does not come. */
void runcfg_read(int wait_s, struct runcfg *r)
{
	char dev[300], err[512];
	size_t len;
	double start = uptime();
	while (!find_disk(dev, sizeof dev)) {
		if (uptime() - start >= wait_s)
			fatal("img2vm.run is set but no disk with serial %s appeared in %d s", RUNCFG_SERIAL, wait_s);
		sleep_ms(50);
	}
	char *buf = read_file(dev, RUNCFG_MAX_BYTES, &len);
	if (!buf)
		fatal("run config %s: %s", dev, errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
	if (runcfg_parse(buf, len, r, err, sizeof err) < 0)
		fatal("run config %s: %s", dev, err);
}

/* Sets NAME=VALUE in v (replacing NAME's entry, else appended); v->v has room for cap entries. */
static void env_set(struct strv *v, int cap, char *entry)
{
	size_t k = (size_t)(strchr(entry, '=') - entry) + 1;
	for (int i = 0; i < v->n; i++)
		if (!strncmp(v->v[i], entry, k)) {
			v->v[i] = entry;
			return;
		}
	if (v->n < cap)
		v->v[v->n++] = entry, v->v[v->n] = NULL;
}

/* docker run's precedence: what the run gives wins over the image's config the spec carries. */
void runcfg_apply(const struct runcfg *r, struct spec *s)
{
	if (!r->present)
		return;
	if (r->argv.n) {
		s->argv = r->argv;
		s->mode = MODE_WORKLOAD;
		s->service.n = 0;
	}
	if (r->env.n) {
		int cap = s->env.n + r->env.n;
		struct strv env = { calloc((size_t)cap + 1, sizeof(char *)), 0 };
		if (!env.v)
			fatal("out of memory");
		for (int i = 0; i < s->env.n; i++)
			env.v[env.n++] = s->env.v[i];
		for (int i = 0; i < r->env.n; i++)
			env_set(&env, cap, r->env.v[i]);
		s->env = env;
	}
	if (r->cwd)
		s->cwd = r->cwd;
	if (r->user)
		s->user = r->user;
	s->tty = r->tty;
	s->interactive = r->interactive;
	s->rows = r->rows;
	s->cols = r->cols;
}

/* Mounts each volume's virtio-fs share at its path (made when missing, as docker does). */
void runcfg_mount(const struct runcfg *r)
{
	for (int i = 0; i < r->nvol; i++) {
		const struct volume *v = &r->vol[i];
		if (mkdir_p(v->path, 0755) < 0 && errno != EEXIST)
			fatal("volume %s: cannot make the mount point: %s", v->path, strerror(errno));
		if (mount(v->tag, v->path, "virtiofs", MS_NOSUID | MS_NODEV | (v->ro ? MS_RDONLY : 0), NULL) < 0)
			fatal("volume %s: mount virtio-fs %s: %s", v->path, v->tag, strerror(errno));
	}
}

static void jlist(const char *name, const struct strv *v)
{
	printf("\"%s\":", name);
	json_strv(v);
	putchar(',');
}

/* JSON of a parsed run config, for the tool mode the unit tests drive. */
void runcfg_dump(const struct runcfg *r)
{
	putchar('{');
	jlist("argv", &r->argv);
	jlist("env", &r->env);
	printf("\"cwd\":");
	r->cwd ? json_str(r->cwd) : (void)printf("null");
	printf(",\"user\":");
	r->user ? json_str(r->user) : (void)printf("null");
	printf(",\"tty\":%d,\"interactive\":%d,\"rows\":%d,\"cols\":%d,\"volumes\":[", r->tty, r->interactive, r->rows,
	       r->cols);
	for (int i = 0; i < r->nvol; i++) {
		printf("%s{\"tag\":", i ? "," : "");
		json_str(r->vol[i].tag);
		printf(",\"path\":");
		json_str(r->vol[i].path);
		printf(",\"ro\":%s}", r->vol[i].ro ? "true" : "false");
	}
	printf("]}\n");
}
