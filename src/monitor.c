/* monitor.c — the monitoring thread and what it keeps per series: data counters, running mean
 * and spread of every feature (Welford), and the values themselves in 10-second slices, each a
 * uniform sample of at most SLICE_CAP values with their times, so that drift can be computed
 * over any window inside data.window (the sliding one every data.refresh, a rollout's on demand).
 * Missing numbers (NaN, ±Inf, null) are counted, never put in a distribution. */
#include "monitor.h"
#include "jsonutil.h"
#include "baseline.h"
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SLICE_MS 10000u
#define SLICE_CAP 1024u
#define MAX_SLICES 360u                /* data.window up to an hour */
#define MAX_LABELS 64u                 /* distinct predicted classes; later ones count as "other" */
#define POLL_MS 50u
#define PSI_BINS 10u

typedef struct { uint32_t off_ms; float v; } tv_t;
typedef struct { uint64_t epoch; uint32_t seen, n; tv_t v[SLICE_CAP]; } slice_t;   /* epoch 0: empty */
typedef struct { uint64_t n; double mean, m2, min, max; } welford_t;

typedef struct {                       /* a route's predicted classes: its variants share the ids */
  char route[64];
  unsigned n;
  char name[MAX_LABELS][32];
} labels_t;

typedef struct mseries {
  labels_t *labels;                    /* its route's; NULL when out of memory (all "other") */
  fl_data_snap_t d;
  uint64_t kinds[FL_QK_COUNT];
  uint64_t classes[MAX_LABELS + 1];
  welford_t w[FL_F_COUNT];
  slice_t **ring[FL_F_COUNT];          /* n_slices slots each, allocated with a feature's first value;
                                          a slot's slice with the first value that falls in it */
  fl_drift_t drift[FL_F_COUNT];        /* the sliding window against stable (canary series only) */
  bool drift_set[FL_F_COUNT];
} mseries_t;

static struct {
  pthread_mutex_t lock;                /* guards everything below that readers see */
  mseries_t *series[FL_MAX_SERIES];
  labels_t *tables[FL_MAX_SERIES];     /* class tables by route, for the process's life (at most one a series) */
  unsigned n_tables;
  unsigned n_slices;
  uint64_t generation;                 /* counts reconfigurations: a drift refresh spanning one is dropped */
  atomic_uint refresh_ms;              /* data.refresh */
  const fl_conf_t *conf;               /* a reference: routes for the sliding drift */
  fl_baseline_t *baselines;            /* one per route of conf, by index */
  int series_route[FL_MAX_SERIES];     /* the route index of a live series, else -1 */
  uint32_t capture_ms;                 /* data.baseline_capture */
  fl_quality_conf_t qc;
  uint64_t rng;
  /* the thread */
  pthread_t thread;
  bool running;
  pthread_mutex_t stop_lock;
  pthread_cond_t stop_cond;
  bool stopping;
  fl_sample_ring_t **rings;
  unsigned n_rings;
} mon = {.lock = PTHREAD_MUTEX_INITIALIZER, .stop_lock = PTHREAD_MUTEX_INITIALIZER,
         .stop_cond = PTHREAD_COND_INITIALIZER, .rng = 0x9E3779B97F4A7C15ull, .n_slices = 30};

static atomic_uint rate_ppm = 1000000;
static atomic_uint cap_per_worker = UINT32_MAX;

#define AUTO_PER_SECOND 100u           /* data.sample: auto reads about this many a second */

/* ---- worker side ---- */

uint32_t fl_monitor_rate_ppm(void) { return atomic_load_explicit(&rate_ppm, memory_order_relaxed); }
uint32_t fl_monitor_cap_per_worker(void) { return atomic_load_explicit(&cap_per_worker, memory_order_relaxed); }

void fl_sample_free(fl_sample_t *s) {
  if (!s) return;
  fl_buf_free(&s->req);
  fl_buf_free(&s->resp);
  fl_sample_free(s->shadow);
  free(s);
}

bool fl_sample_push(fl_sample_ring_t *r, fl_sample_t *s) {
  unsigned head = atomic_load_explicit(&r->head, memory_order_relaxed);
  if (head - atomic_load_explicit(&r->tail, memory_order_acquire) >= FL_SAMPLE_RING) {
    atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
    fl_sample_free(s);
    return false;
  }
  r->slot[head & (FL_SAMPLE_RING - 1)] = s;
  atomic_store_explicit(&r->head, head + 1, memory_order_release);
  return true;
}

/* ---- per-series state (lock held) ---- */

/* xorshift64*: the multiplied output, as a slot is taken modulo the count seen (plain xorshift's
 * low bits are weak). */
static uint64_t next_rand(void) {
  mon.rng ^= mon.rng << 13;
  mon.rng ^= mon.rng >> 7;
  mon.rng ^= mon.rng << 17;
  return mon.rng * 0x2545F4914F6CDD1Dull;
}

/* The class table of a route, made on first use. */
static labels_t *route_labels(const char *route) {
  for (unsigned i = 0; i < mon.n_tables; i++)
    if (strcmp(mon.tables[i]->route, route) == 0) return mon.tables[i];
  labels_t *l = mon.n_tables < FL_MAX_SERIES ? calloc(1, sizeof *l) : NULL;
  if (!l) return NULL;
  snprintf(l->route, sizeof l->route, "%s", route);
  return mon.tables[mon.n_tables++] = l;
}

/* The series with id and generation gen, made on first use; NULL when the id has been freed
 * (or taken again) since gen: a straggler's numbers belong to no series now. */
static mseries_t *series_get(unsigned id, unsigned gen) {
  char route[64];
  if (id >= FL_MAX_SERIES || fl_metrics_series_gen(id) != gen) return NULL;
  if (mon.series[id]) return mon.series[id];
  if (!fl_metrics_series_route(id, gen, route, sizeof route)) return NULL;
  if ((mon.series[id] = calloc(1, sizeof *mon.series[id]))) mon.series[id]->labels = route_labels(route);
  return mon.series[id];
}

