/*
 * test_model.c: editing a model: new empty models, tensors added (initializers and
 * detached), replaced and removed, metadata; what edits leave in the .graft archive
 * (read back mapped, streamed and from memory) and in ONNX export (detached tensors left
 * out, added initializers with their bytes); and the refusals.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "model/model.h"
#include "testmodel.h"

static struct graft_model *tiny_cnn(void)
{
	Onnx__ModelProto *mp = tm_tiny_cnn();
	struct graft_model *m;
	struct graft_err err = {0};
	size_t len;
	uint8_t *b = tm_pack(mp, &len);

	onnx__model_proto__free_unpacked(mp, NULL);
	if (graft_model_read_memory(&m, b, len, NULL, "tiny", &err))
		fail_msg("%s", err.msg);
	free(b);
	return m;
}

/* Writes m as .graft into a temporary file; returns its path (free it). */
static char *write_graft(const struct graft_model *m)
{
	char *path = strdup("/tmp/graft-model-XXXXXX");
	struct graft_err err = {0};
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	if (graft_model_write_graft(m, fd, NULL, &err))
		fail_msg("%s", err.msg);
	close(fd);
	return path;
}

/* Exports m as ONNX and unpacks it with protobuf-c. */
static Onnx__ModelProto *export_onnx(const struct graft_model *m, uint8_t **bytes, size_t *len)
{
	char path[] = "/tmp/graft-model-onnx-XXXXXX";
	struct graft_err err = {0};
	int fd = mkstemp(path);
	Onnx__ModelProto *mp;

	assert_true(fd >= 0);
	if (graft_model_write_onnx(m, fd, NULL, &err))
		fail_msg("%s", err.msg);
	close(fd);
	*bytes = tm_slurp(path, len);
	unlink(path);
	assert_non_null(*bytes);
	assert_int_equal(graft_model_onnx_size(m), *len);
	mp = onnx__model_proto__unpack(NULL, *len, *bytes);
	assert_non_null(mp);
	return mp;
}

static const Onnx__TensorProto *find_initializer(const Onnx__ModelProto *mp, const char *name)
{
	for (size_t i = 0; i < mp->graph->n_initializer; i++)
		if (strcmp(mp->graph->initializer[i]->name, name) == 0)
			return mp->graph->initializer[i];
	return NULL;
}

static const char *metadata(const struct graft_model *m, const char *key)
{
	struct graft_model_meta meta;
	const char *k, *v;

	graft_model_meta(m, &meta);
	for (size_t i = 0; i < meta.n_metadata; i++) {
		graft_model_metadata(m, i, &k, &v);
		if (strcmp(k, key) == 0)
			return v;
	}
	return NULL;
}

/* The dataset-like model every archive test uses: x, y, a scalar state, metadata. */
static const float xs[6] = {0.5f, -1, 2, 3.25f, 4, -5};
static const int64_t ys[2] = {1, 0};
static const int64_t step = 42;

static struct graft_model *detached_model(void)
{
	struct graft_model *m;
	struct graft_err err = {0};
	size_t i = 99;

	assert_int_equal(graft_model_new(&m, &err), 0);
	assert_int_equal(graft_model_add_tensor(m, "x", GRAFT_FLOAT, 2, (int64_t[]){2, 3}, xs,
						GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED, &i, &err), 0);
	assert_int_equal(i, 0);
	assert_int_equal(graft_model_add_tensor(m, "y", GRAFT_INT64, 1, (int64_t[]){2}, ys,
						GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED, &i, &err), 0);
	assert_int_equal(i, 1);
	assert_int_equal(graft_model_add_tensor(m, "opt.step", GRAFT_INT64, 0, NULL, &step,
						GRAFT_ROLE_STATE, GRAFT_SOURCE_DETACHED, NULL, &err), 0);
	assert_int_equal(graft_model_set_metadata(m, "graft.classes", "2", &err), 0);
	assert_int_equal(graft_model_set_metadata(m, "graft.source", "test", &err), 0);
	return m;
}

