/* testmodel.c: see testmodel.h. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <png.h>

#include "testmodel.h"

/* Room for element n of arr, doubling when it is full: a test that adds 200,000 items
 * must not copy the array 200,000 times (ASan's realloc always copies).  The room left
 * is asked of the allocator, since some tests grow these arrays by hand. */
#define GROW(arr, n) \
	(malloc_usable_size(arr) >= sizeof(*(arr)) * ((n) + 1) ? (arr) : \
	 ((arr) = realloc((arr), sizeof(*(arr)) * ((n) ? 2 * (n) : 1))))

Onnx__ModelProto *tm_model(int64_t opset)
{
	Onnx__ModelProto *m = malloc(sizeof(*m));
	Onnx__OperatorSetIdProto *o = malloc(sizeof(*o));

	onnx__model_proto__init(m);
	onnx__operator_set_id_proto__init(o);
	o->domain = strdup("");
	o->has_version = 1;
	o->version = opset;
	m->has_ir_version = 1;
	m->ir_version = 8;
	m->producer_name = strdup("graft-tests");
	m->opset_import = malloc(sizeof(*m->opset_import));
	m->opset_import[0] = o;
	m->n_opset_import = 1;
	m->graph = malloc(sizeof(*m->graph));
	onnx__graph_proto__init(m->graph);
	m->graph->name = strdup("tiny");
	return m;
}

Onnx__TensorProto *tm_tensor(const char *name, int dtype, int rank, const int64_t *dims)
{
	Onnx__TensorProto *t = malloc(sizeof(*t));

	onnx__tensor_proto__init(t);
	t->name = name ? strdup(name) : NULL;
	t->has_data_type = 1;
	t->data_type = dtype;
	t->n_dims = (size_t)rank;
	t->dims = malloc(sizeof(int64_t) * (rank ? (size_t)rank : 1));
	if (rank)
		memcpy(t->dims, dims, sizeof(int64_t) * (size_t)rank);
	return t;
}

void tm_raw(Onnx__TensorProto *t, const void *data, size_t len)
{
	t->has_raw_data = 1;
	t->raw_data.len = len;
	t->raw_data.data = malloc(len ? len : 1);
	memcpy(t->raw_data.data, data, len);
}

#define REPEATED(fn, type, field)                                               \
	void fn(Onnx__TensorProto *t, const type *v, size_t n)                  \
	{                                                                       \
		t->field = malloc(sizeof(type) * (n ? n : 1));                  \
		memcpy(t->field, v, sizeof(type) * n);                          \
		t->n_##field = n;                                               \
	}
REPEATED(tm_float_data, float, float_data)
REPEATED(tm_int32_data, int32_t, int32_data)
REPEATED(tm_int64_data, int64_t, int64_data)
REPEATED(tm_uint64_data, uint64_t, uint64_data)

static void add_entry(Onnx__TensorProto *t, const char *k, const char *v)
{
	Onnx__StringStringEntryProto *e = malloc(sizeof(*e));

	onnx__string_string_entry_proto__init(e);
	e->key = strdup(k);
	e->value = strdup(v);
	GROW(t->external_data, t->n_external_data);
	t->external_data[t->n_external_data++] = e;
}

void tm_external(Onnx__TensorProto *t, const char *location, const char *offset,
		 const char *length)
{
	add_entry(t, "location", location);
	if (offset)
		add_entry(t, "offset", offset);
	if (length)
		add_entry(t, "length", length);
	t->has_data_location = 1;
	t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
}

void tm_initializer(Onnx__ModelProto *m, Onnx__TensorProto *t)
{
	Onnx__GraphProto *g = m->graph;

	GROW(g->initializer, g->n_initializer);
	g->initializer[g->n_initializer++] = t;
}

static size_t count(const char *const *list)
{
	size_t n = 0;
	while (list && list[n])
		n++;
	return n;
}

static char **strdupv(const char *const *list, size_t n)
{
	char **v = malloc(sizeof(char *) * (n ? n : 1));
	for (size_t i = 0; i < n; i++)
		v[i] = strdup(list[i]);
	return v;
}

Onnx__NodeProto *tm_node(Onnx__ModelProto *m, const char *op, const char *name,
			 const char *const *inputs, const char *const *outputs)
{
	Onnx__GraphProto *g = m->graph;
	Onnx__NodeProto *n = malloc(sizeof(*n));

	onnx__node_proto__init(n);
	n->op_type = strdup(op);
	n->name = name ? strdup(name) : NULL;
	n->n_input = count(inputs);
	n->input = strdupv(inputs, n->n_input);
	n->n_output = count(outputs);
	n->output = strdupv(outputs, n->n_output);
	GROW(g->node, g->n_node);
	g->node[g->n_node++] = n;
	return n;
}

