/* test_router.c — the variant decision as a specification: sticky split spread and
 * monotonicity, override and rule precedence, user-key sources, route matching. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>

#include "router.h"

/* ---- a fake request ---- */

typedef struct {
  const char *headers[8][2];   /* lower-case name, value */
  const char *country;
  struct sockaddr_in peer;
} fake_req_t;

static const char *fake_header(void *ctx, const char *lname, size_t *len) {
  fake_req_t *r = ctx;
  for (int i = 0; i < 8 && r->headers[i][0]; i++)
    if (strcmp(r->headers[i][0], lname) == 0) {
      *len = strlen(r->headers[i][1]);
      return r->headers[i][1];
    }
  return NULL;
}

static const char *fake_country(void *ctx) { return ((fake_req_t *)ctx)->country; }

static fl_req_view_t view_of(fake_req_t *r, const char *ip, bool trusted, const char *query, const char *body) {
  r->peer.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &r->peer.sin_addr);
  fl_req_view_t v = {.path = "/v1/chat/completions", .path_len = 20, .query = query, .query_len = strlen(query),
                     .peer = (struct sockaddr *)&r->peer, .trusted = trusted, .header = fake_header,
                     .country = fake_country, .ctx = r, .has_body = body != NULL, .body = body,
                     .body_len = body ? strlen(body) : 0, .body_complete = true};
  return v;
}

static fl_conf_t *load(const char *yaml) {
  char err[512];
  fl_conf_t *c = NULL;
  int rc = fl_conf_parse("t.yaml", yaml, strlen(yaml), &c, err, sizeof err);
  if (rc != 0) fprintf(stderr, "%s\n", err);
  assert_int_equal(rc, 0);
  return c;
}

static const char *ROUTES =
    "routes:\n"
    "  - name: chat\n"
    "    match: { path_prefix: /v1/ }\n"
    "    user_key: [header:x-user-id, json:user, cookie:uid, query:uid, ip]\n"
    "    stable: { version: v1, backends: [127.0.0.1:9001] }\n"
    "    canary: { version: v2, backends: [127.0.0.1:9002], weight: 20 }\n"
    "    rules:\n"
    "      - match: { header: { x-version: v2 } }\n"
    "        variant: canary\n"
    "      - match: { header: { x-version: v2 }, cidr: [10.0.0.0/8] }\n"
    "        variant: stable\n"
    "      - match: { header_regex: { user-agent: \"^beta-\" } }\n"
    "        variant: canary\n"
    "      - match: { country: [DE] }\n"
    "        variant: canary\n"
    "      - match: { segment: [staff] }\n"
    "        variant: stable\n"
    "      - match: { cookie: { force: old } }\n"
    "        variant: stable\n"
    "  - name: chat-eu\n"
    "    match: { path_prefix: /v1/chat/, host: eu.example.com }\n"
    "    stable: { version: v1, backends: [127.0.0.1:9003] }\n"
    "  - name: root\n"
    "    match: { path_prefix: / }\n"
    "    stable: { version: v1, backends: [127.0.0.1:9004] }\n";

static fl_decision_t decide(const fl_route_t *r, fake_req_t *req, const char *ip, bool trusted, const char *query,
                            const char *body) {
  fl_req_view_t v = view_of(req, ip, trusted, query, body);
  fl_decision_t d;
  assert_int_equal(fl_router_decide(r, &v, 0, &d), 0);
  return d;
}

/* ---- the sticky split ---- */

static void buckets_spread_evenly_over_a_million_keys(void **state) {
  unsigned deciles[10] = {0};
  char key[32];
  for (int i = 0; i < 1000000; i++) {
    int n = snprintf(key, sizeof key, "user-%d", i);
    deciles[fl_router_bucket("chat", key, (size_t)n) / 1000]++;
  }
  for (int d = 0; d < 10; d++) {   /* each tenth of the bucket space holds 10% ± 1% of the keys */
    assert_in_range(deciles[d], 99000, 101000);
  }
}

static void canary_share_matches_weight_within_one_percent(void **state) {
  static const uint32_t weights_bp[] = {100, 500, 2000, 5000, 9900};
  char key[32];
  for (size_t w = 0; w < sizeof weights_bp / sizeof *weights_bp; w++) {
    unsigned canary = 0;
    for (int i = 0; i < 1000000; i++) {
      int n = snprintf(key, sizeof key, "u%d@example.com", i);
      canary += fl_router_is_canary(fl_router_bucket("salt", key, (size_t)n), weights_bp[w]);
    }
    double want = weights_bp[w] / 10000.0;
    assert_true(canary / 1e6 > want - 0.01 && canary / 1e6 < want + 0.01);
  }
}

static void raising_the_weight_never_moves_a_user_back_to_stable(void **state) {
  char key[32];
  for (int i = 0; i < 100000; i++) {
    int n = snprintf(key, sizeof key, "user-%d", i);
    uint32_t b = fl_router_bucket("chat", key, (size_t)n);
    bool was_canary = false;
    for (uint32_t w = 0; w <= 10000; w += 25) {
      bool now = fl_router_is_canary(b, w);
      assert_false(was_canary && !now);
      was_canary = now;
    }
    assert_true(was_canary);     /* at 100% everyone is on the canary */
  }
}

