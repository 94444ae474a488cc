/*
 * engine.h: the executor's state, shared by net.c (building, planning, running) and
 * autograd.c (training: parameters, gradients, backward).  Internal to libgraft.
 */
#ifndef GRAFT_ENGINE_H
#define GRAFT_ENGINE_H

#include "engine/ops/ops.h"

/* A training net's state: autograd.c's, opaque to the executor (NULL for inference). */
struct autograd;

/* What a training net adds to the executor: autograd.c supplies these (autograd_hooks)
 * and net.c calls them at fixed points of a net's life, knowing nothing else of
 * training; an inference net has none. */
struct net_hooks {
	/* After the nodes are added, before fusion (which leaves the region alone). */
	int (*build)(struct graft_net *net, struct graft_err *err);
	/* At the end of each plan; unplan undoes it. */
	int (*plan)(struct graft_net *net, struct graft_err *err);
	void (*unplan)(struct graft_net *net);
	/* Bytes of the gradients a plan keeps besides the activations (graft_net_estimate). */
	uint64_t (*gradient_bytes)(const struct graft_net *net);
	/* Frees what build made. */
	void (*release)(struct graft_net *net);
	/* At the start of every run (graft_net_run, graft_net_run_region). */
	void (*begin_run)(struct graft_net *net);
};
extern const struct net_hooks autograd_hooks;

/* A node's time so far: the seconds of its runs, and how many. */
struct node_clock {
	double seconds;
	int64_t runs;
};

struct graft_net {
	const struct graft_model *model;
	struct value **values;          /* every value, owned */
	size_t n_values, cap_values;
	struct strmap by_name;
	struct node *nodes;
	size_t n_nodes;
	struct value **inputs;          /* graph inputs that are not initializers */
	const Onnx__ValueInfoProto **input_info;
	size_t n_inputs;
	struct value **outputs;
	size_t n_outputs;
	size_t *run_list;               /* nodes a run executes, in order */
	size_t n_run, n_folded;
	int planned;
	struct graft_array *planned_shape; /* the inputs' shapes of the current plan */
	void **planned_bytes;           /* the data of VALUE_PLAN inputs in that plan */
	struct net_counters counters;
	/* opts.profile: per node, [0] its runs and [1] its backward's (net_timed) */
	struct node_clock (*profile)[2];

	struct graft_net_opts opts;
	/* Training nets (lib/engine/autograd.c): */
	const struct net_hooks *hooks;  /* NULL for inference */
	struct autograd *ag;            /* owned by autograd.c */
};

/* Calls fn on node i; with a profile, its time goes to node i's clock of that kind (0:
 * forward, 1: backward). */
int net_timed(struct graft_net *net, size_t i, int (*fn)(struct node *, struct graft_err *),
	      int backward, struct graft_err *err);

/* ---- values.c ---- */
/* The value named name, added (empty) when the net has none yet; NULL with err set when
 * memory runs out. */
struct value *net_value_get_or_add(struct graft_net *net, const char *name,
				   struct graft_err *err);

/* ---- autograd.c ---- */
/* 1 when a node lies in the backward region of a training net (it reads a value computed
 * from a trainable parameter): no fusion or blocked layout there. */
static inline int autograd_region(const struct node *n)
{
	for (size_t k = 0; k < n->n_in; k++)
		if (n->in[k] && (n->in[k]->flags & VALUE_DIFF))
			return 1;
	return 0;
}
/* The generator of a training net's Dropout masks (tests set it to replay a run). */
struct graft_rng *autograd_rng(struct graft_net *net);

/* ---- probe.c ---- */
/* A net of m with no fusion (every value keeps its shape, graft_net_value_shape) after
 * one run at batch 1 on zeros of the inputs' declared shapes, symbolic dims taken as 1;
 * strict refuses a symbolic dim past the first (the shapes after it would be a guess). */
int engine_probe(struct graft_net **out, const struct graft_model *m, int strict,
		 struct graft_err *err);

#endif
