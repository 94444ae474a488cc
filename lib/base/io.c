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
 * while it is written, so that a tool killed with SIGKILL (which no handler sees) leaves
 * nothing behind.  A new target is linked into place directly and never has another
 * name.  Replacing a file takes a rename, and rename needs a name: the file is linked
 * as TARGET.tmpXXXXXX just before the rename, so a kill can land in that moment and
 * leave the name behind.  Where O_TMPFILE is missing, that name exists for the whole
 * write.  Either way the file is locked (flock) from before it has a name until it is in
 * place, and the lock ends with its writer however that ends: the next writer of the
 * target removes the unlocked TARGET.tmpXXXXXX files it finds beside it, orphans of
 * writers that were killed.
 */
#define _GNU_SOURCE     /* O_TMPFILE, linkat's AT_SYMLINK_FOLLOW */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"

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

/* Reads all of fd, after the head_len bytes at head, into a new buffer; an input of
 * more than max bytes is refused ("larger than N MiB") once its max + 1st byte arrives,
 * so that no more than that is ever held. */
static int read_fd(int fd, const void *head, size_t head_len, size_t max, void **buf,
		   size_t *len, struct graft_err *err)
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
		if (used > max) {
			free(b);
			return graft_err_set(err, GRAFT_EUNSUPPORTED, "larger than %zu MiB",
					     max >> 20);
		}
		if (used == cap) {
			char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(b, cap * 2);
			if (!nb) {
				free(b);
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory reading input");
			}
			b = nb;
			cap *= 2;
		}
		size_t room = cap - used;
		if (max < SIZE_MAX && room > max + 1 - used)
			room = max + 1 - used;
		ssize_t n = read(fd, b + used, room);
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

int graft_read_fd(int fd, void **buf, size_t *len, struct graft_err *err)
{
	return read_fd(fd, NULL, 0, SIZE_MAX, buf, len, err);
}

int graft_read_fd_max(int fd, size_t max, void **buf, size_t *len, struct graft_err *err)
{
	return read_fd(fd, NULL, 0, max, buf, len, err);
}

/* A regular file of st.st_size bytes read into a buffer of exactly that size (plus the
 * NUL): reading many small files (a folder of images) costs their sizes, not a growing
 * buffer's each.  1 when fd is no regular file, or changed size meanwhile. */
