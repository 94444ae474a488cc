/*
 * tool.h: what every graft tool shares: its name in messages, dying with a one-line
 * error, usage handling, and outputs that never leave half-written files, even when
 * the tool is interrupted.  Only tools exit; the library never does.
 */
#ifndef GRAFT_TOOL_H
#define GRAFT_TOOL_H

#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "graft.h"

extern const char *tool_name;

/* Sets tool_name from argv[0] and installs signal handlers that remove the temporary
 * file of an output in progress. */
void tool_init(int argc, char **argv);

/* A stop signal (SIGINT, SIGTERM, SIGHUP) ends a tool at once: the handler removes the
 * temporary files of its outputs (the files they replace stay as they were) and the
 * tool ends by the signal.  A tool that would rather finish a unit of work first
 * (graft-train: the step, then a checkpoint) defers stops while it works: the first
 * signal is then only recorded in tool_stop_signal, for the tool to act on; a second
 * one, or one while stops are not deferred (as during a save, which would otherwise
 * keep the user waiting), ends the tool at once. */
extern volatile sig_atomic_t tool_stop_signal;
void tool_defer_stops(int on);

/* "graft-TOOL: message", then exit 1. */
void tool_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Called by tool_die, when set, with the exit status instead of exit (dist.c: a process
 * of a group ends the whole group, MPI_Abort). */
extern void (*tool_on_die)(int status);

/* Prints the usage text: to stdout with exit 0 (help), or to stderr with exit 2 after
 * "graft-TOOL: message" (a usage error). */
void tool_usage(const char *usage, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));

/* Handles the options every tool has (--help, --version) and getopt's errors (the
 * tool's optstring must start with ':'); returns -1 for any other c. */
int tool_common_option(int c, const char *usage);
#define TOOL_COMMON_LONGOPTS {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}

/* Reads a model (path NULL or "-" is stdin) or dies with the library's message. */
struct graft_model *tool_read_model(const char *path);

/* Opens an output (NULL/"-" is stdout) or dies.  A binary output to a terminal is
 * refused unless force is set. */
void tool_output_open(struct graft_output *out, const char *path, int binary, int force);
/* Commits a model and its external-data file together, or dies (see
 * graft_output_commit_pair). */
void tool_output_commit_pair(struct graft_output *data, struct graft_output *model);
/* Commits the output or dies; dying removes the temporary files of all open outputs. */
void tool_output_commit(struct graft_output *out);

/* Writes m as a .graft archive to path (NULL or "-": stdout; a binary output to a
 * terminal refused unless force), whole or not at all, or dies naming the file. */
void tool_write_graft(const struct graft_model *m, const char *path,
		      const struct graft_write_opts *wo, int binary, int force);

/*
 * The datasets a tool reads (a .graft archive, or a list of shards) stay open, owned by
 * tool.c, until tool_release_datasets; the arrays these functions give are views into
 * them.  Each dies on failure with its one-line message.
 */
/* Reads a dataset to feed model m through a loader made with o (*l; free it before
 * tool_release_datasets): the rows of its inputs in m's input order (graft_dataset_feed),
 * or its compact images at the height and width of m's input (which must be fixed),
 * normalised by its graft.mean and graft.std; o->threads -1: one thread for images,
 * none for rows.  Its labels or targets into y. */
void tool_open_loader(const char *path, const struct graft_model *m,
		      const struct graft_loader_opts *o, struct graft_loader **l,
		      struct graft_array *y);
/* tool_open_loader for a validation set, checked as tool_read_validation checks it
 * against the training set's inputs x (the loader's: graft_loader_inputs). */
void tool_open_validation(const char *path, const struct graft_model *m,
			  const struct graft_loader_opts *o, struct graft_loader **l,
			  struct graft_array *vy, const char *train_path,
			  const struct graft_array *x, size_t n_x, const struct graft_array *y);
/* The CPUs online (1 to 64). */
int tool_cpus(void);
/* Reads a dataset to feed model m: its inputs in m's input order into x (room for
 * GRAFT_DATASET_MAX_INPUTS) and *n_x (graft_dataset_feed), its labels or targets into
 * y.  Compact images are decoded into memory at the size of m's input, all of them, as
 * evaluation sees them (tool_open_loader reads them a batch at a time). */
void tool_read_feed(const char *path, const struct graft_model *m, struct graft_array *x,
		    size_t *n_x, struct graft_array *y);
/* tool_read_feed for a validation set, whose samples must have the shapes and types of
 * the training set's (x, n_x and y read from train_path), and its classes. */
