/*
 * hash.c: XXH64, the checksum of every .graft member.  It runs near memory speed
 * (several GB/s), so checking each tensor on read costs little next to reading it, and
 * it is specified well enough (xxhash.com's spec) to reimplement in any language that
 * reads the format.
 */
#include <string.h>

#include "base/base.h"

static const uint64_t P1 = 11400714785074694791ULL, P2 = 14029467366897019727ULL,
		      P3 = 1609587929392839161ULL, P4 = 9650029242287828579ULL,
		      P5 = 2870177450012600261ULL;

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Unaligned little-endian loads; the format is little-endian and so is every host graft
 * builds on (meson.build checks). */
static uint64_t load64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t load32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t round64(uint64_t acc, uint64_t input)
{
	acc += input * P2;
	acc = rotl(acc, 31);
	return acc * P1;
}

static uint64_t merge64(uint64_t acc, uint64_t val)
{
	acc ^= round64(0, val);
	return acc * P1 + P4;
}

#define DROP_CHUNK ((size_t)16 << 20)  /* a multiple of the 32-byte stripe */

/* XXH64; with map (the file mapping buf lies in), the pages of each 16 MiB read are let
 * go (io_drop_pages) once hashed, so that hashing a mapped file does not keep it in
 * memory. */
static uint64_t xxh64(const void *buf, size_t len, uint64_t seed, const void *map,
		      size_t map_len)
{
	int drop = map != NULL;
	const unsigned char *p = buf, *end = p + len;
	uint64_t h;

	if (len >= 32) {
		uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
		const unsigned char *limit = end - 32, *chunk = p;
		do {
			v1 = round64(v1, load64(p));
			v2 = round64(v2, load64(p + 8));
			v3 = round64(v3, load64(p + 16));
			v4 = round64(v4, load64(p + 24));
			p += 32;
			if (drop && (size_t)(p - chunk) == DROP_CHUNK) {
				io_drop_pages(map, map_len, chunk, DROP_CHUNK);
				chunk = p;
			}
		} while (p <= limit);
		h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
		h = merge64(h, v1);
		h = merge64(h, v2);
		h = merge64(h, v3);
		h = merge64(h, v4);
	} else {
		h = seed + P5;
	}
	h += (uint64_t)len;
	while (p + 8 <= end) {
		h ^= round64(0, load64(p));
		h = rotl(h, 27) * P1 + P4;
		p += 8;
	}
	if (p + 4 <= end) {
		h ^= (uint64_t)load32(p) * P1;
		h = rotl(h, 23) * P2 + P3;
		p += 4;
	}
	while (p < end) {
		h ^= (*p++) * P5;
		h = rotl(h, 11) * P1;
	}
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	h ^= h >> 32;
	if (drop)
		io_drop_pages(map, map_len, buf, len);
	return h;
}

uint64_t graft_xxh64(const void *buf, size_t len, uint64_t seed)
{
	return xxh64(buf, len, seed, NULL, 0);
}

uint64_t xxh64_mapped(const void *buf, size_t len, uint64_t seed, const void *map,
		      size_t map_len)
{
	return xxh64(buf, len, seed, map, map_len);
}
