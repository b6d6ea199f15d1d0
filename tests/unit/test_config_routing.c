/*
 * test_config_routing: services/common/config.c, the [destination NAME],
 * [route NAME] and [routing] sections and the rate and enabled keys of
 * [cloud]: every key loaded, the defaults that depend on a destination's
 * type, every error with its FILE:LINE, and the --check-config printout
 * loading back into the same destinations and routes.
 *
 * Each test writes its files into its own mkdtemp directory, removed after.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The README's example. */
static const char example[] = "[receiver]\n"                            /* 1 */
			      "ae_title = EDGE\n"                       /* 2 */
			      "[cloud]\n"                               /* 3 */
			      "url = https://cloud.example/dicom-web\n" /* 4 */
			      "rate = 20Mbit\n"                         /* 5 */
			      "enabled = off\n"                         /* 6 */
			      "[destination ai-vendor]\n"               /* 7 */
			      "type = stow-rs\n"                        /* 8 */
			      "url = https://ai.example:8443/stow/\n"   /* 9 */
			      "auth = bearer\n"                         /* 10 */
			      "token_file = /etc/outpost/ai.token\n"    /* 11 */
			      "connections = 3\n"                       /* 12 */
			      "batch_max_instances = 7\n"               /* 13 */
			      "rate = 5Mbit\n"                          /* 14 */
			      "[destination mammo_ws]\n"                /* 15 */
			      "type = dicom\n"                          /* 16 */
			      "host = 10.1.2.30\n"                      /* 17 */
			      "port = 104\n"                            /* 18 */
			      "called_ae = MAMMO WS\n"                  /* 19 */
			      "timeout = 20\n"                          /* 20 */
			      "retry_max_delay = 600\n"                 /* 21 */
			      "enabled = no\n"                          /* 22 */
			      "[route everything]\n"                    /* 23 */
			      "when = calling_aet=*\n"                  /* 24 */
			      "to = cloud\n"                            /* 25 */
			      "[route head-ct]\n"                       /* 26 */
			      "when = calling_aet=CT_ER, Modality=CT, BodyPartExamined=HEAD\n"
			      "to = ai-vendor\n"        /* 28 */
			      "urgent = yes\n"          /* 29 */
			      "[route mammo]\n"         /* 30 */
			      "when = Modality=MG\n"    /* 31 */
			      "to = mammo_ws , cloud\n" /* 32 */
			      "[routing]\n"             /* 33 */
			      "default = none\n";       /* 34 */

