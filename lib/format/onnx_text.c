/*
 * onnx_text.c: ONNX's textual syntax, the language of onnx.parser.parse_model and of
 * onnx/defs/parser.cc (ONNX 1.12), read into a ModelProto.  It lets a user write a small
 * model by hand (the glue between two models, a test graph) and give it to any tool:
 *
 *     <ir_version: 8, opset_import: ["" : 13]>
 *     scale (float[N,1,T,32] mel) => (float[N,1,T,32] out) {
 *         ten = Constant <value = float {10.0}> ()
 *         two = Constant <value = float {2.0}> ()
 *         tenth = Div (mel, ten)
 *         out = Add (tenth, two)
 *     }
 *
 * The grammar and every choice it leaves are ONNX's: what the reference parser builds
 * from a text, this one builds (tests/conformance/onnx_text.py compares the two byte
 * for byte).  Only errors differ: where the reference ignores a list of tensors or
 * graphs, an unknown keyword's value or a number out of range, this refuses them with
 * the line and column.
 *
 * The messages are built with protobuf-c's own types and malloc, each attached to its
 * parent as soon as it exists, so that one protobuf_c_message_free_unpacked frees any
 * partial tree; the result is packed and read as a binary ONNX model is.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/format.h"

struct parser {
	const char *start, *p, *end;
	int depth;                      /* graphs and types inside one another */
	struct graft_err *err;
};

enum literal_kind { LIT_NONE, LIT_INT, LIT_FLOAT, LIT_STRING };

struct literal {
	enum literal_kind kind;
	const char *s;                  /* the literal's text (a string's without quotes) */
	size_t n;
};

static const struct {
	const char *name;
	Onnx__AttributeProto__AttributeType type;
} attribute_type_names[] = {
	{"float", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT},
	{"int", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT},
	{"string", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING},
	{"tensor", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR},
	{"graph", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH},
	{"sparse_tensor", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSOR},
	{"type_proto", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTO},
	{"floats", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS},
	{"ints", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS},
	{"strings", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS},
	{"tensors", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSORS},
	{"graphs", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS},
	{"sparse_tensors", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSORS},
	{"type_protos", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTOS},
};

/* ---- characters, errors ----------------------------------------------------------------- */

