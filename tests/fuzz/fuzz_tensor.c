/*
 * fuzz_tensor.c: the input-array readers graft-run uses for -i (and graft-data npy):
 * graft_array_read on a file, which tells .npy from an ONNX TensorProto .pb by content,
 * and graft_array_read_pb on the bytes.  An array that reads must have bytes that match
 * its shape and type, and, written as .npy, read back the same.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

static void check_array(const struct graft_array *a, const char *what)
{
	uint64_t numel = 1;
	size_t esize = graft_dtype_size(a->dtype);

	if (!esize || a->rank < 0 || a->rank > GRAFT_ARRAY_MAX_RANK)
		fuzz_fail("%s: dtype %d rank %d", what, a->dtype, a->rank);
	for (int i = 0; i < a->rank; i++) {
		if (a->dims[i] < 0)
			fuzz_fail("%s: negative dim", what);
		numel *= (uint64_t)a->dims[i];
	}
	if (numel * esize != a->nbytes || (a->nbytes && !a->data))
		fuzz_fail("%s: %zu bytes for %llu elements", what, a->nbytes,
			  (unsigned long long)numel);
	if (a->nbytes) {        /* every byte readable */
		volatile uint8_t x = 0;
		for (size_t i = 0; i < a->nbytes; i++)
			x ^= ((const uint8_t *)a->data)[i];
		(void)x;
	}
}

/* Writes a as .npy and reads it back: the same array, name aside. */
static void npy_roundtrip(const struct graft_array *a)
{
	struct graft_array b;
	struct graft_err err = {0};
	char path[32];
	int fd = fuzz_memfd(NULL, 0), rc;

	rc = graft_array_write_npy(a, fd, &err);
	if (rc) {
		/* Only types .npy has no name for are refused. */
		if (rc != GRAFT_EUNSUPPORTED)
			fuzz_fail("writing .npy failed: %s", err.msg);
		close(fd);
		return;
	}
	if ((rc = graft_array_read(&b, fuzz_fd_path(fd, path), &err)))
		fuzz_fail("the .npy written does not read back: %s", err.msg);
	close(fd);
	if (b.dtype != a->dtype || b.rank != a->rank ||
	    memcmp(b.dims, a->dims, sizeof(int64_t) * (size_t)a->rank) != 0 ||
	    b.nbytes != a->nbytes || (a->nbytes && memcmp(a->data, b.data, a->nbytes) != 0))
		fuzz_fail(".npy read back differs");
	graft_array_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct graft_array a;
	struct graft_err err = {0};
	char path[32];
	int fd = fuzz_memfd(data, size), rc;

	rc = graft_array_read(&a, fuzz_fd_path(fd, path), &err);
	close(fd);
	if (rc) {
		fuzz_check_err(rc, &err, "graft_array_read");
	} else {
		check_array(&a, "graft_array_read");
		npy_roundtrip(&a);
		graft_array_release(&a);
	}
	memset(&err, 0, sizeof(err));
	rc = graft_array_read_pb(&a, data, size, &err);
	if (rc) {
		fuzz_check_err(rc, &err, "graft_array_read_pb");
		graft_array_release(&a);
		return 0;
	}
	check_array(&a, "graft_array_read_pb");
	npy_roundtrip(&a);
	graft_array_release(&a);
	return 0;
}
