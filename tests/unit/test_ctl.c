/*
 * test_ctl: services/ctl/ctl.c, outpostctl's testable half. The rewrite of
 * one key of the configuration file (in place, in its section, in a new
 * section; every other byte kept; the result loads), the
 * rate-or-schedule decision, passwords, and the tables on canned JSON.
 * The HTTP client: test_ctl_client.c.
 *
 * Each test writes its files into its own mkdtemp directory, removed after.
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

#include <sodium.h>

#include "common/config.h"
#include "ctl/ctl.h"
#include "ctl/ctl_client.h"
#include "ctl/ctl_ini.h"
#include "ctl/ctl_password.h"
#include "ctl/ctl_print.h"
#include "ctl_fixture.h"

/* A hash as config.c accepts it (it checks the "$argon2" prefix). */
#define HASH "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"

/* --- fixtures ---------------------------------------------------------------- */

static const char *write_file(struct ctl_fx *f, const char *name, const char *text)
{
	return unit_write_file(f->path, sizeof(f->path), f->dir, name, text);
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

	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", f->dir, name);
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

/* Through a symbolic link, the target is rewritten and the link stays. */
static void test_ctl_config_set_symlink(void **state)
{
	struct ctl_fx *f = *state;
	char link[160];
	struct stat st;

	write_file(f, "real.ini", site_ini);
	snprintf(link, sizeof(link), "%s/link.ini", f->dir);
	assert_int_equal(symlink("real.ini", link), 0);
	assert_int_equal(
		op_ctl_config_set(link, "console", "password_hash", HASH, f->err, sizeof(f->err)),
		0);
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_loads_with_hash(f->path);
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

	snprintf(f->path, sizeof(f->path), "%s/missing.ini", f->dir);
	assert_int_equal(op_ctl_config_set(f->path, "console", "password_hash", HASH, f->err,
					   sizeof(f->err)),
			 -ENOENT);
}

static void test_ctl_config_path(void **state)
{
	char path[256];

	(void)state;
	setenv("OUTPOST_CONFIG", "/env/outpost.ini", 1);
	assert_int_equal(op_ctl_config_path("/opt/x.ini", path, sizeof(path)), 0);
	assert_string_equal(path, "/opt/x.ini");
	assert_int_equal(op_ctl_config_path(NULL, path, sizeof(path)), 0);
	assert_string_equal(path, "/env/outpost.ini");
	setenv("OUTPOST_CONFIG", "", 1);
	assert_int_equal(op_ctl_config_path(NULL, path, sizeof(path)), 0);
	assert_string_equal(path,
			    access(OP_CTL_DEFAULT_CONFIG, F_OK) == 0 ? OP_CTL_DEFAULT_CONFIG : "");
	unsetenv("OUTPOST_CONFIG");
	assert_int_equal(op_ctl_config_path("/a/very/long/path.ini", path, 8), -ENAMETOOLONG);
}

/* --- passwords ------------------------------------------------------------------- */

static void test_ctl_password_check(void **state)
{
	const char *why = NULL;
	char big[OP_CTL_PASSWORD_MAX + 2];

	(void)state;
	assert_int_equal(op_ctl_password_check("12345678", &why), 0);
	assert_int_equal(op_ctl_password_check("1234567", &why), -EINVAL);
	assert_non_null(strstr(why, "short"));
	assert_int_equal(op_ctl_password_check("", &why), -EINVAL);
	/* Characters, not bytes: 7 characters in 14 bytes is short. */
	assert_int_equal(op_ctl_password_check("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
					       "\xc3\xa9",
					       &why),
			 -EINVAL);
	assert_int_equal(op_ctl_password_check("pass\tword", &why), -EINVAL);
	assert_non_null(strstr(why, "control"));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(op_ctl_password_check(big, &why), -EINVAL);
	big[OP_CTL_PASSWORD_MAX] = '\0';
	assert_int_equal(op_ctl_password_check(big, &why), 0);
}

static void test_ctl_password_hash(void **state)
{
	char hash[crypto_pwhash_STRBYTES];

	(void)state;
	assert_int_equal(op_ctl_password_hash("correct horse", hash, sizeof(hash)), 0);
	/* OWASP's minimum: 19 MiB (19456 KiB), 2 passes, Argon2id. */
	assert_non_null(strstr(hash, "$argon2id$v=19$m=19456,t=2,p=1$"));
	assert_int_equal(crypto_pwhash_str_verify(hash, "correct horse", 13), 0);
	assert_int_not_equal(crypto_pwhash_str_verify(hash, "correct horsE", 13), 0);
	assert_int_equal(op_ctl_password_hash("correct horse", hash, 64), -EINVAL);
}

/* --- the text of an API error ------------------------------------------------------ */

static void test_ctl_error_text(void **state)
{
	op_ctl_response r = { .status = 400 };
	char buf[64];

	(void)state;
	r.body = strdup("{\"error\": \"rate: 'x' is not a rate\"}");
	r.body_len = strlen(r.body);
	op_ctl_error_text(&r, buf, sizeof(buf));
	assert_string_equal(buf, "rate: 'x' is not a rate");
	op_ctl_response_free(&r);

	r.body = strdup("  <html>\x1b[2J</html>\n");
	r.body_len = strlen(r.body);
	op_ctl_error_text(&r, buf, sizeof(buf));
	assert_string_equal(buf, "<html>?[2J</html>"); /* no escape reaches the terminal */
	op_ctl_response_free(&r);

	r.status = 502;
	r.body = strdup("");
	r.body_len = 0;
	op_ctl_error_text(&r, buf, sizeof(buf));
	assert_string_equal(buf, "HTTP 502");
	op_ctl_response_free(&r);
}

/* --- shaping ----------------------------------------------------------------------- */

static void test_ctl_rate_or_schedule(void **state)
{
	char *body = NULL;

	(void)state;
	assert_true(op_ctl_is_rate("2Mbit"));
	assert_true(op_ctl_is_rate("2.5M"));
	assert_true(op_ctl_is_rate("512k"));
	assert_true(op_ctl_is_rate("unlimited"));
	assert_true(op_ctl_is_rate("0"));
	assert_true(op_ctl_is_rate("8 Mbit/s"));
	/* One word that is no rate is a mistyped rate, not a schedule. */
	assert_true(op_ctl_is_rate("fast"));
	assert_false(op_ctl_is_rate("Mon-Fri 07:00-19:00 2Mbit"));
	assert_false(op_ctl_is_rate("Mon-Fri 07:00-19:00 2Mbit; Sat-Sun 00:00-24:00 unlimited"));
	assert_false(op_ctl_is_rate("2 parsecs"));

	assert_int_equal(op_ctl_shaping_body("2Mbit", &body), 0);
	assert_string_equal(body, "{\"rate\":\"2Mbit\"}");
	free(body);
	assert_int_equal(op_ctl_shaping_body("Mon 00:00-24:00 0", &body), 0);
	assert_string_equal(body, "{\"schedule\":\"Mon 00:00-24:00 0\"}");
	free(body);
	assert_int_equal(op_ctl_shaping_body("Mon \"x\" 1", &body), 0);
	assert_string_equal(body, "{\"schedule\":\"Mon \\\"x\\\" 1\"}");
	free(body);
	assert_int_equal(op_ctl_shaping_body(NULL, &body), 0);
	assert_string_equal(body, "{\"rate\":null,\"schedule\":null}");
	free(body);
}

/* --- formatting and tables --------------------------------------------------------- */

static void bytes_is(double v, const char *want)
{
	char buf[32];

	op_ctl_format_bytes(v, buf, sizeof(buf));
	assert_string_equal(buf, want);
}

static void rate_is(double v, const char *want)
{
	char buf[32];

	op_ctl_format_rate(v, buf, sizeof(buf));
	assert_string_equal(buf, want);
}

static void duration_is(double v, const char *want)
{
	char buf[32];

	op_ctl_format_duration(v, buf, sizeof(buf));
	assert_string_equal(buf, want);
}

static void test_ctl_format(void **state)
{
	(void)state;
	bytes_is(0, "0 B");
	bytes_is(1023, "1023 B");
	bytes_is(1024, "1 KiB");
	bytes_is(5300000, "5.05 MiB");
	bytes_is(263000000, "251 MiB");
	bytes_is(1048575, "1024 KiB");
	bytes_is(50e9, "46.6 GiB");
	rate_is(0, "0 bit/s");
	rate_is(999, "999 bit/s");
	rate_is(2e6, "2 Mbit/s");
	rate_is(2.5e6, "2.5 Mbit/s");
	rate_is(999999, "1000 kbit/s");
	rate_is(1e9, "1 Gbit/s");
	duration_is(0, "0 s");
	duration_is(-5, "0 s");
	duration_is(59, "59 s");
	duration_is(125, "2 min 5 s");
	duration_is(3725, "1 h 2 min");
	duration_is(90061, "1 d 1 h");
}

/* What print(json) writes (caller frees). */
static char *printed(void (*print)(const cJSON *, FILE *), const char *json)
{
	cJSON *j = cJSON_Parse(json);
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	assert_non_null(j);
	assert_non_null(out);
	print(j, out);
	fclose(out);
	cJSON_Delete(j);
	return text;
}

static void test_ctl_print_status(void **state)
{
	char *text;

	(void)state;
	text = printed(
		op_ctl_print_status,
		"{\"version\": \"0.1.0\", \"uptime\": 3600, \"time\": \"2026-11-28T10:00:00Z\","
		" \"link\": {\"state\": \"paused\", \"since\": \"2026-11-28T09:00:00Z\","
		"  \"reason\": \"\", \"paused_by_operator\": true},"
		" \"rate\": {\"current\": 0, \"configured\": null, \"schedule\": \"\","
		"  \"source\": \"console\"},"
		" \"queue\": {\"queued\": {\"instances\": 10, \"bytes\": 5300000},"
		"  \"sending\": {\"instances\": 0, \"bytes\": 0},"
		"  \"sent\": {\"instances\": 2, \"bytes\": 2048},"
		"  \"quarantined\": {\"instances\": 1, \"bytes\": 100},"
		"  \"oldest_queued_age\": 12, \"studies_queued\": 1},"
		" \"disk\": {\"path\": \"/spool\", \"total\": 1e9, \"free\": 5e8,"
		"  \"spool_bytes\": 5302148, \"max_bytes\": 0, \"min_free_bytes\": 1048576},"
		" \"last_errors\": [{\"time\": \"2026-11-28T09:30:00Z\", \"event\": "
		"\"uplink.link\", \"message\": \"cannot connect\"}],"
		" \"alarms\": [{\"id\": \"link\", \"severity\": \"warning\", \"message\": "
		"\"paused\"}],"
		" \"counters\": {\"received_instances\": 13, \"uploaded_instances\": 2,"
		"  \"uploaded_bytes\": 2048, \"retries\": 0, \"quarantined\": 1}}");
	assert_non_null(strstr(text, "outpost-uplink 0.1.0, up 1 h 0 min"));
	assert_non_null(strstr(text, "Link        paused since 2026-11-28T09:00:00Z (1 h 0 min)"));
	assert_non_null(strstr(text, "paused by the operator"));
	assert_non_null(strstr(text, "now 0 (paused), configured unlimited (set by the console)"));
	assert_non_null(strstr(text, "Schedule    none"));
	assert_non_null(strstr(text, "queued              10  5.05 MiB"));
	assert_non_null(strstr(text, "quarantined          1     100 B"));
	assert_non_null(strstr(text, "oldest queued instance: 12 s old; 1 study queued"));
	assert_non_null(strstr(text, "/spool: 477 MiB free of 954 MiB"));
	assert_non_null(strstr(text, "warning  link"));
	assert_non_null(strstr(text, "uplink.link cannot connect"));
	assert_non_null(strstr(text, "received 13, uploaded 2 (2 KiB)"));
	free(text);

	/* Nothing known: no crash, dashes. */
	text = printed(op_ctl_print_status, "{}");
	assert_non_null(strstr(text, "outpost-uplink -"));
	assert_non_null(strstr(text, "Link        -\n"));
	assert_non_null(strstr(text, "Alarms      none"));
	free(text);
}

static void test_ctl_print_queue(void **state)
{
	char *text;

	(void)state;
	text = printed(op_ctl_print_queue,
		       "{\"page\": 2, \"per_page\": 1, \"total\": 3, \"studies\": ["
		       "{\"study_uid\": \"1.2.3\", \"patient_id\": \"TEST\\u001b0001\","
		       " \"modality\": \"CT\", \"instances\": 500, \"bytes\": 263000000,"
		       " \"states\": {\"queued\": 490, \"sent\": 10}, \"attempts\": 1,"
		       " \"last_error\": null, \"urgent\": true,"
		       " \"received_at\": \"2026-11-28T09:59:00Z\"}]}");
	assert_non_null(strstr(text, "STUDY UID"));
	assert_non_null(strstr(text, "*1.2.3"));
	assert_non_null(strstr(text, "TEST?0001")); /* no escape reaches the terminal */
	assert_non_null(strstr(text, "251 MiB"));
	assert_non_null(strstr(text, "queued 490, sent 10"));
	assert_non_null(strstr(text, "* urgent"));
	assert_non_null(strstr(text, "page 2 of 3 (3 studies)"));
	free(text);

	text = printed(op_ctl_print_queue,
		       "{\"page\": 1, \"per_page\": 50, \"total\": 0, \"studies\": []}");
	assert_string_equal(text, "no studies\n");
	free(text);
	text = printed(op_ctl_print_queue,
		       "{\"page\": 3, \"per_page\": 50, \"total\": 51, \"studies\": []}");
	assert_string_equal(text, "no studies on page 3 (51 studies on 2 pages)\n");
	free(text);
}

static void test_ctl_print_test_link(void **state)
{
	cJSON *j =
		cJSON_Parse("{\"ok\": false, \"steps\": ["
			    "{\"step\": \"resolve\", \"ok\": true, \"ms\": 2, \"detail\": \"::1\"},"
			    "{\"step\": \"tls\", \"ok\": false, \"ms\": 30, \"detail\": "
			    "\"handshake failed\"}]}");
	char *text = NULL;
	size_t len;
	FILE *out = open_memstream(&text, &len);

	(void)state;
	assert_int_equal(op_ctl_print_test_link(j, out), 0);
	fclose(out);
	assert_non_null(strstr(text, "resolve  ok       2 ms  ::1\n"));
	assert_non_null(strstr(text, "tls      FAILED  30 ms  handshake failed\n"));
	assert_non_null(strstr(text, "link test: FAILED"));
	free(text);
	cJSON_Delete(j);

	j = cJSON_Parse("{\"ok\": true, \"steps\": []}");
	out = open_memstream(&text, &len);
	assert_int_equal(op_ctl_print_test_link(j, out), 1);
	fclose(out);
	free(text);
	cJSON_Delete(j);
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
		T(test_ctl_config_set_symlink),
		T(test_ctl_config_set_refuses_bad_file),
		cmocka_unit_test(test_ctl_config_path),
		cmocka_unit_test(test_ctl_password_check),
		cmocka_unit_test(test_ctl_password_hash),
		cmocka_unit_test(test_ctl_error_text),
		cmocka_unit_test(test_ctl_rate_or_schedule),
		cmocka_unit_test(test_ctl_format),
		cmocka_unit_test(test_ctl_print_status),
		cmocka_unit_test(test_ctl_print_queue),
		cmocka_unit_test(test_ctl_print_test_link),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
