/*
 * test_loss.c: cross-entropy and MSE against PyTorch 1.13.  The expected numbers were
 * printed by torch.nn.functional.cross_entropy(z, y, label_smoothing=s) and its backward
 * for the logits below (a one-off run; torch is not needed to run this test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "graft.h"

static const float z[6] = {1.0f, -2.0f, 0.5f, 0.25f, 3.0f, -1.0f};
static const int64_t y[2] = {2, 1};

static void check(double smoothing, double want_loss, const double *want_grad)
{
	float grad[6];
	double loss;
	int64_t correct;
	struct graft_err err = {0};

	assert_int_equal(graft_loss_cross_entropy(z, y, 2, 3, smoothing, grad, &loss, &correct,
						  &err), 0);
	assert_true(fabs(loss - want_loss) < 1e-6);
	for (int i = 0; i < 6; i++)
		assert_true(fabs(grad[i] - want_grad[i]) < 1e-7);
	assert_int_equal(correct, 1);           /* row 0 argmax is 0, row 1 is 1 */
}

static void test_cross_entropy(void **state)
{
	const double g0[6] = {0.30187445878982544, 0.015029443427920341, -0.31690388917922974,
			      0.029534878209233284, -0.0379967987537384, 0.00846188422292471};
	const double g1[6] = {0.2852077782154083, -0.0016372241079807281, -0.2835705578327179,
			      0.012868210673332214, -0.0046634674072265625, -0.00820478331297636};
	(void)state;
	check(0.0, 0.5418165922164917, g0);
	check(0.1, 0.6876499652862549, g1);
}

static void test_cross_entropy_refuses(void **state)
{
	const int64_t bad[2] = {2, 3};
	struct graft_err err = {0};
	double loss;
	(void)state;

	assert_int_equal(graft_loss_cross_entropy(z, bad, 2, 3, 0, NULL, &loss, NULL, &err),
			 GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "label 3"));
	assert_int_equal(graft_loss_cross_entropy(z, y, 2, 3, 1.5, NULL, &loss, NULL, &err),
			 GRAFT_EINVAL);
}

static void test_cross_entropy_is_stable(void **state)
{
	const float big[3] = {1000.0f, -1000.0f, 999.0f};
	const int64_t label = 2;
	float grad[3];
	double loss;
	struct graft_err err = {0};
	(void)state;

	assert_int_equal(graft_loss_cross_entropy(big, &label, 1, 3, 0, grad, &loss, NULL, &err),
			 0);
	assert_true(isfinite(loss) && fabs(loss - 1.3132616875182228) < 1e-9);
	assert_true(isfinite(grad[0]) && isfinite(grad[1]) && isfinite(grad[2]));
}

static void test_mse(void **state)
{
	const float p[3] = {1, 2, 3}, t[3] = {1.5f, 2, 1};
	float grad[3];
	double loss;
	struct graft_err err = {0};
	(void)state;

	assert_int_equal(graft_loss_mse(p, t, 3, grad, &loss, &err), 0);
	assert_true(fabs(loss - (0.25 + 4) / 3) < 1e-12);
	assert_true(fabs(grad[0] - 2 * -0.5 / 3) < 1e-7 && grad[1] == 0 &&
		    fabs(grad[2] - 2 * 2.0 / 3) < 1e-7);
	assert_int_equal(graft_loss_mse(p, t, 0, grad, &loss, &err), GRAFT_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cross_entropy),
		cmocka_unit_test(test_cross_entropy_refuses),
		cmocka_unit_test(test_cross_entropy_is_stable),
		cmocka_unit_test(test_mse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
