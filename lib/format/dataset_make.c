/*
 * dataset_make.c: the rules that turn samples as read (from IDX, npy, images, an earlier
 * dataset) into the dataset archives graft-data writes: which classes to keep and how
 * to relabel them, how many samples of each to take, how to split each class between a
 * training and a validation part, how to normalise, and what metadata says so.  They
 * live here rather than in the tool so that a C program makes the same dataset, byte
 * for byte, with the same few calls.  Every random choice comes from one graft_rng
 * seeded with the caller's seed, drawn in a fixed order (one shuffle per class, in
 * new-label order), so the same seed gives the same bytes everywhere.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/format.h"

/* Which part each sample goes to. */
enum { PART0 = 0, PART1 = 1, DROP = 2 };

struct choice {
	unsigned char *dest;    /* (n) PART0, PART1 or DROP */
	int64_t *label;         /* (n) new label, for int labels */
	int64_t n_classes;      /* classes kept (groups, for targets: 1) */
	int64_t *order;         /* (n_classes) original label of new label i */
	int64_t count[3];       /* samples per destination */
};

static int64_t n_of(const struct graft_samples *s) { return s->dims[0]; }

static size_t sample_size(const struct graft_samples *s)
{
	size_t n = 1;
	for (int i = 1; i < s->rank; i++)
		n *= (size_t)s->dims[i];
	return n;
}

/* Class c's name: its entry of class_names, or its number written into buf. */
static const char *class_name(const struct graft_samples *s, int64_t c, char buf[24])
{
	if (s->class_names)
		return s->class_names[c];
	snprintf(buf, 24, "%" PRId64, c);
	return buf;
}

int graft_dataset_check(const struct graft_samples *s, const struct graft_dataset_options *o,
			struct graft_err *err)
{
	if (s->inputs) {
		if (s->x || s->n_inputs < 1 || s->n_inputs > GRAFT_DATASET_MAX_INPUTS || n_of(s) < 1)
			return graft_err_set(err, GRAFT_EINVAL, "%s: samples must be x or 1 to %d "
					     "inputs, and at least one", s->name,
					     GRAFT_DATASET_MAX_INPUTS);
		for (size_t i = 0; i < s->n_inputs; i++)
			if (s->inputs[i].rank < 1 || s->inputs[i].dims[0] != n_of(s))
				return graft_err_set(err, GRAFT_EINVAL, "%s: input %zu does not hold "
						     "%" PRId64 " samples", s->name, i, n_of(s));
		if (o->mean || o->std)
			return graft_err_set(err, GRAFT_EINVAL, "%s: --mean and --std apply to "
					     "image samples, not to named inputs", s->name);
	} else if (s->images) {
		if (s->x || s->rank != 4 || s->images->n != n_of(s) || n_of(s) < 1 ||
		    (s->dims[1] != 1 && s->dims[1] != 3))
			return graft_err_set(err, GRAFT_EINVAL, "%s: compact images must be all the "
					     "samples, of 1 or 3 channels", s->name);
	} else if (s->rank < 2 || s->rank > GRAFT_ARRAY_MAX_RANK || n_of(s) < 1 || !s->x) {
		return graft_err_set(err, GRAFT_EINVAL, "%s: samples must have rank 2 to %d and "
				     "at least one sample", s->name, GRAFT_ARRAY_MAX_RANK);
	}
	if (!s->labels && (o->classes || o->take))
		return graft_err_set(err, GRAFT_EINVAL, "%s: --classes and --take need class "
				     "labels, not float targets", s->name);
	if (!s->labels && (!s->targets || s->k < 1))
		return graft_err_set(err, GRAFT_EINVAL, "%s: no labels and no targets", s->name);
	if (s->labels && (s->n_classes < 1 || s->n_classes > GRAFT_MAX_CLASSES))
		return graft_err_set(err, GRAFT_EINVAL, "%s: %" PRId64 " classes, not 1 to %d",
				     s->name, s->n_classes, GRAFT_MAX_CLASSES);
	for (int64_t i = 0; s->labels && i < n_of(s); i++)
		if (s->labels[i] < 0 || s->labels[i] >= s->n_classes)
			return graft_err_set(err, GRAFT_EINVAL, "%s: label %" PRId64 " of sample %"
					     PRId64 " is not below %" PRId64, s->name,
					     s->labels[i], i, s->n_classes);
	return 0;
}

