/*
 * transform.c: what training and evaluation do to a stored sample before the model sees
 * it, defined as torchvision defines it, so that recipes written for PyTorch mean the
 * same here:
 *   evaluation: Resize(shorter side) then CenterCrop, then Normalize;
 *   training: RandomResizedCrop (or the evaluation crop), RandomHorizontalFlip,
 *             ColorJitter(brightness, contrast, saturation), then Normalize.
 * Cropping and resizing are one step: the crop is a region of the original image, and
 * the output samples it once with PIL's antialiased bilinear filter, which is what
 * resizing the whole image and then cropping it computes.  Every random choice comes
 * from a generator keyed by (seed, sample, epoch), so a sample's transform does not
 * depend on the batch, the thread or the order it is made in.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

void data_sample_rng(struct graft_rng *r, uint64_t seed, int64_t sample, int64_t epoch)
{
	uint64_t k = seed ^ 0x6a09e667f3bcc909ULL;

	k ^= (uint64_t)sample * 0x9e3779b97f4a7c15ULL;
	k = (k ^ (k >> 31)) * 0xbf58476d1ce4e5b9ULL;
	k ^= (uint64_t)epoch * 0xc2b2ae3d27d4eb4fULL;
	graft_rng_seed(r, k);
}

/* ---- where to crop ---- */

void data_eval_box(int64_t h, int64_t w, int64_t oh, int64_t ow, int64_t resize,
		   struct box *b)
{
	/* Resize(resize): the shorter side becomes resize, the longer int(resize * long /
	 * short), as torchvision computes it */
	int64_t rh = h <= w ? resize : (int64_t)((double)resize * (double)h / (double)w);
	int64_t rw = h <= w ? (int64_t)((double)resize * (double)w / (double)h) : resize;
	double sy = (double)h / (double)rh, sx = (double)w / (double)rw;
	/* CenterCrop: int(round((resized - crop) / 2)), Python rounding half to even */
	double top = nearbyint((double)(rh - oh) / 2), left = nearbyint((double)(rw - ow) / 2);

	b->x0 = left * sx;
	b->y0 = top * sy;
	b->x1 = (left + (double)ow) * sx;
	b->y1 = (top + (double)oh) * sy;
}

void data_rrc_box(int64_t h, int64_t w, double scale_min, struct graft_rng *r, struct box *b)
{
	double area = (double)h * (double)w, lo = log(3.0 / 4), hi = log(4.0 / 3);
	int64_t ch, cw, top, left;

	for (int attempt = 0; attempt < 10; attempt++) {
		double target = area * (scale_min + (1 - scale_min) * graft_rng_uniform(r));
		double aspect = exp(lo + (hi - lo) * graft_rng_uniform(r));
		cw = (int64_t)nearbyint(sqrt(target * aspect));
		ch = (int64_t)nearbyint(sqrt(target / aspect));
		if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
			top = (int64_t)graft_rng_below(r, (uint64_t)(h - ch + 1));
			left = (int64_t)graft_rng_below(r, (uint64_t)(w - cw + 1));
			goto done;
		}
	}
	/* the whole image, cut to the nearest aspect allowed */
	double ratio = (double)w / (double)h;
	cw = w;
	ch = h;
	if (ratio < 3.0 / 4)
		ch = (int64_t)nearbyint((double)w / (3.0 / 4));
	else if (ratio > 4.0 / 3)
		cw = (int64_t)nearbyint((double)h * (4.0 / 3));
	if (ch > h)
		ch = h;
	if (cw > w)
		cw = w;
	top = (h - ch) / 2;
	left = (w - cw) / 2;
done:
	b->x0 = (double)left;
	b->y0 = (double)top;
	b->x1 = (double)(left + cw);
	b->y1 = (double)(top + ch);
}

/* ---- resampling ---- */

/* PIL's bilinear (triangle) filter, support 1. */
static double triangle(double x)
{
	x = fabs(x);
	return x < 1 ? 1 - x : 0;
}

/* The filter taps of out outputs over [in0, in1) of an axis of size in: output i reads
 * inputs start[i] .. start[i] + count[i] - 1 with weights w[i * max ...], as PIL's
 * precompute_coeffs places and normalises them. */
struct taps {
	int64_t *start;
	int *count;
	double *w;
	int max;
};

