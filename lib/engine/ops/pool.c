/*
 * pool.c: MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool.
 *
 * Windowed pooling of float32 runs on oneDNN's pooling_v2 (it has dilations) over the
 * plain NCHW values.  ceil_mode becomes extra right padding (window_plan), which max
 * pooling ignores and average pooling that excludes padding does not count.  A plain
 * loop covers what oneDNN does not: MaxPool's Indices output, other dtypes (double,
 * int8, uint8), average pooling that counts padding when ceil_mode grew it (ONNX counts
 * only the pads given), and any window oneDNN refuses.  The global pools are
 * memory-bound sums and maxima over each channel: plain loops over the channels.  The
 * backward (training nets) follows the forward's choice: oneDNN's pooling backward, with
 * MaxPool's workspace from a forward_training run, or a plain loop.
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
	/* Blocked X, plain Y: the primitive writes X's layout into scratch (dst_bytes), and
	 * dst_reorder takes it to Y (dst_user). */
	dnnl_memory_t dst_user;
	dnnl_primitive_t dst_reorder;
	size_t dst_bytes;
	/* Training (n->needs_grad): the forward runs as forward_training, keeping its
	 * primitive descriptor (the backward's hint) and MaxPool's workspace (where each
	 * maximum came from); the backward primitive is made on its first run. */
	dnnl_primitive_desc_t fwd_pd;
	dnnl_memory_t ws;
	void *ws_buf;
	dnnl_primitive_t bwd;
	dnnl_memory_t diff_src, diff_dst;
	int bwd_plain;          /* oneDNN refused the backward: the plain loop */
};

