/*
 * norm.c: normalisations: BatchNormalization, LayerNormalization, InstanceNormalization,
 * LRN and MeanVarianceNormalization, in plain C loops over float32.
 *
 * BatchNormalization in inference mode is one multiply-add per element: its per-channel
 * scale and shift are computed once per run and applied over each (n, c) plane in one
 * pass.  (The executor folds a BatchNormalization that follows a Conv into the Conv's
 * weights, so this kernel mostly sees the others.)  Training mode (opset >= 14
 * training_mode=1, or earlier opsets asked for the running-statistics outputs) normalises
 * with the batch's own statistics and gives the updated running mean and variance.
 * Statistics accumulate in double, so long rows keep their precision.
 *
 * In a training net the executor sets n->training on a BatchNormalization whose scale or
 * bias trains: it then normalises with the batch's statistics too, and updates its
 * running statistics (the net's own copies) in place as PyTorch does, the variance with
 * Bessel's correction.  With a group (graft_net_opts.group_sum: synchronised BatchNorm),
 * the statistics are the whole group's: the sums of x, then of (x - mean)^2, and in
 * backward the sums of dy and dy * (x - mean), are added over the processes, so each
 * normalises as one process with the whole batch would.  (The scale's and bias's own
 * gradients stay this process's: the trainer averages them over the group as it does
 * every parameter's.)  BatchNormalization's backward (in both modes) reduces per
 * channel and then makes one pass over the elements: dX = k1 * dY + k2 * (X - mean) + k3,
 * k2 and k3 carrying the terms through the batch statistics.  LayerNormalization's does
 * the same per row.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* Elements of work below which a parallel region costs more than it saves. */
#define PAR_MIN 32768
/* Columns of the spatial axes one LRN task handles (a stack buffer). */
#define CHUNK 256

static int64_t prod_dims(const int64_t *dims, int from, int to)
{
	int64_t p = 1;

	for (int d = from; d < to; d++)
		p *= dims[d];
	return p;
}

/* Mean and variance (population) of x[n], in double. */
static void row_stats(const float *x, int64_t n, double *mean, double *var)
{
	double s = 0, q = 0, m;

#pragma omp simd reduction(+:s)
	for (int64_t i = 0; i < n; i++)
		s += x[i];
	m = n ? s / (double)n : 0;
#pragma omp simd reduction(+:q)
	for (int64_t i = 0; i < n; i++)
		q += ((double)x[i] - m) * ((double)x[i] - m);
	*mean = m;
	*var = n ? q / (double)n : 0;
}

/* y = x * a + b over n elements. */
static void affine(const float *x, float *y, int64_t n, float a, float b)
{
#pragma omp simd
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] * a + b;
}

/* ---- BatchNormalization ----------------------------------------------------------------- */

/* Whether the node normalises with the batch's statistics. */
static int bn_training(const struct node *n)
{
	if (n->opset >= 14)
		return attr_int(n, "training_mode", 0) != 0;
	for (size_t k = 1; k < n->n_out; k++)
		if (n->out[k])
			return 1;
	return 0;
}

static int bn_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t c, channels;
	int training = bn_training(n);
	int spatial = n->opset < 9 ? (int)attr_int(n, "spatial", 1) : 1;
	size_t max_out = n->opset >= 14 ? 3 : 5;

	if (n->n_in != 5 || n->n_out < 1 || n->n_out > max_out || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes X, scale, B, mean, var and gives "
				"Y (and at most %zu running statistics)", max_out - 1);
	for (size_t k = 0; k < 5; k++) {
		if (!n->in[k])
			return node_err(n, err, GRAFT_EFORMAT, "input %zu is missing", k);
		if (n->in[k]->dtype != GRAFT_FLOAT)
			return node_err(n, err, GRAFT_EUNSUPPORTED, "input '%s': dtype %s is not "
					"supported", n->in[k]->name, dtype_label(n->in[k]->dtype));
	}
	x = n->in[0];
	if (x->rank < 2)
		return node_err(n, err, GRAFT_EFORMAT, "X must have rank 2 or more, not %d",
				x->rank);
	if (n->opset < 7 && attr_int(n, "is_test", 0) && training)
		return node_err(n, err, GRAFT_EFORMAT, "is_test=1 gives only Y");
	if (spatial != 0 && spatial != 1)
		return node_err(n, err, GRAFT_EFORMAT, "spatial must be 0 or 1");
	if (!spatial && training)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "training with spatial=0 is not "
				"supported");
	for (size_t k = 1; k < n->n_out && !training; k++)
		if (n->out[k])
			return node_err(n, err, GRAFT_EFORMAT, "running statistics are outputs only "
					"in training mode");
	c = x->dims[1];
	channels = spatial ? c : prod_dims(x->dims, 1, x->rank);
	for (size_t k = 1; k < 5; k++)
		if (value_numel(n->in[k]) != (uint64_t)channels)
			return node_err(n, err, GRAFT_EFORMAT, "input '%s' has %llu elements, not %lld",
					n->in[k]->name, (unsigned long long)value_numel(n->in[k]),
					(long long)channels);
	value_set(n->out[0], GRAFT_FLOAT, x->rank, x->dims);
	for (size_t k = 1; k < n->n_out; k++)
		if (n->out[k])
			value_set(n->out[k], GRAFT_FLOAT, 1, &c);
	return 0;
}

