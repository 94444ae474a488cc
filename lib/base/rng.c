/*
 * rng.c: the one pseudo-random generator graft uses wherever a seed is given (data
 * sampling and splits, shuffling, Dropout masks, weight initialisation), so that the same
 * seed gives the same bytes on every machine and in every release: xoshiro256** (Blackman
 * and Vigna), seeded through splitmix64 as its authors recommend.  Not for cryptography.
 */
#include <math.h>

#include "base/base.h"

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void graft_rng_seed(struct graft_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

uint64_t graft_rng_next(struct graft_rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

double graft_rng_uniform(struct graft_rng *r)
{
	return (double)(graft_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t graft_rng_below(struct graft_rng *r, uint64_t n)
{
	/* Rejection of the top partial range: no modulo bias. */
	uint64_t limit;

	if (n <= 1)
		return 0;
	limit = UINT64_MAX - UINT64_MAX % n;
	for (;;) {
		uint64_t x = graft_rng_next(r);
		if (x < limit)
			return x % n;
	}
}

double graft_rng_normal(struct graft_rng *r)
{
	/* Box-Muller on (0, 1]; one value per call keeps the stream simple to reproduce. */
	double u = 1.0 - graft_rng_uniform(r), v = graft_rng_uniform(r);
	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

void graft_rng_shuffle(struct graft_rng *r, int64_t *v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)graft_rng_below(r, i);
		int64_t t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}
