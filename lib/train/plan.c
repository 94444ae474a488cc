/*
 * plan.c: which of the four transfer-learning cases a dataset falls in, and what to
 * train (docs/plan.md has the method, its numbers and why).
 *
 * Size: samples per class, small below GRAFT_PLAN_SMALL_PER_CLASS.
 * Similarity, without the pretraining data: a BatchNormalization's running statistics
 * are the mean and variance its input had over the pretraining data, per channel.  The
 * same statistics over the new data, compared channel by channel as two Gaussians
 * (symmetric Kullback-Leibler divergence), averaged over channels and layers, give a
 * distance d; the similarity is exp(-d), 1 for the same distribution.  A model without
 * BatchNormalization is judged by its original head instead: the mean of the largest
 * softmax probability on the new data (a confident head has seen such inputs).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

double graft_plan_gauss_distance(double m1, double v1, double m2, double v2)
{
	double d2 = (m1 - m2) * (m1 - m2);

	/* (KL(p||q) + KL(q||p)) / 2 for p = N(m1, v1), q = N(m2, v2) */
	return (v1 + d2) / (4 * v2) + (v2 + d2) / (4 * v1) - 0.5;
}

/* Per-channel mean and variance of x (N, C, ...) added into sum and sq. */
static void channel_sums(const struct graft_array *x, double *sum, double *sq)
{
	int64_t n = x->dims[0], c = x->rank > 1 ? x->dims[1] : 1, inner = 1;
	const float *p = x->data;

	for (int d = 2; d < x->rank; d++)
		inner *= x->dims[d];
	for (int64_t b = 0; b < n; b++)
		for (int64_t k = 0; k < c; k++) {
			const float *q = p + (b * c + k) * inner;
			double s = 0, s2 = 0;
			for (int64_t i = 0; i < inner; i++) {
				s += q[i];
				s2 += (double)q[i] * q[i];
			}
			sum[k] += s;
			sq[k] += s2;
		}
}

struct bn_probe {
	const char *input;              /* the BN's X */
	const float *mean, *var;        /* its running statistics (stored tensors) */
	double eps;
	int64_t channels;
	double *sum, *sq;
	double count;                   /* values per channel seen */
};

static const float *stored_floats(const struct graft_model *m, const char *name, int64_t n)
{
	long t = graft_model_find_tensor(m, name);

	for (size_t a = 0; t < 0 && a < m->n_aliases; a++)
		if (strcmp(m->aliases[a].name, name) == 0)
			t = (long)m->aliases[a].target;
	if (t < 0 || m->tensors[t].dtype != GRAFT_FLOAT || (int64_t)m->tensors[t].numel != n)
		return NULL;
	return m->tensors[t].data;
}

/* The BatchNormalization nodes whose statistics are stored floats. */
static size_t find_bns(const struct graft_model *m, struct bn_probe *bn)
{
	const Onnx__GraphProto *g = m->proto->graph;
	size_t n = 0;

	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *nd = g->node[i];
		long t;
		if (!nd->op_type || strcmp(nd->op_type, "BatchNormalization") != 0 || nd->n_input != 5)
			continue;
		t = graft_model_find_tensor(m, nd->input[1]);
		for (size_t a = 0; t < 0 && a < m->n_aliases; a++)
			if (strcmp(m->aliases[a].name, nd->input[1]) == 0)
				t = (long)m->aliases[a].target;
		if (t < 0)
			continue;
		int64_t c = (int64_t)m->tensors[t].numel;
		const float *mean = stored_floats(m, nd->input[3], c), *var = stored_floats(m, nd->input[4], c);
		if (!mean || !var)
			continue;
		memset(&bn[n], 0, sizeof(bn[n]));
		bn[n].input = nd->input[0];
		bn[n].mean = mean;
		bn[n].var = var;
		bn[n].channels = c;
		bn[n].eps = 1e-5;
		for (size_t k = 0; k < nd->n_attribute; k++)
			if (nd->attribute[k]->name && strcmp(nd->attribute[k]->name, "epsilon") == 0)
				bn[n].eps = nd->attribute[k]->f;
		n++;
	}
	return n;
}

/* Runs the model (no fusion: every value is kept) on up to max samples of x, calling
 * visit after each batch. */
