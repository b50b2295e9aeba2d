/* test_http.c — the header table as a specification: names are lower-cased, the first of
 * repeated fields is found, limits answer 431 in words, hop-by-hop headers are recognised, spare
 * tables are reused; and the byte buffers and reason phrases. What may be in a head, and its
 * framing, is h1.c's (test_h1.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "http.h"

/* ---- helpers ---- */

/* Tables still allocated when a test fails half-way are freed by its teardown. */
static fl_http_head_t *live[8];
static size_t n_live;

static fl_http_head_t *new_head(uint32_t cap, uint32_t max) {
  assert_true(n_live < FL_ARRAY_LEN(live));
  fl_http_head_t *h = calloc(1, sizeof *h);
  assert_non_null(h);
  assert_int_equal(fl_http_head_init(h, cap, max), 0);
  live[n_live++] = h;
  return h;
}

static void drop_head(fl_http_head_t *h) {
  for (size_t i = 0; i < n_live; i++)
    if (live[i] == h) live[i] = live[--n_live];
  fl_http_head_free(h);
  free(h);
}

static int drop_live_heads(void **state) {
  while (n_live) drop_head(live[n_live - 1]);
  return 0;
}

static int try_add(fl_http_head_t *h, const char *name, const char *val) {
  return fl_http_head_add(h, name, strlen(name), val, strlen(val));
}

static void add(fl_http_head_t *h, const char *name, const char *val) { assert_int_equal(try_add(h, name, val), 0); }

/* The value stored under lname, as a C string (static buffer), or NULL. */
static const char *get(const fl_http_head_t *h, const char *lname) {
  static char out[1024];
  size_t len = 0;
  const char *v = fl_http_head_get(h, lname, &len);
  if (!v) return NULL;
  assert_true(len < sizeof out);
  memcpy(out, v, len);
  out[len] = '\0';
  return out;
}

static const fl_hdr_t *hdr_named(const fl_http_head_t *h, const char *lname) {
  for (uint32_t i = 0; i < h->n; i++)
    if (h->hdrs[i].name_len == strlen(lname) && memcmp(fl_hdr_name(h, &h->hdrs[i]), lname, strlen(lname)) == 0)
      return &h->hdrs[i];
  fail_msg("no header %s", lname);
  return NULL;
}

/* ---- the header table ---- */

/* Names are lower-cased eight bytes at a time: every byte value, at every offset within a word,
 * comes out as ASCII tolower makes it (letters only; bytes from 0x80 untouched). */
static void test_lower_casing_changes_exactly_the_ascii_capitals(void **state) {
  for (size_t shift = 0; shift < 8; shift++) {
    fl_http_head_t *h = new_head(4096, 4);
    char name[8 + 255];
    memset(name, 'Q', shift);
    for (int b = 1; b < 256; b++) name[shift + (size_t)b - 1] = (char)b;
    size_t len = shift + 255;
    assert_int_equal(fl_http_head_add(h, name, len, "v", 1), 0);
    const char *got = fl_hdr_name(h, &h->hdrs[0]);
    for (size_t i = 0; i < len; i++) {
      unsigned char c = (unsigned char)name[i], want = c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
      if ((unsigned char)got[i] != want) fail_msg("byte 0x%02x at %zu became 0x%02x", c, i, (unsigned char)got[i]);
    }
    drop_head(h);
  }
}

static void test_a_header_is_stored_with_its_name_lower_cased(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  add(h, "Content-Type", "application/json");
  add(h, "X-USER-ID", "Alice");
  assert_int_equal(h->n, 2);
  assert_string_equal(get(h, "content-type"), "application/json");
  assert_string_equal(get(h, "x-user-id"), "Alice");   /* values keep their case */
  assert_null(get(h, "Content-Type"));                 /* lookups take lower-case names */
  drop_head(h);
}

static void test_get_returns_the_first_of_repeated_headers_and_null_when_absent(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  add(h, "X-Tag", "first");
  add(h, "x-tag", "second");
  assert_int_equal(h->n, 2);
  assert_string_equal(get(h, "x-tag"), "first");
  assert_null(get(h, "x-ta"));
  assert_null(get(h, "x-tags"));
  assert_null(get(h, "host"));
  drop_head(h);
}