/*
 * The activation that a training net fused into a BatchNormalization of its backward
 * region (net.c, fuse_region_activation): Relu or Clip, as bounds.  Forward clamps
 * y = x * a + b to [lo, hi] in the same pass; backward recomputes y from X (the same
 * expression, so the same bits) and passes the gradient where the activation did: on
 * [lo, hi] for Clip (clip_backward's rule), where y > 0 for Relu.  The activation's
 * input is then neither written nor kept, and its backward is no pass of its own.
 */
struct bn_act {
	int on;
	float lo, hi;           /* forward's bounds */
	float pass_lo;          /* the gradient passes on [pass_lo, hi]: Relu's y > 0 as
				 * y >= the least positive float, one comparison for both */
};

static struct bn_act bn_act_of(const struct node *n)
{
	struct bn_act a = {0, -INFINITY, INFINITY, -INFINITY};

	if (n->act.kind == FUSED_RELU)
		a = (struct bn_act){1, 0.0f, INFINITY, FLT_TRUE_MIN};
	else if (n->act.kind == FUSED_CLIP)
		a = (struct bn_act){1, n->act.alpha, n->act.beta, n->act.alpha};
	return a;
}

/* As clip_f32: hi wins when lo > hi, NaN stays NaN. */
static inline float bn_clamp(float y, float lo, float hi)
{
	y = y < lo ? lo : y;
	return y > hi ? hi : y;
}

/* y (N, C, inner) = act(x * a[c] + b[c]). */
static void bn_apply(const float *x, float *y, const float *a, const float *b, int64_t N,
		     int64_t C, int64_t inner, const struct bn_act *act)
{
	float lo = act->lo, hi = act->hi;

	if (inner == 1) {
#pragma omp parallel for schedule(static) if (N * C > PAR_MIN)
		for (int64_t i = 0; i < N; i++)
#pragma omp simd
			for (int64_t c = 0; c < C; c++)
				y[i * C + c] = bn_clamp(x[i * C + c] * a[c] + b[c], lo, hi);
		return;
	}
	if (!act->on) {
#pragma omp parallel for schedule(static) if (N * C * inner > PAR_MIN)
		for (int64_t nc = 0; nc < N * C; nc++)
			affine(x + nc * inner, y + nc * inner, inner, a[nc % C], b[nc % C]);
		return;
	}
#pragma omp parallel for schedule(static) if (N * C * inner > PAR_MIN)
	for (int64_t nc = 0; nc < N * C; nc++) {
		const float *px = x + nc * inner;
		float *py = y + nc * inner, ac = a[nc % C], bc = b[nc % C];
#pragma omp simd
		for (int64_t k = 0; k < inner; k++)
			py[k] = bn_clamp(px[k] * ac + bc, lo, hi);
	}
}

/* Per-channel mean and variance of x (N, C, inner) over N and inner. */
/* Channel c's sum of x, and its sum of (x - m)^2, over N rows of C channels of inner
 * values. */
static double bn_channel_sum(const float *x, int64_t N, int64_t C, int64_t inner, int64_t c)
{
	double s = 0;

	for (int64_t i = 0; i < N; i++) {
		const float *p = x + (i * C + c) * inner;
#pragma omp simd reduction(+:s)
		for (int64_t k = 0; k < inner; k++)
			s += p[k];
	}
	return s;
}

static double bn_channel_squares(const float *x, int64_t N, int64_t C, int64_t inner,
				 int64_t c, double m)
{
	double q = 0;

	for (int64_t i = 0; i < N; i++) {
		const float *p = x + (i * C + c) * inner;
#pragma omp simd reduction(+:q)
		for (int64_t k = 0; k < inner; k++)
			q += ((double)p[k] - m) * ((double)p[k] - m);
	}
	return q;
}

static void bn_batch_stats(const float *x, int64_t N, int64_t C, int64_t inner, double *mean,
			   double *var)
{
#pragma omp parallel for schedule(static) if (N * C * inner > PAR_MIN)
	for (int64_t c = 0; c < C; c++) {
		double cnt = (double)(N * inner);
		double m = cnt > 0 ? bn_channel_sum(x, N, C, inner, c) / cnt : 0;
		mean[c] = m;
		var[c] = cnt > 0 ? bn_channel_squares(x, N, C, inner, c, m) / cnt : 0;
	}
}

/* A group's statistics (synchronised BatchNorm): the mean and (biased) variance per
 * channel over every process's batch, from two sums over the group; *count: the values
 * per channel in all. */
static int bn_group_stats(struct node *n, const float *x, int64_t N, int64_t C, int64_t inner,
			  double *mean, double *var, double *count, struct graft_err *err)
{
	double *v = malloc(sizeof(double) * (size_t)(C + 1));
	int rc;

	if (!v)
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
#pragma omp parallel for schedule(static) if (N * C * inner > PAR_MIN)
	for (int64_t c = 0; c < C; c++)
		v[c] = bn_channel_sum(x, N, C, inner, c);
	v[C] = (double)(N * inner);
	if ((rc = n->group_sum(n->group_ctx, v, (size_t)C + 1, err)))
		goto out;
	*count = v[C];
#pragma omp parallel for schedule(static) if (N * C * inner > PAR_MIN)
	for (int64_t c = 0; c < C; c++) {
		mean[c] = v[c] / *count;
		var[c] = bn_channel_squares(x, N, C, inner, c, mean[c]);
	}
	if (!(rc = n->group_sum(n->group_ctx, var, (size_t)C, err)))
		for (int64_t c = 0; c < C; c++)
			var[c] /= *count;
out:
	free(v);
	return rc;
}

