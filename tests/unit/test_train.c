/*
 * test_train.c: training and evaluating a classifier whose output is a Softmax's (as
 * PaddleOCR's ends, and as graft-head leaves such a model): cross-entropy reads the
 * probabilities' logarithm, so every step's loss and accuracy, and so the updates, equal
 * those of the same classifier without the Softmax, trained on its logits.
 *
 * Data-parallel training, with threads as the processes (threadcomm.h), on a classifier
 * with BatchNormalization and Dropout (whose masks follow the samples, not the pieces):
 * 2 and 4 processes train as one process that accumulates as
 * many micro-batches (each piece's own batch statistics), bit for bit, with SGD and
 * AdamW, whether the gradients are averaged in many buckets while backward goes on or
 * in one after it; every process holds the same bits, and a second run gives them; the
 * group's evaluation equals one process's within 1e-6; with synchronised BatchNorm, 2
 * and 4 processes equal one process with the whole batch within 1e-6; a batch that does
 * not split is refused.
 *
 * A Sigmoid output with float targets trains with binary cross-entropy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "graft.h"
#include "testmodel.h"
#include "threadcomm.h"

#define IN TM_FEATURES
#define CLASSES TM_CLASSES

/* x [batch, 4] -> Gemm (W [3, 4], transB) -> z, then Softmax (opset 13) -> y if softmax */
static struct graft_model *classifier(int softmax)
{
	Onnx__ModelProto *mp = tm_model(13);
	Onnx__TensorProto *t;
	Onnx__NodeProto *n;
	float w[CLASSES * IN], b[CLASSES] = {0.1f, -0.2f, 0.05f};

	for (int i = 0; i < CLASSES * IN; i++)
		w[i] = (float)((i * 7) % 5) * 0.3f - 0.6f;
	tm_input(mp, "x", 1, 2, (int64_t[]){-1, IN});
	tm_output(mp, "y", 1, 2, (int64_t[]){-1, CLASSES});
	t = tm_tensor("W", 1, 2, (int64_t[]){CLASSES, IN}); tm_raw(t, w, sizeof(w)); tm_initializer(mp, t);
	t = tm_tensor("B", 1, 1, (int64_t[]){CLASSES}); tm_raw(t, b, sizeof(b)); tm_initializer(mp, t);
	n = tm_node(mp, "Gemm", "fc", (const char *[]){"x", "W", "B", NULL},
		    (const char *[]){softmax ? "z" : "y", NULL});
	tm_attr_int(n, "transB", 1);
	if (softmax)
		tm_node(mp, "Softmax", "sm", (const char *[]){"z", NULL}, (const char *[]){"y", NULL});
	return tm_load(mp);
}

static void test_softmax_output_trains_as_logits(void **state)
{
	struct tm_data d;
	struct graft_model *m[2] = {classifier(0), classifier(1)};
	struct graft_trainer *t[2];
	struct graft_train_opts o = {0};
	struct graft_err err = {0};

	(void)state;
	tm_make_data(&d);
	graft_optim_defaults(&o.optim, GRAFT_OPTIM_SGD);
	o.optim.lr = 0.5;
	o.batch = 4;
	o.total_steps = 6;
	o.label_smoothing = 0.1;
	for (int k = 0; k < 2; k++)
		if (graft_trainer_new(&t[k], m[k], &d.x, 1, &d.y, &o, &err))
			fail_msg("%s", err.msg);
	for (int step = 0; step < 6; step++) {
		struct graft_step_stats s[2];
		for (int k = 0; k < 2; k++)
			if (graft_trainer_step(t[k], &s[k], &err))
				fail_msg("%s", err.msg);
		/* the loss moves (the rate is large) and stays the logits' */
		assert_true(fabs(s[1].loss - s[0].loss) < 1e-5 * (1 + fabs(s[0].loss)));
		assert_int_equal(s[1].correct, s[0].correct);
	}
	for (int k = 0; k < 2; k++) {
		if (graft_trainer_save(t[k], m[k], &err))
			fail_msg("%s", err.msg);
		graft_trainer_free(t[k]);
	}
	/* evaluation (graft-eval) after training: the same loss and accuracy */
	struct graft_eval e[2];
	for (int k = 0; k < 2; k++) {
		struct graft_net *net;
		if (graft_net_new(&net, m[k], &err) || graft_eval_init(&e[k], CLASSES, &err) ||
		    graft_evaluate(net, &d.x, 1, &d.y, 3, &e[k], &err))
			fail_msg("%s", err.msg);
		graft_net_free(net);
	}
	assert_true(e[0].loss > 0.01);
	assert_true(fabs(e[1].loss - e[0].loss) < 1e-5 * (1 + e[0].loss));
	assert_int_equal(e[1].correct, e[0].correct);
	for (int k = 0; k < 2; k++) {
		graft_eval_release(&e[k]);
		graft_model_free(m[k]);
	}
}

