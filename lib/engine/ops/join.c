/*
 * shape.c: the data-movement ops.  They reshape, transpose, slice, join, split, gather,
 * pad and tile tensors, and make constants and shapes.  None of them does arithmetic on
 * elements, so every kernel works on any fixed-size dtype by moving
 * graft_dtype_size() bytes at a time.
 *
 * Most of these nodes sit in the Shape -> Gather -> Concat -> Reshape chains that the
 * executor folds at plan time.  The ones left at run time in real networks are mostly
 * Transpose, Concat, Split, Slice, Pad and Gather, so those get the fast paths.  Every
 * strided copy goes through copy_view().  It drops unit axes and merges axes that read
 * the source contiguously, which turns most slices, expands and tiles into memcpy of
 * whole rows.  Transposes that move the source's innermost axis get a tiled 2-D loop.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "format/format.h"     /* onnx_tensor_decode: Constant */

/* Tile views a rank-r tensor as 2r axes. */
#define VIEW_MAX_RANK (2 * NET_MAX_RANK)
/* Below this many output bytes, one thread copies: starting threads costs more. */
#define PAR_BYTES ((uint64_t)1 << 17)
/* Side of the square blocks that transposes copy, in elements. */
#define TILE 16

/* ---- shared helpers ------------------------------------------------------------------- */

/* Checks the input count, that the first n_req inputs are present, and that the node has
 * exactly one output. */
static int want_io(const struct node *n, struct graft_err *err, size_t n_req, size_t max_in)
{
	if (n->n_in < n_req || n->n_in > max_in)
		return node_err(n, err, GRAFT_EFORMAT, "takes %zu to %zu inputs, not %zu", n_req,
				max_in, n->n_in);
	for (size_t k = 0; k < n_req; k++)
		if (!n->in[k])
			return node_err(n, err, GRAFT_EFORMAT, "input %zu is missing", k);
	if (n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "must have exactly one output");
	return 0;
}

static int fixed_size(const struct node *n, const struct value *v, struct graft_err *err)
{
	if (graft_dtype_size(v->dtype) == 0)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input '%s' has type %s, which has no "
				"fixed element size", v->name,
				dtype_label(v->dtype));
	return 0;
}

static int is_int_type(int dtype)
{
	return dtype == GRAFT_INT64 || dtype == GRAFT_INT32;
}

/* Sets an output after checking its rank and that its element count is sane. */
static int set_out(const struct node *n, struct value *out, int dtype, int rank,
		   const int64_t *dims, struct graft_err *err)
{
	uint64_t numel;

	if (rank > NET_MAX_RANK)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "output rank %d is above %d", rank,
				NET_MAX_RANK);
	if (dims_numel(dims, rank, &numel))
		return node_err(n, err, GRAFT_EFORMAT, "output '%s' has a negative or huge dim",
				out->name);
	value_set(out, dtype, rank, dims);
	return 0;
}

/* Row-major strides, in elements. */
static void strides_of(int rank, const int64_t *dims, int64_t *st)
{
	int64_t s = 1;

	for (int i = rank - 1; i >= 0; i--) {
		st[i] = s;
		s *= dims[i];
	}
}

static int64_t prod(const int64_t *dims, int from, int to)
{
	int64_t p = 1;

	for (int i = from; i < to; i++)
		p *= dims[i];
	return p;
}

/* Reads an int list from an attribute (at most max); -1 if absent, or an error code
 * (below -1) when it is longer than max. */
static long ints_attr(const struct node *n, const char *name, int64_t *v, size_t max,
		      struct graft_err *err)
{
	long k = attr_ints(n, name, v, max);

	if (k > (long)max)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "attribute '%s' has too many values",
				name);
	return k;
}

/* Moves n elements of es bytes: d[i * ds] = s[i * ss], strides in bytes.  Fixed-size
 * memcpy compiles to plain moves.  It also tolerates sources that are not aligned for
 * the type, such as borrowed tensors. */
