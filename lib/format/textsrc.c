/*
 * textsrc.c: the rows of labelled text that graft-data text reads (samples.c,
 * graft_raw_read_text, tokenizes them): a TSV or CSV file with a header line, or JSON
 * Lines, and of each row the text, a second text (a pair, optional) and the label.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/format.h"

/* A table: rows of fields, NUL-terminated strings in one buffer. */
struct table {
	char **cells;           /* (rows * cols) */
	size_t rows, cols;
	char **header;          /* (cols), TSV and CSV */
	int owned;              /* JSONL: each cell a copy (NULL: a key not asked for) */
};

static void table_release(struct table *t)
{
	for (size_t i = 0; t->owned && i < t->rows * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->header);
	memset(t, 0, sizeof(*t));
}

/* Appends a cell pointer. */
static int push(char ***v, size_t *n, size_t *cap, char *cell)
{
	char **p = array_grow(*v, cap, *n, sizeof(**v));

	if (!p)
		return -1;
	*v = p;
	(*v)[(*n)++] = cell;
	return 0;
}

/*
 * Splits TSV (fields between tabs, no quoting) or CSV (RFC 4180: commas, fields in
 * double quotes may hold commas, quotes doubled and line breaks) in place: fields
 * NUL-terminated in s, their pointers in order, rows ended by a NULL entry.  A final
 * line break is optional; \r\n ends a line as \n does.
 */
static int split_rows(char *s, size_t len, int csv, char ***cells, size_t *n,
		      struct graft_err *err)
{
	size_t cap = 0, i = 0, line = 1;

