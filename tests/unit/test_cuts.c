/*
 * test_cuts.c: graft_model_cuts on testmodel.h's tiny CNN (Conv, BatchNormalization,
 * Relu, Reshape, Mul, Add, Gemm in a chain): every activation between two nodes is a
 * cut, parameter counts before and after each, and block boundaries, which never
 * separate a Conv from the BatchNormalization after it; graft_cut_find by name, index
 * and negative index.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "surgery/surgery.h"
#include "testmodel.h"

static int load(void **state)
{
	*state = tm_load(tm_tiny_cnn());
	return 0;
}

static void test_chain_cuts_and_blocks(void **state)
{
	const struct graft_model *m = *state;
	struct graft_cut *cuts;
	struct graft_err err = {0};
	size_t n;

	assert_int_equal(graft_model_cuts(m, &cuts, &n, &err), GRAFT_OK);
	/* conv, bn, relu, reshape, mul, add: the Gemm's output is the graph output */
	assert_int_equal(n, 6);
	assert_string_equal(cuts[0].tensor, "c");
	assert_string_equal(cuts[1].tensor, "bn_out");
	assert_string_equal(cuts[5].tensor, "h");
	/* W (3,2,3,3) and B (3) come before the first cut (and the scale, which the
	 * Identity alias at the top reads); the BN's scale and bias after it; the Gemm's
	 * fcW (3,48) and fcB (3) after the last */
	assert_true(cuts[0].params_before >= 54 + 3);
	assert_true(cuts[1].params_before >= cuts[0].params_before + 3 + 3);
	assert_int_equal(cuts[5].params_after, 48 * 3 + 3);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(cuts[i].params_before + cuts[i].params_after,
				 cuts[0].params_before + cuts[0].params_after);
	/* Conv then BatchNormalization (and Relu, Reshape) is one block: the boundaries
	 * are the cut before the Mul by its 48 Constant values (weights, as PaddleOCR
	 * stores them) and the last cut, before the Gemm */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(cuts[i].block, i == 3 || i == 5);
	assert_int_equal(graft_cut_find(cuts, n, cuts[2].tensor), 2);
	assert_int_equal(graft_cut_find(cuts, n, "1"), 1);
	assert_int_equal(graft_cut_find(cuts, n, "-1"), (long)n - 1);
	assert_int_equal(graft_cut_find(cuts, n, "-7"), -1);
	assert_int_equal(graft_cut_find(cuts, n, "6"), -1);
	assert_int_equal(graft_cut_find(cuts, n, "no such tensor"), -1);
	free(cuts);
}

/* x -> MatMul, Add (bias) -> Relu -> MatMul, Add (bias) -> Softmax -> y, as PaddleOCR's
 * classifier ends: a MatMul and its bias Add are one layer, and the cut between the last
 * Add and the Softmax is no block boundary (nothing trains after it), so --last-blocks 1
 * trains the last MatMul and Add. */
static void test_matmul_bias_softmax_blocks(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	Onnx__TensorProto *t;
	float w1[12] = {0}, b1[3] = {0}, w2[6] = {0}, b2[2] = {0};
	struct graft_model *m;
	struct graft_cut *cuts;
	struct graft_err err = {0};
	size_t n, len;
	uint8_t *buf;

	(void)state;
	tm_input(mp, "x", 1, 2, (int64_t[]){-1, 4});
	tm_output(mp, "y", 1, 2, (int64_t[]){-1, 2});
	t = tm_tensor("W1", 1, 2, (int64_t[]){4, 3}); tm_raw(t, w1, sizeof(w1)); tm_initializer(mp, t);
	t = tm_tensor("B1", 1, 1, (int64_t[]){3}); tm_raw(t, b1, sizeof(b1)); tm_initializer(mp, t);
	t = tm_tensor("W2", 1, 2, (int64_t[]){3, 2}); tm_raw(t, w2, sizeof(w2)); tm_initializer(mp, t);
	t = tm_tensor("B2", 1, 1, (int64_t[]){2}); tm_raw(t, b2, sizeof(b2)); tm_initializer(mp, t);
	tm_node(mp, "MatMul", "mm1", (const char *[]){"x", "W1", NULL}, (const char *[]){"a", NULL});
	tm_node(mp, "Add", "add1", (const char *[]){"a", "B1", NULL}, (const char *[]){"b", NULL});
	tm_node(mp, "Relu", "relu", (const char *[]){"b", NULL}, (const char *[]){"r", NULL});
	tm_node(mp, "MatMul", "mm2", (const char *[]){"r", "W2", NULL}, (const char *[]){"c", NULL});
	tm_node(mp, "Add", "add2", (const char *[]){"c", "B2", NULL}, (const char *[]){"z", NULL});
	tm_node(mp, "Softmax", "sm", (const char *[]){"z", NULL}, (const char *[]){"y", NULL});
	buf = tm_pack(mp, &len);
	onnx__model_proto__free_unpacked(mp, NULL);
	if (graft_model_read_memory(&m, buf, len, NULL, "t", &err))
		fail_msg("%s", err.msg);
	free(buf);
	assert_int_equal(graft_model_cuts(m, &cuts, &n, &err), GRAFT_OK);
	assert_int_equal(n, 5);
	assert_string_equal(cuts[2].tensor, "r");
	assert_string_equal(cuts[4].tensor, "z");
	assert_int_equal(cuts[2].params_after, 3 * 2 + 2);
	assert_int_equal(cuts[4].params_after, 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(cuts[i].block, i == 2);
	free(cuts);
	graft_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_chain_cuts_and_blocks, load, tm_unload),
		cmocka_unit_test(test_matmul_bias_softmax_blocks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
