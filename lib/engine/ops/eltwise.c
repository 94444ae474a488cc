/*
 * eltwise.c: element-wise ops: activations and other unary math, numpy-broadcasting
 * binary arithmetic and comparisons, the variadic Sum/Mean/Max/Min, Where, Clip, Cast,
 * Dropout and Identity.
 *
 * Real models spend their element-wise time on float32, so float32 has kernels of its
 * own: a generated loop per op that the compiler vectorizes, and for binary ops a
 * broadcast plan (struct bcast) that merges the output's dims until each input is read
 * either contiguously or as one repeated value along the innermost dim.  Same shapes,
 * a scalar operand and a per-channel operand ([N, C, H, W] with [C, 1, 1]) all become
 * long rows with strides 0 or 1 that the row kernels handle without per-element index
 * arithmetic.  int32, int64 and bool have row kernels for the common ops too.  Every
 * other dtype (double, float16, bfloat16, the small integers) goes through one generic
 * path that computes in double (floats) or int64 (integers) per element.
 */
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "ops.h"
#include "dnnl_util.h"     /* onednn_channel_blocks, onednn_keep_layout */

/*
 * The flag changes no result (graft never reads floating-point exception flags); it lets
 * GCC turn selects such as clamps and "v < 0 ? a * v : v" into vector blends instead of
 * branches.  Without it the Exp, Sigmoid, LeakyRelu and HardSwish loops stay scalar.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* Below this many elements a kernel runs on one thread: forking costs more. */
#define PAR_MIN 32768
/* Work unit of a parallel loop, in elements. */
#define CHUNK 16384

/* ---- dtypes and element access for the generic path ---------------------------------- */

static int is_floaty(int dt)
{
	return dt == GRAFT_FLOAT || dt == GRAFT_DOUBLE || dt == GRAFT_FLOAT16 ||
	       dt == GRAFT_BFLOAT16;
}

/* Integer dtypes, bool excluded. */
static int is_inty(int dt)
{
	switch (dt) {
	case GRAFT_INT8: case GRAFT_INT16: case GRAFT_INT32: case GRAFT_INT64:
	case GRAFT_UINT8: case GRAFT_UINT16: case GRAFT_UINT32: case GRAFT_UINT64:
		return 1;
	default:
		return 0;
	}
}

static int is_numeric(int dt)
{
	return is_floaty(dt) || is_inty(dt);
}

/* ---- node checks ------------------------------------------------------------------------ */

/* n_in within [min_in, max_in], the first req inputs present, and out[0] present. */
static int check_io(struct node *n, struct graft_err *err, size_t min_in, size_t max_in,
		    size_t req)
{
	if (n->n_in < min_in || n->n_in > max_in)
		return node_err(n, err, GRAFT_EFORMAT, "takes %zu to %zu inputs, not %zu", min_in,
				max_in, n->n_in);
	for (size_t k = 0; k < req && k < n->n_in; k++)
		if (!n->in[k])
			return node_err(n, err, GRAFT_EFORMAT, "input %zu is missing", k);
	if (n->n_out < 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "output 0 is missing");
	return 0;
}

/* A present optional input must hold one element; its data may arrive only at run. */
static int check_scalar(struct node *n, struct graft_err *err, const struct value *v,
			const char *what)
{
	if (v && value_numel(v) != 1)
		return node_err(n, err, GRAFT_EFORMAT, "%s must have one element, not %llu", what,
				(unsigned long long)value_numel(v));
	return 0;
}

/* ---- broadcasting ----------------------------------------------------------------------- */

struct shape {
	int rank;
	int64_t dims[NET_MAX_RANK];
};

static void shape_of(const struct value *v, struct shape *s)
{
	s->rank = v->rank;
	memcpy(s->dims, v->dims, sizeof(v->dims[0]) * (size_t)v->rank);
}

/*
 * How inputs are read for an output: dims of size 1 dropped and neighbours merged
 * wherever every input steps through them as through one dim.  The innermost merged dim
 * is a row; each input's stride along it (inner_stride) is 1 or 0 (repeated).
 */
struct bcast {
	int rank;
	int n;                                  /* inputs */
	int64_t dims[NET_MAX_RANK];
	int64_t st[3][NET_MAX_RANK];            /* per input, in elements */
	uint64_t rows, total;
	int64_t inner;
};

static void bcast_init(struct bcast *bc, const struct value *out, int n_sh,
		       const struct shape *sh)
{
	int64_t st[3][NET_MAX_RANK];
	int r = 0;

	bc->n = n_sh;
	bc->total = value_numel(out);
	for (int k = 0; k < n_sh; k++)
		broadcast_strides(sh[k].rank, sh[k].dims, out->rank, out->dims, st[k]);
	for (int d = 0; d < out->rank; d++) {
		int merge = r > 0;
		if (out->dims[d] == 1)
			continue;
		for (int k = 0; k < n_sh && merge; k++)
			merge = bc->st[k][r - 1] == st[k][d] * out->dims[d];
		if (merge) {
			bc->dims[r - 1] *= out->dims[d];
		} else {
			bc->dims[r] = out->dims[d];
			r++;
		}
		for (int k = 0; k < n_sh; k++)
			bc->st[k][r - 1] = st[k][d];
	}
	if (r == 0) {
		bc->dims[0] = 1;
		for (int k = 0; k < n_sh; k++)
			bc->st[k][0] = 0;
		r = 1;
	}
	bc->rank = r;
	bc->inner = bc->dims[r - 1];
	bc->rows = 1;
	for (int d = 0; d < r - 1; d++)
		bc->rows *= (uint64_t)bc->dims[d];
}

/* Where each input's part of row starts. */
static void row_offsets(const struct bcast *bc, uint64_t row, int64_t *off)
{
	for (int k = 0; k < bc->n; k++)
		off[k] = 0;
	for (int d = bc->rank - 2; d >= 0; d--) {
		int64_t i = (int64_t)(row % (uint64_t)bc->dims[d]);
		row /= (uint64_t)bc->dims[d];
		for (int k = 0; k < bc->n; k++)
			off[k] += i * bc->st[k][d];
	}
}

static int64_t inner_stride(const struct bcast *bc, int k)
{
	return bc->st[k][bc->rank - 1];
}

/* o[i] = f(a[i * sa], b[i * sb]) for i < n; sa and sb are 0 or 1.  a may be o. */
typedef void (*row_fn)(void *o, const void *a, int64_t sa, const void *b, int64_t sb,
		       int64_t n);

/* Runs f over every row of bc, split into chunks across threads. */
static void run_rows(const struct bcast *bc, row_fn f, void *o, size_t eo, const void *a,
		     size_t ea, const void *b, size_t eb)
{
	int64_t cpr = (bc->inner + CHUNK - 1) / CHUNK, work = (int64_t)bc->rows * cpr;
	int64_t sa = inner_stride(bc, 0), sb = inner_stride(bc, 1);

	if (bc->total == 0)
		return;
#pragma omp parallel for schedule(static) if (bc->total >= PAR_MIN && work > 1)
	for (int64_t w = 0; w < work; w++) {
		uint64_t row = (uint64_t)(w / cpr);
		int64_t s = (w % cpr) * CHUNK, off[3];
		int64_t len = bc->inner - s < CHUNK ? bc->inner - s : CHUNK;
		row_offsets(bc, row, off);
		f((char *)o + ((int64_t)row * bc->inner + s) * (int64_t)eo,
		  (const char *)a + (off[0] + s * sa) * (int64_t)ea, sa,
		  (const char *)b + (off[1] + s * sb) * (int64_t)eb, sb, len);
	}
}

/*
 * Row kernels.  Each specialises the stride combinations so that every loop is a
 * plain pass over contiguous memory with at most one repeated operand.
 */
#define DEF_ROW(NAME, TA, TB, TO, EXPR)                                                 \
	static void NAME(void *o_, const void *a_, int64_t sa, const void *b_, int64_t sb, \
			 int64_t n)                                                     \
	{                                                                               \
		TO *o = o_;                                                             \
		const TA *a = a_;                                                       \
		const TB *b = b_;                                                       \
		if (sa && sb) {                                                         \
			for (int64_t i = 0; i < n; i++) {                               \
				TA x = a[i];                                            \
				TB y = b[i];                                            \
				o[i] = (TO)(EXPR);                                      \
			}                                                               \
		} else if (sa) {                                                        \
			TB y = b[0];                                                    \
			for (int64_t i = 0; i < n; i++) {                               \
				TA x = a[i];                                            \
				o[i] = (TO)(EXPR);                                      \
			}                                                               \
		} else if (sb) {                                                        \
			TA x = a[0];                                                    \
			for (int64_t i = 0; i < n; i++) {                               \
				TB y = b[i];                                            \
				o[i] = (TO)(EXPR);                                      \
			}                                                               \
		} else {                                                                \
			TA x = a[0];                                                    \
			TB y = b[0];                                                    \
			TO r = (TO)(EXPR);                                              \
			for (int64_t i = 0; i < n; i++)                                 \
				o[i] = r;                                               \
		}                                                                       \
	}

/* Integer division truncates toward zero (C, and onnxruntime); x / 0 is 0 rather than
 * a crash, and INT_MIN / -1 wraps. */
static inline int32_t div_i32(int32_t x, int32_t y)
{
	return y == 0 ? 0 : y == -1 ? (int32_t)(0u - (uint32_t)x) : x / y;
}

static inline int64_t div_i64(int64_t x, int64_t y)
{
	return y == 0 ? 0 : y == -1 ? (int64_t)(0ull - (uint64_t)x) : x / y;
}

/* NaN-propagating, as numpy's maximum and minimum. */
#define MAXF(x, y) ((x) > (y) || (x) != (x) ? (x) : (y))
#define MINF(x, y) ((x) < (y) || (x) != (x) ? (x) : (y))

DEF_ROW(add_f32, float, float, float, x + y)
DEF_ROW(sub_f32, float, float, float, x - y)
DEF_ROW(mul_f32, float, float, float, x * y)
DEF_ROW(div_f32, float, float, float, x / y)
DEF_ROW(max_f32, float, float, float, MAXF(x, y))
DEF_ROW(min_f32, float, float, float, MINF(x, y))
DEF_ROW(prelu_f32, float, float, float, x < 0 ? x * y : x)
DEF_ROW(eq_f32, float, float, uint8_t, x == y)
DEF_ROW(lt_f32, float, float, uint8_t, x < y)
DEF_ROW(gt_f32, float, float, uint8_t, x > y)
DEF_ROW(le_f32, float, float, uint8_t, x <= y)
DEF_ROW(ge_f32, float, float, uint8_t, x >= y)

/* Wrapping arithmetic through unsigned types: overflow is no undefined behaviour. */
DEF_ROW(add_i32, int32_t, int32_t, int32_t, (uint32_t)x + (uint32_t)y)
DEF_ROW(sub_i32, int32_t, int32_t, int32_t, (uint32_t)x - (uint32_t)y)
DEF_ROW(mul_i32, int32_t, int32_t, int32_t, (uint32_t)x * (uint32_t)y)
DEF_ROW(div_i32r, int32_t, int32_t, int32_t, div_i32(x, y))
DEF_ROW(max_i32, int32_t, int32_t, int32_t, x > y ? x : y)
DEF_ROW(min_i32, int32_t, int32_t, int32_t, x < y ? x : y)
DEF_ROW(prelu_i32, int32_t, int32_t, int32_t, x < 0 ? (uint32_t)x * (uint32_t)y : (uint32_t)x)
DEF_ROW(eq_i32, int32_t, int32_t, uint8_t, x == y)
DEF_ROW(lt_i32, int32_t, int32_t, uint8_t, x < y)
DEF_ROW(gt_i32, int32_t, int32_t, uint8_t, x > y)
DEF_ROW(le_i32, int32_t, int32_t, uint8_t, x <= y)
DEF_ROW(ge_i32, int32_t, int32_t, uint8_t, x >= y)

