/*
 * index.c: the ops that pick elements of their input by position: Slice (a strided range
 * per axis, from starts, ends, axes and steps), Gather (the slices at the indices given
 * along one axis) and GatherElements (one element per index).  Data movement only, on
 * any fixed-size dtype, as in reshape.c, join.c and constant.c.
 *
 * Slice is a strided view of its input (a negative step, a negative stride), copied by
 * copy_view() (ops_util.c), which turns most slices into memcpy of whole rows.  Gather
 * copies one contiguous block per (outer index, index), across threads when the output
 * is large.  An index out of range fails the run (GRAFT_EINVAL); negative ones count from
 * the end.  Backward: Slice's gradient is the output's gradient written back where it was
 * read, zeros elsewhere; Gather's and GatherElements' add it at the indices, which may
 * repeat.
 */
#include <string.h>

#include "ops.h"

/* ---- Slice ---------------------------------------------------------------------------- */

/* The output dims, and the view of the input that the output copies. */
static int slice_plan(struct node *n, int64_t *dims, struct view *v, int64_t *base,
		      struct graft_err *err)
{
	const struct value *x = n->in[0];
	int r = x->rank;
	int64_t starts[NET_MAX_RANK], ends[NET_MAX_RANK], axes[NET_MAX_RANK];
	int64_t steps[NET_MAX_RANK], st[NET_MAX_RANK];
	long ns, ne, na = -1, nst = -1;
	unsigned seen = 0;

	if (n->opset < 10) {
		if ((ns = ints_attr(n, "starts", starts, NET_MAX_RANK, err)) < -1 ||
		    (ne = ints_attr(n, "ends", ends, NET_MAX_RANK, err)) < -1 ||
		    (na = ints_attr(n, "axes", axes, NET_MAX_RANK, err)) < -1)
			return err->code;
		if (ns < 0 || ne < 0)
			return node_err(n, err, GRAFT_EFORMAT, "attributes 'starts' and 'ends' are "
					"required");
	} else {
		if ((ns = value_ints(n, n->in[1], starts, NET_MAX_RANK, err)) < 0 ||
		    (ne = value_ints(n, n->in[2], ends, NET_MAX_RANK, err)) < 0)
			return err->code;
		if (n->n_in > 3 && n->in[3] &&
		    (na = value_ints(n, n->in[3], axes, NET_MAX_RANK, err)) < 0)
			return err->code;
		if (n->n_in > 4 && n->in[4] &&
		    (nst = value_ints(n, n->in[4], steps, NET_MAX_RANK, err)) < 0)
			return err->code;
	}
	if (ne != ns || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
		return node_err(n, err, GRAFT_EFORMAT, "starts, ends, axes and steps differ in "
				"length");
	strides_of(r, x->dims, st);
	*base = 0;
	v->rank = r;
	for (int i = 0; i < r; i++) {
		dims[i] = x->dims[i];
		v->st[i] = st[i];
	}
	for (long k = 0; k < ns; k++) {
		int64_t axis = na >= 0 ? axes[k] : k, step = nst >= 0 ? steps[k] : 1;
		int a = norm_axis(axis, r);
		if (a < 0)
			return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
					(long long)axis, r);
		if (seen & (1u << a))
			return node_err(n, err, GRAFT_EFORMAT, "axis %d is listed twice", a);
		seen |= 1u << a;
		if (step == 0)
			return node_err(n, err, GRAFT_EFORMAT, "step is 0");
		int64_t d = x->dims[a], s = starts[k], e = ends[k], cnt;
		/* A step longer than the axis takes one element either way. */
		int64_t lim = d > 0 ? d : 1;
		step = step > lim ? lim : step < -lim ? -lim : step;
		if (s < 0)
			s += d;
		if (e < 0)
			e += d;
		if (d == 0) {
			s = 0;
			cnt = 0;
		} else if (step > 0) {
			s = s < 0 ? 0 : s > d ? d : s;
			e = e < 0 ? 0 : e > d ? d : e;
			cnt = e > s ? (e - s - 1) / step + 1 : 0;
		} else {
			s = s < 0 ? 0 : s > d - 1 ? d - 1 : s;
			e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
			cnt = s > e ? (s - e - 1) / -step + 1 : 0;
		}
		dims[a] = cnt;
		if (cnt > 0)
			*base += s * st[a];
		v->st[a] = step * st[a];
	}
	for (int i = 0; i < r; i++)
		v->dims[i] = dims[i];
	return 0;
}

