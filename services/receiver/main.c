/*
 * outpost-receiver: the DICOM SCP of Outpost (see receiver.h).
 *
 *   outpost-receiver [--config FILE] [--check-config] [--conformance]
 *
 * Exit status: 0 after a clean stop, 1 when it cannot run (spool, port),
 * 2 for a bad command line or configuration file.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "dicom/dicom.h"
#include "receiver/router.h"
#include "receiver/receiver.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: outpost-receiver [--config FILE] [--check-config] [--conformance]\n"
		     "\n"
		     "  --config FILE    read FILE (INI); without it, the embedded defaults\n"
		     "  --check-config   validate the configuration, print it, exit\n"
		     "  --conformance    print the accepted SOP classes and transfer syntaxes\n"
		     "  --version        print the version\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "conformance", no_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL;
	op_router *router = NULL;
	char err[640];
	int check = 0, opt, rc;
	op_config cfg;
	op_receiver *rx = NULL;
	sigset_t set;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'k': check = 1; break;
		case 'C': op_dicom_print_conformance(stdout); return 0;
		case 'V': printf("outpost-receiver %s\n", OP_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	/* urgent_match and routes name DICOM attributes: only DCMTK's
	 * dictionary can check them, so here rather than in the config
	 * module. */
	rc = op_config_from_command_line(&cfg, config_path, 0);
	if (rc < 0 && op_router_open(&cfg, config_path, &router, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	op_router_close(router);
	if (rc < 0 && check) {
		op_config_print(&cfg, stdout);
		return 0;
	}
	if (rc >= 0)
		return rc;

	/* Signals are read from a signalfd by the main loop; every thread
	 * inherits this mask. A peer that closes mid-write must not kill us. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	op_info("receiver.start", "version=%s config=%s spool=%s", OP_VERSION,
		config_path ? config_path : "(embedded defaults)", cfg.spool.dir);
	rc = op_receiver_open(&cfg, config_path, &rx);
	if (rc < 0)
		return 1;
	rc = op_receiver_run(rx, config_path);
	if (rc == -EBUSY) {
		/* Threads still inside associations use the spool: leave them to
		 * the exit; sqlite's journal keeps the database consistent. */
		op_warn("receiver.stop",
			"reason=\"associations still open after the grace period\"");
		_exit(0);
	}
	op_receiver_close(rx);
	op_info("receiver.stop", "result=%s", rc == 0 ? "ok" : strerror(-rc));
	return rc == 0 ? 0 : 1;
}
