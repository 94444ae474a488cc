/*
 * fold.c: what graft-export does to a model for deployment.  --fold-bn folds every
 * inference-mode BatchNormalization that follows a Conv or a Gemm into that node's weight
 * and bias, so that any runtime sees one node instead of two and no statistics are
 * shipped; --strip removes what only training needs (Dropout nodes, graft's own metadata,
 * detached tensors).  Both leave no stored value behind that nothing reads: torch's
 * exporter aliases equal initializers through Identity nodes (a fresh BatchNormalization's
 * running variance is Identity(weight)), and an alias of a folded statistic would
 * otherwise keep the statistic in the model.
 *
 * Reads are counted in subgraphs too (an If branch may read an outer value by name), so
 * a value a subgraph reads is never folded away or renamed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- reading the graph ------------------------------------------------------------------ */

static size_t reads(const struct graft_model *m, const char *name)
{
	return graph_read_count(m->proto->graph, name);
}

/* The stored float tensor that name is, directly or through an Identity alias, when it
 * has numel elements; -1 otherwise. */
static long stored_float(const struct graft_model *m, const char *name, uint64_t numel)
{
	long t = model_stored(m, name);

	if (t < 0 || m->tensors[t].dtype != GRAFT_FLOAT || m->tensors[t].numel != numel)
		return -1;
	return t;
}

/* ---- editing the graph ------------------------------------------------------------------ */

/* Drops the value_info entries of a value that no longer exists. */
static void drop_value_info(Onnx__GraphProto *g, const char *name)
{
	size_t w = 0;

	for (size_t i = 0; i < g->n_value_info; i++) {
		Onnx__ValueInfoProto *vi = g->value_info[i];
		if (vi->name && strcmp(vi->name, name) == 0)
			protobuf_c_message_free_unpacked(&vi->base, NULL);
		else
			g->value_info[w++] = vi;
	}
	g->n_value_info = w;
}

/* Sets input k of node n to name; k == n->n_input appends it. */
static int set_input(Onnx__NodeProto *n, size_t k, const char *name)
{
	char *copy = strdup(name);

	if (!copy)
		return -1;
	if (k == n->n_input) {
		char **in = realloc(n->input, (n->n_input + 1) * sizeof(*in));
		if (!in) {
			free(copy);
			return -1;
		}
		n->input = in;
		n->n_input++;
	} else {
		free(n->input[k]);
	}
	n->input[k] = copy;
	return 0;
}

/* A new name, base + "_bnfold" (then ".2", ".3"... when taken), that no stored tensor
 * and no value of the main graph has.  free() it. */
static char *fresh_name(const struct graft_model *m, const char *base)
{
	size_t size = strlen(base) + 32;
	char *name = malloc(size);

	if (!name)
		return NULL;
	snprintf(name, size, "%s_bnfold", base);
	for (int k = 2; graft_model_find_tensor(m, name) >= 0 || onnx_name_in_graph(m, name) ||
			reads(m, name); k++)
		snprintf(name, size, "%s_bnfold.%d", base, k);
	return name;
}

/*
 * Stored values nobody reads go: Identity aliases of stored tensors and Constant nodes
 * whose outputs are unread (repeatedly, for chains of aliases), then unread initializers
 * with the graph inputs of the same name (which IR versions before 4 pair with them, and
 * which would otherwise become inputs a runtime demands).
 */
static int drop_unread(struct graft_model *m, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	int rc, changed = 1;

	while (changed) {
		changed = 0;
		for (size_t i = g->n_node; i-- > 0;) {
			Onnx__NodeProto *n = g->node[i];
			long t;
			if ((!graph_is_op(n, "Constant") && !graph_is_op(n, "Identity")) ||
			    n->n_output != 1 || !n->output[0] || reads(m, n->output[0]))
				continue;
			/* an Identity only when it is an alias: of a stored tensor, or of one */
			if (graph_is_op(n, "Identity") &&
			    (n->n_input != 1 || model_stored(m, n->input[0]) < 0))
				continue;
			t = graft_model_find_tensor(m, n->output[0]);
			if (t >= 0 && m->tensors[t].source == GRAFT_SOURCE_CONSTANT)
				model_drop_tensor(m, (size_t)t);
			drop_value_info(g, n->output[0]);
			edit_remove_node(g, i);
			changed = 1;
		}
		if (changed && (rc = model_refresh_aliases(m, err)))
			return rc;
	}
	if ((rc = edit_drop_unread_initializers(m, err)))
		return rc;
	return model_refresh_aliases(m, err);
}

