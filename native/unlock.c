/* The encrypted root at boot: find the LUKS2 volume, ask for the passphrase on the console, map it with dm-crypt. */

/*
 * The mapping is made with device-mapper ioctls as cryptsetup makes it (DM_DEV_CREATE, DM_TABLE_LOAD of a "crypt"
 * target with the key in hex, DM_DEV_SUSPEND without the suspend flag to resume), flagged DM_SECURE_DATA so the
 * kernel wipes its copy of the table; ours is wiped at once. The passphrase is read with echo off, three tries,
 * then the VM is powered off with a fatal line: a wrong passphrase never leaves the boot hanging.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "init.h"

#define TRIES 3
#define MAX_PASS 512
#define DM_NAME "img2vm-root"
#define DM_NODE "/dev/img2vm-root"

/* The kernel's struct dm_ioctl and dm_target_spec (linux/dm-ioctl.h, a stable ABI; musl's headers lack it). */
struct dm_ioctl_ {
	uint32_t version[3];
	uint32_t data_size;
	uint32_t data_start;
	uint32_t target_count;
	int32_t open_count;
	uint32_t flags;
	uint32_t event_nr;
	uint32_t padding;
	uint64_t dev;
	char name[128];
	char uuid[129];
	char data[7];
};
struct dm_target_spec_ {
	uint64_t sector_start;
	uint64_t length;
	int32_t status;
	uint32_t next;
	char target_type[16];
};
#define DM_DEV_CREATE_ _IOWR(0xfd, 3, struct dm_ioctl_)
#define DM_DEV_REMOVE_ _IOWR(0xfd, 4, struct dm_ioctl_)
#define DM_DEV_SUSPEND_ _IOWR(0xfd, 6, struct dm_ioctl_)
#define DM_TABLE_LOAD_ _IOWR(0xfd, 9, struct dm_ioctl_)
#define DM_SECURE_DATA_FLAG_ (1 << 15)

/*
 * Prints the prompt and reads one line from fd with echo off when it is a terminal. Returns its length (the newline
 * dropped), -1 at end of input. Echo goes off (and stale input is dropped) before the prompt is printed: whoever
 * answers it, a person or img2vm test, may type the moment it appears, and that must be neither echoed nor
 * flushed. The line never reaches the console or a log.
 */
static int read_secret(int fd, const char *prompt, char *out, size_t cap)
{
	struct termios old, quiet;
	int tty = tcgetattr(fd, &old) == 0;
	if (tty) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		quiet.c_lflag |= ICANON;
		tcsetattr(fd, TCSAFLUSH, &quiet);
	}
	write_all(2, prompt, strlen(prompt));
	size_t n = 0;
	int got = 0, end = 0;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			end = n == 0 && !got;
			break;
		}
		got = 1;
		if (c == '\n' || c == '\r')
			break;
		if (n + 1 < cap)
			out[n++] = c;
	}
	out[n] = 0;
	if (tty) {
		tcsetattr(fd, TCSANOW, &old);
		explicit_bzero(&quiet, sizeof quiet);
	}
	write_all(2, "\n", 1);
	return end ? -1 : (int)n;
}

/*
 * Asks for the passphrase (TRIES times) and unlocks the volume on fd: 0 with key filled, or a fatal error (in the
 * tool mode an exit 1). The prompt is the one Debian's cryptroot prints, which img2vm test and run answer.
 */
static size_t ask_and_unlock(int fd, const struct luks *l, const char *name, uint8_t *key, int *slot)
{
	char pass[MAX_PASS], err[512];
	size_t klen = 0;
	for (int t = 1; t <= TRIES; t++) {
		char prompt[160];
		snprintf(prompt, sizeof prompt, "Please unlock disk %s (LUKS2 UUID=%s): ", name, l->uuid);
		int len = read_secret(0, prompt, pass, sizeof pass);
		if (len < 0)
			fatal("no passphrase: the console's input ended");
		double start = uptime();
		int r = luks_unlock(fd, l, pass, (size_t)len, key, &klen, slot, err, sizeof err);
		explicit_bzero(pass, sizeof pass);
		if (r < 0)
			fatal("LUKS2 volume %s: %s", l->uuid, err);
		if (r > 0) {
			say("LUKS2 volume %s unlocked with keyslot %d in %.1f s", l->uuid, *slot, uptime() - start);
			return klen;
		}
		say("No key available with this passphrase (try %d of %d).", t, TRIES);
	}
	fatal("the LUKS2 passphrase was refused %d times: powering off", TRIES);
}

static int dm_ioctl(int ctl, unsigned long req, struct dm_ioctl_ *io)
{
	int r;
	while ((r = ioctl(ctl, req, io)) < 0 && errno == EINTR) {
	}
	return r;
}

