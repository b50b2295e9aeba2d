/* test_analysis.c — the judgement of a rollout window as a specification: rollout specs and the
 * errors that name their key, too little traffic, error-rate and latency checks (a check fails
 * when the canary is significantly worse AND beyond its bound, or over an absolute max), no false
 * alarms between equal variants, the histogram rank test against the raw one, window diffs, and
 * the JSON a window leaves behind. Windows are built by hand from seeded random latencies. */
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

/* ---- a deterministic sample source (xorshift64*) ---- */

static uint64_t rng_state;

static void seed(uint64_t s) { rng_state = s ? s : 0x9E3779B97F4A7C15ull; }

static double uniform01(void) {   /* in (0, 1): never 0, so log() is safe */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (((rng_state * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) * 0x1.0p-53;
}

static double std_normal(void) {  /* Box–Muller */
  return sqrt(-2.0 * log(uniform01())) * cos(2.0 * M_PI * uniform01());
}

static uint64_t lognormal_us(double median_ms, double sigma) {
  return (uint64_t)llround(median_ms * 1000.0 * exp(sigma * std_normal()));
}

static uint64_t exponential_us(double mean_ms) { return (uint64_t)llround(-mean_ms * 1000.0 * log(uniform01())); }

/* ---- windows built by hand ---- */

static fl_hist_t live;                       /* a worker's histogram, refilled for each side */
static fl_series_snap_t canary, stable;      /* the window under judgement (~15 KB each) */

static void clear_windows(void) {
  memset(&canary, 0, sizeof canary);
  memset(&stable, 0, sizeof stable);
}

/* n log-normal latencies (median, sigma), each multiplied by `slower`, added to out. */
static void add_lognormal(fl_hist_snap_t *out, size_t n, double median_ms, double sigma, double slower) {
  memset(&live, 0, sizeof live);
  for (size_t i = 0; i < n; i++) fl_hist_record(&live, lognormal_us(median_ms * slower, sigma));
  fl_hist_add_to(&live, out);
}

/* A variant's window: `requests` answers, `errors` of them ≥ 500; total durations log-normal around
 * 250 ms and times to first token around 80 ms, each scaled by its own slowdown factor. */
static void fill(fl_series_snap_t *w, uint64_t requests, uint64_t errors, double duration_slower, double ttft_slower) {
  memset(w, 0, sizeof *w);
  w->requests = requests;
  w->errors = errors;
  add_lognormal(&w->duration, requests, 250.0, 0.5, duration_slower);
  add_lognormal(&w->ttft, requests, 80.0, 0.6, ttft_slower);
}

static fl_rollout_spec_t spec_of(const char *json_text) {
  fl_rollout_spec_t s;
  char err[256] = "";
  json_error_t jerr;
  json_t *j = NULL;
  if (json_text) {
    j = json_loads(json_text, 0, &jerr);
    assert_non_null(j);
  }
  int rc = fl_rollout_spec_parse(j, &s, err, sizeof err);
  if (rc != 0) fprintf(stderr, "%s\n", err);
  assert_int_equal(rc, 0);
  json_decref(j);
  return s;
}

/* Judges canary against stable; the verdict returned and the one in the JSON must agree. */
static json_t *judge(const fl_rollout_spec_t *s, fl_verdict_t *v) {
  *v = (fl_verdict_t)-1;
  fl_evidence_t ev = {0};                    /* a step's first look */
  json_t *r = fl_analysis_run(s, &ev, &canary, &stable, NULL, v);
  assert_non_null(r);
  assert_string_equal(json_string_value(json_object_get(r, "verdict")), fl_verdict_name(*v));
  return r;
}

static json_t *check_of(json_t *result, const char *metric) {
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(result, "checks"), i, c) {
    if (strcmp(json_string_value(json_object_get(c, "metric")), metric) == 0) return c;
  }
  fail_msg("no check \"%s\" in the result", metric);
  return NULL;
}

static bool flag(json_t *check, const char *key) {
  json_t *b = json_object_get(check, key);
  assert_true(json_is_boolean(b));
  return json_is_true(b);
}

static double num(json_t *check, const char *key) {
  json_t *n = json_object_get(check, key);
  assert_true(json_is_number(n));
  return json_number_value(n);
}

static const char *verdict_of(json_t *check) { return json_string_value(json_object_get(check, "verdict")); }

/* ---- the spec ---- */

static void without_a_spec_the_defaults_apply(void **state) {
  fl_rollout_spec_t s = spec_of(NULL);
  static const uint32_t steps[] = {500, 1000, 2500, 5000, 10000};
  assert_int_equal(s.n_steps, 5);
  for (size_t i = 0; i < 5; i++) assert_int_equal(s.steps_bp[i], steps[i]);
  assert_int_equal(s.interval_ms, 60000);
  assert_int_equal(s.min_requests, 200);
  assert_int_equal(s.max_failures, 2);
  assert_true(s.confidence == 0.95);
  assert_int_equal(s.n_checks, 2);
  assert_int_equal(s.checks[0].kind, FL_CHECK_ERROR_RATE);
  assert_string_equal(s.checks[0].name, "error_rate");
  assert_true(s.checks[0].max_increase == 0.01);
  assert_true(isnan(s.checks[0].max_ratio) && isnan(s.checks[0].max));
  assert_int_equal(s.checks[1].kind, FL_CHECK_LATENCY);
  assert_string_equal(s.checks[1].name, "latency_p99");
  assert_true(s.checks[1].quantile == 0.99);
  assert_true(s.checks[1].max_ratio == 1.2);
  assert_true(isnan(s.checks[1].max_increase) && isnan(s.checks[1].max));
  /* an empty object means the same */
  fl_rollout_spec_t e = spec_of("{}");
  assert_int_equal(e.n_steps, 5);
  assert_int_equal(e.interval_ms, 60000);
  assert_int_equal(e.n_checks, 2);
}

static bool same_bound(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

static void assert_same_spec(const fl_rollout_spec_t *a, const fl_rollout_spec_t *b) {
  assert_int_equal(a->n_steps, b->n_steps);
  for (size_t i = 0; i < a->n_steps; i++) assert_int_equal(a->steps_bp[i], b->steps_bp[i]);
  assert_int_equal(a->interval_ms, b->interval_ms);
  assert_int_equal(a->min_requests, b->min_requests);
  assert_int_equal(a->max_failures, b->max_failures);
  assert_true(a->confidence == b->confidence);
  assert_int_equal(a->n_checks, b->n_checks);
  for (size_t i = 0; i < a->n_checks; i++) {
    const fl_check_t *x = &a->checks[i], *y = &b->checks[i];
    assert_int_equal(x->kind, y->kind);
    assert_string_equal(x->name, y->name);
    assert_true(x->quantile == y->quantile);
    assert_true(same_bound(x->max_increase, y->max_increase));
    assert_true(same_bound(x->max_ratio, y->max_ratio));
    assert_true(same_bound(x->max, y->max));
  }
}

static const char *FULL_SPEC =
    "{\"steps\": [1, 2.5, 20, 50, 100], \"interval\": \"2m\", \"min_requests\": 500, \"max_failures\": 3,"
    " \"confidence\": 0.99, \"checks\": ["
    "  {\"metric\": \"error_rate\", \"max_increase\": 0.005, \"max\": 0.05},"
    "  {\"metric\": \"latency_p95\", \"max_ratio\": 1.1},"
    "  {\"metric\": \"ttft_p50\", \"max_ratio\": 1.3, \"max\": 2},"
    "  {\"metric\": \"latency_per_token\", \"max_ratio\": 1.25}]}";

static void a_full_spec_round_trips_through_json(void **state) {
  fl_rollout_spec_t s = spec_of(FULL_SPEC);
  static const uint32_t steps[] = {100, 250, 2000, 5000, 10000};
  assert_int_equal(s.n_steps, 5);
  for (size_t i = 0; i < 5; i++) assert_int_equal(s.steps_bp[i], steps[i]);
  assert_int_equal(s.interval_ms, 120000);
  assert_int_equal(s.min_requests, 500);
  assert_int_equal(s.max_failures, 3);
  assert_true(s.confidence == 0.99);
  assert_int_equal(s.n_checks, 4);
  assert_int_equal(s.checks[0].kind, FL_CHECK_ERROR_RATE);
  assert_true(s.checks[0].max_increase == 0.005 && s.checks[0].max == 0.05 && isnan(s.checks[0].max_ratio));
  assert_int_equal(s.checks[1].kind, FL_CHECK_LATENCY);
  assert_true(s.checks[1].quantile == 0.95 && s.checks[1].max_ratio == 1.1 && isnan(s.checks[1].max));
  assert_int_equal(s.checks[2].kind, FL_CHECK_TTFT);
  assert_true(s.checks[2].quantile == 0.5 && s.checks[2].max_ratio == 1.3 && s.checks[2].max == 2.0);
  assert_int_equal(s.checks[3].kind, FL_CHECK_LATENCY_PER_TOKEN);
  assert_true(s.checks[3].max_ratio == 1.25);

  json_t *j = fl_rollout_spec_json(&s);
  assert_non_null(j);
  assert_true(json_number_value(json_object_get(j, "interval")) == 120.0);
  assert_true(json_number_value(json_array_get(json_object_get(j, "steps"), 1)) == 2.5);
  char *text = json_dumps(j, 0);        /* through text, as the store keeps it */
  fl_rollout_spec_t back = spec_of(text);
  assert_same_spec(&s, &back);
  free(text);
  json_decref(j);

  fl_rollout_spec_t d = spec_of(NULL), d_back;
  json_t *dj = fl_rollout_spec_json(&d);
  char err[256];
  assert_int_equal(fl_rollout_spec_parse(dj, &d_back, err, sizeof err), 0);
  assert_same_spec(&d, &d_back);
  json_decref(dj);
}

static void intervals_are_read_to_the_millisecond(void **state) {
  assert_int_equal(spec_of("{\"interval\": \"90s\"}").interval_ms, 90000);
  assert_int_equal(spec_of("{\"interval\": 45}").interval_ms, 45000);
  assert_int_equal(spec_of("{\"interval\": \"1500ms\"}").interval_ms, 1500);
  assert_int_equal(spec_of("{\"interval\": \"2.5s\"}").interval_ms, 2500);
  /* not one millisecond lost to floating point: 1001 / 1000 · 1000 is 1000.999… */
  assert_int_equal(spec_of("{\"interval\": \"1001ms\"}").interval_ms, 1001);
  assert_int_equal(spec_of("{\"interval\": 1.001}").interval_ms, 1001);
  fl_rollout_spec_t s = spec_of("{\"interval\": \"1001ms\"}");
  s.interval_ms = 1001;
  json_t *j = fl_rollout_spec_json(&s);
  fl_rollout_spec_t back;
  char err[256];
  assert_int_equal(fl_rollout_spec_parse(j, &back, err, sizeof err), 0);
  assert_int_equal(back.interval_ms, 1001);
  json_decref(j);
}

/* The spec is refused with FL_EINVAL and a message that contains every one of `names`. */
static void assert_refused(const char *json_text, const char *name, const char *name2) {
  json_error_t jerr;
  json_t *j = json_loads(json_text, 0, &jerr);
  assert_non_null(j);
  fl_rollout_spec_t s;
  char err[256] = "";
  assert_int_equal(fl_rollout_spec_parse(j, &s, err, sizeof err), FL_EINVAL);
  if (!strstr(err, name) || (name2 && !strstr(err, name2)))
    fail_msg("%s: the message \"%s\" should name \"%s\"%s%s", json_text, err, name, name2 ? " and " : "",
             name2 ? name2 : "");
  json_decref(j);
}

static void each_bad_spec_is_refused_naming_its_key(void **state) {
  assert_refused("{\"steps\": [10, 5, 50]}", "steps", NULL);
  assert_refused("{\"steps\": [10, 10]}", "steps", NULL);
  assert_refused("{\"steps\": [50, 150]}", "steps", NULL);
  assert_refused("{\"steps\": []}", "steps", NULL);
  assert_refused("{\"steps\": [0, 50]}", "steps", NULL);
  assert_refused("{\"interval\": \"5x\"}", "interval", NULL);
  assert_refused("{\"interval\": 0}", "interval", NULL);
  assert_refused("{\"interval\": \"0s\"}", "interval", NULL);
  assert_refused("{\"checks\": [{\"metric\": \"latency_p100\", \"max_ratio\": 1.2}]}", "latency_p100", NULL);
  assert_refused("{\"checks\": [{\"metric\": \"foo\", \"max\": 1}]}", "foo", NULL);
  assert_refused("{\"checks\": [{\"metric\": \"latency_p99\"}]}", "latency_p99", "max");
  assert_refused("{\"checks\": [{\"metric\": \"error_rate\", \"max_ratio\": 1.2}]}", "error_rate", "max_ratio");
  assert_refused("{\"checks\": [{\"metric\": \"latency_p99\", \"max_increase\": 0.1}]}", "latency_p99",
                 "max_increase");
  assert_refused("{\"checks\": [{\"max\": 1}]}", "metric", NULL);
  assert_refused("{\"confidence\": 1.0}", "confidence", NULL);
  assert_refused("{\"confidence\": 0.3}", "confidence", NULL);
  assert_refused("{\"min_requests\": 0}", "min_requests", NULL);
  assert_refused("{\"max_failures\": -1}", "max_failures", NULL);
  assert_refused("{\"checks\": [{\"metric\": \"nan_rate\", \"max_ratio\": 2}]}", "nan_rate", "max_ratio");
  assert_refused("{\"checks\": [{\"metric\": \"finish_reason_psi\", \"max\": 0.2}]}", "finish_reason_psi", NULL);
  assert_refused("{\"checks\": [{\"metric\": \"output_tokens_js\", \"max\": 0.1}]}", "output_tokens_js", NULL);
  assert_refused("{\"checks\": [{\"metric\": \"output_tokens_psi\", \"max_increase\": 0.1}]}", "output_tokens_psi",
                 "max_increase");
  assert_refused("{\"checks\": [{\"metric\": \"feedback_score\", \"max\": 0.5}]}", "feedback_score", "max_decrease");
  assert_refused("{\"checks\": [{\"metric\": \"nan_rate\", \"max_decrease\": 0.1}]}", "nan_rate", "max_decrease");
}

/* A typo must never fall back to a default silently: the spec is refused, naming the key. */
static void a_misspelt_or_senseless_spec_is_refused_not_ignored(void **state) {
  assert_refused("{\"stpes\": [1, 2]}", "stpes", "unknown key");
  assert_refused("{\"max_failure\": 5}", "max_failure", "unknown key");
  assert_refused("{\"check\": [{\"metric\": \"error_rate\", \"max\": 0.1}]}", "\"check\"", "unknown key");
  assert_refused("{\"checks\": [{\"metric\": \"latency_p99\", \"max_ratio\": 1.2, \"max_ratoi\": 2}]}", "max_ratoi",
                 "unknown key");
  assert_refused("{\"webhooks\": [{\"url\": \"http://127.0.0.1:9/h\", \"on\": [\"rollback\"]}]}", "webhooks",
                 "rolled_back");
  assert_refused("{\"webhooks\": [{\"url\": \"http://127.0.0.1:9/h\", \"events\": [\"step\"]}]}", "events",
                 "unknown key");
  assert_refused("{\"checks\": [{\"metric\": \"latency_p99\", \"max_ratio\": 0}]}", "latency_p99", "max_ratio");
  assert_refused("{\"checks\": [{\"metric\": \"latency_p99\", \"max_ratio\": -1}]}", "latency_p99", "max_ratio");
  assert_refused("{\"checks\": [{\"metric\": \"latency_p99\", \"max_ratio\": \"1.2\"}]}", "latency_p99", "max_ratio");
  assert_refused("{\"checks\": [{\"metric\": \"error_rate\", \"max_increase\": -0.01}]}", "error_rate",
                 "max_increase");
  assert_refused("{\"checks\": [{\"metric\": \"feedback_score\", \"max_decrease\": -1}]}", "feedback_score",
                 "max_decrease");
  assert_refused("{\"checks\": [{\"metric\": \"prompt_chars_psi\", \"max\": 0.2}]}", "prompt_chars_psi", "outputs");
  assert_refused("{\"checks\": [{\"metric\": \"input_0_ks\", \"max\": 0.1}]}", "input_0_ks", "outputs");
  assert_refused("{\"steps\": [5, 12.345, 50]}", "steps", "two decimals");
  json_t *j = json_loads("{\"interval\": \"60s\", \"checks\": [{\"metric\": \"nope\", \"max\": 1}]}", 0, NULL);
  fl_rollout_spec_t s;
  char err[256];
  assert_int_equal(fl_rollout_spec_parse(j, &s, err, sizeof err), FL_EINVAL);
  assert_string_equal(s.bad_key, "checks");           /* where the config's error points */
  json_decref(j);
  assert_int_equal(spec_of("{\"interval\": \"1h\"}").interval_ms, 3600000);
  assert_int_equal(spec_of("{\"steps\": [0.25, 12.5, 100]}").steps_bp[1], 1250);
}

/* ---- data quality, drift and feedback ---- */

static void data_quality_checks_parse_with_their_bounds(void **state) {
  fl_rollout_spec_t s = spec_of("{\"checks\": [{\"metric\": \"nan_rate\", \"max\": 0},"
                                "{\"metric\": \"empty_answer_rate\", \"max_increase\": 0.01},"
                                "{\"metric\": \"output_tokens_psi\", \"max\": 0.2},"
                                "{\"metric\": \"output_0_ks\", \"max\": 0.1},"
                                "{\"metric\": \"finish_reason_js\", \"max\": 0.1},"
                                "{\"metric\": \"feedback_score\", \"max_decrease\": 0.05}]}");
  assert_int_equal(s.n_checks, 6);
  assert_int_equal(s.checks[0].kind, FL_CHECK_DATA_RATE);
  assert_int_equal(s.checks[0].rate, fl_data_rate_find("nan_rate"));
  assert_true(s.checks[0].max == 0);
  assert_int_equal(s.checks[1].kind, FL_CHECK_DATA_RATE);
  assert_int_equal(s.checks[2].kind, FL_CHECK_DRIFT);
  assert_int_equal(s.checks[2].feature, FL_F_OUTPUT_TOKENS);
  assert_int_equal(s.checks[2].stat, 'p');
  assert_int_equal(s.checks[3].feature, FL_F_OUTPUT + 0);
  assert_int_equal(s.checks[3].stat, 'k');
  assert_int_equal(s.checks[4].feature, FL_F_FINISH);
  assert_int_equal(s.checks[4].stat, 'j');
  assert_int_equal(s.checks[5].kind, FL_CHECK_FEEDBACK);
  assert_true(s.checks[5].max_decrease == 0.05);
  json_t *j = fl_rollout_spec_json(&s);                 /* and back: the same checks */
  json_t *c5 = json_array_get(json_object_get(j, "checks"), 5);
  assert_true(json_real_value(json_object_get(c5, "max_decrease")) == 0.05);
  json_decref(j);
}

static void any_nan_fails_a_nan_rate_max_of_zero_and_none_passes(void **state) {
  fl_rollout_spec_t s = spec_of("{\"min_requests\": 10, \"checks\": [{\"metric\": \"nan_rate\", \"max\": 0}]}");
  clear_windows();
  canary.requests = stable.requests = 100;
  canary.data.values = 100, canary.data.nan = 1;
  stable.data.values = 100;
  fl_verdict_t v;
  json_t *r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_FAIL);
  assert_true(json_real_value(json_object_get(check_of(r, "nan_rate"), "canary")) == 0.01);
  json_decref(r);
  canary.data.nan = 0;
  json_decref(judge(&s, &v));
  assert_int_equal(v, FL_VERDICT_PASS);
  canary.data.values = 0;                               /* no numbers in the window: no evidence */
  json_decref(judge(&s, &v));
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
}

static void an_empty_answer_increase_fails_only_when_significant_and_beyond(void **state) {
  fl_rollout_spec_t s = spec_of("{\"min_requests\": 10, \"checks\": [{\"metric\": \"empty_answer_rate\", "
                                "\"max_increase\": 0.01}]}");
  clear_windows();
  canary.requests = stable.requests = 1000;
  canary.data.answers = stable.data.answers = 1000;
  canary.data.empty = 80, stable.data.empty = 10;       /* 8% against 1% */
  fl_verdict_t v;
  json_decref(judge(&s, &v));
  assert_int_equal(v, FL_VERDICT_FAIL);
  canary.data.empty = 15;                               /* 1.5%: too few answers to tell either way */
  json_decref(judge(&s, &v));
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  canary.data.answers = stable.data.answers = 100000;   /* 1.5% against 1% of many: within the bound */
  canary.data.empty = 1500, stable.data.empty = 1000;
  json_decref(judge(&s, &v));
  assert_int_equal(v, FL_VERDICT_PASS);
}

static void drift_fails_beyond_its_bound_when_its_test_agrees(void **state) {
  fl_rollout_spec_t s = spec_of("{\"min_requests\": 10, \"checks\": [{\"metric\": \"output_tokens_psi\", \"max\": 0.2},"
                                "{\"metric\": \"output_tokens_ks\", \"max\": 0.1}]}");
  clear_windows();
  canary.requests = stable.requests = 200;
  fl_drift_t d[FL_F_COUNT] = {0}, *tokens = &d[FL_F_OUTPUT_TOKENS];
  *tokens = (fl_drift_t){.n_a = 200, .n_b = 200, .psi = 0.5, .psi_test = {60, 1e-9}, .psi_bins = 10,
                         .ks = {0.4, 1e-6}};
  fl_verdict_t v;
  json_t *r = fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v);
  assert_int_equal(v, FL_VERDICT_FAIL);
  assert_string_equal(json_string_value(json_object_get(check_of(r, "output_tokens_psi"), "verdict")), "fail");
  assert_true(json_real_value(json_object_get(check_of(r, "output_tokens_psi"), "p_value")) == 1e-9);
  assert_string_equal(json_string_value(json_object_get(check_of(r, "output_tokens_ks"), "verdict")), "fail");
  json_decref(r);
  tokens->ks = (fl_test_t){0.4, 0.2};                   /* a large D from few values: not significant, */
  tokens->psi = 0.05;                                   /* so not a failure, but no pass either */
  r = fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  assert_string_equal(json_string_value(json_object_get(check_of(r, "output_tokens_psi"), "verdict")), "pass");
  assert_non_null(strstr(json_string_value(json_object_get(check_of(r, "output_tokens_ks"), "reason")),
                         "not significantly yet"));
  json_decref(r);
  tokens->ks = (fl_test_t){0.05, 0.9};                  /* both under their max */
  r = fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v);
  assert_int_equal(v, FL_VERDICT_PASS);
  json_decref(r);
  tokens->n_a = FL_DRIFT_MIN - 1;
  r = fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  assert_string_equal(json_string_value(json_object_get(check_of(r, "output_tokens_ks"), "reason")),
                      "fewer than 20 values on a side: 19 canary, 200 stable");
  json_decref(r);
  r = fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, NULL, &v);  /* no drift measured at all */
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  json_decref(r);
}

