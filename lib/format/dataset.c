/*
 * dataset.c: datasets as .graft archives.
 *
 * A dataset is a model with an empty graph whose archive carries two detached tensors,
 * x (samples) and y (labels or targets), plus metadata properties that say what they
 * are.  Keeping datasets in the same container as models means one reader, mapping
 * and checksums for both, and a pipe of graft tools can carry either.  Reading checks
 * everything a training loop relies on (types, matching sample counts, labels in
 * range) once, so that the loop does not have to.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/format.h"

/* Parses graft.classes: a positive decimal count; 0 when absent. */
static int parse_classes(const char *s, int64_t *out, int code, struct graft_err *err)
{
	char *end;
	long long v;

	*out = 0;
	if (!s)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || v < 1)
		return graft_err_set(err, code, "metadata graft.classes '%s' is not a positive "
				     "count", s);
	if (v > GRAFT_MAX_CLASSES)
		return graft_err_set(err, code, "metadata graft.classes %lld is over %d", v,
				     GRAFT_MAX_CLASSES);
	*out = v;
	return 0;
}

/* The byte count a's shape and type call for, or SIZE_MAX when the shape is bad. */
static size_t array_bytes(const struct graft_array *a)
{
	uint64_t n;
	size_t esize = graft_dtype_size(a->dtype);

	if (dims_numel(a->dims, a->rank, &n) || n > SIZE_MAX / (esize ? esize : 1) - 1)
		return SIZE_MAX;
	return (size_t)n * esize;
}

/* 1 when in is a dataset's one float x (not named inputs). */
static int plain_x(const struct graft_array *in, size_t n_in)
{
	return n_in == 1 && (!in[0].name || strcmp(in[0].name, "x") == 0);
}

static int check_labels(const struct graft_array *y, int64_t n, int64_t classes,
			int64_t *n_classes, int code, struct graft_err *err);

/* The checks shared by read and write; code is the status a failure returns (EFORMAT
 * for an archive read, EINVAL for a caller's arrays).  classes is graft.classes or 0.
 * The inputs: one float x of rank 2 or more, or named inputs of any fixed-size type,
 * each (N, ...); or (n_in 0) compact images im. */
static int check_data(const struct graft_array *in, size_t n_in, const struct graft_images *im,
		      const struct graft_array *y, int64_t classes, int64_t *n_classes, int code,
		      struct graft_err *err)
{
	const struct graft_array *x = &in[0];
	int64_t n;
	int rc;

	if (im) {
		if ((rc = graft_images_check(im, err))) {
			if (err)
				err->code = code;
			return code;
		}
		return check_labels(y, im->n, classes, n_classes, code, err);
	}

	if (n_in < 1 || n_in > GRAFT_DATASET_MAX_INPUTS)
		return graft_err_set(err, code, "%zu inputs, not 1 to %d", n_in,
				     GRAFT_DATASET_MAX_INPUTS);
	if (plain_x(in, n_in) &&
	    (x->dtype != GRAFT_FLOAT || x->rank < 2 || x->rank > GRAFT_ARRAY_MAX_RANK))
		return graft_err_set(err, code, "x must be float of rank 2 to %d, not %s of rank %d",
				     GRAFT_ARRAY_MAX_RANK, graft_dtype_name(x->dtype)
				     ? graft_dtype_name(x->dtype) : "?", x->rank);
	n = x->rank ? x->dims[0] : 0;
	if (n < 1)
		return graft_err_set(err, code, "the dataset has no samples");
	for (size_t i = 0; i < n_in; i++) {
		const struct graft_array *a = &in[i];
		const char *name = a->name ? a->name : "x";
		if (!plain_x(in, n_in) && (!a->name || !*a->name))
			return graft_err_set(err, code, "input %zu has no name", i);
		for (size_t j = 0; j < i; j++)
			if (strcmp(in[j].name, name) == 0)
				return graft_err_set(err, code, "two inputs are named '%s'", name);
		if (!graft_dtype_size(a->dtype) || a->rank < 1 || a->rank > GRAFT_ARRAY_MAX_RANK)
			return graft_err_set(err, code, "input '%s' must be numeric of rank 1 to %d",
					     name, GRAFT_ARRAY_MAX_RANK);
		if (array_bytes(a) == SIZE_MAX || a->nbytes != array_bytes(a) || !a->data)
			return graft_err_set(err, code, "input '%s' has a bad shape or the wrong "
					     "number of bytes", name);
		if (a->dims[0] != n)
			return graft_err_set(err, code, "input '%s' has %" PRId64 " samples, '%s' %"
					     PRId64, name, a->dims[0], in[0].name ? in[0].name : "x", n);
	}
	return check_labels(y, n, classes, n_classes, code, err);
}

