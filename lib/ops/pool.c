/*
 * pool.c: MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool.
 *
 * Windowed pooling of float32 runs on oneDNN's pooling_v2 (it has dilations) over the
 * plain NCHW values.  ceil_mode becomes extra right padding (window_plan), which max
 * pooling ignores and average pooling that excludes padding does not count.  A plain
 * loop covers what oneDNN does not: MaxPool's Indices output, other dtypes (double,
 * int8, uint8), average pooling that counts padding when ceil_mode grew it (ONNX counts
 * only the pads given), and any window oneDNN refuses.  The global pools are
 * memory-bound sums and maxima over each channel: plain loops over the channels.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dnnl_util.h"

enum pool_kind { POOL_MAX, POOL_AVG };

struct pool_state {
	dnnl_primitive_t prim;  /* NULL: the plain loop */
	dnnl_memory_t src, dst;
};

static void pool_release(struct node *n)
{
	struct pool_state *s = n->priv;

	if (!s)
		return;
	dnnl_primitive_destroy(s->prim);
	dnnl_memory_destroy(s->dst);
	dnnl_memory_destroy(s->src);
	free(s);
	n->priv = NULL;
}

static int pool_dtype_ok(const struct node *n, enum pool_kind kind, int dtype)
{
	if (dtype == GRAFT_FLOAT || dtype == GRAFT_DOUBLE)
		return 1;
	return kind == POOL_MAX && n->opset >= 12 && (dtype == GRAFT_INT8 || dtype == GRAFT_UINT8);
}

static int pool_window(const struct node *n, enum pool_kind kind, struct window *w,
		       struct graft_err *err)
{
	const struct value *x;
	int64_t ks[3];
	long nk;

	if (n->n_in != 1 || !n->in[0] || n->n_out < 1 || !n->out[0] ||
	    n->n_out > (kind == POOL_MAX ? 2u : 1u))
		return node_err(n, err, GRAFT_EFORMAT, "takes X and gives Y%s",
				kind == POOL_MAX ? " and optional Indices" : "");
	x = n->in[0];
	if (!pool_dtype_ok(n, kind, x->dtype))
		return node_err(n, err, GRAFT_EUNSUPPORTED, "%s input is not supported",
				dtype_label(x->dtype));
	if (x->rank < 3 || x->rank > 5)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input has rank %d; 3 to 5 are supported",
				x->rank);
	memset(w, 0, sizeof(*w));
	w->nsp = x->rank - 2;
	nk = attr_ints(n, "kernel_shape", ks, 3);
	if (nk < 0)
		return node_err(n, err, GRAFT_EFORMAT, "kernel_shape is missing");
	if (nk != w->nsp)
		return node_err(n, err, GRAFT_EFORMAT, "kernel_shape has %ld values for %d spatial "
				"axes", nk, w->nsp);
	for (int i = 0; i < w->nsp; i++) {
		w->in[i] = x->dims[2 + i];
		w->k[i] = ks[i];
	}
	if (attr_int(n, "storage_order", 0) != 0 && attr_int(n, "storage_order", 0) != 1)
		return node_err(n, err, GRAFT_EFORMAT, "storage_order is %lld",
				(long long)attr_int(n, "storage_order", 0));
	return window_plan(n, w, attr_int(n, "ceil_mode", 0) != 0, err);
}

static int pool_infer(struct node *n, enum pool_kind kind, struct graft_err *err)
{
	struct window w;
	int64_t dims[5];
	int rc = pool_window(n, kind, &w, err);

	if (rc)
		return rc;
	dims[0] = n->in[0]->dims[0];
	dims[1] = n->in[0]->dims[1];
	for (int i = 0; i < w.nsp; i++)
		dims[2 + i] = w.out[i];
	value_set(n->out[0], n->in[0]->dtype, w.nsp + 2, dims);
	if (n->n_out > 1 && n->out[1])
		value_set(n->out[1], GRAFT_INT64, w.nsp + 2, dims);
	return 0;
}

static int maxpool_infer(struct node *n, struct graft_err *err)
{
	return pool_infer(n, POOL_MAX, err);
}

static int avgpool_infer(struct node *n, struct graft_err *err)
{
	return pool_infer(n, POOL_AVG, err);
}

/* ---- the plain loop --------------------------------------------------------------------- */

