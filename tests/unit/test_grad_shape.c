/*
 * test_grad_shape.c: backward of the data-movement ops (shape.c) against finite
 * differences: Reshape (input and attribute forms), Flatten, Squeeze and Unsqueeze (axes
 * as attribute and as input), Transpose, Concat (negative axis), Split (an output unused),
 * Slice (negative steps), Gather (repeated and negative indices), Expand, Pad (constant
 * with negative pads, edge, reflect), Cast.
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

/* An int64 initializer. */
static void ints(Onnx__ModelProto *mp, const char *name, const int64_t *v, int64_t n)
{
	Onnx__TensorProto *t = tm_tensor(name, 7, 1, &n);
	tm_int64_data(t, v, (size_t)n);
	tm_initializer(mp, t);
}

/* Runs gradcheck with float input x of shape (rank, dims) and asserts elements were
 * compared. */
static void check(Onnx__ModelProto *mp, int rank, const int64_t *dims)
{
	struct graft_array x = gradcheck_input(rank, dims, -1, 1, 11);
	size_t checked = 0;

	gradcheck(mp, &x, 1, NULL, &checked);
	assert_true(checked > 0);
	free(x.data);
}

/* x (rank, xd) -> op -> y (yr, yd), with extra inputs (initializers) named in ins[1..]. */
static Onnx__NodeProto *model1(Onnx__ModelProto *mp, const char *op, int rank,
			       const int64_t *xd, int yr, const int64_t *yd,
			       const char *const *ins)
{
	tm_input(mp, "x", 1, rank, xd);
	tm_output(mp, "y", 1, yr, yd);
	return tm_node(mp, op, "n", ins, (const char *[]){"y", NULL});
}

static void test_reshape_family(void **state)
{
	const int64_t xd[] = {2, 3, 4}, y2[] = {6, 4}, shape[] = {6, -1}, y1[] = {2, 12};
	const int64_t ax1[] = {1}, yu[] = {2, 1, 3, 4}, xs[] = {2, 1, 3, 4}, ys[] = {2, 3, 4};
	Onnx__ModelProto *mp;
	(void)state;

	mp = tm_model(13);
	ints(mp, "shape", shape, 2);
	model1(mp, "Reshape", 3, xd, 2, y2, (const char *[]){"x", "shape", NULL});
	check(mp, 3, xd);
	mp = tm_model(4);               /* the shape attribute of opset < 5 */
	tm_attr_ints(model1(mp, "Reshape", 3, xd, 2, y2, (const char *[]){"x", NULL}), "shape",
		     shape, 2);
	check(mp, 3, xd);
	mp = tm_model(13);
	tm_attr_int(model1(mp, "Flatten", 3, xd, 2, y1, (const char *[]){"x", NULL}), "axis", 1);
	check(mp, 3, xd);
	mp = tm_model(13);
	ints(mp, "axes", ax1, 1);
	model1(mp, "Unsqueeze", 3, xd, 4, yu, (const char *[]){"x", "axes", NULL});
	check(mp, 3, xd);
	mp = tm_model(11);              /* axes as an attribute */
	tm_attr_ints(model1(mp, "Unsqueeze", 3, xd, 4, yu, (const char *[]){"x", NULL}), "axes",
		     ax1, 1);
	check(mp, 3, xd);
	mp = tm_model(13);
	ints(mp, "axes", ax1, 1);
	model1(mp, "Squeeze", 4, xs, 3, ys, (const char *[]){"x", "axes", NULL});
	check(mp, 4, xs);
	mp = tm_model(11);
	tm_attr_ints(model1(mp, "Squeeze", 4, xs, 3, ys, (const char *[]){"x", NULL}), "axes",
		     ax1, 1);
	check(mp, 4, xs);
}

static void test_transpose(void **state)
{
	const int64_t xd[] = {2, 3, 4}, perm[] = {1, 2, 0}, yd[] = {3, 4, 2}, yr[] = {4, 3, 2};
	Onnx__ModelProto *mp;
	(void)state;

	mp = tm_model(13);
	tm_attr_ints(model1(mp, "Transpose", 3, xd, 3, yd, (const char *[]){"x", NULL}), "perm",
		     perm, 3);
	check(mp, 3, xd);
	mp = tm_model(13);              /* default: reversed */
	model1(mp, "Transpose", 3, xd, 3, yr, (const char *[]){"x", NULL});
	check(mp, 3, xd);
}