static int taps_make(double in0, double in1, int64_t in, int64_t out, struct taps *t)
{
	double scale = (in1 - in0) / (double)out, fscale = scale > 1 ? scale : 1;
	double support = fscale;        /* the filter's support (1) widened when shrinking */

	t->max = (int)ceil(support) * 2 + 1;
	t->start = malloc(sizeof(int64_t) * (size_t)out);
	t->count = malloc(sizeof(int) * (size_t)out);
	t->w = malloc(sizeof(double) * (size_t)(out * t->max));
	if (!t->start || !t->count || !t->w)
		return -1;
	for (int64_t i = 0; i < out; i++) {
		double center = in0 + ((double)i + 0.5) * scale, sum = 0;
		int64_t lo = (int64_t)(center - support + 0.5), hi = (int64_t)(center + support + 0.5);
		if (lo < 0)
			lo = 0;
		if (hi > in)
			hi = in;
		if (hi - lo > t->max)
			hi = lo + t->max;
		if (hi <= lo) {         /* (a box at the edge) the nearest pixel */
			lo = center < 0 ? 0 : center >= (double)in ? in - 1 : (int64_t)center;
			hi = lo + 1;
		}
		double *w = t->w + i * t->max;
		for (int64_t x = lo; x < hi; x++)
			sum += w[x - lo] = triangle(((double)x - center + 0.5) / fscale);
		for (int64_t x = lo; x < hi; x++)
			w[x - lo] = sum > 0 ? w[x - lo] / sum : 1.0 / (double)(hi - lo);
		t->start[i] = lo;
		t->count[i] = (int)(hi - lo);
	}
	return 0;
}

static void taps_free(struct taps *t)
{
	free(t->start);
	free(t->count);
	free(t->w);
}

size_t data_resample_tmp(int64_t h, int64_t ow, int64_t cin)
{
	return (size_t)(h * ow * cin);  /* every row, at most, at the output's width */
}

void data_resample(const struct graft_array *px, const struct box *b, int64_t oh, int64_t ow,
		   int64_t c, int flip, float *dst, float *tmp)
{
	const uint8_t *src = px->data;
	int64_t h = px->dims[0], w = px->dims[1], cin = px->dims[2], y0, y1;
	struct taps tx = {0}, ty = {0};

	if (taps_make(b->x0, b->x1, w, ow, &tx) || taps_make(b->y0, b->y1, h, oh, &ty)) {
		taps_free(&tx);
		taps_free(&ty);
		memset(dst, 0, sizeof(float) * (size_t)(c * oh * ow));
		return;
	}
	/* rows the vertical taps read */
	y0 = h;
	y1 = 0;
	for (int64_t i = 0; i < oh; i++) {
		if (ty.start[i] < y0)
			y0 = ty.start[i];
		if (ty.start[i] + ty.count[i] > y1)
			y1 = ty.start[i] + ty.count[i];
	}
	/* horizontal: tmp (rows y0..y1, ow, cin) */
	for (int64_t y = y0; y < y1; y++) {
		const uint8_t *row = src + y * w * cin;
		float *out = tmp + (y - y0) * ow * cin;
		for (int64_t j = 0; j < ow; j++) {
			const double *wt = tx.w + j * tx.max;
			const uint8_t *p = row + tx.start[j] * cin;
			for (int64_t k = 0; k < cin; k++) {
				double s = 0;
				for (int t = 0; t < tx.count[j]; t++)
					s += wt[t] * p[t * cin + k];
				out[j * cin + k] = (float)s;
			}
		}
	}
	/* vertical, then channels, flip and the scale to [0, 1] */
	for (int64_t i = 0; i < oh; i++) {
		const double *wt = ty.w + i * ty.max;
		const float *rows = tmp + (ty.start[i] - y0) * ow * cin;
		for (int64_t j = 0; j < ow; j++) {
			double v[3] = {0, 0, 0};
			for (int t = 0; t < ty.count[i]; t++)
				for (int64_t k = 0; k < cin; k++)
					v[k] += wt[t] * rows[(t * ow + j) * cin + k];
			int64_t at = i * ow + (flip ? ow - 1 - j : j);
			if (c == 1 && cin == 3)
				dst[at] = (float)((0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]) / 255);
			else
				for (int64_t k = 0; k < c; k++)
					dst[k * oh * ow + at] = (float)(v[cin == 3 ? k : 0] / 255);
		}
	}
	taps_free(&tx);
	taps_free(&ty);
}

/* ---- colour ---- */

static float clamp01(double v)
{
	return (float)(v < 0 ? 0 : v > 1 ? 1 : v);
}

/* torchvision's rgb_to_grayscale of pixel j. */
static double gray_at(const float *d, int64_t c, int64_t n, int64_t j)
{
	return c == 3 ? 0.2989 * d[j] + 0.587 * d[n + j] + 0.114 * d[2 * n + j] : d[j];
}

