/*
 * test_ctl_print: services/ctl/ctl_print.c, what outpostctl shows a
 * person: the text of an API error (no escape reaches the terminal), the
 * sizes, rates and durations, and the tables on canned JSON.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/ctl_client.h"
#include "ctl/ctl_print.h"

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
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	text = printed(
		op_ctl_print_status,
		"{\"version\": \"0.1.0\", \"uptime\": 3600, \"time\": \"2026-11-28T10:00:00Z\","
		" \"link\": {\"state\": \"paused\", \"since\": \"2026-11-28T09:00:00Z\","
		"  \"reason\": \"\", \"paused_by_operator\": true, \"headline\": {\"state\": "
		"\"paused\", \"text\": \"paused by the operator since 10:00 CET\"}},"
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
		"\"uplink.link\", \"message\": \"cannot connect\", \"study_uid\": null},"
		" {\"time\": \"2026-11-28T09:20:00Z\", \"event\": \"uplink.quarantine\", "
		"\"message\": \"refused\", \"study_uid\": \"1.2.3\", \"sop_uid\": \"1.2.3.4\"}],"
		" \"alarms\": [{\"id\": \"link\", \"severity\": \"warning\", \"message\": "
		"\"paused\"}],"
		" \"counters\": {\"received_instances\": 13, \"uploaded_instances\": 2,"
		"  \"uploaded_bytes\": 2048, \"retries\": 0, \"quarantined\": 1},"
		" \"console\": {\"tls\": true, \"fingerprint_sha256\": \"AB:CD\"}}");
	assert_non_null(strstr(text, "outpost-uplink 0.1.0, up 1 h 0 min"));
	assert_non_null(strstr(text, "Console     HTTPS, certificate SHA-256 AB:CD\n"));
	assert_non_null(
		strstr(text, "outpost-uplink 0.1.0, up 1 h 0 min (at 2026-11-28 11:00:00 CET)"));
	assert_non_null(strstr(text, "Cloud       paused by the operator since 10:00 CET\n"));
	assert_non_null(
		strstr(text, "Link        paused since 2026-11-28 10:00:00 CET (1 h 0 min)"));
	assert_non_null(strstr(text, "paused by the operator"));
	assert_non_null(strstr(text, "now 0 (paused), configured unlimited (set by the console)"));
	assert_non_null(strstr(text, "Schedule    none"));
	assert_non_null(strstr(text, "queued              10  5.05 MiB"));
	assert_non_null(strstr(text, "quarantined          1     100 B"));
	assert_non_null(strstr(text, "oldest queued instance: 12 s old; 1 study queued"));
	assert_non_null(strstr(text, "/spool: 477 MiB free of 954 MiB"));
	assert_non_null(strstr(text, "warning  link"));
	assert_non_null(
		strstr(text, "  2026-11-28 10:30:00 CET uplink.link cannot connect\n  2026"));
	/* An error about an instance names its study and the instance. */
	assert_non_null(strstr(text, "uplink.quarantine refused\n    study 1.2.3\n"
				     "    instance 1.2.3.4\n"));
	assert_non_null(strstr(text, "Totals      received 13, uploaded 2 (2 KiB)"));
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
	/* An answer without the study's attributes (an older uplink): "-". */
	assert_non_null(strstr(text, "PATIENT"));
	assert_non_null(strstr(text, "ACCESSION"));
	free(text);

	/* What staff recognise a study by, in UTF-8. */
	text = printed(op_ctl_print_queue,
		       "{\"page\": 1, \"per_page\": 50, \"total\": 1, \"studies\": ["
		       "{\"study_uid\": \"1.2.4\", \"patient_id\": \"PID-4711\","
		       " \"patient_name\": \"M\\u00fcller^J\\u00fcrgen\","
		       " \"accession_number\": \"ACC-77\", \"study_date\": \"20261127\","
		       " \"study_description\": \"CT\\u001bHEAD\", \"modality\": \"SR\","
		       " \"modalities\": \"CT\\\\SR\", \"calling_aet\": \"CTSCAN1\","
		       " \"instances\": 2, \"bytes\": 2000, \"states\": {\"queued\": 2},"
		       " \"attempts\": 0, \"last_error\": null, \"urgent\": false,"
		       " \"received_at\": \"2026-11-28T09:59:00Z\"}]}");
	assert_non_null(strstr(text, "Müller^Jürgen  PID-4711    ACC-77     2026-11-27  CT?HEAD"));
	assert_non_null(strstr(text, "CT,SR  CTSCAN1"));
	assert_non_null(strstr(text, "page 1 of 1 (1 study)"));
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
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctl_error_text),      cmocka_unit_test(test_ctl_format),
		cmocka_unit_test(test_ctl_print_status),    cmocka_unit_test(test_ctl_print_queue),
		cmocka_unit_test(test_ctl_print_test_link),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
