/*
 * test_head.c: graft_head_attach on testmodel.h's tiny CNN and on a MatMul + Add
 * classifier held in Constant nodes: what is replaced and removed, the new tensors
 * (shapes, flags, seeded values), the declared output, that the result runs, and that
 * refusals leave the model unchanged.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "surgery/surgery.h"
#include "testmodel.h"

/* tm_tiny_cnn declares x (N,2,4,4), but its Reshape to (N,48) needs (N,2,6,6): the
 * declared shape is what a cut's shape inference runs on. */
static struct graft_model *tiny_cnn(void)
{
	struct graft_model *m = tm_load(tm_tiny_cnn());
	Onnx__TensorShapeProto *sh = m->proto->graph->input[0]->type->tensor_type->shape;

	sh->dim[2]->dim_value = 6;
	sh->dim[3]->dim_value = 6;
	return m;
}

/*
 * x (N,4) -> MatMul(Constant W [4,3]) -> Add(Constant b [3]) -> Softmax -> y (N,3): the
 * classifier of PaddleOCR's exports, whose weights are Constant nodes.
 */
static struct graft_model *matmul_model(void)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {-1, 4}, yd[] = {-1, 3}, wd[] = {4, 3}, bd[] = {3};
	float w[12], b[3] = {0.1f, 0.2f, 0.3f};
	Onnx__TensorProto *t;
	Onnx__NodeProto *n;

	for (int i = 0; i < 12; i++)
		w[i] = (float)i / 10;
	tm_input(mp, "x", 1, 2, xd);
	tm_output(mp, "y", 1, 2, yd);
	n = tm_node(mp, "Constant", "wc", NULL, (const char *[]){"W", NULL});
	t = tm_tensor(NULL, 1, 2, wd);
	tm_raw(t, w, sizeof(w));
	tm_attr_tensor(n, "value", t);
	n = tm_node(mp, "Constant", "bc", NULL, (const char *[]){"b", NULL});
	t = tm_tensor(NULL, 1, 1, bd);
	tm_raw(t, b, sizeof(b));
	tm_attr_tensor(n, "value", t);
	tm_node(mp, "MatMul", "mm", (const char *[]){"x", "W", NULL}, (const char *[]){"p", NULL});
	tm_node(mp, "Add", "add", (const char *[]){"p", "b", NULL}, (const char *[]){"q", NULL});
	n = tm_node(mp, "Softmax", "sm", (const char *[]){"q", NULL}, (const char *[]){"y", NULL});
	tm_attr_int(n, "axis", 1);
	return tm_load(mp);
}

static const struct graft_tensor *tensor(const struct graft_model *m, const char *name,
					 struct graft_tensor *t)
{
	long i = graft_model_find_tensor(m, name);

	if (i < 0)
		return NULL;
	graft_model_tensor(m, (size_t)i, t);
	return t;
}

static void node(const struct graft_model *m, size_t i, const char *op, const char *name)
{
	struct graft_node n;

	assert_true(i < graft_model_node_count(m));
	graft_model_node(m, i, &n);
	assert_string_equal(n.op_type, op);
	assert_string_equal(n.name, name);
}

/* Runs m on an (N, ...) input of the given shape and returns output 0's shape. */
static void run(const struct graft_model *m, int rank, const int64_t *dims,
		struct graft_array *out, float *copy, size_t n_copy)
{
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_array x = {0};
	size_t numel = 1;

