/* Parses the kernel command line for the init: only img2vm.* and ip= (the kernel's nfsroot syntax); the rest is ignored. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "init.h"

int ipv4_parse(const char *s, uint32_t *out)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return -1;
	*out = a.s_addr;
	return 0;
}

void ipv4_format(uint32_t a, char out[16])
{
	struct in_addr in = { a };
	inet_ntop(AF_INET, &in, out, 16);
}

/*
 * ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF:DNS0:DNS1:NTP, every field optional
 * (Documentation/admin-guide/nfs/nfsroot.rst). A bare ip=dhcp / on / any / off / none is the autoconf
 * field alone. NETMASK may also be a prefix length. Returns -1 when a field is malformed.
 */
int ip_parse(const char *value, struct ipconf *ip)
{
	char buf[512];
	char *field[10] = { 0 };
	memset(ip, 0, sizeof *ip);
	ip->present = 1;
	if (strlen(value) >= sizeof buf)
		return -1;
	strcpy(buf, value);
	if (!strchr(buf, ':')) {
		if (!strcmp(buf, "off") || !strcmp(buf, "none"))
			ip->off = 1;
		else if (!strcmp(buf, "dhcp") || !strcmp(buf, "on") || !strcmp(buf, "any") || !strcmp(buf, "both") ||
			 !strcmp(buf, "bootp") || !strcmp(buf, "rarp") || !strcmp(buf, ""))
			ip->dhcp = 1;
		else if (ipv4_parse(buf, &ip->client) == 0)
			; /* a lone client address: static, no gateway */
		else
			return -1;
		if (!ip->off && !ip->client)
			ip->dhcp = 1;
		goto mask;
	}
	char *p = buf;
	for (int i = 0; i < 10 && p; i++) {
		field[i] = p;
		p = strchr(p, ':');
		if (p)
			*p++ = 0;
	}
	if (field[0] && *field[0] && ipv4_parse(field[0], &ip->client) < 0)
		return -1;
	if (field[2] && *field[2] && ipv4_parse(field[2], &ip->gateway) < 0)
		return -1;
	if (field[3] && *field[3]) {
		unsigned long bits;
		if (parse_uint(field[3], 32, &bits) == 0)
			ip->netmask = bits == 0 ? 0 : htonl(0xffffffffu << (32 - bits));
		else if (ipv4_parse(field[3], &ip->netmask) < 0)
			return -1;
	}
	if (field[4]) {
		if (strlen(field[4]) >= sizeof ip->host)
			return -1;
		strcpy(ip->host, field[4]);
	}
	if (field[5]) {
		if (strlen(field[5]) >= sizeof ip->iface)
			return -1;
		strcpy(ip->iface, field[5]);
	}
	const char *autoconf = field[6] ? field[6] : "";
	if (field[7] && *field[7] && ipv4_parse(field[7], &ip->dns[0]) < 0)
		return -1;
	if (field[8] && *field[8] && ipv4_parse(field[8], &ip->dns[1]) < 0)
		return -1;
	if (!strcmp(autoconf, "off") || !strcmp(autoconf, "none"))
		ip->dhcp = 0;
	else if (!*autoconf || !strcmp(autoconf, "dhcp") || !strcmp(autoconf, "on") || !strcmp(autoconf, "any") ||
		 !strcmp(autoconf, "both") || !strcmp(autoconf, "bootp") || !strcmp(autoconf, "rarp"))
		ip->dhcp = ip->client == 0;
	else
		return -1;
	if (!ip->client && !ip->dhcp)
		ip->off = 1;
mask:
	if (ip->client && !ip->netmask) {
		/* The kernel's default: the classful mask of the address. */
		uint32_t h = ntohl(ip->client);
		ip->netmask = htonl(h < 0x80000000u ? 0xff000000u : h < 0xc0000000u ? 0xffff0000u : 0xffffff00u);
	}
	return 0;
}

static void apply(struct cmdline *c, const char *key, const char *val)
{
	unsigned long n;
	if (!strcmp(key, "img2vm.halt")) {
		if (!strcmp(val, "poweroff"))
			c->halt = HALT_POWEROFF;
		else if (!strcmp(val, "reboot"))
			c->halt = HALT_REBOOT;
		else if (!strcmp(val, "halt"))
			c->halt = HALT_HALT;
		else
			warn("ignoring img2vm.halt=%s (poweroff, reboot or halt)", val);
	} else if (!strcmp(key, "img2vm.rootwait")) {
		if (parse_uint(val, 3600, &n) == 0)
			c->root_wait = (int)n;
		else
			warn("ignoring img2vm.rootwait=%s (seconds, at most 3600)", val);
	} else if (!strcmp(key, "img2vm.dhcp_timeout")) {
		if (parse_uint(val, 600, &n) == 0)
			c->dhcp_timeout = (int)n;
		else
			warn("ignoring img2vm.dhcp_timeout=%s (seconds, at most 600)", val);
	} else if (!strcmp(key, "img2vm.hostname")) {
		c->hostname = val;
	} else if (!strcmp(key, "img2vm.run")) {
		c->run = strcmp(val, "0") != 0;
	} else if (!strcmp(key, "img2vm.nonce")) {
		c->nonce = val;
	} else if (!strcmp(key, "ip")) {
		if (ip_parse(val, &c->ip) < 0) {
			warn("ignoring malformed ip=%s", val);
			memset(&c->ip, 0, sizeof c->ip);
		}
	} else if (!strncmp(key, "img2vm.", 7)) {
		warn("ignoring unknown kernel parameter %s", key);
	}
}

/* Splits like the kernel does: spaces separate, double quotes group (and are dropped). Keeps pointers into a copy. */
void cmdline_parse(const char *text, struct cmdline *c)
{
	memset(c, 0, sizeof *c);
	c->halt = HALT_POWEROFF;
	c->root_wait = -1;
	c->dhcp_timeout = 10;
	char *buf = strdup(text ? text : "");
	if (!buf)
		return;
	char *r = buf, *w = buf;
	while (*r) {
		while (*r == ' ' || *r == '\n' || *r == '\t')
			r++;
		if (!*r)
			break;
		char *tok = w;
		int quoted = 0;
		while (*r && (quoted || (*r != ' ' && *r != '\n' && *r != '\t'))) {
			if (*r == '"')
				quoted = !quoted;
			else
				*w++ = *r;
			r++;
		}
		if (*r)
			r++;
		*w++ = 0;
		char *eq = strchr(tok, '=');
		if (eq) {
			*eq = 0;
			apply(c, tok, eq + 1);
		} else if (!strncmp(tok, "img2vm.", 7)) {
			apply(c, tok, "");
		}
	}
	/* buf stays allocated: hostname points into it for the life of PID 1. */
}