/* ---- folding ---------------------------------------------------------------------------- */

/* What a foldable BatchNormalization and the node before it read. */
struct fold {
	Onnx__NodeProto *bn, *p;        /* p: the Conv or Gemm */
	int conv, trans_b;
	int64_t oc;                     /* output channels */
	long w, b;                      /* stored tensors; b -1 when there is no bias */
	long scale, beta, mean, var;
	int b_rank;                     /* the new bias's shape: the old one's, or (oc) */
	int64_t b_dims[2];
	float gemm_beta;                /* Gemm: beta, which multiplies the bias; else 1 */
};

/* The Gemm's bias C, when folding can write a new one: (oc) or (1, oc), one value to
 * broadcast (from opset 7, whose Gemm broadcasts C as a matter of course), or none. */
static int gemm_bias(const struct graft_model *m, struct fold *f)
{
	const Onnx__NodeProto *p = f->p;
	const struct tensor_rec *c;

	f->b_rank = 1;
	f->b_dims[0] = f->oc;
	if (p->n_input < 3 || !p->input[2] || !*p->input[2])
		return 1;
	if ((f->b = stored_float(m, p->input[2], (uint64_t)f->oc)) >= 0) {
		c = &m->tensors[f->b];
		if (c->rank == 1 || (c->rank == 2 && c->dims[0] == 1)) {
			f->b_rank = c->rank;
			memcpy(f->b_dims, c->dims, sizeof(int64_t) * (size_t)c->rank);
			return 1;
		}
		return 0;       /* (oc, 1): a column, which broadcasts along rows */
	}
	if ((f->b = stored_float(m, p->input[2], 1)) >= 0)
		return m->tensors[f->b].rank <= 2 && model_default_opset(m) >= 7;
	return 0;
}

/* Fills f when BN node i can be folded, else returns 0. */
static int foldable(const struct graft_model *m, size_t i, struct fold *f)
{
	const Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *bn = g->node[i], *p;
	const struct tensor_rec *w;
	long pi;

	memset(f, 0, sizeof(*f));
	f->bn = bn;
	f->b = -1;
	f->gemm_beta = 1;
	/* inference mode: training_mode 0 (opset 14+), no statistics outputs, and per
	 * channel (before opset 9, spatial=0 normalised every element on its own) */
	if (bn->n_input != 5 || bn->n_output < 1 || !bn->output[0] || !*bn->output[0] ||
	    graph_attr_int(bn, "training_mode", 0) != 0 ||
	    (model_default_opset(m) < 9 && graph_attr_int(bn, "spatial", 1) != 1))
		return 0;
	for (size_t k = 1; k < bn->n_output; k++)
		if (bn->output[k] && *bn->output[k])
			return 0;
	/* X is the Conv's or Gemm's only output, which nothing else reads */
	if (!bn->input[0] || reads(m, bn->input[0]) != 1 ||
	    (pi = graph_producer(g, bn->input[0])) < 0)
		return 0;
	f->p = p = g->node[pi];
	f->conv = graph_is_op(p, "Conv");
	if ((!f->conv && !graph_is_op(p, "Gemm")) || p->n_output != 1 || p->n_input < 2)
		return 0;
	if ((f->w = model_stored(m, p->input[1])) < 0)
		return 0;
	w = &m->tensors[f->w];
	if (w->dtype != GRAFT_FLOAT || w->numel == 0)
		return 0;
	if (f->conv) {
		if (w->rank < 3)
			return 0;
		f->oc = w->dims[0];     /* (M, C/group, k...) */
		if (p->n_input > 2 && p->input[2] && *p->input[2] &&
		    ((f->b = stored_float(m, p->input[2], (uint64_t)f->oc)) < 0 ||
		     m->tensors[f->b].rank != 1))
			return 0;
		f->b_rank = 1;
		f->b_dims[0] = f->oc;
	} else {
		if (w->rank != 2)
			return 0;
		f->trans_b = graph_attr_int(p, "transB", 0) != 0;
		f->oc = f->trans_b ? w->dims[0] : w->dims[1];
		f->gemm_beta = graph_attr_float(p, "beta", 1);
		if (!gemm_bias(m, f))
			return 0;
	}
	if ((f->scale = stored_float(m, bn->input[1], (uint64_t)f->oc)) < 0 ||
	    (f->beta = stored_float(m, bn->input[2], (uint64_t)f->oc)) < 0 ||
	    (f->mean = stored_float(m, bn->input[3], (uint64_t)f->oc)) < 0 ||
	    (f->var = stored_float(m, bn->input[4], (uint64_t)f->oc)) < 0)
		return 0;
	/* a variance that makes the BN compute NaN is left for the runtime to report */
	double eps = graph_attr_float(bn, "epsilon", 1e-5f);
	const float *var = m->tensors[f->var].data;
	for (int64_t c = 0; c < f->oc; c++)
		if (!(var[c] + eps > 0) || !isfinite(var[c]))
			return 0;
	return 1;
}

