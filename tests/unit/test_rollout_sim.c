/* test_rollout_sim.c — whole rollouts simulated through the real judgement (fl_analysis_run,
 * fl_analysis_due, fl_analysis_move, fl_stats_psi_test), window by window, without sleeping:
 * steps [10, 25, 50, 100], checks on error rate, p99 latency, p95 TTFT and output-length PSI,
 * at 2, 20 and 200 requests per window in all. Two versions that are the same must almost never
 * be rolled back (at most 1 − confidence of whole rollouts, at every traffic level); a canary
 * with 5% errors, one 1.5 times slower and one with answers twice as long must be rolled back in
 * at least 95% of rollouts at 20 requests a window and more. Prints the table docs/rollouts.md
 * quotes. FLEDGE_SIM_ROLLOUTS sets the rollouts per row (400 by default, for make test; make sim runs 10,000). */
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
#include "monitor.h"

/* ---- a deterministic source of traffic (xorshift64*) ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static double uniform01(void) {   /* in (0, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (((rng * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) * 0x1.0p-53;
}

static double lognormal(double median, double sigma) {   /* Box–Muller */
  double z = sqrt(-2.0 * log(uniform01())) * cos(2.0 * M_PI * uniform01());
  return median * exp(sigma * z);
}

/* ---- one version, as the gateway would see its answers ---- */

typedef struct {
  double error_rate, slower, longer;   /* errors; latency and TTFT factor; output-length factor */
} version_t;

static const version_t STABLE = {0.01, 1.0, 1.0};

typedef struct {
  fl_series_snap_t snap;               /* what the metrics would hold since the step began */
  double *tokens;                      /* output lengths since the step began (the monitor's values) */
  size_t n_tokens, cap;
} side_t;

static void side_reset(side_t *s) {
  double *keep = s->tokens;
  size_t cap = s->cap;
  memset(s, 0, sizeof *s);
  s->tokens = keep;
  s->cap = cap;
}

static void record(fl_hist_snap_t *h, double ms) {
  uint64_t us = (uint64_t)llround(ms * 1000);
  h->bucket[fl_hist_index(us)]++;
  h->count++;
  h->sum_us += us;
}

/* One answer: streamed, timed, its length kept for the drift check; an error has no answer. */
static void serve(side_t *s, const version_t *v) {
  s->snap.requests++;
  record(&s->snap.duration, lognormal(250.0 * v->slower, 0.4));
  if (uniform01() < v->error_rate) {
    s->snap.errors++;
    return;
  }
  record(&s->snap.ttft, lognormal(80.0 * v->slower, 0.5));
  double tokens = round(lognormal(120.0 * v->longer, 0.5));
  s->snap.completion_tokens += (uint64_t)tokens;
  if (s->n_tokens == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 1024;
    s->tokens = realloc(s->tokens, sizeof *s->tokens * s->cap);
    assert_non_null(s->tokens);
  }
  s->tokens[s->n_tokens++] = tokens;
}

/* ---- whole rollouts ---- */

static const char *SPEC =
    "{\"steps\": [10, 25, 50, 100], \"interval\": \"60s\", \"min_requests\": 20, \"confidence\": 0.95,"
    " \"checks\": [{\"metric\": \"error_rate\", \"max_increase\": 0.01},"
    "              {\"metric\": \"latency_p99\", \"max_ratio\": 1.2},"
    "              {\"metric\": \"ttft_p95\", \"max_ratio\": 1.2},"
    "              {\"metric\": \"output_tokens_psi\", \"max\": 0.2}]}";

#define MAX_WINDOWS 4000               /* a rollout still undecided after these counts as undecided */

typedef enum { PROMOTED, ROLLED_BACK, UNDECIDED } outcome_t;

typedef struct {
  unsigned n[3];                       /* rollouts by outcome */
  double canary_requests_to_rollback;  /* summed over the rolled back */
} tally_t;

static outcome_t one_rollout(const fl_rollout_spec_t *spec, const version_t *canary_v, unsigned per_window,
                             side_t *c, side_t *s, uint64_t *canary_served) {
  int32_t step = 0;
  uint32_t failures = 0;
  fl_evidence_t ev = {0};
  side_reset(c);
  side_reset(s);
  for (unsigned w = 0; w < MAX_WINDOWS; w++) {
    double weight = spec->steps_bp[step] / 10000.0;
    for (unsigned i = 0; i < per_window; i++) {
      bool to_canary = uniform01() < weight;
      serve(to_canary ? c : s, to_canary ? canary_v : &STABLE);
      *canary_served += to_canary;
    }
    fl_drift_t drift[FL_F_COUNT];
    bool due = fl_analysis_due(spec, &ev, &c->snap, &s->snap);
    if (due) {                         /* what the monitor computes for a PSI (its bins as monitor.c's) */
      fl_psi_t psi = fl_stats_psi_test(s->tokens, s->n_tokens, c->tokens, c->n_tokens, 10);
      drift[FL_F_OUTPUT_TOKENS] = (fl_drift_t){.n_a = c->n_tokens, .n_b = s->n_tokens, .psi = psi.psi,
                                               .psi_test = psi.test, .psi_bins = psi.bins, .js = NAN,
                                               .ks = {NAN, NAN}, .chi2 = {NAN, NAN}};
    }
    fl_verdict_t v;
    json_decref(fl_analysis_run(spec, &ev, &c->snap, &s->snap, due ? drift : NULL, &v));
    switch (fl_analysis_move(spec, step, &failures, v)) {
    case FL_MOVE_PROMOTE: return PROMOTED;
    case FL_MOVE_ROLL_BACK: return ROLLED_BACK;
    case FL_MOVE_NEXT:
      step++;
      ev = (fl_evidence_t){0};
      side_reset(c);
      side_reset(s);
      break;
    case FL_MOVE_STAY: break;
    }
  }
  return UNDECIDED;
}

