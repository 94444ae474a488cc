/* test_json.c: base/json.c, the JSON reader under graft-plot's logs and graft-data's mnist
 * files: each kind of token and its value, string escapes (surrogate pairs joined, the
 * malformed ones refused), numbers and their bounds, walking objects and arrays (keys,
 * skipping, the nesting limit, no trailing commas), and errors that say
 * what was found and where, in one-line and multi-line mode. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/base.h"

/* Reads text as one value (any space around it) into *t: 0, or the error in err. */
static int one(const char *text, int one_line, struct json_token *t, char *buf, size_t cap,
	       struct graft_err *err)
{
	struct json j;
	int rc;

	json_init(&j, text, strlen(text), one_line, err);
	if ((rc = json_value(&j, t, buf, cap)) || (rc = json_skip(&j, t)))
		return rc;
	return json_end(&j, "the end");
}

/* An input that must fail, read as one value (in one-line mode when one_line), with a
 * message that contains msg. */
struct bad {
	const char *text;
	int one_line;
	const char *msg;
};

static void expect_errors(const struct bad *bad, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct json_token t;
		struct graft_err err = {0};
		int rc = one(bad[i].text, bad[i].one_line, &t, NULL, 0, &err);
		if (rc != GRAFT_EFORMAT || !strstr(err.msg, bad[i].msg))
			fail_msg("'%s': rc %d, message '%s', wanted '%s'", bad[i].text, rc, err.msg,
				 bad[i].msg);
	}
}
#define EXPECT_ERRORS(...) do { \
	const struct bad b_[] = {__VA_ARGS__}; \
	expect_errors(b_, sizeof(b_) / sizeof(b_[0])); \
} while (0)

static void test_scalars(void **state)
{
	static const struct {
		const char *text;
		enum json_kind kind;
	} kinds[] = {
		{"null", JSON_NULL}, {" true", JSON_TRUE}, {"false\n", JSON_FALSE},
		{"\"\"", JSON_STRING}, {"0", JSON_NUMBER}, {"{}", JSON_OBJECT}, {"[]", JSON_ARRAY},
		{"NaN", JSON_NONFINITE},
	};
	struct json_token t;
	struct graft_err err = {0};
	(void)state;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		assert_int_equal(one(kinds[i].text, 0, &t, NULL, 0, &err), 0);
		assert_int_equal(t.kind, kinds[i].kind);
	}
	/* The non-finite tokens of C's printf and Python's json, with their values. */
	for (const char *const *w = (const char *const[]){"NaN", "-NaN", "nan", "-nan", NULL};
	     *w; w++) {
		assert_int_equal(one(*w, 0, &t, NULL, 0, &err), 0);
		assert_true(t.kind == JSON_NONFINITE && isnan(t.num));
	}
	assert_int_equal(one("Infinity", 0, &t, NULL, 0, &err), 0);
	assert_true(t.kind == JSON_NONFINITE && t.num == INFINITY);
	assert_int_equal(one("-inf", 0, &t, NULL, 0, &err), 0);
	assert_true(t.kind == JSON_NONFINITE && t.num == -INFINITY);
	/* Where a token starts. */
	assert_int_equal(one("  \n\t\"x\"", 0, &t, NULL, 0, &err), 0);
	assert_int_equal(t.at, 4);
	/* Words end at a letter, digit or '_' only. */
	EXPECT_ERRORS(
		{"nulll", 0, "expected a value, found 'n' at line 1, column 1"},
		{"true_", 0, "expected a value, found 't'"},
		{"Infinityx", 0, "expected a value, found 'I'"},
		{"-Infinity0", 0, "expected a digit, found 'I' at line 1, column 2"},
		{"True", 0, "expected a value, found 'T'"},
		{"", 0, "expected a value, found the end of the input at line 1, column 1"}
	);
}