static void test_an_empty_value_keeps_the_next_name_separate(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  add(h, "X-Empty", "");
  add(h, "Host", "a");
  assert_int_equal(h->n, 2);
  assert_string_equal(get(h, "x-empty"), "");
  assert_string_equal(get(h, "host"), "a");
  drop_head(h);
}

static void test_the_request_target_is_kept_beside_the_fields(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  assert_int_equal(fl_http_head_url(h, "/v1/chat/completions?x=1", 24), 0);
  add(h, "Host", "a");
  assert_int_equal(h->url_len, 24);
  assert_memory_equal(h->buf + h->url_off, "/v1/chat/completions?x=1", 24);
  assert_string_equal(get(h, "host"), "a");
  drop_head(h);
}

static void test_reset_empties_the_table_for_the_next_request(void **state) {
  fl_http_head_t *h = new_head(64, 2);
  assert_int_equal(fl_http_head_url(h, "/a", 2), 0);
  add(h, "Host", "first");
  add(h, "X-A", "1");
  fl_http_head_reset(h);
  assert_int_equal(h->n, 0);
  assert_null(get(h, "host"));
  /* the whole capacity is usable again */
  assert_int_equal(fl_http_head_url(h, "/b", 2), 0);
  add(h, "Host", "second");
  add(h, "X-B", "2");
  assert_string_equal(get(h, "host"), "second");
  assert_memory_equal(h->buf + h->url_off, "/b", 2);
  drop_head(h);
}

/* ---- limits: 431 ---- */

static void test_more_text_than_cap_answers_431(void **state) {
  fl_http_head_t *h = new_head(16, 16);
  add(h, "Host", "0123456789ab");                /* 16 bytes: exactly full */
  assert_int_equal(h->len, 16);
  assert_null(h->refusal);
  assert_int_equal(try_add(h, "X", ""), 431);
  assert_string_equal(h->refusal, "header section too large");
  drop_head(h);

  h = new_head(16, 16);
  assert_int_equal(try_add(h, "Host", "0123456789abc"), 431);   /* 4 + 13 */
  drop_head(h);

  h = new_head(16, 16);
  assert_int_equal(fl_http_head_url(h, "/0123456789abcdef", 17), 431);
  assert_string_equal(h->refusal, "URL too long");
  assert_int_equal(h->url_len, 0);
  drop_head(h);

  h = new_head(16, 16);
  assert_int_equal(try_add(h, "X-A-Very-Long-Name", ""), 431);
  drop_head(h);
}

static void test_more_headers_than_max_answers_431(void **state) {
  fl_http_head_t *h = new_head(1024, 3);
  add(h, "A", "1");
  add(h, "B", "2");
  add(h, "C", "3");                              /* exactly max is fine */
  assert_int_equal(try_add(h, "D", "4"), 431);
  assert_string_equal(h->refusal, "too many header fields");
  assert_int_equal(h->n, 3);
  drop_head(h);
}

/* ---- hop-by-hop ---- */

static void test_the_hop_by_hop_set_is_not_forwarded(void **state) {
  static const char *const hop[] = {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                                    "Transfer-Encoding", "Upgrade", "Content-Length", "X-Fledge-Variant",
                                    "X-Fledge-Version", "X-Request-Id", "X-Forwarded-For"};
  static const char *const end[] = {"Host", "Content-Type", "Authorization", "Accept", "X-User-Id",
                                    "Tea", "Connections", "X-Fledge-Shadow", "Cookie"};
  fl_http_head_t *h = new_head(4096, 64);
  for (size_t i = 0; i < FL_ARRAY_LEN(hop); i++) add(h, hop[i], "x");
  for (size_t i = 0; i < FL_ARRAY_LEN(end); i++) add(h, end[i], "x");
  for (uint32_t i = 0; i < h->n; i++) {
    bool expect = i < FL_ARRAY_LEN(hop);
    if (fl_http_is_hop(h, &h->hdrs[i]) != expect)
      fail_msg("%.*s: is_hop should be %d", (int)h->hdrs[i].name_len, fl_hdr_name(h, &h->hdrs[i]), expect);
  }
  drop_head(h);
}

