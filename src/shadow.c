/* shadow.c — the mirrors' comparisons per canary series (see shadow.h). */
#include "shadow.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  unsigned gen;                      /* the series' generation these pairs belong to */
  fl_shadow_agg_t agg;
  fl_shadow_diffs_t diffs;
} smon_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static smon_t *tab[FL_MAX_SERIES];

static void smon_free(smon_t *m) {
  if (!m) return;
  fl_shadow_diffs_free(&m->diffs);
  free(m);
}

/* The entry of series id at generation gen, made or started afresh as needed; lock held. */
static smon_t *entry(unsigned id, unsigned gen) {
  smon_t *m = tab[id];
  if (m && m->gen != gen) {
    smon_free(m);
    m = tab[id] = NULL;
  }
  if (!m && (m = tab[id] = calloc(1, sizeof *m))) m->gen = gen;
  return m;
}

static fl_shadow_side_t side_of(const fl_sample_t *s) {
  return (fl_shadow_side_t){.status = s->status, .body = s->resp.data, .len = s->resp.len, .cut = s->resp_cut,
                            .stream = s->stream};
}

void fl_shadow_pair(const fl_sample_t *s) {
  const fl_sample_t *a = s->shadow;
  if (a->series >= FL_MAX_SERIES || fl_metrics_series_gen(a->series) != a->series_gen) return;   /* gone since */
  if (s->resp_cut || a->resp_cut) return;   /* an answer over data.max_body: too little of it to judge */
  fl_shadow_side_t p = side_of(s), q = side_of(a);
  fl_shadow_cmp_t c;
  fl_shadow_compare_keep(s->req.data, s->req.len, &p, &q, &c);   /* parsing, outside the lock */
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  uint64_t wall_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
  pthread_mutex_lock(&lock);
  smon_t *m = entry(a->series, a->series_gen);
  if (m) {
    fl_shadow_agg_add(&m->agg, &c, s->status, a->status, s->ms, a->ms, s->ttft_ms, a->ttft_ms);
    if (!c.agree)
      fl_shadow_diffs_add(&m->diffs, wall_ms, s->request_id, s->req.data, s->req.len, &p, &q, &c);
  }
  pthread_mutex_unlock(&lock);
  fl_shadow_cmp_clear(&c);
}

bool fl_shadow_comparison(unsigned series, fl_shadow_agg_t *out) {
  bool found = false;
  pthread_mutex_lock(&lock);
  const smon_t *m = series < FL_MAX_SERIES ? tab[series] : NULL;
  if (m && m->gen == fl_metrics_series_gen(series)) {
    *out = m->agg;
    found = true;
  }
  pthread_mutex_unlock(&lock);
  return found;
}

json_t *fl_shadow_diffs_of(unsigned series) {
  json_t *j = NULL;
  pthread_mutex_lock(&lock);
  const smon_t *m = series < FL_MAX_SERIES ? tab[series] : NULL;
  if (m && m->gen == fl_metrics_series_gen(series)) j = fl_shadow_diffs_json(&m->diffs);
  pthread_mutex_unlock(&lock);
  return j ? j : json_array();
}

void fl_shadow_forget(unsigned series, void *ctx) {
  if (series >= FL_MAX_SERIES) return;
  pthread_mutex_lock(&lock);
  smon_free(tab[series]);
  tab[series] = NULL;
  pthread_mutex_unlock(&lock);
}

/* The mirrors' own numbers: what was sent, answered, failed and dropped. */
static json_t *sent_json(const fl_shadow_sum_t *x) {
  json_t *dropped = json_object(), *errors = json_object();
  for (unsigned k = 0; k < FL_SDROP_COUNT; k++)
    json_object_set_new(dropped, fl_sdrop_name((fl_sdrop_t)k), json_integer((json_int_t)x->dropped[k]));
  uint64_t failed = 0;
  for (unsigned k = 0; k < FL_UPERR_COUNT; k++) {
    failed += x->errors[k];
    json_object_set_new(errors, fl_uperr_name((fl_uperr_t)k), json_integer((json_int_t)x->errors[k]));
  }
  return json_pack("{s:I, s:I, s:I, s:I, s:o, s:o}", "requests", (json_int_t)(x->requests + failed), "answered",
                   (json_int_t)x->requests, "in_flight", (json_int_t)x->in_flight, "errors",
                   (json_int_t)(failed + x->answered_5xx), "error_kinds", errors, "dropped", dropped);
}

