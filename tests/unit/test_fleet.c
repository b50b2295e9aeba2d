/* test_fleet.c — a route's state as a cluster's decision log carries it: every field comes back
 * as it went, and a state that is malformed or out of range is refused rather than half taken. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "fleet.h"

static fl_route_state_t sample(void) {
  fl_route_state_t st = {.weight_bp = 3000, .config_weight_bp = 1000, .step = 2, .failures = 1,
                         .updated_ms = 1796471273025, .looks = 4};
  strcpy(st.route, "chat");
  strcpy(st.stable_version, "v1");
  strcpy(st.canary_version, "v2 \"quoted\"");
  strcpy(st.previous_stable, "v0");
  strcpy(st.rollout_state, "paused");
  strcpy(st.spec_json, "{\"steps\":[10,30,100]}");
  strcpy(st.pause_reason, "paused by hand (api)");
  return st;
}

static void test_every_field_comes_back_as_it_went(void **state) {
  fl_route_state_t in = sample(), out;
  json_t *j = fl_fleet_state_json(&in);
  char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  j = json_loads(text, 0, NULL);               /* through its text, as Redis keeps it */
  free(text);
  assert_int_equal(fl_fleet_state_parse(j, &out), 0);
  json_decref(j);
  assert_memory_equal(&in, &out, sizeof in);
}

static void test_a_missing_or_out_of_range_field_refuses_the_whole_state(void **state) {
  fl_route_state_t in = sample(), out;
  static const char *const wrong[][2] = {{"weight_bp", "10001"}, {"step", "-2"}, {"route", "7"},
                                         {"failures", "\"1\""}, {"looks", "null"}};
  for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
    json_t *j = fl_fleet_state_json(&in);
    json_object_set_new(j, wrong[i][0], json_loads(wrong[i][1], JSON_DECODE_ANY, NULL));
    assert_int_equal(fl_fleet_state_parse(j, &out), FL_EINVAL);
    json_object_del(j, wrong[i][0]);
    assert_int_equal(fl_fleet_state_parse(j, &out), FL_EINVAL);
    json_decref(j);
  }
  json_t *j = fl_fleet_state_json(&in);          /* a text longer than its field holds */
  char longer[80];
  memset(longer, 'v', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  json_object_set_new(j, "canary_version", json_string(longer));
  assert_int_equal(fl_fleet_state_parse(j, &out), FL_EINVAL);
  json_decref(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_field_comes_back_as_it_went),
      cmocka_unit_test(test_a_missing_or_out_of_range_field_refuses_the_whole_state),
  };
  return cmocka_run_group_tests_name("fleet", tests, NULL, NULL);
}