static void assert_example(const op_config *c)
{
	const op_destination_config *ai = &c->destinations[0], *ws = &c->destinations[1];

	assert_int_equal(c->cloud.rate, 20000000);
	assert_int_equal(c->cloud.enabled, 0);
	assert_int_equal(c->n_destinations, 2);
	assert_string_equal(ai->name, "ai-vendor");
	assert_int_equal(ai->type, OP_DEST_STOW);
	assert_string_equal(ai->cloud.url, "https://ai.example:8443/stow/");
	assert_string_equal(ai->cloud.host, "ai.example");
	assert_int_equal(ai->cloud.port, 8443);
	assert_string_equal(ai->cloud.path, "/stow");
	assert_int_equal(ai->cloud.auth, OP_AUTH_BEARER);
	assert_string_equal(ai->cloud.token_file, "/etc/outpost/ai.token");
	assert_int_equal(ai->cloud.connections, 3);
	assert_int_equal(ai->cloud.batch_max_instances, 7);
	assert_int_equal(ai->cloud.batch_max_bytes, 64ULL << 20); /* [cloud]'s default */
	assert_int_equal(ai->cloud.rate, 5000000);
	assert_int_equal(ai->cloud.enabled, 1);
	/* [cloud]'s own url is not a destination's. */
	assert_string_equal(c->cloud.host, "cloud.example");

	assert_string_equal(ws->name, "mammo_ws");
	assert_int_equal(ws->type, OP_DEST_DICOM);
	assert_string_equal(ws->dicom.host, "10.1.2.30");
	assert_int_equal(ws->dicom.port, 104);
	assert_string_equal(ws->dicom.called_ae, "MAMMO WS");
	assert_string_equal(ws->dicom.calling_ae, "EDGE"); /* the receiver's */
	assert_int_equal(ws->cloud.connections, 1);        /* dicom's default */
	assert_int_equal(ws->cloud.timeout, 20);
	assert_int_equal(ws->cloud.retry_max_delay, 600);
	assert_int_equal(ws->cloud.rate, UINT64_MAX);
	assert_int_equal(ws->cloud.enabled, 0);

	assert_int_equal(c->n_routes, 3);
	assert_string_equal(c->routes[0].name, "everything");
	assert_string_equal(c->routes[0].when, "calling_aet=*");
	assert_int_equal(c->routes[0].n_to, 1);
	assert_string_equal(c->routes[0].to[0], "cloud");
	assert_int_equal(c->routes[0].urgent, 0);
	assert_string_equal(c->routes[1].name, "head-ct");
	assert_string_equal(c->routes[1].when,
			    "calling_aet=CT_ER, Modality=CT, BodyPartExamined=HEAD");
	assert_string_equal(c->routes[1].to[0], "ai-vendor");
	assert_int_equal(c->routes[1].urgent, 1);
	assert_int_equal(c->routes[2].n_to, 2);
	assert_string_equal(c->routes[2].to[0], "mammo_ws");
	assert_string_equal(c->routes[2].to[1], "cloud");
	assert_string_equal(c->routing.default_to, "");
}

static void test_config_routing_every_key(void **state)
{
	struct unit_config *f = *state;

	assert_int_equal(unit_config_load_text(f, example), 0);
	assert_example(&f->cfg);
	assert_int_equal(f->cfg.destinations[0].line, 7);
	assert_int_equal(f->cfg.destinations[1].line, 15);
	assert_int_equal(f->cfg.routes[0].line, 24);
	assert_int_equal(f->cfg.routes[1].line, 27);

	/* A dicom destination's explicit calling_ae and connections; type
	 * after the keys; a route naming a destination defined below it. */
	assert_int_equal(unit_config_load_text(f, "[route r]\n"
						  "to = pacs\n"
						  "when = source=10.0.0.0/8\n"
						  "[destination pacs]\n"
						  "host = pacs.example\n"
						  "port = 11112\n"
						  "called_ae = PACS\n"
						  "calling_ae = OUTPOST_2\n"
						  "connections = 4\n"
						  "type = dicom\n"
						  "[routing]\n"
						  "default = pacs\n"),
			 0);
	assert_string_equal(f->cfg.destinations[0].dicom.calling_ae, "OUTPOST_2");
	assert_int_equal(f->cfg.destinations[0].cloud.connections, 4);
	assert_string_equal(f->cfg.routing.default_to, "pacs");
}

static void test_config_routing_defaults(void **state)
{
	struct unit_config *f = *state;
	op_config c;

	op_config_defaults(&c);
	assert_int_equal(c.n_destinations, 0);
	assert_int_equal(c.n_routes, 0);
	assert_string_equal(c.routing.default_to, "cloud");
	assert_int_equal(c.cloud.rate, UINT64_MAX);
	assert_int_equal(c.cloud.enabled, 1);

	/* A stow-rs destination starts from [cloud]'s defaults, not from
	 * what [cloud] says. */
	assert_int_equal(unit_config_load_text(f, "[cloud]\nconnections = 9\n"
						  "[destination b]\ntype = stow-rs\n"
						  "url = https://b.example/\n"),
			 0);
	assert_int_equal(f->cfg.destinations[0].cloud.connections, 2);
	assert_int_equal(f->cfg.destinations[0].cloud.timeout, 60);
	assert_int_equal(f->cfg.destinations[0].cloud.enabled, 1);
	assert_string_equal(f->cfg.routing.default_to, "cloud");
}

