/*
 * test_train.c: training and evaluating a classifier whose output is a Softmax's (as
 * PaddleOCR's ends, and as graft-head leaves such a model): cross-entropy reads the
 * probabilities' logarithm, so every step's loss and accuracy, and so the updates, equal
 * those of the same classifier without the Softmax, trained on its logits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "graft.h"
#include "testmodel.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_softmax_output_trains_as_logits),
		cmocka_unit_test(test_frozen_prefix_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
