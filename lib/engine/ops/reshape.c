/*
 * reshape.c: the ops that keep a tensor's elements and change only how they are laid
 * out: Reshape, Flatten, Squeeze and Unsqueeze (the same bytes under new dims),
 * Transpose, and DepthToSpace and SpaceToDepth (a permutation of the axes of a 6-D view
 * of the input).  Like the other data-movement families (join.c, index.c, constant.c),
 * they do no arithmetic on elements, so every kernel works on any fixed-size dtype by
 * moving graft_dtype_size() bytes at a time.
 *
 * The first four copy their input as it is (most of them sit in the Shape -> Gather ->
 * Concat -> Reshape chains that the executor folds at plan time).  Transpose, one of the
 * few data-movement nodes real networks leave at run time, and the block permutations
 * describe their output as a strided view of the input and copy it with copy_view()
 * (ops_util.c): axes that read the source contiguously merge into memcpy of whole rows,
 * and transposes that move the source's innermost axis get a tiled 2-D loop.  Their
 * backward is the inverse movement of the output's gradient.
 */
#include <string.h>

#include "ops.h"

/* ---- Reshape, Flatten, Squeeze, Unsqueeze: same bytes, new dims ----------------------- */

static int run_copy(struct node *n, struct graft_err *err)
{
	(void)err;
	copy_bytes(n->out[0]->data, n->in[0]->data, n->out[0]->nbytes);
	return 0;
}

static int reshape_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t shape[NET_MAX_RANK], dims[NET_MAX_RANK], known = 1;
	long r;
	int infer_at = -1, allowzero = n->opset >= 14 && attr_int(n, "allowzero", 0) != 0;
	int rc;

	if ((rc = want_io(n, err, n->opset < 5 ? 1 : 2, n->opset < 5 ? 1 : 2)))
		return rc;
	x = n->in[0];
	if ((rc = fixed_size(n, x, err)))
		return rc;
	if (n->opset < 5) {
		if ((r = ints_attr(n, "shape", shape, NET_MAX_RANK, err)) < -1)
			return (int)r;
		if (r < 0)
			return node_err(n, err, GRAFT_EFORMAT, "attribute 'shape' is missing");
	} else if ((r = value_ints(n, n->in[1], shape, NET_MAX_RANK, err)) < 0) {
		return err->code;
	}
	for (long i = 0; i < r; i++) {
		dims[i] = shape[i];
		if (shape[i] == 0 && !allowzero) {
			if (i >= x->rank)
				return node_err(n, err, GRAFT_EFORMAT, "shape[%ld] is 0 but the input "
						"has rank %d", i, x->rank);
			dims[i] = x->dims[i];
		} else if (shape[i] == -1) {
			if (infer_at >= 0)
				return node_err(n, err, GRAFT_EFORMAT, "shape has more than one -1");
			infer_at = (int)i;
			continue;
		} else if (shape[i] < -1) {
			return node_err(n, err, GRAFT_EFORMAT, "shape[%ld] is %lld", i,
					(long long)shape[i]);
		}
		known *= dims[i];
	}
	int64_t numel = (int64_t)value_numel(x);
	if (infer_at >= 0) {
		if (known == 0 || numel % known)
			return node_err(n, err, GRAFT_EFORMAT, "cannot infer the -1 in the shape: "
					"%lld elements are not a multiple of %lld", (long long)numel,
					(long long)known);
		dims[infer_at] = numel / known;
	} else if (known != numel) {
		return node_err(n, err, GRAFT_EFORMAT, "cannot reshape %lld elements into %lld",
				(long long)numel, (long long)known);
	}
	return set_out(n, n->out[0], x->dtype, (int)r, dims, err);
}

