/*
 * freeze.c: which parameters train.  Rules apply in the order given, each to the
 * parameters it matches, so that "freeze all, then train fc.*" freezes everything but
 * the classifier; graft-freeze's options and graft-plan --apply's choice are both rules
 * applied here.  A pattern is a shell glob matched against a parameter's name and
 * against the names of the nodes that read it (so a node's name selects its weights).
 * Cuts (graft_model_cuts) split the network in graph order: a parameter lies before a
 * cut when the first node reading it comes no later than the cut's producer.  Only
 * parameters can train: buffers and constants never do.
 */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "surgery/surgery.h"

/* For each tensor of m (by index), the first node reading it, directly or through an
 * Identity alias; the node count when none does.  NULL when out of memory. */
static size_t *first_readers(const struct graft_model *m)
{
	const Onnx__GraphProto *g = m->proto->graph;
	size_t *first = malloc((m->n_tensors + 1) * sizeof(*first));

	if (!first)
		return NULL;
	for (size_t t = 0; t < m->n_tensors; t++)
		first[t] = g->n_node;
	for (size_t i = g->n_node; i-- > 0;) {  /* backwards: the first reader is written last */
		const Onnx__NodeProto *n = g->node[i];
		/* an alias is made by its Identity node and read by the others */
		int identity = graph_is_op(n, "Identity");
		for (size_t k = 0; k < n->n_input; k++) {
			long t = n->input[k] && *n->input[k] ?
				 (identity ? graft_model_find_tensor(m, n->input[k])
					   : model_stored(m, n->input[k])) : -1;
			if (t >= 0)
				first[t] = i;
		}
	}
	return first;
}

/* For a pattern rule: hit[t] set for every tensor t that a node whose name the glob
 * matches reads, in one walk of the graph.  NULL when out of memory. */
static unsigned char *read_by_matching_nodes(const struct graft_model *m, const char *glob)
{
	const Onnx__GraphProto *g = m->proto->graph;
	unsigned char *hit = calloc(m->n_tensors + 1, 1);

	for (size_t i = 0; hit && i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!n->name || !*n->name || fnmatch(glob, n->name, 0) != 0)
			continue;
		for (size_t k = 0; k < n->n_input; k++) {
			long t = n->input[k] ? graft_model_find_tensor(m, n->input[k]) : -1;
			if (t >= 0)
				hit[t] = 1;
		}
	}
	return hit;
}

/* The node after which the last `blocks` blocks begin: the cut at the blocks-th block
 * boundary from the end. */
static size_t last_blocks_node(const struct graft_cut *cuts, size_t n, size_t blocks)
{
	size_t node = 0;

	for (size_t i = n, seen = 0; blocks > 0 && i-- > 0;)
		if (cuts[i].block && ++seen == blocks)
			node = cuts[i].node;
	return node;
}

int graft_model_param_depths(const struct graft_model *m, size_t *depth, size_t *blocks,
			     struct graft_err *err)
{
	struct graft_cut *cuts;
	size_t n_cuts, *first;
	int rc;

	if ((rc = graft_model_cuts(m, &cuts, &n_cuts, err)))
		return rc;
	if (!(first = first_readers(m))) {
		free(cuts);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	/* A tensor lies below a boundary when its first reader comes no later than the
	 * boundary's producer (as last_blocks_node and applies count): its depth is the
	 * number of boundaries whose producer is at or after that node, from a count of
	 * the boundaries produced at each node index (one pass each, for graphs of
	 * 100,000 nodes). */
	size_t n_nodes = m->proto->graph->n_node, total = 0;
	size_t *at_or_after = calloc(n_nodes + 2, sizeof(*at_or_after));
	if (!at_or_after) {
		free(first);
		free(cuts);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n_cuts; i++)
		if (cuts[i].block && cuts[i].node < n_nodes) {
			at_or_after[cuts[i].node]++;
			total++;
		}
	for (size_t k = n_nodes; k-- > 0;)
		at_or_after[k] += at_or_after[k + 1];
	for (size_t t = 0; t < m->n_tensors; t++)
		depth[t] = first[t] < n_nodes ? at_or_after[first[t]] : 0;
	if (blocks)
		*blocks = total;
	free(at_or_after);
	free(first);
	free(cuts);
	return 0;
}

/* What each rule needs before it applies: the node of a cut rule, the nodes a pattern
 * rule's glob selects. */
struct resolved {
	size_t cut_node;
	unsigned char *hit;
};

static int resolve(struct graft_model *m, const struct graft_freeze_rule *rules, size_t n,
		   struct resolved *res, struct graft_err *err)
{
	struct graft_cut *cuts = NULL;
	size_t n_cuts = 0, blocks = 0;
	int rc = 0;

