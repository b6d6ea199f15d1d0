/*
 * echo_fixture: what the tests of the C-ECHO client (test_echo*.c) share:
 * child processes on free loopback ports, PDUs built byte by byte, and a
 * canned peer, a thread playing a script (read a PDU, send these bytes,
 * close), as curl tests its protocols. Included after <cmocka.h>.
 *
 * Peers listen on loopback ports in 20000-32000 (below the kernel's
 * ephemeral range); children are ended by PID.
 */
#ifndef OP_ECHO_FIXTURE_H
#define OP_ECHO_FIXTURE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "console/echo.h"

#define CALLED "OUTPOST"
#define CALLING "ECHOTEST"

/* --- time, ports, processes ------------------------------------------------------ */

uint64_t echo_now_ms(void); /* monotonic */
/* A port nothing listens on (for a child process to bind). */
uint16_t echo_free_port(void);
/* Starts argv with stdout and stderr into log; returns its PID. */
pid_t echo_spawn(char *const argv[], const char *log);
/* Waits until something listens on port; fails if pid exits first. */
void echo_wait_listening(pid_t pid, uint16_t port, const char *log);
/* The build directory this binary belongs to (build/ or build/asan/). */
void echo_build_dir(char *out, size_t size);

/* --- bytes ------------------------------------------------------------------------ */

struct bytes {
	uint8_t b[1024];
	size_t n;
};

static inline uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void echo_put(struct bytes *o, const void *p, size_t n);
void echo_put_u8(struct bytes *o, uint8_t v);
void echo_put_be16(struct bytes *o, uint16_t v);
void echo_put_be32(struct bytes *o, uint32_t v);
void echo_put_le16(struct bytes *o, uint16_t v);
void echo_put_le32(struct bytes *o, uint32_t v);
/* Sets a 4-byte big-endian length at `at` to the bytes after it. */
void echo_patch32(struct bytes *o, size_t at);
/* A PDU header of type; returns where its length goes (echo_patch32()). */
size_t echo_put_pdu(struct bytes *o, uint8_t type);

/* An A-ASSOCIATE-AC answering context 1 with result and transfer syntax;
 * echo_ac_ok(): accepted, Implicit VR Little Endian. */
void echo_ac(struct bytes *o, uint8_t result, const char *ts);
void echo_ac_ok(struct bytes *o);
/* A PDU of type with a 4-byte body a, b, c, d. */
void echo_four(struct bytes *o, uint8_t type, uint8_t a, uint8_t b, uint8_t c, uint8_t d);
void echo_rj(struct bytes *o, uint8_t result, uint8_t source, uint8_t reason);
void echo_abort_pdu(struct bytes *o, uint8_t source, uint8_t reason);
void echo_release_rp(struct bytes *o);
/* A command element of value v (US), Implicit VR Little Endian. */
void echo_el_us(struct bytes *o, uint16_t element, uint16_t v);
/* A C-ECHO-RSP command set (Implicit VR LE), with a group length. */
void echo_rsp_command(struct bytes *o, uint16_t field, uint16_t id, uint16_t status,
		      const char *comment);
/* P-DATA-TF PDUs carrying cmd in `pieces` fragments, one PDU each. */
void echo_pdata(struct bytes *o, const struct bytes *cmd, int pieces, uint8_t pc_id);
/* A C-ECHO-RSP to message id with status, in `pieces` P-DATA-TF PDUs. */
void echo_rsp(struct bytes *o, uint16_t status, uint16_t id, int pieces);

/* --- a canned peer and the fixture ---------------------------------------------------- */

enum act { PEER_RECV, PEER_SEND, PEER_CLOSE };

#define MAX_ACTS 8

struct peer {
	int lfd;
	uint16_t port;
	pthread_t thread;
	int started;
	int n;
	enum act acts[MAX_ACTS];
	struct bytes send[MAX_ACTS];
	/* What the client sent: a PDU per PEER_RECV, then what came until it closed. */
	struct bytes got[MAX_ACTS];
	int n_got;
	struct bytes tail;
	const char *error; /* the peer's own failure (no cmocka off the main thread) */
};

struct fx {
	char dir[64];
	pid_t child;
	struct peer peer;
	char detail[256];
};

/* cmocka's setup and teardown: a struct fx in *state, its directory
 * removed and its child and peer ended after. */
int echo_setup(void **state);
int echo_teardown(void **state);

/* For another run in the same test (after echo_peer). */
void echo_reset_peer(struct fx *f);
/* Script steps: read a PDU; send the bytes the caller builds in place. */
void echo_expect_pdu(struct fx *f);
struct bytes *echo_answer(struct fx *f);
/* The script of a peer that answers well: A-ASSOCIATE-AC, the C-ECHO-RSP
 * in `pieces` P-DATA-TF PDUs, A-RELEASE-RP. */
void echo_script_answered(struct fx *f, int pieces);
/* Starts the peer's thread on a free port; echo_finish_peer() joins it
 * and fails the test if the peer failed. */
void echo_start_peer(struct fx *f);
void echo_finish_peer(struct fx *f);

/* Runs op_echo against the canned peer; the peer has finished on return. */
static inline int echo_peer(struct fx *f, int timeout_ms)
{
	int rc;

	echo_start_peer(f);
	rc = op_echo("127.0.0.1", f->peer.port, CALLED, CALLING, timeout_ms, f->detail,
		     sizeof(f->detail));
	echo_finish_peer(f);
	return rc;
}

#define assert_contains(s, part)                                                                   \
	do {                                                                                       \
		if (!strstr((s), (part)))                                                          \
			fail_msg("\"%s\" does not contain \"%s\"", (s), (part));                   \
	} while (0)

/* The client's last words after a failure: an A-ABORT. */
void echo_assert_aborted(const struct fx *f);

#endif
