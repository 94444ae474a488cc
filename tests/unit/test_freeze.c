/*
 * test_freeze.c: freeze rules (lib/surgery/freeze.c) on a chain of three Gemm layers
 * (fc1, fc2, fc3, each with weight and bias, a Relu between): rules apply in order, the
 * last that applies wins; a pattern matches a parameter's name or a node reading it;
 * --until and --last-blocks split in graph order; errors name what is wrong.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "surgery/surgery.h"
#include "testmodel.h"

/* x [1, 4] -> fc1 -> r1 -> fc2 -> r2 -> fc3 -> y [1, 2] */
static int load(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	float w[16] = {0}, b[4] = {0};
	const char *prev = "x";

	tm_input(mp, "x", 1, 2, (int64_t[]){1, 4});
	tm_output(mp, "y", 1, 2, (int64_t[]){1, 2});
	for (int l = 1; l <= 3; l++) {
		char wn[16], bn[16], node[16], out[16], relu[16], act[16];
		int64_t o = l == 3 ? 2 : 4;
		Onnx__TensorProto *t;
		snprintf(wn, sizeof(wn), "w%d", l);
		snprintf(bn, sizeof(bn), "b%d", l);
		snprintf(node, sizeof(node), "fc%d", l);
		snprintf(out, sizeof(out), l == 3 ? "y" : "h%d", l);
		snprintf(relu, sizeof(relu), "relu%d", l);
		snprintf(act, sizeof(act), "r%d", l);
		t = tm_tensor(wn, 1, 2, (int64_t[]){o, 4}); tm_raw(t, w, (size_t)o * 16); tm_initializer(mp, t);
		t = tm_tensor(bn, 1, 1, (int64_t[]){o}); tm_raw(t, b, (size_t)o * 4); tm_initializer(mp, t);
		tm_attr_int(tm_node(mp, "Gemm", node, (const char *[]){prev, wn, bn, NULL},
				    (const char *[]){out, NULL}), "transB", 1);
		if (l < 3) {
			tm_node(mp, "Relu", relu, (const char *[]){out, NULL}, (const char *[]){act, NULL});
			prev = l == 1 ? "r1" : "r2";
		}
	}
	*state = tm_load(mp);
	return 0;
}

/* "tttfff": whether w1 b1 w2 b2 w3 b3 train. */
static void flags(const struct graft_model *m, char *s)
{
	const char *names[6] = {"w1", "b1", "w2", "b2", "w3", "b3"};

	for (int i = 0; i < 6; i++) {
		struct graft_tensor t;
		graft_model_tensor(m, (size_t)graft_model_find_tensor(m, names[i]), &t);
		s[i] = t.trainable ? 't' : 'f';
	}
	s[6] = 0;
}

static void apply(struct graft_model *m, struct graft_freeze_rule *r, size_t n,
		  const char *want)
{
	struct graft_err err = {0};
	size_t trainable, params;
	char got[7];

	if (graft_model_freeze(m, r, n, &trainable, &params, &err))
		fail_msg("%s", err.msg);
	flags(m, got);
	assert_string_equal(got, want);
	assert_int_equal(params, 6);
	size_t t = 0;
	for (const char *p = want; *p; p++)
		t += *p == 't';
	assert_int_equal(trainable, t);
}

static void test_rules_in_order(void **state)
{
	struct graft_model *m = *state;
	struct graft_freeze_rule r[3] = {
		{.kind = GRAFT_FREEZE_ALL, .train = 0},
		{.kind = GRAFT_FREEZE_PATTERN, .train = 1, .arg = "fc3"},     /* a node's name */
		{.kind = GRAFT_FREEZE_PATTERN, .train = 1, .arg = "b2"},      /* a parameter's */
	};

	apply(m, r, 3, "fffttt");
	assert_int_equal(r[0].hits, 6);
	assert_int_equal(r[1].hits, 2);
	assert_int_equal(r[2].hits, 1);
	r[0].train = 1;         /* --none, then freeze fc1's, then train w*: w1 trains again */
	r[1] = (struct graft_freeze_rule){.kind = GRAFT_FREEZE_PATTERN, .train = 0, .arg = "fc1"};
	r[2] = (struct graft_freeze_rule){.kind = GRAFT_FREEZE_PATTERN, .train = 1, .arg = "w*"};
	apply(m, r, 3, "tftttt");
}

static void test_cuts_in_graph_order(void **state)
{
	struct graft_model *m = *state;
	struct graft_freeze_rule until = {.kind = GRAFT_FREEZE_UNTIL, .arg = "r1"};
	struct graft_freeze_rule none = {.kind = GRAFT_FREEZE_ALL, .train = 1};
	struct graft_freeze_rule last = {.kind = GRAFT_FREEZE_LAST_BLOCKS, .count = 1};

	apply(m, &none, 1, "tttttt");
	apply(m, &until, 1, "fftttt");  /* what comes no later than r1's producer */
	apply(m, &last, 1, "fffftt");   /* the head */
	last.count = 2;
	apply(m, &last, 1, "fftttt");
	last.count = 0;                 /* graft-plan's "train everything" */
	apply(m, &last, 1, "tttttt");
}

static void test_errors(void **state)
{
	struct graft_model *m = *state;
	struct graft_err err = {0};
	struct graft_freeze_rule r = {.kind = GRAFT_FREEZE_PATTERN, .train = 1, .arg = "conv*"};

	assert_int_equal(graft_model_freeze(m, &r, 1, NULL, NULL, &err), GRAFT_EINVAL);
	assert_string_equal(err.msg, "'conv*' matches no parameter");
	r = (struct graft_freeze_rule){.kind = GRAFT_FREEZE_UNTIL, .arg = "nope"};
	assert_int_equal(graft_model_freeze(m, &r, 1, NULL, NULL, &err), GRAFT_EINVAL);
	assert_string_equal(err.msg, "no cut 'nope' (see graft-slice --list-cuts)");
	r = (struct graft_freeze_rule){.kind = GRAFT_FREEZE_LAST_BLOCKS, .count = 9};
	assert_int_equal(graft_model_freeze(m, &r, 1, NULL, NULL, &err), GRAFT_EINVAL);
	assert_string_equal(err.msg, "--last-blocks 9: the network has 2 block boundaries");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rules_in_order, load, tm_unload),
		cmocka_unit_test_setup_teardown(test_cuts_in_graph_order, load, tm_unload),
		cmocka_unit_test_setup_teardown(test_errors, load, tm_unload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