/* The window along one axis, in 3-D terms (unused leading axes have size 1). */
struct axis {
	int64_t in, out, k, s, d, pl, pend;
};

static inline double load(const struct value *v, const float *f, uint64_t i)
{
	return f ? f[i] : value_get(v, i);
}

static void pool_plain(const struct node *n, enum pool_kind kind, const struct window *w)
{
	const struct value *xv = n->in[0];
	struct value *yv = n->out[0], *iv = n->n_out > 1 ? n->out[1] : NULL;
	const float *xf = xv->dtype == GRAFT_FLOAT ? xv->data : NULL;
	float *yf = yv->dtype == GRAFT_FLOAT ? yv->data : NULL;
	int64_t *idx = iv ? iv->data : NULL;
	int col_major = attr_int(n, "storage_order", 0) == 1;
	int include = attr_int(n, "count_include_pad", 0) != 0;
	int64_t planes = xv->dims[0] * xv->dims[1], isize = 1, osize = 1;
	struct axis ax[3];

	for (int i = 0; i < 3; i++) {
		int j = i - (3 - w->nsp);
		ax[i] = j < 0 ? (struct axis){1, 1, 1, 1, 1, 0, 0}
			      : (struct axis){w->in[j], w->out[j], w->k[j], w->stride[j], w->dil[j],
					      w->pad_l[j], w->pad_end[j]};
		isize *= ax[i].in;
		osize *= ax[i].out;
	}
#pragma omp parallel for if (planes * osize > 4096)
	for (int64_t p = 0; p < planes; p++) {
		uint64_t xo = (uint64_t)(p * isize), yo = (uint64_t)(p * osize);
		for (int64_t o0 = 0; o0 < ax[0].out; o0++)
		for (int64_t o1 = 0; o1 < ax[1].out; o1++)
		for (int64_t o2 = 0; o2 < ax[2].out; o2++) {
			int64_t b0 = o0 * ax[0].s - ax[0].pl, b1 = o1 * ax[1].s - ax[1].pl;
			int64_t b2 = o2 * ax[2].s - ax[2].pl, best_at = -1, count = 0;
			double acc = kind == POOL_MAX ? -INFINITY : 0.0;
			for (int64_t k0 = 0; k0 < ax[0].k; k0++) {
				int64_t i0 = b0 + k0 * ax[0].d;
				if (i0 < -ax[0].pl || i0 >= ax[0].in + ax[0].pend)
					continue;
				for (int64_t k1 = 0; k1 < ax[1].k; k1++) {
					int64_t i1 = b1 + k1 * ax[1].d;
					if (i1 < -ax[1].pl || i1 >= ax[1].in + ax[1].pend)
						continue;
					for (int64_t k2 = 0; k2 < ax[2].k; k2++) {
						int64_t i2 = b2 + k2 * ax[2].d;
						if (i2 < -ax[2].pl || i2 >= ax[2].in + ax[2].pend)
							continue;
						int inside = i0 >= 0 && i0 < ax[0].in && i1 >= 0 &&
							     i1 < ax[1].in && i2 >= 0 && i2 < ax[2].in;
						if (include)
							count++;
						if (!inside)
							continue;
						int64_t at = (i0 * ax[1].in + i1) * ax[2].in + i2;
						double v = load(xv, xf, xo + (uint64_t)at);
						if (kind == POOL_AVG) {
							acc += v;
							count += !include;
						} else if (v > acc || best_at < 0) {
							acc = v;
							best_at = at;
						}
					}
				}
			}
			if (kind == POOL_AVG)
				acc = count ? acc / (double)count : 0.0;
			uint64_t yi = yo + (uint64_t)((o0 * ax[1].out + o1) * ax[2].out + o2);
			if (yf)
				yf[yi] = (float)acc;
			else
				value_put(yv, yi, acc);
			if (idx) {
				int64_t at = best_at < 0 ? 0 : best_at;
				if (col_major) {
					/* spatial axes reversed: the first varies fastest */
					int64_t i2 = at % ax[2].in, i1 = at / ax[2].in % ax[1].in;
					int64_t i0 = at / ax[2].in / ax[1].in;
					at = (i2 * ax[1].in + i1) * ax[0].in + i0;
				}
				idx[yi] = (int64_t)xo + at;
			}
		}
	}
}

