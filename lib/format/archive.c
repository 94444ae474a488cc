/*
 * archive.c: the .graft container, through libarchive.
 *
 * An uncompressed tar (pax where needed), written and read strictly in order so that it
 * flows through pipes: "manifest" first, then "model.pb" (the skeleton), then one member
 * per tensor in manifest order.  Every member is checked against the manifest's size and
 * XXH64, and a stream that ends before the last member is an error, never a smaller
 * model.  Members are written with mtime 0 and no owner, so the same model gives the
 * same bytes.
 *
 * Reading happens from memory (a mapped file, or a pipe read to its end): for an
 * uncompressed archive libarchive hands back pointers into that memory, and tensors
 * point there instead of being copied.  Tar puts member data at 512-byte multiples, so
 * those pointers are aligned for any element type.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/format.h"

/* Whether the 512-byte block b is a tar header: "ustar" at 257 and a checksum that adds
 * up (unsigned, or signed as some old tars summed), as libarchive itself requires.  The
 * magic alone is not enough: an ONNX model can hold "ustar" at offset 257. */
static int tar_header(const unsigned char *b)
{
	unsigned long want = 0, sum = 0;
	long ssum = 0;
	int i = 148, digits = 0;

	if (memcmp(b + 257, "ustar", 5) != 0)
		return 0;
	while (i < 156 && (b[i] == ' ' || b[i] == 0))
		i++;
	for (; i < 156 && b[i] >= '0' && b[i] <= '7'; i++, digits++)
		want = want * 8 + (unsigned long)(b[i] - '0');
	if (!digits)
		return 0;
	for (i = 0; i < 512; i++) {
		unsigned char c = i >= 148 && i < 156 ? ' ' : b[i];
		sum += c;
		ssum += (signed char)c;
	}
	return sum == want || (unsigned long)ssum == want;
}

int archive_detect(const void *buf, size_t len)
{
	const unsigned char *b = buf;

	if (len >= 512 && tar_header(b))
		return 1;
	if (len >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
		return 1;       /* zstd */
	if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b)
		return 1;       /* gzip: libarchive reads it, so accept it */
	if (len >= 6 && memcmp(b, "\xfd" "7zXZ", 5) == 0)
		return 1;       /* xz */
	return 0;
}

/* ---- writing ---- */

struct sink {
	int fd;
	struct graft_err *err;
	int failed;
};

static la_ssize_t sink_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
	struct sink *s = ctx;

	if (graft_write_all(s->fd, buf, len, s->err)) {
		s->failed = 1;
		archive_set_error(a, EIO, "write failed");
		return -1;
	}
	return (la_ssize_t)len;
}

static int write_member(struct archive *a, struct sink *s, const char *name, const void *data,
			size_t len, struct graft_err *err)
{
	struct archive_entry *e = archive_entry_new();
	const char *p = data;

	if (!e)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	archive_entry_set_pathname(e, name);
	archive_entry_set_size(e, (la_int64_t)len);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_mtime(e, 0, 0);
	if (archive_write_header(a, e) != ARCHIVE_OK) {
		archive_entry_free(e);
		goto fail;
	}
	archive_entry_free(e);
	while (len > 0) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : len;
		la_ssize_t n = archive_write_data(a, p, chunk);
		if (n <= 0)
			goto fail;
		p += n;
		len -= (size_t)n;
	}
	return 0;
fail:
	if (s->failed)
		return err->code;
	return graft_err_set(err, GRAFT_EIO, "writing archive member '%s': %s", name,
			     archive_error_string(a));
}

