/*
 * graft-train: fine-tunes the trainable parameters of a model on a dataset and writes
 * the tuned model: weights, BatchNormalization statistics, the optimizer's state and the
 * position (so that --resume continues it), and history.
 *
 * Runs for hours unattended, so: a NaN or infinite loss stops it with the step named and
 * no output (the last checkpoint stays); SIGINT or SIGTERM finish the current step, write
 * the checkpoint (or the output when none was asked) and exit 130 or 143, but one that
 * arrives during a save ends the tool at once, the previous file intact; every file is
 * written whole or not at all.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-train [MODEL|-] --data D (--epochs N | --steps N) [options] [-o OUT]\n"
	"(--epochs or --steps may be left to a recipe the model carries: see below)\n"
	"Trains MODEL's trainable parameters (.graft or .onnx; stdin when absent or -) on the\n"
	"dataset D (graft-data) and writes the tuned .graft to OUT (stdout unless -o).\n"
	"  -d, --data D              training data (x float [N,...] or named inputs, y int64\n"
	"                            labels or float targets)\n"
	"      --val V               validation data, evaluated after every epoch\n"
	"      --epochs N            train N epochs (may be fractional), or\n"
	"      --steps N             train N steps\n"
	"  -b, --batch B             samples per step (default 32)\n"
	"      --optimizer NAME      sgd (default), adam or adamw\n"
	"      --lr X                learning rate (default: 0.01 for sgd, 0.001 for adam[w])\n"
	"      --momentum X          SGD momentum (default 0.9)\n"
	"      --nesterov            SGD with Nesterov momentum\n"
	"      --weight-decay X      (default 0; adamw 0.01: decoupled)\n"
	"      --betas B1,B2         Adam betas (default 0.9,0.999)\n"
	"      --eps X               Adam epsilon (default 1e-8)\n"
	"      --schedule S          constant (default), cosine, or step:N:G (times G every N\n"
	"                            epochs)\n"
	"      --warmup N            linear warm-up over the first N steps\n"
	"      --lr-mult PAT=F       learning rate times F for parameters matching the glob\n"
	"                            PAT (repeatable; the last match wins)\n"
	"      --clip-norm X         clip the global gradient norm to X\n"
	"      --label-smoothing X   cross-entropy label smoothing (default 0)\n"
	"      --bn MODE             train (default): BatchNormalization with trainable scale\n"
	"                            uses batch statistics; frozen: running statistics\n"
	"      --accumulate N        run each batch as N micro-batches (each with its own\n"
	"                            BatchNormalization statistics), their gradients averaged\n"
	"data-parallel training, under mpirun (docs/distributed.md): every process runs\n"
	"an equal share of each batch (--batch is the whole, global batch):\n"
	TOOL_DIST_HELP
	"      --sync-bn             BatchNormalization statistics over the whole batch, not\n"
	"                            each process's share\n"
	"      --bucket SIZE         average the gradients in buckets of SIZE, each as soon\n"
	"                            as backward has made it (default 25M)\n"
	"      --seed S              seed of the data order, augmentation, Dropout (default 0)\n"
	"      --no-shuffle          step k uses samples k*B .. k*B+B-1 (mod N)\n"
	"      --augment LIST        training images changed at random, per sample and epoch:\n"
	"                            flip (mirror), crop (float images: shift by up to 1/8),\n"
	"                            rrc (compact images: random-resized crop), jitter\n"
	"                            (compact images: brightness, contrast, saturation)\n"
	TOOL_LOADER_HELP
	"      --checkpoint F        write the state to F every --checkpoint-every steps (and\n"
	"                            at the end of each epoch, and when interrupted)\n"
	"      --checkpoint-every N  steps between checkpoints (default: once per epoch)\n"
	"      --resume F            continue from checkpoint F (same data and options)\n"
	"      --log F.jsonl         one JSON line per epoch (and per --log-every steps)\n"
	"      --log-every N         also log every N steps\n"
	"  -o, --output OUT          write the tuned model to OUT (atomically)\n"
	"  -q, --quiet               no progress on stderr\n"
	"  -f, --force               write binary data even to a terminal\n"
	"      --max-memory SIZE     refuse to train when a step would need more memory than\n"
	"                            SIZE (suffixes K, M, G; default: the memory available)\n"
	"      --cache SIZE          keep a frozen prefix's outputs per sample up to SIZE\n"
	"                            (default 2G; 0: no cache, the prefix runs every step)\n"
	"      --profile             print the time spent per op type to stderr at the end\n"
	"      --no-tune             oneDNN's first kernel for every layer, not the one timed\n"
	"                            fastest on this machine (the wisdom file: graft-run(1))\n"
	"transfer recipes (a block: what lies between two block boundaries, graft-slice\n"
	"--list-cuts; the head: after the last one):\n"
	"      --lp-ft E             LP-FT: the first E epochs train the head alone (at\n"
	"                            --lp-lr, default 10 times --lr), then everything\n"
	"                            trainable at --lr, the schedule starting again\n"
	"      --lp-lr X             the head's rate during --lp-ft\n"
	"      --unfreeze-every E    gradual unfreezing: the head first, one more block from\n"
	"                            the top every E epochs\n"
	"      --layer-decay F       each block's rate is F times the rate of the one above\n"
	"A model that graft-plan --apply wrote carries its recipe (metadata graft.recipe):\n"
	"with it, --epochs and the options above default to the recipe's.\n"
	"  -h, --help                show this help;  -V, --version  show the version\n";

struct cmdline {
	const char *model, *data, *val, *out, *checkpoint, *resume, *log;
	struct graft_loader_opts lo;    /* --resize, --loader-threads */
	double epochs;
	double lp_ft, unfreeze_every;   /* epochs */
	unsigned length_given;          /* 1: --epochs, 2: --steps */
	int64_t steps, checkpoint_every, log_every, step_epochs;
	struct graft_train_opts o;
	struct graft_lr_mult *mults;
	int quiet, force, lr_set, momentum_set, wd_set, no_tune, distributed;
	uint64_t max_memory;    /* 0: the memory available */
};

