/*
 * gemm.c: Gemm and MatMul on oneDNN's matmul primitive.
 *
 * Transposed operands are not copied per run: the matmul reads them through strided
 * memory descriptors, and a constant B (weights) is packed once, on the first run after a
 * plan, into the layout oneDNN prefers (see mm_build).  Gemm's alpha is the
 * primitive's output scale; C enters as the matmul's bias where alpha and beta are 1 and
 * C is a row (a Linear layer's bias), and otherwise the output starts as C (broadcast)
 * and a sum post-op adds the product to beta times it.  MatMul follows numpy: 1-D operands
 * gain and then lose a unit axis, and batch axes broadcast (oneDNN broadcasts unit batch
 * dims itself; a B without batch axes folds A's batch axes into its rows).  float32
 * runs on oneDNN; int32, int64 and double MatMul run in a plain loop.
 */
#include <stdlib.h>
#include <string.h>

#include "dnnl_util.h"

/* One product of backward, dst = alpha * src . wei, over strided operands. */
struct mm_prod {
	dnnl_primitive_t prim;
	dnnl_memory_t src, wei, dst;
};

struct mm_state {
	dnnl_primitive_t prim;
	dnnl_memory_t a, b, bias, y;
	void *b_packed;         /* a constant B in the layout the primitive prefers */
	int prefill;            /* Gemm: Y starts as C, which the primitive scales by beta */
	/* Backward, built on its first call after a plan. */
	int grad_built;
	struct mm_prod ga, gb;  /* the products giving dA and dB (prim NULL when unused) */
	float *full_a, *full_b; /* MatMul: dA, dB before the sum over broadcast batch axes */
};

/* A constant B of more bytes than this is read in place, not packed.  Packing copies the
 * weights: for a Linear layer of 512 MiB (16384x8192) at batch 2 that would double the
 * memory a large model runs in, and buy nothing: a product that streams a weight that
 * large from memory runs at memory speed in either layout (measured below). */
#define MM_PACK_MAX_BYTES ((size_t)64 << 20)

/* 1 when the kernel packs B (a constant small enough) on its first run after a plan. */
static int mm_packs(const struct value *b)
{
	return (b->flags & VALUE_CONST) && b->nbytes <= MM_PACK_MAX_BYTES;
}

static void prod_release(struct mm_prod *p)
{
	dnnl_primitive_destroy(p->prim);
	dnnl_memory_destroy(p->dst);
	dnnl_memory_destroy(p->wei);
	dnnl_memory_destroy(p->src);
}

static void mm_release(struct node *n)
{
	struct mm_state *s = n->priv;

	if (!s)
		return;
	onednn_free(s->full_b);
	onednn_free(s->full_a);
	prod_release(&s->gb);
	prod_release(&s->ga);
	dnnl_primitive_destroy(s->prim);
	dnnl_memory_destroy(s->y);
	dnnl_memory_destroy(s->bias);
	dnnl_memory_destroy(s->b);
	dnnl_memory_destroy(s->a);
	onednn_free(s->b_packed);
	free(s);
	n->priv = NULL;
}

/* Makes the matmul and its memory objects over the values' buffers (bias_md NULL for no
 * bias).  A constant B (b_const) is packed once into the layout oneDNN prefers: at batch
 * 1 that runs a Linear layer 1.5 to 2 times faster than reading it strided in place, at
 * batch 32 1.3 times (oneDNN 2.6, 2 threads), for one copy of the weights.  When quiet,
 * a primitive oneDNN does not implement returns 1 without setting err (or making
 * anything), so that callers can try a layout and fall back. */
static int mm_build(struct node *n, const dnnl_memory_desc_t *a_md, void *a,
		    const dnnl_memory_desc_t *b_md, void *b, int b_const,
		    const dnnl_memory_desc_t *bias_md, void *bias, const dnnl_memory_desc_t *y_md,
		    void *y, const_dnnl_primitive_attr_t attr, int quiet, struct graft_err *err)
{
	struct mm_state *s = n->priv;
	dnnl_matmul_desc_t d;
	dnnl_memory_desc_t b_any;
	const dnnl_memory_desc_t *b_chosen;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_engine_t e;
	dnnl_status_t st;
	int rc;

	if ((rc = onednn_get(n, &e, NULL, err)))
		return rc;
	if (b_const && (rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&b_any,
					  b_md->ndims, b_md->dims, dnnl_f32, dnnl_format_tag_any))))
		return rc;
	if ((rc = ONEDNN_CHECK(n, err, dnnl_matmul_desc_init(&d, a_md, b_const ? &b_any : b_md,
							      bias_md, y_md))))
		return rc;
	st = dnnl_primitive_desc_create(&pd, &d, attr, e, NULL);
	if (st != dnnl_success)
		return quiet ? 1 : onednn_check(n, err, st, "dnnl_primitive_desc_create");
	b_chosen = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	if (!onednn_md_same(b_chosen, b_md)) {
		if (!(s->b_packed = onednn_alloc(dnnl_memory_desc_get_size(b_chosen))))
			rc = node_err(n, err, GRAFT_ENOMEM, "out of memory");
		else if (!(rc = onednn_reorder_once(n, b_md, b, b_chosen, s->b_packed, err)))
			rc = onednn_memory(n, &s->b, b_chosen, s->b_packed, err);
	} else {
		rc = onednn_memory(n, &s->b, b_md, b, err);
	}
	if (!rc)
		rc = ONEDNN_CHECK(n, err, dnnl_primitive_create(&s->prim, pd));
	dnnl_primitive_desc_destroy(pd);
	if (rc)
		return rc;
	if (n->counters)
		n->counters->primitives++;
	if ((rc = onednn_memory(n, &s->a, a_md, a, err)) ||
	    (bias_md && (rc = onednn_memory(n, &s->bias, bias_md, bias, err))))
		return rc;
	return onednn_memory(n, &s->y, y_md, y, err);
}

