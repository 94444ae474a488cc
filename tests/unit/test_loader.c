/*
 * test_loader.c: lib/data: the crops torchvision defines (the evaluation crop's numbers,
 * the random-resized crop's bounds), resampling (exact at the same size, a mirror, the
 * mean of what it shrinks, luminance), colour jitter's bounds, and the loader: batches
 * equal bit for bit with 0, 1, 2 and 4 threads, for training (augmented) and evaluation
 * requests, on compact images (uint8 and encoded) and in-memory rows; errors naming
 * the sample; the queue's limits.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "data/data.h"
#include "testmodel.h"

/* torchvision: Resize(256) of 300x400 gives 256x341, CenterCrop(224) starts at row
 * round(16) = 16 and column round(58.5) = 58 (half to even). */
static void test_eval_box(void **state)
{
	struct box b;

	(void)state;
	data_eval_box(300, 400, 224, 224, 256, &b);
	assert_float_equal(b.y0, 16 * 300.0 / 256, 1e-12);
	assert_float_equal(b.x0, 58 * 400.0 / 341, 1e-12);
	assert_float_equal(b.x1, (58 + 224) * 400.0 / 341, 1e-12);
	assert_float_equal(b.y1, (16 + 224) * 300.0 / 256, 1e-12);
	/* portrait: the width is the shorter side */
	data_eval_box(500, 250, 224, 224, 256, &b);
	assert_float_equal(b.x0, 16 * 250.0 / 256, 1e-12);
	assert_float_equal(b.y0, 144 * 500.0 / 512, 1e-12);
	/* the output's size and resize equal to the image: the whole image */
	data_eval_box(224, 224, 224, 224, 224, &b);
	assert_true(b.x0 == 0 && b.y0 == 0 && b.x1 == 224 && b.y1 == 224);
}

static void test_rrc_box(void **state)
{
	struct graft_rng r;
	struct box b;
	int fallback = 0;

	(void)state;
	graft_rng_seed(&r, 7);
	for (int i = 0; i < 2000; i++) {
		int64_t h = 20 + i % 300, w = 30 + (i * 7) % 500;
		data_rrc_box(h, w, 0.08, &r, &b);
		double cw = b.x1 - b.x0, ch = b.y1 - b.y0;
		assert_true(b.x0 >= 0 && b.y0 >= 0 && b.x1 <= (double)w && b.y1 <= (double)h);
		assert_true(cw >= 1 && ch >= 1 && b.x0 == floor(b.x0) && b.y0 == floor(b.y0));
		double area = cw * ch / (double)(h * w), aspect = cw / ch;
		if (area >= 0.08 - 0.05 && aspect >= 0.75 * 0.9 && aspect <= 4.0 / 3 * 1.1)
			continue;       /* (rounding to whole pixels moves them a little) */
		fallback++;
	}
	/* the centre fallback only where ten draws miss: images far from square */
	assert_true(fallback < 40);
	/* a 1000x10 strip: the fallback, the centre at aspect 4/3 */
	data_rrc_box(10, 1000, 0.08, &r, &b);
	assert_true(b.y0 == 0 && b.y1 == 10);
}

static void fill_pixels(uint8_t *p, int64_t n, uint64_t seed)
{
	struct graft_rng r;
	graft_rng_seed(&r, seed);
	for (int64_t i = 0; i < n; i++)
		p[i] = (uint8_t)graft_rng_below(&r, 256);
}

