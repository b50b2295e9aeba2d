/* proxy_int.h — state shared by the two halves of the data path: proxy.c (client side) and
 * exchange.c (upstream side). Not for other modules. Worker thread only. */
#ifndef FL_PROXY_INT_H
#define FL_PROXY_INT_H

#include "feedback.h"
#include "h1.h"
#include "target.h"
#include "proxy.h"
#include "llm.h"
#include "metrics.h"
#include "monitor.h"
#include "router.h"

/* What a client connection is doing. Each phase has one deadline (phase_timeout_ms in proxy.c)
 * and a fixed set of next phases; the diagram is in docs/ARCHITECTURE.md ("Phases").
 *   IDLE → HEAD → EXCHANGE → IDLE (keep-alive) | FLUSH (closing after its answer) → CLOSED */
typedef enum {
  FL_CONN_IDLE,       /* between requests; may still be writing the last answer (sock.queued) */
  FL_CONN_HEAD,       /* a request head is arriving */
  FL_CONN_EXCHANGE,   /* a request is being served: ex.phase says where */
  FL_CONN_FLUSH,      /* no further request: what is queued goes out, then the close */
  FL_CONN_CLOSED,     /* uv_close called; freed when both handles have closed */
} fl_conn_phase_t;

/* Where an exchange is, from the answer's side (the request's side is `req_done`).
 *   ROUTING → CONNECTING → SENDING → WAITING → STREAMING → DONE; any phase → DONE on an error;
 *   CONNECTING, SENDING and WAITING go back to CONNECTING for one retry. */
typedef enum {
  FL_EX_NONE,         /* no exchange: the connection is not in FL_CONN_EXCHANGE */
  FL_EX_ROUTING,      /* head read; the body may be collected before dispatch (`inspect`) */
  FL_EX_CONNECTING,   /* an upstream connection is being opened */
  FL_EX_SENDING,      /* connected; the request's body still flows up */
  FL_EX_WAITING,      /* the backend has the whole request; its answer is awaited */
  FL_EX_STREAMING,    /* the answer's head went to the client; its body follows */
  FL_EX_DONE,         /* answered in full (or with an error); fl_exchange_finished is next */
} fl_ex_phase_t;

typedef enum { FL_FRAME_NONE, FL_FRAME_LENGTH, FL_FRAME_CHUNKED, FL_FRAME_CLOSE } fl_frame_t;

/* One request/response exchange; lives inside its client connection, reset per request. */
typedef struct fl_exchange {
  fl_ex_phase_t phase;
  bool req_done;                /* the client's request is completely read */
  bool decided;                 /* variant chosen */
  bool inspect;                 /* collecting the body (json: key, model rewrite) */
  bool chunked_req;             /* the client's body is chunked; forwarded chunked */
  bool head_req;
  bool retain;                  /* `pending` keeps everything sent, for one retry */
  bool retried;
  bool up_paused;               /* upstream reading stopped: client is slow */
  bool up_keepalive;
  bool up_got_bytes;            /* the backend has sent something */
  bool interim;                 /* a 1xx response is being skipped */
  fl_conf_t *conf;              /* reference held for the exchange */
  const fl_route_t *route;
  fl_decision_t decision;
  fl_backend_t *backend;
  fl_upconn_t *up;
  uint64_t content_length;      /* of the client request, UINT64_MAX when none */
  uint64_t body_bytes;
  fl_buf_t pending;             /* head + body waiting for (or retained for) the upstream */
  size_t flushed;               /* bytes of `pending` already written upstream */
  fl_buf_t body;                /* inspected body */
  fl_target_t target;           /* the request's target, normalised; into the client's head table */
  struct sockaddr_storage client;   /* who the request is from (find_client in proxy.c) */
  char client_ip[48];
  bool override_ok;             /* the client is in override_from: x-fledge-variant is obeyed */
  fl_h1_t up_parser;
  fl_buf_t up_in;               /* an unfinished line of the answer's head, until the rest arrives */
  fl_frame_t frame;
  int status;
  uint64_t start_ns;
  uint64_t sent_ms;             /* when the request went to this connection (a stale retry's bound) */
  char request_id[FL_REQUEST_ID_MAX];   /* the client's own, or signed when the variant is chosen */
  char feedback_id[FL_REQUEST_ID_MAX];  /* the signed id when request_id is the client's own */
  /* accounting (account.c) */
  bool begun;                   /* counted from the variant's choice to the end (the access log) */
  fl_vstats_t *vs;              /* this variant's counters on this worker; NULL: not counted */
  fl_bstats_t *bs;              /* the chosen backend's counters */
  uint64_t overhead_ns;         /* time spent in the gateway itself, excluding the backend */
  uint64_t resp_bytes;
  bool ttft_recorded;
  fl_llm_t llm;
  struct fl_sample *sample;     /* this exchange is sampled for the data monitor; owned until pushed */
  struct fl_mirror *mirror;     /* its copy to the canary (shadow.h), until the exchange ends */
} fl_exchange_t;

