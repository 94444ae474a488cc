/*
 * test_archive.c: the .graft container: exact round trips (mapped, piped, zstd),
 * zero-copy reads, determinism, history, and every way a stream can be damaged:
 * truncation anywhere, a flipped byte in any member, a newer version, a bad manifest.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "format/format.h"
#include "testmodel.h"

struct fixture {
	uint8_t *onnx;          /* the original ModelProto bytes */
	size_t onnx_len;
	struct graft_model *m;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	Onnx__ModelProto *mp = tm_tiny_cnn();
	struct graft_err err = {0};

	f->onnx = tm_pack(mp, &f->onnx_len);
	onnx__model_proto__free_unpacked(mp, NULL);
	if (graft_model_read_memory(&f->m, f->onnx, f->onnx_len, NULL, "tiny", &err))
		return -1;
	char *argv[] = {"model.onnx", "--odd arg", "it's"};
	if (graft_model_add_history(f->m, "graft-import", 3, argv, &err))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	graft_model_free(f->m);
	free(f->onnx);
	free(f);
	return 0;
}

/* Writes m as .graft into a temporary file; returns its path (free it). */
static char *write_graft(const struct graft_model *m, int zstd)
{
	char *path = strdup("/tmp/graft-arch-XXXXXX");
	struct graft_write_opts o = {.zstd = zstd};
	struct graft_err err = {0};
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	if (graft_model_write_graft(m, fd, &o, &err))
		fail_msg("%s", err.msg);
	close(fd);
	return path;
}

static uint8_t *export_onnx(const struct graft_model *m, size_t *len)
{
	char path[] = "/tmp/graft-onnx-XXXXXX";
	struct graft_err err = {0};
	int fd = mkstemp(path);

	assert_int_equal(graft_model_write_onnx(m, fd, NULL, &err), 0);
	close(fd);
	uint8_t *b = tm_slurp(path, len);
	unlink(path);
	return b;
}

static void assert_same_onnx(const struct fixture *f, const struct graft_model *m)
{
	size_t len;
	uint8_t *b = export_onnx(m, &len);
	assert_int_equal(len, f->onnx_len);
	assert_memory_equal(b, f->onnx, len);
	free(b);
}

static void test_roundtrip_mapped_and_zero_copy(void **state)
{
	struct fixture *f = *state;
	char *path = write_graft(f->m, 0);
	struct graft_model *m;
	struct graft_err err = {0};
	struct graft_tensor t;

	assert_int_equal(graft_model_read(&m, path, 0, &err), 0);
	assert_true(graft_model_from_archive(m));
	assert_true(m->buf_mapped);
	for (size_t i = 0; i < graft_model_tensor_count(m); i++) {
		graft_model_tensor(m, i, &t);
		/* data points into the mapped file, at a 512-byte boundary */
		assert_true((const char *)t.data >= (const char *)m->buf &&
			    (const char *)t.data < (const char *)m->buf + m->buf_len);
		assert_int_equal(((const char *)t.data - (const char *)m->buf) % 512, 0);
		assert_int_equal(m->tensors[i].owner, OWNER_MAP);
	}
	assert_same_onnx(f, m);
	assert_int_equal(graft_model_history_count(m), 1);
	assert_string_equal(graft_model_history(m, 0),
			    "graft-import model.onnx '--odd arg' 'it'\\''s'");
	graft_model_free(m);
	unlink(path);
	free(path);
}

static void test_roundtrip_streamed(void **state)
{
	struct fixture *f = *state;
	char *path = write_graft(f->m, 0);
	struct graft_model *m;
	struct graft_err err = {0};

	assert_int_equal(graft_model_read(&m, path, GRAFT_READ_NO_MAP, &err), 0);
	assert_false(m->buf_mapped);
	assert_same_onnx(f, m);
	graft_model_free(m);
	unlink(path);
	free(path);
}

/* Notes on the last history entry (what a tool read and measured) survive the archive,
 * and graft_model_provenance puts every entry but the import into the "provenance"
 * metadata, after what it held. */
