/* Parser of the spec img2vm writes for its init (src/guest/init-spec.ts renders it). */

/*
 * Strict on purpose: the init and the spec always ship together in one initramfs, so anything unexpected is a bug
 * or corruption.
 *
 *   img2vm-init 4            magic and version, the first line (2 added service, 3 luks-uuid, 4 module-optional)
 *   KEY SP VALUE LF          KEY is [a-z0-9-]+; VALUE is the rest of the line, escaped:
 *                            \\ is a backslash, \n a newline, \xHH any byte but NUL; raw control bytes are refused
 *   end LF                   the last line, so a truncated file is noticed
 *
 * service (repeatable, console mode only) is the argv of a program run beside the console; env, cwd and user
 * are then its settings, and the console is root's (see service.c).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "init.h"

struct key {
	const char *name;
	int repeat;
};

static const struct key KEYS[] = {
	{ "mode", 0 },	   { "root-uuid", 0 }, { "root-fstype", 0 }, { "root-options", 0 }, { "root-wait", 0 },
	{ "hostname", 0 }, { "arg", 1 },       { "env", 1 },	     { "cwd", 0 },	    { "user", 0 },
	{ "login", 0 },	   { "module", 1 },    { "net", 0 },	     { "dns", 1 },	    { "tmp", 0 },
	{ "service", 1 },  { "luks-uuid", 0 }, { "module-optional", 1 },
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

int cfg_fail(char *err, size_t n, int line, const char *fmt, ...)
{
	va_list ap;
	int k = line > 0 ? snprintf(err, n, "line %d: ", line) : 0;
	va_start(ap, fmt);
	vsnprintf(err + k, n - (size_t)k, fmt, ap);
	va_end(ap);
	return -1;
}

int spec_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes in place (the result is never longer); returns NULL with a reason on a bad escape or byte. */
const char *spec_unescape(char *s, const char **why)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		unsigned char c = (unsigned char)*r;
		if (c < 0x20 || c == 0x7f) {
			*why = "raw control byte (must be escaped as \\xHH)";
			return NULL;
		}
		if (c != '\\') {
			*w++ = (char)c;
			continue;
		}
		r++;
		if (*r == '\\') {
			*w++ = '\\';
		} else if (*r == 'n') {
			*w++ = '\n';
		} else if (*r == 'x') {
			int h = *(r + 1) ? spec_hexval(r[1]) : -1, l = h >= 0 && r[2] ? spec_hexval(r[2]) : -1;
			if (h < 0 || l < 0) {
				*why = "\\x needs two hex digits";
				return NULL;
			}
			if (h == 0 && l == 0) {
				*why = "NUL byte (\\x00) is not allowed";
				return NULL;
			}
			*w++ = (char)(h * 16 + l);
			r += 2;
		} else {
			*why = "unknown escape (only \\\\, \\n and \\xHH)";
			return NULL;
		}
	}
	*w = 0;
	return s;
}

static int uuid_ok(const char *u)
{
	if (strlen(u) != 36)
		return 0;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (u[i] != '-')
				return 0;
		} else if (spec_hexval(u[i]) < 0) {
			return 0;
		}
	}
	return 1;
}

void strv_push(struct strv *v, char *s, int cap)
{
	if (!v->v)
		v->v = calloc((size_t)cap + 1, sizeof(char *));
	if (v->v)
		v->v[v->n++] = s;
}

