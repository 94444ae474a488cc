/*
 * join.c: the ops that build their output from whole blocks of their inputs: Concat and
 * Split (slabs along one axis), Expand and Tile (the input repeated: broadcast to a
 * shape, or laid side by side) and Pad (the input framed by a constant, or by its own
 * edge, reflection or wrap).  Data movement only, on any fixed-size dtype, as in
 * reshape.c, index.c and constant.c.
 *
 * Concat, Split and Pad are among the few data-movement nodes that real networks leave
 * at run time, so they copy whole rows, across threads when the output is large.
 * Expand and Tile are strided views of the input with stride 0 along the repeated axes,
 * copied by copy_view() (ops_util.c).  In the backward, a block the forward read once
 * gets its slab of the output's gradient back, and one it read more than once (Expand,
 * Tile, Pad's edge, reflect and wrap borders) the sum of its copies.
 */
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* ---- Concat and Split ------------------------------------------------------------------ */

static int concat_axis(const struct node *n, int rank, struct graft_err *err)
{
	const Onnx__AttributeProto *a = attr_find(n, "axis");
	int64_t axis;
	int ax;

	/* Optional (default 1) only in Concat-1. */
	if (!a && n->opset >= 4)
		return node_err(n, err, GRAFT_EFORMAT, "attribute 'axis' is missing");
	axis = attr_int(n, "axis", 1);
	if ((ax = norm_axis(axis, rank)) < 0)
		return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
				(long long)axis, rank);
	return ax;
}

static int concat_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t dims[NET_MAX_RANK];
	int ax, rc;

	if ((rc = want_io(n, err, n->n_in, n->n_in)))
		return rc;
	if (n->n_in < 1)
		return node_err(n, err, GRAFT_EFORMAT, "needs at least one input");
	x = n->in[0];
	if ((rc = fixed_size(n, x, err)))
		return rc;
	if (x->rank < 1)
		return node_err(n, err, GRAFT_EFORMAT, "cannot concatenate scalars");
	if ((ax = concat_axis(n, x->rank, err)) < 0)
		return ax;
	memcpy(dims, x->dims, sizeof(dims[0]) * (size_t)x->rank);
	dims[ax] = 0;
	for (size_t k = 0; k < n->n_in; k++) {
		const struct value *y = n->in[k];
		if (y->dtype != x->dtype || y->rank != x->rank)
			return node_err(n, err, GRAFT_EFORMAT, "input '%s' differs in type or rank "
					"from input '%s'", y->name, x->name);
		for (int i = 0; i < x->rank; i++)
			if (i != ax && y->dims[i] != x->dims[i])
				return node_err(n, err, GRAFT_EFORMAT, "input '%s' differs in dim %d "
						"from input '%s'", y->name, i, x->name);
		dims[ax] += y->dims[ax];
	}
	return set_out(n, n->out[0], x->dtype, x->rank, dims, err);
}

static int concat_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	struct value *y = n->out[0];
	size_t es = graft_dtype_size(x->dtype);
	int ax = concat_axis(n, x->rank, err);

	if (ax < 0)
		return ax;
	int64_t outer = dims_prod(x->dims, 0, ax);
	size_t inner = (size_t)dims_prod(x->dims, ax + 1, x->rank) * es;
	size_t outrow = (size_t)y->dims[ax] * inner;
	char *out = y->data;

	if (!y->nbytes)
		return 0;
	if (outer == 1) {
		size_t off = 0;
		for (size_t k = 0; k < n->n_in; k++) {
			size_t row = (size_t)n->in[k]->dims[ax] * inner;
			copy_bytes(out + off, n->in[k]->data, row);
			off += row;
		}
		return 0;
	}
#pragma omp parallel for if (y->nbytes >= PAR_BYTES) schedule(static)
	for (int64_t o = 0; o < outer; o++) {
		size_t off = (size_t)o * outrow;
		for (size_t k = 0; k < n->n_in; k++) {
			size_t row = (size_t)n->in[k]->dims[ax] * inner;
			copy_bytes(out + off, (const char *)n->in[k]->data + (size_t)o * row, row);
			off += row;
		}
	}
	return 0;
}

