/* test_monitor.c — the data monitor as a specification: a full ring drops and counts instead of
 * waiting, every sample pushed is read once, counters follow what the samples held, and drift is
 * computed over exactly the window asked for. Runs the real monitor thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "metrics.h"
#include "monitor.h"

static const char YAML[] =
    "data: { sample: 1, refresh: 1h }\n"
    "routes:\n"
    "  - name: numbers\n"
    "    stable: { version: s1, backends: [127.0.0.1:9] }\n"
    "    canary: { version: c1, backends: [127.0.0.1:9], weight: 50 }\n";

static fl_conf_t *conf;
static fl_sample_ring_t *ring;

static int setup(void **state) {
  char err[256];
  if (fl_conf_parse("monitor.yaml", YAML, sizeof YAML - 1, &conf, err, sizeof err) != 0 || fl_metrics_bind(conf) != 0)
    return -1;
  ring = calloc(1, sizeof *ring);
  return ring ? 0 : -1;
}

static int teardown(void **state) {
  fl_monitor_stop();
  free(ring);
  fl_conf_unref(conf);
  return 0;
}

static unsigned series(fl_variant_id_t v) { return conf->routes[0].variant[v].series; }

/* A KServe v1 exchange whose one prediction is `prediction`, ended at at_ms. */
static fl_sample_t *sample(unsigned series_id, uint64_t at_ms, double prediction, bool nan) {
  fl_sample_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  s->series = series_id;
  s->status = 200;
  s->at_ms = at_ms;
  char resp[64];
  if (nan) snprintf(resp, sizeof resp, "{\"predictions\":[NaN]}");
  else snprintf(resp, sizeof resp, "{\"predictions\":[%.6f]}", prediction);
  assert_int_equal(fl_buf_str(&s->req, "{\"instances\":[[1,2]]}"), 0);
  assert_int_equal(fl_buf_str(&s->resp, resp), 0);
  return s;
}

static void wait_for_samples(unsigned series_id, uint64_t want) {
  fl_data_snap_t d;
  for (int i = 0; i < 400; i++) {
    fl_monitor_data(series_id, &d);
    if (d.samples >= want) break;
    struct timespec ten_ms = {0, 10000000};
    nanosleep(&ten_ms, NULL);
  }
  assert_int_equal(d.samples, want);
}

static void a_full_ring_drops_and_counts_and_every_kept_sample_is_read_once(void **state) {
  uint64_t now = fl_now_ms();
  for (unsigned i = 0; i < FL_SAMPLE_RING; i++) assert_true(fl_sample_push(ring, sample(series(FL_STABLE), now, 1.0, i % 4 == 0)));
  for (int i = 0; i < 3; i++) assert_false(fl_sample_push(ring, sample(series(FL_STABLE), now, 1.0, false)));
  assert_int_equal(atomic_load(&ring->dropped), 3);
  char err[128];
  static fl_sample_ring_t *rings[1];             /* alive until fl_monitor_stop, as the monitor needs */
  rings[0] = ring;
  assert_int_equal(fl_monitor_start(conf, rings, 1, err, sizeof err), 0);
  assert_int_equal(fl_monitor_dropped(), 3);
  wait_for_samples(series(FL_STABLE), FL_SAMPLE_RING);
  fl_data_snap_t d;
  fl_monitor_data(series(FL_STABLE), &d);
  assert_int_equal(d.values, FL_SAMPLE_RING);
  assert_int_equal(d.nan, FL_SAMPLE_RING / 4);
  assert_int_equal(d.input_values, 2 * FL_SAMPLE_RING);
  assert_int_equal(d.unparsed, 0);
  fl_monitor_data(series(FL_CANARY), &d);
  assert_int_equal(d.samples, 0);
}

/* Canary and stable alike up to t1, then the canary's predictions jump by 10. */
static void drift_is_computed_over_exactly_the_window_asked_for(void **state) {
  uint64_t t0 = fl_now_ms(), t1 = t0 + 30000, t2 = t0 + 60000;
  unsigned long long x = 12345;
  int pushed = 0;
  for (int i = 0; i < 600; i++) {
    uint64_t at = i < 300 ? t0 + (uint64_t)i * 100 : t1 + (uint64_t)(i - 300) * 100;
    for (int v = 0; v < 2; v++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      double value = (double)(x >> 40) / (double)(1ull << 24) + (v == FL_CANARY && i >= 300 ? 10 : 0);
      while (!fl_sample_push(ring, sample(series((fl_variant_id_t)v), at, value, false))) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
      }
      pushed++;
    }
  }
  wait_for_samples(series(FL_CANARY), 600);
  fl_drift_t before, after, both;
  fl_monitor_drift(series(FL_CANARY), series(FL_STABLE), FL_F_OUTPUT + 0, t0, t1 - 1, &before);
  fl_monitor_drift(series(FL_CANARY), series(FL_STABLE), FL_F_OUTPUT + 0, t1, t2, &after);
  fl_monitor_drift(series(FL_CANARY), series(FL_STABLE), FL_F_OUTPUT + 0, t0, t2, &both);
  assert_int_equal(before.n_a, 300);
  assert_int_equal(before.n_b, 300);
  assert_true(before.psi < 0.1 && before.ks.p_value > 0.01);
  assert_int_equal(after.n_a, 300);
  assert_true(after.psi > 1 && after.ks.statistic == 1.0 && after.ks.p_value < 1e-10);
  assert_int_equal(both.n_a, 600);
  fl_drift_t empty;                                     /* a window with nothing in it */
  fl_monitor_drift(series(FL_CANARY), series(FL_STABLE), FL_F_OUTPUT + 0, t2 + 1, t2 + 1000, &empty);
  assert_int_equal(empty.n_a, 0);
  assert_true(isnan(empty.psi) && isnan(empty.ks.p_value));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_full_ring_drops_and_counts_and_every_kept_sample_is_read_once),
      cmocka_unit_test(drift_is_computed_over_exactly_the_window_asked_for),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