static double parse_double(const char *s, const char *opt, double lo, double hi)
{
	return tool_parse_number(opt, s, lo, hi, usage);
}

static int64_t parse_count(const char *s, const char *opt, int64_t lo)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo)
		tool_usage(usage, 2, "%s: '%s' is not a whole number >= %lld", opt, s,
			   (long long)lo);
	return v;
}

static void parse_schedule(struct cmdline *cl, const char *s)
{
	if (strcmp(s, "constant") == 0) {
		cl->o.schedule = GRAFT_SCHEDULE_CONSTANT;
	} else if (strcmp(s, "cosine") == 0) {
		cl->o.schedule = GRAFT_SCHEDULE_COSINE;
	} else if (strncmp(s, "step:", 5) == 0) {
		char *copy = strdup(s + 5), *colon = copy ? strchr(copy, ':') : NULL;
		if (!colon)
			tool_usage(usage, 2, "--schedule step:N:G needs epochs N and factor G");
		*colon = 0;
		cl->o.schedule = GRAFT_SCHEDULE_STEP;
		cl->step_epochs = parse_count(copy, "--schedule step", 1);
		cl->o.gamma = parse_double(colon + 1, "--schedule step", 0, 1e6);
		free(copy);
	} else {
		tool_usage(usage, 2, "--schedule: '%s' is not constant, cosine or step:N:G", s);
	}
}

static void parse_lr_mult(struct cmdline *cl, const char *s)
{
	const char *eq = strrchr(s, '=');
	struct graft_lr_mult *m;

	if (!eq || eq == s)
		tool_usage(usage, 2, "--lr-mult takes PATTERN=FACTOR");
	m = realloc(cl->mults, (cl->o.n_lr_mults + 1) * sizeof(*m));
	if (!m || !(m[cl->o.n_lr_mults].pattern = strndup(s, (size_t)(eq - s))))
		tool_die("out of memory");
	m[cl->o.n_lr_mults].factor = parse_double(eq + 1, "--lr-mult", 0, 1e6);
	cl->mults = m;
	cl->o.lr_mults = m;
	cl->o.n_lr_mults++;
}

static void parse_augment(struct cmdline *cl, const char *s)
{
	char *copy = strdup(s), *save = NULL;

	if (!copy)
		tool_die("out of memory");
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "flip") == 0)
			cl->o.augment |= GRAFT_AUGMENT_FLIP;
		else if (strcmp(tok, "crop") == 0)
			cl->o.augment |= GRAFT_AUGMENT_CROP;
		else if (strcmp(tok, "rrc") == 0)
			cl->o.augment |= GRAFT_AUGMENT_RRC;
		else if (strcmp(tok, "jitter") == 0)
			cl->o.augment |= GRAFT_AUGMENT_JITTER;
		else
			tool_usage(usage, 2, "--augment: '%s' is not flip, crop, rrc or jitter", tok);
	}
	free(copy);
}

static void parse_optimizer(struct cmdline *cl, const char *s)
{
	enum graft_optim_kind k;

	if (strcmp(s, "sgd") == 0)
		k = GRAFT_OPTIM_SGD;
	else if (strcmp(s, "adam") == 0)
		k = GRAFT_OPTIM_ADAM;
	else if (strcmp(s, "adamw") == 0)
		k = GRAFT_OPTIM_ADAMW;
	else
		tool_usage(usage, 2, "--optimizer: '%s' is not sgd, adam or adamw", s);
	cl->o.optim.kind = k;
}

enum {
	OPT_VAL = 256, OPT_EPOCHS, OPT_STEPS, OPT_OPTIMIZER, OPT_LR, OPT_MOMENTUM, OPT_NESTEROV,
	OPT_WD, OPT_BETAS, OPT_EPS, OPT_SCHEDULE, OPT_WARMUP, OPT_LR_MULT, OPT_CLIP, OPT_SMOOTH, OPT_BN,
	OPT_SEED, OPT_NO_SHUFFLE, OPT_AUGMENT, OPT_CKPT, OPT_CKPT_EVERY, OPT_RESUME, OPT_LOG,
	OPT_LOG_EVERY, OPT_CACHE, OPT_LP_FT, OPT_LP_LR, OPT_UNFREEZE, OPT_LAYER_DECAY,
	OPT_ACCUMULATE, OPT_SYNC_BN, OPT_BUCKET,
};

