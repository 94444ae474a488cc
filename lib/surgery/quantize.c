/*
 * quantize.c: static post-training quantization to ONNX's QDQ format, as ONNX Runtime's
 * quantize_static writes it, but for uint8 activations (U8S8; docs/deploy.md says why),
 * so that its CPU provider, and graft's engine, fuse each DequantizeLinear -> op ->
 * QuantizeLinear into an int8 kernel:
 *
 * - Conv, Gemm and MatMul with stored float weights, and Add of two computed values (a
 *   residual connection), are quantized unless an --exclude pattern names them.
 * - Their activations (inputs and outputs) are uint8, asymmetric: the range calibrated on
 *   the user's data, widened to hold 0, maps onto [0, 255] with a zero point.  Each
 *   such tensor T gets QuantizeLinear -> DequantizeLinear right after its producer, and
 *   its readers read the dequantized copy (a graph output keeps the float T).
 * - Weights are int8, symmetric ([-127, 127], zero point 0), one scale per output channel
 *   (Conv axis 0, Gemm with transB axis 0, without it axis 1, MatMul axis 1) or per
 *   tensor; a bias is int32 at scale input_scale * weight_scale.  Each is stored
 *   quantized and read through a DequantizeLinear that writes the old name.
 * - A Relu, or a Clip from 0 (ReLU6), that alone reads a quantized node's output is
 *   removed: the node writes the activation's output, whose calibrated range starts at
 *   0, so QuantizeLinear's saturation does the clipping (ORT does the same; with
 *   symmetric activations it must not: onnxruntime#11660).
 *
 * - A MaxPool's quantized output takes its quantized input's scale and zero point (the
 *   maximum of values lies within their range), as ORT's tool does: a runtime then pools
 *   the 8-bit values themselves, with no requantization (ORT drops the pair around it,
 *   graft's engine fuses it: lib/engine/net.c).
 *
 * Calibration runs the float model, as it is before any change, on the samples given
 * (graft's engine, every value kept), and takes each tensor's minimum and maximum.
 */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "surgery/surgery.h"

/* ---- scales and zero points ------------------------------------------------------------ */

void graft_quant_asymmetric(float rmin, float rmax, float *scale, uint8_t *zero_point)
{
	double lo = rmin < 0 ? rmin : 0, hi = rmax > 0 ? rmax : 0, s = (hi - lo) / 255.0;
	double zp;

	if (!(s > 0) || !isfinite(s))
		s = 1.0;        /* a constant 0 tensor: any scale holds it */
	zp = nearbyint(-lo / s);
	*scale = (float)s;
	*zero_point = (uint8_t)(zp < 0 ? 0 : zp > 255 ? 255 : zp);
}

float graft_quant_symmetric(float absmax)
{
	double s = (double)absmax / 127.0;

	return s > 0 && isfinite(s) ? (float)s : 1.0f;
}

/* ---- the plan ---------------------------------------------------------------------------- */

enum { Q_NONE, Q_CONV, Q_GEMM, Q_MATMUL, Q_ADD };

/* A node to quantize: which inputs are activations and which the weight and bias. */
struct qnode {
	size_t node;
	int kind;
	int weight, bias;       /* input indices; -1 for none */
	int axis;               /* the weight's output-channel axis */
	long act;               /* the Relu or Clip folded into it; -1 for none */
};

struct qtensor {
	char *name;             /* the activation, as the original graph names it */
	float lo, hi;           /* calibrated range */
	float hlo, hhi;         /* the range of its histogram (percentile and entropy) */
	float scale;
	uint8_t zp;
};

struct qplan {
	struct qnode *nodes;
	size_t n_nodes;
	struct qtensor *t;
	size_t n_t, cap_t;
	struct strmap t_index;  /* activation name -> index in t */
	size_t excluded, folded;
};

static void qplan_release(struct qplan *p)
{
	for (size_t i = 0; i < p->n_t; i++)
		free(p->t[i].name);
	free(p->t);
	free(p->nodes);
	strmap_release(&p->t_index);
}

static int excluded(const Onnx__NodeProto *n, const struct graft_quant_opts *o)
{
	for (size_t i = 0; i < o->n_exclude; i++)
		if ((n->name && fnmatch(o->exclude[i], n->name, 0) == 0) ||
		    fnmatch(o->exclude[i], n->op_type, 0) == 0)
			return 1;
	return 0;
}

/* The stored float tensor of that name and rank (0: any), or NULL. */
static const struct tensor_rec *stored_float(const struct graft_model *m, const char *name,
					     int rank)
{
	long i = name && *name ? graft_model_find_tensor(m, name) : -1;
	const struct tensor_rec *t = i >= 0 ? &m->tensors[i] : NULL;

	return t && t->dtype == GRAFT_FLOAT && t->source != GRAFT_SOURCE_DETACHED &&
	       (!rank || t->rank == rank) ? t : NULL;
}

