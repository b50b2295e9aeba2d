/* test_retire.c — reference-counted registries as a specification: a reload that names new
 * versions and addresses gives back the series and backends the old snapshot alone named, once
 * nothing holds that snapshot; a request still holding it keeps them; an address that stays keeps
 * its entry and health; a backend's id is reused only after every worker's pool has swept; and a
 * reused series id starts from zero, in the workers' counters and in the stats windows alike. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "retire.h"

/* ---- helpers ---- */

/* One route `name`: stable v1 on stable_addr, and a canary `version` on canary_addr (none when
 * version is NULL). */
static fl_conf_t *snapshot(const char *name, const char *stable_addr, const char *version, const char *canary_addr) {
  char yaml[512], err[512] = "";
  int n = snprintf(yaml, sizeof yaml, "routes:\n  - name: %s\n    stable: { version: v1, backends: [%s] }\n", name,
                   stable_addr);
  if (version)
    snprintf(yaml + n, sizeof yaml - (size_t)n, "    canary: { version: %s, backends: [%s], weight: 10 }\n", version,
             canary_addr);
  fl_conf_t *c = NULL;
  if (fl_conf_parse("t.yaml", yaml, strlen(yaml), &c, err, sizeof err) != 0) fail_msg("config: %s", err);
  assert_int_equal(fl_upstream_bind(c), 0);
  assert_int_equal(fl_metrics_bind(c), 0);
  return c;
}

/* What a reload does: the new snapshot is current, the old one is handed over, then collected. */
static fl_conf_t *reload(fl_conf_t *old, fl_conf_t *fresh) {
  fl_retire_add(old);
  fl_retire_collect();
  return fresh;
}

static void release(fl_conf_t *c) {
  fl_retire_add(c);
  fl_retire_collect();
  assert_int_equal(fl_retire_pending(), 0);
}

static unsigned series_taken(void) {
  unsigned s, b;
  fl_metrics_registry_size(&s, &b);
  return s;
}

static unsigned bseries_taken(void) {
  unsigned s, b;
  fl_metrics_registry_size(&s, &b);
  return b;
}

static const fl_variant_conf_t *canary(const fl_conf_t *c) { return &c->routes[0].variant[FL_CANARY]; }
static const fl_variant_conf_t *stable(const fl_conf_t *c) { return &c->routes[0].variant[FL_STABLE]; }

static int setup(void **state) {
  fl_retire_init(NULL, NULL, 0);
  return 0;
}

/* ---- tests ---- */

static void a_thousand_reloads_with_new_versions_and_addresses_leave_registries_as_large_as_one(void **state) {
  fl_conf_t *c = snapshot("chat", "127.0.0.1:9000", "c0", "127.0.0.1:9001");
  unsigned max_series_id = 0, max_backend_id = 0;
  for (unsigned i = 1; i <= 1000; i++) {
    char version[16], s_addr[32], c_addr[32];
    snprintf(version, sizeof version, "c%u", i);
    snprintf(s_addr, sizeof s_addr, "127.0.0.%u:9000", 2 + i % 200);
    snprintf(c_addr, sizeof c_addr, "127.0.0.%u:9001", 2 + i % 200);
    c = reload(c, snapshot("chat", s_addr, version, c_addr));
    if (series_taken() != 2 || bseries_taken() != 2 || fl_upstream_count() != 2)
      fail_msg("reload %u: %u series, %u backend series, %u backends taken; want 2 each", i, series_taken(),
               bseries_taken(), fl_upstream_count());
    max_series_id = FL_MAX(max_series_id, canary(c)->series);
    max_backend_id = FL_MAX(max_backend_id, canary(c)->bound[0]->id);
  }
  assert_true(max_series_id < 3);             /* ids come back: the old one is free when the next binds */
  assert_true(max_backend_id < 4);
  assert_int_equal(fl_retire_pending(), 0);
  release(c);
  assert_int_equal(series_taken(), 0);
  assert_int_equal(fl_upstream_count(), 0);
}

