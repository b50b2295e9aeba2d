/* spec.c — rollout specs from and to JSON: every key checked, unknown ones refused by name (the
 * caller points at them in the file), defaults filled in. */
#include "spec.h"
#include "quality.h"
#include "fetch.h"
#include "window.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

/* {query: "...", metric: NAME (optional, "query" by default), bounds}. */
static int parse_query(const json_t *j, fl_check_t *c, char *err, size_t cap) {
  const char *q = json_string_value(json_object_get(j, "query"));
  if (!q || !*q || strlen(q) >= sizeof c->query)
    return bad(err, cap, "%s: a query check's \"query\" is a PromQL expression of at most 511 bytes", "checks");
  snprintf(c->query, sizeof c->query, "%s", q);
  c->kind = FL_CHECK_QUERY;
  return 0;
}

static const struct { const char *name; fl_shadow_measure_t measure; } SHADOW_METRICS[] = {
  {"shadow_agreement", FL_SM_AGREEMENT}, {"shadow_exact_match", FL_SM_EXACT},
  {"shadow_text_similarity", FL_SM_SIMILARITY}, {"shadow_status_agreement", FL_SM_STATUS},
  {"shadow_error_rate", FL_SM_ERROR_RATE},
};

static bool parse_shadow_metric(const char *m, fl_check_t *c) {
  for (size_t i = 0; i < FL_ARRAY_LEN(SHADOW_METRICS); i++)
    if (strcmp(m, SHADOW_METRICS[i].name) == 0) {
      c->kind = FL_CHECK_SHADOW;
      c->measure = SHADOW_METRICS[i].measure;
      return true;
    }
  return false;
}

/* A shadow phase's check: shares and means take min, the error rate max_increase (over stable's
 * in the same pairs) or max. */
static int shadow_bounds(const fl_check_t *c, char *err, size_t cap) {
  bool errors = c->measure == FL_SM_ERROR_RATE;
  if (!isnan(c->max_ratio) || !isnan(c->max_decrease) || (errors ? !isnan(c->min) : !isnan(c->max) || !isnan(c->max_increase)))
    return bad(err, cap, "check %s: shadow_error_rate takes max_increase or max, the other shadow checks min", c->name);
  if (errors ? isnan(c->max_increase) && isnan(c->max) : isnan(c->min) || c->min > 1)
    return bad(err, cap, "check %s needs a bound (min in [0, 1] for shares and similarities, max_increase or max "
               "for shadow_error_rate)", c->name);
  return 0;
}

