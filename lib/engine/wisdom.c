/*
 * wisdom.c: which kernel won, per layer shape and machine (graft_wisdom_*), kept in a
 * small text file as FFTW keeps its wisdom.  The kernels ask (wisdom_find) before they
 * build a primitive, and add what they timed (wisdom_add); graft_wisdom_save merges the
 * additions into the file under a lock, so that processes timing at the same time lose
 * nothing but the race for a key both timed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <oneapi/dnnl/dnnl.h>

#include "base/base.h"
#include "engine/ops/ops.h"

#define WISDOM_HEADER "graft-wisdom 1\n"
#define WISDOM_MAX_BYTES ((size_t)16 << 20)

struct wisdom_entry {
	char *key;              /* machine|shape */
	char *choice;
	double us;              /* the winner's time, microseconds */
	double diff;            /* its result's largest difference from the default kernel's,
				 * relative to the largest value */
	int added;              /* timed here since the load */
};

struct graft_wisdom {
	char *machine;
	struct wisdom_entry *e;
	size_t n, cap;
	struct strmap by_key;   /* -> index into e */
};

static const char *isa_name(dnnl_cpu_isa_t isa)
{
	switch (isa) {
	case dnnl_cpu_isa_sse41: return "sse41";
	case dnnl_cpu_isa_avx: return "avx";
	case dnnl_cpu_isa_avx2: return "avx2";
	case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
	case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
	case dnnl_cpu_isa_avx512_core: return "avx512_core";
	case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
	case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
	case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
	case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
	default: return "isa?";
	}
}

/* Text that may sit in a key: no tab, newline or '|' (the separators). */
static void clean(char *s)
{
	for (; *s; s++)
		if (*s == '\t' || *s == '\n' || *s == '\r' || *s == '|')
			*s = ' ';
}

