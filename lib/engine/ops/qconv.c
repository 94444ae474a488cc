/*
 * qconv.c: QLinearConv (opset 10), the convolution of 8-bit tensors,
 *
 *   y = saturate(round_half_even(acc * x_scale * w_scale / y_scale) + y_zero_point)
 *   acc = B + sum (x - x_zero_point) * (w - w_zero_point)      (exact, int32)
 *
 * with w_scale (and w_zero_point) per tensor or per output channel.  The executor also
 * turns the QDQ form of a quantized convolution, DequantizeLinear(x) and
 * DequantizeLinear(w) into a Conv whose result goes only to a QuantizeLinear (what
 * graft-quantize and ONNX Runtime's quantizer write), into one of these nodes (net.c,
 * fuse_qdq_conv), possibly with a Relu it fused (act): ONNX Runtime runs that pattern
 * as QLinearConv too, so both give the same integers.
 *
 * Two kernels:
 *  - oneDNN's int8 convolution (VNNI where the CPU has it), when W is int8 with zero
 *    zero points (symmetric weights, as every QDQ quantizer writes them), B int32, and
 *    the scales and zero points are plan-time constants: acc in int32, then in float
 *    acc * (x_scale * w_scale / y_scale), the Relu, round half to even, + y_zero_point,
 *    saturated.  X and Y take the layouts it prefers (nhwc), kept between two such
 *    nodes as the float convolutions keep theirs (conv.c).
 *  - a reference loop in plain C for the rest (uint8 W, nonzero W zero points, scales
 *    that change per run): the same float steps after an exact int32 sum, slow.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dnnl_util.h"

/* QLinearConv's inputs. */
enum { QX, QX_SCALE, QX_ZP, QW, QW_SCALE, QW_ZP, QY_SCALE, QY_ZP, QB, QIN_COUNT };

static const struct value *qin(const struct node *n, int k)
{
	return (size_t)k < n->n_in ? n->in[k] : NULL;
}

static int is_8bit(int dtype)
{
	return dtype == GRAFT_UINT8 || dtype == GRAFT_INT8;
}

/* Checks a scale (float) and its zero point (the quantized tensor's type, or absent):
 * each one value, or count values (one per output channel, for w). */
static int check_qparams(const struct node *n, int scale, int zp, int dtype, int64_t count,
			 const char *what, struct graft_err *err)
{
	const struct value *s = qin(n, scale), *z = qin(n, zp);
	uint64_t ns = s ? value_numel(s) : 0, nz = z ? value_numel(z) : 1;
	const char *per = count > 1 ? " or one per output channel" : "";

	if (!s || s->dtype != GRAFT_FLOAT || (ns != 1 && ns != (uint64_t)count) || s->rank > 1)
		return node_err(n, err, GRAFT_EINVAL, "%s's scale must be a float scalar%s", what,
				per);
	if (z && (z->dtype != dtype || (nz != 1 && nz != (uint64_t)count) || z->rank > 1))
		return node_err(n, err, GRAFT_EINVAL, "%s's zero point must be a %s scalar%s",
				what, dtype_label(dtype), per);
	return 0;
}

static int qconv_geom(const struct node *n, struct conv_geom *g, struct graft_err *err)
{
	const struct value *x = qin(n, QX), *w = qin(n, QW), *b = qin(n, QB), *yz = qin(n, QY_ZP);
	int rc;

	if (n->n_in < QY_ZP || n->n_in > QIN_COUNT || !x || !w || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes x, x_scale, x_zero_point, w, w_scale, "
				"w_zero_point, y_scale, y_zero_point and an optional B, and one output");
	if (!is_8bit(x->dtype) || !is_8bit(w->dtype))
		return node_err(n, err, GRAFT_EUNSUPPORTED, "x and w must be uint8 or int8, not %s "
				"and %s", dtype_label(x->dtype), dtype_label(w->dtype));
	if (b && b->dtype != GRAFT_INT32)
		return node_err(n, err, GRAFT_EINVAL, "B must be int32, not %s", dtype_label(b->dtype));
	if ((rc = conv_geom_of(n, x, w, b, 0, g, err)) || (rc = window_plan(n, &g->w, 0, err)) ||
	    (rc = check_qparams(n, QX_SCALE, QX_ZP, x->dtype, 1, "x", err)) ||
	    (rc = check_qparams(n, QW_SCALE, QW_ZP, w->dtype, g->out_ch, "w", err)) ||
	    (rc = check_qparams(n, QY_SCALE, QY_ZP, yz ? yz->dtype : GRAFT_UINT8, 1, "y", err)))
		return rc;
	if (yz && !is_8bit(yz->dtype))
		return node_err(n, err, GRAFT_EUNSUPPORTED, "y must be uint8 or int8, not %s",
				dtype_label(yz->dtype));
	if (n->act.kind != FUSED_NONE && n->act.kind != FUSED_RELU)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "fused activation %d", (int)n->act.kind);
	return 0;
}