static int flatten_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t axis, dims[2];
	int rc;

	if ((rc = want_io(n, err, 1, 1)) || (rc = fixed_size(n, n->in[0], err)))
		return rc;
	x = n->in[0];
	axis = attr_int(n, "axis", 1);
	if (axis < 0)
		axis += x->rank;
	if (axis < 0 || axis > x->rank)
		return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
				(long long)attr_int(n, "axis", 1), x->rank);
	dims[0] = dims_prod(x->dims, 0, (int)axis);
	dims[1] = dims_prod(x->dims, (int)axis, x->rank);
	return set_out(n, n->out[0], x->dtype, 2, dims, err);
}

/* Squeeze and Unsqueeze axes: an attribute before opset 13, an input since. */
static long axes_of(struct node *n, int64_t *axes, size_t max, struct graft_err *err)
{
	if (n->opset < 13)
		return ints_attr(n, "axes", axes, max, err);
	if (n->n_in < 2 || !n->in[1])
		return -1;
	long k = value_ints(n, n->in[1], axes, max, err);
	return k < 0 ? err->code : k;
}

static int squeeze_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t axes[NET_MAX_RANK], dims[NET_MAX_RANK];
	unsigned drop = 0;
	long na;
	int r = 0, rc;

	if ((rc = want_io(n, err, 1, n->opset < 13 ? 1 : 2)) ||
	    (rc = fixed_size(n, n->in[0], err)))
		return rc;
	x = n->in[0];
	if ((na = axes_of(n, axes, NET_MAX_RANK, err)) < -1)
		return (int)na;
	if (na < 0) {
		for (int i = 0; i < x->rank; i++)
			if (x->dims[i] == 1)
				drop |= 1u << i;
	}
	for (long k = 0; k < na; k++) {
		int a = norm_axis(axes[k], x->rank);
		if (a < 0)
			return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
					(long long)axes[k], x->rank);
		if (x->dims[a] != 1)
			return node_err(n, err, GRAFT_EFORMAT, "cannot squeeze axis %d of size %lld", a,
					(long long)x->dims[a]);
		if (drop & (1u << a))
			return node_err(n, err, GRAFT_EFORMAT, "axis %d is listed twice", a);
		drop |= 1u << a;
	}
	for (int i = 0; i < x->rank; i++)
		if (!(drop & (1u << i)))
			dims[r++] = x->dims[i];
	return set_out(n, n->out[0], x->dtype, r, dims, err);
}

static int unsqueeze_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t axes[NET_MAX_RANK], dims[NET_MAX_RANK];
	unsigned add = 0;
	long na;
	int r, rc;

	if ((rc = want_io(n, err, n->opset < 13 ? 1 : 2, n->opset < 13 ? 1 : 2)) ||
	    (rc = fixed_size(n, n->in[0], err)))
		return rc;
	x = n->in[0];
	if ((na = axes_of(n, axes, NET_MAX_RANK, err)) < -1)
		return (int)na;
	if (na < 0)
		return node_err(n, err, GRAFT_EFORMAT, "axes are missing");
	r = x->rank + (int)na;
	if (r > NET_MAX_RANK)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "output rank %d is above %d", r,
				NET_MAX_RANK);
	for (long k = 0; k < na; k++) {
		int a = norm_axis(axes[k], r);
		if (a < 0)
			return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
					(long long)axes[k], r);
		if (add & (1u << a))
			return node_err(n, err, GRAFT_EFORMAT, "axis %d is listed twice", a);
		add |= 1u << a;
	}
	for (int i = 0, j = 0; i < r; i++)
		dims[i] = add & (1u << i) ? 1 : x->dims[j++];
	return set_out(n, n->out[0], x->dtype, r, dims, err);
}

/* ---- Transpose ------------------------------------------------------------------------ */

static int transpose_perm(const struct node *n, int rank, int64_t *perm, struct graft_err *err)
{
	long k = attr_ints(n, "perm", perm, NET_MAX_RANK);
	unsigned seen = 0;

	if (k < 0) {
		for (int i = 0; i < rank; i++)
			perm[i] = rank - 1 - i;
		return 0;
	}
	if (k != rank)
		return node_err(n, err, GRAFT_EFORMAT, "perm has %ld entries for rank %d", k, rank);
	for (int i = 0; i < rank; i++) {
		if (perm[i] < 0 || perm[i] >= rank || (seen & (1u << perm[i])))
			return node_err(n, err, GRAFT_EFORMAT, "perm is not a permutation of 0..%d",
					rank - 1);
		seen |= 1u << perm[i];
	}
	return 0;
}

