/*
 * head.c: new classifier heads, the first step of most transfer learning: the network's
 * last layer gives way to one with as many outputs as the new task has classes, or the
 * network is cut at an earlier feature map and a head is attached there.
 *
 * Everything is checked and built first (nodes, weights, the shape at a cut, which runs
 * the model once), so that a refusal leaves the model as it was.  Then the old nodes go,
 * the new ones take their place, and removal cascades from the names the old nodes read:
 * a node whose outputs nobody reads any more goes too (a Constant holding a weight, the
 * tail of a network after a cut), and so does an initializer nobody reads, so that the
 * archive carries no dead weights.  Nodes that were dead before are not ours to touch.
 *
 * New weights come from graft's seeded generator (He or Xavier/Glorot), so the same seed
 * gives the same bytes.  Like edit.c, this module builds the few protobuf messages it
 * needs (nodes and an output's type) itself.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surgery/surgery.h"

#define MAX_HEAD_NODES 16       /* pool and flatten, the token's Gather or the masked
				 * mean's 7 nodes, 2 x (MatMul + Add), Relu, Dropout */
#define MAX_HEAD_TENSORS 10     /* 2 x (weight, bias), Dropout's ratio, the token's index
				 * or the masked mean's axes and floor */
#define MAX_DEPTH 64            /* subgraph nesting searched for names in use */

/* ---- reading the graph ---------------------------------------------------------------------- */

static size_t reads(const Onnx__GraphProto *g, const char *name)
{
	return graph_read_count(g, name);
}

static const char *node_label(const Onnx__NodeProto *n)
{
	return n->name && *n->name ? n->name : n->n_output ? n->output[0] : "?";
}

/* The stored tensor name stands for, itself or through an Identity alias; NULL when name
 * is computed. */
static const struct tensor_rec *stored(const struct graft_model *m, const char *name)
{
	long i = model_stored(m, name);

	return i >= 0 ? &m->tensors[i] : NULL;
}

/* ---- a prefix for new names ---------------------------------------------------------------- */

struct prefix_ctx {
	const char *p;
	size_t len;
};

static int has_prefix(const char *name, void *ctx)
{
	const struct prefix_ctx *c = ctx;

	return name && strncmp(name, c->p, c->len) == 0 &&
	       (name[c->len] == 0 || name[c->len] == '.');
}

/* Whether some name of g (subgraphs included) is the prefix or starts with it and a dot. */
static int graph_uses_prefix(const Onnx__GraphProto *g, struct prefix_ctx *c, int depth)
{
	if (depth > MAX_DEPTH)
		return 0;
	for (size_t i = 0; i < g->n_input; i++)
		if (has_prefix(g->input[i]->name, c))
			return 1;
	for (size_t i = 0; i < g->n_output; i++)
		if (has_prefix(g->output[i]->name, c))
			return 1;
	for (size_t i = 0; i < g->n_value_info; i++)
		if (has_prefix(g->value_info[i]->name, c))
			return 1;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (has_prefix(g->initializer[i]->name, c))
			return 1;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (has_prefix(n->name, c))
			return 1;
		for (size_t k = 0; k < n->n_output; k++)
			if (has_prefix(n->output[k], c))
				return 1;
		for (size_t j = 0; j < n->n_attribute; j++) {
			const Onnx__AttributeProto *a = n->attribute[j];
			if (a->g && graph_uses_prefix(a->g, c, depth + 1))
				return 1;
			for (size_t k = 0; k < a->n_graphs; k++)
				if (graph_uses_prefix(a->graphs[k], c, depth + 1))
					return 1;
		}
	}
	return 0;
}

/* "head.K" with the smallest K that no name of the model uses, so that a second head
 * (a model headed twice) gets head.1. */
static void choose_prefix(const struct graft_model *m, char *buf, size_t size)
{
	for (unsigned k = 0;; k++) {
		struct prefix_ctx c = {buf, 0};
		int used;
		snprintf(buf, size, "head.%u", k);
		c.len = strlen(buf);
		used = graph_uses_prefix(m->proto->graph, &c, 0);
		for (size_t i = 0; i < m->n_tensors && !used; i++)
			used = has_prefix(m->tensors[i].name, &c);
		if (!used)
			return;
	}
}

/* ---- the plan: what is replaced, found before anything changes -------------------------- */

struct plan {
	char *input;            /* the value the head reads */
	char *output;           /* the value it computes: the old classifier's name */
	int pool;               /* 1: GlobalAveragePool and Flatten first (a 4-D feature map) */
	int token;              /* 1: the first token's features, Gather(axis 1, 0) first (a
				 * transformer's [CLS] of (N, T, H) hidden states) */
	int flatten;            /* 1: (N, T, H) values flattened to (N, T * H) first */
	int new_output;         /* the head computes a new graph output (output), all the old
				 * outputs go: the head reads an output itself (an encoder's) */
	int matmul;             /* 1: layers as MatMul + Add (W [in, out]), as replaced */
	int conv;               /* 1: a 1x1 Conv (W [out, in, 1, 1]), as replaced: global
				 * pooling follows it (SqueezeNet) */
	int pooled;             /* the walk from the output passed global pooling */
	int64_t in;             /* features the head reads */
	int64_t old_classes;    /* outputs of the classifier replaced; 0 after a cut */
	size_t old[2];          /* the nodes to remove: the classifier, or the output's producer */
	size_t n_old;
	size_t at;              /* default mode: where the new nodes go (the index, before the
				 * removal, of the node computing output) */
	char **changed;         /* values whose shape changes: their value_info goes */
	size_t n_changed;
	int64_t opset;
	char prefix[32];
	char replaced[160];     /* the classifier's node, for the summary */
};

