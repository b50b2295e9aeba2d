/* sha256.c — SHA-256 as FIPS 180-4 defines it (big-endian words, 64 rounds of the message
 * schedule), and HMAC over it as RFC 2104 does: H((K ^ opad) || H((K ^ ipad) || m)). On x86
 * CPUs with the SHA extensions the compression runs on them (about 4× faster: a request id is
 * signed on every request); elsewhere in portable C. */
#include "sha256.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static void compress_c(uint32_t h[8], const uint8_t *block) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 | (uint32_t)block[4 * i + 2] << 8 |
           block[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

#if defined(__x86_64__)
/* The state as the SHA instructions want it: ABEF and CDGH; each group of four rounds takes
 * four message words, the schedule extended four words at a time (msg1, alignr, msg2). */
__attribute__((target("sha,sse4.1"))) static void compress_x86(uint32_t h[8], const uint8_t *block) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll);
  __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1);
  __m128i hgfe = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B);
  __m128i abef = _mm_alignr_epi8(dcba, hgfe, 8), cdgh = _mm_blend_epi16(hgfe, dcba, 0xF0);
  __m128i abef0 = abef, cdgh0 = cdgh, w[4];
  for (int i = 0; i < 16; i++) {
    if (i < 4) {
      w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 16 * i)), bswap);
    } else {
      __m128i t = _mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]);
      t = _mm_add_epi32(t, _mm_alignr_epi8(w[(i + 3) & 3], w[(i + 2) & 3], 4));
      w[i & 3] = _mm_sha256msg2_epu32(t, w[(i + 3) & 3]);
    }
    __m128i m = _mm_add_epi32(w[i & 3], _mm_loadu_si128((const __m128i *)&K[4 * i]));
    cdgh = _mm_sha256rnds2_epu32(cdgh, abef, m);
    abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(m, 0x0E));
  }
  abef = _mm_add_epi32(abef, abef0);
  cdgh = _mm_add_epi32(cdgh, cdgh0);
  __m128i feba = _mm_shuffle_epi32(abef, 0x1B), dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(dchg, feba, 8));
}

static bool cpu_has_sha(void) {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) && __get_cpuid(1, &a, &b, &c, &d) &&
         (c & (1u << 19));                   /* SHA (leaf 7 EBX 29) and SSE4.1 (leaf 1 ECX 19) */
}
#endif

static void (*compress)(uint32_t h[8], const uint8_t *block);

bool fl_sha256_use_hardware(bool want) {
  compress = compress_c;
#if defined(__x86_64__)
  if (want && cpu_has_sha()) compress = compress_x86;
#endif
  return compress != compress_c;
}

void fl_sha256_init(fl_sha256_t *c) {
  if (!compress) fl_sha256_use_hardware(true);
  static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, IV, sizeof IV);
  c->total = 0;
  c->buf_len = 0;
}

void fl_sha256_update(fl_sha256_t *c, const void *data, size_t len) {
  const uint8_t *p = data;
  c->total += len;
  if (c->buf_len) {
    size_t take = FL_MIN(len, FL_SHA256_BLOCK - c->buf_len);
    memcpy(c->buf + c->buf_len, p, take);
    c->buf_len += take, p += take, len -= take;
    if (c->buf_len < FL_SHA256_BLOCK) return;
    compress(c->h, c->buf);
    c->buf_len = 0;
  }
  for (; len >= FL_SHA256_BLOCK; p += FL_SHA256_BLOCK, len -= FL_SHA256_BLOCK) compress(c->h, p);
  if (len) memcpy(c->buf, p, len);
  c->buf_len = len;
}

/* Padding: 0x80, zeros up to 56 bytes mod 64, then the length in bits, big-endian. */
void fl_sha256_final(fl_sha256_t *c, uint8_t out[FL_SHA256_LEN]) {
  uint64_t bits = c->total * 8;
  uint8_t pad[FL_SHA256_BLOCK + 8] = {0x80};
  size_t n = (c->buf_len < 56 ? 56 : 120) - c->buf_len;
  for (int i = 0; i < 8; i++) pad[n + i] = (uint8_t)(bits >> (56 - 8 * i));
  fl_sha256_update(c, pad, n + 8);
  for (int i = 0; i < 8; i++)
    for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(c->h[i] >> (24 - 8 * j));
}

void fl_hmac_key_init(fl_hmac_key_t *k, const void *key, size_t key_len) {
  uint8_t block[FL_SHA256_BLOCK] = {0}, ipad[FL_SHA256_BLOCK], opad[FL_SHA256_BLOCK];
  if (key_len > FL_SHA256_BLOCK) {            /* a long key is hashed first */
    fl_sha256_t h;
    fl_sha256_init(&h);
    fl_sha256_update(&h, key, key_len);
    fl_sha256_final(&h, block);
  } else if (key_len) {
    memcpy(block, key, key_len);
  }
  for (int i = 0; i < FL_SHA256_BLOCK; i++) ipad[i] = block[i] ^ 0x36, opad[i] = block[i] ^ 0x5c;
  fl_sha256_init(&k->inner);
  fl_sha256_update(&k->inner, ipad, sizeof ipad);
  fl_sha256_init(&k->outer);
  fl_sha256_update(&k->outer, opad, sizeof opad);
}

void fl_hmac(const fl_hmac_key_t *k, const void *msg, size_t len, uint8_t out[FL_SHA256_LEN]) {
  fl_sha256_t c = k->inner;
  uint8_t inner[FL_SHA256_LEN];
  fl_sha256_update(&c, msg, len);
  fl_sha256_final(&c, inner);
  c = k->outer;
  fl_sha256_update(&c, inner, sizeof inner);
  fl_sha256_final(&c, out);
}