static int mm_exec(struct node *n, void *a, void *b, void *bias, void *y, struct graft_err *err)
{
	struct mm_state *s = n->priv;
	dnnl_exec_arg_t args[4];
	int nargs = 0, rc;

	if ((rc = onednn_rebind(n, s->a, a, err)) ||
	    (!s->b_packed && (rc = onednn_rebind(n, s->b, b, err))) ||
	    (s->bias && (rc = onednn_rebind(n, s->bias, bias, err))) ||
	    (rc = onednn_rebind(n, s->y, y, err)))
		return rc;
	args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, s->a};
	args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, s->b};
	if (s->bias)
		args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->bias};
	args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, s->y};
	return onednn_execute(n, s->prim, nargs, args, err);
}

/* ---- Gemm ------------------------------------------------------------------------------- */

struct gemm_shape {
	int64_t m, k, n;
	int64_t c[2];           /* C as a matrix (leading 1s added), when given */
	int has_c;
};

static int gemm_shape(const struct node *n, struct gemm_shape *g, struct graft_err *err)
{
	const struct value *a, *b, *c;
	int ta = attr_int(n, "transA", 0) != 0, tb = attr_int(n, "transB", 0) != 0;

	if (n->n_in < 2 || n->n_in > 3 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes A, B and an optional C, and one output");
	a = n->in[0];
	b = n->in[1];
	c = n->n_in == 3 ? n->in[2] : NULL;
	if (a->dtype != GRAFT_FLOAT || b->dtype != GRAFT_FLOAT || (c && c->dtype != GRAFT_FLOAT))
		return node_err(n, err, GRAFT_EUNSUPPORTED, "%s operands are not supported; only "
				"float32", dtype_label(a->dtype != GRAFT_FLOAT ? a->dtype
							: b->dtype != GRAFT_FLOAT ? b->dtype
										: c->dtype));
	if (a->rank != 2 || b->rank != 2)
		return node_err(n, err, GRAFT_EFORMAT, "A and B must be matrices, not of rank %d and "
				"%d", a->rank, b->rank);
	g->m = a->dims[ta];
	g->k = a->dims[!ta];
	g->n = b->dims[!tb];
	if (b->dims[tb] != g->k)
		return node_err(n, err, GRAFT_EFORMAT, "A%s is %lldx%lld but B%s is %lldx%lld",
				ta ? "'" : "", (long long)g->m, (long long)g->k, tb ? "'" : "",
				(long long)b->dims[tb], (long long)g->n);
	g->has_c = c != NULL;
	g->c[0] = g->c[1] = 1;
	if (c) {
		if (c->rank > 2)
			return node_err(n, err, GRAFT_EFORMAT, "C has rank %d", c->rank);
		for (int i = 0; i < c->rank; i++)
			g->c[2 - c->rank + i] = c->dims[i];
		if ((g->c[0] != 1 && g->c[0] != g->m) || (g->c[1] != 1 && g->c[1] != g->n))
			return node_err(n, err, GRAFT_EFORMAT, "C (%lldx%lld) does not broadcast to "
					"%lldx%lld", (long long)g->c[0], (long long)g->c[1],
					(long long)g->m, (long long)g->n);
	}
	return 0;
}

static int gemm_infer(struct node *n, struct graft_err *err)
{
	struct gemm_shape g = {0};
	int64_t dims[2];
	int rc = gemm_shape(n, &g, err);

	if (rc)
		return rc;
	dims[0] = g.m;
	dims[1] = g.n;
	value_set(n->out[0], GRAFT_FLOAT, 2, dims);
	return 0;
}

/* An attribute with output scale alpha (when not 1), a sum post-op scaled by beta (with
 * sum), and the fused activation; *attr NULL when it would be empty. */
static int gemm_attr(const struct node *n, float alpha, int sum, float beta,
		     dnnl_primitive_attr_t *attr, struct graft_err *err)
{
	dnnl_post_ops_t po = NULL;
	int rc;

	*attr = NULL;
	if (alpha == 1.0f && !sum && n->act.kind == FUSED_NONE)
		return 0;
	if ((rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_create(attr))) ||
	    (alpha != 1.0f &&
	     (rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_set_output_scales(*attr, 1, 0,
									     &alpha)))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_post_ops_create(&po))) ||
	    (sum && (rc = ONEDNN_CHECK(n, err, dnnl_post_ops_append_sum(po, beta)))) ||
	    (rc = onednn_append_act(n, po, err)) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_set_post_ops(*attr, po)))) {
		dnnl_primitive_attr_destroy(*attr);
		*attr = NULL;
	}
	dnnl_post_ops_destroy(po);
	return rc;
}

