/*
 * test_comm.c: lib/dist/comm.c's group operations over threads as processes
 * (threadcomm.h), for 1 to 5 and 8 ranks: the all-gather gives every rank every block;
 * the sum is the rank-order sum, the same bits everywhere; agreement names the lowest
 * rank that differs; the mean matches ring.c's; a broken link's error comes back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "threadcomm.h"

#define N 37

struct proc {
	struct thread_comm c;
	char gathered[THREAD_MAX_RANKS * 5];
	double sum[N];
	int differs, differs_same;
	float mean[3];
	int rc;
};

static double value(int rank, int i)
{
	/* magnitudes far apart, so that another order of addition would show */
	return (rank % 2 ? 1e16 : 1.0) * (i + 1) + rank * 0.25;
}

static void *run(void *arg)
{
	struct proc *p = arg;
	const struct graft_comm *c = &p->c.comm;
	struct graft_err err = {0};

	memset(p->gathered, 0, sizeof(p->gathered));
	memcpy(p->gathered + 5 * c->rank, "rank", 4);
	p->gathered[5 * c->rank + 4] = (char)('0' + c->rank);
	for (int i = 0; i < N; i++)
		p->sum[i] = value(c->rank, i);
	for (int i = 0; i < 3; i++)
		p->mean[i] = (float)(c->rank + i);
	p->rc = graft_comm_allgather(c, p->gathered, 5, &err);
	if (!p->rc)
		p->rc = graft_comm_sum(c, p->sum, N, &err);
	if (!p->rc)     /* ranks 3 and up hold another value */
		p->rc = graft_comm_agree(c, c->rank >= 3 ? 99 : 7, &p->differs, &err);
	if (!p->rc)
		p->rc = graft_comm_agree(c, 7, &p->differs_same, &err);
	if (!p->rc)
		p->rc = graft_comm_mean(c, p->mean, 3, &err);
	return NULL;
}

static void test_operations(void **state)
{
	static const int sizes[] = {1, 2, 3, 4, 5, 8};
	struct proc p[THREAD_MAX_RANKS];

	(void)state;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int size = sizes[s];
		struct thread_world w;
		thread_world_init(&w, size, -1);
		for (int r = 0; r < size; r++)
			thread_comm_init(&p[r].c, &w, r);
		thread_world_run(&w, run, p, sizeof(p[0]));
		thread_world_destroy(&w);
		for (int r = 0; r < size; r++) {
			assert_int_equal(p[r].rc, 0);
			for (int k = 0; k < size; k++) {
				char want[5] = {'r', 'a', 'n', 'k', (char)('0' + k)};
				assert_memory_equal(p[r].gathered + 5 * k, want, 5);
			}
			for (int i = 0; i < N; i++) {
				double want = value(0, i);
				for (int k = 1; k < size; k++)
					want += value(k, i);
				assert_memory_equal(&p[r].sum[i], &want, sizeof(want));
			}
			assert_int_equal(p[r].differs, size > 3 ? 3 : -1);
			assert_int_equal(p[r].differs_same, -1);
			for (int i = 0; i < 3; i++)     /* the mean of i .. i + size - 1 */
				assert_true(p[r].mean[i] == (float)i + (float)(size - 1) / 2);
		}
	}
}

static void test_transport_error(void **state)
{
	struct proc p[3];
	struct thread_world w;

	(void)state;
	thread_world_init(&w, 3, 1);
	for (int r = 0; r < 3; r++)
		thread_comm_init(&p[r].c, &w, r);
	thread_world_run(&w, run, p, sizeof(p[0]));
	thread_world_destroy(&w);
	for (int r = 0; r < 3; r++)
		assert_int_equal(p[r].rc, GRAFT_EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_operations),
		cmocka_unit_test(test_transport_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
