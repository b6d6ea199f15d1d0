/*
 * file: reading whole files, and writing them so that they survive a
 * power cut.
 *
 * A file is durable once its data is fsync'd and the directory entry that
 * names it is fsync'd too; a rename is durable once the directory it
 * lands in is fsync'd. Every durable write in Outpost (spool objects, the
 * configuration file that outpostctl rewrites, uploaded site files and
 * firmware bundles) goes through these.
 *
 * Errors are negative errno codes. Thread-safe (no shared state); every
 * call may block on the disk: on the uplink, call them off the loop.
 */
#ifndef OP_FILE_H
#define OP_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Reads fd to its end into a malloc'd buffer (NUL-terminated, not
 * counted in *out_len). -EFBIG when it holds more than max bytes. */
int op_read_all(int fd, size_t max, char **out, size_t *out_len);

/* Writes all of buf to fd, retrying short writes and EINTR. */
int op_write_all(int fd, const void *buf, size_t len);

/* fsyncs the directory dir: entries made, renamed or removed in it are
 * then on stable storage. */
int op_fsync_dir(const char *dir);

/* The directory part of path into out: "a/b" for "a/b/c", "/" for "/c",
 * "." for "c". */
void op_dirname(const char *path, char *out, size_t size);

/* rename(from, to), then fsyncs to's directory (and from's, when it is
 * another one). */
int op_rename_durable(const char *from, const char *to);

/*
 * Creates (or truncates) path with mode, writes len bytes of data and
 * fsyncs it. The name is durable once the directory is fsync'd (a caller
 * writing several files fsyncs it once, or renames the directory with
 * op_rename_durable()).
 */
int op_file_write(const char *path, const void *data, size_t len, mode_t mode);

#endif
