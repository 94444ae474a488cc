/*
 * test_grad_shape.c: backward of the data-movement ops (reshape.c, join.c, index.c)
 * against finite differences, for every form of their attributes and inputs: Reshape
 * (shape input, shape attribute, allowzero), Flatten, Squeeze and Unsqueeze (axes as
 * attribute and as input), Transpose, Concat, Split (an output nobody reads), Slice
 * (attributes, inputs, negative steps), Gather (repeated and negative indices),
 * GatherElements, Expand, Tile, Pad (constant with cropping, edge, reflect, wrap; pads as
 * attribute and input, axes), DepthToSpace, SpaceToDepth, and Cast (eltwise.c).
 *
 * Integer inputs (shapes, axes, pads, indices) are initializers; float data are graph
 * inputs, whose gradients gradcheck compares.  Small tensors are compared element by
 * element; tensors large enough to take the kernels' multithreaded paths are sampled.
 * Each case asserts the exact number of elements compared.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "testmodel.h"

/* Elements compared per tensor: every one of a small case's, a sample of a big one's
 * (any tensor above SMALL elements), spread over the tensor. */
#define SMALL 512
#define SAMPLE 96

/* A one-node model under construction and the inputs it will be run with. */
struct tcase {
	Onnx__ModelProto *mp;
	struct graft_array in[4];
	size_t n_in;
	uint64_t numel[8];      /* of each differentiated tensor */
	size_t n_diff;
	size_t total;           /* compared so far in this test */
};

static uint64_t numel(int rank, const int64_t *dims)
{
	uint64_t n = 1;

	for (int i = 0; i < rank; i++)
		n *= (uint64_t)dims[i];
	return n;
}

static void begin(struct tcase *t, int64_t opset)
{
	t->mp = tm_model(opset);
	t->n_in = 0;
	t->n_diff = 0;
}

/* A float graph input, differentiated. */
static void input(struct tcase *t, const char *name, int rank, const int64_t *dims)
{
	tm_input(t->mp, name, 1, rank, dims);
	t->in[t->n_in] = gradcheck_input(rank, dims, -1, 1, 7 + t->n_in);
	t->n_in++;
	t->numel[t->n_diff++] = numel(rank, dims);
}

/* A float initializer: a trainable parameter when it has more than one element. */
static void param(struct tcase *t, const char *name, int rank, const int64_t *dims)
{
	struct graft_array a = gradcheck_input(rank, dims, -1, 1, 99);
	Onnx__TensorProto *tp = tm_tensor(name, 1, rank, dims);
	uint64_t n = numel(rank, dims);

	tm_float_data(tp, a.data, (size_t)n);
	tm_initializer(t->mp, tp);
	free(a.data);
	if (n > 1)
		t->numel[t->n_diff++] = n;
}

/* An int64 initializer of rank 1, or rank 0 when n is 0 (then v holds one value). */
static void ints(struct tcase *t, const char *name, const int64_t *v, int64_t n)
{
	Onnx__TensorProto *tp = tm_tensor(name, 7, n ? 1 : 0, &n);

	tm_int64_data(tp, v, n ? (size_t)n : 1);
	tm_initializer(t->mp, tp);
}

/* An int32 initializer of the given shape. */
static void ints32(struct tcase *t, const char *name, const int32_t *v, int rank,
		   const int64_t *dims)
{
	Onnx__TensorProto *tp = tm_tensor(name, 6, rank, dims);

	tm_int32_data(tp, v, (size_t)numel(rank, dims));
	tm_initializer(t->mp, tp);
}

static void output(struct tcase *t, const char *name, int rank, const int64_t *dims)
{
	tm_output(t->mp, name, 1, rank, dims);
}

static Onnx__NodeProto *node(struct tcase *t, const char *op, const char *const *ins,
			     const char *const *outs)
{
	return tm_node(t->mp, op, "n", ins, outs);
}

static void attr_string(Onnx__NodeProto *n, const char *name, const char *value)
{
	Onnx__AttributeProto *a = malloc(sizeof(*a));

	onnx__attribute_proto__init(a);
	a->name = strdup(name);
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
	a->has_s = 1;
	a->s.len = strlen(value);
	a->s.data = (uint8_t *)strdup(value);
	n->attribute = realloc(n->attribute, sizeof(*n->attribute) * (n->n_attribute + 1));
	n->attribute[n->n_attribute++] = a;
}