/* A feature's slices go (a version no longer served, a new window length). */
static void ring_free(mseries_t *m, unsigned f) {
  for (unsigned i = 0; m->ring[f] && i < mon.n_slices; i++) free(m->ring[f][i]);
  free(m->ring[f]);
  m->ring[f] = NULL;
  m->drift_set[f] = false;
}

static void series_free(unsigned id) {
  mseries_t *m = mon.series[id];
  for (unsigned f = 0; m && f < FL_F_COUNT; f++) ring_free(m, f);
  free(m);
  mon.series[id] = NULL;
}

static void welford_add(welford_t *w, double v) {
  w->n++;
  double delta = v - w->mean;
  w->mean += delta / (double)w->n;
  w->m2 += delta * (v - w->mean);
  if (w->n == 1 || v < w->min) w->min = v;
  if (w->n == 1 || v > w->max) w->max = v;
}

/* Only variants of the current config (live) keep slices: a straggler of a retired version does
 * not allocate them again. A slice (8 KiB) is allocated when a value first falls in its slot, so
 * a version with a few samples costs a few slices, not the whole window. */
static void slice_add(mseries_t *m, bool live, unsigned f, double v, uint64_t at_ms) {
  if (!m->ring[f] && (!live || !(m->ring[f] = calloc(mon.n_slices, sizeof *m->ring[f])))) return;
  uint64_t epoch = at_ms / SLICE_MS + 1;
  slice_t **where = &m->ring[f][epoch % mon.n_slices];
  if (!*where && (*where = malloc(sizeof **where))) (*where)->epoch = 0;
  slice_t *s = *where;
  if (!s || s->epoch > epoch) return;           /* older than the slot's slice: outside the window */
  if (s->epoch != epoch) {
    s->epoch = epoch;
    s->seen = s->n = 0;
  }
  tv_t tv = {(uint32_t)(at_ms % SLICE_MS), (float)v};
  uint64_t slot = ++s->seen <= SLICE_CAP ? s->n++ : next_rand() % s->seen;    /* algorithm R */
  if (slot < SLICE_CAP) s->v[slot] = tv;
}

typedef struct { mseries_t *m; bool live; uint64_t at_ms; fl_baseline_t *capture; } sink_ctx_t;

static void on_value(void *ctx, unsigned f, double v) {
  sink_ctx_t *x = ctx;
  if (f >= FL_F_COUNT || !fl_float_range(v)) return;
  welford_add(&x->m->w[f], v);
  slice_add(x->m, x->live, f, v, x->at_ms);
  if (x->capture) fl_baseline_add(x->capture, f, v);
}

/* The baseline a stable exchange feeds: its route's, while capturing (the first one starts it). */
static fl_baseline_t *capturing(unsigned series, uint64_t at_ms) {
  int r = series < FL_MAX_SERIES ? mon.series_route[series] : -1;
  bool stable = r >= 0 && mon.conf->routes[r].variant[FL_STABLE].series == series;
  fl_baseline_t *b = stable ? &mon.baselines[r] : NULL;
  if (b && b->state == FL_BASELINE_NONE && mon.capture_ms) {
    b->state = FL_BASELINE_CAPTURING;
    b->until_ms = at_ms + mon.capture_ms;
  }
  return b && b->state == FL_BASELINE_CAPTURING && at_ms <= b->until_ms ? b : NULL;
}

/* A class's id in a route's table; MAX_LABELS ("other") once it is full. */
static unsigned label_id(labels_t *l, const char *text, size_t len) {
  if (!l) return MAX_LABELS;
  if (len > sizeof l->name[0] - 1) {              /* cut, but never inside a UTF-8 character */
    len = sizeof l->name[0] - 1;
    while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80) len--;
  }
  for (unsigned i = 0; i < l->n; i++)
    if (strlen(l->name[i]) == len && memcmp(l->name[i], text, len) == 0) return i;
  if (l->n == MAX_LABELS) return MAX_LABELS;
  memcpy(l->name[l->n], text, len);
  l->name[l->n][len] = '\0';
  return l->n++;
}

static const char *label_name(const mseries_t *m, unsigned id) {
  return m->labels && id < m->labels->n ? m->labels->name[id] : "other";
}

static void on_label(void *ctx, const char *text, size_t len) {
  sink_ctx_t *x = ctx;
  unsigned id = label_id(x->m->labels, text, len);
  x->m->classes[id]++;
  on_value(ctx, FL_F_CLASS, id);
}

static void count(mseries_t *m, const fl_qobs_t *o) {
  fl_data_snap_t *d = &m->d;
  d->samples++;
  m->kinds[o->kind]++;
  d->unparsed += o->unparsed;
  d->answers += o->answer;
  d->empty += o->empty;
  d->truncated += o->answer && o->finish == FL_FINISH_LENGTH;
  d->refusals += o->refusal;
  d->json_asked += o->answer && o->json_asked;
  d->json_invalid += o->answer && o->json_invalid;
  d->malformed += o->malformed_request;
  d->values += o->values;
  d->nan += o->nan;
  d->inf += o->inf;
  d->nulls += o->nulls;
  d->input_values += o->input_values;
  d->input_missing += o->input_missing;
  d->shape_mismatch += o->shape_mismatch;
}

static void observe(fl_sample_t *s) {
  fl_qsample_t q = {.req = s->req.data, .req_len = s->req.len, .req_cut = s->req_cut, .resp = s->resp.data,
                    .resp_len = s->resp.len, .resp_cut = s->resp_cut, .stream = s->stream, .status = s->status};
  pthread_mutex_lock(&mon.lock);
  mseries_t *m = series_get(s->series, s->series_gen);
  if (m) {
    sink_ctx_t ctx = {m, mon.series_route[s->series] >= 0, s->at_ms, capturing(s->series, s->at_ms)};
    fl_qsink_t sink = {on_value, on_label, &ctx};
    fl_qobs_t o;
    fl_quality_observe(&mon.qc, &q, &sink, &o);
    count(m, &o);
  }
  pthread_mutex_unlock(&mon.lock);
}

/* ---- drift ----
 * The values are copied out under the lock and compared without it, so that neither the control
 * thread nor the samples wait while KS sorts tens of thousands of numbers. */