static int transpose_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t perm[NET_MAX_RANK], dims[NET_MAX_RANK];
	int rc;

	if ((rc = want_io(n, err, 1, 1)) || (rc = fixed_size(n, n->in[0], err)))
		return rc;
	x = n->in[0];
	if ((rc = transpose_perm(n, x->rank, perm, err)))
		return rc;
	for (int i = 0; i < x->rank; i++)
		dims[i] = x->dims[perm[i]];
	return set_out(n, n->out[0], x->dtype, x->rank, dims, err);
}

static int transpose_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	size_t es = graft_dtype_size(x->dtype);
	int64_t perm[NET_MAX_RANK], st[NET_MAX_RANK];
	struct view v;
	int rc;

	if ((rc = transpose_perm(n, x->rank, perm, err)))
		return rc;
	strides_of(x->rank, x->dims, st);
	v.rank = x->rank;
	for (int i = 0; i < x->rank; i++) {
		v.dims[i] = x->dims[perm[i]];
		v.st[i] = st[perm[i]] * (int64_t)es;
	}
	copy_view(n->out[0]->data, x->data, &v, es);
	return 0;
}

/* ---- DepthToSpace, SpaceToDepth ----------------------------------------------------------- */

static int block_size(const struct node *n, struct graft_err *err)
{
	int64_t b = attr_int(n, "blocksize", 0);
	const struct value *x = n->in[0];

	if (b <= 0 || b > INT32_MAX)
		return node_err(n, err, GRAFT_EFORMAT, "blocksize must be positive");
	if (x->rank != 4)
		return node_err(n, err, GRAFT_EFORMAT, "input must have rank 4");
	return (int)b;
}

/* 1 for CRD, 0 for DCR, or an error code. */
static int d2s_crd(const struct node *n, struct graft_err *err)
{
	if (n->opset < 11 || attr_string_eq(n, "mode", "DCR", "DCR"))
		return 0;
	if (attr_string_eq(n, "mode", "DCR", "CRD"))
		return 1;
	return node_err(n, err, GRAFT_EFORMAT, "mode must be DCR or CRD");
}

static int depth_to_space_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t dims[4], b;
	int rc;

	if ((rc = want_io(n, err, 1, 1)) || (rc = fixed_size(n, n->in[0], err)))
		return rc;
	x = n->in[0];
	if ((rc = block_size(n, err)) < 0)
		return rc;
	b = rc;
	if ((rc = d2s_crd(n, err)) < 0)
		return rc;
	if (x->dims[1] % (b * b))
		return node_err(n, err, GRAFT_EFORMAT, "channels %lld are not a multiple of %lld",
				(long long)x->dims[1], (long long)(b * b));
	dims[0] = x->dims[0];
	dims[1] = x->dims[1] / (b * b);
	dims[2] = x->dims[2] * b;
	dims[3] = x->dims[3] * b;
	return set_out(n, n->out[0], x->dtype, 4, dims, err);
}

/* The view of the input that DepthToSpace's output copies (strides in elements). */
static int depth_to_space_view(const struct node *n, struct view *v, struct graft_err *err)
{
	const struct value *x = n->in[0];
	int64_t b = block_size(n, err), C, H, W, hw;
	int crd = d2s_crd(n, err);

	if (b < 0 || crd < 0)
		return (int)(b < 0 ? b : crd);
	C = x->dims[1] / (b * b);
	H = x->dims[2];
	W = x->dims[3];
	hw = H * W;
	/* Output (n, c, h, i, w, j) reads input channel c*b*b + i*b + j (CRD) or
	 * (i*b + j)*C + c (DCR), at (h, w). */
	int64_t dims[6] = {x->dims[0], C, H, b, W, b};
	int64_t st[6] = {x->dims[1] * hw, crd ? b * b * hw : hw, W, crd ? b * hw : b * C * hw, 1,
			 crd ? hw : C * hw};
	v->rank = 6;
	memcpy(v->dims, dims, sizeof(dims));
	memcpy(v->st, st, sizeof(st));
	return 0;
}

