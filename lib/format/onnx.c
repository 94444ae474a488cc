/*
 * onnx.c: ONNX ModelProto in and out, through protobuf-c.
 *
 * Import unpacks the ModelProto, loads external data, then moves the payload of every
 * stored tensor (main-graph initializers and the values of main-graph Constant nodes)
 * out of the message into the model's tensor table, recording which field held it.
 * What stays is the skeleton: every other field, unknown fields included, untouched.
 * Export puts each payload back into its field for the duration of one pack, so the
 * ModelProto written equals the one read.
 *
 * A tensor whose payload cannot be moved without loss (strings, several data fields at
 * once, int32_data values outside their type's range, a length that disagrees with the
 * shape) simply stays in the skeleton: it is carried, not interpreted.
 *
 * Detached tensors (datasets, training state) have no slot in the skeleton: export and
 * role assignment pass over them, and only the archive carries them.
 *
 * This is the only module that builds, packs or unpacks protobuf messages.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "model/model.h"

/* protobuf refuses messages of 2 GiB or more. */
#define PROTOBUF_LIMIT ((uint64_t)INT32_MAX)

/* ---- limits on the wire ----------------------------------------------------------------- */

/*
 * protobuf-c unpacks nested messages by recursion and allocates every repeated element,
 * with no limit of its own: a few hundred kilobytes of nested TypeProtos overflow the
 * stack, and a message of empty nodes (two bytes each) costs a hundred times its size.
 * So the wire format is walked first, following the schema through protobuf-c's
 * descriptors, to check nesting and counts (internal.h's GRAFT_MAX_*) before unpacking.
 * The walk's own recursion is bounded by the limit it checks.
 */

struct wire_budget {
	uint64_t nodes, values, entries;
};