static void pool_release(struct node *n)
{
	struct pool_state *s = n->priv;

	if (!s)
		return;
	dnnl_primitive_destroy(s->bwd);
	dnnl_memory_destroy(s->diff_dst);
	dnnl_memory_destroy(s->diff_src);
	dnnl_memory_destroy(s->ws);
	onednn_free(s->ws_buf);
	dnnl_primitive_desc_destroy(s->fwd_pd);
	dnnl_primitive_destroy(s->dst_reorder);
	dnnl_memory_destroy(s->dst_user);
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

static dnnl_alg_kind_t pool_alg(const struct node *n, enum pool_kind kind)
{
	if (kind == POOL_MAX)
		return dnnl_pooling_max;
	return attr_int(n, "count_include_pad", 0) ? dnnl_pooling_avg_include_padding
						   : dnnl_pooling_avg_exclude_padding;
}

/* The window in oneDNN's terms. */
static void pool_dims(const struct window *w, dnnl_dims_t strides, dnnl_dims_t kernel,
		      dnnl_dims_t dil, dnnl_dims_t pl, dnnl_dims_t pr)
{
	for (int i = 0; i < w->nsp; i++) {
		strides[i] = w->stride[i];
		kernel[i] = w->k[i];
		dil[i] = w->dil[i] - 1;
		pl[i] = w->pad_l[i];
		pr[i] = w->pad_r[i];
	}
}

/* Keeps the forward_training primitive descriptor pd (taking it over) and, for max
 * pooling, a workspace for the forward to record where each maximum came from. */
static int pool_keep_workspace(const struct node *n, struct pool_state *s,
			       dnnl_primitive_desc_t pd, struct graft_err *err)
{
	const dnnl_memory_desc_t *ws = dnnl_primitive_desc_query_md(pd, dnnl_query_workspace_md, 0);

	s->fwd_pd = pd;
	if (!ws || dnnl_memory_desc_get_size(ws) == 0)
		return 0;
	if (!(s->ws_buf = onednn_alloc(dnnl_memory_desc_get_size(ws))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	return onednn_memory(n, &s->ws, ws, s->ws_buf, err);
}

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
	/* oneDNN pools float32 and, for the maximum, 8-bit integers (a quantized model's) */
	dnnl_data_type_t dt = x->dtype == GRAFT_FLOAT ? dnnl_f32 :
			      x->dtype == GRAFT_UINT8 && kind == POOL_MAX ? dnnl_u8 :
			      x->dtype == GRAFT_INT8 && kind == POOL_MAX ? dnnl_s8 : dnnl_data_type_undef;
	if (dt == dnnl_data_type_undef || (n->n_out > 1 && n->out[1]) ||
	    (kind == POOL_AVG && include && w->grown))
		return 0;
	pool_dims(w, strides, kernel, dil, pl, pr);
	if ((rc = onednn_get(n, &e, NULL, err)) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&src_md, x->rank, x->dims, dt))) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&dst_md, y->rank, y->dims, dt))))
		return rc;
	/* X as its producer left it (maybe blocked); Y in the layout the primitive likes
	 * (oneDNN's fast kernels want X's), kept when only layout-aware ops read it, else
	 * reordered into the plain value. */
	if (x->layout) {
		dnnl_dims_t yd = {0};
		src_md = *(const dnnl_memory_desc_t *)x->layout;
		memcpy(yd, y->dims, sizeof(int64_t) * (size_t)y->rank);
		if ((rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&dst_md, y->rank, yd,
						dt, dnnl_format_tag_any))))
			return rc;
	}
	/* oneDNN refuses some windows (all padding, say): the plain loop takes them */
	if (dnnl_pooling_v2_forward_desc_init(&d, n->needs_grad ? dnnl_forward_training
								: dnnl_forward_inference,
					      pool_alg(n, kind), &src_md, &dst_md, strides, kernel,
					      dil, pl, pr) != dnnl_success ||
	    dnnl_primitive_desc_create(&pd, &d, NULL, e, NULL) != dnnl_success)
		return 0;
	rc = ONEDNN_CHECK(n, err, dnnl_primitive_create(&s->prim, pd));
	dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	if (!rc && n->needs_grad)
		rc = pool_keep_workspace(n, s, pd, err);
	if (s->fwd_pd != pd)
		dnnl_primitive_desc_destroy(pd);
	if (rc)
		return rc;
	if (n->counters)
		n->counters->primitives++;
	if (x->layout) {
		dnnl_memory_desc_t plain;
		if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&plain, y->rank, y->dims, dt))))
			return rc;
		if (onednn_md_same(&plain, &dst_md))
			rc = 0;
		else if (y->flags & VALUE_BLOCKABLE)
			rc = onednn_keep_layout(n, y, &dst_md, err);
		else if (!(rc = onednn_memory(n, &s->dst_user, &plain, y->data, err)))
			rc = onednn_reorder_new(n, &dst_md, &plain, &s->dst_reorder, err);
		s->dst_bytes = dnnl_memory_desc_get_size(&dst_md);
		if (rc)
			return rc;
	}
	if ((rc = onednn_memory(n, &s->src, &src_md, x->data, err)))
		return rc;
	return onednn_memory(n, &s->dst, &dst_md, s->dst_user ? NULL : y->data, err);
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
			const dnnl_memory_desc_t *lmd = layout;
			if (!(plain = malloc(value_numel(x) * graft_dtype_size(x->dtype) + 1)))
				return node_err(n, err, GRAFT_ENOMEM, "out of memory");
			if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&pmd, x->rank, x->dims,
								       lmd->data_type))) ||
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
	if (s->dst_user) {
		void *buf = onednn_scratch(0, s->dst_bytes);
		if (!buf)
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
		if ((rc = onednn_rebind(n, s->dst, buf, err)) ||
		    (rc = onednn_rebind(n, s->dst_user, n->out[0]->data, err)))
			return rc;
	} else if ((rc = onednn_rebind(n, s->dst, n->out[0]->data, err))) {
		return rc;
	}
	if ((rc = onednn_rebind(n, s->src, n->in[0]->data, err)))
		return rc;
	dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, s->src}, {DNNL_ARG_DST, s->dst},
				   {DNNL_ARG_WORKSPACE, s->ws}};
	if ((rc = onednn_execute(n, s->prim, s->ws ? 3 : 2, args, err)))
		return rc;
	return s->dst_reorder ? onednn_reorder_run(n, s->dst_reorder, s->dst, s->dst_user, err)
			      : 0;
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

