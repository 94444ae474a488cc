/* fuzz_util.c: see fuzz.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

void fuzz_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("fuzz: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

void fuzz_check_err(int rc, const struct graft_err *err, const char *what)
{
	if (rc >= 0 || rc < GRAFT_EDNNL || !err->msg[0] || err->code != rc)
		fuzz_fail("%s failed with status %d (err code %d) and message '%s'", what, rc,
			  (int)err->code, err->msg);
}

int fuzz_memfd(const void *data, size_t len)
{
	int fd = memfd_create("graft-fuzz", MFD_CLOEXEC);
	const char *p = data;

	if (fd < 0)
		fuzz_fail("memfd_create: %s", strerror(errno));
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fuzz_fail("writing a memfd: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	if (lseek(fd, 0, SEEK_SET) != 0)
		fuzz_fail("lseek: %s", strerror(errno));
	return fd;
}

const char *fuzz_fd_path(int fd, char *buf)
{
	snprintf(buf, 32, "/proc/self/fd/%d", fd);
	return buf;
}

uint8_t *fuzz_fd_contents(int fd, size_t *len)
{
	struct stat st;
	uint8_t *b;

	if (fstat(fd, &st) < 0)
		fuzz_fail("fstat: %s", strerror(errno));
	*len = (size_t)st.st_size;
	if (!(b = malloc(*len ? *len : 1)))
		fuzz_fail("out of memory");
	for (size_t got = 0; got < *len; ) {
		ssize_t n = pread(fd, b + got, *len - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fuzz_fail("reading a memfd: %s", strerror(errno));
		got += (size_t)n;
	}
	return b;
}

/* A sum over every byte, so that reading past a tensor's end is seen by the sanitizers;
 * the result is used, so the loop stays. */
static volatile uint8_t sink;

static void touch(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t x = 0;

	for (size_t i = 0; i < len; i++)
		x ^= p[i];
	sink = x;
}

static void touch_str(const char *s)
{
	if (!s)
		fuzz_fail("a getter returned a NULL string");
	touch(s, strlen(s));
}

static void inspect(const struct graft_model *m)
{
	struct graft_model_meta meta;
	struct graft_value_info vi;
	struct graft_node node;
	struct graft_tensor t;
	struct graft_alias al;
	const char *k, *v;
	int64_t version;

	graft_model_meta(m, &meta);
	touch_str(meta.producer_name);
	touch_str(meta.graph_name);
	for (size_t i = 0; i < meta.n_opsets; i++) {
		graft_model_opset(m, i, &k, &version);
		touch_str(k);
	}
	for (size_t i = 0; i < meta.n_metadata; i++) {
		graft_model_metadata(m, i, &k, &v);
		touch_str(k);
		touch_str(v);
	}
	for (size_t i = 0; i < graft_model_tensor_count(m); i++) {
		graft_model_tensor(m, i, &t);
		touch_str(t.name);
		touch(t.dims, sizeof(*t.dims) * (size_t)t.rank);
		if (t.nbytes != t.numel * graft_dtype_size(t.dtype))
			fuzz_fail("tensor '%s': %zu bytes for %llu elements", t.name, t.nbytes,
				  (unsigned long long)t.numel);
		if (t.nbytes && !t.data)
			fuzz_fail("tensor '%s': no data", t.name);
		touch(t.data, t.nbytes);
		if (graft_model_find_tensor(m, t.name) < 0)
			fuzz_fail("tensor '%s' is not found by name", t.name);
	}
	for (size_t i = 0; i < graft_model_alias_count(m); i++) {
		graft_model_alias(m, i, &al);
		touch_str(al.name);
		touch_str(al.tensor_name);
	}
	size_t n_in = graft_model_input_count(m);
	for (size_t i = 0; i < n_in; i++) {
		graft_model_input(m, i, &vi);
		touch_str(vi.name);
	}
	for (size_t i = 0; i < graft_model_output_count(m); i++) {
		graft_model_output(m, i, &vi);
		touch_str(vi.name);
	}
	for (size_t i = 0; i < graft_model_node_count(m); i++) {
		graft_model_node(m, i, &node);
		touch_str(node.op_type);
		touch_str(node.name);
	}
	for (size_t i = 0; i < graft_model_history_count(m); i++)
		touch_str(graft_model_history(m, i));
}

/* The ONNX that m exports, in a new buffer. */
static uint8_t *onnx_of(const struct graft_model *m, size_t *len, const char *what)
{
	struct graft_err err = {0};
	int fd = fuzz_memfd(NULL, 0);
	int rc = graft_model_write_onnx(m, fd, NULL, &err);
	uint8_t *b;

	if (rc)
		fuzz_fail("%s: writing ONNX failed: %s", what, err.msg);
	b = fuzz_fd_contents(fd, len);
	close(fd);
	return b;
}

static void same_onnx(const struct graft_model *m, const uint8_t *want, size_t want_len,
		      const char *what)
{
	size_t len;
	uint8_t *b = onnx_of(m, &len, what);

	if (len != want_len || memcmp(b, want, len) != 0)
		fuzz_fail("%s: ONNX differs (%zu bytes, expected %zu)", what, len, want_len);
	free(b);
}

void fuzz_model_check(const struct graft_model *m)
{
	struct graft_model *back = NULL;
	struct graft_err err = {0};
	char path[32];
	size_t len;
	uint8_t *onnx;
	int fd, rc;

	inspect(m);
	if (graft_model_onnx_size(m) > ((uint64_t)1 << 31) - 1)
		return;         /* refused by design, and too large to fuzz anyway */
	onnx = onnx_of(m, &len, "model");
	if ((rc = graft_model_read_memory(&back, onnx, len, NULL, "onnx", &err)))
		fuzz_fail("the ONNX written does not read back: %s", err.msg);
	same_onnx(back, onnx, len, "ONNX read back");
	graft_model_free(back);

	fd = fuzz_memfd(NULL, 0);
	if ((rc = graft_model_write_graft(m, fd, NULL, &err)))
		fuzz_fail("writing .graft failed: %s", err.msg);
	if ((rc = graft_model_read(&back, fuzz_fd_path(fd, path), 0, &err)))
		fuzz_fail("the .graft written does not read back: %s", err.msg);
	inspect(back);
	same_onnx(back, onnx, len, ".graft read back");
	graft_model_free(back);
	if ((rc = graft_model_read(&back, fuzz_fd_path(fd, path), GRAFT_READ_NO_MAP, &err)))
		fuzz_fail("the .graft written does not read back as a stream: %s", err.msg);
	same_onnx(back, onnx, len, ".graft streamed back");
	graft_model_free(back);
	close(fd);
	free(onnx);
}
