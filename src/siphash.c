/* siphash.c — SipHash-2-4 as its paper specifies it: two rounds per 8-byte word, four to finish. */
#include "siphash.h"

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static inline uint64_t rotl(uint64_t x, int b) { return x << b | x >> (64 - b); }

typedef struct { uint64_t v0, v1, v2, v3; } state_t;

static inline void rounds(state_t *s, int n) {
  while (n--) {
    s->v0 += s->v1, s->v1 = rotl(s->v1, 13), s->v1 ^= s->v0, s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3, s->v3 = rotl(s->v3, 16), s->v3 ^= s->v2;
    s->v0 += s->v3, s->v3 = rotl(s->v3, 21), s->v3 ^= s->v0;
    s->v2 += s->v1, s->v1 = rotl(s->v1, 17), s->v1 ^= s->v2, s->v2 = rotl(s->v2, 32);
  }
}

static inline void absorb(state_t *s, uint64_t m) {
  s->v3 ^= m;
  rounds(s, 2);
  s->v0 ^= m;
}

void fl_siphash_key_init(fl_siphash_key_t *k, const uint8_t key[16]) {
  k->k0 = le64(key);
  k->k1 = le64(key + 8);
}

uint64_t fl_siphash(const fl_siphash_key_t *k, const void *msg, size_t len) {
  const uint8_t *p = msg;
  state_t s = {k->k0 ^ 0x736f6d6570736575u, k->k1 ^ 0x646f72616e646f6du, k->k0 ^ 0x6c7967656e657261u,
               k->k1 ^ 0x7465646279746573u};
  size_t i = 0;
  for (; len - i >= 8; i += 8) absorb(&s, le64(p + i));
  uint64_t last = (uint64_t)(len & 0xff) << 56;      /* the length's low byte, then the tail */
  for (size_t j = 0; i + j < len; j++) last |= (uint64_t)p[i + j] << (8 * j);
  absorb(&s, last);
  s.v2 ^= 0xff;
  rounds(&s, 4);
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}
