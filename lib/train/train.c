/*
 * train.c: the training loop's parts that must be exact, kept in the library so that
 * graft-train, tests and other programs share them: which samples each step sees, the
 * learning-rate schedule, one step (forward, loss, backward, clipping, update), evaluation,
 * and saving and restoring everything a bit-for-bit resume needs.
 *
 * The sample stream: epoch e visits the samples in the order of a permutation drawn from
 * (seed, e) (the identity without shuffling); the epochs' orders are concatenated and
 * step k takes stream positions k*B .. k*B+B-1.  Without shuffling, step k uses samples
 * k*B .. k*B+B-1 modulo N, as the comparison with other frameworks needs; with it, every
 * batch has B samples and every sample is seen once per epoch.  Everything random in a
 * step (the order, augmentation, Dropout's masks) follows from the seed, the step number
 * and the sample's place in the batch, so a resumed run continues exactly, and a batch
 * cut into pieces (below) draws what it would whole.
 *
 * Transfer recipes (LP-FT, gradual unfreezing, layer-wise rate decay) give each trainable
 * parameter a start step and a rate factor from its depth, counted in block boundaries
 * from the output.  The net trains only the parameters started by its step: the others
 * are frozen in it (no gradient, no update, the frozen prefix's cache applies), and it is
 * rebuilt, carrying everything over, at the steps where more start.
 *
 * Pieces (data-parallel training and accumulation): a step's batch is cut into
 * processes x accumulate pieces of `rows` samples, the net's batch.  Process r runs the
 * pieces r * accumulate .. r * accumulate + accumulate - 1, one after another (unit u =
 * step * accumulate + k is the k-th of the step's pieces here); their gradients and
 * updated running statistics are averaged over the pieces, then over the processes
 * (graft_comm_mean), so every process updates its copy alike.  With one piece the net's
 * own gradients are used, untouched.
 */
#include <float.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

#define STATE_STEP "graft.train/step"
/* The net's Dropout generator, still written (as the net seeds it) and required, so that
 * checkpoints stay readable both ways; the trainer keys every Dropout draw by the step
 * and the sample (graft_net_draw_rows) and draws nothing from it. */
#define STATE_RNG "graft.train/rng"
#define STATE_PREFIX "graft.optim/"

struct graft_trainer {
	struct graft_train_opts o;
	struct graft_model *model;
	struct graft_net *net;
	struct graft_optim *optim;
	const struct graft_array *y;
	struct graft_array x[GRAFT_DATASET_MAX_INPUTS]; /* the inputs, in the net's order:
							 * types and shapes (the loader's) */
	size_t n_x;
	struct graft_loader *loader;    /* where batches come from (o.loader, or own_loader) */
	struct graft_loader *own_loader;
	int64_t xb_unit;                /* the unit (piece) xb holds; -1: none */
	int64_t *pending;               /* units requested from the loader and not yet taken,
					 * oldest first (a ring of ahead) */
	int ahead, n_pending, pending_at;
	int64_t next_request;           /* the unit requested next */
	int64_t *req_samples, *req_epochs;      /* (rows) each */
	/* pieces (see above) */
	int64_t rows;                   /* samples per piece: the net's batch */
	int parts;                      /* pieces per step in this process (accumulate) */
	int64_t first_row;              /* this process's first row of every batch */
	int group;                      /* processes (1: alone) */
	float *gsum;                    /* the pieces' mean gradient (all params' numel), live
					 * parameter i at goff[i]: in the order backward finishes
					 * them, cut into buckets of about o.bucket_bytes */
	size_t *goff, *bucket_of;       /* (n_live) by live position */
	struct bucket {
		size_t at, len;         /* floats of gsum */
		size_t params, left;    /* its parameters; those not yet final this step */
	} *buckets;
	size_t n_buckets;
	size_t *live_pos;               /* by net tensor index: its live position, or SIZE_MAX */
	size_t n_live_pos;
	struct exchange *xchg;          /* the buckets' mean while backward goes on; NULL:
					 * after backward, or alone */
	int collecting;                 /* the step's last piece: gradients go to gsum as
					 * they are final (grad_ready) */
	float *state0, *state_sum;      /* running statistics: before the step, summed */
	size_t n_state;                 /* floats of running statistics in the net */
	int64_t n;                      /* samples */
	int64_t classes;                /* cross-entropy: logits per sample (a detector: 2);
					 * 0 for MSE */
	int probs;                      /* the output is a Softmax's: probabilities */
	int detector;                   /* labels 0 and 1, one output, a Sigmoid's: binary
					 * cross-entropy against the labels as targets */
	float *ytarget;                 /* then the batch's labels as floats */
	int binary;                     /* float targets, the output a Sigmoid's: binary
					 * cross-entropy instead of MSE */
	float *logp;                    /* then their logarithm, per batch */
	size_t sample_bytes[GRAFT_DATASET_MAX_INPUTS];  /* bytes per sample of each x */
	uint64_t target_floats;         /* MSE: floats per sample of y */
	uint64_t param_floats;          /* of all the parameters that train at some step */
	/* The parameters that train at some step (the model's trainable ones), by optimizer
	 * index k; live[] lists those the current net trains. */
	size_t n_params;
	size_t *tensor;                 /* the model's tensor index */
	size_t *net_index;              /* graft_net_tensor index in the current net;
					 * SIZE_MAX while not in it */
	int64_t *start;                 /* the step from which it trains */
	double *lr_mult;
	size_t *live, n_live;
	int64_t next_start;             /* the first start after the net's step; INT64_MAX */
	int64_t step;                   /* steps done */
	int64_t *order;                 /* the permutation of epoch order_epoch */
	int64_t order_epoch;
	struct graft_array xb[GRAFT_DATASET_MAX_INPUTS], yb;   /* the current batch */
	float *dlogits;
	struct cache {                  /* the frozen part's output per sample (see below) */
		int on;
		size_t n;               /* boundary values */
		uint64_t *per;          /* floats per sample of each */
		float **rows;           /* N * per[i] floats each */
		uint8_t *have;          /* per sample */
	} cache;
};

/* ---- the sample stream ------------------------------------------------------------------ */

#define SALT_STREAM 0x632be59bd9b4e019ULL     /* epoch orders and augmentation */
#define SALT_DROPOUT 0x2f0f3c5a8e1b7d49ULL    /* a step's Dropout masks */

uint64_t train_seed_mix(uint64_t a, uint64_t b, uint64_t salt)
{
	struct graft_rng r;
	graft_rng_seed(&r, a ^ (b * 0x9e3779b97f4a7c15ULL + salt));
	return graft_rng_next(&r);
}

static void epoch_order(struct graft_trainer *t, int64_t epoch)
{
	struct graft_rng r;

	if (t->order_epoch == epoch)
		return;
	for (int64_t i = 0; i < t->n; i++)
		t->order[i] = i;
	if (t->o.shuffle) {
		graft_rng_seed(&r, train_seed_mix(t->o.seed, (uint64_t)epoch, SALT_STREAM));
		graft_rng_shuffle(&r, t->order, (size_t)t->n);
	}
	t->order_epoch = epoch;
}

int64_t graft_trainer_sample(struct graft_trainer *t, int64_t step, int64_t j)
{
	int64_t pos = step * t->o.batch + j;

	epoch_order(t, pos / t->n);
	return t->order[pos % t->n];
}

/* Row j of unit u's piece: its position in the batch of step u / parts. */
static int64_t unit_pos(const struct graft_trainer *t, int64_t u, int64_t j)
{
	return t->first_row + (u % t->parts) * t->rows + j;
}

static int64_t unit_sample(struct graft_trainer *t, int64_t u, int64_t j)
{
	return graft_trainer_sample(t, u / t->parts, unit_pos(t, u, j));
}

double graft_trainer_epoch(const struct graft_trainer *t, int64_t steps)
{
	return (double)steps * (double)t->o.batch / (double)t->n;
}

/* ---- the learning rate ------------------------------------------------------------------ */

double graft_train_lp_lr(const struct graft_train_opts *o)
{
	return o->lp_lr > 0 ? o->lp_lr : 10 * o->optim.lr;
}

int64_t graft_epoch_steps(double epochs, int64_t n, int64_t batch)
{
	return (int64_t)ceil(epochs * (double)n / (double)batch - 1e-9);
}

/* With LP-FT, the LP phase (steps before lp_steps) has its own rate and the schedule
 * over its steps; the FT phase the schedule over the rest, counted from its start. */
double graft_trainer_lr(const struct graft_trainer *t, int64_t step)
{
	const struct graft_train_opts *o = &t->o;
	double lr = o->optim.lr, f = 1;
	int64_t total = o->total_steps;

	if (o->lp_steps > 0 && step < o->lp_steps) {
		lr = graft_train_lp_lr(o);
		total = o->lp_steps;
	} else if (o->lp_steps > 0) {
		step -= o->lp_steps;
		total -= o->lp_steps;
	}
	switch (o->schedule) {
	case GRAFT_SCHEDULE_CONSTANT:
		break;
	case GRAFT_SCHEDULE_STEP:
		if (o->step_every > 0)
			f = pow(o->gamma, (double)(step / o->step_every));
		break;
	case GRAFT_SCHEDULE_COSINE:
		/* torch's CosineAnnealingLR to 0 over the steps after warm-up */
		if (total > o->warmup && step >= o->warmup)
			f = 0.5 * (1 + cos(M_PI * (double)(step - o->warmup) /
					   (double)(total - o->warmup)));
		break;
	}
	if (o->warmup > 0 && step < o->warmup)
		f *= (double)(step + 1) / (double)o->warmup;
	return lr * f;
}

