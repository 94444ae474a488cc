/*
 * reduce.c: reductions over axes (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
 * ReduceSumSquare, ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp) and ArgMax/ArgMin.
 * (Softmax, LogSoftmax and Hardmax, which reduce along one axis and rescale it, are in
 * softmax.c.)
 *
 * A reduction first merges the input's dims into blocks of adjacent kept or reduced axes
 * (dims of size 1 vanish).  Nearly every reduction real models make is then at most one
 * reduced block between two kept ones, (O, R, I): the float32 kernels handle that shape
 * with contiguous loops, over the innermost block (I == 1: the H*W means of
 * GlobalAveragePool-like nodes, the last-axis means of decomposed layer norms) or a middle
 * one (I > 1, vectorised across I).  Other patterns and dtypes take a generic path that
 * walks the reduced blocks for each output element.  Sums of float32 accumulate in float
 * over short blocks and in double across them, so long rows keep their precision.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* Elements of work below which a parallel region costs more than it saves. */
#define PAR_MIN 32768
/* Columns of the I axis one task of a middle-axis kernel handles (stack buffers). */
#define CHUNK 256
/* Elements summed in float before the partial sum moves to double. */
#define BLOCK 4096

enum red_kind {
	RED_SUM, RED_MEAN, RED_MAX, RED_MIN, RED_PROD, RED_SUMSQ, RED_L1, RED_L2, RED_LOGSUM,
	RED_LOGSUMEXP,
};

/* What a pass over the elements of one reduction computes. */
enum prim { P_SUM, P_SUMSQ, P_ABS, P_EXP /* sum of exp(x - m) */, P_MAX, P_MIN, P_PROD };

/* The input's dims merged into blocks of kept and reduced axes. */
struct red_layout {
	int nk, nr;                     /* kept and reduced blocks */
	int64_t kd[NET_MAX_RANK], ks[NET_MAX_RANK];     /* kept sizes and input strides */
	int64_t rd[NET_MAX_RANK], rs[NET_MAX_RANK];     /* reduced sizes and input strides */
	uint64_t out_numel, red_numel;
	int simple;                     /* at most one reduced block: (O, R, I) holds */
	int64_t O, R, I;
};

static void make_layout(int rank, const int64_t *dims, const int *mask, struct red_layout *L)
{
	int64_t size[NET_MAX_RANK], stride[NET_MAX_RANK], s = 1;
	int red[NET_MAX_RANK], nb = 0, rb = -1;

	for (int d = 0; d < rank; d++) {
		if (dims[d] == 1)
			continue;
		if (nb && red[nb - 1] == mask[d]) {
			size[nb - 1] *= dims[d];
		} else {
			size[nb] = dims[d];
			red[nb++] = mask[d];
		}
	}
	for (int b = nb - 1; b >= 0; b--) {
		stride[b] = s;
		s *= size[b];
	}
	memset(L, 0, sizeof(*L));
	L->out_numel = L->red_numel = 1;
	for (int b = 0; b < nb; b++) {
		if (red[b]) {
			L->rd[L->nr] = size[b];
			L->rs[L->nr++] = stride[b];
			L->red_numel *= (uint64_t)size[b];
			rb = b;
		} else {
			L->kd[L->nk] = size[b];
			L->ks[L->nk++] = stride[b];
			L->out_numel *= (uint64_t)size[b];
		}
	}
	L->simple = L->nr <= 1;
	L->O = L->R = L->I = 1;
	if (rb < 0) {
		L->O = (int64_t)L->out_numel;
	} else if (L->simple) {
		for (int b = 0; b < rb; b++)
			L->O *= size[b];
		L->R = size[rb];
		for (int b = rb + 1; b < nb; b++)
			L->I *= size[b];
	}
}

/* ---- reading and writing integers exactly --------------------------------------------- */

static int is_int_dtype(int dtype)
{
	switch (dtype) {
	case GRAFT_INT8: case GRAFT_UINT8: case GRAFT_INT16: case GRAFT_UINT16:
	case GRAFT_INT32: case GRAFT_UINT32: case GRAFT_INT64: case GRAFT_UINT64:
	case GRAFT_BOOL:
		return 1;
	default:
		return 0;
	}
}

