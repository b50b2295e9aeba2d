/* test_upstream.c — backend health and choice as a specification: when passive outlier
 * detection ejects a backend and for how long, how bound backends are shared, and the
 * round-robin pick that skips ejected and avoided ones. The libuv pools are not covered here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "upstream.h"

/* An arbitrary, non-zero start time: ejection must be relative to now_ms, not to 0. */
#define T0 1000000000ull

/* ---- helpers ---- */

static fl_backend_t *new_backend(void) {
  fl_backend_t *b = calloc(1, sizeof *b);
  assert_non_null(b);
  return b;
}

/* Reports n failures at now; asserts that only the last one ejects (when eject_on_last). */
static void fail_n(fl_backend_t *b, int n, uint64_t now, bool eject_on_last) {
  for (int i = 1; i <= n; i++) {
    bool ejected = fl_backend_report(b, false, now);
    bool want = eject_on_last && i == n;
    if (ejected != want) fail_msg("failure %d of %d at %llu: ejected=%d", i, n, (unsigned long long)now, ejected);
  }
}

static void expect_ejected_for(fl_backend_t *b, uint64_t now, uint64_t ms) {
  if (fl_backend_available(b, now)) fail_msg("available right after ejection");
  if (fl_backend_available(b, now + ms - 1)) fail_msg("available at +%llu, before the %llu ms ejection ends",
                                                      (unsigned long long)(ms - 1), (unsigned long long)ms);
  if (!fl_backend_available(b, now + ms)) fail_msg("not available at +%llu, when the ejection ends",
                                                   (unsigned long long)ms);
}

static fl_conf_t *load(const char *yaml) {
  char err[512] = "";
  fl_conf_t *c = NULL;
  int rc = fl_conf_parse("t.yaml", yaml, strlen(yaml), &c, err, sizeof err);
  if (rc != 0) fail_msg("config did not load (%d): %s", rc, err);
  return c;
}

/* The backend registry is process-wide and keeps health across snapshots, so each pick test
 * uses its own ports: a backend ejected by one test must not be seen by another. */
static fl_conf_t *load_three(unsigned base_port) {
  char yaml[512];
  snprintf(yaml, sizeof yaml,
           "routes:\n"
           "  - name: r\n"
           "    stable: { version: v1, backends: [127.0.0.1:%u, 127.0.0.1:%u, 127.0.0.1:%u] }\n",
           base_port, base_port + 1, base_port + 2);
  fl_conf_t *c = load(yaml);
  assert_int_equal(fl_upstream_bind(c), 0);
  return c;
}

static const fl_variant_conf_t *stable_of(const fl_conf_t *c) { return &c->routes[0].variant[FL_STABLE]; }

static fl_pools_t *new_pools(void) {
  fl_pools_t *p = calloc(1, sizeof *p);
  assert_non_null(p);
  return p;
}

/* ---- ejection ---- */

static void test_a_new_backend_is_available(void **state) {
  fl_backend_t *b = new_backend();
  assert_true(fl_backend_available(b, 0));
  assert_true(fl_backend_available(b, T0));
  free(b);
}

static void test_four_consecutive_failures_do_not_eject(void **state) {
  fl_backend_t *b = new_backend();
  fail_n(b, 4, T0, false);
  assert_true(fl_backend_available(b, T0));
  free(b);
}

static void test_the_fifth_consecutive_failure_ejects_for_exactly_30_seconds(void **state) {
  fl_backend_t *b = new_backend();
  fail_n(b, 5, T0, true);
  expect_ejected_for(b, T0, 30000);
  assert_int_equal(FL_EJECT_BASE_MS, 30000);
  free(b);
}

static void test_failures_spread_over_time_still_count_while_consecutive(void **state) {
  fl_backend_t *b = new_backend();
  for (int i = 0; i < 4; i++) assert_false(fl_backend_report(b, false, T0 + (uint64_t)i * 10000));
  assert_true(fl_backend_report(b, false, T0 + 40000));
  expect_ejected_for(b, T0 + 40000, 30000);
  free(b);
}

static void test_a_success_resets_the_failure_streak(void **state) {
  fl_backend_t *b = new_backend();
  fail_n(b, 4, T0, false);
  assert_false(fl_backend_report(b, true, T0));
  fail_n(b, 4, T0, false);
  assert_true(fl_backend_available(b, T0));
  assert_true(fl_backend_report(b, false, T0));   /* the fifth since the success */
  expect_ejected_for(b, T0, 30000);
  free(b);
}

