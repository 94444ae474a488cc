/*
 * test_dataset.c: dataset archives: graft_dataset_write then graft_dataset_read gives the
 * same samples, labels and metadata; the class count comes from graft.classes or the
 * labels; and both sides refuse what a training loop could not use (wrong types, sample
 * counts that disagree, labels out of range, tensors that are not detached data).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "format/format.h"

static float xs[16];
static int64_t labels[4] = {0, 2, 1, 2};

static struct graft_array x_of(int n)
{
	struct graft_array a = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {n, 1, 2, 2},
				.data = xs, .nbytes = (size_t)n * 16};
	for (int i = 0; i < 16; i++)
		xs[i] = (float)i / 16 - 0.25f;
	return a;
}

static struct graft_array y_of(int n)
{
	return (struct graft_array){.dtype = GRAFT_INT64, .rank = 1, .dims = {n},
				    .data = labels, .nbytes = (size_t)n * 8};
}

/* Writes through graft_dataset_write into a temporary file; returns its path or NULL
 * (with err set) when the write is refused. */
static char *write_ds(const struct graft_array *x, const struct graft_array *y,
		      const char *const *meta, struct graft_err *err)
{
	char *path = strdup("/tmp/graft-ds-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	int rc = graft_dataset_write(fd, x, y, meta, err);
	close(fd);
	if (rc) {
		unlink(path);
		free(path);
		return NULL;
	}
	return path;
}

/* Writes a model (built by the caller) as an archive; returns its path. */
static char *write_model(struct graft_model *m)
{
	char *path = strdup("/tmp/graft-ds-XXXXXX");
	struct graft_err err = {0};
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	if (graft_model_write_graft(m, fd, NULL, &err))
		fail_msg("%s", err.msg);
	close(fd);
	graft_model_free(m);
	return path;
}

static const char *meta_value(const struct graft_model *m, const char *key)
{
	struct graft_model_meta meta;
	const char *k, *v;

	graft_model_meta(m, &meta);
	for (size_t i = 0; i < meta.n_metadata; i++) {
		graft_model_metadata(m, i, &k, &v);
		if (strcmp(k, key) == 0)
			return v;
	}
	return NULL;
}

static void test_roundtrip(void **state)
{
	struct graft_array x = x_of(4), y = y_of(4);
	const char *meta[] = {"graft.classes", "5", "graft.class_names", "a,b,c,d,e",
			      "graft.source", "test", NULL};
	struct graft_dataset ds;
	struct graft_err err = {0};
	char *path = write_ds(&x, &y, meta, &err);
	(void)state;

	assert_non_null(path);
	assert_int_equal(graft_dataset_read(&ds, path, &err), 0);
	assert_int_equal(ds.n, 4);
	assert_int_equal(ds.n_classes, 5);      /* graft.classes, not max label + 1 */
	assert_int_equal(ds.x.dtype, GRAFT_FLOAT);
	assert_int_equal(ds.x.rank, 4);
	assert_int_equal(ds.x.dims[0], 4);
	assert_int_equal(ds.x.dims[3], 2);
	assert_int_equal(ds.x.nbytes, sizeof(xs));
	assert_memory_equal(ds.x.data, xs, sizeof(xs));
	assert_int_equal(ds.y.dtype, GRAFT_INT64);
	assert_int_equal(ds.y.rank, 1);
	assert_memory_equal(ds.y.data, labels, sizeof(labels));
	assert_string_equal(ds.x.name, "x");
	assert_string_equal(meta_value(ds.model, "graft.class_names"), "a,b,c,d,e");
	assert_string_equal(meta_value(ds.model, "graft.source"), "test");
	/* Mapped from the file, not copied. */
	assert_true(ds.model->buf_mapped);
	assert_true((const char *)ds.x.data >= (const char *)ds.model->buf &&
		    (const char *)ds.x.data < (const char *)ds.model->buf + ds.model->buf_len);
	graft_dataset_release(&ds);
	assert_null(ds.model);
	unlink(path);
	free(path);
}

static void test_classes_from_labels_and_float_targets(void **state)
{
	struct graft_array x = x_of(3), y = y_of(3);
	float t[6] = {0.5f, -1, 2, 3, 4, 5};
	struct graft_array ty = {.dtype = GRAFT_FLOAT, .rank = 2, .dims = {3, 2}, .data = t,
				 .nbytes = sizeof(t)};
	struct graft_dataset ds;
	struct graft_err err = {0};
	char *path = write_ds(&x, &y, NULL, &err);
	(void)state;

	assert_non_null(path);
	assert_int_equal(graft_dataset_read(&ds, path, &err), 0);
	assert_int_equal(ds.n, 3);
	assert_int_equal(ds.n_classes, 3);      /* labels 0, 2, 1: max + 1 */
	graft_dataset_release(&ds);
	unlink(path);
	free(path);

	path = write_ds(&x, &ty, NULL, &err);
	assert_non_null(path);
	assert_int_equal(graft_dataset_read(&ds, path, &err), 0);
	assert_int_equal(ds.n_classes, 0);
	assert_int_equal(ds.y.dims[1], 2);
	assert_memory_equal(ds.y.data, t, sizeof(t));
	graft_dataset_release(&ds);
	unlink(path);
	free(path);
}

static void test_write_refusals(void **state)
{
	struct graft_array x = x_of(4), y = y_of(4), bad;
	struct graft_err err = {0};
	const char *few[] = {"graft.classes", "2", NULL};
	const char *junk[] = {"graft.classes", "two", NULL};
	const char *odd[] = {"graft.source", NULL};
	(void)state;

#define REFUSED(xa, ya, meta) do { \
		assert_null(write_ds(xa, ya, meta, &err)); \
		assert_int_equal(err.code, GRAFT_EINVAL); \
	} while (0)
	bad = x; bad.dtype = GRAFT_DOUBLE; REFUSED(&bad, &y, NULL);
	bad = x; bad.rank = 1; REFUSED(&bad, &y, NULL);
	bad = x; bad.nbytes -= 4; REFUSED(&bad, &y, NULL);
	bad = x_of(3); REFUSED(&bad, &y, NULL);                         /* N: 3 vs 4 */
	assert_non_null(strstr(err.msg, "3 samples"));
	bad = x_of(0); bad.nbytes = 0; REFUSED(&bad, &y, NULL);
	bad = y; bad.dtype = GRAFT_INT32; bad.nbytes = 16; REFUSED(&x, &bad, NULL);
	bad = y; bad.rank = 2; bad.dims[1] = 1; REFUSED(&x, &bad, NULL);   /* int (N, 1) */
	REFUSED(&x, &y, few);                                          /* label 2 >= 2 */
	assert_non_null(strstr(err.msg, "out of range"));
	REFUSED(&x, &y, junk);
	REFUSED(&x, &y, odd);
	labels[1] = -2;
	REFUSED(&x, &y, NULL);
	assert_non_null(strstr(err.msg, "negative"));
	labels[1] = 2;
#undef REFUSED
}

