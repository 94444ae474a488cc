/*
 * fuzz_dataset.c: dataset archives through graft_dataset_read (what graft-train,
 * graft-eval, graft-plan and graft-data graft read).  A dataset that reads must hold
 * what the header promises (x float of rank >= 2, y int64 labels in range or float
 * targets, N samples in both), and must write (graft_dataset_write) and read back the
 * same.  graft-data's raw inputs have targets of their own: fuzz_idx, fuzz_image and
 * fuzz_json; its .npy input is graft_array_read, which fuzz_tensor covers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

static void check_dataset(const struct graft_dataset *ds)
{
	const struct graft_array *x = &ds->x, *y = &ds->y;

	if (x->dtype != GRAFT_FLOAT || x->rank < 2 || ds->n < 1 || x->dims[0] != ds->n ||
	    y->dims[0] != ds->n)
		fuzz_fail("dataset: bad x or n");
	if (y->dtype == GRAFT_INT64) {
		if (y->rank != 1 || ds->n_classes < 1 || y->nbytes != 8 * (size_t)ds->n)
			fuzz_fail("dataset: bad labels");
		for (int64_t i = 0; i < ds->n; i++) {
			int64_t v;
			memcpy(&v, (const char *)y->data + 8 * i, 8);
			if (v < 0 || v >= ds->n_classes)
				fuzz_fail("dataset: label %" PRId64 " out of range", v);
		}
	} else if (y->dtype != GRAFT_FLOAT || y->rank != 2 || ds->n_classes != 0) {
		fuzz_fail("dataset: bad targets");
	}
	size_t xb = sizeof(float);
	for (int i = 0; i < x->rank; i++)
		xb *= (size_t)x->dims[i];
	if (xb != x->nbytes)
		fuzz_fail("dataset: x holds %zu bytes, not %zu", x->nbytes, xb);
	volatile uint8_t s = 0;
	for (size_t i = 0; i < x->nbytes; i++)
		s ^= ((const uint8_t *)x->data)[i];
	(void)s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct graft_dataset ds, back;
	struct graft_err err = {0};
	char path[32], classes[32];
	int fd = fuzz_memfd(data, size), out, rc;

	rc = graft_dataset_read(&ds, fuzz_fd_path(fd, path), &err);
	close(fd);
	if (rc) {
		fuzz_check_err(rc, &err, "graft_dataset_read");
		graft_dataset_release(&ds);
		return 0;
	}
	check_dataset(&ds);
	snprintf(classes, sizeof(classes), "%" PRId64, ds.n_classes);
	const char *meta[] = {"graft.classes", classes, NULL};
	out = fuzz_memfd(NULL, 0);
	rc = graft_dataset_write(out, &ds.x, &ds.y, ds.n_classes ? meta : NULL, &err);
	if (rc)
		fuzz_fail("a dataset that reads does not write: %s", err.msg);
	if ((rc = graft_dataset_read(&back, fuzz_fd_path(out, path), &err)))
		fuzz_fail("the dataset written does not read back: %s", err.msg);
	close(out);
	check_dataset(&back);
	if (back.n != ds.n || back.n_classes != ds.n_classes || back.x.nbytes != ds.x.nbytes ||
	    back.y.nbytes != ds.y.nbytes || back.x.rank != ds.x.rank ||
	    memcmp(back.x.dims, ds.x.dims, sizeof(int64_t) * (size_t)ds.x.rank) != 0 ||
	    memcmp(back.x.data, ds.x.data, ds.x.nbytes) != 0 ||
	    memcmp(back.y.data, ds.y.data, ds.y.nbytes) != 0)
		fuzz_fail("the dataset read back differs");
	graft_dataset_release(&back);
	graft_dataset_release(&ds);
	return 0;
}
