/*
 * test_qconv.c: int8 execution (lib/engine/ops/qconv.c, QLinearAdd in quant.c, and the
 * executor's QDQ fusions in net.c).
 *  - QLinearConv's oneDNN kernel against its reference loop (the same node, forced onto
 *    the loop by an x_scale that is a graph input): uint8 and int8 X with zero points,
 *    uint8 and int8 Y, per-channel and per-tensor W scales, B, strides, asymmetric pads,
 *    groups, dilations.  Both compute an exact int32 sum and the same float steps after
 *    it, so they must agree on every integer.
 *  - A QDQ model from graft_quantize (Conv, Relu folded, MaxPool, a residual Add, a
 *    strided Conv): the executor fuses it into QLinearConv, MaxPool on bytes and
 *    QLinearAdd, and its output equals the unfused net's (float between every
 *    DequantizeLinear and QuantizeLinear) but for ties rounded the other way: at most
 *    one step of the output's scale, on a small share of the values.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "surgery/surgery.h"
#include "testmodel.h"

/* A fixed pseudo-random sequence per seed, in [0, 1). */
static float uniform(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return (float)((*seed >> 8) & 0xffff) / 65536.0f;
}

struct qcase {
	int x_dtype, y_dtype;           /* GRAFT_UINT8 or GRAFT_INT8 */
	int x_zp, y_zp;
	int per_channel, bias;
	int64_t group, stride, dil, pad_l, pad_r, k;
};

enum { QN = 2, QC = 4, QK = 8, QH = 9, QW = 8 };

static Onnx__TensorProto *scalar8(const char *name, int dtype, int v)
{
	Onnx__TensorProto *t = tm_tensor(name, dtype, 0, NULL);
	uint8_t b = (uint8_t)v;

	tm_raw(t, &b, 1);
	return t;
}

static Onnx__TensorProto *floats(const char *name, int rank, const int64_t *dims,
				 const float *v, size_t n)
{
	Onnx__TensorProto *t = tm_tensor(name, GRAFT_FLOAT, rank, dims);

	tm_float_data(t, v, n);
	return t;
}

/* A QLinearConv of case c; with scale_input, x_scale is a graph input "xs" (no constant:
 * the reference loop runs). */
static struct graft_model *qlinear_conv(const struct qcase *c, int scale_input)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {QN, QC, QH, QW}, wd[] = {QK, QC / c->group, c->k, c->k}, kd[] = {QK};
	int8_t w[QK * QC * 9];
	float ws[QK];
	int32_t b[QK];
	unsigned seed = 11;

	tm_input(mp, "x", c->x_dtype, 4, xd);
	if (scale_input)
		tm_input(mp, "xs", GRAFT_FLOAT, 0, NULL);
	tm_output(mp, "y", c->y_dtype, 4, (int64_t[]){-1, -1, -1, -1});
	for (size_t i = 0; i < (size_t)(QK * QC / c->group * c->k * c->k); i++)
		w[i] = (int8_t)(uniform(&seed) * 254 - 127);
	for (int i = 0; i < QK; i++) {
		ws[i] = 0.002f + 0.01f * uniform(&seed);
		b[i] = (int32_t)(uniform(&seed) * 4000 - 2000);
	}
	Onnx__TensorProto *wt = tm_tensor("w", GRAFT_INT8, 4, wd);
	tm_raw(wt, w, (size_t)(QK * QC / c->group * c->k * c->k));
	tm_initializer(mp, wt);
	tm_initializer(mp, floats("ws", c->per_channel, kd, ws, c->per_channel ? QK : 1));
	if (!scale_input)
		tm_initializer(mp, floats("xs", 0, NULL, (float[]){0.05f}, 1));
	tm_initializer(mp, scalar8("xz", c->x_dtype, c->x_zp));
	tm_initializer(mp, scalar8("wz", GRAFT_INT8, 0));
	tm_initializer(mp, floats("ys", 0, NULL, (float[]){0.3f}, 1));
	tm_initializer(mp, scalar8("yz", c->y_dtype, c->y_zp));
	Onnx__TensorProto *bt = tm_tensor("b", GRAFT_INT32, 1, kd);
	tm_int32_data(bt, b, QK);
	tm_initializer(mp, bt);
	Onnx__NodeProto *n = tm_node(mp, "QLinearConv", "qc",
		(const char *[]){"x", "xs", "xz", "w", "ws", "wz", "ys", "yz", c->bias ? "b" : NULL,
				 NULL}, (const char *[]){"y", NULL});
	tm_attr_int(n, "group", c->group);
	tm_attr_ints(n, "strides", (int64_t[]){c->stride, c->stride}, 2);
	tm_attr_ints(n, "dilations", (int64_t[]){c->dil, c->dil}, 2);
	tm_attr_ints(n, "pads", (int64_t[]){c->pad_l, c->pad_l, c->pad_r, c->pad_r}, 4);
	return tm_load(mp);
}

