/*
 * graft-plan: what to fine-tune, decided by measuring it.  The candidates (the head alone,
 * LP-FT, the top blocks, everything; each at a few rates) train briefly on part of the
 * data and are scored on samples held apart from it, the best trained longer, by
 * successive halving (lib/train/search.c); the classic four cases are printed as context.
 * It prints the trials, the pick and the graft-freeze and graft-train commands for it;
 * --apply writes the model frozen as picked with the recipe in its metadata, --train also
 * trains it on all the data.  --rule gives the classic rule alone, without trials.
 * docs/plan.md has the method and what the experiments found.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

static const char usage[] =
	"usage: graft-plan [MODEL|-] --data D [--val V | --folds K | --holdout F]\n"
	"                  [--budget B[s]] [--epochs E] [--seed S] [--json]\n"
	"                  [--apply | --train] [-o OUT]\n"
	"Picks what to fine-tune in MODEL for the data D by trying the candidates on D: the\n"
	"head alone, LP-FT, the top blocks, everything, each at three rates, scored on samples\n"
	"held apart (docs/plan.md).  Prints the trials, the pick, and the commands to run.\n"
	"  -d, --data D      the training data (graft-data; class labels)\n"
	"      --val V       score the trials on V (they train on all of D)\n"
	"      --folds K     k-fold trials (default: 5 below 2000 samples, else one split)\n"
	"      --holdout F   one split holding the fraction F apart (default 0.2)\n"
	"      --budget B    the trials' limit: B full-network epochs over D (default: the\n"
	"                    pick's training; with little data, rounds in full), or\n"
	"                    Bs seconds (trials stop then; the pick is from the last round)\n"
	"      --epochs E    the pick's training length (default: about 1,000 steps, 3 to 30\n"
	"                    epochs)\n"
	"      --seed S      seed of the splits and the trials' data order (default 0)\n"
	"      --json        the whole plan as one JSON object\n"
	"      --json-out F  also write that JSON object to the file F\n"
	"      --apply       write the model frozen as picked, its recipe in the metadata\n"
	"                    (graft-train then needs no options): .graft on stdout or -o\n"
	"      --train       also train the pick on all of D and write the tuned model\n"
	"  -o, --output OUT  with --apply or --train: write to OUT (atomically)\n"
	"      --rule        the classic four-case rule alone, no trials (instant)\n"
	"  -q, --quiet       no progress on stderr\n"
	"under mpirun (docs/distributed.md), every trial's steps and scoring are shared out\n"
	"over the processes, rank 0 reporting and writing:\n"
	TOOL_DIST_HELP
	"  -f, --force       write binary data even to a terminal\n"
	"      --max-memory SIZE  refuse when a trial would need more memory than SIZE\n"
	"                    (suffixes K, M, G; default: the memory available)\n"
	"      --no-tune     oneDNN's first kernel for every layer, not the one timed\n"
	"                    fastest on this machine (the wisdom file: graft-run(1))\n"
	"  -h, --help        show this help;  -V, --version  show the version\n"
	"With --apply or --train the report goes to stderr.\n";

struct cmdline {
	const char *model, *data, *val, *out, *json_out;
	int apply, train, json, force, rule, quiet, no_tune, distributed;
	struct graft_search_opts so;
	uint64_t max_memory;    /* 0: the memory available */
};

