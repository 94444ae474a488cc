/*
 * probe.c: a model's shapes, found by running it.  Surgery asks what shape a value has
 * (graft-head's feature size, the cuts' sizes, the inputs a slice needs) of models whose
 * value_info is often missing or stale; the executor infers every shape when it plans,
 * so a run at batch 1 on zeros, with no fusion (every value kept), answers for all of
 * them at once.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* Zeros of input i's declared shape, symbolic dims 1; 1 where a dim past the first is
 * symbolic (and strict refuses that), -1 with err set on failure. */
static int zero_input(const struct graft_model *m, const char *name, int strict,
		      struct graft_array *a, struct graft_err *err)
{
	struct graft_value_info vi = {0};
	uint64_t numel = 1;
	size_t es, k;

	for (k = 0; k < graft_model_input_count(m); k++) {
		graft_model_input(m, k, &vi);
		if (strcmp(vi.name, name) == 0)
			break;
	}
	es = k < graft_model_input_count(m) ? graft_dtype_size(vi.dtype) : 0;
	if (!es || vi.rank < 0 || vi.rank > GRAFT_ARRAY_MAX_RANK)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "input '%s' declares no tensor "
				     "shape to infer shapes from", name);
	a->dtype = vi.dtype;
	a->rank = vi.rank;
	for (int d = 0; d < vi.rank; d++) {
		if (vi.dims[d] < 0 && d > 0 && strict)
			return graft_err_set(err, GRAFT_EUNSUPPORTED, "input '%s': dim %d is "
					     "symbolic, so the shapes after it cannot be inferred",
					     name, d);
		a->dims[d] = vi.dims[d] < 0 ? 1 : vi.dims[d];
		numel *= (uint64_t)a->dims[d];
	}
	a->nbytes = (size_t)numel * es;
	if (!(a->data = calloc(1, a->nbytes + 1)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
}

int engine_probe(struct graft_net **out, const struct graft_model *m, int strict,
		 struct graft_err *err)
{
	struct graft_net_opts opts = {.no_fuse = 1};
	struct graft_net *net;
	struct graft_array *in;
	size_t n;
	int rc;

	*out = NULL;
	if ((rc = graft_net_new_opts(&net, m, &opts, err)))
		return rc;
	n = graft_net_input_count(net);
	if (!(in = calloc(n + 1, sizeof(*in)))) {
		graft_net_free(net);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n && !rc; i++)
		rc = zero_input(m, graft_net_input_name(net, i), strict, &in[i], err);
	if (!rc)
		rc = graft_net_run(net, in, n, err);
	for (size_t i = 0; i < n; i++)
		free(in[i].data);
	free(in);
	if (rc) {
		graft_net_free(net);
		return rc;
	}
	*out = net;
	return 0;
}
