/*
 * test_grad_gemm_norm.c: the backward of lib/engine/ops/gemm.c (Gemm, MatMul) and lib/engine/ops/norm.c
 * (BatchNormalization in training and inference modes, LayerNormalization) against
 * finite differences (gradcheck.h), over every attribute and broadcast that changes the
 * math; and BatchNormalization's training-mode forward: the running statistics it
 * updates, computed here in double with PyTorch's formula, and their use in evaluation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "graft.h"
#include "gradcheck.h"
#include "testmodel.h"

/* testmodel.h has no float attributes. */
static void node_attr_float(Onnx__NodeProto *n, const char *name, float v)
{
	Onnx__AttributeProto *a = malloc(sizeof(*a));

	onnx__attribute_proto__init(a);
	a->name = strdup(name);
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
	a->has_f = 1;
	a->f = v;
	n->attribute = realloc(n->attribute, sizeof(*n->attribute) * (n->n_attribute + 1));
	n->attribute[n->n_attribute++] = a;
}

static uint64_t numel(int rank, const int64_t *dims)
{
	uint64_t n = 1;

	for (int i = 0; i < rank; i++)
		n *= (uint64_t)dims[i];
	return n;
}

/* The elements gradcheck compares of a tensor of n (at most max_elems, 64 by default). */
static uint64_t sampled(uint64_t n)
{
	return n < 64 ? n : 64;
}

/* A float initializer of pseudo-random values in [lo, hi). */
static void init_random(Onnx__ModelProto *mp, const char *name, int rank, const int64_t *dims,
			double lo, double hi, uint64_t seed)
{
	struct graft_array a = gradcheck_input(rank, dims, lo, hi, seed);
	Onnx__TensorProto *t = tm_tensor(name, 1, rank, dims);

	tm_raw(t, a.data, a.nbytes);
	tm_initializer(mp, t);
	free(a.data);
}

static void assert_close(double got, double want, double tol)
{
	if (fabs(got - want) > tol * (1 + fabs(want)))
		fail_msg("%.9g, expected %.9g", got, want);
}

/* ---- Gemm -------------------------------------------------------------------------------- */

enum c_kind { C_NONE, C_FULL, C_ROW, C_VEC, C_COL, C_SCALAR, C_1X1 };

/*
 * Y = alpha * op(A) op(B) + beta * C with M, K, N = 3, 4, 5.  A is a graph input, B a
 * parameter; C a parameter, or a graph input where it has one element (the importer
 * keeps one-element initializers constant).
 */
static void gemm_case(int ta, int tb, float alpha, float beta, enum c_kind ck)
{
	Onnx__ModelProto *mp = tm_model(13);
	const int64_t M = 3, K = 4, N = 5;
	int64_t ad[2] = {ta ? K : M, ta ? M : K}, bd[2] = {tb ? N : K, tb ? K : N};
	int64_t yd[2] = {M, N}, cd[2] = {0, 0};
	int crank = 0;
	struct graft_array in[2];
	size_t n_in = 1, checked = 0, want;
	Onnx__NodeProto *node;

	switch (ck) {
	case C_FULL: crank = 2; cd[0] = M; cd[1] = N; break;
	case C_ROW: crank = 2; cd[0] = 1; cd[1] = N; break;
	case C_VEC: crank = 1; cd[0] = N; break;
	case C_COL: crank = 2; cd[0] = M; cd[1] = 1; break;
	case C_1X1: crank = 2; cd[0] = 1; cd[1] = 1; break;
	case C_SCALAR: case C_NONE: break;
	}
	tm_input(mp, "A", 1, 2, ad);
	in[0] = gradcheck_input(2, ad, -1, 1, 1);
	init_random(mp, "B", 2, bd, -1, 1, 2);
	if (ck == C_SCALAR || ck == C_1X1) {
		tm_input(mp, "C", 1, crank, cd);
		in[n_in++] = gradcheck_input(crank, cd, -1, 1, 3);
	} else if (ck != C_NONE) {
		init_random(mp, "C", crank, cd, -1, 1, 3);
	}
	tm_output(mp, "Y", 1, 2, yd);
	node = tm_node(mp, "Gemm", "gemm",
		       ck == C_NONE ? (const char *[]){"A", "B", NULL}
				    : (const char *[]){"A", "B", "C", NULL},
		       (const char *[]){"Y", NULL});
	if (ta)
		tm_attr_int(node, "transA", 1);
	if (tb)
		tm_attr_int(node, "transB", 1);
	if (alpha != 1.0f)
		node_attr_float(node, "alpha", alpha);
	if (beta != 1.0f)
		node_attr_float(node, "beta", beta);
	gradcheck(mp, in, n_in, NULL, &checked);
	want = (size_t)(M * K + K * N) + (ck == C_NONE ? 0 : (size_t)numel(crank, cd));
	assert_int_equal(checked, want);
	for (size_t i = 0; i < n_in; i++)
		free(in[i].data);
}