static void test_numbers(void **state)
{
	static const struct {
		const char *text;
		double v;
	} good[] = {
		{"0", 0}, {"-0", -0.0}, {"7", 7}, {"-12", -12}, {"0.5", 0.5}, {"1.25e2", 125},
		{"1E-2", 0.01}, {"2e+3", 2000}, {"1e999", INFINITY}, {"-1e999", -INFINITY},
		{"1e-999", 0},
	};
	char longest[JSON_MAX_NUMBER + 2];
	struct json_token t;
	struct graft_err err = {0};
	(void)state;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(one(good[i].text, 0, &t, NULL, 0, &err), 0);
		assert_int_equal(t.kind, JSON_NUMBER);
		assert_true(t.num == good[i].v);
	}
	assert_true(signbit(good[1].v));
	EXPECT_ERRORS(
		{"01", 0, "a number with a leading zero at line 1, column 2"},
		{"-01", 0, "a number with a leading zero"},
		{"1.", 0, "expected a digit after the decimal point, found the end"},
		{"1.e5", 0, "expected a digit after the decimal point, found 'e'"},
		{".5", 0, "expected a value, found '.'"},
		{"+1", 0, "expected a value, found '+'"},
		{"-", 0, "expected a digit, found the end of the input"},
		{"1e", 0, "expected a digit in the exponent"},
		{"1e+", 0, "expected a digit in the exponent"},
		{"0x10", 0, "expected the end, found 'x' at line 1, column 2"}
	);
	/* JSON_MAX_NUMBER characters and no more. */
	memset(longest, '1', JSON_MAX_NUMBER);
	longest[JSON_MAX_NUMBER] = 0;
	assert_int_equal(one(longest, 0, &t, NULL, 0, &err), 0);
	assert_true(t.num > 1e63);
	longest[JSON_MAX_NUMBER] = '1';
	longest[JSON_MAX_NUMBER + 1] = 0;
	expect_errors(&(struct bad){longest, 0, "a number longer than 64 characters at line 1, "
				    "column 1"}, 1);
}

