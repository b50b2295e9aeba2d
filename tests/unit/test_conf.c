/* test_conf.c — specification of the configuration loader: what a valid file turns
 * into, and the exact FILE:LINE:COL message each kind of mistake produces. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char EXAMPLE[] =
  "listen: 127.0.0.1:8080\n"
  "workers: auto\n"
  "admin:\n"
  "  listen: 127.0.0.1:9090\n"
  "trusted_cidrs: [127.0.0.0/8]\n"
  "geoip: { mmdb: /path/x.mmdb, header: CF-IPCountry }\n"
  "timeouts: { connect: 2s, header: 10s, first_byte: 60s, idle: 60s, drain: 30s }\n"
  "limits: { header_bytes: 65536, headers: 100, body_bytes: 104857600, inspect_body_bytes: 1048576 }\n"
  "response_headers: true\n"
  "routes:\n"
  "  - name: chat\n"
  "    match: { path_prefix: /v1/, host: API.example.com }\n"
  "    user_key: [header:X-User-Id, json:user, cookie:uid, query:uid, ip]\n"
  "    salt: chat-2024\n"
  "    segment_header: X-User-Segment\n"
  "    stable:\n"
  "      version: v1\n"
  "      model: llama-3-8b        # optional\n"
  "      backends: [127.0.0.1:9001]\n"
  "    canary:\n"
  "      version: v2\n"
  "      backends: [127.0.0.1:9002, \"[::1]:9003\"]\n"
  "      weight: 20\n"
  "    rules:\n"
  "      - match: { header: { X-Version: v2 } }\n"      /* line 25 */
  "        variant: canary\n"
  "      - match: { header_regex: { user-agent: \"^beta-\" }, cidr: [10.0.0.0/8] }\n"
  "        variant: stable\n"
  "      - match: { cookie: { canary: \"1\" } }\n"
  "        variant: canary\n"
  "      - match: { query: { v: \"2\" } }\n"
  "        variant: canary\n"
  "      - match: { country: [de, FR] }\n"
  "        variant: canary\n"
  "      - match: { segment: [beta, staff] }\n"
  "        variant: canary\n";

/* The smallest valid route, used as the base of most cases below (lines 1-3). */
#define ROUTE "routes:\n  - name: r\n    stable: { version: v1, backends: [127.0.0.1:9001] }\n"

static fl_conf_t *parse_ok(const char *yaml) {
  char err[512] = "";
  fl_conf_t *c = NULL;
  int rc = fl_conf_parse("t.yaml", yaml, strlen(yaml), &c, err, sizeof err);
  if (rc != 0) fail_msg("expected the config to load, got %d: %s", rc, err);
  assert_non_null(c);
  return c;
}

/* The message must be exactly "t.yaml:LINE:COL: " followed by text starting with `message`. */
static void expect_error_at(const char *yaml, const char *where, const char *message) {
  char err[512] = "", want[512];
  fl_conf_t *c = (fl_conf_t *)0x1;
  int rc = fl_conf_parse("t.yaml", yaml, strlen(yaml), &c, err, sizeof err);
  snprintf(want, sizeof want, "t.yaml:%s: %s", where, message);
  if (rc != FL_EINVAL || strncmp(err, want, strlen(want)) != 0)
    fail_msg("wanted rc %d and \"%s...\"\n   got rc %d and \"%s\"\nfor\n%s", FL_EINVAL, want, rc, err, yaml);
  assert_null(c);
}

static const fl_cond_t *cond(const fl_route_t *r, size_t rule, size_t i) {
  assert_true(rule < r->n_rules);
  assert_true(i < r->rules[rule].n_conds);
  return &r->rules[rule].conds[i];
}

/* ---------- what a valid file turns into ---------- */

static void example_top_level(void **state) {
  fl_conf_t *c = parse_ok(EXAMPLE);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  assert_int_equal(atomic_load(&c->refs), 1);
  assert_string_equal(c->path, "t.yaml");
  assert_string_equal(c->listens[0].addr.text, "127.0.0.1:8080");
  assert_int_equal(c->n_listens, 1);
  assert_null(c->listens[0].tls);
  assert_string_equal(c->admin_listen.text, "127.0.0.1:9090");
  assert_int_equal(c->workers, cpus < 1 ? 1 : cpus > FL_MAX_WORKERS ? FL_MAX_WORKERS : cpus);
  assert_int_equal(c->n_override_from, 1);          /* trusted_cidrs, the old name */
  assert_int_equal(c->override_from[0].family, AF_INET);
  assert_int_equal(c->override_from[0].prefix, 8);
  assert_string_equal(c->geoip_mmdb, "/path/x.mmdb");
  assert_string_equal(c->geoip_header, "cf-ipcountry");
  assert_int_equal(c->timeouts.connect_ms, 2000);
  assert_int_equal(c->timeouts.header_ms, 10000);
  assert_int_equal(c->timeouts.first_byte_ms, 60000);
  assert_int_equal(c->timeouts.idle_ms, 60000);
  assert_int_equal(c->timeouts.drain_ms, 30000);
  assert_int_equal(c->limits.header_bytes, 65536);
  assert_int_equal(c->limits.headers, 100);
  assert_int_equal(c->limits.body_bytes, 104857600);
  assert_int_equal(c->limits.inspect_body_bytes, 1048576);
  assert_true(c->response_headers);
  fl_conf_unref(c);
}

static void example_route(void **state) {
  fl_conf_t *c = parse_ok(EXAMPLE);
  const fl_route_t *r = fl_conf_route(c, "chat");
  assert_non_null(r);
  assert_null(fl_conf_route(c, "nope"));
  assert_string_equal(r->host, "api.example.com");
  assert_string_equal(r->path_prefix, "/v1/");
  assert_int_equal(r->path_prefix_len, 4);
  assert_string_equal(r->salt, "chat-2024");
  assert_string_equal(r->segment_header, "x-user-segment");
  assert_int_equal(r->n_user_key, 5);
  assert_int_equal(r->user_key[0].kind, FL_KEY_HEADER);
  assert_string_equal(r->user_key[0].name, "x-user-id");
  assert_int_equal(r->user_key[1].kind, FL_KEY_JSON);
  assert_string_equal(r->user_key[1].name, "user");
  assert_int_equal(r->user_key[2].kind, FL_KEY_COOKIE);
  assert_int_equal(r->user_key[3].kind, FL_KEY_QUERY);
  assert_int_equal(r->user_key[4].kind, FL_KEY_IP);
  assert_null(r->user_key[4].name);
  fl_conf_unref(c);
}

