/*
 * autograd.c: training nets.  What changes from an inference net:
 *
 * - Trainable parameters become net-owned copies (VALUE_PARAM) that the caller's
 *   optimizer updates between runs; they are never constants, so nothing computed from
 *   them is folded, and kernels re-read them on every run.
 * - The values computed from a parameter form the backward region (VALUE_DIFF).  Nodes
 *   there are not given blocked layouts, and not fused but for an activation after a
 *   BatchNormalization (net.c, fuse_region_activation): backward needs each node's own
 *   inputs and outputs, plain.  The frozen part of the network before that region runs
 *   exactly as for inference (Conv + BatchNormalization folded, activations fused), so a
 *   frozen backbone costs one fast forward pass.
 * - A BatchNormalization whose scale or bias trains runs in training mode on running
 *   statistics of its own (VALUE_STATE: torch's exporter may alias running_var to the
 *   scale through an Identity, and the two must part once training updates one).
 * - After a plan, each float value of the region has a gradient buffer; backward visits
 *   the region's nodes in reverse and each writes its inputs' gradients, which are summed
 *   here when a value has several readers (a residual connection).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* A model tensor that a training net keeps its own copy of. */
struct tracked {
	struct value *v;        /* VALUE_PARAM or VALUE_STATE */
	const char *name;       /* the model's name for it (borrowed from the model) */
};

struct pooled;

/* A training net's state, which the executor reaches only through autograd_hooks. */
struct autograd {
	struct tracked *tracked;        /* parameters and state, in model order */
	size_t n_tracked, cap_tracked;
	size_t *trains;                 /* nodes that run differently in training */
	size_t n_trains, cap_trains;
	int training;                   /* current mode (graft_net_set_training) */
	struct pooled *pool;            /* gradient buffers, shared by lifetime */
	size_t n_pool, cap_pool;
	struct value **boundary;        /* what the backward region reads from the frozen part */
	size_t n_boundary;
	struct graft_rng rng;           /* Dropout masks: a key per run (begin_run) */
	struct draws draws;             /* the current run's */
	struct draws next;              /* graft_net_draw_rows's, for the next run */
	int next_set;
};

struct graft_rng *autograd_rng(struct graft_net *net)
{
	return &net->ag->rng;
}

static int track(struct graft_net *net, struct value *v, const char *name,
		 struct graft_err *err)
{
	struct tracked *t = array_grow(net->ag->tracked, &net->ag->cap_tracked, net->ag->n_tracked,
				       sizeof(*t));

	if (!t)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	net->ag->tracked = t;
	t[net->ag->n_tracked].v = v;
	t[net->ag->n_tracked].name = name;
	net->ag->n_tracked++;
	return 0;
}

/* Replaces a borrowed value's data with a copy the net owns. */
static int own_copy(struct value *v, struct graft_err *err)
{
	void *copy = malloc(v->nbytes ? v->nbytes : 1);

	if (!copy)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory for '%s'", v->name);
	memcpy(copy, v->data, v->nbytes);
	v->data = copy;
	v->flags &= ~(unsigned)(VALUE_CONST | VALUE_BORROWED);
	return 0;
}

static int copy_parameters(struct graft_net *net, struct graft_err *err)
{
	const struct graft_model *m = net->model;
	int rc;

	for (size_t i = 0; i < m->n_tensors; i++) {
		const struct tensor_rec *t = &m->tensors[i];
		long idx;
		struct value *v;

		if (!t->trainable || t->role != GRAFT_ROLE_PARAMETER ||
		    (idx = strmap_get(&net->by_name, t->name)) < 0)
			continue;
		v = net->values[idx];
		if (t->dtype != GRAFT_FLOAT)
			return graft_err_set(err, GRAFT_EUNSUPPORTED, "parameter '%s' is %s; only "
					     "float32 parameters can train", t->name,
					     dtype_label(t->dtype));
		/* A tensor the model holds in memory of its own is trained where it lies (no
		 * copy: a large model's weights once, not twice); one mapped from a file is
		 * read-only and copied. */
		if (t->owner == OWNER_HEAP)
			v->flags &= ~(unsigned)VALUE_CONST;
		else if ((rc = own_copy(v, err)))
			return rc;
		if ((rc = track(net, v, t->name, err)))
			return rc;
		v->flags |= VALUE_PARAM | VALUE_DIFF;
	}
	return 0;
}

