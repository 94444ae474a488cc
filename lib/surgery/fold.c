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

#include "surgery/surgery.h"

/* ---- a pass over the graph -------------------------------------------------------------- */

/*
 * What a pass knows of the main graph, made once, so that each question it asks is a
 * lookup: walking the graph per node took minutes on 20,000 BatchNormalizations.  Nodes
 * a pass removes are only marked gone; they go, with the value_info of the values they
 * computed, at pass_end.  The maps own their names, so nodes may change meanwhile.
 */
struct pass {
	struct graft_model *m;
	struct graph_reads reads;       /* how often each name is read, subgraphs included */
	struct strmap names;            /* every name the graph has -> 1 (graph_defined_init,
					 * and the initializers) */
	struct strmap producer;         /* value -> index of the node computing it; -1 */
	struct strmap dead;             /* values a removed node computed -> 1 */
	unsigned char *gone;            /* by node index */
};

static int pass_name(struct pass *p, const char *name)
{
	return name && *name && strmap_put_copy(&p->names, name, 1) == -2 ? -1 : 0;
}

static void pass_release(struct pass *p)
{
	graph_reads_release(&p->reads);
	strmap_release_copies(&p->names);
	strmap_release_copies(&p->producer);
	strmap_release_copies(&p->dead);
	free(p->gone);
}

static int pass_init(struct pass *p, struct graft_model *m)
{
	const Onnx__GraphProto *g = m->proto->graph;
	int rc = 0;

	memset(p, 0, sizeof(*p));
	p->m = m;
	if (graph_reads_init(&p->reads, g) || graph_defined_init(&p->names, g) ||
	    strmap_init(&p->producer, g->n_node) || strmap_init(&p->dead, 16) ||
	    !(p->gone = calloc(g->n_node + 1, 1))) {
		pass_release(p);
		return -1;
	}
	for (size_t i = 0; i < g->n_initializer && !rc; i++)
		rc = pass_name(p, g->initializer[i]->name);
	for (size_t i = 0; i < g->n_node && !rc; i++)
		for (size_t k = 0; k < g->node[i]->n_output && !rc; k++) {
			const char *out = g->node[i]->output[k];
			/* the first node computing a name is its producer, as graph_producer says */
			if (out && *out && strmap_get(&p->producer, out) < 0 &&
			    strmap_put_copy(&p->producer, out, (long)i) == -2)
				rc = -1;
		}
	if (rc)
		pass_release(p);
	return rc;
}

static size_t reads(const struct pass *p, const char *name)
{
	return graph_reads_count(&p->reads, name);
}

/* The node computing name (not one removed), or -1. */
static long pass_producer(const struct pass *p, const char *name)
{
	long i = name && *name ? strmap_get(&p->producer, name) : -1;
	return i >= 0 && !p->gone[i] ? i : -1;
}

/* Value name is gone: no node computes it, and its value_info goes at pass_end. */
static int pass_kill(struct pass *p, const char *name)
{
	if (!name || !*name)
		return 0;
	return strmap_put_copy(&p->dead, name, 1) == -2 ||
	       strmap_put_copy(&p->producer, name, -1) == -2 ? -1 : 0;
}

/* Node i is removed: what it read is read once less, and what it computed is gone. */
static int pass_remove(struct pass *p, size_t i)
{
	const Onnx__NodeProto *n = p->m->proto->graph->node[i];

	p->gone[i] = 1;
	for (size_t k = 0; k < n->n_input; k++)
		if (n->input[k] && *n->input[k] && graph_reads_add(&p->reads, n->input[k], -1))
			return -1;
	for (size_t k = 0; k < n->n_output; k++)
		if (pass_kill(p, n->output[k]))
			return -1;
	return 0;
}

/*
 * The removed nodes go, with the value_info of the values gone and the stored values of
 * removed Constant nodes (alias targets are indices: model_refresh_aliases is the
 * caller's, once the graph is as it will stay).  Always releases the pass; fails only
 * when memory runs out, leaving the values of removed Constants stored (an error the
 * model is not written after).
 */