/* Runs gradcheck on the case (freeing its model) and asserts the count compared. */
static void run(struct tcase *t)
{
	struct gradcheck_opts o = {.max_elems = SMALL};
	size_t checked = 0, expect = 0;

	for (size_t i = 0; i < t->n_diff; i++)
		if (t->numel[i] > SMALL)
			o.max_elems = SAMPLE;
	for (size_t i = 0; i < t->n_diff; i++)
		expect += t->numel[i] < o.max_elems ? (size_t)t->numel[i] : o.max_elems;
	gradcheck(t->mp, t->in, t->n_in, &o, &checked);
	assert_int_equal(checked, expect);
	assert_true(checked > 0);
	t->total += checked;
	for (size_t i = 0; i < t->n_in; i++)
		free(t->in[i].data);
}

/* x (rank, xd) -> op(x, extra inputs) -> y (yr, yd); ins lists the node's inputs. */
static Onnx__NodeProto *unary(struct tcase *t, const char *op, int rank, const int64_t *xd,
			      int yr, const int64_t *yd, const char *const *ins)
{
	input(t, "x", rank, xd);
	output(t, "y", yr, yd);
	return node(t, op, ins, (const char *[]){"y", NULL});
}

#define X_ONLY ((const char *[]){"x", NULL})
#define DONE(t, what) print_message("%-16s %zu elements compared\n", what, (t).total)

static void test_reshape(void **state)
{
	const int64_t xd[] = {2, 3, 4}, y1[] = {6, 4}, s1[] = {6, -1}, y2[] = {2, 12};
	const int64_t s2[] = {0, 12}, y3[] = {4, 6}, s3[] = {4, 6};
	struct tcase t = {0};
	(void)state;

	begin(&t, 13);                  /* shape input, with -1 */
	ints(&t, "shape", s1, 2);
	unary(&t, "Reshape", 3, xd, 2, y1, (const char *[]){"x", "shape", NULL});
	run(&t);
	begin(&t, 14);                  /* 0 copies the input's dim */
	ints(&t, "shape", s2, 2);
	tm_attr_int(unary(&t, "Reshape", 3, xd, 2, y2, (const char *[]){"x", "shape", NULL}),
		    "allowzero", 0);
	run(&t);
	begin(&t, 14);
	ints(&t, "shape", s3, 2);
	tm_attr_int(unary(&t, "Reshape", 3, xd, 2, y3, (const char *[]){"x", "shape", NULL}),
		    "allowzero", 1);
	run(&t);
	begin(&t, 4);                   /* the shape attribute of opset < 5 */
	tm_attr_ints(unary(&t, "Reshape", 3, xd, 2, y1, X_ONLY), "shape", s1, 2);
	run(&t);
	DONE(t, "Reshape");
}

static void test_flatten(void **state)
{
	const int64_t xd[] = {2, 3, 4}, y1[] = {2, 12}, y0[] = {1, 24}, y2[] = {6, 4};
	struct tcase t = {0};
	(void)state;

	begin(&t, 13);                  /* default axis 1 */
	unary(&t, "Flatten", 3, xd, 2, y1, X_ONLY);
	run(&t);
	begin(&t, 13);
	tm_attr_int(unary(&t, "Flatten", 3, xd, 2, y0, X_ONLY), "axis", 0);
	run(&t);
	begin(&t, 13);
	tm_attr_int(unary(&t, "Flatten", 3, xd, 2, y2, X_ONLY), "axis", -1);
	run(&t);
	begin(&t, 9);
	tm_attr_int(unary(&t, "Flatten", 3, xd, 2, y2, X_ONLY), "axis", 2);
	run(&t);
	DONE(t, "Flatten");
}

static void test_squeeze_unsqueeze(void **state)
{
	const int64_t xs[] = {2, 1, 3, 1}, ys1[] = {2, 3, 1}, ys2[] = {2, 3}, neg[] = {-3};
	const int64_t both[] = {1, 3}, xu[] = {2, 3}, yu1[] = {1, 2, 3, 1}, un[] = {0, -1};
	const int64_t yu2[] = {2, 1, 3}, one[] = {1};
	struct tcase t = {0};
	(void)state;

	begin(&t, 13);                  /* axes as input, negative */
	ints(&t, "axes", neg, 1);
	unary(&t, "Squeeze", 4, xs, 3, ys1, (const char *[]){"x", "axes", NULL});
	run(&t);
	begin(&t, 11);                  /* axes as attribute */
	tm_attr_ints(unary(&t, "Squeeze", 4, xs, 2, ys2, X_ONLY), "axes", both, 2);
	run(&t);
	begin(&t, 13);                  /* no axes: every unit axis */
	unary(&t, "Squeeze", 4, xs, 2, ys2, X_ONLY);
	run(&t);
	begin(&t, 13);
	ints(&t, "axes", un, 2);
	unary(&t, "Unsqueeze", 2, xu, 4, yu1, (const char *[]){"x", "axes", NULL});
	run(&t);
	begin(&t, 11);
	tm_attr_ints(unary(&t, "Unsqueeze", 2, xu, 3, yu2, X_ONLY), "axes", one, 1);
	run(&t);
	DONE(t, "(Un)Squeeze");
}

