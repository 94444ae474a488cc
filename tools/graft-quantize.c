/*
 * graft-quantize: static post-training quantization of a float model to ONNX's QDQ
 * format (int8 activations calibrated on a dataset, int8 weights, int32 biases), which
 * ONNX Runtime's CPU provider runs with int8 kernels and graft-run runs as written
 * (docs/deploy.md).  The library does the work (graft_quantize); this parses options,
 * reads the model and the calibration set, and writes the result as .graft.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-quantize [IN|-] --data CALIB [--samples N]\n"
	"                      [--method minmax|percentile|entropy] [--percentile P]\n"
	"                      [--per-channel | --per-tensor] [--exclude PAT]... [-o OUT]\n"
	"Quantizes a float model to int8 in ONNX's QDQ format, as ONNX Runtime's\n"
	"quantize_static does by default (activations asymmetric, weights symmetric, biases\n"
	"int32), and writes it as .graft (stdout unless -o; graft-export makes the ONNX file).\n"
	"      --data CALIB     a graft dataset of inputs for the model: the calibration set\n"
	"      --samples N      calibrate on N samples spread evenly over it (default 256;\n"
	"                       0: all)\n"
	"      --method M       activation ranges: percentile (default), the tails beyond\n"
	"                       --percentile cut off (a histogram over the minimum to maximum);\n"
	"                       minmax, each tensor's minimum and maximum over the samples;\n"
	"                       entropy, the range whose uint8 quantization keeps the most\n"
	"                       information (least KL divergence, as TensorRT and ORT)\n"
	"      --percentile P   the share of values kept, in % (default 99.999)\n"
	"      --per-channel    one weight scale per output channel (the default)\n"
	"      --per-tensor     one weight scale per weight tensor\n"
	"      --exclude PAT    leave nodes whose name or op type matches the glob PAT in float\n"
	"                       (repeatable; e.g. the classifier: --exclude Gemm)\n"
	"      --batch N        calibration batch (default 32)\n"
	"  -o, --output OUT     write to OUT (atomically) instead of stdout\n"
	"  -f, --force          write binary data even to a terminal\n"
	"  -q, --quiet          no summary on stderr\n"
	"  -h, --help           show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *in, *out, *data;
	const char **exclude;
	size_t n_exclude;
	int64_t samples, batch;
	int per_tensor, force, quiet;
	enum graft_calib method;
	double percentile;
};

static int64_t count_arg(const char *opt, const char *arg, int64_t min)
{
	char *end;
	long long v = strtoll(arg, &end, 10);

	if (*end || end == arg || v < min)
		tool_usage(usage, 2, "%s: '%s' is not a count >= %lld", opt, arg, (long long)min);
	return (int64_t)v;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_DATA = 256, OPT_SAMPLES, OPT_METHOD, OPT_CHANNEL, OPT_TENSOR, OPT_EXCLUDE,
	       OPT_BATCH, OPT_PERCENTILE };
	static const struct option opts[] = {
		{"data", required_argument, NULL, OPT_DATA},
		{"samples", required_argument, NULL, OPT_SAMPLES},
		{"method", required_argument, NULL, OPT_METHOD},
		{"per-channel", no_argument, NULL, OPT_CHANNEL},
		{"per-tensor", no_argument, NULL, OPT_TENSOR},
		{"exclude", required_argument, NULL, OPT_EXCLUDE},
		{"batch", required_argument, NULL, OPT_BATCH},
		{"percentile", required_argument, NULL, OPT_PERCENTILE},
		{"output", required_argument, NULL, 'o'}, {"force", no_argument, NULL, 'f'},
		{"quiet", no_argument, NULL, 'q'}, TOOL_COMMON_LONGOPTS, {0},
	};
	int c;

	memset(cl, 0, sizeof(*cl));
	cl->samples = 256;
	cl->batch = 32;
	while ((c = getopt_long(argc, argv, ":o:fqhV", opts, NULL)) != -1) {
		switch (c) {
		case OPT_DATA: cl->data = optarg; break;
		case OPT_SAMPLES: cl->samples = count_arg("--samples", optarg, 0); break;
		case OPT_METHOD:
			if (strcmp(optarg, "minmax") == 0)
				cl->method = GRAFT_CALIB_MINMAX;
			else if (strcmp(optarg, "percentile") == 0)
				cl->method = GRAFT_CALIB_PERCENTILE;
			else if (strcmp(optarg, "entropy") == 0)
				cl->method = GRAFT_CALIB_ENTROPY;
			else
				tool_usage(usage, 2, "--method: '%s' is not a method graft has "
					   "(minmax, percentile, entropy)", optarg);
			break;
		case OPT_PERCENTILE:
			cl->percentile = tool_parse_number("--percentile", optarg, 50, 100, usage);
			break;
		case OPT_CHANNEL: cl->per_tensor = 0; break;
		case OPT_TENSOR: cl->per_tensor = 1; break;
		case OPT_EXCLUDE: {
			const char **e = realloc(cl->exclude, (cl->n_exclude + 1) * sizeof(*e));
			if (!e)
				tool_die("out of memory");
			cl->exclude = e;
			e[cl->n_exclude++] = optarg;
			break;
		}
		case OPT_BATCH: cl->batch = count_arg("--batch", optarg, 1); break;
		case 'o': cl->out = optarg; break;
		case 'f': cl->force = 1; break;
		case 'q': cl->quiet = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	if (!cl->data)
		tool_usage(usage, 2, "--data is required");
	cl->in = optind < argc ? argv[optind] : NULL;
}

/* Dies unless the samples x fit the model's input (its fixed dims past the first). */
static void check_fit(const struct graft_model *m, const struct graft_array *x,
		      const char *data, const char *path)
{
	struct graft_value_info vi;
	int fits;

	graft_model_input(m, 0, &vi);
	fits = vi.rank < 0 || (vi.rank == x->rank && (!vi.dtype || vi.dtype == x->dtype));
	for (int d = 1; fits && vi.rank > 0 && d < vi.rank; d++)
		fits = vi.dims[d] < 0 || vi.dims[d] == x->dims[d];
	if (!fits) {
		char got[128] = "", want[128] = "";
		for (int d = 1; d < x->rank; d++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld",
				 d > 1 ? "x" : "", (long long)x->dims[d]);
		for (int d = 1; d < vi.rank; d++)
			snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%lld",
				 d > 1 ? "x" : "", (long long)vi.dims[d]);
		tool_die("%s: samples of %s %s do not fit %s's input '%s' (%s %s)", data,
			 graft_dtype_name(x->dtype), got, path, vi.name ? vi.name : "",
			 vi.dtype ? graft_dtype_name(vi.dtype) : "?", want);
	}
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_array xs[GRAFT_DATASET_MAX_INPUTS], x, y;
	size_t n_x;
	struct graft_err err = {0};
	struct graft_quant_info info;
	const char *path;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	path = cl.in && strcmp(cl.in, "-") ? cl.in : "<stdin>";
	m = tool_read_model(cl.in);
	if (graft_model_input_count(m) != 1)
		tool_die("%s: the model has %zu inputs; graft-quantize calibrates a model of one",
			 path, graft_model_input_count(m));
	tool_read_feed(cl.data, m, xs, &n_x, &y);
	x = xs[0];
	check_fit(m, &x, cl.data, path);
	struct graft_quant_opts o = {.method = cl.method, .percentile = cl.percentile,
				     .per_tensor = cl.per_tensor, .exclude = cl.exclude,
				     .n_exclude = cl.n_exclude, .samples = cl.samples,
				     .batch = cl.batch};
	if (graft_quantize(m, &x, &o, &info, &err))
		tool_die("%s: %s", path, err.msg);
	if (!cl.quiet) {
		fprintf(stderr, "%s: %zu nodes quantized (%zu Relu/Clip folded, %zu excluded), "
			"%zu activations and %zu weights in int8, calibrated on %lld samples\n",
			tool_name, info.quantized, info.folded, info.excluded, info.tensors,
			info.weights, (long long)(cl.samples && cl.samples < x.dims[0] ? cl.samples
						  : x.dims[0]));
		if (info.raised)
			fprintf(stderr, "%s: %zu weight scales raised so that their biases fit int32 "
				"(weights tiny beside their bias)\n", tool_name, info.raised);
		if (info.opset_from < info.opset_to)
			fprintf(stderr, "%s: the model's opset raised from %lld to %lld\n", tool_name,
				(long long)info.opset_from, (long long)info.opset_to);
		if (info.n_left) {
			fprintf(stderr, "%s: left in float:", tool_name);
			for (size_t i = 0; i < info.n_left; i++)
				fprintf(stderr, "%s %s x%zu", i ? "," : "", info.left[i].op,
					info.left[i].count);
			fputc('\n', stderr);
		}
	}
	tool_add_history(m);
	tool_write_graft(m, cl.out, NULL, 1, cl.force);
	free(cl.exclude);
	graft_model_free(m);
	tool_release_datasets();
	return 0;
}