static void example_variants(void **state) {
  fl_conf_t *c = parse_ok(EXAMPLE);
  const fl_route_t *r = &c->routes[0];
  const fl_variant_conf_t *s = &r->variant[FL_STABLE], *k = &r->variant[FL_CANARY];
  assert_string_equal(s->version, "v1");
  assert_string_equal(s->model, "llama-3-8b");
  assert_int_equal(s->n_backends, 1);
  assert_string_equal(s->backends[0].text, "127.0.0.1:9001");
  assert_null(s->bound);
  assert_true(r->has_canary);
  assert_string_equal(k->version, "v2");
  assert_null(k->model);
  assert_int_equal(k->n_backends, 2);
  assert_string_equal(k->backends[1].text, "[::1]:9003");
  assert_int_equal(r->canary_weight_bp, 2000);
  fl_conf_unref(c);
}

static void example_rules(void **state) {
  fl_conf_t *c = parse_ok(EXAMPLE);
  const fl_route_t *r = &c->routes[0];
  assert_int_equal(r->n_rules, 6);
  assert_int_equal(r->rules[0].line, 25);
  assert_int_equal(r->rules[0].variant, FL_CANARY);
  assert_int_equal(cond(r, 0, 0)->kind, FL_COND_HEADER);
  assert_string_equal(cond(r, 0, 0)->name, "x-version");
  assert_string_equal(cond(r, 0, 0)->value, "v2");
  assert_int_equal(r->rules[1].variant, FL_STABLE);
  assert_int_equal(r->rules[1].n_conds, 2);
  assert_int_equal(cond(r, 1, 0)->kind, FL_COND_HEADER_REGEX);
  assert_non_null(cond(r, 1, 0)->regex);
  assert_int_equal(regexec(&cond(r, 1, 0)->regex[c->workers - 1], "beta-client/1", 0, NULL, 0), 0);
  assert_int_not_equal(regexec(&cond(r, 1, 0)->regex[0], "curl/8", 0, NULL, 0), 0);
  assert_int_equal(cond(r, 1, 1)->kind, FL_COND_CIDR);
  assert_int_equal(cond(r, 1, 1)->n_cidrs, 1);
  assert_int_equal(cond(r, 2, 0)->kind, FL_COND_COOKIE);
  assert_string_equal(cond(r, 2, 0)->value, "1");
  assert_int_equal(cond(r, 3, 0)->kind, FL_COND_QUERY);
  assert_string_equal(cond(r, 3, 0)->name, "v");
  assert_int_equal(cond(r, 4, 0)->kind, FL_COND_COUNTRY);
  assert_int_equal(cond(r, 4, 0)->n_values, 2);
  assert_string_equal(cond(r, 4, 0)->values[0], "DE");
  assert_string_equal(cond(r, 4, 0)->values[1], "FR");
  assert_int_equal(cond(r, 5, 0)->kind, FL_COND_SEGMENT);
  assert_string_equal(cond(r, 5, 0)->values[1], "staff");
  fl_conf_unref(c);
}

static void defaults_for_a_minimal_file(void **state) {
  fl_conf_t *c = parse_ok(ROUTE);
  const fl_route_t *r = &c->routes[0];
  assert_string_equal(c->listens[0].addr.text, "127.0.0.1:8080");
  assert_int_equal(c->n_listens, 1);
  assert_null(c->listens[0].tls);
  assert_string_equal(c->admin_listen.text, "127.0.0.1:9090");
  assert_true(c->workers >= 1 && c->workers <= FL_MAX_WORKERS);
  assert_int_equal(c->n_override_from, 0);          /* nobody forces a variant */
  assert_int_equal(c->n_trusted_proxies, 0);        /* nobody's x-forwarded-for is believed */
  assert_null(c->geoip_mmdb);
  assert_null(c->geoip_header);
  assert_int_equal(c->timeouts.connect_ms, 2000);
  assert_int_equal(c->timeouts.drain_ms, 30000);
  assert_int_equal(c->limits.body_bytes, 104857600);
  assert_true(c->response_headers);
  assert_null(r->host);
  assert_string_equal(r->path_prefix, "/");
  assert_int_equal(r->path_prefix_len, 1);
  assert_string_equal(r->salt, "r");
  assert_string_equal(r->segment_header, "x-user-segment");
  assert_int_equal(r->n_user_key, 0);
  assert_int_equal(r->n_rules, 0);
  assert_false(r->has_canary);
  assert_int_equal(r->canary_weight_bp, 0);
  assert_null(r->variant[FL_STABLE].model);
  fl_conf_unref(c);
}

static void canary_weight_becomes_basis_points(void **state) {
  static const struct { const char *weight; uint32_t bp; } cases[] = {
    {"0", 0}, {"12.5", 1250}, {"33.33", 3333}, {"0.01", 1}, {"100", 10000}, {"100.00", 10000},
  };
  for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
    char yaml[256];
    snprintf(yaml, sizeof yaml, ROUTE "    canary: { version: v2, backends: [127.0.0.1:9002], weight: %s }\n",
             cases[i].weight);
    fl_conf_t *c = parse_ok(yaml);
    assert_int_equal(c->routes[0].canary_weight_bp, cases[i].bp);
    fl_conf_unref(c);
  }
}

static void workers_number_sizes_regex_copies(void **state) {
  fl_conf_t *c = parse_ok("workers: 3\n" ROUTE
                          "    canary: { version: v2, backends: [127.0.0.1:9002] }\n"
                          "    rules: [{ match: { header_regex: { UA: \"^a|^b\" } }, variant: canary }]\n");
  assert_int_equal(c->workers, 3);
  const fl_cond_t *k = cond(&c->routes[0], 0, 0);
  assert_string_equal(k->name, "ua");
  for (unsigned i = 0; i < 3; i++) assert_int_equal(regexec(&k->regex[i], "bx", 0, NULL, 0), 0);
  fl_conf_unref(c);
}

static void durations_accept_units_and_bare_seconds(void **state) {
  fl_conf_t *c = parse_ok("timeouts: { connect: 500ms, header: 3, first_byte: 2m, idle: 1h, drain: 1s }\n" ROUTE);
  assert_int_equal(c->timeouts.connect_ms, 500);
  assert_int_equal(c->timeouts.header_ms, 3000);
  assert_int_equal(c->timeouts.first_byte_ms, 120000);
  assert_int_equal(c->timeouts.idle_ms, 3600000);
  assert_int_equal(c->timeouts.drain_ms, 1000);
  fl_conf_unref(c);
}

