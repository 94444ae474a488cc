/*
 * test_fold.c: deployment rewrites (graft_model_fold_bn, graft_model_strip) on small
 * models built with testmodel.h.  A fold must compute what the model computed before:
 * each model runs before (with no_fuse, so that the executor's own Conv+BN fusion does
 * not stand in for the real BatchNormalization) and after, on the same input, and the
 * outputs must agree within 1e-5 relative.  What must not be folded is left as it was.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "surgery/surgery.h"
#include "testmodel.h"

/* BN's four inputs: scale, B, mean (initializers), var = Identity(scale) as torch's
 * exporter writes a fresh BatchNormalization's running variance. */
static void bn_params(Onnx__ModelProto *mp, int64_t c)
{
	tm_init_floats(mp, "bn.scale", 1, &c, 11, 0.5f, 1.5f);
	tm_init_floats(mp, "bn.bias", 1, &c, 12, -0.5f, 0.5f);
	tm_init_floats(mp, "bn.mean", 1, &c, 13, -0.3f, 0.3f);
	tm_node(mp, "Identity", "alias", (const char *[]){"bn.scale", NULL},
		(const char *[]){"bn.var", NULL});
}

static Onnx__NodeProto *bn_node(Onnx__ModelProto *mp, const char *x, const char *y)
{
	Onnx__NodeProto *n = tm_node(mp, "BatchNormalization", "bn",
				     (const char *[]){x, "bn.scale", "bn.bias", "bn.mean", "bn.var",
						      NULL}, (const char *[]){y, NULL});
	tm_attr_float(n, "epsilon", 1e-3f);
	return n;
}

/*
 * x (2,3,5,5) -> Conv(W [4,3,3,3], B [4] when bias, pads 1) -> c -> BN -> y -> Relu -> z.
 * two_readers: c is also read by an Add (z = Relu(y) + c), so the BN must stay.
 */
static struct graft_model *conv_bn(int bias, int two_readers)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {2, 3, 5, 5}, wd[] = {4, 3, 3, 3}, bd[] = {4}, pads[] = {1, 1, 1, 1};
	Onnx__NodeProto *n;

	tm_input(mp, "x", GRAFT_FLOAT, 4, xd);
	tm_output(mp, "z", GRAFT_FLOAT, 4, (int64_t[]){2, 4, 5, 5});
	tm_init_floats(mp, "conv.w", 4, wd, 1, -0.5f, 0.5f);
	if (bias)
		tm_init_floats(mp, "conv.b", 1, bd, 2, -0.5f, 0.5f);
	bn_params(mp, 4);
	n = tm_node(mp, "Conv", "conv",
		    bias ? (const char *[]){"x", "conv.w", "conv.b", NULL}
			 : (const char *[]){"x", "conv.w", NULL},
		    (const char *[]){"c", NULL});
	tm_attr_ints(n, "pads", pads, 4);
	bn_node(mp, "c", "y");
	if (two_readers) {
		tm_node(mp, "Relu", "relu", (const char *[]){"y", NULL}, (const char *[]){"r", NULL});
		tm_node(mp, "Add", "add", (const char *[]){"r", "c", NULL},
			(const char *[]){"z", NULL});
	} else {
		tm_node(mp, "Relu", "relu", (const char *[]){"y", NULL}, (const char *[]){"z", NULL});
	}
	return tm_load(mp);
}

/* x (3,6) -> Gemm(W, C [4], transB) -> h -> BN -> y: W is [4,6] with transB=1 (output
 * channels are rows), [6,4] without (columns).  scaled: alpha 0.5, beta 2 and a C of one
 * value. */
static struct graft_model *gemm_bn(int trans_b, int scaled)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {3, 6}, cd[] = {scaled ? 1 : 4};
	int64_t wd[2] = {trans_b ? 4 : 6, trans_b ? 6 : 4};
	Onnx__NodeProto *n;

	tm_input(mp, "x", GRAFT_FLOAT, 2, xd);
	tm_output(mp, "y", GRAFT_FLOAT, 2, (int64_t[]){3, 4});
	tm_init_floats(mp, "fc.w", 2, wd, 3, -0.5f, 0.5f);
	tm_init_floats(mp, "fc.b", 1, cd, 4, -0.5f, 0.5f);
	bn_params(mp, 4);
	n = tm_node(mp, "Gemm", "fc", (const char *[]){"x", "fc.w", "fc.b", NULL},
		    (const char *[]){"h", NULL});
	if (trans_b)
		tm_attr_int(n, "transB", 1);
	if (scaled) {
		tm_attr_float(n, "alpha", 0.5f);
		tm_attr_float(n, "beta", 2.0f);
	}
	bn_node(mp, "h", "y");
	return tm_load(mp);
}

