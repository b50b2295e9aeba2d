/* test_resolver.c — specification of the backends' host names: what a snapshot lists for them,
 * when an unresolvable one is an error, how a change of addresses is found off the request path
 * (lookups on libuv's threadpool) and makes the current snapshot stale, what a failure of an
 * address triggers, and that names no config names are forgotten. Names come from a hosts
 * file the test writes (FLEDGE_HOSTS_FILE). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "resolver.h"
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char hosts_path[] = "/tmp/fledge-test-resolver-XXXXXX";
static uv_loop_t loop;

static void write_hosts(const char *text) {
  FILE *f = fopen(hosts_path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int setup(void **state) {
  int fd = mkstemp(hosts_path);
  if (fd < 0) return -1;
  close(fd);
  setenv("FLEDGE_HOSTS_FILE", hosts_path, 1);
  return uv_loop_init(&loop);
}

static int teardown(void **state) {
  fl_resolver_shutdown();
  unlink(hosts_path);
  return uv_loop_close(&loop);
}

/* Each test starts with no lookup left over, no names known and the loop's lookups enabled. */
static int fresh(void **state) {
  uv_run(&loop, UV_RUN_DEFAULT);
  fl_resolver_shutdown();
  fl_resolver_init(&loop);
  return 0;
}

static fl_conf_t *parse(const char *yaml) {
  char err[512] = "";
  fl_conf_t *c = NULL;
  if (fl_conf_parse("t.yaml", yaml, strlen(yaml), &c, err, sizeof err) != 0) fail_msg("parse: %s", err);
  return c;
}

static fl_conf_t *applied(const char *yaml) {
  fl_conf_t *c = parse(yaml);
  char err[512] = "";
  if (fl_resolver_apply(c, err, sizeof err) != 0) fail_msg("apply: %s", err);
  return c;
}

static const char *backend(const fl_conf_t *c, size_t i) {
  const fl_variant_conf_t *v = &c->routes[0].variant[FL_STABLE];
  return i < v->n_backends ? v->backends[i].text : "(none)";
}

/* Runs the lookups a tick started to their end. */
static void finish_lookups(void) { uv_run(&loop, UV_RUN_DEFAULT); }

static const char *ONE_NAME = "routes:\n  - name: r\n    stable: { version: v1, backends: [model.test:8000] }\n";

static void test_every_address_of_a_name_is_a_backend_with_the_name_s_port(void **state) {
  write_hosts("10.0.0.2 model.test\n10.0.0.1 model.test\n10.0.0.1 other.test\n10.0.0.3 other.test\n");
  fl_conf_t *c = applied("routes:\n  - name: r\n    stable:\n      version: v1\n"
                         "      backends: [10.0.0.3:8000, model.test:8000, other.test:8000, other.test:9000]\n");
  const fl_variant_conf_t *v = &c->routes[0].variant[FL_STABLE];
  assert_int_equal(v->n_backends, 5);
  assert_string_equal(backend(c, 0), "10.0.0.3:8000");         /* written */
  assert_string_equal(backend(c, 1), "10.0.0.1:8000");         /* model.test, sorted */
  assert_string_equal(backend(c, 2), "10.0.0.2:8000");
  assert_int_equal(v->names[0].first, 1);
  assert_int_equal(v->names[0].count, 2);
  assert_int_equal(v->names[1].count, 0);                      /* other.test:8000: both listed already */
  assert_string_equal(backend(c, 3), "10.0.0.1:9000");
  assert_string_equal(backend(c, 4), "10.0.0.3:9000");
  assert_int_equal(v->names[2].first, 3);
  assert_int_equal(v->names[2].count, 2);
  fl_conf_unref(c);
}

static void test_an_unresolvable_name_is_an_error_at_its_line_unless_lazy(void **state) {
  write_hosts("10.0.0.1 model.test\n");
  const char *yaml = "routes:\n  - name: r\n    stable: { version: v1, backends: [model.test:80, gone.test:81] }\n";
  fl_conf_t *c = parse(yaml);
  char err[512] = "";
  assert_int_equal(fl_resolver_apply(c, err, sizeof err), FL_EINVAL);
  if (strncmp(err, "t.yaml:3:54: backend gone.test:81: cannot resolve gone.test: gone.test is not in ", 81) != 0)
    fail_msg("got \"%s\"", err);
  assert_non_null(strstr(err, "resolve: lazy"));
  fl_conf_unref(c);
  c = applied("routes:\n  - name: r\n"
              "    stable: { version: v1, backends: [model.test:80, gone.test:81], resolve: lazy }\n");
  assert_int_equal(c->routes[0].variant[FL_STABLE].n_backends, 1);     /* serves on what it has */
  assert_string_equal(backend(c, 0), "10.0.0.1:80");
  fl_conf_unref(c);
  c = applied("resolve: lazy\nroutes:\n  - name: r\n    stable: { version: v1, backends: [gone.test:81] }\n");
  assert_int_equal(c->routes[0].variant[FL_STABLE].n_backends, 0);     /* nothing yet: 503 until found */
  fl_conf_unref(c);
}