static void check_detached(const struct graft_model *m)
{
	struct graft_tensor t;

	assert_int_equal(graft_model_tensor_count(m), 3);
	graft_model_tensor(m, 0, &t);
	assert_string_equal(t.name, "x");
	assert_int_equal(t.dtype, GRAFT_FLOAT);
	assert_int_equal(t.rank, 2);
	assert_int_equal(t.dims[0], 2);
	assert_int_equal(t.dims[1], 3);
	assert_int_equal(t.nbytes, sizeof(xs));
	assert_memory_equal(t.data, xs, sizeof(xs));
	assert_int_equal(t.role, GRAFT_ROLE_DATA);
	assert_int_equal(t.source, GRAFT_SOURCE_DETACHED);
	assert_int_equal(t.trainable, 0);
	graft_model_tensor(m, 1, &t);
	assert_string_equal(t.name, "y");
	assert_memory_equal(t.data, ys, sizeof(ys));
	graft_model_tensor(m, 2, &t);
	assert_string_equal(t.name, "opt.step");
	assert_int_equal(t.rank, 0);
	assert_int_equal(t.numel, 1);
	assert_int_equal(t.role, GRAFT_ROLE_STATE);
	assert_memory_equal(t.data, &step, 8);
	assert_string_equal(metadata(m, "graft.classes"), "2");
	assert_string_equal(metadata(m, "graft.source"), "test");
}

static void test_new_model(void **state)
{
	struct graft_model *m;
	struct graft_model_meta meta;
	struct graft_err err = {0};
	const char *domain;
	int64_t version;
	(void)state;

	assert_int_equal(graft_model_new(&m, &err), 0);
	graft_model_meta(m, &meta);
	assert_int_equal(meta.ir_version, 8);
	assert_int_equal(meta.n_opsets, 1);
	graft_model_opset(m, 0, &domain, &version);
	assert_string_equal(domain, "");
	assert_int_equal(version, 17);
	assert_int_equal(graft_model_tensor_count(m), 0);
	assert_int_equal(graft_model_node_count(m), 0);
	assert_int_equal(graft_model_input_count(m), 0);
	assert_false(graft_model_from_archive(m));
	graft_model_free(m);
}

static void test_metadata(void **state)
{
	struct graft_model *m = tiny_cnn();
	struct graft_model_meta meta;
	struct graft_err err = {0};
	(void)state;

	assert_int_equal(graft_model_set_metadata(m, "a", "1", &err), 0);
	assert_int_equal(graft_model_set_metadata(m, "b", "2", &err), 0);
	assert_int_equal(graft_model_set_metadata(m, "a", "one", &err), 0);
	graft_model_meta(m, &meta);
	assert_int_equal(meta.n_metadata, 2);
	assert_string_equal(metadata(m, "a"), "one");
	assert_string_equal(metadata(m, "b"), "2");
	assert_int_equal(graft_model_set_metadata(m, "a", NULL, &err), 0);
	assert_int_equal(graft_model_set_metadata(m, "missing", NULL, &err), 0);
	graft_model_meta(m, &meta);
	assert_int_equal(meta.n_metadata, 1);
	assert_null(metadata(m, "a"));
	assert_string_equal(metadata(m, "b"), "2");
	assert_int_equal(graft_model_set_metadata(m, "", "x", &err), GRAFT_EINVAL);
	assert_int_equal(graft_model_set_metadata(m, NULL, "x", &err), GRAFT_EINVAL);
	graft_model_free(m);
}