static int depth_to_space_run(struct node *n, struct graft_err *err)
{
	size_t es = graft_dtype_size(n->in[0]->dtype);
	struct view v;
	int rc;

	if ((rc = depth_to_space_view(n, &v, err)))
		return rc;
	for (int i = 0; i < v.rank; i++)
		v.st[i] *= (int64_t)es;
	if (n->out[0]->nbytes)
		copy_view(n->out[0]->data, n->in[0]->data, &v, es);
	return 0;
}

static int space_to_depth_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t dims[4], b;
	int rc;

	if ((rc = want_io(n, err, 1, 1)) || (rc = fixed_size(n, n->in[0], err)))
		return rc;
	x = n->in[0];
	if ((rc = block_size(n, err)) < 0)
		return rc;
	b = rc;
	if (x->dims[2] % b || x->dims[3] % b)
		return node_err(n, err, GRAFT_EFORMAT, "height and width must be multiples of %lld",
				(long long)b);
	dims[0] = x->dims[0];
	dims[1] = x->dims[1] * b * b;
	dims[2] = x->dims[2] / b;
	dims[3] = x->dims[3] / b;
	return set_out(n, n->out[0], x->dtype, 4, dims, err);
}

/* The view of the input that SpaceToDepth's output copies (strides in elements). */
static int space_to_depth_view(const struct node *n, struct view *v, struct graft_err *err)
{
	const struct value *x = n->in[0];
	int64_t b = block_size(n, err), C, H, W;

	if (b < 0)
		return (int)b;
	C = x->dims[1];
	H = x->dims[2];
	W = x->dims[3];
	/* Output (n, i, j, c, h, w) reads input (n, c, h*b + i, w*b + j). */
	int64_t dims[6] = {x->dims[0], b, b, C, H / b, W / b};
	int64_t st[6] = {C * H * W, W, 1, H * W, b * W, b};
	v->rank = 6;
	memcpy(v->dims, dims, sizeof(dims));
	memcpy(v->st, st, sizeof(st));
	return 0;
}

static int space_to_depth_run(struct node *n, struct graft_err *err)
{
	size_t es = graft_dtype_size(n->in[0]->dtype);
	struct view v;
	int rc;

	if ((rc = space_to_depth_view(n, &v, err)))
		return rc;
	for (int i = 0; i < v.rank; i++)
		v.st[i] *= (int64_t)es;
	if (n->out[0]->nbytes)
		copy_view(n->out[0]->data, n->in[0]->data, &v, es);
	return 0;
}

/* ---- the family ------------------------------------------------------------------------ */

static const struct op_def op_reshape = {
	.name = "Reshape", .infer = reshape_infer, .run = run_copy,
	.plan_inputs = 1 << 1,
};
static const struct op_def op_flatten = {
	.name = "Flatten", .infer = flatten_infer, .run = run_copy,
};
static const struct op_def op_squeeze = {
	.name = "Squeeze", .infer = squeeze_infer, .run = run_copy,
	.plan_inputs = 1 << 1,
};
static const struct op_def op_unsqueeze = {
	.name = "Unsqueeze", .infer = unsqueeze_infer, .run = run_copy,
	.plan_inputs = 1 << 1,
};
static const struct op_def op_transpose = {
	.name = "Transpose", .infer = transpose_infer, .run = transpose_run,
};
static const struct op_def op_depth_to_space = {
	.name = "DepthToSpace", .infer = depth_to_space_infer, .run = depth_to_space_run,
};
static const struct op_def op_space_to_depth = {
	.name = "SpaceToDepth", .infer = space_to_depth_infer, .run = space_to_depth_run,
};