static void test_transpose(void **state)
{
	const int64_t xd[] = {2, 3, 4}, perm[] = {1, 2, 0}, yd[] = {3, 4, 2}, yr[] = {4, 3, 2};
	/* big enough for the tiled transpose and the threads */
	const int64_t bd[] = {2, 24, 33, 40}, bp[] = {0, 2, 3, 1}, by[] = {2, 33, 40, 24};
	const int64_t cd[] = {5, 17, 9}, cp[] = {2, 0, 1}, cy[] = {9, 5, 17};
	struct tcase t = {0};
	(void)state;

	begin(&t, 13);
	tm_attr_ints(unary(&t, "Transpose", 3, xd, 3, yd, X_ONLY), "perm", perm, 3);
	run(&t);
	begin(&t, 13);                  /* default: reversed */
	unary(&t, "Transpose", 3, xd, 3, yr, X_ONLY);
	run(&t);
	begin(&t, 13);
	tm_attr_ints(unary(&t, "Transpose", 3, cd, 3, cy, X_ONLY), "perm", cp, 3);
	run(&t);
	begin(&t, 13);
	tm_attr_ints(unary(&t, "Transpose", 4, bd, 4, by, X_ONLY), "perm", bp, 4);
	run(&t);
	DONE(t, "Transpose");
}

static void test_concat(void **state)
{
	const int64_t ad[] = {2, 3, 4}, bd[] = {2, 2, 4}, cd[] = {2, 1, 4}, yd[] = {2, 6, 4};
	const int64_t r0[] = {3, 4}, r1[] = {1, 4}, y0[] = {4, 4};
	const int64_t u[] = {1, 3}, c1[] = {1, 1}, uy[] = {1, 4};
	const int64_t big[] = {160, 130}, bigy[] = {160, 260};
	struct tcase t = {0};
	(void)state;

	begin(&t, 13);                  /* negative axis, a trainable initializer among them */
	input(&t, "a", 3, ad);
	input(&t, "b", 3, bd);
	param(&t, "c", 3, cd);
	output(&t, "y", 3, yd);
	tm_attr_int(node(&t, "Concat", (const char *[]){"a", "c", "b", NULL},
			 (const char *[]){"y", NULL}), "axis", -2);
	run(&t);
	begin(&t, 4);                   /* axis 0: one slab per input */
	input(&t, "a", 2, r0);
	input(&t, "b", 2, r1);
	output(&t, "y", 2, y0);
	tm_attr_int(node(&t, "Concat", (const char *[]){"a", "b", NULL},
			 (const char *[]){"y", NULL}), "axis", 0);
	run(&t);
	begin(&t, 13);                  /* a one-element constant: no gradient to give */
	input(&t, "a", 2, u);
	param(&t, "k", 2, c1);
	output(&t, "y", 2, uy);
	tm_attr_int(node(&t, "Concat", (const char *[]){"k", "a", NULL},
			 (const char *[]){"y", NULL}), "axis", 1);
	run(&t);
	begin(&t, 13);                  /* the threaded path */
	input(&t, "a", 2, big);
	input(&t, "b", 2, big);
	output(&t, "y", 2, bigy);
	tm_attr_int(node(&t, "Concat", (const char *[]){"a", "b", NULL},
			 (const char *[]){"y", NULL}), "axis", -1);
	run(&t);
	DONE(t, "Concat");
}