static void test_gemm_trans(void **state)
{
	(void)state;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++)
			gemm_case(ta, tb, 1.0f, 1.0f, C_VEC);
}

static void test_gemm_alpha_beta(void **state)
{
	(void)state;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++)
			gemm_case(ta, tb, 0.7f, -1.3f, C_FULL);
	gemm_case(0, 1, 2.5f, 1.0f, C_NONE);
	gemm_case(0, 0, 1.0f, 0.0f, C_ROW);     /* beta 0: C's gradient is zero */
}

static void test_gemm_c_broadcast(void **state)
{
	(void)state;
	gemm_case(0, 1, 1.0f, 1.0f, C_ROW);     /* the bias path of the forward */
	gemm_case(1, 0, 1.0f, 0.5f, C_ROW);
	gemm_case(0, 0, 1.0f, 2.0f, C_COL);
	gemm_case(1, 1, 0.5f, 1.5f, C_SCALAR);
	gemm_case(0, 1, 1.0f, 1.0f, C_1X1);
	gemm_case(1, 0, 1.0f, 1.0f, C_FULL);
}

/* The layout of torch's Linear at a size where oneDNN takes its optimised paths, checked
 * on a sample of elements. */
static void test_gemm_linear_large(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t ad[2] = {16, 300}, bd[2] = {70, 300}, cd[1] = {70}, yd[2] = {16, 70};
	struct gradcheck_opts o = {.max_elems = 24};
	size_t checked = 0;
	(void)state;

	tm_input(mp, "A", 1, 2, ad);
	init_random(mp, "B", 2, bd, -0.1, 0.1, 2);
	init_random(mp, "C", 1, cd, -1, 1, 3);
	tm_output(mp, "Y", 1, 2, yd);
	tm_attr_int(tm_node(mp, "Gemm", "fc", (const char *[]){"A", "B", "C", NULL},
			    (const char *[]){"Y", NULL}), "transB", 1);
	struct graft_array a = gradcheck_input(2, ad, -1, 1, 1);
	gradcheck(mp, &a, 1, &o, &checked);
	assert_int_equal(checked, 3 * 24);
	free(a.data);
}

/*
 * A frozen weight is a constant the forward packs into oneDNN's preferred layout; dA must
 * still read it as stored.  Y = A W^T + C (torch's Linear), dA = dY W, checked exactly.
 */
static void test_gemm_frozen_weight(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t ad[2] = {4, 40}, wd[2] = {24, 40}, cd[1] = {24}, yd[2] = {4, 24};
	struct graft_net_opts no = {.training = 1, .input_grads = 1};
	struct graft_array a = gradcheck_input(2, ad, -1, 1, 1);
	struct graft_array g = gradcheck_input(2, yd, -1, 1, 4), ga;
	struct graft_tensor w;
	struct graft_model *m;
	struct graft_net *net;
	struct graft_err err = {0};
	(void)state;

	tm_input(mp, "A", 1, 2, ad);
	init_random(mp, "W", 2, wd, -1, 1, 2);
	init_random(mp, "C", 1, cd, -1, 1, 3);
	tm_output(mp, "Y", 1, 2, yd);
	tm_attr_int(tm_node(mp, "Gemm", "fc", (const char *[]){"A", "W", "C", NULL},
			    (const char *[]){"Y", NULL}), "transB", 1);
	m = tm_load(mp);
	if (graft_model_set_trainable(m, (size_t)graft_model_find_tensor(m, "W"), 0, &err) ||
	    graft_net_new_opts(&net, m, &no, &err) || graft_net_run(net, &a, 1, &err) ||
	    graft_net_backward(net, &g, 1, &err) || graft_net_input_grad(net, 0, &ga, &err))
		fail_msg("%s", err.msg);
	graft_model_tensor(m, (size_t)graft_model_find_tensor(m, "W"), &w);
	for (int64_t i = 0; i < ad[0]; i++)
		for (int64_t k = 0; k < ad[1]; k++) {
			double want = 0;
			for (int64_t j = 0; j < wd[0]; j++)
				want += (double)((const float *)g.data)[i * wd[0] + j] *
					((const float *)w.data)[j * wd[1] + k];
			assert_close(((const float *)ga.data)[i * ad[1] + k], want, 1e-5);
		}
	graft_net_free(net);
	graft_model_free(m);
	free(a.data);
	free(g.data);
}