static int probe_runs(const struct graft_model *m, const struct graft_array *x, size_t n_x,
		      int64_t max, void (*visit)(struct graft_net *, void *, int64_t), void *ctx,
		      struct graft_err *err)
{
	struct graft_net_opts o = {.no_fuse = 1};
	struct graft_net *net;
	int64_t n = x->dims[0] < max ? x->dims[0] : max, batch = 32;
	void *bufs[GRAFT_DATASET_MAX_INPUTS];
	int rc;

	if ((rc = graft_net_new_opts(&net, m, &o, err)))
		return rc;
	for (int64_t at = 0; at < n; at += batch) {
		struct graft_array xb[GRAFT_DATASET_MAX_INPUTS];
		int64_t b = n - at < batch ? n - at : batch;
		if ((rc = train_batch_rows(x, n_x, at, b, b, xb, bufs, err)) ||
		    (rc = graft_net_run(net, xb, n_x, err))) {
			graft_net_free(net);
			return rc;
		}
		visit(net, ctx, b);
	}
	graft_net_free(net);
	return 0;
}

static uint64_t value_count(const struct graft_array *a)
{
	uint64_t n = 1;
	for (int d = 0; d < a->rank; d++)
		n *= (uint64_t)a->dims[d];
	return n;
}

struct bn_ctx {
	struct bn_probe *bn;
	size_t n;
};

static void visit_bn(struct graft_net *net, void *ctx_, int64_t b)
{
	struct bn_ctx *ctx = ctx_;

	(void)b;
	for (size_t i = 0; i < ctx->n; i++) {
		struct bn_probe *p = &ctx->bn[i];
		struct graft_array v;
		if (graft_net_value(net, p->input, &v) || v.dtype != GRAFT_FLOAT || v.rank < 2 ||
		    v.dims[1] != p->channels)
			continue;
		channel_sums(&v, p->sum, p->sq);
		p->count += (double)(value_count(&v) / (uint64_t)p->channels);
	}
}

struct conf_ctx {
	double sum;
	int64_t count;
};

static void visit_confidence(struct graft_net *net, void *ctx_, int64_t b)
{
	struct conf_ctx *ctx = ctx_;
	struct graft_array out;
	int64_t k;

	graft_net_output(net, 0, &out);
	if (out.dtype != GRAFT_FLOAT || b < 1)
		return;
	k = (int64_t)(out.nbytes / sizeof(float)) / b;
	for (int64_t i = 0; i < b && k > 0; i++) {
		const float *z = (const float *)out.data + i * k;
		double mx = z[0], s = 0;
		for (int64_t c = 1; c < k; c++)
			mx = z[c] > mx ? z[c] : mx;
		for (int64_t c = 0; c < k; c++)
			s += exp(z[c] - mx);
		ctx->sum += 1 / s;      /* the largest probability: exp(0) / s */
		ctx->count++;
	}
}

static int similarity(const struct graft_model *m, const struct graft_array *x, size_t n_x,
		      struct graft_plan *p, struct graft_err *err)
{
	const Onnx__GraphProto *g = m->proto->graph;
	struct bn_probe *bn = calloc(g->n_node + 1, sizeof(*bn));
	struct bn_ctx ctx = {bn, 0};
	int rc;

	if (!bn)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	ctx.n = find_bns(m, bn);
	for (size_t i = 0; i < ctx.n; i++)
		if (!(bn[i].sum = calloc((size_t)bn[i].channels, sizeof(double))) ||
		    !(bn[i].sq = calloc((size_t)bn[i].channels, sizeof(double)))) {
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
			goto out;
		}
	if (ctx.n) {
		if ((rc = probe_runs(m, x, n_x, GRAFT_PLAN_PROBE_SAMPLES, visit_bn, &ctx, err)))
			goto out;
		double total = 0;
		size_t layers = 0;
		for (size_t i = 0; i < ctx.n; i++) {
			struct bn_probe *q = &bn[i];
			double d = 0;
			if (q->count < 2)
				continue;
			for (int64_t c = 0; c < q->channels; c++) {
				double mean = q->sum[c] / q->count;
				double var = q->sq[c] / q->count - mean * mean;
				d += graft_plan_gauss_distance(mean, (var > 0 ? var : 0) + q->eps,
							       q->mean[c], q->var[c] + q->eps);
			}
			total += d / (double)q->channels;
			layers++;
		}
		p->bn_layers = layers;
		p->distance = layers ? total / (double)layers : 0;
		p->similarity = exp(-p->distance);
		p->method = "batchnorm";
	} else {
		struct conf_ctx cc = {0, 0};
		if ((rc = probe_runs(m, x, n_x, GRAFT_PLAN_PROBE_SAMPLES, visit_confidence, &cc,
				     err)))
			goto out;
		p->similarity = cc.count ? cc.sum / (double)cc.count : 0;
		p->method = "confidence";
	}
	rc = 0;
out:
	for (size_t i = 0; i < ctx.n; i++) {
		free(bn[i].sum);
		free(bn[i].sq);
	}
	free(bn);
	return rc;
}