/* Issue 14: a PSI over its bound is a drift only when the chi-square test of its own bins says
 * the shares differ, and only once there are enough values for the bound to stand out of the
 * PSI that chance alone gives, (bins − 1)(1/n + 1/m); before that the check cannot tell. */
static void a_psi_is_judged_by_its_test_and_only_with_enough_values(void **state) {
  fl_rollout_spec_t s = spec_of("{\"min_requests\": 10, \"checks\": [{\"metric\": \"output_tokens_psi\", \"max\": 0.2}]}");
  clear_windows();
  canary.requests = stable.requests = 400;
  fl_drift_t d[FL_F_COUNT] = {0}, *tokens = &d[FL_F_OUTPUT_TOKENS];
  *tokens = (fl_drift_t){.n_a = 180, .n_b = 180, .psi = 0.3, .psi_test = {12, 0.2}, .psi_bins = 10};
  fl_verdict_t v;
  json_t *r = fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);         /* over 0.2, but as two equal samples may be: */
  json_decref(r);                                       /* no failure, and no pass over the bound */
  tokens->psi_test = (fl_test_t){NAN, NAN};             /* no test: no evidence either */
  json_decref(fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v));
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  tokens->psi = 0.1;                                    /* under the bound with enough values: a pass */
  json_decref(fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v));
  assert_int_equal(v, FL_VERDICT_PASS);
  tokens->psi = 0.3;
  tokens->psi_test = (fl_test_t){40, 1e-5};
  json_decref(fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v));
  assert_int_equal(v, FL_VERDICT_FAIL);

  tokens->n_a = 14, tokens->n_b = 30;                   /* fewer than 20: too few for any drift */
  r = fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  json_decref(r);
  tokens->n_a = 179, tokens->n_b = 2000;                /* noise 9·(1/179 + 1/2000) = 0.055 ≤ 0.1 */
  json_decref(fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v));
  assert_int_equal(v, FL_VERDICT_FAIL);
  tokens->n_a = 60, tokens->n_b = 90;                   /* noise 0.25 > 0.1: cannot tell */
  r = fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  json_t *c = check_of(r, "output_tokens_psi");
  assert_string_equal(json_string_value(json_object_get(c, "verdict")), "inconclusive");
  assert_string_equal(json_string_value(json_object_get(c, "reason")),
                      "too few values to tell a PSI of 0.2 from noise: 60 canary, 90 stable, need 180 each");
  json_decref(r);
  tokens->psi_bins = 4;                                 /* fewer distinct values, fewer bins: 60 do */
  tokens->n_a = tokens->n_b = 60;
  json_decref(fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, d, &v));
  assert_int_equal(v, FL_VERDICT_FAIL);
}

