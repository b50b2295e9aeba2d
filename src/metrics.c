/* metrics.c — the series registry, per-worker tables, Prometheus exposition and the ring of
 * per-second snapshots behind the windowed numbers of /api/v1/stats. Modules above this one add
 * their parts to both through the registered callbacks; nothing here calls them by name.
 * Workers only ever touch their own tables (fl_metrics_vstats/bstats and the counters); the
 * monitor thread reads a series' generation and route; everything else here runs on the control
 * thread. A series lives while some snapshot names it: it is freed, with every worker's counters
 * for it, when the last such snapshot is unbound (retire.h), and its id is reused. */
#include "metrics.h"
#include "http.h"
#include "live.h"
#include "router.h"
#include "upstream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- registry ----
 * An id is taken by the first snapshot that names its label set and freed when the last one
 * naming it is unbound. Only the control thread writes; the lock is for the monitor thread,
 * which copies a route out (fl_metrics_series_route) and never holds it while waiting on
 * anything else. */

typedef struct {
  char route[64], version[64], backend[64];
  fl_variant_id_t variant;
} fl_labels_t;

typedef struct {
  fl_labels_t l;
  unsigned refs;                     /* bindings by snapshots; 0: a free id */
  atomic_uint gen;                   /* changes when the id is taken and when it is freed */
} fl_entry_t;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static fl_entry_t series_tab[FL_MAX_SERIES], bseries_tab[FL_MAX_BSERIES];
static atomic_uint n_series, n_bseries;        /* ids below may be taken */

static const char *const uperr_names[FL_UPERR_COUNT] = {"connect_refused", "connect_timeout", "reset", "timeout",
                                                       "bad_response", "tls"};

/* Finds a taken entry with these labels or takes the lowest free id; returns its id with one
 * more reference, or -1 when every id is taken. Lock held. */
static int registry_take(fl_entry_t *table, atomic_uint *n, unsigned max, const fl_labels_t *want) {
  unsigned len = atomic_load(n), free_id = len;
  for (unsigned i = 0; i < len; i++) {
    if (!table[i].refs) free_id = FL_MIN(free_id, i);
    else if (memcmp(&table[i].l, want, sizeof *want) == 0) {
      table[i].refs++;
      return (int)i;
    }
  }
  if (free_id == max) return -1;
  table[free_id].l = *want;
  table[free_id].refs = 1;
  atomic_fetch_add(&table[free_id].gen, 1);
  if (free_id == len) atomic_store(n, len + 1);     /* publish after the labels are written */
  return (int)free_id;
}

/* Drops one reference; true when that freed the id (its labels cleared, a new generation). */
static bool registry_drop(fl_entry_t *table, unsigned id) {
  pthread_mutex_lock(&registry_lock);
  bool freed = --table[id].refs == 0;
  if (freed) {
    memset(&table[id].l, 0, sizeof table[id].l);
    atomic_fetch_add(&table[id].gen, 1);
  }
  pthread_mutex_unlock(&registry_lock);
  return freed;
}

static void labels(fl_labels_t *l, const fl_route_t *r, fl_variant_id_t v, const char *version, const char *backend) {
  memset(l, 0, sizeof *l);
  snprintf(l->route, sizeof l->route, "%s", r->name);
  snprintf(l->version, sizeof l->version, "%s", version ? version : "");
  snprintf(l->backend, sizeof l->backend, "%s", backend ? backend : "");
  l->variant = v;
}

/* Lock held. Every step leaves v unbindable: backend_series entries start as FL_SERIES_NONE and
 * series_gen is set only with the reference that goes with it. */
static int bind_variant(const fl_route_t *r, fl_variant_id_t id, fl_variant_conf_t *v) {
  fl_labels_t l;
  size_t n = v->n_backends ? v->n_backends : 1;
  if (!(v->backend_series = malloc(n * sizeof *v->backend_series))) return FL_ENOMEM;
  for (size_t i = 0; i < n; i++) v->backend_series[i] = FL_SERIES_NONE;
  labels(&l, r, id, v->version, NULL);
  int sid = registry_take(series_tab, &n_series, FL_MAX_SERIES, &l);
  if (sid < 0) return FL_ELIMIT;
  v->series = (unsigned)sid;
  v->series_gen = atomic_load(&series_tab[sid].gen);
  for (size_t i = 0; i < v->n_backends; i++) {
    labels(&l, r, id, NULL, v->backends[i].text);
    int bid = registry_take(bseries_tab, &n_bseries, FL_MAX_BSERIES, &l);
    if (bid < 0) return FL_ELIMIT;
    v->backend_series[i] = (unsigned)bid;
  }
  return 0;
}

int fl_metrics_bind(fl_conf_t *c) {
  int rc = 0;
  pthread_mutex_lock(&registry_lock);
  for (size_t i = 0; i < c->n_routes && rc == 0; i++) {
    fl_route_t *r = &c->routes[i];
    rc = bind_variant(r, FL_STABLE, &r->variant[FL_STABLE]);
    if (rc == 0 && r->has_canary) rc = bind_variant(r, FL_CANARY, &r->variant[FL_CANARY]);
  }
  pthread_mutex_unlock(&registry_lock);
  return rc;
}