/* Adds key -> choice, or replaces the choice of a key already there. */
static int put(struct graft_wisdom *w, const char *key, const char *choice, double us,
	       double diff, int added, struct graft_err *err)
{
	long i = strmap_get(&w->by_key, key);
	char *c = strdup(choice);

	if (!c)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if (i >= 0) {
		free(w->e[i].choice);
		w->e[i].choice = c;
		w->e[i].us = us;
		w->e[i].diff = diff;
		w->e[i].added |= added;
		return 0;
	}
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;
		struct wisdom_entry *e = realloc(w->e, cap * sizeof(*e));
		if (!e) {
			free(c);
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
		w->e = e;
		w->cap = cap;
	}
	struct wisdom_entry *e = &w->e[w->n];
	if (!(e->key = strdup(key)) || strmap_put(&w->by_key, e->key, (long)w->n) == -2) {
		free(e->key);
		free(c);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	e->choice = c;
	e->us = us;
	e->diff = diff;
	e->added = added;
	w->n++;
	return 0;
}

/* Reads the entries of text (a wisdom file's contents) into w. */
static int parse(struct graft_wisdom *w, char *text, const char *path, struct graft_err *err)
{
	char *line = text, *next;
	long no = 1;

	if (strncmp(text, WISDOM_HEADER, strlen(WISDOM_HEADER)) != 0)
		return graft_err_set(err, GRAFT_EFORMAT, "%s: not a graft wisdom file (line 1 is "
				     "not '%.*s')", path, (int)strlen(WISDOM_HEADER) - 1,
				     WISDOM_HEADER);
	for (line += strlen(WISDOM_HEADER); *line; line = next) {
		char *f[4];
		double num[2];
		int rc, k;

		no++;
		if (!(next = strchr(line, '\n')))
			return graft_err_set(err, GRAFT_EFORMAT, "%s: line %ld does not end", path, no);
		*next++ = 0;
		f[0] = line;
		for (k = 1; k < 4 && (f[k] = strchr(f[k - 1], '\t')); k++)
			*f[k]++ = 0;
		if (k < 4 || strchr(f[3], '\t') || !*f[0] || !*f[1])
			return graft_err_set(err, GRAFT_EFORMAT, "%s: line %ld is not KEY<tab>CHOICE"
					     "<tab>MICROSECONDS<tab>DIFFERENCE", path, no);
		for (k = 0; k < 2; k++) {
			char *end;
			errno = 0;
			num[k] = strtod(f[2 + k], &end);
			if (errno || end == f[2 + k] || *end || !(num[k] >= 0))
				return graft_err_set(err, GRAFT_EFORMAT, "%s: line %ld: '%s' is not a "
						     "number", path, no, f[2 + k]);
		}
		if ((rc = put(w, f[0], f[1], num[0], num[1], 0, err)))
			return rc;
	}
	return 0;
}

/* Reads the file at path into w (a missing one adds nothing). */
static int read_file(struct graft_wisdom *w, const char *path, struct graft_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
	void *buf = NULL;
	size_t len = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : graft_err_set(err, GRAFT_EIO, "%s: %s", path,
							   strerror(errno));
	rc = graft_read_fd_max(fd, WISDOM_MAX_BYTES, &buf, &len, err);
	close(fd);
	if (rc)
		return graft_err_prefix(err, path);
	char *text = realloc(buf, len + 1);
	if (!text) {
		free(buf);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	text[len] = 0;
	if (strlen(text) != len)
		rc = graft_err_set(err, GRAFT_EFORMAT, "%s: not a graft wisdom file (a NUL byte)",
				   path);
	else
		rc = parse(w, text, path, err);
	free(text);
	return rc;
}

static struct graft_wisdom *wisdom_new(const char *machine)
{
	struct graft_wisdom *w = calloc(1, sizeof(*w));

	if (!w || !(w->machine = strdup(machine)) || strmap_init(&w->by_key, 64)) {
		if (w)
			free(w->machine);
		free(w);
		return NULL;
	}
	return w;
}

int graft_wisdom_load(struct graft_wisdom **out, const char *path, const char *cpu,
		      struct graft_err *err)
{
	const dnnl_version_t *v = dnnl_version();
	char machine[512], name[256];
	struct graft_wisdom *w;
	int rc;

	*out = NULL;
	snprintf(name, sizeof(name), "%s", cpu && *cpu ? cpu : "cpu?");
	clean(name);
	snprintf(machine, sizeof(machine), "%s|%s|onednn %d.%d.%d", name,
		 isa_name(dnnl_get_effective_cpu_isa()), v->major, v->minor, v->patch);
	if (!(w = wisdom_new(machine)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if ((rc = read_file(w, path, err))) {
		graft_wisdom_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

void graft_wisdom_free(struct graft_wisdom *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++) {
		free(w->e[i].key);
		free(w->e[i].choice);
	}
	free(w->e);
	strmap_release(&w->by_key);
	free(w->machine);
	free(w);
}

/* Appends printf-style text to the growing buffer *buf (length *len, room *cap). */
static int append(char **buf, size_t *len, size_t *cap, struct graft_err *err,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int append(char **buf, size_t *len, size_t *cap, struct graft_err *err,
		  const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return graft_err_set(err, GRAFT_EINVAL, "wisdom: cannot format an entry");
		if (*buf && *len + (size_t)n < *cap) {
			*len += (size_t)n;
			return 0;
		}
		size_t want = (*cap ? *cap : 4096) * 2 + (size_t)n;
		char *p = realloc(*buf, want);
		if (!p)
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		*buf = p;
		*cap = want;
	}
}

static int write_all(const struct graft_wisdom *w, const char *path, struct graft_err *err)
{
	struct graft_output out;
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc = append(&text, &len, &cap, err, "%s", WISDOM_HEADER);

	for (size_t i = 0; i < w->n && !rc; i++)
		rc = append(&text, &len, &cap, err, "%s\t%s\t%.1f\t%.3g\n", w->e[i].key,
			    w->e[i].choice, w->e[i].us, w->e[i].diff);
	if (!rc && !(rc = graft_output_open(&out, path, err))) {
		if ((rc = graft_write_all(out.fd, text, len, err))) {
			graft_output_abort(&out);
			graft_err_prefix(err, path);
		}
		else
			rc = graft_output_commit(&out, err);
	}
	free(text);
	return rc;
}

int graft_wisdom_save(struct graft_wisdom *w, const char *path, struct graft_err *err)
{
	struct graft_wisdom *now;
	char lock[4096];
	size_t added = 0;
	int fd, rc;

	for (size_t i = 0; i < w->n; i++)
		added += w->e[i].added != 0;
	if (!added)
		return 0;
	if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", path) >= sizeof(lock))
		return graft_err_set(err, GRAFT_EINVAL, "%s: path too long", path);
	if ((fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
		return graft_err_set(err, GRAFT_EIO, "%s: %s", lock, strerror(errno));
	while (flock(fd, LOCK_EX) != 0 && errno == EINTR)
		;
	/* the file as it is now, with this process's additions over it */
	if (!(now = wisdom_new(w->machine)))
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	else if (!(rc = read_file(now, path, err))) {
		for (size_t i = 0; i < w->n && !rc; i++)
			if (w->e[i].added)
				rc = put(now, w->e[i].key, w->e[i].choice, w->e[i].us, w->e[i].diff,
					 1, err);
		if (!rc)
			rc = write_all(now, path, err);
	}
	graft_wisdom_free(now);
	close(fd);              /* releases the lock */
	if (!rc)
		for (size_t i = 0; i < w->n; i++)
			w->e[i].added = 0;
	return rc;
}

void graft_wisdom_counts(const struct graft_wisdom *w, size_t *all, size_t *machine,
			 size_t *added)
{
	size_t len = strlen(w->machine), m = 0, a = 0;

	for (size_t i = 0; i < w->n; i++) {
		m += strncmp(w->e[i].key, w->machine, len) == 0 && w->e[i].key[len] == '|';
		a += w->e[i].added != 0;
	}
	*all = w->n;
	*machine = m;
	*added = a;
}

const char *graft_wisdom_machine(const struct graft_wisdom *w)
{
	return w->machine;
}

/* The full key of shape on this machine, in buf. */
static const char *full_key(const struct graft_wisdom *w, const char *shape, char *buf,
			    size_t size)
{
	return (size_t)snprintf(buf, size, "%s|%s", w->machine, shape) < size ? buf : NULL;
}

const char *wisdom_find(const struct graft_wisdom *w, const char *shape)
{
	char key[1024];
	long i;

	if (!full_key(w, shape, key, sizeof(key)) || (i = strmap_get(&w->by_key, key)) < 0)
		return NULL;
	return w->e[i].choice;
}

int wisdom_add(struct graft_wisdom *w, const char *shape, const char *choice, double us,
	       double diff, struct graft_err *err)
{
	char key[1024];

	if (!full_key(w, shape, key, sizeof(key)))
		return graft_err_set(err, GRAFT_EINVAL, "wisdom key too long: %s", shape);
	return put(w, key, choice, us, diff, 1, err);
}