static int pass_end(struct pass *p, struct graft_err *err)
{
	struct graft_model *m = p->m;
	Onnx__GraphProto *g = m->proto->graph;
	unsigned char *drop = calloc(m->n_tensors + 1, 1);
	size_t w = 0, n_drop = 0;

	for (size_t i = 0; i < g->n_value_info; i++) {
		Onnx__ValueInfoProto *vi = g->value_info[i];
		if (vi->name && strmap_get(&p->dead, vi->name) >= 0)
			protobuf_c_message_free_unpacked(&vi->base, NULL);
		else
			g->value_info[w++] = vi;
	}
	g->n_value_info = w;
	for (size_t i = 0; drop && i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		long t;
		if (!p->gone[i] || !graph_is_op(n, "Constant") || n->n_output < 1 || !n->output[0])
			continue;
		t = graft_model_find_tensor(m, n->output[0]);
		if (t >= 0 && m->tensors[t].source == GRAFT_SOURCE_CONSTANT)
			n_drop += drop[t] = 1;
	}
	if (n_drop)
		model_drop_tensors(m, drop);
	w = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		if (p->gone[i])
			protobuf_c_message_free_unpacked(&g->node[i]->base, NULL);
		else
			g->node[w++] = g->node[i];
	}
	g->n_node = w;
	pass_release(p);
	if (!drop)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	free(drop);
	return 0;
}

/* Sets input k of node n to name (k == n->n_input appends it), counting the reads. */
static int set_input(struct pass *p, Onnx__NodeProto *n, size_t k, const char *name)
{
	char *copy = strdup(name);

	if (!copy || graph_reads_add(&p->reads, name, 1)) {
		free(copy);
		return -1;
	}
	if (k == n->n_input) {
		char **in = realloc(n->input, (n->n_input + 1) * sizeof(*in));
		if (!in) {
			free(copy);
			return -1;
		}
		n->input = in;
		n->n_input++;
	} else {
		if (n->input[k] && *n->input[k] && graph_reads_add(&p->reads, n->input[k], -1)) {
			free(copy);
			return -1;
		}
		free(n->input[k]);
	}
	n->input[k] = copy;
	return 0;
}

/* A new name, base + "_bnfold" (then ".2", ".3"... when taken), that no stored tensor
 * and no value of the main graph has, nor any subgraph reads; it is the pass's from
 * now on.  free() it. */
static char *fresh_name(struct pass *p, const char *base)
{
	size_t size = strlen(base) + 32;
	char *name = malloc(size);

	if (!name)
		return NULL;
	snprintf(name, size, "%s_bnfold", base);
	for (int k = 2; graft_model_find_tensor(p->m, name) >= 0 ||
			strmap_get(&p->names, name) >= 0 || reads(p, name); k++)
		snprintf(name, size, "%s_bnfold.%d", base, k);
	if (pass_name(p, name)) {
		free(name);
		return NULL;
	}
	return name;
}

/* Marks the Constant nodes and Identity aliases of stored tensors whose outputs nothing
 * reads, from the last node back, so that a chain of them goes in one sweep. */
static int mark_unread(struct pass *p)
{
	const Onnx__GraphProto *g = p->m->proto->graph;
	int changed = 1;

	while (changed) {       /* one sweep but where nodes are not in topological order */
		changed = 0;
		for (size_t i = g->n_node; i-- > 0;) {
			const Onnx__NodeProto *n = g->node[i];
			if (p->gone[i] || (!graph_is_op(n, "Constant") && !graph_is_op(n, "Identity")) ||
			    n->n_output != 1 || !n->output[0] || reads(p, n->output[0]))
				continue;
			/* an Identity only when it is an alias: of a stored tensor, or of one */
			if (graph_is_op(n, "Identity") &&
			    (n->n_input != 1 || model_stored(p->m, n->input[0]) < 0))
				continue;
			if (pass_remove(p, i))
				return -1;
			changed = 1;
		}
	}
	return 0;
}

