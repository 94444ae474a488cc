/*
 * test_grad_eltwise.c: backward of the element-wise ops (eltwise.c), of Softmax and
 * LogSoftmax (softmax.c) and of the reductions (reduce.c) against finite differences, with
 * broadcasting both ways, old and new opsets; Dropout's training mask, exactly.
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

#include "engine/engine.h"
#include "gradcheck.h"
#include "testmodel.h"

/* Elements compared against finite differences, over all tests (printed at the end). */
static size_t total_checked;

static size_t run_check(Onnx__ModelProto *mp, const struct graft_array *in, size_t n_in,
			const struct gradcheck_opts *o)
{
	size_t checked = 0;

	gradcheck(mp, in, n_in, o, &checked);
	assert_true(checked > 0);
	total_checked += checked;
	return checked;
}

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

static void set_kinks(int n, float a, float b, float c)
{
	n_kinks = n;
	kinks[0] = a;
	kinks[1] = b;
	kinks[2] = c;
}

/* gradcheck of op over inputs of the given shapes, filled in [lo, hi). */
static size_t check_op(const char *op, int64_t opset, int n_in, const int *ranks,
		       const int64_t (*dims)[4], int yr, const int64_t *yd, double lo, double hi,
		       void (*attrs)(Onnx__NodeProto *))
{
	Onnx__ModelProto *mp = tm_model(opset);
	Onnx__NodeProto *node = one_node(mp, op, n_in, ranks, dims, yr, yd);
	struct graft_array in[3];
	size_t checked;

	if (attrs)
		attrs(node);
	for (int i = 0; i < n_in; i++) {
		in[i] = gradcheck_input(ranks[i], dims[i], lo, hi, 100 + (uint64_t)i);
		avoid_kinks(&in[i]);
	}
	checked = run_check(mp, in, (size_t)n_in, NULL);
	for (int i = 0; i < n_in; i++)
		free(in[i].data);
	return checked;
}

static void unary(const char *op, double lo, double hi, void (*attrs)(Onnx__NodeProto *))
{
	const int r[] = {3};
	const int64_t d[][4] = {{2, 3, 5}};

	assert_int_equal(check_op(op, 13, 1, r, d, 3, d[0], lo, hi, attrs), 30);
	/* and both sides of 0, apart from it */
	if (lo < 0 && hi > 0) {
		check_op(op, 13, 1, r, d, 3, d[0], 0.05, hi, attrs);
		check_op(op, 13, 1, r, d, 3, d[0], lo, -0.05, attrs);
	}
}

static void leaky(Onnx__NodeProto *n) { tm_attr_float(n, "alpha", 0.2f); }
static void alpha_half(Onnx__NodeProto *n) { tm_attr_float(n, "alpha", 0.5f); }
static void alpha_two(Onnx__NodeProto *n) { tm_attr_float(n, "alpha", 2.0f); }

static void selu(Onnx__NodeProto *n)
{
	tm_attr_float(n, "alpha", 1.5f);
	tm_attr_float(n, "gamma", 1.2f);
}

static void hsig(Onnx__NodeProto *n)
{
	tm_attr_float(n, "alpha", 0.3f);
	tm_attr_float(n, "beta", 0.4f);
}

static void test_unary(void **state)
{
	(void)state;
	set_kinks(1, 0, 0, 0);
	unary("Relu", -1, 1, NULL);
	unary("LeakyRelu", -1, 1, NULL);
	unary("LeakyRelu", -1, 1, leaky);
	unary("Elu", -1, 1, NULL);
	unary("Elu", -1, 1, alpha_half);
	unary("Selu", -1, 1, NULL);
	unary("Selu", -1, 1, selu);
	unary("Celu", -1, 1, alpha_two);
	unary("Abs", -1, 1, NULL);
	set_kinks(1, 0.5f, 0, 0);
	unary("ThresholdedRelu", -1, 1, alpha_half);
	set_kinks(2, -0.4f / 0.3f, 0.6f / 0.3f, 0);        /* alpha x + beta = 0 and 1 */
	unary("HardSigmoid", -4, 4, hsig);
	set_kinks(2, -2.5f, 2.5f, 0);
	unary("HardSigmoid", -4, 4, NULL);
	set_kinks(2, -3, 3, 0);
	unary("HardSwish", -5, 5, NULL);
	set_kinks(3, -1, 0, 1);                             /* steps: derivative 0 elsewhere */
	unary("Floor", -1.5, 1.5, NULL);
	unary("Ceil", -1.5, 1.5, NULL);
	unary("Sign", -1.5, 1.5, NULL);
	set_kinks(2, -0.5f, 0.5f, 0);
	unary("Round", -1, 1, NULL);
	set_kinks(0, 0, 0, 0);
	unary("Sigmoid", -3, 3, NULL);
	unary("Tanh", -2, 2, NULL);
	unary("Exp", -1, 1, NULL);
	unary("Log", 0.5, 2, NULL);
	unary("Sqrt", 0.5, 2, NULL);
	unary("Neg", -1, 1, NULL);
	unary("Reciprocal", 0.5, 2, NULL);
	unary("Erf", -1.5, 1.5, NULL);
	unary("Erf", -3, 3, NULL);
	unary("Softplus", -2, 2, NULL);
	unary("Softsign", -2, 2, NULL);
	unary("Mish", -3, 3, NULL);
	unary("Sin", -3, 3, NULL);
	unary("Cos", -3, 3, NULL);
}

