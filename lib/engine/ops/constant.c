/*
 * constant.c: the ops whose output comes from shapes and attributes rather than from the
 * elements of an input: Shape and Size (of the input's dims), Constant (the tensor or
 * scalar of an attribute), ConstantOfShape (one value, at a shape given as an input) and
 * Range (start, limit and delta).
 *
 * All of them run at plan time, once per plan: Shape and Size read only dims, and the
 * others only attributes and inputs that must be known then (plan_inputs), so the
 * executor folds them into constants, and with them the Gather and Concat nodes of the
 * Shape -> Gather -> Concat -> Reshape chains that exporters emit.  None has a backward:
 * what they give does not depend on the values of any float data.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* ---- Shape, Size ------------------------------------------------------------------------ */

static void shape_range(const struct node *n, int rank, int64_t *start, int64_t *end)
{
	int64_t s = 0, e = rank;

	if (n->opset >= 15) {
		s = attr_int(n, "start", 0);
		e = attr_int(n, "end", rank);
	}
	if (s < 0)
		s += rank;
	if (e < 0)
		e += rank;
	*start = s < 0 ? 0 : s > rank ? rank : s;
	*end = e < 0 ? 0 : e > rank ? rank : e;
	if (*end < *start)
		*end = *start;
}

static int shape_infer(struct node *n, struct graft_err *err)
{
	int64_t s, e, len;
	int rc;

	if ((rc = want_io(n, err, 1, 1)))
		return rc;
	shape_range(n, n->in[0]->rank, &s, &e);
	len = e - s;
	return set_out(n, n->out[0], GRAFT_INT64, 1, &len, err);
}

static int shape_run(struct node *n, struct graft_err *err)
{
	int64_t s, e;

	(void)err;
	shape_range(n, n->in[0]->rank, &s, &e);
	copy_bytes(n->out[0]->data, n->in[0]->dims + s, (size_t)(e - s) * sizeof(int64_t));
	return 0;
}

static int size_infer(struct node *n, struct graft_err *err)
{
	int rc;

	if ((rc = want_io(n, err, 1, 1)))
		return rc;
	return set_out(n, n->out[0], GRAFT_INT64, 0, NULL, err);
}

static int size_run(struct node *n, struct graft_err *err)
{
	int64_t numel = (int64_t)value_numel(n->in[0]);

	(void)err;
	memcpy(n->out[0]->data, &numel, sizeof(numel));
	return 0;
}

/* ---- Constant, ConstantOfShape, Range ---------------------------------------------------- */

/* The Constant's value as an array, borrowed from the node: the tensor the executor
 * decoded (n->value), or an attribute's numbers.  (A Constant whose value the model
 * stores in its tensor table is no node of the net: its output is that tensor.) */
static int constant_value(const struct node *n, struct graft_array *a, struct graft_err *err)
{
	const Onnx__AttributeProto *at;

	memset(a, 0, sizeof(*a));
	if (n->value.dtype) {
		*a = n->value;
		return 0;
	}
	if ((at = attr_find(n, "value_float"))) {
		a->dtype = GRAFT_FLOAT;
		a->data = (void *)&at->f;
		a->nbytes = sizeof(float);
	} else if ((at = attr_find(n, "value_int"))) {
		a->dtype = GRAFT_INT64;
		a->data = (void *)&at->i;
		a->nbytes = sizeof(int64_t);
	} else if ((at = attr_find(n, "value_floats"))) {
		a->dtype = GRAFT_FLOAT;
		a->rank = 1;
		a->dims[0] = (int64_t)at->n_floats;
		a->data = at->floats;
		a->nbytes = at->n_floats * sizeof(float);
	} else if ((at = attr_find(n, "value_ints"))) {
		a->dtype = GRAFT_INT64;
		a->rank = 1;
		a->dims[0] = (int64_t)at->n_ints;
		a->data = at->ints;
		a->nbytes = at->n_ints * sizeof(int64_t);
	} else if (attr_find(n, "sparse_value") || attr_find(n, "value_string") ||
		   attr_find(n, "value_strings")) {
		return node_err(n, err, GRAFT_EUNSUPPORTED, "sparse and string constants are not "
				"supported");
	} else {
		return node_err(n, err, GRAFT_EFORMAT, "has no value attribute");
	}
	return 0;
}

static int constant_infer(struct node *n, struct graft_err *err)
{
	struct graft_array a;
	int rc;

	if ((rc = want_io(n, err, 0, 0)) || (rc = constant_value(n, &a, err)))
		return rc;
	return set_out(n, n->out[0], a.dtype, a.rank, a.dims, err);
}

static int constant_run(struct node *n, struct graft_err *err)
{
	struct graft_array a;
	int rc;

	if ((rc = constant_value(n, &a, err)))
		return rc;
	if (a.nbytes != n->out[0]->nbytes)
		return node_err(n, err, GRAFT_EFORMAT, "value changed size");
	copy_bytes(n->out[0]->data, a.data, a.nbytes);
	return 0;
}

/* ConstantOfShape's fill element (16 bytes is enough for any fixed-size dtype). */
static int fill_value(const struct node *n, int *dtype, unsigned char *elem,
		      struct graft_err *err)
{
	const struct graft_array *a = &n->value;       /* decoded by the executor */

	memset(elem, 0, 16);
	*dtype = GRAFT_FLOAT;
	if (!a->dtype)
		return 0;
	if (a->nbytes != graft_dtype_size(a->dtype) || a->nbytes > 16)
		return node_err(n, err, GRAFT_EFORMAT, "value must have exactly one element");
	memcpy(elem, a->data, a->nbytes);
	*dtype = a->dtype;
	return 0;
}

