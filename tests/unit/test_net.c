/*
 * test_net.c: the executor's planning: constant folding of the shape chains exporters
 * emit, plan reuse for same shapes and replanning for new ones, input checks, the
 * error for an op graft does not run, and the memory a plan needs (graft_net_estimate).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "testmodel.h"

/*
 * x (N,2,3) -> Relu -> r;  Shape(r) -> Gather(0) -> Unsqueeze -> Concat(with [-1]) ->
 * Reshape(r, that) -> y (N,6): the chain torch emits for x.view(x.size(0), -1).
 */
static Onnx__ModelProto *flatten_chain(void)
{
	Onnx__ModelProto *m = tm_model(13);
	int64_t xd[] = {-1, 2, 3}, yd[] = {-1, 6}, one[] = {1}, zero = 0, minus1 = -1;
	Onnx__TensorProto *t;

	tm_input(m, "x", 1, 3, xd);
	tm_output(m, "y", 1, 2, yd);
	t = tm_tensor("idx0", 7, 0, NULL); tm_int64_data(t, &zero, 1); tm_initializer(m, t);
	t = tm_tensor("axes0", 7, 1, one); tm_int64_data(t, &zero, 1); tm_initializer(m, t);
	t = tm_tensor("rest", 7, 1, one); tm_int64_data(t, &minus1, 1); tm_initializer(m, t);
	tm_node(m, "Relu", "relu", (const char *[]){"x", NULL}, (const char *[]){"r", NULL});
	tm_node(m, "Shape", "shape", (const char *[]){"r", NULL}, (const char *[]){"s", NULL});
	tm_node(m, "Gather", "gather", (const char *[]){"s", "idx0", NULL},
		(const char *[]){"n", NULL});
	tm_node(m, "Unsqueeze", "unsq", (const char *[]){"n", "axes0", NULL},
		(const char *[]){"n1", NULL});
	Onnx__NodeProto *c = tm_node(m, "Concat", "cat", (const char *[]){"n1", "rest", NULL},
				     (const char *[]){"shape2", NULL});
	tm_attr_int(c, "axis", 0);
	tm_node(m, "Reshape", "reshape", (const char *[]){"r", "shape2", NULL},
		(const char *[]){"y", NULL});
	return m;
}

static void make_x(struct graft_array *a, int64_t n, float *buf)
{
	memset(a, 0, sizeof(*a));
	a->dtype = GRAFT_FLOAT;
	a->rank = 3;
	a->dims[0] = n;
	a->dims[1] = 2;
	a->dims[2] = 3;
	a->data = buf;
	a->nbytes = (size_t)n * 6 * sizeof(float);
	for (int64_t i = 0; i < n * 6; i++)
		buf[i] = (float)(i % 2 ? i : -i);
}