/* A number for opt; with seconds, "60s" is 60 and sets *seconds. */
static double parse_number(const char *opt, const char *s, double lo, double hi, int *seconds)
{
	size_t len = strlen(s);

	if (seconds && len > 1 && s[len - 1] == 's') {
		char copy[64];
		snprintf(copy, sizeof(copy), "%.*s", (int)(len - 1), s);
		*seconds = 1;
		return tool_parse_number(opt, copy, lo, hi, usage);
	}
	return tool_parse_number(opt, s, lo, hi, usage);
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_APPLY = 256, OPT_JSON, OPT_VAL, OPT_FOLDS, OPT_HOLDOUT, OPT_BUDGET, OPT_EPOCHS,
	       OPT_SEED, OPT_TRAIN, OPT_RULE, OPT_JSON_OUT };
	static const struct option opts[] = {
		{"data", required_argument, NULL, 'd'}, {"apply", no_argument, NULL, OPT_APPLY},
		{"json", no_argument, NULL, OPT_JSON}, {"output", required_argument, NULL, 'o'},
		{"val", required_argument, NULL, OPT_VAL},
		{"folds", required_argument, NULL, OPT_FOLDS},
		{"holdout", required_argument, NULL, OPT_HOLDOUT},
		{"budget", required_argument, NULL, OPT_BUDGET},
		{"epochs", required_argument, NULL, OPT_EPOCHS},
		{"seed", required_argument, NULL, OPT_SEED},
		{"train", no_argument, NULL, OPT_TRAIN}, {"rule", no_argument, NULL, OPT_RULE},
		{"json-out", required_argument, NULL, OPT_JSON_OUT},
		{"quiet", no_argument, NULL, 'q'}, TOOL_DIST_LONGOPT,
		{"force", no_argument, NULL, 'f'}, TOOL_MEMORY_LONGOPT, TOOL_TUNE_LONGOPT,
		TOOL_COMMON_LONGOPTS, {0},
	};
	int c, seconds;
	double v;

	memset(cl, 0, sizeof(*cl));
	while ((c = getopt_long(argc, argv, ":d:o:qfhV", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cl->data = optarg; break;
		case OPT_APPLY: cl->apply = 1; break;
		case OPT_TRAIN: cl->train = 1; break;
		case OPT_RULE: cl->rule = 1; break;
		case OPT_JSON: cl->json = 1; break;
		case OPT_VAL: cl->val = optarg; break;
		case OPT_JSON_OUT: cl->json_out = optarg; break;
		case OPT_FOLDS:
			cl->so.folds = (int)parse_number("--folds", optarg, 1, 100, NULL);
			if (cl->so.folds != parse_number("--folds", optarg, 1, 100, NULL))
				tool_usage(usage, 2, "--folds: '%s' is not a whole number", optarg);
			break;
		case OPT_HOLDOUT:
			cl->so.holdout = parse_number("--holdout", optarg, 0.01, 0.5, NULL);
			break;
		case OPT_BUDGET:
			seconds = 0;
			v = parse_number("--budget", optarg, 1e-6, 1e9, &seconds);
			if (seconds)
				cl->so.budget_seconds = v;
			else
				cl->so.budget_epochs = v;
			break;
		case OPT_EPOCHS: cl->so.final_epochs = parse_number("--epochs", optarg, 1e-3, 1e6, NULL); break;
		case OPT_SEED: cl->so.seed = (uint64_t)parse_number("--seed", optarg, 0, 1e15, NULL); break;
		case 'o': cl->out = optarg; break;
		case 'q': cl->quiet = 1; break;
		case TOOL_OPT_DISTRIBUTED: cl->distributed = 1; break;
		case 'f': cl->force = 1; break;
		case TOOL_OPT_MAX_MEMORY:
			cl->max_memory = tool_parse_size("--max-memory", optarg, usage);
			break;
		case TOOL_OPT_NO_TUNE: cl->no_tune = 1; break;
		default: tool_common_option(c, usage);
		}
	}
	if (argc - optind > 1)
		tool_usage(usage, 2, "too many arguments");
	if (!cl->data)
		tool_usage(usage, 2, "--data is required");
	if (cl->apply && cl->train)
		tool_usage(usage, 2, "give one of --apply and --train");
	if (cl->out && !cl->apply && !cl->train)
		tool_usage(usage, 2, "-o goes with --apply or --train");
	if (!!cl->val + !!cl->so.folds + (cl->so.holdout > 0) > 1)
		tool_usage(usage, 2, "give one of --val, --folds and --holdout");
	if (cl->rule && (cl->train || cl->val || cl->json_out || cl->so.folds || cl->so.holdout > 0 ||
			 cl->so.budget_epochs > 0 || cl->so.budget_seconds > 0))
		tool_usage(usage, 2, "--rule runs no trials: it takes --data, --json and --apply");
	cl->model = optind < argc ? argv[optind] : NULL;
}

