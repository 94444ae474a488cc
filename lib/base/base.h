/*
 * base.h: the private header of lib/base/, the layer everything else stands on: a
 * string-keyed hash map, token escaping and checked shape arithmetic (util.c), array
 * growth, whole-input reads and file mapping (io.c), a JSON reader (json.c).  Nothing
 * here knows about models.
 */
#ifndef GRAFT_BASE_H
#define GRAFT_BASE_H

#include "graft.h"

/* A small open-addressing hash map from borrowed strings to indices. */
struct strmap {
	const char **keys;
	long *vals;
	size_t cap, count;
};
int strmap_init(struct strmap *sm, size_t expected);
void strmap_release(struct strmap *sm);
/* Inserts key -> val; returns the previous value if key was present, else -1.  Keys are
 * borrowed: they must outlive the map. */
long strmap_put(struct strmap *sm, const char *key, long val);
long strmap_get(const struct strmap *sm, const char *key);
/* For a map that owns its keys, so that they may outlive the strings they came from:
 * strmap_put with a copy of key when it is new (-2: out of memory), and the release
 * that frees the keys. */
long strmap_put_copy(struct strmap *sm, const char *key, long val);
void strmap_release_copies(struct strmap *sm);

/* ---- io.c ---- */
/* Reads all of fd into a new buffer that starts with the head_len bytes at head (already
 * read from fd, to detect the format). */
int io_read_fd_after(int fd, const void *head, size_t head_len, void **buf, size_t *len,
		     struct graft_err *err);
/* The bytes of the file at path into *buf (malloc'd, NUL-terminated past *len; NULL on
 * failure); errors name path. */
int io_read_file(const char *path, char **buf, size_t *len, struct graft_err *err);
/* Maps a regular file read-only.  GRAFT_EINVAL (with no message) when fd is not a
 * regular file, so callers fall back to reading. */
int io_map_fd(int fd, void **map, size_t *len, struct graft_err *err);

/* Lets the pages that hold [p, p + n) of the read-only file mapping [map, map + map_len)
 * (io_map_fd), and the others of their 64 KiB blocks within it, go from the process's
 * memory: touched again, even by another thread meanwhile, they are read back from the
 * file (the page cache), unchanged.  Never for other memory, whose contents it would
 * lose. */
void io_drop_pages(const void *map, size_t map_len, const void *p, size_t n);

/* ---- hash.c ---- */
/* graft_xxh64 of bytes in the read-only file mapping [map, map + map_len), letting their
 * pages go as it reads them (io_drop_pages): checking a file larger than memory does not
 * fill memory. */
uint64_t xxh64_mapped(const void *buf, size_t len, uint64_t seed, const void *map,
		      size_t map_len);

/* ---- parallel.c ---- */
#define PARALLEL_MAX_THREADS 64
/* Calls fn(ctx, i, err) for i in [0, n) on up to threads threads (the caller's among
 * them; at most PARALLEL_MAX_THREADS), each item once, in no set order: fn must not
 * depend on which items ran before.  When items fail, the error returned (and copied
 * into err) is that of the lowest failing index, whatever the timing; items after it
 * may or may not have run. */
int parallel_for(int threads, int64_t n, int (*fn)(void *ctx, int64_t i, struct graft_err *err),
		 void *ctx, struct graft_err *err);

/* ---- util ---- */
/* Percent-encodes bytes outside '!'..'~' and '%' itself, so any name fits one token. */
char *str_escape(const char *s);
/* Decodes str_escape's output in place; -1 on a malformed escape. */
int str_unescape(char *s);
/* Multiplies dims into *numel, refusing negative dims and overflow past 2^62, also of
 * the dims other than zeros (so that a 0 cannot hide dims whose strides overflow). */
int dims_numel(const int64_t *dims, int rank, uint64_t *numel);
/* Checks dims as dims_numel does; on failure fills err with GRAFT_EFORMAT naming what
 * (such as "tensor 'W'") and the dims: "tensor 'W': dims [2,-3] are negative". */
