/* test_ui.c — the dashboard's embedded files: where each is served, with which type and
 * validator, and when a client's cached copy is current. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ui.h"

static void test_the_page_is_at_the_root_and_its_script_and_styles_under_ui(void **state) {
  (void)state;
  const fl_ui_asset_t *page = fl_ui_find("/"), *js = fl_ui_find("/ui/app.js"), *css = fl_ui_find("/ui/app.css");
  assert_non_null(page);
  assert_non_null(js);
  assert_non_null(css);
  assert_string_equal(page->content_type, "text/html; charset=utf-8");
  assert_string_equal(js->content_type, "text/javascript; charset=utf-8");
  assert_string_equal(css->content_type, "text/css; charset=utf-8");
  assert_non_null(strstr((const char *)page->data, "/ui/app.js"));
  assert_int_equal(strlen((const char *)js->data), js->len);      /* whole, and NUL-terminated */
}

static void test_nothing_else_is_found(void **state) {
  (void)state;
  assert_null(fl_ui_find("/index.html"));      /* the page has one address */
  assert_null(fl_ui_find("/ui/"));
  assert_null(fl_ui_find("/ui/app.js/"));
  assert_null(fl_ui_find("/app.js"));
  assert_null(fl_ui_find(""));
}

static void test_each_file_has_its_own_quoted_etag(void **state) {
  (void)state;
  for (size_t i = 0; i < fl_ui_n_assets; i++) {
    const char *e = fl_ui_assets[i].etag;
    assert_true(strlen(e) > 2 && e[0] == '"' && e[strlen(e) - 1] == '"');
    for (size_t j = 0; j < i; j++) assert_string_not_equal(e, fl_ui_assets[j].etag);
  }
}

static bool matches(const char *header, const char *etag) { return fl_ui_etag_matches(header, strlen(header), etag); }

static void test_a_cached_copy_is_current_when_if_none_match_names_its_etag(void **state) {
  (void)state;
  const char *etag = "\"abc123\"";
  assert_true(matches("\"abc123\"", etag));
  assert_true(matches("W/\"abc123\"", etag));              /* If-None-Match compares weakly */
  assert_true(matches("\"old\", \"abc123\"", etag));
  assert_true(matches(" \"old\" ,\t\"abc123\" ", etag));
  assert_true(matches("*", etag));
  assert_false(matches("\"abc12\"", etag));
  assert_false(matches("abc123", etag));                  /* unquoted is another tag */
  assert_false(matches("\"abc123\"x", etag));
  assert_false(matches("", etag));
  assert_false(matches(",,", etag));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_the_page_is_at_the_root_and_its_script_and_styles_under_ui),
      cmocka_unit_test(test_nothing_else_is_found),
      cmocka_unit_test(test_each_file_has_its_own_quoted_etag),
      cmocka_unit_test(test_a_cached_copy_is_current_when_if_none_match_names_its_etag),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
