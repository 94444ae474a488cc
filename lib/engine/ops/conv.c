/*
 * conv.c: Conv and ConvTranspose (1-D, 2-D and 3-D, grouped and depthwise, dilated,
 * strided, padded, with an activation the executor fused in) on oneDNN's
 * forward-inference (de)convolution.
 *
 * The weights take the blocked layout oneDNN prefers: a constant W is reordered once, on
 * the first run after a plan, into a buffer the node keeps; a W computed at run time is
 * reordered on every run.  The executor's values are plain row-major (NCHW), on which
 * oneDNN 2.6 convolves slowly (im2col + sgemm), so most nodes reorder X into the layout
 * the primitive picks and Y back, through per-thread scratch (conv_want_blocked() has the
 * measurements).  Between two Convs there is no reorder: the executor marks a value that
 * only Convs read VALUE_BLOCKABLE, the producer keeps its Y in the primitive's layout
 * (value->layout), and the consumer asks for exactly that layout as its X.  Conv's
 * backward (training nets) is at the end: oneDNN's backward-data and backward-weights
 * convolutions, on the layouts they choose.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnnl_util.h"

/* ---- the primitive, apart from the node ------------------------------------------------ */

/* A forward (de)convolution and the layouts it runs on. */
struct conv_prim {
	dnnl_primitive_t prim;
	dnnl_memory_desc_t src, wei, dst;       /* as chosen, where 'any' was asked */
};

/* The window in oneDNN's terms. */
static void window_dims(const struct window *w, dnnl_dims_t strides, dnnl_dims_t dil,
			dnnl_dims_t pl, dnnl_dims_t pr)
{
	for (int i = 0; i < w->nsp; i++) {
		strides[i] = w->stride[i];
		dil[i] = w->dil[i] - 1;         /* ONNX counts an undilated kernel as 1, oneDNN 0 */
		pl[i] = w->pad_l[i];
		pr[i] = w->pad_r[i];
	}
}

/* The forward-inference descriptor of a convolution (or, with transpose, a
 * deconvolution) by algorithm alg over the window w. */
static int conv_desc(const struct node *n, int transpose, dnnl_alg_kind_t alg,
		     const struct window *w, const dnnl_memory_desc_t *src,
		     const dnnl_memory_desc_t *wei, const dnnl_memory_desc_t *bias,
		     const dnnl_memory_desc_t *dst, dnnl_convolution_desc_t *d,
		     struct graft_err *err)
{
	dnnl_dims_t strides = {0}, dil = {0}, pl = {0}, pr = {0};

	window_dims(w, strides, dil, pl, pr);
	if (transpose)
		return ONEDNN_CHECK(n, err, dnnl_dilated_deconvolution_forward_desc_init(d,
				    dnnl_forward_inference, dnnl_deconvolution_direct, src, wei, bias,
				    dst, strides, dil, pl, pr));
	return ONEDNN_CHECK(n, err, dnnl_dilated_convolution_forward_desc_init(d,
			    dnnl_forward_inference, alg, src, wei, bias, dst, strides, dil, pl, pr));
}

/* Makes a convolution (or, with transpose, a deconvolution) over the window w from src,
 * wei, bias (NULL for none) and dst, any of which may be format_tag_any, by algorithm
 * alg and oneDNN's implementation named impl (NULL: its first choice); attr (NULL for
 * none) carries post-ops for fusions.  cp->src, wei and dst come back as chosen, and the
 * primitive descriptor in *pd_out (the caller destroys it). */
static int conv_prim_new(const struct node *n, int transpose, dnnl_alg_kind_t alg,
			 const char *impl, const struct window *w, const dnnl_memory_desc_t *src,
			 const dnnl_memory_desc_t *wei, const dnnl_memory_desc_t *bias,
			 const dnnl_memory_desc_t *dst, const_dnnl_primitive_attr_t attr,
			 struct conv_prim *cp, dnnl_primitive_desc_t *pd_out, struct graft_err *err)
{
	dnnl_convolution_desc_t d;
	dnnl_primitive_desc_t pd = NULL;
	int rc;

	memset(cp, 0, sizeof(*cp));
	if ((rc = conv_desc(n, transpose, alg, w, src, wei, bias, dst, &d, err)) ||
	    (rc = onednn_primitive_impl(n, &d, attr, impl, &cp->prim, &pd, err)))
		return rc;
	cp->src = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
	cp->wei = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	cp->dst = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	*pd_out = pd;
	return 0;
}

/* ---- shapes ---------------------------------------------------------------------------- */

static int check_float(const struct node *n, const struct value *v, const char *what,
		       struct graft_err *err)
{
	if (v->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "%s '%s' is %s; only float32 is supported",
				what, v->name, dtype_label(v->dtype));
	return 0;
}

/* Conv's and ConvTranspose's X, W and optional B (in[0..2]), float32. */
static int geom_common(const struct node *n, int transpose, struct conv_geom *g,
		       struct graft_err *err)
{
	const struct value *x, *w, *b;
	int rc;

	if (n->n_in < 2 || n->n_in > 3 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes X, W and an optional B, and one output");
	x = n->in[0];
	w = n->in[1];
	b = n->n_in == 3 ? n->in[2] : NULL;
	if ((rc = check_float(n, x, "input", err)) || (rc = check_float(n, w, "weight", err)) ||
	    (b && (rc = check_float(n, b, "bias", err))))
		return rc;
	return conv_geom_of(n, x, w, b, transpose, g, err);
}

int conv_geom_of(const struct node *n, const struct value *x, const struct value *w,
		 const struct value *b, int transpose, struct conv_geom *g, struct graft_err *err)
{
	int64_t ks[3];
	long nk;

	if (x->rank < 3 || x->rank > 5)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input has rank %d; 3 to 5 are supported",
				x->rank);
	if (w->rank != x->rank)
		return node_err(n, err, GRAFT_EFORMAT, "weight has rank %d, input %d", w->rank,
				x->rank);
	memset(g, 0, sizeof(*g));
	g->w.nsp = x->rank - 2;
	g->batch = x->dims[0];
	g->in_ch = x->dims[1];
	g->group = attr_int(n, "group", 1);
	if (g->group < 1)
		return node_err(n, err, GRAFT_EFORMAT, "group is %lld", (long long)g->group);
	if (g->in_ch % g->group)
		return node_err(n, err, GRAFT_EFORMAT, "%lld input channels do not split into %lld "
				"groups", (long long)g->in_ch, (long long)g->group);
	if (transpose) {
		if (w->dims[0] != g->in_ch)
			return node_err(n, err, GRAFT_EFORMAT, "weight has %lld input channels, input "
					"%lld", (long long)w->dims[0], (long long)g->in_ch);
		g->out_ch = w->dims[1] * g->group;
	} else {
		if (w->dims[1] * g->group != g->in_ch)
			return node_err(n, err, GRAFT_EFORMAT, "weight has %lld input channels per "
					"group, input %lld in %lld groups", (long long)w->dims[1],
					(long long)g->in_ch, (long long)g->group);
		g->out_ch = w->dims[0];
		if (g->out_ch % g->group)
			return node_err(n, err, GRAFT_EFORMAT, "%lld output channels do not split into "
					"%lld groups", (long long)g->out_ch, (long long)g->group);
	}
	nk = attr_ints(n, "kernel_shape", ks, 3);
	if (nk >= 0 && nk != g->w.nsp)
		return node_err(n, err, GRAFT_EFORMAT, "kernel_shape has %ld values for %d spatial "
				"axes", nk, g->w.nsp);
	for (int i = 0; i < g->w.nsp; i++) {
		g->w.in[i] = x->dims[2 + i];
		g->w.k[i] = w->dims[2 + i];
		if (nk >= 0 && ks[i] != g->w.k[i])
			return node_err(n, err, GRAFT_EFORMAT, "kernel_shape[%d] is %lld, the weight's "
					"%lld", i, (long long)ks[i], (long long)g->w.k[i]);
	}
	if (b && (b->rank != 1 || b->dims[0] != g->out_ch))
		return node_err(n, err, GRAFT_EFORMAT, "bias must have shape [%lld]",
				(long long)g->out_ch);
	return 0;
}

static int conv_geom(const struct node *n, struct conv_geom *g, struct graft_err *err)
{
	int rc = geom_common(n, 0, g, err);

	return rc ? rc : window_plan(n, &g->w, 0, err);
}

/* ConvTranspose: out = stride * (in - 1) + output_padding + extent - pads, or the pads
 * follow from output_shape (or from auto_pad SAME_*, which asks for in * stride).  The
 * window's pad_r is oneDNN's: the pad at the end less output_padding, so that
 * out = stride * (in - 1) + extent - pad_l - pad_r holds; it may be negative. */
