/*
 * ctl_ini: the rewrite of one key of the configuration file, for
 * outpostctl passwd: every other byte of the file kept (an engineer's
 * comments, order, line endings), and nothing installed that the services
 * would refuse to load.
 *
 * Nothing here keeps state between calls.
 */
#ifndef OP_CTL_INI_H
#define OP_CTL_INI_H

#include <stddef.h>

/*
 * Sets key = value in [section] of the INI text (len bytes, need not end
 * in a newline), keeping every other line byte for byte: an existing key
 * line of that section is replaced in place (later duplicates, which would
 * override it, are dropped); otherwise the line is added after the last
 * key of the first [section]; otherwise the section is appended. Lines are
 * read as services/common/config.c reads them (inih without continuation
 * lines: comments start with ';' or '#', indented keys are keys).
 *
 * On success *out is a malloc'd NUL-terminated text (caller frees) of
 * *out_len bytes. Returns 0, -EINVAL (a newline in section, key or value)
 * or -ENOMEM.
 */
int op_ctl_ini_set(const char *text, size_t len, const char *section, const char *key,
		   const char *value, char **out, size_t *out_len);

/*
 * op_ctl_ini_set on the file at path, atomically: the new text goes into
 * PATH.tmp (same owner and mode as the file), is fsync'd, must load with
 * op_config_load (a file the services would refuse is never installed),
 * and is renamed over the file, whose directory is then fsync'd. A path
 * that is a symbolic link has its target rewritten. Returns 0 or a
 * negative errno with "what failed: why" in err; on failure the file is
 * unchanged and no PATH.tmp is left behind.
 */
int op_ctl_config_set(const char *path, const char *section, const char *key, const char *value,
		      char *err, size_t errlen);

#endif