/* The smallest (or largest) value of an integer dtype: what Max (Min) of nothing is. */
static int64_t int_limit(int dtype, int largest)
{
	switch (dtype) {
	case GRAFT_INT8: return largest ? INT8_MAX : INT8_MIN;
	case GRAFT_INT16: return largest ? INT16_MAX : INT16_MIN;
	case GRAFT_INT32: return largest ? INT32_MAX : INT32_MIN;
	case GRAFT_UINT8: case GRAFT_BOOL: return largest ? (dtype == GRAFT_BOOL ? 1 : UINT8_MAX) : 0;
	case GRAFT_UINT16: return largest ? UINT16_MAX : 0;
	case GRAFT_UINT32: return largest ? UINT32_MAX : 0;
	case GRAFT_UINT64: return largest ? -1 : 0;
	default: return largest ? INT64_MAX : INT64_MIN;
	}
}

/* ---- what each reduction does ----------------------------------------------------------- */

static enum prim kind_prim(enum red_kind k)
{
	switch (k) {
	case RED_SUMSQ: case RED_L2: return P_SUMSQ;
	case RED_L1: return P_ABS;
	case RED_MAX: case RED_LOGSUMEXP: return P_MAX;   /* LogSumExp: the first pass */
	case RED_MIN: return P_MIN;
	case RED_PROD: return P_PROD;
	default: return P_SUM;
	}
}

static double prim_init(enum prim p)
{
	return p == P_MAX ? -INFINITY : p == P_MIN ? INFINITY : p == P_PROD ? 1.0 : 0.0;
}

static double prim_step(enum prim p, double acc, double x, double m)
{
	switch (p) {
	case P_SUM: return acc + x;
	case P_SUMSQ: return acc + x * x;
	case P_ABS: return acc + fabs(x);
	case P_EXP: return acc + exp(x - m);
	case P_MAX: return x > acc ? x : acc;
	case P_MIN: return x < acc ? x : acc;
	case P_PROD: return acc * x;
	}
	return acc;
}

/* Combines two partial results of the same pass. */
static double prim_join(enum prim p, double a, double b)
{
	switch (p) {
	case P_MAX: return a > b ? a : b;
	case P_MIN: return a < b ? a : b;
	case P_PROD: return a * b;
	default: return a + b;
	}
}

/* The reduction of count elements from its pass result acc (m: LogSumExp's maximum). */
static double finish(enum red_kind k, double acc, double count, double m)
{
	switch (k) {
	case RED_MEAN: return acc / count;
	case RED_L2: return sqrt(acc);
	case RED_LOGSUM: return log(acc);
	case RED_LOGSUMEXP: return isfinite(m) ? log(acc) + m : m;
	default: return acc;
	}
}

/* ---- float32 kernels -------------------------------------------------------------------- */

static double prim_serial(enum prim p, const float *x, int64_t n, float m)
{
	double tot = prim_init(p);

	for (int64_t b = 0; b < n; b += BLOCK) {
		const float *xb = x + b;
		int64_t e = n - b < BLOCK ? n - b : BLOCK;
		float s = 0;

		switch (p) {
		case P_SUM:
#pragma omp simd reduction(+:s)
			for (int64_t i = 0; i < e; i++)
				s += xb[i];
			break;
		case P_SUMSQ:
#pragma omp simd reduction(+:s)
			for (int64_t i = 0; i < e; i++)
				s += xb[i] * xb[i];
			break;
		case P_ABS:
#pragma omp simd reduction(+:s)
			for (int64_t i = 0; i < e; i++)
				s += fabsf(xb[i]);
			break;
		case P_EXP:
#pragma omp simd reduction(+:s)
			for (int64_t i = 0; i < e; i++)
				s += vexpf(xb[i] - m);
			break;
		case P_MAX:
			s = -INFINITY;
#pragma omp simd reduction(max:s)
			for (int64_t i = 0; i < e; i++)
				s = xb[i] > s ? xb[i] : s;
			break;
		case P_MIN:
			s = INFINITY;
#pragma omp simd reduction(min:s)
			for (int64_t i = 0; i < e; i++)
				s = xb[i] < s ? xb[i] : s;
			break;
		case P_PROD:
			for (int64_t i = 0; i < e; i++)
				tot *= xb[i];
			continue;
		}
		tot = prim_join(p, tot, s);
	}
	return tot;
}