static int parse_check(const json_t *j, fl_check_t *c, char *err, size_t cap) {
  static const char *const KEYS[] = {"metric", "max_increase", "max_ratio", "max", "max_decrease", "query", "min"};
  const char *m = json_string_value(json_object_get(j, "metric"));
  unsigned pct = 0;
  char tail;
  bool query = json_object_get(j, "query") != NULL;
  if (json_is_object(j) && !m && query) m = "query";
  if (!json_is_object(j) || !m) return bad(err, cap, "%s: each check needs a \"metric\" (or a \"query\")", "checks");
  if (only_keys(j, KEYS, FL_ARRAY_LEN(KEYS), "a check", err, cap)) return FL_EINVAL;
  if (strlen(m) >= sizeof c->name) return bad(err, cap, "check \"%.64s...\": a metric name is at most 127 bytes", m);
  snprintf(c->name, sizeof c->name, "%s", m);
  if (query) {
    if (parse_query(j, c, err, cap)) return FL_EINVAL;
  } else if (strcmp(m, "error_rate") == 0) c->kind = FL_CHECK_ERROR_RATE;
  else if (strcmp(m, "latency_per_token") == 0) c->kind = FL_CHECK_LATENCY_PER_TOKEN;
  else if (strcmp(m, "feedback_score") == 0) c->kind = FL_CHECK_FEEDBACK;
  else if (strcmp(m, "process_rss") == 0 || strcmp(m, "process_cpu") == 0) c->kind = FL_CHECK_PROCESS;
  else if (strncmp(m, "backend:", 8) == 0 && m[8] && strlen(m) < sizeof c->name) c->kind = FL_CHECK_BACKEND;
  else if (sscanf(m, "latency_p%u%c", &pct, &tail) == 1 && pct > 0 && pct < 100) c->kind = FL_CHECK_LATENCY;
  else if (sscanf(m, "ttft_p%u%c", &pct, &tail) == 1 && pct > 0 && pct < 100) c->kind = FL_CHECK_TTFT;
  else if ((c->rate = fl_data_rate_find(m)) >= 0) c->kind = FL_CHECK_DATA_RATE;
  else if (parse_drift(m, c)) c->kind = FL_CHECK_DRIFT;
  else if (parse_shadow_metric(m, c)) c->kind = FL_CHECK_SHADOW;
  else return bad(err, cap, "unknown check metric \"%s\" (error_rate, latency_pNN, ttft_pNN, latency_per_token, "
                  "data rates such as nan_rate, FEATURE_psi/_ks/_js of outputs, feedback_score, process_rss, "
                  "process_cpu, backend:FAMILY, shadow_*; see docs/rollouts.md)", m);
  c->quantile = pct / 100.0;
  if (opt_bound(j, "max_increase", 0, false, &c->max_increase, err, cap) ||
      opt_bound(j, "max_ratio", 0, true, &c->max_ratio, err, cap) || opt_bound(j, "max", -INFINITY, false, &c->max, err, cap) ||
      opt_bound(j, "max_decrease", 0, false, &c->max_decrease, err, cap) || opt_bound(j, "min", 0, false, &c->min, err, cap))
    return FL_EINVAL;
  if (c->kind == FL_CHECK_SHADOW) return shadow_bounds(c, err, cap);
  if (!isnan(c->min)) return bad(err, cap, "check %s: min bounds the shadow checks only", m);
  bool rate = c->kind == FL_CHECK_ERROR_RATE || c->kind == FL_CHECK_DATA_RATE;
  bool latency = c->kind == FL_CHECK_LATENCY || c->kind == FL_CHECK_TTFT || c->kind == FL_CHECK_LATENCY_PER_TOKEN ||
                 c->kind == FL_CHECK_PROCESS || c->kind == FL_CHECK_BACKEND;
  if (c->kind == FL_CHECK_QUERY) {
    bool two_sided = strstr(c->query, "{{version}}") != NULL;
    if (isnan(c->max) && isnan(c->max_ratio) && isnan(c->max_increase))
      return bad(err, cap, "check %s needs a bound: max, or with {{version}} in its query max_ratio or max_increase", m);
    if (!two_sided && (!isnan(c->max_ratio) || !isnan(c->max_increase)))
      return bad(err, cap, "check %s: max_ratio and max_increase compare the canary with stable: write {{version}} in "
                 "the query where each variant's version goes", m);
    if (!isnan(c->max_decrease)) return bad(err, cap, "check %s: a query takes max, max_ratio or max_increase", m);
    return 0;
  }
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
                                     "acceptance_passed", "acceptance_failed", "spec_invalid", "held",
                                     "shadow_started", "shadow_passed", "shadow_failed"};