/* What kind of quantized node n can be (Q_NONE: it stays float), and its weight. */
static int classify(const struct graft_model *m, const Onnx__NodeProto *n, struct qnode *q)
{
	*q = (struct qnode){0, Q_NONE, -1, -1, 0, -1};
	if (graph_is_op(n, "Conv") && n->n_input >= 2 && stored_float(m, n->input[1], 0) &&
	    stored_float(m, n->input[1], 0)->rank >= 3 &&
	    (n->n_input < 3 || !*n->input[2] || stored_float(m, n->input[2], 1))) {
		*q = (struct qnode){0, Q_CONV, 1, n->n_input >= 3 && *n->input[2] ? 2 : -1, 0, -1};
	} else if (graph_is_op(n, "Gemm") && n->n_input >= 2 && stored_float(m, n->input[1], 2) &&
		   graph_attr_float(n, "alpha", 1) == 1 && graph_attr_float(n, "beta", 1) == 1 &&
		   !graph_attr_int(n, "transA", 0) &&
		   (n->n_input < 3 || !*n->input[2] || stored_float(m, n->input[2], 1))) {
		*q = (struct qnode){0, Q_GEMM, 1, n->n_input >= 3 && *n->input[2] ? 2 : -1,
				    graph_attr_int(n, "transB", 0) ? 0 : 1, -1};
	} else if (graph_is_op(n, "MatMul") && n->n_input == 2 && !stored_float(m, n->input[0], 0) &&
		   stored_float(m, n->input[1], 2)) {
		*q = (struct qnode){0, Q_MATMUL, 1, -1, 1, -1};
	} else if (graph_is_op(n, "Add") && n->n_input == 2 && graft_model_find_tensor(m, n->input[0]) < 0 &&
		   graft_model_find_tensor(m, n->input[1]) < 0) {
		*q = (struct qnode){0, Q_ADD, -1, -1, 0, -1};
	}
	/* a bias must have the output channels' count */
	if (q->bias >= 0) {
		const struct tensor_rec *w = stored_float(m, n->input[q->weight], 0);
		if (stored_float(m, n->input[q->bias], 1)->dims[0] != w->dims[q->axis])
			q->kind = Q_NONE;
	}
	return q->kind;
}

/* The activation that alone reads n's output, if it may be folded: a Relu, or a Clip
 * whose lower bound is 0 (stored or an attribute); -1 otherwise. */
static long foldable_act(const struct graft_model *m, const struct graph_reads *reads,
			 const Onnx__NodeProto *n)
{
	const Onnx__GraphProto *g = m->proto->graph;
	const char *y = n->n_output ? n->output[0] : NULL;

	if (!y || !*y || graph_reads_count(reads, y) != 1 || graph_is_output(g, y))
		return -1;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *a = g->node[i];
		if (a->n_input < 1 || !a->input[0] || strcmp(a->input[0], y) != 0)
			continue;
		if (graph_is_op(a, "Relu"))
			return (long)i;
		if (!graph_is_op(a, "Clip"))
			return -1;
		if (a->n_input < 2 || !*a->input[1]) {
			/* before opset 11 the bounds are attributes */
			return graph_attr(a, "min") && graph_attr_float(a, "min", 0) == 0 ? (long)i : -1;
		}
		const struct tensor_rec *lo = stored_float(m, a->input[1], 0);
		return lo && lo->numel == 1 && ((const float *)lo->data)[0] == 0 ? (long)i : -1;
	}
	return -1;
}

static int add_tensor_name(struct qplan *p, const char *name)
{
	struct qtensor *t;

	if (strmap_get(&p->t_index, name) >= 0)
		return 0;
	if (!(t = array_grow(p->t, &p->cap_t, p->n_t, sizeof(*t))))
		return -1;
	p->t = t;
	if (!(t[p->n_t].name = strdup(name)))
		return -1;
	t[p->n_t].lo = INFINITY;
	t[p->n_t].hi = -INFINITY;
	if (strmap_put(&p->t_index, t[p->n_t].name, (long)p->n_t) == -2)
		return -1;
	p->n_t++;
	return 0;
}

/* The output name a quantized node ends up writing: its folded activation's, if any. */
static const char *final_output(const Onnx__GraphProto *g, const struct qnode *q)
{
	const Onnx__NodeProto *n = g->node[q->act >= 0 ? (size_t)q->act : q->node];
	return n->output[0];
}

static int make_plan(const struct graft_model *m, const struct graft_quant_opts *o,
		     struct qplan *p, struct graft_err *err)
{
	const Onnx__GraphProto *g = m->proto->graph;
	struct graph_reads reads;