/* y against n samples: int64 (n) labels below classes (when not 0), or float (n, K)
 * targets; *n_classes as graft_dataset says. */
static int check_labels(const struct graft_array *y, int64_t n, int64_t classes,
			int64_t *n_classes, int code, struct graft_err *err)
{
	int64_t max = -1;

	if (!(y->dtype == GRAFT_INT64 && y->rank == 1) && !(y->dtype == GRAFT_FLOAT && y->rank == 2))
		return graft_err_set(err, code, "y must be int64 (N) labels or float (N, K) targets, "
				     "not %s of rank %d", graft_dtype_name(y->dtype)
				     ? graft_dtype_name(y->dtype) : "?", y->rank);
	if (y->dims[0] != n || (y->rank == 2 && y->dims[1] < 1))
		return graft_err_set(err, code, "x has %" PRId64 " samples but y has %" PRId64,
				     n, y->dims[0]);
	if (y->nbytes != array_bytes(y) || !y->data)
		return graft_err_set(err, code, "y holds the wrong number of bytes");
	*n_classes = 0;
	if (y->dtype != GRAFT_INT64)
		return 0;
	for (int64_t i = 0; i < n; i++) {
		int64_t v;
		memcpy(&v, (const char *)y->data + 8 * i, 8);
		if (v < 0)
			return graft_err_set(err, code, "label %" PRId64 " of sample %" PRId64
					     " is negative", v, i);
		/* Tools size per-class tables (names, confusion matrices) by the labels. */
		if (v >= GRAFT_MAX_CLASSES)
			return graft_err_set(err, code, "label %" PRId64 " of sample %" PRId64
					     " is over %d classes", v, i, GRAFT_MAX_CLASSES);
		if (v > max)
			max = v;
	}
	if (classes && max >= classes)
		return graft_err_set(err, code, "label %" PRId64 " is out of range for %" PRId64
				     " classes (graft.classes)", max, classes);
	*n_classes = classes ? classes : max + 1;
	return 0;
}

/* A view of stored tensor name, which must be a detached data tensor. */
static int view_tensor(const struct graft_model *m, const char *name, struct graft_array *a,
		       struct graft_err *err)
{
	long i = graft_model_find_tensor(m, name);
	struct graft_tensor t;

	if (i < 0)
		return graft_err_set(err, GRAFT_EFORMAT, "not a dataset (no tensor '%s')", name);
	graft_model_tensor(m, (size_t)i, &t);
	if (t.source != GRAFT_SOURCE_DETACHED || t.role != GRAFT_ROLE_DATA)
		return graft_err_set(err, GRAFT_EFORMAT, "not a dataset ('%s' is not a detached "
				     "data tensor)", name);
	if (t.rank > GRAFT_ARRAY_MAX_RANK)
		return graft_err_set(err, GRAFT_EFORMAT, "'%s' has rank %d, over %d", name, t.rank,
				     GRAFT_ARRAY_MAX_RANK);
	memset(a, 0, sizeof(*a));
	a->name = (char *)t.name;
	a->dtype = t.dtype;
	a->rank = t.rank;
	memcpy(a->dims, t.dims, sizeof(int64_t) * (size_t)t.rank);
	a->data = (void *)t.data;
	a->nbytes = t.nbytes;
	return 0;
}