static const char *const case_name[] = {
	"", "little data, similar to the pretraining data",
	"little data, different from the pretraining data",
	"much data, similar to the pretraining data",
	"much data, different from the pretraining data",
};

/* graft-freeze's arguments that train the top blocks (0: everything). */
static void freeze_args(long blocks, char *buf, size_t size)
{
	if (blocks > 0)
		snprintf(buf, size, "--last-blocks %ld", blocks);
	else
		snprintf(buf, size, "--none");
}

/* The freeze arguments and the training arguments of the plan's case. */
static void commands(const struct graft_plan *p, char *freeze, size_t fs, char *train,
		     size_t ts)
{
	freeze_args(p->train_blocks, freeze, fs);
	switch (p->case_no) {
	case 1:
		/* A head alone is a linear model on fixed (cached) features: cheap to train
		 * to convergence, so about 1,000 steps of the default batch of 32 however
		 * few the samples (examples/four-cases: 20 epochs at 0.01 left a head at 71%
		 * on 20 Fashion-MNIST images per class, 300 at 0.03 reached 86%). */
		snprintf(train, ts, "--epochs %lld --optimizer adamw --lr 0.03",
			 (long long)(p->samples >= 1600 ? 20 : (32000 + p->samples - 1) / p->samples));
		break;
	case 2:
		snprintf(train, ts, "--epochs 20 --optimizer sgd --lr 0.005 --momentum 0.9 "
			 "--schedule cosine --bn frozen");
		break;
	case 3:
		snprintf(train, ts, "--epochs 5 --optimizer sgd --lr 0.01 --momentum 0.9 "
			 "--schedule cosine");
		break;
	default:
		snprintf(train, ts, "--epochs 10 --optimizer sgd --lr 0.02 --momentum 0.9 "
			 "--schedule cosine --warmup 100");
		break;
	}
}

static void why(const struct graft_plan *p, FILE *f)
{
	fprintf(f, "  data:       %lld samples in %lld classes, %.1f per class (little data is below %d)\n",
		(long long)p->samples, (long long)p->classes, p->samples_per_class,
		GRAFT_PLAN_SMALL_PER_CLASS);
	if (strcmp(p->method, "batchnorm") == 0)
		fprintf(f, "  similarity: %.3f = exp(-%.3f), the mean divergence of the data's "
			"statistics from %zu BatchNormalization layers' running ones (similar from "
			"%.2f)\n", p->similarity, p->distance, p->bn_layers, GRAFT_PLAN_SIMILAR_BN);
	else
		fprintf(f, "  similarity: %.3f, the original head's mean top softmax probability on "
			"the data (similar from %.2f)\n", p->similarity,
			GRAFT_PLAN_SIMILAR_CONFIDENCE);
	fprintf(f, "  model:      %llu parameters, %zu block boundaries; train %s: %llu "
		"parameters\n", (unsigned long long)p->params, p->blocks,
		p->train_blocks > 0 ? "the top blocks" : "everything",
		(unsigned long long)p->params_trained);
}

/* The classic case's numbers, as a JSON object's members. */
static void classic_json(const struct graft_plan *p, FILE *f)
{
	fprintf(f, "\"case\": %d, \"small\": %s, \"similar\": %s, \"samples\": %lld, "
		"\"classes\": %lld, \"samples_per_class\": %.6g, \"similarity\": %.6g, "
		"\"method\": \"%s\", \"distance\": %.6g, \"bn_layers\": %zu, \"parameters\": %llu, "
		"\"parameters_trained\": %llu, \"blocks\": %zu, \"train_blocks\": %ld",
		p->case_no, p->small ? "true" : "false", p->similar ? "true" : "false",
		(long long)p->samples, (long long)p->classes, p->samples_per_class, p->similarity,
		p->method, p->distance, p->bn_layers, (unsigned long long)p->params,
		(unsigned long long)p->params_trained, p->blocks, p->train_blocks);
}

/* ---- the measured plan ---------------------------------------------------------------------- */

