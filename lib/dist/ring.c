/*
 * ring.c: the mean of a vector over a ring of processes (dist.h), in 2 (size - 1) steps
 * of one chunk each, so that each process sends and receives 2 (size - 1) / size of the
 * vector whatever the size.
 *
 * Reduce-scatter: at step k (0 .. size - 2) rank r sends its partial sum of chunk
 * (r - k) mod size to rank r + 1, and adds its own values of chunk (r - k - 1) mod size to
 * the partial sum it receives from rank r - 1.  Chunk c thus starts at rank c and its sum
 * is ((v[c] + v[c+1]) + v[c+2]) + ... + v[c-1], complete at rank c - 1 after size - 1
 * steps: rank r ends with chunk r + 1 whole, and divides it by size.  All-gather: the
 * complete chunks travel on round the ring, copied, not added.  Floating-point addition
 * is not associative, but its order here depends on the ranks alone.
 */
#include <string.h>

#include "dist/dist.h"

void ring_chunk(size_t n, int size, int c, size_t *at, size_t *len)
{
	size_t base = n / (size_t)size, extra = n % (size_t)size, i = (size_t)c;

	*len = base + (i < extra);
	*at = i * base + (i < extra ? i : extra);
}

static int mod(int a, int m)
{
	return ((a % m) + m) % m;
}

/* One step: chunk `out` of v to the next rank, chunk `in` from the previous into tmp. */
static int step(const struct graft_comm *r, float *v, size_t n, int out, int in, float *tmp,
		size_t *in_at, size_t *in_len, struct graft_err *err)
{
	size_t at, len;

	ring_chunk(n, r->size, out, &at, &len);
	ring_chunk(n, r->size, in, in_at, in_len);
	return r->sendrecv(r->ctx, v + at, len * sizeof(float), tmp, *in_len * sizeof(float),
			   err);
}

int ring_mean(const struct graft_comm *r, float *v, size_t n, float *tmp, struct graft_err *err)
{
	int size = r->size, rank = r->rank, rc;
	size_t at, len;

	if (size < 2)
		return 0;
	for (int k = 0; k < size - 1; k++) {            /* reduce-scatter */
		if ((rc = step(r, v, n, mod(rank - k, size), mod(rank - k - 1, size), tmp, &at,
			       &len, err)))
			return rc;
		for (size_t i = 0; i < len; i++)        /* what came before, then our own */
			v[at + i] = tmp[i] + v[at + i];
	}
	ring_chunk(n, size, mod(rank + 1, size), &at, &len);    /* whole here: the mean */
	for (size_t i = 0; i < len; i++)
		v[at + i] /= (float)size;
	for (int k = 0; k < size - 1; k++) {            /* all-gather */
		if ((rc = step(r, v, n, mod(rank + 1 - k, size), mod(rank - k, size), tmp, &at,
			       &len, err)))
			return rc;
		memcpy(v + at, tmp, len * sizeof(float));
	}
	return 0;
}