static void trusted_proxies_and_override_from_are_lists_of_blocks(void **state) {
  fl_conf_t *c = parse_ok("trusted_proxies: [10.0.0.0/8, \"::1\"]\noverride_from: []\nresponse_headers: false\n" ROUTE);
  assert_int_equal(c->n_override_from, 0);
  assert_int_equal(c->n_trusted_proxies, 2);
  assert_int_equal(c->trusted_proxies[1].prefix, 128);
  assert_false(c->response_headers);
  fl_conf_unref(c);
}

static void snapshot_lives_until_last_reference(void **state) {
  fl_conf_t *c = parse_ok(ROUTE);
  fl_conf_ref(c);
  assert_int_equal(atomic_load(&c->refs), 2);
  fl_conf_unref(c);
  assert_string_equal(c->routes[0].name, "r");  /* still alive: valgrind would flag a use after free */
  fl_conf_unref(c);
  fl_conf_unref(NULL);
}

/* ---------- every kind of mistake, with its position ---------- */

static void yaml_syntax_errors_use_libyaml_position(void **state) {
  expect_error_at("listen: 127.0.0.1:8080\nroutes: [a\n", "3:1", "did not find expected ',' or ']'");
  expect_error_at("a: b: c\n", "1:5", "mapping values are not allowed");
  expect_error_at("routes: *nowhere\n", "1:9", "found undefined alias");
  expect_error_at(ROUTE "---\nlisten: 1\n", "5:1", "only one YAML document is allowed");
  expect_error_at("", "1:1", "the configuration is empty");
  expect_error_at("listen: \"\xff\"\n", "1:10", "invalid leading UTF-8 octet");
}

static void unknown_keys_are_named_with_a_suggestion(void **state) {
  expect_error_at(ROUTE "    canary: { version: v2, backends: [127.0.0.1:9002], wieght: 20 }\n", "4:56",
                  "unknown key \"wieght\" in canary (did you mean \"weight\"?)");
  expect_error_at("lisen: 127.0.0.1:1\n" ROUTE, "1:1", "unknown key \"lisen\" in configuration (did you mean \"listen\"?)");
  expect_error_at(ROUTE "    stable2: {}\n", "4:5", "unknown key \"stable2\" in route");
  expect_error_at(ROUTE "    match: { prefix: /v1 }\n", "4:14", "unknown key \"prefix\" in route match");
  expect_error_at("timeouts: { read: 5s }\n" ROUTE, "1:13", "unknown key \"read\" in timeouts");
  expect_error_at("limits: { zzzzzzzzzz: 1 }\n" ROUTE, "1:11", "unknown key \"zzzzzzzzzz\" in limits");
  /* weight belongs to the canary, not the stable */
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1, backends: [127.0.0.1:9001], weight: 5 }\n",
                  "3:56", "unknown key \"weight\" in stable");
}

static void listen_takes_a_list_of_distinct_addresses_and_tls_needs_a_readable_certificate(void **state) {
  fl_conf_t *c = parse_ok("listen: [127.0.0.1:1, {address: 127.0.0.1:2, share: true}]\n" ROUTE);
  assert_int_equal(c->n_listens, 2);
  assert_string_equal(c->listens[1].addr.text, "127.0.0.1:2");
  assert_true(c->listens[1].share);
  assert_null(c->listens[1].tls);
  fl_conf_unref(c);
  expect_error_at("listen: [127.0.0.1:1, 127.0.0.1:1]\n" ROUTE, "1:23", "listen names 127.0.0.1:1 twice");
  expect_error_at("listen: []\n" ROUTE, "1:9", "listen takes 1 to 8 addresses");
  expect_error_at("listen: {address: 127.0.0.1:1, tls: {}}\n" ROUTE, "1:37", "listen.tls needs a certificate");
  expect_error_at("listen: {address: 127.0.0.1:1, tls: {cert: /nonexistent/a.crt}}\n" ROUTE, "1:37",
                  "a TLS certificate needs both cert and key");
  expect_error_at("listen: {address: 127.0.0.1:1, tls: {cert: /nonexistent/a.crt, key: /nonexistent/a.key}}\n" ROUTE,
                  "1:37", "tls: /nonexistent/a.crt:");
  expect_error_at("admin: {listen: {address: 127.0.0.1:1, tls: {cert: a, key: b}}}\n" ROUTE, "1:45",
                  "admin.listen does not take tls");
}

static void wrong_types_are_reported_where_they_are(void **state) {
  expect_error_at("- a\n- b\n", "1:1", "the configuration must be a mapping, not a list");
  expect_error_at("routes: { name: r }\n", "1:9", "routes must be a list, not a mapping");
  expect_error_at("timeouts: 5\n" ROUTE, "1:11", "timeouts must be a mapping, not a value");
  expect_error_at("admin:\n  listen: [127.0.0.1:1]\n" ROUTE, "2:11", "listen must be a single value, not a list");
  expect_error_at("routes:\n  - name: r\n    stable:\n", "3:12", "stable must be a mapping");
  expect_error_at("routes:\n  - r\n", "2:5", "route must be a mapping");
  expect_error_at("response_headers: maybe\n" ROUTE, "1:19", "response_headers must be true or false");
  expect_error_at("{ [a]: 1 }\n", "1:3", "keys in configuration must be plain strings");
}

static void duplicate_keys_and_route_names(void **state) {
  expect_error_at("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n" ROUTE, "2:1", "duplicate key \"listen\" in configuration");
  expect_error_at(ROUTE "    canary: { version: v2, weight: 1, backends: [127.0.0.1:9], weight: 2 }\n", "4:64",
                  "duplicate key \"weight\" in canary");
  expect_error_at(ROUTE "    rules: [{ match: { header: { a: x, a: y } }, variant: stable }]\n", "4:40",
                  "duplicate key \"a\" in header");
  expect_error_at(ROUTE "  - name: r\n    stable: { version: v1, backends: [127.0.0.1:9001] }\n", "4:11",
                  "duplicate route name \"r\"");
  /* late in a full file: everything built before it, regexes included, is freed */
  char yaml[4096];
  snprintf(yaml, sizeof yaml, "%s  - name: chat\n    stable: { version: v1, backends: [127.0.0.1:1] }\n", EXAMPLE);
  expect_error_at(yaml, "37:11", "duplicate route name \"chat\"");
}