static const fl_drift_t NO_DRIFT = {.psi = NAN, .js = NAN, .ks = {NAN, NAN}, .chi2 = {NAN, NAN},
                                    .psi_test = {NAN, NAN}};

typedef struct {
  unsigned f;
  double *a, *b;                       /* malloc'd copies: the values compared, and the reference's */
  size_t n_a, n_b;
} pair_t;

/* Appends the kept values of a feature within [from, to] to out (NULL: only counts them). */
static size_t gather(const mseries_t *m, unsigned f, uint64_t from, uint64_t to, double *out) {
  size_t n = 0;
  for (unsigned i = 0; m && m->ring[f] && i < mon.n_slices; i++) {
    const slice_t *s = m->ring[f][i];
    uint64_t base = s ? (s->epoch - 1) * SLICE_MS : 0;
    if (!s || !s->epoch || base > to || base + SLICE_MS <= from) continue;
    for (uint32_t k = 0; k < s->n; k++)
      if (base + s->v[k].off_ms >= from && base + s->v[k].off_ms <= to) {
        if (out) out[n] = s->v[k].v;
        n++;
      }
  }
  return n;
}

static double *copy_window(const mseries_t *m, unsigned f, uint64_t from, uint64_t to, size_t *n) {
  *n = gather(m, f, from, to, NULL);
  double *v = malloc(sizeof *v * (*n ? *n : 1));
  if (!v) *n = 0;
  else gather(m, f, from, to, v);
  return v;
}

/* Lock held: copies a's values of f over [from, to], and b's (a series) or ref's (a baseline). */
static void pair_take(pair_t *p, unsigned f, const mseries_t *a, const mseries_t *b, const fl_reservoir_t *ref,
                      uint64_t from, uint64_t to) {
  *p = (pair_t){.f = f};
  p->a = copy_window(a, f, from, to, &p->n_a);
  if (b) {
    p->b = copy_window(b, f, from, to, &p->n_b);
  } else if ((p->b = malloc(sizeof *p->b * (ref->n ? ref->n : 1)))) {
    p->n_b = ref->n;
    memcpy(p->b, ref->values, sizeof *p->b * ref->n);
  }
}

static void tally(const double *v, size_t n, uint64_t *counts, size_t k) {
  memset(counts, 0, sizeof *counts * k);
  for (size_t i = 0; i < n; i++)
    if (v[i] >= 0 && v[i] < (double)k) counts[(size_t)v[i]]++;
}

/* The drift of feature f's values a against the reference b (inputs unchanged). */
static fl_drift_t compare(unsigned f, const double *a, size_t n_a, const double *b, size_t n_b) {
  fl_drift_t d = NO_DRIFT;
  d.n_a = n_a;
  d.n_b = n_b;
  if (d.n_a < FL_DRIFT_MIN || d.n_b < FL_DRIFT_MIN) return d;
  if (fl_feature_is_category(f)) {
    uint64_t ca[MAX_LABELS + 1], cb[MAX_LABELS + 1];
    size_t k = f == FL_F_FINISH ? FL_FINISH_COUNT : MAX_LABELS + 1;
    tally(a, d.n_a, ca, k);
    tally(b, d.n_b, cb, k);
    d.chi2 = fl_stats_chi_square(ca, cb, k);
    d.js = fl_stats_js_distance(ca, cb, k);
  } else {
    d.ks = fl_stats_ks(a, d.n_a, b, d.n_b);
    fl_psi_t psi = fl_stats_psi_test(b, d.n_b, a, d.n_a, PSI_BINS);
    d.psi = psi.psi;
    d.psi_test = psi.test;
    d.psi_bins = psi.bins;
  }
  return d;
}

/* No lock: the statistics of a pair, whose copies it frees. */
static fl_drift_t pair_compare(pair_t *p) {
  fl_drift_t d = compare(p->f, p->a, p->n_a, p->b, p->n_b);
  free(p->a);
  free(p->b);
  return d;
}

/* Appends n values to a malloc'd array of *len (which is freed and emptied when out of memory). */
static void append_values(double **v, size_t *len, const double *more, size_t n) {
  if (!n || !*v) return;
  double *grown = realloc(*v, sizeof *grown * (*len + n));
  if (!grown) {
    free(*v);
    *v = NULL;
    *len = 0;
    return;
  }
  memcpy(grown + *len, more, sizeof *grown * n);
  *v = grown;
  *len += n;
}

void fl_monitor_window_drift(unsigned series_a, unsigned series_b, uint64_t from_ms, uint64_t to_ms,
                             const fl_drift_more_t *more, fl_drift_t out[FL_F_COUNT], bool set[FL_F_COUNT]) {
  for (unsigned f = 0; f < FL_F_COUNT; f++) {
    pair_t p;
    out[f] = NO_DRIFT;
    pthread_mutex_lock(&mon.lock);
    const mseries_t *a = series_a < FL_MAX_SERIES ? mon.series[series_a] : NULL;
    const mseries_t *b = series_b < FL_MAX_SERIES ? mon.series[series_b] : NULL;
    bool there = more && (more[f].n_a || more[f].n_b);     /* another replica saw this feature */
    set[f] = !fl_feature_is_input(f) && ((a && b && a->ring[f] && b->ring[f]) || there);
    if (set[f]) {                                          /* a side this replica never saw: none of its own */
      p = (pair_t){.f = f};
      p.a = copy_window(a, f, from_ms, to_ms, &p.n_a);
      p.b = copy_window(b, f, from_ms, to_ms, &p.n_b);
    }
    pthread_mutex_unlock(&mon.lock);
    if (!set[f]) continue;
    if (more) {
      append_values(&p.a, &p.n_a, more[f].a, more[f].n_a);
      append_values(&p.b, &p.n_b, more[f].b, more[f].n_b);
    }
    out[f] = pair_compare(&p);
  }
}

