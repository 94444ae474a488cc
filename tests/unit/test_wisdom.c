/*
 * test_wisdom.c: the kernel choices' store (lib/engine/wisdom.c): a missing file is no
 * wisdom, entries round-trip, saving merges with what another process saved meanwhile,
 * other machines' entries are kept and not used, malformed files are refused naming the
 * line; and a convolution net that uses a wisdom times its shape once, computes what the
 * default kernel computes within the tuner's tolerance, and falls back to the default
 * when the wisdom names a kernel this oneDNN does not offer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "testmodel.h"

static char *dir;

static void path_of(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", dir, name);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static struct graft_wisdom *load(const char *path, const char *cpu)
{
	struct graft_wisdom *w;
	struct graft_err err = {0};

	if (graft_wisdom_load(&w, path, cpu, &err))
		fail_msg("%s", err.msg);
	return w;
}

static void counts(const struct graft_wisdom *w, size_t all, size_t machine, size_t added)
{
	size_t a, m, d;

	graft_wisdom_counts(w, &a, &m, &d);
	assert_int_equal(a, all);
	assert_int_equal(m, machine);
	assert_int_equal(d, added);
}

static void save(struct graft_wisdom *w, const char *path)
{
	struct graft_err err = {0};

	if (graft_wisdom_save(w, path, &err))
		fail_msg("%s", err.msg);
}

static void test_round_trip_and_merge(void **state)
{
	char path[512];
	struct graft_err err = {0};
	(void)state;

	path_of(path, sizeof(path), "w1");
	struct graft_wisdom *a = load(path, "Test\tCPU|1"), *b = load(path, "Test\tCPU|1");
	counts(a, 0, 0, 0);
	/* the CPU's name loses the separators it may not hold */
	assert_non_null(strstr(graft_wisdom_machine(a), "Test CPU 1|"));
	assert_int_equal(wisdom_add(a, "shape 1", "direct/default/jit:x", 10.5, 0, &err), 0);
	assert_int_equal(wisdom_add(a, "shape 2", "winograd/any/wino:x", 20, 1e-6, &err), 0);
	assert_int_equal(wisdom_add(b, "shape 3", "direct/any/brgconv:x", 30, 0, &err), 0);
	assert_string_equal(wisdom_find(a, "shape 2"), "winograd/any/wino:x");
	assert_null(wisdom_find(a, "shape 3"));
	counts(a, 2, 2, 2);
	save(a, path);
	counts(a, 2, 2, 0);
	save(b, path);          /* b loaded before a saved: the file must keep a's too */
	struct graft_wisdom *c = load(path, "Test\tCPU|1");
	counts(c, 3, 3, 0);
	assert_string_equal(wisdom_find(c, "shape 1"), "direct/default/jit:x");
	assert_string_equal(wisdom_find(c, "shape 3"), "direct/any/brgconv:x");
	/* another machine sees the entries but uses none of them, and keeps them */
	struct graft_wisdom *o = load(path, "Other CPU");
	counts(o, 3, 0, 0);
	assert_null(wisdom_find(o, "shape 1"));
	assert_int_equal(wisdom_add(o, "shape 1", "direct/any/gemm:x", 5, 0, &err), 0);
	save(o, path);
	struct graft_wisdom *d = load(path, "Test\tCPU|1");
	counts(d, 4, 3, 0);
	assert_string_equal(wisdom_find(d, "shape 1"), "direct/default/jit:x");
	graft_wisdom_free(a);
	graft_wisdom_free(b);
	graft_wisdom_free(c);
	graft_wisdom_free(o);
	graft_wisdom_free(d);
	unlink(path);
	strcat(path, ".lock");
	unlink(path);
}

static void test_nothing_added_writes_nothing(void **state)
{
	char path[512];
	(void)state;

	path_of(path, sizeof(path), "w2");
	struct graft_wisdom *w = load(path, "cpu");
	save(w, path);
	assert_int_equal(access(path, F_OK), -1);
	graft_wisdom_free(w);
}

