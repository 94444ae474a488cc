/*
 * fuzz_onnx.c: ONNX ModelProto bytes through the importer (graft_model_read_memory, as
 * graft-import reads them), external data resolved against an empty folder; what loads
 * goes through every getter and both writers (fuzz_model_check).
 */
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"

static char basedir[] = "/tmp/graft-fuzz-XXXXXX";

static void remove_basedir(void)
{
	rmdir(basedir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int made;
	struct graft_model *m;
	struct graft_err err = {0};
	int rc;

	if (!made) {
		if (!mkdtemp(basedir))
			fuzz_fail("mkdtemp failed");
		atexit(remove_basedir);
		made = 1;
	}
	rc = graft_model_read_memory(&m, data, size, basedir, "fuzz.onnx", &err);
	if (rc) {
		fuzz_check_err(rc, &err, "reading the model");
		if (m)
			fuzz_fail("a failed read returned a model");
		return 0;
	}
	fuzz_model_check(m);
	graft_model_free(m);
	return 0;
}
