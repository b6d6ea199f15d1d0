/*
 * unit: helpers shared by the cmocka tests (see unit.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- a test's own directory ------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

void unit_rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int unit_mkdtemp(char *dir, size_t size, const char *name)
{
	snprintf(dir, size, "/tmp/%s.XXXXXX", name);
	return mkdtemp(dir) ? 0 : -1;
}

const char *unit_write_file(char *path, size_t size, const char *dir, const char *name,
			    const char *text)
{
	snprintf(path, size, "%s/%s", dir, name);
	unit_write_bytes(path, text, strlen(text));
	return path;
}

void unit_write_bytes(const char *path, const void *data, size_t len)
{
	FILE *out = fopen(path, "wb");

	assert_non_null(out);
	assert_int_equal(fwrite(data, 1, len, out), len);
	assert_int_equal(fclose(out), 0);
}

int unit_stderr_off(void)
{
	int saved, null_fd;

	if (getenv("OUTPOST_TEST_VERBOSE"))
		return -1;
	fflush(stderr);
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	saved = dup(STDERR_FILENO);
	if (null_fd >= 0 && saved >= 0)
		dup2(null_fd, STDERR_FILENO);
	if (null_fd >= 0)
		close(null_fd);
	return saved;
}

void unit_stderr_restore(int saved)
{
	if (saved < 0)
		return;
	dup2(saved, STDERR_FILENO);
	close(saved);
}

char *unit_read_file(const char *path, size_t *len)
{
	struct stat sb;
	char *text;
	FILE *in;

	assert_int_equal(stat(path, &sb), 0);
	text = test_calloc(1, (size_t)sb.st_size + 1);
	assert_non_null(text);
	in = fopen(path, "rb");
	assert_non_null(in);
	assert_int_equal(fread(text, 1, (size_t)sb.st_size, in), (size_t)sb.st_size);
	fclose(in);
	if (len)
		*len = (size_t)sb.st_size;
	return text;
}

void unit_assert_file(const char *path, const char *text)
{
	size_t len;
	char *got = unit_read_file(path, &len);

	if (len != strlen(text) || memcmp(got, text, len) != 0) {
		print_error("%s holds \"%s\" (%zu bytes), not \"%s\"\n", path, got, len, text);
		test_free(got);
		fail();
	}
	test_free(got);
}

const char *unit_path(const char *dir, const char *name)
{
	static char paths[16][PATH_MAX + 64];
	static unsigned next;
	char *path = paths[next++ % 16];

	snprintf(path, sizeof(paths[0]), "%s/%s", dir, name);
	return path;
}

void *unit_tmp_new(size_t size)
{
	struct unit_tmp *t = calloc(1, size < sizeof(*t) ? sizeof(*t) : size);

	if (!t)
		return NULL;
	if (unit_mkdtemp(t->dir, sizeof(t->dir), program_invocation_short_name) < 0) {
		free(t);
		return NULL;
	}
	return t;
}

void unit_tmp_free(void *fx)
{
	struct unit_tmp *t = fx;

	if (!t)
		return;
	unit_rm_tree(t->dir);
	free(t);
}

int unit_tmp_setup(void **state)
{
	*state = unit_tmp_new(sizeof(struct unit_tmp));
	return *state ? 0 : -1;
}

int unit_tmp_teardown(void **state)
{
	unit_release_all(NULL);
	unit_tmp_free(*state);
	return 0;
}

const char *unit_tmp_write(struct unit_tmp *t, const char *name, const char *text)
{
	return unit_write_file(t->path, sizeof(t->path), t->dir, name, text);
}

/* --- a reader on another thread ---------------------------------------------------- */

static void *read_to_end(void *arg)
{
	struct unit_reader *r = arg;
	ssize_t n;

	while (r->len < r->cap && (n = read(r->fd, r->buf + r->len, r->cap - r->len)) > 0)
		r->len += (size_t)n;
	return NULL;
}

void unit_reader_start(struct unit_reader *r, int fd, size_t cap)
{
	r->fd = fd;
	r->buf = test_malloc(cap ? cap : 1);
	r->len = 0;
	r->cap = cap;
	assert_int_equal(pthread_create(&r->thread, NULL, read_to_end, r), 0);
}

size_t unit_reader_join(struct unit_reader *r)
{
	assert_int_equal(pthread_join(r->thread, NULL), 0);
	return r->len;
}

/* --- tests/unit/data ------------------------------------------------------------ */

static char data_dir[PATH_MAX];

/* Is DIR SUFFIX the data directory (it has the README)? Then it becomes
 * data_dir. */
static int use_dir(const char *dir, const char *suffix)
{
	char cand[PATH_MAX], probe[PATH_MAX + 16];
	struct stat sb;
	int n = snprintf(cand, sizeof(cand), "%s%s", dir, suffix);

	if (n < 0 || (size_t)n >= sizeof(cand))
		return 0;
	n = snprintf(probe, sizeof(probe), "%s/README", cand);
	if (n < 0 || (size_t)n >= sizeof(probe) || stat(probe, &sb) != 0)
		return 0;
	memcpy(data_dir, cand, strlen(cand) + 1);
	return 1;
}

static int find_data_dir(void)
{
	char exe[PATH_MAX], src[] = __FILE__;
	const char *env = getenv("OUTPOST_TEST_DATA");
	ssize_t n;

	if (env && use_dir(env, ""))
		return 0;
	if (use_dir(dirname(src), "/data"))
		return 0;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -1;
	exe[n] = '\0';
	for (char *dir = dirname(exe); strcmp(dir, "/") != 0; dir = dirname(dir))
		if (use_dir(dir, "/tests/unit/data"))
			return 0;
	return -1;
}

const char *unit_data(const char *name)
{
	if (!data_dir[0] && find_data_dir() < 0)
		fail_msg("tests/unit/data not found (set OUTPOST_TEST_DATA)");
	return unit_path(data_dir, name);
}

/* --- what a test holds ----------------------------------------------------------- */

static struct held {
	void *p;
	unit_free_fn *fn;
} * held;
static size_t n_held, held_cap;

void *unit_hold(void *p, unit_free_fn *fn)
{
	assert_non_null(p);
	if (n_held == held_cap) {
		size_t cap = held_cap ? 2 * held_cap : 64;
		struct held *bigger = realloc(held, cap * sizeof(*held));

		if (!bigger) {
			(fn ? fn : free)(p);
			fail_msg("unit_hold: out of memory");
		}
		held = bigger;
		held_cap = cap;
	}
	held[n_held++] = (struct held){ p, fn ? fn : free };
	return p;
}

void unit_release(void *p)
{
	if (!p)
		return;
	for (size_t i = n_held; i-- > 0;)
		if (held[i].p == p) {
			unit_free_fn *fn = held[i].fn;

			memmove(&held[i], &held[i + 1], (n_held - i - 1) * sizeof(*held));
			n_held--;
			fn(p);
			return;
		}
	fail_msg("unit_release: %p is not held", p);
}

int unit_release_all(void **state)
{
	(void)state;
	while (n_held > 0) {
		n_held--;
		held[n_held].fn(held[n_held].p);
	}
	free(held);
	held = NULL;
	held_cap = 0;
	return 0;
}