static int parse_hook(const json_t *j, fl_hook_t *h, char *err, size_t cap) {
  static const char *const KEYS[] = {"url", "on"};
  if (!json_is_object(j)) return bad(err, cap, "%s: each is an object {url, on}", "webhooks");
  if (only_keys(j, KEYS, FL_ARRAY_LEN(KEYS), "a webhook", err, cap)) return FL_EINVAL;
  const char *url = json_string_value(json_object_get(j, "url"));
  char why[160] = "longer than 255 bytes";
  if (!url || strlen(url) >= sizeof h->url || fl_fetch_check_url(url, NULL, 0, why, sizeof why) != 0)
    return bad(err, cap, "webhooks: each needs a url, http:// or https://HOST[:PORT]/PATH (%s)", url ? why : "none");
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
                 "acceptance_started, acceptance_passed, acceptance_failed, spec_invalid, held, shadow_started, "
                 "shadow_passed, shadow_failed");
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
                              .max_ratio = NAN, .max = NAN, .max_decrease = NAN, .min = NAN};
  s->checks[1] = (fl_check_t){.kind = FL_CHECK_LATENCY, .quantile = 0.99, .name = "latency_p99",
                              .max_increase = NAN, .max_ratio = 1.2, .max = NAN, .max_decrease = NAN, .min = NAN};
  s->n_checks = 2;
}

/* A shadow phase that names no checks: its answers mostly agree, and it fails no more often. */
static void default_shadow_checks(fl_rollout_spec_t *s) {
  s->shadow_checks[0] = (fl_check_t){.kind = FL_CHECK_SHADOW, .measure = FL_SM_AGREEMENT, .name = "shadow_agreement",
                                     .min = 0.9, .max_increase = NAN, .max_ratio = NAN, .max = NAN, .max_decrease = NAN};
  s->shadow_checks[1] = (fl_check_t){.kind = FL_CHECK_SHADOW, .measure = FL_SM_ERROR_RATE, .name = "shadow_error_rate",
                                     .max_increase = 0.01, .min = NAN, .max_ratio = NAN, .max = NAN, .max_decrease = NAN};
  s->n_shadow_checks = 2;
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

/* A list of checks: a step's (no shadow check among them) or a shadow phase's (only those). */
static int parse_checks(const json_t *v, const char *key, bool shadow, fl_check_t *out, size_t *n, char *err, size_t cap) {
  if (parse_list(v, key, FL_MAX_CHECKS, n, err, cap)) return FL_EINVAL;
  for (size_t i = 0; i < *n; i++) {
    if (parse_check(json_array_get(v, i), &out[i], err, cap)) return FL_EINVAL;
    if ((out[i].kind == FL_CHECK_SHADOW) != shadow)
      return bad(err, cap, shadow ? "shadow.checks take the shadow_* metrics only (%s is a step's)"
                                  : "%s is a shadow phase's check: it goes in shadow.checks", out[i].name);
  }
  return 0;
}

/* shadow: {duration: 10m, checks: [...]}: the canary answers mirrored requests only before its
 * first step. */
static int parse_shadow(const json_t *v, fl_rollout_spec_t *s, char *err, size_t cap) {
  static const char *const KEYS[] = {"duration", "checks"};
  if (!json_is_object(v)) return bad(err, cap, "%s must be an object {duration, checks}", "shadow");
  if (only_keys(v, KEYS, FL_ARRAY_LEN(KEYS), "shadow", err, cap)) return FL_EINVAL;
  const json_t *d = json_object_get(v, "duration");
  if (!d || parse_interval(d, &s->shadow_ms))
    return bad(err, cap, "%s.duration must be 1s..24h (\"10m\", \"1h\" or seconds)", "shadow");
  const json_t *checks = json_object_get(v, "checks");
  return checks ? parse_checks(checks, "shadow.checks", true, s->shadow_checks, &s->n_shadow_checks, err, cap) : 0;
}

/* One top-level key of the spec. */
static int parse_key(const char *key, const json_t *v, fl_rollout_spec_t *s, char *err, size_t cap) {
  uint64_t n;
  if (strcmp(key, "steps") == 0) return parse_steps(v, s, err, cap);
  if (strcmp(key, "interval") == 0)
    return parse_interval(v, &s->interval_ms) ? bad(err, cap, "%s must be 1s..24h (\"60s\", \"2m\", \"1h\" or seconds)", key) : 0;
  if (strcmp(key, "max_window") == 0)
    return parse_interval(v, &s->max_window_ms) ? bad(err, cap, "%s must be 1s..24h (\"10m\", \"1h\" or seconds)", key) : 0;
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
  if (strcmp(key, "checks") == 0) return parse_checks(v, key, false, s->checks, &s->n_checks, err, cap);
  if (strcmp(key, "shadow") == 0) return parse_shadow(v, s, err, cap);
  return bad(err, cap, "unknown key \"%.40s\" in the rollout spec (steps, interval, max_window, min_requests, max_failures, "
             "confidence, acceptance, acceptance_min_pass, webhooks, checks, shadow)", key);
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
  default_shadow_checks(s);
  if (!j) return 0;
  if (!json_is_object(j)) return bad(err, cap, "%s must be a JSON object", "the rollout spec");
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)j, key, v) {
    if (parse_key(key, v, s, err, cap) == 0) continue;
    snprintf(s->bad_key, sizeof s->bad_key, "%s", key);
    return FL_EINVAL;
  }
  if (s->max_window_ms && s->max_window_ms < s->interval_ms) {
    snprintf(s->bad_key, sizeof s->bad_key, "%s", "max_window");
    return bad(err, cap, "%s must be at least the interval", "max_window");
  }
  return 0;
}

