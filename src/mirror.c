/* mirror.c — mirrors of stable requests to the canary (see proxy_int.h). One mirror: COLLECTING
 * (the client's request arrives; its body is copied) → READY (whole) → CONNECTING → WAITING (sent,
 * the answer is read, captured up to data.max_body and observed for tokens, and thrown away) →
 * ENDED, with its own deadline (shadow.timeout) from its sending. It is sent once stable's answer
 * has ended, so that the two never compete for the worker (measured: sent beside stable's
 * request, the canary's answer arrived with stable's and put the primary's p99 up by 5–11% in
 * make bench); the pair goes to the monitor when the mirror ends. */
#include "live.h"
#include "proxy_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { M_COLLECTING, M_READY, M_CONNECTING, M_WAITING, M_ENDED } mphase_t;

struct fl_mirror {
  struct fl_mirror *prev, *next;     /* the worker's open mirrors */
  fl_worker_t *w;
  fl_conf_t *conf;                   /* a reference: the route and its canary live as long */
  const fl_route_t *route;
  const fl_variant_conf_t *vc;       /* the canary's */
  fl_sstats_t *ss;                   /* its counters on this worker (NULL when out of memory) */
  mphase_t phase;
  bool too_large, retried, got_bytes, timer_open, counted;
  fl_buf_t out;                      /* the request's head, then the whole request */
  fl_buf_t body;                     /* the body as the client sent it */
  fl_backend_t *backend;
  fl_upconn_t *up;
  uv_timer_t timer;
  fl_h1_t parser;
  fl_http_head_t head;
  fl_buf_t up_in;                    /* an unfinished line of the answer's head */
  fl_llm_t llm;
  uint64_t sent_ns;
  fl_sample_t *answer;               /* the canary's answer as captured */
  fl_sample_t *primary;              /* stable's, once over */
  bool primary_done;
};

bool fl_mirror_wanted(const fl_conf_t *conf, const fl_route_t *r, const fl_decision_t *d, fl_method_t method) {
  const fl_shadow_conf_t *s = &r->shadow;
  uint32_t phase_bp = fl_live_shadow(r);          /* a rollout's shadow phase, with or without a section */
  uint32_t bp = phase_bp ? phase_bp : s->on ? s->percent_bp : 0;
  if (!bp || !conf->metrics || d->variant != FL_STABLE || !r->has_canary || !(s->methods & (1u << method)))
    return false;
  if (r->variant[FL_CANARY].n_backends == 0) return false;
  if (bp >= FL_BUCKETS) return true;
  /* the users mirrored are those the canary's weight reaches last (the top of the buckets) */
  return d->why != FL_WHY_RULE && d->bucket >= FL_BUCKETS - bp;
}

static void count_drop(fl_sstats_t *ss, fl_sdrop_t why) {
  if (ss) fl_ctr_add(&ss->dropped[why], 1);
}

static uint32_t per_worker_cap(const fl_conf_t *conf, const fl_shadow_conf_t *s) {
  uint64_t workers = conf->workers ? conf->workers : 1;
  return (uint32_t)(((uint64_t)s->max_in_flight + workers - 1) / workers);
}

fl_mirror_t *fl_mirror_begin(fl_worker_t *w, fl_conf_t *conf, const fl_route_t *r) {
  const fl_variant_conf_t *vc = &r->variant[FL_CANARY];
  fl_sstats_t *ss = fl_metrics_sstats(w->metrics, vc->series);
  if (w->n_mirrors >= per_worker_cap(conf, &r->shadow)) {
    count_drop(ss, FL_SDROP_BUSY);
    return NULL;
  }
  fl_mirror_t *m = calloc(1, sizeof *m);
  if (!m || !(m->answer = calloc(1, sizeof *m->answer))) {
    free(m);
    return NULL;
  }
  m->w = w;
  fl_conf_ref(conf);
  m->conf = conf;
  m->route = r;
  m->vc = vc;
  m->ss = ss;
  m->answer->series = vc->series;
  m->answer->series_gen = vc->series_gen;
  m->next = w->mirrors;
  if (w->mirrors) w->mirrors->prev = m;
  w->mirrors = m;
  w->n_mirrors++;
  return m;
}

fl_buf_t *fl_mirror_head(fl_mirror_t *m) { return &m->out; }

