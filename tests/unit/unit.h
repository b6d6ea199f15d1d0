/*
 * unit: helpers shared by the cmocka tests (tests/unit/test_*.c), included
 * after <cmocka.h>.
 */
#ifndef OP_UNIT_H
#define OP_UNIT_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

/* Removes a test's directory and everything in it. */
static inline void unit_rm_tree(const char *dir)
{
	nftw(dir, unit_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A test's own directory, /tmp/NAME.XXXXXX, into dir. 0, or -1. */
static inline int unit_mkdtemp(char *dir, size_t size, const char *name)
{
	snprintf(dir, size, "/tmp/%s.XXXXXX", name);
	return mkdtemp(dir) ? 0 : -1;
}

/* Writes text to DIR/name (cmocka asserts); returns the path, written
 * into path. */
static inline const char *unit_write_file(char *path, size_t size, const char *dir,
					  const char *name, const char *text)
{
	FILE *out;

	snprintf(path, size, "%s/%s", dir, name);
	out = fopen(path, "w");
	assert_non_null(out);
	assert_int_equal(fwrite(text, 1, strlen(text), out), strlen(text));
	assert_int_equal(fclose(out), 0);
	return path;
}

#endif