	x.dtype = GRAFT_FLOAT;
	x.rank = rank;
	for (int d = 0; d < rank; d++)
		numel *= (size_t)(x.dims[d] = dims[d]);
	x.nbytes = numel * sizeof(float);
	x.data = malloc(x.nbytes);
	for (size_t i = 0; i < numel; i++)
		((float *)x.data)[i] = (float)((i * 7) % 11) / 11 - 0.4f;
	if (graft_net_new(&net, m, &err) || graft_net_run(net, &x, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, out);
	assert_int_equal(out->nbytes, n_copy * sizeof(float));
	memcpy(copy, out->data, out->nbytes);
	graft_net_free(net);
	free(x.data);
}

static void declared_output(const struct graft_model *m, int64_t classes)
{
	struct graft_value_info vi;

	assert_int_equal(graft_model_output_count(m), 1);
	graft_model_output(m, 0, &vi);
	assert_string_equal(vi.name, "y");
	assert_int_equal(vi.rank, 2);
	assert_int_equal(vi.dims[0], -1);
	assert_string_equal(vi.dim_params[0], "batch");
	assert_int_equal(vi.dims[1], classes);
}

static void test_replaces_gemm(void **state)
{
	struct graft_model *m = tiny_cnn();
	struct graft_head_opts o = {.classes = 5};
	struct graft_head_info info;
	struct graft_err err = {0};
	struct graft_tensor t;
	struct graft_array y;
	size_t nodes = graft_model_node_count(m);
	float out[10];
	double sum2 = 0;

	(void)state;
	assert_int_equal(graft_head_attach(m, &o, &info, &err), 0);
	assert_string_equal(info.prefix, "head.0");
	assert_string_equal(info.replaced, "fc");
	assert_int_equal(info.in_features, 48);
	assert_int_equal(info.old_classes, 3);
	assert_int_equal(info.nodes_removed, 1);
	assert_int_equal(info.tensors_removed, 2);
	/* the old weights are gone; the Gemm's place is the new one's, computing y */
	assert_null(tensor(m, "fcW", &t));
	assert_null(tensor(m, "fcB", &t));
	assert_int_equal(graft_model_node_count(m), nodes);
	node(m, nodes - 1, "Gemm", "head.0.fc");
	assert_non_null(tensor(m, "head.0.fc.weight", &t));
	assert_int_equal(t.rank, 2);
	assert_int_equal(t.dims[0], 5);
	assert_int_equal(t.dims[1], 48);
	assert_int_equal(t.role, GRAFT_ROLE_PARAMETER);
	assert_int_equal(t.trainable, 1);
	for (uint64_t i = 0; i < t.numel; i++) {
		float v = ((const float *)t.data)[i];
		assert_true(v != 0 && isfinite(v));
		sum2 += (double)v * v;
	}
	/* He: standard deviation sqrt(2 / 48) = 0.204; 240 draws give it within 15% */
	assert_true(fabs(sqrt(sum2 / (double)t.numel) / sqrt(2.0 / 48) - 1) < 0.15);
	assert_non_null(tensor(m, "head.0.fc.bias", &t));
	assert_int_equal(t.numel, 5);
	for (int i = 0; i < 5; i++)
		assert_true(((const float *)t.data)[i] == 0);
	/* the rest keeps its flags and data */
	assert_non_null(tensor(m, "mulv", &t));
	assert_int_equal(t.source, GRAFT_SOURCE_CONSTANT);
	declared_output(m, 5);
	run(m, 4, (int64_t[]){2, 2, 6, 6}, &y, out, 10);
	assert_int_equal(y.rank, 2);
	assert_int_equal(y.dims[0], 2);
	assert_int_equal(y.dims[1], 5);
	graft_model_free(m);
}

/* The weight bytes of the head a seed and an initialisation give. */
static void head_weights(enum graft_head_init init, uint64_t seed, float *w, size_t n)
{
	struct graft_model *m = tiny_cnn();
	struct graft_head_opts o = {.classes = 5, .init = init, .seed = seed};
	struct graft_err err = {0};
	struct graft_tensor t;

	if (graft_head_attach(m, &o, NULL, &err))
		fail_msg("%s", err.msg);
	assert_non_null(tensor(m, "head.0.fc.weight", &t));
	assert_int_equal(t.numel, n);
	memcpy(w, t.data, n * sizeof(float));
	graft_model_free(m);
}

static void test_seeded_weights(void **state)
{
	float a[240], b[240], c[240], x[240], bound = (float)sqrt(6.0 / (48 + 5)), top = 0;

	(void)state;
	head_weights(GRAFT_HEAD_HE, 7, a, 240);
	head_weights(GRAFT_HEAD_HE, 7, b, 240);
	head_weights(GRAFT_HEAD_HE, 8, c, 240);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
	head_weights(GRAFT_HEAD_XAVIER, 7, x, 240);
	for (int i = 0; i < 240; i++) {
		assert_true(x[i] != 0 && fabsf(x[i]) <= bound);
		top = fmaxf(top, fabsf(x[i]));
	}
	assert_true(top > 0.9f * bound);        /* uniform over the whole range */
}

static void test_cut_at_feature_map(void **state)
{
	struct graft_model *m = tiny_cnn();
	struct graft_head_opts o = {.classes = 5, .at = "r"};
	struct graft_head_info info;
	struct graft_err err = {0};
	struct graft_tensor t;
	struct graft_array y;
	float out[15];
	static const char *const gone[] = {"shape", "fcW", "fcB", "mulv", "eps"};
	static const char *const kept[] = {"W", "B", "scale", "bias", "mean", "i8", "u32", "f16"};

	(void)state;
	assert_int_equal(graft_head_attach(m, &o, &info, &err), 0);
	assert_int_equal(info.in_features, 3);
	/* Reshape, Constant, Mul, Constant, Add and the old Gemm */
	assert_int_equal(info.nodes_removed, 6);
	assert_int_equal(info.tensors_removed, 5);
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		assert_null(tensor(m, gone[i], &t));
	/* unused before, so not ours to remove */
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		assert_non_null(tensor(m, kept[i], &t));
	assert_int_equal(graft_model_node_count(m), 7);
	node(m, 0, "Identity", "alias");
	node(m, 3, "Relu", "relu");
	node(m, 4, "GlobalAveragePool", "head.0.pool");
	node(m, 5, "Flatten", "head.0.flatten");
	node(m, 6, "Gemm", "head.0.fc");
	assert_non_null(tensor(m, "head.0.fc.weight", &t));
	assert_int_equal(t.dims[0], 5);
	assert_int_equal(t.dims[1], 3);
	declared_output(m, 5);
	run(m, 4, (int64_t[]){3, 2, 6, 6}, &y, out, 15);
	assert_int_equal(y.dims[0], 3);
	assert_int_equal(y.dims[1], 5);
	graft_model_free(m);
}

static void test_hidden_and_dropout(void **state)
{
	struct graft_model *m = tiny_cnn();
	struct graft_head_opts o = {.classes = 4, .hidden = 8, .dropout = 0.25,
				    .init = GRAFT_HEAD_XAVIER};
	struct graft_err err = {0};
	struct graft_tensor t;
	struct graft_node n;
	struct graft_array y;
	size_t nodes = graft_model_node_count(m);
	float out[8];

	(void)state;
	assert_int_equal(graft_head_attach(m, &o, NULL, &err), 0);
	assert_int_equal(graft_model_node_count(m), nodes + 3);
	node(m, nodes - 1, "Gemm", "head.0.fc1");
	node(m, nodes, "Relu", "head.0.relu");
	node(m, nodes + 1, "Dropout", "head.0.dropout");
	node(m, nodes + 2, "Gemm", "head.0.fc2");
	/* opset 13: the ratio is an input, a constant scalar */
	graft_model_node(m, nodes + 1, &n);
	assert_int_equal(n.n_inputs, 2);
	assert_string_equal(n.inputs[0], "head.0.relu");
	assert_non_null(tensor(m, n.inputs[1], &t));
	assert_int_equal(t.rank, 0);
	assert_true(*(const float *)t.data == 0.25f);
	assert_int_equal(t.role, GRAFT_ROLE_CONSTANT);
	assert_int_equal(t.trainable, 0);
	assert_non_null(tensor(m, "head.0.fc1.weight", &t));
	assert_int_equal(t.dims[0], 8);
	assert_int_equal(t.dims[1], 48);
	assert_non_null(tensor(m, "head.0.fc2.weight", &t));
	assert_int_equal(t.dims[0], 4);
	assert_int_equal(t.dims[1], 8);
	declared_output(m, 4);
	run(m, 4, (int64_t[]){2, 2, 6, 6}, &y, out, 8);
	assert_int_equal(y.dims[1], 4);
	graft_model_free(m);
}

static void test_matmul_add_in_constants(void **state)
{
	struct graft_model *m = matmul_model();
	struct graft_head_opts o = {.classes = 5};
	struct graft_head_info info;
	struct graft_err err = {0};
	struct graft_tensor t;
	struct graft_array y;
	float out[10];

	(void)state;
	assert_int_equal(graft_model_tensor_count(m), 2);
	assert_int_equal(graft_head_attach(m, &o, &info, &err), 0);
	assert_string_equal(info.replaced, "mm");
	assert_int_equal(info.in_features, 4);
	assert_int_equal(info.old_classes, 3);
	/* MatMul, Add and both Constants, with their stored tensors */
	assert_int_equal(info.nodes_removed, 4);
	assert_int_equal(info.tensors_removed, 2);
	assert_null(tensor(m, "W", &t));
	assert_null(tensor(m, "b", &t));
	assert_int_equal(graft_model_node_count(m), 3);
	node(m, 0, "MatMul", "head.0.fc.matmul");
	node(m, 1, "Add", "head.0.fc.add");
	node(m, 2, "Softmax", "sm");
	assert_non_null(tensor(m, "head.0.fc.weight", &t));
	assert_int_equal(t.dims[0], 4);         /* the MatMul form: [in, classes] */
	assert_int_equal(t.dims[1], 5);
	assert_int_equal(t.source, GRAFT_SOURCE_INITIALIZER);
	declared_output(m, 5);
	run(m, 2, (int64_t[]){2, 4}, &y, out, 10);
	for (int r = 0; r < 2; r++) {
		float s = 0;
		for (int k = 0; k < 5; k++)
			s += out[r * 5 + k];
		assert_true(fabsf(s - 1) < 1e-5f);
	}
	graft_model_free(m);
}

static void test_second_head_gets_next_prefix(void **state)
{
	struct graft_model *m = tiny_cnn();
	struct graft_head_opts o = {.classes = 5, .hidden = 6};
	struct graft_head_info info;
	struct graft_err err = {0};
	struct graft_tensor t;

	(void)state;
	assert_int_equal(graft_head_attach(m, &o, NULL, &err), 0);
	o.hidden = 0;
	o.classes = 2;
	assert_int_equal(graft_head_attach(m, &o, &info, &err), 0);
	assert_string_equal(info.prefix, "head.1");
	assert_string_equal(info.replaced, "head.0.fc2");
	assert_int_equal(info.in_features, 6);
	assert_non_null(tensor(m, "head.0.fc1.weight", &t));
	assert_null(tensor(m, "head.0.fc2.weight", &t));
	assert_non_null(tensor(m, "head.1.fc.weight", &t));
	declared_output(m, 2);
	graft_model_free(m);
}

/* Each refusal names the problem and changes nothing. */
static void refuse(struct graft_model *m, const struct graft_head_opts *o, int code,
		   const char *msg)
{
	struct graft_err err = {0};
	size_t nodes = graft_model_node_count(m), tensors = graft_model_tensor_count(m);
	uint64_t size = graft_model_onnx_size(m);

	assert_int_equal(graft_head_attach(m, o, NULL, &err), code);
	if (!strstr(err.msg, msg))
		fail_msg("'%s' lacks '%s'", err.msg, msg);
	assert_int_equal(graft_model_node_count(m), nodes);
	assert_int_equal(graft_model_tensor_count(m), tensors);
	assert_int_equal(graft_model_onnx_size(m), size);
}

static void test_refusals(void **state)
{
	struct graft_model *m = tiny_cnn();

	(void)state;
	refuse(m, &(struct graft_head_opts){.classes = 0}, GRAFT_EINVAL, "classes");
	refuse(m, &(struct graft_head_opts){.classes = 2, .dropout = 1}, GRAFT_EINVAL, "dropout");
	refuse(m, &(struct graft_head_opts){.classes = 2, .at = "nope"}, GRAFT_EINVAL,
	       "no value named 'nope'");
	refuse(m, &(struct graft_head_opts){.classes = 2, .at = "y"}, GRAFT_EINVAL,
	       "cannot cut at 'y'");
	refuse(m, &(struct graft_head_opts){.classes = 2, .at = "fcW"}, GRAFT_EINVAL,
	       "stored tensor");
	graft_model_free(m);

	/* x (N,2,3) -> Relu -> y, then the same with x (N,2,L) */
	for (int symbolic = 0; symbolic < 2; symbolic++) {
		Onnx__ModelProto *mp = tm_model(13);
		int64_t xd[] = {-1, 2, symbolic ? -1 : 3};
		tm_input(mp, "x", 1, 3, xd);
		tm_output(mp, "y", 1, 3, xd);
		tm_node(mp, "Relu", "relu", (const char *[]){"x", NULL},
			(const char *[]){"y", NULL});
		m = tm_load(mp);
		refuse(m, &(struct graft_head_opts){.classes = 2}, GRAFT_EUNSUPPORTED,
		       "no final classifier: the output comes from Relu node 'relu', not a Gemm, "
		       "a MatMul and Add, or a 1x1 Conv and global pooling (an encoder's hidden "
		       "states: --at them)");
		if (symbolic)
			refuse(m, &(struct graft_head_opts){.classes = 2, .at = "x"},
			       GRAFT_EUNSUPPORTED, "input 'x': dim 2 is symbolic");
		graft_model_free(m);
	}
}

/* An encoder: x (N,3,4) -> Relu -> h (N,3,4), output 0; h -> ReduceMean over the tokens
 * -> pooled (N,4), output 1; no classifier. */
static struct graft_model *encoder(void)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {-1, 3, 4}, pd[] = {-1, 4};
	Onnx__NodeProto *n;

