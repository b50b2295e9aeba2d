/* proxy.c — the client side of the data path: accept, parse requests (pipelined in order),
 * route them, hand them to exchange.c, answer errors in the OpenAI JSON shape, keep-alive,
 * timeouts and back-pressure. A connection lives on one worker loop from accept to close. */
#include "proxy_int.h"
#include "geo.h"
#include "jsonscan.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <unistd.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>

static void pump(fl_client_t *c);
static void new_request_id(fl_client_t *c);

/* ---- handles, timers, writes ---- */

static void handle_closed(fl_client_t *c) {
  if (--c->handles > 0) return;
  fl_http_head_give(&c->w->heads, &c->head);
  fl_http_head_give(&c->w->heads, &c->up_head);
  fl_buf_free(&c->inbuf);
  fl_buf_free(&c->ex.pending);
  fl_buf_free(&c->ex.body);
  fl_buf_free(&c->ex.up_in);
  fl_worker_t *w = c->w;
  free(c);
  if (w->draining && w->n_clients == 0) fl_mirror_close_all(w);   /* copies nobody waits for */
  fl_worker_maybe_stop(w);
}

static void on_sock_closed(fl_sock_t *s) { handle_closed(s->data); }
static void on_timer_closed(uv_handle_t *h) { handle_closed(h->data); }

