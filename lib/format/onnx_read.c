/*
 * onnx_read.c: ONNX import, through protobuf-c.
 *
 * Import unpacks the ModelProto (after wire.c's limits), loads external data
 * (external.c), then moves the payload of every stored tensor (main-graph initializers
 * and the values of main-graph Constant nodes) out of the message into the model's
 * tensor table, recording which field held it.  What stays is the skeleton: every other
 * field, unknown fields included, untouched; onnx_write.c puts each payload back.
 *
 * A tensor whose payload cannot be moved without loss (strings, several data fields at
 * once, int32_data values outside their type's range, a length that disagrees with the
 * shape) simply stays in the skeleton: it is carried, not interpreted.
 *
 * Detached tensors (datasets, training state) have no slot in the skeleton: export and
 * role assignment pass over them, and only the archive carries them.
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

#include "format/format.h"

/* ---- reading ------------------------------------------------------------------------- */

static int check_tensor_dims(Onnx__TensorProto *tp, void *ctx, struct graft_err *err)
{
	char what[320];
	uint64_t numel;

	(void)ctx;
	if (tp->n_dims <= GRAFT_MAX_RANK && !dims_numel(tp->dims, (int)tp->n_dims, &numel))
		return 0;
	snprintf(what, sizeof(what), "tensor '%.256s'", onnx_tensor_label(tp));
	return dims_check(tp->dims, tp->n_dims, what, NULL, err);
}

typedef int (*tensor_visit)(Onnx__TensorProto *tp, void *ctx, struct graft_err *err);
static int visit_graph(Onnx__GraphProto *g, tensor_visit fn, void *ctx, int depth,
		       struct graft_err *err);

static int validate_model(const Onnx__ModelProto *mp, struct graft_err *err)
{
	/* protobuf-c accepts almost anything, an empty buffer included: insist on the
	 * fields every ONNX model has. */
	if (!mp->graph)
		return graft_err_set(err, GRAFT_EFORMAT, "not an ONNX model (no graph)");
	if (!mp->has_ir_version)
		return graft_err_set(err, GRAFT_EFORMAT, "not an ONNX model (no ir_version)");
	if (mp->ir_version >= 3 && mp->n_opset_import == 0)
		return graft_err_set(err, GRAFT_EFORMAT,
				     "ONNX model has no opset_import (truncated?)");
	/* Dims that are negative or whose product overflows describe no tensor. */
	return visit_graph(mp->graph, check_tensor_dims, NULL, 0, err);
}

static int visit_attribute(Onnx__AttributeProto *a, tensor_visit fn, void *ctx, int depth,
			   struct graft_err *err)
{
	int rc;

	if (a->t && (rc = fn(a->t, ctx, err)))
		return rc;
	for (size_t i = 0; i < a->n_tensors; i++)
		if ((rc = fn(a->tensors[i], ctx, err)))
			return rc;
	if (a->g && (rc = visit_graph(a->g, fn, ctx, depth + 1, err)))
		return rc;
	for (size_t i = 0; i < a->n_graphs; i++)
		if ((rc = visit_graph(a->graphs[i], fn, ctx, depth + 1, err)))
			return rc;
	return 0;
}

static int visit_graph(Onnx__GraphProto *g, tensor_visit fn, void *ctx, int depth,
		       struct graft_err *err)
{
	int rc;

	if (depth > GRAFT_MAX_GRAPH_DEPTH)
		return graft_err_set(err, GRAFT_EFORMAT, "subgraphs nested more than %d deep",
				     GRAFT_MAX_GRAPH_DEPTH);
	for (size_t i = 0; i < g->n_initializer; i++)
		if ((rc = fn(g->initializer[i], ctx, err)))
			return rc;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t j = 0; j < g->node[i]->n_attribute; j++)
			if ((rc = visit_attribute(g->node[i]->attribute[j], fn, ctx, depth, err)))
				return rc;
	return 0;
}

