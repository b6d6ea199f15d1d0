/*
 * echo_fixture: the helpers of the C-ECHO client's tests (test_echo*.c),
 * declared in echo_fixture.h.
 *
 * Linked into every unit test (the Makefile links tests/unit/ files that
 * are not tests into all of them): libc, pthreads and cmocka only, and
 * every name it exports starts with echo_. What calls the console
 * (echo_peer(), op_echo()) is static inline in the header.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "echo_fixture.h"

/* --- time, ports, processes ---------------------------------------------------- */

uint64_t echo_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * A socket bound to a free loopback port in 20000-32000: a port the kernel
 * hands out (bind to 0) is an ephemeral one, which an outgoing connection
 * can take before the peer meant to listen on it starts.
 */
static int bind_free_port(uint16_t *port)
{
	static unsigned seed;

	if (!seed)
		seed = (unsigned)getpid() ^ (unsigned)echo_now_ms();
	for (int i = 0; i < 500; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return -1;
		*port = (uint16_t)(20000 + rand_r(&seed) % 12000);
		sa.sin_port = htons(*port);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
	}
	return -1;
}

/* A port nothing listens on (for a child process to bind). */
uint16_t echo_free_port(void)
{
	uint16_t port = 0;
	int fd = bind_free_port(&port);

	assert_true(fd >= 0);
	close(fd);
	return port;
}