/* n scores of which `up` are +1 and the rest −1. */
static void scores(fl_data_snap_t *d, uint64_t n, uint64_t up) {
  d->feedback = n;
  d->feedback_sum = (double)up - (double)(n - up);
  d->feedback_sumsq = (double)n;
}

static void lower_feedback_fails_by_more_than_its_bound(void **state) {
  fl_rollout_spec_t s = spec_of("{\"min_requests\": 10, \"checks\": [{\"metric\": \"feedback_score\", "
                                "\"max_decrease\": 0.05}]}");
  clear_windows();
  canary.requests = stable.requests = 1000;
  scores(&canary.data, 400, 200);                       /* mean 0.0 */
  scores(&stable.data, 400, 300);                       /* mean 0.5 */
  fl_verdict_t v;
  json_t *r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_FAIL);
  assert_true(fabs(json_real_value(json_object_get(check_of(r, "feedback_score"), "stable")) - 0.5) < 1e-12);
  json_decref(r);
  scores(&canary.data, 400, 296);                       /* 0.48: within the bound, but 400 cannot show it */
  json_decref(judge(&s, &v));
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  scores(&canary.data, 20000, 14800);                   /* 0.48 of 20,000 against 0.5 of 20,000: shown */
  scores(&stable.data, 20000, 15000);
  json_decref(judge(&s, &v));
  assert_int_equal(v, FL_VERDICT_PASS);
  scores(&canary.data, FL_FEEDBACK_MIN - 1, 0);         /* too little feedback to judge */
  json_decref(judge(&s, &v));
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
}

