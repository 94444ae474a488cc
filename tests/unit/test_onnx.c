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

#include "format/format.h"
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

/* A payload with more or fewer values than its shape is refused on import, as ONNX
 * Runtime refuses it on load, whichever field holds it. */
static void test_payload_count_mismatch_refused(void **state)
{
	int64_t d[] = {2};
	float f[] = {1, 2, 3};
	int64_t i64[] = {1, 2, 3};
	struct graft_model *m;
	struct graft_err err = {0};
	const char *expect[] = {
		"tensor 'short': float_data holds 3 values, dims [2] of float need 2",
		"tensor 'short': raw_data holds 4 bytes, dims [2] of float need 8",
		"tensor 'short': int64_data holds 3 values, dims [2] of int64 need 2",
	};
	(void)state;

	for (int k = 0; k < 3; k++) {
		Onnx__ModelProto *mp = tm_model(13);
		Onnx__TensorProto *t = tm_tensor("short", k == 2 ? 7 : 1, 1, d);
		if (k == 0)
			tm_float_data(t, f, 3);
		else if (k == 1)
			tm_raw(t, f, 4);
		else
			tm_int64_data(t, i64, 3);
		tm_initializer(mp, t);
		size_t len;
		uint8_t *buf = tm_pack(mp, &len);
		assert_int_equal(graft_model_read_memory(&m, buf, len, NULL, "m.onnx", &err),
				 GRAFT_EFORMAT);
		assert_string_equal(err.msg + strlen("m.onnx: "), expect[k]);
		assert_null(m);
		free(buf);
		onnx__model_proto__free_unpacked(mp, NULL);
	}
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
		{"w.bin", "12", "external data 'w.bin' holds 12 bytes, its dims and type (float) "
		 "need 16"},
	};
	snprintf(cmd, sizeof(cmd), "ln -s /etc/hostname %s/link.bin && ln -s w.bin %s/inlink.bin",
		 dir, dir);
	assert_int_equal(system(cmd), 0);
	/* Both ways of opening: openat2 RESOLVE_BENEATH, and the checks of kernels without. */
	for (int no_openat2 = 0; no_openat2 < 2; no_openat2++) {
		external_no_openat2 = no_openat2;
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			path = external_model(dir, bad[i].loc, "8", bad[i].len);
			assert_true(graft_model_read(&m, path, 0, &err) < 0);
			if (!strstr(err.msg, bad[i].expect))
				fail_msg("%s: got '%s'", bad[i].loc, err.msg);
			assert_non_null(strstr(err.msg, "model.onnx"));
			free(path);
		}
		/* A symlink that stays inside is followed. */
		path = external_model(dir, "inlink.bin", "8", "16");
		assert_int_equal(graft_model_read(&m, path, 0, &err), 0);
		assert_non_null(find(m, "W", &t));
		assert_memory_equal(t.data, w, 16);
		graft_model_free(m);
		free(path);
	}
	external_no_openat2 = 0;
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

/* ---- limits: what a hostile model must not get through ---- */

/* Reads mp's bytes, expecting GRAFT_EFORMAT with a message that holds expect. */
static void assert_refused(const uint8_t *buf, size_t len, const char *expect)
{
	struct graft_model *m;
	struct graft_err err = {0};
	int rc = graft_model_read_memory(&m, buf, len, NULL, "bad.onnx", &err);

	if (rc != GRAFT_EFORMAT || !strstr(err.msg, expect))
		fail_msg("expected GRAFT_EFORMAT with '%s', got %d '%s'", expect, rc, err.msg);
	assert_null(m);
}

static void assert_model_refused(const Onnx__ModelProto *mp, const char *expect)
{
	size_t len;
	uint8_t *buf = tm_pack(mp, &len);

	assert_refused(buf, len, expect);
	free(buf);
}

