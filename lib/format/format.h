/*
 * format.h: the private header of lib/format/: files in and out.  ONNX is read by
 * onnx_read.c (after wire.c's limits, with external.c's external data) and written by
 * onnx_write.c; tensor_pb.c decodes single TensorProtos; archive.c and manifest.c are the
 * .graft container; read.c picks the reader a model's first bytes call for.
 */
#ifndef GRAFT_FORMAT_H
#define GRAFT_FORMAT_H

#include "model/model.h"

/*
 * Limits on what a reader accepts from a file, so that hostile input fails with
 * GRAFT_EFORMAT instead of exhausting the stack or memory.  Each lies far above what
 * real models need (the ONNX backend suite nests subgraphs 2 deep, has at most 30
 * nodes, 10 inputs and 7 attributes per node).  The protobuf counts are checked on the
 * wire, before protobuf-c allocates anything, and count a whole ModelProto: protobuf-c
 * merges repeated occurrences of a singular field (two `graph` fields make one graph).
 */
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
/* protobuf refuses messages of 2 GiB or more. */
#define PROTOBUF_LIMIT ((uint64_t)INT32_MAX)

/* ---- wire.c ---- */
/* Walks a serialized message of descriptor d, checking nesting depth and counts against
 * the limits above before protobuf-c allocates anything: 0 when within them, 1 when the
 * bytes are no valid message (for the caller's own message), < 0 with err filled when a
 * limit is passed. */
int wire_check(const void *buf, size_t len, const ProtobufCMessageDescriptor *d,
	       struct graft_err *err);

/* ---- external.c ---- */
/* Tests set this to take the way of kernels without openat2 when opening external data
 * (resolve, check, open, check the descriptor again). */
extern int external_no_openat2;
/* Reads tp's external data from inside basedir into tp->raw_data. */
int external_load(Onnx__TensorProto *tp, const char *basedir, struct graft_err *err);

/* ---- onnx_read.c ---- */
/* Unpacks an ONNX ModelProto into m (which must be empty), resolving external data
 * against basedir (NULL refuses it), moving tensor payloads into m->tensors and
 * assigning roles. */
int onnx_import(struct graft_model *m, const void *buf, size_t len, const char *basedir,
		struct graft_err *err);
/* Unpacks a skeleton into m->proto. */
int onnx_skeleton_unpack(struct graft_model *m, const void *buf, size_t len,
			 struct graft_err *err);
/* Points every m->tensors[i].slot at its TensorProto in the skeleton, checking that each
 * slot exists once, has no payload of its own, and agrees on dtype and dims. */
int onnx_bind_slots(struct graft_model *m, struct graft_err *err);
/* Moves (steal) or copies tp's payload into rec (dtype, dims and name set), recording the
 * field it came from; GRAFT_EUNSUPPORTED (no message) when it cannot be moved losslessly. */
int onnx_take_payload(Onnx__TensorProto *tp, struct tensor_rec *rec, int steal,
		      struct graft_err *err);

/* ---- onnx_text.c ---- */
/* 1 when head (a file's first bytes) reads as ONNX's textual syntax. */
int onnx_text_detect(const void *head, size_t len);
/* Parses a model in ONNX's textual syntax (onnx/defs/parser.h) into a new serialized
 * ModelProto *pb of *pb_len bytes (the caller frees it). */
int onnx_text_parse(const char *text, size_t len, void **pb, size_t *pb_len,
		    struct graft_err *err);

/* ---- onnx_write.c ---- */
/* Serializes the skeleton (no payloads) into a new buffer. */
int onnx_skeleton_pack(const struct graft_model *m, void **buf, size_t *len,
		       struct graft_err *err);

/* ---- tensor_pb.c ---- */
/* Decodes any TensorProto with a payload of its own into a new array (the name is left
 * NULL); used for inline initializers, Constant attributes and .pb files. */
int onnx_tensor_decode(const Onnx__TensorProto *tp, struct graft_array *a,
		       struct graft_err *err);
/* tp's name for messages ("(unnamed)" when it has none). */
const char *onnx_tensor_label(const Onnx__TensorProto *tp);
/* How many of tp's payload fields are set (raw_data, float_data, ...). */
int onnx_data_fields_set(const Onnx__TensorProto *tp);
/* Explains why a payload that stays in the skeleton is wrong for its dims, if it is. */
int onnx_check_kept_payload(const Onnx__TensorProto *tp, struct graft_err *err);

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

/* ---- textsrc.c ---- */
/* The rows of a table of text, for graft_raw_read_text: row i's text is
 * cells[i * cols + col[0]], its pair's col[1] (-1: none), its label's col[2]. */
struct text_rows {
	size_t n, cols;
	char **cells;
	long col[3];
	char *buf;              /* the file (TSV and CSV cells point into it) */
	void *priv;
};
/* Reads path as format: TSV or CSV with a header line, whose columns text, pair (NULL:
 * none) and label name (a header's name, or a number from 1), or JSON Lines, whose keys
 * they are; every row must have them, and the file must be UTF-8 (the line of a bad
 * byte named).  Messages start with the path. */
int text_rows_read(struct text_rows *r, const char *path, enum graft_text_format format,
		   const char *text, const char *pair, const char *label, struct graft_err *err);
void text_rows_release(struct text_rows *r);

/* ---- dataset.c ---- */
/* The dataset model graft_dataset_write writes (same checks, same metadata order), of
 * inputs in (one float x, or n_in named ones: tensors x:NAME; or, with im, compact images
 * x.bytes and x.index), for dataset_make.c, which
 * hands the models out unwritten; *out is the caller's to free. */
int dataset_model(const struct graft_array *in, size_t n_in, const struct graft_images *im,
		  const struct graft_array *y, const char *const *meta, struct graft_model **out,
		  struct graft_err *err);

/* Views ds->model (a dataset model: read, or made) as graft_dataset_read does, checking
 * it; messages start with name. */
int dataset_view(struct graft_dataset *ds, const char *name, struct graft_err *err);

/* ---- images.c ---- */
/* The samples [a, b) of im (those whose dest[i] is which; dest NULL: all), their bytes one
 * after another in a new buffer *bytes and their index rows, offsets rebased, in *index
 * (free both), as *out.  GRAFT_ENOMEM (no message) when memory runs out. */
int images_pack(const struct graft_images *im, int64_t a, int64_t b,
		const unsigned char *dest, int which, struct graft_images *out, uint8_t **bytes,
		int64_t **index);
/* Lets [p, p + n), bytes of sample i's set of im, go from memory when they lie in a file
 * mapping (io_drop_pages); nothing otherwise. */
void images_let_go(const struct graft_images *im, int64_t i, const void *p, size_t n);

#endif
