/*
 * graft-compose: joins models into one, each fed by the one before it, as
 * onnx.compose.merge_models joins two: by default the outputs of the first feed the
 * inputs of the next in order; --io names the pairs.  For a chain of frozen models and the
 * glue between them (openWakeWord's front end: examples/wake-word).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-compose A B [C...] [--io OUT=IN]... [-o OUT] [-f]\n"
	"Joins models into one, each fed by the one before it (onnx.compose.merge_models):\n"
	"the first's outputs feed the next's inputs, in order, unless --io names the pairs.\n"
	"The result has the first's inputs and the inputs not fed, the outputs that feed\n"
	"nothing and the last's outputs, every model's weights with their flags (trainable,\n"
	"frozen); written as .graft (stdout unless -o).  A later model's inner names that an\n"
	"earlier one uses become GRAPH/name.  A model is .graft, ONNX or ONNX text; one may\n"
	"be - (stdin).\n"
	"      --io OUT=IN       A's output OUT feeds B's input IN (repeat for more; two\n"
	"                        models only); the pairs given are all the links\n"
	"  -o, --output OUT      write to OUT (atomically) instead of stdout\n"
	"  -f, --force           write binary data even to a terminal\n"
	"  -h, --help            show this help;  -V, --version  show the version\n";

struct cmdline {
	char **models;
	int n_models;
	const char *out;
	const char **outs, **ins;       /* --io pairs */
	size_t n_io;
	int force;
};

static void add_io(struct cmdline *cl, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char *out;

	if (!eq || eq == arg || !eq[1])
		tool_usage(usage, 2, "--io takes OUT=IN, not '%s'", arg);
	cl->outs = realloc(cl->outs, (cl->n_io + 1) * sizeof(*cl->outs));
	cl->ins = realloc(cl->ins, (cl->n_io + 1) * sizeof(*cl->ins));
	if (!cl->outs || !cl->ins || !(out = strndup(arg, (size_t)(eq - arg))))
		tool_die("out of memory");
	cl->outs[cl->n_io] = out;
	cl->ins[cl->n_io++] = eq + 1;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_IO = 256 };
	static const struct option opts[] = {
		{"io", required_argument, NULL, OPT_IO},
		{"output", required_argument, NULL, 'o'}, {"force", no_argument, NULL, 'f'},
		TOOL_COMMON_LONGOPTS, {0},
	};
	int c, stdin_models = 0;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case OPT_IO: add_io(cl, optarg); break;
		case 'o': cl->out = optarg; break;
		case 'f': cl->force = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	cl->models = argv + optind;
	cl->n_models = argc - optind;
	if (cl->n_models < 2)
		tool_usage(usage, 2, "give two models or more");
	if (cl->n_io && cl->n_models != 2)
		tool_usage(usage, 2, "--io joins two models: compose more in steps");
	for (int i = 0; i < cl->n_models; i++)
		stdin_models += strcmp(cl->models[i], "-") == 0;
	if (stdin_models > 1)
		tool_usage(usage, 2, "only one model can come from stdin");
}

static const char *label(const char *path)
{
	return strcmp(path, "-") ? path : "<stdin>";
}

/* The default links: a's outputs feed b's inputs (those not initializers) in order; the
 * names are new copies. */
static size_t links_by_position(const struct graft_model *a, const struct graft_model *b,
				const char *pa, const char *pb, const char ***outs,
				const char ***ins)
{
	size_t n_out = graft_model_output_count(a), n_in = graft_model_input_count(b);

	if (n_in > n_out)
		tool_die("%s has %zu inputs, %s only %zu outputs to feed them: name the links "
			 "with --io", label(pb), n_in, label(pa), n_out);
	*outs = calloc(n_in + 1, sizeof(**outs));
	*ins = calloc(n_in + 1, sizeof(**ins));
	if (!*outs || !*ins)
		tool_die("out of memory");
	for (size_t i = 0; i < n_in; i++) {
		struct graft_value_info o, in;
		graft_model_output(a, i, &o);
		graft_model_input(b, i, &in);
		/* copies: the join changes the models the names are in */
		if (!((*outs)[i] = strdup(o.name)) || !((*ins)[i] = strdup(in.name)))
			tool_die("out of memory");
	}
	return n_in;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *whole;
	struct graft_err err = {0};

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	whole = tool_read_model(cl.models[0]);
	for (int i = 1; i < cl.n_models; i++) {
		struct graft_model *next = tool_read_model(cl.models[i]);
		const char **outs = cl.outs, **ins = cl.ins;
		size_t n_io = cl.n_io;
		int rc;

		if (!n_io)
			n_io = links_by_position(whole, next, cl.models[i - 1], cl.models[i],
						 &outs, &ins);
		rc = graft_model_compose(whole, next, outs, ins, n_io, &err);
		graft_model_free(next);
		if (rc)
			tool_die("%s + %s: %s", i == 1 ? label(cl.models[0]) : "the models before",
				 label(cl.models[i]), err.msg);
		if (outs != cl.outs) {
			for (size_t k = 0; k < n_io; k++) {
				free((char *)outs[k]);
				free((char *)ins[k]);
			}
			free(outs);
			free(ins);
		}
	}
	tool_add_history(whole);
	tool_write_graft(whole, cl.out, NULL, 1, cl.force);
	for (size_t k = 0; k < cl.n_io; k++)
		free((char *)cl.outs[k]);
	free(cl.outs);
	free(cl.ins);
	graft_model_free(whole);
	return 0;
}
