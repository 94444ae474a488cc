/*
 * graft-info: what is inside a model (.graft or ONNX): producer, opsets, inputs and
 * outputs with shapes, node counts by op type, stored tensors by role with trainable
 * and frozen counts, and the history of graft tools applied.  Text for people, --json
 * for scripts.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-info [IN|-] [--json] [--nodes] [--tensors]\n"
	"Describes a model (.graft or ONNX).\n"
	"      --json      one JSON object instead of text\n"
	"      --nodes     list every node of the main graph\n"
	"      --tensors   list every stored tensor (role, trainable, shape, bytes)\n"
	"  -h, --help      show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *in;
	int json, nodes, tensors;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'}, {"nodes", no_argument, NULL, 'n'},
		{"tensors", no_argument, NULL, 't'}, TOOL_COMMON_LONGOPTS, {0},
	};
	int c;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
		switch (c) {
		case 'j': cl->json = 1; break;
		case 'n': cl->nodes = 1; break;
		case 't': cl->tensors = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	cl->in = optind < argc ? argv[optind] : NULL;
}

/* ---- output helpers: one set of facts, printed as text or JSON ---- */

static void print_shape_text(const struct graft_value_info *vi)
{
	if (vi->kind != 't') {
		printf("%s", vi->kind ? "(non-tensor)" : "(no type)");
		return;
	}
	printf("%s ", graft_dtype_name(vi->dtype) ? graft_dtype_name(vi->dtype) : "?");
	if (vi->rank < 0) {
		printf("(unknown shape)");
		return;
	}
	putchar('[');
	for (int j = 0; j < vi->rank; j++) {
		if (j)
			putchar(',');
		if (vi->dims[j] >= 0)
			printf("%" PRId64, vi->dims[j]);
		else
			printf("%s", vi->dim_params[j] && *vi->dim_params[j] ? vi->dim_params[j] : "?");
	}
	putchar(']');
}

static void print_shape_json(const struct graft_value_info *vi)
{
	printf("{\"name\":");
	tool_json_string(stdout, vi->name);
	printf(",\"dtype\":");
	if (vi->kind == 't' && graft_dtype_name(vi->dtype))
		tool_json_string(stdout, graft_dtype_name(vi->dtype));
	else
		printf("null");
	printf(",\"shape\":");
	if (vi->kind != 't' || vi->rank < 0) {
		printf("null}");
		return;
	}
	putchar('[');
	for (int j = 0; j < vi->rank; j++) {
		if (j)
			putchar(',');
		if (vi->dims[j] >= 0)
			printf("%" PRId64, vi->dims[j]);
		else if (vi->dim_params[j] && *vi->dim_params[j])
			tool_json_string(stdout, vi->dim_params[j]);
		else
			printf("null");
	}
	printf("]}");
}

struct op_count {
	char *op;       /* owned */
	size_t n;
};

static void ops_free(struct op_count *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i].op);
	free(c);
}

static int by_count(const void *a, const void *b)
{
	const struct op_count *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	return strcmp(x->op, y->op);
}

/* Node counts by op type (domain-qualified outside the default domain), most first. */
static struct op_count *count_ops(const struct graft_model *m, size_t *n_ops)
{
	size_t n = graft_model_node_count(m), k = 0;
	struct op_count *c = calloc(n + 1, sizeof(*c));

	if (!c)
		tool_die("out of memory");
	for (size_t i = 0; i < n; i++) {
		struct graft_node node;
		graft_model_node(m, i, &node);
		int qualified = *node.domain && strcmp(node.domain, "ai.onnx") != 0;
		char *label = malloc(strlen(node.domain) + strlen(node.op_type) + 2);
		if (!label)
			tool_die("out of memory");
		sprintf(label, "%s%s%s", qualified ? node.domain : "", qualified ? "." : "",
			node.op_type);
		size_t j;
		for (j = 0; j < k && strcmp(c[j].op, label) != 0; j++)
			;
		if (j == k) {
			c[k].op = label;
			k++;
		} else {
			free(label);
		}
		c[j].n++;
	}
	qsort(c, k, sizeof(*c), by_count);
	*n_ops = k;
	return c;
}

struct role_sum {
	size_t tensors, trainable_tensors;
	uint64_t values, trainable_values, bytes;
};

