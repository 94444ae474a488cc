/*
 * matmul_peak: the practical fp32 peak of this machine, as oneDNN's matmul reaches it.
 *
 * Usage: matmul_peak [SIZE [REPEATS]]      (defaults 2048 and 10)
 *
 * Times C = A * B with M = N = K = SIZE, all row-major fp32 (oneDNN 2.6 C API: a
 * dnnl_matmul_desc_init descriptor, then dnnl_primitive_desc_create), 2 warm-up runs
 * (the first one JIT-compiles the kernel), then the median of REPEATS runs, each
 * waited for on the stream. FLOP = 2 * SIZE^3 (a multiply-add counts two).
 * Prints one line on stdout, "matmul 2048^3: X GFLOP/s", and the run details on
 * stderr. oneDNN's OpenMP runtime takes its thread count from OMP_NUM_THREADS.
 * Exit 0, 1 on a oneDNN or allocation failure, 2 on usage.
 * Standalone on purpose (no graft code): the benchmarks compare graft to this ceiling.
 * Build: gcc -O2 -o matmul_peak matmul_peak.c -ldnnl
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

static const char usage[] = "usage: matmul_peak [SIZE [REPEATS]]\n";

static void die_dnnl(const char *what, dnnl_status_t st)
{
	fprintf(stderr, "matmul_peak: %s: %s\n", what, dnnl_status2str(st));
	exit(1);
}

#define CHECK(call) do { dnnl_status_t st_ = (call); \
	if (st_ != dnnl_success) die_dnnl(#call, st_); } while (0)

/* A positive integer in [1, max] or -1: no atoi, so "2k" or "0" is a usage error. */
static long parse_count(const char *s, long max)
{
	char *end;
	long v = strtol(s, &end, 10);

	return (*s && !*end && v >= 1 && v <= max) ? v : -1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static float *alloc_filled(size_t n, float scale)
{
	/* 64-byte aligned like oneDNN's own buffers; values away from denormals. */
	float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);

	if (!p) {
		fprintf(stderr, "matmul_peak: out of memory (%zu floats)\n", n);
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		p[i] = scale * (float)((i * 7919u) % 1000u) / 1000.0f + 0.5f * scale;
	return p;
}

int main(int argc, char **argv)
{
	long size = 2048, reps = 10;

	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc > 3 || (argc > 1 && (size = parse_count(argv[1], 16384)) < 0) ||
	    (argc > 2 && (reps = parse_count(argv[2], 100000)) < 0)) {
		fputs(usage, stderr);
		return 2;
	}

	dnnl_engine_t engine;
	dnnl_stream_t stream;
	CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
	CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));

	dnnl_dims_t dims = { size, size };
	dnnl_memory_desc_t md;
	CHECK(dnnl_memory_desc_init_by_tag(&md, 2, dims, dnnl_f32, dnnl_ab));
	dnnl_matmul_desc_t desc;
	CHECK(dnnl_matmul_desc_init(&desc, &md, &md, NULL, &md));
	dnnl_primitive_desc_t pd;
	CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL));
	dnnl_primitive_t prim;
	CHECK(dnnl_primitive_create(&prim, pd));

	size_t n = (size_t)size * (size_t)size;
	float *a = alloc_filled(n, 1.0f), *b = alloc_filled(n, 0.01f), *c = alloc_filled(n, 0.0f);
	dnnl_memory_t ma, mb, mc;
	CHECK(dnnl_memory_create(&ma, &md, engine, a));
	CHECK(dnnl_memory_create(&mb, &md, engine, b));
	CHECK(dnnl_memory_create(&mc, &md, engine, c));
	dnnl_exec_arg_t args[] = {
		{ DNNL_ARG_SRC, ma }, { DNNL_ARG_WEIGHTS, mb }, { DNNL_ARG_DST, mc },
	};

	double *t = malloc(reps * sizeof(*t));
	if (!t) {
		fputs("matmul_peak: out of memory\n", stderr);
		return 1;
	}
	for (long i = -2; i < reps; i++) {
		double t0 = now();
		CHECK(dnnl_primitive_execute(prim, stream, 3, args));
		CHECK(dnnl_stream_wait(stream));
		if (i >= 0)
			t[i] = now() - t0;
	}
	qsort(t, reps, sizeof(*t), cmp_double);
	double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
	double flop = 2.0 * size * size * size;

	printf("matmul %ld^3: %.1f GFLOP/s\n", size, flop / med * 1e-9);
	const char *omp = getenv("OMP_NUM_THREADS");
	fprintf(stderr, "matmul_peak: median of %ld runs %.3f ms (min %.3f, max %.3f), "
		"OMP_NUM_THREADS=%s, c[0]=%g\n", reps, med * 1e3, t[0] * 1e3,
		t[reps - 1] * 1e3, omp ? omp : "(unset)", c[0]);

	free(t);
	CHECK(dnnl_memory_destroy(mc));
	CHECK(dnnl_memory_destroy(mb));
	CHECK(dnnl_memory_destroy(ma));
	free(c);
	free(b);
	free(a);
	CHECK(dnnl_primitive_destroy(prim));
	CHECK(dnnl_primitive_desc_destroy(pd));
	CHECK(dnnl_stream_destroy(stream));
	CHECK(dnnl_engine_destroy(engine));
	if (fflush(stdout) || ferror(stdout)) {
		fputs("matmul_peak: error writing stdout\n", stderr);
		return 1;
	}
	return 0;
}
