/*
 * softmax.c: Softmax, LogSoftmax and Hardmax, which normalise along one axis: Softmax to
 * exp(x - max) over its sum, LogSoftmax to the log of that, Hardmax to 1 at the first
 * maximum and 0 elsewhere.  Before opset 13 the input is coerced to 2-D at the axis (the
 * whole row from the axis on); since, the op works along the one axis.  float32 only.
 *
 * The axis splits the input into (O, R, I) (split_axis, ops_util.c).  Along the innermost
 * axis (I == 1) each row is a pass for the maximum, one for exp and its sum, one to scale,
 * rows in parallel; along a middle axis the same passes run over CHUNK columns of I at a
 * time, vectorised across I.  exp is vexpf (ops.h), which vectorises where libm's expf
 * does not.  Hardmax takes the float32 argmax that ArgMax uses (argmax_f32, ops_util.c).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* Elements of work below which a parallel region costs more than it saves. */
#define PAR_MIN 32768
/* Columns of the I axis one task of a middle-axis kernel handles (stack buffers). */
#define CHUNK 256

/* Before opset 13 the input is coerced to 2-D at axis (default 1); since, the op works
 * along the one axis (default -1). */
static int softmax_axis(const struct node *n, int rank)
{
	return norm_axis(attr_int(n, "axis", n->opset < 13 ? 1 : -1), rank);
}

static int softmax_infer(struct node *n, struct graft_err *err)
{
	const struct value *x;

	if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
		return node_err(n, err, GRAFT_EFORMAT, "takes one input, gives one output");
	x = n->in[0];
	if (x->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "dtype %s is not supported",
				dtype_label(x->dtype));
	if (softmax_axis(n, x->rank) < 0)
		return node_err(n, err, GRAFT_EFORMAT, "axis %lld is out of range for rank %d",
				(long long)attr_int(n, "axis", n->opset < 13 ? 1 : -1), x->rank);
	value_set(n->out[0], x->dtype, x->rank, x->dims);
	return 0;
}

static void softmax_row(const float *x, float *y, int64_t n, int log_out)
{
	float m = -INFINITY, s = 0;

#pragma omp simd reduction(max:m)
	for (int64_t i = 0; i < n; i++)
		m = x[i] > m ? x[i] : m;
	if (log_out) {
#pragma omp simd reduction(+:s)
		for (int64_t i = 0; i < n; i++)
			s += vexpf(x[i] - m);
		float c = m + logf(s);
#pragma omp simd
		for (int64_t i = 0; i < n; i++)
			y[i] = x[i] - c;
	} else {
#pragma omp simd reduction(+:s)
		for (int64_t i = 0; i < n; i++) {
			y[i] = vexpf(x[i] - m);
			s += y[i];
		}
		float r = 1.0f / s;
#pragma omp simd
		for (int64_t i = 0; i < n; i++)
			y[i] *= r;
	}
}

/* Softmax along the middle axis of (O, R, I), CHUNK columns of I per task. */
static void softmax_mid(const float *x, float *y, int64_t O, int64_t R, int64_t I, int log_out)
{
	int64_t nch = (I + CHUNK - 1) / CHUNK, units = O * nch;

#pragma omp parallel for schedule(static) if (O * R * I > PAR_MIN && units > 1)
	for (int64_t u = 0; u < units; u++) {
		int64_t o = u / nch, i0 = (u % nch) * CHUNK;
		int64_t len = I - i0 < CHUNK ? I - i0 : CHUNK;
		const float *xb = x + o * R * I + i0;
		float *yb = y + o * R * I + i0;
		float m[CHUNK], s[CHUNK];

		for (int64_t i = 0; i < len; i++) {
			m[i] = xb[i];
			s[i] = 0;
		}
		for (int64_t r = 1; r < R; r++)
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				m[i] = xb[r * I + i] > m[i] ? xb[r * I + i] : m[i];
		for (int64_t r = 0; r < R; r++) {
			if (log_out) {
#pragma omp simd
				for (int64_t i = 0; i < len; i++)
					s[i] += vexpf(xb[r * I + i] - m[i]);
			} else {
#pragma omp simd
				for (int64_t i = 0; i < len; i++) {
					yb[r * I + i] = vexpf(xb[r * I + i] - m[i]);
					s[i] += yb[r * I + i];
				}
			}
		}
		for (int64_t i = 0; i < len; i++)
			s[i] = log_out ? m[i] + logf(s[i]) : 1.0f / s[i];
		for (int64_t r = 0; r < R; r++) {
			if (log_out) {
#pragma omp simd
				for (int64_t i = 0; i < len; i++)
					yb[r * I + i] = xb[r * I + i] - s[i];
			} else {
#pragma omp simd
				for (int64_t i = 0; i < len; i++)
					yb[r * I + i] *= s[i];
			}
		}
	}
}

static int softmax_run_kind(struct node *n, int log_out)
{
	const struct value *x = n->in[0];
	const float *xd = x->data;
	float *yd = n->out[0]->data;
	int axis = softmax_axis(n, x->rank);
	int64_t O, R, I;

	split_axis(x, axis, &O, &R, &I);
	if (n->opset < 13) {
		R *= I;
		I = 1;
	}
	if (O * R * I == 0)
		return 0;
	if (I > 1) {
		softmax_mid(xd, yd, O, R, I, log_out);
		return 0;
	}
#pragma omp parallel for schedule(static) if (O * R > PAR_MIN && O > 1)
	for (int64_t o = 0; o < O; o++)
		softmax_row(xd + o * R, yd + o * R, R, log_out);
	return 0;
}