/* GlobalAveragePool of a blocked X (nChw16c, nChw8c, nhwc) into a plain [N, C, 1, 1],
 * summed in double per channel as global_run does: squeeze-and-excitation's X then
 * stays blocked for the Mul that reads it too. */
static int gavg_run_blocked(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	struct channel_blocks b;
	float *Y = n->out[0]->data;

	(void)err;
	if (x->dtype != GRAFT_FLOAT || !onednn_channel_blocks(x, &b))
		return OPS_DECLINED;
	int64_t blocks = b.C_pad / b.B, block = b.HW * b.B;
	const float *X = x->data;
#pragma omp parallel for schedule(static) if (b.N * b.C_pad * b.HW > 32768)
	for (int64_t nb = 0; nb < b.N * blocks; nb++) {
		int64_t c0 = nb % blocks * b.B, lanes = b.C - c0 < b.B ? b.C - c0 : b.B;
		const float *xb = X + nb * block;
		float *yb = Y + nb / blocks * b.C + c0;
		/* 16 lanes at a time, along the rows: one cache line a row */
		for (int64_t l0 = 0; l0 < lanes; l0 += 16) {
			int64_t m = lanes - l0 < 16 ? lanes - l0 : 16;
			double acc[16] = {0};
			for (int64_t hw = 0; hw < b.HW; hw++)
				for (int64_t l = 0; l < m; l++)
					acc[l] += xb[hw * b.B + l0 + l];
			for (int64_t l = 0; l < m; l++)
				yb[l0 + l] = b.HW ? (float)(acc[l] / (double)b.HW) : 0.0f;
		}
	}
	return 0;
}

static int gmax_run(struct node *n, struct graft_err *err)
{
	(void)err;
	return global_run(n, POOL_MAX);
}

/* ---- backward -------------------------------------------------------------------------- */

/*
 * Windowed pooling's backward runs oneDNN's pooling_v2 backward on the plain layouts the
 * forward used, with the forward_training primitive descriptor as its hint and, for max
 * pooling, the forward's workspace.  Where the forward took the plain loop, so does the
 * backward: it finds each window's maximum again (the first, as pool_plain does) or
 * spreads the average's gradient over the elements it counted.
 */