/* The split axis and the size of each output along it (sizes: n->n_out entries). */
static int split_sizes(struct node *n, int64_t *sizes, struct graft_err *err)
{
	const struct value *x = n->in[0];
	int64_t axis = attr_int(n, "axis", 0), d, sum = 0;
	long ns = -1;
	int ax = norm_axis(axis, x->rank);

	if (ax < 0)
		return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
				(long long)axis, x->rank);
	d = x->dims[ax];
	/* 'split' is an input in Split-1 (or an attribute) and since Split-13. */
	if ((n->opset < 2 || n->opset >= 13) && n->n_in > 1 && n->in[1]) {
		if ((ns = value_ints(n, n->in[1], sizes, n->n_out, err)) < 0)
			return err->code;
	} else if (n->opset < 13) {
		if ((ns = ints_attr(n, "split", sizes, n->n_out, err)) < -1)
			return (int)ns;
	}
	if (ns >= 0) {
		if ((size_t)ns != n->n_out)
			return node_err(n, err, GRAFT_EFORMAT, "split has %ld sizes for %zu outputs",
					ns, n->n_out);
		for (long k = 0; k < ns; k++) {
			if (sizes[k] < 0)
				return node_err(n, err, GRAFT_EFORMAT, "split size %lld is negative",
						(long long)sizes[k]);
			sum += sizes[k];
		}
		if (sum != d)
			return node_err(n, err, GRAFT_EFORMAT, "split sizes add up to %lld, not %lld",
					(long long)sum, (long long)d);
		return ax;
	}
	int64_t parts = (int64_t)n->n_out;
	if (n->opset >= 18 && attr_find(n, "num_outputs")) {
		/* Split-18: ceil-sized chunks, the last one smaller. */
		int64_t num = attr_int(n, "num_outputs", 0), chunk;
		if (num != parts)
			return node_err(n, err, GRAFT_EFORMAT, "num_outputs is %lld but the node has "
					"%lld outputs", (long long)num, (long long)parts);
		chunk = (d + parts - 1) / parts;
		for (int64_t k = 0; k < parts; k++) {
			int64_t left = d - k * chunk;
			sizes[k] = left < 0 ? 0 : left < chunk ? left : chunk;
		}
		return ax;
	}
	if (d % parts)
		return node_err(n, err, GRAFT_EFORMAT, "cannot split %lld into %lld equal parts",
				(long long)d, (long long)parts);
	for (int64_t k = 0; k < parts; k++)
		sizes[k] = d / parts;
	return ax;
}

