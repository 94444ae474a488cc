/* test_plot.c: graft-train's log lines parsed strictly (good lines, each kind of bad one,
 * garbage that must never crash), logs with their line numbers in errors, and the SVG's
 * curves, points, escaping and determinism. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "graft.h"

/* Two epochs with validation, as graft-train --val --log writes them, a step line of
 * --log-every between them. */
static const char log_a[] =
	"{\"epoch\": 0.5333, \"step\": 4, \"loss\": 2.1, \"accuracy\": 0.25, \"lr\": 0.01, "
	"\"images_per_s\": 2596.8, \"seconds\": 0.05}\n"
	"{\"epoch\": 1.067, \"step\": 8, \"loss\": 1.70605, \"accuracy\": 0.421875, "
	"\"val_loss\": 1.92754, \"val_accuracy\": 0.65, \"lr\": 0.01, \"images_per_s\": 2596.8, "
	"\"seconds\": 0.11}\n"
	"{\"epoch\": 2, \"step\": 15, \"loss\": 1.31103, \"accuracy\": 0.651786, \"val_loss\": "
	"1.51152, \"val_accuracy\": 0.666667, \"lr\": 0.01, \"images_per_s\": 2715.4, "
	"\"seconds\": 0.20}\n";
/* Regression: no accuracy; one validation point only. */
static const char log_b[] =
	"{\"epoch\": 1, \"step\": 3, \"loss\": 0.5, \"val_loss\": 0.7}\r\n"
	"\n"
	"   \n"
	"{\"epoch\": 2, \"step\": 6, \"loss\": 0.25}";

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *s = strstr(hay, needle); s; s = strstr(s + 1, needle))
		n++;
	return n;
}

static int parse(const char *line, struct graft_plot_point *pt, struct graft_err *err)
{
	return graft_plot_parse_line(line, strlen(line), pt, err);
}

static void test_parse_good(void **state)
{
	struct graft_plot_point pt;
	struct graft_err err = {0};
	(void)state;

	assert_int_equal(parse("{\"epoch\": 1.067, \"step\": 8, \"loss\": 1.70605, \"accuracy\": "
			       "0.421875, \"val_loss\": 1.92754, \"val_accuracy\": 0.65, "
			       "\"lr\": 0.01, \"images_per_s\": 2596.8, \"seconds\": 0.11}\n",
			       &pt, &err), 0);
	assert_true(pt.epoch == 1.067 && pt.step == 8 && pt.loss == 1.70605);
	assert_true(pt.accuracy == 0.421875 && pt.val_loss == 1.92754 && pt.val_accuracy == 0.65);

	/* Missing, null and non-finite values are NaN; other keys take any scalar. */
	assert_int_equal(parse(" {\"loss\":-0.5e+1,\"epoch\":0,\"val_loss\":null,\"accuracy\":NaN,"
			       "\"note\":\"\\u00e9t\\u00E9 \\ud83d\\ude00 \\\"\\\\\\/\\b\\f\\n\\r\\t"
			       "\",\"ok\":true,\"bad\":false,\"x\":null} \r\n", &pt, &err), 0);
	assert_true(pt.loss == -5 && pt.epoch == 0);
	assert_true(isnan(pt.val_loss) && isnan(pt.accuracy) && isnan(pt.step) &&
		    isnan(pt.val_accuracy));
	for (const char *const *t = (const char *const[]){"Infinity", "-Infinity", "inf", "-inf",
							  "nan", "-nan", "-NaN", NULL}; *t; t++) {
		char line[64];
		snprintf(line, sizeof(line), "{\"epoch\": 1, \"loss\": %s}", *t);
		assert_int_equal(parse(line, &pt, &err), 0);
		assert_true(isnan(pt.loss));
	}
	/* An escaped key is still the key; a huge exponent is infinite, not an error. */
	assert_int_equal(parse("{\"\\u006coss\": 3, \"epoch\": 1e999}", &pt, &err), 0);
	assert_true(pt.loss == 3 && isinf(pt.epoch));
	assert_int_equal(parse("{}", &pt, &err), 0);
	assert_true(isnan(pt.epoch));
	/* Raw UTF-8 in strings, and the length given, not the NUL. */
	assert_int_equal(parse("{\"name\": \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}", &pt,
			       &err), 0);
	assert_int_equal(graft_plot_parse_line("{\"loss\": 1}garbage", 11, &pt, &err), 0);
	assert_true(pt.loss == 1);
}