	*cells = NULL;
	*n = 0;
	while (i < len) {
		char *field = s + i, *o = field;
		int quoted = csv && s[i] == '"';
		if (quoted) {
			size_t start = line;
			for (i++;; i++) {
				if (i >= len)
					return graft_err_set(err, GRAFT_EFORMAT, "line %zu: a quoted "
							     "field is not closed", start);
				if (s[i] == '"' && i + 1 < len && s[i + 1] == '"')
					*o++ = s[i++];
				else if (s[i] == '"')
					break;
				else
					line += s[i] == '\n', *o++ = s[i];
			}
			i++;
		} else {
			while (i < len && s[i] != (csv ? ',' : '\t') && s[i] != '\n' &&
			       !(s[i] == '\r' && i + 1 < len && s[i + 1] == '\n'))
				*o++ = s[i++];
		}
		if (i < len && s[i] == '\r')
			i++;
		int end = i >= len || s[i] == '\n';
		if (i < len && s[i] != '\n' && s[i] != (csv ? ',' : '\t'))
			return graft_err_set(err, GRAFT_EFORMAT, "line %zu: text after a quoted "
					     "field", line);
		*o = 0;         /* o <= s + i: the separator's place, or the end */
		i++;
		if (push(cells, n, &cap, field) || (end && push(cells, n, &cap, NULL)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		if (end)
			line++;
	}
	if (*n && (*cells)[*n - 1] && push(cells, n, &cap, NULL))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
}

/* Which column spec (a header's name, or a 1-based number) names; -1 when none. */
static long column(const struct table *t, const char *spec)
{
	char *end;
	long k = strtol(spec, &end, 10);

	for (size_t c = 0; c < t->cols; c++)
		if (strcmp(t->header[c], spec) == 0)
			return (long)c;
	return *spec && !*end && k >= 1 && (size_t)k <= t->cols ? k - 1 : -1;
}

/* TSV or CSV into t: the first line is the header; every other line has its fields
 * (empty lines skipped). */
static int read_delimited(char *s, size_t len, int csv, struct table *t, struct graft_err *err)
{
	char **cells;
	size_t n, cap = 0, hcap = 0, row = 0, k = 0;
	int rc;

	if ((rc = split_rows(s, len, csv, &cells, &n, err)))
		return rc;
	while (k < n && cells[k])
		if (push(&t->header, &t->cols, &hcap, cells[k++])) {
			free(cells);
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
	if (!t->cols || (t->cols == 1 && !*t->header[0])) {
		free(cells);
		return graft_err_set(err, GRAFT_EFORMAT, "no header line");
	}
	size_t ncells = 0;
	for (k++; k < n; k++) {
		size_t start = k, got = 0;
		while (k < n && cells[k])
			got++, k++;
		row++;
		if (got == 1 && !*cells[start])
			continue;       /* an empty line */
		if (got != t->cols) {
			free(cells);
			return graft_err_set(err, GRAFT_EFORMAT, "row %zu has %zu fields, the header "
					     "%zu", row, got, t->cols);
		}
		for (size_t c = 0; c < got; c++)
			if (push(&t->cells, &ncells, &cap, cells[start + c])) {
				free(cells);
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			}
		t->rows++;
	}
	free(cells);
	return 0;
}

/* One JSON value of a line as text into buf: a string as it is, a number or boolean as
 * written; 0, or GRAFT_EFORMAT for objects, arrays and null. */
static int json_text(struct json *j, char *buf, size_t cap, size_t *len)
{
	struct json_token t;
	int rc = json_value(j, &t, buf, cap - 1);

	if (rc)
		return rc;
	if (t.kind == JSON_STRING) {
		if (t.len >= cap)
			return json_fail(j, "a string over %zu bytes", cap - 1);
		*len = t.len;
	} else if (t.kind == JSON_NUMBER || t.kind == JSON_TRUE || t.kind == JSON_FALSE) {
		size_t at = t.at, e = j->i;
		*len = e - at < cap ? e - at : cap - 1;
		memcpy(buf, j->s + at, *len);
	} else {
		return json_fail(j, "a value that is not text, a number or a boolean");
	}
	buf[*len] = 0;
	return 0;
}

/* JSON Lines into t: the keys asked for (NULL: not asked) as columns 0, 1, 2, each cell
 * a copy (t->owned); a line without one of them is refused. */
static int read_jsonl(const char *s, size_t len, const char *const keys[3], struct table *t,
		      struct graft_err *err)
{
	enum { VAL_MAX = 1 << 20 };
	size_t cap = 0, ncells = 0, line = 0;
	char *val = malloc(VAL_MAX);
	int rc = 0;

	if (!val)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	t->cols = 3;
	t->owned = 1;
	for (size_t b = 0; b < len && !rc; line++) {
		size_t e = b, l;
		while (e < len && s[e] != '\n')
			e++;
		for (l = e - b; l && (s[b + l - 1] == '\r' || s[b + l - 1] == ' '); l--)
			;
		char *cell[3] = {NULL, NULL, NULL};
		if (l) {
			struct json j;
			struct json_token obj, key;
			char kbuf[256];
			size_t vlen;
			int more = 0;
			json_init(&j, s + b, l, 1, err);
			if (!(rc = json_value(&j, &obj, NULL, 0)) && obj.kind != JSON_OBJECT)
				rc = json_fail(&j, "expected a JSON object");
			while (!rc && (more = json_next(&j, &key, kbuf, sizeof(kbuf) - 1)) == 1) {
				int c = -1;
				kbuf[key.len < sizeof(kbuf) ? key.len : sizeof(kbuf) - 1] = 0;
				for (int k = 0; k < 3; k++)
					if (keys[k] && strcmp(keys[k], kbuf) == 0)
						c = k;
				if (c < 0) {
					struct json_token v;
					if (!(rc = json_value(&j, &v, NULL, 0)))
						rc = json_skip(&j, &v);
				} else if (!(rc = json_text(&j, val, VAL_MAX, &vlen))) {
					free(cell[c]);
					if (!(cell[c] = strdup(val)))
						rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
				}
			}
			if (!rc && more < 0)
				rc = more;
			if (!rc)
				rc = json_end(&j, "the end of the line");
			for (int k = 0; k < 3 && !rc; k++)
				if (keys[k] && !cell[k])
					rc = graft_err_set(err, GRAFT_EFORMAT, "no key \"%s\"", keys[k]);
			for (int k = 0; k < 3 && !rc; k++)
				if (push(&t->cells, &ncells, &cap, cell[k]))
					rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
				else
					cell[k] = NULL;
			t->rows += !rc;
		}
		for (int k = 0; k < 3; k++)
			free(cell[k]);
		if (rc) {
			char where[32];
			snprintf(where, sizeof(where), "line %zu", line + 1);
			graft_err_prefix(err, where);
		}
		b = e + 1;
	}
	free(val);
	return rc;
}

void text_rows_release(struct text_rows *r)
{
	struct table *t = r->priv;

	if (t)
		table_release(t);
	free(t);
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

/* The column that spec names in t, or an error naming the option. */
static int find_column(const struct table *t, const char *spec, const char *opt, long *c,
		       struct graft_err *err)
{
	if ((*c = column(t, spec)) < 0)
		return graft_err_set(err, GRAFT_EINVAL, "%s '%s' is no column: the header has %zu "
				     "(%s%s)", opt, spec, t->cols, t->header[0],
				     t->cols > 1 ? ", ..." : "");
	return 0;
}

/* GRAFT_EFORMAT naming the line of the first byte of s that is no well-formed UTF-8. */
static int check_utf8(const char *s, size_t len, struct graft_err *err)
{
	size_t line = 1;

	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_char((const unsigned char *)s + i, len - i, &cp);
		if (!n)
			return graft_err_set(err, GRAFT_EFORMAT, "line %zu: invalid UTF-8 (byte 0x%02x)",
					     line, (unsigned char)s[i]);
		line += s[i] == '\n';
		i += n;
	}
	return 0;
}

int text_rows_read(struct text_rows *r, const char *path, enum graft_text_format format,
		   const char *text, const char *pair, const char *label, struct graft_err *err)
{
	struct table *t = calloc(1, sizeof(*t));
	size_t len = 0;
	long c[3] = {0, 1, 2};
	int rc;

	memset(r, 0, sizeof(*r));
	if (!(r->priv = t))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if ((rc = io_read_file(path, &r->buf, &len, err))) {
		text_rows_release(r);
		return rc;
	}
	if ((rc = check_utf8(r->buf, len, err)))
		;
	else if (format == GRAFT_TEXT_JSONL)
		rc = read_jsonl(r->buf, len, (const char *const[3]){text, pair, label}, t, err);
	else if (!(rc = read_delimited(r->buf, len, format == GRAFT_TEXT_CSV, t, err)) &&
		 !(rc = find_column(t, text, "--text", &c[0], err)) &&
		 !(rc = pair ? find_column(t, pair, "--pair", &c[1], err) : 0))
		rc = find_column(t, label, "--label", &c[2], err);
	if (!rc && !t->rows)
		rc = graft_err_set(err, GRAFT_EFORMAT, "no rows");
	if (rc) {
		text_rows_release(r);
		return graft_err_prefix(err, path);
	}
	r->n = t->rows;
	r->cols = t->cols;
	r->cells = t->cells;
	for (int k = 0; k < 3; k++)
		r->col[k] = k == 1 && !pair ? -1 : c[k];
	return 0;
}
