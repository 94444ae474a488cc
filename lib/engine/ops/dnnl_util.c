/*
 * dnnl_util.c: the oneDNN plumbing that conv.c, gemm.c and pool.c share.
 *
 * One CPU engine and one stream serve the whole process.  This is the one global the
 * kernels keep, and it is acceptable where a darknet-style global is not: a oneDNN CPU
 * engine is a handle on a process resource (the CPU and the library's thread pool and
 * caches), not per-model state, and every net in the process should share it, as the
 * primitive cache it keys does.  It is made on first use behind pthread_once, so nets
 * may be built from several threads, and never destroyed: primitives made on it may
 * outlive any one net, and the process's exit reclaims it (it stays reachable, so leak
 * checkers do not report it).  The stream is in-order and blocking on the CPU; the
 * kernels still wait on it after each execute, so a run's outputs are complete when the
 * node returns.
 *
 * Scratch buffers, for activations that a kernel reorders into a primitive's layout and
 * back, are per thread rather than per node: a node needs them only while it runs, and
 * sharing them keeps the cost at the largest activation rather than the sum of all of
 * them (about 550 MB less for resnet18 at batch 32), and pays the first touch of fresh
 * pages once.  A pthread key frees them when a thread ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <oneapi/dnnl/dnnl_debug.h>

#include "dnnl_util.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static dnnl_status_t init_status = dnnl_success;
static const char *init_what = "";

static void init(void)
{
	dnnl_status_t st = dnnl_engine_create(&engine, dnnl_cpu, 0);

	if (st != dnnl_success) {
		init_status = st;
		init_what = "dnnl_engine_create";
		engine = NULL;
		return;
	}
	st = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
	if (st != dnnl_success) {
		init_status = st;
		init_what = "dnnl_stream_create";
		stream = NULL;
	}
}

int onednn_get(const struct node *n, dnnl_engine_t *e, dnnl_stream_t *s, struct graft_err *err)
{
	pthread_once(&once, init);
	if (init_status != dnnl_success)
		return onednn_check(n, err, init_status, init_what);
	if (e)
		*e = engine;
	if (s)
		*s = stream;
	return 0;
}

int onednn_check(const struct node *n, struct graft_err *err, dnnl_status_t st,
		 const char *what)
{
	if (st == dnnl_success)
		return 0;
	return node_err(n, err, GRAFT_EDNNL, "%.*s failed: %s", (int)strcspn(what, "( "), what,
			dnnl_status2str(st));
}

dnnl_status_t onednn_md_plain(dnnl_memory_desc_t *md, int rank, const int64_t *dims,
			      dnnl_data_type_t dt)
{
	dnnl_dims_t d = {0}, strides = {0};
	int64_t s = 1;

	if (rank < 1 || rank > DNNL_MAX_NDIMS)
		return dnnl_invalid_arguments;
	for (int i = rank - 1; i >= 0; i--) {
		d[i] = dims[i];
		strides[i] = s;
		s *= dims[i] > 0 ? dims[i] : 1;
	}
	return dnnl_memory_desc_init_by_strides(md, rank, d, dt, strides);
}

int onednn_md_same(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b)
{
	return dnnl_memory_desc_equal(a, b) != 0;
}

int onednn_channel_blocks(const struct value *v, struct channel_blocks *b)
{
	const dnnl_memory_desc_t *md = v->layout;
	const dnnl_blocking_desc_t *bd = md ? &md->format_desc.blocking : NULL;

	if (!md || md->ndims != 4 || md->data_type != dnnl_f32 ||
	    md->format_kind != dnnl_blocked || md->offset0 != 0 || md->extra.flags != 0 ||
	    md->padded_dims[0] != md->dims[0] || md->padded_dims[2] != md->dims[2] ||
	    md->padded_dims[3] != md->dims[3])
		return 0;
	*b = (struct channel_blocks){md->dims[0], md->dims[1], md->padded_dims[1], 0,
				     md->dims[2] * md->dims[3]};
	int nhwc = bd->inner_nblks == 0 && b->C_pad == b->C;

	if (nhwc) {
		b->B = b->C;
	} else if (bd->inner_nblks == 1 && bd->inner_idxs[0] == 1 &&
		   (bd->inner_blks[0] == 8 || bd->inner_blks[0] == 16) &&
		   b->C_pad % bd->inner_blks[0] == 0) {
		b->B = bd->inner_blks[0];
	} else {
		return 0;
	}
	/* dense, channel blocks outside the spatial dims */
	return bd->strides[3] == b->B && bd->strides[2] == md->dims[3] * b->B &&
	       bd->strides[1] == (nhwc ? 1 : b->HW * b->B) &&
	       bd->strides[0] == b->C_pad * b->HW;
}

