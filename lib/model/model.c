/*
 * model.c: the model object: the tensor table, read-only views for inspection, trainable
 * flags, editing (tensors added, replaced and removed; metadata) and history.  Reading a
 * model from a file is the format layer's (lib/format/read.c).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/model.h"

struct graft_model *model_new(void)
{
	return calloc(1, sizeof(struct graft_model));
}

void graft_model_free(struct graft_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_tensors; i++) {
		struct tensor_rec *t = &m->tensors[i];
		if (t->owner == OWNER_HEAP)
			free(t->data);
		free(t->dims);
		free(t->name);
	}
	free(m->tensors);
	for (size_t i = 0; i < m->n_aliases; i++)
		free(m->aliases[i].name);
	free(m->aliases);
	for (size_t i = 0; i < m->n_history; i++)
		free(m->history[i]);
	free(m->history);
	free(m->real_inputs);
	if (m->tensor_index_known)
		strmap_release(&m->tensor_index);
	if (m->proto)
		onnx__model_proto__free_unpacked(m->proto, NULL);
	if (m->buf) {
		if (m->buf_mapped)
			munmap(m->buf, m->buf_len);
		else
			free(m->buf);
	}
	free(m);
}

int graft_model_new(struct graft_model **out, struct graft_err *err)
{
	struct graft_model *m = model_new();
	int rc;

	*out = NULL;
	if (!m)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if ((rc = skeleton_new(m, err))) {
		graft_model_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int graft_model_from_archive(const struct graft_model *m)
{
	return m->from_archive;
}

/* ---- tensors ---- */

const char *graft_role_name(enum graft_role role)
{
	static const char *names[] = {"parameter", "buffer", "constant", "data", "state"};
	return (unsigned)role < 5 ? names[role] : "unknown";
}

size_t graft_model_tensor_count(const struct graft_model *m)
{
	return m->n_tensors;
}

void graft_model_tensor(const struct graft_model *m, size_t i, struct graft_tensor *v)
{
	const struct tensor_rec *t = &m->tensors[i];

	v->name = t->name;
	v->dtype = t->dtype;
	v->rank = t->rank;
	v->dims = t->dims;
	v->numel = t->numel;
	v->nbytes = t->nbytes;
	v->data = t->data;
	v->role = t->role;
	v->trainable = t->trainable;
	v->source = t->source;
}

static long find_tensor_linear(const struct graft_model *m, const char *name)
{
	for (size_t i = 0; i < m->n_tensors; i++)
		if (m->tensors[i].name && strcmp(m->tensors[i].name, name) == 0)
			return (long)i;
	return -1;
}

/* Forgets the index of tensors by name: a tensor was removed (its name freed). */
static void tensors_changed(struct graft_model *m)
{
	if (m->tensor_index_known)
		strmap_release(&m->tensor_index);
	m->tensor_index_known = 0;
}

/* Brings the index up to the tensors as they are now, adding those appended since it
 * was made (the array may have moved: the names it borrows are the records' own);
 * -1 when memory runs out. */
static int index_tensors(struct graft_model *m)
{
	if (m->tensor_index_known && m->tensor_index_n > m->n_tensors)
		tensors_changed(m);     /* removals go through tensors_changed: a safety net */
	if (!m->tensor_index_known) {
		if (strmap_init(&m->tensor_index, m->n_tensors))
			return -1;
		m->tensor_index_n = 0;
		m->tensor_index_known = 1;
	}
	/* The first of two tensors of one name is the one found, as a scan would. */
	for (size_t i = m->tensor_index_n; i < m->n_tensors; i++) {
		const char *name = m->tensors[i].name;
		if (!name || strmap_get(&m->tensor_index, name) >= 0)
			continue;
		if (strmap_put(&m->tensor_index, name, (long)i) == -2) {
			tensors_changed(m);
			return -1;
		}
	}
	m->tensor_index_n = m->n_tensors;
	return 0;
}

/* Found through an index (a cache, so the const getter may make it): a scan per lookup
 * made every pass over a graph quadratic, hours on a model of 100,000 nodes.  The index
 * grows as tensors are added; removing one drops it. */