static int set(struct spec *s, const char *k, char *v, int cap, char *err, size_t n, int line)
{
	unsigned long u;
	if (!strcmp(k, "mode")) {
		if (!strcmp(v, "init"))
			s->mode = MODE_INIT;
		else if (!strcmp(v, "workload"))
			s->mode = MODE_WORKLOAD;
		else if (!strcmp(v, "console"))
			s->mode = MODE_CONSOLE;
		else
			return cfg_fail(err, n, line, "mode must be init, workload or console, not \"%s\"", v);
	} else if (!strcmp(k, "root-uuid")) {
		if (!uuid_ok(v))
			return cfg_fail(err, n, line, "root-uuid \"%s\" is not a UUID", v);
		s->root_uuid = v;
	} else if (!strcmp(k, "luks-uuid")) {
		if (!uuid_ok(v))
			return cfg_fail(err, n, line, "luks-uuid \"%s\" is not a UUID", v);
		s->luks_uuid = v;
	} else if (!strcmp(k, "root-fstype")) {
		if (strcmp(v, "ext4") && strcmp(v, "ext3") && strcmp(v, "ext2"))
			return cfg_fail(err, n, line, "root-fstype must be ext4, ext3 or ext2, not \"%s\"", v);
		s->root_fstype = v;
	} else if (!strcmp(k, "root-options")) {
		s->root_options = v;
	} else if (!strcmp(k, "root-wait")) {
		if (parse_uint(v, 3600, &u) < 0)
			return cfg_fail(err, n, line, "root-wait must be seconds (0..3600), not \"%s\"", v);
		s->root_wait = (int)u;
	} else if (!strcmp(k, "hostname")) {
		if (!*v || strlen(v) > 64)
			return cfg_fail(err, n, line, "hostname must be 1..64 bytes");
		s->hostname = v;
	} else if (!strcmp(k, "arg")) {
		strv_push(&s->argv, v, cap);
	} else if (!strcmp(k, "service")) {
		strv_push(&s->service, v, cap);
	} else if (!strcmp(k, "env")) {
		if (!strchr(v, '=') || v[0] == '=')
			return cfg_fail(err, n, line, "env must be NAME=VALUE, not \"%s\"", v);
		strv_push(&s->env, v, cap);
	} else if (!strcmp(k, "cwd")) {
		if (v[0] != '/')
			return cfg_fail(err, n, line, "cwd must be an absolute path, not \"%s\"", v);
		s->cwd = v;
	} else if (!strcmp(k, "user")) {
		s->user = v;
	} else if (!strcmp(k, "login")) {
		if (strcmp(v, "yes") && strcmp(v, "no"))
			return cfg_fail(err, n, line, "login must be yes or no");
		s->login = !strcmp(v, "yes");
	} else if (!strcmp(k, "module")) {
		if (v[0] != '/')
			return cfg_fail(err, n, line, "module must be an absolute path in the initramfs, not \"%s\"", v);
		strv_push(&s->modules, v, cap);
	} else if (!strcmp(k, "module-optional")) {
		if (v[0] != '/')
			return cfg_fail(err, n, line, "module-optional must be an absolute path in the initramfs, not \"%s\"", v);
		strv_push(&s->optional_modules, v, cap);
	} else if (!strcmp(k, "net")) {
		if (!strcmp(v, "auto"))
			s->net = NET_AUTO;
		else if (!strcmp(v, "none"))
			s->net = NET_NONE;
		else
			return cfg_fail(err, n, line, "net must be auto or none, not \"%s\"", v);
	} else if (!strcmp(k, "dns")) {
		unsigned char a[16];
		if (inet_pton(AF_INET, v, a) != 1 && inet_pton(AF_INET6, v, a) != 1)
			return cfg_fail(err, n, line, "dns must be an IP address, not \"%s\"", v);
		strv_push(&s->dns, v, cap);
	} else if (!strcmp(k, "tmp")) {
		if (strcmp(v, "tmpfs") && strcmp(v, "image"))
			return cfg_fail(err, n, line, "tmp must be tmpfs or image");
		s->tmp_tmpfs = !strcmp(v, "tmpfs");
	}
	return 0;
}