static void test_malformed_refused(void **state)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
		{"not wisdom\n", "not a graft wisdom file"},
		{"graft-wisdom 1\nkey\tchoice\t1\n", "line 2 is not KEY<tab>CHOICE"},
		{"graft-wisdom 1\nk\tc\t1\t0\nkey\tchoice\tfast\t0\n", "line 3: 'fast' is not a number"},
		{"graft-wisdom 1\nkey\tchoice\t1\t-1\n", "line 2: '-1' is not a number"},
		{"graft-wisdom 1\nkey\tchoice\t1\t0", "line 2 does not end"},
		{"graft-wisdom 1\n\tchoice\t1\t0\n", "line 2 is not KEY"},
	};
	char path[512];
	(void)state;

	path_of(path, sizeof(path), "bad");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct graft_wisdom *w = (void *)1;
		struct graft_err err = {0};
		write_text(path, bad[i].text);
		assert_int_equal(graft_wisdom_load(&w, path, "cpu", &err), GRAFT_EFORMAT);
		assert_null(w);
		if (!strstr(err.msg, bad[i].msg) || !strstr(err.msg, path))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].msg);
	}
	unlink(path);
}

/* in (2, 8, 9, 9) -> 3x3 Conv (16, pad 1, bias) -> Relu -> y */
static struct graft_model *conv_model(void)
{
	Onnx__ModelProto *mp = tm_model(13);
	int64_t xd[] = {2, 8, 9, 9}, wd[] = {16, 8, 3, 3}, bd[] = {16}, yd[] = {2, 16, 9, 9};
	static float w[16 * 8 * 9], b[16];
	Onnx__TensorProto *t;

	for (int i = 0; i < 16 * 8 * 9; i++)
		w[i] = (float)((i * 37 % 23) - 11) / 50.0f;
	for (int i = 0; i < 16; i++)
		b[i] = (float)(i % 5) / 10.0f;
	tm_input(mp, "x", 1, 4, xd);
	tm_output(mp, "y", 1, 4, yd);
	t = tm_tensor("W", 1, 4, wd); tm_raw(t, w, sizeof(w)); tm_initializer(mp, t);
	t = tm_tensor("B", 1, 1, bd); tm_raw(t, b, sizeof(b)); tm_initializer(mp, t);
	Onnx__NodeProto *c = tm_node(mp, "Conv", "conv", (const char *[]){"x", "W", "B", NULL},
				     (const char *[]){"c", NULL});
	int64_t pads[] = {1, 1, 1, 1};
	tm_attr_ints(c, "pads", pads, 4);
	tm_node(mp, "Relu", "relu", (const char *[]){"c", NULL}, (const char *[]){"y", NULL});
	return tm_load(mp);
}

/* conv_model's input x (2, 8, 9, 9), made up. */
static struct graft_array conv_input(void)
{
	static float x[2 * 8 * 81];

	for (int i = 0; i < 2 * 8 * 81; i++)
		x[i] = (float)((i * 29 % 31) - 15) / 16.0f;
	return (struct graft_array){.dtype = GRAFT_FLOAT, .rank = 4, .dims = {2, 8, 9, 9},
				    .data = x, .nbytes = sizeof(x)};
}

