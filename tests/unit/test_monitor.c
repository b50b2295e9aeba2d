/* test_monitor.c — the data monitor as a specification: a full ring drops and counts instead of
 * waiting, every sample pushed is read once, counters follow what the samples held, and drift is
 * computed over exactly the window asked for, each route keeps its own class names, a version
 * no longer served lets its values go, and a freed series' id starts afresh. Runs the real
 * monitor thread. */
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
    "    canary: { version: c1, backends: [127.0.0.1:9], weight: 50 }\n"
    "  - name: animals\n"
    "    stable: { version: a1, backends: [127.0.0.1:9] }\n";

/* The same but the numbers' canary is c2: c1 is no longer served. */
static const char YAML_C2[] =
    "data: { sample: 1, refresh: 1h }\n"
    "routes:\n"
    "  - name: numbers\n"
    "    stable: { version: s1, backends: [127.0.0.1:9] }\n"
    "    canary: { version: c2, backends: [127.0.0.1:9], weight: 50 }\n"
    "  - name: animals\n"
    "    stable: { version: a1, backends: [127.0.0.1:9] }\n";

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

/* Waits for room first: a full ring would drop s. */
static void push(fl_sample_t *s) {
  while (atomic_load(&ring->head) - atomic_load(&ring->tail) >= FL_SAMPLE_RING) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  assert_true(fl_sample_push(ring, s));
}

/* The canary's first prediction against stable's over [from, to]. */
static fl_drift_t prediction_drift(uint64_t from, uint64_t to, bool *set) {
  fl_drift_t d[FL_F_COUNT];
  bool is_set[FL_F_COUNT];
  fl_monitor_window_drift(series(FL_CANARY), series(FL_STABLE), from, to, NULL, d, is_set);
  if (set) *set = is_set[FL_F_OUTPUT + 0];
  return d[FL_F_OUTPUT + 0];
}

/* A KServe v1 exchange whose one prediction is `prediction`, ended at at_ms. */
static fl_sample_t *sample(unsigned series_id, uint64_t at_ms, double prediction, bool nan) {
  fl_sample_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  s->series = series_id;
  s->series_gen = fl_metrics_series_gen(series_id);
  s->quality = true;
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
      push(sample(series((fl_variant_id_t)v), at, value, false));
      pushed++;
    }
  }
  wait_for_samples(series(FL_CANARY), 600);
  fl_drift_t before = prediction_drift(t0, t1 - 1, NULL), after = prediction_drift(t1, t2, NULL),
             both = prediction_drift(t0, t2, NULL);
  assert_int_equal(before.n_a, 300);
  assert_int_equal(before.n_b, 300);
  assert_true(before.psi < 0.1 && before.ks.p_value > 0.01);
  assert_int_equal(after.n_a, 300);
  assert_true(after.psi > 1 && after.ks.statistic == 1.0 && after.ks.p_value < 1e-10);
  assert_int_equal(both.n_a, 600);
  fl_drift_t empty = prediction_drift(t2 + 1, t2 + 1000, NULL);   /* a window with nothing in it */
  assert_int_equal(empty.n_a, 0);
  assert_true(isnan(empty.psi) && isnan(empty.ks.p_value));
}

static fl_sample_t *labelled(unsigned series_id, const char *label) {
  fl_sample_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  s->series = series_id;
  s->series_gen = fl_metrics_series_gen(series_id);
  s->quality = true;
  s->status = 200;
  s->at_ms = fl_now_ms();
  char resp[96];
  snprintf(resp, sizeof resp, "{\"predictions\":[\"%s\"]}", label);
  assert_int_equal(fl_buf_str(&s->req, "{\"instances\":[[1,2]]}"), 0);
  assert_int_equal(fl_buf_str(&s->resp, resp), 0);
  return s;
}

static json_t *classes_of(unsigned series_id) {
  json_t *data = fl_monitor_series_json(series_id);
  json_t *classes = json_incref(json_object_get(data, "classes"));
  json_decref(data);
  return classes;
}

/* 50 classes on each of two routes: 100 in all, more than one table holds, yet every class of
 * either route keeps its own name. */