static void test_detached_roundtrip(void **state)
{
	struct graft_model *m = detached_model(), *r;
	struct graft_err err = {0};
	char *path;
	size_t len;
	uint8_t *b;
	(void)state;

	check_detached(m);
	path = write_graft(m);
	b = tm_slurp(path, &len);
	/* The new words need version 2. */
	assert_memory_equal(b + 512, "graft-archive 2\n", 16);
	assert_non_null(memmem(b, len, " [2,3] data 0 detached raw 24 ", 30));
	assert_non_null(memmem(b, len, " [] state 0 detached raw 8 ", 27));

	assert_int_equal(graft_model_read(&r, path, 0, &err), 0);        /* mapped */
	assert_true(r->buf_mapped);
	check_detached(r);
	for (size_t i = 0; i < 3; i++) {
		assert_null(r->tensors[i].slot);
		assert_int_equal(r->tensors[i].owner, OWNER_MAP);
	}
	graft_model_free(r);
	assert_int_equal(graft_model_read(&r, path, GRAFT_READ_NO_MAP, &err), 0); /* streamed */
	check_detached(r);
	graft_model_free(r);
	assert_int_equal(graft_model_read_memory(&r, b, len, NULL, "mem", &err), 0);
	check_detached(r);
	graft_model_free(r);

	/* A flipped byte in a detached member is caught like any other. */
	uint8_t *at = memmem(b, len, &step, 8);
	assert_non_null(at);
	*at ^= 1;
	assert_int_equal(graft_model_read_memory(&r, b, len, NULL, "mem", &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "checksum"));
	free(b);
	unlink(path);
	free(path);
	graft_model_free(m);
}

static void test_onnx_export_leaves_out_detached(void **state)
{
	struct graft_model *m = detached_model(), *r;
	struct graft_err err = {0};
	const float w[4] = {1, 2, 3, 4};
	uint8_t *bytes;
	size_t len, i;
	(void)state;

	assert_int_equal(graft_model_add_tensor(m, "w", GRAFT_FLOAT, 2, (int64_t[]){2, 2}, w,
						GRAFT_ROLE_PARAMETER, GRAFT_SOURCE_INITIALIZER, &i,
						&err), 0);
	assert_int_equal(i, 3);
	Onnx__ModelProto *mp = export_onnx(m, &bytes, &len);
	assert_int_equal(mp->graph->n_initializer, 1);
	const Onnx__TensorProto *tp = find_initializer(mp, "w");
	assert_non_null(tp);
	assert_int_equal(tp->data_type, GRAFT_FLOAT);
	assert_int_equal(tp->n_dims, 2);
	assert_int_equal(tp->dims[0], 2);
	assert_int_equal(tp->dims[1], 2);
	assert_true(tp->has_raw_data);
	assert_int_equal(tp->raw_data.len, sizeof(w));
	assert_memory_equal(tp->raw_data.data, w, sizeof(w));
	assert_null(memmem(bytes, len, xs, sizeof(xs)));     /* no detached bytes at all */
	assert_int_equal(mp->n_metadata_props, 2);
	onnx__model_proto__free_unpacked(mp, NULL);

	/* The export reads back as a model with that one stored tensor. */
	assert_int_equal(graft_model_read_memory(&r, bytes, len, NULL, "onnx", &err), 0);
	assert_int_equal(graft_model_tensor_count(r), 1);
	assert_int_equal(graft_model_find_tensor(r, "w"), 0);
	free(bytes);
	graft_model_free(r);
	graft_model_free(m);
}

