/*
 * surgery.h: the private header of lib/surgery/: graph surgery on a model's skeleton.
 */
#ifndef GRAFT_SURGERY_H
#define GRAFT_SURGERY_H

#include "engine/engine.h"

/* ---- edit.c ---- */
/* Removes node i of the main graph (freed). */
void edit_remove_node(Onnx__GraphProto *g, size_t i);
/* Removes the initializers nothing reads any more, subgraphs included (stored ones
 * through the table), with the graph inputs of the same name (IR versions before 4 pair
 * them; left alone, they would become inputs a runtime demands). */
int edit_drop_unread_initializers(struct graft_model *m, struct graft_err *err);
/* Removes the value_info entries of values the graph no longer has (keeps them all when
 * memory runs out). */
void edit_drop_stale_value_info(Onnx__GraphProto *g);
/* Replaces the string *s (a node's input or output name) by a copy of to.  -1: out of
 * memory, *s unchanged. */
int edit_set_str(char **s, const char *to);
/* A name the model does not have yet, nor made (the names of nodes a rewrite has made
 * but not spliced in; NULL for none): base + suffix, or with a counter; added to made.
 * -1: out of memory. */
int edit_fresh_name(const struct graft_model *m, struct strmap *made, const char *base,
		    const char *suffix, char *buf, size_t size);
/* A new constant initializer of dtype and dims with a copy of data, named
 * edit_fresh_name's way into name. */
int edit_put_constant(struct graft_model *m, struct strmap *made, const char *base,
		      const char *suffix, int dtype, int rank, const int64_t *dims,
		      const void *data, char *name, size_t size, struct graft_err *err);

/* ---- fold.c ---- */
/* Removes stored values nobody reads: Identity aliases of stored tensors and Constant
 * nodes whose outputs are unread (chains of aliases too), then unread initializers with
 * the graph inputs of the same name. */
int fold_drop_unread(struct graft_model *m, struct graft_err *err);

#endif