int graft_model_write_graft(const struct graft_model *m, int fd,
			    const struct graft_write_opts *opts, struct graft_err *err)
{
	struct sink sink = {.fd = fd, .err = err};
	uint64_t *sums = calloc(m->n_tensors + 1, sizeof(*sums));
	void *skel = NULL;
	char *manifest = NULL, member[32];
	size_t skel_len = 0, manifest_len = 0;
	struct archive *a = NULL;
	int rc;

	if (!sums)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_tensors; i++)
		sums[i] = graft_xxh64(m->tensors[i].data, m->tensors[i].nbytes, 0);
	if ((rc = onnx_skeleton_pack(m, &skel, &skel_len, err)) ||
	    (rc = manifest_write(m, sums, graft_xxh64(skel, skel_len, 0), skel_len, &manifest,
				 &manifest_len, err)))
		goto out;
	if (!(a = archive_write_new())) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		goto out;
	}
	/* pax only where ustar cannot say it (long names, members over 8 GiB); the last
	 * block unpadded, which zstd readers need and nobody else minds. */
	if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    (opts && opts->zstd && archive_write_add_filter_zstd(a) != ARCHIVE_OK) ||
	    archive_write_set_bytes_per_block(a, 1 << 16) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
	    archive_write_open(a, &sink, NULL, sink_write, NULL) != ARCHIVE_OK) {
		rc = sink.failed ? err->code
				 : graft_err_set(err, GRAFT_EIO, "cannot start archive: %s",
						 archive_error_string(a));
		goto out;
	}
	if ((rc = write_member(a, &sink, "manifest", manifest, manifest_len, err)) ||
	    (rc = write_member(a, &sink, "model.pb", skel, skel_len, err)))
		goto out;
	for (size_t i = 0; i < m->n_tensors; i++) {
		manifest_member_name(i, member, sizeof(member));
		if ((rc = write_member(a, &sink, member, m->tensors[i].data, m->tensors[i].nbytes,
				       err)))
			goto out;
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		rc = sink.failed ? err->code
				 : graft_err_set(err, GRAFT_EIO, "finishing archive: %s",
						 archive_error_string(a));
out:
	if (a)
		archive_write_free(a);
	free(sums);
	free(skel);
	free(manifest);
	return rc;
}

/* ---- reading ---- */

/* Reads the current member's data.  When it lies whole and contiguous inside
 * [base, base + base_len) (an uncompressed archive in memory), *data points there and
 * *owned is 0; otherwise it is copied into a new buffer and *owned is 1.  The copy grows
 * with the data that arrives, so that a size the manifest and tar header merely claim
 * costs no memory before the bytes are there. */
static int read_member(struct archive *a, const char *name, size_t expect, const void *base,
		       size_t base_len, void **data, int *owned, struct graft_err *err)
{
	const void *block;
	size_t size, got = 0, cap = 0;
	la_int64_t offset;
	char *copy = NULL;
	int r;

	*data = NULL;
	*owned = 0;
	while ((r = archive_read_data_block(a, &block, &size, &offset)) == ARCHIVE_OK) {
		if (size == 0)
			continue;
		if ((uint64_t)offset != got || got + size > expect) {
			free(copy);
			*data = NULL;
			return graft_err_set(err, GRAFT_EFORMAT, "member '%s' is larger than the "
					     "manifest says", name);
		}
		if (got == 0 && size == expect && base && (const char *)block >= (const char *)base &&
		    (const char *)block + size <= (const char *)base + base_len) {
			*data = (void *)block;
			got = size;
			continue;
		}
		if (got + size > cap) {
			size_t n = cap ? cap : 1 << 16;
			while (n < got + size)
				n *= 2;
			if (n > expect)
				n = expect;
			char *grown = realloc(copy, n);
			if (!grown) {
				free(copy);
				*data = NULL;
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			}
			if (!copy && got)       /* first block was zero-copy but more came */
				memcpy(grown, *data, got);
			copy = grown;
			cap = n;
		}
		memcpy(copy + got, block, size);
		got += size;
	}
	if (r != ARCHIVE_EOF) {
		free(copy);
		*data = NULL;
		return graft_err_set(err, GRAFT_EFORMAT, "archive is truncated or damaged in "
				     "member '%s' (%s)", name, archive_error_string(a)
				     ? archive_error_string(a) : "read failed");
	}
	if (got != expect) {
		free(copy);
		*data = NULL;
		return graft_err_set(err, GRAFT_EFORMAT, "member '%s' is %zu bytes, the manifest "
				     "says %zu (truncated?)", name, got, expect);
	}
	if (copy) {
		*data = copy;
		*owned = 1;
	}
	return 0;
}

