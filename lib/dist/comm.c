/*
 * comm.c: the group operations of graft.h's data-parallel section.
 *
 * The mean (gradients, running statistics) is a reduce-scatter then an all-gather, the
 * scheme of Horovod's and NCCL's ring all-reduce, with each process sending and receiving
 * 2 (size - 1) / size of the vector whatever the size.  The reduce-scatter is a pairwise
 * exchange rather than a ring: at step k (1 .. size - 1) rank r sends its chunk
 * (r + k) mod size to that rank and receives its own chunk r from rank (r - k) mod size.
 * The owner of a chunk thus holds every process's copy of it, and sums them in rank
 * order, ((v0 + v1) + v2) + ..., then divides by size: the same bits on every process and
 * in every run, and the same bits as one process that adds its micro-batches' gradients
 * in order (graft_train_opts.accumulate).  A ring's sums start at a different rank for
 * each chunk.  The all-gather passes the averaged chunks once round the ring.  The vector
 * goes a segment (COMM_SEGMENT floats) at a time, so the received copies need room for
 * (size - 1) / size of a segment.
 *
 * The sums of doubles and the agreement check gather everything everywhere (size - 1
 * ring steps of the whole vector): they are for small vectors.
 */
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

static int alone(const struct graft_comm *c)
{
	return !c || c->size < 2;
}

static int mod(int a, int m)
{
	return ((a % m) + m) % m;
}

void comm_chunk(size_t n, int size, int c, size_t *at, size_t *len)
{
	size_t base = n / (size_t)size, extra = n % (size_t)size, i = (size_t)c;

	*len = base + (i < extra);
	*at = i * base + (i < extra ? i : extra);
}

int graft_comm_allgather(const struct graft_comm *c, void *buf, size_t each,
			 struct graft_err *err)
{
	char *b = buf;
	int rc;

	if (alone(c))
		return 0;
	for (int k = 0; k < c->size - 1; k++) {
		int out = mod(c->rank - k, c->size), in = mod(c->rank - k - 1, c->size);
		if ((rc = c->sendrecv(c->ctx, mod(c->rank + 1, c->size), b + (size_t)out * each,
				      each, mod(c->rank - 1, c->size), b + (size_t)in * each, each,
				      err)))
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

/* One segment v (n floats) averaged; copies: room for size chunks of it (own unused). */
static int mean_segment(const struct graft_comm *c, float *v, size_t n, float *copies,
			struct graft_err *err)
{
	int size = c->size, rank = c->rank, rc;
	size_t at, len, stride, own_at, own_len;

	comm_chunk(n, size, 0, &at, &stride);           /* the largest chunk */
	comm_chunk(n, size, rank, &own_at, &own_len);
	for (int k = 1; k < size; k++) {                /* reduce-scatter: pairwise */
		int to = mod(rank + k, size), from = mod(rank - k, size);
		comm_chunk(n, size, to, &at, &len);
		if ((rc = c->sendrecv(c->ctx, to, v + at, len * sizeof(float), from,
				      copies + (size_t)from * stride, own_len * sizeof(float), err)))
			return rc;
	}
	/* the sum in rank order, into rank 0's copy (our own, on rank 0) */
	float *sum = rank == 0 ? v + own_at : copies;
	for (int r = 1; r < size; r++) {
		const float *x = r == rank ? v + own_at : copies + (size_t)r * stride;
		for (size_t i = 0; i < own_len; i++)
			sum[i] += x[i];
	}
	for (size_t i = 0; i < own_len; i++)
		v[own_at + i] = sum[i] / (float)size;
	for (int k = 0; k < size - 1; k++) {            /* all-gather: round the ring */
		int out = mod(rank - k, size), in = mod(rank - k - 1, size);
		size_t out_at, out_len;
		comm_chunk(n, size, out, &out_at, &out_len);
		comm_chunk(n, size, in, &at, &len);
		if ((rc = c->sendrecv(c->ctx, mod(rank + 1, size), v + out_at,
				      out_len * sizeof(float), mod(rank - 1, size), v + at,
				      len * sizeof(float), err)))
			return rc;
	}
	return 0;
}

int graft_comm_mean(const struct graft_comm *c, float *v, size_t n, struct graft_err *err)
{
	size_t seg = n < COMM_SEGMENT ? n : COMM_SEGMENT, at, stride;
	float *copies;
	int rc = 0;

	if (alone(c) || n == 0)
		return 0;
	comm_chunk(seg, c->size, 0, &at, &stride);
	if (!(copies = malloc(sizeof(float) * (stride * (size_t)c->size + 1))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory for the mean over %d "
				     "processes", c->size);
	for (size_t off = 0; !rc && off < n; off += seg)
		rc = mean_segment(c, v + off, n - off < seg ? n - off : seg, copies, err);
	free(copies);
	return rc;
}
