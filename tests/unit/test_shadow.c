/* test_shadow.c — a rollout's shadow phase as a spec says it and as it is judged: its checks take
 * the shadow_* metrics only (and a step's checks never do), with the bounds that fit each; and the
 * verdict reads only the pairs compared since the phase began. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "shadow.h"

static fl_rollout_spec_t parse_ok(const char *text) {
  fl_rollout_spec_t s;
  char err[256] = "";
  json_t *j = json_loads(text, 0, NULL);
  assert_non_null(j);
  int rc = fl_rollout_spec_parse(j, &s, err, sizeof err);
  json_decref(j);
  if (rc != 0) fail_msg("%s: %s", text, err);
  return s;
}

static void refused(const char *text, const char *words) {
  fl_rollout_spec_t s;
  char err[256] = "";
  json_t *j = json_loads(text, 0, NULL);
  assert_non_null(j);
  assert_int_equal(fl_rollout_spec_parse(j, &s, err, sizeof err), FL_EINVAL);
  json_decref(j);
  if (!strstr(err, words)) fail_msg("%s: \"%s\" does not say \"%s\"", text, err, words);
}

static void a_shadow_phase_is_parsed_with_default_checks_and_written_back(void **state) {
  fl_rollout_spec_t s = parse_ok("{\"shadow\": {\"duration\": \"10m\"}}");
  assert_int_equal(s.shadow_ms, 600000);
  assert_int_equal(s.n_shadow_checks, 2);
  assert_string_equal(s.shadow_checks[0].name, "shadow_agreement");
  assert_true(s.shadow_checks[0].min == 0.9);
  assert_true(s.shadow_checks[1].measure == FL_SM_ERROR_RATE && s.shadow_checks[1].max_increase == 0.01);
  json_t *back = fl_rollout_spec_json(&s);
  fl_rollout_spec_t again;
  char err[256];
  assert_int_equal(fl_rollout_spec_parse(back, &again, err, sizeof err), 0);   /* what is saved reads back */
  json_decref(back);
  assert_int_equal(again.shadow_ms, 600000);
  assert_int_equal(again.n_shadow_checks, 2);
  assert_true(again.shadow_checks[0].min == 0.9);
  assert_int_equal(parse_ok("{}").shadow_ms, 0);                    /* no phase unless asked */
}

static void shadow_checks_and_step_checks_stay_apart_with_their_own_bounds(void **state) {
  refused("{\"checks\": [{\"metric\": \"shadow_agreement\", \"min\": 0.9}]}", "goes in shadow.checks");
  refused("{\"shadow\": {\"duration\": 60, \"checks\": [{\"metric\": \"latency_p99\", \"max_ratio\": 2}]}}",
          "shadow.checks take the shadow_* metrics only");
  refused("{\"shadow\": {\"duration\": 60, \"checks\": [{\"metric\": \"shadow_agreement\", \"max\": 1}]}}",
          "the other shadow checks min");
  refused("{\"shadow\": {\"duration\": 60, \"checks\": [{\"metric\": \"shadow_error_rate\", \"min\": 0.1}]}}",
          "shadow_error_rate takes max_increase or max");
  refused("{\"shadow\": {\"duration\": 60, \"checks\": [{\"metric\": \"shadow_agreement\", \"min\": 1.5}]}}",
          "min in [0, 1]");
  refused("{\"shadow\": {\"checks\": []}}", "shadow.duration");
  refused("{\"shadow\": {\"duration\": 60, \"length\": 3}}", "unknown key \"length\" in shadow");
  refused("{\"checks\": [{\"metric\": \"error_rate\", \"max\": 0.1, \"min\": 0}]}", "min bounds the shadow checks only");
}

/* n pairs of which `agree` agree, with the error counts given. */
static fl_shadow_agg_t pairs(uint64_t n, uint64_t agree, uint64_t primary_errors, uint64_t shadow_errors) {
  return (fl_shadow_agg_t){.pairs = n, .agree = agree, .exact = agree, .status_agree = n,
                           .primary_errors = primary_errors, .shadow_errors = shadow_errors};
}

static void the_verdict_reads_the_pairs_since_the_phase_began(void **state) {
  fl_rollout_spec_t s = parse_ok("{\"shadow\": {\"duration\": 60}}");
  json_t *report;
  char why[256];
  fl_shadow_agg_t before = pairs(1000, 0, 0, 0);                   /* an earlier canary disagreed */
  fl_shadow_agg_t now = pairs(1100, 95, 1, 2);                      /* 95 of these 100 agree */
  assert_true(fl_shadow_judge(s.shadow_checks, s.n_shadow_checks, &now, &before, &report, why, sizeof why));
  assert_int_equal(json_integer_value(json_object_get(report, "pairs")), 100);
  json_decref(report);
  fl_shadow_agg_t none = {0};
  assert_false(fl_shadow_judge(s.shadow_checks, s.n_shadow_checks, &now, &none, &report, why, sizeof why));
  assert_non_null(strstr(why, "shadow_agreement 0.086 below 0.900"));
  json_decref(report);
}

static void more_failed_mirrors_than_stable_errors_fail_the_phase(void **state) {
  fl_rollout_spec_t s = parse_ok("{\"shadow\": {\"duration\": 60}}");
  json_t *report;
  char why[256];
  fl_shadow_agg_t from = {0}, now = pairs(100, 100, 1, 4);         /* 4% of mirrors failed, 1% of stable */
  assert_false(fl_shadow_judge(s.shadow_checks, s.n_shadow_checks, &now, &from, &report, why, sizeof why));
  assert_non_null(strstr(why, "shadow_error_rate 0.0400 (stable 0.0100)"));
  json_t *checks = json_object_get(report, "checks");
  assert_true(json_is_true(json_object_get(json_array_get(checks, 0), "passed")));
  assert_true(json_is_false(json_object_get(json_array_get(checks, 1), "passed")));
  json_decref(report);
  now = pairs(100, 100, 3, 4);                                      /* stable failed as often: the canary is not worse */
  assert_true(fl_shadow_judge(s.shadow_checks, s.n_shadow_checks, &now, &from, &report, why, sizeof why));
  json_decref(report);
}

static void a_similarity_check_with_no_text_answers_fails_saying_so(void **state) {
  fl_rollout_spec_t s =
      parse_ok("{\"shadow\": {\"duration\": 60, \"checks\": [{\"metric\": \"shadow_text_similarity\", \"min\": 0.5}]}}");
  json_t *report;
  char why[256];
  fl_shadow_agg_t from = {0}, now = pairs(50, 50, 0, 0);          /* predictions only: no text compared */
  assert_false(fl_shadow_judge(s.shadow_checks, s.n_shadow_checks, &now, &from, &report, why, sizeof why));
  assert_non_null(strstr(why, "shadow_text_similarity: nothing to measure"));
  json_decref(report);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_shadow_phase_is_parsed_with_default_checks_and_written_back),
      cmocka_unit_test(shadow_checks_and_step_checks_stay_apart_with_their_own_bounds),
      cmocka_unit_test(the_verdict_reads_the_pairs_since_the_phase_began),
      cmocka_unit_test(more_failed_mirrors_than_stable_errors_fail_the_phase),
      cmocka_unit_test(a_similarity_check_with_no_text_answers_fails_saying_so),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
