/*
 * test_ctl_ini: services/ctl/ctl_ini.c, the rewrite of one key of the
 * configuration file: in the text (in place, in its section, in a new
 * section; every other byte kept) and in the file (atomically, through a
 * symbolic link, never a file the services would refuse; the result
 * loads).
 *
 * Each file test writes into its own mkdtemp directory, removed after.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "ctl/ctl_ini.h"
#include "ctl_fixture.h"

/* A hash as config.c accepts it (it checks the "$argon2" prefix). */
#define HASH "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"

/* --- fixtures ---------------------------------------------------------------- */

static const char *write_file(struct ctl_fx *f, const char *name, const char *text)
{
	return unit_write_file(f->t.path, sizeof(f->t.path), f->t.dir, name, text);
}

/* The file's text (caller frees). */
static char *slurp(const char *path)
{
	FILE *in = fopen(path, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	assert_non_null(in);
	assert_non_null(buf);
	n = fread(buf, 1, 65535, in);
	buf[n] = '\0';
	fclose(in);
	return buf;
}

/* --- the INI rewrite ------------------------------------------------------------- */

/* op_ctl_ini_set(text, [console] password_hash = HASH) must give want. */
static void ini_set_is(const char *text, const char *want)
{
	char *out = NULL;
	size_t len = 0;

	assert_int_equal(
		op_ctl_ini_set(text, strlen(text), "console", "password_hash", HASH, &out, &len),
		0);
	assert_string_equal(out, want);
	assert_int_equal(len, strlen(want));
	free(out);
}

static void test_ctl_ini_replace_existing(void **state)
{
	(void)state;
	ini_set_is("; site X\n"
		   "[console]\n"
		   "listen = 127.0.0.1:8080\n"
		   "password_hash = $argon2id$old\n"
		   "# keep me\n"
		   "socket = /run/outpost/outpost.sock\n",
		   "; site X\n"
		   "[console]\n"
		   "listen = 127.0.0.1:8080\n"
		   "password_hash = " HASH "\n"
		   "# keep me\n"
		   "socket = /run/outpost/outpost.sock\n");
	/* Indented, with ':' and odd spacing, at the end without a newline. */
	ini_set_is("[console]\n  password_hash:$argon2id$old",
		   "[console]\npassword_hash = " HASH "\n");
	/* A later duplicate would override the new line: it goes. */
	ini_set_is("[console]\npassword_hash = a\n[log]\nlevel = info\n[console]\n"
		   "password_hash = b\nsocket = x\n",
		   "[console]\npassword_hash = " HASH "\n[log]\nlevel = info\n[console]\n"
		   "socket = x\n");
}

static void test_ctl_ini_add_to_section(void **state)
{
	(void)state;
	/* After the section's last key, before the comment and blank line that
	 * lead into the next section. */
	ini_set_is("[receiver]\n"
		   "port = 104\n"
		   "\n"
		   "[console]\n"
		   "listen = 127.0.0.1:8080\n"
		   "socket = s.sock\n"
		   "\n"
		   "; the log\n"
		   "[log]\n"
		   "level = debug\n",
		   "[receiver]\n"
		   "port = 104\n"
		   "\n"
		   "[console]\n"
		   "listen = 127.0.0.1:8080\n"
		   "socket = s.sock\n"
		   "password_hash = " HASH "\n"
		   "\n"
		   "; the log\n"
		   "[log]\n"
		   "level = debug\n");
	/* An empty section: right after its header. */
	ini_set_is("[console]\n[log]\nlevel = info\n",
		   "[console]\npassword_hash = " HASH "\n[log]\nlevel = info\n");
	/* The last line without a newline. */
	ini_set_is("[console]\nlisten = 127.0.0.1:8080",
		   "[console]\nlisten = 127.0.0.1:8080\npassword_hash = " HASH "\n");
	/* The same key in another section is not this one. */
	ini_set_is("[other]\npassword_hash = x\n[console]\nlisten = 1.2.3.4:5\n",
		   "[other]\npassword_hash = x\n[console]\nlisten = 1.2.3.4:5\n"
		   "password_hash = " HASH "\n");
}

static void test_ctl_ini_add_section(void **state)
{
	(void)state;
	ini_set_is("", "[console]\npassword_hash = " HASH "\n");
	ini_set_is("; only a comment\n",
		   "; only a comment\n\n[console]\npassword_hash = " HASH "\n");
	ini_set_is("[log]\n;\n", "[log]\n;\n\n[console]\npassword_hash = " HASH "\n");
	ini_set_is("[log]\r\n\r\n", "[log]\r\n\r\n[console]\r\npassword_hash = " HASH "\r\n");
	ini_set_is("[receiver]\nport = 104\n",
		   "[receiver]\nport = 104\n\n[console]\npassword_hash = " HASH "\n");
	ini_set_is("[receiver]\nport = 104\n\n",
		   "[receiver]\nport = 104\n\n[console]\npassword_hash = " HASH "\n");
	ini_set_is("[receiver]\nport = 104",
		   "[receiver]\nport = 104\n\n[console]\npassword_hash = " HASH "\n");
	/* "[consoles]" and a commented-out header are other things. */
	ini_set_is("[log]\n; [console]\nlevel = info\n",
		   "[log]\n; [console]\nlevel = info\n\n[console]\npassword_hash = " HASH "\n");
}

static void test_ctl_ini_keeps_line_endings(void **state)
{
	(void)state;
	ini_set_is("[console]\r\nlisten = 127.0.0.1:8080\r\n\r\n[log]\r\n",
		   "[console]\r\nlisten = 127.0.0.1:8080\r\npassword_hash = " HASH
		   "\r\n\r\n[log]\r\n");
	/* A byte order mark stays in front. */
	ini_set_is("\xEF\xBB\xBF[console]\nsocket = s\n",
		   "\xEF\xBB\xBF[console]\nsocket = s\npassword_hash = " HASH "\n");
	ini_set_is("\xEF\xBB\xBFpassword_hash = x\n", "\xEF\xBB\xBFpassword_hash = x\n\n"
						      "[console]\npassword_hash = " HASH "\n");
}

static void test_ctl_ini_refuses_newlines(void **state)
{
	char *out = NULL;
	size_t len;

	(void)state;
	assert_int_equal(op_ctl_ini_set("", 0, "console", "password_hash", "a\nb", &out, &len),
			 -EINVAL);
	assert_int_equal(op_ctl_ini_set("", 0, "console", "pass=word", "a", &out, &len), -EINVAL);
	assert_int_equal(op_ctl_ini_set("", 0, "con]sole", "k", "a", &out, &len), -EINVAL);
	assert_null(out);
}

/* --- the file rewrite -------------------------------------------------------------- */

static const char *const site_ini = "; Outpost, site X\n"
				    "[receiver]\n"
				    "ae_title = EDGE\n"
				    "port = 11112\n"
				    "\n"
				    "[console]\n"
				    "# the web console\n"
				    "listen = 127.0.0.1:8089\n"
				    "password_hash = $argon2id$v=19$old\n"
				    "\n"
				    "[log]\n"
				    "level = warn\n";

static void assert_loads_with_hash(const char *path)
{
	op_config *cfg = malloc(sizeof(*cfg));
	char err[640];

	assert_non_null(cfg);
	assert_int_equal(op_config_load(cfg, path, err, sizeof(err)), 0);
	assert_string_equal(cfg->console.password_hash, HASH);
	assert_string_equal(cfg->receiver.ae_title, "EDGE");
	assert_int_equal(cfg->receiver.port, 11112);
	assert_string_equal(cfg->console.listen, "127.0.0.1:8089");
	assert_int_equal(cfg->log_level, OP_LOG_WARN);
	free(cfg);
}

static void assert_no_tmp(struct ctl_fx *f, const char *name)
{
	char tmp[160];

	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", f->t.dir, name);
	assert_int_equal(access(tmp, F_OK), -1);
}

static void test_ctl_config_set_file(void **state)
{
	struct ctl_fx *f = *state;
	const char *path = write_file(f, "outpost.ini", site_ini);
	struct stat st;
	char *text;

	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(
		op_ctl_config_set(path, "console", "password_hash", HASH, f->err, sizeof(f->err)),
		0);
	assert_loads_with_hash(path);
	text = slurp(path);
	/* Only the one line changed. */
	assert_non_null(strstr(text, "; Outpost, site X\n[receiver]\n"));
	assert_non_null(strstr(text,
			       "# the web console\nlisten = 127.0.0.1:8089\npassword_hash = " HASH
			       "\n\n[log]\nlevel = warn\n"));
	assert_null(strstr(text, "old"));
	free(text);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_no_tmp(f, "outpost.ini");
}

static void test_ctl_config_set_adds_section(void **state)
{
	struct ctl_fx *f = *state;
	const char *path = write_file(f, "outpost.ini",
				      "[receiver]\nae_title = EDGE\nport = 11112\n"
				      "[console]\nlisten = 127.0.0.1:8089\n"
				      "[log]\nlevel = warn\n");

	assert_int_equal(
		op_ctl_config_set(path, "console", "password_hash", HASH, f->err, sizeof(f->err)),
		0);
	assert_loads_with_hash(path);

	path = write_file(f, "bare.ini", "; nothing yet\n");
	assert_int_equal(
		op_ctl_config_set(path, "console", "password_hash", HASH, f->err, sizeof(f->err)),
		0);
	{
		op_config *cfg = malloc(sizeof(*cfg));
		char err[640];
		char *text = slurp(path);

		assert_non_null(cfg);
		assert_int_equal(op_config_load(cfg, path, err, sizeof(err)), 0);
		assert_string_equal(cfg->console.password_hash, HASH);
		assert_string_equal(text, "; nothing yet\n\n[console]\npassword_hash = " HASH "\n");
		free(text);
		free(cfg);
	}
}

/* The sections with a name ([destination NAME], [route NAME]) and
 * [routing] are kept, and are edited like any other. */
static void test_ctl_config_set_routing_sections(void **state)
{
	struct ctl_fx *f = *state;
	const char *path = write_file(f, "outpost.ini",
				      "[destination pacs]\ntype = dicom\nhost = pacs.example\n"
				      "port = 104\ncalled_ae = PACS\n"
				      "[route ct]\nwhen = Modality=CT\nto = pacs\n"
				      "[routing]\ndefault = none\n");
	op_config *cfg = malloc(sizeof(*cfg));
	char err[640];
	char *text;

	assert_non_null(cfg);
	assert_int_equal(
		op_ctl_config_set(path, "console", "password_hash", HASH, f->err, sizeof(f->err)),
		0);
	assert_int_equal(op_ctl_config_set(path, "destination pacs", "port", "11112", f->err,
					   sizeof(f->err)),
			 0);
	text = slurp(path);
	assert_non_null(strstr(text, "[destination pacs]\ntype = dicom\nhost = pacs.example\n"
				     "port = 11112\ncalled_ae = PACS\n[route ct]\n"));
	free(text);
	assert_int_equal(op_config_load(cfg, path, err, sizeof(err)), 0);
	assert_string_equal(cfg->console.password_hash, HASH);
	assert_int_equal(cfg->n_destinations, 1);
	assert_int_equal(cfg->destinations[0].dicom.port, 11112);
	assert_int_equal(cfg->n_routes, 1);
	assert_string_equal(cfg->routing.default_to, "");

	/* A value the configuration refuses leaves the file as it was. */
	assert_int_not_equal(
		op_ctl_config_set(path, "route ct", "to", "nowhere", f->err, sizeof(f->err)), 0);
	assert_non_null(strstr(f->err, "no destination named 'nowhere'"));
	assert_int_equal(op_config_load(cfg, path, err, sizeof(err)), 0);
	assert_string_equal(cfg->routes[0].to[0], "pacs");
	free(cfg);
}

/* Through a symbolic link, the target is rewritten and the link stays. */
static void test_ctl_config_set_symlink(void **state)
{
	struct ctl_fx *f = *state;
	char link[160];
	struct stat st;

	write_file(f, "real.ini", site_ini);
	snprintf(link, sizeof(link), "%s/link.ini", f->t.dir);
	assert_int_equal(symlink("real.ini", link), 0);
	assert_int_equal(
		op_ctl_config_set(link, "console", "password_hash", HASH, f->err, sizeof(f->err)),
		0);
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_loads_with_hash(f->t.path);
	assert_no_tmp(f, "real.ini");
}

/* A file the services would refuse is never installed. */
static void test_ctl_config_set_refuses_bad_file(void **state)
{
	struct ctl_fx *f = *state;
	const char *bad = "[receiver]\nport = 0\n";
	const char *path = write_file(f, "outpost.ini", bad);
	char *text;

	assert_int_equal(
		op_ctl_config_set(path, "console", "password_hash", HASH, f->err, sizeof(f->err)),
		-EINVAL);
	assert_non_null(strstr(f->err, "refused"));
	text = slurp(path);
	assert_string_equal(text, bad);
	free(text);
	assert_no_tmp(f, "outpost.ini");

	snprintf(f->t.path, sizeof(f->t.path), "%s/missing.ini", f->t.dir);
	assert_int_equal(op_ctl_config_set(f->t.path, "console", "password_hash", HASH, f->err,
					   sizeof(f->err)),
			 -ENOENT);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, ctl_fx_setup, ctl_fx_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctl_ini_replace_existing),
		cmocka_unit_test(test_ctl_ini_add_to_section),
		cmocka_unit_test(test_ctl_ini_add_section),
		cmocka_unit_test(test_ctl_ini_keeps_line_endings),
		cmocka_unit_test(test_ctl_ini_refuses_newlines),
		T(test_ctl_config_set_file),
		T(test_ctl_config_set_adds_section),
		T(test_ctl_config_set_routing_sections),
		T(test_ctl_config_set_symlink),
		T(test_ctl_config_set_refuses_bad_file),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