/* x [batch, 4] -> Gemm (W1 [4, 4], frozen) -> h -> Relu -> r -> Gemm (W [3, 4]) -> y: a
 * frozen backbone under a head. */
static struct graft_model *backbone_and_head(void)
{
	Onnx__ModelProto *mp = tm_model(13);
	Onnx__TensorProto *t;
	float w1[IN * IN], w[CLASSES * IN];
	struct graft_model *m;
	struct graft_err err = {0};

	for (int i = 0; i < IN * IN; i++)
		w1[i] = (float)((i * 5) % 7) * 0.2f - 0.5f;
	for (int i = 0; i < CLASSES * IN; i++)
		w[i] = (float)((i * 7) % 5) * 0.3f - 0.6f;
	tm_input(mp, "x", 1, 2, (int64_t[]){-1, IN});
	tm_output(mp, "y", 1, 2, (int64_t[]){-1, CLASSES});
	t = tm_tensor("W1", 1, 2, (int64_t[]){IN, IN}); tm_raw(t, w1, sizeof(w1)); tm_initializer(mp, t);
	t = tm_tensor("W", 1, 2, (int64_t[]){CLASSES, IN}); tm_raw(t, w, sizeof(w)); tm_initializer(mp, t);
	tm_attr_int(tm_node(mp, "Gemm", "backbone", (const char *[]){"x", "W1", NULL},
			    (const char *[]){"h", NULL}), "transB", 1);
	tm_node(mp, "Relu", "relu", (const char *[]){"h", NULL}, (const char *[]){"r", NULL});
	tm_attr_int(tm_node(mp, "Gemm", "head", (const char *[]){"r", "W", NULL},
			    (const char *[]){"y", NULL}), "transB", 1);
	m = tm_load(mp);
	if (graft_model_set_trainable(m, (size_t)graft_model_find_tensor(m, "W1"), 0, &err))
		fail_msg("%s", err.msg);
	return m;
}

/* The forward (backward 0) or backward runs of the node named name, from the trainer's
 * profile. */
static int64_t profiled_runs(const struct graft_trainer *t, const char *name, int backward)
{
	const struct graft_net *net = graft_trainer_net(t);
	struct graft_node_time nt;

	for (size_t i = 0; i < graft_net_profile_count(net); i++)
		if (graft_net_profile(net, i, &nt) == 0 && strcmp(nt.name, name) == 0)
			return backward ? nt.backward_runs : nt.runs;
	fail_msg("no node '%s' in the profile", name);
	return -1;
}

static int64_t runs_of(const struct graft_trainer *t, const char *name)
{
	return profiled_runs(t, name, 0);
}

/* The frozen backbone's outputs are kept per sample (cache_bytes 0: the default size):
 * after every sample was seen once, only the head runs, and the steps are the same as
 * without the cache (cache_bytes < 0) or with one too small to be made (1 byte). */
