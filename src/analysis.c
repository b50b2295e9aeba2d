/* analysis.c — rollout specs and the judgement of a window: two-proportion tests on error rates,
 * Mann–Whitney U on latency histograms, quantile ratios and absolute bounds. */
#include "analysis.h"
#include "jsonutil.h"
#include "webhook.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

const char *fl_verdict_name(fl_verdict_t v) {
  return v == FL_VERDICT_PASS ? "pass" : v == FL_VERDICT_FAIL ? "fail" : "inconclusive";
}

/* ---- the spec ---- */

static int bad(char *err, size_t cap, const char *fmt, const char *what) {
  snprintf(err, cap, fmt, what);
  return FL_EINVAL;
}

/* Every key of o is one of known (n of them); else FL_EINVAL naming the first stranger. */
static int only_keys(const json_t *o, const char *const *known, size_t n, const char *where, char *err, size_t cap) {
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)o, key, v) {
    bool ok = false;
    for (size_t i = 0; i < n && !ok; i++) ok = strcmp(key, known[i]) == 0;
    if (!ok) {
      snprintf(err, cap, "unknown key \"%.40s\" in %s", key, where);
      return FL_EINVAL;
    }
  }
  return 0;
}

/* "60s", "500ms", "2m", "1h" or a number of seconds. */
static int parse_interval(const json_t *v, uint32_t *ms) {
  double secs = -1;
  if (json_is_number(v)) {
    secs = json_number_value(v);
  } else if (json_is_string(v)) {
    char *end;
    double n = strtod(json_string_value(v), &end);
    secs = strcmp(end, "ms") == 0 ? n / 1000 : strcmp(end, "s") == 0 ? n : strcmp(end, "m") == 0 ? n * 60
         : strcmp(end, "h") == 0 ? n * 3600 : -1;
  }
  if (secs < 1 || secs > 86400) return FL_EINVAL;
  *ms = (uint32_t)lround(secs * 1000);
  return 0;
}

static int parse_steps(const json_t *steps, fl_rollout_spec_t *s, char *err, size_t cap) {
  if (!json_is_array(steps) || json_array_size(steps) == 0 || json_array_size(steps) > FL_MAX_STEPS)
    return bad(err, cap, "%s must list 1 to 16 canary weights", "steps");
  size_t i;
  json_t *v;
  json_array_foreach(steps, i, v) {
    double pct = json_number_value(v);
    uint32_t bp = (uint32_t)lround(pct * 100);
    if (!json_is_number(v) || bp == 0 || pct > 100 || (i && bp <= s->steps_bp[i - 1]))
      return bad(err, cap, "%s must be increasing weights in (0, 100]", "steps");
    if (fabs(pct * 100 - bp) > 1e-6) return bad(err, cap, "%s take at most two decimals (0.01%% steps)", "steps");
    s->steps_bp[i] = bp;
  }
  s->n_steps = json_array_size(steps);
  return 0;
}

/* A bound: absent (NaN), or a finite number at least min (strictly above when above). */
static int opt_bound(const json_t *o, const char *key, double min, bool above, double *out, char *err, size_t cap) {
  const json_t *v = json_object_get(o, key);
  *out = NAN;
  if (!v) return 0;
  double x = json_number_value(v);
  if (!json_is_number(v) || !isfinite(x) || x < min || (above && x == min)) {
    snprintf(err, cap, "check %.64s: %s must be a number %s %g", json_string_value(json_object_get(o, "metric")), key,
             above ? "above" : "of at least", min);
    return FL_EINVAL;
  }
  *out = x;
  return 0;
}

/* FEATURE_psi and FEATURE_ks for numeric features, FEATURE_js for categories. */
static bool parse_drift(const char *m, fl_check_t *c) {
  const char *us = strrchr(m, '_');
  char feature[32];
  if (!us || (size_t)(us - m) >= sizeof feature) return false;
  snprintf(feature, sizeof feature, "%.*s", (int)(us - m), m);
  int f = fl_feature_parse(feature);
  if (f < 0 || fl_feature_is_input(f)) return false;    /* inputs drift against a baseline, not stable */
  bool category = fl_feature_is_category((unsigned)f);
  c->feature = (unsigned)f;
  c->stat = strcmp(us, "_psi") == 0 ? 'p' : strcmp(us, "_ks") == 0 ? 'k' : strcmp(us, "_js") == 0 ? 'j' : 0;
  return c->stat && (c->stat == 'j') == category;
}

