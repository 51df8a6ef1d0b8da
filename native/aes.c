/* AES (FIPS 197) and XTS decryption (IEEE 1619) for LUKS2 keyslot areas: no kernel crypto API needed, host-testable. */

/*
 * Only the keyslot area (a few hundred KiB, once per passphrase try) is decrypted here; the data itself is dm-crypt's.
 * The tables are computed at first use from the field arithmetic rather than written out. Round keys are wiped.
 */
#include <string.h>

#include "init.h"

static uint8_t SBOX[256], INV[256];

static uint8_t xtime(uint8_t x)
{
	return (uint8_t)(x << 1 ^ (x & 0x80 ? 0x1b : 0));
}

static uint8_t gmul(uint8_t a, uint8_t b)
{
	uint8_t r = 0;
	for (; b; b >>= 1, a = xtime(a))
		if (b & 1)
			r ^= a;
	return r;
}

static uint8_t rotl8(uint8_t x, int n)
{
	return (uint8_t)(x << n | x >> (8 - n));
}

/* The S-box: each byte's multiplicative inverse, walked as powers of the generator 3, then the affine map. */
static void tables(void)
{
	if (SBOX[0])
		return;
	uint8_t p = 1, q = 1;
	do {
		p = p ^ xtime(p); /* p * 3 */
		q ^= (uint8_t)(q << 1);
		q ^= (uint8_t)(q << 2);
		q ^= (uint8_t)(q << 4);
		if (q & 0x80)
			q ^= 0x09; /* q / 3, so q stays p's inverse */
		SBOX[p] = (uint8_t)(q ^ rotl8(q, 1) ^ rotl8(q, 2) ^ rotl8(q, 3) ^ rotl8(q, 4) ^ 0x63);
	} while (p != 1);
	SBOX[0] = 0x63;
	for (int i = 0; i < 256; i++)
		INV[SBOX[i]] = (uint8_t)i;
}

/* Key expansion for a 16- or 32-byte key; returns the number of rounds. */
int aes_key(struct aes *a, const uint8_t *key, size_t len)
{
	tables();
	int nk = (int)len / 4, nr = nk + 6;
	uint8_t *w = a->rk, rcon = 1;
	memcpy(w, key, len);
	for (int i = nk; i < 4 * (nr + 1); i++) {
		uint8_t t[4];
		memcpy(t, w + 4 * (i - 1), 4);
		if (i % nk == 0) {
			uint8_t f = t[0];
			t[0] = SBOX[t[1]] ^ rcon, t[1] = SBOX[t[2]], t[2] = SBOX[t[3]], t[3] = SBOX[f];
			rcon = xtime(rcon);
		} else if (nk > 6 && i % nk == 4) {
			for (int k = 0; k < 4; k++)
				t[k] = SBOX[t[k]];
		}
		for (int k = 0; k < 4; k++)
			w[4 * i + k] = w[4 * (i - nk) + k] ^ t[k];
	}
	a->rounds = nr;
	return nr;
}

static void add_key(uint8_t s[16], const uint8_t *k)
{
	for (int i = 0; i < 16; i++)
		s[i] ^= k[i];
}

void aes_encrypt(const struct aes *a, uint8_t s[16])
{
	add_key(s, a->rk);
	for (int r = 1; r <= a->rounds; r++) {
		uint8_t t[16];
		for (int i = 0; i < 16; i++) /* SubBytes and ShiftRows: row i%4 moves left by its index */
			t[i] = SBOX[s[(i + 4 * (i % 4)) % 16]];
		if (r < a->rounds)
			for (int c = 0; c < 16; c += 4) {
				uint8_t a0 = t[c], a1 = t[c + 1], a2 = t[c + 2], a3 = t[c + 3], all = a0 ^ a1 ^ a2 ^ a3;
				t[c] ^= all ^ xtime(a0 ^ a1);
				t[c + 1] ^= all ^ xtime(a1 ^ a2);
				t[c + 2] ^= all ^ xtime(a2 ^ a3);
				t[c + 3] ^= all ^ xtime(a3 ^ a0);
			}
		memcpy(s, t, 16);
		add_key(s, a->rk + 16 * r);
	}
}

void aes_decrypt(const struct aes *a, uint8_t s[16])
{
	add_key(s, a->rk + 16 * a->rounds);
	for (int r = a->rounds - 1; r >= 0; r--) {
		uint8_t t[16];
		for (int i = 0; i < 16; i++) /* InvShiftRows and InvSubBytes */
			t[(i + 4 * (i % 4)) % 16] = INV[s[i]];
		add_key(t, a->rk + 16 * r);
		if (r > 0)
			for (int c = 0; c < 16; c += 4) {
				uint8_t a0 = t[c], a1 = t[c + 1], a2 = t[c + 2], a3 = t[c + 3];
				t[c] = gmul(a0, 14) ^ gmul(a1, 11) ^ gmul(a2, 13) ^ gmul(a3, 9);
				t[c + 1] = gmul(a0, 9) ^ gmul(a1, 14) ^ gmul(a2, 11) ^ gmul(a3, 13);
				t[c + 2] = gmul(a0, 13) ^ gmul(a1, 9) ^ gmul(a2, 14) ^ gmul(a3, 11);
				t[c + 3] = gmul(a0, 11) ^ gmul(a1, 13) ^ gmul(a2, 9) ^ gmul(a3, 14);
			}
		memcpy(s, t, 16);
	}
}

/*
 * aes-xts-plain64 decryption in place of whole 512-byte sectors, the first numbered 0: key is K1 || K2 (32 or 64
 * bytes); each sector's tweak is K2's encryption of its number (little-endian), multiplied by x per block.
 */
int xts_decrypt(const uint8_t *key, size_t klen, uint8_t *buf, size_t len, char *err, size_t errlen)
{
	if ((klen != 32 && klen != 64) || len % 512)
		return cfg_fail(err, errlen, 0, "xts: a %zu-byte key or %zu bytes are not supported", klen, len);
	struct aes k1, k2;
	aes_key(&k1, key, klen / 2);
	aes_key(&k2, key + klen / 2, klen / 2);
	for (size_t at = 0; at < len; at += 512) {
		uint8_t t[16] = { 0 };
		uint64_t sector = at / 512;
		for (int i = 0; i < 8; i++)
			t[i] = (uint8_t)(sector >> (8 * i));
		aes_encrypt(&k2, t);
		for (size_t b = at; b < at + 512; b += 16) {
			for (int i = 0; i < 16; i++)
				buf[b + i] ^= t[i];
			aes_decrypt(&k1, buf + b);
			for (int i = 0; i < 16; i++)
				buf[b + i] ^= t[i];
			uint8_t carry = t[15] >> 7;
			for (int i = 15; i > 0; i--)
				t[i] = (uint8_t)(t[i] << 1 | t[i - 1] >> 7);
			t[0] = (uint8_t)(t[0] << 1 ^ (carry ? 0x87 : 0));
		}
		explicit_bzero(t, sizeof t);
	}
	explicit_bzero(&k1, sizeof k1);
	explicit_bzero(&k2, sizeof k2);
	return 0;
}
