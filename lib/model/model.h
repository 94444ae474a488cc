/*
 * model.h: the private header of lib/model/: the model object and its skeleton.
 *
 * The in-memory model is the ONNX ModelProto itself, unpacked by protobuf-c, with the
 * payload of every stored tensor moved out of it into a table (struct tensor_rec).  The
 * ModelProto without those payloads is the "skeleton": it keeps every field of the
 * original, the ones graft does not interpret included, which is what makes
 * ONNX -> .graft -> ONNX lossless.  Each table entry remembers its slot in the skeleton
 * and the field its payload came from, so export puts the bytes back where they were.
 * docs/format.md explains why the skeleton is protobuf rather than text.
 *
 * skeleton.c is the one file that builds protobuf messages; the layers above ask it (or
 * graph.c's queries) instead of calling onnx__*__init themselves.
 */
#ifndef GRAFT_MODEL_H
#define GRAFT_MODEL_H

#include "base/base.h"
#include "onnx.pb-c.h"

/* Subgraphs (If/Loop/Scan bodies) inside subgraphs that a reader accepts and a walk
 * follows (the ONNX backend suite nests them 2 deep). */
#define GRAFT_MAX_GRAPH_DEPTH 64

/* The TensorProto field a payload was stored in, so that export restores it exactly. */
enum payload_field {
	FIELD_RAW = 0,          /* raw_data */
	FIELD_FLOAT = 1,        /* float_data: FLOAT, COMPLEX64 */
	FIELD_INT32 = 2,        /* int32_data: INT32, INT16, INT8, UINT16, UINT8, BOOL,
				 * FLOAT16, BFLOAT16 (widened to int32 per element) */
	FIELD_INT64 = 3,        /* int64_data: INT64 */
	FIELD_DOUBLE = 4,       /* double_data: DOUBLE, COMPLEX128 */
	FIELD_UINT64 = 5,       /* uint64_data: UINT32, UINT64 (widened to uint64) */
};
const char *payload_field_name(enum payload_field f);
int payload_field_from_name(const char *name);

/* Who owns a tensor's bytes. */
enum data_owner {
	OWNER_HEAP = 0,         /* malloc'd: free() it */
	OWNER_MAP = 1,          /* inside the model's mapped archive: leave it */
};

struct tensor_rec {
	char *name;
	int dtype;
	int rank;
	int64_t *dims;          /* (rank) */
	uint64_t numel;
	size_t nbytes;
	void *data;             /* natural little-endian layout of dtype */
	enum data_owner owner;
	enum graft_role role;
	int trainable;
	enum graft_source source;
	enum payload_field field;
	Onnx__TensorProto *slot;/* where the payload belongs in the skeleton; NULL for a
				 * detached tensor, which has no place there */
};

/* A name that an Identity node gives a stored tensor (torch aliases equal initializers
 * this way), with the role its own uses give it.  Derived from the graph on every read. */
struct alias_rec {
	char *name;
	size_t target;          /* index into tensors[] */
	enum graft_role role;
};

struct graft_model {
	Onnx__ModelProto *proto;    /* the skeleton; payloads of tensors[] moved out */
	struct tensor_rec *tensors;
	size_t n_tensors;
	size_t cap_tensors;         /* room at tensors (readers that fill it leave this 0) */
	struct alias_rec *aliases;
	size_t n_aliases;
	char **history;
	size_t n_history;
	void *buf;                  /* the .graft input that tensor data may point into */
	size_t buf_len;
	int buf_mapped;             /* 1: munmap buf; 0: free it */
	int from_archive;
	/* The graph inputs that are not initializers, as indices into graph->input, worked
	 * out on first use by the (const) getters; model_inputs_changed drops them. */
	size_t *real_inputs;
	size_t n_real_inputs;
	int real_inputs_known;
	/* graft_model_find_tensor's index of tensors by name, made on first use and grown
	 * as tensors are added (it holds the first tensor_index_n of them). */
	struct strmap tensor_index;
	size_t tensor_index_n;
	int tensor_index_known;
};

/* ---- model.c ---- */
struct graft_model *model_new(void);
/* graft_model_add_tensor with flags: MODEL_ADD_NAME_IS_NEW when the caller knows that no
 * value of the graph has the name (so nothing reads it and it makes no alias): the scans
 * of the graph that check it are left out, for passes that add many tensors. */
#define MODEL_ADD_NAME_IS_NEW 1u
int model_add_tensor(struct graft_model *m, const char *name, int dtype, int rank,
		     const int64_t *dims, const void *data, enum graft_role role,
		     enum graft_source source, unsigned flags, size_t *index,
		     struct graft_err *err);
int model_add_history_line(struct graft_model *m, const char *line, struct graft_err *err);
/* Derives m->aliases again from the graph, after tensors were added or removed. */
int model_refresh_aliases(struct graft_model *m, struct graft_err *err);
/* Gives tensor i another dtype of the same element count, with data (heap, taken: numel
 * elements of dtype), stored as raw_data from now on. */
int model_retype_tensor(struct graft_model *m, size_t i, int dtype, void *data);
/* Forgets stored tensor i (its data freed) without touching the skeleton: for a caller
 * that removed the tensor's place in the graph itself (a Constant node). Refresh the
 * aliases afterwards. */
void model_drop_tensor(struct graft_model *m, size_t i);
/* The same for every tensor i with drop[i] set, in one pass. */
void model_drop_tensors(struct graft_model *m, const unsigned char *drop);
/* To be called by whatever adds, removes or renames graph inputs or initializers: the
 * getters' list of real inputs is worked out again on next use. */
void model_inputs_changed(struct graft_model *m);

