/*
 * gradcheck.h: checks an op's backward against central finite differences, for the
 * CMocka gradient tests (test_grad_*.c).
 *
 * The model (built with testmodel.h) is run as a training net with input gradients on:
 * every float graph input and every trainable parameter (initializers the importer
 * calls parameters) is differentiated.  The scalar checked is L = sum_o sum_i w_o[i] *
 * out_o[i], with fixed pseudo-random weights w, so every output element matters with a
 * different weight.  For each differentiated tensor, up to max_elems elements (spread
 * over the tensor) are nudged by +-h and (L+ - L-) / 2h is compared with the analytic
 * gradient: |fd - an| <= atol + rtol * max(|fd|, |an|).  The forward is computed in
 * float32, so h is large (1e-2 by default) and the tolerance loose (rtol 2e-2): a wrong
 * backward is off by far more.  A kernel whose output is not differentiable at some
 * inputs (Relu at 0, MaxPool ties) needs inputs kept away from those points.
 */
#ifndef GRADCHECK_H
#define GRADCHECK_H

#include <stddef.h>

#include "graft.h"
#include "onnx.pb-c.h"

struct gradcheck_opts {
	double h;               /* step; 0 for 1e-2 */
	double rtol, atol;      /* 0 for 2e-2 and 1e-3 */
	size_t max_elems;       /* per tensor; 0 for 64 */
	int bn_frozen;          /* passed to the net */
	int eval;               /* run in evaluation mode (graft_net_set_training(net, 0)) */
	uint64_t seed;          /* the net's seed (Dropout) */
};

/* Runs the check on the model mp (freed here) with the given inputs (float inputs are
 * copied and nudged; others are passed as they are).  Returns 0 when every checked
 * element agrees; otherwise fails the current CMocka test with the first disagreement
 * (tensor, element, both values).  *checked (may be NULL) gets the number of elements
 * compared, so a test can assert that something was checked. */
int gradcheck(Onnx__ModelProto *mp, const struct graft_array *inputs, size_t n_inputs,
	      const struct gradcheck_opts *opts, size_t *checked);

/* A float input array of the given shape filled with pseudo-random values in [lo, hi)
 * from seed (free data with free()). */
struct graft_array gradcheck_input(int rank, const int64_t *dims, double lo, double hi,
				   uint64_t seed);

#endif
