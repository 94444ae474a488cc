/*
 * graft-head: gives a model a new classifier head for a task of N classes, the first step
 * of fine-tuning: the final classifier gives way to a fresh layer of N outputs, or the
 * network is cut at an earlier value (--at) and a head attached there.  New weights are
 * seeded, so a command line always writes the same bytes.  The work is
 * graft_head_attach's (lib/surgery/head.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-head [IN|-] --classes N [--at TENSOR [--mean MASK | --flatten]]\n"
	"                  [--hidden H] [--dropout P] [--sigmoid] [--init he|xavier]\n"
	"                  [--seed S] [-o OUT]\n"
	"Replaces a model's final classifier (a Gemm, or a MatMul and Add) with a new one of\n"
	"N outputs, or cuts the model at TENSOR and attaches a new head there, and writes the\n"
	"model as .graft (stdout unless -o).  New weights are trainable; other flags stay.\n"
	"  -c, --classes N       outputs of the new head (required)\n"
	"      --at TENSOR       cut at this value: what only served the old output goes, and\n"
	"                        the head computes the first output's name; an (N,C,H,W)\n"
	"                        value gets GlobalAveragePool and Flatten first, an\n"
	"                        (N,T,H) one (a transformer's hidden states) its first\n"
	"                        token ([CLS]).  At a graph output (an encoder's), the head\n"
	"                        computes a new output, logits, and the old ones go.\n"
	"                        Without --at, a model with no classifier is taken as an\n"
	"                        encoder: the head reads its pooled output (a rank-2\n"
	"                        output)\n"
	"      --mean MASK       (N,T,H) values: the mean over the tokens the model input\n"
	"                        MASK (an attention mask, 1 on tokens) marks, not the first\n"
	"                        token\n"
	"      --flatten         (N,T,H) values: all T tokens' features in a row, (N,T*H)\n"
	"                        (openWakeWord's heads read 16 embeddings so)\n"
	"      --sigmoid         end in Sigmoid: independent probabilities (--classes 1: a\n"
	"                        detector, trained with binary cross-entropy on 0/1 labels)\n"
	"      --hidden H        a hidden layer: Gemm(in->H), Relu, [Dropout], Gemm(H->N)\n"
	"      --dropout P       a Dropout of ratio P before the last layer\n"
	"      --init he|xavier  weights: he (default): normal, std sqrt(2/fan_in); xavier:\n"
	"                        uniform in +-sqrt(6/(fan_in+fan_out)); biases are zero\n"
	"      --seed S          the weights' seed (default 0): the same seed, the same bytes\n"
	"  -o, --output OUT      write to OUT (atomically) instead of stdout\n"
	"  -f, --force           write binary data even to a terminal\n"
	"  -h, --help            show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *in, *out;
	struct graft_head_opts o;
	const char *dropout;    /* as given, for the message */
	int classes_set, hidden_set, force;
};

static int64_t parse_int(const char *s, const char *opt)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		tool_usage(usage, 2, "%s: '%s' is not a whole number", opt, s);
	return v;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_AT = 256, OPT_HIDDEN, OPT_DROPOUT, OPT_INIT, OPT_SEED, OPT_MEAN, OPT_FLATTEN,
	       OPT_SIGMOID };
	static const struct option opts[] = {
		{"classes", required_argument, NULL, 'c'}, {"at", required_argument, NULL, OPT_AT},
		{"hidden", required_argument, NULL, OPT_HIDDEN},
		{"dropout", required_argument, NULL, OPT_DROPOUT},
		{"init", required_argument, NULL, OPT_INIT},
		{"seed", required_argument, NULL, OPT_SEED},
		{"mean", required_argument, NULL, OPT_MEAN},
		{"flatten", no_argument, NULL, OPT_FLATTEN},
		{"sigmoid", no_argument, NULL, OPT_SIGMOID},
		{"output", required_argument, NULL, 'o'}, {"force", no_argument, NULL, 'f'},
		TOOL_COMMON_LONGOPTS, {0},
	};
	char *end;
	int c;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":c:o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			cl->o.classes = parse_int(optarg, "--classes");
			cl->classes_set = 1;
			break;
		case OPT_AT: cl->o.at = optarg; break;
		case OPT_MEAN: cl->o.mean_mask = optarg; break;
		case OPT_FLATTEN: cl->o.flatten = 1; break;
		case OPT_SIGMOID: cl->o.sigmoid = 1; break;
		case OPT_HIDDEN:
			cl->o.hidden = parse_int(optarg, "--hidden");
			cl->hidden_set = 1;
			break;
		case OPT_DROPOUT:
			errno = 0;
			cl->dropout = optarg;
			cl->o.dropout = strtod(optarg, &end);
			if (errno || end == optarg || *end)
				tool_usage(usage, 2, "--dropout: '%s' is not a number", optarg);
			break;
		case OPT_INIT:
			if (strcmp(optarg, "he") == 0)
				cl->o.init = GRAFT_HEAD_HE;
			else if (strcmp(optarg, "xavier") == 0)
				cl->o.init = GRAFT_HEAD_XAVIER;
			else
				tool_usage(usage, 2, "--init: '%s' is not he or xavier", optarg);
			break;
		case OPT_SEED:
			errno = 0;
			cl->o.seed = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || *optarg == '-')
				tool_usage(usage, 2, "--seed: '%s' is not a whole number >= 0",
					   optarg);
			break;
		case 'o': cl->out = optarg; break;
		case 'f': cl->force = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	if (!cl->classes_set)
		tool_usage(usage, 2, "--classes N is required");
	cl->in = optind < argc ? argv[optind] : NULL;
	/* Well-formed but out of range: a plain error, as the library would give. */
	if (cl->o.classes < 1)
		tool_die("--classes must be at least 1, not %" PRId64, cl->o.classes);
	if (cl->hidden_set && cl->o.hidden < 1)
		tool_die("--hidden must be at least 1, not %" PRId64, cl->o.hidden);
	if (!(cl->o.dropout >= 0 && cl->o.dropout < 1))
		tool_die("--dropout must be in [0, 1), not %s", cl->dropout);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_head_info info;
	struct graft_err err = {0};
	const char *name;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	name = cl.in && strcmp(cl.in, "-") != 0 ? cl.in : "<stdin>";
	m = tool_read_model(cl.in);
	if (graft_head_attach(m, &cl.o, &info, &err))
		tool_die("%s: %s", name, err.msg);
	if (*info.at)
		fprintf(stderr, "%s: cut at '%s' (%" PRId64 " features%s): %s, %" PRId64 " classes "
			"as '%s'; %zu nodes and %zu tensors removed\n", tool_name, info.at,
			info.in_features, info.token == 1 ? ", the first token's" :
			info.token == 2 ? ", the mean over the masked tokens" :
			info.token == 3 ? ", its tokens flattened" : "", info.prefix,
			info.classes, info.output, info.nodes_removed, info.tensors_removed);
	else
		fprintf(stderr, "%s: '%s' (%" PRId64 " -> %" PRId64 ") replaced by %s (%" PRId64
			" -> %" PRId64 "); %zu nodes and %zu tensors removed\n", tool_name,
			info.replaced, info.in_features, info.old_classes, info.prefix,
			info.in_features, info.classes, info.nodes_removed, info.tensors_removed);
	tool_add_history(m);
	tool_write_graft(m, cl.out, NULL, 1, cl.force);
	graft_model_free(m);
	return 0;
}
