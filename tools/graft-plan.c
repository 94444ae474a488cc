/*
 * graft-plan: which of the four transfer-learning cases a dataset falls in (little or
 * much data, similar or not to what the model was pretrained on), the numbers behind
 * it, and the graft-freeze and graft-train command lines to run; --apply writes the
 * frozen model.  The method and its thresholds are in docs/plan.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-plan [MODEL|-] --data D [--apply [-o OUT]] [--json] [--max-memory SIZE]\n"
	"Says which of the four transfer-learning cases the data D falls in for MODEL, why,\n"
	"and the graft-freeze and graft-train commands to run (docs/plan.md).\n"
	"  -d, --data D      the training data (graft-data)\n"
	"      --apply       write the model frozen as planned (.graft, stdout unless -o)\n"
	"      --json        the plan as one JSON object (on stderr with --apply)\n"
	"  -o, --output OUT  with --apply: write to OUT (atomically)\n"
	"  -f, --force       write binary data even to a terminal\n"
	"      --max-memory SIZE  refuse when measuring the data would need more memory\n"
	"                    than SIZE (suffixes K, M, G; default: the memory available)\n"
	"  -h, --help        show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *model, *data, *out;
	int apply, json, force;
	uint64_t max_memory;    /* 0: the memory available */
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_APPLY = 256, OPT_JSON };
	static const struct option opts[] = {
		{"data", required_argument, NULL, 'd'}, {"apply", no_argument, NULL, OPT_APPLY},
		{"json", no_argument, NULL, OPT_JSON}, {"output", required_argument, NULL, 'o'},
		{"force", no_argument, NULL, 'f'}, TOOL_MEMORY_LONGOPT, TOOL_COMMON_LONGOPTS, {0},
	};
	int c;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":d:o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cl->data = optarg; break;
		case OPT_APPLY: cl->apply = 1; break;
		case OPT_JSON: cl->json = 1; break;
		case 'o': cl->out = optarg; break;
		case 'f': cl->force = 1; break;
		case TOOL_OPT_MAX_MEMORY:
			cl->max_memory = tool_parse_size("--max-memory", optarg, usage);
			break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	if (!cl->data)
		tool_usage(usage, 2, "--data is required");
	if (cl->out && !cl->apply)
		tool_usage(usage, 2, "-o goes with --apply");
	cl->model = optind < argc ? argv[optind] : NULL;
}

static const char *const case_name[] = {
	"", "little data, similar to the pretraining data",
	"little data, different from the pretraining data",
	"much data, similar to the pretraining data",
	"much data, different from the pretraining data",
};

/* The freeze arguments and the training arguments of the plan's case. */
static void commands(const struct graft_plan *p, char *freeze, size_t fs, char *train,
		     size_t ts)
{
	if (p->train_blocks > 0)
		snprintf(freeze, fs, "--last-blocks %ld", p->train_blocks);
	else
		snprintf(freeze, fs, "--none");
	switch (p->case_no) {
	case 1:
		/* A head alone is a linear model on fixed (cached) features: cheap to train
		 * to convergence, so about 1,000 steps of the default batch of 32 however
		 * few the samples (examples/four-cases: 20 epochs at 0.01 left a head at 71%
		 * on 20 Fashion-MNIST images per class, 300 at 0.03 reached 86%). */
		snprintf(train, ts, "--epochs %lld --optimizer adamw --lr 0.03",
			 (long long)(p->samples >= 1600 ? 20 : (32000 + p->samples - 1) / p->samples));
		break;
	case 2:
		snprintf(train, ts, "--epochs 20 --optimizer sgd --lr 0.005 --momentum 0.9 "
			 "--schedule cosine --bn frozen");
		break;
	case 3:
		snprintf(train, ts, "--epochs 5 --optimizer sgd --lr 0.01 --momentum 0.9 "
			 "--schedule cosine");
		break;
	default:
		snprintf(train, ts, "--epochs 10 --optimizer sgd --lr 0.02 --momentum 0.9 "
			 "--schedule cosine --warmup 100");
		break;
	}
}

