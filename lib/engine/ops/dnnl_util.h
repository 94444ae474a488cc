/*
 * dnnl_util.h: what the kernels built on oneDNN (conv.c, gemm.c, pool.c) share: the
 * process's CPU engine and stream, dnnl_status_t translated into GRAFT_EDNNL errors, and
 * memory descriptors for the executor's plain row-major values.
 */
#ifndef GRAFT_DNNL_UTIL_H
#define GRAFT_DNNL_UTIL_H

#include <oneapi/dnnl/dnnl.h>

#include "ops.h"

/* The CPU engine and the stream every kernel executes on, created on the first call and
 * kept until the process exits.  Returns 0, or GRAFT_EDNNL with err naming n. */
int onednn_get(const struct node *n, dnnl_engine_t *engine, dnnl_stream_t *stream,
	       struct graft_err *err);

/* 0 when st is dnnl_success; otherwise fills err ("node ...: dnnl_xxx failed: status")
 * with GRAFT_EDNNL and returns it.  what is the failed call; only its text up to the first
 * '(' is used, so ONEDNN_CHECK can pass the whole call expression. */
int onednn_check(const struct node *n, struct graft_err *err, dnnl_status_t st,
		 const char *what);
#define ONEDNN_CHECK(n, err, call) onednn_check((n), (err), (call), #call)

/* A memory descriptor for a row-major f32 (or dt) tensor of rank dims (1 to 12). */
dnnl_status_t onednn_md_plain(dnnl_memory_desc_t *md, int rank, const int64_t *dims,
			      dnnl_data_type_t dt);
/* A short text naming md's layout: the dims from outermost to innermost as letters (a =
 * dim 0) with the inner blocks after them ("abcd" is nchw, "acdb" nhwc, "abcd16b"
 * nChw16c); for keys (the wisdom's). */
void onednn_md_describe(const dnnl_memory_desc_t *md, char *buf, size_t size);
/* 1 when two descriptors describe the same layout. */
int onednn_md_same(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b);

/*
 * A 4-D f32 value in a channel-blocked layout, as kernels that read such values
 * directly see it: element (n, c, h, w) at n * C_pad * HW + (c / B) * HW * B +
 * (h * W + w) * B + c % B, the channels padded up to C_pad (a multiple of B) with zeros.
 * nChw16c and nChw8c are B 16 and 8; nhwc is B = C (one block, no padding).
 */
struct channel_blocks {
	int64_t N, C, C_pad, B, HW;
};
/* 1 and *b when v holds such a layout (v->layout), else 0. */
int onednn_channel_blocks(const struct value *v, struct channel_blocks *b);

/* Makes a memory object over data (which the caller owns; NULL for none yet). */
int onednn_memory(const struct node *n, dnnl_memory_t *mem, const dnnl_memory_desc_t *md,
		  void *data, struct graft_err *err);
/* Points mem at data when it points elsewhere (values' buffers move between plans, and
 * graph inputs between runs). */
int onednn_rebind(const struct node *n, dnnl_memory_t mem, void *data, struct graft_err *err);

/* Creates a primitive from an operation descriptor (attr may be NULL) and returns its
 * primitive descriptor in *pd (the caller destroys both) or, with pd NULL, destroys it.
 * Counts it in n->counters. */
int onednn_primitive(const struct node *n, const void *op_desc, const_dnnl_primitive_attr_t attr,
		     dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd, struct graft_err *err);
/* The same with oneDNN's implementation named impl (its impl_info_str, as
 * onednn_impl_name gives it) rather than its first choice; impl NULL: the first. */
int onednn_primitive_impl(const struct node *n, const void *op_desc,
			  const_dnnl_primitive_attr_t attr, const char *impl,
			  dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd, struct graft_err *err);
/* The name oneDNN gives pd's implementation ("jit:avx512_core", "brgconv:avx2"...). */
const char *onednn_impl_name(const_dnnl_primitive_desc_t pd);
/* Executes prim on the stream and waits for it. */
int onednn_execute(const struct node *n, dnnl_primitive_t prim, int nargs,
		   const dnnl_exec_arg_t *args, struct graft_err *err);

/* A reorder primitive from layout src to layout dst (*prim NULL when they are the same). */
int onednn_reorder_new(const struct node *n, const dnnl_memory_desc_t *src,
		       const dnnl_memory_desc_t *dst, dnnl_primitive_t *prim,
		       struct graft_err *err);
/* Runs a reorder made by onednn_reorder_new, counting it in n->counters. */
int onednn_reorder_run(const struct node *n, dnnl_primitive_t prim, dnnl_memory_t from,
		       dnnl_memory_t to, struct graft_err *err);
/* Reorders once, from src (layout smd) into dst (layout dmd): for constant weights (not
 * counted: the counters count what every run does). */
int onednn_reorder_once(const struct node *n, const dnnl_memory_desc_t *smd, const void *src,
			const dnnl_memory_desc_t *dmd, void *dst, struct graft_err *err);

/* Gives value v (an output of n) the layout md: records it in v->layout and replaces
 * v's buffer with a zeroed, 64-byte aligned one of the layout's size (blocked layouts pad
 * channels).  Only for VALUE_BLOCKABLE values; the executor frees both on replan. */