static void test_split(void **state)
{
	const int64_t xd[] = {2, 5, 4}, y1[] = {2, 3, 4}, sizes[] = {2, 3};
	const int64_t ed[] = {3, 6}, ey[] = {3, 2}, nd[] = {2, 7}, n0[] = {2, 3}, n2[] = {2, 1};
	const int64_t big[] = {300, 130}, bs[] = {50, 80}, by[] = {300, 80};
	struct tcase t = {0};
	(void)state;

	/* Split-13, sizes as input; only the second output is read, so the first's
	 * gradient is zero */
	begin(&t, 13);
	ints(&t, "split", sizes, 2);
	input(&t, "x", 3, xd);
	output(&t, "y1", 3, y1);
	tm_attr_int(node(&t, "Split", (const char *[]){"x", "split", NULL},
			 (const char *[]){"y0", "y1", NULL}), "axis", 1);
	run(&t);
	/* Split-11, sizes as attribute, negative axis */
	begin(&t, 11);
	input(&t, "x", 3, xd);
	output(&t, "y0", 3, (const int64_t[]){2, 5, 1});
	output(&t, "y1", 3, (const int64_t[]){2, 5, 3});
	Onnx__NodeProto *n = node(&t, "Split", X_ONLY, (const char *[]){"y0", "y1", NULL});
	tm_attr_int(n, "axis", -1);
	tm_attr_ints(n, "split", (const int64_t[]){1, 3}, 2);
	run(&t);
	/* equal parts; the middle one unread */
	begin(&t, 13);
	input(&t, "x", 2, ed);
	output(&t, "a", 2, ey);
	output(&t, "c", 2, ey);
	tm_attr_int(node(&t, "Split", X_ONLY, (const char *[]){"a", "b", "c", NULL}), "axis", 1);
	run(&t);
	/* Split-18 num_outputs: chunks of 3, 3, 1 */
	begin(&t, 18);
	input(&t, "x", 2, nd);
	output(&t, "a", 2, n0);
	output(&t, "c", 2, n2);
	n = node(&t, "Split", X_ONLY, (const char *[]){"a", "b", "c", NULL});
	tm_attr_int(n, "axis", 1);
	tm_attr_int(n, "num_outputs", 3);
	run(&t);
	/* threaded: one output read, one not */
	begin(&t, 13);
	ints(&t, "split", bs, 2);
	input(&t, "x", 2, big);
	output(&t, "b", 2, by);
	tm_attr_int(node(&t, "Split", (const char *[]){"x", "split", NULL},
			 (const char *[]){"a", "b", NULL}), "axis", 1);
	run(&t);
	DONE(t, "Split");
}

/* Slice-13 of x (xd) with starts, ends, axes, steps (na each; axes/steps may be NULL). */
static void slice13(struct tcase *t, int rank, const int64_t *xd, const int64_t *yd,
		    const int64_t *starts, const int64_t *ends, const int64_t *axes,
		    const int64_t *steps, int64_t na)
{
	begin(t, 13);
	ints(t, "starts", starts, na);
	ints(t, "ends", ends, na);
	if (axes)
		ints(t, "axes", axes, na);
	if (steps)
		ints(t, "steps", steps, na);
	unary(t, "Slice", rank, xd, rank, yd,
	      (const char *[]){"x", "starts", "ends", axes ? "axes" : "", steps ? "steps" : NULL,
			       NULL});
	run(t);
}

static void test_slice(void **state)
{
	const int64_t xd[] = {4, 6}, big[] = {200, 300};
	struct tcase t = {0};
	Onnx__NodeProto *n;
	(void)state;

	/* negative and positive steps */
	slice13(&t, 2, xd, (const int64_t[]){3, 3}, (const int64_t[]){3, 1},
		(const int64_t[]){0, 6}, (const int64_t[]){0, 1}, (const int64_t[]){-1, 2}, 2);
	/* negative axis, negative start, end past the axis, step -2 */
	slice13(&t, 3, (const int64_t[]){2, 3, 7}, (const int64_t[]){2, 3, 4},
		(const int64_t[]){-1}, (const int64_t[]){-100}, (const int64_t[]){-1},
		(const int64_t[]){-2}, 1);
	/* a whole axis reversed: every element read once */
	slice13(&t, 2, xd, xd, (const int64_t[]){-1}, (const int64_t[]){INT64_MIN},
		(const int64_t[]){0}, (const int64_t[]){-1}, 1);
	/* no axes or steps: the first axes in order, step 1 */
	slice13(&t, 3, (const int64_t[]){3, 4, 5}, (const int64_t[]){2, 2, 5},
		(const int64_t[]){1, 1}, (const int64_t[]){INT64_MAX, 3}, NULL, NULL, 2);
	/* Slice-10: inputs, no steps */
	begin(&t, 10);
	ints(&t, "starts", (const int64_t[]){-3}, 1);
	ints(&t, "ends", (const int64_t[]){1000}, 1);
	ints(&t, "axes", (const int64_t[]){1}, 1);
	unary(&t, "Slice", 2, xd, 2, (const int64_t[]){4, 3},
	      (const char *[]){"x", "starts", "ends", "axes", NULL});
	run(&t);
	/* Slice-9: attributes */
	begin(&t, 9);
	n = unary(&t, "Slice", 3, (const int64_t[]){3, 4, 5}, 3, (const int64_t[]){3, 2, 3},
		  X_ONLY);
	tm_attr_ints(n, "starts", (const int64_t[]){1, -4}, 2);
	tm_attr_ints(n, "ends", (const int64_t[]){3, -1}, 2);
	tm_attr_ints(n, "axes", (const int64_t[]){1, 2}, 2);
	run(&t);
	/* threaded, reversed rows */
	slice13(&t, 2, big, (const int64_t[]){190, 150}, (const int64_t[]){195, 0},
		(const int64_t[]){5, 300}, (const int64_t[]){0, 1}, (const int64_t[]){-1, 2}, 2);
	DONE(t, "Slice");
}

