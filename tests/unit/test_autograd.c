/*
 * test_autograd.c: the executor's training side, apart from any op's arithmetic: which
 * tensors get gradients, how contributions from several readers add up, that frozen
 * tensors and the part of the graph before the lowest trainable parameter get none, and
 * that parameters are the net's own copies.  Identity is the op here (its backward is a
 * copy), so every expected gradient is exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "gradcheck.h"
#include "testmodel.h"

/*
 * x (2,3) -> Identity -> a, x -> Identity -> b: outputs a and b.  dL/dx = ga + gb.
 */
static void test_two_readers_add_up(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t d[] = {2, 3};
	float x[6] = {1, 2, 3, 4, 5, 6}, ga[6], gb[6];
	(void)state;

	tm_input(mp, "x", 1, 2, d);
	tm_output(mp, "a", 1, 2, d);
	tm_output(mp, "b", 1, 2, d);
	tm_node(mp, "Identity", "ia", (const char *[]){"x", NULL}, (const char *[]){"a", NULL});
	tm_node(mp, "Identity", "ib", (const char *[]){"x", NULL}, (const char *[]){"b", NULL});
	struct graft_model *m = tm_load(mp);
	struct graft_net_opts o = {.training = 1, .input_grads = 1};
	struct graft_net *net;
	struct graft_err err = {0};
	struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 2, .dims = {2, 3}, .data = x,
				 .nbytes = sizeof(x)}, g[2], gx;

	for (int i = 0; i < 6; i++) {
		ga[i] = (float)i;
		gb[i] = (float)(10 * i);
	}
	g[0] = g[1] = in;
	g[0].data = ga;
	g[1].data = gb;
	if (graft_net_new_opts(&net, m, &o, &err) || graft_net_run(net, &in, 1, &err) ||
	    graft_net_backward(net, g, 2, &err) || graft_net_input_grad(net, 0, &gx, &err))
		fail_msg("%s", err.msg);
	for (int i = 0; i < 6; i++)
		assert_true(((float *)gx.data)[i] == 11.0f * (float)i);
	/* Twice: the second backward overwrites rather than adds to the first. */
	g[1].data = NULL;                       /* and a missing gradient reads as zero */
	if (graft_net_run(net, &in, 1, &err) || graft_net_backward(net, g, 2, &err) ||
	    graft_net_input_grad(net, 0, &gx, &err))
		fail_msg("%s", err.msg);
	for (int i = 0; i < 6; i++)
		assert_true(((float *)gx.data)[i] == (float)i);
	assert_int_equal(graft_net_backward(net, g, 1, &err), GRAFT_EINVAL);
	graft_net_free(net);
	graft_model_free(m);
}

/*
 * W (2 elements: the importer keeps single elements constant) is a parameter because a
 * Conv reads it; an Identity of it is an output too.  Without input gradients, only W has one; frozen,
 * it has none, and the region is empty (backward runs nothing).
 */
static Onnx__ModelProto *param_model(void)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {1, 1, 2, 2}, yd[] = {1, 2, 2, 2}, wd[] = {2, 1, 1, 1};
	float w[2] = {3, 4};
	Onnx__TensorProto *t;

	tm_input(mp, "x", 1, 4, xd);
	tm_output(mp, "y", 1, 4, yd);
	tm_output(mp, "wy", 1, 4, wd);
	t = tm_tensor("W", 1, 4, wd);
	tm_raw(t, w, sizeof(w));
	tm_initializer(mp, t);
	tm_node(mp, "Conv", "conv", (const char *[]){"x", "W", NULL}, (const char *[]){"y", NULL});
	tm_node(mp, "Identity", "iw", (const char *[]){"W", NULL}, (const char *[]){"wy", NULL});
	return mp;
}