static Onnx__AttributeProto *new_attr(Onnx__NodeProto *n, const char *name)
{
	Onnx__AttributeProto *a = malloc(sizeof(*a));

	onnx__attribute_proto__init(a);
	a->name = strdup(name);
	a->has_type = 1;
	GROW(n->attribute, n->n_attribute);
	n->attribute[n->n_attribute++] = a;
	return a;
}

void tm_attr_tensor(Onnx__NodeProto *n, const char *name, Onnx__TensorProto *t)
{
	Onnx__AttributeProto *a = new_attr(n, name);
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
	a->t = t;
}

void tm_attr_int(Onnx__NodeProto *n, const char *name, int64_t v)
{
	Onnx__AttributeProto *a = new_attr(n, name);
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
	a->has_i = 1;
	a->i = v;
}

void tm_attr_float(Onnx__NodeProto *n, const char *name, float v)
{
	Onnx__AttributeProto *a = new_attr(n, name);
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
	a->has_f = 1;
	a->f = v;
}

void tm_attr_graph(Onnx__NodeProto *n, const char *name, Onnx__ModelProto *sub)
{
	Onnx__AttributeProto *a = new_attr(n, name);
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
	a->g = sub->graph;
	sub->graph = NULL;
	onnx__model_proto__free_unpacked(sub, NULL);
}

void tm_attr_ints(Onnx__NodeProto *n, const char *name, const int64_t *v, size_t count)
{
	Onnx__AttributeProto *a = new_attr(n, name);
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
	a->n_ints = count;
	a->ints = malloc(sizeof(int64_t) * (count ? count : 1));
	memcpy(a->ints, v, sizeof(int64_t) * count);
}

static Onnx__ValueInfoProto *value_info(const char *name, int dtype, int rank,
					const int64_t *dims)
{
	Onnx__ValueInfoProto *v = malloc(sizeof(*v));
	Onnx__TypeProto *tp = malloc(sizeof(*tp));
	Onnx__TypeProto__Tensor *tt = malloc(sizeof(*tt));
	Onnx__TensorShapeProto *sh = malloc(sizeof(*sh));

	onnx__value_info_proto__init(v);
	onnx__type_proto__init(tp);
	onnx__type_proto__tensor__init(tt);
	onnx__tensor_shape_proto__init(sh);
	v->name = strdup(name);
	v->type = tp;
	tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	tp->tensor_type = tt;
	tt->has_elem_type = 1;
	tt->elem_type = dtype;
	tt->shape = sh;
	sh->n_dim = (size_t)rank;
	sh->dim = malloc(sizeof(*sh->dim) * (rank ? (size_t)rank : 1));
	for (int i = 0; i < rank; i++) {
		Onnx__TensorShapeProto__Dimension *d = malloc(sizeof(*d));
		onnx__tensor_shape_proto__dimension__init(d);
		if (dims[i] < 0) {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
			d->dim_param = strdup("batch");
		} else {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
			d->dim_value = dims[i];
		}
		sh->dim[i] = d;
	}
	return v;
}

void tm_input(Onnx__ModelProto *m, const char *name, int dtype, int rank, const int64_t *dims)
{
	Onnx__GraphProto *g = m->graph;
	GROW(g->input, g->n_input);
	g->input[g->n_input++] = value_info(name, dtype, rank, dims);
}

void tm_output(Onnx__ModelProto *m, const char *name, int dtype, int rank, const int64_t *dims)
{
	Onnx__GraphProto *g = m->graph;
	GROW(g->output, g->n_output);
	g->output[g->n_output++] = value_info(name, dtype, rank, dims);
}

uint8_t *tm_pack(const Onnx__ModelProto *m, size_t *len)
{
	size_t n = onnx__model_proto__get_packed_size(m);
	uint8_t *b = malloc(n ? n : 1);
	*len = onnx__model_proto__pack(m, b);
	return b;
}

/*
 * x (N,2,4,4) -> Conv(W raw, B float_data) -> BatchNormalization(scale, bias, mean,
 * var = Identity(scale), as torch aliases equal initializers) -> Relu -> Reshape(shape
 * as int64_data) -> Mul(by a Constant of float_data values) -> Add(Constant scalar eps)
 * -> Gemm(fcW raw, fcB raw) -> y (N,3).  Also: an int8 initializer in int32_data, a
 * uint32 one in uint64_data and a float16 one in int32_data, unused.
 */