/* A request naming the mapping; with luks_uuid (DM_DEV_CREATE only: later requests give one of name or UUID) its UUID. */
static void dm_header(struct dm_ioctl_ *io, size_t size, const char *luks_uuid)
{
	memset(io, 0, sizeof *io);
	io->version[0] = 4;
	io->data_size = (uint32_t)size;
	io->data_start = sizeof *io;
	snprintf(io->name, sizeof io->name, "%s", DM_NAME);
	if (!luks_uuid)
		return;
	/* cryptsetup's UUID form (CRYPT-LUKS2-<uuid without dashes>-<name>), so the guest's tools recognise the mapping. */
	char hex[41];
	size_t w = 0;
	for (const char *c = luks_uuid; *c && w < 40; c++)
		if (*c != '-')
			hex[w++] = *c;
	hex[w] = 0;
	snprintf(io->uuid, sizeof io->uuid, "CRYPT-LUKS2-%s-%s", hex, DM_NAME);
}

/* The crypt target's table line; the caller wipes it. */
int dm_crypt_params(char *out, size_t cap, const uint8_t *key, size_t klen, const struct luks_segment *sg,
		    unsigned maj, unsigned min)
{
	static const char hex[] = "0123456789abcdef";
	char k[2 * 64 + 1];
	for (size_t i = 0; i < klen; i++)
		k[2 * i] = hex[key[i] >> 4], k[2 * i + 1] = hex[key[i] & 15];
	k[2 * klen] = 0;
	int n;
	if (sg->sector_size == 512)
		n = snprintf(out, cap, "aes-xts-plain64 %s %llu %u:%u %llu", k, (unsigned long long)sg->iv_tweak, maj, min,
			     (unsigned long long)(sg->offset / 512));
	else /* as cryptsetup maps LUKS2: the IV still counts 512-byte sectors (iv_large_sectors is for plain mode only) */
		n = snprintf(out, cap, "aes-xts-plain64 %s %llu %u:%u %llu 1 sector_size:%u", k,
			     (unsigned long long)sg->iv_tweak, maj, min, (unsigned long long)(sg->offset / 512), sg->sector_size);
	explicit_bzero(k, sizeof k);
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Creates, loads and resumes the dm-crypt mapping of dev; returns the mapped device's number. */
static dev_t dm_map(const char *dev, const struct luks *l, const struct luks_segment *sg, const uint8_t *key, size_t klen)
{
	struct stat st;
	uint64_t bytes = 0;
	int bfd = open(dev, O_RDONLY | O_CLOEXEC);
	if (bfd < 0 || fstat(bfd, &st) < 0 || ioctl(bfd, _IOR(0x12, 114, size_t), &bytes) < 0) /* BLKGETSIZE64 */
		fatal("LUKS2 volume %s: size of %s: %s", l->uuid, dev, strerror(errno));
	close(bfd);
	uint64_t len = sg->size ? sg->size / 512 : bytes > sg->offset ? (bytes - sg->offset) / 512 : 0;
	if (len == 0 || sg->offset + len * 512 > bytes)
		fatal("LUKS2 volume %s: the data segment does not fit in %s", l->uuid, dev);
	mkdir("/dev/mapper", 0755);
	int ctl = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		fatal("/dev/mapper/control: %s (is dm-mod loaded?)", strerror(errno));
	union {
		struct dm_ioctl_ io;
		char b[16384];
	} u;
	dm_header(&u.io, sizeof u, l->uuid);
	if (dm_ioctl(ctl, DM_DEV_CREATE_, &u.io) < 0)
		fatal("device-mapper: create %s: %s", DM_NAME, strerror(errno));
	dev_t mapped = (dev_t)u.io.dev;
	dm_header(&u.io, sizeof u, NULL);
	u.io.target_count = 1;
	u.io.flags = DM_SECURE_DATA_FLAG_;
	struct dm_target_spec_ *t = (struct dm_target_spec_ *)(u.b + sizeof u.io);
	t->length = len;
	memcpy(t->target_type, "crypt", 6);
	char *params = (char *)(t + 1);
	if (dm_crypt_params(params, sizeof u - sizeof u.io - sizeof *t, key, klen, sg, major(st.st_rdev), minor(st.st_rdev)) < 0)
		fatal("device-mapper: the crypt table does not fit");
	t->next = 0;
	int r = dm_ioctl(ctl, DM_TABLE_LOAD_, &u.io), e = errno;
	explicit_bzero(&u, sizeof u);
	if (r < 0) {
		dm_header(&u.io, sizeof u, NULL);
		dm_ioctl(ctl, DM_DEV_REMOVE_, &u.io);
		fatal("device-mapper: load the crypt table: %s (are dm-crypt and the xts and aes modules loaded?)", strerror(e));
	}
	dm_header(&u.io, sizeof u, NULL);
	if (dm_ioctl(ctl, DM_DEV_SUSPEND_, &u.io) < 0)
		fatal("device-mapper: resume %s: %s", DM_NAME, strerror(errno));
	close(ctl);
	return mapped;
}

/* Whether dev holds a LUKS2 header (the primary, or a secondary copy where the format allows one) of UUID uuid. */
static int is_luks(const char *dev, const char *uuid)
{
	uint8_t b[208];
	int fd = open(dev, O_RDONLY | O_CLOEXEC | O_NONBLOCK), hit = 0;
	if (fd < 0)
		return 0;
	for (off_t off = 0; !hit && off <= (4 << 20); off = off ? off * 2 : 16384) {
		if (pread(fd, b, sizeof b, off) != (ssize_t)sizeof b)
			break;
		hit = !memcmp(b, off ? "SKUL\xba\xbe" : "LUKS\xba\xbe", 6) && !strncasecmp((char *)b + 168, uuid, 40);
	}
	close(fd);
	return hit;
}

/* The block device holding the LUKS2 volume uuid, waited for (bounded) as the root is. */
static const char *wait_luks(const char *uuid, int seconds)
{
	static char dev[300];
	double start = uptime();
	for (;;) {
		DIR *d = opendir("/sys/class/block");
		struct dirent *e;
		int hit = 0;
		while (d && !hit && (e = readdir(d))) {
			if (e->d_name[0] == '.' || strlen(e->d_name) > 200)
				continue;
			snprintf(dev, sizeof dev, "/dev/%s", e->d_name);
			for (char *c = dev + 5; *c; c++)
				if (*c == '!')
					*c = '/';
			hit = is_luks(dev, uuid);
		}
		if (d)
			closedir(d);
		if (hit)
			return dev;
		if (uptime() - start >= seconds)
			fatal("no LUKS2 volume UUID=%s appeared in %d s", uuid, seconds);
		sleep_ms(50);
	}
}

/* Opens a LUKS2 volume and reads its header and data segment, or ends the boot saying what is wrong with it. */
static int open_volume(const char *path, struct luks *l, struct luks_segment *sg)
{
	char err[512];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fatal("open %s: %s", path, strerror(errno));
	if (luks_read(fd, l, err, sizeof err) < 0 || luks_segment(l, sg, err, sizeof err) < 0)
		fatal("LUKS2 volume on %s: %s", path, err);
	if (l->secondary)
		warn("LUKS2 volume %s: the primary header is damaged; using the secondary copy", l->uuid);
	return fd;
}

/* Boot: unlocks the LUKS2 volume and returns the node of the mapped device, which holds the root file system. */
const char *unlock_root(const char *luks_uuid, int wait_s)
{
	const char *dev = wait_luks(luks_uuid, wait_s);
	struct luks l;
	struct luks_segment sg;
	uint8_t key[64];
	int slot = -1;
	int fd = open_volume(dev, &l, &sg);
	size_t klen = ask_and_unlock(fd, &l, "root", key, &slot);
	close(fd);
	dev_t mapped = dm_map(dev, &l, &sg, key, klen);
	explicit_bzero(key, sizeof key);
	luks_free(&l);
	unlink(DM_NODE);
	if (mknod(DM_NODE, S_IFBLK | 0600, mapped) < 0)
		fatal("mknod %s: %s", DM_NODE, strerror(errno));
	return DM_NODE;
}

/*
 * Tool mode (--luks-unlock FILE): the same reading, prompting and unlocking on a file, the passphrase on stdin; prints
 * the keyslot, the master key and the crypt table (so tests compare them with what the writer used).
 */
int luks_tool_main(const char *path)
{
	char table[400];
	struct luks l;
	struct luks_segment sg;
	uint8_t key[64];
	int slot = -1;
	int fd = open_volume(path, &l, &sg);
	size_t klen = ask_and_unlock(fd, &l, "root", key, &slot);
	dm_crypt_params(table, sizeof table, key, klen, &sg, 254, 0);
	printf("{\"uuid\":");
	json_str(l.uuid);
	printf(",\"header\":\"%s\",\"keyslot\":%d,\"keyBytes\":%zu,\"sectorSize\":%u,\"offset\":%llu,\"table\":", l.secondary ? "secondary" : "primary", slot, klen, sg.sector_size,
	       (unsigned long long)sg.offset);
	json_str(table);
	printf("}\n");
	explicit_bzero(key, sizeof key);
	explicit_bzero(table, sizeof table);
	luks_free(&l);
	close(fd);
	return 0;
}