/*
 * Relu after Add runs in place in a training net (its output overwrites its input): its
 * backward reads only the sign.  B is a parameter (an initializer of several elements).
 */
static void test_relu_in_place(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t d[] = {4, 6}, bd[] = {6};
	float b[6] = {0.3f, -0.2f, 0.1f, -0.4f, 0.25f, 0.05f};
	(void)state;

	tm_input(mp, "x", 1, 2, d);
	tm_output(mp, "y", 1, 2, d);
	Onnx__TensorProto *t = tm_tensor("B", 1, 1, bd);
	tm_float_data(t, b, 6);
	tm_initializer(mp, t);
	tm_node(mp, "Add", "add", (const char *[]){"x", "B", NULL}, (const char *[]){"s", NULL});
	tm_node(mp, "Relu", "relu", (const char *[]){"s", NULL}, (const char *[]){"y", NULL});
	struct graft_array x = gradcheck_input(2, d, -1, 1, 8);
	/* keep x + b away from 0 */
	for (int i = 0; i < 24; i++) {
		float *v = &((float *)x.data)[i], s = *v + b[i % 6];
		if (fabsf(s) < 0.05f)
			*v += s < 0 ? -0.05f : 0.05f;
	}
	assert_int_equal(run_check(mp, &x, 1, NULL), 24 + 6);
	free(x.data);
}

static void test_binary_broadcast(void **state)
{
	static const char *ops[] = {"Add", "Sub", "Mul", "Div"};
	/* (a, b, y): same shape, per-channel, scalar, both broadcast, b bigger, a scalar */
	static const int r[][2] = {{3, 3}, {4, 3}, {3, 0}, {3, 3}, {1, 3}, {0, 4}};
	static const int64_t d[][2][4] = {
		{{2, 3, 4}, {2, 3, 4}}, {{2, 3, 2, 2}, {3, 1, 1}}, {{2, 3, 4}, {0}},
		{{2, 1, 4}, {1, 3, 1}}, {{4}, {2, 3, 4}}, {{0}, {2, 3, 2, 2}},
	};
	static const int yr[] = {3, 4, 3, 3, 3, 4};
	static const int64_t yd[][4] = {{2, 3, 4}, {2, 3, 2, 2}, {2, 3, 4}, {2, 3, 4}, {2, 3, 4},
					{2, 3, 2, 2}};
	(void)state;

	for (size_t o = 0; o < 4; o++)
		for (size_t c = 0; c < 6; c++) {
			int ranks[2] = {r[c][0], r[c][1]};
			/* Div: keep the divisor away from 0 */
			check_op(ops[o], 13, 2, ranks, d[c], yr[c], yd[c], o == 3 ? 0.5 : -1, 1.5,
				 NULL);
		}
	/* Pow, both differentiated: base kept positive */
	for (size_t c = 0; c < 6; c++) {
		int ranks[2] = {r[c][0], r[c][1]};
		check_op("Pow", 13, 2, ranks, d[c], yr[c], yd[c], 0.5, 1.5, NULL);
	}
	/* PRelu: slope per channel, and one slope; x kept away from 0 */
	set_kinks(1, 0, 0, 0);
	int pr[2] = {4, 3};
	check_op("PRelu", 9, 2, pr, d[1], 4, yd[1], -1, 1, NULL);
	const int64_t pd[][4] = {{2, 3, 2, 2}, {1}};
	pr[1] = 1;
	check_op("PRelu", 9, 2, pr, pd, 4, yd[1], -1, 1, NULL);
	set_kinks(0, 0, 0, 0);
}