int onednn_memory(const struct node *n, dnnl_memory_t *mem, const dnnl_memory_desc_t *md,
		  void *data, struct graft_err *err)
{
	dnnl_engine_t e;
	int rc;

	*mem = NULL;
	if ((rc = onednn_get(n, &e, NULL, err)))
		return rc;
	return ONEDNN_CHECK(n, err, dnnl_memory_create(mem, md, e, data ? data : DNNL_MEMORY_NONE));
}

int onednn_rebind(const struct node *n, dnnl_memory_t mem, void *data, struct graft_err *err)
{
	void *cur = NULL;
	int rc;

	if ((rc = ONEDNN_CHECK(n, err, dnnl_memory_get_data_handle(mem, &cur))))
		return rc;
	if (cur == data)
		return 0;
	return ONEDNN_CHECK(n, err, dnnl_memory_set_data_handle(mem, data));
}

void onednn_md_describe(const dnnl_memory_desc_t *md, char *buf, size_t size)
{
	const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
	int order[DNNL_MAX_NDIMS], n = md->ndims, at = 0;

	if (md->format_kind != dnnl_blocked) {
		snprintf(buf, size, "kind%d", (int)md->format_kind);
		return;
	}
	for (int i = 0; i < n; i++)
		order[i] = i;
	for (int i = 1; i < n; i++)             /* by stride, largest first; stable */
		for (int j = i; j > 0 && b->strides[order[j]] > b->strides[order[j - 1]]; j--) {
			int t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	for (int i = 0; i < n && at + 2 < (int)size; i++)
		buf[at++] = (char)('a' + order[i]);
	for (int k = 0; k < b->inner_nblks && at + 24 < (int)size; k++)
		at += snprintf(buf + at, size - (size_t)at, "%lld%c", (long long)b->inner_blks[k],
			       (char)('a' + b->inner_idxs[k]));
	buf[at < (int)size ? at : (int)size - 1] = 0;
}

const char *onednn_impl_name(const_dnnl_primitive_desc_t pd)
{
	const char *s = NULL;

	return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) == dnnl_success &&
	       s ? s : "?";
}

/* The primitive descriptor of op_desc's implementation named impl (oneDNN's
 * impl_info_str), the first that oneDNN offers under that name. */
static int pd_of_impl(const struct node *n, const void *op_desc, const_dnnl_primitive_attr_t attr,
		      dnnl_engine_t e, const char *impl, const_dnnl_primitive_desc_t hint,
		      dnnl_primitive_desc_t *pd, struct graft_err *err)
{
	dnnl_primitive_desc_iterator_t it;
	int rc;

	*pd = NULL;
	if ((rc = ONEDNN_CHECK(n, err, dnnl_primitive_desc_iterator_create(&it, op_desc, attr, e,
									    hint))))
		return rc;
	do {
		dnnl_primitive_desc_t p = dnnl_primitive_desc_iterator_fetch(it);
		if (p && strcmp(onednn_impl_name(p), impl) == 0) {
			*pd = p;
			break;
		}
		dnnl_primitive_desc_destroy(p);
	} while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
	dnnl_primitive_desc_iterator_destroy(it);
	return *pd ? 0 : node_err(n, err, GRAFT_EDNNL, "oneDNN offers no implementation '%s' "
				  "here", impl);
}

int onednn_primitive(const struct node *n, const void *op_desc, const_dnnl_primitive_attr_t attr,
		     dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd_out, struct graft_err *err)
{
	return onednn_primitive_impl(n, op_desc, attr, NULL, prim, pd_out, err);
}

/* The primitive of op_desc (attr, hint, impl: each may be NULL), counted in
 * n->counters; its descriptor in *pd_out when that is not NULL. */
static int primitive_new(const struct node *n, const void *op_desc,
			 const_dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t hint,
			 const char *impl, dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd_out,
			 struct graft_err *err)
{
	dnnl_primitive_desc_t pd = NULL;
	dnnl_engine_t e;
	int rc;