static int convt_geom(const struct node *n, struct conv_geom *g, struct graft_err *err)
{
	struct window *w = &g->w;
	int64_t pads[6] = {0}, opad[3] = {0}, oshape[5];
	char mode[32];
	long nos;
	int rc;

	if ((rc = geom_common(n, 1, g, err)))
		return rc;
	for (int i = 0; i < w->nsp; i++)
		w->stride[i] = w->dil[i] = 1;
	if ((rc = window_attr(n, "strides", w->stride, w->nsp, 0, err)) ||
	    (rc = window_attr(n, "dilations", w->dil, w->nsp, 0, err)) ||
	    (rc = window_attr(n, "pads", pads, 2 * w->nsp, 1, err)) ||
	    (rc = window_attr(n, "output_padding", opad, w->nsp, 1, err)))
		return rc;
	nos = attr_ints(n, "output_shape", oshape, 5);
	if (nos >= 0 && nos != w->nsp && nos != w->nsp + 2)
		return node_err(n, err, GRAFT_EFORMAT, "output_shape has %ld values for %d spatial "
				"axes", nos, w->nsp);
	attr_string(n, "auto_pad", "NOTSET", mode, sizeof(mode));
	if (strcmp(mode, "NOTSET") && *mode && strcmp(mode, "VALID") &&
	    strcmp(mode, "SAME_UPPER") && strcmp(mode, "SAME_LOWER"))
		return node_err(n, err, GRAFT_EFORMAT, "auto_pad '%s' is not NOTSET, VALID, "
				"SAME_UPPER or SAME_LOWER", mode);
	for (int i = 0; i < w->nsp; i++) {
		int64_t ext = (w->k[i] - 1) * w->dil[i] + 1;
		int64_t full = w->stride[i] * (w->in[i] - 1) + opad[i] + ext;
		int64_t pb = pads[i], pe = pads[w->nsp + i], want = -1, total;

		if (nos >= 0)
			want = oshape[nos - w->nsp + i];
		else if (strncmp(mode, "SAME_", 5) == 0)
			want = w->in[i] * w->stride[i];
		else if (strcmp(mode, "VALID") == 0)
			pb = pe = 0;
		if (want >= 0) {
			total = full - want;
			if (total < 0) {
				pb = 0;         /* more than the kernel reaches: zero rows at the end */
				pe = total;
			} else if (strcmp(mode, "SAME_UPPER") == 0) {
				pb = total / 2;
				pe = total - pb;
			} else {
				pe = total / 2;
				pb = total - pe;
			}
		}
		w->out[i] = full - pb - pe;
		if (w->out[i] < 1)
			return node_err(n, err, GRAFT_EFORMAT, "output size %lld along spatial axis %d",
					(long long)w->out[i], i);
		w->pad_l[i] = pb;
		w->pad_r[i] = pe - opad[i];
	}
	return 0;
}

static int conv_infer_common(struct node *n, int transpose, struct graft_err *err)
{
	struct conv_geom g;
	int64_t dims[5];
	int rc = transpose ? convt_geom(n, &g, err) : conv_geom(n, &g, err);

	if (rc)
		return rc;
	dims[0] = g.batch;
	dims[1] = g.out_ch;
	for (int i = 0; i < g.w.nsp; i++)
		dims[2 + i] = g.w.out[i];
	value_set(n->out[0], GRAFT_FLOAT, g.w.nsp + 2, dims);
	return 0;
}

static int conv_infer(struct node *n, struct graft_err *err)
{
	return conv_infer_common(n, 0, err);
}

static int convt_infer(struct node *n, struct graft_err *err)
{
	return conv_infer_common(n, 1, err);
}

/* ---- the node -------------------------------------------------------------------------- */

struct conv_state {
	struct conv_prim cp;
	dnnl_memory_t src, wei, bias, dst;      /* what the primitive reads and writes */
	void *wei_buf;                          /* W in the primitive's layout, when not W's */
	dnnl_memory_t wei_user;                 /* W as stored, reordered every run */
	dnnl_primitive_t wei_reorder;
	dnnl_memory_t src_user, dst_user;       /* X and Y, when the primitive's layouts differ */
	dnnl_primitive_t src_reorder, dst_reorder;
	size_t src_bytes, dst_bytes;            /* X and Y in those layouts, in scratch */
	/* Depthwise fusion: the depthwise Conv's W and B in the post-op's layouts. */
	dnnl_memory_t dw_wei, dw_bias;
	void *dw_wei_buf, *dw_bias_buf;
	int apart;              /* the fused primitive was refused: pre and this run apart */
	struct conv_bwd *bwd;   /* the backward, built on its first run */
};

static void conv_bwd_free(struct conv_bwd *b);

static void conv_release(struct node *n)
{
	struct conv_state *s = n->priv;

	if (!s)
		return;
	conv_bwd_free(s->bwd);
	dnnl_primitive_destroy(s->dst_reorder);
	dnnl_primitive_destroy(s->src_reorder);
	dnnl_primitive_destroy(s->wei_reorder);
	dnnl_primitive_destroy(s->cp.prim);
	dnnl_memory_destroy(s->dst_user);
	dnnl_memory_destroy(s->src_user);
	dnnl_memory_destroy(s->wei_user);
	dnnl_memory_destroy(s->dst);
	dnnl_memory_destroy(s->bias);
	dnnl_memory_destroy(s->wei);
	dnnl_memory_destroy(s->src);
	dnnl_memory_destroy(s->dw_wei);
	dnnl_memory_destroy(s->dw_bias);
	onednn_free(s->dw_wei_buf);
	onednn_free(s->dw_bias_buf);
	onednn_free(s->wei_buf);
	free(s);
	n->priv = NULL;
}

/*
 * Whether to run this convolution on the activation layouts oneDNN prefers, reordering
 * X in and Y out within the node, rather than on plain NCHW.  On plain NCHW oneDNN 2.6
 * falls back to im2col + sgemm (gemm:jit); on the layouts it picks itself (nhwc-like or
 * nChw16c) it runs brgconv and brdgmm_dw, fast enough to pay for two reorders.  Measured
 * with 2 threads (AVX-512), resnet18's convolutions alone: batch 1, 20.3 ms plain against
 * 11.7 ms with the reorders (10.6 ms without them: what keeping blocked layouts between
 * layers would give); batch 32, 745 ms against 507 ms (456 ms).  Whole mobilenet_v2 runs:
 * batch 1, 19.8 ms with its pointwise convolutions left plain against 11 ms with all
 * blocked; batch 32, 670 ms against 413 ms.  So every convolution takes the blocked path
 * for now; this is where an executor that keeps blocked layouts would say that X already
 * is, and Y may stay, in the primitive's layout.
 */
static int conv_want_blocked(const struct conv_geom *g, int transpose)
{
	(void)g;
	(void)transpose;
	return 1;
}

/*
 * The layout asked for a 2-D convolution's X and Y: nChw16c, where letting oneDNN pick
 * ('any') gets nhwc for its brgconv kernels.  Only on nChw16c does oneDNN 2.6 really fuse
 * a 1x1 convolution with a depthwise post-op (jit_1x1 with dw; on nhwc it runs the two
 * apart, as "ref_fused_convolution", and the fusion gains nothing).  Measured with 2
 * threads: mobilenet_v2 at batch 32, 150 ms -> 97 ms; efficientnet_b0 at batch 8,
 * 167 -> 140 ms; resnet18 the same within noise (batch 1, 14.0-14.7 ms either way; batch
 * 32, 411 against 403 ms).  An image (3 channels or fewer) stays plain: no reorder.
 */
static dnnl_format_tag_t conv_act_tag(const struct value *v, int transpose)
{
	/* 16 channels a block where oneDNN runs AVX-512 kernels, 8 below (AVX2, AVX,
	 * SSE4.1): its jit kernels there take only nChw8c, and on nChw16c oneDNN 2.6 falls
	 * back to its reference kernels, measured under DNNL_MAX_CPU_ISA=AVX2 at 1.07 s
	 * for one mobilenet_v3_small image, 550 times ONNX Runtime's time. */
	static int wide = -1;

	if (wide < 0)
		wide = (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core) ==
		       dnnl_cpu_isa_avx512_core;
	if (transpose || v->rank != 4 || v->dims[1] <= 3)
		return dnnl_format_tag_any;
	return wide ? dnnl_nChw16c : dnnl_nChw8c;
}

/* A memory object over a new buffer of the node's, of layout md. */
static int own_memory(const struct node *n, dnnl_memory_t *mem, const dnnl_memory_desc_t *md,
		      void **buf, struct graft_err *err)
{
	if (!(*buf = onednn_alloc(dnnl_memory_desc_get_size(md))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	return onednn_memory(n, mem, md, *buf, err);
}

/* The attribute of a depthwise-fused node: pre's activation, the depthwise convolution
 * (3x3, pad 1, the stride of n), n's activation. */
static int dw_fused_attr(const struct node *n, dnnl_primitive_attr_t *attr,
			 struct graft_err *err)
{
	dnnl_post_ops_t po = NULL;
	int64_t stride[2] = {1, 1};
	int rc;

	attr_ints(n, "strides", stride, 2);
	if ((rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_create(attr))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_post_ops_create(&po))) ||
	    (rc = onednn_append_act(n->pre, po, err)) ||
	    (rc = ONEDNN_CHECK(n, err, stride[0] == 1 ?
			dnnl_post_ops_append_dw_k3s1p1(po, dnnl_f32, dnnl_f32, dnnl_f32, 0, 0, NULL) :
			dnnl_post_ops_append_dw_k3s2p1(po, dnnl_f32, dnnl_f32, dnnl_f32, 0, 0, NULL))) ||
	    (rc = onednn_append_act(n, po, err)) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_set_post_ops(*attr, po)))) {
		dnnl_primitive_attr_destroy(*attr);
		*attr = NULL;
	}
	dnnl_post_ops_destroy(po);
	return rc;
}

/* The depthwise Conv's W (C, 1, 3, 3) and B (or zeros), in the layouts the fused
 * primitive pd asks for, once: the executor fuses only constant weights. */
static int dw_fused_weights(const struct node *n, struct conv_state *s,
			    const_dnnl_primitive_desc_t pd, struct graft_err *err)
{
	const struct value *w = n->in[1], *b = n->n_in == 3 ? n->in[2] : NULL;
	const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md,
						DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS);
	const dnnl_memory_desc_t *bmd = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md,
						DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS);
	int64_t wdims[5] = {w->dims[0], 1, 1, 3, 3};
	dnnl_memory_desc_t plain;
	int rc;

	if (!wmd || !bmd)
		return node_err(n, err, GRAFT_EDNNL, "the fused primitive has no depthwise weights");
	if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&plain, 5, wdims, dnnl_f32))) ||
	    (rc = own_memory(n, &s->dw_wei, wmd, &s->dw_wei_buf, err)) ||
	    (rc = onednn_reorder_once(n, &plain, w->data, wmd, s->dw_wei_buf, err)) ||
	    (rc = own_memory(n, &s->dw_bias, bmd, &s->dw_bias_buf, err)))
		return rc;
	if (b)
		memcpy(s->dw_bias_buf, b->data, (size_t)w->dims[0] * sizeof(float));
	else
		memset(s->dw_bias_buf, 0, (size_t)w->dims[0] * sizeof(float));
	return 0;
}