static int gemm_build(struct node *n, const struct gemm_shape *g, struct graft_err *err)
{
	struct value *a = n->in[0], *b = n->in[1], *c = g->has_c ? n->in[2] : NULL;
	struct value *y = n->out[0];
	int ta = attr_int(n, "transA", 0) != 0, tb = attr_int(n, "transB", 0) != 0;
	float alpha = attr_float(n, "alpha", 1.0f), beta = attr_float(n, "beta", 1.0f);
	dnnl_dims_t ad = {g->m, g->k}, bd = {g->k, g->n}, yd = {g->m, g->n};
	dnnl_dims_t as = {ta ? 1 : g->k, ta ? g->m : 1}, bs = {tb ? 1 : g->n, tb ? g->k : 1};
	dnnl_dims_t cd = {g->c[0], g->c[1]};
	dnnl_memory_desc_t a_md, b_md, c_md, y_md;
	dnnl_primitive_attr_t attr = NULL;
	struct mm_state *s;
	int use_c = c && beta != 0.0f && value_numel(c) > 0, rc;
	int b_const = mm_packs(b);

	if (!(s = calloc(1, sizeof(*s))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	n->priv = s;
	if ((rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_strides(&a_md, 2, ad, dnnl_f32,
									 as))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_strides(&b_md, 2, bd, dnnl_f32,
									 bs))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&y_md, 2, yd, dnnl_f32,
								     dnnl_ab))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32,
								     dnnl_ab))))
		return rc;
	/* C as the bias: oneDNN adds it before the output scale, so only with alpha 1, and
	 * only a row of N: other broadcasts of the bias run on oneDNN's reference kernel. */
	if (use_c && alpha == 1.0f && beta == 1.0f && g->c[0] == 1 && g->c[1] == g->n) {
		if ((rc = gemm_attr(n, 1.0f, 0, 0.0f, &attr, err)))
			return rc;
		rc = mm_build(n, &a_md, a->data, &b_md, b->data, b_const, &c_md, c->data, &y_md,
			      y->data, attr, 1, err);
		dnnl_primitive_attr_destroy(attr);
		if (rc != 1)
			return rc;
	}
	s->prefill = use_c;
	if ((rc = gemm_attr(n, alpha, use_c, beta, &attr, err)))
		return rc;
	rc = mm_build(n, &a_md, a->data, &b_md, b->data, b_const, NULL, NULL, &y_md, y->data,
		      attr, 0, err);
	dnnl_primitive_attr_destroy(attr);
	return rc;
}

static int gemm_run(struct node *n, struct graft_err *err)
{
	struct gemm_shape g = {0};
	struct mm_state *s;
	struct value *c;
	float *y = n->out[0]->data;
	int rc;

	if ((rc = gemm_shape(n, &g, err)))
		return rc;
	if (g.m == 0 || g.n == 0)
		return 0;
	c = g.has_c ? n->in[2] : NULL;
	if (g.k == 0) {
		/* oneDNN wants a non-empty product: alpha * 0 + beta * C, then the activation
		 * through a 1-deep product of zeros would be overkill; keep it plain. */
		float beta = attr_float(n, "beta", 1.0f);
		const float *cd = c ? c->data : NULL;
		if (n->act.kind != FUSED_NONE)
			return node_err(n, err, GRAFT_EUNSUPPORTED, "an empty product with a fused "
					"activation is not supported");
		for (int64_t i = 0; i < g.m; i++)
			for (int64_t j = 0; j < g.n; j++)
				y[i * g.n + j] = cd ? beta * cd[(g.c[0] > 1 ? i * g.c[1] : 0) +
							       (g.c[1] > 1 ? j : 0)] : 0.0f;
		return 0;
	}
	if (!n->priv && (rc = gemm_build(n, &g, err))) {
		mm_release(n);
		return rc;
	}
	s = n->priv;
	if (s->prefill) {
		const float *cd = c->data;
		int64_t m = g.m, nn = g.n;
		if (g.c[0] == m && g.c[1] == nn) {
			memcpy(y, cd, sizeof(float) * (size_t)(m * nn));
		} else {
#pragma omp parallel for if (m * nn > 65536)
			for (int64_t i = 0; i < m; i++) {
				const float *row = cd + (g.c[0] > 1 ? i * g.c[1] : 0);
				float *out = y + i * nn;
				if (g.c[1] > 1)
					memcpy(out, row, sizeof(float) * (size_t)nn);
				else
					for (int64_t j = 0; j < nn; j++)
						out[j] = row[0];
			}
		}
	}
	return mm_exec(n, n->in[0]->data, n->in[1]->data, c ? c->data : NULL, y, err);
}