static void a_snapshot_a_request_still_holds_keeps_its_series_and_backends_until_it_ends(void **state) {
  fl_conf_t *old = snapshot("hold", "127.0.0.1:9100", "c1", "127.0.0.1:9101");
  fl_conf_ref(old);                            /* a request in flight on the old snapshot */
  fl_conf_t *c = reload(old, snapshot("hold", "127.0.0.1:9100", "c2", "127.0.0.1:9102"));
  assert_int_equal(fl_retire_pending(), 1);
  assert_true(fl_metrics_series_find("hold", FL_CANARY, "c1") >= 0);
  assert_int_equal(fl_upstream_count(), 3);
  char *text = fl_metrics_exposition(&(fl_metrics_src_t){0}, c);
  assert_non_null(strstr(text, "version=\"c1\""));   /* still counted while its request runs */
  free(text);
  fl_conf_unref(old);                          /* the request ends */
  fl_retire_collect();
  assert_int_equal(fl_retire_pending(), 0);
  assert_int_equal(fl_metrics_series_find("hold", FL_CANARY, "c1"), -1);
  assert_true(fl_metrics_series_find("hold", FL_CANARY, "c2") >= 0);
  assert_int_equal(fl_upstream_count(), 2);
  text = fl_metrics_exposition(&(fl_metrics_src_t){0}, c);
  assert_null(strstr(text, "version=\"c1\""));
  assert_null(strstr(text, "127.0.0.1:9101"));
  assert_non_null(strstr(text, "version=\"c2\""));
  free(text);
  release(c);
}

static void an_address_that_stays_keeps_its_entry_and_health(void **state) {
  fl_conf_t *c = snapshot("stay", "127.0.0.1:9200", "c1", "127.0.0.1:9201");
  fl_backend_t *kept = stable(c)->bound[0];
  unsigned kept_series = stable(c)->series, kept_gen = stable(c)->series_gen;
  for (int i = 0; i < FL_EJECT_AFTER; i++) fl_backend_report(kept, false, 1000);
  c = reload(c, snapshot("stay", "127.0.0.1:9200", "c2", "127.0.0.1:9202"));
  assert_ptr_equal(stable(c)->bound[0], kept);
  assert_false(fl_backend_available(stable(c)->bound[0], 1001));
  assert_int_equal(stable(c)->series, kept_series);      /* stable's counters go on */
  assert_int_equal(stable(c)->series_gen, kept_gen);
  release(c);
}

static void a_dropped_backend_is_freed_only_after_every_pool_has_swept(void **state) {
  fl_pools_t *pools[2] = {calloc(1, sizeof(fl_pools_t)), calloc(1, sizeof(fl_pools_t))};
  assert_non_null(pools[0]);
  assert_non_null(pools[1]);
  fl_retire_init(NULL, pools, 2);
  fl_conf_t *c = snapshot("sweep", "127.0.0.1:9300", "c1", "127.0.0.1:9301");
  unsigned dropped_id = canary(c)->bound[0]->id;
  c = reload(c, snapshot("sweep", "127.0.0.1:9300", "c2", "127.0.0.1:9302"));
  assert_int_equal(fl_upstream_count(), 3);    /* retiring: pools may hold idle connections to it */
  fl_pool_sweep(pools[0], 0, 60000);
  fl_retire_collect();
  assert_int_equal(fl_upstream_count(), 3);    /* one worker has not swept yet */
  fl_pool_sweep(pools[1], 0, 60000);
  fl_retire_collect();
  assert_int_equal(fl_upstream_count(), 2);
  c = reload(c, snapshot("sweep", "127.0.0.1:9300", "c3", "127.0.0.1:9303"));
  assert_int_equal(canary(c)->bound[0]->id, dropped_id);   /* the freed id is the next one given */
  fl_retire_init(NULL, NULL, 0);
  release(c);
  free(pools[0]);
  free(pools[1]);
}

static void an_address_named_again_before_it_is_freed_keeps_its_health(void **state) {
  fl_pools_t *pools[1] = {calloc(1, sizeof(fl_pools_t))};
  assert_non_null(pools[0]);
  fl_retire_init(NULL, pools, 1);
  fl_conf_t *c = snapshot("back", "127.0.0.1:9400", "c1", "127.0.0.1:9401");
  fl_backend_t *b = canary(c)->bound[0];
  for (int i = 0; i < FL_EJECT_AFTER; i++) fl_backend_report(b, false, 1000);
  c = reload(c, snapshot("back", "127.0.0.1:9400", "c2", "127.0.0.1:9402"));   /* 9401 retiring */
  c = reload(c, snapshot("back", "127.0.0.1:9400", "c3", "127.0.0.1:9401"));   /* and back */
  assert_ptr_equal(canary(c)->bound[0], b);
  assert_false(fl_backend_available(b, 1001));
  fl_pool_sweep(pools[0], 0, 60000);
  fl_retire_collect();
  assert_ptr_equal(canary(c)->bound[0], b);    /* named: never freed by the sweep */
  assert_int_equal(fl_upstream_count(), 2);
  fl_retire_init(NULL, NULL, 0);
  release(c);
  free(pools[0]);
}

