/*
 * parity.c: two models run on the same samples and compared, the report a deployment
 * needs before it trusts a converted model (graft-verify): per output the largest
 * absolute and relative difference, and for a classifier top-1 agreement and each
 * model's accuracy.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

/* Compares output k of the two nets after a run on b samples. */
static int compare_output(const struct graft_net *ref, const struct graft_net *cand, size_t k,
			  int64_t b, struct graft_parity_output *o, struct graft_err *err)
{
	struct graft_array r, c;

	graft_net_output(ref, k, &r);
	graft_net_output(cand, k, &c);
	if (r.dtype != GRAFT_FLOAT || c.dtype != GRAFT_FLOAT || r.nbytes != c.nbytes ||
	    r.rank != c.rank || memcmp(r.dims, c.dims, sizeof(int64_t) * (size_t)r.rank) != 0 ||
	    r.rank < 1 || r.dims[0] != b)
		return graft_err_set(err, GRAFT_EINVAL, "output %zu differs in type or shape "
				     "between the models (or is not float [batch, ...])", k);
	const float *a = r.data, *z = c.data;
	for (size_t i = 0; i < r.nbytes / sizeof(float); i++) {
		double d = fabs((double)a[i] - z[i]);
		o->max_abs = d > o->max_abs || isnan(d) ? d : o->max_abs;
		o->ref_max = fabs(a[i]) > o->ref_max ? fabs(a[i]) : o->ref_max;
	}
	return 0;
}

int graft_parity(struct graft_net *ref, struct graft_net *cand, const struct graft_array *x,
		 size_t n_x, const struct graft_array *y, int64_t batch, struct graft_parity *p,
		 struct graft_err *err)
{
	void *bufs[GRAFT_DATASET_MAX_INPUTS];
	int64_t n = x->dims[0];
	int rc;

	memset(p, 0, sizeof(*p));
	p->n_outputs = graft_net_output_count(ref);
	if (p->n_outputs != graft_net_output_count(cand))
		return graft_err_set(err, GRAFT_EINVAL, "the models have %zu and %zu outputs",
				     p->n_outputs, graft_net_output_count(cand));
	if (p->n_outputs > GRAFT_PARITY_MAX_OUTPUTS)
		p->n_outputs = GRAFT_PARITY_MAX_OUTPUTS;
	p->labels = y && y->dtype == GRAFT_INT64;
	batch = batch < 1 ? 1 : batch;
	for (int64_t at = 0; at < n; at += batch) {
		struct graft_array xb[GRAFT_DATASET_MAX_INPUTS], out;
		int64_t b = n - at < batch ? n - at : batch;
		if ((rc = train_batch_rows(x, n_x, at, b, b, xb, bufs, err)) ||
		    (rc = graft_net_run(ref, xb, n_x, err)) || (rc = graft_net_run(cand, xb, n_x, err)))
			return rc;
		for (size_t k = 0; k < p->n_outputs; k++)
			if ((rc = compare_output(ref, cand, k, b, &p->out[k], err)))
				return rc;
		/* a classifier: its first output [batch, classes] */
		graft_net_output(ref, 0, &out);
		int64_t classes = (int64_t)(out.nbytes / sizeof(float) / (size_t)b);
		if (out.rank != 2 || classes < 2)
			continue;
		p->classifier = 1;
		struct graft_array o2;
		graft_net_output(cand, 0, &o2);
		for (int64_t i = 0; i < b; i++) {
			int64_t u = train_arg_max((const float *)out.data + i * classes, classes);
			int64_t v = train_arg_max((const float *)o2.data + i * classes, classes);
			p->agree += u == v;
			if (p->labels) {
				int64_t l = ((const int64_t *)y->data)[at + i];
				p->ref_correct += u == l;
				p->cand_correct += v == l;
			}
		}
	}
	p->count = n;
	for (size_t k = 0; k < p->n_outputs; k++) {
		struct graft_parity_output *o = &p->out[k];
		struct graft_array r;
		graft_net_output(ref, k, &r);
		o->name = r.name;
		o->max_rel = o->ref_max > 0 ? o->max_abs / o->ref_max : o->max_abs;
	}
	return 0;
}
