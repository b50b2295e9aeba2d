/* account.c — per-request accounting on the worker thread: the variant's and backend's counters,
 * latency histograms, the LLM observer's findings, the access-log record and, for a sampled
 * share of exchanges, the body prefixes handed to the data monitor. Every hook costs a few
 * counter stores; only a sampled exchange allocates. An upstream failure's detail (the backend's
 * address, the cause) is logged here, rationed, since the client's answer leaves it out. */
#include "alog.h"
#include "monitor.h"
#include "proxy_int.h"

#include <math.h>

#include <stdio.h>
#include <time.h>

static const fl_variant_conf_t *chosen(const fl_client_t *c) {
  return &c->ex.route->variant[c->ex.decision.variant];
}

/* Is this exchange read by the data monitor? The share of the moment, within the worker's cap
 * for the current second. */
static bool sampled(fl_worker_t *w, uint64_t now_ns) {
  uint32_t ppm = fl_monitor_rate_ppm();
  if (!w->samples || !ppm || (ppm < 1000000 && fl_worker_rand(w) % 1000000 >= ppm)) return false;
  uint64_t second = now_ns / 1000000000u;
  if (second != w->sample_second) w->sample_second = second, w->sampled_in_second = 0;
  return w->sampled_in_second++ < fl_monitor_cap_per_worker();
}

void fl_account_begin(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  if (ex->begun) return;
  ex->begun = true;                    /* the access log has it, metrics or not */
  fl_llm_init(&ex->llm, false);
  if (!ex->conf->metrics) return;
  ex->vs = fl_metrics_vstats(c->w->metrics, chosen(c)->series);
  if (ex->vs) fl_ctr_add(&ex->vs->in_flight, 1);
  bool quality = ex->vs && sampled(c->w, ex->start_ns);
  if ((quality || ex->mirror) && ex->vs && (ex->sample = calloc(1, sizeof *ex->sample))) {
    ex->sample->series = chosen(c)->series;
    ex->sample->series_gen = chosen(c)->series_gen;
    ex->sample->quality = quality;     /* a mirrored exchange's answer is kept for the comparison */
  }
}

/* Keeps at most data.max_body bytes of a body; *cut says that more came. */
static void capture(const fl_exchange_t *ex, fl_buf_t *b, bool *cut, const char *data, size_t len) {
  size_t room = ex->conf->data.max_body > b->len ? ex->conf->data.max_body - b->len : 0;
  if (len > room) *cut = true;
  if (FL_MIN(len, room) && fl_buf_append(b, data, FL_MIN(len, room)) != 0) *cut = true;
}

void fl_account_request_body(fl_client_t *c, const char *data, size_t len) {
  fl_sample_t *s = c->ex.sample;
  if (s) capture(&c->ex, &s->req, &s->req_cut, data, len);
}

void fl_account_backend(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  if (!ex->vs) return;
  const fl_variant_conf_t *v = chosen(c);
  ex->bs = NULL;
  for (size_t i = 0; i < v->n_backends; i++)
    if (v->bound[i] == ex->backend) ex->bs = fl_metrics_bstats(c->w->metrics, v->backend_series[i]);
  if (ex->bs) fl_ctr_add(&ex->bs->requests, 1);
}

void fl_account_upstream_error(fl_client_t *c, fl_uperr_t kind) {
  if (c->ex.bs) fl_ctr_add(&c->ex.bs->errors[kind], 1);
}

#define DETAIL_LINES_PER_S 5

/* This worker thread's budget of detail lines: the second it counts, the lines logged in it, and
 * those held back since the last line that went out (which says how many). */
static _Thread_local struct {
  uint64_t second, held_back;
  unsigned lines;
} detail_budget;

/* The client's answer names no internal address; an operator finds it here by the request id. A
 * dead backend fails every request sent to it, so the lines are rationed per worker: fl_log is a
 * blocking write, and a flood of failures must not become a flood of writes. */
void fl_account_upstream_detail(fl_client_t *c, int status, const char *what, const char *cause) {
  const fl_exchange_t *ex = &c->ex;
  uint64_t second = fl_clock_ms() / 1000;
  if (second != detail_budget.second) detail_budget.second = second, detail_budget.lines = 0;
  if (detail_budget.lines >= DETAIL_LINES_PER_S) {
    detail_budget.held_back++;
    return;
  }
  detail_budget.lines++;
  char held[128] = "";
  if (detail_budget.held_back)
    snprintf(held, sizeof held, "; %llu upstream errors before it were not logged (at most %d lines a second "
             "per worker)", (unsigned long long)detail_budget.held_back, DETAIL_LINES_PER_S);
  detail_budget.held_back = 0;
  fl_log("route %s, backend %s: %s%s%s; answered %d (request %s)%s", ex->route->name,
         ex->backend ? ex->backend->addr.text : "-", what, cause ? ": " : "", cause ? cause : "", status,
         ex->request_id, held);
}

void fl_account_retry(fl_client_t *c) {
  if (c->ex.vs) fl_ctr_add(&c->ex.vs->retries, 1);
}