/* Ops whose outputs carry no gradient whatever they read: shapes, comparisons, logic,
 * indices.  The region stops at them, so that what is computed from their outputs (a
 * ConstantOfShape of a hidden state's shape, an attention mask from Equal) is no part
 * of it: PyTorch's transformer layers build masks that way. */
static int cuts_gradient(const struct node *n)
{
	static const char *const ops[] = {"Shape", "Size", "Equal", "Less", "LessOrEqual",
		"Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "ArgMax", "ArgMin", "IsNaN",
		"IsInf", "NonZero", "BitShift", "EyeLike", NULL};

	for (size_t i = 0; ops[i]; i++)
		if (strcmp(n->op->name, ops[i]) == 0)
			return 1;
	return 0;
}

/* Nodes are in topological order (ONNX requires it): one forward sweep. */
static void mark_region(struct graft_net *net)
{
	for (size_t i = 0; i < net->n_inputs; i++)
		if (net->opts.input_grads)
			net->inputs[i]->flags |= VALUE_DIFF;
	for (size_t i = 0; i < net->n_nodes; i++) {
		struct node *n = &net->nodes[i];
		if (!autograd_region(n) || cuts_gradient(n))
			continue;
		for (size_t k = 0; k < n->n_out; k++)
			if (n->out[k])
				n->out[k]->flags |= VALUE_DIFF;
	}
}

/* Who computes each value and how many node inputs read it, by value index, as the
 * graph is when autograd_build starts: made once, so that the questions below cost a
 * lookup each instead of a sweep of the nodes (which made building quadratic). */
struct graph_index {
	const struct node **prod;
	size_t *readers;
	size_t n;               /* values indexed (values added later are not) */
};

static size_t index_of(const struct graft_net *net, const struct graph_index *gi,
		       const struct value *v)
{
	long i = v ? strmap_get(&net->by_name, v->name) : -1;
	return i < 0 || (size_t)i >= gi->n ? gi->n : (size_t)i;
}

static int graph_index_init(struct graph_index *gi, const struct graft_net *net)
{
	gi->n = net->n_values;
	gi->prod = calloc(gi->n + 1, sizeof(*gi->prod));
	gi->readers = calloc(gi->n + 1, sizeof(*gi->readers));
	if (!gi->prod || !gi->readers) {
		free(gi->prod);
		free(gi->readers);
		return -1;
	}
	for (size_t i = 0; i < net->n_nodes; i++) {
		const struct node *n = &net->nodes[i];
		for (size_t k = 0; k < n->n_out; k++) {
			size_t v = index_of(net, gi, n->out[k]);
			if (n->out[k] && !gi->prod[v])
				gi->prod[v] = n;        /* the first writer, as a scan finds it */
		}
		for (size_t k = 0; k < n->n_in; k++)
			if (n->in[k])
				gi->readers[index_of(net, gi, n->in[k])]++;
	}
	gi->prod[gi->n] = NULL;         /* the slot of values not indexed */
	gi->readers[gi->n] = 0;
	return 0;
}

static void graph_index_release(struct graph_index *gi)
{
	free(gi->prod);
	free(gi->readers);
}

static const struct node *producer_of(const struct graft_net *net,
				      const struct graph_index *gi, const struct value *v)
{
	return gi->prod[index_of(net, gi, v)];
}

/* The stored tensor v stands for, through Identity nodes; NULL if v is computed. */
static const struct value *stored_source(const struct graft_net *net,
					 const struct graph_index *gi, const struct value *v)
{
	for (int hops = 0; v && hops < 64; hops++) {
		const struct node *p;
		if (v->flags & VALUE_BORROWED)
			return v;
		if (!(p = producer_of(net, gi, v)) || strcmp(p->op->name, "Identity") != 0 ||
		    p->n_in < 1)
			return NULL;
		v = p->in[0];
	}
	return NULL;
}

/* A training-mode BatchNormalization's input k (3: mean, 4: variance) becomes a
 * net-owned copy, saved under the input's name. */
