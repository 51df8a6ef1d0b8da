/* SHA-256, HMAC-SHA256 and PBKDF2-HMAC-SHA256 (FIPS 180-4, RFC 2104, RFC 8018): what LUKS2 keyslots and digests use. */
#include <string.h>

#include "init.h"

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* PBKDF2 spends all its time here (1.2 million calls for a 600,000-iteration 512-bit key): built for speed. */
__attribute__((optimize("O2"))) static void compress(uint32_t h[8], const uint8_t b[64])
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
		uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
		hh = g, g = f, f = e, e = d + t1, d = c, c = bb, bb = a, a = t1 + t2;
	}
	h[0] += a, h[1] += bb, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void sha256_init(struct sha256 *c)
{
	static const uint32_t H0[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	memcpy(c->h, H0, sizeof H0);
	c->len = 0;
	c->n = 0;
}

void sha256_update(struct sha256 *c, const void *data, size_t n)
{
	const uint8_t *p = data;
	c->len += n;
	while (n > 0) {
		size_t k = 64 - c->n < n ? 64 - c->n : n;
		memcpy(c->buf + c->n, p, k);
		c->n += k, p += k, n -= k;
		if (c->n == 64) {
			compress(c->h, c->buf);
			c->n = 0;
		}
	}
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

void sha256_final(struct sha256 *c, uint8_t out[32])
{
	uint64_t bits = c->len * 8;
	uint8_t pad = 0x80, zero = 0, len[8];
	sha256_update(c, &pad, 1);
	while (c->n != 56)
		sha256_update(c, &zero, 1);
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_update(c, len, 8);
	for (int i = 0; i < 8; i++)
		put_be32(out + 4 * i, c->h[i]);
	explicit_bzero(c, sizeof *c);
}

void sha256(const void *data, size_t n, uint8_t out[32])
{
	struct sha256 c;
	sha256_init(&c);
	sha256_update(&c, data, n);
	sha256_final(&c, out);
}

/* The inner and outer states after the padded key: every HMAC under this key starts from them. */
static void hmac_states(const uint8_t *key, size_t klen, struct sha256 *in, struct sha256 *out)
{
	uint8_t k[64] = { 0 }, pad[64];
	if (klen > 64)
		sha256(key, klen, k);
	else
		memcpy(k, key, klen);
	for (int i = 0; i < 64; i++)
		pad[i] = k[i] ^ 0x36;
	sha256_init(in);
	sha256_update(in, pad, 64);
	for (int i = 0; i < 64; i++)
		pad[i] = k[i] ^ 0x5c;
	sha256_init(out);
	sha256_update(out, pad, 64);
	explicit_bzero(k, sizeof k);
	explicit_bzero(pad, sizeof pad);
}

void hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t mac[32])
{
	struct sha256 in, out;
	uint8_t inner[32];
	hmac_states(key, klen, &in, &out);
	sha256_update(&in, msg, mlen);
	sha256_final(&in, inner);
	sha256_update(&out, inner, 32);
	sha256_final(&out, mac);
	explicit_bzero(inner, sizeof inner);
}

/*
 * One HMAC of a 32-byte message from the precomputed states: the message is one block already padded (0x80, zeros,
 * the length of 64 + 32 bytes in bits), so an iteration costs exactly two compressions.
 */
static void hmac32(const uint32_t in[8], const uint32_t out[8], uint8_t block[64], uint8_t u[32])
{
	uint32_t h[8];
	memcpy(h, in, sizeof h);
	memcpy(block, u, 32);
	compress(h, block);
	for (int i = 0; i < 8; i++)
		put_be32(block + 4 * i, h[i]);
	memcpy(h, out, sizeof h);
	compress(h, block);
	for (int i = 0; i < 8; i++)
		put_be32(u + 4 * i, h[i]);
	explicit_bzero(h, sizeof h);
}

void pbkdf2_sha256(const void *pass, size_t plen, const void *salt, size_t slen, uint32_t iterations, uint8_t *dk,
		   size_t dklen)
{
	struct sha256 in, out, c;
	uint8_t u[32], t[32], block[64] = { 0 }, be[4];
	hmac_states(pass, plen, &in, &out);
	block[32] = 0x80;
	block[62] = (64 + 32) * 8 >> 8;
	block[63] = (uint8_t)((64 + 32) * 8);
	for (uint32_t i = 1; dklen > 0; i++) {
		c = in;
		sha256_update(&c, salt, slen);
		put_be32(be, i);
		sha256_update(&c, be, 4);
		sha256_final(&c, u);
		c = out;
		sha256_update(&c, u, 32);
		sha256_final(&c, u);
		memcpy(t, u, 32);
		for (uint32_t j = 1; j < iterations; j++) {
			hmac32(in.h, out.h, block, u);
			for (int k = 0; k < 32; k++)
				t[k] ^= u[k];
		}
		size_t n = dklen < 32 ? dklen : 32;
		memcpy(dk, t, n);
		dk += n, dklen -= n;
	}
	explicit_bzero(&in, sizeof in);
	explicit_bzero(&out, sizeof out);
	explicit_bzero(u, sizeof u);
	explicit_bzero(t, sizeof t);
	explicit_bzero(block, sizeof block);
}