static int parse_check(const json_t *j, fl_check_t *c, char *err, size_t cap) {
  static const char *const KEYS[] = {"metric", "max_increase", "max_ratio", "max", "max_decrease"};
  const char *m = json_string_value(json_object_get(j, "metric"));
  unsigned pct = 0;
  char tail;
  if (!json_is_object(j) || !m) return bad(err, cap, "%s: each check needs a \"metric\"", "checks");
  if (only_keys(j, KEYS, FL_ARRAY_LEN(KEYS), "a check", err, cap)) return FL_EINVAL;
  snprintf(c->name, sizeof c->name, "%s", m);
  if (strcmp(m, "error_rate") == 0) c->kind = FL_CHECK_ERROR_RATE;
  else if (strcmp(m, "latency_per_token") == 0) c->kind = FL_CHECK_LATENCY_PER_TOKEN;
  else if (strcmp(m, "feedback_score") == 0) c->kind = FL_CHECK_FEEDBACK;
  else if (strcmp(m, "process_rss") == 0 || strcmp(m, "process_cpu") == 0) c->kind = FL_CHECK_PROCESS;
  else if (strncmp(m, "backend:", 8) == 0 && m[8] && strlen(m) < sizeof c->name) c->kind = FL_CHECK_BACKEND;
  else if (sscanf(m, "latency_p%u%c", &pct, &tail) == 1 && pct > 0 && pct < 100) c->kind = FL_CHECK_LATENCY;
  else if (sscanf(m, "ttft_p%u%c", &pct, &tail) == 1 && pct > 0 && pct < 100) c->kind = FL_CHECK_TTFT;
  else if ((c->rate = fl_data_rate_find(m)) >= 0) c->kind = FL_CHECK_DATA_RATE;
  else if (parse_drift(m, c)) c->kind = FL_CHECK_DRIFT;
  else return bad(err, cap, "unknown check metric \"%s\" (error_rate, latency_pNN, ttft_pNN, latency_per_token, "
                  "a data rate such as nan_rate, FEATURE_psi/_ks/_js, feedback_score, process_rss, process_cpu, "
                  "backend:FAMILY; see docs/rollouts.md; drift checks are of outputs)", m);
  c->quantile = pct / 100.0;
  if (opt_bound(j, "max_increase", 0, false, &c->max_increase, err, cap) ||
      opt_bound(j, "max_ratio", 0, true, &c->max_ratio, err, cap) || opt_bound(j, "max", -INFINITY, false, &c->max, err, cap) ||
      opt_bound(j, "max_decrease", 0, false, &c->max_decrease, err, cap))
    return FL_EINVAL;
  bool rate = c->kind == FL_CHECK_ERROR_RATE || c->kind == FL_CHECK_DATA_RATE;
  bool latency = c->kind == FL_CHECK_LATENCY || c->kind == FL_CHECK_TTFT || c->kind == FL_CHECK_LATENCY_PER_TOKEN ||
                 c->kind == FL_CHECK_PROCESS || c->kind == FL_CHECK_BACKEND;
  if (isnan(c->max_increase) && isnan(c->max_ratio) && isnan(c->max) && isnan(c->max_decrease))
    return bad(err, cap, "check %s needs a bound: max_increase, max_ratio, max or max_decrease", m);
  if ((!rate && !isnan(c->max_increase)) || (!latency && !isnan(c->max_ratio)) ||
      (c->kind != FL_CHECK_FEEDBACK && !isnan(c->max_decrease)) || (c->kind == FL_CHECK_FEEDBACK && !isnan(c->max)))
    return bad(err, cap, "check %s: rates take max_increase or max, latency-like metrics max_ratio or max, drift "
               "max, feedback_score max_decrease", m);
  return 0;
}

static const char *const EVENTS[] = {"started", "rollout_started", "step", "promoted", "rolled_back", "paused",
                                     "resumed", "undone", "weight", "superseded", "acceptance_started",
                                     "acceptance_passed", "acceptance_failed", "spec_invalid"};

