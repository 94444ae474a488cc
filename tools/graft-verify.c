/*
 * graft-verify: the parity report a deployment needs: a reference model and a candidate
 * (the int8 or otherwise converted one) run on the same samples, and per output the
 * largest absolute and relative difference, top-1 agreement and each model's accuracy.
 * With --max-drop or --min-agreement it is a check for a Makefile: exit 1 when one is
 * not met.  The comparison is graft_parity's; this parses, prints and judges.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-verify REFERENCE CANDIDATE --data D [--samples N] [--batch N] [--json]\n"
	"                    [--max-drop POINTS] [--min-agreement PERCENT] [--no-tune]\n"
	"Runs two models on the same samples and reports, per output, the largest absolute\n"
	"and relative difference, and for a classifier the top-1 agreement and each model's\n"
	"accuracy (with the dataset's labels).\n"
	"      --data D             a graft dataset whose samples fit both models' input\n"
	"      --samples N          the first N samples only (default: all)\n"
	"      --batch N            samples a run (default 32)\n"
	"      --json               one JSON object on stdout instead of text\n"
	"      --max-drop POINTS    exit 1 when the candidate's accuracy is more than POINTS\n"
	"                           percentage points below the reference's\n"
	"      --min-agreement PERCENT  exit 1 when fewer than PERCENT % of the samples get\n"
	"                           the same top-1 from both models\n"
	"      --no-tune            oneDNN's first kernel for every layer (graft-run(1))\n"
	"  -h, --help               show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *ref, *cand, *data;
	int64_t samples, batch;
	double max_drop, min_agreement;         /* < 0: not asked */
	int json, no_tune;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_DATA = 256, OPT_SAMPLES, OPT_BATCH, OPT_JSON, OPT_DROP, OPT_AGREE };
	static const struct option opts[] = {
		{"data", required_argument, NULL, OPT_DATA},
		{"samples", required_argument, NULL, OPT_SAMPLES},
		{"batch", required_argument, NULL, OPT_BATCH},
		{"json", no_argument, NULL, OPT_JSON},
		{"max-drop", required_argument, NULL, OPT_DROP},
		{"min-agreement", required_argument, NULL, OPT_AGREE},
		TOOL_TUNE_LONGOPT,
		TOOL_COMMON_LONGOPTS, {0},
	};
	int c;

	memset(cl, 0, sizeof(*cl));
	cl->batch = 32;
	cl->max_drop = cl->min_agreement = -1;
	while ((c = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
		switch (c) {
		case OPT_DATA: cl->data = optarg; break;
		case OPT_SAMPLES:
			cl->samples = (int64_t)tool_parse_number("--samples", optarg, 1, 1e15, usage);
			break;
		case OPT_BATCH:
			cl->batch = (int64_t)tool_parse_number("--batch", optarg, 1, 1e9, usage);
			break;
		case OPT_JSON: cl->json = 1; break;
		case OPT_DROP: cl->max_drop = tool_parse_number("--max-drop", optarg, 0, 100, usage);
			break;
		case OPT_AGREE:
			cl->min_agreement = tool_parse_number("--min-agreement", optarg, 0, 100, usage);
			break;
		case TOOL_OPT_NO_TUNE: cl->no_tune = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind != 2)
		tool_usage(usage, 2, "give a reference and a candidate model");
	if (!cl->data)
		tool_usage(usage, 2, "--data is required");
	cl->ref = argv[optind];
	cl->cand = argv[optind + 1];
}

static struct graft_net *make_net(const struct graft_model *m, const char *path, int no_tune)
{
	struct graft_net_opts no = {.wisdom = tool_wisdom(no_tune, 1)};
	struct graft_net *net;
	struct graft_err err = {0};

	if (graft_net_new_opts(&net, m, &no, &err))
		tool_die("%s: %s", path, err.msg);
	return net;
}

static void print_json(const struct cmdline *cl, const struct graft_parity *p)
{
	printf("{\"samples\": %lld, \"outputs\": [", (long long)p->count);
	for (size_t k = 0; k < p->n_outputs; k++) {
		printf("%s{\"name\": ", k ? ", " : "");
		tool_json_string(stdout, p->out[k].name ? p->out[k].name : "");
		printf(", \"max_abs\": %.9g, \"max_rel\": %.9g}", p->out[k].max_abs,
		       p->out[k].max_rel);
	}
	printf("]");
	if (p->classifier)
		printf(", \"top1_agreement\": %.9g", (double)p->agree / (double)p->count);
	if (p->classifier && p->labels)
		printf(", \"reference_accuracy\": %.9g, \"candidate_accuracy\": %.9g",
		       (double)p->ref_correct / (double)p->count,
		       (double)p->cand_correct / (double)p->count);
	printf(", \"reference\": ");
	tool_json_string(stdout, cl->ref);
	printf(", \"candidate\": ");
	tool_json_string(stdout, cl->cand);
	printf("}\n");
}

static void print_text(const struct graft_parity *p)
{
	printf("samples %lld\n", (long long)p->count);
	for (size_t k = 0; k < p->n_outputs; k++)
		printf("output %-24s max |diff| %.4g (%.3g of the reference's largest, %.4g)\n",
		       p->out[k].name ? p->out[k].name : "", p->out[k].max_abs, p->out[k].max_rel,
		       p->out[k].ref_max);
	if (p->classifier)
		printf("top-1 agreement %.2f%% (%lld of %lld)\n",
		       100.0 * (double)p->agree / (double)p->count, (long long)p->agree,
		       (long long)p->count);
	if (p->classifier && p->labels)
		printf("accuracy: reference %.2f%%, candidate %.2f%% (%+.2f points)\n",
		       100.0 * (double)p->ref_correct / (double)p->count,
		       100.0 * (double)p->cand_correct / (double)p->count,
		       100.0 * (double)(p->cand_correct - p->ref_correct) / (double)p->count);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *ref, *cand;
	struct graft_net *rn, *cn;
	struct graft_array x[GRAFT_DATASET_MAX_INPUTS], y;
	size_t n_x;
	struct graft_parity p;
	struct graft_err err = {0};
	int status = 0;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	ref = tool_read_model(cl.ref);
	cand = tool_read_model(cl.cand);
	tool_read_feed(cl.data, ref, x, &n_x, &y);
	if (cl.samples && cl.samples < x[0].dims[0]) {
		tool_batch_of(x, n_x, cl.samples, x);
		tool_batch_of(&y, 1, cl.samples, &y);
	}
	rn = make_net(ref, cl.ref, cl.no_tune);
	cn = make_net(cand, cl.cand, cl.no_tune);
	if (graft_parity(rn, cn, x, n_x, &y, cl.batch, &p, &err))
		tool_die("%s against %s on %s: %s", cl.cand, cl.ref, cl.data, err.msg);
	if (cl.json)
		print_json(&cl, &p);
	else
		print_text(&p);
	if (fflush(stdout) || ferror(stdout))
		tool_die("write failed");
	if ((cl.max_drop >= 0 || cl.min_agreement >= 0) && !p.classifier)
		tool_die("%s: --max-drop and --min-agreement need a classifier (a first output "
			 "[batch, classes])", cl.cand);
	double drop = 100.0 * (double)(p.ref_correct - p.cand_correct) / (double)p.count;
	double agree = 100.0 * (double)p.agree / (double)p.count;
	if (cl.max_drop >= 0 && !p.labels)
		tool_die("%s: --max-drop needs int64 labels", cl.data);
	if (cl.max_drop >= 0 && drop > cl.max_drop) {
		fprintf(stderr, "%s: %s: accuracy %.2f%% is %.2f points below the reference's "
			"%.2f%% (--max-drop %g)\n", tool_name, cl.cand,
			100.0 * (double)p.cand_correct / (double)p.count, drop,
			100.0 * (double)p.ref_correct / (double)p.count, cl.max_drop);
		status = 1;
	} else if (cl.min_agreement >= 0 && agree < cl.min_agreement) {
		fprintf(stderr, "%s: %s: top-1 agrees with the reference on %.2f%% of the "
			"samples (--min-agreement %g)\n", tool_name, cl.cand, agree,
			cl.min_agreement);
		status = 1;
	}
	graft_net_free(rn);
	graft_net_free(cn);
	graft_model_free(ref);
	graft_model_free(cand);
	tool_release_datasets();
	return status;
}