void fl_client_close(fl_client_t *c) {
  if (fl_client_closed(c)) return;
  bool in_exchange = c->phase == FL_CONN_EXCHANGE;
  c->phase = FL_CONN_CLOSED;
  c->deadline_ms = 0;
  if (c->w->cork_client == c) {
    c->w->cork_client = NULL;
    fl_buf_clear(&c->w->cork_client_buf);
  }
  if (in_exchange) fl_account_end(c);
  if (c->ex.up) fl_exchange_abort(c);
  c->ex.phase = FL_EX_NONE;
  if (c->ex.conf) {
    fl_conf_unref(c->ex.conf);
    c->ex.conf = NULL;
  }
  if (c->prev) c->prev->next = c->next;
  else c->w->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  c->w->n_clients--;
  fl_sock_close(&c->sock, on_sock_closed);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* ---- phases and their deadlines ---- */

static void on_timer(uv_timer_t *t);

/* How long the current phase may last without progress; 0: no deadline. */
static uint32_t phase_timeout_ms(const fl_client_t *c) {
  const struct fl_timeouts *t = &c->w->conf->timeouts;
  switch (c->phase) {
  case FL_CONN_IDLE: return c->requests ? t->idle_ms : t->header_ms;   /* a silent new connection: slowloris */
  case FL_CONN_HEAD: return t->header_ms;
  case FL_CONN_FLUSH: return t->idle_ms;
  case FL_CONN_CLOSED: return 0;
  case FL_CONN_EXCHANGE: break;
  }
  t = &c->ex.conf->timeouts;
  switch (c->ex.phase) {
  case FL_EX_CONNECTING: return t->connect_ms;
  case FL_EX_WAITING: return c->ex.up_got_bytes ? t->idle_ms : t->first_byte_ms;
  case FL_EX_ROUTING:
  case FL_EX_SENDING:
  case FL_EX_STREAMING: return t->idle_ms;
  case FL_EX_NONE:
  case FL_EX_DONE: return 0;
  }
  return 0;
}

/* The phase's deadline from now (loop time). The timer follows in fl_client_settle. */
static void arm(fl_client_t *c) {
  uint32_t ms = phase_timeout_ms(c);
  c->deadline_ms = ms ? uv_now(&c->w->loop) + ms : 0;
}

/* The timer is restarted only when it would fire after the deadline; one that fires early
 * re-arms itself for what is left (on_timer). Done once per callback, after all its phase
 * changes, so a request's phases and its bytes moving cost no timer-heap update. */
static void sync_timer(fl_client_t *c) {
  if (!c->deadline_ms || (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due_ms <= c->deadline_ms)) return;
  uint64_t now = uv_now(&c->w->loop);
  uv_timer_start(&c->timer, on_timer, c->deadline_ms > now ? c->deadline_ms - now : 0, 0);
  c->timer_due_ms = c->deadline_ms;
}

static void check(const fl_client_t *c);

void fl_client_settle(fl_client_t *c) {
  if (!fl_client_closed(c)) sync_timer(c);
  check(c);
}

static void conn_enter(fl_client_t *c, fl_conn_phase_t phase) {
  c->phase = phase;
  arm(c);
}

void fl_ex_enter(fl_client_t *c, fl_ex_phase_t phase) {
  c->ex.phase = phase;
  arm(c);
}

void fl_client_progress(fl_client_t *c) {
  if (c->deadline_ms) arm(c);
}

static void check(const fl_client_t *c) {
  const fl_exchange_t *ex = &c->ex;
  bool exchange = c->phase == FL_CONN_EXCHANGE;
  FL_BUG_ON(exchange != (ex->phase != FL_EX_NONE));
  FL_BUG_ON(exchange && !ex->conf);
  FL_BUG_ON(!exchange && (ex->up || ex->conf || ex->vs || ex->sample));
  FL_BUG_ON(ex->phase == FL_EX_DONE);                     /* finished within the callback that got there */
  FL_BUG_ON((ex->phase == FL_EX_CONNECTING || ex->phase == FL_EX_SENDING || ex->phase == FL_EX_WAITING) && !ex->up);
  FL_BUG_ON(ex->phase == FL_EX_ROUTING && ex->up);
  FL_BUG_ON(ex->phase == FL_EX_WAITING && !ex->req_done);
  FL_BUG_ON(ex->inspect && ex->phase != FL_EX_ROUTING);
  FL_BUG_ON(ex->up_paused && (ex->phase != FL_EX_STREAMING || !ex->up));
  FL_BUG_ON(c->phase == FL_CONN_FLUSH && c->sock.queued == 0 && c->w->cork_client != c);
  FL_BUG_ON(c->w->cork_client == c || c->w->cork_up == c);  /* corks end with the callback */
  FL_BUG_ON(phase_timeout_ms(c) && !c->deadline_ms);
  FL_BUG_ON(c->deadline_ms && !uv_is_active((const uv_handle_t *)&c->timer));
}

static void on_client_sent(fl_sock_t *s, size_t n, int status) {
  fl_client_t *c = s->data;
  if (status < 0) {
    fl_client_close(c);
  } else if (c->sock.queued == 0 && c->phase == FL_CONN_FLUSH) {
    fl_client_close(c);
  } else {
    /* the client took bytes: for an answer that waits on the client, that is progress */
    if (c->phase == FL_CONN_IDLE || c->phase == FL_CONN_FLUSH || c->ex.up_paused) fl_client_progress(c);
    if (c->ex.up_paused && c->sock.queued < FL_LOW_WATER) fl_exchange_resume_upstream(c);
  }
  fl_client_settle(c);
}

void fl_client_write(fl_client_t *c, const uv_buf_t *bufs, unsigned n) {
  if (fl_client_closed(c)) return;
  if (c->w->cork_client == c) {
    for (unsigned i = 0; i < n; i++) fl_buf_append(&c->w->cork_client_buf, bufs[i].base, bufs[i].len);
    if (c->w->cork_client_buf.err) fl_client_close(c);     /* clears the buffer: nothing reaches another client */
    return;
  }
  if (fl_sock_write(&c->sock, bufs, n) < 0) fl_client_close(c);
}

/* ---- error answers ---- */

static void json_escape_into(char *dst, size_t cap, const char *src) {
  size_t j = 0;
  for (size_t i = 0; src[i] && j + 2 < cap; i++) {
    unsigned char ch = (unsigned char)src[i];
    if (ch == '"' || ch == '\\') dst[j++] = '\\';
    dst[j++] = ch < 0x20 ? ' ' : (char)ch;
  }
  dst[j] = '\0';
}

void fl_client_error(fl_client_t *c, int status, const char *type, const char *fmt, ...) {
  fl_exchange_t *ex = &c->ex;
  if (ex->up) fl_exchange_abort(c);
  if (fl_ex_answered(ex) || c->phase == FL_CONN_FLUSH) {   /* too late for a status: cut the connection */
    fl_client_close(c);
    return;
  }
  if (fl_client_closed(c)) return;
  char msg[300], esc[400], body[600], head[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_escape_into(esc, sizeof esc, msg);
  if (!ex->request_id[0]) new_request_id(c);
  int blen = snprintf(body, sizeof body, "{\"error\":{\"type\":\"%s\",\"message\":\"%s\",\"code\":%d}}\n",
                      type, esc, status);
  if (!ex->req_done || status < 500) c->keepalive = false;
  int hlen = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                      "x-request-id: %s\r\nx-fledge-overhead-ms: %.3f\r\n%s\r\n",
                      status, fl_http_reason(status), blen, ex->request_id, ex->overhead_ns / 1e6,
                      c->keepalive ? "" : "connection: close\r\n");
  uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)hlen), uv_buf_init(body, (unsigned)blen)};
  ex->status = status;
  if (c->phase == FL_CONN_EXCHANGE) ex->phase = FL_EX_DONE;
  fl_client_write(c, bufs, 2);
  fl_exchange_finished(c);
}

/* ---- the request, as routing sees it ---- */

static const char *view_header(void *ctx, const char *lname, size_t *len) {
  fl_client_t *c = ctx;
  return fl_http_head_get(&c->head, lname, len);
}

