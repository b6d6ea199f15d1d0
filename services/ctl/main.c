/*
 * outpostctl: the field engineer's command-line tool. It talks to
 * outpost-uplink's status API (docs/API.md) on the Unix socket, where the
 * socket's permissions are the authentication, and writes the console
 * password into the configuration file. Usage, commands and exit codes
 * are in usage() below and in docs/outpostctl.md.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "common/config.h"
#include "ctl/ctl.h"
#include "ctl/ctl_client.h"
#include "ctl/ctl_ini.h"
#include "ctl/ctl_password.h"
#include "ctl/ctl_print.h"

#define TIMEOUT_MS 30000
/* test-link resolves, connects, handshakes and queries with the cloud's
 * own timeouts: up to about 40 s. */
#define TEST_LINK_TIMEOUT_MS 60000

static void usage(FILE *out)
{
	fprintf(out,
		"usage: outpostctl [--config FILE] [--socket PATH] COMMAND ...\n"
		"\n"
		"Commands:\n"
		"  status [--json]                  the service at a glance\n"
		"  status --destination NAME        one destination's link, queue and totals\n"
		"  health [--json]                  /healthz: exit 0 healthy, 1 not\n"
		"  queue ls [--state S] [--search TEXT] [--page N] [--json]\n"
		"                                   studies in the spool (S: queued, sending,\n"
		"                                   sent, quarantined); TEXT: the start of a\n"
		"                                   patient ID or accession number, or part\n"
		"                                   of a patient's name\n"
		"  retry STUDY_UID | retry --all    requeue quarantined instances\n"
		"  discard STUDY_UID [--yes]        delete a study's quarantined instances for\n"
		"                                   good (asks for the UID again unless --yes)\n"
		"  pause | resume                   stop or restart uploading (persists)\n"
		"  --destination NAME               with status, queue, retry, pause, resume\n"
		"                                   and test-link: that destination only\n"
		"                                   (without it: every destination)\n"
		"  shaping RATE | SCHEDULE          set the upload rate (2Mbit, unlimited, 0)\n"
		"                                   or the weekly schedule ([shaping] syntax)\n"
		"  shaping --clear                  back to the configuration file's values\n"
		"  test-link [--json]               check the way to the cloud, step by step\n"
		"  passwd                           set the web console's password (read from\n"
		"                                   the terminal, or one line of stdin)\n"
		"  update BUNDLE                    install a firmware update (.raucb) and\n"
		"                                   reboot into it (on the appliance, as root)\n"
		"  update --allow-downgrade BUNDLE  the same, even when it is older than the\n"
		"                                   running firmware\n"
		"\n"
		"Options:\n"
		"  --config FILE    the configuration file (else $OUTPOST_CONFIG, else\n"
		"                   " OP_CTL_DEFAULT_CONFIG " if present, else the defaults)\n"
		"  --socket PATH    the service's Unix socket (else [console] socket)\n"
		"  --help, --version\n"
		"\n"
		"Exit status: 0 success; 1 the service answered with an error or the\n"
		"operation failed; 2 usage error (bad arguments, bad configuration,\n"
		"refused password); 3 outpost-uplink is not running.\n");
}

/* --- the password from the terminal -------------------------------------- */

/* A signal handler can reach nothing but globals: these let it give the
 * terminal its echo back if the engineer presses Ctrl-C at the prompt. */
static struct termios saved_tty;
static volatile sig_atomic_t tty_changed;