static inline void move_n(char *d, int64_t ds, const char *s, int64_t ss, int64_t n,
			  size_t es)
{
	switch (es) {
	case 1:
		for (int64_t i = 0; i < n; i++)
			d[i * ds] = s[i * ss];
		break;
	case 2:
		for (int64_t i = 0; i < n; i++)
			memcpy(d + i * ds, s + i * ss, 2);
		break;
	case 4:
		for (int64_t i = 0; i < n; i++)
			memcpy(d + i * ds, s + i * ss, 4);
		break;
	case 8:
		for (int64_t i = 0; i < n; i++)
			memcpy(d + i * ds, s + i * ss, 8);
		break;
	default:
		for (int64_t i = 0; i < n; i++)
			memcpy(d + i * ds, s + i * ss, es);
		break;
	}
}

/* Fills n elements of es bytes at dst with the element at elem, doubling memcpy. */
static void fill(void *dst, const void *elem, uint64_t n, size_t es)
{
	char *d = dst;
	size_t total = (size_t)n * es, done;

	if (!total)
		return;
	memcpy(d, elem, es);
	for (done = es; done < total; done *= 2)
		memcpy(d + done, d, done < total - done ? done : total - done);
}

/* memcpy, split across threads when large (one core does not saturate memory). */
static void copy_bytes(void *dst, const void *src, size_t nbytes)
{
	if (!nbytes || dst == src)
		return;
	if (nbytes < 4 * PAR_BYTES) {
		memcpy(dst, src, nbytes);
		return;
	}
#pragma omp parallel
	{
		size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
		size_t lo = nbytes / nt * t, hi = t + 1 == nt ? nbytes : nbytes / nt * (t + 1);
		memcpy((char *)dst + lo, (const char *)src + lo, hi - lo);
	}
}

/* ---- strided views -------------------------------------------------------------------- */

/* A strided view of a source.  Copying it fills a contiguous destination of shape dims
 * from src + sum(i_k * st_k).  Strides are in bytes and may be 0 (broadcast) or
 * negative (reversed slices). */
struct view {
	int rank;
	int64_t dims[VIEW_MAX_RANK];
	int64_t st[VIEW_MAX_RANK];
};

/* Drops unit axes and merges neighbours that the source walks contiguously.  Returns 0
 * when the view is empty. */
static int view_simplify(struct view *v)
{
	int r = 0;

	for (int i = 0; i < v->rank; i++)
		if (v->dims[i] == 0)
			return 0;
	for (int i = 0; i < v->rank; i++) {
		if (v->dims[i] == 1)
			continue;
		if (r > 0 && v->st[r - 1] == v->st[i] * v->dims[i]) {
			v->dims[r - 1] *= v->dims[i];
			v->st[r - 1] = v->st[i];
		} else {
			v->dims[r] = v->dims[i];
			v->st[r] = v->st[i];
			r++;
		}
	}
	v->rank = r;
	return 1;
}

/* Rows [row0, row1) of the view: every axis but the last indexes rows. */
static void copy_rows(char *dst, const char *src, const struct view *v, size_t es,
		      int64_t row0, int64_t row1)
{
	int r = v->rank;
	int64_t idx[VIEW_MAX_RANK], off = 0, q = row0;
	int64_t n = v->dims[r - 1], ss = v->st[r - 1];
	size_t rowbytes = (size_t)n * es;
	char *d = dst + (size_t)row0 * rowbytes;

	for (int a = r - 2; a >= 0; a--) {
		idx[a] = q % v->dims[a];
		q /= v->dims[a];
		off += idx[a] * v->st[a];
	}
	for (int64_t row = row0; row < row1; row++) {
		if (ss == (int64_t)es)
			memcpy(d, src + off, rowbytes);
		else
			move_n(d, (int64_t)es, src + off, ss, n, es);
		d += rowbytes;
		for (int a = r - 2; a >= 0; a--) {
			off += v->st[a];
			if (++idx[a] < v->dims[a])
				break;
			off -= v->st[a] * v->dims[a];
			idx[a] = 0;
		}
	}
}

/* A view whose last axis is strided in the source while axis k is contiguous there: a
 * batch of 2-D transposes, copied in TILE x TILE blocks so that both sides stay in cache.
 * dst axis k has stride dk; the source's last axis has stride sj. */