static void test_parse_bad(void **state)
{
	static const struct {
		const char *line, *msg;
	} bad[] = {
		{"", "empty line"},
		{"  \r\n", "empty line"},
		{"[1, 2]", "expected '{' (a JSON object), found '[' at column 1"},
		{"42", "expected '{'"},
		{"{", "expected a key (a string in double quotes), found the end of the line at "
		      "column 2"},
		{"{'loss': 1}", "expected a key (a string in double quotes), found '''"},
		{"{loss: 1}", "expected a key"},
		{"{\"loss\" 1}", "expected ':' after the key, found '1' at column 9"},
		{"{\"loss\": }", "expected a value, found '}'"},
		{"{\"loss\": 1,}", "expected a key (a string in double quotes), found '}' at column 12"},
		{"{\"loss\": 1 \"epoch\": 2}", "expected ',' or '}', found '\"'"},
		{"{\"loss\": 1", "expected ',' or '}', found the end of the line"},
		{"{\"loss\": 1} x", "expected the end of the line after the object, found 'x' at "
				 "column 13"},
		{"{\"loss\": 1}{}", "expected the end of the line after the object"},
		{"{\"loss\": 01}", "a number with a leading zero at column 11"},
		{"{\"loss\": 1.}", "expected a digit after the decimal point"},
		{"{\"loss\": .5}", "expected a value, found '.'"},
		{"{\"loss\": +1}", "expected a value, found '+'"},
		{"{\"loss\": -}", "expected a digit, found '}'"},
		{"{\"loss\": 1e}", "expected a digit in the exponent"},
		{"{\"loss\": 1e+}", "expected a digit in the exponent"},
		{"{\"loss\": 0x10}", "expected ',' or '}', found 'x'"},
		{"{\"loss\": tru}", "expected a value, found 't'"},
		{"{\"loss\": nulll}", "expected a value, found 'n'"},
		{"{\"loss\": Infinityx}", "expected a value, found 'I'"},
		{"{\"loss\": \"1.5\"}", "'loss' is not a number at column 10"},
		{"{\"val_accuracy\": true}", "'val_accuracy' is not a number"},
		{"{\"loss\": 1, \"loss\": 2}", "key 'loss' given twice at column 13"},
		{"{\"epoch\": 1, \"\\u0065poch\": 2}", "key 'epoch' given twice"},
		{"{\"a\": {\"b\": 1}}", "nested objects and arrays are not supported"},
		{"{\"a\": [1]}", "nested objects and arrays are not supported"},
		{"{\"a\": \"x}", "unterminated string"},
		{"{\"a\": \"x\\", "unterminated string"},
		{"{\"a\": \"\\x\"}", "bad escape: backslash and 'x'"},
		{"{\"a\": \"\\u12g4\"}", "bad \\u escape: four hex digits wanted"},
		{"{\"a\": \"\\u12\"}", "bad \\u escape: four hex digits wanted"},
		{"{\"a\": \"\\ud800\"}", "a high surrogate without its low one"},
		{"{\"a\": \"\\ud800\\u0041\"}", "a high surrogate without its low one"},
		{"{\"a\": \"\\udc00\"}", "a lone low surrogate"},
		{"{\"a\": \"tab\there\"}", "control character 0x09 in a string"},
		{"{\"a\": \"\xff\"}", "malformed UTF-8 in a string at column 8"},
		{"{\"a\": \"\xc0\xaf\"}", "malformed UTF-8"},                /* overlong '/' */
		{"{\"a\": \"\xed\xa0\x80\"}", "malformed UTF-8"},            /* a surrogate */
		{"{\"a\": \"\xf4\x90\x80\x80\"}", "malformed UTF-8"},        /* past U+10FFFF */
		{"{\"a\": \"\xe2\x82\"}", "malformed UTF-8"},                /* cut */
		{"{\"a\": 1}\x01", "expected the end of the line after the object, found byte 0x01"},
		{"{\"loss\": 1234567890123456789012345678901234567890123456789012345678901234567}",
		 "a number longer than 64 characters at column 10"},
	};
	struct graft_plot_point pt;
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct graft_err err = {0};
		int rc = parse(bad[i].line, &pt, &err);
		if (rc != GRAFT_EFORMAT || !strstr(err.msg, bad[i].msg))
			fail_msg("'%s': rc %d, message '%s', wanted '%s'", bad[i].line, rc, err.msg,
				 bad[i].msg);
	}
	/* A NUL inside the line is a byte like another, not its end. */
	struct graft_err err = {0};
	assert_int_equal(graft_plot_parse_line("{\"loss\": 1\0}", 12, &pt, &err), GRAFT_EFORMAT);
	assert_non_null(strstr(err.msg, "found byte 0x00 at column 11"));
}