static void test_headers_named_in_connection_are_hop_by_hop_case_insensitively(void **state) {
  fl_http_head_t *h = new_head(4096, 64);
  add(h, "Connection", "Keep-Alive, X-Secret,X-OTHER ,  x-third");
  add(h, "x-secret", "1");
  add(h, "X-Other", "2");
  add(h, "X-Third", "3");
  add(h, "X-Sec", "4");          /* a prefix of a listed name */
  add(h, "X-Secrets", "5");      /* a listed name is a prefix of it */
  add(h, "X-Kept", "6");
  assert_true(fl_http_is_hop(h, hdr_named(h, "x-secret")));
  assert_true(fl_http_is_hop(h, hdr_named(h, "x-other")));
  assert_true(fl_http_is_hop(h, hdr_named(h, "x-third")));
  assert_false(fl_http_is_hop(h, hdr_named(h, "x-sec")));
  assert_false(fl_http_is_hop(h, hdr_named(h, "x-secrets")));
  assert_false(fl_http_is_hop(h, hdr_named(h, "x-kept")));
  drop_head(h);
}

/* RFC 9110 §7.6.1: Connection = #connection-option, and a list's OWS is spaces or tabs. */
static void test_connection_options_may_be_separated_by_tabs(void **state) {
  fl_http_head_t *h = new_head(4096, 64);
  add(h, "Connection", "close,\tX-Secret");
  add(h, "X-Secret", "1");
  assert_true(fl_http_is_hop(h, hdr_named(h, "x-secret")));
  drop_head(h);
}

/* RFC 9110 §5.3: a list-valued field may arrive as several lines; they mean one joined list. */
static void test_every_connection_header_names_hop_by_hop_headers(void **state) {
  fl_http_head_t *h = new_head(4096, 64);
  add(h, "Connection", "keep-alive");
  add(h, "Connection", "X-Secret");
  add(h, "X-Secret", "1");
  assert_true(fl_http_is_hop(h, hdr_named(h, "x-secret")));
  drop_head(h);
}

/* ---- spare tables ---- */

static void test_a_table_given_back_is_the_next_one_taken_and_comes_back_empty(void **state) {
  fl_head_spares_t spares = {0};
  fl_http_head_t a = {0}, b = {0};
  assert_int_equal(fl_http_head_take(&spares, &a, 65536, 100), 0);
  add(&a, "Host", "a");
  char *table = a.buf;
  fl_http_head_give(&spares, &a);
  assert_null(a.buf);                               /* the connection holds nothing now */
  assert_int_equal(spares.n, 1);
  assert_int_equal(fl_http_head_take(&spares, &b, 65536, 100), 0);
  assert_ptr_equal(b.buf, table);                   /* no allocation */
  assert_int_equal(b.n, 0);
  assert_int_equal(spares.n, 0);
  fl_http_head_give(&spares, &b);
  fl_head_spares_free(&spares);
  assert_int_equal(spares.n, 0);
}

static void test_a_table_that_grew_is_freed_not_kept_and_lower_limits_get_a_new_one(void **state) {
  fl_head_spares_t spares = {0};
  fl_http_head_t h = {0};
  char big[5000];
  memset(big, 'v', sizeof big);
  assert_int_equal(fl_http_head_take(&spares, &h, 65536, 100), 0);
  assert_int_equal(fl_http_head_add(&h, "X", 1, big, sizeof big), 0);
  fl_http_head_give(&spares, &h);
  assert_int_equal(spares.n, 0);                    /* a burst of big heads does not stay resident */
  assert_int_equal(fl_http_head_take(&spares, &h, 65536, 100), 0);
  fl_http_head_give(&spares, &h);
  assert_int_equal(spares.n, 1);
  assert_int_equal(fl_http_head_take(&spares, &h, 512, 4), 0);   /* a reload lowered the limits */
  assert_true(h.cap <= 512 && h.max <= 4);
  assert_int_equal(fl_http_head_add(&h, "X", 1, big, 600), 431);
  fl_http_head_give(&spares, &h);
  fl_head_spares_free(&spares);
}

/* ---- byte buffers ---- */

