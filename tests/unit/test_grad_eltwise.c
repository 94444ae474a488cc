/*
 * test_grad_eltwise.c: backward of the element-wise ops (eltwise.c) and of Softmax,
 * LogSoftmax, ReduceMean and ReduceSum (reduce.c) against finite differences, with
 * broadcasting both ways, old and new opsets; Dropout's training mask.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "net.h"
#include "gradcheck.h"
#include "testmodel.h"

/* A model of one node op over float inputs x0, x1... of the given shapes, output y of
 * shape yd (rank yr). */
static Onnx__NodeProto *one_node(Onnx__ModelProto *mp, const char *op, int n_in,
				 const int *ranks, const int64_t (*dims)[4], int yr,
				 const int64_t *yd)
{
	static const char *names[] = {"x0", "x1", "x2", NULL};
	const char *ins[4] = {NULL};

	for (int i = 0; i < n_in; i++) {
		tm_input(mp, names[i], 1, ranks[i], dims[i]);
		ins[i] = names[i];
	}
	tm_output(mp, "y", 1, yr, yd);
	return tm_node(mp, op, "n", ins, (const char *[]){"y", NULL});
}

/* Where the op under test has a kink (its derivative jumps): inputs are kept 0.05 away,
 * since the finite difference straddles a kink within its step. */
static float kinks[4];
static int n_kinks;

static void avoid_kinks(struct graft_array *a)
{
	float *v = a->data;
	for (size_t i = 0; i < a->nbytes / sizeof(float); i++)
		for (int k = 0; k < n_kinks; k++)
			if (fabsf(v[i] - kinks[k]) < 0.05f)
				v[i] = kinks[k] + (v[i] < kinks[k] ? -0.05f : 0.05f);
}

static void set_kinks(int n, float a, float b)
{
	n_kinks = n;
	kinks[0] = a;
	kinks[1] = b;
}

/* gradcheck of op over inputs of the given shapes, filled in [lo, hi). */
static size_t check_op(const char *op, int64_t opset, int n_in, const int *ranks,
		       const int64_t (*dims)[4], int yr, const int64_t *yd, double lo, double hi,
		       void (*attrs)(Onnx__NodeProto *))
{
	Onnx__ModelProto *mp = tm_model(opset);
	Onnx__NodeProto *node = one_node(mp, op, n_in, ranks, dims, yr, yd);
	struct graft_array in[3];
	size_t checked = 0;

	if (attrs)
		attrs(node);
	for (int i = 0; i < n_in; i++) {
		in[i] = gradcheck_input(ranks[i], dims[i], lo, hi, 100 + (uint64_t)i);
		avoid_kinks(&in[i]);
	}
	gradcheck(mp, in, (size_t)n_in, NULL, &checked);
	for (int i = 0; i < n_in; i++)
		free(in[i].data);
	assert_true(checked > 0);
	return checked;
}

static void unary(const char *op, double lo, double hi, void (*attrs)(Onnx__NodeProto *))
{
	const int r[] = {3};
	const int64_t d[][4] = {{2, 3, 5}};
	check_op(op, 13, 1, r, d, 3, d[0], lo, hi, attrs);
	/* and both sides of the kink, apart from it */
	if (lo < 0 && hi > 0) {
		check_op(op, 13, 1, r, d, 3, d[0], 0.05, hi, attrs);
		check_op(op, 13, 1, r, d, 3, d[0], lo, -0.05, attrs);
	}
}

static void leaky(Onnx__NodeProto *n) { tm_attr_float(n, "alpha", 0.2f); }
static void hsig(Onnx__NodeProto *n) { tm_attr_float(n, "alpha", 0.3f); tm_attr_float(n, "beta", 0.4f); }

static void test_unary(void **state)
{
	(void)state;
	set_kinks(1, 0, 0);
	unary("Relu", -1, 1, NULL);
	unary("LeakyRelu", -1, 1, leaky);
	unary("Elu", -1, 1, NULL);
	unary("Abs", -1, 1, NULL);
	set_kinks(2, -0.4f / 0.3f, 0.6f / 0.3f);        /* alpha x + beta = 0 and 1 */
	unary("HardSigmoid", -4, 4, hsig);
	set_kinks(2, -3, 3);
	unary("HardSwish", -5, 5, NULL);
	set_kinks(0, 0, 0);
	unary("Sigmoid", -3, 3, NULL);
	unary("Tanh", -2, 2, NULL);
	unary("Exp", -1, 1, NULL);
	unary("Log", 0.5, 2, NULL);
	unary("Sqrt", 0.5, 2, NULL);
	unary("Neg", -1, 1, NULL);
	unary("Reciprocal", 0.5, 2, NULL);
	unary("Erf", -1.5, 1.5, NULL);
	unary("Softplus", -2, 2, NULL);
}

