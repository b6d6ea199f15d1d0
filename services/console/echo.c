/*
 * echo: a C-ECHO over the DICOM Upper Layer (see echo.h).
 *
 * PS3.8 section 9.3 gives the PDU layouts used here: a 6-byte header (type,
 * reserved, 32-bit length) and big-endian fields. The DIMSE command set
 * inside P-DATA-TF is Implicit VR Little Endian (PS3.7 section 6.3.1).
 * This file takes the association's steps and reads what the peer sends;
 * echo_pdu.c builds what it sends.
 *
 * One call owns one socket and one state (struct echo) on its stack, so
 * calls on several threads never meet. The socket is non-blocking and
 * every wait is a poll() up to the call's one deadline.
 */
#include "console/echo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/io.h"
#include "common/parse.h"
#include "console/echo_pdu.h"

/* A C-ECHO-RSP command set is under 200 bytes; this is generous. */
#define COMMAND_MAX 4096

struct echo {
	int fd;
	int timeout_ms;
	int64_t start_ms, deadline_ms;
	const char *host;
	uint16_t port;
	const char *step; /* what the call is doing, for the messages */
	int abort_owed;   /* an association is (being) set up: abort it on failure */
	uint8_t type;     /* the last PDU read: its type, body and length */
	uint8_t *body;
	uint32_t len;
	char msg[256]; /* copied to the caller's detail on return */
};

/* --- small helpers ---------------------------------------------------------- */

/* Sets the message; returns rc, so that a failure reads as one statement. */
__attribute__((format(printf, 3, 4))) static int say(struct echo *e, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return rc;
}

