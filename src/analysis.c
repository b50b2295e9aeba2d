/* analysis.c — the judgement of a window: two-proportion tests on error rates, Mann–Whitney U on
 * latency histograms, quantile ratios and absolute bounds. */
#include "analysis.h"
#include "jsonutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

const char *fl_verdict_name(fl_verdict_t v) {
  return v == FL_VERDICT_PASS ? "pass" : v == FL_VERDICT_FAIL ? "fail" : "inconclusive";
}

/* ---- one window ---- */

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
  char reason[192];            /* why not measurable, when there is more to say than "no data" */
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

/* Drift has no stable value of its own: stable is the reference distribution. A PSI is judged
 * with the chi-square test of its own bins, and only once the PSI two equal samples show by
 * chance, (bins − 1)(1/n + 1/m), is at most half the bound: below that a PSI over the bound says
 * nothing, and one under it does not say the canary is fine. */
static fl_measure_t measure_drift(const fl_check_t *k, const fl_drift_t *d) {
  fl_measure_t m = {.test = {NAN, NAN}, .stable = NAN, .canary = NAN};
  m.measurable = d && d->n_a >= FL_DRIFT_MIN && d->n_b >= FL_DRIFT_MIN;
  if (!m.measurable) {
    snprintf(m.reason, sizeof m.reason, "fewer than %d values on a side: %zu canary, %zu stable", FL_DRIFT_MIN,
             d ? d->n_a : 0, d ? d->n_b : 0);
    return m;
  }
  if (k->stat == 'p') {
    m.canary = d->psi, m.test = d->psi_test;
    if (fl_stats_psi_noise(d->psi_bins, d->n_a, d->n_b) > k->max / 2) {
      m.measurable = false;
      snprintf(m.reason, sizeof m.reason, "too few values to tell a PSI of %g from noise: %zu canary, %zu stable, "
               "need %zu each", k->max, d->n_a, d->n_b, fl_stats_psi_min_n(d->psi_bins, k->max));
    }
  }
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
  if (!m->measurable) {
    if (m->reason[0]) json_object_set_new(out, "reason", json_string(m->reason));
    return FL_VERDICT_INCONCLUSIVE;
  }
  bool significant = isnan(m->test.p_value) || m->test.p_value < alpha;
  bool beyond = false;
  if (!isnan(k->max_increase)) beyond = m->canary - m->stable > k->max_increase;
  if (!isnan(k->max_ratio)) beyond = m->stable > 0 ? m->canary / m->stable > k->max_ratio : m->canary > 0;
  if (!isnan(k->max_decrease)) beyond = m->stable - m->canary > k->max_decrease;
  /* a drift statistic beyond its bound fails only when its test agrees; a drift without a test is
   * no evidence */
  bool over_max = !isnan(k->max) && m->canary > k->max &&
                  (k->kind != FL_CHECK_DRIFT || m->test.p_value < alpha);
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
    json_t *c = fl_check_json(k);
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
