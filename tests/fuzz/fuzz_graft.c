/*
 * fuzz_graft.c: .graft archives (tar stream, manifest, skeleton, members) through the
 * three ways the library reads them: from memory (a pipe read whole), from a mapped
 * regular file (graft_model_read on a path), and as a stream member by member
 * (archive_read_graft_stream, through graft_model_read with GRAFT_READ_NO_MAP).  All
 * three must agree on whether the archive is good; what loads goes through every getter
 * and both writers (fuzz_model_check).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct graft_model *mem = NULL, *mapped = NULL, *stream = NULL;
	struct graft_err err = {0}, err2 = {0}, err3 = {0};
	char path[32];
	int fd, rc, rc2, rc3;

	rc = graft_model_read_memory(&mem, data, size, NULL, "fuzz.graft", &err);
	if (rc)
		fuzz_check_err(rc, &err, "reading from memory");
	fd = fuzz_memfd(data, size);
	rc2 = graft_model_read(&mapped, fuzz_fd_path(fd, path), 0, &err2);
	if (rc2)
		fuzz_check_err(rc2, &err2, "reading a mapped file");
	rc3 = graft_model_read(&stream, fuzz_fd_path(fd, path), GRAFT_READ_NO_MAP, &err3);
	if (rc3)
		fuzz_check_err(rc3, &err3, "reading a stream");
	close(fd);
	/* The three readers agree on what is a good archive. */
	if ((rc == 0) != (rc2 == 0) || (rc == 0) != (rc3 == 0))
		fuzz_fail("readers disagree: memory %d '%s', mapped %d '%s', stream %d '%s'",
			  rc, err.msg, rc2, err2.msg, rc3, err3.msg);
	if (mem)
		fuzz_model_check(mem);
	graft_model_free(mem);
	graft_model_free(mapped);
	graft_model_free(stream);
	return 0;
}