static int softmax_run(struct node *n, struct graft_err *err)
{
	(void)err;
	return softmax_run_kind(n, 0);
}

static int log_softmax_run(struct node *n, struct graft_err *err)
{
	(void)err;
	return softmax_run_kind(n, 1);
}

/* Hardmax: 1 where the first maximum along the axis is, 0 elsewhere. */
static int hardmax_run(struct node *n, struct graft_err *err)
{
	const struct value *x = n->in[0];
	float *yd = n->out[0]->data;
	int64_t O, R, I, *idx;

	split_axis(x, softmax_axis(n, x->rank), &O, &R, &I);
	if (n->opset < 13) {
		R *= I;
		I = 1;
	}
	/* The output is reused from run to run: clear last run's ones. */
	memset(yd, 0, n->out[0]->nbytes);
	if (O * R * I == 0)
		return 0;
	if (R > INT32_MAX)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "axis of %lld elements is too long",
				(long long)R);
	if (!(idx = malloc(sizeof(*idx) * (size_t)(O * I))))
		return node_err(n, err, GRAFT_ENOMEM, "out of memory");
	argmax_f32(x->data, idx, O, R, I, 1.0f, 0);
	for (int64_t o = 0; o < O; o++)
		for (int64_t i = 0; i < I; i++)
			yd[(o * R + idx[o * I + i]) * I + i] = 1.0f;
	free(idx);
	return 0;
}

static const struct op_def op_softmax = {"Softmax", softmax_infer, softmax_run, NULL, 0, 0};
static const struct op_def op_log_softmax = {"LogSoftmax", softmax_infer, log_softmax_run, NULL,
					     0, 0};
static const struct op_def op_hardmax = {"Hardmax", softmax_infer, hardmax_run, NULL, 0, 0};

const struct op_def *const ops_softmax[] = {&op_softmax, &op_log_softmax, &op_hardmax, NULL};

/* ---- backward ----------------------------------------------------------------------------
 *
 * Gradients are float32.  Softmax: dx = y * (dy - sum(dy * y)); LogSoftmax: dx = dy -
 * exp(y) * sum(dy), the sums along the axis (the middle of (O, R, I); before opset 13 the
 * whole 2-D row from axis on).  Hardmax has none.
 */

static int softmax_backward_kind(struct node *n, int log_out, struct graft_err *err)
{
	const struct value *x = n->in[0];
	const float *Y = n->out[0]->data, *G = n->out[0]->grad->data;
	float *D;
	int64_t O, R, I;

	(void)err;
	if (!n->gin[0])
		return 0;
	D = n->gin[0]->data;
	split_axis(x, softmax_axis(n, x->rank), &O, &R, &I);
	if (n->opset < 13) {
		R *= I;
		I = 1;
	}
	if (O * R * I == 0)
		return 0;
	if (I == 1) {
#pragma omp parallel for schedule(static) if (O * R > PAR_MIN && O > 1)
		for (int64_t o = 0; o < O; o++) {
			const float *y = Y + o * R, *g = G + o * R;
			float *d = D + o * R;
			double acc = 0;
			if (log_out) {
#pragma omp simd reduction(+:acc)
				for (int64_t r = 0; r < R; r++)
					acc += g[r];
				float s = (float)acc;
#pragma omp simd
				for (int64_t r = 0; r < R; r++)
					d[r] = g[r] - vexpf(y[r]) * s;
			} else {
#pragma omp simd reduction(+:acc)
				for (int64_t r = 0; r < R; r++)
					acc += (double)g[r] * y[r];
				float s = (float)acc;
#pragma omp simd
				for (int64_t r = 0; r < R; r++)
					d[r] = y[r] * (g[r] - s);
			}
		}
		return 0;
	}
	/* along a middle axis: CHUNK columns of I per task, as the forward */
	int64_t nch = (I + CHUNK - 1) / CHUNK, units = O * nch;
#pragma omp parallel for schedule(static) if (O * R * I > PAR_MIN && units > 1)
	for (int64_t u = 0; u < units; u++) {
		int64_t o = u / nch, i0 = (u % nch) * CHUNK;
		int64_t len = I - i0 < CHUNK ? I - i0 : CHUNK;
		const float *y = Y + o * R * I + i0, *g = G + o * R * I + i0;
		float *d = D + o * R * I + i0, s[CHUNK];

		for (int64_t i = 0; i < len; i++)
			s[i] = 0;
		for (int64_t r = 0; r < R; r++)
#pragma omp simd
			for (int64_t i = 0; i < len; i++)
				s[i] += log_out ? g[r * I + i] : g[r * I + i] * y[r * I + i];
		for (int64_t r = 0; r < R; r++) {
			if (log_out) {
#pragma omp simd
				for (int64_t i = 0; i < len; i++)
					d[r * I + i] = g[r * I + i] - vexpf(y[r * I + i]) * s[i];
			} else {
#pragma omp simd
				for (int64_t i = 0; i < len; i++)
					d[r * I + i] = y[r * I + i] * (g[r * I + i] - s[i]);
			}
		}
	}
	return 0;
}

static int softmax_backward(struct node *n, struct graft_err *err)
{
	return softmax_backward_kind(n, 0, err);
}

static int log_softmax_backward(struct node *n, struct graft_err *err)
{
	return softmax_backward_kind(n, 1, err);
}

static const struct grad_def grad_softmax = {"Softmax", softmax_backward};
static const struct grad_def grad_log_softmax = {"LogSoftmax", log_softmax_backward};

const struct grad_def *const ops_softmax_grad[] = {&grad_softmax, &grad_log_softmax, NULL};