DEF_ROW(add_i64, int64_t, int64_t, int64_t, (uint64_t)x + (uint64_t)y)
DEF_ROW(sub_i64, int64_t, int64_t, int64_t, (uint64_t)x - (uint64_t)y)
DEF_ROW(mul_i64, int64_t, int64_t, int64_t, (uint64_t)x * (uint64_t)y)
DEF_ROW(div_i64r, int64_t, int64_t, int64_t, div_i64(x, y))
DEF_ROW(max_i64, int64_t, int64_t, int64_t, x > y ? x : y)
DEF_ROW(min_i64, int64_t, int64_t, int64_t, x < y ? x : y)
DEF_ROW(prelu_i64, int64_t, int64_t, int64_t, x < 0 ? (uint64_t)x * (uint64_t)y : (uint64_t)x)
DEF_ROW(eq_i64, int64_t, int64_t, uint8_t, x == y)
DEF_ROW(lt_i64, int64_t, int64_t, uint8_t, x < y)
DEF_ROW(gt_i64, int64_t, int64_t, uint8_t, x > y)
DEF_ROW(le_i64, int64_t, int64_t, uint8_t, x <= y)
DEF_ROW(ge_i64, int64_t, int64_t, uint8_t, x >= y)

DEF_ROW(and_b, uint8_t, uint8_t, uint8_t, (x != 0) & (y != 0))
DEF_ROW(or_b, uint8_t, uint8_t, uint8_t, (x != 0) | (y != 0))
DEF_ROW(xor_b, uint8_t, uint8_t, uint8_t, (x != 0) ^ (y != 0))
DEF_ROW(eq_b, uint8_t, uint8_t, uint8_t, (x != 0) == (y != 0))

/* Pow with a repeated exponent is mostly x^2 (variance in decomposed norms) or a root. */
static void pow_f32(void *o_, const void *a_, int64_t sa, const void *b_, int64_t sb,
		    int64_t n)
{
	float *o = o_;
	const float *a = a_, *b = b_;

	if (sa && !sb) {
		float y = b[0];
		if (y == 2) {
			for (int64_t i = 0; i < n; i++)
				o[i] = a[i] * a[i];
		} else if (y == 1) {
			for (int64_t i = 0; i < n; i++)
				o[i] = a[i];
		} else if (y == 3) {
			for (int64_t i = 0; i < n; i++)
				o[i] = a[i] * a[i] * a[i];
		} else if (y == 0.5f) {
			for (int64_t i = 0; i < n; i++)
				o[i] = sqrt(a[i]);
		} else {
			for (int64_t i = 0; i < n; i++)
				o[i] = pow(a[i], y);
		}
		return;
	}
	for (int64_t i = 0; i < n; i++)
		o[i] = pow(a[i * sa], b[i * sb]);
}

/* ---- the generic element-wise path ---------------------------------------------------- */

enum bin_code {
	B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MOD, B_PRELU, B_BITSHIFT,
	B_EQUAL, B_LESS, B_GREATER, B_LESS_EQUAL, B_GREATER_EQUAL, B_AND, B_OR, B_XOR,
	B_COUNT,
	/* variadic ops reuse the binary kernels of these */
	V_SUM = B_COUNT, V_MEAN, V_MAX, V_MIN, V_END,
	B_MAX = V_MAX, B_MIN = V_MIN,
};

static int is_compare(int code)
{
	return code >= B_EQUAL && code <= B_XOR;
}

static int64_t ipow(int64_t x, int64_t y)
{
	uint64_t r = 1, b = (uint64_t)x;

	if (y < 0)
		return x == 1 ? 1 : x == -1 ? (y & 1 ? -1 : 1) : 0;
	for (; y; y >>= 1, b *= b)
		if (y & 1)
			r *= b;
	return (int64_t)r;
}

/* Integer ops; uns: the operands are uint64 bit patterns. */
static int64_t bin_i(int code, int64_t x, int64_t y, int uns, int fmod_, int left)
{
	uint64_t ux = (uint64_t)x, uy = (uint64_t)y;

	switch (code) {
	case B_ADD: case V_SUM: case V_MEAN: return (int64_t)(ux + uy);
	case B_SUB: return (int64_t)(ux - uy);
	case B_MUL: return (int64_t)(ux * uy);
	case B_DIV: return uns ? (uy ? (int64_t)(ux / uy) : 0) : div_i64(x, y);
	case B_MOD:
		if (uns)
			return uy ? (int64_t)(ux % uy) : 0;
		if (y == 0)
			return 0;
		if (y == -1)
			return 0;
		{
			int64_t r = x % y;
			/* fmod = 0 takes the divisor's sign, as Python's % does */
			if (!fmod_ && r != 0 && (r < 0) != (y < 0))
				r += y;
			return r;
		}
	case B_POW: return ipow(x, y);
	case B_PRELU: return x < 0 ? (int64_t)(ux * uy) : x;
	case B_BITSHIFT:
		if (uy >= 64)
			return 0;
		return (int64_t)(left ? ux << uy : ux >> uy);
	case B_MAX: return uns ? (ux > uy ? x : y) : (x > y ? x : y);
	case B_MIN: return uns ? (ux < uy ? x : y) : (x < y ? x : y);
	case B_EQUAL: return x == y;
	case B_LESS: return uns ? ux < uy : x < y;
	case B_GREATER: return uns ? ux > uy : x > y;
	case B_LESS_EQUAL: return uns ? ux <= uy : x <= y;
	case B_GREATER_EQUAL: return uns ? ux >= uy : x >= y;
	case B_AND: return (x != 0) & (y != 0);
	case B_OR: return (x != 0) | (y != 0);
	case B_XOR: return (x != 0) ^ (y != 0);
	default: return 0;
	}
}

static double bin_d(int code, double x, double y)
{
	switch (code) {
	case B_ADD: case V_SUM: case V_MEAN: return x + y;
	case B_SUB: return x - y;
	case B_MUL: return x * y;
	case B_DIV: return x / y;
	case B_MOD: return fmod(x, y);
	case B_POW: return pow(x, y);
	case B_PRELU: return x < 0 ? x * y : x;
	case B_MAX: return MAXF(x, y);
	case B_MIN: return MINF(x, y);
	case B_EQUAL: return x == y;
	case B_LESS: return x < y;
	case B_GREATER: return x > y;
	case B_LESS_EQUAL: return x <= y;
	case B_GREATER_EQUAL: return x >= y;
	default: return 0;
	}
}

/* Extra parameters of some binary ops. */
struct bin_params {
	int fmod_;      /* Mod */
	int left;       /* BitShift */
};

/* out = a (op) b for any numeric dtypes, element by element.  a may be out. */
static void generic_binary(int code, const struct bcast *bc, void *o, int dto, const void *a,
			   int dta, const void *b, int dtb, const struct bin_params *p)
{
	int64_t sa = inner_stride(bc, 0), sb = inner_stride(bc, 1), off[3];
	/* The domain: integers when the first operand (the result's type for arithmetic,
	 * the compared type otherwise) is integer, except Pow with a float exponent. */
	int ints = !is_floaty(dta) && !(code == B_POW && is_floaty(dtb));
	int uns = dta == GRAFT_UINT64;

	if (bc->total == 0)
		return;
	for (uint64_t row = 0; row < bc->rows; row++) {
		row_offsets(bc, row, off);
		for (int64_t i = 0; i < bc->inner; i++) {
			uint64_t io = row * (uint64_t)bc->inner + (uint64_t)i;
			uint64_t ia = (uint64_t)(off[0] + i * sa), ib = (uint64_t)(off[1] + i * sb);
			if (ints)
				elem_put_i64(o, dto, io, bin_i(code, elem_get_i64(a, dta, ia), elem_get_i64(b, dtb, ib), uns,
						       p->fmod_, p->left));
			else if (is_compare(code))
				elem_put_i64(o, dto, io, (int64_t)bin_d(code, elem_get_f64(a, dta, ia), elem_get_f64(b, dtb, ib)));
			else
				elem_put_f64(o, dto, io, bin_d(code, elem_get_f64(a, dta, ia), elem_get_f64(b, dtb, ib)));
		}
	}
}

/* The row kernel for code on dtype (both operands), or NULL for the generic path. */
static row_fn fast_row(int code, int dt, int dtb)
{
	static const row_fn f32[V_END] = {
		[B_ADD] = add_f32, [B_SUB] = sub_f32, [B_MUL] = mul_f32, [B_DIV] = div_f32,
		[B_POW] = pow_f32, [B_PRELU] = prelu_f32, [B_EQUAL] = eq_f32, [B_LESS] = lt_f32,
		[B_GREATER] = gt_f32, [B_LESS_EQUAL] = le_f32, [B_GREATER_EQUAL] = ge_f32,
		[V_SUM] = add_f32, [V_MEAN] = add_f32, [V_MAX] = max_f32, [V_MIN] = min_f32,
	};
	static const row_fn i32[V_END] = {
		[B_ADD] = add_i32, [B_SUB] = sub_i32, [B_MUL] = mul_i32, [B_DIV] = div_i32r,
		[B_PRELU] = prelu_i32, [B_EQUAL] = eq_i32, [B_LESS] = lt_i32,
		[B_GREATER] = gt_i32, [B_LESS_EQUAL] = le_i32, [B_GREATER_EQUAL] = ge_i32,
		[V_SUM] = add_i32, [V_MAX] = max_i32, [V_MIN] = min_i32,
	};
	static const row_fn i64[V_END] = {
		[B_ADD] = add_i64, [B_SUB] = sub_i64, [B_MUL] = mul_i64, [B_DIV] = div_i64r,
		[B_PRELU] = prelu_i64, [B_EQUAL] = eq_i64, [B_LESS] = lt_i64,
		[B_GREATER] = gt_i64, [B_LESS_EQUAL] = le_i64, [B_GREATER_EQUAL] = ge_i64,
		[V_SUM] = add_i64, [V_MAX] = max_i64, [V_MIN] = min_i64,
	};
	static const row_fn b8[V_END] = {
		[B_AND] = and_b, [B_OR] = or_b, [B_XOR] = xor_b, [B_EQUAL] = eq_b,
	};

	if (dt != dtb || code < 0 || code >= V_END)
		return NULL;
	switch (dt) {
	case GRAFT_FLOAT: return f32[code];
	case GRAFT_INT32: return i32[code];
	case GRAFT_INT64: return i64[code];
	case GRAFT_BOOL: return b8[code];
	default: return NULL;
	}
}

static void apply_binary(int code, const struct bcast *bc, struct value *o, const void *a,
			 int dta, const void *b, int dtb, const struct bin_params *p)
{
	row_fn f = fast_row(code, dta, dtb);

	if (f)
		run_rows(bc, f, o->data, graft_dtype_size(o->dtype), a, graft_dtype_size(dta), b,
			 graft_dtype_size(dtb));
	else
		generic_binary(code, bc, o->data, o->dtype, a, dta, b, dtb, p);
}

/* ---- unary ops ---------------------------------------------------------------------------- */

/*
 * exp for float32 without a call, so that loops over it vectorize (Cephes' expf: a
 * degree-6 polynomial on [-ln2/2, ln2/2] scaled by 2^k; within 2 ulp).  2^k is applied
 * as two factors so that subnormal results and those near FLT_MAX come out right.
 */
static inline float exp_f32(float x)
{
	float t = x > 88.7228394f ? 88.7228394f : x;
	t = t < -104.0f ? -104.0f : t;
	float k = t * 1.44269504088896341f + 12582912.0f;       /* round to nearest */
	k -= 12582912.0f;
	float r = t - k * 0.693359375f + k * 2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	int32_t k1 = (int32_t)k / 2, k2 = (int32_t)k - k1;     /* each within -75..64 */
	uint32_t b1 = (uint32_t)(k1 + 127) << 23, b2 = (uint32_t)(k2 + 127) << 23;
	float s1, s2;
	memcpy(&s1, &b1, 4);
	memcpy(&s2, &b2, 4);
	float y = p * s1 * s2;
	y = x > 88.7228394f ? INFINITY : y;
	return x != x ? x : y;
}