int conv_wei_descs(const struct node *n, const struct conv_geom *g, int transpose,
		   dnnl_data_type_t dt, dnnl_memory_desc_t *plain, dnnl_memory_desc_t *any,
		   struct graft_err *err)
{
	dnnl_dims_t wdims = {0}, wstrides = {0};
	int64_t go = g->out_ch / g->group, gi = g->in_ch / g->group, ksize = 1, st = 1;
	int off = g->group > 1, rc;

	for (int i = 0; i < g->w.nsp; i++)
		ksize *= g->w.k[i];
	if (g->group > 1) {
		wdims[0] = g->group;
		wstrides[0] = go * gi * ksize;
	}
	wdims[off] = go;
	wdims[off + 1] = gi;
	/* Conv stores W as (out, in/g, k...); ConvTranspose as (in, out/g, k...). */
	wstrides[off] = transpose ? ksize : gi * ksize;
	wstrides[off + 1] = transpose ? go * ksize : ksize;
	for (int i = g->w.nsp - 1; i >= 0; i--) {
		wdims[off + 2 + i] = g->w.k[i];
		wstrides[off + 2 + i] = st;
		st *= g->w.k[i];
	}
	if ((rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_strides(plain, off + 2 + g->w.nsp,
									 wdims, dt, wstrides))))
		return rc;
	return ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(any, off + 2 + g->w.nsp, wdims,
								 dt, dnnl_format_tag_any));
}

/* ---- kernel choice: the fastest of oneDNN's kernels for the shape, timed here ---------- */

/*
 * With a wisdom (graft_net_opts.wisdom), a forward convolution runs the kernel that was
 * fastest for its shape on this machine; without one, oneDNN's first choice, as ever.
 * The candidates are every implementation oneDNN offers (its primitive descriptor
 * iterator; the reference kernels left out) for the direct algorithm and for Winograd
 * (3x3, stride 1, AVX-512 only in oneDNN 2.6), each asked with the activation layouts
 * graft uses by default (X as its producer left it, Y in nChw16c) and with the layouts
 * the implementation prefers ('any'): so brgconv on nhwc, jit on nChw16c, im2col +
 * sgemm (gemm:jit), and the 1x1 kernels that are matmuls (jit_1x1, brgconv_1x1) all
 * compete.  Each is timed on the node's real input, its X reorder into the kernel's
 * layout included, and its Y reorder out unless Y may stay in the kernel's layout (only
 * Convs read it); the best of CONV_TUNE_RUNS runs after a warm-up counts, and the
 * fastest replaces the default only if it beats it by CONV_TUNE_MARGIN.  A candidate
 * whose Y differs from the default's by more than CONV_TUNE_TOL of the largest |Y| is
 * none: Winograd's f32 arithmetic is less exact than direct summation
 * (docs/engine.md has the errors measured).  The choice is one greedy step: what the
 * layout of Y costs the next node is that node's to count when it is timed.
 */
#define CONV_TUNE_TOL 1e-5
#define CONV_TUNE_RUNS 3
/* Another kernel replaces the default only when it takes at most this share of the
 * default's time: a choice kept for good should not rest on timing noise (a loaded
 * machine, a neighbour on a shared VM). */
#define CONV_TUNE_MARGIN 0.9
#define CONV_TUNE_MAX 16

/* How a candidate asks for its activation layouts. */
enum conv_mode { MODE_DEFAULT, MODE_ANY, MODE_COUNT };
static const char *const conv_mode_names[MODE_COUNT] = {"default", "any"};

/* A kernel choice as the wisdom keeps it: "ALG/MODE/IMPL" ("winograd/any/jit_wino_4x3:
 * avx512_core"); impl empty: oneDNN's first. */
struct conv_choice {
	dnnl_alg_kind_t alg;
	enum conv_mode mode;
	char impl[64];
};

static void choice_format(const struct conv_choice *c, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s/%s", c->alg == dnnl_convolution_winograd ? "winograd" : "direct",
		 conv_mode_names[c->mode], c->impl);
}

/* 0 and *c, or -1 when text is no choice this build knows (another version's wisdom). */
static int choice_parse(const char *text, struct conv_choice *c)
{
	const char *s1 = strchr(text, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
	size_t alg = s1 ? (size_t)(s1 - text) : 0, mode = s2 ? (size_t)(s2 - s1 - 1) : 0;

	if (!s2 || strlen(s2 + 1) >= sizeof(c->impl))
		return -1;
	if (alg == 6 && strncmp(text, "direct", 6) == 0)
		c->alg = dnnl_convolution_direct;
	else if (alg == 8 && strncmp(text, "winograd", 8) == 0)
		c->alg = dnnl_convolution_winograd;
	else
		return -1;
	c->mode = MODE_COUNT;
	for (int m = 0; m < MODE_COUNT; m++)
		if (strlen(conv_mode_names[m]) == mode && strncmp(s1 + 1, conv_mode_names[m], mode) == 0)
			c->mode = (enum conv_mode)m;
	if (c->mode == MODE_COUNT)
		return -1;
	strcpy(c->impl, s2 + 1);
	return 0;
}

/* What a convolution's kernel choice depends on: the direction (what: "fwd",
 * "bwd-data", "bwd-weights"), the shapes, the window, the fused activation, X's layout
 * and whether Y may stay in the kernel's. */
static void conv_shape_key(const struct node *n, const char *what, const struct conv_geom *g,
			   char *buf, size_t size)
{
	const struct value *x = n->in[0], *w = n->in[1], *y = n->out[0];
	char lay[64] = "plain";
	size_t at = 0;

	if (x->layout)
		onednn_md_describe(x->layout, lay, sizeof(lay));
#define PUT(...) (at += (size_t)snprintf(buf + at, at < size ? size - at : 0, __VA_ARGS__))
	PUT("conv %s x=", what);
	for (int i = 0; i < x->rank; i++)
		PUT("%s%lld", i ? "x" : "", (long long)x->dims[i]);
	PUT(" w=");
	for (int i = 0; i < w->rank; i++)
		PUT("%s%lld", i ? "x" : "", (long long)w->dims[i]);
	PUT(" g=%lld s=", (long long)g->group);
	for (int i = 0; i < g->w.nsp; i++)
		PUT("%s%lld", i ? "x" : "", (long long)g->w.stride[i]);
	PUT(" d=");
	for (int i = 0; i < g->w.nsp; i++)
		PUT("%s%lld", i ? "x" : "", (long long)g->w.dil[i]);
	PUT(" p=");
	for (int i = 0; i < g->w.nsp; i++)
		PUT("%lld,%lld%s", (long long)g->w.pad_l[i], (long long)g->w.pad_r[i],
		    i + 1 < g->w.nsp ? "," : "");
	PUT(" b=%d act=%d:%g:%g in=%s keep=%d", n->n_in == 3, (int)n->act.kind,
	    (double)n->act.alpha, (double)n->act.beta, lay, (y->flags & VALUE_BLOCKABLE) != 0);
#undef PUT
	if (at >= size && size)
		buf[0] = 0;     /* too long for a key: no wisdom for it */
}

/* The activation layouts mode asks for: X as its producer left it (or nChw16c), Y in
 * nChw16c, for the default; 'any' for both otherwise. */
static int mode_descs(const struct node *n, enum conv_mode mode, dnnl_memory_desc_t *src,
		      dnnl_memory_desc_t *dst, struct graft_err *err)
{
	const struct value *x = n->in[0], *y = n->out[0];
	dnnl_dims_t xd = {0}, yd = {0};
	int rc;

	memcpy(xd, x->dims, sizeof(int64_t) * (size_t)x->rank);
	memcpy(yd, y->dims, sizeof(int64_t) * (size_t)y->rank);
	if (mode == MODE_DEFAULT && x->layout)
		*src = *(const dnnl_memory_desc_t *)x->layout;
	else if ((rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(src, x->rank, xd, dnnl_f32,
				mode == MODE_ANY ? dnnl_format_tag_any : conv_act_tag(x, 0)))))
		return rc;
	return ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(dst, y->rank, yd, dnnl_f32,
			    mode == MODE_ANY ? dnnl_format_tag_any : conv_act_tag(y, 0)));
}

/* One candidate being timed. */
struct conv_cand {
	struct conv_choice c;
	dnnl_primitive_desc_t pd;
	double us;
};

/* Adds the implementations oneDNN offers for (alg, mode) to cands, but for the reference
 * kernels and those already there (the same name on the same layouts). */
static void add_cands(const struct node *n, const struct conv_geom *g, dnnl_alg_kind_t alg,
		      enum conv_mode mode, const dnnl_memory_desc_t *wei_any,
		      const dnnl_memory_desc_t *bias, const_dnnl_primitive_attr_t attr,
		      struct conv_cand *cands, int *count)
{
	struct graft_err quiet = {0};
	dnnl_memory_desc_t src, dst;
	dnnl_convolution_desc_t d;
	dnnl_primitive_desc_iterator_t it;
	dnnl_engine_t e;

	if (mode_descs(n, mode, &src, &dst, &quiet) || onednn_get(n, &e, NULL, &quiet) ||
	    conv_desc(n, 0, alg, &g->w, &src, wei_any, bias, &dst, &d, &quiet) ||
	    dnnl_primitive_desc_iterator_create(&it, &d, attr, e, NULL) != dnnl_success)
		return;         /* (Winograd where oneDNN has none for this shape or CPU) */
	do {
		dnnl_primitive_desc_t pd = dnnl_primitive_desc_iterator_fetch(it);
		const char *name = pd ? onednn_impl_name(pd) : "ref";
		int dup = strncmp(name, "ref", 3) == 0 || strlen(name) >= sizeof(cands->c.impl);
		for (int i = 0; i < *count && !dup; i++)
			dup = strcmp(cands[i].c.impl, name) == 0 &&
			      onednn_md_same(dnnl_primitive_desc_query_md(cands[i].pd, dnnl_query_src_md, 0),
					     dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0)) &&
			      onednn_md_same(dnnl_primitive_desc_query_md(cands[i].pd, dnnl_query_dst_md, 0),
					     dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0));
		if (dup || *count == CONV_TUNE_MAX) {
			dnnl_primitive_desc_destroy(pd);
			continue;
		}
		struct conv_cand *c = &cands[(*count)++];
		c->c.alg = alg;
		c->c.mode = mode;
		strcpy(c->c.impl, name);
		c->pd = pd;
	} while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
	dnnl_primitive_desc_iterator_destroy(it);
}

