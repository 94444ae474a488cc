/*
 * loss.c: the losses graft-train minimises, with their gradients, in PyTorch's
 * definitions so that numbers compare: torch.nn.CrossEntropyLoss (mean over the batch,
 * label_smoothing), torch.nn.BCELoss (binary cross-entropy of probabilities, mean over
 * every element) and torch.nn.MSELoss (mean over every element).  Sums run in double:
 * a batch's loss is one number, and its accuracy matters more than its speed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

int64_t train_arg_max(const float *row, int64_t k)
{
	int64_t best = 0;

	for (int64_t j = 1; j < k; j++)
		if (row[j] > row[best])
			best = j;
	return best;
}

int graft_loss_cross_entropy(const float *logits, const int64_t *labels, int64_t batch,
			     int64_t classes, double smoothing, float *grad, double *loss,
			     int64_t *correct, struct graft_err *err)
{
	double total = 0;
	int64_t right = 0;

	if (batch < 1 || classes < 1)
		return graft_err_set(err, GRAFT_EINVAL, "cross-entropy of %lld samples of %lld "
				     "classes", (long long)batch, (long long)classes);
	if (smoothing < 0 || smoothing > 1)
		return graft_err_set(err, GRAFT_EINVAL, "label smoothing %g is not in [0, 1]",
				     smoothing);
	for (int64_t b = 0; b < batch; b++) {
		const float *z = logits + b * classes;
		int64_t y = labels[b], best = train_arg_max(z, classes);
		double max = z[best], sum = 0, mean_logp = 0;

		if (y < 0 || y >= classes)
			return graft_err_set(err, GRAFT_EINVAL, "label %lld of sample %lld is not in "
					     "[0, %lld)", (long long)y, (long long)b,
					     (long long)classes);
		right += best == y;
		for (int64_t k = 0; k < classes; k++)
			sum += exp((double)z[k] - max);
		double lse = max + log(sum);
		for (int64_t k = 0; k < classes; k++)
			mean_logp += (double)z[k] - lse;
		mean_logp /= (double)classes;
		/* (1 - e) * -log p_y + e * mean_k(-log p_k), as torch defines smoothing */
		total += (1 - smoothing) * (lse - z[y]) - smoothing * mean_logp;
		if (grad)
			for (int64_t k = 0; k < classes; k++) {
				double p = exp((double)z[k] - lse);
				double target = (1 - smoothing) * (k == y) + smoothing / (double)classes;
				grad[b * classes + k] = (float)((p - target) / (double)batch);
			}
	}
	*loss = total / (double)batch;
	if (correct)
		*correct = right;
	return 0;
}

int graft_loss_binary_cross_entropy(const float *p, const float *t, uint64_t n, int64_t rows,
				    float *grad, double *loss, int64_t *correct,
				    struct graft_err *err)
{
	uint64_t per = rows > 0 ? n / (uint64_t)rows : 0;
	double total = 0;
	int64_t right = 0;

	if (n == 0 || per == 0 || per * (uint64_t)rows != n)
		return graft_err_set(err, GRAFT_EINVAL, "binary cross-entropy of %llu values in "
				     "%lld rows", (unsigned long long)n, (long long)rows);
	for (int64_t r = 0; r < rows; r++) {
		int all = 1;
		for (uint64_t k = (uint64_t)r * per; k < (uint64_t)(r + 1) * per; k++) {
			double q = p[k], y = t[k];
			if (!(y >= 0 && y <= 1))
				return graft_err_set(err, GRAFT_EINVAL, "target %g is not in [0, 1]: "
						     "a Sigmoid output trains with binary "
						     "cross-entropy", y);
			/* torch clamps each log at -100 */
			double lp = q > 0 ? fmax(log(q), -100) : -100;
			double lq = q < 1 ? fmax(log1p(-q), -100) : -100;
			total -= y * lp + (1 - y) * lq;
			all &= (q >= 0.5) == (y >= 0.5);
			if (grad) {
				double d = q * (1 - q);
				grad[k] = (float)((q - y) / (d > 1e-12 ? d : 1e-12) / (double)n);
			}
		}
		right += all;
	}
	*loss = total / (double)n;
	if (correct)
		*correct = right;
	return 0;
}

int graft_loss_mse(const float *pred, const float *target, uint64_t n, float *grad,
		   double *loss, struct graft_err *err)
{
	double total = 0;

	if (n == 0)
		return graft_err_set(err, GRAFT_EINVAL, "mean squared error of nothing");
	for (uint64_t i = 0; i < n; i++) {
		double d = (double)pred[i] - target[i];
		total += d * d;
		if (grad)
			grad[i] = (float)(2 * d / (double)n);
	}
	*loss = total / (double)n;
	return 0;
}