static void bad_values(void **state) {
  const char *canary = ROUTE "    canary:\n      version: v2\n      backends: [127.0.0.1:9002]\n      weight: ";
  char yaml[512];
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1, backends: [127.0.0.1:9001, 127.0.0.1:9001] }\n",
                  "3:55", "backend 127.0.0.1:9001 is listed twice");
  snprintf(yaml, sizeof yaml, "%s150\n", canary);
  expect_error_at(yaml, "7:15", "weight must be between 0 and 100");
  snprintf(yaml, sizeof yaml, "%s-1\n", canary);
  expect_error_at(yaml, "7:15", "weight must be between 0 and 100");
  snprintf(yaml, sizeof yaml, "%s12.345\n", canary);
  expect_error_at(yaml, "7:15", "weight \"12.345\" has more than two decimals");
  snprintf(yaml, sizeof yaml, "%s20%%\n", canary);
  expect_error_at(yaml, "7:15", "weight must be a number between 0 and 100, not \"20%\"");
  expect_error_at("listen: 127.0.0.1:99999\n" ROUTE, "1:9", "bad address \"127.0.0.1:99999\"");
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1, backends: [127.0.0.1:1, 300.0.0.1:80] }\n",
                  "3:52", "bad address \"300.0.0.1:80\" (expected HOST:PORT");
  expect_error_at("trusted_cidrs: [10.0.0.0/33]\n" ROUTE, "1:17", "bad CIDR block \"10.0.0.0/33\"");
  expect_error_at("routes:\n  - name: \"a b\"\n", "2:11", "bad route name \"a b\"");
  expect_error_at(ROUTE "    match: { path_prefix: v1 }\n", "4:27", "path_prefix must start with \"/\"");
  expect_error_at(ROUTE "    segment_header: \"x seg\"\n", "4:21", "bad header name \"x seg\"");
  expect_error_at("limits: { headers: 0 }\n" ROUTE, "1:20", "headers must be a positive integer");
  expect_error_at("limits: { header_bytes: 4294967296 }\n" ROUTE, "1:25", "header_bytes must be at most 4294967295");
}

static void bad_workers_and_durations(void **state) {
  expect_error_at("workers: 0\n" ROUTE, "1:10", "workers must be auto or an integer from 1 to 64");
  expect_error_at("workers: 65\n" ROUTE, "1:10", "workers must be auto or an integer from 1 to 64");
  expect_error_at("workers: many\n" ROUTE, "1:10", "workers must be auto or an integer from 1 to 64");
  expect_error_at("timeouts:\n  idle: 0s\n" ROUTE, "2:9", "idle must be greater than zero");
  expect_error_at("timeouts:\n  idle: 5d\n" ROUTE, "2:9", "bad duration \"5d\" for idle");
  expect_error_at("timeouts:\n  idle: 1.5s\n" ROUTE, "2:9", "bad duration \"1.5s\" for idle");
  expect_error_at("timeouts:\n  idle: 9999999h\n" ROUTE, "2:9", "idle \"9999999h\" is too long");
}

static void missing_required_parts(void **state) {
  expect_error_at("listen: 127.0.0.1:1\n", "1:1", "missing \"routes\"");
  expect_error_at("routes: []\n", "1:9", "routes must list at least one route");
  expect_error_at("routes:\n  - stable: { version: v1, backends: [127.0.0.1:9001] }\n", "2:5", "route needs a name");
  expect_error_at("routes:\n  - name: r\n", "2:5", "route \"r\" needs a stable section");
  expect_error_at("routes:\n  - name: r\n    stable: { backends: [127.0.0.1:9001] }\n", "3:13", "stable needs a version");
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1 }\n", "3:13", "stable needs at least one backend");
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1, backends: [] }\n", "3:38",
                  "backends must list at least one address");
  expect_error_at(ROUTE "    canary: { backends: [127.0.0.1:9002] }\n", "4:13", "canary needs a version");
  expect_error_at("routes:\n  - name: \"\"\n", "2:11", "name must not be empty");
}

static void user_key_sources(void **state) {
  expect_error_at(ROUTE "    user_key: [ip, session:abc]\n", "4:20", "unknown user_key source \"session:abc\"");
  expect_error_at(ROUTE "    user_key: [\"header:\"]\n", "4:16", "user_key source \"header:\" needs a name");
  expect_error_at(ROUTE "    user_key: ip\n", "4:15", "user_key must be a list");
}

static void rule_mistakes(void **state) {
  const char *canary = "    canary: { version: v2, backends: [127.0.0.1:9002] }\n";
  char yaml[512];
  snprintf(yaml, sizeof yaml, ROUTE "%s    rules:\n      - match: { path: /x }\n        variant: canary\n", canary);
  expect_error_at(yaml, "6:18", "unknown rule condition \"path\"");
  snprintf(yaml, sizeof yaml, ROUTE "%s    rules:\n      - variant: canary\n", canary);
  expect_error_at(yaml, "6:9", "rule needs a match");
  snprintf(yaml, sizeof yaml, ROUTE "%s    rules:\n      - match: { cookie: { a: b } }\n", canary);
  expect_error_at(yaml, "6:9", "rule needs a variant");
  snprintf(yaml, sizeof yaml, ROUTE "%s    rules:\n      - match: { cookie: { a: b } }\n        variant: beta\n", canary);
  expect_error_at(yaml, "7:18", "variant must be stable or canary, not \"beta\"");
  snprintf(yaml, sizeof yaml, ROUTE "%s    rules:\n      - match: {}\n        variant: canary\n", canary);
  expect_error_at(yaml, "6:16", "rule match needs at least one condition");
  snprintf(yaml, sizeof yaml, ROUTE "%s    rules:\n      - match: { country: [deu] }\n        variant: canary\n", canary);
  expect_error_at(yaml, "6:28", "bad country code \"deu\"");
  snprintf(yaml, sizeof yaml, ROUTE "%s    rules:\n      - match: { cidr: [] }\n        variant: canary\n", canary);
  expect_error_at(yaml, "6:24", "cidr must list at least one block");
  snprintf(yaml, sizeof yaml, ROUTE "%s    rules:\n      - { match: { cookie: {a: b} }, variant: stable, why: x }\n",
           canary);
  expect_error_at(yaml, "6:55", "unknown key \"why\" in rule");
}

static void canary_rule_needs_a_canary(void **state) {
  /* rules come before the (absent) canary section; the error still points at the rule */
  expect_error_at(ROUTE "    rules:\n      - match: { segment: [beta] }\n        variant: canary\n", "6:18",
                  "rule sends traffic to canary but route \"r\" has no canary section");
}