/* "head", "lp-ft", "top 3", "full": a candidate's strategy as printed. */
static const char *strategy_label(const struct graft_candidate *c, char *buf, size_t size)
{
	if (c->strategy == GRAFT_STRATEGY_TOP)
		snprintf(buf, size, "top %ld", c->blocks);
	else
		snprintf(buf, size, "%s", graft_strategy_name(c->strategy));
	return buf;
}

/* One line on stderr per trial (unless --quiet), as planning can take minutes. */
static int trial_done(void *ctx, const struct graft_search *s, const struct graft_trial *t)
{
	const int *quiet = ctx;
	char label[32];

	if (!*quiet)
		fprintf(stderr, "%s: trial %zu: round %d, %s at lr %g, %.3g epochs: %.1f%% held "
			"apart, %.1f s\n", tool_name, s->n_trials, t->rung,
			strategy_label(&s->candidates[t->candidate], label, sizeof(label)),
			s->candidates[t->candidate].lr, t->epochs, 100 * t->accuracy, t->seconds);
	return 0;
}

/* The freeze and graft-train arguments of the pick. */
static void pick_commands(const struct graft_search *s, char *freeze, size_t fs, char *train,
			  size_t ts)
{
	freeze_args(s->train_blocks, freeze, fs);
	graft_recipe_format(&s->recipe, train, ts);
}

/* The best trial of the last round whose strategy differs from the pick's, or NULL. */
static const struct graft_trial *runner_up(const struct graft_search *s)
{
	const struct graft_trial *pick = &s->trials[s->pick_trial];
	const struct graft_candidate *pc = &s->candidates[s->pick];

	for (size_t i = s->pick_trial + 1; i < s->n_trials; i++) {
		const struct graft_candidate *c = &s->candidates[s->trials[i].candidate];
		if (s->trials[i].rung == pick->rung &&
		    (c->strategy != pc->strategy || c->blocks != pc->blocks))
			return &s->trials[i];
	}
	return NULL;
}

/* Seconds the pick's training on all n samples should take, from its trial's speed. */
static double train_estimate(const struct graft_search *s, int64_t n)
{
	const struct graft_trial *t = &s->trials[s->pick_trial];
	double per_sample = t->seconds / ((double)t->steps * s->folds * (double)s->recipe.batch);

	return per_sample * (double)graft_epoch_steps(s->final_epochs, n, s->recipe.batch) *
	       (double)s->recipe.batch;
}

static void print_report(const struct cmdline *cl, const struct graft_plan *p,
			 const struct graft_search *s, int64_t n, FILE *f)
{
	const struct graft_trial *pick = &s->trials[s->pick_trial], *second = runner_up(s);
	char label[32], freeze[64], train[512];

	fprintf(f, "the classic guidance, as context: case %d, %s\n", p->case_no,
		case_name[p->case_no]);
	why(p, f);
	if (s->folds > 1)
		fprintf(f, "trials: %d-fold (each trains on %lld samples and is scored on the %lld "
			"held apart)", s->folds, (long long)s->train_samples,
			(long long)s->val_samples);
	else if (cl->val)
		fprintf(f, "trials: train on all %lld samples, scored on %s (%lld samples)",
			(long long)s->train_samples, cl->val, (long long)s->val_samples);
	else
		fprintf(f, "trials: one split (train on %lld samples, scored on the %lld held apart)",
			(long long)s->train_samples, (long long)s->val_samples);
	fprintf(f, "; successive halving over %zu candidates, seed %llu\n", s->n_candidates,
		(unsigned long long)cl->so.seed);
	fprintf(f, "  round  strategy  lr       epochs  held-apart accuracy  loss     seconds\n");
	for (size_t i = 0; i < s->n_trials; i++) {
		const struct graft_trial *t = &s->trials[i];
		const struct graft_candidate *c = &s->candidates[t->candidate];
		fprintf(f, "  %-5d  %-8s  %-7g  %6.3g  %5.1f%%", t->rung,
			strategy_label(c, label, sizeof(label)), c->lr, t->epochs, 100 * t->accuracy);
		if (s->folds > 1)
			fprintf(f, " +- %4.1f", 100 * t->accuracy_sd);
		else
			fprintf(f, "        ");
		fprintf(f, "      %-7.4f  %7.1f%s\n", t->loss, t->seconds, i == s->pick_trial ? "  <- pick" : "");
	}
	fprintf(f, "pick: %s at lr %g: %.1f%% held apart after %.3g epochs in round %d",
		strategy_label(&s->candidates[s->pick], label, sizeof(label)),
		s->candidates[s->pick].lr, 100 * pick->accuracy, pick->epochs, pick->rung);
	if (second)
		fprintf(f, ", %.1f points above the best other strategy (%s)",
			100 * (pick->accuracy - second->accuracy),
			strategy_label(&s->candidates[second->candidate], label, sizeof(label)));
	fprintf(f, "\n  the classic rule would train %s\n", p->train_blocks > 0 ?
		(p->train_blocks == 1 ? "the head alone" : "the top blocks") : "everything");
	fprintf(f, "budget: %.3g full-network epochs over the data%s; the trials used %.3g in "
		"%.1f s%s\n", s->budget_epochs, s->budget_raised ? s->folds > 1 ? " (raised "
		"from the pick's training: with little data the last round trains as long as the "
		"pick will)" : " (raised from the pick's training to give the shortest trials "
		"enough steps)" : "", s->spent_epochs,
		s->seconds, s->stopped ? ", stopped by the seconds budget" : "");
	fprintf(f, "training the pick: %.3g epochs, about %.1f s (from its trial's speed)\n",
		s->final_epochs, train_estimate(s, n));
	pick_commands(s, freeze, sizeof(freeze), train, sizeof(train));
	fprintf(f, "run:\n  graft-freeze %s %s -o frozen.graft\n"
		"  graft-train frozen.graft --data %s %s -o tuned.graft\n",
		cl->model ? cl->model : "MODEL", freeze, cl->data, train);
}