/* Builds a dataset-like model by hand: x and y as given, optional graft.classes. */
static char *hand_made(int x_dtype, enum graft_source x_source, enum graft_role x_role,
		       int64_t nx, int y_dtype, int64_t ny, const void *ydata, const char *classes)
{
	struct graft_model *m;
	struct graft_err err = {0};
	int64_t xd[2] = {nx, 3}, yd[1] = {ny};

	assert_int_equal(graft_model_new(&m, &err), 0);
	if (x_dtype)
		assert_int_equal(graft_model_add_tensor(m, "x", x_dtype, 2, xd, NULL, x_role,
							x_source, NULL, &err), 0);
	assert_int_equal(graft_model_add_tensor(m, "y", y_dtype, 1, yd, ydata, GRAFT_ROLE_DATA,
						GRAFT_SOURCE_DETACHED, NULL, &err), 0);
	if (classes)
		assert_int_equal(graft_model_set_metadata(m, "graft.classes", classes, &err), 0);
	return write_model(m);
}

static void expect_read_error(char *path, const char *what)
{
	struct graft_dataset ds;
	struct graft_err err = {0};

	assert_int_equal(graft_dataset_read(&ds, path, &err), GRAFT_EFORMAT);
	if (!strstr(err.msg, what) || !strstr(err.msg, path))
		fail_msg("expected '%s' and the path in: %s", what, err.msg);
	graft_dataset_release(&ds);
	unlink(path);
	free(path);
}