static void bad_regex_points_at_the_pattern(void **state) {
  expect_error_at("workers: 2\n" ROUTE "    rules:\n      - match: { header_regex: { user-agent: \"(beta\" } }\n"
                  "        variant: stable\n", "6:46", "bad regex \"(beta\": ");
}

static void error_message_is_truncated_not_overflowed(void **state) {
  char err[12];
  memset(err, 'z', sizeof err);
  fl_conf_t *c;
  assert_int_equal(fl_conf_parse("t.yaml", "routes: []\n", 11, &c, err, 10), FL_EINVAL);
  assert_string_equal(err, "t.yaml:1:");
  assert_int_equal(err[10], 'z');
  assert_int_equal(fl_conf_parse("t.yaml", "routes: []\n", 11, &c, NULL, 0), FL_EINVAL);
}

/* Cutting the file anywhere must give either a snapshot or a positioned message,
 * never a crash or a leak (run under valgrind). */
static void every_prefix_of_the_example_is_handled(void **state) {
  for (size_t len = 0; len <= strlen(EXAMPLE); len++) {
    char err[512] = "";
    fl_conf_t *c = NULL;
    int rc = fl_conf_parse("t.yaml", EXAMPLE, len, &c, err, sizeof err);
    if (rc == 0) {
      assert_non_null(c);
      fl_conf_unref(c);
    } else {
      assert_int_equal(rc, FL_EINVAL);
      assert_null(c);
      assert_true(strncmp(err, "t.yaml:", 7) == 0);
    }
  }
}

/* ---------- files ---------- */

static void load_missing_file_names_it(void **state) {
  char err[256] = "";
  fl_conf_t *c = (fl_conf_t *)0x1;
  int rc = fl_conf_load("/nonexistent/fledge.yaml", &c, err, sizeof err);
  assert_int_equal(rc, -ENOENT);
  assert_null(c);
  assert_string_equal(err, "/nonexistent/fledge.yaml: No such file or directory");
}

static void load_reads_a_file_and_names_it_in_errors(void **state) {
  char path[] = "/tmp/test_conf_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs(EXAMPLE, f);
  fclose(f);
  char err[512] = "";
  fl_conf_t *c = NULL;
  assert_int_equal(fl_conf_load(path, &c, err, sizeof err), 0);
  assert_string_equal(c->path, path);
  assert_int_equal(c->routes[0].canary_weight_bp, 2000);
  fl_conf_unref(c);

  f = fopen(path, "w");
  fputs("routes: []\n", f);
  fclose(f);
  assert_int_equal(fl_conf_load(path, &c, err, sizeof err), FL_EINVAL);
  char want[256];
  snprintf(want, sizeof want, "%s:1:9: routes must list", path);
  assert_true(strncmp(err, want, strlen(want)) == 0);
  unlink(path);
}

static void admin_token_comes_from_the_named_environment_variable(void **state) {
  const char *yaml = "admin:\n  token_env: FL_TEST_TOKEN\nroutes:\n  - name: r\n"
                     "    stable: { version: v1, backends: [127.0.0.1:1] }\n";
  /* a missing or short token loads (CLI tools only read the file) but carries the error that
   * serve and check report */
  unsetenv("FL_TEST_TOKEN");
  fl_conf_t *c = parse_ok(yaml);
  assert_null(c->admin_token);
  assert_string_equal(c->admin_token_error, "t.yaml:2:14: admin.token_env: environment variable FL_TEST_TOKEN "
                                            "must hold a token of at least 16 characters");
  fl_conf_unref(c);
  setenv("FL_TEST_TOKEN", "short", 1);
  c = parse_ok(yaml);
  assert_non_null(c->admin_token_error);
  fl_conf_unref(c);
  setenv("FL_TEST_TOKEN", "a-long-enough-token-123", 1);
  c = parse_ok(yaml);
  assert_string_equal(c->admin_token, "a-long-enough-token-123");
  assert_string_equal(c->admin_token_env, "FL_TEST_TOKEN");
  assert_null(c->admin_token_error);
  fl_conf_unref(c);
  unsetenv("FL_TEST_TOKEN");
}

/* The read and feedback tokens come like the admin token, each from a variable of its own; a
 * token shared by two scopes would widen the narrower one, so it is an error where it is named. */
static void read_and_feedback_tokens_are_scopes_of_their_own(void **state) {
  const char *yaml = "admin:\n  token_env: FL_TEST_ADMIN\n  read_token_env: FL_TEST_READ\n  public_metrics: true\n"
                     "feedback:\n  token_env: FL_TEST_FEEDBACK\nroutes:\n  - name: r\n"
                     "    stable: { version: v1, backends: [127.0.0.1:1] }\n";
  setenv("FL_TEST_ADMIN", "admin-token-0123456789", 1);
  setenv("FL_TEST_READ", "read-token-0123456789", 1);
  unsetenv("FL_TEST_FEEDBACK");
  fl_conf_t *c = parse_ok(yaml);
  assert_string_equal(c->read_token, "read-token-0123456789");
  assert_string_equal(c->read_token_env, "FL_TEST_READ");
  assert_true(c->public_metrics);
  assert_null(c->feedback_token);
  assert_string_equal(c->admin_token_error, "t.yaml:6:14: feedback.token_env: environment variable FL_TEST_FEEDBACK "
                                            "must hold a token of at least 16 characters");
  fl_conf_unref(c);
  setenv("FL_TEST_FEEDBACK", "feedback-token-0123456789", 1);
  c = parse_ok(yaml);
  assert_string_equal(c->feedback_token, "feedback-token-0123456789");
  assert_string_equal(c->feedback_token_env, "FL_TEST_FEEDBACK");
  assert_null(c->admin_token_error);
  fl_conf_unref(c);
  setenv("FL_TEST_FEEDBACK", "admin-token-0123456789", 1);
  expect_error_at(yaml, "6:14", "admin.token_env and feedback.token_env hold the same token");
  setenv("FL_TEST_FEEDBACK", "feedback-token-0123456789", 1);
  setenv("FL_TEST_READ", "feedback-token-0123456789", 1);
  expect_error_at(yaml, "6:14", "admin.read_token_env and feedback.token_env hold the same token");
  c = parse_ok("routes:\n  - name: r\n    stable: { version: v1, backends: [127.0.0.1:1] }\n");
  assert_null(c->read_token);
  assert_null(c->feedback_token);
  assert_false(c->public_metrics);
  fl_conf_unref(c);
  unsetenv("FL_TEST_ADMIN");
  unsetenv("FL_TEST_READ");
  unsetenv("FL_TEST_FEEDBACK");
}