/* The original label of class item, by name. */
static int find_class(const struct graft_samples *s, const char *item, int64_t *c,
		      struct graft_err *err)
{
	char b[24], first[24];

	for (*c = 0; *c < s->n_classes; (*c)++)
		if (strcmp(class_name(s, *c, b), item) == 0)
			return 0;
	return graft_err_set(err, GRAFT_EINVAL, "%s: class '%s' is not in the data (classes "
			     "%s to %s)", s->name, item, class_name(s, 0, first),
			     class_name(s, s->n_classes - 1, b));
}

/* Maps original labels to new ones (-1: dropped): all of them, or those o->classes
 * names, in its order. */
static int map_classes(const struct graft_samples *s, const struct graft_dataset_options *o,
		       struct choice *ch, int64_t *map, struct graft_err *err)
{
	int64_t c;
	int rc;

	for (c = 0; c < s->n_classes; c++) {
		map[c] = o->classes ? -1 : c;
		ch->order[c] = c;
	}
	if (!o->classes) {
		ch->n_classes = s->n_classes;
		return 0;
	}
	if (!o->n_keep)
		return graft_err_set(err, GRAFT_EINVAL, "--classes lists no class");
	for (size_t i = 0; i < o->n_keep; i++) {
		if ((rc = find_class(s, o->classes[i], &c, err)))
			return rc;
		if (map[c] >= 0)
			return graft_err_set(err, GRAFT_EINVAL, "--classes names class '%s' twice",
					     o->classes[i]);
		map[c] = ch->n_classes;
		ch->order[ch->n_classes++] = c;
	}
	return 0;
}

/* How many of a group of keep samples go to part 0, or an error when a part would
 * have none of them. */
static int split_count(const struct graft_samples *s, const struct graft_dataset_options *o,
		       const char *name, int64_t keep, int64_t *n_out, struct graft_err *err)
{
	*n_out = keep;
	if (!o->split)
		return 0;
	*n_out = (int64_t)floor(o->split * (double)keep + 0.5);
	if (*n_out == 0 || *n_out == keep)
		return graft_err_set(err, GRAFT_EINVAL, "%s: --split %g of class '%s' (%" PRId64
				     " samples) leaves %s without it", s->name, o->split, name,
				     keep, o->part_names[*n_out == 0 ? 0 : 1]);
	return 0;
}

/* Shuffles (when choosing at random), takes and splits one group of size samples. */
static int choose_group(const struct graft_samples *s, const struct graft_dataset_options *o,
			struct graft_rng *rng, const char *name, int64_t *group, int64_t size,
			struct choice *ch, struct graft_err *err)
{
	int64_t keep = size, n_out;
	int rc;

	if (o->take || o->split)
		graft_rng_shuffle(rng, group, (size_t)size);
	if (o->take) {
		if (o->take > size)
			return graft_err_set(err, GRAFT_EINVAL, "%s: --take %" PRId64 " but class "
					     "'%s' has %" PRId64 " samples", s->name, o->take,
					     name, size);
		keep = o->take;
	}
	if ((rc = split_count(s, o, name, keep, &n_out, err)))
		return rc;
	for (int64_t j = 0; j < keep; j++)
		ch->dest[group[j]] = j < n_out ? PART0 : PART1;
	return 0;
}

/* Decides where every sample goes and its new label.  Samples are grouped by new label
 * (float targets are one group) in sample order, then each group is shuffled in turn. */
static int choose(const struct graft_samples *s, const struct graft_dataset_options *o,
		  struct choice *ch, struct graft_err *err)
{
	int64_t n = n_of(s), n_groups, *map, *group = NULL, *size = NULL;
	struct graft_rng rng;
	char b[24];
	int rc = GRAFT_ENOMEM;

