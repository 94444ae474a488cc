/*
 * test_recipe.c: the transfer recipes of the trainer (LP-FT, gradual unfreezing,
 * layer-wise rate decay) change what trains exactly when they should: a parameter that
 * has not started is bit for bit as it was, and starts at its step; a resumed run
 * continues a recipe exactly; and the recipe text graft-plan writes into a model's
 * metadata reads back as written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "graft.h"
#include "testmodel.h"

#define IN TM_FEATURES
#define CLASSES TM_CLASSES

static const float *tensor_data(const struct graft_model *m, const char *name)
{
	struct graft_tensor t;
	long i = graft_model_find_tensor(m, name);

	assert_true(i >= 0);
	graft_model_tensor(m, (size_t)i, &t);
	return t.data;
}

static void opts_sgd(struct graft_train_opts *o, double lr, int64_t steps)
{
	memset(o, 0, sizeof(*o));
	graft_optim_defaults(&o->optim, GRAFT_OPTIM_SGD);
	o->optim.lr = lr;
	o->batch = 4;
	o->total_steps = steps;
	o->shuffle = 1;
	o->seed = 5;
}

static void test_depths(void **state)
{
	struct graft_model *m = tm_mlp(3);
	size_t depth[16], blocks;
	struct graft_err err = {0};

	(void)state;
	assert_true(graft_model_tensor_count(m) <= 16);
	if (graft_model_param_depths(m, depth, &blocks, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(blocks, 2);
	assert_int_equal(depth[graft_model_find_tensor(m, "W")], 0);
	assert_int_equal(depth[graft_model_find_tensor(m, "W2")], 1);
	assert_int_equal(depth[graft_model_find_tensor(m, "W1")], 2);
	graft_model_free(m);
}

/* Trains steps steps; changed[s][k]: whether parameter k (W1, W2, W) differs from its
 * start after step s, and live[s] the tensors training in step s. */
static void trace(const struct graft_train_opts *o, int steps, int changed[][3], size_t *live)
{
	struct tm_data d;
	struct graft_model *m = tm_mlp(3);
	struct graft_trainer *t;
	struct graft_err err = {0};
	const char *names[3] = {"W1", "W2", "W"};
	float start[3][IN * IN];

	tm_make_data(&d);
	for (int k = 0; k < 3; k++)
		memcpy(start[k], tensor_data(m, names[k]), (k == 2 ? CLASSES : IN) * IN * sizeof(float));
	if (graft_trainer_new(&t, m, &d.x, 1, &d.y, o, &err))
		fail_msg("%s", err.msg);
	for (int s = 0; s < steps; s++) {
		struct graft_step_stats st;
		if (graft_trainer_step(t, &st, &err) || graft_trainer_save(t, m, &err))
			fail_msg("%s", err.msg);
		live[s] = graft_trainer_param_count(t);
		for (int k = 0; k < 3; k++)
			changed[s][k] = memcmp(start[k], tensor_data(m, names[k]),
					       (k == 2 ? CLASSES : IN) * IN * sizeof(float)) != 0;
	}
	graft_trainer_free(t);
	graft_model_free(m);
}

/* Gradual unfreezing every 2 steps: the head trains from step 0, W2 from step 2, W1 from
 * step 4; until then each is exactly as it was. */
static void test_unfreeze_every(void **state)
{
	struct graft_train_opts o;
	int changed[6][3];
	size_t live[6];

	(void)state;
	opts_sgd(&o, 0.2, 6);
	o.unfreeze_every = 2;
	trace(&o, 6, changed, live);
	for (int s = 0; s < 6; s++) {
		assert_int_equal(live[s], s < 2 ? 1 : s < 4 ? 2 : 3);
		assert_int_equal(changed[s][2], 1);
		assert_int_equal(changed[s][1], s >= 2);
		assert_int_equal(changed[s][0], s >= 4);
	}
}

/* LP-FT over 2 steps: the head alone at 10 times the rate, then everything from the
 * schedule's start. */
