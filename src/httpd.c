/* httpd.c — a small HTTP/1.1 server on one libuv loop for the admin API and `fledge mock`.
 * One request per connection is in flight at a time: pipelined requests wait, unparsed, in
 * the connection's input buffer until the answer before them has been queued, so answers
 * always leave in request order and a slow handler never makes us buffer without bound.
 * The process must ignore SIGPIPE (libuv writes with plain write(2)). */
#include "httpd.h"
#include "h1.h"
#include "write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTPD_DEFAULT_MAX_BODY ((size_t)8 << 20)
#define HTTPD_READ_SIZE 16384
#define HTTPD_MAX_HEAD 65536           /* URL, header names and values together (http.h's table) */
#define HTTPD_MAX_HEADERS 128
#define HTTPD_HEAD_STACK 1024
/* Queued-but-unsent bytes above which pipelined requests wait: a client that sends
 * without reading must not make us queue answers forever. */
#define HTTPD_WRITE_HIGH ((size_t)1 << 20)
/* After a final answer we read and drop what the client still sends, so that closing
 * does not reset the connection before the answer is read; but not forever. */
#define HTTPD_LINGER_MAX ((size_t)1 << 20)

typedef fl_buf_t buf_t;               /* http.h's growable buffer */

typedef struct conn conn_t;
struct conn {
  uv_tcp_t tcp;
  uv_shutdown_t shutdown_req;
  fl_httpd_t *srv;
  conn_t *prev, *next;
  fl_h1_t parser;
  fl_httpd_req_t req;
  struct sockaddr_storage peer;
  char *in;                 /* bytes read but not yet parsed: in[in_off..in_len), in_cap allocated */
  size_t in_off, in_len, in_cap, lingered;
  fl_http_head_t table;     /* the request's head being parsed (http.h); reused by the next one */
  buf_t url, body;          /* NUL-terminated copies for the handler: the URL cut into path and query */
  unsigned writes;          /* uv_write requests in flight */
  bool keep_alive, http10, head, chunked;
  bool req_active, streaming, in_process, reading;
  bool finishing;           /* last answer queued: shut down once it is written */
  bool shut, lingering, eof, gone;
  bool closing, closed;     /* uv_close called / its callback ran */
  bool in_request;          /* a request has begun arriving and is not complete yet */
  uint64_t last_ms;         /* the client's last sign of life: bytes read or taken */
  uint64_t begun_ms;        /* when the request being read began (request_ms counts from it) */
};

struct fl_httpd {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t sweep;         /* closes idle connections: slow or silent clients cannot pile up */
  uint32_t idle_ms, request_ms;
  size_t max_conns, per_client, reserve;
  fl_httpd_handler_fn handler;
  void *ctx;
  size_t max_body;
  conn_t *conns;
  size_t nconns;
  bool closing, listener_closed, sweep_closed;
};