static void restore_tty_and_die(int sig)
{
	if (tty_changed)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Reads one line of at most OP_CTL_PASSWORD_MAX bytes into buf (size
 * OP_CTL_PASSWORD_MAX + 2) without its end of line; without echo when
 * stdin is a terminal. Returns 0, -ENODATA (end of input), -E2BIG or -EIO.
 */
static int read_password(const char *prompt, char *buf, size_t size)
{
	int tty = isatty(STDIN_FILENO), rc = 0, c;
	struct sigaction sa = { .sa_handler = restore_tty_and_die };
	struct termios quiet;
	size_t n;

	if (tty) {
		if (tcgetattr(STDIN_FILENO, &saved_tty) < 0)
			return -EIO;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
		sigaction(SIGQUIT, &sa, NULL);
		quiet = saved_tty;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		quiet.c_lflag |= ECHONL; /* the Enter still moves to the next line */
		fputs(prompt, stderr);
		fflush(stderr);
		tty_changed = 1;
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0) {
			rc = -EIO;
			goto out;
		}
	}
	if (!fgets(buf, (int)size, stdin)) {
		rc = ferror(stdin) ? -EIO : -ENODATA;
		goto out;
	}
	n = strlen(buf);
	if (n && buf[n - 1] == '\n') {
		buf[--n] = '\0';
	} else if (!feof(stdin)) {
		/* Longer than the buffer: the rest of the line is not kept. */
		while ((c = getchar()) != EOF && c != '\n')
			;
		rc = -E2BIG;
		goto out;
	}
	if (n && buf[n - 1] == '\r')
		buf[--n] = '\0';
out:
	if (tty_changed) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
		tty_changed = 0;
	}
	if (rc < 0)
		sodium_memzero(buf, size);
	return rc;
}

/* --- talking to the service ---------------------------------------------- */

/*
 * Sends one request. Returns 0 with *r filled when the service answered;
 * otherwise prints why and returns the exit code (nothing to free).
 */
static int request(const char *sock, const char *method, const char *target, const char *body,
		   int timeout_ms, op_ctl_response *r)
{
	char err[512];
	int rc = op_ctl_request(sock, method, target, body, timeout_ms, r, err, sizeof(err));

	if (rc < 0 && op_ctl_not_running(rc)) {
		fprintf(stderr, "outpostctl: outpost-uplink is not running (no answer on %s: %s)\n",
			sock, err);
		return OP_CTL_EXIT_NOT_RUNNING;
	}
	if (rc == -EACCES) {
		fprintf(stderr,
			"outpostctl: %s: permission denied (run as root or as a member of the "
			"socket's group)\n",
			sock);
		return OP_CTL_EXIT_FAILED;
	}
	if (rc < 0) {
		fprintf(stderr, "outpostctl: %s %s on %s: %s\n", method, target, sock, err);
		return OP_CTL_EXIT_FAILED;
	}
	return 0;
}

/* request(), and an answer other than 2xx printed and failed. */
static int call(const char *sock, const char *method, const char *target, const char *body,
		int timeout_ms, op_ctl_response *r)
{
	char text[1024];
	int rc = request(sock, method, target, body, timeout_ms, r);

	if (rc)
		return rc;
	if (r->status < 200 || r->status > 299) {
		op_ctl_error_text(r, text, sizeof(text));
		fprintf(stderr, "outpostctl: %s (HTTP %d)\n", text, r->status);
		op_ctl_response_free(r);
		return OP_CTL_EXIT_FAILED;
	}
	return 0;
}

/* The JSON of a 2xx answer; prints why and returns NULL when it is not JSON. */
static cJSON *parse_json(const op_ctl_response *r, const char *what)
{
	cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);

	if (!j)
		fprintf(stderr, "outpostctl: the answer to %s is not JSON\n", what);
	return j;
}

/* Prints a body as it came (--json), ending in a newline. */
static void print_raw(const op_ctl_response *r)
{
	fwrite(r->body, 1, r->body_len, stdout);
	if (!r->body_len || r->body[r->body_len - 1] != '\n')
		putchar('\n');
}

/* --- commands ------------------------------------------------------------ */

enum {
	O_JSON = 1 << 0,
	O_ALL = 1 << 1,
	O_CLEAR = 1 << 2,
	O_STATE = 1 << 3,
	O_PAGE = 1 << 4,
	O_YES = 1 << 5,
	O_DOWNGRADE = 1 << 6,
	O_DEST = 1 << 7,
	O_SEARCH = 1 << 8,
};