/* ---- oneDNN ----------------------------------------------------------------------------- */

/* The pooling primitive, or s->prim NULL when oneDNN cannot do exactly this. */
static int pool_build(struct node *n, enum pool_kind kind, const struct window *w,
		      struct graft_err *err)
{
	struct value *x = n->in[0], *y = n->out[0];
	int include = attr_int(n, "count_include_pad", 0) != 0;
	dnnl_dims_t strides = {0}, kernel = {0}, dil = {0}, pl = {0}, pr = {0};
	dnnl_memory_desc_t src_md, dst_md;
	dnnl_pooling_v2_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_engine_t e;
	struct pool_state *s;
	int rc;

	if (!(s = calloc(1, sizeof(*s))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	n->priv = s;
	if (x->dtype != GRAFT_FLOAT || (n->n_out > 1 && n->out[1]) ||
	    (kind == POOL_AVG && include && w->grown))
		return 0;
	for (int i = 0; i < w->nsp; i++) {
		strides[i] = w->stride[i];
		kernel[i] = w->k[i];
		dil[i] = w->dil[i] - 1;
		pl[i] = w->pad_l[i];
		pr[i] = w->pad_r[i];
	}
	if ((rc = onednn_get(n, &e, NULL, err)) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&src_md, x->rank, x->dims, dnnl_f32))) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&dst_md, y->rank, y->dims, dnnl_f32))))
		return rc;
	/* X as its producer left it (maybe blocked); Y in the layout the primitive likes
	 * when only layout-aware ops read it. */
	if (x->layout)
		src_md = *(const dnnl_memory_desc_t *)x->layout;
	if ((y->flags & VALUE_BLOCKABLE) && x->layout) {
		dnnl_dims_t yd = {0};
		memcpy(yd, y->dims, sizeof(int64_t) * (size_t)y->rank);
		if ((rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&dst_md, y->rank, yd,
						dnnl_f32, dnnl_format_tag_any))))
			return rc;
	}
	/* oneDNN refuses some windows (all padding, say): the plain loop takes them */
	if (dnnl_pooling_v2_forward_desc_init(&d, dnnl_forward_inference,
					      kind == POOL_MAX ? dnnl_pooling_max
					      : include ? dnnl_pooling_avg_include_padding
							: dnnl_pooling_avg_exclude_padding,
					      &src_md, &dst_md, strides, kernel, dil, pl, pr) !=
		    dnnl_success ||
	    dnnl_primitive_desc_create(&pd, &d, NULL, e, NULL) != dnnl_success)
		return 0;
	rc = ONEDNN_CHECK(n, err, dnnl_primitive_create(&s->prim, pd));
	dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	dnnl_primitive_desc_destroy(pd);
	if (rc)
		return rc;
	if (dst_md.format_kind == dnnl_blocked && (y->flags & VALUE_BLOCKABLE) && x->layout) {
		dnnl_memory_desc_t plain;
		if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&plain, y->rank, y->dims, dnnl_f32))))
			return rc;
		if (!onednn_md_same(&plain, &dst_md) &&
		    (rc = onednn_keep_layout(n, y, &dst_md, err)))
			return rc;
	}
	if (n->counters)
		n->counters->primitives++;
	if ((rc = onednn_memory(n, &s->src, &src_md, x->data, err)))
		return rc;
	return onednn_memory(n, &s->dst, &dst_md, y->data, err);
}

static int pool_run(struct node *n, enum pool_kind kind, struct graft_err *err)
{
	struct pool_state *s;
	struct window w;
	int rc;

	if (value_numel(n->out[0]) == 0)
		return 0;
	if ((rc = pool_window(n, kind, &w, err)))
		return rc;
	if (!n->priv && (rc = pool_build(n, kind, &w, err))) {
		pool_release(n);
		return rc;
	}
	s = n->priv;
	if (!s->prim) {
		struct value *x = n->in[0];
		void *data = x->data, *layout = x->layout, *plain = NULL;
		dnnl_memory_desc_t pmd;
		/* The plain loop needs plain X: a rare path (windows oneDNN refuses). */
		if (layout) {
			if (!(plain = malloc(value_numel(x) * sizeof(float) + 1)))
				return node_err(n, err, GRAFT_ENOMEM, "out of memory");
			if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&pmd, x->rank, x->dims,
								       dnnl_f32))) ||
			    (rc = onednn_reorder_once(n, layout, data, &pmd, plain, err))) {
				free(plain);
				return rc;
			}
			x->data = plain;
			x->layout = NULL;
		}
		pool_plain(n, kind, &w);
		x->data = data;
		x->layout = layout;
		free(plain);
		return 0;
	}
	if ((rc = onednn_rebind(n, s->src, n->in[0]->data, err)) ||
	    (rc = onednn_rebind(n, s->dst, n->out[0]->data, err)))
		return rc;
	dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, s->src}, {DNNL_ARG_DST, s->dst}};
	return onednn_execute(n, s->prim, 2, args, err);
}