static void plan_release(struct plan *p)
{
	free(p->input);
	free(p->output);
	for (size_t i = 0; i < p->n_changed; i++)
		free(p->changed[i]);
	free(p->changed);
}

static int plan_changed(struct plan *p, const char *name)
{
	char **c = realloc(p->changed, (p->n_changed + 1) * sizeof(*c));

	if (!c)
		return -1;
	p->changed = c;
	if (!(c[p->n_changed] = strdup(name)))
		return -1;
	p->n_changed++;
	return 0;
}

/* Ops between the classifier and the output that keep the classes on the last axis, or
 * (global pooling, and once pooled was passed the Relu before it) on the channel axis of
 * a convolutional classifier's map (SqueezeNet's). */
static int passes_classes(const Onnx__NodeProto *n, int pooled)
{
	return n->n_input >= 1 && n->n_output == 1 &&
	       (graph_is_op(n, "Identity") || graph_is_op(n, "Flatten") || graph_is_op(n, "Softmax") ||
		graph_is_op(n, "LogSoftmax") || graph_is_op(n, "GlobalAveragePool") ||
		graph_is_op(n, "GlobalMaxPool") || (pooled && graph_is_op(n, "Relu")));
}

static int global_pool(const Onnx__NodeProto *n)
{
	return graph_is_op(n, "GlobalAveragePool") || graph_is_op(n, "GlobalMaxPool");
}

/* A 1x1 convolution of stored float weights [K, C, 1, 1], no groups, strides, pads or
 * dilations: a classifier when global pooling follows. */
static int conv_1x1(const struct graft_model *m, const Onnx__NodeProto *n)
{
	const struct tensor_rec *w = n->n_input >= 2 ? stored(m, n->input[1]) : NULL;
	static const char *const attrs[] = {"strides", "dilations", "pads"};

	if (!graph_is_op(n, "Conv") || !w || w->rank != 4 || w->dtype != GRAFT_FLOAT ||
	    w->dims[2] != 1 || w->dims[3] != 1 || graph_attr_int(n, "group", 1) != 1 ||
	    (n->n_input > 2 && *n->input[2] && !stored(m, n->input[2])))
		return 0;
	for (int k = 0; k < 3; k++) {           /* strides and dilations 1, pads 0 */
		const Onnx__AttributeProto *a = graph_attr(n, attrs[k]);
		for (size_t i = 0; a && i < a->n_ints; i++)
			if (a->ints[i] != (k < 2))
				return 0;
	}
	return 1;
}

/* The classifier's weight: stored, float, 2-D. */
static int classifier_weight(const struct graft_model *m, const Onnx__NodeProto *n,
			     const char *w, const struct tensor_rec **out, struct graft_err *err)
{
	const struct tensor_rec *t = stored(m, w);

	if (!t)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "classifier '%s': its weight '%s' is "
				     "computed, not stored", node_label(n), w);
	if (t->rank != 2 || t->dtype != GRAFT_FLOAT)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "classifier '%s': its weight '%s' is "
				     "not a 2-D float tensor", node_label(n), w);
	*out = t;
	return 0;
}

/* A Gemm, or a MatMul whose output only an Add reads, computing name. */
static int find_classifier(const struct graft_model *m, long i, struct plan *p,
			   struct graft_err *err)
{
	const Onnx__GraphProto *g = m->proto->graph;
	const Onnx__NodeProto *n = g->node[i], *mm = NULL;
	const struct tensor_rec *w;
	long k = -1;
	int rc;

	if (p->pooled && conv_1x1(m, n)) {
		w = stored(m, n->input[1]);
		p->in = w->dims[1];
		p->old_classes = w->dims[0];
		p->conv = 1;
		p->old[p->n_old++] = (size_t)i;
		p->input = strdup(n->input[0]);
	} else if (graph_is_op(n, "Gemm") && n->n_input >= 2) {
		int tb = graph_attr_int(n, "transB", 0) != 0;
		if (graph_attr_int(n, "transA", 0))
			return graft_err_set(err, GRAFT_EUNSUPPORTED, "classifier '%s' transposes "
					     "its input (transA)", node_label(n));
		if ((rc = classifier_weight(m, n, n->input[1], &w, err)))
			return rc;
		p->in = w->dims[tb ? 1 : 0];
		p->old_classes = w->dims[tb ? 0 : 1];
		p->old[p->n_old++] = (size_t)i;
		p->input = strdup(n->input[0]);
	} else if (graph_is_op(n, "Add") && n->n_input == 2) {
		/* the other operand must be a bias, not a residual connection */
		for (int s = 0; s < 2 && !mm; s++) {
			k = graph_producer(g, n->input[s]);
			if (k >= 0 && graph_is_op(g->node[k], "MatMul") && g->node[k]->n_input == 2 &&
			    reads(g, n->input[s]) == 1 && stored(m, n->input[1 - s]))
				mm = g->node[k];
		}
	}
	if (!p->n_old && !mm)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "no final classifier: the output "
				     "comes from %s node '%s', not a Gemm, a MatMul and Add, or a "
				     "1x1 Conv and global pooling",
				     n->op_type ? n->op_type : "an untyped", node_label(n));
	if (mm) {
		if ((rc = classifier_weight(m, mm, mm->input[1], &w, err)))
			return rc;
		p->in = w->dims[0];
		p->old_classes = w->dims[1];
		p->matmul = 1;
		p->old[p->n_old++] = (size_t)k;
		p->old[p->n_old++] = (size_t)i;
		p->input = strdup(mm->input[0]);
	}
	snprintf(p->replaced, sizeof(p->replaced), "%s", node_label(mm ? mm : n));
	p->at = (size_t)i;
	return p->input ? 0 : graft_err_set(err, GRAFT_ENOMEM, "out of memory");
}