/* Compact images: x.bytes and x.index, as graft.store says. */
static int view_images(struct graft_dataset *ds, const char *store, struct graft_err *err)
{
	struct graft_array bytes, index;
	int rc;

	if (strcmp(store, "uint8") && strcmp(store, "encoded"))
		return graft_err_set(err, GRAFT_EFORMAT, "metadata " GRAFT_META_STORE " '%s' is "
				     "not uint8 or encoded", store);
	if ((rc = view_tensor(ds->model, "x.bytes", &bytes, err)) ||
	    (rc = view_tensor(ds->model, "x.index", &index, err)))
		return rc;
	if (bytes.dtype != GRAFT_UINT8 || bytes.rank != 1 || index.dtype != GRAFT_INT64 ||
	    index.rank != 2 || index.dims[1] != GRAFT_IMAGES_INDEX_COLS)
		return graft_err_set(err, GRAFT_EFORMAT, "compact images need x.bytes uint8 [B] and "
				     "x.index int64 [N,%d]", GRAFT_IMAGES_INDEX_COLS);
	ds->images = (struct graft_images){
		.store = strcmp(store, "uint8") == 0 ? GRAFT_STORE_UINT8 : GRAFT_STORE_ENCODED,
		.n = index.dims[0], .bytes = bytes.data, .nbytes = bytes.nbytes,
		.index = index.data};
	/* In a mapped file, a loader lets a sample's pages go once read, so that memory
	 * holds what it reads, not the dataset (the check of the archive let them go too). */
	const struct graft_model *m = ds->model;
	const char *at = (const char *)bytes.data, *buf = m->buf;
	if (m->buf_mapped && at >= buf && at + bytes.nbytes <= buf + m->buf_len) {
		ds->images.map = m->buf;
		ds->images.map_len = m->buf_len;
	}
	return 0;
}

/* graft.mean or graft.std (which) of compact images: one value per channel, std
 * positive, into ds->norm[which]; absent: NULL. */
static int view_norm(struct graft_dataset *ds, int which, struct graft_err *err)
{
	const char *key = which ? GRAFT_META_STD : GRAFT_META_MEAN;
	const char *s = graft_model_metadata_value(ds->model, key);
	int64_t channels = ds->images.index[4];
	char *end;

	if (!s)
		return 0;
	for (int64_t c = 0; c < channels; c++) {
		errno = 0;
		double v = strtod(s, &end);
		if (end == s || errno || !isfinite(v) || (which && !(v > 0)) ||
		    (c + 1 < channels ? *end != ',' : *end != 0))
			return graft_err_set(err, GRAFT_EFORMAT, "metadata %s '%s' is not %" PRId64
					     " %snumbers", key, graft_model_metadata_value(ds->model,
											     key),
					     channels, which ? "positive " : "");
		ds->norm[which][c] = v;
		s = end + 1;
	}
	if (which)
		ds->std = ds->norm[1];
	else
		ds->mean = ds->norm[0];
	return 0;
}

/* The inputs: x, or else every x:NAME in manifest order, named NAME. */
static int view_inputs(struct graft_dataset *ds, struct graft_err *err)
{
	const struct graft_model *m = ds->model;
	const char *store = graft_model_metadata_value(m, GRAFT_META_STORE);
	int rc;

	if (store)
		return view_images(ds, store, err);
	if (graft_model_find_tensor(m, "x") >= 0) {
		ds->n_inputs = 1;
		return view_tensor(m, "x", &ds->inputs[0], err);
	}
	for (size_t i = 0; i < graft_model_tensor_count(m); i++) {
		struct graft_tensor t;
		graft_model_tensor(m, i, &t);
		if (strncmp(t.name, "x:", 2) != 0)
			continue;
		if (ds->n_inputs == GRAFT_DATASET_MAX_INPUTS)
			return graft_err_set(err, GRAFT_EFORMAT, "more than %d inputs",
					     GRAFT_DATASET_MAX_INPUTS);
		struct graft_array *a = &ds->inputs[ds->n_inputs++];
		if ((rc = view_tensor(m, t.name, a, err)))
			return rc;
		a->name += 2;
	}
	return ds->n_inputs ? 0 : graft_err_set(err, GRAFT_EFORMAT, "not a dataset (no tensor "
						 "'x', and no 'x:NAME')");
}

/* One dataset archive. */
static int read_one(struct graft_dataset *ds, const char *path, struct graft_err *err)
{
	const char *name = !path || strcmp(path, "-") == 0 ? "<stdin>" : path;
	int rc;

	memset(ds, 0, sizeof(*ds));
	if ((rc = graft_model_read(&ds->model, path, 0, err)))
		return rc;
	return dataset_view(ds, name, err);
}

