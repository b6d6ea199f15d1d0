/*
 * test_config_peer: services/common/config.c, the [peer NAME] sections
 * (the DICOM nodes C-MOVE results and Storage Commitment reports go to):
 * every key loaded, every error with its FILE:LINE, the limit on their
 * number, op_config_peer_by_aet over peers and dicom destinations, and the
 * --check-config printout loading back into the same peers.
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

/* Two peers, a dicom destination and a stow-rs one. */
static const char example[] = "[receiver]\n"                         /* 1 */
			      "ae_title = EDGE\n"                    /* 2 */
			      "[peer reading-ws]\n"                  /* 3 */
			      "ae_title = READ WS\n"                 /* 4 */
			      "host = 10.1.2.40\n"                   /* 5 */
			      "port = 104\n"                         /* 6 */
			      "[destination pacs]\n"                 /* 7 */
			      "type = dicom\n"                       /* 8 */
			      "host = pacs.hospital\n"               /* 9 */
			      "port = 11112\n"                       /* 10 */
			      "called_ae = PACS\n"                   /* 11 */
			      "[destination ai]\n"                   /* 12 */
			      "type = stow-rs\n"                     /* 13 */
			      "url = https://ai.example/dicom-web\n" /* 14 */
			      "[peer ris_1]\n"                       /* 15 */
			      "port = 65535\n"                       /* 16 */
			      "host = ris.hospital\n"                /* 17 */
			      "ae_title = RIS\n";                    /* 18 */

static void assert_example(const op_config *c)
{
	const op_peer_config *ws = &c->peers[0], *ris = &c->peers[1];

	assert_int_equal(c->n_peers, 2);
	assert_string_equal(ws->name, "reading-ws");
	assert_string_equal(ws->ae_title, "READ WS");
	assert_string_equal(ws->host, "10.1.2.40");
	assert_int_equal(ws->port, 104);
	assert_string_equal(ris->name, "ris_1");
	assert_string_equal(ris->ae_title, "RIS");
	assert_string_equal(ris->host, "ris.hospital");
	assert_int_equal(ris->port, 65535);
	assert_int_equal(c->n_destinations, 2);
}

static void test_config_peer_every_key(void **state)
{
	struct unit_config *f = *state;

	assert_int_equal(unit_config_load_text(f, example), 0);
	assert_string_equal(f->err, "");
	assert_example(&f->cfg);
	assert_int_equal(f->cfg.peers[0].line, 3);
	assert_int_equal(f->cfg.peers[1].line, 15);

	/* A load starts from the defaults: no peer of the last file stays. */
	assert_int_equal(unit_config_load_text(f, "[receiver]\nport = 104\n"), 0);
	assert_int_equal(f->cfg.n_peers, 0);
}

/* Each refused file, the line named and words of the message. */
static const struct {
	const char *text;
	int line;
	const char *what;
} bad[] = {
	{ "[peer]\nae_title = A\n", 1, "[peer] needs a name: [peer NAME]" },
	{ "[peer a b]\n", 1, "[peer a b]: a name is 1-32 letters, digits, - and _" },
	{ "[peers]\n", 1, "unknown section [peers]" },
	{ "[peer ws]\nhost = h\nport = 104\n", 1, "[peer ws] needs ae_title" },
	{ "[peer ws]\nae_title = WS\nport = 104\n", 1, "[peer ws] needs host" },
	{ "[peer ws]\nae_title = WS\nhost = h\n", 1, "[peer ws] needs port" },
	{ "[peer ws]\nae_title = WS\nhost = h\nport = 104\n\n[peer ws]\n", 6,
	  "[peer ws] again (first on line 1)" },
	{ "[peer ws]\nae_title = WS\nhost = h\nport = 104\nbogus = 1\n", 5,
	  "unknown key 'bogus' in [peer ws]" },
	{ "[peer ws]\ncalled_ae = WS\n", 2, "unknown key 'called_ae' in [peer ws]" },
	{ "[peer ws]\nport = 0\n", 2, "port: '0' is not a whole number from 1 to 65535" },
	{ "[peer ws]\nport = 65536\n", 2, "port: '65536'" },
	{ "[peer ws]\nport = 104x\n", 2, "port: '104x'" },
	{ "[peer ws]\nport =\n", 2, "port: ''" },
	{ "[peer ws]\nae_title = SEVENTEEN_CHARS_AE\n", 2,
	  "ae_title: 'SEVENTEEN_CHARS_AE' is not an AE title" },
	{ "[peer ws]\nae_title = A\\B\n", 2, "ae_title: 'A\\B' is not an AE title" },
	{ "[peer ws]\nae_title =\n", 2, "ae_title: '' is not an AE title" },
	{ "[peer ws]\nhost =\n", 2, "host must not be empty" },
	/* Two peers with one AE title: at the second's ae_title. */
	{ "[peer a]\nae_title = WS\nhost = h\nport = 104\n"
	  "[peer b]\nhost = h2\nport = 105\nae_title = WS\n",
	  8, "ae_title: 'WS' is also [peer a]'s (line 2)" },
};

static void test_config_peer_errors(void **state)
{
	struct unit_config *f = *state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (unit_config_load_text(f, bad[i].text) != -EINVAL)
			fail_msg("accepted: %s", bad[i].text);
		unit_config_assert_error_at(f, bad[i].line, bad[i].what);
	}
}