/* tanh for float32, vectorizable (Cephes' tanhf: an odd polynomial below 0.625, else
 * from exp; within 3 ulp). */
static inline float tanh_f32(float x)
{
	float a = fabsf(x), s = x * x;
	float p = -5.70498872745e-3f;
	p = p * s + 2.06390887954e-2f;
	p = p * s - 5.37397155531e-2f;
	p = p * s + 1.33314422036e-1f;
	p = p * s - 3.33332819422e-1f;
	float small = p * s * x + x;
	float big = 1.0f - 2.0f / (exp_f32(2.0f * a) + 1.0f);
	big = x < 0 ? -big : big;
	return a < 0.625f ? small : big;
}

/* erf for float32, vectorizable: Cephes' odd polynomial below 1 (relative error near 0
 * stays tiny), Abramowitz and Stegun 7.1.26 above; within 4 ulp. */
static inline float erf_f32(float x)
{
	float a = fabsf(x), s = x * x;
	float p = 7.853861353153693e-5f;
	p = p * s - 8.010193625184903e-4f;
	p = p * s + 5.188327685732524e-3f;
	p = p * s - 2.685381193529856e-2f;
	p = p * s + 1.128358514861418e-1f;
	p = p * s - 3.761262582423300e-1f;
	p = p * s + 1.128379165726710e+0f;
	float small = x * p;
	float t = 1.0f / (1.0f + 0.3275911f * a);
	float q = 1.061405429f;
	q = q * t - 1.453152027f;
	q = q * t + 1.421413741f;
	q = q * t - 0.284496736f;
	q = q * t + 0.254829592f;
	float big = 1.0f - q * t * exp_f32(-s);
	big = x < 0 ? -big : big;
	return a < 1.0f ? small : big;
}

#define EXP_FAST(v) _Generic((v), float: exp_f32, default: exp)(v)
#define TANH_FAST(v) _Generic((v), float: tanh_f32, default: tanh)(v)
#define ERF_FAST(v) _Generic((v), float: erf_f32, default: erf)(v)
#define CLAMP01(v) ((v) < 0 ? 0 : (v) > 1 ? 1 : (v))
#define SOFTPLUS(v) ((v) > 0 ? (v) + log1p(exp(-(v))) : log1p(exp(v)))

/*
 * The unary float ops: code, ONNX name, up to two float attributes with defaults (al,
 * be in the expression), whether integer inputs are allowed (they have their own code
 * in unary_i), and the result for v of type T (float or double: <tgmath.h> picks the
 * function).
 */
#define UNARY_OPS(X)                                                                     \
	X(RELU, "Relu", NULL, 0, NULL, 0, 1, v < 0 ? 0 : v)                              \
	X(LEAKY_RELU, "LeakyRelu", "alpha", 0.01f, NULL, 0, 0, v < 0 ? al * v : v)        \
	X(ELU, "Elu", "alpha", 1.0f, NULL, 0, 0, v < 0 ? al * expm1(v) : v)               \
	X(SELU, "Selu", "alpha", 1.67326319217681884765625f, "gamma",                    \
	  1.05070102214813232421875f, 0, v > 0 ? be * v : be * al * expm1(v))            \
	X(CELU, "Celu", "alpha", 1.0f, NULL, 0, 0, v > 0 ? v : al * expm1(v / al))        \
	X(THRESHOLDED_RELU, "ThresholdedRelu", "alpha", 1.0f, NULL, 0, 0, v > al ? v : 0) \
	X(SIGMOID, "Sigmoid", NULL, 0, NULL, 0, 0, 1 / (1 + EXP_FAST(-v)))                 \
	X(HARD_SIGMOID, "HardSigmoid", "alpha", 0.2f, "beta", 0.5f, 0,                    \
	  CLAMP01(al * v + be))                                                          \
	X(HARD_SWISH, "HardSwish", NULL, 0, NULL, 0, 0,                                   \
	  v * CLAMP01(v * (T)(1.0 / 6) + (T)0.5))                                        \
	X(TANH, "Tanh", NULL, 0, NULL, 0, 0, TANH_FAST(v))                                \
	X(SOFTPLUS, "Softplus", NULL, 0, NULL, 0, 0, SOFTPLUS(v))                         \
	X(SOFTSIGN, "Softsign", NULL, 0, NULL, 0, 0, v / (1 + fabs(v)))                   \
	X(MISH, "Mish", NULL, 0, NULL, 0, 0, v * TANH_FAST(SOFTPLUS(v)))                  \
	X(ERF, "Erf", NULL, 0, NULL, 0, 0, ERF_FAST(v))                                   \
	X(EXP, "Exp", NULL, 0, NULL, 0, 0, EXP_FAST(v))                                   \
	X(LOG, "Log", NULL, 0, NULL, 0, 0, log(v))                                        \
	X(SQRT, "Sqrt", NULL, 0, NULL, 0, 0, sqrt(v))                                     \
	X(NEG, "Neg", NULL, 0, NULL, 0, 1, -v)                                            \
	X(ABS, "Abs", NULL, 0, NULL, 0, 1, fabs(v))                                       \
	X(RECIPROCAL, "Reciprocal", NULL, 0, NULL, 0, 0, 1 / v)                           \
	X(FLOOR, "Floor", NULL, 0, NULL, 0, 0, floor(v))                                  \
	X(CEIL, "Ceil", NULL, 0, NULL, 0, 0, ceil(v))                                     \
	X(ROUND, "Round", NULL, 0, NULL, 0, 0, nearbyint(v)) /* halves to even */         \
	X(SIGN, "Sign", NULL, 0, NULL, 0, 1, v > 0 ? 1 : v < 0 ? -1 : v)                  \
	X(SIN, "Sin", NULL, 0, NULL, 0, 0, sin(v))                                        \
	X(COS, "Cos", NULL, 0, NULL, 0, 0, cos(v))                                        \
	X(TAN, "Tan", NULL, 0, NULL, 0, 0, tan(v))                                        \
	X(ASIN, "Asin", NULL, 0, NULL, 0, 0, asin(v))                                     \
	X(ACOS, "Acos", NULL, 0, NULL, 0, 0, acos(v))                                     \
	X(ATAN, "Atan", NULL, 0, NULL, 0, 0, atan(v))                                     \
	X(SINH, "Sinh", NULL, 0, NULL, 0, 0, sinh(v))                                     \
	X(COSH, "Cosh", NULL, 0, NULL, 0, 0, cosh(v))                                     \
	X(ASINH, "Asinh", NULL, 0, NULL, 0, 0, asinh(v))                                  \
	X(ACOSH, "Acosh", NULL, 0, NULL, 0, 0, acosh(v))                                  \
	X(ATANH, "Atanh", NULL, 0, NULL, 0, 0, atanh(v))                                  \
	X(SHRINK, "Shrink", "bias", 0.0f, "lambd", 0.5f, 1,                               \
	  v < -be ? v + al : v > be ? v - al : 0)

enum unary_code {
#define X(code, name, a1, d1, a2, d2, ints, expr) U_##code,
	UNARY_OPS(X)
#undef X
	U_COUNT
};

typedef void (*unary_fn)(float *restrict y, const float *restrict x, int64_t n, float al,
			 float be);

#define X(code, name, a1, d1, a2, d2, ints, expr)                                       \
	static void unary_f32_##code(float *restrict y, const float *restrict x, int64_t n, \
				     float al, float be)                                \
	{                                                                               \
		typedef float T;                                                        \
		(void)al;                                                               \
		(void)be;                                                               \
		for (int64_t i = 0; i < n; i++) {                                       \
			T v = x[i];                                                     \
			y[i] = (T)(expr);                                               \
		}                                                                       \
	}
UNARY_OPS(X)
#undef X

static const struct unary_info {
	unary_fn f32;
	const char *a1, *a2;
	float d1, d2;
	int ints;
} unary_info[U_COUNT] = {
#define X(code, name, a1, d1, a2, d2, ints, expr) \
	[U_##code] = {unary_f32_##code, a1, a2, d1, d2, ints},
	UNARY_OPS(X)
#undef X
};

static double unary_d(int code, double v, double al, double be)
{
	typedef double T;

	switch (code) {
#define X(code, name, a1, d1, a2, d2, ints, expr) \
	case U_##code:                            \
		return (T)(expr);
		UNARY_OPS(X)
#undef X
	default:
		return 0;
	}
}

static int64_t unary_i(int code, int64_t v, int uns, double al, double be)
{
	switch (code) {
	case U_RELU: return !uns && v < 0 ? 0 : v;
	case U_NEG: return (int64_t)(0ull - (uint64_t)v);
	case U_ABS: return !uns && v < 0 ? (int64_t)(0ull - (uint64_t)v) : v;
	case U_SIGN: return uns ? v != 0 : (v > 0) - (v < 0);
	case U_SHRINK: {
		double x = uns ? (double)(uint64_t)v : (double)v;
		return elem_sat_i64(x < -be ? x + al : x > be ? x - al : 0);
	}
	default: return 0;
	}
}

/* Runs a contiguous float kernel over n elements, in chunks across threads. */
static void par_unary(unary_fn f, float *y, const float *x, int64_t n, float al, float be)
{
	int64_t chunks = (n + CHUNK - 1) / CHUNK;

#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
	for (int64_t c = 0; c < chunks; c++) {
		int64_t s = c * CHUNK;
		f(y + s, x + s, n - s < CHUNK ? n - s : CHUNK, al, be);
	}
}

static const struct op_def unary_ops[U_COUNT];

static int unary_code(const struct node *n)
{
	return (int)(n->op - unary_ops);
}

static int unary_infer(struct node *n, struct graft_err *err)
{
	int code = unary_code(n), rc;
	const struct value *x;

	if ((rc = check_io(n, err, 1, 1, 1)))
		return rc;
	x = n->in[0];
	if (!is_floaty(x->dtype) && !(unary_info[code].ints && is_inty(x->dtype)))
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input type %s is not supported",
				dtype_label(x->dtype));
	value_set(n->out[0], x->dtype, x->rank, x->dims);
	return 0;
}

static int unary_run(struct node *n, struct graft_err *err)
{
	int code = unary_code(n);
	const struct unary_info *u = &unary_info[code];
	const struct value *x = n->in[0];
	struct value *y = n->out[0];
	uint64_t count = value_numel(x);
	float al = u->a1 ? attr_float(n, u->a1, u->d1) : u->d1;
	float be = u->a2 ? attr_float(n, u->a2, u->d2) : u->d2;

	(void)err;
	if (x->dtype == GRAFT_FLOAT) {
		par_unary(u->f32, y->data, x->data, (int64_t)count, al, be);
	} else if (is_floaty(x->dtype)) {
		for (uint64_t i = 0; i < count; i++)
			elem_put_f64(y->data, y->dtype, i, unary_d(code, elem_get_f64(x->data, x->dtype, i), al, be));
	} else {
		int uns = x->dtype == GRAFT_UINT64;
		for (uint64_t i = 0; i < count; i++)
			elem_put_i64(y->data, y->dtype, i,
			     unary_i(code, elem_get_i64(x->data, x->dtype, i), uns, al, be));
	}
	return 0;
}

/* f(0) == 0: the executor may run these over blocked layouts, padding included. */
#define ZERO_PRESERVING(c) \
	((c) == U_RELU || (c) == U_LEAKY_RELU || (c) == U_HARD_SWISH || (c) == U_TANH || \
	 (c) == U_NEG || (c) == U_ABS)