int dataset_view(struct graft_dataset *ds, const char *name, struct graft_err *err)
{
	int64_t classes;
	int rc;

	if ((rc = view_inputs(ds, err)) ||
	    (rc = view_tensor(ds->model, "y", &ds->y, err)) ||
	    (rc = parse_classes(graft_model_metadata_value(ds->model, GRAFT_META_CLASSES), &classes,
				GRAFT_EFORMAT, err)) ||
	    (rc = check_data(ds->inputs, ds->n_inputs, ds->images.n ? &ds->images : NULL,
			     &ds->y, classes, &ds->n_classes, GRAFT_EFORMAT, err)) ||
	    (ds->images.n && ((rc = view_norm(ds, 0, err)) || (rc = view_norm(ds, 1, err)))))
		return graft_err_prefix(err, name);
	if (ds->images.n && !ds->mean != !ds->std)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: metadata graft.mean and graft.std "
				     "come together", name);
	ds->n = ds->images.n ? ds->images.n : ds->inputs[0].dims[0];
	if (!ds->images.n)
		ds->x = ds->inputs[0];
	return 0;
}

/* ---- sharded datasets ---- */

/* 1 when the file at path starts with GRAFT_SHARDS_LINE and a line end (0 for stdin, or
 * a file that cannot be read: the archive reader says why). */