static void pool_plain_backward(const struct node *n, enum pool_kind kind,
				const struct window *w)
{
	const struct value *xv = n->in[0];
	const float *x = xv->data, *dy = n->out[0]->grad->data;
	float *dx = n->gin[0]->data;
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
		const float *xp = x + p * isize, *dyp = dy + p * osize;
		float *dxp = dx + p * isize;
		memset(dxp, 0, (size_t)isize * sizeof(float));
		for (int64_t o0 = 0; o0 < ax[0].out; o0++)
		for (int64_t o1 = 0; o1 < ax[1].out; o1++)
		for (int64_t o2 = 0; o2 < ax[2].out; o2++) {
			int64_t b[3] = {o0 * ax[0].s - ax[0].pl, o1 * ax[1].s - ax[1].pl,
					o2 * ax[2].s - ax[2].pl};
			int64_t lo[3], hi[3], count = 1, best_at = -1;
			float g = dyp[(o0 * ax[1].out + o1) * ax[2].out + o2], best = 0.0f;
			/* Along each axis, the taps k in [lo, hi) fall inside the input; the
			 * average counts those, or, with count_include_pad, those inside the pads
			 * given. */
			for (int a = 0; a < 3; a++) {
				int64_t taps = 0;
				lo[a] = ax[a].k;
				hi[a] = 0;
				for (int64_t k = 0; k < ax[a].k; k++) {
					int64_t i = b[a] + k * ax[a].d;
					if (i >= 0 && i < ax[a].in) {
						lo[a] = k < lo[a] ? k : lo[a];
						hi[a] = k + 1;
					}
					taps += include ? i >= -ax[a].pl && i < ax[a].in + ax[a].pend
							: i >= 0 && i < ax[a].in;
				}
				count *= taps;
			}
			if (kind == POOL_AVG && count)
				g /= (float)count;
			for (int64_t k0 = lo[0]; k0 < hi[0]; k0++) {
				int64_t i0 = b[0] + k0 * ax[0].d;
				if (i0 < 0 || i0 >= ax[0].in)
					continue;
				for (int64_t k1 = lo[1]; k1 < hi[1]; k1++) {
					int64_t i1 = b[1] + k1 * ax[1].d;
					if (i1 < 0 || i1 >= ax[1].in)
						continue;
					for (int64_t k2 = lo[2]; k2 < hi[2]; k2++) {
						int64_t i2 = b[2] + k2 * ax[2].d;
						if (i2 < 0 || i2 >= ax[2].in)
							continue;
						int64_t at = (i0 * ax[1].in + i1) * ax[2].in + i2;
						if (kind == POOL_AVG)
							dxp[at] += g;
						else if (best_at < 0 || xp[at] > best) {
							best = xp[at];
							best_at = at;
						}
					}
				}
			}
			if (kind == POOL_MAX && best_at >= 0)
				dxp[best_at] += g;
		}
	}
}

/* The backward primitive, or none (s->bwd_plain) when oneDNN refuses it. */
static int pool_bwd_new(struct node *n, enum pool_kind kind, const struct window *w,
			struct pool_state *s, struct graft_err *err)
{
	dnnl_dims_t strides = {0}, kernel = {0}, dil = {0}, pl = {0}, pr = {0};
	dnnl_memory_desc_t src_md, dst_md;
	dnnl_pooling_v2_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_engine_t e;
	int rc;

	pool_dims(w, strides, kernel, dil, pl, pr);
	if ((rc = onednn_get(n, &e, NULL, err)) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&src_md, n->in[0]->rank, n->in[0]->dims,
						       dnnl_f32))) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&dst_md, n->out[0]->rank,
						       n->out[0]->dims, dnnl_f32))))
		return rc;
	if (dnnl_pooling_v2_backward_desc_init(&d, pool_alg(n, kind), &src_md, &dst_md, strides,
					       kernel, dil, pl, pr) != dnnl_success ||
	    dnnl_primitive_desc_create(&pd, &d, NULL, e, s->fwd_pd) != dnnl_success) {
		s->bwd_plain = 1;
		return 0;
	}
	rc = ONEDNN_CHECK(n, err, dnnl_primitive_create(&s->bwd, pd));
	dnnl_primitive_desc_destroy(pd);
	if (rc)
		return rc;
	if (n->counters)
		n->counters->primitives++;
	if ((rc = onednn_memory(n, &s->diff_src, &src_md, n->gin[0]->data, err)))
		return rc;
	return onednn_memory(n, &s->diff_dst, &dst_md, n->out[0]->grad->data, err);
}