/* prim_serial split over the threads, for a few long rows. */
static double prim_par(enum prim p, const float *x, int64_t n, float m)
{
	double part[64];
	int t = omp_get_max_threads();

	if (t > 64)
		t = 64;
	if (t < 2 || n < PAR_MIN)
		return prim_serial(p, x, n, m);
#pragma omp parallel for num_threads(t)
	for (int k = 0; k < t; k++) {
		int64_t lo = n * k / t, hi = n * (k + 1) / t;
		part[k] = prim_serial(p, x + lo, hi - lo, m);
	}
	double tot = part[0];
	for (int k = 1; k < t; k++)
		tot = prim_join(p, tot, part[k]);
	return tot;
}

static float row_reduce(enum red_kind k, const float *x, int64_t n, int par)
{
	double (*prim)(enum prim, const float *, int64_t, float) = par ? prim_par : prim_serial;
	double m = 0, acc;

	if (k == RED_LOGSUMEXP) {
		m = prim(P_MAX, x, n, 0);
		if (!isfinite(m))
			return (float)m;
		acc = prim(P_EXP, x, n, (float)m);
	} else {
		acc = prim(kind_prim(k), x, n, 0);
	}
	return (float)finish(k, acc, (double)n, m);
}

/* One pass over rows r of x (R, I) restricted to columns [0, len): acc[i] gathers x[r][i]. */
static void cols_pass(enum prim p, const float *x, int64_t R, int64_t I, int64_t len,
		      double *acc, const double *m)
{
	for (int64_t i = 0; i < len; i++)
		acc[i] = prim_init(p);
	for (int64_t r = 0; r < R; r++) {
		const float *xr = x + r * I;
		switch (p) {
		case P_SUM:
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				acc[i] += xr[i];
			break;
		case P_SUMSQ:
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				acc[i] += (double)xr[i] * xr[i];
			break;
		case P_ABS:
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				acc[i] += fabsf(xr[i]);
			break;
		case P_EXP:
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				acc[i] += vexpf(xr[i] - (float)m[i]); /* m = -inf: finish ignores acc */
			break;
		case P_MAX:
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				acc[i] = xr[i] > acc[i] ? xr[i] : acc[i];
			break;
		case P_MIN:
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				acc[i] = xr[i] < acc[i] ? xr[i] : acc[i];
			break;
		case P_PROD:
			for (int64_t i = 0; i < len; i++)
				acc[i] *= xr[i];
			break;
		}
	}
}

/* y (O, I) = reduction over the middle axis of x (O, R, I). */
static void mid_reduce(enum red_kind k, const float *x, float *y, int64_t O, int64_t R,
		       int64_t I)
{
	int64_t nch = (I + CHUNK - 1) / CHUNK, units = O * nch;

#pragma omp parallel for schedule(static) if (O * R * I > PAR_MIN && units > 1)
	for (int64_t u = 0; u < units; u++) {
		int64_t o = u / nch, i0 = (u % nch) * CHUNK;
		int64_t len = I - i0 < CHUNK ? I - i0 : CHUNK;
		const float *xb = x + o * R * I + i0;
		float *yb = y + o * I + i0;
		double acc[CHUNK], m[CHUNK];

		if (k == RED_LOGSUMEXP) {
			cols_pass(P_MAX, xb, R, I, len, m, NULL);
			cols_pass(P_EXP, xb, R, I, len, acc, m);
		} else {
			cols_pass(kind_prim(k), xb, R, I, len, acc, NULL);
		}
		for (int64_t i = 0; i < len; i++)
			yb[i] = (float)finish(k, acc[i], (double)R, k == RED_LOGSUMEXP ? m[i] : 0);
	}
}

