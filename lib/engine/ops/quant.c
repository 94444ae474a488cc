/*
 * quant.c: linear quantization, QuantizeLinear and DequantizeLinear (opsets 10 and 13),
 * in plain C loops: the pairs that ONNX's QDQ format puts around the tensors a runtime
 * may compute in 8 bits (graft-quantize writes them; docs/deploy.md).
 *
 *   QuantizeLinear:   y = saturate(round_half_even(x / scale) + zero_point)
 *   DequantizeLinear: y = (x - zero_point) * scale
 *
 * Quantized values are uint8 or int8 (the zero point's type; uint8 without one), and
 * DequantizeLinear also reads int32 (a bias, whose zero point is 0).  scale and
 * zero_point are scalars (per tensor) or, from opset 13, 1-D along axis (per channel,
 * default axis 1).  x / scale is computed in float32, as ONNX's reference and ONNX
 * Runtime do, and rounded with the current rounding mode (nearest, ties to even);
 * NaN quantizes to the zero point.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dnnl_util.h"

/* Elements below which one thread does the work. */
#define PAR_MIN 32768

/* What both ops read of their inputs: the channel count along the axis (1 per tensor)
 * and the elements within one channel step (x viewed as (outer, channels, inner); per
 * tensor, inner is a chunk for the threads to share). */
struct qparams {
	const float *scale;
	const void *zp;         /* NULL: zero */
	int zp_dtype;
	int64_t channels, inner;
};

static int quant_params(const struct node *n, const struct value *x, struct qparams *q,
			struct graft_err *err)
{
	const struct value *s = n->in[1], *z = n->n_in > 2 ? n->in[2] : NULL;
	uint64_t count = value_numel(s);
	int axis;

	if (s->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "the scale must be float, not %s",
				dtype_label(s->dtype));
	if (z && (value_numel(z) != count || (z->rank != s->rank)))
		return node_err(n, err, GRAFT_EINVAL, "the zero point's shape differs from the "
				"scale's");
	*q = (struct qparams){s->data, z ? z->data : NULL, z ? z->dtype : GRAFT_UINT8, 1,
			      PAR_MIN};
	if (s->rank == 0 || (s->rank == 1 && count == 1 && n->opset < 13))
		return 0;
	if (s->rank != 1 || n->opset < 13)
		return node_err(n, err, GRAFT_EINVAL, "the scale must be a scalar%s",
				n->opset < 13 ? " before opset 13" : " or 1-D");
	if ((axis = norm_axis(attr_int(n, "axis", 1), x->rank)) < 0)
		return node_err(n, err, GRAFT_EINVAL, "axis %lld is out of range for rank %d",
				(long long)attr_int(n, "axis", 1), x->rank);
	if (x->dims[axis] != (int64_t)count)
		return node_err(n, err, GRAFT_EINVAL, "%llu scales for axis %d of size %lld",
				(unsigned long long)count, axis, (long long)x->dims[axis]);
	q->channels = (int64_t)count;
	q->inner = 1;
	for (int d = axis + 1; d < x->rank; d++)
		q->inner *= x->dims[d];
	return 0;
}

static int64_t zp_at(const struct qparams *q, int64_t c)
{
	if (!q->zp)
		return 0;
	switch (q->zp_dtype) {
	case GRAFT_UINT8: return ((const uint8_t *)q->zp)[c];
	case GRAFT_INT8: return ((const int8_t *)q->zp)[c];
	default: return ((const int32_t *)q->zp)[c];
	}
}

/* ---- QuantizeLinear ---------------------------------------------------------------------- */

static int q_infer(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *z = n->n_in > 2 ? n->in[2] : NULL;
	int dtype = z ? z->dtype : GRAFT_UINT8;

	if (n->n_in < 2 || !x || !n->in[1])
		return node_err(n, err, GRAFT_EINVAL, "needs x and a scale");
	if (x->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "x must be float, not %s",
				dtype_label(x->dtype));
	if (dtype != GRAFT_UINT8 && dtype != GRAFT_INT8)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "quantizes to uint8 or int8, not %s",
				dtype_label(dtype));
	value_set(n->out[0], dtype, x->rank, x->dims);
	return 0;
}

