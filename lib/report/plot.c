/*
 * plot.c: learning curves from graft-train's logs, drawn as one SVG.
 *
 * graft-train --log writes one flat JSON object per line (epoch, step, loss, accuracy,
 * val_loss, val_accuracy, lr, ...; the val_ keys only with --val and only at the end of
 * an epoch).  Plotting needs nothing more of JSON than such lines, so base/json.c's small
 * strict reader reads them here instead of a dependency, and this file allows only an
 * object of string keys and scalar values (numbers, strings, true, false, null), nothing
 * nested.  The one liberty the reader takes is the non-finite tokens that C's printf
 * (graft-train's "%g" of an infinite validation loss) and Python's json write; here they
 * read as NaN, which the plot skips as it skips a missing key.
 *
 * Everything is bounded (logs, points, the length of a number) so that garbage input
 * gives an error, never a crash or an unbounded output, and the SVG is printed with
 * fixed formats only, so that the same logs always give the same bytes.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"

/* ---- the line parser ------------------------------------------------------------------ */

/* The keys plotted, in the order of struct graft_plot_point's fields. */
static const char *const known_keys[] = {"epoch", "step", "loss", "accuracy", "val_loss",
					 "val_accuracy"};
#define N_KNOWN (sizeof(known_keys) / sizeof(known_keys[0]))
#define MAX_KEY 32              /* decoded bytes kept of a key: longer ones are unknown */

static double *point_field(struct graft_plot_point *pt, size_t k)
{
	double *f[N_KNOWN] = {&pt->epoch, &pt->step, &pt->loss, &pt->accuracy, &pt->val_loss,
			      &pt->val_accuracy};
	return f[k];
}

/* One member, key (its first MAX_KEY bytes in name) and value v: into *pt if the key is
 * known, once, and the value a number or null.  Any other key takes any scalar. */
static int take_member(struct json *j, struct graft_plot_point *pt, int *seen, const char *name,
		       const struct json_token *key, const struct json_token *v)
{
	if (v->kind == JSON_OBJECT || v->kind == JSON_ARRAY) {
		j->i = v->at;
		return json_fail(j, "nested objects and arrays are not supported (flat objects "
				 "only)");
	}
	for (size_t k = 0; k < N_KNOWN; k++) {
		if (key->len != strlen(known_keys[k]) || memcmp(name, known_keys[k], key->len))
			continue;
		if (seen[k]) {
			j->i = key->at;
			return json_fail(j, "key '%s' given twice", known_keys[k]);
		}
		seen[k] = 1;
		if (v->kind == JSON_STRING || v->kind == JSON_TRUE || v->kind == JSON_FALSE) {
			j->i = v->at;
			return json_fail(j, "'%s' is not a number", known_keys[k]);
		}
		*point_field(pt, k) = v->kind == JSON_NUMBER ? v->num : NAN;
	}
	return 0;
}

int graft_plot_parse_line(const char *line, size_t len, struct graft_plot_point *pt,
			  struct graft_err *err)
{
	struct json j;
	struct json_token key, v;
	int seen[N_KNOWN] = {0}, rc;

	for (size_t k = 0; k < N_KNOWN; k++)
		*point_field(pt, k) = NAN;
	if (!line && len)
		return graft_err_set(err, GRAFT_EINVAL, "no line");
	json_init(&j, line, len, 1, err);
	json_skip_space(&j);
	if (j.i >= j.n)
		return graft_err_set(err, GRAFT_EFORMAT, "empty line");
	if (j.s[j.i] != '{')
		return json_unexpected(&j, "'{' (a JSON object)");
	if ((rc = json_value(&j, &v, NULL, 0)))
		return rc;
	for (;;) {
		char name[MAX_KEY];
		if ((rc = json_next(&j, &key, name, sizeof(name))) <= 0)
			break;
		if ((rc = json_value(&j, &v, NULL, 0)) ||
		    (rc = take_member(&j, pt, seen, name, &key, &v)))
			return rc;
	}
	return rc ? rc : json_end(&j, "the end of the line after the object");
}

/* ---- logs ----------------------------------------------------------------------------- */

struct series {
	char *label;
	struct graft_plot_point *pts;
	size_t n;
};

struct graft_plot {
	struct series s[GRAFT_PLOT_MAX_LOGS];
	size_t n;
	size_t points;          /* over all logs */
};

