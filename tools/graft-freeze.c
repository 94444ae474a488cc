/*
 * graft-freeze: marks a model's parameters trainable or frozen.  Rules apply in the order
 * given, each to the parameters it matches, so that "--all --train 'fc.*'" freezes
 * everything but the classifier.  A pattern is a shell glob matched against a
 * parameter's name and against the names of the nodes that read it (so a node's name
 * selects its weights).  Cuts (graft-slice --list-cuts) split the network in graph order:
 * a parameter lies before a cut when the first node reading it comes no later than the
 * cut's producer.  Only parameters can train: buffers and constants never do, and a
 * BatchNormalization whose scale and bias are frozen runs in inference mode when training.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-freeze [IN|-] [--all | --none] [--train PAT]... [--freeze PAT]...\n"
	"                    [--until CUT] [--last-blocks N] [--strategy 1|2|3|4] [-o OUT]\n"
	"Marks parameters of a model trainable or frozen, in the order the rules are given,\n"
	"and writes the model as .graft (stdout unless -o).\n"
	"      --all             freeze every parameter\n"
	"      --none            make every parameter trainable\n"
	"      --train PAT       make parameters matching the glob PAT trainable\n"
	"      --freeze PAT      freeze parameters matching PAT\n"
	"                        (PAT matches a parameter's name or the name of a node reading it)\n"
	"      --until CUT       freeze every parameter computed before the cut (a tensor, or an\n"
	"                        index from graft-slice --list-cuts; -1 is the last)\n"
	"      --last-blocks N   train only what follows the N-th block boundary from the end\n"
	"                        (--last-blocks 1: the head), freeze the rest\n"
	"      --strategy 1|2|3|4  the four cases' choice (docs/plan.md): 1 the head, 2 the top\n"
	"                        third of the blocks, 3 the upper half, 4 everything\n"
	"  -o, --output OUT      write to OUT (atomically) instead of stdout\n"
	"  -f, --force           write binary data even to a terminal\n"
	"  -h, --help            show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *in, *out;
	struct graft_freeze_rule *rules;
	int *strategy;          /* per rule: the case of --strategy N, resolved once read */
	size_t n_rules;
	int force;
};

/* Appends a rule; count is parsed from arg for --last-blocks and --strategy. */
static void add_rule(struct cmdline *cl, enum graft_freeze_kind kind, int train,
		     const char *arg, int strategy)
{
	struct graft_freeze_rule *r = realloc(cl->rules, (cl->n_rules + 1) * sizeof(*r));
	int *s = r ? realloc(cl->strategy, (cl->n_rules + 1) * sizeof(*s)) : NULL;

	if (!r || !s)
		tool_die("out of memory");
	cl->rules = r;
	cl->strategy = s;
	r += cl->n_rules;
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->train = train;
	r->arg = arg;
	s[cl->n_rules] = 0;
	if (kind == GRAFT_FREEZE_LAST_BLOCKS) {
		char *end;
		r->count = strtol(arg, &end, 10);
		if (*end || end == arg || r->count < 1)
			tool_usage(usage, 2, "--last-blocks: '%s' is not a count >= 1", arg);
		if (strategy && r->count > 4)
			tool_usage(usage, 2, "--strategy: '%s' is not 1, 2, 3 or 4", arg);
		if (strategy)
			s[cl->n_rules] = (int)r->count;
	}
	cl->n_rules++;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_ALL = 256, OPT_NONE, OPT_TRAIN, OPT_FREEZE, OPT_UNTIL, OPT_LAST, OPT_STRATEGY };
	static const struct option opts[] = {
		{"all", no_argument, NULL, OPT_ALL}, {"none", no_argument, NULL, OPT_NONE},
		{"train", required_argument, NULL, OPT_TRAIN},
		{"freeze", required_argument, NULL, OPT_FREEZE},
		{"until", required_argument, NULL, OPT_UNTIL},
		{"last-blocks", required_argument, NULL, OPT_LAST},
		{"strategy", required_argument, NULL, OPT_STRATEGY},
		{"output", required_argument, NULL, 'o'}, {"force", no_argument, NULL, 'f'},
		TOOL_COMMON_LONGOPTS, {0},
	};
	int c;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case OPT_ALL: add_rule(cl, GRAFT_FREEZE_ALL, 0, NULL, 0); break;
		case OPT_NONE: add_rule(cl, GRAFT_FREEZE_ALL, 1, NULL, 0); break;
		case OPT_TRAIN: add_rule(cl, GRAFT_FREEZE_PATTERN, 1, optarg, 0); break;
		case OPT_FREEZE: add_rule(cl, GRAFT_FREEZE_PATTERN, 0, optarg, 0); break;
		case OPT_UNTIL: add_rule(cl, GRAFT_FREEZE_UNTIL, 0, optarg, 0); break;
		case OPT_LAST: add_rule(cl, GRAFT_FREEZE_LAST_BLOCKS, 1, optarg, 0); break;
		case OPT_STRATEGY: add_rule(cl, GRAFT_FREEZE_LAST_BLOCKS, 1, optarg, 1); break;
		case 'o': cl->out = optarg; break;
		case 'f': cl->force = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	if (!cl->n_rules)
		tool_usage(usage, 2, "give at least one of --all, --none, --train, --freeze, --until, "
			   "--last-blocks");
	cl->in = optind < argc ? argv[optind] : NULL;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_err err = {0};
	size_t trainable, params;
	const char *path;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	path = cl.in && strcmp(cl.in, "-") ? cl.in : "<stdin>";
	m = tool_read_model(cl.in);
	for (size_t r = 0; r < cl.n_rules; r++)
		if (cl.strategy[r] &&
		    graft_plan_freeze_rule(m, cl.strategy[r], &cl.rules[r], &err))
			tool_die("%s: %s", path, err.msg);
	if (graft_model_freeze(m, cl.rules, cl.n_rules, &trainable, &params, &err))
		tool_die("%s: %s", path, err.msg);
	fprintf(stderr, "%s: %zu of %zu parameter tensors trainable\n", tool_name, trainable,
		params);
	tool_add_history(m);
	tool_write_graft(m, cl.out, NULL, 1, cl.force);
	free(cl.rules);
	free(cl.strategy);
	graft_model_free(m);
	return 0;
}