static void parse_option(struct cmdline *cl, int c)
{
	switch (c) {
	case 'd': cl->data = optarg; break;
	case OPT_VAL: cl->val = optarg; break;
	case OPT_EPOCHS:
		cl->epochs = parse_double(optarg, "--epochs", 1e-9, 1e9);
		cl->length_given |= 1;
		break;
	case OPT_STEPS:
		cl->steps = parse_count(optarg, "--steps", 1);
		cl->length_given |= 2;
		break;
	case OPT_LP_FT: cl->lp_ft = parse_double(optarg, "--lp-ft", 0, 1e9); break;
	case OPT_LP_LR: cl->o.lp_lr = parse_double(optarg, "--lp-lr", 0, 1e6); break;
	case OPT_UNFREEZE:
		cl->unfreeze_every = parse_double(optarg, "--unfreeze-every", 0, 1e9);
		break;
	case OPT_LAYER_DECAY:
		cl->o.layer_decay = parse_double(optarg, "--layer-decay", 0, 1);
		break;
	case 'b': cl->o.batch = parse_count(optarg, "--batch", 1); break;
	case OPT_OPTIMIZER: parse_optimizer(cl, optarg); break;
	case OPT_LR: cl->o.optim.lr = parse_double(optarg, "--lr", 0, 1e6); cl->lr_set = 1; break;
	case OPT_MOMENTUM:
		cl->o.optim.momentum = parse_double(optarg, "--momentum", 0, 1);
		cl->momentum_set = 1;
		break;
	case OPT_NESTEROV: cl->o.optim.nesterov = 1; break;
	case OPT_WD:
		cl->o.optim.weight_decay = parse_double(optarg, "--weight-decay", 0, 1e6);
		cl->wd_set = 1;
		break;
	case OPT_BETAS: {
		const char *comma = strchr(optarg, ',');
		char b1[64];
		if (!comma || (size_t)(comma - optarg) >= sizeof(b1))
			tool_usage(usage, 2, "--betas takes B1,B2");
		memcpy(b1, optarg, (size_t)(comma - optarg));
		b1[comma - optarg] = 0;
		cl->o.optim.beta1 = parse_double(b1, "--betas", 0, 0.999999999);
		cl->o.optim.beta2 = parse_double(comma + 1, "--betas", 0, 0.999999999);
		break;
	}
	case OPT_EPS: cl->o.optim.eps = parse_double(optarg, "--eps", 1e-30, 1); break;
	case OPT_SCHEDULE: parse_schedule(cl, optarg); break;
	case OPT_WARMUP: cl->o.warmup = parse_count(optarg, "--warmup", 0); break;
	case OPT_LR_MULT: parse_lr_mult(cl, optarg); break;
	case OPT_CLIP: cl->o.clip_norm = parse_double(optarg, "--clip-norm", 0, 1e12); break;
	case OPT_SMOOTH:
		cl->o.label_smoothing = parse_double(optarg, "--label-smoothing", 0, 1);
		break;
	case OPT_BN:
		if (strcmp(optarg, "train") && strcmp(optarg, "frozen"))
			tool_usage(usage, 2, "--bn: '%s' is not train or frozen", optarg);
		cl->o.bn_frozen = strcmp(optarg, "frozen") == 0;
		break;
	case OPT_ACCUMULATE:
		cl->o.accumulate = (int)parse_count(optarg, "--accumulate", 1);
		if (cl->o.accumulate > 65536)
			tool_usage(usage, 2, "--accumulate: %s micro-batches is too many", optarg);
		break;
	case OPT_SYNC_BN: cl->o.sync_bn = 1; break;
	case OPT_BUCKET:
		cl->o.bucket_bytes = (int64_t)tool_parse_size("--bucket", optarg, usage);
		break;
	case TOOL_OPT_DISTRIBUTED: cl->distributed = 1; break;
	case OPT_SEED: cl->o.seed = (uint64_t)parse_count(optarg, "--seed", 0); break;
	case OPT_NO_SHUFFLE: cl->o.shuffle = 0; break;
	case OPT_AUGMENT: parse_augment(cl, optarg); break;
	case TOOL_OPT_RESIZE:
	case TOOL_OPT_LOADER_THREADS:
		tool_loader_option(c, optarg, &cl->lo, usage);
		break;
	case OPT_CKPT: cl->checkpoint = optarg; break;
	case OPT_CKPT_EVERY:
		cl->checkpoint_every = parse_count(optarg, "--checkpoint-every", 1);
		break;
	case OPT_RESUME: cl->resume = optarg; break;
	case OPT_LOG: cl->log = optarg; break;
	case OPT_LOG_EVERY: cl->log_every = parse_count(optarg, "--log-every", 1); break;
	case 'o': cl->out = optarg; break;
	case 'q': cl->quiet = 1; break;
	case 'f': cl->force = 1; break;
	case TOOL_OPT_MAX_MEMORY:
		cl->max_memory = tool_parse_size("--max-memory", optarg, usage);
		break;
	case OPT_CACHE:
		cl->o.cache_bytes = strcmp(optarg, "0") == 0 ? -1 :
				    (int64_t)tool_parse_size("--cache", optarg, usage);
		break;
	case TOOL_OPT_PROFILE: cl->o.profile = 1; break;
	case TOOL_OPT_NO_TUNE: cl->no_tune = 1; break;
	default: tool_common_option(c, usage);
	}
}