static int can_connect(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Starts argv with stdout and stderr into log; returns its PID. */
pid_t echo_spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int null = open("/dev/null", O_RDONLY);
		sigset_t none;

		if (fd < 0 || null < 0)
			_exit(126);
		dup2(null, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* The end of a child's log, for a failure message (teardown removes it). */
static const char *log_tail(const char *log, char *buf, size_t size)
{
	FILE *in = fopen(log, "r");
	size_t n = 0;

	buf[0] = '\0';
	if (!in)
		return buf;
	if (fseek(in, -(long)(size - 1), SEEK_END) != 0)
		rewind(in);
	n = fread(buf, 1, size - 1, in);
	buf[n] = '\0';
	fclose(in);
	return buf;
}

/* Waits until something listens on port; fails if pid exits first. */
void echo_wait_listening(pid_t pid, uint16_t port, const char *log)
{
	uint64_t until = echo_now_ms() + 20000;
	char tail[1024];
	int status;

	while (!can_connect(port)) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			fail_msg("child %d exited (status 0x%x) before listening on %u:\n%s",
				 (int)pid, status, port, log_tail(log, tail, sizeof(tail)));
		if (echo_now_ms() > until)
			fail_msg("nothing listens on %u after 20 s:\n%s", port,
				 log_tail(log, tail, sizeof(tail)));
		usleep(20000);
	}
}

/* SIGTERM, then SIGKILL after 10 s; reaps. */
static void stop(pid_t pid)
{
	uint64_t until = echo_now_ms() + 10000;

	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	while (waitpid(pid, NULL, WNOHANG) == 0) {
		if (echo_now_ms() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return;
		}
		usleep(10000);
	}
}

/* The build directory this binary belongs to (build/ or build/asan/). */
void echo_build_dir(char *out, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	assert_true(n > 0);
	exe[n] = '\0';
	snprintf(out, size, "%s", dirname(dirname(exe)));
}

/* --- bytes ------------------------------------------------------------------------ */

void echo_put(struct bytes *o, const void *p, size_t n)
{
	assert_true(n <= sizeof(o->b) - o->n);
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

void echo_put_u8(struct bytes *o, uint8_t v)
{
	echo_put(o, &v, 1);
}

void echo_put_be16(struct bytes *o, uint16_t v)
{
	echo_put_u8(o, (uint8_t)(v >> 8));
	echo_put_u8(o, (uint8_t)v);
}

void echo_put_be32(struct bytes *o, uint32_t v)
{
	echo_put_be16(o, (uint16_t)(v >> 16));
	echo_put_be16(o, (uint16_t)v);
}

void echo_put_le16(struct bytes *o, uint16_t v)
{
	echo_put_u8(o, (uint8_t)v);
	echo_put_u8(o, (uint8_t)(v >> 8));
}

void echo_put_le32(struct bytes *o, uint32_t v)
{
	echo_put_le16(o, (uint16_t)v);
	echo_put_le16(o, (uint16_t)(v >> 16));
}

/* Sets a 2- or 4-byte big-endian length at `at` to the bytes after it. */
static void patch16(struct bytes *o, size_t at)
{
	size_t n = o->n - at - 2;

	o->b[at] = (uint8_t)(n >> 8);
	o->b[at + 1] = (uint8_t)n;
}

void echo_patch32(struct bytes *o, size_t at)
{
	size_t n = o->n - at - 4;

	o->b[at] = (uint8_t)(n >> 24);
	o->b[at + 1] = (uint8_t)(n >> 16);
	o->b[at + 2] = (uint8_t)(n >> 8);
	o->b[at + 3] = (uint8_t)n;
}

size_t echo_put_pdu(struct bytes *o, uint8_t type)
{
	echo_put_u8(o, type);
	echo_put_u8(o, 0);
	echo_put_be32(o, 0);
	return o->n - 4;
}

static void put_item(struct bytes *o, uint8_t type, const char *s)
{
	echo_put_u8(o, type);
	echo_put_u8(o, 0);
	echo_put_be16(o, (uint16_t)strlen(s));
	echo_put(o, s, strlen(s));
}

/* An A-ASSOCIATE-AC answering context 1 with result and transfer syntax. */
void echo_ac(struct bytes *o, uint8_t result, const char *ts)
{
	static const uint8_t reserved[32];
	char ae[33];
	size_t pdu = echo_put_pdu(o, 0x02), item;

	echo_put_be16(o, 1);
	echo_put_be16(o, 0);
	snprintf(ae, sizeof(ae), "%-16s%-16s", CALLED, CALLING);
	echo_put(o, ae, 32);
	echo_put(o, reserved, 32);
	put_item(o, 0x10, "1.2.840.10008.3.1.1.1");
	echo_put_u8(o, 0x21);
	echo_put_u8(o, 0);
	item = o->n;
	echo_put_be16(o, 0);
	echo_put_u8(o, 1);
	echo_put_u8(o, 0);
	echo_put_u8(o, result);
	echo_put_u8(o, 0);
	put_item(o, 0x40, ts);
	patch16(o, item);
	echo_put_u8(o, 0x50);
	echo_put_u8(o, 0);
	item = o->n;
	echo_put_be16(o, 0);
	echo_put_u8(o, 0x51);
	echo_put_u8(o, 0);
	echo_put_be16(o, 4);
	echo_put_be32(o, 16384);
	patch16(o, item);
	echo_patch32(o, pdu);
}

void echo_ac_ok(struct bytes *o)
{
	echo_ac(o, 0, "1.2.840.10008.1.2");
}

void echo_four(struct bytes *o, uint8_t type, uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	size_t pdu = echo_put_pdu(o, type);

	echo_put_u8(o, a);
	echo_put_u8(o, b);
	echo_put_u8(o, c);
	echo_put_u8(o, d);
	echo_patch32(o, pdu);
}

void echo_rj(struct bytes *o, uint8_t result, uint8_t source, uint8_t reason)
{
	echo_four(o, 0x03, 0, result, source, reason);
}

void echo_abort_pdu(struct bytes *o, uint8_t source, uint8_t reason)
{
	echo_four(o, 0x07, 0, 0, source, reason);
}

void echo_release_rp(struct bytes *o)
{
	echo_four(o, 0x06, 0, 0, 0, 0);
}

void echo_el_us(struct bytes *o, uint16_t element, uint16_t v)
{
	echo_put_le16(o, 0);
	echo_put_le16(o, element);
	echo_put_le32(o, 2);
	echo_put_le16(o, v);
}

static void el_str(struct bytes *o, uint16_t element, const char *s, size_t len)
{
	echo_put_le16(o, 0);
	echo_put_le16(o, element);
	echo_put_le32(o, (uint32_t)len);
	echo_put(o, s, len);
}

/* A C-ECHO-RSP command set (Implicit VR LE), with a group length. */
void echo_rsp_command(struct bytes *o, uint16_t field, uint16_t id, uint16_t status,
		      const char *comment)
{
	struct bytes body = { .n = 0 };

	el_str(&body, 0x0002, "1.2.840.10008.1.1", 18);
	echo_el_us(&body, 0x0100, field);
	echo_el_us(&body, 0x0120, id);
	echo_el_us(&body, 0x0800, 0x0101);
	echo_el_us(&body, 0x0900, status);
	if (comment)
		el_str(&body, 0x0902, comment, strlen(comment));
	echo_put_le16(o, 0);
	echo_put_le16(o, 0);
	echo_put_le32(o, 4);
	echo_put_le32(o, (uint32_t)body.n);
	echo_put(o, body.b, body.n);
}

/* P-DATA-TF PDUs carrying cmd in `pieces` fragments, one PDU each. */
void echo_pdata(struct bytes *o, const struct bytes *cmd, int pieces, uint8_t pc_id)
{
	size_t at = 0;

	for (int i = 0; i < pieces; i++) {
		size_t n = i == pieces - 1 ? cmd->n - at : cmd->n / (size_t)pieces;
		size_t pdu = echo_put_pdu(o, 0x04);

		echo_put_be32(o, (uint32_t)(n + 2));
		echo_put_u8(o, pc_id);
		echo_put_u8(o, i == pieces - 1 ? 0x03 : 0x01);
		echo_put(o, cmd->b + at, n);
		at += n;
		echo_patch32(o, pdu);
	}
}

void echo_rsp(struct bytes *o, uint16_t status, uint16_t id, int pieces)
{
	struct bytes cmd = { .n = 0 };

	echo_rsp_command(&cmd, 0x8030, id, status, NULL);
	echo_pdata(o, &cmd, pieces, 1);
}

/* --- a canned peer: a thread playing a script ------------------------------------- */

static int peer_wait(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };

	return poll(&p, 1, ms) == 1 ? 0 : -1;
}

static int peer_read(int fd, uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n;

		if (peer_wait(fd, POLLIN, 10000) < 0)
			return -1;
		n = recv(fd, buf, len, 0);
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	int fd = -1;

	if (peer_wait(p->lfd, POLLIN, 10000) < 0 || (fd = accept(p->lfd, NULL, NULL)) < 0) {
		p->error = "no connection";
		return NULL;
	}
	for (int i = 0; i < p->n; i++) {
		if (p->acts[i] == PEER_CLOSE) {
			goto out;
		} else if (p->acts[i] == PEER_RECV) {
			struct bytes *g = &p->got[p->n_got++];
			uint32_t len;

			if (peer_read(fd, g->b, 6) < 0) {
				p->error = "no PDU from the client";
				goto out;
			}
			len = be32(g->b + 2);
			if (len > sizeof(g->b) - 6 || peer_read(fd, g->b + 6, len) < 0) {
				p->error = "a bad PDU from the client";
				goto out;
			}
			g->n = 6 + len;
		} else if (send(fd, p->send[i].b, p->send[i].n, MSG_NOSIGNAL) !=
			   (ssize_t)p->send[i].n) {
			p->error = "send failed";
			goto out;
		}
	}
	/* Then hold the connection open until the client closes it. */
	for (;;) {
		uint8_t buf[256];
		ssize_t n;

		if (peer_wait(fd, POLLIN, 10000) < 0) {
			p->error = "the client never closed";
			break;
		}
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		if ((size_t)n > sizeof(p->tail.b) - p->tail.n)
			n = (ssize_t)(sizeof(p->tail.b) - p->tail.n);
		memcpy(p->tail.b + p->tail.n, buf, (size_t)n);
		p->tail.n += (size_t)n;
	}
out:
	close(fd);
	return NULL;
}

/* --- fixture ------------------------------------------------------------------------ */

int echo_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->peer.lfd = -1;
	if (unit_mkdtemp(f->dir, sizeof(f->dir), "test_echo") < 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

int echo_teardown(void **state)
{
	struct fx *f = *state;

	stop(f->child);
	if (f->peer.started)
		pthread_join(f->peer.thread, NULL);
	if (f->peer.lfd >= 0)
		close(f->peer.lfd);
	unit_rm_tree(f->dir);
	free(f);
	return 0;
}

/* For another run in the same test (after echo_peer). */
void echo_reset_peer(struct fx *f)
{
	memset(&f->peer, 0, sizeof(f->peer));
	f->peer.lfd = -1;
}

/* Script steps; PEER_SEND's bytes are built in place by the caller. */
void echo_expect_pdu(struct fx *f)
{
	f->peer.acts[f->peer.n++] = PEER_RECV;
}

struct bytes *echo_answer(struct fx *f)
{
	f->peer.acts[f->peer.n] = PEER_SEND;
	return &f->peer.send[f->peer.n++];
}

void echo_start_peer(struct fx *f)
{
	struct peer *p = &f->peer;

	p->lfd = bind_free_port(&p->port);
	assert_true(p->lfd >= 0);
	assert_int_equal(listen(p->lfd, 4), 0);
	assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
	p->started = 1;
}

void echo_script_answered(struct fx *f, int pieces)
{
	echo_expect_pdu(f);
	echo_ac_ok(echo_answer(f));
	echo_expect_pdu(f);
	echo_rsp(echo_answer(f), 0x0000, 1, pieces);
	echo_expect_pdu(f);
	echo_release_rp(echo_answer(f));
}

/* After op_echo() against the peer (echo_peer()): its end. */
void echo_finish_peer(struct fx *f)
{
	pthread_join(f->peer.thread, NULL);
	f->peer.started = 0;
	close(f->peer.lfd);
	f->peer.lfd = -1;
	if (f->peer.error)
		fail_msg("canned peer: %s (client said: %s)", f->peer.error, f->detail);
}

/* The client's last words after a failure: an A-ABORT. */
void echo_assert_aborted(const struct fx *f)
{
	static const uint8_t abort_rq[] = { 0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0 };

	assert_int_equal(f->peer.tail.n, sizeof(abort_rq));
	assert_memory_equal(f->peer.tail.b, abort_rq, sizeof(abort_rq));
}
