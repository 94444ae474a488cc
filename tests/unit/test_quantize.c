/*
 * test_quantize.c: graft_quantize (lib/surgery/quantize.c) and its scales and zero
 * points.  The parameters are checked against the formulas by hand (rounding half to
 * even included); a small Conv -> Relu -> Conv model is quantized and checked node by
 * node (what is quantized, per channel or per tensor, the Relu folded), run against the
 * float model, and refused a second time.
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

static void test_asymmetric(void **state)
{
	float s;
	uint8_t zp;
	(void)state;

	graft_quant_asymmetric(-1, 3, &s, &zp);         /* 255 / 4 * 1 = 63.75 */
	assert_true(fabsf(s - 4.0f / 255) < 1e-9f);
	assert_int_equal(zp, 64);
	graft_quant_asymmetric(0.5f, 2, &s, &zp);       /* widened to hold 0 */
	assert_true(fabsf(s - 2.0f / 255) < 1e-9f);
	assert_int_equal(zp, 0);
	graft_quant_asymmetric(-2, -1, &s, &zp);
	assert_true(fabsf(s - 2.0f / 255) < 1e-9f);
	assert_int_equal(zp, 255);
	graft_quant_asymmetric(-1.5f, 253.5f, &s, &zp); /* scale 1: 1.5 rounds to 2 */
	assert_true(s == 1.0f);
	assert_int_equal(zp, 2);
	graft_quant_asymmetric(-2.5f, 252.5f, &s, &zp); /* 2.5 rounds to 2, half to even */
	assert_int_equal(zp, 2);
	graft_quant_asymmetric(0, 0, &s, &zp);          /* nothing to hold: any scale */
	assert_true(s == 1.0f);
	assert_int_equal(zp, 0);
}

static void test_symmetric(void **state)
{
	(void)state;
	assert_true(fabsf(graft_quant_symmetric(12.7f) - 0.1f) < 1e-7f);
	assert_true(graft_quant_symmetric(0) == 1.0f);
}

enum { N = 8, C = 2, K = 3, H = 4, W = 4 };

/* x [N, C, H, W] -> Conv 1x1 (w1 [K, C], b1) -> Relu -> r -> Conv 1x1 (w2 [K, K]) -> y. */
static struct graft_model *conv_relu_conv(int64_t opset)
{
	Onnx__ModelProto *mp = tm_model(opset);
	int64_t xd[] = {-1, C, H, W}, yd[] = {-1, K, H, W}, w1[] = {K, C, 1, 1},
		w2[] = {K, K, 1, 1}, b1[] = {K};

	tm_input(mp, "x", GRAFT_FLOAT, 4, xd);
	tm_output(mp, "y", GRAFT_FLOAT, 4, yd);
	tm_init_floats(mp, "w1", 4, w1, 1, -1, 1);
	tm_init_floats(mp, "b1", 1, b1, 2, -0.2f, 0.2f);
	tm_init_floats(mp, "w2", 4, w2, 3, -0.5f, 0.5f);
	tm_node(mp, "Conv", "c1", (const char *[]){"x", "w1", "b1", NULL},
		(const char *[]){"a", NULL});
	tm_node(mp, "Relu", "relu", (const char *[]){"a", NULL}, (const char *[]){"r", NULL});
	tm_node(mp, "Conv", "c2", (const char *[]){"r", "w2", NULL}, (const char *[]){"y", NULL});
	return tm_load(mp);
}

static struct graft_array samples(float *buf)
{
	struct graft_array x = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {N, C, H, W},
				.data = buf, .nbytes = N * C * H * W * sizeof(float)};
	unsigned seed = 7;

	for (int i = 0; i < N * C * H * W; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1;
	}
	return x;
}

static size_t count_op(const struct graft_model *m, const char *op)
{
	const Onnx__GraphProto *g = m->proto->graph;
	size_t n = 0;

	for (size_t i = 0; i < g->n_node; i++)
		n += strcmp(g->node[i]->op_type, op) == 0;
	return n;
}

static const Onnx__NodeProto *producer_of(const struct graft_model *m, const char *name)
{
	long i = graph_producer(m->proto->graph, name);
	assert_true(i >= 0);
	return m->proto->graph->node[i];
}