static void test_strings(void **state)
{
	struct json_token t;
	struct graft_err err = {0};
	char buf[64];
	(void)state;

	/* Every escape, and raw UTF-8 of 2, 3 and 4 bytes. */
	assert_int_equal(one("\"\\\"\\\\\\/\\b\\f\\n\\r\\t caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
			     0, &t, buf, sizeof(buf), &err), 0);
	assert_int_equal(t.kind, JSON_STRING);
	assert_int_equal(t.len, 8 + 1 + 5 + 1 + 3 + 1 + 4);
	assert_memory_equal(buf, "\"\\/\b\f\n\r\t caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", t.len);
	/* \u escapes decode to UTF-8, a surrogate pair to one 4-byte character. */
	assert_int_equal(one("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\\u0000\"", 0, &t, buf,
			     sizeof(buf), &err), 0);
	assert_int_equal(t.len, 1 + 2 + 3 + 4 + 1);
	assert_memory_equal(buf, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0", t.len);
	/* A short buffer keeps the first bytes; len still counts them all. */
	memset(buf, '#', sizeof(buf));
	assert_int_equal(one("\"abcdef\"", 0, &t, buf, 3, &err), 0);
	assert_int_equal(t.len, 6);
	assert_memory_equal(buf, "abc#", 4);
	assert_int_equal(one("\"abcdef\"", 0, &t, NULL, 0, &err), 0);
	assert_int_equal(t.len, 6);

	EXPECT_ERRORS(
		{"\"x", 0, "unterminated string at line 1, column 3"},
		{"\"x\\", 0, "unterminated string"},
		{"\"\\x\"", 0, "bad escape: backslash and 'x' at line 1, column 3"},
		{"\"\\u12g4\"", 0, "bad \\u escape: four hex digits wanted at line 1, column 2"},
		{"\"\\u12\"", 0, "bad \\u escape: four hex digits wanted"},
		{"\"\\ud800\"", 0, "bad \\u escape: a high surrogate without its low one"},
		{"\"\\ud800\\u0041\"", 0, "a high surrogate without its low one"},
		{"\"\\ud800\\n\"", 0, "a high surrogate without its low one"},
		{"\"\\udc00\"", 0, "bad \\u escape: a lone low surrogate"},
		{"\"\\ude00\\ud83d\"", 0, "a lone low surrogate"},
		{"\"a\tb\"", 0, "control character 0x09 in a string at line 1, column 3"},
		{"\"\xff\"", 0, "malformed UTF-8 in a string at line 1, column 2"},
		{"\"\xc0\xaf\"", 0, "malformed UTF-8"},             /* overlong '/' */
		{"\"\xed\xa0\x80\"", 0, "malformed UTF-8"},         /* a surrogate */
		{"\"\xf4\x90\x80\x80\"", 0, "malformed UTF-8"},     /* past U+10FFFF */
		{"\"\xe2\x82\"", 0, "malformed UTF-8"}             /* cut */
	);
}

static void test_utf8_char(void **state)
{
	uint32_t cp;
	(void)state;

	assert_int_equal(utf8_char((const unsigned char *)"A", 1, &cp), 1);
	assert_int_equal(cp, 'A');
	assert_int_equal(utf8_char((const unsigned char *)"\xc3\xa9", 2, &cp), 2);
	assert_int_equal(cp, 0xe9);
	assert_int_equal(utf8_char((const unsigned char *)"\xef\xbf\xbf", 3, &cp), 3);
	assert_int_equal(cp, 0xffff);
	assert_int_equal(utf8_char((const unsigned char *)"\xf4\x8f\xbf\xbf", 4, &cp), 4);
	assert_int_equal(cp, 0x10ffff);
	assert_int_equal(utf8_char((const unsigned char *)"\xf0\x9f\x98\x80", 3, &cp), 0);
	assert_int_equal(utf8_char((const unsigned char *)"\x80", 1, &cp), 0);
	assert_int_equal(utf8_char((const unsigned char *)"\xe0\x80\x80", 3, &cp), 0);
}

/* {"a": [1, {"b": null}], "long key": "x", "c": -2}: walked member by member. */
static void test_walk(void **state)
{
	const char *text = "{\"a\": [1, {\"b\": null}], \"long key\": \"x\", \"c\": -2}";
	struct json j;
	struct json_token key, t;
	struct graft_err err = {0};
	char name[4];
	(void)state;

	json_init(&j, text, strlen(text), 0, &err);
	assert_int_equal(json_value(&j, &t, NULL, 0), 0);
	assert_int_equal(t.kind, JSON_OBJECT);
	assert_int_equal(j.depth, 1);
	assert_int_equal(json_next(&j, &key, name, sizeof(name)), 1);
	assert_true(key.kind == JSON_STRING && key.len == 1 && name[0] == 'a' && key.at == 1);
	assert_int_equal(json_value(&j, &t, NULL, 0), 0);
	assert_int_equal(t.kind, JSON_ARRAY);
	assert_int_equal(json_next(&j, NULL, NULL, 0), 1);
	assert_int_equal(json_value(&j, &t, NULL, 0), 0);
	assert_true(t.kind == JSON_NUMBER && t.num == 1);
	assert_int_equal(json_next(&j, NULL, NULL, 0), 1);
	assert_int_equal(json_value(&j, &t, NULL, 0), 0);
	assert_int_equal(t.kind, JSON_OBJECT);
	assert_int_equal(j.depth, 3);
	assert_int_equal(json_skip(&j, &t), 0);         /* {"b": null} */
	assert_int_equal(j.depth, 2);
	assert_int_equal(json_next(&j, NULL, NULL, 0), 0);       /* the array's ']' */
	assert_int_equal(j.depth, 1);
	assert_int_equal(json_next(&j, &key, name, sizeof(name)), 1);
	assert_int_equal(key.len, 8);
	assert_memory_equal(name, "long", 4);
	assert_int_equal(json_value(&j, &t, NULL, 0), 0);
	assert_int_equal(json_skip(&j, &t), 0);         /* a scalar: nothing more */
	assert_int_equal(json_next(&j, &key, name, sizeof(name)), 1);
	assert_int_equal(json_value(&j, &t, NULL, 0), 0);
	assert_true(t.kind == JSON_NUMBER && t.num == -2);
	assert_int_equal(json_next(&j, &key, name, sizeof(name)), 0);
	assert_int_equal(j.depth, 0);
	assert_int_equal(json_end(&j, "nothing"), 0);
	/* Nothing open: an error, not a read before the stack. */
	assert_int_equal(json_next(&j, NULL, NULL, 0), GRAFT_EFORMAT);

	/* Empty containers, and skipping a whole nested value. */
	assert_int_equal(one(" { } ", 0, &t, NULL, 0, &err), 0);
	assert_int_equal(one("[ ]", 0, &t, NULL, 0, &err), 0);
	assert_int_equal(one("[{\"a\": [[], {}, \"]\"]}, 2, [3, [4]]]", 0, &t, NULL, 0, &err), 0);
}

static void test_walk_errors(void **state)
{
	struct json j;
	struct json_token t;
	struct graft_err err = {0};
	(void)state;

	EXPECT_ERRORS(
		{"[1 2]", 0, "expected ',' or ']', found '2' at line 1, column 4"},
		{"{\"a\": 1 \"b\": 2}", 0, "expected ',' or '}', found '\"'"},
		{"[1,]", 0, "expected a value, found ']' at line 1, column 4"},
		{"{\"a\": 1,}", 0, "expected a key (a string in double quotes), found '}'"},
		{"{1: 2}", 0, "expected a key (a string in double quotes), found '1'"},
		{"{'a': 2}", 0, "expected a key (a string in double quotes), found '''"},
		{"{\"a\" 2}", 0, "expected ':' after the key, found '2' at line 1, column 6"},
		{"{\"a\": }", 0, "expected a value, found '}'"},
		{"[1, 2", 0, "expected ',' or ']', found the end of the input"},
		{"{", 0, "expected a key (a string in double quotes), found the end"},
		{"[1}", 0, "expected ',' or ']', found '}'"},
		{"[] []", 0, "expected the end, found '['"}
	);
	/* No comma before a closing bracket: strict JSON. */
	const char *commas[] = {"[1,]", "{\"a\": 3,}"};
	for (size_t k = 0; k < 2; k++) {
		json_init(&j, commas[k], strlen(commas[k]), 0, &err);
		assert_int_equal(json_value(&j, &t, NULL, 0), 0);
		assert_int_equal(json_skip(&j, &t), GRAFT_EFORMAT);
	}
}

/* JSON_MAX_DEPTH objects and arrays open at once, and not one more. */
static void test_depth(void **state)
{
	char text[2 * JSON_MAX_DEPTH + 8];
	struct json_token t;
	struct graft_err err = {0};
	size_t n = 0;
	(void)state;

	for (int k = 0; k < JSON_MAX_DEPTH; k++)
		text[n++] = '[';
	for (int k = 0; k < JSON_MAX_DEPTH; k++)
		text[n++] = ']';
	text[n] = 0;
	assert_int_equal(one(text, 0, &t, NULL, 0, &err), 0);
	memmove(text + 1, text, n + 1);
	text[0] = '[';
	text[n + 1] = ']';
	text[n + 2] = 0;
	expect_errors(&(struct bad){text, 0, "objects and arrays nested deeper than 64 at line 1, "
				    "column 65"}, 1);
	/* Garbage of brackets only: an error, never a deep recursion. */
	memset(text, '[', sizeof(text) - 1);
	text[sizeof(text) - 1] = 0;
	expect_errors(&(struct bad){text, 0, "nested deeper than 64"}, 1);
}

/* Positions: bytes from 1, by line in multi-line mode; what was found, printable or not. */
static void test_positions(void **state)
{
	struct json j;
	struct json_token t;
	struct graft_err err = {0};
	(void)state;

	EXPECT_ERRORS(
		{"[1,\n 2,\n x]", 0, "expected a value, found 'x' at line 3, column 2"},
		{"[1,\r\n\t2 3]", 0, "expected ',' or ']', found '3' at line 2, column 4"},
		{"[1,\n 2,\n x]", 1, "expected a value, found 'x' at column 10"},
		{"[1", 1, "expected ',' or ']', found the end of the line at column 3"},
		{"[1", 0, "found the end of the input at line 1, column 3"},
		{"[1\x01]", 0, "found byte 0x01 at line 1, column 3"},
		{"\x89PNG", 0, "expected a value, found byte 0x89 at line 1, column 1"}
	);
	/* A NUL is a byte like another, not the end. */
	json_init(&j, "[1\0]", 4, 1, &err);
	assert_int_equal(json_value(&j, &t, NULL, 0), 0);
	assert_int_equal(json_skip(&j, &t), GRAFT_EFORMAT);
	assert_string_equal(err.msg, "expected ',' or ']', found byte 0x00 at column 3");
	/* json_fail: the caller's message at the caller's position. */
	json_init(&j, "a\nbc", 4, 0, &err);
	j.i = 3;
	assert_int_equal(json_fail(&j, "%s is %d", "x", 7), GRAFT_EFORMAT);
	assert_string_equal(err.msg, "x is 7 at line 2, column 2");
	/* No buffer: the end at once. */
	json_init(&j, NULL, 5, 0, &err);
	assert_int_equal(json_value(&j, &t, NULL, 0), GRAFT_EFORMAT);
	assert_string_equal(err.msg, "expected a value, found the end of the input at line 1, "
				     "column 1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalars),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_utf8_char),
		cmocka_unit_test(test_walk),
		cmocka_unit_test(test_walk_errors),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_positions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
