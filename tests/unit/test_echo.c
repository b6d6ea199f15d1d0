/*
 * test_echo: services/console/echo.c, the C-ECHO client: what it makes of
 * what a peer answers (what it sends: test_echo_pdu.c).
 *
 * Real peers, started on loopback ports and ended by PID: DCMTK's
 * storescp, and outpost-receiver (from the build this binary belongs to)
 * accepting, and rejecting a calling AE title it does not allow. Nothing
 * listening.
 *
 * Canned peers, as curl tests its protocols: a server thread in this
 * process plays a script (read a PDU, send these bytes; echo_fixture.h)
 * and the test checks what the client makes of it: silence, garbage, a
 * huge PDU length, A-ABORT, A-ASSOCIATE-RJ, a refused presentation
 * context, bad answers, an answer in fragments, a peer that closes instead
 * of releasing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console/echo.h"
#include "echo_fixture.h"

/* --- real peers --------------------------------------------------------------------- */

static void test_echo_storescp(void **state)
{
	struct fx *f = *state;
	char port[8], log[128];
	uint16_t p = echo_free_port();
	int rc;

	snprintf(port, sizeof(port), "%u", p);
	snprintf(log, sizeof(log), "%s/storescp.log", f->dir);
	{
		char *argv[] = { "storescp", "-aet", "STORESCP", "-od", f->dir, port, NULL };

		f->child = echo_spawn(argv, log);
	}
	assert_true(f->child > 0);
	echo_wait_listening(f->child, p, log);

	rc = op_echo("127.0.0.1", p, "STORESCP", CALLING, 5000, f->detail, sizeof(f->detail));
	if (rc != 0)
		fail_msg("op_echo: %d (%s)", rc, f->detail);
	assert_contains(f->detail, "answered in ");
	/* "localhost" is 127.0.0.1, without a name lookup. */
	rc = op_echo("localhost", p, "STORESCP", CALLING, 5000, f->detail, sizeof(f->detail));
	if (rc != 0)
		fail_msg("op_echo localhost: %d (%s)", rc, f->detail);
}

/* Starts outpost-receiver on a fresh port with extra [receiver] lines. */
static uint16_t start_receiver(struct fx *f, const char *receiver_extra)
{
	char ini[128], log[128], bin[PATH_MAX + 32], dir[PATH_MAX];
	uint16_t port = echo_free_port();
	FILE *out;

	echo_build_dir(dir, sizeof(dir));
	snprintf(bin, sizeof(bin), "%s/outpost-receiver", dir);
	snprintf(ini, sizeof(ini), "%s/outpost.ini", f->dir);
	snprintf(log, sizeof(log), "%s/receiver.log", f->dir);
	out = fopen(ini, "w");
	assert_non_null(out);
	fprintf(out,
		"[receiver]\nae_title = OUTPOST\nbind = 127.0.0.1\nport = %u\n%s"
		"[spool]\ndir = %s/spool\nmin_free_bytes = 1M\n"
		"[console]\nlisten =\nsocket =\n",
		port, receiver_extra, f->dir);
	assert_int_equal(fclose(out), 0);
	{
		char *argv[] = { bin, "--config", ini, NULL };

		f->child = echo_spawn(argv, log);
	}
	assert_true(f->child > 0);
	echo_wait_listening(f->child, port, log);
	return port;
}

static void test_echo_receiver(void **state)
{
	struct fx *f = *state;
	uint16_t port = start_receiver(f, "");
	int rc = op_echo("127.0.0.1", port, "OUTPOST", CALLING, 5000, f->detail, sizeof(f->detail));

	if (rc != 0)
		fail_msg("op_echo: %d (%s)", rc, f->detail);
	assert_contains(f->detail, "answered in ");
}

static void test_echo_receiver_rejects(void **state)
{
	struct fx *f = *state;
	uint16_t port = start_receiver(f, "allowed_calling_aets = OTHER\n");
	int rc = op_echo("127.0.0.1", port, "OUTPOST", CALLING, 5000, f->detail, sizeof(f->detail));

	assert_int_equal(rc, -EPROTO);
	assert_string_equal(f->detail, "association rejected: calling AE title not recognized "
				       "(result 1, source 1, reason 3)");
	/* The calling AE title it does allow. */
	rc = op_echo("127.0.0.1", port, "OUTPOST", "OTHER", 5000, f->detail, sizeof(f->detail));
	if (rc != 0)
		fail_msg("op_echo as OTHER: %d (%s)", rc, f->detail);
}

