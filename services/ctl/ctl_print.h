/*
 * ctl_print: the API's answers (docs/API.md) for a person: the tables of
 * outpostctl status, queue ls and test-link, the sizes, rates and
 * durations in them, and the text of an API error. What the server sends
 * is printed with its control characters as '?'.
 *
 * Nothing here keeps state between calls.
 */
#ifndef OP_CTL_PRINT_H
#define OP_CTL_PRINT_H

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "ctl/ctl_client.h"

/* The text of an API error: the "error" member of a JSON body, else the
 * body itself (trimmed, at most size - 1 bytes), else "HTTP NNN". */
void op_ctl_error_text(const op_ctl_response *r, char *buf, size_t size);

/* Human-readable sizes ("0 B", "512 B", "5.1 MiB", powers of 1024),
 * rates in bits per second ("2 Mbit/s", powers of 1000) and durations
 * ("12 s", "3 min 4 s", "2 h 5 min", "3 d 4 h"). */
void op_ctl_format_bytes(double bytes, char *buf, size_t size);
void op_ctl_format_rate(double bps, char *buf, size_t size);
void op_ctl_format_duration(double seconds, char *buf, size_t size);

/* Print the answers of GET /api/status, GET /api/queue and POST
 * /api/test-link as tables for a person. Members missing from the JSON are
 * shown as "-". op_ctl_print_test_link returns whether the link test
 * passed (1) or not (0). */
void op_ctl_print_status(const cJSON *status, FILE *out);
/* One of the status' destinations; now is the status' time (ISO). */
void op_ctl_print_destination(const cJSON *dest, const char *now, FILE *out);
/* The rate object of /api/status (also PUT /api/shaping's answer), on
 * two lines: "Rate ..." and "Schedule ...". */
void op_ctl_print_rate(const cJSON *rate, FILE *out);
void op_ctl_print_queue(const cJSON *queue, FILE *out);
int op_ctl_print_test_link(const cJSON *result, FILE *out);

#endif