static void the_same_key_gets_the_same_bucket_and_salt_changes_it(void **state) {
  assert_int_equal(fl_router_bucket("chat", "alice", 5), fl_router_bucket("chat", "alice", 5));
  unsigned same = 0;
  char key[16];
  for (int i = 0; i < 1000; i++) {
    int n = snprintf(key, sizeof key, "k%d", i);
    same += fl_router_bucket("a", key, (size_t)n) == fl_router_bucket("b", key, (size_t)n);
  }
  assert_true(same < 10);
}

/* ---- precedence ---- */

static void trusted_override_beats_rules_and_untrusted_is_ignored(void **state) {
  fl_conf_t *c = load(ROUTES);
  const fl_route_t *r = &c->routes[0];
  fake_req_t req = {.headers = {{"x-fledge-variant", "stable"}, {"x-version", "v2"}}};
  fl_decision_t d = decide(r, &req, "127.0.0.1", true, "", NULL);
  assert_int_equal(d.why, FL_WHY_OVERRIDE);
  assert_int_equal(d.variant, FL_STABLE);
  d = decide(r, &req, "203.0.113.9", false, "", NULL);
  assert_int_equal(d.why, FL_WHY_RULE);
  assert_int_equal(d.variant, FL_CANARY);
  fl_conf_unref(c);
}

static void the_first_fitting_rule_wins(void **state) {
  fl_conf_t *c = load(ROUTES);
  const fl_route_t *r = &c->routes[0];
  /* rule 0 (x-version: v2 → canary) comes before rule 1 (same header from 10/8 → stable) */
  fake_req_t req = {.headers = {{"x-version", "v2"}}};
  fl_decision_t d = decide(r, &req, "10.1.2.3", false, "", NULL);
  assert_int_equal(d.rule_index, 0);
  assert_int_equal(d.variant, FL_CANARY);
  fake_req_t beta = {.headers = {{"user-agent", "beta-client/1.0"}, {"x-user-segment", "staff"}}};
  d = decide(r, &beta, "10.1.2.3", false, "", NULL);
  assert_int_equal(d.rule_index, 2);
  fake_req_t staff = {.headers = {{"x-user-segment", "STAFF"}}};
  d = decide(r, &staff, "10.1.2.3", false, "", NULL);
  assert_int_equal(d.why, FL_WHY_RULE);
  assert_int_equal(d.rule_index, 4);
  assert_int_equal(d.variant, FL_STABLE);
  fake_req_t german = {.country = "DE"};
  d = decide(r, &german, "10.1.2.3", false, "", NULL);
  assert_int_equal(d.rule_index, 3);
  fake_req_t cookie = {.headers = {{"cookie", "a=1; force=old; b=2"}}};
  d = decide(r, &cookie, "10.1.2.3", false, "", NULL);
  assert_int_equal(d.rule_index, 5);
  fl_conf_unref(c);
}

/* ---- user keys ---- */

static void user_key_sources_are_tried_in_order(void **state) {
  fl_conf_t *c = load(ROUTES);
  const fl_route_t *r = &c->routes[0];
  fake_req_t req = {.headers = {{"x-user-id", "alice"}, {"cookie", "uid=bob"}}};
  fl_decision_t d = decide(r, &req, "10.0.0.1", false, "uid=carol", "{\"user\":\"dave\"}");
  assert_int_equal(d.why, FL_WHY_STICKY);
  assert_int_equal(d.bucket, fl_router_bucket("chat", "alice", 5));
  fake_req_t no_header = {.headers = {{"cookie", "uid=bob"}}};
  d = decide(r, &no_header, "10.0.0.1", false, "uid=carol", "{\"model\":\"m\",\"user\":\"dave\"}");
  assert_int_equal(d.bucket, fl_router_bucket("chat", "dave", 4));
  d = decide(r, &no_header, "10.0.0.1", false, "uid=carol", NULL);
  assert_int_equal(d.bucket, fl_router_bucket("chat", "bob", 3));
  fake_req_t bare = {0};
  d = decide(r, &bare, "10.0.0.1", false, "x=1&uid=carol", NULL);
  assert_int_equal(d.bucket, fl_router_bucket("chat", "carol", 5));
  d = decide(r, &bare, "10.0.0.1", false, "", NULL);
  assert_int_equal(d.bucket, fl_router_bucket("chat", "10.0.0.1", 8));
  fl_conf_unref(c);
}

static void a_json_key_asks_for_the_body_first(void **state) {
  fl_conf_t *c = load(ROUTES);
  fake_req_t req = {0};
  fl_req_view_t v = view_of(&req, "10.0.0.1", false, "", NULL);
  v.has_body = true;
  fl_decision_t d;
  assert_int_equal(fl_router_decide(&c->routes[0], &v, 0, &d), 1);
  fl_conf_unref(c);
}

