/*
 * parallel.c: a loop over indices shared by worker threads, for work whose items are
 * independent (decoding the images of a folder).  Items are handed out in order from a
 * counter; the result cannot depend on which thread ran which item, and when items fail,
 * the error reported is that of the lowest failing index, so that a run gives the same
 * message whatever the thread count or timing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "base/base.h"

struct loop {
	int64_t n;
	int (*fn)(void *ctx, int64_t i, struct graft_err *err);
	void *ctx;
	atomic_int_fast64_t next;
	pthread_mutex_t lock;
	int64_t failed_at;              /* the lowest failing index; n: none */
	struct graft_err err;           /* its error */
};

static void *run(void *arg)
{
	struct loop *l = arg;
	struct graft_err err;

	for (;;) {
		int64_t i = atomic_fetch_add(&l->next, 1);
		if (i >= l->n)
			break;
		pthread_mutex_lock(&l->lock);
		int skip = i > l->failed_at;    /* a lower item failed: the result is decided */
		pthread_mutex_unlock(&l->lock);
		if (skip)
			break;
		memset(&err, 0, sizeof(err));
		if (l->fn(l->ctx, i, &err) == 0)
			continue;
		if (!err.code)
			err.code = GRAFT_EINVAL;
		pthread_mutex_lock(&l->lock);
		if (i < l->failed_at) {
			l->failed_at = i;
			l->err = err;
		}
		pthread_mutex_unlock(&l->lock);
	}
	return NULL;
}

int parallel_for(int threads, int64_t n, int (*fn)(void *ctx, int64_t i, struct graft_err *err),
		 void *ctx, struct graft_err *err)
{
	struct loop l = {.n = n, .fn = fn, .ctx = ctx, .failed_at = n};
	pthread_t tid[PARALLEL_MAX_THREADS];
	int started = 0;

	if (n <= 0)
		return 0;
	if (threads > PARALLEL_MAX_THREADS)
		threads = PARALLEL_MAX_THREADS;
	atomic_init(&l.next, 0);
	pthread_mutex_init(&l.lock, NULL);
	/* the caller's thread is one of the workers; a thread that cannot start is one
	 * fewer, not a failure */
	while (started + 1 < threads && started + 1 < n &&
	       pthread_create(&tid[started], NULL, run, &l) == 0)
		started++;
	run(&l);
	for (int t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
	pthread_mutex_destroy(&l.lock);
	if (l.failed_at == n)
		return 0;
	if (err)
		*err = l.err;
	return l.err.code;
}