struct args {
	const char *config, *socket, *state;
	const char *dest;   /* --destination NAME, or NULL: every destination */
	const char *search; /* --search TEXT (PHI: never printed back) */
	long page;
	unsigned given; /* O_* */
	char **pos;     /* the command and its arguments */
	int npos;
};

/*
 * GET target, shown as it came with --json, else by print (a table);
 * what names the request in messages.
 */
static int show(const char *sock, const char *target, const char *what, const struct args *a,
		void (*print)(const cJSON *, FILE *))
{
	op_ctl_response r;
	cJSON *j;
	int rc = call(sock, "GET", target, NULL, TIMEOUT_MS, &r);

	if (rc)
		return rc;
	if (a->given & O_JSON) {
		print_raw(&r);
	} else if ((j = parse_json(&r, what))) {
		print(j, stdout);
		cJSON_Delete(j);
	} else {
		rc = OP_CTL_EXIT_FAILED;
	}
	op_ctl_response_free(&r);
	return rc;
}

static int cmd_status(const char *sock, const struct args *a)
{
	op_ctl_response r;
	const cJSON *d, *found = NULL;
	cJSON *j;
	int rc;

	if (!a->dest)
		return show(sock, "/api/status", "GET /api/status", a, op_ctl_print_status);
	/* One destination: its part of the status. */
	if ((rc = call(sock, "GET", "/api/status", NULL, TIMEOUT_MS, &r)))
		return rc;
	if (!(j = parse_json(&r, "GET /api/status"))) {
		op_ctl_response_free(&r);
		return OP_CTL_EXIT_FAILED;
	}
	cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(j, "destinations"))
	{
		if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "name")) ?: "",
			   a->dest) == 0)
			found = d;
	}
	if (!found) {
		fprintf(stderr, "outpostctl: no destination %s (outpostctl status lists them)\n",
			a->dest);
		rc = OP_CTL_EXIT_FAILED;
	} else if (a->given & O_JSON) {
		char *text = cJSON_Print(found);

		printf("%s\n", text ? text : "{}");
		free(text);
	} else {
		op_ctl_print_destination(
			found, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "time")),
			stdout);
	}
	cJSON_Delete(j);
	op_ctl_response_free(&r);
	return rc;
}

/*
 * GET /healthz: one line per check, exit 0 when healthy, 1 when not (503),
 * 3 when the uplink does not answer. The appliance's health gate runs it.
 */
static int cmd_health(const char *sock, const struct args *a)
{
	op_ctl_response r;
	cJSON *j, *c;
	int rc = request(sock, "GET", "/healthz", NULL, TIMEOUT_MS, &r);

	if (rc)
		return rc;
	rc = r.status == 200 ? 0 : OP_CTL_EXIT_FAILED;
	if (a->given & O_JSON) {
		print_raw(&r);
	} else if ((j = parse_json(&r, "GET /healthz"))) {
		printf("%s\n", r.status == 200 ? "healthy" : "NOT healthy");
		cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "checks"))
		{
			const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "detail");

			printf("  %-9s %-6s %s\n", c->string,
			       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "ok")) ? "ok"
										       : "FAILED",
			       cJSON_IsString(d) ? d->valuestring : "");
		}
		cJSON_Delete(j);
	} else {
		rc = OP_CTL_EXIT_FAILED;
	}
	op_ctl_response_free(&r);
	return rc;
}

/* s percent-encoded for a query string (all but RFC 3986's unreserved);
 * cut where out is full. */
static void url_encode(const char *s, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *s && o + 4 <= size; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    strchr("-._~", c)) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
}

static int cmd_queue(const char *sock, const struct args *a)
{
	char target[1024], search[3 * 128 + 1] = "";

	/* The server checks the length and says so (cut here, it is still
	 * longer than the server takes). */
	if (a->search)
		url_encode(a->search, search, sizeof(search));
	snprintf(target, sizeof(target), "/api/queue?page=%ld%s%s%s%s%s%s", a->page,
		 a->state ? "&state=" : "", a->state ? a->state : "",
		 a->dest ? "&destination=" : "", a->dest ? a->dest : "",
		 a->search ? "&search=" : "", search);
	return show(sock, target, "GET /api/queue", a, op_ctl_print_queue);
}

