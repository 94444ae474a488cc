/*
 * test_grad_conv.c: the backward of Conv (lib/engine/ops/conv.c) and of the pooling ops
 * (lib/engine/ops/pool.c) against finite differences.  Tensors have 16 channels or more, so
 * that oneDNN picks its blocked layouts and the reorders around the backward primitives
 * are exercised.  MaxPool inputs are distinct values spaced wider than the finite
 * difference's step, so that no nudge moves a maximum.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "gradcheck.h"
#include "testmodel.h"

/* ---- model building -------------------------------------------------------------------- */

static void set_ints(Onnx__NodeProto *n, const char *name, int count, const int64_t *v)
{
	Onnx__AttributeProto *a = calloc(1, sizeof(*a));

	onnx__attribute_proto__init(a);
	a->name = strdup(name);
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
	a->n_ints = (size_t)count;
	a->ints = malloc((size_t)count * sizeof(int64_t));
	memcpy(a->ints, v, (size_t)count * sizeof(int64_t));
	n->attribute = realloc(n->attribute, sizeof(*n->attribute) * (n->n_attribute + 1));
	n->attribute[n->n_attribute++] = a;
}

static void set_string(Onnx__NodeProto *n, const char *name, const char *v)
{
	Onnx__AttributeProto *a = calloc(1, sizeof(*a));

	onnx__attribute_proto__init(a);
	a->name = strdup(name);
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
	a->has_s = 1;
	a->s.len = strlen(v);
	a->s.data = (uint8_t *)strdup(v);
	n->attribute = realloc(n->attribute, sizeof(*n->attribute) * (n->n_attribute + 1));
	n->attribute[n->n_attribute++] = a;
}

/* An initializer of the given shape with pseudo-random values in [lo, hi). */
static void random_init(Onnx__ModelProto *mp, const char *name, int rank, const int64_t *dims,
			double lo, double hi, uint64_t seed)
{
	struct graft_array a = gradcheck_input(rank, dims, lo, hi, seed);
	Onnx__TensorProto *t = tm_tensor(name, GRAFT_FLOAT, rank, dims);

	tm_raw(t, a.data, a.nbytes);
	tm_initializer(mp, t);
	free(a.data);
}

/* What a test Conv is: X's and W's shapes, whether it has B, and its attributes (count 0:
 * absent). */
struct conv_case {
	int rank;
	int64_t x[5], w[5];
	int bias;
	int64_t group;
	int64_t strides[3], dil[3], pads[6];
	int n_strides, n_dil, n_pads;
	const char *auto_pad;
};

/* x -> Conv(W, B) -> y: W and B are parameters, x a graph input. */
static Onnx__ModelProto *conv_model(const struct conv_case *c, Onnx__NodeProto **node)
{
	Onnx__ModelProto *mp = tm_model(13);
	const char *ins[] = {"x", "W", c->bias ? "B" : NULL, NULL};
	int64_t bd[1] = {c->w[0]}, yd[5] = {0};
	Onnx__NodeProto *n;

	tm_input(mp, "x", GRAFT_FLOAT, c->rank, c->x);
	tm_output(mp, "y", GRAFT_FLOAT, c->rank, yd);   /* (dims unchecked: inferred) */
	random_init(mp, "W", c->rank, c->w, -0.5, 0.5, 2);
	if (c->bias)
		random_init(mp, "B", 1, bd, -0.5, 0.5, 3);
	n = tm_node(mp, "Conv", "conv", ins, (const char *[]){"y", NULL});
	if (c->group > 1)
		tm_attr_int(n, "group", c->group);
	if (c->n_strides)
		set_ints(n, "strides", c->n_strides, c->strides);
	if (c->n_dil)
		set_ints(n, "dilations", c->n_dil, c->dil);
	if (c->n_pads)
		set_ints(n, "pads", c->n_pads, c->pads);
	if (c->auto_pad)
		set_string(n, "auto_pad", c->auto_pad);
	if (node)
		*node = n;
	return mp;
}

/* Checks dL/dx, dL/dW and dL/dB; returns how many elements were compared. */
static size_t check_conv(const struct conv_case *c)
{
	struct graft_array x = gradcheck_input(c->rank, c->x, -1, 1, 1);
	size_t checked = 0;

	gradcheck(conv_model(c, NULL), &x, 1, NULL, &checked);
	free(x.data);
	/* x, W and (if any) B each get up to 64 */
	assert_true(checked >= (size_t)(c->bias ? 3 * 16 : 2 * 16));
	return checked;
}

/* ---- Conv ------------------------------------------------------------------------------- */

