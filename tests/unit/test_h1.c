/* test_h1.c — HTTP/1 framing (h1.c) as a specification: what a request or an answer reads as
 * (head, body, end), whatever the pieces it arrives in; chunked bodies with extensions and
 * trailers; pipelined messages; bodiless answers; answers that run to the close; limits; and
 * every refusal, in words, reached by some input. The caller's side of the contract (a line of
 * the head not complete yet is given again with the next bytes) is done by trace() below. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "h1.h"

/* ---- the reader: events in words ---- */

typedef struct {
  bool response;         /* reads answers */
  bool no_body;          /* answers to a HEAD request */
  uint32_t cap, max;     /* the table's limits; 0: 4096 bytes, 64 fields */
  bool eof;              /* the peer closes after the last byte */
} how_t;

static const how_t REQUESTS = {0}, ANSWERS = {.response = true};

static void head_words(fl_buf_t *out, const fl_h1_t *p, const fl_http_head_t *h) {
  if (p->response) {
    fl_buf_printf(out, "HEAD %u HTTP/1.%u", p->status, p->minor);
  } else {
    fl_buf_printf(out, "HEAD %s %.*s HTTP/1.%u", fl_method_name(p->method), (int)h->url_len, h->buf + h->url_off,
                  p->minor);
  }
  fl_buf_str(out, p->keep_alive ? " keep-alive" : " close");
  if (p->has_length) fl_buf_printf(out, " length=%llu", (unsigned long long)p->content_length);
  if (p->chunked) fl_buf_str(out, " chunked");
  fl_buf_str(out, "\n");
  for (uint32_t i = 0; i < h->n; i++) {
    const fl_hdr_t *x = &h->hdrs[i];
    fl_buf_printf(out, "  %.*s: %.*s\n", (int)x->name_len, fl_hdr_name(h, x), (int)x->value_len, fl_hdr_value(h, x));
  }
}

/* Body bytes are told once per run of DATA events, so that pieces cut anywhere read the same. */
static void body_words(fl_buf_t *out, fl_buf_t *body) {
  if (body->len) {
    fl_buf_printf(out, "BODY %zu ", body->len);
    fl_buf_append(out, body->data, body->len);
    fl_buf_str(out, "\n");
  }
  fl_buf_clear(body);
}

/* The events of reading text, the first `first` bytes and then `step` at a time (0: the rest at
 * once), as one string (caller frees): after each END the next message is read from the bytes
 * left; an ERROR ends the reading. */
static char *trace(const how_t *how, const char *text, size_t len, size_t first, size_t step) {
  fl_h1_t p;
  fl_http_head_t h;
  fl_buf_t out = {0}, held = {0}, body = {0};
  fl_h1_init(&p, how->response);
  p.no_body = how->no_body;
  assert_int_equal(fl_http_head_init(&h, how->cap ? how->cap : 4096, how->max ? how->max : 64), 0);
  bool stopped = false;
  for (size_t off = 0; off < len && !stopped;) {
    size_t n = off == 0 ? first : step ? step : len - off;
    n = FL_MIN(n ? n : len, len - off);
    fl_buf_append(&held, text + off, n);
    off += n;
    size_t pos = 0;
    while (!stopped) {
      size_t used, body_len;
      const char *at;
      fl_h1_event_t ev = fl_h1_feed(&p, &h, held.data + pos, held.len - pos, &used, &at, &body_len);
      assert_true(used <= held.len - pos);
      pos += used;
      if (ev == FL_H1_MORE) break;
      if (ev == FL_H1_DATA) {
        assert_true(at >= held.data && at + body_len <= held.data + pos);
        fl_buf_append(&body, at, body_len);
        continue;
      }
      body_words(&out, &body);
      if (ev == FL_H1_HEAD) {
        head_words(&out, &p, &h);
      } else if (ev == FL_H1_END) {
        assert_true(fl_h1_done(&p));
        fl_buf_str(&out, "END\n");
        fl_h1_reset(&p);
        p.no_body = how->no_body;
              fl_http_head_reset(&h);
      } else {
        fl_buf_printf(&out, "ERROR %d %s\n", p.error_status, p.error);
        stopped = true;
      }
    }
    memmove(held.data, held.data + pos, held.len - pos);
    held.len -= pos;
  }
  if (!stopped) {
    body_words(&out, &body);
    if (held.len) fl_buf_printf(&out, "HELD %zu\n", held.len);
    if (how->eof) {
      fl_h1_event_t ev = fl_h1_eof(&p);
      if (ev == FL_H1_END) fl_buf_str(&out, "END at the close\n");
      else if (ev == FL_H1_ERROR) fl_buf_printf(&out, "ERROR at the close %d %s\n", p.error_status, p.error);
      else fl_buf_str(&out, "nothing at the close\n");
    }
  }
  fl_buf_append(&out, "", 1);
  assert_int_equal(out.err, 0);
  fl_buf_free(&held);
  fl_buf_free(&body);
  fl_http_head_free(&h);
  return out.data;
}

