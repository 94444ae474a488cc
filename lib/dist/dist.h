/*
 * dist.h: the private header of lib/dist/: data-parallel training's communication over
 * struct graft_comm (graft.h), whose transport (MPI in the tools, threads in the tests)
 * is the caller's.  comm.c implements graft.h's graft_comm_* functions.
 */
#ifndef GRAFT_DIST_H
#define GRAFT_DIST_H

#include "base/base.h"

/* Floats per segment of graft_comm_mean: the vector is averaged a segment at a time, so
 * that a process needs (size - 1) / size of a segment of room, not of the vector. */
#define COMM_SEGMENT ((size_t)1 << 22)

/* Chunk c of n values cut into size chunks: [*at, *at + *len).  The first n % size
 * chunks hold one value more. */
void comm_chunk(size_t n, int size, int c, size_t *at, size_t *len);

#endif
