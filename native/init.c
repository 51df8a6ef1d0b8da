/* img2vm's init: PID 1 of the initramfs img2vm writes for --init img2vm (boot sequence, exit protocol, halting below). */

/*
 * It mounts the image's root file system and then hands over to the image's own init, runs the image's ENTRYPOINT/CMD
 * as the workload, or gives a console (optionally with the image's command as a service beside it, service.c).
 *
 * Boot: devtmpfs, proc, sysfs; the kernel command line (img2vm.* and ip= only); the nonce line; the spec
 * (/img2vm/spec, see spec.c); kernel modules in the spec's order; with luks-uuid, the LUKS2 volume unlocked (the
 * passphrase asked on the console, unlock.c); wait for the ext4 root by UUID; mount it; move
 * /dev, /proc, /sys into it; free the initramfs; MS_MOVE the root onto / and chroot. Then, for the workload and
 * console modes: devpts, /dev/shm, /run, /tmp, cgroup2; hostname; loopback and DHCP or ip=; /etc/resolv.conf,
 * hosts and hostname bind-mounted from /run/img2vm; the service, if any; the workload (or the getty or shell) as
 * a child in its own session on the console.
 *
 * Exit protocol (what a host reads on the serial console):
 *   img2vm-init: nonce=<32 hex digits> host=<H>   printed once, before anything of the image runs
 *   img2vm-exit: nonce=<the same> status=<n>  after the workload (console mode: the getty or shell, never the
 *                                           service) ended, every process is gone and the file
 *                                           systems are read-only; n is its exit code, 128+N for signal N,
 *                                           126 when it could not be started, 127 when it was not found
 * The nonce is fresh randomness of this boot that exists only in PID 1's memory (a child's copy is gone at
 * exec, which is why even the service's output relay is exec'd), so workload output cannot forge an exit line:
 * a host takes the FIRST nonce line as the only true one and ignores exit lines with any other nonce. A fatal
 * error prints "img2vm-init: fatal: <why>" and no exit line.
 * H is the boot nonce `img2vm test` handed this boot (an SMBIOS OEM string img2vm.nonce=HEX, or img2vm.nonce=HEX on
 * the kernel command line of a direct-kernel boot, which has no SMBIOS), or "none". The host believes only a nonce
 * line that carries its own: "first line" alone would let a disk without this init (a distribution's systemd
 * printing canned lines) pass a test, since nothing of img2vm's prints first there. Unlike the init's own nonce,
 * H is readable by root in the guest; it binds the line to this boot, the init's nonce binds the exit line to PID 1.
 *
 * Ending the VM: img2vm.halt=poweroff (default: ACPI power-off, ends QEMU with or without -no-reboot),
 * img2vm.halt=reboot (ends Firecracker, which exits on the i8042 reset of reboot=k, and QEMU with -no-reboot),
 * img2vm.halt=halt (stops the CPUs; for debugging). A fatal error waits 1 s, then does the same.
 *
 * When not PID 1 this binary is a test tool: --check-spec FILE, --check-run FILE (runcfg.c), --resolve-user ROOT USER, --parse-cmdline TEXT,
 * --parse-dhcp PACKET XID MAC, --boot-nonce DMI_DIR CMDLINE (the parsers, run on the host by the unit tests),
 * --restart-policy END... (the service's), --luks-unlock FILE (unlock.c, the passphrase on stdin), --sha256 HEX,
 * --hmac-sha256 KEYHEX MSGHEX, --pbkdf2-sha256 PASSHEX SALTHEX ITERATIONS BYTES (sha256.c); and --relay PREFIX, the service's output relay, which PID 1 starts in
 * the guest and the unit tests drive on the host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "init.h"

#define BOOT_NONCE_KEY "img2vm.nonce="

/* 16 to 64 lowercase hex digits: the boot nonces img2vm test makes. */
static int is_boot_nonce(const char *s, size_t n)
{
	if (n < 16 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/*
 * The value of the first SMBIOS OEM string (type 11) KEY=VALUE that DMI sysfs shows in dmi_dir/11-N/raw (a header
 * whose second byte is its length, then NUL-ended strings, an empty one last) for which ok(VALUE) holds; 1 when found.
 */
static int dmi_oem(const char *dmi_dir, const char *key, int (*ok)(const char *, size_t), char *out, size_t outlen)
{
	DIR *d = opendir(dmi_dir);
	struct dirent *e;
	int found = 0;
	while (d && !found && (e = readdir(d))) {
		char path[512];
		size_t len;
		if (strncmp(e->d_name, "11-", 3) || snprintf(path, sizeof path, "%s/%s/raw", dmi_dir, e->d_name) >= (int)sizeof path)
			continue;
		char *raw = read_file(path, 4096, &len);
		if (!raw)
			continue;
		size_t at = len >= 2 ? (unsigned char)raw[1] : len;
		while (!found && at < len && raw[at]) {
			const char *str = raw + at;
			size_t n = strnlen(str, len - at);
			size_t k = strlen(key);
			if (n > k && n - k < outlen && !memcmp(str, key, k) && ok(str + k, n - k)) {
				memcpy(out, str + k, n - k);
				out[n - k] = 0;
				found = 1;
			}
			at += n + 1;
		}
		free(raw);
	}
	if (d)
		closedir(d);
	return found;
}

/* The boot nonce: an SMBIOS OEM string img2vm.nonce=HEX, else the command line's img2vm.nonce=, else "none". */
static void boot_nonce(const char *dmi_dir, const char *from_cmdline, char out[65])
{
	if (dmi_oem(dmi_dir, BOOT_NONCE_KEY, is_boot_nonce, out, 65))
		return;
	if (from_cmdline && is_boot_nonce(from_cmdline, strlen(from_cmdline)))
		strcpy(out, from_cmdline);
	else
		strcpy(out, "none");
}

static int is_flag(const char *s, size_t n)
{
	return n == 1 && (*s == '0' || *s == '1');
}

static void early_mounts(void)
{
	mkdir("/dev", 0755);
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0)
		fatal("mount devtmpfs on /dev: %s", strerror(errno));
	mkdir("/proc", 0555);
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		fatal("mount proc: %s", strerror(errno));
	mkdir("/sys", 0555);
	if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		fatal("mount sysfs: %s", strerror(errno));
}

/* The kernel opens /dev/console for PID 1 when the initramfs has it; without it there is nowhere to report. */
static void ensure_console(void)
{
	if (fcntl(2, F_GETFD) >= 0)
		return;
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);
	for (int i = 0; fd >= 0 && i < 3; i++)
		if (fcntl(i, F_GETFD) < 0)
			dup2(fd, i);
}