static const char *view_country(void *ctx) {
  fl_client_t *c = ctx;
  const fl_conf_t *conf = c->ex.conf;
  if (c->country_state == 0) {
    size_t len = 0;
    bool believed = c->from_proxy || c->ex.override_ok;    /* an edge, or a client that may choose anyway */
    const char *v = conf->geoip_header && believed ? fl_http_head_get(&c->head, conf->geoip_header, &len) : NULL;
    c->country_state = -1;
    if (v && len == 2) {
      for (int i = 0; i < 2; i++) c->country[i] = (char)(v[i] >= 'a' && v[i] <= 'z' ? v[i] - 32 : v[i]);
      c->country[2] = '\0';
      c->country_state = 1;
    } else if (conf->geo && fl_geo_country(conf->geo, (struct sockaddr *)&c->ex.client, c->country)) {
      c->country_state = 1;
    }
  }
  return c->country_state == 1 ? c->country : NULL;
}

static bool has_body(const fl_exchange_t *ex) {
  return ex->chunked_req || (ex->content_length && ex->content_length != UINT64_MAX);
}

static int decide(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  fl_req_view_t v = {.peer = (struct sockaddr *)&ex->client, .trusted = ex->override_ok, .worker = c->w->id,
                     .header = view_header, .country = view_country, .ctx = c,
                     .has_body = has_body(ex)};
  v.path = ex->target.path;
  v.path_len = ex->target.path_len;
  v.query = ex->target.query;
  v.query_len = ex->target.query_len;
  if (ex->inspect) {
    v.body = ex->body.data ? ex->body.data : "";
    v.body_len = ex->body.len;
    v.body_complete = ex->req_done;
  }
  return fl_router_decide(ex->route, &v, fl_worker_rand(c->w), &ex->decision);
}

/* ---- building the upstream request ---- */

static bool sane_request_id(const char *v, size_t len) {
  if (len == 0 || len > 64) return false;
  for (size_t i = 0; i < len; i++) {
    char ch = v[i];
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.' || ch == ':';
    if (!ok) return false;
  }
  return true;
}

static void new_request_id(fl_client_t *c) {
  static const char hex[] = "0123456789abcdef";
  char *id = c->ex.request_id;
  for (int word = 0; word < 4; word++) {
    uint32_t r = fl_worker_rand(c->w);
    for (int k = 0; k < 8; k++, r >>= 4) *id++ = hex[r & 15];
  }
  *id = '\0';
}

/* A client's own sane id is kept for its tracing; otherwise the id is made when the variant is
 * chosen (signed) or when an error is answered before that (random). */
static void set_request_id(fl_client_t *c) {
  size_t len;
  const char *v = fl_http_head_get(&c->head, "x-request-id", &len);
  if (v && sane_request_id(v, len)) {
    memcpy(c->ex.request_id, v, len);
    c->ex.request_id[len] = '\0';
  }
}

/* The signed id that feedback names (feedback.h): request_id itself, or beside the client's. */
static void sign_request_id(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  uint64_t unix_ms = fl_worker_unix_ms(c->w);
  char *out = ex->request_id[0] ? ex->feedback_id : ex->request_id;
  fl_request_id_sign(out, ex->route->name, ex->decision.variant, ex->route->variant[ex->decision.variant].version,
                     unix_ms, fl_worker_rand(c->w));
}

/* Does the chosen version set this header itself (headers:)? Then the client's is not forwarded. */
static bool version_sets(const fl_variant_conf_t *vc, const char *name, size_t len) {
  for (size_t i = 0; i < vc->n_headers; i++)
    if (strlen(vc->header_names[i]) == len && memcmp(vc->header_names[i], name, len) == 0) return true;
  return false;
}

/* The upstream request's head for version vc, into b, all but its framing and its end
 * (end_head); the caller checks b's sticky error. */