/* The node named name, or the QuantizeLinear that reads value x (name NULL). */
static const Onnx__NodeProto *find_node(const struct graft_model *m, const char *name,
					const char *x)
{
	const Onnx__GraphProto *g = m->proto->graph;

	for (size_t i = 0; i < g->n_node; i++)
		if (name ? strcmp(g->node[i]->name, name) == 0
			 : strcmp(g->node[i]->op_type, "QuantizeLinear") == 0 &&
			   strcmp(g->node[i]->input[0], x) == 0)
			return g->node[i];
	fail_msg("no node %s", name ? name : x);
	return NULL;
}

/* The producer of input k of the node named node. */
static const Onnx__NodeProto *input_producer(const struct graft_model *m, const char *node,
					     size_t k)
{
	return producer_of(m, find_node(m, node, NULL)->input[k]);
}

/* The stored tensor named name. */
static struct graft_tensor stored(const struct graft_model *m, const char *name)
{
	struct graft_tensor t;

	graft_model_tensor(m, (size_t)graft_model_find_tensor(m, name), &t);
	return t;
}

/* The largest |got - want| over the largest |want|, over n values. */
static float worst_share(const float *want, const float *got, int n)
{
	float top = 0, worst = 0;

	for (int i = 0; i < n; i++) {
		top = fmaxf(top, fabsf(want[i]));
		worst = fmaxf(worst, fabsf(got[i] - want[i]));
	}
	return worst / top;
}