int fl_metrics_series_find(const char *route, fl_variant_id_t variant, const char *version) {
  fl_labels_t l = {.variant = variant};
  if (strlen(route) >= sizeof l.route || strlen(version) >= sizeof l.version) return -1;
  strcpy(l.route, route);
  strcpy(l.version, version);
  unsigned n = atomic_load(&n_series);          /* look only: the table is for configured versions */
  for (unsigned i = 0; i < n; i++)
    if (series_tab[i].refs && memcmp(&series_tab[i].l, &l, sizeof l) == 0) return (int)i;
  return -1;
}

unsigned fl_metrics_series_count(void) { return atomic_load(&n_series); }

bool fl_metrics_series_live(unsigned id) { return id < FL_MAX_SERIES && series_tab[id].refs > 0; }

unsigned fl_metrics_series_gen(unsigned id) { return id < FL_MAX_SERIES ? atomic_load(&series_tab[id].gen) : 0; }

bool fl_metrics_series_route(unsigned id, unsigned gen, char *out, size_t cap) {
  if (id >= FL_MAX_SERIES) return false;
  pthread_mutex_lock(&registry_lock);
  bool same = atomic_load(&series_tab[id].gen) == gen && series_tab[id].refs > 0;
  if (same) snprintf(out, cap, "%s", series_tab[id].l.route);
  pthread_mutex_unlock(&registry_lock);
  return same;
}

void fl_metrics_registry_size(unsigned *series, unsigned *bseries) {
  *series = *bseries = 0;
  for (unsigned i = 0; i < atomic_load(&n_series); i++) *series += series_tab[i].refs > 0;
  for (unsigned i = 0; i < atomic_load(&n_bseries); i++) *bseries += bseries_tab[i].refs > 0;
}

/* ---- parts registered by the modules above ---- */

static struct { fl_metrics_expo_fn *fn; void *ctx; } expo_parts[FL_METRICS_MAX_PARTS];
static struct { const char *key; fl_metrics_series_json_fn *fn; void *ctx; } series_parts[FL_METRICS_MAX_PARTS];
static struct { const char *key; fl_metrics_route_json_fn *fn; void *ctx; } route_parts[FL_METRICS_MAX_PARTS];
static struct { fl_metrics_forget_fn *fn; void *ctx; } forget_parts[FL_METRICS_MAX_PARTS];
static unsigned n_expo_parts, n_series_parts, n_route_parts, n_forget_parts;

int fl_metrics_register_exposition(fl_metrics_expo_fn *fn, void *ctx) {
  if (n_expo_parts == FL_METRICS_MAX_PARTS) return FL_ELIMIT;
  expo_parts[n_expo_parts].fn = fn;
  expo_parts[n_expo_parts++].ctx = ctx;
  return 0;
}

int fl_metrics_register_series_json(const char *key, fl_metrics_series_json_fn *fn, void *ctx) {
  if (n_series_parts == FL_METRICS_MAX_PARTS) return FL_ELIMIT;
  series_parts[n_series_parts].key = key;
  series_parts[n_series_parts].fn = fn;
  series_parts[n_series_parts++].ctx = ctx;
  return 0;
}

int fl_metrics_register_route_json(const char *key, fl_metrics_route_json_fn *fn, void *ctx) {
  if (n_route_parts == FL_METRICS_MAX_PARTS) return FL_ELIMIT;
  route_parts[n_route_parts].key = key;
  route_parts[n_route_parts].fn = fn;
  route_parts[n_route_parts++].ctx = ctx;
  return 0;
}

int fl_metrics_register_forget(fl_metrics_forget_fn *fn, void *ctx) {
  if (n_forget_parts == FL_METRICS_MAX_PARTS) return FL_ELIMIT;
  forget_parts[n_forget_parts].fn = fn;
  forget_parts[n_forget_parts++].ctx = ctx;
  return 0;
}

/* ---- worker side ---- */

fl_vstats_t *fl_metrics_vstats(fl_wmetrics_t *m, unsigned series) {
  fl_vstats_t *v = atomic_load_explicit(&m->vs[series], memory_order_relaxed);
  if (v) return v;
  v = calloc(1, sizeof *v);
  if (v) atomic_store_explicit(&m->vs[series], v, memory_order_release);
  return v;
}

fl_bstats_t *fl_metrics_bstats(fl_wmetrics_t *m, unsigned bseries) {
  fl_bstats_t *b = atomic_load_explicit(&m->bs[bseries], memory_order_relaxed);
  if (b) return b;
  b = calloc(1, sizeof *b);
  if (b) atomic_store_explicit(&m->bs[bseries], b, memory_order_release);
  return b;
}

fl_sstats_t *fl_metrics_sstats(fl_wmetrics_t *m, unsigned series) {
  fl_sstats_t *v = atomic_load_explicit(&m->ss[series], memory_order_relaxed);
  if (v) return v;
  v = calloc(1, sizeof *v);
  if (v) atomic_store_explicit(&m->ss[series], v, memory_order_release);
  return v;
}

void fl_wmetrics_free(fl_wmetrics_t *m) {
  if (!m) return;
  for (unsigned i = 0; i < FL_MAX_SERIES; i++) free(atomic_load(&m->vs[i])), free(atomic_load(&m->ss[i]));
  for (unsigned i = 0; i < FL_MAX_BSERIES; i++) free(atomic_load(&m->bs[i]));
  free(m);
}