static int wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;

	for (int i = 0; i < 10 && *p < end; i++) {
		uint8_t b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* Counts one element of repeated field f of a message of type d, against that field's
 * count in this message (*count) or against the whole model's budget. */
static int wire_count(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
		      uint32_t *count, struct wire_budget *b, struct graft_err *err)
{
	const char *name = f->name;

	if (d == &onnx__graph_proto__descriptor || d == &onnx__function_proto__descriptor) {
		if (strcmp(name, "node") == 0) {
			if (++b->nodes > GRAFT_MAX_NODES)
				return graft_err_set(err, GRAFT_EFORMAT, "the model has more than %d "
						     "nodes", GRAFT_MAX_NODES);
			return 0;
		}
		if (d == &onnx__graph_proto__descriptor &&
		    (strcmp(name, "initializer") == 0 || strcmp(name, "sparse_initializer") == 0 ||
		     strcmp(name, "input") == 0 || strcmp(name, "output") == 0 ||
		     strcmp(name, "value_info") == 0)) {
			if (++b->values > GRAFT_MAX_VALUES)
				return graft_err_set(err, GRAFT_EFORMAT, "the model has more than %d "
						     "graph values (initializers, inputs, outputs, "
						     "value_info)", GRAFT_MAX_VALUES);
			return 0;
		}
	}
	if (d == &onnx__node_proto__descriptor) {
		if (strcmp(name, "input") == 0 || strcmp(name, "output") == 0) {
			if (++*count > GRAFT_MAX_NODE_IO)
				return graft_err_set(err, GRAFT_EFORMAT, "a node has more than %d %ss",
						     GRAFT_MAX_NODE_IO, name);
			return 0;
		}
		if (strcmp(name, "attribute") == 0) {
			if (++*count > GRAFT_MAX_ATTRIBUTES)
				return graft_err_set(err, GRAFT_EFORMAT, "a node has more than %d "
						     "attributes", GRAFT_MAX_ATTRIBUTES);
			return 0;
		}
	}
	if (++b->entries > GRAFT_MAX_ENTRIES)
		return graft_err_set(err, GRAFT_EFORMAT, "the model has more than %d repeated "
				     "entries (%s.%s and the like)", GRAFT_MAX_ENTRIES, d->short_name,
				     name);
	return 0;
}

/* Walks one message of type d in [p, end): 0, a negative status when over a limit, or 1
 * when the bytes are not protobuf.  graphs counts the GraphProtos around it. */
static int wire_walk(const uint8_t *p, const uint8_t *end, const ProtobufCMessageDescriptor *d,
		     int depth, int graphs, struct wire_budget *b, struct graft_err *err)
{
	uint32_t counts[32] = {0}, spare = 0;
	int rc;

	if (depth > GRAFT_MAX_PROTO_DEPTH)
		return graft_err_set(err, GRAFT_EFORMAT, "protobuf messages nested more than %d "
				     "deep", GRAFT_MAX_PROTO_DEPTH);
	if (d == &onnx__graph_proto__descriptor && ++graphs > GRAFT_MAX_GRAPH_DEPTH + 1)
		return graft_err_set(err, GRAFT_EFORMAT, "subgraphs nested more than %d deep",
				     GRAFT_MAX_GRAPH_DEPTH);
	while (p < end) {
		uint64_t tag, v;
		if (wire_varint(&p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
			return 1;
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3));
		switch (tag & 7) {
		case 0:
			if (wire_varint(&p, end, &v))
				return 1;
			break;
		case 1:
			if (end - p < 8)
				return 1;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return 1;
			p += 4;
			break;
		case 2:
			if (wire_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return 1;
			if (f && f->label == PROTOBUF_C_LABEL_REPEATED &&
			    (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING ||
			     f->type == PROTOBUF_C_TYPE_BYTES)) {
				size_t k = (size_t)(f - d->fields);
				if ((rc = wire_count(d, f, k < 32 ? &counts[k] : &spare, b, err)))
					return rc;
			}
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    (rc = wire_walk(p, p + v, f->descriptor, depth + 1, graphs, b, err)))
				return rc;
			p += v;
			break;
		default:        /* groups, which protobuf-c refuses too */
			return 1;
		}
	}
	return 0;
}

/* Checks buf, a serialized message of type d, against the limits before it is unpacked:
 * 0 when within them, a negative status (err set) when over, 1 when buf is not protobuf
 * (which the caller reports as protobuf-c's failure, without unpacking). */
static int wire_check(const void *buf, size_t len, const ProtobufCMessageDescriptor *d,
		      struct graft_err *err)
{
	struct wire_budget b = {0};

	return wire_walk(buf, (const uint8_t *)buf + len, d, 0, 0, &b, err);
}

/* ---- reading ------------------------------------------------------------------------- */

static const char *tensor_label(const Onnx__TensorProto *tp);

static int check_tensor_dims(Onnx__TensorProto *tp, void *ctx, struct graft_err *err)
{
	char what[320];
	uint64_t numel;

	(void)ctx;
	if (tp->n_dims <= GRAFT_MAX_RANK && !dims_numel(tp->dims, (int)tp->n_dims, &numel))
		return 0;
	snprintf(what, sizeof(what), "tensor '%.256s'", tensor_label(tp));
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

static const char *tensor_label(const Onnx__TensorProto *tp)
{
	return tp->name ? tp->name : "(unnamed)";
}

/* O_NONBLOCK: opening a FIFO would otherwise wait for a writer that may never come (the
 * caller refuses anything but a regular file, which the flag does not affect). */
#define EXTERNAL_OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* Opens loc inside dir with openat2's RESOLVE_BENEATH: the kernel refuses (EXDEV) any
 * step of the walk, symlinks included, that would leave dir, as it takes the step, so
 * no path swapped between a check and the open can lead outside.  -1 with errno
 * ENOSYS where openat2 is missing (Linux before 5.6, or filtered by seccomp). */
int onnx_no_openat2;

static int open_beneath(const char *dir, const char *loc)
{
#ifdef SYS_openat2
	if (onnx_no_openat2) {
		errno = ENOSYS;
		return -1;
	}
	struct open_how how = {.flags = EXTERNAL_OPEN_FLAGS,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd, e;

	if (dfd < 0)
		return -1;
	fd = (int)syscall(SYS_openat2, dfd, loc, &how, sizeof(how));
	e = errno;
	close(dfd);
	if (fd < 0 && (e == EPERM || e == EINVAL || e == E2BIG))
		e = ENOSYS;     /* a seccomp filter, or a kernel that does not know the flags */
	errno = e;
	return fd;
#else
	(void)dir;
	(void)loc;
	errno = ENOSYS;
	return -1;
#endif
}

/* Where openat2 is missing: resolve loc and check it, open it, then check again where
 * the descriptor really leads (/proc/self/fd), so that a symlink swapped between the
 * first check and the open is still caught before a byte is read.  The open itself may
 * then have touched a file outside (a FIFO or device); the caller refuses those. */
static int open_checked(const char *real_base, const char *path)
{
	char real_path[PATH_MAX], link[64], *opened;
	size_t nb = strlen(real_base);
	int fd;

	if (!realpath(path, real_path))
		return -1;
	if (strncmp(real_path, real_base, nb) != 0 || (real_path[nb] != '/' && nb > 1)) {
		errno = EXDEV;
		return -1;
	}
	if ((fd = open(real_path, EXTERNAL_OPEN_FLAGS)) < 0)
		return -1;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((opened = realpath(link, NULL))) {
		int inside = strncmp(opened, real_base, nb) == 0 && (opened[nb] == '/' || nb == 1);
		free(opened);
		if (!inside) {
			close(fd);
			errno = EXDEV;
			return -1;
		}
	}
	return fd;
}

/* Checks an external-data location and opens it: relative, no "..", and, symlinks
 * followed, still inside basedir, at the moment of the open. */
static int open_external(const char *basedir, const char *loc, const char *tensor,
			 struct graft_err *err)
{
	char *path, real_base[PATH_MAX];
	int fd, e;

	if (!basedir)
		return graft_err_set(err, GRAFT_EUNSUPPORTED,
				     "tensor '%s': external data '%s' cannot be resolved without "
				     "the model's folder (read the model from a file)", tensor, loc);
	if (!*loc || loc[0] == '/')
		return graft_err_set(err, GRAFT_EFORMAT,
				     "tensor '%s': external data location '%s' is not a relative path",
				     tensor, loc);
	for (const char *p = loc; *p; ) {
		size_t n = strcspn(p, "/\\");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return graft_err_set(err, GRAFT_EFORMAT,
					     "tensor '%s': external data location '%s' escapes the "
					     "model's folder", tensor, loc);
		p += n;
		p += *p != 0;
	}
	if (!realpath(basedir, real_base))
		return graft_err_set(err, GRAFT_EIO, "%s: %s", basedir, strerror(errno));
	fd = open_beneath(real_base, loc);
	if (fd < 0 && errno == ENOSYS) {
		if (!(path = malloc(strlen(real_base) + strlen(loc) + 2)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		sprintf(path, "%s/%s", real_base, loc);
		fd = open_checked(real_base, path);
		e = errno;
		free(path);
		errno = e;
	}
	if (fd < 0 && errno == EXDEV)
		return graft_err_set(err, GRAFT_EFORMAT,
				     "tensor '%s': external data '%s' escapes the model's folder",
				     tensor, loc);
	if (fd < 0)
		return graft_err_set(err, GRAFT_EIO, "tensor '%s': external data '%s': %s",
				     tensor, loc, strerror(errno));
	return fd;
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*v = x;
	return 0;
}

static void free_external_entries(Onnx__TensorProto *tp)
{
	for (size_t i = 0; i < tp->n_external_data; i++)
		protobuf_c_message_free_unpacked(&tp->external_data[i]->base, NULL);
	free(tp->external_data);
	tp->external_data = NULL;
	tp->n_external_data = 0;
}

/* Loads an external tensor's bytes into raw_data, as onnx.load does: afterwards the
 * tensor has data_location DEFAULT (explicitly) and no external_data entries. */
static int load_external(Onnx__TensorProto *tp, const char *basedir, struct graft_err *err)
{
	const char *loc = NULL, *off_s = NULL, *len_s = NULL;
	uint64_t off = 0, len = 0;
	struct stat st;
	int fd, rc = 0;
	char *buf = NULL;

	for (size_t i = 0; i < tp->n_external_data; i++) {
		const Onnx__StringStringEntryProto *e = tp->external_data[i];
		if (!e->key)
			continue;
		if (strcmp(e->key, "location") == 0)
			loc = e->value;
		else if (strcmp(e->key, "offset") == 0)
			off_s = e->value;
		else if (strcmp(e->key, "length") == 0)
			len_s = e->value;
	}
	if (!loc)
		return graft_err_set(err, GRAFT_EFORMAT, "tensor '%s': external data has no location",
				     tensor_label(tp));
	if ((off_s && parse_u64(off_s, &off)) || (len_s && parse_u64(len_s, &len)))
		return graft_err_set(err, GRAFT_EFORMAT,
				     "tensor '%s': external data offset or length is not a number",
				     tensor_label(tp));
	fd = open_external(basedir, loc, tensor_label(tp), err);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = graft_err_set(err, GRAFT_EIO, "tensor '%s': external data '%s' is not a file",
				   tensor_label(tp), loc);
		goto out;
	}
	if (!len_s)
		len = off <= (uint64_t)st.st_size ? (uint64_t)st.st_size - off : 0;
	if (off > (uint64_t)st.st_size || len > (uint64_t)st.st_size - off) {
		rc = graft_err_set(err, GRAFT_EFORMAT,
				   "tensor '%s': external data '%s' is shorter than offset %" PRIu64
				   " + length %" PRIu64, tensor_label(tp), loc, off, len);
		goto out;
	}
	/* External data is raw: what a tensor of fixed-size elements needs follows from its
	 * dims (checked by validate_model), and nothing else is read into memory. */
	size_t esize = tp->has_data_type ? graft_dtype_size(tp->data_type) : 0;
	uint64_t numel;
	if (esize && !dims_numel(tp->dims, (int)tp->n_dims, &numel) &&
	    (numel > UINT64_MAX / esize || len != numel * esize)) {
		rc = graft_err_set(err, GRAFT_EFORMAT,
				   "tensor '%s': external data '%s' holds %" PRIu64 " bytes, its "
				   "dims and type (%s) need %" PRIu64, tensor_label(tp), loc, len,
				   graft_dtype_name(tp->data_type), numel * esize);
		goto out;
	}
	buf = malloc(len ? len : 1);
	if (!buf) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory loading external data");
		goto out;
	}
	for (uint64_t done = 0; done < len; ) {
		ssize_t n = pread(fd, buf + done, len - done > (1u << 30) ? (1u << 30) : len - done,
				  (off_t)(off + done));
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			free(buf);
			rc = graft_err_set(err, GRAFT_EIO, "tensor '%s': reading external data '%s' failed",
					   tensor_label(tp), loc);
			goto out;
		}
		done += (uint64_t)n;
	}
	free_external_entries(tp);
	free(tp->raw_data.data);
	tp->raw_data.data = (uint8_t *)buf;
	tp->raw_data.len = len;
	tp->has_raw_data = 1;
	tp->has_data_location = 1;
	tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
out:
	close(fd);
	return rc;
}

/* Visits every TensorProto that onnx.load would resolve: initializers and attribute
 * tensors of every graph, subgraphs included. */
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
		return load_external(tp, ctx, err);
	return 0;
}

/* ---- moving payloads out ------------------------------------------------------------- */

static int data_fields_set(const Onnx__TensorProto *tp)
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
static int take_payload(Onnx__TensorProto *tp, struct tensor_rec *rec, int steal,
			struct graft_err *err)
{
	size_t esize = graft_dtype_size(tp->data_type);
	uint64_t numel;

	if (!tp->has_data_type || esize == 0 || tp->segment || data_fields_set(tp) != 1 ||
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

/* ---- roles ------------------------------------------------------------------------------ */

/* What feeding input k of an op makes of a tensor.  Learnable unless the slot holds
 * BatchNormalization's running statistics or configuration (shapes, pads, bounds...). */
static enum graft_role slot_role(const char *op, size_t k)
{
	static const struct { const char *op; unsigned slots; } config[] = {
		{"Reshape", 1 << 1}, {"Clip", 1 << 1 | 1 << 2}, {"Pad", 1 << 1 | 1 << 2 | 1 << 3},
		{"Resize", 1 << 1 | 1 << 2 | 1 << 3}, {"Upsample", 1 << 1}, {"Tile", 1 << 1},
		{"Slice", 0x1e}, {"Expand", 1 << 1}, {"Squeeze", 1 << 1}, {"Unsqueeze", 1 << 1},
		{"Split", 1 << 1}, {"TopK", 1 << 1}, {"OneHot", 1 << 1 | 1 << 2}, {"Range", 7},
		{"ConstantOfShape", 1}, {"Dropout", 1 << 1 | 1 << 2}, {"Pow", 1 << 1},
		{"ReduceSum", 1 << 1}, {"ReduceMean", 1 << 1}, {"ReduceMax", 1 << 1},
		{"ReduceMin", 1 << 1}, {"ReduceProd", 1 << 1}, {"ReduceL2", 1 << 1},
		{"Gather", 1 << 1}, {"Where", 1}, {"CumSum", 1 << 1}, {"Trilu", 1 << 1},
	};

	if (strcmp(op, "BatchNormalization") == 0 && (k == 3 || k == 4))
		return GRAFT_ROLE_BUFFER;
	for (size_t i = 0; i < sizeof(config) / sizeof(config[0]); i++)
		if (strcmp(op, config[i].op) == 0)
			return k < 32 && (config[i].slots >> k) & 1 ? GRAFT_ROLE_CONSTANT
								    : GRAFT_ROLE_PARAMETER;
	return GRAFT_ROLE_PARAMETER;
}

static int is_identity(const Onnx__NodeProto *n)
{
	return n->op_type && strcmp(n->op_type, "Identity") == 0 && n->n_input == 1 &&
	       n->n_output == 1 && n->input[0] && n->output[0];
}

/* Uses of stored tensors, by name: entry i < n_tensors is tensor i itself, later entries
 * are Identity aliases of some tensor. */
struct role_ctx {
	struct strmap names;    /* value name -> entry */
	size_t n, cap;
	const char **name;      /* (n) borrowed from the graph */
	size_t *target;         /* (n) tensor each entry stands for */
	unsigned char *uses;    /* (n) bit 0: learnable use, bit 1: running statistics */
};

static void role_ctx_release(struct role_ctx *rc)
{
	strmap_release(&rc->names);
	free(rc->name);
	free(rc->target);
	free(rc->uses);
}

/* Adds an entry for name; a detached tensor's entry is not findable by name, since its
 * name may also be a graph value it has nothing to do with. */
static int add_entry(struct role_ctx *rc, const char *name, size_t target, int findable)
{
	if (rc->n == rc->cap) {
		size_t cap = rc->cap ? 2 * rc->cap : 64;
		const char **nm = realloc(rc->name, cap * sizeof(*nm));
		if (nm)
			rc->name = nm;
		size_t *t = realloc(rc->target, cap * sizeof(*t));
		if (t)
			rc->target = t;
		unsigned char *u = realloc(rc->uses, cap);
		if (u)
			rc->uses = u;
		if (!nm || !t || !u)
			return GRAFT_ENOMEM;
		rc->cap = cap;
	}
	rc->name[rc->n] = name;
	rc->target[rc->n] = target;
	rc->uses[rc->n] = 0;
	if (findable && strmap_put(&rc->names, name, (long)rc->n) == -2)
		return GRAFT_ENOMEM;
	rc->n++;
	return 0;
}

/* Records the use of stored values by every node of g (subgraphs included: a branch of
 * an If that reads a weight is a consumer like any other). */
static void record_uses(struct role_ctx *rc, const Onnx__GraphProto *g, int depth)
{
	if (depth > GRAFT_MAX_GRAPH_DEPTH)
		return;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!is_identity(n))
			for (size_t k = 0; k < n->n_input; k++) {
				long e = n->input[k] ? strmap_get(&rc->names, n->input[k]) : -1;
				if (e < 0)
					continue;
				enum graft_role r = slot_role(n->op_type ? n->op_type : "", k);
				rc->uses[e] |= r == GRAFT_ROLE_PARAMETER ? 1 : r == GRAFT_ROLE_BUFFER ? 2 : 0;
			}
		for (size_t j = 0; j < n->n_attribute; j++) {
			const Onnx__AttributeProto *a = n->attribute[j];
			if (a->g)
				record_uses(rc, a->g, depth + 1);
			for (size_t k = 0; k < a->n_graphs; k++)
				record_uses(rc, a->graphs[k], depth + 1);
		}
	}
}

static enum graft_role role_of(const struct tensor_rec *t, unsigned uses)
{
	if (!graft_dtype_is_float(t->dtype) || t->numel <= 1)
		return GRAFT_ROLE_CONSTANT;
	return uses & 1 ? GRAFT_ROLE_PARAMETER : uses & 2 ? GRAFT_ROLE_BUFFER
							   : GRAFT_ROLE_CONSTANT;
}

/* A min-heap of (pass << 32 | node index) keys. */
static void heap_push(uint64_t *h, size_t *n, uint64_t key)
{
	size_t i = (*n)++;

	for (; i > 0 && h[(i - 1) / 2] > key; i = (i - 1) / 2)
		h[i] = h[(i - 1) / 2];
	h[i] = key;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
	uint64_t top = h[0], last = h[--*n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] < h[c])
			c++;
		if (h[c] >= last)
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = last;
	return top;
}