static void test_concat_split(void **state)
{
	const int64_t ad[] = {2, 3, 4}, bd[] = {2, 2, 4}, yd[] = {2, 5, 4};
	const int64_t sd[] = {2, 5, 4}, y0[] = {2, 2, 4}, y1[] = {2, 3, 4}, split[] = {2, 3};
	Onnx__ModelProto *mp = tm_model(13);
	struct graft_array in[2];
	size_t checked;
	(void)state;

	tm_input(mp, "a", 1, 3, ad);
	tm_input(mp, "b", 1, 3, bd);
	tm_output(mp, "y", 1, 3, yd);
	tm_attr_int(tm_node(mp, "Concat", "c", (const char *[]){"a", "b", NULL},
			    (const char *[]){"y", NULL}), "axis", -2);
	in[0] = gradcheck_input(3, ad, -1, 1, 1);
	in[1] = gradcheck_input(3, bd, -1, 1, 2);
	gradcheck(mp, in, 2, NULL, &checked);
	assert_int_equal(checked, 24 + 16);
	free(in[0].data);
	free(in[1].data);

	/* Split in two along axis 1; only the second output is a graph output, so the
	 * first's gradient is zero. */
	mp = tm_model(13);
	ints(mp, "split", split, 2);
	tm_input(mp, "x", 1, 3, sd);
	tm_output(mp, "y1", 1, 3, y1);
	tm_attr_int(tm_node(mp, "Split", "s", (const char *[]){"x", "split", NULL},
			    (const char *[]){"y0", "y1", NULL}), "axis", 1);
	(void)y0;
	check(mp, 3, sd);
}

static void test_slice_gather_expand(void **state)
{
	const int64_t xd[] = {4, 6}, starts[] = {3, 1}, ends[] = {0, 6}, axes[] = {0, 1};
	const int64_t steps[] = {-1, 2}, yd[] = {3, 3};
	const int64_t gd[] = {5, 3}, idx[] = {1, -1, 1, 0}, gy[] = {5, 4}, four = 4;
	const int64_t ed[] = {3, 1}, shape[] = {2, 3, 4}, eyd[] = {2, 3, 4};
	Onnx__ModelProto *mp;
	(void)state;

	mp = tm_model(13);
	ints(mp, "starts", starts, 2);
	ints(mp, "ends", ends, 2);
	ints(mp, "axes", axes, 2);
	ints(mp, "steps", steps, 2);
	model1(mp, "Slice", 2, xd, 2, yd,
	       (const char *[]){"x", "starts", "ends", "axes", "steps", NULL});
	check(mp, 2, xd);

	/* Gather along axis 1 with a repeated and a negative index */
	mp = tm_model(13);
	Onnx__TensorProto *t = tm_tensor("idx", 7, 1, &four);
	tm_int64_data(t, idx, 4);
	tm_initializer(mp, t);
	tm_attr_int(model1(mp, "Gather", 2, gd, 2, gy, (const char *[]){"x", "idx", NULL}), "axis",
		    1);
	check(mp, 2, gd);

	mp = tm_model(13);
	ints(mp, "shape", shape, 3);
	model1(mp, "Expand", 2, ed, 3, eyd, (const char *[]){"x", "shape", NULL});
	check(mp, 2, ed);
}

static void pad_model(const char *mode, const int64_t *pads, const int64_t *yd)
{
	const int64_t xd[] = {2, 3, 4};
	Onnx__ModelProto *mp = tm_model(13);
	Onnx__NodeProto *n;

	ints(mp, "pads", pads, 6);
	n = model1(mp, "Pad", 3, xd, 3, yd, (const char *[]){"x", "pads", NULL});
	if (mode) {
		Onnx__TensorProto *t;
		(void)t;
		/* mode is a string attribute */
		Onnx__AttributeProto *a = malloc(sizeof(*a));
		onnx__attribute_proto__init(a);
		a->name = strdup("mode");
		a->has_type = 1;
		a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
		a->has_s = 1;
		a->s.len = strlen(mode);
		a->s.data = (uint8_t *)strdup(mode);
		n->attribute = realloc(n->attribute, sizeof(*n->attribute) * (n->n_attribute + 1));
		n->attribute[n->n_attribute++] = a;
	}
	check(mp, 3, xd);
}

static void test_pad(void **state)
{
	/* constant, with cropping (negative pads) on the last axis */
	const int64_t p1[] = {0, 1, -1, 0, 2, 1}, y1[] = {2, 6, 4};
	/* edge and reflect: several outputs read one input */
	const int64_t p2[] = {0, 2, 1, 0, 1, 2}, y2[] = {2, 6, 7};
	(void)state;

	pad_model(NULL, p1, y1);
	pad_model("edge", p2, y2);
	pad_model("reflect", p2, y2);
}

static void test_cast(void **state)
{
	const int64_t xd[] = {3, 4};
	Onnx__ModelProto *mp = tm_model(13);
	(void)state;

	tm_attr_int(model1(mp, "Cast", 2, xd, 2, xd, (const char *[]){"x", NULL}), "to", 1);
	check(mp, 2, xd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reshape_family),
		cmocka_unit_test(test_transpose),
		cmocka_unit_test(test_concat_split),
		cmocka_unit_test(test_slice_gather_expand),
		cmocka_unit_test(test_pad),
		cmocka_unit_test(test_cast),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