static const struct op_def unary_ops[U_COUNT] = {
#define X(code, name, a1, d1, a2, d2, ints, expr) \
	[U_##code] = {name, unary_infer, unary_run, NULL, \
		      ZERO_PRESERVING(U_##code) ? OP_LAYOUT_TRANSPARENT : 0, 0},
	UNARY_OPS(X)
#undef X
};

/* ---- binary ops --------------------------------------------------------------------------- */

static const struct op_def binary_ops[B_COUNT];

static int binary_code(const struct node *n)
{
	return (int)(n->op - binary_ops);
}

/*
 * The shape input k is read with.  Before opset 7, arithmetic and comparisons took
 * broadcast=1 (and optionally axis) to stretch B over A, B's dims lining up with A's from
 * axis on; before opset 7 PRelu's slope of C values meant one per channel (axis 1).
 * Everything else is numpy broadcasting.
 */
static int eff_shape(const struct node *n, int code, int k, struct shape *s,
		     struct graft_err *err)
{
	const struct value *a = n->in[0], *b = n->in[k];
	const Onnx__AttributeProto *ax;
	int64_t axis;

	shape_of(b, s);
	if (k != 1 || n->opset >= 7)
		return 0;
	if (code == B_PRELU) {
		if (b->rank == 1 && a->rank >= 2 && b->dims[0] == a->dims[1] && b->dims[0] != 1) {
			s->rank = a->rank - 1;
			for (int d = 1; d < s->rank; d++)
				s->dims[d] = 1;
		}
		return 0;
	}
	if (!attr_int(n, "broadcast", 0) || !(ax = attr_find(n, "axis")) || !ax->has_i)
		return 0;
	axis = ax->i < 0 ? ax->i + a->rank : ax->i;
	if (axis < 0 || axis + b->rank > a->rank)
		return node_err(n, err, GRAFT_EFORMAT, "axis %lld does not fit B (rank %d) in A "
				"(rank %d)", (long long)ax->i, b->rank, a->rank);
	s->rank = a->rank;
	for (int d = 0; d < a->rank; d++)
		s->dims[d] = d >= axis && d < axis + b->rank ? b->dims[d - axis] : 1;
	return 0;
}

static int binary_infer(struct node *n, struct graft_err *err)
{
	int code = binary_code(n), rc, r, out_dt;
	const struct value *a, *b;
	struct shape sa, sb;
	int64_t dims[NET_MAX_RANK];

	if ((rc = check_io(n, err, 2, 2, 2)))
		return rc;
	a = n->in[0];
	b = n->in[1];
	out_dt = a->dtype;
	switch (code) {
	case B_AND: case B_OR: case B_XOR:
		if (a->dtype != GRAFT_BOOL || b->dtype != GRAFT_BOOL)
			return node_err(n, err, GRAFT_EFORMAT, "inputs must be bool, not %s and %s",
					dtype_label(a->dtype), dtype_label(b->dtype));
		break;
	case B_POW:
		if (!is_numeric(a->dtype) || !is_numeric(b->dtype))
			return node_err(n, err, GRAFT_EUNSUPPORTED, "types %s and %s are not supported",
					dtype_label(a->dtype), dtype_label(b->dtype));
		break;
	case B_BITSHIFT:
		if (a->dtype != b->dtype || !is_inty(a->dtype))
			return node_err(n, err, GRAFT_EFORMAT, "inputs must be one integer type, not "
					"%s and %s", dtype_label(a->dtype), dtype_label(b->dtype));
		if (!attr_string_eq(n, "direction", "", "LEFT") &&
		    !attr_string_eq(n, "direction", "", "RIGHT"))
			return node_err(n, err, GRAFT_EFORMAT, "direction must be LEFT or RIGHT");
		break;
	default:
		if (a->dtype != b->dtype)
			return node_err(n, err, GRAFT_EFORMAT, "input types differ: %s and %s",
					dtype_label(a->dtype), dtype_label(b->dtype));
		if (!is_numeric(a->dtype) && !(code == B_EQUAL && a->dtype == GRAFT_BOOL))
			return node_err(n, err, GRAFT_EUNSUPPORTED, "input type %s is not supported",
					dtype_label(a->dtype));
		if (code == B_MOD && is_floaty(a->dtype) && !attr_int(n, "fmod", 0))
			return node_err(n, err, GRAFT_EFORMAT, "float inputs need fmod=1");
	}
	if (is_compare(code))
		out_dt = GRAFT_BOOL;
	shape_of(a, &sa);
	if ((rc = eff_shape(n, code, 1, &sb, err)))
		return rc;
	if (broadcast_dims(sa.rank, sa.dims, sb.rank, sb.dims, &r, dims))
		return node_err(n, err, GRAFT_EFORMAT, "shapes of '%s' and '%s' do not broadcast",
				a->name, b->name);
	if (code == B_PRELU && (r != a->rank || memcmp(dims, a->dims, sizeof(dims[0]) * (size_t)r)))
		return node_err(n, err, GRAFT_EFORMAT, "slope '%s' does not broadcast to X",
				b->name);
	value_set(n->out[0], out_dt, r, dims);
	return 0;
}

static int binary_run(struct node *n, struct graft_err *err)
{
	int code = binary_code(n), rc;
	const struct value *a = n->in[0], *b = n->in[1];
	struct shape sh[2];
	struct bcast bc;
	struct bin_params p = {(int)attr_int(n, "fmod", 0),
			       attr_string_eq(n, "direction", "", "LEFT")};

	shape_of(a, &sh[0]);
	if ((rc = eff_shape(n, code, 1, &sh[1], err)))
		return rc;
	bcast_init(&bc, n->out[0], 2, sh);
	apply_binary(code, &bc, n->out[0], a->data, a->dtype, b->data, b->dtype, &p);
	return 0;
}

/* Whether s (float) broadcasts to x's (N, C, H, W) per channel: [C, 1, 1], [1, C, 1, 1]
 * or [N, C, 1, 1] (*per_sample: the distance between its samples' channels, else 0), or
 * a single value (*scalar).  s may be blocked where it is [N, C, 1, 1] (a convolution's
 * output): with one pixel, that is plain but for the padded channels. */
static int per_channel(const struct value *s, const struct channel_blocks *b,
		       int64_t *per_sample, int *scalar)
{
	struct channel_blocks sb;

	*per_sample = *scalar = 0;
	if (s->dtype != GRAFT_FLOAT)
		return 0;
	if (s->layout) {
		if (!onednn_channel_blocks(s, &sb) || sb.HW != 1 || sb.C != b->C ||
		    (sb.N != 1 && sb.N != b->N))
			return 0;
		*per_sample = sb.N == 1 ? 0 : sb.C_pad;
		return 1;
	}
	if (value_numel(s) == 1 && s->rank <= 4)
		return *scalar = 1;
	if (s->rank < 3 || s->dims[s->rank - 1] != 1 || s->dims[s->rank - 2] != 1 ||
	    s->dims[s->rank - 3] != b->C)
		return 0;
	if (s->rank == 4 && s->dims[0] != 1) {
		if (s->dims[0] != b->N)
			return 0;
		*per_sample = b->C;
	}
	return 1;
}

/*
 * Mul of a blocked X (nChw16c, nChw8c, nhwc) by a per-channel scale, either way round:
 * squeeze-and-excitation's gate (EfficientNet, MobileNetV3).  The product stays in X's
 * layout for the convolution that reads it; the plain route reordered X out and the
 * product back in (a quarter of efficientnet_b0's time at batch 1).
 */
static int mul_run_blocked(struct node *n, struct graft_err *err)
{
	struct value *y = n->out[0];
	struct channel_blocks b;
	int64_t per_sample;
	int k, scalar, rc;

	if (binary_code(n) != B_MUL || n->n_in != 2 || !n->in[0] || !n->in[1] ||
	    !(y->flags & VALUE_BLOCKABLE) || y->rank != 4)
		return OPS_DECLINED;
	/* X: the input of y's shape */
	k = n->in[0]->rank == 4 && memcmp(n->in[0]->dims, y->dims, 4 * sizeof(int64_t)) == 0 ? 0 : 1;
	const struct value *x = n->in[k], *s = n->in[1 - k];
	if (x->dtype != GRAFT_FLOAT || !onednn_channel_blocks(x, &b) ||
	    memcmp(y->dims, x->dims, 4 * sizeof(int64_t)) != 0 ||
	    !per_channel(s, &b, &per_sample, &scalar))
		return OPS_DECLINED;
	if ((!y->layout || !onednn_md_same(y->layout, x->layout)) &&
	    (rc = onednn_keep_layout(n, y, x->layout, err)))
		return rc;
	const float *X = x->data, *S = s->data;
	float *Y = y->data;
	int64_t blocks = b.C_pad / b.B, block = b.HW * b.B;
#pragma omp parallel for schedule(static) if (b.N * b.C_pad * b.HW > PAR_MIN)
	for (int64_t nb = 0; nb < b.N * blocks; nb++) {
		int64_t c0 = nb % blocks * b.B, lanes = b.C - c0 < b.B ? b.C - c0 : b.B;
		const float *sv = scalar ? S : S + nb / blocks * per_sample + c0;
		const float *xb = X + nb * block;
		float *yb = Y + nb * block;
		for (int64_t hw = 0; hw < b.HW; hw++) {
			const float *xp = xb + hw * b.B;
			float *yp = yb + hw * b.B;
			if (scalar) {
#pragma omp simd
				for (int64_t l = 0; l < lanes; l++)
					yp[l] = xp[l] * sv[0];
			} else {
#pragma omp simd
				for (int64_t l = 0; l < lanes; l++)
					yp[l] = xp[l] * sv[l];
			}
			for (int64_t l = lanes; l < b.B; l++)
				yp[l] = 0;      /* the padding stays zero */
		}
	}
	return 0;
}

/* Frees the scratch buffer backward keeps (an input's gradient at the output's shape). */
static void scratch_release(struct node *n)
{
	free(n->priv);
	n->priv = NULL;
}

#define BINARY_DEF(code, name) \
	[code] = {name, binary_infer, binary_run, scratch_release, \
		  (code) == B_ADD || (code) == B_SUB || (code) == B_MUL ? OP_LAYOUT_TRANSPARENT : 0, 0}
static const struct op_def binary_ops[B_COUNT] = {
	BINARY_DEF(B_ADD, "Add"), BINARY_DEF(B_SUB, "Sub"), BINARY_DEF(B_MUL, "Mul"),
	BINARY_DEF(B_DIV, "Div"), BINARY_DEF(B_POW, "Pow"), BINARY_DEF(B_MOD, "Mod"),
	BINARY_DEF(B_PRELU, "PRelu"), BINARY_DEF(B_BITSHIFT, "BitShift"),
	BINARY_DEF(B_EQUAL, "Equal"), BINARY_DEF(B_LESS, "Less"),
	BINARY_DEF(B_GREATER, "Greater"), BINARY_DEF(B_LESS_EQUAL, "LessOrEqual"),
	BINARY_DEF(B_GREATER_EQUAL, "GreaterOrEqual"), BINARY_DEF(B_AND, "And"),
	BINARY_DEF(B_OR, "Or"), BINARY_DEF(B_XOR, "Xor"),
};

/* ---- variadic ops: Sum, Mean, Max, Min ------------------------------------------------ */

static const struct op_def variadic_ops[V_END - V_SUM];

static int variadic_code(const struct node *n)
{
	return V_SUM + (int)(n->op - variadic_ops);
}

static int variadic_infer(struct node *n, struct graft_err *err)
{
	int code = variadic_code(n), rc, r;
	const struct value *a;
	int64_t dims[NET_MAX_RANK];

	if ((rc = check_io(n, err, 1, SIZE_MAX, n->n_in)))
		return rc;
	a = n->in[0];
	if (code == V_SUM || code == V_MEAN ? !is_floaty(a->dtype) : !is_numeric(a->dtype))
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input type %s is not supported",
				dtype_label(a->dtype));
	r = a->rank;
	memcpy(dims, a->dims, sizeof(dims[0]) * (size_t)r);
	for (size_t k = 1; k < n->n_in; k++) {
		const struct value *b = n->in[k];
		if (b->dtype != a->dtype)
			return node_err(n, err, GRAFT_EFORMAT, "input types differ: %s and %s",
					dtype_label(a->dtype), dtype_label(b->dtype));
		int64_t prev[NET_MAX_RANK];
		memcpy(prev, dims, sizeof(prev));      /* broadcast_dims must not write its input */
		if (broadcast_dims(r, prev, b->rank, b->dims, &r, dims))
			return node_err(n, err, GRAFT_EFORMAT, "shape of '%s' does not broadcast",
					b->name);
	}
	value_set(n->out[0], a->dtype, r, dims);
	return 0;
}

static int variadic_run(struct node *n, struct graft_err *err)
{
	int code = variadic_code(n);
	struct value *o = n->out[0];
	struct bin_params p = {0, 0};
	struct shape sh[2];
	struct bcast bc;

	(void)err;
	if (n->n_in == 1) {
		memcpy(o->data, n->in[0]->data, o->nbytes);
	} else {
		shape_of(n->in[0], &sh[0]);
		shape_of(n->in[1], &sh[1]);
		bcast_init(&bc, o, 2, sh);
		apply_binary(code, &bc, o, n->in[0]->data, o->dtype, n->in[1]->data, o->dtype, &p);
		/* the rest accumulate into the output in place */
		shape_of(o, &sh[0]);
		for (size_t k = 2; k < n->n_in; k++) {
			shape_of(n->in[k], &sh[1]);
			bcast_init(&bc, o, 2, sh);
			apply_binary(code, &bc, o, o->data, o->dtype, n->in[k]->data, o->dtype, &p);
		}
	}
	if (code == V_MEAN && n->n_in > 1) {
		uint64_t count = value_numel(o);
		if (o->dtype == GRAFT_FLOAT) {
			float *y = o->data, k = (float)n->n_in;
			for (uint64_t i = 0; i < count; i++)
				y[i] /= k;
		} else {
			for (uint64_t i = 0; i < count; i++)
				elem_put_f64(o->data, o->dtype, i, elem_get_f64(o->data, o->dtype, i) / (double)n->n_in);
		}
	}
	return 0;
}

static const struct op_def variadic_ops[V_END - V_SUM] = {
	[V_SUM - V_SUM] = {"Sum", variadic_infer, variadic_run, NULL, OP_LAYOUT_TRANSPARENT},
	[V_MEAN - V_SUM] = {"Mean", variadic_infer, variadic_run, NULL, 0},
	[V_MAX - V_SUM] = {"Max", variadic_infer, variadic_run, NULL, 0},
	[V_MIN - V_SUM] = {"Min", variadic_infer, variadic_run, NULL, 0},
};

/* ---- Where ------------------------------------------------------------------------------ */

#define DEF_WHERE(NAME, T)                                                               \
	static void NAME(void *o_, const uint8_t *c, int64_t sc, const void *x_, int64_t sx, \
			 const void *y_, int64_t sy, int64_t n)                          \
	{                                                                                \
		T *o = o_;                                                               \
		const T *x = x_, *y = y_;                                                \
		if (sc && sx && sy) {                                                    \
			for (int64_t i = 0; i < n; i++)                                  \
				o[i] = c[i] ? x[i] : y[i];                               \
		} else {                                                                 \
			for (int64_t i = 0; i < n; i++)                                  \
				o[i] = c[i * sc] ? x[i * sx] : y[i * sy];                \
		}                                                                        \
	}
DEF_WHERE(where_1, uint8_t)
DEF_WHERE(where_2, uint16_t)
DEF_WHERE(where_4, uint32_t)
DEF_WHERE(where_8, uint64_t)

static int where_infer(struct node *n, struct graft_err *err)
{
	const struct value *c, *x, *y;
	size_t es;
	int rc, r;
	int64_t cx[NET_MAX_RANK], dims[NET_MAX_RANK];

	if ((rc = check_io(n, err, 3, 3, 3)))
		return rc;
	c = n->in[0];
	x = n->in[1];
	y = n->in[2];
	if (c->dtype != GRAFT_BOOL)
		return node_err(n, err, GRAFT_EFORMAT, "condition must be bool, not %s",
				dtype_label(c->dtype));
	if (x->dtype != y->dtype)
		return node_err(n, err, GRAFT_EFORMAT, "input types differ: %s and %s",
				dtype_label(x->dtype), dtype_label(y->dtype));
	es = graft_dtype_size(x->dtype);
	if (es != 1 && es != 2 && es != 4 && es != 8)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input type %s is not supported",
				dtype_label(x->dtype));
	if (broadcast_dims(c->rank, c->dims, x->rank, x->dims, &r, cx) ||
	    broadcast_dims(r, cx, y->rank, y->dims, &r, dims))
		return node_err(n, err, GRAFT_EFORMAT, "input shapes do not broadcast");
	value_set(n->out[0], x->dtype, r, dims);
	return 0;
}

