/* fuzz_http.c — HTTP/1 framing as the gateway, httpd and the client read it: fl_h1_feed over
 * pipelined requests or answers into the header table, the hop-by-hop set over each head, and
 * fl_h1_eof at the end. Byte 0 says what is read (bit 0: answers; bit 1: answers to HEAD, or
 * requests read as httpd does, an HTTP/1.1 one without Host taken) and the size of the pieces
 * the rest is cut into (bits 2-7: 1 to 64 bytes). The input is read once whole and once in those
 * pieces, as a caller does (a line of the head not complete is given again with the next
 * bytes); both readings must tell the same events: heads, body bytes, ends, the error and its
 * words, the bytes left and what the close makes of them. */
#include "fuzz.h"

#include "h1.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
  fl_h1_t parser;
  fl_http_head_t head;
  fl_buf_t held;            /* bytes given back by the parser, given again with the next ones */
  fl_buf_t events;          /* what was read, in words */
  bool flag, stopped;        /* byte 0's bit 1: no_body for answers */
} reader_t;

static void check(bool ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
  }
}

static void tell_head(reader_t *r) {
  const fl_h1_t *p = &r->parser;
  const fl_http_head_t *h = &r->head;
  fl_buf_t *out = &r->events;
  if (p->response) {
    check(p->status >= 100 && p->status <= 599, "a head with a status outside 100-599");
    fl_buf_printf(out, "HEAD %u", p->status);
  } else {
    check(p->method != FL_METHOD_NONE && h->url_len > 0, "a request head without method or target");
    fl_buf_printf(out, "HEAD %s %.*s", fl_method_name(p->method), (int)h->url_len, h->buf + h->url_off);
  }
  fl_buf_printf(out, " 1.%u ka=%d cl=%d/%llu te=%d\n", p->minor, p->keep_alive, p->has_length,
                (unsigned long long)p->content_length, p->chunked);
  for (uint32_t i = 0; i < h->n; i++) {
    const fl_hdr_t *x = &h->hdrs[i];
    fl_buf_printf(out, "%d %.*s: %.*s\n", fl_http_is_hop(h, x), (int)x->name_len, fl_hdr_name(h, x),
                  (int)x->value_len, fl_hdr_value(h, x));
  }
  size_t len;
  fl_http_head_get(h, "host", &len);
}

/* Reads what is held and n more bytes, up to the parser's need for more, or its error. */
static void read_piece(reader_t *r, const char *data, size_t n) {
  fl_buf_append(&r->held, data, n);
  size_t pos = 0;
  while (!r->stopped) {
    size_t used, body_len;
    const char *body;
    size_t left = r->held.len - pos;
    fl_h1_event_t ev = fl_h1_feed(&r->parser, &r->head, r->held.data + pos, left, &used, &body, &body_len);
    check(used <= left, "more bytes used than given");
    pos += used;
    if (ev == FL_H1_MORE) break;
    if (ev == FL_H1_DATA) {
      check(body_len > 0 && body >= r->held.data && body + body_len <= r->held.data + pos, "body outside its bytes");
      fl_buf_append(&r->events, body, body_len);        /* bytes alone: pieces cut anywhere read the same */
    } else if (ev == FL_H1_HEAD) {
      tell_head(r);
    } else if (ev == FL_H1_END) {
      check(fl_h1_done(&r->parser), "END but not done");
      fl_buf_str(&r->events, "\nEND\n");
      fl_h1_reset(&r->parser);
      r->parser.no_body = r->flag;
      fl_http_head_reset(&r->head);
    } else {
      check(r->parser.error && (r->parser.error_status == 400 || r->parser.error_status == 414 ||
                                r->parser.error_status == 431), "an error without words or status");
      fl_buf_printf(&r->events, "\nERROR %d %s\n", r->parser.error_status, r->parser.error);
      r->stopped = true;
    }
  }
  memmove(r->held.data, r->held.data + pos, r->held.len - pos);
  r->held.len -= pos;
}

/* The events of reading data in pieces of `piece` bytes, then the close; in r->events. */
static void read_all(reader_t *r, bool response, bool flag, const char *data, size_t size, size_t piece) {
  memset(r, 0, sizeof *r);
  fl_h1_init(&r->parser, response);
  r->flag = r->parser.no_body = flag;
  if (fl_http_head_init(&r->head, 4096, 32) != 0) abort();
  for (size_t i = 0; i < size && !r->stopped; i += piece) read_piece(r, data + i, FL_MIN(piece, size - i));
  if (!r->stopped) {
    fl_h1_event_t ev = fl_h1_eof(&r->parser);
    fl_buf_printf(&r->events, "\nHELD %zu CLOSE %d %s\n", r->held.len, (int)ev, ev == FL_H1_ERROR ? r->parser.error : "");
  }
  fl_buf_append(&r->events, "", 1);
  check(r->events.err == 0, "out of memory");
}

static void reader_free(reader_t *r) {
  fl_http_head_free(&r->head);
  fl_buf_free(&r->held);
  fl_buf_free(&r->events);
}

FL_FUZZ_TARGET(http) {
  if (size < 1) return 0;
  bool response = data[0] & 1, flag = data[0] & 2;
  size_t piece = (size_t)(data[0] >> 2) + 1;
  reader_t whole, pieces;
  read_all(&whole, response, flag, (const char *)data + 1, size - 1, size);
  read_all(&pieces, response, flag, (const char *)data + 1, size - 1, piece);
  if (whole.events.len != pieces.events.len || memcmp(whole.events.data, pieces.events.data, whole.events.len) != 0) {
    fprintf(stderr, "read whole:\n%s\nread in pieces of %zu:\n%s\n", whole.events.data, piece, pieces.events.data);
    check(false, "the input reads differently in pieces");
  }
  reader_free(&whole);
  reader_free(&pieces);
  return 0;
}
