/*
 * io: blocking socket I/O bounded by a deadline, for the clients that run
 * on a thread of their own (the C-ECHO of /healthz, outpostctl): however
 * the peer behaves - silent, slow, a byte at a time - the caller gets its
 * thread back by the deadline.
 *
 * The socket must be non-blocking (O_NONBLOCK); the functions poll(2) for
 * it until deadline_ms, a time of op_clock_mono_ms(). Sends never raise
 * SIGPIPE (MSG_NOSIGNAL). Errors are negative errno codes; -ETIMEDOUT
 * when the deadline passed.
 *
 * Thread-safe (no shared state).
 */
#ifndef OP_IO_H
#define OP_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Waits until fd is ready for events (POLLIN, POLLOUT), or has an error
 * or a hang-up for the next call to report. 0, -ETIMEDOUT or -errno. */
int op_io_wait(int fd, short events, int64_t deadline_ms);

/* Sends all of buf. 0, -ETIMEDOUT or -errno (-EPIPE, -ECONNRESET: the peer
 * closed). */
int op_io_send_all(int fd, const void *buf, size_t len, int64_t deadline_ms);

/* Receives exactly len bytes. 0, -ETIMEDOUT, -ECONNRESET when the peer
 * closed before len bytes, or -errno. */
int op_io_recv_all(int fd, void *buf, size_t len, int64_t deadline_ms);

/* Receives what is there, at most len bytes (waiting for at least one):
 * the count, 0 when the peer closed, or -ETIMEDOUT / -errno. */
ssize_t op_io_recv_some(int fd, void *buf, size_t len, int64_t deadline_ms);

#endif
