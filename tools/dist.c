/*
 * dist.c: data-parallel runs of the tools (tool.h, "data-parallel"): MPI when the build
 * has it (GRAFT_MPI), and otherwise a refusal wherever a group is asked for, so that N
 * copies started by mpirun never train N models side by side, each writing the output.
 *
 * Only graft-train, graft-eval and graft-plan link this file (and MPI); tool.c stays
 * MPI-free and reaches MPI_Abort through tool_on_die.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

#ifdef GRAFT_MPI
#include <mpi.h>
#endif

static struct graft_comm comm;
static int in_group;            /* MPI initialised by us */

/* Whether a launcher started this process (Open MPI's mpirun, or a PMI launcher: MPICH's
 * hydra, Slurm's srun), and into a group of how many (*size; 0 when it does not say). */
static int launched(int *size)
{
	static const char *sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};

	*size = 0;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (getenv(sizes[i])) {
			*size = atoi(getenv(sizes[i]));
			return 1;
		}
	return getenv("PMIX_RANK") != NULL;
}

#ifdef GRAFT_MPI
/* MPI counts are ints: larger blocks go in pieces of at most 1 GiB. */
#define PIECE ((size_t)1 << 30)

static int mpi_sendrecv(void *ctx, int to, const void *send, size_t send_n, int from,
			void *recv, size_t recv_n, struct graft_err *err)
{
	size_t pieces = (send_n + PIECE - 1) / PIECE + (recv_n + PIECE - 1) / PIECE;
	MPI_Request req[64];
	int n = 0, rc = MPI_SUCCESS, waited;

	(void)ctx;
	if (pieces > sizeof(req) / sizeof(req[0]))
		return graft_err_set(err, GRAFT_EINVAL, "a message of %zu bytes is too large",
				     send_n > recv_n ? send_n : recv_n);
	for (size_t at = 0; rc == MPI_SUCCESS && at < recv_n; at += PIECE)
		if ((rc = MPI_Irecv((char *)recv + at,
				    (int)(recv_n - at < PIECE ? recv_n - at : PIECE), MPI_BYTE, from,
				    0, MPI_COMM_WORLD, &req[n])) == MPI_SUCCESS)
			n++;
	for (size_t at = 0; rc == MPI_SUCCESS && at < send_n; at += PIECE)
		if ((rc = MPI_Isend((const char *)send + at,
				    (int)(send_n - at < PIECE ? send_n - at : PIECE), MPI_BYTE, to,
				    0, MPI_COMM_WORLD, &req[n])) == MPI_SUCCESS)
			n++;
	waited = MPI_Waitall(n, req, MPI_STATUSES_IGNORE);     /* (those started, either way) */
	if (rc == MPI_SUCCESS)
		rc = waited;
	if (rc != MPI_SUCCESS) {
		char msg[MPI_MAX_ERROR_STRING];
		int len = 0;
		MPI_Error_string(rc, msg, &len);
		return graft_err_set(err, GRAFT_EIO, "MPI: exchange with ranks %d and %d failed: %s",
				     to, from, msg);
	}
	return 0;
}

static void mpi_abort(int status)
{
	MPI_Abort(MPI_COMM_WORLD, status);
}

static void mpi_end(void)
{
	int done = 0;

	MPI_Finalized(&done);
	if (!done)
		MPI_Finalize();
}

const struct graft_comm *tool_dist_start(int forced)
{
	int provided, size, rank, told;

	if (!forced && !launched(&told))
		return NULL;
	/* serialized: the trainer's exchange thread averages gradients during backward */
	if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
		tool_die("MPI_Init failed: was this started by mpirun?");
	in_group = 1;
	atexit(mpi_end);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	comm = (struct graft_comm){.rank = rank, .size = size, .sendrecv = mpi_sendrecv,
				   .any_thread = provided >= MPI_THREAD_SERIALIZED};
	if (size < 2)
		return NULL;
	tool_on_die = mpi_abort;
	if (rank > 0) {         /* messages say which process speaks (rank 0: the tool) */
		static char name[256];
		snprintf(name, sizeof(name), "%s (rank %d)", tool_name, rank);
		tool_name = name;
	}
	tool_dist_agree(tool_args_digest(), "was started with other arguments");
	return &comm;
}

