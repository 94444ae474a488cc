/* test_io.c: outputs that appear only when complete, and whole-input reads. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>
#include <cmocka.h>

#include "base/base.h"
#include "testmodel.h"

static void write_text_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_abort_leaves_nothing(void **state)
{
	char *dir = tm_tempdir(), path[512];
	struct graft_output out;
	struct graft_err err = {0};
	(void)state;

	snprintf(path, sizeof(path), "%s/model.graft", dir);
	assert_int_equal(graft_output_open(&out, path, &err), 0);
	assert_int_equal(graft_write_all(out.fd, "partial", 7, &err), 0);
	/* The temporary file has no name while it is written (O_TMPFILE), except where
	 * the file system cannot make one; then it is the one entry. */
	assert_int_equal(count_entries(dir), out.unnamed ? 0 : 1);
	assert_true(out.unnamed ? graft_output_tmp_path(&out) == NULL
				: graft_output_tmp_path(&out) != NULL);
	graft_output_abort(&out);
	graft_output_abort(&out);                       /* twice is harmless */
	assert_int_equal(count_entries(dir), 0);
	rmdir(dir);
	free(dir);
}

/* SIGKILL, which no handler sees, in the middle of a write leaves nothing behind where
 * the temporary file is unnamed; a commit gives it a plain file's permissions. */
static void test_kill_leaves_nothing(void **state)
{
	char *dir = tm_tempdir(), path[512];
	struct graft_output out;
	struct graft_err err = {0};
	struct stat st;
	int status, fds[2];
	pid_t pid;
	char c;
	(void)state;

	snprintf(path, sizeof(path), "%s/model.graft", dir);
	assert_int_equal(pipe(fds), 0);
	if ((pid = fork()) == 0) {
		if (graft_output_open(&out, path, &err) ||
		    graft_write_all(out.fd, "partial", 7, &err) || !out.unnamed)
			_exit(1);
		(void)!write(fds[1], "w", 1);   /* written, not committed: now kill me */
		pause();
		_exit(2);
	}
	close(fds[1]);
	if (read(fds[0], &c, 1) == 1) {
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		assert_int_equal(count_entries(dir), 0);
	} else {        /* no O_TMPFILE here: the child could not make an unnamed file */
		waitpid(pid, &status, 0);
		print_message("no O_TMPFILE on %s: skipped\n", dir);
	}
	close(fds[0]);
	assert_int_equal(graft_output_open(&out, path, &err), 0);
	assert_int_equal(graft_write_all(out.fd, "whole", 5, &err), 0);
	assert_int_equal(graft_output_commit(&out, &err), 0);
	assert_int_equal(count_entries(dir), 1);
	mode_t mask = umask(0);
	umask(mask);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0666 & ~mask);
	unlink(path);
	rmdir(dir);
	free(dir);
}

/* Removes dir and the files in it. */
static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[600];

	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
	closedir(d);
	rmdir(dir);
}

static void touch(const char *dir, const char *name)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	write_text_file(path, "left");
}

static int exists(const char *dir, const char *name)
{
	char path[600];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return lstat(path, &st) == 0;
}

/* Temporary files that killed writers left (no lock held on them) are removed by the
 * next writer of the same target, and nothing else is: not another target's, not a
 * name that only looks alike, not one whose writer still lives (it holds its lock). */
static void test_orphans_removed_by_next_writer(void **state)
{
	char *dir = tm_tempdir(), path[512], live[600];
	struct graft_output out;
	struct graft_err err = {0};
	int fds[2], status;
	pid_t pid;
	char c;
	(void)state;

	snprintf(path, sizeof(path), "%s/m.graft", dir);
	snprintf(live, sizeof(live), "%s/m.graft.tmpLive01", dir);
	touch(dir, "m.graft.tmpAb3xZ9");                /* orphans of m.graft */
	touch(dir, "m.graft.tmpQq7Rr2.old");
	touch(dir, "o.graft.tmpAb3xZ9");                /* another target's */
	touch(dir, "m.graft.tmpAb3");                   /* not a name graft makes */
	touch(dir, "m.graft.tmpAb3xZ9x");
	touch(dir, "m.graft.tmp-b3xZ9");
	assert_int_equal(pipe(fds), 0);
	if ((pid = fork()) == 0) {                      /* a writer that lives on */
		int fd = open(live, O_WRONLY | O_CREAT | O_EXCL, 0666);
		if (fd < 0 || flock(fd, LOCK_EX) < 0)
			_exit(1);
		(void)!write(fds[1], "w", 1);
		pause();
		_exit(2);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &c, 1), 1);
	assert_int_equal(graft_output_open(&out, path, &err), 0);
	assert_false(exists(dir, "m.graft.tmpAb3xZ9"));
	assert_false(exists(dir, "m.graft.tmpQq7Rr2.old"));
	assert_true(exists(dir, "o.graft.tmpAb3xZ9"));
	assert_true(exists(dir, "m.graft.tmpAb3"));
	assert_true(exists(dir, "m.graft.tmpAb3xZ9x"));
	assert_true(exists(dir, "m.graft.tmp-b3xZ9"));
	assert_true(exists(dir, "m.graft.tmpLive01"));  /* its writer holds it */
	graft_output_abort(&out);

	kill(pid, SIGKILL);                             /* now it is an orphan */
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(fds[0]);
	assert_int_equal(graft_output_open(&out, path, &err), 0);
	assert_int_equal(graft_write_all(out.fd, "whole", 5, &err), 0);
	assert_int_equal(graft_output_commit(&out, &err), 0);
	assert_false(exists(dir, "m.graft.tmpLive01"));
	assert_true(exists(dir, "m.graft"));
	assert_int_equal(count_entries(dir), 5);        /* m.graft and the four others */
	remove_tree(dir);
	free(dir);
}

