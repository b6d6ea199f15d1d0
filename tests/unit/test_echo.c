/*
 * test_echo: services/console/echo.c, the C-ECHO client.
 *
 * Real peers, started here on loopback ports in 20000-32000 (below the
 * kernel's ephemeral range) and ended by PID: DCMTK's storescp, and
 * outpost-receiver (from the build this binary belongs to) accepting, and
 * rejecting a calling AE title it does not allow. Nothing listening.
 *
 * Canned peers, as curl tests its protocols: a server thread in this
 * process plays a script (read a PDU, send these bytes) and the test
 * checks what the client makes of it: silence, garbage, a huge PDU length,
 * A-ABORT, A-ASSOCIATE-RJ, a refused presentation context, bad answers, an
 * answer in fragments, a peer that closes instead of releasing. What the
 * client sent is checked against PS3.8 and PS3.7 byte by byte there too.
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
#include <ftw.h>
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "console/echo.h"

#define CALLED "OUTPOST"
#define CALLING "ECHOTEST"

/* --- time, ports, processes ---------------------------------------------------- */

static uint64_t now_ms(void)
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
		seed = (unsigned)getpid() ^ (unsigned)now_ms();
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
static uint16_t free_port(void)
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
static pid_t spawn(char *const argv[], const char *log)
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
static void wait_listening(pid_t pid, uint16_t port, const char *log)
{
	uint64_t until = now_ms() + 20000;
	char tail[1024];
	int status;

	while (!can_connect(port)) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			fail_msg("child %d exited (status 0x%x) before listening on %u:\n%s",
				 (int)pid, status, port, log_tail(log, tail, sizeof(tail)));
		if (now_ms() > until)
			fail_msg("nothing listens on %u after 20 s:\n%s", port,
				 log_tail(log, tail, sizeof(tail)));
		usleep(20000);
	}
}

/* SIGTERM, then SIGKILL after 10 s; reaps. */
static void stop(pid_t pid)
{
	uint64_t until = now_ms() + 10000;

	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	while (waitpid(pid, NULL, WNOHANG) == 0) {
		if (now_ms() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return;
		}
		usleep(10000);
	}
}

/* The build directory this binary belongs to (build/ or build/asan/). */
static void build_dir(char *out, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	assert_true(n > 0);
	exe[n] = '\0';
	snprintf(out, size, "%s", dirname(dirname(exe)));
}

/* --- bytes ------------------------------------------------------------------------ */

struct bytes {
	uint8_t b[1024];
	size_t n;
};

