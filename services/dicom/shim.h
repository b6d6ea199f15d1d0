/*
 * shim: what the C++ files of the DCMTK shim (dicom.cc, send.cc, jpls.cc)
 * share. Internal to services/dicom; no C API, no C caller.
 */
#ifndef OP_DICOM_SHIM_H
#define OP_DICOM_SHIM_H

#ifndef __cplusplus
#error "dicom/shim.h is for the C++ files of the DCMTK shim"
#endif

#include <cstdarg>
#include <cstddef>
#include <cstdio>

/* Writes a message into buf (size bytes, NULL or 0: nowhere), cut to fit
 * and terminated. */
static inline void op_dicom__say(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline void op_dicom__say(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (!buf || size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

/*
 * Registers DCMTK's decoders (JPEG, JPEG-LS, RLE) and the JPEG-LS encoder
 * in raw mode (jpls.h says why), once per process (jpls.cc). Every part
 * of the shim that needs a codec calls this, so that the registrations,
 * which DCMTK does not guard against each other, never race.
 */
void op_jpls__register_codecs(void);

#endif