static void test_read_refusals(void **state)
{
	int64_t ok[2] = {0, 1}, big[2] = {0, 7}, neg[2] = {0, -1};
	int32_t small[2] = {0, 1};
	(void)state;

	expect_read_error(hand_made(0, 0, 0, 2, GRAFT_INT64, 2, ok, NULL), "no tensor 'x'");
	expect_read_error(hand_made(GRAFT_FLOAT, GRAFT_SOURCE_INITIALIZER, GRAFT_ROLE_DATA, 2,
				    GRAFT_INT64, 2, ok, NULL), "not a detached data tensor");
	expect_read_error(hand_made(GRAFT_FLOAT, GRAFT_SOURCE_DETACHED, GRAFT_ROLE_STATE, 2,
				    GRAFT_INT64, 2, ok, NULL), "not a detached data tensor");
	expect_read_error(hand_made(GRAFT_INT32, GRAFT_SOURCE_DETACHED, GRAFT_ROLE_DATA, 2,
				    GRAFT_INT64, 2, ok, NULL), "x must be float");
	expect_read_error(hand_made(GRAFT_FLOAT, GRAFT_SOURCE_DETACHED, GRAFT_ROLE_DATA, 2,
				    GRAFT_INT32, 2, small, NULL), "y must be int64");
	expect_read_error(hand_made(GRAFT_FLOAT, GRAFT_SOURCE_DETACHED, GRAFT_ROLE_DATA, 3,
				    GRAFT_INT64, 2, ok, NULL), "x has 3 samples but y has 2");
	expect_read_error(hand_made(GRAFT_FLOAT, GRAFT_SOURCE_DETACHED, GRAFT_ROLE_DATA, 2,
				    GRAFT_INT64, 2, big, "5"), "out of range for 5 classes");
	expect_read_error(hand_made(GRAFT_FLOAT, GRAFT_SOURCE_DETACHED, GRAFT_ROLE_DATA, 2,
				    GRAFT_INT64, 2, neg, NULL), "negative");
	expect_read_error(hand_made(GRAFT_FLOAT, GRAFT_SOURCE_DETACHED, GRAFT_ROLE_DATA, 2,
				    GRAFT_INT64, 2, ok, "0"), "graft.classes");
	/* Class counts that tools would size tables by: capped at GRAFT_MAX_CLASSES. */
	int64_t huge[2] = {0, GRAFT_MAX_CLASSES};
	expect_read_error(hand_made(GRAFT_FLOAT, GRAFT_SOURCE_DETACHED, GRAFT_ROLE_DATA, 2,
				    GRAFT_INT64, 2, ok, "1000000000000"),
			  "graft.classes 1000000000000 is over 1048576");
	expect_read_error(hand_made(GRAFT_FLOAT, GRAFT_SOURCE_DETACHED, GRAFT_ROLE_DATA, 2,
				    GRAFT_INT64, 2, huge, NULL), "label 1048576 of sample 1 is over "
			  "1048576 classes");
	/* And a hand-made one that is right reads. */
	char *path = hand_made(GRAFT_FLOAT, GRAFT_SOURCE_DETACHED, GRAFT_ROLE_DATA, 2,
			       GRAFT_INT64, 2, big, "8");
	struct graft_dataset ds;
	struct graft_err err = {0};
	assert_int_equal(graft_dataset_read(&ds, path, &err), 0);
	assert_int_equal(ds.n_classes, 8);
	graft_dataset_release(&ds);
	unlink(path);
	free(path);
	/* A missing file names itself; releasing after a failed read is safe. */
	assert_int_equal(graft_dataset_read(&ds, "/nonexistent/d.graft", &err), GRAFT_EIO);
	assert_non_null(strstr(err.msg, "/nonexistent/d.graft"));
	graft_dataset_release(&ds);
}

/* A dataset cut into shards (graft_dataset_shard) and read back through a list of them
 * is the dataset: the same samples, labels, classes and digest; a shard of other classes
 * is refused, naming it. */
static void test_shards(void **state)
{
	static const char *const meta[] = {GRAFT_META_CLASSES, "3", GRAFT_META_CLASS_NAMES,
					   "a,b,c", NULL};
	struct graft_array x = x_of(4), y = y_of(4);
	struct graft_err err = {0};
	struct graft_model *whole, **shards;
	struct graft_dataset ds, one;
	size_t n;
	char list[64] = "/tmp/graft-list-XXXXXX", *paths[4];

	(void)state;
	assert_int_equal(dataset_model(&x, 1, NULL, &y, meta, &whole, &err), 0);
	/* a sample is 16 + 8 bytes: two fit in 48 */
	if (graft_dataset_shard(whole, 48, &shards, &n, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(n, 2);
	int fd = mkstemp(list);
	assert_true(fd >= 0);
	dprintf(fd, "%s\n", GRAFT_SHARDS_LINE);
	for (size_t k = 0; k < n; k++) {
		paths[k] = write_model(shards[k]);
		dprintf(fd, "%s\n", paths[k]);
	}
	free(shards);
	close(fd);
	char *one_path = write_model(whole);
	if (graft_dataset_read(&ds, list, &err) || graft_dataset_read(&one, one_path, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(ds.n, 4);
	assert_int_equal(ds.n_shards, 2);
	assert_int_equal(ds.n_classes, 3);
	assert_memory_equal(ds.x.data, xs, 4 * 16);
	assert_memory_equal(ds.y.data, labels, sizeof(labels));
	assert_true(ds.x.dims[0] == 4 && ds.x.dims[3] == 2);
	assert_string_equal(meta_value(ds.model, GRAFT_META_CLASS_NAMES), "a,b,c");
	assert_true(graft_dataset_digest(&ds) == graft_dataset_digest(&one));
	graft_dataset_release(&ds);
	graft_dataset_release(&one);

	/* a shard of other classes */
	static const char *const other[] = {GRAFT_META_CLASSES, "3", GRAFT_META_CLASS_NAMES,
					    "a,c,b", NULL};
	char *odd = write_ds(&x, &y, other, &err);
	fd = open(list, O_WRONLY | O_TRUNC);
	dprintf(fd, "%s\n%s\n%s\n", GRAFT_SHARDS_LINE, paths[0], odd);
	close(fd);
	assert_int_equal(graft_dataset_read(&ds, list, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "'s classes (a,c,b) are not "));
	assert_true(strncmp(err.msg, list, strlen(list)) == 0);
	graft_dataset_release(&ds);
	for (size_t k = 0; k < n; k++) {
		unlink(paths[k]);
		free(paths[k]);
	}
	unlink(odd);
	unlink(one_path);
	unlink(list);
	free(odd);
	free(one_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_classes_from_labels_and_float_targets),
		cmocka_unit_test(test_write_refusals),
		cmocka_unit_test(test_read_refusals),
		cmocka_unit_test(test_shards),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