/* ---- summing the workers ---- */

enum { H_DURATION, H_TTFB, H_TTFT, H_ITL, H_COUNT };

typedef struct fl_vsum {
  uint64_t codes[600];
  uint64_t in_flight, retries, request_bytes, response_bytes, prompt, completion, streams, streams_cut;
  uint64_t finish[FL_FINISH_COUNT];
  fl_hist_snap_t h[H_COUNT];
} fl_vsum_t;

static void add_vstats(fl_vsum_t *s, const fl_vstats_t *v) {
  for (unsigned i = 100; i < 600; i++) s->codes[i] += fl_ctr_get(&v->codes[i]);
  s->in_flight += fl_ctr_get(&v->in_flight);
  s->retries += fl_ctr_get(&v->retries);
  s->request_bytes += fl_ctr_get(&v->request_bytes);
  s->response_bytes += fl_ctr_get(&v->response_bytes);
  s->prompt += fl_ctr_get(&v->prompt_tokens);
  s->completion += fl_ctr_get(&v->completion_tokens);
  s->streams += fl_ctr_get(&v->streams);
  s->streams_cut += fl_ctr_get(&v->streams_cut);
  for (unsigned f = 0; f < FL_FINISH_COUNT; f++) s->finish[f] += fl_ctr_get(&v->finish[f]);
  fl_hist_add_to(&v->duration, &s->h[H_DURATION]);
  fl_hist_add_to(&v->ttfb, &s->h[H_TTFB]);
  fl_hist_add_to(&v->ttft, &s->h[H_TTFT]);
  fl_hist_add_to(&v->itl, &s->h[H_ITL]);
}

static void sum_series(const fl_metrics_src_t *src, unsigned id, fl_vsum_t *s) {
  memset(s, 0, sizeof *s);
  for (unsigned w = 0; w < src->n_workers; w++) {
    const fl_vstats_t *v = atomic_load_explicit(&src->workers[w]->vs[id], memory_order_acquire);
    if (v) add_vstats(s, v);
  }
}

static uint64_t sum_codes(const fl_vsum_t *s, unsigned from, unsigned to) {
  uint64_t n = 0;
  for (unsigned i = from; i < to; i++) n += s->codes[i];
  return n;
}

/* The mirrors' numbers of series id, their answers into s (as a variant's) and the rest into
 * extra (NULL: not wanted); false when no worker has mirrored to it. */
static bool sum_shadow(const fl_metrics_src_t *src, unsigned id, fl_vsum_t *s, fl_shadow_sum_t *extra) {
  bool any = false;
  memset(s, 0, sizeof *s);
  if (extra) memset(extra, 0, sizeof *extra);
  for (unsigned w = 0; w < src->n_workers; w++) {
    const fl_sstats_t *v = atomic_load_explicit(&src->workers[w]->ss[id], memory_order_acquire);
    if (!v) continue;
    any = true;
    add_vstats(s, &v->v);
    for (unsigned k = 0; extra && k < FL_SDROP_COUNT; k++) extra->dropped[k] += fl_ctr_get(&v->dropped[k]);
    for (unsigned k = 0; extra && k < FL_UPERR_COUNT; k++) extra->errors[k] += fl_ctr_get(&v->errors[k]);
  }
  return any;
}

void fl_metrics_shadow_sum(const fl_metrics_src_t *src, unsigned series, fl_shadow_sum_t *out) {
  static fl_vsum_t sum;              /* control thread only; large */
  sum_shadow(src, series, &sum, out);
  out->requests = sum_codes(&sum, 100, 600);
  out->answered_5xx = sum_codes(&sum, 500, 600);
  out->in_flight = sum.in_flight;
  out->prompt = sum.prompt;
  out->completion = sum.completion;
  out->duration = sum.h[H_DURATION];
  out->ttft = sum.h[H_TTFT];
}

static const char *const sdrop_names[FL_SDROP_COUNT] = {"max_in_flight", "too_large", "no_backend", "incomplete"};
const char *fl_sdrop_name(fl_sdrop_t why) { return (unsigned)why < FL_SDROP_COUNT ? sdrop_names[why] : "?"; }
const char *fl_uperr_name(fl_uperr_t kind) { return (unsigned)kind < FL_UPERR_COUNT ? uperr_names[kind] : "?"; }

void fl_metrics_series(const fl_metrics_src_t *src, unsigned series, fl_series_snap_t *out) {
  static fl_vsum_t sum;              /* control thread only; large */
  sum_series(src, series, &sum);
  out->series = series;
  out->series_gen = fl_metrics_series_gen(series);
  out->requests = sum_codes(&sum, 100, 600);
  out->errors = sum_codes(&sum, 500, 600);
  out->completion_tokens = sum.completion;
  out->duration = sum.h[H_DURATION];
  out->ttft = sum.h[H_TTFT];
}

/* ---- Prometheus exposition ---- */

static const double le_seconds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1,     2.5,    5,     10,   30,    60,   120};