void fl_mirror_body(fl_mirror_t *m, const char *data, size_t len) {
  if (m->too_large || !len) return;
  if (m->body.len + len > FL_MIRROR_MAX_BODY || fl_buf_append(&m->body, data, len) != 0) {
    m->too_large = true;
    fl_buf_free(&m->body);
  }
}

/* ---- the end ---- */

static void on_timer_closed(uv_handle_t *h) {
  fl_mirror_t *m = h->data;
  free(m);
}

/* Both sides are over: the pair goes to the monitor (when there is one to compare), the mirror
 * leaves the worker's list and is freed once its timer has closed. */
static void release(fl_mirror_t *m) {
  fl_worker_t *w = m->w;
  if (m->primary && m->answer && m->counted) {
    m->primary->shadow = m->answer;
    m->answer = NULL;
    fl_sample_push(w->samples, m->primary);
    m->primary = NULL;
  }
  fl_sample_free(m->primary);
  fl_sample_free(m->answer);
  fl_buf_free(&m->out);
  fl_buf_free(&m->body);
  fl_buf_free(&m->up_in);
  fl_http_head_give(&w->heads, &m->head);
  if (m->prev) m->prev->next = m->next;
  else w->mirrors = m->next;
  if (m->next) m->next->prev = m->prev;
  w->n_mirrors--;
  fl_conf_unref(m->conf);
  if (m->timer_open) uv_close((uv_handle_t *)&m->timer, on_timer_closed);
  else free(m);
}

static void drop_up(fl_mirror_t *m, bool reuse) {
  fl_upconn_t *u = m->up;
  if (!u) return;
  m->up = NULL;
  fl_upconn_done(&m->w->pools, u, reuse);
}

/* The mirror's side is over: status is the answer's (0: none came whole, `why` says what failed). */
static void ended(fl_mirror_t *m, int status, fl_uperr_t why, bool reuse) {
  if (m->phase == M_ENDED) return;
  m->phase = M_ENDED;
  drop_up(m, reuse);
  if (m->timer_open) uv_timer_stop(&m->timer);
  uint64_t now = fl_clock_ns();
  fl_sample_t *a = m->answer;
  a->status = status;
  a->stream = m->llm.is_stream;
  a->at_ms = now / 1000000;
  a->ms = (double)(now - m->sent_ns) / 1e6;
  a->ttft_ms = m->llm.first_token_ns ? (double)(m->llm.first_token_ns - m->sent_ns) / 1e6 : NAN;
  if (m->ss) {
    fl_vstats_t *v = &m->ss->v;
    fl_ctr_add(&v->in_flight, (uint64_t)-1);
    if (status) fl_ctr_add(&v->codes[FL_MIN(status, 599)], 1);
    else fl_ctr_add(&m->ss->errors[why], 1);
    fl_hist_record(&v->duration, (now - m->sent_ns) / 1000);
    if (m->llm.first_token_ns) fl_hist_record(&v->ttft, (m->llm.first_token_ns - m->sent_ns) / 1000);
    if (m->llm.prompt_tokens > 0) fl_ctr_add(&v->prompt_tokens, (uint64_t)m->llm.prompt_tokens);
    int64_t completion = fl_llm_completion_tokens(&m->llm);
    if (completion > 0) fl_ctr_add(&v->completion_tokens, (uint64_t)completion);
  }
  if (m->primary_done) release(m);
}

static void dispatch(fl_mirror_t *m);

void fl_mirror_primary_done(fl_mirror_t *m, fl_sample_t *primary) {
  m->primary = primary;
  if (m->phase == M_COLLECTING) {            /* the request never arrived whole: nothing to send */
    count_drop(m->ss, FL_SDROP_INCOMPLETE);
    m->phase = M_ENDED;
  }
  if (m->phase == M_READY && m->w->draining) m->phase = M_ENDED;   /* the gateway is stopping: not now */
  if (m->phase == M_READY) dispatch(m);      /* which may end it at once (not released yet:) */
  m->primary_done = true;
  if (m->phase == M_ENDED) release(m);
}

void fl_mirror_close_all(fl_worker_t *w) {
  while (w->mirrors) {
    fl_mirror_t *m = w->mirrors;
    if (!m->primary_done) {                  /* none is left by now: every exchange has ended */
      if (m->phase == M_READY) m->phase = M_COLLECTING;   /* and none is sent while the loop ends */
      fl_mirror_primary_done(m, NULL);
      if (w->mirrors != m) continue;         /* released */
    }
    ended(m, 0, FL_UPERR_RESET, false);      /* and so released */
  }
}