long graft_model_find_tensor(const struct graft_model *cm, const char *name)
{
	struct graft_model *m = (struct graft_model *)cm;
	long i;

	if ((!m->tensor_index_known || m->tensor_index_n != m->n_tensors) && index_tensors(m))
		return find_tensor_linear(m, name);
	i = strmap_get(&m->tensor_index, name);
#ifndef NDEBUG
	if (m->n_tensors <= 4096)
		assert(i == find_tensor_linear(m, name));
#endif
	return i;
}

int graft_model_set_trainable(struct graft_model *m, size_t i, int trainable,
			      struct graft_err *err)
{
	if (i >= m->n_tensors)
		return graft_err_set(err, GRAFT_EINVAL, "no tensor %zu", i);
	if (trainable && m->tensors[i].role != GRAFT_ROLE_PARAMETER)
		return graft_err_set(err, GRAFT_EINVAL, "tensor '%s' is a %s, not a parameter",
				     m->tensors[i].name, graft_role_name(m->tensors[i].role));
	m->tensors[i].trainable = trainable != 0;
	return 0;
}

/* ---- editing ---- */

int model_refresh_aliases(struct graft_model *m, struct graft_err *err)
{
	for (size_t i = 0; i < m->n_aliases; i++)
		free(m->aliases[i].name);
	free(m->aliases);
	m->aliases = NULL;
	m->n_aliases = 0;
	return roles_find_aliases(m, err);
}

static int check_new_tensor(const struct graft_model *m, const char *name, int dtype, int rank,
			    const int64_t *dims, enum graft_role role, enum graft_source source,
			    unsigned flags, uint64_t *numel, struct graft_err *err)
{
	size_t esize = graft_dtype_size(dtype);

	if (!name || !*name)
		return graft_err_set(err, GRAFT_EINVAL, "a stored tensor needs a name");
	if (esize == 0)
		return graft_err_set(err, GRAFT_EINVAL, "tensor '%s': data type %d has no fixed "
				     "size", name, dtype);
	if (rank < 0 || rank > GRAFT_MAX_RANK || (rank && !dims) || dims_numel(dims, rank, numel) ||
	    *numel > SIZE_MAX / esize)
		return graft_err_set(err, GRAFT_EINVAL, "tensor '%s': bad shape", name);
	if ((unsigned)role > GRAFT_ROLE_STATE)
		return graft_err_set(err, GRAFT_EINVAL, "tensor '%s': bad role %d", name, (int)role);
	if (source != GRAFT_SOURCE_INITIALIZER && source != GRAFT_SOURCE_DETACHED)
		return graft_err_set(err, GRAFT_EINVAL, "tensor '%s': only initializers and "
				     "detached tensors can be added", name);
	if (graft_model_find_tensor(m, name) >= 0)
		return graft_err_set(err, GRAFT_EINVAL, "tensor '%s' is already stored", name);
	if (source == GRAFT_SOURCE_INITIALIZER && !(flags & MODEL_ADD_NAME_IS_NEW) &&
	    skeleton_has_name(m, name))
		return graft_err_set(err, GRAFT_EINVAL, "tensor '%s': the graph already has a value "
				     "of that name", name);
	return 0;
}

static void release_rec(struct tensor_rec *t)
{
	if (t->owner == OWNER_HEAP)
		free(t->data);
	free(t->dims);
	free(t->name);
}

int graft_model_add_tensor(struct graft_model *m, const char *name, int dtype, int rank,
			   const int64_t *dims, const void *data, enum graft_role role,
			   enum graft_source source, size_t *index, struct graft_err *err)
{
	return model_add_tensor(m, name, dtype, rank, dims, data, role, source, 0, index, err);
}

int model_add_tensor(struct graft_model *m, const char *name, int dtype, int rank,
		     const int64_t *dims, const void *data, enum graft_role role,
		     enum graft_source source, unsigned flags, size_t *index,
		     struct graft_err *err)
{
	struct tensor_rec rec = {0}, *list;
	uint64_t numel;
	int rc;

