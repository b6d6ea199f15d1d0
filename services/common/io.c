/*
 * io: socket I/O with a deadline (see io.h).
 */
#include "common/io.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>

#include "common/clock.h"

int op_io_wait(int fd, short events, int64_t deadline_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int64_t left;
	int n;

	for (;;) {
		left = deadline_ms - op_clock_mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		/* POLLERR and POLLHUP too: the next send or recv says what. */
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int op_io_send_all(int fd, const void *buf, size_t len, int64_t deadline_ms)
{
	const char *p = buf;
	int rc;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if ((rc = op_io_wait(fd, POLLOUT, deadline_ms)) < 0)
			return rc;
	}
	return 0;
}

ssize_t op_io_recv_some(int fd, void *buf, size_t len, int64_t deadline_ms)
{
	int rc;

	for (;;) {
		ssize_t n = recv(fd, buf, len, 0);

		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if ((rc = op_io_wait(fd, POLLIN, deadline_ms)) < 0)
			return rc;
	}
}

int op_io_recv_all(int fd, void *buf, size_t len, int64_t deadline_ms)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = op_io_recv_some(fd, p, len, deadline_ms);

		if (n < 0)
			return (int)n;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