static void test_frozen_prefix_cache(void **state)
{
	struct tm_data d;
	const int64_t limits[3] = {0, -1, 1}, steps = 8;    /* 4 epochs of 2 batches */
	struct graft_model *m[3];
	struct graft_trainer *t[3];
	struct graft_err err = {0};

	(void)state;
	tm_make_data(&d);
	for (int k = 0; k < 3; k++) {
		struct graft_train_opts o = {.batch = 4, .total_steps = steps, .shuffle = 1,
					     .seed = 3, .profile = 1, .cache_bytes = limits[k]};
		graft_optim_defaults(&o.optim, GRAFT_OPTIM_SGD);
		o.optim.lr = 0.5;
		m[k] = backbone_and_head();
		if (graft_trainer_new(&t[k], m[k], &d.x, 1, &d.y, &o, &err))
			fail_msg("%s", err.msg);
	}
	for (int64_t step = 0; step < steps; step++) {
		struct graft_step_stats s[3];
		for (int k = 0; k < 3; k++)
			if (graft_trainer_step(t[k], &s[k], &err))
				fail_msg("%s", err.msg);
		assert_true(s[0].loss > 0);
		for (int k = 1; k < 3; k++) {
			assert_true(fabs(s[k].loss - s[0].loss) <= 1e-6 * (1 + fabs(s[0].loss)));
			assert_int_equal(s[k].correct, s[0].correct);
		}
	}
	/* Without a cache the backbone runs with every forward pass of the head; with it,
	 * the steps after the first epoch (2 batches of 4 see all 8 samples) run the head
	 * alone.  The profile counts the steps, not the trainer's planning run; backward
	 * runs in the head only (the backbone is frozen). */
	for (int k = 1; k < 3; k++)
		assert_int_equal(runs_of(t[k], "backbone"), runs_of(t[k], "head"));
	assert_int_equal(runs_of(t[0], "head"), steps);
	assert_int_equal(runs_of(t[0], "backbone"), 2);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(profiled_runs(t[k], "head", 1), steps);
		assert_int_equal(profiled_runs(t[k], "backbone", 1), 0);
	}
	for (int k = 0; k < 3; k++) {
		graft_trainer_free(t[k]);
		graft_model_free(m[k]);
	}
}


/* ---- data-parallel training ------------------------------------------------------------ */

#define DP_SAMPLES 24
#define DP_HIDDEN 6
#define DP_STEPS 16
#define DP_BATCH 8

/* x [batch, 4] -> Gemm (W1 [6, 4], B1) -> BatchNormalization (opset 15: training mode
 * in a training net) -> Relu -> Dropout (0.5) -> Gemm (W [3, 6]) -> y */
static struct graft_model *bn_classifier(void)
{
	Onnx__ModelProto *mp = tm_model(15);
	float w1[DP_HIDDEN * IN], b1[DP_HIDDEN], w[CLASSES * DP_HIDDEN];
	float sc[DP_HIDDEN], bi[DP_HIDDEN], mean[DP_HIDDEN], var[DP_HIDDEN];
	struct { const char *name; int rank; int64_t dims[2]; const float *v; size_t n; } init[] = {
		{"W1", 2, {DP_HIDDEN, IN}, w1, DP_HIDDEN * IN}, {"B1", 1, {DP_HIDDEN}, b1, DP_HIDDEN},
		{"scale", 1, {DP_HIDDEN}, sc, DP_HIDDEN}, {"bias", 1, {DP_HIDDEN}, bi, DP_HIDDEN},
		{"mean", 1, {DP_HIDDEN}, mean, DP_HIDDEN}, {"var", 1, {DP_HIDDEN}, var, DP_HIDDEN},
		{"W", 2, {CLASSES, DP_HIDDEN}, w, CLASSES * DP_HIDDEN},
	};

