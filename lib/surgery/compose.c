/*
 * compose.c: two models joined into one, the second fed by the first, as
 * onnx.compose.merge_models joins them: a's nodes then b's, the names b read from its
 * fed inputs replaced by the a outputs that feed them.  The result has a's inputs and
 * b's inputs not fed; a's outputs not feeding b, then b's outputs.
 *
 * It is done on the skeletons: b's messages move into a's graph and b's stored tensors
 * into a's table with their flags (trainable, frozen) and payloads, so nothing goes
 * through an export.  Where onnx.compose leaves a broken model or refuses, this does what
 * the models mean: reads of a fed input inside b's subgraphs are renamed too, a value of
 * b named as one of a's gets a new name ("GRAPH/name": only b's inputs and outputs, which
 * its user sees, must differ), opsets are imported once each, and the IR version is the
 * higher of the two.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surgery/surgery.h"

/* ---- checks ----------------------------------------------------------------------------- */

static long output_index(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_output; i++)
		if (g->output[i]->name && strcmp(g->output[i]->name, name) == 0)
			return (long)i;
	return -1;
}

static long input_index(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_input; i++)
		if (g->input[i]->name && strcmp(g->input[i]->name, name) == 0)
			return (long)i;
	return -1;
}

static int is_initializer(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_initializer; i++)
		if (g->initializer[i]->name && strcmp(g->initializer[i]->name, name) == 0)
			return 1;
	return 0;
}

/* The declared tensor type of vi: element type and dims (-1 unknown or symbolic);
 * rank -1 when not a tensor with a shape. */
static int declared(const Onnx__ValueInfoProto *vi, int *dtype, int64_t *dims)
{
	const Onnx__TypeProto__Tensor *t = vi->type &&
		vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ?
		vi->type->tensor_type : NULL;

	*dtype = t && t->has_elem_type ? t->elem_type : 0;
	if (!t || !t->shape || t->shape->n_dim > GRAFT_MAX_RANK)
		return -1;
	for (size_t j = 0; j < t->shape->n_dim; j++)
		dims[j] = t->shape->dim[j]->value_case ==
			ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ?
			t->shape->dim[j]->dim_value : -1;
	return (int)t->shape->n_dim;
}

/* dims as "[?,5]" (? for a symbolic or unknown dim). */
static void shape_text(const int64_t *dims, int rank, char *buf, size_t size)
{
	size_t n = (size_t)snprintf(buf, size, "[");

	for (int j = 0; j < rank && n < size; j++)
		n += dims[j] >= 0 ? (size_t)snprintf(buf + n, size - n, "%s%lld", j ? "," : "",
						     (long long)dims[j]) :
			(size_t)snprintf(buf + n, size - n, "%s?", j ? "," : "");
	if (n < size)
		snprintf(buf + n, size - n, "]");
}

/* An output of a can feed an input of b when their declared types agree where both are
 * known: the element type, the rank and each fixed dim. */
static int check_types(const Onnx__ValueInfoProto *out, const Onnx__ValueInfoProto *in,
		       struct graft_err *err)
{
	int t_out, t_in, r_out, r_in, clash;
	int64_t d_out[GRAFT_MAX_RANK], d_in[GRAFT_MAX_RANK];
	char s_out[96], s_in[96];

	r_out = declared(out, &t_out, d_out);
	r_in = declared(in, &t_in, d_in);
	if (t_out && t_in && t_out != t_in)
		return graft_err_set(err, GRAFT_EINVAL, "output '%s' is %s, input '%s' %s",
				     out->name, graft_dtype_name(t_out), in->name,
				     graft_dtype_name(t_in));
	if (r_out < 0 || r_in < 0)
		return 0;
	clash = r_out != r_in;
	for (int j = 0; j < r_out && !clash; j++)
		clash = d_out[j] >= 0 && d_in[j] >= 0 && d_out[j] != d_in[j];
	if (!clash)
		return 0;
	shape_text(d_out, r_out, s_out, sizeof(s_out));
	shape_text(d_in, r_in, s_in, sizeof(s_in));
	return graft_err_set(err, GRAFT_EINVAL, "output '%s' is %s, input '%s' takes %s",
			     out->name, s_out, in->name, s_in);
}