/* What a timing run holds, freed together: memory objects over X as it is (xs), X in
 * the kernel's layout (xk, NULL when that is xs), W as stored (ws) and in the kernel's
 * layout, B, Y in the kernel's layout and Y plain (in the caller's buffer); their
 * buffers; the kernel and the reorders (NULL when not needed; rw only for a W that
 * changes between runs, as in training, where every run reorders it: a Winograd
 * kernel's weight transform then counts). */
struct tune_run {
	dnnl_memory_t xs, xk, ws, wk, bk, yk, yp;
	void *xk_buf, *wk_buf, *yk_buf;
	dnnl_primitive_t prim, rx, rw, ry;
};

static void tune_run_free(struct tune_run *t)
{
	dnnl_primitive_destroy(t->ry);
	dnnl_primitive_destroy(t->rw);
	dnnl_primitive_destroy(t->rx);
	dnnl_primitive_destroy(t->prim);
	dnnl_memory_destroy(t->yp);
	dnnl_memory_destroy(t->yk);
	dnnl_memory_destroy(t->bk);
	dnnl_memory_destroy(t->wk);
	dnnl_memory_destroy(t->ws);
	dnnl_memory_destroy(t->xk);
	dnnl_memory_destroy(t->xs);
	onednn_free(t->yk_buf);
	onednn_free(t->wk_buf);
	onednn_free(t->xk_buf);
}

/* A memory object of layout md over a new buffer *buf. */
static int tune_mem(const struct node *n, const dnnl_memory_desc_t *md, void **buf,
		    dnnl_memory_t *mem, struct graft_err *err)
{
	if (!(*buf = onednn_alloc(dnnl_memory_desc_get_size(md))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	return onednn_memory(n, mem, md, *buf, err);
}

/* Sets up candidate c's run on n's input as it is, Y plain into out. */
static int tune_setup(const struct node *n, const struct conv_cand *c, float *out,
		      struct tune_run *t, struct graft_err *err)
{
	const struct value *x = n->in[0], *w = n->in[1], *b = n->n_in == 3 ? n->in[2] : NULL;
	const struct value *y = n->out[0];
	const dnnl_memory_desc_t *src = dnnl_primitive_desc_query_md(c->pd, dnnl_query_src_md, 0);
	const dnnl_memory_desc_t *wei = dnnl_primitive_desc_query_md(c->pd, dnnl_query_weights_md, 0);
	const dnnl_memory_desc_t *dst = dnnl_primitive_desc_query_md(c->pd, dnnl_query_dst_md, 0);
	dnnl_memory_desc_t xmd, ymd, wmd, bmd, wany;
	struct conv_geom g;
	int rc;

	if (x->layout)
		xmd = *(const dnnl_memory_desc_t *)x->layout;
	else if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&xmd, x->rank, x->dims, dnnl_f32))))
		return rc;
	if ((rc = conv_geom(n, &g, err)) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&ymd, y->rank, y->dims, dnnl_f32))) ||
	    (rc = conv_wei_descs(n, &g, 0, dnnl_f32, &wmd, &wany, err)) ||
	    (b && (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&bmd, 1, b->dims, dnnl_f32)))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_primitive_create(&t->prim, c->pd))) ||
	    (rc = onednn_memory(n, &t->xs, &xmd, x->data, err)))
		return rc;
	if (!onednn_md_same(&xmd, src) &&
	    ((rc = tune_mem(n, src, &t->xk_buf, &t->xk, err)) ||
	     (rc = onednn_reorder_new(n, &xmd, src, &t->rx, err))))
		return rc;
	if ((rc = tune_mem(n, wei, &t->wk_buf, &t->wk, err)) ||
	    (rc = onednn_reorder_once(n, &wmd, w->data, wei, t->wk_buf, err)) ||
	    (!(w->flags & VALUE_CONST) && !onednn_md_same(&wmd, wei) &&
	     ((rc = onednn_memory(n, &t->ws, &wmd, w->data, err)) ||
	      (rc = onednn_reorder_new(n, &wmd, wei, &t->rw, err)))) ||
	    (b && (rc = onednn_memory(n, &t->bk, &bmd, b->data, err))) ||
	    (rc = tune_mem(n, dst, &t->yk_buf, &t->yk, err)) ||
	    (rc = onednn_memory(n, &t->yp, &ymd, out, err)))
		return rc;
	return onednn_reorder_new(n, dst, &ymd, &t->ry, err);
}

/* Times candidate c on n's input as it is, and leaves its Y, plain, in out (y's size).
 * c->us: the best of CONV_TUNE_RUNS runs after a warm-up, in microseconds, with X's
 * reorder into the kernel's layout and, unless Y may stay in it, Y's out of it. */
static int time_cand(const struct node *n, struct conv_cand *c, float *out, struct graft_err *err)
{
	int keep = (n->out[0]->flags & VALUE_BLOCKABLE) != 0, has_b = n->n_in == 3;
	struct tune_run t = {0};
	int rc = tune_setup(n, c, out, &t, err);
	dnnl_memory_t xk = t.xk ? t.xk : t.xs;
	dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, xk}, {DNNL_ARG_WEIGHTS, t.wk},
				   {DNNL_ARG_DST, t.yk}, {DNNL_ARG_BIAS, t.bk}};

	c->us = INFINITY;
	for (int r = 0; r <= CONV_TUNE_RUNS && !rc; r++) {
		double t0 = graft_now();
		if (!(rc = t.rx ? onednn_reorder_run(n, t.rx, t.xs, xk, err) : 0) &&
		    !(rc = t.rw ? onednn_reorder_run(n, t.rw, t.ws, t.wk, err) : 0) &&
		    !(rc = onednn_execute(n, t.prim, has_b ? 4 : 3, args, err)) &&
		    !(rc = t.ry && !keep ? onednn_reorder_run(n, t.ry, t.yk, t.yp, err) : 0) && r > 0)
			c->us = fmin(c->us, (graft_now() - t0) * 1e6);
	}
	if (!rc && t.ry && keep)
		rc = onednn_reorder_run(n, t.ry, t.yk, t.yp, err);
	else if (!rc && !t.ry)
		memcpy(out, t.yk_buf, value_numel(n->out[0]) * sizeof(float));
	tune_run_free(&t);
	return rc;
}

/* Largest |a - b| over the largest |b|, over count values. */
static double rel_diff(const float *a, const float *b, uint64_t count)
{
	double d = 0, m = 0;

	for (uint64_t i = 0; i < count; i++) {
		d = fmax(d, fabs((double)a[i] - b[i]));
		m = fmax(m, fabs((double)b[i]));
	}
	return m > 0 ? d / m : d;
}

/* Times every candidate for n's shape and returns the fastest whose result agrees with
 * the default's (the first candidate), or the default where none is clearly faster. */
static int conv_tune(const struct node *n, const struct conv_geom *g,
		     const dnnl_memory_desc_t *wei_any, const dnnl_memory_desc_t *bias,
		     const_dnnl_primitive_attr_t attr, struct conv_choice *best, double *best_us,
		     double *best_diff, struct graft_err *err)
{
	static const dnnl_alg_kind_t algs[] = {dnnl_convolution_direct, dnnl_convolution_winograd};
	struct conv_cand cands[CONV_TUNE_MAX];
	double diff[CONV_TUNE_MAX] = {0};
	uint64_t ny = value_numel(n->out[0]);
	float *ref = malloc(ny * sizeof(float) + 1), *out = malloc(ny * sizeof(float) + 1);
	int count = 0, rc = 0, pick = -1;

	if (!ref || !out) {
		free(ref);
		free(out);
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t a = 0; a < sizeof(algs) / sizeof(algs[0]); a++)
		for (int m = 0; m < MODE_COUNT; m++)
			add_cands(n, g, algs[a], (enum conv_mode)m, wei_any, bias, attr, cands, &count);
	for (int i = 0; i < count && !rc; i++) {
		struct graft_err quiet = {0};
		if (time_cand(n, &cands[i], i ? out : ref, &quiet))
			continue;       /* (a kernel that cannot run here: no candidate) */
		if (i && (diff[i] = rel_diff(out, ref, ny)) > CONV_TUNE_TOL)
			continue;
		if (pick < 0 || cands[i].us < cands[pick].us)
			pick = i;
	}
	if (pick > 0 && isfinite(cands[0].us) && cands[pick].us > CONV_TUNE_MARGIN * cands[0].us)
		pick = 0;       /* not clearly faster than the default */
	if (pick >= 0) {
		*best = cands[pick].c;
		*best_us = cands[pick].us;
		*best_diff = diff[pick];
	} else {
		rc = node_err(n, err, GRAFT_EDNNL, "no convolution kernel could be timed");
	}
	for (int i = 0; i < count; i++)
		dnnl_primitive_desc_destroy(cands[i].pd);
	free(ref);
	free(out);
	return rc;
}

/* The wisdom's choice for n's kernel in direction what (conv_shape_key), into *c, with
 * the key in key (empty: a shape too long to key, which runs the default).  1 when the
 * wisdom has a choice this build reads; 0 otherwise (*c then as the caller set it). */
static int wisdom_choice(const struct node *n, const char *what, const struct conv_geom *g,
			 struct conv_choice *c, char *key, size_t size)
{
	struct conv_choice known;
	const char *text;