static void a_window_diff_subtracts_the_data_counters_too(void **state) {
  static fl_series_snap_t a, b, w;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  a.data.samples = 10, a.data.nan = 2, a.data.shape_mismatch = 1, a.data.feedback = 3, a.data.feedback_sum = 1.5;
  b = a;
  b.data.samples = 25, b.data.nan = 7, b.data.shape_mismatch = 4, b.data.feedback = 5, b.data.feedback_sum = 0.5;
  fl_window_diff(&b, &a, &w);
  assert_int_equal(w.data.samples, 15);
  assert_int_equal(w.data.nan, 5);
  assert_int_equal(w.data.shape_mismatch, 3);
  assert_int_equal(w.data.feedback, 2);
  assert_true(w.data.feedback_sum == -1.0);
}

/* ---- too little traffic ---- */

static void too_little_traffic_is_inconclusive_whatever_the_numbers(void **state) {
  seed(1);
  fl_rollout_spec_t s = spec_of(NULL);               /* min_requests 200 */
  fl_verdict_t v;
  /* a canary that fails every request and is ten times slower, but has only 199 of them */
  fill(&canary, 199, 199, 10.0, 10.0);
  fill(&stable, 5000, 0, 1.0, 1.0);
  json_t *r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  assert_int_equal(json_array_size(json_object_get(r, "checks")), 0);
  json_decref(r);
  /* the same with the stable side short */
  fill(&canary, 5000, 5000, 10.0, 10.0);
  fill(&stable, 150, 0, 1.0, 1.0);
  r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  assert_int_equal(json_array_size(json_object_get(r, "checks")), 0);
  json_decref(r);
  /* exactly min_requests on each side is enough to judge */
  fill(&canary, 200, 200, 10.0, 10.0);
  fill(&stable, 200, 0, 1.0, 1.0);
  r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_FAIL);
  assert_int_equal(json_array_size(json_object_get(r, "checks")), 2);
  json_decref(r);
}

/* ---- error rate ---- */

static fl_verdict_t error_window(const fl_rollout_spec_t *s, uint64_t ce, uint64_t cn, uint64_t se, uint64_t sn,
                                 bool *significant, bool *beyond) {
  clear_windows();
  canary.requests = cn, canary.errors = ce;
  stable.requests = sn, stable.errors = se;
  fl_verdict_t v;
  json_t *r = judge(s, &v);
  json_t *c = check_of(r, "error_rate");
  assert_true(fabs(num(c, "canary") - (double)ce / (double)cn) < 1e-12);
  assert_true(fabs(num(c, "stable") - (double)se / (double)sn) < 1e-12);
  *significant = flag(c, "significant");
  *beyond = flag(c, "beyond_bound");
  assert_string_equal(verdict_of(c), fl_verdict_name(v));
  json_decref(r);
  return v;
}

static void a_canary_failing_more_often_fails_the_window(void **state) {
  fl_rollout_spec_t s = spec_of("{\"checks\": [{\"metric\": \"error_rate\", \"max_increase\": 0.01}]}");
  bool sig, beyond;
  /* 5% against 0.2%: significant and 4.8 points over */
  assert_int_equal(error_window(&s, 100, 2000, 4, 2000, &sig, &beyond), FL_VERDICT_FAIL);
  assert_true(sig && beyond);
  /* equal rates: neither */
  assert_int_equal(error_window(&s, 20, 2000, 20, 2000, &sig, &beyond), FL_VERDICT_PASS);
  assert_false(sig || beyond);
  /* a canary failing less often is never significantly worse */
  assert_int_equal(error_window(&s, 4, 2000, 100, 2000, &sig, &beyond), FL_VERDICT_PASS);
  assert_false(sig || beyond);
}

static void a_significant_increase_within_the_bound_passes(void **state) {
  fl_rollout_spec_t s = spec_of("{\"checks\": [{\"metric\": \"error_rate\", \"max_increase\": 0.01}]}");
  bool sig, beyond;
  /* 1.5% against 1% over 200,000 requests each: surely worse, but by half a point only, so not
   * significantly beyond the one-point bound (what "significant" tests) */
  assert_int_equal(error_window(&s, 3000, 200000, 2000, 200000, &sig, &beyond), FL_VERDICT_PASS);
  assert_false(sig);
  assert_false(beyond);
}

static void an_increase_beyond_the_bound_that_is_not_significant_waits_for_evidence(void **state) {
  fl_rollout_spec_t s =
      spec_of("{\"min_requests\": 50, \"checks\": [{\"metric\": \"error_rate\", \"max_increase\": 0.01}]}");
  bool sig, beyond;
  /* 2 of 50 against 0 of 50: four points over, but two errors prove nothing either way */
  assert_int_equal(error_window(&s, 2, 50, 0, 50, &sig, &beyond), FL_VERDICT_INCONCLUSIVE);
  assert_true(beyond);
  assert_false(sig);
}

static void three_errors_in_fifty_against_none_are_not_significant_nor_shown_within(void **state) {
  fl_rollout_spec_t s =
      spec_of("{\"min_requests\": 50, \"checks\": [{\"metric\": \"error_rate\", \"max_increase\": 0.01}]}");
  bool sig, beyond;
  /* six points over, yet chance: three errors among 100 requests all land on one side one time
   * in eight (Fisher's exact test: p = 0.121); the normal approximation is no guide at such counts */
  assert_int_equal(error_window(&s, 3, 50, 0, 50, &sig, &beyond), FL_VERDICT_INCONCLUSIVE);
  assert_true(beyond);
  assert_false(sig);
}