static int split_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t *sizes, dims[NET_MAX_RANK];
	int ax, rc = 0;

	if (n->n_in < 1 || !n->in[0] || n->n_in > 2)
		return node_err(n, err, GRAFT_EFORMAT, "takes 1 or 2 inputs, not %zu", n->n_in);
	if (n->n_out < 1)
		return node_err(n, err, GRAFT_EFORMAT, "has no outputs");
	x = n->in[0];
	if ((rc = fixed_size(n, x, err)))
		return rc;
	if (!(sizes = malloc(n->n_out * sizeof(*sizes))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	if ((ax = split_sizes(n, sizes, err)) < 0) {
		free(sizes);
		return ax;
	}
	memcpy(dims, x->dims, sizeof(dims[0]) * (size_t)x->rank);
	for (size_t k = 0; k < n->n_out && !rc; k++) {
		dims[ax] = sizes[k];
		if (n->out[k])
			rc = set_out(n, n->out[k], x->dtype, x->rank, dims, err);
	}
	free(sizes);
	return rc;
}

static int split_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	size_t es = graft_dtype_size(x->dtype);
	int64_t *sizes;
	int ax;

	if (!(sizes = malloc(n->n_out * sizeof(*sizes))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	if ((ax = split_sizes(n, sizes, err)) < 0) {
		free(sizes);
		return ax;
	}
	int64_t outer = dims_prod(x->dims, 0, ax);
	size_t inner = (size_t)dims_prod(x->dims, ax + 1, x->rank) * es;
	size_t inrow = (size_t)x->dims[ax] * inner, off = 0;

	for (size_t k = 0; k < n->n_out; k++) {
		size_t row = (size_t)sizes[k] * inner;
		struct value *y = n->out[k];
		if (y && row) {
			char *out = y->data;
			const char *in = (const char *)x->data + off;
#pragma omp parallel for if (y->nbytes >= PAR_BYTES && outer > 1) schedule(static)
			for (int64_t o = 0; o < outer; o++)
				memcpy(out + (size_t)o * row, in + (size_t)o * inrow, row);
		}
		off += row;
	}
	free(sizes);
	return 0;
}

/* ---- Expand and Tile ------------------------------------------------------------------- */

static int expand_dims(struct node *n, int *r, int64_t *dims, struct graft_err *err)
{
	const struct value *x = n->in[0];
	int64_t shape[NET_MAX_RANK];
	long k = value_ints(n, n->in[1], shape, NET_MAX_RANK, err);

	if (k < 0)
		return err->code;
	for (long i = 0; i < k; i++)
		if (shape[i] < 0)
			return node_err(n, err, GRAFT_EFORMAT, "shape[%ld] is negative", i);
	if (broadcast_dims(x->rank, x->dims, (int)k, shape, r, dims))
		return node_err(n, err, GRAFT_EFORMAT, "cannot broadcast the input to the shape");
	return 0;
}

static int expand_infer(struct node *n, struct graft_err *err)
{
	int64_t dims[NET_MAX_RANK];
	int r, rc;

	if ((rc = want_io(n, err, 2, 2)) || (rc = fixed_size(n, n->in[0], err)) ||
	    (rc = expand_dims(n, &r, dims, err)))
		return rc;
	return set_out(n, n->out[0], n->in[0]->dtype, r, dims, err);
}

static int expand_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	struct value *y = n->out[0];
	size_t es = graft_dtype_size(x->dtype);
	struct view v;

	(void)err;
	if (!y->nbytes)
		return 0;
	v.rank = y->rank;
	memcpy(v.dims, y->dims, sizeof(y->dims[0]) * (size_t)y->rank);
	broadcast_strides(x->rank, x->dims, y->rank, y->dims, v.st);
	for (int i = 0; i < v.rank; i++)
		v.st[i] *= (int64_t)es;
	copy_view(y->data, x->data, &v, es);
	return 0;
}

static int tile_repeats(struct node *n, int64_t *reps, struct graft_err *err)
{
	const struct value *x = n->in[0];
	long k;

	if (n->opset < 6) {
		/* Tile-1: inputs (input, tiles, axis), both scalars. */
		int64_t tiles, axis;
		int a;
		if (value_ints(n, n->in[1], &tiles, 1, err) != 1 ||
		    value_ints(n, n->in[2], &axis, 1, err) != 1)
			return err->code ? err->code
					 : node_err(n, err, GRAFT_EFORMAT, "tiles and axis must be "
						    "scalars");
		if ((a = norm_axis(axis, x->rank)) < 0)
			return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range",
					(long long)axis);
		for (int i = 0; i < x->rank; i++)
			reps[i] = i == a ? tiles : 1;
	} else {
		if ((k = value_ints(n, n->in[1], reps, NET_MAX_RANK, err)) < 0)
			return err->code;
		if (k != x->rank)
			return node_err(n, err, GRAFT_EFORMAT, "repeats has %ld entries for rank %d", k,
					x->rank);
	}
	for (int i = 0; i < x->rank; i++)
		if (reps[i] < 0)
			return node_err(n, err, GRAFT_EFORMAT, "repeats[%d] is negative", i);
	return 0;
}

static int tile_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t reps[NET_MAX_RANK], dims[NET_MAX_RANK];
	int rc;

	if ((rc = want_io(n, err, n->opset < 6 ? 3 : 2, n->opset < 6 ? 3 : 2)) ||
	    (rc = fixed_size(n, n->in[0], err)))
		return rc;
	x = n->in[0];
	if ((rc = tile_repeats(n, reps, err)))
		return rc;
	for (int i = 0; i < x->rank; i++) {
		if (reps[i] && x->dims[i] > INT64_MAX / reps[i])
			return node_err(n, err, GRAFT_EFORMAT, "output is too large");
		dims[i] = x->dims[i] * reps[i];
	}
	return set_out(n, n->out[0], x->dtype, x->rank, dims, err);
}