static int where_run(struct node *n, struct graft_err *err)
{
	struct value *o = n->out[0];
	struct shape sh[3];
	struct bcast bc;
	size_t es = graft_dtype_size(o->dtype);
	void (*f)(void *, const uint8_t *, int64_t, const void *, int64_t, const void *,
		  int64_t, int64_t) = es == 1 ? where_1 : es == 2 ? where_2 : es == 4 ? where_4
										: where_8;
	int64_t cpr, work, sc, sx, sy;

	(void)err;
	for (int k = 0; k < 3; k++)
		shape_of(n->in[k], &sh[k]);
	bcast_init(&bc, o, 3, sh);
	if (bc.total == 0)
		return 0;
	cpr = (bc.inner + CHUNK - 1) / CHUNK;
	work = (int64_t)bc.rows * cpr;
	sc = inner_stride(&bc, 0);
	sx = inner_stride(&bc, 1);
	sy = inner_stride(&bc, 2);
#pragma omp parallel for schedule(static) if (bc.total >= PAR_MIN && work > 1)
	for (int64_t w = 0; w < work; w++) {
		uint64_t row = (uint64_t)(w / cpr);
		int64_t s = (w % cpr) * CHUNK, off[3];
		int64_t len = bc.inner - s < CHUNK ? bc.inner - s : CHUNK;
		row_offsets(&bc, row, off);
		f((char *)o->data + ((int64_t)row * bc.inner + s) * (int64_t)es,
		  (const uint8_t *)n->in[0]->data + off[0] + s * sc, sc,
		  (const char *)n->in[1]->data + (off[1] + s * sx) * (int64_t)es, sx,
		  (const char *)n->in[2]->data + (off[2] + s * sy) * (int64_t)es, sy, len);
	}
	return 0;
}

static const struct op_def op_where = {"Where", where_infer, where_run, scratch_release, 0, 0};

/* ---- Clip ------------------------------------------------------------------------------- */

static int clip_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int rc;

	if ((rc = check_io(n, err, 1, n->opset < 11 ? 1 : 3, 1)))
		return rc;
	x = n->in[0];
	if (!is_numeric(x->dtype) || (n->opset < 12 && !is_floaty(x->dtype)))
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input type %s is not supported",
				dtype_label(x->dtype));
	for (size_t k = 1; k < n->n_in; k++) {
		const struct value *v = n->in[k];
		if (v && v->dtype != x->dtype)
			return node_err(n, err, GRAFT_EFORMAT, "%s must be %s, not %s",
					k == 1 ? "min" : "max", dtype_label(x->dtype), dtype_label(v->dtype));
		if ((rc = check_scalar(n, err, v, k == 1 ? "min" : "max")))
			return rc;
	}
	value_set(n->out[0], x->dtype, x->rank, x->dims);
	return 0;
}

static void clip_f32(float *restrict y, const float *restrict x, int64_t n, float lo,
		     float hi)
{
	for (int64_t i = 0; i < n; i++) {
		float v = x[i] < lo ? lo : x[i];
		y[i] = v > hi ? hi : v;   /* hi wins when lo > hi, as in numpy's clip */
	}
}

static int clip_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	const struct value *vlo = n->n_in > 1 ? n->in[1] : NULL, *vhi = n->n_in > 2 ? n->in[2] : NULL;
	struct value *y = n->out[0];
	uint64_t count = value_numel(x);

	(void)err;
	if (is_floaty(x->dtype)) {
		double lo = -INFINITY, hi = INFINITY;
		if (n->opset < 11) {
			lo = attr_float(n, "min", -FLT_MAX);
			hi = attr_float(n, "max", FLT_MAX);
		}
		if (vlo)
			lo = elem_get_f64(vlo->data, vlo->dtype, 0);
		if (vhi)
			hi = elem_get_f64(vhi->data, vhi->dtype, 0);
		if (x->dtype == GRAFT_FLOAT) {
			par_unary(clip_f32, y->data, x->data, (int64_t)count, (float)lo, (float)hi);
			return 0;
		}
		for (uint64_t i = 0; i < count; i++) {
			double v = elem_get_f64(x->data, x->dtype, i);
			v = v < lo ? lo : v;
			elem_put_f64(y->data, y->dtype, i, v > hi ? hi : v);
		}
	} else if (x->dtype == GRAFT_UINT64) {
		uint64_t lo = vlo ? (uint64_t)elem_get_i64(vlo->data, vlo->dtype, 0) : 0;
		uint64_t hi = vhi ? (uint64_t)elem_get_i64(vhi->data, vhi->dtype, 0) : UINT64_MAX;
		const uint64_t *xs = x->data;
		uint64_t *ys = y->data;
		for (uint64_t i = 0; i < count; i++) {
			uint64_t v = xs[i] < lo ? lo : xs[i];
			ys[i] = v > hi ? hi : v;
		}
	} else {
		int64_t lo = vlo ? elem_get_i64(vlo->data, vlo->dtype, 0) : INT64_MIN;
		int64_t hi = vhi ? elem_get_i64(vhi->data, vhi->dtype, 0) : INT64_MAX;
		for (uint64_t i = 0; i < count; i++) {
			int64_t v = elem_get_i64(x->data, x->dtype, i);
			v = v < lo ? lo : v;
			elem_put_i64(y->data, y->dtype, i, v > hi ? hi : v);
		}
	}
	return 0;
}

static const struct op_def op_clip = {"Clip", clip_infer, clip_run, NULL, 0, 0};

/* ---- Cast, CastLike ----------------------------------------------------------------------- */

static int cast_target(struct node *n, struct graft_err *err, int *to)
{
	const Onnx__AttributeProto *a;

	if (strcmp(n->op->name, "CastLike") == 0) {
		if (n->n_in != 2 || !n->in[1])
			return node_err(n, err, GRAFT_EFORMAT, "takes 2 inputs, not %zu", n->n_in);
		*to = n->in[1]->dtype;
	} else {
		if (!(a = attr_find(n, "to")) || !a->has_i)
			return node_err(n, err, GRAFT_EFORMAT, "attribute 'to' is missing");
		*to = (int)a->i;
	}
	if (!is_numeric(*to) && *to != GRAFT_BOOL)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "casting to %s is not supported",
				dtype_label(*to));
	return 0;
}

static int cast_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int rc, to = 0;

	if ((rc = check_io(n, err, 1, 2, 1)) || (rc = cast_target(n, err, &to)))
		return rc;
	x = n->in[0];
	if (!is_numeric(x->dtype) && x->dtype != GRAFT_BOOL)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "casting from %s is not supported",
				dtype_label(x->dtype));
	value_set(n->out[0], to, x->rank, x->dims);
	return 0;
}