const struct op_def *const ops_reshape[] = {
	&op_reshape, &op_flatten, &op_squeeze, &op_unsqueeze, &op_transpose,
	&op_depth_to_space, &op_space_to_depth, NULL,
};

/* ---- backward ----------------------------------------------------------------------------
 *
 * Each input element is read once, so each gradient is a copy back, in float32 (only
 * float values have gradients): the same bytes for Reshape, Flatten, Squeeze and
 * Unsqueeze (copy_backward, ops_util.c), the output's gradient read back through the
 * inverse permutation for Transpose, DepthToSpace and SpaceToDepth.  A shape or axes
 * input never gets one.
 */

/* The view that reads back the source of a view v that is a permutation of its source's
 * axes (strides in elements, each input element read once): copying it into the source's
 * layout undoes v.  Its axes are v's in the source's order, their strides v's output's. */
static void view_inverse(const struct view *v, size_t es, struct view *inv)
{
	int64_t ost[VIEW_MAX_RANK];
	int order[VIEW_MAX_RANK];

	strides_of(v->rank, v->dims, ost);
	for (int i = 0; i < v->rank; i++) {
		int j = i;
		/* insertion sort, largest source stride first */
		for (; j > 0 && v->st[order[j - 1]] < v->st[i]; j--)
			order[j] = order[j - 1];
		order[j] = i;
	}
	inv->rank = v->rank;
	for (int i = 0; i < v->rank; i++) {
		inv->dims[i] = v->dims[order[i]];
		inv->st[i] = ost[order[i]] * (int64_t)es;
	}
}

/* dX = dY transposed back: dX axis perm[j] reads dY axis j. */
static int transpose_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	int64_t perm[NET_MAX_RANK], st[NET_MAX_RANK];
	struct view v;
	int rc;

	if (!n->gin[0])
		return 0;
	if ((rc = grad_is_float(n, err)) || (rc = transpose_perm(n, x->rank, perm, err)))
		return rc;
	strides_of(x->rank, n->out[0]->dims, st);
	v.rank = x->rank;
	for (int j = 0; j < x->rank; j++) {
		v.dims[perm[j]] = x->dims[perm[j]];
		v.st[perm[j]] = st[j] * (int64_t)sizeof(float);
	}
	copy_view(n->gin[0]->data, n->out[0]->grad->data, &v, sizeof(float));
	return 0;
}

/* DepthToSpace and SpaceToDepth permute elements: dX is dY read back through the
 * inverse permutation. */
static int block_backward(struct node *n, struct graft_err *err)
{
	struct view v, inv;
	int rc;

	if (!n->gin[0])
		return 0;
	if ((rc = grad_is_float(n, err)))
		return rc;
	rc = strcmp(n->op->name, "DepthToSpace") == 0 ? depth_to_space_view(n, &v, err)
						       : space_to_depth_view(n, &v, err);
	if (rc)
		return rc;
	view_inverse(&v, sizeof(float), &inv);
	if (n->gin[0]->nbytes)
		copy_view(n->gin[0]->data, n->out[0]->grad->data, &inv, sizeof(float));
	return 0;
}

static const struct grad_def grad_reshape = {"Reshape", copy_backward};
static const struct grad_def grad_flatten = {"Flatten", copy_backward};
static const struct grad_def grad_squeeze = {"Squeeze", copy_backward};
static const struct grad_def grad_unsqueeze = {"Unsqueeze", copy_backward};
static const struct grad_def grad_transpose = {"Transpose", transpose_backward};
static const struct grad_def grad_depth_to_space = {"DepthToSpace", block_backward};
static const struct grad_def grad_space_to_depth = {"SpaceToDepth", block_backward};

const struct grad_def *const ops_reshape_grad[] = {
	&grad_reshape, &grad_flatten, &grad_squeeze, &grad_unsqueeze, &grad_transpose,
	&grad_depth_to_space, &grad_space_to_depth, NULL,
};
