/*
 * graph.c: the questions graph surgery asks of a model's skeleton (head.c, fold.c, edit.c,
 * cuts.c): which op a node is, its attributes, who reads a value and who computes it,
 * and which stored tensor a name stands for.  Reads count subgraphs too, since a branch
 * of an If or the body of a Loop may read any value of the graphs around it by name: a
 * value only a subgraph reads is still read, and must be neither removed nor renamed.
 */
#include <string.h>

#include "model/model.h"

#define MAX_DEPTH 64            /* subgraph nesting followed */

const char graph_too_deep[] = "";

int graph_is_op(const Onnx__NodeProto *n, const char *op)
{
	return n->op_type && strcmp(n->op_type, op) == 0 &&
	       (!n->domain || !*n->domain || strcmp(n->domain, "ai.onnx") == 0);
}

Onnx__AttributeProto *graph_attr(const Onnx__NodeProto *n, const char *name)
{
	for (size_t i = 0; i < n->n_attribute; i++)
		if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
			return n->attribute[i];
	return NULL;
}

int64_t graph_attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt)
{
	const Onnx__AttributeProto *a = graph_attr(n, name);
	return a ? a->i : dflt;
}

float graph_attr_float(const Onnx__NodeProto *n, const char *name, float dflt)
{
	const Onnx__AttributeProto *a = graph_attr(n, name);
	return a ? a->f : dflt;
}

static int walk_graph(const Onnx__GraphProto *g, graph_name_fn fn, void *ctx, int depth);

static int walk_subgraphs(const Onnx__NodeProto *n, graph_name_fn fn, void *ctx, int depth)
{
	int rc;

	for (size_t j = 0; j < n->n_attribute; j++) {
		const Onnx__AttributeProto *a = n->attribute[j];
		if (a->g && (rc = walk_graph(a->g, fn, ctx, depth + 1)))
			return rc;
		for (size_t k = 0; k < a->n_graphs; k++)
			if ((rc = walk_graph(a->graphs[k], fn, ctx, depth + 1)))
				return rc;
	}
	return 0;
}

static int walk_node(const Onnx__NodeProto *n, graph_name_fn fn, void *ctx, int depth)
{
	int rc;

	for (size_t k = 0; k < n->n_input; k++)
		if (n->input[k] && *n->input[k] && (rc = fn(n->input[k], ctx)))
			return rc;
	return walk_subgraphs(n, fn, ctx, depth);
}

/* A graph nested deeper than MAX_DEPTH counts as reading GRAPH_TOO_DEEP, a name no
 * value has, so that counters can tell. */
static int walk_graph(const Onnx__GraphProto *g, graph_name_fn fn, void *ctx, int depth)
{
	int rc;

	if (depth > MAX_DEPTH)
		return fn(GRAPH_TOO_DEEP, ctx);
	for (size_t i = 0; i < g->n_node; i++)
		if ((rc = walk_node(g->node[i], fn, ctx, depth)))
			return rc;
	for (size_t i = 0; i < g->n_output; i++)
		if (g->output[i]->name && (rc = fn(g->output[i]->name, ctx)))
			return rc;
	return 0;
}

int graph_node_reads(const Onnx__NodeProto *n, graph_name_fn fn, void *ctx)
{
	return walk_node(n, fn, ctx, 0);
}

struct count {
	const char *name;
	size_t n;
};

/* A subgraph too deep to look into may read anything: it counts as a read. */
static int count_one(const char *name, void *ctx)
{
	struct count *c = ctx;

	c->n += name == GRAPH_TOO_DEEP || strcmp(name, c->name) == 0;
	return 0;
}

size_t graph_read_count(const Onnx__GraphProto *g, const char *name)
{
	struct count c = {name, 0};

	walk_graph(g, count_one, &c, 0);
	return c.n;
}

/* Counts every name read, for graph_reads_init. */
static int count_all(const char *name, void *ctx)
{
	struct graph_reads *r = ctx;

	if (name == GRAPH_TOO_DEEP) {
		r->too_deep = 1;
		return 0;
	}
	return graph_reads_add(r, name, 1);
}