static int qconv_infer(struct node *n, struct graft_err *err)
{
	const struct value *yz = qin(n, QY_ZP);
	struct conv_geom g;
	int64_t dims[5];
	int rc;

	if ((rc = qconv_geom(n, &g, err)))
		return rc;
	dims[0] = g.batch;
	dims[1] = g.out_ch;
	for (int i = 0; i < g.w.nsp; i++)
		dims[2 + i] = g.w.out[i];
	value_set(n->out[0], yz ? yz->dtype : GRAFT_UINT8, g.w.nsp + 2, dims);
	return 0;
}

/* ---- the parameters as both kernels use them ---------------------------------------- */

static int32_t elem_i32(const struct value *v, uint64_t i)
{
	return v ? (int32_t)elem_get_i64(v->data, v->dtype, i) : 0;
}

/* The float multiplier of output channel c: x_scale * w_scale / y_scale (a Relu, the
 * only activation fused here, commutes with it). */
static float out_scale(const struct node *n, int64_t c)
{
	const struct value *ws = qin(n, QW_SCALE);
	float sx = *(const float *)qin(n, QX_SCALE)->data, sy = *(const float *)qin(n, QY_SCALE)->data;
	float sw = ((const float *)ws->data)[value_numel(ws) == 1 ? 0 : c];

	return sx * sw / sy;
}

/* One result: acc scaled, the activation, rounded half to even, the zero point added,
 * saturated to the output's type (what oneDNN does in its int8 kernels). */
static int32_t requantize(float v, int relu, int32_t zp, int u8)
{
	float r;

	if (relu && v < 0)
		v = 0;
	r = nearbyintf(v) + (float)zp;
	if (u8)
		return r < 0 ? 0 : r > 255 ? 255 : (int32_t)r;
	return r < -128 ? -128 : r > 127 ? 127 : (int32_t)r;
}

static dnnl_data_type_t dnnl_type(int dtype)
{
	return dtype == GRAFT_UINT8 ? dnnl_u8 : dtype == GRAFT_INT8 ? dnnl_s8 : dnnl_s32;
}

/* ---- the reference kernel ------------------------------------------------------------- */

/* Any spatial rank as three axes: the missing ones of size 1. */
struct win3 {
	int64_t in[3], k[3], out[3], stride[3], dil[3], pad[3];
};

static void win3_of(const struct window *w, struct win3 *o)
{
	for (int i = 0; i < 3; i++) {
		int on = i < w->nsp;
		o->in[i] = on ? w->in[i] : 1;
		o->k[i] = on ? w->k[i] : 1;
		o->out[i] = on ? w->out[i] : 1;
		o->stride[i] = on ? w->stride[i] : 1;
		o->dil[i] = on ? w->dil[i] : 1;
		o->pad[i] = on ? w->pad_l[i] : 0;
	}
}

static int qconv_ref(struct node *n, struct graft_err *err)
{
	const struct value *x = qin(n, QX), *w = qin(n, QW), *b = qin(n, QB);
	const struct value *wz = qin(n, QW_ZP);
	struct value *y = n->out[0];
	const void *xd = x->data;
	struct conv_geom g;
	struct win3 s;
	int rc;

	if ((rc = qconv_geom(n, &g, err)))
		return rc;
	if (x->layout) {        /* kept in a layout by its producer: read a plain copy */
		dnnl_memory_desc_t plain;
		void *buf = onednn_scratch(0, value_numel(x));
		if (!buf)
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
		if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&plain, x->rank, x->dims,
								 dnnl_type(x->dtype)))) ||
		    (rc = onednn_reorder_once(n, x->layout, x->data, &plain, buf, err)))
			return rc;
		xd = buf;
	}
	win3_of(&g.w, &s);
	int64_t og = g.out_ch / g.group, ig = g.in_ch / g.group;
	int64_t isp = s.in[0] * s.in[1] * s.in[2], osp = s.out[0] * s.out[1] * s.out[2];
	int64_t ksp = s.k[0] * s.k[1] * s.k[2];
	int32_t zx = elem_i32(qin(n, QX_ZP), 0), zy = elem_i32(qin(n, QY_ZP), 0);
	int u8 = y->dtype == GRAFT_UINT8, relu = n->act.kind == FUSED_RELU;
	int per_ch = wz && value_numel(wz) > 1;

