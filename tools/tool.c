/*
 * tool.c: the shared skeleton of the graft tools (see tool.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

const char *tool_name = "graft";
static char **tool_argv;        /* as typed: getopt permutes argv */
static int tool_argc;
static char **current_argv;     /* the array getopt permutes, which optind indexes */

/* The outputs being written, so that dying or a signal removes their temporary files. */
#define MAX_OUTPUTS 4
static struct graft_output *outputs[MAX_OUTPUTS];

void (*tool_on_die)(int status);

volatile sig_atomic_t tool_stop_signal;
static volatile sig_atomic_t defer_stops;

static void on_signal(int sig)
{
	if (defer_stops && !tool_stop_signal && sig != SIGPIPE) {
		tool_stop_signal = sig;
		return;
	}
	for (int i = 0; i < MAX_OUTPUTS; i++) {
		const char *tmp = outputs[i] ? graft_output_tmp_path(outputs[i]) : NULL;
		if (tmp)
			unlink(tmp);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

void tool_defer_stops(int on)
{
	defer_stops = on;
}

static void track(struct graft_output *out, int on)
{
	for (int i = 0; i < MAX_OUTPUTS; i++)
		if (on ? outputs[i] == NULL : outputs[i] == out) {
			outputs[i] = on ? out : NULL;
			return;
		}
}

void tool_init(int argc, char **argv)
{
	const char *slash = strrchr(argv[0], '/');

	tool_name = slash ? slash + 1 : argv[0];
	tool_argc = argc;
	current_argv = argv;
	tool_argv = malloc(sizeof(char *) * (size_t)(argc + 1));
	if (!tool_argv)
		tool_die("out of memory");
	memcpy(tool_argv, argv, sizeof(char *) * (size_t)(argc + 1));
	opterr = 0;     /* getopt's messages name argv[0] as typed; ours name the tool */
	/* Without SA_RESTART, a stop signal that tool_defer_stops records also breaks off a
	 * wait for a slow reader or device, and the tool looks at it sooner. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* A file-size limit (ulimit -f) would kill the tool by SIGXFSZ in the middle of a
	 * write, leaving the temporary file behind; ignored, the write fails with EFBIG and
	 * the error path removes it and names the file, as for a full disk. */
	signal(SIGXFSZ, SIG_IGN);
	/* A reader that goes away still ends the writer quietly by SIGPIPE (the handler
	 * re-raises it at its default), but first removes the temporary file of an output
	 * that another file goes with (graft-export --external-data, graft-data --split). */
	signal(SIGPIPE, on_signal);
}

static void remove_partial_outputs(void)
{
	for (int i = 0; i < MAX_OUTPUTS; i++)
		if (outputs[i]) {
			graft_output_abort(outputs[i]);
			outputs[i] = NULL;
		}
}

void tool_die(const char *fmt, ...)
{
	va_list ap;

	remove_partial_outputs();
	fprintf(stderr, "%s: ", tool_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (tool_on_die)
		tool_on_die(1);
	exit(1);
}

void tool_usage(const char *usage, int status, const char *fmt, ...)
{
	va_list ap;
	FILE *f = status ? stderr : stdout;

	if (fmt) {
		fprintf(stderr, "%s: ", tool_name);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fputs(usage, f);
	exit(status);
}

int tool_common_option(int c, const char *usage)
{
	switch (c) {
	case 'h':
		tool_usage(usage, 0, NULL);
	case 'V':
		printf("%s (graft) %s\n", tool_name, GRAFT_VERSION);
		exit(0);
	case '?':
		if (optopt)
			tool_usage(usage, 2, "unknown option '-%c'", optopt);
		tool_usage(usage, 2, "unknown option '%s'", current_argv[optind - 1]);
	case ':':
		tool_usage(usage, 2, "option '%s' needs an argument", current_argv[optind - 1]);
	default:
		return -1;
	}
}

struct graft_model *tool_read_model(const char *path)
{
	struct graft_model *m;
	struct graft_err err = {0};

	if (graft_model_read(&m, path, 0, &err))
		tool_die("%s", err.msg);
	return m;
}

void tool_output_open(struct graft_output *out, const char *path, int binary, int force)
{
	struct graft_err err = {0};
	int to_stdout = !path || strcmp(path, "-") == 0;

	if (binary && to_stdout && !force && isatty(STDOUT_FILENO))
		tool_die("<stdout>: refusing to write a binary model to a terminal; redirect, "
			 "use -o FILE, or force with -f");
	if (graft_output_open(out, path, &err))
		tool_die("%s", err.msg);
	track(out, 1);
}

void tool_output_commit_pair(struct graft_output *data, struct graft_output *model)
{
	struct graft_err err = {0};

	if (graft_output_commit_pair(data, model, &err))
		tool_die("%s", err.msg);
	track(data, 0);
	track(model, 0);
}

void tool_output_commit(struct graft_output *out)
{
	struct graft_err err = {0};

	if (graft_output_commit(out, &err))
		tool_die("%s", err.msg);
	track(out, 0);
}

void tool_write_graft(const struct graft_model *m, const char *path,
		      const struct graft_write_opts *wo, int binary, int force)
{
	struct graft_output out;
	struct graft_err err = {0};

	tool_output_open(&out, path, binary, force);
	if (graft_model_write_graft(m, out.fd, wo, &err))
		tool_die("%s: %s", path && strcmp(path, "-") ? path : "<stdout>", err.msg);
	tool_output_commit(&out);
}

/* The datasets this run read, owned here until tool_release_datasets, for the history
 * note: digested only when a model's history is written (graft-eval and graft-verify
 * never pay for it). */
#define MAX_DATASETS 8
static struct {
	const char *path;
	struct graft_dataset ds;
	uint64_t digest;        /* graft_dataset_digest, once made (digested) */
	int digested;
} datasets[MAX_DATASETS];

/* Dataset i's digest, made once: it reads the whole file. */
static uint64_t digest_of(size_t i)
{
	if (!datasets[i].digested) {
		datasets[i].digest = graft_dataset_digest(&datasets[i].ds);
		datasets[i].digested = 1;
	}
	return datasets[i].digest;
}
static size_t n_datasets;

void tool_add_history(struct graft_model *m)
{
	struct graft_err err = {0};
	char note[1024] = "data";

	if (graft_model_add_history(m, tool_name, tool_argc - 1, tool_argv + 1, &err))
		tool_die("%s", err.msg);
	if (!n_datasets)
		return;
	for (size_t i = 0; i < n_datasets; i++)
		snprintf(note + strlen(note), sizeof(note) - strlen(note), "%s %s xxh64:%016llx",
			 i ? "," : "", datasets[i].path,
			 (unsigned long long)digest_of(i));
	if (graft_model_note_history(m, note, &err))
		tool_die("%s", err.msg);
}

uint64_t tool_args_digest(void)
{
	uint64_t h = 0;

	for (int i = 1; i < tool_argc; i++)     /* (each with its end, so "a b" != "ab") */
		h = graft_xxh64(tool_argv[i], strlen(tool_argv[i]) + 1, h);
	return h;
}

uint64_t tool_dataset_digest(const char *path)
{
	for (size_t i = 0; i < n_datasets; i++)
		if (strcmp(datasets[i].path, path) == 0)
			return digest_of(i);
	tool_die("%s: not read in this run", path);
}

/* Reads a dataset (or a list of shards) into the datasets of the run, or dies. */
static const struct graft_dataset *read_dataset(const char *path)
{
	struct graft_dataset *ds;
	struct graft_err err = {0};

	if (n_datasets == MAX_DATASETS)
		tool_die("%s: more than %d datasets in one run", path, MAX_DATASETS);
	ds = &datasets[n_datasets].ds;
	if (graft_dataset_read(ds, path, &err)) {
		graft_dataset_release(ds);
		tool_die("%s", err.msg);
	}
	datasets[n_datasets].digested = 0;
	datasets[n_datasets++].path = path;
	return ds;
}

void tool_release_datasets(void)
{
	for (size_t i = 0; i < n_datasets; i++)
		graft_dataset_release(&datasets[i].ds);
	n_datasets = 0;
}

/* The size a dataset's compact images load at for model m: the height and width of its
 * one input, which must be fixed, with as many channels as the images; or dies. */
static void image_size(const char *path, const struct graft_dataset *ds,
		       const struct graft_model *m, int64_t *h, int64_t *w)
{
	struct graft_value_info vi;
	int64_t c = ds->images.index[4];

	if (graft_model_input_count(m) != 1)
		tool_die("%s: its images feed a model of one input; the model takes %zu", path,
			 graft_model_input_count(m));
	graft_model_input(m, 0, &vi);
	if (vi.rank != 4 || vi.dims[2] < 1 || vi.dims[3] < 1)
		tool_die("%s: the model's input '%s' has no fixed height and width (N, C, H, W) to "
			 "load its images at", path, vi.name);
	if (vi.dims[1] > 0 && vi.dims[1] != c)
		tool_die("%s: its images have %lld channel%s; the model's input '%s' takes %lld",
			 path, (long long)c, c > 1 ? "s" : "", vi.name, (long long)vi.dims[1]);
	*h = vi.dims[2];
	*w = vi.dims[3];
}

/* A loader of ds's samples for model m, as tool_open_loader says, or dies. */
static struct graft_loader *loader_of(const char *path, const struct graft_dataset *ds,
				      const struct graft_model *m,
				      const struct graft_loader_opts *o)
{
	struct graft_loader_opts lo = *o;
	struct graft_array x[GRAFT_DATASET_MAX_INPUTS];
	struct graft_loader *l;
	struct graft_err err = {0};
	size_t n_x;

	if (lo.threads < 0)     /* the default: a thread for images, none for rows */
		lo.threads = ds->images.n ? 1 : 0;
	if (ds->images.n) {
		image_size(path, ds, m, &lo.height, &lo.width);
		if (graft_loader_new_images(&l, &ds->images, ds->mean, ds->std, &lo, &err))
			tool_die("%s: %s", path, err.msg);
	} else if (graft_dataset_feed(ds, m, x, &n_x, &err) ||
		   graft_loader_new(&l, x, n_x, &lo, &err)) {
		tool_die("%s: %s", path, err.msg);
	}
	return l;
}

void tool_open_loader(const char *path, const struct graft_model *m,
		      const struct graft_loader_opts *o, struct graft_loader **l,
		      struct graft_array *y)
{
	const struct graft_dataset *ds = read_dataset(path);

	*l = loader_of(path, ds, m, o);
	*y = ds->y;
}

int tool_loader_option(int c, const char *arg, struct graft_loader_opts *lo,
		       const char *usage)
{
	const char *opt = c == TOOL_OPT_RESIZE ? "--resize" : "--loader-threads";
	double v;

	if (c != TOOL_OPT_RESIZE && c != TOOL_OPT_LOADER_THREADS)
		return 0;
	v = tool_parse_number(opt, arg, c == TOOL_OPT_RESIZE ? 1 : 0,
			      c == TOOL_OPT_RESIZE ? 32768 : 64, usage);
	if (v != floor(v))
		tool_usage(usage, 2, "%s takes a whole number, not '%s'", opt, arg);
	if (c == TOOL_OPT_RESIZE)
		lo->resize = (int64_t)v;
	else
		lo->threads = (int)v;
	return 1;
}

int tool_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

/* Compact images decoded, as evaluation sees them, into float samples the process keeps
 * (tools that need every sample in memory at once), in decoded. */
static void *decoded[MAX_DATASETS];
static size_t n_decoded;

static void decode_all(const char *path, const struct graft_dataset *ds,
		       const struct graft_model *m, struct graft_array *x)
{
	struct graft_loader_opts o = {.threads = tool_cpus()};
	struct graft_loader *l = loader_of(path, ds, m, &o);
	struct graft_err err = {0};
	struct graft_array xb;
	int64_t chunk = 64, samples[64];

	graft_loader_inputs(l, x);
	size_t row = x->nbytes / (size_t)ds->n;
	if (!(x->data = malloc(x->nbytes)))
		tool_die("%s: out of memory for %lld decoded images", path, (long long)ds->n);
	xb = *x;
	for (int64_t at = 0; at < ds->n; at += chunk) {
		int64_t b = ds->n - at < chunk ? ds->n - at : chunk;
		for (int64_t j = 0; j < b; j++)
			samples[j] = at + j;
		xb.data = (char *)x->data + (size_t)at * row;
		if (graft_loader_request(l, samples, NULL, b, &err) ||
		    graft_loader_take(l, &xb, &err))
			tool_die("%s: %s", path, err.msg);
	}
	graft_loader_free(l);
}

void tool_read_feed(const char *path, const struct graft_model *m, struct graft_array *x,
		    size_t *n_x, struct graft_array *y)
{
	const struct graft_dataset *ds = read_dataset(path);
	struct graft_err err = {0};

	if (ds->images.n) {
		decode_all(path, ds, m, &x[0]);
		if (n_decoded < MAX_DATASETS)
			decoded[n_decoded++] = x[0].data;
		*n_x = 1;
	} else if (graft_dataset_feed(ds, m, x, n_x, &err)) {
		tool_die("%s: %s", path, err.msg);
	}
	*y = ds->y;
}

/* Dies unless the validation set at path (inputs vx, vn of them, labels vy), the last
 * dataset read, matches the training set's (x, n_x and y, from train_path, the first). */
static void check_validation(const char *path, const struct graft_array *vx, size_t vn,
			     const struct graft_array *vy, const char *train_path,
			     const struct graft_array *x, size_t n_x, const struct graft_array *y)
{
	for (size_t k = 0; k < n_x; k++)
		if (vn != n_x || vx[k].rank != x[k].rank || vx[k].dtype != x[k].dtype ||
		    memcmp(vx[k].dims + 1, x[k].dims + 1, sizeof(int64_t) * (size_t)(x[k].rank - 1)))
			tool_die("%s: its samples differ in shape or type from %s's", path,
				 train_path);
	if (vy->dtype != y->dtype)
		tool_die("%s: its samples differ in shape or type from %s's", path, train_path);
	/* labels numbered in another class order would score the wrong classes */
	const char *tn = n_datasets >= 2 ? graft_model_metadata_value(datasets[0].ds.model,
					   GRAFT_META_CLASS_NAMES) : NULL, *vc;
	vc = graft_model_metadata_value(datasets[n_datasets - 1].ds.model, GRAFT_META_CLASS_NAMES);
	if (tn && vc && strcmp(tn, vc))
		tool_die("%s: its classes (%.80s) are not %s's (%.80s): make both with the same "
			 "--classes", path, vc, train_path, tn);
}

void tool_read_validation(const char *path, const struct graft_model *m,
			  struct graft_array *vx, struct graft_array *vy, const char *train_path,
			  const struct graft_array *x, size_t n_x, const struct graft_array *y)
{
	size_t vn;

	tool_read_feed(path, m, vx, &vn, vy);
	check_validation(path, vx, vn, vy, train_path, x, n_x, y);
}

void tool_open_validation(const char *path, const struct graft_model *m,
			  const struct graft_loader_opts *o, struct graft_loader **l,
			  struct graft_array *vy, const char *train_path,
			  const struct graft_array *x, size_t n_x, const struct graft_array *y)
{
	struct graft_array vx[GRAFT_DATASET_MAX_INPUTS];

	tool_open_loader(path, m, o, l, vy);
	check_validation(path, vx, graft_loader_inputs(*l, vx), vy, train_path, x, n_x, y);
}

/* ---- --max-memory ----------------------------------------------------------------------- */

double tool_parse_number(const char *opt, const char *s, double lo, double hi,
			 const char *usage)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		tool_usage(usage, 2, "%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
	return v;
}

uint64_t tool_parse_size(const char *opt, const char *s, const char *usage)
{
	char *end;
	double v, mult = 1;

	errno = 0;
	v = strtod(s, &end);
	if (end != s && *end) {
		switch (*end | 0x20) {
		case 'k': mult = 1024.0; break;
		case 'm': mult = 1024.0 * 1024; break;
		case 'g': mult = 1024.0 * 1024 * 1024; break;
		case 't': mult = 1024.0 * 1024 * 1024 * 1024; break;
		default: end = (char *)s; break;
		}
		if (end != s)
			end++;
	}
	if (end == s || *end || errno || !(v > 0) || v * mult >= 18e18 || *s < '0' || *s > '9')
		tool_usage(usage, 2, "%s takes a size such as 512M or 2G, not '%s'", opt, s);
	v = ceil(v * mult);
	return (uint64_t)v;
}

/* MemAvailable from /proc/meminfo in bytes, or 0 when it cannot be read. */
static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	unsigned long long kb;
	uint64_t bytes = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
			bytes = (uint64_t)kb * 1024;
			break;
		}
	fclose(f);
	return bytes;
}

uint64_t tool_memory_budget(uint64_t max_memory)
{
	return max_memory ? max_memory : mem_available();
}

const char *tool_format_size(uint64_t bytes, char *buf)
{
	static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0 || fabs(v - round(v)) < 0.05)
		snprintf(buf, 32, "%.0f %s", round(v), unit[u]);
	else
		snprintf(buf, 32, "%.1f %s", v, unit[u]);
	return buf;
}

void tool_check_memory(struct graft_net *net, const char *path,
		       const struct graft_array *inputs, size_t n_inputs, uint64_t extra,
		       uint64_t max_memory)
{
	uint64_t budget = tool_memory_budget(max_memory);
	struct graft_net_memory mem;
	struct graft_err err = {0};
	char need[32], have[32];

	if (!path || strcmp(path, "-") == 0)
		path = "<stdin>";
	if (!budget)
		return;         /* no budget known: nothing to hold the run to */
	/* Inputs that do not fit the model fail the estimate as they would fail the run:
	 * the run (or the trainer's checks of the data) reports it, in its own words. */
	if (graft_net_estimate(net, inputs, n_inputs, &mem, &err))
		return;
	if (mem.total + extra > budget)
		tool_die("%s: needs about %s, over the --max-memory budget of %s%s", path,
			 tool_format_size(mem.total + extra, need), tool_format_size(budget, have),
			 max_memory ? "" : " (the memory available)");
}

struct graft_array *tool_run_dataset(struct graft_net *net, const struct graft_model *m,
				     const char *model_path, const char *data_path,
				     int64_t batch, uint64_t max_memory, size_t *n_out)
{
	struct graft_array x[GRAFT_DATASET_MAX_INPUTS], xb[GRAFT_DATASET_MAX_INPUTS], y;
	struct graft_array *outs;
	struct graft_err err = {0};
	size_t n_x;

	*n_out = graft_net_output_count(net);
	if (!(outs = calloc(*n_out + 1, sizeof(*outs))))
		tool_die("out of memory");
	tool_read_feed(data_path, m, x, &n_x, &y);
	tool_batch_of(x, n_x, batch, xb);
	tool_check_memory(net, model_path, xb, n_x, 0, max_memory);
	if (graft_net_run_rows(net, x, n_x, batch, outs, &err))
		tool_die("%s on %s: %s", model_path, data_path, err.msg);
	return outs;
}

void tool_batch_of(const struct graft_array *x, size_t n_x, int64_t batch,
		   struct graft_array *xb)
{
	for (size_t k = 0; k < n_x; k++) {
		size_t row = x[k].nbytes / (size_t)x[k].dims[0];    /* before xb, which may be x */
		xb[k] = x[k];
		xb[k].name = NULL;
		xb[k].dims[0] = batch < x[k].dims[0] ? batch : x[k].dims[0];
		xb[k].nbytes = row * (size_t)xb[k].dims[0];
	}
}

void tool_check_model_memory(const struct graft_model *m, const char *path,
			     const struct graft_net_opts *opts, const struct graft_array *x,
			     size_t n_x, int64_t batch, uint64_t extra, uint64_t max_memory)
{
	struct graft_array xb[GRAFT_DATASET_MAX_INPUTS];
	struct graft_net *net;
	struct graft_err err = {0};

	if (!tool_memory_budget(max_memory))
		return;
	if (graft_net_new_opts(&net, m, opts, &err))
		return;         /* the tool's own net fails the same way, with its message */
	if (graft_net_input_count(net) == n_x && x->rank >= 1 && x->dims[0] > 0) {
		tool_batch_of(x, n_x, batch, xb);
		tool_check_memory(net, path, xb, n_x, extra, max_memory);
	}
	/* (a model the data do not fit fails later, when the tool feeds it, with its message) */
	graft_net_free(net);
}

/* For each tensor (by index), the first node reading it, directly or through an Identity
 * alias; the node count when none does.  One sweep of the graph: a scan per tensor took
 * minutes on a model of 100,000 nodes. */
static struct graft_wisdom *wisdom;
static char wisdom_path[4096];
static int wisdom_quiet;

/* mkdir -p of path's folder. */
static void make_parents(const char *path)
{
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s", path);
	for (char *p = dir + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(dir, 0755);
			*p = '/';
		}
}

static void wisdom_at_exit(void)
{
	struct graft_err err = {0};
	size_t all, machine, added;

	graft_wisdom_counts(wisdom, &all, &machine, &added);
	if (added) {
		make_parents(wisdom_path);
		if (graft_wisdom_save(wisdom, wisdom_path, &err))
			fprintf(stderr, "%s: warning: kernel timings not kept: %s\n", tool_name, err.msg);
		else if (!wisdom_quiet)
			fprintf(stderr, "%s: timed the kernels of %zu new layer shape%s on this machine "
				"(kept in %s)\n", tool_name, added, added == 1 ? "" : "s", wisdom_path);
	}
	graft_wisdom_free(wisdom);
	wisdom = NULL;
}

/* The CPU's model name from /proc/cpuinfo ("cpu?" where there is none). */
static void cpu_model(char *buf, size_t size)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(buf, size, "cpu?");
	while (f && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		if (strncmp(line, "model name", 10) == 0 && colon) {
			colon += 1 + (colon[1] == ' ');
			colon[strcspn(colon, "\n")] = 0;
			snprintf(buf, size, "%s", colon);
			break;
		}
	}
	if (f)
		fclose(f);
}

