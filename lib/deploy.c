/*
 * deploy.c: what graft-export does to a model for deployment.  --fold-bn folds every
 * inference-mode BatchNormalization that follows a Conv or a Gemm into its weights, so
 * that any runtime sees one node instead of two; --strip removes what only training
 * needs (Dropout nodes, graft's own metadata; detached tensors never reach ONNX anyway).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name)
{
	for (size_t i = 0; i < n->n_attribute; i++)
		if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
			return n->attribute[i];
	return NULL;
}

static int64_t attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt)
{
	const Onnx__AttributeProto *a = attr(n, name);
	return a ? a->i : dflt;
}

static float attr_f(const Onnx__NodeProto *n, const char *name, float dflt)
{
	const Onnx__AttributeProto *a = attr(n, name);
	return a ? a->f : dflt;
}

/* The stored float tensor name stands for (through an Identity alias), or -1. */
static long stored_float(const struct graft_model *m, const char *name, uint64_t numel)
{
	long t = graft_model_find_tensor(m, name);

	for (size_t a = 0; t < 0 && a < m->n_aliases; a++)
		if (strcmp(m->aliases[a].name, name) == 0)
			t = (long)m->aliases[a].target;
	if (t < 0 || m->tensors[t].dtype != GRAFT_FLOAT || m->tensors[t].numel != numel ||
	    m->tensors[t].source == GRAFT_SOURCE_DETACHED)
		return -1;
	return t;
}

static size_t readers(const Onnx__GraphProto *g, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_input; k++)
			n += g->node[i]->input[k] && strcmp(g->node[i]->input[k], name) == 0;
	for (size_t i = 0; i < g->n_output; i++)
		n += strcmp(g->output[i]->name, name) == 0;
	return n;
}

static long producer(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++)
			if (g->node[i]->output[k] && strcmp(g->node[i]->output[k], name) == 0)
				return (long)i;
	return -1;
}

/* A fresh name: base + suffix, with a counter if taken. */
static void fresh_name(const struct graft_model *m, const char *base, const char *suffix,
		       char *out, size_t size)
{
	snprintf(out, size, "%s%s", base, suffix);
	for (int k = 1; graft_model_find_tensor(m, out) >= 0 || onnx_name_in_graph(m, out); k++)
		snprintf(out, size, "%s%s.%d", base, suffix, k);
}

/* Appends input name to node n. */
static int add_input(Onnx__NodeProto *n, const char *name)
{
	char **in = realloc(n->input, (n->n_input + 1) * sizeof(*in));

	if (!in)
		return -1;
	n->input = in;
	if (!(in[n->n_input] = strdup(name)))
		return -1;
	n->n_input++;
	return 0;
}

/*
 * Folds BN node i into the Conv or Gemm before it, when it qualifies: inference mode,
 * its X read by it alone, weights and statistics stored floats, a Gemm with alpha 1,
 * beta 1 and a per-output bias.  W' = W * s per output channel, B' = (B - mean) * s +
 * beta, s = scale / sqrt(var + eps).  Returns 1 when folded, 0 when left, <0 on error.
 */
