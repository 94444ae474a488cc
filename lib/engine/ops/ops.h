/*
 * ops.h: the contract between the executor (lib/engine/net.c) and the op kernels (lib/engine/ops/).
 *
 * The executor turns a model's main graph into nodes over values.  For each set of input
 * shapes it *plans*: it walks the nodes in order, calls each op's infer to learn output
 * types and shapes, and runs at once every node whose inputs are all known at plan time
 * (initializers, folded constants, Shape of a value whose dims are known): that is
 * constant folding, and it turns the Shape -> Gather -> Concat -> Reshape chains that
 * exporters emit into constants.  Then it allocates every remaining value once and, per
 * run, calls run for the nodes left.  A kernel therefore never allocates its outputs:
 * out[i]->data is ready, sized from what infer said.
 *
 * One op family per file (eltwise.c, reshape.c, join.c, index.c, constant.c, reduce.c,
 * softmax.c, norm.c, conv.c, gemm.c, pool.c), each exporting a NULL-terminated array of
 * op definitions that registry.c lists; helpers that several families use are in
 * ops_util.c, declared below.
 */
#ifndef GRAFT_OPS_H
#define GRAFT_OPS_H

#include <string.h>

#include "model/model.h"

#define NET_MAX_RANK 8

enum value_flags {
	VALUE_CONST = 1 << 0,   /* data known at plan time (initializer or folded) */
	VALUE_INPUT = 1 << 1,   /* a graph input: data supplied per run */
	VALUE_OUTPUT = 1 << 2,  /* a graph output */
	VALUE_BORROWED = 1 << 3,/* data points into the model's tensors: never freed by the
				 * net, and written only when VALUE_PARAM (a training net
				 * updates a parameter the model holds in memory in place) */
	VALUE_PLAN = 1 << 4,    /* a graph input whose data shapes the plan (a shape, axes,
				 * pads...): the executor treats it as a constant and replans
				 * when its bytes change */
	VALUE_BLOCKABLE = 1 << 5,/* produced by an OP_BLOCKED_IO or layout-transparent op and
				 * read only by such ops: may be kept in the layout oneDNN
				 * prefers (see layout) */
	/* Training nets (graft_net_new_opts with training set): */
	VALUE_PARAM = 1 << 6,   /* a trainable parameter: a net-owned copy of a model tensor
				 * that the optimizer updates between runs; never VALUE_CONST */
	VALUE_STATE = 1 << 7,   /* a net-owned copy of a buffer that training-mode kernels
				 * update (BatchNormalization's running statistics) */
	VALUE_DIFF = 1 << 8,    /* computed from a parameter (or a graph input whose
				 * gradient was asked for): the region backward covers */
};

/* A tensor flowing through the graph: contiguous, row-major, little-endian. */
struct value {
	char *name;
	int dtype;              /* enum graft_dtype; 0 until inferred */
	int rank;
	int64_t dims[NET_MAX_RANK];
	void *data;             /* NULL until planned; kernels write out[i]->data */
	size_t nbytes;
	unsigned flags;         /* enum value_flags */
	/* NULL: plain row-major.  Otherwise a malloc'd dnnl_memory_desc_t: data is in that
	 * (blocked) layout, nbytes its size.  Only a producer of a VALUE_BLOCKABLE value sets
	 * it, on its first run after a plan, replacing data with a buffer of that size if
	 * larger (free the old one); the executor frees it when it replans. */
	void *layout;
	void *shadow;           /* executor-private: a plain copy of a blocked value */
	/* Training: dL/dvalue, a plain float32 value of the same dims, for float values in
	 * the VALUE_DIFF region; NULL elsewhere. */
	struct value *grad;
};

struct op_def;

/* What the kernels of one net did, for tests and benchmarks: a kernel that creates a
 * oneDNN primitive counts it in primitives, one that reorders data between layouts
 * counts it in reorders (per run). */
struct net_counters {
	uint64_t primitives;
	uint64_t reorders;
};

/* An activation the executor fused into a node's output (Conv, Gemm): the kernel applies
 * it to its result (a oneDNN eltwise post-op), and the activation node is skipped. */
enum fused_kind {
	FUSED_NONE = 0, FUSED_RELU, FUSED_LEAKY_RELU /* alpha */, FUSED_CLIP /* alpha..beta */,
	FUSED_SIGMOID, FUSED_HARDSIGMOID /* alpha * x + beta */, FUSED_HARDSWISH, FUSED_TANH,
	FUSED_SWISH /* x * sigmoid(x): SiLU */,
};
struct fused_act {
	enum fused_kind kind;
	float alpha, beta;
};

