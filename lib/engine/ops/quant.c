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

#include "ops.h"

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

static const struct op_def op_quantize = {"QuantizeLinear", q_infer, q_run, NULL, 0, 0};
static const struct op_def op_dequantize = {"DequantizeLinear", dq_infer, dq_run, NULL, 0, 0};

const struct op_def *const ops_quant[] = {&op_quantize, &op_dequantize, NULL};