/* Big enough for the parallel paths of the broadcast sums: a long scalar sum that splits
 * into chunks, and many short rows summed in groups (a per-feature bias). */
static void test_binary_large(void **state)
{
	const int r1[] = {1, 0}, r2[] = {2, 1}, r3[] = {4, 4};
	const int64_t d1[][4] = {{40000}, {0}}, d2[][4] = {{64, 600}, {600}};
	const int64_t d3[][4] = {{8, 16, 16, 16}, {1, 16, 1, 1}};
	(void)state;

	check_op("Mul", 13, 2, r1, d1, 1, d1[0], -1, 1, NULL);
	check_op("Add", 13, 2, r2, d2, 2, d2[0], -1, 1, NULL);
	check_op("Sub", 13, 2, r2, d2, 2, d2[0], -1, 1, NULL);
	check_op("Mul", 13, 2, r3, d3, 4, d3[0], -1, 1, NULL);
	check_op("Div", 13, 2, r3, d3, 4, d3[0], 0.5, 1.5, NULL);
}

/* Before opset 7: B stretched over A from axis on (broadcast=1). */
static void bcast_axis1(Onnx__NodeProto *n)
{
	tm_attr_int(n, "broadcast", 1);
	tm_attr_int(n, "axis", 1);
}

static void test_binary_old_broadcast(void **state)
{
	const int r[] = {4, 2};
	const int64_t d[][4] = {{2, 3, 4, 5}, {3, 4}};
	(void)state;

	check_op("Add", 6, 2, r, d, 4, d[0], -1, 1, bcast_axis1);
	check_op("Sub", 6, 2, r, d, 4, d[0], -1, 1, bcast_axis1);
	check_op("Mul", 6, 2, r, d, 4, d[0], -1, 1, bcast_axis1);
	check_op("Div", 6, 2, r, d, 4, d[0], 0.5, 1.5, bcast_axis1);
}

/* x ^ e with e a constant initializer: float 2, float 0.5 and int64 3 (opset 12 allows an
 * integer exponent); only x has a gradient. */
static void test_pow_constant(void **state)
{
	int64_t d[] = {3, 4};
	(void)state;

	for (int c = 0; c < 3; c++) {
		Onnx__ModelProto *mp = tm_model(13);
		float ef = c == 0 ? 2.0f : 0.5f;
		int64_t ei = 3;
		tm_input(mp, "x", 1, 2, d);
		tm_output(mp, "y", 1, 2, d);
		Onnx__TensorProto *t = tm_tensor("e", c == 2 ? 7 : 1, 0, NULL);
		if (c == 2)
			tm_int64_data(t, &ei, 1);
		else
			tm_raw(t, &ef, sizeof(ef));
		tm_initializer(mp, t);
		tm_node(mp, "Pow", "p", (const char *[]){"x", "e", NULL},
			(const char *[]){"y", NULL});
		struct graft_array x = gradcheck_input(2, d, 0.5, 2, 6);
		assert_int_equal(run_check(mp, &x, 1, NULL), 12);
		free(x.data);
	}
}

/* Mul(x, x): both inputs are one value, whose gradient is the sum of both, 2 x dy. */
static void test_mul_same_input(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t d[] = {3, 5};
	(void)state;

	tm_input(mp, "x", 1, 2, d);
	tm_output(mp, "y", 1, 2, d);
	tm_node(mp, "Mul", "m", (const char *[]){"x", "x", NULL}, (const char *[]){"y", NULL});
	struct graft_array x = gradcheck_input(2, d, -1, 1, 7);
	assert_int_equal(run_check(mp, &x, 1, NULL), 15);
	free(x.data);
}

static void test_sum_mean(void **state)
{
	const int r[] = {3, 1, 3};
	const int64_t d[][4] = {{2, 3, 4}, {4}, {2, 1, 4}};
	(void)state;

	check_op("Sum", 13, 3, r, d, 3, d[0], -1, 1, NULL);
	check_op("Sum", 13, 1, r, d, 3, d[0], -1, 1, NULL);
	check_op("Mean", 13, 3, r, d, 3, d[0], -1, 1, NULL);
	check_op("Sum", 6, 3, (const int[]){3, 3, 3}, (const int64_t[][4]){{2, 3, 4}, {2, 3, 4},
		 {2, 3, 4}}, 3, d[0], -1, 1, NULL);
}