size_t fl_monitor_values(unsigned series, unsigned f, uint64_t from_ms, double *values, uint64_t *at_ms, size_t cap) {
  if (f >= FL_F_COUNT || !cap) return 0;
  pthread_mutex_lock(&mon.lock);
  const mseries_t *m = series < FL_MAX_SERIES ? mon.series[series] : NULL;
  size_t total = gather(m, f, from_ms, UINT64_MAX, NULL), step = total > cap ? total / cap + (total % cap != 0) : 1, n = 0,
         k = 0;
  for (unsigned i = 0; m && m->ring[f] && i < mon.n_slices; i++) {
    const slice_t *sl = m->ring[f][i];
    uint64_t base = sl ? (sl->epoch - 1) * SLICE_MS : 0;
    if (!sl || !sl->epoch || base + SLICE_MS <= from_ms) continue;
    for (uint32_t j = 0; j < sl->n && n < cap; j++) {
      if (base + sl->v[j].off_ms < from_ms || k++ % step) continue;
      values[n] = sl->v[j].v;
      at_ms[n++] = base + sl->v[j].off_ms;
    }
  }
  pthread_mutex_unlock(&mon.lock);
  return n;
}

/* One comparison of the sliding window: a series' feature against stable's (ref_series) or
 * against its route's baseline (ref_series -1, route given). */
typedef struct { unsigned series, f; int ref_series; size_t route; fl_drift_t d; } job_t;

/* Lock held: ends the captures that are due, and lists the comparisons of the sliding window,
 * canary outputs against stable's and each variant's inputs against a ready baseline. The
 * caller frees the list. */
static job_t *plan_drift(uint64_t now, size_t *n_jobs) {
  size_t cap = 2 * FL_F_COUNT * (mon.conf ? mon.conf->n_routes : 0), n = 0;
  job_t *jobs = malloc(sizeof *jobs * (cap ? cap : 1));
  for (size_t i = 0; jobs && mon.conf && i < mon.conf->n_routes; i++) {
    const fl_route_t *r = &mon.conf->routes[i];
    fl_baseline_t *b = &mon.baselines[i];
    if (b->state == FL_BASELINE_CAPTURING && now > b->until_ms) {
      bool enough = false;                /* too few values (cut or non-JSON bodies): capture again */
      for (unsigned f = 0; f < FL_F_COUNT; f++) enough |= b->sample[f].n >= FL_DRIFT_MIN;
      if (enough) b->state = FL_BASELINE_READY;
      else fl_baseline_clear(b);
    }
    unsigned ss = r->variant[FL_STABLE].series, cs = r->variant[FL_CANARY].series;
    const mseries_t *s = mon.series[ss], *c = r->has_canary ? mon.series[cs] : NULL;
    for (unsigned f = 0; f < FL_F_COUNT; f++) {
      if (!fl_feature_is_input(f) && c && c->ring[f] && s && s->ring[f])
        jobs[n++] = (job_t){.series = cs, .f = f, .ref_series = (int)ss, .route = i};
      if (!fl_feature_is_input(f) || b->state != FL_BASELINE_READY || !b->sample[f].n) continue;
      if (s && s->ring[f]) jobs[n++] = (job_t){.series = ss, .f = f, .ref_series = -1, .route = i};
      if (c && c->ring[f]) jobs[n++] = (job_t){.series = cs, .f = f, .ref_series = -1, .route = i};
    }
  }
  *n_jobs = n;
  return jobs;
}

/* Over the last data.window. Monitor thread. */
static void refresh_drift(void) {
  size_t n = 0;
  pthread_mutex_lock(&mon.lock);
  uint64_t now = fl_now_ms(), from = now > mon.n_slices * SLICE_MS ? now - mon.n_slices * SLICE_MS : 0;
  uint64_t generation = mon.generation;
  job_t *jobs = plan_drift(now, &n);
  pthread_mutex_unlock(&mon.lock);
  if (!jobs) return;
  bool current = true;
  for (size_t j = 0; j < n && current; j++) {
    job_t *x = &jobs[j];
    pair_t p;
    pthread_mutex_lock(&mon.lock);
    if ((current = mon.generation == generation))
      pair_take(&p, x->f, mon.series[x->series], x->ref_series >= 0 ? mon.series[x->ref_series] : NULL,
                &mon.baselines[x->route].sample[x->f], from, now);
    pthread_mutex_unlock(&mon.lock);
    if (current) x->d = pair_compare(&p);
  }
  pthread_mutex_lock(&mon.lock);
  if (current && mon.generation == generation) {      /* publish all at once */
    for (unsigned i = 0; i < FL_MAX_SERIES; i++)      /* a version no longer served shows no drift */
      if (mon.series[i]) memset(mon.series[i]->drift_set, 0, sizeof mon.series[i]->drift_set);
    for (size_t j = 0; j < n; j++) {
      mon.series[jobs[j].series]->drift[jobs[j].f] = jobs[j].d;
      mon.series[jobs[j].series]->drift_set[jobs[j].f] = true;
    }
  }
  pthread_mutex_unlock(&mon.lock);
  free(jobs);
}

/* ---- the thread ---- */

static fl_monitor_pair_fn *pair_handler;     /* set before the thread starts */

void fl_monitor_on_pair(fl_monitor_pair_fn *fn) { pair_handler = fn; }

static void drain(void) {
  for (unsigned i = 0; i < mon.n_rings; i++) {
    fl_sample_ring_t *r = mon.rings[i];
    unsigned tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    unsigned head = atomic_load_explicit(&r->head, memory_order_acquire);
    for (; tail != head; tail++) {
      fl_sample_t *s = r->slot[tail & (FL_SAMPLE_RING - 1)];
      if (s->shadow && pair_handler) pair_handler(s);
      if (s->quality) observe(s);
      fl_sample_free(s);
      atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    }
  }
}

static bool wait_or_stop(unsigned ms) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_nsec += (long)ms * 1000000L;
  until.tv_sec += until.tv_nsec / 1000000000L;
  until.tv_nsec %= 1000000000L;
  pthread_mutex_lock(&mon.stop_lock);
  if (!mon.stopping) pthread_cond_timedwait(&mon.stop_cond, &mon.stop_lock, &until);
  bool stop = mon.stopping;
  pthread_mutex_unlock(&mon.stop_lock);
  return stop;
}

static void *monitor_main(void *arg) {
  uint64_t next_drift = fl_now_ms() + atomic_load(&mon.refresh_ms);
  do {
    drain();
    if (fl_now_ms() >= next_drift) {
      refresh_drift();
      next_drift = fl_now_ms() + atomic_load(&mon.refresh_ms);
    }
  } while (!wait_or_stop(POLL_MS));
  drain();
  return NULL;
}