/* Rank 0's len bytes at *buf to every process (*buf allocated on the others). */
static void broadcast(void **buf, size_t *len)
{
	unsigned long long n = *len;

	MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
	if (comm.rank != 0 && !(*buf = malloc((size_t)n + 1)))
		tool_die("out of memory for the model (%llu bytes)", n);
	*len = (size_t)n;
	for (size_t at = 0; at < *len; at += PIECE)
		if (MPI_Bcast((char *)*buf + at, (int)(*len - at < PIECE ? *len - at : PIECE),
			      MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
			tool_die("MPI: the model's broadcast from rank 0 failed");
}
#else
const struct graft_comm *tool_dist_start(int forced)
{
	int told;

	if (forced || (launched(&told) && told != 1))   /* (one of a group, or unsaid) */
		tool_die("this graft was built without MPI, so it cannot train as one of a group "
			 "of processes: install libopenmpi-dev and rebuild (meson setup "
			 "-Dmpi=enabled)");
	return NULL;
}

static void broadcast(void **buf, size_t *len)
{
	(void)buf;
	(void)len;
}
#endif

const struct graft_comm *tool_comm(void)
{
	return in_group && comm.size > 1 ? &comm : NULL;
}

int tool_dist_writer(void)
{
	return comm.rank == 0;
}

/* The bytes of path (stdin when NULL or "-"), or dies. */
static void *slurp(const char *path, size_t *len)
{
	int fd = !path || strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 1 << 20, n = 0;
	char *buf = malloc(cap);
	ssize_t got;

	if (fd < 0)
		tool_die("%s: %s", path, strerror(errno));
	while (buf && (got = read(fd, buf + n, cap - n)) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			tool_die("%s: %s", path ? path : "<stdin>", strerror(errno));
		if ((n += (size_t)got) == cap) {
			char *more = realloc(buf, cap *= 2);
			if (!more)
				free(buf);
			buf = more;
		}
	}
	if (!buf)
		tool_die("%s: out of memory", path ? path : "<stdin>");
	if (fd != STDIN_FILENO)
		close(fd);
	*len = n;
	return buf;
}

struct graft_model *tool_dist_read_model(const char *path)
{
	const char *name = !path || strcmp(path, "-") == 0 ? "<stdin>" : path;
	struct graft_model *m;
	struct graft_err err = {0};
	char *dir = NULL;
	void *buf = NULL;
	size_t len = 0;
	int rc;

	if (!tool_comm())
		return tool_read_model(path);
	if (comm.rank == 0)
		buf = slurp(path, &len);
	broadcast(&buf, &len);
	if (strcmp(name, "<stdin>") != 0) {     /* (external data lives beside the model) */
		char *copy = strdup(path);
		if (!copy || !(dir = strdup(dirname(copy))))
			tool_die("out of memory");
		free(copy);
	}
	rc = graft_model_read_memory(&m, buf, len, dir, name, &err);
	free(buf);
	free(dir);
	if (rc)
		tool_die("%s", err.msg);
	return m;
}

void tool_dist_agree(uint64_t value, const char *what)
{
	struct graft_err err = {0};
	int differs;

	if (!tool_comm())
		return;
	if (graft_comm_agree(&comm, value, &differs, &err))
		tool_die("%s", err.msg);
	if (differs >= 0)
		tool_dist_refuse("rank %d of %d %s than rank 0: every process must be started "
				 "alike", differs, comm.size, what);
}

void tool_dist_refuse(const char *fmt, ...)
{
	va_list ap;

	if (tool_dist_writer()) {
		fprintf(stderr, "%s: ", tool_name);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	exit(1);
}

void tool_dist_need_file(const char *out)
{
	if (tool_comm() && (!out || strcmp(out, "-") == 0))
		tool_dist_refuse("in a group of processes (mpirun), write the model with -o FILE, "
				 "not to stdout");
}

int tool_dist_any(int flag)
{
	struct graft_err err = {0};
	double v = flag != 0;

	if (tool_comm() && graft_comm_sum(&comm, &v, 1, &err))
		tool_die("%s", err.msg);
	return v > 0;
}