static const char *error_text(int err, char *buf, size_t size)
{
	/* The GNU strerror_r (_GNU_SOURCE): thread-safe, unlike strerror. */
	return strerror_r(err, buf, size);
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static const char *pdu_name(uint8_t type)
{
	switch (type) {
	case PDU_ASSOCIATE_RQ: return "A-ASSOCIATE-RQ";
	case PDU_ASSOCIATE_AC: return "A-ASSOCIATE-AC";
	case PDU_ASSOCIATE_RJ: return "A-ASSOCIATE-RJ";
	case PDU_DATA: return "P-DATA-TF";
	case PDU_RELEASE_RQ: return "A-RELEASE-RQ";
	case PDU_RELEASE_RP: return "A-RELEASE-RP";
	case PDU_ABORT: return "A-ABORT";
	default: return "unknown";
	}
}

/* --- socket I/O, bounded by the deadline ----------------------------------- */

/* The message for an I/O failure during e->step; returns rc. */
static int io_failed(struct echo *e, int rc)
{
	char buf[128];

	switch (rc) {
	case -ETIMEDOUT: return say(e, rc, "timed out after %d ms %s", e->timeout_ms, e->step);
	case -ECONNRESET:
	case -EPIPE: return say(e, -ECONNRESET, "connection closed by the peer while %s", e->step);
	case -ENOMEM: return say(e, rc, "out of memory while %s", e->step);
	default: return say(e, rc, "%s while %s", error_text(-rc, buf, sizeof(buf)), e->step);
	}
}

static int send_all(struct echo *e, const uint8_t *buf, size_t len)
{
	int rc = op_io_send_all(e->fd, buf, len, e->deadline_ms);

	return rc < 0 ? io_failed(e, rc) : 0;
}

static int recv_all(struct echo *e, uint8_t *buf, size_t len)
{
	int rc = op_io_recv_all(e->fd, buf, len, e->deadline_ms);

	return rc < 0 ? io_failed(e, rc) : 0;
}

/*
 * Reads one PDU into e->type, e->body and e->len. The header is judged
 * before the body is read: something that is not DICOM, or a length over
 * OP_ECHO_PDU_LIMIT, is refused without reading or allocating more.
 */
static int read_pdu(struct echo *e)
{
	uint8_t h[PDU_HEADER];
	int rc;

	free(e->body);
	e->body = NULL;
	e->len = 0;
	rc = recv_all(e, h, sizeof(h));
	if (rc < 0)
		return rc;
	if (h[0] < PDU_ASSOCIATE_RQ || h[0] > PDU_ABORT)
		return say(e, -EPROTO,
			   "not a DICOM peer: received %02x %02x %02x %02x %02x %02x while %s",
			   h[0], h[1], h[2], h[3], h[4], h[5], e->step);
	e->type = h[0];
	e->len = be32(h + 2);
	if (e->len > OP_ECHO_PDU_LIMIT)
		return say(e, -EPROTO,
			   "the peer announced a PDU of %" PRIu32 " bytes (%s, limit %d) while %s",
			   e->len, pdu_name(e->type), OP_ECHO_PDU_LIMIT, e->step);
	e->body = malloc(e->len ? e->len : 1);
	if (!e->body)
		return io_failed(e, -ENOMEM);
	return recv_all(e, e->body, e->len);
}

static int unexpected(struct echo *e)
{
	return say(e, -EPROTO, "unexpected %s (PDU type 0x%02x) while %s", pdu_name(e->type),
		   e->type, e->step);
}

/* --- A-ABORT, A-ASSOCIATE-RJ: reasons in words (PS3.8 tables 9-21, 9-26) ---- */

static const char *reject_reason(unsigned source, unsigned reason)
{
	if (source == 1) {
		switch (reason) {
		case 1: return "no reason given";
		case 2: return "application context name not supported";
		case 3: return "calling AE title not recognized";
		case 7: return "called AE title not recognized";
		}
	} else if (source == 2) {
		switch (reason) {
		case 1: return "no reason given";
		case 2: return "protocol version not supported";
		}
	} else if (source == 3) {
		switch (reason) {
		case 1: return "temporary congestion";
		case 2: return "local limit exceeded";
		}
	}
	return "unknown reason";
}

static int rejected(struct echo *e)
{
	unsigned result, source, reason;

	e->abort_owed = 0;
	if (e->len < 4)
		return say(e, -EPROTO,
			   "association rejected (a short A-ASSOCIATE-RJ of %" PRIu32 " bytes)",
			   e->len);
	result = e->body[1];
	source = e->body[2];
	reason = e->body[3];
	return say(e, -EPROTO, "association rejected%s: %s (result %u, source %u, reason %u)",
		   result == 2 ? " for now" : "", reject_reason(source, reason), result, source,
		   reason);
}

static const char *abort_reason(unsigned source, unsigned reason)
{
	if (source == 0)
		return "by the called AE";
	if (source != 2)
		return "from an unknown source";
	switch (reason) {
	case 0: return "reason not specified";
	case 1: return "unrecognized PDU";
	case 2: return "unexpected PDU";
	case 4: return "unrecognized PDU parameter";
	case 5: return "unexpected PDU parameter";
	case 6: return "invalid PDU parameter value";
	default: return "unknown reason";
	}
}

static int aborted(struct echo *e)
{
	unsigned source, reason;

	e->abort_owed = 0;
	if (e->len < 4)
		return say(e, -EPROTO, "association aborted by the peer while %s", e->step);
	source = e->body[2];
	reason = e->body[3];
	return say(e, -EPROTO,
		   "association aborted by the peer: %s (source %u, reason %u) while %s",
		   abort_reason(source, reason), source, reason, e->step);
}

/* Best effort, without waiting: the socket is closed right after. */
static void send_abort(struct echo *e)
{
	static const uint8_t pdu[] = { PDU_ABORT, 0, 0, 0, 0, 4, 0, 0, 0, 0 };

	/* If it fails, the peer sees the connection close instead. */
	(void)send(e->fd, pdu, sizeof(pdu), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* --- the steps ---------------------------------------------------------------- */

static int connect_to(struct echo *e)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(e->port) };
	const char *ip = strcmp(e->host, "localhost") == 0 ? "127.0.0.1" : e->host;
	char buf[128];
	int one = 1, err = 0, rc = 0;
	socklen_t len = sizeof(err);

	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		return say(e, -EINVAL, "host \"%.64s\" is neither an IPv4 address nor localhost",
			   e->host);
	e->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (e->fd < 0) {
		rc = -errno;
		return say(e, rc, "cannot create a socket: %s", error_text(-rc, buf, sizeof(buf)));
	}
	/* Each PDU goes out in one send(); Nagle could hold the next one
	 * back for the peer's delayed ACK. Only a delay if it fails. */
	setsockopt(e->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(e->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINPROGRESS)
			err = errno;
		else if ((rc = op_io_wait(e->fd, POLLOUT, e->deadline_ms)) < 0)
			err = -rc;
		else if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
	}
	switch (err) {
	case 0: return 0;
	case ECONNREFUSED:
		return say(e, -ECONNREFUSED, "connection refused by %s:%u", e->host, e->port);
	case ETIMEDOUT:
		return say(e, -ETIMEDOUT, "timed out after %d ms connecting to %s:%u",
			   e->timeout_ms, e->host, e->port);
	default:
		return say(e, -err, "cannot connect to %s:%u: %s", e->host, e->port,
			   error_text(err, buf, sizeof(buf)));
	}
}

/* Was the Verification context accepted, with the transfer syntax proposed?
 * (The answer to each proposed context is an item 0x21, PS3.8 9.3.3.2.) */
static int check_ac(struct echo *e)
{
	const uint8_t *p = e->body, *pc = NULL;
	size_t off = AC_FIXED, pc_len = 0;
	const char *why;

	if (e->len < AC_FIXED)
		return say(e, -EPROTO, "a short A-ASSOCIATE-AC (%" PRIu32 " bytes)", e->len);
	while (off < e->len) {
		uint16_t len;

		if (e->len - off < 4)
			return say(e, -EPROTO, "a truncated item in the A-ASSOCIATE-AC");
		len = be16(p + off + 2);
		if (len > e->len - off - 4)
			return say(e, -EPROTO, "item 0x%02x of the A-ASSOCIATE-AC overruns the PDU",
				   p[off]);
		if (!pc && p[off] == ITEM_PRESENTATION_CONTEXT_AC && len >= 4 &&
		    p[off + 4] == PC_ID) {
			pc = p + off + 4;
			pc_len = len;
		}
		off += 4 + (size_t)len;
	}
	if (!pc)
		return say(e, -EPROTO,
			   "the A-ASSOCIATE-AC does not answer the Verification "
			   "presentation context");
	switch (pc[2]) {
	case 0: why = NULL; break;
	case 1: why = "rejected by the called AE"; break;
	case 2: why = "rejected, no reason given"; break;
	case 3: why = "Verification SOP Class not supported"; break;
	case 4: why = "Implicit VR Little Endian not supported"; break;
	default: why = "unknown result"; break;
	}
	if (why)
		return say(e, -EPROTO, "presentation context refused: %s (result %u)", why, pc[2]);

	/* The transfer syntax sub-item must name the one we proposed; some
	 * implementations pad a UID with a NUL or a space. */
	for (size_t sub = 4; sub + 4 <= pc_len;) {
		uint16_t len = be16(pc + sub + 2);
		size_t n = len;

		if (len > pc_len - sub - 4)
			break;
		if (pc[sub] == ITEM_TRANSFER_SYNTAX) {
			while (n > 0 && (pc[sub + 4 + n - 1] == '\0' || pc[sub + 4 + n - 1] == ' '))
				n--;
			if (n == strlen(UID_IMPLICIT_LE) &&
			    memcmp(pc + sub + 4, UID_IMPLICIT_LE, n) == 0)
				return 0;
			return say(e, -EPROTO,
				   "the peer accepted Verification with transfer syntax "
				   "\"%.*s\", which was not proposed",
				   (int)(n < 64 ? n : 64), (const char *)(pc + sub + 4));
		}
		sub += 4 + (size_t)len;
	}
	return say(e, -EPROTO, "the A-ASSOCIATE-AC accepts Verification without a transfer syntax");
}

static int associate(struct echo *e, const char *called, const char *calling)
{
	uint8_t buf[512];
	struct op__echo_pdu o = { buf, 0, sizeof(buf) };
	int rc;

	op__echo_pdu_associate_rq(&o, called, calling);
	if (o.len > o.cap)
		return say(e, -EOVERFLOW, "internal error: A-ASSOCIATE-RQ too long");
	e->step = "sending A-ASSOCIATE-RQ";
	e->abort_owed = 1;
	rc = send_all(e, buf, o.len);
	if (rc < 0)
		return rc;
	e->step = "waiting for A-ASSOCIATE-AC";
	rc = read_pdu(e);
	if (rc < 0)
		return rc;
	switch (e->type) {
	case PDU_ASSOCIATE_AC: return check_ac(e);
	case PDU_ASSOCIATE_RJ: return rejected(e);
	case PDU_ABORT: return aborted(e);
	default: return unexpected(e);
	}
}

/*
 * Reads P-DATA-TF PDUs until the last fragment of a command set, which it
 * reassembles into cmd. Data set fragments (a C-ECHO-RSP has none) are
 * skipped.
 */
static int read_command(struct echo *e, uint8_t *cmd, size_t cap, size_t *cmd_len)
{
	size_t have = 0;
	int rc;

	for (;;) {
		int last = 0;
		size_t off = 0;

		rc = read_pdu(e);
		if (rc < 0)
			return rc;
		if (e->type == PDU_ABORT)
			return aborted(e);
		if (e->type != PDU_DATA)
			return unexpected(e);
		while (off < e->len) {
			uint32_t len;
			const uint8_t *pdv = e->body + off;

			if (e->len - off < 6)
				return say(e, -EPROTO, "a truncated PDV in a P-DATA-TF while %s",
					   e->step);
			len = be32(pdv);
			if (len < 2 || len > e->len - off - 4)
				return say(e, -EPROTO,
					   "a PDV length of %" PRIu32 " in a P-DATA-TF of %" PRIu32
					   " bytes while %s",
					   len, e->len, e->step);
			if (pdv[4] != PC_ID)
				return say(e, -EPROTO,
					   "a PDV for presentation context %u, not %u, while %s",
					   pdv[4], PC_ID, e->step);
			if (pdv[5] & 0x01) {
				if (last)
					return say(e, -EPROTO, "a second command set while %s",
						   e->step);
				if (len - 2 > cap - have)
					return say(e, -EPROTO,
						   "a command set over %zu bytes while %s", cap,
						   e->step);
				memcpy(cmd + have, pdv + 6, len - 2);
				have += len - 2;
				last = (pdv[5] & 0x02) != 0;
			}
			off += 4 + (size_t)len;
		}
		if (last) {
			*cmd_len = have;
			return 0;
		}
	}
}

static const char *status_text(uint16_t s)
{
	switch (s) {
	case 0x0110: return "processing failure";
	case 0x0122: return "SOP class not supported";
	case 0x0211: return "unrecognized operation";
	case 0x0212: return "mistyped argument";
	case 0xfe00: return "cancelled";
	}
	if ((s & 0xf000) == 0xb000)
		return "warning";
	if (s == 0xff00 || s == 0xff01)
		return "pending";
	return "failure";
}

/* Checks a C-ECHO-RSP command set (PS3.7 9.3.5.2) against our request. */
static int check_rsp(struct echo *e, const uint8_t *c, size_t len)
{
	int have_field = 0, have_id = 0, have_status = 0;
	uint16_t field = 0, id = 0, status = 0;
	char comment[65] = "";
	size_t off = 0;

	while (off < len) {
		uint16_t group, element;
		uint32_t vlen;
		const uint8_t *v;

		if (len - off < 8)
			return say(e, -EPROTO, "a truncated element in the C-ECHO-RSP command set");
		group = le16(c + off);
		element = le16(c + off + 2);
		vlen = le32(c + off + 4);
		if (vlen > len - off - 8)
			return say(e, -EPROTO,
				   "element (%04x,%04x) of %" PRIu32
				   " bytes overruns the C-ECHO-RSP command set",
				   group, element, vlen);
		v = c + off + 8;
		if (group == 0x0000 && vlen == 2) {
			if (element == 0x0100) {
				field = le16(v);
				have_field = 1;
			} else if (element == 0x0120) {
				id = le16(v);
				have_id = 1;
			} else if (element == 0x0900) {
				status = le16(v);
				have_status = 1;
			}
		}
		if (group == 0x0000 && element == 0x0902) {
			/* ErrorComment (LO), kept printable for a one-line message. */
			size_t n = vlen < sizeof(comment) - 1 ? vlen : sizeof(comment) - 1;

			for (size_t i = 0; i < n && v[i] != '\0'; i++) {
				comment[i] = v[i] >= 0x20 && v[i] < 0x7f ? (char)v[i] : '?';
				comment[i + 1] = '\0';
			}
		}
		off += 8 + (size_t)vlen;
	}
	if (!have_field)
		return say(e, -EPROTO, "an answer without a CommandField (0000,0100)");
	if (field != C_ECHO_RSP)
		return say(e, -EPROTO, "expected a C-ECHO-RSP (0x8030), got command 0x%04x", field);
	if (!have_id)
		return say(e, -EPROTO,
			   "a C-ECHO-RSP without MessageIDBeingRespondedTo (0000,0120)");
	if (id != MESSAGE_ID)
		return say(e, -EPROTO, "a C-ECHO-RSP to message %u, not %u", id, MESSAGE_ID);
	if (!have_status)
		return say(e, -EPROTO, "a C-ECHO-RSP without a Status (0000,0900)");
	if (status != 0x0000)
		return say(e, -EPROTO, "C-ECHO-RSP status 0x%04x (%s)%s%s", status,
			   status_text(status), comment[0] ? ": " : "", comment);
	return 0;
}

static int echo(struct echo *e)
{
	uint8_t buf[128], cmd[COMMAND_MAX];
	struct op__echo_pdu o = { buf, 0, sizeof(buf) };
	size_t cmd_len = 0;
	int rc;

	op__echo_pdu_echo_rq(&o);
	if (o.len > o.cap)
		return say(e, -EOVERFLOW, "internal error: C-ECHO-RQ too long");
	e->step = "sending C-ECHO-RQ";
	rc = send_all(e, buf, o.len);
	if (rc < 0)
		return rc;
	e->step = "waiting for C-ECHO-RSP";
	rc = read_command(e, cmd, sizeof(cmd), &cmd_len);
	if (rc < 0)
		return rc;
	return check_rsp(e, cmd, cmd_len);
}

/* A peer that closes instead of answering A-RELEASE-RP has released too. */
static int release(struct echo *e)
{
	static const uint8_t rq[] = { PDU_RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0 };
	int rc;

	e->step = "sending A-RELEASE-RQ";
	rc = send_all(e, rq, sizeof(rq));
	if (rc < 0)
		return rc;
	e->step = "waiting for A-RELEASE-RP";
	for (;;) {
		rc = read_pdu(e);
		if (rc == -ECONNRESET) {
			e->abort_owed = 0;
			return 0;
		}
		if (rc < 0)
			return rc;
		switch (e->type) {
		case PDU_RELEASE_RP: e->abort_owed = 0; return 0;
		case PDU_DATA: break; /* late data the echo did not need */
		case PDU_ABORT: return aborted(e);
		default: return unexpected(e);
		}
	}
}

int op_echo(const char *host, uint16_t port, const char *called_ae, const char *calling_ae,
	    int timeout_ms, char *detail, size_t detail_len)
{
	struct echo e = { .fd = -1, .timeout_ms = timeout_ms, .host = host, .port = port };
	int64_t answered_ms;
	int rc;

	e.start_ms = op_clock_mono_ms();
	e.deadline_ms = e.start_ms + (timeout_ms > 0 ? timeout_ms : 0);
	e.step = "connecting";
	if (!host || port == 0 || timeout_ms <= 0) {
		rc = say(&e, -EINVAL, "invalid arguments (host, port %u, timeout %d ms)", port,
			 timeout_ms);
		goto out;
	}
	if (!op_ae_title_valid(called_ae) || !op_ae_title_valid(calling_ae)) {
		rc = say(&e, -EINVAL,
			 "invalid AE title (called \"%.32s\", calling \"%.32s\"): 1 to 16 "
			 "printable characters, no backslash",
			 called_ae ? called_ae : "", calling_ae ? calling_ae : "");
		goto out;
	}
	rc = connect_to(&e);
	if (rc < 0)
		goto out;
	rc = associate(&e, called_ae, calling_ae);
	if (rc < 0)
		goto out;
	rc = echo(&e);
	if (rc < 0)
		goto out;
	answered_ms = op_clock_mono_ms() - e.start_ms;
	if (release(&e) == 0) {
		say(&e, 0, "answered in %" PRId64 " ms", answered_ms);
	} else {
		char why[sizeof(e.msg)];

		memcpy(why, e.msg, sizeof(why));
		say(&e, 0, "answered in %" PRId64 " ms (release: %s)", answered_ms, why);
	}
out:
	if (e.fd >= 0) {
		if (e.abort_owed)
			send_abort(&e);
		close(e.fd);
	}
	free(e.body);
	if (detail && detail_len > 0)
		snprintf(detail, detail_len, "%s", e.msg);
	return rc;
}