/* A training net's Dropout draws for the current run: row r of the batch (the index along
 * the first axis) draws from (key, the node's salt, first_row + r) alone, so a sample's
 * mask does not depend on how a batch is cut into pieces (data-parallel training). */
struct draws {
	uint64_t key;
	int64_t first_row;
};

struct node {
	const Onnx__NodeProto *proto;   /* attributes, name, op_type: read-only */
	const struct op_def *op;
	/* The node's "value" tensor attribute (Constant's, ConstantOfShape's), decoded by the
	 * executor so that kernels need no ONNX decoder; data NULL when it has none. */
	struct graft_array value;
	int64_t opset;                  /* version of the node's domain in the model */
	size_t n_in, n_out;
	struct value **in;      /* (n_in) NULL for an omitted optional input */
	struct value **out;     /* (n_out) NULL for an omitted optional output */
	void *priv;             /* kernel state (oneDNN primitives...), owned by the op */
	struct fused_act act;   /* applied to out[0] by ops that support fusion */
	struct net_counters *counters;  /* the net's, shared by all its nodes */
	struct graft_wisdom *wisdom;    /* the net's kernel choices (opts.wisdom), or NULL */
	int fused_away;         /* the executor folded this node into another: never run */
	/* Depthwise fusion (Conv only): pre is a 1x1 Conv whose only reader is this 3x3
	 * depthwise Conv; this node runs both as one primitive, reading pre's inputs, and
	 * pre's output (its in[0]) is never allocated unless the kernel must fall back to
	 * running them apart.  host is the reverse link, set on pre. */
	struct node *pre, *host;
	const struct blocked_def *blocked;      /* ops_find_blocked's, or NULL */

	/* Training nets only. */
	int training;           /* run as in training: BatchNormalization normalises with the
				 * batch's statistics and updates its running ones (in[3],
				 * in[4], VALUE_STATE), Dropout drops (drawing from rng) */
	const struct grad_def *grad;    /* backward, NULL when the op has none */
	int needs_grad;         /* some output has a gradient: backward runs for this node */
	/* (n_in) where backward writes dL/d in[k], plain float32 of in[k]'s dims, overwriting
	 * it; NULL when in[k] needs no gradient.  The executor sums contributions when a
	 * value has several readers. */
	struct value **gin;
	struct graft_rng *rng;  /* the net's: set in a training net (see draws) */
	const struct draws *draws;      /* a training net's run's Dropout key (eltwise.c) */
	uint64_t draw_salt;     /* this node's, so that two Dropouts draw apart */
	/* BatchNormalization in training: statistics summed over a group of processes
	 * (graft_net_opts.group_sum); NULL: this run's batch alone */
	int (*group_sum)(void *ctx, double *v, size_t n, struct graft_err *err);
	void *group_ctx;
	int inplace;            /* out[0] shares in[0]'s buffer (a training net's Relu whose
				 * input nothing else reads and whose producer's backward does
				 * not read its output): one activation less to keep */
};

struct op_def {
	const char *name;       /* op_type in the default ONNX domain */
	/* Sets dtype, rank and dims of every out[i] from the inputs' types and shapes.  It
	 * may read in[k]->data where that input must be a plan-time constant (Reshape's
	 * shape, Slice's starts...): check (in[k]->flags & VALUE_CONST) and fail with
	 * GRAFT_EUNSUPPORTED otherwise.  Called once per plan. */
	int (*infer)(struct node *n, struct graft_err *err);
	/* Computes every out[i]->data from the inputs.  May keep state in n->priv, built on
	 * the first call after a plan (shapes do not change between plans' runs). */
	int (*run)(struct node *n, struct graft_err *err);
	/* Frees n->priv; called when shapes change (before a new plan) and at the end.
	 * NULL when the op keeps no state. */
	void (*release)(struct node *n);
	unsigned flags;         /* enum op_flags */
	/* Bit k: infer reads in[k]'s data (shape, axes, pads...), which must therefore be
	 * known at plan time.  The executor traces such inputs back to the graph inputs
	 * they come from and plans those as constants. */
	unsigned plan_inputs;
};