/* What backward needs of a forward run: the statistics it normalised with. */
struct bn_state {
	int batch;              /* 1: the batch's own (they depend on X) */
	double count;           /* the values per channel they came from (a group's: all) */
	float *mean, *invstd;   /* (C) mean and 1 / sqrt(var + eps) */
	float *a, *b;           /* (C) y = x * a + b, as forward computed it */
};

static void bn_release(struct node *n)
{
	struct bn_state *s = n->priv;

	if (s) {
		free(s->mean);
		free(s);
		n->priv = NULL;
	}
}

/* Keeps the statistics of this run, and its y = x * a + b ((2C) ab), for backward. */
static int bn_keep(struct node *n, int batch, const double *mean, const double *var, double eps,
		   const float *ab, int64_t C, struct graft_err *err)
{
	struct bn_state *s = n->priv;

	if (!s) {
		if (!(s = calloc(1, sizeof(*s))) ||
		    !(s->mean = malloc(sizeof(float) * (size_t)(4 * C + 1)))) {
			free(s);
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
		}
		s->invstd = s->mean + C;
		s->a = s->mean + 2 * C;
		s->b = s->mean + 3 * C;
		n->priv = s;
	}
	s->batch = batch;
	for (int64_t c = 0; c < C; c++) {
		s->mean[c] = (float)mean[c];
		s->invstd[c] = (float)(1.0 / sqrt(var[c] + eps));
	}
	memcpy(s->a, ab, sizeof(float) * (size_t)(2 * C));
	return 0;
}

/* The executor's training mode: running = momentum * running + (1 - momentum) * batch, the
 * variance unbiased (PyTorch's BatchNorm), into the net's copies of the statistics. */
static int bn_update_running(struct node *n, const double *bmean, const double *bvar,
			     int64_t C, double count, double mom, struct graft_err *err)
{
	struct value *rm = n->in[3], *rv = n->in[4];
	float *mean = rm->data, *var = rv->data;
	double bessel = count / (count - 1);

	if (!(rm->flags & VALUE_STATE) || !(rv->flags & VALUE_STATE))
		return node_err(n, err, GRAFT_EINVAL, "running statistics are not the net's own");
	for (int64_t c = 0; c < C; c++) {
		mean[c] = (float)(mom * mean[c] + (1 - mom) * bmean[c]);
		var[c] = (float)(mom * var[c] + (1 - mom) * bvar[c] * bessel);
	}
	return 0;
}

static int bn_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	const float *scale = n->in[1]->data, *bias = n->in[2]->data, *mean = n->in[3]->data,
		    *var = n->in[4]->data;
	int spatial = n->opset < 9 ? (int)attr_int(n, "spatial", 1) : 1;
	int training = n->training || bn_training(n), rc = 0;
	double eps = attr_float(n, "epsilon", 1e-5f), mom = attr_float(n, "momentum", 0.9f);
	int64_t N = x->dims[0], C = spatial ? x->dims[1] : prod_dims(x->dims, 1, x->rank);
	int64_t inner = spatial ? prod_dims(x->dims, 2, x->rank) : 1;
	float *ab;
	double *st;             /* (2C) the mean and variance used: the batch's or running */
	double count = (double)(N * inner);     /* the values per channel in the statistics */

	if (n->training && N * inner < 2)
		return node_err(n, err, GRAFT_EINVAL, "training needs more than one value per "
				"channel, not %lld", (long long)(N * inner));
	ab = malloc(sizeof(float) * (size_t)(2 * C + 1));
	st = malloc(sizeof(double) * (size_t)(2 * C + 1));
	if (!ab || !st) {
		free(ab);
		free(st);
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	}
	if (training && n->training && n->group_sum) {
		if ((rc = bn_group_stats(n, x->data, N, C, inner, st, st + C, &count, err))) {
			free(ab);
			free(st);
			return rc;
		}
	} else if (training) {
		bn_batch_stats(x->data, N, C, inner, st, st + C);
	} else {
		for (int64_t c = 0; c < C; c++) {
			st[c] = mean[c];
			st[C + c] = var[c];
		}
	}
	for (int64_t c = 0; c < C; c++) {
		double a = scale[c] / sqrt(st[C + c] + eps);
		ab[c] = (float)a;
		ab[C + c] = (float)(bias[c] - st[c] * a);
	}
	struct bn_act act = bn_act_of(n);
	bn_apply(x->data, n->out[0]->data, ab, ab + C, N, C, inner, &act);
	if (training) {
		/* Opset 14+: running mean, running var; before: also the saved (batch) ones. */
		for (size_t k = 1; k < n->n_out; k++) {
			float *o = n->out[k] ? n->out[k]->data : NULL;
			const float *run = k == 1 ? mean : var;
			const double *batch = (k == 1 || k == 3) ? st : st + C;
			for (int64_t c = 0; o && c < C; c++)
				o[c] = k <= 2 ? (float)(run[c] * mom + batch[c] * (1 - mom))
					      : (float)batch[c];
		}
	}
	if (n->training)
		rc = bn_update_running(n, st, st + C, C, count, mom, err);
	if (!rc && n->needs_grad && !(rc = bn_keep(n, training, st, st + C, eps, ab, C, err)))
		((struct bn_state *)n->priv)->count = count;
	free(ab);
	free(st);
	return rc;
}

