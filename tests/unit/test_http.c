/* test_http.c — the header table as a specification: fragments from the parser join up,
 * names are lower-cased, limits answer 431, smuggling-prone bytes and framing answer 400,
 * hop-by-hop headers are recognised; and a real http-parser fed byte by byte agrees. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <http_parser.h>
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

static int field(fl_http_head_t *h, const char *s) { return fl_http_head_field(h, s, strlen(s)); }
static int value(fl_http_head_t *h, const char *s) { return fl_http_head_value(h, s, strlen(s)); }

static void add(fl_http_head_t *h, const char *name, const char *val) {
  assert_int_equal(field(h, name), 0);
  assert_int_equal(value(h, val), 0);
}

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

static void test_a_name_in_two_pieces_is_joined(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  assert_int_equal(field(h, "X-Us"), 0);
  assert_int_equal(field(h, "er-Id"), 0);
  assert_int_equal(value(h, "42"), 0);
  assert_int_equal(h->n, 1);
  assert_string_equal(get(h, "x-user-id"), "42");
  drop_head(h);
}

static void test_a_value_in_two_pieces_is_joined(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  assert_int_equal(field(h, "Host"), 0);
  assert_int_equal(value(h, "api.exa"), 0);
  assert_int_equal(value(h, "mple.com"), 0);
  add(h, "Accept", "*/*");
  assert_int_equal(h->n, 2);
  assert_string_equal(get(h, "host"), "api.example.com");
  assert_string_equal(get(h, "accept"), "*/*");
  drop_head(h);
}

static void test_trailing_whitespace_is_trimmed_from_values(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  add(h, "A", "one  ");
  add(h, "B", "two\t \t");
  add(h, "C", "   ");
  add(h, "D", "in side");
  assert_string_equal(get(h, "a"), "one");
  assert_string_equal(get(h, "b"), "two");
  assert_string_equal(get(h, "c"), "");
  assert_string_equal(get(h, "d"), "in side");
  drop_head(h);
}

/* A value split right after inner whitespace must still read back whole: trimming is for the
 * end of the value, not the end of a fragment. */