static int tile_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	size_t es = graft_dtype_size(x->dtype);
	int64_t reps[NET_MAX_RANK], st[NET_MAX_RANK];
	struct view v;
	int rc;

	if ((rc = tile_repeats(n, reps, err)))
		return rc;
	if (!n->out[0]->nbytes)
		return 0;
	/* Output axis i of size reps[i] * d[i] is the pair (repeat, index), row-major. */
	strides_of(x->rank, x->dims, st);
	v.rank = 2 * x->rank;
	for (int i = 0; i < x->rank; i++) {
		v.dims[2 * i] = reps[i];
		v.st[2 * i] = 0;
		v.dims[2 * i + 1] = x->dims[i];
		v.st[2 * i + 1] = st[i] * (int64_t)es;
	}
	copy_view(n->out[0]->data, x->data, &v, es);
	return 0;
}

/* ---- Pad ---------------------------------------------------------------------------------- */

enum pad_mode { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP };

/* Per-axis pads before (pb) and after (pa), and the mode. */
static int pad_plan(struct node *n, int64_t *pb, int64_t *pa, enum pad_mode *mode,
		    struct graft_err *err)
{
	const struct value *x = n->in[0];
	int r = x->rank;
	int64_t pads[2 * NET_MAX_RANK], axes[NET_MAX_RANK];
	long np, na = -1;

	if (attr_string_eq(n, "mode", "constant", "constant"))
		*mode = PAD_CONSTANT;
	else if (attr_string_eq(n, "mode", "constant", "reflect"))
		*mode = PAD_REFLECT;
	else if (attr_string_eq(n, "mode", "constant", "edge"))
		*mode = PAD_EDGE;
	else if (attr_string_eq(n, "mode", "constant", "wrap"))
		*mode = PAD_WRAP;
	else {
		char buf[32];
		attr_string(n, "mode", "constant", buf, sizeof(buf));
		return node_err(n, err, GRAFT_EUNSUPPORTED, "mode '%s' is not supported", buf);
	}
	if (n->opset < 11) {
		np = ints_attr(n, n->opset < 2 ? "paddings" : "pads", pads, 2 * NET_MAX_RANK, err);
		if (np < -1)
			return (int)np;
		if (np < 0)
			return node_err(n, err, GRAFT_EFORMAT, "attribute 'pads' is missing");
	} else {
		if ((np = value_ints(n, n->in[1], pads, 2 * NET_MAX_RANK, err)) < 0)
			return err->code;
		if (n->n_in > 3 && n->in[3] &&
		    (na = value_ints(n, n->in[3], axes, NET_MAX_RANK, err)) < 0)
			return err->code;
	}
	if (na < 0) {
		na = r;
		for (int i = 0; i < r; i++)
			axes[i] = i;
	}
	if (np != 2 * na)
		return node_err(n, err, GRAFT_EFORMAT, "pads has %ld entries for %ld axes", np, na);
	for (int i = 0; i < r; i++)
		pb[i] = pa[i] = 0;
	for (long k = 0; k < na; k++) {
		int a = norm_axis(axes[k], r);
		if (a < 0)
			return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
					(long long)axes[k], r);
		pb[a] = pads[k];
		pa[a] = pads[k + na];
	}
	for (int i = 0; i < r; i++) {
		int64_t od = x->dims[i] + pb[i] + pa[i];
		if (od < 0)
			return node_err(n, err, GRAFT_EFORMAT, "pads make dim %d negative", i);
		if (*mode != PAD_CONSTANT && x->dims[i] == 0 && od > 0)
			return node_err(n, err, GRAFT_EFORMAT, "cannot pad an empty axis in this mode");
	}
	return 0;
}

