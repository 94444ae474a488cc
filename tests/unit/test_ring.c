/*
 * test_ring.c: lib/dist/ring.c's mean over a ring of processes, with threads for the
 * processes and shared mailboxes for the transport: for 1 to 5 and 8 ranks and vectors
 * shorter than the ring, of a chunk each, and uneven, every rank ends with the same bits,
 * the sum of each chunk taken in the documented order (from rank c round to rank c - 1),
 * within 1e-6 of the exact mean (relative to the values' magnitude); and a failing
 * transport's error comes back.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dist/dist.h"
#include "threadcomm.h"

#define MAX_RANKS THREAD_MAX_RANKS

struct proc {
	struct thread_comm c;
	float *v;
	size_t n;
	int rc;
};

static void *run(void *arg)
{
	struct proc *p = arg;
	const struct graft_comm r = p->c.comm;
	float *tmp = malloc(sizeof(float) * (p->n / (size_t)r.size + 1));
	struct graft_err err = {0};

	p->rc = ring_mean(&r, p->v, p->n, tmp, &err);
	free(tmp);
	return NULL;
}

static float value(int rank, size_t i)
{
	/* values of several magnitudes, so that the order of addition shows */
	float scale = powf(10.0f, (float)((i + (size_t)rank) % 7) - 3);
	return (float)sin((double)(rank * 1000 + (int)i)) * scale;
}

/* Runs ring_mean on size threads over n values; returns 0 or the first rank's error. */
static int mean_over(int size, size_t n, int fail_at, float out[][1100])
{
	struct thread_world w;
	struct proc p[MAX_RANKS];

	thread_world_init(&w, size, fail_at);
	for (int r = 0; r < size; r++) {
		for (size_t i = 0; i < n; i++)
			out[r][i] = value(r, i);
		p[r] = (struct proc){.v = out[r], .n = n};
		thread_comm_init(&p[r].c, &w, r);
	}
	thread_world_run(&w, run, p, sizeof(p[0]));
	thread_world_destroy(&w);
	return p[0].rc;
}

static void test_chunks(void **state)
{
	size_t at, len, total = 0;

	(void)state;
	for (int c = 0; c < 4; c++) {           /* 10 values over 4: 3, 3, 2, 2 */
		ring_chunk(10, 4, c, &at, &len);
		assert_int_equal(at, total);
		assert_int_equal(len, c < 2 ? 3 : 2);
		total += len;
	}
	ring_chunk(2, 5, 4, &at, &len);         /* more ranks than values: empty chunks */
	assert_true(at == 2 && len == 0);
}

static void test_mean(void **state)
{
	static const int sizes[] = {1, 2, 3, 4, 5, 8};
	static const size_t lengths[] = {1, 3, 7, 8, 1000, 1003};
	static float out[MAX_RANKS][1100];

	(void)state;
	for (size_t a = 0; a < sizeof(sizes) / sizeof(sizes[0]); a++)
		for (size_t b = 0; b < sizeof(lengths) / sizeof(lengths[0]); b++) {
			int size = sizes[a];
			size_t n = lengths[b];
			assert_int_equal(mean_over(size, n, -1, out), 0);
			for (int c = 0; c < size; c++) {
				size_t at, len;
				ring_chunk(n, size, c, &at, &len);
				for (size_t i = at; i < at + len; i++) {
					/* the documented order: rank c, c + 1, ..., c - 1 */
					float sum = value(c, i);
					double exact = 0, mag = 0;
					for (int k = 1; k < size; k++)
						sum = sum + value((c + k) % size, i);
					for (int k = 0; k < size; k++) {
						exact += value(k, i);
						mag += fabs(value(k, i));
					}
					float want = size > 1 ? sum / (float)size : value(0, i);
					for (int r = 0; r < size; r++)
						assert_memory_equal(&out[r][i], &want, sizeof(float));
					/* float's rounding, against the values' magnitude (the sum
					 * itself may cancel to next to nothing) */
					assert_true(fabs(out[0][i] - exact / size) <= 1e-6 * mag / size);
				}
			}
		}
}

static void test_transport_error(void **state)
{
	static float out[MAX_RANKS][1100];

	(void)state;
	assert_int_equal(mean_over(3, 10, 2, out), GRAFT_EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunks),
		cmocka_unit_test(test_mean),
		cmocka_unit_test(test_transport_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
