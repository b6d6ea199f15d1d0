/*
 * test_file: services/common/file.c, whole files read and written so that
 * they survive a power cut: op_read_all up to its limit (and -EFBIG past
 * it, even from an endless source), op_write_all through a pipe, the
 * directory fsync, op_dirname's cases, op_rename_durable within and across
 * directories, and op_file_write's content and mode (whatever the umask or
 * an older file had).
 *
 * What a power cut would lose cannot be seen from here (the image tests
 * cut the power under qemu); these check that each call does what it says
 * and fails as it says. Each test works in its own mkdtemp directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"

/* len bytes of a pattern with NULs in it, held until the teardown. */
static char *pattern(size_t len)
{
	char *p = unit_hold(malloc(len ? len : 1), NULL);

	for (size_t i = 0; i < len; i++)
		p[i] = (char)(i % 251);
	return p;
}

static int open_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* --- op_read_all ------------------------------------------------------------------ */

/* Sizes on either side of the first buffer (4096) and of its doublings,
 * each read whole with a limit of exactly its size. */
static void test_file_read_all(void **state)
{
	static const size_t sizes[] = { 0, 1, 4095, 4096, 4097, 8192, 8193, 100000 };
	struct unit_tmp *t = *state;
	const char *path = unit_path(t->dir, "data");

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *want = pattern(sizes[i]), *got = NULL;
		size_t len = 12345;
		int fd;

		unit_write_bytes(path, want, sizes[i]);
		fd = open_read(path);
		assert_int_equal(op_read_all(fd, sizes[i], &got, &len), 0);
		close(fd);
		unit_hold(got, NULL);
		assert_int_equal(len, sizes[i]);
		assert_memory_equal(got, want, sizes[i]);
		assert_int_equal(got[len], '\0'); /* terminated, not counted */
		unit_release(got);
		unit_release(want);
	}
}

/* One byte over the limit is -EFBIG, and nothing is handed out. */
static void test_file_read_all_limit(void **state)
{
	static const size_t sizes[] = { 1, 100, 4096, 4097, 5000, 100000 };
	struct unit_tmp *t = *state;
	const char *path = unit_path(t->dir, "data");

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *got = NULL;
		size_t len = 12345;
		int fd;

		unit_write_bytes(path, pattern(sizes[i]), sizes[i]);
		fd = open_read(path);
		assert_int_equal(op_read_all(fd, sizes[i] - 1, &got, &len), -EFBIG);
		close(fd);
		assert_null(got);
		assert_int_equal(len, 12345);
	}
}

/* An endless source: the read stops soon after the limit, not at the end
 * of memory. */
static void test_file_read_all_endless(void **state)
{
	char *got = NULL;
	size_t len = 0;
	int fd = open_read("/dev/zero");

	(void)state;
	assert_int_equal(op_read_all(fd, 1 << 20, &got, &len), -EFBIG);
	close(fd);
	assert_null(got);
}