static void test_add_initializer_to_existing_graph(void **state)
{
	struct graft_model *m = tiny_cnn(), *r;
	struct graft_err err = {0};
	struct graft_tensor t;
	size_t n = graft_model_tensor_count(m), i;
	int64_t dims[3] = {2, 1, 3};
	uint8_t *bytes;
	size_t len;
	(void)state;

	/* data NULL: zeros */
	assert_int_equal(graft_model_add_tensor(m, "extra", GRAFT_DOUBLE, 3, dims, NULL,
						GRAFT_ROLE_PARAMETER, GRAFT_SOURCE_INITIALIZER, &i,
						&err), 0);
	assert_int_equal(i, n);
	graft_model_tensor(m, i, &t);
	assert_int_equal(t.trainable, 1);
	assert_int_equal(t.nbytes, 6 * 8);
	for (size_t k = 0; k < 6; k++)
		assert_true(((const double *)t.data)[k] == 0.0);
	const double v[6] = {1, 2, 3, 4, 5, 6};
	assert_int_equal(graft_model_set_tensor_data(m, i, v, sizeof(v), &err), 0);
	assert_int_equal(graft_model_add_tensor(m, "state.m", GRAFT_FLOAT, 1, (int64_t[]){3},
						NULL, GRAFT_ROLE_STATE, GRAFT_SOURCE_DETACHED, NULL,
						&err), 0);

	Onnx__ModelProto *mp = export_onnx(m, &bytes, &len);
	assert_int_equal(mp->graph->n_initializer, 12);
	const Onnx__TensorProto *tp = find_initializer(mp, "extra");
	assert_non_null(tp);
	assert_int_equal(tp->data_type, GRAFT_DOUBLE);
	assert_int_equal(tp->n_dims, 3);
	assert_memory_equal(tp->dims, dims, sizeof(dims));
	assert_int_equal(tp->raw_data.len, sizeof(v));
	assert_memory_equal(tp->raw_data.data, v, sizeof(v));
	assert_null(find_initializer(mp, "state.m"));
	/* The original tensors are still exported with their own encodings. */
	assert_int_equal(find_initializer(mp, "B")->n_float_data, 3);
	onnx__model_proto__free_unpacked(mp, NULL);
	free(bytes);

	/* Through an archive: the skeleton slot of the new initializer binds again. */
	char *path = write_graft(m);
	assert_int_equal(graft_model_read(&r, path, 0, &err), 0);
	assert_int_equal(graft_model_tensor_count(r), n + 2);
	graft_model_tensor(r, n, &t);
	assert_string_equal(t.name, "extra");
	assert_int_equal(t.source, GRAFT_SOURCE_INITIALIZER);
	assert_int_equal(t.role, GRAFT_ROLE_PARAMETER);
	assert_int_equal(t.trainable, 1);
	assert_memory_equal(t.data, v, sizeof(v));
	graft_model_tensor(r, n + 1, &t);
	assert_int_equal(t.source, GRAFT_SOURCE_DETACHED);
	assert_int_equal(graft_model_alias_count(r), 1);
	graft_model_free(r);
	unlink(path);
	free(path);
	graft_model_free(m);
}

static void test_set_data_on_mapped_tensor(void **state)
{
	struct graft_model *m = tiny_cnn(), *r, *r2;
	struct graft_err err = {0};
	struct graft_tensor t, before;
	char *path = write_graft(m);
	float w[54];
	(void)state;

	for (int k = 0; k < 54; k++)
		w[k] = (float)k;
	assert_int_equal(graft_model_read(&r, path, 0, &err), 0);
	long wi = graft_model_find_tensor(r, "W");
	assert_true(wi >= 0);
	graft_model_tensor(r, (size_t)wi, &before);
	assert_int_equal(r->tensors[wi].owner, OWNER_MAP);
	assert_int_equal(graft_model_set_tensor_data(r, (size_t)wi, w, sizeof(w), &err), 0);
	assert_int_equal(r->tensors[wi].owner, OWNER_HEAP);
	graft_model_tensor(r, (size_t)wi, &t);
	assert_ptr_not_equal(t.data, before.data);
	assert_memory_equal(t.data, w, sizeof(w));
	/* The mapping is untouched (and was not freed: free() of it would crash). */
	assert_memory_not_equal(before.data, w, sizeof(w));
	/* A heap tensor replaced again frees its previous copy (valgrind/asan check it). */
	w[0] = -1;
	assert_int_equal(graft_model_set_tensor_data(r, (size_t)wi, w, sizeof(w), &err), 0);

	char *path2 = write_graft(r);
	assert_int_equal(graft_model_read(&r2, path2, 0, &err), 0);
	graft_model_tensor(r2, (size_t)wi, &t);
	assert_memory_equal(t.data, w, sizeof(w));
	assert_int_equal(t.trainable, 1);
	graft_model_free(r2);
	graft_model_free(r);
	unlink(path);
	unlink(path2);
	free(path);
	free(path2);
	graft_model_free(m);
}

