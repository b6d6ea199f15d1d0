/*
 * test_echo_pdu: services/console/echo_pdu.c, the PDUs the C-ECHO client
 * sends, as a canned peer (echo_fixture.h) receives them: checked against
 * PS3.8 and PS3.7 item by item and byte by byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <string.h>

#include "console/echo.h"
#include "echo_fixture.h"

/* --- what the client sends ------------------------------------------------------------ */

/* The A-ASSOCIATE-RQ item by item (PS3.8 9.3.2), then the C-ECHO-RQ and
 * the A-RELEASE-RQ byte for byte; a peer answering all is a success. */
static void test_echo_sends(void **state)
{
	static const uint8_t echo_rq[] = {
		0x04, 0,   0,    0,   0,   74,   /* P-DATA-TF */
		0,    0,   0,    70,  1,   0x03, /* PDV: context 1, last command */
		0,    0,   0,    0,   4,   0,    0,   0,   56,   0,   0,   0, /* CommandGroupLength */
		0,    0,   2,    0,   18,  0,    0,   0,   '1',  '.', '2', '.', '8', '4',
		'0',  '.', '1',  '0', '0', '0',  '8', '.', '1',  '.', '1', 0, /* AffectedSOPClassUID */
		0,    0,   0,    1,   2,   0,    0,   0,   0x30, 0, /* CommandField C-ECHO-RQ */
		0,    0,   0x10, 1,   2,   0,    0,   0,   1,    0, /* MessageID */
		0,    0,   0,    8,   2,   0,    0,   0,   1,    1, /* CommandDataSetType: none */
	};
	static const uint8_t release_rq[] = { 0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0 };
	struct fx *f = *state;
	const struct bytes *rq = &f->peer.got[0];
	int seen_ctx = 0, seen_pc = 0, seen_user = 0;
	size_t off;

	echo_script_answered(f, 1);
	assert_int_equal(echo_peer(f, 5000), 0);
	assert_contains(f->detail, "answered in ");

	assert_int_equal(f->peer.n_got, 3);
	assert_true(rq->n >= 74);
	assert_int_equal(rq->b[0], 0x01);
	assert_int_equal(be32(rq->b + 2), rq->n - 6);
	assert_int_equal(be16(rq->b + 6), 1);
	assert_memory_equal(rq->b + 10, "OUTPOST         ", 16);
	assert_memory_equal(rq->b + 26, "ECHOTEST        ", 16);
	for (off = 74; off + 4 <= rq->n;) {
		const uint8_t *it = rq->b + off;
		size_t len = be16(it + 2);

		assert_true(off + 4 + len <= rq->n);
		if (it[0] == 0x10) {
			assert_int_equal(len, 21);
			assert_memory_equal(it + 4, "1.2.840.10008.3.1.1.1", 21);
			seen_ctx = 1;
		} else if (it[0] == 0x20) {
			static const uint8_t
				pc
					[] = {
						1,    0,   0,   0, /* context 1 */
						0x30, 0,   0,   17,  '1', '.', '2', '.',
						'8',  '4', '0', '.', '1', '0', '0', '0',
						'8',  '.', '1', '.', '1', /* Verification */
						0x40, 0,   0,   17,  '1', '.', '2', '.',
						'8',  '4', '0', '.', '1', '0', '0', '0',
						'8',  '.', '1', '.', '2', /* Implicit VR LE */
					};

			assert_int_equal(len, sizeof(pc));
			assert_memory_equal(it + 4, pc, sizeof(pc));
			seen_pc = 1;
		} else if (it[0] == 0x50) {
			static const uint8_t max_len[] = { 0x51, 0, 0, 4, 0, 0, 0x40, 0 };
			const char *uid = OP_ECHO_IMPLEMENTATION_UID, *ver = "OUTPOST";
			const uint8_t *sub = it + 4;

			assert_memory_equal(sub, max_len, sizeof(max_len));
			sub += sizeof(max_len);
			assert_int_equal(sub[0], 0x52);
			assert_int_equal(be16(sub + 2), strlen(uid));
			assert_memory_equal(sub + 4, uid, strlen(uid));
			sub += 4 + strlen(uid);
			assert_int_equal(sub[0], 0x55);
			assert_int_equal(be16(sub + 2), strlen(ver));
			assert_memory_equal(sub + 4, ver, strlen(ver));
			sub += 4 + strlen(ver);
			assert_int_equal(sub - it, 4 + len);
			seen_user = 1;
		}
		off += 4 + len;
	}
	assert_int_equal(off, rq->n);
	assert_true(seen_ctx && seen_pc && seen_user);

	assert_int_equal(f->peer.got[1].n, sizeof(echo_rq));
	assert_memory_equal(f->peer.got[1].b, echo_rq, sizeof(echo_rq));
	assert_int_equal(f->peer.got[2].n, sizeof(release_rq));
	assert_memory_equal(f->peer.got[2].b, release_rq, sizeof(release_rq));
	assert_int_equal(f->peer.tail.n, 0); /* released: no A-ABORT after */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_echo_sends, echo_setup, echo_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