static void test_limit_dims(void **state)
{
	const struct { int rank; int64_t dims[3]; const char *expect; } bad[] = {
		{2, {2, -3}, "tensor 'W': dims [2,-3] are negative"},
		{2, {INT64_C(1) << 40, INT64_C(1) << 40}, "tensor 'W': dims [1099511627776,"
		 "1099511627776] overflow"},
		{1, {INT64_MAX}, "overflow"},
		/* A zero makes the product 0, but the strides of the others still overflow. */
		{3, {0, INT64_C(1) << 62, 4}, "tensor 'W': dims [0,4611686018427387904,4] overflow"},
	};
	float f[4] = {0};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		Onnx__ModelProto *mp = tm_model(13);
		Onnx__TensorProto *t = tm_tensor("W", 1, bad[i].rank, bad[i].dims);
		tm_raw(t, f, sizeof(f));
		tm_initializer(mp, t);
		assert_model_refused(mp, bad[i].expect);
		onnx__model_proto__free_unpacked(mp, NULL);
	}
	/* The same in a Constant node's value, and in a tensor that would stay in the
	 * skeleton (int32_data). */
	Onnx__ModelProto *mp = tm_model(13);
	Onnx__NodeProto *n = tm_node(mp, "Constant", "c", (const char *[]){NULL},
				     (const char *[]){"k", NULL});
	int64_t d[] = {-1};
	Onnx__TensorProto *t = tm_tensor("k", 6, 1, d);
	tm_int32_data(t, (const int32_t[]){7}, 1);
	tm_attr_tensor(n, "value", t);
	assert_model_refused(mp, "tensor 'k': dims [-1] are negative");
	onnx__model_proto__free_unpacked(mp, NULL);
}

/* A model whose main graph holds If nodes nested depth deep (then_branch in
 * then_branch...), the innermost with a Constant. */
static Onnx__ModelProto *nested_ifs(int depth)
{
	Onnx__ModelProto *mp = tm_model(13);
	Onnx__GraphProto *g = mp->graph;

	for (int i = 0; i < depth; i++) {
		Onnx__NodeProto *n = malloc(sizeof(*n));
		Onnx__AttributeProto *a = malloc(sizeof(*a));
		Onnx__GraphProto *sub = malloc(sizeof(*sub));
		onnx__node_proto__init(n);
		onnx__attribute_proto__init(a);
		onnx__graph_proto__init(sub);
		n->op_type = strdup("If");
		n->input = malloc(sizeof(char *));
		n->input[0] = strdup("cond");
		n->n_input = 1;
		a->name = strdup("then_branch");
		a->has_type = 1;
		a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
		a->g = sub;
		sub->name = strdup("branch");
		n->attribute = malloc(sizeof(*n->attribute));
		n->attribute[0] = a;
		n->n_attribute = 1;
		g->node = malloc(sizeof(*g->node));
		g->node[0] = n;
		g->n_node = 1;
		g = sub;
	}
	return mp;
}

static void test_limit_subgraph_depth(void **state)
{
	Onnx__ModelProto *mp = nested_ifs(GRAFT_MAX_GRAPH_DEPTH);
	size_t len;
	uint8_t *buf = tm_pack(mp, &len);
	(void)state;

	graft_model_free(import_bytes(buf, len));
	free(buf);
	onnx__model_proto__free_unpacked(mp, NULL);
	mp = nested_ifs(GRAFT_MAX_GRAPH_DEPTH + 1);
	assert_model_refused(mp, "subgraphs nested more than 64 deep");
	onnx__model_proto__free_unpacked(mp, NULL);
}

/* Appends a varint. */
static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	do {
		p[n++] = (uint8_t)(v & 0x7f) | (v > 0x7f ? 0x80 : 0);
		v >>= 7;
	} while (v);
	return n;
}

static size_t varint_len(uint64_t v)
{
	uint8_t b[10];
	return put_varint(b, v);
}

/* A ModelProto (ir_version 8, opset 13) around a graph whose body is the given bytes:
 * the headers of nested messages, written outside in, need no copying. */
static uint8_t *model_around_graph(const uint8_t *body, size_t body_len, size_t *len)
{
	static const uint8_t head[] = {0x08, 0x08, 0x42, 0x02, 0x10, 0x0d};  /* ir, opset */
	uint8_t *b = malloc(sizeof(head) + 11 + body_len);
	size_t n = sizeof(head);

	memcpy(b, head, n);
	b[n++] = 0x3a;          /* graph = 7 */
	n += put_varint(b + n, body_len);
	memcpy(b + n, body, body_len);
	*len = n + body_len;
	return b;
}