	memset(p, 0, sizeof(*p));
	if (strmap_init(&p->t_index, 64) || graph_reads_init(&reads, g) ||
	    !(p->nodes = calloc(g->n_node + 1, sizeof(*p->nodes))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		struct qnode q;
		if (graph_is_op(n, "QuantizeLinear") || graph_is_op(n, "DequantizeLinear") ||
		    graph_is_op(n, "DynamicQuantizeLinear") || strncmp(n->op_type, "QLinear", 7) == 0 ||
		    graph_is_op(n, "ConvInteger") || graph_is_op(n, "MatMulInteger")) {
			graph_reads_release(&reads);
			return graft_err_set(err, GRAFT_EINVAL, "the model is quantized already "
					     "(node '%s', %s)", n->name ? n->name : "", n->op_type);
		}
		if (!classify(m, n, &q))
			continue;
		if (excluded(n, o)) {
			p->excluded++;
			continue;
		}
		q.node = i;
		q.act = foldable_act(m, &reads, n);
		p->folded += q.act >= 0;
		p->nodes[p->n_nodes++] = q;
	}
	for (size_t k = 0; k < p->n_nodes; k++) {
		const struct qnode *q = &p->nodes[k];
		const Onnx__NodeProto *n = g->node[q->node];
		const char *y = final_output(g, q);
		for (size_t j = 0; j < n->n_input; j++)
			if ((int)j != q->weight && (int)j != q->bias && *n->input[j] &&
			    add_tensor_name(p, n->input[j]))
				goto oom;
		/* an output that only the graph's outputs read stays float */
		if (graph_reads_count(&reads, y) > (size_t)graph_is_output(g, y) &&
		    add_tensor_name(p, y))
			goto oom;
	}
	graph_reads_release(&reads);
	return 0;
oom:
	graph_reads_release(&reads);
	return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
}

/* ---- calibration ------------------------------------------------------------------------ */

/* Bins of the percentile method's histograms, over each tensor's [min, max], and of the
 * entropy method's, over [-max |x|, max |x|]. */
#define HIST_BINS 2048
#define ENTROPY_BINS 4096

/* One pass's work on a tensor's values: pass 0 takes the range, pass 1 counts values
 * into the histogram of bins over [hlo, hhi]. */
static void observe(struct qtensor *t, uint64_t *hist, long bins, int pass, const float *d,
		    size_t n)
{
	if (pass == 0) {
		float lo = t->lo, hi = t->hi;
		for (size_t k = 0; k < n; k++) {
			lo = d[k] < lo ? d[k] : lo;
			hi = d[k] > hi ? d[k] : hi;
		}
		t->lo = lo;
		t->hi = hi;
		return;
	}
	double w = t->hhi > t->hlo ? bins / ((double)t->hhi - t->hlo) : 0;
	for (size_t k = 0; k < n; k++) {
		long b = (long)(((double)d[k] - t->hlo) * w);
		hist[b < 0 ? 0 : b >= bins ? bins - 1 : b]++;
	}
}

/* The percentile method's range: the values below the (1 - q) and above the q quantile
 * of the histogram cut off (q = percentile / 100), each at a bin's edge. */
static void clip_range(struct qtensor *t, const uint64_t *hist, double percentile)
{
	uint64_t total = 0, cut, run = 0;
	double w = ((double)t->hhi - t->hlo) / HIST_BINS;
	long lo = 0, hi = HIST_BINS - 1;

	for (long b = 0; b < HIST_BINS; b++)
		total += hist[b];
	cut = (uint64_t)((double)total * (1 - percentile / 100));
	while (lo < HIST_BINS - 1 && run + hist[lo] <= cut)
		run += hist[lo++];
	for (run = 0; hi > lo && run + hist[hi] <= cut;)
		run += hist[hi--];
	double base = t->hlo, top = base + w * (double)(hi + 1);

	t->lo = (float)(base + w * (double)lo);
	t->hi = top < t->hi ? (float)top : t->hi;
}

/* The entropy method's quantized levels: uint8's. */
#define ENTROPY_LEVELS 256

/* p smoothed as ORT's calibrator does (smooth_distribution): eps in each empty bin, taken
 * in proportion from the others; -1 when p is all empty. */
static int smooth(double *p, long n)
{
	const double eps = 1e-4;
	long zeros = 0;

	for (long k = 0; k < n; k++)
		zeros += p[k] == 0;
	if (zeros == n)
		return -1;
	double take = eps * (double)zeros / (double)(n - zeros);
	for (long k = 0; k < n; k++)
		p[k] += p[k] == 0 ? eps : -take;
	return 0;
}

/* KL(p || q) of two distributions given as unnormalised weights. */
static double kl_divergence(const double *p, const double *q, long n)
{
	double sp = 0, sq = 0, d = 0;

	for (long k = 0; k < n; k++) {
		sp += p[k];
		sq += q[k];
	}
	for (long k = 0; k < n; k++)
		if (p[k] > 0)
			d += p[k] / sp * log((p[k] / sp) / (q[k] / sq));
	return d;
}

/*
 * The entropy method's range (TensorRT's KL-divergence calibration, as ONNX Runtime's
 * EntropyCalibrater runs it on a histogram of the values over [-m, m], m = max |x|):
 * for each threshold t (a window of bins around 0, from 256 bins to all), the window
 * clipped to the values' [min, max] is the range [a, b] that uint8 would cover; the
 * distribution p of the values with those beyond [a, b] counted in its edge bins is
 * compared with q, the values inside quantized to 256 levels over [a, b] and spread back
 * over the bins that p fills.  The t of the smallest KL(p || q) wins.  ORT quantizes to
 * 128 levels by default (int8's positive half); graft's activations are uint8, whose
 * 256 levels cover the clipped window, so 256 here.
 */
static int entropy_range(struct qtensor *t, const uint64_t *hist)
{
	const long zero = ENTROPY_BINS / 2;
	double w = ((double)t->hhi - t->hlo) / ENTROPY_BINS;
	/* the bins the values occupy */
	long first = (long)(((double)t->lo - t->hlo) / w), last = (long)(((double)t->hi - t->hlo) / w);
	double *p = malloc(ENTROPY_BINS * sizeof(double)), *q = malloc(ENTROPY_BINS * sizeof(double));
	double best = INFINITY;
	long best_a = first, best_b = ENTROPY_BINS;

	if (!p || !q) {
		free(p);
		free(q);
		return -1;
	}
	first = first < 0 ? 0 : first;
	last = last >= ENTROPY_BINS ? ENTROPY_BINS - 1 : last;
	for (long i = ENTROPY_LEVELS / 2; i <= zero; i++) {
		long a = zero - i > first ? zero - i : first, b = zero + i < last + 1 ? zero + i : last + 1;
		long len = b - a;
		if (len < ENTROPY_LEVELS)
			continue;
		double below = 0, above = 0;
		for (long k = 0; k < a; k++)
			below += (double)hist[k];
		for (long k = b; k < ENTROPY_BINS; k++)
			above += (double)hist[k];
		for (long k = 0; k < len; k++)
			p[k] = (double)hist[a + k];
		/* q: the window's bins merged into ENTROPY_LEVELS groups (the last takes the
		 * rest), each group's count spread evenly over its bins that are not empty */
		long merged = len / ENTROPY_LEVELS;
		for (long j = 0; j < ENTROPY_LEVELS; j++) {
			long s0 = j * merged, s1 = j == ENTROPY_LEVELS - 1 ? len : s0 + merged;
			double sum = 0, filled = 0;
			for (long k = s0; k < s1; k++) {
				sum += p[k];
				filled += p[k] != 0;
			}
			for (long k = s0; k < s1; k++)
				q[k] = p[k] != 0 ? sum / filled : 0;
		}
		p[0] += below;
		p[len - 1] += above;
		if (smooth(p, len) || smooth(q, len))
			continue;
		double d = kl_divergence(p, q, len);
		if (d < best) {
			best = d;
			best_a = a;
			best_b = b;
		}
	}
	free(p);
	free(q);
	if (isfinite(best)) {
		float lo = (float)(t->hlo + w * (double)best_a), hi = (float)(t->hlo + w * (double)best_b);
		t->lo = lo > t->lo ? lo : t->lo;
		t->hi = hi < t->hi ? hi : t->hi;
	}
	return 0;
}

/*
 * Runs the model on the calibration samples and takes each planned tensor's range: its
 * minimum and maximum, and for the percentile method a second pass that counts the
 * values into a histogram over that range and cuts off the tails.  Of a dataset larger
 * than o->samples, samples spread evenly over it are taken (sample i * total / samples):
 * datasets are often stored class by class, and the first ones alone would calibrate on
 * one class (measured: PaddleOCR's MobileNetV3 on digits, 81.6% from the first 256
 * samples, all zeros and ones, against 92.5% from samples of every class; 93.5% float).
 */
static int calibrate(const struct graft_model *m, const struct graft_array *x,
		     const struct graft_quant_opts *o, struct qplan *p, struct graft_err *err)
{
	struct graft_net_opts no = {.no_fuse = 1};
	struct graft_net *net;
	int64_t total = x->dims[0], n = total, batch = o->batch > 0 ? o->batch : 32;
	size_t per = total ? x->nbytes / (size_t)total : 0;
	int passes = o->method == GRAFT_CALIB_MINMAX ? 1 : 2, rc;
	long bins = o->method == GRAFT_CALIB_ENTROPY ? ENTROPY_BINS : HIST_BINS;
	uint64_t *hist = NULL;
	char *buf;

	if (o->samples > 0 && o->samples < n)
		n = o->samples;
	if (n < 1)
		return graft_err_set(err, GRAFT_EINVAL, "no calibration samples");
	batch = batch < n ? batch : n;
	if (!(buf = malloc((size_t)batch * per + 1)) ||
	    (passes > 1 && !(hist = calloc(p->n_t * (size_t)bins + 1, sizeof(*hist))))) {
		free(buf);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if ((rc = graft_net_new_opts(&net, m, &no, err))) {
		free(buf);
		free(hist);
		return rc;
	}
	for (int pass = 0; pass < passes && !rc; pass++)
		for (int64_t at = 0; at < n && !rc; at += batch) {
			struct graft_array xb = *x;
			xb.dims[0] = n - at < batch ? n - at : batch;
			for (int64_t j = 0; j < xb.dims[0]; j++)
				memcpy(buf + (size_t)j * per, (const char *)x->data +
				       (size_t)((at + j) * total / n) * per, per);
			xb.data = buf;
			xb.nbytes = (size_t)xb.dims[0] * per;
			if ((rc = graft_net_run(net, &xb, 1, err)))
				break;
			for (size_t i = 0; i < p->n_t && !rc; i++) {
				struct graft_array v;
				if (graft_net_value(net, p->t[i].name, &v) || v.dtype != GRAFT_FLOAT)
					rc = graft_err_set(err, GRAFT_EUNSUPPORTED, "'%s' is no float "
							   "value the engine computes", p->t[i].name);
				else
					observe(&p->t[i], hist ? hist + i * (size_t)bins : NULL, bins,
						pass, v.data, v.nbytes / sizeof(float));
			}
			if (!rc && pass == 0 && at + batch >= n)
				for (size_t i = 0; i < p->n_t && !rc; i++) {
					struct qtensor *t = &p->t[i];
					float m = fmaxf(fabsf(t->lo), fabsf(t->hi));
					if (!isfinite(t->lo) || !isfinite(t->hi))
						rc = graft_err_set(err, GRAFT_EINVAL, "'%s' is not finite "
								   "on the calibration data", t->name);
					/* the histograms' ranges, for pass 1 */
					t->hlo = o->method == GRAFT_CALIB_ENTROPY ? -m : t->lo;
					t->hhi = o->method == GRAFT_CALIB_ENTROPY ? m : t->hi;
				}
		}
	graft_net_free(net);
	free(buf);
	for (size_t i = 0; i < p->n_t && !rc; i++) {
		if (o->method == GRAFT_CALIB_PERCENTILE)
			clip_range(&p->t[i], hist + i * HIST_BINS,
				   o->percentile > 0 ? o->percentile : 99.999);
		else if (o->method == GRAFT_CALIB_ENTROPY &&
			 !graph_is_input(m->proto->graph, p->t[i].name) &&
			 entropy_range(&p->t[i], hist + i * (size_t)ENTROPY_BINS))
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		graft_quant_asymmetric(p->t[i].lo, p->t[i].hi, &p->t[i].scale, &p->t[i].zp);
	}
	free(hist);
	return rc;
}

/* A MaxPool's output quantized as its input is (both planned), in graph order, so that
 * a chain of them shares the first input's scale. */
static void share_maxpool_scales(const Onnx__GraphProto *g, struct qplan *p)
{
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		long x, y;
		if (!graph_is_op(n, "MaxPool") || n->n_input < 1 || n->n_output != 1 ||
		    (x = strmap_get(&p->t_index, n->input[0])) < 0 ||
		    (y = strmap_get(&p->t_index, n->output[0])) < 0)
			continue;
		p->t[y].scale = p->t[x].scale;
		p->t[y].zp = p->t[x].zp;
	}
}

/* ---- rewriting ------------------------------------------------------------------------- */


/* New nodes, in the order they are spliced in. */
struct added {
	Onnx__NodeProto **nodes;
	size_t n, cap;
};

static int add_node(struct added *a, Onnx__NodeProto *n)
{
	Onnx__NodeProto **list;

	if (!n || !(list = array_grow(a->nodes, &a->cap, a->n, sizeof(*list)))) {
		if (n)
			protobuf_c_message_free_unpacked(&n->base, NULL);
		return -1;
	}
	a->nodes = list;
	list[a->n++] = n;
	return 0;
}

static void added_release(struct added *a)
{
	for (size_t i = 0; i < a->n; i++)
		protobuf_c_message_free_unpacked(&a->nodes[i]->base, NULL);
	free(a->nodes);
	memset(a, 0, sizeof(*a));
}

#define NAME_MAX_LEN 512

/* An activation's QuantizeLinear: its output, scale and zero point, and where its nodes
 * go. */
struct qpoint {
	char q[NAME_MAX_LEN], scale[NAME_MAX_LEN], zp[NAME_MAX_LEN];
	struct added *at;
};

/* QuantizeLinear(T) after T's producer. */
static int quantize_point(struct graft_model *m, struct strmap *made, const struct qtensor *t,
			  struct qpoint *p,
			  struct graft_err *err)
{
	char name[NAME_MAX_LEN];
	int rc;