	conv_shape_key(n, what, g, key, size);
	if (!*key || !(text = wisdom_find(n->wisdom, key)) || choice_parse(text, &known))
		return !*key;
	*c = known;
	return 1;
}

/* Adds what timing chose for key to n's wisdom. */
static int wisdom_keep(const struct node *n, const char *key, const struct conv_choice *c,
		       double us, double diff, struct graft_err *err)
{
	char text[128];

	choice_format(c, text, sizeof(text));
	return wisdom_add(n->wisdom, key, text, us, diff, err);
}

/* The kernel n runs: the wisdom's for its shape, or the fastest, timed now and added to
 * the wisdom.  0 with *c; *c's impl empty: the default. */
static int conv_choose(const struct node *n, const struct conv_geom *g,
		       const dnnl_memory_desc_t *wei_any, const dnnl_memory_desc_t *bias,
		       const_dnnl_primitive_attr_t attr, struct conv_choice *c,
		       struct graft_err *err)
{
	char key[512];
	double us = 0, diff = 0;
	int rc;

	memset(c, 0, sizeof(*c));
	c->alg = dnnl_convolution_direct;
	if (wisdom_choice(n, "fwd", g, c, key, sizeof(key)))
		return 0;
	if ((rc = conv_tune(n, g, wei_any, bias, attr, c, &us, &diff, err)))
		return rc;
	return wisdom_keep(n, key, c, us, diff, err);
}

/* Builds n's primitive and memory objects.  With n->pre (depthwise fusion, unless
 * s->apart), the primitive is pre's 1x1 convolution, reading pre's X, W and B, with n's
 * depthwise convolution as a post-op, and writes n's Y. */
static int conv_build(struct node *n, int transpose, struct graft_err *err)
{
	struct conv_state *s = n->priv;
	struct conv_geom g;
	const struct node *head = n->pre && !(s && s->apart) ? n->pre : n;
	struct value *x = head->in[0], *w = head->in[1];
	struct value *b = head->n_in == 3 ? head->in[2] : NULL;
	struct value *y = n->out[0], *hy = head->out[0];
	dnnl_memory_desc_t src_md, wei_md, bias_md, dst_md, src_any, dst_any, wei_any, hy_md;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	int blocked, rc;

	if ((rc = transpose ? convt_geom(head, &g, err) : conv_geom(head, &g, err)))
		return rc;
	if (!s && !(s = calloc(1, sizeof(*s))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	n->priv = s;

	if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&src_md, x->rank, x->dims, dnnl_f32))) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&dst_md, y->rank, y->dims, dnnl_f32))) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&hy_md, hy->rank, hy->dims, dnnl_f32))) ||
	    (rc = conv_wei_descs(n, &g, transpose, dnnl_f32, &wei_md, &wei_any, err)))
		return rc;
	if (b && (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&bias_md, 1, b->dims, dnnl_f32))))
		return rc;
	blocked = conv_want_blocked(&g, transpose);
	if (blocked) {
		dnnl_dims_t xd = {0}, yd = {0};
		memcpy(xd, x->dims, sizeof(int64_t) * (size_t)x->rank);
		memcpy(yd, hy->dims, sizeof(int64_t) * (size_t)hy->rank);
		if ((rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&src_any, x->rank, xd,
					dnnl_f32, conv_act_tag(x, transpose)))) ||
		    (rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&dst_any, hy->rank, yd,
					dnnl_f32, conv_act_tag(hy, transpose)))))
			return rc;
	}
	if ((rc = head != n ? dw_fused_attr(n, &attr, err) : onednn_act_attr(n, &attr, err)))
		return rc;
	/* The kernel the wisdom names or timing picks (a plain Conv; not a depthwise-fused
	 * pair, not ConvTranspose), else oneDNN's first choice. */
	struct conv_choice ch = {dnnl_convolution_direct, MODE_DEFAULT, ""};
	if (n->wisdom && !transpose && head == n && blocked &&
	    (rc = conv_choose(n, &g, &wei_any, b ? &bias_md : NULL, attr, &ch, err))) {
		dnnl_primitive_attr_destroy(attr);
		return rc;
	}
	rc = -1;
	if (x->layout)
		src_md = *(const dnnl_memory_desc_t *)x->layout;        /* X as it is */
	if (*ch.impl) {
		dnnl_memory_desc_t src_c, dst_c;
		struct graft_err quiet = {0};
		if (!(rc = mode_descs(n, ch.mode, &src_c, &dst_c, &quiet)))
			rc = conv_prim_new(n, 0, ch.alg, ch.impl, &g.w, &src_c, &wei_any,
					   b ? &bias_md : NULL, &dst_c, attr, &s->cp, &pd, &quiet);
	}
	/* X already in a blocked layout (its producer kept it): ask for exactly that, so no
	 * reorder is needed; should the primitive refuse it, let it pick and reorder.  A
	 * depthwise-fused pair takes only nChw16c as it is: given another layout (nhwc,
	 * which a tuned producer may leave), oneDNN 2.6 runs the pair apart through its
	 * reference fusion, six times slower on efficientnet_b0 at batch 1 than one
	 * reorder into nChw16c. */
	if (rc && x->layout && (head == n || !blocked || onednn_md_same(&src_md, &src_any))) {
		rc = conv_prim_new(n, transpose, dnnl_convolution_direct, NULL, &g.w, &src_md,
				   &wei_any, b ? &bias_md : NULL, blocked ? &dst_any : &hy_md, attr,
				   &s->cp, &pd, err);
	}
	if (rc)
		rc = conv_prim_new(n, transpose, dnnl_convolution_direct, NULL, &g.w,
				   blocked ? &src_any : &src_md, &wei_any, b ? &bias_md : NULL,
				   blocked ? &dst_any : &hy_md, attr, &s->cp, &pd, err);
	dnnl_primitive_attr_destroy(attr);
	if (!rc && head != n)
		rc = dw_fused_weights(n, s, pd, err);
	dnnl_primitive_desc_destroy(pd);
	if (rc)
		return rc;
	/* Y read only by Convs: it stays in the primitive's layout. */
	if (blocked && (y->flags & VALUE_BLOCKABLE) && !onednn_md_same(&dst_md, &s->cp.dst) &&
	    (rc = onednn_keep_layout(n, y, &s->cp.dst, err)))
		return rc;
	if (y->layout)
		dst_md = s->cp.dst;

	/* Weights: a constant W is put into the primitive's layout once. */
	if (onednn_md_same(&wei_md, &s->cp.wei)) {
		rc = onednn_memory(n, &s->wei, &s->cp.wei, w->data, err);
	} else if ((rc = own_memory(n, &s->wei, &s->cp.wei, &s->wei_buf, err))) {
		return rc;
	} else if (w->flags & VALUE_CONST) {
		rc = onednn_reorder_once(n, &wei_md, w->data, &s->cp.wei, s->wei_buf, err);
	} else if (!(rc = onednn_memory(n, &s->wei_user, &wei_md, w->data, err))) {
		rc = onednn_reorder_new(n, &wei_md, &s->cp.wei, &s->wei_reorder, err);
	}
	if (rc || (b && (rc = onednn_memory(n, &s->bias, &bias_md, b->data, err))))
		return rc;
	if ((rc = onednn_bind_activation(n, &src_md, &s->cp.src, x->data, 1, &s->src, &s->src_user,
				  &s->src_reorder, &s->src_bytes, err)))
		return rc;
	return onednn_bind_activation(n, &dst_md, &s->cp.dst, y->data, 0, &s->dst, &s->dst_user,
			       &s->dst_reorder, &s->dst_bytes, err);
}

/* conv_build, falling back from a depthwise fusion oneDNN refuses (a CPU without its
 * kernels) to running pre and n apart, pre into a buffer for its own output. */
static int conv_prepare(struct node *n, int transpose, struct graft_err *err)
{
	struct value *mid = n->pre ? n->pre->out[0] : NULL;
	struct conv_state *s;
	int rc = conv_build(n, transpose, err);

	if (rc != GRAFT_EDNNL || !n->pre)
		return rc;
	conv_release(n);
	if (!(s = calloc(1, sizeof(*s))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	s->apart = 1;
	n->priv = s;
	if (!mid->data) {
		mid->nbytes = (size_t)value_numel(mid) * sizeof(float);
		if (!(mid->data = calloc(1, mid->nbytes ? mid->nbytes : 1)))
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	}
	return conv_build(n, transpose, err);
}

static int conv_run_common(struct node *n, int transpose, struct graft_err *err)
{
	struct conv_state *s;
	const struct node *head;
	struct value *x, *w, *b, *y = n->out[0];
	dnnl_exec_arg_t args[6];
	int nargs = 0, rc;

	if (value_numel(y) == 0)
		return 0;
	if (!n->priv && (rc = conv_prepare(n, transpose, err))) {
		conv_release(n);
		return rc;
	}
	s = n->priv;
	if (s->apart && (rc = conv_run_common(n->pre, 0, err)))
		return rc;
	head = n->pre && !s->apart ? n->pre : n;
	x = head->in[0];
	w = head->in[1];
	b = head->n_in == 3 ? head->in[2] : NULL;
	/* Values keep their buffers within a plan, but graph inputs change per run, and
	 * scratch may move whenever another node grows it. */
	if ((rc = onednn_rebind_activation(n, s->src, s->src_user, s->src_bytes, 0, x->data, err)) ||
	    (rc = onednn_rebind_activation(n, s->dst, s->dst_user, s->dst_bytes, 1, y->data, err)))
		return rc;
	if (s->wei_user ? (rc = onednn_rebind(n, s->wei_user, w->data, err))
			: !s->wei_buf && (rc = onednn_rebind(n, s->wei, w->data, err)))
		return rc;
	if (b && (rc = onednn_rebind(n, s->bias, b->data, err)))
		return rc;
	if ((s->src_reorder &&
	     (rc = onednn_reorder_run(n, s->src_reorder, s->src_user, s->src, err))) ||
	    (s->wei_reorder &&
	     (rc = onednn_reorder_run(n, s->wei_reorder, s->wei_user, s->wei, err))))
		return rc;
	args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, s->src};
	args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, s->wei};
	if (b)
		args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->bias};
	args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, s->dst};
	if (s->dw_wei) {
		args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS,
						  s->dw_wei};
		args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS,
						  s->dw_bias};
	}
	if ((rc = onednn_execute(n, s->cp.prim, nargs, args, err)))
		return rc;
	if (s->dst_reorder)
		return onednn_reorder_run(n, s->dst_reorder, s->dst, s->dst_user, err);
	return 0;
}