static void names_and_versions_are_short_and_printable(void **state) {
  char yaml[1024];
  snprintf(yaml, sizeof yaml, "routes:\n  - name: %s\n    stable: { version: v1, backends: [127.0.0.1:1] }\n",
           "r234567890123456789012345678901234567890123456789012345678901234");
  expect_error_at(yaml, "2:11", "route name is longer than 63 characters");
  expect_error_at("routes:\n  - name: r\n    stable: { version: \"v 1\", backends: [127.0.0.1:1] }\n", "3:24",
                  "version must be printable, without spaces or quotes");
}

/* Found by the conf fuzz target: YAML allows keys that JSON cannot hold, and numbers JSON's
 * integers cannot; the rollout spec is YAML turned into JSON. */
/* Found by the conf fuzz target: glibc's regcomp grows exponentially on stacked repetitions. */
static void a_regex_too_costly_to_compile_is_refused_before_compiling(void **state) {
  expect_error_at("data: { refusal_patterns: [\"1++++++++++++++++++++++++++++\"] }\n"
                  "routes:\n  - name: a\n    stable: { version: v1, backends: [127.0.0.1:1] }\n",
                  "1:28", "regex \"1+++");
  expect_error_at("routes:\n  - name: a\n    stable: { version: v1, backends: [127.0.0.1:1] }\n"
                  "    canary: { version: v2, backends: [127.0.0.1:1] }\n"
                  "    rules: [{ match: { header_regex: { x-a: \"(a{50}){101}\" } }, variant: canary }]\n",
                  "5:45", "regex \"(a{50}){101}\" is too costly to compile: a count over 100");
  fl_conf_t *c = parse_ok("data: { refusal_patterns: [\"^I (can't|cannot) help\", \"as an AI( language)? model\", \"[+*]{2}\"] }\n"
                      "routes:\n  - name: a\n    stable: { version: v1, backends: [127.0.0.1:1] }\n");
  assert_int_equal(c->data.n_refusals, 3);                  /* ordinary patterns pass */
  fl_conf_unref(c);
}

static void a_rollout_spec_with_a_complex_key_or_a_huge_number_is_refused_cleanly(void **state) {
  expect_error_at("routes:\n  - name: a\n    stable: { version: v1, backends: [127.0.0.1:1] }\n"
                  "    rollout:\n      ? [steps]\n      : [5]\n",
                  "5:9", "rollout: keys must be plain names");
  expect_error_at("routes:\n  - name: a\n    stable: { version: v1, backends: [127.0.0.1:1] }\n"
                  "    rollout: { min_requests: 20000000000000000000 }\n",
                  "4:16", "rollout: min_requests must be a positive integer");
}

/* ---------- host names among backends, and resolve: ---------- */

static void host_names_are_kept_for_the_resolver_beside_the_addresses(void **state) {
  fl_conf_t *c = parse_ok("routes:\n  - name: r\n    stable:\n      version: v1\n"
                          "      backends: [vllm-v1.default.svc.cluster.local:8000, localhost:9000, 127.0.0.1:9001, "
                          "Model_B.Test.:80]\n");
  const fl_variant_conf_t *v = &c->routes[0].variant[FL_STABLE];
  assert_int_equal(v->n_backends, 2);                     /* localhost needs no lookup */
  assert_string_equal(v->backends[0].text, "127.0.0.1:9000");
  assert_string_equal(v->backends[1].text, "127.0.0.1:9001");
  assert_int_equal(v->n_names, 2);
  assert_string_equal(v->names[0].host, "vllm-v1.default.svc.cluster.local");
  assert_int_equal(v->names[0].port, 8000);
  assert_string_equal(v->names[0].text, "vllm-v1.default.svc.cluster.local:8000");
  assert_int_equal(v->names[0].line, 5);
  assert_int_equal(v->names[0].column, 18);
  assert_string_equal(v->names[1].host, "model_b.test.");     /* lower-cased, the root dot kept */
  assert_int_equal(v->resolve.interval_ms, 30000);            /* the default */
  assert_false(v->resolve.lazy);
  fl_conf_unref(c);
}

static void a_name_alone_is_enough_and_listing_it_twice_is_not(void **state) {
  fl_conf_t *c = parse_ok("routes:\n  - name: r\n    stable: { version: v1, backends: [model.test:80] }\n");
  assert_int_equal(c->routes[0].variant[FL_STABLE].n_backends, 0);
  assert_int_equal(c->routes[0].variant[FL_STABLE].n_names, 1);
  fl_conf_unref(c);
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1, backends: [model.test:80, Model.TEST:80] }\n",
                  "3:54", "backend model.test:80 is listed twice");
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1, backends: [model.test] }\n", "3:39",
                  "bad address \"model.test\"");
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1, backends: [-bad.test:80] }\n", "3:39",
                  "bad address \"-bad.test:80\"");
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1, backends: [\"[model.test]:80\"] }\n", "3:39",
                  "bad address \"[model.test]:80\"");
}

static void https_backends_default_to_443_and_are_asked_for_their_own_host(void **state) {
  fl_conf_t *c = parse_ok("routes:\n  - name: r\n    stable: { version: v1, backends: [\"https://API.hosted.test\"] }\n"
                          "    canary: { version: v2, backends: [\"https://127.0.0.1:8443/\", \"https://127.0.0.2:8443\"],\n"
                          "              server_name: models.test, insecure_skip_verify: true }\n");
  const fl_variant_conf_t *s = &c->routes[0].variant[FL_STABLE], *k = &c->routes[0].variant[FL_CANARY];
  assert_true(s->https && s->tls && !s->insecure_skip_verify);
  assert_string_equal(s->names[0].text, "api.hosted.test:443");
  assert_string_equal(s->host_line, "host: api.hosted.test\r\n");
  assert_string_equal(fl_tls_client_host(s->tls), "api.hosted.test");
  assert_int_equal(k->n_backends, 2);
  assert_string_equal(k->backends[0].text, "127.0.0.1:8443");
  assert_string_equal(k->host_line, "host: models.test:8443\r\n");    /* two addresses, one name for both */
  assert_string_equal(fl_tls_client_host(k->tls), "models.test");
  assert_non_null(strstr(c->warnings, "t.yaml:5:63: warning: route r canary: insecure_skip_verify"));
  fl_conf_unref(c);
  c = parse_ok("routes:\n  - name: r\n    stable: { version: v1, backends: [\"http://127.0.0.1\", \"[::1]:81\"] }\n");
  assert_false(c->routes[0].variant[FL_STABLE].https);
  assert_null(c->routes[0].variant[FL_STABLE].tls);
  assert_null(c->routes[0].variant[FL_STABLE].host_line);
  assert_string_equal(c->routes[0].variant[FL_STABLE].backends[0].text, "127.0.0.1:80");
  assert_null(c->warnings);
  fl_conf_unref(c);
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1, backends: [\"https://[::1]:8443\", \"https://[::2]:8443\"] }\n",
                  "3:13", "route r stable: https backends ::1 and ::2 are different hosts: give server_name");
  expect_error_at("routes:\n  - name: r\n    stable: { version: v1, backends: [\"https://a.test/v1\"] }\n", "3:39",
                  "backend \"https://a.test/v1\": a backend is an address, without a path");
}

