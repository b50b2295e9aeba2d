/* hist.c — log-linear latency histograms: exact below 32 µs, then 32 linear sub-buckets per
 * power of two, so no bucket is wider than 1/32 of its lower edge and its middle is within 1/64. */
#include "hist.h"

#include <math.h>

#define SUB_BITS 5u                        /* log2(FL_HIST_SUB) */
#define LAST (FL_HIST_BUCKETS - 1u)        /* also takes everything above the top octave */

_Static_assert(FL_HIST_SUB == 1u << SUB_BITS, "the index arithmetic shifts by SUB_BITS");

unsigned fl_hist_index(uint64_t us) {
  if (us < FL_HIST_SUB) return (unsigned)us;
  /* us ∈ [32·2^k, 32·2^(k+1)): the top SUB_BITS+1 bits pick the sub-bucket, the rest is width. */
  unsigned k = 63u - (unsigned)__builtin_clzll(us) - SUB_BITS;
  if (k >= FL_HIST_OCTAVES) return LAST;
  return FL_HIST_SUB + FL_HIST_SUB * k + (unsigned)((us >> k) - FL_HIST_SUB);
}

void fl_hist_range(unsigned index, uint64_t *lo_us, uint64_t *hi_us) {
  if (index < FL_HIST_SUB) {
    *lo_us = index;
    *hi_us = index + 1u;
    return;
  }
  if (index > LAST) index = LAST;
  unsigned k = (index - FL_HIST_SUB) / FL_HIST_SUB, sub = (index - FL_HIST_SUB) % FL_HIST_SUB;
  *lo_us = (uint64_t)(FL_HIST_SUB + sub) << k;
  *hi_us = index == LAST ? UINT64_MAX : *lo_us + ((uint64_t)1 << k);
}

/* The value a bucket stands for in quantiles and `le` counts: the middle of the integers it
 * holds, so a bucket one microsecond wide (all below 64 µs) gives back the value itself. The top
 * bucket has no real upper edge, so its lower edge ("at least this") is the only honest answer. */
static double bucket_value(unsigned index) {
  uint64_t lo, hi;
  fl_hist_range(index, &lo, &hi);
  if (index == LAST) return (double)lo;
  return (double)lo + (double)(hi - lo - 1u) / 2.0;
}

/* A plain load and store, not an atomic add: each histogram has exactly one writer, so no lock
 * prefix is needed; the atomics only keep readers on other threads from seeing torn values. */
static void bump64(atomic_uint_least64_t *counter, uint64_t by) {
  atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + by,
                        memory_order_relaxed);
}

void fl_hist_record(fl_hist_t *h, uint64_t us) {
  bump64(&h->bucket[fl_hist_index(us)], 1u);
  bump64(&h->sum_us, us);
}

void fl_hist_add_to(const fl_hist_t *h, fl_hist_snap_t *out) {
  out->sum_us += atomic_load_explicit(&h->sum_us, memory_order_relaxed);
  for (unsigned i = 0; i < FL_HIST_BUCKETS; i++) {
    uint64_t n = atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    out->bucket[i] += n;
    out->count += n;
  }
}

/* b is an earlier copy of the same cumulative histogram, so every difference is ≥ 0. */
void fl_hist_snap_add_diff(fl_hist_snap_t *out, const fl_hist_snap_t *a, const fl_hist_snap_t *b) {
  out->count += a->count - b->count;
  out->sum_us += a->sum_us - b->sum_us;
  for (unsigned i = 0; i < FL_HIST_BUCKETS; i++)
    out->bucket[i] += a->bucket[i] - b->bucket[i];
}

/* The total comes from the buckets, not s->count, for snapshots put together by hand. */
static uint64_t bucket_total(const fl_hist_snap_t *s) {
  uint64_t total = 0;
  for (unsigned i = 0; i < FL_HIST_BUCKETS; i++) total += s->bucket[i];
  return total;
}

double fl_hist_quantile(const fl_hist_snap_t *s, double q) {
  uint64_t total = bucket_total(s);
  if (total == 0) return 0.0;
  if (!(q > 0.0)) q = 0.0;                 /* also catches NaN */
  if (q > 1.0) q = 1.0;
  /* The rank-th smallest value, counting from 1: q = 0 is the smallest, q = 1 the largest. */
  double want = ceil(q * (double)total);
  uint64_t rank = want < 1.0 ? 1u : want > (double)total ? total : (uint64_t)want;
  uint64_t seen = 0;
  for (unsigned i = 0; i < FL_HIST_BUCKETS; i++) {
    seen += s->bucket[i];
    if (seen >= rank) return bucket_value(i);
  }
  return bucket_value(LAST);
}

/* A bucket's value lies inside it, so "upper edge ≤ le, or straddling with middle ≤ le" is just
 * "value ≤ le"; values grow with the index, so the walk stops at the first one above. */
uint64_t fl_hist_count_le(const fl_hist_snap_t *s, double le_us) {
  uint64_t n = 0;
  for (unsigned i = 0; i < FL_HIST_BUCKETS && bucket_value(i) <= le_us; i++) n += s->bucket[i];
  return n;
}