/* Runs m's first input on a fixed pattern; output 0 goes to a new buffer (*n floats). */
static float *run(const struct graft_model *m, int no_fuse, size_t *n)
{
	struct graft_net_opts o = {.no_fuse = no_fuse};
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_value_info vi;
	struct graft_array x = {0}, out;
	size_t numel = 1;
	float *copy;

	graft_model_input(m, 0, &vi);
	x.dtype = GRAFT_FLOAT;
	x.rank = vi.rank;
	for (int d = 0; d < vi.rank; d++)
		numel *= (size_t)(x.dims[d] = vi.dims[d]);
	x.nbytes = numel * sizeof(float);
	x.data = malloc(x.nbytes);
	for (size_t i = 0; i < numel; i++)
		((float *)x.data)[i] = (float)((i * 7) % 11) / 11 - 0.4f;
	if (graft_net_new_opts(&net, m, &o, &err) || graft_net_run(net, &x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &out);
	*n = out.nbytes / sizeof(float);
	copy = malloc(out.nbytes);
	memcpy(copy, out.data, out.nbytes);
	graft_net_free(net);
	free(x.data);
	return copy;
}

static void assert_close(const float *a, const float *b, size_t n)
{
	double scale = 0, diff = 0;

	for (size_t i = 0; i < n; i++) {
		scale = fmax(scale, fabs(a[i]));
		diff = fmax(diff, fabs((double)a[i] - b[i]));
	}
	assert_true(scale > 0.1);       /* the test compares something */
	if (diff > 1e-5 * scale)
		fail_msg("max|diff| %g > 1e-5 * max|ref| %g", diff, scale);
}

static size_t count_op(const struct graft_model *m, const char *op)
{
	struct graft_node node;
	size_t k = 0;

	for (size_t i = 0; i < graft_model_node_count(m); i++) {
		graft_model_node(m, i, &node);
		k += strcmp(node.op_type, op) == 0;
	}
	return k;
}

/* Folds m and checks: n folds, no BN left, node 0 (op) writes out_name from weight w and
 * bias b, the statistics and their alias gone, the same outputs as before. */
static void fold_and_compare(struct graft_model *m, size_t n, const char *op,
			     const char *out_name, const char *w, const char *b)
{
	struct graft_err err = {0};
	struct graft_node node;
	size_t folded = 99, n0, n1;
	float *before = run(m, 1, &n0), *after;

	assert_int_equal(graft_model_fold_bn(m, &folded, &err), GRAFT_OK);
	assert_int_equal(folded, n);
	assert_int_equal(count_op(m, "BatchNormalization"), 0);
	assert_int_equal(count_op(m, "Identity"), 0);   /* the alias went with the BN */
	assert_int_equal(count_op(m, op), n);
	graft_model_node(m, 0, &node);
	assert_string_equal(node.op_type, op);
	assert_string_equal(node.outputs[0], out_name);
	assert_int_equal(node.n_inputs, 3);             /* a bias, folded or new */
	assert_string_equal(node.inputs[1], w);
	assert_string_equal(node.inputs[2], b);
	assert_true(graft_model_find_tensor(m, w) >= 0);
	assert_true(graft_model_find_tensor(m, b) >= 0);
	for (const char *const *p = (const char *const[]){"bn.scale", "bn.bias", "bn.mean",
							    "bn.var", NULL}; *p; p++)
		if (strcmp(*p, b) != 0)
			assert_true(graft_model_find_tensor(m, *p) < 0);
	assert_int_equal(graft_model_tensor_count(m), 2 * n);
	assert_int_equal(graft_model_alias_count(m), 0);
	after = run(m, 0, &n1);
	assert_int_equal(n0, n1);
	assert_close(before, after, n0);
	free(before);
	free(after);
}

/* Weight and bias read by the Conv alone: replaced in place, under their names. */
static void test_conv_bn(void **state)
{
	(void)state;
	struct graft_model *m = conv_bn(1, 0);
	fold_and_compare(m, 1, "Conv", "y", "conv.w", "conv.b");
	graft_model_free(m);
}

static void test_conv_without_bias(void **state)
{
	(void)state;
	struct graft_model *m = conv_bn(0, 0);
	fold_and_compare(m, 1, "Conv", "y", "conv.w", "bn.bias_bnfold");
	graft_model_free(m);
}

static void test_gemm_trans_b(void **state)
{
	(void)state;
	struct graft_model *m = gemm_bn(1, 0);
	fold_and_compare(m, 1, "Gemm", "y", "fc.w", "fc.b");
	graft_model_free(m);
}

static void test_gemm_no_trans_b(void **state)
{
	(void)state;
	struct graft_model *m = gemm_bn(0, 0);
	fold_and_compare(m, 1, "Gemm", "y", "fc.w", "fc.b");
	graft_model_free(m);
}

/* alpha 0.5, beta 2 and a one-value C: the new C has a value per channel and beta 1. */
static void test_gemm_alpha_beta(void **state)
{
	(void)state;
	struct graft_model *m = gemm_bn(1, 1);
	fold_and_compare(m, 1, "Gemm", "y", "fc.w", "fc.b_bnfold");
	assert_true(graft_model_find_tensor(m, "fc.b") < 0);
	graft_model_free(m);
}

/* Two Convs share one weight, each before its own BN: the first gets a new weight, the
 * second (then its sole reader) the old one, changed in place. */
static void test_shared_weight(void **state)
{
	(void)state;
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {2, 3, 5, 5}, wd[] = {3, 3, 1, 1}, c = 3;
	struct graft_model *m;
	struct graft_node node;

	tm_input(mp, "x", GRAFT_FLOAT, 4, xd);
	tm_output(mp, "z", GRAFT_FLOAT, 4, xd);
	tm_init_floats(mp, "conv.w", 4, wd, 1, -0.5f, 0.5f);
	tm_init_floats(mp, "bn.scale", 1, &c, 11, 0.5f, 1.5f);
	tm_init_floats(mp, "bn.bias", 1, &c, 12, -0.5f, 0.5f);
	tm_init_floats(mp, "bn.mean", 1, &c, 13, -0.3f, 0.3f);
	tm_init_floats(mp, "bn.var", 1, &c, 14, 0.5f, 1.5f);
	tm_init_floats(mp, "bn2.mean", 1, &c, 15, -0.3f, 0.3f);
	tm_node(mp, "Conv", "conv1", (const char *[]){"x", "conv.w", NULL},
		(const char *[]){"c1", NULL});
	bn_node(mp, "c1", "y1");
	tm_node(mp, "Conv", "conv2", (const char *[]){"y1", "conv.w", NULL},
		(const char *[]){"c2", NULL});
	tm_node(mp, "BatchNormalization", "bn2",
		(const char *[]){"c2", "bn.scale", "bn.bias", "bn2.mean", "bn.var", NULL},
		(const char *[]){"z", NULL});
	m = tm_load(mp);
	fold_and_compare(m, 2, "Conv", "y1", "conv.w_bnfold", "bn.bias_bnfold");
	graft_model_node(m, 1, &node);
	assert_string_equal(node.inputs[0], "y1");
	assert_string_equal(node.inputs[1], "conv.w");
	assert_string_equal(node.inputs[2], "bn.bias_bnfold.2");
	assert_string_equal(node.outputs[0], "z");
	graft_model_free(m);
}

/* Conv's output read by the BN and an Add: folding would change what the Add reads. */
static void test_two_readers_left_alone(void **state)
{
	(void)state;
	struct graft_model *m = conv_bn(1, 1);
	struct graft_err err = {0};
	size_t folded = 99, nodes = graft_model_node_count(m), tensors = graft_model_tensor_count(m);

	assert_int_equal(graft_model_fold_bn(m, &folded, &err), GRAFT_OK);
	assert_int_equal(folded, 0);
	assert_int_equal(graft_model_node_count(m), nodes);
	assert_int_equal(graft_model_tensor_count(m), tensors);
	assert_int_equal(count_op(m, "BatchNormalization"), 1);
	assert_true(graft_model_find_tensor(m, "conv.w") >= 0);
	graft_model_free(m);
}

/* A BN in training mode (opset 14's attribute) is not an inference BN. */
static void test_training_mode_left_alone(void **state)
{
	(void)state;
	Onnx__ModelProto *mp = tm_model(15);
	int64_t xd[] = {2, 3, 5, 5}, wd[] = {4, 3, 3, 3};
	struct graft_model *m;
	struct graft_err err = {0};
	size_t folded = 99;

	tm_input(mp, "x", GRAFT_FLOAT, 4, xd);
	tm_output(mp, "y", GRAFT_FLOAT, 4, (int64_t[]){2, 4, 3, 3});
	tm_init_floats(mp, "conv.w", 4, wd, 1, -0.5f, 0.5f);
	bn_params(mp, 4);
	tm_node(mp, "Conv", "conv", (const char *[]){"x", "conv.w", NULL},
		(const char *[]){"c", NULL});
	tm_attr_int(bn_node(mp, "c", "y"), "training_mode", 1);
	m = tm_load(mp);
	assert_int_equal(graft_model_fold_bn(m, &folded, &err), GRAFT_OK);
	assert_int_equal(folded, 0);
	assert_int_equal(count_op(m, "BatchNormalization"), 1);
	graft_model_free(m);
}

/* The Conv's output is a graph output too: it must keep its value. */
static void test_conv_output_is_graph_output(void **state)
{
	(void)state;
	struct graft_model *m = conv_bn(1, 0);
	struct graft_err err = {0};
	size_t folded = 99;
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__ValueInfoProto **out = realloc(g->output, 2 * sizeof(*out));

	assert_non_null(out);
	g->output = out;
	out[1] = skeleton_value_info("c", GRAFT_FLOAT, -1, NULL, NULL);
	g->n_output = 2;
	assert_int_equal(graft_model_fold_bn(m, &folded, &err), GRAFT_OK);
	assert_int_equal(folded, 0);
	assert_int_equal(count_op(m, "BatchNormalization"), 1);
	graft_model_free(m);
}

/*
 * x (2,6) -> Gemm -> h -> Dropout -> d -> Relu -> r -> Dropout(ratio 0.5) -> y, with
 * metadata graft.classes and author: strip leaves Gemm, Relu and an Identity (y is a
 * graph output), the author, and the same outputs.
 */
static void test_strip(void **state)
{
	(void)state;
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {2, 6}, wd[] = {4, 6}, cd[] = {4}, rd[] = {0};
	struct graft_model *m;
	struct graft_err err = {0};
	struct graft_model_meta meta;
	struct graft_node node;
	const char *key, *value;
	size_t n0, n1;
	float *before, *after;

	tm_input(mp, "x", GRAFT_FLOAT, 2, xd);
	tm_output(mp, "y", GRAFT_FLOAT, 2, (int64_t[]){2, 4});
	tm_init_floats(mp, "fc.w", 2, wd, 3, -0.5f, 0.5f);
	tm_init_floats(mp, "fc.b", 1, cd, 4, -0.5f, 0.5f);
	tm_init_floats(mp, "ratio", 0, rd, 5, 0.5f, 0.5f);
	tm_attr_int(tm_node(mp, "Gemm", "fc", (const char *[]){"x", "fc.w", "fc.b", NULL},
			    (const char *[]){"h", NULL}), "transB", 1);
	tm_node(mp, "Dropout", "drop1", (const char *[]){"h", NULL}, (const char *[]){"d", NULL});
	tm_node(mp, "Relu", "relu", (const char *[]){"d", NULL}, (const char *[]){"r", NULL});
	tm_node(mp, "Dropout", "drop2", (const char *[]){"r", "ratio", NULL},
		(const char *[]){"y", NULL});
	m = tm_load(mp);
	assert_int_equal(graft_model_set_metadata(m, "graft.classes", "4", &err), GRAFT_OK);
	assert_int_equal(graft_model_set_metadata(m, "author", "me", &err), GRAFT_OK);
	before = run(m, 1, &n0);

	assert_int_equal(graft_model_strip(m, &err), GRAFT_OK);
	assert_int_equal(count_op(m, "Dropout"), 0);
	assert_int_equal(graft_model_node_count(m), 3);
	graft_model_node(m, 1, &node);
	assert_string_equal(node.op_type, "Relu");
	assert_string_equal(node.inputs[0], "h");
	graft_model_node(m, 2, &node);
	assert_string_equal(node.op_type, "Identity");
	assert_int_equal(node.n_inputs, 1);
	assert_string_equal(node.inputs[0], "r");
	assert_string_equal(node.outputs[0], "y");
	assert_true(graft_model_find_tensor(m, "ratio") < 0);
	assert_true(graft_model_find_tensor(m, "fc.w") >= 0);
	graft_model_meta(m, &meta);
	assert_int_equal(meta.n_metadata, 1);
	graft_model_metadata(m, 0, &key, &value);
	assert_string_equal(key, "author");
	after = run(m, 0, &n1);
	assert_int_equal(n0, n1);
	assert_close(before, after, n0);
	free(before);
	free(after);
	graft_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conv_bn),
		cmocka_unit_test(test_conv_without_bias),
		cmocka_unit_test(test_gemm_trans_b),
		cmocka_unit_test(test_gemm_no_trans_b),
		cmocka_unit_test(test_gemm_alpha_beta),
		cmocka_unit_test(test_shared_weight),
		cmocka_unit_test(test_two_readers_left_alone),
		cmocka_unit_test(test_training_mode_left_alone),
		cmocka_unit_test(test_conv_output_is_graph_output),
		cmocka_unit_test(test_strip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
