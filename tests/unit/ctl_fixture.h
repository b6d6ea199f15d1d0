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

#include "unit.h"

struct ctl_fx {
	struct unit_tmp t; /* t.dir: the test's; t.path: a file or a socket in it */
	char err[1024];    /* the error text of the call under test */
};

/* cmocka's setup: *state becomes a zeroed struct ctl_fx whose directory
 * exists. 0, or -1 (the test is not run). */
int ctl_fx_setup(void **state);

/* cmocka's teardown: unit_tmp_teardown (the directory, all in it, and
 * the fixture). */
#define ctl_fx_teardown unit_tmp_teardown

#endif