static int pad_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t pb[NET_MAX_RANK], pa[NET_MAX_RANK], dims[NET_MAX_RANK];
	enum pad_mode mode;
	int rc;

	if ((rc = want_io(n, err, n->opset < 11 ? 1 : 2, n->opset < 11 ? 1 : 4)) ||
	    (rc = fixed_size(n, n->in[0], err)))
		return rc;
	x = n->in[0];
	if (n->opset >= 11 && n->n_in > 2 && n->in[2] && n->in[2]->dtype != x->dtype)
		return node_err(n, err, GRAFT_EFORMAT, "constant_value must have the data's type");
	if ((rc = pad_plan(n, pb, pa, &mode, err)))
		return rc;
	for (int i = 0; i < x->rank; i++)
		dims[i] = x->dims[i] + pb[i] + pa[i];
	return set_out(n, n->out[0], x->dtype, x->rank, dims, err);
}

/* The input index that output index o of an axis reads, or -1 for the constant. */
static int64_t pad_source(enum pad_mode mode, int64_t o, int64_t before, int64_t d)
{
	int64_t i = o - before, p;

	if (i >= 0 && i < d)
		return i;
	switch (mode) {
	case PAD_EDGE:
		return i < 0 ? 0 : d - 1;
	case PAD_WRAP:
		return (i % d + d) % d;
	case PAD_REFLECT:
		if (d == 1)
			return 0;
		p = 2 * (d - 1);
		i = (i % p + p) % p;
		return i < d ? i : p - i;
	default:
		return -1;
	}
}

static int pad_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	struct value *y = n->out[0];
	size_t es = graft_dtype_size(x->dtype);
	int64_t pb[NET_MAX_RANK], pa[NET_MAX_RANK], st[NET_MAX_RANK], *map[NET_MAX_RANK];
	int64_t *maps, total = 0;
	unsigned char cval[16] = {0};
	enum pad_mode mode;
	int r = x->rank, rc;

	if ((rc = pad_plan(n, pb, pa, &mode, err)))
		return rc;
	if (!y->nbytes)
		return 0;
	if (r == 0) {
		copy_bytes(y->data, x->data, es);
		return 0;
	}
	if (n->opset < 11) {
		float f = attr_float(n, "value", 0);
		struct value tmp = {.dtype = x->dtype, .data = cval};
		if (f != 0 && (es > 8 || x->dtype == GRAFT_FLOAT16 || x->dtype == GRAFT_BFLOAT16))
			return node_err(n, err, GRAFT_EUNSUPPORTED, "a nonzero value for this type");
		value_put(&tmp, 0, f);
	} else if (n->n_in > 2 && n->in[2] && value_numel(n->in[2]) > 0 && es <= 16) {
		memcpy(cval, n->in[2]->data, es);
	}
	for (int i = 0; i < r; i++)
		total += y->dims[i];
	if (!(maps = malloc((size_t)total * sizeof(*maps))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	total = 0;
	for (int i = 0; i < r; i++) {
		map[i] = maps + total;
		for (int64_t o = 0; o < y->dims[i]; o++)
			map[i][o] = pad_source(mode, o, pb[i], x->dims[i]);
		total += y->dims[i];
	}
	strides_of(r, x->dims, st);

	int64_t inner = y->dims[r - 1], rows = (int64_t)(value_numel(y) / (uint64_t)inner);
	int64_t b = pb[r - 1], lo = b > 0 ? b : 0;
	int64_t hi = b + x->dims[r - 1] < inner ? b + x->dims[r - 1] : inner;
	const char *in = x->data;
	char *out = y->data;

#pragma omp parallel for if (y->nbytes >= PAR_BYTES) schedule(static)
	for (int64_t row = 0; row < rows; row++) {
		char *d = out + (size_t)row * (size_t)inner * es;
		int64_t q = row, off = 0;
		int is_const = 0;
		for (int a = r - 2; a >= 0; a--) {
			int64_t i = map[a][q % y->dims[a]];
			q /= y->dims[a];
			if (i < 0)
				is_const = 1;
			else
				off += i * st[a];
		}
		if (is_const) {
			fill_elems(d, cval, (uint64_t)inner, es);
			continue;
		}
		const char *s = in + (size_t)off * es;
		if (lo < hi)
			memcpy(d + (size_t)lo * es, s + (size_t)(lo - b) * es, (size_t)(hi - lo) * es);
		for (int64_t o = 0; o < inner; o++) {
			if (o == lo && lo < hi)
				o = hi;
			if (o >= inner)
				break;
			int64_t i = map[r - 1][o];
			memcpy(d + (size_t)o * es, i < 0 ? (const char *)cval : s + (size_t)i * es, es);
		}
	}
	free(maps);
	return 0;
}

/* ---- the family ------------------------------------------------------------------------ */

static const struct op_def op_concat = {
	.name = "Concat", .infer = concat_infer, .run = concat_run,
};
static const struct op_def op_split = {
	.name = "Split", .infer = split_infer, .run = split_run,
	.plan_inputs = 1 << 1,
};
static const struct op_def op_expand = {
	.name = "Expand", .infer = expand_infer, .run = expand_run,
	.plan_inputs = 1 << 1,
};
static const struct op_def op_tile = {
	.name = "Tile", .infer = tile_infer, .run = tile_run,
	.plan_inputs = 0x6,
};
static const struct op_def op_pad = {
	.name = "Pad", .infer = pad_infer, .run = pad_run,
	.plan_inputs = 1 << 1 | 1 << 3,
};

const struct op_def *const ops_join[] = {
	&op_concat, &op_split, &op_expand, &op_tile, &op_pad, NULL,
};

/* ---- backward ----------------------------------------------------------------------------
 *
 * Each gradient is the inverse movement of the output's gradient, in float32 (only float
 * values have gradients); shapes, repeats and pads never get one.  Concat and Split read
 * every input element once: their gradients are copies back.  Pad's cropping reads some
 * not at all: those get zeros.  Expand, Tile and Pad's edge, reflect and wrap modes read
 * some more than once: the copies add up.
 */

/* Each input's gradient is its slab of dY along the axis. */
static int concat_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *y = n->out[0];
	int ax = concat_axis(n, x->rank, err);
	size_t at = 0;

	if (ax < 0)
		return ax;
	int64_t outer = dims_prod(x->dims, 0, ax);
	size_t inner = (size_t)dims_prod(x->dims, ax + 1, x->rank) * sizeof(float);
	size_t outrow = (size_t)y->dims[ax] * inner;
	const char *g = y->grad->data;

	for (size_t k = 0; k < n->n_in; k++) {
		size_t row = (size_t)n->in[k]->dims[ax] * inner;
		if (n->gin[k] && row) {
			if (n->in[k]->dtype != GRAFT_FLOAT)
				return node_err(n, err, GRAFT_EUNSUPPORTED, "backward for %s data",
						dtype_label(n->in[k]->dtype));
			char *d = n->gin[k]->data;
			if (outer == 1) {
				copy_bytes(d, g + at, row);
			} else {
#pragma omp parallel for if (n->gin[k]->nbytes >= PAR_BYTES) schedule(static)
				for (int64_t o = 0; o < outer; o++)
					memcpy(d + (size_t)o * row, g + (size_t)o * outrow + at,
					       row);
			}
		}
		at += row;
	}
	return 0;
}