/* POSTs req (NULL: out of memory) to target; *out is the 2xx answer's JSON
 * (the caller deletes it). Returns 0 or the exit code, having said why. */
static int post_json(const char *sock, const char *target, const cJSON *req, cJSON **out)
{
	char *body = req ? cJSON_PrintUnformatted(req) : NULL, what[64];
	op_ctl_response r = { 0 };
	int rc = OP_CTL_EXIT_FAILED;

	*out = NULL;
	if (!body)
		goto out;
	rc = call(sock, "POST", target, body, TIMEOUT_MS, &r);
	if (rc)
		goto out;
	snprintf(what, sizeof(what), "POST %s", target);
	if (!(*out = parse_json(&r, what)))
		rc = OP_CTL_EXIT_FAILED;
out:
	op_ctl_response_free(&r);
	free(body);
	return rc;
}

static int cmd_retry(const char *sock, const struct args *a)
{
	cJSON *req = cJSON_CreateObject(), *j = NULL, *n;
	int rc;

	if (req && (a->given & O_ALL))
		cJSON_AddTrueToObject(req, "all");
	else if (req)
		cJSON_AddStringToObject(req, "study", a->pos[1]);
	if (req && a->dest)
		cJSON_AddStringToObject(req, "destination", a->dest);
	rc = post_json(sock, "/api/retry", req, &j);
	n = cJSON_GetObjectItemCaseSensitive(j, "requeued");
	if (rc == 0 && !cJSON_IsNumber(n))
		rc = OP_CTL_EXIT_FAILED;
	if (rc == 0)
		printf("requeued %.0f %s%s\n", n->valuedouble,
		       n->valuedouble == 1 ? "instance" : "instances",
		       n->valuedouble == 0
			       ? (a->given & O_ALL ? " (nothing is quarantined)"
						   : " (the study has no quarantined instance)")
			       : "");
	cJSON_Delete(j);
	cJSON_Delete(req);
	return rc;
}

/*
 * The operator confirms a discard by typing the study UID again on the
 * terminal (or passes --yes, e.g. in a script): it deletes patient data
 * that never reached the cloud.
 */
static int confirm_discard(const char *study)
{
	char line[256];
	size_t n;

	if (!isatty(STDIN_FILENO)) {
		fprintf(stderr, "outpostctl: discard deletes instances for good: confirm with "
				"--yes when not on a terminal\n");
		return OP_CTL_EXIT_USAGE;
	}
	fprintf(stderr,
		"This deletes the quarantined instances of study %s from the spool for\n"
		"good; they never reached the cloud. Type the study UID to confirm: ",
		study);
	if (!fgets(line, sizeof(line), stdin))
		line[0] = '\0';
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	if (strcmp(line, study) != 0) {
		fprintf(stderr, "outpostctl: not confirmed: nothing discarded\n");
		return OP_CTL_EXIT_FAILED;
	}
	return 0;
}

static int cmd_discard(const char *sock, const struct args *a)
{
	cJSON *req = NULL, *j = NULL, *n, *bytes;
	int rc = a->given & O_YES ? 0 : confirm_discard(a->pos[1]);

	if (rc)
		return rc;
	req = cJSON_CreateObject();
	if (req && (!cJSON_AddStringToObject(req, "study", a->pos[1]) ||
		    !cJSON_AddStringToObject(req, "confirm", a->pos[1]))) {
		cJSON_Delete(req);
		req = NULL;
	}
	rc = post_json(sock, "/api/discard", req, &j);
	n = cJSON_GetObjectItemCaseSensitive(j, "discarded");
	bytes = cJSON_GetObjectItemCaseSensitive(j, "bytes");
	if (rc == 0 && (!cJSON_IsNumber(n) || !cJSON_IsNumber(bytes)))
		rc = OP_CTL_EXIT_FAILED;
	if (rc == 0)
		printf("discarded %.0f %s (%.0f bytes)\n", n->valuedouble,
		       n->valuedouble == 1 ? "instance" : "instances", bytes->valuedouble);
	cJSON_Delete(j);
	cJSON_Delete(req);
	return rc;
}