static int slice_infer(struct node *n, struct graft_err *err)
{
	int64_t dims[NET_MAX_RANK], base;
	struct view v;
	int rc;

	if ((rc = want_io(n, err, n->opset < 10 ? 1 : 3, n->opset < 10 ? 1 : 5)) ||
	    (rc = fixed_size(n, n->in[0], err)) || (rc = slice_plan(n, dims, &v, &base, err)))
		return rc;
	return set_out(n, n->out[0], n->in[0]->dtype, n->in[0]->rank, dims, err);
}

static int slice_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	size_t es = graft_dtype_size(x->dtype);
	int64_t dims[NET_MAX_RANK], base;
	struct view v;
	int rc;

	if ((rc = slice_plan(n, dims, &v, &base, err)))
		return rc;
	if (!n->out[0]->nbytes)
		return 0;
	for (int i = 0; i < v.rank; i++)
		v.st[i] *= (int64_t)es;
	copy_view(n->out[0]->data, (const char *)x->data + base * (int64_t)es, &v, es);
	return 0;
}

/* ---- Gather and GatherElements --------------------------------------------------------- */

static int is_int_type(int dtype)
{
	return dtype == GRAFT_INT64 || dtype == GRAFT_INT32;
}

static int64_t index_at(const struct value *idx, uint64_t i)
{
	if (idx->dtype == GRAFT_INT64) {
		int64_t k;
		memcpy(&k, (const char *)idx->data + i * 8, 8);
		return k;
	}
	int32_t k;
	memcpy(&k, (const char *)idx->data + i * 4, 4);
	return k;
}

static int gather_axis(const struct node *n, int rank, struct graft_err *err)
{
	int64_t axis = attr_int(n, "axis", 0);
	int ax = norm_axis(axis, rank);

	if (ax < 0)
		return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
				(long long)axis, rank);
	return ax;
}

static int gather_infer(struct node *n, struct graft_err *err)
{
	const struct value *x, *idx;
	int64_t dims[2 * NET_MAX_RANK];
	int ax, r = 0, rc;

	if ((rc = want_io(n, err, 2, 2)) || (rc = fixed_size(n, n->in[0], err)))
		return rc;
	x = n->in[0];
	idx = n->in[1];
	if (!is_int_type(idx->dtype))
		return node_err(n, err, GRAFT_EFORMAT, "indices must be int32 or int64");
	if (x->rank < 1)
		return node_err(n, err, GRAFT_EFORMAT, "data must have rank 1 or more");
	if ((ax = gather_axis(n, x->rank, err)) < 0)
		return ax;
	for (int i = 0; i < ax; i++)
		dims[r++] = x->dims[i];
	for (int i = 0; i < idx->rank; i++)
		dims[r++] = idx->dims[i];
	for (int i = ax + 1; i < x->rank; i++)
		dims[r++] = x->dims[i];
	return set_out(n, n->out[0], x->dtype, r, dims, err);
}

static int gather_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *idx = n->in[1];
	size_t es = graft_dtype_size(x->dtype);
	int ax = gather_axis(n, x->rank, err);
	uint64_t ni = value_numel(idx);

	if (ax < 0)
		return ax;
	int64_t d = x->dims[ax], outer = dims_prod(x->dims, 0, ax);
	size_t inner = (size_t)dims_prod(x->dims, ax + 1, x->rank) * es;
	char *out = n->out[0]->data;
	const char *in = x->data;

	if (!n->out[0]->nbytes)
		return 0;
	for (uint64_t i = 0; i < ni; i++) {
		int64_t k = index_at(idx, i);
		if (k < -d || k >= d)
			return node_err(n, err, GRAFT_EINVAL, "index %lld is out of range for dim %lld",
					(long long)k, (long long)d);
	}
	int64_t items = outer * (int64_t)ni;