/* round_half_even(v / s) + zp, saturated to [lo, hi]. */
static inline float quantize1(float v, float s, float zp, float lo, float hi)
{
	float r = nearbyintf(v / s) + zp;

	if (r != r)
		return zp;
	return r < lo ? lo : r > hi ? hi : r;
}

static int q_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	struct value *y = n->out[0];
	struct qparams q;
	int rc, u8 = y->dtype == GRAFT_UINT8;
	float lo = u8 ? 0 : -128, hi = u8 ? 255 : 127;

	if ((rc = quant_params(n, x, &q, err)))
		return rc;
	const float *X = x->data;
	int64_t numel = (int64_t)value_numel(x), rows = q.inner ? (numel + q.inner - 1) / q.inner : 0;
#pragma omp parallel for schedule(static) if (numel > PAR_MIN)
	for (int64_t r = 0; r < rows; r++) {
		int64_t c = r % q.channels, len = numel - r * q.inner;
		float s = q.scale[c], zp = (float)zp_at(&q, c);
		const float *xr = X + r * q.inner;
		len = len < q.inner ? len : q.inner;
		if (u8) {
			uint8_t *yr = (uint8_t *)y->data + r * q.inner;
			for (int64_t i = 0; i < len; i++)
				yr[i] = (uint8_t)quantize1(xr[i], s, zp, lo, hi);
		} else {
			int8_t *yr = (int8_t *)y->data + r * q.inner;
			for (int64_t i = 0; i < len; i++)
				yr[i] = (int8_t)quantize1(xr[i], s, zp, lo, hi);
		}
	}
	return 0;
}

/* ---- DequantizeLinear -------------------------------------------------------------------- */

static int dq_infer(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0], *z = n->n_in > 2 ? n->in[2] : NULL;

	if (n->n_in < 2 || !x || !n->in[1])
		return node_err(n, err, GRAFT_EINVAL, "needs x and a scale");
	if (x->dtype != GRAFT_UINT8 && x->dtype != GRAFT_INT8 && x->dtype != GRAFT_INT32)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "dequantizes uint8, int8 or int32, "
				"not %s", dtype_label(x->dtype));
	if (z && z->dtype != x->dtype)
		return node_err(n, err, GRAFT_EINVAL, "the zero point is %s, x %s",
				dtype_label(z->dtype), dtype_label(x->dtype));
	value_set(n->out[0], GRAFT_FLOAT, x->rank, x->dims);
	return 0;
}

static int dq_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	float *Y = n->out[0]->data;
	struct qparams q;
	int rc;

	if ((rc = quant_params(n, x, &q, err)))
		return rc;
	q.zp_dtype = x->dtype;
	int64_t numel = (int64_t)value_numel(x), rows = q.inner ? (numel + q.inner - 1) / q.inner : 0;
	int64_t es = (int64_t)graft_dtype_size(x->dtype);
#pragma omp parallel for schedule(static) if (numel > PAR_MIN)
	for (int64_t r = 0; r < rows; r++) {
		int64_t c = r % q.channels, zp = zp_at(&q, c), len = numel - r * q.inner;
		float s = q.scale[c], *yr = Y + r * q.inner;
		const void *xr = (const char *)x->data + r * q.inner * es;
		len = len < q.inner ? len : q.inner;
		for (int64_t i = 0; i < len; i++) {
			int64_t v = x->dtype == GRAFT_UINT8 ? ((const uint8_t *)xr)[i]
				  : x->dtype == GRAFT_INT8 ? ((const int8_t *)xr)[i]
				  : ((const int32_t *)xr)[i];
			yr[i] = (float)(v - zp) * s;
		}
	}
	return 0;
}

