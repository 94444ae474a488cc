/*
 * test_search.c: graft-plan's trials (lib/train/search.c): the held-apart folds are
 * disjoint and stratified; a search is reproducible (same seed, same trials and pick),
 * keeps to its budget counted in steps, leaves the model as it found it, and refuses
 * what it cannot do with one clear message.
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

#define SAMPLES 60

/* 60 samples of 4 features, 20 per class, each class around a mean of its own. */
struct blobs {
	float xs[SAMPLES * TM_FEATURES];
	int64_t ys[SAMPLES];
	struct graft_array x, y;
};

static void make_blobs(struct blobs *b)
{
	struct graft_rng r;

	graft_rng_seed(&r, 11);
	for (int i = 0; i < SAMPLES; i++) {
		b->ys[i] = i % TM_CLASSES;
		for (int f = 0; f < TM_FEATURES; f++)
			b->xs[i * TM_FEATURES + f] = (f == b->ys[i] ? 1.5f : -0.5f) +
				(float)graft_rng_below(&r, 1000) / 1000.0f - 0.5f;
	}
	b->x = (struct graft_array){.dtype = GRAFT_FLOAT, .rank = 2, .dims = {SAMPLES, TM_FEATURES},
				    .data = b->xs, .nbytes = sizeof(b->xs)};
	b->y = (struct graft_array){.dtype = GRAFT_INT64, .rank = 1, .dims = {SAMPLES},
				    .data = b->ys, .nbytes = sizeof(b->ys)};
}

static void test_folds(void **state)
{
	struct blobs b;
	int fold[SAMPLES], again[SAMPLES], other[SAMPLES], count[5][TM_CLASSES] = {{0}};
	struct graft_err err = {0};

	(void)state;
	make_blobs(&b);
	if (graft_search_folds(&b.y, 5, 7, fold, &err) || graft_search_folds(&b.y, 5, 7, again, &err) ||
	    graft_search_folds(&b.y, 5, 8, other, &err))
		fail_msg("%s", err.msg);
	assert_memory_equal(fold, again, sizeof(fold));
	assert_memory_not_equal(fold, other, sizeof(fold));
	/* each sample in one fold; each fold with its share of every class (20 / 5) */
	for (int i = 0; i < SAMPLES; i++) {
		assert_true(fold[i] >= 0 && fold[i] < 5);
		count[fold[i]][b.ys[i]]++;
	}
	for (int f = 0; f < 5; f++)
		for (int c = 0; c < TM_CLASSES; c++)
			assert_int_equal(count[f][c], 4);
	/* more folds than a class has samples */
	assert_int_equal(graft_search_folds(&b.y, 21, 7, fold, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "fewer than the 21 folds"));
}

static void search(struct graft_model *m, const struct blobs *b, double budget,
		   struct graft_search *s)
{
	struct graft_search_opts o = {.seed = 3, .folds = 3, .batch = 8, .final_epochs = 6,
				      .budget_epochs = budget};
	struct graft_err err = {0};

	if (graft_search_run(m, &b->x, 1, &b->y, &o, s, &err))
		fail_msg("%s", err.msg);
}

static void test_reproducible_within_budget(void **state)
{
	struct blobs b;
	struct graft_model *m = tm_mlp(3);
	struct graft_search s[2];
	float w1[TM_FEATURES * TM_FEATURES];
	struct graft_tensor t;

	(void)state;
	make_blobs(&b);
	graft_model_tensor(m, (size_t)graft_model_find_tensor(m, "W1"), &t);
	memcpy(w1, t.data, sizeof(w1));
	for (int k = 0; k < 2; k++)
		search(m, &b, 20, &s[k]);
	/* the candidates: head, LP-FT, the top 2 blocks, everything; three rates each */
	assert_int_equal(s[0].n_candidates, 12);
	assert_int_equal(s[0].folds, 3);
	assert_int_equal(s[0].train_samples, 40);
	assert_int_equal(s[0].val_samples, 20);
	/* rounds of 12, 4 and 2 trials */
	assert_int_equal(s[0].n_trials, 18);
	assert_int_equal(s[0].trials[17].rung, 2);
	assert_true(s[0].trials[12].steps > s[0].trials[0].steps);
	/* the first round sends each strategy on at its best rate */
	for (size_t i = 12; i < 16; i++)
		for (size_t j = i + 1; j < 16; j++) {
			const struct graft_candidate *a = &s[0].candidates[s[0].trials[i].candidate];
			const struct graft_candidate *b = &s[0].candidates[s[0].trials[j].candidate];
			assert_false(a->strategy == b->strategy && a->blocks == b->blocks);
		}
	/* the same trials, scores and pick */
	assert_int_equal(s[1].n_trials, s[0].n_trials);
	for (size_t i = 0; i < s[0].n_trials; i++) {
		assert_int_equal(s[1].trials[i].candidate, s[0].trials[i].candidate);
		assert_int_equal(s[1].trials[i].steps, s[0].trials[i].steps);
		assert_true(s[1].trials[i].accuracy == s[0].trials[i].accuracy);
		assert_true(s[1].trials[i].loss == s[0].trials[i].loss ||
			    (isinf(s[1].trials[i].loss) && isinf(s[0].trials[i].loss)));
	}
	assert_int_equal(s[1].pick, s[0].pick);
	/* the budget, counted in steps: every fold's steps times the batch over the data */
	double spent = 0;
	for (size_t i = 0; i < s[0].n_trials; i++)
		spent += (double)(s[0].trials[i].steps * 8 * 3) / SAMPLES;
	assert_true(fabs(spent - s[0].spent_epochs) < 1e-9);
	assert_true(s[0].spent_epochs <= 20 + 1e-9);
	assert_true(s[0].spent_epochs > 10);    /* and it is used, not wasted */
	/* the pick is the best of the last round, and its recipe says what it trains */
	assert_int_equal(s[0].pick_trial, 16);
	for (size_t i = 17; i < s[0].n_trials; i++)
		assert_true(s[0].trials[16].accuracy >= s[0].trials[i].accuracy);
	assert_true(s[0].recipe.epochs == 6);
	assert_true(s[0].recipe.lr == s[0].candidates[s[0].pick].lr);
	/* the model is as it was: weights and trainable flags */
	graft_model_tensor(m, (size_t)graft_model_find_tensor(m, "W1"), &t);
	assert_memory_equal(w1, t.data, sizeof(w1));
	assert_int_equal(t.trainable, 1);
	for (int k = 0; k < 2; k++)
		graft_search_free(&s[k]);
	graft_model_free(m);
}

static void test_refusals(void **state)
{
	struct blobs b;
	struct graft_model *m = tm_mlp(3), *one = tm_mlp(1);
	struct graft_search s;
	struct graft_search_opts o = {.seed = 3, .folds = 3, .batch = 8, .final_epochs = 6,
				      .budget_epochs = 0.5};
	struct graft_err err = {0};

	(void)state;
	make_blobs(&b);
	/* 12 candidates, 3 folds, a step of 8 samples each: more than half an epoch */
	assert_int_equal(graft_search_run(m, &b.x, 1, &b.y, &o, &s, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "too small for one trial"));
	o.budget_epochs = 0;
	assert_int_equal(graft_search_run(one, &b.x, 1, &b.y, &o, &s, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "no block boundary"));
	o.folds = 25;
	assert_int_equal(graft_search_run(m, &b.x, 1, &b.y, &o, &s, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "folds"));
	graft_model_free(m);
	graft_model_free(one);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_folds),
		cmocka_unit_test(test_reproducible_within_budget),
		cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