/* ---- the exchange with the canary ---- */

static void connect_to(fl_mirror_t *m, bool pooled);

/* A reused connection the backend had closed fails before any answer: once, on a fresh one. */
static void failed(fl_mirror_t *m, fl_uperr_t why) {
  if (!m->got_bytes && !m->retried && m->up && m->up->requests > 0 && why == FL_UPERR_RESET) {
    m->retried = true;
    drop_up(m, false);
    connect_to(m, false);
    return;
  }
  if (why == FL_UPERR_CONNECT_REFUSED || why == FL_UPERR_CONNECT_TIMEOUT || why == FL_UPERR_TLS)
    fl_backend_report(m->backend, false, fl_now_ms());
  ended(m, 0, why, false);
}

static void on_timer(uv_timer_t *t) {
  fl_mirror_t *m = t->data;
  failed(m, m->phase == M_CONNECTING ? FL_UPERR_CONNECT_TIMEOUT : FL_UPERR_TIMEOUT);
}

static void on_sent(fl_sock_t *s, size_t n, int status) {
  fl_upconn_t *u = s->data;
  if (status < 0 && u->owner) failed(u->owner, FL_UPERR_RESET);
}

static void answer_body(fl_mirror_t *m, const char *at, size_t len) {
  fl_sample_t *a = m->answer;
  size_t max = m->conf->data.max_body, room = max > a->resp.len ? max - a->resp.len : 0;
  if (len > room) a->resp_cut = true;
  if (FL_MIN(len, room) && fl_buf_append(&a->resp, at, FL_MIN(len, room)) != 0) a->resp_cut = true;
  fl_llm_feed(&m->llm, at, len, fl_clock_ns(), NULL, NULL);
}

/* Runs the answer's parser over the bytes; false once the mirror has ended. */
static bool answer_input(fl_mirror_t *m, const char *data, size_t len) {
  size_t off = 0, used, body_len;
  const char *body;
  while (off <= len) {
    fl_h1_event_t ev = fl_h1_feed(&m->parser, &m->head, data + off, len - off, &used, &body, &body_len);
    off += used;
    if (ev == FL_H1_HEAD && m->parser.status >= 200) {
      fl_llm_init(&m->llm, fl_http_is_event_stream(&m->head));
    } else if (ev == FL_H1_DATA) {
      answer_body(m, body, body_len);
    } else if (ev == FL_H1_END && m->parser.status < 200) {    /* 100 Continue: the answer follows */
      fl_h1_reset(&m->parser);
      fl_http_head_reset(&m->head);
    } else if (ev == FL_H1_END) {
      ended(m, m->parser.status, FL_UPERR_COUNT, m->parser.keep_alive && off == len);
      return false;
    } else if (ev == FL_H1_ERROR) {
      break;
    } else if (ev == FL_H1_MORE) {
      if (off < len && fl_buf_append(&m->up_in, data + off, len - off) != 0) break;
      return true;
    }
  }
  failed(m, FL_UPERR_BAD_RESPONSE);
  return false;
}

static void on_read(fl_sock_t *s, ssize_t n, const char *data) {
  fl_upconn_t *u = s->data;
  fl_mirror_t *m = u->owner;
  if (!m) {                          /* pooled: the backend closed it or sent unasked bytes */
    fl_upconn_close(u->pools, u);
    return;
  }
  if (n < 0) {
    if (n == UV_EOF && fl_h1_eof(&m->parser) == FL_H1_END && m->got_bytes) ended(m, m->parser.status, FL_UPERR_COUNT, false);
    else failed(m, FL_UPERR_RESET);
    return;
  }
  m->got_bytes = true;
  if (m->up_in.len) {                /* a line of the head that was cut between two reads */
    fl_buf_t held = m->up_in;
    m->up_in = (fl_buf_t){0};
    if (fl_buf_append(&held, data, (size_t)n) == 0) answer_input(m, held.data, held.len);
    else failed(m, FL_UPERR_BAD_RESPONSE);
    fl_buf_free(&held);
    return;
  }
  answer_input(m, data, (size_t)n);
}

