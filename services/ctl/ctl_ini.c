/*
 * ctl_ini: outpostctl's rewrite of one key of the configuration file
 * (ctl_ini.h).
 */
#include "ctl/ctl_ini.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/config.h"
#include "common/file.h"
#include "ctl/ctl.h"

#define CONFIG_MAX (16u << 20) /* a configuration file is a few KB */

enum line_kind { L_BLANK, L_COMMENT, L_SECTION, L_KEY, L_OTHER };

/*
 * What inih (as config.c sets it up) makes of one line s[0..n) without its
 * end of line: *name is the section's name or the key's name.
 */
static enum line_kind classify(const char *s, size_t n, const char **name, size_t *name_len)
{
	const char *end = s + n, *p;

	while (s < end && isspace((unsigned char)*s))
		s++;
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	if (s == end)
		return L_BLANK;
	if (*s == ';' || *s == '#')
		return L_COMMENT;
	if (*s == '[') {
		p = memchr(s + 1, ']', (size_t)(end - s - 1));
		if (!p)
			return L_OTHER;
		/* No trimming inside the brackets: config.c does none either. */
		*name = s + 1;
		*name_len = (size_t)(p - s - 1);
		return L_SECTION;
	}
	for (p = s; p < end && *p != '=' && *p != ':'; p++)
		;
	if (p == end)
		return L_OTHER;
	while (p > s && isspace((unsigned char)p[-1]))
		p--;
	*name = s;
	*name_len = (size_t)(p - s);
	return L_KEY;
}

static int span_is(const char *s, size_t n, const char *want)
{
	return strlen(want) == n && memcmp(s, want, n) == 0;
}

int op_ctl_ini_set(const char *text, size_t len, const char *section, const char *key,
		   const char *value, char **out, size_t *out_len)
{
	/* Offsets into text: where the first key line is (replaced), and the
	 * end of the line after which a new key line goes. */
	size_t first_key = SIZE_MAX, insert_after = SIZE_MAX, pos, bare, full, o = 0, cap;
	const char *eol = "\n", *name;
	size_t name_len, skip = 0;
	int in_target = 0, first_block_done = 0, placed = 0;
	char *buf;

	if (strpbrk(section, "\r\n]") || strpbrk(key, "\r\n=:") || strpbrk(value, "\r\n"))
		return -EINVAL;
	/* inih skips a UTF-8 byte order mark at the start of the file. */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		skip = 3;
	for (pos = 0; pos < len; pos += full) {
		size_t from = pos ? pos : skip;

		op_ctl__next_line(text, len, pos, &bare, &full);
		if (pos == 0 && full - bare == 2)
			eol = "\r\n"; /* new lines follow the file's first line */
		switch (classify(text + from, bare - (from - pos), &name, &name_len)) {
		case L_SECTION:
			if (in_target)
				first_block_done = 1;
			in_target = span_is(name, name_len, section);
			if (in_target && !first_block_done && insert_after == SIZE_MAX)
				insert_after = pos + full;
			break;
		case L_KEY:
			if (!in_target)
				break;
			if (span_is(name, name_len, key) && first_key == SIZE_MAX)
				first_key = pos;
			if (!first_block_done)
				insert_after = pos + full;
			break;
		default: break;
		}
	}

	cap = len + strlen(section) + strlen(key) + strlen(value) + 16;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
#define EMIT(s, n)                                                                                 \
	do {                                                                                       \
		memcpy(buf + o, (s), (n));                                                         \
		o += (n);                                                                          \
	} while (0)
#define EMIT_KEY()                                                                                 \
	do {                                                                                       \
		o += (size_t)snprintf(buf + o, cap - o, "%s = %s%s", key, value, eol);             \
		placed = 1;                                                                        \
	} while (0)

	in_target = 0;
	for (pos = 0; pos < len; pos += full) {
		size_t from = pos ? pos : skip;
		enum line_kind kind;

		op_ctl__next_line(text, len, pos, &bare, &full);
		kind = classify(text + from, bare - (from - pos), &name, &name_len);
		if (kind == L_SECTION)
			in_target = span_is(name, name_len, section);
		if (kind == L_KEY && in_target && span_is(name, name_len, key)) {
			/* The first is replaced where it stands; any later one
			 * would override it (the last value wins), so it goes. */
			if (pos == first_key) {
				if (pos == 0 && skip)
					EMIT(text, skip);
				EMIT_KEY();
			}
			continue;
		}
		EMIT(text + pos, full);
		if (first_key == SIZE_MAX && pos + full == insert_after && !placed) {
			if (full == bare) /* the last line had no end of line */
				EMIT(eol, strlen(eol));
			EMIT_KEY();
		}
	}
	if (!placed) {
		if (o && buf[o - 1] != '\n')
			EMIT(eol, strlen(eol));
		/* A blank line between the last section and the new one. */
		if (o && !(o >= 2 && buf[o - 2] == '\n') &&
		    !(o >= 4 && memcmp(buf + o - 4, "\r\n\r\n", 4) == 0))
			EMIT(eol, strlen(eol));
		o += (size_t)snprintf(buf + o, cap - o, "[%s]%s", section, eol);
		EMIT_KEY();
	}
#undef EMIT
#undef EMIT_KEY
	buf[o] = '\0';
	*out = buf;
	*out_len = o;
	return 0;
}

