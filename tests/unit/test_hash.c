/* test_hash.c: XXH64 against reference values from xxhsum (Debian's xxhash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "graft.h"

static void test_short_inputs(void **state)
{
	(void)state;
	assert_true(graft_xxh64("", 0, 0) == 0xef46db3751d8e999ULL);
	assert_true(graft_xxh64("a", 1, 0) == 0xd24ec4f1a98c6e5bULL);
}

static void test_long_inputs(void **state)
{
	char buf[1000];
	(void)state;

	memset(buf, 'x', sizeof(buf));
	assert_true(graft_xxh64(buf, 1000, 0) == 0x4cb9a3b69cb700e1ULL);
	for (int i = 0; i < 100; i++)
		buf[i] = (char)(32 + i % 90);
	/* 100 bytes: the 32-byte stripes, then 8-, 4- and 1-byte tails. */
	assert_true(graft_xxh64(buf, 100, 0) == 0xc073f906c58dad78ULL);
}

static void test_unaligned_equals_aligned(void **state)
{
	char a[80], b[81];
	(void)state;

	for (int i = 0; i < 80; i++)
		a[i] = b[i + 1] = (char)(i * 7);
	assert_true(graft_xxh64(a, 80, 0) == graft_xxh64(b + 1, 80, 0));
	assert_true(graft_xxh64(a, 80, 0) != graft_xxh64(a, 80, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_short_inputs),
		cmocka_unit_test(test_long_inputs),
		cmocka_unit_test(test_unaligned_equals_aligned),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