static int bn_state(struct graft_net *net, const struct graph_index *gi, struct node *n,
		    size_t k, struct graft_err *err)
{
	const struct value *src = n->n_in > k ? stored_source(net, gi, n->in[k]) : NULL;
	char name[512];
	struct value *v;
	int rc;

	if (!src || src->dtype != GRAFT_FLOAT)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "running %s is not a stored float "
				"tensor: cannot train it", k == 3 ? "mean" : "variance");
	snprintf(name, sizeof(name), "%s#train", n->in[k]->name);
	if (!(v = net_value_get_or_add(net, name, err)))
		return err->code;
	if (v->data)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "running statistics '%s' are shared "
				"by two BatchNormalization nodes", n->in[k]->name);
	value_set(v, GRAFT_FLOAT, src->rank, src->dims);
	v->data = (void *)src->data;
	v->nbytes = src->nbytes;
	if ((rc = own_copy(v, err)) || (rc = track(net, v, n->in[k]->name, err)))
		return rc;
	v->flags |= VALUE_STATE;
	n->in[k] = v;
	return 0;
}

static int add_training_node(struct graft_net *net, size_t i, struct graft_err *err)
{
	size_t *t = array_grow(net->ag->trains, &net->ag->cap_trains, net->ag->n_trains, sizeof(*t));

	if (!t)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	net->ag->trains = t;
	t[net->ag->n_trains++] = i;
	net->nodes[i].training = 1;
	return 0;
}

/* BatchNormalization whose scale or bias trains, and Dropout in the backward region. */
static int mark_training_nodes(struct graft_net *net, const struct graph_index *gi,
			       struct graft_err *err)
{
	int rc;

	for (size_t i = 0; i < net->n_nodes; i++) {
		struct node *n = &net->nodes[i];
		n->rng = &net->ag->rng;
		n->draws = &net->ag->draws;
		n->draw_salt = (uint64_t)i;
		if (strcmp(n->op->name, "BatchNormalization") == 0 && !net->opts.bn_frozen &&
		    n->n_in == 5 && ((n->in[1] && (n->in[1]->flags & VALUE_PARAM)) ||
				     (n->in[2] && (n->in[2]->flags & VALUE_PARAM)))) {
			if ((rc = bn_state(net, gi, n, 3, err)) || (rc = bn_state(net, gi, n, 4, err)) ||
			    (rc = add_training_node(net, i, err)))
				return rc;
			n->group_sum = net->opts.group_sum;
			n->group_ctx = net->opts.group_ctx;
		} else if (strcmp(n->op->name, "Dropout") == 0 && autograd_region(n) &&
			   (rc = add_training_node(net, i, err))) {
			return rc;
		}
	}
	return 0;
}

/* Ops whose backward reads their inputs (and saved state) but never their own output:
 * a Relu after one may overwrite that output in place. */
static int backward_ignores_output(const struct node *p)
{
	static const char *const ops[] = {"Conv", "BatchNormalization", "Add", "Sub", "Gemm",
					  "MatMul", NULL};

	for (size_t i = 0; ops[i]; i++)
		if (strcmp(p->op->name, ops[i]) == 0)
			return 1;
	return 0;
}

/*
 * A Relu in the backward region runs in place when nothing else reads its input: its own
 * backward needs only the sign of its output (y > 0 exactly where x > 0), and the input's
 * producer must not need its output back.  PyTorch's models do the same (ReLU(inplace)),
 * and it saves one activation of every Conv/BatchNormalization/Relu triple.
 */
static void mark_inplace(struct graft_net *net, const struct graph_index *gi)
{
	for (size_t i = 0; i < net->n_nodes; i++) {
		struct node *n = &net->nodes[i];
		struct value *x = n->n_in ? n->in[0] : NULL;
		const struct node *p;

		if (strcmp(n->op->name, "Relu") != 0 || !x || !autograd_region(n) ||
		    !(p = producer_of(net, gi, x)) || p->fused_away || !backward_ignores_output(p) ||
		    n->n_out != 1 ||
		    (x->flags & (VALUE_OUTPUT | VALUE_INPUT | VALUE_PARAM | VALUE_CONST)))
			continue;
		n->inplace = gi->readers[index_of(net, gi, x)] == 1;     /* (0 when not indexed) */
	}
}