uint32_t fl_spec_max_window_ms(const fl_rollout_spec_t *s) {
  if (s->max_window_ms) return s->max_window_ms;
  return (uint32_t)FL_MIN(10ull * s->interval_ms, 86400000ull);
}

bool fl_spec_has_query(const fl_rollout_spec_t *s) {
  for (size_t i = 0; i < s->n_checks; i++)
    if (s->checks[i].kind == FL_CHECK_QUERY) return true;
  return false;
}

json_t *fl_check_json(const fl_check_t *c) {
  json_t *o = json_pack("{s:s}", "metric", c->name);
  if (c->kind == FL_CHECK_QUERY) json_object_set_new(o, "query", json_string(c->query));
  if (!isnan(c->max_increase)) json_object_set_new(o, "max_increase", json_real(c->max_increase));
  if (!isnan(c->max_ratio)) json_object_set_new(o, "max_ratio", json_real(c->max_ratio));
  if (!isnan(c->max)) json_object_set_new(o, "max", json_real(c->max));
  if (!isnan(c->max_decrease)) json_object_set_new(o, "max_decrease", json_real(c->max_decrease));
  if (!isnan(c->min)) json_object_set_new(o, "min", json_real(c->min));
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
  for (size_t i = 0; i < s->n_checks; i++) json_array_append_new(checks, fl_check_json(&s->checks[i]));
  json_t *o = json_pack("{s:o, s:f, s:I, s:i, s:f, s:o}", "steps", steps, "interval", s->interval_ms / 1000.0,
                        "min_requests", (json_int_t)s->min_requests, "max_failures", (int)s->max_failures,
                        "confidence", s->confidence, "checks", checks);
  if (s->max_window_ms) json_object_set_new(o, "max_window", json_real(s->max_window_ms / 1000.0));
  if (s->acceptance[0]) {
    json_object_set_new(o, "acceptance", json_string(s->acceptance));
    json_object_set_new(o, "acceptance_min_pass", json_real(s->acceptance_min_pass));
  }
  if (s->shadow_ms) {
    json_t *sc = json_array();
    for (size_t i = 0; i < s->n_shadow_checks; i++) json_array_append_new(sc, fl_check_json(&s->shadow_checks[i]));
    json_object_set_new(o, "shadow", json_pack("{s:f, s:o}", "duration", s->shadow_ms / 1000.0, "checks", sc));
  }
  if (s->n_hooks) {
    json_t *hooks = json_array();
    for (size_t i = 0; i < s->n_hooks; i++) json_array_append_new(hooks, hook_json(&s->hooks[i]));
    json_object_set_new(o, "webhooks", hooks);
  }
  return o;
}
