/*
 * test_optim.c: three updates of a 4-element parameter with fixed gradients give what
 * PyTorch 1.13's optimizers give (torch.optim.SGD / Adam / AdamW with the same settings,
 * printed once; torch is not needed to run this test).  Agreement to float rounding:
 * graft follows torch's operation order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <cmocka.h>

#include "graft.h"

static const float grads[3][4] = {{0.5f, -1.0f, 0.25f, 2.0f}, {0.1f, 0.2f, -0.3f, 0.4f},
				  {-1.0f, 0.0f, 1.0f, 0.5f}};

/* Three updates of p from the gradients above; with late > 0, after late steps in which
 * only a second parameter was updated: p's state starts at its own first update (Adam's
 * bias correction counts p's updates, as PyTorch's lazily made state does), so the
 * result is the same. */
static void run_late(const struct graft_optim_opts *o, const double *want, int late)
{
	float p[4] = {1.0f, -0.5f, 0.25f, 2.0f}, q[4] = {0.5f, 0.5f, -1.0f, 1.0f};
	uint64_t n[2] = {4, 4};
	struct graft_optim *opt;
	struct graft_err err = {0};

	assert_int_equal(graft_optim_new(&opt, o, 2, n, &err), 0);
	for (int s = 0; s < late; s++) {
		graft_optim_begin_step(opt);
		graft_optim_update(opt, 1, q, grads[s % 3], o->lr);
	}
	for (int s = 0; s < 3; s++) {
		graft_optim_begin_step(opt);
		graft_optim_update(opt, 0, p, grads[s], o->lr);
		graft_optim_update(opt, 1, q, grads[s], o->lr);
	}
	assert_int_equal(graft_optim_steps(opt), late + 3);
	assert_int_equal(graft_optim_param_steps(opt, 0), 3);
	assert_int_equal(graft_optim_param_steps(opt, 1), late + 3);
	for (int i = 0; i < 4; i++)
		if (fabs(p[i] - want[i]) > 2e-7 * fmax(1, fabs(want[i])))
			fail_msg("p[%d] = %.9g, torch %.9g (after %d steps of another)", i, p[i],
				 want[i], late);
	graft_optim_free(opt);
}

static void run(const struct graft_optim_opts *o, const double *want)
{
	run_late(o, want, 0);
	run_late(o, want, 5);
}

static void test_sgd(void **state)
{
	struct graft_optim_opts o;
	(void)state;

	graft_optim_defaults(&o, GRAFT_OPTIM_SGD);
	o.lr = 0.1;
	o.momentum = 0.9;
	o.weight_decay = 0.01;
	run(&o, (const double[]){0.9400947690010071, -0.2645573019981384, 0.13791365921497345,
				 1.3215893507003784});
	o.nesterov = 1;
	run(&o, (const double[]){0.9834655523300171, -0.20723937451839447, 0.05346520245075226,
				 1.0949324369430542});
	o.nesterov = 0;
	o.weight_decay = 0;
	o.dampening = 0.5;
	run(&o, (const double[]){0.9049999713897705, -0.24800002574920654, 0.16075000166893005,
				 1.3949998617172241});
}

static void test_adam(void **state)
{
	struct graft_optim_opts o;
	(void)state;

	graft_optim_defaults(&o, GRAFT_OPTIM_ADAM);
	assert_true(o.weight_decay == 0 && o.beta1 == 0.9 && o.beta2 == 0.999 && o.eps == 1e-8);
	o.lr = 0.01;
	o.weight_decay = 0.01;
	run(&o, (const double[]){0.984611451625824, -0.4808230698108673, 0.23576422035694122,
				 1.9743096828460693});
	graft_optim_defaults(&o, GRAFT_OPTIM_ADAMW);
	assert_true(o.weight_decay == 1e-2);    /* torch's AdamW default */
	o.lr = 0.01;
	run(&o, (const double[]){0.984546959400177, -0.48079201579093933, 0.23580694198608398,
				 1.9738212823867798});
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sgd),
		cmocka_unit_test(test_adam),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
