/*
 * search.c: graft-plan's measured choice of what to fine-tune (docs/plan.md).  The
 * candidates train on part of the user's data and are scored on samples held apart from
 * that part, by successive halving (Jamieson and Talwalkar 2016; the rounds of
 * Hyperband and ASHA): all of them briefly, then the best third for three times as long,
 * and so on.  With little data one held-apart split is noise (one image in twenty is 5
 * points), so the scores are means over k folds.
 *
 * Every trial starts from the model's weights: they are kept aside before the first and
 * put back after each.  Trials are reproducible: the folds, the data order and the
 * trials' lengths follow from the seed and the data alone (the seconds budget, when
 * given, can only stop the search early).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

const char *graft_strategy_name(enum graft_strategy s)
{
	switch (s) {
	case GRAFT_STRATEGY_HEAD: return "head";
	case GRAFT_STRATEGY_LP_FT: return "lp-ft";
	case GRAFT_STRATEGY_TOP: return "top";
	case GRAFT_STRATEGY_FULL: return "full";
	}
	return "?";
}

/* ---- folds ------------------------------------------------------------------------------ */

int64_t train_label_classes(const struct graft_array *y)
{
	int64_t n = y->dims[0], classes = 0;
	const int64_t *lab = y->data;

	for (int64_t i = 0; i < n; i++)
		classes = lab[i] + 1 > classes ? lab[i] + 1 : classes;
	return classes;
}

int graft_search_folds(const struct graft_array *y, int k, uint64_t seed, int *fold,
		       struct graft_err *err)
{
	int64_t n = y->dims[0], classes;
	const int64_t *lab = y->data;
	int64_t *idx;
	struct graft_rng r;
	int64_t dealt = 0;