/* Label values are user-written (versions): escape as the text format requires. */
void fl_metrics_escape(char *dst, size_t cap, const char *src) {
  size_t j = 0;
  for (; *src && j + 2 < cap; src++) {
    if (*src == '\\' || *src == '"') dst[j++] = '\\';
    if (*src == '\n') {
      dst[j++] = '\\';
      dst[j++] = 'n';
      continue;
    }
    dst[j++] = *src;
  }
  dst[j] = '\0';
}

void fl_metrics_series_labels(unsigned id, char *out, size_t cap) {
  const fl_labels_t *l = &series_tab[id].l;
  char version[140];
  fl_metrics_escape(version, sizeof version, l->version);
  snprintf(out, cap, "route=\"%.63s\",variant=\"%s\",version=\"%s\"", l->route, fl_variant_name(l->variant), version);
}

void fl_metrics_family(fl_buf_t *b, const char *name, const char *type, const char *help) {
  fl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

typedef struct {
  unsigned n;
  fl_vsum_t *sums;
  char (*lbl)[256];
} fl_expo_t;

#define EACH_SERIES(e, i) for (unsigned i = 0; i < (e)->n; i++)

static void expo_counter(fl_buf_t *b, const fl_expo_t *e, const char *name, const char *help, size_t offset) {
  fl_metrics_family(b, name, "counter", help);
  EACH_SERIES(e, i) {
    uint64_t v = *(const uint64_t *)((const char *)&e->sums[i] + offset);
    fl_buf_printf(b, "%s{%s} %llu\n", name, e->lbl[i], (unsigned long long)v);
  }
}

static void expo_codes(fl_buf_t *b, const fl_expo_t *e, const char *name, const char *help) {
  fl_metrics_family(b, name, "counter", help);
  EACH_SERIES(e, i) {
    for (unsigned code = 100; code < 600; code++)
      if (e->sums[i].codes[code])
        fl_buf_printf(b, "%s{%s,code=\"%u\"} %llu\n", name, e->lbl[i], code, (unsigned long long)e->sums[i].codes[code]);
  }
}

static void expo_requests(fl_buf_t *b, const fl_expo_t *e) {
  expo_codes(b, e, "fledge_requests_total", "Requests answered, by route, variant, version and status code.");
  fl_metrics_family(b, "fledge_in_flight_requests", "gauge", "Requests being served now.");
  EACH_SERIES(e, i) fl_buf_printf(b, "fledge_in_flight_requests{%s} %lld\n", e->lbl[i], (long long)e->sums[i].in_flight);
}

static void expo_llm(fl_buf_t *b, const fl_expo_t *e) {
  fl_metrics_family(b, "fledge_tokens_total", "counter", "Prompt and completion tokens, from usage or counted stream deltas.");
  EACH_SERIES(e, i) {
    fl_buf_printf(b, "fledge_tokens_total{%s,type=\"prompt\"} %llu\n", e->lbl[i], (unsigned long long)e->sums[i].prompt);
    fl_buf_printf(b, "fledge_tokens_total{%s,type=\"completion\"} %llu\n", e->lbl[i],
                  (unsigned long long)e->sums[i].completion);
  }
  fl_metrics_family(b, "fledge_finish_reason_total", "counter", "Answers by finish_reason.");
  EACH_SERIES(e, i) {
    for (unsigned f = FL_FINISH_STOP; f < FL_FINISH_COUNT; f++)
      fl_buf_printf(b, "fledge_finish_reason_total{%s,reason=\"%s\"} %llu\n", e->lbl[i], fl_finish_name((fl_finish_t)f),
                    (unsigned long long)e->sums[i].finish[f]);
  }
}

static void expo_hist(fl_buf_t *b, const fl_expo_t *e, const char *name, const char *help, unsigned which) {
  fl_metrics_family(b, name, "histogram", help);
  EACH_SERIES(e, i) {
    const fl_hist_snap_t *h = &e->sums[i].h[which];
    for (size_t k = 0; k < FL_ARRAY_LEN(le_seconds); k++)
      fl_buf_printf(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, e->lbl[i], le_seconds[k],
                    (unsigned long long)fl_hist_count_le(h, le_seconds[k] * 1e6));
    fl_buf_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, e->lbl[i], (unsigned long long)h->count);
    fl_buf_printf(b, "%s_sum{%s} %.6f\n", name, e->lbl[i], (double)h->sum_us / 1e6);
    fl_buf_printf(b, "%s_count{%s} %llu\n", name, e->lbl[i], (unsigned long long)h->count);
  }
}

/* The mirrors' families (shadow.h), for each series some worker mirrored to: their answers like a
 * variant's, under fledge_shadow_*, and the mirrors dropped and failed. Nothing when none was. */
