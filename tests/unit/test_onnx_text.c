/*
 * test_onnx_text.c: ONNX's textual syntax (lib/format/onnx_text.c): a text's fields land
 * where ONNX puts them (tests/conformance/onnx_text.py compares whole models with
 * onnx.parser), the format is recognised from a file's first bytes and not from binary
 * ONNX, errors name the line and column, and nesting is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "format/format.h"

static Onnx__ModelProto *parse_ok(const char *text)
{
	struct graft_err err = {0};
	void *pb;
	size_t len;
	Onnx__ModelProto *mp;

	if (onnx_text_parse(text, strlen(text), &pb, &len, &err)) {
		fprintf(stderr, "parse failed: %s\n", err.msg);
		fail();
	}
	mp = onnx__model_proto__unpack(NULL, len, pb);
	free(pb);
	assert_non_null(mp);
	return mp;
}

static void parse_fails(const char *text, const char *expect)
{
	struct graft_err err = {0};
	void *pb = (void *)1;
	size_t len = 1;

	assert_int_equal(onnx_text_parse(text, strlen(text), &pb, &len, &err), GRAFT_EFORMAT);
	assert_null(pb);
	assert_int_equal(len, 0);
	if (!strstr(err.msg, expect)) {
		fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, expect);
		fail();
	}
}

static void test_fields(void **state)
{
	(void)state;
	Onnx__ModelProto *mp = parse_ok(
		"<ir_version: 8, opset_import: [\"\" : 13, \"com.x\" : 2]>\n"
		"g (float[N,3] x, int64[2] s = {4, -5}) => (float[?] y) <float w = {0.5}> {\n"
		"  y = com.x.Op <alpha = 0.25, k = [1, 2], mode = \"m\"> (x, , s)\n"
		"}\n");
	Onnx__GraphProto *g = mp->graph;
	Onnx__NodeProto *nd;

	assert_true(mp->has_ir_version);
	assert_int_equal(mp->ir_version, 8);
	assert_int_equal(mp->n_opset_import, 2);
	assert_string_equal(mp->opset_import[1]->domain, "com.x");
	assert_int_equal(mp->opset_import[1]->version, 2);
	assert_string_equal(g->name, "g");
	assert_int_equal(g->n_input, 2);
	assert_string_equal(g->input[0]->type->tensor_type->shape->dim[0]->dim_param, "N");
	assert_int_equal(g->input[0]->type->tensor_type->shape->dim[1]->dim_value, 3);
	/* an input with a value is an initializer too; one in <> is an initializer only */
	assert_int_equal(g->n_initializer, 2);
	assert_string_equal(g->initializer[0]->name, "s");
	assert_int_equal(g->initializer[0]->n_int64_data, 2);
	assert_int_equal(g->initializer[0]->int64_data[1], -5);
	assert_string_equal(g->initializer[1]->name, "w");
	assert_int_equal(g->initializer[1]->n_dims, 0);
	assert_true(g->initializer[1]->float_data[0] == 0.5f);
	assert_int_equal(g->n_value_info, 0);
	assert_int_equal(g->output[0]->type->tensor_type->shape->dim[0]->value_case,
			 ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE__NOT_SET);
	nd = g->node[0];
	assert_string_equal(nd->domain, "com.x");
	assert_string_equal(nd->op_type, "Op");
	assert_int_equal(nd->n_input, 3);
	assert_string_equal(nd->input[1], "");
	assert_int_equal(nd->n_attribute, 3);
	assert_int_equal(nd->attribute[0]->type, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
	assert_true(nd->attribute[0]->f == 0.25f);
	assert_int_equal(nd->attribute[1]->type, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
	assert_int_equal(nd->attribute[1]->n_ints, 2);
	assert_int_equal(nd->attribute[2]->s.len, 1);
	onnx__model_proto__free_unpacked(mp, NULL);
}

static void test_detect(void **state)
{
	(void)state;
	static const unsigned char binary[] = {0x08, 0x08, 0x12, 0x04, 't', 'e', 's', 't'};

	assert_true(onnx_text_detect("<ir_version: 8>", 15));
	assert_true(onnx_text_detect("# comment\n  graph (", 19));
	assert_false(onnx_text_detect(binary, sizeof(binary)));
	assert_false(onnx_text_detect("{\"json\": 1}", 11));
	assert_false(onnx_text_detect("   ", 3));
	assert_false(onnx_text_detect("hello, world", 12));
	assert_false(onnx_text_detect("<ir\001", 4));
}

static void test_error_position(void **state)
{
	(void)state;
	parse_fails("<ir_version: 8>\ng (float x) => (float y) {\n  y = Relu(x\n}\n",
		    "line 4, column 1: expected ')'");
	parse_fails("<ir_version: 8>\ng () => () {", "expected '}' before the end");
	parse_fails("<ir_version: 8>", "line 1, column 16");
	parse_fails("g () => () { }", "ir_version");
}

static void test_nul_refused(void **state)
{
	(void)state;
	static const char text[] = "<ir_version: 8> g () => () { }\0";
	struct graft_err err = {0};
	void *pb;
	size_t len;

	assert_int_equal(onnx_text_parse(text, sizeof(text), &pb, &len, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "NUL"));
}

/* seq, map, optional and sparse_tensor types (ONNX 1.12's parser reads them only inside
 * one another), and a value named like one of them. */
static void test_compound_types(void **state)
{
	(void)state;
	Onnx__ModelProto *mp = parse_ok(
		"<ir_version: 8> g (seq(float[N]) s, map(int64, optional(float[2])) m,\n"
		"  sparse_tensor(float[4,4]) sp, float seq) => (float y) { y = Identity(seq) }\n");
	Onnx__GraphProto *g = mp->graph;

	assert_int_equal(g->n_input, 4);
	assert_int_equal(g->input[0]->type->value_case, ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE);
	assert_int_equal(g->input[0]->type->sequence_type->elem_type->tensor_type->elem_type, 1);
	assert_int_equal(g->input[1]->type->map_type->key_type, 7);
	assert_int_equal(g->input[1]->type->map_type->value_type->value_case,
			 ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE);
	assert_int_equal(g->input[2]->type->sparse_tensor_type->shape->n_dim, 2);
	assert_string_equal(g->input[3]->name, "seq");
	assert_int_equal(g->input[3]->type->tensor_type->shape->n_dim, 0);
	onnx__model_proto__free_unpacked(mp, NULL);
}

static void test_depth_bounded(void **state)
{
	(void)state;
	size_t n = 4 * GRAFT_MAX_PROTO_DEPTH;
	const char *head = "<ir_version: 8> g (";
	char *text = malloc(strlen(head) + n * 4 + 16);
	char *p = text + sprintf(text, "%s", head);

	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "seq(");
	sprintf(p, "float");
	parse_fails(text, "nested too deep");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_error_position),
		cmocka_unit_test(test_nul_refused),
		cmocka_unit_test(test_compound_types),
		cmocka_unit_test(test_depth_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
