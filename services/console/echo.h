/*
 * echo: a blocking DICOM C-ECHO client (Verification SOP Class), enough of
 * the DICOM Upper Layer (PS3.8) and DIMSE (PS3.7) to ask "does the DICOM
 * service on host:port answer?" from pure C, for the uplink's /healthz and
 * the appliance's health check. Debian has no C library for this, and the
 * uplink stays free of DCMTK (the only C++ is the receiver's shim).
 *
 * The peer is untrusted: every PDU length is checked before anything is
 * read into memory, and nothing is read past a buffer.
 */
#ifndef OP_ECHO_H
#define OP_ECHO_H

#include <stddef.h>
#include <stdint.h>

/* Our Implementation Class UID (A-ASSOCIATE-RQ sub-item 0x52). */
#define OP_ECHO_IMPLEMENTATION_UID "1.2.826.0.1.3680043.10.1235.1"
/* Our Implementation Version Name (sub-item 0x55, at most 16 characters). */
#define OP_ECHO_IMPLEMENTATION_VERSION "OUTPOST"
/* The largest P-DATA-TF we accept (announced in the Maximum Length sub-item). */
#define OP_ECHO_MAX_PDU 16384
/* A PDU announcing more than this is refused before it is read. */
#define OP_ECHO_PDU_LIMIT (1024 * 1024)

/*
 * Connects to host:port (an IPv4 address in dotted form, or "localhost" for
 * 127.0.0.1: no name resolution, which could block past the timeout),
 * requests an association as calling_ae to called_ae proposing the
 * Verification SOP Class with Implicit VR Little Endian, sends a C-ECHO-RQ,
 * reads the C-ECHO-RSP and releases the association.
 *
 * timeout_ms bounds the whole call (connect, association, echo and
 * release together), so a caller knows how long its thread can be held.
 * A release that the remaining time does not cover is given up without
 * changing the result: the echo was answered.
 *
 * Returns 0 when the C-ECHO-RSP carries status 0x0000. Otherwise a negative
 * errno:
 *   -EINVAL        a bad argument (host not IPv4/localhost, port 0, an AE
 *                  title empty, longer than 16 or with a backslash or a
 *                  control character, timeout_ms <= 0)
 *   -ECONNREFUSED  nothing listens on host:port
 *   -ETIMEDOUT     the peer did not answer within timeout_ms
 *   -ECONNRESET    the peer closed the connection before answering
 *   -EPROTO        the association was rejected or aborted, the
 *                  presentation context was refused, the peer sent
 *                  something that is not DICOM (or a PDU over
 *                  OP_ECHO_PDU_LIMIT), or the C-ECHO-RSP is not one or its
 *                  status is not success
 *   other          from socket(), connect(), send() or recv()
 * and, whatever the result, a one-line description for a field engineer
 * in detail (truncated to detail_len; detail may be NULL when detail_len is
 * 0): "answered in 3 ms", "association rejected: calling AE title not
 * recognized (result 1, source 1, reason 3)", "timed out after 5000 ms
 * waiting for A-ASSOCIATE-AC", ...
 *
 * Thread-safe (no shared state); blocks the calling thread, so on the
 * uplink it runs on libuv's thread pool. The socket is closed on return.
 * SIGPIPE is not raised (send with MSG_NOSIGNAL).
 */
int op_echo(const char *host, uint16_t port, const char *called_ae, const char *calling_ae,
	    int timeout_ms, char *detail, size_t detail_len);

#endif
