/*
 * read.c: a model read from a file, a pipe or memory, in whichever format it is.
 *
 * As libarchive chooses a format, every reader bids on the input's first bytes: how
 * sure it is that they are its format, 0 for not at all; the highest bid reads.  A
 * .graft archive (tar, or a compressed stream) has magic bytes and bids high.  ONNX is
 * protobuf, which has no magic number: it bids low on anything and so reads what no
 * other reader claims.  A new format is one entry in readers[].
 *
 * Files are mapped where they can be (a .graft archive's tensors are then read in place);
 * pipes are read member by member where the format allows (a .graft archive), else whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/format.h"

/* Bytes a reader sees to bid: a tar header's magic lies at offset 257. */
#define BID_BYTES 512

struct reader {
	const char *name;
	/* How sure the reader is that the input starting with head is its format: 0 not. */
	int (*bid)(const void *head, size_t len);
	/* Reads a whole input held in buf; *kept set: m keeps buf (its tensors point into
	 * it), else the caller frees it. */
	int (*read_buffer)(struct graft_model *m, const void *buf, size_t len,
			   const char *basedir, int *kept, struct graft_err *err);
	/* Reads the rest of a pipe as it arrives, head (its first head_len bytes) already
	 * read; NULL where the format is read whole (read_buffer, after the rest). */
	int (*read_stream)(struct graft_model *m, int fd, const void *head, size_t head_len,
			   struct graft_err *err);
};

static int graft_bid(const void *head, size_t len)
{
	return archive_detect(head, len) ? 100 : 0;
}

static int graft_read_buffer(struct graft_model *m, const void *buf, size_t len,
			     const char *basedir, int *kept, struct graft_err *err)
{
	(void)basedir;
	*kept = 1;
	m->from_archive = 1;
	return archive_read_graft(m, buf, len, err);
}

static int graft_read_stream(struct graft_model *m, int fd, const void *head, size_t head_len,
			     struct graft_err *err)
{
	m->from_archive = 1;
	return archive_read_graft_stream(m, fd, head, head_len, err);
}

static int onnx_bid(const void *head, size_t len)
{
	(void)head;
	(void)len;
	return 1;
}

static int onnx_read_buffer(struct graft_model *m, const void *buf, size_t len,
			    const char *basedir, int *kept, struct graft_err *err)
{
	*kept = 0;      /* protobuf-c copies what it keeps */
	return onnx_import(m, buf, len, basedir, err);
}

/* ONNX's textual syntax (onnx_text.c) is text: it bids above binary ONNX on anything
 * that reads as text and starts as the syntax does. */
static int onnx_text_bid(const void *head, size_t len)
{
	return onnx_text_detect(head, len) ? 10 : 0;
}

static int onnx_text_read_buffer(struct graft_model *m, const void *buf, size_t len,
				 const char *basedir, int *kept, struct graft_err *err)
{
	void *pb;
	size_t pb_len;
	int rc;

	*kept = 0;
	if ((rc = onnx_text_parse(buf, len, &pb, &pb_len, err)))
		return rc;
	rc = onnx_import(m, pb, pb_len, basedir, err);
	free(pb);
	return rc;
}

/* A list of dataset shards is no model: it is read as one dataset by
 * graft_dataset_read, and anything reading it as a model says so. */
static int shards_bid(const void *head, size_t len)
{
	size_t n = sizeof(GRAFT_SHARDS_LINE) - 1;
	return len > n && memcmp(head, GRAFT_SHARDS_LINE, n) == 0 ? 100 : 0;
}

static int shards_read_buffer(struct graft_model *m, const void *buf, size_t len,
			      const char *basedir, int *kept, struct graft_err *err)
{
	(void)m;
	(void)buf;
	(void)len;
	(void)basedir;
	*kept = 0;
	return graft_err_set(err, GRAFT_EFORMAT, "a list of dataset shards (" GRAFT_SHARDS_LINE
			     "), not a model: the dataset options of graft-train, graft-eval, "
			     "graft-data graft... read it");
}

static const struct reader readers[] = {
	{"graft", graft_bid, graft_read_buffer, graft_read_stream},
	{"shards", shards_bid, shards_read_buffer, NULL},
	{"onnx-text", onnx_text_bid, onnx_text_read_buffer, NULL},
	{"onnx", onnx_bid, onnx_read_buffer, NULL},
};

