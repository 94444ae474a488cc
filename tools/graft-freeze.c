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
#include <fnmatch.h>
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

enum rule_kind { RULE_ALL, RULE_PATTERN, RULE_UNTIL, RULE_LAST_BLOCKS, RULE_STRATEGY };

struct rule {
	enum rule_kind kind;
	int train;              /* 1: make trainable; 0: freeze */
	const char *arg;        /* the pattern or the cut */
	long blocks;            /* --last-blocks */
	size_t cut_node;        /* resolved: the cut's producer (RULE_UNTIL, LAST_BLOCKS) */
};

struct cmdline {
	const char *in, *out;
	struct rule *rules;
	size_t n_rules;
	int force;
};

static void add_rule(struct cmdline *cl, enum rule_kind kind, int train, const char *arg)
{
	struct rule *r = realloc(cl->rules, (cl->n_rules + 1) * sizeof(*r));

	if (!r)
		tool_die("out of memory");
	memset(&r[cl->n_rules], 0, sizeof(*r));
	r[cl->n_rules].kind = kind;
	r[cl->n_rules].train = train;
	r[cl->n_rules].arg = arg;
	if (kind == RULE_LAST_BLOCKS || kind == RULE_STRATEGY) {
		char *end;
		r[cl->n_rules].blocks = strtol(arg, &end, 10);
		if (*end || end == arg || r[cl->n_rules].blocks < 1)
			tool_usage(usage, 2, "--last-blocks: '%s' is not a count >= 1", arg);
		if (kind == RULE_STRATEGY && r[cl->n_rules].blocks > 4)
			tool_usage(usage, 2, "--strategy: '%s' is not 1, 2, 3 or 4", arg);
	}
	cl->rules = r;
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
		case OPT_ALL: add_rule(cl, RULE_ALL, 0, NULL); break;
		case OPT_NONE: add_rule(cl, RULE_ALL, 1, NULL); break;
		case OPT_TRAIN: add_rule(cl, RULE_PATTERN, 1, optarg); break;
		case OPT_FREEZE: add_rule(cl, RULE_PATTERN, 0, optarg); break;
		case OPT_UNTIL: add_rule(cl, RULE_UNTIL, 0, optarg); break;
		case OPT_LAST: add_rule(cl, RULE_LAST_BLOCKS, 1, optarg); break;
		case OPT_STRATEGY: add_rule(cl, RULE_STRATEGY, 1, optarg); break;
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

/* Whether pattern matches tensor t's name or a node reading it. */
static int matches(const struct graft_model *m, const char *pattern, const char *name)
{
	if (fnmatch(pattern, name, 0) == 0)
		return 1;
	for (size_t i = 0; i < graft_model_node_count(m); i++) {
		struct graft_node n;
		graft_model_node(m, i, &n);
		if (!n.name || !*n.name || fnmatch(pattern, n.name, 0) != 0)
			continue;
		for (size_t k = 0; k < n.n_inputs; k++)
			if (strcmp(n.inputs[k], name) == 0)
				return 1;
	}
	return 0;
}

/* Resolves the cuts of --until and --last-blocks rules. */
static void resolve_cuts(struct graft_model *m, struct cmdline *cl, const char *path)
{
	struct graft_cut *cuts = NULL;
	size_t n = 0, nb = 0;
	struct graft_err err = {0};
	int need = 0;

	for (size_t r = 0; r < cl->n_rules; r++)
		need |= cl->rules[r].kind != RULE_ALL && cl->rules[r].kind != RULE_PATTERN;
	if (!need)
		return;
	if (graft_model_cuts(m, &cuts, &n, &err))
		tool_die("%s: %s", path, err.msg);
	for (size_t i = 0; i < n; i++)
		nb += cuts[i].block;
	for (size_t r = 0; r < cl->n_rules; r++) {
		struct rule *ru = &cl->rules[r];
		if (ru->kind == RULE_STRATEGY) {
			/* graft-plan's choice for that case (docs/plan.md) */
			struct graft_plan p = {0};
			p.samples_per_class = ru->blocks <= 2 ? 0 : 1e18;
			p.similarity = ru->blocks % 2 ? 1 : 0;
			p.method = "batchnorm";
			p.blocks = nb;
			graft_plan_decide(&p);
			ru->kind = p.train_blocks > 0 ? RULE_LAST_BLOCKS : RULE_ALL;
			ru->train = 1;
			ru->blocks = p.train_blocks;
		}
		if (ru->kind == RULE_UNTIL) {
			long c = graft_cut_find(cuts, n, ru->arg);
			if (c < 0)
				tool_die("%s: no cut '%s' (see graft-slice --list-cuts)", path, ru->arg);
			ru->cut_node = cuts[c].node;
		} else if (ru->kind == RULE_LAST_BLOCKS) {
			if ((size_t)ru->blocks > nb)
				tool_die("%s: --last-blocks %ld: the network has %zu block boundaries",
					 path, ru->blocks, nb);
			ru->cut_node = tool_last_blocks_node(cuts, n, (size_t)ru->blocks);
		}
	}
	free(cuts);
}

/* Whether rule ru applies to parameter name, first read by node first, and the flag it
 * sets. */
static int apply(const struct graft_model *m, const struct rule *ru, const char *name,
		 size_t first, int *train)
{
	switch (ru->kind) {
	case RULE_ALL:
		*train = ru->train;
		return 1;
	case RULE_PATTERN:
		*train = ru->train;
		return matches(m, ru->arg, name);
	case RULE_UNTIL:
		*train = 0;
		return first <= ru->cut_node;
	case RULE_LAST_BLOCKS:
	case RULE_STRATEGY:             /* (resolved into one of the others) */
		*train = first > ru->cut_node;
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_err err = {0};
	size_t *hits, *first, trainable = 0, params = 0;
	const char *path;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	path = cl.in && strcmp(cl.in, "-") ? cl.in : "<stdin>";
	m = tool_read_model(cl.in);
	/* An alias would share its tensor's flag: torch's equal BatchNormalization biases
	 * in different blocks must freeze apart. */
	if (graft_model_unalias_all(m, &err))
		tool_die("%s: %s", path, err.msg);
	resolve_cuts(m, &cl, path);
	if (!(hits = calloc(cl.n_rules + 1, sizeof(*hits))))
		tool_die("out of memory");
	first = tool_first_readers(m);
	for (size_t i = 0; i < graft_model_tensor_count(m); i++) {
		struct graft_tensor t;
		int train;
		graft_model_tensor(m, i, &t);
		if (t.role != GRAFT_ROLE_PARAMETER)
			continue;
		for (size_t r = 0; r < cl.n_rules; r++) {
			if (!apply(m, &cl.rules[r], t.name, first[i], &train))
				continue;
			if (graft_model_set_trainable(m, i, train, &err))
				tool_die("%s", err.msg);
			hits[r]++;
		}
		graft_model_tensor(m, i, &t);
		params++;
		trainable += t.trainable;
	}
	for (size_t r = 0; r < cl.n_rules; r++)
		if (cl.rules[r].kind == RULE_PATTERN && !hits[r])
			tool_die("%s: '%s' matches no parameter", path, cl.rules[r].arg);
	fprintf(stderr, "%s: %zu of %zu parameter tensors trainable\n", tool_name, trainable,
		params);
	tool_add_history(m);
	tool_write_graft(m, cl.out, NULL, 1, cl.force);
	free(hits);
	free(first);
	free(cl.rules);
	graft_model_free(m);
	return 0;
}