static void expo_shadow(fl_buf_t *b, const fl_metrics_src_t *src, unsigned n_ids) {
  fl_expo_t e = {0};
  fl_shadow_sum_t *x = malloc(sizeof *x * (n_ids ? n_ids : 1));
  e.sums = malloc(sizeof *e.sums * (n_ids ? n_ids : 1));
  e.lbl = malloc(sizeof *e.lbl * (n_ids ? n_ids : 1));
  for (unsigned id = 0; x && e.sums && e.lbl && id < n_ids; id++) {
    if (!series_tab[id].refs || !sum_shadow(src, id, &e.sums[e.n], &x[e.n])) continue;
    fl_metrics_series_labels(id, e.lbl[e.n], sizeof e.lbl[e.n]);
    e.n++;
  }
  if (e.n) {
    expo_codes(b, &e, "fledge_shadow_requests_total",
               "Mirrored requests answered by the canary, by status code (never counted as the canary's traffic).");
    fl_metrics_family(b, "fledge_shadow_in_flight", "gauge", "Mirrored requests open now.");
    EACH_SERIES(&e, i) fl_buf_printf(b, "fledge_shadow_in_flight{%s} %lld\n", e.lbl[i], (long long)e.sums[i].in_flight);
    fl_metrics_family(b, "fledge_shadow_errors_total", "counter", "Mirrored requests that got no whole answer, by kind.");
    EACH_SERIES(&e, i) for (unsigned k = 0; k < FL_UPERR_COUNT; k++)
      fl_buf_printf(b, "fledge_shadow_errors_total{%s,kind=\"%s\"} %llu\n", e.lbl[i], uperr_names[k],
                    (unsigned long long)x[i].errors[k]);
    fl_metrics_family(b, "fledge_shadow_dropped_total", "counter", "Requests that were to be mirrored and were not, by reason.");
    EACH_SERIES(&e, i) for (unsigned k = 0; k < FL_SDROP_COUNT; k++)
      fl_buf_printf(b, "fledge_shadow_dropped_total{%s,reason=\"%s\"} %llu\n", e.lbl[i], sdrop_names[k],
                    (unsigned long long)x[i].dropped[k]);
    fl_metrics_family(b, "fledge_shadow_tokens_total", "counter", "Prompt and completion tokens of the mirrored answers.");
    EACH_SERIES(&e, i) {
      fl_buf_printf(b, "fledge_shadow_tokens_total{%s,type=\"prompt\"} %llu\n", e.lbl[i], (unsigned long long)e.sums[i].prompt);
      fl_buf_printf(b, "fledge_shadow_tokens_total{%s,type=\"completion\"} %llu\n", e.lbl[i],
                    (unsigned long long)e.sums[i].completion);
    }
    expo_hist(b, &e, "fledge_shadow_duration_seconds", "Time from sending a mirrored request to its answer's last byte.",
              H_DURATION);
    expo_hist(b, &e, "fledge_shadow_time_to_first_token_seconds",
              "Time from sending a mirrored request to its first SSE event with content.", H_TTFT);
  }
  free(x);
  free(e.sums);
  free(e.lbl);
}

static void backend_label_text(unsigned id, char *out, size_t cap) {
  const fl_labels_t *l = &bseries_tab[id].l;
  snprintf(out, cap, "route=\"%s\",variant=\"%s\",backend=\"%s\"", l->route, fl_variant_name(l->variant), l->backend);
}

static void expo_backends(fl_buf_t *b, const fl_metrics_src_t *src) {
  unsigned n = atomic_load(&n_bseries);
  char lbl[256];
  fl_metrics_family(b, "fledge_upstream_requests_total", "counter", "Requests sent to each backend.");
  for (unsigned id = 0; id < n; id++) {
    if (!bseries_tab[id].refs) continue;
    uint64_t total = 0;
    for (unsigned w = 0; w < src->n_workers; w++) {
      const fl_bstats_t *s = atomic_load_explicit(&src->workers[w]->bs[id], memory_order_acquire);
      if (s) total += fl_ctr_get(&s->requests);
    }
    backend_label_text(id, lbl, sizeof lbl);
    fl_buf_printf(b, "fledge_upstream_requests_total{%s} %llu\n", lbl, (unsigned long long)total);
  }
  fl_metrics_family(b, "fledge_upstream_errors_total", "counter", "Upstream failures by backend and kind.");
  for (unsigned id = 0; id < n; id++) {
    if (!bseries_tab[id].refs) continue;
    backend_label_text(id, lbl, sizeof lbl);
    for (unsigned k = 0; k < FL_UPERR_COUNT; k++) {
      uint64_t total = 0;
      for (unsigned w = 0; w < src->n_workers; w++) {
        const fl_bstats_t *s = atomic_load_explicit(&src->workers[w]->bs[id], memory_order_acquire);
        if (s) total += fl_ctr_get(&s->errors[k]);
      }
      fl_buf_printf(b, "fledge_upstream_errors_total{%s,kind=\"%s\"} %llu\n", lbl, uperr_names[k],
                    (unsigned long long)total);
    }
  }
}

static void expo_routes(fl_buf_t *b, const fl_conf_t *c) {
  fl_metrics_family(b, "fledge_canary_weight", "gauge", "Share of users sent to the canary, in percent.");
  for (size_t i = 0; i < c->n_routes; i++)
    fl_buf_printf(b, "fledge_canary_weight{route=\"%s\"} %g\n", c->routes[i].name, fl_live_weight(&c->routes[i]) / 100.0);
  fl_metrics_family(b, "fledge_backend_up", "gauge", "1 when the backend takes traffic, 0 while it is ejected.");
  uint64_t now = fl_now_ms();
  for (size_t i = 0; i < c->n_routes; i++) {
    const fl_route_t *r = &c->routes[i];
    for (int v = 0; v < (r->has_canary ? 2 : 1); v++)
      for (size_t k = 0; k < r->variant[v].n_backends; k++)
        fl_buf_printf(b, "fledge_backend_up{route=\"%s\",variant=\"%s\",backend=\"%s\"} %d\n", r->name,
                      fl_variant_name((fl_variant_id_t)v), r->variant[v].backends[k].text,
                      fl_backend_available(r->variant[v].bound[k], now) ? 1 : 0);
  }
}