static void test_whitespace_inside_a_value_survives_a_split_after_it(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  assert_int_equal(field(h, "User-Agent"), 0);
  assert_int_equal(value(h, "curl "), 0);
  assert_int_equal(value(h, "8.0"), 0);
  assert_int_equal(field(h, "Content-Type"), 0);
  assert_int_equal(value(h, "text/plain;"), 0);
  assert_int_equal(value(h, " "), 0);
  assert_int_equal(value(h, "charset=utf-8"), 0);
  assert_string_equal(get(h, "user-agent"), "curl 8.0");
  assert_string_equal(get(h, "content-type"), "text/plain; charset=utf-8");
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

static void test_url_pieces_are_joined(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  assert_int_equal(fl_http_head_url(h, "/v1/chat/", 9), 0);
  assert_int_equal(fl_http_head_url(h, "completions?x=1", 15), 0);
  add(h, "Host", "a");
  assert_int_equal(h->url_len, 24);
  assert_memory_equal(h->buf + h->url_off, "/v1/chat/completions?x=1", 24);
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
  assert_int_equal(field(h, "X"), 431);
  drop_head(h);

  h = new_head(16, 16);
  assert_int_equal(field(h, "Host"), 0);
  assert_int_equal(value(h, "0123456789"), 0);
  assert_int_equal(value(h, "abc"), 431);        /* 4 + 13 */
  drop_head(h);

  h = new_head(16, 16);
  assert_int_equal(fl_http_head_url(h, "/0123456789abcdef", 17), 431);
  drop_head(h);

  h = new_head(16, 16);
  assert_int_equal(field(h, "X-A-Very-Long-Name"), 431);
  drop_head(h);
}

static void test_more_headers_than_max_answers_431(void **state) {
  fl_http_head_t *h = new_head(1024, 3);
  add(h, "A", "1");
  add(h, "B", "2");
  add(h, "C", "3");                              /* exactly max is fine */
  assert_int_equal(field(h, "D"), 431);
  assert_int_equal(h->n, 3);
  drop_head(h);
}

/* ---- smuggling-prone bytes: 400 ---- */

static void test_whitespace_or_control_bytes_in_a_name_answer_400(void **state) {
  static const char *const bad[] = {"Host ", " Host", "X\tA", "X\rA", "X\nA", "X\x7f", "X\x01", "X:A", "X(A", "X\"A"};
  for (size_t i = 0; i < FL_ARRAY_LEN(bad); i++) {
    fl_http_head_t *h = new_head(1024, 16);
    if (field(h, bad[i]) != 400) fail_msg("name %zu was accepted", i);
    drop_head(h);
  }
  fl_http_head_t *h = new_head(1024, 16);
  assert_int_equal(field(h, "X"), 0);
  assert_int_equal(fl_http_head_field(h, "\0A", 2), 400);   /* NUL, also in a second piece */
  drop_head(h);
  h = new_head(1024, 16);
  assert_int_equal(field(h, "X-Ok_1.2~!#$%&'*+^`|"), 0);     /* every tchar is fine */
  drop_head(h);
}

static void test_control_bytes_in_a_value_answer_400(void **state) {
  static const char *const bad[] = {"a\rb", "a\nb", "a\x01", "\x1f", "a\x7f"};
  for (size_t i = 0; i < FL_ARRAY_LEN(bad); i++) {
    fl_http_head_t *h = new_head(1024, 16);
    assert_int_equal(field(h, "X"), 0);
    if (value(h, bad[i]) != 400) fail_msg("value %zu was accepted", i);
    drop_head(h);
  }
  fl_http_head_t *h = new_head(1024, 16);
  assert_int_equal(field(h, "X"), 0);
  assert_int_equal(fl_http_head_value(h, "a\0b", 3), 400);
  drop_head(h);

  h = new_head(1024, 16);
  add(h, "X", "tab\there");                      /* HTAB is allowed inside a value */
  add(h, "Y", "caf\xc3\xa9");                    /* and so is obs-text */
  assert_string_equal(get(h, "x"), "tab\there");
  assert_string_equal(get(h, "y"), "caf\xc3\xa9");
  drop_head(h);
}

static void test_a_value_before_any_name_answers_400(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  assert_int_equal(value(h, "orphan"), 400);
  drop_head(h);
}

/* ---- framing ---- */

static int framing_of(const char *const pairs[][2], size_t n) {
  fl_http_head_t *h = new_head(4096, 32);
  for (size_t i = 0; i < n; i++) add(h, pairs[i][0], pairs[i][1]);
  int rc = fl_http_check_framing(h);
  drop_head(h);
  return rc;
}

#define FRAMING(...) framing_of((const char *const[][2]){__VA_ARGS__}, \
                                sizeof((const char *const[][2]){__VA_ARGS__}) / sizeof(const char *[2]))

static void test_plain_framing_is_accepted(void **state) {
  assert_int_equal(FRAMING({"Host", "a"}), 0);
  assert_int_equal(FRAMING({"Host", "a"}, {"Content-Length", "0"}), 0);
  assert_int_equal(FRAMING({"Content-Length", "1048576"}), 0);
  assert_int_equal(FRAMING({"Transfer-Encoding", "chunked"}), 0);
  assert_int_equal(FRAMING({"transfer-encoding", "Chunked"}), 0);
  assert_int_equal(FRAMING({"TRANSFER-ENCODING", "CHUNKED"}), 0);
}