static void test_gather(void **state)
{
	const int64_t xd[] = {5, 4}, id[] = {2, 2}, y0[] = {2, 2, 4};
	const int64_t idx0[] = {1, -1, 1, 0};
	const int32_t idx1[] = {2, -4, 2};
	const int64_t xd1[] = {2, 4, 3}, i1[] = {3}, y1[] = {2, 3, 3};
	const int64_t scalar = -2, ys[] = {2, 4};
	const int64_t emb[] = {50, 256}, ye[] = {160, 256};
	int64_t many[160];
	struct tcase t = {0};
	(void)state;

	begin(&t, 13);                  /* axis 0, 2-D indices, repeated and negative */
	Onnx__TensorProto *tp = tm_tensor("idx", 7, 2, id);
	tm_int64_data(tp, idx0, 4);
	tm_initializer(t.mp, tp);
	unary(&t, "Gather", 2, xd, 3, y0, (const char *[]){"x", "idx", NULL});
	run(&t);
	begin(&t, 11);                  /* int32 indices along axis 1 */
	ints32(&t, "idx", idx1, 1, i1);
	tm_attr_int(unary(&t, "Gather", 3, xd1, 3, y1, (const char *[]){"x", "idx", NULL}),
		    "axis", 1);
	run(&t);
	begin(&t, 13);                  /* a scalar index along axis -1: the axis goes */
	ints(&t, "idx", &scalar, 0);
	tm_attr_int(unary(&t, "Gather", 3, xd1, 2, ys, (const char *[]){"x", "idx", NULL}),
		    "axis", -1);
	run(&t);
	begin(&t, 13);                  /* an embedding lookup, threaded over columns */
	for (int i = 0; i < 160; i++)
		many[i] = (i * 37) % 50 - (i % 3 == 0 ? 50 : 0);
	ints(&t, "idx", many, 160);
	unary(&t, "Gather", 2, emb, 2, ye, (const char *[]){"x", "idx", NULL});
	run(&t);
	DONE(t, "Gather");
}

static void test_gather_elements(void **state)
{
	const int64_t xd[] = {3, 4}, id[] = {3, 2}, idx[] = {0, 3, -1, -1, 2, 0};
	struct tcase t = {0};
	(void)state;

	begin(&t, 13);
	Onnx__TensorProto *tp = tm_tensor("idx", 7, 2, id);
	tm_int64_data(tp, idx, 6);
	tm_initializer(t.mp, tp);
	tm_attr_int(unary(&t, "GatherElements", 2, xd, 2, id,
			  (const char *[]){"x", "idx", NULL}), "axis", -1);
	run(&t);
	DONE(t, "GatherElements");
}

static void expand(struct tcase *t, int rank, const int64_t *xd, const int64_t *shape,
		   int64_t ns, int yr, const int64_t *yd)
{
	begin(t, 13);
	ints(t, "shape", shape, ns);
	unary(t, "Expand", rank, xd, yr, yd, (const char *[]){"x", "shape", NULL});
	run(t);
}

