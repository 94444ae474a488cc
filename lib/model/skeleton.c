/*
 * skeleton.c: the ModelProto skeleton, built and edited: the one file that makes
 * protobuf messages (onnx__*__init).  Surgery, the format readers and the model ask it
 * for a new model, an initializer slot, a graph input, a value_info or a metadata
 * property instead of building messages themselves.
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

/* ---- editing the skeleton ------------------------------------------------------------------ */

int skeleton_new(struct graft_model *m, struct graft_err *err)
{
	Onnx__ModelProto *p = malloc(sizeof(*p));
	Onnx__GraphProto *g = malloc(sizeof(*g));
	Onnx__OperatorSetIdProto *o = malloc(sizeof(*o));
	Onnx__OperatorSetIdProto **list = malloc(sizeof(*list));

	if (!p || !g || !o || !list)
		goto nomem;
	onnx__model_proto__init(p);
	onnx__graph_proto__init(g);
	onnx__operator_set_id_proto__init(o);
	p->graph = g;
	p->opset_import = list;
	list[0] = o;
	p->n_opset_import = 1;
	p->has_ir_version = 1;
	p->ir_version = 8;
	o->has_version = 1;
	o->version = 17;
	m->proto = p;
	/* From here on, free_unpacked releases whatever the strings leave unset. */
	if (!(o->domain = strdup("")) || !(p->producer_name = strdup("graft")) ||
	    !(p->producer_version = strdup(GRAFT_VERSION)) || !(g->name = strdup("graft")))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
nomem:
	free(p);
	free(g);
	free(o);
	free(list);
	return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
}

int skeleton_has_name(const struct graft_model *m, const char *name)
{
	const Onnx__GraphProto *g = m->proto->graph;

	for (size_t i = 0; i < g->n_initializer; i++)
		if (g->initializer[i]->name && strcmp(g->initializer[i]->name, name) == 0)
			return 1;
	for (size_t i = 0; i < g->n_input; i++)
		if (g->input[i]->name && strcmp(g->input[i]->name, name) == 0)
			return 1;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_output; k++)
			if (g->node[i]->output[k] && strcmp(g->node[i]->output[k], name) == 0)
				return 1;
	return 0;
}

/* IR versions before 4 require every initializer to be a graph input too. */
static int initializers_are_inputs(const struct graft_model *m)
{
	return m->proto->ir_version < 4;
}

Onnx__ValueInfoProto *skeleton_value_info(const char *name, int dtype, int rank,
				       const int64_t *dims, const char *const *dim_params)
{
	Onnx__ValueInfoProto *vi = malloc(sizeof(*vi));
	Onnx__TypeProto__Tensor *tt;
	Onnx__TensorShapeProto *shape;

	/* Every message is initialised before it is attached, so that free_unpacked
	 * releases a partial one. */
	if (!vi)
		return NULL;
	onnx__value_info_proto__init(vi);
	if (!(vi->name = strdup(name)) || !(vi->type = malloc(sizeof(*vi->type))))
		goto fail;
	onnx__type_proto__init(vi->type);
	if (!(tt = malloc(sizeof(*tt))))
		goto fail;
	onnx__type_proto__tensor__init(tt);
	vi->type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	vi->type->tensor_type = tt;
	if (dtype <= 0 || rank < 0)
		return vi;      /* type unknown: a name alone */
	tt->has_elem_type = 1;
	tt->elem_type = dtype;
	if (!(shape = malloc(sizeof(*shape))))
		goto fail;
	onnx__tensor_shape_proto__init(shape);
	tt->shape = shape;
	if (rank && !(shape->dim = calloc((size_t)rank, sizeof(*shape->dim))))
		goto fail;
	for (int i = 0; i < rank; i++) {
		Onnx__TensorShapeProto__Dimension *d = malloc(sizeof(*d));
		if (!d)
			goto fail;
		onnx__tensor_shape_proto__dimension__init(d);
		shape->dim[shape->n_dim++] = d;
		if (dim_params && dim_params[i]) {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
			if (!(d->dim_param = strdup(dim_params[i])))
				goto fail;
		} else if (dims[i] >= 0) {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
			d->dim_value = dims[i];
		}
	}
	return vi;
fail:
	onnx__value_info_proto__free_unpacked(vi, NULL);
	return NULL;
}

