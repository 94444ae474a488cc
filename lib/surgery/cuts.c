/*
 * cuts.c: where a network can be cut cleanly.  A cut is a tensor through which the whole
 * computation flows: after its producer runs, it is the only activation still needed
 * (the only one a later node or a graph output reads).  In a chain every tensor is one;
 * in a ResNet, the outputs of the residual blocks are, and nothing inside a block is,
 * since the skip connection keeps the block's input alive.  Shapes come from planning the
 * model at batch 1 (symbolic dims 1).
 */
#include <stdlib.h>
#include <string.h>

#include "surgery/surgery.h"

/* Activations: graph inputs and what nodes compute from them, shapes excepted (Shape and
 * Size read only dims, and what follows from them is constant for a given input shape). */
struct flowing {
	const char *name;
	int activation;
	long last_use;          /* node index of the last reader; n_node for graph outputs */
	long producer;          /* index of the node whose first output it is, or -1 */
};

struct flow {
	struct strmap index;    /* value name -> slot */
	struct flowing *v;      /* (n) */
	size_t n, cap;
};

static long slot(struct flow *f, const char *name)
{
	long i = strmap_get(&f->index, name);

	if (i >= 0)
		return i;
	struct flowing *v = array_grow(f->v, &f->cap, f->n, sizeof(*v));
	if (!v)
		return -1;
	f->v = v;
	f->v[f->n] = (struct flowing){name, 0, -1, -1};
	if (strmap_put(&f->index, name, (long)f->n) == -2)
		return -1;
	return (long)f->n++;
}

static void flow_release(struct flow *f)
{
	strmap_release(&f->index);
	free(f->v);
}

static int trace(const struct graft_model *m, struct flow *f)
{
	const Onnx__GraphProto *g = m->proto->graph;
	long s;

	if (strmap_init(&f->index, 256))
		return -1;
	for (size_t i = 0; i < graft_model_input_count(m); i++) {   /* initializers left out */
		struct graft_value_info vi;
		graft_model_input(m, i, &vi);
		if ((s = slot(f, vi.name)) < 0)
			return -1;
		f->v[s].activation = 1;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		int act = 0, shape_op = n->op_type && (strcmp(n->op_type, "Shape") == 0 ||
						       strcmp(n->op_type, "Size") == 0);
		for (size_t k = 0; k < n->n_input; k++) {
			if (!n->input[k] || !*n->input[k] || (s = slot(f, n->input[k])) < 0)
				continue;
			act |= f->v[s].activation;
			f->v[s].last_use = (long)i;
		}
		for (size_t k = 0; k < n->n_output; k++) {
			if (!n->output[k] || !*n->output[k])
				continue;
			if ((s = slot(f, n->output[k])) < 0)
				return -1;
			f->v[s].activation = act && !shape_op;
			if (k == 0 && f->v[s].producer < 0)
				f->v[s].producer = (long)i;
		}
	}
	for (size_t i = 0; i < g->n_output; i++)
		if (g->output[i]->name && (s = slot(f, g->output[i]->name)) >= 0)
			f->v[s].last_use = (long)g->n_node;
	return 0;
}

/* Parameter elements each node reads (through Identity aliases too). */
static uint64_t node_params(const struct graft_model *m, const Onnx__NodeProto *n)
{
	uint64_t total = 0;

	for (size_t k = 0; k < n->n_input; k++) {
		const char *in = n->input[k];
		long t;
		if (!in || !*in)
			continue;
		if ((t = graft_model_find_tensor(m, in)) < 0)
			for (size_t a = 0; a < m->n_aliases && t < 0; a++)
				if (strcmp(m->aliases[a].name, in) == 0)
					t = (long)m->aliases[a].target;
		if (t >= 0 && m->tensors[t].role == GRAFT_ROLE_PARAMETER)
			total += m->tensors[t].numel;
	}
	return total;
}

/* Whether node i is a bias Add: an Add reading the output of a MatMul (the two make one
 * layer, as in a Linear exported without Gemm). */
static int is_bias_add(const Onnx__GraphProto *g, const struct flow *f, size_t i)
{
	const Onnx__NodeProto *nd = g->node[i];

	if (!nd->op_type || strcmp(nd->op_type, "Add") != 0)
		return 0;
	for (size_t j = 0; j < nd->n_input; j++) {
		long s = nd->input[j] && *nd->input[j] ? strmap_get(&f->index, nd->input[j]) : -1;
		long k = s >= 0 ? f->v[s].producer : -1;
		const char *op = k >= 0 && (size_t)k < i ? g->node[k]->op_type : NULL;
		if (op && strcmp(op, "MatMul") == 0)
			return 1;
	}
	return 0;
}

