/*
 * io.c: reading whole inputs, mapping files, and outputs that appear only when complete.
 *
 * Every tool promises that a failure never leaves a half-written file: data goes to a
 * temporary file beside the target (same file system, so rename is atomic), which is
 * fsync'd and renamed over the target only once everything was written.  A target that
 * exists and is no regular file (a device such as /dev/null, a FIFO, a terminal) is
 * written in place instead: renaming a file over it would replace the device (as root,
 * /dev/null itself) with a file, and a FIFO's reader would never see the data.
 *
 * Where the file system allows it (Linux's O_TMPFILE), the temporary file has no name
 * while it is written: it is linked under its temporary name only after the fsync,
 * just before the rename, so that a tool killed with SIGKILL (which no handler sees)
 * leaves nothing behind.
 */
#define _GNU_SOURCE     /* O_TMPFILE, linkat's AT_SYMLINK_FOLLOW */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
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
	return io_read_fd_after(fd, NULL, 0, buf, len, err);
}

int io_read_fd_after(int fd, const void *head, size_t head_len, void **buf, size_t *len,
		     struct graft_err *err)
{
	size_t cap = 1 << 20, used = head_len;
	char *b;

	while (cap < head_len)
		cap *= 2;
	if (!(b = malloc(cap)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (head_len)
		memcpy(b, head, head_len);
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

/* A device or FIFO: opened for writing as it is, committed by closing it. */
static int open_in_place(struct graft_output *out, const char *path, struct graft_err *err)
{
	if (!(out->path = strdup(path)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	out->fd = open(path, O_WRONLY | O_CLOEXEC);
	if (out->fd < 0) {
		int e = errno;
		graft_output_abort(out);
		return graft_err_set(err, GRAFT_EIO, "%s: cannot open: %s", path, strerror(e));
	}
	out->in_place = 1;
	return 0;
}

/* An unnamed file (O_TMPFILE) in path's folder, or -1 where the file system, the kernel
 * or a missing /proc (which linkat needs to name it later) does not allow one. */
static int open_unnamed(const char *path)
{
#ifdef O_TMPFILE
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd;

	if (access("/proc/self/fd", X_OK) < 0)
		return -1;
	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return -1;
	/* The mode is applied with the umask, as creat() would. */
	fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
	free(dir);
	return fd;
#else
	(void)path;
	return -1;
#endif
}

int graft_output_open(struct graft_output *out, const char *path, struct graft_err *err)
{
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (!path || strcmp(path, "-") == 0) {
		out->fd = STDOUT_FILENO;
		return 0;
	}
	struct stat st;
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return open_in_place(out, path, err);
	size_t n = strlen(path);
	out->path = strdup(path);
	out->tmp = malloc(n + sizeof(".tmpXXXXXX"));
	if (!out->path || !out->tmp) {
		graft_output_abort(out);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	memcpy(out->tmp, path, n);
	memcpy(out->tmp + n, ".tmpXXXXXX", sizeof(".tmpXXXXXX"));
	if ((out->fd = open_unnamed(path)) >= 0) {
		out->unnamed = 1;
		return 0;
	}
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

/* Records a failure of out with its path, then aborts it. */
static int output_fail(struct graft_output *out, const char *what, int e, struct graft_err *err)
{
	graft_err_set(err, GRAFT_EIO, "%s: %s%s", out->path, what, strerror(e));
	graft_output_abort(out);
	return GRAFT_EIO;
}

/* Flushes a temporary file to disk (the part of a commit that fails on a full disk). */
static int output_flush(struct graft_output *out, struct graft_err *err)
{
	if (!out->tmp || out->fd < 0)
		return 0;
	if (fsync(out->fd) < 0 && errno != EINVAL)
		return output_fail(out, "", errno, err);
	return 0;
}

/* Links an unnamed temporary file under a fresh temporary name beside the target (the
 * XXXXXX of out->tmp filled in, as mkstemp would), so that it can be renamed. */
static int output_link(struct graft_output *out)
{
	static const char digits[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	char proc[64], *x = out->tmp + strlen(out->tmp) - 6;
	struct timespec ts;
	uint64_t r;

	clock_gettime(CLOCK_REALTIME, &ts);
	r = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid() << 32 ^
	    (uint64_t)ts.tv_sec;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", out->fd);
	for (int tries = 0; tries < 100; tries++) {
		for (int i = 0; i < 6; i++, r /= 62)
			x[i] = digits[r % 62];
		r = r * 6364136223846793005ULL + 1442695040888963407ULL + (uint64_t)tries;
		if (linkat(AT_FDCWD, proc, AT_FDCWD, out->tmp, AT_SYMLINK_FOLLOW) == 0) {
			out->unnamed = 0;
			return 0;
		}
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

/* Names (if unnamed) and closes a flushed temporary file. */
static int output_close(struct graft_output *out, struct graft_err *err)
{
	if (!out->tmp || out->fd < 0)
		return 0;
	if (out->unnamed && output_link(out) < 0)
		return output_fail(out, "cannot name the temporary file: ", errno, err);
	int rc = close(out->fd);
	out->fd = -1;
	if (rc < 0)
		return output_fail(out, "", errno, err);
	return 0;
}

int graft_output_sync(struct graft_output *out, struct graft_err *err)
{
	int rc = output_flush(out, err);
	return rc ? rc : output_close(out, err);
}

int graft_output_commit(struct graft_output *out, struct graft_err *err)
{
	int rc;

	if (out->in_place) {
		rc = close(out->fd);
		out->fd = -1;
		if (rc < 0)
			return output_fail(out, "", errno, err);
		graft_output_abort(out);        /* only releases: nothing to unlink */
		return 0;
	}
	if (!out->tmp)
		return 0;
	if ((rc = graft_output_sync(out, err)))
		return rc;
	if (out->renamed) {
		free(out->tmp);
		free(out->path);
		out->tmp = out->path = NULL;
		return 0;
	}
	if (rename(out->tmp, out->path) < 0)
		return output_fail(out, "cannot rename into place: ", errno, err);
	free(out->tmp);
	free(out->path);
	out->tmp = out->path = NULL;
	return 0;
}

int graft_output_commit_pair(struct graft_output *data, struct graft_output *model,
			     struct graft_err *err)
{
	char *backup = NULL;
	int rc, had_old;

	/* Both flushed first (what a full disk fails), then both named and closed: the
	 * named temporary files exist only for the moment of the renames. */
	if ((rc = output_flush(data, err)) || (rc = output_flush(model, err)) ||
	    (rc = output_close(data, err)) || (rc = output_close(model, err))) {
		graft_output_abort(data);
		graft_output_abort(model);
		return rc;
	}
	if (!data->tmp) {       /* no data file, or one written in place */
		if ((rc = graft_output_commit(data, err))) {
			graft_output_abort(model);
			return rc;
		}
		return graft_output_commit(model, err);
	}
	/* Keep the data file's previous version (a hard link costs nothing) until the
	 * model is in place, so that a failed model rename can put it back. */
	if (!(backup = malloc(strlen(data->tmp) + 5))) {
		graft_output_abort(data);
		graft_output_abort(model);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	sprintf(backup, "%s.old", data->tmp);
	had_old = link(data->path, backup) == 0;
	if (rename(data->tmp, data->path) < 0) {
		rc = output_fail(data, "cannot rename into place: ", errno, err);
		graft_output_abort(model);
		goto out;
	}
	data->renamed = 1;
	if (model->tmp && rename(model->tmp, model->path) < 0) {
		rc = output_fail(model, "cannot rename into place: ", errno, err);
		if (had_old)
			rename(backup, data->path);
		else
			unlink(data->path);
		had_old = 0;
		data->renamed = 0;
		free(data->tmp);        /* its file was renamed away: nothing to unlink */
		free(data->path);
		data->tmp = data->path = NULL;
		goto out;
	}
	model->renamed = 1;
	graft_output_commit(data, err);        /* only releases: already renamed */
	graft_output_commit(model, err);
	rc = 0;
out:
	if (had_old)
		unlink(backup);
	free(backup);
	return rc;
}

void graft_output_abort(struct graft_output *out)
{
	if (out->tmp || out->in_place) {
		if (out->fd >= 0)
			close(out->fd);
		if (out->tmp && !out->unnamed)         /* an unnamed file goes with its close */
			unlink(out->tmp);
	}
	out->fd = -1;
	out->in_place = 0;
	out->unnamed = 0;
	free(out->tmp);
	free(out->path);
	out->tmp = out->path = NULL;
}

const char *graft_output_tmp_path(const struct graft_output *out)
{
	return out->unnamed ? NULL : out->tmp;
}
