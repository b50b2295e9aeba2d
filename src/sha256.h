/* sha256.h — SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), for signing request ids. A keyed
 * context is prepared once and copied per message, so a MAC of a short message costs two
 * compressions. Pure; any thread; no allocation. */
#ifndef FL_SHA256_H
#define FL_SHA256_H

#include "common.h"

#define FL_SHA256_LEN 32
#define FL_SHA256_BLOCK 64

typedef struct fl_sha256 {
  uint32_t h[8];
  uint64_t total;                  /* bytes hashed so far */
  uint8_t buf[FL_SHA256_BLOCK];
  size_t buf_len;
} fl_sha256_t;

void fl_sha256_init(fl_sha256_t *c);

/* Chooses the x86 SHA extensions when want is true and the CPU has them (the default), else the
 * portable code; returns whether the extensions are used. Call before threads hash (tests). */
bool fl_sha256_use_hardware(bool want);
void fl_sha256_update(fl_sha256_t *c, const void *data, size_t len);
void fl_sha256_final(fl_sha256_t *c, uint8_t out[FL_SHA256_LEN]);

/* HMAC: the inner and outer hashes with the key's blocks already absorbed. */
typedef struct fl_hmac_key {
  fl_sha256_t inner, outer;
} fl_hmac_key_t;

void fl_hmac_key_init(fl_hmac_key_t *k, const void *key, size_t key_len);
void fl_hmac(const fl_hmac_key_t *k, const void *msg, size_t len, uint8_t out[FL_SHA256_LEN]);

#endif