static int parse_hook(const json_t *j, fl_hook_t *h, char *err, size_t cap) {
  static const char *const KEYS[] = {"url", "on"};
  if (!json_is_object(j)) return bad(err, cap, "%s: each is an object {url, on}", "webhooks");
  if (only_keys(j, KEYS, FL_ARRAY_LEN(KEYS), "a webhook", err, cap)) return FL_EINVAL;
  const char *url = json_string_value(json_object_get(j, "url"));
  if (!url || strlen(url) >= sizeof h->url || fl_webhook_parse_url(url, &h->addr, h->path, sizeof h->path) != 0)
    return bad(err, cap, "%s: each needs a url http://HOST:PORT/PATH with a numeric host", "webhooks");
  snprintf(h->url, sizeof h->url, "%s", url);
  const json_t *on = json_object_get(j, "on");
  if (on && (!json_is_array(on) || json_array_size(on) > FL_ARRAY_LEN(h->on)))
    return bad(err, cap, "%s: \"on\" must list at most 8 event names", "webhooks");
  for (size_t i = 0; on && i < json_array_size(on); i++) {
    const char *e = json_string_value(json_array_get(on, i));
    bool known = false;
    for (size_t k = 0; e && k < FL_ARRAY_LEN(EVENTS) && !known; k++) known = strcmp(e, EVENTS[k]) == 0;
    if (!known || strlen(e) >= sizeof h->on[0])
      return bad(err, cap, "webhooks: \"on\" takes event names (%s)",
                 "started, step, promoted, rolled_back, paused, resumed, undone, weight, superseded, "
                 "acceptance_started, acceptance_passed, acceptance_failed, spec_invalid");
    snprintf(h->on[h->n_on++], sizeof h->on[0], "%s", e);
  }
  return 0;
}

bool fl_hook_wants(const fl_hook_t *h, const char *kind) {
  if (h->n_on == 0) return true;
  for (size_t i = 0; i < h->n_on; i++)
    if (strcmp(h->on[i], kind) == 0 || (strcmp(h->on[i], "started") == 0 && strcmp(kind, "rollout_started") == 0))
      return true;
  return false;
}

static void default_checks(fl_rollout_spec_t *s) {
  s->checks[0] = (fl_check_t){.kind = FL_CHECK_ERROR_RATE, .name = "error_rate", .max_increase = 0.01,
                              .max_ratio = NAN, .max = NAN, .max_decrease = NAN};
  s->checks[1] = (fl_check_t){.kind = FL_CHECK_LATENCY, .quantile = 0.99, .name = "latency_p99",
                              .max_increase = NAN, .max_ratio = 1.2, .max = NAN, .max_decrease = NAN};
  s->n_checks = 2;
}