static void an_absolute_max_fails_even_without_significance(void **state) {
  fl_rollout_spec_t s = spec_of("{\"checks\": [{\"metric\": \"error_rate\", \"max\": 0.02}]}");
  bool sig, beyond;
  /* 3% on both sides: nothing significant, but the canary is over the ceiling */
  assert_int_equal(error_window(&s, 30, 1000, 30, 1000, &sig, &beyond), FL_VERDICT_FAIL);
  assert_false(sig);
  /* under the ceiling it passes */
  assert_int_equal(error_window(&s, 15, 1000, 30, 1000, &sig, &beyond), FL_VERDICT_PASS);
}

/* ---- query checks: a team's own metrics from Prometheus ---- */

static void a_query_check_is_written_with_its_query_and_bounds_that_fit_it(void **state) {
  fl_rollout_spec_t s = spec_of("{\"checks\": [{\"query\": \"sum(rate(x{v=\\\"{{canary}}\\\"}[1m]))\", \"max\": 0.01},"
                                "{\"metric\": \"biz\", \"query\": \"sum(y{v=\\\"{{version}}\\\"})\", \"max_ratio\": 1.1}]}");
  assert_int_equal(s.checks[0].kind, FL_CHECK_QUERY);
  assert_string_equal(s.checks[0].name, "query");
  assert_string_equal(s.checks[0].query, "sum(rate(x{v=\"{{canary}}\"}[1m]))");
  assert_string_equal(s.checks[1].name, "biz");
  assert_true(fl_spec_has_query(&s));
  assert_false(fl_spec_has_query(&(fl_rollout_spec_t){0}));
  json_t *back = fl_rollout_spec_json(&s);       /* the query survives the round trip */
  char *text = json_dumps(back, JSON_COMPACT);
  fl_rollout_spec_t again = spec_of(text);
  assert_string_equal(again.checks[1].query, s.checks[1].query);
  free(text);
  json_decref(back);
  static const char *const wrong[] = {
      "{\"checks\": [{\"query\": \"sum(x)\", \"max_ratio\": 1.1}]}",          /* nothing to compare with */
      "{\"checks\": [{\"query\": \"sum(x)\"}]}",                               /* no bound */
      "{\"checks\": [{\"query\": \"\", \"max\": 1}]}",                         /* empty */
      "{\"checks\": [{\"query\": \"sum(x{v=\\\"{{version}}\\\"})\", \"max_decrease\": 1}]}",
  };
  for (size_t i = 0; i < FL_ARRAY_LEN(wrong); i++) {
    json_t *j = json_loads(wrong[i], 0, NULL);
    fl_rollout_spec_t bad;
    char err[256];
    assert_int_equal(fl_rollout_spec_parse(j, &bad, err, sizeof err), FL_EINVAL);
    json_decref(j);
  }
}

static void a_query_without_a_value_never_passes_and_one_over_its_bound_fails(void **state) {
  fl_rollout_spec_t s = spec_of("{\"min_requests\": 10, \"checks\": [{\"metric\": \"biz\", "
                                "\"query\": \"sum(y{v=\\\"{{version}}\\\"})\", \"max_increase\": 0.05}]}");
  fl_verdict_t v;
  fill(&canary, 100, 0, 1, 1);
  fill(&stable, 100, 0, 1, 1);
  json_t *r = judge(&s, &v);                         /* no answer from Prometheus */
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  assert_non_null(strstr(json_string_value(json_object_get(r, "reason")), "query gave no value"));
  json_decref(r);
  canary.backend_known[0] = true, canary.backend[0] = 0.02;
  r = judge(&s, &v);                                 /* the canary's alone: nothing to compare with */
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  json_decref(r);
  stable.backend_known[0] = true, stable.backend[0] = 0.01;
  r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_PASS);
  json_decref(r);
  canary.backend[0] = 0.2;
  r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_FAIL);
  json_decref(r);
}

/* ---- latency and time to first token ---- */

static json_t *latency_window(const char *spec_json, const char *metric, uint64_t n, double duration_slower,
                              double ttft_slower, fl_verdict_t *v) {
  fl_rollout_spec_t s = spec_of(spec_json);
  fill(&canary, n, 0, duration_slower, ttft_slower);
  fill(&stable, n, 0, 1.0, 1.0);
  json_t *r = judge(&s, v);
  assert_string_equal(verdict_of(check_of(r, metric)), fl_verdict_name(*v));
  return r;
}

static void a_slower_canary_fails_its_latency_quantile(void **state) {
  static const char *spec = "{\"checks\": [{\"metric\": \"latency_p99\", \"max_ratio\": 1.2}]}";
  fl_verdict_t v;
  seed(11);
  /* 1.5 times slower, the same shape */
  json_t *r = latency_window(spec, "latency_p99", 2000, 1.5, 1.0, &v);
  json_t *c = check_of(r, "latency_p99");
  assert_int_equal(v, FL_VERDICT_FAIL);
  assert_true(flag(c, "significant") && flag(c, "beyond_bound"));
  double ratio = num(c, "canary") / num(c, "stable");
  assert_true(ratio > 1.3 && ratio < 1.7);
  assert_true(num(c, "p_value") < 1e-6);
  json_decref(r);
  /* 1.05 times slower over 50,000 requests each: certainly slower, but not beyond 1.2 */
  r = latency_window(spec, "latency_p99", 50000, 1.05, 1.0, &v);
  c = check_of(r, "latency_p99");
  assert_int_equal(v, FL_VERDICT_PASS);
  assert_false(flag(c, "significant"));
  assert_false(flag(c, "beyond_bound"));
  json_decref(r);
  /* the same distribution */
  r = latency_window(spec, "latency_p99", 5000, 1.0, 1.0, &v);
  assert_int_equal(v, FL_VERDICT_PASS);
  json_decref(r);
  /* the very same histogram: nothing to see */
  fl_rollout_spec_t s = spec_of(spec);
  fill(&stable, 3000, 0, 1.0, 1.0);
  canary = stable;
  r = judge(&s, &v);
  c = check_of(r, "latency_p99");
  assert_int_equal(v, FL_VERDICT_PASS);
  assert_true(num(c, "p_value") >= 0.5);
  assert_true(num(c, "canary") == num(c, "stable"));
  json_decref(r);
  /* a worse tail over few requests: p99 far beyond the ratio, but 2% of 2,000 answers slower is
   * not yet evidence against the canary */
  fill(&stable, 2000, 0, 1.0, 1.0);
  memset(&canary, 0, sizeof canary);
  canary.requests = 2000;
  memset(&live, 0, sizeof live);
  for (int i = 0; i < 2000; i++) fl_hist_record(&live, lognormal_us(250.0 * (uniform01() < 0.02 ? 3.0 : 1.0), 0.5));
  fl_hist_add_to(&live, &canary.duration);
  r = judge(&s, &v);
  c = check_of(r, "latency_p99");
  assert_true(flag(c, "beyond_bound"));
  assert_false(flag(c, "significant"));
  assert_int_equal(v, FL_VERDICT_PASS);
  json_decref(r);
  /* a faster canary */
  r = latency_window(spec, "latency_p99", 2000, 0.7, 1.0, &v);
  assert_int_equal(v, FL_VERDICT_PASS);
  assert_true(num(check_of(r, "latency_p99"), "p_value") > 0.99);
  json_decref(r);
}

static void latency_values_are_seconds_and_max_is_absolute(void **state) {
  fl_verdict_t v;
  seed(12);
  /* p50 of a 250 ms median, reported in seconds; a 0.2 s ceiling fails it with no difference */
  json_t *r = latency_window("{\"checks\": [{\"metric\": \"latency_p50\", \"max\": 0.2}]}", "latency_p50", 4000, 1.0,
                             1.0, &v);
  json_t *c = check_of(r, "latency_p50");
  assert_true(fabs(num(c, "stable") - 0.25) < 0.02);
  assert_int_equal(v, FL_VERDICT_FAIL);
  json_decref(r);
  r = latency_window("{\"checks\": [{\"metric\": \"latency_p50\", \"max\": 0.4}]}", "latency_p50", 4000, 1.0, 1.0, &v);
  assert_int_equal(v, FL_VERDICT_PASS);
  json_decref(r);
}