	ch->dest = malloc((size_t)n);
	ch->label = malloc(sizeof(int64_t) * (size_t)n);
	ch->order = malloc(sizeof(int64_t) * (size_t)(s->n_classes + 1));
	map = malloc(sizeof(int64_t) * (size_t)(s->n_classes + 1));
	if (!ch->dest || !ch->label || !ch->order || !map)
		goto out;
	if ((rc = map_classes(s, o, ch, map, err)))
		goto out;
	n_groups = s->labels ? ch->n_classes : 1;
	group = malloc(sizeof(int64_t) * (size_t)n);
	size = calloc((size_t)n_groups + 1, sizeof(int64_t));
	rc = GRAFT_ENOMEM;
	if (!group || !size)
		goto out;
	/* Group g takes group[start[g] .. start[g] + size[g]): counted, then filled. */
	for (int64_t i = 0; i < n; i++) {
		int64_t g = s->labels ? map[s->labels[i]] : 0;
		ch->dest[i] = DROP;
		ch->label[i] = g;
		if (g >= 0)
			size[g + 1]++;
	}
	for (int64_t g = 0; g < n_groups; g++)
		size[g + 1] += size[g];
	for (int64_t i = 0; i < n; i++)
		if (ch->label[i] >= 0)
			group[size[ch->label[i]]++] = i;
	/* size[g] is now group g's end, the next one's start */
	graft_rng_seed(&rng, o->seed);
	for (int64_t g = 0, start = 0; g < n_groups; start = size[g++]) {
		const char *name = s->labels ? class_name(s, ch->order[g], b) : "all";
		if ((rc = choose_group(s, o, &rng, name, group + start, size[g] - start, ch, err)))
			goto out;
	}
	for (int64_t i = 0; i < n; i++)
		ch->count[ch->dest[i]]++;
	rc = ch->count[PART0] ? 0 : graft_err_set(err, GRAFT_EINVAL, "%s: no samples of the "
						  "classes chosen", s->name);
out:
	if (rc == GRAFT_ENOMEM)
		graft_err_set(err, rc, "out of memory choosing samples");
	free(group);
	free(size);
	free(map);
	return rc;
}

/* The samples going to part dest, normalised, as x and y arrays owning their data. */
static int gather(const struct graft_samples *s, const struct graft_dataset_options *o,
		  const struct choice *ch, int dest, struct graft_array *x, struct graft_array *y)
{
	size_t per = s->x ? sample_size(s) : 0, channels = s->x ? (size_t)s->dims[1] : 1;
	/* (compact images are normalised as they load: graft.mean and graft.std record it) */
	size_t inner = per / channels;
	size_t k = (size_t)s->k;
	int64_t n = ch->count[dest], j = 0;
	float *xd;

	memset(x, 0, sizeof(*x));
	memset(y, 0, sizeof(*y));
	x->dtype = GRAFT_FLOAT;
	x->rank = s->rank;
	memcpy(x->dims, s->dims, sizeof(s->dims));
	x->dims[0] = n;
	x->nbytes = (size_t)n * per * sizeof(float);
	y->dims[0] = n;
	y->dtype = s->labels ? GRAFT_INT64 : GRAFT_FLOAT;
	y->rank = s->labels ? 1 : 2;
	y->dims[1] = s->labels ? 0 : s->k;
	y->nbytes = (size_t)n * (s->labels ? sizeof(int64_t) : k * sizeof(float));
	x->data = xd = malloc(x->nbytes ? x->nbytes : 1);
	y->data = malloc(y->nbytes ? y->nbytes : 1);
	if (!x->data || !y->data)
		return GRAFT_ENOMEM;
	for (int64_t i = 0; i < n_of(s); i++) {
		if (ch->dest[i] != dest)
			continue;
		float *v = xd + (size_t)j * per;
		if (s->x)
			memcpy(v, s->x + (size_t)i * per, per * sizeof(float));
		for (size_t c = 0; s->x && o->mean && c < channels; c++) {
			float *p = v + c * inner;
			for (size_t e = 0; e < inner; e++)
				p[e] = (float)((p[e] - o->mean[c]) / o->std[c]);
		}
		if (s->labels)
			((int64_t *)y->data)[j] = ch->label[i];
		else
			memcpy((float *)y->data + (size_t)j * k, s->targets + (size_t)i * k,
			       sizeof(float) * k);
		j++;
	}
	return 0;
}

