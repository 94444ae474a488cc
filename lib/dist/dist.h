/*
 * dist.h: the private header of lib/dist/: data-parallel training's communication.
 * ring.c averages a vector over the processes of a group (gradients, running
 * statistics) with ring reduce-scatter and all-gather, the bandwidth-optimal scheme of
 * Horovod and NCCL, with every sum taken in an order fixed by the ranks alone: the result
 * is the same bits on every process and in every run, whatever the timing.  The
 * transport (MPI in graft-train, threads in the tests) is the caller's: struct graft_comm
 * (graft.h).  comm.c gathers and sums small vectors over the same ring.
 */
#ifndef GRAFT_DIST_H
#define GRAFT_DIST_H

#include "base/base.h"

/* Chunk c of n values cut into size chunks: [*at, *at + *len).  The first n % size
 * chunks hold one value more. */
void ring_chunk(size_t n, int size, int c, size_t *at, size_t *len);

/* v (n floats) becomes the mean of every process's v.  Chunk c is summed along the ring
 * starting at rank c: ((v[c] + v[c+1]) + ...) + v[c-1] (ranks modulo size), then divided
 * by size, so that every process holds the same bits, run after run.  tmp: room for the
 * largest chunk (ring_chunk of chunk 0).  Errors are the transport's. */
int ring_mean(const struct graft_comm *r, float *v, size_t n, float *tmp,
	      struct graft_err *err);

#endif