/* ---- control thread ---- */

static void free_rings(void) {
  for (unsigned i = 0; i < FL_MAX_SERIES; i++)
    for (unsigned f = 0; mon.series[i] && f < FL_F_COUNT; f++) ring_free(mon.series[i], f);
}

/* The routes of c get their baselines from the old config by name (a new route starts afresh),
 * and stable series are mapped to their route. Lock held. */
static void carry_baselines(const fl_conf_t *c, fl_baseline_t *next) {
  for (size_t i = 0; i < c->n_routes; i++) {
    snprintf(next[i].route, sizeof next[i].route, "%s", c->routes[i].name);
    for (size_t j = 0; mon.conf && j < mon.conf->n_routes; j++)
      if (strcmp(mon.baselines[j].route, next[i].route) == 0) {
        next[i] = mon.baselines[j];
        mon.baselines[j] = (fl_baseline_t){0};
      }
  }
  for (size_t j = 0; mon.conf && j < mon.conf->n_routes; j++) fl_baseline_clear(&mon.baselines[j]);
  free(mon.baselines);
  mon.baselines = next;
}

/* Maps the series of c's variants to their routes; the others' slices are freed (a version that
 * comes back starts afresh). Lock held. */
static void map_series(const fl_conf_t *c) {
  for (unsigned s = 0; s < FL_MAX_SERIES; s++) mon.series_route[s] = -1;
  for (size_t i = 0; i < c->n_routes; i++) {
    mon.series_route[c->routes[i].variant[FL_STABLE].series] = (int)i;
    if (c->routes[i].has_canary) mon.series_route[c->routes[i].variant[FL_CANARY].series] = (int)i;
  }
  for (unsigned s = 0; s < FL_MAX_SERIES; s++) {
    mseries_t *m = mon.series[s];
    if (!m || mon.series_route[s] >= 0) continue;
    for (unsigned f = 0; f < FL_F_COUNT; f++) ring_free(m, f);
  }
}

int fl_monitor_reconfigure(const fl_conf_t *c) {
  fl_quality_conf_t qc;
  char err[256];
  int rc = fl_quality_conf_init(&qc, c->data.n_refusals ? c->data.refusals : NULL, c->data.n_refusals, err, sizeof err);
  if (rc) return rc;
  unsigned slices = FL_MIN(FL_MAX(c->data.window_ms / SLICE_MS, 1u), MAX_SLICES);
  pthread_mutex_lock(&mon.lock);
  fl_quality_conf_free(&mon.qc);
  mon.qc = qc;
  if (slices != mon.n_slices) {        /* the slices are laid out by window: start them afresh */
    free_rings();
    mon.n_slices = slices;
  }
  fl_baseline_t *baselines = calloc(c->n_routes ? c->n_routes : 1, sizeof *baselines);
  if (!baselines) {
    pthread_mutex_unlock(&mon.lock);
    return FL_ENOMEM;
  }
  carry_baselines(c, baselines);
  map_series(c);
  mon.generation++;
  const fl_conf_t *old = mon.conf;
  fl_conf_ref((fl_conf_t *)c);
  mon.conf = c;
  mon.capture_ms = c->data.baseline_capture_ms;
  atomic_store(&mon.refresh_ms, c->data.refresh_ms);
  pthread_mutex_unlock(&mon.lock);
  fl_conf_unref((fl_conf_t *)old);
  return 0;
}

int fl_monitor_start(const fl_conf_t *c, fl_sample_ring_t **rings, unsigned n, char *err, size_t err_cap) {
  int rc = fl_monitor_reconfigure(c);
  if (rc) {
    snprintf(err, err_cap, "data monitor: out of memory");
    return rc;
  }
  mon.rings = rings;
  mon.n_rings = n;
  fl_monitor_tick(c, 0);
  mon.stopping = false;
  if (pthread_create(&mon.thread, NULL, monitor_main, NULL) != 0) {
    snprintf(err, err_cap, "data monitor: cannot start its thread");
    return FL_ENOMEM;
  }
  mon.running = true;
  return 0;
}

void fl_monitor_tick(const fl_conf_t *c, uint64_t requests_total) {
  static uint64_t last_total;
  static bool have_last;
  uint64_t per_second = have_last && requests_total >= last_total ? requests_total - last_total : 0;
  last_total = requests_total;
  have_last = true;
  uint32_t ppm = 1000000;
  if (c->data.sample_ppm >= 0) ppm = (uint32_t)c->data.sample_ppm;
  else if (per_second > AUTO_PER_SECOND) ppm = (uint32_t)(AUTO_PER_SECOND * 1000000ull / per_second);
  atomic_store_explicit(&rate_ppm, ppm, memory_order_relaxed);
  /* auto also caps each worker's second, so a burst before this tick cannot flood the monitor */
  uint32_t cap = c->data.sample_ppm >= 0 ? UINT32_MAX : (2 * AUTO_PER_SECOND + mon.n_rings - 1) / FL_MAX(mon.n_rings, 1);
  atomic_store_explicit(&cap_per_worker, cap, memory_order_relaxed);
}

void fl_monitor_stop(void) {
  if (mon.running) {
    pthread_mutex_lock(&mon.stop_lock);
    mon.stopping = true;
    pthread_cond_signal(&mon.stop_cond);
    pthread_mutex_unlock(&mon.stop_lock);
    pthread_join(mon.thread, NULL);
    mon.running = false;
  }
  pthread_mutex_lock(&mon.lock);
  free_rings();
  for (unsigned i = 0; i < FL_MAX_SERIES; i++) series_free(i);
  for (unsigned i = 0; i < mon.n_tables; i++) free(mon.tables[i]);
  mon.n_tables = 0;
  fl_quality_conf_free(&mon.qc);
  for (size_t j = 0; mon.conf && j < mon.conf->n_routes; j++) fl_baseline_clear(&mon.baselines[j]);
  free(mon.baselines);
  mon.baselines = NULL;
  fl_conf_unref((fl_conf_t *)mon.conf);
  mon.conf = NULL;
  pthread_mutex_unlock(&mon.lock);
}