typedef struct fl_client {
  fl_sock_t sock;
  uv_timer_t timer;
  fl_worker_t *w;
  struct fl_client *prev, *next;
  fl_h1_t parser;
  fl_http_head_t head;
  fl_http_head_t up_head;       /* the upstream response's head, allocated on first use */
  struct sockaddr_storage peer;
  char peer_ip[48];
  unsigned listener;            /* the index in conf->listens it came in on (the same in every
                                   snapshot: a reload may not change the listeners) */
  bool from_proxy;              /* the peer is in trusted_proxies: its forwarding headers are believed */
  int handles;                  /* open libuv handles; freed at 0 */
  fl_conn_phase_t phase;
  uint32_t requests;            /* answered so far on this connection */
  uint64_t deadline_ms;         /* the phase's deadline (loop time); 0: none */
  uint64_t timer_due_ms;        /* when the timer fires; it is re-armed lazily (on_timer) */
  bool keepalive;               /* the current request allows another after it */
  bool in_parse;                /* inside parse(): a request may not be started from a callback */
  bool read_paused;
  fl_buf_t inbuf;               /* bytes read but not parsed yet (pipelining) */
  char country[3];
  int country_state;            /* 0 unknown yet, 1 known, -1 none */
  fl_exchange_t ex;
} fl_client_t;

#define FL_HIGH_WATER (1u << 20)
#define FL_LOW_WATER (256u << 10)
#define FL_RETAIN_MAX (64u << 10)

static inline bool fl_client_closed(const fl_client_t *c) { return c->phase == FL_CONN_CLOSED; }
/* The answer's head went to the client: too late for an error status. */
static inline bool fl_ex_answered(const fl_exchange_t *ex) { return ex->phase >= FL_EX_STREAMING; }
/* An upstream connection is ready and takes the request's bytes as they come. */
static inline bool fl_ex_connected(const fl_exchange_t *ex) {
  return ex->up && ex->phase >= FL_EX_SENDING && ex->phase < FL_EX_DONE;
}

/* Request bytes the backend's socket has not taken yet. */
static inline size_t fl_up_queued(const fl_client_t *c) { return c->ex.up ? c->ex.up->sock.queued : 0; }

/* proxy.c */
void fl_client_write(fl_client_t *c, const uv_buf_t *bufs, unsigned n);
void fl_client_close(fl_client_t *c);
void fl_ex_enter(fl_client_t *c, fl_ex_phase_t phase);    /* and the phase's deadline */
void fl_client_progress(fl_client_t *c);                   /* bytes moved: the deadline starts over */
/* At the end of every libuv callback of the data path: the timer follows the deadline, and the
 * phases' invariants are checked (FL_BUG_ON, make asan). */