static int constant_of_shape_infer(struct node *n, struct graft_err *err)
{
	int64_t dims[NET_MAX_RANK];
	unsigned char elem[16];
	long r;
	int dtype, rc;

	if ((rc = want_io(n, err, 1, 1)) || (rc = fill_value(n, &dtype, elem, err)))
		return rc;
	if ((r = value_ints(n, n->in[0], dims, NET_MAX_RANK, err)) < 0)
		return err->code;
	for (long i = 0; i < r; i++)
		if (dims[i] < 0)
			return node_err(n, err, GRAFT_EFORMAT, "dim %ld is negative", i);
	return set_out(n, n->out[0], dtype, (int)r, dims, err);
}

static int constant_of_shape_run(struct node *n, struct graft_err *err)
{
	unsigned char elem[16];
	int dtype, rc;

	if ((rc = fill_value(n, &dtype, elem, err)))
		return rc;
	fill_elems(n->out[0]->data, elem, value_numel(n->out[0]), graft_dtype_size(dtype));
	return 0;
}

static int range_count(struct node *n, int64_t *count, struct graft_err *err)
{
	const struct value *s = n->in[0], *l = n->in[1], *d = n->in[2];
	int t = s->dtype;

	for (int k = 0; k < 3; k++) {
		const struct value *v = n->in[k];
		if (v->dtype != t || value_numel(v) != 1)
			return node_err(n, err, GRAFT_EFORMAT, "start, limit and delta must be "
					"scalars of one type");
		if (!(v->flags & VALUE_CONST) || !v->data)
			return node_err(n, err, GRAFT_EUNSUPPORTED, "input '%s' must be known before "
					"the run (a constant)", v->name);
	}
	if (t == GRAFT_FLOAT || t == GRAFT_DOUBLE) {
		double a = value_get(s, 0), b = value_get(l, 0), c = value_get(d, 0), q;
		if (c == 0)
			return node_err(n, err, GRAFT_EFORMAT, "delta is 0");
		q = ceil((b - a) / c);
		if (!(q < 4e18))
			return node_err(n, err, GRAFT_EFORMAT, "range is too long");
		*count = q > 0 ? (int64_t)q : 0;
		return 0;
	}
	if (t == GRAFT_INT64 || t == GRAFT_INT32 || t == GRAFT_INT16) {
		int64_t a = (int64_t)value_get(s, 0), b = (int64_t)value_get(l, 0);
		int64_t c = (int64_t)value_get(d, 0);
		if (t == GRAFT_INT64) {
			memcpy(&a, s->data, 8);
			memcpy(&b, l->data, 8);
			memcpy(&c, d->data, 8);
		}
		if (c == 0)
			return node_err(n, err, GRAFT_EFORMAT, "delta is 0");
		/* Unsigned differences: no overflow for any int64 endpoints. */
		if (c > 0)
			*count = b > a ? (int64_t)(((uint64_t)b - (uint64_t)a - 1) / (uint64_t)c) + 1
				       : 0;
		else
			*count = a > b ? (int64_t)(((uint64_t)a - (uint64_t)b - 1) /
						   (0 - (uint64_t)c)) + 1 : 0;
		return 0;
	}
	return node_err(n, err, GRAFT_EUNSUPPORTED, "type %s is not supported",
			dtype_label(t));
}

static int range_infer(struct node *n, struct graft_err *err)
{
	int64_t count;
	int rc;

	if ((rc = want_io(n, err, 3, 3)) || (rc = range_count(n, &count, err)))
		return rc;
	return set_out(n, n->out[0], n->in[0]->dtype, 1, &count, err);
}

static int range_run(struct node *n, struct graft_err *err)
{
	struct value *y = n->out[0];
	int64_t count = y->dims[0];

	(void)err;
	switch (y->dtype) {
	case GRAFT_FLOAT: {
		float a, c, *o = y->data;
		memcpy(&a, n->in[0]->data, 4);
		memcpy(&c, n->in[2]->data, 4);
		for (int64_t i = 0; i < count; i++)
			o[i] = a + (float)i * c;
		break;
	}
	case GRAFT_INT64: {
		int64_t a, c, *o = y->data;
		memcpy(&a, n->in[0]->data, 8);
		memcpy(&c, n->in[2]->data, 8);
		for (int64_t i = 0; i < count; i++)
			o[i] = (int64_t)((uint64_t)a + (uint64_t)i * (uint64_t)c);
		break;
	}
	default: {
		double a = value_get(n->in[0], 0), c = value_get(n->in[2], 0);
		for (int64_t i = 0; i < count; i++)
			value_put(y, (uint64_t)i, a + (double)i * c);
		break;
	}
	}
	return 0;
}

/* ---- the family ------------------------------------------------------------------------ */

static const struct op_def op_shape = {
	.name = "Shape", .infer = shape_infer, .run = shape_run,
};
static const struct op_def op_size = {
	.name = "Size", .infer = size_infer, .run = size_run,
};
static const struct op_def op_constant = {
	.name = "Constant", .infer = constant_infer, .run = constant_run,
};
static const struct op_def op_constant_of_shape = {
	.name = "ConstantOfShape", .infer = constant_of_shape_infer, .run = constant_of_shape_run,
	.plan_inputs = 1 << 0,
};
static const struct op_def op_range = {
	.name = "Range", .infer = range_infer, .run = range_run,
	.plan_inputs = 0x7,
};

const struct op_def *const ops_constant[] = {
	&op_shape, &op_size, &op_constant, &op_constant_of_shape, &op_range, NULL,
};
