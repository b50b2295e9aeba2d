/* test_promql.c — a query check's placeholders: each filled with what it names, every time it
 * appears, and a text that would not fit is refused rather than cut. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "promql.h"

static void test_each_placeholder_is_filled_every_time(void **state) {
  char out[256];
  const char *q = "sum(rate(e{v=\"{{version}}\",r=\"{{route}}\"}[1m])) / sum(rate(e{v=\"{{canary}}\"}[1m])) "
                  "- {{stable}} {{version}} {{unknown}}";
  size_t n = fl_promql_expand(q, "chat", "v9", "v2", "v1", out, sizeof out);
  assert_string_equal(out, "sum(rate(e{v=\"v9\",r=\"chat\"}[1m])) / sum(rate(e{v=\"v2\"}[1m])) - v1 v9 {{unknown}}");
  assert_int_equal(n, strlen(out));
}

static void test_a_text_too_long_is_refused(void **state) {
  char out[16];
  assert_int_equal(fl_promql_expand("{{version}}{{version}}", "r", "0123456789", "c", "s", out, sizeof out), 0);
  assert_int_equal(fl_promql_expand("abc", "r", "v", "c", "s", out, 4), 3);
  assert_int_equal(fl_promql_expand("abcd", "r", "v", "c", "s", out, 4), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_each_placeholder_is_filled_every_time),
      cmocka_unit_test(test_a_text_too_long_is_refused),
  };
  return cmocka_run_group_tests_name("promql", tests, NULL, NULL);
}
