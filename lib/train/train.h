/*
 * train.h: the private header of lib/train/: the trainer (train.c), optimizers (optim.c),
 * losses (loss.c) and the strategy graft-plan picks (plan.c).  They stand on the engine
 * (training nets) and on surgery (cuts, for the strategy's blocks).
 */
#ifndef GRAFT_TRAIN_H
#define GRAFT_TRAIN_H

#include "surgery/surgery.h"

/* The index of row's largest of k values, the first on ties: a classifier's prediction,
 * as accuracy, confusion and parity count it (loss.c). */
int64_t train_arg_max(const float *row, int64_t k);
/* The classes int64 labels y (rank 1) name: the largest label plus one (search.c). */
int64_t train_label_classes(const struct graft_array *y);
/* A seed drawn from seed a and index b (an epoch, a step, a fold), salted so that
 * different uses of the same pair draw apart (train.c). */
uint64_t train_seed_mix(uint64_t a, uint64_t b, uint64_t salt);
/* Rows [at, at + b) of each of the n_x inputs x as a batch of rows rows (b or more) in
 * xb: views into x, or, where rows > b, copies in bufs[k] (the caller frees them) with
 * the last row repeated, so that a net planned for rows is not replanned (train.c). */
int train_batch_rows(const struct graft_array *x, size_t n_x, int64_t at, int64_t b,
		     int64_t rows, struct graft_array *xb, void **bufs, struct graft_err *err);

/* The gradients' mean over a group on a thread of its own (exchange.c): exchange_post
 * queues v (n floats, divided by parts first when parts > 1) for graft_comm_mean, and
 * the thread averages the queued vectors in order; exchange_wait waits for all queued so
 * far and gives the first error.  c must allow calls from another thread
 * (graft_comm.any_thread), and no one else may use it between a post and the wait. */
struct exchange;
int exchange_new(struct exchange **out, const struct graft_comm *c, struct graft_err *err);
void exchange_free(struct exchange *x);
int exchange_post(struct exchange *x, float *v, size_t n, int parts, struct graft_err *err);
int exchange_wait(struct exchange *x, struct graft_err *err);
/* v[i] /= parts: how one process averages its micro-batches, as graft_comm_mean divides
 * its rank-order sum by the size, so that the bits agree (exchange.c). */
void train_divide(float *v, size_t n, int parts);

#endif