void tool_read_validation(const char *path, const struct graft_model *m,
			  struct graft_array *vx, struct graft_array *vy, const char *train_path,
			  const struct graft_array *x, size_t n_x, const struct graft_array *y);
/* Releases the datasets read so far. */
void tool_release_datasets(void);
/* Runs net (made from m, read from model_path) on every sample of the dataset at
 * data_path (tool_read_feed), batch samples a run, once a batch is known to fit
 * max_memory (tool_check_memory): a new array of each output's rows, [N, ...] each
 * (graft_net_run_rows), *n_out of them; release each, then free the array.  Dies on an
 * error, naming the model and the data. */
struct graft_array *tool_run_dataset(struct graft_net *net, const struct graft_model *m,
				     const char *model_path, const char *data_path,
				     int64_t batch, uint64_t max_memory, size_t *n_out);
/* The first batch samples (at most all) of each of the n_x inputs x, as views in xb. */
void tool_batch_of(const struct graft_array *x, size_t n_x, int64_t batch,
		   struct graft_array *xb);

/* --profile: where a net's time went (a net made with opts.profile), per op type, on
 * stderr: "graft-run: profile: 1.234 s in 60 nodes", then a line per op type with its
 * node count, seconds and share. */
#define TOOL_OPT_PROFILE 0x5052     /* getopt code of --profile */
#define TOOL_PROFILE_LONGOPT {"profile", no_argument, NULL, TOOL_OPT_PROFILE}
void tool_print_profile(const struct graft_net *net);

/*
 * Kernel choice per layer shape (docs/engine.md): the tools that run models take the
 * kernels timed fastest on this machine from a wisdom file, time the shapes it does not
 * hold yet on their first run, and add them to it when they end.  The file is
 * $GRAFT_WISDOM, else $XDG_CACHE_HOME/graft/wisdom, else ~/.cache/graft/wisdom;
 * GRAFT_WISDOM=off, or --no-tune, runs oneDNN's first choice for every shape instead, as
 * graft always did (no timing, no file).  A file that cannot be read or written is a
 * warning, never a failure: the run goes on with the default kernels.
 */
#define TOOL_OPT_NO_TUNE 0x4e54     /* getopt code of --no-tune */
#define TOOL_TUNE_LONGOPT {"no-tune", no_argument, NULL, TOOL_OPT_NO_TUNE}
/* The wisdom for nets to use (graft_net_opts.wisdom), opened on the first call and saved
 * when the tool exits (a line on stderr says how many shapes were timed, unless quiet);
 * NULL with no_tune or GRAFT_WISDOM=off. */
struct graft_wisdom *tool_wisdom(int no_tune, int quiet);

/* s as a JSON string, quotes included: '"' and '\\' escaped, control characters as
 * \\u00XX, and bytes that are not UTF-8 (ONNX names are bytes) as U+FFFD, so that the
 * output is always valid JSON.  The one JSON string writer of the tools. */
void tool_json_string(FILE *f, const char *s);

/* Records this tool's command line, as typed, in the model's history, and notes the
 * digests of the datasets read so far (which must not be freed yet). */
void tool_add_history(struct graft_model *m);

/* --resize S and --loader-threads N, for the tools that load compact images: their
 * getopt codes, long options, help lines, and the parse into a loader's options
 * (threads -1, the default, until given). */
#define TOOL_OPT_RESIZE 0x525a
#define TOOL_OPT_LOADER_THREADS 0x4c54
#define TOOL_LOADER_LONGOPTS {"resize", required_argument, NULL, TOOL_OPT_RESIZE}, \
	{"loader-threads", required_argument, NULL, TOOL_OPT_LOADER_THREADS}
#define TOOL_LOADER_HELP \
	"      --resize S            compact images: shorter side to S before the centre\n" \
	"                            crop (default: the model's input size * 8/7,\n" \
	"                            rounded)\n" \
	"      --loader-threads N    decode and transform images on N threads ahead of the\n" \
	"                            model (default: 1 for compact images, else 0)\n"
/* 1 when c was one of them (parsed into lo), else 0. */
int tool_loader_option(int c, const char *arg, struct graft_loader_opts *lo,
		       const char *usage);

/*
 * --max-memory SIZE, for the tools that run models (graft-run, graft-eval, graft-plan,
 * graft-train): before a tool allocates what a run needs, it asks the executor what the
 * plan for its batch will take (graft_net_estimate) and refuses, exit 1, when that is
 * over the budget: "graft-run: m.onnx: needs about 3.1 GiB, over the --max-memory budget
 * of 2 GiB".  The budget defaults to the memory the machine has available (MemAvailable
 * in /proc/meminfo); where that is unknown, the default is no limit.
 */