/* dX is the outputs' gradients side by side (zeros for an output nobody reads). */
static int split_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	int64_t *sizes;
	int ax, rc;

	if (!n->gin[0])
		return 0;
	if ((rc = grad_is_float(n, err)))
		return rc;
	if (!(sizes = malloc(n->n_out * sizeof(*sizes))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	if ((ax = split_sizes(n, sizes, err)) < 0) {
		free(sizes);
		return ax;
	}
	int64_t outer = dims_prod(x->dims, 0, ax);
	size_t inner = (size_t)dims_prod(x->dims, ax + 1, x->rank) * sizeof(float);
	size_t inrow = (size_t)x->dims[ax] * inner, off = 0;
	char *d = n->gin[0]->data;

	for (size_t k = 0; k < n->n_out; k++) {
		size_t row = (size_t)sizes[k] * inner;
		const struct value *y = n->out[k];
		const char *g = y && y->grad ? y->grad->data : NULL;
		if (!row)
			continue;
		if (outer == 1 && g) {
			copy_bytes(d + off, g, row);
		} else if (outer == 1) {
			memset(d + off, 0, row);
		} else {
#pragma omp parallel for if ((uint64_t)outer * row >= PAR_BYTES) schedule(static)
			for (int64_t o = 0; o < outer; o++) {
				if (g)
					memcpy(d + (size_t)o * inrow + off, g + (size_t)o * row,
					       row);
				else
					memset(d + (size_t)o * inrow + off, 0, row);
			}
		}
		off += row;
	}
	free(sizes);
	return 0;
}

/* dX: dY summed over the axes the input was broadcast along. */
static int expand_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *y = n->out[0];
	struct walk w;
	int rc;

	if (!n->gin[0])
		return 0;
	if ((rc = grad_is_float(n, err)))
		return rc;
	if (value_numel(x) == value_numel(y)) {  /* nothing broadcast: the same elements */
		copy_bytes(n->gin[0]->data, y->grad->data, n->gin[0]->nbytes);
		return 0;
	}
	memset(n->gin[0]->data, 0, n->gin[0]->nbytes);
	w.rank = y->rank;
	memcpy(w.dims, y->dims, sizeof(y->dims[0]) * (size_t)y->rank);
	broadcast_strides(x->rank, x->dims, y->rank, y->dims, w.sd);
	strides_of(y->rank, y->dims, w.ss);
	walk_run(n->gin[0]->data, y->grad->data, &w, 1);
	return 0;
}