/* {"destination": NAME} when --destination was given, else {}. */
static char *dest_body(const struct args *a)
{
	cJSON *o = cJSON_CreateObject();
	char *body;

	if (o && a->dest)
		cJSON_AddStringToObject(o, "destination", a->dest);
	body = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	return body;
}

static int cmd_pause(const char *sock, const struct args *a, int pause)
{
	op_ctl_response r;
	char *body = dest_body(a);
	int rc = body ? call(sock, "POST", pause ? "/api/pause" : "/api/resume", body, TIMEOUT_MS,
			     &r)
		      : OP_CTL_EXIT_FAILED;

	free(body);
	if (rc)
		return rc;
	if (pause)
		printf("uploading%s%s paused (it stays paused across restarts: outpostctl "
		       "resume%s%s)\n",
		       a->dest ? " to " : "", a->dest ? a->dest : "",
		       a->dest ? " --destination " : "", a->dest ? a->dest : "");
	else
		printf("uploading%s%s resumed\n", a->dest ? " to " : "", a->dest ? a->dest : "");
	op_ctl_response_free(&r);
	return 0;
}

static int cmd_shaping(const char *sock, const struct args *a)
{
	char *arg = NULL, *body = NULL;
	size_t len = 0, o = 0;
	op_ctl_response r = { 0 };
	cJSON *j = NULL;
	int rc = OP_CTL_EXIT_FAILED;

	/* A schedule may come unquoted, as several arguments. */
	if (!(a->given & O_CLEAR)) {
		for (int i = 1; i < a->npos; i++)
			len += strlen(a->pos[i]) + 1;
		arg = malloc(len);
		if (!arg)
			goto out;
		for (int i = 1; i < a->npos; i++)
			o += (size_t)snprintf(arg + o, len - o, "%s%s", i > 1 ? " " : "",
					      a->pos[i]);
	}
	if (op_ctl_shaping_body(arg, &body) < 0)
		goto out;
	rc = call(sock, "PUT", "/api/shaping", body, TIMEOUT_MS, &r);
	if (rc)
		goto out;
	j = parse_json(&r, "PUT /api/shaping");
	if (!j) {
		rc = OP_CTL_EXIT_FAILED;
		goto out;
	}
	op_ctl_print_rate(j, stdout);
out:
	op_ctl_response_free(&r);
	cJSON_Delete(j);
	free(body);
	free(arg);
	return rc;
}

static int cmd_test_link(const char *sock, const struct args *a)
{
	op_ctl_response r;
	cJSON *j;
	char *body = dest_body(a);
	int rc = body ? call(sock, "POST", "/api/test-link", body, TEST_LINK_TIMEOUT_MS, &r)
		      : OP_CTL_EXIT_FAILED;

	free(body);
	if (rc)
		return rc;
	j = parse_json(&r, "POST /api/test-link");
	if (!j) {
		rc = OP_CTL_EXIT_FAILED;
	} else if (a->given & O_JSON) {
		print_raw(&r);
		rc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok")) ? 0
									     : OP_CTL_EXIT_FAILED;
	} else {
		rc = op_ctl_print_test_link(j, stdout) ? 0 : OP_CTL_EXIT_FAILED;
	}
	cJSON_Delete(j);
	op_ctl_response_free(&r);
	return rc;
}