static void copy_transposed(char *dst, const char *src, const struct view *v, int k,
			    size_t es)
{
	int r = v->rank, j = r - 1, m = 0;
	int64_t odims[VIEW_MAX_RANK], ost[VIEW_MAX_RANK], odst[VIEW_MAX_RANK];
	int64_t dstr[VIEW_MAX_RANK], outer = 1;
	int64_t A = v->dims[k], B = v->dims[j], sj = v->st[j];
	/* Short destination rows (B < 8) read the source contiguously, in longer runs. */
	int64_t ta = B < 8 ? 16 * TILE : TILE, nba = (A + ta - 1) / ta;

	strides_of(r, v->dims, dstr);
	for (int a = 0; a < r; a++) {
		if (a == j || a == k)
			continue;
		odims[m] = v->dims[a];
		ost[m] = v->st[a];
		odst[m] = dstr[a] * (int64_t)es;
		outer *= v->dims[a];
		m++;
	}
	int64_t dk = dstr[k] * (int64_t)es, items = outer * nba;
	uint64_t total = (uint64_t)outer * (uint64_t)A * (uint64_t)B * es;

#pragma omp parallel for if (total >= PAR_BYTES) schedule(static)
	for (int64_t it = 0; it < items; it++) {
		int64_t o = it / nba, a0 = it % nba * ta, soff = 0, doff = 0;
		int64_t a1 = a0 + ta < A ? a0 + ta : A;
		for (int a = m - 1; a >= 0; a--) {
			int64_t i = o % odims[a];
			o /= odims[a];
			soff += i * ost[a];
			doff += i * odst[a];
		}
		if (B < 8) {
			for (int64_t b = 0; b < B; b++)
				move_n(dst + doff + a0 * dk + b * (int64_t)es, dk,
				       src + soff + a0 * (int64_t)es + b * sj, (int64_t)es, a1 - a0,
				       es);
			continue;
		}
		for (int64_t b0 = 0; b0 < B; b0 += TILE) {
			int64_t nb = B - b0 < TILE ? B - b0 : TILE;
			for (int64_t a = a0; a < a1; a++)
				move_n(dst + doff + a * dk + b0 * (int64_t)es, (int64_t)es,
				       src + soff + a * (int64_t)es + b0 * sj, sj, nb, es);
		}
	}
}

/* Copies the view into dst (contiguous, numel(view) elements of es bytes).  Modifies v. */
static void copy_view(void *dst, const void *src, struct view *v, size_t es)
{
	if (!view_simplify(v))
		return;
	if (v->rank == 0) {
		memcpy(dst, src, es);
		return;
	}
	int r = v->rank;
	int64_t n = v->dims[r - 1], ss = v->st[r - 1];

	if (r == 1 && ss == (int64_t)es) {
		copy_bytes(dst, src, (size_t)n * es);
		return;
	}
	if (ss != (int64_t)es && ss != 0 && r >= 2) {
		for (int k = r - 2; k >= 0; k--)
			if (v->st[k] == (int64_t)es && v->dims[k] >= (n >= 4 ? 4 : 16)) {
				copy_transposed(dst, src, v, k, es);
				return;
			}
	}
	int64_t rows = prod(v->dims, 0, r - 1);
	uint64_t total = (uint64_t)rows * (uint64_t)n * es;

#pragma omp parallel if (total >= PAR_BYTES && rows > 1)
	{
		int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
		int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
		if (r0 < r1)
			copy_rows(dst, src, v, es, r0, r1);
	}
}

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
	dims[0] = prod(x->dims, 0, (int)axis);
	dims[1] = prod(x->dims, (int)axis, x->rank);
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
	int64_t outer = prod(x->dims, 0, ax);
	size_t inner = (size_t)prod(x->dims, ax + 1, x->rank) * es;
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
	int64_t outer = prod(x->dims, 0, ax);
	size_t inner = (size_t)prod(x->dims, ax + 1, x->rank) * es;
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
	int64_t d = x->dims[ax], outer = prod(x->dims, 0, ax);
	size_t inner = (size_t)prod(x->dims, ax + 1, x->rank) * es;
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