/* Random bytes, and valid lines with bytes changed, cut or doubled: every result is a
 * parse or a GRAFT_EFORMAT with a message, never a crash (run under the sanitizers). */
static void test_parse_garbage(void **state)
{
	static const char alphabet[] = "{}[]\":,.-+eE0123456789 \\untrufalsNIfiy\x80\xc3\xff\n";
	const char *seed_line = "{\"epoch\": 1.067, \"loss\": -1.7e-3, \"val_loss\": null, "
				"\"s\": \"\\u00e9\\ud83d\\ude00\xc3\xa9\", \"ok\": true}";
	struct graft_rng r;
	char line[256];
	(void)state;

	graft_rng_seed(&r, 42);
	for (int iter = 0; iter < 20000; iter++) {
		struct graft_plot_point pt;
		struct graft_err err = {0};
		size_t n;
		if (iter % 2) {
			n = (size_t)graft_rng_below(&r, sizeof(line));
			for (size_t k = 0; k < n; k++)
				line[k] = (char)(graft_rng_below(&r, 4) ? alphabet[graft_rng_below(
						 &r, sizeof(alphabet) - 1)] : (int)graft_rng_below(&r, 256));
		} else {
			n = strlen(seed_line);
			memcpy(line, seed_line, n);
			for (int m = 0, k = 1 + (int)graft_rng_below(&r, 3); m < k; m++) {
				size_t at = (size_t)graft_rng_below(&r, n);
				switch (graft_rng_below(&r, 3)) {
				case 0: line[at] = (char)graft_rng_below(&r, 256); break;
				case 1: n = at; break;
				default:
					if (n < sizeof(line) - 1) {
						memmove(line + at + 1, line + at, n - at);
						n++;
					}
				}
			}
		}
		int rc = graft_plot_parse_line(line, n, &pt, &err);
		assert_true(rc == 0 || (rc == GRAFT_EFORMAT && err.msg[0]));
	}
}

static void test_log_lines_and_errors(void **state)
{
	struct graft_plot *p;
	struct graft_err err = {0};
	static const char bad_line[] =
		"{\"epoch\": 1, \"loss\": 1}\n\n{\"epoch\": 2, \"loss\": 1,}\n";
	static const char unusable[] =
		"{\"step\": 1, \"loss\": 1}\n{\"epoch\": 1, \"lr\": 0.1}\n{\"epoch\": NaN, "
		"\"loss\": 1}\n{\"epoch\": 1, \"loss\": 1e101}\n";
	(void)state;

	assert_int_equal(graft_plot_new(&p, &err), 0);
	assert_int_equal(graft_plot_add_log(p, "a", log_a, strlen(log_a), &err), 0);
	assert_int_equal(graft_plot_add_log(p, "b", log_b, strlen(log_b), &err), 0);
	assert_int_equal(graft_plot_log_count(p), 2);
	assert_int_equal(graft_plot_point_count(p, 0), 3);
	assert_int_equal(graft_plot_point_count(p, 1), 2);
	assert_int_equal(graft_plot_point_count(p, 2), 0);
	assert_null(graft_plot_points(p, 2));
	const struct graft_plot_point *pb = graft_plot_points(p, 1);
	assert_true(pb[0].epoch == 1 && pb[0].val_loss == 0.7 && pb[1].loss == 0.25 &&
		    isnan(pb[1].val_loss) && isnan(pb[1].accuracy));

	assert_int_equal(graft_plot_add_log(p, "c", bad_line, strlen(bad_line), &err),
			 GRAFT_EFORMAT);
	assert_string_equal(err.msg, "line 3: expected a key (a string in double quotes), "
				     "found '}' at column 24");
	assert_int_equal(graft_plot_add_log(p, "c", unusable, strlen(unusable), &err),
			 GRAFT_EFORMAT);
	assert_string_equal(err.msg, "no usable line: none has a finite epoch with a loss or "
				     "an accuracy");
	assert_int_equal(graft_plot_add_log(p, "c", "", 0, &err), GRAFT_EFORMAT);
	assert_string_equal(err.msg, "empty input");
	assert_int_equal(graft_plot_add_log(p, "c", "\n \r\n\n", 5, &err), GRAFT_EFORMAT);
	assert_string_equal(err.msg, "empty input");
	assert_int_equal(graft_plot_add_log(p, "c", "\x89PNG\r\n\x1a\n", 8, &err), GRAFT_EFORMAT);
	assert_string_equal(err.msg, "line 1: expected '{' (a JSON object), found byte 0x89 at "
				     "column 1");
	/* Failed logs left nothing behind. */
	assert_int_equal(graft_plot_log_count(p), 2);
	graft_plot_free(p);
	graft_plot_free(NULL);

	assert_int_equal(graft_plot_new(&p, &err), 0);
	for (int i = 0; i < GRAFT_PLOT_MAX_LOGS; i++)
		assert_int_equal(graft_plot_add_log(p, "x", log_b, strlen(log_b), &err), 0);
	assert_int_equal(graft_plot_add_log(p, "x", log_b, strlen(log_b), &err), GRAFT_EINVAL);
	graft_plot_free(p);
}

