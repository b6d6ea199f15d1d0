/*
 * test_io: services/common/io.c, socket I/O bounded by a deadline. What a
 * client on a thread of its own counts on: however the peer behaves -
 * silent, slow, a byte at a time, gone - the call returns by the deadline
 * (-ETIMEDOUT), or at once with what happened (-ECONNRESET, -EPIPE).
 *
 * Peers are socketpairs and TCP connections on 127.0.0.1 in this process.
 * The machine is shared with other builds: a deadline test asserts that
 * the call returned not before the deadline and at most a few seconds
 * after it, never milliseconds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/io.h"

#define LATE_MS 3000 /* how late after its deadline a call may return, at most */

/* --- fixture ---------------------------------------------------------------------- */

/* A peer that sends n bytes, one every interval_ms, then stops. */
struct slow {
	int fd;
	int n, interval_ms;
};

struct fx {
	int ours, peer; /* a socketpair; ours is non-blocking */
	int fds[4];     /* more sockets a test opened (-1: none), closed after */
	pthread_t writer;
	int writing; /* the writer thread runs */
	struct slow slow;
};

static void nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	assert_true(flags >= 0);
	assert_int_equal(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	int sv[2];

	if (!f)
		return -1;
	for (int i = 0; i < 4; i++)
		f->fds[i] = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		free(f);
		return -1;
	}
	f->ours = sv[0];
	f->peer = sv[1];
	*state = f;
	nonblocking(f->ours);
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	/* Closing ours first ends a writer still sending (-EPIPE). */
	close(f->ours);
	if (f->writing)
		pthread_join(f->writer, NULL);
	if (f->peer >= 0)
		close(f->peer);
	for (int i = 0; i < 4; i++)
		if (f->fds[i] >= 0)
			close(f->fds[i]);
	free(f);
	return 0;
}

