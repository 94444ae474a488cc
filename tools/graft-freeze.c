/*
 * graft-freeze: marks a model's parameters trainable or frozen.  Rules apply in the order
 * given, each to the parameters it matches, so that "--all --train 'fc.*'" freezes
 * everything but the classifier.  A pattern is a shell glob matched against a
 * parameter's name and against the names of the nodes that read it (so a node's name
 * selects its weights).  Only parameters can train: buffers and constants never do.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-freeze [IN|-] [--all | --none] [--train PAT]... [--freeze PAT]... [-o OUT]\n"
	"Marks parameters of a model trainable or frozen, in the order the rules are given,\n"
	"and writes the model as .graft (stdout unless -o).\n"
	"      --all             freeze every parameter\n"
	"      --none            make every parameter trainable\n"
	"      --train PAT       make parameters matching the glob PAT trainable\n"
	"      --freeze PAT      freeze parameters matching PAT\n"
	"                        (PAT matches a parameter's name or the name of a node reading it)\n"
	"  -o, --output OUT      write to OUT (atomically) instead of stdout\n"
	"  -f, --force           write binary data even to a terminal\n"
	"  -h, --help            show this help;  -V, --version  show the version\n";

struct rule {
	int train;              /* 1: make trainable; 0: freeze */
	const char *pattern;    /* NULL: every parameter */
};

struct cmdline {
	const char *in, *out;
	struct rule *rules;
	size_t n_rules;
	int force;
};

static void add_rule(struct cmdline *cl, int train, const char *pattern)
{
	struct rule *r = realloc(cl->rules, (cl->n_rules + 1) * sizeof(*r));

	if (!r)
		tool_die("out of memory");
	r[cl->n_rules].train = train;
	r[cl->n_rules].pattern = pattern;
	cl->rules = r;
	cl->n_rules++;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_ALL = 256, OPT_NONE, OPT_TRAIN, OPT_FREEZE };
	static const struct option opts[] = {
		{"all", no_argument, NULL, OPT_ALL}, {"none", no_argument, NULL, OPT_NONE},
		{"train", required_argument, NULL, OPT_TRAIN},
		{"freeze", required_argument, NULL, OPT_FREEZE},
		{"output", required_argument, NULL, 'o'}, {"force", no_argument, NULL, 'f'},
		TOOL_COMMON_LONGOPTS, {0},
	};
	int c;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case OPT_ALL: add_rule(cl, 0, NULL); break;
		case OPT_NONE: add_rule(cl, 1, NULL); break;
		case OPT_TRAIN: add_rule(cl, 1, optarg); break;
		case OPT_FREEZE: add_rule(cl, 0, optarg); break;
		case 'o': cl->out = optarg; break;
		case 'f': cl->force = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	if (!cl->n_rules)
		tool_usage(usage, 2, "give at least one of --all, --none, --train, --freeze");
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

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_output out;
	struct graft_err err = {0};
	size_t *hits, trainable = 0, params = 0;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	m = tool_read_model(cl.in);
	if (!(hits = calloc(cl.n_rules + 1, sizeof(*hits))))
		tool_die("out of memory");
	for (size_t i = 0; i < graft_model_tensor_count(m); i++) {
		struct graft_tensor t;
		graft_model_tensor(m, i, &t);
		if (t.role != GRAFT_ROLE_PARAMETER)
			continue;
		for (size_t r = 0; r < cl.n_rules; r++) {
			if (cl.rules[r].pattern && !matches(m, cl.rules[r].pattern, t.name))
				continue;
			if (graft_model_set_trainable(m, i, cl.rules[r].train, &err))
				tool_die("%s", err.msg);
			hits[r]++;
		}
		graft_model_tensor(m, i, &t);
		params++;
		trainable += t.trainable;
	}
	for (size_t r = 0; r < cl.n_rules; r++)
		if (cl.rules[r].pattern && !hits[r])
			tool_die("%s: '%s' matches no parameter", cl.in ? cl.in : "<stdin>",
				 cl.rules[r].pattern);
	fprintf(stderr, "%s: %zu of %zu parameter tensors trainable\n", tool_name, trainable,
		params);
	tool_add_history(m);
	tool_output_open(&out, cl.out, 1, cl.force);
	if (graft_model_write_graft(m, out.fd, NULL, &err))
		tool_die("%s: %s", cl.out ? cl.out : "<stdout>", err.msg);
	tool_output_commit(&out);
	free(hits);
	free(cl.rules);
	graft_model_free(m);
	return 0;
}