static void test_history_notes_and_provenance(void **state)
{
	struct fixture *f = *state;
	struct graft_err err = {0};
	struct graft_model *m;
	char *argv[] = {"m.graft", "--data", "d.graft"};
	char *path;

	assert_int_equal(graft_model_note_history(f->m, "data d.graft xxh64:0123456789abcdef",
						  &err), 0);
	assert_int_equal(graft_model_note_history(f->m, "two\nlines", &err), GRAFT_EINVAL);
	assert_int_equal(graft_model_add_history(f->m, "graft-train", 3, argv, &err), 0);
	assert_int_equal(graft_model_note_history(f->m, "val accuracy 90.00% on v.graft", &err), 0);
	path = write_graft(f->m, 0);
	assert_int_equal(graft_model_read(&m, path, 0, &err), 0);
	assert_int_equal(graft_model_history_count(m), 2);
	assert_string_equal(graft_model_history(m, 1), "graft-train m.graft --data d.graft  # val "
			    "accuracy 90.00% on v.graft");
	assert_non_null(strstr(graft_model_history(m, 0), "  # data d.graft xxh64:0123456789abcdef"));
	assert_int_equal(graft_model_set_metadata(m, "provenance", "graft-head x", &err), 0);
	assert_int_equal(graft_model_provenance(m, &err), 0);
	assert_string_equal(graft_model_metadata_value(m, "provenance"),
			    "graft-head x\ngraft-train m.graft --data d.graft  # val accuracy 90.00% "
			    "on v.graft");
	graft_model_free(m);
	unlink(path);
	free(path);
}

static void test_roundtrip_zstd(void **state)
{
	struct fixture *f = *state;
	char *path = write_graft(f->m, 1);
	struct graft_model *m;
	struct graft_err err = {0};
	size_t len;
	uint8_t *b = tm_slurp(path, &len);

	assert_int_equal(b[0], 0x28);   /* zstd magic */
	free(b);
	assert_int_equal(graft_model_read(&m, path, 0, &err), 0);
	assert_same_onnx(f, m);
	assert_int_equal(m->tensors[0].owner, OWNER_HEAP);
	graft_model_free(m);
	unlink(path);
	free(path);
}

static void test_deterministic(void **state)
{
	struct fixture *f = *state;
	char *p1 = write_graft(f->m, 0), *p2 = write_graft(f->m, 0);
	size_t l1, l2;
	uint8_t *a = tm_slurp(p1, &l1), *b = tm_slurp(p2, &l2);

	assert_int_equal(l1, l2);
	assert_memory_equal(a, b, l1);
	free(a);
	free(b);
	unlink(p1);
	unlink(p2);
	free(p1);
	free(p2);
}

static void test_trainable_flags_survive(void **state)
{
	struct fixture *f = *state;
	struct graft_err err = {0};
	struct graft_model *m;
	struct graft_tensor t;
	long w = graft_model_find_tensor(f->m, "W");

	assert_int_equal(graft_model_set_trainable(f->m, (size_t)w, 0, &err), 0);
	char *path = write_graft(f->m, 0);
	assert_int_equal(graft_model_set_trainable(f->m, (size_t)w, 1, &err), 0);
	assert_int_equal(graft_model_read(&m, path, 0, &err), 0);
	graft_model_tensor(m, (size_t)graft_model_find_tensor(m, "W"), &t);
	assert_false(t.trainable);
	graft_model_tensor(m, (size_t)graft_model_find_tensor(m, "B"), &t);
	assert_true(t.trainable);
	assert_int_equal(t.role, GRAFT_ROLE_PARAMETER);
	graft_model_tensor(m, (size_t)graft_model_find_tensor(m, "mean"), &t);
	assert_int_equal(t.role, GRAFT_ROLE_BUFFER);
	graft_model_free(m);
	unlink(path);
	free(path);
}

/* Every prefix of an archive is refused, except ones that lack only the closing tar
 * blocks (all members complete and verified): those give the same model. */
