/* base64.c — RFC 4648 base64, standard and URL-safe. See base64.h. */
#include "base64.h"

static const char ALPHABET[2][65] = {
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
};

size_t fl_b64_encoded_len(fl_b64_kind_t kind, size_t n) {
  if (kind == FL_B64_STD) return (n + 2) / 3 * 4;
  return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t fl_b64_encode(fl_b64_kind_t kind, const uint8_t *in, size_t n, char *out) {
  const char *abc = ALPHABET[kind];
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
    size_t chars = n - i >= 3 ? 4 : n - i + 1;
    for (size_t k = 0; k < chars; k++) out[o++] = abc[(v >> (18 - 6 * k)) & 63];
    for (size_t k = chars; kind == FL_B64_STD && k < 4; k++) out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

static int value(fl_b64_kind_t kind, char c) {
  const char *p = c ? strchr(ALPHABET[kind], c) : NULL;
  return p ? (int)(p - ALPHABET[kind]) : -1;
}

long fl_b64_decode(fl_b64_kind_t kind, const char *in, size_t n, uint8_t *out, size_t cap) {
  if (kind == FL_B64_STD) {                 /* padded to whole quads; the padding is dropped here */
    if (n % 4) return -1;
    if (n && in[n - 1] == '=') n--;
    if (n && in[n - 1] == '=') n--;
  }
  if (n % 4 == 1 || n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0) > cap) return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    uint32_t v = 0;
    size_t chars = FL_MIN(4, n - i);
    for (size_t k = 0; k < 4; k++) {
      int d = k < chars ? value(kind, in[i + k]) : 0;
      if (d < 0) return -1;
      v = v << 6 | (uint32_t)d;
    }
    if ((chars == 2 && (v & 0xFFFF)) || (chars == 3 && (v & 0xFF))) return -1;   /* only the canonical form */
    for (size_t k = 0; k + 1 < chars; k++) out[o++] = (uint8_t)(v >> (16 - 8 * k));
  }
  return (long)o;
}
