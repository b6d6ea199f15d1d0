/*
 * notify: the services' side of systemd's service protocol (sd_notify, from
 * Debian's libsystemd): readiness (Type=notify) and watchdog keep-alives
 * (WatchdogSec=), so that systemd restarts a hung service and the
 * appliance's health check knows when the services are up.
 *
 * Outside systemd (no NOTIFY_SOCKET) every call does nothing.
 */
#ifndef OP_NOTIFY_H
#define OP_NOTIFY_H

#include <stdint.h>

/* READY=1, with a one-line STATUS= for systemctl status. */
void op_notify_ready(const char *status);

/* STOPPING=1. */
void op_notify_stopping(void);

/* How often to call op_notify_watchdog(), in milliseconds: half of
 * systemd's WatchdogSec=; 0 when no watchdog is asked for. */
int op_notify_watchdog_ms(void);

/* WATCHDOG=1: "this process still makes progress". */
void op_notify_watchdog(void);

#endif
