/*
 * receiver: outpost-receiver's core. Listens on [receiver] bind:port, runs
 * each association on its own thread through the DCMTK shim (dicom.h),
 * decides who may connect, and puts every received instance into the spool
 * before it answers success.
 */
#ifndef OP_RECEIVER_H
#define OP_RECEIVER_H

#include "common/config.h"

typedef struct op_receiver op_receiver;

/*
 * Opens the spool (running start-up recovery), sets up DICOM and binds the
 * listening socket. cfg was read from config_path (NULL: the defaults),
 * named in messages. Returns 0, or a negative errno after logging why.
 */
int op_receiver_open(const op_config *cfg, const char *config_path, op_receiver **out);

/* The port actually listened on. */
int op_receiver_port(const op_receiver *rx);

/*
 * Accepts associations until SIGTERM or SIGINT (read from a signalfd: the
 * caller must have blocked SIGTERM, SIGINT and SIGHUP in every thread).
 * SIGHUP reloads config_path (NULL: nothing to reload). Returns 0 after a
 * clean stop.
 */
int op_receiver_run(op_receiver *rx, const char *config_path);

/* Accepts NULL. */
void op_receiver_close(op_receiver *rx);

#endif