static void test_content_length_with_transfer_encoding_answers_400(void **state) {
  assert_int_equal(FRAMING({"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}), 400);
  assert_int_equal(FRAMING({"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}), 400);
}

static void test_more_than_one_content_length_answers_400_even_when_equal(void **state) {
  assert_int_equal(FRAMING({"Content-Length", "5"}, {"Content-Length", "6"}), 400);
  assert_int_equal(FRAMING({"Content-Length", "5"}, {"content-length", "5"}), 400);
}

static void test_a_non_numeric_content_length_answers_400(void **state) {
  assert_int_equal(FRAMING({"Content-Length", "5a"}), 400);
  assert_int_equal(FRAMING({"Content-Length", "-1"}), 400);
  assert_int_equal(FRAMING({"Content-Length", "+5"}), 400);
  assert_int_equal(FRAMING({"Content-Length", "0x10"}), 400);
  assert_int_equal(FRAMING({"Content-Length", "5, 5"}), 400);
  assert_int_equal(FRAMING({"Content-Length", "1 0"}), 400);
  assert_int_equal(FRAMING({"Content-Length", ""}), 400);
}

static void test_a_transfer_encoding_other_than_chunked_answers_400(void **state) {
  assert_int_equal(FRAMING({"Transfer-Encoding", "gzip"}), 400);
  assert_int_equal(FRAMING({"Transfer-Encoding", "gzip, chunked"}), 400);
  assert_int_equal(FRAMING({"Transfer-Encoding", "chunked, identity"}), 400);
  assert_int_equal(FRAMING({"Transfer-Encoding", "chunke"}), 400);
  assert_int_equal(FRAMING({"Transfer-Encoding", "chunkedx"}), 400);
  assert_int_equal(FRAMING({"Transfer-Encoding", ""}), 400);
  assert_int_equal(FRAMING({"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}), 400);
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
  assert_int_equal(fl_http_head_field(&a, "Host", 4), 0);
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
  assert_int_equal(fl_http_head_field(&h, "X", 1), 0);
  assert_int_equal(fl_http_head_value(&h, big, sizeof big), 0);
  fl_http_head_give(&spares, &h);
  assert_int_equal(spares.n, 0);                    /* a burst of big heads does not stay resident */
  assert_int_equal(fl_http_head_take(&spares, &h, 65536, 100), 0);
  fl_http_head_give(&spares, &h);
  assert_int_equal(spares.n, 1);
  assert_int_equal(fl_http_head_take(&spares, &h, 512, 4), 0);   /* a reload lowered the limits */
  assert_true(h.cap <= 512 && h.max <= 4);
  assert_int_equal(fl_http_head_field(&h, big, 600), 431);
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

/* The token table against RFC 9110's definition, byte by byte. */
static void test_every_byte_is_a_token_character_exactly_when_rfc_9110_says_so(void **state) {
  for (int ch = 0; ch < 256; ch++) {
    bool want = ch > 0x20 && ch < 0x7F && !strchr("\"(),/:;<=>?@[\\]{}", ch);
    char name[2] = {(char)ch, 'a'};
    fl_http_head_t *h = new_head(1024, 16);
    int st = fl_http_head_field(h, name, 2);
    if ((st == 0) != want) fail_msg("byte 0x%02x: %s", ch, want ? "refused" : "accepted");
    drop_head(h);
  }
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

/* ---- the real http-parser, fragmented ---- */

typedef struct {
  fl_http_head_t *head;
  int status;          /* first non-zero answer from fl_http_head_* */
  bool headers_done, message_done;
} feed_t;

static int cb_status(feed_t *f, int rc) {
  if (rc && !f->status) f->status = rc;
  return rc ? -1 : 0;
}
static int on_url(http_parser *p, const char *at, size_t len) {
  feed_t *f = p->data;
  return cb_status(f, fl_http_head_url(f->head, at, len));
}
static int on_field(http_parser *p, const char *at, size_t len) {
  feed_t *f = p->data;
  return cb_status(f, fl_http_head_field(f->head, at, len));
}
static int on_value(http_parser *p, const char *at, size_t len) {
  feed_t *f = p->data;
  return cb_status(f, fl_http_head_value(f->head, at, len));
}
static int on_headers_complete(http_parser *p) {
  ((feed_t *)p->data)->headers_done = true;
  return 0;
}
static int on_message_complete(http_parser *p) {
  ((feed_t *)p->data)->message_done = true;
  return 0;
}

static const http_parser_settings SETTINGS = {
    .on_url = on_url, .on_header_field = on_field, .on_header_value = on_value,
    .on_headers_complete = on_headers_complete, .on_message_complete = on_message_complete};

static const char REQUEST[] =
    "POST /v1/chat/completions?stream=true&user=a%20b HTTP/1.1\r\n"
    "Host: gateway.example.com:8080\r\n"
    "User-Agent: OpenAI/Python 1.30.1\r\n"
    "Content-Type: application/json; charset=utf-8\r\n"
    "Authorization: Bearer sk-test-123\r\n"
    "X-Empty:\r\n"
    "X-User-Id:   alice   \r\n"
    "Accept: text/event-stream\r\n"
    "Connection: keep-alive, X-Debug\r\n"
    "X-Debug: 1\r\n"
    "Content-Length: 17\r\n"
    "\r\n"
    "{\"model\":\"gpt-x\"}";

static const char *const EXPECTED[][2] = {
    {"host", "gateway.example.com:8080"},
    {"user-agent", "OpenAI/Python 1.30.1"},
    {"content-type", "application/json; charset=utf-8"},
    {"authorization", "Bearer sk-test-123"},
    {"x-empty", ""},
    {"x-user-id", "alice"},
    {"accept", "text/event-stream"},
    {"connection", "keep-alive, X-Debug"},
    {"x-debug", "1"},
    {"content-length", "17"},
};
static const char EXPECTED_URL[] = "/v1/chat/completions?stream=true&user=a%20b";

/* Feeds REQUEST in pieces of `step` bytes (0: the first `split` bytes, then the rest). */
static void feed(feed_t *f, size_t step, size_t split) {
  http_parser p;
  memset(f, 0, sizeof *f);
  f->head = new_head(4096, 64);
  http_parser_init(&p, HTTP_REQUEST);
  p.data = f;
  size_t len = sizeof REQUEST - 1, off = 0;
  while (off < len) {
    size_t n = step ? FL_MIN(step, len - off) : (off == 0 ? split : len - off);
    if (n == 0) n = len - off;
    size_t got = http_parser_execute(&p, &SETTINGS, REQUEST + off, n);
    if (HTTP_PARSER_ERRNO(&p) != HPE_OK || got != n)
      fail_msg("parser stopped at byte %zu: %s (status %d)", off + got, http_errno_name(HTTP_PARSER_ERRNO(&p)),
               f->status);
    off += n;
  }
  assert_true(f->headers_done);
  assert_true(f->message_done);
  assert_int_equal(f->status, 0);
}

static void assert_expected_table(const feed_t *f, const char *how) {
  const fl_http_head_t *h = f->head;
  if (h->url_len != strlen(EXPECTED_URL) || memcmp(h->buf + h->url_off, EXPECTED_URL, h->url_len) != 0)
    fail_msg("%s: url is '%.*s'", how, (int)h->url_len, h->buf + h->url_off);
  if (h->n != FL_ARRAY_LEN(EXPECTED)) fail_msg("%s: %u headers", how, h->n);
  for (size_t i = 0; i < FL_ARRAY_LEN(EXPECTED); i++) {
    const fl_hdr_t *x = &h->hdrs[i];
    if (x->name_len != strlen(EXPECTED[i][0]) || memcmp(fl_hdr_name(h, x), EXPECTED[i][0], x->name_len) != 0 ||
        x->value_len != strlen(EXPECTED[i][1]) || memcmp(fl_hdr_value(h, x), EXPECTED[i][1], x->value_len) != 0)
      fail_msg("%s: header %zu is '%.*s: %.*s', expected '%s: %s'", how, i, (int)x->name_len, fl_hdr_name(h, x),
               (int)x->value_len, fl_hdr_value(h, x), EXPECTED[i][0], EXPECTED[i][1]);
  }
  assert_int_equal(fl_http_check_framing(h), 0);
}

static void test_a_request_fed_at_once_fills_the_table(void **state) {
  feed_t f;
  feed(&f, 0, sizeof REQUEST - 1);
  assert_expected_table(&f, "at once");
  assert_true(fl_http_is_hop(f.head, hdr_named(f.head, "x-debug")));
  assert_false(fl_http_is_hop(f.head, hdr_named(f.head, "authorization")));
  drop_head(f.head);
}

static void test_a_request_fed_one_byte_at_a_time_gives_the_same_table(void **state) {
  feed_t f;
  feed(&f, 1, 0);
  assert_expected_table(&f, "1-byte pieces");
  drop_head(f.head);
}

static void test_a_request_split_in_two_anywhere_gives_the_same_table(void **state) {
  feed_t f;
  for (size_t split = 1; split < sizeof REQUEST - 1; split++) {
    char how[32];
    snprintf(how, sizeof how, "split at %zu", split);
    feed(&f, 0, split);
    assert_expected_table(&f, how);
    drop_head(f.head);
  }
}

static void test_the_parser_stops_with_431_when_a_header_outgrows_cap(void **state) {
  static const char req[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: 0123456789012345678901234567890123456789\r\n\r\n";
  feed_t f = {.head = new_head(32, 8)};
  http_parser p;
  http_parser_init(&p, HTTP_REQUEST);
  p.data = &f;
  size_t off = 0;
  while (off < sizeof req - 1 && HTTP_PARSER_ERRNO(&p) == HPE_OK)
    off += http_parser_execute(&p, &SETTINGS, req + off, 1);
  assert_int_equal(f.status, 431);
  assert_int_not_equal(HTTP_PARSER_ERRNO(&p), HPE_OK);
  assert_false(f.headers_done);
  drop_head(f.head);
}

/* ---- parse errors in words ---- */

static bool words_are_plain(const char *w) {
  return w && w[0] && !strstr(w, "callback") && !strstr(w, "on_") && !strstr(w, "HPE_");
}

/* Whatever the parser's error, on a request or an answer, with or without a table, the words
 * never name the parser's internals. */
static void test_every_parser_error_has_words_without_the_parsers_names(void **state) {
  fl_http_head_t *h = new_head(1024, 16);
  add(h, "Host", "a");
  for (int type = HTTP_REQUEST; type <= HTTP_RESPONSE; type++) {
    for (int e = 0; e <= HPE_INVALID_TRANSFER_ENCODING; e++) {
      http_parser p;
      http_parser_init(&p, (enum http_parser_type)type);
      p.http_errno = (unsigned)e;
      const char *with = fl_http_error_words(&p, h), *without = fl_http_error_words(&p, NULL);
      if (!words_are_plain(with) || !words_are_plain(without))
        fail_msg("%s on a %s: '%s' / '%s'", http_errno_name((enum http_errno)e),
                 type == HTTP_REQUEST ? "request" : "response", with ? with : "(null)", without ? without : "(null)");
    }
  }
  drop_head(h);
}

/* The callbacks of the gateway and httpd: the table, and the framing checks at headers end. */
static int on_begin_words(http_parser *p) {
  fl_http_head_reset(((feed_t *)p->data)->head);
  return 0;
}
static int on_headers_checked(http_parser *p) {
  feed_t *f = p->data;
  return p->type == HTTP_REQUEST && cb_status(f, fl_http_check_framing(f->head)) ? -1 : 0;
}

static const http_parser_settings CHECKED = {
    .on_message_begin = on_begin_words, .on_url = on_url, .on_header_field = on_field,
    .on_header_value = on_value, .on_headers_complete = on_headers_checked};

/* Feeds text at once; the parser must stop, and the words for why are returned. */
static const char *words_for(enum http_parser_type type, const char *text, size_t len, uint32_t max_headers) {
  feed_t f = {.head = new_head(4096, max_headers)};
  http_parser p;
  http_parser_init(&p, type);
  p.data = &f;
  http_parser_execute(&p, &CHECKED, text, len);
  if (HTTP_PARSER_ERRNO(&p) == HPE_OK) fail_msg("accepted: %s", text);
  const char *w = fl_http_error_words(&p, f.head);
  drop_head(f.head);
  return w;
}

#define REQ_WORDS(lit) words_for(HTTP_REQUEST, lit, sizeof lit - 1, 16)
#define ANSWER_WORDS(lit) words_for(HTTP_RESPONSE, lit, sizeof lit - 1, 16)
#define POST "POST / HTTP/1.1\r\nHost: a\r\n"

static void test_request_errors_are_told_in_the_gateways_words(void **state) {
  /* a chunk size over 64 bits is reported by http-parser as a bad Content-Length */
  assert_string_equal(REQ_WORDS(POST "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n"), "chunk size too large");
  assert_string_equal(REQ_WORDS(POST "Transfer-Encoding: chunked\r\n\r\nzz\r\n"), "invalid chunk size");
  assert_string_equal(REQ_WORDS(POST "Content-Length: abc\r\n\r\n"), "invalid Content-Length");
  assert_string_equal(REQ_WORDS(POST "Content-Length: 99999999999999999999999\r\n\r\n"), "invalid Content-Length");
  assert_string_equal(REQ_WORDS(POST "Transfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n"), "invalid Content-Length");
  assert_string_equal(REQ_WORDS(POST "Content-Length: 1\r\nContent-Length: 1\r\n\r\n"), "more than one Content-Length");
  assert_string_equal(REQ_WORDS(POST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
                      "both Content-Length and Transfer-Encoding");
  assert_string_equal(REQ_WORDS(POST "Transfer-Encoding: gzip\r\n\r\n"), "Transfer-Encoding other than chunked");
  assert_string_equal(REQ_WORDS(POST "Transfer-Encoding: gzip, chunked\r\n\r\n"), "Transfer-Encoding other than chunked");
  assert_string_equal(REQ_WORDS(POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
                      "more than one Transfer-Encoding");
  assert_string_equal(REQ_WORDS(POST "X-A: a\x01" "b\r\n\r\n"), "invalid header value character");
  assert_string_equal(REQ_WORDS(POST "Bad Name: v\r\n\r\n"), "invalid header name character");
  assert_string_equal(REQ_WORDS(POST "X(y): v\r\n\r\n"), "invalid header name character");
  assert_string_equal(REQ_WORDS(POST "Host a\r\n\r\n"), "invalid header name character");
  assert_string_equal(REQ_WORDS("GET / HTTP/1.1 trailing\r\n\r\n"), "request line is not HTTP/1.x");
  assert_string_equal(REQ_WORDS("FROB / HTTP/1.1\r\n\r\n"), "unknown method");
  assert_string_equal(REQ_WORDS("\x16\x03\x01\x02\x00\x01\x00"), "unknown method");
  static const char three[] = POST "A: 1\r\nB: 2\r\n\r\n";
  assert_string_equal(words_for(HTTP_REQUEST, three, sizeof three - 1, 2), "too many header fields");
}

static void test_answer_errors_are_told_in_the_gateways_words(void **state) {
  assert_string_equal(ANSWER_WORDS("garbage\r\n\r\n"), "status line is not HTTP/1.x");
  assert_string_equal(ANSWER_WORDS("HTTP/1.1 2x0 OK\r\n\r\n"), "invalid status code");
  assert_string_equal(ANSWER_WORDS("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n"),
                      "chunk size too large");
  assert_string_equal(ANSWER_WORDS("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
                      "more than one Content-Length");
  assert_string_equal(ANSWER_WORDS("HTTP/1.1 200 OK\r\nX-A: \x7f\r\n\r\n"), "invalid header value character");
}

/* A client without a table (client.c) still gets plain words. */
static void test_words_without_a_table(void **state) {
  http_parser p;
  http_parser_init(&p, HTTP_RESPONSE);
  static const char chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n";
  http_parser_execute(&p, &(http_parser_settings){0}, chunked, sizeof chunked - 1);
  assert_string_equal(fl_http_error_words(&p, NULL), "chunk size too large");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_a_header_is_stored_with_its_name_lower_cased, drop_live_heads),
      cmocka_unit_test_teardown(test_a_name_in_two_pieces_is_joined, drop_live_heads),
      cmocka_unit_test_teardown(test_a_value_in_two_pieces_is_joined, drop_live_heads),
      cmocka_unit_test_teardown(test_trailing_whitespace_is_trimmed_from_values, drop_live_heads),
      cmocka_unit_test_teardown(test_whitespace_inside_a_value_survives_a_split_after_it, drop_live_heads),
      cmocka_unit_test_teardown(test_get_returns_the_first_of_repeated_headers_and_null_when_absent, drop_live_heads),
      cmocka_unit_test_teardown(test_an_empty_value_keeps_the_next_name_separate, drop_live_heads),
      cmocka_unit_test_teardown(test_url_pieces_are_joined, drop_live_heads),
      cmocka_unit_test_teardown(test_reset_empties_the_table_for_the_next_request, drop_live_heads),
      cmocka_unit_test_teardown(test_more_text_than_cap_answers_431, drop_live_heads),
      cmocka_unit_test_teardown(test_more_headers_than_max_answers_431, drop_live_heads),
      cmocka_unit_test_teardown(test_whitespace_or_control_bytes_in_a_name_answer_400, drop_live_heads),
      cmocka_unit_test_teardown(test_control_bytes_in_a_value_answer_400, drop_live_heads),
      cmocka_unit_test_teardown(test_a_value_before_any_name_answers_400, drop_live_heads),
      cmocka_unit_test_teardown(test_plain_framing_is_accepted, drop_live_heads),
      cmocka_unit_test_teardown(test_content_length_with_transfer_encoding_answers_400, drop_live_heads),
      cmocka_unit_test_teardown(test_more_than_one_content_length_answers_400_even_when_equal, drop_live_heads),
      cmocka_unit_test_teardown(test_a_non_numeric_content_length_answers_400, drop_live_heads),
      cmocka_unit_test_teardown(test_a_transfer_encoding_other_than_chunked_answers_400, drop_live_heads),
      cmocka_unit_test_teardown(test_the_hop_by_hop_set_is_not_forwarded, drop_live_heads),
      cmocka_unit_test_teardown(test_headers_named_in_connection_are_hop_by_hop_case_insensitively, drop_live_heads),
      cmocka_unit_test_teardown(test_connection_options_may_be_separated_by_tabs, drop_live_heads),
      cmocka_unit_test_teardown(test_every_connection_header_names_hop_by_hop_headers, drop_live_heads),
      cmocka_unit_test_teardown(test_buf_append_grows_and_keeps_earlier_bytes, drop_live_heads),
      cmocka_unit_test_teardown(test_buf_printf_appends_formatted_text, drop_live_heads),
      cmocka_unit_test_teardown(test_buf_printf_writes_a_line_of_any_length_whole, drop_live_heads),
      cmocka_unit_test_teardown(test_a_failed_append_sticks_until_the_buffer_is_cleared, drop_live_heads),
      cmocka_unit_test(test_a_table_given_back_is_the_next_one_taken_and_comes_back_empty),
      cmocka_unit_test(test_a_table_that_grew_is_freed_not_kept_and_lower_limits_get_a_new_one),
      cmocka_unit_test_teardown(test_every_byte_is_a_token_character_exactly_when_rfc_9110_says_so, drop_live_heads),
      cmocka_unit_test_teardown(test_reason_phrases_are_rfc_9110s, drop_live_heads),
      cmocka_unit_test_teardown(test_every_common_status_has_a_phrase_of_its_own, drop_live_heads),
      cmocka_unit_test_teardown(test_other_codes_get_their_class_phrase, drop_live_heads),
      cmocka_unit_test_teardown(test_a_request_fed_at_once_fills_the_table, drop_live_heads),
      cmocka_unit_test_teardown(test_a_request_fed_one_byte_at_a_time_gives_the_same_table, drop_live_heads),
      cmocka_unit_test_teardown(test_a_request_split_in_two_anywhere_gives_the_same_table, drop_live_heads),
      cmocka_unit_test_teardown(test_the_parser_stops_with_431_when_a_header_outgrows_cap, drop_live_heads),
      cmocka_unit_test_teardown(test_every_parser_error_has_words_without_the_parsers_names, drop_live_heads),
      cmocka_unit_test_teardown(test_request_errors_are_told_in_the_gateways_words, drop_live_heads),
      cmocka_unit_test_teardown(test_answer_errors_are_told_in_the_gateways_words, drop_live_heads),
      cmocka_unit_test_teardown(test_words_without_a_table, drop_live_heads),
  };
  return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
