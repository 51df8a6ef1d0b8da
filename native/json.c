/* A small JSON reader for the LUKS2 metadata: tokens of one document, looked up by key; no allocation per value. */

/*
 * The metadata comes from the disk, so the reader is strict and bounded: a fixed token budget, a nesting limit, and
 * every string or number handed out is copied into a caller's buffer of a known size. Strings keep their escapes
 * in the tokens; json_string() decodes the ones LUKS2 writers produce (\/ from json-c, \" \\ and \uXXXX below 0x80).
 */
#include <string.h>
#include <stdlib.h>

#include "init.h"

#define MAX_DEPTH 16

struct parser {
	const char *s;
	size_t len, at;
	struct jtok *t;
	int n, cap;
};

static void ws(struct parser *p)
{
	while (p->at < p->len && strchr(" \t\r\n", p->s[p->at]) && p->s[p->at])
		p->at++;
}

static int add(struct parser *p, enum jtype type, int parent)
{
	if (p->n >= p->cap)
		return -1;
	struct jtok *t = &p->t[p->n];
	t->type = type;
	t->start = p->at;
	t->end = p->at;
	t->parent = parent;
	t->next = p->n + 1;
	return p->n++;
}

static int value(struct parser *p, int parent, int depth);

static int string(struct parser *p, int parent)
{
	int i = add(p, J_STRING, parent);
	if (i < 0)
		return -1;
	p->at++; /* the opening quote */
	p->t[i].start = p->at;
	while (p->at < p->len && p->s[p->at] != '"') {
		if ((unsigned char)p->s[p->at] < 0x20)
			return -1;
		p->at += p->s[p->at] == '\\' ? 2 : 1;
	}
	if (p->at >= p->len)
		return -1;
	p->t[i].end = p->at++;
	p->t[i].next = p->n;
	return i;
}

static int container(struct parser *p, int parent, int depth, int object)
{
	int i = add(p, object ? J_OBJECT : J_ARRAY, parent);
	if (i < 0 || depth > MAX_DEPTH)
		return -1;
	p->at++;
	ws(p);
	if (p->at < p->len && p->s[p->at] == (object ? '}' : ']')) {
		p->at++;
		p->t[i].next = p->n;
		return i;
	}
	for (;;) {
		ws(p);
		if (object) {
			if (p->at >= p->len || p->s[p->at] != '"' || string(p, i) < 0)
				return -1;
			ws(p);
			if (p->at >= p->len || p->s[p->at++] != ':')
				return -1;
		}
		if (value(p, i, depth + 1) < 0)
			return -1;
		ws(p);
		if (p->at >= p->len)
			return -1;
		char c = p->s[p->at++];
		if (c == (object ? '}' : ']'))
			break;
		if (c != ',')
			return -1;
	}
	p->t[i].end = p->at;
	p->t[i].next = p->n;
	return i;
}

static int value(struct parser *p, int parent, int depth)
{
	ws(p);
	if (p->at >= p->len)
		return -1;
	char c = p->s[p->at];
	if (c == '{' || c == '[')
		return container(p, parent, depth, c == '{');
	if (c == '"')
		return string(p, parent);
	int i = add(p, J_PRIMITIVE, parent);
	if (i < 0)
		return -1;
	while (p->at < p->len && strchr("0123456789+-.eEtruefalsn", p->s[p->at]) && p->s[p->at])
		p->at++;
	if (p->at == p->t[i].start)
		return -1;
	p->t[i].end = p->at;
	p->t[i].next = p->n;
	return i;
}

/* Tokenizes a whole document (one object, then only NULs or white space). Returns the token count or -1. */
int json_parse(const char *s, size_t len, struct jtok *t, int cap)
{
	struct parser p = { s, strnlen(s, len), 0, t, 0, cap };
	ws(&p);
	if (p.at >= p.len || s[p.at] != '{' || value(&p, -1, 0) != 0)
		return -1;
	ws(&p);
	return p.at == p.len ? p.n : -1;
}

/* The value of key in the object at obj, or -1. */
int json_get(const char *s, const struct jtok *t, int obj, const char *key)
{
	if (obj < 0 || t[obj].type != J_OBJECT)
		return -1;
	size_t kl = strlen(key);
	for (int k = obj + 1; k < t[obj].next; k = t[k + 1].next) {
		if (t[k].end - t[k].start == kl && !memcmp(s + t[k].start, key, kl))
			return k + 1;
	}
	return -1;
}

/* The i-th member of an object or array: for an object the key's token (its value is the next), else the value. */
int json_child(const struct jtok *t, int c, int i)
{
	if (c < 0 || (t[c].type != J_OBJECT && t[c].type != J_ARRAY))
		return -1;
	for (int k = c + 1; k < t[c].next; i--) {
		if (i == 0)
			return k;
		k = t[c].type == J_OBJECT ? t[k + 1].next : t[k].next;
	}
	return -1;
}

/* Copies a string token, decoded, into out (NUL-ended); -1 when it is no string, does not fit, or holds NUL/non-ASCII. */
int json_string(const char *s, const struct jtok *t, int i, char *out, size_t outlen)
{
	if (i < 0 || t[i].type != J_STRING)
		return -1;
	size_t w = 0;
	for (size_t r = t[i].start; r < t[i].end; r++) {
		char c = s[r];
		if (c == '\\') {
			c = s[++r];
			if (c == 'u') {
				if (r + 4 >= t[i].end)
					return -1;
				int v = 0;
				for (int k = 1; k <= 4; k++) {
					int h = spec_hexval(s[r + k]);
					if (h < 0)
						return -1;
					v = v * 16 + h;
				}
				if (v == 0 || v >= 0x80)
					return -1;
				c = (char)v;
				r += 4;
			} else if (c == 'n') {
				c = '\n';
			} else if (c == 't') {
				c = '\t';
			} else if (c != '/' && c != '\\' && c != '"') {
				return -1;
			}
		}
		if (w + 1 >= outlen)
			return -1;
		out[w++] = c;
	}
	out[w] = 0;
	return 0;
}

/* A whole number: a JSON number, or a string of digits (LUKS2 writes 64-bit offsets and sizes as strings). */
int json_u64(const char *s, const struct jtok *t, int i, uint64_t *out)
{
	char buf[24];
	if (i < 0)
		return -1;
	if (t[i].type == J_STRING) {
		if (json_string(s, t, i, buf, sizeof buf) < 0)
			return -1;
	} else if (t[i].type == J_PRIMITIVE && t[i].end - t[i].start < sizeof buf) {
		memcpy(buf, s + t[i].start, t[i].end - t[i].start);
		buf[t[i].end - t[i].start] = 0;
	} else {
		return -1;
	}
	if (!buf[0] || strspn(buf, "0123456789") != strlen(buf) || strlen(buf) > 19)
		return -1;
	*out = strtoull(buf, NULL, 10);
	return 0;
}

/* Whether the string token at i equals want. */
int json_is(const char *s, const struct jtok *t, int i, const char *want)
{
	char buf[64];
	return json_string(s, t, i, buf, sizeof buf) == 0 && !strcmp(buf, want);
}