/* ---- building ------------------------------------------------------------------------------ */

/* One input's data against the model's input k: its type, rank and fixed dims. */
static int check_input(const struct graft_trainer *t, size_t k, struct graft_err *err)
{
	const struct graft_array *x = &t->x[k];
	struct graft_value_info vi;

	graft_model_input(t->model, k, &vi);
	if (x->rank < 1 || x->dims[0] < 1 || !graft_dtype_size(x->dtype))
		return graft_err_set(err, GRAFT_EINVAL, "the data's input %zu holds no samples", k);
	if (vi.dtype && vi.dtype != x->dtype)
		return graft_err_set(err, GRAFT_EINVAL, "the model's input '%s' is %s; the data's "
				     "is %s", vi.name, graft_dtype_name(vi.dtype),
				     graft_dtype_name(x->dtype));
	if (vi.rank >= 0) {
		if (vi.rank != x->rank)
			return graft_err_set(err, GRAFT_EINVAL, "the model's input '%s' has rank %d; "
					     "the data's samples have rank %d", vi.name, vi.rank,
					     x->rank - 1);
		for (int d = 1; d < x->rank; d++)
			if (vi.dims[d] >= 0 && vi.dims[d] != x->dims[d])
				return graft_err_set(err, GRAFT_EINVAL, "the model's input '%s' needs "
						     "dim %d = %lld; the data has %lld", vi.name, d,
						     (long long)vi.dims[d], (long long)x->dims[d]);
	}
	if (x->dims[0] != t->x[0].dims[0])
		return graft_err_set(err, GRAFT_EINVAL, "the data's inputs differ in samples");
	return 0;
}

static int check_data(struct graft_trainer *t, struct graft_err *err)
{
	const struct graft_array *x = t->x, *y = t->y;
	int rc;

	if (graft_net_input_count(t->net) != t->n_x)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "the model takes %zu inputs; the data "
				     "gives %zu", graft_net_input_count(t->net), t->n_x);
	if (t->n_x < 1 || t->n_x > GRAFT_DATASET_MAX_INPUTS)
		return graft_err_set(err, GRAFT_EINVAL, "%zu inputs, not 1 to %d", t->n_x,
				     GRAFT_DATASET_MAX_INPUTS);
	for (size_t k = 0; k < t->n_x; k++)
		if ((rc = check_input(t, k, err)))
			return rc;
	if (y->rank < 1 || y->dims[0] != x->dims[0])
		return graft_err_set(err, GRAFT_EINVAL, "the data has %lld samples but %lld labels",
				     (long long)x->dims[0], y->rank ? (long long)y->dims[0] : 0LL);
	if (y->dtype != GRAFT_INT64 && y->dtype != GRAFT_FLOAT)
		return graft_err_set(err, GRAFT_EINVAL, "the data's y must be int64 labels or float "
				     "targets");
	t->n = x->dims[0];
	for (size_t k = 0; k < t->n_x; k++)
		t->sample_bytes[k] = t->x[k].nbytes / (size_t)t->n;
	t->target_floats = 1;
	for (int d = 1; d < y->rank; d++)
		t->target_floats *= (uint64_t)y->dims[d];
	return 0;
}

/* The node that computes the net's first output (the one that runs: an activation fused
 * into its producer leaves the producer computing it); NULL when none does. */
static const struct node *output_producer(const struct graft_net *net)
{
	const struct value *out = net->n_outputs ? net->outputs[0] : NULL;

	for (size_t i = 0; out && i < net->n_nodes; i++) {
		const struct node *n = &net->nodes[i];
		if (!n->fused_away && n->n_out >= 1 && n->out[0] == out)
			return n;
	}
	return NULL;
}

/* That node when its op is op_type; NULL otherwise. */
static const struct node *output_by(const struct graft_net *net, const char *op_type)
{
	const struct node *n = output_producer(net);

	return n && n->proto->op_type && strcmp(n->proto->op_type, op_type) == 0 ? n : NULL;
}

/* Whether the net's first output is computed by a Softmax over axis 1 of [batch, classes]:
 * probabilities, not logits, as in a model that ends in Softmax (graft-head keeps it).
 * Cross-entropy then reads their logarithm (cross_entropy_probs). */
static int output_is_softmax(const struct graft_net *net)
{
	const struct node *n = output_by(net, "Softmax");

	if (!n || n->out[0]->rank != 2)
		return 0;
	int64_t axis = attr_int(n, "axis", n->opset >= 13 ? -1 : 1);
	return axis == 1 || axis == -1;
}

/* Whether the net's first output is computed by a Sigmoid: probabilities, which float
 * targets in [0, 1] train with binary cross-entropy (as torch.nn.BCELoss), not MSE. */
static int output_is_sigmoid(const struct graft_net *net)
{
	const struct node *n = output_producer(net);

	return n && (output_by(net, "Sigmoid") || n->act.kind == FUSED_SIGMOID);
}

/* Cross-entropy of probabilities p [batch, classes] (a Softmax's output): that of the
 * logits log p (log_softmax(log p) = log p, since p sums to 1), and dL/dp = dL/dlog p / p,
 * which the Softmax's backward turns into the logits' gradient p - target, as
 * graft_loss_cross_entropy gives for logits.  p is taken as at least FLT_MIN, so that a
 * probability that underflowed to 0 gives a finite loss.  logp: batch * classes floats. */
static int cross_entropy_probs(const float *p, const int64_t *labels, int64_t batch,
			       int64_t classes, double smoothing, float *logp, float *grad,
			       double *loss, int64_t *correct, struct graft_err *err)
{
	uint64_t n = (uint64_t)batch * (uint64_t)classes;
	int rc;

	for (uint64_t i = 0; i < n; i++)
		logp[i] = logf(p[i] > FLT_MIN ? p[i] : FLT_MIN);
	rc = graft_loss_cross_entropy(logp, labels, batch, classes, smoothing, grad, loss,
				      correct, err);
	for (uint64_t i = 0; !rc && grad && i < n; i++)
		grad[i] /= p[i] > FLT_MIN ? p[i] : FLT_MIN;
	return rc;
}

/* Labels 0 and 1 as binary cross-entropy's targets (a detector: one Sigmoid output);
 * first is the first label's sample, for the message. */
static int detector_targets(const int64_t *lab, int64_t n, int64_t first, float *out,
			    struct graft_err *err)
{
	for (int64_t i = 0; i < n; i++) {
		if (lab[i] != 0 && lab[i] != 1)
			return graft_err_set(err, GRAFT_EINVAL, "label %lld of sample %lld: a "
					     "model of one Sigmoid output (a detector) takes "
					     "labels 0 and 1", (long long)lab[i],
					     (long long)(first + i));
		if (out)
			out[i] = (float)lab[i];
	}
	return 0;
}

/* Whether out (per values a sample) from net is a detector's score for int64 labels. */
static int is_detector(const struct graft_net *net, uint64_t per)
{
	return per == 1 && output_is_sigmoid(net);
}

int64_t graft_net_scored_classes(const struct graft_net *net, int64_t rows)
{
	struct graft_array out;
	uint64_t per;

	graft_net_output(net, 0, &out);
	if (rows < 1 || out.dtype != GRAFT_FLOAT)
		return 0;
	per = out.nbytes / sizeof(float) / (uint64_t)rows;
	return is_detector(net, per) ? 2 : (int64_t)per;
}