static void reduce_f32(enum red_kind k, const struct red_layout *L, const float *x, float *y)
{
	int64_t O = L->O, R = L->R, I = L->I;

	if (I > 1) {
		mid_reduce(k, x, y, O, R, I);
	} else if (O >= omp_get_max_threads() || O * R < PAR_MIN) {
#pragma omp parallel for schedule(static) if (O * R > PAR_MIN && O > 1)
		for (int64_t o = 0; o < O; o++)
			y[o] = row_reduce(k, x + o * R, R, 0);
	} else {
		for (int64_t o = 0; o < O; o++)
			y[o] = row_reduce(k, x + o * R, R, 1);
	}
}

/* ---- any dtype, any axes ---------------------------------------------------------------- */

/* Offset in the input of the first element output o reduces. */
static int64_t kept_base(const struct red_layout *L, uint64_t o)
{
	int64_t base = 0;

	for (int j = L->nk - 1; j >= 0; j--) {
		base += (int64_t)(o % (uint64_t)L->kd[j]) * L->ks[j];
		o /= (uint64_t)L->kd[j];
	}
	return base;
}

/* Steps the odometer over the reduced blocks; returns the new offset. */
static int64_t next_reduced(const struct red_layout *L, int64_t *idx, int64_t off)
{
	for (int j = L->nr - 1; j >= 0; j--) {
		off += L->rs[j];
		if (++idx[j] < L->rd[j])
			break;
		off -= L->rs[j] * L->rd[j];
		idx[j] = 0;
	}
	return off;
}

static double generic_pass(enum prim p, const struct value *x, const struct red_layout *L,
			   int64_t base, double m)
{
	int64_t idx[NET_MAX_RANK] = {0}, off = base;
	double acc = prim_init(p);

	for (uint64_t t = 0; t < L->red_numel; t++) {
		acc = prim_step(p, acc, value_get(x, (uint64_t)off), m);
		off = next_reduced(L, idx, off);
	}
	return acc;
}

/* Integers reduce exactly in int64 where the reduction stays an integer. */
static int64_t generic_int(enum red_kind k, const struct value *x, const struct red_layout *L,
			   int64_t base)
{
	int64_t idx[NET_MAX_RANK] = {0}, off = base, acc;

	if (L->red_numel == 0)
		return k == RED_MAX ? int_limit(x->dtype, 0) : k == RED_MIN ? int_limit(x->dtype, 1)
			: k == RED_PROD;
	acc = k == RED_PROD ? 1
	      : k == RED_MAX || k == RED_MIN ? elem_get_i64(x->data, x->dtype, (uint64_t)base)
					     : 0;
	for (uint64_t t = 0; t < L->red_numel; t++) {
		int64_t v = elem_get_i64(x->data, x->dtype, (uint64_t)off);
		switch (k) {
		case RED_MAX: acc = v > acc ? v : acc; break;
		case RED_MIN: acc = v < acc ? v : acc; break;
		case RED_PROD: acc = (int64_t)((uint64_t)acc * (uint64_t)v); break;
		case RED_SUMSQ: acc = (int64_t)((uint64_t)acc + (uint64_t)v * (uint64_t)v); break;
		case RED_L1: acc = (int64_t)((uint64_t)acc + (uint64_t)(v < 0 ? -v : v)); break;
		default: acc = (int64_t)((uint64_t)acc + (uint64_t)v); break;
		}
		off = next_reduced(L, idx, off);
	}
	if (k == RED_MEAN)
		acc /= (int64_t)L->red_numel;
	return acc;
}

