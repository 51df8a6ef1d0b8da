/* The init's way to the image's root: kernel modules, waiting for the root device by UUID, mounting, switching root. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "init.h"

#define MODULE_INIT_COMPRESSED_FILE 4 /* Linux 6.4+, with CONFIG_MODULE_DECOMPRESS */

static int has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

static int is_optional(const struct spec *s, const char *m)
{
	for (int i = 0; i < s->optional_modules.n; i++)
		if (!strcmp(s->optional_modules.v[i], m))
			return 1;
	return 0;
}

/*
 * Loads each module in the spec's order (img2vm resolved the dependencies). A compressed module is handed to the
 * kernel to decompress (Debian 6.12 ships .ko.xz and decompresses in-kernel); a kernel that cannot is a fatal
 * error that names the module, since img2vm should then have written it decompressed.
 */
void load_modules(const struct spec *s)
{
	for (int i = 0; i < s->modules.n; i++) {
		const char *m = s->modules.v[i];
		int fd = open(m, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			fatal("module %s: %s", m, strerror(errno));
		int compressed = has_suffix(m, ".xz") || has_suffix(m, ".zst") || has_suffix(m, ".gz");
		long r = syscall(SYS_finit_module, fd, "", compressed ? MODULE_INIT_COMPRESSED_FILE : 0);
		int e = errno;
		close(fd);
		if (r == 0 || e == EEXIST)
			continue;
		/* A CPU-specific speed-up the CPU lacks: aes_ce_cipher finds no AES instructions (ENODEV), and
		 * aes_ce_blk, which needs its symbols, then fails with ENOENT; the kernel's generic code serves. */
		if (is_optional(s, m)) {
			say("module %s: not loaded (%s): the kernel's generic code serves instead", m, strerror(e));
			continue;
		}
		if (e == ENODEV || e == ENXIO) {
			say("module %s: no device for it (%s)", m, strerror(e));
			continue;
		}
		if (compressed && (e == EOPNOTSUPP || e == EINVAL))
			fatal("module %s: this kernel cannot decompress modules (%s); write it decompressed", m, strerror(e));
		if (e == ENOENT)
			fatal("module %s: unknown symbol: a module it needs was not loaded before it (the kernel log names it)", m);
		if (e == ENOEXEC)
			fatal("module %s: invalid module format: it was built for another kernel", m);
		fatal("module %s: %s", m, strerror(e));
	}
}

/* Reads the ext2/3/4 superblock of a block device: 1 with uuid (lower-case text) filled, 0 when it has none. */
static int ext_uuid(const char *dev, char out[37])
{
	unsigned char sb[1024];
	int fd = open(dev, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return 0;
	ssize_t n = pread(fd, sb, sizeof sb, 1024);
	close(fd);
	if (n != (ssize_t)sizeof sb || sb[0x38] != 0x53 || sb[0x39] != 0xef)
		return 0;
	static const char hex[] = "0123456789abcdef";
	char *w = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*w++ = '-';
		*w++ = hex[sb[0x68 + i] >> 4];
		*w++ = hex[sb[0x68 + i] & 15];
	}
	*w = 0;
	return 1;
}

/* One pass over /sys/class/block: the device holding uuid, or NULL; seen gets "name (what)" of each device. */
static const char *scan(const char *uuid, char *seen, size_t seenlen)
{
	static char found[300];
	DIR *d = opendir("/sys/class/block");
	if (!d)
		return NULL;
	const char *hit = NULL;
	size_t used = 0;
	seen[0] = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || strlen(e->d_name) > 200)
			continue;
		char dev[300], u[37];
		snprintf(dev, sizeof dev, "/dev/%s", e->d_name);
		for (char *c = dev + 5; *c; c++)
			if (*c == '!')
				*c = '/';
		int has = ext_uuid(dev, u);
		if (used + 64 < seenlen)
			used += (size_t)snprintf(seen + used, seenlen - used, "%s%s (%s%s)", used ? ", " : "", e->d_name,
						 has ? "ext UUID=" : "no ext superblock", has ? u : "");
		if (has && !strcasecmp(u, uuid) && !hit) {
			snprintf(found, sizeof found, "%s", dev);
			hit = found;
		}
	}
	closedir(d);
	return hit;
}

/* Waits (bounded) for the root device to appear; the kernel probes disks asynchronously after the modules load. */
const char *wait_root(const char *uuid, int seconds)
{
	char seen[2048];
	double start = uptime(), next = start + 5;
	for (;;) {
		const char *dev = scan(uuid, seen, sizeof seen);
		if (dev)
			return dev;
		double now = uptime();
		if (now - start >= seconds) {
			say("root file system UUID=%s did not appear in %d s; block devices seen: %s", uuid, seconds,
			    seen[0] ? seen : "none");
			fatal("no root file system (UUID=%s)", uuid);
		}
		if (now >= next) {
			say("waiting for the root file system UUID=%s (%.0f s of %d); block devices: %s", uuid, now - start,
			    seconds, seen[0] ? seen : "none");
			next += 5;
		}
		sleep_ms(50);
	}
}