static void test_echo_refused(void **state)
{
	struct fx *f = *state;
	uint16_t port = echo_free_port();
	int rc = op_echo("127.0.0.1", port, CALLED, CALLING, 1000, f->detail, sizeof(f->detail));

	assert_int_equal(rc, -ECONNREFUSED);
	assert_contains(f->detail, "connection refused");
}

/* --- canned answers ------------------------------------------------------------------- */

static void test_echo_silent_peer(void **state)
{
	struct fx *f = *state;
	uint64_t t0 = echo_now_ms(), took;
	int rc;

	/* Accepts, reads nothing, says nothing. */
	rc = echo_peer(f, 300);
	took = echo_now_ms() - t0;
	assert_int_equal(rc, -ETIMEDOUT);
	assert_string_equal(f->detail, "timed out after 300 ms waiting for A-ASSOCIATE-AC");
	assert_true(took >= 290);
	assert_true(took < 1500);
}

static void test_echo_silent_after_ac(void **state)
{
	struct fx *f = *state;

	echo_expect_pdu(f);
	echo_ac_ok(echo_answer(f));
	echo_expect_pdu(f);
	assert_int_equal(echo_peer(f, 300), -ETIMEDOUT);
	assert_string_equal(f->detail, "timed out after 300 ms waiting for C-ECHO-RSP");
	echo_assert_aborted(f);
}

