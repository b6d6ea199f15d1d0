/*
 * test_route: services/common/route.c, a route's `when`: the parse of
 * each kind of condition and of bad texts, the match of an association
 * (AE titles, source network), the attribute text for the DICOM matcher,
 * and the wildcard match.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/route.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void test_route_glob(void **state)
{
	(void)state;
	assert_true(op_route_glob("CT_ER", "CT_ER"));
	assert_true(op_route_glob("ct_er", "CT_ER"));
	assert_true(op_route_glob("CT*", "CT_ER"));
	assert_true(op_route_glob("CT*", "CT"));
	assert_true(op_route_glob("*", ""));
	assert_true(op_route_glob("*ER", "CT_ER"));
	assert_true(op_route_glob("C?_E?", "CT_ER"));
	assert_true(op_route_glob("*_*_*", "A_B_C"));
	assert_true(op_route_glob("a*b*c", "aXbYbZc"));
	assert_true(op_route_glob("**", "anything"));
	assert_false(op_route_glob("CT", "CT_ER"));
	assert_false(op_route_glob("CT_ER", "CT"));
	assert_false(op_route_glob("?", ""));
	assert_false(op_route_glob("C?", "C"));
	assert_false(op_route_glob("*ER", "CT_EX"));
	assert_false(op_route_glob("a*b*c", "aXbYbZ"));
	assert_false(op_route_glob("", "x"));
	assert_true(op_route_glob("", ""));
}

static void test_route_parse_kinds(void **state)
{
	op_route_cond c[OP_ROUTE_CONDS_MAX];
	char err[256];
	int n = -1;

	(void)state;
	assert_int_equal(op_route_parse_when(" calling_aet = CT_* ,called_aet=OUTPOST, "
					     "source=10.1.0.0/16, Modality=CT, "
					     "BodyPartExamined=HE?D",
					     c, OP_ROUTE_CONDS_MAX, &n, err, sizeof(err)),
			 0);
	assert_int_equal(n, 5);
	assert_int_equal(c[0].kind, OP_COND_CALLING_AET);
	assert_string_equal(c[0].key, "calling_aet");
	assert_string_equal(c[0].value, "CT_*");
	assert_int_equal(c[1].kind, OP_COND_CALLED_AET);
	assert_string_equal(c[1].value, "OUTPOST");
	assert_int_equal(c[2].kind, OP_COND_SOURCE);
	assert_int_equal(c[2].cidr.addr, 0x0a010000);
	assert_int_equal(c[2].cidr.mask, 0xffff0000);
	assert_int_equal(c[3].kind, OP_COND_ATTRIBUTE);
	assert_string_equal(c[3].key, "Modality");
	assert_string_equal(c[3].value, "CT");
	assert_int_equal(c[4].kind, OP_COND_ATTRIBUTE);
	assert_string_equal(c[4].value, "HE?D");

	/* An AE title value keeps its inner spaces. */
	assert_int_equal(op_route_parse_when("calling_aet=CT ONE", c, 4, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_string_equal(c[0].value, "CT ONE");
}

static void assert_refused(const char *when, int max, const char *why)
{
	op_route_cond c[OP_ROUTE_CONDS_MAX];
	char err[256];
	int n = 12345;

	if (op_route_parse_when(when, c, max, &n, err, sizeof(err)) != -EINVAL)
		fail_msg("'%s' was accepted", when);
	assert_int_equal(n, 12345); /* untouched on failure */
	if (!strstr(err, why))
		fail_msg("'%s': \"%s\" does not say \"%s\"", when, err, why);
}

static void test_route_parse_errors(void **state)
{
	(void)state;
	assert_refused("", OP_ROUTE_CONDS_MAX, "no condition");
	assert_refused("   ", OP_ROUTE_CONDS_MAX, "no condition");
	assert_refused("Modality=CT,", OP_ROUTE_CONDS_MAX, "empty condition");
	assert_refused("Modality=CT,,calling_aet=X", OP_ROUTE_CONDS_MAX, "empty condition");
	assert_refused("Modality", OP_ROUTE_CONDS_MAX, "'Modality' is not key=value");
	assert_refused("Modality=", OP_ROUTE_CONDS_MAX, "is not key=value");
	assert_refused("=CT", OP_ROUTE_CONDS_MAX, "is not key=value");
	assert_refused("Modal ity=CT", OP_ROUTE_CONDS_MAX, "'Modal ity' is not calling_aet");
	assert_refused("0010,0010=X", OP_ROUTE_CONDS_MAX, "is not key=value");
	assert_refused("1Modality=CT", OP_ROUTE_CONDS_MAX, "'1Modality'");
	assert_refused("Calling_aet=CT", OP_ROUTE_CONDS_MAX, "'Calling_aet'");
	assert_refused("calling_aet=SEVENTEEN_CHARS_AE", OP_ROUTE_CONDS_MAX,
		       "not an AE title pattern");
	assert_refused("called_aet=A\\B", OP_ROUTE_CONDS_MAX, "not an AE title pattern");
	assert_refused("source=10.1.0.0/33", OP_ROUTE_CONDS_MAX,
		       "source: '10.1.0.0/33' is not an IPv4");
	assert_refused("source=ct.example", OP_ROUTE_CONDS_MAX, "is not an IPv4");
	assert_refused("A=1, B=2, C=3", 2, "more than 2 conditions");
}

static void test_route_assoc_match(void **state)
{
	op_route_cond c[OP_ROUTE_CONDS_MAX];
	char err[256];
	int n;

	(void)state;
	assert_int_equal(op_route_parse_when("calling_aet=CT_*, called_aet=outpost, "
					     "source=10.1.0.0/16, Modality=CT",
					     c, OP_ROUTE_CONDS_MAX, &n, err, sizeof(err)),
			 0);
	assert_true(op_route_assoc_match(c, n, "CT_ER", "OUTPOST", "10.1.2.3"));
	assert_true(op_route_assoc_match(c, n, "ct_er", "Outpost", "10.1.255.255"));
	assert_false(op_route_assoc_match(c, n, "MR_ER", "OUTPOST", "10.1.2.3"));
	assert_false(op_route_assoc_match(c, n, "CT_ER", "OTHER", "10.1.2.3"));
	assert_false(op_route_assoc_match(c, n, "CT_ER", "OUTPOST", "10.2.0.1"));
	assert_false(op_route_assoc_match(c, n, "CT_ER", "OUTPOST", "not an address"));
	assert_false(op_route_assoc_match(c, n, "CT_ER", "OUTPOST", NULL));
	assert_false(op_route_assoc_match(c, n, NULL, "OUTPOST", "10.1.2.3"));

	/* Attribute conditions alone: every association may match. */
	assert_int_equal(
		op_route_parse_when("Modality=MG", c, OP_ROUTE_CONDS_MAX, &n, err, sizeof(err)), 0);
	assert_true(op_route_assoc_match(c, n, "ANY", "ANY", NULL));

	/* A single host. */
	assert_int_equal(op_route_parse_when("source=192.168.1.7", c, OP_ROUTE_CONDS_MAX, &n, err,
					     sizeof(err)),
			 0);
	assert_true(op_route_assoc_match(c, n, "A", "B", "192.168.1.7"));
	assert_false(op_route_assoc_match(c, n, "A", "B", "192.168.1.8"));
}

static void test_route_attribute_text(void **state)
{
	op_route_cond c[OP_ROUTE_CONDS_MAX];
	char err[256], text[256];
	int n;

	(void)state;
	assert_int_equal(op_route_parse_when("calling_aet=CT_ER, Modality=CT, source=10.0.0.0/8, "
					     "BodyPartExamined=HEAD",
					     c, OP_ROUTE_CONDS_MAX, &n, err, sizeof(err)),
			 0);
	op_route_attribute_text(c, n, text, sizeof(text));
	assert_string_equal(text, "Modality=CT, BodyPartExamined=HEAD");

	/* Cut to a short buffer, still terminated. */
	op_route_attribute_text(c, n, text, 8);
	assert_true(strlen(text) < 8);

	/* None. */
	assert_int_equal(
		op_route_parse_when("calling_aet=X", c, OP_ROUTE_CONDS_MAX, &n, err, sizeof(err)),
		0);
	snprintf(text, sizeof(text), "garbage");
	op_route_attribute_text(c, n, text, sizeof(text));
	assert_string_equal(text, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_glob),
		cmocka_unit_test(test_route_parse_kinds),
		cmocka_unit_test(test_route_parse_errors),
		cmocka_unit_test(test_route_assoc_match),
		cmocka_unit_test(test_route_attribute_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