	if (y->dtype != GRAFT_INT64 || y->rank != 1)
		return graft_err_set(err, GRAFT_EINVAL, "trials need class labels (int64 y)");
	if (k < 2)
		return graft_err_set(err, GRAFT_EINVAL, "%d folds: at least 2 are needed", k);
	for (int64_t i = 0; i < n; i++)
		if (lab[i] < 0)
			return graft_err_set(err, GRAFT_EINVAL, "label %lld of sample %lld is "
					     "negative", (long long)lab[i], (long long)i);
	classes = train_label_classes(y);
	if (!(idx = malloc(((size_t)n + 1) * sizeof(*idx))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	graft_rng_seed(&r, seed ^ 0x6a09e667f3bcc909ULL);
	/* class by class: its samples shuffled, dealt round the folds, starting where the
	 * last class stopped (so the folds' sizes differ by one at most) */
	for (int64_t c = 0; c < classes; c++) {
		size_t m = 0;
		for (int64_t i = 0; i < n; i++)
			if (lab[i] == c)
				idx[m++] = i;
		if (m == 0)
			continue;
		if (m < (size_t)k) {
			free(idx);
			return graft_err_set(err, GRAFT_EINVAL, "class %lld has %zu samples: fewer "
					     "than the %d folds the trials hold apart", (long long)c,
					     m, k);
		}
		graft_rng_shuffle(&r, idx, m);
		for (size_t j = 0; j < m; j++)
			fold[idx[j]] = (int)((dealt++) % k);
	}
	free(idx);
	return 0;
}

/* The samples of one array a whose fold is (in) or is not (!in) f, as a new array. */
static int subset_one(const struct graft_array *a, const int *fold, int f, int in,
		      struct graft_array *sa)
{
	int64_t n = a->dims[0], m = 0;
	size_t row = a->nbytes / (size_t)n;

	for (int64_t i = 0; i < n; i++)
		m += (fold[i] == f) == in;
	*sa = *a;
	sa->name = NULL;
	sa->dims[0] = m;
	sa->nbytes = row * (size_t)m;
	if (!(sa->data = malloc(sa->nbytes + 1)))
		return -1;
	for (int64_t i = 0, j = 0; i < n; i++)
		if ((fold[i] == f) == in)
			memcpy((char *)sa->data + (size_t)j++ * row, (const char *)a->data + (size_t)i * row,
			       row);
	return 0;
}

/* The samples of x (n_x inputs) and y whose fold is (in) or is not (!in) f, as new
 * arrays. */
static int subset(const struct graft_array *x, size_t n_x, const struct graft_array *y,
		  const int *fold, int f, int in, struct graft_array *sx, struct graft_array *sy,
		  struct graft_err *err)
{
	for (size_t k = 0; k < n_x; k++)
		if (subset_one(&x[k], fold, f, in, &sx[k]))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory for the trials' data");
	if (subset_one(y, fold, f, in, sy))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory for the trials' data");
	return 0;
}

/* ---- the model's starting point ----------------------------------------------------------- */

/* What training changes in m: its parameters and buffers (running statistics), and the
 * parameters' trainable flags. */
struct snapshot {
	void **data;            /* per tensor; NULL for those training leaves alone */
	int *trainable;
	size_t n;
};

static int snapshot_take(const struct graft_model *m, struct snapshot *s, struct graft_err *err)
{
	s->n = m->n_tensors;
	s->data = calloc(s->n + 1, sizeof(*s->data));
	s->trainable = calloc(s->n + 1, sizeof(*s->trainable));
	if (!s->data || !s->trainable)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n; i++) {
		const struct tensor_rec *t = &m->tensors[i];
		s->trainable[i] = t->trainable;
		if (t->role != GRAFT_ROLE_PARAMETER && t->role != GRAFT_ROLE_BUFFER)
			continue;
		if (!(s->data[i] = malloc(t->nbytes + 1)))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		memcpy(s->data[i], t->data, t->nbytes);
	}
	return 0;
}

static int snapshot_restore(struct graft_model *m, const struct snapshot *s,
			    struct graft_err *err)
{
	for (size_t i = 0; i < s->n && i < m->n_tensors; i++) {
		int rc;
		if (s->data[i] && memcmp(s->data[i], m->tensors[i].data, m->tensors[i].nbytes) &&
		    (rc = graft_model_set_tensor_data(m, i, s->data[i], m->tensors[i].nbytes, err)))
			return rc;
		m->tensors[i].trainable = s->trainable[i];
	}
	return 0;
}

static void snapshot_free(struct snapshot *s)
{
	for (size_t i = 0; i < s->n && s->data; i++)
		free(s->data[i]);
	free(s->data);
	free(s->trainable);
}

/* ---- candidates ------------------------------------------------------------------------- */

/* AdamW's rates around the usual fine-tuning one (the four-case recipe's 0.003), and ten
 * times them for a head trained alone, a linear model on fixed features. */
static const double rates[] = {0.001, 0.003, 0.01};
#define N_RATES (sizeof(rates) / sizeof(rates[0]))

static int add_candidate(struct graft_search *s, enum graft_strategy st, long blocks)
{
	for (size_t i = 0; i < s->n_candidates; i++)
		if (s->candidates[i].strategy == st && s->candidates[i].blocks == blocks)
			return 0;       /* the ladder's rungs coincide on a small network */
	for (size_t r = 0; r < N_RATES; r++) {
		struct graft_candidate *c = &s->candidates[s->n_candidates++];
		c->strategy = st;
		c->blocks = blocks;
		c->lr = rates[r] * (st == GRAFT_STRATEGY_HEAD ? 10 : 1);
	}
	return 0;
}

/* The head, LP-FT, the top 2, about a third and about half of the blocks, everything. */
static int make_candidates(struct graft_search *s, size_t blocks, struct graft_err *err)
{
	long ladder[3] = {2, (long)(blocks + 2) / 3, (long)(blocks + 1) / 2};

	if (!(s->candidates = calloc(6 * N_RATES, sizeof(*s->candidates))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	add_candidate(s, GRAFT_STRATEGY_HEAD, 1);
	add_candidate(s, GRAFT_STRATEGY_LP_FT, 0);
	for (int i = 0; i < 3; i++)
		if (ladder[i] >= 2 && (size_t)ladder[i] <= blocks)
			add_candidate(s, GRAFT_STRATEGY_TOP, ladder[i]);
	add_candidate(s, GRAFT_STRATEGY_FULL, 0);
	return 0;
}

/* ---- one trial ----------------------------------------------------------------------------- */

struct fold_data {
	struct graft_array x[GRAFT_DATASET_MAX_INPUTS], y;     /* training part */
	struct graft_array vx[GRAFT_DATASET_MAX_INPUTS], vy;   /* held-apart part */
	int owned;
};

struct ctx {
	struct graft_model *m;
	const struct graft_search_opts *o;
	struct graft_search *s;
	struct snapshot snap;
	struct fold_data *folds;
	size_t n_x;                     /* the inputs */
	int64_t batch, n;               /* the data's samples */
	double t0;
};

/* The seconds budget, over on this process (over) or on any of its group: *stopped. */
static int over_budget(const struct graft_search_opts *o, int over, int *stopped,
		       struct graft_err *err)
{
	double any = over;
	int rc = graft_comm_sum(o->comm, &any, 1, err);

	if (!rc && any > 0)
		*stopped = 1;
	return rc;
}

/* Trains candidate c for steps on fold f's training part and scores it on the held-apart
 * part; m is as it was after. */
static int run_fold(struct ctx *cx, const struct graft_candidate *c, int64_t steps, int f,
		    struct graft_eval *e, struct graft_err *err)
{
	struct fold_data *fd = &cx->folds[f];
	struct graft_freeze_rule rule = {.kind = GRAFT_FREEZE_LAST_BLOCKS, .train = 1,
					 .count = c->blocks};
	struct graft_train_opts to = {0};
	struct graft_trainer *t = NULL;
	int rc;

	graft_optim_defaults(&to.optim, GRAFT_OPTIM_ADAMW);
	to.optim.lr = c->lr;
	to.batch = cx->batch;
	to.total_steps = steps;
	to.schedule = GRAFT_SCHEDULE_COSINE;
	to.shuffle = 1;
	to.wisdom = cx->o->wisdom;
	to.comm = cx->o->comm;
	to.sync_bn = 1;         /* (a group trains as one process: the same pick) */
	to.seed = train_seed_mix(cx->o->seed, (uint64_t)f, 0x2545f4914f6cdd1dULL);  /* per fold */
	if (c->strategy == GRAFT_STRATEGY_LP_FT)
		to.lp_steps = steps / 3 > 0 ? steps / 3 : 1;
	if (to.lp_steps >= steps)
		to.lp_steps = 0;        /* a one-step trial: no room for two phases */
	if (!(rc = graft_model_freeze(cx->m, &rule, 1, NULL, NULL, err)) &&
	    !(rc = graft_trainer_new(&t, cx->m, fd->x, cx->n_x, &fd->y, &to, err))) {
		for (int64_t k = 0; k < steps && !rc; k++) {
			struct graft_step_stats st;
			rc = graft_trainer_step(t, &st, err);
		}
		if (!rc && !(rc = graft_eval_init(e, graft_trainer_classes(t), err)))
			rc = graft_trainer_evaluate(t, fd->vx, cx->n_x, &fd->vy, e, err);
	}
	graft_trainer_free(t);
	if (rc == GRAFT_EDIVERGED) {
		/* a rate too high for this candidate: the worst score, not an error */
		rc = 0;
		e->accuracy = 0;
		e->loss = INFINITY;
	}
	int rc2 = snapshot_restore(cx->m, &cx->snap, err);
	return rc ? rc : rc2;
}

/* The trial of candidate ci at rung over every fold. */
static int run_trial(struct ctx *cx, size_t ci, int rung, double epochs, int64_t steps,
		     struct graft_err *err)
{
	struct graft_search *s = cx->s;
	struct graft_trial *tr = &s->trials[s->n_trials];
	double t0 = graft_now(), sum = 0, sq = 0, loss = 0;
	int rc;

	memset(tr, 0, sizeof(*tr));
	tr->candidate = ci;
	tr->rung = rung;
	tr->epochs = epochs;
	tr->steps = steps;
	for (int f = 0; f < s->folds; f++) {
		struct graft_eval e = {0};
		if ((rc = run_fold(cx, &s->candidates[ci], steps, f, &e, err))) {
			graft_eval_release(&e);
			return rc;
		}
		sum += e.accuracy;
		sq += e.accuracy * e.accuracy;
		loss += e.loss;
		graft_eval_release(&e);
		s->spent_epochs += (double)(steps * cx->batch) / (double)cx->n;
	}
	tr->accuracy = sum / s->folds;
	tr->loss = loss / s->folds;
	tr->accuracy_sd = s->folds > 1 ? sqrt(fmax(0, (sq - sum * sum / s->folds) /
						    (s->folds - 1))) : 0;
	tr->seconds = graft_now() - t0;
	s->n_trials++;
	return 0;
}

/* Better first: accuracy, then loss, then the candidate's order (for a total order). */
static int better(const struct graft_trial *a, const struct graft_trial *b)
{
	if (a->accuracy != b->accuracy)
		return a->accuracy > b->accuracy;
	if (a->loss != b->loss)
		return a->loss < b->loss;
	return a->candidate < b->candidate;
}

/* ---- the rounds ---------------------------------------------------------------------------- */

/* Whether candidates a and b train the same part (they differ in rate alone). */
static int same_family(const struct graft_candidate *a, const struct graft_candidate *b)
{
	return a->strategy == b->strategy && a->blocks == b->blocks;
}

/*
 * Who goes on after the first round (its n trials from start, best first): each
 * strategy at its best rate before any strategy's second, then the rest in order, up
 * to want.  The first round's trials are a few steps long, and there a strategy that
 * trains a few parameters at a high rate leads while the whole network trails: ranked
 * together, the first round dropped every whole-network candidate on 10-class data where
 * it was the best trained to completion (examples/four-cases).  Strategies are compared
 * at their best rate instead.
 */
static size_t first_survivors(const struct graft_search *s, size_t start, size_t n,
			      size_t want, size_t *alive)
{
	size_t k = 0;

	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < n && k < want; i++) {
			const struct graft_candidate *c = &s->candidates[s->trials[start + i].candidate];
			int seen = 0, taken = 0;
			for (size_t j = 0; j < k; j++) {
				seen |= same_family(&s->candidates[alive[j]], c);
				taken |= alive[j] == s->trials[start + i].candidate;
			}
			if (!taken && (pass == 1 || !seen))
				alive[k++] = s->trials[start + i].candidate;
		}
	return k;
}

/* The rounds' sizes: all candidates, then a third of them (rounded up) while more than
 * three are left: 12, 4, 2; 18, 6, 2; 9, 3. */
static int rung_sizes(size_t n, size_t *sizes)
{
	int r = 0;

	sizes[r++] = n;
	while (n > GRAFT_SEARCH_ETA && r < 16) {
		n = (n + GRAFT_SEARCH_ETA - 1) / GRAFT_SEARCH_ETA;
		sizes[r++] = n;
	}
	return r;
}

/* Steps of a trial of length epochs on a training part of n_train samples: whole steps,
 * rounded down so that the budget holds, at least one. */
static int64_t trial_steps(double epochs, int64_t n_train, int64_t batch)
{
	int64_t s = (int64_t)floor(epochs * (double)n_train / (double)batch + 1e-9);
	return s > 0 ? s : 0;
}

/* The budget the rounds spend when the first's trials last e0 epochs (the later ones
 * e0 * 3^r, at most the final training's length), in full-network epochs over the data. */
static double schedule_cost(const struct graft_search *s, const size_t *sizes, int rungs,
			    double e0, int64_t batch, int64_t n)
{
	double cost = 0, e = e0;

	for (int r = 0; r < rungs; r++, e *= GRAFT_SEARCH_ETA) {
		double er = e < s->final_epochs ? e : s->final_epochs;
		int64_t st = trial_steps(er, s->train_samples, batch);
		cost += (double)sizes[r] * s->folds * (double)((st > 0 ? st : 1) * batch) / (double)n;
	}
	return cost;
}

/* The first round's trial length for the budget: the largest that fits (bisection on
 * the monotone cost). */
static double first_length(const struct graft_search *s, const size_t *sizes, int rungs,
			   int64_t batch, int64_t n)
{
	double lo = 0, hi = s->final_epochs;

	if (schedule_cost(s, sizes, rungs, hi, batch, n) <= s->budget_epochs)
		return hi;
	for (int i = 0; i < 60; i++) {
		double mid = (lo + hi) / 2;
		if (schedule_cost(s, sizes, rungs, mid, batch, n) <= s->budget_epochs)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static int setup_folds(struct ctx *cx, const struct graft_array *x, const struct graft_array *y,
		       struct graft_err *err)
{
	const struct graft_search_opts *o = cx->o;
	struct graft_search *s = cx->s;
	int k = o->folds, rc = 0, *fold;

	if (o->val_x) {
		s->folds = 1;
		if (!(cx->folds = calloc(1, sizeof(*cx->folds))))
			return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		memcpy(cx->folds[0].x, x, cx->n_x * sizeof(*x));
		memcpy(cx->folds[0].vx, o->val_x, cx->n_x * sizeof(*x));
		cx->folds[0].y = *y;
		cx->folds[0].vy = *o->val_y;
		s->train_samples = x->dims[0];
		s->val_samples = o->val_x->dims[0];
		return 0;
	}
	if (k == 0)
		k = x->dims[0] < GRAFT_SEARCH_KFOLD_BELOW ? 5 : 1;
	s->folds = k;
	/* one split: the fold 0 of as many as the held-apart fraction makes */
	int parts = k > 1 ? k : (int)lround(1 / (o->holdout > 0 ? o->holdout : 0.2));
	if (parts < 2)
		parts = 2;
	if (!(fold = malloc(((size_t)x->dims[0] + 1) * sizeof(*fold))) ||
	    !(cx->folds = calloc((size_t)k, sizeof(*cx->folds)))) {
		free(fold);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if ((rc = graft_search_folds(y, parts, o->seed, fold, err)))
		goto out;
	for (int f = 0; f < k && !rc; f++) {
		cx->folds[f].owned = 1;
		if (!(rc = subset(x, cx->n_x, y, fold, f, 0, cx->folds[f].x, &cx->folds[f].y, err)))
			rc = subset(x, cx->n_x, y, fold, f, 1, cx->folds[f].vx, &cx->folds[f].vy, err);
	}
	s->train_samples = cx->folds[0].x[0].dims[0];
	s->val_samples = cx->folds[0].vx[0].dims[0];
out:
	free(fold);
	return rc;
}

static void free_folds(struct ctx *cx)
{
	for (int f = 0; cx->folds && f < cx->s->folds; f++)
		if (cx->folds[f].owned) {
			for (size_t k = 0; k < cx->n_x; k++) {
				free(cx->folds[f].x[k].data);
				free(cx->folds[f].vx[k].data);
			}
			free(cx->folds[f].y.data);
			free(cx->folds[f].vy.data);
		}
	free(cx->folds);
}

/* The default length of the pick's training: about 1,000 steps, 3 to 30 epochs (the
 * four-case recipe: 30 epochs on 100 images, 3 on 30,000). */
static double default_final(int64_t n, int64_t batch)
{
	double e = ceil(1000.0 * (double)batch / (double)n);
	return e < 3 ? 3 : e > 30 ? 30 : e;
}

static void make_recipe(struct graft_search *s, int64_t batch)
{
	const struct graft_candidate *c = &s->candidates[s->pick];

	graft_recipe_defaults(&s->recipe);
	s->recipe.epochs = s->final_epochs;
	s->recipe.batch = batch;
	s->recipe.optimizer = GRAFT_OPTIM_ADAMW;
	s->recipe.lr = c->lr;
	s->recipe.schedule = GRAFT_SCHEDULE_COSINE;
	if (c->strategy == GRAFT_STRATEGY_LP_FT)
		s->recipe.lp_ft = s->final_epochs / 3;
	s->train_blocks = c->blocks;
}

static int search(struct ctx *cx, struct graft_err *err)
{
	struct graft_search *s = cx->s;
	const struct graft_search_opts *o = cx->o;
	size_t sizes[16], *alive, n_alive = s->n_candidates, last_start = 0;
	int rungs = rung_sizes(s->n_candidates, sizes), rc = 0, complete = -1;
	double e0;

	if (s->budget_epochs <= 0) {
		/* The default: the pick's own training length.  With little data (k-fold)
		 * that is seconds, and short trials mis-rank there: on 20 digits per class
		 * the top 2 blocks led the whole network after 7 of 30 epochs and trailed it
		 * by 2.5 to 3.4 points after 30 (examples/four-cases).  So there the rounds
		 * run in full, the last as long as the pick's training; and the first round's
		 * trials get GRAFT_SEARCH_MIN_STEPS steps at least. */
		double least = (double)GRAFT_SEARCH_MIN_STEPS * (double)cx->batch /
			       (double)s->train_samples;
		double full = s->final_epochs / pow(GRAFT_SEARCH_ETA, rungs - 1);
		double e = s->folds > 1 ? fmax(full, least) : least;
		s->budget_epochs = s->final_epochs;
		if (s->folds > 1 || first_length(s, sizes, rungs, cx->batch, cx->n) < least) {
			s->budget_epochs = fmax(s->budget_epochs, schedule_cost(s, sizes, rungs, e,
										 cx->batch, cx->n));
			s->budget_raised = s->budget_epochs > s->final_epochs;
		}
	}
	e0 = first_length(s, sizes, rungs, cx->batch, cx->n);
	if (trial_steps(e0, s->train_samples, cx->batch) < 1) {
		/* the least: one step per first-round trial, the rounds after it longer */
		double one = (double)cx->batch / (double)s->train_samples;
		return graft_err_set(err, GRAFT_EINVAL, "a budget of %g full-network epochs is too "
				     "small for one trial: %zu candidates, %d fold%s and one step "
				     "each in the first round need %.3g", s->budget_epochs,
				     s->n_candidates, s->folds, s->folds > 1 ? "s" : "",
				     schedule_cost(s, sizes, rungs, one, cx->batch, cx->n));
	}
	if (!(alive = malloc(s->n_candidates * sizeof(*alive))) ||
	    !(s->trials = calloc(s->n_candidates * (size_t)rungs + 1, sizeof(*s->trials)))) {
		free(alive);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n_alive; i++)
		alive[i] = i;
	for (int r = 0; r < rungs && !rc && !s->stopped; r++) {
		double e = e0 * pow(GRAFT_SEARCH_ETA, r);
		e = e < s->final_epochs ? e : s->final_epochs;
		int64_t steps = trial_steps(e, s->train_samples, cx->batch);
		size_t start = s->n_trials;
		for (size_t i = 0; i < n_alive && !rc; i++) {
			if (o->budget_seconds > 0 &&
			    (rc = over_budget(o, graft_now() - cx->t0 > o->budget_seconds,
					      &s->stopped, err)))
				break;
			if (s->stopped)
				break;
			rc = run_trial(cx, alive[i], r, (double)steps * (double)cx->batch /
				       (double)s->train_samples, steps, err);
			if (!rc && o->progress && o->progress(o->ctx, s, &s->trials[s->n_trials - 1]))
				s->stopped = 1;
			if (s->stopped)
				break;
		}
		if (rc || (s->stopped && s->n_trials - start < n_alive))
			break;
		complete = r;
		last_start = start;
		/* the best of this round go on */
		size_t n = s->n_trials - start;
		for (size_t i = 0; i < n; i++)          /* selection of the best, in order */
			for (size_t j = i + 1; j < n; j++)
				if (better(&s->trials[start + j], &s->trials[start + i])) {
					struct graft_trial t = s->trials[start + i];
					s->trials[start + i] = s->trials[start + j];
					s->trials[start + j] = t;
				}
		n_alive = r + 1 < rungs ? sizes[r + 1] : n_alive;
		if (r == 0)
			n_alive = first_survivors(s, start, n, n_alive, alive);
		else
			for (size_t i = 0; i < n_alive; i++)
				alive[i] = s->trials[start + i].candidate;
	}
	free(alive);
	if (rc)
		return rc;
	if (complete < 0)
		return graft_err_set(err, GRAFT_EINVAL, "the budget of %g s ran out before the "
				     "first round of trials was complete", o->budget_seconds);
	s->pick_trial = last_start;             /* the best of the last complete round */
	s->pick = s->trials[last_start].candidate;
	return 0;
}

int graft_search_run(struct graft_model *m, const struct graft_array *x, size_t n_x,
		     const struct graft_array *y, const struct graft_search_opts *o,
		     struct graft_search *s, struct graft_err *err)
{
	struct ctx cx = {.m = m, .o = o, .s = s, .t0 = graft_now()};
	size_t blocks = 0, *depth = NULL;
	int rc;

	memset(s, 0, sizeof(*s));
	if (n_x < 1 || n_x > GRAFT_DATASET_MAX_INPUTS)
		return graft_err_set(err, GRAFT_EINVAL, "%zu inputs, not 1 to %d", n_x,
				     GRAFT_DATASET_MAX_INPUTS);
	cx.n = x->dims[0];
	cx.n_x = n_x;
	cx.batch = o->batch > 0 ? o->batch : 32;
	if (y->dtype != GRAFT_INT64)
		return graft_err_set(err, GRAFT_EINVAL, "trials need class labels (int64 y)");
	if ((rc = graft_model_unalias_all(m, err)))
		return rc;
	if (!(depth = calloc(m->n_tensors + 1, sizeof(*depth))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	rc = graft_model_param_depths(m, depth, &blocks, err);
	free(depth);
	if (rc)
		return rc;
	if (blocks == 0)
		return graft_err_set(err, GRAFT_EINVAL, "the model has no block boundary "
				     "(graft-slice --list-cuts): there is nothing to choose between "
				     "training the head and training everything");
	s->final_epochs = o->final_epochs > 0 ? o->final_epochs : default_final(cx.n, cx.batch);
	s->budget_epochs = o->budget_epochs;
	if ((rc = make_candidates(s, blocks, err)) || (rc = setup_folds(&cx, x, y, err)) ||
	    (rc = snapshot_take(m, &cx.snap, err)))
		goto out;
	if (cx.batch > s->train_samples)
		cx.batch = s->train_samples;
	if ((rc = search(&cx, err)))
		goto out;
	make_recipe(s, o->batch > 0 ? o->batch : 32);
	s->seconds = graft_now() - cx.t0;
out:
	if (cx.snap.data) {
		int rc2 = snapshot_restore(m, &cx.snap, err);
		rc = rc ? rc : rc2;
	}
	snapshot_free(&cx.snap);
	free_folds(&cx);
	if (rc)
		graft_search_free(s);
	return rc;
}

void graft_search_free(struct graft_search *s)
{
	free(s->candidates);
	free(s->trials);
	s->candidates = NULL;
	s->trials = NULL;
}