	*prim = NULL;
	if (pd_out)
		*pd_out = NULL;
	if ((rc = onednn_get(n, &e, NULL, err)) ||
	    (rc = impl ? pd_of_impl(n, op_desc, attr, e, impl, hint, &pd, err)
		       : ONEDNN_CHECK(n, err, dnnl_primitive_desc_create(&pd, op_desc, attr, e, hint))))
		return rc;
	rc = ONEDNN_CHECK(n, err, dnnl_primitive_create(prim, pd));
	if (!rc && n->counters)
		n->counters->primitives++;
	if (rc || !pd_out)
		dnnl_primitive_desc_destroy(pd);
	else
		*pd_out = pd;
	return rc;
}

int onednn_primitive_impl(const struct node *n, const void *op_desc,
			  const_dnnl_primitive_attr_t attr, const char *impl,
			  dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd_out,
			  struct graft_err *err)
{
	return primitive_new(n, op_desc, attr, NULL, impl, prim, pd_out, err);
}

int onednn_execute(const struct node *n, dnnl_primitive_t prim, int nargs,
		   const dnnl_exec_arg_t *args, struct graft_err *err)
{
	dnnl_stream_t s;
	int rc;

	if ((rc = onednn_get(n, NULL, &s, err)) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_primitive_execute(prim, s, nargs, args))))
		return rc;
	return ONEDNN_CHECK(n, err, dnnl_stream_wait(s));
}

int onednn_reorder_new(const struct node *n, const dnnl_memory_desc_t *src,
		       const dnnl_memory_desc_t *dst, dnnl_primitive_t *prim,
		       struct graft_err *err)
{
	dnnl_primitive_desc_t pd = NULL;
	dnnl_engine_t e;
	int rc;

	*prim = NULL;
	if (onednn_md_same(src, dst))
		return 0;
	if ((rc = onednn_get(n, &e, NULL, err)) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_reorder_primitive_desc_create(&pd, src, e, dst, e,
									   NULL))))
		return rc;
	rc = ONEDNN_CHECK(n, err, dnnl_primitive_create(prim, pd));
	if (!rc && n->counters)
		n->counters->primitives++;
	dnnl_primitive_desc_destroy(pd);
	return rc;
}

int onednn_reorder_run(const struct node *n, dnnl_primitive_t prim, dnnl_memory_t from,
		       dnnl_memory_t to, struct graft_err *err)
{
	dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};

	if (n->counters)
		n->counters->reorders++;
	return onednn_execute(n, prim, 2, args, err);
}

int onednn_reorder_once(const struct node *n, const dnnl_memory_desc_t *smd, const void *src,
			const dnnl_memory_desc_t *dmd, void *dst, struct graft_err *err)
{
	dnnl_primitive_t prim = NULL;
	dnnl_memory_t sm = NULL, dm = NULL;
	int rc;

	if (onednn_md_same(smd, dmd)) {
		memcpy(dst, src, dnnl_memory_desc_get_size(smd));
		return 0;
	}
	/* oneDNN takes a non-const handle, but a reorder only reads its source. */
	if (!(rc = onednn_reorder_new(n, smd, dmd, &prim, err)) &&
	    !(rc = onednn_memory(n, &sm, smd, (void *)(uintptr_t)src, err)) &&
	    !(rc = onednn_memory(n, &dm, dmd, dst, err))) {
		dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, sm}, {DNNL_ARG_TO, dm}};
		rc = onednn_execute(n, prim, 2, args, err);
	}
	dnnl_memory_destroy(dm);
	dnnl_memory_destroy(sm);
	dnnl_primitive_destroy(prim);
	return rc;
}

int onednn_append_act(const struct node *n, dnnl_post_ops_t po, struct graft_err *err)
{
	const struct fused_act *a = &n->act;
	dnnl_status_t st;

	switch (a->kind) {
	case FUSED_NONE:
		return 0;
	case FUSED_RELU:
		st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
		break;
	case FUSED_LEAKY_RELU:
		st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, a->alpha, 0.0f);
		break;
	case FUSED_CLIP:
		st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip_v2, a->alpha, a->beta);
		break;
	case FUSED_SIGMOID:
		st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_logistic, 0.0f, 0.0f);
		break;
	case FUSED_HARDSIGMOID:
		/* oneDNN 2.6 has no hardsigmoid: max(0, min(1, alpha * x + beta)) in two steps */
		st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_linear, a->alpha, a->beta);
		if (st == dnnl_success)
			st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip_v2, 0.0f, 1.0f);
		break;
	case FUSED_HARDSWISH:
		/* oneDNN's x * relu6(x + 3) / 6 is ONNX's x * max(0, min(1, x / 6 + 1/2)) */
		st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_hardswish, 0.0f, 0.0f);
		break;
	case FUSED_TANH:
		st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_tanh, 0.0f, 0.0f);
		break;
	case FUSED_SWISH:
		/* oneDNN's swish is x / (1 + exp(-alpha x)): SiLU at alpha 1 */
		st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_swish, 1.0f, 0.0f);
		break;
	default:
		return node_err(n, err, GRAFT_EUNSUPPORTED, "fused activation %d is not supported",
				(int)a->kind);
	}
	return onednn_check(n, err, st, "dnnl_post_ops_append_eltwise");
}

