/* test_rollout_sim.c — whole rollouts simulated through the real judgement (fl_analysis_verdict,
 * the verdict of fl_analysis_run without its JSON; fl_analysis_due, fl_analysis_move,
 * fl_stats_psi_test), window by window, without sleeping: steps [10, 25, 50, 100], checks on
 * error rate, p99 latency, p95 TTFT and output-length PSI, at 2, 20 and 200 requests per window
 * in all. Two versions that are the same must almost never be rolled back (at most 1 − the spec's
 * confidence of whole rollouts, at every traffic level); a canary with 5% errors, one 1.5 times
 * slower and one with answers twice as long must be rolled back in at least 95% of rollouts at 20
 * requests a window and more, and promoted in at most 1 − confidence at any traffic. Prints the
 * table docs/rollouts.md quotes. FLEDGE_SIM_ROLLOUTS sets the rollouts per row (1,000 by default,
 * for make test; make asan runs 100, make sim 10,000). Each rollout draws its traffic from a
 * generator seeded by its index alone, so the rollouts of a row run on as many threads as there
 * are CPUs to run them and the table is the same on any machine. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis.h"
#include "monitor.h"

/* ---- a deterministic source of traffic, one per rollout ---- */

typedef struct {
  uint64_t state;                      /* xorshift64* */
  double spare;                        /* the polar method's second normal, when has_spare */
  bool has_spare;
} rng_t;

/* splitmix64 of the rollout's index: neighbouring indices start far apart in xorshift's cycle. */
static rng_t rng_for(unsigned rollout) {
  uint64_t z = rollout + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (rng_t){.state = z ? z : 0x9E3779B97F4A7C15ull};
}