static void test_config_peer_limits(void **state)
{
	struct unit_config *f = *state;
	char text[16384];
	size_t o = 0, last;

	/* OP_PEER_MAX peers load; one more is refused at its header. A
	 * 32-character name is the longest. */
	for (int i = 0; i <= OP_PEER_MAX; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o,
				      "[peer p%d_abcdefghijklmnopqrstuvwxyzAB]\nae_title = AE%d\n"
				      "host = h%d\nport = %d\n",
				      i + 10, i, i, 100 + i);
	assert_true(o < sizeof(text));
	assert_int_equal(unit_config_load_text(f, text), -EINVAL);
	unit_config_assert_error_at(f, 4 * OP_PEER_MAX + 1, "more than 32 [peer NAME]");
	last = strlen(strstr(text, "[peer p42_"));
	text[o - last] = '\0';
	assert_int_equal(unit_config_load_text(f, text), 0);
	assert_int_equal(f->cfg.n_peers, OP_PEER_MAX);
	assert_int_equal(strlen(f->cfg.peers[0].name), OP_NAME_MAX);
	assert_string_equal(f->cfg.peers[OP_PEER_MAX - 1].ae_title, "AE31");
	assert_int_equal(f->cfg.peers[OP_PEER_MAX - 1].port, 131);
}

static void test_config_peer_by_aet(void **state)
{
	struct unit_config *f = *state;
	op_peer_config p;

	assert_int_equal(unit_config_load_text(f, example), 0);

	/* A peer. */
	memset(&p, 0xa5, sizeof(p));
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "RIS", &p), 0);
	assert_string_equal(p.name, "ris_1");
	assert_string_equal(p.ae_title, "RIS");
	assert_string_equal(p.host, "ris.hospital");
	assert_int_equal(p.port, 65535);
	assert_int_equal(p.line, 15);

	/* Trailing spaces are DICOM's padding; inner spaces are the title's. */
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "READ WS         ", &p), 0);
	assert_string_equal(p.name, "reading-ws");
	assert_int_equal(p.port, 104);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "READWS", &p), -ENOENT);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, " RIS", &p), -ENOENT);

	/* A destination of type dicom, by its called_ae. */
	memset(&p, 0xa5, sizeof(p));
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "PACS ", &p), 0);
	assert_string_equal(p.name, "pacs");
	assert_string_equal(p.ae_title, "PACS");
	assert_string_equal(p.host, "pacs.hospital");
	assert_int_equal(p.port, 11112);
	assert_int_equal(p.line, 7);

	/* Nothing else: case matters, a stow-rs destination, the box's own
	 * title and an empty one are no nodes. */
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "ris", &p), -ENOENT);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "ai", &p), -ENOENT);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "EDGE", &p), -ENOENT);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "", &p), -ENOENT);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "    ", &p), -ENOENT);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "UNKNOWN", NULL), -ENOENT);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "RIS", NULL), 0);

	/* A peer wins over a dicom destination with its AE title. */
	assert_int_equal(unit_config_load_text(f, "[destination pacs]\n"
						  "type = dicom\n"
						  "host = pacs-store\n"
						  "port = 104\n"
						  "called_ae = PACS\n"
						  "[peer pacs-qr]\n"
						  "ae_title = PACS\n"
						  "host = pacs-move\n"
						  "port = 4242\n"),
			 0);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "PACS", &p), 0);
	assert_string_equal(p.name, "pacs-qr");
	assert_string_equal(p.host, "pacs-move");
	assert_int_equal(p.port, 4242);

	/* Case matters in AE titles: two peers, each found by its own. */
	assert_int_equal(unit_config_load_text(f, "[peer upper]\nae_title = WS\nhost = h1\n"
						  "port = 104\n"
						  "[peer lower]\nae_title = ws\nhost = h2\n"
						  "port = 104\n"),
			 0);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "ws", &p), 0);
	assert_string_equal(p.name, "lower");
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "WS", &p), 0);
	assert_string_equal(p.name, "upper");

	/* The defaults know no node. */
	op_config_defaults(&f->cfg);
	assert_int_equal(op_config_peer_by_aet(&f->cfg, "OUTPOST", &p), -ENOENT);
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

static void test_config_peer_round_trip(void **state)
{
	struct unit_config *f = *state;
	op_config back;
	const char *path;
	char *text;
	size_t n;

	assert_int_equal(unit_config_load_text(f, example), 0);
	path = print_file(f, &f->cfg, "printed.ini");
	text = unit_read_file(path, &n);
	assert_non_null(strstr(text, "[peer reading-ws]\nae_title = READ WS\nhost = 10.1.2.40\n"
				     "port = 104\n"));
	assert_non_null(strstr(text, "[peer ris_1]\nae_title = RIS\nhost = ris.hospital\n"
				     "port = 65535\n"));
	/* Beside the destinations, before [routing]. */
	assert_true(strstr(text, "[destination ai]") < strstr(text, "[peer reading-ws]"));
	assert_true(strstr(text, "[peer ris_1]") < strstr(text, "[routing]"));
	test_free(text);

	f->err[0] = '\0';
	if (op_config_load(&back, path, f->err, sizeof(f->err)) != 0)
		fail_msg("the printout does not load: %s", f->err);
	assert_example(&back);

	/* The defaults print the query/retrieve and commitment keys, and no
	 * peer. */
	op_config_defaults(&f->cfg);
	text = unit_read_file(print_file(f, &f->cfg, "defaults.ini"), &n);
	assert_non_null(strstr(text, "\nallow_query = on\ncommitment = cloud\n"
				     "commitment_timeout = 1d\n"));
	assert_non_null(strstr(text, "\nkeep_sent_days = 0\n"));
	assert_null(strstr(text, "[peer"));
	test_free(text);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, unit_config_setup, unit_tmp_teardown)
	const struct CMUnitTest tests[] = {
		T(test_config_peer_every_key),  T(test_config_peer_errors),
		T(test_config_peer_limits),     T(test_config_peer_by_aet),
		T(test_config_peer_round_trip),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
