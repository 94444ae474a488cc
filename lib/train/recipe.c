/*
 * recipe.c: a training recipe as text, the way graft-plan writes it into a model's
 * metadata (GRAFT_RECIPE_KEY) and prints it, and graft-train reads it: graft-train's own
 * long options, in a fixed order, with numbers written so that they read back exactly.
 * Parsing accepts only these options, so that a model file cannot carry any other
 * option (an output path, say) into graft-train.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

void graft_recipe_defaults(struct graft_recipe *r)
{
	memset(r, 0, sizeof(*r));
	r->batch = 32;
	r->optimizer = GRAFT_OPTIM_SGD;
	r->weight_decay = -1;
}

/* The shortest of %.15g and %.17g that reads back as v. */
static void number(char *buf, size_t size, double v)
{
	snprintf(buf, size, "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, size, "%.17g", v);
}

/* Appends " --opt value" (value NULL: the number v) to buf at *at, counting what does
 * not fit as snprintf does. */
static void append(char *buf, size_t size, size_t *at, const char *opt, const char *value,
		   double v)
{
	char num[32];
	int n;

	if (!value) {
		number(num, sizeof(num), v);
		value = num;
	}
	n = snprintf(*at < size ? buf + *at : NULL, *at < size ? size - *at : 0, "%s--%s %s",
		     *at ? " " : "", opt, value);
	*at += (size_t)(n > 0 ? n : 0);
}

size_t graft_recipe_format(const struct graft_recipe *r, char *buf, size_t size)
{
	size_t at = 0;

	if (size)
		buf[0] = 0;
	append(buf, size, &at, "epochs", NULL, r->epochs);
	append(buf, size, &at, "batch", NULL, (double)r->batch);
	append(buf, size, &at, "optimizer", graft_optim_name(r->optimizer), 0);
	append(buf, size, &at, "lr", NULL, r->lr);
	if (r->weight_decay >= 0)
		append(buf, size, &at, "weight-decay", NULL, r->weight_decay);
	if (r->schedule == GRAFT_SCHEDULE_COSINE)
		append(buf, size, &at, "schedule", "cosine", 0);
	if (r->warmup > 0)
		append(buf, size, &at, "warmup", NULL, (double)r->warmup);
	if (r->bn_frozen)
		append(buf, size, &at, "bn", "frozen", 0);
	if (r->lp_ft > 0)
		append(buf, size, &at, "lp-ft", NULL, r->lp_ft);
	if (r->lp_ft > 0 && r->lp_lr > 0)
		append(buf, size, &at, "lp-lr", NULL, r->lp_lr);
	if (r->unfreeze_every > 0)
		append(buf, size, &at, "unfreeze-every", NULL, r->unfreeze_every);
	if (r->layer_decay > 0 && r->layer_decay != 1)
		append(buf, size, &at, "layer-decay", NULL, r->layer_decay);
	return at;
}

/* The numeric options: their ranges, and whether they are whole numbers. */
static const struct numeric {
	const char *name;
	double lo, hi;
	int whole;
} numeric[] = {
	{"epochs", 1e-9, 1e9, 0}, {"batch", 1, 1e9, 1}, {"lr", 0, 1e6, 0},
	{"weight-decay", 0, 1e6, 0}, {"warmup", 0, 1e12, 1}, {"lp-ft", 0, 1e9, 0},
	{"lp-lr", 0, 1e6, 0}, {"unfreeze-every", 0, 1e9, 0}, {"layer-decay", 0, 1, 0},
};

static void set_numeric(struct graft_recipe *r, size_t which, double v)
{
	switch (which) {
	case 0: r->epochs = v; break;
	case 1: r->batch = (int64_t)v; break;
	case 2: r->lr = v; break;
	case 3: r->weight_decay = v; break;
	case 4: r->warmup = (int64_t)v; break;
	case 5: r->lp_ft = v; break;
	case 6: r->lp_lr = v; break;
	case 7: r->unfreeze_every = v; break;
	default: r->layer_decay = v; break;
	}
}

/* Sets the field of option opt from value. */
static int parse_one(struct graft_recipe *r, const char *opt, const char *value,
		     struct graft_err *err)
{
	if (strcmp(opt, "optimizer") == 0) {
		for (int k = GRAFT_OPTIM_SGD; k <= GRAFT_OPTIM_ADAMW; k++)
			if (strcmp(value, graft_optim_name((enum graft_optim_kind)k)) == 0) {
				r->optimizer = (enum graft_optim_kind)k;
				return 0;
			}
		return graft_err_set(err, GRAFT_EINVAL, "recipe: no optimizer '%s'", value);
	}
	if (strcmp(opt, "schedule") == 0) {
		if (strcmp(value, "cosine") && strcmp(value, "constant"))
			return graft_err_set(err, GRAFT_EINVAL, "recipe: --schedule '%s' is not "
					     "constant or cosine", value);
		r->schedule = strcmp(value, "cosine") == 0 ? GRAFT_SCHEDULE_COSINE
							   : GRAFT_SCHEDULE_CONSTANT;
		return 0;
	}
	if (strcmp(opt, "bn") == 0) {
		if (strcmp(value, "frozen") && strcmp(value, "train"))
			return graft_err_set(err, GRAFT_EINVAL, "recipe: --bn '%s' is not train or "
					     "frozen", value);
		r->bn_frozen = strcmp(value, "frozen") == 0;
		return 0;
	}
	for (size_t i = 0; i < sizeof(numeric) / sizeof(numeric[0]); i++) {
		const struct numeric *o = &numeric[i];
		char *end;
		double v;
		if (strcmp(opt, o->name) != 0)
			continue;
		errno = 0;
		v = strtod(value, &end);
		if (errno || end == value || *end || !(v >= o->lo && v <= o->hi) ||
		    (o->whole && v != floor(v)))
			return graft_err_set(err, GRAFT_EINVAL, "recipe: --%s '%s' is not a %s in "
					     "[%g, %g]", opt, value, o->whole ? "whole number"
					     : "number", o->lo, o->hi);
		set_numeric(r, i, v);
		return 0;
	}
	return graft_err_set(err, GRAFT_EINVAL, "recipe: '--%s' is not a recipe option", opt);
}

int graft_recipe_parse(const char *text, struct graft_recipe *r, struct graft_err *err)
{
	char *copy = strdup(text ? text : ""), *save = NULL, *tok;
	int rc = 0, epochs = 0;

	graft_recipe_defaults(r);
	if (!copy)
		return graft_err_set(err, GRAFT_ENOMEM, "out of memory");
	for (tok = strtok_r(copy, " \t\n", &save); tok && !rc; tok = strtok_r(NULL, " \t\n", &save)) {
		char *value = strtok_r(NULL, " \t\n", &save);
		if (strncmp(tok, "--", 2) != 0 || !tok[2])
			rc = graft_err_set(err, GRAFT_EINVAL, "recipe: '%s' is not an option", tok);
		else if (!value)
			rc = graft_err_set(err, GRAFT_EINVAL, "recipe: %s has no value", tok);
		else
			rc = parse_one(r, tok + 2, value, err);
		epochs |= !rc && strcmp(tok, "--epochs") == 0;
	}
	if (!rc && !epochs)
		rc = graft_err_set(err, GRAFT_EINVAL, "recipe: no --epochs");
	free(copy);
	return rc;
}

void graft_recipe_train_opts(const struct graft_recipe *r, int64_t n, uint64_t seed,
			     struct graft_train_opts *o)
{
	int64_t batch = r->batch < n ? r->batch : n;

	memset(o, 0, sizeof(*o));
	graft_optim_defaults(&o->optim, r->optimizer);
	o->optim.lr = r->lr;
	if (r->weight_decay >= 0)
		o->optim.weight_decay = r->weight_decay;
	o->batch = batch;
	o->total_steps = graft_epoch_steps(r->epochs, n, batch);
	o->schedule = r->schedule;
	o->warmup = r->warmup;
	o->bn_frozen = r->bn_frozen;
	o->shuffle = 1;
	o->seed = seed;
	o->lp_steps = r->lp_ft > 0 ? graft_epoch_steps(r->lp_ft, n, batch) : 0;
	o->lp_lr = r->lp_lr;
	o->unfreeze_every = r->unfreeze_every > 0 ? graft_epoch_steps(r->unfreeze_every, n, batch) : 0;
	o->layer_decay = r->layer_decay;
}