static void test_the_streak_starts_again_after_an_ejection(void **state) {
  fl_backend_t *b = new_backend();
  fail_n(b, 5, T0, true);
  /* failures reported while ejected (requests already in flight) count towards the next one */
  fail_n(b, 4, T0 + 1, false);
  assert_false(fl_backend_available(b, T0 + 1));
  assert_true(fl_backend_available(b, T0 + 30000));
  free(b);
}

static void test_repeated_ejections_double_up_to_five_minutes(void **state) {
  static const uint64_t want[] = {30000, 60000, 120000, 240000, 300000, 300000, 300000};
  fl_backend_t *b = new_backend();
  uint64_t now = T0;
  for (size_t i = 0; i < FL_ARRAY_LEN(want); i++) {
    fail_n(b, 5, now, true);                 /* readmitted, fails again with no success between */
    expect_ejected_for(b, now, want[i]);
    now += want[i];
  }
  assert_int_equal(FL_EJECT_MAX_MS, 300000);
  free(b);
}

static void test_a_success_after_readmission_resets_the_doubling(void **state) {
  fl_backend_t *b = new_backend();
  uint64_t now = T0;
  fail_n(b, 5, now, true);
  expect_ejected_for(b, now, 30000);
  now += 30000;
  fail_n(b, 5, now, true);
  expect_ejected_for(b, now, 60000);
  now += 60000;
  assert_false(fl_backend_report(b, true, now));
  fail_n(b, 5, now, true);
  expect_ejected_for(b, now, 30000);
  free(b);
}

static void test_a_success_does_not_cut_an_ejection_short(void **state) {
  fl_backend_t *b = new_backend();
  fail_n(b, 5, T0, true);
  assert_false(fl_backend_report(b, true, T0 + 1));   /* a late answer from before the ejection */
  expect_ejected_for(b, T0, 30000);
  free(b);
}

/* ---- binding ---- */

static void test_routes_naming_the_same_address_share_one_backend(void **state) {
  fl_conf_t *c = load("routes:\n"
                      "  - name: a\n"
                      "    match: { path_prefix: /a/ }\n"
                      "    stable: { version: v1, backends: [127.0.0.1:7101, 127.0.0.1:7102] }\n"
                      "    canary: { version: v2, backends: [127.0.0.1:7103], weight: 10 }\n"
                      "  - name: b\n"
                      "    match: { path_prefix: /b/ }\n"
                      "    stable: { version: v1, backends: [localhost:7101, '[::1]:7101'] }\n");
  assert_int_equal(fl_upstream_bind(c), 0);
  const fl_variant_conf_t *as = &c->routes[0].variant[FL_STABLE], *ac = &c->routes[0].variant[FL_CANARY];
  const fl_variant_conf_t *bs = &c->routes[1].variant[FL_STABLE];
  assert_non_null(as->bound);
  assert_non_null(ac->bound);
  assert_non_null(bs->bound);
  fl_backend_t *b7101 = as->bound[0], *b7102 = as->bound[1], *b7103 = ac->bound[0];
  assert_string_equal(b7101->addr.text, "127.0.0.1:7101");
  assert_string_equal(b7102->addr.text, "127.0.0.1:7102");
  assert_string_equal(b7103->addr.text, "127.0.0.1:7103");
  assert_ptr_equal(bs->bound[0], b7101);          /* localhost:7101 is the same backend */
  assert_string_equal(bs->bound[1]->addr.text, "[::1]:7101");
  /* distinct addresses, distinct backends with distinct ids usable as array indexes */
  fl_backend_t *all[] = {b7101, b7102, b7103, bs->bound[1]};
  for (size_t i = 0; i < FL_ARRAY_LEN(all); i++) {
    assert_true(all[i]->id < FL_MAX_BACKENDS);
    for (size_t j = 0; j < i; j++) {
      assert_ptr_not_equal(all[i], all[j]);
      assert_int_not_equal(all[i]->id, all[j]->id);
    }
  }
  fl_conf_unref(c);
}

static void test_a_reloaded_snapshot_keeps_the_same_backends_and_their_health(void **state) {
  const char *yaml = "routes:\n  - name: r\n    stable: { version: v1, backends: [127.0.0.1:7111] }\n";
  fl_conf_t *old = load(yaml);
  assert_int_equal(fl_upstream_bind(old), 0);
  fl_backend_t *b = old->routes[0].variant[FL_STABLE].bound[0];
  fail_n(b, 5, T0, true);
  fl_conf_t *fresh = load(yaml);
  assert_int_equal(fl_upstream_bind(fresh), 0);
  assert_ptr_equal(fresh->routes[0].variant[FL_STABLE].bound[0], b);
  assert_false(fl_backend_available(fresh->routes[0].variant[FL_STABLE].bound[0], T0));
  fl_conf_unref(old);
  fl_conf_unref(fresh);
}

/* ---- picking ---- */

