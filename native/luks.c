/* LUKS2 unlocking in img2vm's init: the header and its JSON read, a pbkdf2-sha256 keyslot opened to the master key. */

/*
 * What it reads is what img2vm's writer (src/disk/luks/) and cryptsetup's luksFormat --pbkdf pbkdf2 produce:
 * keyslots of type luks2 with a pbkdf2/sha256 KDF, the luks1 anti-forensic split with sha256, an aes-xts-plain64
 * keyslot area; a pbkdf2/sha256 digest; an aes-xts-plain64 crypt segment. Anything else (argon2i/argon2id keyslots,
 * which luksAddKey and luksFormat make by default, other ciphers or hashes, tokens) is named in the error.
 * The keyslot area is decrypted in C (aes.c), not by the kernel's crypto API: AF_ALG is not in every kernel (not in
 * the one this project's CI runs on), and so the tool mode runs the very same code on the host. Every buffer that
 * held a key or the passphrase is wiped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init.h"

#define BIN_SIZE 4096
#define MAX_HDR (4u << 20) /* the largest LUKS2 header size the format allows */
#define MAX_TOKENS 4096
#define MAX_KEY 64
#define SECTOR 512

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 with padding; returns the byte count or -1. */
static int b64dec(const char *in, uint8_t *out, size_t cap)
{
	size_t n = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (; *in && *in != '='; in++) {
		int v = b64val(*in);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= cap)
				return -1;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	return (int)n;
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

void luks_free(struct luks *l)
{
	free(l->json);
	free(l->tok);
	l->json = NULL;
	l->tok = NULL;
}

/* Reads and checks the binary header at off (magic, version 2, its offset field, sha256 over header and JSON). */
static int read_header(int fd, uint64_t off, const char *magic, struct luks *l, char *err, size_t errlen)
{
	uint8_t bin[BIN_SIZE];
	memset(l, 0, sizeof *l);
	if (pread_all(fd, bin, sizeof bin, off) < 0)
		return cfg_fail(err, errlen, 0, "cannot read a LUKS2 header: %s", errno ? strerror(errno) : "too short");
	if (memcmp(bin, magic, 6))
		return cfg_fail(err, errlen, 0, "no LUKS header (magic)");
	if (bin[6] != 0 || bin[7] != 2)
		return cfg_fail(err, errlen, 0, "LUKS version %d: img2vm's init opens LUKS2 only", bin[6] << 8 | bin[7]);
	uint64_t size = be64(bin + 8);
	if (size < 16384 || size > MAX_HDR || (size & (size - 1)) || be64(bin + 256) != off)
		return cfg_fail(err, errlen, 0, "LUKS2 header size %llu or offset is not valid", (unsigned long long)size);
	if (memcmp(bin + 72, "sha256", 7))
		return cfg_fail(err, errlen, 0, "LUKS2 header checksum \"%.31s\": only sha256 is supported", (char *)bin + 72);
	uint8_t *hdr = malloc(size);
	if (!hdr)
		return cfg_fail(err, errlen, 0, "out of memory");
	uint8_t want[32], got[32];
	memcpy(want, bin + 448, 32);
	if (pread_all(fd, hdr, size, off) < 0) {
		free(hdr);
		return cfg_fail(err, errlen, 0, "cannot read the %llu-byte LUKS2 header", (unsigned long long)size);
	}
	memset(hdr + 448, 0, 64);
	sha256(hdr, size, got);
	if (memcmp(want, got, 32)) {
		free(hdr);
		return cfg_fail(err, errlen, 0, "the LUKS2 header's checksum does not match (damaged header)");
	}
	memcpy(l->uuid, bin + 168, 40);
	l->uuid[40] = 0;
	l->hdr_size = size;
	l->json = (char *)hdr;
	memmove(l->json, hdr + BIN_SIZE, size - BIN_SIZE);
	l->json_len = size - BIN_SIZE;
	l->tok = calloc(MAX_TOKENS, sizeof *l->tok);
	if (!l->tok || (l->ntok = json_parse(l->json, l->json_len, l->tok, MAX_TOKENS)) < 0) {
		luks_free(l);
		return cfg_fail(err, errlen, 0, "the LUKS2 JSON metadata is not valid JSON img2vm's init can read");
	}
	return 0;
}

/*
 * The primary header, else (damaged) the secondary copy at one of the offsets the format allows (16 KiB to 4 MiB),
 * as cryptsetup falls back. Returns 0 with l->secondary set when the copy was used, or -1 with the primary's error.
 */
int luks_read(int fd, struct luks *l, char *err, size_t errlen)
{
	char second[256];
	if (read_header(fd, 0, "LUKS\xba\xbe", l, err, errlen) == 0)
		return 0;
	for (uint64_t off = 16384; off <= MAX_HDR; off *= 2) {
		if (read_header(fd, off, "SKUL\xba\xbe", l, second, sizeof second) == 0) {
			l->secondary = 1;
			return 0;
		}
	}
	memset(l, 0, sizeof *l);
	return -1;
}

#define J(obj, key) json_get(l->json, l->tok, (obj), (key))
#define IS(i, v) json_is(l->json, l->tok, (i), (v))

/* The data segment (the first of type crypt): cipher, offset, size, sector size, IV tweak. */
int luks_segment(const struct luks *l, struct luks_segment *sg, char *err, size_t errlen)
{
	int segs = J(0, "segments");
	int k = json_child(l->tok, segs, 0);
	if (k < 0)
		return cfg_fail(err, errlen, 0, "the LUKS2 header has no segment");
	int s = k + 1;
	char size[24];
	if (!IS(J(s, "type"), "crypt") || !IS(J(s, "encryption"), "aes-xts-plain64"))
		return cfg_fail(err, errlen, 0, "the LUKS2 segment is not an aes-xts-plain64 crypt segment (the only one supported)");
	uint64_t ss;
	if (json_u64(l->json, l->tok, J(s, "offset"), &sg->offset) < 0 ||
	    json_u64(l->json, l->tok, J(s, "iv_tweak"), &sg->iv_tweak) < 0 ||
	    json_u64(l->json, l->tok, J(s, "sector_size"), &ss) < 0 || (ss != 512 && ss != 1024 && ss != 2048 && ss != 4096) ||
	    sg->offset % 512 || json_string(l->json, l->tok, J(s, "size"), size, sizeof size) < 0)
		return cfg_fail(err, errlen, 0, "the LUKS2 segment's offset, size, iv_tweak or sector_size is not valid");
	sg->sector_size = (unsigned)ss;
	sg->size = 0; /* dynamic: the rest of the device */
	if (strcmp(size, "dynamic") && json_u64(l->json, l->tok, J(s, "size"), &sg->size) < 0)
		return cfg_fail(err, errlen, 0, "the LUKS2 segment's size \"%s\" is not valid", size);
	return 0;
}

/* Why keyslot s cannot be opened by this init, or NULL when it can. */
static const char *slot_unsupported(const struct luks *l, int s)
{
	static char why[160];
	char kdf[32] = "?";
	int k = J(s, "kdf"), af = J(s, "af"), area = J(s, "area");
	json_string(l->json, l->tok, J(k, "type"), kdf, sizeof kdf);
	if (!IS(J(s, "type"), "luks2"))
		return "not a luks2 keyslot";
	if (strcmp(kdf, "pbkdf2")) {
		snprintf(why, sizeof why, "its KDF is %s (img2vm's init derives keys with pbkdf2 only)", kdf);
		return why;
	}
	if (!IS(J(k, "hash"), "sha256"))
		return "its pbkdf2 hash is not sha256";
	if (!IS(J(af, "type"), "luks1") || !IS(J(af, "hash"), "sha256"))
		return "its anti-forensic split is not luks1 with sha256";
	if (!IS(J(area, "type"), "raw") || !IS(J(area, "encryption"), "aes-xts-plain64"))
		return "its area is not raw aes-xts-plain64";
	return NULL;
}

/* The anti-forensic merge: the running block XOR each stripe but the last, diffused by sha256; XOR the last. */
static void af_merge(const uint8_t *split, size_t klen, unsigned stripes, uint8_t *key)
{
	uint8_t d[MAX_KEY] = { 0 };
	for (unsigned s = 0; s + 1 < stripes; s++) {
		for (size_t i = 0; i < klen; i++)
			d[i] ^= split[s * klen + i];
		for (size_t off = 0, j = 0; off < klen; off += 32, j++) {
			uint8_t h[32], be[4] = { (uint8_t)(j >> 24), (uint8_t)(j >> 16), (uint8_t)(j >> 8), (uint8_t)j };
			size_t n = klen - off < 32 ? klen - off : 32;
			struct sha256 c;
			sha256_init(&c);
			sha256_update(&c, be, 4);
			sha256_update(&c, d + off, n);
			sha256_final(&c, h);
			memcpy(d + off, h, n);
		}
	}
	for (size_t i = 0; i < klen; i++)
		key[i] = d[i] ^ split[(size_t)(stripes - 1) * klen + i];
	explicit_bzero(d, sizeof d);
}

/* Whether key is the volume key: the pbkdf2-sha256 digest naming slot (its "keyslots" holds the slot's name). */
static int digest_ok(const struct luks *l, const char *slot, const uint8_t *key, size_t klen)
{
	int ds = J(0, "digests");
	for (int i = 0, k; (k = json_child(l->tok, ds, i)) >= 0; i++) {
		int d = k + 1, ks = J(d, "keyslots"), found = 0;
		for (int j = 0, e; (e = json_child(l->tok, ks, j)) >= 0; j++)
			found |= IS(e, slot);
		char salt64[128], dig64[128];
		uint8_t salt[96], want[64], got[64];
		uint64_t iter;
		if (!found || !IS(J(d, "type"), "pbkdf2") || !IS(J(d, "hash"), "sha256") ||
		    json_u64(l->json, l->tok, J(d, "iterations"), &iter) < 0 || iter == 0 || iter > 0xffffffffu ||
		    json_string(l->json, l->tok, J(d, "salt"), salt64, sizeof salt64) < 0 ||
		    json_string(l->json, l->tok, J(d, "digest"), dig64, sizeof dig64) < 0)
			continue;
		int sl = b64dec(salt64, salt, sizeof salt), dl = b64dec(dig64, want, sizeof want);
		if (sl <= 0 || dl <= 0)
			continue;
		pbkdf2_sha256(key, klen, salt, (size_t)sl, (uint32_t)iter, got, (size_t)dl);
		int ok = !memcmp(got, want, (size_t)dl);
		explicit_bzero(got, sizeof got);
		return ok;
	}
	return 0;
}

/* Opens one supported keyslot: 1 with key filled, 0 when the passphrase does not open it, -1 on an error. */
static int open_slot(int fd, const struct luks *l, int k, const char *pass, size_t plen, uint8_t *key, size_t *klen,
		     char *err, size_t errlen)
{
	int s = k + 1, kdf = J(s, "kdf"), area = J(s, "area");
	char slot[16], salt64[128];
	uint8_t salt[96];
	uint64_t ksize, asize, aoff, akey, stripes, iter;
	if (json_string(l->json, l->tok, k, slot, sizeof slot) < 0 || json_u64(l->json, l->tok, J(s, "key_size"), &ksize) < 0 ||
	    json_u64(l->json, l->tok, J(J(s, "af"), "stripes"), &stripes) < 0 ||
	    json_u64(l->json, l->tok, J(area, "offset"), &aoff) < 0 || json_u64(l->json, l->tok, J(area, "size"), &asize) < 0 ||
	    json_u64(l->json, l->tok, J(area, "key_size"), &akey) < 0 ||
	    json_u64(l->json, l->tok, J(kdf, "iterations"), &iter) < 0 ||
	    json_string(l->json, l->tok, J(kdf, "salt"), salt64, sizeof salt64) < 0)
		return cfg_fail(err, errlen, 0, "LUKS2 keyslot: a field is missing or not valid");
	int sl = b64dec(salt64, salt, sizeof salt);
	if ((ksize != 32 && ksize != 64) || (akey != 32 && akey != 64) || stripes == 0 || stripes > 64000 || iter == 0 ||
	    iter > 0xffffffffu || sl <= 0 || ksize * stripes > asize || asize > 64u << 20 || aoff % SECTOR ||
	    aoff < 2 * l->hdr_size)
		return cfg_fail(err, errlen, 0, "LUKS2 keyslot %s: sizes out of range", slot);
	size_t len = (size_t)((ksize * stripes + SECTOR - 1) / SECTOR * SECTOR);
	uint8_t *split = malloc(len), akeybuf[MAX_KEY];
	if (!split)
		return cfg_fail(err, errlen, 0, "out of memory");
	int rc = pread_all(fd, split, len, aoff) < 0 ? cfg_fail(err, errlen, 0, "cannot read LUKS2 keyslot %s's area", slot) : 0;
	if (rc == 0) {
		pbkdf2_sha256(pass, plen, salt, (size_t)sl, (uint32_t)iter, akeybuf, (size_t)akey);
		rc = xts_decrypt(akeybuf, (size_t)akey, split, len, err, errlen);
		explicit_bzero(akeybuf, sizeof akeybuf);
	}
	if (rc == 0) {
		af_merge(split, (size_t)ksize, (unsigned)stripes, key);
		*klen = (size_t)ksize;
		rc = digest_ok(l, slot, key, *klen);
		if (!rc)
			explicit_bzero(key, MAX_KEY);
	}
	explicit_bzero(split, len);
	free(split);
	return rc;
}

/*
 * Tries pass on every keyslot this init supports. 1: key (MAX_KEY bytes of room) and klen filled, slot set;
 * 0: no keyslot opens with it; -1: err says why nothing can be tried (no supported keyslot, I/O, crypto API).
 */
int luks_unlock(int fd, const struct luks *l, const char *pass, size_t plen, uint8_t *key, size_t *klen, int *slot,
		char *err, size_t errlen)
{
	int slots = J(0, "keyslots"), tried = 0;
	char why[400] = "";
	size_t wn = 0;
	for (int i = 0, k; (k = json_child(l->tok, slots, i)) >= 0; i++) {
		const char *no = slot_unsupported(l, k + 1);
		if (no) {
			char name[16] = "?";
			json_string(l->json, l->tok, k, name, sizeof name);
			if (wn + 1 < sizeof why)
				wn += (size_t)snprintf(why + wn, sizeof why - wn, "%skeyslot %s: %s", wn ? "; " : "", name, no);
			continue;
		}
		tried++;
		int r = open_slot(fd, l, k, pass, plen, key, klen, err, errlen);
		if (r != 0) {
			if (r > 0)
				*slot = atoi(l->json + l->tok[k].start);
			return r;
		}
	}
	if (!tried)
		return cfg_fail(err, errlen, 0, "no keyslot img2vm's init can open (%s); add a pbkdf2 one: cryptsetup luksAddKey --pbkdf pbkdf2",
				why[0] ? why : "the header has none");
	return 0;
}