/* Appends a graph input declaring t's type and shape. */
static int add_input_for(struct graft_model *m, const struct tensor_rec *t,
			 struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__ValueInfoProto **list = realloc(g->input, (g->n_input + 1) * sizeof(*list));
	Onnx__ValueInfoProto *vi;

	if (!list)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	g->input = list;
	if (!(vi = skeleton_value_info(t->name, t->dtype, t->rank, t->dims, NULL)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	g->input[g->n_input++] = vi;
	model_inputs_changed(m);
	return 0;
}

static void remove_input_named(struct graft_model *m, const char *name)
{
	Onnx__GraphProto *g = m->proto->graph;

	for (size_t i = 0; i < g->n_input; i++)
		if (g->input[i]->name && strcmp(g->input[i]->name, name) == 0) {
			onnx__value_info_proto__free_unpacked(g->input[i], NULL);
			memmove(&g->input[i], &g->input[i + 1],
				(g->n_input - i - 1) * sizeof(*g->input));
			g->n_input--;
			model_inputs_changed(m);
			return;
		}
}

int skeleton_add_initializer(struct graft_model *m, struct tensor_rec *t, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__TensorProto **list = realloc(g->initializer, (g->n_initializer + 1) * sizeof(*list));
	Onnx__TensorProto *tp;
	int rc;

	if (!list)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	g->initializer = list;
	if (!(tp = malloc(sizeof(*tp))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	onnx__tensor_proto__init(tp);
	tp->name = strdup(t->name);
	tp->dims = malloc(sizeof(int64_t) * (t->rank ? (size_t)t->rank : 1));
	if (!tp->name || !tp->dims) {
		onnx__tensor_proto__free_unpacked(tp, NULL);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if (t->rank)
		memcpy(tp->dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
	tp->n_dims = (size_t)t->rank;
	tp->has_data_type = 1;
	tp->data_type = t->dtype;
	if (initializers_are_inputs(m) && (rc = add_input_for(m, t, err))) {
		onnx__tensor_proto__free_unpacked(tp, NULL);
		return rc;
	}
	/* The payload goes to raw_data on export, as onnx.numpy_helper writes it. */
	t->field = FIELD_RAW;
	t->slot = tp;
	g->initializer[g->n_initializer++] = tp;
	model_inputs_changed(m);
	return 0;
}

void skeleton_remove_initializer(struct graft_model *m, Onnx__TensorProto *tp)
{
	Onnx__GraphProto *g = m->proto->graph;

	for (size_t i = 0; i < g->n_initializer; i++)
		if (g->initializer[i] == tp) {
			memmove(&g->initializer[i], &g->initializer[i + 1],
				(g->n_initializer - i - 1) * sizeof(*g->initializer));
			g->n_initializer--;
			model_inputs_changed(m);
			/* The input that old IR versions required goes with it. */
			if (initializers_are_inputs(m) && tp->name)
				remove_input_named(m, tp->name);
			/* Its payload lives in the tensor table, so only the skeleton is freed. */
			onnx__tensor_proto__free_unpacked(tp, NULL);
			return;
		}
}

int skeleton_set_metadata(struct graft_model *m, const char *key, const char *value,
		      struct graft_err *err)
{
	Onnx__ModelProto *p = m->proto;
	Onnx__StringStringEntryProto *e, **list;
	char *v;

	for (size_t i = 0; i < p->n_metadata_props; i++) {
		e = p->metadata_props[i];
		if (!e->key || strcmp(e->key, key) != 0)
			continue;
		if (!value) {
			onnx__string_string_entry_proto__free_unpacked(e, NULL);
			memmove(&p->metadata_props[i], &p->metadata_props[i + 1],
				(p->n_metadata_props - i - 1) * sizeof(*p->metadata_props));
			p->n_metadata_props--;
			return 0;
		}
		if (!(v = strdup(value)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		free(e->value);
		e->value = v;
		return 0;
	}
	if (!value)
		return 0;
	if (!(list = realloc(p->metadata_props, (p->n_metadata_props + 1) * sizeof(*list))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	p->metadata_props = list;
	if (!(e = malloc(sizeof(*e))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	onnx__string_string_entry_proto__init(e);
	e->key = strdup(key);
	e->value = strdup(value);
	if (!e->key || !e->value) {
		onnx__string_string_entry_proto__free_unpacked(e, NULL);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	list[p->n_metadata_props++] = e;
	return 0;
}


/* A copy of the n strings of v in a NULL-terminated array; NULL when out of memory. */
static char **strv(const char *const *v, size_t n)
{
	char **s = calloc(n + 1, sizeof(*s));

	for (size_t i = 0; s && i < n; i++)
		if (!(s[i] = strdup(v[i]))) {
			for (size_t k = 0; k < i; k++)
				free(s[k]);
			free(s);
			return NULL;
		}
	return s;
}

Onnx__NodeProto *skeleton_node_new(const char *op, const char *name, const char *const *in,
				   size_t n_in, const char *out)
{
	Onnx__NodeProto *n = malloc(sizeof(*n));

	if (!n)
		return NULL;
	onnx__node_proto__init(n);
	if (!(n->op_type = strdup(op)) || !(n->name = strdup(name)) ||
	    !(n->input = strv(in, n_in)) || !(n->output = strv(&out, 1))) {
		protobuf_c_message_free_unpacked(&n->base, NULL);
		return NULL;
	}
	n->n_input = n_in;
	n->n_output = 1;
	return n;
}

/* Appends an attribute of n, its value left for the caller to set. */
static Onnx__AttributeProto *add_attribute(Onnx__NodeProto *n, const char *name,
					   Onnx__AttributeProto__AttributeType type)
{
	Onnx__AttributeProto **list = realloc(n->attribute, (n->n_attribute + 1) * sizeof(*list));
	Onnx__AttributeProto *a;

	if (!list)
		return NULL;
	n->attribute = list;
	if (!(a = malloc(sizeof(*a))))
		return NULL;
	onnx__attribute_proto__init(a);
	if (!(a->name = strdup(name))) {
		free(a);
		return NULL;
	}
	list[n->n_attribute++] = a;
	a->has_type = 1;
	a->type = type;
	return a;
}

int skeleton_node_attr_int(Onnx__NodeProto *n, const char *name, int64_t value)
{
	Onnx__AttributeProto *a = add_attribute(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);

	if (!a)
		return -1;
	a->has_i = 1;
	a->i = value;
	return 0;
}

int skeleton_node_attr_ints(Onnx__NodeProto *n, const char *name, const int64_t *v,
			    size_t count)
{
	Onnx__AttributeProto *a = add_attribute(n, name,
						ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);

	if (!a || !(a->ints = malloc(sizeof(*a->ints) * (count ? count : 1))))
		return -1;
	memcpy(a->ints, v, sizeof(*v) * count);
	a->n_ints = count;
	return 0;
}

int skeleton_node_attr_float(Onnx__NodeProto *n, const char *name, float value)
{
	Onnx__AttributeProto *a = add_attribute(n, name,
						ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);

	if (!a)
		return -1;
	a->has_f = 1;
	a->f = value;
	return 0;
}

void skeleton_string_entry(Onnx__StringStringEntryProto *e, char *key, char *value)
{
	onnx__string_string_entry_proto__init(e);
	e->key = key;
	e->value = value;
}
