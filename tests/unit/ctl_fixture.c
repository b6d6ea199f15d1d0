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

#include "ctl_fixture.h"

int ctl_fx_setup(void **state)
{
	*state = unit_tmp_new(sizeof(struct ctl_fx));
	return *state ? 0 : -1;
}