static void block_signals(void)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
}

static struct spec read_spec(void)
{
	size_t len;
	struct spec s;
	char err[512];
	char *buf = read_file(SPEC_PATH, SPEC_MAX_BYTES, &len);
	if (!buf)
		fatal("spec %s: %s", SPEC_PATH, errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
	if (spec_parse(buf, len, &s, err, sizeof err) < 0)
		fatal("spec %s: %s", SPEC_PATH, err);
	return s;
}

static const char *pick_hostname(const struct spec *s, const struct cmdline *c)
{
	if (c->hostname && *c->hostname)
		return c->hostname;
	if (c->ip.host[0])
		return c->ip.host;
	return s->hostname ? s->hostname : "localhost";
}

/* Hex text to bytes (the digest tool modes' inputs); returns the byte count, or exits on bad input. */
static size_t unhex(const char *h, uint8_t **out)
{
	size_t n = strlen(h) / 2;
	*out = malloc(n + 1);
	if (!*out || strlen(h) % 2)
		fatal("not hex: %s", h);
	for (size_t i = 0; i < n; i++) {
		int a = spec_hexval(h[2 * i]), b = spec_hexval(h[2 * i + 1]);
		if (a < 0 || b < 0)
			fatal("not hex: %s", h);
		(*out)[i] = (uint8_t)(a * 16 + b);
	}
	return n;
}

static void print_hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
	printf("\n");
}