/* Moves to the next member and checks that it is the expected one. */
static int next_member(struct archive *a, const char *expect, int64_t *size,
		       struct graft_err *err)
{
	struct archive_entry *e;
	int r = archive_read_next_header(a, &e);

	if (r == ARCHIVE_EOF)
		return graft_err_set(err, GRAFT_EFORMAT, "archive ends before member '%s' "
				     "(truncated?)", expect);
	if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
		return graft_err_set(err, GRAFT_EFORMAT, "archive is damaged before member '%s': %s",
				     expect, archive_error_string(a));
	if (strcmp(archive_entry_pathname(e), expect) != 0)
		return graft_err_set(err, GRAFT_EFORMAT, "expected member '%s', found '%s'", expect,
				     archive_entry_pathname(e));
	if (archive_entry_filetype(e) != AE_IFREG)
		return graft_err_set(err, GRAFT_EFORMAT, "member '%s' is not a regular file", expect);
	*size = archive_entry_size(e);
	return 0;
}

/* Members this large in a mapped file are checked a chunk at a time, each let go from
 * memory once read (xxh64_mapped): a dataset larger than memory can be read. */
#define CHECK_MAPPED_MIN ((size_t)16 << 20)

/* Reads member name (nbytes, checksum sum) into *data: a view into base (the archive in
 * memory, mapped from its file when mapped) where it lies there whole, else a copy. */
static int read_checked(struct archive *a, const char *name, size_t nbytes, uint64_t sum,
			const void *base, size_t base_len, int mapped, void **data, int *owned,
			struct graft_err *err)
{
	int64_t size = 0;
	int rc;

	if ((rc = next_member(a, name, &size, err)))
		return rc;
	if (size != (int64_t)nbytes)
		return graft_err_set(err, GRAFT_EFORMAT, "member '%s' is %" PRId64 " bytes, the "
				     "manifest says %zu", name, size, nbytes);
	if ((rc = read_member(a, name, nbytes, base, base_len, data, owned, err)))
		return rc;
	if ((mapped && !*owned && nbytes >= CHECK_MAPPED_MIN
	     ? xxh64_mapped(*data, nbytes, 0, base, base_len) : graft_xxh64(*data, nbytes, 0))
	    != sum) {
		if (*owned)
			free(*data);
		*data = NULL;
		return graft_err_set(err, GRAFT_EFORMAT, "member '%s' is corrupted (checksum "
				     "mismatch)", name);
	}
	return 0;
}

/* Where an archive's bytes come from: memory, or a pipe whose first bytes were already
 * read to detect the format. */
struct stream_src {
	int fd;
	const void *head;
	size_t head_len;
	int head_done;
	uint8_t block[1 << 20];
};

static la_ssize_t stream_read(struct archive *a, void *ctx, const void **buf)
{
	struct stream_src *s = ctx;
	ssize_t n;

	if (!s->head_done) {
		s->head_done = 1;
		if (s->head_len) {
			*buf = s->head;
			return (la_ssize_t)s->head_len;
		}
	}
	do
		n = read(s->fd, s->block, sizeof(s->block));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		archive_set_error(a, errno, "read failed: %s", strerror(errno));
		return -1;
	}
	*buf = s->block;
	return n;
}

static struct archive *new_reader(void)
{
	struct archive *a = archive_read_new();

	if (a) {
		archive_read_support_filter_all(a);
		archive_read_support_format_tar(a);
	}
	return a;
}

/* Reads the members of an opened archive into m.  Tensor data inside [base, base +
 * base_len) is used in place; anything else is copied. */
static int read_members(struct graft_model *m, struct archive *a, const void *buf, size_t len,
			struct graft_err *err)
{
	struct manifest mf = {0};
	struct archive_entry *e;
	char member[32];
	void *data = NULL;
	int64_t size = 0;
	int owned = 0, rc;