uint64_t fl_monitor_dropped(void) {
  uint64_t n = 0;
  for (unsigned i = 0; i < mon.n_rings; i++) n += atomic_load(&mon.rings[i]->dropped);
  return n;
}

void fl_monitor_feedback(unsigned series, double score) {
  pthread_mutex_lock(&mon.lock);
  mseries_t *m = series_get(series, fl_metrics_series_gen(series));
  if (m) {
    m->d.feedback++;
    m->d.feedback_sum += score;
    m->d.feedback_sumsq += score * score;
  }
  pthread_mutex_unlock(&mon.lock);
}

/* A drift refresh under way that planned this series drops its results (the generation). */
void fl_monitor_forget(unsigned series) {
  if (series >= FL_MAX_SERIES) return;
  pthread_mutex_lock(&mon.lock);
  series_free(series);
  mon.generation++;
  pthread_mutex_unlock(&mon.lock);
}

void fl_monitor_data(unsigned series, fl_data_snap_t *out) {
  pthread_mutex_lock(&mon.lock);
  const mseries_t *m = series < FL_MAX_SERIES ? mon.series[series] : NULL;
  if (m) *out = m->d;
  else memset(out, 0, sizeof *out);
  pthread_mutex_unlock(&mon.lock);
}

/* ---- baselines ---- */

static fl_baseline_t *baseline_named(const char *route) {
  for (size_t i = 0; mon.conf && i < mon.conf->n_routes; i++)
    if (strcmp(mon.baselines[i].route, route) == 0) return &mon.baselines[i];
  return NULL;
}

int fl_monitor_set_baseline(const char *route, const json_t *features, bool saved, char *err, size_t err_cap) {
  pthread_mutex_lock(&mon.lock);
  fl_baseline_t *b = baseline_named(route);
  int rc = b ? fl_baseline_load(b, features, err, err_cap) : FL_ENOENT;
  if (rc == 0) b->saved = saved;
  else if (rc == FL_ENOENT) snprintf(err, err_cap, "no route \"%s\"", route);
  pthread_mutex_unlock(&mon.lock);
  return rc;
}

void fl_monitor_save_baselines(void (*save)(const char *route, json_t *features, void *ctx), void *ctx) {
  for (size_t i = 0;; i++) {
    pthread_mutex_lock(&mon.lock);
    if (!mon.conf || i >= mon.conf->n_routes) {
      pthread_mutex_unlock(&mon.lock);
      return;
    }
    fl_baseline_t *b = &mon.baselines[i];
    json_t *features = b->state == FL_BASELINE_READY && !b->saved ? fl_baseline_json(b) : NULL;
    char route[64];
    memcpy(route, b->route, sizeof route);
    b->saved = b->saved || features;
    pthread_mutex_unlock(&mon.lock);
    if (features) save(route, features, ctx);         /* the store is written without the lock */
    json_decref(features);
  }
}

json_t *fl_monitor_baseline_json(const char *route) {
  pthread_mutex_lock(&mon.lock);
  const fl_baseline_t *b = baseline_named(route);
  json_t *values = json_object();
  char buf[32];
  for (unsigned f = 0; b && f < FL_F_COUNT; f++)
    if (b->sample[f].n) json_object_set_new(values, fl_feature_name(f, buf, sizeof buf), json_integer((json_int_t)b->sample[f].n));
  json_t *o = json_pack("{s:s, s:b, s:o}", "state", fl_baseline_state_name(b ? b->state : FL_BASELINE_NONE), "saved",
                        b && b->saved, "values", values);
  pthread_mutex_unlock(&mon.lock);
  return o;
}

/* ---- exposition ---- */

static const struct { const char *name, *help; size_t off; } COUNTERS[] = {
    {"fledge_data_samples_total", "Exchanges read by the data monitor.", offsetof(fl_data_snap_t, samples)},
    {"fledge_data_unparsed_total", "Sampled exchanges whose bodies were not JSON or were cut by data.max_body.",
     offsetof(fl_data_snap_t, unparsed)},
    {"fledge_data_answers_total", "LLM answers read.", offsetof(fl_data_snap_t, answers)},
    {"fledge_data_empty_answers_total", "LLM answers without text or tool call.", offsetof(fl_data_snap_t, empty)},
    {"fledge_data_truncated_answers_total", "LLM answers cut off (finish_reason length).",
     offsetof(fl_data_snap_t, truncated)},
    {"fledge_data_refusals_total", "LLM answers matching a refusal pattern.", offsetof(fl_data_snap_t, refusals)},
    {"fledge_data_json_requested_total", "LLM answers to requests asking for a JSON response_format.",
     offsetof(fl_data_snap_t, json_asked)},
    {"fledge_data_json_invalid_total", "Of those, answers whose text is not a JSON object.",
     offsetof(fl_data_snap_t, json_invalid)},
    {"fledge_data_malformed_requests_total", "Requests the backend answered 400.", offsetof(fl_data_snap_t, malformed)},
    {"fledge_data_values_total", "Numbers in answers: predictions, outputs, embeddings.", offsetof(fl_data_snap_t, values)},
    {"fledge_data_nan_total", "NaN among those numbers.", offsetof(fl_data_snap_t, nan)},
    {"fledge_data_inf_total", "+Inf or -Inf among those numbers.", offsetof(fl_data_snap_t, inf)},
    {"fledge_data_null_total", "null among those numbers.", offsetof(fl_data_snap_t, nulls)},
    {"fledge_data_input_values_total", "Numbers in requests.", offsetof(fl_data_snap_t, input_values)},
    {"fledge_data_input_missing_total", "NaN, Inf or null among the numbers in requests.",
     offsetof(fl_data_snap_t, input_missing)},
    {"fledge_data_shape_mismatches_total", "Answers whose count or shape does not fit the request.",
     offsetof(fl_data_snap_t, shape_mismatch)},
    {"fledge_feedback_total", "User feedback received (POST /api/v1/feedback).", offsetof(fl_data_snap_t, feedback)},
};

typedef struct { unsigned n; char (*lbl)[256]; } expo_t;