/* ---- MatMul ----------------------------------------------------------------------------- */

struct matmul_shape {
	int rank;                       /* of the oneDNN operands: batch axes + 2 */
	int64_t a[NET_MAX_RANK + 2], b[NET_MAX_RANK + 2], y[NET_MAX_RANK + 2];
	int out_rank;                   /* of the ONNX output */
	int64_t out[NET_MAX_RANK];
	int64_t batch_a, batch_b;       /* batch sizes of A and B before broadcasting */
};

static int matmul_shape(const struct node *n, struct matmul_shape *sh, struct graft_err *err)
{
	const struct value *a, *b;
	int64_t ad[NET_MAX_RANK + 1], bd[NET_MAX_RANK + 1], batch[NET_MAX_RANK];
	int ra, rb, nb, k = 0;

	if (n->n_in != 2 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes A and B, and one output");
	a = n->in[0];
	b = n->in[1];
	if (a->dtype != b->dtype)
		return node_err(n, err, GRAFT_EFORMAT, "A is %s but B is %s", dtype_label(a->dtype),
				dtype_label(b->dtype));
	if (a->dtype != GRAFT_FLOAT && a->dtype != GRAFT_DOUBLE && a->dtype != GRAFT_INT32 &&
	    a->dtype != GRAFT_INT64)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "%s operands are not supported",
				dtype_label(a->dtype));
	if (a->rank < 1 || b->rank < 1)
		return node_err(n, err, GRAFT_EFORMAT, "A and B must have rank 1 or more");
	/* numpy: a vector A is a row, a vector B a column */
	ra = a->rank > 1 ? a->rank : 2;
	rb = b->rank > 1 ? b->rank : 2;
	if (a->rank == 1) {
		ad[0] = 1;
		ad[1] = a->dims[0];
	} else {
		memcpy(ad, a->dims, sizeof(int64_t) * (size_t)ra);
	}
	if (b->rank == 1) {
		bd[0] = b->dims[0];
		bd[1] = 1;
	} else {
		memcpy(bd, b->dims, sizeof(int64_t) * (size_t)rb);
	}
	if (ad[ra - 1] != bd[rb - 2])
		return node_err(n, err, GRAFT_EFORMAT, "A has %lld columns but B %lld rows",
				(long long)ad[ra - 1], (long long)bd[rb - 2]);
	if (broadcast_dims(ra - 2, ad, rb - 2, bd, &nb, batch))
		return node_err(n, err, GRAFT_EFORMAT, "the batch axes of A and B do not broadcast");
	sh->rank = nb + 2;
	sh->batch_a = sh->batch_b = 1;
	for (int i = 0; i < nb; i++) {
		int ia = i - (nb - (ra - 2)), ib = i - (nb - (rb - 2));
		sh->a[i] = ia >= 0 ? ad[ia] : 1;
		sh->b[i] = ib >= 0 ? bd[ib] : 1;
		sh->y[i] = batch[i];
		sh->batch_a *= sh->a[i];
		sh->batch_b *= sh->b[i];
		sh->out[k++] = batch[i];
	}
	sh->a[nb] = sh->y[nb] = ad[ra - 2];
	sh->a[nb + 1] = sh->b[nb] = ad[ra - 1];
	sh->b[nb + 1] = sh->y[nb + 1] = bd[rb - 1];
	if (a->rank > 1)
		sh->out[k++] = ad[ra - 2];
	if (b->rank > 1)
		sh->out[k++] = bd[rb - 1];
	if (k > NET_MAX_RANK)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "the output's rank is too high");
	sh->out_rank = k;
	return 0;
}

static int matmul_infer(struct node *n, struct graft_err *err)
{
	struct matmul_shape sh;
	int rc = matmul_shape(n, &sh, err);

	if (rc)
		return rc;
	value_set(n->out[0], n->in[0]->dtype, sh.out_rank, sh.out);
	return 0;
}