void graft_plan_decide(struct graft_plan *p)
{
	p->small = p->samples_per_class < GRAFT_PLAN_SMALL_PER_CLASS;
	p->similar = p->similarity >= (strcmp(p->method, "batchnorm") == 0
				       ? GRAFT_PLAN_SIMILAR_BN : GRAFT_PLAN_SIMILAR_CONFIDENCE);
	p->case_no = p->small ? (p->similar ? 1 : 2) : (p->similar ? 3 : 4);
	/* What to train, as block boundaries from the end (0: everything).  Always the top
	 * of the network, never the lowest layers alone; case 2 a moderate part (the top
	 * third), case 3 the upper half, case 4 all of it, from the pretrained weights. */
	switch (p->case_no) {
	case 1: p->train_blocks = 1; break;
	case 2: p->train_blocks = p->blocks >= 3 ? (long)((p->blocks + 2) / 3) : 1; break;
	case 3: p->train_blocks = p->blocks >= 2 ? (long)((p->blocks + 1) / 2) : 0; break;
	default: p->train_blocks = 0; break;
	}
}

int graft_plan_make(const struct graft_model *m, const struct graft_array *x, size_t n_x,
		    const struct graft_array *y, struct graft_plan *p, struct graft_err *err)
{
	struct graft_cut *cuts;
	size_t n_cuts;
	int rc;

	memset(p, 0, sizeof(*p));
	p->samples = x->dims[0];
	if (y->dtype == GRAFT_INT64)
		p->classes = train_label_classes(y);
	p->samples_per_class = (double)p->samples / (double)(p->classes > 0 ? p->classes : 1);
	if ((rc = graft_model_cuts(m, &cuts, &n_cuts, err)))
		return rc;
	for (size_t i = 0; i < n_cuts; i++)
		p->blocks += cuts[i].block;
	for (size_t i = 0; i < m->n_tensors; i++)
		if (m->tensors[i].role == GRAFT_ROLE_PARAMETER)
			p->params += m->tensors[i].numel;
	if ((rc = similarity(m, x, n_x, p, err))) {
		free(cuts);
		return rc;
	}
	graft_plan_decide(p);
	p->params_trained = p->params;
	if (p->train_blocks > 0)
		for (size_t i = n_cuts, seen = 0; i-- > 0;)
			if (cuts[i].block && ++seen == (size_t)p->train_blocks)
				p->params_trained = cuts[i].params_after;
	free(cuts);
	return 0;
}

void graft_plan_rule(const struct graft_plan *p, struct graft_freeze_rule *rule)
{
	memset(rule, 0, sizeof(*rule));
	rule->kind = GRAFT_FREEZE_LAST_BLOCKS;
	rule->train = 1;
	rule->count = p->train_blocks;
}

int graft_plan_freeze_rule(const struct graft_model *m, int case_no,
			   struct graft_freeze_rule *rule, struct graft_err *err)
{
	struct graft_plan p = {0};
	struct graft_cut *cuts;
	size_t n;
	int rc;

	if (case_no < 1 || case_no > 4)
		return graft_err_set(err, GRAFT_EINVAL, "no case %d: the cases are 1 to 4", case_no);
	if ((rc = graft_model_cuts(m, &cuts, &n, err)))
		return rc;
	for (size_t i = 0; i < n; i++)
		p.blocks += cuts[i].block;
	free(cuts);
	/* the case's size and similarity, as graft_plan_make would measure them */
	p.samples_per_class = case_no <= 2 ? 0 : 1e18;
	p.similarity = case_no % 2 ? 1 : 0;
	p.method = "batchnorm";
	graft_plan_decide(&p);
	graft_plan_rule(&p, rule);
	return 0;
}