/* The whole text at once. */
static char *read_whole(const how_t *how, const char *text, size_t len) { return trace(how, text, len, len, 0); }

/* text reads as `want` whole, one byte at a time, and split in two anywhere. */
static void reads_as_in_any_pieces(const how_t *how, const char *text, size_t len, const char *want) {
  char *got = read_whole(how, text, len);
  if (strcmp(got, want) != 0) fail_msg("whole:\n%s\nexpected:\n%s", got, want);
  free(got);
  got = trace(how, text, len, 1, 1);
  if (strcmp(got, want) != 0) fail_msg("a byte at a time:\n%s\nexpected:\n%s", got, want);
  free(got);
  for (size_t split = 1; split < len; split++) {
    got = trace(how, text, len, split, 0);
    if (strcmp(got, want) != 0) fail_msg("split at %zu:\n%s\nexpected:\n%s", split, got, want);
    free(got);
  }
}

#define READS_AS(how, lit, want) reads_as_in_any_pieces(how, lit, sizeof lit - 1, want)

/* ---- requests ---- */

static void test_a_request_reads_as_its_method_target_version_and_fields_names_lower_cased(void **state) {
  static const char ok[] =
      "POST /v1/chat/completions?stream=true&user=a%20b HTTP/1.1\r\n"
      "Host: gateway.example.com:8080\r\n"
      "User-Agent: curl 8.0\r\n"
      "X-Empty:\r\n"
      "X-User-Id:   alice \t \r\n"
      "X-Tab:\tin\tside\n"                        /* a bare LF ends a line too */
      "Content-Length: 17\r\n"
      "\r\n"
      "{\"model\":\"gpt-x\"}";
  READS_AS(&REQUESTS, ok,
           "HEAD POST /v1/chat/completions?stream=true&user=a%20b HTTP/1.1 keep-alive length=17\n"
           "  host: gateway.example.com:8080\n"
           "  user-agent: curl 8.0\n"                 /* whitespace inside a value stays */
           "  x-empty: \n"
           "  x-user-id: alice\n"                     /* around it, it goes */
           "  x-tab: in\tside\n"
           "  content-length: 17\n"
           "BODY 17 {\"model\":\"gpt-x\"}\n"
           "END\n");
}

static void test_a_request_without_framing_has_no_body_and_what_follows_is_the_next_one(void **state) {
  READS_AS(&REQUESTS, "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
           "HEAD GET /a HTTP/1.1 keep-alive\n  host: a\nEND\n"
           "HEAD GET /b HTTP/1.0 close\nEND\n");
}

static void test_pipelined_requests_are_read_one_after_the_other_blank_lines_between_skipped(void **state) {
  READS_AS(&REQUESTS,
           "\r\n\r\nPOST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
           "\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
           "\nHEAD /3 HTTP/1.0\r\n\r\n"
           "DELETE /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
           "GET /5 HT",
           "HEAD POST /1 HTTP/1.1 keep-alive length=3\n  host: a\n  content-length: 3\nBODY 3 abc\nEND\n"
           "HEAD POST /2 HTTP/1.1 keep-alive chunked\n  host: a\n  transfer-encoding: chunked\nBODY 2 de\nEND\n"
           "HEAD HEAD /3 HTTP/1.0 close\nEND\n"
           "HEAD DELETE /4 HTTP/1.1 close\n  host: a\n  connection: close\nEND\n"
           "HELD 9\n");
}

static void test_every_method_is_read_by_name(void **state) {
  static const fl_method_t methods[] = {FL_METHOD_GET, FL_METHOD_HEAD, FL_METHOD_POST, FL_METHOD_PUT,
                                        FL_METHOD_DELETE, FL_METHOD_OPTIONS, FL_METHOD_TRACE, FL_METHOD_PATCH};
  for (size_t i = 0; i < FL_ARRAY_LEN(methods); i++) {
    char text[64], want[96];
    snprintf(text, sizeof text, "%s * HTTP/1.1\r\nHost: a\r\n\r\n", fl_method_name(methods[i]));
    snprintf(want, sizeof want, "HEAD %s * HTTP/1.1 keep-alive\n  host: a\nEND\n", fl_method_name(methods[i]));
    char *got = read_whole(&REQUESTS, text, strlen(text));
    assert_string_equal(got, want);
    free(got);
  }
  assert_string_equal(fl_method_name(FL_METHOD_NONE), "");
  assert_string_equal(fl_method_name((fl_method_t)99), "");
}