struct bad {
	const char *text;
	int line;
	const char *what;
};

static const struct bad bad[] = {
	/* [cloud]'s new keys. */
	{ "[cloud]\nrate = fast\n", 2, "rate: 'fast' is not a rate" },
	{ "[cloud]\nenabled = maybe\n", 2, "enabled: 'maybe' is not on or off" },
	/* Names. */
	{ "[destination]\ntype = dicom\n", 1, "[destination] needs a name: [destination NAME]" },
	{ "[destination a b]\n", 1, "[destination a b]: a name is" },
	{ "[destination a.b]\n", 1, "a name is 1-32 letters" },
	{ "[destination abcdefghijklmnopqrstuvwxyz0123456]\n", 1, "a name is" },
	{ "[destination cloud]\ntype = dicom\n", 1, "cloud is the [cloud] section's name" },
	{ "[route a/b]\n", 1, "[route a/b]: a name is" },
	{ "[route  ]\nwhen = A=1\n", 1, "[route] needs a name" },
	{ "[destinations x]\n", 1, "unknown section [destinations x]" },
	{ "[destination x]\ntype = stow-rs\nurl = https://x/\n\n[destination x]\n", 5,
	  "[destination x] again (first on line 1)" },
	{ "[route r]\nwhen = A=1\nto = cloud\n[route r]\n", 4,
	  "[route r] again (first on line 1)" },
	/* Keys of a destination. */
	{ "[destination d]\ntype = ftp\n", 2, "type: 'ftp' is not stow-rs or dicom" },
	{ "[destination d]\nurl = https://d/\n", 1, "[destination d] needs type" },
	{ "[destination d]\ntype = stow-rs\nbogus = 1\n", 3,
	  "unknown key 'bogus' in [destination d]" },
	{ "[destination d]\ntype = stow-rs\n", 1, "(type = stow-rs) needs url" },
	{ "[destination d]\ntype = stow-rs\nurl = http://d/\n", 3, "url: 'http://d/'" },
	{ "[destination d]\ntype = stow-rs\nurl = https://d/\nconnections = 17\n", 4,
	  "connections: '17' is not a whole number from 1 to 16" },
	{ "[destination d]\ntype = stow-rs\nurl = https://d/\nauth = basic\n", 4,
	  "auth = basic needs username and password_file" },
	{ "[destination d]\ntype = stow-rs\nurl = https://d/\nclient_key = k.pem\n", 4,
	  "client_cert and client_key go together" },
	{ "[destination d]\ntype = stow-rs\nurl = https://d/\nhost = h\n", 4,
	  "host is not a key of a destination of type stow-rs" },
	{ "[destination d]\ncalled_ae = X\nurl = https://d/\ntype = stow-rs\n", 2,
	  "called_ae is not a key of a destination of type stow-rs" },
	{ "[destination d]\ntype = dicom\nhost = h\nport = 104\ncalled_ae = X\nurl = https://d/\n",
	  6, "url is not a key of a destination of type dicom" },
	{ "[destination d]\ntype = dicom\nhost = h\nport = 104\ncalled_ae = X\n"
	  "batch_max_bytes = 1M\n",
	  6, "batch_max_bytes is not a key of a destination of type dicom" },
	{ "[destination d]\ntype = dicom\nport = 104\ncalled_ae = X\n", 1,
	  "(type = dicom) needs host" },
	{ "[destination d]\ntype = dicom\nhost = h\ncalled_ae = X\n", 1,
	  "(type = dicom) needs port" },
	{ "[destination d]\ntype = dicom\nhost = h\nport = 104\n", 1,
	  "(type = dicom) needs called_ae" },
	{ "[destination d]\ntype = dicom\nhost =\n", 3, "host must not be empty" },
	{ "[destination d]\ntype = dicom\nport = 0\n", 3,
	  "port: '0' is not a whole number from 1 to 65535" },
	{ "[destination d]\ntype = dicom\nport = 65536\n", 3, "port: '65536'" },
	{ "[destination d]\ntype = dicom\ncalled_ae = SEVENTEEN_CHARS_AE\n", 3,
	  "called_ae: 'SEVENTEEN_CHARS_AE' is not an AE title" },
	{ "[destination d]\ntype = dicom\ncalling_ae = A\\B\n", 3,
	  "calling_ae: 'A\\B' is not an AE title" },
	{ "[destination d]\ntype = dicom\nconnections = 0\n", 3, "connections: '0'" },
	{ "[destination d]\ntype = dicom\ntimeout = 0\n", 3, "timeout: '0'" },
	{ "[destination d]\ntype = dicom\nretry_max_delay = x\n", 3, "retry_max_delay: 'x'" },
	{ "[destination d]\ntype = dicom\nrate = 1Zbit\n", 3, "rate: '1Zbit'" },
	{ "[destination d]\ntype = dicom\nenabled = 2\n", 3, "enabled: '2'" },
	/* Routes. */
	{ "[route r]\nto = cloud\n", 1, "[route r] needs when" },
	{ "[route r]\nwhen = Modality=CT\n", 1, "[route r] needs to" },
	{ "[route r]\nwhen =\n", 2, "when: no condition" },
	{ "[route r]\nwhen = Modality=CT,\n", 2, "when: an empty condition" },
	{ "[route r]\nwhen = Modality\n", 2, "when: 'Modality' is not key=value" },
	{ "[route r]\nwhen = Modal-ity=CT\n", 2, "when: 'Modal-ity' is not calling_aet" },
	{ "[route r]\nwhen = source=10.0.0.0/40\n", 2, "when: source: '10.0.0.0/40'" },
	{ "[route r]\nwhen = calling_aet=SEVENTEEN_CHARS_AE\n", 2,
	  "when: calling_aet: 'SEVENTEEN_CHARS_AE'" },
	{ "[route r]\nwhen = A=1\nto =\n", 3, "to: no destination" },
	{ "[route r]\nwhen = A=1\nto = cloud, cloud\n", 3, "to: 'cloud' twice" },
	{ "[route r]\nwhen = A=1\nto = a b\n", 3, "to: 'a b' is not a destination name" },
	{ "[route r]\nwhen = A=1\nto = cloud,a,b,c,d,e,f,g,h,i\n", 3,
	  "to: more than 9 destinations" },
	{ "[route r]\nwhen = A=1\n\nto = pacs\n[destination other]\ntype = stow-rs\n"
	  "url = https://o/\n",
	  4, "to: no destination named 'pacs'" },
	{ "[route r]\nwhen = A=1\nto = cloud\nurgent = maybe\n", 4,
	  "urgent: 'maybe' is not yes or no" },
	{ "[route r]\nwhen = A=1\nto = cloud\nbogus = 1\n", 4, "unknown key 'bogus' in [route r]" },
	/* [routing]. */
	{ "[routing]\n\ndefault = pacs\n", 3, "default: no destination named 'pacs'" },
	{ "[routing]\ndefault = a b\n", 2, "default: 'a b' is not a destination name" },
	{ "[routing]\ndefault = cloud\nother = 1\n", 3, "unknown key 'other' in [routing]" },
};