json_t *fl_shadow_series_json(unsigned series, void *ctx) {
  fl_shadow_sum_t x;
  fl_metrics_shadow_sum(ctx, series, &x);
  fl_shadow_agg_t agg = {0};
  bool compared = fl_shadow_comparison(series, &agg);
  uint64_t any = x.requests + x.in_flight;
  for (unsigned k = 0; k < FL_SDROP_COUNT; k++) any += x.dropped[k];
  for (unsigned k = 0; k < FL_UPERR_COUNT; k++) any += x.errors[k];
  if (!any && !compared) return NULL;
  json_t *o = sent_json(&x);
  json_object_set_new(o, "comparison", fl_shadow_agg_json(&agg));
  return o;
}

static double ratio(uint64_t n, uint64_t d) { return d ? (double)n / (double)d : NAN; }

static void expo_gauge_line(fl_buf_t *b, const char *name, const char *lbl, const char *measure, double v) {
  if (isfinite(v)) fl_buf_printf(b, "%s{%s,measure=\"%s\"} %.6g\n", name, lbl, measure, v);
}

void fl_shadow_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx) {
  static const struct { const char *name, *help; size_t off; } counters[] = {
    {"fledge_shadow_pairs_total", "Mirrored requests whose two answers were compared.", offsetof(fl_shadow_agg_t, pairs)},
    {"fledge_shadow_agreeing_pairs_total", "Compared pairs whose answers agree (status, and content within the "
     "measure's threshold).", offsetof(fl_shadow_agg_t, agree)},
    {"fledge_shadow_exact_pairs_total", "Compared pairs whose answers are the same.", offsetof(fl_shadow_agg_t, exact)},
    {"fledge_shadow_status_agreeing_pairs_total", "Compared pairs answered with the same status class.",
     offsetof(fl_shadow_agg_t, status_agree)},
    {"fledge_shadow_errors_compared_total", "Compared pairs whose canary answer was an error or none.",
     offsetof(fl_shadow_agg_t, shadow_errors)},
  };
  unsigned n = fl_metrics_series_count();
  fl_shadow_agg_t *aggs = calloc(n ? n : 1, sizeof *aggs);
  char (*lbl)[256] = calloc(n ? n : 1, sizeof *lbl);
  unsigned k = 0;
  for (unsigned id = 0; aggs && lbl && id < n; id++)
    if (fl_metrics_series_live(id) && fl_shadow_comparison(id, &aggs[k])) fl_metrics_series_labels(id, lbl[k++], sizeof *lbl);
  for (size_t f = 0; k && f < FL_ARRAY_LEN(counters); f++) {
    fl_metrics_family(b, counters[f].name, "counter", counters[f].help);
    for (unsigned i = 0; i < k; i++)
      fl_buf_printf(b, "%s{%s} %llu\n", counters[f].name, lbl[i],
                    (unsigned long long)*(const uint64_t *)((const char *)&aggs[i] + counters[f].off));
  }
  if (k) fl_metrics_family(b, "fledge_shadow_comparison", "gauge", "The compared pairs since the canary version "
                           "began: rates over pairs (agreement, exact_match_rate, status_agreement) and means over "
                           "the pairs that have the measure.");
  for (unsigned i = 0; i < k; i++) {
    const fl_shadow_agg_t *a = &aggs[i];
    const struct { const char *measure; double v; } g[] = {
      {"agreement", ratio(a->agree, a->pairs)},
      {"exact_match_rate", ratio(a->exact, a->pairs)},
      {"status_agreement", ratio(a->status_agree, a->pairs)},
      {"text_similarity", a->sum_similarity / (double)a->n_text},
      {"length_ratio", a->sum_length_ratio / (double)a->n_length_ratio},
      {"class_agreement", a->sum_class_agreement / (double)a->n_class},
      {"mean_abs_diff", a->sum_mad / (double)a->n_mad},
      {"cosine", a->sum_cosine / (double)a->n_embed},
      {"latency_diff_seconds", a->sum_latency_diff_ms / 1000.0 / (double)a->n_latency},
      {"ttft_diff_seconds", a->sum_ttft_diff_ms / 1000.0 / (double)a->n_ttft},
    };
    for (size_t j = 0; j < FL_ARRAY_LEN(g); j++) expo_gauge_line(b, "fledge_shadow_comparison", lbl[i], g[j].measure, g[j].v);
  }
  free(aggs);
  free(lbl);
}