static void conn_resume(conn_t *c);
static void conn_finish(conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* ---- small buffers ---- */

/* fl_buf_append under a limit, with a NUL kept after the content (outside len) for handlers. */
static int buf_append(buf_t *b, const char *data, size_t n, size_t limit) {
  if (b->len + n > limit) return FL_ELIMIT;
  if (fl_buf_append(b, data, n) != 0 || fl_buf_append(b, "", 1) != 0) return FL_ENOMEM;
  b->len--;
  return 0;
}

static conn_t *req_conn(const fl_httpd_req_t *req) {
  return (conn_t *)((char *)req - offsetof(conn_t, req));
}

/* ---- connection lifetime ---- */

static void srv_maybe_free(fl_httpd_t *s) {
  if (s->closing && s->listener_closed && s->sweep_closed && s->nconns == 0) free(s);
}

/* A connection lives until its handle is closed and its request (if any) has ended,
 * because a handler may hold the request after the client has gone. */
static void conn_maybe_free(conn_t *c) {
  if (!c->closed || c->req_active) return;
  fl_httpd_t *s = c->srv;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  fl_buf_free(&c->url);
  fl_buf_free(&c->body);
  fl_http_head_free(&c->table);
  free(c->in);
  free(c);
  s->nconns--;
  srv_maybe_free(s);
}

static void on_conn_close(uv_handle_t *h) {
  conn_t *c = h->data;
  c->closed = true;
  conn_maybe_free(c);
}

/* Closes at once; queued writes are dropped. */
static void conn_close(conn_t *c) {
  c->gone = true;
  if (c->closing) return;
  c->closing = true;
  uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

static void read_stop(conn_t *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = false;
}

static bool backpressured(const conn_t *c) { return c->tcp.write_queue_size > HTTPD_WRITE_HIGH; }

/* ---- writing ---- */

static void on_write(uv_write_t *r, int status) {
  fl_wreq_t *w = (fl_wreq_t *)r;
  conn_t *c = w->owner;
  free(w);
  c->writes--;
  if (c->closing) return;
  c->last_ms = uv_now(c->srv->loop);         /* the client took bytes */
  if (status < 0) {
    conn_close(c);
  } else if (c->finishing) {
    if (c->writes == 0) conn_finish(c);
  } else if (!c->req_active) {
    conn_resume(c);   /* the queue may have drained below the pipelining limit */
  }
}

/* Writes what the socket takes now and queues a heap copy of the rest, so callers may
 * pass stack buffers. Write failures mean the client is gone. */
static void conn_send(conn_t *c, const uv_buf_t *bufs, unsigned nbufs) {
  if (c->gone || c->closing) return;
  ssize_t queued = fl_write((uv_stream_t *)&c->tcp, bufs, nbufs, c->writes == 0, c, on_write);
  if (queued < 0) conn_close(c);
  else if (queued > 0) c->writes++;
}

static void on_shutdown(uv_shutdown_t *r, int status) {
  conn_t *c = r->data;
  if (c->closing) return;
  if (status < 0 || c->eof) {
    conn_close(c);
    return;
  }
  c->lingering = true;
  if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
  if (!c->reading) conn_close(c);
}

/* Ends the connection gracefully: no more requests; once every answer is written we send
 * FIN and drain what the client still sends until it closes too. */
static void conn_finish(conn_t *c) {
  c->finishing = true;
  if (c->closing || c->shut || c->writes > 0 || c->req_active) return;
  c->shut = true;
  read_stop(c);
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) conn_close(c);
}

/* ---- answers ---- */

/* Formats the status line and headers into stack (cap bytes) or, when longer, into a
 * heap buffer that the caller frees (returned pointer != stack). NULL when out of memory. */
static char *build_head(conn_t *c, int status, const char *ctype, const char *framing,
                        const char *extra, char *stack, size_t cap, size_t *out_len) {
  const char *conn_hdr = "";
  if (!c->keep_alive || c->srv->closing) conn_hdr = "Connection: close\r\n";
  else if (c->http10) conn_hdr = "Connection: keep-alive\r\n";
  const char *ct_name = ctype ? "Content-Type: " : "", *ct_end = ctype ? "\r\n" : "";
  if (!extra) extra = "";
  char *out = stack;
  for (int attempt = 0; attempt < 2; attempt++) {
    int n = snprintf(out, cap, "HTTP/1.1 %d %s\r\n%s%s%s%s%s%s\r\n", status, fl_http_reason(status),
                     ct_name, ctype ? ctype : "", ct_end, framing, conn_hdr, extra);
    if (n < 0) break;
    if ((size_t)n < cap) {
      *out_len = (size_t)n;
      return out;
    }
    cap = (size_t)n + 1;
    out = malloc(cap);
    if (!out) return NULL;
  }
  if (out != stack) free(out);
  return NULL;
}

static void req_end(conn_t *c) {
  c->req_active = false;
  c->last_ms = uv_now(c->srv->loop);         /* idle counts from the answer, not the request */
  c->streaming = false;
  if (c->closing) {
    if (c->closed) conn_maybe_free(c);
    return;
  }
  if (!c->keep_alive || c->srv->closing) conn_finish(c);
  else if (!c->in_process) conn_resume(c);
}

static void send_head_and_body(conn_t *c, int status, const char *ctype, const char *framing,
                               const char *extra, const void *body, size_t len) {
  char stack[HTTPD_HEAD_STACK];
  size_t head_len;
  char *head = build_head(c, status, ctype, framing, extra, stack, sizeof stack, &head_len);
  if (!head) {
    conn_close(c);
    return;
  }
  uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)head_len), uv_buf_init((char *)body, (unsigned)len)};
  conn_send(c, bufs, len ? 2 : 1);
  if (head != stack) free(head);
}