/* The names a value of the top graph may have: inputs, initializers, node outputs. */
static int top_names(struct strmap *names, const Onnx__GraphProto *g)
{
	if (graph_defined_init(names, g))
		return -1;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (g->initializer[i]->name &&
		    strmap_put_copy(names, g->initializer[i]->name, 1) == -2) {
			strmap_release_copies(names);
			return -1;
		}
	return 0;
}

/* The names b's top graph shares with a's, fed inputs aside, into *clash (copies, *n of
 * them); GRAFT_EINVAL when one is an input or output of b (a name its user sees). */
static int find_clashes(const Onnx__GraphProto *ga, const Onnx__GraphProto *gb,
			const char *const *fed, size_t n_fed, char ***clash, size_t *n,
			struct graft_err *err)
{
	struct strmap in_a, in_b;
	int rc = 0;

	*clash = NULL;
	*n = 0;
	if (top_names(&in_a, ga))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (top_names(&in_b, gb)) {
		strmap_release_copies(&in_a);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < in_b.cap && !rc; i++) {
		const char *k = in_b.keys[i];
		int is_fed = 0;
		char **more;
		if (!k || strmap_get(&in_a, k) < 0)
			continue;
		for (size_t j = 0; j < n_fed && !is_fed; j++)
			is_fed = strcmp(fed[j], k) == 0;
		if (is_fed)
			continue;
		if ((input_index(gb, k) >= 0 && !is_initializer(gb, k)) || output_index(gb, k) >= 0)
			rc = graft_err_set(err, GRAFT_EINVAL, "both models have a value named "
					   "'%s', an %s of the second: rename it in one of them", k,
					   output_index(gb, k) >= 0 ? "output" : "input");
		else if (!(more = realloc(*clash, (*n + 1) * sizeof(*more))) ||
			 !(more[*n] = strdup(k)))
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		else
			*clash = more, (*n)++;
	}
	strmap_release_copies(&in_a);
	strmap_release_copies(&in_b);
	return rc;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int same_str(const char *x, const char *y)
{
	return strcmp(x ? x : "", y ? y : "") == 0;
}

/* Opsets: a domain both import must be at one version. */
static int check_opsets(const Onnx__ModelProto *a, const Onnx__ModelProto *b,
			struct graft_err *err)
{
	for (size_t i = 0; i < b->n_opset_import; i++)
		for (size_t j = 0; j < a->n_opset_import; j++)
			if (same_str(a->opset_import[j]->domain, b->opset_import[i]->domain) &&
			    a->opset_import[j]->version != b->opset_import[i]->version) {
				const char *d = b->opset_import[i]->domain;
				return graft_err_set(err, GRAFT_EUNSUPPORTED, "the first model "
						     "imports opset %lld of %s, the second %lld: "
						     "both must use one",
						     (long long)a->opset_import[j]->version,
						     d && *d ? d : "ai.onnx",
						     (long long)b->opset_import[i]->version);
			}
	return 0;
}

/* Local functions (domain, name) and metadata keys: none both define differently. */
static int check_functions_and_metadata(const Onnx__ModelProto *a, const Onnx__ModelProto *b,
					struct graft_err *err)
{
	for (size_t i = 0; i < b->n_functions; i++)
		for (size_t j = 0; j < a->n_functions; j++)
			if (same_str(a->functions[j]->name, b->functions[i]->name) &&
			    same_str(a->functions[j]->domain, b->functions[i]->domain))
				return graft_err_set(err, GRAFT_EINVAL, "both models define the "
						     "function '%s'", b->functions[i]->name);
	for (size_t i = 0; i < b->n_metadata_props; i++)
		for (size_t j = 0; j < a->n_metadata_props; j++)
			if (same_str(a->metadata_props[j]->key, b->metadata_props[i]->key) &&
			    !same_str(a->metadata_props[j]->value, b->metadata_props[i]->value))
				return graft_err_set(err, GRAFT_EINVAL, "both models hold the "
						     "metadata '%s', with different values",
						     b->metadata_props[i]->key);
	return 0;
}

/* ---- b made ready: fed inputs renamed, payloads on the heap ----------------------------- */

/* The new name of old when it is one of from's n names (to's at the same place), else
 * NULL. */
static const char *renamed(const char *old, const char *const *from, const char *const *to,
			   size_t n)
{
	for (size_t i = 0; old && i < n; i++)
		if (strcmp(old, from[i]) == 0)
			return to[i];
	return NULL;
}

/* *name renamed when it is one of from's; -1 when out of memory. */
static int rename_one(char **name, const char *const *from, const char *const *to, size_t n)
{
	const char *nw = renamed(*name, from, to, n);
	return nw && edit_set_str(name, nw) ? -1 : 0;
}

static int rename_list(char **names, size_t count, const char *const *from,
		       const char *const *to, size_t n)
{
	for (size_t k = 0; k < count; k++)
		if (rename_one(&names[k], from, to, n))
			return -1;
	return 0;
}

/* Renames from's n names to to's in g's nodes and their subgraphs' nodes, in one pass (a
 * new name may be another old one): the nodes' reads alone (reads_only), or every use and
 * declaration, g's and its subgraphs' (ONNX names are unique across scopes: a name means
 * one value anywhere, so no subgraph defines a name of g's itself). */
static int rename_in_graph(Onnx__GraphProto *g, const char *const *from,
			   const char *const *to, size_t n, int reads_only, int depth)
{
	if (depth > GRAFT_MAX_GRAPH_DEPTH)
		return 0;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *nd = g->node[i];
		if (rename_list(nd->input, nd->n_input, from, to, n) ||
		    (!reads_only && rename_list(nd->output, nd->n_output, from, to, n)))
			return -1;
		for (size_t k = 0; k < nd->n_attribute; k++) {
			Onnx__AttributeProto *at = nd->attribute[k];
			if (at->g && rename_in_graph(at->g, from, to, n, reads_only, depth + 1))
				return -1;
			for (size_t s = 0; s < at->n_graphs; s++)
				if (rename_in_graph(at->graphs[s], from, to, n, reads_only,
						    depth + 1))
					return -1;
		}
	}
	if (reads_only)
		return 0;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (rename_one(&g->initializer[i]->name, from, to, n))
			return -1;
	for (size_t i = 0; i < g->n_value_info; i++)
		if (rename_one(&g->value_info[i]->name, from, to, n))
			return -1;
	for (size_t i = 0; i < g->n_output; i++)
		if (rename_one(&g->output[i]->name, from, to, n))
			return -1;
	return 0;
}