static void test_pick_goes_round_robin_over_the_variant(void **state) {
  fl_conf_t *c = load_three(7201);
  const fl_variant_conf_t *v = stable_of(c);
  fl_pools_t *p = new_pools();
  for (int i = 0; i < 9; i++) {
    fl_backend_t *got = fl_upstream_pick(p, v, NULL, T0);
    if (got != v->bound[i % 3]) fail_msg("pick %d: got %s, expected %s", i, got ? got->addr.text : "NULL",
                                         v->bound[i % 3]->addr.text);
  }
  free(p);
  fl_conf_unref(c);
}

static void test_pick_skips_an_ejected_backend_until_it_is_readmitted(void **state) {
  fl_conf_t *c = load_three(7211);
  const fl_variant_conf_t *v = stable_of(c);
  fl_pools_t *p = new_pools();
  fl_backend_t *b0 = v->bound[0], *b1 = v->bound[1], *b2 = v->bound[2];
  fail_n(b1, 5, T0, true);
  fl_backend_t *want[] = {b0, b2, b0, b2, b0, b2};
  for (size_t i = 0; i < FL_ARRAY_LEN(want); i++) {
    fl_backend_t *got = fl_upstream_pick(p, v, NULL, T0 + 1000);
    if (got != want[i]) fail_msg("pick %zu: got %s, expected %s", i, got ? got->addr.text : "NULL", want[i]->addr.text);
  }
  /* once readmitted it is picked again, within one round */
  bool seen = false;
  for (int i = 0; i < 3; i++) seen |= fl_upstream_pick(p, v, NULL, T0 + 30000) == b1;
  assert_true(seen);
  free(p);
  fl_conf_unref(c);
}

static void test_pick_skips_the_backend_to_avoid(void **state) {
  fl_conf_t *c = load_three(7221);
  const fl_variant_conf_t *v = stable_of(c);
  fl_pools_t *p = new_pools();
  unsigned count[3] = {0};
  for (int i = 0; i < 12; i++) {
    fl_backend_t *got = fl_upstream_pick(p, v, v->bound[1], T0);
    assert_non_null(got);
    assert_ptr_not_equal(got, v->bound[1]);
    count[got == v->bound[0] ? 0 : 2]++;
  }
  assert_int_equal(count[0], 6);   /* the others share the load evenly */
  assert_int_equal(count[2], 6);
  /* avoiding the only one left available leaves nothing */
  fail_n(v->bound[0], 5, T0, true);
  fail_n(v->bound[1], 5, T0, true);
  assert_null(fl_upstream_pick(p, v, v->bound[2], T0 + 1));
  assert_ptr_equal(fl_upstream_pick(p, v, NULL, T0 + 1), v->bound[2]);
  free(p);
  fl_conf_unref(c);
}

static void test_pick_returns_null_when_every_backend_is_ejected(void **state) {
  fl_conf_t *c = load_three(7231);
  const fl_variant_conf_t *v = stable_of(c);
  fl_pools_t *p = new_pools();
  for (int i = 0; i < 3; i++) fail_n(v->bound[i], 5, T0, true);
  assert_null(fl_upstream_pick(p, v, NULL, T0));
  assert_null(fl_upstream_pick(p, v, NULL, T0 + 29999));
  assert_non_null(fl_upstream_pick(p, v, NULL, T0 + 30000));
  free(p);
  fl_conf_unref(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_new_backend_is_available),
      cmocka_unit_test(test_four_consecutive_failures_do_not_eject),
      cmocka_unit_test(test_the_fifth_consecutive_failure_ejects_for_exactly_30_seconds),
      cmocka_unit_test(test_failures_spread_over_time_still_count_while_consecutive),
      cmocka_unit_test(test_a_success_resets_the_failure_streak),
      cmocka_unit_test(test_the_streak_starts_again_after_an_ejection),
      cmocka_unit_test(test_repeated_ejections_double_up_to_five_minutes),
      cmocka_unit_test(test_a_success_after_readmission_resets_the_doubling),
      cmocka_unit_test(test_a_success_does_not_cut_an_ejection_short),
      cmocka_unit_test(test_routes_naming_the_same_address_share_one_backend),
      cmocka_unit_test(test_a_reloaded_snapshot_keeps_the_same_backends_and_their_health),
      cmocka_unit_test(test_pick_goes_round_robin_over_the_variant),
      cmocka_unit_test(test_pick_skips_an_ejected_backend_until_it_is_readmitted),
      cmocka_unit_test(test_pick_skips_the_backend_to_avoid),
      cmocka_unit_test(test_pick_returns_null_when_every_backend_is_ejected),
  };
  return cmocka_run_group_tests_name("upstream", tests, NULL, NULL);
}
