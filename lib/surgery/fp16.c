/*
 * fp16.c: a model in float16 for runtimes that compute in it (graft-export --fp16): every
 * stored float32 tensor becomes float16 (rounded to nearest even, beyond +-65504 held at
 * the largest finite half so that no weight becomes infinite), every float32 value the
 * graph declares becomes float16, and Cast nodes to float32 cast to float16.  With
 * keep_io the graph's float inputs and outputs stay float32 and Casts convert at the
 * edges, so callers feed and read what they did.
 *
 * Refused, by name: nodes with subgraphs, ops whose inputs must stay float32 whatever the
 * data's type (Resize's and Upsample's scales), ops that make tensors of a type an
 * attribute names (ConstantOfShape excepted: its value is converted), and non-default
 * domains.  The model is unchanged after a refusal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surgery/surgery.h"
#include "engine/ops/ops.h"     /* elem_float_to_half */

static const char *const refused[] = {
	"Resize", "Upsample", "EyeLike", "RandomNormal", "RandomUniform", "RandomNormalLike",
	"RandomUniformLike", "Multinomial", "If", "Loop", "Scan", "SequenceMap", NULL,
};

static uint16_t to_half(float v)
{
	if (v > 65504.0f)
		v = 65504.0f;
	else if (v < -65504.0f)
		v = -65504.0f;
	return elem_float_to_half(v);
}

static uint16_t *halves(const float *f, uint64_t n)
{
	uint16_t *h = malloc((size_t)n * sizeof(*h) + 1);

	for (uint64_t i = 0; h && i < n; i++)
		h[i] = to_half(f[i]);
	return h;
}

static int is_float_info(const Onnx__ValueInfoProto *v)
{
	return v && v->type && v->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
	       v->type->tensor_type->has_elem_type &&
	       v->type->tensor_type->elem_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
}

/* A value's declared float32 tensor type made float16. */
static void retype_info(Onnx__ValueInfoProto *v)
{
	if (is_float_info(v))
		v->type->tensor_type->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
}

/* ConstantOfShape's value attribute (float32: one value) made float16; without one
 * (float32 zeros by default), a float16 zero given. */
static int retype_value_attr(Onnx__NodeProto *n)
{
	if (!graph_attr(n, "value")) {
		Onnx__AttributeProto *a = malloc(sizeof(*a)), **list;
		Onnx__TensorProto *t = malloc(sizeof(*t));
		int64_t *dims = malloc(sizeof(*dims));
		uint8_t *raw = calloc(2, 1);
		list = realloc(n->attribute, (n->n_attribute + 1) * sizeof(*list));
		if (list)
			n->attribute = list;
		if (a)
			onnx__attribute_proto__init(a);
		if (!a || !t || !dims || !raw || !list || !(a->name = strdup("value"))) {
			free(a);
			free(t);
			free(dims);
			free(raw);
			return -1;
		}
		onnx__tensor_proto__init(t);
		a->has_type = 1;
		a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
		dims[0] = 1;
		t->dims = dims;
		t->n_dims = 1;
		t->has_data_type = 1;
		t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
		t->has_raw_data = 1;
		t->raw_data.data = raw;
		t->raw_data.len = 2;
		a->t = t;
		n->attribute[n->n_attribute++] = a;
		return 0;
	}
	for (size_t i = 0; i < n->n_attribute; i++) {
		Onnx__TensorProto *t = n->attribute[i]->t;
		float v;
		if (!t || !t->has_data_type || t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
			continue;
		if (t->n_float_data == 1)
			v = t->float_data[0];
		else if (t->has_raw_data && t->raw_data.len == sizeof(float))
			memcpy(&v, t->raw_data.data, sizeof(v));
		else
			return -1;
		uint16_t h = to_half(v);
		uint8_t *raw = malloc(sizeof(h));
		if (!raw)
			return -1;
		memcpy(raw, &h, sizeof(h));
		free(t->float_data);
		t->float_data = NULL;
		t->n_float_data = 0;
		free(t->raw_data.data);
		t->raw_data.data = raw;
		t->raw_data.len = sizeof(h);
		t->has_raw_data = 1;
		t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
	}
	return 0;
}

/* A Cast node named name from x to y, to the type to, inserted at node index at. */
static int insert_cast(Onnx__GraphProto *g, size_t at, const char *x, const char *y, int to)
{
	char name[512];
	Onnx__NodeProto *c, **list;

	snprintf(name, sizeof(name), "%s_Cast", y);
	if (!(c = skeleton_node_new("Cast", name, &x, 1, y)) ||
	    skeleton_node_attr_int(c, "to", to) ||
	    !(list = realloc(g->node, (g->n_node + 1) * sizeof(*list)))) {
		if (c)
			protobuf_c_message_free_unpacked(&c->base, NULL);
		return -1;
	}
	g->node = list;
	memmove(&list[at + 1], &list[at], (g->n_node - at) * sizeof(*list));
	list[at] = c;
	g->n_node++;
	return 0;
}

static int rename_reads(Onnx__GraphProto *g, const char *from, const char *to)
{
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_input; k++)
			if (strcmp(g->node[i]->input[k], from) == 0 &&
			    edit_set_str(&g->node[i]->input[k], to))
				return -1;
	return 0;
}