static void test_parameter_copy_and_gradient(void **state)
{
	struct graft_model *m = tm_load(param_model());
	struct graft_net_opts o = {.training = 1};
	struct graft_net *net;
	struct graft_err err = {0};
	float x[4] = {1, 2, 3, 4}, gw[2] = {5, 6};
	struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {1, 1, 2, 2}, .data = x,
				 .nbytes = sizeof(x)}, g[2], y;
	struct graft_net_tensor t;
	struct graft_tensor mt;
	(void)state;

	memset(g, 0, sizeof(g));
	g[1] = (struct graft_array){.dtype = GRAFT_FLOAT, .rank = 4, .dims = {2, 1, 1, 1},
				    .data = gw, .nbytes = sizeof(gw)};
	g[0].data = NULL;
	if (graft_net_new_opts(&net, m, &o, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(graft_net_tensor_count(net), 1);
	graft_net_tensor(net, 0, &t);
	assert_string_equal(t.name, "W");
	assert_int_equal(t.is_param, 1);
	assert_int_equal(t.numel, 2);
	/* A model read into memory of its own is trained in place (a mapped file's tensors
	 * would be copied): what an optimizer writes is the model's tensor, and the next
	 * run reads it. */
	graft_model_tensor(m, 0, &mt);
	assert_ptr_equal(t.data, mt.data);
	t.data[0] = 2;
	graft_model_tensor(m, 0, &mt);
	assert_true(((const float *)mt.data)[0] == 2.0f);
	/* Before Conv has a backward, the plan must name it; after, W's gradient is the
	 * Identity's (5, 6) plus Conv's, zero here since dL/dy is zero. */
	int rc = graft_net_run(net, &in, 1, &err);
	if (rc == 0) {
		graft_net_output(net, 1, &y);
		assert_true(((float *)y.data)[0] == 2.0f);     /* the updated copy is read */
		g[0] = (struct graft_array){.dtype = GRAFT_FLOAT, .rank = 4, .dims = {1, 2, 2, 2},
					    .data = NULL, .nbytes = 2 * sizeof(x)};
		if (graft_net_backward(net, g, 2, &err))
			fail_msg("%s", err.msg);
		graft_net_tensor(net, 0, &t);
		assert_non_null(t.grad);
		assert_true(t.grad[0] == 5.0f && t.grad[1] == 6.0f);
	} else {
		assert_int_equal(rc, GRAFT_EUNSUPPORTED);
		assert_non_null(strstr(err.msg, "Conv"));
	}
	graft_net_free(net);
	graft_model_free(m);
}

static void test_frozen_has_no_region(void **state)
{
	struct graft_model *m = tm_load(param_model());
	struct graft_net_opts o = {.training = 1};
	struct graft_net *net;
	struct graft_err err = {0};
	float x[4] = {1, 2, 3, 4};
	struct graft_array in = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {1, 1, 2, 2}, .data = x,
				 .nbytes = sizeof(x)}, g[2];
	(void)state;

	memset(g, 0, sizeof(g));
	assert_int_equal(graft_model_set_trainable(m, 0, 0, &err), 0);
	if (graft_net_new_opts(&net, m, &o, &err) || graft_net_run(net, &in, 1, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(graft_net_tensor_count(net), 0);
	for (size_t i = 0; i < net->n_nodes; i++)
		assert_int_equal(net->nodes[i].needs_grad, 0);
	assert_int_equal(graft_net_backward(net, g, 2, &err), 0);
	graft_net_free(net);
	graft_model_free(m);
}

/*
 * x -> Conv -> c -> Relu -> y: in a training net the Relu overwrites c in place (the
 * Conv's backward never reads c), so y and c share one buffer; the output still equals
 * an inference net's, and a second Relu reading c would have stopped it.
 */
static void test_relu_in_place(void **state)
{
	Onnx__ModelProto *mp = param_model();
	int64_t yd[] = {1, 2, 2, 2};
	(void)state;

	tm_output(mp, "r", 1, 4, yd);
	tm_node(mp, "Relu", "relu", (const char *[]){"y", NULL}, (const char *[]){"r", NULL});
	/* y is also a graph output in param_model: drop that output so Relu is its one
	 * reader */
	Onnx__GraphProto *g = mp->graph;
	protobuf_c_message_free_unpacked(&g->output[0]->base, NULL);
	memmove(g->output, g->output + 1, (g->n_output - 1) * sizeof(*g->output));
	g->n_output--;
	struct graft_model *m = tm_load(mp);
	struct graft_net_opts o = {.training = 1};
	struct graft_net *tn, *in;
	struct graft_err err = {0};
	float x[4] = {1, -2, 3, -4};
	struct graft_array a = {.dtype = GRAFT_FLOAT, .rank = 4, .dims = {1, 1, 2, 2}, .data = x,
				.nbytes = sizeof(x)}, yt, yi;

	if (graft_net_new_opts(&tn, m, &o, &err) || graft_net_new(&in, m, &err) ||
	    graft_net_run(tn, &a, 1, &err) || graft_net_run(in, &a, 1, &err))
		fail_msg("%s", err.msg);
	int found = 0;
	for (size_t i = 0; i < tn->n_nodes; i++)
		if (strcmp(tn->nodes[i].op->name, "Relu") == 0) {
			found = 1;
			assert_int_equal(tn->nodes[i].inplace, 1);
			assert_ptr_equal(tn->nodes[i].out[0]->data, tn->nodes[i].in[0]->data);
		}
	assert_true(found);
	graft_net_output(tn, 1, &yt);
	graft_net_output(in, 1, &yi);
	assert_memory_equal(yt.data, yi.data, yi.nbytes);
	graft_net_free(tn);
	graft_net_free(in);
	graft_model_free(m);
}

/* The harness itself: Identity's backward passes a finite-difference check. */
static void test_gradcheck_identity(void **state)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t d[] = {3, 4};
	size_t checked = 0;
	(void)state;

	tm_input(mp, "x", 1, 2, d);
	tm_output(mp, "y", 1, 2, d);
	tm_node(mp, "Identity", "i", (const char *[]){"x", NULL}, (const char *[]){"y", NULL});
	struct graft_array x = gradcheck_input(2, d, -1, 1, 1);
	gradcheck(mp, &x, 1, NULL, &checked);
	assert_int_equal(checked, 12);
	free(x.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_readers_add_up),
		cmocka_unit_test(test_parameter_copy_and_gradient),
		cmocka_unit_test(test_frozen_has_no_region),
		cmocka_unit_test(test_relu_in_place),
		cmocka_unit_test(test_gradcheck_identity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