#pragma omp parallel for collapse(2) schedule(static)
	for (int64_t bi = 0; bi < g.batch; bi++)
		for (int64_t oc = 0; oc < g.out_ch; oc++) {
			int64_t grp = oc / og;
			int32_t zw = elem_i32(wz, per_ch ? (uint64_t)oc : 0);
			float scale = out_scale(n, oc);
			int64_t yi = (bi * g.out_ch + oc) * osp;
			for (int64_t o0 = 0; o0 < s.out[0]; o0++)
			for (int64_t o1 = 0; o1 < s.out[1]; o1++)
			for (int64_t o2 = 0; o2 < s.out[2]; o2++, yi++) {
				int64_t acc = b ? ((const int32_t *)b->data)[oc] : 0;
				for (int64_t ic = 0; ic < ig; ic++) {
					int64_t xc = (bi * g.in_ch + grp * ig + ic) * isp;
					int64_t wi = (oc * ig + ic) * ksp;
					for (int64_t k0 = 0; k0 < s.k[0]; k0++)
					for (int64_t k1 = 0; k1 < s.k[1]; k1++)
					for (int64_t k2 = 0; k2 < s.k[2]; k2++) {
						int64_t p0 = o0 * s.stride[0] - s.pad[0] + k0 * s.dil[0];
						int64_t p1 = o1 * s.stride[1] - s.pad[1] + k1 * s.dil[1];
						int64_t p2 = o2 * s.stride[2] - s.pad[2] + k2 * s.dil[2];
						int64_t wk = wi + (k0 * s.k[1] + k1) * s.k[2] + k2;
						if (p0 < 0 || p0 >= s.in[0] || p1 < 0 || p1 >= s.in[1] ||
						    p2 < 0 || p2 >= s.in[2])
							continue;       /* padding: x = x_zero_point */
						int64_t xv = elem_get_i64(xd, x->dtype, (uint64_t)
							(xc + (p0 * s.in[1] + p1) * s.in[2] + p2));
						int64_t wv = elem_get_i64(w->data, w->dtype, (uint64_t)wk);
						acc += (xv - zx) * (wv - zw);
					}
				}
				/* the int32 accumulator of the standard: wraps as ONNX Runtime's does */
				int32_t v = requantize((float)(int32_t)(uint32_t)acc * scale, relu, zy, u8);
				elem_put_i64(y->data, y->dtype, (uint64_t)yi, v);
			}
		}
	return 0;
}

/* ---- oneDNN's int8 convolution ---------------------------------------------------------- */

struct qconv_state {
	dnnl_primitive_t prim;          /* NULL: oneDNN's kernel does not apply; qconv_ref runs */
	dnnl_memory_t src, wei, bias, dst;
	void *wei_buf;
	dnnl_memory_t src_user, dst_user;
	dnnl_primitive_t src_reorder, dst_reorder;
	size_t src_bytes, dst_bytes;
};

static void qconv_release(struct node *n)
{
	struct qconv_state *s = n->priv;

	if (!s)
		return;
	dnnl_primitive_destroy(s->prim);
	dnnl_primitive_destroy(s->src_reorder);
	dnnl_primitive_destroy(s->dst_reorder);
	dnnl_memory_destroy(s->src);
	dnnl_memory_destroy(s->wei);
	dnnl_memory_destroy(s->bias);
	dnnl_memory_destroy(s->dst);
	dnnl_memory_destroy(s->src_user);
	dnnl_memory_destroy(s->dst_user);
	onednn_free(s->wei_buf);
	free(s);
	n->priv = NULL;
}

static int is_const(const struct value *v)
{
	return !v || (v->flags & VALUE_CONST);
}

/* Whether oneDNN's kernel computes this node: int8 W with zero zero points, and every
 * parameter known at plan time (they go into the primitive). */
static int onednn_applies(const struct node *n)
{
	const struct value *w = qin(n, QW), *wz = qin(n, QW_ZP);

	if (w->dtype != GRAFT_INT8 || !is_const(w) || !is_const(qin(n, QB)))
		return 0;
	for (int k = QX_SCALE; k <= QY_ZP; k++)
		if (k != QW && !is_const(qin(n, k)))
			return 0;
	for (uint64_t i = 0; wz && i < value_numel(wz); i++)
		if (elem_i32(wz, i))
			return 0;
	return 1;
}