int op_ctl_config_set(const char *path, const char *section, const char *key, const char *value,
		      char *err, size_t errlen)
{
	char real[PATH_MAX], tmp[PATH_MAX + 8], dir[PATH_MAX], load_err[640];
	char *text = NULL, *updated = NULL;
	size_t len = 0, updated_len = 0;
	op_config *check = NULL;
	struct stat st;
	int fd = -1, rc, tmp_made = 0;

	/* The target of a symbolic link is rewritten: renaming over the link
	 * would replace it with a file of its own. */
	if (!realpath(path, real)) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	fd = open(real, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot read %s: %s", real, strerror(errno));
		goto out;
	}
	rc = op_read_all(fd, CONFIG_MAX, &text, &len);
	close(fd);
	fd = -1;
	if (rc < 0) {
		snprintf(err, errlen, "cannot read %s: %s", real, strerror(-rc));
		goto out;
	}
	rc = op_ctl_ini_set(text, len, section, key, value, &updated, &updated_len);
	if (rc < 0) {
		snprintf(err, errlen, "cannot set %s in [%s]: %s", key, section, strerror(-rc));
		goto out;
	}

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", real) >= sizeof(tmp)) {
		rc = -ENAMETOOLONG;
		snprintf(err, errlen, "%s: path too long", real);
		goto out;
	}
	/* 0600 until it has the file's mode: the hash is never readable by more
	 * than the file allowed. A stale PATH.tmp of an interrupted run is
	 * truncated, not trusted. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	tmp_made = 1;
	{
		struct stat tst;

		/* The service may read the file through its group (root:outpost
		 * 0640 on the appliance): the new file keeps owner and group. */
		if (fstat(fd, &tst) < 0 || ((tst.st_uid != st.st_uid || tst.st_gid != st.st_gid) &&
					    fchown(fd, st.st_uid, st.st_gid) < 0)) {
			rc = -errno;
			snprintf(err, errlen, "cannot give %s the owner and group of %s: %s", tmp,
				 real, strerror(errno));
			goto out;
		}
	}
	if (fchmod(fd, st.st_mode & 07777) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot set the mode of %s: %s", tmp, strerror(errno));
		goto out;
	}
	rc = op_write_all(fd, updated, updated_len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (rc == 0 && close(fd) < 0)
		rc = -errno;
	else if (rc < 0)
		close(fd);
	fd = -1;
	if (rc < 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(-rc));
		goto out;
	}

	check = malloc(sizeof(*check));
	if (!check) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = op_config_load(check, tmp, load_err, sizeof(load_err));
	if (rc < 0) {
		snprintf(err, errlen, "the new file would be refused (%s); %s is unchanged",
			 load_err, real);
		goto out;
	}

	if (rename(tmp, real) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, real, strerror(errno));
		goto out;
	}
	tmp_made = 0;
	/* The rename is durable once the directory is on disk. */
	op_dirname(real, dir, sizeof(dir));
	rc = op_fsync_dir(dir);
	if (rc < 0) {
		snprintf(err, errlen, "%s is written but its directory could not be synced: %s",
			 real, strerror(-rc));
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	if (tmp_made)
		unlink(tmp);
	if (updated)
		sodium_memzero(updated, updated_len);
	free(updated);
	free(text);
	free(check);
	return rc;
}