static void test_commit_replaces_atomically(void **state)
{
	char *dir = tm_tempdir(), path[512];
	struct graft_output out;
	struct graft_err err = {0};
	size_t len;
	(void)state;

	snprintf(path, sizeof(path), "%s/model.graft", dir);
	FILE *f = fopen(path, "w");
	fputs("old", f);
	fclose(f);
	assert_int_equal(graft_output_open(&out, path, &err), 0);
	assert_int_equal(graft_write_all(out.fd, "new!", 4, &err), 0);
	uint8_t *b = tm_slurp(path, &len);
	assert_int_equal(len, 3);                       /* old file intact meanwhile */
	free(b);
	assert_int_equal(graft_output_commit(&out, &err), 0);
	b = tm_slurp(path, &len);
	assert_int_equal(len, 4);
	assert_memory_equal(b, "new!", 4);
	free(b);
	assert_int_equal(count_entries(dir), 1);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_mode & S_IRUSR);
	unlink(path);
	rmdir(dir);
	free(dir);
}

/* A model that cannot be renamed into place leaves the data file as it was. */
static void test_commit_pair_restores_data(void **state)
{
	char *dir = tm_tempdir(), data_path[512], model_path[512];
	struct graft_output data, model;
	struct graft_err err = {0};
	size_t len;
	(void)state;

	snprintf(data_path, sizeof(data_path), "%s/m.data", dir);
	snprintf(model_path, sizeof(model_path), "%s/m.onnx", dir);
	write_text_file(data_path, "old data");
	assert_int_equal(mkdir(model_path, 0755), 0);   /* rename onto a folder fails */
	assert_int_equal(graft_output_open(&data, data_path, &err), 0);
	assert_int_equal(graft_output_open(&model, model_path, &err), 0);
	assert_int_equal(graft_write_all(data.fd, "new", 3, &err), 0);
	assert_int_equal(graft_output_commit_pair(&data, &model, &err), GRAFT_EIO);
	assert_non_null(strstr(err.msg, "m.onnx: cannot rename"));
	uint8_t *b = tm_slurp(data_path, &len);
	assert_int_equal(len, 8);
	assert_memory_equal(b, "old data", 8);
	free(b);
	assert_int_equal(count_entries(dir), 2);        /* m.data and the folder, no temps */

	/* and with nothing in the way, both land */
	rmdir(model_path);
	assert_int_equal(graft_output_open(&data, data_path, &err), 0);
	assert_int_equal(graft_output_open(&model, model_path, &err), 0);
	assert_int_equal(graft_write_all(data.fd, "new", 3, &err), 0);
	assert_int_equal(graft_write_all(model.fd, "model", 5, &err), 0);
	if (graft_output_commit_pair(&data, &model, &err)) fail_msg("%s", err.msg);
	b = tm_slurp(data_path, &len);
	assert_int_equal(len, 3);
	free(b);
	assert_int_equal(count_entries(dir), 2);
	unlink(data_path);
	unlink(model_path);
	rmdir(dir);
	free(dir);
}

static void test_open_fails_cleanly(void **state)
{
	struct graft_output out;
	struct graft_err err = {0};
	(void)state;

	assert_int_equal(graft_output_open(&out, "/nonexistent-dir/m.graft", &err), GRAFT_EIO);
	assert_non_null(strstr(err.msg, "/nonexistent-dir/m.graft"));
	assert_null(graft_output_tmp_path(&out));
}