static void test_binary_broadcast(void **state)
{
	static const char *ops[] = {"Add", "Sub", "Mul", "Div"};
	/* (a, b, y): same shape, per-channel, scalar, both broadcast, b bigger */
	static const int r[][2] = {{3, 3}, {4, 3}, {3, 0}, {3, 3}, {1, 3}};
	static const int64_t d[][2][4] = {
		{{2, 3, 4}, {2, 3, 4}}, {{2, 3, 2, 2}, {3, 1, 1}}, {{2, 3, 4}, {0}},
		{{2, 1, 4}, {1, 3, 1}}, {{4}, {2, 3, 4}},
	};
	static const int yr[] = {3, 4, 3, 3, 3};
	static const int64_t yd[][4] = {{2, 3, 4}, {2, 3, 2, 2}, {2, 3, 4}, {2, 3, 4}, {2, 3, 4}};
	(void)state;

	for (size_t o = 0; o < 4; o++)
		for (size_t c = 0; c < 5; c++) {
			int ranks[2] = {r[c][0], r[c][1]};
			/* Div: keep the divisor away from 0 */
			check_op(ops[o], 13, 2, ranks, d[c], yr[c], yd[c], o == 3 ? 0.5 : -1, 1.5,
				 NULL);
		}
	int ranks[2] = {3, 3};
	check_op("Pow", 13, 2, ranks, d[0], 3, yd[0], 0.5, 1.5, NULL);
}

static void test_sum(void **state)
{
	const int r[] = {3, 1, 3};
	const int64_t d[][4] = {{2, 3, 4}, {4}, {2, 1, 4}};
	(void)state;
	check_op("Sum", 13, 3, r, d, 3, d[0], -1, 1, NULL);
}

static void clip_attrs(Onnx__NodeProto *n)
{
	tm_attr_float(n, "min", -0.5f);
	tm_attr_float(n, "max", 0.6f);
}

static void test_clip(void **state)
{
	const int r[] = {2};
	const int64_t d[][4] = {{4, 8}};
	Onnx__ModelProto *mp = tm_model(13);
	float lo = -0.5f, hi = 0.6f;
	size_t checked;
	(void)state;

	/* opset 6: bounds as attributes */
	set_kinks(2, lo, hi);
	check_op("Clip", 6, 1, r, d, 2, d[0], -1, 1, clip_attrs);
	set_kinks(0, 0, 0);
	/* opset 13: bounds as constant inputs */
	tm_input(mp, "x", 1, 2, d[0]);
	tm_output(mp, "y", 1, 2, d[0]);
	Onnx__TensorProto *t = tm_tensor("lo", 1, 0, NULL);
	tm_raw(t, &lo, sizeof(lo));
	tm_initializer(mp, t);
	t = tm_tensor("hi", 1, 0, NULL);
	tm_raw(t, &hi, sizeof(hi));
	tm_initializer(mp, t);
	tm_node(mp, "Clip", "c", (const char *[]){"x", "lo", "hi", NULL}, (const char *[]){"y", NULL});
	struct graft_array x = gradcheck_input(2, d[0], -1, 1, 5);
	set_kinks(2, lo, hi);
	avoid_kinks(&x);
	set_kinks(0, 0, 0);
	gradcheck(mp, &x, 1, NULL, &checked);
	assert_int_equal(checked, 32);
	free(x.data);
}

static void axis1(Onnx__NodeProto *n) { tm_attr_int(n, "axis", 1); }
static void axis0(Onnx__NodeProto *n) { tm_attr_int(n, "axis", 0); }

static void test_softmax(void **state)
{
	const int r[] = {3};
	const int64_t d[][4] = {{2, 3, 4}};
	static const char *ops[] = {"Softmax", "LogSoftmax"};
	(void)state;

	for (int o = 0; o < 2; o++) {
		check_op(ops[o], 13, 1, r, d, 3, d[0], -2, 2, NULL);         /* axis -1 */
		check_op(ops[o], 13, 1, r, d, 3, d[0], -2, 2, axis1);        /* a middle axis */
		check_op(ops[o], 11, 1, r, d, 3, d[0], -2, 2, axis1);        /* 2-D at axis 1 */
		check_op(ops[o], 11, 1, r, d, 3, d[0], -2, 2, axis0);        /* all as one row */
	}
}

static void axes02_keep0(Onnx__NodeProto *n)
{
	const int64_t axes[] = {0, -1};
	tm_attr_ints(n, "axes", axes, 2);
	tm_attr_int(n, "keepdims", 0);
}