static int cmd_passwd(const char *config_path, const char *sock)
{
	char pw[OP_CTL_PASSWORD_MAX + 2], again[OP_CTL_PASSWORD_MAX + 2], hash[128], err[1024];
	const char *why = "";
	op_ctl_response r = { 0 };
	int rc;

	if (!*config_path) {
		fprintf(stderr, "outpostctl: no configuration file is in use (the embedded "
				"defaults): there is nowhere to write the password; give one with "
				"--config FILE or OUTPOST_CONFIG\n");
		return OP_CTL_EXIT_USAGE;
	}
	rc = read_password("New console password: ", pw, sizeof(pw));
	if (rc == 0 && isatty(STDIN_FILENO)) {
		rc = read_password("Again: ", again, sizeof(again));
		if (rc == 0 && strcmp(pw, again) != 0) {
			fprintf(stderr,
				"outpostctl: the passwords do not match; nothing changed\n");
			rc = OP_CTL_EXIT_USAGE;
			goto out;
		}
	}
	if (rc < 0) {
		fprintf(stderr, "outpostctl: %s; nothing changed\n",
			rc == -ENODATA ? "no password given"
			: rc == -E2BIG ? "the password is too long (at most 1024 bytes)"
				       : "cannot read the password from the terminal");
		rc = OP_CTL_EXIT_USAGE;
		goto out;
	}
	if (op_ctl_password_check(pw, &why) < 0) {
		fprintf(stderr, "outpostctl: %s; nothing changed\n", why);
		rc = OP_CTL_EXIT_USAGE;
		goto out;
	}
	rc = op_ctl_password_hash(pw, hash, sizeof(hash));
	if (rc < 0) {
		fprintf(stderr, "outpostctl: cannot hash the password: %s\n", strerror(-rc));
		rc = OP_CTL_EXIT_FAILED;
		goto out;
	}
	rc = op_ctl_config_set(config_path, "console", "password_hash", hash, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "outpostctl: %s\n", err);
		rc = OP_CTL_EXIT_FAILED;
		goto out;
	}
	printf("console password set in %s\n", config_path);

	/* The service takes it at once when it is running. */
	if (!*sock) {
		printf("no [console] socket is configured: outpost-uplink reads the password "
		       "when it starts or on SIGHUP\n");
		rc = 0;
		goto out;
	}
	rc = op_ctl_request(sock, "POST", "/api/reload", "{}", TIMEOUT_MS, &r, err, sizeof(err));
	if (rc < 0 && op_ctl_not_running(rc)) {
		printf("outpost-uplink is not running (no answer on %s): the password applies "
		       "when it starts\n",
		       sock);
		rc = 0;
	} else if (rc < 0) {
		fprintf(stderr,
			"outpostctl: outpost-uplink did not reload (%s on %s): restart it or send "
			"it SIGHUP\n",
			err, sock);
		rc = OP_CTL_EXIT_FAILED;
	} else if (r.status != 200) {
		op_ctl_error_text(&r, err, sizeof(err));
		fprintf(stderr, "outpostctl: outpost-uplink refused to reload: %s (HTTP %d)\n", err,
			r.status);
		rc = OP_CTL_EXIT_FAILED;
	} else {
		printf("outpost-uplink reloaded its configuration: the password applies now\n");
		rc = 0;
	}
out:
	op_ctl_response_free(&r);
	sodium_memzero(pw, sizeof(pw));
	sodium_memzero(again, sizeof(again));
	sodium_memzero(hash, sizeof(hash));
	return rc;
}

/*
 * The appliance's updater (rootfs/overlay/usr/lib/outpost/update): checks
 * the bundle, installs it into the other root slot with RAUC, shows the
 * progress and reboots into it. Its exit status is outpostctl's. It
 * refuses a bundle older than the running firmware unless told
 * --allow-downgrade, which only this command, run on the box, passes (the
 * console's upload and a USB stick never do).
 */
static int cmd_update(const char *bundle, int allow_downgrade)
{
	if (allow_downgrade)
		execl(OP_CTL_UPDATER, OP_CTL_UPDATER, "--allow-downgrade", bundle, (char *)NULL);
	else
		execl(OP_CTL_UPDATER, OP_CTL_UPDATER, bundle, (char *)NULL);
	fprintf(stderr, "outpostctl: %s: %s (firmware updates are installed on the appliance)\n",
		OP_CTL_UPDATER, strerror(errno));
	return OP_CTL_EXIT_FAILED;
}

