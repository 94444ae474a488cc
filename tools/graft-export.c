/*
 * graft-export: .graft to ONNX.  Writes the model as an ONNX ModelProto equal to the one
 * imported, with what graft changed (weights, new nodes) applied.  Tensors go to an
 * external-data file when asked, and always when the model exceeds protobuf's 2 GiB.
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-export [IN|-] [-o OUT.onnx] [--external-data FILE] [--fold-bn] [--strip]\n"
	"                    [--fp16 [--keep-io-types]] [-f]\n"
	"Converts a .graft archive (or an ONNX model) to an ONNX model (stdout unless -o).\n"
	"  -o, --output OUT.onnx      write to OUT.onnx (atomically) instead of stdout\n"
	"      --external-data FILE   store tensors of 1 KiB or more in FILE, a plain file\n"
	"                             name (no '/') written beside the model; models over\n"
	"                             2 GiB written with -o use OUT.onnx.data by default\n"
	"      --fold-bn              fold inference BatchNormalization into the Conv or Gemm\n"
	"                             before it; the count goes to stderr\n"
	"      --strip                drop what only training needs: Dropout nodes, graft.*\n"
	"                             metadata, training state, unread initializers\n"
	"      --fp16                 weights and compute in float16 (after --fold-bn)\n"
	"      --keep-io-types        with --fp16: float32 inputs and outputs, Casts inside\n"
	"  -f, --force                write binary data even to a terminal\n"
	"  -h, --help                 show this help;  -V, --version  show the version\n";

#define TWO_GIB (UINT64_C(1) << 31)

struct cmdline {
	const char *in, *out, *external;
	int force, fold_bn, strip, fp16, keep_io;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'},
		{"external-data", required_argument, NULL, 'e'},
		{"fold-bn", no_argument, NULL, 'B'}, {"strip", no_argument, NULL, 'S'},
		{"fp16", no_argument, NULL, 'H'}, {"keep-io-types", no_argument, NULL, 'K'},
		{"force", no_argument, NULL, 'f'}, TOOL_COMMON_LONGOPTS, {0},
	};
	int c;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case 'o': cl->out = optarg; break;
		case 'e': cl->external = optarg; break;
		case 'B': cl->fold_bn = 1; break;
		case 'S': cl->strip = 1; break;
		case 'H': cl->fp16 = 1; break;
		case 'K': cl->keep_io = 1; break;
		case 'f': cl->force = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	if (cl->external && (!*cl->external || strcmp(cl->external, ".") == 0 ||
			     strcmp(cl->external, "..") == 0 || strchr(cl->external, '/')))
		tool_usage(usage, 2, "--external-data takes a plain file name (no '/'), which is "
			   "written beside the model");
	if (cl->keep_io && !cl->fp16)
		tool_usage(usage, 2, "--keep-io-types goes with --fp16");
	cl->in = optind < argc ? argv[optind] : NULL;
}

/* The external-data file's path: beside the output model, or in the current folder
 * when the model goes to stdout. */
static char *external_path(const char *out, const char *name)
{
	char *copy, *dir, *path;

	if (!out || strcmp(out, "-") == 0)
		return strdup(name);
	copy = strdup(out);
	if (!copy)
		return NULL;
	dir = dirname(copy);
	path = malloc(strlen(dir) + strlen(name) + 2);
	if (path)
		sprintf(path, "%s/%s", dir, name);
	free(copy);
	return path;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_output out, ext;
	struct graft_onnx_opts oo = {.external_fd = -1, .external_min_bytes = 1024};
	struct graft_err err = {0};
	char *ext_path = NULL, *default_name = NULL;
	int to_stdout;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	to_stdout = !cl.out || strcmp(cl.out, "-") == 0;
	m = tool_read_model(cl.in);
	if (cl.strip && graft_model_strip(m, &err))
		tool_die("%s: %s", cl.in ? cl.in : "<stdin>", err.msg);
	if (cl.fold_bn) {
		size_t folded;
		if (graft_model_fold_bn(m, &folded, &err))
			tool_die("%s: %s", cl.in ? cl.in : "<stdin>", err.msg);
		fprintf(stderr, "%s: folded %zu BatchNormalization node%s\n", tool_name, folded,
			folded == 1 ? "" : "s");
	}
	if (cl.fp16 && graft_model_to_fp16(m, cl.keep_io, &err))
		tool_die("%s: %s", cl.in ? cl.in : "<stdin>", err.msg);
	/* what made the model, into its metadata (kept by --strip, which drops graft.*) */
	if (graft_model_provenance(m, &err))
		tool_die("%s: %s", cl.in ? cl.in : "<stdin>", err.msg);
	if (!cl.external && graft_model_onnx_size(m) >= TWO_GIB) {
		if (to_stdout)
			tool_die("%s: model is over 2 GiB, which ONNX can only store with external "
				 "data: use -o OUT.onnx or --external-data FILE",
				 cl.in ? cl.in : "<stdin>");
		char *copy = strdup(cl.out);
		default_name = copy ? malloc(strlen(copy) + 6) : NULL;
		if (!default_name)
			tool_die("out of memory");
		sprintf(default_name, "%s.data", basename(copy));
		free(copy);
		cl.external = default_name;
	}
	/* The model's output first: a refusal (a terminal) must not leave a data file. */
	tool_output_open(&out, cl.out, 1, cl.force);
	if (cl.external) {
		if (!(ext_path = external_path(cl.out, cl.external)))
			tool_die("out of memory");
		tool_output_open(&ext, ext_path, 1, 1);
		oo.external_fd = ext.fd;
		oo.external_name = cl.external;
	}
	if (graft_model_write_onnx(m, out.fd, &oo, &err))
		tool_die("%s: %s", to_stdout ? "<stdout>" : cl.out, err.msg);
	if (cl.external)
		tool_output_commit_pair(&ext, &out);
	else
		tool_output_commit(&out);
	graft_model_free(m);
	free(ext_path);
	free(default_name);
	return 0;
}
