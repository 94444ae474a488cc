/*
 * graft-plot: learning curves from graft-train's logs (--log F.jsonl) as one SVG, loss and
 * accuracy against the epoch, train solid and validation dashed, one colour per log, so
 * that runs can be compared at a glance without a plotting stack.  Parsing and drawing
 * are lib/report/plot.c's; this reads the files and writes the picture.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-plot [LOG.jsonl|-]... [-o OUT.svg] [--title T] [--label NAME]...\n"
	"Draws the learning curves in graft-train's logs (--log) as one SVG (stdout unless -o):\n"
	"loss and accuracy against the epoch, train solid, validation dashed, a colour per log.\n"
	"Reads stdin when given no LOG or -.\n"
	"  -o, --output OUT.svg  write to OUT.svg (atomically) instead of stdout\n"
	"  -t, --title T         a title above the panels\n"
	"  -l, --label NAME      the next log's name in the legend (default: its file name)\n"
	"  -h, --help            show this help;  -V, --version  show the version\n";

#define MAX_INPUT ((size_t)512 << 20)   /* bytes of one log */

struct cmdline {
	const char *out, *title;
	const char *logs[GRAFT_PLOT_MAX_LOGS];
	const char *labels[GRAFT_PLOT_MAX_LOGS];
	int n_logs, n_labels;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'}, {"title", required_argument, NULL, 't'},
		{"label", required_argument, NULL, 'l'}, TOOL_COMMON_LONGOPTS, {0},
	};
	int c, stdin_seen = 0;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":o:t:l:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'o': cl->out = optarg; break;
		case 't': cl->title = optarg; break;
		case 'l':
			if (cl->n_labels == GRAFT_PLOT_MAX_LOGS)
				tool_usage(usage, 2, "more than %d labels", GRAFT_PLOT_MAX_LOGS);
			cl->labels[cl->n_labels++] = optarg;
			break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > GRAFT_PLOT_MAX_LOGS)
		tool_usage(usage, 2, "more than %d logs", GRAFT_PLOT_MAX_LOGS);
	for (int i = optind; i < argc; i++)
		cl->logs[cl->n_logs++] = argv[i];
	if (!cl->n_logs)
		cl->logs[cl->n_logs++] = "-";
	for (int i = 0; i < cl->n_logs; i++)
		if (strcmp(cl->logs[i], "-") == 0 && stdin_seen++)
			tool_usage(usage, 2, "stdin ('-') given more than once");
	if (cl->n_labels > cl->n_logs)
		tool_usage(usage, 2, "%d labels for %d log%s", cl->n_labels, cl->n_logs,
			   cl->n_logs == 1 ? "" : "s");
}

/* Reads the log at path ("-": stdin) into a new buffer, or dies naming name. */
static char *read_log(const char *path, const char *name, size_t *len)
{
	int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	struct graft_err err = {0};
	void *b;

	if (fd < 0)
		tool_die("%s: %s", name, strerror(errno));
	if (graft_read_fd_max(fd, MAX_INPUT, &b, len, &err))
		tool_die("%s: %s", name, err.msg);
	if (fd != STDIN_FILENO)
		close(fd);
	return b;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_plot *p;
	struct graft_output out;
	struct graft_err err = {0};
	char *svg;
	size_t len;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	if (graft_plot_new(&p, &err))
		tool_die("%s", err.msg);
	for (int i = 0; i < cl.n_logs; i++) {
		const char *name = strcmp(cl.logs[i], "-") == 0 ? "<stdin>" : cl.logs[i];
		char *buf = read_log(cl.logs[i], name, &len);
		if (graft_plot_add_log(p, i < cl.n_labels ? cl.labels[i] : name, buf, len, &err))
			tool_die("%s: %s", name, err.msg);
		free(buf);
	}
	if (graft_plot_render(p, cl.title, &svg, &len, &err))
		tool_die("%s", err.msg);
	/* Text, not a model: a terminal may have it. */
	tool_output_open(&out, cl.out, 0, 0);
	if (graft_write_all(out.fd, svg, len, &err))
		tool_die("%s: %s", cl.out ? cl.out : "<stdout>", err.msg);
	tool_output_commit(&out);
	free(svg);
	graft_plot_free(p);
	return 0;
}