/* ---- MatMul ------------------------------------------------------------------------------ */

/* Y = A B, both graph inputs. */
static void matmul_case(int ra, const int64_t *ad, int rb, const int64_t *bd, int ry,
			const int64_t *yd)
{
	Onnx__ModelProto *mp = tm_model(13);
	struct graft_array in[2];
	size_t checked = 0;

	tm_input(mp, "A", 1, ra, ad);
	tm_input(mp, "B", 1, rb, bd);
	tm_output(mp, "Y", 1, ry, yd);
	tm_node(mp, "MatMul", "mm", (const char *[]){"A", "B", NULL}, (const char *[]){"Y", NULL});
	in[0] = gradcheck_input(ra, ad, -1, 1, 1);
	in[1] = gradcheck_input(rb, bd, -1, 1, 2);
	gradcheck(mp, in, 2, NULL, &checked);
	assert_int_equal(checked, sampled(numel(ra, ad)) + sampled(numel(rb, bd)));
	free(in[0].data);
	free(in[1].data);
}

static void test_matmul_2d(void **state)
{
	(void)state;
	matmul_case(2, (int64_t[]){3, 4}, 2, (int64_t[]){4, 5}, 2, (int64_t[]){3, 5});
	matmul_case(2, (int64_t[]){1, 6}, 2, (int64_t[]){6, 1}, 2, (int64_t[]){1, 1});
}

static void test_matmul_batched(void **state)
{
	(void)state;
	matmul_case(3, (int64_t[]){2, 3, 4}, 3, (int64_t[]){2, 4, 5}, 3, (int64_t[]){2, 3, 5});
	matmul_case(4, (int64_t[]){2, 2, 3, 4}, 4, (int64_t[]){2, 2, 4, 2}, 4,
		    (int64_t[]){2, 2, 3, 2});
}

static void test_matmul_broadcast(void **state)
{
	(void)state;
	/* B without batch axes: folded into rows, dB contracted over A's batch */
	matmul_case(3, (int64_t[]){2, 3, 4}, 2, (int64_t[]){4, 5}, 3, (int64_t[]){2, 3, 5});
	matmul_case(4, (int64_t[]){2, 3, 3, 4}, 3, (int64_t[]){1, 4, 5}, 4,
		    (int64_t[]){2, 3, 3, 5});
	/* A broadcast over B's batch */
	matmul_case(2, (int64_t[]){3, 4}, 3, (int64_t[]){2, 4, 5}, 3, (int64_t[]){2, 3, 5});
	/* each broadcast along a different axis */
	matmul_case(4, (int64_t[]){2, 1, 3, 4}, 4, (int64_t[]){1, 3, 4, 2}, 4,
		    (int64_t[]){2, 3, 3, 2});
	/* B broadcast along the outer axis only */
	matmul_case(4, (int64_t[]){2, 3, 3, 4}, 3, (int64_t[]){3, 4, 2}, 4,
		    (int64_t[]){2, 3, 3, 2});
}

static void test_matmul_vectors(void **state)
{
	(void)state;
	matmul_case(1, (int64_t[]){4}, 2, (int64_t[]){4, 5}, 1, (int64_t[]){5});
	matmul_case(2, (int64_t[]){3, 4}, 1, (int64_t[]){4}, 1, (int64_t[]){3});
	matmul_case(1, (int64_t[]){4}, 1, (int64_t[]){4}, 0, NULL);
	matmul_case(1, (int64_t[]){4}, 3, (int64_t[]){2, 4, 5}, 2, (int64_t[]){2, 5});
	matmul_case(3, (int64_t[]){2, 3, 4}, 1, (int64_t[]){4}, 2, (int64_t[]){2, 3});
}

/* ---- BatchNormalization ------------------------------------------------------------------ */