	tm_input(mp, "x", 1, 3, xd);
	tm_output(mp, "h", 1, 3, xd);
	tm_output(mp, "pooled", 1, 2, pd);
	tm_node(mp, "Relu", "relu", (const char *[]){"x", NULL}, (const char *[]){"h", NULL});
	n = tm_node(mp, "ReduceMean", "mean", (const char *[]){"h", NULL},
		    (const char *[]){"pooled", NULL});
	tm_attr_ints(n, "axes", (int64_t[]){1}, 1);
	tm_attr_int(n, "keepdims", 0);
	return tm_load(mp);
}

/* The head on an encoder: without --at, its pooled output; with --at its hidden states,
 * their first token ([CLS]).  Either way a new output, logits, and the old ones gone. */
static void test_encoder(void **state)
{
	static const int64_t xd[] = {2, 3, 4};
	struct graft_head_info info;
	struct graft_err err = {0};
	struct graft_array y;
	struct graft_tensor w, b;
	float got[2 * 5], x[2 * 3 * 4];
	(void)state;

	for (size_t i = 0; i < 24; i++)         /* run()'s input */
		x[i] = (float)((i * 7) % 11) / 11 - 0.4f;
	for (int cls = 0; cls < 2; cls++) {
		struct graft_model *m = encoder();
		if (graft_head_attach(m, &(struct graft_head_opts){.classes = 5, .seed = 3,
				      .at = cls ? "h" : NULL}, &info, &err))
			fail_msg("%s", err.msg);
		assert_string_equal(info.at, cls ? "h" : "pooled");
		assert_string_equal(info.output, "logits");
		assert_int_equal(info.token, cls);
		assert_int_equal(info.in_features, 4);
		struct graft_value_info vi;
		assert_int_equal(graft_model_output_count(m), 1);
		graft_model_output(m, 0, &vi);
		assert_string_equal(vi.name, "logits");
		assert_int_equal(vi.rank, 2);
		assert_int_equal(vi.dims[1], 5);
		run(m, 3, xd, &y, got, 10);
		tensor(m, "head.0.fc.weight", &w);
		tensor(m, "head.0.fc.bias", &b);
		for (int n = 0; n < 2; n++)
			for (int k = 0; k < 5; k++) {
				double want = ((const float *)b.data)[k];
				for (int c = 0; c < 4; c++) {
					double f = 0;       /* the token's, or the mean over the three */
					for (int t = 0; t < (cls ? 1 : 3); t++)
						f += fmax(0, x[(n * 3 + t) * 4 + c]);
					want += ((const float *)w.data)[k * 4 + c] * f / (cls ? 1 : 3);
				}
				assert_true(fabs(got[n * 5 + k] - want) < 1e-5);
			}
		graft_model_free(m);
	}
}