/* A recipe's options as defaults, for the command line's to override. */
static void apply_recipe(struct cmdline *cl, const struct graft_recipe *r)
{
	cl->epochs = r->epochs;
	cl->o.batch = r->batch;
	cl->o.optim.kind = r->optimizer;
	cl->o.optim.lr = r->lr;
	cl->lr_set = 1;
	if (r->weight_decay >= 0) {
		cl->o.optim.weight_decay = r->weight_decay;
		cl->wd_set = 1;
	}
	cl->o.schedule = r->schedule;
	cl->o.warmup = r->warmup;
	cl->o.bn_frozen = r->bn_frozen;
	cl->lp_ft = r->lp_ft;
	cl->o.lp_lr = r->lp_lr;
	cl->unfreeze_every = r->unfreeze_every;
	cl->o.layer_decay = r->layer_decay;
}

/* Parses the command line over the defaults, or over recipe's options when recipe is
 * not NULL.  The first parse (final 0) comes before the model is read, and so before
 * its recipe is known; the run's length is checked by the final one. */
static void parse_cmdline(int argc, char **argv, struct cmdline *cl,
			  const struct graft_recipe *recipe, int final)
{
	static const struct option opts[] = {
		{"data", required_argument, NULL, 'd'}, {"val", required_argument, NULL, OPT_VAL},
		{"epochs", required_argument, NULL, OPT_EPOCHS},
		{"steps", required_argument, NULL, OPT_STEPS},
		{"batch", required_argument, NULL, 'b'},
		{"optimizer", required_argument, NULL, OPT_OPTIMIZER},
		{"lr", required_argument, NULL, OPT_LR},
		{"momentum", required_argument, NULL, OPT_MOMENTUM},
		{"nesterov", no_argument, NULL, OPT_NESTEROV},
		{"weight-decay", required_argument, NULL, OPT_WD},
		{"betas", required_argument, NULL, OPT_BETAS},
		{"eps", required_argument, NULL, OPT_EPS},
		{"schedule", required_argument, NULL, OPT_SCHEDULE},
		{"warmup", required_argument, NULL, OPT_WARMUP},
		{"lr-mult", required_argument, NULL, OPT_LR_MULT},
		{"clip-norm", required_argument, NULL, OPT_CLIP},
		{"label-smoothing", required_argument, NULL, OPT_SMOOTH},
		{"bn", required_argument, NULL, OPT_BN}, {"seed", required_argument, NULL, OPT_SEED},
		{"accumulate", required_argument, NULL, OPT_ACCUMULATE},
		{"sync-bn", no_argument, NULL, OPT_SYNC_BN},
		{"bucket", required_argument, NULL, OPT_BUCKET},
		TOOL_DIST_LONGOPT,
		{"no-shuffle", no_argument, NULL, OPT_NO_SHUFFLE},
		{"augment", required_argument, NULL, OPT_AUGMENT},
		TOOL_LOADER_LONGOPTS,
		{"checkpoint", required_argument, NULL, OPT_CKPT},
		{"checkpoint-every", required_argument, NULL, OPT_CKPT_EVERY},
		{"resume", required_argument, NULL, OPT_RESUME},
		{"log", required_argument, NULL, OPT_LOG},
		{"log-every", required_argument, NULL, OPT_LOG_EVERY},
		{"output", required_argument, NULL, 'o'}, {"quiet", no_argument, NULL, 'q'},
		{"force", no_argument, NULL, 'f'}, TOOL_MEMORY_LONGOPT,
		{"cache", required_argument, NULL, OPT_CACHE}, TOOL_PROFILE_LONGOPT, TOOL_TUNE_LONGOPT,
		{"lp-ft", required_argument, NULL, OPT_LP_FT},
		{"lp-lr", required_argument, NULL, OPT_LP_LR},
		{"unfreeze-every", required_argument, NULL, OPT_UNFREEZE},
		{"layer-decay", required_argument, NULL, OPT_LAYER_DECAY},
		TOOL_COMMON_LONGOPTS, {0},
	};
	struct graft_optim_opts given;
	int c;

	memset(cl, 0, sizeof(*cl));
	cl->lo.threads = -1;
	cl->o.batch = 32;
	cl->o.shuffle = 1;
	graft_optim_defaults(&cl->o.optim, GRAFT_OPTIM_SGD);
	if (recipe)
		apply_recipe(cl, recipe);
	optind = 0;     /* GNU getopt: start afresh (the second parse, over a recipe) */
	while ((c = getopt_long(argc, argv, ":d:b:o:qfhV", opts, NULL)) != -1)
		parse_option(cl, c);
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	cl->model = optind < argc ? argv[optind] : NULL;
	if (!cl->data)
		tool_usage(usage, 2, "--data is required");
	if (cl->length_given == 3)
		tool_usage(usage, 2, "give one of --epochs and --steps");
	if (cl->length_given == 2)
		cl->epochs = 0;         /* --steps replaces a recipe's epochs */
	if (final && cl->epochs <= 0 && cl->steps <= 0)
		tool_usage(usage, 2, "give one of --epochs and --steps");
	/* The chosen optimizer's defaults for what was not given. */
	given = cl->o.optim;
	graft_optim_defaults(&cl->o.optim, given.kind);
	if (cl->lr_set)
		cl->o.optim.lr = given.lr;
	cl->o.optim.momentum = cl->momentum_set ? given.momentum
				: given.kind == GRAFT_OPTIM_SGD ? 0.9 : 0;
	if (cl->wd_set)
		cl->o.optim.weight_decay = given.weight_decay;
	cl->o.optim.nesterov = given.nesterov;
	if (given.eps != 1e-8)
		cl->o.optim.eps = given.eps;
	if (given.beta1 != 0.9 || given.beta2 != 0.999) {
		cl->o.optim.beta1 = given.beta1;
		cl->o.optim.beta2 = given.beta2;
	}
	if (cl->o.optim.nesterov && (cl->o.optim.kind != GRAFT_OPTIM_SGD ||
				     cl->o.optim.momentum == 0))
		tool_usage(usage, 2, "--nesterov needs SGD with momentum");
	if (cl->log_every && !cl->log)
		tool_usage(usage, 2, "--log-every needs --log");
	if (cl->checkpoint_every && !cl->checkpoint)
		tool_usage(usage, 2, "--checkpoint-every needs --checkpoint");
	if (cl->o.lp_lr > 0 && cl->lp_ft <= 0)
		tool_usage(usage, 2, "--lp-lr needs --lp-ft");
	if (cl->o.sync_bn && cl->o.accumulate > 1)
		tool_usage(usage, 2, "--sync-bn and --accumulate: micro-batches run one after "
			   "another, so their statistics cannot be shared");
}

