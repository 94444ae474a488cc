/*
 * gradcheck.c: see gradcheck.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "gradcheck.h"
#include "testmodel.h"

struct graft_array gradcheck_input(int rank, const int64_t *dims, double lo, double hi,
				   uint64_t seed)
{
	struct graft_array a;
	struct graft_rng r;
	uint64_t n = 1;

	memset(&a, 0, sizeof(a));
	a.dtype = GRAFT_FLOAT;
	a.rank = rank;
	for (int i = 0; i < rank; i++) {
		a.dims[i] = dims[i];
		n *= (uint64_t)dims[i];
	}
	a.nbytes = (size_t)n * sizeof(float);
	a.data = malloc(a.nbytes ? a.nbytes : 1);
	graft_rng_seed(&r, seed);
	for (uint64_t i = 0; i < n; i++)
		((float *)a.data)[i] = (float)(lo + (hi - lo) * graft_rng_uniform(&r));
	return a;
}

struct check {
	struct graft_net *net;
	struct graft_array *in;
	size_t n_in;
	float **w;              /* per output: the loss weights */
	struct graft_rng rng0;  /* the net's generator before the first run: every run
				 * draws the same Dropout mask */
};

/* Runs the net and returns L = sum w . out, in double. */
static double loss(struct check *c)
{
	struct graft_err err = {0};
	double l = 0;

	*autograd_rng(c->net) = c->rng0;
	if (graft_net_run(c->net, c->in, c->n_in, &err))
		fail_msg("run: %s", err.msg);
	for (size_t o = 0; o < graft_net_output_count(c->net); o++) {
		struct graft_array y;
		graft_net_output(c->net, o, &y);
		if (y.dtype != GRAFT_FLOAT || !c->w)
			continue;       /* (the first run plans, before the weights exist) */
		for (size_t i = 0; i < y.nbytes / sizeof(float); i++)
			l += (double)c->w[o][i] * ((const float *)y.data)[i];
	}
	return l;
}

static size_t check_tensor(struct check *c, const char *what, float *data, const float *grad,
			   uint64_t numel, const struct gradcheck_opts *o)
{
	size_t max = o->max_elems ? o->max_elems : 64, done = 0;
	uint64_t step = numel > max ? numel / max : 1;
	double h = o->h > 0 ? o->h : 1e-2, rtol = o->rtol > 0 ? o->rtol : 2e-2;
	double atol = o->atol > 0 ? o->atol : 1e-3;

	if (!grad)
		fail_msg("%s: no gradient", what);
	for (uint64_t i = 0; i < numel && done < max; i += step, done++) {
		float keep = data[i];
		double an = grad[i];
		data[i] = (float)(keep + h);
		double lp = loss(c);
		data[i] = (float)(keep - h);
		double lm = loss(c);
		data[i] = keep;
		double fd = (lp - lm) / (2 * h);
		if (fabs(fd - an) > atol + rtol * fmax(fabs(fd), fabs(an)))
			fail_msg("%s[%llu]: backward %.6g, finite difference %.6g", what,
				 (unsigned long long)i, an, fd);
	}
	return done;
}

int gradcheck(Onnx__ModelProto *mp, const struct graft_array *inputs, size_t n_inputs,
	      const struct gradcheck_opts *opts, size_t *checked)
{
	struct gradcheck_opts o = opts ? *opts : (struct gradcheck_opts){0};
	struct graft_net_opts no = {.training = 1, .input_grads = 1, .bn_frozen = o.bn_frozen,
				    .seed = o.seed};
	struct graft_err err = {0};
	struct graft_model *m;
	struct check c = {0};
	struct graft_rng r;
	size_t len, done = 0, n_out;
	uint8_t *buf = tm_pack(mp, &len);

	onnx__model_proto__free_unpacked(mp, NULL);
	if (graft_model_read_memory(&m, buf, len, NULL, "gradcheck", &err))
		fail_msg("%s", err.msg);
	free(buf);
	if (graft_net_new_opts(&c.net, m, &no, &err))
		fail_msg("%s", err.msg);
	if (o.eval)
		graft_net_set_training(c.net, 0);
	c.rng0 = *autograd_rng(c.net);
	c.n_in = n_inputs;
	c.in = calloc(n_inputs + 1, sizeof(*c.in));
	for (size_t i = 0; i < n_inputs; i++) {
		c.in[i] = inputs[i];
		c.in[i].data = malloc(inputs[i].nbytes + 1);
		memcpy(c.in[i].data, inputs[i].data, inputs[i].nbytes);
	}
	loss(&c);                               /* plans: output shapes are known now */
	n_out = graft_net_output_count(c.net);
	c.w = calloc(n_out + 1, sizeof(*c.w));
	struct graft_array *og = calloc(n_out + 1, sizeof(*og));
	graft_rng_seed(&r, 12345);
	for (size_t k = 0; k < n_out; k++) {
		struct graft_array y;
		graft_net_output(c.net, k, &y);
		size_t n = y.dtype == GRAFT_FLOAT ? y.nbytes / sizeof(float) : 0;
		c.w[k] = malloc((n + 1) * sizeof(float));
		for (size_t i = 0; i < n; i++)
			c.w[k][i] = (float)(graft_rng_uniform(&r) * 2 - 1);
		og[k] = y;
		og[k].data = n ? c.w[k] : NULL;
	}
	loss(&c);
	if (graft_net_backward(c.net, og, n_out, &err))
		fail_msg("backward: %s", err.msg);
	/* Keep the analytic gradients: the nudged runs below do not touch them, but copy
	 * anyway so that a kernel writing gradients during forward would show. */
	for (size_t i = 0; i < n_inputs; i++) {
		struct graft_array g;
		if (inputs[i].dtype != GRAFT_FLOAT)
			continue;
		if (graft_net_input_grad(c.net, i, &g, &err))
			fail_msg("input %zu: %s", i, err.msg);
		float *copy = malloc(g.nbytes + 1);
		memcpy(copy, g.data, g.nbytes);
		char what[64];
		snprintf(what, sizeof(what), "input %zu", i);
		done += check_tensor(&c, what, c.in[i].data, copy, g.nbytes / sizeof(float), &o);
		free(copy);
	}
	for (size_t i = 0; i < graft_net_tensor_count(c.net); i++) {
		struct graft_net_tensor t;
		graft_net_tensor(c.net, i, &t);
		if (!t.is_param)
			continue;
		float *copy = malloc(t.numel * sizeof(float) + 1);
		if (!t.grad)
			fail_msg("%s: no gradient", t.name);
		memcpy(copy, t.grad, t.numel * sizeof(float));
		done += check_tensor(&c, t.name, t.data, copy, t.numel, &o);
		free(copy);
	}
	for (size_t k = 0; k < n_out; k++)
		free(c.w[k]);
	free(c.w);
	free(og);
	for (size_t i = 0; i < n_inputs; i++)
		free(c.in[i].data);
	free(c.in);
	graft_net_free(c.net);
	graft_model_free(m);
	if (checked)
		*checked = done;
	return 0;
}
