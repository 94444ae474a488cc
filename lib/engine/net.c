/*
 * net.c: the executor.  Compiles a model's main graph into nodes over values, plans it
 * for a set of input shapes (shape inference, constant folding, buffers), and runs it.
 * The contract with the kernels is lib/engine/ops/ops.h.
 *
 * Planning happens again only when input shapes change.  Values computed at plan time
 * (initializers, Constant nodes, anything computed only from those or from shapes) are
 * never recomputed; a run executes just the nodes that depend on the inputs' data.
 */
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "format/format.h"     /* onnx_tensor_decode */
#include "engine/ops/dnnl_util.h"

/* ---- building -------------------------------------------------------------------------- */

/* A constant whose bytes the model stores: the value borrows them. */
static void borrow_tensor(struct value *v, const struct tensor_rec *t)
{
	v->dtype = t->dtype;
	v->rank = t->rank;
	memcpy(v->dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
	v->data = t->data;
	v->nbytes = t->nbytes;
	v->flags |= VALUE_CONST | VALUE_BORROWED;
}

static int decode_into(struct value *v, const Onnx__TensorProto *tp, struct graft_err *err)
{
	struct graft_array a;
	int rc = onnx_tensor_decode(tp, &a, err);

	if (rc)
		return graft_err_prefix(err, v->name);
	v->dtype = a.dtype;
	v->rank = a.rank;
	memcpy(v->dims, a.dims, sizeof(a.dims[0]) * (size_t)a.rank);
	v->data = a.data;
	v->nbytes = a.nbytes;
	v->flags |= VALUE_CONST;
	return 0;
}

static int is_default_domain(const char *d)
{
	return !d || !*d || strcmp(d, "ai.onnx") == 0;
}

static int add_constants(struct graft_net *net, struct graft_err *err)
{
	const struct graft_model *m = net->model;
	const Onnx__GraphProto *g = m->proto->graph;
	struct value *v;
	int rc;

	for (size_t i = 0; i < m->n_tensors; i++) {
		if (m->tensors[i].source == GRAFT_SOURCE_DETACHED)
			continue;       /* not part of the graph (datasets, training state) */
		if (!(v = net_value_get_or_add(net, m->tensors[i].name, err)))
			return err->code;
		borrow_tensor(v, &m->tensors[i]);
	}
	/* Initializers that stayed in the skeleton (unusual encodings) are decoded. */
	for (size_t i = 0; i < g->n_initializer; i++) {
		const Onnx__TensorProto *tp = g->initializer[i];
		if (!tp->name || strmap_get(&net->by_name, tp->name) >= 0)
			continue;
		if (!(v = net_value_get_or_add(net, tp->name, err)))
			return err->code;
		if ((rc = decode_into(v, tp, err)))
			return rc;
	}
	return 0;
}

/* Decodes node n's "value" tensor attribute into n->value, if it has one. */
static int decode_value_attribute(struct node *n, struct graft_err *err)
{
	const Onnx__NodeProto *p = n->proto;

	for (size_t i = 0; i < p->n_attribute; i++) {
		const Onnx__AttributeProto *a = p->attribute[i];
		if (!a->name || strcmp(a->name, "value") != 0 || !a->t)
			continue;
		if (onnx_tensor_decode(a->t, &n->value, err))
			return graft_err_prefix(err, p->name && *p->name ? p->name
						: p->n_output ? p->output[0] : "?");
		return 0;
	}
	return 0;
}

static int add_nodes(struct graft_net *net, struct graft_err *err)
{
	const Onnx__GraphProto *g = net->model->proto->graph;
	int64_t opset = proto_default_opset(net->model->proto);
	int rc;

	if (!(net->nodes = calloc(g->n_node + 1, sizeof(*net->nodes))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *p = g->node[i];
		const char *op = p->op_type ? p->op_type : "";

		/* A Constant whose value the model stores: add_constants made its output a
		 * borrowed constant already. */
		if (strcmp(op, "Constant") == 0 && is_default_domain(p->domain) &&
		    p->n_output == 1 && p->output[0] &&
		    graft_model_find_tensor(net->model, p->output[0]) >= 0)
			continue;
		struct node *n = &net->nodes[net->n_nodes++];

		n->proto = p;
		if ((rc = decode_value_attribute(n, err)))
			return rc;
		n->counters = &net->counters;
		n->wisdom = net->opts.wisdom;
		n->opset = opset;
		n->op = is_default_domain(p->domain) ? ops_find(op) : NULL;
		n->blocked = n->op ? ops_find_blocked(op) : NULL;
		if (!n->op)
			return graft_err_set(err, GRAFT_EUNSUPPORTED,
					     "node '%s' (op %s%s%s) is not supported",
					     p->name && *p->name ? p->name
						     : (p->n_output ? p->output[0] : "?"),
					     op, is_default_domain(p->domain) ? "" : ", domain ",
					     is_default_domain(p->domain) ? "" : p->domain);
		if (opset < 1)
			return graft_err_set(err, GRAFT_EFORMAT, "node '%s' (op %s): the model "
					     "imports no opset of the default domain",
					     p->name && *p->name ? p->name
						     : (p->n_output ? p->output[0] : "?"), op);
		n->n_in = p->n_input;
		n->n_out = p->n_output;
		n->in = calloc(n->n_in + 1, sizeof(*n->in));
		n->out = calloc(n->n_out + 1, sizeof(*n->out));
		if (!n->in || !n->out)
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		for (size_t k = 0; k < n->n_in; k++)
			if (p->input[k] && *p->input[k]) {
				long idx = strmap_get(&net->by_name, p->input[k]);
				if (idx < 0)
					return graft_err_set(err, GRAFT_EFORMAT,
							     "node '%s' (%s): input '%s' is not produced "
							     "before it", p->name ? p->name : "?", op,
							     p->input[k]);
				n->in[k] = net->values[idx];
			}
		for (size_t k = 0; k < n->n_out; k++)
			if (p->output[k] && *p->output[k]) {
				if (strmap_get(&net->by_name, p->output[k]) >= 0)
					return graft_err_set(err, GRAFT_EFORMAT,
							     "value '%s' is produced twice",
							     p->output[k]);
				if (!(n->out[k] = net_value_get_or_add(net, p->output[k], err)))
					return err->code;
			}
	}
	return 0;
}

static int add_inputs_outputs(struct graft_net *net, struct graft_err *err)
{
	const Onnx__GraphProto *g = net->model->proto->graph;

	net->inputs = calloc(g->n_input + 1, sizeof(*net->inputs));
	net->input_info = calloc(g->n_input + 1, sizeof(*net->input_info));
	net->outputs = calloc(g->n_output + 1, sizeof(*net->outputs));
	net->planned_shape = calloc(g->n_input + 1, sizeof(*net->planned_shape));
	net->planned_bytes = calloc(g->n_input + 1, sizeof(*net->planned_bytes));
	if (!net->inputs || !net->input_info || !net->outputs || !net->planned_shape ||
	    !net->planned_bytes)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n_input; i++) {
		const char *name = g->input[i]->name;
		struct value *v;
		if (!name || strmap_get(&net->by_name, name) >= 0)
			continue;       /* an initializer listed as an input (IR < 4) */
		if (!(v = net_value_get_or_add(net, name, err)))
			return err->code;
		v->flags |= VALUE_INPUT;
		net->input_info[net->n_inputs] = g->input[i];
		net->inputs[net->n_inputs++] = v;
	}
	return 0;
}

static int bind_outputs(struct graft_net *net, struct graft_err *err)
{
	const Onnx__GraphProto *g = net->model->proto->graph;

	for (size_t i = 0; i < g->n_output; i++) {
		long idx = g->output[i]->name ? strmap_get(&net->by_name, g->output[i]->name) : -1;
		if (idx < 0)
			return graft_err_set(err, GRAFT_EFORMAT, "graph output '%s' is never produced",
					     g->output[i]->name ? g->output[i]->name : "?");
		net->values[idx]->flags |= VALUE_OUTPUT;
		net->outputs[net->n_outputs++] = net->values[idx];
	}
	return 0;
}

/*
 * Marks the graph inputs whose data some infer reads (a shape or axes given as an input,
 * maybe through a Cast or a Concat): walking backwards, a node whose output is needed at
 * plan time needs all its inputs then too, except Shape and Size, which read only dims.
 */
static void mark_plan_inputs(struct graft_net *net)
{
	for (size_t i = net->n_nodes; i-- > 0;) {
		struct node *n = &net->nodes[i];
		int needed = 0;

		if (strcmp(n->op->name, "Shape") == 0 || strcmp(n->op->name, "Size") == 0)
			continue;
		for (size_t k = 0; k < n->n_out; k++)
			needed |= n->out[k] && (n->out[k]->flags & VALUE_PLAN);
		for (size_t k = 0; k < n->n_in; k++)
			if (n->in[k] && (needed || (k < 32 && (n->op->plan_inputs >> k & 1))))
				n->in[k]->flags |= VALUE_PLAN;
	}
}

/* ---- inference-time fusion ----------------------------------------------------------- */

/* How many node inputs (and graph outputs) read each value. */
static size_t *count_uses(const struct graft_net *net)
{
	size_t *uses = calloc(net->n_values + 1, sizeof(*uses));

	if (!uses)
		return NULL;
	for (size_t i = 0; i < net->n_nodes; i++) {
		const struct node *n = &net->nodes[i];
		if (n->fused_away)
			continue;
		for (size_t k = 0; k < n->n_in; k++)
			if (n->in[k])
				uses[strmap_get(&net->by_name, n->in[k]->name)]++;
	}
	for (size_t i = 0; i < net->n_outputs; i++)
		uses[strmap_get(&net->by_name, net->outputs[i]->name)]++;
	return uses;
}

/* What a fusion pass knows of the graph, made once per pass (one sweep each, so that
 * passes stay linear in the nodes): how often each value is read, and which node that
 * is not fused away writes it.  Fusions keep prod up to date as outputs move. */
struct fusing {
	size_t *uses;           /* by value index */
	struct node **prod;     /* by value index; NULL: an input, a constant */
	size_t n;               /* values when the pass began (fusions add constants) */
};

static int fusing_init(struct fusing *f, const struct graft_net *net)
{
	f->n = net->n_values;
	f->uses = count_uses(net);
	f->prod = calloc(f->n + 1, sizeof(*f->prod));
	if (!f->uses || !f->prod) {
		free(f->uses);
		free(f->prod);
		return -1;
	}
	for (size_t i = 0; i < net->n_nodes; i++) {
		struct node *n = &net->nodes[i];
		for (size_t k = 0; k < n->n_out && !n->fused_away; k++)
			if (n->out[k])
				f->prod[strmap_get(&net->by_name, n->out[k]->name)] = n;
	}
	return 0;
}

static void fusing_release(struct fusing *f)
{
	free(f->uses);
	free(f->prod);
}

static size_t fusing_index(const struct graft_net *net, const struct fusing *f,
			   const struct value *v)
{
	long i = strmap_get(&net->by_name, v->name);
	return i < 0 || (size_t)i >= f->n ? f->n : (size_t)i;    /* f->n: unknown */
}

static struct node *producer(const struct graft_net *net, const struct fusing *f,
			     const struct value *v)
{
	struct node *p = f->prod[fusing_index(net, f, v)];
	return p && !p->fused_away ? p : NULL;
}

static size_t uses_of(const struct graft_net *net, const struct fusing *f,
		      const struct value *v)
{
	size_t i = fusing_index(net, f, v);
	return i < f->n ? f->uses[i] : 0;
}

/* Node p now writes v (a fusion moved it there). */
static void set_producer(const struct graft_net *net, struct fusing *f, const struct value *v,
			 struct node *p)
{
	size_t i = fusing_index(net, f, v);
	if (i < f->n)
		f->prod[i] = p;
}

static int is_op(const struct node *n, const char *op)
{
	return n && !n->fused_away && strcmp(n->op->name, op) == 0;
}

static int all_const(const struct node *n, size_t from, size_t to)
{
	for (size_t k = from; k < to && k < n->n_in; k++)
		if (!n->in[k] || !(n->in[k]->flags & VALUE_CONST) || n->in[k]->dtype != GRAFT_FLOAT)
			return 0;
	return 1;
}

/* A new float constant owned by the net (not a model tensor). */
static struct value *new_const(struct graft_net *net, const char *base, const char *suffix,
			       int rank, const int64_t *dims, struct graft_err *err)
{
	char name[512];
	struct value *v;
	uint64_t numel = 1;

	snprintf(name, sizeof(name), "%s%s", base, suffix);
	if (strmap_get(&net->by_name, name) >= 0)
		return graft_err_set(err, GRAFT_EINVAL, "fusion name clash '%s'", name), NULL;
	if (!(v = net_value_get_or_add(net, name, err)))
		return NULL;
	value_set(v, GRAFT_FLOAT, rank, dims);
	for (int i = 0; i < rank; i++)
		numel *= (uint64_t)dims[i];
	v->nbytes = (size_t)numel * sizeof(float);
	v->flags |= VALUE_CONST;
	if (!(v->data = calloc(1, v->nbytes ? v->nbytes : 1)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory"), NULL;
	return v;
}

/*
 * Conv -> BatchNormalization (inference) becomes one Conv with scaled weights:
 * W' = W * s, B' = (B - mean) * s + beta with s = scale / sqrt(var + eps), per output
 * channel.  The model is untouched: W' and B' belong to the net.
 */
static int fold_batchnorm(struct graft_net *net, struct node *bn, struct fusing *fu,
			  struct graft_err *err)
{
	struct node *conv = producer(net, fu, bn->in[0]);
	struct value *w, *b = NULL, *nw, *nb;

	if (!is_op(conv, "Conv") || uses_of(net, fu, bn->in[0]) != 1 ||
	    bn->n_in != 5 || !all_const(bn, 1, 5) || !all_const(conv, 1, conv->n_in) ||
	    conv->n_in < 2 || bn->n_out < 1 || !bn->out[0] || attr_int(bn, "training_mode", 0) ||
	    (bn->opset < 9 && attr_int(bn, "spatial", 1) != 1))
		return 0;
	for (size_t k = 1; k < bn->n_out; k++)
		if (bn->out[k])
			return 0;
	w = conv->in[1];
	if (conv->n_in > 2)
		b = conv->in[2];
	int64_t oc = w->dims[0];
	uint64_t per = value_numel(w) / (uint64_t)(oc ? oc : 1);
	for (int k = 1; k < 5; k++)
		if (value_numel(bn->in[k]) != (uint64_t)oc)
			return 0;
	if (b && value_numel(b) != (uint64_t)oc)
		return 0;
	if (!(nw = new_const(net, w->name, "#bnfold", w->rank, w->dims, err)) ||
	    !(nb = new_const(net, bn->out[0]->name, "#bnbias", 1, &oc, err)))
		return err->code;
	const float *scale = bn->in[1]->data, *beta = bn->in[2]->data, *mean = bn->in[3]->data,
		    *var = bn->in[4]->data, *wd = w->data, *bd = b ? b->data : NULL;
	float *nwd = nw->data, *nbd = nb->data;
	double eps = attr_float(bn, "epsilon", 1e-5f);
	for (int64_t c = 0; c < oc; c++) {
		double s = scale[c] / sqrt((double)var[c] + eps);
		for (uint64_t i = 0; i < per; i++)
			nwd[(uint64_t)c * per + i] = (float)(wd[(uint64_t)c * per + i] * s);
		nbd[c] = (float)(((bd ? bd[c] : 0.0) - mean[c]) * s + beta[c]);
	}
	if (conv->n_in < 3) {
		struct value **in = realloc(conv->in, 4 * sizeof(*in));
		if (!in)
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		conv->in = in;
		conv->n_in = 3;
	}
	conv->in[1] = nw;
	conv->in[2] = nb;
	conv->out[0] = bn->out[0];
	bn->fused_away = 1;
	set_producer(net, fu, conv->out[0], conv);
	return 0;
}

/* A Clip's bounds as a fused activation; -1 when they are not constant floats. */
static int clip_bounds(const struct node *clip, struct fused_act *f)
{
	f->kind = FUSED_CLIP;
	f->alpha = -INFINITY;
	f->beta = INFINITY;
	if (clip->opset < 11) {
		f->alpha = attr_float(clip, "min", -INFINITY);
		f->beta = attr_float(clip, "max", INFINITY);
		return 0;
	}
	for (size_t k = 1; k < clip->n_in && k < 3; k++) {
		const struct value *v = clip->in[k];
		if (!v)
			continue;
		if (!(v->flags & VALUE_CONST) || v->dtype != GRAFT_FLOAT || value_numel(v) != 1)
			return -1;
		*(k == 1 ? &f->alpha : &f->beta) = *(const float *)v->data;
	}
	return 0;
}

/* Conv or Gemm followed by its only consumer, an activation: one node. */
static int fuse_activation(struct graft_net *net, struct node *act, struct fusing *fu)
{
	struct node *p = act->n_in && act->in[0] ? producer(net, fu, act->in[0]) : NULL;
	struct fused_act f = {FUSED_NONE, 0, 0};
	const char *op = act->op->name;

	if (!p || p->fused_away || autograd_region(p) || !(p->op->flags & OP_FUSES_ACT) ||
	    p->act.kind != FUSED_NONE || uses_of(net, fu, act->in[0]) != 1 || !act->out[0] ||
	    p->out[0] != act->in[0])
		return 0;
	if (strcmp(op, "Relu") == 0) {
		f.kind = FUSED_RELU;
	} else if (strcmp(op, "LeakyRelu") == 0) {
		f.kind = FUSED_LEAKY_RELU;
		f.alpha = attr_float(act, "alpha", 0.01f);
	} else if (strcmp(op, "Sigmoid") == 0) {
		f.kind = FUSED_SIGMOID;
	} else if (strcmp(op, "Tanh") == 0) {
		f.kind = FUSED_TANH;
	} else if (strcmp(op, "HardSigmoid") == 0) {
		f.kind = FUSED_HARDSIGMOID;
		f.alpha = attr_float(act, "alpha", 0.2f);
		f.beta = attr_float(act, "beta", 0.5f);
	} else if (strcmp(op, "HardSwish") == 0) {
		f.kind = FUSED_HARDSWISH;
	} else if (strcmp(op, "Clip") == 0) {
		if (clip_bounds(act, &f))
			return 0;
	} else {
		return 0;
	}
	p->act = f;
	p->out[0] = act->out[0];
	act->fused_away = 1;
	set_producer(net, fu, p->out[0], p);
	return 0;
}

/*
 * In a training net's backward region, a BatchNormalization followed by its only
 * reader, a Relu or a Clip (ReLU6): one node, which clamps as it normalises and passes
 * the activation's gradient as its backward begins (norm.c, struct bn_act).  Of the
 * six passes over the activation in forward and eight in backward, four and three go,
 * and one activation less is kept for backward: in mobilenet_v2's training these two
 * ops took over a third of the step.
 */
static int fuse_region_activation(struct graft_net *net, struct node *act, struct fusing *fu)
{
	struct node *p = act->n_in && act->in[0] ? producer(net, fu, act->in[0]) : NULL;
	struct fused_act f = {FUSED_RELU, 0, 0};

	if (!p || !is_op(p, "BatchNormalization") || p->act.kind != FUSED_NONE ||
	    p->out[0] != act->in[0] || uses_of(net, fu, act->in[0]) != 1 || !act->out[0] ||
	    (act->in[0]->flags & VALUE_OUTPUT))
		return 0;
	if (is_op(act, "Clip") ? clip_bounds(act, &f) : !is_op(act, "Relu"))
		return 0;
	p->act = f;
	p->out[0] = act->out[0];
	act->fused_away = 1;
	act->inplace = 0;
	set_producer(net, fu, p->out[0], p);
	return 0;
}

/* The activation that Mul(x, gate(x)) computes, where gate is n: SiLU for a Sigmoid,
 * HardSwish for PyTorch's HardSigmoid (alpha 1/6, beta 1/2); FUSED_NONE otherwise. */
static enum fused_kind gated_kind(const struct node *gate)
{
	if (is_op(gate, "Sigmoid"))
		return FUSED_SWISH;
	if (is_op(gate, "HardSigmoid") && attr_float(gate, "beta", 0.5f) == 0.5f &&
	    fabsf(attr_float(gate, "alpha", 0.2f) - 1.0f / 6) < 1e-6f)
		return FUSED_HARDSWISH;
	return FUSED_NONE;
}

/*
 * Mul(x, gate(x)) as exporters write SiLU (gate Sigmoid; EfficientNet) and HardSwish
 * before opset 14 (gate HardSigmoid; MobileNetV3), where x comes from a Conv or Gemm
 * that nothing else reads: one node, the activation a post-op of the Conv.  The two
 * elementwise passes over x, and x and the gate in memory, go; at batch 32 they took
 * over half of efficientnet_b0's forward time.
 */
static int fuse_gated_activation(struct graft_net *net, struct node *mul, struct fusing *fu)
{
	struct node *gate = NULL, *p;
	const struct value *x = NULL;
	enum fused_kind kind = FUSED_NONE;

	if (!is_op(mul, "Mul") || mul->n_in != 2 || !mul->in[0] || !mul->in[1] || !mul->out[0])
		return 0;
	for (int k = 0; k < 2 && kind == FUSED_NONE; k++) {
		gate = producer(net, fu, mul->in[k]);
		x = mul->in[1 - k];
		if (gate && gate->n_in >= 1 && gate->in[0] == x && gate->out[0] == mul->in[k])
			kind = gated_kind(gate);
	}
	if (kind == FUSED_NONE || autograd_region(gate) || uses_of(net, fu, gate->out[0]) != 1 ||
	    uses_of(net, fu, x) != 2 || !(p = producer(net, fu, x)) || autograd_region(p) ||
	    !(p->op->flags & OP_FUSES_ACT) || p->act.kind != FUSED_NONE || p->out[0] != x)
		return 0;
	p->act.kind = kind;
	p->out[0] = mul->out[0];
	gate->fused_away = 1;
	mul->fused_away = 1;
	set_producer(net, fu, p->out[0], p);
	return 0;
}

/*
 * Marks the values that may stay in oneDNN's blocked layouts: outputs of Conv, pooling
 * and layout-transparent ops that only such ops read (Conv and pooling as their X, ops
 * with a run_blocked kernel: squeeze-and-excitation's GlobalAveragePool and Mul).
 * Between such layers no reorder to plain NCHW and back is needed (they cost a fifth of
 * resnet18's time and most of mobilenet_v2's).
 */
/* MAX_LAYOUT_INPUTS bounds the per-node bookkeeping of run_node: a node with more inputs
 * (a wide Sum) reads only plain values. */
#define MAX_LAYOUT_INPUTS 15

static int layout_aware_reader(const struct node *c, size_t k)
{
	return c->n_in <= MAX_LAYOUT_INPUTS &&
	       ((k == 0 && (c->op->flags & OP_BLOCKED_IO)) ||
		(c->op->flags & OP_LAYOUT_TRANSPARENT) || c->blocked);
}

static int mark_blockable(struct graft_net *net)
{
	/* Per value: its readers, and whether one of them needs it plain; one sweep. */
	size_t *readers = calloc(net->n_values + 1, sizeof(*readers));
	char *plain = calloc(net->n_values + 1, 1);

	if (!readers || !plain) {
		free(readers);
		free(plain);
		return -1;
	}
	for (size_t j = 0; j < net->n_nodes; j++) {
		struct node *c = &net->nodes[j];
		if (c->fused_away && !c->host)
			continue;       /* (a pre's inputs are read by its host) */
		for (size_t k = 0; k < c->n_in; k++) {
			long v = c->in[k] ? strmap_get(&net->by_name, c->in[k]->name) : -1;
			if (v < 0)
				continue;
			readers[v]++;
			/* backward reads its inputs plain */
			if (!layout_aware_reader(c, k) || autograd_region(c))
				plain[v] = 1;
		}
	}
	for (size_t i = 0; i < net->n_nodes; i++) {
		struct node *p = &net->nodes[i];
		struct value *v = p->n_out ? p->out[0] : NULL;
		if (!v || p->fused_away || (v->flags & (VALUE_OUTPUT | VALUE_DIFF)) ||
		    (!(p->op->flags & (OP_BLOCKED_IO | OP_LAYOUT_TRANSPARENT)) && !p->blocked))
			continue;
		long k = strmap_get(&net->by_name, v->name);
		if (k >= 0 && readers[k] && !plain[k])
			v->flags |= VALUE_BLOCKABLE;
	}
	free(readers);
	free(plain);
	return 0;
}

/* A plain copy of a blocked value, for a reader that needs plain data. */
struct shadow {
	dnnl_primitive_t reorder;
	dnnl_memory_t from, to;
	void *plain;
};

static void shadow_free(struct value *v)
{
	struct shadow *sh = v->shadow;

	if (!sh)
		return;
	dnnl_primitive_destroy(sh->reorder);
	dnnl_memory_destroy(sh->from);
	dnnl_memory_destroy(sh->to);
	free(sh->plain);
	free(sh);
	v->shadow = NULL;
}

/* Brings v's plain copy up to date (made on first use, reordered every run). */
static int shadow_update(const struct node *n, struct value *v, struct graft_err *err)
{
	struct shadow *sh = v->shadow;
	dnnl_memory_desc_t plain;
	int rc;

	if (!sh) {
		dnnl_data_type_t dt = ((const dnnl_memory_desc_t *)v->layout)->data_type;
		if (!(sh = v->shadow = calloc(1, sizeof(*sh))))
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
		if ((rc = ONEDNN_CHECK(n, err, onednn_md_plain(&plain, v->rank, v->dims, dt))))
			return rc;
		if (!(sh->plain = malloc(dnnl_memory_desc_get_size(&plain) + 64)))
			return node_err(n, err, GRAFT_ENOMEM, "out of memory");
		if ((rc = onednn_memory(n, &sh->from, v->layout, v->data, err)) ||
		    (rc = onednn_memory(n, &sh->to, &plain, sh->plain, err)) ||
		    (rc = onednn_reorder_new(n, v->layout, &plain, &sh->reorder, err)))
			return rc;
	}
	if ((rc = onednn_rebind(n, sh->from, v->data, err)))
		return rc;
	return onednn_reorder_run(n, sh->reorder, sh->from, sh->to, err);
}

/* Runs an elementwise op over raw blocked buffers: every input and the output seen as
 * flat vectors of the layout's size. */
static int run_flat(struct node *n, const dnnl_memory_desc_t *md, struct graft_err *err)
{
	struct value *out = n->out[0];
	size_t size = dnnl_memory_desc_get_size(md);
	int64_t saved[MAX_LAYOUT_INPUTS + 1][NET_MAX_RANK + 1];
	size_t k;
	int rc;

	if (!out->layout && (rc = onednn_keep_layout(n, out, md, err)))
		return rc;
	for (k = 0; k <= n->n_in; k++) {
		struct value *v = k < n->n_in ? n->in[k] : out;
		saved[k][0] = v->rank;
		memcpy(&saved[k][1], v->dims, sizeof(int64_t) * (size_t)v->rank);
		v->rank = 1;
		v->dims[0] = (int64_t)(size / sizeof(float));
	}
	rc = n->op->run(n, err);
	for (k = 0; k <= n->n_in; k++) {
		struct value *v = k < n->n_in ? n->in[k] : out;
		v->rank = (int)saved[k][0];
		memcpy(v->dims, &saved[k][1], sizeof(int64_t) * (size_t)v->rank);
	}
	return rc;
}

static int same_dims(const struct value *a, const struct value *b)
{
	return a->rank == b->rank &&
	       memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) == 0;
}

/*
 * Runs a node whose inputs may hold blocked layouts.  Convs read them directly; a
 * layout-transparent op whose inputs all share one layout and the output's shape runs
 * on the raw buffers; any other reader gets plain copies, reordered here.
 */
static int run_node(struct node *n, struct graft_err *err)
{
	const dnnl_memory_desc_t *md = NULL;
	int mixed = 0, rc;
	void *saved[MAX_LAYOUT_INPUTS];

	for (size_t k = 0; k < n->n_in; k++) {
		const struct value *v = n->in[k];
		if (!v)
			continue;
		if (v->layout) {
			if (md && !onednn_md_same(md, v->layout))
				mixed = 1;
			md = v->layout;
		} else {
			mixed = 1;
		}
		if (!same_dims(v, n->out[0]) || v->dtype != GRAFT_FLOAT)
			mixed = 1;
	}
	if (!md || (n->op->flags & OP_BLOCKED_IO))
		return n->op->run(n, err);
	if (n->n_in > MAX_LAYOUT_INPUTS)        /* mark_blockable never lets this happen */
		return node_err(n, err, GRAFT_EINVAL, "blocked input to a node of %zu inputs",
				n->n_in);
	if (!mixed && (n->op->flags & OP_LAYOUT_TRANSPARENT) &&
	    (n->out[0]->flags & VALUE_BLOCKABLE))
		return run_flat(n, md, err);
	if (n->blocked && (rc = n->blocked->run(n, err)) != OPS_DECLINED)
		return rc;
	/* Plain copies for this reader. */
	for (size_t k = 0; k < n->n_in; k++) {
		struct value *v = n->in[k];
		saved[k] = v ? v->data : NULL;
		if (v && v->layout) {
			if ((rc = shadow_update(n, v, err)))
				return rc;
			v->data = ((struct shadow *)v->shadow)->plain;
		}
	}
	void *layouts[MAX_LAYOUT_INPUTS];
	for (size_t k = 0; k < n->n_in; k++) {
		layouts[k] = n->in[k] ? n->in[k]->layout : NULL;
		if (n->in[k])
			n->in[k]->layout = NULL;
	}
	rc = n->op->run(n, err);
	for (size_t k = 0; k < n->n_in; k++)
		if (n->in[k]) {
			n->in[k]->data = saved[k];
			n->in[k]->layout = layouts[k];
		}
	return rc;
}

/*
 * Identity nodes of constants (exporters route shared weights through them) are dropped:
 * their readers read the constant itself, so that fusions see constant weights.  All of
 * them in one sweep, through a map from each dropped output to its constant, so that a
 * model of many of them plans in linear time.
 */
static int forward_identities(struct graft_net *net)
{
	struct value **to_const = calloc(net->n_values + 1, sizeof(*to_const));
	int any = 0;

	if (!to_const)
		return -1;
	for (size_t i = 0; i < net->n_nodes; i++) {
		struct node *id = &net->nodes[i];
		struct value *from = id->n_in ? id->in[0] : NULL, *to = id->n_out ? id->out[0] : NULL;
		if (id->fused_away || autograd_region(id) || !is_op(id, "Identity") || !from || !to)
			continue;
		long f = strmap_get(&net->by_name, from->name);
		if (f >= 0 && to_const[f])
			from = to_const[f];     /* an Identity of a dropped Identity */
		if (!(from->flags & VALUE_CONST) || (to->flags & VALUE_OUTPUT))
			continue;
		to_const[strmap_get(&net->by_name, to->name)] = from;
		id->fused_away = 1;
		any = 1;
	}
	for (size_t i = 0; i < net->n_nodes && any; i++) {
		struct node *c = &net->nodes[i];
		for (size_t k = 0; k < c->n_in; k++) {
			long v = c->in[k] ? strmap_get(&net->by_name, c->in[k]->name) : -1;
			if (v >= 0 && to_const[v])
				c->in[k] = to_const[v];
		}
	}
	free(to_const);
	return 0;
}

static int conv_attr_all(const struct node *n, const char *name, int64_t want, long count)
{
	int64_t v[8];
	long got = attr_ints(n, name, v, 8);

	if (got < 0)
		return 1;       /* absent: the defaults (stride 1, pad 0, dilation 1) */
	if (got != count)
		return 0;
	for (long i = 0; i < got; i++)
		if (v[i] != want)
			return 0;
	return 1;
}

/* A 2-D Conv with constant weights (and bias), explicit padding and no dilation. */
static int plain_2d_conv(const struct node *n)
{
	return is_op(n, "Conv") && n->n_in >= 2 && all_const(n, 1, n->n_in) &&
	       n->in[1]->rank == 4 && attr_string_eq(n, "auto_pad", "NOTSET", "NOTSET") &&
	       conv_attr_all(n, "dilations", 1, 2) && !n->pre && !n->host;
}

/*
 * A 1x1 Conv whose only reader is a 3x3 depthwise Conv (stride 1 or 2, pad 1): the
 * inverted-residual blocks of MobileNet and EfficientNet.  The depthwise node runs both
 * as one oneDNN primitive (the depthwise convolution as a post-op of the 1x1), so the
 * widened tensor between them never goes through memory: at batch 32 that halves
 * mobilenet_v2's time in these layers.
 */
static int fuse_depthwise(struct graft_net *net, struct node *dw, struct fusing *fu)
{
	struct node *pre = dw->n_in && dw->in[0] ? producer(net, fu, dw->in[0]) : NULL;
	const struct value *w;

	if (!plain_2d_conv(dw) || !plain_2d_conv(pre) || autograd_region(pre) ||
	    pre->out[0] != dw->in[0] || uses_of(net, fu, dw->in[0]) != 1 ||
	    (dw->in[0]->flags & VALUE_OUTPUT))
		return 0;
	w = pre->in[1];
	if (w->dims[2] != 1 || w->dims[3] != 1 || attr_int(pre, "group", 1) != 1 ||
	    !conv_attr_all(pre, "strides", 1, 2) || !conv_attr_all(pre, "pads", 0, 4))
		return 0;
	w = dw->in[1];
	int64_t stride = conv_attr_all(dw, "strides", 1, 2) ? 1 :
			 conv_attr_all(dw, "strides", 2, 2) ? 2 : 0;
	if (!stride || w->dims[1] != 1 || w->dims[2] != 3 || w->dims[3] != 3 ||
	    attr_int(dw, "group", 1) != w->dims[0] || pre->in[1]->dims[0] != w->dims[0] ||
	    !attr_find(dw, "pads") || !conv_attr_all(dw, "pads", 1, 4))
		return 0;
	dw->pre = pre;
	pre->host = dw;
	pre->fused_away = 1;
	return 0;
}

/* The DequantizeLinear that writes v, with a constant scale and zero point (when it has
 * one), or NULL. */
static struct node *const_dq(const struct graft_net *net, const struct fusing *fu,
			     const struct value *v)
{
	struct node *p = v ? producer(net, fu, v) : NULL;

	if (!is_op(p, "DequantizeLinear") || p->n_in < 2 || p->out[0] != v || !p->in[0] ||
	    !p->in[1] || !(p->in[1]->flags & VALUE_CONST) || p->in[1]->dtype != GRAFT_FLOAT ||
	    (p->n_in > 2 && p->in[2] && !(p->in[2]->flags & VALUE_CONST)))
		return NULL;
	return p;
}

static struct value *dq_zero_point(const struct node *dq)
{
	return dq->n_in > 2 ? dq->in[2] : NULL;
}

/* 1 when dq dequantizes an 8-bit tensor (its zero point says which) by one scale. */
static int dq_scalar_8bit(const struct node *dq)
{
	const struct value *z = dq_zero_point(dq);

	return z && value_numel(z) == 1 && value_numel(dq->in[1]) == 1 &&
	       (z->dtype == GRAFT_UINT8 || z->dtype == GRAFT_INT8);
}

/* 1 when the QuantizeLinear q gives an output (the fused node's) by one constant float
 * scale and a constant 8-bit zero point, or none (uint8 0). */
static int q_scalar_8bit(const struct node *q)
{
	const struct value *zy = q->n_in > 2 ? q->in[2] : NULL;

	return q->out[0] && (q->in[1]->flags & VALUE_CONST) && q->in[1]->dtype == GRAFT_FLOAT &&
	       value_numel(q->in[1]) == 1 &&
	       (!zy || ((zy->flags & VALUE_CONST) && value_numel(zy) == 1 &&
			(zy->dtype == GRAFT_UINT8 || zy->dtype == GRAFT_INT8)));
}

/* Marks dq (may be NULL) fused away when the node being fused is its only reader. */
static void drop_sole_dq(const struct graft_net *net, const struct fusing *fu, struct node *dq)
{
	if (dq && uses_of(net, fu, dq->out[0]) == 1)
		dq->fused_away = 1;
}

/* A fused node's inputs for the quantized operand of dq: the 8-bit tensor, its scale,
 * its zero point (or NULL), as QLinearConv and QLinearAdd take them. */
static void put_qoperand(struct value **in, const struct node *dq)
{
	in[0] = dq->in[0];
	in[1] = dq->in[1];
	in[2] = dq_zero_point(dq);
}

/* The same for the output that QuantizeLinear q gives: its scale and zero point. */
static void put_qparams(struct value **in, const struct node *q)
{
	in[0] = q->in[1];
	in[1] = q->n_in > 2 ? q->in[2] : NULL;
}

/* 1 when dq's constant zero point is absent or all zeros. */
static int zero_zero_point(const struct node *dq)
{
	const struct value *z = dq_zero_point(dq);

	for (uint64_t i = 0; z && i < value_numel(z); i++)
		if (value_get(z, i) != 0)
			return 0;
	return 1;
}

/* 1 when dq's scale is one value, or count values along axis 0 of its input. */
static int dq_scales(const struct node *dq, int64_t count)
{
	uint64_t ns = value_numel(dq->in[1]);

	return ns == 1 || (ns == (uint64_t)count && dq->in[0]->rank >= 1 &&
			   norm_axis(attr_int(dq, "axis", 1), dq->in[0]->rank) == 0);
}

/* 1 when the int32 bias's scales are x_scale * w_scale, as QLinearConv reads B. */
static int bias_scales_match(const struct node *dx, const struct node *dw, const struct node *db)
{
	const float sx = *(const float *)dx->in[1]->data;
	const float *sw = dw->in[1]->data, *sb = db->in[1]->data;
	uint64_t nw = value_numel(dw->in[1]), nb = value_numel(db->in[1]);

	if (nb != nw && nb != 1)
		return 0;
	for (uint64_t c = 0; c < (nw > nb ? nw : nb); c++) {
		float want = sx * sw[nw == 1 ? 0 : c], got = sb[nb == 1 ? 0 : c];
		if (fabsf(got - want) > 1e-6f * fabsf(want))
			return 0;
	}
	return 1;
}

/*
 * The QDQ form of a quantized convolution, as graft-quantize and ONNX Runtime's quantizer
 * write it: Conv(DequantizeLinear(x_q), DequantizeLinear(w_q)[, DequantizeLinear(b_q)])
 * whose result only a QuantizeLinear reads (a Relu between them already fused into the
 * Conv), becomes one QLinearConv node from x_q to the QuantizeLinear's output, so that
 * it runs on oneDNN's int8 kernels (qconv.c): ONNX Runtime fuses the same pattern the
 * same way.  Every scale and zero point must be a constant, W int8 with one scale or
 * one per output channel, B int32 on the scale x_scale * w_scale.  DequantizeLinear
 * nodes that nothing else reads then go.
 */
static int fuse_qdq_conv(struct graft_net *net, struct node *q, struct fusing *fu,
			 struct graft_err *err)
{
	struct node *conv = q->n_in >= 2 ? producer(net, fu, q->in[0]) : NULL, *dx, *dw, *db = NULL;
	static const struct op_def *qlinear_conv;

	if (!is_op(conv, "Conv") || conv->pre || conv->host || autograd_region(conv) ||
	    (conv->act.kind != FUSED_NONE && conv->act.kind != FUSED_RELU) ||
	    conv->out[0] != q->in[0] || uses_of(net, fu, q->in[0]) != 1 || !q_scalar_8bit(q))
		return 0;
	if (!(dx = const_dq(net, fu, conv->in[0])) || !(dw = const_dq(net, fu, conv->in[1])) ||
	    (conv->n_in > 2 && conv->in[2] && !(db = const_dq(net, fu, conv->in[2]))))
		return 0;
	/* x: 8-bit (its zero point says which), one scale */
	if (!dq_scalar_8bit(dx))
		return 0;
	/* w: constant int8, symmetric, per tensor or per output channel */
	const struct value *w = dw->in[0];
	if (!(w->flags & VALUE_CONST) || w->dtype != GRAFT_INT8 || w->rank < 3 ||
	    !zero_zero_point(dw) || !dq_scales(dw, w->dims[0]))
		return 0;
	if (db && (!(db->in[0]->flags & VALUE_CONST) || db->in[0]->dtype != GRAFT_INT32 ||
		   !zero_zero_point(db) || !dq_scales(db, w->dims[0]) ||
		   !bias_scales_match(dx, dw, db)))
		return 0;
	if (!qlinear_conv && !(qlinear_conv = ops_find("QLinearConv")))
		return 0;
	struct value **in = calloc(9, sizeof(*in));
	if (!in)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	put_qoperand(in, dx);
	put_qoperand(in + 3, dw);
	put_qparams(in + 6, q);
	in[8] = db ? db->in[0] : NULL;
	drop_sole_dq(net, fu, dx);
	drop_sole_dq(net, fu, dw);
	drop_sole_dq(net, fu, db);
	free(conv->in);
	conv->in = in;
	conv->n_in = db ? 9 : 8;
	conv->op = qlinear_conv;
	conv->out[0] = q->out[0];
	q->fused_away = 1;
	set_producer(net, fu, conv->out[0], conv);
	return 0;
}

/* 1 when two constant scalars (a scale, a zero point: either may be absent, a zero point
 * as 0 of uint8) are the same value of the same type. */
static int same_qparam(const struct value *a, const struct value *b)
{
	if (!a || !b)
		return (!a || (a->dtype == GRAFT_UINT8 && value_get(a, 0) == 0)) &&
		       (!b || (b->dtype == GRAFT_UINT8 && value_get(b, 0) == 0));
	return a->dtype == b->dtype && value_numel(a) == 1 && value_numel(b) == 1 &&
	       (a->flags & b->flags & VALUE_CONST) && value_get(a, 0) == value_get(b, 0);
}

/*
 * DequantizeLinear -> MaxPool -> QuantizeLinear with the same scale and zero point on
 * both sides (graft-quantize writes it so): the maximum commutes with the increasing
 * map, so the MaxPool pools the 8-bit values themselves (oneDNN's u8/s8 pooling) and
 * gives the QuantizeLinear's output.  ONNX Runtime drops such pairs too.
 */
static int fuse_qdq_maxpool(struct graft_net *net, struct node *q, struct fusing *fu)
{
	struct node *pool = q->n_in >= 2 ? producer(net, fu, q->in[0]) : NULL, *dx;

	if (!is_op(pool, "MaxPool") || autograd_region(pool) || pool->n_in != 1 ||
	    (pool->n_out > 1 && pool->out[1]) || pool->out[0] != q->in[0] ||
	    uses_of(net, fu, q->in[0]) != 1 || !q->out[0] ||
	    !(dx = const_dq(net, fu, pool->in[0])) || !dq_zero_point(dx) ||
	    !same_qparam(dx->in[1], q->in[1]) ||
	    !same_qparam(dq_zero_point(dx), q->n_in > 2 ? q->in[2] : NULL))
		return 0;
	drop_sole_dq(net, fu, dx);
	pool->in[0] = dx->in[0];
	pool->out[0] = q->out[0];
	if (pool->opset < 12)
		pool->opset = 12;       /* MaxPool's 8-bit inputs came with opset 12 */
	q->fused_away = 1;
	set_producer(net, fu, pool->out[0], pool);
	return 0;
}

/*
 * Add(DequantizeLinear(a_q), DequantizeLinear(b_q)) whose result only a QuantizeLinear
 * reads, every scale and zero point a constant scalar: a residual connection in QDQ
 * form.  One QLinearAdd node (quant.c) from a_q and b_q to the QuantizeLinear's output,
 * as ONNX Runtime fuses it: one pass over bytes instead of four over floats, and a_q,
 * b_q and the sum stay in the int8 convolutions' layout.
 */
static int fuse_qdq_add(struct graft_net *net, struct node *q, struct fusing *fu,
			struct graft_err *err)
{
	struct node *add = q->n_in >= 2 ? producer(net, fu, q->in[0]) : NULL, *da, *db;
	static const struct op_def *qlinear_add;

	if (!is_op(add, "Add") || autograd_region(add) || add->n_in != 2 ||
	    add->out[0] != q->in[0] || uses_of(net, fu, q->in[0]) != 1 || !q_scalar_8bit(q))
		return 0;
	if (!(da = const_dq(net, fu, add->in[0])) || !(db = const_dq(net, fu, add->in[1])) ||
	    da == db || !dq_scalar_8bit(da) || !dq_scalar_8bit(db) ||
	    dq_zero_point(da)->dtype != dq_zero_point(db)->dtype)
		return 0;
	if (!qlinear_add && !(qlinear_add = ops_find_fused("QLinearAdd")))
		return 0;
	struct value **in = calloc(8, sizeof(*in));
	if (!in)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	put_qoperand(in, da);
	put_qoperand(in + 3, db);
	put_qparams(in + 6, q);
	drop_sole_dq(net, fu, da);
	drop_sole_dq(net, fu, db);
	free(add->in);
	add->in = in;
	add->n_in = 8;
	add->op = qlinear_add;
	add->blocked = ops_find_blocked(qlinear_add->name);
	add->out[0] = q->out[0];
	q->fused_away = 1;
	set_producer(net, fu, add->out[0], add);
	return 0;
}

/* The QDQ patterns that end in the QuantizeLinear q, each run as one 8-bit node. */
static int fuse_qdq(struct graft_net *net, struct node *q, struct fusing *fu,
		    struct graft_err *err)
{
	int rc = fuse_qdq_conv(net, q, fu, err);

	if (!rc && !q->fused_away)
		rc = fuse_qdq_add(net, q, fu, err);
	if (!rc && !q->fused_away)
		rc = fuse_qdq_maxpool(net, q, fu);
	return rc;
}

static int fuse(struct graft_net *net, struct graft_err *err)
{
	struct fusing fu;
	int rc = 0;

	if (net->opts.no_fuse)
		return 0;
	if (forward_identities(net))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (int pass = 0; pass < 3 && !rc; pass++) {
		if (fusing_init(&fu, net))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		for (size_t i = 0; i < net->n_nodes && !rc; i++) {
			struct node *n = &net->nodes[i];
			if (n->fused_away)
				continue;
			if (autograd_region(n)) {
				/* backward needs each node's own output, but for this */
				if (pass == 1)
					rc = fuse_region_activation(net, n, &fu);
				continue;
			}
			if (pass == 0 && is_op(n, "BatchNormalization"))
				rc = fold_batchnorm(net, n, &fu, err);
			else if (pass == 1 && is_op(n, "Mul"))
				rc = fuse_gated_activation(net, n, &fu);
			else if (pass == 1)
				rc = fuse_activation(net, n, &fu);
			else if (pass == 2 && is_op(n, "Conv"))
				rc = fuse_depthwise(net, n, &fu);
			else if (pass == 2 && is_op(n, "QuantizeLinear"))
				rc = fuse_qdq(net, n, &fu, err);
		}
		fusing_release(&fu);
	}
	return rc;
}

int graft_net_new(struct graft_net **out, const struct graft_model *m, struct graft_err *err)
{
	return graft_net_new_opts(out, m, NULL, err);
}

int graft_net_new_opts(struct graft_net **out, const struct graft_model *m,
		       const struct graft_net_opts *opts, struct graft_err *err)
{
	struct graft_net *net = calloc(1, sizeof(*net));
	int rc;

	*out = NULL;
	if (!net || strmap_init(&net->by_name, 256)) {
		free(net);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	net->model = m;
	if (opts)
		net->opts = *opts;
	net->hooks = net->opts.training ? &autograd_hooks : NULL;
	if ((rc = add_constants(net, err)) || (rc = add_inputs_outputs(net, err)) ||
	    (rc = add_nodes(net, err)) || (rc = bind_outputs(net, err)) ||
	    (net->hooks && (rc = net->hooks->build(net, err))) || (rc = fuse(net, err))) {
		graft_net_free(net);
		return rc;
	}
	mark_plan_inputs(net);
	/* no_fuse keeps every value readable (graft_net_value): plain, too */
	if (!net->opts.no_fuse && mark_blockable(net)) {
		graft_net_free(net);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if (net->opts.profile &&
	    !(net->profile = calloc(net->n_nodes + 1, sizeof(*net->profile)))) {
		graft_net_free(net);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	*out = net;
	return 0;
}

/* ---- planning ---------------------------------------------------------------------------- */

/* Forgets a plan: kernel state, and data computed or allocated for it. */
static void unplan(struct graft_net *net)
{
	if (net->hooks)
		net->hooks->unplan(net);
	/* An in-place output holds its input's buffer, freed with the input. */
	for (size_t i = 0; i < net->n_nodes; i++) {
		struct node *n = &net->nodes[i];
		if (n->inplace && n->out[0] && n->in[0] && n->out[0]->data == n->in[0]->data)
			n->out[0]->data = NULL;
	}
	for (size_t i = 0; i < net->n_nodes; i++) {
		struct node *n = &net->nodes[i];
		if (n->op && n->op->release && n->priv)
			n->op->release(n);
		n->priv = NULL;
		if (n->fused_away && !n->host)
			continue;

		for (size_t k = 0; k < n->n_out; k++) {
			struct value *v = n->out[k];
			if (!v)
				continue;
			free(v->data);
			v->data = NULL;
			free(v->layout);
			v->layout = NULL;
			shadow_free(v);
			v->nbytes = 0;
			v->dtype = 0;
			v->flags &= ~(unsigned)VALUE_CONST;
		}
	}
	for (size_t i = 0; i < net->n_inputs; i++) {
		net->inputs[i]->data = NULL;
		net->inputs[i]->flags &= ~(unsigned)VALUE_CONST;
		free(net->planned_bytes[i]);
		net->planned_bytes[i] = NULL;
	}
	net->n_run = net->n_folded = 0;
	net->planned = 0;
}

static int alloc_value(struct value *v, const struct node *n, struct graft_err *err)
{
	size_t esize = graft_dtype_size(v->dtype);
	uint64_t numel = value_numel(v);

	if (esize == 0)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "output '%s' has no numeric type",
				v->name);
	if (numel > SIZE_MAX / esize)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "output '%s' is too large", v->name);
	v->nbytes = (size_t)numel * esize;
	/* Zeroed: padding-free kernels may still rely on nothing, but a stale buffer never
	 * leaks one run's values into the next. */
	v->data = calloc(1, v->nbytes ? v->nbytes : 1);
	if (!v->data)
		return node_err(n, err, GRAFT_ENOMEM, "out of memory for '%s' (%zu bytes)", v->name,
				v->nbytes);
	return 0;
}

static int foldable(const struct node *n)
{
	if (strcmp(n->op->name, "Shape") == 0 || strcmp(n->op->name, "Size") == 0)
		return 1;       /* reads only dims, known at plan time */
	for (size_t k = 0; k < n->n_in; k++)
		if (n->in[k] && !(n->in[k]->flags & VALUE_CONST))
			return 0;
	return 1;
}

static int check_input(struct graft_net *net, size_t i, const struct graft_array *a,
		       struct graft_err *err)
{
	const Onnx__ValueInfoProto *vi = net->input_info[i];
	const Onnx__TypeProto *tp = vi->type;

	if (a->rank > NET_MAX_RANK)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "input '%s': rank %d is too high",
				     vi->name, a->rank);
	if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
		return 0;
	const Onnx__TypeProto__Tensor *t = tp->tensor_type;
	if (t->has_elem_type && t->elem_type != a->dtype)
		return graft_err_set(err, GRAFT_EINVAL, "input '%s' must be %s, not %s", vi->name,
				     graft_dtype_name(t->elem_type) ? graft_dtype_name(t->elem_type) : "?",
				     graft_dtype_name(a->dtype) ? graft_dtype_name(a->dtype) : "?");
	if (!t->shape)
		return 0;
	if ((int)t->shape->n_dim != a->rank)
		return graft_err_set(err, GRAFT_EINVAL, "input '%s' must have rank %zu, not %d",
				     vi->name, t->shape->n_dim, a->rank);
	for (size_t d = 0; d < t->shape->n_dim; d++) {
		const Onnx__TensorShapeProto__Dimension *dim = t->shape->dim[d];
		if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
		    dim->dim_value != a->dims[d])
			return graft_err_set(err, GRAFT_EINVAL, "input '%s': dim %zu must be %lld, "
					     "not %lld", vi->name, d, (long long)dim->dim_value,
					     (long long)a->dims[d]);
	}
	return 0;
}

/* Gives node n's outputs their buffers: out[0] shares in[0]'s where the node runs in
 * place (a training net's Relu), the others are allocated. */
static int alloc_outputs(struct node *n, struct graft_err *err)
{
	int rc;

	for (size_t k = 0; k < n->n_out; k++) {
		if (k == 0 && n->inplace && n->in[0]->data &&
		    n->in[0]->nbytes == (size_t)value_numel(n->out[0]) * sizeof(float)) {
			n->out[0]->data = n->in[0]->data;
			n->out[0]->nbytes = n->in[0]->nbytes;
			continue;
		}
		if (n->out[k] && (rc = alloc_value(n->out[k], n, err)))
			return rc;
	}
	return 0;
}

/*
 * The first half of a plan: shape inference over every node, and constant folding (a
 * node whose inputs are all known now runs now, into buffers of its own).  The nodes
 * left go to the run list, their outputs typed and shaped but not yet allocated, so
 * that what the plan needs is known before it is allocated (graft_net_estimate).
 */
static int plan_shapes(struct graft_net *net, const struct graft_array *inputs,
		       struct graft_err *err)
{
	int rc;

	unplan(net);
	for (size_t i = 0; i < net->n_inputs; i++) {
		struct value *v = net->inputs[i];
		value_set(v, inputs[i].dtype, inputs[i].rank, inputs[i].dims);
		v->data = inputs[i].data;
		v->nbytes = inputs[i].nbytes;
		net->planned_shape[i] = inputs[i];
		if (v->flags & VALUE_PLAN) {
			if (!(net->planned_bytes[i] = malloc(inputs[i].nbytes + 1)))
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			memcpy(net->planned_bytes[i], inputs[i].data, inputs[i].nbytes);
			v->flags |= VALUE_CONST;
		}
	}
	free(net->run_list);
	if (!(net->run_list = calloc(net->n_nodes + 1, sizeof(*net->run_list))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < net->n_nodes; i++) {
		struct node *n = &net->nodes[i];
		if (n->fused_away)
			continue;
		/* A fused 1x1 Conv: its output's shape, never its buffer. */
		if (n->pre && (rc = n->pre->op->infer(n->pre, err)))
			return rc;
		for (size_t k = 0; k < n->n_in; k++)
			if (n->in[k] && !n->in[k]->dtype)
				return node_err(n, err, GRAFT_EFORMAT, "input '%s' has no type",
						n->in[k]->name);
		if ((rc = n->op->infer(n, err)))
			return rc;
		if (!foldable(n)) {
			net->run_list[net->n_run++] = i;
			continue;
		}
		if ((rc = alloc_outputs(n, err)) || (rc = run_node(n, err)))
			return rc;
		for (size_t k = 0; k < n->n_out; k++)
			if (n->out[k])
				n->out[k]->flags |= VALUE_CONST;
		if (n->op->release && n->priv)
			n->op->release(n);
		n->priv = NULL;
		net->n_folded++;
	}
	return 0;
}

static uint64_t out_bytes(const struct value *v)
{
	return value_numel(v) * graft_dtype_size(v->dtype);
}

/* Index of v in net->values (every value has its name in by_name). */
static size_t value_index(const struct graft_net *net, const struct value *v)
{
	return (size_t)strmap_get(&net->by_name, v->name);
}

/* Counts a value a node reads: the model's tensors as weights, the net's own constants
 * as copies, each once (seen, by value index). */
static void count_input(const struct graft_net *net, const struct value *v, char *seen,
			struct graft_net_memory *mem)
{
	long i;

	if (!v || (i = strmap_get(&net->by_name, v->name)) < 0 || seen[i] ||
	    (v->flags & VALUE_INPUT) || !v->data)
		return;
	seen[i] = 1;
	if (v->flags & VALUE_BORROWED)
		mem->weights += v->nbytes;
	else if (v->flags & (VALUE_CONST | VALUE_PARAM | VALUE_STATE))
		mem->copies += v->nbytes;
}

/* What the plan that plan_shapes made needs (see graft_net_estimate). */
static int plan_memory(const struct graft_net *net, struct graft_net_memory *mem,
		       struct graft_err *err)
{
	char *seen = calloc(net->n_values + 1, 1);

	memset(mem, 0, sizeof(*mem));
	if (!seen)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < net->n_inputs; i++)
		mem->activations += net->planned_shape[i].nbytes;
	for (size_t r = 0; r < net->n_run; r++) {
		const struct node *n = &net->nodes[net->run_list[r]];
		for (size_t k = 0; k < n->n_in; k++)
			count_input(net, n->in[k], seen, mem);
		for (size_t k = 0; n->pre && k < n->pre->n_in; k++)
			count_input(net, n->pre->in[k], seen, mem);
		for (size_t k = 0; k < n->n_out; k++) {
			const struct value *v = n->out[k];
			if (!v || seen[value_index(net, v)])
				continue;
			seen[value_index(net, v)] = 1;
			/* In place: out[0] shares in[0]'s buffer (alloc_outputs). */
			if (!(k == 0 && n->inplace && n->in[0] && n->in[0]->dtype == GRAFT_FLOAT))
				mem->activations += out_bytes(v);
			/* Gradients: one per float value of the backward region, at most (they
			 * are pooled by lifetime), and every parameter's. */
			if (net->opts.training && (v->flags & VALUE_DIFF) && v->dtype == GRAFT_FLOAT)
				mem->gradients += out_bytes(v);
		}
		mem->copies += ops_plan_bytes(n);
	}
	/* Plan-time constants that no run reads stay allocated too (a folded chain's
	 * intermediate values): the net's copies. */
	for (size_t i = 0; i < net->n_values; i++) {
		const struct value *v = net->values[i];
		if (!seen[i] && v->data && (v->flags & VALUE_CONST) &&
		    !(v->flags & (VALUE_BORROWED | VALUE_INPUT))) {
			seen[i] = 1;
			mem->copies += v->nbytes;
		}
	}
	if (net->hooks)
		mem->gradients = net->hooks->gradient_bytes(net);
	free(seen);
	mem->total = mem->weights + mem->copies + mem->activations + mem->gradients;
	return 0;
}

static int plan(struct graft_net *net, const struct graft_array *inputs, struct graft_err *err)
{
	int rc;

	if ((rc = plan_shapes(net, inputs, err)))
		return rc;
	for (size_t r = 0; r < net->n_run; r++)
		if ((rc = alloc_outputs(&net->nodes[net->run_list[r]], err)))
			return rc;
	if (net->hooks && (rc = net->hooks->plan(net, err)))
		return rc;
	net->planned = 1;
	return 0;
}

/* The inputs a run or an estimate is given: as many as the model takes, each of the
 * declared dtype and shape, of a dtype graft can hold. */
static int check_inputs(struct graft_net *net, const struct graft_array *inputs,
			size_t n_inputs, struct graft_err *err)
{
	int rc;

	if (n_inputs != net->n_inputs)
		return graft_err_set(err, GRAFT_EINVAL, "the model takes %zu inputs, %zu given",
				     net->n_inputs, n_inputs);
	for (size_t i = 0; i < n_inputs; i++) {
		if ((rc = check_input(net, i, &inputs[i], err)))
			return rc;
		if (graft_dtype_size(inputs[i].dtype) == 0)
			return graft_err_set(err, GRAFT_EUNSUPPORTED, "input '%s': unsupported dtype",
					     net->inputs[i]->name);
	}
	return 0;
}

int graft_net_estimate(struct graft_net *net, const struct graft_array *inputs,
		       size_t n_inputs, struct graft_net_memory *mem, struct graft_err *err)
{
	int rc;

	memset(mem, 0, sizeof(*mem));
	if ((rc = check_inputs(net, inputs, n_inputs, err)))
		return rc;
	for (size_t i = 0; i < n_inputs; i++) {
		if ((net->inputs[i]->flags & VALUE_PLAN) && !inputs[i].data)
			return graft_err_set(err, GRAFT_EINVAL, "input '%s' shapes the plan: its "
					     "data is needed", net->inputs[i]->name);
	}
	rc = plan_shapes(net, inputs, err);
	if (!rc)
		rc = plan_memory(net, mem, err);
	unplan(net);
	return rc;
}

static int same_shapes(const struct graft_net *net, const struct graft_array *inputs)
{
	for (size_t i = 0; i < net->n_inputs; i++) {
		const struct graft_array *a = &net->planned_shape[i], *b = &inputs[i];
		if (a->dtype != b->dtype || a->rank != b->rank ||
		    memcmp(a->dims, b->dims, sizeof(a->dims[0]) * (size_t)a->rank) != 0)
			return 0;
		if (net->planned_bytes[i] &&
		    memcmp(net->planned_bytes[i], b->data, b->nbytes) != 0)
			return 0;       /* a plan input's data changed */
	}
	return 1;
}

int net_timed(struct graft_net *net, size_t i, int (*fn)(struct node *, struct graft_err *),
	      int backward, struct graft_err *err)
{
	struct node_clock *c;
	double t0;
	int rc;

	if (!net->profile)
		return fn(&net->nodes[i], err);
	c = &net->profile[i][backward];
	t0 = graft_now();
	rc = fn(&net->nodes[i], err);
	c->seconds += graft_now() - t0;
	c->runs++;
	return rc;
}

int graft_net_run(struct graft_net *net, const struct graft_array *inputs, size_t n_inputs,
		  struct graft_err *err)
{
	int rc;

	if ((rc = check_inputs(net, inputs, n_inputs, err)))
		return rc;
	/* Inputs are read in place, never written. */
	for (size_t i = 0; i < n_inputs; i++) {
		net->inputs[i]->data = inputs[i].data;
		net->inputs[i]->nbytes = inputs[i].nbytes;
	}
	if (!net->planned || !same_shapes(net, inputs)) {
		if ((rc = plan(net, inputs, err))) {
			unplan(net);
			return rc;
		}
		for (size_t i = 0; i < n_inputs; i++) {
			net->inputs[i]->data = inputs[i].data;
			net->inputs[i]->nbytes = inputs[i].nbytes;
		}
		/* plan() ran the folded nodes already; the others run below. */
	}
	if (net->hooks)
		net->hooks->begin_run(net);
	for (size_t r = 0; r < net->n_run; r++)
		if ((rc = net_timed(net, net->run_list[r], run_node, 0, err)))
			return rc;
	return 0;
}

int graft_net_run_region(struct graft_net *net, struct graft_err *err)
{
	int rc;

	if (!net->planned || !net->opts.training)
		return graft_err_set(err, GRAFT_EINVAL, "the region runs after a run of a training net");
	net->hooks->begin_run(net);
	for (size_t r = 0; r < net->n_run; r++)
		if (autograd_region(&net->nodes[net->run_list[r]]) &&
		    (rc = net_timed(net, net->run_list[r], run_node, 0, err)))
			return rc;
	return 0;
}

size_t graft_net_profile_count(const struct graft_net *net)
{
	return net->profile ? net->n_nodes : 0;
}

void graft_net_profile_reset(struct graft_net *net)
{
	if (net->profile)
		memset(net->profile, 0, net->n_nodes * sizeof(*net->profile));
}

int graft_net_profile(const struct graft_net *net, size_t i, struct graft_node_time *t)
{
	if (!net->profile || i >= net->n_nodes)
		return -1;
	t->name = net->nodes[i].proto->name ? net->nodes[i].proto->name : "";
	/* the kernel's op: a QDQ pattern fused into QLinearConv says so */
	t->op_type = net->nodes[i].op ? net->nodes[i].op->name :
		     net->nodes[i].proto->op_type ? net->nodes[i].proto->op_type : "";
	t->seconds = net->profile[i][0].seconds;
	t->runs = net->profile[i][0].runs;
	t->backward_seconds = net->profile[i][1].seconds;
	t->backward_runs = net->profile[i][1].runs;
	return 0;
}

int graft_op_has_backward(const char *op_type)
{
	return ops_find_grad(op_type) != NULL;
}

const char *graft_op_name(size_t i)
{
	const struct op_def *const *all = ops_all();
	for (size_t k = 0; k < i; k++)
		if (!all[k])
			return NULL;
	return all[i] ? all[i]->name : NULL;
}

/* ---- views and cleanup ------------------------------------------------------------------ */

size_t graft_net_input_count(const struct graft_net *net) { return net->n_inputs; }
size_t graft_net_output_count(const struct graft_net *net) { return net->n_outputs; }

const char *graft_net_input_name(const struct graft_net *net, size_t i)
{
	return net->inputs[i]->name;
}

void graft_net_output(const struct graft_net *net, size_t i, struct graft_array *a)
{
	const struct value *v = net->outputs[i];

	memset(a, 0, sizeof(*a));
	a->name = v->name;
	a->dtype = v->dtype;
	a->rank = v->rank;
	memcpy(a->dims, v->dims, sizeof(a->dims[0]) * (size_t)v->rank);
	a->data = v->data;
	a->nbytes = v->nbytes;
}

void graft_net_stats(const struct graft_net *net, size_t *run_nodes, size_t *folded_nodes)
{
	*run_nodes = net->n_run;
	*folded_nodes = net->n_folded;
}

void graft_net_counters(const struct graft_net *net, uint64_t *primitives, uint64_t *reorders,
			size_t *fused_nodes)
{
	size_t fused = 0;

	for (size_t i = 0; i < net->n_nodes; i++)
		fused += net->nodes[i].fused_away != 0;
	*primitives = net->counters.primitives;
	*reorders = net->counters.reorders;
	*fused_nodes = fused;
}

void graft_net_free(struct graft_net *net)
{
	if (!net)
		return;
	free(net->profile);
	unplan(net);
	for (size_t i = 0; i < net->n_nodes; i++) {
		free(net->nodes[i].in);
		free(net->nodes[i].out);
		free(net->nodes[i].value.data);
	}
	free(net->nodes);
	for (size_t i = 0; i < net->n_values; i++) {
		struct value *v = net->values[i];
		if (!(v->flags & (VALUE_BORROWED | VALUE_INPUT)))
			free(v->data);
		free(v->name);
		free(v);
	}
	free(net->values);
	strmap_release(&net->by_name);
	free(net->inputs);
	free(net->input_info);
	free(net->outputs);
	free(net->run_list);
	free(net->planned_shape);
	free(net->planned_bytes);
	if (net->hooks)
		net->hooks->release(net);
	free(net);
}

int graft_net_value_shape(const struct graft_net *net, const char *name, int *rank,
			  int64_t *dims)
{
	long i = strmap_get(&net->by_name, name);
	const struct value *v;

	if (i < 0 || !net->planned)
		return -1;
	v = net->values[i];
	if (!v->dtype)
		return -1;
	*rank = v->rank;
	memcpy(dims, v->dims, sizeof(int64_t) * (size_t)v->rank);
	return v->dtype;
}

int graft_net_value(const struct graft_net *net, const char *name, struct graft_array *view)
{
	long i = strmap_get(&net->by_name, name);
	const struct value *v;

	if (i < 0 || !net->planned)
		return -1;
	v = net->values[i];
	if (!v->dtype || !v->data || v->layout)
		return -1;      /* not computed, or in a blocked layout */
	memset(view, 0, sizeof(*view));
	view->name = v->name;
	view->dtype = v->dtype;
	view->rank = v->rank;
	memcpy(view->dims, v->dims, sizeof(int64_t) * (size_t)v->rank);
	view->data = v->data;
	view->nbytes = v->nbytes;
	return 0;
}