/* dX: the sum of dY's tiles.  Output axis i is the pair (repeat, index), as in the
 * forward. */
static int tile_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *y = n->out[0];
	int64_t reps[NET_MAX_RANK], st[NET_MAX_RANK];
	struct walk w;
	int rc;

	if (!n->gin[0])
		return 0;
	if ((rc = grad_is_float(n, err)) || (rc = tile_repeats(n, reps, err)))
		return rc;
	if (value_numel(x) == value_numel(y)) {
		copy_bytes(n->gin[0]->data, y->grad->data, n->gin[0]->nbytes);
		return 0;
	}
	memset(n->gin[0]->data, 0, n->gin[0]->nbytes);
	strides_of(x->rank, x->dims, st);
	w.rank = 2 * x->rank;
	for (int i = 0; i < x->rank; i++) {
		w.dims[2 * i] = reps[i];
		w.sd[2 * i] = 0;
		w.dims[2 * i + 1] = x->dims[i];
		w.sd[2 * i + 1] = st[i];
	}
	strides_of(w.rank, w.dims, w.ss);
	walk_run(n->gin[0]->data, y->grad->data, &w, 1);
	return 0;
}

/* One axis of Pad's backward.  src is (outer, dy, inner), dst (outer, dx, inner); output
 * index o of the axis read input index map[o] (-1: the constant).  The interior, where
 * o - b is in range and read nowhere else first, is copied; the rest (edge, reflect and
 * wrap borders) is added in. */
static void pad_axis_backward(float *dst, const float *src, int64_t outer, int64_t dy,
			      int64_t dx, int64_t inner, int64_t b, const int64_t *map)
{
	int64_t olo = b > 0 ? b : 0, ohi = b + dx < dy ? b + dx : dy;
	size_t in_b = (size_t)inner * sizeof(float);

	if (olo > ohi)
		olo = ohi = 0;
	int64_t ilo = olo - b, ihi = ohi - b;
	if (olo == ohi)
		ilo = ihi = 0;

#pragma omp parallel for if (outer > 1 && (uint64_t)outer * (uint64_t)dx * in_b >= PAR_BYTES) \
	schedule(static)
	for (int64_t q = 0; q < outer; q++) {
		float *d = dst + q * dx * inner;
		const float *s = src + q * dy * inner;
		memset(d, 0, (size_t)ilo * in_b);
		memset(d + ihi * inner, 0, (size_t)(dx - ihi) * in_b);
		if (outer == 1)
			copy_bytes(d + ilo * inner, s + olo * inner, (size_t)(ohi - olo) * in_b);
		else
			memcpy(d + ilo * inner, s + olo * inner, (size_t)(ohi - olo) * in_b);
		for (int64_t o = 0; o < dy; o++) {
			if (o == olo && olo < ohi)
				o = ohi;
			if (o >= dy)
				break;
			if (map[o] < 0)
				continue;
			float *to = d + map[o] * inner;
			const float *from = s + o * inner;
			for (int64_t j = 0; j < inner; j++)
				to[j] += from[j];
		}
	}
}