Onnx__ModelProto *tm_tiny_cnn(void)
{
	Onnx__ModelProto *m = tm_model(13);
	int64_t xdims[] = {-1, 2, 4, 4}, wd[] = {3, 2, 3, 3}, c3[] = {3}, sd[] = {2},
		fd[] = {3, 48}, ydims[] = {-1, 3}, small[] = {4};
	float w[54], b[3] = {0.1f, -0.2f, 0.3f}, ones[3] = {1, 1, 1}, zeros[3] = {0, 0, 0},
	      mulv[48], fw[144], fb[3] = {1, 2, 3}, eps = 1e-5f;
	int64_t shape[] = {-1, 48};
	int32_t i8[] = {-128, 0, 5, 127}, f16[] = {0x3c00, 0, 0xbc00, 0x7bff};
	uint64_t u32[] = {0, 1, 4000000000u, 7};
	Onnx__TensorProto *t;
	Onnx__NodeProto *n;

	for (int i = 0; i < 54; i++)
		w[i] = (float)(i % 7) * 0.1f - 0.3f;
	for (int i = 0; i < 48; i++)
		mulv[i] = 1.0f + (float)i / 48;
	for (int i = 0; i < 144; i++)
		fw[i] = (float)(i % 11) * 0.01f;
	tm_input(m, "x", 1, 4, xdims);
	tm_output(m, "y", 1, 2, ydims);
	t = tm_tensor("W", 1, 4, wd); tm_raw(t, w, sizeof(w)); tm_initializer(m, t);
	t = tm_tensor("B", 1, 1, c3); tm_float_data(t, b, 3); tm_initializer(m, t);
	t = tm_tensor("scale", 1, 1, c3); tm_raw(t, ones, sizeof(ones)); tm_initializer(m, t);
	t = tm_tensor("bias", 1, 1, c3); tm_raw(t, zeros, sizeof(zeros)); tm_initializer(m, t);
	t = tm_tensor("mean", 1, 1, c3); tm_float_data(t, zeros, 3); tm_initializer(m, t);
	t = tm_tensor("shape", 7, 1, sd); tm_int64_data(t, shape, 2); tm_initializer(m, t);
	t = tm_tensor("fcW", 1, 2, fd); tm_raw(t, fw, sizeof(fw)); tm_initializer(m, t);
	t = tm_tensor("fcB", 1, 1, c3); tm_raw(t, fb, sizeof(fb)); tm_initializer(m, t);
	t = tm_tensor("i8", 3, 1, small); tm_int32_data(t, i8, 4); tm_initializer(m, t);
	t = tm_tensor("u32", 12, 1, small); tm_uint64_data(t, u32, 4); tm_initializer(m, t);
	t = tm_tensor("f16", 10, 1, small); tm_int32_data(t, f16, 4); tm_initializer(m, t);

	tm_node(m, "Identity", "alias", (const char *[]){"scale", NULL},
		(const char *[]){"var", NULL});
	tm_node(m, "Conv", "conv", (const char *[]){"x", "W", "B", NULL},
		(const char *[]){"c", NULL});
	tm_node(m, "BatchNormalization", "bn",
		(const char *[]){"c", "scale", "bias", "mean", "var", NULL},
		(const char *[]){"bn_out", NULL});
	tm_node(m, "Relu", "relu", (const char *[]){"bn_out", NULL}, (const char *[]){"r", NULL});
	tm_node(m, "Reshape", "flat", (const char *[]){"r", "shape", NULL},
		(const char *[]){"f", NULL});
	n = tm_node(m, "Constant", "mulc", NULL, (const char *[]){"mulv", NULL});
	t = tm_tensor(NULL, 1, 1, (int64_t[]){48});
	tm_float_data(t, mulv, 48);
	tm_attr_tensor(n, "value", t);
	tm_node(m, "Mul", "mul", (const char *[]){"f", "mulv", NULL}, (const char *[]){"g", NULL});
	n = tm_node(m, "Constant", "epsc", NULL, (const char *[]){"eps", NULL});
	t = tm_tensor(NULL, 1, 0, NULL);
	tm_raw(t, &eps, 4);
	tm_attr_tensor(n, "value", t);
	tm_node(m, "Add", "add", (const char *[]){"g", "eps", NULL}, (const char *[]){"h", NULL});
	n = tm_node(m, "Gemm", "fc", (const char *[]){"h", "fcW", "fcB", NULL},
		    (const char *[]){"y", NULL});
	tm_attr_int(n, "transB", 1);
	return m;
}

uint8_t *tm_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc(n ? (size_t)n : 1);
	*len = fread(b, 1, (size_t)n, f);
	fclose(f);
	return b;
}

char *tm_tempdir(void)
{
	char tmpl[] = "/tmp/graft-test-XXXXXX";
	return mkdtemp(tmpl) ? strdup(tmpl) : NULL;
}

