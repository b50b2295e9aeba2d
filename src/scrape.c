/* scrape.c — the scraper thread and what it keeps: per target the last scrape's chosen samples,
 * ready for exposition, swapped in under a lock the control thread shares. */
#include "scrape.h"
#include "fetch.h"
#include "metrics.h"
#include "promtext.h"
#include "router.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static char *const DEFAULT_FAMILIES[] = {
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
    "vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds", "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total", "llamacpp:*", "nv_inference_request_success", "nv_inference_request_failure",
    "nv_inference_queue_duration_us", "nv_gpu_utilization", "nv_gpu_memory_used_bytes",
};

#define MAX_SAMPLES 4096               /* kept per target and scrape; the rest are counted as dropped */

typedef struct {
  char name[128];
  char labels[1024];                   /* extra labels as exported: a="x",b="y" (escaped) */
  double value;
} sample_t;

typedef struct {
  char route[64], url[256], backend[300];   /* backend: the URL's HOST:PORT */
  int variant;
  bool up;
  double seconds;                      /* the last scrape's duration */
  int bad_lines;
  size_t dropped;                      /* wanted samples the last scrape could not keep */
  char error[160];
  sample_t *samples;
  size_t n;
} target_t;

static struct {
  pthread_mutex_t lock;                /* targets, families, settings */
  target_t *targets;
  size_t n_targets;
  uint64_t generation;                 /* bumped by each configure */
  char *const *families;               /* in conf, or the built-in list */
  size_t n_families;
  fl_conf_t *conf;                     /* a reference, so that families stay */
  uint32_t interval_ms, timeout_ms;
  pthread_t thread;
  bool running, stopping;
  pthread_cond_t wake;
  fl_fetcher_t *fetcher;               /* the scraper thread's */
} sc = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

bool fl_scrape_wanted(const char *name, char *const *families, size_t n) {
  static const char *const SUFFIX[] = {"_bucket", "_sum", "_count"};
  size_t len = strlen(name);
  for (size_t i = 0; i < n; i++) {
    const char *f = families[i];
    size_t fl = strlen(f);
    if (fl && f[fl - 1] == '*') {
      if (strncmp(name, f, fl - 1) == 0) return true;
      continue;
    }
    if (strcmp(name, f) == 0) return true;
    for (size_t k = 0; k < FL_ARRAY_LEN(SUFFIX); k++)
      if (len == fl + strlen(SUFFIX[k]) && strncmp(name, f, fl) == 0 && strcmp(name + fl, SUFFIX[k]) == 0) return true;
  }
  return false;
}

/* ---- one scrape ---- */

typedef struct {
  sample_t *samples;
  size_t n, cap, dropped;
  char *const *families;
  size_t n_families;
} collect_t;

static void on_sample(void *ctx, const char *name, const fl_prom_label_t *labels, size_t n_labels, double value) {
  collect_t *c = ctx;
  if (!fl_scrape_wanted(name, c->families, c->n_families)) return;
  c->dropped++;                                  /* until it is kept whole */
  if (c->n == MAX_SAMPLES) return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    sample_t *more = realloc(c->samples, cap * sizeof *more);
    if (!more) return;
    c->samples = more, c->cap = cap;
  }
  sample_t *s = &c->samples[c->n++];
  snprintf(s->name, sizeof s->name, "%s", name);       /* the parser's names fit */
  s->value = value;
  size_t off = 0;
  s->labels[0] = '\0';
  for (size_t i = 0; i < n_labels && off < sizeof s->labels; i++) {
    char v[600];
    bool ours = strcmp(labels[i].name, "route") == 0 || strcmp(labels[i].name, "variant") == 0 ||
                strcmp(labels[i].name, "backend") == 0;
    fl_metrics_escape(v, sizeof v, labels[i].value);
    off += (size_t)snprintf(s->labels + off, sizeof s->labels - off, ",%s%s=\"%s\"", ours ? "exported_" : "",
                            labels[i].name, v);
  }
  if (off >= sizeof s->labels) c->n--;           /* labels too long to keep whole */
  else c->dropped--;
}