static void reduce_generic(enum red_kind k, const struct red_layout *L, const struct value *x,
			   struct value *y)
{
	int exact = is_int_dtype(x->dtype) && k != RED_L2 && k != RED_LOGSUM &&
		    k != RED_LOGSUMEXP;
	int64_t n_out = (int64_t)L->out_numel;

#pragma omp parallel for schedule(static) if (L->out_numel * L->red_numel > PAR_MIN)
	for (int64_t o = 0; o < n_out; o++) {
		int64_t base = kept_base(L, (uint64_t)o);
		double m = 0, acc;

		if (exact) {
			elem_put_i64(y->data, y->dtype, (uint64_t)o, generic_int(k, x, L, base));
			continue;
		}
		if (k == RED_LOGSUMEXP) {
			m = generic_pass(P_MAX, x, L, base, 0);
			acc = isfinite(m) ? generic_pass(P_EXP, x, L, base, m) : 0;
		} else {
			acc = generic_pass(kind_prim(k), x, L, base, 0);
		}
		value_put(y, (uint64_t)o, finish(k, acc, (double)L->red_numel, m));
	}
}

/* ---- Reduce* nodes ---------------------------------------------------------------------- */

/* Fills mask[rank] with 1 on the axes the node reduces. */
static int reduce_mask(const struct node *n, int rank, int *mask, struct graft_err *err)
{
	int64_t axes[NET_MAX_RANK];
	long na = 0;
	int noop = 0;
	int from_input = n->opset >= 18 || (strcmp(n->op->name, "ReduceSum") == 0 && n->opset >= 13);

	if (from_input) {
		if (attr_find(n, "axes"))
			return node_err(n, err, GRAFT_EFORMAT, "axes is an input at opset %lld, "
					"not an attribute", (long long)n->opset);
		if (n->n_in >= 2 && n->in[1] && (na = value_ints(n, n->in[1], axes, NET_MAX_RANK,
								  err)) < 0)
			return (int)na;
		noop = attr_int(n, "noop_with_empty_axes", 0) != 0;
	} else {
		if (n->n_in >= 2 && n->in[1])
			return node_err(n, err, GRAFT_EFORMAT, "axes is an attribute at opset %lld, "
					"not an input", (long long)n->opset);
		na = attr_ints(n, "axes", axes, NET_MAX_RANK);
		if (na > NET_MAX_RANK)
			return node_err(n, err, GRAFT_EFORMAT, "%ld axes for rank %d", na, rank);
		if (na < 0)
			na = 0;
	}
	for (int d = 0; d < rank; d++)
		mask[d] = na == 0 && !noop;
	for (long i = 0; i < na; i++) {
		int a = norm_axis(axes[i], rank);
		if (a < 0)
			return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
					(long long)axes[i], rank);
		if (mask[a])
			return node_err(n, err, GRAFT_EFORMAT, "axis %lld is repeated",
					(long long)axes[i]);
		mask[a] = 1;
	}
	return 0;
}