static void test_truncated_anywhere(void **state)
{
	struct fixture *f = *state;
	char *path = write_graft(f->m, 0);
	size_t len;
	uint8_t *b = tm_slurp(path, &len);
	struct graft_model *m;
	struct graft_err err = {0};
	size_t accepted = 0;

	for (size_t cut = 1; cut < len; cut += (cut < 4096 ? 1 : 97)) {
		int rc = graft_model_read_memory(&m, b, cut, NULL, "cut", &err);
		if (rc == 0) {
			assert_true(cut >= len - 1024);
			assert_same_onnx(f, m);
			accepted++;
		} else {
			assert_int_equal(rc, GRAFT_EFORMAT);
		}
		graft_model_free(m);
	}
	assert_true(accepted <= 1024);
	free(b);
	unlink(path);
	free(path);
}

/* Offset of the data of the k-th member of an uncompressed tar (ustar headers only,
 * which is what graft writes for short names). */
static size_t member_data_offset(const uint8_t *tar, size_t len, int k, size_t *size)
{
	size_t off = 0;

	for (int i = 0; off + 512 <= len; i++) {
		*size = strtoul((const char *)tar + off + 124, NULL, 8);
		if (i == k)
			return off + 512;
		off += 512 + (*size + 511) / 512 * 512;
	}
	fail_msg("member %d not found", k);
	return 0;
}

static void test_corruption_detected(void **state)
{
	struct fixture *f = *state;
	char *path = write_graft(f->m, 0);
	size_t len, size = 0;
	uint8_t *b = tm_slurp(path, &len);
	struct graft_model *m;
	struct graft_err err = {0};

	/* A flipped bit anywhere in the data of model.pb (member 1) or any tensor. */
	for (int k = 1; k < 2 + (int)f->m->n_tensors; k++) {
		size_t at = member_data_offset(b, len, k, &size);
		uint8_t *copy = malloc(len);
		memcpy(copy, b, len);
		copy[at + size / 2] ^= 0x40;
		assert_int_equal(graft_model_read_memory(&m, copy, len, NULL, "c", &err),
				 GRAFT_EFORMAT);
		if (!strstr(err.msg, "checksum"))
			fail_msg("member %d: %s", k, err.msg);
		free(copy);
	}
	free(b);
	unlink(path);
	free(path);
}

/* Replaces the first occurrence of from with to (same length) in a copy of the archive
 * and reads it. */
static int read_patched(const char *path, const char *from, const char *to,
			struct graft_err *err)
{
	size_t len;
	uint8_t *b = tm_slurp(path, &len);
	uint8_t *at = memmem(b, len, from, strlen(from));
	struct graft_model *m;
	int rc;

	assert_non_null(at);
	assert_int_equal(strlen(from), strlen(to));
	memcpy(at, to, strlen(to));
	rc = graft_model_read_memory(&m, b, len, NULL, "p", err);
	graft_model_free(m);
	free(b);
	return rc;
}

static void test_manifest_problems(void **state)
{
	struct fixture *f = *state;
	char *path = write_graft(f->m, 0);
	struct graft_err err = {0};

	assert_int_equal(read_patched(path, "graft-archive 1", "graft-archive 3", &err),
			 GRAFT_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "newer"));
	assert_int_equal(read_patched(path, "graft-archive 1", "graft-archivX 1", &err),
			 GRAFT_EFORMAT);
	assert_int_equal(read_patched(path, " parameter 1 ", " constant  1 ", &err),
			 GRAFT_EFORMAT);
	assert_int_equal(read_patched(path, " parameter 1 ", " buffer    1 ", &err),
			 GRAFT_EFORMAT);
	assert_int_equal(read_patched(path, " [3,2,3,3] ", " [3,2,3,4] ", &err),
			 GRAFT_EFORMAT);
	assert_int_equal(read_patched(path, "\nend\n", "\nEND\n", &err), GRAFT_EFORMAT);
	assert_int_equal(read_patched(path, "tensors/000001", "tensors/000009", &err),
			 GRAFT_EFORMAT);
	/* A field that cannot hold the type: export would read 8 bytes per int8 element. */
	assert_int_equal(read_patched(path, "int8 [4] constant 0 initializer int32_data",
				      "int8 [4] constant 0 initializer int64_data", &err),
			 GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "tensor 'i8': int64_data cannot hold int8"));
	unlink(path);
	free(path);
}