/* Runs m once with wisdom w (NULL: the default kernels) into y (2 * 16 * 81 floats). */
static void run_conv(struct graft_model *m, struct graft_wisdom *w, float *y)
{
	struct graft_net_opts o = {.wisdom = w};
	struct graft_array in = conv_input(), out;
	struct graft_net *net;
	struct graft_err err = {0};

	if (graft_net_new_opts(&net, m, &o, &err) || graft_net_run(net, &in, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &out);
	memcpy(y, out.data, 2 * 16 * 81 * sizeof(float));
	graft_net_free(net);
}

static void assert_near(const float *a, const float *b, int n, double tol)
{
	double d = 0, mx = 0;

	for (int i = 0; i < n; i++) {
		d = fmax(d, fabs((double)a[i] - b[i]));
		mx = fmax(mx, fabs((double)b[i]));
	}
	if (d > tol * mx)
		fail_msg("relative difference %g over %g", d / mx, tol);
}

static void test_conv_uses_wisdom(void **state)
{
	static float y0[2 * 16 * 81], y1[2 * 16 * 81], y2[2 * 16 * 81];
	struct graft_model *m = conv_model();
	char path[512], shape[512];
	struct graft_err err = {0};
	(void)state;

	path_of(path, sizeof(path), "conv");
	struct graft_wisdom *w = load(path, "cpu");
	run_conv(m, NULL, y0);
	run_conv(m, w, y1);
	counts(w, 1, 1, 1);             /* the one shape, timed */
	assert_near(y1, y0, 2 * 16 * 81, 1e-5);
	run_conv(m, w, y2);             /* known now: the same kernel, the same result */
	counts(w, 1, 1, 1);
	assert_memory_equal(y1, y2, sizeof(y1));
	/* a choice this oneDNN does not offer: the default kernel, no error, and no timing
	 * (which would have replaced the entry) */
	save(w, path);
	graft_wisdom_free(w);
	w = load(path, "cpu");
	snprintf(shape, sizeof(shape), "conv fwd x=2x8x9x9 w=16x8x3x3 g=1 s=1x1 d=1x1 p=1,1,1,1 "
		 "b=1 act=1:0:0 in=plain keep=0");
	assert_non_null(wisdom_find(w, shape));         /* the key as the kernel makes it */
	assert_int_equal(wisdom_add(w, shape, "direct/any/nosuch:kernel", 1, 0, &err), 0);
	run_conv(m, w, y2);
	assert_string_equal(wisdom_find(w, shape), "direct/any/nosuch:kernel");
	assert_memory_equal(y0, y2, sizeof(y0));
	graft_wisdom_free(w);
	graft_model_free(m);
}

/* One training step's gradients of conv_model (W, B and the input train) for dL/dy =
 * y, with wisdom w (NULL: the default kernels): dW into gw, dx into gx. */
static void train_grads(struct graft_model *m, struct graft_wisdom *w, float *gw, float *gx)
{
	struct graft_net_opts o = {.training = 1, .input_grads = 1, .wisdom = w};
	struct graft_array in = conv_input(), y, g, vx;
	struct graft_net_tensor t;
	struct graft_net *net;
	struct graft_err err = {0};

	if (graft_net_new_opts(&net, m, &o, &err) || graft_net_run(net, &in, 1, &err))
		fail_msg("%s", err.msg);
	graft_net_output(net, 0, &y);
	g = y;
	if (graft_net_backward(net, &g, 1, &err) || graft_net_input_grad(net, 0, &vx, &err))
		fail_msg("%s", err.msg);
	memcpy(gx, vx.data, in.nbytes);
	for (size_t i = 0; i < graft_net_tensor_count(net); i++) {
		graft_net_tensor(net, i, &t);
		if (strcmp(t.name, "W") == 0)
			memcpy(gw, t.grad, t.numel * sizeof(float));
	}
	graft_net_free(net);
}

/* Training: the trainable Conv's forward, backward data and backward weights are each
 * chosen, and the gradients agree with the default kernels'. */
static void test_training_uses_wisdom(void **state)
{
	static float gw0[16 * 8 * 9], gx0[2 * 8 * 81], gw1[16 * 8 * 9], gx1[2 * 8 * 81];
	struct graft_model *m = conv_model();
	char path[512];
	size_t all, machine, added;
	(void)state;

	path_of(path, sizeof(path), "train");
	struct graft_wisdom *w = load(path, "cpu");
	train_grads(m, NULL, gw0, gx0);
	train_grads(m, w, gw1, gx1);
	graft_wisdom_counts(w, &all, &machine, &added);
	assert_int_equal(added, 3);     /* fwd, bwd-data, bwd-weights */
	assert_near(gw1, gw0, 16 * 8 * 9, 1e-5);
	assert_near(gx1, gx0, 2 * 8 * 81, 1e-5);
	graft_wisdom_free(w);
	graft_model_free(m);
}

static int setup(void **state)
{
	(void)state;
	dir = tm_tempdir();
	return 0;
}

static int teardown(void **state)
{
	char path[512];
	(void)state;
	path_of(path, sizeof(path), "conv.lock");
	unlink(path);
	path_of(path, sizeof(path), "conv");
	unlink(path);
	rmdir(dir);
	free(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_and_merge),
		cmocka_unit_test(test_nothing_added_writes_nothing),
		cmocka_unit_test(test_malformed_refused),
		cmocka_unit_test(test_conv_uses_wisdom),
		cmocka_unit_test(test_training_uses_wisdom),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