/* The Constant's value as an array.  *owned: a.data was decoded and must be freed;
 * otherwise it borrows from the node's attributes or the model's tensors. */
static int constant_value(const struct node *n, struct graft_array *a, int *owned,
			  struct graft_err *err)
{
	const Onnx__AttributeProto *at;

	memset(a, 0, sizeof(*a));
	*owned = 0;
	if ((at = attr_find(n, "value")) && at->t) {
		struct graft_err derr = {0};
		if (!onnx_tensor_decode(at->t, a, &derr)) {
			*owned = 1;
			return 0;
		}
		/* A value whose payload the model moved into its tensor table. */
		long i = n->model ? graft_model_find_tensor(n->model, n->out[0]->name) : -1;
		if (i < 0)
			return node_err(n, err, derr.code, "%s", derr.msg);
		struct graft_tensor t;
		graft_model_tensor(n->model, (size_t)i, &t);
		if (t.rank > GRAFT_ARRAY_MAX_RANK)
			return node_err(n, err, GRAFT_EUNSUPPORTED, "value has rank %d", t.rank);
		a->dtype = t.dtype;
		a->rank = t.rank;
		memcpy(a->dims, t.dims, sizeof(a->dims[0]) * (size_t)t.rank);
		a->data = (void *)t.data;
		a->nbytes = t.nbytes;
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
	int owned, rc;

	if ((rc = want_io(n, err, 0, 0)) || (rc = constant_value(n, &a, &owned, err)))
		return rc;
	rc = set_out(n, n->out[0], a.dtype, a.rank, a.dims, err);
	if (owned)
		free(a.data);
	return rc;
}

static int constant_run(struct node *n, struct graft_err *err)
{
	struct graft_array a;
	int owned, rc;

	if ((rc = constant_value(n, &a, &owned, err)))
		return rc;
	if (a.nbytes != n->out[0]->nbytes)
		rc = node_err(n, err, GRAFT_EFORMAT, "value changed size");
	else
		copy_bytes(n->out[0]->data, a.data, a.nbytes);
	if (owned)
		free(a.data);
	return rc;
}

/* ConstantOfShape's fill element (16 bytes is enough for any fixed-size dtype). */
static int fill_value(const struct node *n, int *dtype, unsigned char *elem,
		      struct graft_err *err)
{
	const Onnx__AttributeProto *at = attr_find(n, "value");
	struct graft_array a;
	int rc;