#define TOOL_OPT_MAX_MEMORY 0x4d4d     /* getopt code of --max-memory */
#define TOOL_MEMORY_LONGOPT {"max-memory", required_argument, NULL, TOOL_OPT_MAX_MEMORY}
/* SIZE: a number of bytes, with an optional suffix K, M, G or T (powers of 1024; a
 * fraction such as 1.5G is allowed), above 0; a usage error otherwise. */
uint64_t tool_parse_size(const char *opt, const char *s, const char *usage);
/* A number in [lo, hi] for option opt, or a usage error (exit 2). */
double tool_parse_number(const char *opt, const char *s, double lo, double hi,
			 const char *usage);
/* The budget in force: max_memory when given (not 0), else MemAvailable, else 0 (none). */
uint64_t tool_memory_budget(uint64_t max_memory);
/* "3.1 GiB", "512 MiB", "2 GiB": bytes for messages, in the largest binary unit under
 * it, with one decimal unless whole; buf of 32 bytes. */
const char *tool_format_size(uint64_t bytes, char *buf);
/* Dies unless running net on inputs of these shapes (their data read only where it
 * shapes the plan) fits the budget (tool_memory_budget(max_memory)); extra is memory the
 * tool needs besides the net's (a trainer's optimizer state).  path names the model.
 * Inputs the model refuses are no refusal here: the run that follows reports them. */
void tool_check_memory(struct graft_net *net, const char *path,
		       const struct graft_array *inputs, size_t n_inputs, uint64_t extra,
		       uint64_t max_memory);
/* The same for a net of opts made from m (and freed) on batches of batch samples of x
 * (n_x inputs). */
void tool_check_model_memory(const struct graft_model *m, const char *path,
			     const struct graft_net_opts *opts, const struct graft_array *x,
			     size_t n_x, int64_t batch, uint64_t extra, uint64_t max_memory);

/*
 * Data-parallel runs (dist.c; graft-train, graft-eval and graft-plan link it): a tool
 * started by mpirun (Open MPI) or another MPI launcher, or given --distributed, joins the
 * group of processes it was started with.  Rank 0 reads the model and gives it to the
 * others, and alone writes outputs, logs and messages; every process reads its own
 * share of the data.  A process that dies (tool_die) ends the whole group.  A build
 * without MPI refuses a group, exit 1, naming how to rebuild.
 */
#define TOOL_OPT_DISTRIBUTED 0x4453     /* getopt code of --distributed */
#define TOOL_DIST_LONGOPT {"distributed", no_argument, NULL, TOOL_OPT_DISTRIBUTED}
#define TOOL_DIST_HELP \
	"      --distributed         train as one process of a group started by an MPI\n" \
	"                            launcher (implied under mpirun: docs/distributed.md)\n"
/* Joins the group (forced: --distributed, else only when a launcher started this
 * process): this process's place in it, or NULL when it is alone.  Every process must
 * have been started with the same arguments (tool_dist_agree). */
const struct graft_comm *tool_dist_start(int forced);
/* The group joined, or NULL. */
const struct graft_comm *tool_comm(void);
/* Whether this process writes (rank 0, or alone). */
int tool_dist_writer(void);
/* tool_read_model, except that in a group rank 0 reads path (stdin when NULL or "-")
 * and every process gets a copy of what it read. */
struct graft_model *tool_dist_read_model(const char *path);
/* Unless every process of the group holds rank 0's value, rank 0 says that the first
 * other rank "<what> than rank 0" (e.g. "read other data") and every process exits 1. */
void tool_dist_agree(uint64_t value, const char *what);
/* A refusal every process reaches alike (alone too): rank 0 says it, in one line, and
 * every process exits 1, so that a group prints it once. */
void tool_dist_refuse(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* In a group, the model must go to a file (out not NULL nor "-"): mpirun passes a
 * process's stdout through a terminal, which changes bytes.  Refused otherwise. */
void tool_dist_need_file(const char *out);
/* XXH64 over the arguments as typed (each with its terminating zero). */
uint64_t tool_args_digest(void);
/* graft_dataset_digest of the dataset this run read from path (tool_open_loader...). */
uint64_t tool_dataset_digest(const char *path);
/* Whether flag is set on any process of the group (on this one, alone). */
int tool_dist_any(int flag);

#endif