static void resolve_is_inherited_from_the_file_to_the_route_to_the_variant(void **state) {
  fl_conf_t *c = parse_ok("routes:\n"
                          "  - name: a\n"
                          "    resolve: { interval: 5s }\n"
                          "    stable: { version: v1, backends: [a.test:1] }\n"
                          "    canary: { version: v2, backends: [b.test:1], resolve: { lazy: false, interval: 2s } }\n"
                          "  - name: b\n"
                          "    stable: { version: v1, backends: [c.test:1], resolve: lazy }\n"
                          "resolve: { interval: 1m, lazy: true }\n");        /* after the routes: still theirs */
  const fl_route_t *a = &c->routes[0], *b = &c->routes[1];
  assert_int_equal(c->resolve.interval_ms, 60000);
  assert_int_equal(a->variant[FL_STABLE].resolve.interval_ms, 5000);
  assert_true(a->variant[FL_STABLE].resolve.lazy);
  assert_int_equal(a->variant[FL_CANARY].resolve.interval_ms, 2000);
  assert_false(a->variant[FL_CANARY].resolve.lazy);
  assert_int_equal(b->variant[FL_STABLE].resolve.interval_ms, 60000);
  assert_true(b->variant[FL_STABLE].resolve.lazy);
  fl_conf_unref(c);
  expect_error_at("resolve: eager\n" ROUTE, "1:10", "resolve must be lazy or a mapping");
  expect_error_at("resolve: { interval: 100ms }\n" ROUTE, "1:22", "resolve.interval must be from 1s to 24h");
  expect_error_at("resolve: { every: 1s }\n" ROUTE, "1:12", "unknown key \"every\" in resolve");
}

static void a_reparse_is_the_same_config_whatever_the_file_says_now(void **state) {
  char path[] = "/tmp/fledge-test-conf-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char *first = "routes:\n  - name: r\n    stable: { version: v1, backends: [model.test:80] }\n";
  assert_int_equal(write(fd, first, strlen(first)), (ssize_t)strlen(first));
  close(fd);
  char err[512];
  fl_conf_t *c = NULL, *again = NULL;
  assert_int_equal(fl_conf_load(path, &c, err, sizeof err), 0);
  FILE *f = fopen(path, "w");                           /* edited, not reloaded */
  fputs("routes:\n  - name: other\n    stable: { version: v9, backends: [127.0.0.1:1] }\n", f);
  fclose(f);
  assert_int_equal(fl_conf_reparse(c, &again, err, sizeof err), 0);
  assert_ptr_not_equal(again, c);
  assert_string_equal(again->path, path);
  assert_string_equal(again->routes[0].name, "r");
  assert_string_equal(again->routes[0].variant[FL_STABLE].names[0].text, "model.test:80");
  fl_conf_unref(again);
  fl_conf_unref(c);
  unlink(path);
}

/* ---------- cluster ---------- */

static void without_cluster_there_is_no_cluster(void **state) {
  fl_conf_t *c = parse_ok(ROUTE);
  assert_null(c->cluster);
  fl_conf_unref(c);
}

static void cluster_keys_and_their_defaults(void **state) {
  setenv("FL_TEST_REDIS_PW", "s3cret", 1);
  fl_conf_t *c = parse_ok(ROUTE "cluster: { redis: \"redis://10.0.0.5:6380/2\", password_env: FL_TEST_REDIS_PW, "
                                "name: prod, replica: gw-a, lease: 4s }\n");
  const fl_cluster_conf_t *cl = c->cluster;
  assert_non_null(cl);
  assert_string_equal(cl->host, "10.0.0.5");
  assert_int_equal(cl->port, 6380);
  assert_int_equal(cl->db, 2);
  assert_string_equal(cl->password, "s3cret");
  assert_string_equal(cl->name, "prod");
  assert_string_equal(cl->replica, "gw-a");
  assert_int_equal(cl->lease_ms, 4000);
  fl_conf_unref(c);

  /* only redis: port 6379, db 0, no AUTH, name fledge, replica HOST:ADMINPORT, lease 3s */
  c = parse_ok(ROUTE "admin: { listen: 127.0.0.1:9123 }\ncluster: { redis: \"redis://[::1]\" }\n");
  cl = c->cluster;
  char host[256] = "", want[300];
  gethostname(host, sizeof host - 1);
  host[strcspn(host, ".")] = '\0';
  snprintf(want, sizeof want, "%.40s:9123", host);
  assert_string_equal(cl->host, "::1");
  assert_int_equal(cl->port, 6379);
  assert_int_equal(cl->db, 0);
  assert_null(cl->password);
  assert_string_equal(cl->name, "fledge");
  assert_string_equal(cl->replica, want);
  assert_int_equal(cl->lease_ms, 3000);
  fl_conf_unref(c);
}

/* Replicas of one fleet differ in their own addresses, state file and name, not in what they do. */
static void the_fleet_hash_leaves_out_what_each_replica_sets_for_itself(void **state) {
  fl_conf_t *a = parse_ok("listen: 127.0.0.1:8001\nadmin: { listen: 127.0.0.1:9001 }\nstate: /tmp/a.db\n"
                          "cluster: { redis: \"redis://x\", replica: a }\n" ROUTE);
  fl_conf_t *b = parse_ok("# replica b\nworkers: 3\nlisten: 127.0.0.1:8002\nadmin: { listen: 127.0.0.1:9002 }\n"
                          "cluster: { replica: b, redis: \"redis://x\" }\n" ROUTE);
  fl_conf_t *other = parse_ok("listen: 127.0.0.1:8001\ncluster: { redis: \"redis://x\", replica: a }\n" ROUTE
                              "timeouts: { connect: 3s }\n");
  assert_int_equal(strlen(a->fleet_hash), 16);
  assert_string_equal(a->fleet_hash, b->fleet_hash);
  assert_string_not_equal(a->fleet_hash, other->fleet_hash);
  fl_conf_unref(a);
  fl_conf_unref(b);
  fl_conf_unref(other);
}