	for (size_t r = 0; r < n && !rc; r++) {
		const struct graft_freeze_rule *ru = &rules[r];
		if (ru->kind == GRAFT_FREEZE_PATTERN) {
			if (!(res[r].hit = read_by_matching_nodes(m, ru->arg)))
				rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			continue;
		}
		if (ru->kind != GRAFT_FREEZE_UNTIL && ru->kind != GRAFT_FREEZE_LAST_BLOCKS)
			continue;
		if (!cuts) {
			if ((rc = graft_model_cuts(m, &cuts, &n_cuts, err)))
				break;
			for (size_t i = 0; i < n_cuts; i++)
				blocks += cuts[i].block;
		}
		if (ru->kind == GRAFT_FREEZE_UNTIL) {
			long c = graft_cut_find(cuts, n_cuts, ru->arg);
			if (c < 0)
				rc = graft_err_set(err, GRAFT_EINVAL, "no cut '%s' (see graft-slice "
						   "--list-cuts)", ru->arg);
			else
				res[r].cut_node = cuts[c].node;
		} else if (ru->count < 0 || (size_t)ru->count > blocks) {
			rc = graft_err_set(err, GRAFT_EINVAL, "--last-blocks %ld: the network has "
					   "%zu block boundaries", ru->count, blocks);
		} else {
			res[r].cut_node = last_blocks_node(cuts, n_cuts, (size_t)ru->count);
		}
	}
	free(cuts);
	return rc;
}

/* Whether rule ru applies to tensor t (name, first read by node first), and the flag it
 * sets. */
static int applies(const struct graft_freeze_rule *ru, const struct resolved *res,
		   size_t t, const char *name, size_t first, int *train)
{
	switch (ru->kind) {
	case GRAFT_FREEZE_ALL:
		*train = ru->train;
		return 1;
	case GRAFT_FREEZE_PATTERN:
		*train = ru->train;
		return fnmatch(ru->arg, name, 0) == 0 || res->hit[t];
	case GRAFT_FREEZE_UNTIL:
		*train = 0;
		return first <= res->cut_node;
	case GRAFT_FREEZE_LAST_BLOCKS:
		*train = ru->count == 0 || first > res->cut_node;
		return 1;
	}
	return 0;
}

int graft_model_freeze(struct graft_model *m, struct graft_freeze_rule *rules, size_t n,
		       size_t *trainable, size_t *params, struct graft_err *err)
{
	struct resolved *res = calloc(n + 1, sizeof(*res));
	size_t *first = NULL, n_train = 0, n_params = 0;
	int rc;

	if (!res)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	/* An alias would share its tensor's flag: torch's equal BatchNormalization biases
	 * in different blocks must freeze apart. */
	if ((rc = graft_model_unalias_all(m, err)) || (rc = resolve(m, rules, n, res, err)))
		goto out;
	if (!(first = first_readers(m))) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t r = 0; r < n; r++)
		rules[r].hits = 0;
	for (size_t i = 0; i < m->n_tensors && !rc; i++) {
		const struct tensor_rec *t = &m->tensors[i];
		int train;
		if (t->role != GRAFT_ROLE_PARAMETER)
			continue;
		for (size_t r = 0; r < n && !rc; r++)
			if (applies(&rules[r], &res[r], i, t->name, first[i], &train)) {
				rc = graft_model_set_trainable(m, i, train, err);
				rules[r].hits++;
			}
		n_params++;
		n_train += m->tensors[i].trainable != 0;
	}
	for (size_t r = 0; r < n && !rc; r++)
		if (rules[r].kind == GRAFT_FREEZE_PATTERN && !rules[r].hits)
			rc = graft_err_set(err, GRAFT_EINVAL, "'%s' matches no parameter", rules[r].arg);
	if (!rc && trainable)
		*trainable = n_train;
	if (!rc && params)
		*params = n_params;
out:
	for (size_t r = 0; r < n; r++)
		free(res[r].hit);
	free(res);
	free(first);
	return rc;
}
