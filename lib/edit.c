/*
 * edit.c: graph surgery on a model's skeleton: the changes that touch nodes rather than
 * just the tensor table.
 */
#include <string.h>

#include "internal.h"

/* Removes node i of the main graph (freed). */
static void remove_node(Onnx__GraphProto *g, size_t i)
{
	protobuf_c_message_free_unpacked(&g->node[i]->base, NULL);
	memmove(&g->node[i], &g->node[i + 1], (g->n_node - i - 1) * sizeof(g->node[0]));
	g->n_node--;
}

int graft_model_unalias(struct graft_model *m, const char *name, const void *data,
			size_t nbytes, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	const struct alias_rec *a = NULL;
	const struct tensor_rec *target;
	int64_t dims[GRAFT_MAX_RANK];
	enum graft_role role;
	int dtype, rank;

	for (size_t i = 0; i < m->n_aliases && !a; i++)
		if (strcmp(m->aliases[i].name, name) == 0)
			a = &m->aliases[i];
	if (!a)
		return graft_err_set(err, GRAFT_EINVAL, "'%s' is neither a stored tensor nor an "
				     "alias of one", name);
	target = &m->tensors[a->target];
	if (nbytes != target->nbytes)
		return graft_err_set(err, GRAFT_EINVAL, "'%s': %zu bytes for a tensor of %zu", name,
				     nbytes, target->nbytes);
	dtype = target->dtype;
	rank = target->rank;
	memcpy(dims, target->dims, sizeof(int64_t) * (size_t)rank);
	role = a->role;
	int trainable = role == GRAFT_ROLE_PARAMETER && target->trainable;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (n->op_type && strcmp(n->op_type, "Identity") == 0 && n->n_output == 1 &&
		    n->output[0] && strcmp(n->output[0], name) == 0) {
			size_t index;
			int rc;
			remove_node(g, i);
			/* adding the initializer refreshes the alias list */
			if ((rc = graft_model_add_tensor(m, name, dtype, rank, dims, data, role,
							 GRAFT_SOURCE_INITIALIZER, &index, err)))
				return rc;
			/* a parameter keeps its tensor's trainable flag */
			return role == GRAFT_ROLE_PARAMETER
				? graft_model_set_trainable(m, index, trainable, err) : 0;
		}
	}
	return graft_err_set(err, GRAFT_EINVAL, "alias '%s' has no Identity node", name);
}