void fl_client_settle(fl_client_t *c);
void fl_client_error(fl_client_t *c, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void fl_exchange_finished(fl_client_t *c);    /* answer complete: next request or close */
void fl_client_pause_reading(fl_client_t *c, bool pause);
void fl_client_cork(fl_client_t *c);          /* collect writes to c until uncork */
void fl_client_uncork(fl_client_t *c);   /* back-pressure from the upstream */

/* account.c: per-request metrics and access log; each a no-op when metrics are off */
void fl_account_begin(fl_client_t *c);                   /* variant chosen */
void fl_account_backend(fl_client_t *c);                 /* ex->backend chosen */
void fl_account_upstream_error(fl_client_t *c, fl_uperr_t kind);
/* An upstream failure the client is told of in general words (what): logs it with the backend's
 * address and the cause, at most 5 lines a second per worker (error paths only, never per request) */
void fl_account_upstream_detail(fl_client_t *c, int status, const char *what, const char *cause);
void fl_account_retry(fl_client_t *c);
void fl_account_request_body(fl_client_t *c, const char *data, size_t len);   /* as sent upstream */
void fl_account_response_head(fl_client_t *c, uint64_t now_ns);
void fl_account_body(fl_client_t *c, const char *data, size_t len);
void fl_account_end(fl_client_t *c);                     /* exactly once; safe to call again */

/* proxy.c: replaces a JSON body's top-level "model" string with model; FL_EINVAL when the body
 * names its model twice, FL_ENOMEM. A body that is not JSON or names no model is left alone. */
int fl_rewrite_model(fl_buf_t *body, const char *model);

/* mirror.c: copies of stable requests sent to the canary (a route's `shadow:`, or a rollout's
 * shadow phase). The copy's answer is read to its end and never relayed; the client only ever
 * gets stable's. Once both have ended, the pair goes to the data monitor (monitor.h), which has
 * it compared (shadow.h). A mirror never delays, fails or changes the client's exchange: it goes
 * once stable's answer has ended, on a connection, timer and buffers of its own, and what goes
 * wrong with it is only counted (metrics.h, fl_sstats_t). */
#define FL_MIRROR_MAX_BODY (1u << 20)   /* a request body larger than this is not mirrored */

typedef struct fl_mirror fl_mirror_t;

/* Whether the request (method, variant decision) on route r is to be mirrored now: r has a shadow
 * section, the request went to stable, the method is listed, the canary has backends, and the
 * user's bucket is within shadow.percent. */
bool fl_mirror_wanted(const fl_conf_t *conf, const fl_route_t *r, const fl_decision_t *d, fl_method_t method);

/* A mirror of a request on route r of snapshot conf (a reference is taken), or NULL when it is
 * dropped (counted: shadow.max_in_flight reached) or memory ran short. The caller writes the
 * request's head lines for the canary into fl_mirror_head() (without framing headers or the
 * blank line), gives the body as it arrives, then sends or ends it. */
fl_mirror_t *fl_mirror_begin(fl_worker_t *w, fl_conf_t *conf, const fl_route_t *r);
fl_buf_t *fl_mirror_head(fl_mirror_t *m);
/* The request's body as the client sent it (a copy is kept, up to FL_MIRROR_MAX_BODY). */
void fl_mirror_body(fl_mirror_t *m, const char *data, size_t len);
/* The request is complete: the mirror may go once stable's answer has ended. */
void fl_mirror_send(fl_mirror_t *m);
/* Stable's side is over: the mirror goes to a canary backend now (one whose request never arrived
 * whole is dropped). primary (owned by the mirror from now; NULL: none to compare) is stable's
 * captured exchange, with ms, ttft_ms and request_id set. */
void fl_mirror_primary_done(fl_mirror_t *m, fl_sample_t *primary);

/* Drops every open mirror of the worker (its loop is about to end). */
void fl_mirror_close_all(fl_worker_t *w);

/* exchange.c */
void fl_exchange_start(fl_client_t *c);        /* variant chosen, head in pending: go upstream */
void fl_exchange_body(fl_client_t *c, const char *data, size_t len);   /* framed for upstream */
void fl_exchange_abort(fl_client_t *c);        /* drop the upstream side (client gone, error) */
void fl_exchange_resume_upstream(fl_client_t *c);
void fl_exchange_timeout(fl_client_t *c);      /* the timer fired in an upstream state */
void fl_exchange_cork(fl_client_t *c);         /* collect writes to c's upstream until uncork */
void fl_exchange_uncork(fl_client_t *c);

#endif