/* RFC 9112 section 9.3: 1.1 stays open unless told to close; 1.0 closes unless told to stay. */
static void test_keep_alive_follows_the_version_and_the_connection_tokens(void **state) {
  static const struct { const char *text; bool keep; } cases[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-a,\tclose\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-a\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
  };
  for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
    fl_h1_t p;
    fl_http_head_t h;
    fl_h1_init(&p, false);
    assert_int_equal(fl_http_head_init(&h, 1024, 16), 0);
    size_t used, body_len;
    const char *body;
    assert_int_equal(fl_h1_feed(&p, &h, cases[i].text, strlen(cases[i].text), &used, &body, &body_len), FL_H1_HEAD);
    if (p.keep_alive != cases[i].keep) fail_msg("%s: keep_alive %d", cases[i].text, p.keep_alive);
    fl_http_head_free(&h);
  }
}

/* RFC 9112 section 3.2: an HTTP/1.1 request names its host once, exactly; HTTP/1.0 may leave it out. */
static void test_an_http_1_1_request_needs_one_host(void **state) {
  READS_AS(&REQUESTS, "GET / HTTP/1.1\r\n\r\n", "ERROR 400 HTTP/1.1 request without a Host header\n");
  READS_AS(&REQUESTS, "GET / HTTP/1.0\r\n\r\n", "HEAD GET / HTTP/1.0 close\nEND\n");
  READS_AS(&REQUESTS, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "ERROR 400 more than one Host header\n");
}

/* ---- chunked bodies ---- */

static void test_chunks_are_decoded_their_extensions_and_trailers_dropped(void **state) {
  READS_AS(&REQUESTS,
           "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
           "5;name=value;quoted=\"a b\"\r\nhello\r\n"
           "A \t; ext\r\n, world!!!\r\n"
           "00001\n.\n"                              /* leading zeros, bare LFs */
           "0;last\r\nX-Checksum: 99\r\nX-More: 1\r\n\r\n",
           "HEAD POST /up HTTP/1.1 keep-alive chunked\n  host: a\n  transfer-encoding: Chunked\n"
           "BODY 16 hello, world!!!.\n"
           "END\n");
  READS_AS(&ANSWERS,
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nf\r\n0123456789abcde\r\nF\r\nfghijklmnopqrst\r\n0\r\n\r\n",
           "HEAD 200 HTTP/1.1 keep-alive chunked\n  transfer-encoding: chunked\n"
           "BODY 30 0123456789abcdefghijklmnopqrst\n"
           "END\n");
}

/* ---- answers ---- */

static void test_an_answer_reads_as_its_status_and_fields(void **state) {
  READS_AS(&ANSWERS, "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
           "HEAD 201 HTTP/1.1 keep-alive length=2\n  content-type: text/plain\n  content-length: 2\n"
           "BODY 2 ok\nEND\n");
  READS_AS(&ANSWERS, "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",      /* the reason phrase may be absent */
           "HEAD 404 HTTP/1.1 keep-alive length=0\n  content-length: 0\nEND\n");
  READS_AS(&ANSWERS, "HTTP/1.1 200 \xc3\x84 \tfine\r\nContent-Length: 0\r\n\r\n",
           "HEAD 200 HTTP/1.1 keep-alive length=0\n  content-length: 0\nEND\n");
}

/* RFC 9112 section 6.3: answers to HEAD, 1xx, 204 and 304 end with their head, whatever their
 * framing says; the bytes after are the next answer's. */
static void test_answers_to_head_and_1xx_204_304_have_no_body(void **state) {
  const how_t to_head = {.response = true, .no_body = true};
  READS_AS(&to_head, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
           "HEAD 200 HTTP/1.1 keep-alive length=5\n  content-length: 5\nEND\n"
           "HEAD 200 HTTP/1.1 keep-alive chunked\n  transfer-encoding: chunked\nEND\n");
  READS_AS(&ANSWERS,
           "HTTP/1.1 100 Continue\r\n\r\n"
           "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
           "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
           "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
           "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
           "HEAD 100 HTTP/1.1 keep-alive\nEND\n"
           "HEAD 103 HTTP/1.1 keep-alive\n  link: </a>\nEND\n"
           "HEAD 204 HTTP/1.1 keep-alive length=7\n  content-length: 7\nEND\n"
           "HEAD 304 HTTP/1.1 keep-alive chunked\n  transfer-encoding: chunked\nEND\n"
           "HEAD 200 HTTP/1.1 keep-alive length=1\n  content-length: 1\nBODY 1 x\nEND\n");
}