static void test_a_known_name_is_not_looked_up_again_when_a_config_is_loaded(void **state) {
  write_hosts("10.0.0.1 model.test\n");
  fl_conf_t *first = applied(ONE_NAME);
  write_hosts("10.0.0.2 model.test\n");                         /* changed, but no tick has looked */
  fl_conf_t *second = applied(ONE_NAME);
  assert_string_equal(backend(second, 0), "10.0.0.1:8000");
  fl_conf_unref(first);
  fl_conf_unref(second);
}

static void test_a_change_found_by_a_tick_makes_the_snapshot_stale_until_a_fresh_one(void **state) {
  write_hosts("10.0.0.1 model.test\n");
  fl_conf_t *c = applied("resolve: { interval: 5s }\n" "routes:\n  - name: r\n"
                         "    stable: { version: v1, backends: [model.test:8000] }\n");
  uint64_t now = fl_now_ms();
  assert_false(fl_resolver_tick(c, now));                      /* not due: nothing starts */
  finish_lookups();
  assert_false(fl_resolver_tick(c, now + 1000));
  write_hosts("10.0.0.2 model.test\n10.0.0.3 model.test\n");
  assert_false(fl_resolver_tick(c, now + 5001));               /* due: the lookup starts ... */
  finish_lookups();                                            /* ... and ends on the loop */
  assert_true(fl_resolver_tick(c, now + 5002));                /* c lists the old address */
  assert_true(fl_resolver_tick(c, now + 5003));                /* until a fresh snapshot is made */
  fl_conf_t *fresh_conf = NULL;
  char err[512];
  assert_int_equal(fl_conf_reparse(c, &fresh_conf, err, sizeof err), 0);
  assert_int_equal(fl_resolver_apply(fresh_conf, err, sizeof err), 0);
  assert_int_equal(fresh_conf->routes[0].variant[FL_STABLE].n_backends, 2);
  assert_string_equal(backend(fresh_conf, 0), "10.0.0.2:8000");
  assert_string_equal(backend(fresh_conf, 1), "10.0.0.3:8000");
  assert_false(fl_resolver_tick(fresh_conf, now + 5004));
  fl_buf_t b = {0};
  fl_resolver_exposition(&b, fresh_conf, NULL);
  assert_int_equal(fl_buf_append(&b, "", 1), 0);
  assert_non_null(strstr(b.data, "fledge_backend_resolves_total{host=\"model.test\",result=\"ok\"} 2\n"));
  assert_non_null(strstr(b.data, "fledge_backend_address_changes_total{host=\"model.test\"} 1\n"));
  assert_non_null(strstr(b.data, "fledge_backend_addresses{host=\"model.test\"} 2\n"));
  fl_buf_free(&b);
  fl_conf_unref(fresh_conf);
  fl_conf_unref(c);
}

static void test_a_failed_lookup_keeps_the_last_addresses(void **state) {
  write_hosts("10.0.0.1 model.test\n");
  fl_conf_t *c = applied(ONE_NAME);
  write_hosts("");                                              /* the name is gone from DNS */
  uint64_t now = fl_now_ms();
  fl_resolver_tick(c, now + 30001);
  finish_lookups();
  assert_false(fl_resolver_tick(c, now + 30002));              /* nothing to publish: keep serving */
  fl_buf_t b = {0};
  fl_resolver_exposition(&b, c, NULL);
  assert_int_equal(fl_buf_append(&b, "", 1), 0);
  assert_non_null(strstr(b.data, "fledge_backend_resolves_total{host=\"model.test\",result=\"error\"} 1\n"));
  assert_non_null(strstr(b.data, "fledge_backend_addresses{host=\"model.test\"} 1\n"));
  fl_buf_free(&b);
  fl_conf_unref(c);
}