/* The same for named inputs: each input's rows going to part dest, in in[] (owning). */
static int gather_inputs(const struct graft_samples *s, const struct choice *ch, int dest,
			 struct graft_array *in)
{
	int64_t n = ch->count[dest];

	for (size_t k = 0; k < s->n_inputs; k++) {
		const struct graft_array *a = &s->inputs[k];
		size_t row = a->nbytes / (size_t)n_of(s);
		int64_t j = 0;
		in[k] = *a;
		in[k].dims[0] = n;
		in[k].nbytes = (size_t)n * row;
		if (!(in[k].data = malloc(in[k].nbytes ? in[k].nbytes : 1)))
			return GRAFT_ENOMEM;
		for (int64_t i = 0; i < n_of(s); i++)
			if (ch->dest[i] == dest)
				memcpy((char *)in[k].data + (size_t)j++ * row,
				       (const char *)a->data + (size_t)i * row, row);
	}
	return 0;
}

/* The same for compact images: the bytes and index of those going to part dest (im
 * pointing at them, owned: free bytes and index). */
static int gather_images(const struct graft_samples *s, const struct choice *ch, int dest,
			 struct graft_images *im, uint8_t **bytes, int64_t **index)
{
	const struct graft_images *from = s->images;

	*bytes = NULL;
	*index = NULL;
	if (ch->count[dest] == n_of(s) && !from->parts) {
		/* every sample, in order (no take, split or shards): the bytes as they are,
		 * not a copy of a dataset's size */
		*im = *from;
		return 0;
	}
	return images_pack(from, 0, n_of(s), ch->dest, dest, im, bytes, index);
}

/* "a,b,c" of doubles, for graft.mean and graft.std. */
static char *list_string(const double *v, int64_t n)
{
	char *s = malloc((size_t)n * 32 + 1), *p = s;

	if (!s)
		return NULL;
	*p = 0;
	for (int64_t i = 0; i < n; i++)
		p += sprintf(p, "%s%.9g", i ? "," : "", v[i]);
	return s;
}

/* The kept classes' names, comma-separated, in new-label order. */
static char *names_string(const struct graft_samples *s, const struct choice *ch)
{
	size_t len = 1;
	char b[24], *names;

	for (int64_t c = 0; c < ch->n_classes; c++)
		len += strlen(class_name(s, ch->order[c], b)) + 1;
	if (!(names = malloc(len)))
		return NULL;
	names[0] = 0;
	for (int64_t c = 0; c < ch->n_classes; c++) {
		if (c)
			strcat(names, ",");
		strcat(names, class_name(s, ch->order[c], b));
	}
	return names;
}

/* The metadata both parts share, in the order the archives list it, plus room for
 * graft.split (which differs) and the terminating NULL; strings into bufs. */
struct meta {
	const char *kv[20];
	int n;
	char classes[24], take[24], seed[24], split[64];
	const char *store;
	char *names, *mean, *std;
};

static int meta_make(const struct graft_samples *s, const struct graft_dataset_options *o,
		     const struct choice *ch, struct meta *m)
{
	memset(m, 0, sizeof(*m));
	m->kv[m->n++] = GRAFT_META_SOURCE;
	m->kv[m->n++] = s->source;
	if (s->images) {
		m->kv[m->n++] = GRAFT_META_STORE;
		m->kv[m->n++] = s->images->store == GRAFT_STORE_UINT8 ? "uint8" : "encoded";
	}
	if (s->labels) {
		snprintf(m->classes, sizeof(m->classes), "%" PRId64, ch->n_classes);
		m->kv[m->n++] = GRAFT_META_CLASSES;
		m->kv[m->n++] = m->classes;
		m->kv[m->n++] = GRAFT_META_CLASS_NAMES;
		if (!(m->kv[m->n++] = m->names = names_string(s, ch)))
			return GRAFT_ENOMEM;
	}
	const double *mean = o->mean, *std = o->std;
	if (!mean && s->images) {
		mean = s->mean;
		std = s->std;
	}
	if (mean) {
		m->kv[m->n++] = GRAFT_META_MEAN;
		m->kv[m->n++] = m->mean = list_string(mean, s->dims[1]);
		m->kv[m->n++] = GRAFT_META_STD;
		m->kv[m->n++] = m->std = list_string(std, s->dims[1]);
		if (!m->mean || !m->std)
			return GRAFT_ENOMEM;
	}
	if (o->take) {
		snprintf(m->take, sizeof(m->take), "%" PRId64, o->take);
		m->kv[m->n++] = GRAFT_META_TAKE;
		m->kv[m->n++] = m->take;
	}
	if (o->take || o->split) {
		snprintf(m->seed, sizeof(m->seed), "%" PRIu64, o->seed);
		m->kv[m->n++] = GRAFT_META_SEED;
		m->kv[m->n++] = m->seed;
	}
	m->kv[m->n] = NULL;
	return 0;
}

