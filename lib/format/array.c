/*
 * array.c: dense arrays in and out of files: NumPy .npy (version 1.0 to 3.0 read,
 * 1.0 written, little-endian, C order) and ONNX TensorProto .pb files.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/format.h"

static const struct {
	const char *descr;
	int dtype;
} npy_types[] = {
	{"<f4", GRAFT_FLOAT}, {"<f8", GRAFT_DOUBLE}, {"<f2", GRAFT_FLOAT16},
	{"<i8", GRAFT_INT64}, {"<i4", GRAFT_INT32}, {"<i2", GRAFT_INT16}, {"|i1", GRAFT_INT8},
	{"|u1", GRAFT_UINT8}, {"<u2", GRAFT_UINT16}, {"<u4", GRAFT_UINT32}, {"<u8", GRAFT_UINT64},
	{"|b1", GRAFT_BOOL}, {"<c8", GRAFT_COMPLEX64}, {"<c16", GRAFT_COMPLEX128},
};
#define N_NPY_TYPES (sizeof(npy_types) / sizeof(npy_types[0]))

void graft_array_release(struct graft_array *a)
{
	if (!a)
		return;
	free(a->name);
	free(a->data);
	memset(a, 0, sizeof(*a));
}

/* Finds 'key': in a Python dict literal and returns what follows the colon. */
static const char *dict_value(const char *h, const char *key)
{
	const char *p = strstr(h, key);
	if (!p)
		return NULL;
	p = strchr(p + strlen(key), ':');
	if (!p)
		return NULL;
	p++;
	while (*p == ' ')
		p++;
	return p;
}

static int parse_npy(struct graft_array *a, const unsigned char *buf, size_t len,
		     struct graft_err *err)
{
	size_t hlen, off;
	char *h;
	const char *p;
	uint64_t numel = 1;

	if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
		return graft_err_set(err, GRAFT_EFORMAT, "not a .npy file");
	if (buf[6] == 1) {
		hlen = buf[8] | (size_t)buf[9] << 8;
		off = 10;
	} else if ((buf[6] == 2 || buf[6] == 3) && len >= 12) {
		hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
		off = 12;
	} else {
		return graft_err_set(err, GRAFT_EUNSUPPORTED, ".npy version %d is not supported",
				     buf[6]);
	}
	if (hlen > len - off)
		return graft_err_set(err, GRAFT_EFORMAT, ".npy header is truncated");
	if (!(h = malloc(hlen + 1)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	memcpy(h, buf + off, hlen);
	h[hlen] = 0;
	int rc = 0;
	if (!(p = dict_value(h, "'descr'")) || *p != '\'') {
		rc = graft_err_set(err, GRAFT_EFORMAT, ".npy header has no descr");
		goto out;
	}
	a->dtype = 0;
	for (size_t i = 0; i < N_NPY_TYPES; i++) {
		size_t n = strlen(npy_types[i].descr);
		if (strncmp(p + 1, npy_types[i].descr, n) == 0 && p[1 + n] == '\'')
			a->dtype = npy_types[i].dtype;
	}
	if (!a->dtype) {
		rc = graft_err_set(err, GRAFT_EUNSUPPORTED, ".npy dtype %.8s is not supported", p);
		goto out;
	}
	if ((p = dict_value(h, "'fortran_order'")) && strncmp(p, "True", 4) == 0) {
		rc = graft_err_set(err, GRAFT_EUNSUPPORTED, ".npy in Fortran order is not supported");
		goto out;
	}
	if (!(p = dict_value(h, "'shape'")) || *p != '(') {
		rc = graft_err_set(err, GRAFT_EFORMAT, ".npy header has no shape");
		goto out;
	}
	a->rank = 0;
	for (p++; *p && *p != ')'; ) {
		char *end;
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == ')')
			break;
		long long d = strtoll(p, &end, 10);
		if (end == p || d < 0 || a->rank == GRAFT_ARRAY_MAX_RANK) {
			rc = graft_err_set(err, GRAFT_EFORMAT, ".npy shape is malformed");
			goto out;
		}
		a->dims[a->rank++] = d;
		p = end;
	}
	if ((rc = dims_check(a->dims, (size_t)a->rank, ".npy shape", &numel, err)))
		goto out;
	if (numel > (len - off - hlen) / graft_dtype_size(a->dtype) ||
	    numel * graft_dtype_size(a->dtype) != len - off - hlen) {
		char dims[96];
		dims_string(a->dims, (size_t)a->rank, dims, sizeof(dims));
		rc = graft_err_set(err, GRAFT_EFORMAT, ".npy data is %zu bytes, shape [%s] of %s "
				   "needs %" PRIu64, len - off - hlen, dims,
				   graft_dtype_name(a->dtype), numel > UINT64_MAX / 16 ? numel
				   : numel * graft_dtype_size(a->dtype));
		goto out;
	}
	a->nbytes = (size_t)numel * graft_dtype_size(a->dtype);
	if (!(a->data = malloc(a->nbytes ? a->nbytes : 1))) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(a->data, buf + off + hlen, a->nbytes);
out:
	free(h);
	return rc;
}

int graft_array_read(struct graft_array *a, const char *path, struct graft_err *err)
{
	int use_stdin = strcmp(path, "-") == 0;
	int fd = use_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	void *buf;
	size_t len;
	int rc;

	memset(a, 0, sizeof(*a));
	if (fd < 0)
		return graft_err_set(err, GRAFT_EIO, "%s: %s", path, strerror(errno));
	rc = graft_read_fd(fd, &buf, &len, err);
	if (!use_stdin)
		close(fd);
	if (rc)
		return graft_err_prefix(err, path);
	if (len >= 6 && memcmp(buf, "\x93NUMPY", 6) == 0)
		rc = parse_npy(a, buf, len, err);
	else
		rc = graft_array_read_pb(a, buf, len, err);
	free(buf);
	if (rc) {
		graft_array_release(a);
		return graft_err_prefix(err, path);
	}
	return 0;
}

int graft_array_write_npy(const struct graft_array *a, int fd, struct graft_err *err)
{
	char header[256];
	const char *descr = NULL;
	int n, rc;

	for (size_t i = 0; i < N_NPY_TYPES; i++)
		if (npy_types[i].dtype == a->dtype)
			descr = npy_types[i].descr;
	if (!descr)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "dtype %s cannot be written as .npy",
				     graft_dtype_name(a->dtype) ? graft_dtype_name(a->dtype) : "?");
	n = snprintf(header + 10, sizeof(header) - 10, "{'descr': '%s', 'fortran_order': False, "
		     "'shape': (", descr);
	for (int i = 0; i < a->rank; i++)
		n += snprintf(header + 10 + n, sizeof(header) - 10 - (size_t)n, "%lld,%s",
			      (long long)a->dims[i], i + 1 < a->rank ? " " : "");
	if (a->rank > 1)        /* Python writes (3,) for rank 1 and (2, 3) otherwise */
		n--;
	n += snprintf(header + 10 + n, sizeof(header) - 10 - (size_t)n, "), }");
	/* Pad with spaces so that the data starts at a multiple of 64, ending with \n. */
	int total = (10 + n + 1 + 63) / 64 * 64;
	memset(header + 10 + n, ' ', (size_t)(total - 10 - n));
	header[total - 1] = '\n';
	memcpy(header, "\x93NUMPY\x01\x00", 8);
	header[8] = (char)((total - 10) & 0xff);
	header[9] = (char)((total - 10) >> 8);
	if ((rc = graft_write_all(fd, header, (size_t)total, err)))
		return rc;
	return graft_write_all(fd, a->data, a->nbytes, err);
}
