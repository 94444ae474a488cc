/*
 * ops_util.c: what every kernel needs: attributes by name, errors that name the node,
 * shape arithmetic and numpy broadcasting, and typed element access for the kernels
 * that work on any dtype.
 */
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

double value_get(const struct value *v, uint64_t i)
{
	const void *d = v->data;

	switch (v->dtype) {
	case GRAFT_FLOAT: return ((const float *)d)[i];
	case GRAFT_DOUBLE: return ((const double *)d)[i];
	case GRAFT_INT64: return (double)((const int64_t *)d)[i];
	case GRAFT_INT32: return ((const int32_t *)d)[i];
	case GRAFT_INT16: return ((const int16_t *)d)[i];
	case GRAFT_INT8: return ((const int8_t *)d)[i];
	case GRAFT_UINT8: case GRAFT_BOOL: return ((const uint8_t *)d)[i];
	case GRAFT_UINT16: return ((const uint16_t *)d)[i];
	case GRAFT_UINT32: return ((const uint32_t *)d)[i];
	case GRAFT_UINT64: return (double)((const uint64_t *)d)[i];
	default: return 0;
	}
}

void value_put(struct value *v, uint64_t i, double x)
{
	void *d = v->data;

	switch (v->dtype) {
	case GRAFT_FLOAT: ((float *)d)[i] = (float)x; break;
	case GRAFT_DOUBLE: ((double *)d)[i] = x; break;
	case GRAFT_INT64: ((int64_t *)d)[i] = (int64_t)x; break;
	case GRAFT_INT32: ((int32_t *)d)[i] = (int32_t)x; break;
	case GRAFT_INT16: ((int16_t *)d)[i] = (int16_t)x; break;
	case GRAFT_INT8: ((int8_t *)d)[i] = (int8_t)x; break;
	case GRAFT_UINT8: ((uint8_t *)d)[i] = (uint8_t)x; break;
	case GRAFT_BOOL: ((uint8_t *)d)[i] = x != 0; break;
	case GRAFT_UINT16: ((uint16_t *)d)[i] = (uint16_t)x; break;
	case GRAFT_UINT32: ((uint32_t *)d)[i] = (uint32_t)x; break;
	case GRAFT_UINT64: ((uint64_t *)d)[i] = (uint64_t)x; break;
	default: break;
	}
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