static int parse_count(const json_t *v, const char *key, uint64_t *out, char *err, size_t cap) {
  if (!json_is_integer(v) || json_integer_value(v) < 1) return bad(err, cap, "%s must be a positive integer", key);
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

static int parse_list(const json_t *v, const char *key, size_t max, size_t *n, char *err, size_t cap) {
  if (!json_is_array(v) || json_array_size(v) > max) {
    snprintf(err, cap, "%s must be a list of at most %zu", key, max);
    return FL_EINVAL;
  }
  *n = json_array_size(v);
  return 0;
}

/* One top-level key of the spec. */
static int parse_key(const char *key, const json_t *v, fl_rollout_spec_t *s, char *err, size_t cap) {
  uint64_t n;
  if (strcmp(key, "steps") == 0) return parse_steps(v, s, err, cap);
  if (strcmp(key, "interval") == 0)
    return parse_interval(v, &s->interval_ms) ? bad(err, cap, "%s must be 1s..24h (\"60s\", \"2m\", \"1h\" or seconds)", key) : 0;
  if (strcmp(key, "min_requests") == 0) return parse_count(v, key, &s->min_requests, err, cap);
  if (strcmp(key, "max_failures") == 0) {
    if (parse_count(v, key, &n, err, cap)) return FL_EINVAL;
    s->max_failures = (uint32_t)FL_MIN(n, UINT32_MAX);
    return 0;
  }
  if (strcmp(key, "confidence") == 0) {
    s->confidence = json_number_value(v);
    return !json_is_number(v) || s->confidence < 0.5 || s->confidence >= 1 ? bad(err, cap, "%s must be in [0.5, 1)", key) : 0;
  }
  if (strcmp(key, "acceptance") == 0) {
    if (!json_is_string(v) || !*json_string_value(v) || strlen(json_string_value(v)) >= sizeof s->acceptance)
      return bad(err, cap, "%s must be the path of a JSONL file", key);
    snprintf(s->acceptance, sizeof s->acceptance, "%s", json_string_value(v));
    return 0;
  }
  if (strcmp(key, "acceptance_min_pass") == 0) {
    s->acceptance_min_pass = json_number_value(v);
    return !json_is_number(v) || s->acceptance_min_pass < 0 || s->acceptance_min_pass > 1
               ? bad(err, cap, "%s must be in [0, 1]", key) : 0;
  }
  if (strcmp(key, "webhooks") == 0) {
    if (parse_list(v, key, FL_MAX_HOOKS, &s->n_hooks, err, cap)) return FL_EINVAL;
    for (size_t i = 0; i < s->n_hooks; i++)
      if (parse_hook(json_array_get(v, i), &s->hooks[i], err, cap)) return FL_EINVAL;
    return 0;
  }
  if (strcmp(key, "checks") == 0) {
    if (parse_list(v, key, FL_MAX_CHECKS, &s->n_checks, err, cap)) return FL_EINVAL;
    for (size_t i = 0; i < s->n_checks; i++)
      if (parse_check(json_array_get(v, i), &s->checks[i], err, cap)) return FL_EINVAL;
    return 0;
  }
  return bad(err, cap, "unknown key \"%.40s\" in the rollout spec (steps, interval, min_requests, max_failures, "
             "confidence, acceptance, acceptance_min_pass, webhooks, checks)", key);
}

int fl_rollout_spec_parse(const json_t *j, fl_rollout_spec_t *s, char *err, size_t cap) {
  memset(s, 0, sizeof *s);
  static const uint32_t default_steps[] = {500, 1000, 2500, 5000, 10000};
  memcpy(s->steps_bp, default_steps, sizeof default_steps);
  s->n_steps = FL_ARRAY_LEN(default_steps);
  s->interval_ms = 60000;
  s->min_requests = 200;
  s->max_failures = 2;
  s->confidence = 0.95;
  s->acceptance_min_pass = 1.0;
  default_checks(s);
  if (!j) return 0;
  if (!json_is_object(j)) return bad(err, cap, "%s must be a JSON object", "the rollout spec");
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)j, key, v) {
    if (parse_key(key, v, s, err, cap) == 0) continue;
    snprintf(s->bad_key, sizeof s->bad_key, "%s", key);
    return FL_EINVAL;
  }
  return 0;
}

static json_t *bound_json(const fl_check_t *c) {
  json_t *o = json_pack("{s:s}", "metric", c->name);
  if (!isnan(c->max_increase)) json_object_set_new(o, "max_increase", json_real(c->max_increase));
  if (!isnan(c->max_ratio)) json_object_set_new(o, "max_ratio", json_real(c->max_ratio));
  if (!isnan(c->max)) json_object_set_new(o, "max", json_real(c->max));
  if (!isnan(c->max_decrease)) json_object_set_new(o, "max_decrease", json_real(c->max_decrease));
  return o;
}

static json_t *hook_json(const fl_hook_t *h) {
  json_t *on = json_array();
  for (size_t i = 0; i < h->n_on; i++) json_array_append_new(on, json_string(h->on[i]));
  return json_pack("{s:s, s:o}", "url", h->url, "on", on);
}

json_t *fl_rollout_spec_json(const fl_rollout_spec_t *s) {
  json_t *steps = json_array(), *checks = json_array();
  for (size_t i = 0; i < s->n_steps; i++) json_array_append_new(steps, json_real(s->steps_bp[i] / 100.0));
  for (size_t i = 0; i < s->n_checks; i++) json_array_append_new(checks, bound_json(&s->checks[i]));
  json_t *o = json_pack("{s:o, s:f, s:I, s:i, s:f, s:o}", "steps", steps, "interval", s->interval_ms / 1000.0,
                        "min_requests", (json_int_t)s->min_requests, "max_failures", (int)s->max_failures,
                        "confidence", s->confidence, "checks", checks);
  if (s->acceptance[0]) {
    json_object_set_new(o, "acceptance", json_string(s->acceptance));
    json_object_set_new(o, "acceptance_min_pass", json_real(s->acceptance_min_pass));
  }
  if (s->n_hooks) {
    json_t *hooks = json_array();
    for (size_t i = 0; i < s->n_hooks; i++) json_array_append_new(hooks, hook_json(&s->hooks[i]));
    json_object_set_new(o, "webhooks", hooks);
  }
  return o;
}