static int pool_backward(struct node *n, enum pool_kind kind, struct graft_err *err)
{
	struct pool_state *s = n->priv;
	struct window w;
	int rc;

	if (!n->gin[0] || !n->out[0]->grad)
		return 0;
	if (value_numel(n->out[0]) == 0) {
		memset(n->gin[0]->data, 0, n->gin[0]->nbytes);
		return 0;
	}
	if (!s)
		return node_err(n, err, GRAFT_EINVAL, "backward before a forward run");
	if (n->in[0]->layout || n->in[0]->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "backward needs a plain float input");
	if ((rc = pool_window(n, kind, &w, err)))
		return rc;
	if (s->prim && s->fwd_pd && !s->bwd && !s->bwd_plain &&
	    (rc = pool_bwd_new(n, kind, &w, s, err)))
		return rc;
	if (!s->bwd) {
		pool_plain_backward(n, kind, &w);
		return 0;
	}
	if ((rc = onednn_rebind(n, s->diff_src, n->gin[0]->data, err)) ||
	    (rc = onednn_rebind(n, s->diff_dst, n->out[0]->grad->data, err)))
		return rc;
	dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, s->diff_dst},
				   {DNNL_ARG_DIFF_SRC, s->diff_src}, {DNNL_ARG_WORKSPACE, s->ws}};
	return onednn_execute(n, s->bwd, s->ws ? 3 : 2, args, err);
}

static int maxpool_backward(struct node *n, struct graft_err *err)
{
	return pool_backward(n, POOL_MAX, err);
}

static int avgpool_backward(struct node *n, struct graft_err *err)
{
	return pool_backward(n, POOL_AVG, err);
}

/* The global pools: the average's gradient spread over each channel, the maximum's to
 * the channel's first maximum. */
static int global_backward(struct node *n, enum pool_kind kind, struct graft_err *err)
{
	const struct value *x = n->in[0];
	int64_t planes = x->dims[0] * x->dims[1], size = 1;

	if (!n->gin[0] || !n->out[0]->grad)
		return 0;
	if (x->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "backward needs a float input");
	for (int i = 2; i < x->rank; i++)
		size *= x->dims[i];
	const float *xd = x->data, *dy = n->out[0]->grad->data;
	float *dx = n->gin[0]->data;
#pragma omp parallel for if (planes * size > 32768)
	for (int64_t p = 0; p < planes; p++) {
		const float *row = xd + p * size;
		float *drow = dx + p * size;
		if (kind == POOL_AVG) {
			float g = size ? dy[p] / (float)size : 0.0f;
			for (int64_t i = 0; i < size; i++)
				drow[i] = g;
			continue;
		}
		int64_t at = 0;
		memset(drow, 0, (size_t)size * sizeof(float));
		for (int64_t i = 1; i < size; i++)
			at = row[i] > row[at] ? i : at;
		if (size)
			drow[at] = dy[p];
	}
	return 0;
}

static int gavg_backward(struct node *n, struct graft_err *err)
{
	return global_backward(n, POOL_AVG, err);
}

static int gmax_backward(struct node *n, struct graft_err *err)
{
	return global_backward(n, POOL_MAX, err);
}

static const struct op_def op_maxpool = {"MaxPool", maxpool_infer, maxpool_run, pool_release,
					 OP_BLOCKED_IO, 0};
static const struct op_def op_avgpool = {"AveragePool", avgpool_infer, avgpool_run,
					 pool_release,
					 OP_BLOCKED_IO, 0};
static const struct op_def op_gavg = {"GlobalAveragePool", global_infer, gavg_run, NULL, 0, 0};
static const struct op_def op_gmax = {"GlobalMaxPool", global_infer, gmax_run, NULL, 0, 0};

const struct op_def *const ops_pool[] = {&op_maxpool, &op_avgpool, &op_gavg, &op_gmax, NULL};

static const struct grad_def grad_maxpool = {"MaxPool", maxpool_backward};
static const struct grad_def grad_avgpool = {"AveragePool", avgpool_backward};
static const struct grad_def grad_gavg = {"GlobalAveragePool", gavg_backward};
static const struct grad_def grad_gmax = {"GlobalMaxPool", gmax_backward};

const struct grad_def *const ops_pool_grad[] = {&grad_maxpool, &grad_avgpool, &grad_gavg,
						&grad_gmax, NULL};

static const struct blocked_def blocked_gavg = {"GlobalAveragePool", gavg_run_blocked};

const struct blocked_def *const ops_pool_blocked[] = {&blocked_gavg, NULL};