/* MatMul over int32, int64 and double: the plain triple loop, batch by batch. */
#define MATMUL_PLAIN(T, ACC)                                                              \
	static void matmul_##T(const struct matmul_shape *sh, const T *a, const T *b, T *y)  \
	{                                                                                     \
		int nb = sh->rank - 2;                                                        \
		int64_t m = sh->y[nb], k = sh->a[nb + 1], nn = sh->y[nb + 1], batch = 1;      \
		for (int i = 0; i < nb; i++)                                                  \
			batch *= sh->y[i];                                                    \
		for (int64_t t = 0; t < batch; t++) {                                         \
			int64_t rem = t, oa = 0, ob = 0, sa = 1, sb = 1;                      \
			for (int i = nb - 1; i >= 0; i--) {                                   \
				int64_t idx = rem % sh->y[i];                                 \
				rem /= sh->y[i];                                              \
				oa += (sh->a[i] > 1 ? idx : 0) * sa;                          \
				ob += (sh->b[i] > 1 ? idx : 0) * sb;                          \
				sa *= sh->a[i];                                               \
				sb *= sh->b[i];                                               \
			}                                                                     \
			const T *pa = a + oa * m * k, *pb = b + ob * k * nn;                  \
			T *py = y + t * m * nn;                                               \
			for (int64_t i = 0; i < m; i++)                                       \
				for (int64_t j = 0; j < nn; j++) {                            \
					ACC acc = 0;                                          \
					for (int64_t l = 0; l < k; l++)                       \
						acc += (ACC)pa[i * k + l] * (ACC)pb[l * nn + j]; \
					py[i * nn + j] = (T)acc;                              \
				}                                                             \
		}                                                                             \
	}
MATMUL_PLAIN(int32_t, int64_t)
MATMUL_PLAIN(int64_t, uint64_t)
MATMUL_PLAIN(double, double)

static int matmul_build(struct node *n, const struct matmul_shape *sh, struct graft_err *err)
{
	struct value *a = n->in[0], *b = n->in[1], *y = n->out[0];
	dnnl_memory_desc_t a_md, b_md, y_md;
	struct mm_state *s;
	int rc, r = sh->rank, nb = r - 2, b_const = mm_packs(b);

	if (!(s = calloc(1, sizeof(*s))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	n->priv = s;
	if (sh->batch_b == 1 && nb > 0) {
		/* B is one matrix: A's batch axes are more rows of one product */
		int64_t ad[2] = {sh->batch_a * sh->a[nb], sh->a[nb + 1]};
		int64_t yd[2] = {sh->batch_a * sh->y[nb], sh->y[nb + 1]};
		if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&a_md, 2, ad, dnnl_f32))) ||
		    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&b_md, 2, sh->b + nb, dnnl_f32))) ||
		    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&y_md, 2, yd, dnnl_f32))))
			return rc;
		return mm_build(n, &a_md, a->data, &b_md, b->data, b_const, NULL, NULL, &y_md,
				y->data, NULL, 0, err);
	}
	if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&a_md, r, sh->a, dnnl_f32))) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&b_md, r, sh->b, dnnl_f32))) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&y_md, r, sh->y, dnnl_f32))))
		return rc;
	return mm_build(n, &a_md, a->data, &b_md, b->data, b_const, NULL, NULL, &y_md, y->data,
			NULL, 0, err);
}

static int matmul_run(struct node *n, struct graft_err *err)
{
	struct value *a = n->in[0], *b = n->in[1], *y = n->out[0];
	struct matmul_shape sh;
	int rc;

	if (value_numel(y) == 0)
		return 0;
	if ((rc = matmul_shape(n, &sh, err)))
		return rc;
	if (sh.a[sh.rank - 1] == 0)
		return 0;               /* an empty sum: Y stays zero */
	switch (a->dtype) {
	case GRAFT_INT32:
		matmul_int32_t(&sh, a->data, b->data, y->data);
		return 0;
	case GRAFT_INT64:
		matmul_int64_t(&sh, a->data, b->data, y->data);
		return 0;
	case GRAFT_DOUBLE:
		matmul_double(&sh, a->data, b->data, y->data);
		return 0;
	default:
		break;
	}
	if (!n->priv && (rc = matmul_build(n, &sh, err))) {
		mm_release(n);
		return rc;
	}
	return mm_exec(n, a->data, b->data, NULL, y->data, err);
}

/* ---- backward --------------------------------------------------------------------------- */

/* An operand as oneDNN reads it: dims and strides in elements, so that a transpose swaps
 * the last two of each and costs no copy. */
struct mm_view {
	int rank;
	dnnl_dims_t dims, strides;
};

static struct mm_view view_plain(int rank, const int64_t *dims)
{
	struct mm_view v = {.rank = rank};
	int64_t stride = 1;

	for (int i = rank - 1; i >= 0; i--) {
		v.dims[i] = dims[i];
		v.strides[i] = stride;
		stride *= dims[i];
	}
	return v;
}

static struct mm_view view_t(struct mm_view v)
{
	int r = v.rank;
	int64_t d = v.dims[r - 2], st = v.strides[r - 2];

