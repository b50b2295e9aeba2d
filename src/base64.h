/* base64.h — base64 (RFC 4648) in its two spellings fledge meets: the standard alphabet with
 * '=' padding (OpenAI's `encoding_format: base64` embeddings) and the URL-safe one without
 * padding (fledge's signed request ids). Decoding takes only the canonical form, so one value
 * has one spelling. Pure functions; any thread. */
#ifndef FL_BASE64_H
#define FL_BASE64_H

#include "common.h"

typedef enum { FL_B64_STD, FL_B64_URL } fl_b64_kind_t;

/* Characters fl_b64_encode writes for n bytes (without the NUL). */
size_t fl_b64_encoded_len(fl_b64_kind_t kind, size_t n);

/* Writes n bytes as base64 into out (room for fl_b64_encoded_len + 1), NUL-terminated; returns
 * the length written. */
size_t fl_b64_encode(fl_b64_kind_t kind, const uint8_t *in, size_t n, char *out);

/* Decodes in[0, n) into out (cap bytes): the decoded length, or -1 for a character outside the
 * alphabet, a bad length or padding, unused bits that are not zero, or more than cap bytes. */
long fl_b64_decode(fl_b64_kind_t kind, const char *in, size_t n, uint8_t *out, size_t cap);

#endif