static void test_resample(void **state)
{
	uint8_t px[6 * 8 * 3];
	struct graft_array a = {.dtype = GRAFT_UINT8, .rank = 3, .dims = {6, 8, 3},
				.data = px, .nbytes = sizeof(px)};
	struct box whole = {0, 0, 8, 6};
	float out[3 * 6 * 8], mirrored[3 * 6 * 8], tmp[6 * 8 * 3], half[3 * 3 * 4], grey[6 * 8];

	(void)state;
	fill_pixels(px, sizeof(px), 1);
	/* the same size: the bytes / 255, exactly */
	data_resample(&a, &whole, 6, 8, 3, 0, out, tmp);
	for (int y = 0; y < 6; y++)
		for (int x = 0; x < 8; x++)
			for (int c = 0; c < 3; c++)
				assert_true(out[(c * 6 + y) * 8 + x] == (float)(px[(y * 8 + x) * 3 + c] / 255.0));
	data_resample(&a, &whole, 6, 8, 3, 1, mirrored, tmp);
	for (int c = 0; c < 3; c++)
		for (int y = 0; y < 6; y++)
			for (int x = 0; x < 8; x++)
				assert_true(mirrored[(c * 6 + y) * 8 + x] == out[(c * 6 + y) * 8 + 7 - x]);
	/* halving: PIL's filter at scale 2 weighs the 2x2 block (3/4 each way) and its
	 * neighbours (1/4); the mean over the image is kept */
	data_resample(&a, &whole, 3, 4, 3, 0, half, tmp);
	double in_mean = 0, out_mean = 0;
	for (size_t i = 0; i < sizeof(px); i++)
		in_mean += px[i] / 255.0 / (double)sizeof(px);
	for (int i = 0; i < 36; i++)
		out_mean += half[i] / 36.0;
	assert_float_equal(out_mean, in_mean, 0.03);
	/* luminance */
	data_resample(&a, &whole, 6, 8, 1, 0, grey, tmp);
	assert_float_equal(grey[9], (0.299 * px[27] + 0.587 * px[28] + 0.114 * px[29]) / 255, 1e-6);
}

static void test_jitter(void **state)
{
	float d[3 * 50], e[3 * 50];
	struct graft_rng r;

	(void)state;
	for (int i = 0; i < 150; i++)
		d[i] = (float)((i * 37) % 101) / 100.0f;
	memcpy(e, d, sizeof(d));
	graft_rng_seed(&r, 3);
	data_jitter(e, 3, 50, 0, &r);           /* strength 0: factors of 1 */
	for (int i = 0; i < 150; i++)
		assert_float_equal(e[i], d[i], 1e-6);
	for (int k = 0; k < 50; k++) {
		memcpy(e, d, sizeof(d));
		data_jitter(e, 3, 50, 0.4, &r);
		for (int i = 0; i < 150; i++)
			assert_true(e[i] >= 0 && e[i] <= 1);
	}
}

/* ---- the loader ---- */

#define N_IMAGES 7

/* Compact images of several sizes (uint8), and the same as PNG files (encoded). */
struct images {
	struct graft_images u8, enc;
	uint8_t *u8_bytes, *enc_bytes;
	int64_t u8_index[N_IMAGES * 5], enc_index[N_IMAGES * 5];
};

static void make_images(struct images *m)
{
	static const int size[N_IMAGES][2] = {{40, 60}, {64, 64}, {90, 30}, {16, 20}, {50, 50},
					      {33, 77}, {100, 120}};
	size_t total = 0, etotal = 0;
	void *png[N_IMAGES];
	size_t len[N_IMAGES];

	for (int i = 0; i < N_IMAGES; i++) {
		total += (size_t)(size[i][0] * size[i][1] * 3);
		png[i] = tm_png(size[i][1], size[i][0], 0, &len[i]);
		etotal += len[i];
	}
	m->u8_bytes = malloc(total);
	m->enc_bytes = malloc(etotal);
	total = etotal = 0;
	for (int i = 0; i < N_IMAGES; i++) {
		int64_t h = size[i][0], w = size[i][1], n = h * w * 3;
		/* the PNG's pixels, (x * 40 + y * 7 + c * 90) & 0xff, so both stores agree */
		for (int64_t y = 0; y < h; y++)
			for (int64_t x = 0; x < w; x++)
				for (int c = 0; c < 3; c++)
					m->u8_bytes[total + (size_t)((y * w + x) * 3 + c)] =
						(uint8_t)((x * 40 + y * 7 + c * 90) & 0xff);
		int64_t e[5] = {(int64_t)total, n, h, w, 3};
		int64_t f[5] = {(int64_t)etotal, (int64_t)len[i], h, w, 3};
		memcpy(m->u8_index + i * 5, e, sizeof(e));
		memcpy(m->enc_index + i * 5, f, sizeof(f));
		memcpy(m->enc_bytes + etotal, png[i], len[i]);
		total += (size_t)n;
		etotal += len[i];
		free(png[i]);
	}
	m->u8 = (struct graft_images){.store = GRAFT_STORE_UINT8, .n = N_IMAGES,
		.bytes = m->u8_bytes, .nbytes = total, .index = m->u8_index};
	m->enc = (struct graft_images){.store = GRAFT_STORE_ENCODED, .n = N_IMAGES,
		.bytes = m->enc_bytes, .nbytes = etotal, .index = m->enc_index};
}

