/*
 * graft-run: runs a model forward on the CPU.  Inputs come from .npy or ONNX .pb files
 * (or are made up, seeded, for benchmarks); outputs go to DIR/NAME.npy, or a summary is
 * printed.  --repeat N times N runs and prints the median.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-run MODEL [-i [NAME=]FILE]... [-o DIR] [--batch N] [--repeat N]\n"
	"                 [--max-memory SIZE] [--profile] [--no-tune]\n"
	"       graft-run MODEL --data DATA [-o DIR] [--batch N]\n"
	"Runs a model (.graft, ONNX or ONNX text) forward on the CPU.\n"
	"  -i, --input [NAME=]FILE  an input as .npy or ONNX TensorProto .pb; without NAME,\n"
	"                           inputs fill the graph's inputs in order.  Inputs not\n"
	"                           given are made up: uniform in [-1, 1) (floats) or in\n"
	"                           [0, 10) (integers) from --seed, symbolic dims = 1\n"
	"                           except the first, which is --batch\n"
	"  -d, --data DATA          run every sample of a dataset (graft-data), --batch at\n"
	"                           a time (default 32): each output is written with a row\n"
	"                           per sample, in the dataset's order\n"
	"  -o, --output DIR         write each output to DIR/NAME.npy (NAME with characters\n"
	"                           outside [A-Za-z0-9._-] replaced by _); without -o, print\n"
	"                           each output's name, shape and a summary\n"
	"      --batch N            batch size for made-up inputs; given inputs whose first\n"
	"                           dim is 1 are repeated N times along it\n"
	"      --repeat N           run N times on the same inputs and print the median\n"
	"                           time per run (after one warm-up run)\n"
	"      --seed S             seed for made-up inputs (default 1)\n"
	"      --max-memory SIZE    refuse to run when the run would need more memory than\n"
	"                           SIZE (suffixes K, M, G; default: the memory available)\n"
	"      --profile            print the time spent per op type to stderr at the end\n"
	"      --no-tune            oneDNN's first kernel for every layer, not the one timed\n"
	"                           fastest on this machine (the wisdom file: graft-run(1))\n"
	"      --list-ops           print the ops graft can run, one per line, and exit\n"
	"      --list-backward      print the ops graft can train through, and exit\n"
	"  -h, --help               show this help;  -V, --version  show the version\n";

#define MAX_INPUTS 64

struct cmdline {
	const char *model, *out_dir, *data;
	const char *input_names[MAX_INPUTS], *input_files[MAX_INPUTS];
	int n_inputs;
	long batch, repeat;
	int batch_set;
	unsigned long seed;
	uint64_t max_memory;    /* 0: the memory available */
	int profile, no_tune;
};

static long parse_count(const char *opt, const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == 0 || *end || v < 1 || v > 1000000)
		tool_usage(usage, 2, "%s takes a positive count, not '%s'", opt, s);
	return v;
}

static void list_ops(int backward);

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{"input", required_argument, NULL, 'i'}, {"output", required_argument, NULL, 'o'},
		{"data", required_argument, NULL, 'd'},
		{"batch", required_argument, NULL, 'b'}, {"repeat", required_argument, NULL, 'r'},
		{"seed", required_argument, NULL, 's'}, {"list-ops", no_argument, NULL, 'L'},
		{"list-backward", no_argument, NULL, 'B'}, TOOL_MEMORY_LONGOPT, TOOL_PROFILE_LONGOPT,
		TOOL_TUNE_LONGOPT,
		TOOL_COMMON_LONGOPTS, {0},
	};
	int c;

	memset(cl, 0, sizeof(*cl));
	cl->batch = 1;
	cl->seed = 1;
	while ((c = getopt_long(argc, argv, ":i:o:d:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'i': {
			if (cl->n_inputs == MAX_INPUTS)
				tool_usage(usage, 2, "too many inputs");
			char *eq = strchr(optarg, '=');
			if (eq && eq != optarg) {
				*eq = 0;
				cl->input_names[cl->n_inputs] = optarg;
				cl->input_files[cl->n_inputs++] = eq + 1;
			} else {
				cl->input_files[cl->n_inputs++] = optarg;
			}
			break;
		}
		case 'o': cl->out_dir = optarg; break;
		case 'd': cl->data = optarg; break;
		case 'b':
			cl->batch = parse_count("--batch", optarg);
			cl->batch_set = 1;
			break;
		case 'r': cl->repeat = parse_count("--repeat", optarg); break;
		case 's': cl->seed = strtoul(optarg, NULL, 10); break;
		case 'L': list_ops(0); exit(0);
		case 'B': list_ops(1); exit(0);
		case TOOL_OPT_MAX_MEMORY:
			cl->max_memory = tool_parse_size("--max-memory", optarg, usage);
			break;
		case TOOL_OPT_PROFILE: cl->profile = 1; break;
		case TOOL_OPT_NO_TUNE: cl->no_tune = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind != 1)
		tool_usage(usage, 2, argc - optind ? "one model, please" : "no model given");
	cl->model = argv[optind];
	if (cl->data && (cl->n_inputs || cl->repeat))
		tool_usage(usage, 2, "--data feeds the inputs: no -i or --repeat with it");
	if (cl->data && !cl->batch_set)
		cl->batch = 32;
}