static void test_remove(void **state)
{
	struct graft_model *m = tiny_cnn(), *r;
	struct graft_err err = {0};
	struct graft_alias a;
	size_t n = graft_model_tensor_count(m);
	uint8_t *bytes;
	size_t len;
	(void)state;

	assert_int_equal(graft_model_find_tensor(m, "W"), 0);
	assert_int_equal(graft_model_find_tensor(m, "scale"), 2);
	assert_int_equal(graft_model_remove_tensor(m, 0, &err), 0);
	assert_int_equal(graft_model_tensor_count(m), n - 1);
	assert_int_equal(graft_model_find_tensor(m, "W"), -1);
	assert_int_equal(graft_model_find_tensor(m, "scale"), 1);
	/* The alias var = Identity(scale) follows its tensor's new index. */
	assert_int_equal(graft_model_alias_count(m), 1);
	graft_model_alias(m, 0, &a);
	assert_int_equal(a.tensor, 1);
	assert_string_equal(a.tensor_name, "scale");

	Onnx__ModelProto *mp = export_onnx(m, &bytes, &len);
	assert_int_equal(mp->graph->n_initializer, 10);
	assert_null(find_initializer(mp, "W"));
	onnx__model_proto__free_unpacked(mp, NULL);
	free(bytes);

	/* A Constant node's value cannot go alone. */
	long c = graft_model_find_tensor(m, "mulv");
	assert_true(c >= 0);
	assert_int_equal(graft_model_remove_tensor(m, (size_t)c, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "Constant"));
	assert_int_equal(graft_model_remove_tensor(m, n - 1, &err), GRAFT_EINVAL);
	assert_int_equal(graft_model_remove_tensor(m, (size_t)-1, &err), GRAFT_EINVAL);

	/* Detached tensors go from the archive; the rest reads back. */
	assert_int_equal(graft_model_add_tensor(m, "d", GRAFT_UINT8, 1, (int64_t[]){5}, NULL,
						GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED, NULL, &err), 0);
	assert_int_equal(graft_model_remove_tensor(m, n - 1, &err), 0);
	assert_int_equal(graft_model_tensor_count(m), n - 1);
	char *path = write_graft(m);
	assert_int_equal(graft_model_read(&r, path, 0, &err), 0);
	assert_int_equal(graft_model_tensor_count(r), n - 1);
	assert_int_equal(graft_model_find_tensor(r, "d"), -1);
	/* Nothing detached is left, so the archive is version 1 again. */
	size_t alen;
	uint8_t *ab = tm_slurp(path, &alen);
	assert_memory_equal(ab + 512, "graft-archive 1\n", 16);
	free(ab);
	graft_model_free(r);
	unlink(path);
	free(path);
	graft_model_free(m);
}