int onednn_act_attr(const struct node *n, dnnl_primitive_attr_t *attr, struct graft_err *err)
{
	dnnl_post_ops_t po = NULL;
	int rc;

	*attr = NULL;
	if (n->act.kind == FUSED_NONE)
		return 0;
	if ((rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_create(attr))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_post_ops_create(&po))) ||
	    (rc = onednn_append_act(n, po, err)) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_set_post_ops(*attr, po)))) {
		dnnl_post_ops_destroy(po);
		dnnl_primitive_attr_destroy(*attr);
		*attr = NULL;
		return rc;
	}
	dnnl_post_ops_destroy(po);
	return 0;
}

int window_attr(const struct node *n, const char *name, int64_t *v, long count, int nonneg,
		struct graft_err *err)
{
	int64_t tmp[6];
	long got = attr_ints(n, name, tmp, 6);

	if (got < 0)
		return 0;
	if (got != count)
		return node_err(n, err, GRAFT_EFORMAT, "%s has %ld values, expected %ld", name, got,
				count);
	for (long i = 0; i < count; i++) {
		if (tmp[i] < (nonneg ? 0 : 1))
			return node_err(n, err, GRAFT_EFORMAT, "%s[%ld] is %lld", name, i,
					(long long)tmp[i]);
		v[i] = tmp[i];
	}
	return 0;
}

int window_plan(const struct node *n, struct window *w, int ceil_mode, struct graft_err *err)
{
	int64_t pads[6] = {0};
	char mode[32];
	int rc;

	w->grown = 0;
	for (int i = 0; i < w->nsp; i++)
		w->stride[i] = w->dil[i] = 1;
	if ((rc = window_attr(n, "strides", w->stride, w->nsp, 0, err)) ||
	    (rc = window_attr(n, "dilations", w->dil, w->nsp, 0, err)) ||
	    (rc = window_attr(n, "pads", pads, 2 * w->nsp, 1, err)))
		return rc;
	attr_string(n, "auto_pad", "NOTSET", mode, sizeof(mode));
	for (int i = 0; i < w->nsp; i++) {
		int64_t s = w->stride[i], ext = (w->k[i] - 1) * w->dil[i] + 1, in = w->in[i];
		int64_t pl = pads[i], pr = pads[w->nsp + i], span, total;

		if (w->k[i] < 1)
			return node_err(n, err, GRAFT_EFORMAT, "kernel size %lld along axis %d",
					(long long)w->k[i], i);
		if (strcmp(mode, "NOTSET") == 0 || !*mode) {
			span = in + pl + pr - ext;
			if (span < 0)
				return node_err(n, err, GRAFT_EFORMAT, "the window (%lld) is larger than "
						"the padded input (%lld) along spatial axis %d",
						(long long)ext, (long long)(in + pl + pr), i);
			w->out[i] = span / s + 1;
			if (ceil_mode) {
				w->out[i] = (span + s - 1) / s + 1;
				if ((w->out[i] - 1) * s >= in + pl)
					w->out[i]--;    /* no window starts in the right padding */
			}
			if ((w->out[i] - 1) * s + ext - in - pl > pr) {
				pr = (w->out[i] - 1) * s + ext - in - pl;
				w->grown = 1;
			}
		} else if (strcmp(mode, "VALID") == 0) {
			pl = pr = 0;
			if (in < ext)
				return node_err(n, err, GRAFT_EFORMAT, "the window (%lld) is larger than "
						"the input (%lld) along spatial axis %d", (long long)ext,
						(long long)in, i);
			w->out[i] = (in - ext) / s + 1;
		} else if (strcmp(mode, "SAME_UPPER") == 0 || strcmp(mode, "SAME_LOWER") == 0) {
			w->out[i] = (in + s - 1) / s;
			total = (w->out[i] - 1) * s + ext - in;
			if (total < 0)
				total = 0;
			if (mode[5] == 'U') {
				pl = total / 2;
				pr = total - pl;
			} else {
				pr = total / 2;
				pl = total - pr;
			}
		} else {
			return node_err(n, err, GRAFT_EFORMAT, "auto_pad '%s' is not NOTSET, VALID, "
					"SAME_UPPER or SAME_LOWER", mode);
		}
		w->pad_l[i] = pl;
		w->pad_r[i] = pr;
		w->pad_end[i] = w->grown ? pads[w->nsp + i] : pr;
	}
	return 0;
}