static void expo_registries(fl_buf_t *b) {
  unsigned series, bseries;
  fl_metrics_registry_size(&series, &bseries);
  fl_metrics_family(b, "fledge_registry_entries", "gauge",
                    "Series and backends named by a config still in use (a backend also while its idle "
                    "connections close).");
  fl_buf_printf(b, "fledge_registry_entries{registry=\"series\"} %u\n", series);
  fl_buf_printf(b, "fledge_registry_entries{registry=\"backend_series\"} %u\n", bseries);
  fl_buf_printf(b, "fledge_registry_entries{registry=\"backends\"} %u\n", fl_upstream_count());
}

/* Only taken ids are exported: a series leaves /metrics when it is freed. */
char *fl_metrics_exposition(const fl_metrics_src_t *src, const fl_conf_t *c) {
  unsigned n_ids = atomic_load(&n_series);
  fl_expo_t e = {0};
  e.sums = malloc(sizeof *e.sums * (n_ids ? n_ids : 1));
  e.lbl = malloc(sizeof *e.lbl * (n_ids ? n_ids : 1));
  fl_buf_t b = {0};
  if (!e.sums || !e.lbl) goto out;
  for (unsigned id = 0; id < n_ids; id++) {
    if (!series_tab[id].refs) continue;
    sum_series(src, id, &e.sums[e.n]);
    fl_metrics_series_labels(id, e.lbl[e.n], sizeof e.lbl[e.n]);
    e.n++;
  }
  expo_requests(&b, &e);
  expo_counter(&b, &e, "fledge_retries_total", "Requests retried on another backend after a failed connect.",
               offsetof(fl_vsum_t, retries));
  expo_counter(&b, &e, "fledge_request_bytes_total", "Request body bytes received from clients.",
               offsetof(fl_vsum_t, request_bytes));
  expo_counter(&b, &e, "fledge_response_bytes_total", "Response body bytes sent to clients.",
               offsetof(fl_vsum_t, response_bytes));
  expo_counter(&b, &e, "fledge_streams_total", "Streamed (SSE) answers.", offsetof(fl_vsum_t, streams));
  expo_counter(&b, &e, "fledge_streams_cut_total", "Streamed answers that ended without data: [DONE].",
               offsetof(fl_vsum_t, streams_cut));
  expo_llm(&b, &e);
  expo_hist(&b, &e, "fledge_request_duration_seconds", "Time from the request's first byte to the answer's last.",
            H_DURATION);
  expo_hist(&b, &e, "fledge_time_to_first_byte_seconds", "Time from the request's first byte to the answer's head.",
            H_TTFB);
  expo_hist(&b, &e, "fledge_time_to_first_token_seconds", "Time from the request to the first SSE event with content.",
            H_TTFT);
  expo_hist(&b, &e, "fledge_inter_token_latency_seconds", "Time between consecutive SSE events with content.", H_ITL);
  expo_shadow(&b, src, n_ids);
  expo_backends(&b, src);
  expo_routes(&b, c);
  expo_registries(&b);
  for (unsigned i = 0; i < n_expo_parts; i++) expo_parts[i].fn(&b, c, expo_parts[i].ctx);
  fl_buf_append(&b, "", 1);
out:
  free(e.sums);
  free(e.lbl);
  return b.data;
}

/* ---- the per-second ring behind windowed numbers ---- */

#define FL_RING_SECONDS 301

typedef struct {
  uint32_t index, n;
} fl_sparse_t;

typedef struct {                      /* one series, one second */
  unsigned gen;                       /* the id's generation then: another one's numbers are not its */
  uint64_t requests, errors, prompt, completion;   /* cumulative */
  uint32_t nh[H_COUNT];
  fl_sparse_t *h[H_COUNT];            /* the histograms' growth during this second */
} fl_srec_t;

typedef struct {
  uint64_t t_ms;
  unsigned n;
  fl_srec_t *rec;
} fl_slot_t;

static fl_slot_t ring[FL_RING_SECONDS];
static unsigned ring_next, ring_len;
static fl_hist_snap_t (*prev_hist)[H_COUNT];   /* cumulative histograms at the last tick */
static unsigned prev_n;
static fl_vsum_t tick_sum;

static void slot_free(fl_slot_t *s) {
  for (unsigned i = 0; i < s->n; i++)
    for (unsigned k = 0; k < H_COUNT; k++) free(s->rec[i].h[k]);
  free(s->rec);
  memset(s, 0, sizeof *s);
}