	for (int i = 0; i < DP_HIDDEN * IN; i++)
		w1[i] = (float)((i * 5) % 7) * 0.2f - 0.5f;
	for (int i = 0; i < CLASSES * DP_HIDDEN; i++)
		w[i] = (float)((i * 7) % 5) * 0.3f - 0.6f;
	for (int c = 0; c < DP_HIDDEN; c++) {
		b1[c] = 0.1f * (float)c - 0.2f;
		sc[c] = 1 + 0.1f * (float)c;
		bi[c] = 0.05f * (float)c;
		mean[c] = 0;
		var[c] = 1;
	}
	tm_input(mp, "x", 1, 2, (int64_t[]){-1, IN});
	tm_output(mp, "y", 1, 2, (int64_t[]){-1, CLASSES});
	for (size_t k = 0; k < sizeof(init) / sizeof(init[0]); k++) {
		Onnx__TensorProto *t = tm_tensor(init[k].name, 1, init[k].rank, init[k].dims);
		tm_raw(t, init[k].v, init[k].n * sizeof(float));
		tm_initializer(mp, t);
	}
	tm_attr_int(tm_node(mp, "Gemm", "fc1", (const char *[]){"x", "W1", "B1", NULL},
			    (const char *[]){"h", NULL}), "transB", 1);
	tm_node(mp, "BatchNormalization", "bn",
		(const char *[]){"h", "scale", "bias", "mean", "var", NULL},
		(const char *[]){"n", NULL});
	tm_node(mp, "Relu", "relu", (const char *[]){"n", NULL}, (const char *[]){"a", NULL});
	tm_node(mp, "Dropout", "drop", (const char *[]){"a", NULL}, (const char *[]){"r", NULL});
	tm_attr_int(tm_node(mp, "Gemm", "fc", (const char *[]){"r", "W", NULL},
			    (const char *[]){"y", NULL}), "transB", 1);
	return tm_load(mp);
}

struct dp_data {
	float xs[DP_SAMPLES * IN];
	int64_t ys[DP_SAMPLES];
	struct graft_array x, y;
};

static void dp_make_data(struct dp_data *d)
{
	for (int i = 0; i < DP_SAMPLES; i++) {
		d->ys[i] = (i * 7) % CLASSES;
		for (int k = 0; k < IN; k++)    /* the class shows, with noise */
			d->xs[i * IN + k] = (float)((i * 13 + k * 5) % 11) * 0.1f - 0.5f +
					    (k == d->ys[i] ? 0.8f : 0.0f);
	}
	d->x = (struct graft_array){.dtype = GRAFT_FLOAT, .rank = 2, .dims = {DP_SAMPLES, IN},
				    .data = d->xs, .nbytes = sizeof(d->xs)};
	d->y = (struct graft_array){.dtype = GRAFT_INT64, .rank = 1, .dims = {DP_SAMPLES},
				    .data = d->ys, .nbytes = sizeof(d->ys)};
}

#define DP_FLOATS (DP_HIDDEN * IN + 5 * DP_HIDDEN + CLASSES * DP_HIDDEN)

/* One process's run (alone, or one of a group): its options, then what it trained. */
struct dp_run {
	struct thread_comm c;
	int group, accumulate, optimizer, sync_bn;
	int64_t bucket_bytes;
	const struct dp_data *d;
	float weights[DP_FLOATS];       /* every tensor the run changes, one after another */
	double loss[DP_STEPS];
	struct graft_eval eval;
	int rc;
	char msg[sizeof(((struct graft_err *)0)->msg)];
};

