/* test_redact.c — what a read may show of a URL or a JSON tree as a specification: where a
 * receiver is (scheme, host, port, query names) stays, every place a credential can hide
 * (userinfo, path, query values, fragment, headers, credential-named keys) does not. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "redact.h"

static char *url(const char *in) {
  static char out[512];
  fl_buf_t b = {0};
  fl_redact_url(&b, in, strlen(in));
  assert_int_equal(b.err, 0);
  snprintf(out, sizeof out, "%.*s", (int)b.len, b.data);
  fl_buf_free(&b);
  return out;
}

static void expect_text(const char *in, const char *want) {
  char *got = fl_redact_text(in);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(got);
}

static void test_scheme_host_and_port_are_kept(void **state) {
  assert_string_equal(url("http://127.0.0.1:9999"), "http://127.0.0.1:9999");
  assert_string_equal(url("http://127.0.0.1:9999/"), "http://127.0.0.1:9999/");
  assert_string_equal(url("https://hooks.example"), "https://hooks.example");
  assert_string_equal(url("http://[::1]:8080/"), "http://[::1]:8080/");
}

static void test_userinfo_becomes_redacted(void **state) {
  assert_string_equal(url("https://user:pa55@hooks.example/"), "https://REDACTED@hooks.example/");
  assert_string_equal(url("https://only-user@hooks.example"), "https://REDACTED@hooks.example");
  /* an '@' in the password: everything up to the last '@' of the authority */
  assert_string_equal(url("https://u:p@ss@hooks.example:8443/"), "https://REDACTED@hooks.example:8443/");
}

static void test_a_path_is_shown_as_an_ellipsis(void **state) {
  /* Slack- and Discord-style hooks keep their key in the path */
  assert_string_equal(url("https://hooks.slack.com/services/T0/B0/XXXXSECRET"), "https://hooks.slack.com/\xe2\x80\xa6");
  assert_string_equal(url("http://127.0.0.1:9999/hook"), "http://127.0.0.1:9999/\xe2\x80\xa6");
}

static void test_query_values_are_redacted_and_their_names_kept(void **state) {
  assert_string_equal(url("https://hooks.example/h?token=abc&v=2"),
                      "https://hooks.example/\xe2\x80\xa6?token=REDACTED&v=REDACTED");
  assert_string_equal(url("https://hooks.example?abc123"), "https://hooks.example?REDACTED");
  assert_string_equal(url("https://hooks.example/?a=&&b"), "https://hooks.example/?a=REDACTED&&REDACTED");
  assert_string_equal(url("https://hooks.example/?"), "https://hooks.example/?");
}

static void test_a_fragment_is_shown_as_an_ellipsis(void **state) {
  assert_string_equal(url("https://hooks.example/#key"), "https://hooks.example/#\xe2\x80\xa6");
  assert_string_equal(url("https://u:p@h.example/x?t=1#f"),
                      "https://REDACTED@h.example/\xe2\x80\xa6?t=REDACTED#\xe2\x80\xa6");
}

static void test_text_that_is_not_a_url_is_redacted_whole(void **state) {
  assert_string_equal(url("hooks.example/secret"), "REDACTED");
}

static void test_urls_inside_text_are_redacted_where_they_stand(void **state) {
  expect_text("no url here", "no url here");
  expect_text("post to https://a:b@h.example/x?token=t then stop",
              "post to https://REDACTED@h.example/\xe2\x80\xa6?token=REDACTED then stop");
  /* inside JSON text a URL ends at its closing quote; other schemes count too */
  expect_text("{\"url\":\"http://127.0.0.1:1/hook?token=t\",\"r\":\"redis://u:p@10.0.0.1:6379\"}",
              "{\"url\":\"http://127.0.0.1:1/\xe2\x80\xa6?token=REDACTED\",\"r\":\"redis://REDACTED@10.0.0.1:6379\"}");
  /* a URL as the value of another's query is part of that query */
  expect_text("https://h.example/?next=https://x.example/?t=1", "https://h.example/?next=REDACTED");
  expect_text(":// alone", ":// alone");
}

static void test_json_trees_lose_urls_headers_and_credentials_wherever_they_are(void **state) {
  json_t *j = json_pack("{s:[{s:s, s:[s]}], s:{s:s, s:s}, s:s, s:i, s:s, s:{s:s}}", "webhooks", "url",
                        "https://u:p@hooks.example/x?token=t", "on", "step", "headers", "authorization", "Bearer abc",
                        "x-api-key", "k", "token", "tok", "steps", 3, "name", "chat", "nested", "api_key", "k2");
  fl_redact_json(j);
  char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(text, "{\"headers\":{\"authorization\":\"REDACTED\",\"x-api-key\":\"REDACTED\"},"
                            "\"name\":\"chat\",\"nested\":{\"api_key\":\"REDACTED\"},\"steps\":3,\"token\":\"REDACTED\","
                            "\"webhooks\":[{\"on\":[\"step\"],\"url\":\"https://REDACTED@hooks.example/\xe2\x80\xa6"
                            "?token=REDACTED\"}]}");
  free(text);
  json_decref(j);
  assert_null(fl_redact_json(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scheme_host_and_port_are_kept),
      cmocka_unit_test(test_userinfo_becomes_redacted),
      cmocka_unit_test(test_a_path_is_shown_as_an_ellipsis),
      cmocka_unit_test(test_query_values_are_redacted_and_their_names_kept),
      cmocka_unit_test(test_a_fragment_is_shown_as_an_ellipsis),
      cmocka_unit_test(test_text_that_is_not_a_url_is_redacted_whole),
      cmocka_unit_test(test_urls_inside_text_are_redacted_where_they_stand),
      cmocka_unit_test(test_json_trees_lose_urls_headers_and_credentials_wherever_they_are),
  };
  return cmocka_run_group_tests_name("redact", tests, NULL, NULL);
}