/*
 * Identity chains may appear in any order.  The entries are added in the order that
 * scanning the node list again and again until nothing changes would add them (node
 * order within a scan; a node whose input a later node names waits for the next scan),
 * but each node is looked at once, when its input gets a name: a chain listed
 * backwards costs n log n, not n^2.
 */
static int add_identity_entries(struct role_ctx *rc, const Onnx__GraphProto *g)
{
	size_t n = g->n_node, n_heap = 0;
	struct strmap waiting;          /* input name -> first Identity node reading it */
	long *next = malloc((n + 1) * sizeof(*next));   /* next Identity with that input */
	uint64_t *heap = malloc((n + 1) * sizeof(*heap));
	int rc_status = GRAFT_ENOMEM;

	if (strmap_init(&waiting, 16)) {
		free(next);
		free(heap);
		return GRAFT_ENOMEM;
	}
	if (!next || !heap || n > UINT32_MAX)
		goto out;
	for (size_t i = n; i-- > 0; ) {         /* backwards, so that lists run forwards */
		next[i] = -1;
		if (is_identity(g->node[i]) &&
		    (next[i] = strmap_put(&waiting, g->node[i]->input[0], (long)i)) == -2)
			goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (is_identity(g->node[i]) && strmap_get(&rc->names, g->node[i]->input[0]) >= 0)
			heap_push(heap, &n_heap, i);
	/* Every node enters the heap once at most: when the one name it reads appears. */
	while (n_heap) {
		uint64_t key = heap_pop(heap, &n_heap), pass = key >> 32;
		size_t i = (size_t)(key & UINT32_MAX);
		const Onnx__NodeProto *nd = g->node[i];
		if (strmap_get(&rc->names, nd->output[0]) >= 0)
			continue;
		long e = strmap_get(&rc->names, nd->input[0]);
		if (add_entry(rc, nd->output[0], rc->target[e], 1))
			goto out;
		for (long j = strmap_get(&waiting, nd->output[0]); j >= 0; j = next[j])
			heap_push(heap, &n_heap, ((size_t)j > i ? pass : pass + 1) << 32 | (uint64_t)j);
	}
	rc_status = 0;
out:
	strmap_release(&waiting);
	free(next);
	free(heap);
	return rc_status;
}

/* Finds the Identity aliases of stored tensors and how every name is used. */
static int collect_uses(struct graft_model *m, struct role_ctx *rc, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;

	memset(rc, 0, sizeof(*rc));
	if (strmap_init(&rc->names, m->n_tensors + 16))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_tensors; i++)
		if (add_entry(rc, m->tensors[i].name, i,
			      m->tensors[i].source != GRAFT_SOURCE_DETACHED))
			goto nomem;
	if (add_identity_entries(rc, g))
		goto nomem;
	record_uses(rc, g, 0);
	return 0;
nomem:
	role_ctx_release(rc);
	return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
}