static void *dp_train(void *arg)
{
	static const char *names[] = {"W1", "B1", "scale", "bias", "mean", "var", "W"};
	struct dp_run *r = arg;
	struct graft_model *m = bn_classifier();
	struct graft_train_opts o = {.batch = DP_BATCH, .total_steps = DP_STEPS, .shuffle = 1,
				     .seed = 5, .accumulate = r->accumulate, .sync_bn = r->sync_bn,
				     .bucket_bytes = r->bucket_bytes};
	struct graft_trainer *t = NULL;
	struct graft_err err = {0};
	size_t at = 0;

	graft_optim_defaults(&o.optim, r->optimizer);
	o.optim.lr = r->optimizer == GRAFT_OPTIM_SGD ? 0.05 : 0.01;
	o.comm = r->group > 1 ? &r->c.comm : NULL;
	r->rc = graft_trainer_new(&t, m, &r->d->x, 1, &r->d->y, &o, &err);
	for (int step = 0; !r->rc && step < DP_STEPS; step++) {
		struct graft_step_stats s;
		r->rc = graft_trainer_step(t, &s, &err);
		r->loss[step] = s.loss;
	}
	if (!r->rc)
		r->rc = graft_eval_init(&r->eval, CLASSES, &err);
	if (!r->rc)
		r->rc = graft_trainer_evaluate(t, &r->d->x, 1, &r->d->y, &r->eval, &err);
	if (!r->rc)
		r->rc = graft_trainer_save(t, m, &err);
	for (size_t k = 0; !r->rc && k < sizeof(names) / sizeof(names[0]); k++) {
		struct graft_tensor mt;
		graft_model_tensor(m, (size_t)graft_model_find_tensor(m, names[k]), &mt);
		memcpy(r->weights + at, mt.data, mt.nbytes);
		at += mt.numel;
	}
	snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
	graft_trainer_free(t);
	graft_model_free(m);
	return NULL;
}

/* size processes (threads; 1: alone) each accumulating `accumulate` micro-batches. */
static void dp_group(struct dp_run *runs, int size, int accumulate, int optimizer,
		     int sync_bn, int64_t bucket_bytes, const struct dp_data *d)
{
	struct thread_world w;

	thread_world_init(&w, size, -1);
	for (int r = 0; r < size; r++) {
		runs[r] = (struct dp_run){.group = size, .accumulate = accumulate,
					  .optimizer = optimizer, .sync_bn = sync_bn,
					  .bucket_bytes = bucket_bytes, .d = d};
		thread_comm_init(&runs[r].c, &w, r);
	}
	thread_world_run(&w, dp_train, runs, sizeof(runs[0]));
	thread_world_destroy(&w);
	for (int r = 0; r < size; r++)
		if (runs[r].rc)
			fail_msg("rank %d of %d: %s", r, size, runs[r].msg);
}

static void test_data_parallel(void **state)
{
	static const int optimizers[] = {GRAFT_OPTIM_SGD, GRAFT_OPTIM_ADAMW};
	static struct dp_run alone, group[4], again[4];
	struct dp_data d;

	(void)state;
	dp_make_data(&d);
	for (size_t o = 0; o < 2; o++)
		for (int size = 2; size <= 4; size += 2) {
			/* the group's gradients in buckets of 64 bytes (many, each averaged
			 * while backward goes on), then in one (the default size) */
			dp_group(&alone, 1, size, optimizers[o], 0, 0, &d);
			dp_group(group, size, 1, optimizers[o], 0, 64, &d);
			dp_group(again, size, 1, optimizers[o], 0, 0, &d);
			/* it trained: the loss fell, from the first 4 steps to the last 4 */
			double first = 0, last = 0;
			for (int k = 0; k < 4; k++) {
				first += alone.loss[k];
				last += alone.loss[DP_STEPS - 4 + k];
			}
			assert_true(last < 0.9 * first);
			for (int r = 0; r < size; r++) {
				assert_memory_equal(group[r].weights, group[0].weights,
						    sizeof(group[0].weights));
				assert_memory_equal(again[r].weights, group[0].weights,
						    sizeof(group[0].weights));
				assert_memory_equal(group[r].loss, group[0].loss,
						    sizeof(group[0].loss));
				assert_int_equal(group[r].eval.correct, alone.eval.correct);
				assert_int_equal(group[r].eval.count, DP_SAMPLES);
				assert_true(fabs(group[r].eval.loss - alone.eval.loss) <=
					    1e-6 * alone.eval.loss);
				graft_eval_release(&group[r].eval);
				graft_eval_release(&again[r].eval);
			}
			graft_eval_release(&alone.eval);
			/* the same bits: each piece runs as the lone process's micro-batch does,
			 * and the pieces are added in the same order */
			assert_memory_equal(group[0].weights, alone.weights, sizeof(alone.weights));
			assert_memory_equal(group[0].loss, alone.loss, sizeof(alone.loss));
		}
}