static void test_shape_chain_is_folded(void **state)
{
	struct graft_model *m = tm_load(flatten_chain());
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_array x, y;
	float buf[5 * 6];
	size_t run, folded;
	(void)state;

	if (graft_net_new(&net, m, &err))
		fail_msg("%s", err.msg);
	make_x(&x, 4, buf);
	if (graft_net_run(net, &x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_stats(net, &run, &folded);
	assert_int_equal(folded, 4);    /* Shape, Gather, Unsqueeze, Concat */
	assert_int_equal(run, 2);       /* Relu and Reshape depend on x's data */
	graft_net_output(net, 0, &y);
	assert_int_equal(y.rank, 2);
	assert_int_equal(y.dims[0], 4);
	assert_int_equal(y.dims[1], 6);
	for (int i = 0; i < 24; i++)
		assert_true(((float *)y.data)[i] == (i % 2 ? (float)i : 0.0f));

	/* Same shapes: the plan is kept (outputs stay where they were). */
	void *before = y.data;
	make_x(&x, 4, buf);
	assert_int_equal(graft_net_run(net, &x, 1, &err), 0);
	graft_net_output(net, 0, &y);
	assert_ptr_equal(y.data, before);

	/* A new batch size replans: the folded shape follows it. */
	make_x(&x, 5, buf);
	if (graft_net_run(net, &x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	assert_int_equal(y.dims[0], 5);
	assert_int_equal(y.dims[1], 6);
	graft_net_free(net);
	graft_model_free(m);
}

static void test_input_checks(void **state)
{
	struct graft_model *m = tm_load(flatten_chain());
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_array x;
	float buf[12];
	(void)state;

	assert_int_equal(graft_net_new(&net, m, &err), 0);
	make_x(&x, 2, buf);
	x.dims[1] = 3;                  /* declared 2 */
	assert_int_equal(graft_net_run(net, &x, 1, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "input 'x': dim 1 must be 2"));
	make_x(&x, 2, buf);
	x.dtype = GRAFT_INT32;
	assert_int_equal(graft_net_run(net, &x, 1, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "must be float"));
	assert_int_equal(graft_net_run(net, &x, 0, &err), GRAFT_EINVAL);
	graft_net_free(net);
	graft_model_free(m);
}

static void test_unsupported_op_named(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t d[] = {2};
	struct graft_net *net;
	struct graft_err err = {0};
	(void)state;

	tm_input(mp, "x", 1, 1, d);
	tm_output(mp, "y", 1, 1, d);
	Onnx__NodeProto *n = tm_node(mp, "Foo", "x", (const char *[]){"x", NULL},
				     (const char *[]){"y", NULL});
	n->domain = strdup("bar");
	struct graft_model *m = tm_load(mp);
	assert_int_equal(graft_net_new(&net, m, &err), GRAFT_EUNSUPPORTED);
	assert_string_equal(err.msg, "node 'x' (op Foo, domain bar) is not supported");
	graft_model_free(m);
}

/* x -> Conv(W, B) -> BatchNormalization -> Relu -> y, all weights constant: one Conv
 * node runs, with the BatchNormalization folded into its weights and the Relu fused;
 * the result equals the unfused arithmetic. */
static void test_conv_bn_relu_fused(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {1, 1, 2, 2}, wd[] = {2, 1, 1, 1}, c2[] = {2}, yd[] = {1, 2, 2, 2};
	float w[] = {1, -2}, b[] = {0.5f, 0.25f}, scale[] = {2, 3}, beta[] = {1, -1},
	      mean[] = {0.5f, 1}, var[] = {4, 9}, x[] = {1, -1, 2, 0};
	Onnx__TensorProto *t;
	(void)state;

	tm_input(mp, "x", 1, 4, xd);
	tm_output(mp, "y", 1, 4, yd);
	t = tm_tensor("W", 1, 4, wd); tm_raw(t, w, sizeof(w)); tm_initializer(mp, t);
	t = tm_tensor("B", 1, 1, c2); tm_raw(t, b, sizeof(b)); tm_initializer(mp, t);
	t = tm_tensor("s", 1, 1, c2); tm_raw(t, scale, sizeof(scale)); tm_initializer(mp, t);
	t = tm_tensor("beta", 1, 1, c2); tm_raw(t, beta, sizeof(beta)); tm_initializer(mp, t);
	t = tm_tensor("m", 1, 1, c2); tm_raw(t, mean, sizeof(mean)); tm_initializer(mp, t);
	t = tm_tensor("v", 1, 1, c2); tm_raw(t, var, sizeof(var)); tm_initializer(mp, t);
	tm_node(mp, "Conv", "conv", (const char *[]){"x", "W", "B", NULL},
		(const char *[]){"c", NULL});
	Onnx__NodeProto *bn = tm_node(mp, "BatchNormalization", "bn",
				      (const char *[]){"c", "s", "beta", "m", "v", NULL},
				      (const char *[]){"n", NULL});
	(void)bn;
	tm_node(mp, "Relu", "relu", (const char *[]){"n", NULL}, (const char *[]){"y", NULL});
	struct graft_model *m = tm_load(mp);
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {1, 1, 2, 2},
				 .data = x, .nbytes = sizeof(x)}, y;
	size_t run, folded, fused;
	uint64_t prims, reorders;

	if (graft_net_new(&net, m, &err) || graft_net_run(net, &in, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_stats(net, &run, &folded);
	graft_net_counters(net, &prims, &reorders, &fused);
	assert_int_equal(fused, 2);
	assert_int_equal(run, 1);
	graft_net_output(net, 0, &y);
	for (int c = 0; c < 2; c++)
		for (int i = 0; i < 4; i++) {
			double conv = x[i] * w[c] + b[c];
			double want = (conv - mean[c]) / sqrt(var[c] + 1e-5) * scale[c] + beta[c];
			want = want > 0 ? want : 0;
			assert_true(fabs(((float *)y.data)[c * 4 + i] - want) < 1e-5);
		}
	/* The primitive is made once, then reused for runs of the same shapes. */
	uint64_t before = prims;
	assert_int_equal(graft_net_run(net, &in, 1, &err), 0);
	graft_net_counters(net, &prims, &reorders, &fused);
	assert_true(before >= 1);
	assert_int_equal(prims, before);
	graft_net_free(net);
	graft_model_free(m);
}

/* Naive 3x3, pad 1, stride 1 convolution of a (C,H,W) image with (C,C,3,3) weights. */
static void conv3x3(const float *x, const float *w, float *y, int c, int h, int wd, int relu)
{
	for (int o = 0; o < c; o++)
		for (int i = 0; i < h; i++)
			for (int j = 0; j < wd; j++) {
				double acc = 0;
				for (int k = 0; k < c; k++)
					for (int di = -1; di <= 1; di++)
						for (int dj = -1; dj <= 1; dj++) {
							int ii = i + di, jj = j + dj;
							if (ii < 0 || jj < 0 || ii >= h || jj >= wd)
								continue;
							acc += x[(k * h + ii) * wd + jj] *
							       w[((o * c + k) * 3 + di + 1) * 3 + dj + 1];
						}
				y[(o * h + i) * wd + j] = (float)(relu && acc < 0 ? 0 : acc);
			}
}

/* Gives node c the ints attribute name of count values, all v. */
static void attr_ints_n(Onnx__NodeProto *c, const char *name, int count, int64_t v)
{
	Onnx__AttributeProto *a = malloc(sizeof(*a));
	onnx__attribute_proto__init(a);
	a->name = strdup(name);
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
	a->n_ints = (size_t)count;
	a->ints = calloc((size_t)count, sizeof(int64_t));
	for (int k = 0; k < count; k++)
		a->ints[k] = v;
	c->attribute = realloc(c->attribute, sizeof(*c->attribute) * (c->n_attribute + 1));
	c->attribute[c->n_attribute++] = a;
}

static void attr_ints4(Onnx__NodeProto *c, const char *name, int64_t v)
{
	attr_ints_n(c, name, 4, v);
}

static void fill(float *v, int n, int mul, int mod)
{
	for (int i = 0; i < n; i++)
		v[i] = (float)((i * mul % mod) - mod / 2) / (float)(2 * mod);
}

static void assert_close(const float *got, const float *want, int n)
{
	for (int i = 0; i < n; i++)
		if (fabsf(got[i] - want[i]) > 1e-4f)
			fail_msg("y[%d] = %g, expected %g", i, got[i], want[i]);
}

/* m's net, planned by a run on in, and the reorders a second run does; *fused: the nodes
 * fused into others. */
static struct graft_net *planned_net(const struct graft_model *m, const struct graft_array *in,
				     uint64_t *reorders, size_t *fused)
{
	struct graft_net *net;
	struct graft_err err = {0};
	uint64_t prims, r1;

	if (graft_net_new(&net, m, &err) || graft_net_run(net, in, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_counters(net, &prims, &r1, fused);
	assert_int_equal(graft_net_run(net, in, 1, &err), 0);
	graft_net_counters(net, &prims, reorders, fused);
	*reorders -= r1;
	return net;
}

/* x -> Conv -> Relu -> Conv -> y: the value between the two Convs stays in oneDNN's
 * blocked layout, so a run reorders only at the ends (x in, y out), not four times. */
static void test_blocked_layout_between_convs(void **state)
{
	enum { C = 16, H = 5, W = 5 };
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {1, C, H, W}, wd[] = {C, C, 3, 3};
	static float w1[C * C * 9], w2[C * C * 9], x[C * H * W], mid[C * H * W], want[C * H * W];
	Onnx__TensorProto *t;
	(void)state;

	for (int i = 0; i < C * C * 9; i++) {
		w1[i] = (float)((i * 37 % 19) - 9) / 40;
		w2[i] = (float)((i * 53 % 23) - 11) / 50;
	}
	for (int i = 0; i < C * H * W; i++)
		x[i] = (float)((i * 29 % 13) - 6) / 6;
	tm_input(mp, "x", 1, 4, xd);
	tm_output(mp, "y", 1, 4, xd);
	t = tm_tensor("w1", 1, 4, wd); tm_raw(t, w1, sizeof(w1)); tm_initializer(mp, t);
	t = tm_tensor("w2", 1, 4, wd); tm_raw(t, w2, sizeof(w2)); tm_initializer(mp, t);
	Onnx__NodeProto *c1 = tm_node(mp, "Conv", "c1", (const char *[]){"x", "w1", NULL},
				      (const char *[]){"a", NULL});
	tm_node(mp, "Relu", "r", (const char *[]){"a", NULL}, (const char *[]){"b", NULL});
	Onnx__NodeProto *c2 = tm_node(mp, "Conv", "c2", (const char *[]){"b", "w2", NULL},
				      (const char *[]){"y", NULL});
	attr_ints4(c1, "pads", 1);
	attr_ints4(c2, "pads", 1);
	struct graft_model *m = tm_load(mp);
	struct graft_net *net;
	struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {1, C, H, W},
				 .data = x, .nbytes = sizeof(x)}, y;
	uint64_t reorders;
	size_t fused;

	net = planned_net(m, &in, &reorders, &fused);
	assert_int_equal(fused, 1);                     /* the Relu */
	assert_int_equal(reorders, 2);                   /* x in and y out, nothing between */
	conv3x3(x, w1, mid, C, H, W, 1);
	conv3x3(mid, w2, want, C, H, W, 0);
	graft_net_output(net, 0, &y);
	for (int i = 0; i < C * H * W; i++)
		if (fabsf(((float *)y.data)[i] - want[i]) > 1e-4f)
			fail_msg("y[%d] = %g, expected %g", i, ((float *)y.data)[i], want[i]);
	graft_net_free(net);
	graft_model_free(m);
}

/*
 * A ResNet basic block behind a stem: x -> Conv -> Relu -> s; s -> Conv -> Relu -> Conv
 * -> Add(s) -> Relu -> y.  Every value between the Convs stays blocked, the residual Add
 * runs on the blocked buffers of both its inputs, and a run reorders twice: x into the
 * stem's layout, and the Add's result to plain for the final Relu, whose output y is the
 * graph's (plain) output.
 */
static void test_resnet_block_layouts(void **state)
{
	enum { C = 16, H = 6, W = 6, N = C * H * W };
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {1, C, H, W}, wd[] = {C, C, 3, 3};
	static float w0[C * C * 9], w1[C * C * 9], w2[C * C * 9], x[N];
	static float st[N], a[N], b[N], want[N];
	Onnx__TensorProto *t;
	(void)state;

	fill(w0, C * C * 9, 37, 19);
	fill(w1, C * C * 9, 53, 23);
	fill(w2, C * C * 9, 41, 29);
	fill(x, N, 29, 13);
	tm_input(mp, "x", 1, 4, xd);
	tm_output(mp, "y", 1, 4, xd);
	t = tm_tensor("w0", 1, 4, wd); tm_raw(t, w0, sizeof(w0)); tm_initializer(mp, t);
	t = tm_tensor("w1", 1, 4, wd); tm_raw(t, w1, sizeof(w1)); tm_initializer(mp, t);
	t = tm_tensor("w2", 1, 4, wd); tm_raw(t, w2, sizeof(w2)); tm_initializer(mp, t);
	attr_ints4(tm_node(mp, "Conv", "stem", (const char *[]){"x", "w0", NULL},
			   (const char *[]){"s0", NULL}), "pads", 1);
	tm_node(mp, "Relu", "r0", (const char *[]){"s0", NULL}, (const char *[]){"s", NULL});
	attr_ints4(tm_node(mp, "Conv", "c1", (const char *[]){"s", "w1", NULL},
			   (const char *[]){"a0", NULL}), "pads", 1);
	tm_node(mp, "Relu", "r1", (const char *[]){"a0", NULL}, (const char *[]){"a", NULL});
	attr_ints4(tm_node(mp, "Conv", "c2", (const char *[]){"a", "w2", NULL},
			   (const char *[]){"b", NULL}), "pads", 1);
	tm_node(mp, "Add", "add", (const char *[]){"b", "s", NULL}, (const char *[]){"sum", NULL});
	tm_node(mp, "Relu", "r2", (const char *[]){"sum", NULL}, (const char *[]){"y", NULL});
	struct graft_model *m = tm_load(mp);
	struct graft_net *net;
	struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {1, C, H, W},
				 .data = x, .nbytes = sizeof(x)}, y;
	uint64_t reorders;
	size_t fused, run, folded;

	net = planned_net(m, &in, &reorders, &fused);
	graft_net_stats(net, &run, &folded);
	assert_int_equal(fused, 2);                     /* r0 and r1 */
	assert_int_equal(run, 5);                       /* stem, c1, c2, add, r2 */
	assert_int_equal(reorders, 2);
	conv3x3(x, w0, st, C, H, W, 1);
	conv3x3(st, w1, a, C, H, W, 1);
	conv3x3(a, w2, b, C, H, W, 0);
	for (int i = 0; i < N; i++)
		want[i] = b[i] + st[i] > 0 ? b[i] + st[i] : 0;
	graft_net_output(net, 0, &y);
	assert_close(y.data, want, N);
	graft_net_free(net);
	graft_model_free(m);
}

/* A float initializer name of dims from fill(mul, mod), its values also into v. */
static void init_filled(Onnx__ModelProto *mp, const char *name, const int64_t *dims, float *v,
			int mul, int mod)
{
	int n = (int)(dims[0] * dims[1] * dims[2] * dims[3]);
	Onnx__TensorProto *t = tm_tensor(name, 1, 4, dims);

	fill(v, n, mul, mod);
	tm_raw(t, v, (size_t)n * sizeof(float));
	tm_initializer(mp, t);
}

/*
 * Squeeze-and-excitation as torchvision exports it (EfficientNet, MobileNetV3), 24
 * channels (padded to the block in nChw16c) and 2 images: x -> Conv 3x3 -> a;
 * GlobalAveragePool(a) -> Conv 1x1 -> Relu -> Conv 1x1 -> Sigmoid -> s; Mul(s, a) (or
 * Mul(a, s)) -> Conv 1x1 -> y.  a stays blocked: the pool and the Mul read it there
 * (their blocked kernels), and the Mul's result stays blocked for the last Conv, so a
 * run reorders no more than a plain SE-free chain would: x in and y out, and the
 * SE convolutions' 1x1 values.  The result is the naive computation's.
 */
static void check_squeeze_excitation(int scale_first)
{
	enum { B = 2, C = 24, R = 8, H = 5, W = 5, P = C * H * W };
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {B, C, H, W}, w0d[] = {C, C, 3, 3}, wrd[] = {R, C, 1, 1},
		wed[] = {C, R, 1, 1}, wod[] = {C, C, 1, 1};
	static float w0[C * C * 9], wr[R * C], we[C * R], wo[C * C], x[B * P], a[B * P],
		want[B * P];
	fill(x, B * P, 29, 13);
	tm_input(mp, "x", 1, 4, xd);
	tm_output(mp, "y", 1, 4, xd);
	init_filled(mp, "w0", w0d, w0, 37, 19);
	init_filled(mp, "wr", wrd, wr, 53, 23);
	init_filled(mp, "we", wed, we, 41, 29);
	init_filled(mp, "wo", wod, wo, 31, 17);
	attr_ints4(tm_node(mp, "Conv", "stem", (const char *[]){"x", "w0", NULL},
			   (const char *[]){"a", NULL}), "pads", 1);
	tm_node(mp, "GlobalAveragePool", "pool", (const char *[]){"a", NULL},
		(const char *[]){"g", NULL});
	tm_node(mp, "Conv", "reduce", (const char *[]){"g", "wr", NULL},
		(const char *[]){"r0", NULL});
	tm_node(mp, "Relu", "relu", (const char *[]){"r0", NULL}, (const char *[]){"r", NULL});
	tm_node(mp, "Conv", "expand", (const char *[]){"r", "we", NULL},
		(const char *[]){"e", NULL});
	tm_node(mp, "Sigmoid", "gate", (const char *[]){"e", NULL}, (const char *[]){"s", NULL});
	tm_node(mp, "Mul", "scale", scale_first ? (const char *[]){"s", "a", NULL}
						: (const char *[]){"a", "s", NULL},
		(const char *[]){"m", NULL});
	tm_node(mp, "Conv", "out", (const char *[]){"m", "wo", NULL}, (const char *[]){"y", NULL});
	struct graft_model *m = tm_load(mp);
	struct graft_net *net;
	struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {B, C, H, W},
				 .data = x, .nbytes = sizeof(x)}, y;
	uint64_t reorders;
	size_t fused;

	net = planned_net(m, &in, &reorders, &fused);
	assert_int_equal(fused, 2);                     /* the Relu and the Sigmoid */
	/* x in, y out, and the 1x1 values of the excitation (g in, s out) at most */
	assert_true(reorders <= 4);
	for (int b = 0; b < B; b++) {
		double g[C], r[R], s[C];
		conv3x3(x + b * P, w0, a + b * P, C, H, W, 0);
		for (int c = 0; c < C; c++) {
			g[c] = 0;
			for (int i = 0; i < H * W; i++)
				g[c] += a[b * P + c * H * W + i] / (H * W);
		}
		for (int o = 0; o < R; o++) {
			r[o] = 0;
			for (int c = 0; c < C; c++)
				r[o] += wr[o * C + c] * g[c];
			r[o] = r[o] > 0 ? r[o] : 0;
		}
		for (int c = 0; c < C; c++) {
			double e = 0;
			for (int o = 0; o < R; o++)
				e += we[c * R + o] * r[o];
			s[c] = 1 / (1 + exp(-e));
		}
		for (int o = 0; o < C; o++)
			for (int i = 0; i < H * W; i++) {
				double acc = 0;
				for (int c = 0; c < C; c++)
					acc += wo[o * C + c] * s[c] * a[b * P + c * H * W + i];
				want[b * P + o * H * W + i] = (float)acc;
			}
	}
	graft_net_output(net, 0, &y);
	assert_close(y.data, want, B * P);
	graft_net_free(net);
	graft_model_free(m);
}

static void test_squeeze_excitation_blocked(void **state)
{
	(void)state;
	check_squeeze_excitation(1);
	check_squeeze_excitation(0);
}

/* x -> Conv 1x1 (C -> E) -> Relu -> depthwise Conv 3x3 (stride S, pad 1) -> Relu -> y,
 * computed naively. */
static void pointwise_depthwise(const float *x, const float *w1, const float *b1,
				const float *wd, const float *bd, float *y, int c, int e, int h,
				int w, int stride)
{
	int ho = (h - 1) / stride + 1, wo = (w - 1) / stride + 1;
	float *mid = calloc((size_t)(e * h * w), sizeof(float));

	for (int o = 0; o < e; o++)
		for (int p = 0; p < h * w; p++) {
			double acc = b1[o];
			for (int k = 0; k < c; k++)
				acc += x[k * h * w + p] * w1[o * c + k];
			mid[o * h * w + p] = (float)(acc > 0 ? acc : 0);
		}
	for (int o = 0; o < e; o++)
		for (int i = 0; i < ho; i++)
			for (int j = 0; j < wo; j++) {
				double acc = bd[o];
				for (int di = 0; di < 3; di++)
					for (int dj = 0; dj < 3; dj++) {
						int ii = i * stride + di - 1, jj = j * stride + dj - 1;
						if (ii >= 0 && jj >= 0 && ii < h && jj < w)
							acc += mid[(o * h + ii) * w + jj] *
							       wd[o * 9 + di * 3 + dj];
					}
				y[(o * ho + i) * wo + j] = (float)(acc > 0 ? acc : 0);
			}
	free(mid);
}

/* The inverted-residual pair of MobileNet runs as one node (the 1x1 Conv with the
 * depthwise Conv as a post-op) at strides 1 and 2, and computes what the two would. */
static void test_depthwise_fused(void **state)
{
	enum { C = 16, E = 32, H = 7, W = 7 };
	static float x[C * H * W], w1[E * C], b1[E], wd[E * 9], bd[E], y0[E * H * W];
	(void)state;

	fill(x, C * H * W, 29, 13);
	fill(w1, E * C, 37, 19);
	fill(b1, E, 7, 5);
	fill(wd, E * 9, 53, 23);
	fill(bd, E, 11, 7);
	for (int stride = 1; stride <= 2; stride++) {
		Onnx__ModelProto *mp = tm_model(13);
		int ho = (H - 1) / stride + 1, wo = (W - 1) / stride + 1;
		int64_t xd[] = {1, C, H, W}, yd[] = {1, E, ho, wo}, w1d[] = {E, C, 1, 1};
		int64_t wdd[] = {E, 1, 3, 3}, bdim[] = {E};
		Onnx__TensorProto *t;

		tm_input(mp, "x", 1, 4, xd);
		tm_output(mp, "y", 1, 4, yd);
		t = tm_tensor("w1", 1, 4, w1d); tm_raw(t, w1, sizeof(w1)); tm_initializer(mp, t);
		t = tm_tensor("b1", 1, 1, bdim); tm_raw(t, b1, sizeof(b1)); tm_initializer(mp, t);
		t = tm_tensor("wd", 1, 4, wdd); tm_raw(t, wd, sizeof(wd)); tm_initializer(mp, t);
		t = tm_tensor("bd", 1, 1, bdim); tm_raw(t, bd, sizeof(bd)); tm_initializer(mp, t);
		tm_node(mp, "Conv", "pw", (const char *[]){"x", "w1", "b1", NULL},
			(const char *[]){"p", NULL});
		tm_node(mp, "Relu", "r1", (const char *[]){"p", NULL}, (const char *[]){"q", NULL});
		Onnx__NodeProto *dw = tm_node(mp, "Conv", "dw",
					      (const char *[]){"q", "wd", "bd", NULL},
					      (const char *[]){"d", NULL});
		tm_attr_int(dw, "group", E);
		attr_ints4(dw, "pads", 1);
		attr_ints_n(dw, "strides", 2, stride);
		tm_node(mp, "Relu", "r2", (const char *[]){"d", NULL}, (const char *[]){"y", NULL});
		struct graft_model *m = tm_load(mp);
		struct graft_net *net;
		struct graft_err err = {0};
		struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {1, C, H, W},
					 .data = x, .nbytes = sizeof(x)}, y;
		uint64_t prims, reorders;
		size_t fused, run, folded;

		if (graft_net_new(&net, m, &err) || graft_net_run(net, &in, 1, &err))
			fail_msg("stride %d: %s", stride, err.msg);
		graft_net_counters(net, &prims, &reorders, &fused);
		graft_net_stats(net, &run, &folded);
		assert_int_equal(fused, 3);             /* both Relus and the 1x1 Conv */
		assert_int_equal(run, 1);
		pointwise_depthwise(x, w1, b1, wd, bd, y0, C, E, H, W, stride);
		graft_net_output(net, 0, &y);
		assert_int_equal(y.dims[2], ho);
		assert_close(y.data, y0, E * ho * wo);
		graft_net_free(net);
		graft_model_free(m);
	}
}

/* The gated activations exporters write, x = Conv(in); y = Mul(x, gate(x)):
 * SiLU (gate Sigmoid), HardSwish before opset 14 (gate HardSigmoid, alpha 1/6), and a
 * squeeze-and-excitation-like gate of another value that must stay two nodes. */
enum gate { GATE_SIGMOID, GATE_HARDSIGMOID, GATE_HARDSIGMOID_02, GATE_OTHER };

static double gated(enum gate g, double x)
{
	switch (g) {
	case GATE_SIGMOID:
		return x / (1 + exp(-x));
	case GATE_HARDSIGMOID:
		return x * fmax(0, fmin(1, x / 6 + 0.5));
	case GATE_HARDSIGMOID_02:
		return x * fmax(0, fmin(1, 0.2 * x + 0.5));
	default:
		return x * (1 / (1 + exp(-2 * x)));     /* gate = Sigmoid(2 x), another value */
	}
}

/* Runs in (1, 2, 2, 2) -> 1x1 Conv (W, B) -> x -> Mul(x, gate) (gate_first: Mul(gate,
 * x)) -> y; checks y against the arithmetic and the number of nodes fused. */
static void check_gated(enum gate g, int gate_first, size_t want_fused)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {1, 2, 2, 2}, wd[] = {2, 2, 1, 1}, c2[] = {2};
	float w[] = {1.5f, -2, 0.5f, 3}, b[] = {0.5f, -0.25f},
	      in[] = {1, -1, 2, 0, -3, 0.5f, 4, -6}, two = 2;
	Onnx__TensorProto *t;

	tm_input(mp, "in", 1, 4, xd);
	tm_output(mp, "y", 1, 4, xd);
	t = tm_tensor("W", 1, 4, wd); tm_raw(t, w, sizeof(w)); tm_initializer(mp, t);
	t = tm_tensor("B", 1, 1, c2); tm_raw(t, b, sizeof(b)); tm_initializer(mp, t);
	t = tm_tensor("two", 1, 0, NULL); tm_raw(t, &two, sizeof(two)); tm_initializer(mp, t);
	tm_node(mp, "Conv", "conv", (const char *[]){"in", "W", "B", NULL},
		(const char *[]){"x", NULL});
	const char *gate_in = "x";
	if (g == GATE_OTHER) {
		tm_node(mp, "Mul", "double", (const char *[]){"x", "two", NULL},
			(const char *[]){"x2", NULL});
		gate_in = "x2";
	}
	Onnx__NodeProto *gn = tm_node(mp, g == GATE_SIGMOID || g == GATE_OTHER ? "Sigmoid" :
				      "HardSigmoid", "gate", (const char *[]){gate_in, NULL},
				      (const char *[]){"s", NULL});
	if (g == GATE_HARDSIGMOID)
		tm_attr_float(gn, "alpha", 1.0f / 6);
	tm_node(mp, "Mul", "mul", gate_first ? (const char *[]){"s", "x", NULL} :
		(const char *[]){"x", "s", NULL}, (const char *[]){"y", NULL});
	struct graft_model *m = tm_load(mp);
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_array x = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {1, 2, 2, 2},
				.data = in, .nbytes = sizeof(in)}, y;
	uint64_t prims, reorders;
	size_t fused;

	if (graft_net_new(&net, m, &err) || graft_net_run(net, &x, 1, &err))
		fail_msg("gate %d: %s", (int)g, err.msg);
	graft_net_counters(net, &prims, &reorders, &fused);
	assert_int_equal(fused, want_fused);
	graft_net_output(net, 0, &y);
	for (int c = 0; c < 2; c++)
		for (int i = 0; i < 4; i++) {
			double conv = w[c * 2] * in[i] + w[c * 2 + 1] * in[4 + i] + b[c];
			double got = ((float *)y.data)[c * 4 + i], want = gated(g, conv);
			if (fabs(got - want) > 1e-5 * fmax(1, fabs(want)))
				fail_msg("gate %d: y[%d] = %g, expected %g", (int)g, c * 4 + i, got, want);
		}
	graft_net_free(net);
	graft_model_free(m);
}

static void test_gated_activations_fused(void **state)
{
	(void)state;
	check_gated(GATE_SIGMOID, 0, 2);        /* SiLU: the Sigmoid and the Mul */
	check_gated(GATE_SIGMOID, 1, 2);
	check_gated(GATE_HARDSIGMOID, 1, 2);    /* HardSwish */
	/* HardSigmoid's default alpha (0.2) is not HardSwish: the gate fuses into nothing
	 * (its input has two readers) and the Mul runs */
	check_gated(GATE_HARDSIGMOID_02, 0, 0);
	/* a gate of another value (squeeze-and-excitation): the Sigmoid is the only reader of
	 * the doubling Mul and fuses into nothing (Mul is no Conv), the result is as written */
	check_gated(GATE_OTHER, 0, 0);
}

/* x (N, 4) -> Gemm(W (8, 4), B (8), transB) -> y (N, 8): one Linear layer. */
static struct graft_model *linear_model(void)
{
	Onnx__ModelProto *m = tm_model(13);
	int64_t xd[] = {-1, 4}, yd[] = {-1, 8}, wd[] = {8, 4}, bd[] = {8};
	float w[32], b[8];
	Onnx__TensorProto *t;

	for (int i = 0; i < 32; i++)
		w[i] = (float)(i % 5) - 2.0f;
	for (int i = 0; i < 8; i++)
		b[i] = 0.5f * (float)i;
	tm_input(m, "x", 1, 2, xd);
	tm_output(m, "y", 1, 2, yd);
	t = tm_tensor("W", 1, 2, wd); tm_raw(t, w, sizeof(w)); tm_initializer(m, t);
	t = tm_tensor("B", 1, 1, bd); tm_raw(t, b, sizeof(b)); tm_initializer(m, t);
	Onnx__NodeProto *g = tm_node(m, "Gemm", "fc", (const char *[]){"x", "W", "B", NULL},
				     (const char *[]){"y", NULL});
	tm_attr_int(g, "transB", 1);
	return tm_load(m);
}

/* graft_net_estimate counts the plan (weights read, the net's copies, activations) for
 * the batch asked for, allocates none of it, and leaves the net to run as before. */
static void test_estimate_counts_the_plan(void **state)
{
	struct graft_model *m = linear_model();
	struct graft_net *net;
	struct graft_net_memory mem;
	struct graft_err err = {0};
	struct graft_array x = {0}, y;
	float xb[3 * 4];
	int rank;
	int64_t dims[8];
	(void)state;

	assert_int_equal(graft_net_new(&net, m, &err), 0);
	x.dtype = GRAFT_FLOAT;
	x.rank = 2;
	x.dims[0] = 3;
	x.dims[1] = 4;
	x.nbytes = sizeof(xb);
	x.data = NULL;          /* shapes only: no input shapes the plan */
	if (graft_net_estimate(net, &x, 1, &mem, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(mem.weights, (8 * 4 + 8) * sizeof(float));     /* W and B */
	assert_int_equal(mem.copies, 8 * 4 * sizeof(float));    /* W packed for the matmul */
	assert_int_equal(mem.activations, (3 * 4 + 3 * 8) * sizeof(float));    /* x and y */
	assert_int_equal(mem.gradients, 0);
	assert_int_equal(mem.total, mem.weights + mem.copies + mem.activations);
	/* Nothing is left planned. */
	assert_int_equal(graft_net_value_shape(net, "y", &rank, dims), -1);

	/* Activations follow the batch. */
	x.dims[0] = 6;
	x.nbytes = 6 * 4 * sizeof(float);
	assert_int_equal(graft_net_estimate(net, &x, 1, &mem, &err), 0);
	assert_int_equal(mem.activations, (6 * 4 + 6 * 8) * sizeof(float));

	/* The net still runs, and right. */
	for (int i = 0; i < 12; i++)
		xb[i] = (float)i / 4.0f;
	x.dims[0] = 3;
	x.nbytes = sizeof(xb);
	x.data = xb;
	if (graft_net_run(net, &x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	assert_int_equal(y.dims[0], 3);
	for (int r = 0; r < 3; r++)
		for (int o = 0; o < 8; o++) {
			float want = 0.5f * (float)o;
			for (int k = 0; k < 4; k++)
				want += xb[r * 4 + k] * ((float)((o * 4 + k) % 5) - 2.0f);
			assert_true(fabsf(((float *)y.data)[r * 8 + o] - want) < 1e-5f);
		}
	/* Wrong inputs are refused as graft_net_run refuses them. */
	x.dims[1] = 5;
	assert_int_equal(graft_net_estimate(net, &x, 1, &mem, &err), GRAFT_EINVAL);
	assert_int_equal(graft_net_estimate(net, &x, 0, &mem, &err), GRAFT_EINVAL);
	graft_net_free(net);
	graft_model_free(m);
}

/* A shape chain: values folded at plan time are the net's copies, and the folding
 * runs (Reshape's shape is known) without any activation buffer being made. */
static void test_estimate_folds_shapes(void **state)
{
	struct graft_model *m = tm_load(flatten_chain());
	struct graft_net *net;
	struct graft_net_memory mem;
	struct graft_err err = {0};
	struct graft_array x, y;
	float buf[4 * 6];
	(void)state;

	assert_int_equal(graft_net_new(&net, m, &err), 0);
	make_x(&x, 4, buf);
	x.data = NULL;
	if (graft_net_estimate(net, &x, 1, &mem, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(mem.weights, 0);       /* the initializers feed folded nodes only */
	/* Shape (3 int64), Gather (1), Unsqueeze (1), Concat (2) */
	assert_int_equal(mem.copies, 7 * sizeof(int64_t));
	assert_int_equal(mem.activations, 3 * 24 * sizeof(float));     /* x, r, y */
	make_x(&x, 4, buf);
	assert_int_equal(graft_net_run(net, &x, 1, &err), 0);
	graft_net_output(net, 0, &y);
	assert_int_equal(y.dims[1], 6);
	graft_net_free(net);
	graft_model_free(m);
}

/* The registry's table holds every op of every family, and ops_all fills it once even
 * when several threads ask at the same moment. */
static void *list_ops(void *arg)
{
	(void)arg;
	return (void *)ops_all();
}

static void test_registry_complete(void **state)
{
	pthread_t th[4];
	void *seen[4];
	size_t n = 0;
	(void)state;

	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, list_ops, NULL), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], &seen[i]), 0);
	for (const struct op_def *const *o = ops_all(); *o; o++)
		n++;
	assert_int_equal(n, ops_family_total());
	assert_true(n > 100);
	for (int i = 0; i < 4; i++)
		assert_ptr_equal(seen[i], ops_all());
	assert_non_null(ops_find("Conv"));
	assert_non_null(ops_find("Softmax"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry_complete),
		cmocka_unit_test(test_shape_chain_is_folded),
		cmocka_unit_test(test_input_checks),
		cmocka_unit_test(test_unsupported_op_named),
		cmocka_unit_test(test_conv_bn_relu_fused),
		cmocka_unit_test(test_blocked_layout_between_convs),
		cmocka_unit_test(test_resnet_block_layouts),
		cmocka_unit_test(test_depthwise_fused),
		cmocka_unit_test(test_squeeze_excitation_blocked),
		cmocka_unit_test(test_gated_activations_fused),
		cmocka_unit_test(test_estimate_counts_the_plan),
		cmocka_unit_test(test_estimate_folds_shapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