void data_jitter(float *d, int64_t c, int64_t n, double s, struct graft_rng *r)
{
	int64_t order[4] = {0, 1, 2, 3};
	double f[3];

	graft_rng_shuffle(r, order, 4);
	for (int k = 0; k < 3; k++) {
		double lo = 1 - s > 0 ? 1 - s : 0;
		f[k] = lo + (1 + s - lo) * graft_rng_uniform(r);
	}
	for (int k = 0; k < 4; k++) {
		int64_t op = order[k];
		if (op == 0) {                          /* brightness */
			for (int64_t j = 0; j < c * n; j++)
				d[j] = clamp01(f[0] * d[j]);
		} else if (op == 1) {                   /* contrast: towards the mean grey */
			double mean = 0;
			for (int64_t j = 0; j < n; j++)
				mean += gray_at(d, c, n, j);
			mean /= (double)n;
			for (int64_t j = 0; j < c * n; j++)
				d[j] = clamp01(f[1] * d[j] + (1 - f[1]) * mean);
		} else if (op == 2 && c == 3) {         /* saturation: towards each pixel's grey */
			for (int64_t j = 0; j < n; j++) {
				double g = gray_at(d, c, n, j);
				for (int64_t k2 = 0; k2 < 3; k2++)
					d[k2 * n + j] = clamp01(f[2] * d[k2 * n + j] + (1 - f[2]) * g);
			}
		}                                       /* 3: hue, not applied */
	}
}

/* ---- one sample ---- */

int data_scratch(float **tmp, size_t *n, size_t need)
{
	float *grown;

	if (need <= *n)
		return 0;
	if (!(grown = realloc(*tmp, need * sizeof(float))))
		return -1;
	*tmp = grown;
	*n = need;
	return 0;
}

int data_image_sample(const struct graft_images *im, int64_t i, const struct image_transform *t,
		      unsigned augment, struct graft_rng *r, float *dst, float **tmp,
		      size_t *tmp_n, double *decode_s, struct graft_err *err)
{
	struct graft_array px;
	struct box b;
	void *owned;
	double t0 = graft_now();
	int flip = 0, rc;

	if ((rc = graft_images_pixels(im, i, &px, &owned, err)))
		return rc;
	*decode_s = graft_now() - t0;
	if (r && (augment & GRAFT_AUGMENT_RRC))
		data_rrc_box(px.dims[0], px.dims[1], t->scale_min, r, &b);
	else
		data_eval_box(px.dims[0], px.dims[1], t->oh, t->ow, t->resize, &b);
	if (r && (augment & GRAFT_AUGMENT_FLIP))
		flip = graft_rng_uniform(r) < 0.5;
	if (data_scratch(tmp, tmp_n, data_resample_tmp(px.dims[0], t->ow, px.dims[2]))) {
		free(owned);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	data_resample(&px, &b, t->oh, t->ow, t->c, flip, dst, *tmp);
	free(owned);
	images_let_go(im, i, graft_images_at(im, i),
		      (size_t)im->index[i * GRAFT_IMAGES_INDEX_COLS + 1]);
	int64_t n = t->oh * t->ow;
	if (r && (augment & GRAFT_AUGMENT_JITTER))
		data_jitter(dst, t->c, n, t->jitter, r);
	for (int64_t k = 0; t->mean && k < t->c; k++) {
		float *p = dst + k * n;
		double m = t->mean[k], s = t->std[k];
		for (int64_t j = 0; j < n; j++)
			p[j] = (float)((p[j] - m) / s);
	}
	return 0;
}

/* Mirrors sample s (c, h, w) left-right. */
static void flip_float(float *s, int64_t c, int64_t h, int64_t w)
{
	for (int64_t k = 0; k < c * h; k++)
		for (int64_t i = 0, j = w - 1; i < j; i++, j--) {
			float v = s[k * w + i];
			s[k * w + i] = s[k * w + j];
			s[k * w + j] = v;
		}
}

/* Shifts sample s by (dy, dx), zero-filling what comes in: a crop of the sample padded by
 * its shift, as torchvision's RandomCrop(size, padding) does. */
static void shift_float(float *s, int64_t c, int64_t h, int64_t w, int64_t dy, int64_t dx,
			float *tmp)
{
	memcpy(tmp, s, (size_t)(c * h * w) * sizeof(float));
	for (int64_t k = 0; k < c; k++)
		for (int64_t i = 0; i < h; i++)
			for (int64_t j = 0; j < w; j++) {
				int64_t si = i + dy, sj = j + dx;
				s[(k * h + i) * w + j] = si >= 0 && si < h && sj >= 0 && sj < w
					? tmp[(k * h + si) * w + sj] : 0.0f;
			}
}

void data_float_augment(float *s, int64_t c, int64_t h, int64_t w, unsigned augment,
			struct graft_rng *r, float *tmp)
{
	if ((augment & GRAFT_AUGMENT_FLIP) && graft_rng_below(r, 2))
		flip_float(s, c, h, w);
	if (augment & GRAFT_AUGMENT_CROP) {
		int64_t ph = h / 8 > 0 ? h / 8 : 1, pw = w / 8 > 0 ? w / 8 : 1;
		int64_t dy = (int64_t)graft_rng_below(r, (uint64_t)(2 * ph + 1)) - ph;
		int64_t dx = (int64_t)graft_rng_below(r, (uint64_t)(2 * pw + 1)) - pw;
		shift_float(s, c, h, w, dy, dx, tmp);
	}
}