/* ---- progress and logs ---------------------------------------------------------------------- */

struct run {
	struct cmdline *cl;
	struct graft_trainer *t;
	struct graft_model *m;
	struct graft_loader *loader, *vloader;  /* the training and the validation samples */
	struct graft_array vy;
	size_t n_x;
	int64_t total, classes;
	FILE *log;
	int tty;
	double t0, t_epoch;
	/* since the last report: */
	double loss_sum, comm_s;
	int64_t correct, count, steps;
	int64_t epoch_done;             /* epochs completed */
	int64_t epoch_start_step;
	size_t live;                    /* parameter tensors training */
	double val_accuracy;            /* the last validation's, -1 before one */
	double phase_s[5];              /* --profile: data, forward, backward, update,
					 * exchange with the group */
	int64_t phase_steps;            /* the steps they sum over */
};

/* A recipe started more parameters at step. */
static void unfrozen(struct run *r, int64_t step)
{
	size_t live = graft_trainer_param_count(r->t);

	if (!r->cl->quiet)
		fprintf(stderr, "%s%s: step %lld (epoch %.2f): %zu parameter tensors training "
			"(%zu more), lr %g\n", r->tty ? "\n" : "", tool_name, (long long)step + 1,
			graft_trainer_epoch(r->t, step), live, live - r->live,
			graft_trainer_lr(r->t, step));
	r->live = live;
}

static void progress(const struct run *r, int64_t step, const struct graft_step_stats *s)
{
	double el = graft_now() - r->t0, done = (double)(step - r->epoch_start_step) + 1;
	double epoch = graft_trainer_epoch(r->t, step + 1), total_ep = graft_trainer_epoch(r->t,
											   r->total);
	int64_t b = graft_trainer_batch(r->t);
	double rate = el > 0 ? done * (double)b / el : 0;
	double eta = rate > 0 ? (double)(r->total - step - 1) * (double)b / rate : 0;
	int width = 24, fill = (int)(width * (double)(step + 1) / (double)r->total);

	fprintf(stderr, "\repoch %.2f/%.2f [%.*s%*s] step %lld/%lld loss %.4f", epoch, total_ep,
		fill, "########################", width - fill, "", (long long)step + 1,
		(long long)r->total, r->loss_sum / (double)(r->steps ? r->steps : 1));
	if (r->classes)
		fprintf(stderr, " acc %.1f%%", 100.0 * (double)r->correct /
			(double)(r->count ? r->count : 1));
	fprintf(stderr, " %.0f img/s ETA %d:%02d  ", rate, (int)eta / 60, (int)eta % 60);
	(void)s;
}