static fl_sparse_t *sparse_diff(const fl_hist_snap_t *now, const fl_hist_snap_t *before, uint32_t *n_out) {
  uint32_t n = 0;
  for (unsigned i = 0; i < FL_HIST_BUCKETS; i++) n += now->bucket[i] != before->bucket[i];
  *n_out = n;
  if (n == 0) return NULL;
  fl_sparse_t *d = malloc(sizeof *d * n);
  if (!d) {
    *n_out = 0;
    return NULL;
  }
  for (unsigned i = 0, j = 0; i < FL_HIST_BUCKETS; i++)
    if (now->bucket[i] != before->bucket[i]) d[j++] = (fl_sparse_t){i, now->bucket[i] - before->bucket[i]};
  return d;
}

static bool grow_prev(unsigned n) {
  if (n <= prev_n) return true;
  void *p = realloc(prev_hist, sizeof *prev_hist * n);
  if (!p) return false;
  prev_hist = p;
  memset(prev_hist + prev_n, 0, sizeof *prev_hist * (n - prev_n));
  prev_n = n;
  return true;
}

uint64_t fl_metrics_tick(const fl_metrics_src_t *src) {
  unsigned n = atomic_load(&n_series);
  fl_slot_t *s = &ring[ring_next];
  uint64_t total = 0;
  slot_free(s);
  if (!grow_prev(n) || !(s->rec = calloc(n ? n : 1, sizeof *s->rec))) return 0;
  s->n = n;
  s->t_ms = fl_now_ms();
  for (unsigned id = 0; id < n; id++) {
    fl_srec_t *r = &s->rec[id];
    r->gen = atomic_load(&series_tab[id].gen);
    if (!series_tab[id].refs) continue;
    sum_series(src, id, &tick_sum);
    r->requests = sum_codes(&tick_sum, 100, 600);
    total += r->requests;
    r->errors = sum_codes(&tick_sum, 500, 600);
    r->prompt = tick_sum.prompt;
    r->completion = tick_sum.completion;
    for (unsigned k = 0; k < H_COUNT; k++) {
      r->h[k] = sparse_diff(&tick_sum.h[k], &prev_hist[id][k], &r->nh[k]);
      prev_hist[id][k] = tick_sum.h[k];
    }
  }
  ring_next = (ring_next + 1) % FL_RING_SECONDS;
  if (ring_len < FL_RING_SECONDS) ring_len++;
  return total;
}

void fl_metrics_shutdown(void) {
  for (unsigned i = 0; i < FL_RING_SECONDS; i++) slot_free(&ring[i]);
  free(prev_hist);
  prev_hist = NULL;
  prev_n = ring_len = ring_next = 0;
  n_expo_parts = n_series_parts = n_route_parts = n_forget_parts = 0;
}

/* ---- freeing a series ---- */

/* A freed series' own state goes: the workers' counters (no request can reach them: no snapshot
 * names the series), the histograms its next tick would subtract, and what the forget parts
 * keep. The ring's samples of it stay until they turn over, unread (rec_of). */
static void free_series(const fl_metrics_src_t *src, unsigned id) {
  for (unsigned w = 0; src && w < src->n_workers; w++)
    free(atomic_exchange_explicit(&src->workers[w]->vs[id], NULL, memory_order_relaxed)),
        free(atomic_exchange_explicit(&src->workers[w]->ss[id], NULL, memory_order_relaxed));
  if (id < prev_n) memset(prev_hist[id], 0, sizeof prev_hist[id]);
  for (unsigned i = 0; i < n_forget_parts; i++) forget_parts[i].fn(id, forget_parts[i].ctx);
}

static void free_bseries(const fl_metrics_src_t *src, unsigned id) {
  for (unsigned w = 0; src && w < src->n_workers; w++)
    free(atomic_exchange_explicit(&src->workers[w]->bs[id], NULL, memory_order_relaxed));
}

static void unbind_variant(const fl_metrics_src_t *src, fl_variant_conf_t *v) {
  if (v->series_gen && registry_drop(series_tab, v->series)) free_series(src, v->series);
  v->series_gen = 0;
  for (size_t i = 0; v->backend_series && i < FL_MAX(v->n_backends, (size_t)1); i++) {
    unsigned id = v->backend_series[i];
    if (id != FL_SERIES_NONE && registry_drop(bseries_tab, id)) free_bseries(src, id);
    v->backend_series[i] = FL_SERIES_NONE;
  }
}

void fl_metrics_unbind(const fl_metrics_src_t *src, fl_conf_t *c) {
  for (size_t i = 0; i < c->n_routes; i++)
    for (int v = 0; v < FL_NVARIANTS; v++) unbind_variant(src, &c->routes[i].variant[v]);
}

static const fl_slot_t *slot_back(unsigned age) {   /* 0: the newest */
  return &ring[(ring_next + FL_RING_SECONDS - 1 - age) % FL_RING_SECONDS];
}

/* What the slot holds of the series id has with generation gen: nothing when it holds another
 * series' numbers (one freed since, or none at all then), as the series started from zero. */
static fl_srec_t rec_of(const fl_slot_t *s, unsigned id, unsigned gen) {
  fl_srec_t none = {0};
  return id < s->n && s->rec[id].gen == gen ? s->rec[id] : none;
}