/* Runs one batch to learn the output's shape, and checks it against the labels. */
static int check_output(struct graft_trainer *t, struct graft_err *err)
{
	struct graft_array out;
	int rc;

	graft_net_output(t->net, 0, &out);
	if (out.dtype != GRAFT_FLOAT || out.rank < 1 || out.dims[0] != t->rows)
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "the model's first output is not float "
				     "[batch, ...]: it cannot be trained against the data");
	uint64_t per = out.nbytes / sizeof(float) / (uint64_t)t->rows;
	if (t->y->dtype == GRAFT_INT64 && is_detector(t->net, per)) {
		t->detector = 1;
		t->classes = 2;
		if ((rc = detector_targets(t->y->data, t->n, 0, NULL, err)))
			return rc;
	} else if (t->y->dtype == GRAFT_INT64) {
		const int64_t *lab = t->y->data;
		t->classes = (int64_t)per;
		for (int64_t i = 0; i < t->n; i++)
			if (lab[i] < 0 || lab[i] >= t->classes)
				return graft_err_set(err, GRAFT_EINVAL, "label %lld of sample %lld does "
						     "not fit the model's %lld outputs",
						     (long long)lab[i], (long long)i,
						     (long long)t->classes);
	} else if (per != t->target_floats) {
		return graft_err_set(err, GRAFT_EINVAL, "the model gives %llu values per sample; "
				     "the data's targets have %llu", (unsigned long long)per,
				     (unsigned long long)t->target_floats);
	}
	t->probs = t->classes && !t->detector && output_is_softmax(t->net);
	t->binary = !t->classes && output_is_sigmoid(t->net);
	for (uint64_t i = 0; t->binary && i < (uint64_t)t->n * t->target_floats; i++) {
		float v = ((const float *)t->y->data)[i];
		if (!(v >= 0 && v <= 1))
			return graft_err_set(err, GRAFT_EINVAL, "target %g of sample %llu is not in "
					     "[0, 1]: the model's output is a Sigmoid's, which "
					     "trains with binary cross-entropy", v,
					     (unsigned long long)(i / t->target_floats));
	}
	if (!(t->dlogits = malloc(out.nbytes + 1)) || (t->probs && !(t->logp = malloc(out.nbytes))) ||
	    (t->detector && !(t->ytarget = malloc(out.nbytes + 1))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
}

/* Whether the gradients' mean overlaps backward: in a group whose transport allows
 * another thread, unless synchronised BatchNorm exchanges statistics during backward. */
static int overlaps(const struct graft_train_opts *o)
{
	return o->comm && o->comm->size > 1 && o->comm->any_thread && !o->sync_bn;
}

static int alloc_batch(struct graft_trainer *t, struct graft_err *err)
{
	struct graft_array *yb = &t->yb;
	int short_of_memory = 0;

	for (size_t k = 0; k < t->n_x; k++) {
		struct graft_array *xb = &t->xb[k];
		*xb = t->x[k];
		xb->name = NULL;
		xb->dims[0] = t->rows;
		xb->nbytes = (size_t)t->rows * t->sample_bytes[k];
		short_of_memory |= !(xb->data = malloc(xb->nbytes + 1));
	}
	*yb = *t->y;
	yb->name = NULL;
	yb->dims[0] = t->rows;
	yb->nbytes = (size_t)t->rows * (t->y->dtype == GRAFT_INT64 ? sizeof(int64_t)
						: t->target_floats * sizeof(float));
	yb->data = malloc(yb->nbytes + 1);
	t->order = malloc(((size_t)t->n + 1) * sizeof(*t->order));
	t->order_epoch = -1;
	t->req_samples = malloc(sizeof(int64_t) * (size_t)t->rows);
	t->req_epochs = malloc(sizeof(int64_t) * (size_t)t->rows);
	t->pending = malloc(sizeof(int64_t) * (size_t)t->ahead);
	t->xb_unit = -1;
	if (t->group > 1 || t->parts > 1)
		t->gsum = malloc(sizeof(float) * (size_t)(t->param_floats + 1));
	if (overlaps(&t->o) && t->gsum && exchange_new(&t->xchg, t->o.comm, err))
		return err->code;
	if (short_of_memory || !yb->data || !t->order || !t->req_samples || !t->req_epochs ||
	    !t->pending || ((t->group > 1 || t->parts > 1) && !t->gsum))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory for a batch of %lld",
				     (long long)t->rows);
	return 0;
}

static int recipe_on(const struct graft_train_opts *o)
{
	return o->lp_steps > 0 || o->unfreeze_every > 0 || (o->layer_decay > 0 &&
							     o->layer_decay != 1);
}

/* The step from which a parameter at depth trains (graft_train_opts). */
static int64_t start_step(const struct graft_train_opts *o, size_t depth)
{
	int64_t d = (int64_t)depth;

	if (d == 0 || (o->lp_steps <= 0 && o->unfreeze_every <= 0))
		return 0;
	if (o->lp_steps > 0)
		return o->lp_steps + (d - 1) * o->unfreeze_every;
	return d * o->unfreeze_every;
}

static int check_recipe(const struct graft_train_opts *o, struct graft_err *err)
{
	if (o->lp_steps < 0 || o->unfreeze_every < 0 || o->lp_lr < 0 || o->layer_decay < 0 ||
	    !isfinite(o->lp_lr) || !isfinite(o->layer_decay))
		return graft_err_set(err, GRAFT_EINVAL, "a transfer recipe's steps, rate and decay "
				     "must not be negative");
	return 0;
}

/* The model's trainable parameters, with each one's start step and rate factor, and
 * the optimizer over all of them. */
static int collect_params(struct graft_trainer *t, struct graft_err *err)
{
	size_t n = t->model->n_tensors, *depth = calloc(n + 1, sizeof(*depth)), blocks = 0;
	uint64_t *numel = calloc(n + 1, sizeof(*numel));
	int rc = 0;

	t->tensor = calloc(n + 1, sizeof(*t->tensor));
	t->net_index = calloc(n + 1, sizeof(*t->net_index));
	t->start = calloc(n + 1, sizeof(*t->start));
	t->lr_mult = calloc(n + 1, sizeof(*t->lr_mult));
	t->live = calloc(n + 1, sizeof(*t->live));
	if (!depth || !numel || !t->tensor || !t->net_index || !t->start || !t->lr_mult ||
	    !t->live) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		goto out;
	}
	if (recipe_on(&t->o)) {
		if ((rc = graft_model_param_depths(t->model, depth, &blocks, err)))
			goto out;
		if (blocks == 0) {
			rc = graft_err_set(err, GRAFT_EINVAL, "the model has no block boundary: a "
					   "transfer recipe has no blocks to tell apart");
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct graft_tensor mt;
		size_t k = t->n_params;
		graft_model_tensor(t->model, i, &mt);
		if (!mt.trainable || mt.role != GRAFT_ROLE_PARAMETER)
			continue;
		t->tensor[k] = i;
		t->start[k] = start_step(&t->o, depth[i]);
		t->lr_mult[k] = 1;
		/* the last matching pattern wins, as later options override earlier ones */
		for (size_t p = 0; p < t->o.n_lr_mults; p++)
			if (fnmatch(t->o.lr_mults[p].pattern, mt.name, 0) == 0)
				t->lr_mult[k] = t->o.lr_mults[p].factor;
		if (t->o.layer_decay > 0)
			t->lr_mult[k] *= pow(t->o.layer_decay, (double)depth[i]);
		numel[k] = mt.numel;
		t->param_floats += mt.numel;
		t->n_params++;
	}
	rc = graft_optim_new(&t->optim, &t->o.optim, t->n_params, numel, err);
out:
	free(depth);
	free(numel);
	return rc;
}

int64_t graft_trainer_param_start(const struct graft_trainer *t, const char *name)
{
	for (size_t k = 0; k < t->n_params; k++)
		if (strcmp(t->model->tensors[t->tensor[k]].name, name) == 0)
			return t->start[k];
	return -1;
}

static void cache_free(struct cache *c)
{
	for (size_t i = 0; i < c->n && c->rows; i++)
		free(c->rows[i]);
	free(c->rows);
	free(c->per);
	free(c->have);
	memset(c, 0, sizeof(*c));
}

/*
 * A frozen prefix whose input is fixed computes the same boundary values (what the
 * trained part reads) for a sample in every epoch, so they are kept per sample the first
 * time and the prefix is skipped afterwards: with only a head training, an epoch after the
 * first costs the head alone.  Only when nothing random comes first (no augmentation; the
 * frozen part runs in inference mode, so no Dropout or batch statistics there), when every
 * boundary value is float and batch-major, and when the cache fits o.cache_bytes
 * (GRAFT_TRAIN_CACHE_DEFAULT when 0; negative turns the cache off).
 */
static void cache_setup(struct graft_trainer *t)
{
	struct cache *c = &t->cache;
	double limit = (double)(t->o.cache_bytes ? t->o.cache_bytes : GRAFT_TRAIN_CACHE_DEFAULT);
	double bytes = 0;
	size_t nb = graft_net_boundary_count(t->net);
	int computed = 0;

	memset(c, 0, sizeof(*c));
	if (graft_loader_random(t->loader) || nb == 0 || limit <= 0)
		return;
	for (size_t i = 0; i < nb; i++) {
		struct graft_array v;
		int input = graft_net_boundary(t->net, i, &v);
		if (v.dtype != GRAFT_FLOAT || v.rank < 1 || v.dims[0] != t->rows)
			return;
		computed |= input == 0;
		bytes += (double)v.nbytes / (double)t->rows * (double)t->n;
	}
	if (!computed || bytes > limit)
		return;
	c->per = calloc(nb, sizeof(*c->per));
	c->rows = calloc(nb, sizeof(*c->rows));
	c->have = calloc((size_t)t->n, 1);
	if (!c->per || !c->rows || !c->have) {
		cache_free(c);
		return;
	}
	c->n = nb;
	for (size_t i = 0; i < nb; i++) {
		struct graft_array v;
		graft_net_boundary(t->net, i, &v);
		c->per[i] = v.nbytes / sizeof(float) / (uint64_t)t->rows;
		if (!(c->rows[i] = malloc((size_t)(c->per[i] * (uint64_t)t->n) * sizeof(float)))) {
			cache_free(c);
			return;
		}
	}
	c->on = 1;
}

/* Whether every sample of unit u's piece is cached. */
static int cache_hit(struct graft_trainer *t, int64_t u)
{
	if (!t->cache.on)
		return 0;
	for (int64_t j = 0; j < t->rows; j++)
		if (!t->cache.have[unit_sample(t, u, j)])
			return 0;
	return 1;
}

/* Copies the piece's rows between the cache and the net's boundary values. */
static void cache_move(struct graft_trainer *t, int64_t u, int store)
{
	struct cache *c = &t->cache;

	for (size_t i = 0; i < c->n; i++) {
		struct graft_array v;
		size_t row = (size_t)c->per[i] * sizeof(float);
		graft_net_boundary(t->net, i, &v);
		for (int64_t j = 0; j < t->rows; j++) {
			int64_t s = unit_sample(t, u, j);
			char *net_row = (char *)v.data + (size_t)j * row;
			char *cached = (char *)c->rows[i] + (size_t)s * row;
			if (store)
				memcpy(cached, net_row, row);
			else
				memcpy(net_row, cached, row);
		}
	}
	if (store)
		for (int64_t j = 0; j < t->rows; j++)
			c->have[unit_sample(t, u, j)] = 1;
}

