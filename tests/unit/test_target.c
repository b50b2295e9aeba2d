/* test_target.c — request targets as the gateway routes and forwards them: what is matched for
 * each spelling of a path, absolute-form split, and what is refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "target.h"

/* The normalised path of url (or the refusal's words prefixed by "!"), into out. */
static const char *path_of(const char *url, char *out, size_t cap) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", url);
  fl_target_t t;
  const char *why = NULL;
  if (fl_target_parse(buf, strlen(buf), &t, &why) != 0) snprintf(out, cap, "!%s", why);
  else snprintf(out, cap, "%.*s", (int)t.path_len, t.path);
  return out;
}

static void test_dot_segments_are_removed_and_never_climb_above_the_root(void **state) {
  (void)state;
  char p[256];
  assert_string_equal(path_of("/v1/chat/../../metrics", p, sizeof p), "/metrics");
  assert_string_equal(path_of("/a/./b/../c", p, sizeof p), "/a/c");
  assert_string_equal(path_of("/../../x", p, sizeof p), "/x");
  assert_string_equal(path_of("/a/..", p, sizeof p), "/");
  assert_string_equal(path_of("/a/.", p, sizeof p), "/a/");
  assert_string_equal(path_of("/a/b/", p, sizeof p), "/a/b/");
  assert_string_equal(path_of("//double//slash", p, sizeof p), "//double//slash");   /* kept as sent */
  assert_string_equal(path_of("/a..b/.c/..d", p, sizeof p), "/a..b/.c/..d");         /* not dot-segments */
}

static void test_encoded_unreserved_characters_are_decoded_and_others_kept(void **state) {
  (void)state;
  char p[256];
  assert_string_equal(path_of("/v1/chat/%2e%2E/%2e%2e/metrics", p, sizeof p), "/metrics");
  assert_string_equal(path_of("/v1/%63hat/%7Euser", p, sizeof p), "/v1/chat/~user");
  assert_string_equal(path_of("/a%20b/%3F", p, sizeof p), "/a%20b/%3F");
  assert_string_equal(path_of("/bad%zz/%4", p, sizeof p), "/bad%zz/%4");
}

static void test_encoded_slashes_and_backslashes_are_refused(void **state) {
  (void)state;
  char p[256];
  assert_string_equal(path_of("/v1/chat%2F..%2Fmetrics", p, sizeof p), "!encoded slash in the path");
  assert_string_equal(path_of("/v1/chat%5c..", p, sizeof p), "!encoded slash in the path");
  assert_string_equal(path_of("/v1\\..\\metrics", p, sizeof p), "!backslash in the path");
}

static void test_the_query_is_apart_and_untouched(void **state) {
  (void)state;
  char buf[] = "/a/../b?x=/../%2F&y";
  fl_target_t t;
  const char *why;
  assert_int_equal(fl_target_parse(buf, strlen(buf), &t, &why), 0);
  assert_int_equal(t.path_len, 2);
  assert_memory_equal(t.path, "/b", 2);
  assert_int_equal(t.query_len, strlen("x=/../%2F&y"));
  assert_memory_equal(t.query, "x=/../%2F&y", t.query_len);
  assert_null(t.authority);
}

static void test_absolute_form_gives_its_authority_and_an_origin_form_path(void **state) {
  (void)state;
  char buf[] = "HTTP://Internal.example:8000/v1/x/../y?q=1";
  fl_target_t t;
  const char *why;
  assert_int_equal(fl_target_parse(buf, strlen(buf), &t, &why), 0);
  assert_int_equal(t.authority_len, strlen("Internal.example:8000"));
  assert_memory_equal(t.authority, "Internal.example:8000", t.authority_len);
  assert_int_equal(t.path_len, 5);
  assert_memory_equal(t.path, "/v1/y", 5);
  assert_memory_equal(t.query, "q=1", 3);
  char bare[] = "https://a.example";
  assert_int_equal(fl_target_parse(bare, strlen(bare), &t, &why), 0);
  assert_int_equal(t.path_len, 1);
  assert_memory_equal(t.path, "/", 1);
  char p[256];
  assert_string_equal(path_of("http://user@a/x", p, sizeof p), "!invalid authority in the URL");
  assert_string_equal(path_of("http:///x", p, sizeof p), "!invalid authority in the URL");
  assert_string_equal(path_of("ftp://a/x", p, sizeof p), "!URL is neither a path nor http(s)://");
  assert_string_equal(path_of("x/y", p, sizeof p), "!URL is neither a path nor http(s)://");
  assert_string_equal(path_of("*", p, sizeof p), "*");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dot_segments_are_removed_and_never_climb_above_the_root),
      cmocka_unit_test(test_encoded_unreserved_characters_are_decoded_and_others_kept),
      cmocka_unit_test(test_encoded_slashes_and_backslashes_are_refused),
      cmocka_unit_test(test_the_query_is_apart_and_untouched),
      cmocka_unit_test(test_absolute_form_gives_its_authority_and_an_origin_form_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
