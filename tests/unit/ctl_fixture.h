/*
 * ctl_fixture: what the tests of outpostctl's modules (tests/unit/
 * test_ctl*.c) share: a directory of its own for each test, removed after
 * it, and room for the path and the error text of the call under test.
 *
 * ctl_fixture.c is linked into every unit test (the Makefile links each
 * file of tests/unit/ that is not a test into all of them): it needs
 * nothing beyond libc and cmocka.
 */
#ifndef OP_CTL_FIXTURE_H
#define OP_CTL_FIXTURE_H

struct ctl_fx {
	char dir[64];   /* /tmp/test_ctl.XXXXXX */
	char path[128]; /* a file or a socket in dir */
	char err[1024]; /* the error text of the call under test */
};

/* cmocka's setup: *state becomes a zeroed struct ctl_fx whose directory
 * exists. 0, or -1 (the test is not run). */
int ctl_fx_setup(void **state);

/* cmocka's teardown: removes the directory, all in it, and the fixture. */
int ctl_fx_teardown(void **state);

#endif