struct graft_wisdom *tool_wisdom(int no_tune, int quiet)
{
	static int opened;
	const char *env = getenv("GRAFT_WISDOM"), *base = getenv("XDG_CACHE_HOME");
	struct graft_err err = {0};
	char cpu[256];

	if (opened || no_tune)
		return wisdom;
	opened = 1;
	if (env && (!*env || strcmp(env, "off") == 0))
		return NULL;
	if (env)
		snprintf(wisdom_path, sizeof(wisdom_path), "%s", env);
	else if (base && *base == '/')
		snprintf(wisdom_path, sizeof(wisdom_path), "%s/graft/wisdom", base);
	else if ((base = getenv("HOME")) && *base)
		snprintf(wisdom_path, sizeof(wisdom_path), "%s/.cache/graft/wisdom", base);
	else
		return NULL;
	cpu_model(cpu, sizeof(cpu));
	if (graft_wisdom_load(&wisdom, wisdom_path, cpu, &err)) {
		fprintf(stderr, "%s: warning: %s; running the default kernels\n", tool_name, err.msg);
		return NULL;
	}
	wisdom_quiet = quiet;
	atexit(wisdom_at_exit);
	return wisdom;
}

void tool_print_profile(const struct graft_net *net)
{
	size_t n = graft_net_profile_count(net);
	double fwd = 0, bwd = 0;
	struct graft_node_time t, u;

	for (size_t i = 0; i < n; i++) {
		graft_net_profile(net, i, &t);
		fwd += t.seconds;
		bwd += t.backward_seconds;
	}
	fprintf(stderr, "%s: profile: %.3f s in %zu nodes", tool_name, fwd + bwd, n);
	if (bwd > 0)
		fprintf(stderr, " (forward %.3f s, backward %.3f s)\n"
			"  %-24s %10s %11s %11s %6s\n", fwd, bwd, "op", "nodes", "forward s",
			"backward s", "share");
	else
		fputc('\n', stderr);
	/* per op type, in the order each first appears; quadratic in the node count, which
	 * only a profiled run pays */
	for (size_t i = 0; i < n; i++) {
		size_t count = 0, first = 1;
		double f = 0, b = 0;
		graft_net_profile(net, i, &t);
		for (size_t j = 0; j < i && first; j++) {
			graft_net_profile(net, j, &u);
			first = strcmp(u.op_type, t.op_type) != 0;
		}
		for (size_t j = i; j < n && first; j++) {
			graft_net_profile(net, j, &u);
			if (strcmp(u.op_type, t.op_type) == 0 &&
			    (u.seconds > 0 || u.backward_seconds > 0)) {
				f += u.seconds;
				b += u.backward_seconds;
				count++;
			}
		}
		if (!count)
			continue;
		if (bwd > 0)
			fprintf(stderr, "  %-24s %4zu nodes %11.3f %11.3f %5.1f%%\n", t.op_type,
				count, f, b, 100 * (f + b) / (fwd + bwd));
		else
			fprintf(stderr, "  %-24s %4zu nodes %9.3f s %5.1f%%\n", t.op_type, count,
				f, fwd > 0 ? 100 * f / fwd : 0);
	}
}

/* Length of the valid UTF-8 sequence at p, or 0. */
static int utf8_len(const unsigned char *p)
{
	int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3
		: (*p & 0xf8) == 0xf0 ? 4 : 0;
	if (n == 2 && *p < 0xc2)
		return 0;       /* overlong */
	for (int i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

void tool_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; ) {
		int n = utf8_len(p);
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else if (n == 0)
			fputs("\\ufffd", f);
		else
			fwrite(p, 1, (size_t)n, f);
		p += n ? n : 1;
	}
	fputc('"', f);
}
