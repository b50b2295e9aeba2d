/* test_jsonscan.c — the top-level field scan as a specification: only top-level keys match,
 * strings and numbers come back as raw spans, malformed or cut-off input is a parse error,
 * and the scan never looks past len (every input sits in a buffer of exactly len bytes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "jsonscan.h"

/* Scans the first len bytes of json from a heap copy of exactly len bytes, no NUL after it,
 * so that AddressSanitizer or valgrind report any read past the end. On success the value's
 * raw text is copied into val (NUL-terminated) and *is_string is set. */
static int scan_n(const char *json, size_t len, const char *key, char *val, size_t cap, bool *is_string) {
  char *b = malloc(len ? len : 1);
  assert_non_null(b);
  memcpy(b, json, len);
  fl_json_span_t span = {.start = 12345, .len = 12345};
  int rc = fl_json_top_field(b, len, key, &span);
  if (rc == 0) {
    assert_true(span.start <= len && span.len <= len - span.start);
    assert_true(span.len < cap);
    memcpy(val, b + span.start, span.len);
    val[span.len] = '\0';
    if (is_string) *is_string = span.is_string;
  }
  free(b);
  return rc;
}

static int scan(const char *json, const char *key, char *val, size_t cap, bool *is_string) {
  return scan_n(json, strlen(json), key, val, cap, is_string);
}

/* Asserts that key's value in json is want (raw text) and whether it is a string. */
static void expect_field(const char *json, const char *key, const char *want, bool want_string) {
  char val[256];
  bool is_string = !want_string;
  int rc = scan(json, key, val, sizeof val, &is_string);
  if (rc != 0) fail_msg("%s in %s: rc %d, expected the value %s", key, json, rc, want);
  if (strcmp(val, want) != 0) fail_msg("%s in %s: got '%s', expected '%s'", key, json, val, want);
  if (is_string != want_string) fail_msg("%s in %s: is_string %d, expected %d", key, json, is_string, want_string);
}

static void expect_rc(const char *json, const char *key, int want) {
  char val[256];
  int rc = scan(json, key, val, sizeof val, NULL);
  if (rc != want) fail_msg("%s in '%s': rc %d, expected %d", key, json, rc, want);
}

/* ---- finding values ---- */

static void test_a_string_value_is_the_bytes_between_its_quotes(void **state) {
  expect_field("{\"user\":\"alice\"}", "user", "alice", true);
  expect_field("{\"model\":\"gpt-4o\",\"user\":\"u-17\"}", "user", "u-17", true);
  expect_field("{\"model\":\"gpt-4o\",\"user\":\"u-17\"}", "model", "gpt-4o", true);
  expect_field("{\"user\":\"\"}", "user", "", true);
}

static void test_numbers_and_literals_are_raw_text_and_not_strings(void **state) {
  expect_field("{\"user\":12345}", "user", "12345", false);
  expect_field("{\"user\":-1.5e+3,\"b\":1}", "user", "-1.5e+3", false);
  expect_field("{\"a\":true,\"b\":false,\"c\":null}", "a", "true", false);
  expect_field("{\"a\":true,\"b\":false,\"c\":null}", "b", "false", false);
  expect_field("{\"a\":true,\"b\":false,\"c\":null}", "c", "null", false);
}

static void test_object_and_array_values_span_their_brackets(void **state) {
  expect_field("{\"m\":{\"a\":[1,{\"b\":\"]}\"}]},\"x\":1}", "m", "{\"a\":[1,{\"b\":\"]}\"}]}", false);
  expect_field("{\"messages\":[{\"role\":\"user\"},{}],\"x\":1}", "messages", "[{\"role\":\"user\"},{}]", false);
  expect_field("{\"messages\":[{\"role\":\"user\"},{}],\"x\":1}", "x", "1", false);
}

static void test_a_nested_key_with_the_same_name_does_not_match(void **state) {
  expect_field("{\"meta\":{\"user\":\"inner\"},\"user\":\"outer\"}", "user", "outer", true);
  expect_field("{\"list\":[{\"user\":1},{\"user\":2}],\"user\":3}", "user", "3", false);
  expect_rc("{\"meta\":{\"user\":\"inner\"}}", "user", FL_ENOENT);
  expect_rc("{\"a\":[[{\"user\":1}]],\"b\":{\"c\":{\"user\":2}}}", "user", FL_ENOENT);
}

static void test_a_key_inside_a_string_value_does_not_match(void **state) {
  expect_rc("{\"note\":\"user\"}", "user", FL_ENOENT);
  expect_rc("{\"note\":\"{\\\"user\\\":\\\"fake\\\"}\"}", "user", FL_ENOENT);
  expect_field("{\"note\":\"\\\"user\\\":\\\"fake\\\"\",\"user\":\"real\"}", "user", "real", true);
  expect_field("{\"prompt\":\", \\\"user\\\": 1\",\"user\":2}", "user", "2", false);
}