static void meta_release(struct meta *m)
{
	free(m->names);
	free(m->mean);
	free(m->std);
}

/* Makes part dest's model: its samples, the shared metadata and its graft.split. */
static int make_part(const struct graft_samples *s, const struct graft_dataset_options *o,
		     const struct choice *ch, int dest, struct meta *m,
		     struct graft_model **out, struct graft_err *err)
{
	struct graft_array x, y;
	int rc;

	if (o->split) {
		snprintf(m->split, sizeof(m->split), "%s %g", dest == PART0 ? "train" : "val",
			 dest == PART0 ? o->split : 1 - o->split);
		m->kv[m->n] = GRAFT_META_SPLIT;
		m->kv[m->n + 1] = m->split;
		m->kv[m->n + 2] = NULL;
	}
	struct graft_array in[GRAFT_DATASET_MAX_INPUTS] = {0};
	struct graft_images im;
	uint8_t *bytes = NULL;
	int64_t *index = NULL;
	rc = gather(s, o, ch, dest, &x, &y);
	if (!rc && s->inputs)
		rc = gather_inputs(s, ch, dest, in);
	if (!rc && s->images)
		rc = gather_images(s, ch, dest, &im, &bytes, &index);
	if (rc)
		graft_err_set(err, rc, "out of memory gathering %" PRId64 " samples",
			      ch->count[dest]);
	else if (s->inputs)
		rc = dataset_model(in, s->n_inputs, NULL, &y, m->kv, out, err);
	else
		rc = dataset_model(&x, 1, s->images ? &im : NULL, &y, m->kv, out, err);
	graft_array_release(&x);
	graft_array_release(&y);
	free(bytes);
	free(index);
	for (size_t k = 0; k < s->n_inputs; k++)
		free(in[k].data);
	return rc;
}

/* o with a missing mean (when std is given) as zeros, a missing std as ones; *fill
 * holds them (free it). */
static int with_defaults(const struct graft_samples *s, const struct graft_dataset_options *o,
			 struct graft_dataset_options *full, double **fill)
{
	int64_t channels = s->dims[1];

	*full = *o;
	*fill = NULL;
	if (!o->mean == !o->std)
		return 0;
	if (!(*fill = malloc(sizeof(double) * (size_t)channels)))
		return GRAFT_ENOMEM;
	for (int64_t c = 0; c < channels; c++)
		(*fill)[c] = o->mean ? 1 : 0;
	if (o->mean)
		full->std = *fill;
	else
		full->mean = *fill;
	return 0;
}

int graft_dataset_make(const struct graft_samples *s, const struct graft_dataset_options *opt,
		       struct graft_dataset_parts *parts, struct graft_err *err)
{
	struct graft_dataset_options full, *o = &full;
	struct choice ch = {0};
	struct meta m = {0};
	double *fill = NULL;
	int rc;

	memset(parts, 0, sizeof(*parts));
	if ((rc = graft_dataset_check(s, opt, err)))
		return rc;
	if ((rc = with_defaults(s, opt, &full, &fill))) {
		graft_err_set(err, rc, "out of memory");
		goto out;
	}
	if ((rc = choose(s, o, &ch, err)))
		goto out;
	if ((rc = meta_make(s, o, &ch, &m))) {
		graft_err_set(err, rc, "out of memory writing metadata");
		goto out;
	}
	if ((rc = make_part(s, o, &ch, PART0, &m, &parts->part[0], err)) ||
	    (o->split && (rc = make_part(s, o, &ch, PART1, &m, &parts->part[1], err))))
		goto out;
	parts->count[0] = ch.count[PART0];
	parts->count[1] = ch.count[PART1];
	parts->n_classes = s->labels ? ch.n_classes : 0;
out:
	meta_release(&m);
	free(fill);
	free(ch.dest);
	free(ch.label);
	free(ch.order);
	return rc;
}