int dims_check(const int64_t *dims, size_t rank, const char *what, uint64_t *numel,
	       struct graft_err *err);
/* Writes dims as "2,3,4" into buf (size at least 32), ending in ",..." where they do not
 * fit. */
void dims_string(const int64_t *dims, size_t rank, char *buf, size_t size);
/* Returns arr (of *cap elements of size bytes) with room for element n: arr itself, or
 * arr moved and doubled when full, so that appending one at a time costs amortized O(1)
 * (a realloc by one each time copies the whole array, always so under AddressSanitizer).
 * NULL when memory runs out, arr and *cap untouched. */
void *array_grow(void *arr, size_t *cap, size_t n, size_t size);

/* ---- json.c ---- */
/* A pull reader of JSON over a buffer (RFC 8259, plus the non-finite tokens NaN, -NaN,
 * nan, -nan, Infinity, -Infinity, inf and -inf).  Nothing is allocated; every error is
 * GRAFT_EFORMAT with the place, "... at column C" in one-line mode and "... at line L,
 * column C" otherwise (bytes from 1), and leaves the reader unusable. */
#define JSON_MAX_DEPTH 64       /* objects and arrays open at once */
#define JSON_MAX_NUMBER 64      /* characters of one number */

enum json_kind { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_NONFINITE, JSON_STRING,
		 JSON_OBJECT, JSON_ARRAY };

struct json_token {
	enum json_kind kind;
	double num;             /* JSON_NUMBER: strtod's; JSON_NONFINITE: NaN or +-infinity */
	size_t len;             /* JSON_STRING: its decoded length in bytes, all of them */
	size_t at;              /* where it starts in the input (the quote, the bracket) */
};

struct json {
	const unsigned char *s;
	size_t n, i;            /* the input, and the position in it */
	int one_line;           /* positions as "column C"; the end is "the end of the line" */
	int depth;              /* objects and arrays open */
	char close[JSON_MAX_DEPTH];             /* each one's closing bracket */
	unsigned char started[JSON_MAX_DEPTH];  /* whether it has had a member yet */
	struct graft_err *err;
};
/* Starts reading the len bytes at buf (borrowed; NUL is a byte like another). */
void json_init(struct json *j, const void *buf, size_t len, int one_line,
	       struct graft_err *err);
void json_skip_space(struct json *j);
/* GRAFT_EFORMAT: the message, then the place of j->i. */
int json_fail(struct json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "expected WANTED, found 'x'" (or "byte 0xNN", or the end), then the place. */
int json_unexpected(struct json *j, const char *wanted);
/* The value after any space at j->i, into t: a scalar whole (a string's first cap decoded
 * bytes into buf, NULL: not kept, never NUL-terminated), an object or array only its
 * opening bracket (then json_next, or json_skip). */
int json_value(struct json *j, struct json_token *t, char *buf, size_t cap);
/* Steps through the innermost open object or array: 1 when a member follows (an
 * object's key read into key, buf and cap as for json_value, and the ':' after it; key
 * may be NULL), 0 when the container closed here, or an error. */
int json_next(struct json *j, struct json_token *key, char *buf, size_t cap);
/* Reads the rest of t, the value json_value just read: nothing for a scalar, through the
 * closing bracket for an object or array. */
int json_skip(struct json *j, const struct json_token *t);
/* Only space left, or json_unexpected(wanted). */
int json_end(struct json *j, const char *wanted);
/* The length (1 to 4) of the well-formed UTF-8 character at s (n >= 1 bytes left), with
 * its code point in *cp; 0 when malformed (overlong, a surrogate, past U+10FFFF, cut). */
size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp);
/* Code point cp (at most U+10FFFF, no surrogate) as UTF-8 into b (room for 4); its
 * length. */
size_t utf8_encode(uint32_t cp, unsigned char *b);

#endif