/* Default mode: the classifier that computes the first output, through ops that keep the
 * classes on the last axis.  Each value on the way must be read by the next step only,
 * since its shape changes. */
static int plan_classifier(const struct graft_model *m, struct plan *p, struct graft_err *err)
{
	const Onnx__GraphProto *g = m->proto->graph;
	const char *name = g->output[0]->name;
	long i = graph_producer(g, name);
	size_t steps = 0;

	for (;;) {
		if (i < 0)
			return graft_err_set(err, GRAFT_EUNSUPPORTED, "no final classifier: "
					     "'%s' is not computed by a node", name);
		if (reads(g, name) != 1)
			return graft_err_set(err, GRAFT_EUNSUPPORTED, "'%s', whose shape the new "
					     "head changes, is also read elsewhere", name);
		if (plan_changed(p, name))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		if (!passes_classes(g->node[i], p->pooled) || ++steps > g->n_node)
			break;
		p->pooled |= global_pool(g->node[i]);
		name = g->node[i]->input[0];
		i = graph_producer(g, name);
	}
	if (!(p->output = strdup(name)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return find_classifier(m, i, p, err);
}

struct depends_ctx {
	const Onnx__GraphProto *g;
	const char *target;
	unsigned char *seen;    /* nodes visited */
	size_t visited;         /* bounds the recursion on absurdly deep graphs */
};

static int depends_step(const char *name, void *ctx)
{
	struct depends_ctx *c = ctx;
	long i;

	if (strcmp(name, c->target) == 0)
		return 1;
	if ((i = graph_producer(c->g, name)) < 0 || c->seen[i] || c->visited > 100000)
		return 0;
	c->seen[i] = 1;
	c->visited++;
	return graph_node_reads(c->g->node[i], depends_step, c);
}

/* 1 when computing name needs target (or is it). */
static int depends_on(const Onnx__GraphProto *g, const char *name, const char *target,
		      struct graft_err *err)
{
	struct depends_ctx c = {g, target, calloc(g->n_node + 1, 1), 0};
	int rc;

	if (!c.seen)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	rc = depends_step(name, &c);
	free(c.seen);
	return rc;
}

/* The dtype and shape of value name in a run at batch 1 on zeros. */
static int infer_shape(const struct graft_model *m, const char *name, int *dtype, int *rank,
		       int64_t *dims, struct graft_err *err)
{
	struct graft_net *net;
	int rc;

	if ((rc = engine_probe(&net, m, 1, err)))
		return rc;
	if ((*dtype = graft_net_value_shape(net, name, rank, dims)) < 0)
		rc = graft_err_set(err, GRAFT_EUNSUPPORTED, "a run gave no shape for '%s'", name);
	graft_net_free(net);
	return rc;
}

/* --at: the head reads value at; the first output's producer (and what only it needed)
 * goes, and the head takes over its name. */
static int plan_cut(const struct graft_model *m, const char *at, int pooled, int flatten,
		    struct plan *p, struct graft_err *err)
{
	const Onnx__GraphProto *g = m->proto->graph;
	const char *out = g->output[0]->name;
	int64_t dims[GRAFT_ARRAY_MAX_RANK];
	long o = graph_producer(g, out);
	int dtype = 0, rank = 0, rc;

	if (stored(m, at))
		return graft_err_set(err, GRAFT_EINVAL, "'%s' is a stored tensor, not a value the "
				     "network computes", at);
	if (graph_producer(g, at) < 0 && !graph_is_input(g, at))
		return graft_err_set(err, GRAFT_EINVAL, "no value named '%s' in the graph", at);
	if (o < 0)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "the output '%s' is not computed by "
				     "a node", out);
	/* at an output: an encoder's hidden states (rank 3, checked below) or its pooled
	 * output (found for a model with no classifier): the head's is a new output, and
	 * the old ones go */
	if (graph_is_output(g, at))
		p->new_output = 1;
	if (!p->new_output && (rc = depends_on(g, at, out, err)))
		return rc < 0 ? rc : graft_err_set(err, GRAFT_EINVAL, "cannot cut at '%s': it is "
						   "the output '%s' or computed from it", at, out);
	for (size_t k = 0; k < g->node[o]->n_output && !p->new_output; k++) {
		const char *x = g->node[o]->output[k];
		if (x && *x && strcmp(x, out) != 0 && reads(g, x))
			return graft_err_set(err, GRAFT_EUNSUPPORTED, "node '%s' computes the "
					     "output '%s' and '%s', which is still read",
					     node_label(g->node[o]), out, x);
	}
	if ((rc = infer_shape(m, at, &dtype, &rank, dims, err)))
		return rc;
	if (dtype != GRAFT_FLOAT)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "'%s' is %s, not float", at,
				     graft_dtype_name(dtype) ? graft_dtype_name(dtype) : "unknown");
	if (rank < 2 || rank > 4)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "'%s' has rank %d: a head attaches "
				     "to (N, C, H, W), (N, T, H) or (N, C) values", at, rank);
	if (p->new_output && rank != 3 && !pooled)
		return graft_err_set(err, GRAFT_EINVAL, "cannot cut at '%s': it is the output '%s' "
				     "or computed from it", at, out);
	p->pool = rank == 4;
	p->flatten = rank == 3 && flatten;
	p->token = rank == 3 && !flatten;
	p->in = p->flatten ? dims[1] * dims[2] : dims[rank == 3 ? 2 : 1];
	if (p->in < 1)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "'%s' has no features", at);
	if (!(p->input = strdup(at)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (p->new_output) {
		char name[64];
		snprintf(name, sizeof(name), "%s.logits", p->prefix);
		if (!(p->output = strdup(graph_producer(g, "logits") < 0 && !graph_is_input(g, "logits")
					  && !stored(m, "logits") ? "logits" : name)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		return 0;
	}
	p->old[p->n_old++] = (size_t)o;
	if (!(p->output = strdup(out)) || plan_changed(p, out))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
}

/*
 * A model with no classifier: where a head goes without --at, its pooled output, the
 * first float output of rank 2 (BERT's pooler_output, a feature extractor's features);
 * NULL when it has none.  Hidden states (rank 3) are not taken unasked: a sequence
 * model's (N, T, C) output, CTC's, is no encoder's.
 */
static const char *encoder_output(const struct graft_model *m)
{
	const Onnx__GraphProto *g = m->proto->graph;
	struct graft_net *net;
	struct graft_err quiet = {0};
	const char *at = NULL;
	int64_t dims[GRAFT_ARRAY_MAX_RANK];
	int rank;

	if (engine_probe(&net, m, 1, &quiet))
		return NULL;
	for (size_t k = 0; k < g->n_output && !at; k++)
		if (graft_net_value_shape(net, g->output[k]->name, &rank, dims) == GRAFT_FLOAT &&
		    rank == 2)
			at = g->output[k]->name;
	graft_net_free(net);
	return at;
}

/* ---- building the head ---------------------------------------------------------------------- */

struct new_tensor {
	char name[96];
	int rank;
	int64_t dims[4];
	float *data;            /* (an int64 tensor's bytes when dtype is GRAFT_INT64) */
	int dtype;              /* 0: float */
	enum graft_role role;
};

struct head {
	Onnx__NodeProto *node[MAX_HEAD_NODES];
	size_t n_nodes;
	struct new_tensor t[MAX_HEAD_TENSORS];
	size_t n_tensors;
	Onnx__ValueInfoProto *output;   /* --at: the new graph output */
};

static void head_release(struct head *h)
{
	for (size_t i = 0; i < h->n_nodes; i++)
		if (h->node[i])
			protobuf_c_message_free_unpacked(&h->node[i]->base, NULL);
	for (size_t i = 0; i < h->n_tensors; i++)
		free(h->t[i].data);
	if (h->output)
		protobuf_c_message_free_unpacked(&h->output->base, NULL);
	memset(h, 0, sizeof(*h));
}

/* Appends a node of op named name (also the name of its one output unless out is set). */
static Onnx__NodeProto *add_node(struct head *h, const char *op, const char *name,
				 const char *const *in, size_t n_in, const char *out)
{
	Onnx__NodeProto *n = skeleton_node_new(op, name, in, n_in, out ? out : name);

	if (n)
		h->node[h->n_nodes++] = n;      /* freed with the head from here on */
	return n;
}

static struct new_tensor *add_tensor(struct head *h, const char *prefix, const char *what,
				     int rank, int64_t d0, int64_t d1, enum graft_role role)
{
	struct new_tensor *t = &h->t[h->n_tensors++];
	uint64_t numel = (uint64_t)(rank > 0 ? d0 : 1) * (uint64_t)(rank > 1 ? d1 : 1);

	snprintf(t->name, sizeof(t->name), "%s.%s", prefix, what);
	t->rank = rank;
	t->dims[0] = d0;
	t->dims[1] = d1;
	t->role = role;
	t->data = calloc((size_t)numel, sizeof(float));
	return t->data ? t : NULL;
}

/* An int64 constant named prefix.what: value, a scalar (rank 0) or [1] (rank 1). */
static struct new_tensor *add_index(struct head *h, const char *prefix, const char *what,
				    int rank, int64_t value)
{
	struct new_tensor *t = &h->t[h->n_tensors++];

	snprintf(t->name, sizeof(t->name), "%s.%s", prefix, what);
	t->rank = rank;
	t->dims[0] = 1;
	t->dtype = GRAFT_INT64;
	t->role = GRAFT_ROLE_CONSTANT;
	if (!(t->data = malloc(sizeof(int64_t))))
		return NULL;
	memcpy(t->data, &value, sizeof(value));
	return t;
}

/* An axis as an op takes it: an attribute before opset 13, an input ([1]) from it. */
static Onnx__NodeProto *axis_node(struct head *h, const struct plan *p, const char *op,
				  const char *name, const char *x, const char *attr, int64_t axis)
{
	Onnx__NodeProto *n;

	if (p->opset < 13) {
		n = add_node(h, op, name, &x, 1, NULL);
		if (n && skeleton_node_attr_ints(n, attr, &axis, 1))
			return NULL;
		return n;
	}
	char what[48];
	snprintf(what, sizeof(what), "%s.axes", name + strlen(p->prefix) + 1);
	struct new_tensor *t = add_index(h, p->prefix, what, 1, axis);
	return t ? add_node(h, op, name, (const char *[]){x, t->name}, 2, NULL) : NULL;
}

/*
 * The mean of x (N, T, H) over the tokens that mask (N, T) marks: sum(x * m) / max(sum
 * m, 1), m the mask as float with a trailing axis.  The names prefix.mean.*; *out the
 * result's.
 */
static int add_masked_mean(struct head *h, const struct plan *p, const char *x,
			   const char *mask, char *out, size_t size)
{
	char m[96], m3[96], xm[96], s[96], c[96], cc[96];
	Onnx__NodeProto *n;

	snprintf(m, sizeof(m), "%s.mean.mask", p->prefix);
	snprintf(m3, sizeof(m3), "%s.mean.mask3", p->prefix);
	snprintf(xm, sizeof(xm), "%s.mean.masked", p->prefix);
	snprintf(s, sizeof(s), "%s.mean.sum", p->prefix);
	snprintf(c, sizeof(c), "%s.mean.count", p->prefix);
	snprintf(cc, sizeof(cc), "%s.mean.count1", p->prefix);
	snprintf(out, size, "%s.mean", p->prefix);
	if (!(n = add_node(h, "Cast", m, &mask, 1, NULL)) ||
	    skeleton_node_attr_int(n, "to", GRAFT_FLOAT) ||
	    !axis_node(h, p, "Unsqueeze", m3, m, "axes", 2) ||
	    !add_node(h, "Mul", xm, (const char *[]){x, m3}, 2, NULL) ||
	    !(n = axis_node(h, p, "ReduceSum", s, xm, "axes", 1)) ||
	    skeleton_node_attr_int(n, "keepdims", 0) ||
	    !(n = axis_node(h, p, "ReduceSum", c, m3, "axes", 1)) ||
	    skeleton_node_attr_int(n, "keepdims", 0))
		return -1;
	/* a sample with no token at all: its sum is 0, divided by 1 */
	if (p->opset < 11) {
		if (!(n = add_node(h, "Clip", cc, (const char *[]){c}, 1, NULL)) ||
		    skeleton_node_attr_float(n, "min", 1.0f))
			return -1;
	} else {
		struct new_tensor *one = add_tensor(h, p->prefix, "mean.floor", 0, 0, 0,
						    GRAFT_ROLE_CONSTANT);
		if (!one)
			return -1;
		one->data[0] = 1.0f;
		if (!add_node(h, "Clip", cc, (const char *[]){c, one->name}, 2, NULL))
			return -1;
	}
	return add_node(h, "Div", out, (const char *[]){s, cc}, 2, NULL) ? 0 : -1;
}

/*
 * A linear layer of in -> out features named prefix.layer: Gemm(x, W [out, in], B [out],
 * transB=1), or MatMul(x, W [in, out]) + Add(B).  W from the generator: He, normal with
 * standard deviation sqrt(2 / in) (torch's kaiming_normal_ for a ReLU network), or
 * Xavier, uniform in +-sqrt(6 / (in + out)) (xavier_uniform_); B zeros.
 */
static int add_linear(struct head *h, const struct plan *p, struct graft_rng *rng,
		      enum graft_head_init init, const char *layer, const char *x, int64_t in,
		      int64_t out, const char *y)
{
	char name[96], wname[32], bname[32], mm[112], add[112];
	struct new_tensor *w, *b;
	Onnx__NodeProto *n;
	double scale = init == GRAFT_HEAD_XAVIER ? sqrt(6.0 / (double)(in + out))
						 : sqrt(2.0 / (double)in);

	snprintf(name, sizeof(name), "%s.%s", p->prefix, layer);
	snprintf(wname, sizeof(wname), "%s.weight", layer);
	snprintf(bname, sizeof(bname), "%s.bias", layer);
	if (!(w = p->matmul ? add_tensor(h, p->prefix, wname, 2, in, out, GRAFT_ROLE_PARAMETER)
			    : add_tensor(h, p->prefix, wname, 2, out, in, GRAFT_ROLE_PARAMETER)) ||
	    !(b = add_tensor(h, p->prefix, bname, 1, out, 0, GRAFT_ROLE_PARAMETER)))
		return -1;
	if (p->conv) {          /* [out, in, 1, 1] */
		w->rank = 4;
		w->dims[2] = w->dims[3] = 1;
	}
	for (uint64_t i = 0; i < (uint64_t)in * (uint64_t)out; i++)
		w->data[i] = (float)(init == GRAFT_HEAD_XAVIER
				     ? (2 * graft_rng_uniform(rng) - 1) * scale
				     : graft_rng_normal(rng) * scale);
	if (p->conv)
		return add_node(h, "Conv", name, (const char *[]){x, w->name, b->name}, 3, y) ? 0 : -1;
	if (!p->matmul) {
		n = add_node(h, "Gemm", name, (const char *[]){x, w->name, b->name}, 3, y);
		return n ? skeleton_node_attr_int(n, "transB", 1) : -1;
	}
	snprintf(mm, sizeof(mm), "%s.matmul", name);
	snprintf(add, sizeof(add), "%s.add", name);
	if (!add_node(h, "MatMul", mm, (const char *[]){x, w->name}, 2, NULL) ||
	    !add_node(h, "Add", add, (const char *[]){mm, b->name}, 2, y))
		return -1;
	return 0;
}

/* Dropout of ratio P on x: an attribute before opset 12, an input (a scalar) since. */
static int add_dropout(struct head *h, const struct plan *p, double ratio, const char *x,
		       char *y, size_t size)
{
	float r = (float)ratio;
	Onnx__NodeProto *n;

	snprintf(y, size, "%s.dropout", p->prefix);
	if (p->opset < 12) {
		n = add_node(h, "Dropout", y, &x, 1, NULL);
		return n ? skeleton_node_attr_float(n, "ratio", r) : -1;
	}
	struct new_tensor *t = add_tensor(h, p->prefix, "dropout.ratio", 0, 0, 0,
					  GRAFT_ROLE_CONSTANT);
	if (!t)
		return -1;
	t->data[0] = r;
	return add_node(h, "Dropout", y, (const char *[]){x, t->name}, 2, NULL) ? 0 : -1;
}

/* The graph output a cut's head computes, named name: float [batch as the old first output
 * declares it, classes]. */
static Onnx__ValueInfoProto *new_output(const Onnx__ValueInfoProto *old, const char *name,
					int64_t classes)
{
	const Onnx__TensorShapeProto *os = old->type && old->type->tensor_type
					   ? old->type->tensor_type->shape : NULL;
	const Onnx__TensorShapeProto__Dimension *d0 = os && os->n_dim >= 1 ? os->dim[0] : NULL;
	int64_t dims[2] = {-1, classes};
	const char *params[2] = {NULL, NULL};

	if (d0 && d0->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
		params[0] = d0->dim_param;
	else if (d0 && d0->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
		dims[0] = d0->dim_value;
	return skeleton_value_info(name, GRAFT_FLOAT, 2, dims, params);
}

/* The head's nodes and tensors, in graph order: [GlobalAveragePool, Flatten,]
 * [Gemm(in -> H), Relu,] [Dropout,] Gemm(-> N), the last computing p->output. */
static int build_head(const struct graft_model *m, const struct graft_head_opts *o,
		      const char *at, const struct plan *p, struct head *h, struct graft_err *err)
{
	char x[96], y[96];
	struct graft_rng rng;
	int64_t in = p->in;

	memset(h, 0, sizeof(*h));
	graft_rng_seed(&rng, o->seed);
	const char *cur = p->input;
	if (p->pool) {
		snprintf(y, sizeof(y), "%s.pool", p->prefix);
		if (!add_node(h, "GlobalAveragePool", y, &cur, 1, NULL))
			goto nomem;
		snprintf(x, sizeof(x), "%s.flatten", p->prefix);
		Onnx__NodeProto *n = add_node(h, "Flatten", x, (const char *[]){y}, 1, NULL);
		if (!n || skeleton_node_attr_int(n, "axis", 1))
			goto nomem;
		cur = x;
	}
	if (p->flatten) {
		snprintf(x, sizeof(x), "%s.flatten", p->prefix);
		Onnx__NodeProto *n = add_node(h, "Flatten", x, &cur, 1, NULL);
		if (!n || skeleton_node_attr_int(n, "axis", 1))
			goto nomem;
		cur = x;
	}
	if (p->token && o->mean_mask) {
		if (add_masked_mean(h, p, cur, o->mean_mask, x, sizeof(x)))
			goto nomem;
		cur = x;
	} else if (p->token) {
		struct new_tensor *t = add_index(h, p->prefix, "token.index", 0, 0);
		snprintf(x, sizeof(x), "%s.token", p->prefix);
		Onnx__NodeProto *n = t ? add_node(h, "Gather", x, (const char *[]){cur, t->name}, 2,
						 NULL) : NULL;
		if (!n || skeleton_node_attr_int(n, "axis", 1))
			goto nomem;
		cur = x;
	}
	if (o->hidden > 0) {
		snprintf(y, sizeof(y), "%s.fc1", p->prefix);
		if (add_linear(h, p, &rng, o->init, "fc1", cur, in, o->hidden, y))
			goto nomem;
		snprintf(x, sizeof(x), "%s.relu", p->prefix);
		if (!add_node(h, "Relu", x, (const char *[]){y}, 1, NULL))
			goto nomem;
		cur = x;
		in = o->hidden;
	}
	if (o->dropout > 0) {
		if (add_dropout(h, p, o->dropout, cur, y, sizeof(y)))
			goto nomem;
		snprintf(x, sizeof(x), "%s", y);
		cur = x;
	}
	if (o->sigmoid)
		snprintf(y, sizeof(y), "%s.logits", p->prefix);
	if (add_linear(h, p, &rng, o->init, o->hidden > 0 ? "fc2" : "fc", cur, in, o->classes,
		       o->sigmoid ? y : p->output))
		goto nomem;
	if (o->sigmoid) {
		snprintf(x, sizeof(x), "%s.sigmoid", p->prefix);
		if (!add_node(h, "Sigmoid", x, (const char *[]){y}, 1, p->output))
			goto nomem;
	}
	if (at && !(h->output = new_output(m->proto->graph->output[0], p->output, o->classes)))
		goto nomem;
	return 0;
nomem:
	head_release(h);
	return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
}

/* ---- changing the model ---------------------------------------------------------------------- */

struct names {
	char **v;
	size_t n, cap;
};

static int names_push(const char *name, void *ctx)
{
	struct names *l = ctx;

	char **v = array_grow(l->v, &l->cap, l->n, sizeof(*v));

	if (!v)
		return GRAFT_ENOMEM;
	l->v = v;
	if (!(l->v[l->n] = strdup(name)))
		return GRAFT_ENOMEM;
	l->n++;
	return 0;
}

static void names_release(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* Removes node i: what it read becomes a candidate for removal, and the stored tensor of
 * a Constant goes with its node. */
static int remove_node(struct graft_model *m, size_t i, struct names *cand,
		       struct graft_head_info *info)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *n = g->node[i];

	if (graph_node_reads(n, names_push, cand))
		return GRAFT_ENOMEM;
	for (size_t k = 0; k < n->n_output; k++) {
		const char *o = n->output[k];
		long t = o && *o ? graft_model_find_tensor(m, o) : -1;
		if (t >= 0 && m->tensors[t].source == GRAFT_SOURCE_CONSTANT) {
			model_drop_tensor(m, (size_t)t);
			info->tensors_removed++;
		}
	}
	protobuf_c_message_free_unpacked(&n->base, NULL);
	memmove(&g->node[i], &g->node[i + 1], (g->n_node - i - 1) * sizeof(g->node[0]));
	g->n_node--;
	return 0;
}

/* Removes what the candidates leave unread: a node none of whose outputs is read, and an
 * initializer (not also a graph input, which a caller may feed).  Removal cascades. */
static int cascade(struct graft_model *m, struct names *cand, struct graft_head_info *info,
		   struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	int rc;

	for (size_t c = 0; c < cand->n; c++) {
		const char *name = cand->v[c];
		long i, t;
		if (reads(g, name))
			continue;
		if ((i = graph_producer(g, name)) >= 0) {
			const Onnx__NodeProto *n = g->node[i];
			int unread = 1;
			for (size_t k = 0; k < n->n_output && unread; k++)
				unread = !n->output[k] || !*n->output[k] || !reads(g, n->output[k]);
			if (!unread)
				continue;
			if (remove_node(m, (size_t)i, cand, info))
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			info->nodes_removed++;
		} else if ((t = graft_model_find_tensor(m, name)) >= 0 &&
			   m->tensors[t].source == GRAFT_SOURCE_INITIALIZER &&
			   (m->proto->ir_version < 4 || !graph_is_input(g, name))) {
			if ((rc = graft_model_remove_tensor(m, (size_t)t, err)))
				return rc;
			info->tensors_removed++;
		}
	}
	return 0;
}

/* value_info of values that are gone, or whose shape the head changed. */
static void drop_value_info(Onnx__GraphProto *g, const struct plan *p)
{
	size_t w = 0;

	for (size_t i = 0; i < g->n_value_info; i++) {
		Onnx__ValueInfoProto *vi = g->value_info[i];
		int keep = vi->name && (graph_producer(g, vi->name) >= 0 || graph_is_input(g, vi->name));
		for (size_t k = 0; k < p->n_changed && keep; k++)
			keep = strcmp(vi->name, p->changed[k]) != 0;
		if (keep)
			g->value_info[w++] = vi;
		else
			protobuf_c_message_free_unpacked(&vi->base, NULL);
	}
	g->n_value_info = w;
}

/* The first output's declared last dim becomes classes. */
static void set_output_classes(Onnx__GraphProto *g, int64_t classes)
{
	Onnx__ValueInfoProto *vi = g->output[0];
	Onnx__TensorShapeProto *sh;
	Onnx__TensorShapeProto__Dimension *d;

	if (!vi->type || vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
	    !(sh = vi->type->tensor_type->shape) || !sh->n_dim)
		return;
	d = sh->dim[sh->n_dim - 1];
	if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
		free(d->dim_param);
	d->dim_param = NULL;
	d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
	d->dim_value = classes;
}

/* Splices the head in and removes what it replaces. */
static int apply(struct graft_model *m, const struct plan *p, struct head *h,
		 struct graft_head_info *info, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto **list;
	struct names cand = {0};
	size_t at = p->at;
	int rc = 0;

	if (!(list = realloc(g->node, (g->n_node + h->n_nodes) * sizeof(*list))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	g->node = list;
	/* the old nodes, the later first so that the earlier index holds; the new ones go
	 * where the classifier's last node was */
	if (p->n_old == 2 && p->old[0] > p->old[1])
		rc = remove_node(m, p->old[0], &cand, info) ||
		     remove_node(m, p->old[1], &cand, info);
	else
		for (size_t k = p->n_old; k-- > 0 && !rc;)
			rc = remove_node(m, p->old[k], &cand, info);
	for (size_t k = 0; k < p->n_old; k++)
		at -= p->old[k] < p->at;
	info->nodes_removed = p->n_old;
	if (h->output) {    /* a cut: the other outputs go, their producers may follow */
		for (size_t k = 0; k < g->n_output && !rc; k++) {
			if (g->output[k]->name)
				rc = names_push(g->output[k]->name, &cand);
			protobuf_c_message_free_unpacked(&g->output[k]->base, NULL);
		}
		g->output[0] = h->output;
		g->n_output = 1;
		h->output = NULL;
		at = g->n_node;
	}
	if (rc) {
		names_release(&cand);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	memmove(&g->node[at + h->n_nodes], &g->node[at], (g->n_node - at) * sizeof(g->node[0]));
	memcpy(&g->node[at], h->node, h->n_nodes * sizeof(h->node[0]));
	g->n_node += h->n_nodes;
	info->nodes_added = h->n_nodes;
	h->n_nodes = 0;
	for (size_t k = 0; k < h->n_tensors && !rc; k++) {
		const struct new_tensor *t = &h->t[k];
		rc = graft_model_add_tensor(m, t->name, t->dtype ? t->dtype : GRAFT_FLOAT, t->rank,
					    t->dims, t->data, t->role, GRAFT_SOURCE_INITIALIZER, NULL,
					    err);
		info->tensors_added += !rc;
	}
	if (!rc)
		rc = cascade(m, &cand, info, err);
	names_release(&cand);
	if (rc)
		return rc;
	drop_value_info(g, p);
	set_output_classes(g, info->classes);
	return model_refresh_aliases(m, err);
}

static int check_opts(const struct graft_head_opts *o, struct graft_err *err)
{
	if (o->classes < 1 || o->classes > (INT64_C(1) << 31))
		return graft_err_set(err, GRAFT_EINVAL, "classes must be in [1, 2^31], not %lld",
				     (long long)o->classes);
	if (o->hidden < 0 || o->hidden > (INT64_C(1) << 31))
		return graft_err_set(err, GRAFT_EINVAL, "hidden must be in [0, 2^31], not %lld",
				     (long long)o->hidden);
	if (!(o->dropout >= 0 && o->dropout < 1))
		return graft_err_set(err, GRAFT_EINVAL, "dropout must be in [0, 1), not %g",
				     o->dropout);
	if (o->flatten && o->mean_mask)
		return graft_err_set(err, GRAFT_EINVAL, "flatten the tokens or take their mean, "
				     "not both");
	if (o->init != GRAFT_HEAD_HE && o->init != GRAFT_HEAD_XAVIER)
		return graft_err_set(err, GRAFT_EINVAL, "unknown initialisation %d", (int)o->init);
	return 0;
}

int graft_head_attach(struct graft_model *m, const struct graft_head_opts *o,
		      struct graft_head_info *info, struct graft_err *err)
{
	struct graft_head_info dummy;
	struct plan p = {0};
	struct head h = {0};
	int rc;

	if (!info)
		info = &dummy;
	memset(info, 0, sizeof(*info));
	if ((rc = check_opts(o, err)))
		return rc;
	if (!m->proto->graph->n_output)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "the model has no outputs");
	p.opset = model_default_opset(m);
	if (p.opset < 7)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "the model's default-domain opset "
				     "is %lld: graft-head needs 7 or newer", (long long)p.opset);
	choose_prefix(m, p.prefix, sizeof(p.prefix));
	const char *at = o->at;
	rc = at ? plan_cut(m, at, 0, o->flatten, &p, err) : plan_classifier(m, &p, err);
	if (rc == GRAFT_EUNSUPPORTED && !at && (at = encoder_output(m))) {
		struct plan fresh = {.opset = p.opset};     /* its pooled output */
		memcpy(fresh.prefix, p.prefix, sizeof(p.prefix));
		plan_release(&p);
		p = fresh;
		rc = plan_cut(m, at, 1, o->flatten, &p, err);
	} else if (rc == GRAFT_EUNSUPPORTED && !at) {
		char msg[sizeof(err->msg)];
		snprintf(msg, sizeof(msg), "%s", err->msg);
		graft_err_set(err, rc, "%.400s (an encoder's hidden states: --at them)", msg);
	}
	if (!rc && o->mean_mask && !p.token)
		rc = graft_err_set(err, GRAFT_EINVAL, "the mean over tokens (--mean) is for (N, T, "
				   "H) values, a transformer's hidden states");
	if (!rc && o->mean_mask && !graph_is_input(m->proto->graph, o->mean_mask))
		rc = graft_err_set(err, GRAFT_EINVAL, "no model input named '%s' to mask the mean "
				   "with", o->mean_mask);
	if (!rc && o->flatten && !p.flatten)
		rc = graft_err_set(err, GRAFT_EINVAL, "flattening (--flatten) is for (N, T, H) "
				   "values: cut at one with --at");
	if (!rc && o->sigmoid && !p.new_output &&
	    strcmp(p.output, m->proto->graph->output[0]->name) != 0)
		rc = graft_err_set(err, GRAFT_EUNSUPPORTED, "the classifier's output '%s' passes "
				   "through other nodes to the graph's output: a sigmoid head "
				   "needs --at", p.output);
	if (!rc && p.in > (INT64_C(1) << 31))
		rc = graft_err_set(err, GRAFT_EUNSUPPORTED, "%lld input features are too many",
				   (long long)p.in);
	if (!rc)
		rc = build_head(m, o, at, &p, &h, err);
	if (!rc) {
		info->in_features = p.in;
		info->classes = o->classes;
		info->old_classes = p.old_classes;
		snprintf(info->prefix, sizeof(info->prefix), "%s", p.prefix);
		snprintf(info->replaced, sizeof(info->replaced), "%s", p.replaced);
		snprintf(info->at, sizeof(info->at), "%s", at ? at : "");
		info->token = p.token ? (o->mean_mask ? 2 : 1) : p.flatten ? 3 : 0;
		snprintf(info->output, sizeof(info->output), "%s", p.output);
		rc = apply(m, &p, &h, info, err);
	}
	head_release(&h);
	plan_release(&p);
	return rc;
}