static void test_file_read_all_fails(void **state)
{
	struct unit_tmp *t = *state;
	char *got = NULL;
	size_t len = 0;
	int fd;

	assert_int_equal(op_read_all(-1, 100, &got, &len), -EBADF);
	fd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(op_read_all(fd, 100, &got, &len), -EISDIR);
	close(fd);
	fd = open(unit_tmp_write(t, "w", ""), O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(op_read_all(fd, 100, &got, &len), -EBADF);
	close(fd);
	assert_null(got);
}

/* --- op_write_all ----------------------------------------------------------------- */

static void test_file_write_all(void **state)
{
	enum { BIG = 4 << 20 }; /* far more than a pipe holds */
	struct unit_tmp *t = *state;
	const char *path = unit_path(t->dir, "out");
	char *want = pattern(BIG);
	struct unit_reader r;
	int fd, p[2];
	char *got;
	size_t len;

	/* A file. */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(op_write_all(fd, want, 100000), 0);
	assert_int_equal(op_write_all(fd, "", 0), 0);
	close(fd);
	got = unit_read_file(path, &len);
	assert_int_equal(len, 100000);
	assert_memory_equal(got, want, 100000);
	test_free(got);

	/* A pipe, read by another thread as it fills. */
	assert_int_equal(pipe(p), 0);
	unit_reader_start(&r, p[0], BIG);
	assert_int_equal(op_write_all(p[1], want, BIG), 0);
	close(p[1]);
	assert_int_equal(unit_reader_join(&r), BIG);
	close(p[0]);
	assert_memory_equal(r.buf, want, BIG);
	test_free(r.buf);
}

static void test_file_write_all_fails(void **state)
{
	int p[2];

	(void)state;
	assert_int_equal(op_write_all(-1, "x", 1), -EBADF);
	/* Nobody reads: -EPIPE (SIGPIPE is ignored, see main). */
	assert_int_equal(pipe(p), 0);
	close(p[0]);
	assert_int_equal(op_write_all(p[1], "x", 1), -EPIPE);
	close(p[1]);
}

/* --- op_fsync_dir, op_dirname ---------------------------------------------------- */

static void test_file_fsync_dir(void **state)
{
	struct unit_tmp *t = *state;

	assert_int_equal(op_fsync_dir(t->dir), 0);
	assert_int_equal(op_fsync_dir("/"), 0);
	assert_int_equal(op_fsync_dir(unit_path(t->dir, "absent")), -ENOENT);
	assert_int_equal(op_fsync_dir(unit_tmp_write(t, "file", "x")), -ENOTDIR);
}

static void test_file_dirname(void **state)
{
	static const struct {
		const char *path, *dir;
	} cases[] = {
		{ "a/b/c", "a/b" }, { "/var/lib/outpost/outpost.ini", "/var/lib/outpost" },
		{ "/c", "/" },      { "/", "/" },
		{ "c", "." },       { "", "." },
		{ "./c", "." },     { "../c", ".." },
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(out, 'Z', sizeof(out));
		op_dirname(cases[i].path, out, sizeof(out));
		if (strcmp(out, cases[i].dir) != 0)
			fail_msg("op_dirname(\"%s\") = \"%s\", want \"%s\"", cases[i].path, out,
				 cases[i].dir);
	}
	/* Cut to the buffer, terminated. */
	memset(out, 'Z', sizeof(out));
	op_dirname("/abcdef/x", out, 4);
	assert_string_equal(out, "/ab");
	assert_int_equal(out[4], 'Z');
}

/* --- op_rename_durable ----------------------------------------------------------- */

/* from is gone, and to holds text. */
static void assert_moved(const char *from, const char *to, const char *text)
{
	assert_int_equal(access(from, F_OK), -1);
	unit_assert_file(to, text);
}

static void test_file_rename_durable(void **state)
{
	struct unit_tmp *t = *state;
	const char *from = unit_path(t->dir, "from"), *to = unit_path(t->dir, "to");

	unit_write_bytes(from, "first", 5);
	unit_write_bytes(to, "an older file", 13);

	/* In one directory, over an older file. */
	assert_int_equal(op_rename_durable(from, to), 0);
	assert_moved(from, to, "first");
}

/* From one directory to another: the file moves whole; a directory too. */
static void test_file_rename_durable_across(void **state)
{
	struct unit_tmp *t = *state;
	const char *a = unit_path(t->dir, "a"), *b = unit_path(t->dir, "b");
	const char *from = unit_path(a, "bundle.part"), *to = unit_path(b, "bundle.raucb");
	const char *tree = unit_path(t->dir, "tree"), *moved = unit_path(b, "tree");

	assert_int_equal(mkdir(a, 0755), 0);
	assert_int_equal(mkdir(b, 0755), 0);
	unit_write_bytes(from, "bundle", 6);
	assert_int_equal(op_rename_durable(from, to), 0);
	assert_moved(from, to, "bundle");

	/* A directory and what is in it (the console's upload folder). */
	assert_int_equal(mkdir(tree, 0755), 0);
	unit_write_bytes(unit_path(tree, "site.ini"), "[log]\n", 6);
	assert_int_equal(op_rename_durable(tree, moved), 0);
	assert_moved(tree, unit_path(moved, "site.ini"), "[log]\n");
}

static void test_file_rename_durable_fails(void **state)
{
	struct unit_tmp *t = *state;
	const char *to = unit_tmp_write(t, "to", "kept");

	assert_int_equal(op_rename_durable(unit_path(t->dir, "absent"), to), -ENOENT);
	assert_int_equal(op_rename_durable(to, unit_path(t->dir, "no/such/dir")), -ENOENT);
	unit_assert_file(to, "kept");
}

/* --- op_file_write ---------------------------------------------------------------- */

/* The content, and the mode asked for whatever the umask. */
static void test_file_write_mode(void **state)
{
	static const struct {
		mode_t umask, mode;
	} cases[] = {
		{ 022, 0640 }, { 077, 0644 }, { 0, 0600 }, { 077, 0666 }, { 0777, 0400 },
	};
	struct unit_tmp *t = *state;
	char *text;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = unit_path(t->dir, i % 2 ? "odd.ini" : "even.ini");
		mode_t saved = umask(cases[i].umask);
		int rc = op_file_write(path, "[log]\nlevel = warn\n", 19, cases[i].mode);

		umask(saved);
		assert_int_equal(rc, 0);
		assert_int_equal(mode_of(path), cases[i].mode);
		unlink(path);
	}
	assert_int_equal(op_file_write(unit_path(t->dir, "site.ini"), "a\0b", 3, 0640), 0);
	text = unit_read_file(unit_path(t->dir, "site.ini"), NULL);
	assert_memory_equal(text, "a\0b", 4);
	test_free(text);
}

/* An older file is replaced: shorter content leaves nothing of the old,
 * and its mode is the one asked for. */
static void test_file_write_over(void **state)
{
	struct unit_tmp *t = *state;
	const char *path = unit_tmp_write(t, "site.ini", "a longer, older content\n");

	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(op_file_write(path, "new\n", 4, 0644), 0);
	unit_assert_file(path, "new\n");
	assert_int_equal(mode_of(path), 0644);
}

/* Not through a symbolic link (O_NOFOLLOW), nor where there is no
 * directory. */
static void test_file_write_fails(void **state)
{
	struct unit_tmp *t = *state;
	const char *target = unit_tmp_write(t, "target", "kept");
	const char *link = unit_path(t->dir, "link");

	assert_int_equal(symlink("target", link), 0);
	assert_int_equal(op_file_write(link, "x", 1, 0644), -ELOOP);
	unit_assert_file(target, "kept");
	assert_int_equal(op_file_write(unit_path(t->dir, "no/such/file"), "x", 1, 0644), -ENOENT);
	assert_int_equal(op_file_write(t->dir, "x", 1, 0644), -EISDIR);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, unit_tmp_setup, unit_tmp_teardown)
	const struct CMUnitTest tests[] = {
		T(test_file_read_all),
		T(test_file_read_all_limit),
		T(test_file_read_all_endless),
		T(test_file_read_all_fails),
		T(test_file_write_all),
		T(test_file_write_all_fails),
		T(test_file_fsync_dir),
		T(test_file_dirname),
		T(test_file_rename_durable),
		T(test_file_rename_durable_across),
		T(test_file_rename_durable_fails),
		T(test_file_write_mode),
		T(test_file_write_over),
		T(test_file_write_fails),
	};
#undef T

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