/* The reader that bids highest on head. */
static const struct reader *choose_reader(const void *head, size_t len)
{
	const struct reader *best = NULL;
	int best_bid = 0;

	for (size_t i = 0; i < sizeof(readers) / sizeof(readers[0]); i++) {
		int bid = readers[i].bid(head, len);
		if (bid > best_bid) {
			best = &readers[i];
			best_bid = bid;
		}
	}
	return best;
}

static void release_buffer(void *buf, size_t len, int mapped)
{
	if (mapped)
		munmap(buf, len);
	else
		free(buf);
}

/* Takes ownership of buf (mapped or heap) and reads it in the format it bids for. */
static int read_buffer(struct graft_model *m, void *buf, size_t len, int mapped,
		       const char *basedir, struct graft_err *err)
{
	const struct reader *r = len ? choose_reader(buf, len < BID_BYTES ? len : BID_BYTES) : NULL;
	int kept = 0, rc;

	if (!r) {
		release_buffer(buf, len, mapped);
		return graft_err_set(err, GRAFT_EFORMAT, len ? "no known format" : "empty input");
	}
	m->buf_mapped = mapped;         /* (what the archive reader checks in place) */
	rc = r->read_buffer(m, buf, len, basedir, &kept, err);
	if (kept) {
		m->buf = buf;
		m->buf_len = len;
	} else {
		m->buf_mapped = 0;
		release_buffer(buf, len, mapped);
	}
	return rc;
}

/* Reads up to len bytes, fewer only at the end of the input. */
static ssize_t read_head(int fd, unsigned char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* A pipe: read as it arrives where the format allows, else whole (protobuf-c unpacks
 * from memory). */
static int read_stream(struct graft_model *m, int fd, const char *basedir,
		       struct graft_err *err)
{
	unsigned char head[BID_BYTES];
	ssize_t n = read_head(fd, head, sizeof(head));
	const struct reader *r;
	void *all;
	size_t len;
	int rc;

	if (n < 0)
		return graft_err_set(err, GRAFT_EIO, "read failed: %s", strerror(errno));
	if (n == 0)
		return graft_err_set(err, GRAFT_EFORMAT, "empty input");
	r = choose_reader(head, (size_t)n);
	if (r && r->read_stream)
		return r->read_stream(m, fd, head, (size_t)n, err);
	if ((rc = io_read_fd_after(fd, head, (size_t)n, &all, &len, err)))
		return rc;
	return read_buffer(m, all, len, 0, basedir, err);
}

int graft_model_read(struct graft_model **out, const char *path, unsigned flags,
		     struct graft_err *err)
{
	int use_stdin = !path || strcmp(path, "-") == 0;
	const char *name = use_stdin ? "<stdin>" : path;
	char *dir = NULL;
	void *buf;
	size_t len;
	int fd, rc;
	struct graft_model *m;

	*out = NULL;
	fd = use_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return graft_err_set(err, GRAFT_EIO, "%s: %s", name, strerror(errno));
	if (!use_stdin) {
		char *copy = strdup(path);
		dir = copy ? strdup(dirname(copy)) : NULL;
		free(copy);
	}
	if ((!use_stdin && !dir) || !(m = model_new())) {
		free(dir);
		if (!use_stdin)
			close(fd);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if (!(flags & GRAFT_READ_NO_MAP) && io_map_fd(fd, &buf, &len, err) == 0)
		rc = read_buffer(m, buf, len, 1, dir, err);
	else
		rc = read_stream(m, fd, dir, err);
	if (!use_stdin)
		close(fd);
	free(dir);
	if (rc) {
		graft_model_free(m);
		return graft_err_prefix(err, name);
	}
	*out = m;
	return 0;
}

int graft_model_read_memory(struct graft_model **out, const void *buf, size_t len,
			    const char *basedir, const char *name, struct graft_err *err)
{
	struct graft_model *m;
	void *copy;
	int rc;

	*out = NULL;
	if (!(m = model_new()) || !(copy = malloc(len ? len : 1))) {
		free(m);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	memcpy(copy, buf, len);
	if ((rc = read_buffer(m, copy, len, 0, basedir, err))) {
		graft_model_free(m);
		return name ? graft_err_prefix(err, name) : rc;
	}
	*out = m;
	return 0;
}