/*
 * Gives input k of node p (stored tensor t before, -1 for none) the value data: in place
 * when t is stored under that very name, of that shape, and p alone reads it; else as a
 * new initializer (a parameter, trainable as t was) that p reads instead.
 */
static int write_input(struct graft_model *m, Onnx__NodeProto *p, size_t k, long t,
		       const char *base, int rank, const int64_t *dims, const float *data,
		       size_t nbytes, struct graft_err *err)
{
	const struct tensor_rec *old = t >= 0 ? &m->tensors[t] : NULL;
	int trainable = old ? old->role != GRAFT_ROLE_PARAMETER || old->trainable : 1;
	size_t index;
	char *name;
	int rc;

	if (old && k < p->n_input && strcmp(p->input[k], old->name) == 0 &&
	    old->nbytes == nbytes && old->rank == rank &&
	    memcmp(old->dims, dims, sizeof(int64_t) * (size_t)rank) == 0 &&
	    reads(m, old->name) == 1)
		return graft_model_set_tensor_data(m, (size_t)t, data, nbytes, err);
	if (!(name = fresh_name(m, base)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	rc = graft_model_add_tensor(m, name, GRAFT_FLOAT, rank, dims, data, GRAFT_ROLE_PARAMETER,
				    GRAFT_SOURCE_INITIALIZER, &index, err);
	if (!rc)
		rc = graft_model_set_trainable(m, index, trainable, err);
	if (!rc && set_input(p, k, name))
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	free(name);
	return rc;
}

/*
 * W' = W * s per output channel, B' = (beta_gemm * B - mean) * s + beta,
 * s = scale / sqrt(var + eps): conv(X, W') + B' = BN(conv(X, W) + B), and likewise for
 * alpha * A B' + C' (the Gemm's beta becomes 1, since it would scale B').
 */
static int fold_one(struct graft_model *m, size_t i, const struct fold *f,
		    struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	const struct tensor_rec *w = &m->tensors[f->w];
	const float *wd = w->data, *bd = f->b >= 0 ? m->tensors[f->b].data : NULL;
	const float *scale = m->tensors[f->scale].data, *beta = m->tensors[f->beta].data;
	const float *mean = m->tensors[f->mean].data, *var = m->tensors[f->var].data;
	int bias_one = f->b >= 0 && m->tensors[f->b].numel == 1 && f->oc != 1;
	double eps = graph_attr_float(f->bn, "epsilon", 1e-5f);
	int64_t per = (int64_t)w->numel / f->oc, wdims[GRAFT_MAX_RANK];
	int wrank = w->rank;
	size_t wbytes = w->nbytes, bbytes = (size_t)f->oc * sizeof(float);
	float *nw = malloc(wbytes), *nb = malloc(bbytes);
	Onnx__AttributeProto *a;
	int rc;

	if (!nw || !nb) {
		free(nw);
		free(nb);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	memcpy(wdims, w->dims, sizeof(int64_t) * (size_t)wrank);
	for (int64_t c = 0; c < f->oc; c++) {
		double s = scale[c] / sqrt((double)var[c] + eps);
		double b = bd ? bd[bias_one ? 0 : c] : 0.0;
		for (int64_t k = 0; k < per; k++) {
			/* Conv, and Gemm with transB: channel c is row c; Gemm without: column c */
			int64_t at = f->conv || f->trans_b ? c * per + k : k * f->oc + c;
			nw[at] = (float)(wd[at] * s);
		}
		nb[c] = (float)((f->gemm_beta * b - mean[c]) * s + beta[c]);
	}
	rc = write_input(m, f->p, 1, f->w, f->p->input[1], wrank, wdims, nw, wbytes, err);
	if (!rc)
		rc = write_input(m, f->p, 2, f->b,
				 f->b >= 0 ? f->p->input[2] : f->bn->input[2], f->b_rank,
				 f->b_dims, nb, bbytes, err);
	free(nw);
	free(nb);
	if (rc)
		return rc;
	if ((a = graph_attr(f->p, "beta"))) {
		a->f = 1;
		a->has_f = 1;
	}
	/* The Conv or Gemm now writes the BN's output; its own output is gone. */
	char *x = f->p->output[0];
	f->p->output[0] = f->bn->output[0];
	f->bn->output[0] = x;
	drop_value_info(g, x);
	edit_remove_node(g, i);
	return 0;
}

int graft_model_fold_bn(struct graft_model *m, size_t *folded, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	struct fold f;
	int rc;

	*folded = 0;
	for (size_t i = 0; i < g->n_node;) {
		if (!graph_is_op(g->node[i], "BatchNormalization") || !foldable(m, i, &f)) {
			i++;
			continue;
		}
		/* node i is gone after this: the next one takes its place */
		if ((rc = fold_one(m, i, &f, err)))
			return rc;
		(*folded)++;
	}
	return drop_unread(m, err);
}

/* ---- stripping -------------------------------------------------------------------------- */

/* A Dropout becomes an Identity of its input: a graph output or a value that a subgraph
 * reads keeps its name that way. */
static int to_identity(Onnx__NodeProto *n)
{
	char *op = strdup("Identity");

	if (!op)
		return -1;
	free(n->op_type);
	n->op_type = op;
	for (size_t k = 1; k < n->n_input; k++)
		free(n->input[k]);
	n->n_input = 1;
	for (size_t k = 1; k < n->n_output; k++)
		free(n->output[k]);
	n->n_output = 1;
	for (size_t k = 0; k < n->n_attribute; k++)
		protobuf_c_message_free_unpacked(&n->attribute[k]->base, NULL);
	n->n_attribute = 0;
	return 0;
}

/* Dropout nodes go: the readers of the output read the input.  A Dropout whose mask is
 * read stays. */
static int drop_dropouts(struct graft_model *m, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;

	for (size_t i = 0; i < g->n_node;) {
		Onnx__NodeProto *n = g->node[i];
		const char *in, *out;
		if (!graph_is_op(n, "Dropout") || n->n_input < 1 || n->n_output < 1 || !n->input[0] ||
		    !*n->input[0] || !n->output[0] || !*n->output[0] ||
		    (n->n_output > 1 && n->output[1] && *n->output[1] && reads(m, n->output[1]))) {
			i++;
			continue;
		}
		in = n->input[0];
		out = n->output[0];
		if (n->n_output > 1 && n->output[1] && *n->output[1])
			drop_value_info(g, n->output[1]);
		if (graph_is_output(g, out) || graph_subgraph_read_count(g, out)) {
			if (to_identity(n))
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			i++;
			continue;
		}
		for (size_t j = 0; j < g->n_node; j++)
			for (size_t k = 0; k < g->node[j]->n_input; k++)
				if (g->node[j]->input[k] && strcmp(g->node[j]->input[k], out) == 0 &&
				    set_input(g->node[j], k, in))
					return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		drop_value_info(g, out);
		edit_remove_node(g, i);
	}
	return 0;
}

/* The detached tensors (optimizer state, the training position) go, in one compaction:
 * one removal at a time took minutes for the state of 100,000 parameters. */
static int drop_detached(struct graft_model *m, struct graft_err *err)
{
	unsigned char *drop = calloc(m->n_tensors + 1, 1);
	size_t n = 0;

	if (!drop)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_tensors; i++)
		n += drop[i] = m->tensors[i].source == GRAFT_SOURCE_DETACHED;
	if (n)
		model_drop_tensors(m, drop);
	free(drop);
	/* alias targets are indices, which may have shifted */
	return n ? model_refresh_aliases(m, err) : 0;
}

int graft_model_strip(struct graft_model *m, struct graft_err *err)
{
	const Onnx__ModelProto *p = m->proto;
	int rc;

	if ((rc = drop_dropouts(m, err)))
		return rc;
	for (size_t i = p->n_metadata_props; i-- > 0;) {
		const char *key = p->metadata_props[i]->key;
		if (key && strncmp(key, "graft.", 6) == 0 &&
		    (rc = graft_model_set_metadata(m, key, NULL, err)))
			return rc;
	}
	if ((rc = drop_detached(m, err)))
		return rc;
	return drop_unread(m, err);
}
