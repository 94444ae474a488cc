/* test_util.c: name escaping, checked shape arithmetic, the string map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/base.h"

static void test_escape_roundtrip(void **state)
{
	const char *names[] = {"conv1.weight", "a b", "100%", "line\nbreak", "/0/Conv_output_0",
			       "\xce\xbb", "%41"};
	(void)state;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *e = str_escape(names[i]);
		assert_non_null(e);
		assert_null(strpbrk(e, " \n\t"));
		assert_int_equal(str_unescape(e), 0);
		assert_string_equal(e, names[i]);
		free(e);
	}
}

static void test_unescape_rejects_malformed(void **state)
{
	char a[] = "bad%4", b[] = "bad%zz", c[] = "nul%00";
	(void)state;

	assert_int_equal(str_unescape(a), -1);
	assert_int_equal(str_unescape(b), -1);
	assert_int_equal(str_unescape(c), -1);
}

static void test_dims_numel(void **state)
{
	int64_t ok[] = {64, 3, 7, 7}, neg[] = {2, -1}, big[] = {INT64_C(1) << 40, INT64_C(1) << 40},
		zero[] = {0, INT64_C(1) << 62};
	uint64_t n;
	(void)state;

	assert_int_equal(dims_numel(ok, 4, &n), 0);
	assert_int_equal(n, 9408);
	assert_int_equal(dims_numel(ok, 0, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(dims_numel(neg, 2, &n), -1);
	assert_int_equal(dims_numel(big, 2, &n), -1);
	assert_int_equal(dims_numel(zero, 2, &n), 0);
	assert_int_equal(n, 0);
}

static void test_strmap_grows_and_finds(void **state)
{
	struct strmap sm;
	char keys[1000][16];
	(void)state;

	assert_int_equal(strmap_init(&sm, 4), 0);
	for (int i = 0; i < 1000; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		assert_int_equal(strmap_put(&sm, keys[i], i), -1);
	}
	for (int i = 0; i < 1000; i++)
		assert_int_equal(strmap_get(&sm, keys[i]), i);
	assert_int_equal(strmap_get(&sm, "absent"), -1);
	assert_int_equal(strmap_put(&sm, keys[5], 42), 5);
	assert_int_equal(strmap_get(&sm, keys[5]), 42);
	strmap_release(&sm);
}

static void test_dtype_table(void **state)
{
	(void)state;
	assert_int_equal(graft_dtype_size(GRAFT_FLOAT), 4);
	assert_int_equal(graft_dtype_size(GRAFT_COMPLEX128), 16);
	assert_int_equal(graft_dtype_size(GRAFT_STRING), 0);
	assert_int_equal(graft_dtype_size(99), 0);
	assert_null(graft_dtype_name(-1));
	assert_int_equal(graft_dtype_from_name("bfloat16"), GRAFT_BFLOAT16);
	assert_int_equal(graft_dtype_from_name("float32"), -1);
	assert_true(graft_dtype_is_float(GRAFT_FLOAT16));
	assert_false(graft_dtype_is_float(GRAFT_INT64));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_roundtrip),
		cmocka_unit_test(test_unescape_rejects_malformed),
		cmocka_unit_test(test_dims_numel),
		cmocka_unit_test(test_strmap_grows_and_finds),
		cmocka_unit_test(test_dtype_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