/* Three training batches and one evaluation batch from a loader with o, into out. */
static void run_batches(struct graft_loader *l, float *out, size_t per)
{
	static const int64_t samples[4][5] = {{0, 1, 2, 3, 4}, {5, 6, 0, 1, 2}, {3, 3, 3, 6, 5},
					      {0, 1, 2, 3, 4}};
	static const int64_t epochs[3][5] = {{0, 0, 0, 0, 0}, {0, 0, 1, 1, 1}, {1, 2, 3, 1, 1}};
	struct graft_array xb[GRAFT_DATASET_MAX_INPUTS];
	struct graft_err err = {0};

	graft_loader_inputs(l, xb);
	for (int b = 0; b < 4; b++)
		if (graft_loader_request(l, samples[b], b < 3 ? epochs[b] : NULL, 5, &err))
			fail_msg("%s", err.msg);
	for (int b = 0; b < 4; b++) {
		xb[0].data = out + (size_t)b * 5 * per;
		if (graft_loader_take(l, xb, &err))
			fail_msg("%s", err.msg);
		assert_int_equal(xb[0].dims[0], 5);
	}
}

static void test_threads_agree(void **state)
{
	static const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
	struct images m;
	struct graft_err err = {0};
	const size_t per = 3 * 24 * 32, total = 4 * 5 * per;
	float *ref = malloc(total * sizeof(float)), *got = malloc(total * sizeof(float));

	(void)state;
	make_images(&m);
	for (int store = 0; store < 2; store++)
		for (int threads = 0; threads <= 4; threads += threads ? threads : 1) {
			struct graft_loader_opts o = {
				.threads = threads, .seed = 11, .height = 24, .width = 32,
				.augment = GRAFT_AUGMENT_RRC | GRAFT_AUGMENT_FLIP | GRAFT_AUGMENT_JITTER};
			struct graft_loader *l;
			if (graft_loader_new_images(&l, store ? &m.enc : &m.u8, mean, std, &o, &err))
				fail_msg("%s", err.msg);
			assert_true(graft_loader_random(l));
			run_batches(l, threads || store ? got : ref, per);
			graft_loader_free(l);
			if (threads || store)
				assert_memory_equal(got, ref, total * sizeof(float));
		}
	/* the same sample in another epoch is cropped elsewhere; evaluation is the same as
	 * training with nothing random */
	assert_memory_not_equal(ref + 3 * per, ref + 5 * per + 0 * per, per * sizeof(float));
	struct graft_loader_opts plain = {.height = 24, .width = 32, .threads = 2};
	struct graft_loader *l;
	if (graft_loader_new_images(&l, &m.u8, mean, std, &plain, &err))
		fail_msg("%s", err.msg);
	assert_false(graft_loader_random(l));
	run_batches(l, got, per);
	graft_loader_free(l);
	assert_memory_equal(got, got + 15 * per, 5 * per * sizeof(float));    /* batch 0 = eval */
	assert_memory_equal(got + 15 * per, ref + 15 * per, 5 * per * sizeof(float));
	/* normalised: mean and std applied to [0, 1] values */
	for (size_t i = 0; i < per; i++) {
		float v = got[15 * per + i];
		int c = (int)(i / (24 * 32));
		assert_true(v >= (0 - mean[c]) / std[c] - 1e-5 && v <= (1 - mean[c]) / std[c] + 1e-5);
	}
	free(ref);
	free(got);
	free(m.u8_bytes);
	free(m.enc_bytes);
}