/* Keeps the alias list of m (derived from the graph, never stored). */
static int keep_aliases(struct graft_model *m, const struct role_ctx *rc, struct graft_err *err)
{
	size_t n = rc->n - m->n_tensors;

	m->aliases = calloc(n + 1, sizeof(*m->aliases));
	if (!m->aliases)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t k = 0; k < n; k++) {
		size_t e = m->n_tensors + k;
		struct alias_rec *a = &m->aliases[k];
		if (!(a->name = strdup(rc->name[e])))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		a->target = rc->target[e];
		a->role = role_of(&m->tensors[a->target], rc->uses[e]);
		m->n_aliases++;
	}
	return 0;
}

/*
 * Parameters are floating-point tensors that some node uses in a learnable slot;
 * BatchNormalization running statistics are buffers; everything else is a constant.
 * Uses are followed through Identity nodes, which torch's exporter inserts to alias one
 * initializer under several names: a tensor used as a parameter under any of its names
 * is a parameter, and each alias gets the role of its own uses (so that training can
 * give an alias used as a buffer its own copy).  A single-element tensor (an epsilon, a
 * scale) is a constant: graft does not train scalars.
 */
static int assign_roles(struct graft_model *m, int set_tensor_roles, struct graft_err *err)
{
	struct role_ctx rc;
	int rc_status;

	if ((rc_status = collect_uses(m, &rc, err)))
		return rc_status;
	if (set_tensor_roles) {
		unsigned char *all = calloc(m->n_tensors + 1, 1);
		if (!all) {
			role_ctx_release(&rc);
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
		for (size_t e = 0; e < rc.n; e++)
			all[rc.target[e]] |= rc.uses[e];
		for (size_t i = 0; i < m->n_tensors; i++) {
			struct tensor_rec *t = &m->tensors[i];
			t->role = role_of(t, all[i]);
			t->trainable = t->role == GRAFT_ROLE_PARAMETER;
		}
		free(all);
	}
	rc_status = keep_aliases(m, &rc, err);
	role_ctx_release(&rc);
	return rc_status;
}

int onnx_find_aliases(struct graft_model *m, struct graft_err *err)
{
	return assign_roles(m, 0, err);
}

/* ---- import ---------------------------------------------------------------------------- */

static int check_kept_payload(const Onnx__TensorProto *tp, struct graft_err *err);

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
		rc = take_payload(c[i].tp, rec, 1, err);
		if (rc == 0)
			rc = check_kept_payload(c[i].tp, err);
		if (rc == 1) {
			rec->source = c[i].source;
			if (!(rec->name = strdup(c[i].key)))
				rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			m->n_tensors++;
		}
	}
	free(c);
	strmap_release(&seen);
	return rc < 0 ? rc : assign_roles(m, 1, err);
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