static void test_conv_bias(void **state)
{
	struct conv_case c = {.rank = 4, .x = {2, 16, 7, 7}, .w = {16, 16, 3, 3}, .bias = 1,
			      .pads = {1, 1, 1, 1}, .n_pads = 4};
	(void)state;
	check_conv(&c);
}

static void test_conv_no_bias_stride2(void **state)
{
	struct conv_case c = {.rank = 4, .x = {2, 16, 9, 9}, .w = {32, 16, 3, 3},
			      .strides = {2, 2}, .n_strides = 2};
	(void)state;
	check_conv(&c);
}

static void test_conv_1x1_stride2(void **state)
{
	struct conv_case c = {.rank = 4, .x = {2, 16, 8, 8}, .w = {32, 16, 1, 1}, .bias = 1,
			      .strides = {2, 2}, .n_strides = 2};
	(void)state;
	check_conv(&c);
}

static void test_conv_dilation2(void **state)
{
	struct conv_case c = {.rank = 4, .x = {1, 16, 9, 9}, .w = {16, 16, 3, 3}, .bias = 1,
			      .dil = {2, 2}, .n_dil = 2, .pads = {2, 2, 2, 2}, .n_pads = 4};
	(void)state;
	check_conv(&c);
}

static void test_conv_asymmetric_pads(void **state)
{
	/* top 0, left 2, bottom 2, right 1 */
	struct conv_case c = {.rank = 4, .x = {1, 16, 6, 7}, .w = {16, 16, 3, 3}, .bias = 1,
			      .pads = {0, 2, 2, 1}, .n_pads = 4, .strides = {1, 2},
			      .n_strides = 2};
	(void)state;
	check_conv(&c);
}

static void test_conv_groups2(void **state)
{
	struct conv_case c = {.rank = 4, .x = {2, 32, 6, 6}, .w = {32, 16, 3, 3}, .bias = 1,
			      .group = 2, .pads = {1, 1, 1, 1}, .n_pads = 4};
	(void)state;
	check_conv(&c);
}

static void test_conv_depthwise(void **state)
{
	struct conv_case c = {.rank = 4, .x = {2, 32, 7, 7}, .w = {32, 1, 3, 3}, .bias = 1,
			      .group = 32, .pads = {1, 1, 1, 1}, .n_pads = 4, .strides = {2, 2},
			      .n_strides = 2};
	(void)state;
	check_conv(&c);
}

static void test_conv_same_upper(void **state)
{
	/* 6 wide, kernel 3, stride 2: 3 outputs, one pad, at the end */
	struct conv_case c = {.rank = 4, .x = {1, 16, 6, 6}, .w = {16, 16, 3, 3}, .bias = 1,
			      .strides = {2, 2}, .n_strides = 2, .auto_pad = "SAME_UPPER"};
	(void)state;
	check_conv(&c);
}

static void test_conv_1d(void **state)
{
	struct conv_case c = {.rank = 3, .x = {2, 16, 11}, .w = {16, 16, 3}, .bias = 1,
			      .strides = {2}, .n_strides = 1, .pads = {1, 0}, .n_pads = 2};
	(void)state;
	check_conv(&c);
}

static void test_conv_3d(void **state)
{
	struct conv_case c = {.rank = 5, .x = {1, 16, 4, 5, 5}, .w = {16, 16, 3, 3, 3},
			      .bias = 1, .pads = {1, 1, 1, 1, 1, 1}, .n_pads = 6};
	(void)state;
	check_conv(&c);
}

/* A small image (3 channels) into 16: the first layer of a network. */
static void test_conv_image(void **state)
{
	struct conv_case c = {.rank = 4, .x = {2, 3, 10, 10}, .w = {16, 3, 5, 5}, .bias = 1,
			      .strides = {2, 2}, .n_strides = 2, .pads = {2, 2, 2, 2}, .n_pads = 4};
	(void)state;
	check_conv(&c);
}

/*
 * x -> c1 (W1, B1) -> MaxPool -> c2 (W2, B2) -> y, trained with different parts frozen
 * and compared with the net where everything trains and x has a gradient (whose parts
 * the checks above cover):
 * - W1 and B1 frozen, no input gradient: c2's X comes from the frozen part (where c1
 *   hands MaxPool a blocked layout) and needs no gradient, so c2 runs no backward-data
 *   (gin[0] NULL);
 * - W2 and B2 frozen: c2 gives dX alone, on constant weights, and c1, whose X needs no
 *   gradient either, gives dW1 and dB1 alone.
 */
