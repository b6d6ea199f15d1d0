/*
 * unit: helpers shared by the cmocka tests (tests/unit/test_*.c), included
 * after <cmocka.h>: a test's own directory and the files in it, the
 * fixtures of tests/unit/data, a reader on another thread, and what a test
 * holds until its teardown.
 *
 * unit.c is a fixture object, linked into every unit test (as is every
 * file of tests/unit whose name does not start with test_): it uses libc
 * and cmocka only; unit_config.c, another, only the common layer, which
 * every test links. Helpers that need a higher layer (mbedTLS, http.c, stow.c)
 * are header-only (unit_tls.h, unit_http.h, unit_stow.h): the tests of the
 * common layer could not link them.
 *
 * The functions that can fail a test do so with cmocka's assertions.
 */
#ifndef OP_UNIT_H
#define OP_UNIT_H

#include <pthread.h>
#include <stddef.h>

/* --- a test's own directory ------------------------------------------------- */

/* Removes a test's directory and everything in it. */
void unit_rm_tree(const char *dir);

/* A test's own directory, /tmp/NAME.XXXXXX, into dir. 0, or -1. */
int unit_mkdtemp(char *dir, size_t size, const char *name);

/* Writes text to DIR/name (cmocka asserts); returns the path, written
 * into path. */
const char *unit_write_file(char *path, size_t size, const char *dir, const char *name,
			    const char *text);

/* Writes len bytes of data to path (created or truncated). */
void unit_write_bytes(const char *path, const void *data, size_t len);

/* The whole of path, NUL-terminated, its length in *len (NULL: not
 * wanted). From test_malloc: test_free it (cmocka frees it when the test
 * fails). */
char *unit_read_file(const char *path, size_t *len);

/* Fails the test unless path holds text, exactly. */
void unit_assert_file(const char *path, const char *text);

/* DIR/name, in one of 16 buffers that the next calls reuse in turn. */
const char *unit_path(const char *dir, const char *name);

/*
 * The fixture of a test that writes files: its own mkdtemp directory,
 * /tmp/PROGRAM.XXXXXX (PROGRAM: the test binary's name), and the last path
 * unit_tmp_write() made in it. A test whose fixture holds more puts this
 * first in its own struct and makes it with unit_tmp_new().
 */
struct unit_tmp {
	char dir[64];
	char path[128];
};

/* size bytes (at least a struct unit_tmp, which they start with), zeroed,
 * and the directory made; NULL when either fails. */
void *unit_tmp_new(size_t size);

/* Removes the directory of fx (made by unit_tmp_new) and frees fx. NULL:
 * nothing. */
void unit_tmp_free(void *fx);

/* cmocka setup for a test whose state is a struct unit_tmp. */
int unit_tmp_setup(void **state);

/* cmocka teardown for a fixture made by unit_tmp_new (whatever its size):
 * releases what the test holds (unit_release_all), removes the directory
 * and frees the fixture. */
int unit_tmp_teardown(void **state);

/* Writes text to t's DIR/name; returns the path (t->path). */
const char *unit_tmp_write(struct unit_tmp *t, const char *name, const char *text);

/* --- noise on stderr ---------------------------------------------------------------- */

/*
 * Sends stderr to /dev/null until unit_stderr_restore(): DCMTK logs each
 * oddity of a broken file there. Nothing is dropped when
 * OUTPOST_TEST_VERBOSE is set. cmocka's own messages go to stdout and are
 * not affected. Returns what unit_stderr_restore() takes.
 */
int unit_stderr_off(void);

void unit_stderr_restore(int saved);

/* --- a reader on another thread ---------------------------------------------------- */

/* Reads fd until its end, or cap bytes, into buf, on a thread of its own:
 * the other end of a pipe or socket that a test writes more to than the
 * kernel buffers hold. */
struct unit_reader {
	int fd;
	char *buf; /* from test_malloc: test_free it */
	size_t len, cap;
	pthread_t thread;
};

void unit_reader_start(struct unit_reader *r, int fd, size_t cap);

/* Waits for the reader to stop; returns how many bytes it read. */
size_t unit_reader_join(struct unit_reader *r);

/* --- tests/unit/data ------------------------------------------------------------ */

/*
 * The path of tests/unit/data/name, in one of unit_path()'s buffers. The
 * directory is $OUTPOST_TEST_DATA, else tests/unit/data from the working
 * directory (make runs the tests from the repository root), else found by
 * walking up from the test binary (build/tests/, build/asan/tests/). Fails
 * the test when there is none.
 */
const char *unit_data(const char *name);

/* --- what a test holds ----------------------------------------------------------- */

/* What frees a held pointer. */
typedef void unit_free_fn(void *p);

/*
 * Holds p until unit_release(p), or until the test's teardown calls
 * unit_release_all(): memory and handles of a test that fails half-way are
 * freed all the same (else the ASan run adds leaks to the failure). fn
 * frees p (NULL: free). Fails the test when p is NULL. Returns p.
 */
void *unit_hold(void *p, unit_free_fn *fn);

/* Frees p (held, or NULL) now, with its function. */
void unit_release(void *p);

/* Frees all that is held, the last held first. A cmocka teardown (state
 * is not looked at). */
int unit_release_all(void **state);

#endif
