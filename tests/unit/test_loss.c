/*
 * test_loss.c: cross-entropy, binary cross-entropy and MSE against PyTorch 1.13.  The expected numbers were
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

/* torch.nn.BCELoss's numbers: the mean of -(t log p + (1 - t) log(1 - p)), dL/dp = (p - t)
 * / (p (1 - p)) / n; each log at least -100 where p is 0 or 1, the gradient's denominator
 * at least 1e-12; a row correct when every element is on its target's side of 0.5. */
static void test_binary_cross_entropy(void **state)
{
	const float p[6] = {0.9f, 0.2f, 0.5f, 0.7f, 0.0f, 1.0f};
	const float t[6] = {1, 0, 1, 0.25f, 0, 0};
	float g[6];
	double loss, want = 0;
	int64_t correct;
	struct graft_err err = {0};

	(void)state;
	assert_int_equal(graft_loss_binary_cross_entropy(p, t, 6, 3, g, &loss, &correct, &err), 0);
	for (int i = 0; i < 6; i++) {
		double lp = p[i] > 0 ? fmax(log(p[i]), -100) : -100;
		double lq = p[i] < 1 ? fmax(log(1 - (double)p[i]), -100) : -100;
		want -= t[i] * lp + (1 - t[i]) * lq;
		double d = fmax((double)p[i] * (1 - p[i]), 1e-12);
		assert_true(fabs(g[i] - (p[i] - t[i]) / d / 6) <= 1e-6 * fabs(g[i]) + 1e-9);
	}
	assert_true(fabs(loss - want / 6) < 1e-9);
	/* torch.nn.BCELoss()(p, t) and its backward, printed once by PyTorch 1.13 */
	const double torch_grad[6] = {-0.18518519401550293, 0.2083333134651184,
				      -0.3333333432674408, 0.357142835855484, 0.0,
				      166666665984.0};
	assert_true(fabs(loss - 17.002300262451172) < 1e-6);
	for (int i = 0; i < 6; i++)
		assert_true(fabs(g[i] - torch_grad[i]) <= 1e-6 * fabs(torch_grad[i]));
	/* rows: (0.9 vs 1, 0.2 vs 0) right; (0.5 vs 1, 0.7 vs 0.25) wrong; (0 vs 0, 1 vs 0)
	 * wrong */
	assert_int_equal(correct, 1);
	const float bad[2] = {0.5f, 1.5f};
	assert_int_equal(graft_loss_binary_cross_entropy(p, bad, 2, 2, NULL, &loss, NULL, &err),
			 GRAFT_EINVAL);
	assert_non_null(strstr(err.msg, "target 1.5 is not in [0, 1]"));
	assert_int_equal(graft_loss_binary_cross_entropy(p, t, 5, 2, NULL, &loss, NULL, &err),
			 GRAFT_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cross_entropy),
		cmocka_unit_test(test_cross_entropy_refuses),
		cmocka_unit_test(test_cross_entropy_is_stable),
		cmocka_unit_test(test_mse),
		cmocka_unit_test(test_binary_cross_entropy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