/* The gradient g at y that the fused activation passes (bounds lo, hi: act's pass_lo
 * and hi): g's bits, or +0.  A bit mask rather than a select: GCC vectorises it into a
 * reduction in double, which it does not with '? g : 0'. */
static inline float bn_act_grad(float g, float y, float lo, float hi)
{
	uint32_t bits, mask = -(uint32_t)((y >= lo) & (y <= hi));

	memcpy(&bits, &g, sizeof(bits));
	bits &= mask;
	memcpy(&g, &bits, sizeof(g));
	return g;
}

/* Per channel of x and dy (N, C, inner): sum dy and sum dy * (x - mean[c]), dy being
 * what the fused activation passes of the gradient given (s->a, s->b: forward's y). */
static void bn_grad_sums(const float *x, const float *dy, const struct bn_state *st,
			 const struct bn_act *act, int64_t N, int64_t C, int64_t inner,
			 double *sdy, double *sdyx)
{
	float lo = act->pass_lo, hi = act->hi;

#pragma omp parallel for schedule(static) if (N * C * inner > PAR_MIN)
	for (int64_t c = 0; c < C; c++) {
		double s = 0, q = 0;
		float m = st->mean[c], a = st->a[c], b = st->b[c];
		for (int64_t i = 0; i < N; i++) {
			const float *px = x + (i * C + c) * inner, *pd = dy + (i * C + c) * inner;
			if (!act->on) {
#pragma omp simd reduction(+:s, q)
				for (int64_t k = 0; k < inner; k++) {
					s += pd[k];
					q += (double)pd[k] * (px[k] - m);
				}
				continue;
			}
#pragma omp simd reduction(+:s, q)
			for (int64_t k = 0; k < inner; k++) {
				float g = bn_act_grad(pd[k], px[k] * a + b, lo, hi);
				s += g;
				q += (double)g * (px[k] - m);
			}
		}
		sdy[c] = s;
		sdyx[c] = q;
	}
}

/* dx (N, C, inner) = dy * k1[c] + (x - mean[c]) * k2[c] + k3[c], dy as in bn_grad_sums. */
static void bn_grad_apply(const float *x, const float *dy, float *dx, const struct bn_state *st,
			  const struct bn_act *act, const float *k1, const float *k2,
			  const float *k3, int64_t N, int64_t C, int64_t inner)
{
#pragma omp parallel for schedule(static) if (N * C * inner > PAR_MIN)
	for (int64_t nc = 0; nc < N * C; nc++) {
		const float *px = x + nc * inner, *pd = dy + nc * inner;
		float *po = dx + nc * inner, m = st->mean[nc % C];
		float a = k1[nc % C], b = k2[nc % C], c = k3[nc % C];
		float ya = st->a[nc % C], yb = st->b[nc % C], lo = act->pass_lo, hi = act->hi;
		if (!act->on) {
#pragma omp simd
			for (int64_t k = 0; k < inner; k++)
				po[k] = pd[k] * a + (px[k] - m) * b + c;
			continue;
		}
#pragma omp simd
		for (int64_t k = 0; k < inner; k++)
			po[k] = bn_act_grad(pd[k], px[k] * ya + yb, lo, hi) * a + (px[k] - m) * b + c;
	}
}

/*
 * y = scale * (x - mean) * invstd + bias, with xc = x - mean, M values per channel:
 * dscale = invstd * sum(dy * xc), dbias = sum(dy).  With the batch's statistics,
 * dx = scale * invstd * (dy - sum(dy) / M - xc * invstd^2 * sum(dy * xc) / M); with
 * running ones, dx = scale * invstd * dy, and the statistics (inputs like any other) get
 * dmean = -scale * invstd * sum(dy), dvar = -scale * invstd^3 * sum(dy * xc) / 2.
 */
