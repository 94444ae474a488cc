/*
 * test_graph.c: what surgery asks of a skeleton (lib/model/graph.c): reads are counted in
 * subgraphs too, so that an initializer only an If branch reads by its outer name is
 * neither dropped as unread nor taken for a value nobody needs; producers, graph inputs
 * and outputs, attributes, and stored tensors behind Identity aliases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "surgery/surgery.h"
#include "testmodel.h"

/*
 * x (N,2) -> Add(x, B) -> s;  If(cond) then { Mul(s, W) -> t } else { Identity(s) -> t }
 * -> y.  W only the then-branch reads; Unused nothing reads; Wa = Identity(B), an alias.
 */
static int load(void **state)
{
	Onnx__ModelProto *mp = tm_model(13), *then = tm_model(13), *other = tm_model(13);
	float two[2] = {1, 2};
	int64_t d2[] = {2}, xd[] = {-1, 2};
	uint8_t yes = 1;
	Onnx__TensorProto *t;
	Onnx__NodeProto *n;

	tm_input(mp, "x", 1, 2, xd);
	tm_output(mp, "y", 1, 2, xd);
	t = tm_tensor("B", 1, 1, d2); tm_raw(t, two, sizeof(two)); tm_initializer(mp, t);
	t = tm_tensor("W", 1, 1, d2); tm_raw(t, two, sizeof(two)); tm_initializer(mp, t);
	t = tm_tensor("Unused", 1, 1, d2); tm_raw(t, two, sizeof(two)); tm_initializer(mp, t);
	t = tm_tensor("cond", 9, 0, NULL); tm_raw(t, &yes, 1); tm_initializer(mp, t);
	tm_node(mp, "Identity", "alias", (const char *[]){"B", NULL}, (const char *[]){"Wa", NULL});
	n = tm_node(mp, "Add", "add", (const char *[]){"x", "Wa", NULL}, (const char *[]){"s", NULL});
	tm_output(then, "t", 1, 2, xd);
	tm_node(then, "Mul", "mul", (const char *[]){"s", "W", NULL}, (const char *[]){"t", NULL});
	tm_output(other, "t", 1, 2, xd);
	tm_node(other, "Identity", "same", (const char *[]){"s", NULL}, (const char *[]){"t", NULL});
	n = tm_node(mp, "If", "if", (const char *[]){"cond", NULL}, (const char *[]){"y", NULL});
	tm_attr_graph(n, "then_branch", then);
	tm_attr_graph(n, "else_branch", other);
	tm_attr_int(n, "unknown_but_harmless", 7);
	*state = tm_load(mp);
	return 0;
}

static void test_reads_count_subgraphs(void **state)
{
	const struct graft_model *m = *state;
	const Onnx__GraphProto *g = m->proto->graph;

	assert_int_equal(graph_read_count(g, "W"), 1);          /* the then-branch only */
	assert_int_equal(graph_subgraph_read_count(g, "W"), 1);
	assert_int_equal(graph_read_count(g, "s"), 2);          /* both branches */
	assert_int_equal(graph_subgraph_read_count(g, "s"), 2);
	assert_int_equal(graph_read_count(g, "x"), 1);
	assert_int_equal(graph_subgraph_read_count(g, "x"), 0);
	assert_int_equal(graph_read_count(g, "y"), 1);          /* a graph output */
	assert_int_equal(graph_read_count(g, "Unused"), 0);
	assert_int_equal(graph_producer(g, "s"), 1);
	assert_int_equal(graph_producer(g, "t"), -1);           /* a branch's, not ours */
	assert_int_equal(graph_producer(g, ""), -1);
	assert_true(graph_is_input(g, "x"));
	assert_false(graph_is_input(g, "s"));
	assert_true(graph_is_output(g, "y"));
	assert_true(graph_is_op(g->node[2], "If"));
	assert_false(graph_is_op(g->node[2], "Add"));
	assert_int_equal(graph_attr_int(g->node[2], "unknown_but_harmless", 0), 7);
	assert_int_equal(graph_attr_int(g->node[2], "absent", -3), -3);
	assert_null(graph_attr(g->node[1], "absent"));
	assert_int_equal(model_default_opset(m), 13);
}

static void test_stored_through_aliases(void **state)
{
	const struct graft_model *m = *state;
	long b = graft_model_find_tensor(m, "B");

	assert_true(b >= 0);
	assert_int_equal(model_stored(m, "B"), b);
	assert_int_equal(model_stored(m, "Wa"), b);             /* Identity(B) */
	assert_int_equal(model_stored(m, "s"), -1);             /* computed */
	assert_int_equal(model_stored(m, "nothing"), -1);
	assert_int_equal(model_stored(m, ""), -1);
}

static void test_unread_initializers_dropped_subgraph_reads_kept(void **state)
{
	struct graft_model *m = *state;
	struct graft_err err = {0};

	assert_int_equal(edit_drop_unread_initializers(m, &err), GRAFT_OK);
	assert_true(graft_model_find_tensor(m, "W") >= 0);      /* an If branch reads it */
	assert_true(graft_model_find_tensor(m, "B") >= 0);
	assert_true(graft_model_find_tensor(m, "Unused") < 0);
	for (size_t i = 0; i < m->proto->graph->n_initializer; i++)
		assert_string_not_equal(m->proto->graph->initializer[i]->name, "Unused");
}

/* The default domain's opset: as imported (under "" or "ai.onnx"); 1 without any
 * opset_import (IR 2, as ONNX reads it); 0 when only other domains are imported, and such
 * a model's default-domain node does not run. */
static void test_default_opset(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	struct graft_model *m;
	struct graft_net *net;
	struct graft_err err = {0};
	(void)state;

	tm_input(mp, "x", 1, 1, (int64_t[]){2});
	tm_output(mp, "y", 1, 1, (int64_t[]){2});
	tm_node(mp, "Relu", "r", (const char *[]){"x", NULL}, (const char *[]){"y", NULL});
	assert_int_equal(proto_default_opset(mp), 13);
	free(mp->opset_import[0]->domain);
	mp->opset_import[0]->domain = strdup("ai.onnx");
	assert_int_equal(proto_default_opset(mp), 13);
	free(mp->opset_import[0]->domain);
	mp->opset_import[0]->domain = strdup("com.example");
	assert_int_equal(proto_default_opset(mp), 0);
	{
		size_t len;
		uint8_t *buf = tm_pack(mp, &len);
		if (graft_model_read_memory(&m, buf, len, NULL, "t", &err))
			fail_msg("%s", err.msg);
		free(buf);
		assert_int_equal(model_default_opset(m), 0);
		assert_int_equal(graft_net_new(&net, m, &err), GRAFT_EFORMAT);
		assert_string_equal(err.msg, "node 'r' (op Relu): the model imports no opset of "
				    "the default domain");
		graft_model_free(m);
	}
	mp->n_opset_import = 0;         /* as in IR 2: the opset is 1 */
	mp->ir_version = 2;
	assert_int_equal(proto_default_opset(mp), 1);
	mp->n_opset_import = 1;         /* so that free_unpacked frees the entry */
	onnx__model_proto__free_unpacked(mp, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_opset),
		cmocka_unit_test_setup_teardown(test_reads_count_subgraphs, load, tm_unload),
		cmocka_unit_test_setup_teardown(test_stored_through_aliases, load, tm_unload),
		cmocka_unit_test_setup_teardown(test_unread_initializers_dropped_subgraph_reads_kept,
						load, tm_unload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