static int conv_run(struct node *n, struct graft_err *err)
{
	return conv_run_common(n, 0, err);
}

static int convt_run(struct node *n, struct graft_err *err)
{
	return conv_run_common(n, 1, err);
}

/* ---- backward -------------------------------------------------------------------------- */

/*
 * Conv's backward runs oneDNN's backward-weights convolution (which gives the bias
 * gradient too) and its backward-data convolution, on the layouts they choose, as the
 * forward does: plain X and dY are reordered in, dW and dX out, through scratch.
 * Backward-data runs only when X needs a gradient, so nothing is spent below the lowest
 * trainable parameter or on a frozen input.  The primitives are made on the first
 * backward after a plan, with the forward_training primitive descriptor oneDNN wants as
 * a hint.  Nodes in the backward region are never fused and their values are plain.
 */

/* A plain activation or gradient that a backward primitive sees in the layout it chose. */
struct bwd_act {
	dnnl_memory_t mem;      /* what the primitive reads or writes */
	dnnl_memory_t user;     /* the plain value when the layouts differ (mem then lives in
				 * scratch of bytes, and reorder goes between the two) */
	dnnl_primitive_t reorder;
	size_t bytes;
};

struct conv_bwd {
	dnnl_primitive_t wprim, dprim;  /* backward weights (and bias), backward data */
	struct bwd_act x, dy_w;         /* wprim's X and dY */
	struct bwd_act dy_d, dx;        /* dprim's dY (unless dy_shared) and dX */
	int dy_shared;                  /* dprim reads dY in wprim's layout: one reorder */
	dnnl_memory_t dw, dw_user, db;  /* dW as wprim writes it, gin[1] plain, gin[2] */
	void *dw_buf;                   /* dw's buffer when it is not gin[1]'s */
	dnnl_primitive_t dw_reorder;
	dnnl_memory_t w, w_user;        /* dprim's W; NULL w: the forward's, same layout */
	void *w_buf;                    /* w's buffer when it is not W's */
	dnnl_primitive_t w_reorder;     /* W into w_buf on every run (W trains) */
};

/* What both backward primitives are made from. */
struct conv_descs {
	dnnl_dims_t strides, dil, pl, pr;
	dnnl_memory_desc_t x, y, wei, bias;     /* plain */
	dnnl_memory_desc_t x_any, y_any, wei_any;
};

static void bwd_act_free(struct bwd_act *a)
{
	dnnl_primitive_destroy(a->reorder);
	dnnl_memory_destroy(a->user);
	dnnl_memory_destroy(a->mem);
}

static void conv_bwd_free(struct conv_bwd *b)
{
	if (!b)
		return;
	dnnl_primitive_destroy(b->w_reorder);
	dnnl_primitive_destroy(b->dw_reorder);
	dnnl_primitive_destroy(b->dprim);
	dnnl_primitive_destroy(b->wprim);
	dnnl_memory_destroy(b->w_user);
	dnnl_memory_destroy(b->w);
	dnnl_memory_destroy(b->db);
	dnnl_memory_destroy(b->dw_user);
	dnnl_memory_destroy(b->dw);
	bwd_act_free(&b->dx);
	bwd_act_free(&b->dy_d);
	bwd_act_free(&b->dy_w);
	bwd_act_free(&b->x);
	onednn_free(b->w_buf);
	onednn_free(b->dw_buf);
	free(b);
}

static int bwd_act_new(const struct node *n, struct bwd_act *a, const dnnl_memory_desc_t *user,
		       const dnnl_memory_desc_t *prim, void *data, int to_prim,
		       struct graft_err *err)
{
	return onednn_bind_activation(n, user, prim, data, to_prim, &a->mem, &a->user, &a->reorder,
			       &a->bytes, err);
}

/* Points a at this run's plain data (and its scratch slot, when the layouts differ) and,
 * for an input (in), reorders it into the primitive's layout. */
static int bwd_act_bind(const struct node *n, struct bwd_act *a, int slot, void *data, int in,
			struct graft_err *err)
{
	void *buf;
	int rc;

	if (!a->user)
		return onednn_rebind(n, a->mem, data, err);
	if (!(buf = onednn_scratch(slot, a->bytes)))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	if ((rc = onednn_rebind(n, a->user, data, err)) ||
	    (rc = onednn_rebind(n, a->mem, buf, err)))
		return rc;
	return in && a->reorder ? onednn_reorder_run(n, a->reorder, a->user, a->mem, err) : 0;
}

/* The layout asked for activations and their gradients around the backward primitives:
 * oneDNN's choice, nChw16c (jit:avx512_core for both directions, jit_dw for depthwise,
 * jit_1x1) where it has AVX-512.  With 2 threads, batch 8, resnet18's 3x3 convolutions
 * (64 channels at 56x56 to 512 at 7x7) take 14-15 ms for backward data and weights, about
 * 1 ms of it the reorders, against 16-29 ms in PyTorch 1.13. */
static dnnl_format_tag_t conv_bwd_tag(const struct value *v)
{
	(void)v;
	return dnnl_format_tag_any;
}

/* ---- kernel choice for the backward convolutions --------------------------------------- */

/*
 * As for the forward (conv_tune), with a wisdom each backward convolution shape runs the
 * kernel timed fastest for it here: oneDNN 2.6 offers, for f32, its jit kernels, im2col
 * + GEMM (gemm:jit) and, for 3x3 stride 1 on AVX-512, Winograd, in both directions.  A
 * candidate is timed on the first backward's real X, W and dY, with the reorders it
 * needs from and to the plain values of the backward region; its dX (backward data) or
 * dW (backward weights) must agree with the default kernel's to CONV_TUNE_TOL, and it
 * must beat the default by CONV_TUNE_MARGIN.
 */
enum bwd_kind { BWD_DATA, BWD_WEIGHTS };

/* The descriptor of a backward convolution of kind by algorithm alg (bias: its gradient
 * too, backward weights only). */
static int bwd_desc(const struct node *n, enum bwd_kind kind, dnnl_alg_kind_t alg,
		    const struct conv_descs *c, int bias, dnnl_convolution_desc_t *d,
		    struct graft_err *err)
{
	if (kind == BWD_DATA)
		return ONEDNN_CHECK(n, err, dnnl_dilated_convolution_backward_data_desc_init(d, alg,
				    &c->x_any, &c->wei_any, &c->y_any, c->strides, c->dil, c->pl,
				    c->pr));
	return ONEDNN_CHECK(n, err, dnnl_dilated_convolution_backward_weights_desc_init(d, alg,
			    &c->x_any, &c->wei_any, bias ? &c->bias : NULL, &c->y_any, c->strides,
			    c->dil, c->pl, c->pr));
}

/* The forward_training primitive descriptor by alg that backward ones need as a hint. */
static int bwd_hint(const struct node *n, dnnl_alg_kind_t alg, const struct conv_descs *c,
		    int bias, dnnl_primitive_desc_t *hint, struct graft_err *err)
{
	dnnl_convolution_desc_t d;
	int rc;

	*hint = NULL;
	if ((rc = ONEDNN_CHECK(n, err, dnnl_dilated_convolution_forward_desc_init(&d,
				dnnl_forward_training, alg, &c->x_any, &c->wei_any,
				bias ? &c->bias : NULL, &c->y_any, c->strides, c->dil, c->pl, c->pr))))
		return rc;
	return onednn_hint_pd(n, &d, hint, err);
}

/* What a backward timing run holds: the operands in the kernel's layouts (a, b: its two
 * inputs; out: its result), the plain values they come from and go to, the reorders
 * between (NULL when the layouts agree), and the bias gradient. */
struct bwd_run {
	dnnl_memory_t mem[3], user[3], db;
	void *buf[3], *db_buf;
	dnnl_primitive_t prim, reorder[3];
};

static void bwd_run_free(struct bwd_run *t)
{
	dnnl_primitive_destroy(t->prim);
	for (int i = 0; i < 3; i++) {
		dnnl_primitive_destroy(t->reorder[i]);
		dnnl_memory_destroy(t->mem[i]);
		dnnl_memory_destroy(t->user[i]);
		onednn_free(t->buf[i]);
	}
	dnnl_memory_destroy(t->db);
	onednn_free(t->db_buf);
}

/* Operand i of a timing run: layout md in the kernel, plain (layout plain) at data; the
 * reorder runs into the kernel for an input, out of it for the result. */
static int bwd_operand(const struct node *n, struct bwd_run *t, int i,
		       const dnnl_memory_desc_t *md, const dnnl_memory_desc_t *plain, void *data,
		       int in, struct graft_err *err)
{
	int rc;

	if ((rc = onednn_memory(n, &t->user[i], plain, data, err)))
		return rc;
	if (onednn_md_same(md, plain))
		return onednn_memory(n, &t->mem[i], md, data, err);
	if ((rc = tune_mem(n, md, &t->buf[i], &t->mem[i], err)))
		return rc;
	return in ? onednn_reorder_new(n, plain, md, &t->reorder[i], err)
		  : onednn_reorder_new(n, md, plain, &t->reorder[i], err);
}

/* Times backward candidate pd of kind on n's X, W and dY, its dX or dW left plain in
 * out; *us: the best of CONV_TUNE_RUNS runs after a warm-up, with the reorders of its
 * inputs and output, W's included where W trains (it changes every step; a constant W
 * is reordered once). */