/* Records msg at the current position (line and column counted from 1). */
static int fail(struct parser *ps, const char *msg)
{
	int line = 1, col = 1;

	for (const char *q = ps->start; q < ps->p && q < ps->end; q++) {
		if (*q == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	return graft_err_set(ps->err, GRAFT_EFORMAT, "ONNX text, line %d, column %d: %s",
			     line, col, msg);
}

static int oom(struct parser *ps)
{
	return graft_err_set(ps->err, GRAFT_ENOMEM, "out of memory");
}

/* Skips white space and comments (# to the end of the line). */
static void skip_space(struct parser *ps)
{
	for (;;) {
		while (ps->p < ps->end && isspace((unsigned char)*ps->p))
			ps->p++;
		if (ps->p >= ps->end || *ps->p != '#')
			return;
		while (ps->p < ps->end && *ps->p != '\n')
			ps->p++;
	}
}

static int next_char(struct parser *ps)
{
	skip_space(ps);
	return ps->p < ps->end ? (unsigned char)*ps->p : 0;
}

/* Takes ch if it comes next (after white space unless right_here). */
static int take(struct parser *ps, char ch, int right_here)
{
	if (!right_here)
		skip_space(ps);
	if (ps->p < ps->end && *ps->p == ch) {
		ps->p++;
		return 1;
	}
	return 0;
}

static int expect(struct parser *ps, char ch, int right_here)
{
	char msg[32];

	if (take(ps, ch, right_here))
		return 0;
	snprintf(msg, sizeof(msg), "expected '%c'", ch);
	return fail(ps, msg);
}

/* An identifier ([A-Za-z_][A-Za-z0-9_]*) if one comes next: its text and length, which
 * is 0 when none does. */
static size_t identifier(struct parser *ps, const char **s)
{
	skip_space(ps);
	*s = ps->p;
	if (ps->p < ps->end && (isalpha((unsigned char)*ps->p) || *ps->p == '_')) {
		ps->p++;
		while (ps->p < ps->end && (isalnum((unsigned char)*ps->p) || *ps->p == '_'))
			ps->p++;
	}
	return (size_t)(ps->p - *s);
}

static int same(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && memcmp(s, word, n) == 0;
}

/* The identifier that comes next, not taken. */
static size_t peek_identifier(struct parser *ps, const char **s)
{
	const char *at = ps->p;
	size_t n = identifier(ps, s);

	ps->p = at;
	return n;
}

/* The element type an identifier names (graft's dtypes are ONNX's TensorProto.DataType,
 * named as the syntax names them), or 0 when it names none. */
static int type_code(const char *s, size_t n)
{
	char name[16];
	int dtype;

	if (n >= sizeof(name))
		return 0;
	memcpy(name, s, n);
	name[n] = '\0';
	dtype = graft_dtype_from_name(name);
	return dtype > 0 ? dtype : 0;
}

/* Whether a type comes next: an element type, or seq, map, optional or sparse_tensor
 * and '(' (ONNX 1.12 takes only the first; later versions read all, and a value named
 * seq stays a name here). */
static int next_is_type(struct parser *ps)
{
	const char *s, *at = ps->p;
	size_t n = peek_identifier(ps, &s);
	int compound;

	if (!n)
		return 0;
	if (type_code(s, n))
		return 1;
	compound = same(s, n, "seq") || same(s, n, "map") || same(s, n, "optional") ||
		   same(s, n, "sparse_tensor");
	if (!compound)
		return 0;
	identifier(ps, &s);
	compound = take(ps, '(', 0);
	ps->p = at;
	return compound;
}

static char *dup_text(struct parser *ps, const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (!d) {
		oom(ps);
		return NULL;
	}
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* A literal: a string in double quotes (no escapes, as in ONNX), or a number: an
 * optional '-', digits with at most one '.', an optional exponent (a float then). */
static int literal(struct parser *ps, struct literal *lit)
{
	int c = next_char(ps), point = 0;
	const char *from = ps->p;

	lit->kind = LIT_NONE;
	if (c == '"') {
		const char *close = memchr(ps->p + 1, '"', (size_t)(ps->end - ps->p - 1));
		if (!close)
			return fail(ps, "a string without its closing '\"'");
		lit->kind = LIT_STRING;
		lit->s = ps->p + 1;
		lit->n = (size_t)(close - lit->s);
		ps->p = close + 1;
		return 0;
	}
	if (!isdigit(c) && c != '-')
		return fail(ps, "expected a value");
	ps->p++;
	while (ps->p < ps->end && (isdigit((unsigned char)*ps->p) || *ps->p == '.')) {
		if (*ps->p == '.' && point)
			break;
		point |= *ps->p == '.';
		ps->p++;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		point = 1;
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		while (ps->p < ps->end && isdigit((unsigned char)*ps->p))
			ps->p++;
	}
	lit->kind = point ? LIT_FLOAT : LIT_INT;
	lit->s = from;
	lit->n = (size_t)(ps->p - from);
	return 0;
}

/* The literal's text as a C string in buf (numbers are short), NULL when too long. */
static const char *number_text(const struct literal *lit, char *buf, size_t size)
{
	if (lit->n + 1 > size)
		return NULL;
	memcpy(buf, lit->s, lit->n);
	buf[lit->n] = '\0';
	return buf;
}

/* A whole-number literal converted with strtoll or strtoull; out of range is refused
 * (std::stoll throws there). */
static int convert_int(struct parser *ps, const struct literal *lit, int is_unsigned,
		       int64_t *i, uint64_t *u)
{
	char buf[64], *endp;
	const char *s = number_text(lit, buf, sizeof(buf));

	if (lit->kind != LIT_INT)
		return fail(ps, "expected an integer");
	if (!s || (s[0] == '-' && !s[1]))
		return fail(ps, "not a number");
	errno = 0;
	if (is_unsigned)
		*u = strtoull(s, &endp, 10);
	else
		*i = strtoll(s, &endp, 10);
	if (errno == ERANGE || (is_unsigned && s[0] == '-'))
		return fail(ps, "integer out of range");
	return 0;
}

static int parse_int(struct parser *ps, int64_t *v)
{
	struct literal lit;

	return literal(ps, &lit) ? -1 : convert_int(ps, &lit, 0, v, NULL);
}

static int parse_uint(struct parser *ps, uint64_t *v)
{
	struct literal lit;

	return literal(ps, &lit) ? -1 : convert_int(ps, &lit, 1, NULL, v);
}

/* A number as a double (std::stof and std::stod read what strtod reads; a float is
 * rounded from it by the caller, as strtof would round the text). */
static int convert_real(struct parser *ps, const struct literal *lit, int single,
			double *v)
{
	char buf[512], *endp;
	const char *s = number_text(lit, buf, sizeof(buf));

	if (lit->kind != LIT_INT && lit->kind != LIT_FLOAT)
		return fail(ps, "expected a number");
	if (!s || (s[0] == '-' && !s[1]))
		return fail(ps, "not a number");
	errno = 0;
	*v = single ? (double)strtof(s, &endp) : strtod(s, &endp);
	if (errno == ERANGE && (*v != 0 || single))
		return fail(ps, "number out of range");
	return 0;
}

static int parse_float(struct parser *ps, float *v)
{
	struct literal lit;
	double d;

	if (literal(ps, &lit) || convert_real(ps, &lit, 1, &d))
		return -1;
	*v = (float)d;
	return 0;
}

static int parse_double(struct parser *ps, double *v)
{
	struct literal lit;

	return literal(ps, &lit) ? -1 : convert_real(ps, &lit, 0, v);
}

/* A string literal, copied. */
static int parse_string(struct parser *ps, char **v)
{
	struct literal lit;

	if (literal(ps, &lit))
		return -1;
	if (lit.kind != LIT_STRING)
		return fail(ps, "expected a string in double quotes");
	return (*v = dup_text(ps, lit.s, lit.n)) ? 0 : -1;
}

static int parse_bytes(struct parser *ps, ProtobufCBinaryData *v)
{
	char *s;

	if (parse_string(ps, &s))
		return -1;
	v->data = (uint8_t *)s;
	v->len = strlen(s);
	return 0;
}

/* ---- building messages ----------------------------------------------------------------- */

/* Room for one more element at the end of a malloc'd array of n: arrays grow by
 * doubling (their capacity is the power of two at or above n). */
static void *grow(struct parser *ps, void *arr_ptr, size_t n, size_t size)
{
	void **arr = arr_ptr;

	if (n == 0 || (n & (n - 1)) == 0) {
		void *bigger = realloc(*arr, (n ? 2 * n : 1) * size);
		if (!bigger) {
			oom(ps);
			return NULL;
		}
		*arr = bigger;
	}
	return (char *)*arr + n * size;
}

/* Appends the message or string p to a repeated field; frees p when it cannot. */
static int append(struct parser *ps, void *arr_ptr, size_t *n, void *p, void (*drop)(void *))
{
	void **slot;

	if (!p)
		return oom(ps);
	if (!(slot = grow(ps, arr_ptr, *n, sizeof(void *)))) {
		drop(p);
		return -1;
	}
	*slot = p;
	(*n)++;
	return 0;
}

static void drop_message(void *m)
{
	protobuf_c_message_free_unpacked(m, NULL);
}

/* Appends the value at v (size bytes) to a malloc'd array of n. */
static int push(struct parser *ps, void *arr_ptr, size_t *n, size_t size, const void *v)
{
	void *slot = grow(ps, arr_ptr, *n, size);

	if (!slot)
		return -1;
	memcpy(slot, v, size);
	(*n)++;
	return 0;
}

#define PUSH(ps, arr, n, v) push((ps), &(arr), &(n), sizeof(*(arr)), &(v))

/* A new message of the given kind, set to its defaults (msg_init: its INIT value). */
static void *new_message(const void *msg_init, size_t size)
{
	void *m = malloc(size);

	if (m)
		memcpy(m, msg_init, size);
	return m;
}

#define NEW(type, INIT) ((type *)new_message(&(type)INIT, sizeof(type)))

/* ---- types ------------------------------------------------------------------------------ */

static int parse_type(struct parser *ps, Onnx__TypeProto *tp);

/* dims: '?' (unknown), an identifier (symbolic) or an integer, separated by ','. */
static int parse_shape(struct parser *ps, Onnx__TensorShapeProto *shape)
{
	do {
		Onnx__TensorShapeProto__Dimension *d =
			NEW(Onnx__TensorShapeProto__Dimension, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT);
		const char *s;
		size_t n;

		if (append(ps, &shape->dim, &shape->n_dim, d, drop_message))
			return -1;
		if (take(ps, '?', 0))
			continue;
		if ((n = identifier(ps, &s))) {
			if (!(d->dim_param = dup_text(ps, s, n)))
				return -1;
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
		} else {
			if (parse_int(ps, &d->dim_value))
				return -1;
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
		}
	} while (take(ps, ',', 0));
	return 0;
}

/* After an element type: nothing (a scalar: a shape of no dims), "[]" (rank unknown: no
 * shape) or "[dims]". */
static int parse_tensor_shape(struct parser *ps, Onnx__TensorShapeProto **shape)
{
	int bracket = take(ps, '[', 0);

	if (bracket && take(ps, ']', 0))
		return 0;
	if (!(*shape = NEW(Onnx__TensorShapeProto, ONNX__TENSOR_SHAPE_PROTO__INIT)))
		return oom(ps);
	if (!bracket)
		return 0;
	return parse_shape(ps, *shape) ? -1 : expect(ps, ']', 0);
}

/* An element type's code, required. */
static int parse_elem_type(struct parser *ps, int32_t *dtype)
{
	const char *s;
	size_t n = identifier(ps, &s);

	if (!n || !(*dtype = type_code(s, n)))
		return fail(ps, "expected an element type (float, int64, ...)");
	return 0;
}

/* type ( inner ) for seq and optional. */
static int parse_inner_type(struct parser *ps, Onnx__TypeProto **inner)
{
	if (expect(ps, '(', 0))
		return -1;
	if (!(*inner = NEW(Onnx__TypeProto, ONNX__TYPE_PROTO__INIT)))
		return oom(ps);
	return parse_type(ps, *inner) ? -1 : expect(ps, ')', 0);
}

static int parse_compound_type(struct parser *ps, Onnx__TypeProto *tp, const char *s, size_t n)
{
	if (same(s, n, "seq")) {
		Onnx__TypeProto__Sequence *q =
			NEW(Onnx__TypeProto__Sequence, ONNX__TYPE_PROTO__SEQUENCE__INIT);
		if (!(tp->sequence_type = q))
			return oom(ps);
		tp->value_case = ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE;
		return parse_inner_type(ps, &q->elem_type);
	}
	if (same(s, n, "optional")) {
		Onnx__TypeProto__Optional *q =
			NEW(Onnx__TypeProto__Optional, ONNX__TYPE_PROTO__OPTIONAL__INIT);
		if (!(tp->optional_type = q))
			return oom(ps);
		tp->value_case = ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE;
		return parse_inner_type(ps, &q->elem_type);
	}
	if (same(s, n, "map")) {
		Onnx__TypeProto__Map *q = NEW(Onnx__TypeProto__Map, ONNX__TYPE_PROTO__MAP__INIT);
		if (!(tp->map_type = q))
			return oom(ps);
		tp->value_case = ONNX__TYPE_PROTO__VALUE_MAP_TYPE;
		if (expect(ps, '(', 0) || parse_elem_type(ps, &q->key_type) || expect(ps, ',', 0))
			return -1;
		q->has_key_type = 1;
		if (!(q->value_type = NEW(Onnx__TypeProto, ONNX__TYPE_PROTO__INIT)))
			return oom(ps);
		return parse_type(ps, q->value_type) ? -1 : expect(ps, ')', 0);
	}
	if (same(s, n, "sparse_tensor")) {
		Onnx__TypeProto__SparseTensor *q =
			NEW(Onnx__TypeProto__SparseTensor, ONNX__TYPE_PROTO__SPARSE_TENSOR__INIT);
		if (!(tp->sparse_tensor_type = q))
			return oom(ps);
		tp->value_case = ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE;
		if (expect(ps, '(', 0) || parse_elem_type(ps, &q->elem_type))
			return -1;
		q->has_elem_type = 1;
		return parse_tensor_shape(ps, &q->shape) ? -1 : expect(ps, ')', 0);
	}
	return fail(ps, "expected a type (float[N,3], seq(...), map(...), optional(...), "
		    "sparse_tensor(...))");
}

static int parse_type(struct parser *ps, Onnx__TypeProto *tp)
{
	const char *s;
	size_t n = identifier(ps, &s);
	int dtype = n ? type_code(s, n) : 0;
	int rc;

	if (++ps->depth > GRAFT_MAX_PROTO_DEPTH)
		return fail(ps, "types nested too deep");
	if (dtype) {
		Onnx__TypeProto__Tensor *t = NEW(Onnx__TypeProto__Tensor, ONNX__TYPE_PROTO__TENSOR__INIT);
		if (!(tp->tensor_type = t))
			return oom(ps);
		tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
		t->has_elem_type = 1;
		t->elem_type = dtype;
		rc = parse_tensor_shape(ps, &t->shape);
	} else {
		rc = parse_compound_type(ps, tp, s, n);
	}
	ps->depth--;
	return rc;
}

/* [type] name */
static int parse_value_info(struct parser *ps, Onnx__ValueInfoProto *vi)
{
	const char *s;
	size_t n;

	if (next_is_type(ps)) {
		if (!(vi->type = NEW(Onnx__TypeProto, ONNX__TYPE_PROTO__INIT)))
			return oom(ps);
		if (parse_type(ps, vi->type))
			return -1;
	}
	if (!(n = identifier(ps, &s)))
		return fail(ps, "expected a name");
	return (vi->name = dup_text(ps, s, n)) ? 0 : -1;
}

/* ---- tensors ---------------------------------------------------------------------------- */

/* { values } of a tensor of type tp (which must be a tensor type with numeric dims). */
static int parse_tensor_values(struct parser *ps, Onnx__TensorProto *t,
			       const Onnx__TypeProto *tp)
{
	const Onnx__TypeProto__Tensor *tt = tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ?
		tp->tensor_type : NULL;

	if (!tt)
		return fail(ps, "a tensor's value needs a tensor type");
	t->has_data_type = 1;
	t->data_type = tt->elem_type;
	if (!tt->shape)
		return fail(ps, "a tensor's value needs its shape");
	for (size_t i = 0; i < tt->shape->n_dim; i++) {
		const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
		if (d->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
			return fail(ps, "a tensor's value needs numbers for its dims");
		if (PUSH(ps, t->dims, t->n_dims, d->dim_value))
			return -1;
	}
	if (expect(ps, '{', 0))
		return -1;
	if (take(ps, '}', 0))
		return 0;
	do {
		int64_t i;
		uint64_t u;
		float f;
		double x;
		ProtobufCBinaryData b;
		int rc;

		switch (t->data_type) {
		case GRAFT_UINT8: case GRAFT_INT8: case GRAFT_UINT16: case GRAFT_INT16:
		case GRAFT_INT32: case GRAFT_BOOL:
			if (!(rc = parse_int(ps, &i))) {
				int32_t v = (int32_t)i;
				rc = PUSH(ps, t->int32_data, t->n_int32_data, v);
			}
			break;
		case GRAFT_INT64:
			rc = parse_int(ps, &i) || PUSH(ps, t->int64_data, t->n_int64_data, i);
			break;
		case GRAFT_UINT32: case GRAFT_UINT64:
			rc = parse_uint(ps, &u) || PUSH(ps, t->uint64_data, t->n_uint64_data, u);
			break;
		case GRAFT_FLOAT:
			rc = parse_float(ps, &f) || PUSH(ps, t->float_data, t->n_float_data, f);
			break;
		case GRAFT_DOUBLE:
			rc = parse_double(ps, &x) || PUSH(ps, t->double_data, t->n_double_data, x);
			break;
		case GRAFT_STRING:
			if ((rc = parse_bytes(ps, &b)))
				break;
			if ((rc = PUSH(ps, t->string_data, t->n_string_data, b)))
				free(b.data);
			break;
		default:
			return fail(ps, "values of this element type cannot be written in text");
		}
		if (rc)
			return -1;
	} while (take(ps, ',', 0));
	return expect(ps, '}', 0);
}

/* type [name] [=] { values } */
static int parse_tensor(struct parser *ps, Onnx__TensorProto *t)
{
	Onnx__TypeProto *tp = NEW(Onnx__TypeProto, ONNX__TYPE_PROTO__INIT);
	const char *s;
	size_t n;
	int rc;

	if (!tp)
		return oom(ps);
	rc = parse_type(ps, tp);
	if (!rc && (n = identifier(ps, &s)) && !(t->name = dup_text(ps, s, n)))
		rc = -1;
	if (!rc && !t->name && !(t->name = dup_text(ps, "", 0)))
		rc = -1;
	if (!rc) {
		take(ps, '=', 0);
		rc = parse_tensor_values(ps, t, tp);
	}
	protobuf_c_message_free_unpacked(&tp->base, NULL);
	return rc;
}

/* ---- attributes, nodes, graphs ------------------------------------------------------- */

static int parse_graph(struct parser *ps, Onnx__GraphProto *g);

/* One value: a tensor (it starts with a type), a graph (another identifier), @name (a
 * reference to an attribute of the enclosing function), a number or a string. */
static int parse_attribute_value(struct parser *ps, Onnx__AttributeProto *a)
{
	int c = next_char(ps);
	struct literal lit;

	if (isalpha(c) || c == '_') {
		a->has_type = 1;
		if (next_is_type(ps)) {
			a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
			if (!(a->t = NEW(Onnx__TensorProto, ONNX__TENSOR_PROTO__INIT)))
				return oom(ps);
			return parse_tensor(ps, a->t);
		}
		a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
		if (!(a->g = NEW(Onnx__GraphProto, ONNX__GRAPH_PROTO__INIT)))
			return oom(ps);
		return parse_graph(ps, a->g);
	}
	if (take(ps, '@', 0)) {
		const char *s;
		size_t n = identifier(ps, &s);
		if (!n)
			return fail(ps, "expected an attribute's name after '@'");
		return (a->ref_attr_name = dup_text(ps, s, n)) ? 0 : -1;
	}
	if (literal(ps, &lit))
		return -1;
	a->has_type = 1;
	switch (lit.kind) {
	case LIT_INT:
		a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
		a->has_i = 1;
		return convert_int(ps, &lit, 0, &a->i, NULL);
	case LIT_FLOAT: {
		double d;
		a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
		a->has_f = 1;
		if (convert_real(ps, &lit, 1, &d))
			return -1;
		a->f = (float)d;
		return 0;
	}
	case LIT_STRING:
		a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
		a->has_s = 1;
		if (!(a->s.data = (uint8_t *)dup_text(ps, lit.s, lit.n)))
			return -1;
		a->s.len = lit.n;
		return 0;
	default:
		return fail(ps, "expected a value");
	}
}

/* [ v, v, ... ]: the list's type is its values' (ints, floats or strings). */
static int parse_attribute_list(struct parser *ps, Onnx__AttributeProto *a)
{
	a->has_type = 1;
	do {
		Onnx__AttributeProto *v = NEW(Onnx__AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT);
		int rc;

		if (!v)
			return oom(ps);
		if ((rc = parse_attribute_value(ps, v))) {
			/* v holds what it parsed */
		} else if (v->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) {
			a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
			rc = PUSH(ps, a->ints, a->n_ints, v->i);
		} else if (v->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT) {
			a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
			rc = PUSH(ps, a->floats, a->n_floats, v->f);
		} else if (v->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING) {
			a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
			if (!(rc = PUSH(ps, a->strings, a->n_strings, v->s))) {
				v->s.data = NULL;       /* moved */
				v->has_s = 0;
			}
		} else {
			rc = fail(ps, "a list holds numbers or strings (lists of tensors or "
				  "graphs cannot be written in text)");
		}
		drop_message(v);
		if (rc)
			return -1;
	} while (take(ps, ',', 0));
	return expect(ps, ']', 0);
}

/* name [: type] = value */
static int parse_attribute(struct parser *ps, Onnx__AttributeProto *a)
{
	const char *s;
	size_t n = identifier(ps, &s);

	if (!n)
		return fail(ps, "expected an attribute's name");
	if (!(a->name = dup_text(ps, s, n)))
		return -1;
	if (take(ps, ':', 0)) {
		size_t i, k = sizeof(attribute_type_names) / sizeof(attribute_type_names[0]);
		n = identifier(ps, &s);
		for (i = 0; i < k && !same(s, n, attribute_type_names[i].name); i++)
			;
		if (i == k)
			return fail(ps, "expected an attribute type (int, floats, tensor, ...)");
		a->has_type = 1;
		a->type = attribute_type_names[i].type;
	}
	if (expect(ps, '=', 0))
		return -1;
	if (take(ps, '[', 0))
		return parse_attribute_list(ps, a);
	return parse_attribute_value(ps, a);
}

/* < attr, attr, ... >, if it comes next. */
static int parse_attributes(struct parser *ps, Onnx__NodeProto *nd)
{
	if (!take(ps, '<', 0))
		return 0;
	do {
		Onnx__AttributeProto *a = NEW(Onnx__AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT);
		if (append(ps, &nd->attribute, &nd->n_attribute, a, drop_message) ||
		    parse_attribute(ps, a))
			return -1;
	} while (take(ps, ',', 0));
	return expect(ps, '>', 0);
}

/* name, name, ... where a name may be empty (an optional input or output left out);
 * nothing at all is an empty list. */
static int parse_names(struct parser *ps, char ***names, size_t *n)
{
	const char *s;
	size_t len = identifier(ps, &s);

	if (!len)               /* (a list that starts with a blank is no list) */
		return 0;
	for (;;) {
		if (append(ps, names, n, dup_text(ps, s, len), free))
			return -1;
		if (!take(ps, ',', 0))
			return 0;
		len = identifier(ps, &s);
	}
}

/* outputs = [domain.]op [<attrs>] (inputs) [<attrs>] */
static int parse_node(struct parser *ps, Onnx__NodeProto *nd)
{
	const char *s;
	size_t n;
	char *domain;
	size_t dlen = 0;

	if (parse_names(ps, &nd->output, &nd->n_output) || expect(ps, '=', 0))
		return -1;
	if (!(n = identifier(ps, &s)))
		return fail(ps, "expected an op's name");
	if (!(domain = dup_text(ps, "", 0)))
		return -1;
	nd->domain = domain;
	while (take(ps, '.', 0)) {
		char *longer = realloc(domain, dlen + n + 2);
		if (!longer)
			return oom(ps);
		nd->domain = domain = longer;
		if (dlen)
			domain[dlen++] = '.';
		memcpy(domain + dlen, s, n);
		domain[dlen += n] = '\0';
		if (!(n = identifier(ps, &s)))
			return fail(ps, "expected an op's name after '.'");
	}
	if (!(nd->op_type = dup_text(ps, s, n)) || parse_attributes(ps, nd) || expect(ps, '(', 0) ||
	    parse_names(ps, &nd->input, &nd->n_input) || expect(ps, ')', 0))
		return -1;
	return nd->n_attribute ? 0 : parse_attributes(ps, nd);
}

/* { node node ... } */
static int parse_nodes(struct parser *ps, Onnx__NodeProto ***nodes, size_t *n)
{
	if (expect(ps, '{', 0))
		return -1;
	while (!take(ps, '}', 0)) {
		Onnx__NodeProto *nd;
		if (!next_char(ps))
			return fail(ps, "expected '}' before the end");
		nd = NEW(Onnx__NodeProto, ONNX__NODE_PROTO__INIT);
		if (append(ps, nodes, n, nd, drop_message) || parse_node(ps, nd))
			return -1;
	}
	return 0;
}

/* A value info, and with '= value' an initializer of its name and type too. */
static int parse_value_or_initializer(struct parser *ps, Onnx__GraphProto *g, int is_input,
				      int *is_init)
{
	Onnx__ValueInfoProto *vi = NEW(Onnx__ValueInfoProto, ONNX__VALUE_INFO_PROTO__INIT);
	Onnx__TensorProto *t;
	int rc;

	if (!vi)
		return oom(ps);
	if (parse_value_info(ps, vi)) {
		drop_message(vi);
		return -1;
	}
	*is_init = take(ps, '=', 0);
	if (*is_init) {
		t = NEW(Onnx__TensorProto, ONNX__TENSOR_PROTO__INIT);
		if (append(ps, &g->initializer, &g->n_initializer, t, drop_message) ||
		    !(t->name = dup_text(ps, vi->name, strlen(vi->name))) ||
		    (!vi->type && fail(ps, "an initializer needs its type")) ||
		    parse_tensor_values(ps, t, vi->type)) {
			drop_message(vi);
			return -1;
		}
	}
	if (is_input)
		rc = append(ps, &g->input, &g->n_input, vi, drop_message);
	else if (!*is_init)
		rc = append(ps, &g->value_info, &g->n_value_info, vi, drop_message);
	else
		rc = (drop_message(vi), 0);
	return rc;
}

/* name (inputs [= value]) => (outputs) [<value infos and initializers>] { nodes } */
static int parse_graph(struct parser *ps, Onnx__GraphProto *g)
{
	const char *s;
	size_t n = identifier(ps, &s);
	int is_init, rc = -1;

	if (++ps->depth > GRAFT_MAX_PROTO_DEPTH)
		return fail(ps, "graphs nested too deep");
	if (!(g->name = dup_text(ps, s, n)))
		goto out;
	if (take(ps, '(', 0) && !take(ps, ')', 0)) {
		do {
			if (parse_value_or_initializer(ps, g, 1, &is_init))
				goto out;
		} while (take(ps, ',', 0));
		if (expect(ps, ')', 0))
			goto out;
	}
	if (expect(ps, '=', 0) || expect(ps, '>', 1) || expect(ps, '(', 0))
		goto out;
	if (!take(ps, ')', 0)) {
		do {
			Onnx__ValueInfoProto *vi = NEW(Onnx__ValueInfoProto,
						       ONNX__VALUE_INFO_PROTO__INIT);
			if (append(ps, &g->output, &g->n_output, vi, drop_message) ||
			    parse_value_info(ps, vi))
				goto out;
		} while (take(ps, ',', 0));
		if (expect(ps, ')', 0))
			goto out;
	}
	if (take(ps, '<', 0) && !take(ps, '>', 0)) {
		do {
			if (parse_value_or_initializer(ps, g, 0, &is_init))
				goto out;
		} while (take(ps, ',', 0));
		if (expect(ps, '>', 0))
			goto out;
	}
	rc = parse_nodes(ps, &g->node, &g->n_node);
out:
	ps->depth--;
	return rc;
}

/* ---- models and functions ------------------------------------------------------------ */

/* [ "domain" : version, ... ] */
static int parse_opsets(struct parser *ps, Onnx__OperatorSetIdProto ***ops, size_t *n)
{
	if (expect(ps, '[', 0))
		return -1;
	if (take(ps, ']', 0))
		return 0;
	do {
		Onnx__OperatorSetIdProto *o = NEW(Onnx__OperatorSetIdProto,
						  ONNX__OPERATOR_SET_ID_PROTO__INIT);
		if (append(ps, ops, n, o, drop_message) || parse_string(ps, &o->domain) ||
		    expect(ps, ':', 0) || parse_int(ps, &o->version))
			return -1;
		o->has_version = 1;
	} while (take(ps, ',', 0));
	return expect(ps, ']', 0);
}

/* [ "key" : "value", ... ] */
static int parse_metadata(struct parser *ps, Onnx__ModelProto *m)
{
	if (expect(ps, '[', 0))
		return -1;
	if (take(ps, ']', 0))
		return 0;
	do {
		Onnx__StringStringEntryProto *e = NEW(Onnx__StringStringEntryProto,
						      ONNX__STRING_STRING_ENTRY_PROTO__INIT);
		if (append(ps, &m->metadata_props, &m->n_metadata_props, e, drop_message) ||
		    parse_string(ps, &e->key) || expect(ps, ':', 0) || parse_string(ps, &e->value))
			return -1;
	} while (take(ps, ',', 0));
	return expect(ps, ']', 0);
}

/* One "keyword: value" of a model's header. */
static int parse_model_field(struct parser *ps, Onnx__ModelProto *m, const char *s, size_t n)
{
	if (same(s, n, "ir_version")) {
		m->has_ir_version = 1;
		return parse_int(ps, &m->ir_version);
	}
	if (same(s, n, "model_version")) {
		m->has_model_version = 1;
		return parse_int(ps, &m->model_version);
	}
	if (same(s, n, "opset_import"))
		return parse_opsets(ps, &m->opset_import, &m->n_opset_import);
	if (same(s, n, "metadata_props"))
		return parse_metadata(ps, m);
	char **field = same(s, n, "producer_name") ? &m->producer_name :
		same(s, n, "producer_version") ? &m->producer_version :
		same(s, n, "domain") ? &m->domain : same(s, n, "doc_string") ? &m->doc_string : NULL;
	if (!field)
		return fail(ps, "expected a model field (ir_version, opset_import, producer_name, "
			    "producer_version, domain, model_version, doc_string, metadata_props)");
	free(*field);
	*field = NULL;
	return parse_string(ps, field);
}

/* <opset_import: [...], domain: "d", doc_string: "s"> name <attrs> (inputs) => (outputs)
 * { nodes } */
static int parse_function(struct parser *ps, Onnx__FunctionProto *f)
{
	const char *s;
	size_t n;

	if (take(ps, '<', 0)) {
		do {
			char **field;
			n = identifier(ps, &s);
			if (expect(ps, ':', 0))
				return -1;
			if (same(s, n, "opset_import")) {
				if (parse_opsets(ps, &f->opset_import, &f->n_opset_import))
					return -1;
				continue;
			}
			field = same(s, n, "domain") ? &f->domain :
				same(s, n, "doc_string") ? &f->doc_string : NULL;
			if (!field)
				return fail(ps, "expected a function field (opset_import, domain, "
					    "doc_string)");
			free(*field);
			*field = NULL;
			if (parse_string(ps, field))
				return -1;
		} while (take(ps, ',', 0));
		if (expect(ps, '>', 0))
			return -1;
	}
	if (!(n = identifier(ps, &s)))
		return fail(ps, "expected a function's name");
	if (!(f->name = dup_text(ps, s, n)))
		return -1;
	if (take(ps, '<', 0)) {
		if (parse_names(ps, &f->attribute, &f->n_attribute) || expect(ps, '>', 0))
			return -1;
	}
	if (take(ps, '(', 0)) {
		if (parse_names(ps, &f->input, &f->n_input) || expect(ps, ')', 0))
			return -1;
	}
	if (expect(ps, '=', 0) || expect(ps, '>', 1))
		return -1;
	if (take(ps, '(', 0)) {
		if (parse_names(ps, &f->output, &f->n_output) || expect(ps, ')', 0))
			return -1;
	}
	return parse_nodes(ps, &f->node, &f->n_node);
}

static int parse_model(struct parser *ps, Onnx__ModelProto *m)
{
	if (take(ps, '<', 0)) {
		do {
			const char *s;
			size_t n = identifier(ps, &s);
			if (expect(ps, ':', 0) || parse_model_field(ps, m, s, n))
				return -1;
		} while (take(ps, ',', 0));
		if (expect(ps, '>', 0))
			return -1;
	}
	if (!(m->graph = NEW(Onnx__GraphProto, ONNX__GRAPH_PROTO__INIT)))
		return oom(ps);
	if (parse_graph(ps, m->graph))
		return -1;
	while (next_char(ps)) {
		Onnx__FunctionProto *f = NEW(Onnx__FunctionProto, ONNX__FUNCTION_PROTO__INIT);
		if (append(ps, &m->functions, &m->n_functions, f, drop_message) ||
		    parse_function(ps, f))
			return -1;
	}
	return 0;
}

/* ---- entry points ----------------------------------------------------------------------- */

int onnx_text_detect(const void *head, size_t len)
{
	const unsigned char *b = head;
	size_t i = 0;

	/* text: no bytes a binary protobuf is made of (a ModelProto starts with a field
	 * tag, 0x08 or 0x12 ...), then a model header or a graph's name and '(' (other text
	 * is no model: the binary reader says so) */
	for (size_t j = 0; j < len; j++)
		if ((b[j] < 0x20 && !isspace(b[j])) || b[j] == 0x7f)
			return 0;
	for (;;) {
		while (i < len && isspace(b[i]))
			i++;
		if (i < len && b[i] == '#') {
			while (i < len && b[i] != '\n')
				i++;
			continue;
		}
		break;
	}
	if (i < len && b[i] == '<')
		return 1;
	if (i >= len || !(isalpha(b[i]) || b[i] == '_'))
		return 0;
	while (i < len && (isalnum(b[i]) || b[i] == '_'))      /* a graph's name, then ( */
		i++;
	while (i < len && isspace(b[i]))
		i++;
	return i < len && b[i] == '(';
}

int onnx_text_parse(const char *text, size_t len, void **pb, size_t *pb_len,
		    struct graft_err *err)
{
	struct parser ps = {text, text, text + len, 0, err};
	Onnx__ModelProto *m = NEW(Onnx__ModelProto, ONNX__MODEL_PROTO__INIT);
	int rc = 0;

	*pb = NULL;
	*pb_len = 0;
	if (!m)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (memchr(text, '\0', len))
		rc = graft_err_set(err, GRAFT_EFORMAT, "ONNX text holds a NUL byte");
	else if ((rc = parse_model(&ps, m)))
		rc = err->code;         /* the helpers return -1 once err is set */
	else if (!m->has_ir_version)
		rc = graft_err_set(err, GRAFT_EFORMAT, "ONNX text: a model needs a header with "
				   "its IR version and opsets, <ir_version: 8, opset_import: "
				   "[\"\" : 13]>");
	else {
		size_t n = protobuf_c_message_get_packed_size(&m->base);
		if (n > PROTOBUF_LIMIT)
			rc = graft_err_set(err, GRAFT_EFORMAT, "the model is 2 GiB or more");
		else if (!(*pb = malloc(n ? n : 1)))
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		else
			*pb_len = protobuf_c_message_pack(&m->base, *pb);
	}
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return rc;
}
