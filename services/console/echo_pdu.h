/*
 * echo_pdu: the PDUs the C-ECHO client (echo.c) sends, built byte by byte
 * (PS3.8 section 9.3: a 6-byte header of type, reserved and a 32-bit
 * length; big-endian fields; the DIMSE command set inside P-DATA-TF in
 * Implicit VR Little Endian, PS3.7 section 6.3.1), and the protocol's
 * numbers that the client reads back. Private to echo.c: the numbers keep
 * the standard's names (PDU_*, ITEM_*), unprefixed, as no other file
 * includes this one.
 *
 * Pure functions of their arguments: thread-safe.
 */
#ifndef OP_CONSOLE_ECHO_PDU_H
#define OP_CONSOLE_ECHO_PDU_H

#include <stddef.h>
#include <stdint.h>

#define UID_APPLICATION_CONTEXT "1.2.840.10008.3.1.1.1"
#define UID_VERIFICATION "1.2.840.10008.1.1"
#define UID_IMPLICIT_LE "1.2.840.10008.1.2"

enum {
	PDU_ASSOCIATE_RQ = 0x01,
	PDU_ASSOCIATE_AC = 0x02,
	PDU_ASSOCIATE_RJ = 0x03,
	PDU_DATA = 0x04,
	PDU_RELEASE_RQ = 0x05,
	PDU_RELEASE_RP = 0x06,
	PDU_ABORT = 0x07,
};

enum {
	ITEM_APPLICATION_CONTEXT = 0x10,
	ITEM_PRESENTATION_CONTEXT_RQ = 0x20,
	ITEM_PRESENTATION_CONTEXT_AC = 0x21,
	ITEM_ABSTRACT_SYNTAX = 0x30,
	ITEM_TRANSFER_SYNTAX = 0x40,
	ITEM_USER_INFORMATION = 0x50,
	ITEM_MAX_LENGTH = 0x51,
	ITEM_IMPLEMENTATION_UID = 0x52,
	ITEM_IMPLEMENTATION_VERSION = 0x55,
};

#define PDU_HEADER 6
#define AC_FIXED 68 /* A-ASSOCIATE-AC body before its items */
#define PC_ID 1
/* A fresh association carries this one request: any ID would do. */
#define MESSAGE_ID 1
#define C_ECHO_RQ 0x0030
#define C_ECHO_RSP 0x8030
#define NO_DATA_SET 0x0101

/* A PDU being built into p[cap]: len counts every byte put, so len > cap
 * after building says it did not fit (and nothing was written past p). */
struct op__echo_pdu {
	uint8_t *p;
	size_t len, cap;
};

/* The A-ASSOCIATE-RQ from calling to called (AE titles of 1 to 16
 * characters) proposing Verification with Implicit VR Little Endian, our
 * maximum PDU length and our implementation's UID and version. */
void op__echo_pdu_associate_rq(struct op__echo_pdu *o, const char *called, const char *calling);

/* One P-DATA-TF holding the whole C-ECHO-RQ command set in one PDV. */
void op__echo_pdu_echo_rq(struct op__echo_pdu *o);

#endif
