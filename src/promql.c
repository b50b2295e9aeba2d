/* promql.c — PromQL checks' queries, run against analysis.prometheus on a thread of their own; the
 * control thread says which it wants and reads the last answers (promql.h). */
#include "promql.h"

#include "fetch.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PQ_MAX 64                   /* queries kept at once (16 checks × 2 variants × a few routes) */
#define PQ_TEXT 2048
#define PQ_PERIOD_MS 1000
#define PQ_KEEP_MS 30000            /* a query nobody wanted for this long is dropped */
#define PQ_TIMEOUT_MS 2000

typedef struct {
  char text[PQ_TEXT];
  uint64_t wanted_ms;
  bool ok;
  double value;
  uint64_t at_ms;                   /* when its last answer (or failure) came; 0: none yet */
  char why[200];
} query_t;

static struct {
  pthread_mutex_t lock;             /* everything below */
  pthread_cond_t wake;
  pthread_t thread;
  bool started, stopping;
  char base[512];
  query_t q[PQ_MAX];
  size_t n;
} pq = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

size_t fl_promql_expand(const char *tmpl, const char *route, const char *version, const char *canary,
                        const char *stable, char *out, size_t cap) {
  static const char *const names[] = {"{{canary}}", "{{stable}}", "{{version}}", "{{route}}"};
  const char *values[] = {canary, stable, version, route};
  size_t n = 0;
  while (*tmpl) {
    size_t k = 0;
    while (k < FL_ARRAY_LEN(names) && strncmp(tmpl, names[k], strlen(names[k])) != 0) k++;
    const char *piece = k < FL_ARRAY_LEN(names) ? values[k] : tmpl;
    size_t len = k < FL_ARRAY_LEN(names) ? strlen(piece) : 1;
    if (n + len >= cap) return 0;
    memcpy(out + n, piece, len);
    n += len;
    tmpl += k < FL_ARRAY_LEN(names) ? strlen(names[k]) : 1;
  }
  out[n] = '\0';
  return n;
}

/* ---- the thread ---- */