/* One JSON line (--log) and, without a terminal, one line on stderr. */
static void report(struct run *r, int64_t step, int epoch_end)
{
	struct graft_eval ev = {0};
	struct graft_err err = {0};
	double el = graft_now() - r->t_epoch, loss = r->loss_sum / (double)(r->steps ? r->steps : 1);
	double acc = r->count ? (double)r->correct / (double)r->count : 0;
	double rate = el > 0 ? (double)(r->steps * graft_trainer_batch(r->t)) / el : 0;
	double epoch = graft_trainer_epoch(r->t, step);
	int val = epoch_end && r->vloader;

	if (val) {
		if (graft_eval_init(&ev, r->classes, &err) ||
		    graft_trainer_evaluate_loader(r->t, r->vloader, &r->vy, &ev, &err))
			tool_die("%s: %s", r->cl->val, err.msg);
		if (r->classes)
			r->val_accuracy = ev.accuracy;
	}
	if (r->log) {
		fprintf(r->log, "{\"epoch\": %.4g, \"step\": %lld, \"loss\": %.6g", epoch,
			(long long)step, loss);
		if (r->classes)
			fprintf(r->log, ", \"accuracy\": %.6g", acc);
		if (val) {
			fprintf(r->log, ", \"val_loss\": %.6g", ev.loss);
			if (r->classes)
				fprintf(r->log, ", \"val_accuracy\": %.6g", ev.accuracy);
		}
		fprintf(r->log, ", \"lr\": %.6g, \"images_per_s\": %.1f, \"seconds\": %.2f",
			graft_trainer_lr(r->t, step > 0 ? step - 1 : 0), rate, graft_now() - r->t0);
		if (tool_comm())
			fprintf(r->log, ", \"comm_s_per_step\": %.4f", r->comm_s /
				(double)(r->steps ? r->steps : 1));
		fputs("}\n", r->log);
		if (fflush(r->log) || ferror(r->log))
			tool_die("%s: write failed", r->cl->log);
	}
	if (!r->cl->quiet && epoch_end) {
		if (r->tty)
			fputc('\n', stderr);
		fprintf(stderr, "epoch %.2f: loss %.4f", epoch, loss);
		if (r->classes)
			fprintf(stderr, " acc %.2f%%", 100 * acc);
		if (val) {
			fprintf(stderr, "  val loss %.4f", ev.loss);
			if (r->classes)
				fprintf(stderr, " val acc %.2f%%", 100 * ev.accuracy);
		}
		fprintf(stderr, "  %.0f img/s  %.1f s\n", rate, graft_now() - r->t0);
	}
	graft_eval_release(&ev);
	r->loss_sum = r->comm_s = 0;
	r->correct = r->count = r->steps = 0;
	r->t_epoch = graft_now();
}

/* ---- saving ------------------------------------------------------------------------------- */

/* A stop signal during a save ends the tool at once, the file being replaced left as
 * it was (a save may take long: a slow disk, a large model, a reader that stalls). */
static void write_model(struct run *r, const char *path, int binary_check)
{
	struct graft_err err = {0};

	tool_defer_stops(0);
	if (graft_trainer_save(r->t, r->m, &err))
		tool_die("%s", err.msg);
	if (tool_dist_writer())         /* (the others hold the same state) */
		tool_write_graft(r->m, path, NULL, binary_check, r->cl->force);
	tool_defer_stops(1);
}

/* ---- main ---------------------------------------------------------------------------------- */

/* --profile: where the training loader's time went. */
static void print_loader(const struct graft_loader *l)
{
	struct graft_loader_stats s;

	graft_loader_stats(l, &s);
	fprintf(stderr, "%s: loader: %lld samples: decoding %.3f s, transforms %.3f s (summed "
		"over its threads); the step waited %.3f s for data\n", tool_name,
		(long long)s.samples, s.decode_s, s.transform_s, s.waited_s);
}

/* The training and validation samples, through loaders: the training one augments and
 * runs ahead on --loader-threads, the validation one gives them as evaluation sees
 * them. */
static void load_data(struct run *r, struct cmdline *cl, struct graft_array *x,
		      struct graft_array *y)
{
	struct graft_loader_opts lo = cl->lo;
	int images;

	lo.seed = cl->o.seed;
	lo.augment = cl->o.augment;
	tool_open_loader(cl->data, r->m, &lo, &r->loader, y);
	r->n_x = graft_loader_inputs(r->loader, x);
	images = x[0].data == NULL;     /* (compact images: the loader makes the floats) */
	if (images ? (cl->o.augment & GRAFT_AUGMENT_CROP)
		   : (cl->o.augment & (GRAFT_AUGMENT_RRC | GRAFT_AUGMENT_JITTER)))
		tool_die("%s: --augment %s", cl->data, images
			 ? "crop shifts float images; compact images crop with rrc"
			 : "rrc and jitter work on compact images (graft-data --store uint8 or "
			 "encoded), not on float samples");
	if (!images && cl->lo.resize)
		tool_die("%s: --resize applies to compact images (graft-data --store uint8 or "
			 "encoded)", cl->data);
	if (cl->val) {
		lo.augment = 0;
		tool_open_validation(cl->val, r->m, &lo, &r->vloader, &r->vy, cl->data, x,
				     r->n_x, y);
	}
}

/* --max-memory: what a training step takes (the executor's plan for a batch, with
 * gradients) and the optimizer's state (a moment per trainable weight, two for Adam). */
static void check_memory(const struct cmdline *cl, struct graft_model *m,
			 const struct graft_array *x, size_t n_x, int64_t batch)
{
	struct graft_net_opts no = {.training = 1, .bn_frozen = cl->o.bn_frozen,
				    .seed = cl->o.seed};
	const char *path = cl->resume ? cl->resume : cl->model;
	struct graft_err err = {0};
	uint64_t params = 0, moments;

	if (!tool_memory_budget(cl->max_memory))
		return;
	/* as graft_trainer_new does first: a training net needs the aliases parted */
	if (graft_model_unalias_all(m, &err))
		tool_die("%s", err.msg);
	for (size_t i = 0; i < graft_model_tensor_count(m); i++) {
		struct graft_tensor t;
		graft_model_tensor(m, i, &t);
		if (t.trainable && t.role == GRAFT_ROLE_PARAMETER)
			params += t.nbytes;
	}
	moments = cl->o.optim.kind != GRAFT_OPTIM_SGD ? 2 : cl->o.optim.momentum != 0 ? 1 : 0;
	tool_check_model_memory(m, path, &no, x, n_x, batch, moments * params, cl->max_memory);
}

