/*
 * opset.c: raising a model's default-domain opset, for rewrites that need a newer one
 * (graft-quantize: per-channel DequantizeLinear needs 13).  Ops whose definition did not
 * change between the two versions keep their nodes; the few that moved attributes into
 * inputs are rewritten (Clip at 11, Slice at 10, Dropout's ratio at 12, Squeeze and
 * Unsqueeze at 13); Softmax, LogSoftmax and Hardmax, which before 13 flattened the
 * input from axis on, are kept where axis is the last (the two definitions agree there,
 * checked on the shapes a probe run finds).  Any other op, or a change this file does not
 * know, is refused by name: a model is never silently given another meaning.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surgery/surgery.h"

/* Ops whose meaning is the same from opset 9 to 13 for every attribute they can carry
 * (where a later version only added types, or an attribute whose default keeps the old
 * behaviour). */
static const char *const stable[] = {
	"Abs", "Add", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Cast",
	"Ceil", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Div",
	"Elu", "Equal", "Erf", "Exp", "Expand", "Flatten", "Floor", "Gather", "Gemm",
	"GlobalAveragePool", "GlobalMaxPool", "Greater", "HardSigmoid", "Identity",
	"InstanceNormalization", "LRN", "LeakyRelu", "Less", "Log", "MatMul", "Max", "MaxPool",
	"Mean", "Min", "Mul", "Neg", "Not", "Or", "PRelu", "Pow", "ReduceMax", "ReduceMean",
	"ReduceMin", "ReduceProd", "Relu", "Reshape", "Selu", "Shape", "Sigmoid", "Sign", "Sin",
	"Softplus", "Sqrt", "Sub", "Sum", "Tanh", "Tile", "Transpose", "Where", "Xor", NULL,
};

/* Ops this file rewrites, or keeps where their meaning holds (Softmax and its kin). */
static const char *const rewritten[] = {
	"Clip", "Slice", "Dropout", "Squeeze", "Unsqueeze", "Softmax", "LogSoftmax", "Hardmax",
	NULL,
};

static int in_list(const char *const *list, const char *op)
{
	for (size_t i = 0; list[i]; i++)
		if (strcmp(list[i], op) == 0)
			return 1;
	return 0;
}

static void drop_attr(Onnx__NodeProto *n, const char *name)
{
	for (size_t i = 0; i < n->n_attribute; i++)
		if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0) {
			protobuf_c_message_free_unpacked(&n->attribute[i]->base, NULL);
			memmove(&n->attribute[i], &n->attribute[i + 1],
				(n->n_attribute - i - 1) * sizeof(n->attribute[0]));
			n->n_attribute--;
			return;
		}
}

/* Sets n's input k to name (k may be past the end: "" fills the gap). */
static int set_input(Onnx__NodeProto *n, size_t k, const char *name)
{
	if (k >= n->n_input) {
		char **in = realloc(n->input, (k + 1) * sizeof(*in));
		if (!in)
			return -1;
		n->input = in;
		for (size_t j = n->n_input; j <= k; j++)
			if (!(in[j] = strdup("")))
				return -1;
		n->n_input = k + 1;
	}
	return edit_set_str(&n->input[k], name);
}

/* A new initializer named after node n and what, of dtype and dims, as input k of n. */
static int attr_to_input(struct graft_model *m, Onnx__NodeProto *n, size_t k, const char *what,
			 int dtype, int rank, int64_t count, const void *data, struct graft_err *err)
{
	char name[512], suffix[64];
	int rc;

	snprintf(suffix, sizeof(suffix), "_%s", what);
	if ((rc = edit_put_constant(m, NULL, n->name && *n->name ? n->name : n->output[0], suffix,
				    dtype, rank, &count, data, name, sizeof(name), err)))
		return rc;
	return set_input(n, k, name) ? graft_err_set(err, GRAFT_ENOMEM, "out of memory") : 0;
}

/* An ints attribute moved to input k as int64 (absent: the input stays empty). */
static int ints_to_input(struct graft_model *m, Onnx__NodeProto *n, const char *name, size_t k,
			 struct graft_err *err)
{
	Onnx__AttributeProto *a = graph_attr(n, name);
	int rc;

	if (!a)
		return 0;
	if ((rc = attr_to_input(m, n, k, name, GRAFT_INT64, 1, (int64_t)a->n_ints, a->ints, err)))
		return rc;
	drop_attr(n, name);
	return 0;
}

static int upgrade_clip(struct graft_model *m, Onnx__NodeProto *n, struct graft_err *err)
{
	const char *names[2] = {"min", "max"};
	int rc;

	for (int k = 0; k < 2; k++) {
		Onnx__AttributeProto *a = graph_attr(n, names[k]);
		if (!a)
			continue;
		float v = a->f;
		if ((rc = attr_to_input(m, n, (size_t)k + 1, names[k], GRAFT_FLOAT, 0, 1, &v, err)))
			return rc;
		drop_attr(n, names[k]);
	}
	return 0;
}