void fl_httpd_respond(fl_httpd_req_t *req, int status, const char *content_type,
                      const char *extra_headers, const void *body, size_t len) {
  conn_t *c = req_conn(req);
  if (!c->req_active || c->streaming) return;
  char framing[48] = "";
  bool bodiless = status < 200 || status == 204 || status == 304;
  if (!bodiless) snprintf(framing, sizeof framing, "Content-Length: %zu\r\n", len);
  if (bodiless || c->head) len = 0;
  send_head_and_body(c, status, content_type, framing, extra_headers, body, len);
  req_end(c);
}

void fl_httpd_stream_begin(fl_httpd_req_t *req, int status, const char *content_type,
                           const char *extra_headers) {
  conn_t *c = req_conn(req);
  if (!c->req_active || c->streaming) return;
  c->streaming = true;
  /* HTTP/1.0 has no chunked encoding: the end of the body is the end of the connection. */
  c->chunked = !c->http10;
  if (c->http10) c->keep_alive = false;
  send_head_and_body(c, status, content_type, c->chunked ? "Transfer-Encoding: chunked\r\n" : "",
                     extra_headers, NULL, 0);
}

void fl_httpd_stream_write(fl_httpd_req_t *req, const void *data, size_t len) {
  conn_t *c = req_conn(req);
  if (!c->streaming || len == 0 || c->head) return;   /* a 0-length chunk would end the body */
  if (!c->chunked) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    conn_send(c, &b, 1);
    return;
  }
  char size_line[24];
  int n = snprintf(size_line, sizeof size_line, "%zx\r\n", len);
  uv_buf_t bufs[3] = {uv_buf_init(size_line, (unsigned)n), uv_buf_init((char *)data, (unsigned)len),
                      uv_buf_init((char *)"\r\n", 2)};
  conn_send(c, bufs, 3);
}

void fl_httpd_stream_end(fl_httpd_req_t *req) {
  conn_t *c = req_conn(req);
  if (!c->req_active) return;
  if (c->streaming && c->chunked && !c->head) {
    uv_buf_t b = uv_buf_init((char *)"0\r\n\r\n", 5);
    conn_send(c, &b, 1);
  }
  req_end(c);
}

bool fl_httpd_gone(const fl_httpd_req_t *req) { return req_conn(req)->gone; }

void fl_httpd_abort(fl_httpd_req_t *req) {
  conn_t *c = req_conn(req);
  if (!c->req_active) return;
  conn_close(c);
  req_end(c);
}

const char *fl_httpd_header(const fl_httpd_req_t *req, const char *lname, size_t *len) {
  return fl_http_head_get(&req_conn(req)->table, lname, len);
}

/* Answers a request that never reaches the handler (malformed, too large) and closes; words,
 * when not NULL, say what was wrong with it. */
static void conn_refuse(conn_t *c, int status, const char *words) {
  char body[160], framing[48];
  int n = snprintf(body, sizeof body, "%s%s%s\n", fl_http_reason(status), words ? ": " : "", words ? words : "");
  n = FL_MIN(n, (int)sizeof body - 1);
  snprintf(framing, sizeof framing, "Content-Length: %d\r\n", n);
  c->keep_alive = false;
  c->head = false;
  send_head_and_body(c, status, "text/plain", framing, NULL, body, (size_t)n);
  conn_finish(c);
}

/* ---- parsing ---- */

/* curl and others wait for "100 Continue" before sending a large body. */
static void maybe_continue(conn_t *c) {
  if (c->http10 || !(c->parser.has_length || c->parser.chunked)) return;
  size_t len;
  const char *expect = fl_http_head_get(&c->table, "expect", &len);
  if (expect && fl_streq_ci(expect, len, "100-continue")) {
    uv_buf_t b = uv_buf_init((char *)"HTTP/1.1 100 Continue\r\n\r\n", 25);
    conn_send(c, &b, 1);
  }
}

static bool scheme_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '+' ||
         ch == '-' || ch == '.';
}

/* Where the path begins in an absolute-form target ("http://host:port/p?q"), after a scheme
 * that starts with a letter and a non-empty authority; NULL for anything else. */
