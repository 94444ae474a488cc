/*
 * test_dataset_make.c: the rules graft_dataset_make applies to samples as read: a class
 * subset relabelled in the order given, take per class, split per class (no sample in
 * both parts), the seed fixing every choice, normalisation per channel, the graft.*
 * metadata, and the refusals (too few samples, a split leaving a part without a class,
 * unknown classes, classes with float targets), each with a message that says why.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "format/format.h"

#define N 30            /* samples: sample i has label i % 3 and x values 100 * i + c */

static float xs[N * 2];
static int64_t labels[N];
static const char *const names[] = {"ant", "bee", "cat"};

/* 30 samples of 2 channels (x [30, 2]), 10 of each of 3 classes. */
static struct graft_samples samples(void)
{
	struct graft_samples s = {.name = "s.npy", .source = "test", .x = xs, .rank = 2,
				  .dims = {N, 2}, .labels = labels, .n_classes = 3,
				  .class_names = names};
	for (int i = 0; i < N; i++) {
		labels[i] = i % 3;
		xs[2 * i] = (float)(100 * i);
		xs[2 * i + 1] = (float)(100 * i + 1);
	}
	return s;
}

static struct graft_tensor tensor(const struct graft_model *m, const char *name)
{
	struct graft_tensor t;
	long i = graft_model_find_tensor(m, name);

	assert_true(i >= 0);
	graft_model_tensor(m, (size_t)i, &t);
	return t;
}

/* The original sample index of each sample of part m, from its x values. */
static void originals(const struct graft_model *m, int64_t n, int *orig)
{
	struct graft_tensor x = tensor(m, "x");
	const float *v = x.data;

	assert_int_equal(x.dims[0], n);
	for (int64_t j = 0; j < n; j++)
		orig[j] = (int)(v[2 * j] / 100);
}

static const int64_t *labels_of(const struct graft_model *m)
{
	return tensor(m, "y").data;
}

static void make(const struct graft_samples *s, const struct graft_dataset_options *o,
		 struct graft_dataset_parts *p)
{
	struct graft_err err = {0};

	if (graft_dataset_make(s, o, p, &err))
		fail_msg("%s", err.msg);
}

/* Fails with the message expected (a substring of it). */
static void refused(const struct graft_samples *s, const struct graft_dataset_options *o,
		    const char *want)
{
	struct graft_dataset_parts p;
	struct graft_err err = {0};

	assert_int_equal(graft_dataset_make(s, o, &p, &err), GRAFT_EINVAL);
	if (!strstr(err.msg, want))
		fail_msg("message '%s' lacks '%s'", err.msg, want);
	assert_null(p.part[0]);
	graft_dataset_parts_release(&p);
}

static void test_all_as_they_are(void **state)
{
	struct graft_samples s = samples();
	struct graft_dataset_options o = {0};
	struct graft_dataset_parts p;
	int orig[N];

	(void)state;
	make(&s, &o, &p);
	assert_int_equal(p.count[0], N);
	assert_int_equal(p.n_classes, 3);
	assert_null(p.part[1]);
	originals(p.part[0], N, orig);
	for (int i = 0; i < N; i++)
		assert_int_equal(orig[i], i);   /* samples keep their order */
	assert_memory_equal(labels_of(p.part[0]), labels, sizeof(labels));
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_SOURCE), "test");
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_CLASSES), "3");
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_CLASS_NAMES),
			    "ant,bee,cat");
	assert_null(graft_model_metadata_value(p.part[0], GRAFT_META_SEED));
	assert_null(graft_model_metadata_value(p.part[0], GRAFT_META_MEAN));
	graft_dataset_parts_release(&p);
}

static void test_classes_relabelled_in_order(void **state)
{
	static const char *const keep[] = {"cat", "ant"};
	struct graft_samples s = samples();
	struct graft_dataset_options o = {.classes = keep, .n_keep = 2};
	struct graft_dataset_parts p;
	int orig[20];

	(void)state;
	make(&s, &o, &p);
	assert_int_equal(p.count[0], 20);
	assert_int_equal(p.n_classes, 2);
	originals(p.part[0], 20, orig);
	for (int j = 0; j < 20; j++)    /* cat (2) becomes 0, ant (0) becomes 1 */
		assert_int_equal(labels_of(p.part[0])[j], orig[j] % 3 == 2 ? 0 : 1);
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_CLASSES), "2");
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_CLASS_NAMES),
			    "cat,ant");
	graft_dataset_parts_release(&p);

	/* Without names, classes are named by their numbers. */
	static const char *const one[] = {"1"};
	s.class_names = NULL;
	o = (struct graft_dataset_options){.classes = one, .n_keep = 1};
	make(&s, &o, &p);
	assert_int_equal(p.count[0], 10);
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_CLASS_NAMES), "1");
	graft_dataset_parts_release(&p);
}