static void a_reused_series_id_starts_from_zero_for_workers_and_windows(void **state) {
  fl_wmetrics_t *w = calloc(1, sizeof *w);
  assert_non_null(w);
  fl_metrics_src_t src = {&w, 1};
  fl_retire_init(&src, NULL, 0);
  fl_conf_t *c = snapshot("reuse", "127.0.0.1:9500", "a", "127.0.0.1:9501");
  unsigned id = canary(c)->series, gen = canary(c)->series_gen;
  fl_ctr_add(&fl_metrics_vstats(w, id)->codes[200], 5);     /* a worker answered 5 for version a */
  for (int i = 0; i < 2; i++) {
    fl_metrics_tick(&src);
    nanosleep(&(struct timespec){0, 5000000}, NULL);
  }
  c = reload(c, snapshot("reuse", "127.0.0.1:9500", "b", "127.0.0.1:9501"));   /* a's id is freed */
  assert_null(atomic_load(&w->vs[id]));
  c = reload(c, snapshot("reuse", "127.0.0.1:9500", "c", "127.0.0.1:9501"));   /* c takes it */
  assert_int_equal(canary(c)->series, id);
  assert_int_not_equal(canary(c)->series_gen, gen);
  fl_series_snap_t snap;
  fl_metrics_series(&src, id, &snap);
  assert_int_equal(snap.requests, 0);
  nanosleep(&(struct timespec){0, 5000000}, NULL);
  fl_metrics_tick(&src);
  json_t *stats = fl_metrics_stats_json(&src, c);
  json_t *v = json_array_get(json_object_get(json_array_get(json_object_get(stats, "routes"), 0), "variants"), 1);
  assert_string_equal(json_string_value(json_object_get(v, "version")), "c");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "totals"), "requests")), 0);
  json_t *windows = json_object_get(v, "windows");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(windows, "1m"), "requests")), 0);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(windows, "5m"), "requests")), 0);
  json_decref(stats);
  release(c);
  fl_retire_init(NULL, NULL, 0);
  fl_wmetrics_free(w);
}

static void a_load_that_fails_after_binding_gives_everything_back(void **state) {
  fl_conf_t *c = snapshot("fail", "127.0.0.1:9600", "c1", "127.0.0.1:9601");
  fl_retire_now(c);
  assert_int_equal(series_taken(), 0);
  assert_int_equal(bseries_taken(), 0);
  fl_retire_collect();                         /* backends go with the next collection */
  assert_int_equal(fl_upstream_count(), 0);
  fl_conf_t *never = NULL;                     /* never bound at all: nothing to give back */
  char err[256];
  const char *yaml = "routes:\n  - name: r\n    stable: { version: v1, backends: [127.0.0.1:9602] }\n";
  assert_int_equal(fl_conf_parse("t.yaml", yaml, strlen(yaml), &never, err, sizeof err), 0);
  fl_retire_now(never);
  assert_int_equal(fl_upstream_count(), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_thousand_reloads_with_new_versions_and_addresses_leave_registries_as_large_as_one),
      cmocka_unit_test(a_snapshot_a_request_still_holds_keeps_its_series_and_backends_until_it_ends),
      cmocka_unit_test(an_address_that_stays_keeps_its_entry_and_health),
      cmocka_unit_test(a_dropped_backend_is_freed_only_after_every_pool_has_swept),
      cmocka_unit_test(an_address_named_again_before_it_is_freed_keeps_its_health),
      cmocka_unit_test(a_reused_series_id_starts_from_zero_for_workers_and_windows),
      cmocka_unit_test(a_load_that_fails_after_binding_gives_everything_back),
  };
  int rc = cmocka_run_group_tests_name("retire", tests, setup, NULL);
  fl_retire_shutdown();
  fl_metrics_shutdown();
  return rc;
}