/* The largest difference between a's and b's values, relative to b's largest. */
static double dp_difference(const float *a, const float *b, size_t n)
{
	double diff = 0, mag = 0;

	for (size_t i = 0; i < n; i++) {
		diff = fmax(diff, fabs((double)a[i] - b[i]));
		mag = fmax(mag, fabs((double)b[i]));
	}
	return diff / mag;
}

/* Synchronised BatchNorm: 2 and 4 processes train as one process with the whole batch
 * (its statistics over all of it), within 1e-6 relative: the sums are taken in another
 * order, so not bit for bit.  Each process holds the same bits. */
static const size_t dp_at[8] = {      /* where each tensor of dp_run.weights starts */
	0, DP_HIDDEN * IN, DP_HIDDEN * (IN + 1), DP_HIDDEN * (IN + 2), DP_HIDDEN * (IN + 3),
	DP_HIDDEN * (IN + 4), DP_HIDDEN * (IN + 5), DP_FLOATS,
};
static void test_sync_bn(void **state)
{
	static const int optimizers[] = {GRAFT_OPTIM_SGD, GRAFT_OPTIM_ADAMW};
	static struct dp_run alone, group[4], apart[4];
	struct dp_data d;

	(void)state;
	dp_make_data(&d);
	for (size_t o = 0; o < 2; o++) {
		dp_group(&alone, 1, 1, optimizers[o], 0, 0, &d);
		graft_eval_release(&alone.eval);
		for (int size = 2; size <= 4; size += 2) {
			dp_group(group, size, 1, optimizers[o], 1, 0, &d);
			dp_group(apart, size, 1, optimizers[o], 0, 0, &d);
			for (int r = 0; r < size; r++) {
				assert_memory_equal(group[r].weights, group[0].weights,
						    sizeof(group[0].weights));
				graft_eval_release(&group[r].eval);
				graft_eval_release(&apart[r].eval);
			}
			/* AdamW: B1, the bias before the BatchNormalization, has a gradient of
			 * zero but for rounding (the normalisation takes the mean out), and
			 * Adam scales that noise to full steps, so any other order of the sums
			 * moves it by up to the rate; the running mean carries it.  Everything
			 * else must agree. */
			double diff = 0;
			for (int q = 0; q < 7; q++)
				if (!o || (q != 1 && q != 4))
					diff = fmax(diff, dp_difference(group[0].weights + dp_at[q],
									alone.weights + dp_at[q],
									dp_at[q + 1] - dp_at[q]));
			double apart_diff = dp_difference(apart[0].weights, alone.weights, DP_FLOATS);
			print_message("%s, %d processes: %.3g from one process with the whole batch "
				      "(%.3g with each process's own statistics)\n",
				      o ? "adamw" : "sgd", size, diff, apart_diff);
			assert_true(diff <= 1e-6);
			assert_true(apart_diff > 1e-3);         /* (the test can tell) */
			for (int step = 0; step < DP_STEPS; step++)
				assert_true(fabs(group[0].loss[step] - alone.loss[step]) <=
					    1e-6 * alone.loss[step]);
		}
	}
}

/* A batch that does not cut into equal pieces is refused, saying what would. */
static void test_uneven_batch(void **state)
{
	struct dp_data d;
	struct graft_model *m = bn_classifier();
	struct graft_trainer *t;
	struct graft_train_opts o = {.batch = 6, .total_steps = 1, .accumulate = 4};
	struct graft_err err = {0};

	(void)state;
	dp_make_data(&d);
	graft_optim_defaults(&o.optim, GRAFT_OPTIM_SGD);
	assert_int_equal(graft_trainer_new(&t, m, &d.x, 1, &d.y, &o, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "a batch of 6 does not split into 4 equal pieces"));
	assert_non_null(strstr(err.msg, "multiple of 4"));
	graft_model_free(m);
}