static void test_refusals(void **state)
{
	struct graft_model *m = tiny_cnn();
	struct graft_err err = {0};
	size_t n = graft_model_tensor_count(m);
	int64_t two[1] = {2}, neg[1] = {-1};
	float f[2] = {1, 2};
	(void)state;

#define ADD(name, dtype, rank, dims, role, source) \
	graft_model_add_tensor(m, name, dtype, rank, dims, NULL, role, source, NULL, &err)
	/* Names already taken: a stored tensor, a graph input, a node output, an
	 * initializer... */
	assert_int_equal(ADD("W", GRAFT_FLOAT, 1, two, GRAFT_ROLE_PARAMETER,
			     GRAFT_SOURCE_INITIALIZER), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "'W'"));
	assert_int_equal(ADD("W", GRAFT_FLOAT, 1, two, GRAFT_ROLE_STATE, GRAFT_SOURCE_DETACHED),
			 GRAFT_EINVAL);
	assert_int_equal(ADD("x", GRAFT_FLOAT, 1, two, GRAFT_ROLE_PARAMETER,
			     GRAFT_SOURCE_INITIALIZER), GRAFT_EINVAL);
	assert_int_equal(ADD("bn_out", GRAFT_FLOAT, 1, two, GRAFT_ROLE_PARAMETER,
			     GRAFT_SOURCE_INITIALIZER), GRAFT_EINVAL);
	/* ...but a detached tensor has no place in the graph, so graph names are free. */
	assert_int_equal(ADD("x", GRAFT_FLOAT, 1, two, GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED), 0);
	/* Bad types, shapes, roles, sources. */
	assert_int_equal(ADD("s", GRAFT_STRING, 1, two, GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED),
			 GRAFT_EINVAL);
	assert_int_equal(ADD("s", GRAFT_FLOAT, 1, neg, GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED),
			 GRAFT_EINVAL);
	assert_int_equal(ADD("s", GRAFT_FLOAT, 1, NULL, GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED),
			 GRAFT_EINVAL);
	assert_int_equal(ADD("s", GRAFT_FLOAT, 1, two, (enum graft_role)9, GRAFT_SOURCE_DETACHED),
			 GRAFT_EINVAL);
	assert_int_equal(ADD("s", GRAFT_FLOAT, 1, two, GRAFT_ROLE_DATA, GRAFT_SOURCE_CONSTANT),
			 GRAFT_EINVAL);
	assert_int_equal(ADD("", GRAFT_FLOAT, 1, two, GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED),
			 GRAFT_EINVAL);
	assert_int_equal(ADD(NULL, GRAFT_FLOAT, 1, two, GRAFT_ROLE_DATA, GRAFT_SOURCE_DETACHED),
			 GRAFT_EINVAL);
#undef ADD
	assert_int_equal(graft_model_tensor_count(m), n + 1);
	/* Only parameters train. */
	assert_int_equal(graft_model_set_trainable(m, n, 1, &err), GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "not a parameter"));
	assert_int_equal(graft_model_set_trainable(m, n, 0, &err), 0);
	/* Sizes must match; indices must exist. */
	assert_int_equal(graft_model_set_tensor_data(m, n, f, 4, &err), GRAFT_EINVAL);
	assert_int_equal(graft_model_set_tensor_data(m, n, f, 12, &err), GRAFT_EINVAL);
	assert_int_equal(graft_model_set_tensor_data(m, n, NULL, 8, &err), GRAFT_EINVAL);
	assert_int_equal(graft_model_set_tensor_data(m, n + 1, f, 8, &err), GRAFT_EINVAL);
	assert_int_equal(graft_model_set_tensor_data(m, n, f, 8, &err), 0);
	assert_int_equal(graft_model_remove_tensor(m, n + 1, &err), GRAFT_EINVAL);
	graft_model_free(m);
}

/* Models of IR version < 4 list every initializer among the graph inputs: an added one
 * is listed, and a removed one leaves the list too. */
static void test_old_ir_initializer_is_an_input(void **state)
{
	Onnx__ModelProto *mp = tm_tiny_cnn();
	struct graft_model *m;
	struct graft_err err = {0};
	size_t len, i;
	uint8_t *b;
	(void)state;

	mp->ir_version = 3;
	b = tm_pack(mp, &len);
	onnx__model_proto__free_unpacked(mp, NULL);
	assert_int_equal(graft_model_read_memory(&m, b, len, NULL, "ir3", &err), 0);
	free(b);
	assert_int_equal(m->proto->graph->n_input, 1);
	assert_int_equal(graft_model_input_count(m), 1);
	assert_int_equal(graft_model_add_tensor(m, "k", GRAFT_INT8, 2, (int64_t[]){1, 4}, NULL,
						GRAFT_ROLE_CONSTANT, GRAFT_SOURCE_INITIALIZER, &i,
						&err), 0);
	assert_int_equal(m->proto->graph->n_input, 2);
	assert_int_equal(graft_model_input_count(m), 1);     /* still only x for a runtime */
	const Onnx__ValueInfoProto *vi = m->proto->graph->input[1];
	assert_string_equal(vi->name, "k");
	assert_int_equal(vi->type->tensor_type->elem_type, GRAFT_INT8);
	assert_int_equal(vi->type->tensor_type->shape->n_dim, 2);
	assert_int_equal(vi->type->tensor_type->shape->dim[1]->dim_value, 4);
	assert_int_equal(graft_model_remove_tensor(m, i, &err), 0);
	assert_int_equal(m->proto->graph->n_input, 1);
	assert_string_equal(m->proto->graph->input[0]->name, "x");
	assert_int_equal(graft_model_input_count(m), 1);
	graft_model_free(m);
}