/* A rollout gated on PromQL needs a Prometheus to ask; the address is checked like any URL. */
static void query_checks_need_analysis_prometheus(void **state) {
  const char *spec = "    rollout: { checks: [{ query: \"sum(rate(e{v=\\\"{{canary}}\\\"}[1m]))\", max: 0.01 }] }\n";
  char yaml[512];
  snprintf(yaml, sizeof yaml, "%s%s", ROUTE, spec);
  expect_error_at(yaml, "2:5", "route r: its rollout has query checks: set analysis.prometheus");
  snprintf(yaml, sizeof yaml, "analysis: { prometheus: \"http://127.0.0.1:9090\" }\n%s%s", ROUTE, spec);
  fl_conf_t *c = parse_ok(yaml);
  assert_string_equal(c->prometheus_url, "http://127.0.0.1:9090");
  fl_conf_unref(c);
  expect_error_at("analysis: { prometheus: \"ftp://x\" }\n" ROUTE, "1:25", "analysis.prometheus \"ftp://x\"");
}

static void cluster_mistakes_are_named_where_they_are(void **state) {
  unsetenv("FL_TEST_REDIS_UNSET");
  expect_error_at(ROUTE "cluster: { name: prod }\n", "4:10", "cluster needs redis");
  expect_error_at(ROUTE "cluster: { redis: \"http://x:6379\" }\n", "4:19", "cluster.redis must be redis://");
  expect_error_at(ROUTE "cluster: { redis: \"redis://:pw@x\" }\n", "4:19", "cluster.redis must not hold a password");
  expect_error_at(ROUTE "cluster: { redis: \"redis://x:99999\" }\n", "4:19", "cluster.redis \"redis://x:99999\": the port");
  expect_error_at(ROUTE "cluster: { redis: \"redis://x/abc\" }\n", "4:19", "cluster.redis \"redis://x/abc\": the database");
  expect_error_at(ROUTE "cluster: { redis: \"redis:///0\" }\n", "4:19", "cluster.redis \"redis:///0\" has no host");
  expect_error_at(ROUTE "cluster: { redis: \"redis://x\", password_env: FL_TEST_REDIS_UNSET }\n", "4:46",
                  "cluster.password_env: environment variable FL_TEST_REDIS_UNSET is not set");
  expect_error_at(ROUTE "cluster: { redis: \"redis://x\", name: \"a b\" }\n", "4:38", "cluster.name must be 1 to 64");
  expect_error_at(ROUTE "cluster: { redis: \"redis://x\", replica: \"\" }\n", "4:41", "replica must not be empty");
  expect_error_at(ROUTE "cluster: { redis: \"redis://x\", lease: 100ms }\n", "4:39", "cluster.lease must be from 500ms");
  expect_error_at(ROUTE "cluster: { redis: \"redis://x\", leader: yes }\n", "4:32", "unknown key \"leader\" in cluster");
  expect_error_at(ROUTE "cluster: redis://x\n", "4:10", "cluster must be a mapping");
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(example_top_level),
    cmocka_unit_test(example_route),
    cmocka_unit_test(example_variants),
    cmocka_unit_test(example_rules),
    cmocka_unit_test(defaults_for_a_minimal_file),
    cmocka_unit_test(canary_weight_becomes_basis_points),
    cmocka_unit_test(workers_number_sizes_regex_copies),
    cmocka_unit_test(durations_accept_units_and_bare_seconds),
    cmocka_unit_test(trusted_proxies_and_override_from_are_lists_of_blocks),
    cmocka_unit_test(snapshot_lives_until_last_reference),
    cmocka_unit_test(yaml_syntax_errors_use_libyaml_position),
    cmocka_unit_test(unknown_keys_are_named_with_a_suggestion),
    cmocka_unit_test(wrong_types_are_reported_where_they_are),
    cmocka_unit_test(listen_takes_a_list_of_distinct_addresses_and_tls_needs_a_readable_certificate),
    cmocka_unit_test(duplicate_keys_and_route_names),
    cmocka_unit_test(bad_values),
    cmocka_unit_test(bad_workers_and_durations),
    cmocka_unit_test(missing_required_parts),
    cmocka_unit_test(user_key_sources),
    cmocka_unit_test(rule_mistakes),
    cmocka_unit_test(canary_rule_needs_a_canary),
    cmocka_unit_test(bad_regex_points_at_the_pattern),
    cmocka_unit_test(error_message_is_truncated_not_overflowed),
    cmocka_unit_test(every_prefix_of_the_example_is_handled),
    cmocka_unit_test(load_missing_file_names_it),
    cmocka_unit_test(load_reads_a_file_and_names_it_in_errors),
    cmocka_unit_test(admin_token_comes_from_the_named_environment_variable),
    cmocka_unit_test(read_and_feedback_tokens_are_scopes_of_their_own),
    cmocka_unit_test(names_and_versions_are_short_and_printable),
    cmocka_unit_test(a_rollout_spec_with_a_complex_key_or_a_huge_number_is_refused_cleanly),
    cmocka_unit_test(a_regex_too_costly_to_compile_is_refused_before_compiling),
    cmocka_unit_test(host_names_are_kept_for_the_resolver_beside_the_addresses),
    cmocka_unit_test(a_name_alone_is_enough_and_listing_it_twice_is_not),
    cmocka_unit_test(resolve_is_inherited_from_the_file_to_the_route_to_the_variant),
    cmocka_unit_test(a_reparse_is_the_same_config_whatever_the_file_says_now),
    cmocka_unit_test(without_cluster_there_is_no_cluster),
    cmocka_unit_test(cluster_keys_and_their_defaults),
    cmocka_unit_test(the_fleet_hash_leaves_out_what_each_replica_sets_for_itself),
    cmocka_unit_test(cluster_mistakes_are_named_where_they_are),
    cmocka_unit_test(query_checks_need_analysis_prometheus),
    cmocka_unit_test(https_backends_default_to_443_and_are_asked_for_their_own_host),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