static void url_for(const char *base, const char *query, char *out, size_t cap) {
  size_t n = (size_t)snprintf(out, cap, "%s%sapi/v1/query?query=", base, base[strlen(base) - 1] == '/' ? "" : "/");
  for (const unsigned char *q = (const unsigned char *)query; *q && n + 4 < cap; q++) {
    bool plain = (*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || strchr("-._~", *q);
    n += plain ? (size_t)snprintf(out + n, cap - n, "%c", *q) : (size_t)snprintf(out + n, cap - n, "%%%02X", *q);
  }
}

static const char *or_else(const char *s, const char *other) { return s ? s : other; }

/* One value from Prometheus's answer, or the reason there is none. */
static bool read_answer(const char *body, double *value, char *why, size_t cap) {
  json_t *a = json_loads(body, 0, NULL), *data = json_object_get(a, "data"), *result = json_object_get(data, "result");
  const char *type = json_string_value(json_object_get(data, "resultType"));
  json_t *pair = NULL;
  bool ok = false;
  if (!a) snprintf(why, cap, "Prometheus's answer is not JSON");
  else if (strcmp(or_else(json_string_value(json_object_get(a, "status")), ""), "success") != 0)
    snprintf(why, cap, "Prometheus refused the query: %.150s", or_else(json_string_value(json_object_get(a, "error")), "?"));
  else if (type && strcmp(type, "scalar") == 0) pair = result;
  else if (!type || strcmp(type, "vector") != 0) snprintf(why, cap, "the query gives a %s, not one number", or_else(type, "?"));
  else if (json_array_size(result) == 0) snprintf(why, cap, "the query returned no sample");
  else if (json_array_size(result) > 1)
    snprintf(why, cap, "the query returned %zu series; a check needs one (aggregate them, e.g. sum(...))",
             json_array_size(result));
  else pair = json_object_get(json_array_get(result, 0), "value");
  if (pair) {
    const char *text = json_string_value(json_array_get(pair, 1));
    char *end = NULL;
    *value = text ? strtod(text, &end) : NAN;
    ok = text && end != text && !*end && isfinite(*value);
    if (!ok) snprintf(why, cap, "the query's value is %s", text ? text : "missing");
  }
  json_decref(a);
  return ok;
}

static void run_one(fl_fetcher_t *f, size_t i) {
  static char url[3 * PQ_TEXT + 600], text[PQ_TEXT];
  pthread_mutex_lock(&pq.lock);
  bool asked = i < pq.n && pq.base[0];           /* a reload may have taken the base away */
  if (asked) {
    snprintf(text, sizeof text, "%s", pq.q[i].text);
    url_for(pq.base, text, url, sizeof url);
  }
  pthread_mutex_unlock(&pq.lock);
  if (!asked) return;
  int status = 0;
  char *body = NULL, why[200] = "";
  double value = NAN;
  int rc = f ? fl_fetch(f, url, "GET", NULL, PQ_TIMEOUT_MS, &status, &body, why, sizeof why) : FL_ENOMEM;
  bool ok = false;
  if (!f) snprintf(why, sizeof why, "the query thread could not start libcurl");
  else if (rc == 0 && status != 200 && status != 400 && status != 422) snprintf(why, sizeof why, "Prometheus answered HTTP %d", status);
  else if (rc == 0) ok = read_answer(body, &value, why, sizeof why);
  free(body);
  pthread_mutex_lock(&pq.lock);
  if (i < pq.n && strcmp(pq.q[i].text, text) == 0) {
    pq.q[i].ok = ok;
    pq.q[i].value = value;
    pq.q[i].at_ms = fl_now_ms();
    snprintf(pq.q[i].why, sizeof pq.q[i].why, "%s", ok ? "" : why);
  }
  pthread_mutex_unlock(&pq.lock);
}

static void *promql_main(void *arg) {
  fl_fetcher_t *f = fl_fetcher_new();
  pthread_mutex_lock(&pq.lock);
  while (!pq.stopping) {
    uint64_t now = fl_now_ms();
    for (size_t i = 0; i < pq.n;)                 /* the unwanted go, the rest stay in order */
      if (now - pq.q[i].wanted_ms > PQ_KEEP_MS) pq.q[i] = pq.q[--pq.n];
      else i++;
    size_t n = pq.base[0] ? pq.n : 0;
    pthread_mutex_unlock(&pq.lock);
    for (size_t i = 0; i < n; i++) run_one(f, i);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PQ_PERIOD_MS / 1000;
    pthread_mutex_lock(&pq.lock);
    if (!pq.stopping) pthread_cond_timedwait(&pq.wake, &pq.lock, &until);
  }
  pthread_mutex_unlock(&pq.lock);
  fl_fetcher_free(f);
  return NULL;
}

/* ---- control thread ---- */

int fl_promql_configure(const char *base_url) {
  pthread_mutex_lock(&pq.lock);
  snprintf(pq.base, sizeof pq.base, "%s", base_url ? base_url : "");
  bool start = base_url && !pq.started;
  pthread_mutex_unlock(&pq.lock);
  if (!start) return 0;
  if (pthread_create(&pq.thread, NULL, promql_main, NULL) != 0) return FL_ENOMEM;
  pq.started = true;
  return 0;
}

void fl_promql_stop(void) {
  if (!pq.started) return;
  pthread_mutex_lock(&pq.lock);
  pq.stopping = true;
  pthread_cond_signal(&pq.wake);
  pthread_mutex_unlock(&pq.lock);
  pthread_join(pq.thread, NULL);
  pq.started = false;
}

static query_t *find(const char *text) {
  for (size_t i = 0; i < pq.n; i++)
    if (strcmp(pq.q[i].text, text) == 0) return &pq.q[i];
  return NULL;
}

void fl_promql_want(const char *query) {
  pthread_mutex_lock(&pq.lock);
  query_t *q = find(query);
  bool fresh = !q && pq.n < PQ_MAX && strlen(query) < sizeof q->text;
  if (fresh) {
    q = &pq.q[pq.n++];
    *q = (query_t){0};
    snprintf(q->text, sizeof q->text, "%s", query);
    pthread_cond_signal(&pq.wake);               /* a new one is asked at once */
  }
  if (q) q->wanted_ms = fl_now_ms();
  pthread_mutex_unlock(&pq.lock);
}

int fl_promql_value(const char *query, uint64_t max_age_ms, double *value, char *why, size_t cap) {
  pthread_mutex_lock(&pq.lock);
  const query_t *q = find(query);
  int rc = FL_ENOENT;
  if (!pq.base[0]) snprintf(why, cap, "no analysis.prometheus in the config");
  else if (!q || !q->at_ms) snprintf(why, cap, "Prometheus has not answered it yet");
  else if (fl_now_ms() - q->at_ms > max_age_ms) snprintf(why, cap, "no answer from Prometheus for %llu s",
                                                        (unsigned long long)((fl_now_ms() - q->at_ms) / 1000));
  else if (!q->ok) snprintf(why, cap, "%s", q->why);
  else {
    *value = q->value;
    rc = 0;
  }
  pthread_mutex_unlock(&pq.lock);
  return rc;
}

/* ---- a rollout's query checks ---- */

#define QUERY_FRESH_MS 5000          /* an answer older than this is no answer */

static bool two_sided(const fl_check_t *k) { return strstr(k->query, "{{version}}") != NULL; }

/* The check's query for one variant ({{version}} is that variant's). */
static bool query_text(const fl_route_t *rt, const fl_check_t *k, fl_variant_id_t id, char *out, size_t cap) {
  return fl_promql_expand(k->query, rt->name, rt->variant[id].version, rt->variant[FL_CANARY].version,
                          rt->variant[FL_STABLE].version, out, cap) > 0;
}

void fl_promql_want_checks(const fl_route_t *rt, const fl_rollout_spec_t *spec) {
  char q[2048];
  for (size_t i = 0; i < spec->n_checks; i++) {
    const fl_check_t *k = &spec->checks[i];
    if (k->kind != FL_CHECK_QUERY) continue;
    if (query_text(rt, k, FL_CANARY, q, sizeof q)) fl_promql_want(q);
    if (two_sided(k) && query_text(rt, k, FL_STABLE, q, sizeof q)) fl_promql_want(q);
  }
}

static bool query_value(const fl_route_t *rt, const fl_check_t *k, fl_variant_id_t id, double *value, char *why,
                        size_t cap) {
  char q[2048];
  if (!query_text(rt, k, id, q, sizeof q)) {
    snprintf(why, cap, "the query is too long once its placeholders are filled");
    return false;
  }
  return fl_promql_value(q, QUERY_FRESH_MS, value, why, cap) == 0;
}

void fl_promql_window(const fl_route_t *rt, const fl_rollout_spec_t *spec, fl_series_snap_t *c, fl_series_snap_t *s,
                      fl_query_why_t why) {
  for (size_t i = 0; i < spec->n_checks; i++) {
    const fl_check_t *k = &spec->checks[i];
    why[i][0] = '\0';
    if (k->kind != FL_CHECK_QUERY) continue;
    char w[200] = "";
    c->backend_known[i] = query_value(rt, k, FL_CANARY, &c->backend[i], w, sizeof w);
    if (!c->backend_known[i]) snprintf(why[i], sizeof why[i], "canary: %s", w);
    if (!two_sided(k) || (s->backend_known[i] = query_value(rt, k, FL_STABLE, &s->backend[i], w, sizeof w))) continue;
    size_t n = strlen(why[i]);
    snprintf(why[i] + n, sizeof why[i] - n, "%sstable: %s", n ? "; " : "", w);
  }
}

void fl_promql_note(json_t *analysis, const fl_rollout_spec_t *spec, fl_query_why_t why) {
  json_t *checks = json_object_get(analysis, "checks");
  for (size_t i = 0; i < spec->n_checks && i < json_array_size(checks); i++)
    if (spec->checks[i].kind == FL_CHECK_QUERY && why[i][0])
      json_object_set_new(json_array_get(checks, i), "query_error", json_string(why[i]));
}
