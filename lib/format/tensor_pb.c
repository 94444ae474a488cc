/*
 * tensor_pb.c: one TensorProto with a payload of its own decoded into an array: inline
 * initializers, Constant attributes, and the .pb files of the ONNX test suite.  A
 * payload whose count of values disagrees with the dims is explained, not guessed at.
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

const char *onnx_tensor_label(const Onnx__TensorProto *tp)
{
	return tp->name ? tp->name : "(unnamed)";
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
				     "of %s need %" PRIu64, onnx_tensor_label(tp), fields[i].name,
				     counts[i], fields[i].unit ? "values" : "bytes", dims,
				     graft_dtype_name(tp->data_type), need);
	}
	return 0;
}

/* Says why onnx_take_payload left tp's payload where it was (a tensor of numel elements). */
static int explain_payload(const Onnx__TensorProto *tp, uint64_t numel, struct graft_err *err)
{
	static const char *const names[] = {"raw_data", "float_data", "double_data",
					    "int64_data", "int32_data", "uint64_data"};
	size_t counts[6] = {tp->has_raw_data ? 1 : 0, tp->n_float_data, tp->n_double_data,
			    tp->n_int64_data, tp->n_int32_data, tp->n_uint64_data};
	const char *label = onnx_tensor_label(tp);
	int n = onnx_data_fields_set(tp), rc;

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

/* A main-graph tensor that onnx_take_payload left in place, checked: one whose payload
 * holds more or fewer elements than its shape is an error now, not when something
 * reads it (ONNX Runtime refuses such a model when it loads it).  The others that stay
 * (strings, no elements, segments, values out of their type's range...) are carried
 * as they are. */
int onnx_check_kept_payload(const Onnx__TensorProto *tp, struct graft_err *err)
{
	uint64_t numel;

	if (!tp->has_data_type || !graft_dtype_size(tp->data_type) || tp->segment ||
	    onnx_data_fields_set(tp) != 1 || tp->n_dims > GRAFT_MAX_RANK ||
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
				     "supported", onnx_tensor_label(tp), tp->data_type);
	snprintf(what, sizeof(what), "tensor '%.256s'", onnx_tensor_label(tp));
	if ((rc = dims_check(tp->dims, tp->n_dims, what, &numel, err)))
		return rc;
	if (tp->n_dims > GRAFT_ARRAY_MAX_RANK)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "tensor '%s': rank %zu is over %d",
				     onnx_tensor_label(tp), tp->n_dims, GRAFT_ARRAY_MAX_RANK);
	if (numel > SIZE_MAX / esize)
		return graft_err_set(err, GRAFT_EFORMAT, "tensor '%s': too large", onnx_tensor_label(tp));
	a->dtype = tp->data_type;
	a->rank = (int)tp->n_dims;
	for (size_t i = 0; i < tp->n_dims; i++)
		a->dims[i] = tp->dims[i];
	a->nbytes = (size_t)numel * esize;
	if (numel == 0) {
		a->data = malloc(1);
		return a->data ? 0 : graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	/* onnx_take_payload only reads tp when it copies (steal = 0). */
	rc = onnx_take_payload((Onnx__TensorProto *)tp, &rec, 0, err);
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

