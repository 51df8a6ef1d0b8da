/* A minimal DHCPv4 client (DISCOVER, OFFER, REQUEST, ACK) for the init. */

/*
 * It runs on every interface at once over AF_PACKET sockets: an interface without an address cannot use an ordinary
 * UDP socket to hear replies addressed to the offered address. Replies come from the network, so every length is checked. No lease renewal: VMs of img2vm are
 * short-lived, and QEMU's user network leases for a day.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "init.h"

enum { MSG_DISCOVER = 1, MSG_OFFER = 2, MSG_REQUEST = 3, MSG_ACK = 5, MSG_NAK = 6 };
#define BOOTP_LEN 236
#define COOKIE 0x63825363u

struct client {
	int fd, ifindex, state; /* state: 0 discovering, 1 requesting, 2 bound, -1 unusable */
	uint8_t mac[6];
	uint32_t xid, offered, server;
	double next;
	int interval;
};

static uint16_t csum(const uint8_t *p, size_t n)
{
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)(p[n - 1] << 8);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void put32(uint8_t *p, uint32_t v) /* v in network order already */
{
	memcpy(p, &v, 4);
}

/* Builds IPv4 + UDP + BOOTP with options in pkt; returns its length. */
static size_t build(uint8_t *pkt, const struct client *c, int type, const char *hostname)
{
	uint8_t *ip = pkt, *udp = pkt + 20, *b = pkt + 28, *o = b + BOOTP_LEN;
	memset(pkt, 0, 28 + BOOTP_LEN + 312);
	b[0] = 1; /* BOOTREQUEST */
	b[1] = 1; /* Ethernet */
	b[2] = 6;
	uint32_t xid = htonl(c->xid);
	memcpy(b + 4, &xid, 4);
	b[10] = 0x80; /* broadcast flag: we cannot receive unicast before we have the address */
	memcpy(b + 28, c->mac, 6);
	uint32_t cookie = htonl(COOKIE);
	memcpy(o, &cookie, 4);
	o += 4;
	*o++ = 53, *o++ = 1, *o++ = (uint8_t)type;
	*o++ = 61, *o++ = 7, *o++ = 1;
	memcpy(o, c->mac, 6), o += 6;
	if (type == MSG_REQUEST) {
		*o++ = 50, *o++ = 4, put32(o, c->offered), o += 4;
		*o++ = 54, *o++ = 4, put32(o, c->server), o += 4;
	}
	if (hostname && *hostname) {
		size_t n = strlen(hostname) > 63 ? 63 : strlen(hostname);
		*o++ = 12, *o++ = (uint8_t)n;
		memcpy(o, hostname, n), o += n;
	}
	static const uint8_t want[] = { 1, 3, 6, 12, 15, 26, 51, 54 };
	*o++ = 55, *o++ = sizeof want;
	memcpy(o, want, sizeof want), o += sizeof want;
	*o++ = 255;
	size_t blen = (size_t)(o - b);
	if (blen < 300)
		blen = 300; /* some servers ignore BOOTP messages shorter than RFC 951's 300 bytes */
	size_t total = 28 + blen;
	ip[0] = 0x45;
	ip[2] = (uint8_t)(total >> 8), ip[3] = (uint8_t)total;
	ip[8] = 64, ip[9] = 17;
	memset(ip + 16, 0xff, 4);
	uint16_t ck = csum(ip, 20);
	ip[10] = (uint8_t)(ck >> 8), ip[11] = (uint8_t)ck;
	udp[1] = 68, udp[3] = 67;
	udp[4] = (uint8_t)((8 + blen) >> 8), udp[5] = (uint8_t)(8 + blen);
	return total;
}

static uint32_t classful(uint32_t a)
{
	uint32_t h = ntohl(a);
	return htonl(h < 0x80000000u ? 0xff000000u : h < 0xc0000000u ? 0xffff0000u : 0xffffff00u);
}

/* Parses one IPv4 packet as a reply to our xid and MAC; 0 with type and lease filled, -1 when it is not one. */
int dhcp_parse_reply(const uint8_t *p, size_t len, uint32_t xid, const uint8_t mac[6], int *type, struct lease *l)
{
	if (len < 20 || (p[0] >> 4) != 4 || p[9] != 17)
		return -1;
	size_t ihl = (size_t)(p[0] & 15) * 4, tot = (size_t)(p[2] << 8 | p[3]);
	if (ihl < 20 || tot < ihl + 8 || tot > len)
		return -1;
	const uint8_t *u = p + ihl;
	size_t ulen = (size_t)(u[4] << 8 | u[5]);
	if (u[2] != 0 || u[3] != 68 || ulen < 8 || ulen > tot - ihl)
		return -1;
	const uint8_t *b = u + 8;
	size_t blen = ulen - 8;
	uint32_t x;
	memcpy(&x, b + 4, 4);
	if (blen < BOOTP_LEN + 4 || b[0] != 2 || ntohl(x) != xid || memcmp(b + 28, mac, 6))
		return -1;
	uint32_t cookie;
	memcpy(&cookie, b + BOOTP_LEN, 4);
	if (ntohl(cookie) != COOKIE)
		return -1;
	memset(l, 0, sizeof *l);
	memcpy(&l->addr, b + 16, 4);
	*type = 0;
	const uint8_t *o = b + BOOTP_LEN + 4, *end = b + blen;
	while (o < end && *o != 255) {
		if (*o == 0) {
			o++;
			continue;
		}
		if (end - o < 2 || end - o < 2 + o[1])
			return -1;
		uint8_t code = o[0], n = o[1];
		const uint8_t *v = o + 2;
		if (code == 53 && n >= 1)
			*type = v[0];
		else if (code == 1 && n == 4)
			memcpy(&l->mask, v, 4);
		else if (code == 3 && n >= 4)
			memcpy(&l->router, v, 4);
		else if (code == 54 && n == 4)
			memcpy(&l->server, v, 4);
		else if (code == 26 && n == 2)
			l->mtu = v[0] << 8 | v[1];
		else if (code == 6)
			for (int i = 0; i + 4 <= n && l->ndns < 3; i += 4)
				memcpy(&l->dns[l->ndns++], v + i, 4);
		o += 2 + n;
	}
	if (!*type)
		return -1;
	if (!l->mask)
		l->mask = classful(l->addr);
	return 0;
}

