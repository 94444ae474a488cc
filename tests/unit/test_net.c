/*
 * test_net.c: the executor's planning: constant folding of the shape chains exporters
 * emit, plan reuse for same shapes and replanning for new ones, input checks, and the
 * error for an op graft does not run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"
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

static struct graft_model *load(Onnx__ModelProto *mp)
{
	size_t len;
	uint8_t *buf = tm_pack(mp, &len);
	struct graft_model *m;
	struct graft_err err = {0};

	onnx__model_proto__free_unpacked(mp, NULL);
	if (graft_model_read_memory(&m, buf, len, NULL, "t", &err))
		fail_msg("%s", err.msg);
	free(buf);
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
	struct graft_model *m = load(flatten_chain());
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
	struct graft_model *m = load(flatten_chain());
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
	struct graft_model *m = load(mp);
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
	struct graft_model *m = load(mp);
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
	for (Onnx__NodeProto *c = c1; c; c = c == c1 ? c2 : NULL) {
		Onnx__AttributeProto *a = malloc(sizeof(*a));
		onnx__attribute_proto__init(a);
		a->name = strdup("pads");
		a->has_type = 1;
		a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
		a->n_ints = 4;
		a->ints = calloc(4, sizeof(int64_t));
		for (int k = 0; k < 4; k++)
			a->ints[k] = 1;
		c->attribute = realloc(c->attribute, sizeof(*c->attribute) * (c->n_attribute + 1));
		c->attribute[c->n_attribute++] = a;
	}
	struct graft_model *m = load(mp);
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {1, C, H, W},
				 .data = x, .nbytes = sizeof(x)}, y;
	uint64_t prims, r1, r2;
	size_t fused;

	if (graft_net_new(&net, m, &err) || graft_net_run(net, &in, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_counters(net, &prims, &r1, &fused);
	assert_int_equal(graft_net_run(net, &in, 1, &err), 0);
	graft_net_counters(net, &prims, &r2, &fused);
	assert_int_equal(fused, 1);                     /* the Relu */
	assert_int_equal(r2 - r1, 2);                   /* x in and y out, nothing between */
	conv3x3(x, w1, mid, C, H, W, 1);
	conv3x3(mid, w2, want, C, H, W, 0);
	graft_net_output(net, 0, &y);
	for (int i = 0; i < C * H * W; i++)
		if (fabsf(((float *)y.data)[i] - want[i]) > 1e-4f)
			fail_msg("y[%d] = %g, expected %g", i, ((float *)y.data)[i], want[i]);
	graft_net_free(net);
	graft_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shape_chain_is_folded),
		cmocka_unit_test(test_input_checks),
		cmocka_unit_test(test_unsupported_op_named),
		cmocka_unit_test(test_conv_bn_relu_fused),
		cmocka_unit_test(test_blocked_layout_between_convs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
