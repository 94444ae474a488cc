/*
 * manifest.c: the text manifest that opens every .graft archive.
 *
 * One record per line, space-separated tokens, names percent-escaped so that any ONNX
 * name fits one token (docs/format.md has the grammar):
 *
 *   graft-archive 1
 *   skeleton model.pb 1234 9f0c2d17a4b6e3c1
 *   tensor tensors/000000 conv1.weight float [64,3,7,7] parameter 1 initializer raw 37632 0123456789abcdef
 *   history graft-import resnet18.onnx
 *   end
 *
 * The closing "end" line makes a manifest cut short detectable on its own.  Version 2 adds
 * the role "state" and the source "detached"; a manifest that uses neither is written as
 * version 1, so that what older readers could read they still can.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/format.h"

static const char *field_names[] = {"raw", "float_data", "int32_data", "int64_data",
				    "double_data", "uint64_data"};

const char *payload_field_name(enum payload_field f)
{
	return (unsigned)f < 6 ? field_names[f] : "?";
}

int payload_field_from_name(const char *name)
{
	for (int i = 0; i < 6; i++)
		if (strcmp(field_names[i], name) == 0)
			return i;
	return -1;
}

static const char *source_names[] = {"initializer", "constant", "detached"};

/* Whether field can carry dtype, as import puts payloads there: export writes the tensor's
 * bytes into that field, at the field's own element width. */
static int field_fits(enum payload_field f, int dtype)
{
	switch (f) {
	case FIELD_RAW:
		return 1;
	case FIELD_FLOAT:
		return dtype == GRAFT_FLOAT || dtype == GRAFT_COMPLEX64;
	case FIELD_DOUBLE:
		return dtype == GRAFT_DOUBLE || dtype == GRAFT_COMPLEX128;
	case FIELD_INT64:
		return dtype == GRAFT_INT64;
	case FIELD_UINT64:
		return dtype == GRAFT_UINT64 || dtype == GRAFT_UINT32;
	case FIELD_INT32:
		return dtype == GRAFT_INT32 || dtype == GRAFT_INT16 || dtype == GRAFT_INT8 ||
		       dtype == GRAFT_UINT16 || dtype == GRAFT_UINT8 || dtype == GRAFT_BOOL ||
		       dtype == GRAFT_FLOAT16 || dtype == GRAFT_BFLOAT16;
	}
	return 0;
}

/* The oldest version that can say everything m's manifest must say. */
static int needed_version(const struct graft_model *m)
{
	for (size_t i = 0; i < m->n_tensors; i++)
		if (m->tensors[i].role == GRAFT_ROLE_STATE ||
		    m->tensors[i].source == GRAFT_SOURCE_DETACHED)
			return 2;
	return 1;
}

void manifest_member_name(size_t i, char *buf, size_t size)
{
	snprintf(buf, size, "tensors/%06zu", i);
}

/* A growing text buffer. */
struct text {
	char *s;
	size_t len, cap;
	int failed;
};

static void text_printf(struct text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if ((size_t)n < t->cap - t->len)
			break;
		size_t cap = (t->cap + (size_t)n + 1) * 2;
		char *s = realloc(t->s, cap);
		if (!s) {
			t->failed = 1;
			return;
		}
		t->s = s;
		t->cap = cap;
	}
	t->len += (size_t)n;
}