/* ---- QLinearAdd: the executor's fusion of DequantizeLinear x2 -> Add -> QuantizeLinear --- */

/*
 * C = saturate(round_half_even(rA (A - zA) + rB (B - zB)) + zC), rA = sA / sC and
 * rB = sB / sC, with numpy broadcasting: ONNX Runtime's com.microsoft QLinearAdd, which
 * it fuses the same QDQ pattern into.  No model names it (ops_find_fused): net.c makes
 * it, from constant scalar scales and zero points.  Inputs: A, A_scale, A_zero_point, B,
 * B_scale, B_zero_point, C_scale, C_zero_point (the zero points may be absent).
 */
enum { QA, QA_SCALE, QA_ZP, QB_, QB_SCALE, QB_ZP, QC_SCALE, QC_ZP, QADD_IN };

static int qadd_infer(struct node *n, struct graft_err *err)
{
	const struct value *a = n->in[QA], *b = n->in[QB_], *zc = n->in[QC_ZP];
	int64_t dims[NET_MAX_RANK];
	int rank;

	if ((a->dtype != GRAFT_UINT8 && a->dtype != GRAFT_INT8) || b->dtype != a->dtype)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "adds uint8 or int8 tensors of one "
				"type, not %s and %s", dtype_label(a->dtype), dtype_label(b->dtype));
	if (broadcast_dims(a->rank, a->dims, b->rank, b->dims, &rank, dims))
		return node_err(n, err, GRAFT_EINVAL, "the shapes do not broadcast");
	value_set(n->out[0], zc ? zc->dtype : GRAFT_UINT8, rank, dims);
	return 0;
}

static float scalar_of(const struct value *v)
{
	return v ? (float)value_get(v, 0) : 0.0f;
}

/* What every element needs: C = clamp(rA A + rB B + adj) rounded. */
struct qadd_k {
	float ra, rb, adj, lo, hi;
};

static struct qadd_k qadd_consts(const struct node *n)
{
	int u8 = n->out[0]->dtype == GRAFT_UINT8;
	float sc = scalar_of(n->in[QC_SCALE]);
	struct qadd_k k = {scalar_of(n->in[QA_SCALE]) / sc, scalar_of(n->in[QB_SCALE]) / sc, 0,
			   u8 ? 0 : -128, u8 ? 255 : 127};

	k.adj = scalar_of(n->in[QC_ZP]) - k.ra * scalar_of(n->in[QA_ZP]) -
		k.rb * scalar_of(n->in[QB_ZP]);
	return k;
}

/* Rounds half to even by the float adder itself: adding 1.5 * 2^23 leaves no fraction
 * bits (|v| < 2^22 after the clamp), so that the loops vectorise without SSE4.1's
 * roundps (the baseline build has SSE2). */
static inline float round_even(float v)
{
	return (v + 12582912.0f) - 12582912.0f;
}

static inline float qadd1(const struct qadd_k *k, float a, float b)
{
	float v = k->ra * a + k->rb * b + k->adj;

	v = v < k->lo ? k->lo : v;
	v = v > k->hi ? k->hi : v;
	return round_even(v);
}

static void qadd_flat(const struct qadd_k *k, const void *A, const void *B, void *C,
		      int64_t count, int in_u8, int out_u8)
{
#pragma omp parallel for schedule(static) if (count > PAR_MIN)
	for (int64_t c0 = 0; c0 < count; c0 += 4096) {
		int64_t end = c0 + 4096 < count ? c0 + 4096 : count;
		if (in_u8 && out_u8) {  /* the common case, in one loop that vectorises */
			const uint8_t *a = A, *b = B;
			uint8_t *y = C;
			for (int64_t i = c0; i < end; i++)
				y[i] = (uint8_t)(int32_t)qadd1(k, a[i], b[i]);
			continue;
		}
		for (int64_t i = c0; i < end; i++) {
			float fa = in_u8 ? ((const uint8_t *)A)[i] : ((const int8_t *)A)[i];
			float fb = in_u8 ? ((const uint8_t *)B)[i] : ((const int8_t *)B)[i];
			int32_t v = (int32_t)qadd1(k, fa, fb);
			if (out_u8)
				((uint8_t *)C)[i] = (uint8_t)v;
			else
				((int8_t *)C)[i] = (int8_t)v;
		}
	}
}