static void head_lines(fl_client_t *c, const fl_variant_conf_t *vc, fl_buf_t *b) {
  fl_exchange_t *ex = &c->ex;
  const fl_http_head_t *h = &c->head;
  const fl_target_t *t = &ex->target;
  fl_buf_str(b, fl_method_name(c->parser.method));
  fl_buf_append(b, " ", 1);
  fl_buf_append(b, t->path, t->path_len);        /* the path that was matched, in origin-form */
  if (t->query_len) {
    fl_buf_append(b, "?", 1);
    fl_buf_append(b, t->query, t->query_len);
  }
  fl_buf_lit(b, " HTTP/1.1\r\n");
  size_t host_len;
  bool own_host = vc->host_line != NULL;         /* https backends are asked for their own host */
  if (own_host) {
    fl_buf_str(b, vc->host_line);
  } else if (t->authority) {                     /* absolute-form: its authority is the host */
    fl_buf_lit(b, "host: ");
    fl_buf_append(b, t->authority, t->authority_len);
    fl_buf_lit(b, "\r\n");
  } else if (!fl_http_head_get(h, "host", &host_len)) {
    fl_buf_lit(b, "host: ");                     /* HTTP/1.0 may leave it out; HTTP/1.1 upstream may not */
    fl_buf_str(b, ex->conf->listens[c->listener].addr.text);
    fl_buf_lit(b, "\r\n");
  }
  for (uint32_t i = 0; i < h->n; i++) {
    const fl_hdr_t *x = &h->hdrs[i];
    if (fl_http_is_hop(h, x) || (x->name_len == 6 && memcmp(fl_hdr_name(h, x), "expect", 6) == 0)) continue;
    if ((t->authority || own_host) && x->name_len == 4 && memcmp(fl_hdr_name(h, x), "host", 4) == 0) continue;
    if (!c->from_proxy && x->name_len == 9 && memcmp(fl_hdr_name(h, x), "forwarded", 9) == 0) continue;
    if (vc->n_headers && version_sets(vc, fl_hdr_name(h, x), x->name_len)) continue;
    fl_buf_append(b, fl_hdr_name(h, x), x->name_len);
    fl_buf_append(b, ": ", 2);
    fl_buf_append(b, fl_hdr_value(h, x), x->value_len);
    fl_buf_append(b, "\r\n", 2);
  }
  /* the chain a trusted proxy reported, then that proxy; a client's own claims are not passed on */
  fl_buf_lit(b, "x-forwarded-for: ");
  for (uint32_t i = 0; c->from_proxy && i < h->n; i++) {
    const fl_hdr_t *x = &h->hdrs[i];
    if (x->name_len != 15 || memcmp(fl_hdr_name(h, x), "x-forwarded-for", 15) != 0) continue;
    fl_buf_append(b, fl_hdr_value(h, x), x->value_len);
    fl_buf_lit(b, ", ");
  }
  fl_buf_str(b, c->peer_ip);
  fl_buf_lit(b, "\r\nx-request-id: ");
  fl_buf_str(b, ex->request_id);
  fl_buf_lit(b, "\r\n");
  if (vc->headers) fl_buf_str(b, vc->headers);   /* the version's own: credentials never logged */
}

static void end_head(fl_buf_t *b, uint64_t body_len, bool chunked) {
  if (chunked) {
    fl_buf_lit(b, "transfer-encoding: chunked\r\n");
  } else if (body_len != UINT64_MAX) {
    fl_buf_lit(b, "content-length: ");
    fl_buf_u64(b, body_len);
    fl_buf_lit(b, "\r\n");
  }
  fl_buf_append(b, "\r\n", 2);
}

/* The variant's model name in place of the body's. A body that names its model twice is refused:
 * forwarding it could let the client pick the model the server reads. */
int fl_rewrite_model(fl_buf_t *body, const char *model) {
  fl_json_span_t span;
  int found = body->len ? fl_json_top_field(body->data, body->len, "model", &span) : FL_ENOENT;
  if (found == FL_EINVAL) return FL_EINVAL;
  if (found != 0 || !span.is_string) return 0;     /* no model, or not JSON: the backend answers */
  fl_buf_t out = {0};
  fl_buf_append(&out, body->data, span.start);
  fl_buf_str(&out, model);
  fl_buf_append(&out, body->data + span.start + span.len, body->len - span.start - span.len);
  if (out.err) {
    fl_buf_free(&out);
    return FL_ENOMEM;
  }
  fl_buf_free(body);
  *body = out;
  return 0;
}

/* A copy of the request for the canary, when the route mirrors this one (shadow.h). */
static void begin_mirror(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  if (!fl_mirror_wanted(ex->conf, ex->route, &ex->decision, c->parser.method)) return;
  if (!(ex->mirror = fl_mirror_begin(c->w, ex->conf, ex->route))) return;
  head_lines(c, &ex->route->variant[FL_CANARY], fl_mirror_head(ex->mirror));
}

/* The variant is chosen: build the head (and body, when it was collected) and go upstream. */
static void dispatch(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  const fl_variant_conf_t *v = &ex->route->variant[ex->decision.variant];
  ex->decided = true;
  sign_request_id(c);
  begin_mirror(c);
  fl_account_begin(c);
  if (ex->mirror && ex->inspect) fl_mirror_body(ex->mirror, ex->body.data, ex->body.len);   /* as the client sent it */
  int rc = 0;
  if (ex->inspect && ex->req_done) {
    rc = v->model ? fl_rewrite_model(&ex->body, v->model) : 0;
    if (rc == FL_EINVAL) {
      fl_client_error(c, 400, "invalid_request", "the body names \"model\" more than once");
      return;
    }
    head_lines(c, v, &ex->pending);
    end_head(&ex->pending, ex->body.len, false);
    fl_buf_append(&ex->pending, ex->body.data, ex->body.len);
    if (ex->body.len) fl_account_request_body(c, ex->body.data, ex->body.len);
  } else {
    head_lines(c, v, &ex->pending);
    end_head(&ex->pending, ex->content_length, ex->chunked_req);
    if (ex->inspect && !ex->pending.err) {
      if (ex->body.len) fl_account_request_body(c, ex->body.data, ex->body.len);
      fl_exchange_body(c, ex->body.data, ex->body.len);
      if (c->phase != FL_CONN_EXCHANGE) return;   /* it answered (out of memory): the exchange is over */
    }
  }
  ex->inspect = false;
  fl_buf_free(&ex->body);
  fl_http_head_give(&c->w->heads, &c->head);    /* the request's head is in `pending` now */
  if (rc || ex->pending.err) {
    fl_client_error(c, 500, "internal_error", "out of memory");
    return;
  }
  fl_exchange_start(c);
}