/* An answer with neither length nor chunks runs to the close, and the connection is not reused. */
static void test_an_answer_without_framing_runs_to_the_close(void **state) {
  const how_t closing = {.response = true, .eof = true};
  READS_AS(&closing, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this\r\n\r\nHTTP/1.1 200 OK\r\n",
           "HEAD 200 HTTP/1.1 close\n  content-type: text/plain\n"
           "BODY 32 all of this\r\n\r\nHTTP/1.1 200 OK\r\n\n"
           "END at the close\n");
  READS_AS(&closing, "HTTP/1.0 200 OK\r\n\r\n", "HEAD 200 HTTP/1.0 close\nEND at the close\n");
  READS_AS(&closing, "HTTP/1.1 204 No Content\r\n\r\n", "HEAD 204 HTTP/1.1 keep-alive\nEND\nnothing at the close\n");
}

static void test_a_close_before_a_message_ends_is_an_error_and_between_messages_is_not(void **state) {
  const how_t closing = {.response = true, .eof = true};
  READS_AS(&closing, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
           "HEAD 200 HTTP/1.1 keep-alive length=5\n  content-length: 5\nBODY 3 abc\n"
           "ERROR at the close 400 the connection closed in the middle of a message\n");
  READS_AS(&closing, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
           "HEAD 200 HTTP/1.1 keep-alive chunked\n  transfer-encoding: chunked\nBODY 3 abc\n"
           "ERROR at the close 400 the connection closed in the middle of a message\n");
  READS_AS(&closing, "HTTP/1.1 200 OK\r\nContent-Le",
           "HELD 10\nERROR at the close 400 the connection closed in the middle of a message\n");
  READS_AS(&closing, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
           "HEAD 200 HTTP/1.1 keep-alive length=0\n  content-length: 0\nEND\nnothing at the close\n");
  const how_t requests_closing = {.eof = true};
  READS_AS(&requests_closing, "\r\n\r\n", "nothing at the close\n");     /* only blank lines: no request */
  char *got = read_whole(&closing, "", 0);
  assert_string_equal(got, "nothing at the close\n");
  free(got);
}