static int reduce_infer(struct node *n, enum red_kind k, struct graft_err *err)
{
	const struct value *x;
	int mask[NET_MAX_RANK], rank = 0, rc;
	int64_t dims[NET_MAX_RANK];
	int keep = attr_int(n, "keepdims", 1) != 0;

	if (n->n_in < 1 || !n->in[0] || n->n_in > 2 || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes data (and axes), gives one output");
	x = n->in[0];
	switch (x->dtype) {
	case GRAFT_FLOAT: case GRAFT_DOUBLE: case GRAFT_INT8: case GRAFT_UINT8:
	case GRAFT_INT16: case GRAFT_UINT16: case GRAFT_INT32: case GRAFT_UINT32:
	case GRAFT_INT64: case GRAFT_UINT64:
		break;
	case GRAFT_BOOL:
		if (k == RED_MAX || k == RED_MIN)
			break;
		/* fall through */
	default:
		return node_err(n, err, GRAFT_EUNSUPPORTED, "dtype %s is not supported",
				dtype_label(x->dtype));
	}
	if ((rc = reduce_mask(n, x->rank, mask, err)))
		return rc;
	for (int d = 0; d < x->rank; d++) {
		if (!mask[d])
			dims[rank++] = x->dims[d];
		else if (keep)
			dims[rank++] = 1;
	}
	value_set(n->out[0], x->dtype, rank, dims);
	return 0;
}

static int reduce_run(struct node *n, enum red_kind k, struct graft_err *err)
{
	const struct value *x = n->in[0];
	struct value *y = n->out[0];
	struct red_layout L;
	int mask[NET_MAX_RANK], rc;

	if ((rc = reduce_mask(n, x->rank, mask, err)))
		return rc;
	make_layout(x->rank, x->dims, mask, &L);
	if (L.out_numel == 0)
		return 0;
	if (L.red_numel == 1 && (k == RED_SUM || k == RED_MEAN || k == RED_MAX || k == RED_MIN ||
				 k == RED_PROD)) {
		memcpy(y->data, x->data, y->nbytes);
		return 0;
	}
	if (x->dtype == GRAFT_FLOAT && L.simple && L.red_numel > 0)
		reduce_f32(k, &L, x->data, y->data);
	else
		reduce_generic(k, &L, x, y);
	return 0;
}

#define REDUCE_OP(NAME, KIND, FN) \
	static int infer_##FN(struct node *n, struct graft_err *err) \
	{ \
		return reduce_infer(n, KIND, err); \
	} \
	static int run_##FN(struct node *n, struct graft_err *err) \
	{ \
		return reduce_run(n, KIND, err); \
	} \
	static const struct op_def op_##FN = {NAME, infer_##FN, run_##FN, NULL, 0, 1 << 1}

REDUCE_OP("ReduceSum", RED_SUM, reduce_sum);
REDUCE_OP("ReduceMean", RED_MEAN, reduce_mean);
REDUCE_OP("ReduceMax", RED_MAX, reduce_max);
REDUCE_OP("ReduceMin", RED_MIN, reduce_min);
REDUCE_OP("ReduceProd", RED_PROD, reduce_prod);
REDUCE_OP("ReduceSumSquare", RED_SUMSQ, reduce_sum_square);
REDUCE_OP("ReduceL1", RED_L1, reduce_l1);
REDUCE_OP("ReduceL2", RED_L2, reduce_l2);
REDUCE_OP("ReduceLogSum", RED_LOGSUM, reduce_log_sum);
REDUCE_OP("ReduceLogSumExp", RED_LOGSUMEXP, reduce_log_sum_exp);

/* ---- ArgMax, ArgMin --------------------------------------------------------------------- */

static int arg_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t dims[NET_MAX_RANK];
	int axis, rank = 0, keep = attr_int(n, "keepdims", 1) != 0;

	if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes one input, gives one output");
	x = n->in[0];
	if (x->dtype == GRAFT_BOOL || !(x->dtype == GRAFT_FLOAT || x->dtype == GRAFT_DOUBLE ||
					is_int_dtype(x->dtype)))
		return node_err(n, err, GRAFT_EUNSUPPORTED, "dtype %s is not supported",
				dtype_label(x->dtype));
	if ((axis = norm_axis(attr_int(n, "axis", 0), x->rank)) < 0)
		return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
				(long long)attr_int(n, "axis", 0), x->rank);
	if (x->dims[axis] == 0)
		return node_err(n, err, GRAFT_EFORMAT, "axis %d is empty", axis);
	for (int d = 0; d < x->rank; d++) {
		if (d != axis)
			dims[rank++] = x->dims[d];
		else if (keep)
			dims[rank++] = 1;
	}
	value_set(n->out[0], GRAFT_INT64, rank, dims);
	return 0;
}