int onednn_keep_layout(const struct node *n, struct value *v, const dnnl_memory_desc_t *md,
		       struct graft_err *err);

/* Appends n->act, the activation the executor fused into n, to post-ops po. */
int onednn_append_act(const struct node *n, dnnl_post_ops_t po, struct graft_err *err);
/* A primitive attribute carrying n->act alone in *attr, or NULL when n has none; the
 * caller destroys it. */
int onednn_act_attr(const struct node *n, dnnl_primitive_attr_t *attr, struct graft_err *err);

/* The sliding-window geometry that Conv and the pooling ops share, along nsp (1 to 3)
 * spatial axes. */
struct window {
	int nsp;
	int64_t in[3];          /* input size */
	int64_t k[3];           /* kernel size */
	int64_t stride[3], dil[3];
	int64_t pad_l[3], pad_r[3];
	int64_t pad_end[3];     /* the end pads asked for (pad_r before ceil_mode grew it) */
	int64_t out[3];         /* output size */
	int grown;              /* 1 when ceil_mode grew a pad_r beyond the pads given */
};
/* Reads n's strides, dilations, pads and auto_pad for w->in and w->k (set by the caller)
 * and fills the rest of w.  With ceil_mode, out rounds up, except that no window may
 * start in the right padding, and pad_r grows to cover the last window, so that oneDNN's
 * floor arithmetic gives the same size. */
int window_plan(const struct node *n, struct window *w, int ceil_mode, struct graft_err *err);
/* Reads the ints attribute name, which must hold count values, each >= 1 (or >= 0 with
 * nonneg), into v; leaves v alone when it is absent. */
int window_attr(const struct node *n, const char *name, int64_t *v, long count, int nonneg,
		struct graft_err *err);

/* ---- convolution (conv.c), shared with QLinearConv (qconv.c) ---- */

/* What a convolution's infer learns and its first run needs again. */
struct conv_geom {
	struct window w;
	int64_t batch, in_ch, out_ch, group;
};
/* The geometry of n's convolution of x by w (bias b, or NULL), Conv's or, with transpose,
 * ConvTranspose's: checks the shapes against each other and n's group and kernel_shape;
 * the window's input and kernel sizes are set, the rest is window_plan's (convt_geom's). */
int conv_geom_of(const struct node *n, const struct value *x, const struct value *w,
		 const struct value *b, int transpose, struct conv_geom *g, struct graft_err *err);
/* W's descriptors of type dt in oneDNN's logical order, (g,) out, in, k... (grouped
 * weights gain an axis): *plain as ONNX stores it, *any for a primitive to choose. */
int conv_wei_descs(const struct node *n, const struct conv_geom *g, int transpose,
		   dnnl_data_type_t dt, dnnl_memory_desc_t *plain, dnnl_memory_desc_t *any,
		   struct graft_err *err);

/* A memory object (*mem) for a value whose data is in layout user and that a primitive
 * sees in layout prim: over data itself when they agree, else over scratch of *bytes
 * (bound per run) with *user_mem over data and a reorder between them, user to prim when
 * to_prim (an input), prim to user otherwise (an output). */
int onednn_bind_activation(const struct node *n, const dnnl_memory_desc_t *user,
			   const dnnl_memory_desc_t *prim, void *data, int to_prim,
			   dnnl_memory_t *mem, dnnl_memory_t *user_mem, dnnl_primitive_t *reorder,
			   size_t *bytes, struct graft_err *err);
/* Per run, for what onednn_bind_activation made: points mem (or, with a reorder, user_mem)
 * at data, and mem at scratch slot (which may move between runs). */
int onednn_rebind_activation(const struct node *n, dnnl_memory_t mem, dnnl_memory_t user_mem,
			      size_t bytes, int slot, void *data, struct graft_err *err);

/* Aligned buffers for oneDNN layouts (64 bytes, as its kernels prefer); NULL on failure. */
void *onednn_alloc(size_t nbytes);
void onednn_free(void *p);

/* A buffer of at least nbytes for data a kernel needs only while it runs (activations in
 * another layout around a primitive), one per slot (0 to ONEDNN_SCRATCH_SLOTS - 1) and
 * thread.  It stays valid until the next call for the same slot on the same thread, which
 * may move it: look it up on every run.  NULL when out of memory. */
#define ONEDNN_SCRATCH_SLOTS 4
void *onednn_scratch(int slot, size_t nbytes);

/* ---- training ---- */

/* A forward_training primitive descriptor for op_desc (whose prop_kind must be
 * forward_training), without a primitive: the hint that backward primitive descriptors
 * need.  The caller destroys *pd. */
int onednn_hint_pd(const struct node *n, const void *op_desc, dnnl_primitive_desc_t *pd,
		   struct graft_err *err);
/* onednn_primitive_impl for a backward operation, with hint the forward's primitive
 * descriptor; *pd (when pd is not NULL) comes back for the caller to destroy. */
int onednn_primitive_bwd(const struct node *n, const void *op_desc,
			 const_dnnl_primitive_desc_t hint, const char *impl, dnnl_primitive_t *prim,
			 dnnl_primitive_desc_t *pd, struct graft_err *err);

#endif
