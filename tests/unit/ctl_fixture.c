/*
 * ctl_fixture: the tests of outpostctl's modules, each in a directory of
 * its own (ctl_fixture.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <stdlib.h>

#include "ctl_fixture.h"

int ctl_fx_setup(void **state)
{
	struct ctl_fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (unit_mkdtemp(f->dir, sizeof(f->dir), "test_ctl") < 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

int ctl_fx_teardown(void **state)
{
	struct ctl_fx *f = *state;

	unit_rm_tree(f->dir);
	free(f);
	return 0;
}