static int64_t total_steps(const struct cmdline *cl, int64_t n, int64_t batch)
{
	return cl->steps ? cl->steps : graft_epoch_steps(cl->epochs, n, batch);
}

/* The model's recipe (graft-plan --apply), when it has one: the command line is parsed
 * again over it. */
static void take_recipe(struct cmdline *cl, int argc, char **argv, const struct graft_model *m)
{
	const char *text = graft_model_metadata_value(m, GRAFT_RECIPE_KEY);
	const char *path = cl->resume ? cl->resume : cl->model ? cl->model : "<stdin>";
	struct graft_recipe recipe;
	struct graft_err err = {0};

	if (text && graft_recipe_parse(text, &recipe, &err))
		tool_die("%s: %s", path, err.msg);
	parse_cmdline(argc, argv, cl, text ? &recipe : NULL, 1);
	if (text && !cl->quiet)
		fprintf(stderr, "%s: the model's recipe (graft-plan): %s; options given override "
			"it\n", tool_name, text);
}

/* In a group: rank 0 alone reports and logs. */
static void join_group(struct cmdline *cl, const struct graft_comm *comm)
{
	if (comm->rank != 0) {
		cl->quiet = 1;
		cl->log = NULL;
	}
}

/* The batch must cut into equal pieces, one or --accumulate per process: said once, by
 * rank 0, before any process starts (graft_trainer_new would refuse it on each). */