static void without_a_key_the_choice_is_weighted_random(void **state) {
  fl_conf_t *c = load("routes:\n  - name: r\n    stable: { version: a, backends: [127.0.0.1:1] }\n"
                      "    canary: { version: b, backends: [127.0.0.1:2], weight: 30 }\n");
  fake_req_t req = {0};
  fl_req_view_t v = view_of(&req, "10.0.0.1", false, "", NULL);
  unsigned canary = 0;
  for (uint32_t i = 0; i < 10000; i++) {
    fl_decision_t d;
    fl_router_decide(&c->routes[0], &v, i * 2654435761u, &d);
    assert_int_equal(d.why, FL_WHY_RANDOM);
    canary += d.variant == FL_CANARY;
  }
  assert_in_range(canary, 2800, 3200);
  fl_conf_unref(c);
}

/* ---- explanations ---- */

static void explanations_name_the_key_source_and_judge_each_rule_as_the_decision_does(void **state) {
  fl_conf_t *c = load(ROUTES);
  const fl_route_t *r = &c->routes[0];
  char key[64];
  size_t len = 0, source = 99;
  fake_req_t no_header = {.headers = {{"cookie", "uid=bob"}}};
  fl_req_view_t v = view_of(&no_header, "10.0.0.1", false, "uid=carol", NULL);
  assert_int_equal(fl_router_user_key(r, &v, key, sizeof key, &len, &source), 0);
  assert_int_equal(source, 2);                          /* cookie:uid, the first the request has */
  assert_memory_equal(key, "bob", len);
  v.has_body = true;                                    /* json:user comes before it: body first */
  assert_int_equal(fl_router_user_key(r, &v, key, sizeof key, &len, &source), 1);
  assert_int_equal(source, 1);

  fake_req_t v2 = {.headers = {{"x-version", "v2"}}};
  v = view_of(&v2, "10.1.1.1", false, "", NULL);
  assert_true(fl_router_rule_fits(&r->rules[0], r, &v));
  assert_true(fl_router_rule_fits(&r->rules[1], r, &v));
  v = view_of(&v2, "192.0.2.1", false, "", NULL);
  assert_false(fl_router_rule_fits(&r->rules[1], r, &v));      /* one condition of two fails */
  fl_conf_t *none = load("routes:\n  - name: r\n    stable: { version: a, backends: [127.0.0.1:1] }\n");
  assert_int_equal(fl_router_user_key(&none->routes[0], &v, key, sizeof key, &len, &source), FL_ENOENT);
  fl_conf_unref(none);
  fl_conf_unref(c);
}

/* ---- routes ---- */

static void the_longest_fitting_prefix_on_the_right_host_wins(void **state) {
  fl_conf_t *c = load(ROUTES);
  assert_string_equal(fl_router_match(c, "eu.example.com", 14, "/v1/chat/completions", 20)->name, "chat-eu");
  assert_string_equal(fl_router_match(c, "us.example.com", 14, "/v1/chat/completions", 20)->name, "chat");
  assert_string_equal(fl_router_match(c, "us.example.com", 14, "/health", 7)->name, "root");
  fl_conf_unref(c);
  c = load("routes:\n"            /* the same prefix with and without a host: the host's, in any order */
           "  - name: any\n    stable: { version: v1, backends: [127.0.0.1:9001] }\n"
           "  - name: eu\n    match: { host: eu.example.com }\n    stable: { version: v1, backends: [127.0.0.1:9002] }\n");
  assert_string_equal(fl_router_match(c, "eu.example.com", 14, "/v1/x", 5)->name, "eu");
  assert_string_equal(fl_router_match(c, "us.example.com", 14, "/v1/x", 5)->name, "any");
  fl_conf_unref(c);
}

static void cookies_and_queries_are_parsed_exactly(void **state) {
  size_t len;
  const char *v = fl_cookie_get("a=1; uid=42; uidx=9", 19, "uid", &len);
  assert_non_null(v);
  assert_int_equal(len, 2);
  assert_memory_equal(v, "42", 2);
  assert_null(fl_cookie_get("auid=1", 6, "uid", &len));
  v = fl_query_get("model=x&uid=7&flag", 18, "flag", &len);
  assert_non_null(v);
  assert_int_equal(len, 0);
  assert_null(fl_query_get("xuid=1", 6, "uid", &len));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(buckets_spread_evenly_over_a_million_keys),
      cmocka_unit_test(canary_share_matches_weight_within_one_percent),
      cmocka_unit_test(raising_the_weight_never_moves_a_user_back_to_stable),
      cmocka_unit_test(the_same_key_gets_the_same_bucket_and_salt_changes_it),
      cmocka_unit_test(trusted_override_beats_rules_and_untrusted_is_ignored),
      cmocka_unit_test(the_first_fitting_rule_wins),
      cmocka_unit_test(user_key_sources_are_tried_in_order),
      cmocka_unit_test(a_json_key_asks_for_the_body_first),
      cmocka_unit_test(without_a_key_the_choice_is_weighted_random),
      cmocka_unit_test(explanations_name_the_key_source_and_judge_each_rule_as_the_decision_does),
      cmocka_unit_test(the_longest_fitting_prefix_on_the_right_host_wins),
      cmocka_unit_test(cookies_and_queries_are_parsed_exactly),
  };
  return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