static int bn_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	const struct bn_state *s = n->priv;
	const float *scale = n->in[1]->data, *dy = n->out[0]->grad->data;
	int spatial = n->opset < 9 ? (int)attr_int(n, "spatial", 1) : 1;
	int64_t N = x->dims[0], C = spatial ? x->dims[1] : prod_dims(x->dims, 1, x->rank);
	int64_t inner = spatial ? prod_dims(x->dims, 2, x->rank) : 1;
	double M = s ? s->count : 0, *sums;
	float *k = NULL;
	int rc;

	if (!s)
		return node_err(n, err, GRAFT_EINVAL, "backward before a forward run");
	if (!(sums = malloc(sizeof(double) * (size_t)(4 * C + 1))) ||
	    (n->gin[0] && !(k = malloc(sizeof(float) * (size_t)(3 * C + 1))))) {
		free(sums);
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	}
	struct bn_act act = bn_act_of(n);
	bn_grad_sums(x->data, dy, s, &act, N, C, inner, sums, sums + C);
	/* sums: this process's sum(dy), sum(dy * xc), then the group's, for dx (the scale's
	 * and bias's gradients are this process's own: see the top) */
	memcpy(sums + 2 * C, sums, sizeof(double) * (size_t)(2 * C));
	if (s->batch && n->training && n->group_sum &&
	    (rc = n->group_sum(n->group_ctx, sums + 2 * C, (size_t)(2 * C), err))) {
		free(sums);
		free(k);
		return rc;
	}
	for (int64_t c = 0; c < C; c++) {
		double sdy = sums[c], sdyx = sums[C + c], inv = s->invstd[c], a = scale[c] * inv;
		double gdy = sums[2 * C + c], gdyx = sums[3 * C + c];
		if (n->gin[1])
			((float *)n->gin[1]->data)[c] = (float)(inv * sdyx);
		if (n->gin[2])
			((float *)n->gin[2]->data)[c] = (float)sdy;
		if (n->gin[3])
			((float *)n->gin[3]->data)[c] = s->batch ? 0.0f : (float)(-a * sdy);
		if (n->gin[4])
			((float *)n->gin[4]->data)[c] =
				s->batch ? 0.0f : (float)(-0.5 * a * inv * inv * sdyx);
		if (k) {
			k[c] = (float)a;
			k[C + c] = s->batch ? (float)(-a * inv * inv * gdyx / M) : 0.0f;
			k[2 * C + c] = s->batch ? (float)(-a * gdy / M) : 0.0f;
		}
	}
	if (k)
		bn_grad_apply(x->data, dy, n->gin[0]->data, s, &act, k, k + C, k + 2 * C, N, C,
			      inner);
	free(k);
	free(sums);
	return 0;
}

/* ---- LayerNormalization ----------------------------------------------------------------- */

static int ln_axis(const struct node *n, int rank)
{
	return norm_axis(attr_int(n, "axis", -1), rank);
}

/* Whether p (a Scale or B) broadcasts to x's dims from axis on. */
static int ln_param_ok(const struct value *p, const struct value *x, int axis)
{
	int tail = x->rank - axis;

	if (p->rank > tail)
		return 0;
	for (int i = 0; i < p->rank; i++) {
		int64_t d = p->dims[p->rank - 1 - i], want = x->dims[x->rank - 1 - i];
		if (d != want && d != 1)
			return 0;
	}
	return 1;
}

static int ln_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;
	int64_t sdims[NET_MAX_RANK];
	int axis;

	if (n->n_in < 2 || n->n_in > 3 || !n->in[0] || !n->in[1] || n->n_out < 1 ||
	    n->n_out > 3 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes X, Scale (and B) and gives Y (and "
				"Mean, InvStdDev)");
	x = n->in[0];
	for (size_t k = 0; k < n->n_in; k++)
		if (n->in[k] && n->in[k]->dtype != GRAFT_FLOAT)
			return node_err(n, err, GRAFT_EUNSUPPORTED, "input '%s': dtype %s is not "
					"supported", n->in[k]->name, dtype_label(n->in[k]->dtype));
	if ((axis = ln_axis(n, x->rank)) < 0)
		return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
				(long long)attr_int(n, "axis", -1), x->rank);
	if (attr_int(n, "stash_type", 1) != 1)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "stash_type %lld is not supported",
				(long long)attr_int(n, "stash_type", 1));
	for (size_t k = 1; k < n->n_in; k++)
		if (n->in[k] && !ln_param_ok(n->in[k], x, axis))
			return node_err(n, err, GRAFT_EFORMAT, "input '%s' does not broadcast to the "
					"normalized dims", n->in[k]->name);
	value_set(n->out[0], GRAFT_FLOAT, x->rank, x->dims);
	for (int d = 0; d < x->rank; d++)
		sdims[d] = d < axis ? x->dims[d] : 1;
	for (size_t k = 1; k < n->n_out; k++)
		if (n->out[k])
			value_set(n->out[k], GRAFT_FLOAT, x->rank, sdims);
	return 0;
}

/* p broadcast to the R = prod(x dims from axis) elements of a row, in buf (or p itself). */
static const float *ln_expand(const struct value *p, const struct value *x, int axis,
			      int64_t R, float *buf, float dflt)
{
	int64_t strides[NET_MAX_RANK], idx[NET_MAX_RANK] = {0}, off = 0;
	int tail = x->rank - axis;
	const float *pd;

	if (!p) {
		for (int64_t i = 0; i < R; i++)
			buf[i] = dflt;
		return buf;
	}
	if (value_numel(p) == (uint64_t)R)
		return p->data;
	pd = p->data;
	broadcast_strides(p->rank, p->dims, tail, x->dims + axis, strides);
	for (int64_t i = 0; i < R; i++) {
		buf[i] = pd[off];
		for (int j = tail - 1; j >= 0; j--) {
			off += strides[j];
			if (++idx[j] < x->dims[axis + j])
				break;
			off -= strides[j] * x->dims[axis + j];
			idx[j] = 0;
		}
	}
	return buf;
}