/* ---- b's own names that a has too, renamed ---------------------------------------------- */

/* A name for old that neither graph has: "GRAPH/old", then "GRAPH/old.2", ... */
static char *fresh_name(const char *graph, const char *old, const struct strmap *taken_a,
			const struct strmap *taken_b, const struct strmap *made)
{
	size_t size = strlen(graph) + strlen(old) + 32;
	char *name = malloc(size);

	for (int k = 1; name; k++) {
		if (k == 1)
			snprintf(name, size, "%s/%s", graph, old);
		else
			snprintf(name, size, "%s/%s.%d", graph, old, k);
		if (strmap_get(taken_a, name) < 0 && strmap_get(taken_b, name) < 0 &&
		    strmap_get(made, name) < 0)
			break;
	}
	return name;
}

/* Gives b's values, nodes' outputs and stored tensors named in clash (none of them b's
 * inputs or outputs) new names, so that b can join a without changing what it computes. */
static int rename_clashes(const Onnx__GraphProto *ga, struct graft_model *b,
			  char *const *clash, size_t n, struct graft_err *err)
{
	Onnx__GraphProto *gb = b->proto->graph;
	const char *graph = gb->name && *gb->name ? gb->name : "second";
	struct strmap taken_a, taken_b, made;
	char **to = calloc(n + 1, sizeof(*to));
	int rc = 0;

	if (!to || top_names(&taken_a, ga)) {
		free(to);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if (top_names(&taken_b, gb)) {
		strmap_release_copies(&taken_a);
		free(to);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	int made_ok = strmap_init(&made, n) == 0;
	if (!made_ok)
		rc = -1;
	for (size_t i = 0; i < n && !rc; i++)
		if (!(to[i] = fresh_name(graph, clash[i], &taken_a, &taken_b, &made)) ||
		    strmap_put(&made, to[i], (long)i) == -2)
			rc = -1;
	const char *const *old = (const char *const *)clash;
	const char *const *nw = (const char *const *)to;
	if (!rc)
		rc = rename_in_graph(gb, old, nw, n, 0, 0);
	for (size_t i = 0; i < b->n_tensors && !rc; i++)
		rc = rename_one(&b->tensors[i].name, old, nw, n);
	if (made_ok)
		strmap_release(&made);
	strmap_release_copies(&taken_a);
	strmap_release_copies(&taken_b);
	free_names(to, n);
	return rc ? graft_err_set(err, GRAFT_ENOMEM, "out of memory") : 0;
}

/* Takes value info out of list where its name is name (freed). */
static void drop_named(Onnx__ValueInfoProto **list, size_t *n, const char *name)
{
	size_t k = 0;

	for (size_t i = 0; i < *n; i++) {
		if (list[i]->name && strcmp(list[i]->name, name) == 0)
			protobuf_c_message_free_unpacked(&list[i]->base, NULL);
		else
			list[k++] = list[i];
	}
	*n = k;
}

/* b's fed inputs become reads of a's outputs: renamed, their inputs and value infos
 * gone; an output of b that is a fed input itself is renamed too. */
static int feed(Onnx__GraphProto *gb, const char *const *outs, const char *const *ins,
		size_t n_io)
{
	if (rename_in_graph(gb, ins, outs, n_io, 1, 0))
		return -1;
	for (size_t k = 0; k < gb->n_output; k++)
		if (rename_one(&gb->output[k]->name, ins, outs, n_io))
			return -1;
	for (size_t i = 0; i < n_io; i++) {
		drop_named(gb->input, &gb->n_input, ins[i]);
		drop_named(gb->value_info, &gb->n_value_info, ins[i]);
	}
	return 0;
}

/* Tensors that point into b's input buffer get copies of their own, so b's buffer can go. */
static int own_payloads(struct graft_model *b, struct graft_err *err)
{
	for (size_t i = 0; i < b->n_tensors; i++) {
		struct tensor_rec *t = &b->tensors[i];
		void *copy;
		if (t->owner == OWNER_HEAP)
			continue;
		if (!(copy = malloc(t->nbytes ? t->nbytes : 1)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		memcpy(copy, t->data, t->nbytes);
		t->data = copy;
		t->owner = OWNER_HEAP;
	}
	return 0;
}

/* ---- the move ---------------------------------------------------------------------------- */

/* Makes *arr (of n pointers) room for n + extra (realloc: when it fails, *arr is as it
 * was). */
static int room(void *arr_ptr, size_t n, size_t extra)
{
	void **arr = arr_ptr;
	void *bigger;

	if (!extra)
		return 0;
	if (!(bigger = realloc(*arr, (n + extra) * sizeof(void *))))
		return -1;
	*arr = bigger;
	return 0;
}

/* Moves b's n pointers to the end of a's array (which has room); b's array is emptied. */
static void move_all(void *to_ptr, size_t *n_to, void *from_ptr, size_t *n_from)
{
	void ***to = to_ptr, ***from = from_ptr;

	if (*n_from)
		memcpy(*to + *n_to, *from, *n_from * sizeof(void *));
	*n_to += *n_from;
	*n_from = 0;
}

static const char *opset_key(const void *m)
{
	return ((const Onnx__OperatorSetIdProto *)m)->domain;
}

static const char *metadata_key(const void *m)
{
	return ((const Onnx__StringStringEntryProto *)m)->key;
}

/* The entries of from (opset imports, metadata) whose key no entry of to has: counted;
 * with move also taken out of from and appended to to, which has room for them. */
static size_t new_entries(void *to_ptr, size_t *n_to, void *from_ptr, size_t *n_from,
			  const char *(*key)(const void *), int move)
{
	void **to = *(void ***)to_ptr, **from = *(void ***)from_ptr;
	size_t n = 0, kept = 0;

	for (size_t i = 0; i < *n_from; i++) {
		int have = 0;
		for (size_t j = 0; j < *n_to && !have; j++)
			have = same_str(key(to[j]), key(from[i]));
		n += !have;
		if (!move)
			continue;
		if (have)
			from[kept++] = from[i];
		else
			to[(*n_to)++] = from[i];
	}
	if (move)
		*n_from = kept;
	return n;
}

/* Removes a's outputs that feed b (freed). */
static void drop_fed_outputs(Onnx__GraphProto *ga, const char *const *outs, size_t n_io)
{
	for (size_t i = 0; i < n_io; i++)
		drop_named(ga->output, &ga->n_output, outs[i]);
}

/* The graph's name: a's and b's joined by '_', as onnx.compose names it. */
static int join_names(Onnx__GraphProto *ga, const Onnx__GraphProto *gb)
{
	const char *x = ga->name ? ga->name : "", *y = gb->name ? gb->name : "";
	char *name = malloc(strlen(x) + strlen(y) + 2);

	if (!name)
		return -1;
	strcpy(name, x);
	strcat(name, "_");
	strcat(name, y);
	free(ga->name);
	ga->name = name;
	return 0;
}

/* Room everywhere a grows, so that the move itself cannot fail. */
static int make_room(struct graft_model *a, struct graft_model *b)
{
	Onnx__GraphProto *ga = a->proto->graph, *gb = b->proto->graph;
	Onnx__ModelProto *pa = a->proto, *pb = b->proto;
	struct tensor_rec *t;

	if (room(&ga->node, ga->n_node, gb->n_node) ||
	    room(&ga->input, ga->n_input, gb->n_input) ||
	    room(&ga->output, ga->n_output, gb->n_output) ||
	    room(&ga->initializer, ga->n_initializer, gb->n_initializer) ||
	    room(&ga->sparse_initializer, ga->n_sparse_initializer, gb->n_sparse_initializer) ||
	    room(&ga->value_info, ga->n_value_info, gb->n_value_info) ||
	    room(&ga->quantization_annotation, ga->n_quantization_annotation,
		 gb->n_quantization_annotation) ||
	    room(&pa->functions, pa->n_functions, pb->n_functions) ||
	    room(&pa->opset_import, pa->n_opset_import,
		 new_entries(&pa->opset_import, &pa->n_opset_import, &pb->opset_import,
			     &pb->n_opset_import, opset_key, 0)) ||
	    room(&pa->metadata_props, pa->n_metadata_props,
		 new_entries(&pa->metadata_props, &pa->n_metadata_props, &pb->metadata_props,
			     &pb->n_metadata_props, metadata_key, 0)))
		return -1;
	if (!b->n_tensors)
		return 0;
	if (!(t = realloc(a->tensors, (a->n_tensors + b->n_tensors) * sizeof(*t))))
		return -1;
	a->tensors = t;
	a->cap_tensors = a->n_tensors + b->n_tensors;
	return 0;
}

static void move_everything(struct graft_model *a, struct graft_model *b)
{
	Onnx__GraphProto *ga = a->proto->graph, *gb = b->proto->graph;
	Onnx__ModelProto *pa = a->proto, *pb = b->proto;

	move_all(&ga->node, &ga->n_node, &gb->node, &gb->n_node);
	move_all(&ga->input, &ga->n_input, &gb->input, &gb->n_input);
	move_all(&ga->output, &ga->n_output, &gb->output, &gb->n_output);
	move_all(&ga->initializer, &ga->n_initializer, &gb->initializer, &gb->n_initializer);
	move_all(&ga->sparse_initializer, &ga->n_sparse_initializer, &gb->sparse_initializer,
		 &gb->n_sparse_initializer);
	move_all(&ga->value_info, &ga->n_value_info, &gb->value_info, &gb->n_value_info);
	move_all(&ga->quantization_annotation, &ga->n_quantization_annotation,
		 &gb->quantization_annotation, &gb->n_quantization_annotation);
	move_all(&pa->functions, &pa->n_functions, &pb->functions, &pb->n_functions);
	new_entries(&pa->opset_import, &pa->n_opset_import, &pb->opset_import,
		    &pb->n_opset_import, opset_key, 1);
	new_entries(&pa->metadata_props, &pa->n_metadata_props, &pb->metadata_props,
		    &pb->n_metadata_props, metadata_key, 1);
	if (pb->has_ir_version && (!pa->has_ir_version || pb->ir_version > pa->ir_version)) {
		pa->ir_version = pb->ir_version;
		pa->has_ir_version = 1;
	}
	/* the table: b's records (slots now in a's skeleton, payloads on the heap) */
	memcpy(a->tensors + a->n_tensors, b->tensors, b->n_tensors * sizeof(*b->tensors));
	a->n_tensors += b->n_tensors;
	b->n_tensors = 0;
}

int graft_model_compose(struct graft_model *a, struct graft_model *b,
			const char *const *outs, const char *const *ins, size_t n_io,
			struct graft_err *err)
{
	Onnx__GraphProto *ga = a->proto->graph, *gb = b->proto->graph;
	int rc;

	if (!ga || !gb)
		return graft_err_set(err, GRAFT_EINVAL, "a model without a graph");
	if (n_io == 0)
		return graft_err_set(err, GRAFT_EINVAL, "nothing connects the two models");
	for (size_t i = 0; i < n_io; i++) {
		long o = output_index(ga, outs[i]), in = input_index(gb, ins[i]);
		if (o < 0)
			return graft_err_set(err, GRAFT_EINVAL, "the first model has no output "
					     "'%s'", outs[i]);
		if (in < 0 || is_initializer(gb, ins[i]))
			return graft_err_set(err, GRAFT_EINVAL, "the second model has no input "
					     "'%s'", ins[i]);
		for (size_t j = 0; j < i; j++)
			if (strcmp(ins[j], ins[i]) == 0)
				return graft_err_set(err, GRAFT_EINVAL, "input '%s' is fed twice",
						     ins[i]);
		if ((rc = check_types(ga->output[o], gb->input[in], err)))
			return rc;
	}
	char **clash;
	size_t n_clash;
	if ((rc = find_clashes(ga, gb, ins, n_io, &clash, &n_clash, err)))
		return rc;
	if ((rc = check_opsets(a->proto, b->proto, err)) ||
	    (rc = check_functions_and_metadata(a->proto, b->proto, err)) ||
	    (rc = own_payloads(b, err)) ||
	    (rc = rename_clashes(ga, b, clash, n_clash, err))) {
		free_names(clash, n_clash);
		return rc;
	}
	free_names(clash, n_clash);
	/* b first (it is consumed either way), then a, where nothing can fail after
	 * make_room */
	if (feed(gb, outs, ins, n_io) || make_room(a, b))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (join_names(ga, gb))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	drop_fed_outputs(ga, outs, n_io);
	move_everything(a, b);
	model_inputs_changed(a);        /* (the tensor index grows by itself) */
	return model_refresh_aliases(a, err);
}