const struct graft_net *graft_trainer_net(const struct graft_trainer *t)
{
	return t->net;
}

void graft_trainer_free(struct graft_trainer *t)
{
	if (!t)
		return;
	cache_free(&t->cache);
	graft_net_free(t->net);
	graft_optim_free(t->optim);
	free(t->tensor);
	free(t->net_index);
	free(t->start);
	free(t->live);
	free(t->lr_mult);
	free(t->order);
	free(t->req_samples);
	free(t->req_epochs);
	free(t->pending);
	exchange_free(t->xchg);
	free(t->gsum);
	free(t->goff);
	free(t->bucket_of);
	free(t->buckets);
	free(t->live_pos);
	free(t->state0);
	free(t->state_sum);
	graft_loader_free(t->own_loader);
	for (size_t k = 0; k < t->n_x; k++)
		free(t->xb[k].data);
	free(t->yb.data);
	free(t->dlogits);
	free(t->logp);
	free(t->ytarget);
	free(t);
}

static int gather(struct graft_trainer *t, int64_t u, struct graft_err *err);
static int save_tensor(struct graft_model *m, const struct graft_net_tensor *nt,
		       struct graft_err *err);

/* Writes the net's copies of parameters and running statistics into m. */
static int store_tensors(struct graft_trainer *t, struct graft_model *m, struct graft_err *err)
{
	for (size_t i = 0; i < graft_net_tensor_count(t->net); i++) {
		struct graft_net_tensor nt;
		int rc;
		graft_net_tensor(t->net, i, &nt);
		if ((rc = save_tensor(m, &nt, err)))
			return rc;
	}
	return 0;
}

/* Whether model tensor i is one of the trainer's parameters, and which (*k): t->tensor
 * is in increasing order, as collect_params fills it. */
static int param_of(const struct graft_trainer *t, long i, size_t *k)
{
	size_t lo = 0, hi = t->n_params;

	while (i >= 0 && lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->tensor[mid] < (size_t)i)
			lo = mid + 1;
		else
			hi = mid;
	}
	*k = lo;
	return i >= 0 && lo < t->n_params && t->tensor[lo] == (size_t)i;
}

static void add_gradient(struct graft_trainer *t, size_t i, int copy);
static int grad_ready(void *ctx, size_t tensor, struct graft_err *err);

/* graft_net_opts.group_sum over the trainer's group (synchronised BatchNorm). */
static int group_sum(void *ctx, double *v, size_t n, struct graft_err *err)
{
	return graft_comm_sum(ctx, v, n, err);
}

/* Builds the net that trains the parameters started by step, the others frozen in it,
 * in place of the current one (whose values go back into the model first). */
static int build_net(struct graft_trainer *t, int64_t step, struct graft_err *err)
{
	struct graft_net_opts no = {.training = 1, .bn_frozen = t->o.bn_frozen, .seed = t->o.seed,
				    .profile = t->o.profile, .wisdom = t->o.wisdom};
	struct graft_net *net = NULL;
	int rc;

	if (t->o.sync_bn && t->o.comm && t->o.comm->size > 1) {
		no.group_sum = group_sum;
		no.group_ctx = (void *)t->o.comm;
	}
	if (overlaps(&t->o)) {
		no.grad_ready = grad_ready;
		no.grad_ctx = t;
	}

	if (t->net && (rc = store_tensors(t, t->model, err)))
		return rc;
	for (size_t k = 0; k < t->n_params; k++)
		if (t->start[k] > step)
			t->model->tensors[t->tensor[k]].trainable = 0;
	rc = graft_net_new_opts(&net, t->model, &no, err);
	for (size_t k = 0; k < t->n_params; k++)
		t->model->tensors[t->tensor[k]].trainable = 1;
	if (rc)
		return rc;
	graft_net_free(t->net);
	t->net = net;
	t->n_live = 0;
	t->next_start = INT64_MAX;
	for (size_t k = 0; k < t->n_params; k++) {
		t->net_index[k] = SIZE_MAX;
		if (t->start[k] > step && t->start[k] < t->next_start)
			t->next_start = t->start[k];
	}
	/* in the net's order, one lookup per tensor (graphs of 100,000 parameters) */
	for (size_t i = 0; i < graft_net_tensor_count(net); i++) {
		struct graft_net_tensor nt;
		size_t k;
		graft_net_tensor(net, i, &nt);
		if (nt.is_param && param_of(t, graft_model_find_tensor(t->model, nt.name), &k)) {
			t->net_index[k] = i;
			t->live[t->n_live++] = k;
		}
	}
	return 0;
}

/* One forward on step's batch to plan the net, in evaluation mode (training mode would
 * update running statistics and draw Dropout masks), then the frozen prefix's cache. */
static int plan_net(struct graft_trainer *t, int64_t step, struct graft_err *err)
{
	int rc;

	if ((rc = gather(t, step * t->parts, err)))
		return rc;
	graft_net_set_training(t->net, 0);
	rc = graft_net_run(t->net, t->xb, t->n_x, err);
	graft_net_set_training(t->net, 1);
	graft_net_profile_reset(t->net);        /* a profile counts training steps only */
	return rc;
}

/* gsum's layout for the current net (see the struct): the live parameters in the order
 * backward finishes their gradients, in buckets of at least o.bucket_bytes (DDP's 25 MB
 * by default), the last smaller. */
