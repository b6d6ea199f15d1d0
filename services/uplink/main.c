/*
 * outpost-uplink: sends the spool to the cloud PACS (see uplink.h).
 *
 *   outpost-uplink [--config FILE] [--check-config] [--pin CERT.pem]
 *
 * Exit status: 0 after a clean stop, 1 when it cannot run (spool, TLS
 * files), 2 for a bad command line or configuration file.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <uv.h>

#include "common/config.h"
#include "common/log.h"
#include "uplink/tls.h"
#include "uplink/uplink.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: outpost-uplink [--config FILE] [--check-config] [--pin CERT.pem]\n"
		     "\n"
		     "  --config FILE    read FILE (INI); without it, the embedded defaults\n"
		     "  --check-config   validate the configuration, print it, exit\n"
		     "  --pin CERT.pem   print the pin_sha256 of a certificate's public key\n"
		     "  --version        print the version\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "pin", required_argument, NULL, 'p' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL;
	char pin[64];
	op_config cfg;
	op_uplink *up = NULL;
	uv_loop_t loop;
	int check = 0, opt, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'k': check = 1; break;
		case 'p':
			if (op_tls_pin_of_file(optarg, pin, sizeof(pin)) < 0) {
				fprintf(stderr, "%s: not a PEM certificate\n", optarg);
				return 2;
			}
			printf("%s\n", pin);
			return 0;
		case 'V': printf("outpost-uplink %s\n", OP_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	rc = op_config_from_command_line(&cfg, config_path, check);
	if (rc >= 0)
		return rc;
	signal(SIGPIPE, SIG_IGN); /* a peer closing mid-write is an error, not a death */
	op_info("uplink.start", "version=%s config=%s spool=%s", OP_VERSION,
		config_path ? config_path : "(embedded defaults)", cfg.spool.dir);
	uv_loop_init(&loop);
	rc = op_uplink_open(&loop, &cfg, config_path, &up);
	if (rc == 0)
		rc = op_uplink_start(up);
	if (rc == 0)
		uv_run(&loop, UV_RUN_DEFAULT);
	op_uplink_close(up);
	uv_loop_close(&loop);
	op_info("uplink.stop", "result=%s", rc == 0 ? "ok" : "failed");
	return rc == 0 ? 0 : 1;
}