static int arg_run_kind(struct node *n, int is_max, struct graft_err *err)
{
	const struct value *x = n->in[0];
	int64_t *y = n->out[0]->data, O, R, I;
	int axis = norm_axis(attr_int(n, "axis", 0), x->rank);
	int last = attr_int(n, "select_last_index", 0) != 0;
	int exact = is_int_dtype(x->dtype);

	(void)err;
	split_axis(x, axis, &O, &R, &I);
	if (O * I == 0)
		return 0;
	if (x->dtype == GRAFT_FLOAT && R <= INT32_MAX) {
		argmax_f32(x->data, y, O, R, I, is_max ? 1.0f : -1.0f, last);
		return 0;
	}
#pragma omp parallel for schedule(static) if (O * R * I > PAR_MIN)
	for (int64_t o = 0; o < O; o++) {
		for (int64_t i = 0; i < I; i++) {
			uint64_t at = (uint64_t)(o * R * I + i);
			int64_t bi = 0, bv = exact ? elem_get_i64(x->data, x->dtype, at) : 0;
			double bd = exact ? 0 : value_get(x, at);
			for (int64_t r = 1; r < R; r++) {
				uint64_t p = at + (uint64_t)(r * I);
				int better;
				if (exact) {
					int64_t v = elem_get_i64(x->data, x->dtype, p);
					better = is_max ? (v > bv || (last && v == bv))
							: (v < bv || (last && v == bv));
					if (better)
						bv = v;
				} else {
					double v = value_get(x, p);
					better = is_max ? (v > bd || (last && v == bd))
							: (v < bd || (last && v == bd));
					if (better)
						bd = v;
				}
				if (better)
					bi = r;
			}
			y[o * I + i] = bi;
		}
	}
	return 0;
}

static int argmax_run(struct node *n, struct graft_err *err)
{
	return arg_run_kind(n, 1, err);
}

static int argmin_run(struct node *n, struct graft_err *err)
{
	return arg_run_kind(n, 0, err);
}

static const struct op_def op_argmax = {"ArgMax", arg_infer, argmax_run, NULL, 0, 0};
static const struct op_def op_argmin = {"ArgMin", arg_infer, argmin_run, NULL, 0, 0};

const struct op_def *const ops_reduce[] = {
	&op_reduce_sum, &op_reduce_mean, &op_reduce_max, &op_reduce_min, &op_reduce_prod,
	&op_reduce_sum_square, &op_reduce_l1, &op_reduce_l2, &op_reduce_log_sum,
	&op_reduce_log_sum_exp, &op_argmax, &op_argmin, NULL,
};

/* ---- backward ----------------------------------------------------------------------------
 *
 * Gradients are float32.  Reductions spread dy back over the reduced axes.
 */

/* dx of each reduction from x, the output y and dy (g), both of the latter read at x's
 * reduced position; f is 1 / (elements reduced per output). */
#define REDUCE_GRADS(X)                                                                   \
	X(RED_SUM, g)                                                                    \
	X(RED_MEAN, g * f)                                                               \
	X(RED_SUMSQ, 2 * x * g)                                                          \
	X(RED_L1, x > 0 ? g : x < 0 ? -g : 0)                                            \
	X(RED_L2, y > 0 ? g * x / y : 0)                                                 \
	X(RED_LOGSUM, g * vexpf(-y))                                                     \
	X(RED_LOGSUMEXP, g * vexpf(x - y))

/*
 * The input's dims merged into blocks of adjacent kept or reduced axes, as make_layout
 * does, but in order: size, and for kept blocks the stride of the output they step
 * through (0 for reduced ones).  The innermost block then makes rows: along a reduced
 * one, every element of a row reads the same output element; along a kept one, a row
 * reads a contiguous run of the output.
 */
struct grad_layout {
	int nb;
	int64_t size[NET_MAX_RANK], ostride[NET_MAX_RANK];
	int64_t rows, inner;
	int inner_reduced;
	uint64_t red_numel;
};

static void grad_layout(int rank, const int64_t *dims, const int *mask, struct grad_layout *L)
{
	int red[NET_MAX_RANK];
	int64_t s = 1;

	memset(L, 0, sizeof(*L));
	L->red_numel = 1;
	for (int d = 0; d < rank; d++) {
		if (mask[d])
			L->red_numel *= (uint64_t)dims[d];
		if (dims[d] == 1)
			continue;
		if (L->nb && red[L->nb - 1] == mask[d]) {
			L->size[L->nb - 1] *= dims[d];
		} else {
			L->size[L->nb] = dims[d];
			red[L->nb++] = mask[d];
		}
	}
	if (L->nb == 0) {
		L->size[0] = 1;
		red[0] = 0;
		L->nb = 1;
	}
	for (int b = L->nb - 1; b >= 0; b--) {
		L->ostride[b] = red[b] ? 0 : s;
		if (!red[b])
			s *= L->size[b];
	}
	L->inner = L->size[L->nb - 1];
	L->inner_reduced = red[L->nb - 1];
	L->rows = 1;
	for (int b = 0; b < L->nb - 1; b++)
		L->rows *= L->size[b];
}

