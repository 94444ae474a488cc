/*
 * io.c: reading whole inputs, mapping files, and outputs that appear only when complete.
 *
 * Every tool promises that a failure never leaves a half-written file: data goes to a
 * temporary file beside the target (same file system, so rename is atomic), which is
 * fsync'd and renamed over the target only once everything was written.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

int graft_write_all(int fd, const void *buf, size_t len, struct graft_err *err)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return graft_err_set(err, GRAFT_EIO, "write failed: %s", strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int graft_read_fd(int fd, void **buf, size_t *len, struct graft_err *err)
{
	size_t cap = 1 << 20, used = 0;
	char *b = malloc(cap);

	if (!b)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (;;) {
		if (used == cap) {
			char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(b, cap * 2);
			if (!nb) {
				free(b);
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory reading input");
			}
			b = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, b + used, cap - used);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			free(b);
			return graft_err_set(err, GRAFT_EIO, "read failed: %s", strerror(errno));
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	*buf = b;
	*len = used;
	return 0;
}

int io_map_fd(int fd, void **map, size_t *len, struct graft_err *err)
{
	struct stat st;
	void *p;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
		return GRAFT_EINVAL;
	if ((uint64_t)st.st_size > SIZE_MAX)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "file too large to map");
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return GRAFT_EINVAL;
	*map = p;
	*len = (size_t)st.st_size;
	return 0;
}

int graft_output_open(struct graft_output *out, const char *path, struct graft_err *err)
{
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (!path || strcmp(path, "-") == 0) {
		out->fd = STDOUT_FILENO;
		return 0;
	}
	size_t n = strlen(path);
	out->path = strdup(path);
	out->tmp = malloc(n + sizeof(".tmpXXXXXX"));
	if (!out->path || !out->tmp) {
		graft_output_abort(out);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	memcpy(out->tmp, path, n);
	memcpy(out->tmp + n, ".tmpXXXXXX", sizeof(".tmpXXXXXX"));
	out->fd = mkstemp(out->tmp);
	if (out->fd < 0) {
		int e = errno;
		free(out->tmp);
		out->tmp = NULL;
		graft_output_abort(out);
		return graft_err_set(err, GRAFT_EIO, "%s: cannot create: %s", path, strerror(e));
	}
	/* mkstemp makes 0600; give the file the permissions a plain creat() would. */
	mode_t mask = umask(0);
	umask(mask);
	fchmod(out->fd, 0666 & ~mask);
	return 0;
}

int graft_output_commit(struct graft_output *out, struct graft_err *err)
{
	if (!out->tmp)
		return 0;
	if (fsync(out->fd) < 0 && errno != EINVAL) {
		int e = errno;
		graft_output_abort(out);
		return graft_err_set(err, GRAFT_EIO, "%s: %s", out->path ? out->path : "?",
				     strerror(e));
	}
	if (close(out->fd) < 0) {
		int e = errno;
		out->fd = -1;
		graft_output_abort(out);
		return graft_err_set(err, GRAFT_EIO, "%s: %s", out->path, strerror(e));
	}
	out->fd = -1;
	if (rename(out->tmp, out->path) < 0) {
		int e = errno;
		graft_output_abort(out);
		return graft_err_set(err, GRAFT_EIO, "%s: cannot rename into place: %s",
				     out->path, strerror(e));
	}
	free(out->tmp);
	free(out->path);
	out->tmp = out->path = NULL;
	return 0;
}

void graft_output_abort(struct graft_output *out)
{
	if (out->tmp) {
		if (out->fd >= 0)
			close(out->fd);
		unlink(out->tmp);
	}
	out->fd = -1;
	free(out->tmp);
	free(out->path);
	out->tmp = out->path = NULL;
}

const char *graft_output_tmp_path(const struct graft_output *out)
{
	return out->tmp;
}