/* ---- skeleton ---------------------------------------------------------------------------- */

int onnx_skeleton_pack(const struct graft_model *m, void **buf, size_t *len,
		       struct graft_err *err)
{
	size_t n = onnx__model_proto__get_packed_size(m->proto);
	void *b = malloc(n ? n : 1);

	if (!b)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	*len = onnx__model_proto__pack(m->proto, b);
	*buf = b;
	return 0;
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
		if (data_fields_set(tp) || tp->data_type != t->dtype || (int)tp->n_dims != t->rank ||
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

/* ---- editing the skeleton ------------------------------------------------------------------ */

int onnx_skeleton_new(struct graft_model *m, struct graft_err *err)
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

int onnx_name_in_graph(const struct graft_model *m, const char *name)
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

Onnx__ValueInfoProto *onnx_value_info(const char *name, int dtype, int rank,
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
	if (!(vi = onnx_value_info(t->name, t->dtype, t->rank, t->dims, NULL)))
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

int onnx_add_initializer(struct graft_model *m, struct tensor_rec *t, struct graft_err *err)
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

void onnx_remove_initializer(struct graft_model *m, Onnx__TensorProto *tp)
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

int onnx_set_metadata(struct graft_model *m, const char *key, const char *value,
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

/* ---- export ------------------------------------------------------------------------------ */

/* Widened copies that int32_data and uint64_data need; freed after the pack. */
struct scratch {
	void **bufs;
	size_t n;
};

static int put_payload(struct tensor_rec *t, struct scratch *s, struct graft_err *err)
{
	Onnx__TensorProto *tp = t->slot;
	size_t n = t->numel;

	switch (t->field) {
	case FIELD_RAW:
		tp->raw_data.data = t->data;
		tp->raw_data.len = t->nbytes;
		tp->has_raw_data = 1;
		return 0;
	case FIELD_FLOAT:
		tp->float_data = t->data;
		tp->n_float_data = t->nbytes / 4;
		return 0;
	case FIELD_DOUBLE:
		tp->double_data = t->data;
		tp->n_double_data = t->nbytes / 8;
		return 0;
	case FIELD_INT64:
		tp->int64_data = t->data;
		tp->n_int64_data = n;
		return 0;
	case FIELD_UINT64:
		if (t->dtype == GRAFT_UINT64) {
			tp->uint64_data = t->data;
			tp->n_uint64_data = n;
			return 0;
		}
		break;
	case FIELD_INT32:
		break;
	}
	void *w = malloc(8 * (n ? n : 1));
	if (!w)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	s->bufs[s->n++] = w;
	if (t->field == FIELD_UINT64) {
		for (size_t i = 0; i < n; i++)
			((uint64_t *)w)[i] = ((const uint32_t *)t->data)[i];
		tp->uint64_data = w;
		tp->n_uint64_data = n;
		return 0;
	}
	int32_t *d = w;
	const unsigned char *src = t->data;
	for (size_t i = 0; i < n; i++) {
		switch (t->dtype) {
		case GRAFT_INT32: { int32_t v; memcpy(&v, src + 4 * i, 4); d[i] = v; break; }
		case GRAFT_INT16: { int16_t v; memcpy(&v, src + 2 * i, 2); d[i] = v; break; }
		case GRAFT_UINT16: case GRAFT_FLOAT16: case GRAFT_BFLOAT16:
			{ uint16_t v; memcpy(&v, src + 2 * i, 2); d[i] = v; break; }
		case GRAFT_INT8: d[i] = (int8_t)src[i]; break;
		default: d[i] = src[i]; break;
		}
	}
	tp->int32_data = d;
	tp->n_int32_data = n;
	return 0;
}

static void clear_payload(struct tensor_rec *t)
{
	Onnx__TensorProto *tp = t->slot;

	if (!tp)
		return;         /* detached */
	tp->raw_data.data = NULL;
	tp->raw_data.len = 0;
	tp->has_raw_data = 0;
	tp->float_data = NULL;
	tp->n_float_data = 0;
	tp->double_data = NULL;
	tp->n_double_data = 0;
	tp->int64_data = NULL;
	tp->n_int64_data = 0;
	tp->int32_data = NULL;
	tp->n_int32_data = 0;
	tp->uint64_data = NULL;
	tp->n_uint64_data = 0;
}

static void clear_all(struct graft_model *m, struct scratch *s)
{
	for (size_t i = 0; i < m->n_tensors; i++)
		clear_payload(&m->tensors[i]);
	for (size_t i = 0; i < s->n; i++)
		free(s->bufs[i]);
	free(s->bufs);
	s->bufs = NULL;
	s->n = 0;
}

static int fill_all(struct graft_model *m, struct scratch *s, struct graft_err *err)
{
	int rc = 0;

	s->n = 0;
	s->bufs = calloc(m->n_tensors + 1, sizeof(void *));
	if (!s->bufs)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_tensors && !rc; i++)
		if (m->tensors[i].slot)
			rc = put_payload(&m->tensors[i], s, err);
	if (rc)
		clear_all(m, s);
	return rc;
}

uint64_t graft_model_onnx_size(const struct graft_model *cm)
{
	struct graft_model *m = (struct graft_model *)cm;
	struct scratch s;
	uint64_t n;

	if (fill_all(m, &s, NULL))
		return UINT64_MAX;
	n = onnx__model_proto__get_packed_size(m->proto);
	clear_all(m, &s);
	return n;
}

/* A protobuf-c output buffer that streams to a file descriptor, so a large model is
 * never held twice in memory. */
struct fd_buffer {
	ProtobufCBuffer base;
	int fd;
	int failed;
	struct graft_err *err;
	size_t used;
	uint8_t buf[1 << 16];
};

static void fd_flush(struct fd_buffer *b)
{
	if (!b->failed && b->used && graft_write_all(b->fd, b->buf, b->used, b->err))
		b->failed = 1;
	b->used = 0;
}

static void fd_append(ProtobufCBuffer *base, size_t len, const uint8_t *data)
{
	struct fd_buffer *b = (struct fd_buffer *)base;

	if (b->failed || len == 0)      /* an empty bytes field may come with data NULL */
		return;
	if (len > sizeof(b->buf) - b->used) {
		fd_flush(b);
		if (len >= sizeof(b->buf)) {
			if (!b->failed && graft_write_all(b->fd, data, len, b->err))
				b->failed = 1;
			return;
		}
	}
	memcpy(b->buf + b->used, data, len);
	b->used += len;
}

/* Moves tensors of at least min_bytes to the external-data file, 4 KiB aligned so that
 * readers can map them, and points their slots there.  entries must hold 3 per tensor;
 * undo_external reverses it after the pack. */
static int put_external(struct graft_model *m, const struct graft_onnx_opts *o,
			Onnx__StringStringEntryProto *entries, Onnx__StringStringEntryProto **ptrs,
			char (*nums)[2][24], struct graft_err *err)
{
	static const char zeros[4096];
	uint64_t off = 0;
	int rc;

	for (size_t i = 0; i < m->n_tensors; i++) {
		struct tensor_rec *t = &m->tensors[i];
		Onnx__TensorProto *tp = t->slot;
		if (!tp || t->nbytes < o->external_min_bytes || t->nbytes == 0)
			continue;
		uint64_t pad = (4096 - off % 4096) % 4096;
		if ((rc = graft_write_all(o->external_fd, zeros, pad, err)) ||
		    (rc = graft_write_all(o->external_fd, t->data, t->nbytes, err))) {
			/* The caller names the model's file: say that this one failed. */
			char what[300];
			snprintf(what, sizeof(what), "external data '%s'",
				 o->external_name ? o->external_name : "");
			graft_err_prefix(err, what);
			return rc;
		}
		off += pad;
		snprintf(nums[i][0], sizeof(nums[i][0]), "%" PRIu64, off);
		snprintf(nums[i][1], sizeof(nums[i][1]), "%zu", t->nbytes);
		off += t->nbytes;
		const char *keys[3] = {"location", "offset", "length"};
		const char *vals[3] = {o->external_name, nums[i][0], nums[i][1]};
		for (int k = 0; k < 3; k++) {
			Onnx__StringStringEntryProto *e = &entries[3 * i + k];
			onnx__string_string_entry_proto__init(e);
			e->key = (char *)keys[k];
			e->value = (char *)vals[k];
			ptrs[3 * i + k] = e;
		}
		clear_payload(t);
		tp->external_data = &ptrs[3 * i];
		tp->n_external_data = 3;
		tp->has_data_location = 1;
		tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	}
	return 0;
}

static void undo_external(struct graft_model *m, Onnx__StringStringEntryProto **ptrs)
{
	for (size_t i = 0; i < m->n_tensors; i++) {
		Onnx__TensorProto *tp = m->tensors[i].slot;
		if (tp && tp->external_data == &ptrs[3 * i]) {
			tp->external_data = NULL;
			tp->n_external_data = 0;
			/* Import left every stored tensor with data_location DEFAULT, set
			 * explicitly only where the original had it; external tensors are
			 * loaded, which sets it. */
			tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
		}
	}
}

int graft_model_write_onnx(const struct graft_model *cm, int fd,
			   const struct graft_onnx_opts *opts, struct graft_err *err)
{
	struct graft_model *m = (struct graft_model *)cm;
	struct graft_onnx_opts none = {.external_fd = -1};
	Onnx__StringStringEntryProto *entries = NULL, **ptrs = NULL;
	char (*nums)[2][24] = NULL;
	int *had_location = NULL;
	struct scratch s = {0};
	struct fd_buffer *b = NULL;
	int rc;

	if (!opts)
		opts = &none;
	if ((rc = fill_all(m, &s, err)))
		return rc;
	if (opts->external_fd >= 0) {
		size_t n = m->n_tensors + 1;
		entries = calloc(3 * n, sizeof(*entries));
		ptrs = calloc(3 * n, sizeof(*ptrs));
		nums = calloc(n, sizeof(*nums));
		had_location = calloc(n, sizeof(int));
		if (!entries || !ptrs || !nums || !had_location) {
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < m->n_tensors; i++)
			had_location[i] = m->tensors[i].slot && m->tensors[i].slot->has_data_location;
		if ((rc = put_external(m, opts, entries, ptrs, nums, err)))
			goto out;
	}
	if (onnx__model_proto__get_packed_size(m->proto) > PROTOBUF_LIMIT) {
		rc = graft_err_set(err, GRAFT_EUNSUPPORTED,
				   "model is over protobuf's 2 GiB limit: write it with external data");
		goto out;
	}
	if (!(b = malloc(sizeof(*b)))) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		goto out;
	}
	b->base.append = fd_append;
	b->fd = fd;
	b->failed = 0;
	b->err = err;
	b->used = 0;
	onnx__model_proto__pack_to_buffer(m->proto, &b->base);
	fd_flush(b);
	if (b->failed)
		rc = err ? err->code : GRAFT_EIO;
out:
	if (ptrs) {
		undo_external(m, ptrs);
		for (size_t i = 0; i < m->n_tensors; i++)
			if (m->tensors[i].slot)
				m->tensors[i].slot->has_data_location = had_location[i];
	}
	clear_all(m, &s);
	free(b);
	free(entries);
	free(ptrs);
	free(nums);
	free(had_location);
	return rc;
}

/* ---- decoding a TensorProto (inline payloads, .pb files) ---------------------------------- */

/* GRAFT_EFORMAT with a message when the one data field set in tp holds a count of values
 * or bytes other than numel elements of its dtype need; 0 otherwise. */
static int payload_count_mismatch(const Onnx__TensorProto *tp, uint64_t numel,
				  struct graft_err *err)
{
	static const struct { const char *name; int unit; } fields[] = {
		{"raw_data", 0}, {"float_data", 1}, {"double_data", 1}, {"int64_data", 1},
		{"int32_data", 1}, {"uint64_data", 1},
	};
	size_t counts[6] = {tp->has_raw_data ? tp->raw_data.len : 0, tp->n_float_data,
			    tp->n_double_data, tp->n_int64_data, tp->n_int32_data,
			    tp->n_uint64_data};
	int complex = tp->data_type == GRAFT_COMPLEX64 || tp->data_type == GRAFT_COMPLEX128;
	char dims[96];

	for (int i = 0; i < 6; i++) {
		if (!counts[i] && !(i == 0 && tp->has_raw_data))
			continue;
		uint64_t need = fields[i].unit ? numel * (complex && i < 3 ? 2 : 1)
					       : numel * graft_dtype_size(tp->data_type);
		if (counts[i] == need)
			return 0;
		dims_string(tp->dims, tp->n_dims, dims, sizeof(dims));
		return graft_err_set(err, GRAFT_EFORMAT, "tensor '%s': %s holds %zu %s, dims [%s] "
				     "of %s need %" PRIu64, tensor_label(tp), fields[i].name,
				     counts[i], fields[i].unit ? "values" : "bytes", dims,
				     graft_dtype_name(tp->data_type), need);
	}
	return 0;
}

/* Says why take_payload left tp's payload where it was (a tensor of numel elements). */
static int explain_payload(const Onnx__TensorProto *tp, uint64_t numel, struct graft_err *err)
{
	static const char *const names[] = {"raw_data", "float_data", "double_data",
					    "int64_data", "int32_data", "uint64_data"};
	size_t counts[6] = {tp->has_raw_data ? 1 : 0, tp->n_float_data, tp->n_double_data,
			    tp->n_int64_data, tp->n_int32_data, tp->n_uint64_data};
	const char *label = tensor_label(tp);
	int n = data_fields_set(tp), rc;

	if (tp->segment)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "tensor '%s': segments are not "
				     "supported", label);
	if (tp->has_data_location &&
	    tp->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "tensor '%s': external data cannot "
				     "be read here", label);
	if (n != 1)
		return graft_err_set(err, GRAFT_EFORMAT, "tensor '%s': %d data fields set, not one",
				     label, n);
	if ((rc = payload_count_mismatch(tp, numel, err)))
		return rc;
	for (int i = 0; i < 6; i++)
		if (counts[i])
			return graft_err_set(err, GRAFT_EFORMAT, "tensor '%s': %s cannot hold %s "
					     "(or a value is out of its range)", label, names[i],
					     graft_dtype_name(tp->data_type));
	return graft_err_set(err, GRAFT_EFORMAT, "tensor '%s': no data", label);
}

/* A main-graph tensor that take_payload left in place, checked: one whose payload
 * holds more or fewer elements than its shape is an error now, not when something
 * reads it (ONNX Runtime refuses such a model when it loads it).  The others that stay
 * (strings, no elements, segments, values out of their type's range...) are carried
 * as they are. */
static int check_kept_payload(const Onnx__TensorProto *tp, struct graft_err *err)
{
	uint64_t numel;

	if (!tp->has_data_type || !graft_dtype_size(tp->data_type) || tp->segment ||
	    data_fields_set(tp) != 1 || tp->n_dims > GRAFT_MAX_RANK ||
	    dims_numel(tp->dims, (int)tp->n_dims, &numel) || numel == 0 ||
	    (tp->has_data_location &&
	     tp->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT))
		return 0;
	return payload_count_mismatch(tp, numel, err);
}

int onnx_tensor_decode(const Onnx__TensorProto *tp, struct graft_array *a, struct graft_err *err)
{
	struct tensor_rec rec = {0};
	size_t esize = graft_dtype_size(tp->data_type);
	uint64_t numel;
	char what[320];
	int rc;

	memset(a, 0, sizeof(*a));
	if (!tp->has_data_type || esize == 0)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "tensor '%s': data type %d is not "
				     "supported", tensor_label(tp), tp->data_type);
	snprintf(what, sizeof(what), "tensor '%.256s'", tensor_label(tp));
	if ((rc = dims_check(tp->dims, tp->n_dims, what, &numel, err)))
		return rc;
	if (tp->n_dims > GRAFT_ARRAY_MAX_RANK)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "tensor '%s': rank %zu is over %d",
				     tensor_label(tp), tp->n_dims, GRAFT_ARRAY_MAX_RANK);
	if (numel > SIZE_MAX / esize)
		return graft_err_set(err, GRAFT_EFORMAT, "tensor '%s': too large", tensor_label(tp));
	a->dtype = tp->data_type;
	a->rank = (int)tp->n_dims;
	for (size_t i = 0; i < tp->n_dims; i++)
		a->dims[i] = tp->dims[i];
	a->nbytes = (size_t)numel * esize;
	if (numel == 0) {
		a->data = malloc(1);
		return a->data ? 0 : graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	/* take_payload only reads tp when it copies (steal = 0). */
	rc = take_payload((Onnx__TensorProto *)tp, &rec, 0, err);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return explain_payload(tp, numel, err);
	a->data = rec.data;
	free(rec.dims);
	return 0;
}

int graft_array_read_pb(struct graft_array *a, const void *buf, size_t len,
			struct graft_err *err)
{
	Onnx__TensorProto *tp;
	int rc;

	memset(a, 0, sizeof(*a));
	if ((rc = wire_check(buf, len, &onnx__tensor_proto__descriptor, err)) < 0)
		return rc;
	tp = rc ? NULL : onnx__tensor_proto__unpack(NULL, len, buf);
	if (!tp)
		return graft_err_set(err, GRAFT_EFORMAT, "not a TensorProto (.pb) file");
	rc = onnx_tensor_decode(tp, a, err);
	if (!rc && tp->name && *tp->name && !(a->name = strdup(tp->name)))
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	onnx__tensor_proto__free_unpacked(tp, NULL);
	return rc;
}