static int layout_gradients(struct graft_trainer *t, struct graft_err *err)
{
	size_t nt = graft_net_tensor_count(t->net), n, at = 0, placed = 0;
	size_t cap = t->o.bucket_bytes > 0 ? (size_t)t->o.bucket_bytes : GRAFT_TRAIN_BUCKET_DEFAULT;
	size_t *order;
	struct bucket *b;

	if (!t->gsum)
		return 0;
	free(t->goff);
	free(t->bucket_of);
	free(t->buckets);
	free(t->live_pos);
	t->goff = malloc(sizeof(size_t) * (t->n_live + 1));
	t->bucket_of = malloc(sizeof(size_t) * (t->n_live + 1));
	t->buckets = calloc(t->n_live + 1, sizeof(*t->buckets));
	t->live_pos = malloc(sizeof(size_t) * (nt + 1));
	order = malloc(sizeof(size_t) * (nt + 1));
	if (!t->goff || !t->bucket_of || !t->buckets || !t->live_pos || !order) {
		free(order);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	t->n_live_pos = nt;
	for (size_t k = 0; k < nt; k++)
		t->live_pos[k] = SIZE_MAX;
	for (size_t i = 0; i < t->n_live; i++)
		t->live_pos[t->net_index[t->live[i]]] = i;
	n = graft_net_grad_order(t->net, order);
	t->n_buckets = 0;
	b = &t->buckets[0];
	for (size_t k = 0; k < n; k++) {
		size_t i = order[k] < nt ? t->live_pos[order[k]] : SIZE_MAX;
		struct graft_net_tensor nt_;
		if (i == SIZE_MAX)
			continue;
		graft_net_tensor(t->net, order[k], &nt_);
		if (b->params == 0)
			b->at = at;
		t->goff[i] = at;
		t->bucket_of[i] = t->n_buckets;
		at += nt_.numel;
		b->len += nt_.numel;
		b->params++;
		placed++;
		if (b->len * sizeof(float) >= cap) {
			t->n_buckets++;
			b = &t->buckets[t->n_buckets];
		}
	}
	if (b->params)
		t->n_buckets++;
	free(order);
	if (placed != t->n_live)
		return graft_err_set(err, GRAFT_EINVAL, "%zu of %zu training parameters have no "
				     "place in the gradients' order", t->n_live - placed, t->n_live);
	return 0;
}

/* At a step where more parameters start training: the net for them, planned, with a
 * cache of its own frozen prefix (shorter than the last one's). */
static int rebuild(struct graft_trainer *t, int64_t step, struct graft_err *err)
{
	int rc;

	cache_free(&t->cache);
	if ((rc = build_net(t, step, err)) || (rc = plan_net(t, step, err)) ||
	    (rc = layout_gradients(t, err)))
		return rc;
	cache_setup(t);
	return 0;
}

/* The pieces of a batch (see the top): processes x accumulate equal ones. */
static int split_batch(struct graft_trainer *t, struct graft_err *err)
{
	const struct graft_comm *c = t->o.comm;
	int64_t pieces;

	t->group = c && c->size > 1 ? c->size : 1;
	t->parts = t->o.accumulate > 1 ? t->o.accumulate : 1;
	if (c && (c->rank < 0 || c->rank >= t->group))
		return graft_err_set(err, GRAFT_EINVAL, "rank %d of a group of %d", c->rank,
				     t->group);
	pieces = (int64_t)t->group * t->parts;
	if (t->o.batch % pieces)
		return graft_err_set(err, GRAFT_EINVAL, "a batch of %lld does not split into %lld "
				     "equal pieces (%d processes x %d micro-batches): make it a "
				     "multiple of %lld", (long long)t->o.batch, (long long)pieces,
				     t->group, t->parts, (long long)pieces);
	if (t->o.sync_bn && t->parts > 1)
		return graft_err_set(err, GRAFT_EINVAL, "synchronised BatchNormalization spans the "
				     "processes' pieces of a step, not micro-batches that run one "
				     "after another");
	t->rows = t->o.batch / pieces;
	t->first_row = (c && t->group > 1 ? c->rank : 0) * t->parts * t->rows;
	return 0;
}

int graft_trainer_new(struct graft_trainer **out, struct graft_model *m,
		      const struct graft_array *x, size_t n_x, const struct graft_array *y,
		      const struct graft_train_opts *o, struct graft_err *err)
{
	struct graft_trainer *t = calloc(1, sizeof(*t));
	int rc;

	*out = NULL;
	if (!t)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	t->o = *o;
	t->model = m;
	t->y = y;
	if (o->loader) {
		t->loader = o->loader;
	} else if (n_x >= 1 && n_x <= GRAFT_DATASET_MAX_INPUTS) {
		struct graft_loader_opts lo = {.seed = o->seed, .augment = o->augment};
		if ((rc = graft_loader_new(&t->own_loader, x, n_x, &lo, err)))
			goto fail;
		t->loader = t->own_loader;
	} else {
		rc = graft_err_set(err, GRAFT_EINVAL, "%zu inputs, not 1 to %d", n_x,
				   GRAFT_DATASET_MAX_INPUTS);
		goto fail;
	}
	t->n_x = graft_loader_inputs(t->loader, t->x);
	t->ahead = graft_loader_ahead(t->loader);
	if ((rc = check_recipe(o, err)) || (rc = graft_model_unalias_all(m, err)) ||
	    (rc = collect_params(t, err)) || (rc = build_net(t, 0, err)) ||
	    (rc = check_data(t, err)))
		goto fail;
	if (t->o.batch < 1 || t->o.batch > t->n)
		t->o.batch = t->o.batch < 1 ? 1 : t->n;
	if ((rc = split_batch(t, err)) || (rc = alloc_batch(t, err)))
		goto fail;
	if (t->n_params == 0 || t->n_live == 0) {
		/* (a trainable parameter that no node reads is never in the net) */
		rc = t->n_params == 0 || !recipe_on(&t->o)
		     ? graft_err_set(err, GRAFT_EINVAL, "nothing to train: every parameter is "
				     "frozen (see graft-freeze)")
		     : graft_err_set(err, GRAFT_EINVAL, "nothing trains first: the recipe starts "
				     "with the head (after the last block boundary), and no "
				     "parameter there is trainable");
		goto fail;
	}
	if ((rc = plan_net(t, 0, err)) || (rc = layout_gradients(t, err)) ||
	    (rc = check_output(t, err)))
		goto fail;
	cache_setup(t);
	*out = t;
	return 0;
fail:
	graft_trainer_free(t);
	return rc;
}

int64_t graft_trainer_batch(const struct graft_trainer *t)
{
	return t->o.batch;
}

int64_t graft_trainer_steps_done(const struct graft_trainer *t)
{
	return t->step;
}

int64_t graft_trainer_classes(const struct graft_trainer *t)
{
	return t->classes;
}

size_t graft_trainer_param_count(const struct graft_trainer *t)
{
	return t->n_live;
}

/* ---- one step ---------------------------------------------------------------------------- */

/* Asks the loader for unit u's piece: its samples, each drawn for its own epoch. */
static int request_unit(struct graft_trainer *t, int64_t u, struct graft_err *err)
{
	for (int64_t j = 0; j < t->rows; j++) {
		t->req_samples[j] = unit_sample(t, u, j);
		t->req_epochs[j] = ((u / t->parts) * t->o.batch + unit_pos(t, u, j)) / t->n;
	}
	int rc = graft_loader_request(t->loader, t->req_samples, t->req_epochs, t->rows, err);
	if (!rc)
		t->pending[(t->pending_at + t->n_pending++) % t->ahead] = u;
	return rc;
}

/* Keeps the loader making the pieces of unit u and the units after it, up to its depth
 * and the run's end: those not in xb and whose samples are not all cached yet (one that
 * is cached by the time it comes is taken and left unused). */
static int request_ahead(struct graft_trainer *t, int64_t u, struct graft_err *err)
{
	int64_t end = t->o.total_steps * t->parts;
	int rc;

	if (t->next_request < u)
		t->next_request = u;
	while (t->n_pending < t->ahead && t->next_request <= u + t->ahead &&
	       (t->o.total_steps <= 0 || t->next_request < end)) {
		int64_t k = t->next_request++;
		if (k != t->xb_unit && !cache_hit(t, k) && (rc = request_unit(t, k, err)))
			return rc;
	}
	return 0;
}

/* Takes the oldest piece requested into xb. */
static int take_pending(struct graft_trainer *t, struct graft_err *err)
{
	int rc = graft_loader_take(t->loader, t->xb, err);

	t->pending_at = (t->pending_at + 1) % t->ahead;
	t->n_pending--;
	return rc;
}

/* Unit u's labels or targets into yb. */
static void labels_of(struct graft_trainer *t, int64_t u)
{
	size_t ys = t->y->dtype == GRAFT_INT64 ? sizeof(int64_t) : t->target_floats * sizeof(float);

	for (int64_t j = 0; j < t->rows; j++)
		memcpy((char *)t->yb.data + (size_t)j * ys,
		       (const char *)t->y->data + (size_t)unit_sample(t, u, j) * ys, ys);
}

/* Unit u's piece into xb and yb (once per unit): from the loader, which made it ahead
 * when asked in time. */
static int gather(struct graft_trainer *t, int64_t u, struct graft_err *err)
{
	int rc;

	if (t->xb_unit == u)
		return 0;
	t->xb_unit = -1;
	if (t->n_pending && t->pending[t->pending_at] != u) {
		/* not what was asked for ahead (a resume elsewhere): start the queue afresh */
		while (t->n_pending)
			if ((rc = take_pending(t, err)))
				return rc;
		t->next_request = u;
	}
	if (!t->n_pending && (rc = request_unit(t, u, err)))
		return rc;
	if ((rc = take_pending(t, err)))
		return rc;
	labels_of(t, u);
	t->xb_unit = u;
	return 0;
}

static int loss_and_grad(struct graft_trainer *t, const struct graft_array *out, double *loss,
			 int64_t *correct, struct graft_err *err)
{
	if (t->detector) {
		int rc = detector_targets(t->yb.data, t->rows, 0, t->ytarget, err);
		return rc ? rc : graft_loss_binary_cross_entropy(out->data, t->ytarget,
								  (uint64_t)t->rows, t->rows,
								  t->dlogits, loss, correct, err);
	}
	if (t->probs)
		return cross_entropy_probs(out->data, t->yb.data, t->rows, t->classes,
					   t->o.label_smoothing, t->logp, t->dlogits, loss, correct,
					   err);
	if (t->classes)
		return graft_loss_cross_entropy(out->data, t->yb.data, t->rows, t->classes,
						t->o.label_smoothing, t->dlogits, loss, correct, err);
	if (t->binary)
		return graft_loss_binary_cross_entropy(out->data, t->yb.data,
						       out->nbytes / sizeof(float), t->rows,
						       t->dlogits, loss, correct, err);
	*correct = 0;
	return graft_loss_mse(out->data, t->yb.data, out->nbytes / sizeof(float), t->dlogits,
			      loss, err);
}

/* The sum of g's squares in double, in chunks summed in parallel and then in order: the
 * same bits whatever the thread count. */
#define SQ_CHUNK 65536
static double sum_squares(const float *g, uint64_t n)
{
	int64_t chunks = (int64_t)((n + SQ_CHUNK - 1) / SQ_CHUNK);
	double part[64], *parts = chunks <= 64 ? part : malloc((size_t)chunks * sizeof(double));
	double sq = 0;

	if (!parts)
		return NAN;     /* (reported as gradients not finite) */
#pragma omp parallel for schedule(static) if (chunks > 1)
	for (int64_t c = 0; c < chunks; c++) {
		const float *p = g + (uint64_t)c * SQ_CHUNK;
		int64_t len = c == chunks - 1 ? (int64_t)(n - (uint64_t)c * SQ_CHUNK) : SQ_CHUNK;
		double s = 0;
#pragma omp simd reduction(+:s)
		for (int64_t k = 0; k < len; k++)
			s += (double)p[k] * p[k];
		parts[c] = s;
	}
	for (int64_t c = 0; c < chunks; c++)
		sq += parts[c];
	if (parts != part)
		free(parts);
	return sq;
}

/* torch.nn.utils.clip_grad_norm_: scale every gradient (grads[i]: live parameter i's) by
 * max / (norm + 1e-6) when the global L2 norm exceeds max.  Returns the norm before
 * clipping. */
static double clip_gradients(struct graft_trainer *t, float **grads)
{
	double sq = 0;

	for (size_t i = 0; i < t->n_live; i++) {
		struct graft_net_tensor nt;
		graft_net_tensor(t->net, t->net_index[t->live[i]], &nt);
		sq += sum_squares(grads[i], nt.numel);
	}
	double norm = sqrt(sq);
	if (t->o.clip_norm > 0 && norm > 0) {
		float coef = (float)(t->o.clip_norm / (norm + 1e-6));
		if (coef < 1)
			for (size_t i = 0; i < t->n_live; i++) {
				struct graft_net_tensor nt;
				graft_net_tensor(t->net, t->net_index[t->live[i]], &nt);
				int64_t n = (int64_t)nt.numel;
#pragma omp parallel for simd if (n > SQ_CHUNK)
				for (int64_t k = 0; k < n; k++)
					grads[i][k] *= coef;
			}
	}
	return norm;
}

/* Unit u's piece: its data, forward, loss and backward; its loss and correct count are
 * added to s's. */
static int run_piece(struct graft_trainer *t, int64_t u, struct graft_step_stats *s,
		     struct graft_err *err)
{
	int last = u % t->parts == t->parts - 1;
	struct graft_array out, *ogs;
	double t0 = graft_now(), t1, loss;
	int64_t correct;
	int rc;

	if ((rc = request_ahead(t, u, err)))
		return rc;
	if (t->n_pending && t->pending[t->pending_at] == u &&
	    (rc = gather(t, u, err)))       /* made ahead: taken, even if now cached */
		return rc;
	/* Dropout: the step's masks, row by row from the piece's place in the batch */
	graft_net_draw_rows(t->net, train_seed_mix(t->o.seed, (uint64_t)(u / t->parts),
						   SALT_DROPOUT), unit_pos(t, u, 0));
	if (cache_hit(t, u)) {
		cache_move(t, u, 0);
		labels_of(t, u);        /* (labels still come from the data) */
		s->data_s += (t1 = graft_now()) - t0;
		if ((rc = graft_net_run_region(t->net, err)))
			return rc;
	} else {
		if ((rc = gather(t, u, err)))
			return rc;
		s->data_s += (t1 = graft_now()) - t0;
		if ((rc = graft_net_run(t->net, t->xb, t->n_x, err)))
			return rc;
		if (t->cache.on)
			cache_move(t, u, 1);
	}
	graft_net_output(t->net, 0, &out);
	if ((rc = loss_and_grad(t, &out, &loss, &correct, err)))
		return rc;
	s->loss += loss;
	s->correct += correct;
	/* Outputs after the first get no gradient. */
	size_t n_out = graft_net_output_count(t->net);
	if (!(ogs = calloc(n_out + 1, sizeof(*ogs))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	ogs[0] = out;
	ogs[0].data = t->dlogits;
	s->forward_s += (t0 = graft_now()) - t1;
	if (t->xchg && last) {          /* the gradients go to the exchange as they come */
		for (size_t b = 0; b < t->n_buckets; b++)
			t->buckets[b].left = t->buckets[b].params;
		t->collecting = 1;
	}
	rc = graft_net_backward(t->net, ogs, n_out, err);
	t->collecting = 0;
	free(ogs);
	s->backward_s += graft_now() - t0;
	return rc;
}

/* Live parameter i's gradient into gsum at its place: copied, or added. */
static void add_gradient(struct graft_trainer *t, size_t i, int copy)
{
	struct graft_net_tensor nt;
	graft_net_tensor(t->net, t->net_index[t->live[i]], &nt);
	int64_t n = (int64_t)nt.numel;
	const float *d = nt.grad;
	float *g = t->gsum + t->goff[i];

	if (copy) {
		memcpy(g, d, sizeof(float) * (size_t)n);
		return;
	}
#pragma omp parallel for simd if (n > SQ_CHUNK)
	for (int64_t j = 0; j < n; j++)
		g[j] += d[j];
}

/* Piece k's gradients into gsum: copied for the first piece, added for the others. */
static void keep_gradients(struct graft_trainer *t, int k)
{
	for (size_t i = 0; i < t->n_live; i++)
		add_gradient(t, i, k == 0);
}

/* graft_net_opts.grad_ready during the step's last piece: the gradient into gsum, and a
 * bucket whose gradients are all final on to the exchange. */
static int grad_ready(void *ctx, size_t tensor, struct graft_err *err)
{
	struct graft_trainer *t = ctx;
	size_t i = tensor < t->n_live_pos ? t->live_pos[tensor] : SIZE_MAX;
	struct bucket *b;

	if (!t->collecting || i == SIZE_MAX)
		return 0;
	add_gradient(t, i, t->parts == 1);
	b = &t->buckets[t->bucket_of[i]];
	if (--b->left == 0)
		return exchange_post(t->xchg, t->gsum + b->at, b->len, t->parts, err);
	return 0;
}

enum { STATE_SAVE, STATE_ADD, STATE_LOAD };

/* The net's running statistics (its tensors that are not parameters, in its order)
 * and flat: STATE_SAVE copies them into flat, STATE_ADD adds them to it, STATE_LOAD
 * copies flat into them.  Returns their floats. */
static size_t move_state(struct graft_trainer *t, float *flat, int how)
{
	size_t at = 0;

	for (size_t i = 0; i < graft_net_tensor_count(t->net); i++) {
		struct graft_net_tensor nt;
		graft_net_tensor(t->net, i, &nt);
		if (nt.is_param)
			continue;
		for (uint64_t j = 0; flat && j < nt.numel; j++)
			if (how == STATE_SAVE)
				flat[at + j] = nt.data[j];
			else if (how == STATE_ADD)
				flat[at + j] += nt.data[j];
			else
				nt.data[j] = flat[at + j];
		at += nt.numel;
	}
	return at;
}

/* Room for the running statistics of the current net, when pieces must average them:
 * every piece of this process starts from the step's (state0), and their results are
 * summed (state_sum). */
static int state_room(struct graft_trainer *t, struct graft_err *err)
{
	size_t n = move_state(t, NULL, STATE_SAVE);

	if (n <= t->n_state)
		return 0;
	free(t->state0);
	free(t->state_sum);
	t->state0 = malloc(sizeof(float) * n);
	t->state_sum = malloc(sizeof(float) * n);
	t->n_state = t->state0 && t->state_sum ? n : 0;
	return t->n_state ? 0 : graft_err_set(err, GRAFT_ENOMEM, "out of memory");
}

/* Before piece k's run (k > 0): the running statistics as the step found them. */
static void state_before(struct graft_trainer *t, int k)
{
	if (t->parts > 1 && k > 0)
		move_state(t, t->state0, STATE_LOAD);
	else if (t->parts > 1)
		move_state(t, t->state0, STATE_SAVE);
}

/* After piece k's run: its running statistics summed. */
static void state_after(struct graft_trainer *t, int k)
{
	if (t->parts > 1)
		move_state(t, t->state_sum, k == 0 ? STATE_SAVE : STATE_ADD);
}

/*
 * After the pieces: the gradients (into grads[], by live index), the running statistics
 * and the step's loss and correct count made the means over the pieces and processes,
 * equal on every process.  Alone with one piece, grads[] are the net's own gradients.
 */
static int average_pieces(struct graft_trainer *t, struct graft_step_stats *s, float **grads,
			  struct graft_err *err)
{
	const struct graft_comm *c = t->group > 1 ? t->o.comm : NULL;
	int pieces = t->parts * t->group, average_state = !(t->group > 1 && t->o.sync_bn);
	size_t n = 0, n_state = move_state(t, NULL, STATE_SAVE);
	double t0 = graft_now(), sums[2] = {s->loss, (double)s->correct};
	int rc = 0;

	for (size_t i = 0; i < t->n_live; i++) {
		struct graft_net_tensor nt;
		graft_net_tensor(t->net, t->net_index[t->live[i]], &nt);
		grads[i] = t->gsum ? t->gsum + t->goff[i] : (float *)nt.grad;
		n += nt.numel;
	}
	if (pieces == 1)
		return 0;
	if (t->xchg) {                  /* (posted during backward, bucket by bucket) */
		if ((rc = exchange_wait(t->xchg, err)))
			return rc;
	} else {
		if (t->parts > 1)
			train_divide(t->gsum, n, t->parts);
		if (c && (rc = graft_comm_mean(c, t->gsum, n, err)))
			return rc;
	}
	if (n_state && average_state) {
		if (t->parts == 1)
			move_state(t, t->state_sum, STATE_SAVE);
		else
			train_divide(t->state_sum, n_state, t->parts);
		if (c && (rc = graft_comm_mean(c, t->state_sum, n_state, err)))
			return rc;
		move_state(t, t->state_sum, STATE_LOAD);
	}
	if (c && (rc = graft_comm_sum(c, sums, 2, err)))
		return rc;
	s->loss = sums[0] / pieces;
	s->correct = (int64_t)sums[1];
	s->comm_s = graft_now() - t0;
	return 0;
}

int graft_trainer_step(struct graft_trainer *t, struct graft_step_stats *s,
		       struct graft_err *err)
{
	float **grads;
	double lr = graft_trainer_lr(t, t->step), t0;
	int rc;

	if (t->step >= t->next_start && (rc = rebuild(t, t->step, err)))
		return rc;
	memset(s, 0, sizeof(*s));
	s->step = t->step;
	s->lr = lr;
	if ((t->parts > 1 || t->group > 1) && (rc = state_room(t, err)))
		return rc;
	for (int k = 0; k < t->parts; k++) {
		state_before(t, k);
		if ((rc = run_piece(t, t->step * t->parts + k, s, err)))
			return rc;
		state_after(t, k);
		if (t->gsum && !(t->xchg && k == t->parts - 1))
			keep_gradients(t, k);
	}
	s->count = t->o.batch;
	if (!(grads = calloc(t->n_live + 1, sizeof(*grads))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	if ((rc = average_pieces(t, s, grads, err))) {
		free(grads);
		return rc;
	}
	/* (the same on every process: the loss and gradients are the group's) */
	if (!isfinite(s->loss)) {
		free(grads);
		return graft_err_set(err, GRAFT_EDIVERGED, "the loss is %s at step %lld",
				     isnan(s->loss) ? "NaN" : "infinite", (long long)t->step + 1);
	}
	t0 = graft_now();
	s->grad_norm = clip_gradients(t, grads);
	if (!isfinite(s->grad_norm)) {
		free(grads);
		return graft_err_set(err, GRAFT_EDIVERGED, "the gradients are not finite at step %lld",
				     (long long)t->step + 1);
	}
	graft_optim_begin_step(t->optim);
	for (size_t i = 0; i < t->n_live; i++) {
		size_t k = t->live[i];
		struct graft_net_tensor nt;
		graft_net_tensor(t->net, t->net_index[k], &nt);
		graft_optim_update(t->optim, k, nt.data, grads[i], lr * t->lr_mult[k]);
	}
	free(grads);
	s->update_s = graft_now() - t0;
	t->step++;
	return 0;
}

/* ---- evaluation ----------------------------------------------------------------------------- */

int graft_eval_init(struct graft_eval *e, int64_t classes, struct graft_err *err)
{
	memset(e, 0, sizeof(*e));
	e->classes = classes;
	if (classes > 0 && !(e->confusion = calloc((size_t)(classes * classes), sizeof(int64_t))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
}

void graft_eval_release(struct graft_eval *e)
{
	free(e->confusion);
	e->confusion = NULL;
}

/* The rows [at, at + b) of the loader's samples, padded to rows by repeating the last,
 * requested for evaluation. */
static int request_rows(struct graft_loader *l, int64_t at, int64_t b, int64_t rows,
			int64_t *samples, struct graft_err *err)
{
	for (int64_t j = 0; j < rows; j++)
		samples[j] = at + (j < b ? j : b - 1);
	return graft_loader_request(l, samples, NULL, rows, err);
}

/* Scores out (the net's first output, batch xb0 rows) against the labels or targets of
 * y's rows [at, at + b), adding to *total and e. */
static int score(struct graft_net *net, const struct graft_array *out, int64_t rows,
		 const struct graft_array *y, int64_t at, int64_t b, double *total,
		 struct graft_eval *e, struct graft_err *err)
{
	uint64_t yper = 1;
	double loss;
	int64_t correct = 0;
	int rc;

	for (int d = 1; d < y->rank; d++)
		yper *= (uint64_t)y->dims[d];
	if (out->dtype != GRAFT_FLOAT || out->rank < 1 || out->dims[0] != rows ||
	    out->nbytes % (sizeof(float) * (size_t)rows))
		return graft_err_set(err, GRAFT_EUNSUPPORTED, "the model's first output is not "
				     "float [batch, ...]");
	int64_t k = (int64_t)(out->nbytes / sizeof(float) / (size_t)rows);
	const float *z = out->data;
	if (y->dtype == GRAFT_INT64 && is_detector(net, (uint64_t)k)) {
		const int64_t *lab = (const int64_t *)y->data + at;
		float *tgt = malloc((size_t)b * sizeof(float) + 1);
		if (!tgt)
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		rc = detector_targets(lab, b, at, tgt, err);
		if (!rc)
			rc = graft_loss_binary_cross_entropy(z, tgt, (uint64_t)b, b, NULL, &loss,
							     &correct, err);
		free(tgt);
		if (rc)
			return rc;
		if (e->classes && e->classes != 2)
			return graft_err_set(err, GRAFT_EINVAL, "the model detects one class (a "
					     "Sigmoid output); the data has %lld classes",
					     (long long)e->classes);
		for (int64_t i = 0; i < b && e->confusion; i++)
			e->confusion[lab[i] * 2 + (z[i] >= 0.5f)]++;
	} else if (y->dtype == GRAFT_INT64) {
		const int64_t *lab = (const int64_t *)y->data + at;
		if (e->classes && k != e->classes)
			return graft_err_set(err, GRAFT_EINVAL, "the model has %lld outputs; the data "
					     "%lld classes", (long long)k, (long long)e->classes);
		if (output_is_softmax(net)) {
			float *logp = malloc((size_t)(b * k) * sizeof(float) + 1);
			if (!logp)
				return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			rc = cross_entropy_probs(z, lab, b, k, 0, logp, NULL, &loss, &correct, err);
			free(logp);
		} else {
			rc = graft_loss_cross_entropy(z, lab, b, k, 0, NULL, &loss, &correct, err);
		}
		if (rc)
			return rc;
		for (int64_t i = 0; i < b && e->confusion; i++)
			e->confusion[lab[i] * e->classes + train_arg_max(z + i * k, k)]++;
	} else {
		if ((uint64_t)k != yper)
			return graft_err_set(err, GRAFT_EINVAL, "the model gives %lld values per sample; "
					     "the targets have %llu", (long long)k,
					     (unsigned long long)yper);
		const float *tgt = (const float *)y->data + (uint64_t)at * yper;
		rc = output_is_sigmoid(net)
		     ? graft_loss_binary_cross_entropy(z, tgt, (uint64_t)(b * k), b, NULL, &loss,
						       &correct, err)
		     : graft_loss_mse(z, tgt, (uint64_t)(b * k), NULL, &loss, err);
		if (rc)
			return rc;
	}
	*total += loss * (double)b;
	e->correct += correct;
	e->count += b;
	return 0;
}

/* A group's evaluation: the processes' sums (loss times count, counts, confusion) added,
 * the same on every process. */
static int eval_sum(const struct graft_comm *c, double *total, struct graft_eval *e,
		    struct graft_err *err)
{
	size_t nc = (size_t)(e->confusion ? e->classes * e->classes : 0);
	double *v = malloc(sizeof(double) * (3 + nc));
	int rc;

	if (!v)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	v[0] = *total;
	v[1] = (double)e->correct;
	v[2] = (double)e->count;
	for (size_t i = 0; i < nc; i++)
		v[3 + i] = (double)e->confusion[i];
	if (!(rc = graft_comm_sum(c, v, 3 + nc, err))) {
		*total = v[0];
		e->correct = (int64_t)v[1];
		e->count = (int64_t)v[2];
		for (size_t i = 0; i < nc; i++)
			e->confusion[i] = (int64_t)v[3 + i];
	}
	free(v);
	return rc;
}

/* The samples of l in batches, scored.  With pad, the last, partial batch is filled up
 * to batch by repeating its last sample (whose extra results are ignored), so that a net
 * planned for batch is never replanned: the trainer evaluates between epochs with the
 * training net.  Batches are requested as far ahead as the loader makes them.  With a
 * group (c), each process scores its share of the samples, [rank * n / size, (rank + 1)
 * * n / size), and the shares are added up. */
static int evaluate(struct graft_net *net, struct graft_loader *l, const struct graft_array *y,
		    int64_t batch, int pad, const struct graft_comm *c, struct graft_eval *e,
		    struct graft_err *err)
{
	struct graft_array xb[GRAFT_DATASET_MAX_INPUTS], out;
	size_t n_x = graft_loader_inputs(l, xb);
	int64_t all = xb[0].dims[0], ahead = graft_loader_ahead(l), pending = 0;
	int group = c && c->size > 1;
	int64_t from = group ? all * c->rank / c->size : 0;
	int64_t n = group ? all * (c->rank + 1) / c->size : all, asked = from;
	int64_t *samples = NULL;
	double total = 0;
	int rc = 0;

	if (batch < 1)
		batch = 1;
	if (batch > n - from && !pad)
		batch = n - from > 0 ? n - from : 1;
	if (y->rank < 1 || y->dims[0] != all)
		return graft_err_set(err, GRAFT_EINVAL, "the data has %lld samples but %lld labels",
				     (long long)all, y->rank ? (long long)y->dims[0] : 0LL);
	for (size_t k = 0; k < n_x; k++) {
		size_t row = xb[k].nbytes / (size_t)all;
		if (!(xb[k].data = malloc(row * (size_t)batch + 1)))
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if (!rc && !(samples = malloc(sizeof(int64_t) * (size_t)batch)))
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (int64_t at = from; !rc && at < n; at += batch) {
		int64_t b = n - at < batch ? n - at : batch, rows = pad ? batch : b;
		for (; !rc && asked < n && asked < at + ahead * batch; asked += batch, pending++) {
			int64_t ab = n - asked < batch ? n - asked : batch;
			rc = request_rows(l, asked, ab, pad ? batch : ab, samples, err);
		}
		if (rc)
			break;
		pending--;
		if ((rc = graft_loader_take(l, xb, err)) || (rc = graft_net_run(net, xb, n_x, err)))
			break;
		graft_net_output(net, 0, &out);
		rc = score(net, &out, rows, y, at, b, &total, e, err);
	}
	/* what was asked for and not taken (after a failure), so that l starts afresh */
	for (struct graft_err ignored; pending > 0; pending--)
		graft_loader_take(l, xb, &ignored);
	for (size_t k = 0; k < n_x; k++)
		free(xb[k].data);
	free(samples);
	if (!rc && group)
		rc = eval_sum(c, &total, e, err);
	e->loss = e->count ? total / (double)e->count : 0;
	e->accuracy = e->count ? (double)e->correct / (double)e->count : 0;
	return rc;
}

/* evaluate over in-memory arrays, through a loader of their rows. */
static int evaluate_arrays(struct graft_net *net, const struct graft_array *x, size_t n_x,
			   const struct graft_array *y, int64_t batch, int pad,
			   const struct graft_comm *c, struct graft_eval *e, struct graft_err *err)
{
	struct graft_loader_opts lo = {0};
	struct graft_loader *l;
	int rc = graft_loader_new(&l, x, n_x, &lo, err);

	if (!rc)
		rc = evaluate(net, l, y, batch, pad, c, e, err);
	graft_loader_free(l);
	return rc;
}

int graft_evaluate(struct graft_net *net, const struct graft_array *x, size_t n_x,
		   const struct graft_array *y,
		   int64_t batch, struct graft_eval *e, struct graft_err *err)
{
	return evaluate_arrays(net, x, n_x, y, batch, 0, NULL, e, err);
}

int graft_evaluate_group(struct graft_net *net, struct graft_loader *l,
			 const struct graft_array *y, int64_t batch, const struct graft_comm *c,
			 struct graft_eval *e, struct graft_err *err)
{
	return evaluate(net, l, y, batch, 0, c, e, err);
}

int graft_evaluate_loader(struct graft_net *net, struct graft_loader *l,
			  const struct graft_array *y, int64_t batch, struct graft_eval *e,
			  struct graft_err *err)
{
	return graft_evaluate_group(net, l, y, batch, NULL, e, err);
}

int graft_trainer_evaluate(struct graft_trainer *t, const struct graft_array *x, size_t n_x,
			   const struct graft_array *y, struct graft_eval *e, struct graft_err *err)
{
	int rc;

	graft_net_set_training(t->net, 0);
	rc = evaluate_arrays(t->net, x, n_x, y, t->rows, 1, t->group > 1 ? t->o.comm : NULL, e,
			     err);
	graft_net_set_training(t->net, 1);
	return rc;
}

int graft_trainer_evaluate_loader(struct graft_trainer *t, struct graft_loader *l,
				  const struct graft_array *y, struct graft_eval *e,
				  struct graft_err *err)
{
	int rc;

	graft_net_set_training(t->net, 0);
	rc = evaluate(t->net, l, y, t->rows, 1, t->group > 1 ? t->o.comm : NULL, e, err);
	graft_net_set_training(t->net, 1);
	return rc;
}

/* ---- saving and resuming --------------------------------------------------------------------- */

/* Sets the stored tensor name (adding it, detached, when absent) to data. */
static int put_state(struct graft_model *m, const char *name, int dtype, int rank,
		     const int64_t *dims, const void *data, size_t nbytes, struct graft_err *err)
{
	long i = graft_model_find_tensor(m, name);

	if (i >= 0)
		return graft_model_set_tensor_data(m, (size_t)i, data, nbytes, err);
	return graft_model_add_tensor(m, name, dtype, rank, dims, data, GRAFT_ROLE_STATE,
				      GRAFT_SOURCE_DETACHED, NULL, err);
}

/* The name of a parameter's optimizer state which (0 momentum or first moment, 1 second
 * moment) in a checkpoint. */
static void state_name(const struct graft_trainer *t, char *buf, size_t size,
		       const char *param, int which)
{
	snprintf(buf, size, STATE_PREFIX "%s/%s", param, which ? "exp_avg_sq" :
		 t->o.optim.kind == GRAFT_OPTIM_SGD ? "momentum" : "exp_avg");
}

static int save_tensor(struct graft_model *m, const struct graft_net_tensor *nt,
		       struct graft_err *err)
{
	long i = graft_model_find_tensor(m, nt->name);

	if (i < 0)
		return graft_err_set(err, GRAFT_EINVAL, "the model has no tensor '%s'", nt->name);
	return graft_model_set_tensor_data(m, (size_t)i, nt->data,
					   (size_t)nt->numel * sizeof(float), err);
}

int graft_trainer_save(struct graft_trainer *t, struct graft_model *m, struct graft_err *err)
{
	char name[600];
	int64_t one = 1, four = 4, step = t->step;
	int rc;

	if ((rc = store_tensors(t, m, err)))
		return rc;
	/* the state of the parameters updated so far (a recipe starts some later) */
	for (size_t k = 0; k < t->n_params; k++) {
		struct graft_tensor mt;
		graft_model_tensor(t->model, t->tensor[k], &mt);
		for (int which = 0; which < 2; which++) {
			const float *s = graft_optim_state(t->optim, k, which);
			if (!s || graft_optim_param_steps(t->optim, k) == 0)
				continue;
			state_name(t, name, sizeof(name), mt.name, which);
			if ((rc = put_state(m, name, GRAFT_FLOAT, mt.rank, mt.dims, s,
					    (size_t)mt.numel * sizeof(float), err)))
				return rc;
		}
	}
	if ((rc = put_state(m, STATE_STEP, GRAFT_INT64, 1, &one, &step, sizeof(step), err)) ||
	    (rc = put_state(m, STATE_RNG, GRAFT_INT64, 1, &four, autograd_rng(t->net)->s,
			    sizeof(autograd_rng(t->net)->s), err)))
		return rc;
	return graft_model_set_metadata(m, "graft.optimizer", graft_optim_name(t->o.optim.kind),
					err);
}

static const void *state_data(const struct graft_model *m, const char *name, size_t nbytes)
{
	long i = graft_model_find_tensor(m, name);
	struct graft_tensor t;

	if (i < 0)
		return NULL;
	graft_model_tensor(m, (size_t)i, &t);
	return t.nbytes == nbytes ? t.data : NULL;
}

int graft_trainer_resume(struct graft_trainer *t, const struct graft_model *ck,
			 struct graft_err *err)
{
	char name[600];
	const int64_t *step = state_data(ck, STATE_STEP, sizeof(int64_t));
	const void *rng = state_data(ck, STATE_RNG, sizeof(autograd_rng(t->net)->s));
	const char *opt = NULL;

	for (size_t i = 0; i < ck->proto->n_metadata_props; i++)
		if (ck->proto->metadata_props[i]->key &&
		    strcmp(ck->proto->metadata_props[i]->key, "graft.optimizer") == 0)
			opt = ck->proto->metadata_props[i]->value;
	if (!step || !rng)
		return graft_err_set(err, GRAFT_EINVAL, "not a checkpoint: no training position");
	if (opt && strcmp(opt, graft_optim_name(t->o.optim.kind)) != 0)
		return graft_err_set(err, GRAFT_EINVAL, "the checkpoint was trained with %s, not %s",
				     opt, graft_optim_name(t->o.optim.kind));
	/* the net of the checkpoint's step first: it may train more than step 0's */
	if (*step >= t->next_start) {
		int rc = rebuild(t, *step, err);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < graft_net_tensor_count(t->net); i++) {
		struct graft_net_tensor nt;
		const void *d;
		graft_net_tensor(t->net, i, &nt);
		if (!(d = state_data(ck, nt.name, (size_t)nt.numel * sizeof(float))))
			return graft_err_set(err, GRAFT_EINVAL, "the checkpoint has no tensor '%s' of "
					     "%llu floats", nt.name, (unsigned long long)nt.numel);
		if (d != nt.data)
			memcpy(nt.data, d, (size_t)nt.numel * sizeof(float));
	}
	graft_optim_restore(t->optim, *step, 0);
	for (size_t k = 0; k < t->n_params; k++) {
		const char *pname = t->model->tensors[t->tensor[k]].name;
		uint64_t numel = t->model->tensors[t->tensor[k]].numel;
		/* updated once a step since its start, if the net trains it at all */
		int64_t updates = t->net_index[k] != SIZE_MAX ? *step - t->start[k] : 0;
		for (int which = 0; which < 2 && updates > 0; which++) {
			float *s = graft_optim_state(t->optim, k, which);
			const void *d;
			if (!s)
				continue;
			state_name(t, name, sizeof(name), pname, which);
			if (!(d = state_data(ck, name, (size_t)numel * sizeof(float))))
				return graft_err_set(err, GRAFT_EINVAL, "the checkpoint has no "
						     "optimizer state '%s'", name);
			memcpy(s, d, (size_t)numel * sizeof(float));
		}
		graft_optim_restore_param(t->optim, k, updates);
	}
	t->step = *step;
	return 0;
}

int train_batch_rows(const struct graft_array *x, size_t n_x, int64_t at, int64_t b,
		     int64_t rows, struct graft_array *xb, void **bufs, struct graft_err *err)
{
	for (size_t k = 0; k < n_x; k++) {
		size_t row = x[k].nbytes / (size_t)x[k].dims[0];
		xb[k] = x[k];
		xb[k].name = NULL;
		xb[k].dims[0] = rows;
		xb[k].data = (char *)x[k].data + (size_t)at * row;
		xb[k].nbytes = (size_t)rows * row;
		bufs[k] = NULL;
		if (rows == b)
			continue;
		if (!(bufs[k] = malloc((size_t)rows * row + 1))) {
			for (size_t j = 0; j < k; j++) {
				free(bufs[j]);
				bufs[j] = NULL;
			}
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		}
		memcpy(bufs[k], xb[k].data, (size_t)b * row);
		for (int64_t i = b; i < rows; i++)
			memcpy((char *)bufs[k] + (size_t)i * row, (char *)xb[k].data + (size_t)(b - 1) * row,
			       row);
		xb[k].data = bufs[k];
	}
	return 0;
}