/* Output scales per channel (or one), zero points of X and Y, the Relu. */
static int qconv_attr(const struct node *n, const struct conv_geom *g, dnnl_primitive_attr_t *attr,
		      struct graft_err *err)
{
	int per_ch = value_numel(qin(n, QW_SCALE)) > 1;
	int64_t count = per_ch ? g->out_ch : 1;
	int32_t zx = elem_i32(qin(n, QX_ZP), 0), zy = elem_i32(qin(n, QY_ZP), 0);
	float *scales = malloc((size_t)count * sizeof(*scales));
	dnnl_post_ops_t po = NULL;
	int rc;

	if (!scales)
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	for (int64_t c = 0; c < count; c++)
		scales[c] = out_scale(n, c);
	if (!(rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_create(attr))) &&
	    !(rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_set_output_scales(*attr, count,
						per_ch ? 1 << 1 : 0, scales))) &&
	    !(rc = zx ? ONEDNN_CHECK(n, err, dnnl_primitive_attr_set_zero_points(*attr,
						DNNL_ARG_SRC, 1, 0, &zx)) : 0) &&
	    !(rc = zy ? ONEDNN_CHECK(n, err, dnnl_primitive_attr_set_zero_points(*attr,
						DNNL_ARG_DST, 1, 0, &zy)) : 0) &&
	    n->act.kind != FUSED_NONE &&
	    !(rc = ONEDNN_CHECK(n, err, dnnl_post_ops_create(&po))) &&
	    !(rc = onednn_append_act(n, po, err)))
		rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_set_post_ops(*attr, po));
	dnnl_post_ops_destroy(po);
	free(scales);
	if (rc) {
		dnnl_primitive_attr_destroy(*attr);
		*attr = NULL;
	}
	return rc;
}

/* The primitive over X as it is (layout) and Y in the layout it picks, else over the
 * layouts it picks for both. */
static int qconv_primitive(const struct node *n, const struct conv_geom *g,
			   const dnnl_memory_desc_t *src_as_is, const dnnl_memory_desc_t *wei_any,
			   const dnnl_memory_desc_t *bias, const_dnnl_primitive_attr_t attr,
			   dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd, struct graft_err *err)
{
	const struct value *x = qin(n, QX), *y = n->out[0];
	dnnl_dims_t strides = {0}, dil = {0}, pl = {0}, pr = {0}, xd = {0}, yd = {0};
	dnnl_memory_desc_t src_any, dst_any;
	dnnl_convolution_desc_t d;
	struct graft_err quiet = {0};
	int rc;

	for (int i = 0; i < g->w.nsp; i++) {
		strides[i] = g->w.stride[i];
		dil[i] = g->w.dil[i] - 1;
		pl[i] = g->w.pad_l[i];
		pr[i] = g->w.pad_r[i];
	}
	memcpy(xd, x->dims, sizeof(int64_t) * (size_t)x->rank);
	memcpy(yd, y->dims, sizeof(int64_t) * (size_t)y->rank);
	if ((rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&src_any, x->rank, xd,
					dnnl_type(x->dtype), dnnl_format_tag_any))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&dst_any, y->rank, yd,
					dnnl_type(y->dtype), dnnl_format_tag_any))))
		return rc;
	if (x->layout &&
	    dnnl_dilated_convolution_forward_desc_init(&d, dnnl_forward_inference,
			dnnl_convolution_direct, src_as_is, wei_any, bias, &dst_any, strides, dil, pl,
			pr) == dnnl_success &&
	    !onednn_primitive(n, &d, attr, prim, pd, &quiet))
		return 0;
	if ((rc = ONEDNN_CHECK(n, err, dnnl_dilated_convolution_forward_desc_init(&d,
			dnnl_forward_inference, dnnl_convolution_direct, &src_any, wei_any, bias,
			&dst_any, strides, dil, pl, pr))))
		return rc;
	return onednn_primitive(n, &d, attr, prim, pd, err);
}