static void test_echo_garbage(void **state)
{
	struct fx *f = *state;
	struct bytes *b;

	echo_expect_pdu(f);
	b = echo_answer(f);
	echo_put(b, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_string_equal(f->detail, "not a DICOM peer: received 48 54 54 50 2f 31 while waiting "
				       "for A-ASSOCIATE-AC");
	echo_assert_aborted(f);
}

/* Refused on the header alone: were the body awaited, this would time out. */
static void test_echo_huge_pdu(void **state)
{
	static const uint8_t huge[] = { 0x02, 0, 0xff, 0xff, 0xff, 0xff };
	struct fx *f = *state;
	uint64_t t0 = echo_now_ms();

	echo_expect_pdu(f);
	echo_put(echo_answer(f), huge, sizeof(huge));
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_true(echo_now_ms() - t0 < 2500);
	assert_string_equal(f->detail, "the peer announced a PDU of 4294967295 bytes "
				       "(A-ASSOCIATE-AC, limit 1048576) while waiting for "
				       "A-ASSOCIATE-AC");
	echo_assert_aborted(f);
}

/* One byte over the limit in a P-DATA-TF, after a good A-ASSOCIATE-AC. */
static void test_echo_pdu_over_limit(void **state)
{
	static const uint8_t big[] = { 0x04, 0, 0x00, 0x10, 0x00, 0x01 };
	struct fx *f = *state;

	echo_expect_pdu(f);
	echo_ac_ok(echo_answer(f));
	echo_expect_pdu(f);
	echo_put(echo_answer(f), big, sizeof(big));
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_contains(f->detail, "a PDU of 1048577 bytes (P-DATA-TF, limit 1048576)");
}

static void test_echo_abort(void **state)
{
	struct fx *f = *state;

	echo_expect_pdu(f);
	echo_abort_pdu(echo_answer(f), 2, 2);
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_string_equal(f->detail, "association aborted by the peer: unexpected PDU (source 2, "
				       "reason 2) while waiting for A-ASSOCIATE-AC");
	assert_int_equal(f->peer.tail.n, 0); /* nothing left to abort */
}

static void test_echo_abort_instead_of_rsp(void **state)
{
	struct fx *f = *state;

	echo_expect_pdu(f);
	echo_ac_ok(echo_answer(f));
	echo_expect_pdu(f);
	echo_abort_pdu(echo_answer(f), 0, 0);
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_string_equal(f->detail, "association aborted by the peer: by the called AE "
				       "(source 0, reason 0) while waiting for C-ECHO-RSP");
}

static void test_echo_rejects(void **state)
{
	static const struct {
		uint8_t result, source, reason;
		const char *detail;
	} cases[] = {
		{ 1, 1, 7,
		  "association rejected: called AE title not recognized (result 1, source 1, "
		  "reason 7)" },
		{ 1, 1, 3,
		  "association rejected: calling AE title not recognized (result 1, source 1, "
		  "reason 3)" },
		{ 1, 1, 2,
		  "association rejected: application context name not supported (result 1, "
		  "source 1, reason 2)" },
		{ 1, 2, 2,
		  "association rejected: protocol version not supported (result 1, source 2, "
		  "reason 2)" },
		{ 2, 3, 1,
		  "association rejected for now: temporary congestion (result 2, source 3, "
		  "reason 1)" },
		{ 2, 3, 2,
		  "association rejected for now: local limit exceeded (result 2, source 3, "
		  "reason 2)" },
		{ 1, 9, 9, "association rejected: unknown reason (result 1, source 9, reason 9)" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fx *f = *state;

		echo_reset_peer(f);
		echo_expect_pdu(f);
		echo_rj(echo_answer(f), cases[i].result, cases[i].source, cases[i].reason);
		assert_int_equal(echo_peer(f, 5000), -EPROTO);
		assert_string_equal(f->detail, cases[i].detail);
		assert_int_equal(f->peer.tail.n, 0);
	}
}

static void test_echo_context_refused(void **state)
{
	struct fx *f = *state;

	echo_expect_pdu(f);
	echo_ac(echo_answer(f), 3, "1.2.840.10008.1.2");
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_string_equal(f->detail, "presentation context refused: Verification SOP Class not "
				       "supported (result 3)");
	echo_assert_aborted(f);
}

static void test_echo_wrong_transfer_syntax(void **state)
{
	struct fx *f = *state;

	echo_expect_pdu(f);
	echo_ac(echo_answer(f), 0, "1.2.840.10008.1.2.1");
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_contains(f->detail, "\"1.2.840.10008.1.2.1\", which was not proposed");
}

/* A transfer syntax padded with a NUL, as some implementations send it. */
static void test_echo_padded_transfer_syntax(void **state)
{
	struct fx *f = *state;
	static const char padded[] = "1.2.840.10008.1.2\0";
	struct bytes *b;
	size_t ts_len_at;

	echo_expect_pdu(f);
	b = echo_answer(f);
	echo_ac_ok(b);
	/* Lengthen the transfer syntax sub-item (and its item and PDU) by the
	 * NUL: it sits at the end of the context item, before user info. */
	ts_len_at = 6 + 68 + 4 + 21 + 4 + 4 + 2;
	assert_int_equal(b->b[ts_len_at - 2], 0x40);
	memmove(b->b + ts_len_at + 2 + 18, b->b + ts_len_at + 2 + 17, b->n - (ts_len_at + 2 + 17));
	memcpy(b->b + ts_len_at + 2, padded, 18);
	b->n++;
	b->b[ts_len_at + 1]++;
	b->b[6 + 68 + 4 + 21 + 3]++;
	echo_patch32(b, 2);
	echo_expect_pdu(f);
	echo_rsp(echo_answer(f), 0x0000, 1, 1);
	echo_expect_pdu(f);
	echo_release_rp(echo_answer(f));
	if (echo_peer(f, 5000) != 0)
		fail_msg("%s", f->detail);
}

static void test_echo_short_ac(void **state)
{
	struct fx *f = *state;

	echo_expect_pdu(f);
	echo_four(echo_answer(f), 0x02, 0, 1, 0, 0);
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_string_equal(f->detail, "a short A-ASSOCIATE-AC (4 bytes)");
}

static void test_echo_ac_item_overrun(void **state)
{
	struct fx *f = *state;
	struct bytes *b;

	echo_expect_pdu(f);
	b = echo_answer(f);
	echo_ac_ok(b);
	b->b[6 + 68 + 2] = 0xff; /* the application context item's length */
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_contains(f->detail, "item 0x10 of the A-ASSOCIATE-AC overruns the PDU");
}

/* Each answer after a good A-ASSOCIATE-AC, and the result expected. */
static void expect_answer(void **state, void (*build)(struct bytes *), int want_rc,
			  const char *want)
{
	struct fx *f = *state;

	echo_expect_pdu(f);
	echo_ac_ok(echo_answer(f));
	echo_expect_pdu(f);
	build(echo_answer(f));
	assert_int_equal(echo_peer(f, 5000), want_rc);
	assert_string_equal(f->detail, want);
	echo_assert_aborted(f);
}

static void failure_with_comment(struct bytes *o)
{
	struct bytes cmd = { .n = 0 };

	echo_rsp_command(&cmd, 0x8030, 1, 0x0110, "disk\nfull");
	echo_pdata(o, &cmd, 1, 1);
}

static void test_echo_status_failure(void **state)
{
	expect_answer(state, failure_with_comment, -EPROTO,
		      "C-ECHO-RSP status 0x0110 (processing failure): disk?full");
}

static void warning(struct bytes *o)
{
	echo_rsp(o, 0xb000, 1, 1);
}

static void test_echo_status_warning(void **state)
{
	expect_answer(state, warning, -EPROTO, "C-ECHO-RSP status 0xb000 (warning)");
}

static void wrong_id(struct bytes *o)
{
	echo_rsp(o, 0x0000, 2, 1);
}

static void test_echo_wrong_message_id(void **state)
{
	expect_answer(state, wrong_id, -EPROTO, "a C-ECHO-RSP to message 2, not 1");
}

static void store_rsp(struct bytes *o)
{
	struct bytes cmd = { .n = 0 };

	echo_rsp_command(&cmd, 0x8001, 1, 0x0000, NULL);
	echo_pdata(o, &cmd, 1, 1);
}

static void test_echo_wrong_command(void **state)
{
	expect_answer(state, store_rsp, -EPROTO,
		      "expected a C-ECHO-RSP (0x8030), got command 0x8001");
}

static void no_status(struct bytes *o)
{
	struct bytes cmd = { .n = 0 };

	echo_el_us(&cmd, 0x0100, 0x8030);
	echo_el_us(&cmd, 0x0120, 1);
	echo_pdata(o, &cmd, 1, 1);
}

static void test_echo_no_status(void **state)
{
	expect_answer(state, no_status, -EPROTO, "a C-ECHO-RSP without a Status (0000,0900)");
}

static void element_overrun(struct bytes *o)
{
	struct bytes cmd = { .n = 0 };

	echo_el_us(&cmd, 0x0100, 0x8030);
	echo_put_le16(&cmd, 0);
	echo_put_le16(&cmd, 0x0900);
	echo_put_le32(&cmd, 0xffffffff); /* undefined length: not in a command set */
	echo_put_le16(&cmd, 0);
	echo_pdata(o, &cmd, 1, 1);
}

static void test_echo_element_overrun(void **state)
{
	expect_answer(state, element_overrun, -EPROTO,
		      "element (0000,0900) of 4294967295 bytes overruns the C-ECHO-RSP command "
		      "set");
}

static void pdv_overrun(struct bytes *o)
{
	static const uint8_t pdu[] = { 0x04, 0, 0, 0, 0, 8, 0, 0, 0, 9, 1, 3, 0, 0 };

	echo_put(o, pdu, sizeof(pdu));
}

static void test_echo_pdv_overrun(void **state)
{
	expect_answer(state, pdv_overrun, -EPROTO,
		      "a PDV length of 9 in a P-DATA-TF of 8 bytes while waiting for C-ECHO-RSP");
}

static void other_context(struct bytes *o)
{
	struct bytes cmd = { .n = 0 };

	echo_rsp_command(&cmd, 0x8030, 1, 0x0000, NULL);
	echo_pdata(o, &cmd, 1, 3);
}

static void test_echo_other_context(void **state)
{
	expect_answer(state, other_context, -EPROTO,
		      "a PDV for presentation context 3, not 1, while waiting for C-ECHO-RSP");
}

static void release_instead(struct bytes *o)
{
	echo_four(o, 0x05, 0, 0, 0, 0);
}

static void test_echo_release_instead(void **state)
{
	expect_answer(state, release_instead, -EPROTO,
		      "unexpected A-RELEASE-RQ (PDU type 0x05) while waiting for C-ECHO-RSP");
}

/* The command in three P-DATA-TF PDUs, then in one PDU of three PDVs with
 * a data set fragment among them (skipped). */
static void test_echo_fragments(void **state)
{
	struct fx *f = *state;
	struct bytes cmd = { .n = 0 }, *b;
	size_t pdu;

	echo_script_answered(f, 3);
	if (echo_peer(f, 5000) != 0)
		fail_msg("%s", f->detail);

	echo_reset_peer(f);
	echo_rsp_command(&cmd, 0x8030, 1, 0x0000, NULL);
	echo_expect_pdu(f);
	echo_ac_ok(echo_answer(f));
	echo_expect_pdu(f);
	b = echo_answer(f);
	pdu = echo_put_pdu(b, 0x04);
	echo_put_be32(b, 2 + 10);
	echo_put_u8(b, 1);
	echo_put_u8(b, 0x01);
	echo_put(b, cmd.b, 10);
	echo_put_be32(b, 2 + 3);
	echo_put_u8(b, 1);
	echo_put_u8(b, 0x00); /* data set, not last */
	echo_put(b, "abc", 3);
	echo_put_be32(b, (uint32_t)(2 + cmd.n - 10));
	echo_put_u8(b, 1);
	echo_put_u8(b, 0x03);
	echo_put(b, cmd.b + 10, cmd.n - 10);
	echo_patch32(b, pdu);
	echo_expect_pdu(f);
	echo_release_rp(echo_answer(f));
	if (echo_peer(f, 5000) != 0)
		fail_msg("%s", f->detail);
}

/* A peer that closes instead of sending A-RELEASE-RP has released. */
static void test_echo_close_instead_of_release(void **state)
{
	struct fx *f = *state;

	echo_expect_pdu(f);
	echo_ac_ok(echo_answer(f));
	echo_expect_pdu(f);
	echo_rsp(echo_answer(f), 0x0000, 1, 1);
	echo_expect_pdu(f);
	f->peer.acts[f->peer.n++] = PEER_CLOSE;
	assert_int_equal(echo_peer(f, 5000), 0);
	assert_contains(f->detail, "answered in ");
	assert_true(strstr(f->detail, "release") == NULL);
}

/* A peer that never answers A-RELEASE-RQ: the echo still counts, and the
 * call returns within its timeout. */
static void test_echo_release_unanswered(void **state)
{
	struct fx *f = *state;
	uint64_t t0 = echo_now_ms();

	echo_expect_pdu(f);
	echo_ac_ok(echo_answer(f));
	echo_expect_pdu(f);
	echo_rsp(echo_answer(f), 0x0000, 1, 1);
	echo_expect_pdu(f);
	assert_int_equal(echo_peer(f, 300), 0);
	assert_true(echo_now_ms() - t0 < 1500);
	assert_contains(f->detail, "answered in ");
	assert_contains(f->detail,
			" ms (release: timed out after 300 ms waiting for A-RELEASE-RP)");
	echo_assert_aborted(f);
}

static void test_echo_bad_arguments(void **state)
{
	static const struct {
		const char *host, *called, *calling;
		uint16_t port;
		int timeout_ms;
	} cases[] = {
		{ "example.com", CALLED, CALLING, 104, 1000 },
		{ "::1", CALLED, CALLING, 104, 1000 },
		{ NULL, CALLED, CALLING, 104, 1000 },
		{ "127.0.0.1", CALLED, CALLING, 0, 1000 },
		{ "127.0.0.1", CALLED, CALLING, 104, 0 },
		{ "127.0.0.1", "", CALLING, 104, 1000 },
		{ "127.0.0.1", "    ", CALLING, 104, 1000 },
		{ "127.0.0.1", "SEVENTEEN_LETTERS", CALLING, 104, 1000 },
		{ "127.0.0.1", CALLED, "BACK\\SLASH", 104, 1000 },
		{ "127.0.0.1", CALLED, "TAB\t", 104, 1000 },
		{ "127.0.0.1", CALLED, NULL, 104, 1000 },
	};
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		f->detail[0] = '\0';
		assert_int_equal(op_echo(cases[i].host, cases[i].port, cases[i].called,
					 cases[i].calling, cases[i].timeout_ms, f->detail,
					 sizeof(f->detail)),
				 -EINVAL);
		assert_true(f->detail[0] != '\0');
	}
	/* Sixteen characters fit; a short detail buffer is cut, NUL-ended;
	 * no detail at all is allowed. */
	assert_int_equal(op_echo("127.0.0.1", echo_free_port(), "SIXTEEN_LETTERS!", CALLING, 1000,
				 f->detail, 8),
			 -ECONNREFUSED);
	assert_string_equal(f->detail, "connect");
	assert_int_equal(op_echo("127.0.0.1", echo_free_port(), CALLED, CALLING, 1000, NULL, 0),
			 -ECONNREFUSED);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, echo_setup, echo_teardown)
	const struct CMUnitTest tests[] = {
		T(test_echo_storescp),
		T(test_echo_receiver),
		T(test_echo_receiver_rejects),
		T(test_echo_refused),
		T(test_echo_silent_peer),
		T(test_echo_silent_after_ac),
		T(test_echo_garbage),
		T(test_echo_huge_pdu),
		T(test_echo_pdu_over_limit),
		T(test_echo_abort),
		T(test_echo_abort_instead_of_rsp),
		T(test_echo_rejects),
		T(test_echo_context_refused),
		T(test_echo_wrong_transfer_syntax),
		T(test_echo_padded_transfer_syntax),
		T(test_echo_short_ac),
		T(test_echo_ac_item_overrun),
		T(test_echo_status_failure),
		T(test_echo_status_warning),
		T(test_echo_wrong_message_id),
		T(test_echo_wrong_command),
		T(test_echo_no_status),
		T(test_echo_element_overrun),
		T(test_echo_pdv_overrun),
		T(test_echo_other_context),
		T(test_echo_release_instead),
		T(test_echo_fragments),
		T(test_echo_close_instead_of_release),
		T(test_echo_release_unanswered),
		T(test_echo_bad_arguments),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
