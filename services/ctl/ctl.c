/*
 * ctl: what outpostctl's commands share (ctl.h): which configuration file
 * is in use, the lines of a text, and the body of the shaping command.
 */
#include "ctl/ctl.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/schedule.h"

/* --- configuration ------------------------------------------------------ */

int op_ctl_config_path(const char *option, char *path, size_t size)
{
	const char *env = getenv("OUTPOST_CONFIG");
	const char *p = "";

	if (option)
		p = option;
	else if (env && *env)
		p = env;
	else if (access(OP_CTL_DEFAULT_CONFIG, F_OK) == 0)
		p = OP_CTL_DEFAULT_CONFIG;
	if (strlen(p) >= size)
		return -ENAMETOOLONG;
	snprintf(path, size, "%s", p);
	return 0;
}

/* --- commands' building blocks ------------------------------------------- */

int op_ctl_is_rate(const char *arg)
{
	uint64_t bps;

	if (op_rate_parse(arg, &bps) == 0)
		return 1;
	/* Every schedule window is "DAYS HH:MM-HH:MM RATE": a single word that
	 * is no rate is a mistyped rate, and the server's answer should say
	 * what a rate is rather than what a schedule is. */
	for (const char *p = arg; *p; p++)
		if (isspace((unsigned char)*p))
			return 0;
	return 1;
}

int op_ctl_shaping_body(const char *arg, char **out)
{
	cJSON *o = cJSON_CreateObject();
	int ok;

	if (!o)
		return -ENOMEM;
	if (!arg)
		ok = cJSON_AddNullToObject(o, "rate") && cJSON_AddNullToObject(o, "schedule");
	else
		ok = cJSON_AddStringToObject(o, op_ctl_is_rate(arg) ? "rate" : "schedule", arg) !=
		     NULL;
	*out = ok ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	return *out ? 0 : -ENOMEM;
}

/* --- inside ctl/ ---------------------------------------------------------- */

void op_ctl__next_line(const char *text, size_t len, size_t pos, size_t *bare, size_t *full)
{
	const char *nl = memchr(text + pos, '\n', len - pos);
	size_t n = nl ? (size_t)(nl - (text + pos)) + 1 : len - pos;

	*full = n;
	if (n && text[pos + n - 1] == '\n')
		n--;
	if (n && text[pos + n - 1] == '\r')
		n--;
	*bare = n;
}