static int open_client(struct client *c, const char *ifname)
{
	struct ifreq r;
	memset(c, 0, sizeof *c);
	c->state = -1;
	if (if_up(ifname) < 0)
		return -1;
	c->fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_IP));
	if (c->fd < 0)
		return -1;
	memset(&r, 0, sizeof r);
	snprintf(r.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(c->fd, SIOCGIFHWADDR, &r) < 0) {
		close(c->fd);
		return -1;
	}
	memcpy(c->mac, r.ifr_hwaddr.sa_data, 6);
	if (ioctl(c->fd, SIOCGIFINDEX, &r) < 0) { /* ifr_ifindex shares the union with the address */
		close(c->fd);
		return -1;
	}
	c->ifindex = r.ifr_ifindex;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = c->ifindex };
	if (bind(c->fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
		close(c->fd);
		return -1;
	}
	char hex[9];
	random_hex(hex, 4);
	sscanf(hex, "%8x", &c->xid);
	c->state = 0;
	c->interval = 1;
	return 0;
}

static void send_msg(struct client *c, int type, const char *hostname)
{
	uint8_t pkt[28 + BOOTP_LEN + 312];
	size_t n = build(pkt, c, type, hostname);
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = c->ifindex, .sll_halen = 6 };
	memset(to.sll_addr, 0xff, 6);
	sendto(c->fd, pkt, n, 0, (struct sockaddr *)&to, sizeof to);
}

/* Runs DHCP on nif interfaces for at most timeout_s; got[i] says whether leases[i] is filled. Returns the count. */
int dhcp_run(char ifnames[][16], int nif, int timeout_s, const char *hostname, struct lease *leases, int *got)
{
	struct client cl[8];
	struct pollfd pf[8];
	int bound = 0, live = 0;
	if (nif > 8)
		nif = 8;
	double start = uptime();
	for (int i = 0; i < nif; i++) {
		got[i] = 0;
		if (open_client(&cl[i], ifnames[i]) < 0)
			warn("%s: cannot start DHCP: %s", ifnames[i], strerror(errno));
		else
			live++, cl[i].next = start;
	}
	while (bound < live) {
		double now = uptime();
		if (now - start >= timeout_s)
			break;
		double wait = start + timeout_s - now;
		for (int i = 0; i < nif; i++) {
			struct client *c = &cl[i];
			if (c->state == 0 || c->state == 1) {
				if (now >= c->next) {
					send_msg(c, c->state == 0 ? MSG_DISCOVER : MSG_REQUEST, hostname);
					c->next = now + c->interval;
					if (c->interval < 4)
						c->interval *= 2;
				}
				if (c->next - now < wait)
					wait = c->next - now;
			}
			pf[i].fd = c->state == 0 || c->state == 1 ? c->fd : -1;
			pf[i].events = POLLIN;
		}
		if (poll(pf, (nfds_t)nif, (int)(wait * 1000) + 1) <= 0)
			continue;
		for (int i = 0; i < nif; i++) {
			struct client *c = &cl[i];
			if (pf[i].fd < 0 || !(pf[i].revents & POLLIN))
				continue;
			uint8_t buf[1600];
			ssize_t n;
			while ((n = recv(c->fd, buf, sizeof buf, 0)) > 0) {
				int type;
				struct lease l;
				if (dhcp_parse_reply(buf, (size_t)n, c->xid, c->mac, &type, &l) < 0)
					continue;
				if (c->state == 0 && type == MSG_OFFER && l.addr && l.server) {
					c->offered = l.addr, c->server = l.server, c->state = 1, c->interval = 1;
					c->next = uptime();
				} else if (c->state == 1 && type == MSG_ACK && l.addr) {
					leases[i] = l;
					got[i] = 1, c->state = 2, bound++;
					break;
				} else if (c->state == 1 && type == MSG_NAK) {
					c->state = 0, c->interval = 1, c->next = uptime();
				}
			}
		}
	}
	for (int i = 0; i < nif; i++)
		if (cl[i].state >= 0)
			close(cl[i].fd);
	return bound;
}
