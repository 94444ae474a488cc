/*
 * external.c: ONNX external data: tensors whose payload lives in a file beside the model
 * (data_location EXTERNAL, with location, offset and length entries).  The file is
 * opened inside the model's folder only: openat2's RESOLVE_BENEATH where the kernel has
 * it, else the opened descriptor's real path is checked; anything but a regular file
 * (a FIFO, a device, the folder itself) is refused before a byte is read.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/syscall.h>

#include <linux/openat2.h>

#include "format/format.h"


/* O_NONBLOCK: opening a FIFO would otherwise wait for a writer that may never come (the
 * caller refuses anything but a regular file, which the flag does not affect). */
#define EXTERNAL_OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* Opens loc inside dir with openat2's RESOLVE_BENEATH: the kernel refuses (EXDEV) any
 * step of the walk, symlinks included, that would leave dir, as it takes the step, so
 * no path swapped between a check and the open can lead outside.  -1 with errno
 * ENOSYS where openat2 is missing (Linux before 5.6, or filtered by seccomp). */
int external_no_openat2;

static int open_beneath(const char *dir, const char *loc)
{
#ifdef SYS_openat2
	if (external_no_openat2) {
		errno = ENOSYS;
		return -1;
	}
	struct open_how how = {.flags = EXTERNAL_OPEN_FLAGS,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd, e;

	if (dfd < 0)
		return -1;
	fd = (int)syscall(SYS_openat2, dfd, loc, &how, sizeof(how));
	e = errno;
	close(dfd);
	if (fd < 0 && (e == EPERM || e == EINVAL || e == E2BIG))
		e = ENOSYS;     /* a seccomp filter, or a kernel that does not know the flags */
	errno = e;
	return fd;
#else
	(void)dir;
	(void)loc;
	errno = ENOSYS;
	return -1;
#endif
}

/* Where openat2 is missing: resolve loc and check it, open it, then check again where
 * the descriptor really leads (/proc/self/fd), so that a symlink swapped between the
 * first check and the open is still caught before a byte is read.  The open itself may
 * then have touched a file outside (a FIFO or device); the caller refuses those. */
static int open_checked(const char *real_base, const char *path)
{
	char real_path[PATH_MAX], link[64], *opened;
	size_t nb = strlen(real_base);
	int fd;

	if (!realpath(path, real_path))
		return -1;
	if (strncmp(real_path, real_base, nb) != 0 || (real_path[nb] != '/' && nb > 1)) {
		errno = EXDEV;
		return -1;
	}
	if ((fd = open(real_path, EXTERNAL_OPEN_FLAGS)) < 0)
		return -1;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((opened = realpath(link, NULL))) {
		int inside = strncmp(opened, real_base, nb) == 0 && (opened[nb] == '/' || nb == 1);
		free(opened);
		if (!inside) {
			close(fd);
			errno = EXDEV;
			return -1;
		}
	}
	return fd;
}

/* Checks an external-data location and opens it: relative, no "..", and, symlinks
 * followed, still inside basedir, at the moment of the open. */
static int open_external(const char *basedir, const char *loc, const char *tensor,
			 struct graft_err *err)
{
	char *path, real_base[PATH_MAX];
	int fd, e;

	if (!basedir)
		return graft_err_set(err, GRAFT_EUNSUPPORTED,
				     "tensor '%s': external data '%s' cannot be resolved without "
				     "the model's folder (read the model from a file)", tensor, loc);
	if (!*loc || loc[0] == '/')
		return graft_err_set(err, GRAFT_EFORMAT,
				     "tensor '%s': external data location '%s' is not a relative path",
				     tensor, loc);
	for (const char *p = loc; *p; ) {
		size_t n = strcspn(p, "/\\");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return graft_err_set(err, GRAFT_EFORMAT,
					     "tensor '%s': external data location '%s' escapes the "
					     "model's folder", tensor, loc);
		p += n;
		p += *p != 0;
	}
	if (!realpath(basedir, real_base))
		return graft_err_set(err, GRAFT_EIO, "%s: %s", basedir, strerror(errno));
	fd = open_beneath(real_base, loc);
	if (fd < 0 && errno == ENOSYS) {
		if (!(path = malloc(strlen(real_base) + strlen(loc) + 2)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		sprintf(path, "%s/%s", real_base, loc);
		fd = open_checked(real_base, path);
		e = errno;
		free(path);
		errno = e;
	}
	if (fd < 0 && errno == EXDEV)
		return graft_err_set(err, GRAFT_EFORMAT,
				     "tensor '%s': external data '%s' escapes the model's folder",
				     tensor, loc);
	if (fd < 0)
		return graft_err_set(err, GRAFT_EIO, "tensor '%s': external data '%s': %s",
				     tensor, loc, strerror(errno));
	return fd;
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*v = x;
	return 0;
}

static void free_external_entries(Onnx__TensorProto *tp)
{
	for (size_t i = 0; i < tp->n_external_data; i++)
		protobuf_c_message_free_unpacked(&tp->external_data[i]->base, NULL);
	free(tp->external_data);
	tp->external_data = NULL;
	tp->n_external_data = 0;
}

/* Loads an external tensor's bytes into raw_data, as onnx.load does: afterwards the
 * tensor has data_location DEFAULT (explicitly) and no external_data entries. */
int external_load(Onnx__TensorProto *tp, const char *basedir, struct graft_err *err)
{
	const char *loc = NULL, *off_s = NULL, *len_s = NULL;
	uint64_t off = 0, len = 0;
	struct stat st;
	int fd, rc = 0;
	char *buf = NULL;

	for (size_t i = 0; i < tp->n_external_data; i++) {
		const Onnx__StringStringEntryProto *e = tp->external_data[i];
		if (!e->key)
			continue;
		if (strcmp(e->key, "location") == 0)
			loc = e->value;
		else if (strcmp(e->key, "offset") == 0)
			off_s = e->value;
		else if (strcmp(e->key, "length") == 0)
			len_s = e->value;
	}
	if (!loc)
		return graft_err_set(err, GRAFT_EFORMAT, "tensor '%s': external data has no location",
				     onnx_tensor_label(tp));
	if ((off_s && parse_u64(off_s, &off)) || (len_s && parse_u64(len_s, &len)))
		return graft_err_set(err, GRAFT_EFORMAT,
				     "tensor '%s': external data offset or length is not a number",
				     onnx_tensor_label(tp));
	fd = open_external(basedir, loc, onnx_tensor_label(tp), err);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = graft_err_set(err, GRAFT_EIO, "tensor '%s': external data '%s' is not a file",
				   onnx_tensor_label(tp), loc);
		goto out;
	}
	if (!len_s)
		len = off <= (uint64_t)st.st_size ? (uint64_t)st.st_size - off : 0;
	if (off > (uint64_t)st.st_size || len > (uint64_t)st.st_size - off) {
		rc = graft_err_set(err, GRAFT_EFORMAT,
				   "tensor '%s': external data '%s' is shorter than offset %" PRIu64
				   " + length %" PRIu64, onnx_tensor_label(tp), loc, off, len);
		goto out;
	}
	/* External data is raw: what a tensor of fixed-size elements needs follows from its
	 * dims (checked by validate_model), and nothing else is read into memory. */
	size_t esize = tp->has_data_type ? graft_dtype_size(tp->data_type) : 0;
	uint64_t numel;
	if (esize && !dims_numel(tp->dims, (int)tp->n_dims, &numel) &&
	    (numel > UINT64_MAX / esize || len != numel * esize)) {
		rc = graft_err_set(err, GRAFT_EFORMAT,
				   "tensor '%s': external data '%s' holds %" PRIu64 " bytes, its "
				   "dims and type (%s) need %" PRIu64, onnx_tensor_label(tp), loc, len,
				   graft_dtype_name(tp->data_type), numel * esize);
		goto out;
	}
	buf = malloc(len ? len : 1);
	if (!buf) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory loading external data");
		goto out;
	}
	for (uint64_t done = 0; done < len; ) {
		ssize_t n = pread(fd, buf + done, len - done > (1u << 30) ? (1u << 30) : len - done,
				  (off_t)(off + done));
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			free(buf);
			rc = graft_err_set(err, GRAFT_EIO, "tensor '%s': reading external data '%s' failed",
					   onnx_tensor_label(tp), loc);
			goto out;
		}
		done += (uint64_t)n;
	}
	free_external_entries(tp);
	free(tp->raw_data.data);
	tp->raw_data.data = (uint8_t *)buf;
	tp->raw_data.len = len;
	tp->has_raw_data = 1;
	tp->has_data_location = 1;
	tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
out:
	close(fd);
	return rc;
}

/* Visits every TensorProto that onnx.load would resolve: initializers and attribute
 * tensors of every graph, subgraphs included. */
