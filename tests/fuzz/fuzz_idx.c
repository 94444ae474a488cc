/*
 * fuzz_idx.c: graft_idx_read, graft-data's reader of IDX files (MNIST's images and
 * labels), on bytes that are gzip-compressed or plain.  An IDX file that reads must hold
 * exactly the bytes its dims call for, every one readable; one that does not must say
 * why.  The rank asked for is the file's own (byte 3) when it is 1 to 3, so that inputs
 * get past the rank check as often as they fail it.
 */
#include <unistd.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct graft_array a;
	struct graft_err err = {0};
	char path[32];
	int ndim = size > 3 && data[3] >= 1 && data[3] <= 3 ? data[3] : 1;
	int fd = fuzz_memfd(data, size), rc;

	rc = graft_idx_read(&a, fuzz_fd_path(fd, path), ndim, &err);
	close(fd);
	if (rc) {
		fuzz_check_err(rc, &err, "graft_idx_read");
		if (a.data)
			fuzz_fail("graft_idx_read failed but returned data");
		return 0;
	}
	uint64_t n = 1;
	for (int i = 0; i < a.rank; i++)
		n *= (uint64_t)a.dims[i];
	if (a.dtype != GRAFT_UINT8 || a.rank != ndim || n != a.nbytes || !a.data)
		fuzz_fail("IDX read as rank %d, %zu bytes for %llu elements", a.rank, a.nbytes,
			  (unsigned long long)n);
	volatile uint8_t s = 0;
	for (size_t i = 0; i < a.nbytes; i++)
		s ^= ((const uint8_t *)a.data)[i];
	(void)s;
	graft_array_release(&a);
	return 0;
}