static void test_expand(void **state)
{
	const int64_t y[] = {2, 3, 4};
	struct tcase t = {0};
	(void)state;

	/* a new leading axis and a broadcast unit axis */
	expand(&t, 2, (const int64_t[]){3, 1}, y, 3, 3, y);
	/* a shape shorter than the input, and one that broadcasts too */
	expand(&t, 3, (const int64_t[]){2, 3, 1}, (const int64_t[]){4}, 1, 3, y);
	expand(&t, 2, (const int64_t[]){1, 4}, (const int64_t[]){3, 1, 1}, 3, 3,
	       (const int64_t[]){3, 1, 4});
	/* nothing broadcast */
	expand(&t, 3, y, (const int64_t[]){1, 1}, 2, 3, y);
	/* a scalar */
	expand(&t, 0, NULL, (const int64_t[]){2, 3}, 2, 2, (const int64_t[]){2, 3});
	/* threaded: rows repeated, then columns summed */
	expand(&t, 2, (const int64_t[]){1, 64}, (const int64_t[]){600, 64}, 2, 2,
	       (const int64_t[]){600, 64});
	expand(&t, 2, (const int64_t[]){600, 1}, (const int64_t[]){600, 64}, 2, 2,
	       (const int64_t[]){600, 64});
	DONE(t, "Expand");
}

static void test_tile(void **state)
{
	const int64_t xd[] = {2, 3, 4}, r1[] = {2, 1, 3}, y1[] = {4, 3, 12}, ones[] = {1, 1, 1};
	const int64_t bd[] = {64, 64}, br[] = {4, 2}, by[] = {256, 128};
	const int64_t tiles = 3, axis = -1, y2[] = {2, 3, 12};
	struct tcase t = {0};
	(void)state;

	begin(&t, 13);
	ints(&t, "repeats", r1, 3);
	unary(&t, "Tile", 3, xd, 3, y1, (const char *[]){"x", "repeats", NULL});
	run(&t);
	begin(&t, 13);                  /* all ones: a copy */
	ints(&t, "repeats", ones, 3);
	unary(&t, "Tile", 3, xd, 3, xd, (const char *[]){"x", "repeats", NULL});
	run(&t);
	begin(&t, 5);                   /* Tile-1: tiles and axis */
	ints(&t, "tiles", &tiles, 0);
	ints(&t, "axis", &axis, 0);
	unary(&t, "Tile", 3, xd, 3, y2, (const char *[]){"x", "tiles", "axis", NULL});
	run(&t);
	begin(&t, 13);                  /* threaded */
	ints(&t, "repeats", br, 2);
	unary(&t, "Tile", 2, bd, 2, by, (const char *[]){"x", "repeats", NULL});
	run(&t);
	DONE(t, "Tile");
}

/* Pad-13 (or opset) of x (rank 3, xd) with pads as input, mode (NULL: constant). */
static void pad(struct tcase *t, int64_t opset, const char *mode, const int64_t *xd,
		const int64_t *pads, const int64_t *yd)
{
	begin(t, opset);
	ints(t, "pads", pads, 6);
	Onnx__NodeProto *n = unary(t, "Pad", 3, xd, 3, yd, (const char *[]){"x", "pads", NULL});
	if (mode)
		attr_string(n, "mode", mode);
	run(t);
}

