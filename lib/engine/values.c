/*
 * values.c: a net's table of values by name, which the executor (net.c) fills as it adds
 * the model's tensors and nodes and autograd.c extends with a training net's own
 * copies: the one thing both need of each other, kept apart so that neither calls the
 * other back.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

struct value *net_value_get_or_add(struct graft_net *net, const char *name,
				   struct graft_err *err)
{
	long i = strmap_get(&net->by_name, name);
	struct value *v;

	if (i >= 0)
		return net->values[i];
	struct value **vs = array_grow(net->values, &net->cap_values, net->n_values,
				       sizeof(*vs));
	if (!vs)
		goto nomem;
	net->values = vs;
	if (!(v = calloc(1, sizeof(*v))) || !(v->name = strdup(name))) {
		free(v);
		goto nomem;
	}
	net->values[net->n_values] = v;
	if (strmap_put(&net->by_name, v->name, (long)net->n_values) == -2)
		goto nomem;
	net->n_values++;
	return v;
nomem:
	graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return NULL;
}