/* Mount options as mount(8) spells them: the known flags become MS_* bits, the rest is passed to the file system. */
static unsigned long mount_flags(const char *opts, char *data, size_t datalen)
{
	static const struct {
		const char *name;
		unsigned long set, clear;
	} F[] = {
		{ "ro", MS_RDONLY, 0 },		{ "rw", 0, MS_RDONLY },		 { "noatime", MS_NOATIME, 0 },
		{ "relatime", MS_RELATIME, 0 }, { "strictatime", MS_STRICTATIME, 0 }, { "nodiratime", MS_NODIRATIME, 0 },
		{ "nosuid", MS_NOSUID, 0 },	{ "nodev", MS_NODEV, 0 },	 { "noexec", MS_NOEXEC, 0 },
		{ "sync", MS_SYNCHRONOUS, 0 },	{ "lazytime", MS_LAZYTIME, 0 }, { "defaults", 0, 0 },
	};
	unsigned long flags = 0;
	char buf[512];
	snprintf(buf, sizeof buf, "%s", opts);
	data[0] = 0;
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t i;
		for (i = 0; i < sizeof F / sizeof F[0] && strcmp(F[i].name, t); i++) {
		}
		if (i < sizeof F / sizeof F[0]) {
			flags = (flags | F[i].set) & ~F[i].clear;
		} else if (strlen(data) + strlen(t) + 2 < datalen) {
			if (data[0])
				strcat(data, ",");
			strcat(data, t);
		}
	}
	return flags;
}

void mount_root(const char *dev, const struct spec *s)
{
	char data[512];
	unsigned long flags = mount_flags(s->root_options, data, sizeof data);
	if (mkdir(NEWROOT, 0755) < 0 && errno != EEXIST)
		fatal("mkdir %s: %s", NEWROOT, strerror(errno));
	if (mount(dev, NEWROOT, s->root_fstype, flags, data[0] ? data : NULL) < 0)
		fatal("mount %s (%s, %s) on /: %s", dev, s->root_fstype, s->root_options, strerror(errno));
	say("root file system %s mounted (%s, %s)", dev, s->root_fstype, s->root_options);
}

/*
 * Makes sure the image has a directory at /name (scratch images have none): 1 = usable; 0 = the image has
 * something else there (a symlink would send our mount elsewhere, so it is never followed); -1 = it could not be
 * created (errno; a read-only root).
 */
static int mount_point(const char *root, const char *name, mode_t mode)
{
	char p[300];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s", root, name);
	if (lstat(p, &st) == 0)
		return S_ISDIR(st.st_mode);
	if (errno != ENOENT || mkdir(p, mode) < 0)
		return -1;
	chmod(p, mode); /* the umask must not narrow /tmp's 1777 */
	return 1;
}

/* Deletes the initramfs content (it is RAM the workload can use), never crossing into another file system. */
static void free_tree(int dirfd, dev_t rootdev, int depth)
{
	DIR *d = fdopendir(dirfd);
	if (!d) {
		close(dirfd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != rootdev)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (depth > 32)
				continue;
			int fd = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0)
				free_tree(fd, rootdev, depth + 1);
			unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
		} else {
			unlinkat(dirfd, e->d_name, 0);
		}
	}
	closedir(d);
}

/* pivot_root cannot leave an initramfs (rootfs cannot be unmounted), so: move mounts in, MS_MOVE over /, chroot. */
void switch_root(void)
{
	static const char *moved[] = { "dev", "proc", "sys" };
	for (size_t i = 0; i < 3; i++) {
		char from[16], to[64];
		int ok = mount_point(NEWROOT, moved[i], 0555);
		if (ok == 0)
			fatal("the image's /%s is not a directory (a symlink or a file): cannot mount it", moved[i]);
		if (ok < 0)
			fatal("the image has no /%s and it cannot be created (%s): mount the root rw once, or add it",
			      moved[i], strerror(errno));
		snprintf(from, sizeof from, "/%s", moved[i]);
		snprintf(to, sizeof to, NEWROOT "/%s", moved[i]);
		if (mount(from, to, NULL, MS_MOVE, NULL) < 0)
			fatal("move %s into the root: %s", from, strerror(errno));
	}
	if (chdir(NEWROOT) < 0)
		fatal("chdir %s: %s", NEWROOT, strerror(errno));
	struct stat st;
	int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0)
		free_tree(fd, st.st_dev, 0);
	else if (fd >= 0)
		close(fd);
	if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
		fatal("move the root onto /: %s", strerror(errno));
	if (chroot(".") < 0 || chdir("/") < 0)
		fatal("chroot into the root: %s", strerror(errno));
}

static void mnt(const char *src, const char *target, const char *type, unsigned long flags, const char *data)
{
	if (mount(src, target, type, flags, data) < 0)
		warn("mount %s on %s: %s", type, target, strerror(errno));
}

/* What a container runtime gives a container, for the workload and console modes (an image's own init mounts its own). */
void mount_runtime(const struct spec *s)
{
	const unsigned long nsd = MS_NOSUID | MS_NODEV;
	mkdir("/dev/pts", 0755);
	mnt("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
	mkdir("/dev/shm", 01777);
	mnt("shm", "/dev/shm", "tmpfs", nsd, "mode=1777");
	mkdir("/dev/mqueue", 0755);
	mnt("mqueue", "/dev/mqueue", "mqueue", nsd | MS_NOEXEC, NULL);
	symlink("/proc/self/fd", "/dev/fd");
	symlink("/proc/self/fd/0", "/dev/stdin");
	symlink("/proc/self/fd/1", "/dev/stdout");
	symlink("/proc/self/fd/2", "/dev/stderr");
	if (mount_point("", "run", 0755) > 0)
		mnt("tmpfs", "/run", "tmpfs", nsd, "mode=0755");
	else
		warn("the image's /run is not a directory and cannot be made one: no tmpfs there");
	if (s->tmp_tmpfs) {
		if (mount_point("", "tmp", 01777) > 0)
			mnt("tmpfs", "/tmp", "tmpfs", nsd, "mode=1777");
		else
			warn("the image's /tmp is not a directory and cannot be made one: no tmpfs there");
	}
	mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", nsd | MS_NOEXEC, NULL);
}