/* The first output of model m on x, into out (count floats). */
static void run_output(const struct graft_model *m, const struct graft_array *x, float *out,
		       size_t count)
{
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_array y;

	if (graft_net_new(&net, m, &err) || graft_net_run(net, x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	assert_int_equal(y.nbytes, count * sizeof(float));
	memcpy(out, y.data, y.nbytes);
	graft_net_free(net);
}

static void run(const struct graft_model *m, const struct graft_array *x, float *out)
{
	run_output(m, x, out, N * K * H * W);
}

static void test_quantize_model(void **state)
{
	static float xs[N * C * H * W], want[N * K * H * W], got[N * K * H * W];
	struct graft_array x = samples(xs);
	struct graft_model *f = conv_relu_conv(13), *m = conv_relu_conv(13);
	struct graft_quant_info info;
	struct graft_err err = {0};
	(void)state;

	if (graft_quantize(m, &x, NULL, &info, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(info.quantized, 2);
	assert_int_equal(info.folded, 1);
	assert_int_equal(info.weights, 2);
	assert_int_equal(info.tensors, 2);              /* x and r; y is only the output */
	assert_int_equal(count_op(m, "Relu"), 0);
	/* The folded Relu's clipping is the QuantizeLinear's: r's range starts at 0 with zero
	 * point 0 (asymmetric uint8), so every negative value saturates to 0, as the Relu
	 * did.  With symmetric activations the Relu would have to stay (onnxruntime#11660):
	 * graft's are never symmetric. */
	struct graft_tensor zp = stored(m, find_node(m, NULL, "r")->input[2]);
	assert_int_equal(zp.dtype, GRAFT_UINT8);
	assert_int_equal(*(const uint8_t *)zp.data, 0);
	assert_int_equal(count_op(m, "QuantizeLinear"), 2);
	assert_int_equal(count_op(m, "DequantizeLinear"), 5);   /* x, r, w1, b1, w2 */
	/* the first Conv writes the Relu's output now, through a Q/DQ pair to the second */
	assert_string_equal(producer_of(m, "r")->name, "c1");
	/* w1: int8 per output channel, the scale absmax / 127, zero points 0 */
	const Onnx__NodeProto *dq = input_producer(m, "c1", 1);
	assert_string_equal(dq->op_type, "DequantizeLinear");
	assert_int_equal(dq->n_attribute, 1);
	assert_int_equal(dq->attribute[0]->i, 0);
	struct graft_tensor wq = stored(m, dq->input[0]), ws = stored(m, dq->input[1]),
			    wf = stored(f, "w1");
	assert_int_equal(wq.dtype, GRAFT_INT8);
	assert_int_equal(ws.rank, 1);
	assert_int_equal(ws.dims[0], K);
	for (int k = 0; k < K; k++) {
		float amax = 0, s = ((const float *)ws.data)[k];
		for (int c = 0; c < C; c++)
			amax = fmaxf(amax, fabsf(((const float *)wf.data)[k * C + c]));
		assert_true(fabsf(s - amax / 127) <= 1e-7f * amax);
		for (int c = 0; c < C; c++)
			assert_int_equal(((const int8_t *)wq.data)[k * C + c],
					 (int)nearbyintf(((const float *)wf.data)[k * C + c] / s));
	}
	assert_true(graft_model_find_tensor(m, "w1") < 0);      /* the float weight is gone */
	/* the quantized model computes what the float one does, to the quantization steps */
	run(f, &x, want);
	run(m, &x, got);
	float share = worst_share(want, got, N * K * H * W);
	assert_true(share > 0 && share < 0.03f);
	/* twice: refused */
	assert_int_equal(graft_quantize(m, &x, NULL, &info, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "quantized already"));
	graft_model_free(m);
	graft_model_free(f);
}

/* Per tensor: scalar weight scales, no axis; --exclude keeps a node float, and its
 * Relu with it. */
static void test_per_tensor_and_exclude(void **state)
{
	static float xs[N * C * H * W];
	struct graft_array x = samples(xs);
	struct graft_model *m = conv_relu_conv(13);
	const char *ex[] = {"c2"};
	struct graft_quant_opts o = {.per_tensor = 1, .exclude = ex, .n_exclude = 1};
	struct graft_quant_info info;
	struct graft_err err = {0};
	(void)state;

	if (graft_quantize(m, &x, &o, &info, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(info.quantized, 1);
	assert_int_equal(info.excluded, 1);
	assert_int_equal(info.weights, 1);
	const Onnx__NodeProto *dq = input_producer(m, "c1", 1);
	assert_int_equal(dq->n_attribute, 0);
	assert_int_equal(stored(m, dq->input[1]).rank, 0);
	assert_true(graft_model_find_tensor(m, "w2") >= 0);     /* c2's weight stays float */
	graft_model_free(m);
}

/* The scale of the QuantizeLinear of x. */
static float x_scale(const struct graft_model *m)
{
	return *(const float *)stored(m, find_node(m, NULL, "x")->input[1]).data;
}

/* One outlier in the calibration samples: minmax takes it into x's range, the
 * percentile method (99%: 5 of the 512 values off each end) leaves it out. */
static void test_percentile(void **state)
{
	static float xs[N * C * H * W];
	struct graft_array x = samples(xs);
	struct graft_model *a = conv_relu_conv(13), *b = conv_relu_conv(13);
	struct graft_quant_opts mm = {.method = GRAFT_CALIB_MINMAX},
				pc = {.method = GRAFT_CALIB_PERCENTILE, .percentile = 99};
	struct graft_quant_info info;
	struct graft_err err = {0};
	(void)state;

	xs[17] = 1000;
	if (graft_quantize(a, &x, &mm, &info, &err) || graft_quantize(b, &x, &pc, &info, &err))
		fail_msg("%s", err.msg);
	assert_true(fabsf(x_scale(a) - 1001.0f / 255) < 0.01f);       /* [-1, 1000] */
	assert_true(x_scale(b) < 2.01f / 255);                          /* within [-1, 1] */
	graft_model_free(a);
	graft_model_free(b);
}

/* A residual connection: y = Conv(x) + x.  Both of the Add's inputs and its output are
 * quantized, each with its own scale (what a rescaling Add needs: a C exporter that lost
 * it made MobileNetV2 score 0%, CEA-LIST/N2D2#81), and the quantized model still
 * computes the float one's result to the quantization steps. */
/* x -> Conv (w, 1x1, C -> C) -> a; Add(a, x) -> Relu -> z; with next, z -> Conv -> y,
 * else z is the output y. */
static struct graft_model *residual_model(int next)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {-1, C, H, W}, wd[] = {C, C, 1, 1};

	tm_input(mp, "x", GRAFT_FLOAT, 4, xd);
	tm_output(mp, "y", GRAFT_FLOAT, 4, xd);
	tm_init_floats(mp, "w", 4, wd, 5, -3, 3);    /* the branch outgrows x */
	tm_node(mp, "Conv", "c", (const char *[]){"x", "w", NULL}, (const char *[]){"a", NULL});
	tm_node(mp, "Add", "add", (const char *[]){"a", "x", NULL}, (const char *[]){"s", NULL});
	tm_node(mp, "Relu", "r", (const char *[]){"s", NULL},
		(const char *[]){next ? "z" : "y", NULL});
	if (next)
		tm_node(mp, "Conv", "c2", (const char *[]){"z", "w", NULL},
			(const char *[]){"y", NULL});
	return tm_load(mp);
}

static void test_residual_add(void **state)
{
	static float xs[N * C * H * W], want[N * C * H * W], got[N * C * H * W];
	struct graft_array x = samples(xs);
	struct graft_model *f = residual_model(0), *m = residual_model(1);
	struct graft_quant_info info;
	struct graft_err err = {0};
	(void)state;

	if (graft_quantize(m, &x, NULL, &info, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(info.quantized, 3);            /* c, add, c2 */
	const Onnx__NodeProto *add = find_node(m, "add", NULL);
	assert_string_equal(producer_of(m, add->input[0])->op_type, "DequantizeLinear");
	assert_string_equal(producer_of(m, add->input[1])->op_type, "DequantizeLinear");
	/* the two inputs' scales differ (a's range is far wider than x's) */
	const Onnx__NodeProto *d0 = producer_of(m, add->input[0]), *d1 = producer_of(m, add->input[1]);
	assert_true(*(const float *)stored(m, d0->input[1]).data >
		    2 * *(const float *)stored(m, d1->input[1]).data);
	/* the Add's output (the Relu folded into it) goes through a QuantizeLinear to c2 */
	assert_string_equal(add->output[0], "z");
	assert_int_equal(count_op(m, "Relu"), 0);
	/* the sum, as the float model computes it (the first model's y is the Add + Relu) */
	run_output(f, &x, want, N * C * H * W);
	struct graft_net *net;
	struct graft_array z;
	struct graft_net_opts no = {.no_fuse = 1};
	if (graft_net_new_opts(&net, m, &no, &err) || graft_net_run(net, &x, 1, &err) ||
	    graft_net_value(net, "z_dequantized", &z))
		fail_msg("no z: %s", err.msg);
	memcpy(got, z.data, sizeof(got));
	graft_net_free(net);
	assert_true(worst_share(want, got, N * C * H * W) < 0.02f);
	graft_model_free(m);
	graft_model_free(f);
}

/*
 * The per-channel collapse of onnxruntime#11415 (MobileNetV3 at 54% per channel against
 * 69% per tensor): a channel whose weights are tiny beside its bias (a folded
 * BatchNormalization with a near-zero gamma) gets a tiny weight scale, its int32 bias
 * (bias / (x_scale * w_scale)) saturates, and the channel loses its bias.  graft raises
 * such a channel's weight scale until the bias fits: channel 0 here, weights 1e-9 and
 * bias 0.5, must still give 0.5.
 */
/* x -> Conv 1x1 (w, b as given) -> Relu -> r -> Conv 1x1 (w2) -> y. */
static struct graft_model *given_weights(const float *w, const float *b)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {-1, C, H, W}, yd[] = {-1, K, H, W}, wd[] = {K, C, 1, 1}, bd[] = {K},
		w2[] = {K, K, 1, 1};
	Onnx__TensorProto *wt = tm_tensor("w", GRAFT_FLOAT, 4, wd);
	Onnx__TensorProto *bt = tm_tensor("b", GRAFT_FLOAT, 1, bd);

	tm_input(mp, "x", GRAFT_FLOAT, 4, xd);
	tm_output(mp, "y", GRAFT_FLOAT, 4, yd);
	tm_float_data(wt, w, K * C);
	tm_float_data(bt, b, K);
	tm_initializer(mp, wt);
	tm_initializer(mp, bt);
	tm_init_floats(mp, "w2", 4, w2, 3, -0.5f, 0.5f);
	tm_node(mp, "Conv", "c", (const char *[]){"x", "w", "b", NULL}, (const char *[]){"a", NULL});
	tm_node(mp, "Relu", "r", (const char *[]){"a", NULL}, (const char *[]){"r", NULL});
	tm_node(mp, "Conv", "c2", (const char *[]){"r", "w2", NULL}, (const char *[]){"y", NULL});
	return tm_load(mp);
}

static void test_tiny_weight_channel(void **state)
{
	static float xs[N * C * H * W], want[N * K * H * W], got[N * K * H * W];
	struct graft_array x = samples(xs);
	float w[K * C], b[K] = {0.5f, -0.2f, 0.1f};
	struct graft_quant_info info;
	struct graft_err err = {0};
	(void)state;

	for (int i = 0; i < K * C; i++)
		w[i] = i < C ? 1e-9f * (float)(i + 1) : 0.3f * (float)(i % 5) - 0.6f;
	struct graft_model *f = given_weights(w, b), *m = given_weights(w, b);
	if (graft_quantize(m, &x, NULL, &info, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(info.raised, 1);
	/* r, channel 0, quantized: the bias survives (it is 0.5 everywhere) */
	struct graft_net *net;
	struct graft_array r;
	struct graft_net_opts no = {.no_fuse = 1};
	if (graft_net_new_opts(&net, m, &no, &err) || graft_net_run(net, &x, 1, &err) ||
	    graft_net_value(net, "r_dequantized", &r))
		fail_msg("no r: %s", err.msg);
	for (int n = 0; n < N; n++)
		for (int i = 0; i < H * W; i++)
			assert_true(fabsf(((const float *)r.data)[n * K * H * W + i] - 0.5f) < 0.01f);
	graft_net_free(net);
	run(f, &x, want);
	run(m, &x, got);
	assert_true(worst_share(want, got, N * K * H * W) < 0.03f);
	graft_model_free(m);
	graft_model_free(f);
}

/* The scale QuantizeLinear gives the value named x in m. */
static float scale_of(const struct graft_model *m, const char *x)
{
	return *(const float *)stored(m, find_node(m, NULL, x)->input[1]).data;
}

/*
 * --method entropy on a Gaussian with rare outliers 40 sigma out: the KL-divergence
 * range clips the outliers (minmax keeps them and spends its 256 levels on empty space),
 * yet keeps the bulk: beyond 3 sigma.  x -> Conv 1x1 (weight 1) -> a -> Conv 1x1 -> y;
 * a is x itself, calibrated (the graph's input is never clipped).
 */
static void test_entropy(void **state)
{
	enum { EN = 64, EH = 16, EW = 16 };
	static float xs[EN * EH * EW];
	int64_t xd[] = {-1, 1, EH, EW}, wd[] = {1, 1, 1, 1};
	struct graft_array x = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {EN, 1, EH, EW},
				.data = xs, .nbytes = sizeof(xs)};
	struct graft_model *m[2];
	unsigned seed = 5;
	(void)state;

	for (int i = 0; i < EN * EH * EW; i += 2) {     /* Box-Muller, sigma 1 */
		double u1, u2;
		seed = seed * 1103515245u + 12345u;
		u1 = ((seed >> 8) + 1.0) / 16777217.0;
		seed = seed * 1103515245u + 12345u;
		u2 = (seed >> 8) / 16777216.0;
		xs[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
		xs[i + 1] = (float)(sqrt(-2 * log(u1)) * sin(6.283185307179586 * u2));
	}
	for (int i = 0; i < 8; i++)
		xs[i * 4099 % (EN * EH * EW)] = i % 2 ? 40.0f : -40.0f;
	for (int k = 0; k < 2; k++) {
		Onnx__ModelProto *mp = tm_model(13);
		Onnx__TensorProto *wt = tm_tensor("w", GRAFT_FLOAT, 4, wd);
		tm_float_data(wt, (float[]){1.0f}, 1);
		tm_initializer(mp, wt);
		tm_input(mp, "x", GRAFT_FLOAT, 4, xd);
		tm_output(mp, "y", GRAFT_FLOAT, 4, xd);
		tm_node(mp, "Conv", "c", (const char *[]){"x", "w", NULL}, (const char *[]){"a", NULL});
		tm_node(mp, "Conv", "c2", (const char *[]){"a", "w", NULL}, (const char *[]){"y", NULL});
		m[k] = tm_load(mp);
		struct graft_quant_opts o = {.method = k ? GRAFT_CALIB_ENTROPY : GRAFT_CALIB_MINMAX,
					     .samples = EN};
		struct graft_quant_info info;
		struct graft_err err = {0};
		if (graft_quantize(m[k], &x, &o, &info, &err))
			fail_msg("%s", err.msg);
	}
	float minmax = scale_of(m[0], "a"), entropy = scale_of(m[1], "a");
	assert_true(fabsf(minmax - 80.0f / 255) < 1e-3f);
	assert_true(entropy * 255 < 20.0f);     /* the outliers clipped ... */
	assert_true(entropy * 255 > 6.0f);      /* ... not the bulk */
	assert_true(scale_of(m[1], "x") == scale_of(m[0], "x"));       /* the input: minmax */
	graft_model_free(m[0]);
	graft_model_free(m[1]);
}

/* Below opset 13 there is no per-channel axis: the opset is raised first. */
static void test_opset(void **state)
{
	static float xs[N * C * H * W];
	struct graft_array x = samples(xs);
	struct graft_model *m = conv_relu_conv(11);
	struct graft_quant_info info;
	struct graft_err err = {0};
	(void)state;

	assert_int_equal(graft_quantize(m, &x, NULL, &info, &err), 0);
	assert_int_equal(info.opset_from, 11);
	assert_int_equal(model_default_opset(m), 13);
	graft_model_free(m);
}

/* x [2, 5] -> Clip (attributes, opset 9) -> Softmax (axis 1) -> y, and an op given
 * (op NULL: none) after the Clip. */
static struct graft_model *opset9_model(const char *op, int softmax_axis)
{
	Onnx__ModelProto *mp = tm_model(9);
	int64_t d[] = {2, 5};

	tm_input(mp, "x", GRAFT_FLOAT, 2, d);
	tm_output(mp, "y", GRAFT_FLOAT, 2, d);
	Onnx__NodeProto *c = tm_node(mp, "Clip", "clip", (const char *[]){"x", NULL},
				     (const char *[]){op ? "c0" : "c", NULL});
	tm_attr_float(c, "min", -0.5f);
	tm_attr_float(c, "max", 0.7f);
	if (op)
		tm_node(mp, op, "odd", (const char *[]){"c0", NULL}, (const char *[]){"c", NULL});
	tm_attr_int(tm_node(mp, "Softmax", "sm", (const char *[]){"c", NULL},
			    (const char *[]){"y", NULL}), "axis", softmax_axis);
	return tm_load(mp);
}

static void run2(const struct graft_model *m, const float *x, float *y)
{
	struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 2, .dims = {2, 5},
				 .data = (void *)x, .nbytes = 10 * sizeof(float)};

	run_output(m, &in, y, 10);
}

/* Raising opset 9 to 13: Clip's bounds become inputs, a Softmax over the last axis
 * stays; the results are the same.  An op without a known upgrade, and a Softmax over
 * flattened axes, are refused by name and leave the model as it was. */
static void test_upgrade_opset(void **state)
{
	float x[10], a[10], b[10];
	struct graft_model *f = opset9_model(NULL, 1), *m = opset9_model(NULL, -1);
	struct graft_err err = {0};
	(void)state;

	for (int i = 0; i < 10; i++)
		x[i] = (float)i / 5 - 1;
	run2(f, x, a);
	assert_int_equal(graft_model_upgrade_opset(m, 13, &err), 0);
	assert_int_equal(model_default_opset(m), 13);
	const Onnx__NodeProto *clip = producer_of(m, "c");
	assert_int_equal(clip->n_input, 3);
	assert_int_equal(clip->n_attribute, 0);
	run2(m, x, b);
	for (int i = 0; i < 10; i++)
		assert_true(a[i] == b[i]);
	graft_model_free(m);
	m = opset9_model("Upsample", 1);
	assert_int_equal(graft_model_upgrade_opset(m, 13, &err), GRAFT_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "'odd' (Upsample)"));
	assert_int_equal(model_default_opset(m), 9);
	graft_model_free(m);
	m = opset9_model(NULL, 0);      /* axis 0 of 2: flattens; not the same at 13 */
	assert_int_equal(graft_model_upgrade_opset(m, 13, &err), GRAFT_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "changes at opset 13"));
	assert_int_equal(producer_of(m, "c")->n_attribute, 2);
	graft_model_free(m);
	graft_model_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_asymmetric),
		cmocka_unit_test(test_symmetric),
		cmocka_unit_test(test_quantize_model),
		cmocka_unit_test(test_per_tensor_and_exclude),
		cmocka_unit_test(test_percentile),
		cmocka_unit_test(test_residual_add),
		cmocka_unit_test(test_tiny_weight_channel),
		cmocka_unit_test(test_entropy),
		cmocka_unit_test(test_opset),
		cmocka_unit_test(test_upgrade_opset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