/* Parses buf (len bytes; modified in place, values point into it). Returns 0, or -1 with err filled. */
int spec_parse(char *buf, size_t len, struct spec *s, char *err, size_t n)
{
	memset(s, 0, sizeof *s);
	s->root_fstype = "ext4";
	s->root_options = "rw";
	s->root_wait = 30;
	s->cwd = "/";
	s->user = "";
	s->tmp_tmpfs = 1;
	if (memchr(buf, 0, len))
		return cfg_fail(err, n, 0, "contains a NUL byte");
	if (len == 0 || buf[len - 1] != '\n')
		return cfg_fail(err, n, 0, "does not end with a newline (truncated?)");
	int cap = 0;
	for (size_t i = 0; i < len; i++)
		cap += buf[i] == '\n';
	char seen[NKEYS] = { 0 };
	int line = 0, ended = 0;
	for (char *p = buf; p < buf + len;) {
		char *nl = memchr(p, '\n', (size_t)(buf + len - p));
		*nl = 0;
		line++;
		char *cur = p;
		p = nl + 1;
		if (ended)
			return cfg_fail(err, n, line, "text after \"end\"");
		if (line == 1) {
			size_t m = strlen(SPEC_MAGIC);
			if (strncmp(cur, SPEC_MAGIC " ", m + 1))
				return cfg_fail(err, n, line, "not an img2vm init spec (the first line must be \"%s %d\")", SPEC_MAGIC,
					    SPEC_VERSION);
			unsigned long ver;
			if (parse_uint(cur + m + 1, 1000000, &ver) < 0)
				return cfg_fail(err, n, line, "malformed version \"%s\"", cur + m + 1);
			if (ver != SPEC_VERSION)
				return cfg_fail(err, n, line, "spec version %lu, this init reads version %d only", ver, SPEC_VERSION);
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
		const char *key = cur;
		size_t k;
		for (k = 0; k < NKEYS && strcmp(KEYS[k].name, key); k++) {
		}
		if (k == NKEYS) {
			for (const char *c = key; *c; c++)
				if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
					return cfg_fail(err, n, line, "malformed key");
			return cfg_fail(err, n, line, "unknown key \"%s\"", key);
		}
		if (seen[k] && !KEYS[k].repeat)
			return cfg_fail(err, n, line, "\"%s\" given twice", key);
		seen[k] = 1;
		const char *why = NULL;
		char *val = (char *)spec_unescape(sp + 1, &why);
		if (!val)
			return cfg_fail(err, n, line, "%s: %s", key, why);
		if (set(s, key, val, cap, err, n, line) < 0)
			return -1;
	}
	if (!ended)
		return cfg_fail(err, n, 0, "no \"end\" line (truncated?)");
	if (!seen[0]) /* KEYS[0] is mode */
		return cfg_fail(err, n, 0, "no mode");
	if (!s->root_uuid)
		return cfg_fail(err, n, 0, "no root-uuid");
	if (s->mode == MODE_WORKLOAD && s->argv.n == 0)
		return cfg_fail(err, n, 0, "mode workload needs at least one arg");
	if (s->service.n > 0 && s->mode != MODE_CONSOLE)
		return cfg_fail(err, n, 0, "service is for mode console only");
	if (s->service.n > 0 && !s->service.v[0][0])
		return cfg_fail(err, n, 0, "the service's program (its first service line) is empty");
	static char *none[1] = { NULL };
	struct strv *all[] = { &s->argv, &s->env, &s->modules, &s->optional_modules, &s->dns, &s->service };
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (!all[i]->v)
			all[i]->v = none;
	return 0;
}

/* One named list of the spec's JSON dump, after its first member (strings as json_str writes them). */
static void jlist(const char *name, const struct strv *v)
{
	printf(",\"%s\":", name);
	json_strv(v);
}

void spec_dump(const struct spec *s)
{
	static const char *modes[] = { "init", "workload", "console" };
	printf("{\"mode\":\"%s\",\"rootUuid\":", modes[s->mode]);
	json_str(s->root_uuid);
	printf(",\"luksUuid\":");
	if (s->luks_uuid)
		json_str(s->luks_uuid);
	else
		printf("null");
	printf(",\"rootFstype\":");
	json_str(s->root_fstype);
	printf(",\"rootOptions\":");
	json_str(s->root_options);
	printf(",\"rootWait\":%d,\"hostname\":", s->root_wait);
	if (s->hostname)
		json_str(s->hostname);
	else
		printf("null");
	jlist("argv", &s->argv);
	jlist("service", &s->service);
	jlist("env", &s->env);
	printf(",\"cwd\":");
	json_str(s->cwd);
	printf(",\"user\":");
	json_str(s->user);
	printf(",\"login\":%s", s->login ? "true" : "false");
	jlist("modules", &s->modules);
	jlist("optionalModules", &s->optional_modules);
	printf(",\"net\":\"%s\"", s->net == NET_AUTO ? "auto" : "none");
	jlist("dns", &s->dns);
	printf(",\"tmp\":\"%s\"}\n", s->tmp_tmpfs ? "tmpfs" : "image");
}