static int resolve_one(Onnx__TensorProto *tp, void *ctx, struct graft_err *err)
{
	if (tp->has_data_location &&
	    tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return external_load(tp, ctx, err);
	return 0;
}

/* ---- moving payloads out ------------------------------------------------------------- */

int onnx_data_fields_set(const Onnx__TensorProto *tp)
{
	return (tp->has_raw_data != 0) + (tp->n_float_data > 0) + (tp->n_int32_data > 0) +
	       (tp->n_int64_data > 0) + (tp->n_double_data > 0) + (tp->n_uint64_data > 0) +
	       (tp->n_string_data > 0);
}

/* Narrows int32_data to the natural width of dtype; -1 if a value does not fit (the
 * tensor then stays in the skeleton, as it came). */
static int narrow_int32(const int32_t *src, size_t n, int dtype, void *dst)
{
	int64_t lo, hi;

	switch (dtype) {
	case GRAFT_INT32: lo = INT32_MIN; hi = INT32_MAX; break;
	case GRAFT_INT16: lo = INT16_MIN; hi = INT16_MAX; break;
	case GRAFT_INT8: lo = INT8_MIN; hi = INT8_MAX; break;
	case GRAFT_UINT16: case GRAFT_FLOAT16: case GRAFT_BFLOAT16: lo = 0; hi = UINT16_MAX; break;
	case GRAFT_UINT8: lo = 0; hi = UINT8_MAX; break;
	case GRAFT_BOOL: lo = 0; hi = 1; break;
	default: return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (src[i] < lo || src[i] > hi)
			return -1;
	size_t w = graft_dtype_size(dtype);
	for (size_t i = 0; i < n; i++) {
		int32_t v = src[i];
		if (w == 4) {
			memcpy((char *)dst + 4 * i, &v, 4);
		} else if (w == 2) {
			uint16_t u = (uint16_t)v;
			memcpy((char *)dst + 2 * i, &u, 2);
		} else {
			((uint8_t *)dst)[i] = (uint8_t)v;
		}
	}
	return 0;
}

/* Takes *field's array (steal) or a copy of it; NULL when out of memory. */
static void *take_array(void **field, size_t nbytes, int steal)
{
	void *p = *field;

	if (steal) {
		*field = NULL;
		return p;
	}
	void *copy = malloc(nbytes ? nbytes : 1);
	if (copy)
		memcpy(copy, p, nbytes);
	return copy;
}

/* Moves (steal) or copies tp's payload into rec, in the natural layout of its dtype, if
 * that can be undone exactly; returns 1 if taken, 0 if the tensor must stay as it is,
 * or a negative status.  Stealing clears the field in tp. */
int onnx_take_payload(Onnx__TensorProto *tp, struct tensor_rec *rec, int steal,
			struct graft_err *err)
{
	size_t esize = graft_dtype_size(tp->data_type);
	uint64_t numel;

	if (!tp->has_data_type || esize == 0 || tp->segment || onnx_data_fields_set(tp) != 1 ||
	    tp->n_dims > GRAFT_MAX_RANK || dims_numel(tp->dims, (int)tp->n_dims, &numel) ||
	    numel == 0 || numel > SIZE_MAX / esize)
		return 0;
	if (tp->has_data_location &&
	    tp->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT)
		return 0;
	size_t nbytes = (size_t)numel * esize;
	int complex = tp->data_type == GRAFT_COMPLEX64 || tp->data_type == GRAFT_COMPLEX128;
	void *data = NULL;

	if (!(rec->dims = malloc(sizeof(int64_t) * (tp->n_dims ? tp->n_dims : 1))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (tp->has_raw_data) {
		if (tp->raw_data.len != nbytes)
			goto keep;
		data = take_array((void **)&tp->raw_data.data, nbytes, steal);
		if (steal) {
			tp->raw_data.len = 0;
			tp->has_raw_data = 0;
		}
		rec->field = FIELD_RAW;
	} else if (tp->n_float_data) {
		if ((tp->data_type != GRAFT_FLOAT && tp->data_type != GRAFT_COMPLEX64) ||
		    tp->n_float_data * 4 != nbytes)
			goto keep;
		data = take_array((void **)&tp->float_data, nbytes, steal);
		if (steal)
			tp->n_float_data = 0;
		rec->field = FIELD_FLOAT;
	} else if (tp->n_double_data) {
		if ((tp->data_type != GRAFT_DOUBLE && tp->data_type != GRAFT_COMPLEX128) ||
		    tp->n_double_data * 8 != nbytes)
			goto keep;
		data = take_array((void **)&tp->double_data, nbytes, steal);
		if (steal)
			tp->n_double_data = 0;
		rec->field = FIELD_DOUBLE;
	} else if (tp->n_int64_data) {
		if (tp->data_type != GRAFT_INT64 || tp->n_int64_data != numel)
			goto keep;
		data = take_array((void **)&tp->int64_data, nbytes, steal);
		if (steal)
			tp->n_int64_data = 0;
		rec->field = FIELD_INT64;
	} else if (tp->n_int32_data) {
		if (tp->n_int32_data != numel || complex)
			goto keep;
		if (!(data = malloc(nbytes)))
			goto nomem;
		if (narrow_int32(tp->int32_data, numel, tp->data_type, data)) {
			free(data);
			goto keep;
		}
		if (steal) {
			free(tp->int32_data);
			tp->int32_data = NULL;
			tp->n_int32_data = 0;
		}
		rec->field = FIELD_INT32;
	} else if (tp->n_uint64_data) {
		if (tp->n_uint64_data != numel)
			goto keep;
		if (tp->data_type == GRAFT_UINT64) {
			data = take_array((void **)&tp->uint64_data, nbytes, steal);
		} else if (tp->data_type == GRAFT_UINT32) {
			for (size_t i = 0; i < numel; i++)
				if (tp->uint64_data[i] > UINT32_MAX)
					goto keep;
			if (!(data = malloc(nbytes)))
				goto nomem;
			for (size_t i = 0; i < numel; i++)
				((uint32_t *)data)[i] = (uint32_t)tp->uint64_data[i];
			if (steal) {
				free(tp->uint64_data);
				tp->uint64_data = NULL;
			}
		} else {
			goto keep;
		}
		if (steal)
			tp->n_uint64_data = 0;
		rec->field = FIELD_UINT64;
	} else {
		goto keep;
	}
	if (!data)
		goto nomem;
	rec->dtype = tp->data_type;
	rec->rank = (int)tp->n_dims;
	rec->numel = numel;
	rec->nbytes = nbytes;
	rec->data = data;
	rec->owner = OWNER_HEAP;
	rec->slot = tp;
	if (tp->n_dims)
		memcpy(rec->dims, tp->dims, sizeof(int64_t) * tp->n_dims);
	return 1;
keep:
	free(rec->dims);
	rec->dims = NULL;
	return 0;
nomem:
	free(rec->dims);
	rec->dims = NULL;
	return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
}

/* The stored-tensor candidates of the main graph: initializers, then Constant values.
 * Each is keyed by a name that must be unique among them all, so that a reader can find
 * its slot again in the skeleton. */
struct candidate {
	const char *key;
	Onnx__TensorProto *tp;
	enum graft_source source;
};

static Onnx__AttributeProto *constant_value(const Onnx__NodeProto *n)
{
	if (!n->op_type || strcmp(n->op_type, "Constant") != 0 ||
	    (n->domain && *n->domain && strcmp(n->domain, "ai.onnx") != 0) ||
	    n->n_output < 1 || !n->output[0] || !*n->output[0])
		return NULL;
	for (size_t j = 0; j < n->n_attribute; j++) {
		Onnx__AttributeProto *a = n->attribute[j];
		if (a->name && strcmp(a->name, "value") == 0 && a->t)
			return a;
	}
	return NULL;
}

static int list_candidates(Onnx__GraphProto *g, struct candidate **out, size_t *n_out,
			   struct graft_err *err)
{
	struct candidate *c = calloc(g->n_initializer + g->n_node + 1, sizeof(*c));
	size_t n = 0;

	if (!c)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n_initializer; i++)
		if (g->initializer[i]->name && *g->initializer[i]->name)
			c[n++] = (struct candidate){g->initializer[i]->name, g->initializer[i],
						    GRAFT_SOURCE_INITIALIZER};
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__AttributeProto *a = constant_value(g->node[i]);
		if (a)
			c[n++] = (struct candidate){g->node[i]->output[0], a->t,
						    GRAFT_SOURCE_CONSTANT};
	}
	*out = c;
	*n_out = n;
	return 0;
}

/* ---- import ---------------------------------------------------------------------------- */

static int extract_tensors(struct graft_model *m, struct graft_err *err)
{
	struct candidate *c;
	struct strmap seen;
	size_t n;
	int rc;

	if ((rc = list_candidates(m->proto->graph, &c, &n, err)))
		return rc;
	if (strmap_init(&seen, n) || !(m->tensors = calloc(n + 1, sizeof(*m->tensors)))) {
		free(c);
		strmap_release(&seen);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	/* A key that appears twice (an invalid but loadable model) cannot name one slot:
	 * such tensors stay in the skeleton. */
	for (size_t i = 0; i < n; i++)
		if (strmap_put(&seen, c[i].key, (long)i) >= 0)
			strmap_put(&seen, c[i].key, LONG_MAX);
	for (size_t i = 0; i < n && rc >= 0; i++) {
		struct tensor_rec *rec = &m->tensors[m->n_tensors];
		if (strmap_get(&seen, c[i].key) == LONG_MAX)
			continue;
		rc = onnx_take_payload(c[i].tp, rec, 1, err);
		if (rc == 0)
			rc = onnx_check_kept_payload(c[i].tp, err);
		if (rc == 1) {
			rec->source = c[i].source;
			if (!(rec->name = strdup(c[i].key)))
				rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			m->n_tensors++;
		}
	}
	free(c);
	strmap_release(&seen);
	return rc < 0 ? rc : roles_assign(m, 1, err);
}

int onnx_import(struct graft_model *m, const void *buf, size_t len, const char *basedir,
		struct graft_err *err)
{
	int rc;

	if ((rc = wire_check(buf, len, &onnx__model_proto__descriptor, err)) < 0)
		return rc;
	m->proto = rc ? NULL : onnx__model_proto__unpack(NULL, len, buf);
	if (!m->proto)
		return graft_err_set(err, GRAFT_EFORMAT,
				     "not an ONNX model (protobuf parse failed: truncated or not ONNX)");
	if ((rc = validate_model(m->proto, err)))
		return rc;
	if ((rc = visit_graph(m->proto->graph, resolve_one, (void *)basedir, 0, err)))
		return rc;
	return extract_tensors(m, err);
}

int onnx_skeleton_unpack(struct graft_model *m, const void *buf, size_t len,
			 struct graft_err *err)
{
	int rc;

	if ((rc = wire_check(buf, len, &onnx__model_proto__descriptor, err)) < 0)
		return rc;
	m->proto = rc ? NULL : onnx__model_proto__unpack(NULL, len, buf);
	if (!m->proto)
		return graft_err_set(err, GRAFT_EFORMAT, "graph member is not a valid ModelProto");
	return validate_model(m->proto, err);
}

int onnx_bind_slots(struct graft_model *m, struct graft_err *err)
{
	struct candidate *c;
	struct strmap keys;
	size_t n;
	int rc;

	if ((rc = list_candidates(m->proto->graph, &c, &n, err)))
		return rc;
	if (strmap_init(&keys, n)) {
		free(c);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++)
		if (strmap_put(&keys, c[i].key, (long)i) >= 0)
			strmap_put(&keys, c[i].key, LONG_MAX);
	for (size_t i = 0; i < m->n_tensors && !rc; i++) {
		struct tensor_rec *t = &m->tensors[i];
		long k;
		Onnx__TensorProto *tp;
		if (t->source == GRAFT_SOURCE_DETACHED) {
			t->slot = NULL;
			continue;
		}
		k = strmap_get(&keys, t->name);
		if (k < 0 || k == LONG_MAX || c[k].source != t->source) {
			rc = graft_err_set(err, GRAFT_EFORMAT, "tensor '%s' has no %s slot in the graph",
					   t->name, k == LONG_MAX ? "unique" : "matching");
			break;
		}
		tp = c[k].tp;
		if (onnx_data_fields_set(tp) || tp->data_type != t->dtype || (int)tp->n_dims != t->rank ||
		    (t->rank && memcmp(tp->dims, t->dims, sizeof(int64_t) * (size_t)t->rank) != 0))
			rc = graft_err_set(err, GRAFT_EFORMAT,
					   "tensor '%s' disagrees with its slot in the graph", t->name);
		else
			t->slot = tp;
		strmap_put(&keys, t->name, LONG_MAX);   /* a second claim fails above */
	}
	free(c);
	strmap_release(&keys);
	return rc;
}

