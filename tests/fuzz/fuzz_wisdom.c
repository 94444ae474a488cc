/*
 * fuzz_wisdom.c: graft_wisdom_load, the reader of the kernel choices' file
 * (docs/engine.md).  What reads must hold as many entries as it counts, and keep
 * entries it did not add from being written; what does not must say why.
 */
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = fuzz_memfd(data, size);
	char path[32];
	struct graft_wisdom *w = NULL;
	struct graft_err err = {0};
	size_t all, machine, added;
	int rc = graft_wisdom_load(&w, fuzz_fd_path(fd, path), "fuzz cpu", &err);

	close(fd);
	if (rc) {
		fuzz_check_err(rc, &err, "graft_wisdom_load");
		if (w)
			fuzz_fail("graft_wisdom_load failed but returned a wisdom");
		return 0;
	}
	graft_wisdom_counts(w, &all, &machine, &added);
	if (machine > all || added != 0)
		fuzz_fail("counts %zu all, %zu this machine's, %zu added after a load", all, machine,
			  added);
	/* nothing was added: saving writes nothing (and so cannot fail) */
	if (graft_wisdom_save(w, "/nonexistent/graft-fuzz/wisdom", &err))
		fuzz_fail("saving a wisdom with nothing added failed: %s", err.msg);
	graft_wisdom_free(w);
	return 0;
}