int graft_plot_new(struct graft_plot **p, struct graft_err *err)
{
	if (!(*p = calloc(1, sizeof(**p))))
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	return 0;
}

void graft_plot_free(struct graft_plot *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->s[i].label);
		free(p->s[i].pts);
	}
	free(p);
}

/* A value the axes can hold: finite and within GRAFT_PLOT_MAX_ABS. */
static int plottable(double v)
{
	return isfinite(v) && fabs(v) <= GRAFT_PLOT_MAX_ABS;
}

static int usable(const struct graft_plot_point *pt)
{
	return plottable(pt->epoch) && (plottable(pt->loss) || plottable(pt->accuracy) ||
					plottable(pt->val_loss) || plottable(pt->val_accuracy));
}

int graft_plot_add_log(struct graft_plot *p, const char *label, const void *buf, size_t len,
		       struct graft_err *err)
{
	const char *s = buf, *end;
	struct series se = {0};
	size_t cap = 0, lineno = 0, nonblank = 0;

	if (!label || (!buf && len))
		return graft_err_set(err, GRAFT_EINVAL, "no label or no buffer");
	end = s ? s + len : s;
	if (p->n == GRAFT_PLOT_MAX_LOGS)
		return graft_err_set(err, GRAFT_EINVAL, "more than %d logs", GRAFT_PLOT_MAX_LOGS);
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl ? nl : end;
		struct graft_plot_point pt;
		struct graft_err perr = {0};

		lineno++;
		size_t k = 0;
		while (s + k < e && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
			k++;
		if (s + k < e) {
			nonblank++;
			if (graft_plot_parse_line(s, (size_t)(e - s), &pt, &perr)) {
				free(se.pts);
				return graft_err_set(err, perr.code, "line %zu: %s", lineno,
						     perr.msg);
			}
			if (usable(&pt)) {
				if (p->points + se.n >= GRAFT_PLOT_MAX_POINTS) {
					free(se.pts);
					return graft_err_set(err, GRAFT_EUNSUPPORTED, "line %zu: more "
							     "than %d points in all logs", lineno,
							     GRAFT_PLOT_MAX_POINTS);
				}
				void *np = array_grow(se.pts, &cap, se.n, sizeof(*se.pts));
				if (!np) {
					free(se.pts);
					return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
				}
				se.pts = np;
				se.pts[se.n++] = pt;
			}
		}
		s = nl ? nl + 1 : end;
	}
	if (!se.n)
		return graft_err_set(err, GRAFT_EFORMAT, nonblank ? "no usable line: none has a "
				     "finite epoch with a loss or an accuracy" : "empty input");
	if (!(se.label = strdup(label))) {
		free(se.pts);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	}
	p->s[p->n++] = se;
	p->points += se.n;
	return 0;
}

size_t graft_plot_log_count(const struct graft_plot *p)
{
	return p->n;
}

size_t graft_plot_point_count(const struct graft_plot *p, size_t i)
{
	return i < p->n ? p->s[i].n : 0;
}

const struct graft_plot_point *graft_plot_points(const struct graft_plot *p, size_t i)
{
	return i < p->n ? p->s[i].pts : NULL;
}

/* ---- SVG ------------------------------------------------------------------------------ */

/* A growing output buffer; the first failure sticks and later appends do nothing.  A
 * NULL buffer takes nothing (put_text then only counts characters). */
struct sbuf {
	char *b;
	size_t len, cap;
	int failed;
};

static void put(struct sbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct sbuf *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!o || o->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->b ? o->b + o->len : NULL, o->b ? o->cap - o->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		o->failed = 1;
		return;
	}
	if (!o->b || (size_t)n >= o->cap - o->len) {
		size_t nc = o->cap ? o->cap : 1 << 16;
		while (nc - o->len <= (size_t)n) {
			if (nc > ((size_t)-1) / 2) {
				o->failed = 1;
				return;
			}
			nc *= 2;
		}
		char *nb = realloc(o->b, nc);
		if (!nb) {
			o->failed = 1;
			return;
		}
		o->b = nb;
		o->cap = nc;
		va_start(ap, fmt);
		vsnprintf(o->b + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
	}
	o->len += (size_t)n;
}

