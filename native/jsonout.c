/* JSON output of the parsers' results, for the tool modes the unit tests drive (spec and run config dumps). */
#include <stdio.h>

#include "init.h"

/* A string as JSON; bytes below 0x20 and from 0x7f as \u00XX (latin1), so any byte string round-trips. */
void json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

/* A string vector as a JSON array. */
void json_strv(const struct strv *v)
{
	putchar('[');
	for (int i = 0; i < v->n; i++) {
		if (i)
			putchar(',');
		json_str(v->v[i]);
	}
	putchar(']');
}