static void a_slower_first_token_fails_ttft_and_only_ttft(void **state) {
  static const char *spec = "{\"checks\": [{\"metric\": \"ttft_p99\", \"max_ratio\": 1.2},"
                            " {\"metric\": \"latency_p99\", \"max_ratio\": 1.2}]}";
  fl_verdict_t v;
  seed(13);
  /* the first token 1.5 times later, the whole answer as fast as stable */
  json_t *r = latency_window(spec, "ttft_p99", 2000, 1.0, 1.5, &v);
  json_t *c = check_of(r, "ttft_p99");
  assert_int_equal(v, FL_VERDICT_FAIL);
  assert_true(flag(c, "significant") && flag(c, "beyond_bound"));
  assert_true(num(c, "canary") / num(c, "stable") > 1.3);
  assert_true(num(c, "stable") < 0.5);          /* around 80 ms · e^(2.33·0.6): ttft, not duration */
  assert_string_equal(verdict_of(check_of(r, "latency_p99")), "pass");
  json_decref(r);
  /* 1.05 times later over 50,000 each: later, but not significantly beyond the ratio */
  r = latency_window(spec, "ttft_p99", 50000, 1.0, 1.05, &v);
  c = check_of(r, "ttft_p99");
  assert_int_equal(v, FL_VERDICT_PASS);
  assert_false(flag(c, "significant"));
  assert_false(flag(c, "beyond_bound"));
  json_decref(r);
  /* the same distribution */
  r = latency_window(spec, "ttft_p99", 5000, 1.0, 1.0, &v);
  assert_int_equal(v, FL_VERDICT_PASS);
  json_decref(r);
  /* slower answers do not show up as slower first tokens */
  r = latency_window(spec, "latency_p99", 2000, 1.5, 1.0, &v);
  assert_string_equal(verdict_of(check_of(r, "ttft_p99")), "pass");
  assert_string_equal(verdict_of(check_of(r, "latency_p99")), "fail");
  json_decref(r);
}

static void latency_per_token_compares_duration_per_completion_token(void **state) {
  fl_rollout_spec_t s = spec_of("{\"checks\": [{\"metric\": \"latency_per_token\", \"max_ratio\": 1.2}]}");
  fl_verdict_t v;
  seed(14);
  /* the same durations, but the canary writes 1/1.3 as many tokens: 1.3 times the time per token */
  fill(&stable, 2000, 0, 1.0, 1.0);
  canary = stable;
  stable.completion_tokens = 130000;
  canary.completion_tokens = 100000;
  json_t *r = judge(&s, &v);
  json_t *c = check_of(r, "latency_per_token");
  assert_int_equal(v, FL_VERDICT_FAIL);
  assert_true(fabs(num(c, "canary") / num(c, "stable") - 1.3) < 1e-9);
  assert_true(fabs(num(c, "stable") - stable.duration.sum_us / 1e6 / 130000.0) < 1e-12);
  assert_true(json_is_null(json_object_get(c, "p_value")));
  json_decref(r);
  /* longer answers that take proportionally longer are not penalised */
  fill(&canary, 2000, 0, 2.0, 1.0);
  canary.completion_tokens = 260000;
  r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_PASS);
  assert_true(fabs(num(check_of(r, "latency_per_token"), "canary") / num(check_of(r, "latency_per_token"), "stable") -
                   1.0) < 0.05);
  json_decref(r);
  /* no tokens on a side: nothing to divide by, the window says nothing */
  canary.completion_tokens = 0;
  r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  assert_string_equal(verdict_of(check_of(r, "latency_per_token")), "inconclusive");
  json_decref(r);
  canary.completion_tokens = 260000;
  stable.completion_tokens = 0;
  r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  json_decref(r);
  /* an inconclusive check does not hide a failing one */
  fl_rollout_spec_t both = spec_of("{\"checks\": [{\"metric\": \"latency_per_token\", \"max_ratio\": 1.2},"
                                   " {\"metric\": \"error_rate\", \"max_increase\": 0.01}]}");
  canary.errors = 500;
  r = judge(&both, &v);
  assert_int_equal(v, FL_VERDICT_FAIL);
  json_decref(r);
}

/* ---- no false alarms ---- */

static void equal_variants_almost_never_fail_a_window(void **state) {
  fl_rollout_spec_t s = spec_of(NULL);     /* the default checks, 95% confidence */
  seed(2024);
  unsigned failed = 0;
  for (int w = 0; w < 1000; w++) {
    fl_series_snap_t *sides[2] = {&canary, &stable};
    for (int i = 0; i < 2; i++) {
      fl_series_snap_t *x = sides[i];
      memset(x, 0, sizeof *x);
      memset(&live, 0, sizeof live);
      x->requests = 500;
      for (int k = 0; k < 500; k++) {
        x->errors += uniform01() < 0.01;
        fl_hist_record(&live, lognormal_us(300.0, 0.6));
      }
      fl_hist_add_to(&live, &x->duration);
    }
    fl_verdict_t v;
    json_t *r = fl_analysis_run(&s, &(fl_evidence_t){0}, &canary, &stable, NULL, &v);
    failed += v == FL_VERDICT_FAIL;
    json_decref(r);
  }
  assert_in_range(failed, 0, 2);
}

/* ---- the histogram rank test ---- */

/* The value a histogram stands a bucket for: the middle of the integers it holds (its lower edge
 * for the open top bucket). Checked against what fl_hist_quantile reports. */
static double bucket_value(unsigned index) {
  uint64_t lo, hi;
  fl_hist_range(index, &lo, &hi);
  return index == FL_HIST_BUCKETS - 1 ? (double)lo : (double)lo + (double)(hi - lo - 1) / 2.0;
}

static fl_hist_snap_t hist_c, hist_s, one;

static void compare_rank_tests(const uint64_t *c, size_t nc, const uint64_t *s, size_t ns) {
  double *raw_c = malloc((nc ? nc : 1) * sizeof *raw_c), *raw_s = malloc((ns ? ns : 1) * sizeof *raw_s);
  assert_true(raw_c && raw_s);
  memset(&hist_c, 0, sizeof hist_c);
  memset(&hist_s, 0, sizeof hist_s);
  memset(&live, 0, sizeof live);
  for (size_t i = 0; i < nc; i++) {
    fl_hist_record(&live, c[i]);
    raw_c[i] = bucket_value(fl_hist_index(c[i]));
  }
  fl_hist_add_to(&live, &hist_c);
  memset(&live, 0, sizeof live);
  for (size_t i = 0; i < ns; i++) {
    fl_hist_record(&live, s[i]);
    raw_s[i] = bucket_value(fl_hist_index(s[i]));
  }
  fl_hist_add_to(&live, &hist_s);
  fl_test_t h = fl_analysis_mann_whitney_hist(&hist_c, &hist_s);
  fl_test_t r = fl_stats_mann_whitney(raw_c, nc, raw_s, ns);
  if (!(fabs(h.statistic - r.statistic) <= 1e-12 * fmax(1.0, fabs(r.statistic)) &&
        fabs(h.p_value - r.p_value) <= 1e-12))
    fail_msg("histogram U %.17g p %.17g, raw U %.17g p %.17g", h.statistic, h.p_value, r.statistic, r.p_value);
  free(raw_c);
  free(raw_s);
}

static uint64_t mixed_us(double slower) {   /* a fifth exact (< 64 µs), the rest spread over decades */
  if (uniform01() < 0.2) return (uint64_t)(uniform01() * 64.0);
  return lognormal_us(5.0 * slower, 1.5);
}

static void the_histogram_rank_test_equals_the_raw_one_at_bucket_values(void **state) {
  /* the bucket values used below are the ones the histogram reports */
  for (unsigned i = 0; i < FL_HIST_BUCKETS; i += 7) {
    uint64_t lo, hi;
    fl_hist_range(i, &lo, &hi);
    memset(&one, 0, sizeof one);
    one.bucket[i] = one.count = 1;
    assert_true(fl_hist_quantile(&one, 0.5) == bucket_value(i));
  }
  enum { NC = 3000, NS = 2500 };
  static uint64_t c[NC], s[NS];
  seed(7);
  static const double slower[] = {1.0, 1.1, 0.9, 1.5};
  for (size_t k = 0; k < FL_ARRAY_LEN(slower); k++) {
    for (size_t i = 0; i < NC; i++) c[i] = mixed_us(slower[k]);
    for (size_t i = 0; i < NS; i++) s[i] = mixed_us(1.0);
    c[0] = UINT64_C(1) << 40;            /* the open top bucket */
    s[0] = UINT64_C(1) << 41;
    compare_rank_tests(c, NC, s, NS);
  }
  /* nothing but exact buckets: heavy ties, the values themselves */
  for (size_t i = 0; i < NC; i++) c[i] = (uint64_t)(uniform01() * 40.0) + 10;
  for (size_t i = 0; i < NS; i++) s[i] = (uint64_t)(uniform01() * 40.0);
  compare_rank_tests(c, NC, s, NS);
  compare_rank_tests(c, 1, s, 1);
  compare_rank_tests(c, 17, s, 5);
}