static int bwd_time(const struct node *n, enum bwd_kind kind, const_dnnl_primitive_desc_t pd,
		    const struct conv_descs *c, float *out, double *us, struct graft_err *err)
{
	struct bwd_run t = {0};
	/* Per kind, the kernel's two inputs and its result: what oneDNN calls them */
	static const struct {
		dnnl_query_t md;
		int arg;
	} ops[2][3] = {
		[BWD_DATA] = {{dnnl_query_diff_dst_md, DNNL_ARG_DIFF_DST},
			      {dnnl_query_weights_md, DNNL_ARG_WEIGHTS},
			      {dnnl_query_diff_src_md, DNNL_ARG_DIFF_SRC}},
		[BWD_WEIGHTS] = {{dnnl_query_src_md, DNNL_ARG_SRC},
				 {dnnl_query_diff_dst_md, DNNL_ARG_DIFF_DST},
				 {dnnl_query_diff_weights_md, DNNL_ARG_DIFF_WEIGHTS}},
	};
	const dnnl_memory_desc_t *md[3], *plain[3];
	void *data[3];
	int nargs, rc;
	int has_b = kind == BWD_WEIGHTS && n->n_in == 3 && n->gin[2];

	*us = INFINITY;
	for (int i = 0; i < 3; i++)
		md[i] = dnnl_primitive_desc_query_md(pd, ops[kind][i].md, 0);
	if (kind == BWD_DATA) {
		plain[0] = &c->y;
		plain[1] = &c->wei;
		plain[2] = &c->x;
		data[0] = n->out[0]->grad->data;
		data[1] = n->in[1]->data;
	} else {
		plain[0] = &c->x;
		plain[1] = &c->y;
		plain[2] = &c->wei;
		data[0] = n->in[0]->data;
		data[1] = n->out[0]->grad->data;
	}
	data[2] = out;
	rc = ONEDNN_CHECK(n, err, dnnl_primitive_create(&t.prim, pd));
	for (int i = 0; i < 3 && !rc; i++)
		rc = bwd_operand(n, &t, i, md[i], plain[i], data[i], i < 2, err);
	int w_fixed = kind == BWD_DATA && (n->in[1]->flags & VALUE_CONST);
	if (!rc && w_fixed && t.reorder[1])
		rc = onednn_reorder_run(n, t.reorder[1], t.user[1], t.mem[1], err);
	if (!rc && has_b)
		rc = tune_mem(n, &c->bias, &t.db_buf, &t.db, err);
	dnnl_exec_arg_t args[4] = {{ops[kind][0].arg, t.mem[0]}, {ops[kind][1].arg, t.mem[1]},
				   {ops[kind][2].arg, t.mem[2]}, {DNNL_ARG_DIFF_BIAS, t.db}};
	nargs = has_b ? 4 : 3;
	for (int r = 0; r <= CONV_TUNE_RUNS && !rc; r++) {
		double t0 = graft_now();
		if (!(rc = t.reorder[0] ? onednn_reorder_run(n, t.reorder[0], t.user[0], t.mem[0], err) : 0) &&
		    !(rc = !w_fixed && t.reorder[1]
			   ? onednn_reorder_run(n, t.reorder[1], t.user[1], t.mem[1], err) : 0) &&
		    !(rc = onednn_execute(n, t.prim, nargs, args, err)) &&
		    !(rc = t.reorder[2] ? onednn_reorder_run(n, t.reorder[2], t.mem[2], t.user[2], err) : 0) &&
		    r > 0)
			*us = fmin(*us, (graft_now() - t0) * 1e6);
	}
	bwd_run_free(&t);
	return rc;
}

/* Times every backward candidate of kind for n's shape (hints: the forward_training
 * descriptors by direct and Winograd, NULL where there is none) and returns the fastest
 * that agrees with the default (the first) and beats it by CONV_TUNE_MARGIN. */
static int bwd_tune(const struct node *n, enum bwd_kind kind, const struct conv_descs *c,
		    int bias, dnnl_primitive_desc_t hints[2], struct conv_choice *best,
		    double *best_us, double *best_diff, struct graft_err *err)
{
	static const dnnl_alg_kind_t algs[2] = {dnnl_convolution_direct, dnnl_convolution_winograd};
	uint64_t count = value_numel(kind == BWD_DATA ? n->in[0] : n->in[1]);
	float *ref = malloc(count * sizeof(float) + 1), *out = malloc(count * sizeof(float) + 1);
	double ref_us = INFINITY;
	int found = 0, rc = 0;
	dnnl_engine_t e;

	if (!ref || !out || (rc = onednn_get(n, &e, NULL, err))) {
		free(ref);
		free(out);
		return rc ? rc : node_err(n, err, GRAFT_ENOMEM, "out of memory");
	}
	*best_us = INFINITY;
	for (int a = 0; a < 2; a++) {
		struct graft_err quiet = {0};
		dnnl_convolution_desc_t d;
		dnnl_primitive_desc_iterator_t it;
		if (!hints[a] || bwd_desc(n, kind, algs[a], c, bias, &d, &quiet) ||
		    dnnl_primitive_desc_iterator_create(&it, &d, NULL, e, hints[a]) != dnnl_success)
			continue;
		do {
			dnnl_primitive_desc_t pd = dnnl_primitive_desc_iterator_fetch(it);
			const char *name = pd ? onednn_impl_name(pd) : "ref";
			double us, diff = 0;
			if (strncmp(name, "ref", 3) && strlen(name) < sizeof(best->impl) &&
			    !bwd_time(n, kind, pd, c, found ? out : ref, &us, &quiet) &&
			    (!found || (diff = rel_diff(out, ref, count)) <= CONV_TUNE_TOL)) {
				if (!found)
					ref_us = us;
				if (!found || (us < *best_us && us <= CONV_TUNE_MARGIN * ref_us)) {
					best->alg = algs[a];
					best->mode = MODE_ANY;
					strcpy(best->impl, name);
					*best_us = us;
					*best_diff = diff;
				}
				found = 1;
			}
			dnnl_primitive_desc_destroy(pd);
		} while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
		dnnl_primitive_desc_iterator_destroy(it);
	}
	free(ref);
	free(out);
	return found ? 0 : node_err(n, err, GRAFT_EDNNL, "no backward convolution kernel could "
				    "be timed");
}

/* The backward kernel of kind that n runs: the wisdom's for its shape, or timed now and
 * added.  *c's impl empty: the default. */
static int bwd_choose(const struct node *n, enum bwd_kind kind, const struct conv_geom *g,
		      const struct conv_descs *c, int bias, dnnl_primitive_desc_t hints[2],
		      struct conv_choice *ch, struct graft_err *err)
{
	char key[512];
	double us = 0, diff = 0;
	int rc;

	memset(ch, 0, sizeof(*ch));
	ch->alg = dnnl_convolution_direct;
	ch->mode = MODE_ANY;
	if (wisdom_choice(n, kind == BWD_DATA ? "bwd-data" : "bwd-weights", g, ch, key, sizeof(key)))
		return 0;
	if ((rc = bwd_tune(n, kind, c, bias, hints, ch, &us, &diff, err)))
		return rc;
	return wisdom_keep(n, key, ch, us, diff, err);
}

/* n's backward primitive of kind as ch says (hints: the forward_training descriptors by
 * direct and Winograd), or oneDNN's first choice where that fails: a wisdom naming a
 * kernel this oneDNN does not offer.  *pd comes back for the caller to destroy. */
static int bwd_prim_new(const struct node *n, enum bwd_kind kind, const struct conv_descs *c,
			int bias, dnnl_primitive_desc_t hints[2], const struct conv_choice *ch,
			dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd, struct graft_err *err)
{
	const_dnnl_primitive_desc_t hint = ch->alg == dnnl_convolution_winograd ? hints[1] : hints[0];
	dnnl_convolution_desc_t d;
	int rc;

	if (*ch->impl && hint) {
		struct graft_err quiet = {0};
		if (!bwd_desc(n, kind, ch->alg, c, bias, &d, &quiet) &&
		    !onednn_primitive_bwd(n, &d, hint, ch->impl, prim, pd, &quiet))
			return 0;
	}
	if ((rc = bwd_desc(n, kind, dnnl_convolution_direct, c, bias, &d, err)))
		return rc;
	return onednn_primitive_bwd(n, &d, hints[0], NULL, prim, pd, err);
}

static int conv_bwd_weights_new(struct node *n, struct conv_bwd *b, const struct conv_descs *c,
				dnnl_primitive_desc_t hints[2], const struct conv_choice *ch,
				struct graft_err *err)
{
	struct value *gw = n->gin[1], *gb = n->n_in == 3 ? n->gin[2] : NULL;
	dnnl_memory_desc_t src, dwei, ddst;
	dnnl_primitive_desc_t pd = NULL;
	int rc;

	if ((rc = bwd_prim_new(n, BWD_WEIGHTS, c, gb != NULL, hints, ch, &b->wprim, &pd, err)))
		return rc;
	src = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
	dwei = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
	ddst = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
	dnnl_primitive_desc_destroy(pd);
	if ((rc = bwd_act_new(n, &b->x, &c->x, &src, n->in[0]->data, 1, err)) ||
	    (rc = bwd_act_new(n, &b->dy_w, &c->y, &ddst, n->out[0]->grad->data, 1, err)))
		return rc;
	/* dW straight into gin[1] when it is plain; else into a buffer and reordered out (or
	 * dropped, when only the bias trains). */
	if (gw && onednn_md_same(&c->wei, &dwei))
		rc = onednn_memory(n, &b->dw, &dwei, gw->data, err);
	else if (!(rc = own_memory(n, &b->dw, &dwei, &b->dw_buf, err)) && gw &&
		 !(rc = onednn_memory(n, &b->dw_user, &c->wei, gw->data, err)))
		rc = onednn_reorder_new(n, &dwei, &c->wei, &b->dw_reorder, err);
	if (!rc && gb)
		rc = onednn_memory(n, &b->db, &c->bias, gb->data, err);
	return rc;
}