/* Runs m on x (and xs when m takes it); the output's bytes into out, their count back. */
static size_t run_q(const struct graft_model *m, const void *x, int x_dtype, int with_scale,
		    uint8_t *out, size_t max)
{
	struct graft_array in[2] = {
		{.dtype = x_dtype, .rank = 4, .dims = {QN, QC, QH, QW}, .data = (void *)x,
		 .nbytes = QN * QC * QH * QW},
		{.dtype = GRAFT_FLOAT, .rank = 0, .data = (float[]){0.05f}, .nbytes = 4},
	};
	struct graft_err err = {0};
	struct graft_net *net;
	struct graft_array y;

	if (graft_net_new(&net, m, &err) || graft_net_run(net, in, with_scale ? 2 : 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	assert_true(y.nbytes <= max);
	memcpy(out, y.data, y.nbytes);
	graft_net_free(net);
	return y.nbytes;
}

static void test_onednn_matches_reference(void **state)
{
	static const struct qcase cases[] = {
		{GRAFT_UINT8, GRAFT_UINT8, 7, 100, 1, 1, 1, 1, 1, 1, 1, 3},
		{GRAFT_UINT8, GRAFT_INT8, 0, -5, 0, 1, 2, 2, 1, 1, 0, 3},
		{GRAFT_INT8, GRAFT_UINT8, -3, 20, 1, 0, 1, 1, 2, 2, 2, 3},
		{GRAFT_INT8, GRAFT_INT8, 5, 0, 1, 1, 4, 2, 1, 0, 1, 3},
		{GRAFT_UINT8, GRAFT_UINT8, 128, 128, 1, 1, 1, 1, 1, 0, 0, 1},
	};
	static uint8_t x[QN * QC * QH * QW], a[QN * QK * QH * QW], b[QN * QK * QH * QW];
	unsigned seed = 3;
	(void)state;

	for (size_t i = 0; i < sizeof(x); i++)
		x[i] = (uint8_t)(uniform(&seed) * 256);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		const struct qcase *c = &cases[k];
		struct graft_model *fast = qlinear_conv(c, 0), *ref = qlinear_conv(c, 1);
		size_t na = run_q(fast, x, c->x_dtype, 0, a, sizeof(a));
		size_t nb = run_q(ref, x, c->x_dtype, 1, b, sizeof(b));
		size_t spread = 0;
		assert_int_equal(na, nb);
		for (size_t i = 0; i < na; i++) {
			assert_int_equal(a[i], b[i]);
			spread += a[i] != a[0];
		}
		assert_true(spread > na / 2);   /* not a constant output */
		graft_model_free(fast);
		graft_model_free(ref);
	}
}

/* ---- fusion ------------------------------------------------------------------------------- */

enum { FN = 4, FC = 8, FH = 12, FW = 12 };

/* x -> Conv 3x3 -> Relu -> MaxPool 2x2 -> p;  p -> Conv 3x3 -> a;  Add(a, p) -> Relu -> s;
 * s -> Conv 3x3 stride 2 -> y. */
static struct graft_model *residual_cnn(void)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {-1, 3, FH, FW}, w1[] = {FC, 3, 3, 3}, w2[] = {FC, FC, 3, 3},
		w3[] = {FC, FC, 3, 3}, bd[] = {FC};
	static const int64_t pads[] = {1, 1, 1, 1};

	tm_input(mp, "x", GRAFT_FLOAT, 4, xd);
	tm_output(mp, "y", GRAFT_FLOAT, 4, (int64_t[]){-1, -1, -1, -1});
	tm_init_floats(mp, "w1", 4, w1, 1, -0.5f, 0.5f);
	tm_init_floats(mp, "b1", 1, bd, 2, -0.2f, 0.2f);
	tm_init_floats(mp, "w2", 4, w2, 3, -0.2f, 0.2f);
	tm_init_floats(mp, "b2", 1, bd, 4, -0.2f, 0.2f);
	tm_init_floats(mp, "w3", 4, w3, 5, -0.2f, 0.2f);
	Onnx__NodeProto *n = tm_node(mp, "Conv", "c1", (const char *[]){"x", "w1", "b1", NULL},
				     (const char *[]){"c1", NULL});
	tm_attr_ints(n, "pads", pads, 4);
	tm_node(mp, "Relu", "r1", (const char *[]){"c1", NULL}, (const char *[]){"r1", NULL});
	n = tm_node(mp, "MaxPool", "mp", (const char *[]){"r1", NULL}, (const char *[]){"p", NULL});
	tm_attr_ints(n, "kernel_shape", (int64_t[]){2, 2}, 2);
	tm_attr_ints(n, "strides", (int64_t[]){2, 2}, 2);
	n = tm_node(mp, "Conv", "c2", (const char *[]){"p", "w2", "b2", NULL},
		    (const char *[]){"a", NULL});
	tm_attr_ints(n, "pads", pads, 4);
	tm_node(mp, "Add", "add", (const char *[]){"a", "p", NULL}, (const char *[]){"s0", NULL});
	tm_node(mp, "Relu", "r2", (const char *[]){"s0", NULL}, (const char *[]){"s", NULL});
	n = tm_node(mp, "Conv", "c3", (const char *[]){"s", "w3", NULL}, (const char *[]){"y", NULL});
	tm_attr_ints(n, "pads", pads, 4);
	tm_attr_ints(n, "strides", (int64_t[]){2, 2}, 2);
	return tm_load(mp);
}