static void b_put(struct bytes *o, const void *p, size_t n)
{
	assert_true(n <= sizeof(o->b) - o->n);
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

static void b_u8(struct bytes *o, uint8_t v)
{
	b_put(o, &v, 1);
}

static void b_be16(struct bytes *o, uint16_t v)
{
	b_u8(o, (uint8_t)(v >> 8));
	b_u8(o, (uint8_t)v);
}

static void b_be32(struct bytes *o, uint32_t v)
{
	b_be16(o, (uint16_t)(v >> 16));
	b_be16(o, (uint16_t)v);
}

static void b_le16(struct bytes *o, uint16_t v)
{
	b_u8(o, (uint8_t)v);
	b_u8(o, (uint8_t)(v >> 8));
}

static void b_le32(struct bytes *o, uint32_t v)
{
	b_le16(o, (uint16_t)v);
	b_le16(o, (uint16_t)(v >> 16));
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Sets a 2- or 4-byte big-endian length at `at` to the bytes after it. */
static void b_patch16(struct bytes *o, size_t at)
{
	size_t n = o->n - at - 2;

	o->b[at] = (uint8_t)(n >> 8);
	o->b[at + 1] = (uint8_t)n;
}

static void b_patch32(struct bytes *o, size_t at)
{
	size_t n = o->n - at - 4;

	o->b[at] = (uint8_t)(n >> 24);
	o->b[at + 1] = (uint8_t)(n >> 16);
	o->b[at + 2] = (uint8_t)(n >> 8);
	o->b[at + 3] = (uint8_t)n;
}

static size_t b_pdu(struct bytes *o, uint8_t type)
{
	b_u8(o, type);
	b_u8(o, 0);
	b_be32(o, 0);
	return o->n - 4;
}

static void b_item(struct bytes *o, uint8_t type, const char *s)
{
	b_u8(o, type);
	b_u8(o, 0);
	b_be16(o, (uint16_t)strlen(s));
	b_put(o, s, strlen(s));
}

/* An A-ASSOCIATE-AC answering context 1 with result and transfer syntax. */
static void ac(struct bytes *o, uint8_t result, const char *ts)
{
	static const uint8_t reserved[32];
	char ae[33];
	size_t pdu = b_pdu(o, 0x02), item;

	b_be16(o, 1);
	b_be16(o, 0);
	snprintf(ae, sizeof(ae), "%-16s%-16s", CALLED, CALLING);
	b_put(o, ae, 32);
	b_put(o, reserved, 32);
	b_item(o, 0x10, "1.2.840.10008.3.1.1.1");
	b_u8(o, 0x21);
	b_u8(o, 0);
	item = o->n;
	b_be16(o, 0);
	b_u8(o, 1);
	b_u8(o, 0);
	b_u8(o, result);
	b_u8(o, 0);
	b_item(o, 0x40, ts);
	b_patch16(o, item);
	b_u8(o, 0x50);
	b_u8(o, 0);
	item = o->n;
	b_be16(o, 0);
	b_u8(o, 0x51);
	b_u8(o, 0);
	b_be16(o, 4);
	b_be32(o, 16384);
	b_patch16(o, item);
	b_patch32(o, pdu);
}

static void ac_ok(struct bytes *o)
{
	ac(o, 0, "1.2.840.10008.1.2");
}

static void four(struct bytes *o, uint8_t type, uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	size_t pdu = b_pdu(o, type);

	b_u8(o, a);
	b_u8(o, b);
	b_u8(o, c);
	b_u8(o, d);
	b_patch32(o, pdu);
}

static void rj(struct bytes *o, uint8_t result, uint8_t source, uint8_t reason)
{
	four(o, 0x03, 0, result, source, reason);
}

static void abort_pdu(struct bytes *o, uint8_t source, uint8_t reason)
{
	four(o, 0x07, 0, 0, source, reason);
}

static void release_rp(struct bytes *o)
{
	four(o, 0x06, 0, 0, 0, 0);
}

static void el_us(struct bytes *o, uint16_t element, uint16_t v)
{
	b_le16(o, 0);
	b_le16(o, element);
	b_le32(o, 2);
	b_le16(o, v);
}

static void el_str(struct bytes *o, uint16_t element, const char *s, size_t len)
{
	b_le16(o, 0);
	b_le16(o, element);
	b_le32(o, (uint32_t)len);
	b_put(o, s, len);
}

/* A C-ECHO-RSP command set (Implicit VR LE), with a group length. */
static void rsp_command(struct bytes *o, uint16_t field, uint16_t id, uint16_t status,
			const char *comment)
{
	struct bytes body = { .n = 0 };

	el_str(&body, 0x0002, "1.2.840.10008.1.1", 18);
	el_us(&body, 0x0100, field);
	el_us(&body, 0x0120, id);
	el_us(&body, 0x0800, 0x0101);
	el_us(&body, 0x0900, status);
	if (comment)
		el_str(&body, 0x0902, comment, strlen(comment));
	b_le16(o, 0);
	b_le16(o, 0);
	b_le32(o, 4);
	b_le32(o, (uint32_t)body.n);
	b_put(o, body.b, body.n);
}

/* P-DATA-TF PDUs carrying cmd in `pieces` fragments, one PDU each. */
static void pdata(struct bytes *o, const struct bytes *cmd, int pieces, uint8_t pc_id)
{
	size_t at = 0;

	for (int i = 0; i < pieces; i++) {
		size_t n = i == pieces - 1 ? cmd->n - at : cmd->n / (size_t)pieces;
		size_t pdu = b_pdu(o, 0x04);

		b_be32(o, (uint32_t)(n + 2));
		b_u8(o, pc_id);
		b_u8(o, i == pieces - 1 ? 0x03 : 0x01);
		b_put(o, cmd->b + at, n);
		at += n;
		b_patch32(o, pdu);
	}
}

static void rsp(struct bytes *o, uint16_t status, uint16_t id, int pieces)
{
	struct bytes cmd = { .n = 0 };

	rsp_command(&cmd, 0x8030, id, status, NULL);
	pdata(o, &cmd, pieces, 1);
}

/* --- a canned peer: a thread playing a script ------------------------------------- */

enum act { RECV, SEND, CLOSE };

#define MAX_ACTS 8

struct peer {
	int lfd;
	uint16_t port;
	pthread_t thread;
	int started;
	int n;
	enum act acts[MAX_ACTS];
	struct bytes send[MAX_ACTS];
	/* What the client sent: a PDU per RECV, then what came until it closed. */
	struct bytes got[MAX_ACTS];
	int n_got;
	struct bytes tail;
	const char *error; /* the peer's own failure (no cmocka off the main thread) */
};

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
		if (p->acts[i] == CLOSE) {
			goto out;
		} else if (p->acts[i] == RECV) {
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

struct fx {
	char dir[64];
	pid_t child;
	struct peer peer;
	char detail[256];
};

static int setup(void **state)
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

static int teardown(void **state)
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
static void reset_peer(struct fx *f)
{
	memset(&f->peer, 0, sizeof(f->peer));
	f->peer.lfd = -1;
}

/* Script steps; SEND's bytes are built in place by the caller. */
static void expect_pdu(struct fx *f)
{
	f->peer.acts[f->peer.n++] = RECV;
}

static struct bytes *answer(struct fx *f)
{
	f->peer.acts[f->peer.n] = SEND;
	return &f->peer.send[f->peer.n++];
}

static void start_peer(struct fx *f)
{
	struct peer *p = &f->peer;

	p->lfd = bind_free_port(&p->port);
	assert_true(p->lfd >= 0);
	assert_int_equal(listen(p->lfd, 4), 0);
	assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
	p->started = 1;
}

/* Runs op_echo against the canned peer; the peer has finished on return. */
static int echo_peer(struct fx *f, int timeout_ms)
{
	int rc;

	start_peer(f);
	rc = op_echo("127.0.0.1", f->peer.port, CALLED, CALLING, timeout_ms, f->detail,
		     sizeof(f->detail));
	pthread_join(f->peer.thread, NULL);
	f->peer.started = 0;
	close(f->peer.lfd);
	f->peer.lfd = -1;
	if (f->peer.error)
		fail_msg("canned peer: %s (client said: %s)", f->peer.error, f->detail);
	return rc;
}

#define assert_contains(s, part)                                                                   \
	do {                                                                                       \
		if (!strstr((s), (part)))                                                          \
			fail_msg("\"%s\" does not contain \"%s\"", (s), (part));                   \
	} while (0)

/* The client's last words after a failure: an A-ABORT. */
static void assert_aborted(const struct fx *f)
{
	static const uint8_t abort_rq[] = { 0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0 };

	assert_int_equal(f->peer.tail.n, sizeof(abort_rq));
	assert_memory_equal(f->peer.tail.b, abort_rq, sizeof(abort_rq));
}

/* --- real peers --------------------------------------------------------------------- */

static void test_echo_storescp(void **state)
{
	struct fx *f = *state;
	char port[8], log[128];
	uint16_t p = free_port();
	int rc;

	snprintf(port, sizeof(port), "%u", p);
	snprintf(log, sizeof(log), "%s/storescp.log", f->dir);
	{
		char *argv[] = { "storescp", "-aet", "STORESCP", "-od", f->dir, port, NULL };

		f->child = spawn(argv, log);
	}
	assert_true(f->child > 0);
	wait_listening(f->child, p, log);

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
	uint16_t port = free_port();
	FILE *out;

	build_dir(dir, sizeof(dir));
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

		f->child = spawn(argv, log);
	}
	assert_true(f->child > 0);
	wait_listening(f->child, port, log);
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
	uint16_t port = free_port();
	int rc = op_echo("127.0.0.1", port, CALLED, CALLING, 1000, f->detail, sizeof(f->detail));

	assert_int_equal(rc, -ECONNREFUSED);
	assert_contains(f->detail, "connection refused");
}

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

	expect_pdu(f);
	ac_ok(answer(f));
	expect_pdu(f);
	rsp(answer(f), 0x0000, 1, 1);
	expect_pdu(f);
	release_rp(answer(f));
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

/* --- canned answers ------------------------------------------------------------------- */

static void test_echo_silent_peer(void **state)
{
	struct fx *f = *state;
	uint64_t t0 = now_ms(), took;
	int rc;

	/* Accepts, reads nothing, says nothing. */
	rc = echo_peer(f, 300);
	took = now_ms() - t0;
	assert_int_equal(rc, -ETIMEDOUT);
	assert_string_equal(f->detail, "timed out after 300 ms waiting for A-ASSOCIATE-AC");
	assert_true(took >= 290);
	assert_true(took < 1500);
}

static void test_echo_silent_after_ac(void **state)
{
	struct fx *f = *state;

	expect_pdu(f);
	ac_ok(answer(f));
	expect_pdu(f);
	assert_int_equal(echo_peer(f, 300), -ETIMEDOUT);
	assert_string_equal(f->detail, "timed out after 300 ms waiting for C-ECHO-RSP");
	assert_aborted(f);
}

static void test_echo_garbage(void **state)
{
	struct fx *f = *state;
	struct bytes *b;

	expect_pdu(f);
	b = answer(f);
	b_put(b, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_string_equal(f->detail, "not a DICOM peer: received 48 54 54 50 2f 31 while waiting "
				       "for A-ASSOCIATE-AC");
	assert_aborted(f);
}

/* Refused on the header alone: were the body awaited, this would time out. */
static void test_echo_huge_pdu(void **state)
{
	static const uint8_t huge[] = { 0x02, 0, 0xff, 0xff, 0xff, 0xff };
	struct fx *f = *state;
	uint64_t t0 = now_ms();

	expect_pdu(f);
	b_put(answer(f), huge, sizeof(huge));
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_true(now_ms() - t0 < 2500);
	assert_string_equal(f->detail, "the peer announced a PDU of 4294967295 bytes "
				       "(A-ASSOCIATE-AC, limit 1048576) while waiting for "
				       "A-ASSOCIATE-AC");
	assert_aborted(f);
}

/* One byte over the limit in a P-DATA-TF, after a good A-ASSOCIATE-AC. */
static void test_echo_pdu_over_limit(void **state)
{
	static const uint8_t big[] = { 0x04, 0, 0x00, 0x10, 0x00, 0x01 };
	struct fx *f = *state;

	expect_pdu(f);
	ac_ok(answer(f));
	expect_pdu(f);
	b_put(answer(f), big, sizeof(big));
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_contains(f->detail, "a PDU of 1048577 bytes (P-DATA-TF, limit 1048576)");
}

static void test_echo_abort(void **state)
{
	struct fx *f = *state;

	expect_pdu(f);
	abort_pdu(answer(f), 2, 2);
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_string_equal(f->detail, "association aborted by the peer: unexpected PDU (source 2, "
				       "reason 2) while waiting for A-ASSOCIATE-AC");
	assert_int_equal(f->peer.tail.n, 0); /* nothing left to abort */
}

static void test_echo_abort_instead_of_rsp(void **state)
{
	struct fx *f = *state;

	expect_pdu(f);
	ac_ok(answer(f));
	expect_pdu(f);
	abort_pdu(answer(f), 0, 0);
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

		reset_peer(f);
		expect_pdu(f);
		rj(answer(f), cases[i].result, cases[i].source, cases[i].reason);
		assert_int_equal(echo_peer(f, 5000), -EPROTO);
		assert_string_equal(f->detail, cases[i].detail);
		assert_int_equal(f->peer.tail.n, 0);
	}
}

static void test_echo_context_refused(void **state)
{
	struct fx *f = *state;

	expect_pdu(f);
	ac(answer(f), 3, "1.2.840.10008.1.2");
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_string_equal(f->detail, "presentation context refused: Verification SOP Class not "
				       "supported (result 3)");
	assert_aborted(f);
}

static void test_echo_wrong_transfer_syntax(void **state)
{
	struct fx *f = *state;

	expect_pdu(f);
	ac(answer(f), 0, "1.2.840.10008.1.2.1");
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

	expect_pdu(f);
	b = answer(f);
	ac_ok(b);
	/* Lengthen the transfer syntax sub-item (and its item and PDU) by the
	 * NUL: it sits at the end of the context item, before user info. */
	ts_len_at = 6 + 68 + 4 + 21 + 4 + 4 + 2;
	assert_int_equal(b->b[ts_len_at - 2], 0x40);
	memmove(b->b + ts_len_at + 2 + 18, b->b + ts_len_at + 2 + 17, b->n - (ts_len_at + 2 + 17));
	memcpy(b->b + ts_len_at + 2, padded, 18);
	b->n++;
	b->b[ts_len_at + 1]++;
	b->b[6 + 68 + 4 + 21 + 3]++;
	b_patch32(b, 2);
	expect_pdu(f);
	rsp(answer(f), 0x0000, 1, 1);
	expect_pdu(f);
	release_rp(answer(f));
	if (echo_peer(f, 5000) != 0)
		fail_msg("%s", f->detail);
}

static void test_echo_short_ac(void **state)
{
	struct fx *f = *state;

	expect_pdu(f);
	four(answer(f), 0x02, 0, 1, 0, 0);
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_string_equal(f->detail, "a short A-ASSOCIATE-AC (4 bytes)");
}

static void test_echo_ac_item_overrun(void **state)
{
	struct fx *f = *state;
	struct bytes *b;

	expect_pdu(f);
	b = answer(f);
	ac_ok(b);
	b->b[6 + 68 + 2] = 0xff; /* the application context item's length */
	assert_int_equal(echo_peer(f, 5000), -EPROTO);
	assert_contains(f->detail, "item 0x10 of the A-ASSOCIATE-AC overruns the PDU");
}

/* Each answer after a good A-ASSOCIATE-AC, and the result expected. */
static void expect_answer(void **state, void (*build)(struct bytes *), int want_rc,
			  const char *want)
{
	struct fx *f = *state;

	expect_pdu(f);
	ac_ok(answer(f));
	expect_pdu(f);
	build(answer(f));
	assert_int_equal(echo_peer(f, 5000), want_rc);
	assert_string_equal(f->detail, want);
	assert_aborted(f);
}

static void failure_with_comment(struct bytes *o)
{
	struct bytes cmd = { .n = 0 };

	rsp_command(&cmd, 0x8030, 1, 0x0110, "disk\nfull");
	pdata(o, &cmd, 1, 1);
}

static void test_echo_status_failure(void **state)
{
	expect_answer(state, failure_with_comment, -EPROTO,
		      "C-ECHO-RSP status 0x0110 (processing failure): disk?full");
}

static void warning(struct bytes *o)
{
	rsp(o, 0xb000, 1, 1);
}

static void test_echo_status_warning(void **state)
{
	expect_answer(state, warning, -EPROTO, "C-ECHO-RSP status 0xb000 (warning)");
}

static void wrong_id(struct bytes *o)
{
	rsp(o, 0x0000, 2, 1);
}

static void test_echo_wrong_message_id(void **state)
{
	expect_answer(state, wrong_id, -EPROTO, "a C-ECHO-RSP to message 2, not 1");
}

static void store_rsp(struct bytes *o)
{
	struct bytes cmd = { .n = 0 };

	rsp_command(&cmd, 0x8001, 1, 0x0000, NULL);
	pdata(o, &cmd, 1, 1);
}

static void test_echo_wrong_command(void **state)
{
	expect_answer(state, store_rsp, -EPROTO,
		      "expected a C-ECHO-RSP (0x8030), got command 0x8001");
}

static void no_status(struct bytes *o)
{
	struct bytes cmd = { .n = 0 };

	el_us(&cmd, 0x0100, 0x8030);
	el_us(&cmd, 0x0120, 1);
	pdata(o, &cmd, 1, 1);
}

static void test_echo_no_status(void **state)
{
	expect_answer(state, no_status, -EPROTO, "a C-ECHO-RSP without a Status (0000,0900)");
}

static void element_overrun(struct bytes *o)
{
	struct bytes cmd = { .n = 0 };

	el_us(&cmd, 0x0100, 0x8030);
	b_le16(&cmd, 0);
	b_le16(&cmd, 0x0900);
	b_le32(&cmd, 0xffffffff); /* undefined length: not in a command set */
	b_le16(&cmd, 0);
	pdata(o, &cmd, 1, 1);
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

	b_put(o, pdu, sizeof(pdu));
}

static void test_echo_pdv_overrun(void **state)
{
	expect_answer(state, pdv_overrun, -EPROTO,
		      "a PDV length of 9 in a P-DATA-TF of 8 bytes while waiting for C-ECHO-RSP");
}

static void other_context(struct bytes *o)
{
	struct bytes cmd = { .n = 0 };

	rsp_command(&cmd, 0x8030, 1, 0x0000, NULL);
	pdata(o, &cmd, 1, 3);
}

static void test_echo_other_context(void **state)
{
	expect_answer(state, other_context, -EPROTO,
		      "a PDV for presentation context 3, not 1, while waiting for C-ECHO-RSP");
}

static void release_instead(struct bytes *o)
{
	four(o, 0x05, 0, 0, 0, 0);
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

	expect_pdu(f);
	ac_ok(answer(f));
	expect_pdu(f);
	rsp(answer(f), 0x0000, 1, 3);
	expect_pdu(f);
	release_rp(answer(f));
	if (echo_peer(f, 5000) != 0)
		fail_msg("%s", f->detail);

	reset_peer(f);
	rsp_command(&cmd, 0x8030, 1, 0x0000, NULL);
	expect_pdu(f);
	ac_ok(answer(f));
	expect_pdu(f);
	b = answer(f);
	pdu = b_pdu(b, 0x04);
	b_be32(b, 2 + 10);
	b_u8(b, 1);
	b_u8(b, 0x01);
	b_put(b, cmd.b, 10);
	b_be32(b, 2 + 3);
	b_u8(b, 1);
	b_u8(b, 0x00); /* data set, not last */
	b_put(b, "abc", 3);
	b_be32(b, (uint32_t)(2 + cmd.n - 10));
	b_u8(b, 1);
	b_u8(b, 0x03);
	b_put(b, cmd.b + 10, cmd.n - 10);
	b_patch32(b, pdu);
	expect_pdu(f);
	release_rp(answer(f));
	if (echo_peer(f, 5000) != 0)
		fail_msg("%s", f->detail);
}

/* A peer that closes instead of sending A-RELEASE-RP has released. */
static void test_echo_close_instead_of_release(void **state)
{
	struct fx *f = *state;

	expect_pdu(f);
	ac_ok(answer(f));
	expect_pdu(f);
	rsp(answer(f), 0x0000, 1, 1);
	expect_pdu(f);
	f->peer.acts[f->peer.n++] = CLOSE;
	assert_int_equal(echo_peer(f, 5000), 0);
	assert_contains(f->detail, "answered in ");
	assert_true(strstr(f->detail, "release") == NULL);
}

/* A peer that never answers A-RELEASE-RQ: the echo still counts, and the
 * call returns within its timeout. */
static void test_echo_release_unanswered(void **state)
{
	struct fx *f = *state;
	uint64_t t0 = now_ms();

	expect_pdu(f);
	ac_ok(answer(f));
	expect_pdu(f);
	rsp(answer(f), 0x0000, 1, 1);
	expect_pdu(f);
	assert_int_equal(echo_peer(f, 300), 0);
	assert_true(now_ms() - t0 < 1500);
	assert_contains(f->detail, "answered in ");
	assert_contains(f->detail,
			" ms (release: timed out after 300 ms waiting for A-RELEASE-RP)");
	assert_aborted(f);
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
	assert_int_equal(
		op_echo("127.0.0.1", free_port(), "SIXTEEN_LETTERS!", CALLING, 1000, f->detail, 8),
		-ECONNREFUSED);
	assert_string_equal(f->detail, "connect");
	assert_int_equal(op_echo("127.0.0.1", free_port(), CALLED, CALLING, 1000, NULL, 0),
			 -ECONNREFUSED);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_echo_storescp),
		T(test_echo_receiver),
		T(test_echo_receiver_rejects),
		T(test_echo_refused),
		T(test_echo_sends),
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