struct graft_model *tm_load(Onnx__ModelProto *mp)
{
	size_t len;
	uint8_t *buf = tm_pack(mp, &len);
	struct graft_model *m;
	struct graft_err err = {0};

	onnx__model_proto__free_unpacked(mp, NULL);
	if (graft_model_read_memory(&m, buf, len, NULL, "t", &err))
		fail_msg("%s", err.msg);
	free(buf);
	return m;
}

int tm_unload(void **state)
{
	graft_model_free(*state);
	return 0;
}

void tm_put(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

void *tm_png(int w, int h, int grey, size_t *len)
{
	png_image img;
	int ch = grey ? 1 : 3;
	unsigned char *px = malloc((size_t)w * (size_t)h * (size_t)ch);
	png_alloc_size_t size = 0;
	void *buf;

	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int c = 0; c < ch; c++)
				px[((size_t)y * (size_t)w + (size_t)x) * (size_t)ch + (size_t)c] =
					(unsigned char)((x * 40 + y * 7 + c * 90) & 0xff);
	memset(&img, 0, sizeof(img));
	img.version = PNG_IMAGE_VERSION;
	img.width = (png_uint_32)w;
	img.height = (png_uint_32)h;
	img.format = grey ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
	assert_true(png_image_write_get_memory_size(img, size, 0, px, 0, NULL));
	buf = malloc(size);
	assert_true(png_image_write_to_memory(&img, buf, &size, 0, px, 0, NULL));
	free(px);
	*len = size;
	return buf;
}

void tm_make_data(struct tm_data *d)
{
	for (int i = 0; i < TM_SAMPLES * TM_FEATURES; i++)
		d->xs[i] = (float)((i * 13) % 11) * 0.25f - 1.2f;
	for (int i = 0; i < TM_SAMPLES; i++)
		d->ys[i] = (i * 2) % TM_CLASSES;
	d->x = (struct graft_array){.dtype = GRAFT_FLOAT, .rank = 2,
				    .dims = {TM_SAMPLES, TM_FEATURES}, .data = d->xs,
				    .nbytes = sizeof(d->xs)};
	d->y = (struct graft_array){.dtype = GRAFT_INT64, .rank = 1, .dims = {TM_SAMPLES},
				    .data = d->ys, .nbytes = sizeof(d->ys)};
}

/* The last `layers` of the three Gemms (testmodel.h). */
struct graft_model *tm_mlp(int layers)
{
	Onnx__ModelProto *mp = tm_model(13);
	Onnx__TensorProto *t;
	float w[3][TM_FEATURES * TM_FEATURES];
	const char *names[3] = {"W1", "W2", "W"}, *ins[3] = {"x", "r1", "r2"};
	const char *outs[3] = {"h1", "h2", "y"}, *relu[2] = {"r1", "r2"};

	for (int k = 0; k < 3; k++)
		for (int i = 0; i < TM_FEATURES * TM_FEATURES; i++)
			w[k][i] = (float)(((i + 3 * k) * 5) % 7) * 0.2f - 0.5f;
	tm_input(mp, "x", 1, 2, (int64_t[]){-1, TM_FEATURES});
	tm_output(mp, "y", 1, 2, (int64_t[]){-1, TM_CLASSES});
	for (int k = 3 - layers; k < 3; k++) {
		int64_t rows = k == 2 ? TM_CLASSES : TM_FEATURES;
		t = tm_tensor(names[k], 1, 2, (int64_t[]){rows, TM_FEATURES});
		tm_raw(t, w[k], (size_t)(rows * TM_FEATURES) * sizeof(float));
		tm_initializer(mp, t);
		tm_attr_int(tm_node(mp, "Gemm", names[k], (const char *[]){
					    layers == 1 ? "x" : ins[k], names[k], NULL},
				    (const char *[]){outs[k], NULL}), "transB", 1);
		if (k < 2)
			tm_node(mp, "Relu", relu[k], (const char *[]){outs[k], NULL},
				(const char *[]){relu[k], NULL});
	}
	return tm_load(mp);
}

void tm_init_floats(Onnx__ModelProto *mp, const char *name, int rank, const int64_t *dims,
		    unsigned seed, float lo, float hi)
{
	Onnx__TensorProto *t = tm_tensor(name, GRAFT_FLOAT, rank, dims);
	size_t n = 1;
	float *v;

	for (int d = 0; d < rank; d++)
		n *= (size_t)dims[d];
	v = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		v[i] = lo + (hi - lo) * (float)((seed >> 8) & 0xffff) / 65536.0f;
	}
	tm_raw(t, v, n * sizeof(float));
	free(v);
	tm_initializer(mp, t);
}
