/* test_baseline.c — a route's input baseline as a specification: what a capture keeps, what a
 * baseline file may hold (numbers within float range, input features only), and that the JSON
 * form reads back as the same values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "baseline.h"

static void a_capture_keeps_numbers_and_leaves_out_what_a_float_cannot_hold(void **state) {
  fl_baseline_t b = {0};
  fl_baseline_add(&b, FL_F_INPUT + 0, 1.5);
  fl_baseline_add(&b, FL_F_INPUT + 0, 1e39);            /* would be +inf as a float */
  fl_baseline_add(&b, FL_F_INPUT + 0, -1e39);
  fl_baseline_add(&b, FL_F_INPUT + 0, NAN);
  fl_baseline_add(&b, FL_F_OUTPUT_TOKENS, 7);           /* not an input: never in a baseline */
  assert_int_equal(b.sample[FL_F_INPUT + 0].n, 1);
  assert_true(b.sample[FL_F_INPUT + 0].values[0] == 1.5);
  assert_int_equal(b.sample[FL_F_OUTPUT_TOKENS].n, 0);
  json_t *j = fl_baseline_json(&b);                     /* and reads back the same */
  fl_baseline_t back = {0};
  char err[200];
  assert_int_equal(fl_baseline_load(&back, j, err, sizeof err), 0);
  assert_int_equal(back.sample[FL_F_INPUT + 0].n, 1);
  assert_true(back.sample[FL_F_INPUT + 0].values[0] == 1.5);
  json_decref(j);
  fl_baseline_clear(&b);
  fl_baseline_clear(&back);
}

static void a_baseline_file_is_refused_naming_what_is_wrong(void **state) {
  static const struct { const char *json, *says; } BAD[] = {
      {"{\"input_0\": [1, 1e39]}", "\"input_0\"[1] is not a number within float range"},
      {"{\"input_0\": [1, \"2\"]}", "\"input_0\"[1] is not a number"},
      {"{\"output_tokens\": [1]}", "is not an input feature"},
  };
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    json_t *j = json_loads(BAD[i].json, 0, NULL);
    assert_non_null(j);
    fl_baseline_t b = {0};
    char err[200] = "";
    assert_int_equal(fl_baseline_load(&b, j, err, sizeof err), FL_EINVAL);
    if (!strstr(err, BAD[i].says)) fail_msg("%s: \"%s\" should say \"%s\"", BAD[i].json, err, BAD[i].says);
    assert_int_equal(b.state, FL_BASELINE_NONE);          /* unchanged */
    json_decref(j);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_capture_keeps_numbers_and_leaves_out_what_a_float_cannot_hold),
      cmocka_unit_test(a_baseline_file_is_refused_naming_what_is_wrong),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
