/*
 * fuzz_image.c: graft_image_decode (PNG and JPEG, graft-data's image folders) and
 * graft_image_resize.  An image that decodes must be (h, w, 3) bytes within the size
 * limits, and resize, in colour and grey, to values in [0, 1]; one that does not must
 * say why.  The output sizes come from the input's last byte, so that both shrinking and
 * enlarging run.
 */
#include <math.h>
#include <stdlib.h>

#include "fuzz.h"

static void check_resized(const float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!(v[i] >= 0 && v[i] <= 1.0f + 1e-6f))
			fuzz_fail("resized value %zu is %g, not in [0, 1]", i, (double)v[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct graft_array rgb;
	struct graft_err err = {0};
	int rc = graft_image_decode(&rgb, data, size, &err);

	if (rc) {
		fuzz_check_err(rc, &err, "graft_image_decode");
		if (rgb.data)
			fuzz_fail("graft_image_decode failed but returned data");
		return 0;
	}
	int64_t h = rgb.dims[0], w = rgb.dims[1];
	if (rgb.dtype != GRAFT_UINT8 || rgb.rank != 3 || rgb.dims[2] != 3 || h < 1 || w < 1 ||
	    h > 32768 || w > 32768 || (uint64_t)h * (uint64_t)w > (1u << 26) ||
	    rgb.nbytes != (size_t)(h * w * 3) || !rgb.data)
		fuzz_fail("decoded as (%lld, %lld, %lld), %zu bytes", (long long)h, (long long)w,
			  (long long)rgb.dims[2], rgb.nbytes);
	int64_t oh = 1 + data[size - 1] % 13, ow = 1 + data[size - 1] / 13 % 17;
	float *out = malloc(sizeof(float) * 3 * (size_t)(oh * ow));
	if (!out)
		fuzz_fail("out of memory");
	for (int gray = 0; gray < 2; gray++) {
		if ((rc = graft_image_resize(&rgb, oh, ow, gray, out, &err)))
			fuzz_fail("a decoded image does not resize: %s", err.msg);
		check_resized(out, (size_t)((gray ? 1 : 3) * oh * ow));
	}
	free(out);
	graft_array_release(&rgb);
	return 0;
}
