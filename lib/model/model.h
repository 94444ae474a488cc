/*
 * internal.h: what libgraft's modules share and the public header hides.
 *
 * The in-memory model is the ONNX ModelProto itself, unpacked by protobuf-c, with the
 * payload of every stored tensor moved out of it into a table (struct tensor_rec).  The
 * ModelProto without those payloads is the "skeleton": it keeps every field of the
 * original, the ones graft does not interpret included, which is what makes
 * ONNX -> .graft -> ONNX lossless.  Each table entry remembers its slot in the skeleton
 * and the field its payload came from, so export puts the bytes back where they were.
 * docs/format.md explains why the skeleton is protobuf rather than text.
 */
#ifndef GRAFT_INTERNAL_H
#define GRAFT_INTERNAL_H

#include "graft.h"
#include "onnx.pb-c.h"

/*
 * Limits on what a reader accepts from a file, so that hostile input fails with
 * GRAFT_EFORMAT instead of exhausting the stack or memory.  Each lies far above what
 * real models need (the ONNX backend suite nests subgraphs 2 deep, has at most 30
 * nodes, 10 inputs and 7 attributes per node).  The protobuf counts are checked on the
 * wire, before protobuf-c allocates anything, and count a whole ModelProto: protobuf-c
 * merges repeated occurrences of a singular field (two `graph` fields make one graph).
 */
#define GRAFT_MAX_GRAPH_DEPTH 64        /* subgraphs (If/Loop/Scan bodies) inside subgraphs */
#define GRAFT_MAX_PROTO_DEPTH 512       /* protobuf messages inside messages, of any kind */
#define GRAFT_MAX_NODES (1 << 21)       /* nodes in a model: all graphs and functions */
#define GRAFT_MAX_VALUES (1 << 22)      /* initializers, graph inputs, outputs, value_info */
#define GRAFT_MAX_NODE_IO (1 << 16)     /* inputs, or outputs, of one node */
#define GRAFT_MAX_ATTRIBUTES (1 << 12)  /* attributes of one node */
#define GRAFT_MAX_ENTRIES (1 << 26)     /* any other repeated message or string entries */
#define GRAFT_MAX_TENSORS (1 << 20)     /* tensor lines of a .graft manifest */
#define GRAFT_MAX_MANIFEST_BYTES (64 << 20)
#define GRAFT_MAX_CLASSES (1 << 20)     /* classes of a dataset: graft.classes, labels */

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

/* A small open-addressing hash map from borrowed strings to indices. */
struct strmap {
	const char **keys;
	long *vals;
	size_t cap, count;
};
int strmap_init(struct strmap *sm, size_t expected);
void strmap_release(struct strmap *sm);
/* Inserts key -> val; returns the previous value if key was present, else -1.  Keys are
 * borrowed: they must outlive the map. */
long strmap_put(struct strmap *sm, const char *key, long val);
long strmap_get(const struct strmap *sm, const char *key);
/* For a map that owns its keys, so that they may outlive the strings they came from:
 * strmap_put with a copy of key when it is new (-2: out of memory), and the release
 * that frees the keys. */
long strmap_put_copy(struct strmap *sm, const char *key, long val);
void strmap_release_copies(struct strmap *sm);

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
/* Forgets stored tensor i (its data freed) without touching the skeleton: for a caller
 * that removed the tensor's place in the graph itself (a Constant node). Refresh the
 * aliases afterwards. */
void model_drop_tensor(struct graft_model *m, size_t i);
/* The same for every tensor i with drop[i] set, in one pass. */
void model_drop_tensors(struct graft_model *m, const unsigned char *drop);
/* To be called by whatever adds, removes or renames graph inputs or initializers: the
 * getters' list of real inputs is worked out again on next use. */
void model_inputs_changed(struct graft_model *m);

/* ---- onnx.c: the only module that builds or packs protobuf messages ---- */

/* Tests set this to take the way of kernels without openat2 when opening external data
 * (resolve, check, open, check the descriptor again). */
extern int onnx_no_openat2;

/* Unpacks an ONNX ModelProto into m (which must be empty), resolving external data
 * against basedir (NULL refuses it), moving tensor payloads into m->tensors and
 * assigning roles. */
int onnx_import(struct graft_model *m, const void *buf, size_t len, const char *basedir,
		struct graft_err *err);
/* Serializes the skeleton (no payloads) into a new buffer. */
int onnx_skeleton_pack(const struct graft_model *m, void **buf, size_t *len,
		       struct graft_err *err);
/* Unpacks a skeleton into m->proto. */
int onnx_skeleton_unpack(struct graft_model *m, const void *buf, size_t len,
			 struct graft_err *err);
/* Points every m->tensors[i].slot at its TensorProto in the skeleton, checking that each
 * slot exists once, has no payload of its own, and agrees on dtype and dims. */
int onnx_bind_slots(struct graft_model *m, struct graft_err *err);
/* Fills m->aliases from the graph (import does this as it assigns roles); m->aliases must
 * be empty. */
int onnx_find_aliases(struct graft_model *m, struct graft_err *err);

/* Editing the skeleton (model.c's graft_model_new and graft_model_add_tensor...). */
/* An empty model: ir_version 8, default-domain opset 17, a graph with nothing in it. */
int onnx_skeleton_new(struct graft_model *m, struct graft_err *err);
/* 1 if name is an initializer, a graph input or a node output of the main graph. */
int onnx_name_in_graph(const struct graft_model *m, const char *name);
/* Appends an initializer TensorProto (no payload) for t, whose name, dtype and dims are
 * set, and points t->slot at it. */