/* --- the command line ---------------------------------------------------- */

/* Each command: its name, how many arguments, the options it takes. */
static const struct command {
	const char *name;
	int min_args, max_args; /* after the command's name (-1: any) */
	unsigned options;
} commands[] = {
	{ "status", 0, 0, O_JSON | O_DEST },                              /* GET /api/status */
	{ "health", 0, 0, O_JSON },                                       /* GET /healthz */
	{ "queue", 1, 1, O_JSON | O_STATE | O_PAGE | O_DEST | O_SEARCH }, /* ls: GET /api/queue */
	{ "retry", 0, 1, O_ALL | O_DEST },                                /* POST /api/retry */
	{ "discard", 1, 1, O_YES },                                       /* POST /api/discard */
	{ "pause", 0, 0, O_DEST },                                        /* POST /api/pause */
	{ "resume", 0, 0, O_DEST },                                       /* POST /api/resume */
	{ "shaping", 0, -1, O_CLEAR },                                    /* PUT /api/shaping */
	{ "test-link", 0, 0, O_JSON | O_DEST },                           /* POST /api/test-link */
	{ "passwd", 0, 0, 0 },           /* the file, POST /api/reload */
	{ "update", 1, 1, O_DOWNGRADE }, /* OP_CTL_UPDATER */
};

static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("outpostctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (outpostctl --help)\n", stderr);
	return OP_CTL_EXIT_USAGE;
}