static double now_s(void) { return fl_now_ns() / 1e9; }

/* Scrapes target i of the current generation without the lock; keeps the result if still current. */
static void scrape_one(size_t i) {
  pthread_mutex_lock(&sc.lock);
  if (i >= sc.n_targets) {
    pthread_mutex_unlock(&sc.lock);
    return;
  }
  target_t t = sc.targets[i];
  uint64_t generation = sc.generation;
  collect_t c = {.families = sc.families, .n_families = sc.n_families};
  fl_conf_t *conf = sc.conf;                 /* the families live in it (or are built in) */
  if (conf) fl_conf_ref(conf);
  uint32_t timeout = sc.timeout_ms;
  pthread_mutex_unlock(&sc.lock);

  double t0 = now_s();
  int status = 0;
  char *body = NULL, err[160] = "";
  int rc = sc.fetcher ? fl_fetch(sc.fetcher, t.url, "GET", NULL, timeout, &status, &body, err, sizeof err) : FL_ENOMEM;
  if (!sc.fetcher) snprintf(err, sizeof err, "the scraper could not start libcurl");
  int bad = 0;
  if (rc == 0 && status == 200) bad = fl_prom_parse(body, strlen(body), on_sample, &c);
  else if (rc == 0) snprintf(err, sizeof err, "HTTP status %d", status);
  free(body);
  fl_conf_unref(conf);

  pthread_mutex_lock(&sc.lock);
  if (generation == sc.generation && i < sc.n_targets) {
    target_t *live = &sc.targets[i];
    free(live->samples);
    live->samples = c.samples, live->n = c.n;
    live->up = rc == 0 && status == 200;
    live->seconds = now_s() - t0;
    live->bad_lines = bad;
    live->dropped = c.dropped;
    snprintf(live->error, sizeof live->error, "%s", live->up ? "" : err);
    c.samples = NULL;
  }
  pthread_mutex_unlock(&sc.lock);
  free(c.samples);
}

static bool stopping(size_t *n_targets) {
  pthread_mutex_lock(&sc.lock);
  bool stop = sc.stopping;
  if (n_targets) *n_targets = sc.n_targets;
  pthread_mutex_unlock(&sc.lock);
  return stop;
}