static void test_buf_append_grows_and_keeps_earlier_bytes(void **state) {
  fl_buf_t b = {0};
  char chunk[700];
  for (int i = 0; i < 10; i++) {
    memset(chunk, 'a' + i, sizeof chunk);
    assert_int_equal(fl_buf_append(&b, chunk, sizeof chunk), 0);
  }
  assert_int_equal(b.len, 7000);
  assert_true(b.cap >= b.len);
  for (size_t i = 0; i < b.len; i++)
    if (b.data[i] != 'a' + (char)(i / 700)) fail_msg("byte %zu is %c", i, b.data[i]);
  assert_int_equal(fl_buf_append(&b, "", 0), 0);
  assert_int_equal(b.len, 7000);
  fl_buf_free(&b);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
}

/* Nothing appended to a buffer that has no memory yet is no copy at all (UBSan, make asan, stops a
 * NULL + 0); the buffer stays empty, without memory, and without an error. */
static void test_appending_nothing_to_a_new_buffer_is_fine(void **state) {
  fl_buf_t b = {0};
  assert_int_equal(fl_buf_append(&b, "", 0), 0);
  assert_int_equal(fl_buf_append(&b, NULL, 0), 0);
  assert_int_equal(fl_buf_str(&b, ""), 0);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.err, 0);
  assert_int_equal(fl_buf_str(&b, "x"), 0);
  assert_memory_equal(b.data, "x", 1);
  fl_buf_free(&b);
}

static void test_buf_printf_appends_formatted_text(void **state) {
  fl_buf_t b = {0};
  assert_int_equal(fl_buf_printf(&b, "HTTP/1.1 %d %s\r\n", 502, fl_http_reason(502)), 0);
  assert_int_equal(fl_buf_printf(&b, "content-length: %zu\r\n\r\n", (size_t)12), 0);
  const char *want = "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 12\r\n\r\n";
  assert_int_equal(b.len, strlen(want));
  assert_memory_equal(b.data, want, b.len);
  fl_buf_free(&b);
}

static void test_buf_printf_writes_a_line_of_any_length_whole(void **state) {
  fl_buf_t b = {0};
  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(fl_buf_printf(&b, "ok"), 0);
  assert_int_equal(fl_buf_printf(&b, "%s|", big), 0);
  assert_int_equal(b.len, 2 + sizeof big);
  assert_memory_equal(b.data, "okx", 3);
  assert_int_equal(b.data[b.len - 1], '|');
  fl_buf_free(&b);
}

static void test_a_failed_append_sticks_until_the_buffer_is_cleared(void **state) {
  fl_buf_t b = {0};
  assert_int_equal(fl_buf_append(&b, "head", 4), 0);
  assert_int_equal(fl_buf_append(&b, "x", SIZE_MAX - 2), FL_ELIMIT);   /* no size_t wrap, no write */
  assert_int_equal(fl_buf_str(&b, "more"), FL_ELIMIT);
  assert_int_equal(fl_buf_u64(&b, 42), FL_ELIMIT);
  assert_int_equal(b.len, 4);                        /* nothing after the failure went in */
  fl_buf_clear(&b);
  assert_int_equal(b.err, 0);
  assert_int_equal(b.len, 0);
  assert_int_equal(fl_buf_str(&b, "next"), 0);
  assert_memory_equal(b.data, "next", 4);
  fl_buf_free(&b);
}

/* ---- reason phrases ---- */

static void test_reason_phrases_are_rfc_9110s(void **state) {
  assert_string_equal(fl_http_reason(200), "OK");
  assert_string_equal(fl_http_reason(400), "Bad Request");
  assert_string_equal(fl_http_reason(413), "Content Too Large");
  assert_string_equal(fl_http_reason(422), "Unprocessable Content");
  assert_string_equal(fl_http_reason(431), "Request Header Fields Too Large");
  assert_string_equal(fl_http_reason(504), "Gateway Timeout");
  assert_string_equal(fl_http_reason(101), "Switching Protocols");
  assert_string_equal(fl_http_reason(308), "Permanent Redirect");
  assert_string_equal(fl_http_reason(511), "Network Authentication Required");
}