static void test_limit_message_depth(void **state)
{
	/* A graph input of type sequence(sequence(...)), 200000 deep: about 800 KiB, which
	 * protobuf-c's recursion would not survive. */
	const size_t depth = 200000;
	size_t *inner = malloc(sizeof(size_t) * (depth + 1)), len, n = 0;
	(void)state;

	/* inner[i]: the size of the i-th TypeProto from the inside (0: empty). */
	inner[0] = 0;
	for (size_t i = 1; i <= depth; i++) {
		size_t seq = 1 + varint_len(inner[i - 1]) + inner[i - 1];
		inner[i] = 1 + varint_len(seq) + seq;
	}
	size_t vi = 1 + varint_len(inner[depth]) + inner[depth];
	size_t body_len = 1 + varint_len(vi) + vi;
	uint8_t *body = malloc(body_len);
	body[n++] = 0x5a;       /* GraphProto.input = 11 */
	n += put_varint(body + n, vi);
	body[n++] = 0x12;       /* ValueInfoProto.type = 2 */
	n += put_varint(body + n, inner[depth]);
	for (size_t i = depth; i >= 1; i--) {
		body[n++] = 0x22;       /* TypeProto.sequence_type = 4 */
		n += put_varint(body + n, 1 + varint_len(inner[i - 1]) + inner[i - 1]);
		body[n++] = 0x0a;       /* Sequence.elem_type = 1 */
		n += put_varint(body + n, inner[i - 1]);
	}
	assert_int_equal(n, body_len);
	uint8_t *buf = model_around_graph(body, body_len, &len);
	assert_refused(buf, len, "protobuf messages nested more than 512 deep");
	free(buf);
	free(body);
	free(inner);
}

/* A graph of count copies of the 2-byte field (tag, empty). */
static uint8_t *repeated_graph(uint8_t tag, size_t count, size_t *len)
{
	size_t body_len = 2 * count;
	uint8_t *body = malloc(body_len), *buf;

	for (size_t i = 0; i < count; i++) {
		body[2 * i] = tag;
		body[2 * i + 1] = 0;
	}
	buf = model_around_graph(body, body_len, len);
	free(body);
	return buf;
}

static void test_limit_counts(void **state)
{
	size_t len;
	uint8_t *buf;
	(void)state;

	/* Empty nodes cost 2 bytes each here and over 100 once unpacked. */
	buf = repeated_graph(0x0a, GRAFT_MAX_NODES + 1, &len);
	assert_refused(buf, len, "the model has more than 2097152 nodes");
	free(buf);
	buf = repeated_graph(0x6a, GRAFT_MAX_VALUES + 1, &len);   /* value_info */
	assert_refused(buf, len, "more than 4194304 graph values");
	free(buf);
	/* One node with too many inputs, then one with too many attributes. */
	for (int k = 0; k < 2; k++) {
		size_t count = k ? GRAFT_MAX_ATTRIBUTES + 1 : GRAFT_MAX_NODE_IO + 1;
		size_t node_len = 2 * count, n = 0;
		uint8_t *body = malloc(node_len + 12);
		body[n++] = 0x0a;       /* GraphProto.node = 1 */
		n += put_varint(body + n, node_len);
		for (size_t i = 0; i < count; i++) {
			body[n++] = k ? 0x2a : 0x0a;    /* attribute = 5, input = 1 */
			body[n++] = 0;
		}
		buf = model_around_graph(body, n, &len);
		assert_refused(buf, len, k ? "a node has more than 4096 attributes"
					   : "a node has more than 65536 inputs");
		free(buf);
		free(body);
	}
	/* Within the limits, the same shapes load. */
	buf = repeated_graph(0x0a, 1000, &len);
	graft_model_free(import_bytes(buf, len));
	free(buf);
}