static int ln_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	int axis = ln_axis(n, x->rank);
	int64_t O = prod_dims(x->dims, 0, axis), R = prod_dims(x->dims, axis, x->rank);
	double eps = attr_float(n, "epsilon", 1e-5f);
	const float *xd = x->data, *scale, *bias;
	float *yd = n->out[0]->data;
	float *mo = n->n_out > 1 && n->out[1] ? n->out[1]->data : NULL;
	float *io = n->n_out > 2 && n->out[2] ? n->out[2]->data : NULL;
	float *buf;

	if (O * R == 0)
		return 0;
	if (!(buf = malloc(sizeof(float) * (size_t)(2 * R))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	scale = ln_expand(n->in[1], x, axis, R, buf, 1.0f);
	bias = ln_expand(n->n_in > 2 ? n->in[2] : NULL, x, axis, R, buf + R, 0.0f);
#pragma omp parallel for schedule(static) if (O * R > PAR_MIN && O > 1)
	for (int64_t o = 0; o < O; o++) {
		const float *xr = xd + o * R;
		float *yr = yd + o * R;
		double mean, var;
		row_stats(xr, R, &mean, &var);
		float inv = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
#pragma omp simd
		for (int64_t i = 0; i < R; i++)
			yr[i] = (xr[i] - m) * inv * scale[i] + bias[i];
		if (mo)
			mo[o] = m;
		if (io)
			io[o] = inv;
	}
	free(buf);
	return 0;
}

/* Sums full (R elements of a row) into out, a Scale or B broadcast over the row. */
static int ln_reduce(const struct node *n, const struct value *p, const struct value *x,
		     int axis, int64_t R, const double *full, float *out, struct graft_err *err)
{
	int64_t strides[NET_MAX_RANK], idx[NET_MAX_RANK] = {0}, off = 0;
	int64_t count = (int64_t)value_numel(p);
	int tail = x->rank - axis;
	double *acc;

	if (count == R) {
		for (int64_t i = 0; i < R; i++)
			out[i] = (float)full[i];
		return 0;
	}
	if (!(acc = calloc((size_t)count + 1, sizeof(double))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	broadcast_strides(p->rank, p->dims, tail, x->dims + axis, strides);
	for (int64_t i = 0; i < R; i++) {
		acc[off] += full[i];
		for (int j = tail - 1; j >= 0; j--) {
			off += strides[j];
			if (++idx[j] < x->dims[axis + j])
				break;
			off -= strides[j] * x->dims[axis + j];
			idx[j] = 0;
		}
	}
	for (int64_t i = 0; i < count; i++)
		out[i] = (float)acc[i];
	free(acc);
	return 0;
}

/*
 * Per row, with xhat = (x - mean) * inv and g = dy * scale:
 * dx = inv * (g - mean(g) - xhat * mean(g * xhat)), plus what reaches the Mean and
 * InvStdDev outputs: dMean / R and -dInvStdDev * inv^2 * xhat / R.  dScale sums
 * dy * xhat over the rows, dB sums dy, each then over the axes they were broadcast along.
 */
static int ln_backward(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	const struct value *b = n->n_in > 2 ? n->in[2] : NULL;
	int axis = ln_axis(n, x->rank), rc = 0;
	int64_t O = prod_dims(x->dims, 0, axis), R = prod_dims(x->dims, axis, x->rank);
	double eps = attr_float(n, "epsilon", 1e-5f);
	const float *xd = x->data, *dy = n->out[0]->grad->data, *scale;
	const struct value *om = n->n_out > 1 ? n->out[1] : NULL;
	const struct value *oi = n->n_out > 2 ? n->out[2] : NULL;
	const float *dmean = om && om->grad ? om->grad->data : NULL;
	const float *dinv = oi && oi->grad ? oi->grad->data : NULL;
	float *buf, *stats, *dx = n->gin[0] ? n->gin[0]->data : NULL;
	double *acc = NULL;

	if (O * R == 0) {
		for (size_t k = 0; k < n->n_in; k++)
			if (n->gin[k])
				memset(n->gin[k]->data, 0, n->gin[k]->nbytes);
		return 0;
	}
	if (!(buf = malloc(sizeof(float) * (size_t)(R + 2 * O))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	stats = buf + R;
	scale = ln_expand(n->in[1], x, axis, R, buf, 1.0f);
#pragma omp parallel for schedule(static) if (O * R > PAR_MIN && O > 1)
	for (int64_t o = 0; o < O; o++) {
		const float *xr = xd + o * R, *dr = dy + o * R;
		double mean, var, sg = 0, sgx = 0;
		row_stats(xr, R, &mean, &var);
		float inv = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
		stats[o] = m;
		stats[O + o] = inv;
		if (!dx)
			continue;
#pragma omp simd reduction(+:sg, sgx)
		for (int64_t i = 0; i < R; i++) {
			float g = dr[i] * scale[i];
			sg += g;
			sgx += g * ((xr[i] - m) * inv);
		}
		float mg = (float)(sg / (double)R), mgx = (float)(sgx / (double)R);
		float dm = dmean ? dmean[o] / (float)R : 0.0f;
		float di = dinv ? -dinv[o] * inv * inv / (float)R : 0.0f;
		float *xo = dx + o * R;
#pragma omp simd
		for (int64_t i = 0; i < R; i++) {
			float xh = (xr[i] - m) * inv;
			xo[i] = inv * (dr[i] * scale[i] - mg - xh * mgx) + dm + di * xh;
		}
	}
	if (n->gin[1] || (b && n->gin[2])) {
		if (!(acc = calloc((size_t)(2 * R), sizeof(double)))) {
			free(buf);
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
		}
		/* column blocks in parallel, rows in order within each */
#pragma omp parallel for schedule(static) if (O * R > PAR_MIN && R > CHUNK)
		for (int64_t i0 = 0; i0 < R; i0 += CHUNK) {
			int64_t len = R - i0 < CHUNK ? R - i0 : CHUNK;
			double *as = acc + i0, *ab = acc + R + i0;
			for (int64_t o = 0; o < O; o++) {
				const float *xr = xd + o * R + i0, *dr = dy + o * R + i0;
				float m = stats[o], inv = stats[O + o];
#pragma omp simd
				for (int64_t i = 0; i < len; i++) {
					as[i] += dr[i] * ((xr[i] - m) * inv);
					ab[i] += dr[i];
				}
			}
		}
		if (n->gin[1])
			rc = ln_reduce(n, n->in[1], x, axis, R, acc, n->gin[1]->data, err);
		if (!rc && b && n->gin[2])
			rc = ln_reduce(n, b, x, axis, R, acc + R, n->gin[2]->data, err);
	}
	free(acc);
	free(buf);
	return rc;
}

/* ---- InstanceNormalization -------------------------------------------------------------- */

static int in_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;

	if (n->n_in != 3 || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes input, scale, B and gives one output");
	for (size_t k = 0; k < 3; k++) {
		if (!n->in[k])
			return node_err(n, err, GRAFT_EFORMAT, "input %zu is missing", k);
		if (n->in[k]->dtype != GRAFT_FLOAT)
			return node_err(n, err, GRAFT_EUNSUPPORTED, "input '%s': dtype %s is not "
					"supported", n->in[k]->name, dtype_label(n->in[k]->dtype));
	}
	x = n->in[0];
	if (x->rank < 2)
		return node_err(n, err, GRAFT_EFORMAT, "input must have rank 2 or more, not %d",
				x->rank);
	for (size_t k = 1; k < 3; k++)
		if (value_numel(n->in[k]) != (uint64_t)x->dims[1])
			return node_err(n, err, GRAFT_EFORMAT, "input '%s' must have %lld elements",
					n->in[k]->name, (long long)x->dims[1]);
	value_set(n->out[0], GRAFT_FLOAT, x->rank, x->dims);
	return 0;
}

static int in_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	const float *xd = x->data, *scale = n->in[1]->data, *bias = n->in[2]->data;
	float *yd = n->out[0]->data;
	int64_t C = x->dims[1], NC = x->dims[0] * C, inner = prod_dims(x->dims, 2, x->rank);
	double eps = attr_float(n, "epsilon", 1e-5f);

	(void)err;
#pragma omp parallel for schedule(static) if (NC * inner > PAR_MIN && NC > 1)
	for (int64_t nc = 0; nc < NC; nc++) {
		double mean, var, a;
		row_stats(xd + nc * inner, inner, &mean, &var);
		a = scale[nc % C] / sqrt(var + eps);
		affine(xd + nc * inner, yd + nc * inner, inner, (float)a,
		       (float)(bias[nc % C] - mean * a));
	}
	return 0;
}

/* ---- LRN -------------------------------------------------------------------------------- */

static int lrn_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;

	if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes one input, gives one output");
	x = n->in[0];
	if (x->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "dtype %s is not supported",
				dtype_label(x->dtype));
	if (x->rank < 2)
		return node_err(n, err, GRAFT_EFORMAT, "input must have rank 2 or more, not %d",
				x->rank);
	if (attr_int(n, "size", 0) < 1)
		return node_err(n, err, GRAFT_EFORMAT, "size must be given and positive");
	value_set(n->out[0], GRAFT_FLOAT, x->rank, x->dims);
	return 0;
}

/*
 * 1/sqrt(t) for t > 0, to float precision: the bit-level estimate (relative error 2e-3)
 * refined by two Newton steps.  Unlike sqrtf (which may set errno, so GCC calls it per element), it vectorises.
 */
static inline float vrsqrtf(float t)
{
	int32_t i;
	float y, h = 0.5f * t;

	memcpy(&i, &t, sizeof(i));
	i = 0x5f375a86 - (i >> 1);
	memcpy(&y, &i, sizeof(y));
	y = y * (1.5f - h * y * y);
	y = y * (1.5f - h * y * y);
	return y;
}

/* y = x / (bias + alpha / size * sum of x^2 over the size channels around c)^beta.  The
 * usual betas (0.75: AlexNet, GoogLeNet; 0.5) avoid powf when the base stays positive. */
static int lrn_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	const float *xd = x->data;
	float *yd = n->out[0]->data;
	int64_t size = attr_int(n, "size", 1), C = x->dims[1];
	int64_t NC = x->dims[0] * C, inner = prod_dims(x->dims, 2, x->rank);
	int64_t nch = (inner + CHUNK - 1) / CHUNK, units = NC * nch;
	int64_t before = (size - 1) / 2, after = size - 1 - before;
	float alpha = attr_float(n, "alpha", 1e-4f) / (float)size;
	float beta = attr_float(n, "beta", 0.75f), bias = attr_float(n, "bias", 1.0f);
	int fast = bias > 1e-30f && alpha >= 0;

	(void)err;
#pragma omp parallel for schedule(static) if (NC * inner * size > PAR_MIN && units > 1)
	for (int64_t u = 0; u < units; u++) {
		int64_t nc = u / nch, c = nc % C, i0 = (u % nch) * CHUNK;
		int64_t len = inner - i0 < CHUNK ? inner - i0 : CHUNK;
		int64_t lo = c - before < 0 ? 0 : c - before, hi = c + after >= C ? C - 1 : c + after;
		const float *xb = xd + (nc - c) * inner + i0;
		float acc[CHUNK];

		for (int64_t i = 0; i < len; i++)
			acc[i] = 0;
		for (int64_t k = lo; k <= hi; k++)
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				acc[i] += xb[k * inner + i] * xb[k * inner + i];
		const float *xc = xb + c * inner;
		float *yc = yd + nc * inner + i0;
		if (beta == 0.75f && fast) {
#pragma omp simd
			for (int64_t i = 0; i < len; i++) {
				float r = vrsqrtf(bias + alpha * acc[i]);
				yc[i] = xc[i] * r * r * vrsqrtf(r);
			}
		} else if (beta == 0.5f && fast) {
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				yc[i] = xc[i] * vrsqrtf(bias + alpha * acc[i]);
		} else {
			for (int64_t i = 0; i < len; i++)
				yc[i] = xc[i] * powf(bias + alpha * acc[i], -beta);
		}
	}
	return 0;
}

/* ---- MeanVarianceNormalization ---------------------------------------------------------- */

/* The axes the statistics are taken over (default 0, 2, 3) as a mask. */
static int mvn_mask(const struct node *n, int rank, int *mask, struct graft_err *err)
{
	int64_t axes[NET_MAX_RANK] = {0, 2, 3};
	long na = attr_ints(n, "axes", axes, NET_MAX_RANK);

	if (na < 0)
		na = 3;
	if (na > NET_MAX_RANK)
		return node_err(n, err, GRAFT_EFORMAT, "%ld axes for rank %d", na, rank);
	for (int d = 0; d < rank; d++)
		mask[d] = 0;
	for (long i = 0; i < na; i++) {
		int a = norm_axis(axes[i], rank);
		if (a < 0 || mask[a])
			return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range or repeated",
					(long long)axes[i]);
		mask[a] = 1;
	}
	return 0;
}

static int mvn_infer(struct node *n, struct graft_err *err)
{
	int mask[NET_MAX_RANK];

	if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes one input, gives one output");
	if (n->in[0]->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "dtype %s is not supported",
				dtype_label(n->in[0]->dtype));
	if (mvn_mask(n, n->in[0]->rank, mask, err))
		return err->code;
	value_set(n->out[0], GRAFT_FLOAT, n->in[0]->rank, n->in[0]->dims);
	return 0;
}

/* The index of the statistics group element i (of x's dims) belongs to. */
static int64_t mvn_group(const struct value *x, const int *mask, int64_t i)
{
	int64_t g = 0, mul = 1;

	for (int d = x->rank - 1; d >= 0; d--) {
		int64_t k = i % x->dims[d];
		i /= x->dims[d];
		if (!mask[d]) {
			g += k * mul;
			mul *= x->dims[d];
		}
	}
	return g;
}

/* y = (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9), the op's function body. */
static int mvn_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	const float *xd = x->data;
	float *yd = n->out[0]->data;
	int mask[NET_MAX_RANK];
	int64_t numel = (int64_t)value_numel(x), groups = 1;
	double *st;

	if (mvn_mask(n, x->rank, mask, err))
		return err->code;
	for (int d = 0; d < x->rank; d++)
		if (!mask[d])
			groups *= x->dims[d];
	if (numel == 0)
		return 0;
	if (!(st = calloc((size_t)(3 * groups), sizeof(double))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	for (int64_t i = 0; i < numel; i++) {
		int64_t g = mvn_group(x, mask, i);
		st[3 * g] += xd[i];
		st[3 * g + 1] += (double)xd[i] * xd[i];
		st[3 * g + 2] += 1;
	}
	for (int64_t g = 0; g < groups; g++) {
		double m = st[3 * g] / st[3 * g + 2], v = st[3 * g + 1] / st[3 * g + 2] - m * m;
		st[3 * g] = m;
		st[3 * g + 1] = sqrt(v > 0 ? v : 0) + 1e-9;
	}
	for (int64_t i = 0; i < numel; i++) {
		int64_t g = mvn_group(x, mask, i);
		yd[i] = (float)((xd[i] - st[3 * g]) / st[3 * g + 1]);
	}
	free(st);
	return 0;
}

static const struct op_def op_batchnorm = {"BatchNormalization", bn_infer, bn_run, bn_release,
					   0, 0};
static const struct op_def op_layernorm = {"LayerNormalization", ln_infer, ln_run, NULL, 0, 0};
static const struct op_def op_instancenorm = {"InstanceNormalization", in_infer, in_run, NULL,
					      0, 0};
static const struct op_def op_lrn = {"LRN", lrn_infer, lrn_run, NULL, 0, 0};
static const struct op_def op_mvn = {"MeanVarianceNormalization", mvn_infer, mvn_run, NULL, 0, 0};

const struct op_def *const ops_norm[] = {
	&op_batchnorm, &op_layernorm, &op_instancenorm, &op_lrn, &op_mvn, NULL,
};

static const struct grad_def grad_batchnorm = {"BatchNormalization", bn_backward};
static const struct grad_def grad_layernorm = {"LayerNormalization", ln_backward};

const struct grad_def *const ops_norm_grad[] = {&grad_batchnorm, &grad_layernorm, NULL};