static void test_not_an_archive(void **state)
{
	struct graft_model *m;
	struct graft_err err = {0};
	uint8_t tar[1024] = {0};
	(void)state;

	/* A tar whose first member is not the manifest. */
	memcpy(tar, "hello.txt", 9);
	memcpy(tar + 257, "ustar", 5);
	assert_int_equal(graft_model_read_memory(&m, tar, sizeof(tar), NULL, "t", &err),
			 GRAFT_EFORMAT);
}

/* ---- limits: sizes an archive claims ---- */

/* An archive forged from parts: a manifest (with %s for the skeleton's line), the
 * skeleton of an empty model, then one member whose header claims claimed bytes but
 * which holds only written (and the stream ends there). */
static uint8_t *forge(const char *manifest_fmt, const char *member, int64_t claimed,
		      size_t written, size_t *len)
{
	struct graft_model *e;
	struct graft_err err = {0};
	void *skel;
	size_t skel_len, used = 0, cap = 1 << 20;
	char line[128], manifest[1024];
	uint8_t *buf = malloc(cap), *zeros = calloc(1, written + 1);
	struct archive *a = archive_write_new();

	assert_int_equal(graft_model_new(&e, &err), 0);
	assert_int_equal(onnx_skeleton_pack(e, &skel, &skel_len, &err), 0);
	graft_model_free(e);
	snprintf(line, sizeof(line), "skeleton model.pb %zu %016" PRIx64, skel_len,
		 graft_xxh64(skel, skel_len, 0));
	snprintf(manifest, sizeof(manifest), manifest_fmt, line);
	assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	assert_int_equal(archive_write_set_bytes_per_block(a, 0), ARCHIVE_OK);
	assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
	const char *names[3] = {"manifest", "model.pb", member};
	const void *data[3] = {manifest, skel, zeros};
	int64_t sizes[3] = {(int64_t)strlen(manifest), (int64_t)skel_len, claimed};
	size_t lens[3] = {strlen(manifest), skel_len, written};
	for (int i = 0; i < 3; i++) {
		struct archive_entry *en = archive_entry_new();
		archive_entry_set_pathname(en, names[i]);
		archive_entry_set_size(en, sizes[i]);
		archive_entry_set_filetype(en, AE_IFREG);
		archive_entry_set_perm(en, 0644);
		assert_int_equal(archive_write_header(a, en), ARCHIVE_OK);
		archive_entry_free(en);
		assert_int_equal(archive_write_data(a, data[i], lens[i]), (la_ssize_t)lens[i]);
	}
	*len = used;    /* what closing would add (padding to the claimed size) is left out */
	archive_write_free(a);
	free(skel);
	free(zeros);
	return buf;
}

/* Reads buf from memory and as a stream through a pipe; both must fail with
 * GRAFT_EFORMAT and a message holding expect. */
static void assert_archive_refused(const uint8_t *buf, size_t len, const char *expect)
{
	struct graft_model *m;
	struct graft_err err = {0};
	char path[] = "/tmp/graft-forged-XXXXXX";
	int fd = mkstemp(path), rc;

	rc = graft_model_read_memory(&m, buf, len, NULL, "forged", &err);
	if (rc != GRAFT_EFORMAT || !strstr(err.msg, expect))
		fail_msg("memory: expected '%s', got %d '%s'", expect, rc, err.msg);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	rc = graft_model_read(&m, path, GRAFT_READ_NO_MAP, &err);
	if (rc != GRAFT_EFORMAT || !strstr(err.msg, expect))
		fail_msg("stream: expected '%s', got %d '%s'", expect, rc, err.msg);
	unlink(path);
}