/* --flatten --sigmoid at hidden states (a wake-word head over 3 embeddings of 4): the
 * (N, T, H) value flattened to (N, 12), then one score through a Sigmoid, as
 * sigmoid(W . flatten(relu(x)) + b); --flatten elsewhere, or with --mean, is refused. */
static void test_flatten_sigmoid(void **state)
{
	static const int64_t xd[] = {2, 3, 4};
	struct graft_head_info info;
	struct graft_err err = {0};
	struct graft_array y;
	struct graft_tensor w, b;
	struct graft_model *m = encoder();
	float got[2], x[2 * 3 * 4];
	(void)state;

	for (size_t i = 0; i < 24; i++)         /* run()'s input */
		x[i] = (float)((i * 7) % 11) / 11 - 0.4f;
	if (graft_head_attach(m, &(struct graft_head_opts){.classes = 1, .seed = 3, .at = "h",
			      .flatten = 1, .sigmoid = 1}, &info, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(info.token, 3);
	assert_int_equal(info.in_features, 12);
	node(m, graft_model_node_count(m) - 1, "Sigmoid", "head.0.sigmoid");
	run(m, 3, xd, &y, got, 2);
	tensor(m, "head.0.fc.weight", &w);
	tensor(m, "head.0.fc.bias", &b);
	for (int n = 0; n < 2; n++) {
		double z = ((const float *)b.data)[0];
		for (int j = 0; j < 12; j++)
			z += ((const float *)w.data)[j] * fmax(0, x[n * 12 + j]);
		assert_true(fabs(got[n] - 1 / (1 + exp(-z))) < 1e-6);
	}
	graft_model_free(m);
	m = encoder();
	refuse(m, &(struct graft_head_opts){.classes = 1, .flatten = 1}, GRAFT_EINVAL,
	       "--flatten");
	refuse(m, &(struct graft_head_opts){.classes = 1, .at = "h", .flatten = 1,
	       .mean_mask = "x"}, GRAFT_EINVAL, "not both");
	graft_model_free(m);
}

/* --mean: the mean over the tokens a mask input marks; a sample with none gives the bias. */
static void test_masked_mean(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {-1, 3, 4}, md[] = {-1, 3};
	struct graft_head_info info;
	struct graft_err err = {0};
	struct graft_net *net;
	struct graft_array y, in[2];
	struct graft_tensor w, b;
	float x[2 * 3 * 4];
	int64_t mask[2 * 3] = {1, 1, 0, 0, 0, 0};
	(void)state;

	tm_input(mp, "x", 1, 3, xd);
	tm_input(mp, "mask", GRAFT_INT64, 2, md);
	tm_output(mp, "h", 1, 3, xd);
	tm_node(mp, "Relu", "relu", (const char *[]){"x", NULL}, (const char *[]){"h", NULL});
	struct graft_model *m = tm_load(mp);
	assert_int_equal(graft_head_attach(m, &(struct graft_head_opts){.classes = 2, .at = "h",
				.mean_mask = "nope"}, &info, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "no model input named 'nope'"));
	if (graft_head_attach(m, &(struct graft_head_opts){.classes = 2, .at = "h",
			      .mean_mask = "mask"}, &info, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(info.token, 2);
	for (size_t i = 0; i < 24; i++)
		x[i] = (float)((i * 7) % 11) / 11 - 0.4f;
	in[0] = (struct graft_array){.dtype = GRAFT_FLOAT, .rank = 3, .dims = {2, 3, 4}, .data = x,
				     .nbytes = sizeof(x)};
	in[1] = (struct graft_array){.dtype = GRAFT_INT64, .rank = 2, .dims = {2, 3},
				     .data = mask, .nbytes = sizeof(mask)};
	if (graft_net_new(&net, m, &err) || graft_net_run(net, in, 2, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	tensor(m, "head.0.fc.weight", &w);
	tensor(m, "head.0.fc.bias", &b);
	for (int n = 0; n < 2; n++)
		for (int k = 0; k < 2; k++) {
			double want = ((const float *)b.data)[k];
			for (int c = 0; c < 4 && n == 0; c++) {       /* sample 1: no token */
				double f = (fmax(0, x[c]) + fmax(0, x[4 + c])) / 2;
				want += ((const float *)w.data)[k * 4 + c] * f;
			}
			assert_true(fabs(((const float *)y.data)[n * 2 + k] - want) < 1e-5);
		}
	graft_net_free(net);
	graft_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replaces_gemm),
		cmocka_unit_test(test_seeded_weights),
		cmocka_unit_test(test_cut_at_feature_map),
		cmocka_unit_test(test_hidden_and_dropout),
		cmocka_unit_test(test_matmul_add_in_constants),
		cmocka_unit_test(test_second_head_gets_next_prefix),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_encoder),
		cmocka_unit_test(test_masked_mean),
		cmocka_unit_test(test_flatten_sigmoid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
