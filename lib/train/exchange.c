/*
 * exchange.c: the gradients' mean over a group of processes, a bucket at a time, on a
 * thread of its own, so that the buckets of the last layers travel while backward is
 * still computing the first ones' (PyTorch DDP's overlap, train.c's buckets).  The
 * buckets are averaged in the order they are posted, which is the same on every process,
 * so the group's messages pair up; the transport must allow calls from this thread
 * (graft_comm.any_thread), one at a time: the trainer's own exchanges (running
 * statistics, the loss) come after exchange_wait.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

struct job {
	float *v;
	size_t n;
	int parts;
};

struct exchange {
	const struct graft_comm *comm;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake, done;
	struct job *jobs;               /* posted, in order */
	size_t n_jobs, cap, taken, finished;
	int quit, rc;
	struct graft_err err;           /* the first failure's */
};

void train_divide(float *v, size_t n, int parts)
{
	float by = (float)parts;

#pragma omp parallel for simd if (n > 65536)
	for (size_t i = 0; i < n; i++)
		v[i] /= by;
}

static void *worker(void *arg)
{
	struct exchange *x = arg;

	pthread_mutex_lock(&x->lock);
	for (;;) {
		while (!x->quit && x->taken == x->n_jobs)
			pthread_cond_wait(&x->wake, &x->lock);
		if (x->taken == x->n_jobs)
			break;
		struct job j = x->jobs[x->taken++];
		int failed = x->rc;
		pthread_mutex_unlock(&x->lock);
		struct graft_err err = {0};
		int rc = 0;
		if (!failed) {  /* (after a failure the group is broken: skip the rest) */
			if (j.parts > 1)
				train_divide(j.v, j.n, j.parts);
			rc = graft_comm_mean(x->comm, j.v, j.n, &err);
		}
		pthread_mutex_lock(&x->lock);
		if (rc && !x->rc) {
			x->rc = rc;
			x->err = err;
		}
		x->finished++;
		pthread_cond_signal(&x->done);
	}
	pthread_mutex_unlock(&x->lock);
	return NULL;
}

int exchange_new(struct exchange **out, const struct graft_comm *c, struct graft_err *err)
{
	struct exchange *x = calloc(1, sizeof(*x));

	*out = NULL;
	if (!x)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	x->comm = c;
	pthread_mutex_init(&x->lock, NULL);
	pthread_cond_init(&x->wake, NULL);
	pthread_cond_init(&x->done, NULL);
	if (pthread_create(&x->thread, NULL, worker, x)) {
		pthread_mutex_destroy(&x->lock);
		pthread_cond_destroy(&x->wake);
		pthread_cond_destroy(&x->done);
		free(x);
		return graft_err_set(err, GRAFT_ENOMEM, "cannot start the exchange's thread");
	}
	*out = x;
	return 0;
}

void exchange_free(struct exchange *x)
{
	if (!x)
		return;
	pthread_mutex_lock(&x->lock);
	x->quit = 1;
	pthread_cond_signal(&x->wake);
	pthread_mutex_unlock(&x->lock);
	pthread_join(x->thread, NULL);
	pthread_mutex_destroy(&x->lock);
	pthread_cond_destroy(&x->wake);
	pthread_cond_destroy(&x->done);
	free(x->jobs);
	free(x);
}

int exchange_post(struct exchange *x, float *v, size_t n, int parts, struct graft_err *err)
{
	int rc = 0;

	pthread_mutex_lock(&x->lock);
	if (x->n_jobs == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 16;
		struct job *jobs = realloc(x->jobs, cap * sizeof(*jobs));
		if (jobs) {
			x->jobs = jobs;
			x->cap = cap;
		} else {
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
	}
	if (!rc) {
		x->jobs[x->n_jobs++] = (struct job){v, n, parts};
		pthread_cond_signal(&x->wake);
	}
	pthread_mutex_unlock(&x->lock);
	return rc;
}

int exchange_wait(struct exchange *x, struct graft_err *err)
{
	int rc;

	pthread_mutex_lock(&x->lock);
	while (x->finished < x->n_jobs)
		pthread_cond_wait(&x->done, &x->lock);
	rc = x->rc;
	if (rc)
		*err = x->err;
	x->n_jobs = x->taken = x->finished = 0;
	x->rc = 0;
	pthread_mutex_unlock(&x->lock);
	return rc;
}