	v.dims[r - 2] = v.dims[r - 1];
	v.strides[r - 2] = v.strides[r - 1];
	v.dims[r - 1] = d;
	v.strides[r - 1] = st;
	return v;
}

/* Makes p compute dst = alpha * src . wei into a plain dst, broadcasting unit batch axes
 * of either operand.  The memory objects get their buffers at each execution. */
static int prod_build(struct node *n, struct mm_prod *p, const struct mm_view *src,
		      const struct mm_view *wei, float alpha, struct graft_err *err)
{
	dnnl_memory_desc_t smd, wmd, dmd;
	dnnl_matmul_desc_t d;
	dnnl_primitive_attr_t attr = NULL;
	int64_t dd[DNNL_MAX_NDIMS];
	int r = src->rank, rc;

	for (int i = 0; i < r - 2; i++)
		dd[i] = src->dims[i] > wei->dims[i] ? src->dims[i] : wei->dims[i];
	dd[r - 2] = src->dims[r - 2];
	dd[r - 1] = wei->dims[r - 1];
	if ((rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_strides(
					   &smd, r, src->dims, dnnl_f32, src->strides))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_memory_desc_init_by_strides(
					   &wmd, r, wei->dims, dnnl_f32, wei->strides))) ||
	    (rc = ONEDNN_CHECK(n, err, onednn_md_plain(&dmd, r, dd, dnnl_f32))) ||
	    (rc = ONEDNN_CHECK(n, err, dnnl_matmul_desc_init(&d, &smd, &wmd, NULL, &dmd))))
		return rc;
	if (alpha != 1.0f &&
	    ((rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_create(&attr))) ||
	     (rc = ONEDNN_CHECK(n, err, dnnl_primitive_attr_set_output_scales(attr, 1, 0,
									      &alpha))))) {
		dnnl_primitive_attr_destroy(attr);
		return rc;
	}
	rc = onednn_primitive(n, &d, attr, &p->prim, NULL, err);
	dnnl_primitive_attr_destroy(attr);
	if (rc || (rc = onednn_memory(n, &p->src, &smd, NULL, err)) ||
	    (rc = onednn_memory(n, &p->wei, &wmd, NULL, err)))
		return rc;
	return onednn_memory(n, &p->dst, &dmd, NULL, err);
}

static int prod_exec(struct node *n, struct mm_prod *p, const float *src, const float *wei,
		     float *dst, struct graft_err *err)
{
	dnnl_exec_arg_t args[3];
	int rc;

	if ((rc = onednn_rebind(n, p->src, (void *)src, err)) ||
	    (rc = onednn_rebind(n, p->wei, (void *)wei, err)) ||
	    (rc = onednn_rebind(n, p->dst, dst, err)))
		return rc;
	args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->src};
	args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, p->wei};
	args[2] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->dst};
	return onednn_execute(n, p->prim, 3, args, err);
}

static void grad_zero(struct value *g)
{
	if (g)
		memset(g->data, 0, g->nbytes);
}

/* Backward state is built on the first backward after a plan; a failed build leaves none,
 * so that nothing half-made is used or leaked. */
static int grad_build(struct node *n, const void *shape,
		      int (*build)(struct node *, const void *, struct graft_err *),
		      struct graft_err *err)
{
	struct mm_state *s = n->priv;
	int rc;

	if (!s)
		return node_err(n, err, GRAFT_EINVAL, "backward before a forward run");
	if (s->grad_built)
		return 0;
	if ((rc = build(n, shape, err))) {
		onednn_free(s->full_b);
		onednn_free(s->full_a);
		prod_release(&s->gb);
		prod_release(&s->ga);
		memset(&s->ga, 0, sizeof(s->ga));
		memset(&s->gb, 0, sizeof(s->gb));
		s->full_a = s->full_b = NULL;
		return rc;
	}
	s->grad_built = 1;
	return 0;
}

/* dC = beta * dY summed over the axes along which C (as a c[0] x c[1] matrix) was
 * broadcast: none, the rows (a bias row), the columns, or both (a scalar). */