static unsigned rollouts_per_row(void) {
  const char *e = getenv("FLEDGE_SIM_ROLLOUTS");
  return e && atoi(e) > 0 ? (unsigned)atoi(e) : 400;
}

static tally_t simulate(const version_t *canary_v, unsigned per_window) {
  fl_rollout_spec_t spec;
  char err[256];
  json_t *j = json_loads(SPEC, 0, NULL);
  assert_int_equal(fl_rollout_spec_parse(j, &spec, err, sizeof err), 0);
  json_decref(j);
  static side_t c, s;
  tally_t t = {{0}, 0};
  for (unsigned i = 0, n = rollouts_per_row(); i < n; i++) {
    uint64_t served = 0;
    outcome_t o = one_rollout(&spec, canary_v, per_window, &c, &s, &served);
    t.n[o]++;
    if (o == ROLLED_BACK) t.canary_requests_to_rollback += (double)served;
  }
  return t;
}

static void print_row(const char *name, unsigned per_window, const tally_t *t) {
  double n = t->n[0] + t->n[1] + t->n[2];
  printf("| %-18s | %5u | %6.1f%% | %6.1f%% | %6.1f%% | %9.0f |\n", name, per_window, 100.0 * t->n[PROMOTED] / n,
         100.0 * t->n[ROLLED_BACK] / n, 100.0 * t->n[UNDECIDED] / n,
         t->n[ROLLED_BACK] ? t->canary_requests_to_rollback / t->n[ROLLED_BACK] : NAN);
}

static const unsigned LEVELS[] = {2, 20, 200};

static void header(void) {
  printf("\n%u rollouts a row, at most %u windows each\n", rollouts_per_row(), MAX_WINDOWS);
  printf("| canary             | req/w | promoted | rolled back | undecided | canary req. to rollback |\n");
}

static void two_equal_versions_are_rolled_back_at_most_one_time_in_twenty(void **state) {
  header();
  for (size_t i = 0; i < FL_ARRAY_LEN(LEVELS); i++) {
    tally_t t = simulate(&STABLE, LEVELS[i]);
    print_row("same as stable", LEVELS[i], &t);
    double n = t.n[0] + t.n[1] + t.n[2];
    assert_true(t.n[ROLLED_BACK] / n <= 0.05);
  }
}

static void a_worse_canary_is_rolled_back_in_95_percent_of_rollouts(const char *name, version_t v) {
  for (size_t i = 0; i < FL_ARRAY_LEN(LEVELS); i++) {
    tally_t t = simulate(&v, LEVELS[i]);
    print_row(name, LEVELS[i], &t);
    double n = t.n[0] + t.n[1] + t.n[2];
    if (LEVELS[i] >= 20) assert_true(t.n[ROLLED_BACK] / n >= 0.95);
    assert_true(t.n[PROMOTED] / n <= 0.05);     /* at any traffic, never promoted but by chance */
  }
}

static void a_canary_with_5_percent_errors_is_rolled_back(void **state) {
  a_worse_canary_is_rolled_back_in_95_percent_of_rollouts("5% errors", (version_t){0.05, 1.0, 1.0});
}

static void a_canary_1_5_times_slower_is_rolled_back(void **state) {
  a_worse_canary_is_rolled_back_in_95_percent_of_rollouts("1.5x latency", (version_t){0.01, 1.5, 1.0});
}

static void a_canary_with_answers_twice_as_long_is_rolled_back(void **state) {
  a_worse_canary_is_rolled_back_in_95_percent_of_rollouts("2x longer answers", (version_t){0.01, 1.0, 2.0});
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(two_equal_versions_are_rolled_back_at_most_one_time_in_twenty),
      cmocka_unit_test(a_canary_with_5_percent_errors_is_rolled_back),
      cmocka_unit_test(a_canary_1_5_times_slower_is_rolled_back),
      cmocka_unit_test(a_canary_with_answers_twice_as_long_is_rolled_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