/* Float to integer truncates toward zero (numpy's astype); to bool is "not zero". */
static int cast_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	struct value *y = n->out[0];
	uint64_t count = value_numel(x);
	int from = x->dtype, to = y->dtype;

	(void)err;
	if (from == to) {
		memcpy(y->data, x->data, y->nbytes);
	} else if (from == GRAFT_FLOAT && to == GRAFT_INT64) {
		const float *xs = x->data;
		int64_t *ys = y->data;
		for (uint64_t i = 0; i < count; i++)
			ys[i] = elem_sat_i64(xs[i]);
	} else if (from == GRAFT_INT64 && to == GRAFT_FLOAT) {
		const int64_t *xs = x->data;
		float *ys = y->data;
		for (uint64_t i = 0; i < count; i++)
			ys[i] = (float)xs[i];
	} else if (from == GRAFT_INT32 && to == GRAFT_FLOAT) {
		const int32_t *xs = x->data;
		float *ys = y->data;
		for (uint64_t i = 0; i < count; i++)
			ys[i] = (float)xs[i];
	} else if (is_floaty(from)) {
		for (uint64_t i = 0; i < count; i++)
			elem_put_f64(y->data, to, i, elem_get_f64(x->data, from, i));
	} else if (from == GRAFT_UINT64) {
		for (uint64_t i = 0; i < count; i++) {
			uint64_t v = (uint64_t)elem_get_i64(x->data, from, i);
			if (is_floaty(to))
				elem_put_f64(y->data, to, i, (double)v);
			else
				elem_put_i64(y->data, to, i, (int64_t)v);
		}
	} else if (is_floaty(to)) {
		/* int64 to float directly: through double it could round twice */
		for (uint64_t i = 0; i < count; i++) {
			int64_t v = elem_get_i64(x->data, from, i);
			if (to == GRAFT_FLOAT)
				((float *)y->data)[i] = (float)v;
			else
				elem_put_f64(y->data, to, i, (double)v);
		}
	} else {
		for (uint64_t i = 0; i < count; i++)
			elem_put_i64(y->data, to, i, elem_get_i64(x->data, from, i));
	}
	return 0;
}

static const struct op_def op_cast = {"Cast", cast_infer, cast_run, NULL, 0, 0};
static const struct op_def op_cast_like = {"CastLike", cast_infer, cast_run, NULL, 0, 0};

/* ---- Dropout ---------------------------------------------------------------------------- */

/*
 * Inference is the identity with an all-true mask.  Training mode (opset 12's
 * training_mode input) drops with a per-node generator seeded from the seed attribute,
 * so that a run is reproducible; it cannot match another runtime's random stream.
 *
 * A training net (graft-train: n->rng is set) decides by n->training alone, whatever
 * training_mode says: a Dropout of its backward region drops and keeps its mask for
 * backward; in evaluation mode, and in the frozen part before the region, it is the
 * identity.  Its masks are drawn row by row (the first axis: the batch's samples), row r
 * from (the run's key, the node, the run's first row + r): the trainer keys a run by its
 * step and tells the piece's first row (graft_net_draw_rows), so a sample's mask is the
 * same whether its batch runs whole, in micro-batches or over several processes.
 */
struct dropout_state {
	uint64_t seed;          /* the ONNX training_mode path's generator */
	uint8_t *mask;          /* the last run's keep flags (count bytes) */
	uint64_t count;
	int dropped;            /* the last run dropped (else it was the identity) */
	float scale;            /* 1 / (1 - ratio) */
};

static int dropout_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int rc;

	if ((rc = check_io(n, err, 1, n->opset < 12 ? 1 : 3, 1)))
		return rc;
	x = n->in[0];
	if (!is_floaty(x->dtype))
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input type %s is not supported",
				dtype_label(x->dtype));
	if (n->n_in > 1 && n->in[1] && !is_floaty(n->in[1]->dtype))
		return node_err(n, err, GRAFT_EFORMAT, "ratio must be a float");
	if (n->n_in > 2 && n->in[2] && n->in[2]->dtype != GRAFT_BOOL)
		return node_err(n, err, GRAFT_EFORMAT, "training_mode must be bool");
	for (size_t k = 1; k < n->n_in; k++)
		if ((rc = check_scalar(n, err, n->in[k], k == 1 ? "ratio" : "training_mode")))
			return rc;
	if (n->n_out > 2)
		return node_err(n, err, GRAFT_EFORMAT, "has at most 2 outputs, not %zu", n->n_out);
	value_set(n->out[0], x->dtype, x->rank, x->dims);
	/* the mask was of the data's type until opset 10 */
	if (n->n_out > 1 && n->out[1])
		value_set(n->out[1], n->opset < 10 ? x->dtype : GRAFT_BOOL, x->rank, x->dims);
	return 0;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void dropout_release(struct node *n)
{
	struct dropout_state *s = n->priv;

	if (s)
		free(s->mask);
	free(s);
	n->priv = NULL;
}

static struct dropout_state *dropout_state(struct node *n)
{
	struct dropout_state *s = n->priv;

	if (!s) {
		if (!(s = calloc(1, sizeof(*s))))
			return NULL;
		s->seed = (uint64_t)attr_int(n, "seed", 0x5eed);
		n->priv = s;
	}
	return s;
}

/* Draws the keep flags (of rows rows): an element is kept when a uniform 53-bit draw is
 * at least ratio. */
static int dropout_draw(struct node *n, struct dropout_state *s, uint64_t count, int64_t rows,
			double ratio)
{
	uint64_t cut = (uint64_t)(ratio * 9007199254740992.0);
	uint64_t per = rows > 0 ? count / (uint64_t)rows : count;

	if (!s->mask) {
		if (!(s->mask = malloc((size_t)count + 1)))
			return -1;
		s->count = count;
	}
	if (n->rng) {
		for (uint64_t at = 0; per && at < count; at += per) {
			uint64_t h = n->draws->key ^ (n->draw_salt * 0xd6e8feb86659fd93ull);
			uint64_t row = (uint64_t)n->draws->first_row + at / per;
			struct graft_rng g;
			h ^= splitmix64(&row);
			graft_rng_seed(&g, splitmix64(&h));
			for (uint64_t i = at; i < at + per && i < count; i++)
				s->mask[i] = (graft_rng_next(&g) >> 11) >= cut;
		}
	} else
		for (uint64_t i = 0; i < count; i++)
			s->mask[i] = (splitmix64(&s->seed) >> 11) >= cut;
	return 0;
}

static int dropout_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	const struct value *vr = n->n_in > 1 ? n->in[1] : NULL, *vt = n->n_in > 2 ? n->in[2] : NULL;
	struct value *y = n->out[0], *mask = n->n_out > 1 ? n->out[1] : NULL;
	uint64_t count = value_numel(x);
	double ratio = vr ? elem_get_f64(vr->data, vr->dtype, 0)
		       : n->opset < 12 ? attr_float(n, "ratio", 0.5f) : 0.5;
	int training = n->rng ? n->training : vt && *(const uint8_t *)vt->data;
	struct dropout_state *s;

	if (!(s = dropout_state(n)))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	s->dropped = 0;
	if (!training || ratio == 0) {
		memcpy(y->data, x->data, y->nbytes);
		if (mask && mask->dtype == GRAFT_BOOL)
			memset(mask->data, 1, mask->nbytes);
		else if (mask)
			for (uint64_t i = 0; i < count; i++)
				elem_put_f64(mask->data, mask->dtype, i, 1);
		return 0;
	}
	if (!(ratio > 0 && ratio < 1))
		return node_err(n, err, GRAFT_EINVAL, "ratio %g is outside [0, 1)", ratio);
	if (dropout_draw(n, s, count, x->rank > 0 ? x->dims[0] : 1, ratio))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	s->dropped = 1;
	s->scale = (float)(1 / (1 - ratio));
	const uint8_t *M = s->mask;
	if (x->dtype == GRAFT_FLOAT) {
		const float *X = x->data;
		float *Y = y->data, scale = s->scale;
#pragma omp parallel for simd if (count > PAR_MIN)
		for (uint64_t i = 0; i < count; i++)
			Y[i] = M[i] ? X[i] * scale : 0;
	} else {
		for (uint64_t i = 0; i < count; i++)
			elem_put_f64(y->data, y->dtype, i,
				     M[i] ? elem_get_f64(x->data, x->dtype, i) / (1 - ratio) : 0);
	}
	if (mask && mask->dtype == GRAFT_BOOL)
		memcpy(mask->data, M, (size_t)count);
	else if (mask)
		for (uint64_t i = 0; i < count; i++)
			elem_put_f64(mask->data, mask->dtype, i, M[i]);
	return 0;
}

static const struct op_def op_dropout = {"Dropout", dropout_infer, dropout_run,
					 dropout_release, 0, 0};

/* ---- Identity, Not, IsNaN, IsInf ------------------------------------------------------ */

static int identity_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int rc;

	if ((rc = check_io(n, err, 1, 1, 1)))
		return rc;
	x = n->in[0];
	if (graft_dtype_size(x->dtype) == 0)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input type %s is not supported",
				dtype_label(x->dtype));
	value_set(n->out[0], x->dtype, x->rank, x->dims);
	return 0;
}

static int identity_run(struct node *n, struct graft_err *err)
{
	(void)err;
	memcpy(n->out[0]->data, n->in[0]->data, n->out[0]->nbytes);
	return 0;
}

static const struct op_def op_identity = {"Identity", identity_infer, identity_run, NULL, 0, 0};

static int not_infer(struct node *n, struct graft_err *err)
{
	int rc;

	if ((rc = check_io(n, err, 1, 1, 1)))
		return rc;
	if (n->in[0]->dtype != GRAFT_BOOL)
		return node_err(n, err, GRAFT_EFORMAT, "input must be bool, not %s",
				dtype_label(n->in[0]->dtype));
	value_set(n->out[0], GRAFT_BOOL, n->in[0]->rank, n->in[0]->dims);
	return 0;
}

static int not_run(struct node *n, struct graft_err *err)
{
	const uint8_t *x = n->in[0]->data;
	uint8_t *y = n->out[0]->data;

	(void)err;
	for (size_t i = 0; i < n->out[0]->nbytes; i++)
		y[i] = x[i] == 0;
	return 0;
}

static const struct op_def op_not = {"Not", not_infer, not_run, NULL, 0, 0};

static int isfloat_infer(struct node *n, struct graft_err *err)
{
	int rc;

	if ((rc = check_io(n, err, 1, 1, 1)))
		return rc;
	if (!is_floaty(n->in[0]->dtype))
		return node_err(n, err, GRAFT_EUNSUPPORTED, "input type %s is not supported",
				dtype_label(n->in[0]->dtype));
	value_set(n->out[0], GRAFT_BOOL, n->in[0]->rank, n->in[0]->dims);
	return 0;
}

static int isfloat_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	uint8_t *y = n->out[0]->data;
	uint64_t count = value_numel(x);
	int nan = strcmp(n->op->name, "IsNaN") == 0;
	int neg = (int)attr_int(n, "detect_negative", 1), pos = (int)attr_int(n, "detect_positive", 1);

	(void)err;
	for (uint64_t i = 0; i < count; i++) {
		double v = elem_get_f64(x->data, x->dtype, i);
		y[i] = nan ? v != v : (isinf(v) && (v > 0 ? pos : neg));
	}
	return 0;
}

static const struct op_def op_isnan = {"IsNaN", isfloat_infer, isfloat_run, NULL, 0, 0};
static const struct op_def op_isinf = {"IsInf", isfloat_infer, isfloat_run, NULL, 0, 0};

/* ---- the family ----------------------------------------------------------------------- */

const struct op_def *const ops_eltwise[] = {
#define X(code, name, a1, d1, a2, d2, ints, expr) &unary_ops[U_##code],
	UNARY_OPS(X)
#undef X
	&binary_ops[B_ADD], &binary_ops[B_SUB], &binary_ops[B_MUL], &binary_ops[B_DIV],
	&binary_ops[B_POW], &binary_ops[B_MOD], &binary_ops[B_PRELU], &binary_ops[B_BITSHIFT],
	&binary_ops[B_EQUAL], &binary_ops[B_LESS], &binary_ops[B_GREATER],
	&binary_ops[B_LESS_EQUAL], &binary_ops[B_GREATER_EQUAL], &binary_ops[B_AND],
	&binary_ops[B_OR], &binary_ops[B_XOR],
	&variadic_ops[0], &variadic_ops[1], &variadic_ops[2], &variadic_ops[3],
	&op_where, &op_clip, &op_cast, &op_cast_like, &op_dropout, &op_identity, &op_not,
	&op_isnan, &op_isinf,
	NULL,
};