static void print_json(const struct cmdline *cl, const struct graft_plan *p,
		       const struct graft_search *s, int64_t n, FILE *f)
{
	char label[32], freeze[64], train[512];

	pick_commands(s, freeze, sizeof(freeze), train, sizeof(train));
	fputs("{\"classic\": {", f);
	classic_json(p, f);
	fprintf(f, "}, \"folds\": %d, \"validation\": %s, \"train_samples\": %lld, "
		"\"val_samples\": %lld, \"seed\": %llu, \"candidates\": %zu, \"budget_epochs\": "
		"%.6g, \"budget_raised\": %s, \"budget_seconds\": %.6g, \"spent_epochs\": %.6g, "
		"\"seconds\": %.3f, \"stopped\": %s, \"trials\": [", s->folds,
		cl->val ? "\"given\"" : s->folds > 1 ? "\"k-fold\"" : "\"split\"",
		(long long)s->train_samples, (long long)s->val_samples,
		(unsigned long long)cl->so.seed, s->n_candidates, s->budget_epochs,
		s->budget_raised ? "true" : "false", cl->so.budget_seconds, s->spent_epochs,
		s->seconds, s->stopped ? "true" : "false");
	for (size_t i = 0; i < s->n_trials; i++) {
		const struct graft_trial *t = &s->trials[i];
		const struct graft_candidate *c = &s->candidates[t->candidate];
		fprintf(f, "%s{\"round\": %d, \"strategy\": \"%s\", \"blocks\": %ld, \"lr\": "
			"%.6g, \"epochs\": %.6g, \"steps\": %lld, \"accuracy\": %.6g, "
			"\"accuracy_sd\": %.6g, \"loss\": %.6g, \"seconds\": %.3f}", i ? ", " : "",
			t->rung, strategy_label(c, label, sizeof(label)), c->blocks, c->lr, t->epochs,
			(long long)t->steps, t->accuracy, t->accuracy_sd,
			isfinite(t->loss) ? t->loss : -1, t->seconds);
	}
	const struct graft_trial *pick = &s->trials[s->pick_trial];
	fprintf(f, "], \"pick\": {\"strategy\": \"%s\", \"blocks\": %ld, \"lr\": %.6g, "
		"\"accuracy\": %.6g, \"accuracy_sd\": %.6g, \"loss\": %.6g, \"round\": %d}, "
		"\"final_epochs\": %.6g, \"train_seconds_estimate\": %.3f, \"freeze\": ",
		strategy_label(&s->candidates[s->pick], label, sizeof(label)),
		s->candidates[s->pick].blocks, s->candidates[s->pick].lr, pick->accuracy,
		pick->accuracy_sd, pick->loss, pick->rung, s->final_epochs, train_estimate(s, n));
	tool_json_string(f, freeze);
	fputs(", \"train\": ", f);
	tool_json_string(f, train);
	fputs("}\n", f);
}