#pragma omp parallel for if (n->out[0]->nbytes >= PAR_BYTES) schedule(static)
	for (int64_t it = 0; it < items; it++) {
		int64_t o = it / (int64_t)ni, k = index_at(idx, (uint64_t)(it % (int64_t)ni));
		if (k < 0)
			k += d;
		memcpy(out + (size_t)it * inner, in + ((size_t)o * (size_t)d + (size_t)k) * inner,
		       inner);
	}
	return 0;
}

static int gather_elements_infer(struct node *n, struct graft_err *err)
{
	const struct value *x, *idx;
	int ax, rc;

	if ((rc = want_io(n, err, 2, 2)) || (rc = fixed_size(n, n->in[0], err)))
		return rc;
	x = n->in[0];
	idx = n->in[1];
	if (!is_int_type(idx->dtype))
		return node_err(n, err, GRAFT_EFORMAT, "indices must be int32 or int64");
	if (x->rank < 1 || idx->rank != x->rank)
		return node_err(n, err, GRAFT_EFORMAT, "data and indices must have the same rank, "
				"1 or more");
	if ((ax = gather_axis(n, x->rank, err)) < 0)
		return ax;
	for (int i = 0; i < x->rank; i++)
		if (i != ax && idx->dims[i] > x->dims[i])
			return node_err(n, err, GRAFT_EFORMAT, "indices dim %d (%lld) exceeds the "
					"data's (%lld)", i, (long long)idx->dims[i],
					(long long)x->dims[i]);
	return set_out(n, n->out[0], x->dtype, idx->rank, idx->dims, err);
}

static int gather_elements_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *idx = n->in[1];
	size_t es = graft_dtype_size(x->dtype);
	int ax = gather_axis(n, x->rank, err), r = x->rank;
	uint64_t ni = value_numel(idx);
	int64_t st[NET_MAX_RANK], pos[NET_MAX_RANK] = {0}, off = 0, d;
	char *out = n->out[0]->data;
	const char *in = x->data;

	if (ax < 0)
		return ax;
	d = x->dims[ax];
	strides_of(r, x->dims, st);
	/* off: the input offset of pos with the gather axis at 0. */
	for (uint64_t i = 0; i < ni; i++) {
		int64_t k = index_at(idx, i);
		if (k < -d || k >= d)
			return node_err(n, err, GRAFT_EINVAL, "index %lld is out of range for dim %lld",
					(long long)k, (long long)d);
		if (k < 0)
			k += d;
		memcpy(out + i * es, in + (size_t)(off + k * st[ax]) * es, es);
		for (int a = r - 1; a >= 0; a--) {
			if (a != ax)
				off += st[a];
			if (++pos[a] < idx->dims[a])
				break;
			if (a != ax)
				off -= st[a] * idx->dims[a];
			pos[a] = 0;
		}
	}
	return 0;
}

/* ---- the family ------------------------------------------------------------------------ */

static const struct op_def op_slice = {
	.name = "Slice", .infer = slice_infer, .run = slice_run,
	.plan_inputs = 0x1e,
};
static const struct op_def op_gather = {
	.name = "Gather", .infer = gather_infer, .run = gather_run,
};
static const struct op_def op_gather_elements = {
	.name = "GatherElements", .infer = gather_elements_infer, .run = gather_elements_run,
};

const struct op_def *const ops_index[] = {
	&op_slice, &op_gather, &op_gather_elements, NULL,
};

/* ---- backward ----------------------------------------------------------------------------
 *
 * In float32 (only float values have gradients); starts, ends, axes, steps and indices
 * never get one.  Slice reads some input elements not at all (they get zeros) and the
 * rest once; Gather and GatherElements may read one several times, so their gradients
 * add up.
 */

/* dX: zeros, and dY's elements written back where the slice read them. */
static int slice_backward(struct node *n, struct graft_err *err)
{
	const struct value *y = n->out[0];
	int64_t dims[NET_MAX_RANK], base;
	struct view v;
	struct walk w;
	int rc;

	if (!n->gin[0])
		return 0;
	if ((rc = grad_is_float(n, err)) || (rc = slice_plan(n, dims, &v, &base, err)))
		return rc;
	float *d = n->gin[0]->data;
	if (value_numel(y) < value_numel(n->in[0]))
		memset(d, 0, n->gin[0]->nbytes);
	if (!y->nbytes)
		return 0;
	w.rank = v.rank;
	memcpy(w.dims, v.dims, sizeof(v.dims[0]) * (size_t)v.rank);
	memcpy(w.sd, v.st, sizeof(v.st[0]) * (size_t)v.rank);
	strides_of(v.rank, v.dims, w.ss);
	walk_run(d + base, y->grad->data, &w, 0);
	return 0;
}