static void test_pad(void **state)
{
	const int64_t xd[] = {2, 3, 4}, x5[] = {2, 3, 5};
	struct tcase t = {0};
	Onnx__NodeProto *n;
	(void)state;

	/* constant, cropping (negative pads) on the last axis */
	pad(&t, 13, NULL, xd, (const int64_t[]){0, 1, -1, 0, 2, 1}, (const int64_t[]){2, 6, 4});
	/* edge and reflect: several outputs read one input */
	pad(&t, 13, "edge", xd, (const int64_t[]){0, 2, 1, 0, 1, 2}, (const int64_t[]){2, 6, 7});
	pad(&t, 13, "reflect", xd, (const int64_t[]){0, 2, 1, 0, 1, 2},
	    (const int64_t[]){2, 6, 7});
	/* cropped at one end, mirrored at the other: the mirror reaches cropped inputs */
	pad(&t, 13, "edge", x5, (const int64_t[]){0, 0, -2, 0, 0, 3}, (const int64_t[]){2, 3, 6});
	pad(&t, 13, "reflect", x5, (const int64_t[]){0, 0, -2, 0, 0, 3},
	    (const int64_t[]){2, 3, 6});
	/* every axis padded: three passes through two buffers */
	pad(&t, 13, "edge", xd, (const int64_t[]){1, 1, 1, 1, 2, 1}, (const int64_t[]){4, 6, 6});
	pad(&t, 19, "wrap", xd, (const int64_t[]){0, 1, 2, 0, 2, 1}, (const int64_t[]){2, 6, 7});
	/* no padding at all */
	pad(&t, 13, NULL, xd, (const int64_t[]){0, 0, 0, 0, 0, 0}, xd);
	/* threaded */
	pad(&t, 13, NULL, (const int64_t[]){8, 64, 64}, (const int64_t[]){0, 1, 1, 0, 1, 1},
	    (const int64_t[]){8, 66, 66});
	pad(&t, 13, "reflect", (const int64_t[]){8, 64, 64}, (const int64_t[]){0, 2, 0, 0, 1, 0},
	    (const int64_t[]){8, 67, 64});

	/* Pad-2: pads, mode and value as attributes */
	begin(&t, 2);
	n = unary(&t, "Pad", 3, xd, 3, (const int64_t[]){2, 5, 5}, X_ONLY);
	tm_attr_ints(n, "pads", (const int64_t[]){0, 1, 0, 0, 1, 1}, 6);
	tm_attr_float(n, "value", 0.5f);
	run(&t);
	begin(&t, 2);
	n = unary(&t, "Pad", 3, xd, 3, (const int64_t[]){2, 5, 4}, X_ONLY);
	tm_attr_ints(n, "pads", (const int64_t[]){0, 2, 0, 0, 0, 0}, 6);
	attr_string(n, "mode", "reflect");
	run(&t);
	/* Pad-18: axes, one negative */
	begin(&t, 18);
	ints(&t, "pads", (const int64_t[]){1, -1, 2, 1}, 4);
	ints(&t, "axes", (const int64_t[]){-1, 1}, 2);
	unary(&t, "Pad", 3, xd, 3, (const int64_t[]){2, 2, 7},
	      (const char *[]){"x", "pads", "", "axes", NULL});
	run(&t);
	/* the constant value as a graph input gets the padding's gradient */
	begin(&t, 11);
	ints(&t, "pads", (const int64_t[]){0, 1, -1, 0, 2, 1}, 6);
	input(&t, "x", 3, xd);
	input(&t, "c", 0, NULL);
	output(&t, "y", 3, (const int64_t[]){2, 6, 4});
	node(&t, "Pad", (const char *[]){"x", "pads", "c", NULL}, (const char *[]){"y", NULL});
	run(&t);
	DONE(t, "Pad");
}

static void test_depth_space(void **state)
{
	const int64_t xd[] = {2, 8, 3, 2}, yd[] = {2, 2, 6, 4};
	const int64_t sd[] = {2, 3, 4, 6}, sy[] = {2, 12, 2, 3};
	struct tcase t = {0};
	Onnx__NodeProto *n;
	(void)state;

	begin(&t, 13);                  /* DCR, the default */
	tm_attr_int(unary(&t, "DepthToSpace", 4, xd, 4, yd, X_ONLY), "blocksize", 2);
	run(&t);
	begin(&t, 13);
	n = unary(&t, "DepthToSpace", 4, xd, 4, yd, X_ONLY);
	tm_attr_int(n, "blocksize", 2);
	attr_string(n, "mode", "CRD");
	run(&t);
	begin(&t, 1);
	tm_attr_int(unary(&t, "DepthToSpace", 4, xd, 4, yd, X_ONLY), "blocksize", 2);
	run(&t);
	begin(&t, 13);
	tm_attr_int(unary(&t, "SpaceToDepth", 4, sd, 4, sy, X_ONLY), "blocksize", 2);
	run(&t);
	DONE(t, "Depth/Space");
}

static void test_cast(void **state)
{
	const int64_t xd[] = {3, 4};
	struct tcase t = {0};
	(void)state;

	begin(&t, 13);                  /* float to float: the identity */
	tm_attr_int(unary(&t, "Cast", 2, xd, 2, xd, X_ONLY), "to", 1);
	run(&t);
	begin(&t, 6);
	tm_attr_int(unary(&t, "Cast", 2, xd, 2, xd, X_ONLY), "to", 1);
	run(&t);
	/* beside it, a cast to double: that output has no gradient, and the finite
	 * difference (which reads float outputs only) agrees */
	begin(&t, 13);
	input(&t, "x", 2, xd);
	output(&t, "y", 2, xd);
	tm_output(t.mp, "d", 11, 2, xd);
	tm_attr_int(tm_node(t.mp, "Cast", "to_double", X_ONLY, (const char *[]){"d", NULL}),
		    "to", 11);
	tm_attr_int(tm_node(t.mp, "Cast", "to_float", X_ONLY, (const char *[]){"y", NULL}),
		    "to", 1);
	run(&t);
	DONE(t, "Cast");
}