#define N_ROLES 5

static void sum_roles(const struct graft_model *m, struct role_sum sums[N_ROLES])
{
	memset(sums, 0, N_ROLES * sizeof(*sums));
	for (size_t i = 0; i < graft_model_tensor_count(m); i++) {
		struct graft_tensor t;
		graft_model_tensor(m, i, &t);
		unsigned r = (unsigned)t.role < N_ROLES ? t.role : GRAFT_ROLE_CONSTANT;
		struct role_sum *s = &sums[r];
		s->tensors++;
		s->values += t.numel;
		s->bytes += t.nbytes;
		if (t.trainable) {
			s->trainable_tensors++;
			s->trainable_values += t.numel;
		}
	}
}

static void shape_string(const struct graft_tensor *t, char *buf, size_t size)
{
	size_t len = 0;
	len += (size_t)snprintf(buf + len, size - len, "[");
	for (int j = 0; j < t->rank && len < size; j++)
		len += (size_t)snprintf(buf + len, size - len, "%s%" PRId64, j ? "," : "", t->dims[j]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

static void print_text(const struct graft_model *m, const struct cmdline *cl)
{
	struct graft_model_meta meta;
	struct graft_value_info vi;
	struct role_sum sums[N_ROLES];
	size_t n_ops;
	struct op_count *ops = count_ops(m, &n_ops);

	graft_model_meta(m, &meta);
	printf("format:     %s\n", graft_model_from_archive(m) ? ".graft" : "ONNX");
	printf("ir_version: %" PRId64 "\n", meta.ir_version);
	printf("producer:   %s%s%s\n", *meta.producer_name ? meta.producer_name : "(none)",
	       *meta.producer_version ? " " : "", meta.producer_version);
	printf("opsets:    ");
	for (size_t i = 0; i < meta.n_opsets; i++) {
		const char *domain;
		int64_t version;
		graft_model_opset(m, i, &domain, &version);
		printf(" %s %" PRId64 "%s", *domain ? domain : "ai.onnx", version,
		       i + 1 < meta.n_opsets ? "," : "");
	}
	printf("\ngraph:      %s\n", *meta.graph_name ? meta.graph_name : "(unnamed)");
	if (meta.n_functions)
		printf("functions:  %zu\n", meta.n_functions);
	for (size_t i = 0; i < meta.n_metadata; i++) {
		const char *k, *v;
		graft_model_metadata(m, i, &k, &v);
		/* a value of several lines (provenance: one a tool) indented under its key */
		printf("metadata:   %s = ", k);
		for (const char *p = v; *p; p++) {
			putchar(*p);
			if (*p == '\n')
				printf("              ");
		}
		putchar('\n');
	}
	printf("inputs:\n");
	for (size_t i = 0; i < graft_model_input_count(m); i++) {
		graft_model_input(m, i, &vi);
		printf("  %-24s ", vi.name);
		print_shape_text(&vi);
		putchar('\n');
	}
	printf("outputs:\n");
	for (size_t i = 0; i < graft_model_output_count(m); i++) {
		graft_model_output(m, i, &vi);
		printf("  %-24s ", vi.name);
		print_shape_text(&vi);
		putchar('\n');
	}
	printf("nodes:      %zu", graft_model_node_count(m));
	for (size_t i = 0; i < n_ops; i++)
		printf("%s%s %zu", i ? ", " : " (", ops[i].op, ops[i].n);
	printf("%s\n", n_ops ? ")" : "");
	sum_roles(m, sums);
	for (int r = 0; r < N_ROLES; r++) {
		if (!sums[r].tensors)
			continue;
		printf("%-11s %zu tensor%s, %" PRIu64 " values, %" PRIu64 " bytes",
		       r == 0 ? "parameters:" : r == 1 ? "buffers:" : r == 2 ? "constants:" :
		       r == 3 ? "data:" : "state:",
		       sums[r].tensors, sums[r].tensors == 1 ? "" : "s", sums[r].values,
		       sums[r].bytes);
		if (r == GRAFT_ROLE_PARAMETER)
			printf("; trainable %zu (%" PRIu64 " values), frozen %zu (%" PRIu64 " values)",
			       sums[r].trainable_tensors, sums[r].trainable_values,
			       sums[r].tensors - sums[r].trainable_tensors,
			       sums[r].values - sums[r].trainable_values);
		putchar('\n');
	}
	if (graft_model_alias_count(m)) {
		size_t by_role[4] = {0};
		for (size_t i = 0; i < graft_model_alias_count(m); i++) {
			struct graft_alias a;
			graft_model_alias(m, i, &a);
			by_role[a.role & 3]++;
		}
		printf("aliases:    %zu Identity alias%s of stored tensors (%zu used as parameters, "
		       "%zu as buffers, %zu as constants)\n", graft_model_alias_count(m),
		       graft_model_alias_count(m) == 1 ? "" : "es", by_role[0], by_role[1], by_role[2]);
	}
	if (graft_model_history_count(m)) {
		printf("history:\n");
		for (size_t i = 0; i < graft_model_history_count(m); i++)
			printf("  %s\n", graft_model_history(m, i));
	}
	if (cl->nodes) {
		printf("node list:\n");
		for (size_t i = 0; i < graft_model_node_count(m); i++) {
			struct graft_node n;
			graft_model_node(m, i, &n);
			printf("  %5zu %-20s %-24s", i, n.op_type, *n.name ? n.name : "-");
			for (size_t k = 0; k < n.n_inputs; k++)
				printf("%s%s", k ? ", " : " ", *n.inputs[k] ? n.inputs[k] : "(none)");
			printf(" ->");
			for (size_t k = 0; k < n.n_outputs; k++)
				printf("%s%s", k ? ", " : " ", n.outputs[k]);
			putchar('\n');
		}
	}
	if (cl->tensors) {
		char shape[256];
		printf("tensor list:\n");
		for (size_t i = 0; i < graft_model_tensor_count(m); i++) {
			struct graft_tensor t;
			graft_model_tensor(m, i, &t);
			shape_string(&t, shape, sizeof(shape));
			printf("  %-40s %-8s %-20s %-9s %-9s %zu%s\n", t.name,
			       graft_dtype_name(t.dtype), shape, graft_role_name(t.role),
			       t.role != GRAFT_ROLE_PARAMETER ? "-" : t.trainable ? "trainable" : "frozen",
			       t.nbytes, t.source == GRAFT_SOURCE_DETACHED ? " detached" : "");
		}
		for (size_t i = 0; i < graft_model_alias_count(m); i++) {
			struct graft_alias a;
			graft_model_alias(m, i, &a);
			printf("  %-40s alias of %s, used as a %s\n", a.name, a.tensor_name,
			       graft_role_name(a.role));
		}
	}
	ops_free(ops, n_ops);
}

static void print_json(const struct graft_model *m, const struct cmdline *cl)
{
	struct graft_model_meta meta;
	struct graft_value_info vi;
	struct role_sum sums[N_ROLES];
	size_t n_ops;
	struct op_count *ops = count_ops(m, &n_ops);

	graft_model_meta(m, &meta);
	printf("{\"format\":\"%s\",\"ir_version\":%" PRId64 ",\"producer_name\":",
	       graft_model_from_archive(m) ? "graft" : "onnx", meta.ir_version);
	tool_json_string(stdout, meta.producer_name);
	printf(",\"producer_version\":");
	tool_json_string(stdout, meta.producer_version);
	printf(",\"graph_name\":");
	tool_json_string(stdout, meta.graph_name);
	printf(",\"opsets\":{");
	for (size_t i = 0; i < meta.n_opsets; i++) {
		const char *domain;
		int64_t version;
		graft_model_opset(m, i, &domain, &version);
		if (i)
			putchar(',');
		tool_json_string(stdout, *domain ? domain : "ai.onnx");
		printf(":%" PRId64, version);
	}
	printf("},\"functions\":%zu,\"metadata\":{", meta.n_functions);
	for (size_t i = 0; i < meta.n_metadata; i++) {
		const char *k, *v;
		graft_model_metadata(m, i, &k, &v);
		if (i)
			putchar(',');
		tool_json_string(stdout, k);
		putchar(':');
		tool_json_string(stdout, v);
	}
	printf("},\"inputs\":[");
	for (size_t i = 0; i < graft_model_input_count(m); i++) {
		graft_model_input(m, i, &vi);
		if (i)
			putchar(',');
		print_shape_json(&vi);
	}
	printf("],\"outputs\":[");
	for (size_t i = 0; i < graft_model_output_count(m); i++) {
		graft_model_output(m, i, &vi);
		if (i)
			putchar(',');
		print_shape_json(&vi);
	}
	printf("],\"node_count\":%zu,\"ops\":{", graft_model_node_count(m));
	for (size_t i = 0; i < n_ops; i++) {
		if (i)
			putchar(',');
		tool_json_string(stdout, ops[i].op);
		printf(":%zu", ops[i].n);
	}
	printf("}");
	sum_roles(m, sums);
	for (int r = 0; r < N_ROLES; r++)
		printf(",\"%s\":{\"tensors\":%zu,\"values\":%" PRIu64 ",\"bytes\":%" PRIu64
		       ",\"trainable_tensors\":%zu,\"trainable_values\":%" PRIu64 "}",
		       r == 0 ? "parameters" : r == 1 ? "buffers" : r == 2 ? "constants" :
		       r == 3 ? "data" : "state",
		       sums[r].tensors, sums[r].values, sums[r].bytes, sums[r].trainable_tensors,
		       sums[r].trainable_values);
	printf(",\"history\":[");
	for (size_t i = 0; i < graft_model_history_count(m); i++) {
		if (i)
			putchar(',');
		tool_json_string(stdout, graft_model_history(m, i));
	}
	putchar(']');
	if (cl->nodes) {
		printf(",\"nodes\":[");
		for (size_t i = 0; i < graft_model_node_count(m); i++) {
			struct graft_node n;
			graft_model_node(m, i, &n);
			printf("%s{\"name\":", i ? "," : "");
			tool_json_string(stdout, n.name);
			printf(",\"op_type\":");
			tool_json_string(stdout, n.op_type);
			printf(",\"domain\":");
			tool_json_string(stdout, n.domain);
			printf(",\"inputs\":[");
			for (size_t k = 0; k < n.n_inputs; k++) {
				if (k)
					putchar(',');
				tool_json_string(stdout, n.inputs[k]);
			}
			printf("],\"outputs\":[");
			for (size_t k = 0; k < n.n_outputs; k++) {
				if (k)
					putchar(',');
				tool_json_string(stdout, n.outputs[k]);
			}
			printf("]}");
		}
		putchar(']');
	}
	if (cl->tensors) {
		printf(",\"tensors\":[");
		for (size_t i = 0; i < graft_model_tensor_count(m); i++) {
			struct graft_tensor t;
			graft_model_tensor(m, i, &t);
			printf("%s{\"name\":", i ? "," : "");
			tool_json_string(stdout, t.name);
			printf(",\"dtype\":\"%s\",\"shape\":[", graft_dtype_name(t.dtype));
			for (int j = 0; j < t.rank; j++)
				printf("%s%" PRId64, j ? "," : "", t.dims[j]);
			printf("],\"role\":\"%s\",\"trainable\":%s,\"source\":\"%s\",\"bytes\":%zu}",
			       graft_role_name(t.role), t.trainable ? "true" : "false",
			       t.source == GRAFT_SOURCE_CONSTANT ? "constant"
			       : t.source == GRAFT_SOURCE_DETACHED ? "detached" : "initializer",
			       t.nbytes);
		}
		printf("],\"aliases\":[");
		for (size_t i = 0; i < graft_model_alias_count(m); i++) {
			struct graft_alias a;
			graft_model_alias(m, i, &a);
			printf("%s{\"name\":", i ? "," : "");
			tool_json_string(stdout, a.name);
			printf(",\"of\":");
			tool_json_string(stdout, a.tensor_name);
			printf(",\"role\":\"%s\"}", graft_role_name(a.role));
		}
		putchar(']');
	}
	printf("}\n");
	ops_free(ops, n_ops);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	m = tool_read_model(cl.in);
	if (cl.json)
		print_json(m, &cl);
	else
		print_text(m, &cl);
	graft_model_free(m);
	if (fflush(stdout) || ferror(stdout))
		tool_die("<stdout>: write failed");
	return 0;
}
