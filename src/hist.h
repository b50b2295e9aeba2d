/* hist.h — mergeable log-linear histograms of durations: exact below 32 µs, then 32 linear
 * sub-buckets per power of two, so any quantile is within 2% of the true value. One writer
 * thread per histogram (relaxed atomics, no locks); any thread may read and merge. */
#ifndef FL_HIST_H
#define FL_HIST_H

#include "common.h"
#include <stdatomic.h>

#define FL_HIST_SUB 32u                    /* sub-buckets per octave: relative error ≤ 1/(2·32) */
#define FL_HIST_OCTAVES 28u                /* 32 µs · 2^27 ≈ 71 min: the top bucket takes the rest */
#define FL_HIST_BUCKETS (FL_HIST_SUB + FL_HIST_SUB * FL_HIST_OCTAVES)

typedef struct fl_hist {                           /* the count is the buckets' sum */
  atomic_uint_least64_t sum_us;
  atomic_uint_least64_t bucket[FL_HIST_BUCKETS];   /* 64-bit: a cumulative count must never wrap */
} fl_hist_t;

/* A plain (non-atomic) copy, for summing workers and windows on the reading thread. */
typedef struct fl_hist_snap {
  uint64_t count, sum_us;
  uint64_t bucket[FL_HIST_BUCKETS];
} fl_hist_snap_t;

/* Bucket index of a value in microseconds, and the [lo, hi) range a bucket covers. */
unsigned fl_hist_index(uint64_t us);
void fl_hist_range(unsigned index, uint64_t *lo_us, uint64_t *hi_us);

/* Writer thread only. */
void fl_hist_record(fl_hist_t *h, uint64_t us);

/* Any thread: adds h's current counts into out (out is not cleared first); out->count grows by
 * the buckets read, so that every `le` count of an exposition stays at or below its +Inf. */
void fl_hist_add_to(const fl_hist_t *h, fl_hist_snap_t *out);

/* out += a − b (b an earlier copy of the same cumulative histogram); for windows. */
void fl_hist_snap_add_diff(fl_hist_snap_t *out, const fl_hist_snap_t *a, const fl_hist_snap_t *b);

/* Quantile q in [0,1] in microseconds (the midpoint of the bucket holding it); 0 when empty. */
double fl_hist_quantile(const fl_hist_snap_t *s, double q);

/* Number of recorded values ≤ le_us, as a Prometheus `le` bucket: every internal bucket whose
 * upper edge is ≤ le_us counts, a bucket straddling le_us counts when its midpoint is ≤ le_us. */
uint64_t fl_hist_count_le(const fl_hist_snap_t *s, double le_us);

#endif