static int build(struct graft_net *net, struct graft_err *err)
{
	int rc;

	if (!(net->ag = calloc(1, sizeof(*net->ag))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	graft_rng_seed(&net->ag->rng, net->opts.seed);
	net->ag->training = 1;
	if ((rc = copy_parameters(net, err)))
		return rc;
	mark_region(net);
	struct graph_index gi;
	if (graph_index_init(&gi, net))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if ((rc = mark_training_nodes(net, &gi, err))) {
		graph_index_release(&gi);
		return rc;
	}
	for (size_t i = 0; i < net->n_nodes; i++)
		net->nodes[i].grad = ops_find_grad(net->nodes[i].op->name);
	mark_inplace(net, &gi);
	graph_index_release(&gi);
	return 0;
}

/* ---- planning ---------------------------------------------------------------------------- */

/* A gradient value of v's shape.  Its data comes later, from the pool (plan_buffers),
 * except for parameters and graph inputs, whose gradients are read after backward and
 * get buffers of their own here. */
static struct value *grad_value(const struct value *v, int own)
{
	struct value *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	value_set(g, GRAFT_FLOAT, v->rank, v->dims);
	g->nbytes = (size_t)value_numel(v) * sizeof(float);
	if (own && !(g->data = calloc(1, g->nbytes ? g->nbytes : 1))) {
		free(g);
		return NULL;
	}
	if (!own)
		g->flags |= VALUE_BORROWED;     /* pooled: the pool frees it */
	return g;
}

static void grad_value_free(struct value *g)
{
	if (g) {
		if (!(g->flags & VALUE_BORROWED))
			free(g->data);
		free(g);
	}
}

static int owns_grad(const struct value *v)
{
	return (v->flags & (VALUE_PARAM | VALUE_INPUT)) != 0;
}

static int wants_grad(const struct value *v)
{
	return v && (v->flags & VALUE_DIFF) && v->dtype == GRAFT_FLOAT;
}

static int plan_node(struct graft_net *net, struct node *n, struct graft_err *err)
{
	for (size_t k = 0; k < n->n_out; k++)
		if (wants_grad(n->out[k]))
			n->needs_grad = 1;
	if (!n->needs_grad)
		return 0;
	if (!n->grad)
		return node_err(n, err, GRAFT_EUNSUPPORTED, "op %s has no backward in graft: "
				"freeze the parameters computed before this node", n->op->name);
	for (size_t k = 0; k < n->n_out; k++)
		if (wants_grad(n->out[k]) && !n->out[k]->grad &&
		    !(n->out[k]->grad = grad_value(n->out[k], 0)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (!(n->gin = calloc(n->n_in + 1, sizeof(*n->gin))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	(void)net;
	return 0;
}

/* gin[k]: the value's own gradient for the slot whose backward writes it first (its
 * only reader's, or of several the one that runs last; planned in reverse run order,
 * direct[v] says a slot has it), else a buffer of the slot's that backward sums into
 * the value's gradient.  So a residual connection's gradient costs one sum, not a copy
 * and a sum. */
static int plan_inputs(struct graft_net *net, struct node *n, char *direct,
		       struct graft_err *err)
{
	for (size_t k = n->n_in; k-- > 0;) {
		struct value *v = n->in[k];
		if (!wants_grad(v))
			continue;
		if (!v->grad && !(v->grad = grad_value(v, owns_grad(v))))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		long i = strmap_get(&net->by_name, v->name);
		if (!direct[i])
			n->gin[k] = v->grad;
		else if (!(n->gin[k] = grad_value(v, 0)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		direct[i] = 1;
	}
	return 0;
}

/*
 * Gradient buffers are pooled by lifetime.  Backward visits the run list in reverse; at
 * its step t a node reads its outputs' gradients and writes its inputs'.  So a value's
 * gradient lives from the first step that writes it (its last reader's, or before
 * backward for a seeded graph output) to its producer's step, and a slot's summing buffer
 * (gin of a value with several readers) for its reader's step alone.  Buffers are handed
 * out in order of birth, best fit, and one comes free after its last reader's step (not
 * at it: that step still reads it).  The gradients of a network's activations then take
 * about the room of the few live at once, not one buffer per activation.
 */
struct interval {
	struct value *g;
	long birth, death;      /* backward steps; -1: before the first */
};

static int by_birth(const void *a, const void *b)
{
	const struct interval *x = a, *y = b;
	return (x->birth > y->birth) - (x->birth < y->birth);
}

static int add_interval(struct interval **iv, size_t *n, size_t *cap, struct value *g,
			long birth, long death)
{
	struct interval *p = array_grow(*iv, cap, *n, sizeof(*p));

	if (!p)
		return -1;
	*iv = p;
	(*iv)[(*n)++] = (struct interval){g, birth, death};
	return 0;
}

/* For each value (by index), the last run step whose node takes a gradient for it: the
 * first backward step that writes the value's gradient; -1 for none. */
static long *last_grad_readers(const struct graft_net *net)
{
	long *last = malloc((net->n_values + 1) * sizeof(*last));

	if (!last)
		return NULL;
	for (size_t i = 0; i <= net->n_values; i++)
		last[i] = -1;
	for (size_t r = 0; r < net->n_run; r++) {
		const struct node *c = &net->nodes[net->run_list[r]];
		for (size_t j = 0; c->gin && j < c->n_in; j++) {
			long i = c->in[j] && c->gin[j] ? strmap_get(&net->by_name, c->in[j]->name)
						       : -1;
			if (i >= 0)
				last[i] = (long)r;
		}
	}
	return last;
}

/* The intervals of every pooled gradient (value gradients and summing buffers). */
static int collect_intervals(struct graft_net *net, struct interval **iv, size_t *n)
{
	size_t cap = 0, R = net->n_run;
	long *last = last_grad_readers(net);

	*iv = NULL;
	*n = 0;
	if (!last)
		return -1;
	for (size_t r = 0; r < R; r++) {
		struct node *nd = &net->nodes[net->run_list[r]];
		long t = (long)(R - 1 - r);
		if (!nd->needs_grad)
			continue;
		for (size_t k = 0; k < nd->n_out; k++) {
			struct value *v = nd->out[k];
			long birth = t;
			if (!v || !v->grad || owns_grad(v))
				continue;
			long l = last[strmap_get(&net->by_name, v->name)];
			if (v->flags & VALUE_OUTPUT)
				birth = -1;
			if (l > (long)r && (long)(R - 1) - l < birth)
				birth = (long)(R - 1) - l;
			if (add_interval(iv, n, &cap, v->grad, birth, t))
				goto oom;
		}
		for (size_t k = 0; k < nd->n_in; k++)
			if (nd->gin[k] && nd->gin[k] != nd->in[k]->grad &&
			    add_interval(iv, n, &cap, nd->gin[k], t, t))
				goto oom;
	}
	free(last);
	return 0;
oom:
	free(last);
	return -1;
}

struct pooled {
	void *data;
	size_t size;
	long free_after;        /* the step after which it is free again */
};

static int plan_buffers(struct graft_net *net, struct graft_err *err)
{
	struct interval *iv;
	size_t n;

	if (collect_intervals(net, &iv, &n))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (n)
		qsort(iv, n, sizeof(*iv), by_birth);
	for (size_t i = 0; i < n; i++) {
		size_t need = iv[i].g->nbytes ? iv[i].g->nbytes : 1;
		long best = -1;
		for (size_t b = 0; b < net->ag->n_pool; b++) {
			struct pooled *p = &net->ag->pool[b];
			if (p->free_after < iv[i].birth && p->size >= need &&
			    (best < 0 || p->size < net->ag->pool[best].size))
				best = (long)b;
		}
		if (best < 0) {
			struct pooled *p = array_grow(net->ag->pool, &net->ag->cap_pool, net->ag->n_pool,
						      sizeof(*p));
			if (!p || !(p[net->ag->n_pool].data = malloc(need))) {
				if (p)
					net->ag->pool = p;
				free(iv);
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory for gradients");
			}
			net->ag->pool = p;
			p[net->ag->n_pool].size = need;
			best = (long)net->ag->n_pool++;
		}
		net->ag->pool[best].free_after = iv[i].death;
		iv[i].g->data = net->ag->pool[best].data;
	}
	free(iv);
	return 0;
}

/* The values nodes of the backward region read that the frozen part computed from the
 * inputs (not parameters, state or constants): a trainer may cache them per sample. */
static int plan_boundary(struct graft_net *net, struct graft_err *err)
{
	char *seen = calloc(net->n_values + 1, 1);       /* by value index */

	free(net->ag->boundary);
	net->ag->n_boundary = 0;
	if (!seen || !(net->ag->boundary = calloc(net->n_values + 1, sizeof(*net->ag->boundary)))) {
		free(seen);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t r = 0; r < net->n_run; r++) {
		const struct node *n = &net->nodes[net->run_list[r]];
		if (!autograd_region(n))
			continue;
		for (size_t k = 0; k < n->n_in; k++) {
			struct value *v = n->in[k];
			long i;
			if (!v || (v->flags & (VALUE_DIFF | VALUE_CONST | VALUE_PARAM | VALUE_STATE)))
				continue;
			if ((i = strmap_get(&net->by_name, v->name)) >= 0 && !seen[i]) {
				seen[i] = 1;
				net->ag->boundary[net->ag->n_boundary++] = v;
			}
		}
	}
	free(seen);
	return 0;
}

static int plan(struct graft_net *net, struct graft_err *err)
{
	int rc;

	if ((rc = plan_boundary(net, err)))
		return rc;
	for (size_t r = 0; r < net->n_run; r++)
		if ((rc = plan_node(net, &net->nodes[net->run_list[r]], err)))
			return rc;
	char *direct = calloc(net->n_values + 1, 1);
	if (!direct)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t r = net->n_run; r-- > 0;) {
		struct node *n = &net->nodes[net->run_list[r]];
		if (n->needs_grad && (rc = plan_inputs(net, n, direct, err))) {
			free(direct);
			return rc;
		}
	}
	free(direct);
	return plan_buffers(net, err);
}

static void unplan(struct graft_net *net)
{
	if (!net->ag)           /* build never ran: nothing planned */
		return;
	for (size_t i = 0; i < net->n_nodes; i++) {
		struct node *n = &net->nodes[i];
		if (n->gin) {
			for (size_t k = 0; k < n->n_in; k++)
				if (n->gin[k] && (!n->in[k] || n->gin[k] != n->in[k]->grad))
					grad_value_free(n->gin[k]);
			free(n->gin);
			n->gin = NULL;
		}
		n->needs_grad = 0;
	}
	for (size_t i = 0; i < net->n_values; i++) {
		grad_value_free(net->values[i]->grad);
		net->values[i]->grad = NULL;
	}
	for (size_t b = 0; b < net->ag->n_pool; b++)
		free(net->ag->pool[b].data);
	free(net->ag->pool);
	net->ag->pool = NULL;
	net->ag->n_pool = net->ag->cap_pool = 0;
}

static void release(struct graft_net *net)
{
	if (!net->ag)
		return;
	free(net->ag->boundary);
	free(net->ag->tracked);
	free(net->ag->trains);
	free(net->ag);
	net->ag = NULL;
}

static uint64_t gradient_bytes(const struct graft_net *net)
{
	uint64_t bytes = 0;

	for (size_t t = 0; net->ag && t < net->ag->n_tracked; t++)
		if (net->ag->tracked[t].v->flags & VALUE_PARAM)
			bytes += net->ag->tracked[t].v->nbytes;
	return bytes;
}

/* A training-mode run's Dropout key: graft_net_draw_rows's when set, else the next of
 * the net's generator, rows counted from 0. */
static void begin_run(struct graft_net *net)
{
	struct autograd *ag = net->ag;

	if (!ag->training)
		return;
	if (ag->next_set) {
		ag->draws = ag->next;
		ag->next_set = 0;
	} else {
		ag->draws = (struct draws){graft_rng_next(&ag->rng), 0};
	}
}

void graft_net_draw_rows(struct graft_net *net, uint64_t key, int64_t first_row)
{
	if (net->ag) {
		net->ag->next = (struct draws){key, first_row};
		net->ag->next_set = 1;
	}
}

const struct net_hooks autograd_hooks = {
	.build = build, .plan = plan, .unplan = unplan, .gradient_bytes = gradient_bytes,
	.release = release, .begin_run = begin_run,
};

/* ---- running --------------------------------------------------------------------------- */

void graft_net_set_training(struct graft_net *net, int on)
{
	on = on != 0;
	if (!net->ag || net->ag->training == on)
		return;
	net->ag->training = on;
	for (size_t i = 0; i < net->ag->n_trains; i++) {
		struct node *n = &net->nodes[net->ag->trains[i]];
		n->training = on;
		if (n->op->release && n->priv)
			n->op->release(n);      /* kernels build per mode */
		n->priv = NULL;
	}
}

/* Elements below which a parallel region costs more than it saves. */
#define PAR_MIN 32768

static void add_into(struct value *dst, const struct value *src, int first)
{
	float *d = dst->data;
	const float *s = src->data;
	int64_t count = (int64_t)value_numel(dst);

#pragma omp parallel for simd if (count >= PAR_MIN)
	for (int64_t i = 0; i < count; i++)
		d[i] = first ? s[i] : d[i] + s[i];
}

/* Marks which gradients hold a contribution yet (ready), so that the first one is copied
 * and the rest added, and a gradient nothing reached reads as zero. */
#define GRAD_READY VALUE_CONST  /* reused on gradient values, which are never constants */

static void clear_ready(struct graft_net *net)
{
	for (size_t i = 0; i < net->n_values; i++)
		if (net->values[i]->grad)
			net->values[i]->grad->flags &= ~(unsigned)GRAD_READY;
}

static void zero_if_unreached(struct value *g)
{
	if (!(g->flags & GRAD_READY)) {
		memset(g->data, 0, g->nbytes);
		g->flags |= GRAD_READY;
	}
}

static int seed_outputs(struct graft_net *net, const struct graft_array *og, size_t n,
			struct graft_err *err)
{
	if (n != net->n_outputs)
		return graft_err_set(err, GRAFT_EINVAL, "%zu output gradients for %zu outputs", n,
				     net->n_outputs);
	for (size_t i = 0; i < n; i++) {
		struct value *v = net->outputs[i];
		if (!v->grad || !og[i].data)
			continue;
		if (og[i].dtype != GRAFT_FLOAT || og[i].nbytes != v->grad->nbytes)
			return graft_err_set(err, GRAFT_EINVAL, "gradient of output '%s' must be "
					     "float of its shape", v->name);
		memcpy(v->grad->data, og[i].data, og[i].nbytes);
		v->grad->flags |= GRAD_READY;
	}
	return 0;
}

static int backward_node(struct node *n, struct graft_err *err)
{
	int rc;

	for (size_t k = 0; k < n->n_out; k++)
		if (n->out[k] && n->out[k]->grad)
			zero_if_unreached(n->out[k]->grad);
	if ((rc = n->grad->backward(n, err)))
		return rc;
	/* the slot that wrote a gradient itself first (plan_inputs), then the sums */
	for (size_t k = 0; k < n->n_in; k++)
		if (n->gin[k] && n->gin[k] == n->in[k]->grad)
			n->gin[k]->flags |= GRAD_READY;
	for (size_t k = 0; k < n->n_in; k++) {
		struct value *g = n->gin[k] ? n->in[k]->grad : NULL;
		if (!g || n->gin[k] == g)
			continue;
		add_into(g, n->gin[k], !(g->flags & GRAD_READY));
		g->flags |= GRAD_READY;
	}
	return 0;
}

/* Where each parameter's gradient becomes final: the run position of the first node (in
 * run order, so the last in backward) that takes a gradient for it, into at[] by
 * tracked index; -1 for none (zeroed after the backward).  Then the parameters sorted
 * by it, the latest position first (ties in tracked order), into order[]; their count,
 * or SIZE_MAX without memory. */
struct grad_at {
	long at;
	size_t i;
};

static int by_grad_at(const void *a, const void *b)
{
	const struct grad_at *x = a, *y = b;
	/* positions descending (so -1, never, last), then tracked order */
	if (x->at != y->at)
		return x->at > y->at ? -1 : 1;
	return (x->i > y->i) - (x->i < y->i);
}

static size_t grad_positions(const struct graft_net *net, long *at, size_t *order)
{
	size_t T = net->ag->n_tracked, n = 0;
	long *tracked_of = malloc(sizeof(long) * (net->n_values + 1));
	struct grad_at *g = malloc(sizeof(*g) * (T + 1));

	if (!tracked_of || !g) {
		free(tracked_of);
		free(g);
		return SIZE_MAX;
	}
	for (size_t v = 0; v < net->n_values; v++)
		tracked_of[v] = -1;
	for (size_t i = 0; i < T; i++) {
		long v = strmap_get(&net->by_name, net->ag->tracked[i].v->name);
		if (v >= 0)
			tracked_of[v] = (long)i;
		at[i] = -1;
	}
	for (size_t r = net->n_run; r-- > 0;) {
		const struct node *c = &net->nodes[net->run_list[r]];
		for (size_t j = 0; c->needs_grad && c->gin && j < c->n_in; j++) {
			long v = c->gin[j] && c->in[j] ? strmap_get(&net->by_name, c->in[j]->name) : -1;
			if (v >= 0 && tracked_of[v] >= 0)
				at[tracked_of[v]] = (long)r;
		}
	}
	for (size_t i = 0; i < T; i++)
		if (net->ag->tracked[i].v->flags & VALUE_PARAM)
			g[n++] = (struct grad_at){at[i], i};
	qsort(g, n, sizeof(*g), by_grad_at);
	for (size_t k = 0; k < n; k++)
		order[k] = g[k].i;
	free(tracked_of);
	free(g);
	return n;
}

size_t graft_net_grad_order(const struct graft_net *net, size_t *tensors)
{
	long *at;
	size_t n;

	if (!net->ag || !(at = malloc(sizeof(long) * (net->ag->n_tracked + 1))))
		return 0;
	n = grad_positions(net, at, tensors);
	free(at);
	return n == SIZE_MAX ? 0 : n;
}

int graft_net_backward(struct graft_net *net, const struct graft_array *out_grads, size_t n,
		       struct graft_err *err)
{
	int (*ready)(void *, size_t, struct graft_err *) = net->opts.grad_ready;
	size_t *order = NULL, n_order = 0, next = 0;
	long *at = NULL;
	int rc;

	if (!net->ag || !net->planned)
		return graft_err_set(err, GRAFT_EINVAL, "backward needs a training net after a run");
	if (ready) {
		at = malloc(sizeof(long) * (net->ag->n_tracked + 1));
		order = malloc(sizeof(size_t) * (net->ag->n_tracked + 1));
		if (!at || !order || (n_order = grad_positions(net, at, order)) == SIZE_MAX) {
			free(at);
			free(order);
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
	}
	clear_ready(net);
	if ((rc = seed_outputs(net, out_grads, n, err)))
		goto out;
	for (size_t r = net->n_run; r-- > 0;) {
		struct node *node = &net->nodes[net->run_list[r]];
		if (node->needs_grad && (rc = net_timed(net, net->run_list[r], backward_node, 1, err)))
			goto out;
		for (; next < n_order && at[order[next]] == (long)r; next++)
			if ((rc = ready(net->opts.grad_ctx, order[next], err)))
				goto out;
	}
	for (size_t i = 0; i < net->n_values; i++)
		if (net->values[i]->grad && (net->values[i]->flags & (VALUE_PARAM | VALUE_INPUT)))
			zero_if_unreached(net->values[i]->grad);
	for (; next < n_order; next++)          /* those no node reached: zeros */
		if ((rc = ready(net->opts.grad_ctx, order[next], err)))
			goto out;
out:
	free(at);
	free(order);
	return rc;
}

/* ---- access ---------------------------------------------------------------------------- */

size_t graft_net_tensor_count(const struct graft_net *net)
{
	return net->ag ? net->ag->n_tracked : 0;
}

void graft_net_tensor(const struct graft_net *net, size_t i, struct graft_net_tensor *t)
{
	const struct value *v = net->ag->tracked[i].v;

	t->name = net->ag->tracked[i].name;
	t->is_param = (v->flags & VALUE_PARAM) != 0;
	t->rank = v->rank;
	t->dims = v->dims;
	t->numel = value_numel(v);
	t->data = v->data;
	t->grad = v->grad ? v->grad->data : NULL;
}

int graft_net_input_grad(const struct graft_net *net, size_t i, struct graft_array *view,
			 struct graft_err *err)
{
	const struct value *v = i < net->n_inputs ? net->inputs[i] : NULL;

	if (!v || !v->grad)
		return graft_err_set(err, GRAFT_EINVAL, "no gradient for input %zu", i);
	memset(view, 0, sizeof(*view));
	view->name = v->name;
	view->dtype = GRAFT_FLOAT;
	view->rank = v->rank;
	memcpy(view->dims, v->dims, sizeof(int64_t) * (size_t)v->rank);
	view->data = v->grad->data;
	view->nbytes = v->grad->nbytes;
	return 0;
}

/* ---- the frozen part's boundary --------------------------------------------------------- */

size_t graft_net_boundary_count(const struct graft_net *net)
{
	return net->planned && net->ag ? net->ag->n_boundary : 0;
}

int graft_net_boundary(const struct graft_net *net, size_t i, struct graft_array *view)
{
	const struct value *v;

	if (!net->planned || !net->ag || i >= net->ag->n_boundary)
		return -1;
	v = net->ag->boundary[i];
	memset(view, 0, sizeof(*view));
	view->name = v->name;
	view->dtype = v->dtype;
	view->rank = v->rank;
	memcpy(view->dims, v->dims, sizeof(int64_t) * (size_t)v->rank);
	view->data = v->data;
	view->nbytes = v->nbytes;
	return (v->flags & VALUE_INPUT) ? 1 : 0;
}