/*
 * Stored values nobody reads go: Identity aliases of stored tensors and Constant nodes
 * whose outputs are unread (chains of aliases too), then unread initializers with the
 * graph inputs of the same name (which IR versions before 4 pair with them, and which
 * would otherwise become inputs a runtime demands).
 */
int fold_drop_unread(struct graft_model *m, struct graft_err *err)
{
	struct pass p;
	int rc;

	if (pass_init(&p, m))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	rc = mark_unread(&p) ? graft_err_set(err, GRAFT_ENOMEM, "out of memory") : 0;
	if ((rc = pass_end(&p, rc ? NULL : err) ? GRAFT_ENOMEM : rc) ||
	    (rc = model_refresh_aliases(m, err)) ||
	    (rc = edit_drop_unread_initializers(m, err)))
		return rc;
	return model_refresh_aliases(m, err);
}

/* ---- folding ---------------------------------------------------------------------------- */

/* The stored float tensor that name is, directly or through an Identity alias, when it
 * has numel elements; -1 otherwise. */
static long stored_float(const struct graft_model *m, const char *name, uint64_t numel)
{
	long t = model_stored(m, name);

	if (t < 0 || m->tensors[t].dtype != GRAFT_FLOAT || m->tensors[t].numel != numel)
		return -1;
	return t;
}

