/*
 * util.c: small helpers shared by the modules: a string-to-index hash map (node and
 * tensor lookups by name), token escaping for the text manifest, and checked shape
 * arithmetic.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"

int dims_numel(const int64_t *dims, int rank, uint64_t *numel)
{
	uint64_t n = 1, nonzero = 1;

	for (int i = 0; i < rank; i++) {
		if (dims[i] < 0)
			return -1;
		if (dims[i] == 0) {
			n = 0;
			continue;
		}
		if (nonzero > (UINT64_C(1) << 62) / (uint64_t)dims[i])
			return -1;
		nonzero *= (uint64_t)dims[i];
		n *= (uint64_t)dims[i];
	}
	*numel = n;
	return 0;
}

int dims_check(const int64_t *dims, size_t rank, const char *what, uint64_t *numel,
	       struct graft_err *err)
{
	char list[96];
	int negative = 0;
	uint64_t n;

	if (rank <= INT_MAX && !dims_numel(dims, (int)rank, numel ? numel : &n))
		return 0;
	for (size_t i = 0; i < rank; i++)
		negative |= dims[i] < 0;
	dims_string(dims, rank, list, sizeof(list));
	return graft_err_set(err, GRAFT_EFORMAT, "%s: dims [%s] %s", what, list,
			     negative ? "are negative" : "overflow");
}

void dims_string(const int64_t *dims, size_t rank, char *buf, size_t size)
{
	size_t len = 0, i;

	buf[0] = 0;
	for (i = 0; i < rank && len + 26 < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%" PRId64, i ? "," : "", dims[i]);
	if (i < rank)
		snprintf(buf + len, size - len, ",...");
}

static int plain(unsigned char c) { return c > ' ' && c <= '~' && c != '%'; }

char *str_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	char *out, *o;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += plain(*p) ? 1 : 3;
	out = o = malloc(n + 1);
	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (plain(*p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = 0;
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int str_unescape(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (*p != '%') {
			*o++ = *p;
			continue;
		}
		int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -1;
		*o++ = (char)(hi * 16 + lo);
		p += 2;
	}
	*o = 0;
	return 0;
}

/* FNV-1a: short keys, so a simple hash is enough. */
static uint64_t strhash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

int strmap_init(struct strmap *sm, size_t expected)
{
	size_t cap = 16;

	while (cap < expected * 2)
		cap *= 2;
	sm->keys = calloc(cap, sizeof(*sm->keys));
	sm->vals = calloc(cap, sizeof(*sm->vals));
	sm->cap = cap;
	sm->count = 0;
	if (!sm->keys || !sm->vals) {
		strmap_release(sm);
		return GRAFT_ENOMEM;
	}
	return 0;
}

void strmap_release(struct strmap *sm)
{
	free(sm->keys);
	free(sm->vals);
	memset(sm, 0, sizeof(*sm));
}

static size_t slot_of(const struct strmap *sm, const char *key)
{
	size_t i = strhash(key) & (sm->cap - 1);
	while (sm->keys[i] && strcmp(sm->keys[i], key) != 0)
		i = (i + 1) & (sm->cap - 1);
	return i;
}

static int grow(struct strmap *sm)
{
	struct strmap bigger;

	if (strmap_init(&bigger, sm->cap))
		return GRAFT_ENOMEM;
	for (size_t i = 0; i < sm->cap; i++)
		if (sm->keys[i]) {
			size_t j = slot_of(&bigger, sm->keys[i]);
			bigger.keys[j] = sm->keys[i];
			bigger.vals[j] = sm->vals[i];
			bigger.count++;
		}
	strmap_release(sm);
	*sm = bigger;
	return 0;
}

long strmap_put(struct strmap *sm, const char *key, long val)
{
	size_t i;
	long old;

	if ((sm->count + 1) * 2 > sm->cap && grow(sm))
		return -2;
	i = slot_of(sm, key);
	if (sm->keys[i]) {
		old = sm->vals[i];
		sm->vals[i] = val;
		return old;
	}
	sm->keys[i] = key;
	sm->vals[i] = val;
	sm->count++;
	return -1;
}

long strmap_put_copy(struct strmap *sm, const char *key, long val)
{
	long old;
	char *copy;

	if (sm->cap && sm->keys[slot_of(sm, key)])
		return strmap_put(sm, key, val);        /* present: its own key stays */
	if (!(copy = strdup(key)))
		return -2;
	if ((old = strmap_put(sm, copy, val)) == -2)
		free(copy);
	return old;
}

void strmap_release_copies(struct strmap *sm)
{
	for (size_t i = 0; i < sm->cap; i++)
		free((char *)sm->keys[i]);
	strmap_release(sm);
}

long strmap_get(const struct strmap *sm, const char *key)
{
	size_t i;

	if (!sm->cap)
		return -1;
	i = slot_of(sm, key);
	return sm->keys[i] ? sm->vals[i] : -1;
}

void *array_grow(void *arr, size_t *cap, size_t n, size_t size)
{
	size_t c = n < 8 ? 16 : 2 * n;

	if (n < *cap)
		return arr;
	if (c > SIZE_MAX / size || !(arr = realloc(arr, c * size)))
		return NULL;
	*cap = c;
	return arr;
}

double graft_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