/* The rank the graph declares for value name (its inputs, outputs, value_info); -1. */
static int declared_rank(const Onnx__GraphProto *g, const char *name)
{
	Onnx__ValueInfoProto *const *lists[3] = {g->input, g->output, g->value_info};
	size_t counts[3] = {g->n_input, g->n_output, g->n_value_info};

	for (int l = 0; l < 3; l++)
		for (size_t i = 0; i < counts[l]; i++) {
			const Onnx__ValueInfoProto *v = lists[l][i];
			if (v->name && strcmp(v->name, name) == 0 && v->type &&
			    v->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
			    v->type->tensor_type->shape)
				return (int)v->type->tensor_type->shape->n_dim;
		}
	return -1;
}

/* Softmax and its kin before 13 flatten the input from axis on; at 13 they work along
 * axis alone.  Kept where axis is the input's last (the same there), with that axis
 * written out; the rank as the graph declares the input or the output (the same), else
 * as a probe run finds it. */
static int softmax_axis(const Onnx__GraphProto *g, const struct graft_net *probe,
			const Onnx__NodeProto *n, int64_t *last, struct graft_err *err)
{
	const Onnx__AttributeProto *a = graph_attr(n, "axis");
	int64_t axis = a ? a->i : 1, dims[GRAFT_MAX_RANK];
	int rank = declared_rank(g, n->input[0]);

	if (rank < 0)
		rank = declared_rank(g, n->output[0]);
	if (rank < 0 && (!probe || graft_net_value_shape(probe, n->input[0], &rank, dims)))
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "%s '%s': its input's rank is "
				     "unknown, so its axis cannot be carried to opset 13",
				     n->op_type, n->name ? n->name : "");
	if (axis < 0)
		axis += rank;
	if (axis != rank - 1)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "%s '%s' flattens axes %lld.. of %d: "
				     "its meaning changes at opset 13", n->op_type,
				     n->name ? n->name : "", (long long)axis, rank);
	*last = axis;
	return 0;
}

static int is_softmax(const Onnx__NodeProto *n)
{
	return graph_is_op(n, "Softmax") || graph_is_op(n, "LogSoftmax") ||
	       graph_is_op(n, "Hardmax");
}

int graft_model_upgrade_opset(struct graft_model *m, int64_t to, struct graft_err *err)
{
	Onnx__ModelProto *p = m->proto;
	Onnx__GraphProto *g = p->graph;
	int64_t from = model_default_opset(m);
	struct graft_net *probe = NULL;
	int rc = 0;

	if (from >= to)
		return 0;
	if (from < 9 || to > 13)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "graft raises opsets 9 to 12 to at "
				     "most 13, not %lld to %lld", (long long)from, (long long)to);
	/* refuse first, change nothing until every node is known */
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		const char *op = n->op_type;
		if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx") != 0)
			continue;
		if (!in_list(stable, op) && !in_list(rewritten, op)) {
			graft_net_free(probe);
			return graft_err_set(err, GRAFT_EUNSUPPORTED, "node '%s' (%s): graft does not "
					     "know how to carry this op from opset %lld to %lld",
					     n->name ? n->name : "", op, (long long)from, (long long)to);
		}
		int64_t axis;
		if (is_softmax(n) && to >= 13 &&
		    ((!probe && declared_rank(g, n->input[0]) < 0 && declared_rank(g, n->output[0]) < 0 &&
		      (rc = engine_probe(&probe, m, 0, err))) ||
		     (rc = softmax_axis(g, probe, n, &axis, err)))) {
			graft_net_free(probe);
			return rc;
		}
	}
	for (size_t i = 0; i < g->n_node && !rc; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx") != 0)
			continue;
		/* each change applies where from < its version <= to */
		if (graph_is_op(n, "Clip") && from < 11 && to >= 11) {
			rc = upgrade_clip(m, n, err);
		} else if (graph_is_op(n, "Slice") && from < 10) {
			if (!(rc = ints_to_input(m, n, "starts", 1, err)) &&
			    !(rc = ints_to_input(m, n, "ends", 2, err)))
				rc = ints_to_input(m, n, "axes", 3, err);
		} else if (graph_is_op(n, "Dropout") && from < 12 && to >= 12 && graph_attr(n, "ratio")) {
			float r = graph_attr(n, "ratio")->f;
			if (!(rc = attr_to_input(m, n, 1, "ratio", GRAFT_FLOAT, 0, 1, &r, err)))
				drop_attr(n, "ratio");
		} else if ((graph_is_op(n, "Squeeze") || graph_is_op(n, "Unsqueeze")) && to >= 13) {
			rc = ints_to_input(m, n, "axes", 1, err);
		} else if (is_softmax(n) && to >= 13 && !graph_attr(n, "axis")) {
			/* the axis checked above is the last: written out, as 13's default is -1 */
			int64_t axis;
			if (!(rc = softmax_axis(g, probe, n, &axis, err)) &&
			    skeleton_node_attr_int(n, "axis", axis))
				rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
	}
	graft_net_free(probe);
	if (rc)
		return rc;
	for (size_t i = 0; i < p->n_opset_import; i++) {
		Onnx__OperatorSetIdProto *o = p->opset_import[i];
		if (!o->domain || !*o->domain || strcmp(o->domain, "ai.onnx") == 0) {
			o->has_version = 1;
			o->version = to;
		}
	}
	return model_refresh_aliases(m, err);
}