/* x [batch, 4] -> Gemm (W [1, 4], B [1]) -> Sigmoid -> y [batch, 1] */
static struct graft_model *sigmoid_scorer(void)
{
	Onnx__ModelProto *mp = tm_model(13);
	Onnx__TensorProto *t;
	float w[IN] = {0.3f, -0.2f, 0.1f, 0.05f}, b[1] = {-0.1f};

	tm_input(mp, "x", 1, 2, (int64_t[]){-1, IN});
	tm_output(mp, "y", 1, 2, (int64_t[]){-1, 1});
	t = tm_tensor("W", 1, 2, (int64_t[]){1, IN}); tm_raw(t, w, sizeof(w)); tm_initializer(mp, t);
	t = tm_tensor("B", 1, 1, (int64_t[]){1}); tm_raw(t, b, sizeof(b)); tm_initializer(mp, t);
	tm_attr_int(tm_node(mp, "Gemm", "fc", (const char *[]){"x", "W", "B", NULL},
			    (const char *[]){"z", NULL}), "transB", 1);
	tm_node(mp, "Sigmoid", "sig", (const char *[]){"z", NULL}, (const char *[]){"y", NULL});
	return tm_load(mp);
}

/* A Sigmoid output with float targets trains with binary cross-entropy (torch's
 * BCELoss): one SGD step moves W by lr * mean((p - t) x), the logits' gradient p - t as
 * for logistic regression; the loss is BCELoss's; training separates the two kinds; a
 * target outside [0, 1] is refused, naming the sample. */
static void test_sigmoid_output_trains_with_bce(void **state)
{
	struct tm_data d;
	float tv[TM_SAMPLES];
	struct graft_array tg;
	struct graft_model *m = sigmoid_scorer();
	struct graft_trainer *t;
	struct graft_train_opts o = {.batch = TM_SAMPLES, .total_steps = 60};
	struct graft_step_stats st;
	struct graft_err err = {0};
	const float w0[IN] = {0.3f, -0.2f, 0.1f, 0.05f};
	double want[IN], bce = 0;

	(void)state;
	tm_make_data(&d);
	for (int i = 0; i < TM_SAMPLES; i++)
		tv[i] = d.ys[i] == 0 ? 1.0f : 0.0f;
	tg = (struct graft_array){.dtype = GRAFT_FLOAT, .rank = 2, .dims = {TM_SAMPLES, 1},
				  .data = tv, .nbytes = sizeof(tv)};
	graft_optim_defaults(&o.optim, GRAFT_OPTIM_SGD);
	o.optim.lr = 1;
	o.optim.momentum = 0;
	/* the step by hand, in double */
	for (int k = 0; k < IN; k++)
		want[k] = w0[k];
	for (int i = 0; i < TM_SAMPLES; i++) {
		double z = -0.1;
		for (int k = 0; k < IN; k++)
			z += (double)w0[k] * d.xs[i * IN + k];
		double p = 1 / (1 + exp(-z));
		bce -= tv[i] * log(p) + (1 - tv[i]) * log(1 - p);
		for (int k = 0; k < IN; k++)
			want[k] -= (p - tv[i]) * d.xs[i * IN + k] / TM_SAMPLES;
	}
	if (graft_trainer_new(&t, m, &d.x, 1, &tg, &o, &err) || graft_trainer_step(t, &st, &err))
		fail_msg("%s", err.msg);
	assert_true(fabs(st.loss - bce / TM_SAMPLES) < 1e-6);
	if (graft_trainer_save(t, m, &err))
		fail_msg("%s", err.msg);
	struct graft_tensor w;
	graft_model_tensor(m, (size_t)graft_model_find_tensor(m, "W"), &w);
	for (int k = 0; k < IN; k++)
		assert_true(fabs(((const float *)w.data)[k] - want[k]) < 1e-6);
	for (int step = 1; step < 60; step++)
		if (graft_trainer_step(t, &st, &err))
			fail_msg("%s", err.msg);
	assert_true(st.loss < 0.5 * bce / TM_SAMPLES);
	assert_true(st.correct >= TM_SAMPLES - 1);
	graft_trainer_free(t);
	tv[5] = 2;
	assert_int_equal(graft_trainer_new(&t, m, &d.x, 1, &tg, &o, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "target 2 of sample 5 is not in [0, 1]"));
	graft_model_free(m);
}