/* ---- one window ---- */

void fl_window_diff(const fl_series_snap_t *end, const fl_series_snap_t *start, fl_series_snap_t *out) {
  memset(out, 0, sizeof *out);
  out->requests = end->requests - start->requests;
  out->errors = end->errors - start->errors;
  out->completion_tokens = end->completion_tokens - start->completion_tokens;
  fl_hist_snap_add_diff(&out->duration, &end->duration, &start->duration);
  fl_hist_snap_add_diff(&out->ttft, &end->ttft, &start->ttft);
  const uint64_t *e = (const uint64_t *)&end->data, *b = (const uint64_t *)&start->data;
  uint64_t *o = (uint64_t *)&out->data;
  for (size_t i = 0; i < offsetof(fl_data_snap_t, feedback_sum) / sizeof(uint64_t); i++) o[i] = e[i] - b[i];
  out->data.feedback_sum = end->data.feedback_sum - start->data.feedback_sum;
  out->data.feedback_sumsq = end->data.feedback_sumsq - start->data.feedback_sumsq;
  out->has_process = end->has_process;         /* resources are levels: the window's end */
  out->process_rss = end->process_rss;
  out->process_cpu = end->process_cpu;           /* backend levels: set by the window's close */
}

fl_test_t fl_analysis_mann_whitney_hist(const fl_hist_snap_t *c, const fl_hist_snap_t *s) {
  fl_test_t t = {0, 1};
  double n1 = 0, n2 = 0, rank_sum = 0, ties = 0, below = 0;
  for (unsigned b = 0; b < FL_HIST_BUCKETS; b++) {
    double cb = (double)c->bucket[b], sb = (double)s->bucket[b], tb = cb + sb;
    if (tb == 0) continue;
    rank_sum += cb * (below + (tb + 1) / 2);      /* every value of a bucket gets the group's mean rank */
    ties += tb * tb * tb - tb;
    below += tb;
    n1 += cb;
    n2 += sb;
  }
  if (n1 == 0 || n2 == 0) return t;
  double n = n1 + n2;
  t.statistic = rank_sum - n1 * (n1 + 1) / 2;
  double var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)));
  if (var <= 0) return t;
  t.p_value = fl_stats_normal_sf((t.statistic - n1 * n2 / 2 - 0.5) / sqrt(var));
  return t;
}

typedef struct {
  double canary, stable;       /* the metric's values */
  fl_test_t test;              /* p NAN: no test for this metric */
  bool measurable;
} fl_measure_t;

static double quantile_s(const fl_hist_snap_t *h, double q) { return fl_hist_quantile(h, q) / 1e6; }

/* The canary's histogram with every value divided by ratio: testing it against stable asks
 * whether the canary is slower by more than the bound, not merely slower. */
static void scaled(const fl_hist_snap_t *h, double ratio, fl_hist_snap_t *out) {
  memset(out, 0, sizeof *out);
  for (unsigned b = 0; b < FL_HIST_BUCKETS; b++) {
    if (!h->bucket[b]) continue;
    uint64_t lo, hi;
    fl_hist_range(b, &lo, &hi);
    double mid = hi == UINT64_MAX ? (double)lo : (double)lo + (double)(hi - 1 - lo) / 2;
    out->bucket[fl_hist_index((uint64_t)(mid / ratio))] += h->bucket[b];
  }
  out->count = h->count;
}

_Static_assert(FL_MAX_CHECKS == FL_ARRAY_LEN(((fl_series_snap_t *)0)->backend), "a backend value per check");

static double share(uint64_t num, uint64_t den) { return den ? (double)num / (double)den : NAN; }

static fl_measure_t measure_rate(const fl_check_t *k, const fl_data_snap_t *c, const fl_data_snap_t *s) {
  fl_measure_t m = {.test = {NAN, NAN}};
  uint64_t xc, nc, xs, ns;
  fl_data_rate(c, k->rate, &xc, &nc);
  fl_data_rate(s, k->rate, &xs, &ns);
  m.canary = share(xc, nc);
  m.stable = share(xs, ns);
  m.measurable = nc > 0 && (ns > 0 || isnan(k->max_increase));
  m.test = fl_stats_two_proportion_margin(xc, nc, xs, ns, isnan(k->max_increase) ? 0 : k->max_increase);
  return m;
}

