/*
 * optim.c: SGD (momentum, Nesterov, dampening), Adam and AdamW with PyTorch 1.13's update
 * formulas, operation for operation in float32 (torch/optim/sgd.py _single_tensor_sgd,
 * adam.py and adamw.py _single_tensor_adam[w]), so that graft and PyTorch trained from
 * the same weights on the same batches stay equal to float rounding:
 *
 *   SGD:   g += wd * p;  v = g (first step) or m * v + (1 - dampening) * g;
 *          g = nesterov ? g + m * v : v;  p -= lr * g
 *   Adam:  g += wd * p;  m1 = b1 * m1 + (1 - b1) * g;  m2 = b2 * m2 + (1 - b2) * g * g;
 *          p -= lr / (1 - b1^t) * m1 / (sqrt(m2) / sqrt(1 - b2^t) + eps)
 *   AdamW: p *= 1 - lr * wd, then Adam without the wd term.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

struct graft_optim {
	struct graft_optim_opts o;
	size_t n;
	uint64_t *numel;
	float **m1, **m2;       /* momentum buffer (SGD) or first moment; second moment */
	int64_t *updates;       /* per parameter: updates done (Adam's t; SGD's momentum
				 * buffer holds a value once it is not 0) */
	int64_t step;           /* steps begun */
};

void graft_optim_defaults(struct graft_optim_opts *o, enum graft_optim_kind kind)
{
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->lr = kind == GRAFT_OPTIM_SGD ? 0.01 : 1e-3;
	o->beta1 = 0.9;
	o->beta2 = 0.999;
	o->eps = 1e-8;
	o->weight_decay = kind == GRAFT_OPTIM_ADAMW ? 1e-2 : 0;
}

const char *graft_optim_name(enum graft_optim_kind kind)
{
	switch (kind) {
	case GRAFT_OPTIM_SGD: return "sgd";
	case GRAFT_OPTIM_ADAM: return "adam";
	case GRAFT_OPTIM_ADAMW: return "adamw";
	}
	return "?";
}

void graft_optim_free(struct graft_optim *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->n; i++) {
		free(o->m1[i]);
		free(o->m2[i]);
	}
	free(o->m1);
	free(o->m2);
	free(o->updates);
	free(o->numel);
	free(o);
}

int graft_optim_new(struct graft_optim **out, const struct graft_optim_opts *opts, size_t n,
		    const uint64_t *numel, struct graft_err *err)
{
	struct graft_optim *o = calloc(1, sizeof(*o));
	int adam = opts->kind != GRAFT_OPTIM_SGD, moments = adam || opts->momentum != 0;

	*out = NULL;
	if (!o)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	o->o = *opts;
	o->n = n;
	o->m1 = calloc(n + 1, sizeof(*o->m1));
	o->m2 = calloc(n + 1, sizeof(*o->m2));
	o->updates = calloc(n + 1, sizeof(*o->updates));
	o->numel = calloc(n + 1, sizeof(*o->numel));
	if (!o->m1 || !o->m2 || !o->updates || !o->numel)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		o->numel[i] = numel[i];
		if (moments && !(o->m1[i] = calloc(numel[i] + 1, sizeof(float))))
			goto nomem;
		if (adam && !(o->m2[i] = calloc(numel[i] + 1, sizeof(float))))
			goto nomem;
	}
	*out = o;
	return 0;
nomem:
	graft_optim_free(o);
	return graft_err_set(err, GRAFT_ENOMEM, "out of memory for the optimizer's state");
}

static void sgd(const struct graft_optim_opts *o, float *p, const float *g, float *v,
		int first, uint64_t n, float lr)
{
	float wd = (float)o->weight_decay, m = (float)o->momentum;
	float damp = (float)(1 - o->dampening);

	#pragma omp parallel for if (n > 65536)
	for (uint64_t i = 0; i < n; i++) {
		float d = g[i];
		if (wd != 0)
			d = d + wd * p[i];
		if (v) {
			v[i] = first ? d : v[i] * m + damp * d;
			d = o->nesterov ? d + m * v[i] : v[i];
		}
		p[i] = p[i] + -lr * d;
	}
}

static void adam(const struct graft_optim_opts *o, float *p, const float *g, float *m1,
		 float *m2, uint64_t n, double lr, int64_t t)
{
	int decoupled = o->kind == GRAFT_OPTIM_ADAMW;
	float wd = (float)o->weight_decay, b1 = (float)o->beta1, b2 = (float)o->beta2;
	float a1 = (float)(1 - o->beta1), a2 = (float)(1 - o->beta2), eps = (float)o->eps;
	double bc1 = 1 - pow(o->beta1, (double)t), bc2 = 1 - pow(o->beta2, (double)t);
	float step = (float)-(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
	float shrink = (float)(1 - lr * o->weight_decay);

	#pragma omp parallel for if (n > 65536)
	for (uint64_t i = 0; i < n; i++) {
		float d = g[i];
		if (decoupled)
			p[i] = p[i] * shrink;
		else if (wd != 0)
			d = d + wd * p[i];
		m1[i] = m1[i] * b1 + a1 * d;
		m2[i] = m2[i] * b2 + a2 * d * d;   /* addcmul: value * t1 * t2 */
		float denom = sqrtf(m2[i]) / bc2_sqrt + eps;
		p[i] = p[i] + step * m1[i] / denom;        /* addcdiv: value * t1 / t2 */
	}
}

void graft_optim_begin_step(struct graft_optim *o)
{
	o->step++;
}

void graft_optim_update(struct graft_optim *o, size_t i, float *p, const float *g, double lr)
{
	int64_t t = ++o->updates[i];

	if (o->o.kind == GRAFT_OPTIM_SGD)
		sgd(&o->o, p, g, o->m1[i], t == 1, o->numel[i], (float)lr);
	else
		adam(&o->o, p, g, o->m1[i], o->m2[i], o->numel[i], lr, t);
}

int64_t graft_optim_steps(const struct graft_optim *o)
{
	return o->step;
}

float *graft_optim_state(struct graft_optim *o, size_t i, int which)
{
	if (i >= o->n || which < 0 || which > 1)
		return NULL;
	return which == 0 ? o->m1[i] : o->m2[i];
}

void graft_optim_restore(struct graft_optim *o, int64_t steps, int momentum_started)
{
	o->step = steps;
	for (size_t i = 0; i < o->n; i++)
		o->updates[i] = momentum_started ? steps : 0;
}

int64_t graft_optim_param_steps(const struct graft_optim *o, size_t i)
{
	return i < o->n ? o->updates[i] : 0;
}

void graft_optim_restore_param(struct graft_optim *o, size_t i, int64_t steps)
{
	if (i < o->n)
		o->updates[i] = steps;
}