	if ((rc = next_member(a, "manifest", &size, err)))
		goto out;
	if (size <= 0 || size > GRAFT_MAX_MANIFEST_BYTES) {
		rc = graft_err_set(err, GRAFT_EFORMAT, "manifest size %" PRId64 " is implausible",
				   size);
		goto out;
	}
	if ((rc = read_member(a, "manifest", (size_t)size, NULL, 0, &data, &owned, err)))
		goto out;
	rc = manifest_parse(m, &mf, data, (size_t)size, err);
	free(data);
	data = NULL;
	if (rc)
		goto out;
	if (!mf.skeleton_nbytes) {
		rc = graft_err_set(err, GRAFT_EFORMAT, "manifest names no skeleton");
		goto out;
	}
	if (mf.skeleton_nbytes > INT32_MAX) {       /* protobuf's own limit */
		rc = graft_err_set(err, GRAFT_EFORMAT, "skeleton of %zu bytes is over protobuf's "
				   "2 GiB limit", mf.skeleton_nbytes);
		goto out;
	}
	if ((rc = read_checked(a, "model.pb", mf.skeleton_nbytes, mf.skeleton_checksum, NULL, 0, 0,
			       &data, &owned, err)))
		goto out;
	rc = onnx_skeleton_unpack(m, data, mf.skeleton_nbytes, err);
	free(data);
	data = NULL;
	if (rc)
		goto out;
	for (size_t i = 0; i < m->n_tensors; i++) {
		struct tensor_rec *t = &m->tensors[i];
		manifest_member_name(i, member, sizeof(member));
		if (strcmp(member, mf.entries[i].member) != 0) {
			rc = graft_err_set(err, GRAFT_EFORMAT, "manifest names member '%s' where "
					   "'%s' belongs", mf.entries[i].member, member);
			goto out;
		}
		if ((rc = read_checked(a, member, t->nbytes, mf.entries[i].checksum, buf, len,
				       m->buf_mapped, &data, &owned, err)))
			goto out;
		t->data = data;
		t->owner = owned ? OWNER_HEAP : OWNER_MAP;
		data = NULL;
	}
	switch (archive_read_next_header(a, &e)) {
	case ARCHIVE_EOF:
		break;
	case ARCHIVE_OK:
	case ARCHIVE_WARN:
		rc = graft_err_set(err, GRAFT_EFORMAT, "unexpected member '%s' after the last tensor",
				   archive_entry_pathname(e));
		goto out;
	default:
		rc = graft_err_set(err, GRAFT_EFORMAT, "archive is damaged after the last tensor: %s",
				   archive_error_string(a));
		goto out;
	}
	if (!(rc = onnx_bind_slots(m, err)))
		rc = roles_find_aliases(m, err);
out:
	manifest_release(&mf, m->n_tensors);
	return rc;
}

int archive_read_graft(struct graft_model *m, const void *buf, size_t len,
		       struct graft_err *err)
{
	struct archive *a = new_reader();
	int rc;

	if (!a)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (archive_read_open_memory(a, buf, len) != ARCHIVE_OK)
		rc = graft_err_set(err, GRAFT_EFORMAT, "not a .graft archive: %s",
				   archive_error_string(a));
	else
		rc = read_members(m, a, buf, len, err);
	archive_read_free(a);
	return rc;
}

int archive_read_graft_stream(struct graft_model *m, int fd, const void *head,
			      size_t head_len, struct graft_err *err)
{
	struct archive *a = new_reader();
	struct stream_src *src = malloc(sizeof(*src));
	int rc;

	if (!a || !src) {
		if (a)
			archive_read_free(a);
		free(src);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	src->fd = fd;
	src->head = head;
	src->head_len = head_len;
	src->head_done = 0;
	if (archive_read_open(a, src, NULL, stream_read, NULL) != ARCHIVE_OK)
		rc = graft_err_set(err, GRAFT_EFORMAT, "not a .graft archive: %s",
				   archive_error_string(a));
	else
		rc = read_members(m, a, NULL, 0, err);
	archive_read_free(a);
	free(src);
	return rc;
}