	if ((rc = edit_put_constant(m, made, t->name, "_scale", GRAFT_FLOAT, 0, NULL, &t->scale, p->scale,
			     sizeof(p->scale), err)) ||
	    (rc = edit_put_constant(m, made, t->name, "_zero_point", GRAFT_UINT8, 0, NULL, &t->zp, p->zp,
			     sizeof(p->zp), err)))
		return rc;
	if (edit_fresh_name(m, made, t->name, "_quantized", p->q, sizeof(p->q)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	snprintf(name, sizeof(name), "%s_QuantizeLinear", t->name);
	if (add_node(p->at, skeleton_node_new("QuantizeLinear", name,
					      (const char *[]){t->name, p->scale, p->zp}, 3, p->q)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
}

/* A DequantizeLinear of its own for one reader of T (ONNX Runtime fuses a node with the
 * DequantizeLinear before it only when no other node reads that one), written to *input. */
static int dequantize_for(const struct graft_model *m, struct strmap *made,
			  const struct qtensor *t, struct qpoint *p, char **input,
			  struct graft_err *err)
{
	char out[NAME_MAX_LEN], name[NAME_MAX_LEN + 32];

	if (edit_fresh_name(m, made, t->name, "_dequantized", out, sizeof(out)))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	snprintf(name, sizeof(name), "%s_DequantizeLinear%s", t->name, out + strlen(t->name) +
		 strlen("_dequantized"));
	if (add_node(p->at, skeleton_node_new("DequantizeLinear", name,
					      (const char *[]){p->q, p->scale, p->zp}, 3, out)) ||
	    edit_set_str(input, out))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
}

/*
 * The largest quantized bias: half of int32's range, so that the bias plus a sum of
 * products (at most 255 * 127 a term) still fits.
 */
#define BIAS_Q_MAX 1073741824.0

/*
 * The weight that node input *input names: stored as int8 (symmetric, per channel along
 * axis or per tensor), which the node reads through a DequantizeLinear of its own (the
 * float tensor, an initializer or a Constant node's, goes at the end if nothing else
 * reads it); *scales (*channels floats, the caller frees) for the bias.  With a bias
 * (bias, float, one per channel along axis), each scale is raised where needed so that
 * bias / (x_scale * scale) stays within BIAS_Q_MAX: a channel whose weights are tiny
 * beside its bias (BatchNormalization with a near-zero gamma, folded in: MobileNetV3
 * has them) would otherwise saturate its int32 bias and lose it, the per-channel
 * collapse of onnxruntime#11415 (ORT's tool now raises the weight scale the same way).
 * *raised counts such channels.
 */
static int quantize_weight(struct graft_model *m, struct strmap *made, char **input, int axis,
			   int per_tensor, const float *bias, float x_scale,
			   struct added *a, float **scales, int64_t *channels, size_t *raised,
			   struct graft_err *err)
{
	const char *w = *input;
	long i = graft_model_find_tensor(m, w);
	const struct tensor_rec *t = &m->tensors[i];
	int64_t C = per_tensor ? 1 : t->dims[axis], inner = 1, outer = 1;
	char qn[NAME_MAX_LEN], sn[NAME_MAX_LEN], zn[NAME_MAX_LEN], dn[NAME_MAX_LEN];
	char node[NAME_MAX_LEN + 32];
	int8_t *q = malloc(t->numel + 1), *zeros = calloc((size_t)C + 1, 1);
	float *s = calloc((size_t)C + 1, sizeof(float));
	int rc = 0;

	if (!q || !zeros || !s) {
		free(q);
		free(zeros);
		free(s);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (int d = 0; d < t->rank; d++)
		if (per_tensor || d > axis)
			inner *= t->dims[d];
		else if (d < axis)
			outer *= t->dims[d];
	const float *W = t->data;
	for (int64_t o = 0; o < outer; o++)
		for (int64_t c = 0; c < C; c++)
			for (int64_t k = 0; k < inner; k++) {
				float v = fabsf(W[(o * C + c) * inner + k]);
				s[c] = v > s[c] ? v : s[c];
			}
	for (int64_t c = 0; c < C; c++)
		s[c] = graft_quant_symmetric(s[c]);
	for (int64_t o = 0; bias && o < (per_tensor ? t->dims[axis] : C); o++) {
		int64_t c = per_tensor ? 0 : o;
		double need = fabs((double)bias[o]) / ((double)x_scale * BIAS_Q_MAX);
		if ((double)s[c] < need) {
			s[c] = (float)(need * (1 + 1e-6));
			(*raised)++;
		}
	}
	for (int64_t o = 0; o < outer; o++)
		for (int64_t c = 0; c < C; c++)
			for (int64_t k = 0; k < inner; k++) {
				int64_t at = (o * C + c) * inner + k;
				float r = nearbyintf(W[at] / s[c]);
				q[at] = (int8_t)(r < -127 ? -127 : r > 127 ? 127 : r);
			}
	int64_t cd[1] = {C};
	if ((rc = edit_put_constant(m, made, w, "_quantized", GRAFT_INT8, t->rank, t->dims, q, qn, sizeof(qn),
			     err)) ||
	    (rc = edit_put_constant(m, made, w, "_scale", GRAFT_FLOAT, per_tensor ? 0 : 1, cd, s, sn,
			     sizeof(sn), err)) ||
	    (rc = edit_put_constant(m, made, w, "_zero_point", GRAFT_INT8, per_tensor ? 0 : 1, cd, zeros, zn,
			     sizeof(zn), err)))
		goto out;
	snprintf(node, sizeof(node), "%s_DequantizeLinear", w);
	Onnx__NodeProto *n = NULL;
	if (!edit_fresh_name(m, made, w, "_dequantized", dn, sizeof(dn)))
		n = skeleton_node_new("DequantizeLinear", node, (const char *[]){qn, sn, zn}, 3, dn);
	if (!n || (!per_tensor && skeleton_node_attr_int(n, "axis", axis)) || add_node(a, n) ||
	    edit_set_str(input, dn)) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		goto out;
	}
	*scales = s;
	*channels = C;
	s = NULL;
out:
	free(q);
	free(zeros);
	free(s);
	return rc;
}

/* The bias that node input *input names: int32 at scale x_scale * the weight's scales,
 * read through a DequantizeLinear of its own. */
static int quantize_bias(struct graft_model *m, struct strmap *made, char **input,
			 float x_scale, const float *ws,
			 int64_t channels, struct added *a, struct graft_err *err)
{
	const char *b = *input;
	const struct tensor_rec *t = &m->tensors[graft_model_find_tensor(m, b)];
	int64_t C = t->dims[0];
	int32_t *q = malloc((size_t)C * sizeof(int32_t) + 1);
	float *s = malloc((size_t)C * sizeof(float) + 1);
	char qn[NAME_MAX_LEN], sn[NAME_MAX_LEN], dn[NAME_MAX_LEN], node[NAME_MAX_LEN + 32];
	int rc;

	if (!q || !s) {
		free(q);
		free(s);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	for (int64_t c = 0; c < C; c++) {
		s[c] = x_scale * ws[channels == 1 ? 0 : c];
		double r = nearbyint((double)((const float *)t->data)[c] / s[c]);
		q[c] = (int32_t)(r < -BIAS_Q_MAX ? -BIAS_Q_MAX : r > BIAS_Q_MAX ? BIAS_Q_MAX : r);
	}
	if (!(rc = edit_put_constant(m, made, b, "_quantized", GRAFT_INT32, 1, t->dims, q, qn, sizeof(qn), err)) &&
	    /* per tensor, one scale (opset 10 has no axis) */
	    !(rc = edit_put_constant(m, made, b, "_scale", GRAFT_FLOAT, channels == 1 ? 0 : 1, (int64_t[]){C},
			      s, sn, sizeof(sn), err))) {
		snprintf(node, sizeof(node), "%s_DequantizeLinear", b);
		Onnx__NodeProto *n = NULL;
		if (!edit_fresh_name(m, made, b, "_dequantized", dn, sizeof(dn)))
			n = skeleton_node_new("DequantizeLinear", node, (const char *[]){qn, sn}, 2,
					      dn);
		if (!n || (channels > 1 && skeleton_node_attr_int(n, "axis", 0)) || add_node(a, n) ||
		    edit_set_str(input, dn))
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	free(q);
	free(s);
	return rc;
}

/* Counts the nodes left in float by op type (the first types info has room for). */
static void count_left(const Onnx__GraphProto *g, const struct qplan *p,
		       struct graft_quant_info *info)
{
	unsigned char *in_plan = calloc(g->n_node + 1, 1);

	if (!in_plan)
		return;
	for (size_t k = 0; k < p->n_nodes; k++) {
		in_plan[p->nodes[k].node] = 1;
		if (p->nodes[k].act >= 0)
			in_plan[p->nodes[k].act] = 1;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const char *op = g->node[i]->op_type;
		size_t j = 0;
		if (in_plan[i])
			continue;
		while (j < info->n_left && strcmp(info->left[j].op, op) != 0)
			j++;
		if (j == info->n_left) {
			if (j == sizeof(info->left) / sizeof(info->left[0]))
				continue;
			snprintf(info->left[j].op, sizeof(info->left[j].op), "%s", op);
			info->n_left++;
		}
		info->left[j].count++;
	}
	free(in_plan);
}

/* Splices the plan into m: folds, weights, Q/DQ pairs and the readers' new inputs. */
static int rewrite(struct graft_model *m, struct qplan *p, const struct graft_quant_opts *o,
		   struct graft_quant_info *info, struct graft_err *err)
{
	Onnx__GraphProto *g = m->proto->graph;
	size_t n0 = g->n_node;
	unsigned char *gone = calloc(n0 + 1, 1);
	struct added front = {0}, *after = calloc(n0 + 1, sizeof(*after));
	struct qpoint *qp = calloc(p->n_t + 1, sizeof(*qp));
	struct strmap made;
	int rc = 0;

	if (strmap_init(&made, 64)) {
		free(gone);
		free(after);
		free(qp);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	if (!gone || !after || !qp) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		goto out;
	}
	count_left(g, p, info);
	/* folds: the node writes its activation's output */
	for (size_t k = 0; k < p->n_nodes && !rc; k++) {
		const struct qnode *q = &p->nodes[k];
		if (q->act < 0)
			continue;
		if (edit_set_str(&g->node[q->node]->output[0], g->node[q->act]->output[0]))
			rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		gone[q->act] = 1;
	}
	/* weights and biases, dequantized before every other node */
	for (size_t k = 0; k < p->n_nodes && !rc; k++) {
		const struct qnode *q = &p->nodes[k];
		Onnx__NodeProto *n = g->node[q->node];
		float *ws = NULL;
		int64_t channels = 0;
		if (q->weight < 0)
			continue;
		float x_scale = p->t[strmap_get(&p->t_index, n->input[0])].scale;
		const struct tensor_rec *b = q->bias >= 0 ? stored_float(m, n->input[q->bias], 1)
							 : NULL;
		rc = quantize_weight(m, &made, &n->input[q->weight], q->axis, o->per_tensor,
				     b ? b->data : NULL, x_scale, &front, &ws, &channels,
				     &info->raised, err);
		info->weights += !rc;
		if (!rc && q->bias >= 0)
			rc = quantize_bias(m, &made, &n->input[q->bias], x_scale, ws, channels, &front,
					   err);
		free(ws);
	}
	/* a QuantizeLinear after each activation's producer (first, for a graph input) */
	for (size_t i = 0; i < p->n_t && !rc; i++) {
		long at = graph_producer(g, p->t[i].name);
		qp[i].at = at >= 0 ? &after[at] : &front;
		rc = quantize_point(m, &made, &p->t[i], &qp[i], err);
	}
	/* each reader reads a dequantized copy of its own */
	for (size_t i = 0; i < n0 && !rc; i++) {
		Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_input && !rc && !gone[i]; j++) {
			long t = *n->input[j] ? strmap_get(&p->t_index, n->input[j]) : -1;
			if (t >= 0)
				rc = dequantize_for(m, &made, &p->t[t], &qp[t], &n->input[j], err);
		}
	}
	if (rc)
		goto out;
	/* the new node list */
	size_t total = front.n;
	for (size_t i = 0; i < n0; i++)
		total += after[i].n + !gone[i];
	Onnx__NodeProto **list = malloc((total + 1) * sizeof(*list));
	if (!list) {
		rc = graft_err_set(err, GRAFT_ENOMEM, "out of memory");
		goto out;
	}
	size_t w = 0;
	for (size_t k = 0; k < front.n; k++)
		list[w++] = front.nodes[k];
	front.n = 0;
	for (size_t i = 0; i < n0; i++) {
		if (gone[i])
			protobuf_c_message_free_unpacked(&g->node[i]->base, NULL);
		else
			list[w++] = g->node[i];
		for (size_t k = 0; k < after[i].n; k++)
			list[w++] = after[i].nodes[k];
		after[i].n = 0;
	}
	free(g->node);
	g->node = list;
	g->n_node = w;
	info->quantized = p->n_nodes;
	info->folded = p->folded;
	info->excluded = p->excluded;
	info->tensors = p->n_t;
out:
	added_release(&front);
	for (size_t i = 0; after && i < n0; i++)
		added_release(&after[i]);
	free(after);
	free(qp);
	free(gone);
	strmap_release_copies(&made);
	return rc;
}

int graft_quantize(struct graft_model *m, const struct graft_array *x,
		   const struct graft_quant_opts *opts, struct graft_quant_info *info,
		   struct graft_err *err)
{
	struct graft_quant_opts o = opts ? *opts : (struct graft_quant_opts){0};
	int64_t opset = model_default_opset(m);
	struct qplan p;
	int rc;

	memset(info, 0, sizeof(*info));
	/* per-channel scales need opset 13; ORT's tool raises the opset too */
	info->opset_from = opset;
	if (opset < (o.per_tensor ? 10 : 13) &&
	    (rc = graft_model_upgrade_opset(m, o.per_tensor ? 10 : 13, err)))
		return rc;
	info->opset_to = model_default_opset(m);
	/* BatchNormalization folded first, as ORT's tool has its optimizer do: a Conv then
	 * quantizes with the normalisation in its weights */
	size_t folded;
	if ((rc = graft_model_unalias_all(m, err)) || (rc = graft_model_fold_bn(m, &folded, err)))
		return rc;
	if ((rc = make_plan(m, &o, &p, err)) || (rc = calibrate(m, x, &o, &p, err)) ||
	    (share_maxpool_scales(m->proto->graph, &p), 0) ||
	    (rc = rewrite(m, &p, &o, info, err))) {
		qplan_release(&p);
		return rc;
	}
	qplan_release(&p);
	if ((rc = fold_drop_unread(m, err)))
		return rc;
	edit_drop_stale_value_info(m->proto->graph);
	return model_refresh_aliases(m, err);
}
