/*
 * roles.c: what each stored tensor is for (parameter, buffer, constant), judged from the
 * slots that read it, and the Identity aliases that name stored tensors (torch exports
 * equal initializers this way), derived from the graph on every read and after edits.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"

/* ---- roles ------------------------------------------------------------------------------ */

/* What feeding input k of an op makes of a tensor.  Learnable unless the slot holds
 * BatchNormalization's running statistics or configuration (shapes, pads, bounds...). */
static enum graft_role slot_role(const char *op, size_t k)
{
	static const struct { const char *op; unsigned slots; } config[] = {
		{"Reshape", 1 << 1}, {"Clip", 1 << 1 | 1 << 2}, {"Pad", 1 << 1 | 1 << 2 | 1 << 3},
		{"Resize", 1 << 1 | 1 << 2 | 1 << 3}, {"Upsample", 1 << 1}, {"Tile", 1 << 1},
		{"Slice", 0x1e}, {"Expand", 1 << 1}, {"Squeeze", 1 << 1}, {"Unsqueeze", 1 << 1},
		{"Split", 1 << 1}, {"TopK", 1 << 1}, {"OneHot", 1 << 1 | 1 << 2}, {"Range", 7},
		{"ConstantOfShape", 1}, {"Dropout", 1 << 1 | 1 << 2}, {"Pow", 1 << 1},
		{"ReduceSum", 1 << 1}, {"ReduceMean", 1 << 1}, {"ReduceMax", 1 << 1},
		{"ReduceMin", 1 << 1}, {"ReduceProd", 1 << 1}, {"ReduceL2", 1 << 1},
		{"Gather", 1 << 1}, {"Where", 1}, {"CumSum", 1 << 1}, {"Trilu", 1 << 1},
	};

	if (strcmp(op, "BatchNormalization") == 0 && (k == 3 || k == 4))
		return GRAFT_ROLE_BUFFER;
	for (size_t i = 0; i < sizeof(config) / sizeof(config[0]); i++)
		if (strcmp(op, config[i].op) == 0)
			return k < 32 && (config[i].slots >> k) & 1 ? GRAFT_ROLE_CONSTANT
								    : GRAFT_ROLE_PARAMETER;
	return GRAFT_ROLE_PARAMETER;
}

static int is_identity(const Onnx__NodeProto *n)
{
	return n->op_type && strcmp(n->op_type, "Identity") == 0 && n->n_input == 1 &&
	       n->n_output == 1 && n->input[0] && n->output[0];
}

/* Uses of stored tensors, by name: entry i < n_tensors is tensor i itself, later entries
 * are Identity aliases of some tensor. */
struct role_entry {
	const char *name;       /* borrowed from the graph */
	size_t target;          /* the tensor the entry stands for */
	unsigned char uses;     /* bit 0: learnable use, bit 1: running statistics */
};

struct role_ctx {
	struct strmap names;    /* value name -> entry */
	size_t n, cap;
	struct role_entry *e;   /* (n) */
};

static void role_ctx_release(struct role_ctx *rc)
{
	strmap_release(&rc->names);
	free(rc->e);
}

/* Adds an entry for name; a detached tensor's entry is not findable by name, since its
 * name may also be a graph value it has nothing to do with. */
static int add_entry(struct role_ctx *rc, const char *name, size_t target, int findable)
{
	struct role_entry *e = array_grow(rc->e, &rc->cap, rc->n, sizeof(*e));

	if (!e)
		return GRAFT_ENOMEM;
	rc->e = e;
	rc->e[rc->n] = (struct role_entry){name, target, 0};
	if (findable && strmap_put(&rc->names, name, (long)rc->n) == -2)
		return GRAFT_ENOMEM;
	rc->n++;
	return 0;
}

/* Records the use of stored values by every node of g (subgraphs included: a branch of
 * an If that reads a weight is a consumer like any other). */
static void record_uses(struct role_ctx *rc, const Onnx__GraphProto *g, int depth)
{
	if (depth > GRAFT_MAX_GRAPH_DEPTH)
		return;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!is_identity(n))
			for (size_t k = 0; k < n->n_input; k++) {
				long e = n->input[k] ? strmap_get(&rc->names, n->input[k]) : -1;
				if (e < 0)
					continue;
				enum graft_role r = slot_role(n->op_type ? n->op_type : "", k);
				rc->e[e].uses |= r == GRAFT_ROLE_PARAMETER ? 1 : r == GRAFT_ROLE_BUFFER ? 2 : 0;
			}
		for (size_t j = 0; j < n->n_attribute; j++) {
			const Onnx__AttributeProto *a = n->attribute[j];
			if (a->g)
				record_uses(rc, a->g, depth + 1);
			for (size_t k = 0; k < a->n_graphs; k++)
				record_uses(rc, a->graphs[k], depth + 1);
		}
	}
}

static enum graft_role role_of(const struct tensor_rec *t, unsigned uses)
{
	if (!graft_dtype_is_float(t->dtype) || t->numel <= 1)
		return GRAFT_ROLE_CONSTANT;
	return uses & 1 ? GRAFT_ROLE_PARAMETER : uses & 2 ? GRAFT_ROLE_BUFFER
							   : GRAFT_ROLE_CONSTANT;
}

