/*
 * graft-slice: cuts a subgraph out of a model (onnx.utils.extract_model's semantics), and
 * lists the places where a network can be cut cleanly.  Tensors may be named, or given as
 * a cut's index from --list-cuts (negative: from the end).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-slice [IN|-] [--from T[,T...]] [--to T[,T...] | --cut-after NODE] [-o OUT]\n"
	"       graft-slice [IN|-] --list-cuts [--json]\n"
	"Keeps the part of a model that computes the --to tensors from the --from tensors, which\n"
	"become the graph's inputs (with their inferred shapes); writes .graft (stdout unless -o).\n"
	"A tensor T is a name, or the index of a cut from --list-cuts (-1: the last).\n"
	"      --from LIST       tensors that become the inputs (default: the model's inputs)\n"
	"      --to LIST         tensors that become the outputs (default: the model's outputs)\n"
	"      --cut-after NODE  the outputs of node NODE become the outputs\n"
	"      --list-cuts       print the clean cuts: index, '*' for a block boundary (the last\n"
	"                        cut before more parameters), tensor, shape at batch 1, and\n"
	"                        the parameters before and after it; then exit\n"
	"      --json            --list-cuts as one JSON array\n"
	"  -o, --output OUT      write to OUT (atomically) instead of stdout\n"
	"  -f, --force           write binary data even to a terminal\n"
	"  -h, --help            show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *in, *out, *from, *to, *cut_after;
	int list, json, force;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_FROM = 256, OPT_TO, OPT_CUT_AFTER, OPT_LIST, OPT_JSON };
	static const struct option opts[] = {
		{"from", required_argument, NULL, OPT_FROM}, {"to", required_argument, NULL, OPT_TO},
		{"cut-after", required_argument, NULL, OPT_CUT_AFTER},
		{"list-cuts", no_argument, NULL, OPT_LIST}, {"json", no_argument, NULL, OPT_JSON},
		{"output", required_argument, NULL, 'o'}, {"force", no_argument, NULL, 'f'},
		TOOL_COMMON_LONGOPTS, {0},
	};
	int c;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case OPT_FROM: cl->from = optarg; break;
		case OPT_TO: cl->to = optarg; break;
		case OPT_CUT_AFTER: cl->cut_after = optarg; break;
		case OPT_LIST: cl->list = 1; break;
		case OPT_JSON: cl->json = 1; break;
		case 'o': cl->out = optarg; break;
		case 'f': cl->force = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	if (cl->to && cl->cut_after)
		tool_usage(usage, 2, "give --to or --cut-after, not both");
	if (cl->list && (cl->from || cl->to || cl->cut_after))
		tool_usage(usage, 2, "--list-cuts takes no other option");
	if (!cl->list && !cl->from && !cl->to && !cl->cut_after)
		tool_usage(usage, 2, "nothing to do: give --from, --to, --cut-after or --list-cuts");
	cl->in = optind < argc ? argv[optind] : NULL;
}

static void print_shape(FILE *f, const struct graft_cut *c)
{
	if (c->rank < 0) {
		fputs("?", f);
		return;
	}
	fputc('[', f);
	for (int d = 0; d < c->rank; d++)
		fprintf(f, "%s%lld", d ? "," : "", (long long)c->dims[d]);
	fputc(']', f);
}

static void list_cuts(const struct graft_cut *cuts, size_t n, int json)
{
	if (json)
		putchar('[');
	for (size_t i = 0; i < n; i++) {
		const struct graft_cut *c = &cuts[i];
		if (json) {
			printf("%s{\"index\": %zu, \"tensor\": ", i ? ", " : "", c->index);
			tool_json_string(stdout, c->tensor);
			printf(", \"shape\": ");
			if (c->rank < 0)
				printf("null");
			else
				print_shape(stdout, c);
			printf(", \"params_before\": %llu, \"params_after\": %llu, \"block\": %s}",
			       (unsigned long long)c->params_before,
			       (unsigned long long)c->params_after, c->block ? "true" : "false");
		} else {
			printf("%3zu %c %-40s ", c->index, c->block ? '*' : ' ', c->tensor);
			print_shape(stdout, c);
			printf("  before %llu  after %llu\n", (unsigned long long)c->params_before,
			       (unsigned long long)c->params_after);
		}
	}
	if (json)
		printf("]\n");
}

/* Splits a comma list, resolving cut indices, into names the model has. */
static size_t resolve(struct graft_model *m, const struct graft_cut *cuts, size_t n_cuts,
		      const char *list, const char *path, char ***out)
{
	char *copy = strdup(list), *save = NULL;
	size_t n = 0;
	char **names = calloc(strlen(list) + 2, sizeof(*names));

	if (!copy || !names)
		tool_die("out of memory");
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int known = 0;
		for (size_t i = 0; i < graft_model_node_count(m) && !known; i++) {
			struct graft_node nd;
			graft_model_node(m, i, &nd);
			for (size_t k = 0; k < nd.n_outputs && !known; k++)
				known = strcmp(nd.outputs[k], tok) == 0;
		}
		for (size_t i = 0; i < graft_model_input_count(m) && !known; i++) {
			struct graft_value_info vi;
			graft_model_input(m, i, &vi);
			known = strcmp(vi.name, tok) == 0;
		}
		if (!known) {
			long c = graft_cut_find(cuts, n_cuts, tok);
			if (c < 0)
				tool_die("%s: no tensor or cut '%s' (see --list-cuts)", path, tok);
			tok = (char *)cuts[c].tensor;
		}
		if (!(names[n++] = strdup(tok)))
			tool_die("out of memory");
	}
	free(copy);
	*out = names;
	return n;
}