static char *after_authority(char *u) {
  size_t i = 0;
  if (!((u[0] >= 'a' && u[0] <= 'z') || (u[0] >= 'A' && u[0] <= 'Z'))) return NULL;
  while (scheme_char(u[i])) i++;
  if (strncmp(u + i, "://", 3) != 0) return NULL;
  size_t host = i += 3;
  while (u[i] && u[i] != '/' && u[i] != '?' && u[i] != '#') i++;
  return i > host ? u + i : NULL;
}

/* Copies the target and cuts the copy into path and query, the fragment dropped: origin form
 * ("/p?q#f", or "*") or absolute form (a proxy's "http://host/p?q"; no path there means "/").
 * The parser took any visible bytes as a target: FL_EPARSE for what is neither form. */
static int split_url(conn_t *c) {
  fl_buf_clear(&c->url);
  if (buf_append(&c->url, c->table.buf + c->table.url_off, c->table.url_len, SIZE_MAX) != 0) return FL_ENOMEM;
  char *u = c->url.data, *path = u;
  if (u[0] != '/' && u[0] != '*' && !(path = after_authority(u))) return FL_EPARSE;
  char *mark = strchr(path, '#');
  if (mark) *mark = '\0';
  c->req.query = "";
  if ((mark = strchr(path, '?'))) {
    *mark = '\0';
    c->req.query = mark + 1;
  }
  c->req.path = path[0] ? path : "/";
  return 0;
}

/* The head is read: false when the request is refused (its target, its announced size). */
static bool head_read(conn_t *c) {
  const fl_h1_t *p = &c->parser;
  c->keep_alive = p->keep_alive;
  c->http10 = p->minor == 0;
  c->head = p->method == FL_METHOD_HEAD;
  int rc = split_url(c);
  if (rc != 0) {
    conn_refuse(c, rc == FL_ENOMEM ? 500 : 400, rc == FL_ENOMEM ? NULL : "invalid URL");
    return false;
  }
  if (p->has_length && p->content_length > c->srv->max_body) {
    conn_refuse(c, 413, NULL);
    return false;
  }
  maybe_continue(c);
  return true;
}

static bool body_read(conn_t *c, const char *at, size_t n) {
  int rc = buf_append(&c->body, at, n, c->srv->max_body);
  if (rc != 0) conn_refuse(c, rc == FL_ELIMIT ? 413 : 500, NULL);
  return rc == 0;
}

static void conn_dispatch(conn_t *c) {
  c->req.method = fl_method_name(c->parser.method);
  c->req.body = c->body.data ? c->body.data : "";
  c->req.body_len = c->body.len;
  c->req.peer = (const struct sockaddr *)&c->peer;
  c->req.user = NULL;
  c->in_request = false;
  c->req_active = true;
  c->streaming = false;
  c->srv->handler(&c->req, c->srv->ctx);
}

/* Blank lines between requests are skipped; true when a request's first byte is buffered, and
 * the parser, the table and the body are then ready for it. */
static bool request_begins(conn_t *c) {
  while (c->in_off < c->in_len && (c->in[c->in_off] == '\r' || c->in[c->in_off] == '\n')) c->in_off++;
  if (c->in_off == c->in_len) return false;
  c->in_request = true;
  c->begun_ms = uv_now(c->srv->loop);
  fl_h1_reset(&c->parser);
  fl_http_head_reset(&c->table);
  fl_buf_clear(&c->body);
  return true;
}

/* Runs the parser over the buffered bytes: true when a whole request was read and handed to
 * the handler, false when it was refused or more bytes are needed (a line of the head that is
 * not complete stays in the buffer, given again with the next bytes). */
static bool conn_parse(conn_t *c) {
  for (;;) {
    size_t used, body_len;
    const char *body;
    fl_h1_event_t ev = fl_h1_feed(&c->parser, &c->table, c->in + c->in_off, c->in_len - c->in_off, &used,
                                  &body, &body_len);
    c->in_off += used;
    if (ev == FL_H1_HEAD) {
      if (!head_read(c)) return false;
    } else if (ev == FL_H1_DATA) {
      if (!body_read(c, body, body_len)) return false;
    } else if (ev == FL_H1_END) {
      conn_dispatch(c);
      return true;
    } else {
      /* the words say what was wrong; 414 and 431 say it themselves */
      if (ev == FL_H1_ERROR) conn_refuse(c, c->parser.error_status, c->parser.error_status == 400 ? c->parser.error : NULL);
      return false;
    }
  }
}