void graft_dataset_parts_release(struct graft_dataset_parts *parts)
{
	graft_model_free(parts->part[0]);
	graft_model_free(parts->part[1]);
	memset(parts, 0, sizeof(*parts));
}

/* ---- shards ---- */

/* The bytes sample i of ds takes in an archive: its rows of every input (or its image
 * and index row) and its label or target. */
static uint64_t sample_bytes(const struct graft_dataset *ds, int64_t i)
{
	uint64_t b = ds->y.nbytes / (uint64_t)ds->n;

	for (size_t k = 0; k < ds->n_inputs; k++)
		b += ds->inputs[k].nbytes / (uint64_t)ds->n;
	if (ds->images.n)
		b += (uint64_t)ds->images.index[i * GRAFT_IMAGES_INDEX_COLS + 1] +
		     sizeof(int64_t) * GRAFT_IMAGES_INDEX_COLS;
	return b;
}

/* Rows [a, b) of array x, as a view. */
static struct graft_array rows_of(const struct graft_array *x, int64_t a, int64_t b, int64_t n)
{
	struct graft_array v = *x;
	size_t row = x->nbytes / (size_t)n;

	v.dims[0] = b - a;
	v.data = (char *)x->data + (size_t)a * row;
	v.nbytes = (size_t)(b - a) * row;
	return v;
}

/* Samples [a, b) of ds as a dataset model with meta. */
static int shard_model(const struct graft_dataset *ds, int64_t a, int64_t b,
		       const char *const *meta, struct graft_model **out, struct graft_err *err)
{
	struct graft_array in[GRAFT_DATASET_MAX_INPUTS], y = rows_of(&ds->y, a, b, ds->n);
	struct graft_images im;
	uint8_t *bytes;
	int64_t *index;
	int rc;

	for (size_t k = 0; k < ds->n_inputs; k++) {
		in[k] = rows_of(&ds->inputs[k], a, b, ds->n);
		in[k].name = ds->inputs[k].name;
	}
	if (!ds->images.n)
		return dataset_model(in, ds->n_inputs, NULL, &y, meta, out, err);
	if (images_pack(&ds->images, a, b, NULL, 0, &im, &bytes, &index))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	rc = dataset_model(NULL, 0, &im, &y, meta, out, err);
	free(bytes);
	free(index);
	return rc;
}

int graft_dataset_shard(struct graft_model *part, uint64_t max_bytes,
			struct graft_model ***shards, size_t *n_shards, struct graft_err *err)
{
	struct graft_dataset ds = {.model = part};
	struct graft_model_meta mm;
	const char **meta = NULL;
	size_t n_meta, cap = 0;
	int rc;

	graft_model_meta(part, &mm);
	n_meta = mm.n_metadata;

	*shards = NULL;
	*n_shards = 0;
	if ((rc = dataset_view(&ds, "the dataset", err)))
		return rc;
	if (!(meta = calloc(2 * n_meta + 1, sizeof(*meta))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < n_meta; i++)
		graft_model_metadata(part, i, &meta[2 * i], &meta[2 * i + 1]);
	for (int64_t a = 0, b; !rc && a < ds.n; a = b) {
		uint64_t size = sample_bytes(&ds, a);
		for (b = a + 1; b < ds.n && size + sample_bytes(&ds, b) <= max_bytes; b++)
			size += sample_bytes(&ds, b);
		struct graft_model **grown = array_grow(*shards, &cap, *n_shards, sizeof(**shards));
		if (!grown) {
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			break;
		}
		*shards = grown;
		if (!(rc = shard_model(&ds, a, b, meta, &(*shards)[*n_shards], err)))
			(*n_shards)++;
	}
	free(meta);
	if (rc) {
		for (size_t i = 0; i < *n_shards; i++)
			graft_model_free((*shards)[i]);
		free(*shards);
		*shards = NULL;
		*n_shards = 0;
	}
	return rc;
}