/* An IR 3 model lists its initializers as inputs.  Telling the real inputs from them
 * used to compare every input with every initializer on every query, so that asking for
 * the inputs of a model of 200,000 initializers one by one took hours; it is now one
 * pass over a map, made once. */
static void test_many_initializers_as_inputs(void **state)
{
	enum { N = 200000 };
	Onnx__ModelProto *mp = tm_model(13);
	struct graft_model *m;
	struct graft_err err = {0};
	struct graft_value_info vi;
	size_t len;
	uint8_t *b;
	int64_t one = 1;
	float v = 0;
	char name[32];
	(void)state;

	mp->ir_version = 3;
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "w%d", i);
		Onnx__TensorProto *t = tm_tensor(name, GRAFT_FLOAT, 1, &one);
		tm_raw(t, &v, sizeof(v));
		tm_initializer(mp, t);
		tm_input(mp, name, GRAFT_FLOAT, 1, &one);
		if (i == N / 2)
			tm_input(mp, "x", GRAFT_FLOAT, 1, &one);
	}
	tm_node(mp, "Identity", "id", (const char *[]){"x", NULL}, (const char *[]){"y", NULL});
	tm_output(mp, "y", GRAFT_FLOAT, 1, &one);
	b = tm_pack(mp, &len);
	onnx__model_proto__free_unpacked(mp, NULL);
	assert_int_equal(graft_model_read_memory(&m, b, len, NULL, "many", &err), 0);
	free(b);
	for (size_t i = 0; i < graft_model_input_count(m); i++) {
		graft_model_input(m, i, &vi);
		assert_string_equal(vi.name, "x");
	}
	assert_int_equal(graft_model_input_count(m), 1);
	graft_model_free(m);
}

/* Version 1 archives cannot say "detached" or "state": a reader refuses them there. */
static void test_new_words_need_version_2(void **state)
{
	struct graft_model *m = detached_model(), *r;
	struct graft_err err = {0};
	char *path = write_graft(m);
	size_t len;
	uint8_t *b = tm_slurp(path, &len);
	uint8_t *at = memmem(b, len, "graft-archive 2", 15);
	(void)state;

	assert_non_null(at);
	at[14] = '1';
	assert_int_equal(graft_model_read_memory(&r, b, len, NULL, "v1", &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "malformed"));
	at[14] = '3';
	assert_int_equal(graft_model_read_memory(&r, b, len, NULL, "v3", &err),
			 GRAFT_EUNSUPPORTED);
	free(b);
	unlink(path);
	free(path);
	graft_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_model),
		cmocka_unit_test(test_metadata),
		cmocka_unit_test(test_detached_roundtrip),
		cmocka_unit_test(test_onnx_export_leaves_out_detached),
		cmocka_unit_test(test_add_initializer_to_existing_graph),
		cmocka_unit_test(test_set_data_on_mapped_tensor),
		cmocka_unit_test(test_remove),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_old_ir_initializer_is_an_input),
		cmocka_unit_test(test_many_initializers_as_inputs),
		cmocka_unit_test(test_new_words_need_version_2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