/* ---- one request: its head, its body, its end ---- */

/* A fresh exchange for the next request (the previous one is over). The pending buffer's
 * memory is kept for the next request unless it grew past the retry bound. */
static void exchange_reset(fl_exchange_t *ex) {
  fl_buf_t pending = ex->pending;
  fl_buf_free(&ex->body);
  fl_buf_free(&ex->up_in);
  if (pending.cap > FL_RETAIN_MAX) fl_buf_free(&pending);
  fl_buf_clear(&pending);
  memset(ex, 0, sizeof *ex);
  ex->pending = pending;
  ex->start_ns = fl_clock_ns();          /* when the read that brought the request's first bytes began */
}

/* The first byte of a request: a header table and a fresh exchange. False when out of memory
 * (the connection is closed: nothing sensible to answer with). */
static bool request_begins(fl_client_t *c) {
  const fl_conf_t *conf = c->w->conf;
  if (fl_http_head_take(&c->w->heads, &c->head, conf->limits.header_bytes, conf->limits.headers) != 0) {
    fl_client_close(c);
    return false;
  }
  exchange_reset(&c->ex);
  c->country_state = 0;
  conn_enter(c, FL_CONN_HEAD);
  return true;
}

/* The host a request is for: an absolute-form target's authority, else the Host header. */
static const char *host_of(fl_client_t *c, size_t *len) {
  const char *h = c->ex.target.authority;
  *len = c->ex.target.authority_len;
  if (!h) h = fl_http_head_get(&c->head, "host", len);
  if (!h) {
    *len = 0;
    return "";
  }
  const char *colon = h[0] == '[' ? NULL : memchr(h, ':', *len);
  if (colon) *len = (size_t)(colon - h);
  return h;
}

/* A client that asked "Expect: 100-continue" waits for a go-ahead before sending its body; the
 * backend never sees the Expect header (the body is streamed to it anyway), so we answer. */
static void expect_continue(fl_client_t *c) {
  size_t len;
  const char *v = fl_http_head_get(&c->head, "expect", &len);
  if (!v || !fl_streq_ci(v, len, "100-continue") || c->parser.minor < 1 || !has_body(&c->ex)) return;
  uv_buf_t b = uv_buf_init("HTTP/1.1 100 Continue\r\n\r\n", 25);
  fl_client_write(c, &b, 1);
}

static void route_request(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  fl_http_head_t *h = &c->head;
  const char *why;
  if (fl_target_parse(h->buf + h->url_off, h->url_len, &ex->target, &why) != 0) {
    c->keepalive = false;
    fl_client_error(c, 400, "invalid_request", "malformed HTTP request: %s", why);
    return;
  }
  size_t host_len;
  const char *host = host_of(c, &host_len), *path = ex->target.path;
  size_t path_len = ex->target.path_len;
  ex->route = fl_router_match(ex->conf, host, host_len, path, path_len);
  if (!ex->route) {
    fl_client_error(c, 404, "not_found", "no route for %.*s", (int)FL_MIN(path_len, 200), path);
    return;
  }
  expect_continue(c);
  int need_body = decide(c);
  bool rewrite = need_body != 1 && ex->route->variant[ex->decision.variant].model;
  if (has_body(ex) && (need_body == 1 || rewrite)) {
    ex->inspect = true;           /* collect the body first; dispatch when it is complete */
    ex->decided = need_body != 1;
    return;
  }
  dispatch(c);
}

/* The client behind a trusted proxy: the rightmost hop of x-forwarded-for (else forwarded) that
 * is not a trusted proxy itself, the header lines read last to first. Unchanged when none. */
static void forwarded_client(fl_client_t *c, struct sockaddr_storage *out) {
  static const struct { const char *name; uint32_t len; bool rfc7239; } hdrs[] = {
      {"x-forwarded-for", 15, false}, {"forwarded", 9, true}};
  const fl_conf_t *conf = c->ex.conf;
  const fl_http_head_t *h = &c->head;
  for (size_t k = 0; k < FL_ARRAY_LEN(hdrs); k++) {
    struct sockaddr_storage hop, last = {.ss_family = AF_UNSPEC};
    bool seen = false;
    for (uint32_t i = h->n; i-- > 0;) {
      const fl_hdr_t *x = &h->hdrs[i];
      if (x->name_len != hdrs[k].len || memcmp(fl_hdr_name(h, x), hdrs[k].name, hdrs[k].len) != 0) continue;
      seen = true;
      hop.ss_family = AF_UNSPEC;
      int rc = fl_forwarded_walk(fl_hdr_value(h, x), x->value_len, hdrs[k].rfc7239, conf->trusted_proxies,
                                 conf->n_trusted_proxies, &hop);
      if (rc == 1) {
        *out = hop;
        return;
      }
      if (rc < 0) break;               /* a hop that is not an address: the chain ends at the last known */
      if (hop.ss_family != AF_UNSPEC) last = hop;
    }
    if (seen) {
      if (last.ss_family != AF_UNSPEC) *out = last;
      return;
    }
  }
}