/* Where(c, x, y) with c a constant: x and y broadcast differently. */
static void test_where(void **state)
{
	Onnx__ModelProto *mp = tm_model(16);
	int64_t cd[] = {2, 1, 4}, xd[] = {3, 1}, yd[] = {2, 3, 4};
	uint8_t c[8] = {1, 0, 0, 1, 1, 1, 0, 0};
	(void)state;

	tm_input(mp, "x", 1, 2, xd);
	tm_input(mp, "y", 1, 0, NULL);
	tm_output(mp, "z", 1, 3, yd);
	Onnx__TensorProto *t = tm_tensor("c", 9, 3, cd);
	tm_raw(t, c, sizeof(c));
	tm_initializer(mp, t);
	tm_node(mp, "Where", "w", (const char *[]){"c", "x", "y", NULL},
		(const char *[]){"z", NULL});
	struct graft_array in[2] = {gradcheck_input(2, xd, -1, 1, 1),
				    gradcheck_input(0, NULL, -1, 1, 2)};
	assert_int_equal(run_check(mp, in, 2, NULL), 3 + 1);
	free(in[0].data);
	free(in[1].data);
}

/* Forward and backward once through a training net with input gradients; *gx gets
 * input 0's gradient (a view into the net, which the caller frees). */
static struct graft_net *forward_backward(Onnx__ModelProto *mp, struct graft_model **m,
					  const struct graft_array *in, size_t n_in,
					  const float *gy, struct graft_array *gx, uint64_t seed)
{
	size_t len;
	uint8_t *buf = tm_pack(mp, &len);
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_net_opts o = {.training = 1, .input_grads = 1, .seed = seed};
	struct graft_array og;

	onnx__model_proto__free_unpacked(mp, NULL);
	if (graft_model_read_memory(m, buf, len, NULL, "t", &err) ||
	    graft_net_new_opts(&net, *m, &o, &err))
		fail_msg("%s", err.msg);
	free(buf);
	if (graft_net_run(net, in, n_in, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &og);
	og.data = (void *)gy;
	if (graft_net_backward(net, &og, 1, &err) || graft_net_input_grad(net, 0, gx, &err))
		fail_msg("%s", err.msg);
	return net;
}

static void clip_attrs(Onnx__NodeProto *n)
{
	tm_attr_float(n, "min", -0.5f);
	tm_attr_float(n, "max", 0.6f);
}

/* Clip(x, lo, hi) at opset 13 with the bounds as initializers; "" for an omitted one. */
static Onnx__ModelProto *clip_model(const int64_t *d, const float *lo, const float *hi)
{
	Onnx__ModelProto *mp = tm_model(13);

	tm_input(mp, "x", 1, 2, d);
	tm_output(mp, "y", 1, 2, d);
	if (lo) {
		Onnx__TensorProto *t = tm_tensor("lo", 1, 0, NULL);
		tm_raw(t, lo, sizeof(*lo));
		tm_initializer(mp, t);
	}
	if (hi) {
		Onnx__TensorProto *t = tm_tensor("hi", 1, 0, NULL);
		tm_raw(t, hi, sizeof(*hi));
		tm_initializer(mp, t);
	}
	tm_node(mp, "Clip", "c", (const char *[]){"x", lo ? "lo" : "", hi ? "hi" : NULL, NULL},
		(const char *[]){"y", NULL});
	return mp;
}

static void test_clip(void **state)
{
	const int r[] = {2};
	const int64_t d[][4] = {{4, 8}};
	float lo = -0.5f, hi = 0.6f;
	(void)state;

	/* opset 6: bounds as attributes */
	set_kinks(2, lo, hi, 0);
	check_op("Clip", 6, 1, r, d, 2, d[0], -1, 1, clip_attrs);
	/* opset 13: bounds as constant inputs, both, min alone, max alone */
	for (int c = 0; c < 3; c++) {
		Onnx__ModelProto *mp = clip_model(d[0], c != 2 ? &lo : NULL, c != 1 ? &hi : NULL);
		struct graft_array x = gradcheck_input(2, d[0], -1, 1, 5);
		avoid_kinks(&x);
		assert_int_equal(run_check(mp, &x, 1, NULL), 32);
		free(x.data);
	}
	/* opset 11: bounds as graph inputs, differentiated too */
	Onnx__ModelProto *mp = tm_model(11);
	tm_input(mp, "x", 1, 2, d[0]);
	tm_input(mp, "lo", 1, 0, NULL);
	tm_input(mp, "hi", 1, 0, NULL);
	tm_output(mp, "y", 1, 2, d[0]);
	tm_node(mp, "Clip", "c", (const char *[]){"x", "lo", "hi", NULL},
		(const char *[]){"y", NULL});
	struct graft_array in[3] = {gradcheck_input(2, d[0], -1, 1, 5),
				    gradcheck_input(0, NULL, -0.5, -0.5, 0),
				    gradcheck_input(0, NULL, 0.6, 0.6, 0)};
	avoid_kinks(&in[0]);
	set_kinks(0, 0, 0, 0);
	assert_int_equal(run_check(mp, in, 3, NULL), 32 + 1 + 1);
	for (int i = 0; i < 3; i++)
		free(in[i].data);
}

/* On the bounds themselves the gradient passes, as PyTorch's clamp does; outside it is
 * 0, and with min > max (the output is max everywhere) nothing reaches x. */
static void test_clip_bounds(void **state)
{
	int64_t d[] = {1, 6};
	float x[6] = {-0.5f, 0.6f, 0.1f, -0.7f, 0.9f, -0.49f}, gy[6] = {1, 2, 3, 4, 5, 6};
	float lo = -0.5f, hi = 0.6f, expect[6] = {1, 2, 3, 0, 0, 6};
	struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 2, .dims = {1, 6}, .data = x,
				 .nbytes = sizeof(x)}, gx;
	struct graft_model *m;
	struct graft_net *net;
	(void)state;

	net = forward_backward(clip_model(d, &lo, &hi), &m, &in, 1, gy, &gx, 0);
	assert_memory_equal(gx.data, expect, sizeof(expect));
	graft_net_free(net);
	graft_model_free(m);
	net = forward_backward(clip_model(d, &hi, &lo), &m, &in, 1, gy, &gx, 0);
	for (int i = 0; i < 6; i++)
		assert_true(((float *)gx.data)[i] == 0);
	graft_net_free(net);
	graft_model_free(m);
}