/* x -> Identity -> a -> op(a, ...) -> b (brank, bd) -> Expand to (8, bd...) -> y.  In
 * backward, op's input gradient takes the pooled buffer that y's gradient (the loss
 * weights) leaves: a kernel that does not overwrite every element of it shows. */
static Onnx__NodeProto *reused(struct tcase *t, const char *op, int rank, const int64_t *xd,
			       int brank, const int64_t *bd, const char *const *ins,
			       const char *const *outs)
{
	int64_t shape[8] = {8, 1, 1, 1, 1, 1, 1, 1}, yd[8] = {8};
	Onnx__NodeProto *n;

	for (int i = 0; i < brank; i++)
		yd[i + 1] = bd[i];
	ints(t, "eshape", shape, brank + 1);
	input(t, "x", rank, xd);
	output(t, "y", brank + 1, yd);
	tm_node(t->mp, "Identity", "id", X_ONLY, (const char *[]){"a", NULL});
	n = tm_node(t->mp, op, "n", ins, outs);
	tm_node(t->mp, "Expand", "big", (const char *[]){"b", "eshape", NULL},
		(const char *[]){"y", NULL});
	return n;
}

#define B_ONLY ((const char *[]){"b", NULL})

static void test_overwrite(void **state)
{
	const int64_t xd[] = {4, 6}, b1[] = {3, 3}, gi[] = {3, 2};
	const int64_t sb[] = {4, 2}, e1[] = {4, 1}, t1[] = {4, 6};
	struct tcase t = {0};
	Onnx__NodeProto *n;
	(void)state;

	begin(&t, 13);
	ints(&t, "starts", (const int64_t[]){3, 1}, 2);
	ints(&t, "ends", (const int64_t[]){0, 6}, 2);
	ints(&t, "steps", (const int64_t[]){-1, 2}, 2);
	reused(&t, "Slice", 2, xd, 2, b1, (const char *[]){"a", "starts", "ends", "", "steps",
							  NULL}, B_ONLY);
	run(&t);
	begin(&t, 13);                  /* rows 1 and 3 never read */
	ints(&t, "idx", (const int64_t[]){0, 2, -2}, 3);
	tm_attr_int(reused(&t, "Gather", 2, (const int64_t[]){4, 2}, 2, gi,
			   (const char *[]){"a", "idx", NULL}, B_ONLY), "axis", 0);
	run(&t);
	begin(&t, 13);
	Onnx__TensorProto *tp = tm_tensor("idx", 7, 2, sb);
	tm_int64_data(tp, (const int64_t[]){0, 0, 1, 1, 0, 0, 1, 1}, 8);
	tm_initializer(t.mp, tp);
	tm_attr_int(reused(&t, "GatherElements", 2, xd, 2, sb,
			   (const char *[]){"a", "idx", NULL}, B_ONLY), "axis", 1);
	run(&t);
	begin(&t, 13);
	ints(&t, "shape", t1, 2);
	reused(&t, "Expand", 2, e1, 2, t1, (const char *[]){"a", "shape", NULL}, B_ONLY);
	run(&t);
	begin(&t, 13);
	ints(&t, "repeats", (const int64_t[]){1, 3}, 2);
	reused(&t, "Tile", 2, (const int64_t[]){4, 2}, 2, t1,
	       (const char *[]){"a", "repeats", NULL}, B_ONLY);
	run(&t);
	begin(&t, 13);                  /* cropped by a negative pad */
	ints(&t, "pads", (const int64_t[]){-1, 0, 0, -2}, 4);
	reused(&t, "Pad", 2, xd, 2, sb, (const char *[]){"a", "pads", NULL}, B_ONLY);
	run(&t);
	begin(&t, 13);                  /* Split's unread output */
	n = reused(&t, "Split", 2, xd, 2, sb, (const char *[]){"a", "split", NULL},
		   (const char *[]){"b", "unread", NULL});
	ints(&t, "split", (const int64_t[]){2, 4}, 2);
	tm_attr_int(n, "axis", 1);
	run(&t);
	DONE(t, "overwrite");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reshape),
		cmocka_unit_test(test_flatten),
		cmocka_unit_test(test_squeeze_unsqueeze),
		cmocka_unit_test(test_transpose),
		cmocka_unit_test(test_concat),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_slice),
		cmocka_unit_test(test_gather),
		cmocka_unit_test(test_gather_elements),
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_tile),
		cmocka_unit_test(test_pad),
		cmocka_unit_test(test_depth_space),
		cmocka_unit_test(test_cast),
		cmocka_unit_test(test_overwrite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