static void *scrape_main(void *arg) {
  sc.fetcher = fl_fetcher_new();       /* NULL: every scrape fails, and says why */
  for (;;) {
    size_t n;
    if (stopping(&n)) break;
    for (size_t i = 0; i < n && !stopping(NULL); i++) scrape_one(i);   /* a stop waits for one scrape at most */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    pthread_mutex_lock(&sc.lock);
    until.tv_sec += sc.interval_ms / 1000;
    until.tv_nsec += (long)(sc.interval_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    if (!sc.stopping) pthread_cond_timedwait(&sc.wake, &sc.lock, &until);
    pthread_mutex_unlock(&sc.lock);
  }
  fl_fetcher_free(sc.fetcher);
  sc.fetcher = NULL;
  return NULL;
}

/* ---- control thread ---- */

static void free_targets(target_t *t, size_t n) {
  for (size_t i = 0; i < n; i++) free(t[i].samples);
  free(t);
}

static size_t count_targets(const fl_conf_t *c) {
  size_t n = 0;
  for (size_t r = 0; r < c->n_routes; r++)
    for (int v = 0; v < FL_NVARIANTS; v++) n += c->routes[r].variant[v].n_metrics_urls;
  return n;
}

int fl_scrape_configure(const fl_conf_t *c) {
  size_t n = count_targets(c), k = 0;
  target_t *targets = calloc(n ? n : 1, sizeof *targets);
  if (!targets) return FL_ENOMEM;
  for (size_t r = 0; r < c->n_routes; r++)
    for (int v = 0; v < (c->routes[r].has_canary ? FL_NVARIANTS : 1); v++)
      for (size_t u = 0; u < c->routes[r].variant[v].n_metrics_urls; u++) {
        target_t *t = &targets[k++];
        snprintf(t->route, sizeof t->route, "%s", c->routes[r].name);
        snprintf(t->url, sizeof t->url, "%s", c->routes[r].variant[v].metrics_urls[u]);
        t->variant = v;
        char why[160];                               /* checked at load */
        fl_fetch_check_url(t->url, t->backend, sizeof t->backend, why, sizeof why);
      }
  pthread_mutex_lock(&sc.lock);
  for (size_t i = 0; i < k; i++)                     /* an unchanged target keeps its last scrape */
    for (size_t j = 0; j < sc.n_targets; j++)
      if (targets[i].variant == sc.targets[j].variant && strcmp(targets[i].route, sc.targets[j].route) == 0 &&
          strcmp(targets[i].url, sc.targets[j].url) == 0 && sc.targets[j].samples) {
        target_t *from = &sc.targets[j];
        targets[i].samples = from->samples, targets[i].n = from->n, targets[i].up = from->up;
        targets[i].seconds = from->seconds, targets[i].bad_lines = from->bad_lines, targets[i].dropped = from->dropped;
        memcpy(targets[i].error, from->error, sizeof from->error);
        from->samples = NULL, from->n = 0;
      }
  free_targets(sc.targets, sc.n_targets);
  sc.targets = targets;
  sc.n_targets = k;
  sc.generation++;
  fl_conf_t *old = sc.conf;
  fl_conf_ref((fl_conf_t *)c);
  sc.conf = (fl_conf_t *)c;
  sc.families = c->n_scrape_families ? c->scrape_families : DEFAULT_FAMILIES;
  sc.n_families = c->n_scrape_families ? c->n_scrape_families : FL_ARRAY_LEN(DEFAULT_FAMILIES);
  sc.interval_ms = c->scrape_interval_ms;
  sc.timeout_ms = c->scrape_timeout_ms;
  pthread_cond_signal(&sc.wake);                     /* scrape the new targets now */
  pthread_mutex_unlock(&sc.lock);
  fl_conf_unref(old);
  if (!sc.running && k) {                            /* no thread until there is something to scrape */
    if (pthread_create(&sc.thread, NULL, scrape_main, NULL) != 0) return FL_ENOMEM;
    sc.running = true;
  }
  return 0;
}

void fl_scrape_stop(void) {
  pthread_mutex_lock(&sc.lock);
  sc.stopping = true;
  pthread_cond_signal(&sc.wake);
  pthread_mutex_unlock(&sc.lock);
  if (sc.running) pthread_join(sc.thread, NULL);
  sc.running = false;
  free_targets(sc.targets, sc.n_targets);
  sc.targets = NULL;
  sc.n_targets = 0;
  fl_conf_unref(sc.conf);
  sc.conf = NULL;
}

/* ---- reading ---- */

static void print_value(fl_buf_t *b, double v) {
  if (isnan(v)) fl_buf_str(b, "NaN");
  else if (isinf(v)) fl_buf_str(b, v > 0 ? "+Inf" : "-Inf");
  else {                                             /* the shortest text that reads back the same */
    char text[32];
    snprintf(text, sizeof text, "%.15g", v);
    if (strtod(text, NULL) != v) snprintf(text, sizeof text, "%.17g", v);
    fl_buf_str(b, text);
  }
}

typedef struct { const target_t *t; const sample_t *s; } row_t;

static void exported_name(const char *name, char *out, size_t cap) {
  snprintf(out, cap, "fledge_backend_%s", name);
  for (char *p = out; *p; p++)
    if (*p == ':') *p = '_';
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const row_t *)a)->s->name, ((const row_t *)b)->s->name);
}