/* Parses buffered bytes and hands complete requests to the handler, one at a time: the bytes
 * after a request wait, unparsed, until it has been answered. */
static void conn_process(conn_t *c) {
  c->in_process = true;
  while (c->in_off < c->in_len && !c->req_active && !c->closing && !c->finishing && !backpressured(c)) {
    if (!c->in_request && !request_begins(c)) break;
    if (!conn_parse(c)) break;
  }
  c->in_process = false;
}

/* We read only when every whole request buffered has been taken: what is left is the start of
 * a head's line, moved to the front and followed by the new bytes. A line longer than a read
 * grows the buffer, up to the head's limit (the parser refuses beyond). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  (void)suggested;
  if (c->lingering) c->in_off = c->in_len = 0;      /* read only to be dropped */
  size_t left = c->in_len - c->in_off;
  memmove(c->in, c->in + c->in_off, left);
  c->in_off = 0;
  c->in_len = left;
  if (c->in_cap - left < HTTPD_READ_SIZE) {
    char *in = realloc(c->in, left + HTTPD_READ_SIZE);
    if (!in) {
      *buf = uv_buf_init(NULL, 0);                  /* UV_ENOBUFS: the connection is closed */
      return;
    }
    c->in = in;
    c->in_cap = left + HTTPD_READ_SIZE;
  }
  *buf = uv_buf_init(c->in + left, (unsigned)(c->in_cap - left));
}

/* Continues after an answer or a read: parse what is buffered, then read more only when
 * nothing is pending, so pipelined requests never overtake each other. */
static void conn_resume(conn_t *c) {
  if (c->closing || c->req_active || c->finishing) return;
  conn_process(c);
  if (c->closing || c->finishing) return;
  if (c->req_active || backpressured(c)) {
    read_stop(c);
  } else if (c->eof) {
    conn_finish(c);   /* the client is done sending and everything it sent is answered */
  } else if (!c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
    else conn_close(c);
  }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = st->data;
  (void)buf;
  if (nread == 0 || c->closing) return;
  if (nread < 0) {
    read_stop(c);
    c->eof = true;
    if (nread != UV_EOF || c->lingering) conn_close(c);
    else if (!c->req_active) conn_finish(c);   /* a half-sent request is dropped */
    return;
  }
  c->last_ms = uv_now(c->srv->loop);
  if (c->lingering) {
    c->lingered += (size_t)nread;
    if (c->lingered > HTTPD_LINGER_MAX) conn_close(c);
    return;
  }
  c->in_len += (size_t)nread;
  conn_resume(c);
}

/* ---- accepting ---- */

static conn_t *conn_new(fl_httpd_t *s) {
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->in = malloc(HTTPD_READ_SIZE);
  c->in_cap = HTTPD_READ_SIZE;
  if (!c->in || fl_http_head_init(&c->table, HTTPD_MAX_HEAD, HTTPD_MAX_HEADERS) != 0) {
    free(c->in);
    free(c);
    return NULL;
  }
  c->srv = s;
  fl_h1_init(&c->parser, false);
  uv_tcp_init(s->loop, &c->tcp);   /* cannot fail: no socket is created yet */
  c->tcp.data = c;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  return c;
}

static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family) return false;
  if (a->ss_family == AF_INET)
    return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
  return a->ss_family == AF_INET6 && memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                                            &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