static struct graft_model *two_conv_model(void)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {2, 16, 8, 8}, wd[] = {16, 16, 3, 3}, bd[] = {16}, yd[4] = {0};
	int64_t pads[] = {1, 1, 1, 1}, two[] = {2, 2};
	struct graft_err err = {0};
	Onnx__NodeProto *pool;
	struct graft_model *m;
	size_t len;
	uint8_t *buf;

	tm_input(mp, "x", GRAFT_FLOAT, 4, xd);
	tm_output(mp, "y", GRAFT_FLOAT, 4, yd);
	random_init(mp, "W1", 4, wd, -0.3, 0.3, 5);
	random_init(mp, "B1", 1, bd, -0.3, 0.3, 6);
	random_init(mp, "W2", 4, wd, -0.3, 0.3, 7);
	random_init(mp, "B2", 1, bd, -0.3, 0.3, 8);
	set_ints(tm_node(mp, "Conv", "c1", (const char *[]){"x", "W1", "B1", NULL},
			  (const char *[]){"a", NULL}), "pads", 4, pads);
	pool = tm_node(mp, "MaxPool", "p", (const char *[]){"a", NULL}, (const char *[]){"b", NULL});
	set_ints(pool, "kernel_shape", 2, two);
	set_ints(pool, "strides", 2, two);
	set_ints(tm_node(mp, "Conv", "c2", (const char *[]){"b", "W2", "B2", NULL},
			  (const char *[]){"y", NULL}), "pads", 4, pads);
	buf = tm_pack(mp, &len);
	onnx__model_proto__free_unpacked(mp, NULL);
	if (graft_model_read_memory(&m, buf, len, NULL, "t", &err))
		fail_msg("%s", err.msg);
	free(buf);
	return m;
}

static const struct node *node_named(const struct graft_net *net, const char *name)
{
	for (size_t i = 0; i < net->n_nodes; i++)
		if (strcmp(net->nodes[i].proto->name, name) == 0)
			return &net->nodes[i];
	fail_msg("no node %s", name);
	return NULL;
}

static void set_trainable(struct graft_model *m, const char *a, const char *b, int on)
{
	struct graft_err err = {0};

	for (size_t i = 0; i < graft_model_tensor_count(m); i++) {
		struct graft_tensor t;
		graft_model_tensor(m, i, &t);
		if ((strcmp(t.name, a) == 0 || strcmp(t.name, b) == 0) &&
		    graft_model_set_trainable(m, i, on, &err))
			fail_msg("%s", err.msg);
	}
}

#define WSIZE (16 * 16 * 9)

/* The gradients of W1, B1, W2, B2 (grads + offsets 0, WSIZE, WSIZE + 16, 2 * WSIZE + 16),
 * left alone for frozen ones. */
static struct graft_net *train_step(struct graft_model *m, int input_grads,
				    struct graft_array *x, float *gy, float *grads)
{
	static const char *const names[] = {"W1", "B1", "W2", "B2"};
	static const size_t at[] = {0, WSIZE, WSIZE + 16, 2 * WSIZE + 16};
	struct graft_net_opts o = {.training = 1, .input_grads = input_grads};
	struct graft_err err = {0};
	struct graft_net *net;
	struct graft_array g;