/* Who the request is from, for the ip key, network and country rules, overrides and logs. */
static void find_client(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  ex->client = c->peer;
  if (c->from_proxy) forwarded_client(c, &ex->client);
  fl_addr_ntop((struct sockaddr *)&ex->client, ex->client_ip, sizeof ex->client_ip);
  ex->override_ok = fl_cidr_any(ex->conf->override_from, ex->conf->n_override_from, (struct sockaddr *)&ex->client);
}

/* The head is read and well-formed. */
static void request_head(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  const fl_h1_t *p = &c->parser;
  ex->conf = c->w->conf;
  fl_conf_ref(ex->conf);
  find_client(c);
  c->phase = FL_CONN_EXCHANGE;
  ex->chunked_req = p->chunked;
  ex->content_length = p->has_length ? p->content_length : UINT64_MAX;
  ex->head_req = p->method == FL_METHOD_HEAD;
  c->keepalive = p->keep_alive && !c->w->draining;
  set_request_id(c);
  fl_ex_enter(c, FL_EX_ROUTING);
  if (ex->content_length != UINT64_MAX && ex->content_length > ex->conf->limits.body_bytes) {
    fl_client_error(c, 413, "request_too_large", "request body of %llu bytes exceeds the limit of %llu",
                    (unsigned long long)ex->content_length, (unsigned long long)ex->conf->limits.body_bytes);
    return;
  }
  route_request(c);
}

static void inspect_body(fl_client_t *c, const char *at, size_t len) {
  fl_exchange_t *ex = &c->ex;
  const fl_conf_t *conf = ex->conf;
  if (fl_buf_append(&ex->body, at, len) != 0) {
    fl_client_error(c, 500, "internal_error", "out of memory");
    return;
  }
  if (ex->body.len <= conf->limits.inspect_body_bytes) return;
  if (!ex->decided) decide(c);             /* a partial body: the key may still be early in it */
  if (ex->route->variant[ex->decision.variant].model) {
    fl_client_error(c, 413, "request_too_large",
                    "body over %u bytes cannot have its model rewritten (limits.inspect_body_bytes)",
                    conf->limits.inspect_body_bytes);
    return;
  }
  dispatch(c);
}

static void request_body(fl_client_t *c, const char *at, size_t len) {
  fl_exchange_t *ex = &c->ex;
  if (c->phase != FL_CONN_EXCHANGE) return;   /* answered early (error): discarded */
  ex->body_bytes += len;
  if (ex->body_bytes > ex->conf->limits.body_bytes) {
    fl_client_error(c, 413, "request_too_large", "request body exceeds the limit of %llu bytes",
                    (unsigned long long)ex->conf->limits.body_bytes);
    return;
  }
  if (ex->phase == FL_EX_ROUTING || ex->phase == FL_EX_SENDING) fl_client_progress(c);
  if (ex->inspect) {
    uint64_t t0 = fl_now_ns();
    inspect_body(c, at, len);
    ex->overhead_ns += fl_now_ns() - t0;
  } else {
    fl_account_request_body(c, at, len);
    if (ex->mirror) fl_mirror_body(ex->mirror, at, len);
    fl_exchange_body(c, at, len);
  }
}

static void request_end(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  ex->req_done = true;
  if (c->phase != FL_CONN_EXCHANGE) return;
  if (ex->inspect) {
    uint64_t t0 = fl_now_ns();
    if (!ex->decided) decide(c);
    dispatch(c);
    ex->overhead_ns += fl_now_ns() - t0;
  } else if (ex->chunked_req) {
    fl_exchange_body(c, NULL, 0);
  }
  if (ex->phase == FL_EX_SENDING) fl_ex_enter(c, FL_EX_WAITING);   /* all sent: the backend's time starts */
  if (ex->mirror) fl_mirror_send(ex->mirror);    /* after stable's request: the copy goes second */
}

/* ---- reading and the request loop ---- */

static void answer_parse_error(fl_client_t *c) {
  const fl_h1_t *p = &c->parser;
  c->keepalive = false;
  if (c->phase != FL_CONN_EXCHANGE) exchange_reset(&c->ex);   /* garbage before a message: not the last one's */
  if (p->error_status == 431)
    fl_client_error(c, 431, "request_too_large", "request head exceeds limits.header_bytes or limits.headers");
  else if (p->error_status == 414)
    fl_client_error(c, 414, "request_too_large", "request URL exceeds limits.header_bytes");
  else
    fl_client_error(c, 400, "invalid_request", "malformed HTTP request: %s", p->error);
}