/* Every kept sample, grouped by name so that each family is one block. Lock held. */
static void expo_samples(fl_buf_t *b) {
  size_t n = 0;
  for (size_t i = 0; i < sc.n_targets; i++) n += sc.targets[i].n;
  row_t *rows = malloc((n ? n : 1) * sizeof *rows);
  if (!rows) return;
  n = 0;
  for (size_t i = 0; i < sc.n_targets; i++)
    for (size_t k = 0; k < sc.targets[i].n; k++) rows[n++] = (row_t){&sc.targets[i], &sc.targets[i].samples[k]};
  qsort(rows, n, sizeof *rows, by_name);
  char name[160];
  for (size_t i = 0; i < n; i++) {
    exported_name(rows[i].s->name, name, sizeof name);
    if (i == 0 || strcmp(rows[i].s->name, rows[i - 1].s->name) != 0)
      fl_buf_printf(b, "# HELP %s %s of the backends, re-exported.\n# TYPE %s untyped\n", name, rows[i].s->name, name);
    fl_buf_printf(b, "%s{route=\"%s\",variant=\"%s\",backend=\"%s\"%s} ", name, rows[i].t->route,
                  fl_variant_name((fl_variant_id_t)rows[i].t->variant), rows[i].t->backend, rows[i].s->labels);
    print_value(b, rows[i].s->value);
    fl_buf_str(b, "\n");
  }
  free(rows);
}

void fl_scrape_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx) {
  pthread_mutex_lock(&sc.lock);
  if (sc.n_targets) {
    fl_metrics_family(b, "fledge_backend_scrape_up", "gauge", "1 when the backend's metrics_url answered its last scrape.");
    for (size_t i = 0; i < sc.n_targets; i++)
      fl_buf_printf(b, "fledge_backend_scrape_up{route=\"%s\",variant=\"%s\",backend=\"%s\"} %d\n", sc.targets[i].route,
                    fl_variant_name((fl_variant_id_t)sc.targets[i].variant), sc.targets[i].backend, sc.targets[i].up);
    fl_metrics_family(b, "fledge_backend_scrape_duration_seconds", "gauge", "How long the last scrape took.");
    for (size_t i = 0; i < sc.n_targets; i++)
      fl_buf_printf(b, "fledge_backend_scrape_duration_seconds{route=\"%s\",variant=\"%s\",backend=\"%s\"} %.6f\n",
                    sc.targets[i].route, fl_variant_name((fl_variant_id_t)sc.targets[i].variant), sc.targets[i].backend,
                    sc.targets[i].seconds);
    fl_metrics_family(b, "fledge_backend_scrape_samples_dropped", "gauge",
                      "Wanted samples the last scrape could not keep (over 4096, or labels too long).");
    for (size_t i = 0; i < sc.n_targets; i++)
      fl_buf_printf(b, "fledge_backend_scrape_samples_dropped{route=\"%s\",variant=\"%s\",backend=\"%s\"} %zu\n",
                    sc.targets[i].route, fl_variant_name((fl_variant_id_t)sc.targets[i].variant), sc.targets[i].backend,
                    sc.targets[i].dropped);
    expo_samples(b);
  }
  pthread_mutex_unlock(&sc.lock);
}

json_t *fl_scrape_json(void) {
  json_t *a = json_array();
  pthread_mutex_lock(&sc.lock);
  for (size_t i = 0; i < sc.n_targets; i++) {
    const target_t *t = &sc.targets[i];
    json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:b, s:f, s:I, s:I, s:i, s:s}", "url", t->url, "route",
                                       t->route, "variant", fl_variant_name((fl_variant_id_t)t->variant), "up", t->up,
                                       "seconds", t->seconds, "samples", (json_int_t)t->n, "samples_dropped",
                                       (json_int_t)t->dropped, "malformed_lines", t->bad_lines, "error", t->error));
  }
  pthread_mutex_unlock(&sc.lock);
  return a;
}

bool fl_scrape_variant_value(const char *route, int variant, const char *family, double *value) {
  double sum = 0;
  size_t n = 0;
  pthread_mutex_lock(&sc.lock);
  for (size_t i = 0; i < sc.n_targets; i++) {
    const target_t *t = &sc.targets[i];
    if (!t->up || t->variant != variant || strcmp(t->route, route) != 0) continue;
    for (size_t k = 0; k < t->n; k++)
      if (strcmp(t->samples[k].name, family) == 0 && !isnan(t->samples[k].value)) sum += t->samples[k].value, n++;
  }
  pthread_mutex_unlock(&sc.lock);
  *value = n ? sum / (double)n : NAN;
  return n > 0;
}