static void test_limit_claimed_sizes(void **state)
{
	size_t len;
	uint8_t *buf;
	(void)state;

	/* A tensor of 1 TiB that the manifest and the tar header agree on, cut short after
	 * 4 KiB: refused as truncated, not as out of memory (nothing of the claimed size
	 * is allocated before the bytes come). */
	buf = forge("graft-archive 2\n%s\ntensor tensors/000000 x float [274877906944] data 0 "
		    "detached raw 1099511627776 0123456789abcdef\nend\n", "tensors/000000",
		    INT64_C(1) << 40, 4096, &len);
	assert_archive_refused(buf, len, "truncated");
	free(buf);
	/* A skeleton over protobuf's limit is refused before it is read. */
	buf = forge("graft-archive 2\nskeleton model.pb 3000000000 0123456789abcdef\nend\n%.0s",
		    "tensors/000000", 16, 16, &len);
	assert_archive_refused(buf, len, "skeleton of 3000000000 bytes is over protobuf's 2 GiB "
			       "limit");
	free(buf);
}

static void test_limit_manifest(void **state)
{
	struct graft_err err = {0};
	struct graft_model *m = model_new();
	struct manifest mf;
	(void)state;

	/* Dims whose product overflows, also behind a zero; bytes that disagree. */
	const char *text = "graft-archive 2\ntensor tensors/000000 W float [0,4611686018427387904,8] "
			   "data 0 detached raw 0 0123456789abcdef\nend\n";
	assert_int_equal(manifest_parse(m, &mf, text, strlen(text), &err), GRAFT_EFORMAT);
	assert_string_equal(err.msg, "manifest line 2: tensor 'W': dims "
			    "[0,4611686018427387904,8] overflow");
	manifest_release(&mf, m->n_tensors);
	graft_model_free(m);
	m = model_new();
	text = "graft-archive 1\ntensor tensors/000000 W float [99999999999999999999] "
	       "parameter 1 initializer raw 4 0123456789abcdef\nend\n";
	assert_int_equal(manifest_parse(m, &mf, text, strlen(text), &err), GRAFT_EFORMAT);
	manifest_release(&mf, m->n_tensors);
	graft_model_free(m);
	m = model_new();
	text = "graft-archive 2\ntensor tensors/000000 W float [2,3] data 0 detached raw 20 "
	       "0123456789abcdef\nend\n";
	assert_int_equal(manifest_parse(m, &mf, text, strlen(text), &err), GRAFT_EFORMAT);
	assert_string_equal(err.msg, "manifest line 2: tensor 'W' is 20 bytes, dims [2,3] of "
			    "float need 24");
	manifest_release(&mf, m->n_tensors);
	graft_model_free(m);

	/* More tensor lines than GRAFT_MAX_TENSORS (each of them short). */
	static const char one[] = "tensor m a float [] data 0 detached raw 4 0123456789abcdef\n";
	size_t n = GRAFT_MAX_TENSORS + 1, len = 16 + n * (sizeof(one) - 1) + 4;
	char *big = malloc(len + 1), *p = big;
	p += sprintf(p, "graft-archive 2\n");
	for (size_t i = 0; i < n; i++) {
		memcpy(p, one, sizeof(one) - 1);
		p += sizeof(one) - 1;
	}
	p += sprintf(p, "end\n");
	assert_true((size_t)(p - big) <= GRAFT_MAX_MANIFEST_BYTES);
	m = model_new();
	assert_int_equal(manifest_parse(m, &mf, big, (size_t)(p - big), &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "more than 1048576 tensors"));
	manifest_release(&mf, m->n_tensors);
	graft_model_free(m);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_mapped_and_zero_copy),
		cmocka_unit_test(test_roundtrip_streamed),
		cmocka_unit_test(test_roundtrip_zstd),
		cmocka_unit_test(test_history_notes_and_provenance),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_trainable_flags_survive),
		cmocka_unit_test(test_truncated_anywhere),
		cmocka_unit_test(test_corruption_detected),
		cmocka_unit_test(test_manifest_problems),
		cmocka_unit_test(test_not_an_archive),
		cmocka_unit_test(test_limit_claimed_sizes),
		cmocka_unit_test(test_limit_manifest),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
