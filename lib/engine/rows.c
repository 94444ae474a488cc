/*
 * rows.c: a net run over many samples, a batch at a time, its outputs gathered: what
 * graft-run --data and graft-data features need of a frozen model (a feature extractor,
 * a front end, a detector scored over a stream).
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* Rows from..from+b of a (n rows) as a view. */
static void rows_view(const struct graft_array *a, int64_t n, int64_t from, int64_t b,
		      struct graft_array *v)
{
	size_t row = a->nbytes / (size_t)n;

	*v = *a;
	v->dims[0] = b;
	v->data = (char *)a->data + (size_t)from * row;
	v->nbytes = row * (size_t)b;
}

/* Output k of a run over b rows: its rows are its first dim's, else it is refused. */
static int check_output(const struct graft_array *o, int64_t b, size_t k,
			struct graft_err *err)
{
	if (o->rank < 1 || o->dims[0] != b)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "output %zu ('%s') has no row per "
				     "sample (its first dim is %lld for a batch of %lld): its "
				     "samples cannot be told apart", k, o->name ? o->name : "",
				     o->rank ? (long long)o->dims[0] : 0LL, (long long)b);
	return 0;
}

/* Makes *out, of n rows, shaped like o, an output of a run over b rows (checked). */
static int make_output(const struct graft_array *o, int64_t n, int64_t b,
		       struct graft_array *out, struct graft_err *err)
{
	*out = *o;
	out->name = o->name ? strdup(o->name) : NULL;
	out->dims[0] = n;
	out->nbytes = o->nbytes / (size_t)b * (size_t)n;
	out->data = malloc(out->nbytes ? out->nbytes : 1);
	if (!out->data || (o->name && !out->name))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
}

int graft_net_run_rows(struct graft_net *net, const struct graft_array *inputs,
		       size_t n_inputs, int64_t batch, struct graft_array *outs,
		       struct graft_err *err)
{
	size_t n_outs = graft_net_output_count(net);
	struct graft_array views[GRAFT_NET_MAX_ROW_INPUTS];
	int64_t n = n_inputs ? inputs[0].dims[0] : 0;
	int rc = 0;

	memset(outs, 0, n_outs * sizeof(*outs));
	if (n_inputs < 1 || n_inputs > GRAFT_NET_MAX_ROW_INPUTS)
		return graft_err_set(err, GRAFT_EINVAL, "%zu inputs: 1 to %d are run by rows",
				     n_inputs, GRAFT_NET_MAX_ROW_INPUTS);
	for (size_t i = 0; i < n_inputs; i++)
		if (inputs[i].rank < 1 || inputs[i].dims[0] != n || n < 1)
			return graft_err_set(err, GRAFT_EINVAL, "the inputs must have the same "
					     "number of rows, at least one");
	if (batch < 1)
		batch = 1;
	for (int64_t at = 0; at < n && !rc; at += batch) {
		int64_t b = n - at < batch ? n - at : batch;
		for (size_t i = 0; i < n_inputs; i++)
			rows_view(&inputs[i], n, at, b, &views[i]);
		if ((rc = graft_net_run(net, views, n_inputs, err)))
			break;
		for (size_t k = 0; k < n_outs && !rc; k++) {
			struct graft_array o, slot;
			graft_net_output(net, k, &o);
			if ((rc = check_output(&o, b, k, err)) ||
			    (at == 0 && (rc = make_output(&o, n, b, &outs[k], err))))
				break;
			rows_view(&outs[k], n, at, b, &slot);
			if (o.nbytes != slot.nbytes)
				rc = graft_err_set(err, GRAFT_EUNSUPPORTED, "output %zu ('%s') changes "
						   "shape from batch to batch", k, o.name ? o.name : "");
			else
				memcpy(slot.data, o.data, o.nbytes);
		}
	}
	if (rc)
		for (size_t k = 0; k < n_outs; k++)
			graft_array_release(&outs[k]);
	return rc;
}
