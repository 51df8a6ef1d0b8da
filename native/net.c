/* The init's network set-up: loopback, each Ethernet interface by DHCP or from ip=, and /etc/{resolv.conf,hosts,hostname}. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "init.h"

static int ctl(void)
{
	static int fd = -1;
	if (fd < 0)
		fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	return fd;
}

int if_up(const char *ifname)
{
	struct ifreq r;
	memset(&r, 0, sizeof r);
	snprintf(r.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(ctl(), SIOCGIFFLAGS, &r) < 0)
		return -1;
	r.ifr_flags |= IFF_UP;
	return ioctl(ctl(), SIOCSIFFLAGS, &r);
}

static void set_sin(struct sockaddr *sa, uint32_t a)
{
	struct sockaddr_in *s = (struct sockaddr_in *)sa;
	memset(s, 0, sizeof *s);
	s->sin_family = AF_INET;
	s->sin_addr.s_addr = a;
}

int if_set_addr(const char *ifname, uint32_t addr, uint32_t mask, int mtu)
{
	struct ifreq r;
	memset(&r, 0, sizeof r);
	snprintf(r.ifr_name, IFNAMSIZ, "%s", ifname);
	set_sin(&r.ifr_addr, addr);
	if (ioctl(ctl(), SIOCSIFADDR, &r) < 0)
		return -1;
	set_sin(&r.ifr_netmask, mask);
	if (ioctl(ctl(), SIOCSIFNETMASK, &r) < 0)
		return -1;
	set_sin(&r.ifr_broadaddr, addr | ~mask);
	ioctl(ctl(), SIOCSIFBRDADDR, &r);
	if (mtu >= 576 && mtu <= 65535) {
		r.ifr_mtu = mtu;
		ioctl(ctl(), SIOCSIFMTU, &r);
	}
	return if_up(ifname);
}

int route_add_default(const char *ifname, uint32_t gw)
{
	struct rtentry rt;
	char dev[IFNAMSIZ];
	memset(&rt, 0, sizeof rt);
	snprintf(dev, sizeof dev, "%s", ifname);
	set_sin(&rt.rt_dst, 0);
	set_sin(&rt.rt_genmask, 0);
	set_sin(&rt.rt_gateway, gw);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	rt.rt_dev = dev;
	return ioctl(ctl(), SIOCADDRT, &rt);
}

/* Ethernet interfaces backed by a device (virtio-net and the like), in name order. */
static int ethernets(char names[][16], int max)
{
	DIR *d = opendir("/sys/class/net");
	int n = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		char p[300], *type;
		struct stat st;
		if (e->d_name[0] == '.' || strlen(e->d_name) >= 16)
			continue;
		snprintf(p, sizeof p, "/sys/class/net/%s/type", e->d_name);
		type = read_file(p, 64, NULL);
		int ether = type && atoi(type) == 1;
		free(type);
		snprintf(p, sizeof p, "/sys/class/net/%s/device", e->d_name);
		if (ether && stat(p, &st) == 0)
			memcpy(names[n++], e->d_name, strlen(e->d_name) + 1); /* < 16, checked above */
	}
	closedir(d);
	for (int i = 1; i < n; i++) /* few entries: insertion sort */
		for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			char t[16];
			memcpy(t, names[j], 16);
			memcpy(names[j], names[j - 1], 16);
			memcpy(names[j - 1], t, 16);
		}
	return n;
}

static void add_dns(struct netinfo *ni, uint32_t a)
{
	for (int i = 0; i < ni->ndns; i++)
		if (ni->dns[i] == a)
			return;
	if (a && ni->ndns < 3)
		ni->dns[ni->ndns++] = a;
}

static void configure_static(const struct ipconf *ip, char ifs[][16], int nif, struct netinfo *ni)
{
	const char *ifname = ip->iface[0] ? ip->iface : nif > 0 ? ifs[0] : NULL;
	char a[16], m[16], g[16];
	if (!ifname) {
		warn("ip= names no interface and there is no Ethernet interface");
		return;
	}
	ipv4_format(ip->client, a);
	ipv4_format(ip->netmask, m);
	if (if_set_addr(ifname, ip->client, ip->netmask, 0) < 0) {
		warn("%s: setting %s/%s: %s", ifname, a, m, strerror(errno));
		return;
	}
	ni->addr = ip->client;
	if (ip->gateway && route_add_default(ifname, ip->gateway) < 0) {
		ipv4_format(ip->gateway, g);
		warn("%s: default route via %s: %s", ifname, g, strerror(errno));
	}
	add_dns(ni, ip->dns[0]);
	add_dns(ni, ip->dns[1]);
	say("%s: %s/%s (static, from ip=)", ifname, a, m);
}

/*
 * DHCP runs before the workload starts, in parallel on every interface and bounded (img2vm.dhcp_timeout,
 * default 10 s): a workload started without an address or resolv.conf fails in confusing ways, and with QEMU's
 * user network the lease takes milliseconds. No Ethernet interface (-nic none) means no wait at all.
 */