static int reduce_backward_kind(struct node *n, enum red_kind k, struct graft_err *err)
{
	const struct value *x = n->in[0];
	const float *X = x->data, *Y = n->out[0]->data, *G = n->out[0]->grad->data;
	float *D;
	int mask[NET_MAX_RANK], rc;
	struct grad_layout L;

	if (!n->gin[0])
		return 0;
	if (x->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "backward for %s inputs",
				dtype_label(x->dtype));
	if ((rc = reduce_mask(n, x->rank, mask, err)))
		return rc;
	if (value_numel(x) == 0)
		return 0;
	grad_layout(x->rank, x->dims, mask, &L);
	D = n->gin[0]->data;
	float f = L.red_numel ? 1.0f / (float)L.red_numel : 0;
	int64_t inner = L.inner;
#pragma omp parallel for schedule(static) if (L.rows * L.inner > PAR_MIN && L.rows > 1)
	for (int64_t row = 0; row < L.rows; row++) {
		int64_t o = 0, rest = row;
		for (int b = L.nb - 2; b >= 0; b--) {
			o += (rest % L.size[b]) * L.ostride[b];
			rest /= L.size[b];
		}
		const float *xr = X + row * inner, *yr = Y + o, *gr = G + o;
		float *dr = D + row * inner;
		switch (k) {
#define X(kind, expr)                                                                     \
		case kind:                                                                \
			if (L.inner_reduced) {                                            \
				const float y = yr[0], g = gr[0];                         \
				_Pragma("omp simd")                                       \
				for (int64_t i = 0; i < inner; i++) {                     \
					float x = xr[i];                                  \
					(void)x;                                          \
					(void)y;                                          \
					(void)f;                                          \
					dr[i] = (expr);                                   \
				}                                                         \
			} else {                                                          \
				_Pragma("omp simd")                                       \
				for (int64_t i = 0; i < inner; i++) {                     \
					float x = xr[i], y = yr[i], g = gr[i];            \
					(void)x;                                          \
					(void)y;                                          \
					(void)f;                                          \
					dr[i] = (expr);                                   \
				}                                                         \
			}                                                                 \
			break;
			REDUCE_GRADS(X)
#undef X
		default:
			break;
		}
	}
	return 0;
}

#define REDUCE_GRAD(NAME, KIND, FN)                                                       \
	static int backward_##FN(struct node *n, struct graft_err *err)                   \
	{                                                                                 \
		return reduce_backward_kind(n, KIND, err);                                \
	}                                                                                 \
	static const struct grad_def grad_##FN = {NAME, backward_##FN}

REDUCE_GRAD("ReduceSum", RED_SUM, reduce_sum);
REDUCE_GRAD("ReduceMean", RED_MEAN, reduce_mean);
REDUCE_GRAD("ReduceSumSquare", RED_SUMSQ, reduce_sum_square);
REDUCE_GRAD("ReduceL1", RED_L1, reduce_l1);
REDUCE_GRAD("ReduceL2", RED_L2, reduce_l2);
REDUCE_GRAD("ReduceLogSum", RED_LOGSUM, reduce_log_sum);
REDUCE_GRAD("ReduceLogSumExp", RED_LOGSUMEXP, reduce_log_sum_exp);

const struct grad_def *const ops_reduce_grad[] = {
	&grad_reduce_sum, &grad_reduce_mean, &grad_reduce_sum_square, &grad_reduce_l1,
	&grad_reduce_l2, &grad_reduce_log_sum, &grad_reduce_log_sum_exp, NULL,
};