/* A detector: labels 0 and 1 and one Sigmoid output train with binary cross-entropy
 * against the labels, step for step as with the same 0/1 float targets; an inference net
 * (the Sigmoid fused into the Gemm) scores 2 classes, and evaluation fills their confusion
 * matrix at 0.5; a label 2 is refused, naming the sample. */
static void test_detector_trains_on_labels(void **state)
{
	struct tm_data d;
	float tv[TM_SAMPLES];
	int64_t lv[TM_SAMPLES];
	struct graft_array tg, lab;
	struct graft_model *m = sigmoid_scorer(), *m2 = sigmoid_scorer();
	struct graft_trainer *t, *t2;
	struct graft_train_opts o = {.batch = TM_SAMPLES, .total_steps = 5};
	struct graft_step_stats st, st2;
	struct graft_net *net;
	struct graft_eval e;
	struct graft_err err = {0};

	(void)state;
	tm_make_data(&d);
	for (int i = 0; i < TM_SAMPLES; i++) {
		lv[i] = d.ys[i] == 0;
		tv[i] = (float)lv[i];
	}
	tg = (struct graft_array){.dtype = GRAFT_FLOAT, .rank = 2, .dims = {TM_SAMPLES, 1},
				  .data = tv, .nbytes = sizeof(tv)};
	lab = (struct graft_array){.dtype = GRAFT_INT64, .rank = 1, .dims = {TM_SAMPLES},
				   .data = lv, .nbytes = sizeof(lv)};
	graft_optim_defaults(&o.optim, GRAFT_OPTIM_SGD);
	o.optim.lr = 0.5;
	if (graft_trainer_new(&t, m, &d.x, 1, &tg, &o, &err) ||
	    graft_trainer_new(&t2, m2, &d.x, 1, &lab, &o, &err))
		fail_msg("%s", err.msg);
	for (int step = 0; step < 5; step++) {
		if (graft_trainer_step(t, &st, &err) || graft_trainer_step(t2, &st2, &err))
			fail_msg("%s", err.msg);
		assert_true(st.loss == st2.loss);
		assert_int_equal(st.correct, st2.correct);
	}
	assert_int_equal(graft_trainer_classes(t2), 2);
	graft_trainer_free(t);
	graft_trainer_free(t2);

	if (graft_net_new(&net, m, &err) || graft_eval_init(&e, 2, &err) ||
	    graft_evaluate(net, &d.x, 1, &lab, 4, &e, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(graft_net_scored_classes(net, 4), 2);
	assert_int_equal(e.count, TM_SAMPLES);
	assert_int_equal(e.confusion[0] + e.confusion[1] + e.confusion[2] + e.confusion[3],
			 TM_SAMPLES);
	assert_int_equal(e.correct, e.confusion[0] + e.confusion[3]);
	graft_eval_release(&e);
	lv[3] = 2;
	assert_int_equal(graft_eval_init(&e, 2, &err), 0);
	assert_int_equal(graft_evaluate(net, &d.x, 1, &lab, 4, &e, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "label 2 of sample 3"));
	graft_eval_release(&e);
	assert_int_equal(graft_trainer_new(&t, m, &d.x, 1, &lab, &o, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "label 2 of sample 3"));
	graft_net_free(net);
	graft_model_free(m);
	graft_model_free(m2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_softmax_output_trains_as_logits),
		cmocka_unit_test(test_frozen_prefix_cache),
		cmocka_unit_test(test_data_parallel),
		cmocka_unit_test(test_sync_bn),
		cmocka_unit_test(test_uneven_batch),
		cmocka_unit_test(test_sigmoid_output_trains_with_bce),
		cmocka_unit_test(test_detector_trains_on_labels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
