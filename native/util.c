/* Small helpers of img2vm's init: console messages, the fatal path, bounded file reads, time, randomness. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "init.h"

enum halt_action g_halt = HALT_POWEROFF;

void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void vsay(const char *prefix, const char *fmt, va_list ap)
{
	char buf[2048];
	int n = snprintf(buf, sizeof buf, "img2vm-init: %s", prefix);
	int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof buf - 2)
		len = sizeof buf - 2;
	buf[len++] = '\n';
	write_all(2, buf, len);
}

void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay("", fmt, ap);
	va_end(ap);
}

void warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay("warning: ", fmt, ap);
	va_end(ap);
}

void halt_now(void)
{
	/* Never reboot a host: outside PID 1 (the --check-* tool modes, a forked child) this only exits. */
	if (getpid() != 1)
		_exit(1);
	sync();
	int how = g_halt == HALT_REBOOT ? RB_AUTOBOOT : g_halt == HALT_HALT ? RB_HALT_SYSTEM : RB_POWER_OFF;
	reboot(how);
	/* Only reached when the kernel refused; PID 1 must not exit (the kernel would panic). */
	for (;;)
		pause();
}

/* A fatal error: say why, give the console a moment, then end the VM the way img2vm.halt says. */
void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay("fatal: ", fmt, ap);
	va_end(ap);
	if (getpid() != 1)
		_exit(1);
	sleep_ms(1000);
	halt_now();
}

double uptime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

/* Reads at most max bytes of a file (NUL-terminated copy); NULL with errno set on failure or when larger. */
char *read_file(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	char *buf = malloc(max + 1);
	size_t n = 0;
	if (!buf) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	for (;;) {
		ssize_t r = read(fd, buf + n, max + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			close(fd);
			errno = e;
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > max) {
			free(buf);
			close(fd);
			errno = EFBIG;
			return NULL;
		}
	}
	close(fd);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

/* Creates (or replaces) a file; O_NOFOLLOW so a symlink planted at path is never written through. */
int write_file(const char *path, const char *data, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	write_all(fd, data, strlen(data));
	return close(fd);
}

/* Hex of fresh random bytes. Early in boot the CRNG may not be ready: fall back to the insecure pool, then urandom. */
void random_hex(char *out, size_t bytes)
{
	unsigned char r[64];
	if (bytes > sizeof r)
		bytes = sizeof r;
	ssize_t got = getrandom(r, bytes, GRND_NONBLOCK);
	if (got != (ssize_t)bytes)
		got = getrandom(r, bytes, 0x0004 /* GRND_INSECURE, Linux 5.6 */);
	if (got != (ssize_t)bytes) {
		int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		got = fd >= 0 ? read(fd, r, bytes) : -1;
		if (fd >= 0)
			close(fd);
	}
	if (got != (ssize_t)bytes) {
		/* Last resort: time-derived; still unpredictable enough to keep workload output from matching by accident. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec * 6364136223846793005ULL + (uint64_t)ts.tv_sec;
		for (size_t i = 0; i < bytes; i++) {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			r[i] = (unsigned char)(x >> 56);
		}
	}
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < bytes; i++) {
		out[2 * i] = hex[r[i] >> 4];
		out[2 * i + 1] = hex[r[i] & 15];
	}
	out[2 * bytes] = 0;
}

/* Decimal digits only, no sign, no overflow past max. */
int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		unsigned long d = (unsigned long)(*s - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* mkdir -p; an existing non-directory component fails with ENOTDIR. */
int mkdir_p(const char *path, mode_t mode)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;
			*p = 0;
			struct stat st;
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return -1;
			if (lstat(buf, &st) < 0)
				return -1;
			if (!S_ISDIR(st.st_mode)) {
				errno = ENOTDIR;
				return -1;
			}
			*p = c;
			if (c == 0)
				return 0;
		}
	}
}
