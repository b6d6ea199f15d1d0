/*
 * body: a batch's multipart body, streamed from the spool files to the
 * request one chunk at a time (memory does not grow with an object's
 * size), each file's BLAKE2b hash checked as it streams: a file whose
 * bytes do not match its row is quarantined and the request abandoned,
 * so that the cloud never receives a complete body with a damaged part.
 *
 * The file reads run on libuv's thread pool, one at a time per slot, in
 * s->fs; the rest on the loop.
 */
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "uplink/internal.h"

void op__uplink_item_file(const op_uplink *up, const op_spool_item *it, char *path, size_t size)
{
	if (it->encoded)
		op_spool_encoding_file(up->spool, it->hash, path, size);
	else
		op_spool_object_file(up->spool, it->hash, path, size);
}

void op__uplink_close_file(struct slot *s)
{
	if (s->fd >= 0) {
		close(s->fd); /* a regular file: close(2) does not block */
		s->fd = -1;
	}
}

/* The current file cannot be sent: it is quarantined, the request is
 * abandoned (the server never sees a complete body) and the rest of the
 * batch goes back to the queue. */
static void damaged_file(struct slot *s, const char *why)
{
	op_stow_result *r = &s->results[s->part];

	for (unsigned i = 0; i < s->n; i++) {
		s->results[i].verdict = OP_VERDICT_REQUEUE;
		s->results[i].reason[0] = '\0';
	}
	/* A damaged copy is made again (the encoder checks it before use);
	 * the object itself is what quarantine is for. */
	r->verdict = s->items[s->part].encoded ? OP_VERDICT_REQUEUE : OP_VERDICT_QUARANTINE;
	snprintf(r->reason, sizeof(r->reason), "%s%s",
		 s->items[s->part].encoded ? "JPEG-LS copy: " : "", why);
	op__uplink_close_file(s);
	op_https_body_fail(s->conn, why);
}

/* A file operation finished after the request ended: tidy up, and if the
 * slot was only waiting for it, move on. */
static int fs_after_request(struct slot *s)
{
	if (!s->request_over)
		return 0;
	op__uplink_close_file(s);
	if (s->resend_after_fs && !s->up->stopping) {
		s->resend_after_fs = 0;
		op__uplink_send_batch(s);
		return 1;
	}
	if (s->state == SLOT_IDLE)
		op__uplink_claim(s);
	return 1;
}

static void on_file_read(uv_fs_t *req)
{
	struct slot *s = req->data;
	const op_spool_item *it = &s->items[s->part];
	ssize_t n = req->result;
	unsigned char digest[OP_HASH_BYTES];
	char hex[OP_HASH_HEX + 1], why[160];

	uv_fs_req_cleanup(req);
	s->fs_busy = 0;
	if (fs_after_request(s))
		return;
	if (n < 0) {
		snprintf(why, sizeof(why), "spool file unreadable: %s", uv_strerror((int)n));
		damaged_file(s, why);
		return;
	}
	if (n > 0 && s->off + (uint64_t)n <= it->file_size) {
		crypto_generichash_update(&s->hash, s->chunk, (size_t)n);
		s->off += (uint64_t)n;
		op_https_body_write(s->conn, s->chunk, (size_t)n);
		return;
	}
	/* The end of the file, or more than the row says: check it all. */
	crypto_generichash_final(&s->hash, digest, sizeof(digest));
	sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
	if (n > 0 || s->off != it->file_size || strcmp(hex, it->file_hash) != 0) {
		damaged_file(s, "spool file damaged: its content does not match its hash");
		return;
	}
	op__uplink_close_file(s);
	s->phase = BODY_TAIL;
	op__uplink_next_chunk(s, s->conn);
}

static void read_file(struct slot *s)
{
	/* At a shaped rate, chunks of the burst meter smoothly. */
	uv_buf_t buf =
		uv_buf_init((char *)s->chunk, (unsigned)op_shaper_chunk(s->up->shaper, CHUNK));
	int rc;

	s->fs.data = s;
	rc = uv_fs_read(s->up->loop, &s->fs, s->fd, &buf, 1, (int64_t)s->off, on_file_read);
	if (rc < 0)
		damaged_file(s, "spool file unreadable");
	else
		s->fs_busy = 1;
}

static void on_file_open(uv_fs_t *req)
{
	struct slot *s = req->data;
	ssize_t fd = req->result;
	char why[160];

	uv_fs_req_cleanup(req);
	s->fs_busy = 0;
	if (fd >= 0)
		s->fd = (uv_file)fd;
	if (fs_after_request(s))
		return;
	if (fd < 0) {
		snprintf(why, sizeof(why), "spool file missing: %s", uv_strerror((int)fd));
		damaged_file(s, why);
		return;
	}
	s->off = 0;
	crypto_generichash_init(&s->hash, NULL, 0, OP_HASH_BYTES);
	s->phase = BODY_READ;
	read_file(s);
}

void op__uplink_next_chunk(void *ctx, op_https *c)
{
	struct slot *s = ctx;
	char path[PATH_MAX];
	size_t len;
	int rc;

	(void)c;
	switch (s->phase) {
	case BODY_HEAD:
		len = op_stow_part_head(s->small, sizeof(s->small), s->boundary,
					s->items[s->part].file_size);
		s->phase = BODY_OPEN;
		op_https_body_write(s->conn, s->small, len);
		return;
	case BODY_OPEN:
		op__uplink_item_file(s->up, &s->items[s->part], path, sizeof(path));
		s->fs.data = s;
		rc = uv_fs_open(s->up->loop, &s->fs, path, O_RDONLY | O_CLOEXEC, 0, on_file_open);
		if (rc < 0)
			damaged_file(s, "spool file cannot be opened");
		else
			s->fs_busy = 1;
		return;
	case BODY_READ: read_file(s); return;
	case BODY_TAIL:
		s->part++;
		s->phase = s->part < s->n ? BODY_HEAD : BODY_CLOSE;
		op_https_body_write(s->conn, "\r\n", 2);
		return;
	case BODY_CLOSE:
		len = op_stow_close(s->small, sizeof(s->small), s->boundary);
		s->phase = BODY_END;
		op_https_body_write(s->conn, s->small, len);
		return;
	case BODY_END: op_https_body_write(s->conn, NULL, 0); return;
	}
}