static void the_histogram_rank_test_with_an_empty_side_gives_p_one(void **state) {
  memset(&hist_c, 0, sizeof hist_c);
  memset(&hist_s, 0, sizeof hist_s);
  seed(8);
  add_lognormal(&hist_s, 1000, 100.0, 0.5, 1.0);
  fl_test_t t = fl_analysis_mann_whitney_hist(&hist_c, &hist_s);
  assert_true(t.p_value == 1.0 && t.statistic == 0.0);
  t = fl_analysis_mann_whitney_hist(&hist_s, &hist_c);
  assert_true(t.p_value == 1.0 && t.statistic == 0.0);
  memset(&hist_s, 0, sizeof hist_s);
  t = fl_analysis_mann_whitney_hist(&hist_c, &hist_s);
  assert_true(t.p_value == 1.0);
  /* and the analysis calls a latency check on an empty side inconclusive */
  fl_rollout_spec_t s = spec_of("{\"min_requests\": 10, \"checks\": [{\"metric\": \"ttft_p99\", \"max_ratio\": 1.2}]}");
  fill(&canary, 100, 0, 1.0, 1.0);
  fill(&stable, 100, 0, 1.0, 1.0);
  memset(&canary.ttft, 0, sizeof canary.ttft);   /* no streamed answers on the canary */
  fl_verdict_t v;
  json_t *r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  json_decref(r);
}

/* ---- windows from cumulative snapshots ---- */

static fl_hist_t live_duration, live_ttft, later_duration, later_ttft;
static fl_series_snap_t at_start, at_end, window, want;

static void a_window_holds_only_what_came_after_its_start(void **state) {
  seed(9);
  memset(&live_duration, 0, sizeof live_duration);
  memset(&live_ttft, 0, sizeof live_ttft);
  memset(&later_duration, 0, sizeof later_duration);
  memset(&later_ttft, 0, sizeof later_ttft);
  for (int i = 0; i < 300; i++) {                  /* before the window */
    fl_hist_record(&live_duration, exponential_us(400.0));
    fl_hist_record(&live_ttft, exponential_us(50.0));
  }
  memset(&at_start, 0, sizeof at_start);
  at_start.requests = 300, at_start.errors = 7, at_start.completion_tokens = 9000;
  fl_hist_add_to(&live_duration, &at_start.duration);
  fl_hist_add_to(&live_ttft, &at_start.ttft);
  for (int i = 0; i < 200; i++) {                  /* during it: much slower */
    uint64_t d = exponential_us(4000.0), t = exponential_us(500.0);
    fl_hist_record(&live_duration, d);
    fl_hist_record(&later_duration, d);
    fl_hist_record(&live_ttft, t);
    fl_hist_record(&later_ttft, t);
  }
  memset(&at_end, 0, sizeof at_end);
  at_end.requests = 500, at_end.errors = 19, at_end.completion_tokens = 15500;
  fl_hist_add_to(&live_duration, &at_end.duration);
  fl_hist_add_to(&live_ttft, &at_end.ttft);

  memset(&window, 0xAB, sizeof window);           /* whatever was there before is replaced */
  fl_window_diff(&at_end, &at_start, &window);
  assert_int_equal(window.requests, 200);
  assert_int_equal(window.errors, 12);
  assert_int_equal(window.completion_tokens, 6500);
  memset(&want, 0, sizeof want);
  fl_hist_add_to(&later_duration, &want.duration);
  fl_hist_add_to(&later_ttft, &want.ttft);
  assert_int_equal(window.duration.count, 200);
  assert_int_equal(window.duration.sum_us, want.duration.sum_us);
  assert_memory_equal(&window.duration, &want.duration, sizeof want.duration);
  assert_memory_equal(&window.ttft, &want.ttft, sizeof want.ttft);
  assert_true(fl_hist_quantile(&window.duration, 0.5) == fl_hist_quantile(&want.duration, 0.5));
  /* an empty window */
  fl_window_diff(&at_end, &at_end, &window);
  assert_int_equal(window.requests, 0);
  assert_int_equal(window.duration.count, 0);
  assert_true(fl_hist_quantile(&window.duration, 0.99) == 0.0);
}

/* ---- the record of a window ---- */

static void the_result_records_inputs_and_every_check(void **state) {
  fl_rollout_spec_t s = spec_of(FULL_SPEC);    /* error_rate, latency_p95, ttft_p50, latency_per_token */
  seed(10);
  fill(&canary, 20000, 200, 1.0, 1.0);        /* enough for equal variants to be shown within 0.5 point */
  fill(&stable, 24000, 240, 1.0, 1.0);
  canary.completion_tokens = 1000000;
  stable.completion_tokens = 1220000;
  fl_verdict_t v;
  json_t *r = judge(&s, &v);
  assert_true(json_is_string(json_object_get(r, "verdict")));
  static const char *sides[] = {"canary", "stable"};
  const fl_series_snap_t *snaps[] = {&canary, &stable};
  for (int i = 0; i < 2; i++) {
    json_t *in = json_object_get(r, sides[i]);
    assert_true(json_is_object(in));
    assert_int_equal(json_integer_value(json_object_get(in, "requests")), snaps[i]->requests);
    assert_int_equal(json_integer_value(json_object_get(in, "errors")), snaps[i]->errors);
    assert_int_equal(json_integer_value(json_object_get(in, "completion_tokens")), snaps[i]->completion_tokens);
  }
  json_t *checks = json_object_get(r, "checks");
  assert_int_equal(json_array_size(checks), 4);
  size_t i;
  json_t *c;
  json_array_foreach(checks, i, c) {
    assert_string_equal(json_string_value(json_object_get(c, "metric")), s.checks[i].name);
    assert_true(json_is_number(json_object_get(c, "canary")));
    assert_true(json_is_number(json_object_get(c, "stable")));
    json_t *p = json_object_get(c, "p_value");
    if (s.checks[i].kind == FL_CHECK_LATENCY_PER_TOKEN) {
      assert_true(json_is_null(p));
    } else {
      assert_true(json_is_number(p));
      assert_in_range((long)(json_number_value(p) * 1e6), 0, 1000000);
    }
    assert_true(json_is_boolean(json_object_get(c, "significant")));
    assert_true(json_is_boolean(json_object_get(c, "beyond_bound")));
    const char *cv = json_string_value(json_object_get(c, "verdict"));
    assert_non_null(cv);
    assert_true(strcmp(cv, "pass") == 0 || strcmp(cv, "fail") == 0 || strcmp(cv, "inconclusive") == 0);
  }
  /* equal variants: the error rates are the inputs' ratios and the window passes */
  assert_true(num(check_of(r, "error_rate"), "canary") == 0.01);
  assert_int_equal(v, FL_VERDICT_PASS);
  json_decref(r);
  assert_string_equal(fl_verdict_name(FL_VERDICT_PASS), "pass");
  assert_string_equal(fl_verdict_name(FL_VERDICT_FAIL), "fail");
  assert_string_equal(fl_verdict_name(FL_VERDICT_INCONCLUSIVE), "inconclusive");
}

/* ---- evidence across windows ---- */

static const char *LOW_TRAFFIC_SPEC =
    "{\"steps\": [10, 50, 100], \"interval\": \"2s\", \"min_requests\": 20,"
    " \"checks\": [{\"metric\": \"error_rate\", \"max_increase\": 0.01}]}";

/* The first case of the issue: 9 canary requests a window, 2 of them errors, against 81 clean
 * stable ones. Window by window nothing could be told; accumulated, the canary fails. */
