/* Resolves an image's User (name, uid, name:group, uid:gid) through the image's own /etc/passwd and /etc/group. */

/*
 * As container runtimes do: no NSS, numeric ids need no entry, names must have one. The files are image content,
 * so lines and counts are bounded and malformed lines are skipped.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "init.h"

#define MAX_LINES 200000
#define MAX_ID 4294967294UL /* (uid_t)-1 means "no change" to setuid */

struct reader {
	FILE *f;
	char line[4096];
	int lines;
};

/* Next complete line split at ':' into at most max fields; lines too long for the buffer are skipped whole. */
static int next(struct reader *r, char **field, int max)
{
	while (r->f && r->lines++ < MAX_LINES && fgets(r->line, sizeof r->line, r->f)) {
		size_t n = strlen(r->line);
		if (n > 0 && r->line[n - 1] != '\n' && !feof(r->f)) {
			int c;
			while ((c = fgetc(r->f)) != EOF && c != '\n') {
			}
			continue;
		}
		if (n > 0 && r->line[n - 1] == '\n')
			r->line[--n] = 0;
		if (r->line[0] == '#' || r->line[0] == 0)
			continue;
		int k = 0;
		char *p = r->line;
		while (k < max) {
			field[k++] = p;
			p = strchr(p, ':');
			if (!p)
				break;
			*p++ = 0;
		}
		if (k == max)
			return k;
	}
	return 0;
}

static void open_db(struct reader *r, const char *root, const char *name)
{
	char p[512];
	snprintf(p, sizeof p, "%s/etc/%s", root, name);
	r->f = fopen(p, "re");
	r->lines = 0;
}

static void close_db(struct reader *r)
{
	if (r->f)
		fclose(r->f);
}

static int numeric(const char *s, unsigned long *out)
{
	return parse_uint(s, MAX_ID, out) == 0 ? 1 : 0;
}

static int err_out(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int err_out(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	return -1;
}

static void add_group(struct ids *o, gid_t g)
{
	for (int i = 0; i < o->ngroups; i++)
		if (o->groups[i] == g)
			return;
	if (o->ngroups < (int)(sizeof o->groups / sizeof o->groups[0]))
		o->groups[o->ngroups++] = g;
}

int resolve_user(const char *root, const char *spec, struct ids *o, char *err, size_t errlen)
{
	char buf[512], *f[7];
	unsigned long v;
	struct reader r;
	memset(o, 0, sizeof *o);
	snprintf(o->home, sizeof o->home, "/");
	if (strlen(spec) >= sizeof buf)
		return err_out(err, errlen, "user \"%.40s...\" is too long", spec);
	strcpy(buf, spec);
	char *group = strchr(buf, ':');
	if (group)
		*group++ = 0;
	const char *user = buf[0] ? buf : "0";
	int by_uid = numeric(user, &v);
	if (by_uid)
		o->uid = (uid_t)v;
	int found = 0;
	open_db(&r, root, "passwd");
	while (!found && next(&r, f, 7) == 7) {
		unsigned long uid, gid;
		if (!numeric(f[2], &uid) || !numeric(f[3], &gid))
			continue;
		if (by_uid ? uid == v : !strcmp(f[0], user)) {
			found = 1;
			o->uid = (uid_t)uid;
			o->gid = (gid_t)gid;
			snprintf(o->name, sizeof o->name, "%s", f[0]);
			if (f[5][0])
				snprintf(o->home, sizeof o->home, "%s", f[5]);
			snprintf(o->shell, sizeof o->shell, "%s", f[6]);
		}
	}
	close_db(&r);
	if (!found && !by_uid)
		return err_out(err, errlen, "no user \"%s\" in the image's /etc/passwd", user);
	if (group && *group) {
		if (numeric(group, &v)) {
			o->gid = (gid_t)v;
		} else {
			int hit = 0;
			open_db(&r, root, "group");
			while (!hit && next(&r, f, 4) == 4) {
				unsigned long gid;
				if (!strcmp(f[0], group) && numeric(f[2], &gid))
					hit = 1, o->gid = (gid_t)gid;
			}
			close_db(&r);
			if (!hit)
				return err_out(err, errlen, "no group \"%s\" in the image's /etc/group", group);
		}
	}
	add_group(o, o->gid);
	if (o->name[0]) {
		open_db(&r, root, "group");
		while (next(&r, f, 4) == 4) {
			unsigned long gid;
			if (!numeric(f[2], &gid))
				continue;
			for (char *save = NULL, *m = strtok_r(f[3], ",", &save); m; m = strtok_r(NULL, ",", &save))
				if (!strcmp(m, o->name))
					add_group(o, (gid_t)gid);
		}
		close_db(&r);
	}
	return 0;
}
