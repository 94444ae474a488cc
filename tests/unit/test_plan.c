/*
 * test_plan.c: graft-plan's decision on constructed statistics: the Gaussian distance
 * (zero for equal statistics, symmetric, growing with the shift), and the case and the
 * number of blocks to train for each combination of size and similarity.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <cmocka.h>

#include "graft.h"

static void test_distance(void **state)
{
	(void)state;
	assert_true(fabs(graft_plan_gauss_distance(0.3, 2, 0.3, 2)) < 1e-12);
	assert_true(fabs(graft_plan_gauss_distance(0, 1, 1, 4) -
			 graft_plan_gauss_distance(1, 4, 0, 1)) < 1e-12);
	double a = graft_plan_gauss_distance(0, 1, 0.5, 1), b = graft_plan_gauss_distance(0, 1, 2, 1);
	assert_true(a > 0 && b > a);
	/* a mean shift of d standard deviations: d^2 / 2 */
	assert_true(fabs(b - 2.0) < 1e-12);
	/* a variance ratio alone */
	assert_true(fabs(graft_plan_gauss_distance(0, 4, 0, 1) - (4.0 / 4 + 1.0 / 16 - 0.5)) <
		    1e-12);
}

static struct graft_plan decide(double per_class, double similarity, const char *method,
				size_t blocks)
{
	struct graft_plan p = {0};
	p.samples_per_class = per_class;
	p.similarity = similarity;
	p.method = method;
	p.blocks = blocks;
	graft_plan_decide(&p);
	return p;
}

static void test_cases(void **state)
{
	struct graft_plan p;
	(void)state;

	p = decide(20, 0.9, "batchnorm", 10);
	assert_int_equal(p.case_no, 1);
	assert_int_equal(p.train_blocks, 1);            /* the head only */
	p = decide(20, 0.1, "batchnorm", 10);
	assert_int_equal(p.case_no, 2);
	assert_int_equal(p.train_blocks, 4);            /* the top third, never everything */
	p = decide(5000, 0.9, "batchnorm", 10);
	assert_int_equal(p.case_no, 3);
	assert_int_equal(p.train_blocks, 5);            /* the upper half */
	p = decide(5000, 0.1, "batchnorm", 10);
	assert_int_equal(p.case_no, 4);
	assert_int_equal(p.train_blocks, 0);            /* everything */
	/* the thresholds themselves */
	assert_int_equal(decide(GRAFT_PLAN_SMALL_PER_CLASS, 0.9, "batchnorm", 10).small, 0);
	assert_int_equal(decide(GRAFT_PLAN_SMALL_PER_CLASS - 1, 0.9, "batchnorm", 10).small, 1);
	assert_int_equal(decide(20, GRAFT_PLAN_SIMILAR_BN, "batchnorm", 10).similar, 1);
	assert_int_equal(decide(20, 0.49, "confidence", 10).similar, 0);
	/* a network of two blocks: case 2 still trains the head alone, not the lowest
	 * layers */
	assert_int_equal(decide(20, 0.1, "batchnorm", 2).train_blocks, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_distance),
		cmocka_unit_test(test_cases),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