/* The connection is up (or pooled): the whole request goes out at once. */
static void up_ready(fl_mirror_t *m) {
  fl_upconn_t *u = m->up;
  u->sock.on_read = on_read;
  u->sock.on_sent = on_sent;
  fl_h1_init(&m->parser, true);
  m->parser.no_body = false;
  fl_buf_clear(&m->up_in);
  if (fl_http_head_take(&m->w->heads, &m->head, 65536, 256) != 0) {
    failed(m, FL_UPERR_BAD_RESPONSE);
    return;
  }
  m->phase = M_WAITING;
  fl_sock_read(&u->sock, true);
  uv_buf_t b = uv_buf_init(m->out.data, (unsigned)m->out.len);
  if (fl_sock_write(&u->sock, &b, 1) < 0) failed(m, FL_UPERR_RESET);
}

static void on_connect(fl_sock_t *s, int status) {
  fl_upconn_t *u = s->data;
  fl_mirror_t *m = u->owner;
  if (status == UV_EPROTO) failed(m, FL_UPERR_TLS);
  else if (status < 0) failed(m, FL_UPERR_CONNECT_REFUSED);
  else up_ready(m);
}

static void connect_to(fl_mirror_t *m, bool pooled) {
  fl_worker_t *w = m->w;
  fl_backend_t *b = m->backend;
  fl_upconn_t *u = pooled ? fl_pool_take(&w->pools, b) : NULL;
  if (u) {
    u->owner = m;
    m->up = u;
    up_ready(m);
    return;
  }
  if (!(u = calloc(1, sizeof *u))) {
    ended(m, 0, FL_UPERR_CONNECT_REFUSED, false);
    return;
  }
  u->backend = b;
  u->pools = &w->pools;
  u->owner = m;
  u->sock.data = u;
  if (fl_sock_connect(&u->sock, &w->loop, (const struct sockaddr *)&b->addr.ss, b->addr.len, w->read_buf,
                      sizeof w->read_buf, on_connect) < 0) {
    free(u);
    ended(m, 0, FL_UPERR_CONNECT_REFUSED, false);
    return;
  }
  if (b->tls) {
    SSL *ssl = fl_tls_client_ssl(b->tls);
    if (!ssl) {
      fl_upconn_close(&w->pools, u);
      ended(m, 0, FL_UPERR_TLS, false);
      return;
    }
    fl_sock_start_tls(&u->sock, ssl);
  }
  u->sock.on_read = on_read;
  u->sock.on_sent = on_sent;
  m->up = u;
  m->phase = M_CONNECTING;
}

/* The request with the canary's model and its own length, after the head's lines. */
static bool finish_request(fl_mirror_t *m) {
  if (m->vc->model && fl_rewrite_model(&m->body, m->vc->model) != 0) return false;
  fl_buf_lit(&m->out, "x-fledge-shadow: 1\r\ncontent-length: ");
  fl_buf_u64(&m->out, m->body.len);
  fl_buf_lit(&m->out, "\r\n\r\n");
  fl_buf_append(&m->out, m->body.data, m->body.len);
  fl_buf_free(&m->body);
  return !m->out.err;
}

void fl_mirror_send(fl_mirror_t *m) {
  if (m->phase == M_COLLECTING) m->phase = M_READY;
}

/* Stable's answer has ended: the copy goes to a canary backend. */
static void dispatch(fl_mirror_t *m) {
  fl_worker_t *w = m->w;
  m->phase = M_CONNECTING;                   /* from here the mirror ends by `ended` */
  if (m->too_large || !finish_request(m)) {
    count_drop(m->ss, FL_SDROP_TOO_LARGE);
    m->phase = M_ENDED;
    return;
  }
  if (!(m->backend = fl_upstream_pick(&w->pools, m->vc, NULL, fl_clock_ms()))) {
    count_drop(m->ss, FL_SDROP_NO_BACKEND);
    m->phase = M_ENDED;
    return;
  }
  m->counted = true;
  if (m->ss) fl_ctr_add(&m->ss->v.in_flight, 1);
  m->sent_ns = fl_clock_ns();
  fl_llm_init(&m->llm, false);
  uv_timer_init(&w->loop, &m->timer);
  m->timer.data = m;
  m->timer_open = true;
  uv_timer_start(&m->timer, on_timer, m->route->shadow.timeout_ms, 0);
  connect_to(m, true);
}