static void windows_too_small_to_judge_add_up_until_the_canary_fails(void **state) {
  fl_rollout_spec_t s = spec_of(LOW_TRAFFIC_SPEC);
  fl_evidence_t ev = {0};
  uint32_t failures = 0;
  clear_windows();
  fl_move_t move = FL_MOVE_STAY;
  unsigned w = 0;
  for (; w < 30 && move == FL_MOVE_STAY; w++) {
    canary.requests += 9, canary.errors += 2;           /* the step's numbers so far */
    stable.requests += 81;
    fl_verdict_t v;
    json_t *r = fl_analysis_run(&s, &ev, &canary, &stable, NULL, &v);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "evidence"), "windows")), w + 1);
    if (canary.requests < 20) {
      assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
      assert_non_null(strstr(json_string_value(json_object_get(r, "reason")), "accumulating"));
    }
    json_decref(r);
    move = fl_analysis_move(&s, 0, &failures, v);
  }
  assert_int_equal(move, FL_MOVE_ROLL_BACK);
  assert_true(w <= 12);                                 /* about 100 canary requests */
  assert_true(ev.looks >= 2 && ev.looks < w);          /* not a test every window */
}

/* A healthy canary on the same traffic is not held for ever: once the evidence shows it within
 * the bound, the step passes. */
static void a_healthy_canary_at_low_traffic_passes_once_the_evidence_shows_it(void **state) {
  fl_rollout_spec_t s = spec_of("{\"steps\": [10, 50, 100], \"interval\": \"2s\", \"min_requests\": 20,"
                                " \"checks\": [{\"metric\": \"error_rate\", \"max_increase\": 0.05}]}");
  fl_evidence_t ev = {0};
  uint32_t failures = 0;
  clear_windows();
  fl_move_t move = FL_MOVE_STAY;
  for (unsigned w = 0; w < 100 && move == FL_MOVE_STAY; w++) {
    canary.requests += 9;
    stable.requests += 81;
    fl_verdict_t v;
    json_decref(fl_analysis_run(&s, &ev, &canary, &stable, NULL, &v));
    assert_int_not_equal(v, FL_VERDICT_FAIL);
    move = fl_analysis_move(&s, 0, &failures, v);
  }
  assert_int_equal(move, FL_MOVE_NEXT);
  assert_true(canary.requests <= 400);
}

/* Each look spends less, and all the looks of a rollout together never more than 1 − confidence. */
static void the_looks_of_a_rollout_spend_at_most_its_error_budget(void **state) {
  fl_rollout_spec_t s = spec_of(LOW_TRAFFIC_SPEC);      /* two steps to judge, one check */
  double alpha = 0, beta = 0;
  for (uint32_t k = 1; k <= 100000; k++) {
    assert_true(fl_analysis_look_alpha(&s, k) < fl_analysis_look_alpha(&s, k > 1 ? k - 1 : 1) || k == 1);
    alpha += fl_analysis_look_alpha(&s, k);
    beta += fl_analysis_look_beta(&s, k);
  }
  assert_true(alpha * 2 <= 0.05 + 1e-12);               /* over both steps */
  assert_true(alpha * 2 > 0.0499);
  assert_true(beta <= 0.05 + 1e-12);
  assert_true(fabs(fl_analysis_look_alpha(&s, 1) - 0.025 * 6 / (M_PI * M_PI)) < 1e-15);
}

/* A step that cannot reach min_requests within max_window holds and says so, once. */
static void a_step_without_a_verdict_by_max_window_holds_and_says_why(void **state) {
  fl_rollout_spec_t s = spec_of("{\"steps\": [10, 100], \"interval\": \"2s\", \"max_window\": \"6s\","
                                " \"min_requests\": 100, \"checks\": [{\"metric\": \"error_rate\", \"max_increase\": 0.01}]}");
  assert_int_equal(fl_spec_max_window_ms(&s), 6000);
  fl_evidence_t ev = {0};
  clear_windows();
  for (unsigned w = 1; w <= 4; w++) {
    canary.requests += 5;
    stable.requests += 45;
    fl_verdict_t v;
    json_t *r = fl_analysis_run(&s, &ev, &canary, &stable, NULL, &v);
    assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
    const char *why = json_string_value(json_object_get(r, "reason"));
    assert_int_equal(ev.held, w >= 3);
    assert_true((strncmp(why, "held: no verdict after", 22) == 0) == (w >= 3));
    char counts[64];
    snprintf(counts, sizeof counts, "%u canary and %u stable requests of the 100", 5 * w, 45 * w);
    assert_non_null(strstr(why, counts));
    json_decref(r);
  }
  fl_rollout_spec_t d = spec_of("{\"interval\": \"30s\"}");
  assert_int_equal(fl_spec_max_window_ms(&d), 300000);  /* 10 intervals by default */
}

/* A TTFT check on traffic without a streamed answer cannot be measured, and says so. */
static void a_ttft_check_without_streamed_requests_is_inconclusive_saying_so(void **state) {
  fl_rollout_spec_t s = spec_of("{\"min_requests\": 10, \"checks\": [{\"metric\": \"ttft_p95\", \"max_ratio\": 1.2}]}");
  seed(3);
  fill(&canary, 500, 0, 1.0, 1.0);
  fill(&stable, 500, 0, 1.0, 1.0);
  memset(&canary.ttft, 0, sizeof canary.ttft);
  memset(&stable.ttft, 0, sizeof stable.ttft);
  fl_verdict_t v;
  json_t *r = judge(&s, &v);
  assert_int_equal(v, FL_VERDICT_INCONCLUSIVE);
  assert_string_equal(json_string_value(json_object_get(check_of(r, "ttft_p95"), "reason")), "no streamed requests");
  assert_string_equal(json_string_value(json_object_get(r, "reason")), "ttft_p95: no streamed requests");
  json_decref(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(without_a_spec_the_defaults_apply),
      cmocka_unit_test(a_full_spec_round_trips_through_json),
      cmocka_unit_test(intervals_are_read_to_the_millisecond),
      cmocka_unit_test(each_bad_spec_is_refused_naming_its_key),
      cmocka_unit_test(a_misspelt_or_senseless_spec_is_refused_not_ignored),
      cmocka_unit_test(too_little_traffic_is_inconclusive_whatever_the_numbers),
      cmocka_unit_test(windows_too_small_to_judge_add_up_until_the_canary_fails),
      cmocka_unit_test(a_healthy_canary_at_low_traffic_passes_once_the_evidence_shows_it),
      cmocka_unit_test(the_looks_of_a_rollout_spend_at_most_its_error_budget),
      cmocka_unit_test(a_step_without_a_verdict_by_max_window_holds_and_says_why),
      cmocka_unit_test(a_ttft_check_without_streamed_requests_is_inconclusive_saying_so),
      cmocka_unit_test(a_canary_failing_more_often_fails_the_window),
      cmocka_unit_test(a_significant_increase_within_the_bound_passes),
      cmocka_unit_test(an_increase_beyond_the_bound_that_is_not_significant_waits_for_evidence),
      cmocka_unit_test(three_errors_in_fifty_against_none_are_not_significant_nor_shown_within),
      cmocka_unit_test(an_absolute_max_fails_even_without_significance),
      cmocka_unit_test(a_slower_canary_fails_its_latency_quantile),
      cmocka_unit_test(latency_values_are_seconds_and_max_is_absolute),
      cmocka_unit_test(a_slower_first_token_fails_ttft_and_only_ttft),
      cmocka_unit_test(latency_per_token_compares_duration_per_completion_token),
      cmocka_unit_test(equal_variants_almost_never_fail_a_window),
      cmocka_unit_test(the_histogram_rank_test_equals_the_raw_one_at_bucket_values),
      cmocka_unit_test(the_histogram_rank_test_with_an_empty_side_gives_p_one),
      cmocka_unit_test(a_window_holds_only_what_came_after_its_start),
      cmocka_unit_test(the_result_records_inputs_and_every_check),
      cmocka_unit_test(data_quality_checks_parse_with_their_bounds),
      cmocka_unit_test(any_nan_fails_a_nan_rate_max_of_zero_and_none_passes),
      cmocka_unit_test(an_empty_answer_increase_fails_only_when_significant_and_beyond),
      cmocka_unit_test(drift_fails_beyond_its_bound_when_its_test_agrees),
      cmocka_unit_test(a_psi_is_judged_by_its_test_and_only_with_enough_values),
      cmocka_unit_test(lower_feedback_fails_by_more_than_its_bound),
      cmocka_unit_test(a_window_diff_subtracts_the_data_counters_too),
      cmocka_unit_test(a_query_check_is_written_with_its_query_and_bounds_that_fit_it),
      cmocka_unit_test(a_query_without_a_value_never_passes_and_one_over_its_bound_fails),
  };
  return cmocka_run_group_tests_name("analysis", tests, NULL, NULL);
}