static void each_route_names_its_own_classes(void **state) {
  unsigned animals = conf->routes[1].variant[FL_STABLE].series;
  char name[32];
  for (int i = 0; i < 50; i++) {
    snprintf(name, sizeof name, "digit-%d", i);
    push(labelled(series(FL_STABLE), name));
    snprintf(name, sizeof name, "animal-%d", i);
    push(labelled(animals, name));
  }
  wait_for_samples(animals, 50);
  json_t *digits = classes_of(series(FL_STABLE)), *beasts = classes_of(animals);
  assert_null(json_object_get(digits, "other"));
  assert_null(json_object_get(beasts, "other"));
  assert_int_equal(json_integer_value(json_object_get(digits, "digit-49")), 1);
  assert_int_equal(json_integer_value(json_object_get(beasts, "animal-49")), 1);
  assert_null(json_object_get(beasts, "digit-0"));
  json_decref(digits);
  json_decref(beasts);
}

/* After a reload that replaces the canary version, the old one's values are let go: it has no
 * drift left to compare, while its counters stay. */
static void a_version_no_longer_served_lets_its_values_go(void **state) {
  bool set;
  prediction_drift(0, UINT64_MAX, &set);
  assert_true(set);
  unsigned old_canary = series(FL_CANARY);
  fl_conf_t *c2;
  char err[256];
  assert_int_equal(fl_conf_parse("monitor.yaml", YAML_C2, sizeof YAML_C2 - 1, &c2, err, sizeof err), 0);
  assert_int_equal(fl_metrics_bind(c2), 0);
  assert_int_equal(fl_monitor_reconfigure(c2), 0);
  fl_drift_t d[FL_F_COUNT];
  bool is_set[FL_F_COUNT];
  fl_monitor_window_drift(old_canary, series(FL_STABLE), 0, UINT64_MAX, NULL, d, is_set);
  assert_false(is_set[FL_F_OUTPUT + 0]);
  assert_true(isnan(d[FL_F_OUTPUT + 0].psi));
  push(sample(old_canary, fl_now_ms(), 1.0, false));    /* a straggler of the old version */
  wait_for_samples(old_canary, 601);
  fl_monitor_window_drift(old_canary, series(FL_STABLE), 0, UINT64_MAX, NULL, d, is_set);
  assert_false(is_set[FL_F_OUTPUT + 0]);
  fl_conf_unref(c2);
}

static void forget(unsigned series_id, void *ctx) { fl_monitor_forget(series_id); }

static fl_conf_t *bound(const char *yaml) {
  fl_conf_t *c;
  char err[256];
  assert_int_equal(fl_conf_parse("monitor.yaml", yaml, strlen(yaml), &c, err, sizeof err), 0);
  assert_int_equal(fl_metrics_bind(c), 0);
  return c;
}

/* Once no config names a version, its series is freed: the monitor forgets it, a sample of it
 * still queued is dropped, and the version that takes its id next starts from nothing. */
static void a_freed_series_is_forgotten_and_a_straggler_of_it_is_dropped(void **state) {
  assert_int_equal(fl_metrics_register_forget(forget, NULL), 0);
  fl_conf_t *a = bound("routes:\n  - name: gone\n    stable: { version: a, backends: [127.0.0.1:9] }\n");
  unsigned id = a->routes[0].variant[FL_STABLE].series;
  push(sample(id, fl_now_ms(), 1.0, false));
  wait_for_samples(id, 1);
  fl_sample_t *straggler = sample(id, fl_now_ms(), 1.0, false);    /* of version a, not yet read */
  fl_metrics_unbind(NULL, a);
  fl_data_snap_t d;
  fl_monitor_data(id, &d);
  assert_int_equal(d.samples, 0);
  fl_conf_t *b = bound("routes:\n  - name: gone\n    stable: { version: b, backends: [127.0.0.1:9] }\n");
  assert_int_equal(b->routes[0].variant[FL_STABLE].series, id);   /* the id is taken again */
  push(straggler);
  push(sample(id, fl_now_ms(), 2.0, false));                      /* version b's own */
  wait_for_samples(id, 1);
  struct timespec settle = {0, 200000000};
  nanosleep(&settle, NULL);
  fl_monitor_data(id, &d);
  assert_int_equal(d.samples, 1);
  fl_metrics_unbind(NULL, b);
  fl_conf_unref(a);
  fl_conf_unref(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_full_ring_drops_and_counts_and_every_kept_sample_is_read_once),
      cmocka_unit_test(drift_is_computed_over_exactly_the_window_asked_for),
      cmocka_unit_test(each_route_names_its_own_classes),
      cmocka_unit_test(a_version_no_longer_served_lets_its_values_go),
      cmocka_unit_test(a_freed_series_is_forgotten_and_a_straggler_of_it_is_dropped),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