static json_t *quantiles_ms(const fl_hist_snap_t *h) {
  return json_pack("{s:f, s:f, s:f, s:I}", "p50", fl_hist_quantile(h, 0.50) / 1000.0, "p90",
                   fl_hist_quantile(h, 0.90) / 1000.0, "p99", fl_hist_quantile(h, 0.99) / 1000.0, "count",
                   (json_int_t)h->count);
}

/* Numbers over the last `seconds` (or as much of it as has been sampled). */
static json_t *window_json(unsigned id, unsigned gen, unsigned seconds) {
  if (ring_len < 2) return json_pack("{s:i, s:i}", "seconds", 0, "requests", 0);
  const fl_slot_t *newest = slot_back(0);
  unsigned age = 1;
  while (age + 1 < ring_len && newest->t_ms - slot_back(age)->t_ms < seconds * 1000ull) age++;
  const fl_slot_t *base = slot_back(age);
  static fl_hist_snap_t h[H_COUNT];
  memset(h, 0, sizeof h);
  for (unsigned a = 0; a < age; a++) {
    fl_srec_t r = rec_of(slot_back(a), id, gen);
    for (unsigned k = 0; k < H_COUNT; k++)
      for (uint32_t j = 0; j < r.nh[k]; j++) {
        h[k].bucket[r.h[k][j].index] += r.h[k][j].n;
        h[k].count += r.h[k][j].n;
      }
  }
  fl_srec_t now = rec_of(newest, id, gen), then = rec_of(base, id, gen);
  double secs = (double)(newest->t_ms - base->t_ms) / 1000.0;
  uint64_t req = now.requests - then.requests, err = now.errors - then.errors;
  json_t *w = json_pack("{s:f, s:I, s:f, s:I, s:f, s:I, s:I, s:f}", "seconds", secs, "requests", (json_int_t)req,
                        "rps", req / secs, "errors", (json_int_t)err, "error_rate", req ? (double)err / req : 0.0,
                        "prompt_tokens", (json_int_t)(now.prompt - then.prompt), "completion_tokens",
                        (json_int_t)(now.completion - then.completion), "tokens_per_s",
                        (now.completion - then.completion) / secs);
  json_object_set_new(w, "latency_ms", quantiles_ms(&h[H_DURATION]));
  json_object_set_new(w, "ttfb_ms", quantiles_ms(&h[H_TTFB]));
  json_object_set_new(w, "ttft_ms", quantiles_ms(&h[H_TTFT]));
  json_object_set_new(w, "itl_ms", quantiles_ms(&h[H_ITL]));
  return w;
}

static json_t *totals_json(const fl_vsum_t *s) {
  json_t *codes = json_object(), *finish = json_object();
  char key[8];
  for (unsigned c = 100; c < 600; c++)
    if (s->codes[c]) {
      snprintf(key, sizeof key, "%u", c);
      json_object_set_new(codes, key, json_integer((json_int_t)s->codes[c]));
    }
  for (unsigned f = FL_FINISH_STOP; f < FL_FINISH_COUNT; f++)
    json_object_set_new(finish, fl_finish_name((fl_finish_t)f), json_integer((json_int_t)s->finish[f]));
  return json_pack("{s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "requests",
                   (json_int_t)sum_codes(s, 100, 600), "errors", (json_int_t)sum_codes(s, 500, 600), "codes", codes,
                   "in_flight", (json_int_t)s->in_flight, "retries", (json_int_t)s->retries, "prompt_tokens",
                   (json_int_t)s->prompt, "completion_tokens", (json_int_t)s->completion, "streams",
                   (json_int_t)s->streams, "streams_cut", (json_int_t)s->streams_cut, "finish_reasons", finish);
}

static json_t *variant_json(const fl_metrics_src_t *src, const fl_variant_conf_t *v, fl_variant_id_t id) {
  sum_series(src, v->series, &tick_sum);
  json_t *windows = json_pack("{s:o, s:o}", "1m", window_json(v->series, v->series_gen, 60), "5m",
                              window_json(v->series, v->series_gen, 300));
  json_t *o = json_pack("{s:s, s:s, s:o, s:o}", "variant", fl_variant_name(id), "version", v->version, "totals",
                        totals_json(&tick_sum), "windows", windows);
  for (unsigned i = 0; o && i < n_series_parts; i++)
    json_object_set_new(o, series_parts[i].key, series_parts[i].fn(v->series, series_parts[i].ctx));
  return o;
}

json_t *fl_metrics_stats_json(const fl_metrics_src_t *src, const fl_conf_t *c) {
  json_t *routes = json_array();
  for (size_t i = 0; i < c->n_routes; i++) {
    const fl_route_t *r = &c->routes[i];
    json_t *variants = json_array();
    json_array_append_new(variants, variant_json(src, &r->variant[FL_STABLE], FL_STABLE));
    if (r->has_canary) json_array_append_new(variants, variant_json(src, &r->variant[FL_CANARY], FL_CANARY));
    json_t *o = json_pack("{s:s, s:f, s:o}", "route", r->name, "canary_weight", fl_live_weight(r) / 100.0,
                          "variants", variants);
    for (unsigned k = 0; o && k < n_route_parts; k++)
      json_object_set_new(o, route_parts[k].key, route_parts[k].fn(r->name, route_parts[k].ctx));
    json_array_append_new(routes, o);
  }
  return json_pack("{s:o}", "routes", routes);
}