static void axis_m2(Onnx__NodeProto *n) { tm_attr_int(n, "axis", -2); }
static void axis_m1(Onnx__NodeProto *n) { tm_attr_int(n, "axis", -1); }
static void axis0(Onnx__NodeProto *n) { tm_attr_int(n, "axis", 0); }
static void axis1(Onnx__NodeProto *n) { tm_attr_int(n, "axis", 1); }
static void axis2(Onnx__NodeProto *n) { tm_attr_int(n, "axis", 2); }

static void test_softmax(void **state)
{
	const int r[] = {3}, r4[] = {4};
	const int64_t d[][4] = {{2, 3, 4}}, d4[][4] = {{2, 3, 2, 5}}, wide[][4] = {{2, 3, 300}};
	static const char *ops[] = {"Softmax", "LogSoftmax"};
	void (*axes[])(Onnx__NodeProto *) = {NULL, axis0, axis1, axis2, axis_m1, axis_m2};
	(void)state;

	for (int o = 0; o < 2; o++) {
		/* opset 13: the one axis (default -1); opset 11: 2-D at axis (default 1) */
		for (size_t a = 0; a < sizeof(axes) / sizeof(axes[0]); a++) {
			check_op(ops[o], 13, 1, r, d, 3, d[0], -2, 2, axes[a]);
			check_op(ops[o], 11, 1, r, d, 3, d[0], -2, 2, axes[a]);
		}
		check_op(ops[o], 13, 1, r4, d4, 4, d4[0], -2, 2, axis1);
		check_op(ops[o], 1, 1, r4, d4, 4, d4[0], -2, 2, axis2);
		/* a middle axis over more columns than one task takes */
		check_op(ops[o], 13, 1, r, wide, 3, wide[0], -2, 2, axis1);
	}
}

static void axes02_keep0(Onnx__NodeProto *n)
{
	const int64_t axes[] = {0, -1};
	tm_attr_ints(n, "axes", axes, 2);
	tm_attr_int(n, "keepdims", 0);
}

static void axes1(Onnx__NodeProto *n)
{
	const int64_t axes[] = {1};
	tm_attr_ints(n, "axes", axes, 1);
}

static void axes23(Onnx__NodeProto *n)
{
	const int64_t axes[] = {2, 3};
	tm_attr_ints(n, "axes", axes, 2);
}