/* ---- backward ----------------------------------------------------------------------------
 *
 * Gradients are float32 (the executor differentiates float values only).  Unary ops read
 * x or y as their derivative needs.  Binary ops form an input's gradient at the output's
 * shape row by row over the forward's broadcast plan (struct bcast): straight into gin[k]
 * when that input has the output's size, else into a scratch buffer (n->priv, kept for
 * the plan) that sum_to folds over the axes the input was broadcast along.
 * Non-differentiable points take PyTorch's choices: Relu passes nothing at 0, Clip passes
 * the gradient on [min, max] bounds included, Abs passes nothing at 0.
 */

static uint64_t shape_numel(const struct shape *s)
{
	uint64_t n = 1;

	for (int d = 0; d < s->rank; d++)
		n *= (uint64_t)s->dims[d];
	return n;
}

/* sum_to when the input repeats along the innermost merged dim: each row of g (cut into
 * chunks so that a single long row still splits across threads) sums to one element. */
static int sum_rows(float *dst, uint64_t nv, const struct bcast *bc, const float *g, float sign)
{
	int64_t cpr = (bc->inner + CHUNK - 1) / CHUNK, work = (int64_t)bc->rows * cpr;
	double *part = malloc(((size_t)work + (size_t)nv) * sizeof(double)), *acc;

	if (!part)
		return -1;
	acc = part + work;
#pragma omp parallel for schedule(static) if (bc->total >= PAR_MIN && work > 1)
	for (int64_t w = 0; w < work; w++) {
		int64_t s = (w % cpr) * CHUNK, len = bc->inner - s < CHUNK ? bc->inner - s : CHUNK;
		const float *gr = g + (w / cpr) * bc->inner + s;
		double sum = 0;
#pragma omp simd reduction(+:sum)
		for (int64_t i = 0; i < len; i++)
			sum += gr[i];
		part[w] = sum;
	}
	memset(acc, 0, (size_t)nv * sizeof(double));
	for (int64_t w = 0; w < work; w++) {
		int64_t off[3];
		row_offsets(bc, (uint64_t)(w / cpr), off);
		acc[off[0]] += part[w];
	}
	for (uint64_t j = 0; j < nv; j++)
		dst[j] = sign * (float)acc[j];
	free(part);
	return 0;
}

/* sum_to when the input is read contiguously along the innermost merged dim: rows of g
 * add into runs of dst.  Threads split the runs into column chunks; when the runs are
 * short and many (a per-feature bias over a long batch), they split the rows into groups
 * instead, each summing into a partial buffer of its own. */
static int add_rows(float *dst, uint64_t nv, const struct bcast *bc, const float *g, float sign)
{
	int64_t cpr = (bc->inner + CHUNK - 1) / CHUNK, groups = 1, rows = (int64_t)bc->rows;
	float *part = NULL;

	if (cpr < 8 && rows >= 64 && bc->total >= PAR_MIN && nv <= bc->total / 16) {
		groups = 8;
		if (!(part = calloc((size_t)(groups - 1) * (size_t)nv, sizeof(float))))
			return -1;
	}
	memset(dst, 0, (size_t)nv * sizeof(float));
#pragma omp parallel for schedule(static) if (bc->total >= PAR_MIN && groups * cpr > 1)
	for (int64_t w = 0; w < groups * cpr; w++) {
		int64_t gi = w / cpr, s = (w % cpr) * CHUNK;
		int64_t len = bc->inner - s < CHUNK ? bc->inner - s : CHUNK;
		float *d = gi ? part + (size_t)(gi - 1) * nv : dst;
		for (int64_t row = rows * gi / groups; row < rows * (gi + 1) / groups; row++) {
			int64_t off[3];
			row_offsets(bc, (uint64_t)row, off);
			float *dr = d + off[0] + s;
			const float *gr = g + row * bc->inner + s;
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				dr[i] += gr[i];
		}
	}
	for (int64_t gi = 1; gi < groups; gi++)
		for (uint64_t j = 0; j < nv; j++)
			dst[j] += part[(size_t)(gi - 1) * nv + j];
	if (sign != 1)
		for (uint64_t j = 0; j < nv; j++)
			dst[j] *= sign;
	free(part);
	return 0;
}

/* dst (shape s) = sign * g (out's shape) summed over the axes s is broadcast along.
 * Returns -1 when out of memory. */
static int sum_to(float *dst, const struct shape *s, const float *g, const struct value *out,
		  float sign)
{
	uint64_t nv = shape_numel(s);
	struct bcast bc;

	bcast_init(&bc, out, 1, s);
	if (nv == bc.total) {
		/* (a copy in both threads: a residual Add's gradient is large) */
#pragma omp parallel for simd if (nv >= PAR_MIN)
		for (uint64_t i = 0; i < nv; i++)
			dst[i] = sign == 1 ? g[i] : sign * g[i];
		return 0;
	}
	if (bc.total == 0) {
		memset(dst, 0, (size_t)nv * sizeof(float));
		return 0;
	}
	return inner_stride(&bc, 0) ? add_rows(dst, nv, &bc, g, sign)
				    : sum_rows(dst, nv, &bc, g, sign);
}

/* The node's scratch of count floats (a gradient at the output's shape), kept until the
 * plan changes. */
static float *grad_scratch(struct node *n, uint64_t count)
{
	if (!n->priv)
		n->priv = malloc((size_t)count * sizeof(float) + 1);
	return n->priv;
}

/* v's data as float32: v's own, or a converted copy in *copy (free it). */
static const float *as_f32(const struct value *v, float **copy)
{
	uint64_t count = value_numel(v);

	*copy = NULL;
	if (v->dtype == GRAFT_FLOAT)
		return v->data;
	if (!(*copy = malloc((size_t)count * sizeof(float) + 1)))
		return NULL;
	for (uint64_t i = 0; i < count; i++)
		(*copy)[i] = (float)elem_get_f64(v->data, v->dtype, i);
	return *copy;
}

static int grad_float_inputs(const struct node *n, struct graft_err *err)
{
	for (size_t k = 0; k < n->n_in; k++)
		if (n->gin[k] && n->in[k]->dtype != GRAFT_FLOAT)
			return node_err(n, err, GRAFT_EUNSUPPORTED, "backward for %s inputs",
					dtype_label(n->in[k]->dtype));
	return 0;
}

static int identity_backward(struct node *n, struct graft_err *err)
{
	(void)err;
	if (n->gin[0])
		memcpy(n->gin[0]->data, n->out[0]->grad->data, n->gin[0]->nbytes);
	return 0;
}

/* The derivative of each unary op, as dx from dy (g), x and y, element by element.  For
 * Relu, x may be y (a training net runs Relu in place): only its sign is read. */
#define UNARY_GRADS(X)                                                                    \
	X(RELU, "Relu", x > 0 ? g : 0)                                                    \
	X(LEAKY_RELU, "LeakyRelu", x > 0 ? g : al * g)                                    \
	X(ELU, "Elu", x > 0 ? g : g * (y + al))                                           \
	X(SELU, "Selu", x > 0 ? g * be : g * (y + al * be))                               \
	X(CELU, "Celu", x > 0 ? g : g * (y / al + 1))                                     \
	X(THRESHOLDED_RELU, "ThresholdedRelu", x > al ? g : 0)                            \
	X(SIGMOID, "Sigmoid", g * y * (1 - y))                                            \
	X(HARD_SIGMOID, "HardSigmoid", al * x + be > 0 && al * x + be < 1 ? al * g : 0)   \
	X(HARD_SWISH, "HardSwish", x < -3 ? 0 : x > 3 ? g : g * (x / 3 + 0.5f))           \
	X(TANH, "Tanh", g * (1 - y * y))                                                  \
	X(SOFTPLUS, "Softplus", g / (1 + exp_f32(-x)))                                    \
	X(SOFTSIGN, "Softsign", g / ((1 + fabsf(x)) * (1 + fabsf(x))))                    \
	X(MISH, "Mish", mish_grad(x, g))                                                  \
	X(ERF, "Erf", g * 1.1283791670955126f * exp_f32(-x * x))                          \
	X(EXP, "Exp", g * y)                                                              \
	X(LOG, "Log", g / x)                                                              \
	X(SQRT, "Sqrt", g / (2 * y))                                                      \
	X(NEG, "Neg", -g)                                                                 \
	X(ABS, "Abs", x > 0 ? g : x < 0 ? -g : 0)                                         \
	X(RECIPROCAL, "Reciprocal", -g * y * y)                                           \
	X(FLOOR, "Floor", 0)                                                              \
	X(CEIL, "Ceil", 0)                                                                \
	X(ROUND, "Round", 0)                                                              \
	X(SIGN, "Sign", 0)                                                                \
	X(SIN, "Sin", g * cosf(x))                                                        \
	X(COS, "Cos", -g * sinf(x))

/* d/dx x tanh(softplus(x)) = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2). */
static inline float mish_grad(float x, float g)
{
	float e = exp_f32(-fabsf(x));
	float sp = x > 0 ? x + log1pf(e) : log1pf(e);
	float t = tanh_f32(sp), sig = x > 0 ? 1 / (1 + e) : e / (1 + e);

	return g * (t + x * sig * (1 - t * t));
}

static int unary_backward(struct node *n, struct graft_err *err)
{
	const struct unary_info *u = &unary_info[unary_code(n)];
	const float *X = n->in[0]->data, *Y = n->out[0]->data, *G = n->out[0]->grad->data;
	float *D;
	float al = u->a1 ? attr_float(n, u->a1, u->d1) : u->d1;
	float be = u->a2 ? attr_float(n, u->a2, u->d2) : u->d2;
	int64_t count = (int64_t)value_numel(n->in[0]);
	int rc;

	if (!n->gin[0])
		return 0;
	if ((rc = grad_float_inputs(n, err)))
		return rc;
	D = n->gin[0]->data;
	switch (unary_code(n)) {
#define X(code, name, expr)                                                               \
	case U_##code:                                                                    \
		_Pragma("omp parallel for simd if (count > PAR_MIN)")                      \
		for (int64_t i = 0; i < count; i++) {                                     \
			float x = X[i], y = Y[i], g = G[i];                               \
			(void)x; (void)y; (void)g; (void)al; (void)be;                     \
			D[i] = (expr);                                                    \
		}                                                                         \
		return 0;
	UNARY_GRADS(X)
#undef X
	default:
		return node_err(n, err, GRAFT_EUNSUPPORTED, "op %s has no backward in graft",
				n->op->name);
	}
}

/* Clip: the gradient passes where min <= x <= max (PyTorch's clamp); bounds given as
 * differentiated inputs take the rest.  When min > max the output is max everywhere. */