static void test_config_routing_errors(void **state)
{
	struct unit_config *f = *state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (unit_config_load_text(f, bad[i].text) != -EINVAL)
			fail_msg("accepted: %s", bad[i].text);
		unit_config_assert_error_at(f, bad[i].line, bad[i].what);
	}
}

static void test_config_routing_limits(void **state)
{
	struct unit_config *f = *state;
	char text[16384];
	size_t o = 0;

	/* OP_DEST_MAX destinations load; one more is refused at its header. */
	for (int i = 0; i <= OP_DEST_MAX; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o,
				      "[destination d%d]\ntype = stow-rs\nurl = https://d%d/\n", i,
				      i);
	assert_int_equal(unit_config_load_text(f, text), -EINVAL);
	unit_config_assert_error_at(f, 3 * OP_DEST_MAX + 1, "more than 8 [destination NAME]");
	text[o - strlen("[destination d8]\ntype = stow-rs\nurl = https://d8/\n")] = '\0';
	assert_int_equal(unit_config_load_text(f, text), 0);
	assert_int_equal(f->cfg.n_destinations, OP_DEST_MAX);
	assert_string_equal(f->cfg.destinations[OP_DEST_MAX - 1].name, "d7");

	/* The same for routes; a 32-character name is the longest. */
	o = 0;
	for (int i = 0; i <= OP_ROUTE_MAX; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o,
				      "[route r%d_abcdefghijklmnopqrstuvwxyzAB]\nwhen = A=1\nto = "
				      "cloud\n",
				      i + 10);
	assert_int_equal(unit_config_load_text(f, text), -EINVAL);
	unit_config_assert_error_at(f, 3 * OP_ROUTE_MAX + 1, "more than 32 [route NAME]");
	text[o - strlen("[route r42_abcdefghijklmnopqrstuvwxyzAB]\nwhen = A=1\nto = cloud\n")] =
		'\0';
	assert_int_equal(unit_config_load_text(f, text), 0);
	assert_int_equal(f->cfg.n_routes, OP_ROUTE_MAX);
	assert_int_equal(strlen(f->cfg.routes[0].name), OP_NAME_MAX);
}

