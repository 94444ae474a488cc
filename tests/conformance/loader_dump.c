/*
 * loader_dump DATA.graft H W [SEED AUGMENT EPOCH]: every sample of a dataset of compact
 * images as a loader makes it at H x W, written to stdout as one .npy array (N, C, H, W):
 * as evaluation sees them, or, given SEED, AUGMENT (enum graft_augment_flags as a number)
 * and EPOCH, as training does in that epoch.  For tests/conformance/transforms.py, which
 * holds it against torchvision.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "graft.h"

int main(int argc, char **argv)
{
	struct graft_dataset ds;
	struct graft_loader *l;
	struct graft_err err = {0};
	struct graft_array x, xb;
	struct graft_loader_opts o = {.threads = 2};
	int train = argc == 7;

	if (argc != 4 && !train) {
		fprintf(stderr, "usage: loader_dump DATA.graft H W [SEED AUGMENT EPOCH]\n");
		return 2;
	}
	o.height = atoll(argv[2]);
	o.width = atoll(argv[3]);
	if (train) {
		o.seed = strtoull(argv[4], NULL, 10);
		o.augment = (unsigned)atoi(argv[5]);
	}
	if (graft_dataset_read(&ds, argv[1], &err) ||
	    graft_loader_new_images(&l, &ds.images, ds.mean, ds.std, &o, &err))
		goto fail;
	graft_loader_inputs(l, &x);
	int64_t *samples = malloc(sizeof(int64_t) * (size_t)ds.n);
	int64_t *epochs = malloc(sizeof(int64_t) * (size_t)ds.n);
	if (!(x.data = malloc(x.nbytes)) || !samples || !epochs)
		return 1;
	for (int64_t i = 0; i < ds.n; i++) {
		samples[i] = i;
		epochs[i] = train ? atoll(argv[6]) : 0;
	}
	xb = x;
	if (graft_loader_request(l, samples, train ? epochs : NULL, ds.n, &err) ||
	    graft_loader_take(l, &xb, &err) || graft_array_write_npy(&xb, STDOUT_FILENO, &err))
		goto fail;
	graft_loader_free(l);
	graft_dataset_release(&ds);
	free(x.data);
	free(samples);
	free(epochs);
	return 0;
fail:
	fprintf(stderr, "loader_dump: %s\n", err.msg);
	return 1;
}