static void test_lp_ft(void **state)
{
	struct graft_train_opts o;
	struct graft_trainer *t;
	struct graft_model *m = tm_mlp(3);
	struct tm_data d;
	struct graft_err err = {0};
	int changed[6][3];
	size_t live[6];

	(void)state;
	opts_sgd(&o, 0.1, 6);
	o.lp_steps = 2;
	o.schedule = GRAFT_SCHEDULE_COSINE;
	trace(&o, 6, changed, live);
	for (int s = 0; s < 6; s++) {
		assert_int_equal(live[s], s < 2 ? 1 : 3);
		assert_int_equal(changed[s][2], 1);
		assert_int_equal(changed[s][1], s >= 2);
		assert_int_equal(changed[s][0], s >= 2);
	}
	tm_make_data(&d);
	if (graft_trainer_new(&t, m, &d.x, 1, &d.y, &o, &err))
		fail_msg("%s", err.msg);
	/* cosine over the LP phase's 2 steps from 1.0, then over the other 4 from 0.1 */
	assert_true(fabs(graft_trainer_lr(t, 0) - 1.0) < 1e-12);
	assert_true(fabs(graft_trainer_lr(t, 1) - 0.5) < 1e-12);
	assert_true(fabs(graft_trainer_lr(t, 2) - 0.1) < 1e-12);
	assert_true(fabs(graft_trainer_lr(t, 4) - 0.05) < 1e-12);
	assert_int_equal(graft_trainer_param_start(t, "W"), 0);
	assert_int_equal(graft_trainer_param_start(t, "W2"), 2);
	assert_int_equal(graft_trainer_param_start(t, "W1"), 2);
	assert_int_equal(graft_trainer_param_start(t, "x"), -1);
	graft_trainer_free(t);
	graft_model_free(m);

	/* with gradual unfreezing after it: W2 at the end of LP, W1 3 steps later */
	opts_sgd(&o, 0.1, 6);
	o.lp_steps = 2;
	o.unfreeze_every = 3;
	m = tm_mlp(3);
	if (graft_trainer_new(&t, m, &d.x, 1, &d.y, &o, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(graft_trainer_param_start(t, "W2"), 2);
	assert_int_equal(graft_trainer_param_start(t, "W1"), 5);
	graft_trainer_free(t);
	graft_model_free(m);
}

/* Layer-wise decay 0.5 is the rate factor 0.5 for W2 and 0.25 for W1, bit for bit. */
static void test_layer_decay(void **state)
{
	struct graft_lr_mult mults[2] = {{"W2", 0.5}, {"W1", 0.25}};
	struct graft_model *m[2] = {tm_mlp(3), tm_mlp(3)};
	struct graft_trainer *t[2];
	struct tm_data d;
	struct graft_err err = {0};

	(void)state;
	tm_make_data(&d);
	for (int k = 0; k < 2; k++) {
		struct graft_train_opts o;
		opts_sgd(&o, 0.3, 5);
		o.optim.momentum = 0.9;
		if (k == 0) {
			o.layer_decay = 0.5;
		} else {
			o.lr_mults = mults;
			o.n_lr_mults = 2;
		}
		if (graft_trainer_new(&t[k], m[k], &d.x, 1, &d.y, &o, &err))
			fail_msg("%s", err.msg);
		for (int s = 0; s < 5; s++) {
			struct graft_step_stats st;
			if (graft_trainer_step(t[k], &st, &err))
				fail_msg("%s", err.msg);
		}
		if (graft_trainer_save(t[k], m[k], &err))
			fail_msg("%s", err.msg);
	}
	assert_memory_equal(tensor_data(m[0], "W1"), tensor_data(m[1], "W1"), IN * IN * 4);
	assert_memory_equal(tensor_data(m[0], "W2"), tensor_data(m[1], "W2"), IN * IN * 4);
	assert_memory_equal(tensor_data(m[0], "W"), tensor_data(m[1], "W"), CLASSES * IN * 4);
	struct graft_model *fresh = tm_mlp(3);
	assert_memory_not_equal(tensor_data(m[0], "W1"), tensor_data(fresh, "W1"), IN * IN * 4);
	graft_model_free(fresh);
	for (int k = 0; k < 2; k++) {
		graft_trainer_free(t[k]);
		graft_model_free(m[k]);
	}
}

/* AdamW with LP-FT and unfreezing, stopped after 3 steps, saved and resumed: the same
 * weights after 8 steps as a straight run (each parameter's Adam state starts at its own
 * first update, and the resumed trainer knows which have started). */
static void test_resume_mid_recipe(void **state)
{
	struct graft_model *m[2] = {tm_mlp(3), tm_mlp(3)};
	struct graft_trainer *t;
	struct graft_train_opts o;
	struct tm_data d;
	struct graft_err err = {0};
	struct graft_step_stats st;

	(void)state;
	tm_make_data(&d);
	memset(&o, 0, sizeof(o));
	graft_optim_defaults(&o.optim, GRAFT_OPTIM_ADAMW);
	o.optim.lr = 0.05;
	o.batch = 4;
	o.total_steps = 8;
	o.shuffle = 1;
	o.seed = 9;
	o.schedule = GRAFT_SCHEDULE_COSINE;
	o.lp_steps = 2;
	o.unfreeze_every = 2;
	/* straight */
	if (graft_trainer_new(&t, m[0], &d.x, 1, &d.y, &o, &err))
		fail_msg("%s", err.msg);
	for (int s = 0; s < 8; s++)
		if (graft_trainer_step(t, &st, &err))
			fail_msg("%s", err.msg);
	if (graft_trainer_save(t, m[0], &err))
		fail_msg("%s", err.msg);
	graft_trainer_free(t);
	/* 3 steps (W2 has started, W1 not), saved, then a new trainer resumed for 5 more */
	if (graft_trainer_new(&t, m[1], &d.x, 1, &d.y, &o, &err))
		fail_msg("%s", err.msg);
	for (int s = 0; s < 3; s++)
		if (graft_trainer_step(t, &st, &err))
			fail_msg("%s", err.msg);
	if (graft_trainer_save(t, m[1], &err))
		fail_msg("%s", err.msg);
	graft_trainer_free(t);
	assert_true(graft_model_find_tensor(m[1], "graft.optim/W2/exp_avg") >= 0);
	assert_true(graft_model_find_tensor(m[1], "graft.optim/W1/exp_avg") < 0);
	if (graft_trainer_new(&t, m[1], &d.x, 1, &d.y, &o, &err) ||
	    graft_trainer_resume(t, m[1], &err))
		fail_msg("%s", err.msg);
	assert_int_equal(graft_trainer_param_count(t), 2);
	for (int s = 3; s < 8; s++)
		if (graft_trainer_step(t, &st, &err))
			fail_msg("%s", err.msg);
	if (graft_trainer_save(t, m[1], &err))
		fail_msg("%s", err.msg);
	graft_trainer_free(t);
	assert_memory_equal(tensor_data(m[0], "W1"), tensor_data(m[1], "W1"), IN * IN * 4);
	assert_memory_equal(tensor_data(m[0], "W2"), tensor_data(m[1], "W2"), IN * IN * 4);
	assert_memory_equal(tensor_data(m[0], "W"), tensor_data(m[1], "W"), CLASSES * IN * 4);
	graft_model_free(m[0]);
	graft_model_free(m[1]);
}

/* A recipe on a model without block boundaries, one that starts with a frozen head, and
 * negative settings: each refused with a message. */
static void test_recipe_refusals(void **state)
{
	struct graft_model *m = tm_mlp(1);
	struct graft_trainer *t;
	struct graft_train_opts o;
	struct tm_data d;
	struct graft_err err = {0};

	(void)state;
	tm_make_data(&d);
	opts_sgd(&o, 0.1, 4);
	o.unfreeze_every = 1;
	assert_int_equal(graft_trainer_new(&t, m, &d.x, 1, &d.y, &o, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "no block boundary"));
	graft_model_free(m);

	m = tm_mlp(3);
	if (graft_model_set_trainable(m, (size_t)graft_model_find_tensor(m, "W"), 0, &err))
		fail_msg("%s", err.msg);
	o.unfreeze_every = 0;
	o.lp_steps = 2;
	assert_int_equal(graft_trainer_new(&t, m, &d.x, 1, &d.y, &o, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "the head"));
	o.lp_steps = -1;
	assert_int_equal(graft_trainer_new(&t, m, &d.x, 1, &d.y, &o, &err), GRAFT_EINVAL);
	graft_model_free(m);
}

/* The four-case recipe: AdamW at 0.003, cosine, 30 epochs. */
static void recipe_four_case(struct graft_recipe *r)
{
	graft_recipe_defaults(r);
	r->epochs = 30;
	r->optimizer = GRAFT_OPTIM_ADAMW;
	r->lr = 0.003;
	r->schedule = GRAFT_SCHEDULE_COSINE;
}

static void test_recipe_text(void **state)
{
	struct graft_recipe r, back;
	struct graft_err err = {0};
	char text[512];

	(void)state;
	recipe_four_case(&r);
	r.lp_ft = 7.5;
	graft_recipe_format(&r, text, sizeof(text));
	assert_string_equal(text, "--epochs 30 --batch 32 --optimizer adamw --lr 0.003 "
			    "--schedule cosine --lp-ft 7.5");
	/* every field, numbers that need all their digits */
	r.batch = 16;
	r.lr = 1.0 / 3;
	r.weight_decay = 0;
	r.warmup = 100;
	r.bn_frozen = 1;
	r.lp_lr = 0.1 / 7;
	r.unfreeze_every = 2;
	r.layer_decay = 0.65;
	assert_true(graft_recipe_format(&r, text, sizeof(text)) < sizeof(text));
	if (graft_recipe_parse(text, &back, &err))
		fail_msg("%s: %s", text, err.msg);
	assert_memory_equal(&r, &back, sizeof(r));
	/* a short buffer: the length it would need, and a terminated prefix */
	char small[8];
	assert_true(graft_recipe_format(&r, small, sizeof(small)) > sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);

	const char *bad[] = {
		"--epochs 3 --output /tmp/x", "--epochs", "--epochs 3 --lr fast", "--lr 0.1",
		"--epochs 3 --batch 2.5", "epochs 3", "--epochs 3 --layer-decay 2",
		"--epochs 3 --optimizer lbfgs", "--epochs 3 --schedule step:1:2",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg[0] = 0;
		if (graft_recipe_parse(bad[i], &back, &err) != GRAFT_EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_non_null(strstr(err.msg, "recipe"));
	}
}

/* The recipe in a model's metadata survives writing and reading the model. */
static void test_recipe_metadata(void **state)
{
	struct graft_model *m = tm_mlp(3), *back;
	struct graft_recipe r, got;
	struct graft_err err = {0};
	char text[256], *dir = tm_tempdir(), path[512];
	int fd;

	(void)state;
	graft_recipe_defaults(&r);
	r.epochs = 12;
	r.lr = 0.01;
	r.unfreeze_every = 1;
	graft_recipe_format(&r, text, sizeof(text));
	snprintf(path, sizeof(path), "%s/m.graft", dir);
	if (graft_model_set_metadata(m, GRAFT_RECIPE_KEY, text, &err))
		fail_msg("%s", err.msg);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	if (graft_model_write_graft(m, fd, NULL, &err))
		fail_msg("%s", err.msg);
	close(fd);
	if (graft_model_read(&back, path, 0, &err))
		fail_msg("%s", err.msg);
	assert_string_equal(graft_model_metadata_value(back, GRAFT_RECIPE_KEY), text);
	if (graft_recipe_parse(graft_model_metadata_value(back, GRAFT_RECIPE_KEY), &got, &err))
		fail_msg("%s", err.msg);
	assert_memory_equal(&r, &got, sizeof(r));
	unlink(path);
	rmdir(dir);
	free(dir);
	graft_model_free(back);
	graft_model_free(m);
}

/* A recipe's epochs become the trainer's steps as graft-train counts them (a partial
 * step counts), at a batch no larger than the data. */
static void test_recipe_train_opts(void **state)
{
	struct graft_recipe r;
	struct graft_train_opts o;

	(void)state;
	recipe_four_case(&r);
	r.lp_ft = 10;
	r.unfreeze_every = 2;
	r.layer_decay = 0.8;
	graft_recipe_train_opts(&r, 100, 7, &o);
	assert_int_equal(o.batch, 32);
	assert_int_equal(o.total_steps, 94);         /* ceil(30 * 100 / 32) */
	assert_int_equal(o.lp_steps, 32);            /* ceil(10 * 100 / 32) */
	assert_int_equal(o.unfreeze_every, 7);       /* ceil(2 * 100 / 32) */
	assert_true(o.layer_decay == 0.8 && o.optim.lr == 0.003 && o.seed == 7 && o.shuffle);
	assert_int_equal(o.optim.kind, GRAFT_OPTIM_ADAMW);
	assert_true(o.optim.weight_decay == 0.01);   /* AdamW's default: none was given */
	assert_true(graft_train_lp_lr(&o) == 10 * 0.003);
	r.weight_decay = 0;
	r.lp_lr = 0.05;
	graft_recipe_train_opts(&r, 20, 7, &o);     /* fewer samples than the batch */
	assert_int_equal(o.batch, 20);
	assert_int_equal(o.total_steps, 30);
	assert_true(o.optim.weight_decay == 0 && graft_train_lp_lr(&o) == 0.05);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_depths),
		cmocka_unit_test(test_unfreeze_every),
		cmocka_unit_test(test_lp_ft),
		cmocka_unit_test(test_layer_decay),
		cmocka_unit_test(test_resume_mid_recipe),
		cmocka_unit_test(test_recipe_refusals),
		cmocka_unit_test(test_recipe_text),
		cmocka_unit_test(test_recipe_metadata),
		cmocka_unit_test(test_recipe_train_opts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
