/*
 * notify: sd_notify for readiness and the watchdog (see notify.h).
 */
#include "common/notify.h"

#include <stdint.h>
#include <systemd/sd-daemon.h>

#include "common/log.h"

void op_notify_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void op_notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

int op_notify_watchdog_ms(void)
{
	uint64_t usec = 0;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return 0;
	return usec / 2000 > 0 ? (int)(usec / 2000) : 1;
}

void op_notify_watchdog(void)
{
	sd_notify(0, "WATCHDOG=1");
}
