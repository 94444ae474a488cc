/*
 * loader.c: batches made ahead of the step that needs them.
 *
 * The caller requests batches (lists of samples, with the epoch each is drawn for) in
 * the order it will take them; they wait in a ring of depth slots, each with buffers of
 * its own.  Worker threads hand out the samples of the queued batches one at a time,
 * oldest batch first, and write each into its row of its batch; the caller, in
 * graft_loader_take, helps with the oldest batch's remaining samples and then waits for
 * the rest.  A sample's bytes depend only on (seed, sample, epoch), never on who made it
 * or when, so the batches are the same with any number of threads, and an error is
 * reported for the lowest failing row, whatever the timing.
 *
 * Memory: depth batches of buffers, plus each worker's scratch; the dataset itself is
 * only read (mapped), never copied.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

#define DEFAULT_DEPTH 4
#define MAX_THREADS 64

struct slot {
	int64_t count, cap;
	int64_t *samples, *epochs;      /* epochs unused when !train */
	int train;
	int64_t next, done;             /* rows handed out, rows finished */
	void *rows[GRAFT_DATASET_MAX_INPUTS];
	int64_t failed_at;              /* the lowest failing row; count: none */
	struct graft_err err;
};

struct graft_loader {
	struct graft_loader_opts o;
	struct graft_array x[GRAFT_DATASET_MAX_INPUTS];  /* the inputs (shapes; rows or NULL) */
	size_t n_x;
	size_t row[GRAFT_DATASET_MAX_INPUTS];           /* bytes per sample of each */
	int64_t n;
	const struct graft_images *images;              /* NULL: rows of x; else &image_set */
	struct graft_images image_set;                  /* (its bytes and index borrowed) */
	struct image_transform t;
	double norm[2][3];

	struct slot *ring;
	int64_t head, tail;             /* batches requested: [head, tail) wait in the ring */
	pthread_mutex_t lock;
	pthread_cond_t work, ready;
	pthread_t workers[MAX_THREADS];
	int n_workers, stop;
	struct graft_loader_stats stats;
};

/* ---- one sample ---- */

/* Scratch a thread keeps between samples. */
struct scratch {
	float *tmp;
	size_t tmp_n;
};

/* Row j of slot s: sample s->samples[j] into each input's buffer. */
static int make_row(struct graft_loader *l, struct slot *s, int64_t j, struct scratch *sc,
		    double *decode_s, struct graft_err *err)
{
	int64_t i = s->samples[j];
	struct graft_rng r;
	int random = s->train && graft_loader_random(l);

	*decode_s = 0;
	if (random)
		data_sample_rng(&r, l->o.seed, i, s->epochs[j]);
	if (l->images) {
		float *dst = (float *)s->rows[0] + (size_t)j * (l->row[0] / sizeof(float));
		return data_image_sample(l->images, i, &l->t, l->o.augment, random ? &r : NULL,
					 dst, &sc->tmp, &sc->tmp_n, decode_s, err);
	}
	for (size_t k = 0; k < l->n_x; k++)
		memcpy((char *)s->rows[k] + (size_t)j * l->row[k],
		       (const char *)l->x[k].data + (size_t)i * l->row[k], l->row[k]);
	const struct graft_array *x = &l->x[0];
	if (random) {           /* (graft_loader_random: a float image, flipped or shifted) */
		size_t floats = l->row[0] / sizeof(float);
		if (data_scratch(&sc->tmp, &sc->tmp_n, floats))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		data_float_augment((float *)s->rows[0] + (size_t)j * floats, x->dims[1], x->dims[2],
				   x->dims[3], l->o.augment, &r, sc->tmp);
	}
	return 0;
}

/* The oldest waiting batch with a row not yet handed out, or NULL; called locked. */
static struct slot *open_slot(struct graft_loader *l)
{
	for (int64_t b = l->head; b < l->tail; b++) {
		struct slot *s = &l->ring[b % l->o.depth];
		if (s->next < s->count)
			return s;
	}
	return NULL;
}