/*
 * The backward of an op, kept apart from op_def (families list them in ops_<family>_grad[]
 * arrays, see registry.c).  backward runs after a forward run of the same plan, for nodes
 * with needs_grad, in reverse order.  It reads the inputs and outputs as the forward run
 * left them (plain layouts: the executor keeps values of the backward region plain), the
 * output gradients out[k]->grad (zeros when nothing downstream contributed; NULL only for
 * outputs that are not float), and whatever run kept in priv when n->needs_grad was set
 * (a pooling workspace, batch statistics, a Dropout mask).  For every k with gin[k], it
 * writes dL/d in[k] into gin[k]->data.  Broadcast inputs get their gradient summed over
 * the broadcast axes.
 */
struct grad_def {
	const char *name;       /* op_type in the default ONNX domain */
	int (*backward)(struct node *n, struct graft_err *err);
};

/* The backward for op_type, or NULL. */
const struct grad_def *ops_find_grad(const char *op_type);

/*
 * A kernel of an op for inputs in blocked layouts (families list them in
 * ops_<family>_blocked[] arrays): where run would need plain copies of them, the
 * executor calls this first, with some inputs blocked (value->layout) and the others
 * plain.  out[0] may stay in an input's layout when it is VALUE_BLOCKABLE
 * (onednn_keep_layout), else it is written plain.  It returns OPS_DECLINED when it
 * cannot (a layout or broadcast it does not handle): the executor then makes the plain
 * copies and calls run.  The executor lets every input of such an op stay blocked.
 */
struct blocked_def {
	const char *name;       /* op_type in the default ONNX domain */
	int (*run)(struct node *n, struct graft_err *err);
};
/* A blocked_def's "not this one" (graft's errors are negative). */
#define OPS_DECLINED 1

/* The kernel for blocked inputs of op_type, or NULL. */
const struct blocked_def *ops_find_blocked(const char *op_type);

/*
 * The memory a kernel allocates for itself (families that keep any list them in
 * ops_<family>_mem[] arrays): plan_bytes says, from the shapes infer set, how many bytes
 * its first run after a plan will allocate (a copy of its weights in the layout it
 * prefers), so that the executor counts them before allocating (graft_net_estimate).
 */
struct mem_def {
	const char *name;       /* op_type in the default ONNX domain */
	uint64_t (*plan_bytes)(const struct node *n);
};

/* What node n's kernel will allocate for itself (struct mem_def); 0 for ops that keep
 * no buffers. */
uint64_t ops_plan_bytes(const struct node *n);

enum op_flags {
	OP_FUSES_ACT = 1 << 0,  /* run applies n->act to its output */
	/* Elementwise and zero-preserving (f(0, 0...) == 0): when all its inputs share one
	 * blocked layout and its output's shape, the executor runs it over the raw
	 * buffers, padding included, and the output keeps the layout. */
	OP_LAYOUT_TRANSPARENT = 1 << 1,
	/* Reads in[0] in whatever layout it has (value->layout), and writes out[0] in the
	 * layout its primitive prefers when out[0] is VALUE_BLOCKABLE (Conv, pooling). */
	OP_BLOCKED_IO = 1 << 2,
};

/* The definition for op_type in the default domain, or NULL. */
const struct op_def *ops_find(const char *op_type);
/* An op the executor makes by fusion and no model names, so that ops_find and ops_all
 * never give it: "QLinearAdd" (quant.c), ONNX Runtime's com.microsoft op of that name.
 * NULL for another name. */
const struct op_def *ops_find_fused(const char *name);
/* Every op the executor supports, NULL-terminated (for --list-ops and docs/ops.md). */
const struct op_def *const *ops_all(void);
/* How many ops the families define (ops_all holds at most its room of them). */
size_t ops_family_total(void);

/* ---- wisdom (lib/engine/wisdom.c): kernel choices by shape, for kernels ---- */

/* The choice recorded for shape (the kernel's own key text) on this machine, or NULL. */
const char *wisdom_find(const struct graft_wisdom *w, const char *shape);
/* Records choice for shape, which took us microseconds a run and whose result differs
 * from the default kernel's by diff (the largest difference over the largest value). */
int wisdom_add(struct graft_wisdom *w, const char *shape, const char *choice, double us,
	       double diff, struct graft_err *err);

/* ---- helpers for kernels (ops_util.c) ---- */