static int fold_one(struct graft_model *m, size_t i, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *bn = g->node[i], *p;
	long pi, tw, tb = -1, ts, tbeta, tmean, tvar;
	int conv, trans_b = 0;
	int64_t oc, per;

	if (bn->n_input != 5 || bn->n_output < 1 || attr_i(bn, "training_mode", 0) ||
	    attr_i(bn, "spatial", 1) != 1 || readers(g, bn->input[0]) != 1)
		return 0;
	for (size_t k = 1; k < bn->n_output; k++)
		if (bn->output[k] && *bn->output[k])
			return 0;
	if ((pi = producer(g, bn->input[0])) < 0)
		return 0;
	p = g->node[pi];
	conv = strcmp(p->op_type, "Conv") == 0;
	if (!conv && strcmp(p->op_type, "Gemm") != 0)
		return 0;
	if (p->n_input < 2 || (tw = graft_model_find_tensor(m, p->input[1])) < 0 ||
	    m->tensors[tw].dtype != GRAFT_FLOAT || m->tensors[tw].rank < 2)
		return 0;
	const struct tensor_rec *w = &m->tensors[tw];
	if (conv) {
		oc = w->dims[0];
	} else {
		if (attr_f(p, "alpha", 1) != 1 || attr_f(p, "beta", 1) != 1 || w->rank != 2)
			return 0;
		trans_b = attr_i(p, "transB", 0) != 0;
		oc = trans_b ? w->dims[0] : w->dims[1];
	}
	per = (int64_t)w->numel / oc;
	if (p->n_input > 2 && p->input[2] && *p->input[2] &&
	    (tb = stored_float(m, p->input[2], (uint64_t)oc)) < 0)
		return 0;
	if ((ts = stored_float(m, bn->input[1], (uint64_t)oc)) < 0 ||
	    (tbeta = stored_float(m, bn->input[2], (uint64_t)oc)) < 0 ||
	    (tmean = stored_float(m, bn->input[3], (uint64_t)oc)) < 0 ||
	    (tvar = stored_float(m, bn->input[4], (uint64_t)oc)) < 0)
		return 0;

	float *nw = malloc(w->nbytes), *nb = malloc((size_t)oc * sizeof(float));
	const float *wd = w->data, *bd = tb >= 0 ? m->tensors[tb].data : NULL;
	const float *scale = m->tensors[ts].data, *beta = m->tensors[tbeta].data;
	const float *mean = m->tensors[tmean].data, *var = m->tensors[tvar].data;
	double eps = attr_f(bn, "epsilon", 1e-5f);
	if (!nw || !nb) {
		free(nw);
		free(nb);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (int64_t c = 0; c < oc; c++) {
		double s = scale[c] / sqrt((double)var[c] + eps);
		for (int64_t k = 0; k < per; k++) {
			/* Conv and Gemm with transB: channel c is row c; Gemm without: column c */
			int64_t at = conv || trans_b ? c * per + k : k * oc + c;
			nw[at] = (float)(wd[at] * s);
		}
		nb[c] = (float)(((bd ? bd[c] : 0.0) - mean[c]) * s + beta[c]);
	}
	/* New tensors under fresh names: the old ones may have other readers, and
	 * initializers nothing reads any more are dropped afterwards. */
	char wname[512], bname[512];
	int64_t bdim = oc;
	size_t wi;
	int rc;
	fresh_name(m, p->input[1], "_bnfold", wname, sizeof(wname));
	fresh_name(m, bn->output[0], "_bias", bname, sizeof(bname));
	rc = graft_model_add_tensor(m, wname, GRAFT_FLOAT, w->rank, w->dims, nw,
				    GRAFT_ROLE_PARAMETER, GRAFT_SOURCE_INITIALIZER, &wi, err);
	if (!rc)
		rc = graft_model_add_tensor(m, bname, GRAFT_FLOAT, 1, &bdim, nb,
					    GRAFT_ROLE_PARAMETER, GRAFT_SOURCE_INITIALIZER, NULL, err);
	free(nw);
	free(nb);
	if (rc)
		return rc;
	free(p->input[1]);
	if (!(p->input[1] = strdup(wname)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (p->n_input > 2) {
		free(p->input[2]);
		if (!(p->input[2] = strdup(bname)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	} else if (add_input(p, bname)) {
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	/* The Conv/Gemm now writes the BN's output. */
	char *out = bn->output[0];
	bn->output[0] = p->output[0];
	p->output[0] = out;
	edit_remove_node(g, i);
	return 1;
}

int graft_model_fold_bn(struct graft_model *m, size_t *folded, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	int rc;

	*folded = 0;
	for (size_t i = 0; i < g->n_node;) {
		if (!g->node[i]->op_type || strcmp(g->node[i]->op_type, "BatchNormalization") != 0) {
			i++;
			continue;
		}
		if ((rc = fold_one(m, i, err)) < 0)
			return rc;
		if (rc == 1)
			(*folded)++;    /* node i is gone: the next one took its place */
		else
			i++;
	}
	if ((rc = edit_drop_unread_initializers(m, err)))
		return rc;
	return model_refresh_aliases(m, err);
}

/* Dropout nodes go (readers read the input); an Identity stays where the Dropout made a
 * graph output. */
static int drop_dropouts(struct graft_model *m, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;

	for (size_t i = 0; i < g->n_node;) {
		Onnx__NodeProto *n = g->node[i];
		const char *in, *out;
		int is_output = 0;
		if (!n->op_type || strcmp(n->op_type, "Dropout") != 0 || n->n_input < 1 ||
		    n->n_output < 1) {
			i++;
			continue;
		}
		in = n->input[0];
		out = n->output[0];
		for (size_t k = 0; k < g->n_output; k++)
			is_output |= strcmp(g->output[k]->name, out) == 0;
		if (n->n_output > 1 && n->output[1] && *n->output[1] && readers(g, n->output[1])) {
			i++;            /* its mask is used: keep it */
			continue;
		}
		if (is_output) {
			/* an Identity producing the same output */
			free(n->op_type);
			if (!(n->op_type = strdup("Identity")))
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			for (size_t k = 1; k < n->n_input; k++)
				free(n->input[k]);
			n->n_input = 1;
			for (size_t k = 1; k < n->n_output; k++)
				free(n->output[k]);
			n->n_output = 1;
			for (size_t k = 0; k < n->n_attribute; k++)
				protobuf_c_message_free_unpacked(&n->attribute[k]->base, NULL);
			n->n_attribute = 0;
			i++;
			continue;
		}
		for (size_t j = 0; j < g->n_node; j++)
			for (size_t k = 0; k < g->node[j]->n_input; k++)
				if (g->node[j]->input[k] && strcmp(g->node[j]->input[k], out) == 0) {
					char *copy = strdup(in);
					if (!copy)
						return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
					free(g->node[j]->input[k]);
					g->node[j]->input[k] = copy;
				}
		edit_remove_node(g, i);
	}
	return 0;
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
	if ((rc = edit_drop_unread_initializers(m, err)))
		return rc;
	return model_refresh_aliases(m, err);
}