static int reads_begin(struct graph_reads *r, const Onnx__GraphProto *g)
{
	r->too_deep = 0;
	return strmap_init(&r->counts, g->n_node + g->n_output + 16);
}

int graph_reads_init(struct graph_reads *r, const Onnx__GraphProto *g)
{
	if (reads_begin(r, g))
		return -1;
	if (walk_graph(g, count_all, r, 0)) {
		graph_reads_release(r);
		return -1;
	}
	return 0;
}

int graph_subgraph_reads_init(struct graph_reads *r, const Onnx__GraphProto *g)
{
	if (reads_begin(r, g))
		return -1;
	for (size_t i = 0; i < g->n_node; i++)
		if (walk_subgraphs(g->node[i], count_all, r, 0)) {
			graph_reads_release(r);
			return -1;
		}
	return 0;
}

size_t graph_reads_count(const struct graph_reads *r, const char *name)
{
	long n = strmap_get(&r->counts, name);
	return (size_t)(n < 0 ? 0 : n) + (size_t)r->too_deep;
}

int graph_reads_add(struct graph_reads *r, const char *name, long delta)
{
	long n = strmap_get(&r->counts, name);

	n = (n < 0 ? 0 : n) + delta;
	return strmap_put_copy(&r->counts, name, n < 0 ? 0 : n) == -2 ? -1 : 0;
}

void graph_reads_release(struct graph_reads *r)
{
	strmap_release_copies(&r->counts);
}

int graph_defined_init(struct strmap *defined, const Onnx__GraphProto *g)
{
	if (strmap_init(defined, g->n_node + g->n_input + 16))
		return -1;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++)
			if (g->node[i]->output[k] && *g->node[i]->output[k] &&
			    strmap_put_copy(defined, g->node[i]->output[k], 1) == -2)
				goto nomem;
	for (size_t i = 0; i < g->n_input; i++)
		if (g->input[i]->name && strmap_put_copy(defined, g->input[i]->name, 1) == -2)
			goto nomem;
	return 0;
nomem:
	strmap_release_copies(defined);
	return -1;
}

size_t graph_subgraph_read_count(const Onnx__GraphProto *g, const char *name)
{
	struct count c = {name, 0};

	for (size_t i = 0; i < g->n_node; i++)
		walk_subgraphs(g->node[i], count_one, &c, 0);
	return c.n;
}

long graph_producer(const Onnx__GraphProto *g, const char *name)
{
	if (!*name)
		return -1;      /* an optional output left out, never a value */
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++)
			if (g->node[i]->output[k] && strcmp(g->node[i]->output[k], name) == 0)
				return (long)i;
	return -1;
}

int graph_is_input(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_input; i++)
		if (g->input[i]->name && strcmp(g->input[i]->name, name) == 0)
			return 1;
	return 0;
}

int graph_is_output(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_output; i++)
		if (g->output[i]->name && strcmp(g->output[i]->name, name) == 0)
			return 1;
	return 0;
}

int64_t model_default_opset(const struct graft_model *m)
{
	return proto_default_opset(m->proto);
}

int64_t proto_default_opset(const Onnx__ModelProto *p)
{
	for (size_t i = 0; i < p->n_opset_import; i++) {
		const Onnx__OperatorSetIdProto *o = p->opset_import[i];
		if (!o->domain || !*o->domain || strcmp(o->domain, "ai.onnx") == 0)
			return o->version;
	}
	/* Before IR version 3 models had no opset_import, and ONNX reads them as opset 1
	 * (onnx/checker.cc); a model that imports opsets but not the default domain's has
	 * none, and no runtime can resolve its default-domain nodes. */
	return p->n_opset_import == 0 ? 1 : 0;
}

long model_stored(const struct graft_model *m, const char *name)
{
	long t = name && *name ? graft_model_find_tensor(m, name) : -1;

	if (t >= 0)
		return m->tensors[t].source == GRAFT_SOURCE_DETACHED ? -1 : t;
	for (size_t a = 0; name && a < m->n_aliases; a++)
		if (strcmp(m->aliases[a].name, name) == 0)
			return (long)m->aliases[a].target;
	return -1;
}