	memset(elem, 0, 16);
	*dtype = GRAFT_FLOAT;
	if (!at || !at->t)
		return 0;
	struct graft_err derr = {0};
	if ((rc = onnx_tensor_decode(at->t, &a, &derr)))
		return node_err(n, err, rc, "value: %s", derr.msg);
	if (a.nbytes != graft_dtype_size(a.dtype) || a.nbytes > 16)
		rc = node_err(n, err, GRAFT_EFORMAT, "value must have exactly one element");
	else
		memcpy(elem, a.data, a.nbytes);
	*dtype = a.dtype;
	free(a.data);
	return rc;
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
	fill(n->out[0]->data, elem, value_numel(n->out[0]), graft_dtype_size(dtype));
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
			fill(d, cval, (uint64_t)inner, es);
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
static const struct op_def op_concat = {
	.name = "Concat", .infer = concat_infer, .run = concat_run,
};
static const struct op_def op_split = {
	.name = "Split", .infer = split_infer, .run = split_run,
	.plan_inputs = 1 << 1,
};
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
static const struct op_def op_depth_to_space = {
	.name = "DepthToSpace", .infer = depth_to_space_infer, .run = depth_to_space_run,
};
static const struct op_def op_space_to_depth = {
	.name = "SpaceToDepth", .infer = space_to_depth_infer, .run = space_to_depth_run,
};

const struct op_def *const ops_shape[] = {
	&op_reshape, &op_flatten, &op_squeeze, &op_unsqueeze, &op_transpose, &op_concat,
	&op_split, &op_slice, &op_gather, &op_gather_elements, &op_shape, &op_size,
	&op_constant, &op_constant_of_shape, &op_range, &op_expand, &op_tile, &op_pad,
	&op_depth_to_space, &op_space_to_depth, NULL,
};

/* ---- backward ----------------------------------------------------------------------------
 *
 * Data movement: each gradient is the inverse movement of the output's gradient, in
 * float32 (only float values have gradients).  Shapes, axes, pads and indices never get
 * one.  Where the forward reads every input element once (Reshape, Transpose, Concat,
 * Split, DepthToSpace), the gradient is a copy back; where it reads some not at all
 * (Slice, Pad's cropping) those get zeros; where it reads some more than once (Expand,
 * Tile, Gather, Pad's edge, reflect and wrap modes) the copies add up.
 */

static int grad_is_float(const struct node *n, struct graft_err *err)
{
	if (n->gin[0] && n->in[0]->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "backward for %s data",
				dtype_label(n->in[0]->dtype));
	return 0;
}

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

/* A walk over two float buffers in step: element (i_0, ..., i_r-1) lies at
 * dst + sum(i_k * sd_k) and src + sum(i_k * ss_k), strides in elements.  sd may be 0
 * (several source elements add into one) or negative (reversed slices). */
struct walk {
	int rank;
	int64_t dims[VIEW_MAX_RANK];
	int64_t sd[VIEW_MAX_RANK], ss[VIEW_MAX_RANK];
};

/* Drops unit axes and merges neighbours that both sides walk as one axis.  Returns 0
 * when the walk is empty. */
static int walk_simplify(struct walk *w)
{
	int r = 0;

	for (int i = 0; i < w->rank; i++)
		if (w->dims[i] == 0)
			return 0;
	for (int i = 0; i < w->rank; i++) {
		if (w->dims[i] == 1)
			continue;
		if (r > 0 && w->sd[r - 1] == w->sd[i] * w->dims[i] &&
		    w->ss[r - 1] == w->ss[i] * w->dims[i]) {
			w->dims[r - 1] *= w->dims[i];
			w->sd[r - 1] = w->sd[i];
			w->ss[r - 1] = w->ss[i];
		} else {
			w->dims[r] = w->dims[i];
			w->sd[r] = w->sd[i];
			w->ss[r] = w->ss[i];
			r++;
		}
	}
	w->rank = r;
	return 1;
}

/* Walks w row by row (rank >= 1): dst = src, or dst += src when add. */
static void walk_rows(float *dst, const float *src, const struct walk *w, int add)
{
	int r = w->rank;
	int64_t n = w->dims[r - 1], sd = w->sd[r - 1], ss = w->ss[r - 1];
	int64_t idx[VIEW_MAX_RANK] = {0}, od = 0, os = 0, rows = prod(w->dims, 0, r - 1);

	for (int64_t row = 0; row < rows; row++) {
		float *d = dst + od;
		const float *s = src + os;
		if (!add && sd == 1 && ss == 1) {
			memcpy(d, s, (size_t)n * sizeof(float));
		} else if (!add) {
			for (int64_t j = 0; j < n; j++)
				d[j * sd] = s[j * ss];
		} else if (sd == 0) {
			float sum = 0;
			for (int64_t j = 0; j < n; j++)
				sum += s[j * ss];
			*d += sum;
		} else if (sd == 1 && ss == 1) {
			for (int64_t j = 0; j < n; j++)
				d[j] += s[j];
		} else {
			for (int64_t j = 0; j < n; j++)
				d[j * sd] += s[j * ss];
		}
		for (int a = r - 2; a >= 0; a--) {
			od += w->sd[a];
			os += w->ss[a];
			if (++idx[a] < w->dims[a])
				break;
			od -= w->sd[a] * w->dims[a];
			os -= w->ss[a] * w->dims[a];
			idx[a] = 0;
		}
	}
}

/* Runs a walk (modifying w), split across threads along its outermost axis that moves
 * dst.  The walks here (slices, broadcasts, tiles) never send two indices of that axis
 * to one dst element, so the threads write apart. */
static void walk_run(float *dst, const float *src, struct walk *w, int add)
{
	int p = 0;

	if (!walk_simplify(w))
		return;
	if (w->rank == 0) {
		*dst = add ? *dst + *src : *src;
		return;
	}
	while (p < w->rank && w->sd[p] == 0)
		p++;
	if (p == w->rank || w->dims[p] < 2 ||
	    (uint64_t)prod(w->dims, 0, w->rank) * sizeof(float) < PAR_BYTES) {
		walk_rows(dst, src, w, add);
		return;
	}
#pragma omp parallel
	{
		int64_t nt = omp_get_num_threads(), t = omp_get_thread_num(), d = w->dims[p];
		int64_t lo = d * t / nt, hi = d * (t + 1) / nt;
		struct walk s = *w;
		s.dims[p] = hi - lo;
		if (lo < hi)
			walk_rows(dst + lo * w->sd[p], src + lo * w->ss[p], &s, add);
	}
}

/* Reshape, Flatten, Squeeze, Unsqueeze: the same elements. */
static int copy_backward(struct node *n, struct graft_err *err)
{
	int rc;

	if (!n->gin[0])
		return 0;
	if ((rc = grad_is_float(n, err)))
		return rc;
	copy_bytes(n->gin[0]->data, n->out[0]->grad->data, n->gin[0]->nbytes);
	return 0;
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

/* Each input's gradient is its slab of dY along the axis. */
static int concat_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *y = n->out[0];
	int ax = concat_axis(n, x->rank, err);
	size_t at = 0;

	if (ax < 0)
		return ax;
	int64_t outer = prod(x->dims, 0, ax);
	size_t inner = (size_t)prod(x->dims, ax + 1, x->rank) * sizeof(float);
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
	int64_t outer = prod(x->dims, 0, ax);
	size_t inner = (size_t)prod(x->dims, ax + 1, x->rank) * sizeof(float);
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
	int64_t d = x->dims[ax], outer = prod(x->dims, 0, ax);
	int64_t inner = prod(x->dims, ax + 1, x->rank);
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
		pad_axis_backward(d, g, prod(cur, 0, a), cur[a], x->dims[a], prod(cur, a + 1, r),
				  pb[a], map[a]);
		cur[a] = x->dims[a];
		g = d;
	}
	free(tmp[0]);
	free(tmp[1]);
	free(maps);
	return 0;
}

/* Cast to float passes the gradient through; a cast to any other type cuts it (that
 * output has no gradient), so dX is zero. */
static int cast_backward(struct node *n, struct graft_err *err)
{
	if (!n->gin[0])
		return 0;
	if (n->out[0]->dtype == GRAFT_FLOAT && n->out[0]->grad)
		return copy_backward(n, err);
	memset(n->gin[0]->data, 0, n->gin[0]->nbytes);
	return 0;
}

static const struct grad_def grad_reshape = {"Reshape", copy_backward};
static const struct grad_def grad_flatten = {"Flatten", copy_backward};
static const struct grad_def grad_squeeze = {"Squeeze", copy_backward};
static const struct grad_def grad_unsqueeze = {"Unsqueeze", copy_backward};
static const struct grad_def grad_transpose = {"Transpose", transpose_backward};
static const struct grad_def grad_concat = {"Concat", concat_backward};
static const struct grad_def grad_split = {"Split", split_backward};
static const struct grad_def grad_slice = {"Slice", slice_backward};
static const struct grad_def grad_gather = {"Gather", gather_backward};
static const struct grad_def grad_gather_elements = {"GatherElements",
						     gather_elements_backward};
static const struct grad_def grad_expand = {"Expand", expand_backward};
static const struct grad_def grad_tile = {"Tile", tile_backward};
static const struct grad_def grad_pad = {"Pad", pad_backward};
static const struct grad_def grad_depth_to_space = {"DepthToSpace", block_backward};
static const struct grad_def grad_space_to_depth = {"SpaceToDepth", block_backward};
static const struct grad_def grad_cast = {"Cast", cast_backward};

const struct grad_def *const ops_shape_grad[] = {
	&grad_reshape, &grad_flatten, &grad_squeeze, &grad_unsqueeze, &grad_transpose,
	&grad_concat, &grad_split, &grad_slice, &grad_gather, &grad_gather_elements,
	&grad_expand, &grad_tile, &grad_pad, &grad_depth_to_space, &grad_space_to_depth,
	&grad_cast, NULL,
};