/* Drift has no stable value of its own: stable is the reference distribution. */
static fl_measure_t measure_drift(const fl_check_t *k, const fl_drift_t *d) {
  fl_measure_t m = {.test = {NAN, NAN}, .stable = NAN, .canary = NAN};
  m.measurable = d && d->n_a >= FL_DRIFT_MIN && d->n_b >= FL_DRIFT_MIN;
  if (!m.measurable) return m;
  if (k->stat == 'p') m.canary = d->psi;
  if (k->stat == 'k') m.canary = d->ks.statistic, m.test = d->ks;
  if (k->stat == 'j') m.canary = d->js, m.test = d->chi2;
  return m;
}

/* Mean scores, and a one-sided z-test of H1: stable − canary > max_decrease. */
static fl_measure_t measure_feedback(const fl_check_t *k, const fl_data_snap_t *c, const fl_data_snap_t *s) {
  fl_measure_t m = {.test = {NAN, NAN}};
  double nc = (double)c->feedback, ns = (double)s->feedback;
  m.measurable = c->feedback >= FL_FEEDBACK_MIN && s->feedback >= FL_FEEDBACK_MIN;
  if (!m.measurable) return m;
  m.canary = c->feedback_sum / nc;
  m.stable = s->feedback_sum / ns;
  double var_c = FL_MAX(c->feedback_sumsq / nc - m.canary * m.canary, 0) * nc / (nc - 1);
  double var_s = FL_MAX(s->feedback_sumsq / ns - m.stable * m.stable, 0) * ns / (ns - 1);
  double diff = m.stable - m.canary - k->max_decrease, se = sqrt(var_c / nc + var_s / ns);
  m.test.statistic = se > 0 ? diff / se : (diff > 0 ? INFINITY : -INFINITY);
  m.test.p_value = se > 0 ? fl_stats_normal_sf(m.test.statistic) : (diff > 0 ? 0 : 1);
  return m;
}

static fl_measure_t measure(const fl_check_t *k, unsigned index, const fl_series_snap_t *c, const fl_series_snap_t *s,
                            const fl_drift_t *drift) {
  if (k->kind == FL_CHECK_BACKEND)          /* a level now, like a process's */
    return (fl_measure_t){.test = {NAN, NAN}, .canary = c->backend[index], .stable = s->backend[index],
                          .measurable = c->backend_known[index] && (s->backend_known[index] || isnan(k->max_ratio))};
  if (k->kind == FL_CHECK_DATA_RATE) return measure_rate(k, &c->data, &s->data);
  if (k->kind == FL_CHECK_DRIFT) return measure_drift(k, drift);
  if (k->kind == FL_CHECK_FEEDBACK) return measure_feedback(k, &c->data, &s->data);
  if (k->kind == FL_CHECK_PROCESS) {          /* a level now, not a sample: the bound alone decides */
    bool rss = strcmp(k->name, "process_rss") == 0;
    return (fl_measure_t){.test = {NAN, NAN}, .measurable = c->has_process && (s->has_process || isnan(k->max_ratio)),
                          .canary = rss ? c->process_rss : c->process_cpu, .stable = rss ? s->process_rss : s->process_cpu};
  }
  static fl_hist_snap_t shifted;    /* control thread only; large */
  fl_measure_t m = {.test = {NAN, NAN}, .measurable = true};
  switch (k->kind) {
  case FL_CHECK_ERROR_RATE:
    m.canary = (double)FL_MIN(c->errors, c->requests) / (double)c->requests;
    m.stable = (double)FL_MIN(s->errors, s->requests) / (double)s->requests;
    m.test = fl_stats_two_proportion_margin(c->errors, c->requests, s->errors, s->requests,
                                            isnan(k->max_increase) ? 0 : k->max_increase);
    break;
  case FL_CHECK_LATENCY:
  case FL_CHECK_TTFT: {
    const fl_hist_snap_t *hc = k->kind == FL_CHECK_TTFT ? &c->ttft : &c->duration;
    const fl_hist_snap_t *hs = k->kind == FL_CHECK_TTFT ? &s->ttft : &s->duration;
    m.measurable = hc->count > 0 && hs->count > 0;
    m.canary = quantile_s(hc, k->quantile);
    m.stable = quantile_s(hs, k->quantile);
    scaled(hc, isnan(k->max_ratio) ? 1 : k->max_ratio, &shifted);
    m.test = fl_analysis_mann_whitney_hist(&shifted, hs);
    break;
  }
  case FL_CHECK_LATENCY_PER_TOKEN:       /* totals only: the ratio bound, no per-request test */
    m.measurable = c->completion_tokens > 0 && s->completion_tokens > 0;
    m.canary = c->duration.sum_us / 1e6 / (double)c->completion_tokens;
    m.stable = s->duration.sum_us / 1e6 / (double)s->completion_tokens;
    break;
  default: break;
  }
  return m;
}


