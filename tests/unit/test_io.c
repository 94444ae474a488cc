/* test_io.c: outputs that appear only when complete, and whole-input reads. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <cmocka.h>

#include "internal.h"
#include "testmodel.h"

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
	assert_int_equal(count_entries(dir), 1);        /* the temporary */
	graft_output_abort(&out);
	graft_output_abort(&out);                       /* twice is harmless */
	assert_int_equal(count_entries(dir), 0);
	rmdir(dir);
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

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
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
	write_text(data_path, "old data");
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abort_leaves_nothing),
		cmocka_unit_test(test_commit_replaces_atomically),
		cmocka_unit_test(test_commit_pair_restores_data),
		cmocka_unit_test(test_open_fails_cleanly),
		cmocka_unit_test(test_read_fd_whole_pipe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