/* Runs the parser over data: returns the bytes used. It stops after a whole request (the next
 * one waits for its answer), after an error, or before a line of the head that is not complete. */
static size_t parse(fl_client_t *c, const char *data, size_t len) {
  size_t off = 0, used, body_len;
  const char *body;
  for (;;) {
    if (c->phase == FL_CONN_IDLE) {
      while (off < len && (data[off] == '\r' || data[off] == '\n')) off++;   /* blank lines between requests */
      if (off == len || !request_begins(c)) return off;
      fl_h1_reset(&c->parser);
    }
    fl_h1_event_t ev = fl_h1_feed(&c->parser, &c->head, data + off, len - off, &used, &body, &body_len);
    off += used;
    if (ev == FL_H1_HEAD) {
      request_head(c);                    /* the gateway's own time: from the read to the request's head built */
      c->ex.overhead_ns += fl_now_ns() - fl_clock_ns();
    } else if (ev == FL_H1_DATA) {
      request_body(c, body, body_len);
    } else if (ev == FL_H1_END) {
      request_end(c);
      return off;
    } else if (ev == FL_H1_ERROR) {
      answer_parse_error(c);
      return len;
    } else {
      return off;
    }
    if (fl_client_closed(c)) return len;
  }
}

/* Parses data; keeps what is not used yet (a pipelined request, a part of a line) in inbuf. */
static size_t feed(fl_client_t *c, const char *data, size_t len) {
  c->in_parse = true;
  size_t used = parse(c, data, len);
  c->in_parse = false;
  if (fl_client_closed(c) || c->phase == FL_CONN_FLUSH) return len;
  if (used < len && fl_buf_append(&c->inbuf, data + used, len - used) != 0) fl_client_close(c);
  return used;
}

/* Runs the pipelined requests whose bytes are here, one at a time, each after the previous
 * one is answered. */
static void pump(fl_client_t *c) {
  while ((c->phase == FL_CONN_IDLE || c->phase == FL_CONN_HEAD) && !c->in_parse && c->inbuf.len) {
    fl_buf_t in = c->inbuf;
    c->inbuf = (fl_buf_t){0};
    size_t used = feed(c, in.data, in.len);
    fl_buf_free(&in);
    if (used == 0) break;                 /* a part of a line: the rest has to arrive */
  }
}

/* The request is read whole and not answered yet: what arrives is the next one's, and waits. */
static bool request_read(const fl_client_t *c) { return c->phase == FL_CONN_EXCHANGE && fl_h1_done(&c->parser); }

static void on_read(fl_sock_t *s, ssize_t n, const char *data) {
  fl_client_t *c = s->data;
  if (n < 0) {            /* the client is gone: an exchange in flight is cancelled */
    fl_client_close(c);
  } else if (c->phase == FL_CONN_FLUSH) {
    /* answered with a close: later requests are not run */
  } else if (c->inbuf.len || request_read(c)) {
    if (fl_buf_append(&c->inbuf, data, (size_t)n) != 0) fl_client_close(c);
    else if (request_read(c) && c->inbuf.len > FL_LOW_WATER) fl_client_pause_reading(c, true);
    else pump(c);
  } else {
    fl_client_cork(c);
    fl_exchange_cork(c);
    feed(c, data, (size_t)n);
    pump(c);     /* an answer given synchronously (an error) lets the next request run */
    fl_exchange_uncork(c);
    fl_client_uncork(c);
  }
  fl_client_settle(c);
}

void fl_client_pause_reading(fl_client_t *c, bool pause) {
  if (fl_client_closed(c) || pause == c->read_paused) return;
  c->read_paused = pause;
  fl_sock_read(&c->sock, !pause);
}

void fl_client_cork(fl_client_t *c) {
  fl_worker_t *w = c->w;
  if (w->cork_client == c) return;
  if (w->cork_client) fl_client_uncork(w->cork_client);
  fl_buf_clear(&w->cork_client_buf);
  w->cork_client = c;
}

void fl_client_uncork(fl_client_t *c) {
  fl_worker_t *w = c->w;
  if (w->cork_client != c) return;
  w->cork_client = NULL;
  uv_buf_t b = uv_buf_init(w->cork_client_buf.data, (unsigned)w->cork_client_buf.len);
  fl_client_write(c, &b, 1);
  fl_buf_clear(&w->cork_client_buf);
  if (c->phase == FL_CONN_FLUSH && c->sock.queued == 0) fl_client_close(c);
}

static bool output_queued(const fl_client_t *c) { return c->sock.queued > 0 || c->w->cork_client == c; }

/* No further request on c: it closes now, or once what is queued for it went out (a client that
 * stops reading meanwhile is let go after timeouts.idle). */
static void close_when_written(fl_client_t *c) {
  if (output_queued(c)) conn_enter(c, FL_CONN_FLUSH);
  else fl_client_close(c);
}