	if ((rc = check_new_tensor(m, name, dtype, rank, dims, role, source, flags, &numel,
				   err)))
		return rc;
	if (!(list = array_grow(m->tensors, &m->cap_tensors, m->n_tensors, sizeof(*list))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	m->tensors = list;
	rec.dtype = dtype;
	rec.rank = rank;
	rec.numel = numel;
	rec.nbytes = (size_t)numel * graft_dtype_size(dtype);
	rec.owner = OWNER_HEAP;
	rec.role = role;
	rec.trainable = role == GRAFT_ROLE_PARAMETER;
	rec.source = source;
	rec.field = FIELD_RAW;
	rec.name = strdup(name);
	rec.dims = malloc(sizeof(int64_t) * (rank ? (size_t)rank : 1));
	if (rec.nbytes)
		rec.data = data ? malloc(rec.nbytes) : calloc(1, rec.nbytes);
	if (!rec.name || !rec.dims || (rec.nbytes && !rec.data)) {
		release_rec(&rec);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if (rank)
		memcpy(rec.dims, dims, sizeof(int64_t) * (size_t)rank);
	if (data && rec.nbytes)
		memcpy(rec.data, data, rec.nbytes);
	if (source == GRAFT_SOURCE_INITIALIZER && (rc = skeleton_add_initializer(m, &rec, err))) {
		release_rec(&rec);
		return rc;
	}
	m->tensors[m->n_tensors++] = rec;
	if (index)
		*index = m->n_tensors - 1;
	/* An Identity node may already read the new initializer's name. */
	return source == GRAFT_SOURCE_INITIALIZER && !(flags & MODEL_ADD_NAME_IS_NEW)
		? model_refresh_aliases(m, err) : 0;
}

int graft_model_set_tensor_data(struct graft_model *m, size_t i, const void *data,
				size_t nbytes, struct graft_err *err)
{
	struct tensor_rec *t;
	void *copy = NULL;

	if (i >= m->n_tensors)
		return graft_err_set(err, GRAFT_EINVAL, "no tensor %zu", i);
	t = &m->tensors[i];
	if (nbytes != t->nbytes)
		return graft_err_set(err, GRAFT_EINVAL, "tensor '%s' holds %zu bytes, not %zu",
				     t->name, t->nbytes, nbytes);
	if (nbytes && !data)
		return graft_err_set(err, GRAFT_EINVAL, "tensor '%s': no data", t->name);
	if (data == t->data)
		return 0;       /* updated in place already (a training net's parameter) */
	if (nbytes) {
		if (!(copy = malloc(nbytes)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		memcpy(copy, data, nbytes);
	}
	/* Mapped bytes belong to the archive's mapping, which outlives this tensor. */
	if (t->owner == OWNER_HEAP)
		free(t->data);
	t->data = copy;
	t->owner = OWNER_HEAP;
	return 0;
}

int model_retype_tensor(struct graft_model *m, size_t i, int dtype, void *data)
{
	struct tensor_rec *t = &m->tensors[i];

	if (t->owner == OWNER_HEAP)
		free(t->data);
	t->data = data;
	t->owner = OWNER_HEAP;
	t->dtype = dtype;
	t->nbytes = (size_t)t->numel * graft_dtype_size(dtype);
	t->field = FIELD_RAW;
	if (t->slot) {
		t->slot->has_data_type = 1;
		t->slot->data_type = dtype;
	}
	return 0;
}

int graft_model_remove_tensor(struct graft_model *m, size_t i, struct graft_err *err)
{
	struct tensor_rec *t;

	if (i >= m->n_tensors)
		return graft_err_set(err, GRAFT_EINVAL, "no tensor %zu", i);
	t = &m->tensors[i];
	if (t->source == GRAFT_SOURCE_CONSTANT)
		return graft_err_set(err, GRAFT_EINVAL, "tensor '%s' is the value of a Constant "
				     "node, which cannot be removed alone", t->name);
	if (t->source == GRAFT_SOURCE_INITIALIZER)
		skeleton_remove_initializer(m, t->slot);
	release_rec(t);
	memmove(t, t + 1, (m->n_tensors - i - 1) * sizeof(*t));
	m->n_tensors--;
	tensors_changed(m);
	/* Alias targets are indices, which just shifted. */
	return model_refresh_aliases(m, err);
}

void model_drop_tensor(struct graft_model *m, size_t i)
{
	struct tensor_rec *t = &m->tensors[i];

	release_rec(t);
	memmove(t, t + 1, (m->n_tensors - i - 1) * sizeof(*t));
	m->n_tensors--;
	tensors_changed(m);
}

void model_drop_tensors(struct graft_model *m, const unsigned char *drop)
{
	size_t w = 0;

	for (size_t i = 0; i < m->n_tensors; i++) {
		if (drop[i])
			release_rec(&m->tensors[i]);
		else
			m->tensors[w++] = m->tensors[i];
	}
	m->n_tensors = w;
	tensors_changed(m);
}

int graft_model_set_metadata(struct graft_model *m, const char *key, const char *value,
			     struct graft_err *err)
{
	if (!key || !*key)
		return graft_err_set(err, GRAFT_EINVAL, "a metadata property needs a key");
	return skeleton_set_metadata(m, key, value, err);
}

size_t graft_model_alias_count(const struct graft_model *m)
{
	return m->n_aliases;
}

void graft_model_alias(const struct graft_model *m, size_t i, struct graft_alias *a)
{
	a->name = m->aliases[i].name;
	a->tensor = m->aliases[i].target;
	a->tensor_name = m->tensors[a->tensor].name;
	a->role = m->aliases[i].role;
}

/* ---- model-level views ---- */

static const char *str_or_empty(const char *s) { return s ? s : ""; }

void graft_model_meta(const struct graft_model *m, struct graft_model_meta *meta)
{
	const Onnx__ModelProto *p = m->proto;

	meta->ir_version = p->ir_version;
	meta->producer_name = str_or_empty(p->producer_name);
	meta->producer_version = str_or_empty(p->producer_version);
	meta->domain = str_or_empty(p->domain);
	meta->doc_string = str_or_empty(p->doc_string);
	meta->model_version = p->has_model_version ? p->model_version : 0;
	meta->n_opsets = p->n_opset_import;
	meta->n_functions = p->n_functions;
	meta->n_metadata = p->n_metadata_props;
	meta->graph_name = str_or_empty(p->graph->name);
}

void graft_model_opset(const struct graft_model *m, size_t i, const char **domain,
		       int64_t *version)
{
	const Onnx__OperatorSetIdProto *o = m->proto->opset_import[i];

	*domain = str_or_empty(o->domain);
	*version = o->version;
}

void graft_model_metadata(const struct graft_model *m, size_t i, const char **key,
			  const char **value)
{
	*key = str_or_empty(m->proto->metadata_props[i]->key);
	*value = str_or_empty(m->proto->metadata_props[i]->value);
}

const char *graft_model_metadata_value(const struct graft_model *m, const char *key)
{
	for (size_t i = 0; i < m->proto->n_metadata_props; i++) {
		const Onnx__StringStringEntryProto *p = m->proto->metadata_props[i];
		if (p->key && strcmp(p->key, key) == 0)
			return str_or_empty(p->value);
	}
	return NULL;
}

void model_inputs_changed(struct graft_model *m)
{
	free(m->real_inputs);
	m->real_inputs = NULL;
	m->n_real_inputs = 0;
	m->real_inputs_known = 0;
}

/* Models of IR version < 4 list their initializers among the graph inputs: the real
 * inputs are the others.  Worked out once with a map of the initializer names (one
 * strcmp per pair made every input query quadratic, a hang on a hostile model), into
 * out (n_input entries); their count. */
static size_t find_real_inputs(const Onnx__GraphProto *g, size_t *out)
{
	struct strmap inits;
	int mapped = strmap_init(&inits, g->n_initializer) == 0;
	size_t n = 0;

	for (size_t i = 0; mapped && i < g->n_initializer; i++)
		if (g->initializer[i]->name)
			strmap_put(&inits, g->initializer[i]->name, (long)i);
	for (size_t k = 0; k < g->n_input; k++) {
		const char *name = g->input[k]->name;
		int init = 0;
		if (name && mapped)
			init = strmap_get(&inits, name) >= 0;
		for (size_t i = 0; name && !mapped && !init && i < g->n_initializer; i++)
			init = g->initializer[i]->name && strcmp(g->initializer[i]->name, name) == 0;
		if (!init)
			out[n++] = k;
	}
	if (mapped)
		strmap_release(&inits);
	return n;
}

/* The real inputs, cached in m (a cache, so the const getters may fill it); NULL when
 * memory runs out, and the caller works them out each time instead. */
static const size_t *real_inputs(const struct graft_model *cm)
{
	struct graft_model *m = (struct graft_model *)cm;
	const Onnx__GraphProto *g = m->proto->graph;

	if (!m->real_inputs_known) {
		if (!(m->real_inputs = malloc(sizeof(size_t) * (g->n_input ? g->n_input : 1))))
			return NULL;
		m->n_real_inputs = find_real_inputs(g, m->real_inputs);
		m->real_inputs_known = 1;
	}
#ifndef NDEBUG
	/* A change that forgot model_inputs_changed shows here, in test builds. */
	if (g->n_input + g->n_initializer <= 4096) {
		size_t fresh[4096];
		assert(find_real_inputs(g, fresh) == m->n_real_inputs &&
		       memcmp(fresh, m->real_inputs, m->n_real_inputs * sizeof(size_t)) == 0);
	}
#endif
	return m->real_inputs;
}

static const Onnx__ValueInfoProto *real_input(const struct graft_model *m, size_t i)
{
	const Onnx__GraphProto *g = m->proto->graph;
	const size_t *ri = real_inputs(m);
	size_t *tmp;
	const Onnx__ValueInfoProto *v = NULL;

	if (ri)
		return i < m->n_real_inputs ? g->input[ri[i]] : NULL;
	if ((tmp = malloc(sizeof(size_t) * (g->n_input ? g->n_input : 1)))) {
		if (i < find_real_inputs(g, tmp))
			v = g->input[tmp[i]];
		free(tmp);
	}
	return v;
}

size_t graft_model_input_count(const struct graft_model *m)
{
	size_t n = 0;

	if (real_inputs(m))
		return m->n_real_inputs;
	while (real_input(m, n))
		n++;
	return n;
}

size_t graft_model_output_count(const struct graft_model *m)
{
	return m->proto->graph->n_output;
}

static void describe_value(const Onnx__ValueInfoProto *v, struct graft_value_info *vi)
{
	const Onnx__TypeProto *tp = v->type;

	memset(vi, 0, sizeof(*vi));
	vi->name = str_or_empty(v->name);
	vi->rank = -1;
	if (!tp)
		return;
	switch (tp->value_case) {
	case ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE: {
		const Onnx__TypeProto__Tensor *t = tp->tensor_type;
		vi->kind = 't';
		vi->dtype = t->has_elem_type ? t->elem_type : 0;
		if (t->shape && t->shape->n_dim <= GRAFT_MAX_RANK) {
			vi->rank = (int)t->shape->n_dim;
			for (size_t j = 0; j < t->shape->n_dim; j++) {
				const Onnx__TensorShapeProto__Dimension *d = t->shape->dim[j];
				if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
					vi->dims[j] = d->dim_value;
				} else {
					vi->dims[j] = -1;
					vi->dim_params[j] =
						d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
							? d->dim_param : NULL;
				}
			}
		}
		break;
	}
	case ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE: vi->kind = 's'; break;
	case ONNX__TYPE_PROTO__VALUE_MAP_TYPE: vi->kind = 'm'; break;
	case ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE: vi->kind = 'o'; break;
	case ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE: vi->kind = 'p'; break;
	default: break;
	}
}

void graft_model_input(const struct graft_model *m, size_t i, struct graft_value_info *vi)
{
	describe_value(real_input(m, i), vi);
}

void graft_model_output(const struct graft_model *m, size_t i, struct graft_value_info *vi)
{
	describe_value(m->proto->graph->output[i], vi);
}

size_t graft_model_node_count(const struct graft_model *m)
{
	return m->proto->graph->n_node;
}

void graft_model_node(const struct graft_model *m, size_t i, struct graft_node *node)
{
	const Onnx__NodeProto *n = m->proto->graph->node[i];

	node->name = str_or_empty(n->name);
	node->op_type = str_or_empty(n->op_type);
	node->domain = str_or_empty(n->domain);
	node->n_inputs = n->n_input;
	node->inputs = n->input;
	node->n_outputs = n->n_output;
	node->outputs = n->output;
	node->n_attributes = n->n_attribute;
}

/* ---- history ---- */

int model_add_history_line(struct graft_model *m, const char *line, struct graft_err *err)
{
	char **h = realloc(m->history, (m->n_history + 1) * sizeof(*h));
	char *copy = strdup(line);

	if (h)
		m->history = h;
	if (!h || !copy) {
		free(copy);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	m->history[m->n_history++] = copy;
	return 0;
}

/* Appends s to *buf, single-quoted for the shell when it holds anything unusual. */
static int append_quoted(char **buf, size_t *len, const char *s)
{
	int plain = *s != 0;
	for (const char *p = s; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			    "-_./=:,+@%", *p))
			plain = 0;
	size_t need = *len + 4 * strlen(s) + 4;
	char *b = realloc(*buf, need);
	if (!b)
		return -1;
	*buf = b;
	char *o = b + *len;
	if (*len)
		*o++ = ' ';
	if (plain) {
		o = stpcpy(o, s);
	} else {
		*o++ = '\'';
		for (const char *p = s; *p; p++) {
			if (*p == '\'')
				o = stpcpy(o, "'\\''");
			else
				*o++ = *p;
		}
		*o++ = '\'';
	}
	*o = 0;
	*len = (size_t)(o - b);
	return 0;
}

int graft_model_add_history(struct graft_model *m, const char *tool, int argc,
			    char *const *argv, struct graft_err *err)
{
	char *line = NULL;
	size_t len = 0;
	int rc;

	if (append_quoted(&line, &len, tool)) {
		free(line);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (int i = 0; i < argc; i++)
		if (append_quoted(&line, &len, argv[i])) {
			free(line);
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
	rc = model_add_history_line(m, line, err);
	free(line);
	return rc;
}

int graft_model_note_history(struct graft_model *m, const char *note, struct graft_err *err)
{
	char *line;
	size_t len;

	if (!m->n_history)
		return graft_err_set(err, GRAFT_EINVAL, "no history entry to note on");
	if (strchr(note, '\n'))
		return graft_err_set(err, GRAFT_EINVAL, "a history note is one line");
	len = strlen(m->history[m->n_history - 1]);
	if (!(line = realloc(m->history[m->n_history - 1], len + strlen(note) + 5)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	memcpy(line + len, "  # ", 4);
	strcpy(line + len + 4, note);
	m->history[m->n_history - 1] = line;
	return 0;
}

/* Whether history line h is of a tool that changed the model (not an import or export). */
static int changes_model(const char *h)
{
	return strncmp(h, "graft-import", 12) != 0 && strncmp(h, "graft-export", 12) != 0;
}

int graft_model_provenance(struct graft_model *m, struct graft_err *err)
{
	const char *old = graft_model_metadata_value(m, "provenance");
	size_t len = old ? strlen(old) : 0, n = 0;
	char *text;
	int rc;

	for (size_t i = 0; i < m->n_history; i++)
		if (changes_model(m->history[i])) {
			len += strlen(m->history[i]) + 1;
			n++;
		}
	if (!n)
		return 0;
	if (!(text = malloc(len + 1)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	text[0] = 0;
	if (old)
		strcpy(text, old);
	for (size_t i = 0; i < m->n_history; i++)
		if (changes_model(m->history[i])) {
			if (*text)
				strcat(text, "\n");
			strcat(text, m->history[i]);
		}
	rc = graft_model_set_metadata(m, "provenance", text, err);
	free(text);
	return rc;
}

size_t graft_model_history_count(const struct graft_model *m)
{
	return m->n_history;
}

const char *graft_model_history(const struct graft_model *m, size_t i)
{
	return m->history[i];
}