/* A check fails when the canary is beyond an absolute bound, or when it is both significantly
 * worse and beyond the relative bound. */
static fl_verdict_t judge(const fl_check_t *k, const fl_measure_t *m, double alpha, json_t *out) {
  if (!m->measurable) return FL_VERDICT_INCONCLUSIVE;
  bool significant = isnan(m->test.p_value) || m->test.p_value < alpha;
  bool beyond = false;
  if (!isnan(k->max_increase)) beyond = m->canary - m->stable > k->max_increase;
  if (!isnan(k->max_ratio)) beyond = m->stable > 0 ? m->canary / m->stable > k->max_ratio : m->canary > 0;
  if (!isnan(k->max_decrease)) beyond = m->stable - m->canary > k->max_decrease;
  /* a drift statistic beyond its bound fails only when its test agrees (PSI has none) */
  bool over_max = !isnan(k->max) && m->canary > k->max && (k->kind != FL_CHECK_DRIFT || significant);
  json_object_set_new(out, "significant", json_boolean(significant));
  json_object_set_new(out, "beyond_bound", json_boolean(beyond));
  json_object_set_new(out, "over_max", json_boolean(over_max));
  return over_max || (significant && beyond) ? FL_VERDICT_FAIL : FL_VERDICT_PASS;
}

static json_t *variant_inputs(const fl_series_snap_t *v) {
  return json_pack("{s:I, s:I, s:I}", "requests", (json_int_t)v->requests, "errors", (json_int_t)v->errors,
                   "completion_tokens", (json_int_t)v->completion_tokens);
}

json_t *fl_analysis_run(const fl_rollout_spec_t *spec, const fl_series_snap_t *canary, const fl_series_snap_t *stable,
                        const fl_drift_t *drift, fl_verdict_t *verdict) {
  json_t *out = json_pack("{s:o, s:o, s:f}", "canary", variant_inputs(canary), "stable", variant_inputs(stable),
                          "confidence", spec->confidence);
  json_t *checks = json_array();
  *verdict = FL_VERDICT_PASS;
  if (canary->requests < spec->min_requests || stable->requests < spec->min_requests) {
    *verdict = FL_VERDICT_INCONCLUSIVE;     /* too little traffic: never advance, never fail */
    json_object_set_new(out, "reason", json_sprintf("fewer than %llu requests on a variant",
                                                    (unsigned long long)spec->min_requests));
    json_object_set_new(out, "checks", checks);
    json_object_set_new(out, "verdict", json_string(fl_verdict_name(*verdict)));
    return out;
  }
  for (size_t i = 0; i < spec->n_checks; i++) {
    const fl_check_t *k = &spec->checks[i];
    fl_measure_t m = measure(k, (unsigned)i, canary, stable, drift ? &drift[k->feature] : NULL);
    json_t *c = bound_json(k);
    json_object_set_new(c, "canary", fl_json_num(m.canary));
    json_object_set_new(c, "stable", fl_json_num(m.stable));
    json_object_set_new(c, "statistic", fl_json_num(m.test.statistic));
    json_object_set_new(c, "p_value", fl_json_num(m.test.p_value));
    fl_verdict_t v = judge(k, &m, 1 - spec->confidence, c);
    json_object_set_new(c, "verdict", json_string(fl_verdict_name(v)));
    json_array_append_new(checks, c);
    if (v == FL_VERDICT_FAIL) *verdict = FL_VERDICT_FAIL;
    else if (v == FL_VERDICT_INCONCLUSIVE && *verdict == FL_VERDICT_PASS) *verdict = FL_VERDICT_INCONCLUSIVE;
  }
  json_object_set_new(out, "checks", checks);
  json_object_set_new(out, "verdict", json_string(fl_verdict_name(*verdict)));
  return out;
}
