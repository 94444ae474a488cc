/*
 * edit.c: graph surgery on a model's skeleton: the changes that touch nodes rather than
 * just the tensor table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surgery/surgery.h"

/* Removes node i of the main graph (freed). */
void edit_remove_node(Onnx__GraphProto *g, size_t i)
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
			edit_remove_node(g, i);
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

/* ---- extraction ---------------------------------------------------------------------------- */

static int in_list(const char *const *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			return 1;
	return 0;
}

/* A ValueInfo for name with the planned dtype and shape; dim 0 becomes symbolic when the
 * model's first input has a symbolic first dim (the batch). */
static Onnx__ValueInfoProto *planned_info(const struct graft_net *net, const char *name,
					  const char *batch)
{
	int64_t dims[GRAFT_ARRAY_MAX_RANK];
	int rank = 0, dtype = net ? graft_net_value_shape(net, name, &rank, dims) : -1;
	const char *params[GRAFT_ARRAY_MAX_RANK] = {batch};

	return skeleton_value_info(name, dtype, dtype > 0 ? rank : -1, dims, params);
}

/* The symbolic name of the first input's first dim, or NULL. */
static const char *batch_param(const struct graft_model *m)
{
	struct graft_value_info vi;

	if (graft_model_input_count(m) < 1)
		return NULL;
	graft_model_input(m, 0, &vi);
	if (vi.rank < 1 || vi.dims[0] >= 0)
		return NULL;
	return vi.dim_params[0] ? vi.dim_params[0] : "batch";
}

/* Marks the nodes that to[] needs, walking back and stopping at from[]. */
static int mark_needed(const Onnx__GraphProto *g, const char *const *from, size_t n_from,
		       const char *const *to, size_t n_to, unsigned char *keep)
{
	struct strmap need;

	if (strmap_init(&need, 256))
		return -1;
	for (size_t i = 0; i < n_to; i++)
		strmap_put(&need, to[i], 1);
	for (size_t i = g->n_node; i-- > 0;) {
		const Onnx__NodeProto *n = g->node[i];
		for (size_t k = 0; k < n->n_output && !keep[i]; k++)
			keep[i] = n->output[k] && *n->output[k] && strmap_get(&need, n->output[k]) >= 0 &&
				  !in_list(from, n_from, n->output[k]);
		for (size_t k = 0; keep[i] && k < n->n_input; k++)
			if (n->input[k] && *n->input[k] && !in_list(from, n_from, n->input[k]))
				strmap_put(&need, n->input[k], 1);
	}
	strmap_release(&need);
	return 0;
}

static int produced_or_input(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++)
			if (g->node[i]->output[k] && strcmp(g->node[i]->output[k], name) == 0)
				return 1;
	for (size_t i = 0; i < g->n_input; i++)
		if (strcmp(g->input[i]->name, name) == 0)
			return 1;
	return 0;
}

/* Drops the nodes not kept, with the stored tensors of dropped Constant nodes. */
static int drop_nodes(struct graft_model *m, const unsigned char *keep)
{
	Onnx__GraphProto *g = m->proto->graph;
	unsigned char *drop = calloc(m->n_tensors + 1, 1);
	size_t w = 0;

	if (!drop)
		return -1;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		for (size_t k = 0; k < n->n_output && !keep[i]; k++) {
			long t = n->output[k] ? graft_model_find_tensor(m, n->output[k]) : -1;
			if (t >= 0 && m->tensors[t].source == GRAFT_SOURCE_CONSTANT)
				drop[t] = 1;
		}
	}
	model_drop_tensors(m, drop);
	free(drop);
	for (size_t i = 0; i < g->n_node; i++) {
		if (keep[i])
			g->node[w++] = g->node[i];
		else
			protobuf_c_message_free_unpacked(&g->node[i]->base, NULL);
	}
	g->n_node = w;
	return 0;
}

/*
 * Removes the initializers nothing reads, with their graph inputs and stored tensors.
 * In one pass over each list, with the reads counted once: a slice of a large model
 * drops most of its initializers, and a walk of the graph per initializer made that
 * quadratic (minutes for 100,000 of them).
 */