/* One check's value over the phase's pairs (NaN: nothing to measure it on); *stable gets stable's
 * own for the error rate. */
static double phase_value(const fl_check_t *k, const fl_shadow_agg_t *a, const fl_shadow_agg_t *b, double *stable) {
  double pairs = (double)(a->pairs - b->pairs);
  *stable = NAN;
  switch (k->measure) {
  case FL_SM_AGREEMENT: return (double)(a->agree - b->agree) / pairs;
  case FL_SM_EXACT: return (double)(a->exact - b->exact) / pairs;
  case FL_SM_STATUS: return (double)(a->status_agree - b->status_agree) / pairs;
  case FL_SM_SIMILARITY: return (a->sum_similarity - b->sum_similarity) / (double)(a->n_text - b->n_text);
  case FL_SM_ERROR_RATE:
    *stable = (double)(a->primary_errors - b->primary_errors) / pairs;
    return (double)(a->shadow_errors - b->shadow_errors) / pairs;
  }
  return NAN;
}

bool fl_shadow_judge(const fl_check_t *checks, size_t n, const fl_shadow_agg_t *now, const fl_shadow_agg_t *from,
                     json_t **report, char *why, size_t cap) {
  json_t *list = json_array();
  bool all = true;
  size_t used = 0;
  why[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    const fl_check_t *k = &checks[i];
    double stable, v = phase_value(k, now, from, &stable);
    double bound = !isnan(k->min) ? k->min : !isnan(k->max_increase) ? k->max_increase : k->max;
    /* the increase from the counts' difference: 4% over 3% of 100 pairs is 0.01, not 0.010000000000000002 */
    double increase = (double)((int64_t)(now->shadow_errors - from->shadow_errors) -
                               (int64_t)(now->primary_errors - from->primary_errors)) / (double)(now->pairs - from->pairs);
    bool ok = isfinite(v) && (!isnan(k->min) ? v >= k->min
                              : !isnan(k->max_increase) ? increase <= k->max_increase : v <= k->max);
    json_t *c = json_pack("{s:s, s:o, s:f, s:b}", "metric", k->name, "value", isfinite(v) ? json_real(v) : json_null(),
                          "bound", bound, "passed", ok);
    if (isfinite(stable)) json_object_set_new(c, "stable", json_real(stable));
    json_array_append_new(list, c);
    if (ok) continue;
    all = false;
    int w = !isfinite(v) ? snprintf(why + used, cap - used, "%s%s: nothing to measure", used ? "; " : "", k->name)
            : !isnan(k->min) ? snprintf(why + used, cap - used, "%s%s %.3f below %.3f", used ? "; " : "", k->name, v, k->min)
            : snprintf(why + used, cap - used, "%s%s %.4f (stable %.4f) over its bound %g", used ? "; " : "", k->name, v,
                       isfinite(stable) ? stable : 0.0, bound);
    if (w > 0) used = FL_MIN(used + (size_t)w, cap - 1);
  }
  *report = json_pack("{s:I, s:o}", "pairs", (json_int_t)(now->pairs - from->pairs), "checks", list);
  return all;
}

void fl_shadow_shutdown(void) {
  for (unsigned i = 0; i < FL_MAX_SERIES; i++) {
    smon_free(tab[i]);
    tab[i] = NULL;
  }
}