/* The points attribute of the k-th polyline of class cls in svg, counted. */
static size_t polyline_points(const char *svg, const char *cls, size_t k)
{
	char tag[64];
	const char *s = svg;

	snprintf(tag, sizeof(tag), "<polyline class=\"%s\"", cls);
	for (size_t i = 0; i <= k; i++) {
		s = strstr(i ? s + 1 : s, tag);
		if (!s)
			return 0;
	}
	s = strstr(s, "points=\"") + strlen("points=\"");
	size_t n = 1;
	for (; *s != '"'; s++)
		n += *s == ' ';
	return n;
}

static void render(const char *const *logs, const char *const *labels, size_t n,
		   const char *title, char **svg, size_t *len)
{
	struct graft_plot *p;
	struct graft_err err = {0};

	assert_int_equal(graft_plot_new(&p, &err), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(graft_plot_add_log(p, labels[i], logs[i], strlen(logs[i]), &err), 0);
	assert_int_equal(graft_plot_render(p, title, svg, len, &err), 0);
	assert_int_equal(strlen(*svg), *len);
	graft_plot_free(p);
}

static void test_svg_curves(void **state)
{
	const char *logs[] = {log_a, log_b}, *labels[] = {"run <a> & \"b\"", "bad\xff\x01name"};
	char *svg, *again;
	size_t len, len2;
	(void)state;

	render(logs, labels, 2, "lr 0.01 vs 0.1", &svg, &len);
	assert_true(strncmp(svg, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns="
			    "\"http://www.w3.org/2000/svg\"", 61) == 0);
	assert_int_equal(count(svg, "</svg>\n"), 1);
	assert_int_equal(count(svg, "<g class=\"panel\" id=\"loss\">"), 1);
	assert_int_equal(count(svg, "<g class=\"panel\" id=\"accuracy\">"), 1);
	/* a: loss train, val; accuracy train, val.  b: loss train, val (one point). */
	assert_int_equal(count(svg, "<polyline class=\"train\""), 3);
	assert_int_equal(count(svg, "<polyline class=\"val\""), 3);
	assert_int_equal(count(svg, "<polyline"), 6);
	assert_int_equal(count(svg, "stroke-dasharray=\"6 4\" points="), 3);
	assert_int_equal(polyline_points(svg, "train", 0), 3);     /* a's loss */
	assert_int_equal(polyline_points(svg, "val", 0), 2);
	assert_int_equal(polyline_points(svg, "train", 1), 2);     /* b's loss */
	assert_int_equal(polyline_points(svg, "val", 1), 1);
	assert_int_equal(polyline_points(svg, "train", 2), 3);     /* a's accuracy */
	assert_int_equal(polyline_points(svg, "val", 2), 2);
	assert_int_equal(count(svg, "<circle class=\"val\" data-log=\"1\""), 1);
	assert_int_equal(count(svg, "<circle"), 1);
	assert_int_equal(count(svg, "stroke=\"#1f77b4\""), 5);     /* 4 curves, the legend */
	assert_int_equal(count(svg, "stroke=\"#ff7f0e\""), 3);
	assert_int_equal(count(svg, "no data"), 0);
	/* Text escaped, bytes XML cannot hold replaced. */
	assert_int_equal(count(svg, "<title>lr 0.01 vs 0.1</title>"), 1);
	assert_int_equal(count(svg, ">run &lt;a&gt; &amp; &quot;b&quot;</text>"), 1);
	assert_int_equal(count(svg, ">bad\xef\xbf\xbd\xef\xbf\xbdname</text>"), 1);
	assert_int_equal(count(svg, ">validation</text>"), 1);
	assert_int_equal(count(svg, ">epoch</text>"), 2);
	/* Round ticks: the shared epoch axis 0.5, 1.0, 1.5, 2.0 under both panels; the loss
	 * (0.25 to 2.1) 0.0 to 2.5 by 0.5, the accuracy (0.25 to 0.67) 0.2 to 0.7 by 0.1. */
	assert_int_equal(count(svg, "text-anchor=\"middle\">0.5</text>"), 2);
	assert_int_equal(count(svg, "text-anchor=\"middle\">2.0</text>"), 2);
	assert_int_equal(count(svg, "text-anchor=\"end\">0.0</text>"), 1);
	assert_int_equal(count(svg, "text-anchor=\"end\">2.5</text>"), 1);
	assert_int_equal(count(svg, "text-anchor=\"end\">0.2</text>"), 1);
	assert_int_equal(count(svg, "text-anchor=\"end\">0.7</text>"), 1);
	assert_int_equal(count(svg, "text-anchor=\"end\">"), 6 + 6);
	assert_null(strstr(svg, "nan"));
	assert_null(strstr(svg, "inf"));

	/* Deterministic: a new plot of the same logs gives the same bytes. */
	render(logs, labels, 2, "lr 0.01 vs 0.1", &again, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(svg, again, len);
	free(again);
	free(svg);

	/* b alone: accuracy has no data; no title, no <title>. */
	render(logs + 1, labels + 1, 1, "", &svg, &len);
	assert_int_equal(count(svg, "<polyline"), 2);
	assert_int_equal(count(svg, "no data"), 1);
	assert_null(strstr(svg, "<title>"));
	free(svg);
}

static void test_svg_many_and_odd(void **state)
{
	/* Every log gets its own colour, past Tableau's ten too. */
	const char *logs[GRAFT_PLOT_MAX_LOGS], *labels[GRAFT_PLOT_MAX_LOGS];
	const char one[] = "{\"epoch\": 3, \"loss\": 5e-324, \"accuracy\": -0}\n";
	const char subnormal[] = "{\"epoch\": 1, \"loss\": 5e-324}\n{\"epoch\": 2, \"loss\": 1e-323}\n";
	const char flat[] = "{\"epoch\": 1e6, \"loss\": 123456789.5}\n"
			    "{\"epoch\": 1000000.001, \"loss\": 123456789.5}\n";
	char *svg, colours[GRAFT_PLOT_MAX_LOGS][32];
	size_t len;
	(void)state;

	for (int i = 0; i < GRAFT_PLOT_MAX_LOGS; i++)
		logs[i] = log_a, labels[i] = "run";
	render(logs, labels, GRAFT_PLOT_MAX_LOGS, NULL, &svg, &len);
	assert_int_equal(count(svg, "<polyline"), 4 * GRAFT_PLOT_MAX_LOGS);
	for (int i = 0; i < GRAFT_PLOT_MAX_LOGS; i++) {
		char tag[48];
		snprintf(tag, sizeof(tag), "data-log=\"%d\" fill=\"none\" stroke=\"", i);
		const char *s = strstr(svg, tag);
		assert_non_null(s);
		memcpy(colours[i], s + strlen(tag), 7);
		colours[i][7] = 0;
		assert_true(colours[i][0] == '#');
		for (int j = 0; j < i; j++)
			assert_string_not_equal(colours[i], colours[j]);
	}
	free(svg);

	/* One point, subnormal values, huge ones on a narrow range: finite coordinates only. */
	logs[0] = one, logs[1] = flat, logs[2] = subnormal;
	render(logs, labels, 3, NULL, &svg, &len);
	assert_int_equal(count(svg, "<polyline"), 4);
	assert_int_equal(count(svg, "<circle"), 2);     /* one's loss and accuracy */
	assert_null(strstr(svg, "nan"));
	assert_null(strstr(svg, "inf"));
	assert_null(strstr(svg, "\"-0\""));
	free(svg);

	struct graft_plot *p;
	struct graft_err err = {0};
	assert_int_equal(graft_plot_new(&p, &err), 0);
	assert_int_equal(graft_plot_render(p, NULL, &svg, &len, &err), GRAFT_EINVAL);
	assert_null(svg);
	graft_plot_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_parse_garbage),
		cmocka_unit_test(test_log_lines_and_errors),
		cmocka_unit_test(test_svg_curves),
		cmocka_unit_test(test_svg_many_and_odd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