static int maxpool_run(struct node *n, struct graft_err *err)
{
	return pool_run(n, POOL_MAX, err);
}

static int avgpool_run(struct node *n, struct graft_err *err)
{
	return pool_run(n, POOL_AVG, err);
}

/* ---- global pooling -------------------------------------------------------------------- */

static int global_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t dims[NET_MAX_RANK];

	if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes X and gives Y");
	x = n->in[0];
	if (x->dtype != GRAFT_FLOAT && x->dtype != GRAFT_DOUBLE)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "%s input is not supported",
				dtype_label(x->dtype));
	if (x->rank < 2)
		return node_err(n, err, GRAFT_EFORMAT, "input has rank %d; 2 or more expected",
				x->rank);
	for (int i = 0; i < x->rank; i++)
		dims[i] = i < 2 ? x->dims[i] : 1;
	value_set(n->out[0], x->dtype, x->rank, dims);
	return 0;
}

static int global_run(struct node *n, enum pool_kind kind)
{
	const struct value *x = n->in[0];
	struct value *y = n->out[0];
	int64_t planes = x->dims[0] * x->dims[1], size = 1;

	for (int i = 2; i < x->rank; i++)
		size *= x->dims[i];
	if (x->dtype == GRAFT_FLOAT) {
		const float *xd = x->data;
		float *yd = y->data;
#pragma omp parallel for if (planes * size > 32768)
		for (int64_t p = 0; p < planes; p++) {
			const float *row = xd + p * size;
			if (kind == POOL_AVG) {
				double acc = 0.0;
#pragma omp simd reduction(+ : acc)
				for (int64_t i = 0; i < size; i++)
					acc += row[i];
				yd[p] = size ? (float)(acc / (double)size) : 0.0f;
			} else {
				float m = size ? row[0] : 0.0f;
				for (int64_t i = 1; i < size; i++)
					m = row[i] > m ? row[i] : m;
				yd[p] = m;
			}
		}
		return 0;
	}
	for (int64_t p = 0; p < planes; p++) {
		double acc = kind == POOL_AVG || !size ? 0.0 : value_get(x, (uint64_t)(p * size));
		for (int64_t i = 0; i < size; i++) {
			double v = value_get(x, (uint64_t)(p * size + i));
			acc = kind == POOL_AVG ? acc + v : v > acc ? v : acc;
		}
		value_put(y, (uint64_t)p, kind == POOL_AVG && size ? acc / (double)size : acc);
	}
	return 0;
}

static int gavg_run(struct node *n, struct graft_err *err)
{
	(void)err;
	return global_run(n, POOL_AVG);
}

static int gmax_run(struct node *n, struct graft_err *err)
{
	(void)err;
	return global_run(n, POOL_MAX);
}

static const struct op_def op_maxpool = {"MaxPool", maxpool_infer, maxpool_run, pool_release,
					 OP_BLOCKED_IO, 0};
static const struct op_def op_avgpool = {"AveragePool", avgpool_infer, avgpool_run,
					 pool_release,
					 OP_BLOCKED_IO, 0};
static const struct op_def op_gavg = {"GlobalAveragePool", global_infer, gavg_run, NULL, 0, 0};
static const struct op_def op_gmax = {"GlobalMaxPool", global_infer, gmax_run, NULL, 0, 0};

const struct op_def *const ops_pool[] = {&op_maxpool, &op_avgpool, &op_gavg, &op_gmax, NULL};

const struct grad_def *const ops_pool_grad[] = {NULL};