/* 127.0.0.1 or ::1: the host's own tools (the CLI, a local Prometheus). */
static bool local_host(const struct sockaddr_storage *a) {
  if (a->ss_family == AF_INET) return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
  return a->ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

/* May the connection just accepted (counted in nconns) stay? The cap, the slots kept for the
 * local host, and the cap per client address. */
static bool admitted(const fl_httpd_t *s, const conn_t *c) {
  if (s->max_conns && s->nconns > s->max_conns) return false;
  if (s->max_conns && s->reserve && s->nconns > s->max_conns - s->reserve && !local_host(&c->peer)) return false;
  if (!s->per_client) return true;
  size_t same = 0;
  for (const conn_t *o = s->conns; o; o = o->next) same += !o->closing && same_host(&o->peer, &c->peer);
  return same <= s->per_client;
}

static void on_connection(uv_stream_t *ls, int status) {
  fl_httpd_t *s = ls->data;
  if (status < 0 || s->closing) return;
  /* Out of memory leaves the connection in the backlog; libuv then stops accepting until
   * a later accept succeeds, which is the best we can do without memory. */
  conn_t *c = conn_new(s);
  if (!c) return;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  int len = sizeof c->peer;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len) != 0) c->peer.ss_family = AF_UNSPEC;
  if (!admitted(s, c)) {
    conn_close(c);                 /* over a limit: accepted only to be closed */
    return;
  }
  c->last_ms = uv_now(s->loop);
  uv_tcp_nodelay(&c->tcp, 1);   /* answers are written whole; small ones must not wait */
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
  else conn_close(c);
}

int fl_listen_socket(const fl_addr_t *addr, bool reuseport) {
  int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
      bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

static void on_listener_close(uv_handle_t *h) {
  fl_httpd_t *s = h->data;
  s->listener_closed = true;
  srv_maybe_free(s);
}

static void on_sweep_close(uv_handle_t *h) {
  fl_httpd_t *s = h->data;
  s->sweep_closed = true;
  srv_maybe_free(s);
}

/* Once a second: a client silent for idle_ms while its request is half sent gets 408; one
 * silent between requests, or lingering after its last answer, is closed. A request being
 * answered (a stream, a slow handler) is never timed out here. */
static void on_sweep(uv_timer_t *t) {
  fl_httpd_t *s = t->data;
  uint64_t now = uv_now(s->loop);
  for (conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    bool late = s->request_ms && c->in_request && now - c->begun_ms >= s->request_ms;   /* a trickle */
    if (c->closing || c->req_active || (now - c->last_ms < s->idle_ms && !late)) continue;
    if (c->in_request && !c->finishing && !c->lingering) conn_refuse(c, 408, NULL);
    else conn_close(c);
  }
}

int fl_httpd_start(uv_loop_t *loop, const fl_addr_t *addr, const fl_httpd_opts_t *opts,
                   fl_httpd_handler_fn handler, void *ctx, fl_httpd_t **out) {
  int fd = fl_listen_socket(addr, opts && opts->reuseport);
  if (fd < 0) return fd;
  /* listen(2) here, before any handle exists, so that a failure needs no close callback;
   * uv_listen below repeats it harmlessly. */
  if (listen(fd, SOMAXCONN) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  fl_httpd_t *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    return FL_ENOMEM;
  }
  s->loop = loop;
  s->handler = handler;
  s->ctx = ctx;
  s->max_body = opts && opts->max_body ? opts->max_body : HTTPD_DEFAULT_MAX_BODY;
  s->idle_ms = opts && opts->idle_ms ? opts->idle_ms : 60000;
  s->max_conns = opts ? opts->max_conns : 0;
  s->request_ms = opts ? opts->request_ms : 0;
  s->per_client = opts ? opts->per_client : 0;
  s->reserve = opts ? opts->reserve : 0;
  uv_timer_init(loop, &s->sweep);
  s->sweep.data = s;
  uv_timer_start(&s->sweep, on_sweep, 1000, 1000);
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  int rc = uv_tcp_open(&s->listener, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, SOMAXCONN, on_connection);
  if (rc != 0) {
    if (uv_fileno((uv_handle_t *)&s->listener, &(uv_os_fd_t){0}) != 0) close(fd);
    s->closing = true;   /* freed by the close callbacks once the loop runs */
    uv_close((uv_handle_t *)&s->sweep, on_sweep_close);
    uv_close((uv_handle_t *)&s->listener, on_listener_close);
    return rc;
  }
  *out = s;
  return 0;
}

void fl_httpd_close(fl_httpd_t *s) {
  if (!s || s->closing) return;
  s->closing = true;
  uv_close((uv_handle_t *)&s->sweep, on_sweep_close);
  uv_close((uv_handle_t *)&s->listener, on_listener_close);
  for (conn_t *c = s->conns; c; c = c->next) conn_close(c);
}
