/* test_hist.c — the latency histogram as a specification: every microsecond value has exactly one
 * bucket no wider than 1/32 of it, quantiles and Prometheus `le` counts stay within 2% of the
 * exact answers, copies merge and subtract exactly, and readers may copy while the writer writes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "hist.h"

#define LAST (FL_HIST_BUCKETS - 1u)
#define N_VALUES 100000u
#define TOP_LO (63ull << 27)               /* lower edge of the top bucket, ≈ 2 h 21 min */

/* ---- a fixed-seed PRNG (splitmix64) and the distributions drawn from it ---- */

static uint64_t rng_state;

static uint64_t next_random(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double next_unit(void) { return (double)(next_random() >> 11) * 0x1.0p-53; }

typedef uint64_t (*draw_fn)(void);

static uint64_t uniform_1us_to_10s(void) { return 1u + next_random() % 10000000u; }

/* Median 50 ms with a long tail, like model latencies: exp(normal) by Box–Muller. */
static uint64_t log_normal(void) {
  double z = sqrt(-2.0 * log(1.0 - next_unit())) * cos(2.0 * M_PI * next_unit());
  return (uint64_t)llround(exp(log(50000.0) + 1.2 * z));
}

static uint64_t constant(void) { return 1234567u; }

/* A cache hit at 815 µs and a full generation at 2.5 s. */
static uint64_t two_spikes(void) { return next_unit() < 0.3 ? 815u : 2500000u; }

/* ---- helpers ---- */

static fl_hist_t *new_hist(void) {
  fl_hist_t *h = calloc(1, sizeof *h);
  assert_non_null(h);
  return h;
}

static fl_hist_snap_t copy_of(const fl_hist_t *h) {
  fl_hist_snap_t s = {0};
  fl_hist_add_to(h, &s);
  return s;
}

static int by_value(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Draws N_VALUES values into *values (sorted on return) and into a fresh histogram. */
static fl_hist_snap_t record_sample(draw_fn draw, uint64_t **values) {
  uint64_t *v = malloc(N_VALUES * sizeof *v);
  assert_non_null(v);
  fl_hist_t *h = new_hist();
  rng_state = 42;
  for (unsigned i = 0; i < N_VALUES; i++) fl_hist_record(h, v[i] = draw());
  qsort(v, N_VALUES, sizeof *v, by_value);
  fl_hist_snap_t s = copy_of(h);
  free(h);
  *values = v;
  return s;
}

/* The rank-th smallest value with rank = ceil(q·n), at least 1: the definition the header uses. */
static uint64_t exact_quantile(const uint64_t *sorted, double q) {
  double want = ceil(q * N_VALUES);
  size_t rank = want < 1 ? 1 : (size_t)want;
  return sorted[rank - 1];
}

static uint64_t exact_count_le(const uint64_t *sorted, double le_us) {
  uint64_t n = 0;
  while (n < N_VALUES && (double)sorted[n] <= le_us) n++;
  return n;
}

/* ---- buckets ---- */

static void every_bucket_is_a_contiguous_range_that_maps_back_to_itself(void **state) {
  uint64_t expect_lo = 0;
  for (unsigned i = 0; i < FL_HIST_BUCKETS; i++) {
    uint64_t lo, hi;
    fl_hist_range(i, &lo, &hi);
    assert_int_equal(lo, expect_lo);       /* no gap, no overlap with the bucket before */
    assert_true(lo < hi);
    assert_int_equal(fl_hist_index(lo), i);
    assert_int_equal(fl_hist_index(lo + (hi - lo) / 2), i);
    assert_int_equal(fl_hist_index(hi - 1), i);
    if (lo < FL_HIST_SUB) assert_int_equal(hi - lo, 1);
    else if (i != LAST) assert_true(hi - lo <= lo / 32);
    expect_lo = hi;
  }
  assert_int_equal(expect_lo, UINT64_MAX); /* the top bucket reaches the end of uint64 */
}

static void any_value_lies_in_the_range_of_its_bucket(void **state) {
  rng_state = 7;
  for (int i = 0; i < 1000000; i++) {
    uint64_t v = next_random() >> (next_random() % 64), lo, hi;  /* every magnitude equally */
    unsigned index = fl_hist_index(v);
    assert_true(index < FL_HIST_BUCKETS);
    fl_hist_range(index, &lo, &hi);
    assert_true(lo <= v && (v < hi || (index == LAST && v == UINT64_MAX)));
  }
}

static void a_single_value_comes_back_within_one_sixty_fourth(void **state) {
  rng_state = 9;
  for (int i = 0; i < 200000; i++) {
    uint64_t v = i < 4096 ? (uint64_t)i : 1u + (next_random() >> (next_random() % 31 + 31));
    if (v >= TOP_LO) continue;
    fl_hist_snap_t s = {.count = 1, .sum_us = v};
    s.bucket[fl_hist_index(v)] = 1;
    double got = fl_hist_quantile(&s, 0.5);
    if (v < 2 * FL_HIST_SUB) assert_true(got == (double)v);  /* one-microsecond buckets are exact */
    else if (fabs(got - (double)v) > (double)v / 64)
      fail_msg("value %llu came back as %.1f", (unsigned long long)v, got);
  }
}

/* ---- quantiles ---- */

static void check_quantiles(draw_fn draw, const char *name) {
  static const double qs[] = {0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1};
  uint64_t *sorted;
  fl_hist_snap_t s = record_sample(draw, &sorted);
  for (size_t i = 0; i < FL_ARRAY_LEN(qs); i++) {
    double exact = (double)exact_quantile(sorted, qs[i]), got = fl_hist_quantile(&s, qs[i]);
    if (fabs(got - exact) > 0.02 * exact)
      fail_msg("%s: q=%g gave %.1f, exact %.0f", name, qs[i], got, exact);
  }
  free(sorted);
}

static void quantiles_are_within_two_percent_for_uniform_values(void **state) {
  check_quantiles(uniform_1us_to_10s, "uniform");
}

static void quantiles_are_within_two_percent_for_a_long_tail(void **state) {
  check_quantiles(log_normal, "log-normal");
}

static void quantiles_are_within_two_percent_for_a_constant(void **state) {
  check_quantiles(constant, "constant");
}

static void quantiles_are_within_two_percent_for_two_spikes(void **state) {
  check_quantiles(two_spikes, "two spikes");
  /* Between the spikes the answer jumps from one to the other, not to somewhere in between. */
  uint64_t *sorted;
  fl_hist_snap_t s = record_sample(two_spikes, &sorted);
  double low = fl_hist_quantile(&s, 0.25), high = fl_hist_quantile(&s, 0.35);
  assert_true(fabs(low - 815) <= 815 * 0.02);
  assert_true(fabs(high - 2500000) <= 2500000 * 0.02);
  free(sorted);
}

static void a_quantile_is_the_value_of_rank_ceil_q_times_n(void **state) {
  fl_hist_snap_t s = {.count = 4, .sum_us = 100};
  for (uint64_t v = 10; v <= 40; v += 10) s.bucket[fl_hist_index(v)] = 1;
  assert_true(fl_hist_quantile(&s, 0) == 10);       /* the smallest */
  assert_true(fl_hist_quantile(&s, 0.25) == 10);    /* rank 1 */
  assert_true(fl_hist_quantile(&s, 0.26) == 20);    /* rank 2: a partial rank rounds up */
  assert_true(fl_hist_quantile(&s, 0.75) == 30);
  assert_true(fl_hist_quantile(&s, 1) == 40);       /* the largest */
  assert_true(fl_hist_quantile(&s, -1) == 10);      /* q outside [0,1] is clamped */
  assert_true(fl_hist_quantile(&s, 2) == 40);
  /* A copy of a live histogram may read count after more values arrived than its buckets show;
   * the answer still comes from the buckets it has. */
  s.count = 10;
  assert_true(fl_hist_quantile(&s, 1) == 40);
}

static void an_empty_histogram_answers_zero(void **state) {
  fl_hist_t *h = new_hist();
  fl_hist_snap_t s = copy_of(h), zero = {0};
  assert_memory_equal(&s, &zero, sizeof s);
  assert_true(fl_hist_quantile(&s, 0) == 0.0);
  assert_true(fl_hist_quantile(&s, 0.5) == 0.0);
  assert_true(fl_hist_quantile(&s, 1) == 0.0);
  assert_int_equal(fl_hist_count_le(&s, 60e6), 0);
  assert_int_equal(fl_hist_count_le(&s, INFINITY), 0);
  free(h);
}

static void huge_values_land_in_the_top_bucket(void **state) {
  assert_int_equal(fl_hist_index(TOP_LO - 1), LAST - 1);
  assert_int_equal(fl_hist_index(TOP_LO), LAST);
  assert_int_equal(fl_hist_index(1ull << 33), LAST);    /* just above the top octave */
  assert_int_equal(fl_hist_index(1ull << 63), LAST);
  assert_int_equal(fl_hist_index(UINT64_MAX), LAST);
  fl_hist_t *h = new_hist();
  fl_hist_record(h, 1ull << 40);
  fl_hist_record(h, UINT64_MAX);
  fl_hist_snap_t s = copy_of(h);
  assert_int_equal(s.count, 2);
  assert_int_equal(s.bucket[LAST], 2);
  /* The top bucket has no upper edge, so it reports its lower one: "at least this long". */
  assert_true(fl_hist_quantile(&s, 1) == (double)TOP_LO);
  assert_int_equal(fl_hist_count_le(&s, 60e6), 0);
  assert_int_equal(fl_hist_count_le(&s, INFINITY), 2);
  free(h);
}

/* ---- Prometheus `le` counts ---- */

static const double PROM_LE_US[] = {5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7, 3e7, 6e7};

static void check_count_le(draw_fn draw, const char *name) {
  uint64_t *sorted;
  fl_hist_snap_t s = record_sample(draw, &sorted);
  for (size_t i = 0; i < FL_ARRAY_LEN(PROM_LE_US); i++) {
    double exact = (double)exact_count_le(sorted, PROM_LE_US[i]);
    double got = (double)fl_hist_count_le(&s, PROM_LE_US[i]);
    if (fabs(got - exact) > 0.02 * N_VALUES)
      fail_msg("%s: le=%g µs gave %.0f, exact %.0f", name, PROM_LE_US[i], got, exact);
  }
  assert_int_equal(fl_hist_count_le(&s, INFINITY), N_VALUES);
  free(sorted);
}

/* Spread-out values only: a spike sitting on a boundary moves as a whole (see the next test). */
static void le_counts_are_within_two_percent_of_the_total(void **state) {
  check_count_le(uniform_1us_to_10s, "uniform");
  check_count_le(log_normal, "log-normal");
}

static void a_bucket_straddling_le_counts_by_its_middle(void **state) {
  /* 5 ms lies in [4992, 5120) whose middle is above it; 25 ms in [24576, 25088) whose middle is
   * below it. The whole straddling bucket goes one way, even for values on the other side, so a
   * spike exactly on a boundary is counted wholly above it. */
  fl_hist_t *h = new_hist();
  fl_hist_record(h, 4991);                 /* bucket ends at 4992 ≤ 5 ms: always counts */
  fl_hist_record(h, 5000);                 /* exactly 5 ms, but its bucket's middle is above */
  fl_hist_record(h, 25050);                /* > 25 ms, but its bucket's middle is not */
  fl_hist_record(h, 25088);                /* bucket starts above 25 ms: never counts */
  fl_hist_snap_t s = copy_of(h);
  assert_int_equal(fl_hist_count_le(&s, 5e3), 1);
  assert_int_equal(fl_hist_count_le(&s, 2.5e4), 3);
  assert_int_equal(fl_hist_count_le(&s, 0), 0);
  fl_hist_record(h, 0);
  s = copy_of(h);
  assert_int_equal(fl_hist_count_le(&s, 0), 1);
  free(h);
}

/* ---- merging and windows ---- */

static void merged_copies_equal_one_histogram_of_all_values(void **state) {
  fl_hist_t *a = new_hist(), *b = new_hist(), *all = new_hist();
  rng_state = 3;
  for (unsigned i = 0; i < N_VALUES; i++) {
    uint64_t v = log_normal();
    fl_hist_record(next_random() & 1 ? a : b, v);
    fl_hist_record(all, v);
  }
  fl_hist_snap_t merged = {0}, expect = copy_of(all);
  fl_hist_add_to(a, &merged);
  fl_hist_add_to(b, &merged);
  assert_int_equal(merged.count, N_VALUES);
  assert_memory_equal(&merged, &expect, sizeof merged);
  free(a), free(b), free(all);
}

static void a_window_holds_only_the_values_recorded_between_two_copies(void **state) {
  fl_hist_t *h = new_hist(), *between = new_hist();
  rng_state = 5;
  for (unsigned i = 0; i < N_VALUES; i++) fl_hist_record(h, uniform_1us_to_10s());
  fl_hist_snap_t earlier = copy_of(h);
  for (unsigned i = 0; i < N_VALUES; i++) {
    uint64_t v = log_normal();
    fl_hist_record(h, v);
    fl_hist_record(between, v);
  }
  fl_hist_snap_t later = copy_of(h), window = {0}, expect = copy_of(between);
  fl_hist_snap_add_diff(&window, &later, &earlier);
  assert_memory_equal(&window, &expect, sizeof window);
  /* out is added to, not overwritten: a second worker's window sums with the first. */
  fl_hist_snap_add_diff(&window, &later, &earlier);
  assert_int_equal(window.count, 2 * N_VALUES);
  assert_int_equal(window.bucket[fl_hist_index(50000)], 2 * expect.bucket[fl_hist_index(50000)]);
  free(h), free(between);
}

static void bucket_counts_go_past_2_to_the_32_without_wrapping(void **state) {
  fl_hist_snap_t earlier = {0}, later = {0}, window = {0};
  earlier.bucket[100] = UINT32_MAX - 1;
  later.bucket[100] = UINT32_MAX + 4ull;   /* five more values, past 2^32 */
  earlier.count = UINT32_MAX - 1;
  later.count = UINT32_MAX + 4ull;
  fl_hist_snap_add_diff(&window, &later, &earlier);
  assert_int_equal(window.bucket[100], 5);
  assert_int_equal(window.count, 5);
  assert_true(fl_hist_count_le(&later, 1e12) == UINT32_MAX + 4ull);
}

/* ---- one writer, any reader ---- */

#define WRITES 2000000u

static void *write_many(void *arg) {
  for (unsigned i = 0; i < WRITES; i++) fl_hist_record(arg, i % 5000u);
  return NULL;
}

static void a_reader_copying_during_writes_never_sees_counts_go_back_or_le_over_inf(void **state) {
  fl_hist_t *h = new_hist();
  pthread_t writer;
  assert_int_equal(pthread_create(&writer, NULL, write_many, h), 0);
  fl_hist_snap_t before = {0};
  for (int copies = 0; copies < 200; copies++) {
    fl_hist_snap_t now = copy_of(h);
    for (unsigned i = 0; i < FL_HIST_BUCKETS; i++) assert_true(now.bucket[i] >= before.bucket[i]);
    assert_true(now.count >= before.count && now.count <= WRITES);
    /* what an exposition prints: no finite le above +Inf (count), even mid-write */
    assert_true(fl_hist_count_le(&now, INFINITY) == now.count);
    before = now;
  }
  pthread_join(writer, NULL);
  fl_hist_snap_t done = copy_of(h);
  assert_int_equal(done.count, WRITES);
  assert_int_equal(fl_hist_count_le(&done, INFINITY), WRITES);
  free(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_bucket_is_a_contiguous_range_that_maps_back_to_itself),
      cmocka_unit_test(any_value_lies_in_the_range_of_its_bucket),
      cmocka_unit_test(a_single_value_comes_back_within_one_sixty_fourth),
      cmocka_unit_test(quantiles_are_within_two_percent_for_uniform_values),
      cmocka_unit_test(quantiles_are_within_two_percent_for_a_long_tail),
      cmocka_unit_test(quantiles_are_within_two_percent_for_a_constant),
      cmocka_unit_test(quantiles_are_within_two_percent_for_two_spikes),
      cmocka_unit_test(a_quantile_is_the_value_of_rank_ceil_q_times_n),
      cmocka_unit_test(an_empty_histogram_answers_zero),
      cmocka_unit_test(huge_values_land_in_the_top_bucket),
      cmocka_unit_test(le_counts_are_within_two_percent_of_the_total),
      cmocka_unit_test(a_bucket_straddling_le_counts_by_its_middle),
      cmocka_unit_test(merged_copies_equal_one_histogram_of_all_values),
      cmocka_unit_test(a_window_holds_only_the_values_recorded_between_two_copies),
      cmocka_unit_test(bucket_counts_go_past_2_to_the_32_without_wrapping),
      cmocka_unit_test(a_reader_copying_during_writes_never_sees_counts_go_back_or_le_over_inf),
  };
  return cmocka_run_group_tests_name("hist", tests, NULL, NULL);
}
