/*
 * dtype.c: element types, numbered as ONNX's TensorProto.DataType so that no
 * translation table stands between a model and graft.
 */
#include <string.h>

#include "base/base.h"

static const struct {
	const char *name;
	size_t size;
} dtypes[] = {
	[GRAFT_UNDEFINED] = {"undefined", 0}, [GRAFT_FLOAT] = {"float", 4},
	[GRAFT_UINT8] = {"uint8", 1},         [GRAFT_INT8] = {"int8", 1},
	[GRAFT_UINT16] = {"uint16", 2},       [GRAFT_INT16] = {"int16", 2},
	[GRAFT_INT32] = {"int32", 4},         [GRAFT_INT64] = {"int64", 8},
	[GRAFT_STRING] = {"string", 0},       [GRAFT_BOOL] = {"bool", 1},
	[GRAFT_FLOAT16] = {"float16", 2},     [GRAFT_DOUBLE] = {"double", 8},
	[GRAFT_UINT32] = {"uint32", 4},       [GRAFT_UINT64] = {"uint64", 8},
	[GRAFT_COMPLEX64] = {"complex64", 8}, [GRAFT_COMPLEX128] = {"complex128", 16},
	[GRAFT_BFLOAT16] = {"bfloat16", 2},
};
#define N_DTYPES (sizeof(dtypes) / sizeof(dtypes[0]))

size_t graft_dtype_size(int dtype)
{
	return dtype >= 0 && (size_t)dtype < N_DTYPES ? dtypes[dtype].size : 0;
}

const char *graft_dtype_name(int dtype)
{
	return dtype >= 0 && (size_t)dtype < N_DTYPES ? dtypes[dtype].name : NULL;
}

int graft_dtype_from_name(const char *name)
{
	for (size_t i = 0; i < N_DTYPES; i++)
		if (strcmp(dtypes[i].name, name) == 0)
			return (int)i;
	return -1;
}

int graft_dtype_is_float(int dtype)
{
	return dtype == GRAFT_FLOAT || dtype == GRAFT_FLOAT16 || dtype == GRAFT_BFLOAT16 ||
	       dtype == GRAFT_DOUBLE;
}
