/* threadcomm.c: threads as the processes of a struct graft_comm (threadcomm.h). */
#include <string.h>

#include "threadcomm.h"

static int sendrecv(void *ctx, int to, const void *send, size_t send_n, int from,
		    void *recv, size_t recv_n, struct graft_err *err)
{
	struct thread_comm *c = ctx;
	struct thread_world *w = c->w;
	int rank = c->comm.rank, fail, for_us;
	size_t sent;

	w->out[rank] = send;
	w->out_n[rank] = send_n;
	w->out_to[rank] = to;
	pthread_barrier_wait(&w->barrier);
	/* (read before the next barrier: after it, a rank may post its next send) */
	fail = w->calls == w->fail_at;
	sent = w->out_n[from];
	for_us = w->out_to[from] == rank;
	if (!fail && for_us && sent == recv_n)
		memcpy(recv, w->out[from], recv_n);
	pthread_barrier_wait(&w->barrier);
	if (rank == 0)
		w->calls++;
	pthread_barrier_wait(&w->barrier);
	if (fail)
		return graft_err_set(err, GRAFT_EIO, "the link broke");
	if (!for_us || sent != recv_n)
		return graft_err_set(err, GRAFT_EINVAL, "rank %d sent %zu bytes to rank %d; rank %d "
				     "expected %zu", from, sent, w->out_to[from], rank, recv_n);
	return 0;
}

void thread_world_init(struct thread_world *w, int size, int fail_at)
{
	memset(w, 0, sizeof(*w));
	w->size = size;
	w->fail_at = fail_at;
	pthread_barrier_init(&w->barrier, NULL, (unsigned)size);
}

void thread_world_destroy(struct thread_world *w)
{
	pthread_barrier_destroy(&w->barrier);
}

void thread_comm_init(struct thread_comm *c, struct thread_world *w, int rank)
{
	c->w = w;
	c->comm = (struct graft_comm){.rank = rank, .size = w->size, .sendrecv = sendrecv,
				      .ctx = c, .any_thread = 1};
}

void thread_world_run(struct thread_world *w, void *(*fn)(void *), void *args, size_t arg_size)
{
	pthread_t t[THREAD_MAX_RANKS];

	for (int r = 0; r < w->size; r++)
		pthread_create(&t[r], NULL, fn, (char *)args + (size_t)r * arg_size);
	for (int r = 0; r < w->size; r++)
		pthread_join(t[r], NULL);
}