/* Formats "node 'NAME' (OP): message" into err and returns code. */
int node_err(const struct node *n, struct graft_err *err, enum graft_status code,
	     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Attributes by name.  Getters return the default when the attribute is absent. */
const Onnx__AttributeProto *attr_find(const struct node *n, const char *name);
int64_t attr_int(const struct node *n, const char *name, int64_t dflt);
float attr_float(const struct node *n, const char *name, float dflt);
/* 1 when the string attribute name (or dflt, when absent) equals s. */
int attr_string_eq(const struct node *n, const char *name, const char *dflt, const char *s);
/* Copies a string attribute (or dflt) into buf, NUL-terminated and truncated to size. */
void attr_string(const struct node *n, const char *name, const char *dflt, char *buf,
		 size_t size);
/* Copies an ints attribute into v (at most max); returns its length, or -1 if absent. */
long attr_ints(const struct node *n, const char *name, int64_t *v, size_t max);

/* The dtype's name for messages: "float", "int64"..., or "?" for an unknown type. */
const char *dtype_label(int dtype);
uint64_t value_numel(const struct value *v);
void value_set(struct value *v, int dtype, int rank, const int64_t *dims);
/* Reads an int32 or int64 plan-time constant as int64 into out (at most max); returns
 * the element count, or -1 with err set (naming the node) when v is not a constant
 * integer tensor. */
long value_ints(const struct node *n, const struct value *v, int64_t *out, size_t max,
		struct graft_err *err);
/* Element i of a buffer of any numeric dtype (float16 and bfloat16 included), read or
 * written as a double or as an int64.  Writing floats to integers truncates, saturates at
 * int64's range and maps NaN to 0; narrower integer types then wrap, as numpy's astype
 * does.  uint64 keeps its bits through int64. */
double elem_get_f64(const void *p, int dtype, uint64_t i);
int64_t elem_get_i64(const void *p, int dtype, uint64_t i);
void elem_put_f64(void *p, int dtype, uint64_t i, double x);
void elem_put_i64(void *p, int dtype, uint64_t i, int64_t x);
float elem_half_to_float(uint16_t h);
uint16_t elem_float_to_half(float f);   /* rounds to nearest even */
float elem_bf16_to_float(uint16_t h);
uint16_t elem_float_to_bf16(float f);   /* rounds to nearest even; NaN stays NaN */
int64_t elem_sat_i64(double x);         /* truncates and saturates; NaN is 0 */
/* The same for element i of a value. */
double value_get(const struct value *v, uint64_t i);
void value_put(struct value *v, uint64_t i, double x);
/* The numpy broadcast of two shapes into out (rank *out_rank); -1 if incompatible. */
int broadcast_dims(int ra, const int64_t *a, int rb, const int64_t *b, int *out_rank,
		   int64_t *out);
/* Strides (in elements) with which a value of shape (r, d) is read when broadcast to
 * shape (out_rank, out): 0 along broadcast axes.  Fills strides[out_rank]. */
void broadcast_strides(int r, const int64_t *d, int out_rank, const int64_t *out,
		       int64_t *strides);
/* Normalises a possibly negative axis against rank; -1 if out of range. */
int norm_axis(int64_t axis, int rank);

/* ---- data movement (ops_util.c): reshape.c, join.c, index.c and constant.c ----
 *
 * These ops do no arithmetic on elements, so their kernels work on any fixed-size dtype
 * by moving graft_dtype_size() bytes at a time. */

/* Below this many output bytes, one thread copies: starting threads costs more. */
#define PAR_BYTES ((uint64_t)1 << 17)
/* Tile views a rank-r tensor as 2r axes. */
#define VIEW_MAX_RANK (2 * NET_MAX_RANK)

/* Checks the input count, that the first n_req inputs are present, and that the node has
 * exactly one output. */
int want_io(const struct node *n, struct graft_err *err, size_t n_req, size_t max_in);
/* Fails (GRAFT_EUNSUPPORTED, naming v) when v's dtype has no fixed element size. */
int fixed_size(const struct node *n, const struct value *v, struct graft_err *err);
/* Sets an output after checking its rank and that its element count is sane. */
int set_out(const struct node *n, struct value *out, int dtype, int rank,
	    const int64_t *dims, struct graft_err *err);
/* Row-major strides, in elements. */
void strides_of(int rank, const int64_t *dims, int64_t *st);
/* The product of dims[from..to). */
int64_t dims_prod(const int64_t *dims, int from, int to);
/* Reads an int list from an attribute (at most max); -1 if absent, or an error code
 * (below -1) when it is longer than max. */
long ints_attr(const struct node *n, const char *name, int64_t *v, size_t max,
	       struct graft_err *err);
/* Fills n elements of es bytes at dst with the element at elem, doubling memcpy. */
void fill_elems(void *dst, const void *elem, uint64_t n, size_t es);
/* memcpy, split across threads when large (one core does not saturate memory). */
void copy_bytes(void *dst, const void *src, size_t nbytes);

/* A strided view of a source.  Copying it fills a contiguous destination of shape dims
 * from src + sum(i_k * st_k).  Strides are in bytes and may be 0 (broadcast) or
 * negative (reversed slices). */
struct view {
	int rank;
	int64_t dims[VIEW_MAX_RANK];
	int64_t st[VIEW_MAX_RANK];
};

/* Copies the view into dst (contiguous, numel(view) elements of es bytes).  Modifies v. */
void copy_view(void *dst, const void *src, struct view *v, size_t es);

/* Backward (float32 only: only float values have gradients). */

/* A walk over two float buffers in step: element (i_0, ..., i_r-1) lies at
 * dst + sum(i_k * sd_k) and src + sum(i_k * ss_k), strides in elements.  sd may be 0
 * (several source elements add into one) or negative (reversed slices). */
struct walk {
	int rank;
	int64_t dims[VIEW_MAX_RANK];
	int64_t sd[VIEW_MAX_RANK], ss[VIEW_MAX_RANK];
};

/* Runs a walk, dst = src or dst += src when add, across threads when large.  Modifies w.
 * Two indices of w's outermost axis that moves dst must never reach one dst element
 * (true of slices, broadcasts and tiles). */
void walk_run(float *dst, const float *src, struct walk *w, int add);
/* Fails (GRAFT_EUNSUPPORTED) when in[0] needs a gradient but is not float32. */
int grad_is_float(const struct node *n, struct graft_err *err);
/* The backward of an op whose output is its input's elements as they are (Reshape,
 * Flatten, Squeeze, Unsqueeze; Cast to float): dX = dY. */
int copy_backward(struct node *n, struct graft_err *err);

/* ---- along one axis (ops_util.c): reduce.c and softmax.c ----
 *
 * (O, R, I): the dims before the axis, the axis, the dims after it (lower case here:
 * <tgmath.h>, which eltwise.c includes, defines I). */

/* Splits x's dims around axis: (O, R, I). */
void split_axis(const struct value *x, int axis, int64_t *o, int64_t *r, int64_t *i);
/* y[O, I]: the index along R of the maximum of sign * x, a float32 (O, R, I), the first
 * one or, with last, the last one: ArgMax (sign 1), ArgMin (sign -1: negation is exact)
 * and Hardmax. */
void argmax_f32(const float *x, int64_t *y, int64_t o, int64_t r, int64_t i, float sign,
		int last);

/* A float's bits, and back. */
static inline int32_t fbits(float f)
{
	int32_t i;
	memcpy(&i, &f, sizeof(i));
	return i;
}

static inline float bitsf(int32_t i)
{
	float f;
	memcpy(&f, &i, sizeof(f));
	return f;
}

/*
 * exp(x) in float32, written so that loops over it vectorise (libm's expf does not, and
 * softmax spends most of its time there): Cephes' polynomial on x - k ln 2, scaled by 2^k
 * as two powers of two built in the exponent bits, so that no step overflows.  Relative
 * error below 1e-7; 0 below -87.3 (where expf is denormal or 0), inf above 88.72, NaN for
 * NaN.  Clamping and the special cases use integer masks on the bits, not conditionals:
 * GCC turns a float conditional into a branch (with -ftrapping-math it will not compute
 * a float speculatively), and a branch stops vectorisation.  Inline, here: the simd loops
 * of reduce.c and softmax.c must see its body to vectorise.
 */
static inline float vexpf(float x)
{
	int32_t xi = fbits(x), mag = xi & 0x7fffffff;
	int32_t nan = -(int32_t)(mag > 0x7f800000);
	int32_t under = -(int32_t)((xi < 0) & (mag > fbits(87.3f)));
	int32_t over = -(int32_t)((xi >= 0) & (mag > fbits(88.72f)));
	float c = bitsf((xi & ~(under | over)) | (fbits(-87.3f) & under) | (fbits(88.72f) & over));
	float t = c * 1.44269504088896341f;
	int32_t k = (int32_t)(t + bitsf(fbits(0.5f) | (fbits(t) & (int32_t)0x80000000)));
	float kf = (float)k;
	float r = c - kf * 0.693359375f + kf * 2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	float y = p * bitsf(((k >> 1) + 127) * (1 << 23)) * bitsf((k - (k >> 1) + 127) * (1 << 23));
	int32_t yi = fbits(y) & ~under;
	yi = (yi & ~over) | (0x7f800000 & over);
	return bitsf((yi & ~nan) | (xi & nan));
}

#endif