static void test_rows(void **state)
{
	float x[6 * 2 * 4 * 4], ref[4 * 5 * 32], got[4 * 5 * 32];
	int64_t y[6] = {0};
	struct graft_array xs[2] = {
		{.name = "x", .dtype = GRAFT_FLOAT, .rank = 4, .dims = {6, 2, 4, 4}, .data = x,
		 .nbytes = sizeof(x)},
		{.name = "y", .dtype = GRAFT_INT64, .rank = 1, .dims = {6}, .data = y,
		 .nbytes = sizeof(y)}};
	struct graft_err err = {0};
	struct graft_loader *l;

	(void)state;
	for (size_t i = 0; i < 6 * 32; i++)
		x[i] = (float)i;
	/* rows as they are, for evaluation; two inputs */
	struct graft_loader_opts o = {.threads = 1};
	int64_t samples[3] = {5, 0, 2};
	struct graft_array xb[2] = {xs[0], xs[1]};
	int64_t yb[3];
	xb[0].data = got;
	xb[1].data = yb;
	y[5] = 9;
	if (graft_loader_new(&l, xs, 2, &o, &err) || graft_loader_request(l, samples, NULL, 3, &err) ||
	    graft_loader_take(l, xb, &err))
		fail_msg("%s", err.msg);
	assert_memory_equal(got, x + 5 * 32, 32 * sizeof(float));
	assert_memory_equal(got + 64, x + 2 * 32, 32 * sizeof(float));
	assert_int_equal(yb[0], 9);
	/* flips and shifts: per sample and epoch, alike on any thread count */
	graft_loader_free(l);
	int64_t s2[5] = {0, 1, 2, 3, 4}, e2[5] = {0, 0, 1, 1, 2};
	for (int threads = 0; threads <= 2; threads++) {
		struct graft_loader_opts a = {.threads = threads, .seed = 5,
					      .augment = GRAFT_AUGMENT_FLIP | GRAFT_AUGMENT_CROP};
		xb[0].data = threads ? got : ref;
		if (graft_loader_new(&l, xs, 1, &a, &err) ||
		    graft_loader_request(l, s2, e2, 5, &err) || graft_loader_take(l, xb, &err))
			fail_msg("%s", err.msg);
		graft_loader_free(l);
		if (threads)
			assert_memory_equal(got, ref, 5 * 32 * sizeof(float));
	}
	assert_memory_not_equal(ref, x, 5 * 32 * sizeof(float));
}

static void test_refusals(void **state)
{
	struct images m;
	struct graft_err err = {0};
	struct graft_loader *l;
	struct graft_loader_opts o = {.height = 8, .width = 8, .depth = 2, .threads = 2};
	int64_t s[2] = {0, 1}, bad = N_IMAGES;
	float out[2 * 3 * 64];
	struct graft_array xb;

	(void)state;
	make_images(&m);
	struct graft_loader_opts small = {.height = 224, .width = 224, .resize = 200};
	assert_int_equal(graft_loader_new_images(&l, &m.u8, NULL, NULL, &small, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "a resize to 200 is too small for a centre crop of 224x224"));
	if (graft_loader_new_images(&l, &m.enc, NULL, NULL, &o, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(graft_loader_request(l, &bad, NULL, 1, &err), GRAFT_EINVAL);
	assert_int_equal(graft_loader_take(l, &xb, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "no batch was requested"));
	/* a file that no longer decodes: named by its sample, and the queue goes on */
	m.enc_bytes[m.enc_index[5] + 20] ^= 0xff;
	graft_loader_inputs(l, &xb);
	xb.data = out;
	assert_int_equal(graft_loader_request(l, s, NULL, 2, &err), 0);
	assert_int_equal(graft_loader_request(l, s, NULL, 2, &err), 0);
	assert_int_equal(graft_loader_request(l, s, NULL, 2, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "2 batches wait already"));
	assert_int_equal(graft_loader_take(l, &xb, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "image 1: corrupt or unsupported PNG"));
	assert_int_equal(graft_loader_take(l, &xb, &err), GRAFT_EFORMAT);
	graft_loader_free(l);
	free(m.u8_bytes);
	free(m.enc_bytes);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eval_box),
		cmocka_unit_test(test_rrc_box),
		cmocka_unit_test(test_resample),
		cmocka_unit_test(test_jitter),
		cmocka_unit_test(test_threads_agree),
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