static void axes023_keep0(Onnx__NodeProto *n)
{
	const int64_t axes[] = {0, 2, 3};
	tm_attr_ints(n, "axes", axes, 3);
	tm_attr_int(n, "keepdims", 0);
}

/* A reduction with axes as an input (absent when na < 0) at opset (18, or 13 for
 * ReduceSum). */
static size_t reduce_input_axes(const char *op, int64_t opset, const int64_t *axes, long na,
				int keepdims, int noop, int yr, const int64_t *yd)
{
	Onnx__ModelProto *mp = tm_model(opset);
	const int64_t d[] = {2, 3, 4}, nd = na > 0 ? na : 0;
	size_t checked;

	tm_input(mp, "x", 1, 3, d);
	tm_output(mp, "y", 1, yr, yd);
	if (na >= 0) {
		Onnx__TensorProto *t = tm_tensor("axes", 7, 1, &nd);
		if (na > 0)
			tm_int64_data(t, axes, (size_t)na);
		tm_initializer(mp, t);
	}
	Onnx__NodeProto *n = tm_node(mp, op, "r", (const char *[]){"x", na >= 0 ? "axes" : NULL,
						NULL}, (const char *[]){"y", NULL});
	tm_attr_int(n, "keepdims", keepdims);
	if (noop)
		tm_attr_int(n, "noop_with_empty_axes", 1);
	struct graft_array x = gradcheck_input(3, d, -1, 1, 9);
	checked = run_check(mp, &x, 1, NULL);
	free(x.data);
	return checked;
}

static void test_reduce(void **state)
{
	const int r[] = {3}, r4[] = {4};
	const int64_t d[][4] = {{2, 3, 4}}, kept[] = {1, 1, 1}, mid[] = {3}, k1[] = {2, 1, 4};
	const int64_t d4[][4] = {{2, 3, 4, 5}}, k23[] = {2, 3, 1, 1}, c[] = {3};
	const int64_t big[][4] = {{8, 16, 32, 32}}, bigk[] = {8, 16, 1, 1};
	const int64_t ax1 = 1, ax02[] = {0, 2}, two4[] = {2, 4}, all[] = {0};
	static const char *ops[] = {"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1",
				    "ReduceL2", "ReduceLogSumExp"};
	(void)state;

	/* attribute axes (before opset 18; ReduceSum before 13) */
	for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
		set_kinks(strcmp(ops[o], "ReduceL1") == 0, 0, 0, 0);
		check_op(ops[o], 13, 1, r, d, 3, kept, -1, 1, NULL);   /* all axes, keepdims */
		check_op(ops[o], 11, 1, r, d, 1, mid, -1, 1, axes02_keep0);
		check_op(ops[o], 11, 1, r, d, 3, k1, -1, 1, axes1);
		check_op(ops[o], 11, 1, r4, d4, 4, k23, -1, 1, axes23);
		check_op(ops[o], 11, 1, r4, d4, 1, c, -1, 1, axes023_keep0);
	}
	set_kinks(0, 0, 0, 0);
	check_op("ReduceLogSum", 11, 1, r, d, 3, k1, 0.5, 2, axes1);
	/* GlobalAveragePool as a ReduceMean, big enough to run in parallel */
	check_op("ReduceMean", 13, 1, r4, big, 4, bigk, -1, 1, axes23);
	/* axes as an input */
	reduce_input_axes("ReduceMean", 18, &ax1, 1, 0, 0, 2, two4);
	reduce_input_axes("ReduceMean", 18, ax02, 2, 1, 0, 3, (const int64_t[]){1, 3, 1});
	reduce_input_axes("ReduceSum", 13, ax02, 2, 0, 0, 1, mid);
	reduce_input_axes("ReduceSumSquare", 18, &ax1, 1, 1, 0, 3, k1);
	/* no axes: all of them, or none with noop_with_empty_axes */
	reduce_input_axes("ReduceMean", 18, NULL, -1, 0, 0, 0, all);
	reduce_input_axes("ReduceMean", 18, NULL, -1, 1, 1, 3, d[0]);
	reduce_input_axes("ReduceMean", 18, NULL, 0, 1, 1, 3, d[0]);
	reduce_input_axes("ReduceSum", 13, NULL, 0, 0, 0, 0, all);
	reduce_input_axes("ReduceSum", 13, NULL, 0, 1, 1, 3, d[0]);
}

