/* test_promtext.c — the Prometheus text format as model servers write it: labels with escapes,
 * histograms, special values, timestamps, comments, and malformed lines skipped and counted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "promtext.h"

typedef struct {
  int n;
  char name[8][128];
  char labels[8][512];
  double value[8];
} got_t;

static void on_sample(void *ctx, const char *name, const fl_prom_label_t *l, size_t n, double v) {
  got_t *g = ctx;
  if (g->n == 8) return;
  snprintf(g->name[g->n], sizeof g->name[0], "%s", name);
  size_t off = 0;
  for (size_t i = 0; i < n; i++)
    off += (size_t)snprintf(g->labels[g->n] + off, sizeof g->labels[0] - off, "%s%s=%s", i ? "|" : "", l[i].name, l[i].value);
  g->value[g->n++] = v;
}

static int parse(const char *text, got_t *g) {
  memset(g, 0, sizeof *g);
  return fl_prom_parse(text, strlen(text), on_sample, g);
}

static void vllm_style_families_parse_with_their_labels(void **state) {
  got_t g;
  const char *text =
      "# HELP vllm:num_requests_running Number of requests currently running.\n"
      "# TYPE vllm:num_requests_running gauge\n"
      "vllm:num_requests_running{model_name=\"llama\"} 3.0\n"
      "# TYPE vllm:time_to_first_token_seconds histogram\n"
      "vllm:time_to_first_token_seconds_bucket{le=\"0.1\",model_name=\"llama\"} 5\n"
      "vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"llama\"} 9\n"
      "vllm:time_to_first_token_seconds_sum{model_name=\"llama\"} 1.25e-1\n"
      "up 1 1700000000000\n";
  assert_int_equal(parse(text, &g), 0);
  assert_int_equal(g.n, 5);
  assert_string_equal(g.name[0], "vllm:num_requests_running");
  assert_string_equal(g.labels[0], "model_name=llama");
  assert_true(g.value[0] == 3);
  assert_string_equal(g.labels[2], "le=+Inf|model_name=llama");
  assert_true(g.value[3] == 0.125);
  assert_string_equal(g.name[4], "up");          /* with a timestamp */
  assert_true(g.value[4] == 1);
}

static void escapes_special_values_and_blank_forms(void **state) {
  got_t g;
  const char *text = "a{path=\"C:\\\\dir\",msg=\"say \\\"hi\\\"\\nbye\",} +Inf\r\n"
                     "b -Inf\n  c  NaN  \nd{} 7\n\n   \n# just a comment\n";
  assert_int_equal(parse(text, &g), 0);
  assert_int_equal(g.n, 4);
  assert_string_equal(g.labels[0], "path=C:\\dir|msg=say \"hi\"\nbye");
  assert_true(isinf(g.value[0]) && g.value[0] > 0);
  assert_true(isinf(g.value[1]) && g.value[1] < 0);
  assert_true(isnan(g.value[2]));
  assert_true(g.value[3] == 7 && g.labels[3][0] == '\0');
}

static void malformed_lines_are_skipped_and_counted(void **state) {
  got_t g;
  const char *text = "ok 1\n9bad 1\nx{a=\"unterminated} 1\nx{a=\"v\"} \nx 1 2 3\nx{a=\"\\q\"} 1\nx 0x10\ny 2\n"
                     "x{:a=\"v\"} 1\n";
  assert_int_equal(parse(text, &g), 7);
  assert_int_equal(g.n, 2);
  assert_string_equal(g.name[0], "ok");
  assert_string_equal(g.name[1], "y");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(vllm_style_families_parse_with_their_labels),
      cmocka_unit_test(escapes_special_values_and_blank_forms),
      cmocka_unit_test(malformed_lines_are_skipped_and_counted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