static int is_shard_list(const char *path)
{
	char head[sizeof(GRAFT_SHARDS_LINE) + 1];
	size_t want = sizeof(GRAFT_SHARDS_LINE);        /* the line and its end */
	ssize_t got;
	int fd;

	if (!path || strcmp(path, "-") == 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	got = read(fd, head, want);
	close(fd);
	return got == (ssize_t)want && memcmp(head, GRAFT_SHARDS_LINE, want - 1) == 0 &&
	       (head[want - 1] == '\n' || head[want - 1] == '\r');
}

/* The shard paths a list names, into *paths (n of them, each malloc'd, like the array):
 * relative ones taken from the list's folder. */
static int shard_paths(const char *path, char ***paths, size_t *n, struct graft_err *err)
{
	const char *slash = strrchr(path, '/');
	size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
	char *text, *line, *save = NULL;
	size_t len;
	int rc = io_read_file(path, &text, &len, err);

	*paths = NULL;
	*n = 0;
	if (rc)
		return rc;
	strtok_r(text, "\n", &save);           /* the first line: GRAFT_SHARDS_LINE */
	while (!rc && (line = strtok_r(NULL, "\n", &save))) {
		size_t l = strlen(line);
		if (l && line[l - 1] == '\r')
			line[--l] = 0;
		if (!l)
			continue;
		if (*n == GRAFT_MAX_SHARDS) {
			rc = graft_err_set(err, GRAFT_EFORMAT, "%s: more than %d shards", path,
					   GRAFT_MAX_SHARDS);
			break;
		}
		char **grown = realloc(*paths, sizeof(char *) * (*n + 1));
		char *p = malloc(dir + l + 1);
		if (!grown || !p) {
			free(p);
			if (grown)
				*paths = grown;
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			break;
		}
		*paths = grown;
		if (line[0] == '/')
			memcpy(p, line, l + 1);
		else
			sprintf(p, "%.*s%s", (int)dir, path, line);
		(*paths)[(*n)++] = p;
	}
	if (!rc && !*n)
		rc = graft_err_set(err, GRAFT_EFORMAT, "%s: lists no shards", path);
	free(text);
	return rc;
}

/* Whether two metadata values (NULL: absent) are the same. */
static int same_meta(const struct graft_dataset *a, const struct graft_dataset *b,
		     const char *key)
{
	const char *u = graft_model_metadata_value(a->model, key);
	const char *v = graft_model_metadata_value(b->model, key);

	return (!u && !v) || (u && v && strcmp(u, v) == 0);
}

static int same_shape(const struct graft_array *a, const struct graft_array *b)
{
	return a->dtype == b->dtype && a->rank == b->rank &&
	       memcmp(a->dims + 1, b->dims + 1, sizeof(int64_t) * (size_t)(a->rank - 1)) == 0;
}

/* Shard b (at path) against the first, a (at first): GRAFT_EFORMAT saying how they
 * differ. */
static int agree(const struct graft_dataset *a, const struct graft_dataset *b,
		 const char *first, const char *path, struct graft_err *err)
{
	if (!a->images.n != !b->images.n)
		return graft_err_set(err, GRAFT_EFORMAT, "%s keeps its images %s; %s %s", path,
				     b->images.n ? "compact" : "as float tensors", first,
				     a->images.n ? "compact" : "as float tensors");
	if (a->images.n && (a->images.store != b->images.store ||
			    a->images.index[4] != b->images.index[4]))
		return graft_err_set(err, GRAFT_EFORMAT, "%s's images are stored or coloured "
				     "otherwise than %s's (graft.store, channels)", path, first);
	int same = a->n_inputs == b->n_inputs && same_shape(&a->y, &b->y);
	for (size_t k = 0; same && k < a->n_inputs; k++)
		same = same_shape(&a->inputs[k], &b->inputs[k]) &&
		       strcmp(a->inputs[k].name, b->inputs[k].name) == 0;
	if (!same)
		return graft_err_set(err, GRAFT_EFORMAT, "%s's samples differ in inputs, shape or "
				     "type from %s's", path, first);
	if (!same_meta(a, b, GRAFT_META_CLASSES) || !same_meta(a, b, GRAFT_META_CLASS_NAMES)) {
		const char *an = graft_model_metadata_value(a->model, GRAFT_META_CLASS_NAMES);
		const char *bn = graft_model_metadata_value(b->model, GRAFT_META_CLASS_NAMES);
		return graft_err_set(err, GRAFT_EFORMAT, "%s's classes (%.80s) are not %s's "
				     "(%.80s)", path, bn ? bn : "unnamed", first,
				     an ? an : "unnamed");
	}
	if (!same_meta(a, b, GRAFT_META_MEAN) || !same_meta(a, b, GRAFT_META_STD))
		return graft_err_set(err, GRAFT_EFORMAT, "%s's normalisation (graft.mean, "
				     "graft.std) is not %s's", path, first);
	return 0;
}

/* A shard's labels (input -1) or input: what merge concatenates. */
static const struct graft_array *part_of(const struct graft_dataset *shard, int input)
{
	return input < 0 ? &shard->y : &shard->inputs[input];
}

/* Every shard's labels (input -1) or input, one after another, in a new buffer. */
static void *concat(const struct graft_dataset *ds, int input, size_t *total)
{
	char *p, *buf;

	*total = 0;
	for (size_t k = 0; k < ds->n_shards; k++)
		*total += part_of(&ds->shards[k], input)->nbytes;
	if (!(buf = p = malloc(*total + 1)))
		return NULL;
	for (size_t k = 0; k < ds->n_shards; k++) {
		const struct graft_array *a = part_of(&ds->shards[k], input);
		memcpy(p, a->data, a->nbytes);
		p += a->nbytes;
	}
	return buf;
}

/* ds as one dataset of its shards' samples. */
static int merge(struct graft_dataset *ds, struct graft_err *err)
{
	const struct graft_dataset *first = &ds->shards[0];
	size_t slot = 0, total;

	ds->model = first->model;
	for (size_t k = 0; k < ds->n_shards; k++) {
		ds->n += ds->shards[k].n;
		if (ds->shards[k].n_classes > ds->n_classes)
			ds->n_classes = ds->shards[k].n_classes;
	}
	ds->y = first->y;
	ds->y.dims[0] = ds->n;
	if (!(ds->merged[slot++] = ds->y.data = concat(ds, -1, &ds->y.nbytes)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (!first->images.n) {
		ds->n_inputs = first->n_inputs;
		for (size_t i = 0; i < ds->n_inputs; i++) {
			struct graft_array *a = &ds->inputs[i];
			*a = first->inputs[i];
			a->dims[0] = ds->n;
			if (!(ds->merged[slot++] = a->data = concat(ds, (int)i, &a->nbytes)))
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
		ds->x = ds->inputs[0];
		return 0;
	}
	int64_t *index = malloc(sizeof(int64_t) * GRAFT_IMAGES_INDEX_COLS * (size_t)ds->n + 1);
	struct graft_images *parts = malloc(sizeof(*parts) * ds->n_shards);
	int32_t *part = malloc(sizeof(*part) * (size_t)ds->n + 1);
	ds->merged[slot++] = index;
	ds->merged[slot++] = (void *)parts;
	ds->merged[slot++] = part;
	if (!index || !parts || !part)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	total = 0;
	for (size_t k = 0, j = 0; k < ds->n_shards; k++) {
		const struct graft_images *im = &ds->shards[k].images;
		memcpy(index + j * GRAFT_IMAGES_INDEX_COLS, im->index,
		       sizeof(int64_t) * GRAFT_IMAGES_INDEX_COLS * (size_t)im->n);
		parts[k] = *im;
		for (int64_t i = 0; i < im->n; i++)
			part[j++] = (int32_t)k;
		total += im->nbytes;
	}
	ds->images = (struct graft_images){.store = first->images.store, .n = ds->n,
		.nbytes = total, .index = index, .parts = parts, .part = part};
	memcpy(ds->norm, first->norm, sizeof(ds->norm));
	ds->mean = first->mean ? ds->norm[0] : NULL;
	ds->std = first->std ? ds->norm[1] : NULL;
	return 0;
}

static int read_shards(struct graft_dataset *ds, const char *path, struct graft_err *err)
{
	char **paths;
	size_t n;
	int64_t samples = 0;
	int rc = shard_paths(path, &paths, &n, err);

	if (rc)
		return rc;      /* (its messages name path) */
	if (!(ds->shards = calloc(n, sizeof(*ds->shards))))
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t k = 0; !rc && k < n; k++) {
		if (is_shard_list(paths[k]))
			rc = graft_err_set(err, GRAFT_EFORMAT, "%s: a list of shards, not a shard",
					   paths[k]);
		else
			rc = read_one(&ds->shards[k], paths[k], err);
		ds->n_shards = k + 1;
		if (!rc && (samples += ds->shards[k].n) > INT32_MAX)
			rc = graft_err_set(err, GRAFT_EFORMAT, "%s: over 2^31 samples in all", paths[k]);
		if (!rc && k)
			rc = agree(&ds->shards[0], &ds->shards[k], paths[0], paths[k], err);
	}
	if (!rc)
		rc = merge(ds, err);
	for (size_t k = 0; k < n; k++)
		free(paths[k]);
	free(paths);
	return rc ? graft_err_prefix(err, path) : 0;
}

int graft_dataset_read(struct graft_dataset *ds, const char *path, struct graft_err *err)
{
	memset(ds, 0, sizeof(*ds));
	return is_shard_list(path) ? read_shards(ds, path, err) : read_one(ds, path, err);
}

void graft_dataset_release(struct graft_dataset *ds)
{
	if (ds->shards) {
		for (size_t k = 0; k < ds->n_shards; k++)
			graft_dataset_release(&ds->shards[k]);
		free(ds->shards);
		ds->model = NULL;       /* (the first shard's) */
	}
	for (size_t i = 0; i < sizeof(ds->merged) / sizeof(ds->merged[0]); i++)
		free(ds->merged[i]);
	graft_model_free(ds->model);
	memset(ds, 0, sizeof(*ds));
}

#define DIGEST_DROP ((size_t)16 << 20)

uint64_t graft_dataset_digest(const struct graft_dataset *ds)
{
	const uint8_t *run = NULL, *end = NULL;        /* read and not let go yet */
	int64_t run_sample = 0;                         /* (one of the run's samples) */
	uint64_t h = 0;

	for (size_t k = 0; k < ds->n_inputs; k++)
		h = graft_xxh64(ds->inputs[k].data, ds->inputs[k].nbytes, h);
	for (int64_t i = 0; ds->images.n && i < ds->n; i++) {
		const uint8_t *at = graft_images_at(&ds->images, i);
		size_t size = (size_t)ds->images.index[i * GRAFT_IMAGES_INDEX_COLS + 1];
		/* a mapped file's pages let go every 16 MiB read (not the whole file in
		 * memory), or where the samples jump (another shard) */
		if (run && (at != end || (size_t)(end - run) >= DIGEST_DROP)) {
			images_let_go(&ds->images, run_sample, run, (size_t)(end - run));
			run = NULL;
		}
		if (!run) {
			run = at;
			run_sample = i;
		}
		h = graft_xxh64(at, size, h);
		end = at + size;
	}
	if (run)
		images_let_go(&ds->images, run_sample, run, (size_t)(end - run));
	return graft_xxh64(ds->y.data, ds->y.nbytes, h);
}

int dataset_model(const struct graft_array *in, size_t n_in, const struct graft_images *im,
		  const struct graft_array *y, const char *const *meta, struct graft_model **out,
		  struct graft_err *err)
{
	struct graft_model *m = NULL;
	int64_t classes = 0, n_classes;
	char name[300];
	int rc;

	*out = NULL;
	for (size_t i = 0; meta && meta[i]; i += 2) {
		if (!meta[i + 1])
			return graft_err_set(err, GRAFT_EINVAL, "metadata key '%s' has no value",
					     meta[i]);
		if (strcmp(meta[i], GRAFT_META_CLASSES) == 0 &&
		    (rc = parse_classes(meta[i + 1], &classes, GRAFT_EINVAL, err)))
			return rc;
	}
	if ((rc = check_data(in, n_in, im, y, classes, &n_classes, GRAFT_EINVAL, err)) ||
	    (rc = graft_model_new(&m, err)))
		goto fail;
	if (im) {
		int64_t bd[1] = {(int64_t)im->nbytes}, id[2] = {im->n, GRAFT_IMAGES_INDEX_COLS};
		if ((rc = graft_model_add_tensor(m, "x.bytes", GRAFT_UINT8, 1, bd, im->bytes,
						 GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED, NULL, err)) ||
		    (rc = graft_model_add_tensor(m, "x.index", GRAFT_INT64, 2, id, im->index,
						 GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED, NULL, err)))
			goto fail;
		n_in = 0;
	}
	for (size_t i = 0; i < n_in; i++) {
		const struct graft_array *a = &in[i];
		if (plain_x(in, n_in))
			snprintf(name, sizeof(name), "x");
		else if (snprintf(name, sizeof(name), "x:%s", a->name) >= (int)sizeof(name)) {
			rc = graft_err_set(err, GRAFT_EINVAL, "input name '%.40s...' is too long",
					   a->name);
			goto fail;
		}
		if ((rc = graft_model_add_tensor(m, name, a->dtype, a->rank, a->dims, a->data,
						 GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED, NULL, err)))
			goto fail;
	}
	if ((rc = graft_model_add_tensor(m, "y", y->dtype, y->rank, y->dims, y->data,
					 GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED, NULL, err)))
		goto fail;
	for (size_t i = 0; meta && meta[i]; i += 2)
		if ((rc = graft_model_set_metadata(m, meta[i], meta[i + 1], err)))
			goto fail;
	*out = m;
	return 0;
fail:
	graft_model_free(m);
	return rc;
}

int graft_dataset_write(int fd, const struct graft_array *x, const struct graft_array *y,
			const char *const *meta, struct graft_err *err)
{
	struct graft_model *m;
	int rc;

	if ((rc = dataset_model(x, 1, NULL, y, meta, &m, err)))
		return rc;
	rc = graft_model_write_graft(m, fd, NULL, err);
	graft_model_free(m);
	return rc;
}

int graft_dataset_feed(const struct graft_dataset *ds, const struct graft_model *m,
		       struct graft_array *x, size_t *n_x, struct graft_err *err)
{
	size_t n = graft_model_input_count(m);
	struct graft_value_info vi;

	*n_x = 0;
	if (n > GRAFT_DATASET_MAX_INPUTS)
		return graft_err_set(err, GRAFT_EINVAL, "the model takes %zu inputs, over %d", n,
				     GRAFT_DATASET_MAX_INPUTS);
	if (plain_x(ds->inputs, ds->n_inputs)) {
		if (n != 1)
			return graft_err_set(err, GRAFT_EINVAL, "the model takes %zu inputs; the data "
					     "holds one (x)", n);
		x[0] = ds->inputs[0];
		*n_x = 1;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		size_t k;
		graft_model_input(m, i, &vi);
		for (k = 0; k < ds->n_inputs && strcmp(ds->inputs[k].name, vi.name); k++)
			;
		if (k == ds->n_inputs)
			return graft_err_set(err, GRAFT_EINVAL, "the model's input '%s' is not in the "
					     "data (it holds %s%s)", vi.name, ds->inputs[0].name,
					     ds->n_inputs > 1 ? ", ..." : "");
		x[(*n_x)++] = ds->inputs[k];
	}
	return 0;
}
