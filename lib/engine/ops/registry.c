/*
 * registry.c: every op the executor knows, by family.  A new family is one file in
 * lib/engine/ops/ exporting a NULL-terminated ops_<family>[] array, listed here, and, for the
 * ops it can differentiate, a NULL-terminated ops_<family>_grad[] array, for the
 * ops whose kernels allocate buffers of their own (packed weights), ops_<family>_mem[],
 * and for those with a kernel for blocked layouts, ops_<family>_blocked[].
 */
#include <pthread.h>
#include <string.h>

#include "ops.h"

extern const struct op_def *const ops_eltwise[], *const ops_reshape[], *const ops_join[],
	*const ops_index[], *const ops_constant[], *const ops_reduce[], *const ops_softmax[],
	*const ops_norm[], *const ops_conv[], *const ops_gemm[], *const ops_pool[],
	*const ops_quant[], *const ops_qconv[];

static const struct op_def *const *const families[] = {
	ops_eltwise, ops_reshape, ops_join, ops_index, ops_constant, ops_reduce, ops_softmax,
	ops_norm, ops_conv, ops_gemm, ops_pool, ops_quant, ops_qconv,
};

/* Room for every op of the families (test_net checks that they fit). */
#define MAX_OPS 256
static const struct op_def *all[MAX_OPS + 1];
static pthread_once_t all_once = PTHREAD_ONCE_INIT;

static void fill_all(void)
{
	size_t n = 0;

	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++)
		for (size_t i = 0; families[f][i] && n < MAX_OPS; i++)
			all[n++] = families[f][i];
	all[n] = NULL;
}

/* Filled once, under a once-guard: nets may be made from several threads at once. */
const struct op_def *const *ops_all(void)
{
	pthread_once(&all_once, fill_all);
	return all;
}

size_t ops_family_total(void)
{
	size_t n = 0;

	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++)
		for (size_t i = 0; families[f][i]; i++)
			n++;
	return n;
}

const struct op_def *ops_find(const char *op_type)
{
	for (const struct op_def *const *o = ops_all(); *o; o++)
		if (strcmp((*o)->name, op_type) == 0)
			return *o;
	return NULL;
}

extern const struct op_def *const ops_quant_fused[];

const struct op_def *ops_find_fused(const char *name)
{
	for (size_t i = 0; ops_quant_fused[i]; i++)
		if (strcmp(ops_quant_fused[i]->name, name) == 0)
			return ops_quant_fused[i];
	return NULL;
}

extern const struct grad_def *const ops_eltwise_grad[], *const ops_reshape_grad[],
	*const ops_join_grad[], *const ops_index_grad[], *const ops_reduce_grad[],
	*const ops_softmax_grad[], *const ops_norm_grad[], *const ops_conv_grad[],
	*const ops_gemm_grad[], *const ops_pool_grad[];

static const struct grad_def *const *const grad_families[] = {
	ops_eltwise_grad, ops_reshape_grad, ops_join_grad, ops_index_grad, ops_reduce_grad,
	ops_softmax_grad, ops_norm_grad, ops_conv_grad, ops_gemm_grad, ops_pool_grad,
};

const struct grad_def *ops_find_grad(const char *op_type)
{
	for (size_t f = 0; f < sizeof(grad_families) / sizeof(grad_families[0]); f++)
		for (size_t i = 0; grad_families[f][i]; i++)
			if (strcmp(grad_families[f][i]->name, op_type) == 0)
				return grad_families[f][i];
	return NULL;
}

extern const struct blocked_def *const ops_eltwise_blocked[], *const ops_pool_blocked[],
	*const ops_quant_blocked[];

static const struct blocked_def *const *const blocked_families[] = {
	ops_eltwise_blocked, ops_pool_blocked, ops_quant_blocked,
};

const struct blocked_def *ops_find_blocked(const char *op_type)
{
	for (size_t f = 0; f < sizeof(blocked_families) / sizeof(blocked_families[0]); f++)
		for (size_t i = 0; blocked_families[f][i]; i++)
			if (strcmp(blocked_families[f][i]->name, op_type) == 0)
				return blocked_families[f][i];
	return NULL;
}

extern const struct mem_def *const ops_conv_mem[], *const ops_gemm_mem[], *const ops_qconv_mem[];

static const struct mem_def *const *const mem_families[] = {ops_conv_mem, ops_gemm_mem,
							     ops_qconv_mem};

uint64_t ops_plan_bytes(const struct node *n)
{
	for (size_t f = 0; f < sizeof(mem_families) / sizeof(mem_families[0]); f++)
		for (size_t i = 0; mem_families[f][i]; i++)
			if (strcmp(mem_families[f][i]->name, n->op->name) == 0)
				return mem_families[f][i]->plan_bytes(n);
	return 0;
}