int edit_drop_unread_initializers(struct graft_model *m, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	struct graph_reads reads;
	struct strmap gone;
	Onnx__TensorProto **victims = malloc(sizeof(*victims) * (g->n_initializer + 1));
	unsigned char *drop = calloc(m->n_tensors + 1, 1);
	size_t n_victims = 0, w = 0;
	int rc = 0;

	if (!victims || !drop || graph_reads_init(&reads, g)) {
		free(victims);
		free(drop);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < g->n_initializer; i++) {
		Onnx__TensorProto *tp = g->initializer[i];
		if (!tp->name || graph_reads_count(&reads, tp->name))
			g->initializer[w++] = tp;
		else
			victims[n_victims++] = tp;
	}
	g->n_initializer = w;
	graph_reads_release(&reads);
	if (!n_victims)
		goto out;
	if (strmap_init(&gone, n_victims)) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		goto restore;
	}
	for (size_t i = 0; i < n_victims; i++) {
		long t = graft_model_find_tensor(m, victims[i]->name);
		if (t >= 0 && m->tensors[t].slot == victims[i])
			drop[t] = 1;
		if (strmap_put(&gone, victims[i]->name, 1) == -2) {
			strmap_release(&gone);
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			goto restore;
		}
	}
	/* Their graph inputs (models of IR version < 4 list initializers there) go too. */
	w = 0;
	for (size_t i = 0; i < g->n_input; i++) {
		Onnx__ValueInfoProto *vi = g->input[i];
		if (vi->name && strmap_get(&gone, vi->name) >= 0)
			protobuf_c_message_free_unpacked(&vi->base, NULL);
		else
			g->input[w++] = vi;
	}
	g->n_input = w;
	strmap_release(&gone);
	/* A stored tensor's payload lives in the tensor table: its record frees it, and
	 * only the skeleton of its TensorProto is left to free. */
	model_drop_tensors(m, drop);
	for (size_t i = 0; i < n_victims; i++)
		protobuf_c_message_free_unpacked(&victims[i]->base, NULL);
	model_inputs_changed(m);
	rc = model_refresh_aliases(m, err);
	goto out;
restore:        /* out of memory half-way: put the initializers back as they were */
	for (size_t i = 0; i < n_victims; i++)
		g->initializer[g->n_initializer++] = victims[i];
out:
	free(victims);
	free(drop);
	return rc;
}

