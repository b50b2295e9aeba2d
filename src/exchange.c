/* exchange.c — the upstream side of the data path: pick a backend of the chosen variant,
 * connect or reuse a pooled connection, stream the request up and the answer back as it
 * arrives (re-framed for the client), retries, outlier reports and upstream timeouts. */
#include "proxy_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void connect_to(fl_client_t *c, fl_backend_t *b, bool pooled);

/* ---- failures the client is told of ---- */

static const char *variant_of(const fl_client_t *c) { return fl_variant_name(c->ex.decision.variant); }

/* The client reads what failed in general words ("the stable backend refused the connection")
 * and its request id; the backend's address and the cause go to the log only (account.c): which
 * machines serve a route is no business of the client's. */
__attribute__((format(printf, 5, 6)))
static void upstream_error(fl_client_t *c, int status, const char *type, const char *cause, const char *fmt, ...) {
  char what[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  fl_account_upstream_detail(c, status, what, cause);
  fl_client_error(c, status, type, "%s (request %s)", what, c->ex.request_id);
}

/* ---- writing upstream ---- */

static void upstream_failed(fl_client_t *c, bool closed);

/* Queued request bytes went to the backend (only while the connection is in use: a pooled one
 * has nothing queued). */
static void on_up_sent(fl_sock_t *s, size_t n, int status) {
  fl_upconn_t *u = s->data;
  fl_client_t *c = u->owner;
  if (status < 0) {
    upstream_failed(c, false);
  } else {
    if (c->ex.phase == FL_EX_SENDING) fl_client_progress(c);      /* the backend takes the body */
    if (c->read_paused && s->queued < FL_LOW_WATER && !c->ex.req_done) fl_client_pause_reading(c, false);
  }
  fl_client_settle(c);
}

static void up_write(fl_client_t *c, const uv_buf_t *bufs, unsigned n) {
  fl_upconn_t *u = c->ex.up;
  if (c->w->cork_up == c) {
    for (unsigned i = 0; i < n; i++) fl_buf_append(&c->w->cork_up_buf, bufs[i].base, bufs[i].len);
    if (c->w->cork_up_buf.err) upstream_failed(c, false);    /* detach clears the buffer */
    return;
  }
  if (fl_sock_write(&u->sock, bufs, n) < 0) upstream_failed(c, false);
  else if (u->sock.queued > FL_HIGH_WATER) fl_client_pause_reading(c, true);
}

void fl_exchange_cork(fl_client_t *c) {
  fl_worker_t *w = c->w;
  if (w->cork_up == c) return;
  if (w->cork_up) fl_exchange_uncork(w->cork_up);
  fl_buf_clear(&w->cork_up_buf);
  w->cork_up = c;
}

void fl_exchange_uncork(fl_client_t *c) {
  fl_worker_t *w = c->w;
  if (w->cork_up != c) return;
  w->cork_up = NULL;
  uv_buf_t b = uv_buf_init(w->cork_up_buf.data, (unsigned)w->cork_up_buf.len);
  if (b.len && fl_ex_connected(&c->ex) && !fl_client_closed(c)) up_write(c, &b, 1);
  fl_buf_clear(&w->cork_up_buf);
}

/* Body bytes from the client, framed the way the head announced them (NULL, 0 = last chunk). */
void fl_exchange_body(fl_client_t *c, const char *data, size_t len) {
  fl_exchange_t *ex = &c->ex;
  char size_line[24];
  uv_buf_t bufs[3];
  unsigned n = 0;
  if (ex->chunked_req) {
    if (!data) bufs[n++] = uv_buf_init("0\r\n\r\n", 5);
    else if (len) {
      bufs[n++] = uv_buf_init(size_line, (unsigned)snprintf(size_line, sizeof size_line, "%zx\r\n", len));
      bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
      bufs[n++] = uv_buf_init("\r\n", 2);
    }
  } else if (len) {
    bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
  }
  if (n == 0) return;
  bool connected = fl_ex_connected(ex);
  if (!connected || ex->retain) {
    for (unsigned i = 0; i < n; i++) fl_buf_append(&ex->pending, bufs[i].base, bufs[i].len);
    if (ex->pending.err) {
      fl_client_error(c, 500, "internal_error", "out of memory holding the request body");
      return;
    }
    if (connected) ex->flushed = ex->pending.len;
    if (ex->pending.len > FL_RETAIN_MAX && connected) {
      ex->retain = false;
      fl_buf_free(&ex->pending);
      ex->flushed = 0;
    } else if (!connected && ex->pending.len > FL_HIGH_WATER) {
      fl_client_pause_reading(c, true);
    }
  }
  if (connected) up_write(c, bufs, n);
}

/* ---- connecting ---- */

static void detach(fl_client_t *c, bool reuse) {
  fl_exchange_t *ex = &c->ex;
  fl_upconn_t *u = ex->up;
  if (!u) return;
  ex->up = NULL;
  if (c->w->cork_up == c) fl_buf_clear(&c->w->cork_up_buf);
  ex->up_paused = false;
  fl_upconn_done(&c->w->pools, u, reuse);
}

void fl_exchange_abort(fl_client_t *c) { detach(c, false); }

static void on_up_read(fl_sock_t *s, ssize_t n, const char *data);

/* The connection is usable: send what waited, then wait for the answer. */
static void up_ready(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  fl_upconn_t *u = ex->up;
  fl_h1_init(&ex->up_parser, true);
  ex->up_parser.no_body = ex->head_req;
  fl_buf_clear(&ex->up_in);
  if (fl_http_head_take(&c->w->heads, &c->up_head, 65536, 256) != 0) {
    upstream_failed(c, false);
    return;
  }
  fl_sock_read(&u->sock, true);
  ex->sent_ms = fl_clock_ms();
  /* the backend's time starts when it has the whole request; until then the body must flow */
  fl_ex_enter(c, ex->req_done ? FL_EX_WAITING : FL_EX_SENDING);
  uv_buf_t b = uv_buf_init(ex->pending.data + ex->flushed, (unsigned)(ex->pending.len - ex->flushed));
  ex->flushed = ex->pending.len;
  if (b.len) up_write(c, &b, 1);
  if (ex->up != u) return;          /* the write failed: the exchange moved on (a retry, or an answer) */
  if (!ex->retain) fl_buf_free(&ex->pending);
  if (c->read_paused && !ex->req_done && u->sock.queued < FL_LOW_WATER) fl_client_pause_reading(c, false);
}

/* One failure towards outlier ejection, said when it ejects. */
static void report_failure(fl_backend_t *b) {
  if (fl_backend_report(b, false, fl_now_ms()))
    fl_log("backend %s ejected after %d consecutive failures", b->addr.text, FL_EJECT_AFTER);
}

/* Connect (with https, the handshake too) failed: `why` is FL_UPERR_CONNECT_REFUSED,
 * FL_UPERR_CONNECT_TIMEOUT or FL_UPERR_TLS (then `reason` holds OpenSSL's words). Tries one other
 * backend of the same variant, else answers. */
static void connect_failed(fl_client_t *c, fl_uperr_t why, const char *reason) {
  fl_exchange_t *ex = &c->ex;
  fl_backend_t *failed = ex->backend;
  fl_account_upstream_error(c, why);
  report_failure(failed);
  detach(c, false);
  const fl_variant_conf_t *v = &ex->route->variant[ex->decision.variant];
  fl_backend_t *next = ex->retried ? NULL : fl_upstream_pick(&c->w->pools, v, failed, fl_clock_ms());
  if (next) {
    ex->retried = true;
    fl_account_retry(c);
    ex->flushed = 0;
    connect_to(c, next, true);
    return;
  }
  if (why == FL_UPERR_CONNECT_TIMEOUT)
    upstream_error(c, 504, "timeout", NULL, "connecting to the %s backend timed out after %u ms", variant_of(c),
                   ex->conf->timeouts.connect_ms);
  else if (why == FL_UPERR_TLS)
    upstream_error(c, 502, "upstream_error", reason, "the TLS handshake with the %s backend failed", variant_of(c));
  else
    upstream_error(c, 502, "upstream_error", NULL, "the %s backend refused the connection", variant_of(c));
}

static void on_connect(fl_sock_t *s, int status) {
  fl_upconn_t *u = s->data;           /* in use: a cancelled connect closed the socket */
  fl_client_t *c = u->owner;
  if (status == UV_EPROTO) connect_failed(c, FL_UPERR_TLS, s->tls_reason);
  else if (status < 0) connect_failed(c, FL_UPERR_CONNECT_REFUSED, NULL);
  else up_ready(c);
  fl_client_settle(c);
}

static void connect_to(fl_client_t *c, fl_backend_t *b, bool pooled) {
  fl_exchange_t *ex = &c->ex;
  ex->backend = b;
  fl_account_backend(c);
  fl_upconn_t *u = pooled ? fl_pool_take(&c->w->pools, b) : NULL;
  if (u) {
    u->owner = c;
    u->sock.on_read = on_up_read;      /* a mirror may have used it last (shadow.c) */
    u->sock.on_sent = on_up_sent;
    ex->up = u;
    up_ready(c);
    return;
  }
  u = calloc(1, sizeof *u);
  if (!u) {
    fl_client_error(c, 500, "internal_error", "out of memory");
    return;
  }
  u->backend = b;
  u->pools = &c->w->pools;
  u->owner = c;
  u->sock.data = u;
  int rc = fl_sock_connect(&u->sock, &c->w->loop, (const struct sockaddr *)&b->addr.ss, b->addr.len, c->w->read_buf,
                           sizeof c->w->read_buf, on_connect);
  if (rc < 0) {
    free(u);                   /* never opened: nothing to close */
    if (rc == UV_EMFILE || rc == UV_ENFILE || rc == UV_ENOBUFS || rc == UV_ENOMEM || rc == UV_EADDRNOTAVAIL ||
        rc == UV_EAGAIN)       /* this machine's lack (descriptors, ports), not the backend's fault */
      upstream_error(c, 503, "overloaded", uv_strerror(rc),
                     "the gateway cannot open a connection to the %s backend now", variant_of(c));
    else                       /* unreachable, refused by a firewall: the backend's */
      connect_failed(c, FL_UPERR_CONNECT_REFUSED, NULL);
    return;
  }
  if (b->tls) {                /* https: the handshake runs once connected, before on_connect */
    SSL *ssl = fl_tls_client_ssl(b->tls);
    if (!ssl) {
      fl_upconn_close(&c->w->pools, u);
      fl_client_error(c, 500, "internal_error", "out of memory");
      return;
    }
    fl_sock_start_tls(&u->sock, ssl);
  }
  u->sock.on_read = on_up_read;
  u->sock.on_sent = on_up_sent;
  ex->up = u;
  fl_ex_enter(c, FL_EX_CONNECTING);
}

void fl_exchange_start(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  const fl_variant_conf_t *v = &ex->route->variant[ex->decision.variant];
  fl_backend_t *b = fl_upstream_pick(&c->w->pools, v, NULL, fl_clock_ms());
  if (!b) {
    fl_client_error(c, 503, "no_healthy_backend", "no healthy backend for route %s variant %s",
                    ex->route->name, fl_variant_name(ex->decision.variant));
    return;
  }
  ex->retain = true;
  connect_to(c, b, true);
}

/* ---- reading the answer ---- */

#define FL_STALE_MS 200      /* a backend's close of an idle connection shows within a round trip */

/* Failure after the request went out. A reused keep-alive connection that the backend had
 * already closed fails at once: the request is retried once on a fresh connection. A failure
 * later means the backend had the request, so it is not sent twice (inference is costly and a
 * POST need not be idempotent): the client gets a 502 or is cut. */
static void upstream_failed(fl_client_t *c, bool closed) {
  fl_exchange_t *ex = &c->ex;
  fl_upconn_t *u = ex->up;
  bool stale = u && u->requests > 0 && !ex->up_got_bytes && ex->retain && !ex->retried &&
               fl_clock_ms() - ex->sent_ms < FL_STALE_MS;
  detach(c, false);
  if (stale) {
    ex->retried = true;
    fl_account_retry(c);
    ex->flushed = 0;
    connect_to(c, ex->backend, false);
    return;
  }
  fl_account_upstream_error(c, FL_UPERR_RESET);
  if (!fl_ex_answered(ex)) report_failure(ex->backend);
  upstream_error(c, 502, "upstream_error", NULL, "the %s backend %s the connection before a complete answer",
                 variant_of(c), closed ? "closed" : "reset");
}

/* The answer broke off after its head went out: the client sees the cut (its connection closes),
 * and the exchange counts as the gateway's 502 (504 for a stall), not as the head's status. */
static void cut(fl_client_t *c, fl_uperr_t why) {
  fl_account_upstream_error(c, why);
  c->ex.status = why == FL_UPERR_TIMEOUT ? 504 : 502;
  fl_client_close(c);
}

static void finish(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  detach(c, ex->up_keepalive && ex->req_done);
  fl_exchange_finished(c);
}


static fl_frame_t choose_frame(fl_client_t *c) {
  const fl_h1_t *p = &c->ex.up_parser;
  if (c->ex.head_req || p->status == 204 || p->status == 304) return FL_FRAME_NONE;
  if (p->has_length) return FL_FRAME_LENGTH;
  if (c->parser.minor >= 1) return FL_FRAME_CHUNKED;
  c->keepalive = false;
  return FL_FRAME_CLOSE;
}

static void build_response_head(fl_client_t *c, fl_buf_t *b) {
  fl_exchange_t *ex = &c->ex;
  const fl_h1_t *p = &ex->up_parser;
  const fl_http_head_t *h = &c->up_head;
  fl_buf_clear(b);
  fl_buf_lit(b, "HTTP/1.1 ");
  fl_buf_u64(b, p->status);
  fl_buf_lit(b, " ");
  fl_buf_str(b, fl_http_reason(p->status));
  fl_buf_lit(b, "\r\n");
  for (uint32_t i = 0; i < h->n; i++) {
    const fl_hdr_t *x = &h->hdrs[i];
    if (fl_http_is_hop(h, x)) continue;
    fl_buf_append(b, fl_hdr_name(h, x), x->name_len);
    fl_buf_append(b, ": ", 2);
    fl_buf_append(b, fl_hdr_value(h, x), x->value_len);
    fl_buf_append(b, "\r\n", 2);
  }
  if (ex->frame == FL_FRAME_LENGTH || (ex->head_req && p->has_length)) {
    fl_buf_lit(b, "content-length: ");
    fl_buf_u64(b, p->content_length);
    fl_buf_lit(b, "\r\n");
  } else if (ex->frame == FL_FRAME_CHUNKED) {
    fl_buf_lit(b, "transfer-encoding: chunked\r\n");
  }
  fl_buf_lit(b, "x-request-id: ");
  fl_buf_str(b, ex->request_id);
  if (ex->feedback_id[0]) {
    fl_buf_lit(b, "\r\nx-fledge-feedback-id: ");
    fl_buf_str(b, ex->feedback_id);
  }
  fl_buf_lit(b, "\r\nx-fledge-overhead-ms: ");
  fl_buf_ms3(b, ex->overhead_ns);
  fl_buf_lit(b, "\r\n");
  if (ex->conf->response_headers) {
    fl_buf_lit(b, "x-fledge-variant: ");
    fl_buf_str(b, fl_variant_name(ex->decision.variant));
    fl_buf_lit(b, "\r\nx-fledge-version: ");
    fl_buf_str(b, ex->route->variant[ex->decision.variant].version);
    fl_buf_lit(b, "\r\n");
  }
  if (!c->keepalive) fl_buf_lit(b, "connection: close\r\n");
  else if (c->parser.minor == 0) fl_buf_lit(b, "connection: keep-alive\r\n");
  fl_buf_append(b, "\r\n", 2);
}

/* The answer's head is read: it goes to the client, re-framed. 1xx answers are skipped. */
static void up_head(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  int status = ex->up_parser.status;
  if (status < 200) {                /* 100 Continue and friends: not forwarded */
    ex->interim = true;
    return;
  }
  uint64_t t0 = fl_clock_ns();       /* the read that brought the head */
  fl_account_response_head(c, t0);
  fl_backend_report(ex->backend, status < 500, t0 / 1000000);
  if (c->w->draining || !ex->req_done) c->keepalive = false;   /* answered before the whole request: it
                                                                   closes after, and the head says so */
  ex->status = status;
  ex->frame = choose_frame(c);
  fl_buf_t *b = &c->w->scratch;
  ex->overhead_ns += fl_now_ns() - t0;
  build_response_head(c, b);
  if (b->err) {
    fl_client_error(c, 500, "internal_error", "out of memory building the answer's head");
    return;                    /* the exchange is over: the caller sees it detached */
  }
  fl_ex_enter(c, FL_EX_STREAMING);
  fl_http_head_give(&c->w->heads, &c->up_head);     /* read and used: a stream holds no table */
  uv_buf_t ub = uv_buf_init(b->data, (unsigned)b->len);
  fl_client_write(c, &ub, 1);
}

static void up_body(fl_client_t *c, const char *at, size_t len) {
  fl_exchange_t *ex = &c->ex;
  fl_account_body(c, at, len);
  if (ex->frame == FL_FRAME_CHUNKED) {
    char size_line[24];
    uv_buf_t bufs[3] = {
        uv_buf_init(size_line, (unsigned)snprintf(size_line, sizeof size_line, "%zx\r\n", len)),
        uv_buf_init((char *)at, (unsigned)len), uv_buf_init("\r\n", 2)};
    fl_client_write(c, bufs, 3);
  } else {
    uv_buf_t b = uv_buf_init((char *)at, (unsigned)len);
    fl_client_write(c, &b, 1);
  }
  if (c->sock.queued > FL_HIGH_WATER && ex->up && !ex->up_paused) {
    fl_sock_read(&ex->up->sock, false);
    ex->up_paused = true;
  }
}

/* The answer is complete (false: it was a 1xx; the real one follows). */
static bool up_end(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  if (ex->interim) {
    ex->interim = false;
    fl_h1_reset(&ex->up_parser);
    ex->up_parser.no_body = ex->head_req;
    fl_http_head_reset(&c->up_head);
    return false;
  }
  if (ex->frame == FL_FRAME_CHUNKED) {
    uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
    fl_client_write(c, &b, 1);
  }
  ex->phase = FL_EX_DONE;
  ex->up_keepalive = ex->up_parser.keep_alive;
  return true;
}

/* Runs the answer's parser over data; returns the bytes used and the last event. */
static fl_h1_event_t up_parse(fl_client_t *c, fl_upconn_t *u, const char *data, size_t len, size_t *off) {
  fl_exchange_t *ex = &c->ex;
  size_t used, body_len;
  const char *body;
  *off = 0;
  for (;;) {
    fl_h1_event_t ev = fl_h1_feed(&ex->up_parser, &c->up_head, data + *off, len - *off, &used, &body, &body_len);
    *off += used;
    if (ev == FL_H1_HEAD) up_head(c);
    else if (ev == FL_H1_DATA) up_body(c, body, body_len);
    else if (ev != FL_H1_END || up_end(c)) return ev;
    if (fl_client_closed(c) || ex->up != u) return FL_H1_END;    /* answered otherwise (an error) */
  }
}

static void up_malformed(fl_client_t *c, bool eof) {
  fl_exchange_t *ex = &c->ex;
  if (fl_ex_answered(ex)) {
    cut(c, eof ? FL_UPERR_RESET : FL_UPERR_BAD_RESPONSE);     /* closed early, or garbage mid-answer */
    return;
  }
  fl_account_upstream_error(c, FL_UPERR_BAD_RESPONSE);
  upstream_error(c, 502, "upstream_error", ex->up_parser.error, "the %s backend sent a malformed answer",
                 variant_of(c));
}

/* Bytes of the answer; a line of its head that is not complete yet waits in up_in. */
static void up_input(fl_client_t *c, fl_upconn_t *u, const char *data, size_t len) {
  fl_exchange_t *ex = &c->ex;
  fl_buf_t held = {0};
  if (ex->up_in.len) {
    held = ex->up_in;
    ex->up_in = (fl_buf_t){0};
    if (fl_buf_append(&held, data, len) != 0) {
      fl_buf_free(&held);
      fl_client_error(c, 500, "internal_error", "out of memory reading the answer's head");
      return;
    }
    data = held.data;
    len = held.len;
  }
  size_t off;
  fl_h1_event_t ev = up_parse(c, u, data, len, &off);
  if (fl_client_closed(c) || ex->up != u) {
    /* answered otherwise (an error): nothing more to do with these bytes */
  } else if (ex->phase == FL_EX_DONE) {
    if (off < len) ex->up_keepalive = false;      /* bytes after the answer: do not reuse */
    finish(c);
  } else if (ev == FL_H1_ERROR) {
    up_malformed(c, false);
  } else {
    if (off < len && fl_buf_append(&ex->up_in, data + off, len - off) != 0)
      fl_client_error(c, 500, "internal_error", "out of memory reading the answer's head");
    else
      fl_client_progress(c);             /* the backend is answering: its idle time starts over */
  }
  fl_buf_free(&held);
}

/* The backend closed its side after the answer began: the end of an answer that runs to the
 * close, else a cut. */
static void up_eof(fl_client_t *c) {
  if (fl_h1_eof(&c->ex.up_parser) == FL_H1_END && up_end(c)) finish(c);
  else cut(c, FL_UPERR_RESET);
}

static void on_up_read(fl_sock_t *s, ssize_t n, const char *data) {
  fl_upconn_t *u = s->data;
  fl_client_t *c = u->owner;
  if (!c) {                          /* pooled: the backend closed it or sent unasked bytes */
    fl_upconn_close(u->pools, u);
    return;
  }
  fl_exchange_t *ex = &c->ex;
  if (n > 0 && !ex->up_got_bytes) {
    ex->up_got_bytes = true;
    ex->retain = false;
    fl_buf_free(&ex->pending);
  }
  if (n < 0 && !fl_ex_answered(ex)) {
    upstream_failed(c, n == UV_EOF);
  } else if (n < 0 && n != UV_EOF) {        /* a reset is never the end of an answer, even one ended by close */
    cut(c, FL_UPERR_RESET);
  } else {
    fl_client_cork(c);
    if (n < 0) up_eof(c);
    else up_input(c, u, data, (size_t)n);
    fl_client_uncork(c);
  }
  fl_client_settle(c);
}

void fl_exchange_resume_upstream(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  if (!ex->up || !ex->up_paused) return;
  ex->up_paused = false;
  fl_sock_read(&ex->up->sock, true);
}

/* A backend that went silent after it began to answer. */
static void stalled(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  if (ex->up_paused) {
    fl_client_close(c);                           /* the client stopped reading: not the backend */
  } else if (fl_ex_answered(ex)) {
    cut(c, FL_UPERR_TIMEOUT);
  } else {
    fl_account_upstream_error(c, FL_UPERR_TIMEOUT);
    upstream_error(c, 504, "timeout", NULL, "the %s backend stalled for %u ms", variant_of(c),
                   ex->conf->timeouts.idle_ms);
  }
}

/* A backend that has not yet begun to answer: it is blamed, and the client gets a 504. */
static void silent(fl_client_t *c, const char *what, uint32_t ms) {
  fl_exchange_t *ex = &c->ex;
  fl_account_upstream_error(c, FL_UPERR_TIMEOUT);
  report_failure(ex->backend);
  upstream_error(c, 504, "timeout", NULL, "the %s backend %s %u ms", variant_of(c), what, ms);
}

void fl_exchange_timeout(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  const struct fl_timeouts *t = &ex->conf->timeouts;
  if (ex->phase == FL_EX_CONNECTING) connect_failed(c, FL_UPERR_CONNECT_TIMEOUT, NULL);
  else if (ex->up_got_bytes || ex->phase == FL_EX_STREAMING) stalled(c);
  else if (ex->phase == FL_EX_SENDING) silent(c, "took none of the request body for", t->idle_ms);
  else if (ex->phase == FL_EX_WAITING) silent(c, "sent no answer within", t->first_byte_ms);
}