/* The digest tool modes: the C SHA-256, HMAC and PBKDF2 checked against published vectors by the unit tests. */
static int digest_tool(int argc, char **argv)
{
	uint8_t *a, *b, out[32];
	if (argc == 3 && !strcmp(argv[1], "--sha256")) {
		size_t n = unhex(argv[2], &a);
		sha256(a, n, out);
		print_hex(out, 32);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "--hmac-sha256")) {
		size_t n = unhex(argv[2], &a), m = unhex(argv[3], &b);
		hmac_sha256(a, n, b, m, out);
		print_hex(out, 32);
		return 0;
	}
	unsigned long iter, len;
	if (argc == 6 && !strcmp(argv[1], "--pbkdf2-sha256") && parse_uint(argv[4], 0xffffffffu, &iter) == 0 &&
	    parse_uint(argv[5], 4096, &len) == 0 && iter > 0) {
		size_t n = unhex(argv[2], &a), m = unhex(argv[3], &b);
		uint8_t *dk = malloc(len + 1);
		if (!dk)
			fatal("out of memory");
		pbkdf2_sha256(a, n, b, m, (uint32_t)iter, dk, len);
		print_hex(dk, len);
		return 0;
	}
	return -1;
}

static int tool_main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--luks-unlock"))
		return luks_tool_main(argv[2]);
	int r = digest_tool(argc, argv);
	if (r >= 0)
		return r;
	if (argc == 3 && !strcmp(argv[1], "--check-spec")) {
		size_t len;
		struct spec s;
		char err[512];
		char *buf = read_file(argv[2], SPEC_MAX_BYTES, &len);
		if (!buf)
			fatal("spec %s: %s", argv[2], errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
		if (spec_parse(buf, len, &s, err, sizeof err) < 0)
			fatal("spec %s: %s", argv[2], err);
		spec_dump(&s);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "--resolve-user")) {
		struct ids o;
		char err[256];
		if (resolve_user(argv[2], argv[3], &o, err, sizeof err) < 0)
			fatal("user %s: %s", argv[3], err);
		printf("{\"uid\":%u,\"gid\":%u,\"groups\":[", (unsigned)o.uid, (unsigned)o.gid);
		for (int i = 0; i < o.ngroups; i++)
			printf("%s%u", i ? "," : "", (unsigned)o.groups[i]);
		printf("],\"name\":\"%s\",\"home\":\"%s\",\"shell\":\"%s\"}\n", o.name, o.home, o.shell);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "--parse-cmdline")) {
		struct cmdline c;
		char a[16], g[16], m[16], d0[16], d1[16];
		static const char *halts[] = { "poweroff", "reboot", "halt" };
		cmdline_parse(argv[2], &c);
		ipv4_format(c.ip.client, a), ipv4_format(c.ip.gateway, g), ipv4_format(c.ip.netmask, m);
		ipv4_format(c.ip.dns[0], d0), ipv4_format(c.ip.dns[1], d1);
		printf("{\"halt\":\"%s\",\"rootWait\":%d,\"dhcpTimeout\":%d,\"hostname\":\"%s\",\"ip\":{\"present\":%d,"
		       "\"off\":%d,\"dhcp\":%d,\"client\":\"%s\",\"gateway\":\"%s\",\"netmask\":\"%s\",\"host\":\"%s\","
		       "\"iface\":\"%s\",\"dns\":[\"%s\",\"%s\"]}}\n",
		       halts[c.halt], c.root_wait, c.dhcp_timeout, c.hostname ? c.hostname : "", c.ip.present, c.ip.off,
		       c.ip.dhcp, a, g, m, c.ip.host, c.ip.iface, d0, d1);
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "--parse-dhcp")) {
		size_t len;
		unsigned xid, m[6];
		uint8_t mac[6];
		int type;
		struct lease l;
		char *pkt = read_file(argv[2], 65536, &len);
		if (!pkt || sscanf(argv[3], "%8x", &xid) != 1 ||
		    sscanf(argv[4], "%2x:%2x:%2x:%2x:%2x:%2x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
			fatal("usage: --parse-dhcp PACKET XID MAC");
		for (int i = 0; i < 6; i++)
			mac[i] = (uint8_t)m[i];
		if (dhcp_parse_reply((const uint8_t *)pkt, len, xid, mac, &type, &l) < 0)
			fatal("not a DHCP reply to us");
		char a[16], k[16], r[16], sv[16], d[3][16];
		ipv4_format(l.addr, a), ipv4_format(l.mask, k), ipv4_format(l.router, r), ipv4_format(l.server, sv);
		for (int i = 0; i < 3; i++)
			ipv4_format(i < l.ndns ? l.dns[i] : 0, d[i]);
		printf("{\"type\":%d,\"addr\":\"%s\",\"mask\":\"%s\",\"router\":\"%s\",\"server\":\"%s\",\"mtu\":%d,"
		       "\"dns\":[\"%s\",\"%s\",\"%s\"],\"ndns\":%d}\n",
		       type, a, k, r, sv, l.mtu, d[0], d[1], d[2], l.ndns);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "--boot-nonce")) {
		struct cmdline c;
		char host[65];
		cmdline_parse(argv[3], &c);
		boot_nonce(argv[2], c.nonce, host);
		printf("%s\n", host);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "--check-run")) {
		size_t len;
		struct runcfg r;
		char err[512];
		char *buf = read_file(argv[2], RUNCFG_MAX_BYTES, &len);
		if (!buf)
			fatal("run config %s: %s", argv[2], errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
		if (runcfg_parse(buf, len, &r, err, sizeof err) < 0)
			fatal("run config %s: %s", argv[2], err);
		runcfg_dump(&r);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "--relay"))
		return relay_main(argv[2]);
	if (argc >= 2 && !strcmp(argv[1], "--restart-policy"))
		return restart_policy_main(argc - 2, argv + 2);
	fprintf(stderr, "img2vm-init is PID 1 of img2vm's initramfs; as a tool: --check-spec FILE | --check-run FILE | --resolve-user ROOT "
			"USER | --parse-cmdline TEXT | --parse-dhcp PACKET XID MAC | --boot-nonce DMI_DIR CMDLINE | --relay PREFIX | --restart-policy END... | "
			"--luks-unlock FILE | --sha256 HEX | --hmac-sha256 KEYHEX MSGHEX | --pbkdf2-sha256 PASSHEX SALTHEX ITERATIONS BYTES\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (getpid() != 1)
		return tool_main(argc, argv);
	ensure_console();
	block_signals();
	reboot(RB_DISABLE_CAD); /* Ctrl-Alt-Del becomes SIGINT to us: forwarded, not an instant reset */
	umask(022);
	early_mounts();
	struct cmdline c;
	char *text = read_file("/proc/cmdline", 65536, NULL);
	cmdline_parse(text, &c);
	free(text);
	g_halt = c.halt;

	char nonce[33], host[65];
	random_hex(nonce, 16);
	boot_nonce("/sys/firmware/dmi/entries", c.nonce, host);
	say("nonce=%s host=%s", nonce, host);

	char flag[2];
	/* A firmware boot cannot be given kernel parameters per run: the run config's flag comes as an OEM string. */
	if (!c.run && dmi_oem("/sys/firmware/dmi/entries", "img2vm.run=", is_flag, flag, sizeof flag))
		c.run = flag[0] == '1';
	struct spec s = read_spec();
	load_modules(&s);
	int wait = c.root_wait >= 0 ? c.root_wait : s.root_wait;
	const char *dev = s.luks_uuid ? unlock_root(s.luks_uuid, wait) : wait_root(s.root_uuid, wait);
	struct runcfg rc;
	memset(&rc, 0, sizeof rc);
	if (c.run) {
		runcfg_read(c.root_wait >= 0 ? c.root_wait : s.root_wait, &rc);
		runcfg_apply(&rc, &s);
	}
	mount_root(dev, &s);
	switch_root();
	const char *hostname = pick_hostname(&s, &c);
	if (sethostname(hostname, strlen(hostname)) < 0)
		warn("sethostname %s: %s", hostname, strerror(errno));
	if (s.mode == MODE_INIT)
		run_image_init(&s);

	mount_runtime(&s);
	runcfg_mount(&rc);
	struct netinfo ni;
	net_setup(&s, &c, &ni);
	write_etc(&s, hostname, &ni);
	int status = run_workload(&s, hostname);
	shutdown_all();
	/* A leading newline: the workload's last line may lack one, and the exit line must start a line. */
	dprintf(2, "\nimg2vm-exit: nonce=%s status=%d\n", nonce, status);
	halt_now();
}