/* Graph inputs: from[] (planned shapes), then the old inputs kept nodes still read. */
static int set_inputs(struct graft_model *m, const struct graft_net *net, const char *batch,
		      const char *const *from, size_t n_from, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__ValueInfoProto **in = calloc(g->n_input + n_from + 1, sizeof(*in));
	size_t n = 0;

	struct graph_reads reads;

	if (!in || graph_reads_init(&reads, g)) {
		free(in);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n_from; i++)
		if (!(in[n++] = planned_info(net, from[i], batch))) {
			graph_reads_release(&reads);
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
	for (size_t i = 0; i < g->n_input; i++) {
		Onnx__ValueInfoProto *vi = g->input[i];
		if (!in_list(from, n_from, vi->name) && graph_reads_count(&reads, vi->name))
			in[n++] = vi;
		else
			protobuf_c_message_free_unpacked(&vi->base, NULL);
	}
	graph_reads_release(&reads);
	free(g->input);
	g->input = in;
	g->n_input = n;
	model_inputs_changed(m);
	return 0;
}

static int set_outputs(struct graft_model *m, const struct graft_net *net, const char *batch,
		       const char *const *to, size_t n_to, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__ValueInfoProto **out = calloc(n_to + 1, sizeof(*out));

	if (!out)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < n_to; i++) {
		for (size_t k = 0; k < g->n_output && !out[i]; k++)
			if (g->output[k] && strcmp(g->output[k]->name, to[i]) == 0) {
				out[i] = g->output[k];
				g->output[k] = NULL;
			}
		if (!out[i] && !(out[i] = planned_info(net, to[i], batch)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t k = 0; k < g->n_output; k++)
		if (g->output[k])
			protobuf_c_message_free_unpacked(&g->output[k]->base, NULL);
	free(g->output);
	g->output = out;
	g->n_output = n_to;
	return 0;
}

int edit_set_str(char **s, const char *to)
{
	char *c = strdup(to);

	if (!c)
		return -1;
	free(*s);
	*s = c;
	return 0;
}

int edit_fresh_name(const struct graft_model *m, struct strmap *made, const char *base,
		    const char *suffix, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s", base, suffix);
	for (int k = 2; skeleton_has_name(m, buf) || graft_model_find_tensor(m, buf) >= 0 ||
			(made && strmap_get(made, buf) >= 0); k++)
		snprintf(buf, size, "%s%s_%d", base, suffix, k);
	return made && strmap_put_copy(made, buf, 1) == -2 ? -1 : 0;
}

int edit_put_constant(struct graft_model *m, struct strmap *made, const char *base,
		      const char *suffix, int dtype, int rank, const int64_t *dims,
		      const void *data, char *name, size_t size, struct graft_err *err)
{
	if (edit_fresh_name(m, made, base, suffix, name, size))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return graft_model_add_tensor(m, name, dtype, rank, dims, data, GRAFT_ROLE_CONSTANT,
				      GRAFT_SOURCE_INITIALIZER, NULL, err);
}

void edit_drop_stale_value_info(Onnx__GraphProto *g)
{
	struct strmap defined;
	size_t w = 0;

	if (graph_defined_init(&defined, g))
		return;
	for (size_t i = 0; i < g->n_value_info; i++) {
		Onnx__ValueInfoProto *vi = g->value_info[i];
		if (vi->name && strmap_get(&defined, vi->name) >= 0)
			g->value_info[w++] = vi;
		else
			protobuf_c_message_free_unpacked(&vi->base, NULL);
	}
	g->n_value_info = w;
	strmap_release_copies(&defined);
}

int graft_model_extract(struct graft_model *m, const char *const *from, size_t n_from,
			const char *const *to, size_t n_to, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	unsigned char *keep;
	struct graft_net *net;
	struct graft_err probe_err;
	const char *batch;
	char *batch_copy = NULL;
	int rc;

	if (!n_to)
		return graft_err_set(err, GRAFT_EINVAL, "no output tensor to keep");
	for (size_t i = 0; i < n_from; i++)
		if (!produced_or_input(g, from[i]))
			return graft_err_set(err, GRAFT_EINVAL, "no tensor '%s' in the graph", from[i]);
	for (size_t i = 0; i < n_to; i++)
		if (!produced_or_input(g, to[i]))
			return graft_err_set(err, GRAFT_EINVAL, "no tensor '%s' in the graph", to[i]);
	if (!(keep = calloc(g->n_node + 1, 1)) || mark_needed(g, from, n_from, to, n_to, keep)) {
		free(keep);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if (engine_probe(&net, m, 0, &probe_err))     /* shapes, before anything is cut */
		net = NULL;
	batch = batch_param(m);
	if (batch && !(batch_copy = strdup(batch))) {
		free(keep);
		graft_net_free(net);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	/* Nodes first: which old inputs stay depends on what the kept nodes read. */
	rc = drop_nodes(m, keep) ? graft_err_set(err, GRAFT_ENOMEM, "out of memory") : 0;
	if (!rc)
		rc = set_outputs(m, net, batch_copy, to, n_to, err);
	if (!rc)
		rc = set_inputs(m, net, batch_copy, from, n_from, err);
	graft_net_free(net);
	free(batch_copy);
	if (!rc) {
		edit_drop_stale_value_info(g);
		rc = edit_drop_unread_initializers(m, err);
	}
	free(keep);
	return rc ? rc : model_refresh_aliases(m, err);
}

/*
 * torch's exporter stores equal initializers once and aliases the others through
 * Identity nodes: a fresh BatchNormalization's running variance (all ones) is an alias of
 * its scale, and every fresh BatchNormalization's bias an alias of the first one's.  In
 * the model that was exported they were separate tensors (weights truly shared are one
 * initializer read directly), and training and freezing must treat them apart.
 */
int graft_model_unalias_all(struct graft_model *m, struct graft_err *err)
{
	int rc;

	for (size_t i = 0; i < m->n_aliases;) {
		const struct alias_rec *a = &m->aliases[i];
		const struct tensor_rec *t = &m->tensors[a->target];
		if (a->role != GRAFT_ROLE_BUFFER && a->role != GRAFT_ROLE_PARAMETER) {
			i++;
			continue;
		}
		/* the alias list is rebuilt: start again from the first */
		if ((rc = graft_model_unalias(m, a->name, t->data, t->nbytes, err)))
			return rc;
		i = 0;
	}
	return 0;
}