static void expo_counters(fl_buf_t *b, const expo_t *e) {
  for (size_t k = 0; k < FL_ARRAY_LEN(COUNTERS); k++) {
    fl_metrics_family(b, COUNTERS[k].name, "counter", COUNTERS[k].help);
    for (unsigned i = 0; i < e->n; i++)
      if (mon.series[i])
        fl_buf_printf(b, "%s{%s} %llu\n", COUNTERS[k].name, e->lbl[i],
                      (unsigned long long)*(const uint64_t *)((const char *)&mon.series[i]->d + COUNTERS[k].off));
  }
  fl_metrics_family(b, "fledge_feedback_score_mean", "gauge", "Mean feedback score (-1..1) since start.");
  for (unsigned i = 0; i < e->n; i++)
    if (mon.series[i] && mon.series[i]->d.feedback)
      fl_buf_printf(b, "fledge_feedback_score_mean{%s} %.17g\n", e->lbl[i],
                    mon.series[i]->d.feedback_sum / (double)mon.series[i]->d.feedback);
}

static void expo_features(fl_buf_t *b, const expo_t *e) {
  static const char *const stat[] = {"mean", "stddev", "min", "max"};
  char fbuf[32];
  for (size_t k = 0; k < FL_ARRAY_LEN(stat); k++) {
    char name[64];
    snprintf(name, sizeof name, "fledge_data_feature_%s", stat[k]);
    fl_metrics_family(b, name, "gauge", "Running statistic of a feature's values since start (Welford).");
    for (unsigned i = 0; i < e->n; i++)
      for (unsigned f = 0; mon.series[i] && f < FL_F_COUNT; f++) {
        const welford_t *w = &mon.series[i]->w[f];
        if (!w->n || fl_feature_is_category(f)) continue;
        double v = k == 0 ? w->mean : k == 1 ? (w->n > 1 ? sqrt(w->m2 / (double)(w->n - 1)) : 0) : k == 2 ? w->min : w->max;
        fl_buf_printf(b, "%s{%s,feature=\"%s\"} %.17g\n", name, e->lbl[i], fl_feature_name(f, fbuf, sizeof fbuf), v);
      }
  }
  fl_metrics_family(b, "fledge_data_class_total", "counter", "Predicted classes (the 65th and later distinct ones as \"other\").");
  for (unsigned i = 0; i < e->n; i++)
    for (unsigned c = 0; mon.series[i] && c <= MAX_LABELS; c++) {
      uint64_t n = mon.series[i]->classes[c];
      char label[80];
      fl_metrics_escape(label, sizeof label, label_name(mon.series[i], c));
      if (n) fl_buf_printf(b, "fledge_data_class_total{%s,class=\"%s\"} %llu\n", e->lbl[i], label, (unsigned long long)n);
    }
}

/* How many values each side of every drift had: a PSI of 0.3 over 20 values is noise, over
 * 2,000 it is not. The compared side is the series' own variant, the other its reference. */
static void expo_drift_values(fl_buf_t *b, const expo_t *e) {
  char fbuf[32];
  fl_metrics_family(b, "fledge_data_drift_values", "gauge", "Values compared by the drift over data.window, per side "
                    "(the series' own variant, and stable or baseline as the reference).");
  for (unsigned i = 0; i < e->n; i++)
    for (unsigned f = 0; mon.series[i] && f < FL_F_COUNT; f++) {
      if (!mon.series[i]->drift_set[f]) continue;
      const fl_drift_t *d = &mon.series[i]->drift[f];
      const char *ref = fl_feature_is_input(f) ? "baseline" : "stable";
      const char *own = strstr(e->lbl[i], "variant=\"canary\"") ? "canary" : "stable";
      /* a fixed feature's name is returned, not written into fbuf */
      const char *name = fl_feature_name(f, fbuf, sizeof fbuf);
      fl_buf_printf(b, "fledge_data_drift_values{%s,feature=\"%s\",reference=\"%s\",side=\"%s\"} %zu\n", e->lbl[i],
                    name, ref, own, d->n_a);
      fl_buf_printf(b, "fledge_data_drift_values{%s,feature=\"%s\",reference=\"%s\",side=\"%s\"} %zu\n", e->lbl[i],
                    name, ref, ref, d->n_b);
    }
}

static void expo_drift(fl_buf_t *b, const expo_t *e) {
  static const struct { const char *name, *help; size_t off; } D[] = {
      {"fledge_data_drift_psi", "Population stability index over data.window: outputs against stable, inputs "
       "against the baseline.", offsetof(fl_drift_t, psi)},
      {"fledge_data_drift_psi_p_value", "Chi-square homogeneity p-value on the PSI's own bins.",
       offsetof(fl_drift_t, psi_test.p_value)},
      {"fledge_data_drift_ks_statistic", "Two-sample Kolmogorov-Smirnov D over data.window, against the same reference.",
       offsetof(fl_drift_t, ks.statistic)},
      {"fledge_data_drift_ks_p_value", "Its p-value.", offsetof(fl_drift_t, ks.p_value)},
      {"fledge_data_drift_js", "Jensen-Shannon distance of a category against stable over data.window.",
       offsetof(fl_drift_t, js)},
      {"fledge_data_drift_chi2_p_value", "Chi-square homogeneity p-value of a category against stable.",
       offsetof(fl_drift_t, chi2.p_value)},
  };
  char fbuf[32];
  for (size_t k = 0; k < FL_ARRAY_LEN(D); k++) {
    fl_metrics_family(b, D[k].name, "gauge", D[k].help);
    for (unsigned i = 0; i < e->n; i++)
      for (unsigned f = 0; mon.series[i] && f < FL_F_COUNT; f++) {
        if (!mon.series[i]->drift_set[f]) continue;
        double v = *(const double *)((const char *)&mon.series[i]->drift[f] + D[k].off);
        if (!isnan(v))
          fl_buf_printf(b, "%s{%s,feature=\"%s\",reference=\"%s\"} %.17g\n", D[k].name, e->lbl[i],
                        fl_feature_name(f, fbuf, sizeof fbuf), fl_feature_is_input(f) ? "baseline" : "stable", v);
      }
  }
  expo_drift_values(b, e);
}

