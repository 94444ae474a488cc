/*
 * onnx_write.c: ONNX export.  Each payload is put back into the field it came from for
 * the duration of one pack, so the ModelProto written equals the one read; with external
 * data, the large ones go to a file beside the model instead.  The skeleton alone is
 * packed for the .graft archive.
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
			skeleton_string_entry(e, (char *)keys[k], (char *)vals[k]);
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

