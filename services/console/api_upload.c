/*
 * api_upload: files an operator uploads for the appliance (see
 * internal.h): a site file (PUT /api/site), checked and left for
 * provisioning, and a firmware bundle (PUT /api/firmware), streamed to
 * disk and left for the installer. Root's scripts take them from there;
 * the uplink never installs anything itself.
 */
#include "console/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/log.h"

#define FIRMWARE_MAX (1ULL << 30) /* a bundle is about 70 MB */

/* --- the site file ---------------------------------------------------------------------- */

#define SITE_FILES 16
#define SITE_NAME_MAX 64

/* A site file's name: letters, digits, '.', '_', '-', not starting with '.'. */
static int site_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n < SITE_NAME_MAX && name[0] != '.' &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
		       n;
}

static int remove_tree(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	return rmdir(dir) == 0 ? 0 : -errno;
}

/*
 * The upload (site.ini and its files, as JSON) is checked by loading the
 * current configuration followed by site.ini, then left as upload/site/
 * for the appliance's outpost-site.path unit, which provisions from it as
 * from a USB stick (as root) and reloads the services.
 */
struct site_job {
	struct op__api_job base;
	char *upload;          /* the request's body; the work frees it */
	char dir[PATH_MAX];    /* upload/ beside the configuration file */
	char config[PATH_MAX]; /* the configuration file */
};