/* An answer's first line is its status line: a blank line there is not an empty head. */
static void test_a_blank_line_before_a_status_line_is_refused(void **state) {
  READS_AS(&ANSWERS, "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "ERROR 400 status line is not HTTP/1.x\n");
  READS_AS(&ANSWERS, "\nHTTP/1.1 200 OK\r\n\r\n", "ERROR 400 status line is not HTTP/1.x\n");
}

/* ---- limits ---- */

static void test_a_head_over_the_tables_bytes_answers_431_and_a_long_request_line_414(void **state) {
  const how_t small = {.cap = 64, .max = 8};
  READS_AS(&small, "GET / HTTP/1.1\r\nX-Big: 01234567890123456789012345678901234567890123456789\r\n\r\n",
           "ERROR 431 header section too large\n");
  READS_AS(&small, "GET / HTTP/1.1\r\nX-Big: 01234567890123456789012345678901234567890123456789",   /* not even complete */
           "ERROR 431 header section too large\n");
  READS_AS(&small, "GET /0123456789012345678901234567890123456789012345678901234567890123456789 HTTP/1.1\r\n\r\n",
           "ERROR 414 URL too long\n");
  READS_AS(&small, "GET /0123456789012345678901234567890123456789012345678901234567890123456789",
           "ERROR 414 URL too long\n");
  const how_t small_answers = {.response = true, .cap = 64, .max = 8};
  READS_AS(&small_answers, "HTTP/1.1 200 0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
           "ERROR 431 header section too large\n");
  /* the limit counts every byte of the head, its blank line too: 16 + 9 + 37 + 2 fit, one more does not */
  READS_AS(&small, "GET / HTTP/1.1\r\nHost: a\r\nX: 01234567890123456789012345678901\r\n\r\n",
           "HEAD GET / HTTP/1.1 keep-alive\n  host: a\n  x: 01234567890123456789012345678901\nEND\n");
  READS_AS(&small, "GET / HTTP/1.1\r\nHost: a\r\nX: 012345678901234567890123456789012\r\n\r\n",
           "ERROR 431 header section too large\n");
}

static void test_more_fields_than_the_table_holds_answer_431(void **state) {
  const how_t three = {.max = 3};
  READS_AS(&three, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n",
           "HEAD GET / HTTP/1.1 keep-alive\n  host: a\n  a: 1\n  b: 2\nEND\n");
  READS_AS(&three, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", "ERROR 431 too many header fields\n");
}

/* A first line too long for the table is refused for its method first when that is already
 * wrong, so that the answer does not depend on where the bytes were cut. */
static void test_a_long_first_line_with_a_bad_method_is_refused_alike_whole_or_in_pieces(void **state) {
  const how_t small = {.cap = 64};
  char text[300];
  memset(text, 'a', sizeof text);
  memcpy(text, "\x16\x03\x01", 3);
  reads_as_in_any_pieces(&small, text, sizeof text, "ERROR 400 unknown method\n");
  memcpy(text, "GETTINGS /", 10);
  reads_as_in_any_pieces(&small, text, sizeof text, "ERROR 400 unknown method\n");
}

/* ---- what may be in a head ---- */

/* The token table against RFC 9110's definition, byte by byte. */
static void test_a_field_name_is_exactly_rfc_9110_token_characters(void **state) {
  for (int ch = 0; ch < 256; ch++) {
    if (ch == ':') continue;                                /* that one ends the name */
    bool token = ch > 0x20 && ch < 0x7F && !strchr("\"(),/:;<=>?@[\\]{}", ch);
    char text[64];
    int n = snprintf(text, sizeof text, "GET / HTTP/1.1\r\nHost: a\r\nX%ca: v\r\n\r\n", ch ? ch : '!');
    if (ch == 0) text[26] = '\0';
    char *got = read_whole(&REQUESTS, text, (size_t)n);
    bool read = strncmp(got, "HEAD", 4) == 0;
    if (read != token) fail_msg("byte 0x%02x in a name: %s", ch, got);
    if (!token && strcmp(got, "ERROR 400 invalid header name character\n") != 0) fail_msg("byte 0x%02x: %s", ch, got);
    free(got);
  }
}

/* Control bytes in a value would smuggle line breaks into logs and backends; HTAB and obs-text
 * are fine. */
/* Each byte at each place of a 43-byte value: values are checked 16 bytes at a time, then 8,
 * then one by one, and each stretch must judge alike. */
static void test_a_field_value_refuses_control_bytes_and_takes_tabs_and_obs_text(void **state) {
  static const size_t places[] = {1, 20, 35, 41};
  static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\nX: ", tail[] = "\r\n\r\n";
  for (int ch = 0; ch < 256; ch++) {
    bool ok = (ch >= 0x20 && ch != 0x7F) || ch == '\t';
    if (ch == '\n' || ch == ' ') continue;                  /* the first ends the line; spaces at the end are trimmed */
    for (size_t k = 0; k < FL_ARRAY_LEN(places); k++) {
      char text[128], value[43];
      memset(value, 'a', sizeof value);
      value[places[k]] = (char)ch;
      size_t n = 0;
      memcpy(text + n, head, sizeof head - 1), n += sizeof head - 1;
      memcpy(text + n, value, sizeof value), n += sizeof value;
      memcpy(text + n, tail, sizeof tail - 1), n += sizeof tail - 1;
      char *got = read_whole(&REQUESTS, text, n);
      bool read = strncmp(got, "HEAD", 4) == 0;
      if (read != ok) fail_msg("byte 0x%02x at %zu of a value: %s", ch, places[k], got);
      if (!ok && strcmp(got, "ERROR 400 invalid header value character\n") != 0)
        fail_msg("byte 0x%02x at %zu: %s", ch, places[k], got);
      free(got);
    }
  }
}

/* ---- every refusal, in words ---- */

#define POST "POST / HTTP/1.1\r\nHost: a\r\n"
#define CHUNKED POST "Transfer-Encoding: chunked\r\n\r\n"
#define OK200 "HTTP/1.1 200 OK\r\n"

typedef struct {
  bool response;
  const char *text;
  int status;
  const char *words;
  uint32_t cap, max;
} refusal_t;

#define REQ(text, status, words) {false, text, status, words, 0, 0}
#define ANS(text, status, words) {true, text, status, words, 0, 0}

static const refusal_t REFUSALS[] = {
    REQ("FROB / HTTP/1.1\r\n\r\n", 400, "unknown method"),
    REQ("get / HTTP/1.1\r\n\r\n", 400, "unknown method"),
    REQ("\x16\x03\x01\x02\x00\x01\x00", 400, "unknown method"),
    REQ("GET\r\n\r\n", 400, "unknown method"),
    REQ("GET  / HTTP/1.1\r\n\r\n", 400, "invalid URL"),
    REQ("GET /a\x01" "b HTTP/1.1\r\n\r\n", 400, "invalid URL"),
    REQ("GET /a\tb HTTP/1.1\r\n\r\n", 400, "invalid URL"),
    REQ("GET / HTTP/1.1 trailing\r\n\r\n", 400, "request line is not HTTP/1.x"),
    REQ("GET / HTTP/2.0\r\n\r\n", 400, "request line is not HTTP/1.x"),
    REQ("GET / http/1.1\r\n\r\n", 400, "request line is not HTTP/1.x"),
    REQ("GET /\r\n\r\n", 400, "request line is not HTTP/1.x"),
    {false, "GET /0123456789012345678901234567890123456789012345678901234567890123456789 HTTP/1.1\r\n\r\n", 414,
     "URL too long", 64, 0},
    ANS("garbage\r\n\r\n", 400, "status line is not HTTP/1.x"),
    ANS("HTTP/2 200 OK\r\n\r\n", 400, "status line is not HTTP/1.x"),
    ANS("HTTP/1.1  200 OK\r\n\r\n", 400, "invalid status code"),
    ANS("HTTP/1.1 2x0 OK\r\n\r\n", 400, "invalid status code"),
    ANS("HTTP/1.1 200OK\r\n\r\n", 400, "invalid status code"),
    ANS("HTTP/1.1 099 Low\r\n\r\n", 400, "invalid status code"),
    ANS("HTTP/1.1 600 High\r\n\r\n", 400, "invalid status code"),
    ANS("HTTP/1.1 200 O\x01K\r\n\r\n", 400, "invalid character in the status line"),
    ANS(OK200 "X-A: \x7f\r\n\r\n", 400, "invalid header value character"),
    ANS(OK200 "Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "more than one Content-Length"),
    ANS(OK200 "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n", 400, "chunk size too large"),
    REQ(POST "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400, "more than one Content-Length"),
    REQ(POST "Content-Length: abc\r\n\r\n", 400, "invalid Content-Length"),
    REQ(POST "Content-Length:\r\n\r\n", 400, "invalid Content-Length"),
    REQ(POST "Content-Length: -1\r\n\r\n", 400, "invalid Content-Length"),
    REQ(POST "Content-Length: +5\r\n\r\n", 400, "invalid Content-Length"),
    REQ(POST "Content-Length: 0x10\r\n\r\n", 400, "invalid Content-Length"),
    REQ(POST "Content-Length: 5, 5\r\n\r\n", 400, "invalid Content-Length"),
    REQ(POST "Content-Length: 1 0\r\n\r\n", 400, "invalid Content-Length"),
    REQ(POST "Content-Length: 9999999999999999999\r\n\r\n", 400, "invalid Content-Length"),
    REQ(POST "Transfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n", 400, "invalid Content-Length"),
    REQ(POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "more than one Transfer-Encoding"),
    REQ(POST "Transfer-Encoding: gzip\r\n\r\n", 400, "Transfer-Encoding other than chunked"),
    REQ(POST "Transfer-Encoding: gzip, chunked\r\n\r\n", 400, "Transfer-Encoding other than chunked"),
    REQ(POST "Transfer-Encoding: chunked, identity\r\n\r\n", 400, "Transfer-Encoding other than chunked"),
    REQ(POST "Transfer-Encoding: chunkedx\r\n\r\n", 400, "Transfer-Encoding other than chunked"),
    REQ(POST "Transfer-Encoding:\r\n\r\n", 400, "Transfer-Encoding other than chunked"),
    REQ(POST "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "both Content-Length and Transfer-Encoding"),
    REQ(POST "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
     "both Content-Length and Transfer-Encoding"),
    REQ(POST "X-A: a\r\n folded\r\n\r\n", 400, "obsolete line folding"),
    REQ(POST "X-A: a\r\n\tfolded\r\n\r\n", 400, "obsolete line folding"),
    REQ(POST "Bad Name: v\r\n\r\n", 400, "invalid header name character"),
    REQ(POST "Content-Length : 0\r\n\r\n", 400, "invalid header name character"),
    REQ(POST "Host a\r\n\r\n", 400, "invalid header name character"),
    REQ(POST ": v\r\n\r\n", 400, "invalid header name character"),
    REQ(POST "X(y): v\r\n\r\n", 400, "invalid header name character"),
    REQ(POST "X-A: a\x01" "b\r\n\r\n", 400, "invalid header value character"),
    REQ(POST "X-A: a\rb\r\n\r\n", 400, "invalid header value character"),
    {false, POST "A: 1\r\nB: 2\r\n\r\n", 431, "too many header fields", 0, 2},
    {false, POST "X-Big: 0123456789012345678901234567890123456789\r\n\r\n", 431, "header section too large", 64, 0},
    REQ("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400, "CONNECT is not supported"),
    REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 400,
     "protocol upgrades are not supported"),
    REQ(POST "Host: b\r\n\r\n", 400, "more than one Host header"),
    REQ(POST "host: a\r\n\r\n", 400, "more than one Host header"),
    REQ("GET / HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 request without a Host header"),
    REQ("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 400, "HTTP/1.1 request without a Host header"),
    REQ(CHUNKED "zz\r\n", 400, "invalid chunk size"),
    REQ(CHUNKED "-1\r\n", 400, "invalid chunk size"),
    REQ(CHUNKED " 5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"),
    REQ(CHUNKED "5x\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"),
    REQ(CHUNKED "5 \r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"),
    REQ(CHUNKED "5 x\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"),
    REQ(CHUNKED "\r\n", 400, "invalid chunk size"),
    REQ(CHUNKED "ffffffffffffffffffff\r\n", 400, "chunk size too large"),
    REQ(CHUNKED "1000000000000000\r\n", 400, "chunk size too large"),
    REQ(CHUNKED "5;a\x01\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk extension"),
    REQ(CHUNKED "5\rX", 400, "line not ended by CRLF"),
    REQ(CHUNKED "5\r\nhello\rX", 400, "line not ended by CRLF"),
    REQ(CHUNKED "0\r\n\rX", 400, "line not ended by CRLF"),
    REQ(CHUNKED "5\r\nhelloX", 400, "chunk data longer than its size"),
};

/* The words h1.c can fail with, read from its fail(p, STATUS, "words") calls, and those of the
 * table's refusals it passes on. */
static size_t words_in_the_parser(const char *words[], size_t cap) {
  FILE *f = fopen("src/h1.c", "rb");
  if (!f) fail_msg("src/h1.c not found: tests run from the repository's root");
  static char src[1 << 16];
  size_t len = fread(src, 1, sizeof src - 1, f);
  fclose(f);
  src[len] = '\0';
  size_t n = 0;
  for (const char *s = src; (s = strstr(s, "fail(p, ")); s++) {
    const char *q = strchr(s, '"'), *close = strchr(s, ')');
    if (!q || !close || q > close) continue;           /* fail(p, st, h->refusal): the table's words */
    const char *e = strchr(q + 1, '"');
    assert_true(n < cap);
    words[n++] = strndup(q + 1, (size_t)(e - q - 1));
  }
  static const char *const table[] = {"too many header fields", "header section too large"};
  for (size_t i = 0; i < FL_ARRAY_LEN(table); i++) words[n++] = strdup(table[i]);
  return n;
}

static void test_every_refusal_has_its_status_and_words_however_the_input_is_cut(void **state) {
  for (size_t i = 0; i < FL_ARRAY_LEN(REFUSALS); i++) {
    const refusal_t *r = &REFUSALS[i];
    const how_t how = {.response = r->response, .cap = r->cap, .max = r->max};
    char want[160];
    size_t want_len = (size_t)snprintf(want, sizeof want, "ERROR %d %s\n", r->status, r->words);
    char *whole = read_whole(&how, r->text, strlen(r->text));
    size_t len = strlen(whole);              /* what came before the error (a head, a body) may vary */
    if (len < want_len || strcmp(whole + len - want_len, want) != 0) fail_msg("case %zu (%s):\n%s", i, r->text, whole);
    reads_as_in_any_pieces(&how, r->text, strlen(r->text), whole);
    free(whole);
  }
}

/* Long lines and the close, which the table above cannot spell out. */
static void test_the_refusals_of_long_chunk_lines_and_trailers(void **state) {
  fl_buf_t text = {0};
  fl_buf_str(&text, CHUNKED);
  for (int i = 0; i < 5000; i++) fl_buf_str(&text, "0");
  fl_buf_str(&text, "5\r\n");
  char *got = read_whole(&REQUESTS, text.data, text.len);
  assert_non_null(strstr(got, "ERROR 400 chunk size line too long\n"));
  free(got);

  fl_buf_clear(&text);
  fl_buf_str(&text, CHUNKED "5;");
  for (int i = 0; i < 5000; i++) fl_buf_str(&text, "x");
  got = read_whole(&REQUESTS, text.data, text.len);
  assert_non_null(strstr(got, "ERROR 400 chunk size line too long\n"));
  free(got);

  fl_buf_clear(&text);
  fl_buf_str(&text, CHUNKED "0\r\n");
  for (int i = 0; i < 1000; i++) fl_buf_str(&text, "X-Trailer: 0123456789\r\n");
  got = read_whole(&REQUESTS, text.data, text.len);
  assert_non_null(strstr(got, "ERROR 400 trailer section too large\n"));
  free(got);
  fl_buf_free(&text);
}

static void test_every_word_the_parser_has_is_reached_by_some_input(void **state) {
  static const char *reached[] = {"chunk size line too long", "trailer section too large",
                                  "the connection closed in the middle of a message"};
  const char *words[64];
  size_t n = words_in_the_parser(words, FL_ARRAY_LEN(words) - 2);
  assert_true(n > 20);
  for (size_t i = 0; i < n; i++) {
    bool found = false;
    for (size_t k = 0; k < FL_ARRAY_LEN(REFUSALS) && !found; k++) found = strcmp(REFUSALS[k].words, words[i]) == 0;
    for (size_t k = 0; k < FL_ARRAY_LEN(reached) && !found; k++) found = strcmp(reached[k], words[i]) == 0;
    if (!found) fail_msg("no test input reaches \"%s\"", words[i]);
  }
  for (size_t i = 0; i < n; i++) free((char *)words[i]);
}

/* After an error the parser stays stopped, and a new message needs fl_h1_reset. */
static void test_an_error_sticks_until_reset(void **state) {
  fl_h1_t p;
  fl_http_head_t h;
  fl_h1_init(&p, false);
  assert_int_equal(fl_http_head_init(&h, 1024, 16), 0);
  size_t used, body_len;
  const char *body;
  static const char bad[] = "FROB / HTTP/1.1\r\n\r\n", good[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  assert_int_equal(fl_h1_feed(&p, &h, bad, sizeof bad - 1, &used, &body, &body_len), FL_H1_ERROR);
  assert_int_equal(fl_h1_feed(&p, &h, good, sizeof good - 1, &used, &body, &body_len), FL_H1_ERROR);
  assert_int_equal(fl_h1_eof(&p), FL_H1_ERROR);
  fl_h1_reset(&p);
  fl_http_head_reset(&h);
  assert_null(p.error);
  assert_int_equal(fl_h1_feed(&p, &h, good, sizeof good - 1, &used, &body, &body_len), FL_H1_HEAD);
  assert_int_equal(fl_h1_feed(&p, &h, good + used, sizeof good - 1 - used, &used, &body, &body_len), FL_H1_END);
  assert_int_equal(fl_h1_feed(&p, &h, "", 0, &used, &body, &body_len), FL_H1_END);   /* until reset */
  fl_http_head_free(&h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_request_reads_as_its_method_target_version_and_fields_names_lower_cased),
      cmocka_unit_test(test_a_request_without_framing_has_no_body_and_what_follows_is_the_next_one),
      cmocka_unit_test(test_pipelined_requests_are_read_one_after_the_other_blank_lines_between_skipped),
      cmocka_unit_test(test_every_method_is_read_by_name),
      cmocka_unit_test(test_keep_alive_follows_the_version_and_the_connection_tokens),
      cmocka_unit_test(test_an_http_1_1_request_needs_one_host),
      cmocka_unit_test(test_chunks_are_decoded_their_extensions_and_trailers_dropped),
      cmocka_unit_test(test_an_answer_reads_as_its_status_and_fields),
      cmocka_unit_test(test_answers_to_head_and_1xx_204_304_have_no_body),
      cmocka_unit_test(test_an_answer_without_framing_runs_to_the_close),
      cmocka_unit_test(test_a_close_before_a_message_ends_is_an_error_and_between_messages_is_not),
      cmocka_unit_test(test_a_blank_line_before_a_status_line_is_refused),
      cmocka_unit_test(test_a_head_over_the_tables_bytes_answers_431_and_a_long_request_line_414),
      cmocka_unit_test(test_more_fields_than_the_table_holds_answer_431),
      cmocka_unit_test(test_a_long_first_line_with_a_bad_method_is_refused_alike_whole_or_in_pieces),
      cmocka_unit_test(test_a_field_name_is_exactly_rfc_9110_token_characters),
      cmocka_unit_test(test_a_field_value_refuses_control_bytes_and_takes_tabs_and_obs_text),
      cmocka_unit_test(test_every_refusal_has_its_status_and_words_however_the_input_is_cut),
      cmocka_unit_test(test_the_refusals_of_long_chunk_lines_and_trailers),
      cmocka_unit_test(test_every_word_the_parser_has_is_reached_by_some_input),
      cmocka_unit_test(test_an_error_sticks_until_reset),
  };
  return cmocka_run_group_tests_name("h1", tests, NULL, NULL);
}
