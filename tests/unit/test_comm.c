/*
 * test_comm.c: lib/dist/comm.c's group operations over threads as processes
 * (threadcomm.h), for 1 to 5 and 8 ranks: the all-gather gives every rank every block;
 * the sum of doubles is the rank-order sum, the same bits everywhere; agreement names
 * the lowest rank that differs; the mean of floats, for vectors shorter than the group,
 * of a chunk each, uneven, and longer than a segment, is the rank-order sum divided by
 * the size, bit for bit on every rank, within 1e-6 of the exact mean; a broken link's
 * error comes back on every rank.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dist/dist.h"

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

/* ---- the mean of floats ---- */

struct mean_proc {
	struct thread_comm c;
	float *v;
	size_t n;
	int rc;
};

static void *run_mean(void *arg)
{
	struct mean_proc *p = arg;
	struct graft_err err = {0};

	p->rc = graft_comm_mean(&p->c.comm, p->v, p->n, &err);
	return NULL;
}

static float value_f(int rank, size_t i)
{
	/* values of several magnitudes, so that another order of addition would show */
	float scale = powf(10.0f, (float)((i + (size_t)rank) % 7) - 3);
	return (float)sin((double)(rank * 1000 + (int)(i % 100003))) * scale;
}

/* graft_comm_mean on size threads over n values each; the first rank's error. */
static int mean_over(int size, size_t n, int fail_at, float **out)
{
	struct thread_world w;
	struct mean_proc p[THREAD_MAX_RANKS];

	thread_world_init(&w, size, fail_at);
	for (int r = 0; r < size; r++) {
		for (size_t i = 0; i < n; i++)
			out[r][i] = value_f(r, i);
		p[r] = (struct mean_proc){.v = out[r], .n = n};
		thread_comm_init(&p[r].c, &w, r);
	}
	thread_world_run(&w, run_mean, p, sizeof(p[0]));
	thread_world_destroy(&w);
	for (int r = 1; r < size; r++)
		assert_int_equal(p[r].rc, p[0].rc);
	return p[0].rc;
}

static void test_chunks(void **state)
{
	size_t at, len, total = 0;

	(void)state;
	for (int c = 0; c < 4; c++) {           /* 10 values over 4: 3, 3, 2, 2 */
		comm_chunk(10, 4, c, &at, &len);
		assert_int_equal(at, total);
		assert_int_equal(len, c < 2 ? 3 : 2);
		total += len;
	}
	comm_chunk(2, 5, 4, &at, &len);         /* more ranks than values: empty chunks */
	assert_true(at == 2 && len == 0);
}

static void test_mean(void **state)
{
	static const int sizes[] = {1, 2, 3, 4, 5, 8};
	const size_t lengths[] = {1, 3, 7, 8, 1000, 1003, COMM_SEGMENT + 5};
	float *out[THREAD_MAX_RANKS];

	(void)state;
	for (int r = 0; r < THREAD_MAX_RANKS; r++)
		assert_non_null(out[r] = malloc(sizeof(float) * (COMM_SEGMENT + 5)));
	for (size_t a = 0; a < sizeof(sizes) / sizeof(sizes[0]); a++)
		for (size_t b = 0; b < sizeof(lengths) / sizeof(lengths[0]); b++) {
			int size = sizes[a];
			size_t n = lengths[b];
			if (n > 1003 && size > 4)
				continue;       /* (the long vector: 1 to 4 ranks suffice) */
			assert_int_equal(mean_over(size, n, -1, out), 0);
			for (size_t i = 0; i < n; i++) {
				/* rank order, then divided by the size */
				float sum = value_f(0, i);
				double exact = 0, mag = 0;
				for (int k = 1; k < size; k++)
					sum = sum + value_f(k, i);
				for (int k = 0; k < size; k++) {
					exact += value_f(k, i);
					mag += fabs(value_f(k, i));
				}
				float want = sum / (float)size;
				for (int r = 0; r < size; r++)
					if (memcmp(&out[r][i], &want, sizeof(float)))
						fail_msg("%d ranks, %zu values: rank %d's value %zu is "
							 "%.9g, not %.9g", size, n, r, i, out[r][i],
							 want);
				/* float's rounding, against the values' magnitude (the sum
				 * itself may cancel to next to nothing) */
				assert_true(fabs(out[0][i] - exact / size) <= 1e-6 * mag / size);
			}
		}
	for (int r = 0; r < THREAD_MAX_RANKS; r++)
		free(out[r]);
}

static void test_mean_transport_error(void **state)
{
	float *out[3];

	(void)state;
	for (int r = 0; r < 3; r++)
		assert_non_null(out[r] = malloc(sizeof(float) * 10));
	assert_int_equal(mean_over(3, 10, 2, out), GRAFT_EIO);
	for (int r = 0; r < 3; r++)
		free(out[r]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_operations),
		cmocka_unit_test(test_transport_error),
		cmocka_unit_test(test_chunks),
		cmocka_unit_test(test_mean),
		cmocka_unit_test(test_mean_transport_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