/* Y = BatchNormalization(X, scale, bias, mean, var): X a graph input; scale and bias
 * parameters; mean and var initializers (running statistics), or graph inputs. */
static Onnx__ModelProto *bn_model(int rank, const int64_t *xd, float momentum, float eps,
				  int stats_as_inputs)
{
	Onnx__ModelProto *mp = tm_model(15);
	int64_t cd[1] = {xd[1]};
	Onnx__NodeProto *node;

	tm_input(mp, "X", 1, rank, xd);
	init_random(mp, "scale", 1, cd, 0.5, 1.5, 11);
	init_random(mp, "bias", 1, cd, -1, 1, 12);
	if (stats_as_inputs) {
		tm_input(mp, "mean", 1, 1, cd);
		tm_input(mp, "var", 1, 1, cd);
	} else {
		init_random(mp, "mean", 1, cd, -0.5, 0.5, 13);
		init_random(mp, "var", 1, cd, 0.5, 1.5, 14);
	}
	tm_output(mp, "Y", 1, rank, xd);
	node = tm_node(mp, "BatchNormalization", "bn",
		       (const char *[]){"X", "scale", "bias", "mean", "var", NULL},
		       (const char *[]){"Y", NULL});
	if (momentum >= 0)
		node_attr_float(node, "momentum", momentum);
	if (eps > 0)
		node_attr_float(node, "epsilon", eps);
	return mp;
}

/* mode: 0 training (batch statistics), 1 bn_frozen, 2 evaluation. */
static void bn_case(int rank, const int64_t *xd, int mode)
{
	struct gradcheck_opts o = {.bn_frozen = mode == 1, .eval = mode == 2};
	struct graft_array x = gradcheck_input(rank, xd, -1, 2, 5);
	size_t checked = 0;

	gradcheck(bn_model(rank, xd, -1, 0, 0), &x, 1, &o, &checked);
	assert_int_equal(checked, sampled(numel(rank, xd)) + 2 * (uint64_t)xd[1]);
	free(x.data);
}

static void test_bn_training(void **state)
{
	(void)state;
	bn_case(4, (int64_t[]){3, 4, 2, 3}, 0);
	bn_case(2, (int64_t[]){6, 5}, 0);
	bn_case(3, (int64_t[]){2, 3, 5}, 0);
}

static void test_bn_frozen(void **state)
{
	(void)state;
	bn_case(4, (int64_t[]){3, 4, 2, 3}, 1);
	bn_case(2, (int64_t[]){6, 5}, 1);
}

static void test_bn_eval(void **state)
{
	(void)state;
	bn_case(4, (int64_t[]){3, 4, 2, 3}, 2);
	bn_case(2, (int64_t[]){6, 5}, 2);
}

/* X -> BatchNormalization -> act -> Y, act "Relu" or "Clip" (bounds lo, hi as
 * initializers, opset 15), for the training-region fusion of the two. */
static Onnx__ModelProto *bn_act_model(const int64_t *xd, const char *act, float lo, float hi)
{
	Onnx__ModelProto *mp = bn_model(4, xd, -1, 0, 0);
	Onnx__GraphProto *g = mp->graph;

	free(g->output[0]->name);
	g->output[0]->name = strdup("Z");
	if (strcmp(act, "Clip") == 0) {
		int64_t one[1] = {1};
		Onnx__TensorProto *t = tm_tensor("lo", 1, 0, one);
		tm_float_data(t, &lo, 1);
		tm_initializer(mp, t);
		t = tm_tensor("hi", 1, 0, one);
		tm_float_data(t, &hi, 1);
		tm_initializer(mp, t);
		tm_node(mp, "Clip", "act", (const char *[]){"Y", "lo", "hi", NULL},
			(const char *[]){"Z", NULL});
	} else {
		tm_node(mp, "Relu", "act", (const char *[]){"Y", NULL}, (const char *[]){"Z", NULL});
	}
	return mp;
}

/* One forward and backward of the model as a training net, fused or not (no_fuse):
 * its output and its gradients (X's, then each parameter's) into out, in that order;
 * *fused the nodes the executor fused. */