void fl_monitor_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx) {
  expo_t e = {.n = FL_MIN(fl_metrics_series_count(), FL_MAX_SERIES)};
  e.lbl = malloc(sizeof *e.lbl * (e.n ? e.n : 1));
  if (!e.lbl) return;
  for (unsigned i = 0; i < e.n; i++) fl_metrics_series_labels(i, e.lbl[i], sizeof e.lbl[i]);
  fl_metrics_family(b, "fledge_data_samples_dropped_total", "counter", "Samples dropped because the monitor's queue was full.");
  fl_buf_printf(b, "fledge_data_samples_dropped_total %llu\n", (unsigned long long)fl_monitor_dropped());
  fl_metrics_family(b, "fledge_data_sample_ratio", "gauge", "Share of exchanges the data monitor reads now.");
  fl_buf_printf(b, "fledge_data_sample_ratio %g\n", fl_monitor_rate_ppm() / 1e6);
  pthread_mutex_lock(&mon.lock);
  expo_counters(b, &e);
  expo_features(b, &e);
  expo_drift(b, &e);
  pthread_mutex_unlock(&mon.lock);
  free(e.lbl);
}

/* ---- /api/v1/stats ---- */

static json_t *features_json(const mseries_t *m) {
  json_t *o = json_object();
  char fbuf[32];
  for (unsigned f = 0; f < FL_F_COUNT; f++) {
    const welford_t *w = &m->w[f];
    if (!w->n || fl_feature_is_category(f)) continue;
    double sd = w->n > 1 ? sqrt(w->m2 / (double)(w->n - 1)) : 0;
    json_object_set_new(o, fl_feature_name(f, fbuf, sizeof fbuf),
                        json_pack("{s:I, s:o, s:o, s:o, s:o}", "count", (json_int_t)w->n, "mean", fl_json_num(w->mean),
                                  "sd", fl_json_num(sd), "min", fl_json_num(w->min), "max", fl_json_num(w->max)));
  }
  return o;
}

static json_t *drift_entry(unsigned f, const fl_drift_t *d) {
  json_t *x = json_pack("{s:s, s:I, s:I}", "reference", fl_feature_is_input(f) ? "baseline" : "stable", "n",
                        (json_int_t)d->n_a, "n_reference", (json_int_t)d->n_b);
  if (fl_feature_is_category(f)) {
    json_object_set_new(x, "js", fl_json_num(d->js));
    json_object_set_new(x, "chi2", fl_json_num(d->chi2.statistic));
    json_object_set_new(x, "chi2_p_value", fl_json_num(d->chi2.p_value));
  } else {
    json_object_set_new(x, "psi", fl_json_num(d->psi));
    json_object_set_new(x, "psi_bins", json_integer((json_int_t)d->psi_bins));
    json_object_set_new(x, "psi_noise", fl_json_num(d->psi_bins ? fl_stats_psi_noise(d->psi_bins, d->n_a, d->n_b) : NAN));
    json_object_set_new(x, "psi_chi2", fl_json_num(d->psi_test.statistic));
    json_object_set_new(x, "psi_p_value", fl_json_num(d->psi_test.p_value));
    json_object_set_new(x, "ks_statistic", fl_json_num(d->ks.statistic));
    json_object_set_new(x, "ks_p_value", fl_json_num(d->ks.p_value));
  }
  return x;
}

json_t *fl_monitor_drift_json(const fl_drift_t drift[FL_F_COUNT], const bool set[FL_F_COUNT]) {
  json_t *o = json_object();
  char fbuf[32];
  for (unsigned f = 0; f < FL_F_COUNT; f++)
    if (set[f]) json_object_set_new(o, fl_feature_name(f, fbuf, sizeof fbuf), drift_entry(f, &drift[f]));
  return o;
}

static json_t *counts_json(const mseries_t *m) {
  json_t *counts = json_object(), *rates = json_object(), *kinds = json_object(), *classes = json_object();
  for (size_t k = 0; k < FL_ARRAY_LEN(COUNTERS); k++) {
    const char *name = COUNTERS[k].name + (strncmp(COUNTERS[k].name, "fledge_data_", 12) == 0 ? 12 : 7);
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(strlen(name) - 6), name);       /* without _total */
    json_object_set_new(counts, key, json_integer((json_int_t)*(const uint64_t *)((const char *)&m->d + COUNTERS[k].off)));
  }
  for (unsigned r = 0; r < fl_data_rate_count(); r++) {
    uint64_t n, d;
    fl_data_rate(&m->d, (int)r, &n, &d);
    json_object_set_new(rates, fl_data_rate_name((int)r), d ? json_real((double)n / (double)d) : json_null());
  }
  for (unsigned k = 0; k < FL_QK_COUNT; k++)
    if (m->kinds[k]) json_object_set_new(kinds, fl_qkind_name((fl_qkind_t)k), json_integer((json_int_t)m->kinds[k]));
  for (unsigned c = 0; c <= MAX_LABELS; c++)
    if (m->classes[c]) json_object_set_new(classes, label_name(m, c), json_integer((json_int_t)m->classes[c]));
  return json_pack("{s:o, s:o, s:o, s:o}", "counts", counts, "rates", rates, "kinds", kinds, "classes", classes);
}

json_t *fl_monitor_series_json(unsigned series) {
  pthread_mutex_lock(&mon.lock);
  static const mseries_t none;
  const mseries_t *m = series < FL_MAX_SERIES && mon.series[series] ? mon.series[series] : &none;
  json_t *o = counts_json(m);
  json_object_set_new(o, "features", features_json(m));
  json_object_set_new(o, "drift", fl_monitor_drift_json(m->drift, m->drift_set));
  json_object_set_new(o, "feedback", json_pack("{s:I, s:o}", "count", (json_int_t)m->d.feedback, "mean_score",
                                               m->d.feedback ? json_real(m->d.feedback_sum / (double)m->d.feedback) : json_null()));
  json_object_set_new(o, "missing_values", json_string("NaN, Inf and null are counted (nan, inf, null, input_missing) "
                                                       "and left out of every distribution"));
  pthread_mutex_unlock(&mon.lock);
  return o;
}