static void test_reduce(void **state)
{
	const int r[] = {3};
	const int64_t d[][4] = {{2, 3, 4}}, kept[] = {1, 1, 1}, mid[] = {3};
	Onnx__ModelProto *mp;
	size_t checked;
	(void)state;

	check_op("ReduceMean", 13, 1, r, d, 3, kept, -1, 1, NULL);   /* all axes, keepdims */
	check_op("ReduceMean", 13, 1, r, d, 1, mid, -1, 1, axes02_keep0);
	check_op("ReduceSum", 11, 1, r, d, 1, mid, -1, 1, axes02_keep0);
	/* opset 18: axes as an input */
	mp = tm_model(18);
	const int64_t ax = 1, two[] = {2, 4}, one = 1;
	tm_input(mp, "x", 1, 3, d[0]);
	tm_output(mp, "y", 1, 2, two);
	Onnx__TensorProto *t = tm_tensor("axes", 7, 1, &one);
	tm_int64_data(t, &ax, 1);
	tm_initializer(mp, t);
	Onnx__NodeProto *n = tm_node(mp, "ReduceMean", "r", (const char *[]){"x", "axes", NULL},
				     (const char *[]){"y", NULL});
	tm_attr_int(n, "keepdims", 0);
	struct graft_array x = gradcheck_input(3, d[0], -1, 1, 9);
	gradcheck(mp, &x, 1, NULL, &checked);
	assert_int_equal(checked, 24);
	free(x.data);
}

/*
 * Dropout in a training net: y is 0 or x / (1 - p), about p of it dropped, backward is
 * dy * mask / (1 - p) exactly; in evaluation mode it is the identity.
 */
static void test_dropout(void **state)
{
	enum { N = 20000 };
	Onnx__ModelProto *mp = tm_model(13);
	int64_t d[] = {N}, one = 1;
	float ratio = 0.3f;
	(void)state;

	tm_input(mp, "x", 1, 1, d);
	tm_output(mp, "y", 1, 1, d);
	Onnx__TensorProto *t = tm_tensor("ratio", 1, 0, NULL);
	tm_raw(t, &ratio, sizeof(ratio));
	tm_initializer(mp, t);
	tm_node(mp, "Dropout", "drop", (const char *[]){"x", "ratio", NULL},
		(const char *[]){"y", NULL});
	(void)one;
	size_t len;
	uint8_t *buf = tm_pack(mp, &len);
	onnx__model_proto__free_unpacked(mp, NULL);
	struct graft_model *m;
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_net_opts o = {.training = 1, .input_grads = 1, .seed = 42};
	if (graft_model_read_memory(&m, buf, len, NULL, "t", &err) ||
	    graft_net_new_opts(&net, m, &o, &err))
		fail_msg("%s", err.msg);
	free(buf);
	struct graft_array x = gradcheck_input(1, d, 0.5, 1.5, 3), y, gx;
	float *g = malloc(N * sizeof(float));
	for (int i = 0; i < N; i++)
		g[i] = (float)(i % 7) - 3;
	struct graft_array og = x;
	og.data = g;
	if (graft_net_run(net, &x, 1, &err) || graft_net_backward(net, &og, 1, &err) ||
	    graft_net_input_grad(net, 0, &gx, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	int dropped = 0;
	float scale = 1 / (1 - ratio);
	for (int i = 0; i < N; i++) {
		float xi = ((float *)x.data)[i], yi = ((float *)y.data)[i];
		float gi = ((float *)gx.data)[i];
		if (yi == 0) {
			dropped++;
			assert_true(gi == 0);
		} else {
			assert_true(fabsf(yi - xi * scale) < 1e-6f * scale);
			assert_true(gi == g[i] * scale);
		}
	}
	assert_true(dropped > N * 0.28 && dropped < N * 0.32);
	/* evaluation: the identity */
	graft_net_set_training(net, 0);
	if (graft_net_run(net, &x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	assert_memory_equal(y.data, x.data, x.nbytes);
	graft_net_free(net);
	graft_model_free(m);
	free(g);
	free(x.data);
}

/* gradcheck through Dropout: the harness replays the same mask on every run. */
static void test_dropout_gradcheck(void **state)
{
	Onnx__ModelProto *mp = tm_model(11);
	int64_t d[] = {4, 16};
	struct gradcheck_opts o = {.seed = 5};
	size_t checked;
	(void)state;

	tm_input(mp, "x", 1, 2, d);
	tm_output(mp, "y", 1, 2, d);
	Onnx__NodeProto *n = tm_node(mp, "Dropout", "drop", (const char *[]){"x", NULL},
				     (const char *[]){"y", NULL});
	tm_attr_float(n, "ratio", 0.5f);
	struct graft_array x = gradcheck_input(2, d, -1, 1, 4);
	gradcheck(mp, &x, 1, &o, &checked);
	assert_int_equal(checked, 64);
	free(x.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unary),
		cmocka_unit_test(test_binary_broadcast),
		cmocka_unit_test(test_sum),
		cmocka_unit_test(test_clip),
		cmocka_unit_test(test_softmax),
		cmocka_unit_test(test_reduce),
		cmocka_unit_test(test_dropout),
		cmocka_unit_test(test_dropout_gradcheck),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