static int qconv_build(struct node *n, struct qconv_state *s, struct graft_err *err)
{
	const struct value *x = qin(n, QX), *w = qin(n, QW), *b = qin(n, QB);
	struct value *y = n->out[0];
	dnnl_memory_desc_t src_md, dst_md, wei_md, wei_any, bias_md, src_prim, wei_prim, dst_prim;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	struct conv_geom g;
	int rc;

	if ((rc = qconv_geom(n, &g, err)))
		return rc;
	if (x->layout)
		src_md = *(const dnnl_memory_desc_t *)x->layout;
	else if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&src_md, x->rank, x->dims,
							     dnnl_type(x->dtype)))))
		return rc;
	if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&dst_md, y->rank, y->dims,
						       dnnl_type(y->dtype)))) ||
	    (rc = conv_wei_descs(n, &g, 0, dnnl_s8, &wei_md, &wei_any, err)) ||
	    (b && (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&bias_md, 1, b->dims, dnnl_s32)))) ||
	    (rc = qconv_attr(n, &g, &attr, err)))
		return rc;
	rc = qconv_primitive(n, &g, &src_md, &wei_any, b ? &bias_md : NULL, attr, &s->prim, &pd, err);
	dnnl_primitive_attr_destroy(attr);
	if (rc)
		return rc;
	src_prim = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
	wei_prim = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	dst_prim = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	dnnl_primitive_desc_destroy(pd);
	/* Y read only by layout-aware readers: it stays in the primitive's layout. */
	if ((y->flags & VALUE_BLOCKABLE) && !onednn_md_same(&dst_md, &dst_prim) &&
	    (rc = onednn_keep_layout(n, y, &dst_prim, err)))
		return rc;
	if (y->layout)
		dst_md = dst_prim;
	/* W once into the primitive's layout (with the compensation an int8 X needs). */
	if (!(s->wei_buf = onednn_alloc(dnnl_memory_desc_get_size(&wei_prim))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	if ((rc = onednn_reorder_once(n, &wei_md, w->data, &wei_prim, s->wei_buf, err)) ||
	    (rc = onednn_memory(n, &s->wei, &wei_prim, s->wei_buf, err)) ||
	    (b && (rc = onednn_memory(n, &s->bias, &bias_md, b->data, err))) ||
	    (rc = onednn_bind_activation(n, &src_md, &src_prim, x->data, 1, &s->src, &s->src_user,
					 &s->src_reorder, &s->src_bytes, err)))
		return rc;
	return onednn_bind_activation(n, &dst_md, &dst_prim, y->data, 0, &s->dst, &s->dst_user,
				      &s->dst_reorder, &s->dst_bytes, err);
}

static int qconv_onednn(struct node *n, struct qconv_state *s, struct graft_err *err)
{
	const struct value *x = qin(n, QX);
	struct value *y = n->out[0];
	int rc;

	if ((rc = onednn_rebind_activation(n, s->src, s->src_user, s->src_bytes, 0, x->data, err)) ||
	    (rc = onednn_rebind_activation(n, s->dst, s->dst_user, s->dst_bytes, 1, y->data, err)))
		return rc;
	if (s->src_reorder &&
	    (rc = onednn_reorder_run(n, s->src_reorder, s->src_user, s->src, err)))
		return rc;
	dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->src}, {DNNL_ARG_WEIGHTS, s->wei},
				   {DNNL_ARG_DST, s->dst}, {DNNL_ARG_BIAS, s->bias}};
	if ((rc = onednn_execute(n, s->prim, s->bias ? 4 : 3, args, err)))
		return rc;
	return s->dst_reorder ? onednn_reorder_run(n, s->dst_reorder, s->dst, s->dst_user, err) : 0;
}

static int qconv_run(struct node *n, struct graft_err *err)
{
	struct qconv_state *s = n->priv;
	int rc;

	if (value_numel(n->out[0]) == 0)
		return 0;
	if (!s) {
		if (!(s = n->priv = calloc(1, sizeof(*s))))
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
		if (onednn_applies(n) && (rc = qconv_build(n, s, err))) {
			qconv_release(n);
			return rc;
		}
	}
	return s->prim ? qconv_onednn(n, s, err) : qconv_ref(n, err);
}

/* The weights in the primitive's layout: about W's size. */
static uint64_t qconv_plan_bytes(const struct node *n)
{
	const struct value *w = qin(n, QW);

	return w ? value_numel(w) + 64 * (uint64_t)(w->rank ? w->dims[0] : 1) : 0;
}

static const struct op_def op_qlinear_conv = {"QLinearConv", qconv_infer, qconv_run,
					       qconv_release, OP_BLOCKED_IO, 0};
static const struct mem_def mem_qlinear_conv = {"QLinearConv", qconv_plan_bytes};

const struct op_def *const ops_qconv[] = {&op_qlinear_conv, NULL};
const struct mem_def *const ops_qconv_mem[] = {&mem_qlinear_conv, NULL};