/* A one-Dropout model: ratio as an initializer (opset 12+) or an attribute (before), or
 * absent (ratio < 0); training_mode as a constant when tm >= 0. */
static Onnx__ModelProto *dropout_model(int64_t opset, int rank, const int64_t *d, float ratio,
				       int tm)
{
	Onnx__ModelProto *mp = tm_model(opset);
	const char *ins[4] = {"x", NULL, NULL, NULL};

	tm_input(mp, "x", 1, rank, d);
	tm_output(mp, "y", 1, rank, d);
	if (opset >= 12 && (ratio >= 0 || tm >= 0)) {
		Onnx__TensorProto *t = tm_tensor("ratio", 1, 0, NULL);
		float r = ratio >= 0 ? ratio : 0.5f;
		tm_raw(t, &r, sizeof(r));
		tm_initializer(mp, t);
		ins[1] = "ratio";
	}
	if (tm >= 0) {
		uint8_t b = (uint8_t)tm;
		Onnx__TensorProto *t = tm_tensor("tm", 9, 0, NULL);
		tm_raw(t, &b, 1);
		tm_initializer(mp, t);
		ins[2] = "tm";
	}
	Onnx__NodeProto *n = tm_node(mp, "Dropout", "drop", ins, (const char *[]){"y", NULL});
	if (opset < 12 && ratio >= 0)
		tm_attr_float(n, "ratio", ratio);
	return mp;
}

/* y is 0 or x / (1 - p), about p of it dropped; returns the count dropped and fills the
 * kept flags. */
static int check_dropped(const struct graft_array *x, const struct graft_array *y, float p,
			 uint8_t *keep)
{
	const float *xv = x->data, *yv = y->data;
	float scale = 1 / (1 - p);
	int n = (int)(x->nbytes / sizeof(float)), dropped = 0;

	for (int i = 0; i < n; i++) {
		keep[i] = yv[i] != 0;
		if (!keep[i])
			dropped++;
		else if (!(fabsf(yv[i] - xv[i] * scale) <= 1e-6f * scale))
			fail_msg("y[%d] = %g for x %g, scale %g", i, yv[i], xv[i], scale);
	}
	assert_true(fabs(dropped - (double)n * p) < 4 * sqrt(n * p * (1 - p)));
	return dropped;
}

/*
 * Dropout in a training net: y is 0 or x / (1 - p), about p of it dropped, backward is
 * dy * mask / (1 - p) exactly; every run draws a new mask from the net's generator, the
 * same seed gives the same masks; in evaluation mode it is the identity, even where the
 * model sets training_mode.
 */