/* Shapes at batch 1; ranks stay -1 where the model cannot be planned. */
static void cut_shapes(const struct graft_model *m, struct graft_cut *cuts, size_t n)
{
	struct graft_net *net;
	struct graft_err ignored;

	if (engine_probe(&net, m, 0, &ignored))
		net = NULL;
	for (size_t c = 0; net && c < n; c++)
		if (graft_net_value_shape(net, cuts[c].tensor, &cuts[c].rank, cuts[c].dims) < 0)
			cuts[c].rank = -1;
	graft_net_free(net);
}

int graft_model_cuts(const struct graft_model *m, struct graft_cut **out, size_t *n_out,
		     struct graft_err *err)
{
	const Onnx__GraphProto *g = m->proto->graph;
	struct flow f = {0};
	struct graft_cut *cuts = NULL;
	uint64_t *params = calloc(g->n_node + 1, sizeof(*params)), total = 0, before = 0;
	/* Weights before each cut, BatchNormalization's scale and bias left out: they belong
	 * to the Conv or Gemm before them, so conv, bn, relu, pool in a row are one block;
	 * so does the bias of an Add after a MatMul. */
	uint64_t *weights = NULL, weights_before = 0;
	size_t n = 0, cap_cuts = 0, cap_weights = 0, live = 0;

	*out = NULL;
	*n_out = 0;
	if (!params || trace(m, &f)) {
		free(params);
		flow_release(&f);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < g->n_node; i++)
		total += params[i] = node_params(m, g->node[i]);
	for (size_t i = 0; i < g->n_input; i++) {      /* graph inputs in use */
		long s = g->input[i]->name ? strmap_get(&f.index, g->input[i]->name) : -1;
		live += s >= 0 && f.v[s].activation && f.v[s].last_use >= 0;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *nd = g->node[i];
		const char *only = NULL;
		before += params[i];
		if ((!nd->op_type || strcmp(nd->op_type, "BatchNormalization") != 0) &&
		    !(params[i] && is_bias_add(g, &f, i)))
			weights_before += params[i];
		for (size_t k = 0; k < nd->n_input; k++) {
			long s = nd->input[k] && *nd->input[k] ? strmap_get(&f.index, nd->input[k]) : -1;
			/* the last reader retires it (once, however many of its inputs it is) */
			if (s >= 0 && f.v[s].activation && f.v[s].last_use == (long)i) {
				live--;
				f.v[s].last_use = -2;
			}
		}
		for (size_t k = 0; k < nd->n_output; k++) {
			long s = nd->output[k] && *nd->output[k] ? strmap_get(&f.index, nd->output[k])
								  : -1;
			if (s >= 0 && f.v[s].activation && f.v[s].last_use > (long)i) {
				live++;
				only = f.v[s].name;
			}
		}
		if (live == 1 && only && f.v[strmap_get(&f.index, only)].last_use < (long)g->n_node) {
			struct graft_cut *c = array_grow(cuts, &cap_cuts, n, sizeof(*c));
			uint64_t *w = c ? array_grow(weights, &cap_weights, n, sizeof(*w)) : NULL;
			if (c)
				cuts = c;
			if (!w) {
				free(cuts);
				free(weights);
				free(params);
				flow_release(&f);
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			}
			weights = w;
			weights[n] = weights_before;
			memset(&c[n], 0, sizeof(c[n]));
			c[n].index = n;
			c[n].tensor = only;
			c[n].node = i;
			c[n].params_before = before;
			c[n].params_after = total - before;
			c[n].rank = -1;
			n++;
		}
	}
	free(params);
	flow_release(&f);
	/* the last cut too needs weights after it (none when only a Softmax follows) */
	for (size_t i = 0; i < n; i++)
		cuts[i].block = (i + 1 < n ? weights[i + 1] : weights_before) > weights[i];
	free(weights);
	cut_shapes(m, cuts, n);
	*out = cuts;
	*n_out = n;
	return 0;
}

long graft_cut_find(const struct graft_cut *cuts, size_t n, const char *spec)
{
	char *end;
	long i = strtol(spec, &end, 10);

	for (size_t k = 0; k < n; k++)
		if (strcmp(cuts[k].tensor, spec) == 0)
			return (long)k;
	if (*spec && !*end && i >= 0 && (size_t)i < n)
		return i;
	if (*spec == '-' && !*end && -i <= (long)n && i < 0)
		return (long)n + i;             /* -1: the last cut */
	return -1;
}
