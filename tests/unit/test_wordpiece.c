/*
 * test_wordpiece.c: BERT's tokenization (lib/format/wordpiece.c).
 *   test_wordpiece                          hand-checked cases (CMocka): a vocab.json read
 *                                           as its vocab.txt, [CLS] a [SEP] b [SEP] with
 *                                           truncation and padding, refusals;
 *   test_wordpiece --print VOCAB SENTENCES [--cased]
 *                                           each sentence's ids a line, for
 *                                           tests/text/check_tokenizer.py to compare with
 *                                           the reference (tests/text/bert_reference.py);
 *                                           SENTENCES escaped as that script reads them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "graft.h"
#include "testmodel.h"

/* \t \n \r \\ \uXXXX \UXXXXXXXX in line, in place (as bert_reference.py's unescape). */
static size_t unescape(char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char e = i + 1 < n && s[i] == '\\' ? s[i + 1] : 0;
		int digits = e == 'u' ? 4 : e == 'U' ? 8 : 0;
		if (e == 't' || e == 'n' || e == 'r' || e == '\\') {
			s[o++] = e == 't' ? '\t' : e == 'n' ? '\n' : e == 'r' ? '\r' : '\\';
			i++;
		} else if (digits && i + 1 + (size_t)digits < n + 1) {
			char hex[9] = {0};
			memcpy(hex, s + i + 2, (size_t)digits);
			unsigned long cp = strtoul(hex, NULL, 16);
			char u[4];
			size_t k = cp < 0x80 ? (u[0] = (char)cp, 1) :
				   cp < 0x800 ? (u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), 2) :
				   cp < 0x10000 ? (u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3F)),
						   u[2] = (char)(0x80 | (cp & 0x3F)), 3) :
				   (u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3F)),
				    u[2] = (char)(0x80 | (cp >> 6 & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), 4);
			memcpy(s + o, u, k);
			o += k;
			i += 1 + (size_t)digits;
		} else {
			s[o++] = s[i];
		}
	}
	return o;
}

static int print_ids(const char *vocab, const char *sentences, int uncased)
{
	struct graft_err err = {0};
	struct graft_vocab *v;
	size_t len;
	char *s = (char *)tm_slurp(sentences, &len);

	if (graft_vocab_read(&v, vocab, &err)) {
		fprintf(stderr, "test_wordpiece: %s: %s\n", vocab, err.msg);
		return 1;
	}
	for (size_t b = 0; b < len;) {
		size_t e = b;
		while (e < len && s[e] != '\n')
			e++;
		int64_t *ids = NULL;
		size_t n = 0, cap = 0;
		size_t l = unescape(s + b, e - b);
		if (graft_wordpiece(v, s + b, l, uncased, &ids, &n, &cap, &err)) {
			fprintf(stderr, "test_wordpiece: %s\n", err.msg);
			return 1;
		}
		for (size_t i = 0; i < n; i++)
			printf("%s%lld", i ? " " : "", (long long)ids[i]);
		putchar('\n');
		free(ids);
		b = e + 1;
	}
	graft_vocab_free(v);
	free(s);
	return 0;
}

/* A vocabulary in both files' spellings. */
static const char vocab_txt[] = "[PAD]\n[unused0]\n[UNK]\n[CLS]\n[SEP]\nplay\n##ing\n##ed\n"
				"un\n##believ\n##able\n!\ncafe\n";
static const char vocab_json[] = "[\"[PAD]\", \"\xe2\x96\x81\", \"[UNK]\", \"[CLS]\", \"[SEP]\", "
				 "\"\xe2\x96\x81play\", \"ing\", \"ed\", \"\xe2\x96\x81un\", "
				 "\"believ\", \"able\", \"\xe2\x96\x81!\", \"\xe2\x96\x81" "cafe\"]";