static int read_sized(int fd, char **buf, size_t *len, struct graft_err *err)
{
	struct stat st;
	size_t got = 0;
	char *b;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size >= SIZE_MAX)
		return 1;
	if (!(b = malloc((size_t)st.st_size + 1)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	while (got <= (size_t)st.st_size) {     /* one byte more: the end must come */
		ssize_t n = read(fd, b + got, (size_t)st.st_size + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(b);
			return graft_err_set(err, GRAFT_EIO, "read failed: %s", strerror(errno));
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got != (size_t)st.st_size) {        /* it changed size: read it as a stream */
		free(b);
		return lseek(fd, 0, SEEK_SET) == 0 ? 1 : graft_err_set(err, GRAFT_EIO, "the file "
			"changed size while it was read");
	}
	b[got] = 0;
	*buf = b;
	*len = got;
	return 0;
}

int io_read_file(const char *path, char **buf, size_t *len, struct graft_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	void *p;
	char *q;
	int rc;

	*buf = NULL;
	if (fd < 0)
		return graft_err_set(err, GRAFT_EIO, "%s: %s", path, strerror(errno));
	if ((rc = read_sized(fd, buf, len, err)) <= 0) {
		close(fd);
		return rc ? graft_err_prefix(err, path) : 0;
	}
	rc = graft_read_fd(fd, &p, len, err);
	close(fd);
	if (rc)
		return graft_err_prefix(err, path);
	if (!(q = realloc(p, *len + 1))) {
		free(p);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	q[*len] = 0;
	*buf = q;
	return 0;
}

int io_read_fd_after(int fd, const void *head, size_t head_len, void **buf, size_t *len,
		     struct graft_err *err)
{
	return read_fd(fd, head, head_len, SIZE_MAX, buf, len, err);
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

/* A fault on a file mapping maps the page cache's pages around it too, in aligned blocks
 * of the kernel's fault_around_bytes (64 KiB by default): pages are let go in such
 * blocks, so that what one read mapped beside it goes too. */
#define DROP_BLOCK ((uintptr_t)64 << 10)

void io_drop_pages(const void *map, size_t map_len, const void *p, size_t n)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t block = page < DROP_BLOCK ? DROP_BLOCK : page;
	uintptr_t start = (uintptr_t)p & ~(block - 1);
	uintptr_t end = ((uintptr_t)p + n + block - 1) & ~(block - 1);
	/* never past the mapping's own pages: what lies beside it may be anyone's memory,
	 * which letting go would zero */
	uintptr_t lo = (uintptr_t)map & ~(page - 1);
	uintptr_t hi = ((uintptr_t)map + map_len + page - 1) & ~(page - 1);

	if (start < lo)
		start = lo;
	if (end > hi)
		end = hi;
	if (end > start)
		madvise((void *)start, end - start, MADV_DONTNEED);
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

/* The folder of path ("." for a bare name), as a new string; NULL when out of memory. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* An unnamed file (O_TMPFILE) in path's folder, or -1 where the file system, the kernel
 * or a missing /proc (which linkat needs to name it later) does not allow one. */
static int open_unnamed(const char *path)
{
#ifdef O_TMPFILE
	char *dir = dir_of(path);
	int fd;

	if (!dir || access("/proc/self/fd", X_OK) < 0) {
		free(dir);
		return -1;
	}
	/* The mode is applied with the umask, as creat() would. */
	fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
	free(dir);
	return fd;
#else
	(void)path;
	return -1;
#endif
}

/* Fills the six X of a temporary name "TARGET.tmpXXXXXX" with letters and digits, as
 * mkstemp does; *r is the state, advanced. */
static void fill_tmp_suffix(char *x, uint64_t *r)
{
	static const char digits[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

	for (int i = 0; i < 6; i++, *r /= 62)
		x[i] = digits[*r % 62];
	*r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
}

static uint64_t tmp_seed(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid() << 32 ^
	       (uint64_t)ts.tv_sec;
}

/* 1 if name is a temporary name of target base ("BASE.tmpXXXXXX", or a data file's
 * backup "BASE.tmpXXXXXX.old"): the names this file makes, nothing else. */
static int is_tmp_name_of(const char *name, const char *base)
{
	size_t n = strlen(base);

	if (strncmp(name, base, n) != 0 || strncmp(name + n, ".tmp", 4) != 0)
		return 0;
	name += n + 4;
	for (int i = 0; i < 6; i++)
		if (!isalnum((unsigned char)name[i]))
			return 0;
	return name[6] == '\0' || strcmp(name + 6, ".old") == 0;
}

/* 1 if dirfd/name (AT_FDCWD: a path) is still the file open at fd: not removed or renamed
 * away meanwhile. */
static int still_named(int fd, int dirfd, const char *name)
{
	struct stat held, now;

	return fstat(fd, &held) == 0 && fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
	       now.st_ino == held.st_ino && now.st_dev == held.st_dev;
}

/* Removes dir/name if no living writer holds it: every named temporary file is locked
 * (flock) by its writer from before it has a name until it is renamed into place, and
 * the lock goes with the writer's process, however it ends. */
static void remove_if_orphaned(int dirfd, const char *name)
{
	struct stat st;
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
	    still_named(fd, dirfd, name))       /* not renamed into place meanwhile */
		unlinkat(dirfd, name, 0);
	close(fd);
}

/* Removes the temporary files of path that writers killed without a chance to clean up
 * (SIGKILL, a crash, a power cut) left beside it: the next writer of a target tidies up
 * after the ones before.  Best effort: a folder that cannot be read is left alone. */
static void remove_orphaned_temporaries(const char *path)
{
	char *dir = dir_of(path);
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	DIR *d = dir ? opendir(dir) : NULL;
	struct dirent *e;

	free(dir);
	if (!d)
		return;
	while ((e = readdir(d)))
		if (is_tmp_name_of(e->d_name, base))
			remove_if_orphaned(dirfd(d), e->d_name);
	closedir(d);
}

/* A named temporary file out->tmp (its X filled in), created and locked.  A writer
 * tidying up may remove a file between its creation and its lock (it looks orphaned
 * then): the file is checked to be still in place once locked, and made anew if not. */
static int open_named_locked(struct graft_output *out)
{
	char *x = out->tmp + strlen(out->tmp) - 6;
	uint64_t r = tmp_seed();

	for (int tries = 0; tries < 100; tries++) {
		fill_tmp_suffix(x, &r);
		int fd = open(out->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd < 0) {
			if (errno == EEXIST)
				continue;
			return -1;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && still_named(fd, AT_FDCWD, out->tmp))
			return fd;
		close(fd);
	}
	errno = EEXIST;
	return -1;
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
	remove_orphaned_temporaries(path);
	if ((out->fd = open_unnamed(path)) >= 0) {
		/* locked before it can have a name, so that it never looks orphaned */
		if (flock(out->fd, LOCK_EX) == 0) {
			out->unnamed = 1;
			return 0;
		}
		close(out->fd);
	}
	out->fd = open_named_locked(out);
	if (out->fd < 0) {
		int e = errno;
		free(out->tmp);
		out->tmp = NULL;
		graft_output_abort(out);
		return graft_err_set(err, GRAFT_EIO, "%s: cannot create: %s", path, strerror(e));
	}
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

/* Links an unnamed temporary file under name: 0, or -1 with errno. */
static int link_unnamed(const struct graft_output *out, const char *name)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", out->fd);
	return linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
}

/* Links an unnamed temporary file under a fresh temporary name beside the target, so
 * that it can be renamed over it.  The file is locked, so that the name, which a kill
 * can leave behind in the moment before the rename, is known as orphaned by the next
 * writer of the target. */
static int output_name(struct graft_output *out)
{
	char *x = out->tmp + strlen(out->tmp) - 6;
	uint64_t r = tmp_seed();

	for (int tries = 0; tries < 100; tries++) {
		fill_tmp_suffix(x, &r);
		/* Set first: a signal that lands after the link but before unnamed is cleared
		 * still finds the name to remove (graft_output_tmp_path). */
		out->naming = 1;
		if (link_unnamed(out, out->tmp) == 0) {
			out->unnamed = 0;
			out->naming = 0;
			return 0;
		}
		out->naming = 0;
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

/* Puts a flushed temporary file at its target.  An unnamed file with no target yet is
 * linked there directly, so that it never has a temporary name; otherwise it is named,
 * then renamed over the target.  The file stays open (and locked) until then. */
static int output_place(struct graft_output *out, struct graft_err *err)
{
	if (out->unnamed) {
		if (link_unnamed(out, out->path) == 0) {
			out->unnamed = 0;
			out->renamed = 1;
			return 0;
		}
		if (errno != EEXIST || output_name(out) < 0)
			return output_fail(out, "cannot name the temporary file: ", errno, err);
	}
	if (rename(out->tmp, out->path) < 0)
		return output_fail(out, "cannot rename into place: ", errno, err);
	out->renamed = 1;
	return 0;
}

/* Closes an output put in place and lets go of its names. */
static int output_release(struct graft_output *out, struct graft_err *err)
{
	int rc = out->fd >= 0 ? close(out->fd) : 0, e = errno;

	out->fd = -1;
	free(out->tmp);
	free(out->path);
	out->tmp = out->path = NULL;
	out->renamed = 0;
	if (rc < 0)
		return graft_err_set(err, GRAFT_EIO, "close failed: %s", strerror(e));
	return 0;
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
	if ((rc = output_flush(out, err)) || (rc = output_place(out, err)))
		return rc;
	return output_release(out, err);
}

/* A hard link to path's current file under a temporary name of data's (BASE.tmpXXXXXX.old),
 * opened and locked as temporary files are; NULL when path has no file (or no link can
 * be made: then there is nothing to put back either).  *fd holds the lock. */
static char *backup_old(const struct graft_output *data, int *fd)
{
	char *backup = malloc(strlen(data->tmp) + 5);

	*fd = -1;
	if (!backup)
		return NULL;
	sprintf(backup, "%s.old", data->tmp);
	if (link(data->path, backup) < 0) {
		free(backup);
		return NULL;
	}
	*fd = open(backup, O_RDONLY | O_CLOEXEC);
	if (*fd >= 0)
		(void)flock(*fd, LOCK_EX | LOCK_NB);
	return backup;
}

int graft_output_commit_pair(struct graft_output *data, struct graft_output *model,
			     struct graft_err *err)
{
	char *backup = NULL;
	int rc, backup_fd = -1;

	/* Both flushed first (what a full disk fails), then placed: data, then the model. */
	if ((rc = output_flush(data, err)) || (rc = output_flush(model, err))) {
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
	 * model is in place, so that a failed model placement can put it back. */
	backup = backup_old(data, &backup_fd);
	if ((rc = output_place(data, err))) {
		graft_output_abort(model);
		goto out;
	}
	if (model->tmp && (rc = output_place(model, err))) {
		if (backup && rename(backup, data->path) == 0) {
			free(backup);
			backup = NULL;
		} else if (!backup) {
			unlink(data->path);
		}
		struct graft_err ignored = {0};
		output_release(data, &ignored); /* its file was put back or removed */
		goto out;
	}
	{
		struct graft_err later = {0};
		rc = output_release(data, err);
		if (output_release(model, rc ? &later : err) && !rc)
			rc = GRAFT_EIO;
	}
out:
	if (backup)
		unlink(backup);
	if (backup_fd >= 0)
		close(backup_fd);
	free(backup);
	return rc;
}

void graft_output_abort(struct graft_output *out)
{
	if (out->tmp || out->in_place) {
		if (out->tmp && !out->unnamed && !out->renamed)  /* unnamed: goes with close */
			unlink(out->tmp);
		if (out->fd >= 0)
			close(out->fd);
	}
	out->fd = -1;
	out->in_place = 0;
	out->unnamed = 0;
	out->renamed = 0;
	free(out->tmp);
	free(out->path);
	out->tmp = out->path = NULL;
}

const char *graft_output_tmp_path(const struct graft_output *out)
{
	/* While it is being named, the name may exist already: removing one that does not
	 * is harmless.  Once renamed, tmp names nothing. */
	return (out->unnamed && !out->naming) || out->renamed ? NULL : out->tmp;
}