/* A min-heap of (pass << 32 | node index) keys. */
static void heap_push(uint64_t *h, size_t *n, uint64_t key)
{
	size_t i = (*n)++;

	for (; i > 0 && h[(i - 1) / 2] > key; i = (i - 1) / 2)
		h[i] = h[(i - 1) / 2];
	h[i] = key;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
	uint64_t top = h[0], last = h[--*n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] < h[c])
			c++;
		if (h[c] >= last)
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = last;
	return top;
}

/*
 * Identity chains may appear in any order.  The entries are added in the order that
 * scanning the node list again and again until nothing changes would add them (node
 * order within a scan; a node whose input a later node names waits for the next scan),
 * but each node is looked at once, when its input gets a name: a chain listed
 * backwards costs n log n, not n^2.
 */
static int add_identity_entries(struct role_ctx *rc, const Onnx__GraphProto *g)
{
	size_t n = g->n_node, n_heap = 0;
	struct strmap waiting;          /* input name -> first Identity node reading it */
	long *next = malloc((n + 1) * sizeof(*next));   /* next Identity with that input */
	uint64_t *heap = malloc((n + 1) * sizeof(*heap));
	int rc_status = GRAFT_ENOMEM;

	if (strmap_init(&waiting, 16)) {
		free(next);
		free(heap);
		return GRAFT_ENOMEM;
	}
	if (!next || !heap || n > UINT32_MAX)
		goto out;
	for (size_t i = n; i-- > 0; ) {         /* backwards, so that lists run forwards */
		next[i] = -1;
		if (is_identity(g->node[i]) &&
		    (next[i] = strmap_put(&waiting, g->node[i]->input[0], (long)i)) == -2)
			goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (is_identity(g->node[i]) && strmap_get(&rc->names, g->node[i]->input[0]) >= 0)
			heap_push(heap, &n_heap, i);
	/* Every node enters the heap once at most: when the one name it reads appears. */
	while (n_heap) {
		uint64_t key = heap_pop(heap, &n_heap), pass = key >> 32;
		size_t i = (size_t)(key & UINT32_MAX);
		const Onnx__NodeProto *nd = g->node[i];
		if (strmap_get(&rc->names, nd->output[0]) >= 0)
			continue;
		long e = strmap_get(&rc->names, nd->input[0]);
		if (add_entry(rc, nd->output[0], rc->e[e].target, 1))
			goto out;
		for (long j = strmap_get(&waiting, nd->output[0]); j >= 0; j = next[j])
			heap_push(heap, &n_heap, ((size_t)j > i ? pass : pass + 1) << 32 | (uint64_t)j);
	}
	rc_status = 0;
out:
	strmap_release(&waiting);
	free(next);
	free(heap);
	return rc_status;
}

/* Finds the Identity aliases of stored tensors and how every name is used. */
static int collect_uses(struct graft_model *m, struct role_ctx *rc, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;

	memset(rc, 0, sizeof(*rc));
	if (strmap_init(&rc->names, m->n_tensors + 16))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_tensors; i++)
		if (add_entry(rc, m->tensors[i].name, i,
			      m->tensors[i].source != GRAFT_SOURCE_DETACHED))
			goto nomem;
	if (add_identity_entries(rc, g))
		goto nomem;
	record_uses(rc, g, 0);
	return 0;
nomem:
	role_ctx_release(rc);
	return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
}

/* Keeps the alias list of m (derived from the graph, never stored). */
static int keep_aliases(struct graft_model *m, const struct role_ctx *rc, struct graft_err *err)
{
	size_t n = rc->n - m->n_tensors;

	m->aliases = calloc(n + 1, sizeof(*m->aliases));
	if (!m->aliases)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t k = 0; k < n; k++) {
		size_t e = m->n_tensors + k;
		struct alias_rec *a = &m->aliases[k];
		if (!(a->name = strdup(rc->e[e].name)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		a->target = rc->e[e].target;
		a->role = role_of(&m->tensors[a->target], rc->e[e].uses);
		m->n_aliases++;
	}
	return 0;
}

/*
 * Parameters are floating-point tensors that some node uses in a learnable slot;
 * BatchNormalization running statistics are buffers; everything else is a constant.
 * Uses are followed through Identity nodes, which torch's exporter inserts to alias one
 * initializer under several names: a tensor used as a parameter under any of its names
 * is a parameter, and each alias gets the role of its own uses (so that training can
 * give an alias used as a buffer its own copy).  A single-element tensor (an epsilon, a
 * scale) is a constant: graft does not train scalars.
 */
int roles_assign(struct graft_model *m, int set_tensor_roles, struct graft_err *err)
{
	struct role_ctx rc;
	int rc_status;

	if ((rc_status = collect_uses(m, &rc, err)))
		return rc_status;
	if (set_tensor_roles) {
		unsigned char *all = calloc(m->n_tensors + 1, 1);
		if (!all) {
			role_ctx_release(&rc);
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
		for (size_t e = 0; e < rc.n; e++)
			all[rc.e[e].target] |= rc.e[e].uses;
		for (size_t i = 0; i < m->n_tensors; i++) {
			struct tensor_rec *t = &m->tensors[i];
			t->role = role_of(t, all[i]);
			t->trainable = t->role == GRAFT_ROLE_PARAMETER;
		}
		free(all);
	}
	rc_status = keep_aliases(m, &rc, err);
	role_ctx_release(&rc);
	return rc_status;
}

int roles_find_aliases(struct graft_model *m, struct graft_err *err)
{
	return roles_assign(m, 0, err);
}