static double uniform01(rng_t *r) {   /* in (0, 1) */
  r->state ^= r->state << 13;
  r->state ^= r->state >> 7;
  r->state ^= r->state << 17;
  return (((r->state * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) * 0x1.0p-53;
}

/* Marsaglia's polar method: two normals from a point in the unit disc, with no cosine, and half
 * the logarithms of Box–Muller; drawing traffic is most of what the simulation costs. */
static double normal(rng_t *r) {
  if (r->has_spare) {
    r->has_spare = false;
    return r->spare;
  }
  double u, v, s;
  do {
    u = 2 * uniform01(r) - 1;
    v = 2 * uniform01(r) - 1;
    s = u * u + v * v;
  } while (s >= 1);                    /* never 0: uniform01 is never exactly ½ */
  double f = sqrt(-2 * log(s) / s);
  r->spare = v * f;
  r->has_spare = true;
  return u * f;
}

static double lognormal(rng_t *r, double median, double sigma) { return median * exp(sigma * normal(r)); }

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

/* A worker thread cannot fail a cmocka test (its longjmp belongs to the main thread): memory
 * running out ends the run, which make test counts as a failed binary. */
static void keep_token(side_t *s, double tokens) {
  if (s->n_tokens == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 1024;
    s->tokens = realloc(s->tokens, sizeof *s->tokens * s->cap);
    if (!s->tokens) {
      fprintf(stderr, "test_rollout_sim: out of memory for %zu output lengths\n", s->cap);
      abort();
    }
  }
  s->tokens[s->n_tokens++] = tokens;
}

/* One answer: streamed, timed, its length kept for the drift check; an error has no answer. */
static void serve(rng_t *r, side_t *s, const version_t *v) {
  s->snap.requests++;
  record(&s->snap.duration, lognormal(r, 250.0 * v->slower, 0.4));
  if (uniform01(r) < v->error_rate) {
    s->snap.errors++;
    return;
  }
  record(&s->snap.ttft, lognormal(r, 80.0 * v->slower, 0.5));
  double tokens = round(lognormal(r, 120.0 * v->longer, 0.5));
  s->snap.completion_tokens += (uint64_t)tokens;
  keep_token(s, tokens);
}

/* ---- whole rollouts ---- */

static const char *SPEC =
    "{\"steps\": [10, 25, 50, 100], \"interval\": \"60s\", \"min_requests\": 20, \"confidence\": 0.95,"
    " \"checks\": [{\"metric\": \"error_rate\", \"max_increase\": 0.01},"
    "              {\"metric\": \"latency_p99\", \"max_ratio\": 1.2},"
    "              {\"metric\": \"ttft_p95\", \"max_ratio\": 1.2},"
    "              {\"metric\": \"output_tokens_psi\", \"max\": 0.2}]}";

#define MAX_WINDOWS 4000               /* a rollout still undecided after these counts as undecided */
#define PSI_BINS 10                    /* monitor.c's */
#define MAX_WORKERS 64u

/* The demand on power, which no spec field sets (confidence bounds the false verdicts):
 * a worse canary rolled back in at least this share of rollouts from this traffic on. */
#define DETECTION_MIN 0.95
#define DETECTION_FROM_REQUESTS 20u    /* a window, in all; at 2 a window 4,000 windows may not be enough */

typedef enum { PROMOTED, ROLLED_BACK, UNDECIDED } outcome_t;

typedef struct {
  unsigned n[3];                       /* rollouts by outcome */
  uint64_t canary_requests_to_rollback;  /* summed over the rolled back (exact in any order) */
} tally_t;

/* The drift the monitor would report for output lengths since the step began. */
static void output_drift(const side_t *c, const side_t *s, fl_drift_t *drift) {
  fl_psi_t psi = fl_stats_psi_test(s->tokens, s->n_tokens, c->tokens, c->n_tokens, PSI_BINS);
  drift[FL_F_OUTPUT_TOKENS] = (fl_drift_t){.n_a = c->n_tokens, .n_b = s->n_tokens, .psi = psi.psi,
                                           .psi_test = psi.test, .psi_bins = psi.bins, .js = NAN,
                                           .ks = {NAN, NAN}, .chi2 = {NAN, NAN}};
}

static outcome_t one_rollout(const fl_rollout_spec_t *spec, const version_t *canary_v, unsigned per_window,
                             rng_t *r, side_t *c, side_t *s, uint64_t *canary_served) {
  int32_t step = 0;
  uint32_t failures = 0;
  fl_evidence_t ev = {0};
  side_reset(c);
  side_reset(s);
  for (unsigned w = 0; w < MAX_WINDOWS; w++) {
    double weight = spec->steps_bp[step] / 10000.0;
    for (unsigned i = 0; i < per_window; i++) {
      bool to_canary = uniform01(r) < weight;
      serve(r, to_canary ? c : s, to_canary ? canary_v : &STABLE);
      *canary_served += to_canary;
    }
    fl_drift_t drift[FL_F_COUNT];
    bool due = fl_analysis_due(spec, &ev, &c->snap, &s->snap);
    if (due) output_drift(c, s, drift);   /* only a window that looks needs it, as in rollout.c */
    fl_verdict_t v = fl_analysis_verdict(spec, &ev, &c->snap, &s->snap, due ? drift : NULL);
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

/* One thread's share of a row: rollouts first, first + stride, ... below n. */
typedef struct {
  const fl_rollout_spec_t *spec;
  const version_t *canary;
  unsigned per_window, first, stride, n;
  tally_t tally;
} share_t;

static void *run_share(void *arg) {
  share_t *sh = arg;
  side_t c = {0}, s = {0};
  for (unsigned i = sh->first; i < sh->n; i += sh->stride) {
    rng_t r = rng_for(i);
    uint64_t served = 0;
    outcome_t o = one_rollout(sh->spec, sh->canary, sh->per_window, &r, &c, &s, &served);
    sh->tally.n[o]++;
    if (o == ROLLED_BACK) sh->tally.canary_requests_to_rollback += served;
  }
  free(c.tokens);
  free(s.tokens);
  return NULL;
}

static unsigned rollouts_per_row(void) {
  const char *e = getenv("FLEDGE_SIM_ROLLOUTS");
  return e && atoi(e) > 0 ? (unsigned)atoi(e) : 1000;
}

/* The CPUs this process may run on (taskset and cpusets count, not just the machine's). */
static unsigned workers(void) {
  cpu_set_t set;
  unsigned n = sched_getaffinity(0, sizeof set, &set) == 0 ? (unsigned)CPU_COUNT(&set) : 1;
  return n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : n;
}

static void load_spec(fl_rollout_spec_t *spec) {
  char err[256];
  json_t *j = json_loads(SPEC, 0, NULL);
  assert_int_equal(fl_rollout_spec_parse(j, spec, err, sizeof err), 0);
  json_decref(j);
}

static tally_t simulate(const fl_rollout_spec_t *spec, const version_t *canary_v, unsigned per_window) {
  unsigned n = rollouts_per_row(), n_workers = FL_MIN(workers(), n);
  share_t shares[MAX_WORKERS];
  pthread_t threads[MAX_WORKERS];
  for (unsigned t = 0; t < n_workers; t++) {
    shares[t] = (share_t){.spec = spec, .canary = canary_v, .per_window = per_window, .first = t,
                          .stride = n_workers, .n = n};
    assert_int_equal(pthread_create(&threads[t], NULL, run_share, &shares[t]), 0);
  }
  tally_t sum = {{0}, 0};
  for (unsigned t = 0; t < n_workers; t++) {
    assert_int_equal(pthread_join(threads[t], NULL), 0);
    for (unsigned o = 0; o < 3; o++) sum.n[o] += shares[t].tally.n[o];
    sum.canary_requests_to_rollback += shares[t].tally.canary_requests_to_rollback;
  }
  return sum;
}

static double share_of(const tally_t *t, outcome_t o) {
  return (double)t->n[o] / (double)(t->n[PROMOTED] + t->n[ROLLED_BACK] + t->n[UNDECIDED]);
}

static void print_row(const char *name, unsigned per_window, const tally_t *t) {
  printf("| %-18s | %5u | %6.1f%% | %6.1f%% | %6.1f%% | %9.0f |\n", name, per_window, 100.0 * share_of(t, PROMOTED),
         100.0 * share_of(t, ROLLED_BACK), 100.0 * share_of(t, UNDECIDED),
         t->n[ROLLED_BACK] ? (double)t->canary_requests_to_rollback / t->n[ROLLED_BACK] : NAN);
}

static const unsigned LEVELS[] = {2, 20, 200};

static void header(const fl_rollout_spec_t *spec) {
  unsigned n = rollouts_per_row(), threads = FL_MIN(workers(), n);
  printf("\n%u rollouts a row on %u thread%s, at most %u windows each\n", n, threads, threads == 1 ? "" : "s",
         MAX_WINDOWS);
  printf("bounds: rolled back when the same, promoted when worse, at most %.1f%% (1 - confidence); "
         "rolled back when worse, at least %.0f%% from %u requests a window\n",
         100 * (1 - spec->confidence), 100 * DETECTION_MIN, DETECTION_FROM_REQUESTS);
  printf("| canary             | req/w | promoted | rolled back | undecided | canary req. to rollback |\n");
}

static void two_equal_versions_are_rolled_back_at_most_1_minus_confidence_of_the_time(void **state) {
  fl_rollout_spec_t spec;
  load_spec(&spec);
  header(&spec);
  for (size_t i = 0; i < FL_ARRAY_LEN(LEVELS); i++) {
    tally_t t = simulate(&spec, &STABLE, LEVELS[i]);
    print_row("same as stable", LEVELS[i], &t);
    assert_true(share_of(&t, ROLLED_BACK) <= 1 - spec.confidence);
  }
}

static void a_worse_canary_is_detected(const char *name, version_t v) {
  fl_rollout_spec_t spec;
  load_spec(&spec);
  for (size_t i = 0; i < FL_ARRAY_LEN(LEVELS); i++) {
    tally_t t = simulate(&spec, &v, LEVELS[i]);
    print_row(name, LEVELS[i], &t);
    if (LEVELS[i] >= DETECTION_FROM_REQUESTS) assert_true(share_of(&t, ROLLED_BACK) >= DETECTION_MIN);
    assert_true(share_of(&t, PROMOTED) <= 1 - spec.confidence);   /* at any traffic, promoted only by chance */
  }
}

static void a_canary_with_5_percent_errors_is_rolled_back(void **state) {
  a_worse_canary_is_detected("5% errors", (version_t){0.05, 1.0, 1.0});
}

static void a_canary_1_5_times_slower_is_rolled_back(void **state) {
  a_worse_canary_is_detected("1.5x latency", (version_t){0.01, 1.5, 1.0});
}

static void a_canary_with_answers_twice_as_long_is_rolled_back(void **state) {
  a_worse_canary_is_detected("2x longer answers", (version_t){0.01, 1.0, 2.0});
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(two_equal_versions_are_rolled_back_at_most_1_minus_confidence_of_the_time),
      cmocka_unit_test(a_canary_with_5_percent_errors_is_rolled_back),
      cmocka_unit_test(a_canary_1_5_times_slower_is_rolled_back),
      cmocka_unit_test(a_canary_with_answers_twice_as_long_is_rolled_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