static int qadd_run(struct node *n, struct graft_err *err)
{
	const struct value *a = n->in[QA], *b = n->in[QB_];
	struct value *y = n->out[0];
	struct qadd_k k = qadd_consts(n);
	int in_u8 = a->dtype == GRAFT_UINT8, out_u8 = y->dtype == GRAFT_UINT8;
	uint64_t count = value_numel(y);

	(void)err;
	if (value_numel(a) == count && value_numel(b) == count) {
		qadd_flat(&k, a->data, b->data, y->data, (int64_t)count, in_u8, out_u8);
		return 0;
	}
	/* broadcasting: element by element through the strides */
	int64_t sa[NET_MAX_RANK], sb[NET_MAX_RANK], idx[NET_MAX_RANK] = {0};
	broadcast_strides(a->rank, a->dims, y->rank, y->dims, sa);
	broadcast_strides(b->rank, b->dims, y->rank, y->dims, sb);
	for (uint64_t i = 0; i < count; i++) {
		int64_t ia = 0, ib = 0;
		for (int d = 0; d < y->rank; d++) {
			ia += idx[d] * sa[d];
			ib += idx[d] * sb[d];
		}
		float v = qadd1(&k, (float)elem_get_i64(a->data, a->dtype, (uint64_t)ia),
				(float)elem_get_i64(b->data, b->dtype, (uint64_t)ib));
		elem_put_i64(y->data, y->dtype, i, (int64_t)v);
		for (int d = y->rank - 1; d >= 0 && ++idx[d] == y->dims[d]; d--)
			idx[d] = 0;
	}
	return 0;
}

/* A and B in one dense layout (nhwc, which oneDNN's int8 convolutions keep): the flat
 * loop over the raw buffers, C in that layout when only layout-aware ops read it. */
static int qadd_run_blocked(struct node *n, struct graft_err *err)
{
	struct value *a = n->in[QA], *b = n->in[QB_], *y = n->out[0];
	const dnnl_memory_desc_t *md = a->layout;
	int rc;

	if (!md || !b->layout || !onednn_md_same(md, b->layout) ||
	    !(y->flags & VALUE_BLOCKABLE) || value_numel(a) != value_numel(y) ||
	    dnnl_memory_desc_get_size(md) != value_numel(a) * graft_dtype_size(a->dtype))
		return OPS_DECLINED;
	if (!y->layout) {
		dnnl_memory_desc_t out = *md;
		out.data_type = y->dtype == GRAFT_UINT8 ? dnnl_u8 : dnnl_s8;
		if ((rc = onednn_keep_layout(n, y, &out, err)))
			return rc;
	}
	struct qadd_k k = qadd_consts(n);
	qadd_flat(&k, a->data, b->data, y->data, (int64_t)value_numel(y),
		  a->dtype == GRAFT_UINT8, y->dtype == GRAFT_UINT8);
	return 0;
}

static const struct op_def op_quantize = {"QuantizeLinear", q_infer, q_run, NULL, 0, 0};
static const struct op_def op_dequantize = {"DequantizeLinear", dq_infer, dq_run, NULL, 0, 0};

static const struct op_def op_qlinear_add = {"QLinearAdd", qadd_infer, qadd_run, NULL, 0, 0};
static const struct blocked_def blocked_qlinear_add = {"QLinearAdd", qadd_run_blocked};

const struct op_def *const ops_quant[] = {&op_quantize, &op_dequantize, NULL};
const struct op_def *const ops_quant_fused[] = {&op_qlinear_add, NULL};
const struct blocked_def *const ops_quant_blocked[] = {&blocked_qlinear_add, NULL};
