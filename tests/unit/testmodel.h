/*
 * testmodel.h: builds small ONNX models in memory for the unit tests, with protobuf-c
 * directly, so that every encoding and corner case can be made on purpose.  Everything
 * is malloc'd, so onnx__model_proto__free_unpacked(mp, NULL) frees a whole model.
 */
#ifndef TESTMODEL_H
#define TESTMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "graft.h"
#include "onnx.pb-c.h"

Onnx__ModelProto *tm_model(int64_t opset);
Onnx__TensorProto *tm_tensor(const char *name, int dtype, int rank, const int64_t *dims);
void tm_raw(Onnx__TensorProto *t, const void *data, size_t len);
void tm_float_data(Onnx__TensorProto *t, const float *v, size_t n);
void tm_int32_data(Onnx__TensorProto *t, const int32_t *v, size_t n);
void tm_int64_data(Onnx__TensorProto *t, const int64_t *v, size_t n);
void tm_uint64_data(Onnx__TensorProto *t, const uint64_t *v, size_t n);
void tm_external(Onnx__TensorProto *t, const char *location, const char *offset,
		 const char *length);
void tm_initializer(Onnx__ModelProto *m, Onnx__TensorProto *t);
/* A float initializer of dims, its values in [lo, hi): a fixed sequence per seed. */
void tm_init_floats(Onnx__ModelProto *mp, const char *name, int rank, const int64_t *dims,
		    unsigned seed, float lo, float hi);
/* Adds a node; inputs and outputs are NULL-terminated lists. */
Onnx__NodeProto *tm_node(Onnx__ModelProto *m, const char *op, const char *name,
			 const char *const *inputs, const char *const *outputs);
void tm_attr_tensor(Onnx__NodeProto *n, const char *name, Onnx__TensorProto *t);
void tm_attr_int(Onnx__NodeProto *n, const char *name, int64_t v);
void tm_attr_float(Onnx__NodeProto *n, const char *name, float v);
void tm_attr_ints(Onnx__NodeProto *n, const char *name, const int64_t *v, size_t count);
/* Moves sub's graph (built with tm_model, tm_node...) into attribute name of n, and
 * frees the rest of sub. */
void tm_attr_graph(Onnx__NodeProto *n, const char *name, Onnx__ModelProto *sub);
void tm_input(Onnx__ModelProto *m, const char *name, int dtype, int rank, const int64_t *dims);
void tm_output(Onnx__ModelProto *m, const char *name, int dtype, int rank, const int64_t *dims);
/* Serializes into a new buffer. */
uint8_t *tm_pack(const Onnx__ModelProto *m, size_t *len);
/* The model mp describes, read as graft reads a file (mp is freed); fails the test when
 * graft refuses it.  tm_unload is the matching CMocka teardown for *state. */
struct graft_model *tm_load(Onnx__ModelProto *mp);
int tm_unload(void **state);

/* A small convolutional classifier exercising every payload encoding, roles, an
 * Identity alias and Constant nodes (described in testmodel.c). */
Onnx__ModelProto *tm_tiny_cnn(void);

/* Reads a whole file into a new buffer. */
uint8_t *tm_slurp(const char *path, size_t *len);
/* Writes the len bytes of buf to path (replacing it), or fails the test. */
void tm_put(const char *path, const void *buf, size_t len);
/* A w x h PNG (8-bit RGB, or grey) of pixel values (x * 40 + y * 7 + c * 90) & 0xff, in
 * a new buffer of *len bytes. */
void *tm_png(int w, int h, int grey, size_t *len);
/* A new temporary directory (free the returned string). */
char *tm_tempdir(void);

/* The 8 samples the trainer's tests train on: x [8, 4] floats, y [8] labels in 0..2. */
#define TM_SAMPLES 8
#define TM_FEATURES 4
#define TM_CLASSES 3
struct tm_data {
	float xs[TM_SAMPLES * TM_FEATURES];
	int64_t ys[TM_SAMPLES];
	struct graft_array x, y;
};
void tm_make_data(struct tm_data *d);
/* x [batch, 4] -> Gemm (W1 [4, 4]) -> Relu -> r1 -> Gemm (W2 [4, 4]) -> Relu -> r2 -> Gemm
 * (W [3, 4]) -> y: two block boundaries (r1, r2), so W is the head (depth 0), W2 at depth
 * 1, W1 at depth 2.  layers 1: the last Gemm alone (no boundary). */
struct graft_model *tm_mlp(int layers);

#endif
