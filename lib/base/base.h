/*
 * base.h: the private header of lib/base/, the layer everything else stands on: a
 * string-keyed hash map, token escaping and checked shape arithmetic (util.c), array
 * growth, whole-input reads and file mapping (io.c).  Nothing here knows about models.
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
/* Maps a regular file read-only.  GRAFT_EINVAL (with no message) when fd is not a
 * regular file, so callers fall back to reading. */
int io_map_fd(int fd, void **map, size_t *len, struct graft_err *err);

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

#endif