/* --train: the pick on all the data, as graft-train would train it given the recipe. */
static void train_pick(const struct cmdline *cl, struct graft_model *m,
		       const struct graft_search *s, const struct graft_array *x, size_t n_x,
		       const struct graft_array *y)
{
	struct graft_train_opts o;
	struct graft_trainer *t;
	struct graft_err err = {0};
	int64_t n = x->dims[0];
	double t0 = graft_now();

	graft_recipe_train_opts(&s->recipe, n, cl->so.seed, &o);
	o.wisdom = cl->so.wisdom;
	o.comm = cl->so.comm;
	o.sync_bn = 1;          /* (as the trials: one process's training) */
	if (graft_trainer_new(&t, m, x, n_x, y, &o, &err))
		tool_die("%s", err.msg);
	for (int64_t k = 0; k < o.total_steps; k++) {
		struct graft_step_stats st;
		if (graft_trainer_step(t, &st, &err))
			tool_die("%s", err.msg);
	}
	if (graft_trainer_save(t, m, &err))
		tool_die("%s", err.msg);
	graft_trainer_free(t);
	if (!cl->quiet)
		fprintf(stderr, "%s: trained the pick on all %lld samples: %lld steps in %.1f s\n",
			tool_name, (long long)n, (long long)o.total_steps, graft_now() - t0);
}

/* ---- the classic rule alone (--rule) ------------------------------------------------------- */

static void rule_only(const struct cmdline *cl, struct graft_model *m, const char *mpath,
		      const struct graft_plan *p)
{
	char freeze[64], train[256];
	FILE *info = cl->apply ? stderr : stdout;
	struct graft_err err = {0};

	if (!tool_dist_writer())        /* (a group: rank 0 says it) */
		return;
	commands(p, freeze, sizeof(freeze), train, sizeof(train));
	if (cl->json) {
		fputc('{', info);
		classic_json(p, info);
		fputs(", \"freeze\": ", info);
		tool_json_string(info, freeze);
		fputs(", \"train\": ", info);
		tool_json_string(info, train);
		fputs("}\n", info);
	} else {
		fprintf(info, "case %d: %s\n", p->case_no, case_name[p->case_no]);
		why(p, info);
		fprintf(info, "run:\n  graft-freeze %s %s -o frozen.graft\n"
			"  graft-train frozen.graft --data %s %s -o tuned.graft\n",
			cl->model ? cl->model : "MODEL", freeze, cl->data, train);
	}
	if (cl->apply) {
		struct graft_freeze_rule rule;
		graft_plan_rule(p, &rule);
		if (graft_model_freeze(m, &rule, 1, NULL, NULL, &err))
			tool_die("%s: %s", mpath, err.msg);
		tool_add_history(m);
		tool_write_graft(m, cl->out, NULL, 1, cl->force);
	}
}

/* In a group (mpirun): rank 0 alone reports and writes, and the model goes to a file
 * (mpirun passes stdout through a terminal); the trials' batch splits evenly. */