void net_setup(const struct spec *s, const struct cmdline *c, struct netinfo *ni)
{
	memset(ni, 0, sizeof *ni);
	if (if_up("lo") < 0)
		warn("lo: %s", strerror(errno));
	if (s->net == NET_NONE || (c->ip.present && c->ip.off))
		return;
	char ifs[8][16];
	int nif = ethernets(ifs, 8);
	if (c->ip.present && !c->ip.dhcp) {
		configure_static(&c->ip, ifs, nif, ni);
		return;
	}
	if (nif == 0)
		return;
	struct lease leases[8];
	int got[8] = { 0 };
	double t0 = uptime();
	dhcp_run(ifs, nif, c->dhcp_timeout, s->hostname, leases, got);
	int routed = 0;
	for (int i = 0; i < nif; i++) {
		char a[16], m[16];
		if (!got[i]) {
			warn("%s: no DHCP lease in %d s", ifs[i], c->dhcp_timeout);
			continue;
		}
		struct lease *l = &leases[i];
		ipv4_format(l->addr, a);
		ipv4_format(l->mask, m);
		if (if_set_addr(ifs[i], l->addr, l->mask, l->mtu) < 0) {
			warn("%s: setting %s/%s: %s", ifs[i], a, m, strerror(errno));
			continue;
		}
		if (!ni->addr)
			ni->addr = l->addr;
		if (l->router && !routed) {
			if (route_add_default(ifs[i], l->router) < 0)
				warn("%s: default route: %s", ifs[i], strerror(errno));
			else
				routed = 1;
		}
		for (int k = 0; k < l->ndns; k++)
			add_dns(ni, l->dns[k]);
		say("%s: %s/%s by DHCP in %.2f s", ifs[i], a, m, uptime() - t0);
	}
}

/*
 * Where the image's /etc/NAME should get our file: 1 = bind-mount over /etc/NAME (created empty as a mount point
 * when missing, as Docker does), 2 = write to redirect (the image's symlink points into /run, our fresh tmpfs),
 * 0 = leave the image alone. A symlink pointing anywhere else is never written through.
 */
static int etc_target(const char *name, char *redirect, size_t len)
{
	char p[64], link[256];
	struct stat st;
	snprintf(p, sizeof p, "/etc/%s", name);
	if (lstat("/etc", &st) < 0) {
		if (errno != ENOENT || mkdir("/etc", 0755) < 0)
			return 0;
	} else if (!S_ISDIR(st.st_mode)) {
		return 0;
	}
	if (lstat(p, &st) < 0) {
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0)
			return 0;
		close(fd);
		return 1;
	}
	if (S_ISREG(st.st_mode))
		return 1;
	if (!S_ISLNK(st.st_mode))
		return 0;
	ssize_t n = readlink(p, link, sizeof link - 1);
	if (n <= 0)
		return 0;
	link[n] = 0;
	/* Resolve lexically from /etc; nothing below /run can be a symlink yet, we just mounted it empty. */
	char out[512] = "/etc";
	if (link[0] == '/')
		out[0] = 0;
	for (char *save = NULL, *t = strtok_r(link, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
		if (!strcmp(t, "."))
			continue;
		if (!strcmp(t, "..")) {
			char *slash = strrchr(out, '/');
			if (slash)
				*slash = 0;
			continue;
		}
		if (strlen(out) + strlen(t) + 2 >= sizeof out)
			return 0;
		strcat(out, "/");
		strcat(out, t);
	}
	if (strncmp(out, "/run/", 5) || strlen(out) >= len)
		return 0;
	snprintf(redirect, len, "%s", out);
	return 2;
}

static void install(const char *name, const char *content)
{
	char ours[64], etc[64], redirect[512];
	snprintf(ours, sizeof ours, "/run/img2vm/%s", name);
	snprintf(etc, sizeof etc, "/etc/%s", name);
	int how = etc_target(name, redirect, sizeof redirect);
	if (how == 2) {
		char dir[512];
		snprintf(dir, sizeof dir, "%s", redirect);
		*strrchr(dir, '/') = 0;
		if (mkdir_p(dir, 0755) < 0 || write_file(redirect, content, 0644) < 0)
			warn("%s: writing %s (its symlink target): %s", etc, redirect, strerror(errno));
		return;
	}
	if (how == 0) {
		warn("%s is neither a file nor a symlink into /run: left as the image has it", etc);
		return;
	}
	if (write_file(ours, content, 0644) < 0 || mount(ours, etc, NULL, MS_BIND, NULL) < 0)
		warn("%s: %s", etc, strerror(errno));
}

void write_etc(const struct spec *s, const char *hostname, const struct netinfo *ni)
{
	char buf[1024], a[16];
	size_t n = 0;
	if (mkdir_p("/run/img2vm", 0755) < 0) {
		warn("/run/img2vm: %s: not installing resolv.conf and hosts", strerror(errno));
		return;
	}
	buf[0] = 0;
	if (s->dns.n > 0) {
		for (int i = 0; i < s->dns.n && i < 3; i++)
			n += (size_t)snprintf(buf + n, sizeof buf - n, "nameserver %s\n", s->dns.v[i]);
	} else {
		for (int i = 0; i < ni->ndns; i++) {
			ipv4_format(ni->dns[i], a);
			n += (size_t)snprintf(buf + n, sizeof buf - n, "nameserver %s\n", a);
		}
	}
	install("resolv.conf", buf);
	if (ni->addr)
		ipv4_format(ni->addr, a);
	else
		snprintf(a, sizeof a, "127.0.1.1");
	snprintf(buf, sizeof buf, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", a,
		 hostname);
	install("hosts", buf);
	snprintf(buf, sizeof buf, "%s\n", hostname);
	install("hostname", buf);
}