static void test_escaped_quotes_and_backslashes_stay_inside_their_string(void **state) {
  /* the span is raw: escapes are not decoded */
  expect_field("{\"a\":\"say \\\"hi\\\"\",\"b\":2}", "a", "say \\\"hi\\\"", true);
  expect_field("{\"a\":\"say \\\"hi\\\"\",\"b\":2}", "b", "2", false);
  expect_field("{\"a\":\"ends in a backslash \\\\\",\"b\":\"x\"}", "a", "ends in a backslash \\\\", true);
  expect_field("{\"a\":\"ends in a backslash \\\\\",\"b\":\"x\"}", "b", "x", true);
  expect_field("{\"a\":\"\\u0022\",\"b\":\"y\"}", "b", "y", true);
  /* a key is compared as decoded */
  expect_field("{\"q\\\"k\":1,\"k\":2}", "k", "2", false);
  expect_field("{\"q\\\"k\":1,\"k\":2}", "q\"k", "1", false);
}

static void test_whitespace_is_allowed_everywhere_between_tokens(void **state) {
  const char *json = " \r\n\t{ \n\t\"a\" \r\n:\n 1 \t, \"b\"\t:\t\"v\" ,\n\"c\" : [ 1 , 2 ] , \"d\":{ } \n}\n ";
  expect_field(json, "a", "1", false);
  expect_field(json, "b", "v", true);
  expect_field(json, "c", "[ 1 , 2 ]", false);
  expect_field(json, "d", "{ }", false);
  expect_rc(json, "e", FL_ENOENT);
}

static void test_an_absent_key_is_enoent(void **state) {
  expect_rc("{}", "user", FL_ENOENT);
  expect_rc(" { \n } ", "user", FL_ENOENT);
  expect_rc("{\"model\":\"m\"}", "user", FL_ENOENT);
  expect_rc("{\"use\":1,\"users\":2,\"User\":3,\" user\":4}", "user", FL_ENOENT);
  expect_rc("{\"user\":1}", "use", FL_ENOENT);
  expect_rc("{\"user\":1}", "", FL_ENOENT);
  expect_field("{\"\":7}", "", "7", false);
}

/* JSON parsers differ on duplicates (Python keeps the last): a rewrite of the first would leave the
 * server reading the other, so the key twice is ambiguous; an escaped key is the name it decodes to. */
static void test_duplicate_keys_are_ambiguous_escaped_keys_decoded_and_a_bom_skipped(void **state) {
  expect_rc("{\"user\":\"first\",\"user\":\"second\"}", "user", FL_EINVAL);
  expect_rc("{\"model\":\"a\",\"x\":{\"model\":1},\"model\":\"b\"}", "model", FL_EINVAL);
  expect_field("{\"mod\\u0065l\":\"b\"}", "model", "b", true);            /* what a parser reads */
  expect_rc("{\"model\":\"a\",\"mod\\u0065l\":\"b\"}", "model", FL_EINVAL);
  expect_rc("{\"mod\\u00e9l\":\"b\"}", "model", FL_ENOENT);
  expect_field("\xEF\xBB\xBF{\"model\":\"m\"}", "model", "m", true);
  expect_field("{\"model\":\"a\",\"x\":{\"model\":1}}", "model", "a", true);   /* nested: not a duplicate */
}

/* ---- errors ---- */

static void test_anything_but_an_object_is_a_parse_error(void **state) {
  static const char *const not_objects[] = {"", "   ", "[1,2]", "[{\"user\":1}]", "\"user\"", "42", "null",
                                            "true", "user", "}"};
  for (size_t i = 0; i < FL_ARRAY_LEN(not_objects); i++) expect_rc(not_objects[i], "user", FL_EPARSE);
}

static void test_malformed_objects_are_parse_errors(void **state) {
  static const char *const bad[] = {
      "{\"a\" 1,\"user\":2}",          /* no colon */
      "{\"a\":1 \"user\":2}",          /* no comma */
      "{a:1,\"user\":2}",              /* unquoted key */
      "{'a':1,\"user\":2}",            /* single quotes */
      "{\"a\":,\"user\":2}",           /* no value */
      "{\"a\":1,,\"user\":2}",         /* two commas */
      "{,\"user\":2}",                 /* leading comma */
      "{\"a\":\"x\ny\",\"user\":2}",   /* raw control byte in a string */
      "{\"a\":1,}",                    /* trailing comma, key absent */
      "{\"a\":1]",                     /* wrong closer */
  };
  for (size_t i = 0; i < FL_ARRAY_LEN(bad); i++) expect_rc(bad[i], "user", FL_EPARSE);
}

/* Every cut of a body before the wanted value is complete is a parse error, never "absent":
 * a body cut short (limits.inspect_body_bytes) must not look like one without the key. */