static const char *print_file(struct unit_config *f, const op_config *cfg, const char *name)
{
	const char *path = unit_path(f->tmp.dir, name);
	FILE *file = fopen(path, "w");

	assert_non_null(file);
	op_config_print(cfg, file);
	assert_int_equal(fclose(file), 0);
	return path;
}

static void test_config_routing_round_trip(void **state)
{
	struct unit_config *f = *state;
	op_config back;
	char *text;
	size_t n;
	const char *path;

	assert_int_equal(unit_config_load_text(f, example), 0);
	path = print_file(f, &f->cfg, "printed.ini");
	text = unit_read_file(path, &n);
	assert_non_null(strstr(text, "[destination ai-vendor]\ntype = stow-rs\n"));
	assert_non_null(strstr(text, "[destination mammo_ws]\ntype = dicom\nhost = 10.1.2.30\n"));
	assert_non_null(strstr(text, "[route mammo]\nwhen = Modality=MG\nto = mammo_ws, cloud\n"
				     "urgent = no\n"));
	assert_non_null(strstr(text, "[routing]\ndefault = none\n"));
	/* A dicom destination prints only the keys it takes. */
	assert_null(strstr(strstr(text, "[destination mammo_ws]"), "batch_max_bytes"));
	assert_true(strstr(text, "[route everything]") < strstr(text, "[routing]"));
	test_free(text);

	f->err[0] = '\0';
	if (op_config_load(&back, path, f->err, sizeof(f->err)) != 0)
		fail_msg("the printout does not load: %s", f->err);
	assert_example(&back);

	/* The defaults print [routing] default = cloud, which loads back. */
	op_config_defaults(&f->cfg);
	path = print_file(f, &f->cfg, "defaults.ini");
	text = unit_read_file(path, &n);
	assert_non_null(strstr(text, "[routing]\ndefault = cloud\n"));
	assert_non_null(strstr(text, "rate = unlimited\nenabled = on\n"));
	test_free(text);
	assert_int_equal(op_config_load(&back, path, f->err, sizeof(f->err)), 0);
	assert_string_equal(back.routing.default_to, "cloud");
	assert_int_equal(back.n_destinations, 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, unit_config_setup, unit_tmp_teardown)
	const struct CMUnitTest tests[] = {
		T(test_config_routing_every_key),  T(test_config_routing_defaults),
		T(test_config_routing_errors),     T(test_config_routing_limits),
		T(test_config_routing_round_trip),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