	if (graft_net_new_opts(&net, m, &o, &err) || graft_net_run(net, x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &g);
	g.data = gy;
	if (graft_net_backward(net, &g, 1, &err))
		fail_msg("%s", err.msg);
	for (size_t i = 0; i < graft_net_tensor_count(net); i++) {
		struct graft_net_tensor t;
		graft_net_tensor(net, i, &t);
		for (int k = 0; k < 4; k++)
			if (strcmp(t.name, names[k]) == 0)
				memcpy(grads + at[k], t.grad, t.numel * sizeof(float));
	}
	return net;
}

static void assert_close(const float *a, const float *ref, size_t n)
{
	double sum = 0;

	for (size_t i = 0; i < n; i++) {
		if (fabsf(a[i] - ref[i]) > 1e-4f * (1 + fabsf(ref[i])))
			fail_msg("element %zu: %g, expected %g", i, (double)a[i], (double)ref[i]);
		sum += fabs(ref[i]);
	}
	assert_true(sum > 0.1);         /* something flowed */
}

static void test_conv_frozen_parts(void **state)
{
	struct graft_model *m = two_conv_model();
	int64_t xd[] = {2, 16, 8, 8}, yd[] = {2, 16, 4, 4};
	struct graft_array x = gradcheck_input(4, xd, -1, 1, 11);
	struct graft_array gy = gradcheck_input(4, yd, -1, 1, 12);
	float *ref = calloc(2 * WSIZE + 32, sizeof(float));
	float *got = calloc(2 * WSIZE + 32, sizeof(float));
	struct graft_net *net;
	const struct node *c1, *c2;
	(void)state;

	graft_net_free(train_step(m, 1, &x, gy.data, ref));

	set_trainable(m, "W1", "B1", 0);
	net = train_step(m, 0, &x, gy.data, got);
	c1 = node_named(net, "c1");
	c2 = node_named(net, "c2");
	assert_int_equal(c1->needs_grad, 0);
	assert_non_null(c1->out[0]->layout);            /* the frozen part runs blocked */
	assert_int_equal(c2->needs_grad, 1);
	assert_null(c2->gin[0]);                        /* no backward-data */
	assert_non_null(c2->gin[1]);
	assert_non_null(c2->gin[2]);
	assert_close(got + WSIZE + 16, ref + WSIZE + 16, WSIZE + 16);
	graft_net_free(net);

	set_trainable(m, "W1", "B1", 1);
	set_trainable(m, "W2", "B2", 0);
	net = train_step(m, 0, &x, gy.data, got);
	c1 = node_named(net, "c1");
	c2 = node_named(net, "c2");
	assert_null(c1->gin[0]);
	assert_non_null(c1->gin[1]);
	assert_non_null(c2->gin[0]);
	assert_null(c2->gin[1]);
	assert_null(c2->gin[2]);
	assert_close(got, ref, WSIZE + 16);
	graft_net_free(net);

	graft_model_free(m);
	free(ref);
	free(got);
	free(x.data);
	free(gy.data);
}

/* ---- pooling ---------------------------------------------------------------------------- */

/* Distinct values 0.03 apart (more than twice the finite difference's step), shuffled. */
static struct graft_array distinct_input(int rank, const int64_t *dims, uint64_t seed)
{
	struct graft_array a = gradcheck_input(rank, dims, 0, 1, seed);
	size_t n = a.nbytes / sizeof(float);
	float *v = a.data;
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < n; i++)
		v[i] = 0.03f * (float)i - 0.015f * (float)n;
	for (size_t i = n - 1; i > 0; i--) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		size_t j = (size_t)((s >> 33) % (i + 1));
		float t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
	return a;
}

struct pool_case {
	const char *op;
	int rank;
	int64_t x[5];
	int64_t kernel[3], strides[3], dil[3], pads[6];
	int n_kernel, n_strides, n_dil, n_pads;
	int ceil_mode, count_include_pad, indices;
};

static size_t check_pool(const struct pool_case *c)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t yd[5] = {0};
	struct graft_array x = distinct_input(c->rank, c->x, 3);
	Onnx__NodeProto *n;
	size_t checked = 0;

	tm_input(mp, "x", GRAFT_FLOAT, c->rank, c->x);
	tm_output(mp, "y", GRAFT_FLOAT, c->rank, yd);
	if (c->indices)
		tm_output(mp, "i", GRAFT_INT64, c->rank, yd);
	n = tm_node(mp, c->op, "pool", (const char *[]){"x", NULL},
		    (const char *[]){"y", c->indices ? "i" : NULL, NULL});
	if (c->n_kernel)
		set_ints(n, "kernel_shape", c->n_kernel, c->kernel);
	if (c->n_strides)
		set_ints(n, "strides", c->n_strides, c->strides);
	if (c->n_dil)
		set_ints(n, "dilations", c->n_dil, c->dil);
	if (c->n_pads)
		set_ints(n, "pads", c->n_pads, c->pads);
	if (c->ceil_mode)
		tm_attr_int(n, "ceil_mode", 1);
	if (c->count_include_pad)
		tm_attr_int(n, "count_include_pad", 1);
	gradcheck(mp, &x, 1, &(struct gradcheck_opts){.max_elems = 256}, &checked);
	free(x.data);
	assert_true(checked > 0);
	return checked;
}

/* resnet's stem pooling: kernel 3, stride 2, pad 1 */
static void test_maxpool(void **state)
{
	struct pool_case c = {"MaxPool", 4, {2, 16, 9, 9}, {3, 3}, {2, 2}, {0}, {1, 1, 1, 1},
			      2, 2, 0, 4, 0, 0, 0};
	(void)state;
	check_pool(&c);
}

static void test_maxpool_ceil_asymmetric(void **state)
{
	struct pool_case c = {"MaxPool", 4, {1, 16, 8, 7}, {3, 2}, {2, 2}, {0}, {0, 1, 1, 0},
			      2, 2, 0, 4, 1, 0, 0};
	(void)state;
	check_pool(&c);
}