static void list_ops(int backward)
{
	for (size_t i = 0; graft_op_name(i); i++)
		if (!backward || graft_op_has_backward(graft_op_name(i)))
			printf("%s\n", graft_op_name(i));
}

/* The shape and type of a made-up input: the declared dims, the batch for a symbolic
 * first dim and 1 for other symbolic dims.  Declared dims come from the model file, so
 * their product is checked before anything is allocated for them. */
static void input_shape(struct graft_array *a, const struct graft_value_info *vi, long batch,
			const char *model)
{
	uint64_t numel = 1, esize = graft_dtype_size(vi->dtype);

	memset(a, 0, sizeof(*a));
	if (vi->kind != 't' || vi->rank < 0 || vi->rank > GRAFT_ARRAY_MAX_RANK || !esize)
		tool_die("input '%s' has no tensor type and shape to make data from: give it "
			 "with -i", vi->name);
	a->dtype = vi->dtype;
	a->rank = vi->rank;
	for (int d = 0; d < vi->rank; d++) {
		a->dims[d] = vi->dims[d] >= 0 ? vi->dims[d] : d == 0 ? batch : 1;
		if (a->dims[d] && numel > (UINT64_C(1) << 62) / esize / (uint64_t)a->dims[d])
			tool_die("%s: input '%s' is declared with %" PRId64 " in dim %d, more "
				 "elements than can be made up: give it with -i", model, vi->name,
				 a->dims[d], d);
		numel *= (uint64_t)a->dims[d];
	}
	a->nbytes = (size_t)(numel * esize);
}

/* Fills a made-up input (its shape set) with seeded values: uniform in [-1, 1) for
 * floating types, 0 to 9 for integers, 0 or 1 for booleans. */
static void fill_input(struct graft_array *a, struct graft_rng *rng)
{
	size_t esize = graft_dtype_size(a->dtype), numel = a->nbytes / esize;

	if (!(a->data = malloc(a->nbytes ? a->nbytes : 1)))
		tool_die("out of memory");
	for (size_t i = 0; i < numel; i++) {
		uint64_t r = graft_rng_next(rng);
		double u = (double)(r >> 11) / 9007199254740992.0;     /* [0, 1) */
		switch (a->dtype) {
		case GRAFT_FLOAT: ((float *)a->data)[i] = (float)(2 * u - 1); break;
		case GRAFT_DOUBLE: ((double *)a->data)[i] = 2 * u - 1; break;
		case GRAFT_INT64: ((int64_t *)a->data)[i] = (int64_t)(r % 10); break;
		case GRAFT_INT32: ((int32_t *)a->data)[i] = (int32_t)(r % 10); break;
		case GRAFT_BOOL: ((uint8_t *)a->data)[i] = r & 1; break;
		default: memset((char *)a->data + i * esize, (int)(r % 10), esize);
		}
	}
}