static size_t bn_act_run(Onnx__ModelProto *mp, const struct graft_array *x, int no_fuse,
			 int bn_frozen, float *out, size_t *fused)
{
	struct graft_net_opts no = {.training = 1, .input_grads = 1, .no_fuse = no_fuse,
				    .bn_frozen = bn_frozen};
	struct graft_model *m = tm_load(mp);
	struct graft_err err = {0};
	struct graft_net *net;
	struct graft_array y, g;
	uint64_t prims, reorders;
	size_t n = 0;

	if (graft_net_new_opts(&net, m, &no, &err) || graft_net_run(net, x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_counters(net, &prims, &reorders, fused);
	graft_net_output(net, 0, &y);
	memcpy(out, y.data, y.nbytes);
	n = y.nbytes / sizeof(float);
	/* the output's gradient: a fixed pattern of both signs */
	float *og = malloc(y.nbytes);
	for (size_t i = 0; i < y.nbytes / sizeof(float); i++)
		og[i] = (float)((int)(i * 7 % 11) - 5) / 4;
	g = y;
	g.data = og;
	if (graft_net_backward(net, &g, 1, &err) || graft_net_input_grad(net, 0, &g, &err))
		fail_msg("%s", err.msg);
	memcpy(out + n, g.data, g.nbytes);
	n += g.nbytes / sizeof(float);
	for (size_t i = 0; i < graft_net_tensor_count(net); i++) {
		struct graft_net_tensor t;
		graft_net_tensor(net, i, &t);
		if (t.is_param) {
			memcpy(out + n, t.grad, t.numel * sizeof(float));
			n += t.numel;
		}
	}
	free(og);
	graft_net_free(net);
	graft_model_free(m);
	return n;
}

/* A training net fuses a BatchNormalization and the Relu or Clip after it (one node,
 * forward and backward): the output and every gradient as the two nodes apart give,
 * in training mode and on running statistics, with values at and past both bounds. */
static void test_bn_fused_activation(void **state)
{
	int64_t xd[4] = {4, 3, 5, 6};
	struct graft_array x = gradcheck_input(4, xd, -1, 2, 5);
	size_t cap = 3 * numel(4, xd) + 16;
	float *a = malloc(cap * sizeof(float)), *b = malloc(cap * sizeof(float));
	const char *acts[2] = {"Relu", "Clip"};
	(void)state;

	for (int k = 0; k < 2; k++)
		for (int frozen = 0; frozen < 2; frozen++) {
			size_t fa, fb, na, nb, clipped = 0;
			na = bn_act_run(bn_act_model(xd, acts[k], 0, 0.6f), &x, 0, frozen, a, &fa);
			nb = bn_act_run(bn_act_model(xd, acts[k], 0, 0.6f), &x, 1, frozen, b, &fb);
			assert_int_equal(fa, 1);
			assert_int_equal(fb, 0);
			assert_int_equal(na, nb);
			assert_int_equal(na, 2 * numel(4, xd) + 2 * (size_t)xd[1]);
			for (size_t i = 0; i < na; i++)
				assert_close(a[i], b[i], 1e-6);
			for (size_t i = 0; i < numel(4, xd); i++)
				clipped += b[i] == 0 || b[i] == 0.6f;
			assert_true(clipped > 0 && clipped < numel(4, xd));
		}
	free(a);
	free(b);
	free(x.data);
}

/* Running statistics as graph inputs (frozen): their gradients too. */
static void test_bn_stats_inputs(void **state)
{
	int64_t xd[4] = {2, 3, 2, 2}, cd[1] = {3};
	struct gradcheck_opts o = {.bn_frozen = 1};
	struct graft_array in[3] = {gradcheck_input(4, xd, -1, 2, 5),
				    gradcheck_input(1, cd, -0.5, 0.5, 6),
				    gradcheck_input(1, cd, 0.5, 1.5, 7)};
	size_t checked = 0;
	(void)state;

	gradcheck(bn_model(4, xd, -1, 0, 1), in, 3, &o, &checked);
	assert_int_equal(checked, 24 + 3 + 3 + 2 * 3);
	for (int i = 0; i < 3; i++)
		free(in[i].data);
}

static const float *net_tensor(const struct graft_net *net, const char *name, int is_param)
{
	struct graft_net_tensor t;

	for (size_t i = 0; i < graft_net_tensor_count(net); i++) {
		graft_net_tensor(net, i, &t);
		if (strcmp(t.name, name) == 0) {
			assert_int_equal(t.is_param, is_param);
			return t.data;
		}
	}
	fail_msg("no net tensor '%s'", name);
	return NULL;
}

/*
 * One training run: Y uses the batch's statistics, and the running ones move to
 * momentum * running + (1 - momentum) * batch, the variance unbiased (n = N*H*W); a
 * second run moves them again; in evaluation, Y uses them.  The model's own tensors
 * stay as they were.
 */
static void test_bn_running_update(void **state)
{
	int64_t xd[4] = {4, 3, 2, 5}, C = 3, inner = 10, N = 4;
	const double mom = 0.8, eps = 1e-3, cnt = (double)(N * inner);
	struct graft_model *m = tm_load(bn_model(4, xd, (float)mom, (float)eps, 0));
	struct graft_net_opts no = {.training = 1};
	struct graft_array x = gradcheck_input(4, xd, -1, 3, 9), y;
	struct graft_net *net;
	struct graft_err err = {0};
	double rm[3], rv[3], bm[3], bv[3];
	const float *scale, *bias, *mean, *var, *xv = x.data;
	struct graft_tensor mt;
	(void)state;

	if (graft_net_new_opts(&net, m, &no, &err))
		fail_msg("%s", err.msg);
	scale = net_tensor(net, "scale", 1);
	bias = net_tensor(net, "bias", 1);
	mean = net_tensor(net, "mean", 0);
	var = net_tensor(net, "var", 0);
	for (int c = 0; c < C; c++) {
		rm[c] = mean[c];
		rv[c] = var[c];
	}
	for (int c = 0; c < C; c++) {
		double s = 0, q = 0;
		for (int64_t i = 0; i < N; i++)
			for (int64_t k = 0; k < inner; k++)
				s += xv[(i * C + c) * inner + k];
		bm[c] = s / cnt;
		for (int64_t i = 0; i < N; i++)
			for (int64_t k = 0; k < inner; k++) {
				double d = xv[(i * C + c) * inner + k] - bm[c];
				q += d * d;
			}
		bv[c] = q / cnt;
	}
	for (int run = 0; run < 2; run++) {
		if (graft_net_run(net, &x, 1, &err))
			fail_msg("%s", err.msg);
		graft_net_output(net, 0, &y);
		for (int c = 0; c < C; c++) {
			rm[c] = mom * rm[c] + (1 - mom) * bm[c];
			rv[c] = mom * rv[c] + (1 - mom) * bv[c] * cnt / (cnt - 1);
			assert_close(mean[c], rm[c], 1e-6);
			assert_close(var[c], rv[c], 1e-6);
			for (int64_t i = 0; i < N; i++)
				for (int64_t k = 0; k < inner; k++) {
					int64_t e = (i * C + c) * inner + k;
					double want = scale[c] * (xv[e] - bm[c]) /
						      sqrt(bv[c] + eps) + bias[c];
					assert_close(((const float *)y.data)[e], want, 1e-5);
				}
		}
	}
	graft_net_set_training(net, 0);
	if (graft_net_run(net, &x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	for (int c = 0; c < C; c++) {
		assert_close(mean[c], rm[c], 1e-6);     /* evaluation leaves them */
		for (int64_t i = 0; i < N; i++)
			for (int64_t k = 0; k < inner; k++) {
				int64_t e = (i * C + c) * inner + k;
				double want = scale[c] * (xv[e] - rm[c]) / sqrt(rv[c] + eps) +
					      bias[c];
				assert_close(((const float *)y.data)[e], want, 1e-5);
			}
	}
	graft_model_tensor(m, (size_t)graft_model_find_tensor(m, "mean"), &mt);
	assert_true(((const float *)mt.data)[0] != mean[0]);
	graft_net_free(net);
	graft_model_free(m);
	free(x.data);
}

/* Batch statistics of one value per channel are meaningless (torch refuses too). */
static void test_bn_one_value_per_channel(void **state)
{
	int64_t xd[2] = {1, 4};
	struct graft_model *m = tm_load(bn_model(2, xd, -1, 0, 0));
	struct graft_net_opts no = {.training = 1};
	struct graft_array x = gradcheck_input(2, xd, -1, 1, 9);
	struct graft_net *net;
	struct graft_err err = {0};
	(void)state;

	if (graft_net_new_opts(&net, m, &no, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(graft_net_run(net, &x, 1, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "one value per channel"));
	graft_net_set_training(net, 0);
	assert_int_equal(graft_net_run(net, &x, 1, &err), 0);
	graft_net_free(net);
	graft_model_free(m);
	free(x.data);
}

/* ---- LayerNormalization ----------------------------------------------------------------- */

/* Y (and, with stats, Mean and InvStdDev) = LayerNormalization(X, Scale, B) over the axes
 * from axis on; Scale and B (brank 0: none) parameters that broadcast over them. */
static void ln_case(int rank, const int64_t *xd, int axis, int srank, const int64_t *sd,
		    int brank, const int64_t *bd, int stats)
{
	Onnx__ModelProto *mp = tm_model(17);
	int64_t std[8];
	struct graft_array x = gradcheck_input(rank, xd, -1, 2, 5);
	size_t checked = 0;
	Onnx__NodeProto *node;

	tm_input(mp, "X", 1, rank, xd);
	init_random(mp, "Scale", srank, sd, 0.5, 1.5, 21);
	if (brank)
		init_random(mp, "B", brank, bd, -1, 1, 22);
	tm_output(mp, "Y", 1, rank, xd);
	for (int i = 0; i < rank; i++)
		std[i] = i < axis ? xd[i] : 1;
	if (stats) {
		tm_output(mp, "Mean", 1, rank, std);
		tm_output(mp, "InvStdDev", 1, rank, std);
	}
	node = tm_node(mp, "LayerNormalization", "ln",
		       brank ? (const char *[]){"X", "Scale", "B", NULL}
			     : (const char *[]){"X", "Scale", NULL},
		       stats ? (const char *[]){"Y", "Mean", "InvStdDev", NULL}
			     : (const char *[]){"Y", NULL});
	tm_attr_int(node, "axis", axis);
	gradcheck(mp, &x, 1, NULL, &checked);
	assert_int_equal(checked, sampled(numel(rank, xd)) + sampled(numel(srank, sd)) +
				  (brank ? sampled(numel(brank, bd)) : 0));
	free(x.data);
}

static void test_layernorm(void **state)
{
	(void)state;
	ln_case(3, (int64_t[]){3, 4, 5}, 2, 1, (int64_t[]){5}, 1, (int64_t[]){5}, 0);
	ln_case(3, (int64_t[]){2, 3, 4}, 1, 2, (int64_t[]){3, 4}, 2, (int64_t[]){3, 4}, 0);
	ln_case(2, (int64_t[]){4, 6}, 1, 1, (int64_t[]){6}, 0, NULL, 0);
}

/* Scale and B broadcast along some normalised axes: their gradients sum over them. */
static void test_layernorm_broadcast(void **state)
{
	(void)state;
	ln_case(3, (int64_t[]){2, 3, 4}, 1, 2, (int64_t[]){1, 4}, 2, (int64_t[]){3, 1}, 0);
	ln_case(3, (int64_t[]){2, 3, 4}, 1, 1, (int64_t[]){4}, 2, (int64_t[]){3, 1}, 0);
}

/* The Mean and InvStdDev outputs carry gradient to X too. */
static void test_layernorm_stats_outputs(void **state)
{
	(void)state;
	ln_case(3, (int64_t[]){2, 3, 4}, 2, 1, (int64_t[]){4}, 1, (int64_t[]){4}, 1);
	ln_case(3, (int64_t[]){2, 3, 4}, 1, 2, (int64_t[]){3, 4}, 0, NULL, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gemm_trans),
		cmocka_unit_test(test_gemm_alpha_beta),
		cmocka_unit_test(test_gemm_c_broadcast),
		cmocka_unit_test(test_gemm_linear_large),
		cmocka_unit_test(test_gemm_frozen_weight),
		cmocka_unit_test(test_matmul_2d),
		cmocka_unit_test(test_matmul_batched),
		cmocka_unit_test(test_matmul_broadcast),
		cmocka_unit_test(test_matmul_vectors),
		cmocka_unit_test(test_bn_training),
		cmocka_unit_test(test_bn_frozen),
		cmocka_unit_test(test_bn_eval),
		cmocka_unit_test(test_bn_stats_inputs),
		cmocka_unit_test(test_bn_running_update),
		cmocka_unit_test(test_bn_fused_activation),
		cmocka_unit_test(test_bn_one_value_per_channel),
		cmocka_unit_test(test_layernorm),
		cmocka_unit_test(test_layernorm_broadcast),
		cmocka_unit_test(test_layernorm_stats_outputs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