/* d constant_value: dY summed over the elements that read the constant (any axis's
 * source is -1).  Rare (the value is nearly always a constant), so plain. */
static float pad_constant_grad(const struct value *y, const float *g, int64_t *const *map)
{
	int64_t idx[NET_MAX_RANK] = {0};
	uint64_t total = value_numel(y);
	double sum = 0;
	int r = y->rank;

	for (uint64_t i = 0; i < total; i++) {
		int is_const = 0;
		for (int a = 0; a < r; a++)
			is_const |= map[a][idx[a]] < 0;
		if (is_const)
			sum += g[i];
		for (int a = r - 1; a >= 0; a--) {
			if (++idx[a] < y->dims[a])
				break;
			idx[a] = 0;
		}
	}
	return (float)sum;
}

/* Pad is separable: padding every axis is padding one axis after the other, so dX is dY
 * taken back through one axis at a time (pad_axis_backward), from dY's shape to X's. */
static int pad_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *y = n->out[0];
	int64_t pb[NET_MAX_RANK], pa[NET_MAX_RANK], cur[NET_MAX_RANK], *map[NET_MAX_RANK];
	int64_t *maps, total = 0;
	int axes[NET_MAX_RANK], na = 0, r = x->rank, rc;
	enum pad_mode mode;
	float *tmp[2] = {NULL, NULL};
	uint64_t tmp_n = 0;

	if ((rc = pad_plan(n, pb, pa, &mode, err)))
		return rc;
	if ((rc = grad_is_float(n, err)))
		return rc;
	for (int i = 0; i < r; i++)
		total += y->dims[i];
	if (!(maps = malloc(((size_t)total + 1) * sizeof(*maps))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	total = 0;
	for (int i = 0; i < r; i++) {
		map[i] = maps + total;
		for (int64_t o = 0; o < y->dims[i]; o++)
			map[i][o] = pad_source(mode, o, pb[i], x->dims[i]);
		total += y->dims[i];
	}
	const float *g = y->grad->data;
	if (n->n_in > 2 && n->gin[2]) {
		float *dc = n->gin[2]->data;
		*dc = mode == PAD_CONSTANT && y->nbytes ? pad_constant_grad(y, g, map) : 0;
	}
	if (!n->gin[0]) {
		free(maps);
		return 0;
	}
	for (int i = 0; i < r; i++) {
		cur[i] = y->dims[i];
		if (pb[i] || pa[i])
			axes[na++] = i;
	}
	/* The shapes between axes, sized for the two buffers they alternate in. */
	for (int k = 0; k + 1 < na; k++) {
		uint64_t m;
		cur[axes[k]] = x->dims[axes[k]];
		dims_numel(cur, r, &m);
		tmp_n = m > tmp_n ? m : tmp_n;
	}
	for (int i = 0; i < r; i++)
		cur[i] = y->dims[i];
	for (int k = 0; k < (na > 2 ? 2 : na - 1); k++)
		if (!(tmp[k] = malloc((size_t)(tmp_n + 1) * sizeof(float)))) {
			free(tmp[0]);
			free(maps);
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
		}
	if (na == 0)
		copy_bytes(n->gin[0]->data, g, n->gin[0]->nbytes);
	for (int k = 0; k < na; k++) {
		int a = axes[k];
		float *d = k == na - 1 ? n->gin[0]->data : tmp[k % 2];
		pad_axis_backward(d, g, dims_prod(cur, 0, a), cur[a], x->dims[a], dims_prod(cur, a + 1, r),
				  pb[a], map[a]);
		cur[a] = x->dims[a];
		g = d;
	}
	free(tmp[0]);
	free(tmp[1]);
	free(maps);
	return 0;
}

static const struct grad_def grad_concat = {"Concat", concat_backward};
static const struct grad_def grad_split = {"Split", split_backward};
static const struct grad_def grad_expand = {"Expand", expand_backward};
static const struct grad_def grad_tile = {"Tile", tile_backward};
static const struct grad_def grad_pad = {"Pad", pad_backward};

const struct grad_def *const ops_join_grad[] = {
	&grad_concat, &grad_split, &grad_expand, &grad_tile, &grad_pad, NULL,
};