static int gemm_grad_c(struct node *n, const struct gemm_shape *g, float beta, const float *dy,
		       float *dc, struct graft_err *err)
{
	int64_t m = g->m, nn = g->n, cr = g->c[0], cc = g->c[1];
	double *acc;

	if (cr == m && cc == nn) {
#pragma omp parallel for simd schedule(static) if (m * nn > 65536)
		for (int64_t i = 0; i < m * nn; i++)
			dc[i] = beta * dy[i];
		return 0;
	}
	if (!(acc = calloc((size_t)(cr * cc), sizeof(double))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	for (int64_t i = 0; i < m; i++) {
		const float *row = dy + i * nn;
		double *out = acc + (cr > 1 ? i * cc : 0), sum = 0;
		if (cc > 1) {
#pragma omp simd
			for (int64_t j = 0; j < nn; j++)
				out[j] += row[j];
		} else {
#pragma omp simd reduction(+:sum)
			for (int64_t j = 0; j < nn; j++)
				sum += row[j];
			out[0] += sum;
		}
	}
	for (int64_t i = 0; i < cr * cc; i++)
		dc[i] = (float)(beta * acc[i]);
	free(acc);
	return 0;
}

/*
 * With op(A) (M x K) and op(B) (K x N) as strided views of A and B:
 * dA = alpha * dY op(B)^T, or its transpose alpha * op(B) dY^T when transA;
 * dB = alpha * op(A)^T dY, or its transpose alpha * dY^T op(A) when transB.
 */
static int gemm_grad_build(struct node *n, const void *shape, struct graft_err *err)
{
	const struct gemm_shape *g = shape;
	struct mm_state *s = n->priv;
	int ta = attr_int(n, "transA", 0) != 0, tb = attr_int(n, "transB", 0) != 0, rc;
	float alpha = attr_float(n, "alpha", 1.0f);
	int64_t ad[2] = {g->m, g->k}, adt[2] = {g->k, g->m}, bd[2] = {g->k, g->n};
	int64_t bdt[2] = {g->n, g->k}, yd[2] = {g->m, g->n};
	struct mm_view a = ta ? view_t(view_plain(2, adt)) : view_plain(2, ad);
	struct mm_view b = tb ? view_t(view_plain(2, bdt)) : view_plain(2, bd);
	struct mm_view dy = view_plain(2, yd), at = view_t(a), bt = view_t(b), dyt = view_t(dy);

	if (n->gin[0] && (rc = ta ? prod_build(n, &s->ga, &b, &dyt, alpha, err)
				  : prod_build(n, &s->ga, &dy, &bt, alpha, err)))
		return rc;
	if (n->gin[1] && (rc = tb ? prod_build(n, &s->gb, &dyt, &a, alpha, err)
				  : prod_build(n, &s->gb, &at, &dy, alpha, err)))
		return rc;
	return 0;
}

static int gemm_backward(struct node *n, struct graft_err *err)
{
	struct gemm_shape g = {0};
	struct mm_state *s;
	int ta = attr_int(n, "transA", 0) != 0, tb = attr_int(n, "transB", 0) != 0, rc;
	float alpha = attr_float(n, "alpha", 1.0f), beta = attr_float(n, "beta", 1.0f);
	const float *dy = n->out[0]->grad->data, *a = n->in[0]->data, *b = n->in[1]->data;

	if ((rc = gemm_shape(n, &g, err)))
		return rc;
	if (n->act.kind != FUSED_NONE)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "no backward through a fused "
				"activation");
	if (g.has_c && n->gin[2] &&
	    (rc = gemm_grad_c(n, &g, beta, dy, n->gin[2]->data, err)))
		return rc;
	if (!n->gin[0] && !n->gin[1])
		return 0;
	if (g.m == 0 || g.n == 0 || g.k == 0 || alpha == 0.0f) {
		grad_zero(n->gin[0]);
		grad_zero(n->gin[1]);
		return 0;
	}
	if ((rc = grad_build(n, &g, gemm_grad_build, err)))
		return rc;
	s = n->priv;
	if (n->gin[0] && (rc = prod_exec(n, &s->ga, ta ? b : dy, ta ? dy : b, n->gin[0]->data,
					 err)))
		return rc;
	if (n->gin[1] && (rc = prod_exec(n, &s->gb, tb ? dy : a, tb ? a : dy, n->gin[1]->data,
					 err)))
		return rc;
	return 0;
}

/* Sums full (Y's batch axes, then block elements each) over the batch axes along which an
 * operand with batch dims od was broadcast, into out (od's batch axes, then block). */
static void batch_sum(const struct matmul_shape *sh, const int64_t *od, const float *full,
		      float *out, int64_t block)
{
	int nb = sh->rank - 2;
	int64_t batch = 1, obatch = 1;

	for (int i = 0; i < nb; i++) {
		batch *= sh->y[i];
		obatch *= od[i];
	}
#pragma omp parallel for schedule(static) if (batch * block > 65536)
	for (int64_t j0 = 0; j0 < block; j0 += 1024) {
		int64_t len = block - j0 < 1024 ? block - j0 : 1024;
		for (int64_t o = 0; o < obatch; o++)
			memset(out + o * block + j0, 0, sizeof(float) * (size_t)len);
		for (int64_t t = 0; t < batch; t++) {
			int64_t rem = t, off = 0, stride = 1;
			for (int i = nb - 1; i >= 0; i--) {
				int64_t idx = rem % sh->y[i];
				rem /= sh->y[i];
				off += (od[i] > 1 ? idx : 0) * stride;
				stride *= od[i];
			}
			float *d = out + off * block + j0;
			const float *src = full + t * block + j0;
#pragma omp simd
			for (int64_t k = 0; k < len; k++)
				d[k] += src[k];
		}
	}
}

/* dA = dY B^T and dB = A^T dY, batched.  An operand broadcast along some batch axis gets
 * the full product in a buffer of its own (full_a, full_b), which batch_sum reduces. */
static int matmul_grad_build(struct node *n, const void *shape, struct graft_err *err)
{
	const struct matmul_shape *sh = shape;
	struct mm_state *s = n->priv;
	int r = sh->rank, nb = r - 2, rc;
	int64_t batch = 1, m = sh->y[nb], k = sh->a[nb + 1], nn = sh->y[nb + 1];
	struct mm_view a, b, dy, at, bt;

	for (int i = 0; i < nb; i++)
		batch *= sh->y[i];
	if (sh->batch_b == 1 && nb > 0) {
		/* As in the forward, A's batch axes are rows of one product; dB's product then
		 * contracts over them, which is its sum over B's broadcast. */
		int64_t ad[2] = {batch * m, k}, yd[2] = {batch * m, nn};
		a = view_plain(2, ad);
		b = view_plain(2, sh->b + nb);
		dy = view_plain(2, yd);
	} else {
		a = view_plain(r, sh->a);
		b = view_plain(r, sh->b);
		dy = view_plain(r, sh->y);
		if (n->gin[0] && sh->batch_a != batch &&
		    !(s->full_a = onednn_alloc(sizeof(float) * (size_t)(batch * m * k))))
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
		if (n->gin[1] && sh->batch_b != batch &&
		    !(s->full_b = onednn_alloc(sizeof(float) * (size_t)(batch * k * nn))))
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	}
	at = view_t(a);
	bt = view_t(b);
	if (n->gin[0] && (rc = prod_build(n, &s->ga, &dy, &bt, 1.0f, err)))
		return rc;
	if (n->gin[1] && (rc = prod_build(n, &s->gb, &at, &dy, 1.0f, err)))
		return rc;
	return 0;
}

static int matmul_backward(struct node *n, struct graft_err *err)
{
	struct matmul_shape sh;
	struct mm_state *s;
	const float *a = n->in[0]->data, *b = n->in[1]->data, *dy;
	int64_t batch = 1, m, k, nn;
	int rc, nb;

	if (!n->gin[0] && !n->gin[1])
		return 0;
	if ((rc = matmul_shape(n, &sh, err)))
		return rc;
	if (n->in[0]->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "no backward for %s operands",
				dtype_label(n->in[0]->dtype));
	nb = sh.rank - 2;
	for (int i = 0; i < nb; i++)
		batch *= sh.y[i];
	m = sh.y[nb];
	k = sh.a[nb + 1];
	nn = sh.y[nb + 1];
	if (batch == 0 || m == 0 || k == 0 || nn == 0) {
		grad_zero(n->gin[0]);
		grad_zero(n->gin[1]);
		return 0;
	}
	if ((rc = grad_build(n, &sh, matmul_grad_build, err)))
		return rc;
	s = n->priv;
	dy = n->out[0]->grad->data;
	if (n->gin[0]) {
		float *ga = n->gin[0]->data;
		if ((rc = prod_exec(n, &s->ga, dy, b, s->full_a ? s->full_a : ga, err)))
			return rc;
		if (s->full_a)
			batch_sum(&sh, sh.a, s->full_a, ga, m * k);
	}
	if (n->gin[1]) {
		float *gb = n->gin[1]->data;
		if ((rc = prod_exec(n, &s->gb, a, dy, s->full_b ? s->full_b : gb, err)))
			return rc;
		if (s->full_b)
			batch_sum(&sh, sh.b, s->full_b, gb, k * nn);
	}
	return 0;
}

/* The packed copy of B (about B's size: oneDNN's blocked layouts pad little). */
static uint64_t mm_plan_bytes(const struct node *n)
{
	const struct value *b = n->n_in > 1 ? n->in[1] : NULL;

	return b && b->dtype == GRAFT_FLOAT && mm_packs(b) ? b->nbytes : 0;
}

static const struct op_def op_gemm = {"Gemm", gemm_infer, gemm_run, mm_release, OP_FUSES_ACT, 0};
static const struct op_def op_matmul = {"MatMul", matmul_infer, matmul_run, mm_release, 0, 0};
static const struct mem_def mem_gemm = {"Gemm", mm_plan_bytes};
static const struct mem_def mem_matmul = {"MatMul", mm_plan_bytes};
const struct mem_def *const ops_gemm_mem[] = {&mem_gemm, &mem_matmul, NULL};

const struct op_def *const ops_gemm[] = {&op_gemm, &op_matmul, NULL};

static const struct grad_def grad_gemm = {"Gemm", gemm_backward};
static const struct grad_def grad_matmul = {"MatMul", matmul_backward};

const struct grad_def *const ops_gemm_grad[] = {&grad_gemm, &grad_matmul, NULL};