static void test_take_per_class(void **state)
{
	struct graft_samples s = samples();
	struct graft_dataset_options o = {.take = 4, .seed = 7};
	struct graft_dataset_parts p;
	int per[3] = {0}, orig[12];

	(void)state;
	make(&s, &o, &p);
	assert_int_equal(p.count[0], 12);
	originals(p.part[0], 12, orig);
	for (int j = 0; j < 12; j++) {
		assert_int_equal(labels_of(p.part[0])[j], orig[j] % 3);
		per[orig[j] % 3]++;
	}
	for (int c = 0; c < 3; c++)
		assert_int_equal(per[c], 4);
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_TAKE), "4");
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_SEED), "7");
	graft_dataset_parts_release(&p);
}

static void test_split_per_class(void **state)
{
	struct graft_samples s = samples();
	struct graft_dataset_options o = {.split = 0.8, .seed = 3,
					  .part_names = {"t.graft", "v.graft"}};
	struct graft_dataset_parts p;
	int seen[N] = {0}, per[2][3] = {{0}}, orig[24];

	(void)state;
	make(&s, &o, &p);
	assert_int_equal(p.count[0], 24);
	assert_int_equal(p.count[1], 6);
	for (int part = 0; part < 2; part++) {
		originals(p.part[part], p.count[part], orig);
		for (int64_t j = 0; j < p.count[part]; j++) {
			seen[orig[j]]++;
			per[part][orig[j] % 3]++;
		}
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(seen[i], 1);   /* in exactly one part */
	for (int c = 0; c < 3; c++) {
		assert_int_equal(per[0][c], 8);
		assert_int_equal(per[1][c], 2);
	}
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_SPLIT), "train 0.8");
	assert_string_equal(graft_model_metadata_value(p.part[1], GRAFT_META_SPLIT), "val 0.2");
	assert_string_equal(graft_model_metadata_value(p.part[1], GRAFT_META_SEED), "3");
	graft_dataset_parts_release(&p);
}

/* The x values of part 0 with --take 3 and the given seed. */
static void taken(uint64_t seed, float *x)
{
	struct graft_samples s = samples();
	struct graft_dataset_options o = {.take = 3, .seed = seed};
	struct graft_dataset_parts p;

	make(&s, &o, &p);
	memcpy(x, tensor(p.part[0], "x").data, sizeof(float) * 18);
	graft_dataset_parts_release(&p);
}

static void test_seed(void **state)
{
	float a[18], b[18], c[18];

	(void)state;
	taken(1, a);
	taken(1, b);
	taken(2, c);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
}

static void test_refusals(void **state)
{
	static const char *const twice[] = {"bee", "bee"}, *const unknown[] = {"dog"};
	struct graft_samples s = samples();
	struct graft_dataset_options o = {.take = 11};

	(void)state;
	refused(&s, &o, "s.npy: --take 11 but class 'ant' has 10 samples");
	o = (struct graft_dataset_options){.take = 1, .split = 0.5,
					   .part_names = {"t.graft", "v.graft"}};
	refused(&s, &o, "s.npy: --split 0.5 of class 'ant' (1 samples) leaves v.graft "
		"without it");
	o = (struct graft_dataset_options){.classes = unknown, .n_keep = 1};
	refused(&s, &o, "s.npy: class 'dog' is not in the data (classes ant to cat)");
	o = (struct graft_dataset_options){.classes = twice, .n_keep = 2};
	refused(&s, &o, "--classes names class 'bee' twice");
	o = (struct graft_dataset_options){.classes = twice, .n_keep = 0};
	refused(&s, &o, "--classes lists no class");

	float targets[N];
	s = samples();
	s.labels = NULL;
	s.targets = targets;
	s.k = 1;
	o = (struct graft_dataset_options){.take = 1};
	refused(&s, &o, "s.npy: --classes and --take need class labels");
	s = samples();
	labels[4] = 3;
	refused(&s, &(struct graft_dataset_options){0}, "label 3 of sample 4 is not below 3");
}

static void test_mean_std(void **state)
{
	static const double mean[] = {1, 2}, std[] = {2, 4}, one[] = {0.5, 0.5};
	struct graft_samples s = samples();
	struct graft_dataset_options o = {.mean = mean, .std = std};
	struct graft_dataset_parts p;
	const float *x;

	(void)state;
	make(&s, &o, &p);
	x = tensor(p.part[0], "x").data;
	for (int i = 0; i < N; i++) {
		assert_true(x[2 * i] == (float)((100.0 * i - 1) / 2));
		assert_true(x[2 * i + 1] == (float)((100.0 * i + 1 - 2) / 4));
	}
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_MEAN), "1,2");
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_STD), "2,4");
	graft_dataset_parts_release(&p);

	/* A std alone divides only: the mean is 0. */
	o = (struct graft_dataset_options){.std = one};
	make(&s, &o, &p);
	x = tensor(p.part[0], "x").data;
	assert_true(x[2] == 200.0f && x[3] == 202.0f);
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_MEAN), "0,0");
	assert_string_equal(graft_model_metadata_value(p.part[0], GRAFT_META_STD), "0.5,0.5");
	graft_dataset_parts_release(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_as_they_are),
		cmocka_unit_test(test_classes_relabelled_in_order),
		cmocka_unit_test(test_take_per_class),
		cmocka_unit_test(test_split_per_class),
		cmocka_unit_test(test_seed),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_mean_std),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