static void site_work(struct op__api_job *job)
{
	struct site_job *j = (struct site_job *)job;
	char tmp[PATH_MAX + 16], dir[PATH_MAX + 16], check[PATH_MAX + 16], err[640];
	char path[PATH_MAX + SITE_NAME_MAX + 32];
	cJSON *o = cJSON_Parse(j->upload), *ini = cJSON_GetObjectItemCaseSensitive(o, "site.ini");
	cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files"), *f;
	op_config cfg;
	FILE *out = NULL, *cur = NULL;
	int n = 0, rc;

	free(j->upload);
	j->upload = NULL;
	snprintf(tmp, sizeof(tmp), "%s/" OP__API_SITE_TMP, j->dir);
	snprintf(dir, sizeof(dir), "%s/" OP__API_SITE_DIR, j->dir);
	if (mkdir(j->dir, 0750) < 0 && errno != EEXIST) {
		op__api_job_error(job, 500,
				  "cannot write the upload directory (see [console] in README)");
		goto out;
	}
	if (!cJSON_IsString(ini) || (files && !cJSON_IsObject(files))) {
		op__api_job_error(
			job, 400,
			"expected {\"site.ini\": \"...\", \"files\": {\"ca.pem\": \"...\"}}");
		goto out;
	}
	cJSON_ArrayForEach(f, files)
	{
		/* outpost.ini: what provisioning writes beside site.ini. */
		if (!cJSON_IsString(f) || !site_name_ok(f->string) || ++n > SITE_FILES ||
		    strcmp(f->string, OP__API_SITE_INI) == 0 ||
		    strcmp(f->string, "outpost.ini") == 0) {
			op__api_job_error(
				job, 400,
				"files: at most 16, named with letters, digits, '.', '_', '-' "
				"(not site.ini), each a string");
			goto out;
		}
	}
	/* The configuration in force, then the site file: what the services
	 * will load (the appliance starts from its defaults instead). */
	snprintf(check, sizeof(check), "%s/" OP__API_SITE_CHECK, j->dir);
	out = fopen(check, "we");
	cur = fopen(j->config, "re");
	if (out && cur) {
		char buf[4096];
		size_t k;

		while ((k = fread(buf, 1, sizeof(buf), cur)) > 0)
			fwrite(buf, 1, k, out);
		fprintf(out, "\n%s\n", ini->valuestring);
	}
	if (cur)
		fclose(cur);
	if (!out || fclose(out) != 0) {
		op__api_job_error(job, 500, "cannot write the upload directory");
		goto out;
	}
	rc = op_config_load(&cfg, check, err, sizeof(err));
	unlink(check);
	if (rc < 0) {
		char msg[700];

		snprintf(msg, sizeof(msg), "site.ini refused: %s",
			 strstr(err, ": ") ? strstr(err, ": ") + 2 : err);
		op__api_job_error(job, 400, msg);
		goto out;
	}
	remove_tree(tmp);
	if (mkdir(tmp, 0750) < 0) {
		op__api_job_error(job, 500, "cannot write the upload directory");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/" OP__API_SITE_INI, tmp);
	rc = op_file_write(path, ini->valuestring, strlen(ini->valuestring), 0640);
	cJSON_ArrayForEach(f, files)
	{
		snprintf(path, sizeof(path), "%s/%s", tmp, f->string);
		if (rc == 0)
			rc = op_file_write(path, f->valuestring, strlen(f->valuestring), 0640);
	}
	/* The files' names, then the folder's: a power cut leaves the old
	 * site file or the whole new one. */
	if (rc == 0)
		rc = op_fsync_dir(tmp);
	remove_tree(dir);
	if (rc < 0 || op_rename_durable(tmp, dir) < 0) {
		remove_tree(tmp);
		op__api_job_error(job, 500, "cannot write the upload directory");
		goto out;
	}
	op__api_audit(job, "site", "site file uploaded");
	cJSON *a = cJSON_CreateObject();

	cJSON_AddBoolToObject(a, "accepted", 1);
	cJSON_AddStringToObject(a, "path", dir);
	op__api_job_json(job, 202, a);
out:
	cJSON_Delete(o);
}

void op__api_site_upload(op_api *api, op_httpd_req *req, const char *who)
{
	const char *config = api->host.config_path;
	size_t len;
	const char *body = op_request_body(op_httpd_request(req), &len);
	struct site_job *j;

	if (!config) {
		op__api_reply_error(
			req, 409, NULL,
			"this uplink runs without a configuration file in a data directory");
		return;
	}
	if (!(j = op__api_job_new(api, req, who, sizeof(*j))))
		return;
	op__api_beside_config(api, OP__API_UPLOAD_DIR, j->dir, sizeof(j->dir));
	snprintf(j->config, sizeof(j->config), "%s", config);
	j->upload = strndup(body, len);
	op__api_job_start(&j->base, site_work, NULL);
}

/* --- a firmware bundle ------------------------------------------------------------------ */

/*
 * The body is written to upload/firmware.part as it comes, then made
 * durable and renamed upload/update.raucb: the appliance's
 * outpost-update-upload.path unit installs it as root (outpostctl
 * update's installer, which checks the signature). One at a time, and
 * only with room left for the receiver's min_free_bytes: checked before
 * the body and again every FIRMWARE_CHECK_EVERY bytes of it, since the
 * receiver (or anything else) may take the disk meanwhile.
 */
#define FIRMWARE_CHECK_EVERY (1u << 20)

struct op__api_firmware {
	op_api *api;
	int fd;
	uint64_t bytes, expected;
	uint64_t checked_at, min_free; /* bytes when the free space was last checked */
	int err;                       /* a failed write's errno */
	int low;                       /* stopped: the free space fell below min_free */
	mbedtls_sha256_context sha;
	char who[16];
	char dir[1024], part[PATH_MAX], dest[PATH_MAX];
};

static void firmware_free(struct op__api_firmware *fw)
{
	if (fw->fd >= 0)
		close(fw->fd);
	mbedtls_sha256_free(&fw->sha);
	fw->api->firmware = NULL;
	free(fw);
}

static int firmware_data(void *ctx, const void *data, size_t len)
{
	struct op__api_firmware *fw = ctx;
	const char *p = data;

	/* On the loop: a write to the page cache; the fsync is on the pool. */
	mbedtls_sha256_update_ret(&fw->sha, data, len);
	while (len > 0) {
		ssize_t n = write(fw->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fw->err = errno;
			return errno == ENOSPC || errno == EDQUOT ? 507 : 500;
		}
		p += n;
		len -= (size_t)n;
		fw->bytes += (uint64_t)n;
	}
	if (fw->bytes - fw->checked_at >= FIRMWARE_CHECK_EVERY) {
		/* statvfs: a quick call, on the loop, once a MiB. */
		struct op__api_disk d = op__api_disk_of(fw->dir);

		fw->checked_at = fw->bytes;
		if (d.ok && d.free < fw->min_free) {
			fw->low = 1;
			return 507;
		}
	}
	return 0;
}

/* A bundle received whole: made durable and renamed on the thread pool. */
struct firmware_job {
	struct op__api_job base;
	int fd; /* the part file's, open for the fsync */
	uint64_t bytes;
	char sha256[65]; /* hex */
	char part[PATH_MAX], dest[PATH_MAX];
};

static void firmware_work(struct op__api_job *job)
{
	const struct firmware_job *j = (const struct firmware_job *)job;
	char detail[200];
	cJSON *o;
	int rc = fsync(j->fd) == 0 ? 0 : -errno;

	close(j->fd);
	if (rc == 0)
		rc = op_rename_durable(j->part, j->dest);
	if (rc < 0) {
		/* Neither name stays: a bundle renamed but not synced would be
		 * installed after a 500. The destination was free when the
		 * upload began, and uploads go one at a time. */
		unlink(j->part);
		unlink(j->dest);
		snprintf(detail, sizeof(detail), "cannot keep the bundle: %s", strerror(-rc));
		op__api_job_error(job, rc == -ENOSPC ? 507 : 500, detail);
		return;
	}
	snprintf(detail, sizeof(detail), "bundle uploaded: %" PRIu64 " bytes, sha256 %s", j->bytes,
		 j->sha256);
	op__api_audit(job, "firmware", detail);
	o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "accepted", 1);
	cJSON_AddNumberToObject(o, "bytes", (double)j->bytes);
	cJSON_AddStringToObject(o, "sha256", j->sha256);
	cJSON_AddStringToObject(o, "path", j->dest);
	op__api_job_json(job, 202, o);
}

static void firmware_done(struct op__api_job *job)
{
	job->api->firmware = NULL; /* renamed: the next upload may start */
}

