/*
 * engine.h: the executor's state, shared by net.c (building, planning, running) and
 * autograd.c (training: parameters, gradients, backward).  Internal to libgraft.
 */
#ifndef GRAFT_ENGINE_H
#define GRAFT_ENGINE_H

#include "engine/ops/ops.h"

/* A model tensor that a training net keeps its own copy of. */
struct pooled;

struct tracked {
	struct value *v;        /* VALUE_PARAM or VALUE_STATE */
	const char *name;       /* the model's name for it (borrowed from the model) */
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
	double *profile_s;              /* opts.profile: seconds spent per node */
	int64_t *profile_runs;          /* opts.profile: times each node ran */

	/* Training nets (lib/engine/autograd.c). */
	struct graft_net_opts opts;
	struct tracked *tracked;        /* parameters and state, in model order */
	size_t n_tracked, cap_tracked;
	size_t *trains;                 /* nodes that run differently in training */
	size_t n_trains, cap_trains;
	int training;                   /* current mode (graft_net_set_training) */
	struct pooled *pool;            /* gradient buffers, shared by lifetime */
	size_t n_pool, cap_pool;
	struct value **boundary;        /* what the backward region reads from the frozen part */
	size_t n_boundary;
	struct graft_rng rng;
};

/* ---- net.c ---- */
struct value *net_value_get_or_add(struct graft_net *net, const char *name,
				   struct graft_err *err);

/* ---- autograd.c ---- */
/* After the nodes are added: copies trainable parameters, marks the VALUE_DIFF region,
 * gives training-mode BatchNormalization its own running statistics.  Before fusion,
 * which leaves that region alone. */
int autograd_build(struct graft_net *net, struct graft_err *err);
/* At the end of a plan: gradient buffers and the nodes backward runs. */
int autograd_plan(struct graft_net *net, struct graft_err *err);
/* Frees what autograd_plan made (on unplan). */
void autograd_unplan(struct graft_net *net);
/* Frees what autograd_build made. */
void autograd_free(struct graft_net *net);
/* 1 when a node lies in the backward region (training nets): no fusion there. */
int autograd_region(const struct node *n);

/* ---- probe.c ---- */
/* A net of m with no fusion (every value keeps its shape, graft_net_value_shape) after
 * one run at batch 1 on zeros of the inputs' declared shapes, symbolic dims taken as 1;
 * strict refuses a symbolic dim past the first (the shapes after it would be a guess). */
int engine_probe(struct graft_net **out, const struct graft_model *m, int strict,
		 struct graft_err *err);

#endif