static struct graft_array images(float *buf, int n)
{
	struct graft_array x = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {n, 3, FH, FW},
				.data = buf, .nbytes = (size_t)n * 3 * FH * FW * sizeof(float)};
	unsigned seed = 9;

	for (int i = 0; i < n * 3 * FH * FW; i++)
		buf[i] = uniform(&seed) * 2 - 1;
	return x;
}

/* y of m on x, fused or not, into out; the net's profile op names into ops (fused). */
static size_t run_fused(const struct graft_model *m, const struct graft_array *x, int no_fuse,
			float *out, size_t max, char *ops, size_t ops_size)
{
	struct graft_net_opts o = {.no_fuse = no_fuse, .profile = 1};
	struct graft_err err = {0};
	struct graft_net *net;
	struct graft_array y;

	if (graft_net_new_opts(&net, m, &o, &err) || graft_net_run(net, x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	assert_true(y.nbytes <= max);
	memcpy(out, y.data, y.nbytes);
	ops[0] = 0;
	for (size_t i = 0; i < graft_net_profile_count(net); i++) {
		struct graft_node_time t;
		if (!graft_net_profile(net, i, &t) && t.runs) {
			strncat(ops, t.op_type, ops_size - strlen(ops) - 2);
			strcat(ops, " ");
		}
	}
	graft_net_free(net);
	return y.nbytes / sizeof(float);
}

static int count_word(const char *ops, const char *word)
{
	int n = 0;
	size_t len = strlen(word);

	for (const char *p = ops; (p = strstr(p, word)); p += len)
		n += (p == ops || p[-1] == ' ') && p[len] == ' ';
	return n;
}

static void test_fused_qdq_model(void **state)
{
	static float xs[FN * 3 * FH * FW], want[FN * FC * FH * FW], got[FN * FC * FH * FW];
	static char ops[4096];
	struct graft_array x = images(xs, FN);
	struct graft_model *m = residual_cnn();
	struct graft_quant_info info;
	struct graft_err err = {0};
	(void)state;

	if (graft_quantize(m, &x, NULL, &info, &err))
		fail_msg("%s", err.msg);
	size_t n = run_fused(m, &x, 1, want, sizeof(want), ops, sizeof(ops));
	assert_int_equal(count_word(ops, "QLinearConv"), 0);
	assert_int_equal(run_fused(m, &x, 0, got, sizeof(got), ops, sizeof(ops)), n);
	/* every Conv, the Add and the MaxPool run on bytes: no float Conv or Add is left */
	assert_int_equal(count_word(ops, "QLinearConv"), 2);    /* c1, c2: c3's y is float */
	assert_int_equal(count_word(ops, "QLinearAdd"), 1);
	assert_int_equal(count_word(ops, "Add"), 0);
	assert_int_equal(count_word(ops, "MaxPool"), 1);
	assert_int_equal(count_word(ops, "DequantizeLinear"), 1);       /* s, for c3 */
	/* the same model computed in integers: a rounding tie may go the other way */
	float top = 0, worst = 0;
	for (size_t i = 0; i < n; i++) {
		top = fmaxf(top, fabsf(want[i]));
		worst = fmaxf(worst, fabsf(got[i] - want[i]));
	}
	assert_true(top > 0.1f);
	assert_true(worst < 0.02f * top);
	graft_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_onednn_matches_reference),
		cmocka_unit_test(test_fused_qdq_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