static void test_dropout(void **state)
{
	enum { N = 20000 };
	int64_t d[] = {N};
	struct graft_array x = gradcheck_input(1, d, 0.5, 1.5, 3), y, gx;
	float *g = malloc(N * sizeof(float));
	uint8_t *keep = malloc(N), *keep2 = malloc(N), *keep0 = malloc(N);
	struct graft_err err = {0};
	struct graft_model *m;
	struct graft_net *net;
	(void)state;

	for (int i = 0; i < N; i++)
		g[i] = (float)(i % 7) - 3;
	/* opset 13 with ratio 0.3 as an input; opset 10 with the attribute; opset 13 with
	 * its default 0.5; each model with training_mode false, as an exporter leaves it */
	const int64_t opsets[] = {13, 10, 13};
	const float ratios[] = {0.3f, 0.2f, -1};
	for (int c = 0; c < 3; c++) {
		float p = ratios[c] >= 0 ? ratios[c] : 0.5f, scale = 1 / (1 - p);
		Onnx__ModelProto *mp = dropout_model(opsets[c], 1, d, ratios[c],
						     opsets[c] >= 12 ? 0 : -1);
		net = forward_backward(mp, &m, &x, 1, g, &gx, 42);
		graft_net_output(net, 0, &y);
		check_dropped(&x, &y, p, keep);
		if (c == 0)
			memcpy(keep0, keep, N);
		for (int i = 0; i < N; i++)
			assert_true(((float *)gx.data)[i] == (keep[i] ? g[i] * scale : 0));
		/* a second run draws another mask */
		if (graft_net_run(net, &x, 1, &err))
			fail_msg("%s", err.msg);
		graft_net_output(net, 0, &y);
		check_dropped(&x, &y, p, keep2);
		assert_true(memcmp(keep, keep2, N) != 0);
		/* evaluation: the identity */
		graft_net_set_training(net, 0);
		if (graft_net_run(net, &x, 1, &err))
			fail_msg("%s", err.msg);
		graft_net_output(net, 0, &y);
		assert_memory_equal(y.data, x.data, x.nbytes);
		/* and back to training */
		graft_net_set_training(net, 1);
		if (graft_net_run(net, &x, 1, &err))
			fail_msg("%s", err.msg);
		graft_net_output(net, 0, &y);
		check_dropped(&x, &y, p, keep2);
		graft_net_free(net);
		graft_model_free(m);
	}
	/* the same seed, the same first mask (keep0: seed 42, ratio 0.3, above); another
	 * seed, another */
	for (int s = 0; s < 2; s++) {
		net = forward_backward(dropout_model(13, 1, d, 0.3f, -1), &m, &x, 1, g, &gx,
				       s ? 43 : 42);
		graft_net_output(net, 0, &y);
		check_dropped(&x, &y, 0.3f, keep2);
		assert_true((memcmp(keep0, keep2, N) == 0) == (s == 0));
		graft_net_free(net);
		graft_model_free(m);
	}
	/* a model exported in training mode: training_mode true changes nothing in a
	 * training net, and evaluation is still the identity */
	net = forward_backward(dropout_model(13, 1, d, 0.3f, 1), &m, &x, 1, g, &gx, 42);
	graft_net_output(net, 0, &y);
	check_dropped(&x, &y, 0.3f, keep2);
	assert_memory_equal(keep0, keep2, N);
	graft_net_set_training(net, 0);
	if (graft_net_run(net, &x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	assert_memory_equal(y.data, x.data, x.nbytes);
	graft_net_free(net);
	graft_model_free(m);
	free(g);
	free(keep);
	free(keep2);
	free(keep0);
	free(x.data);
}

/* An inference net keeps ONNX's training_mode: true drops (the node's own generator),
 * false or absent is the identity. */
static void test_dropout_inference(void **state)
{
	enum { N = 20000 };
	int64_t d[] = {N};
	struct graft_array x = gradcheck_input(1, d, 0.5, 1.5, 3), y;
	uint8_t *keep = malloc(N);
	struct graft_err err = {0};
	(void)state;

	for (int tm = -1; tm <= 1; tm++) {
		Onnx__ModelProto *mp = dropout_model(13, 1, d, 0.25f, tm);
		size_t len;
		uint8_t *buf = tm_pack(mp, &len);
		struct graft_model *m;
		struct graft_net *net;
		onnx__model_proto__free_unpacked(mp, NULL);
		if (graft_model_read_memory(&m, buf, len, NULL, "t", &err) ||
		    graft_net_new(&net, m, &err) || graft_net_run(net, &x, 1, &err))
			fail_msg("%s", err.msg);
		free(buf);
		graft_net_output(net, 0, &y);
		if (tm == 1)
			check_dropped(&x, &y, 0.25f, keep);
		else
			assert_memory_equal(y.data, x.data, x.nbytes);
		graft_net_free(net);
		graft_model_free(m);
	}
	free(keep);
	free(x.data);
}

/* gradcheck through Dropout: the harness replays the same mask on every run. */
static void test_dropout_gradcheck(void **state)
{
	int64_t d[] = {4, 16};
	struct gradcheck_opts o = {.seed = 5};
	(void)state;

	for (int c = 0; c < 2; c++) {
		struct graft_array x = gradcheck_input(2, d, -1, 1, 4);
		assert_int_equal(run_check(dropout_model(c ? 13 : 11, 2, d, 0.5f, -1), &x, 1, &o),
				 64);
		free(x.data);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unary),
		cmocka_unit_test(test_relu_in_place),
		cmocka_unit_test(test_binary_broadcast),
		cmocka_unit_test(test_binary_large),
		cmocka_unit_test(test_binary_old_broadcast),
		cmocka_unit_test(test_pow_constant),
		cmocka_unit_test(test_mul_same_input),
		cmocka_unit_test(test_sum_mean),
		cmocka_unit_test(test_where),
		cmocka_unit_test(test_clip),
		cmocka_unit_test(test_clip_bounds),
		cmocka_unit_test(test_softmax),
		cmocka_unit_test(test_reduce),
		cmocka_unit_test(test_dropout),
		cmocka_unit_test(test_dropout_inference),
		cmocka_unit_test(test_dropout_gradcheck),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	printf("%zu gradient elements checked against finite differences\n", total_checked);
	return rc;
}