void fl_account_response_head(fl_client_t *c, uint64_t now_ns) {
  fl_exchange_t *ex = &c->ex;
  if (!ex->vs) return;
  fl_hist_record(&ex->vs->ttfb, (now_ns - ex->start_ns) / 1000);
  fl_llm_init(&ex->llm, fl_http_is_event_stream(&c->up_head));
  if (ex->sample) {
    ex->sample->stream = ex->llm.is_stream;
    fl_buf_clear(&ex->sample->resp);        /* a retried exchange starts its answer over */
    ex->sample->resp_cut = false;
  }
}

static void on_token_gap(void *ctx, uint64_t gap_ns) {
  fl_exchange_t *ex = ctx;
  fl_hist_record(&ex->vs->itl, gap_ns / 1000);
}

void fl_account_body(fl_client_t *c, const char *data, size_t len) {
  fl_exchange_t *ex = &c->ex;
  ex->resp_bytes += len;
  if (!ex->vs) return;
  if (ex->sample) capture(ex, &ex->sample->resp, &ex->sample->resp_cut, data, len);
  fl_llm_feed(&ex->llm, data, len, fl_clock_ns(), on_token_gap, ex);
  if (ex->llm.first_token_ns && !ex->ttft_recorded) {
    ex->ttft_recorded = true;
    fl_hist_record(&ex->vs->ttft, (ex->llm.first_token_ns - ex->start_ns) / 1000);
  }
}

static void log_record(fl_client_t *c, int status, uint64_t duration_us) {
  const fl_exchange_t *ex = &c->ex;
  fl_alog_rec_t r = {.duration_us = duration_us, .status = status, .variant = (uint8_t)ex->decision.variant,
                     .prompt_tokens = ex->llm.prompt_tokens, .completion_tokens = fl_llm_completion_tokens(&ex->llm),
                     .ttft_us = ex->ttft_recorded ? (ex->llm.first_token_ns - ex->start_ns) / 1000 : 0};
  r.unix_ms = fl_worker_unix_ms(c->w);
  snprintf(r.request_id, sizeof r.request_id, "%s", ex->request_id);
  snprintf(r.route, sizeof r.route, "%s", ex->route->name);
  snprintf(r.version, sizeof r.version, "%s", chosen(c)->version);
  snprintf(r.backend, sizeof r.backend, "%s", ex->backend ? ex->backend->addr.text : "");
  snprintf(r.client, sizeof r.client, "%s", ex->client_ip);
  fl_alog_push(c->w->alog, &r);
}

/* Stable's side of a mirrored request is over: its captured exchange (with its duration and time
 * to first token) goes to the mirror, which pairs it with the canary's answer. */
static void hand_to_mirror(fl_client_t *c, uint64_t duration_us) {
  fl_exchange_t *ex = &c->ex;
  fl_sample_t *s = ex->sample;
  if (s) {
    s->ms = (double)duration_us / 1000.0;
    s->ttft_ms = ex->ttft_recorded ? (double)(ex->llm.first_token_ns - ex->start_ns) / 1e6 : NAN;
    snprintf(s->request_id, sizeof s->request_id, "%s", ex->request_id);
  }
  fl_mirror_primary_done(ex->mirror, s);
  ex->mirror = NULL;
  ex->sample = NULL;
}

void fl_account_end(fl_client_t *c) {
  fl_exchange_t *ex = &c->ex;
  fl_vstats_t *vs = ex->vs;
  if (!ex->begun) return;
  ex->begun = false;
  ex->vs = NULL;
  ex->bs = NULL;                       /* both are freed with their series once the snapshot goes */
  int status = fl_ex_answered(ex) && ex->status ? ex->status : 499;   /* 499: the client went away */
  if (status < 100 || status > 599) status = 599;
  uint64_t now = fl_clock_ns();
  uint64_t duration_us = now > ex->start_ns ? (now - ex->start_ns) / 1000 : 0;
  if (c->w->alog) log_record(c, status, duration_us);
  if (ex->sample) {
    ex->sample->status = status;
    ex->sample->at_ms = fl_clock_ms();
  }
  if (ex->mirror) hand_to_mirror(c, duration_us);
  if (!vs) return;                     /* metrics: false */
  fl_ctr_add(&vs->codes[status], 1);
  fl_ctr_add(&vs->in_flight, (uint64_t)-1);
  fl_ctr_add(&vs->request_bytes, ex->body_bytes);
  fl_ctr_add(&vs->response_bytes, ex->resp_bytes);
  fl_hist_record(&vs->duration, duration_us);
  if (ex->llm.prompt_tokens > 0) fl_ctr_add(&vs->prompt_tokens, (uint64_t)ex->llm.prompt_tokens);
  int64_t completion = fl_llm_completion_tokens(&ex->llm);
  if (completion > 0) fl_ctr_add(&vs->completion_tokens, (uint64_t)completion);
  fl_ctr_add(&vs->finish[ex->llm.finish], 1);
  if (ex->llm.is_stream) {
    fl_ctr_add(&vs->streams, 1);
    if (!ex->llm.done_seen) fl_ctr_add(&vs->streams_cut, 1);
  }
  if (ex->sample) {
    fl_sample_push(c->w->samples, ex->sample);
    ex->sample = NULL;
  }
}