/* Every code fledge sends or a backend commonly does has a phrase of its own, not its class's. */
static void test_every_common_status_has_a_phrase_of_its_own(void **state) {
  static const int common[] = {100, 101, 200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 307, 308,
                               400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416,
                               417, 418, 421, 422, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 506,
                               507, 508, 511};
  static const char *const classes[] = {"Informational", "Successful", "Redirection", "Client Error", "Server Error"};
  for (size_t i = 0; i < FL_ARRAY_LEN(common); i++) {
    const char *r = fl_http_reason(common[i]);
    if (!r[0] || strcmp(r, classes[common[i] / 100 - 1]) == 0 || strstr(r, "Unknown"))
      fail_msg("%d has no phrase of its own: '%s'", common[i], r);
  }
}

/* A code without a phrase gets its class's (RFC 9110 section 15), so a client still reads the
 * status line as what it is; a code outside 100-599 says so. */
static void test_other_codes_get_their_class_phrase(void **state) {
  assert_string_equal(fl_http_reason(199), "Informational");
  assert_string_equal(fl_http_reason(299), "Successful");
  assert_string_equal(fl_http_reason(399), "Redirection");
  assert_string_equal(fl_http_reason(499), "Client Error");
  assert_string_equal(fl_http_reason(420), "Client Error");
  assert_string_equal(fl_http_reason(599), "Server Error");
  assert_string_equal(fl_http_reason(99), "Unknown Status");
  assert_string_equal(fl_http_reason(600), "Unknown Status");
  assert_string_equal(fl_http_reason(999), "Unknown Status");
  assert_string_equal(fl_http_reason(-1), "Unknown Status");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_lower_casing_changes_exactly_the_ascii_capitals, drop_live_heads),
      cmocka_unit_test_teardown(test_a_header_is_stored_with_its_name_lower_cased, drop_live_heads),
      cmocka_unit_test_teardown(test_get_returns_the_first_of_repeated_headers_and_null_when_absent, drop_live_heads),
      cmocka_unit_test_teardown(test_an_empty_value_keeps_the_next_name_separate, drop_live_heads),
      cmocka_unit_test_teardown(test_the_request_target_is_kept_beside_the_fields, drop_live_heads),
      cmocka_unit_test_teardown(test_reset_empties_the_table_for_the_next_request, drop_live_heads),
      cmocka_unit_test_teardown(test_more_text_than_cap_answers_431, drop_live_heads),
      cmocka_unit_test_teardown(test_more_headers_than_max_answers_431, drop_live_heads),
      cmocka_unit_test_teardown(test_the_hop_by_hop_set_is_not_forwarded, drop_live_heads),
      cmocka_unit_test_teardown(test_headers_named_in_connection_are_hop_by_hop_case_insensitively, drop_live_heads),
      cmocka_unit_test_teardown(test_connection_options_may_be_separated_by_tabs, drop_live_heads),
      cmocka_unit_test_teardown(test_every_connection_header_names_hop_by_hop_headers, drop_live_heads),
      cmocka_unit_test_teardown(test_buf_append_grows_and_keeps_earlier_bytes, drop_live_heads),
      cmocka_unit_test_teardown(test_appending_nothing_to_a_new_buffer_is_fine, drop_live_heads),
      cmocka_unit_test_teardown(test_buf_printf_appends_formatted_text, drop_live_heads),
      cmocka_unit_test_teardown(test_buf_printf_writes_a_line_of_any_length_whole, drop_live_heads),
      cmocka_unit_test_teardown(test_a_failed_append_sticks_until_the_buffer_is_cleared, drop_live_heads),
      cmocka_unit_test(test_a_table_given_back_is_the_next_one_taken_and_comes_back_empty),
      cmocka_unit_test(test_a_table_that_grew_is_freed_not_kept_and_lower_limits_get_a_new_one),
      cmocka_unit_test_teardown(test_reason_phrases_are_rfc_9110s, drop_live_heads),
      cmocka_unit_test_teardown(test_every_common_status_has_a_phrase_of_its_own, drop_live_heads),
      cmocka_unit_test_teardown(test_other_codes_get_their_class_phrase, drop_live_heads),
  };
  return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
