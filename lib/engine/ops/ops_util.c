/*
 * ops_util.c: what every kernel needs: attributes by name, errors that name the node,
 * shape arithmetic and numpy broadcasting, and typed element access for the kernels
 * that work on any dtype.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"

int node_err(const struct node *n, struct graft_err *err, enum graft_status code,
	     const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return graft_err_set(err, code, "node '%s' (%s): %s",
			     n->proto->name && *n->proto->name ? n->proto->name
							       : (n->n_out && n->out[0] ? n->out[0]->name : "?"),
			     n->proto->op_type, msg);
}

const Onnx__AttributeProto *attr_find(const struct node *n, const char *name)
{
	for (size_t i = 0; i < n->proto->n_attribute; i++) {
		const Onnx__AttributeProto *a = n->proto->attribute[i];
		if (a->name && strcmp(a->name, name) == 0)
			return a;
	}
	return NULL;
}

int64_t attr_int(const struct node *n, const char *name, int64_t dflt)
{
	const Onnx__AttributeProto *a = attr_find(n, name);
	return a && a->has_i ? a->i : dflt;
}

float attr_float(const struct node *n, const char *name, float dflt)
{
	const Onnx__AttributeProto *a = attr_find(n, name);
	return a && a->has_f ? a->f : dflt;
}

void attr_string(const struct node *n, const char *name, const char *dflt, char *buf,
		 size_t size)
{
	const Onnx__AttributeProto *a = attr_find(n, name);

	if (a && a->has_s) {
		size_t len = a->s.len < size - 1 ? a->s.len : size - 1;
		memcpy(buf, a->s.data, len);
		buf[len] = 0;
	} else {
		snprintf(buf, size, "%s", dflt ? dflt : "");
	}
}

int attr_string_eq(const struct node *n, const char *name, const char *dflt, const char *s)
{
	char buf[256];
	attr_string(n, name, dflt, buf, sizeof(buf));
	return strcmp(buf, s) == 0;
}

long attr_ints(const struct node *n, const char *name, int64_t *v, size_t max)
{
	const Onnx__AttributeProto *a = attr_find(n, name);

	if (!a || (a->n_ints == 0 && a->has_type &&
		   a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS))
		return -1;
	for (size_t i = 0; i < a->n_ints && i < max; i++)
		v[i] = a->ints[i];
	return (long)a->n_ints;
}

long attr_floats(const struct node *n, const char *name, float *v, size_t max)
{
	const Onnx__AttributeProto *a = attr_find(n, name);

	if (!a)
		return -1;
	for (size_t i = 0; i < a->n_floats && i < max; i++)
		v[i] = a->floats[i];
	return (long)a->n_floats;
}

const char *dtype_label(int dtype)
{
	const char *s = graft_dtype_name(dtype);
	return s ? s : "?";
}

uint64_t value_numel(const struct value *v)
{
	uint64_t n = 1;
	for (int i = 0; i < v->rank; i++)
		n *= (uint64_t)v->dims[i];
	return n;
}

void value_set(struct value *v, int dtype, int rank, const int64_t *dims)
{
	v->dtype = dtype;
	v->rank = rank;
	for (int i = 0; i < rank; i++)
		v->dims[i] = dims[i];
}

long value_ints(const struct node *n, const struct value *v, int64_t *out, size_t max,
		struct graft_err *err)
{
	uint64_t count;

	if (!v || !(v->flags & VALUE_CONST) || !v->data)
		return node_err(n, err, GRAFT_EUNSUPPORTED,
				"input '%s' must be known before the run (a constant)",
				v ? v->name : "?");
	if (v->dtype != GRAFT_INT64 && v->dtype != GRAFT_INT32)
		return node_err(n, err, GRAFT_EFORMAT, "input '%s' must be int32 or int64",
				v->name);
	count = value_numel(v);
	if (count > max)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input '%s' has too many elements",
				v->name);
	for (uint64_t i = 0; i < count; i++)
		out[i] = v->dtype == GRAFT_INT64 ? ((const int64_t *)v->data)[i]
						 : ((const int32_t *)v->data)[i];
	return (long)count;
}

float elem_half_to_float(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
	float f;

	if (e == 0) {
		f = (float)m * 0x1p-24f;        /* zero or subnormal */
		return s ? -f : f;
	}
	bits = e == 31 ? s | 0x7f800000 | (m << 13) : s | ((e + 112) << 23) | (m << 13);
	memcpy(&f, &bits, 4);
	return f;
}