/* Keeps fd to be closed by the teardown; returns it. */
static int keep(struct fx *f, int fd)
{
	assert_true(fd >= 0);
	for (int i = 0; i < 4; i++)
		if (f->fds[i] < 0)
			return f->fds[i] = fd;
	close(fd);
	fail();
	return -1;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

static void *send_slowly(void *arg)
{
	const struct slow *s = arg;

	for (int i = 0; i < s->n; i++) {
		if (send(s->fd, "x", 1, MSG_NOSIGNAL) != 1)
			break;
		sleep_ms(s->interval_ms);
	}
	return NULL;
}

/* Starts a thread that sends n bytes to ours, one every interval_ms. */
static void start_slow_peer(struct fx *f, int n, int interval_ms)
{
	f->slow = (struct slow){ f->peer, n, interval_ms };
	assert_int_equal(pthread_create(&f->writer, NULL, send_slowly, &f->slow), 0);
	f->writing = 1;
}

/* The call that returned rc timed out, not before deadline nor long after. */
static void assert_timed_out(int rc, int64_t deadline)
{
	int64_t now = op_clock_mono_ms();

	assert_int_equal(rc, -ETIMEDOUT);
	if (now < deadline || now > deadline + LATE_MS)
		fail_msg("returned %lld ms after its deadline", (long long)(now - deadline));
}

/* A TCP listener on 127.0.0.1 that never accepts, and a non-blocking
 * client connected to it (the kernel completes the handshake). */
static int connect_to_silent_listener(struct fx *f)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof(addr);
	int lfd = keep(f, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	int cfd, err = -1;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &len), 0);
	cfd = keep(f, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
	if (connect(cfd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		assert_int_equal(errno, EINPROGRESS);
	assert_int_equal(op_io_wait(cfd, POLLOUT, op_clock_mono_ms() + 10000), 0);
	len = sizeof(err);
	assert_int_equal(getsockopt(cfd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	assert_int_equal(err, 0);
	return cfd;
}

/* --- what the peer sent ------------------------------------------------------------ */

static void test_io_recv_all(void **state)
{
	struct fx *f = *state;
	char buf[16] = { 0 };

	assert_int_equal(write(f->peer, "hello ", 6), 6);
	assert_int_equal(write(f->peer, "world, and more", 15), 15);
	/* Exactly len bytes, over two of the peer's writes. */
	assert_int_equal(op_io_recv_all(f->ours, buf, 11, op_clock_mono_ms() + 10000), 0);
	assert_string_equal(buf, "hello world");
	/* What is left stays for the next call. */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(op_io_recv_all(f->ours, buf, 10, op_clock_mono_ms() + 10000), 0);
	assert_string_equal(buf, ", and more");
	assert_int_equal(op_io_recv_all(f->ours, buf, 0, op_clock_mono_ms() + 10000), 0);
}

static void test_io_recv_some(void **state)
{
	struct fx *f = *state;
	char buf[16] = { 0 };

	assert_int_equal(write(f->peer, "abc", 3), 3);
	/* What is there, not the whole buffer. */
	assert_int_equal(op_io_recv_some(f->ours, buf, sizeof(buf), op_clock_mono_ms() + 10000), 3);
	assert_string_equal(buf, "abc");
	/* At most len. */
	assert_int_equal(write(f->peer, "defgh", 5), 5);
	assert_int_equal(op_io_recv_some(f->ours, buf, 2, op_clock_mono_ms() + 10000), 2);
	assert_memory_equal(buf, "de", 2);
	/* The peer closed: 0, once what it sent is read. */
	close(f->peer);
	f->peer = -1;
	assert_int_equal(op_io_recv_some(f->ours, buf, sizeof(buf), op_clock_mono_ms() + 10000), 3);
	assert_int_equal(op_io_recv_some(f->ours, buf, sizeof(buf), op_clock_mono_ms() + 10000), 0);
}

/* A peer that sends a byte at a time, well within the deadline. */
static void test_io_recv_byte_at_a_time(void **state)
{
	struct fx *f = *state;
	char buf[10];

	start_slow_peer(f, 10, 20);
	assert_int_equal(op_io_recv_all(f->ours, buf, 10, op_clock_mono_ms() + 20000), 0);
	assert_memory_equal(buf, "xxxxxxxxxx", 10);
}

/* More than the socket buffers hold, read by the peer as it comes: the
 * send waits for room, again and again, and sends it all. */
static void test_io_send_all(void **state)
{
	enum { BIG = 8 << 20 };
	struct fx *f = *state;
	char *data = test_malloc(BIG);
	struct unit_reader r;

	for (size_t i = 0; i < BIG; i++)
		data[i] = (char)(i % 253);
	unit_reader_start(&r, f->peer, BIG);
	assert_int_equal(op_io_send_all(f->ours, data, BIG, op_clock_mono_ms() + 20000), 0);
	assert_int_equal(unit_reader_join(&r), BIG);
	assert_memory_equal(r.buf, data, BIG);
	test_free(r.buf);
	test_free(data);
}

/* --- peers that do not answer ------------------------------------------------------ */

/* Nothing comes: -ETIMEDOUT at the deadline, for each way of reading. */
static void test_io_silent_peer(void **state)
{
	struct fx *f = *state;
	char buf[4];
	int64_t deadline;

	deadline = op_clock_mono_ms() + 1000;
	assert_timed_out(op_io_recv_all(f->ours, buf, sizeof(buf), deadline), deadline);
	deadline = op_clock_mono_ms() + 500;
	assert_timed_out((int)op_io_recv_some(f->ours, buf, sizeof(buf), deadline), deadline);
	deadline = op_clock_mono_ms() + 500;
	assert_timed_out(op_io_wait(f->ours, POLLIN, deadline), deadline);
}

/* A server that takes the connection (the kernel's backlog) and never
 * says a word. */
static void test_io_listener_never_answers(void **state)
{
	struct fx *f = *state;
	int fd = connect_to_silent_listener(f);
	char buf[4];
	int64_t deadline = op_clock_mono_ms() + 1000;

	assert_timed_out(op_io_recv_all(fd, buf, sizeof(buf), deadline), deadline);
}

/* A peer that never reads: the buffers fill, the send times out. */
static void test_io_send_to_silent_peer(void **state)
{
	enum { BIG = 64 << 20 }; /* far more than the socket buffers hold */
	struct fx *f = *state;
	char *data = test_calloc(1, BIG);
	int64_t deadline = op_clock_mono_ms() + 1000;

	assert_timed_out(op_io_send_all(f->ours, data, BIG, deadline), deadline);
	test_free(data);
}

/* The deadline bounds the whole call, not each byte: a peer sending a
 * byte every 250 ms for 10 s does not keep the caller for 10 s. */
static void test_io_slow_peer(void **state)
{
	struct fx *f = *state;
	char buf[40];
	int64_t deadline;

	start_slow_peer(f, 40, 250);
	deadline = op_clock_mono_ms() + 1000;
	assert_timed_out(op_io_recv_all(f->ours, buf, sizeof(buf), deadline), deadline);
}

/* A deadline already passed: no wait, even for a ready socket. */
static void test_io_wait_deadline_passed(void **state)
{
	struct fx *f = *state;
	int64_t now = op_clock_mono_ms();

	assert_int_equal(op_io_wait(f->ours, POLLOUT, now + 10000), 0);
	assert_int_equal(op_io_wait(f->ours, POLLOUT, now), -ETIMEDOUT);
	assert_int_equal(op_io_wait(f->ours, POLLOUT, now - 1000), -ETIMEDOUT);
	assert_true(op_clock_mono_ms() - now < LATE_MS);
}

/* --- peers that go ------------------------------------------------------------------ */

/* The peer closes half-way through what was asked: -ECONNRESET at once,
 * not at the deadline. */
static void test_io_peer_closes_mid_read(void **state)
{
	struct fx *f = *state;
	char buf[10];
	int64_t deadline = op_clock_mono_ms() + 20000;

	assert_int_equal(write(f->peer, "abc", 3), 3);
	close(f->peer);
	f->peer = -1;
	assert_int_equal(op_io_recv_all(f->ours, buf, sizeof(buf), deadline), -ECONNRESET);
	assert_true(op_clock_mono_ms() < deadline);
	/* op_io_wait reports the hang-up as ready: the next call says what. */
	assert_int_equal(op_io_wait(f->ours, POLLIN, op_clock_mono_ms() + 10000), 0);
}

/* A TCP peer that resets the connection (SO_LINGER 0) mid-read. */
static void test_io_peer_resets(void **state)
{
	struct fx *f = *state;
	int fd = connect_to_silent_listener(f);
	struct linger hard = { 1, 0 };
	char buf[10];
	int64_t deadline = op_clock_mono_ms() + 20000;
	int server = accept(f->fds[0], NULL, NULL);

	assert_true(server >= 0);
	assert_int_equal(setsockopt(server, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard)), 0);
	assert_int_equal(write(server, "abc", 3), 3);
	close(server);
	assert_int_equal(op_io_recv_all(fd, buf, sizeof(buf), deadline), -ECONNRESET);
	assert_true(op_clock_mono_ms() < deadline);
}

/* Sending to a peer that closed: -EPIPE, and no SIGPIPE (which would end
 * this process: it is not ignored here). */
static void test_io_send_to_closed_peer(void **state)
{
	struct fx *f = *state;

	close(f->peer);
	f->peer = -1;
	assert_int_equal(op_io_send_all(f->ours, "x", 1, op_clock_mono_ms() + 10000), -EPIPE);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_io_recv_all),
		T(test_io_recv_some),
		T(test_io_recv_byte_at_a_time),
		T(test_io_send_all),
		T(test_io_silent_peer),
		T(test_io_listener_never_answers),
		T(test_io_send_to_silent_peer),
		T(test_io_slow_peer),
		T(test_io_wait_deadline_passed),
		T(test_io_peer_closes_mid_read),
		T(test_io_peer_resets),
		T(test_io_send_to_closed_peer),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
