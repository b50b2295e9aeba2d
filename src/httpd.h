/* httpd.h — a small HTTP/1.1 server on one libuv loop for the admin API and `fledge mock`:
 * keep-alive, pipelining (answered in order), whole request bodies, buffered or streamed answers.
 * Not the proxy's data path (that is proxy.c). Every function runs on the loop's thread. */
#ifndef FL_HTTPD_H
#define FL_HTTPD_H

#include "common.h"
#include "netaddr.h"
#include <uv.h>

typedef struct fl_httpd fl_httpd_t;

/* One request. Valid from the handler call until the answer ends (fl_httpd_respond or
 * fl_httpd_stream_end); owned by httpd. */
typedef struct fl_httpd_req {
  const char *method;               /* "GET", "POST", ... */
  const char *path;                 /* URL path without the query, NUL-terminated */
  const char *query;                /* after '?', "" when none */
  const char *body; size_t body_len;/* whole body (NUL-terminated for convenience) */
  const struct sockaddr *peer;
  void *user;                       /* free for the handler, e.g. a timer for a stream */
} fl_httpd_req_t;

/* Called once per request, in order; must eventually answer it exactly once. */
typedef void (*fl_httpd_handler_fn)(fl_httpd_req_t *req, void *ctx);

typedef struct fl_httpd_opts {
  bool reuseport;                   /* SO_REUSEPORT so several loops can share the address */
  size_t max_body;                  /* larger bodies are answered 413; 0 → 8 MiB */
  uint32_t idle_ms;                 /* a connection that sends nothing for this long, mid-request
                                       (408) or between requests, is closed; 0 → 60 s */
  size_t max_conns;                 /* connections beyond are closed at once; 0 → no limit */
  uint32_t request_ms;              /* a request (head and body) must have arrived whole this long
                                       after its first byte, however it trickles (408); 0 → none */
  size_t per_client;                /* connections from one client address beyond are closed at
                                       once; 0 → no limit */
  size_t reserve;                   /* of max_conns, the last `reserve` are kept for the local
                                       host's own clients (127.0.0.1, ::1): a flood from elsewhere
                                       cannot lock out the CLI or a local scraper */
} fl_httpd_opts_t;

/* Binds and listens on addr. On success *out is owned by the caller (fl_httpd_close). */
int fl_httpd_start(uv_loop_t *loop, const fl_addr_t *addr, const fl_httpd_opts_t *opts,
                   fl_httpd_handler_fn handler, void *ctx, fl_httpd_t **out);

/* Stops listening and closes every connection; frees the server once handles are closed. */
void fl_httpd_close(fl_httpd_t *s);

/* Value of the first header named lname (lower case), its length in *len, or NULL; not
 * NUL-terminated. Headers are http.h's table, with the gateway's checks on names, values and
 * framing. Valid as long as req. */
const char *fl_httpd_header(const fl_httpd_req_t *req, const char *lname, size_t *len);

/* Buffered answer with Content-Length. extra_headers: "" or lines each ending in "\r\n". */
void fl_httpd_respond(fl_httpd_req_t *req, int status, const char *content_type,
                      const char *extra_headers, const void *body, size_t len);

/* Streamed answer: chunked transfer encoding, each write one chunk, sent at once. */
void fl_httpd_stream_begin(fl_httpd_req_t *req, int status, const char *content_type,
                           const char *extra_headers);
void fl_httpd_stream_write(fl_httpd_req_t *req, const void *data, size_t len);
void fl_httpd_stream_end(fl_httpd_req_t *req);

/* True once the client has gone away; a streaming handler should then stop and call
 * fl_httpd_stream_end (writes after that are dropped). */
bool fl_httpd_gone(const fl_httpd_req_t *req);

/* Abort: close the connection without (finishing) an answer. Ends the request. */
void fl_httpd_abort(fl_httpd_req_t *req);

/* Binds a TCP listener socket (SO_REUSEADDR, optional SO_REUSEPORT) for uv_tcp_open.
 * Returns the fd or a negative errno. Shared with server.c. */
int fl_listen_socket(const fl_addr_t *addr, bool reuseport);

#endif
