/*
 * test_onnx.c: ONNX import and export: exact round trips for every payload encoding,
 * roles, payloads that must stay in the skeleton, external data (and the paths it must
 * refuse), malformed input.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"
#include "testmodel.h"

/* Exports m as ONNX into memory through a temporary file. */
static uint8_t *export_onnx(const struct graft_model *m, const struct graft_onnx_opts *o,
			    size_t *len)
{
	char path[] = "/tmp/graft-onnx-XXXXXX";
	struct graft_err err = {0};
	int fd = mkstemp(path);
	uint8_t *b;

	assert_true(fd >= 0);
	assert_int_equal(graft_model_write_onnx(m, fd, o, &err), 0);
	close(fd);
	b = tm_slurp(path, len);
	unlink(path);
	return b;
}

static struct graft_model *import_bytes(const uint8_t *buf, size_t len)
{
	struct graft_model *m;
	struct graft_err err = {0};

	if (graft_model_read_memory(&m, buf, len, NULL, "test", &err)) {
		fprintf(stderr, "import failed: %s\n", err.msg);
		fail();
	}
	return m;
}

static void assert_roundtrip_exact(Onnx__ModelProto *mp)
{
	size_t len, len2;
	uint8_t *orig = tm_pack(mp, &len), *back;
	struct graft_model *m = import_bytes(orig, len);

	back = export_onnx(m, NULL, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(orig, back, len);
	graft_model_free(m);
	free(orig);
	free(back);
}

static void test_roundtrip_every_encoding(void **state)
{
	Onnx__ModelProto *mp = tm_tiny_cnn();
	(void)state;

	assert_roundtrip_exact(mp);
	onnx__model_proto__free_unpacked(mp, NULL);
}

static const struct graft_tensor *find(const struct graft_model *m, const char *name,
				       struct graft_tensor *t)
{
	long i = graft_model_find_tensor(m, name);
	if (i < 0)
		return NULL;
	graft_model_tensor(m, (size_t)i, t);
	return t;
}

static void test_roles(void **state)
{
	Onnx__ModelProto *mp = tm_tiny_cnn();
	size_t len;
	uint8_t *buf = tm_pack(mp, &len);
	struct graft_model *m = import_bytes(buf, len);
	struct graft_tensor t;
	(void)state;

	const char *params[] = {"W", "B", "bias", "fcW", "fcB", "mulv"};
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		assert_non_null(find(m, params[i], &t));
		assert_int_equal(t.role, GRAFT_ROLE_PARAMETER);
		assert_true(t.trainable);
	}
	/* scale feeds BatchNormalization as its scale and, through the Identity alias, as
	 * its running variance: the learnable use wins. */
	assert_non_null(find(m, "scale", &t));
	assert_int_equal(t.role, GRAFT_ROLE_PARAMETER);
	assert_non_null(find(m, "mean", &t));
	assert_int_equal(t.role, GRAFT_ROLE_BUFFER);
	assert_false(t.trainable);
	assert_non_null(find(m, "shape", &t));
	assert_int_equal(t.role, GRAFT_ROLE_CONSTANT);
	assert_non_null(find(m, "eps", &t));
	assert_int_equal(t.role, GRAFT_ROLE_CONSTANT);
	assert_int_equal(t.source, GRAFT_SOURCE_CONSTANT);
	assert_int_equal(t.rank, 0);
	assert_non_null(find(m, "i8", &t));
	assert_int_equal(t.role, GRAFT_ROLE_CONSTANT);
	assert_int_equal(graft_model_tensor_count(m), 13);
	struct graft_alias a;
	assert_int_equal(graft_model_alias_count(m), 1);
	graft_model_alias(m, 0, &a);
	assert_string_equal(a.name, "var");
	assert_string_equal(a.tensor_name, "scale");
	assert_int_equal(a.tensor, graft_model_find_tensor(m, "scale"));
	assert_int_equal(a.role, GRAFT_ROLE_BUFFER);

	struct graft_err err = {0};
	long i = graft_model_find_tensor(m, "mean");
	assert_int_equal(graft_model_set_trainable(m, (size_t)i, 1, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "buffer"));
	graft_model_free(m);
	free(buf);
	onnx__model_proto__free_unpacked(mp, NULL);
}