static int clip_backward(struct node *n, struct graft_err *err)
{
	const struct value *vlo = n->n_in > 1 ? n->in[1] : NULL;
	const struct value *vhi = n->n_in > 2 ? n->in[2] : NULL;
	const float *X = n->in[0]->data, *G = n->out[0]->grad->data;
	float lo = -INFINITY, hi = INFINITY;
	int64_t count = (int64_t)value_numel(n->in[0]);
	int rc;

	if ((rc = grad_float_inputs(n, err)))
		return rc;
	if (n->opset < 11) {
		lo = attr_float(n, "min", -FLT_MAX);
		hi = attr_float(n, "max", FLT_MAX);
	}
	if (vlo)
		lo = (float)elem_get_f64(vlo->data, vlo->dtype, 0);
	if (vhi)
		hi = (float)elem_get_f64(vhi->data, vhi->dtype, 0);
	if (n->gin[0]) {
		float *D = n->gin[0]->data;
		/* G read unconditionally and the mask made without branches: a select the
		 * compiler vectorises (a conditional load it cannot: 4x slower, ReLU6's
		 * backward was a third of a mobilenet_v2 step) */
#pragma omp parallel for simd if (count > PAR_MIN)
		for (int64_t i = 0; i < count; i++) {
			float g = G[i];
			D[i] = ((X[i] >= lo) & (X[i] <= hi)) ? g : 0.0f;
		}
	}
	for (size_t k = 1; k < 3 && k < n->n_in; k++) {
		double acc = 0;
		if (!n->gin[k])
			continue;
		for (int64_t i = 0; i < count; i++)
			if (lo > hi ? k == 2 : k == 1 ? X[i] < lo : X[i] > hi)
				acc += G[i];
		*(float *)n->gin[k]->data = (float)acc;
	}
	return 0;
}

/* The gradient of a binary op's input at the output's shape, t from g = dy, x = a and
 * y = b (as broadcast). */
#define BINARY_GRADS(X)                                                                   \
	X(MUL_A, g * y)                                                                  \
	X(MUL_B, g * x)                                                                  \
	X(DIV_A, g / y)                                                                  \
	X(DIV_B, -g * x / (y * y))                                                       \
	X(POW_A, y == 2 ? 2 * g * x : y == 0 ? 0 : g * y * pow(x, y - 1))                \
	X(POW_B, x > 0 ? g * pow(x, y) * log(x) : 0)                                     \
	X(PRELU_X, x > 0 ? g : g * y)                                                    \
	X(PRELU_S, x > 0 ? 0 : g * x)

typedef void (*grad_row_fn)(float *restrict t, const float *restrict G, const float *A,
			    int64_t sa, const float *B, int64_t sb, int64_t n);

#define X(kind, expr)                                                                     \
	static void grad_row_##kind(float *restrict t, const float *restrict G,          \
				    const float *A, int64_t sa, const float *B, int64_t sb, \
				    int64_t n)                                            \
	{                                                                                 \
		if (sa && sb) {                                                           \
			for (int64_t i = 0; i < n; i++) {                                 \
				float g = G[i], x = A[i], y = B[i];                       \
				(void)x;                                                  \
				(void)y;                                                  \
				t[i] = (expr);                                            \
			}                                                                 \
		} else if (sa) {                                                          \
			const float y = B[0];                                             \
			for (int64_t i = 0; i < n; i++) {                                 \
				float g = G[i], x = A[i];                                 \
				(void)x;                                                  \
				(void)y;                                                  \
				t[i] = (expr);                                            \
			}                                                                 \
		} else if (sb) {                                                          \
			const float x = A[0];                                             \
			for (int64_t i = 0; i < n; i++) {                                 \
				float g = G[i], y = B[i];                                 \
				(void)x;                                                  \
				(void)y;                                                  \
				t[i] = (expr);                                            \
			}                                                                 \
		} else {                                                                  \
			const float x = A[0], y = B[0];                                   \
			for (int64_t i = 0; i < n; i++) {                                 \
				float g = G[i];                                           \
				(void)x;                                                  \
				(void)y;                                                  \
				t[i] = (expr);                                            \
			}                                                                 \
		}                                                                         \
	}
BINARY_GRADS(X)
#undef X

/* Runs f over every row of bc (inputs a and b), into t of the output's shape. */
static void grad_rows(grad_row_fn f, const struct bcast *bc, float *t, const float *G,
		      const float *A, const float *B)
{
	int64_t cpr = (bc->inner + CHUNK - 1) / CHUNK, work = (int64_t)bc->rows * cpr;
	int64_t sa = inner_stride(bc, 0), sb = inner_stride(bc, 1);

	if (bc->total == 0)
		return;
#pragma omp parallel for schedule(static) if (bc->total >= PAR_MIN && work > 1)
	for (int64_t w = 0; w < work; w++) {
		uint64_t row = (uint64_t)(w / cpr);
		int64_t s = (w % cpr) * CHUNK, off[3], o = (int64_t)row * bc->inner + s;
		int64_t len = bc->inner - s < CHUNK ? bc->inner - s : CHUNK;
		row_offsets(bc, row, off);
		f(t + o, G + o, A + off[0] + s * sa, sa, B + off[1] + s * sb, sb, len);
	}
}

/* Add, Sub, Mul, Div, Pow, PRelu (opset 7's numpy broadcasting or the older
 * broadcast/axis attributes, as the forward read them). */
static int binary_backward(struct node *n, struct graft_err *err)
{
	static const grad_row_fn rows[][2] = {
		[B_MUL] = {grad_row_MUL_A, grad_row_MUL_B},
		[B_DIV] = {grad_row_DIV_A, grad_row_DIV_B},
		[B_POW] = {grad_row_POW_A, grad_row_POW_B},
		[B_PRELU] = {grad_row_PRELU_X, grad_row_PRELU_S},
	};
	const struct value *out = n->out[0];
	const float *G = out->grad->data, *A, *B;
	float *ca, *cb;
	int code = binary_code(n), rc = 0;
	struct shape sh[2];
	struct bcast bc;

	if ((rc = grad_float_inputs(n, err)))
		return rc;
	shape_of(n->in[0], &sh[0]);
	if ((rc = eff_shape(n, code, 1, &sh[1], err)))
		return rc;
	if (code == B_ADD || code == B_SUB) {
		for (int k = 0; k < 2; k++)
			if (n->gin[k] && sum_to(n->gin[k]->data, &sh[k], G, out,
						k && code == B_SUB ? -1.0f : 1.0f))
				return node_err(n, err, GRAFT_ENOMEM, "out of memory");
		return 0;
	}
	if (code >= (int)(sizeof(rows) / sizeof(rows[0])) || !rows[code][0])
		return node_err(n, err, GRAFT_EUNSUPPORTED, "op %s has no backward in graft",
				n->op->name);
	bcast_init(&bc, out, 2, sh);
	/* (Pow's exponent may be of another type) */
	A = as_f32(n->in[0], &ca);
	B = as_f32(n->in[1], &cb);
	for (int k = 0; k < 2 && A && B && !rc; k++) {
		int full = shape_numel(&sh[k]) == bc.total;
		float *t;
		if (!n->gin[k])
			continue;
		if (!(t = full ? n->gin[k]->data : grad_scratch(n, bc.total))) {
			rc = -1;
			break;
		}
		grad_rows(rows[code][k], &bc, t, G, A, B);
		if (!full)
			rc = sum_to(n->gin[k]->data, &sh[k], t, out, 1);
	}
	if (!A || !B)
		rc = -1;
	free(ca);
	free(cb);
	return rc ? node_err(n, err, GRAFT_ENOMEM, "out of memory") : 0;
}

/* Sum and Mean: every input receives the output's gradient (over n for the mean), summed
 * where it was broadcast. */
static int variadic_backward(struct node *n, struct graft_err *err)
{
	int code = variadic_code(n), rc;
	float scale = code == V_MEAN ? 1.0f / (float)n->n_in : 1.0f;

	if (code != V_SUM && code != V_MEAN)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "op %s has no backward in graft",
				n->op->name);
	if ((rc = grad_float_inputs(n, err)))
		return rc;
	for (size_t k = 0; k < n->n_in; k++) {
		struct shape s;
		if (!n->gin[k])
			continue;
		shape_of(n->in[k], &s);
		if (sum_to(n->gin[k]->data, &s, n->out[0]->grad->data, n->out[0], scale))
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	}
	return 0;
}

/* Where: x's gradient is dy where the condition holds, y's where it does not. */
static int where_backward(struct node *n, struct graft_err *err)
{
	const struct value *out = n->out[0];
	const float *G = out->grad->data;
	const uint8_t *C = n->in[0]->data;
	struct shape sh[3];
	struct bcast bc;
	int rc;

	if ((rc = grad_float_inputs(n, err)))
		return rc;
	for (int k = 0; k < 3; k++)
		shape_of(n->in[k], &sh[k]);
	bcast_init(&bc, out, 3, sh);
	int64_t sc = inner_stride(&bc, 0);
	for (int k = 1; k < 3; k++) {
		int full = shape_numel(&sh[k]) == bc.total;
		uint8_t want = k == 1;
		float *t;
		if (!n->gin[k])
			continue;
		if (!(t = full ? n->gin[k]->data : grad_scratch(n, bc.total)))
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
#pragma omp parallel for schedule(static) if (bc.total >= PAR_MIN && bc.rows > 1)
		for (uint64_t row = 0; row < bc.rows; row++) {
			int64_t off[3], o = (int64_t)row * bc.inner;
			row_offsets(&bc, row, off);
			for (int64_t i = 0; i < bc.inner; i++)
				t[o + i] = (C[off[0] + i * sc] != 0) == want ? G[o + i] : 0;
		}
		if (!full && sum_to(n->gin[k]->data, &sh[k], t, out, 1))
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	}
	return 0;
}

/* Cast to float passes the gradient through; a cast to any other type cuts it (that
 * output has no gradient), so dX is zero. */
static int cast_backward(struct node *n, struct graft_err *err)
{
	if (!n->gin[0])
		return 0;
	if (n->out[0]->dtype == GRAFT_FLOAT && n->out[0]->grad)
		return copy_backward(n, err);
	memset(n->gin[0]->data, 0, n->gin[0]->nbytes);
	return 0;
}

static int dropout_backward(struct node *n, struct graft_err *err)
{
	const struct dropout_state *s = n->priv;
	const float *G = n->out[0]->grad->data;
	float *D;
	int64_t count = (int64_t)value_numel(n->in[0]);
	int rc;

	if (!n->gin[0])
		return 0;
	if ((rc = grad_float_inputs(n, err)))
		return rc;
	D = n->gin[0]->data;
	if (!s || !s->dropped) {        /* the identity ran */
		memcpy(D, G, (size_t)count * sizeof(float));
		return 0;
	}
	const uint8_t *M = s->mask;
	float scale = s->scale;
#pragma omp parallel for simd if (count > PAR_MIN)
	for (int64_t i = 0; i < count; i++) {
		float g = G[i] * scale;         /* unconditional: vectorised (clip_backward) */
		D[i] = M[i] ? g : 0.0f;
	}
	return 0;
}

static const struct grad_def grad_identity = {"Identity", identity_backward};
static const struct grad_def grad_clip = {"Clip", clip_backward};

static const struct blocked_def blocked_mul = {"Mul", mul_run_blocked};

const struct blocked_def *const ops_eltwise_blocked[] = {&blocked_mul, NULL};
static const struct grad_def grad_sum = {"Sum", variadic_backward};
static const struct grad_def grad_mean = {"Mean", variadic_backward};
static const struct grad_def grad_where = {"Where", where_backward};
static const struct grad_def grad_cast = {"Cast", cast_backward};
static const struct grad_def grad_dropout = {"Dropout", dropout_backward};
#define X(code, name, expr) static const struct grad_def grad_##code = {name, unary_backward};
UNARY_GRADS(X)
#undef X
static const struct grad_def grad_add = {"Add", binary_backward};
static const struct grad_def grad_sub = {"Sub", binary_backward};
static const struct grad_def grad_mul = {"Mul", binary_backward};
static const struct grad_def grad_div = {"Div", binary_backward};
static const struct grad_def grad_pow = {"Pow", binary_backward};
static const struct grad_def grad_prelu = {"PRelu", binary_backward};

const struct grad_def *const ops_eltwise_grad[] = {
#define X(code, name, expr) &grad_##code,
	UNARY_GRADS(X)
#undef X
	&grad_identity, &grad_clip, &grad_sum, &grad_mean, &grad_where, &grad_cast,
	&grad_dropout, &grad_add, &grad_sub, &grad_mul, &grad_div, &grad_pow, &grad_prelu, NULL,
};
