/*
 * comm.c: the group operations of graft.h's data-parallel section over the ring of
 * struct graft_comm.  The all-gather passes every process's block once round the ring
 * (size - 1 steps, each process forwarding the block it received last); sums over the
 * gathered blocks are taken in rank order, so every process computes the same bits.
 * Meant for small vectors (statistics, counts, checksums): the gradients' mean is
 * ring_mean's, which moves 2 (size - 1) / size of a vector instead of size - 1 times it.
 */
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

static int alone(const struct graft_comm *c)
{
	return !c || c->size < 2;
}

int graft_comm_allgather(const struct graft_comm *c, void *buf, size_t each,
			 struct graft_err *err)
{
	char *b = buf;
	int rc;

	if (alone(c))
		return 0;
	for (int k = 0; k < c->size - 1; k++) {
		int out = ((c->rank - k) % c->size + c->size) % c->size;
		int in = ((c->rank - k - 1) % c->size + c->size) % c->size;
		if ((rc = c->sendrecv(c->ctx, b + (size_t)out * each, each, b + (size_t)in * each,
				      each, err)))
			return rc;
	}
	return 0;
}

int graft_comm_sum(const struct graft_comm *c, double *v, size_t n, struct graft_err *err)
{
	double *all;
	int rc;

	if (alone(c) || n == 0)
		return 0;
	if (!(all = malloc(sizeof(double) * n * (size_t)c->size)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory for a sum over %d processes",
				     c->size);
	memcpy(all + n * (size_t)c->rank, v, sizeof(double) * n);
	if (!(rc = graft_comm_allgather(c, all, sizeof(double) * n, err)))
		for (size_t i = 0; i < n; i++) {
			double s = all[i];
			for (int r = 1; r < c->size; r++)
				s += all[n * (size_t)r + i];
			v[i] = s;
		}
	free(all);
	return rc;
}

int graft_comm_agree(const struct graft_comm *c, uint64_t value, int *differs,
		     struct graft_err *err)
{
	uint64_t *all;
	int rc;

	*differs = -1;
	if (alone(c))
		return 0;
	if (!(all = calloc((size_t)c->size, sizeof(*all))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	all[c->rank] = value;
	if (!(rc = graft_comm_allgather(c, all, sizeof(*all), err)))
		for (int r = 1; r < c->size && *differs < 0; r++)
			if (all[r] != all[0])
				*differs = r;
	free(all);
	return rc;
}

int graft_comm_mean(const struct graft_comm *c, float *v, size_t n, struct graft_err *err)
{
	size_t at, len;
	float *tmp;
	int rc;

	if (alone(c) || n == 0)
		return 0;
	ring_chunk(n, c->size, 0, &at, &len);
	if (!(tmp = malloc(sizeof(float) * (len + 1))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory for the mean over %d "
				     "processes", c->size);
	rc = ring_mean(c, v, n, tmp, err);
	free(tmp);
	return rc;
}
