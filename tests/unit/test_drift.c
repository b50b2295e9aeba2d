/* test_drift.c — what a PSI rollout check decides over many simulated windows (issue 14): two
 * variants answering from one distribution must almost never fail it, at any sample size, and
 * answers twice as long must fail it nearly always once there are enough values to tell. Each
 * window goes through the real fl_stats_psi_test and fl_analysis_run; the draws use a fixed seed,
 * and the table of rates is printed (docs/data.md quotes it). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis.h"

#define RUNS 1000                     /* windows per cell: a rate of 5% is known to ±1.4% */
#define ALPHA 0.05                    /* the rollouts' default confidence, 0.95 */

static uint64_t rng_state;

static void seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }

static double uniform01(void) {       /* in (0, 1): never 0, so log() is safe */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return ((double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
}

static double std_normal(void) { return sqrt(-2.0 * log(uniform01())) * cos(2.0 * M_PI * uniform01()); }

/* How long answers are: the mock's rounded normal (--output-tokens-mean 20 --output-tokens-sd
 * 4, at least 1 token), or a long tail (a rounded lognormal around 150 tokens). */
typedef enum { MOCK_NORMAL, LONG_TAIL } shape_t;

static double tokens(shape_t shape, double scale) {
  double v = shape == MOCK_NORMAL ? 20.0 + 4.0 * std_normal() : 150.0 * exp(0.6 * std_normal());
  return fmax(1.0, round(v * scale));
}

static fl_series_snap_t canary, stable;       /* ~15 KB each */

typedef struct { unsigned fail, inconclusive, pass; } tally_t;

/* One window: n values a side, the canary's answers `scale` times as long, judged against a PSI
 * bound of max at confidence 0.95. */
static fl_verdict_t one_window(shape_t shape, size_t n, double scale, const fl_rollout_spec_t *spec) {
  static double a[4096], b[4096];
  for (size_t i = 0; i < n; i++) b[i] = tokens(shape, 1.0);
  for (size_t i = 0; i < n; i++) a[i] = tokens(shape, scale);
  fl_drift_t drift[FL_F_COUNT] = {0};
  fl_psi_t psi = fl_stats_psi_test(b, n, a, n, 10);
  drift[FL_F_OUTPUT_TOKENS] = (fl_drift_t){.n_a = n, .n_b = n, .psi = psi.psi, .psi_test = psi.test,
                                           .psi_bins = psi.bins, .js = NAN, .ks = {NAN, NAN}, .chi2 = {NAN, NAN}};
  canary.requests = stable.requests = n;
  fl_verdict_t v;
  json_decref(fl_analysis_run(spec, &(fl_evidence_t){0}, &canary, &stable, drift, &v));
  return v;
}

static fl_rollout_spec_t psi_spec(double max) {
  char text[160], err[256] = "";
  snprintf(text, sizeof text, "{\"min_requests\": 1, \"confidence\": 0.95, "
           "\"checks\": [{\"metric\": \"output_tokens_psi\", \"max\": %g}]}", max);
  json_error_t jerr;
  json_t *j = json_loads(text, 0, &jerr);
  assert_non_null(j);
  fl_rollout_spec_t s;
  int rc = fl_rollout_spec_parse(j, &s, err, sizeof err);
  if (rc != 0) fprintf(stderr, "%s\n", err);
  assert_int_equal(rc, 0);
  json_decref(j);
  return s;
}

static tally_t windows(shape_t shape, size_t n, double scale, double max) {
  fl_rollout_spec_t spec = psi_spec(max);
  tally_t t = {0};
  for (int r = 0; r < RUNS; r++) {
    fl_verdict_t v = one_window(shape, n, scale, &spec);
    if (v == FL_VERDICT_FAIL) t.fail++;
    else if (v == FL_VERDICT_INCONCLUSIVE) t.inconclusive++;
    else t.pass++;
  }
  return t;
}

static double rate(unsigned k) { return (double)k / RUNS; }

static const size_t SIZES[] = {20, 50, 100, 144, 180, 360, 500};
static const double BOUNDS[] = {0.1, 0.2, 0.25};

/* Prints a row of the table and checks what the issue asks of it. */
static void check_cell(shape_t shape, double max, size_t n) {
  tally_t same = windows(shape, n, 1.0, max), longer = windows(shape, n, 1.25, max),
          doubled = windows(shape, n, 2.0, max);
  bool enough = n >= fl_stats_psi_min_n(10, max);
  printf("| %-9s | %4g | %4zu | %5.1f%% %5.1f%% | %5.1f%% %5.1f%% | %5.1f%% %5.1f%% |\n",
         shape == MOCK_NORMAL ? "mock" : "long tail", max, n, 100 * rate(same.fail), 100 * rate(same.inconclusive),
         100 * rate(longer.fail), 100 * rate(longer.inconclusive), 100 * rate(doubled.fail),
         100 * rate(doubled.inconclusive));
  /* equal variants fail no more often than the confidence allows, however few the values */
  assert_true(rate(same.fail) <= ALPHA);
  if (!enough) return;
  /* with enough values the check decides: equal variants pass, answers twice as long fail */
  assert_true(rate(same.pass) >= 1 - ALPHA);
  assert_true(rate(doubled.fail) >= 0.95);
}

static void a_psi_check_fails_equal_variants_rarely_and_doubled_answers_nearly_always(void **state) {
  seed(14);
  printf("PSI check over %d simulated windows a cell, confidence 0.95, 10 bins: fail%% and inconclusive%%\n", RUNS);
  printf("| answers   |  max |    n | same: fail incl | 1.25x: fail incl | 2x: fail incl |\n");
  for (size_t s = 0; s < 2; s++)
    for (size_t k = 0; k < FL_ARRAY_LEN(BOUNDS); k++)
      for (size_t i = 0; i < FL_ARRAY_LEN(SIZES); i++) check_cell((shape_t)s, BOUNDS[k], SIZES[i]);
}

/* Below the values needed the check never passes a canary it could not have caught: with answers
 * twice as long, 20 values a side are inconclusive, not a pass. */
static void too_few_values_never_pass(void **state) {
  seed(1400);
  tally_t t = windows(MOCK_NORMAL, 20, 2.0, 0.2);
  assert_int_equal(t.pass, 0);
  assert_int_equal(t.fail, 0);
  assert_int_equal(t.inconclusive, RUNS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_psi_check_fails_equal_variants_rarely_and_doubled_answers_nearly_always),
      cmocka_unit_test(too_few_values_never_pass),
  };
  return cmocka_run_group_tests_name("drift", tests, NULL, NULL);
}