static void test_payloads_in_natural_layout(void **state)
{
	Onnx__ModelProto *mp = tm_tiny_cnn();
	size_t len;
	uint8_t *buf = tm_pack(mp, &len);
	struct graft_model *m = import_bytes(buf, len);
	struct graft_tensor t;
	const int8_t i8[] = {-128, 0, 5, 127};
	const uint32_t u32[] = {0, 1, 4000000000u, 7};
	const uint16_t f16[] = {0x3c00, 0, 0xbc00, 0x7bff};
	const float b[] = {0.1f, -0.2f, 0.3f};
	(void)state;

	assert_non_null(find(m, "i8", &t));
	assert_int_equal(t.nbytes, 4);
	assert_memory_equal(t.data, i8, 4);
	assert_non_null(find(m, "u32", &t));
	assert_memory_equal(t.data, u32, sizeof(u32));
	assert_non_null(find(m, "f16", &t));
	assert_memory_equal(t.data, f16, sizeof(f16));
	assert_non_null(find(m, "B", &t));
	assert_memory_equal(t.data, b, sizeof(b));
	graft_model_free(m);
	free(buf);
	onnx__model_proto__free_unpacked(mp, NULL);
}

static void test_lossy_payloads_stay_in_skeleton(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t d[] = {2};
	int32_t wide[] = {300, 1};              /* 300 does not fit int8 */
	float f[] = {1, 2, 3};                  /* 3 values for 2 elements */
	Onnx__TensorProto *t;
	(void)state;

	t = tm_tensor("wide", 3, 1, d); tm_int32_data(t, wide, 2); tm_initializer(mp, t);
	t = tm_tensor("short", 1, 1, d); tm_float_data(t, f, 3); tm_initializer(mp, t);
	t = tm_tensor("twice", 1, 1, d); tm_float_data(t, f, 2); tm_raw(t, f, 8);
	tm_initializer(mp, t);
	t = tm_tensor("dup", 1, 1, d); tm_float_data(t, f, 2); tm_initializer(mp, t);
	t = tm_tensor("dup", 1, 1, d); tm_float_data(t, f + 1, 2); tm_initializer(mp, t);
	t = tm_tensor("s", 8, 1, d); tm_initializer(mp, t);
	t->string_data = malloc(2 * sizeof(ProtobufCBinaryData));
	t->string_data[0] = (ProtobufCBinaryData){1, (uint8_t *)strdup("a")};
	t->string_data[1] = (ProtobufCBinaryData){1, (uint8_t *)strdup("b")};
	t->n_string_data = 2;

	size_t len;
	uint8_t *buf = tm_pack(mp, &len);
	struct graft_model *m = import_bytes(buf, len);
	assert_int_equal(graft_model_tensor_count(m), 0);
	graft_model_free(m);
	free(buf);
	assert_roundtrip_exact(mp);
	onnx__model_proto__free_unpacked(mp, NULL);
}

static void test_malformed_input(void **state)
{
	struct graft_model *m;
	struct graft_err err = {0};
	Onnx__ModelProto *mp = tm_tiny_cnn();
	size_t len;
	uint8_t *buf = tm_pack(mp, &len);
	(void)state;

	assert_int_equal(graft_model_read_memory(&m, "", 0, NULL, "e", &err), GRAFT_EFORMAT);
	assert_null(m);
	assert_int_equal(graft_model_read_memory(&m, "hello world\n", 12, NULL, "h", &err),
			 GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "h: not an ONNX model"));
	/* Every cut of a valid model either fails cleanly or, where it falls between two
	 * top-level fields that ONNX does not require, gives a model that still loads. */
	size_t failures = 0;
	for (size_t cut = 1; cut < len; cut++) {
		int rc = graft_model_read_memory(&m, buf, cut, NULL, "cut", &err);
		if (rc) {
			assert_int_equal(rc, GRAFT_EFORMAT);
			failures++;
		}
		graft_model_free(m);
	}
	assert_true(failures >= len - 4);
	free(buf);
	onnx__model_proto__free_unpacked(mp, NULL);
}

/* Writes data to dir/name. */
static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A model whose single initializer W (4 floats) lives in external data. */
static char *external_model(const char *dir, const char *loc, const char *off, const char *len_s)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t d[] = {4};
	Onnx__TensorProto *t = tm_tensor("W", 1, 1, d);
	char *path = malloc(512);
	size_t len;

	tm_external(t, loc, off, len_s);
	tm_initializer(mp, t);
	tm_node(mp, "MatMul", "mm", (const char *[]){"x", "W", NULL}, (const char *[]){"y", NULL});
	uint8_t *buf = tm_pack(mp, &len);
	snprintf(path, 512, "%s/model.onnx", dir);
	write_file(dir, "model.onnx", buf, len);
	free(buf);
	onnx__model_proto__free_unpacked(mp, NULL);
	return path;
}