static void why(const struct graft_plan *p, FILE *f)
{
	fprintf(f, "  data:       %lld samples in %lld classes, %.1f per class (little data is below %d)\n",
		(long long)p->samples, (long long)p->classes, p->samples_per_class,
		GRAFT_PLAN_SMALL_PER_CLASS);
	if (strcmp(p->method, "batchnorm") == 0)
		fprintf(f, "  similarity: %.3f = exp(-%.3f), the mean divergence of the data's "
			"statistics from %zu BatchNormalization layers' running ones (similar from "
			"%.2f)\n", p->similarity, p->distance, p->bn_layers, GRAFT_PLAN_SIMILAR_BN);
	else
		fprintf(f, "  similarity: %.3f, the original head's mean top softmax probability on "
			"the data (similar from %.2f)\n", p->similarity,
			GRAFT_PLAN_SIMILAR_CONFIDENCE);
	fprintf(f, "  model:      %llu parameters, %zu block boundaries; train %s: %llu "
		"parameters\n", (unsigned long long)p->params, p->blocks,
		p->train_blocks > 0 ? "the top blocks" : "everything",
		(unsigned long long)p->params_trained);
}

static void print_json(const struct graft_plan *p, const char *freeze, const char *train,
		       FILE *f)
{
	fprintf(f, "{\"case\": %d, \"small\": %s, \"similar\": %s, \"samples\": %lld, "
		"\"classes\": %lld, \"samples_per_class\": %.6g, \"similarity\": %.6g, "
		"\"method\": \"%s\", \"distance\": %.6g, \"bn_layers\": %zu, \"parameters\": %llu, "
		"\"parameters_trained\": %llu, \"blocks\": %zu, \"train_blocks\": %ld, "
		"\"freeze\": ", p->case_no, p->small ? "true" : "false",
		p->similar ? "true" : "false", (long long)p->samples, (long long)p->classes,
		p->samples_per_class, p->similarity, p->method, p->distance, p->bn_layers,
		(unsigned long long)p->params, (unsigned long long)p->params_trained, p->blocks,
		p->train_blocks);
	tool_json_string(f, freeze);
	fputs(", \"train\": ", f);
	tool_json_string(f, train);
	fputs("}\n", f);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m, *dm;
	struct graft_array x, y;
	struct graft_plan p;
	struct graft_err err = {0};
	char freeze[64], train[256];
	const char *mpath;
	FILE *info;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	mpath = cl.model && strcmp(cl.model, "-") ? cl.model : "<stdin>";
	dm = tool_read_dataset(cl.data, &x, &y);
	m = tool_read_model(cl.model);
	/* graft_plan_make measures the data in batches of 32 through a net that keeps every
	 * value (no fusion). */
	struct graft_net_opts probe = {.no_fuse = 1};
	tool_check_model_memory(m, mpath, &probe, &x, 32, 0, cl.max_memory);
	if (graft_plan_make(m, &x, &y, &p, &err))
		tool_die("%s: %s", mpath, err.msg);
	commands(&p, freeze, sizeof(freeze), train, sizeof(train));
	info = cl.apply ? stderr : stdout;
	if (cl.json) {
		print_json(&p, freeze, train, info);
	} else {
		fprintf(info, "case %d: %s\n", p.case_no, case_name[p.case_no]);
		why(&p, info);
		fprintf(info, "run:\n  graft-freeze %s %s -o frozen.graft\n"
			"  graft-train frozen.graft --data %s %s -o tuned.graft\n",
			cl.model ? cl.model : "MODEL", freeze, cl.data, train);
	}
	if (cl.apply) {
		struct graft_freeze_rule rule;
		graft_plan_rule(&p, &rule);
		if (graft_model_freeze(m, &rule, 1, NULL, NULL, &err))
			tool_die("%s: %s", mpath, err.msg);
		tool_add_history(m);
		tool_write_graft(m, cl.out, NULL, 1, cl.force);
	}
	if (fflush(stdout) || ferror(stdout))
		tool_die("write failed");
	graft_model_free(m);
	graft_model_free(dm);
	return 0;
}
