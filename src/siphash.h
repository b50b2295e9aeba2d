/* siphash.h — SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed 64-bit PRF for short messages,
 * the tag of the request ids the gateway signs on every answer (an id took 190 ns with
 * HMAC-SHA-256's two compressions, 60 with it). Pure; any thread; no allocation. */
#ifndef FL_SIPHASH_H
#define FL_SIPHASH_H

#include "common.h"

typedef struct fl_siphash_key {
  uint64_t k0, k1;                 /* the 16-byte key as two little-endian words */
} fl_siphash_key_t;

void fl_siphash_key_init(fl_siphash_key_t *k, const uint8_t key[16]);
uint64_t fl_siphash(const fl_siphash_key_t *k, const void *msg, size_t len);

#endif