/* Text for XML: markup characters escaped, and whatever XML 1.0 cannot hold (malformed
 * UTF-8, control characters, U+FFFE and U+FFFF) replaced by U+FFFD.  Returns the number
 * of characters, for estimating the text's width. */
static size_t put_text(struct sbuf *o, const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t n = strlen(text), chars = 0;

	for (size_t i = 0; i < n; chars++) {
		uint32_t cp;
		size_t k = utf8_char(s + i, n - i, &cp);
		if (!k || cp < 0x20 || cp == 0xfffe || cp == 0xffff) {
			put(o, "\xef\xbf\xbd");
			i += k ? k : 1;
			continue;
		}
		if (cp == '&')
			put(o, "&amp;");
		else if (cp == '<')
			put(o, "&lt;");
		else if (cp == '>')
			put(o, "&gt;");
		else if (cp == '"')
			put(o, "&quot;");
		else
			put(o, "%.*s", (int)k, (const char *)s + i);
		i += k;
	}
	return chars;
}

/* An axis: the range shown and its ticks (lo + k * step, k = 0 .. ticks - 1). */
struct axis {
	double lo, hi, step;
	int ticks;
};

static double nice_step(double raw)
{
	double mag = pow(10, floor(log10(raw))), f = raw / mag;

	return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/* The axis for data in [mn, mx] (both plottable): about five ticks at round numbers. */
static void axis_fit(struct axis *a, double mn, double mx)
{
	double big = fmax(fabs(mn), fabs(mx));

	/* One value, or a range too narrow for its magnitude (or for a double's exponent, as
	 * subnormal values are): widen it on both sides. */
	if (!(mx - mn > big * 1e-9) || !(mx - mn >= 1e-290)) {
		double d = big > 0 ? fmax(big * 0.05, 1e-290) : 1;
		mn -= d;
		mx += d;
	}
	a->step = nice_step((mx - mn) / 5);
	a->lo = floor(mn / a->step) * a->step;
	a->hi = ceil(mx / a->step) * a->step;
	double n = (a->hi - a->lo) / a->step;
	if (isfinite(a->step) && a->step > 0 && a->hi > a->lo && n >= 1 && n <= 20) {
		a->ticks = (int)floor(n + 0.5) + 1;
	} else {                /* not expected with the values bounded; still safe */
		a->lo = mn;
		a->hi = mx;
		a->step = mx - mn;
		a->ticks = 2;
	}
}

/* A tick label: the decimals the step needs for ordinary numbers; otherwise %g with the
 * significant digits that tell neighbouring ticks apart.  Never "-0". */
static void put_number(struct sbuf *o, double v, double step)
{
	if (fabs(v) < step * 1e-6)
		v = 0;
	if (step >= 1e-4 && fabs(v) < 1e7) {
		int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
		put(o, "%.*f", dec, fabs(v) < 0.5 * pow(10, -dec) ? 0 : v);
	} else {
		double digits = ceil(log10(fmax(fabs(v), step) / step) - 1e-9) + 1;
		put(o, "%.*g", digits < 1 ? 1 : digits > 17 ? 17 : (int)digits, v);
	}
}

#define W 960                   /* the picture's width */
#define PANEL_W 480             /* each panel's: the two sit side by side */
#define PLOT_L 70               /* the plot area within a panel */
#define PLOT_R 20
#define PLOT_T 34
#define PLOT_H 260
#define PANEL_H 344             /* heading, plot area, tick labels, axis title */
#define LEGEND_ROW 20
#define CHAR_W 7                /* an estimate of a character's width at 12px */

/* Series i's colour: Tableau's ten, then hues a golden angle apart. */
static void colour(size_t i, char out[8])
{
	static const char *const tab[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
					  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
	if (i < 10) {
		memcpy(out, tab[i], 8);
		return;
	}
	/* HSL(h, 65%, 42%) to RGB. */
	double h = fmod((double)(i - 10) * 137.507764 + 15, 360) / 60, l = 0.42, s = 0.65;
	double c = (1 - fabs(2 * l - 1)) * s, x = c * (1 - fabs(fmod(h, 2) - 1)), m = l - c / 2;
	double rgb[3];
	int sector = (int)h % 6;
	double tbl[6][3] = {{c, x, 0}, {x, c, 0}, {0, c, x}, {0, x, c}, {x, 0, c}, {c, 0, x}};
	for (int k = 0; k < 3; k++)
		rgb[k] = tbl[sector][k] + m;
	snprintf(out, 8, "#%02x%02x%02x", (unsigned)lround(rgb[0] * 255) & 0xff,
		 (unsigned)lround(rgb[1] * 255) & 0xff, (unsigned)lround(rgb[2] * 255) & 0xff);
}

static double field(const struct graft_plot_point *pt, int panel, int val)
{
	return panel == 0 ? (val ? pt->val_loss : pt->loss) : (val ? pt->val_accuracy : pt->accuracy);
}

static void draw_panel(struct sbuf *o, const struct graft_plot *p, int panel, double top,
		       const struct axis *ax)
{
	static const char *const ids[] = {"loss", "accuracy"};
	double px = panel * PANEL_W, x0 = px + PLOT_L, x1 = px + PANEL_W - PLOT_R;
	double y0 = top + PLOT_T, y1 = y0 + PLOT_H;
	double mn = INFINITY, mx = -INFINITY;
	struct axis ay;

	for (size_t i = 0; i < p->n; i++)
		for (size_t j = 0; j < p->s[i].n; j++)
			for (int val = 0; val < 2; val++) {
				double v = field(&p->s[i].pts[j], panel, val);
				if (plottable(v)) {
					mn = fmin(mn, v);
					mx = fmax(mx, v);
				}
			}
	int empty = !(mn <= mx);
	if (empty)
		axis_fit(&ay, 0, 1);
	else
		axis_fit(&ay, mn, mx);

	put(o, "<g class=\"panel\" id=\"%s\">\n", ids[panel]);
	put(o, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"14\" "
	    "font-weight=\"bold\">%s</text>\n", (x0 + x1) / 2, top + 20, ids[panel]);
	/* Ticks, grid lines and their labels. */
	put(o, "<g class=\"ticks\" stroke=\"#000000\">\n");
	for (int k = 0; k < ax->ticks; k++) {
		double v = ax->lo + k * ax->step, x = x0 + (v - ax->lo) / (ax->hi - ax->lo) * (x1 - x0);
		put(o, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", x, y1, x, y1 + 5);
		put(o, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#dddddd\"/>\n",
		    x, y0, x, y1);
	}
	for (int k = 0; k < ay.ticks; k++) {
		double v = ay.lo + k * ay.step, y = y1 - (v - ay.lo) / (ay.hi - ay.lo) * (y1 - y0);
		put(o, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", x0 - 5, y, x0, y);
		put(o, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#dddddd\"/>\n",
		    x0, y, x1, y);
	}
	put(o, "</g>\n<g class=\"tick-labels\">\n");
	for (int k = 0; k < ax->ticks; k++) {
		double v = ax->lo + k * ax->step, x = x0 + (v - ax->lo) / (ax->hi - ax->lo) * (x1 - x0);
		put(o, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">", x, y1 + 18);
		put_number(o, v, ax->step);
		put(o, "</text>\n");
	}
	for (int k = 0; k < ay.ticks; k++) {
		double v = ay.lo + k * ay.step, y = y1 - (v - ay.lo) / (ay.hi - ay.lo) * (y1 - y0);
		put(o, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">", x0 - 8, y + 4);
		put_number(o, v, ay.step);
		put(o, "</text>\n");
	}
	put(o, "</g>\n");
	/* The frame after the grid, so that the grid does not cover it. */
	put(o, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
	    "stroke=\"#000000\"/>\n", x0, y0, x1 - x0, y1 - y0);
	put(o, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">epoch</text>\n", (x0 + x1) / 2,
	    y1 + 38);
	if (empty)
		put(o, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" fill=\"#777777\">no "
		    "data</text>\n", (x0 + x1) / 2, (y0 + y1) / 2);
	/* The curves: each log's train values solid, its validation values dashed. */
	for (size_t i = 0; i < p->n; i++) {
		char c[8];
		colour(i, c);
		for (int val = 0; val < 2; val++) {
			size_t count = 0;
			double lx = 0, ly = 0;
			for (size_t j = 0; j < p->s[i].n; j++) {
				const struct graft_plot_point *pt = &p->s[i].pts[j];
				double v = field(pt, panel, val);
				if (!plottable(v))
					continue;
				lx = x0 + (pt->epoch - ax->lo) / (ax->hi - ax->lo) * (x1 - x0);
				ly = y1 - (v - ay.lo) / (ay.hi - ay.lo) * (y1 - y0);
				if (!count++)
					put(o, "<polyline class=\"%s\" data-log=\"%zu\" fill=\"none\" "
					    "stroke=\"%s\" stroke-width=\"1.5\"%s points=\"",
					    val ? "val" : "train", i, c,
					    val ? " stroke-dasharray=\"6 4\"" : "");
				else
					put(o, " ");
				put(o, "%.2f,%.2f", lx, ly);
			}
			if (count)
				put(o, "\"/>\n");
			/* A lone point draws no line: mark it. */
			if (count == 1)
				put(o, "<circle class=\"%s\" data-log=\"%zu\" cx=\"%.2f\" cy=\"%.2f\" "
				    "r=\"2.5\" fill=\"%s\"/>\n", val ? "val" : "train", i, lx, ly, c);
		}
	}
	put(o, "</g>\n");
}

/* Legend entry i's width: a log's (i < p->n), then the styles train and validation. */
static double legend_width(const struct graft_plot *p, size_t i)
{
	size_t chars = i < p->n ? put_text(NULL, p->s[i].label) : i == p->n ? 5 : 10;

	return 30 + (double)chars * CHAR_W + 20;
}

int graft_plot_render(const struct graft_plot *p, const char *title, char **svg, size_t *len,
		      struct graft_err *err)
{
	struct sbuf o = {0};
	struct axis ax;
	double mn = INFINITY, mx = -INFINITY, top;
	double lx, ly, legend_top;
	int rows = 1;

	*svg = NULL;
	*len = 0;
	if (title && !*title)
		title = NULL;
	top = title ? 44 : 8;
	if (!p->n)
		return graft_err_set(err, GRAFT_EINVAL, "no logs to plot");
	for (size_t i = 0; i < p->n; i++)
		for (size_t j = 0; j < p->s[i].n; j++) {
			mn = fmin(mn, p->s[i].pts[j].epoch);
			mx = fmax(mx, p->s[i].pts[j].epoch);
		}
	axis_fit(&ax, mn, mx);

	/* The legend's rows: one entry per log, then the two line styles, flowed left to
	 * right and wrapped at the picture's width; its height sets the picture's. */
	legend_top = top + PANEL_H + 8;
	lx = PLOT_L;
	for (size_t i = 0; i < p->n + 2; i++) {
		double w = legend_width(p, i);
		if (lx > PLOT_L && lx + w > W - PLOT_R) {
			rows++;
			lx = PLOT_L;
		}
		lx += w;
	}

	put(&o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	put(&o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	    "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", W,
	    (int)legend_top + rows * LEGEND_ROW + 8, W, (int)legend_top + rows * LEGEND_ROW + 8);
	if (title) {
		put(&o, "<title>");
		put_text(&o, title);
		put(&o, "</title>\n");
	}
	put(&o, "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n");
	if (title) {
		put(&o, "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" "
		    "font-weight=\"bold\">", W / 2);
		put_text(&o, title);
		put(&o, "</text>\n");
	}
	draw_panel(&o, p, 0, top, &ax);
	draw_panel(&o, p, 1, top, &ax);

	put(&o, "<g class=\"legend\">\n");
	lx = PLOT_L;
	ly = legend_top + LEGEND_ROW / 2;
	for (size_t i = 0; i < p->n + 2; i++) {
		char c[8] = "#333333";
		double w = legend_width(p, i);
		if (lx > PLOT_L && lx + w > W - PLOT_R) {
			lx = PLOT_L;
			ly += LEGEND_ROW;
		}
		if (i < p->n)
			colour(i, c);
		put(&o, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
		    "stroke-width=\"%s\"%s/>\n", lx, ly, lx + 24, ly, c, i < p->n ? "3" : "1.5",
		    i == p->n + 1 ? " stroke-dasharray=\"6 4\"" : "");
		put(&o, "<text x=\"%.2f\" y=\"%.2f\">", lx + 30, ly + 4);
		if (i < p->n)
			put_text(&o, p->s[i].label);
		else
			put(&o, i == p->n ? "train" : "validation");
		put(&o, "</text>\n");
		lx += w;
	}
	put(&o, "</g>\n</svg>\n");
	if (o.failed) {
		free(o.b);
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory drawing the plot");
	}
	*svg = o.b;
	*len = o.len;
	return 0;
}