void fl_exchange_finished(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  if (fl_client_closed(c)) return;
  fl_account_end(c);
  if (ex->up) fl_exchange_abort(c);
  ex->phase = FL_EX_NONE;
  ex->inspect = false;               /* an error answered while the body was collected */
  fl_http_head_give(&c->w->heads, &c->head);
  fl_http_head_give(&c->w->heads, &c->up_head);
  if (ex->conf) {
    fl_conf_unref(ex->conf);
    ex->conf = NULL;
  }
  fl_buf_clear(&ex->pending);
  fl_buf_free(&ex->body);
  c->requests++;
  if (!ex->req_done || !c->keepalive || c->w->draining) {
    close_when_written(c);
    return;
  }
  conn_enter(c, FL_CONN_IDLE);
  fl_client_pause_reading(c, false);
  pump(c);
}

/* The phase's deadline passed. */
static void expire(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  switch (c->phase) {
  case FL_CONN_IDLE:
  case FL_CONN_FLUSH:
    fl_client_close(c);
    break;
  case FL_CONN_HEAD:
    fl_client_error(c, 408, "timeout", "request head not received within %u ms", c->w->conf->timeouts.header_ms);
    break;
  case FL_CONN_EXCHANGE:          /* a stalled body is the client's, unless the backend stopped taking it */
    if (ex->phase == FL_EX_ROUTING || (ex->phase == FL_EX_SENDING && !(fl_up_queued(c) > 0 && c->read_paused)))
      fl_client_error(c, 408, "timeout", "request body stalled for %u ms", ex->conf->timeouts.idle_ms);
    else
      fl_exchange_timeout(c);
    break;
  case FL_CONN_CLOSED:
    break;
  }
}

static void on_timer(uv_timer_t *t) {
  fl_client_t *c = t->data;
  fl_clock_tick();
  if (c->deadline_ms && c->deadline_ms <= uv_now(t->loop)) {
    c->deadline_ms = 0;
    expire(c);
  }
  fl_client_settle(c);                   /* moved on since the timer was started: it waits for the rest */
}

/* ---- accept and drain ---- */

static int client_init(fl_worker_t *w, fl_client_t *c, int fd) {
  c->w = w;
  c->sock.data = c;
  int rc = fl_sock_open(&c->sock, &w->loop, fd, w->read_buf, sizeof w->read_buf);
  if (rc < 0) return rc;
  c->sock.on_read = on_read;
  c->sock.on_sent = on_client_sent;
  fl_h1_init(&c->parser, false);
  uv_timer_init(&w->loop, &c->timer);
  c->timer.data = c;
  c->handles = 2;
  c->next = w->clients;
  if (w->clients) w->clients->prev = c;
  w->clients = c;
  w->n_clients++;
  return 0;
}

/* Over limits.max_connections (this worker's share): a 503 at once, nothing read, then close. */
static bool over_connection_limit(fl_client_t *c) {
  const fl_conf_t *conf = c->w->conf;
  uint64_t share = ((uint64_t)conf->limits.max_connections + conf->workers - 1) / conf->workers;
  if (c->w->n_clients <= share) return false;
  fl_client_error(c, 503, "overloaded", "too many connections (limits.max_connections)");
  return true;
}

void fl_proxy_accept(fl_worker_t *w, unsigned listener, int fd, const struct sockaddr *peer, socklen_t peer_len) {
  fl_client_t *c = calloc(1, sizeof *c);
  fl_tls_server_t *tls = w->conf->listens[listener].tls;
  SSL *ssl = tls ? fl_tls_server_ssl(tls) : NULL;
  if (!c || (tls && !ssl) || client_init(w, c, fd) != 0) {   /* out of memory: the connection is let go */
    free(c);
    SSL_free(ssl);
    close(fd);
    return;
  }
  c->listener = listener;
  if (ssl) fl_sock_start_tls(&c->sock, ssl);
  memcpy(&c->peer, peer, FL_MIN((size_t)peer_len, sizeof c->peer));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fl_addr_ntop((struct sockaddr *)&c->peer, c->peer_ip, sizeof c->peer_ip);
  c->from_proxy = fl_cidr_any(w->conf->trusted_proxies, w->conf->n_trusted_proxies, (struct sockaddr *)&c->peer);
  if (!over_connection_limit(c)) {
    conn_enter(c, FL_CONN_IDLE);
    fl_sock_read(&c->sock, true);
  }
  fl_client_settle(c);
}

/* Connections between requests close once what they still owe their client went out; the
 * others are told by w->draining to close after their current answer. */
void fl_proxy_drain(fl_worker_t *w) {
  for (fl_client_t *c = w->clients, *next; c; c = next) {
    next = c->next;
    if (c->phase == FL_CONN_IDLE) close_when_written(c);
    fl_client_settle(c);
  }
  if (w->n_clients == 0) fl_mirror_close_all(w);
}

void fl_proxy_close_all(fl_worker_t *w) {
  while (w->clients) fl_client_close(w->clients);
  fl_mirror_close_all(w);
}