static void firmware_end(void *ctx, op_httpd_req *req, int status)
{
	struct op__api_firmware *fw = ctx;
	unsigned char sum[32];
	struct firmware_job *j;

	if (status != 0) {
		unlink(fw->part);
		op_warn("console.firmware",
			"who=%s result=failed bytes=%" PRIu64 " of=%" PRIu64 " reason=\"%s\"",
			fw->who, fw->bytes, fw->expected,
			status < 0      ? "the client went away"
			: fw->low       ? "the receiver's reserve reached"
			: status == 507 ? "disk full"
			: fw->err       ? strerror(fw->err)
					: "malformed body");
		if (status == 507 && fw->low)
			op__api_reply_error(req, 507, NULL,
					    "the disk filled up meanwhile: after %" PRIu64
					    " bytes of the bundle, less than the %" PRIu64
					    " MB the receiver keeps free ([spool] min_free_bytes) "
					    "was left",
					    fw->bytes, fw->min_free >> 20);
		else if (status == 507)
			op__api_reply_error(req, 507, NULL,
					    "the disk filled up after %" PRIu64
					    " bytes of the bundle",
					    fw->bytes);
		else if (fw->err)
			op__api_reply_error(req, 500, NULL, "cannot write the bundle: %s",
					    strerror(fw->err));
		else
			op__api_reply_error(req, status > 0 ? status : 400, NULL,
					    "the upload did not complete");
		firmware_free(fw);
		return;
	}
	mbedtls_sha256_finish_ret(&fw->sha, sum);
	if (!(j = op__api_job_new(fw->api, req, fw->who, sizeof(*j)))) {
		unlink(fw->part);
		firmware_free(fw);
		return;
	}
	for (int i = 0; i < 32; i++)
		snprintf(j->sha256 + 2 * i, 3, "%02x", sum[i]);
	snprintf(j->part, sizeof(j->part), "%s", fw->part);
	snprintf(j->dest, sizeof(j->dest), "%s", fw->dest);
	j->fd = fw->fd;
	j->bytes = fw->bytes;
	fw->fd = -1;
	mbedtls_sha256_free(&fw->sha);
	free(fw); /* api->firmware stays set until the rename (firmware_done) */
	op__api_job_start(&j->base, firmware_work, firmware_done);
}

void op__api_firmware_upload(op_api *api, op_httpd_req *req, const char *who)
{
	const op_request *r = op_httpd_request(req);
	const char *length = op_request_header(r, "Content-Length");
	uint64_t len = 0, min_free = api->cfg.spool.min_free_bytes;
	char dir[1024];
	struct op__api_firmware *fw;
	struct op__api_disk d;

	if (!api->host.config_path) {
		op__api_reply_error(
			req, 409, NULL,
			"this uplink runs without a configuration file in a data directory");
		return;
	}
	if (op_httpd_streamed(req)) {
		len = length ? strtoull(length, NULL, 10) : 0;
	} else {
		size_t held;

		op_request_body(r, &held);
		len = held;
	}
	if (len == 0) {
		op__api_reply_error(req, 400, NULL, "send the bundle (.raucb) as the request body");
		return;
	}
	if (len > FIRMWARE_MAX) {
		op__api_reply_error(req, 413, NULL, "a bundle is at most 1 GiB");
		return;
	}
	if (api->firmware) {
		op__api_reply_error(req, 409, NULL, "another bundle is being uploaded");
		return;
	}
	op__api_beside_config(api, OP__API_UPLOAD_DIR, dir, sizeof(dir));
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		op__api_reply_error(req, 500, NULL, "cannot make %s: %s", dir, strerror(errno));
		return;
	}
	d = op__api_disk_of(dir);
	if (d.ok && d.free < len + min_free) {
		op__api_reply_error(req, 507, NULL,
				    "not enough free space: the bundle needs %" PRIu64
				    " MB and the receiver keeps %" PRIu64 " MB free ([spool] "
				    "min_free_bytes); %" PRIu64 " MB are free",
				    len >> 20, min_free >> 20, d.free >> 20);
		return;
	}
	if (!(fw = calloc(1, sizeof(*fw)))) {
		op__api_reply_error(req, 503, NULL, "out of memory");
		return;
	}
	fw->api = api;
	fw->expected = len;
	fw->min_free = min_free;
	snprintf(fw->dir, sizeof(fw->dir), "%s", dir);
	snprintf(fw->who, sizeof(fw->who), "%s", who);
	snprintf(fw->part, sizeof(fw->part), "%s/" OP__API_FIRMWARE_PART, dir);
	snprintf(fw->dest, sizeof(fw->dest), "%s/" OP__API_FIRMWARE_BUNDLE, dir);
	if (access(fw->dest, F_OK) == 0) {
		free(fw);
		op__api_reply_error(
			req, 409, NULL,
			"an update is being installed: see firmware in /api/status for its "
			"progress and result");
		return;
	}
	fw->fd = open(fw->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fw->fd < 0) {
		op__api_reply_error(req, 500, NULL, "cannot write %s: %s", fw->part,
				    strerror(errno));
		free(fw);
		return;
	}
	mbedtls_sha256_init(&fw->sha);
	mbedtls_sha256_starts_ret(&fw->sha, 0);
	api->firmware = fw;
	op_httpd_receive(req, firmware_data, firmware_end, fw);
}