static void test_input_cut_before_the_value_ends_is_a_parse_error(void **state) {
  static const char doc[] = "{ \"a\" : \"x\\\"y\", \"b\":[1,{\"c\":\"}\"}], \"user\" : \"u-1\" }";
  const char *end_of_value = strstr(doc, "u-1\"") + 4;    /* just after the closing quote */
  size_t complete = (size_t)(end_of_value - doc);
  char val[256];
  for (size_t len = 0; len < complete; len++) {
    int rc = scan_n(doc, len, "user", val, sizeof val, NULL);
    if (rc != FL_EPARSE) fail_msg("cut at %zu ('%.*s'): rc %d, expected FL_EPARSE", len, (int)len, doc, rc);
  }
  for (size_t len = complete; len <= sizeof doc - 1; len++) {
    assert_int_equal(scan_n(doc, len, "user", val, sizeof val, NULL), 0);
    assert_string_equal(val, "u-1");
  }
  /* and a key that is absent is only FL_ENOENT once the whole object was seen */
  for (size_t len = 0; len < sizeof doc - 1; len++)
    if (scan_n(doc, len, "zzz", val, sizeof val, NULL) != FL_EPARSE) fail_msg("absent key, cut at %zu", len);
  assert_int_equal(scan_n(doc, sizeof doc - 1, "zzz", val, sizeof val, NULL), FL_ENOENT);
}

/* A number or literal that runs into the end of the buffer may have been cut: {"user":12 could
 * be the start of {"user":12345}. It must not come back as the value "12". */
static void test_a_scalar_cut_off_by_the_end_of_the_buffer_is_a_parse_error(void **state) {
  expect_rc("{\"user\":12", "user", FL_EPARSE);
  expect_rc("{\"user\": 12345", "user", FL_EPARSE);
  expect_rc("{\"user\":tr", "user", FL_EPARSE);
  /* while one that ends at a delimiter is complete */
  expect_field("{\"user\":12 ", "user", "12", false);
  expect_field("{\"user\":12,", "user", "12", false);
}

static void test_the_scan_never_reads_past_len(void **state) {
  /* the bytes after len would complete the object; the scan must not see them */
  static const char full[] = "{\"user\":\"abcdef\"}";
  char val[64];
  assert_int_equal(scan_n(full, 10, "user", val, sizeof val, NULL), FL_EPARSE);   /* {"user":"a */
  assert_int_equal(scan_n(full, 1, "user", val, sizeof val, NULL), FL_EPARSE);    /* { */
  assert_int_equal(scan_n(full, 0, "user", val, sizeof val, NULL), FL_EPARSE);
  /* a string whose last byte is a backslash: the escape must not step over len */
  assert_int_equal(scan_n("{\"user\":\"ab\\", 12, "user", val, sizeof val, NULL), FL_EPARSE);
  assert_int_equal(scan_n("{\"k\\", 4, "user", val, sizeof val, NULL), FL_EPARSE);
  /* nested containers cut at every byte */
  static const char nested[] = "{\"a\":[[{\"b\":\"[{\\\"\"}]],\"user\":{\"x\":[1,2]}}";
  for (size_t len = 0; len < sizeof nested - 1; len++) (void)scan_n(nested, len, "user", val, sizeof val, NULL);
  assert_int_equal(scan_n(nested, sizeof nested - 1, "user", val, sizeof val, NULL), 0);
  assert_string_equal(val, "{\"x\":[1,2]}");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_string_value_is_the_bytes_between_its_quotes),
      cmocka_unit_test(test_numbers_and_literals_are_raw_text_and_not_strings),
      cmocka_unit_test(test_object_and_array_values_span_their_brackets),
      cmocka_unit_test(test_a_nested_key_with_the_same_name_does_not_match),
      cmocka_unit_test(test_a_key_inside_a_string_value_does_not_match),
      cmocka_unit_test(test_escaped_quotes_and_backslashes_stay_inside_their_string),
      cmocka_unit_test(test_whitespace_is_allowed_everywhere_between_tokens),
      cmocka_unit_test(test_an_absent_key_is_enoent),
      cmocka_unit_test(test_duplicate_keys_are_ambiguous_escaped_keys_decoded_and_a_bom_skipped),
      cmocka_unit_test(test_anything_but_an_object_is_a_parse_error),
      cmocka_unit_test(test_malformed_objects_are_parse_errors),
      cmocka_unit_test(test_input_cut_before_the_value_ends_is_a_parse_error),
      cmocka_unit_test(test_a_scalar_cut_off_by_the_end_of_the_buffer_is_a_parse_error),
      cmocka_unit_test(test_the_scan_never_reads_past_len),
  };
  return cmocka_run_group_tests_name("jsonscan", tests, NULL, NULL);
}
