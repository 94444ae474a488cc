/*
 * fuzz.h: what the fuzz targets share.  Each target is one LLVMFuzzerTestOneInput; built
 * with libFuzzer (meson option fuzz, clang) it is fuzzed, and built with replay.c (any
 * compiler) it replays the files under regressions/ in the normal test suite.
 *
 * The library reads paths and file descriptors as well as memory, so the targets hand
 * it memfds: a regular file in memory that can be mapped, read as a stream, or reopened
 * through /proc/self/fd.  A target aborts (a finding) when the library breaks one of its
 * promises: a failure without a message, or a model that does not read back what was
 * written from it.
 */
#ifndef GRAFT_FUZZ_H
#define GRAFT_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "graft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A new memfd holding len bytes of data (positioned at 0); aborts on failure. */
int fuzz_memfd(const void *data, size_t len);
/* "/proc/self/fd/N" for fd, in buf (at least 32 bytes). */
const char *fuzz_fd_path(int fd, char *buf);
/* The whole contents of fd (a memfd) in a new buffer; aborts on failure. */
uint8_t *fuzz_fd_contents(int fd, size_t *len);
/* Aborts with a message naming the broken promise. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* A failure must say what failed: code negative and a message. */
void fuzz_check_err(int rc, const struct graft_err *err, const char *what);

/* Goes through everything a tool may look at in m (every getter, every tensor byte),
 * then checks the promises of the writers on it: the ONNX written reads back and writes
 * the same bytes again, and the .graft written reads back (mapped and streamed) as a
 * model whose ONNX is those bytes too. */
void fuzz_model_check(const struct graft_model *m);

#endif
