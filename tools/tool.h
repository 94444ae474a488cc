/*
 * tool.h: what every graft tool shares: its name in messages, dying with a one-line
 * error, usage handling, and outputs that never leave half-written files, even when
 * the tool is interrupted.  Only tools exit; the library never does.
 */
#ifndef GRAFT_TOOL_H
#define GRAFT_TOOL_H

#include <getopt.h>

#include "graft.h"

extern const char *tool_name;

/* Sets tool_name from argv[0] and installs signal handlers that remove the temporary
 * file of an output in progress. */
void tool_init(int argc, char **argv);

/* "graft-TOOL: message", then exit 1. */
void tool_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Prints the usage text: to stdout with exit 0 (help), or to stderr with exit 2 after
 * "graft-TOOL: message" (a usage error). */
void tool_usage(const char *usage, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));

/* Handles the options every tool has (--help, --version) and getopt's errors (the
 * tool's optstring must start with ':'); returns -1 for any other c. */
int tool_common_option(int c, const char *usage);
#define TOOL_COMMON_LONGOPTS {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}

/* Reads a model (path NULL or "-" is stdin) or dies with the library's message. */
struct graft_model *tool_read_model(const char *path);

/* Opens an output (NULL/"-" is stdout) or dies.  A binary output to a terminal is
 * refused unless force is set. */
void tool_output_open(struct graft_output *out, const char *path, int binary, int force);
/* Commits a model and its external-data file together, or dies (see
 * graft_output_commit_pair). */
void tool_output_commit_pair(struct graft_output *data, struct graft_output *model);
/* Commits the output or dies; dying removes the temporary files of all open outputs. */
void tool_output_commit(struct graft_output *out);

/* Reads a dataset (graft-data's archives: tensors x, float [N, ...], and y, int64 labels
 * [N] or float targets [N, ...]) into views of the returned model, or dies. */
struct graft_model *tool_read_dataset(const char *path, struct graft_array *x,
				      struct graft_array *y);

/* Records this tool's command line, as typed, in the model's history. */
void tool_add_history(struct graft_model *m);

#endif