/* Makes row j of s (handed out, lock not held) and records it; returns locked. */
static void do_row(struct graft_loader *l, struct slot *s, int64_t j, struct scratch *sc)
{
	struct graft_err err = {0};
	double t0 = graft_now(), decode_s;
	int rc = make_row(l, s, j, sc, &decode_s, &err);
	double spent = graft_now() - t0;

	pthread_mutex_lock(&l->lock);
	if (rc && j < s->failed_at) {
		s->failed_at = j;
		s->err = err;
		s->err.code = rc;
	}
	l->stats.samples++;
	l->stats.decode_s += decode_s;
	l->stats.transform_s += spent - decode_s;
	if (++s->done == s->count)
		pthread_cond_broadcast(&l->ready);
}

static void *worker(void *arg)
{
	struct graft_loader *l = arg;
	struct scratch sc = {0};

	pthread_mutex_lock(&l->lock);
	while (!l->stop) {
		struct slot *s = open_slot(l);
		if (!s) {
			pthread_cond_wait(&l->work, &l->lock);
			continue;
		}
		int64_t j = s->next++;
		pthread_mutex_unlock(&l->lock);
		do_row(l, s, j, &sc);
	}
	pthread_mutex_unlock(&l->lock);
	free(sc.tmp);
	return NULL;
}

/* ---- making and freeing ---- */

