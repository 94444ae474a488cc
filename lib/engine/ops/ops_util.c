/*
 * ops_util.c: what every kernel needs: attributes by name, errors that name the node,
 * shape arithmetic and numpy broadcasting, and typed element access for the kernels
 * that work on any dtype.  Then what several families share: the strided copies that
 * the data-movement families (reshape.c, join.c, index.c, constant.c) all go through,
 * and the split around one axis and the float32 argmax of reduce.c and softmax.c.
 *
 * Every strided copy goes through copy_view().  It drops unit axes and merges axes that
 * read the source contiguously, which turns most slices, expands and tiles into memcpy
 * of whole rows.  Transposes that move the source's innermost axis get a tiled 2-D loop.
 */
#include <math.h>
#include <omp.h>
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

/* ---- data movement: reshape.c, join.c, index.c and constant.c ------------------------- */

/* Side of the square blocks that transposes copy, in elements. */
#define TILE 16

int want_io(const struct node *n, struct graft_err *err, size_t n_req, size_t max_in)
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

int fixed_size(const struct node *n, const struct value *v, struct graft_err *err)
{
	if (graft_dtype_size(v->dtype) == 0)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input '%s' has type %s, which has no "
				"fixed element size", v->name,
				dtype_label(v->dtype));
	return 0;
}

int set_out(const struct node *n, struct value *out, int dtype, int rank,
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

void strides_of(int rank, const int64_t *dims, int64_t *st)
{
	int64_t s = 1;

	for (int i = rank - 1; i >= 0; i--) {
		st[i] = s;
		s *= dims[i];
	}
}

int64_t dims_prod(const int64_t *dims, int from, int to)
{
	int64_t p = 1;

	for (int i = from; i < to; i++)
		p *= dims[i];
	return p;
}

long ints_attr(const struct node *n, const char *name, int64_t *v, size_t max,
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

void fill_elems(void *dst, const void *elem, uint64_t n, size_t es)
{
	char *d = dst;
	size_t total = (size_t)n * es, done;

	if (!total)
		return;
	memcpy(d, elem, es);
	for (done = es; done < total; done *= 2)
		memcpy(d + done, d, done < total - done ? done : total - done);
}

void copy_bytes(void *dst, const void *src, size_t nbytes)
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

void copy_view(void *dst, const void *src, struct view *v, size_t es)
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
	int64_t rows = dims_prod(v->dims, 0, r - 1);
	uint64_t total = (uint64_t)rows * (uint64_t)n * es;

#pragma omp parallel if (total >= PAR_BYTES && rows > 1)
	{
		int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
		int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
		if (r0 < r1)
			copy_rows(dst, src, v, es, r0, r1);
	}
}

/* ---- data movement, backward ------------------------------------------------------------ */

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
	int64_t idx[VIEW_MAX_RANK] = {0}, od = 0, os = 0, rows = dims_prod(w->dims, 0, r - 1);

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
void walk_run(float *dst, const float *src, struct walk *w, int add)
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
	    (uint64_t)dims_prod(w->dims, 0, w->rank) * sizeof(float) < PAR_BYTES) {
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

int grad_is_float(const struct node *n, struct graft_err *err)
{
	if (n->gin[0] && n->in[0]->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "backward for %s data",
				dtype_label(n->in[0]->dtype));
	return 0;
}

int copy_backward(struct node *n, struct graft_err *err)
{
	int rc;

	if (!n->gin[0])
		return 0;
	if ((rc = grad_is_float(n, err)))
		return rc;
	copy_bytes(n->gin[0]->data, n->out[0]->grad->data, n->gin[0]->nbytes);
	return 0;
}

/* ---- along one axis: reduce.c and softmax.c ------------------------------------------- */

/* Elements of work below which a parallel region costs more than it saves. */
#define PAR_MIN 32768
/* Columns of the I axis one task handles (stack buffers). */
#define CHUNK 256

void split_axis(const struct value *x, int axis, int64_t *O, int64_t *R, int64_t *I)
{
	*O = *I = 1;
	for (int d = 0; d < axis; d++)
		*O *= x->dims[d];
	*R = x->dims[axis];
	for (int d = axis + 1; d < x->rank; d++)
		*I *= x->dims[d];
}

/* Indices stay int32 (R fits) so that the select vectorises alongside the floats. */
void argmax_f32(const float *x, int64_t *y, int64_t O, int64_t R, int64_t I, float sign,
		int last)
{
	int64_t nch = (I + CHUNK - 1) / CHUNK, units = O * nch;

#pragma omp parallel for schedule(static) if (O * R * I > PAR_MIN && units > 1)
	for (int64_t u = 0; u < units; u++) {
		int64_t o = u / nch, i0 = (u % nch) * CHUNK;
		int64_t len = I - i0 < CHUNK ? I - i0 : CHUNK;
		const float *xb = x + o * R * I + i0;
		float best[CHUNK];
		int32_t idx[CHUNK];
		int64_t *yb = y + o * I + i0;

		for (int64_t i = 0; i < len; i++) {
			best[i] = sign * xb[i];
			idx[i] = 0;
		}
		for (int64_t r = 1; r < R; r++) {
			const float *xr = xb + r * I;
			if (last) {
#pragma omp simd
				for (int64_t i = 0; i < len; i++) {
					float v = sign * xr[i];
					int32_t up = -(int32_t)(v >= best[i]);
					best[i] = v >= best[i] ? v : best[i];
					idx[i] = (idx[i] & ~up) | ((int32_t)r & up);
				}
			} else {
#pragma omp simd
				for (int64_t i = 0; i < len; i++) {
					float v = sign * xr[i];
					int32_t up = -(int32_t)(v > best[i]);
					best[i] = v > best[i] ? v : best[i];
					idx[i] = (idx[i] & ~up) | ((int32_t)r & up);
				}
			}
		}
		for (int64_t i = 0; i < len; i++)
			yb[i] = idx[i];
	}
}