static int conv_bwd_data_new(struct node *n, const struct conv_state *s, struct conv_bwd *b,
			     const struct conv_descs *c, dnnl_primitive_desc_t hints[2],
			     const struct conv_choice *ch, struct graft_err *err)
{
	struct value *w = n->in[1];
	dnnl_memory_desc_t dsrc, wei, ddst;
	dnnl_primitive_desc_t pd = NULL;
	int rc;

	if ((rc = bwd_prim_new(n, BWD_DATA, c, 0, hints, ch, &b->dprim, &pd, err)))
		return rc;
	dsrc = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
	wei = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	ddst = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
	dnnl_primitive_desc_destroy(pd);
	if (b->wprim) {
		const dnnl_memory_desc_t *md = NULL;
		if ((rc = ONEDNN_CHECK(n, err, dnnl_memory_get_memory_desc(b->dy_w.mem, &md))))
			return rc;
		b->dy_shared = onednn_md_same(md, &ddst);
	}
	if ((!b->dy_shared &&
	     (rc = bwd_act_new(n, &b->dy_d, &c->y, &ddst, n->out[0]->grad->data, 1, err))) ||
	    (rc = bwd_act_new(n, &b->dx, &c->x, &dsrc, n->gin[0]->data, 0, err)))
		return rc;
	/* W: the forward's copy when it has this layout (the forward ran on the same W), W
	 * itself when plain will do, else W reordered into a buffer (once when constant). */
	if (onednn_md_same(&wei, &s->cp.wei))
		return 0;
	if (onednn_md_same(&wei, &c->wei))
		return onednn_memory(n, &b->w, &wei, w->data, err);
	if ((rc = own_memory(n, &b->w, &wei, &b->w_buf, err)))
		return rc;
	if (w->flags & VALUE_CONST)
		return onednn_reorder_once(n, &c->wei, w->data, &wei, b->w_buf, err);
	if ((rc = onednn_memory(n, &b->w_user, &c->wei, w->data, err)))
		return rc;
	return onednn_reorder_new(n, &c->wei, &wei, &b->w_reorder, err);
}

static int conv_bwd_new(struct node *n, struct conv_state *s, struct graft_err *err)
{
	struct value *x = n->in[0], *y = n->out[0];
	int has_b = n->n_in == 3 && n->in[2], want_w = n->gin[1] || (has_b && n->gin[2]);
	dnnl_dims_t xd = {0}, yd = {0};
	struct conv_descs c;
	struct conv_geom g;
	struct conv_choice wch = {dnnl_convolution_direct, MODE_ANY, ""}, dch = wch;
	dnnl_primitive_desc_t hints[2] = {NULL, NULL};   /* direct, Winograd */
	int rc;

	if ((rc = conv_geom(n, &g, err)))
		return rc;
	if (!(s->bwd = calloc(1, sizeof(*s->bwd))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	memset(&c, 0, sizeof(c));
	window_dims(&g.w, c.strides, c.dil, c.pl, c.pr);
	memcpy(xd, x->dims, sizeof(int64_t) * (size_t)x->rank);
	memcpy(yd, y->dims, sizeof(int64_t) * (size_t)y->rank);
	if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&c.x, x->rank, x->dims, dnnl_f32))) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&c.y, y->rank, y->dims, dnnl_f32))) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&c.bias, 1, &g.out_ch, dnnl_f32))) ||
	    (rc = conv_wei_descs(n, &g, 0, dnnl_f32, &c.wei, &c.wei_any, err)) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&c.x_any, x->rank, xd,
					dnnl_f32, conv_bwd_tag(x)))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&c.y_any, y->rank, yd,
					dnnl_f32, conv_bwd_tag(y)))) ||
	    (rc = bwd_hint(n, dnnl_convolution_direct, &c, has_b, &hints[0], err)))
		return rc;
	/* The kernels the wisdom names or timing picks, else oneDNN's first choices; a
	 * Winograd hint only where oneDNN has Winograd for the shape. */
	if (n->wisdom) {
		struct graft_err quiet = {0};
		bwd_hint(n, dnnl_convolution_winograd, &c, has_b, &hints[1], &quiet);
		if ((want_w && (rc = bwd_choose(n, BWD_WEIGHTS, &g, &c, has_b, hints, &wch, err))) ||
		    (n->gin[0] && (rc = bwd_choose(n, BWD_DATA, &g, &c, 0, hints, &dch, err))))
			goto out;
	}
	if (want_w)
		rc = conv_bwd_weights_new(n, s->bwd, &c, hints, &wch, err);
	if (!rc && n->gin[0])
		rc = conv_bwd_data_new(n, s, s->bwd, &c, hints, &dch, err);
out:
	dnnl_primitive_desc_destroy(hints[0]);
	dnnl_primitive_desc_destroy(hints[1]);
	return rc;
}

static int conv_bwd_weights_run(struct node *n, struct conv_bwd *b, struct graft_err *err)
{
	struct value *gw = n->gin[1], *gb = n->n_in == 3 ? n->gin[2] : NULL;
	dnnl_exec_arg_t args[4];
	int nargs = 0, rc;

	if ((rc = bwd_act_bind(n, &b->x, 0, n->in[0]->data, 1, err)) ||
	    (rc = bwd_act_bind(n, &b->dy_w, 1, n->out[0]->grad->data, 1, err)) ||
	    (gw && (rc = onednn_rebind(n, b->dw_user ? b->dw_user : b->dw, gw->data, err))) ||
	    (gb && (rc = onednn_rebind(n, b->db, gb->data, err))))
		return rc;
	args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, b->x.mem};
	args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, b->dy_w.mem};
	args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_WEIGHTS, b->dw};
	if (gb)
		args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, b->db};
	if ((rc = onednn_execute(n, b->wprim, nargs, args, err)))
		return rc;
	return b->dw_reorder ? onednn_reorder_run(n, b->dw_reorder, b->dw, b->dw_user, err) : 0;
}

static int conv_bwd_data_run(struct node *n, struct conv_state *s, struct conv_bwd *b,
			     struct graft_err *err)
{
	void *w = n->in[1]->data;
	int rc;

	/* dY: already in scratch slot 1 in this layout when conv_bwd_weights_run put it there */
	if ((!b->dy_shared &&
	     (rc = bwd_act_bind(n, &b->dy_d, 3, n->out[0]->grad->data, 1, err))) ||
	    (rc = bwd_act_bind(n, &b->dx, 2, n->gin[0]->data, 0, err)))
		return rc;
	if (b->w_reorder ? (rc = onednn_rebind(n, b->w_user, w, err)) ||
				(rc = onednn_reorder_run(n, b->w_reorder, b->w_user, b->w, err))
			 : b->w && !b->w_buf && (rc = onednn_rebind(n, b->w, w, err)))
		return rc;
	dnnl_exec_arg_t args[3] = {
		{DNNL_ARG_DIFF_DST, b->dy_shared ? b->dy_w.mem : b->dy_d.mem},
		{DNNL_ARG_WEIGHTS, b->w ? b->w : s->wei},
		{DNNL_ARG_DIFF_SRC, b->dx.mem},
	};
	if ((rc = onednn_execute(n, b->dprim, 3, args, err)))
		return rc;
	return b->dx.reorder ? onednn_reorder_run(n, b->dx.reorder, b->dx.mem, b->dx.user, err) : 0;
}

static int conv_backward(struct node *n, struct graft_err *err)
{
	struct conv_state *s = n->priv;
	int rc;

	if (!n->out[0]->grad)
		return 0;
	if (n->pre || n->act.kind != FUSED_NONE || n->in[0]->layout)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "no backward for a fused Conv");
	if (value_numel(n->out[0]) == 0 || value_numel(n->in[0]) == 0) {
		for (size_t k = 0; k < n->n_in; k++)
			if (n->gin[k])
				memset(n->gin[k]->data, 0, n->gin[k]->nbytes);
		return 0;
	}
	if (!s)
		return node_err(n, err, GRAFT_EINVAL, "backward before a forward run");
	if (!s->bwd && (rc = conv_bwd_new(n, s, err))) {
		conv_bwd_free(s->bwd);
		s->bwd = NULL;
		return rc;
	}
	if (s->bwd->wprim && (rc = conv_bwd_weights_run(n, s->bwd, err)))
		return rc;
	return s->bwd->dprim ? conv_bwd_data_run(n, s, s->bwd, err) : 0;
}

/* W in the primitive's layout (conv_build: once for a constant W, per run for one that
 * trains), about W's size, and a fused depthwise W likewise. */
static uint64_t conv_plan_bytes(const struct node *n)
{
	uint64_t bytes = n->n_in > 1 && n->in[1] ? value_numel(n->in[1]) * sizeof(float) : 0;

	if (n->pre && n->pre->n_in > 1 && n->pre->in[1])
		bytes += value_numel(n->pre->in[1]) * sizeof(float);
	return bytes;
}

static const struct op_def op_conv = {"Conv", conv_infer, conv_run, conv_release,
				      OP_FUSES_ACT | OP_BLOCKED_IO, 0};
static const struct op_def op_conv_transpose = {"ConvTranspose", convt_infer, convt_run,
						conv_release, OP_FUSES_ACT | OP_BLOCKED_IO, 0};
static const struct mem_def mem_conv = {"Conv", conv_plan_bytes};
static const struct mem_def mem_conv_transpose = {"ConvTranspose", conv_plan_bytes};
const struct mem_def *const ops_conv_mem[] = {&mem_conv, &mem_conv_transpose, NULL};

const struct op_def *const ops_conv[] = {&op_conv, &op_conv_transpose, NULL};

static const struct grad_def grad_conv = {"Conv", conv_backward};

const struct grad_def *const ops_conv_grad[] = {&grad_conv, NULL};