static int start(struct graft_loader *l, struct graft_err *err)
{
	if (l->o.threads < 0 || l->o.threads > MAX_THREADS)
		return graft_err_set(err, GRAFT_EINVAL, "a loader takes 0 to %d threads, not %d",
				     MAX_THREADS, l->o.threads);
	if (l->o.depth < 0)
		return graft_err_set(err, GRAFT_EINVAL, "a loader's depth is 0 (the default) or "
				     "more, not %d", l->o.depth);
	if (!l->o.depth)
		l->o.depth = DEFAULT_DEPTH;
	if (!(l->ring = calloc((size_t)l->o.depth, sizeof(*l->ring))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->work, NULL);
	pthread_cond_init(&l->ready, NULL);
	/* a worker that cannot start is one fewer: the caller makes what is left */
	while (l->n_workers < l->o.threads &&
	       pthread_create(&l->workers[l->n_workers], NULL, worker, l) == 0)
		l->n_workers++;
	return 0;
}

int graft_loader_new(struct graft_loader **out, const struct graft_array *x, size_t n_x,
		     const struct graft_loader_opts *o, struct graft_err *err)
{
	struct graft_loader *l;
	int rc;

	*out = NULL;
	if (n_x < 1 || n_x > GRAFT_DATASET_MAX_INPUTS || x[0].rank < 1 || x[0].dims[0] < 1)
		return graft_err_set(err, GRAFT_EINVAL, "a loader needs 1 to %d inputs of samples",
				     GRAFT_DATASET_MAX_INPUTS);
	if (!(l = calloc(1, sizeof(*l))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	l->o = *o;
	l->n = x[0].dims[0];
	l->n_x = n_x;
	for (size_t k = 0; k < n_x; k++) {
		if (x[k].rank < 1 || x[k].dims[0] != x[0].dims[0] || !x[k].data) {
			free(l);
			return graft_err_set(err, GRAFT_EINVAL, "the loader's input %zu does not hold "
					     "%" PRId64 " samples", k, x[0].dims[0]);
		}
		l->x[k] = x[k];
		l->row[k] = x[k].nbytes / (size_t)l->n;
	}
	if ((rc = start(l, err))) {
		graft_loader_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

int graft_loader_new_images(struct graft_loader **out, const struct graft_images *im,
			    const double *mean, const double *std,
			    const struct graft_loader_opts *o, struct graft_err *err)
{
	struct graft_loader *l;
	int64_t c = im->index[4];
	int rc;

	*out = NULL;
	if (o->height < 1 || o->width < 1 || o->height > 32768 || o->width > 32768)
		return graft_err_set(err, GRAFT_EINVAL, "images load at a size of 1 to 32768 each, "
				     "not %" PRId64 "x%" PRId64, o->height, o->width);
	if (o->resize && o->resize < (o->height > o->width ? o->height : o->width))
		return graft_err_set(err, GRAFT_EINVAL, "a resize to %" PRId64 " is too small for a "
				     "centre crop of %" PRId64 "x%" PRId64, o->resize, o->height,
				     o->width);
	if (o->scale_min < 0 || o->scale_min > 1 || o->jitter < 0 || o->jitter > 1)
		return graft_err_set(err, GRAFT_EINVAL, "the crop's smallest scale and the jitter "
				     "lie in [0, 1]");
	if (!(l = calloc(1, sizeof(*l))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	l->o = *o;
	l->image_set = *im;
	l->images = &l->image_set;
	l->n = im->n;
	l->n_x = 1;
	l->x[0] = (struct graft_array){.name = "x", .dtype = GRAFT_FLOAT, .rank = 4,
		.dims = {im->n, c, o->height, o->width},
		.nbytes = (size_t)(im->n * c * o->height * o->width) * sizeof(float)};
	l->row[0] = (size_t)(c * o->height * o->width) * sizeof(float);
	l->t = (struct image_transform){
		.oh = o->height, .ow = o->width, .c = c,
		.resize = o->resize ? o->resize
				    : ((o->height > o->width ? o->height : o->width) * 8 + 3) / 7,
		.scale_min = o->scale_min > 0 ? o->scale_min : 0.08,
		.jitter = o->jitter > 0 ? o->jitter : 0.4,
	};
	if (mean && std) {
		memcpy(l->norm[0], mean, sizeof(double) * (size_t)c);
		memcpy(l->norm[1], std, sizeof(double) * (size_t)c);
		l->t.mean = l->norm[0];
		l->t.std = l->norm[1];
	}
	if ((rc = start(l, err))) {
		graft_loader_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

void graft_loader_free(struct graft_loader *l)
{
	if (!l)
		return;
	if (l->ring) {
		pthread_mutex_lock(&l->lock);
		l->stop = 1;
		pthread_cond_broadcast(&l->work);
		pthread_mutex_unlock(&l->lock);
		for (int t = 0; t < l->n_workers; t++)
			pthread_join(l->workers[t], NULL);
		pthread_mutex_destroy(&l->lock);
		pthread_cond_destroy(&l->work);
		pthread_cond_destroy(&l->ready);
		for (int b = 0; b < l->o.depth; b++) {
			struct slot *s = &l->ring[b];
			free(s->samples);
			free(s->epochs);
			for (size_t k = 0; k < l->n_x; k++)
				free(s->rows[k]);
		}
		free(l->ring);
	}
	free(l);
}

size_t graft_loader_inputs(const struct graft_loader *l, struct graft_array *x)
{
	memcpy(x, l->x, sizeof(*x) * l->n_x);
	return l->n_x;
}

int graft_loader_ahead(const struct graft_loader *l)
{
	return l->n_workers ? l->o.depth : 1;
}

int graft_loader_random(const struct graft_loader *l)
{
	const struct graft_array *x = &l->x[0];
	unsigned a = l->o.augment;

	if (l->images)
		return (a & (GRAFT_AUGMENT_FLIP | GRAFT_AUGMENT_RRC | GRAFT_AUGMENT_JITTER)) != 0;
	return x->dtype == GRAFT_FLOAT && x->rank == 4 &&
	       (a & (GRAFT_AUGMENT_FLIP | GRAFT_AUGMENT_CROP)) != 0;
}

/* ---- requests ---- */

/* Room in s for count rows (s is free: no thread touches it). */
static int slot_reserve(struct graft_loader *l, struct slot *s, int64_t count)
{
	if (count <= s->cap)
		return 0;
	int64_t *samples = realloc(s->samples, sizeof(int64_t) * (size_t)count);
	if (samples)
		s->samples = samples;
	int64_t *epochs = samples ? realloc(s->epochs, sizeof(int64_t) * (size_t)count) : NULL;
	if (epochs)
		s->epochs = epochs;
	if (!samples || !epochs)
		return -1;
	for (size_t k = 0; k < l->n_x; k++) {
		void *rows = realloc(s->rows[k], l->row[k] * (size_t)count + 1);
		if (!rows)
			return -1;
		s->rows[k] = rows;
	}
	s->cap = count;
	return 0;
}

int graft_loader_request(struct graft_loader *l, const int64_t *samples, const int64_t *epochs,
			 int64_t count, struct graft_err *err)
{
	struct slot *s;
	int rc = 0;

	if (count < 1)
		return graft_err_set(err, GRAFT_EINVAL, "a batch of %" PRId64 " samples", count);
	for (int64_t j = 0; j < count; j++)
		if (samples[j] < 0 || samples[j] >= l->n)
			return graft_err_set(err, GRAFT_EINVAL, "sample %" PRId64 " is not one of the "
					     "%" PRId64, samples[j], l->n);
	pthread_mutex_lock(&l->lock);
	if (l->tail - l->head == l->o.depth) {
		rc = graft_err_set(err, GRAFT_EINVAL, "%d batches wait already", l->o.depth);
		goto out;
	}
	s = &l->ring[l->tail % l->o.depth];
	if (slot_reserve(l, s, count)) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory for a batch of %" PRId64,
				   count);
		goto out;
	}
	memcpy(s->samples, samples, sizeof(int64_t) * (size_t)count);
	if (epochs)
		memcpy(s->epochs, epochs, sizeof(int64_t) * (size_t)count);
	s->train = epochs != NULL;
	s->count = count;
	s->next = s->done = 0;
	s->failed_at = count;
	l->tail++;
	pthread_cond_broadcast(&l->work);
out:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

int graft_loader_take(struct graft_loader *l, struct graft_array *xb, struct graft_err *err)
{
	struct scratch sc = {0};
	struct slot *s;
	double t0 = graft_now(), own = 0;
	int rc = 0;

	pthread_mutex_lock(&l->lock);
	if (l->head == l->tail) {
		pthread_mutex_unlock(&l->lock);
		return graft_err_set(err, GRAFT_EINVAL, "no batch was requested");
	}
	s = &l->ring[l->head % l->o.depth];
	while (s->next < s->count) {            /* help with what no worker has started */
		int64_t j = s->next++;
		pthread_mutex_unlock(&l->lock);
		double t1 = graft_now();
		do_row(l, s, j, &sc);
		own += graft_now() - t1;
	}
	while (s->done < s->count)
		pthread_cond_wait(&l->ready, &l->lock);
	l->stats.waited_s += graft_now() - t0 - own;
	pthread_mutex_unlock(&l->lock);
	free(sc.tmp);
	/* the slot is the caller's until head moves on */
	if (s->failed_at < s->count) {
		rc = s->err.code;
		if (err)
			*err = s->err;
	}
	for (size_t k = 0; !rc && k < l->n_x; k++) {
		struct graft_array *b = &xb[k];
		b->dims[0] = s->count;
		b->nbytes = l->row[k] * (size_t)s->count;
		memcpy(b->data, s->rows[k], b->nbytes);
	}
	pthread_mutex_lock(&l->lock);
	l->head++;
	pthread_mutex_unlock(&l->lock);
	return rc;
}

void graft_loader_stats(const struct graft_loader *l, struct graft_loader_stats *s)
{
	pthread_mutex_lock((pthread_mutex_t *)&l->lock);
	*s = l->stats;
	pthread_mutex_unlock((pthread_mutex_t *)&l->lock);
}