int manifest_write(const struct graft_model *m, const uint64_t *checksums,
		   uint64_t skeleton_checksum, size_t skeleton_nbytes, char **text,
		   size_t *len, struct graft_err *err)
{
	struct text t = {.s = malloc(4096), .cap = 4096};
	char member[32];

	if (!t.s)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	t.s[0] = 0;
	text_printf(&t, "graft-archive %d\n", needed_version(m));
	text_printf(&t, "skeleton model.pb %zu %016" PRIx64 "\n", skeleton_nbytes,
		    skeleton_checksum);
	for (size_t i = 0; i < m->n_tensors; i++) {
		const struct tensor_rec *r = &m->tensors[i];
		char *name = str_escape(r->name);
		if (!name) {
			t.failed = 1;
			break;
		}
		manifest_member_name(i, member, sizeof(member));
		text_printf(&t, "tensor %s %s %s [", member, name, graft_dtype_name(r->dtype));
		for (int d = 0; d < r->rank; d++)
			text_printf(&t, "%s%" PRId64, d ? "," : "", r->dims[d]);
		text_printf(&t, "] %s %d %s %s %zu %016" PRIx64 "\n", graft_role_name(r->role),
			    r->trainable, source_names[r->source], payload_field_name(r->field),
			    r->nbytes, checksums[i]);
		free(name);
	}
	for (size_t i = 0; i < m->n_history; i++) {
		char *h = str_escape(m->history[i]);
		if (!h) {
			t.failed = 1;
			break;
		}
		text_printf(&t, "history %s\n", h);
		free(h);
	}
	text_printf(&t, "end\n");
	if (t.failed) {
		free(t.s);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	*text = t.s;
	*len = t.len;
	return 0;
}

/* Splits line into at most max space-separated tokens; returns the count. */
static int split(char *line, char **tok, int max)
{
	int n = 0;
	char *save = NULL;

	for (char *p = strtok_r(line, " ", &save); p; p = strtok_r(NULL, " ", &save)) {
		if (n == max)
			return max + 1;
		tok[n++] = p;
	}
	return n;
}

static int parse_size(const char *s, size_t *out)
{
	char *end;
	if (!*s || *s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end || v > SIZE_MAX)
		return -1;
	*out = (size_t)v;
	return 0;
}

static int parse_hex64(const char *s, uint64_t *out)
{
	char *end;
	if (strlen(s) != 16)
		return -1;
	*out = strtoull(s, &end, 16);
	return *end ? -1 : 0;
}

/* Parses "[d0,d1,...]" into r->dims; -1 when malformed, GRAFT_EFORMAT (err set) when the
 * dims describe no tensor. */
static int parse_dims(char *s, struct tensor_rec *r, size_t lineno, struct graft_err *err)
{
	int64_t dims[GRAFT_MAX_RANK];
	size_t n = strlen(s);
	int rank = 0;
	char what[320];

	if (n < 2 || s[0] != '[' || s[n - 1] != ']')
		return -1;
	s[n - 1] = 0;
	s++;
	for (char *p = s; *p; ) {
		char *end;
		if (rank == GRAFT_MAX_RANK || *p < '0' || *p > '9')
			return -1;
		errno = 0;
		long long v = strtoll(p, &end, 10);
		if (end == p || (*end && *end != ',') || errno)
			return -1;
		dims[rank++] = v;
		p = *end ? end + 1 : end;
	}
	if (!(r->dims = malloc(sizeof(int64_t) * (rank ? (size_t)rank : 1))))
		return -1;
	memcpy(r->dims, dims, sizeof(int64_t) * (size_t)rank);
	r->rank = rank;
	snprintf(what, sizeof(what), "manifest line %zu: tensor '%.256s'", lineno, r->name);
	return dims_check(r->dims, (size_t)rank, what, &r->numel, err);
}

/* Makes room for one more tensor in m->tensors and mf->entries, which grow with the
 * tensor lines actually read (not with whatever the manifest's size suggests). */
static int reserve_tensor(struct graft_model *m, struct manifest *mf, size_t *cap,
			  size_t lineno, struct graft_err *err)
{
	struct tensor_rec *t;
	struct manifest_entry *e;
	size_t n = *cap ? 2 * *cap : 64;

	if (m->n_tensors < *cap)
		return 0;
	if (m->n_tensors >= GRAFT_MAX_TENSORS)
		return graft_err_set(err, GRAFT_EFORMAT, "manifest line %zu: more than %d tensors",
				     lineno, GRAFT_MAX_TENSORS);
	if (!(t = realloc(m->tensors, n * sizeof(*t))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	m->tensors = t;
	if (!(e = realloc(mf->entries, n * sizeof(*e))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	mf->entries = e;
	memset(t + *cap, 0, (n - *cap) * sizeof(*t));
	memset(e + *cap, 0, (n - *cap) * sizeof(*e));
	*cap = n;
	return 0;
}

static int parse_tensor(struct graft_model *m, struct manifest *mf, char **tok, size_t lineno,
			struct graft_err *err)
{
	struct tensor_rec *r = &m->tensors[m->n_tensors];
	struct manifest_entry *e = &mf->entries[m->n_tensors];
	int role = -1, source = -1, field, rc;
	/* Version 1 knew four roles and two sources. */
	int n_roles = mf->version >= 2 ? 5 : 4, n_sources = mf->version >= 2 ? 3 : 2;

	m->n_tensors++;         /* so that free releases what is parsed so far */
	if (!(e->member = strdup(tok[1])) || !(r->name = strdup(tok[2])) ||
	    str_unescape(r->name) || !*r->name)
		return -1;
	if ((r->dtype = graft_dtype_from_name(tok[3])) < 0 || graft_dtype_size(r->dtype) == 0)
		return -1;
	if ((rc = parse_dims(tok[4], r, lineno, err)))
		return rc;
	for (int i = 0; i < n_roles; i++)
		if (strcmp(tok[5], graft_role_name(i)) == 0)
			role = i;
	if (role < 0 || (strcmp(tok[6], "0") && strcmp(tok[6], "1")))
		return -1;
	r->role = role;
	r->trainable = tok[6][0] == '1';
	if (r->trainable && role != GRAFT_ROLE_PARAMETER)
		return -1;
	for (int i = 0; i < n_sources; i++)
		if (strcmp(tok[7], source_names[i]) == 0)
			source = i;
	if (source < 0)
		return -1;
	r->source = source;
	if ((field = payload_field_from_name(tok[8])) < 0)
		return -1;
	r->field = field;
	if (!field_fits(r->field, r->dtype))
		return graft_err_set(err, GRAFT_EFORMAT, "manifest line %zu: tensor '%s': %s "
				     "cannot hold %s", lineno, r->name, tok[8], tok[3]);
	if (parse_size(tok[9], &r->nbytes) || parse_hex64(tok[10], &e->checksum))
		return -1;
	e->nbytes = r->nbytes;
	if (r->numel > SIZE_MAX / graft_dtype_size(r->dtype) ||
	    r->numel * graft_dtype_size(r->dtype) != r->nbytes) {
		char dims[96];
		dims_string(r->dims, (size_t)r->rank, dims, sizeof(dims));
		return graft_err_set(err, GRAFT_EFORMAT, "manifest line %zu: tensor '%s' is %zu "
				     "bytes, dims [%s] of %s need %" PRIu64, lineno, r->name,
				     r->nbytes, dims, tok[3],
				     r->numel * (uint64_t)graft_dtype_size(r->dtype));
	}
	return 0;
}

int manifest_parse(struct graft_model *m, struct manifest *mf, const char *text, size_t len,
		   struct graft_err *err)
{
	char *copy, *line, *save = NULL, *tok[12];
	size_t lineno = 0, cap = 0;
	int ended = 0, rc = 0;

	memset(mf, 0, sizeof(*mf));
	if (len > GRAFT_MAX_MANIFEST_BYTES)
		return graft_err_set(err, GRAFT_EFORMAT, "manifest is %zu bytes, over %d", len,
				     GRAFT_MAX_MANIFEST_BYTES);
	if (memchr(text, 0, len))
		return graft_err_set(err, GRAFT_EFORMAT, "manifest holds a NUL byte");
	if (!(copy = malloc(len + 1)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	memcpy(copy, text, len);
	copy[len] = 0;
	for (line = strtok_r(copy, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
		int n = split(line, tok, 11);
		lineno++;
		if (ended) {
			rc = graft_err_set(err, GRAFT_EFORMAT, "manifest has lines after 'end'");
		} else if (lineno == 1) {
			if (n != 2 || strcmp(tok[0], "graft-archive") != 0) {
				rc = graft_err_set(err, GRAFT_EFORMAT, "not a .graft archive (bad manifest)");
			} else {
				mf->version = atoi(tok[1]);
				if (mf->version < 1)
					rc = graft_err_set(err, GRAFT_EFORMAT, "bad format version '%s'",
							   tok[1]);
				else if (mf->version > GRAFT_FORMAT_VERSION)
					rc = graft_err_set(err, GRAFT_EUNSUPPORTED,
							   "format version %d is newer than this graft "
							   "reads (%d): upgrade graft", mf->version,
							   GRAFT_FORMAT_VERSION);
			}
		} else if (n == 4 && strcmp(tok[0], "skeleton") == 0) {
			if (strcmp(tok[1], "model.pb") || parse_size(tok[2], &mf->skeleton_nbytes) ||
			    parse_hex64(tok[3], &mf->skeleton_checksum))
				rc = -1;
		} else if (n == 11 && strcmp(tok[0], "tensor") == 0) {
			if (!(rc = reserve_tensor(m, mf, &cap, lineno, err)))
				rc = parse_tensor(m, mf, tok, lineno, err);
		} else if (n == 2 && strcmp(tok[0], "history") == 0) {
			if (str_unescape(tok[1]) || model_add_history_line(m, tok[1], err))
				rc = -1;
		} else if (n == 1 && strcmp(tok[0], "end") == 0) {
			ended = 1;
		} else {
			rc = -1;
		}
		if (rc == -1)
			rc = graft_err_set(err, GRAFT_EFORMAT, "manifest line %zu is malformed", lineno);
	}
	free(copy);
	if (!rc && !ended)
		rc = graft_err_set(err, GRAFT_EFORMAT, "manifest is truncated (no 'end' line)");
	return rc;
}

void manifest_release(struct manifest *mf, size_t n_entries)
{
	if (mf->entries)
		for (size_t i = 0; i < n_entries; i++)
			free(mf->entries[i].member);
	free(mf->entries);
	mf->entries = NULL;
}
