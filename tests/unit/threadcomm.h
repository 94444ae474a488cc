/*
 * threadcomm.h: a struct graft_comm whose processes are threads of one test, for the
 * data-parallel code's unit tests: every sendrecv posts its block and its destination,
 * waits for all, copies the block its source posted for it, and waits again, so that no
 * sender changes a buffer while it is read.  fail_at makes that call (counted on rank 0) fail on every rank with GRAFT_EIO.
 */
#ifndef GRAFT_TEST_THREADCOMM_H
#define GRAFT_TEST_THREADCOMM_H

#include <pthread.h>

#include "graft.h"

#define THREAD_MAX_RANKS 8

struct thread_world {
	int size;
	pthread_barrier_t barrier;
	const void *out[THREAD_MAX_RANKS];
	size_t out_n[THREAD_MAX_RANKS];
	int out_to[THREAD_MAX_RANKS];
	int fail_at;            /* -1: none */
	int calls;
};

void thread_world_init(struct thread_world *w, int size, int fail_at);
void thread_world_destroy(struct thread_world *w);
/* Rank rank's comm in w (c->ctx points at it, so it must stay where it is); any thread
 * of the rank may call it, one at a time. */
struct thread_comm {
	struct graft_comm comm;
	struct thread_world *w;
};
void thread_comm_init(struct thread_comm *c, struct thread_world *w, int rank);
/* Runs fn(args[r]) on w->size threads, r = 0 .. size - 1, and waits for them all. */
void thread_world_run(struct thread_world *w, void *(*fn)(void *), void *args, size_t arg_size);

#endif
