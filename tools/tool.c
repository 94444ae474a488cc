/*
 * tool.c: the shared skeleton of the graft tools (see tool.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

const char *tool_name = "graft";
static char **tool_argv;

/* The output being written, so that a signal can remove its temporary file. */
static struct graft_output *current_output;

static void on_signal(int sig)
{
	const char *tmp = current_output ? graft_output_tmp_path(current_output) : NULL;

	if (tmp)
		unlink(tmp);
	signal(sig, SIG_DFL);
	raise(sig);
}

void tool_init(char **argv)
{
	const char *slash = strrchr(argv[0], '/');

	tool_name = slash ? slash + 1 : argv[0];
	tool_argv = argv;
	opterr = 0;     /* getopt's messages name argv[0] as typed; ours name the tool */
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	/* SIGPIPE stays at its default: a reader that goes away ends the writer quietly. */
}

static void remove_partial_output(void)
{
	if (current_output)
		graft_output_abort(current_output);
	current_output = NULL;
}

void tool_die(const char *fmt, ...)
{
	va_list ap;

	remove_partial_output();
	fprintf(stderr, "%s: ", tool_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void tool_usage(const char *usage, int status, const char *fmt, ...)
{
	va_list ap;
	FILE *f = status ? stderr : stdout;

	if (fmt) {
		fprintf(stderr, "%s: ", tool_name);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fputs(usage, f);
	exit(status);
}

int tool_common_option(int c, const char *usage)
{
	switch (c) {
	case 'h':
		tool_usage(usage, 0, NULL);
	case 'V':
		printf("%s (graft) %s\n", tool_name, GRAFT_VERSION);
		exit(0);
	case '?':
		if (optopt)
			tool_usage(usage, 2, "unknown option '-%c'", optopt);
		tool_usage(usage, 2, "unknown option '%s'", tool_argv[optind - 1]);
	case ':':
		tool_usage(usage, 2, "option '%s' needs an argument", tool_argv[optind - 1]);
	default:
		return -1;
	}
}

struct graft_model *tool_read_model(const char *path)
{
	struct graft_model *m;
	struct graft_err err = {0};

	if (graft_model_read(&m, path, 0, &err))
		tool_die("%s", err.msg);
	return m;
}

void tool_output_open(struct graft_output *out, const char *path, int binary, int force)
{
	struct graft_err err = {0};
	int to_stdout = !path || strcmp(path, "-") == 0;

	if (binary && to_stdout && !force && isatty(STDOUT_FILENO))
		tool_die("refusing to write a binary model to a terminal; redirect, use -o FILE, "
			 "or force with -f");
	if (graft_output_open(out, path, &err))
		tool_die("%s", err.msg);
	current_output = out;
}

void tool_output_commit(struct graft_output *out)
{
	struct graft_err err = {0};

	if (graft_output_commit(out, &err)) {
		current_output = NULL;
		tool_die("%s", err.msg);
	}
	current_output = NULL;
}

void tool_add_history(struct graft_model *m, int argc, char **argv)
{
	struct graft_err err = {0};

	if (graft_model_add_history(m, tool_name, argc - 1, argv + 1, &err))
		tool_die("%s", err.msg);
}
