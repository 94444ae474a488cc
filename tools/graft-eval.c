/*
 * graft-eval: a model's loss and accuracy on a dataset: per-class accuracy and the
 * confusion matrix for labels, mean squared error for float targets.  Runs the model as
 * for inference (BatchNormalization on its running statistics, no Dropout).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-eval [MODEL|-] --data D [--batch B] [--json] [--max-memory SIZE]\n"
	"                  [--profile] [--no-tune] [--resize S] [--loader-threads N]\n"
	"Evaluates MODEL (.graft or .onnx; stdin when absent or -) on the dataset D.\n"
	"  -d, --data D      the data (graft-data): x float [N,...] or compact images (each\n"
	"                    resized and centre-cropped to the model's input), y int64\n"
	"                    labels or float\n"
	"  -b, --batch B     samples per forward pass (default 64)\n"
	"      --json        one JSON object: loss, accuracy, per_class, confusion\n"
	"      --max-memory SIZE  refuse to run when a batch would need more memory than\n"
	"                    SIZE (suffixes K, M, G; default: the memory available)\n"
	"      --profile     print the time spent per op type to stderr at the end\n"
	"      --no-tune     oneDNN's first kernel for every layer, not the one timed\n"
	"                    fastest on this machine (the wisdom file: graft-run(1))\n"
	TOOL_LOADER_HELP
	"under mpirun (docs/distributed.md), every process scores its share of the data:\n"
	TOOL_DIST_HELP
	"  -h, --help        show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *model, *data;
	int64_t batch;
	int json;
	uint64_t max_memory;    /* 0: the memory available */
	int profile, no_tune, distributed;
	struct graft_loader_opts lo;    /* --resize, --loader-threads */
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{"data", required_argument, NULL, 'd'}, {"batch", required_argument, NULL, 'b'},
		{"json", no_argument, NULL, 'j'}, TOOL_MEMORY_LONGOPT, TOOL_PROFILE_LONGOPT,
		TOOL_TUNE_LONGOPT, TOOL_LOADER_LONGOPTS, TOOL_DIST_LONGOPT,
		TOOL_COMMON_LONGOPTS, {0},
	};
	char *end;
	int c;

	memset(cl, 0, sizeof(*cl));
	cl->batch = 64;
	cl->lo.threads = -1;
	while ((c = getopt_long(argc, argv, ":d:b:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cl->data = optarg; break;
		case 'b':
			cl->batch = strtoll(optarg, &end, 10);
			if (*end || end == optarg || cl->batch < 1)
				tool_usage(usage, 2, "--batch: '%s' is not a count >= 1", optarg);
			break;
		case 'j': cl->json = 1; break;
		case TOOL_OPT_MAX_MEMORY:
			cl->max_memory = tool_parse_size("--max-memory", optarg, usage);
			break;
		case TOOL_OPT_PROFILE: cl->profile = 1; break;
		case TOOL_OPT_NO_TUNE: cl->no_tune = 1; break;
		case TOOL_OPT_DISTRIBUTED: cl->distributed = 1; break;
		default:
			if (!tool_loader_option(c, optarg, &cl->lo, usage))
				tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	if (!cl->data)
		tool_usage(usage, 2, "--data is required");
	cl->model = optind < argc ? argv[optind] : NULL;
}

static int64_t row_sum(const struct graft_eval *e, int64_t c)
{
	int64_t s = 0;
	for (int64_t k = 0; k < e->classes; k++)
		s += e->confusion[c * e->classes + k];
	return s;
}

static void print_json(const struct graft_eval *e)
{
	printf("{\"loss\": %.6g, \"accuracy\": %.6g, \"count\": %lld", e->loss, e->accuracy,
	       (long long)e->count);
	if (e->classes) {
		printf(", \"per_class\": [");
		for (int64_t c = 0; c < e->classes; c++) {
			int64_t n = row_sum(e, c);
			if (n)
				printf("%s%.6g", c ? ", " : "",
				       (double)e->confusion[c * e->classes + c] / (double)n);
			else
				printf("%snull", c ? ", " : "");
		}
		printf("], \"confusion\": [");
		for (int64_t c = 0; c < e->classes; c++) {
			printf("%s[", c ? ", " : "");
			for (int64_t k = 0; k < e->classes; k++)
				printf("%s%lld", k ? ", " : "",
				       (long long)e->confusion[c * e->classes + k]);
			printf("]");
		}
		printf("]");
	}
	printf("}\n");
}

static void print_text(const struct graft_eval *e)
{
	if (!e->classes) {
		printf("samples %lld  mse %.6g\n", (long long)e->count, e->loss);
		return;
	}
	printf("samples %lld  loss %.4f  accuracy %.2f%% (%lld correct)\n", (long long)e->count,
	       e->loss, 100 * e->accuracy, (long long)e->correct);
	printf("class   count  accuracy   predicted:");
	for (int64_t k = 0; k < e->classes; k++)
		printf(" %6lld", (long long)k);
	printf("\n");
	for (int64_t c = 0; c < e->classes; c++) {
		int64_t n = row_sum(e, c);
		printf("%5lld %7lld", (long long)c, (long long)n);
		if (n)
			printf("   %6.2f%%            ",
			       100.0 * (double)e->confusion[c * e->classes + c] / (double)n);
		else
			printf("         -            ");
		for (int64_t k = 0; k < e->classes; k++)
			printf(" %6lld", (long long)e->confusion[c * e->classes + k]);
		printf("\n");
	}
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_net *net;
	struct graft_array x[GRAFT_DATASET_MAX_INPUTS], xb[GRAFT_DATASET_MAX_INPUTS], y;
	struct graft_loader *l;
	size_t n_x;
	struct graft_eval e;
	struct graft_err err = {0};
	int64_t classes = 0;
	const struct graft_comm *comm;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	comm = tool_dist_start(cl.distributed);
	m = tool_dist_read_model(cl.model);
	tool_open_loader(cl.data, m, &cl.lo, &l, &y);
	if (comm)
		tool_dist_agree(tool_dataset_digest(cl.data), "read other data (--data)");
	n_x = graft_loader_inputs(l, x);
	struct graft_net_opts no = {.profile = cl.profile,
				    .wisdom = tool_wisdom(cl.no_tune, 0)};
	if (graft_net_new_opts(&net, m, &no, &err))
		tool_die("%s: %s", cl.model ? cl.model : "<stdin>", err.msg);
	tool_batch_of(x, n_x, cl.batch, xb);
	tool_check_memory(net, cl.model, xb, n_x, 0, cl.max_memory);
	if (y.dtype == GRAFT_INT64) {
		/* One batch tells the number of classes the model scores. */
		int64_t first = 0;
		void *rows[GRAFT_DATASET_MAX_INPUTS];
		tool_batch_of(x, n_x, 1, xb);
		for (size_t k = 0; k < n_x; k++)
			if (!(xb[k].data = rows[k] = malloc(xb[k].nbytes + 1)))
				tool_die("out of memory");
		if (graft_loader_request(l, &first, NULL, 1, &err) ||
		    graft_loader_take(l, xb, &err))
			tool_die("%s: %s", cl.data, err.msg);
		if (graft_net_run(net, xb, n_x, &err))
			tool_die("%s: %s", cl.model ? cl.model : "<stdin>", err.msg);
		for (size_t k = 0; k < n_x; k++)
			free(rows[k]);
		classes = graft_net_scored_classes(net, 1);
		for (int64_t i = 0; i < y.dims[0]; i++) {
			int64_t l = ((const int64_t *)y.data)[i];
			if (l < 0 || l >= classes)
				tool_die("%s: label %lld of sample %lld does not fit the model's %lld "
					 "outputs", cl.data, (long long)l, (long long)i,
					 (long long)classes);
		}
	}
	if (graft_eval_init(&e, classes, &err) ||
	    graft_evaluate_group(net, l, &y, cl.batch, comm, &e, &err))
		tool_die("%s: %s", cl.data, err.msg);
	if (tool_dist_writer()) {       /* (in a group, every process holds the sums) */
		if (cl.json)
			print_json(&e);
		else
			print_text(&e);
		if (fflush(stdout) || ferror(stdout))
			tool_die("write failed");
		if (cl.profile)
			tool_print_profile(net);
	}
	graft_eval_release(&e);
	graft_net_free(net);
	graft_loader_free(l);
	graft_model_free(m);
	tool_release_datasets();
	return 0;
}