static void test_external_data(void **state)
{
	char *dir = tm_tempdir(), *path, cmd[600];
	const float w[] = {1, 2, 3, 4}, pad[2] = {0};
	struct graft_model *m;
	struct graft_err err = {0};
	struct graft_tensor t;
	(void)state;

	write_file(dir, "w.bin", pad, sizeof(pad));
	char blob[24];
	memcpy(blob, pad, 8);
	memcpy(blob + 8, w, 16);
	write_file(dir, "w.bin", blob, sizeof(blob));
	path = external_model(dir, "w.bin", "8", "16");
	assert_int_equal(graft_model_read(&m, path, 0, &err), 0);
	assert_non_null(find(m, "W", &t));
	assert_memory_equal(t.data, w, 16);
	assert_int_equal(t.role, GRAFT_ROLE_PARAMETER);

	/* Exported inline, as onnx.load sees it: raw_data, data_location DEFAULT set
	 * explicitly, no external_data entries. */
	size_t len;
	uint8_t *out = export_onnx(m, NULL, &len);
	Onnx__ModelProto *back = onnx__model_proto__unpack(NULL, len, out);
	Onnx__TensorProto *tp = back->graph->initializer[0];
	assert_true(tp->has_raw_data);
	assert_int_equal(tp->raw_data.len, 16);
	assert_int_equal(tp->n_external_data, 0);
	assert_true(tp->has_data_location);
	assert_int_equal(tp->data_location, ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT);
	onnx__model_proto__free_unpacked(back, NULL);
	free(out);

	/* Exported with external data: entries point at 4 KiB-aligned bytes. */
	char ext_path[512];
	snprintf(ext_path, sizeof(ext_path), "%s/out.data", dir);
	int efd = open(ext_path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	struct graft_onnx_opts o = {.external_fd = efd, .external_name = "out.data",
				    .external_min_bytes = 0};
	out = export_onnx(m, &o, &len);
	close(efd);
	back = onnx__model_proto__unpack(NULL, len, out);
	tp = back->graph->initializer[0];
	assert_false(tp->has_raw_data);
	assert_int_equal(tp->data_location, ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL);
	assert_int_equal(tp->n_external_data, 3);
	assert_string_equal(tp->external_data[0]->value, "out.data");
	assert_string_equal(tp->external_data[1]->value, "0");
	assert_string_equal(tp->external_data[2]->value, "16");
	size_t dlen;
	uint8_t *data = tm_slurp(ext_path, &dlen);
	assert_int_equal(dlen, 16);
	assert_memory_equal(data, w, 16);
	free(data);
	onnx__model_proto__free_unpacked(back, NULL);
	free(out);
	/* ...and the model is unchanged by it: the next export is inline again. */
	out = export_onnx(m, NULL, &len);
	back = onnx__model_proto__unpack(NULL, len, out);
	assert_true(back->graph->initializer[0]->has_raw_data);
	onnx__model_proto__free_unpacked(back, NULL);
	free(out);
	graft_model_free(m);
	free(path);

	/* Refused: escaping, absolute, symlinked outside, missing, too short, no folder. */
	const struct { const char *loc, *len, *expect; } bad[] = {
		{"../w.bin", "16", "escapes"},
		{"sub/../../w.bin", "16", "escapes"},
		{"/etc/passwd", "16", "not a relative path"},
		{"link.bin", "16", "escapes"},
		{"missing.bin", "16", "No such file"},
		{"w.bin", "64", "shorter than"},
	};
	snprintf(cmd, sizeof(cmd), "ln -s /etc/hostname %s/link.bin", dir);
	assert_int_equal(system(cmd), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		path = external_model(dir, bad[i].loc, "8", bad[i].len);
		assert_true(graft_model_read(&m, path, 0, &err) < 0);
		if (!strstr(err.msg, bad[i].expect))
			fail_msg("%s: got '%s'", bad[i].loc, err.msg);
		assert_non_null(strstr(err.msg, "model.onnx"));
		free(path);
	}
	path = external_model(dir, "w.bin", "8", "16");
	size_t mlen;
	uint8_t *mbuf = tm_slurp(path, &mlen);
	assert_int_equal(graft_model_read_memory(&m, mbuf, mlen, NULL, "stdin", &err),
			 GRAFT_EUNSUPPORTED);
	free(mbuf);
	free(path);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

/* graft-export decides on external data for models over 2 GiB from this estimate. */
static void test_onnx_size_matches_output(void **state)
{
	(void)state;
	Onnx__ModelProto *mp = tm_tiny_cnn();
	size_t len, out_len;
	uint8_t *buf = tm_pack(mp, &len);
	struct graft_model *m = import_bytes(buf, len);
	uint8_t *out = export_onnx(m, NULL, &out_len);
	assert_int_equal(graft_model_onnx_size(m), out_len);
	graft_model_free(m);
	free(buf);
	free(out);
	onnx__model_proto__free_unpacked(mp, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_every_encoding),
		cmocka_unit_test(test_roles),
		cmocka_unit_test(test_payloads_in_natural_layout),
		cmocka_unit_test(test_lossy_payloads_stay_in_skeleton),
		cmocka_unit_test(test_malformed_input),
		cmocka_unit_test(test_external_data),
		cmocka_unit_test(test_onnx_size_matches_output),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