static void check_split(const struct cmdline *cl, const struct graft_comm *comm, int64_t batch)
{
	int64_t pieces = (int64_t)(comm ? comm->size : 1) *
			 (cl->o.accumulate > 1 ? cl->o.accumulate : 1);

	if (batch % pieces)
		tool_dist_refuse("a batch of %lld does not split into %lld equal pieces (%d "
				 "process%s x %d micro-batch%s): make --batch a multiple of %lld",
				 (long long)batch, (long long)pieces, comm ? comm->size : 1,
				 comm ? "es" : "", cl->o.accumulate > 1 ? cl->o.accumulate : 1,
				 cl->o.accumulate > 1 ? "es" : "", (long long)pieces);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct run r;
	struct graft_array x[GRAFT_DATASET_MAX_INPUTS], y;
	struct graft_err err = {0};
	int64_t batch, n, steps_per_epoch;
	const struct graft_comm *comm;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl, NULL, 0);
	comm = tool_dist_start(cl.distributed);
	memset(&r, 0, sizeof(r));
	r.val_accuracy = -1;
	r.cl = &cl;
	tool_dist_need_file(cl.out);
	if (!cl.out || strcmp(cl.out, "-") == 0) {
		if (isatty(STDOUT_FILENO) && !cl.force)
			tool_die("refusing to write a model to a terminal (use -o FILE or -f)");
	}
	/* With --resume, the checkpoint holds the model as trained so far. */
	r.m = tool_dist_read_model(cl.resume ? cl.resume : cl.model);
	take_recipe(&cl, argc, argv, r.m);
	if (comm)
		join_group(&cl, comm);
	load_data(&r, &cl, x, &y);
	if (comm) {
		tool_dist_agree(tool_dataset_digest(cl.data), "read other training data (--data)");
		if (cl.val)
			tool_dist_agree(tool_dataset_digest(cl.val), "read other validation data "
					"(--val)");
	}
	n = x[0].dims[0];
	batch = cl.o.batch < n ? cl.o.batch : n;
	cl.o.total_steps = total_steps(&cl, n, batch);
	cl.o.lp_steps = cl.lp_ft > 0 ? graft_epoch_steps(cl.lp_ft, n, batch) : 0;
	cl.o.unfreeze_every = cl.unfreeze_every > 0 ? graft_epoch_steps(cl.unfreeze_every, n, batch) : 0;
	if (cl.o.lp_steps >= cl.o.total_steps)
		tool_die("--lp-ft %g covers the whole run (%lld steps): nothing would fine-tune",
			 cl.lp_ft, (long long)cl.o.total_steps);
	steps_per_epoch = (int64_t)ceil((double)n / (double)batch);
	if (cl.o.schedule == GRAFT_SCHEDULE_STEP)
		cl.o.step_every = cl.step_epochs * steps_per_epoch;
	check_split(&cl, comm, batch);
	check_memory(&cl, r.m, x, r.n_x, batch);
	cl.o.wisdom = tool_wisdom(cl.no_tune, cl.quiet);
	cl.o.loader = r.loader;
	cl.o.comm = comm;
	if (graft_trainer_new(&r.t, r.m, x, r.n_x, &y, &cl.o, &err))
		tool_die("%s", err.msg);
	if (cl.resume && graft_trainer_resume(r.t, r.m, &err))
		tool_die("%s: %s", cl.resume, err.msg);
	r.total = cl.o.total_steps;
	r.classes = graft_trainer_classes(r.t);
	if (cl.log && !(r.log = fopen(cl.log, cl.resume ? "a" : "w")))
		tool_die("%s: %s", cl.log, strerror(errno));
	r.tty = !cl.quiet && isatty(STDERR_FILENO);
	r.live = graft_trainer_param_count(r.t);
	if (!cl.quiet)
		fprintf(stderr, "%s: %lld samples, batch %lld, %lld steps (%.2f epochs), %zu "
			"parameter tensors training, %s lr %g\n", tool_name, (long long)n,
			(long long)batch, (long long)r.total,
			graft_trainer_epoch(r.t, r.total), graft_trainer_param_count(r.t),
			graft_optim_name(cl.o.optim.kind), cl.o.optim.lr);
	if (!cl.quiet && (comm || cl.o.accumulate > 1)) {
		int procs = comm ? comm->size : 1, micro = cl.o.accumulate > 1 ? cl.o.accumulate : 1;
		fprintf(stderr, "%s: each batch in %d pieces of %lld samples: %d process%s x %d "
			"micro-batch%s%s\n", tool_name, procs * micro,
			(long long)(batch / (procs * micro)), procs, procs > 1 ? "es" : "", micro,
			micro > 1 ? "es" : "", cl.o.sync_bn && procs > 1
			? ", BatchNormalization statistics over the whole batch" : "");
	}
	if (!cl.quiet && cl.o.lp_steps)
		fprintf(stderr, "%s: LP-FT: the head alone for %lld steps at lr %g first\n",
			tool_name, (long long)cl.o.lp_steps,
			graft_train_lp_lr(&cl.o));
	tool_defer_stops(1);     /* a stop signal: finish the step, save, exit */
	r.t0 = r.t_epoch = graft_now();
	r.epoch_start_step = graft_trainer_steps_done(r.t);
	tool_add_history(r.m);
	for (int64_t step = graft_trainer_steps_done(r.t); step < r.total; step++) {
		struct graft_step_stats s;
		if (graft_trainer_step(r.t, &s, &err))
			tool_die("%s", err.msg);
		r.loss_sum += s.loss;
		r.correct += s.correct;
		r.count += s.count;
		r.steps++;
		r.phase_s[0] += s.data_s;
		r.phase_s[1] += s.forward_s;
		r.phase_s[2] += s.backward_s;
		r.phase_s[3] += s.update_s;
		r.phase_s[4] += s.comm_s;
		r.comm_s += s.comm_s;
		r.phase_steps++;
		if (r.tty)
			progress(&r, step, &s);
		if (graft_trainer_param_count(r.t) != r.live)
			unfrozen(&r, step);
		int64_t done = step + 1;
		int epoch_end = (int64_t)graft_trainer_epoch(r.t, done) >
				(int64_t)graft_trainer_epoch(r.t, step) || done == r.total;
		if (epoch_end || (cl.log_every && done % cl.log_every == 0))
			report(&r, done, epoch_end);
		if (cl.checkpoint && done < r.total &&
		    (cl.checkpoint_every ? done % cl.checkpoint_every == 0 : epoch_end))
			write_model(&r, cl.checkpoint, 0);
		/* (a group stops together, after the same step, when any process was told) */
		if (comm ? tool_dist_any(tool_stop_signal) : tool_stop_signal) {
			int sig = tool_stop_signal ? tool_stop_signal : SIGTERM;
			if (r.tty)
				fputc('\n', stderr);
			write_model(&r, cl.checkpoint ? cl.checkpoint : cl.out, !cl.checkpoint);
			if (tool_dist_writer())
				fprintf(stderr, "%s: interrupted after step %lld; %s holds the state: "
					"continue with --resume\n", tool_name, (long long)done,
					cl.checkpoint ? cl.checkpoint : cl.out ? cl.out : "the output");
			exit(128 + sig);
		}
	}
	if (cl.checkpoint)
		write_model(&r, cl.checkpoint, 0);
	if (r.val_accuracy >= 0) {     /* measured: into the history (provenance) */
		char note[600];
		snprintf(note, sizeof(note), "val accuracy %.2f%% on %s", 100 * r.val_accuracy,
			 cl.val);
		if (graft_model_note_history(r.m, note, &err))
			tool_die("%s", err.msg);
	}
	write_model(&r, cl.out, 1);
	if (r.log && fclose(r.log))
		tool_die("%s: %s", cl.log, strerror(errno));
	if (cl.o.profile) {
		double *p = r.phase_s;
		fprintf(stderr, "%s: profile: %lld steps: data %.3f s, forward and loss %.3f s, "
			"backward %.3f s, update %.3f s", tool_name, (long long)r.phase_steps, p[0],
			p[1], p[2], p[3]);
		if (comm)
			fprintf(stderr, ", exchange with the group %.3f s (%.4f s a step)", p[4],
				p[4] / (double)(r.phase_steps ? r.phase_steps : 1));
		fputc('\n', stderr);
		tool_print_profile(graft_trainer_net(r.t));
	}
	if (cl.o.profile)
		print_loader(r.loader);
	graft_trainer_free(r.t);
	graft_loader_free(r.loader);
	graft_loader_free(r.vloader);
	graft_model_free(r.m);
	tool_release_datasets();
	return 0;
}