static struct graft_vocab *vocab_of(const char *text, const char *name)
{
	char *dir = tm_tempdir(), path[512];
	struct graft_err err = {0};
	struct graft_vocab *v;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	tm_put(path, text, strlen(text));
	if (graft_vocab_read(&v, path, &err))
		fail_msg("%s", err.msg);
	remove(path);
	remove(dir);
	free(dir);
	return v;
}

static void test_json_is_txt(void **state)
{
	struct graft_vocab *t = vocab_of(vocab_txt, "vocab.txt"), *j = vocab_of(vocab_json, "vocab.json");
	static const char text[] = "Playing UNBELIEVABLE!! Café played xyz";
	static const int64_t want[] = {5, 6, 8, 9, 10, 11, 11, 12, 5, 7, 2};
	struct graft_err err = {0};
	(void)state;

	assert_int_equal(graft_vocab_size(t), graft_vocab_size(j));
	assert_int_equal(graft_vocab_id(j, "##ing"), 6);
	assert_int_equal(graft_vocab_id(j, "[unused0]"), 1);
	for (int k = 0; k < 2; k++) {
		int64_t *ids = NULL;
		size_t n = 0, cap = 0;
		if (graft_wordpiece(k ? j : t, text, strlen(text), 1, &ids, &n, &cap, &err))
			fail_msg("%s", err.msg);
		assert_int_equal(n, sizeof(want) / sizeof(want[0]));
		assert_memory_equal(ids, want, sizeof(want));
		free(ids);
	}
	graft_vocab_free(t);
	graft_vocab_free(j);
}

static void test_encode_pair(void **state)
{
	struct graft_vocab *v = vocab_of(vocab_txt, "vocab.txt");
	int64_t ids[8], mask[8], types[8];
	struct graft_err err = {0};
	(void)state;

	/* a: play ##ing ##ed (3), b: un ##believ ##able ! (4); room 8 - 3 = 5: the longer
	 * loses one at a time, b on a tie (Hugging Face's longest_first): b keeps two */
	if (graft_bert_encode(v, "playinged", 9, "unbelievable!", 13, 1, 8, ids, mask, types, &err))
		fail_msg("%s", err.msg);
	static const int64_t want[] = {3, 5, 6, 7, 4, 8, 9, 4};
	assert_memory_equal(ids, want, sizeof(want));
	for (int i = 0; i < 8; i++) {
		assert_int_equal(mask[i], 1);
		assert_int_equal(types[i], i >= 5);
	}
	/* one text, padded */
	if (graft_bert_encode(v, "cafe", 4, NULL, 0, 1, 6, ids, mask, types, &err))
		fail_msg("%s", err.msg);
	static const int64_t want1[] = {3, 12, 4, 0, 0, 0}, mask1[] = {1, 1, 1, 0, 0, 0};
	assert_memory_equal(ids, want1, sizeof(want1));
	assert_memory_equal(mask, mask1, sizeof(mask1));
	/* no room */
	assert_int_equal(graft_bert_encode(v, "x", 1, "y", 1, 1, 2, ids, mask, types, &err),
			 GRAFT_EINVAL);
	graft_vocab_free(v);
}

static void test_refused(void **state)
{
	char *dir = tm_tempdir(), path[512];
	struct graft_err err = {0};
	struct graft_vocab *v;
	(void)state;

	snprintf(path, sizeof(path), "%s/v.txt", dir);
	tm_put(path, "a\nb\n", 4);
	assert_int_equal(graft_vocab_read(&v, path, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "[UNK]"));
	tm_put(path, "[\"[UNK]\", 3]", 12);
	assert_int_equal(graft_vocab_read(&v, path, &err), GRAFT_EFORMAT);
	remove(path);
	assert_int_equal(graft_vocab_read(&v, path, &err), GRAFT_EIO);
	remove(dir);
	free(dir);
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "--print") == 0)
		return print_ids(argv[2], argv[3], !(argc > 4 && strcmp(argv[4], "--cased") == 0));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_is_txt),
		cmocka_unit_test(test_encode_pair),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