/* Rounds to nearest even, as numpy's astype(float16) does. */
uint16_t elem_float_to_half(float f)
{
	uint32_t x, s;
	float a;

	memcpy(&x, &f, 4);
	s = (x >> 16) & 0x8000;
	x &= 0x7fffffff;
	if (x >= 0x7f800000)
		return (uint16_t)(s | 0x7c00 | (x > 0x7f800000 ? 0x200 : 0));
	if (x >= 0x477ff000)            /* 65520 and up round to infinity */
		return (uint16_t)(s | 0x7c00);
	if (x < 0x38800000) {           /* below 2^-14: subnormal; the product is exact */
		memcpy(&a, &x, 4);
		return (uint16_t)(s | (uint32_t)nearbyint(a * 0x1p24f));
	}
	x += 0xc8000fffu + ((x >> 13) & 1);     /* rebias the exponent, round */
	return (uint16_t)(s | (x >> 13));
}

float elem_bf16_to_float(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t elem_float_to_bf16(float f)
{
	uint32_t x;

	memcpy(&x, &f, 4);
	if ((x & 0x7fffffff) > 0x7f800000)
		return (uint16_t)((x >> 16) | 0x40);    /* keep NaN a NaN */
	return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

double elem_get_f64(const void *p, int dt, uint64_t i)
{
	switch (dt) {
	case GRAFT_FLOAT: return ((const float *)p)[i];
	case GRAFT_DOUBLE: return ((const double *)p)[i];
	case GRAFT_FLOAT16: return elem_half_to_float(((const uint16_t *)p)[i]);
	case GRAFT_BFLOAT16: return elem_bf16_to_float(((const uint16_t *)p)[i]);
	case GRAFT_INT8: return ((const int8_t *)p)[i];
	case GRAFT_INT16: return ((const int16_t *)p)[i];
	case GRAFT_INT32: return ((const int32_t *)p)[i];
	case GRAFT_INT64: return (double)((const int64_t *)p)[i];
	case GRAFT_UINT8: case GRAFT_BOOL: return ((const uint8_t *)p)[i];
	case GRAFT_UINT16: return ((const uint16_t *)p)[i];
	case GRAFT_UINT32: return ((const uint32_t *)p)[i];
	case GRAFT_UINT64: return (double)((const uint64_t *)p)[i];
	default: return 0;
	}
}

/* Integers as int64; uint64 keeps its bits (callers that care pass uns). */
int64_t elem_get_i64(const void *p, int dt, uint64_t i)
{
	switch (dt) {
	case GRAFT_INT8: return ((const int8_t *)p)[i];
	case GRAFT_INT16: return ((const int16_t *)p)[i];
	case GRAFT_INT32: return ((const int32_t *)p)[i];
	case GRAFT_INT64: return ((const int64_t *)p)[i];
	case GRAFT_UINT8: return ((const uint8_t *)p)[i];
	case GRAFT_BOOL: return ((const uint8_t *)p)[i] != 0;
	case GRAFT_UINT16: return ((const uint16_t *)p)[i];
	case GRAFT_UINT32: return ((const uint32_t *)p)[i];
	case GRAFT_UINT64: return (int64_t)((const uint64_t *)p)[i];
	default: return (int64_t)elem_get_f64(p, dt, i);
	}
}

/* Narrower integer types wrap, as C's conversions to unsigned and numpy's astype do. */
void elem_put_i64(void *p, int dt, uint64_t i, int64_t x)
{
	switch (dt) {
	case GRAFT_INT8: ((int8_t *)p)[i] = (int8_t)(uint8_t)x; break;
	case GRAFT_INT16: ((int16_t *)p)[i] = (int16_t)(uint16_t)x; break;
	case GRAFT_INT32: ((int32_t *)p)[i] = (int32_t)(uint32_t)x; break;
	case GRAFT_INT64: ((int64_t *)p)[i] = x; break;
	case GRAFT_UINT8: ((uint8_t *)p)[i] = (uint8_t)x; break;
	case GRAFT_BOOL: ((uint8_t *)p)[i] = x != 0; break;
	case GRAFT_UINT16: ((uint16_t *)p)[i] = (uint16_t)x; break;
	case GRAFT_UINT32: ((uint32_t *)p)[i] = (uint32_t)x; break;
	case GRAFT_UINT64: ((uint64_t *)p)[i] = (uint64_t)x; break;
	case GRAFT_FLOAT: ((float *)p)[i] = (float)x; break;
	case GRAFT_DOUBLE: ((double *)p)[i] = (double)x; break;
	case GRAFT_FLOAT16: ((uint16_t *)p)[i] = elem_float_to_half((float)x); break;
	case GRAFT_BFLOAT16: ((uint16_t *)p)[i] = elem_float_to_bf16((float)x); break;
	default: break;
	}
}

/* A float to int64 without undefined behaviour: truncates, saturates, NaN is 0. */
int64_t elem_sat_i64(double x)
{
	if (x != x)
		return 0;
	if (x >= 9223372036854775807.0)
		return INT64_MAX;
	if (x <= -9223372036854775808.0)
		return INT64_MIN;
	return (int64_t)x;
}

void elem_put_f64(void *p, int dt, uint64_t i, double x)
{
	switch (dt) {
	case GRAFT_FLOAT: ((float *)p)[i] = (float)x; break;
	case GRAFT_DOUBLE: ((double *)p)[i] = x; break;
	case GRAFT_FLOAT16: ((uint16_t *)p)[i] = elem_float_to_half((float)x); break;
	case GRAFT_BFLOAT16: ((uint16_t *)p)[i] = elem_float_to_bf16((float)x); break;
	case GRAFT_BOOL: ((uint8_t *)p)[i] = x != 0; break;
	case GRAFT_UINT64:
		((uint64_t *)p)[i] = x >= 9223372036854775808.0 && x < 18446744073709551616.0
					     ? (uint64_t)x : (uint64_t)elem_sat_i64(x);
		break;
	default: elem_put_i64(p, dt, i, elem_sat_i64(x)); break;
	}
}

double value_get(const struct value *v, uint64_t i)
{
	return elem_get_f64(v->data, v->dtype, i);
}

void value_put(struct value *v, uint64_t i, double x)
{
	elem_put_f64(v->data, v->dtype, i, x);
}

int broadcast_dims(int ra, const int64_t *a, int rb, const int64_t *b, int *out_rank,
		   int64_t *out)
{
	int r = ra > rb ? ra : rb;

	if (r > NET_MAX_RANK)
		return -1;
	for (int i = 0; i < r; i++) {
		int64_t da = i < r - ra ? 1 : a[i - (r - ra)];
		int64_t db = i < r - rb ? 1 : b[i - (r - rb)];
		if (da != db && da != 1 && db != 1)
			return -1;
		out[i] = da == 1 ? db : da;
	}
	*out_rank = r;
	return 0;
}

void broadcast_strides(int r, const int64_t *d, int out_rank, const int64_t *out,
		       int64_t *strides)
{
	int64_t s = 1;

	for (int i = out_rank - 1; i >= 0; i--) {
		int k = i - (out_rank - r);
		if (k < 0 || d[k] == 1) {
			strides[i] = 0;
		} else {
			strides[i] = s;
			s *= d[k];
		}
		(void)out;
	}
}

int norm_axis(int64_t axis, int rank)
{
	if (axis < 0)
		axis += rank;
	return axis >= 0 && axis < rank ? (int)axis : -1;
}