int onnx_add_initializer(struct graft_model *m, struct tensor_rec *t, struct graft_err *err);
/* Takes tp out of the main graph's initializers and frees it. */
void onnx_remove_initializer(struct graft_model *m, Onnx__TensorProto *tp);
/* Sets, replaces or (value NULL) removes a metadata property. */
int onnx_set_metadata(struct graft_model *m, const char *key, const char *value,
		      struct graft_err *err);

/* A new ValueInfoProto for a tensor: name, element type and shape, dim i symbolic when
 * dim_params (may be NULL) names it, unknown when dims[i] < 0; a name alone when dtype
 * <= 0 or rank < 0.  NULL when out of memory. */
Onnx__ValueInfoProto *onnx_value_info(const char *name, int dtype, int rank,
				       const int64_t *dims, const char *const *dim_params);

/* Decodes any TensorProto with a payload of its own into a new array (the name is left
 * NULL); used for inline initializers, Constant attributes and .pb files. */
int onnx_tensor_decode(const Onnx__TensorProto *tp, struct graft_array *a,
		       struct graft_err *err);

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
/* The default domain's opset version, 0 when the model imports none. */
int64_t model_default_opset(const struct graft_model *m);
/* The stored tensor (not detached) that name is, directly or through an Identity alias;
 * -1 when name is computed or unknown. */
long model_stored(const struct graft_model *m, const char *name);

/* ---- edit.c ---- */
/* Removes node i of the main graph (freed). */
void edit_remove_node(Onnx__GraphProto *g, size_t i);
/* Removes the initializers nothing reads any more, subgraphs included (stored ones
 * through the table), with the graph inputs of the same name (IR versions before 4 pair
 * them; left alone, they would become inputs a runtime demands). */
int edit_drop_unread_initializers(struct graft_model *m, struct graft_err *err);

/* ---- cuts.c ---- */
/* A net of m planned at batch 1 on zero inputs (symbolic dims 1), for shapes
 * (graft_net_value_shape); NULL when m cannot be planned. */
struct graft_net *model_probe(const struct graft_model *m);

/* ---- archive.c ---- */
/* 1 if buf starts like a .graft archive (tar, or a compressed stream) rather than ONNX. */
int archive_detect(const void *buf, size_t len);
/* Reads a .graft archive held in buf (which m keeps: tensor data may point into it). */
int archive_read_graft(struct graft_model *m, const void *buf, size_t len,
		       struct graft_err *err);
/* Reads a .graft archive from a pipe as it arrives, member by member; head holds the
 * stream's first head_len bytes, already read to detect the format. */
int archive_read_graft_stream(struct graft_model *m, int fd, const void *head,
			      size_t head_len, struct graft_err *err);

/* ---- manifest.c ---- */
struct manifest_entry {
	char *member;
	uint64_t checksum;
	size_t nbytes;
};
struct manifest {
	int version;
	uint64_t skeleton_checksum;
	size_t skeleton_nbytes;
	struct manifest_entry *entries; /* one per m->tensors[i], same order */
};
/* Renders the manifest of m into a new NUL-terminated buffer. */
int manifest_write(const struct graft_model *m, const uint64_t *checksums,
		   uint64_t skeleton_checksum, size_t skeleton_nbytes, char **text,
		   size_t *len, struct graft_err *err);
/* Parses text into mf and fills m->tensors (without data) and m->history. */
int manifest_parse(struct graft_model *m, struct manifest *mf, const char *text,
		   size_t len, struct graft_err *err);
void manifest_release(struct manifest *mf, size_t n_entries);
/* Name of the archive member holding tensor i. */
void manifest_member_name(size_t i, char *buf, size_t size);

/* ---- io.c ---- */
/* Reads all of fd into a new buffer that starts with the head_len bytes at head (already
 * read from fd, to detect the format). */
int io_read_fd_after(int fd, const void *head, size_t head_len, void **buf, size_t *len,
		     struct graft_err *err);
/* Maps a regular file read-only.  GRAFT_EINVAL (with no message) when fd is not a
 * regular file, so callers fall back to reading. */
int io_map_fd(int fd, void **map, size_t *len, struct graft_err *err);

/* ---- util ---- */
/* Percent-encodes bytes outside '!'..'~' and '%' itself, so any name fits one token. */
char *str_escape(const char *s);
/* Decodes str_escape's output in place; -1 on a malformed escape. */
int str_unescape(char *s);
/* Multiplies dims into *numel, refusing negative dims and overflow past 2^62, also of
 * the dims other than zeros (so that a 0 cannot hide dims whose strides overflow). */
int dims_numel(const int64_t *dims, int rank, uint64_t *numel);
/* Checks dims as dims_numel does; on failure fills err with GRAFT_EFORMAT naming what
 * (such as "tensor 'W'") and the dims: "tensor 'W': dims [2,-3] are negative". */
int dims_check(const int64_t *dims, size_t rank, const char *what, uint64_t *numel,
	       struct graft_err *err);
/* Writes dims as "2,3,4" into buf (size at least 32), ending in ",..." where they do not
 * fit. */
void dims_string(const int64_t *dims, size_t rank, char *buf, size_t size);
/* Returns arr (of *cap elements of size bytes) with room for element n: arr itself, or
 * arr moved and doubled when full, so that appending one at a time costs amortized O(1)
 * (a realloc by one each time copies the whole array, always so under AddressSanitizer).
 * NULL when memory runs out, arr and *cap untouched. */
void *array_grow(void *arr, size_t *cap, size_t n, size_t size);

#endif