/* Reading a TensorProto .pb: each way its payload can disagree with its header. */
static void test_pb_reader_limits(void **state)
{
	const float f[4] = {1, 2, 3, 4};
	const struct { int rank; int64_t dims[9]; int how; int code; const char *expect; } bad[] = {
		{1, {4}, 0, GRAFT_EFORMAT, "tensor 't': raw_data holds 12 bytes, dims [4] of "
		 "float need 16"},
		{1, {4}, 1, GRAFT_EFORMAT, "tensor 't': float_data holds 3 values, dims [4] of "
		 "float need 4"},
		{2, {2, -2}, 0, GRAFT_EFORMAT, "tensor 't': dims [2,-2] are negative"},
		{2, {INT64_C(1) << 62, 8}, 0, GRAFT_EFORMAT, "overflow"},
		{9, {1, 1, 1, 1, 1, 1, 1, 1, 4}, 2, GRAFT_EUNSUPPORTED, "rank 9 is over 8"},
		{1, {4}, 3, GRAFT_EFORMAT, "2 data fields set"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		Onnx__TensorProto *t = tm_tensor("t", 1, bad[i].rank, bad[i].dims);
		struct graft_array a;
		struct graft_err err = {0};
		if (bad[i].how == 1)
			tm_float_data(t, f, 3);
		else
			tm_raw(t, f, bad[i].how == 0 ? 12 : 16);
		if (bad[i].how == 3)
			tm_float_data(t, f, 4);
		size_t len = onnx__tensor_proto__get_packed_size(t);
		uint8_t *buf = malloc(len);
		onnx__tensor_proto__pack(t, buf);
		int rc = graft_array_read_pb(&a, buf, len, &err);
		if (rc != bad[i].code || !strstr(err.msg, bad[i].expect))
			fail_msg("case %zu: got %d '%s'", i, rc, err.msg);
		graft_array_release(&a);
		free(buf);
		onnx__tensor_proto__free_unpacked(t, NULL);
	}
}

/* An Identity chain listed backwards (each node reads what the next one writes): the
 * scan to a fixed point took n passes of n nodes (minutes for 100000, 14 hours for a
 * million); now each node is looked at once. */
static void test_identity_chain_backwards(void **state)
{
	const int n = 100000;
	Onnx__ModelProto *mp = tm_model(13);
	int64_t d[] = {2};
	float f[2] = {1, 2};
	char in[32], out[32];
	size_t len;
	(void)state;

	Onnx__TensorProto *t = tm_tensor("a0", 1, 1, d);
	tm_raw(t, f, sizeof(f));
	tm_initializer(mp, t);
	for (int i = n; i >= 1; i--) {
		snprintf(in, sizeof(in), "a%d", i - 1);
		snprintf(out, sizeof(out), "a%d", i);
		tm_node(mp, "Identity", NULL, (const char *[]){in, NULL}, (const char *[]){out, NULL});
	}
	tm_node(mp, "Conv", "c", (const char *[]){"x", "a100000", NULL}, (const char *[]){"y", NULL});
	uint8_t *buf = tm_pack(mp, &len);
	struct graft_model *m = import_bytes(buf, len);
	struct graft_alias a;
	struct graft_tensor tv;
	assert_int_equal(graft_model_alias_count(m), n);
	graft_model_alias(m, 0, &a);           /* the first scan finds only a1 */
	assert_string_equal(a.name, "a1");
	graft_model_alias(m, n - 1, &a);
	assert_string_equal(a.name, "a100000");
	assert_int_equal(a.role, GRAFT_ROLE_PARAMETER);
	graft_model_tensor(m, 0, &tv);
	assert_int_equal(tv.role, GRAFT_ROLE_PARAMETER);       /* through 100000 names */
	graft_model_free(m);
	free(buf);
	onnx__model_proto__free_unpacked(mp, NULL);
}

/* "ustar" at offset 257, where tar keeps its magic, does not make an ONNX model an
 * archive: a tar header's checksum must add up too. */
static void test_ustar_inside_onnx(void **state)
{
	Onnx__ModelProto *mp = tm_tiny_cnn();
	size_t len;
	uint8_t *buf;
	(void)state;

	free(mp->doc_string);
	mp->doc_string = malloc(1001);
	memset(mp->doc_string, 'a', 1000);
	mp->doc_string[1000] = 0;
	buf = tm_pack(mp, &len);
	uint8_t *doc = memmem(buf, len, mp->doc_string, 1000);
	assert_non_null(doc);
	assert_true(doc - buf < 257 && doc - buf + 1000 > 262);
	memcpy(mp->doc_string + (257 - (doc - buf)), "ustar", 5);
	free(buf);
	buf = tm_pack(mp, &len);
	assert_memory_equal(buf + 257, "ustar", 5);
	free(buf);
	assert_roundtrip_exact(mp);
	onnx__model_proto__free_unpacked(mp, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_every_encoding),
		cmocka_unit_test(test_roles),
		cmocka_unit_test(test_payloads_in_natural_layout),
		cmocka_unit_test(test_lossy_payloads_stay_in_skeleton),
		cmocka_unit_test(test_payload_count_mismatch_refused),
		cmocka_unit_test(test_malformed_input),
		cmocka_unit_test(test_external_data),
		cmocka_unit_test(test_onnx_size_matches_output),
		cmocka_unit_test(test_limit_dims),
		cmocka_unit_test(test_limit_subgraph_depth),
		cmocka_unit_test(test_limit_message_depth),
		cmocka_unit_test(test_limit_counts),
		cmocka_unit_test(test_pb_reader_limits),
		cmocka_unit_test(test_identity_chain_backwards),
		cmocka_unit_test(test_ustar_inside_onnx),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