static void test_a_lazy_name_is_retried_within_seconds_and_served_once_found(void **state) {
  write_hosts("");
  fl_conf_t *c = applied("routes:\n  - name: r\n    stable: { version: v1, backends: [late.test:80], resolve: lazy }\n");
  uint64_t now = fl_now_ms();
  write_hosts("10.0.0.7 late.test\n");
  fl_resolver_tick(c, now + 1000);                             /* the first retry is 1 s after the load */
  finish_lookups();
  assert_true(fl_resolver_tick(c, now + 1001));
  fl_conf_unref(c);
}

static void test_a_failure_of_an_address_brings_the_next_lookup_forward(void **state) {
  write_hosts("127.0.0.1 moving.test\n");
  fl_conf_t *c = applied("resolve: { interval: 1h }\n"
                         "routes:\n  - name: r\n    stable: { version: v1, backends: [moving.test:7301] }\n");
  assert_int_equal(fl_upstream_bind(c), 0);
  uint64_t now = fl_now_ms();
  write_hosts("127.0.0.2 moving.test\n");
  fl_resolver_tick(c, now + 2000);                             /* an hour to go: nothing starts */
  finish_lookups();
  assert_false(fl_resolver_tick(c, now + 2001));
  fl_backend_report(c->routes[0].variant[FL_STABLE].bound[0], false, now);   /* a refused connect */
  fl_resolver_tick(c, now + 2002);                             /* noticed: due 1 s after the last lookup */
  finish_lookups();
  assert_true(fl_resolver_tick(c, now + 2004));
  fl_upstream_unbind(c);
  fl_upstream_collect(NULL, 0);
  fl_conf_unref(c);
}

static void test_names_no_config_names_are_forgotten(void **state) {
  write_hosts("10.0.0.1 model.test\n10.0.0.2 other.test\n");
  fl_conf_t *a = applied(ONE_NAME);
  fl_conf_t *b = applied("routes:\n  - name: r\n    stable: { version: v1, backends: [other.test:80] }\n");
  assert_int_equal(fl_resolver_count(), 2);
  fl_resolver_tick(b, fl_now_ms());                            /* b is current: model.test goes */
  assert_int_equal(fl_resolver_count(), 1);
  fl_buf_t out = {0};
  fl_resolver_exposition(&out, b, NULL);
  assert_int_equal(fl_buf_append(&out, "", 1), 0);
  assert_null(strstr(out.data, "model.test"));
  fl_buf_free(&out);
  for (int i = 0; i < 20; i++) {                              /* a name per reload: the table stays small */
    char yaml[200];
    snprintf(yaml, sizeof yaml, "routes:\n  - name: r\n    stable: { version: v1, backends: [n%d.test:80] }\n"
             "resolve: lazy\n", i);
    fl_conf_t *c = applied(yaml);
    fl_resolver_tick(c, fl_now_ms());
    assert_int_equal(fl_resolver_count(), 1);
    fl_conf_unref(c);
  }
  finish_lookups();
  fl_conf_unref(a);
  fl_conf_unref(b);
}

static void test_after_stop_no_lookup_starts(void **state) {
  write_hosts("10.0.0.1 model.test\n");
  fl_conf_t *c = applied(ONE_NAME);
  fl_resolver_stop();
  write_hosts("10.0.0.2 model.test\n");
  fl_resolver_tick(c, fl_now_ms() + 60000);
  finish_lookups();
  assert_false(fl_resolver_tick(c, fl_now_ms() + 60001));
  fl_conf_unref(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_every_address_of_a_name_is_a_backend_with_the_name_s_port, fresh),
      cmocka_unit_test_setup(test_an_unresolvable_name_is_an_error_at_its_line_unless_lazy, fresh),
      cmocka_unit_test_setup(test_a_known_name_is_not_looked_up_again_when_a_config_is_loaded, fresh),
      cmocka_unit_test_setup(test_a_change_found_by_a_tick_makes_the_snapshot_stale_until_a_fresh_one, fresh),
      cmocka_unit_test_setup(test_a_failed_lookup_keeps_the_last_addresses, fresh),
      cmocka_unit_test_setup(test_a_lazy_name_is_retried_within_seconds_and_served_once_found, fresh),
      cmocka_unit_test_setup(test_a_failure_of_an_address_brings_the_next_lookup_forward, fresh),
      cmocka_unit_test_setup(test_names_no_config_names_are_forgotten, fresh),
      cmocka_unit_test_setup(test_after_stop_no_lookup_starts, fresh),
  };
  return cmocka_run_group_tests_name("resolver", tests, setup, teardown);
}