/* The outputs of the node named name. */
static size_t node_outputs(struct graft_model *m, const char *name, const char *path,
			   char ***out)
{
	for (size_t i = 0; i < graft_model_node_count(m); i++) {
		struct graft_node nd;
		graft_model_node(m, i, &nd);
		if (strcmp(nd.name, name) != 0)
			continue;
		char **names = calloc(nd.n_outputs + 1, sizeof(*names));
		size_t n = 0;
		for (size_t k = 0; names && k < nd.n_outputs; k++)
			if (*nd.outputs[k] && !(names[n++] = strdup(nd.outputs[k])))
				tool_die("out of memory");
		if (!names)
			tool_die("out of memory");
		*out = names;
		return n;
	}
	tool_die("%s: no node named '%s'", path, name);
}

/* The model's graph outputs as they are. */
static size_t current_outputs(struct graft_model *m, char ***out)
{
	size_t n = graft_model_output_count(m);
	char **names = calloc(n + 1, sizeof(*names));

	if (!names)
		tool_die("out of memory");
	for (size_t i = 0; i < n; i++) {
		struct graft_value_info vi;
		graft_model_output(m, i, &vi);
		if (!(names[i] = strdup(vi.name)))
			tool_die("out of memory");
	}
	*out = names;
	return n;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_cut *cuts;
	struct graft_err err = {0};
	char **from = NULL, **to = NULL;
	size_t n_cuts, n_from = 0, n_to = 0;
	const char *path;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	path = cl.in && strcmp(cl.in, "-") ? cl.in : "<stdin>";
	m = tool_read_model(cl.in);
	if (graft_model_cuts(m, &cuts, &n_cuts, &err))
		tool_die("%s: %s", path, err.msg);
	if (cl.list) {
		list_cuts(cuts, n_cuts, cl.json);
		if (fflush(stdout) || ferror(stdout))
			tool_die("write failed");
		free(cuts);
		graft_model_free(m);
		return 0;
	}
	if (cl.from)
		n_from = resolve(m, cuts, n_cuts, cl.from, path, &from);
	if (cl.to)
		n_to = resolve(m, cuts, n_cuts, cl.to, path, &to);
	else if (cl.cut_after)
		n_to = node_outputs(m, cl.cut_after, path, &to);
	else
		n_to = current_outputs(m, &to);
	free(cuts);     /* its names point into the model, which extraction changes */
	if (graft_model_extract(m, (const char *const *)from, n_from, (const char *const *)to,
				n_to, &err))
		tool_die("%s: %s", path, err.msg);
	tool_add_history(m);
	tool_write_graft(m, cl.out, NULL, 1, cl.force);
	for (size_t i = 0; i < n_from; i++)
		free(from[i]);
	for (size_t i = 0; i < n_to; i++)
		free(to[i]);
	free(from);
	free(to);
	graft_model_free(m);
	return 0;
}