static void test_maxpool_dilated_1d(void **state)
{
	struct pool_case c = {"MaxPool", 3, {2, 16, 13}, {3}, {2}, {2}, {1, 1}, 1, 1, 1, 2, 0, 0, 0};
	(void)state;
	check_pool(&c);
}

/* With the Indices output the forward takes the plain loop, and so does the backward. */
static void test_maxpool_indices(void **state)
{
	struct pool_case c = {"MaxPool", 4, {1, 16, 7, 7}, {3, 3}, {2, 2}, {0}, {1, 1, 1, 1},
			      2, 2, 0, 4, 1, 0, 1};
	(void)state;
	check_pool(&c);
}

static void test_maxpool_3d(void **state)
{
	struct pool_case c = {"MaxPool", 5, {1, 16, 4, 5, 5}, {2, 2, 2}, {2, 2, 2}, {0}, {0},
			      3, 3, 0, 0, 1, 0, 0};
	(void)state;
	check_pool(&c);
}

static void test_avgpool_exclude_pad(void **state)
{
	struct pool_case c = {"AveragePool", 4, {2, 16, 7, 7}, {3, 3}, {2, 2}, {0}, {1, 1, 1, 1},
			      2, 2, 0, 4, 0, 0, 0};
	(void)state;
	check_pool(&c);
}

static void test_avgpool_include_pad(void **state)
{
	struct pool_case c = {"AveragePool", 4, {2, 16, 7, 7}, {3, 3}, {2, 2}, {0}, {1, 0, 2, 1},
			      2, 2, 0, 4, 0, 1, 0};
	(void)state;
	check_pool(&c);
}

static void test_avgpool_ceil_exclude(void **state)
{
	struct pool_case c = {"AveragePool", 4, {1, 16, 8, 8}, {3, 3}, {2, 2}, {0}, {0},
			      2, 2, 0, 0, 1, 0, 0};
	(void)state;
	check_pool(&c);
}

/* ceil_mode grows the right pad beyond the one given, which count_include_pad does not
 * count: the plain loop, forward and backward. */
static void test_avgpool_ceil_include(void **state)
{
	struct pool_case c = {"AveragePool", 4, {1, 16, 8, 8}, {3, 3}, {2, 2}, {0}, {1, 1, 1, 1},
			      2, 2, 0, 4, 1, 1, 0};
	(void)state;
	check_pool(&c);
}

static void test_avgpool_1d(void **state)
{
	struct pool_case c = {"AveragePool", 3, {2, 16, 12}, {4}, {3}, {0}, {2, 1},
			      1, 1, 0, 2, 0, 0, 0};
	(void)state;
	check_pool(&c);
}

static void test_global_avgpool(void **state)
{
	struct pool_case c = {.op = "GlobalAveragePool", .rank = 4, .x = {2, 32, 5, 5}};
	(void)state;
	check_pool(&c);
}

static void test_global_maxpool(void **state)
{
	struct pool_case c = {.op = "GlobalMaxPool", .rank = 4, .x = {2, 32, 5, 5}};
	(void)state;
	check_pool(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conv_bias),
		cmocka_unit_test(test_conv_no_bias_stride2),
		cmocka_unit_test(test_conv_1x1_stride2),
		cmocka_unit_test(test_conv_dilation2),
		cmocka_unit_test(test_conv_asymmetric_pads),
		cmocka_unit_test(test_conv_groups2),
		cmocka_unit_test(test_conv_depthwise),
		cmocka_unit_test(test_conv_same_upper),
		cmocka_unit_test(test_conv_1d),
		cmocka_unit_test(test_conv_3d),
		cmocka_unit_test(test_conv_image),
		cmocka_unit_test(test_conv_frozen_parts),
		cmocka_unit_test(test_maxpool),
		cmocka_unit_test(test_maxpool_ceil_asymmetric),
		cmocka_unit_test(test_maxpool_dilated_1d),
		cmocka_unit_test(test_maxpool_indices),
		cmocka_unit_test(test_maxpool_3d),
		cmocka_unit_test(test_avgpool_exclude_pad),
		cmocka_unit_test(test_avgpool_include_pad),
		cmocka_unit_test(test_avgpool_ceil_exclude),
		cmocka_unit_test(test_avgpool_ceil_include),
		cmocka_unit_test(test_avgpool_1d),
		cmocka_unit_test(test_global_avgpool),
		cmocka_unit_test(test_global_maxpool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