/* Repeats a batch-1 array n times along its first dim. */
static void repeat_batch(struct graft_array *a, long n)
{
	if (n == 1 || a->rank == 0 || a->dims[0] != 1)
		return;
	char *d = malloc(a->nbytes * (size_t)n + 1);
	if (!d)
		tool_die("out of memory");
	for (long i = 0; i < n; i++)
		memcpy(d + (size_t)i * a->nbytes, a->data, a->nbytes);
	free(a->data);
	a->data = d;
	a->nbytes *= (size_t)n;
	a->dims[0] = n;
}

static void gather_inputs(const struct cmdline *cl, const struct graft_model *m,
			  const struct graft_net *net, struct graft_array *inputs)
{
	size_t n = graft_net_input_count(net);
	int given[MAX_INPUTS] = {0};
	struct graft_rng rng;
	size_t next_positional = 0;
	struct graft_err err = {0};

	graft_rng_seed(&rng, cl->seed);
	if (n > MAX_INPUTS)
		tool_die("%s: the model has too many inputs (%zu)", cl->model, n);
	for (int k = 0; k < cl->n_inputs; k++) {
		size_t i;
		if (cl->input_names[k]) {
			for (i = 0; i < n && strcmp(graft_net_input_name(net, i), cl->input_names[k]); i++)
				;
			if (i == n)
				tool_die("%s: the model has no input '%s'", cl->model, cl->input_names[k]);
		} else {
			while (next_positional < n && given[next_positional])
				next_positional++;
			if (next_positional == n)
				tool_die("%s: more inputs given than the model takes (%zu)", cl->model, n);
			i = next_positional;
		}
		if (given[i])
			tool_die("input '%s' is given twice", graft_net_input_name(net, i));
		if (graft_array_read(&inputs[i], cl->input_files[k], &err))
			tool_die("%s", err.msg);
		repeat_batch(&inputs[i], cl->batch);
		given[i] = 1;
	}
	/* Made-up inputs: their shapes first, so that a model declaring an input larger than
	 * the memory budget is refused before the input is allocated. */
	uint64_t made = 0, budget = tool_memory_budget(cl->max_memory);
	for (size_t i = 0; i < n; i++) {
		if (given[i])
			continue;
		/* The net's inputs are the model's inputs minus initializers, in order. */
		struct graft_value_info vi;
		graft_model_input(m, i, &vi);
		input_shape(&inputs[i], &vi, cl->batch, cl->model);
		made += inputs[i].nbytes;
	}
	if (budget && made > budget) {
		char need[32], have[32];
		tool_die("%s: the inputs made up from the declared shapes need %s, over the "
			 "--max-memory budget of %s%s: give them with -i", cl->model,
			 tool_format_size(made, need), tool_format_size(budget, have),
			 cl->max_memory ? "" : " (the memory available)");
	}
	for (size_t i = 0; i < n; i++)
		if (!given[i])
			fill_input(&inputs[i], &rng);
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void print_summary(const struct graft_array *a)
{
	uint64_t numel = 1;
	double sum = 0, mn = INFINITY, mx = -INFINITY;
	int numeric = a->dtype == GRAFT_FLOAT || a->dtype == GRAFT_INT64 ||
		      a->dtype == GRAFT_INT32 || a->dtype == GRAFT_BOOL || a->dtype == GRAFT_DOUBLE;

	printf("%s %s [", a->name, graft_dtype_name(a->dtype) ? graft_dtype_name(a->dtype) : "?");
	for (int d = 0; d < a->rank; d++) {
		printf("%s%" PRId64, d ? "," : "", a->dims[d]);
		numel *= (uint64_t)a->dims[d];
	}
	printf("]");
	if (numeric && numel) {
		for (uint64_t i = 0; i < numel; i++) {
			double x;
			switch (a->dtype) {
			case GRAFT_FLOAT: x = ((const float *)a->data)[i]; break;
			case GRAFT_DOUBLE: x = ((const double *)a->data)[i]; break;
			case GRAFT_INT64: x = (double)((const int64_t *)a->data)[i]; break;
			case GRAFT_INT32: x = ((const int32_t *)a->data)[i]; break;
			default: x = ((const uint8_t *)a->data)[i]; break;
			}
			sum += x;
			mn = x < mn ? x : mn;
			mx = x > mx ? x : mx;
		}
		printf(" min %.6g max %.6g mean %.6g", mn, mx, sum / (double)numel);
	}
	putchar('\n');
}

/* Writes a to dir/NAME.npy (NAME with characters outside [A-Za-z0-9._-] replaced by _). */
static void write_output(const char *dir, const struct graft_array *a)
{
	struct graft_err err = {0};
	struct graft_output out;
	char *path = malloc(strlen(dir) + strlen(a->name ? a->name : "") + 8);

	if (!path)
		tool_die("out of memory");
	char *p = path + sprintf(path, "%s/", dir);
	for (const char *s = a->name ? a->name : ""; *s; s++)
		*p++ = (strchr("._-", *s) || (*s >= 'a' && *s <= 'z') ||
			(*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')) ? *s : '_';
	strcpy(p, ".npy");
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		tool_die("%s: %s", dir, strerror(errno));
	tool_output_open(&out, path, 0, 1);
	if (graft_array_write_npy(a, out.fd, &err))
		tool_die("%s: %s", path, err.msg);
	tool_output_commit(&out);
	free(path);
}

static void write_outputs(const struct cmdline *cl, const struct graft_net *net)
{
	for (size_t i = 0; i < graft_net_output_count(net); i++) {
		struct graft_array a;
		graft_net_output(net, i, &a);
		write_output(cl->out_dir, &a);
	}
}

/* --data: every sample of the dataset, a batch at a time, each output's rows gathered. */
static int run_dataset(const struct cmdline *cl, struct graft_model *m, struct graft_net *net)
{
	size_t n_out;
	struct graft_array *outs = tool_run_dataset(net, m, cl->model, cl->data, cl->batch,
						    cl->max_memory, &n_out);

	for (size_t i = 0; i < n_out; i++) {
		if (cl->out_dir)
			write_output(cl->out_dir, &outs[i]);
		else
			print_summary(&outs[i]);
		graft_array_release(&outs[i]);
	}
	free(outs);
	if (cl->profile)
		tool_print_profile(net);
	tool_release_datasets();
	graft_net_free(net);
	graft_model_free(m);
	if (fflush(stdout) || ferror(stdout))
		tool_die("<stdout>: write failed");
	return 0;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_net *net;
	struct graft_array inputs[MAX_INPUTS] = {{0}};
	struct graft_err err = {0};

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	m = tool_read_model(cl.model);
	struct graft_net_opts no = {.profile = cl.profile,
				    .wisdom = tool_wisdom(cl.no_tune, 0)};
	if (graft_net_new_opts(&net, m, &no, &err))
		tool_die("%s: %s", cl.model, err.msg);
	if (cl.data)
		return run_dataset(&cl, m, net);
	gather_inputs(&cl, m, net, inputs);
	size_t n_in = graft_net_input_count(net);
	tool_check_memory(net, cl.model, inputs, n_in, 0, cl.max_memory);
	if (graft_net_run(net, inputs, n_in, &err))
		tool_die("%s: %s", cl.model, err.msg);
	if (cl.repeat) {
		double *t = malloc(sizeof(double) * (size_t)cl.repeat);
		if (!t)
			tool_die("out of memory");
		for (long r = 0; r < cl.repeat; r++) {
			double t0 = graft_now();
			if (graft_net_run(net, inputs, n_in, &err))
				tool_die("%s: %s", cl.model, err.msg);
			t[r] = graft_now() - t0;
		}
		qsort(t, (size_t)cl.repeat, sizeof(double), by_value);
		double med = t[cl.repeat / 2];
		printf("median %.3f ms per run over %ld runs (batch %ld: %.1f items/s)\n",
		       med * 1e3, cl.repeat, cl.batch, (double)cl.batch / med);
		free(t);
	}
	if (cl.out_dir) {
		write_outputs(&cl, net);
	} else if (!cl.repeat) {
		for (size_t i = 0; i < graft_net_output_count(net); i++) {
			struct graft_array a;
			graft_net_output(net, i, &a);
			print_summary(&a);
		}
	}
	if (cl.profile)
		tool_print_profile(net);
	for (size_t i = 0; i < n_in; i++)
		graft_array_release(&inputs[i]);
	graft_net_free(net);
	graft_model_free(m);
	if (fflush(stdout) || ferror(stdout))
		tool_die("<stdout>: write failed");
	return 0;
}
