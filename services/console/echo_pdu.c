/*
 * echo_pdu: the C-ECHO client's PDUs, built (see echo_pdu.h). A builder
 * never writes past its buffer: what does not fit is only counted.
 */
#include "console/echo_pdu.h"

#include <string.h>

#include "console/echo.h"

static void put(struct op__echo_pdu *o, const void *src, size_t n)
{
	if (o->len <= o->cap && n <= o->cap - o->len)
		memcpy(o->p + o->len, src, n);
	o->len += n;
}

static void put_u8(struct op__echo_pdu *o, uint8_t v)
{
	put(o, &v, 1);
}

static void put_be16(struct op__echo_pdu *o, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	put(o, b, 2);
}

static void put_be32(struct op__echo_pdu *o, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	put(o, b, 4);
}

static void put_le16(struct op__echo_pdu *o, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	put(o, b, 2);
}

static void put_le32(struct op__echo_pdu *o, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	put(o, b, 4);
}

/* Fills in a length field written as a placeholder at `at`, counting
 * what follows it. */
static void patch_be16(struct op__echo_pdu *o, size_t at)
{
	size_t n = o->len - at - 2;

	if (o->len <= o->cap) {
		o->p[at] = (uint8_t)(n >> 8);
		o->p[at + 1] = (uint8_t)n;
	}
}

static void patch_be32(struct op__echo_pdu *o, size_t at)
{
	size_t n = o->len - at - 4;

	if (o->len <= o->cap) {
		o->p[at] = (uint8_t)(n >> 24);
		o->p[at + 1] = (uint8_t)(n >> 16);
		o->p[at + 2] = (uint8_t)(n >> 8);
		o->p[at + 3] = (uint8_t)n;
	}
}

/* An item or sub-item whose value is a string: type, reserved, length.
 * UIDs go unpadded (PS3.8 annex F). */
static void put_item(struct op__echo_pdu *o, uint8_t type, const char *s)
{
	put_u8(o, type);
	put_u8(o, 0);
	put_be16(o, (uint16_t)strlen(s));
	put(o, s, strlen(s));
}

/* Starts an item holding sub-items; returns where its length goes. */
static size_t begin_item(struct op__echo_pdu *o, uint8_t type)
{
	size_t at;

	put_u8(o, type);
	put_u8(o, 0);
	at = o->len;
	put_be16(o, 0);
	return at;
}

static void put_ae(struct op__echo_pdu *o, const char *ae)
{
	char field[16];
	size_t len = strlen(ae);

	memset(field, ' ', sizeof(field));
	memcpy(field, ae, len);
	put(o, field, sizeof(field));
}

void op__echo_pdu_associate_rq(struct op__echo_pdu *o, const char *called, const char *calling)
{
	static const uint8_t reserved[32];
	size_t pdu, item;

	put_u8(o, PDU_ASSOCIATE_RQ);
	put_u8(o, 0);
	pdu = o->len;
	put_be32(o, 0);
	put_be16(o, 1); /* protocol version */
	put_be16(o, 0);
	put_ae(o, called);
	put_ae(o, calling);
	put(o, reserved, sizeof(reserved));

	put_item(o, ITEM_APPLICATION_CONTEXT, UID_APPLICATION_CONTEXT);

	item = begin_item(o, ITEM_PRESENTATION_CONTEXT_RQ);
	put_u8(o, PC_ID);
	put_u8(o, 0);
	put_u8(o, 0);
	put_u8(o, 0);
	put_item(o, ITEM_ABSTRACT_SYNTAX, UID_VERIFICATION);
	put_item(o, ITEM_TRANSFER_SYNTAX, UID_IMPLICIT_LE);
	patch_be16(o, item);

	item = begin_item(o, ITEM_USER_INFORMATION);
	put_u8(o, ITEM_MAX_LENGTH);
	put_u8(o, 0);
	put_be16(o, 4);
	put_be32(o, OP_ECHO_MAX_PDU);
	put_item(o, ITEM_IMPLEMENTATION_UID, OP_ECHO_IMPLEMENTATION_UID);
	put_item(o, ITEM_IMPLEMENTATION_VERSION, OP_ECHO_IMPLEMENTATION_VERSION);
	patch_be16(o, item);

	patch_be32(o, pdu);
}

/* An element of the command set, Implicit VR Little Endian. */
static void put_element(struct op__echo_pdu *o, uint16_t element, const void *value, uint32_t len)
{
	put_le16(o, 0x0000);
	put_le16(o, element);
	put_le32(o, len);
	put(o, value, len);
}

static void put_element_us(struct op__echo_pdu *o, uint16_t element, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	put_element(o, element, b, 2);
}

void op__echo_pdu_echo_rq(struct op__echo_pdu *o)
{
	/* UI values have even lengths, padded with NUL (PS3.5 6.2). */
	static const char sop_class[sizeof(UID_VERIFICATION) & ~(size_t)1] = UID_VERIFICATION;
	size_t pdu, pdv, group;

	put_u8(o, PDU_DATA);
	put_u8(o, 0);
	pdu = o->len;
	put_be32(o, 0);
	pdv = o->len;
	put_be32(o, 0);
	put_u8(o, PC_ID);
	put_u8(o, 0x03); /* command, last fragment */

	put_le16(o, 0x0000);
	put_le16(o, 0x0000); /* CommandGroupLength */
	put_le32(o, 4);
	group = o->len;
	put_le32(o, 0);
	put_element(o, 0x0002, sop_class, sizeof(sop_class)); /* AffectedSOPClassUID */
	put_element_us(o, 0x0100, C_ECHO_RQ);                 /* CommandField */
	put_element_us(o, 0x0110, MESSAGE_ID);                /* MessageID */
	put_element_us(o, 0x0800, NO_DATA_SET);               /* CommandDataSetType */
	if (o->len <= o->cap) {
		size_t n = o->len - group - 4;
		uint8_t *p = o->p + group;

		p[0] = (uint8_t)n;
		p[1] = (uint8_t)(n >> 8);
		p[2] = (uint8_t)(n >> 16);
		p[3] = (uint8_t)(n >> 24);
	}
	patch_be32(o, pdv);
	patch_be32(o, pdu);
}