/* What a foldable BatchNormalization and the node before it read. */
struct fold {
	Onnx__NodeProto *bn, *p;        /* p: the Conv or Gemm */
	long pi;                        /* p's index */
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
static int foldable(const struct pass *ps, size_t i, struct fold *f)
{
	const struct graft_model *m = ps->m;
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
	if (!bn->input[0] || reads(ps, bn->input[0]) != 1 ||
	    (pi = pass_producer(ps, bn->input[0])) < 0)
		return 0;
	f->p = p = g->node[pi];
	f->pi = pi;
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
static int write_input(struct pass *ps, Onnx__NodeProto *p, size_t k, long t,
		       const char *base, int rank, const int64_t *dims, const float *data,
		       size_t nbytes, struct graft_err *err)
{
	struct graft_model *m = ps->m;
	const struct tensor_rec *old = t >= 0 ? &m->tensors[t] : NULL;
	int trainable = old ? old->role != GRAFT_ROLE_PARAMETER || old->trainable : 1;
	size_t index;
	char *name;
	int rc;

	if (old && k < p->n_input && strcmp(p->input[k], old->name) == 0 &&
	    old->nbytes == nbytes && old->rank == rank &&
	    memcmp(old->dims, dims, sizeof(int64_t) * (size_t)rank) == 0 &&
	    reads(ps, old->name) == 1)
		return graft_model_set_tensor_data(m, (size_t)t, data, nbytes, err);
	if (!(name = fresh_name(ps, base)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	rc = model_add_tensor(m, name, GRAFT_FLOAT, rank, dims, data, GRAFT_ROLE_PARAMETER,
			      GRAFT_SOURCE_INITIALIZER, MODEL_ADD_NAME_IS_NEW, &index, err);
	if (!rc)
		rc = graft_model_set_trainable(m, index, trainable, err);
	if (!rc && set_input(ps, p, k, name))
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	free(name);
	return rc;
}

/*
 * W' = W * s per output channel, B' = (beta_gemm * B - mean) * s + beta,
 * s = scale / sqrt(var + eps): conv(X, W') + B' = BN(conv(X, W) + B), and likewise for
 * alpha * A B' + C' (the Gemm's beta becomes 1, since it would scale B').
 */
static int fold_one(struct pass *ps, size_t i, const struct fold *f, struct graft_err *err)
{
	struct graft_model *m = ps->m;
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
	rc = write_input(ps, f->p, 1, f->w, f->p->input[1], wrank, wdims, nw, wbytes, err);
	if (!rc)
		rc = write_input(ps, f->p, 2, f->b,
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
	/* The Conv or Gemm now writes the BN's output; its own output is gone with the BN. */
	char *x = f->p->output[0];
	f->p->output[0] = f->bn->output[0];
	f->bn->output[0] = x;
	if (strmap_put_copy(&ps->producer, f->p->output[0], f->pi) == -2 || pass_remove(ps, i))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
}

int graft_model_fold_bn(struct graft_model *m, size_t *folded, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	struct pass ps;
	struct fold f;
	int rc = 0;

	*folded = 0;
	if (pass_init(&ps, m))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	/* in order, so that a BN after a folded one sees the Conv that now computes its
	 * input, as before */
	for (size_t i = 0; i < g->n_node && !rc; i++) {
		if (!graph_is_op(g->node[i], "BatchNormalization") || !foldable(&ps, i, &f))
			continue;
		if (!(rc = fold_one(&ps, i, &f, err)))
			(*folded)++;
	}
	if (pass_end(&ps, rc ? NULL : err) && !rc)
		rc = GRAFT_ENOMEM;
	return rc ? rc : fold_drop_unread(m, err);
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

/*
 * Dropout nodes go: the readers of the output read the input.  A Dropout whose mask is
 * read stays; one whose output is a graph output or read in a subgraph becomes an
 * Identity.  One sweep, with the readers rewired at the end: a Dropout's own input may be
 * an earlier one's output, which is resolved when its turn comes.
 */
static int mark_dropouts(struct pass *ps, const struct graph_reads *sub,
			 const struct strmap *outputs, struct strmap *to)
{
	Onnx__GraphProto *g = ps->m->proto->graph;

	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		const char *out;
		long r;
		if (!graph_is_op(n, "Dropout") || n->n_input < 1 || n->n_output < 1 || !n->input[0] ||
		    !*n->input[0] || !n->output[0] || !*n->output[0] ||
		    (n->n_output > 1 && n->output[1] && *n->output[1] && reads(ps, n->output[1])))
			continue;
		if ((r = strmap_get(to, n->input[0])) >= 0 &&
		    set_input(ps, n, 0, g->node[r]->input[0]))
			return -1;
		out = n->output[0];
		if (n->n_output > 1 && pass_kill(ps, n->output[1]))
			return -1;      /* the mask */
		if (strmap_get(outputs, out) >= 0 || graph_reads_count(sub, out)) {
			for (size_t k = 1; k < n->n_input; k++)
				if (n->input[k] && *n->input[k] &&
				    graph_reads_add(&ps->reads, n->input[k], -1))
					return -1;
			if (to_identity(n))
				return -1;
			continue;
		}
		if (strmap_put_copy(to, out, (long)i) == -2 || pass_remove(ps, i))
			return -1;
	}
	for (size_t j = 0; j < g->n_node; j++) {
		Onnx__NodeProto *c = g->node[j];
		long r;
		for (size_t k = 0; !ps->gone[j] && k < c->n_input; k++)
			if (c->input[k] && (r = strmap_get(to, c->input[k])) >= 0 &&
			    set_input(ps, c, k, g->node[r]->input[0]))
				return -1;
	}
	return 0;
}

static int drop_dropouts(struct graft_model *m, struct graft_err *err)
{
	const Onnx__GraphProto *g = m->proto->graph;
	struct pass ps;
	struct graph_reads sub;
	struct strmap outputs, to;     /* graph outputs; a removed Dropout's output -> it */
	int rc = 0;

	if (pass_init(&ps, m))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	memset(&outputs, 0, sizeof(outputs));
	memset(&to, 0, sizeof(to));
	if (graph_subgraph_reads_init(&sub, g))
		rc = -1;
	else if (strmap_init(&outputs, g->n_output) || strmap_init(&to, 16))
		rc = -1;
	for (size_t i = 0; i < g->n_output && !rc; i++)
		if (g->output[i]->name && strmap_put_copy(&outputs, g->output[i]->name, 1) == -2)
			rc = -1;
	if (!rc)
		rc = mark_dropouts(&ps, &sub, &outputs, &to);
	graph_reads_release(&sub);
	strmap_release_copies(&outputs);
	strmap_release_copies(&to);
	if (pass_end(&ps, err) || rc)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
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
	return fold_drop_unread(m, err);
}