static void test_read_fd_whole_pipe(void **state)
{
	int p[2];
	void *buf;
	size_t len;
	struct graft_err err = {0};
	(void)state;

	assert_int_equal(pipe(p), 0);
	if (fork() == 0) {
		char chunk[4096];
		memset(chunk, 'z', sizeof(chunk));
		close(p[0]);
		for (int i = 0; i < 1000; i++)
			if (write(p[1], chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
				_exit(1);
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(graft_read_fd(p[0], &buf, &len, &err), 0);
	close(p[0]);
	assert_int_equal(len, 4096000);
	assert_int_equal(((char *)buf)[len - 1], 'z');
	free(buf);
}

/* Writes an .npy file (version 1.0) with header text h and nbytes zero bytes of data;
 * returns its path (free it). */
static char *npy_file(const char *h, size_t nbytes)
{
	char *path = strdup("/tmp/graft-npy-XXXXXX");
	int fd = mkstemp(path);
	size_t hl = strlen(h);
	uint8_t head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)hl, (uint8_t)(hl >> 8)};
	void *zeros = calloc(1, nbytes + 1);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, head, 10), 10);
	assert_int_equal(write(fd, h, hl), (ssize_t)hl);
	assert_int_equal(write(fd, zeros, nbytes), (ssize_t)nbytes);
	close(fd);
	free(zeros);
	return path;
}

/* .npy headers whose shape is no tensor, or disagrees with the data: a clear
 * GRAFT_EFORMAT, and no allocation of what the header claims. */
/* io_drop_pages lets a file mapping's pages go, in 64 KiB blocks but never past the
 * mapping: a one-page file mapped between anonymous pages (as a small dataset may lie
 * beside the heap) leaves them as they were (letting them go would zero them). */
static void test_drop_pages_stays_in_the_mapping(void **state)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), span = 3 * (64 << 10);
	char path[] = "/tmp/graft-drop-XXXXXX", buf[100];
	unsigned char *area = mmap(NULL, span, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = mkstemp(path);

	(void)state;
	assert_true(area != MAP_FAILED && fd >= 0);
	memset(area, 0xaa, span);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	unsigned char *file = area + span / 2;  /* a page inside the middle 64 KiB block */
	assert_true(mmap(file, page, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) == file);
	io_drop_pages(file, sizeof(buf), file + 10, 50);
	for (size_t i = 0; i < span; i++)
		if (i < span / 2 || i >= span / 2 + page)
			assert_int_equal(area[i], 0xaa);
	assert_int_equal(file[0], 'x');         /* read back from the file */
	munmap(area, span);
	close(fd);
	unlink(path);
}

static void test_npy_limits(void **state)
{
	const struct { const char *h; size_t nbytes; const char *expect; } bad[] = {
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }\n",
		 16, ".npy shape: dims [4611686018427387904,4] overflow"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4611686018427387904, 8), }\n",
		 0, ".npy shape: dims [0,4611686018427387904,8] overflow"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n",
		 16, "overflow"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3, -1), }\n", 12,
		 ".npy shape is malformed"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", 8,
		 ".npy data is 8 bytes, shape [3] of float needs 12"},
		{"{'descr': '<f8', 'fortran_order': False, 'shape': (1048576, 1048576), }\n", 8,
		 ".npy data is 8 bytes, shape [1048576,1048576] of double needs 8796093022208"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }\n", 4,
		 ".npy shape is malformed"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct graft_array a;
		struct graft_err err = {0};
		char *path = npy_file(bad[i].h, bad[i].nbytes);
		int rc = graft_array_read(&a, path, &err);
		if (rc != GRAFT_EFORMAT || !strstr(err.msg, bad[i].expect))
			fail_msg("case %zu: got %d '%s'", i, rc, err.msg);
		assert_null(a.data);
		unlink(path);
		free(path);
	}
	/* The same shape with its data reads. */
	struct graft_array a;
	struct graft_err err = {0};
	char *path = npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", 12);
	assert_int_equal(graft_array_read(&a, path, &err), 0);
	assert_int_equal(a.nbytes, 12);
	graft_array_release(&a);
	unlink(path);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abort_leaves_nothing),
		cmocka_unit_test(test_drop_pages_stays_in_the_mapping),
		cmocka_unit_test(test_kill_leaves_nothing),
		cmocka_unit_test(test_orphans_removed_by_next_writer),
		cmocka_unit_test(test_commit_replaces_atomically),
		cmocka_unit_test(test_commit_pair_restores_data),
		cmocka_unit_test(test_open_fails_cleanly),
		cmocka_unit_test(test_read_fd_whole_pipe),
		cmocka_unit_test(test_npy_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