/* Checks every index of a Gather-like node against the axis length d. */
static int check_indices(const struct node *n, const struct value *idx, int64_t d,
			 struct graft_err *err)
{
	uint64_t ni = value_numel(idx);

	for (uint64_t i = 0; i < ni; i++) {
		int64_t k = index_at(idx, i);
		if (k < -d || k >= d)
			return node_err(n, err, GRAFT_EINVAL, "index %lld is out of range for "
					"dim %lld", (long long)k, (long long)d);
	}
	return 0;
}

/* dData: dY's rows added at the indices they were read from (indices may repeat).  The
 * work is split over (outer index, column block) pairs, which own disjoint parts of dX,
 * so a Gather along axis 0 (an embedding) runs in parallel too. */
static int gather_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *idx = n->in[1];
	int ax = gather_axis(n, x->rank, err), rc;
	uint64_t ni = value_numel(idx);

	if (ax < 0)
		return ax;
	if (!n->gin[0])
		return 0;
	if ((rc = grad_is_float(n, err)) || (rc = check_indices(n, idx, x->dims[ax], err)))
		return rc;
	int64_t d = x->dims[ax], outer = dims_prod(x->dims, 0, ax);
	int64_t inner = dims_prod(x->dims, ax + 1, x->rank);
	int64_t blocks = inner / 64 < 1 ? 1 : inner / 64 > 64 ? 64 : inner / 64;
	float *dx = n->gin[0]->data;
	const float *g = n->out[0]->grad->data;

	memset(dx, 0, n->gin[0]->nbytes);
#pragma omp parallel for if (n->out[0]->nbytes >= PAR_BYTES && outer * blocks > 1) \
	schedule(static)
	for (int64_t it = 0; it < outer * blocks; it++) {
		int64_t o = it / blocks, c = it % blocks;
		int64_t j0 = inner * c / blocks, j1 = inner * (c + 1) / blocks;
		for (uint64_t i = 0; i < ni; i++) {
			int64_t k = index_at(idx, i);
			if (k < 0)
				k += d;
			float *to = dx + (o * d + k) * inner;
			const float *from = g + (o * (int64_t)ni + (int64_t)i) * inner;
			for (int64_t j = j0; j < j1; j++)
				to[j] += from[j];
		}
	}
	return 0;
}

/* dData: each dY element added at the data element it was read from. */
static int gather_elements_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *idx = n->in[1];
	int ax = gather_axis(n, x->rank, err), r = x->rank, rc;
	uint64_t ni = value_numel(idx);
	int64_t st[NET_MAX_RANK], pos[NET_MAX_RANK] = {0}, off = 0;

	if (ax < 0)
		return ax;
	if (!n->gin[0])
		return 0;
	if ((rc = grad_is_float(n, err)) || (rc = check_indices(n, idx, x->dims[ax], err)))
		return rc;
	int64_t d = x->dims[ax];
	float *dx = n->gin[0]->data;
	const float *g = n->out[0]->grad->data;

	memset(dx, 0, n->gin[0]->nbytes);
	strides_of(r, x->dims, st);
	/* off: the data offset of pos with the gather axis at 0 (as in the forward). */
	for (uint64_t i = 0; i < ni; i++) {
		int64_t k = index_at(idx, i);
		if (k < 0)
			k += d;
		dx[off + k * st[ax]] += g[i];
		for (int a = r - 1; a >= 0; a--) {
			if (a != ax)
				off += st[a];
			if (++pos[a] < idx->dims[a])
				break;
			if (a != ax)
				off -= st[a] * idx->dims[a];
			pos[a] = 0;
		}
	}
	return 0;
}

static const struct grad_def grad_slice = {"Slice", slice_backward};
static const struct grad_def grad_gather = {"Gather", gather_backward};
static const struct grad_def grad_gather_elements = {"GatherElements",
						     gather_elements_backward};

const struct grad_def *const ops_index_grad[] = {
	&grad_slice, &grad_gather, &grad_gather_elements, NULL,
};