static void join_group(struct cmdline *cl, const struct graft_comm *comm)
{
	int64_t batch = cl->so.batch ? cl->so.batch : 32;

	if (comm->rank != 0)
		cl->quiet = 1;
	if (cl->apply || cl->train)
		tool_dist_need_file(cl->out);
	if (batch % comm->size)
		tool_dist_refuse("the trials' batch of %lld does not split over %d processes: run "
				 "a number of processes that divides it", (long long)batch,
				 comm->size);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct graft_model *m;
	struct graft_array x[GRAFT_DATASET_MAX_INPUTS], vx[GRAFT_DATASET_MAX_INPUTS], y, vy;
	size_t n_x;
	struct graft_plan p;
	struct graft_search s;
	struct graft_err err = {0};
	const char *mpath;
	FILE *info;

	tool_init(argc, argv);
	parse_cmdline(argc, argv, &cl);
	cl.so.comm = tool_dist_start(cl.distributed);
	mpath = cl.model && strcmp(cl.model, "-") ? cl.model : "<stdin>";
	if (cl.so.comm)
		join_group(&cl, cl.so.comm);
	if ((cl.apply || cl.train) && (!cl.out || strcmp(cl.out, "-") == 0) &&
	    isatty(STDOUT_FILENO) && !cl.force)
		tool_die("refusing to write a model to a terminal (use -o FILE or -f)");
	m = tool_dist_read_model(cl.model);
	tool_read_feed(cl.data, m, x, &n_x, &y);
	if (cl.so.comm)
		tool_dist_agree(tool_dataset_digest(cl.data), "read other data (--data)");
	if (cl.val) {
		tool_read_validation(cl.val, m, vx, &vy, cl.data, x, n_x, &y);
		cl.so.val_x = vx;
		cl.so.val_y = &vy;
		if (cl.so.comm)
			tool_dist_agree(tool_dataset_digest(cl.val), "read other validation data "
					"(--val)");
	}
	/* graft_plan_make measures the data in batches of 32 through a net that keeps every
	 * value (no fusion); a trial trains at batch 32 with AdamW's two moments. */
	struct graft_net_opts probe = {.no_fuse = 1};
	tool_check_model_memory(m, mpath, &probe, x, n_x, 32, 0, cl.max_memory);
	if (graft_plan_make(m, x, n_x, &y, &p, &err))
		tool_die("%s: %s", mpath, err.msg);
	if (cl.rule) {
		rule_only(&cl, m, mpath, &p);
		goto done;
	}
	struct graft_net_opts trial = {.training = 1};
	tool_check_model_memory(m, mpath, &trial, x, n_x, 32, 2 * 4 * p.params, cl.max_memory);
	cl.so.wisdom = tool_wisdom(cl.no_tune, cl.quiet);
	cl.so.progress = trial_done;
	cl.so.ctx = &cl.quiet;
	/* the trials' errors concern the model, the data or both: name both */
	if (graft_search_run(m, x, n_x, &y, &cl.so, &s, &err))
		tool_die("%s on %s: %s", mpath, cl.data, err.msg);
	info = cl.apply || cl.train ? stderr : stdout;
	if (tool_dist_writer() && cl.json)
		print_json(&cl, &p, &s, x[0].dims[0], info);
	else if (tool_dist_writer())
		print_report(&cl, &p, &s, x[0].dims[0], info);
	if (cl.json_out && tool_dist_writer()) {        /* whole or not at all */
		struct graft_output out;
		FILE *f;
		tool_output_open(&out, cl.json_out, 0, 0);
		if (!(f = fdopen(dup(out.fd), "w")))
			tool_die("%s: %s", cl.json_out, strerror(errno));
		print_json(&cl, &p, &s, x[0].dims[0], f);
		if (fclose(f))
			tool_die("%s: write failed", cl.json_out);
		tool_output_commit(&out);
	}
	if (cl.apply || cl.train) {
		struct graft_freeze_rule rule = {.kind = GRAFT_FREEZE_LAST_BLOCKS, .train = 1,
						 .count = s.train_blocks};
		char recipe[512];
		graft_recipe_format(&s.recipe, recipe, sizeof(recipe));
		if (graft_model_freeze(m, &rule, 1, NULL, NULL, &err) ||
		    graft_model_set_metadata(m, GRAFT_RECIPE_KEY, recipe, &err))
			tool_die("%s: %s", mpath, err.msg);
		if (cl.train)
			train_pick(&cl, m, &s, x, n_x, &y);
		tool_add_history(m);
		if (tool_dist_writer())
			tool_write_graft(m, cl.out, NULL, 1, cl.force);
	}
	graft_search_free(&s);
done:
	if (fflush(stdout) || ferror(stdout))
		tool_die("write failed");
	graft_model_free(m);
	tool_release_datasets();
	return 0;
}
