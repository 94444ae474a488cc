/*
 * graft-import: ONNX to .graft.  Reads a model (ONNX, or a .graft, detected by content),
 * records the run in its history, and writes it as a .graft archive.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-import [MODEL.onnx|-] [-o OUT] [--zstd] [-f]\n"
	"Converts an ONNX model to a .graft archive (stdout unless -o).  The model may be\n"
	"binary ONNX or ONNX's textual syntax (onnx.parser's; docs/format.md), which every\n"
	"tool reads too.\n"
	"  -o, --output OUT  write to OUT (atomically) instead of stdout\n"
	"      --zstd        compress the archive with zstd\n"
	"  -f, --force       write binary data even to a terminal\n"
	"  -h, --help        show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *in, *out;
	int zstd, force;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'}, {"zstd", no_argument, NULL, 'z'},
		{"force", no_argument, NULL, 'f'}, TOOL_COMMON_LONGOPTS, {0},
	};
	int c;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case 'o': cl->out = optarg; break;
		case 'z': cl->zstd = 1; break;
		case 'f': cl->force = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	cl->in = optind < argc ? argv[optind] : NULL;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_write_opts wo = {0};

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	m = tool_read_model(cl.in);
	tool_add_history(m);
	wo.zstd = cl.zstd;
	tool_write_graft(m, cl.out, &wo, 1, cl.force);
	graft_model_free(m);
	return 0;
}