void *onednn_alloc(size_t nbytes)
{
	void *p = NULL;

	if (posix_memalign(&p, 64, nbytes ? (nbytes + 63) / 64 * 64 : 64))
		return NULL;
	return p;
}

void onednn_free(void *p)
{
	free(p);
}

struct scratch {
	void *p[ONEDNN_SCRATCH_SLOTS];
	size_t n[ONEDNN_SCRATCH_SLOTS];
};

static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;
static int scratch_key_ok;

static void scratch_free(void *arg)
{
	struct scratch *s = arg;

	for (int i = 0; i < ONEDNN_SCRATCH_SLOTS; i++)
		onednn_free(s->p[i]);
	free(s);
}

static void scratch_init(void)
{
	scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

void *onednn_scratch(int slot, size_t nbytes)
{
	struct scratch *s;

	pthread_once(&scratch_once, scratch_init);
	if (!scratch_key_ok || slot < 0 || slot >= ONEDNN_SCRATCH_SLOTS)
		return NULL;
	if (!(s = pthread_getspecific(scratch_key))) {
		if (!(s = calloc(1, sizeof(*s))))
			return NULL;
		if (pthread_setspecific(scratch_key, s)) {
			free(s);
			return NULL;
		}
	}
	if (s->n[slot] < nbytes) {
		onednn_free(s->p[slot]);
		s->p[slot] = onednn_alloc(nbytes);
		s->n[slot] = s->p[slot] ? nbytes : 0;
	}
	return s->p[slot];
}

int onednn_bind_activation(const struct node *n, const dnnl_memory_desc_t *user,
			   const dnnl_memory_desc_t *prim, void *data, int to_prim,
			   dnnl_memory_t *mem, dnnl_memory_t *user_mem, dnnl_primitive_t *reorder,
			   size_t *bytes, struct graft_err *err)
{
	int rc;

	if (onednn_md_same(user, prim))
		return onednn_memory(n, mem, prim, data, err);
	*bytes = dnnl_memory_desc_get_size(prim);
	if ((rc = onednn_memory(n, mem, prim, NULL, err)) ||
	    (rc = onednn_memory(n, user_mem, user, data, err)))
		return rc;
	return to_prim ? onednn_reorder_new(n, user, prim, reorder, err)
		       : onednn_reorder_new(n, prim, user, reorder, err);
}

int onednn_rebind_activation(const struct node *n, dnnl_memory_t mem, dnnl_memory_t user_mem,
			      size_t bytes, int slot, void *data, struct graft_err *err)
{
	void *buf;
	int rc;

	if (!user_mem)
		return onednn_rebind(n, mem, data, err);
	if (!(buf = onednn_scratch(slot, bytes)))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	if ((rc = onednn_rebind(n, user_mem, data, err)))
		return rc;
	return onednn_rebind(n, mem, buf, err);
}

int onednn_keep_layout(const struct node *n, struct value *v, const dnnl_memory_desc_t *md,
		       struct graft_err *err)
{
	size_t size = dnnl_memory_desc_get_size(md);
	dnnl_memory_desc_t *copy = malloc(sizeof(*copy));
	void *buf = NULL;

	if (!copy || posix_memalign(&buf, 64, size ? size : 64)) {
		free(copy);
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	}
	memset(buf, 0, size);
	*copy = *md;
	free(v->data);
	free(v->layout);
	v->data = buf;
	v->nbytes = size;
	v->layout = copy;
	return 0;
}

int onednn_hint_pd(const struct node *n, const void *op_desc, dnnl_primitive_desc_t *pd,
		   struct graft_err *err)
{
	dnnl_engine_t e;
	int rc;

	*pd = NULL;
	if ((rc = onednn_get(n, &e, NULL, err)))
		return rc;
	return ONEDNN_CHECK(n, err, dnnl_primitive_desc_create(pd, op_desc, NULL, e, NULL));
}

int onednn_primitive_bwd(const struct node *n, const void *op_desc,
			 const_dnnl_primitive_desc_t hint, const char *impl, dnnl_primitive_t *prim,
			 dnnl_primitive_desc_t *pd_out, struct graft_err *err)
{
	return primitive_new(n, op_desc, NULL, hint, impl, prim, pd_out, err);
}