/* keep_io: float inputs read through a Cast to float16, float outputs written through a
 * Cast to float32; the graph's own declarations stay float32.  The float16 sides are
 * named NAME_fp16, or NAME_fp16_2... where the model has that name already. */
static int cast_edges(struct graft_model *m, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	char name[512];

	for (size_t i = 0; i < g->n_input; i++) {
		const char *x = g->input[i]->name;
		if (!is_float_info(g->input[i]) || graft_model_find_tensor(m, x) >= 0)
			continue;       /* (an initializer's input entry) */
		if (edit_fresh_name(m, NULL, x, "_fp16", name, sizeof(name)) ||
		    rename_reads(g, x, name) ||
		    insert_cast(g, 0, x, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < g->n_output; i++) {
		const char *y = g->output[i]->name;
		long p = graph_producer(g, y);
		if (!is_float_info(g->output[i]) || p < 0)
			continue;
		if (edit_fresh_name(m, NULL, y, "_fp16", name, sizeof(name)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		Onnx__NodeProto *n = g->node[p];
		for (size_t k = 0; k < n->n_output; k++)
			if (strcmp(n->output[k], y) == 0 && edit_set_str(&n->output[k], name))
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		if (rename_reads(g, y, name) ||
		    insert_cast(g, (size_t)p + 1, name, y, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	return 0;
}

int graft_model_to_fp16(struct graft_model *m, int keep_io, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	int rc;

	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		int sub = 0;
		for (size_t k = 0; k < n->n_attribute; k++)
			sub |= n->attribute[k]->g || n->attribute[k]->n_graphs;
		if ((n->domain && *n->domain && strcmp(n->domain, "ai.onnx") != 0) || sub)
			return graft_err_set(err, GRAFT_EUNSUPPORTED, "node '%s' (%s%s%s): graft does "
					     "not convert it to float16", n->name ? n->name : "",
					     n->domain && *n->domain ? n->domain : "",
					     n->domain && *n->domain ? "." : "", n->op_type);
		for (size_t k = 0; refused[k]; k++)
			if (graph_is_op(n, refused[k]))
				return graft_err_set(err, GRAFT_EUNSUPPORTED, "node '%s' (%s): its "
						     "inputs or attributes fix a float type; graft "
						     "does not convert it to float16",
						     n->name ? n->name : "", n->op_type);
	}
	for (size_t i = 0; i < m->n_tensors; i++) {
		struct tensor_rec *t = &m->tensors[i];
		uint16_t *h;
		if (t->dtype != GRAFT_FLOAT || t->source == GRAFT_SOURCE_DETACHED)
			continue;
		if (!(h = halves(t->data, t->numel)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		model_retype_tensor(m, i, GRAFT_FLOAT16, h);
	}
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		Onnx__AttributeProto *to = graph_is_op(n, "Cast") ? graph_attr(n, "to") : NULL;
		if (to && to->i == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
			to->i = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
		if (graph_is_op(n, "ConstantOfShape") && retype_value_attr(n))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < g->n_value_info; i++)
		retype_info(g->value_info[i]);
	if (keep_io && (rc = cast_edges(m, err)))
		return rc;
	for (size_t i = 0; i < g->n_input; i++)
		if (!keep_io || graft_model_find_tensor(m, g->input[i]->name) >= 0)
			retype_info(g->input[i]);
	for (size_t i = 0; !keep_io && i < g->n_output; i++)
		retype_info(g->output[i]);
	return model_refresh_aliases(m, err);
}