/* ---- roles.c ---- */
/* Works out each stored tensor's role from the slots that read it (set_tensor_roles) and
 * fills m->aliases (which must be empty) from the graph's Identity nodes. */
int roles_assign(struct graft_model *m, int set_tensor_roles, struct graft_err *err);
/* roles_assign without touching the tensors' roles: the aliases alone. */
int roles_find_aliases(struct graft_model *m, struct graft_err *err);

/* ---- skeleton.c: the only file that builds protobuf messages ---- */
/* An empty model: ir_version 8, default-domain opset 17, a graph with nothing in it. */
int skeleton_new(struct graft_model *m, struct graft_err *err);
/* 1 if name is an initializer, a graph input or a node output of the main graph. */
int skeleton_has_name(const struct graft_model *m, const char *name);
/* Appends an initializer TensorProto (no payload) for t, whose name, dtype and dims are
 * set, and points t->slot at it. */
int skeleton_add_initializer(struct graft_model *m, struct tensor_rec *t, struct graft_err *err);
/* Takes tp out of the main graph's initializers and frees it. */
void skeleton_remove_initializer(struct graft_model *m, Onnx__TensorProto *tp);
/* Sets, replaces or (value NULL) removes a metadata property. */
int skeleton_set_metadata(struct graft_model *m, const char *key, const char *value,
			  struct graft_err *err);
/* A new node of op, named name, reading the n_in names of in and writing out; NULL when
 * out of memory.  Free it with protobuf_c_message_free_unpacked once no graph holds it. */
Onnx__NodeProto *skeleton_node_new(const char *op, const char *name, const char *const *in,
				   size_t n_in, const char *out);
/* Appends an int, ints or float attribute to n: 0, or -1 when out of memory. */
int skeleton_node_attr_int(Onnx__NodeProto *n, const char *name, int64_t value);
int skeleton_node_attr_ints(Onnx__NodeProto *n, const char *name, const int64_t *v,
			    size_t count);
int skeleton_node_attr_float(Onnx__NodeProto *n, const char *name, float value);
/* Fills caller-owned e with borrowed key and value (export's external-data entries,
 * which live for one pack). */
void skeleton_string_entry(Onnx__StringStringEntryProto *e, char *key, char *value);
/* A new ValueInfoProto for a tensor: name, element type and shape, dim i symbolic when
 * dim_params (may be NULL) names it, unknown when dims[i] < 0; a name alone when dtype
 * <= 0 or rank < 0.  NULL when out of memory. */
Onnx__ValueInfoProto *skeleton_value_info(const char *name, int dtype, int rank,
					  const int64_t *dims, const char *const *dim_params);

/* ---- graph.c: what surgery asks of the skeleton ---- */
/* A node of the default ONNX domain with that op_type. */
int graph_is_op(const Onnx__NodeProto *n, const char *op);
/* Attribute name of n, or NULL; its int or float value, or dflt when absent. */
Onnx__AttributeProto *graph_attr(const Onnx__NodeProto *n, const char *name);
int64_t graph_attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt);
float graph_attr_float(const Onnx__NodeProto *n, const char *name, float dflt);
/* Called with each name a node reads: its inputs, and what its subgraphs' nodes read and
 * output; a subgraph nested too deep to follow reads GRAPH_TOO_DEEP (an empty name no
 * value has).  A nonzero return stops the walk and is returned. */
typedef int (*graph_name_fn)(const char *name, void *ctx);
int graph_node_reads(const Onnx__NodeProto *n, graph_name_fn fn, void *ctx);
extern const char graph_too_deep[];
#define GRAPH_TOO_DEEP graph_too_deep
/* How often name is read by g's nodes (subgraphs included) and outputs; a subgraph too
 * deep to follow counts as a read.  The second counts subgraphs' reads alone. */
size_t graph_read_count(const Onnx__GraphProto *g, const char *name);
/* Every name g reads and how often, in one walk (subgraphs included), for loops over
 * many values where a graph_read_count each would be quadratic; graph_subgraph_reads_init
 * counts the reads of subgraphs alone.  The names are copies, so g may change while the
 * counts are kept (graph_reads_add: one more read, or one fewer).  -1: out of memory. */
struct graph_reads {
	struct strmap counts;
	int too_deep;           /* a subgraph too deep to follow: it may read anything */
};
int graph_reads_init(struct graph_reads *r, const Onnx__GraphProto *g);
int graph_subgraph_reads_init(struct graph_reads *r, const Onnx__GraphProto *g);
size_t graph_reads_count(const struct graph_reads *r, const char *name);
int graph_reads_add(struct graph_reads *r, const char *name, long delta);
void graph_reads_release(struct graph_reads *r);
/* The names g defines: its nodes' outputs and its inputs (a set of copies: release it
 * with strmap_release_copies). */
int graph_defined_init(struct strmap *defined, const Onnx__GraphProto *g);
size_t graph_subgraph_read_count(const Onnx__GraphProto *g, const char *name);
/* The node of g computing name, or -1. */
long graph_producer(const Onnx__GraphProto *g, const char *name);
int graph_is_input(const Onnx__GraphProto *g, const char *name);
int graph_is_output(const Onnx__GraphProto *g, const char *name);
/* The default domain's opset version: as imported; 1 for a model without opset_import
 * (IR version 2 and before, where ONNX reads it so); 0 when the model imports opsets but
 * not the default domain's (none: its default-domain nodes cannot run). */
int64_t model_default_opset(const struct graft_model *m);
int64_t proto_default_opset(const Onnx__ModelProto *p);
/* The stored tensor (not detached) that name is, directly or through an Identity alias;
 * -1 when name is computed or unknown. */
long model_stored(const struct graft_model *m, const char *name);

#endif