/* Checks the command's arguments; returns 0 or OP_CTL_EXIT_USAGE. */
static int check_args(const struct command *c, const struct args *a)
{
	static const char *const names[] = {
		"--json",  "--all", "--clear",           "--state",
		"--page",  "--yes", "--allow-downgrade", "--destination",
		"--search"
	};
	static const char *const states[] = { "queued", "sending", "sent", "quarantined" };
	int n = a->npos - 1, ok = 0;

	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
		if ((a->given & (1u << i)) && !(c->options & (1u << i)))
			return bad_usage("%s does not take %s", c->name, names[i]);
	if (n < c->min_args || (c->max_args >= 0 && n > c->max_args))
		return bad_usage("wrong number of arguments for %s", c->name);
	if (strcmp(c->name, "queue") == 0 && strcmp(a->pos[1], "ls") != 0)
		return bad_usage("unknown queue command '%s' (queue ls)", a->pos[1]);
	if (strcmp(c->name, "retry") == 0 && (n == 1) == !!(a->given & O_ALL))
		return bad_usage("%s takes a study UID or --all", c->name);
	if (strcmp(c->name, "shaping") == 0 && (n > 0) == !!(a->given & O_CLEAR))
		return bad_usage("%s takes a rate, a schedule or --clear", c->name);
	if (strcmp(c->name, "shaping") == 0 && n > 0 && !*a->pos[1])
		return bad_usage("%s: the rate or schedule is empty", c->name);
	if (a->state) {
		for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
			ok |= strcmp(a->state, states[i]) == 0;
		if (!ok)
			return bad_usage("--state %s: one of queued, sending, sent, quarantined",
					 a->state);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "all", no_argument, NULL, 'a' },
		{ "clear", no_argument, NULL, 'x' },
		{ "state", required_argument, NULL, 'S' },
		{ "page", required_argument, NULL, 'P' },
		{ "yes", no_argument, NULL, 'y' },
		{ "allow-downgrade", no_argument, NULL, 'D' },
		{ "destination", required_argument, NULL, 'd' },
		{ "search", required_argument, NULL, 'Q' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static char program[] = "outpostctl";
	struct args a = { .page = 1 };
	const struct command *cmd = NULL;
	char config_path[PATH_MAX], err[640], *end;
	const char *sock;
	op_config *cfg = NULL;
	int opt, rc;

	/* getopt names the program by argv[0] in its messages. */
	argv[0] = program;
	/* Options may come before or after the command (getopt permutes). */
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': a.config = optarg; break;
		case 's': a.socket = optarg; break;
		case 'j': a.given |= O_JSON; break;
		case 'a': a.given |= O_ALL; break;
		case 'x': a.given |= O_CLEAR; break;
		case 'y': a.given |= O_YES; break;
		case 'D': a.given |= O_DOWNGRADE; break;
		case 'd':
			a.given |= O_DEST;
			a.dest = optarg;
			break;
		case 'Q':
			a.given |= O_SEARCH;
			a.search = optarg;
			break;
		case 'S':
			a.given |= O_STATE;
			a.state = optarg;
			break;
		case 'P':
			a.given |= O_PAGE;
			errno = 0;
			a.page = strtol(optarg, &end, 10);
			if (!*optarg || *end || errno || a.page < 1 || a.page > 1000000)
				return bad_usage("--page %s: a page number from 1", optarg);
			break;
		case 'V': printf("outpostctl %s\n", OP_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: fprintf(stderr, "(outpostctl --help)\n"); return OP_CTL_EXIT_USAGE;
		}
	}
	a.pos = argv + optind;
	a.npos = argc - optind;
	if (a.npos == 0) {
		usage(stderr);
		return OP_CTL_EXIT_USAGE;
	}
	if (strcmp(a.pos[0], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(a.pos[0], commands[i].name) == 0)
			cmd = &commands[i];
	if (!cmd)
		return bad_usage("unknown command '%s'", a.pos[0]);
	rc = check_args(cmd, &a);
	if (rc)
		return rc;
	if (strcmp(cmd->name, "update") == 0)
		return cmd_update(a.pos[1], a.given & O_DOWNGRADE);

	if (op_ctl_config_path(a.config, config_path, sizeof(config_path)) < 0)
		return bad_usage("%s: the configuration file's path is too long", a.config);
	cfg = malloc(sizeof(*cfg));
	if (!cfg) {
		fprintf(stderr, "outpostctl: out of memory\n");
		return OP_CTL_EXIT_FAILED;
	}
	op_config_defaults(cfg);
	if (*config_path && op_config_load(cfg, config_path, err, sizeof(err)) < 0) {
		/* With --socket the file is needed only to write into it. */
		if (!a.socket || strcmp(cmd->name, "passwd") == 0) {
			fprintf(stderr, "outpostctl: %s\n", err);
			rc = OP_CTL_EXIT_USAGE;
			goto out;
		}
		fprintf(stderr, "outpostctl: warning: %s\n", err);
	}
	sock = a.socket ? a.socket : cfg->console.socket;
	if (!*sock && strcmp(cmd->name, "passwd") != 0) {
		fprintf(stderr,
			"outpostctl: no [console] socket is configured in %s: give one "
			"with --socket PATH\n",
			*config_path ? config_path : "the embedded defaults");
		rc = OP_CTL_EXIT_USAGE;
		goto out;
	}

	if (strcmp(cmd->name, "status") == 0)
		rc = cmd_status(sock, &a);
	else if (strcmp(cmd->name, "health") == 0)
		rc = cmd_health(sock, &a);
	else if (strcmp(cmd->name, "queue") == 0)
		rc = cmd_queue(sock, &a);
	else if (strcmp(cmd->name, "retry") == 0)
		rc = cmd_retry(sock, &a);
	else if (strcmp(cmd->name, "discard") == 0)
		rc = cmd_discard(sock, &a);
	else if (strcmp(cmd->name, "pause") == 0)
		rc = cmd_pause(sock, &a, 1);
	else if (strcmp(cmd->name, "resume") == 0)
		rc = cmd_pause(sock, &a, 0);
	else if (strcmp(cmd->name, "shaping") == 0)
		rc = cmd_shaping(sock, &a);
	else if (strcmp(cmd->name, "test-link") == 0)
		rc = cmd_test_link(sock, &a);
	else
		rc = cmd_passwd(config_path, sock);
out:
	free(cfg);
	return rc;
}
