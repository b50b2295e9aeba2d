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

/* ---- the tests ---- */

/* U of the canary under ties within a bucket, its mean and standard deviation under no
 * difference (tie-corrected); sd 0 when a side is empty or everything ties. */
typedef struct { double u, mean, sd; } mw_t;

static mw_t mann_whitney(const fl_hist_snap_t *c, const fl_hist_snap_t *s) {
  mw_t r = {0, 0, 0};
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
  if (n1 == 0 || n2 == 0) return r;
  double n = n1 + n2, var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)));
  r.u = rank_sum - n1 * (n1 + 1) / 2;
  r.mean = n1 * n2 / 2;
  r.sd = var > 0 ? sqrt(var) : 0;
  return r;
}

/* The continuity-corrected upper tail: evidence that the canary's values tend to be larger. */
static double mw_upper(mw_t m) { return m.sd > 0 ? fl_stats_normal_sf((m.u - m.mean - 0.5) / m.sd) : 1; }
static double mw_lower(mw_t m) { return m.sd > 0 ? fl_stats_normal_sf((m.mean - m.u - 0.5) / m.sd) : 1; }

fl_test_t fl_analysis_mann_whitney_hist(const fl_hist_snap_t *c, const fl_hist_snap_t *s) {
  mw_t m = mann_whitney(c, s);
  return (fl_test_t){m.u, mw_upper(m)};
}

static double spent(double budget, uint32_t look) {
  double k = FL_MAX(look, 1);
  return budget * 6 / (M_PI * M_PI * k * k);
}

double fl_analysis_look_alpha(const fl_rollout_spec_t *spec, uint32_t look) {
  size_t judged = 0;
  for (size_t i = 0; i < spec->n_steps; i++) judged += spec->steps_bp[i] < 10000;
  return spent((1 - spec->confidence) / (double)FL_MAX(spec->n_checks, 1) / (double)FL_MAX(judged, 1), look);
}

double fl_analysis_look_beta(const fl_rollout_spec_t *spec, uint32_t look) {
  return spent(1 - spec->confidence, look);
}

/* ---- one check ---- */

/* A check's numbers at a look. p_beyond: evidence that the canary is beyond the relative bound;
 * p_within: that it is within (NaN: no test, the bound alone decides). */
typedef struct {
  double canary, stable;
  uint64_t n_canary, n_stable;         /* the values each side is measured on */
  const char *test;                    /* the test's name, or NULL */
  double statistic, p_beyond, p_within;
  bool measurable;
  char reason[192];                    /* why not measurable */
} fl_measure_t;

static fl_measure_t unmeasured(void) {
  return (fl_measure_t){.canary = NAN, .stable = NAN, .statistic = NAN, .p_beyond = NAN, .p_within = NAN};
}

static void test_z(fl_measure_t *m, const char *name, double z) {
  m->test = name;
  m->statistic = z;
  m->p_beyond = fl_stats_normal_sf(z);
  m->p_within = fl_stats_normal_sf(-z);
}

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

/* A share of answers (errors, NaNs, empty answers...): the margin's test on the counts. */
static fl_measure_t measure_counts(const fl_check_t *k, uint64_t xc, uint64_t nc, uint64_t xs, uint64_t ns,
                                   const char *nothing) {
  fl_measure_t m = unmeasured();
  m.canary = share(xc, nc);
  m.stable = share(xs, ns);
  m.n_canary = nc;
  m.n_stable = ns;
  m.measurable = nc > 0 && (ns > 0 || isnan(k->max_increase));
  if (!m.measurable) snprintf(m.reason, sizeof m.reason, "%s", nothing);
  if (m.measurable && !isnan(k->max_increase))
    test_z(&m, "difference of rates (Agresti-Caffo)", fl_stats_rate_margin(xc, nc, xs, ns, k->max_increase).statistic);
  return m;
}

/* Drift has no stable value of its own: stable is the reference distribution. A PSI is judged
 * with the chi-square test of its own bins, and only once the PSI two equal samples show by
 * chance, (bins − 1)(1/n + 1/m), is at most half the bound: below that a PSI over the bound says
 * nothing, and one under it does not say the canary is fine. */
static fl_measure_t measure_drift(const fl_check_t *k, const fl_drift_t *d) {
  fl_measure_t m = unmeasured();
  m.n_canary = d ? d->n_a : 0;
  m.n_stable = d ? d->n_b : 0;
  m.measurable = d && d->n_a >= FL_DRIFT_MIN && d->n_b >= FL_DRIFT_MIN;
  if (!m.measurable) {
    snprintf(m.reason, sizeof m.reason, "fewer than %d values on a side: %llu canary, %llu stable", FL_DRIFT_MIN,
             (unsigned long long)m.n_canary, (unsigned long long)m.n_stable);
    return m;
  }
  fl_test_t t = k->stat == 'p' ? d->psi_test : k->stat == 'k' ? d->ks : d->chi2;
  m.canary = k->stat == 'p' ? d->psi : k->stat == 'k' ? d->ks.statistic : d->js;
  m.test = k->stat == 'k' ? "Kolmogorov-Smirnov" : "chi-square on the bins";
  m.statistic = t.statistic;
  m.p_beyond = t.p_value;
  if (k->stat == 'p' && fl_stats_psi_noise(d->psi_bins, d->n_a, d->n_b) > k->max / 2) {
    m.measurable = false;
    snprintf(m.reason, sizeof m.reason, "too few values to tell a PSI of %g from noise: %zu canary, %zu stable, "
             "need %zu each", k->max, d->n_a, d->n_b, fl_stats_psi_min_n(d->psi_bins, k->max));
  }
  return m;
}

/* Mean scores, and a z-test of stable − canary against max_decrease. */
static fl_measure_t measure_feedback(const fl_check_t *k, const fl_data_snap_t *c, const fl_data_snap_t *s) {
  fl_measure_t m = unmeasured();
  double nc = (double)c->feedback, ns = (double)s->feedback;
  m.n_canary = c->feedback;
  m.n_stable = s->feedback;
  m.measurable = c->feedback >= FL_FEEDBACK_MIN && s->feedback >= FL_FEEDBACK_MIN;
  if (!m.measurable) {
    snprintf(m.reason, sizeof m.reason, "too little feedback: %llu canary, %llu stable, %d needed each",
             (unsigned long long)c->feedback, (unsigned long long)s->feedback, FL_FEEDBACK_MIN);
    return m;
  }
  m.canary = c->feedback_sum / nc;
  m.stable = s->feedback_sum / ns;
  double var_c = FL_MAX(c->feedback_sumsq / nc - m.canary * m.canary, 0) * nc / (nc - 1);
  double var_s = FL_MAX(s->feedback_sumsq / ns - m.stable * m.stable, 0) * ns / (ns - 1);
  double diff = m.stable - m.canary - k->max_decrease, se = sqrt(var_c / nc + var_s / ns);
  test_z(&m, "difference of mean scores (z)", se > 0 ? diff / se : (diff > 0 ? INFINITY : -INFINITY));
  return m;
}

/* Latency or time to first token: the quantile for the bound, the rank test for the evidence. */
static fl_measure_t measure_hist(const fl_check_t *k, const fl_hist_snap_t *hc, const fl_hist_snap_t *hs,
                                 uint64_t canary_requests) {
  static fl_hist_snap_t shifted;    /* control thread only; large */
  fl_measure_t m = unmeasured();
  m.n_canary = hc->count;
  m.n_stable = hs->count;
  m.measurable = hc->count > 0 && hs->count > 0;
  if (!m.measurable) {
    snprintf(m.reason, sizeof m.reason, "%s",
             k->kind == FL_CHECK_TTFT && canary_requests > 0 ? "no streamed requests" : "no answers timed");
    return m;
  }
  m.canary = quantile_s(hc, k->quantile);
  m.stable = quantile_s(hs, k->quantile);
  if (isnan(k->max_ratio)) return m;
  scaled(hc, k->max_ratio, &shifted);
  mw_t u = mann_whitney(&shifted, hs);
  m.test = "Mann-Whitney U of canary/max_ratio against stable";
  m.statistic = u.u;
  m.p_beyond = mw_upper(u);
  m.p_within = mw_lower(u);
  return m;
}

/* A level now (watched processes, a scraped backend metric): the bound alone decides. */
static fl_measure_t measure_level(const fl_check_t *k, bool known_c, double c, bool known_s, double s) {
  fl_measure_t m = unmeasured();
  m.measurable = known_c && (known_s || isnan(k->max_ratio));
  if (!m.measurable) snprintf(m.reason, sizeof m.reason, "%s", "no value for a variant yet");
  m.canary = c;
  m.stable = s;
  return m;
}

static fl_measure_t measure(const fl_check_t *k, unsigned index, const fl_series_snap_t *c, const fl_series_snap_t *s,
                            const fl_drift_t *drift) {
  switch (k->kind) {
  case FL_CHECK_ERROR_RATE:
    return measure_counts(k, FL_MIN(c->errors, c->requests), c->requests, FL_MIN(s->errors, s->requests), s->requests,
                          "no answers");
  case FL_CHECK_DATA_RATE: {
    uint64_t xc, nc, xs, ns;
    fl_data_rate(&c->data, k->rate, &xc, &nc);
    fl_data_rate(&s->data, k->rate, &xs, &ns);
    return measure_counts(k, xc, nc, xs, ns, "no answers the data monitor read");
  }
  case FL_CHECK_LATENCY: return measure_hist(k, &c->duration, &s->duration, c->requests);
  case FL_CHECK_TTFT: return measure_hist(k, &c->ttft, &s->ttft, c->requests);
  case FL_CHECK_LATENCY_PER_TOKEN: {      /* totals only: the ratio bound, no per-request test */
    fl_measure_t m = unmeasured();
    m.measurable = c->completion_tokens > 0 && s->completion_tokens > 0;
    if (!m.measurable) snprintf(m.reason, sizeof m.reason, "%s", "no completion tokens counted");
    m.canary = c->duration.sum_us / 1e6 / (double)c->completion_tokens;
    m.stable = s->duration.sum_us / 1e6 / (double)s->completion_tokens;
    return m;
  }
  case FL_CHECK_DRIFT: return measure_drift(k, drift);
  case FL_CHECK_FEEDBACK: return measure_feedback(k, &c->data, &s->data);
  case FL_CHECK_PROCESS: {
    bool rss = strcmp(k->name, "process_rss") == 0;
    return measure_level(k, c->has_process, rss ? c->process_rss : c->process_cpu, s->has_process,
                         rss ? s->process_rss : s->process_cpu);
  }
  case FL_CHECK_BACKEND:
    return measure_level(k, c->backend_known[index], c->backend[index], s->backend_known[index], s->backend[index]);
  case FL_CHECK_QUERY: {                  /* never a pass on no answer: it waits, saying why */
    fl_measure_t m = measure_level(k, c->backend_known[index], c->backend[index], s->backend_known[index],
                                   s->backend[index]);
    if (!isnan(k->max_increase) && !s->backend_known[index]) m.measurable = false;
    if (!m.measurable)
      snprintf(m.reason, sizeof m.reason, "%s", "the query gave no value (its query_error says why)");
    return m;
  }
  }
  return unmeasured();
}

/* Is the point estimate beyond the check's relative bound? */
static bool beyond_bound(const fl_check_t *k, const fl_measure_t *m) {
  if (!isnan(k->max_increase)) return m->canary - m->stable > k->max_increase;
  if (!isnan(k->max_ratio)) return m->stable > 0 ? m->canary / m->stable > k->max_ratio : m->canary > 0;
  if (!isnan(k->max_decrease)) return m->stable - m->canary > k->max_decrease;
  return false;
}

/* A check fails when the canary is over an absolute max (a drift measure: and its test agrees at
 * this look's alpha; a drift without a test is no evidence), or significantly beyond its relative
 * bound; passes when it is under the max and significantly within the relative bound (with no
 * test: within it); else it waits, saying why in reason. */
static fl_verdict_t judge(const fl_check_t *k, const fl_measure_t *m, double alpha, double beta, json_t *out,
                          char *reason, size_t cap) {
  if (!m->measurable) {
    snprintf(reason, cap, "%s", m->reason);
    return FL_VERDICT_INCONCLUSIVE;
  }
  bool tested = !isnan(m->p_beyond), relative = !isnan(k->max_increase) || !isnan(k->max_ratio) || !isnan(k->max_decrease);
  bool significant = tested && m->p_beyond < alpha, beyond = relative && beyond_bound(k, m);
  bool above_max = !isnan(k->max) && m->canary > k->max;
  bool over_max = above_max && (k->kind != FL_CHECK_DRIFT || significant);
  json_object_set_new(out, "significant", json_boolean(significant));
  json_object_set_new(out, "beyond_bound", json_boolean(beyond));
  json_object_set_new(out, "over_max", json_boolean(over_max));
  if (over_max || (beyond && (significant || !tested))) return FL_VERDICT_FAIL;
  bool within = !relative || (isnan(m->p_within) ? !beyond : m->p_within < beta);
  if (within && !above_max) return FL_VERDICT_PASS;
  if (above_max)
    snprintf(reason, cap, "above its max (%g > %g) but not significantly yet: p %.3g, this look needs below %.3g",
             m->canary, k->max, m->p_beyond, alpha);
  else
    snprintf(reason, cap, "not yet shown within its bound: p %.3g, this look needs below %.3g", m->p_within, beta);
  return FL_VERDICT_INCONCLUSIVE;
}

static json_t *variant_inputs(const fl_series_snap_t *v) {
  return json_pack("{s:I, s:I, s:I}", "requests", (json_int_t)v->requests, "errors", (json_int_t)v->errors,
                   "completion_tokens", (json_int_t)v->completion_tokens);
}

/* One check at this look, as JSON (new reference); its verdict in *v, and its reason when
 * inconclusive in reason. */
static json_t *check_result(const fl_check_t *k, unsigned index, const fl_series_snap_t *canary,
                            const fl_series_snap_t *stable, const fl_drift_t *drift, double alpha, double beta,
                            fl_verdict_t *v, char *reason, size_t cap) {
  fl_measure_t m = measure(k, index, canary, stable, drift ? &drift[k->feature] : NULL);
  json_t *c = fl_check_json(k);
  json_object_set_new(c, "canary", fl_json_num(m.canary));
  json_object_set_new(c, "stable", fl_json_num(m.stable));
  json_object_set_new(c, "n_canary", json_integer((json_int_t)m.n_canary));
  json_object_set_new(c, "n_stable", json_integer((json_int_t)m.n_stable));
  json_object_set_new(c, "test", m.test ? json_string(m.test) : json_string("the bound alone"));
  json_object_set_new(c, "statistic", fl_json_num(m.statistic));
  json_object_set_new(c, "p_value", fl_json_num(m.p_beyond));
  json_object_set_new(c, "p_within", fl_json_num(m.p_within));
  json_object_set_new(c, "alpha", json_real(alpha));
  json_object_set_new(c, "beta", json_real(beta));
  *v = judge(k, &m, alpha, beta, c, reason, cap);
  json_object_set_new(c, "verdict", json_string(fl_verdict_name(*v)));
  if (*v == FL_VERDICT_INCONCLUSIVE) json_object_set_new(c, "reason", json_string(reason));
  return c;
}

static uint64_t next_look_at(const fl_evidence_t *ev) {
  return (uint64_t)ceil((double)ev->looked_at * FL_LOOK_GROWTH);
}

bool fl_analysis_due(const fl_rollout_spec_t *spec, const fl_evidence_t *ev, const fl_series_snap_t *canary,
                     const fl_series_snap_t *stable) {
  return canary->requests >= spec->min_requests && stable->requests >= spec->min_requests &&
         (ev->looks == 0 || canary->requests >= next_look_at(ev));
}

/* Has the step enough new evidence for a look? If not, why not, in reason. */
static bool due_for_look(const fl_rollout_spec_t *spec, const fl_evidence_t *ev, const fl_series_snap_t *canary,
                         const fl_series_snap_t *stable, char *reason, size_t cap) {
  if (fl_analysis_due(spec, ev, canary, stable)) return true;
  if (canary->requests < spec->min_requests || stable->requests < spec->min_requests) {
    snprintf(reason, cap, "accumulating: %llu canary and %llu stable requests of the %llu each needs",
             (unsigned long long)canary->requests, (unsigned long long)stable->requests,
             (unsigned long long)spec->min_requests);
    return false;
  }
  snprintf(reason, cap, "accumulating: the next look at %llu canary requests (%llu now)",
           (unsigned long long)next_look_at(ev), (unsigned long long)canary->requests);
  return false;
}

/* All checks at one look: fails if one fails, passes if all pass, else waits for the first
 * check that could not tell (its reason, prefixed with its name, in reason). */
static fl_verdict_t look(const fl_rollout_spec_t *spec, const fl_evidence_t *ev, const fl_series_snap_t *canary,
                         const fl_series_snap_t *stable, const fl_drift_t *drift, json_t *checks, char *reason,
                         size_t cap) {
  double alpha = fl_analysis_look_alpha(spec, ev->looks), beta = fl_analysis_look_beta(spec, ev->looks);
  fl_verdict_t verdict = FL_VERDICT_PASS;
  for (size_t i = 0; i < spec->n_checks; i++) {
    fl_verdict_t v;
    char why[256] = "";
    const fl_check_t *k = &spec->checks[i];
    json_array_append_new(checks, check_result(k, (unsigned)i, canary, stable, drift, alpha, beta, &v, why, sizeof why));
    if (v == FL_VERDICT_INCONCLUSIVE && verdict == FL_VERDICT_PASS) snprintf(reason, cap, "%s: %s", k->name, why);
    if (v == FL_VERDICT_FAIL) verdict = FL_VERDICT_FAIL;
    else if (v == FL_VERDICT_INCONCLUSIVE && verdict == FL_VERDICT_PASS) verdict = FL_VERDICT_INCONCLUSIVE;
  }
  return verdict;
}

json_t *fl_analysis_run(const fl_rollout_spec_t *spec, fl_evidence_t *ev, const fl_series_snap_t *canary,
                        const fl_series_snap_t *stable, const fl_drift_t *drift, fl_verdict_t *verdict) {
  json_t *out = json_pack("{s:o, s:o, s:f}", "canary", variant_inputs(canary), "stable", variant_inputs(stable),
                          "confidence", spec->confidence);
  json_t *checks = json_array();
  char reason[320] = "";
  ev->windows++;
  bool looking = due_for_look(spec, ev, canary, stable, reason, sizeof reason);
  if (looking) {
    ev->looks++;
    ev->looked_at = canary->requests;
    *verdict = look(spec, ev, canary, stable, drift, checks, reason, sizeof reason);
  } else {
    *verdict = FL_VERDICT_INCONCLUSIVE;     /* too little new traffic: never advance, never fail */
  }
  bool held = *verdict == FL_VERDICT_INCONCLUSIVE &&
              (uint64_t)ev->windows * spec->interval_ms >= fl_spec_max_window_ms(spec);
  json_object_set_new(out, "evidence",
                      json_pack("{s:i, s:i, s:f, s:I, s:I, s:b}", "windows", (int)ev->windows, "looks", (int)ev->looks,
                                "alpha", looking ? fl_analysis_look_alpha(spec, ev->looks) : 0.0, "canary_requests",
                                (json_int_t)canary->requests, "stable_requests", (json_int_t)stable->requests, "held",
                                held));
  ev->held |= held;
  if (held)
    json_object_set_new(out, "reason", json_sprintf("held: no verdict after %u windows (max_window %gs); %s",
                                                    ev->windows, fl_spec_max_window_ms(spec) / 1000.0, reason));
  else if (*verdict == FL_VERDICT_INCONCLUSIVE)
    json_object_set_new(out, "reason", json_string(reason));
  json_object_set_new(out, "checks", checks);
  json_object_set_new(out, "verdict", json_string(fl_verdict_name(*verdict)));
  return out;
}

fl_move_t fl_analysis_move(const fl_rollout_spec_t *spec, int32_t step, uint32_t *failures, fl_verdict_t v) {
  if (v == FL_VERDICT_PASS) {
    *failures = 0;
    size_t next = (size_t)step + 1;
    return next >= spec->n_steps || spec->steps_bp[next] == 10000 ? FL_MOVE_PROMOTE : FL_MOVE_NEXT;
  }
  if (v == FL_VERDICT_FAIL && ++*failures >= spec->max_failures) return FL_MOVE_ROLL_BACK;
  return FL_MOVE_STAY;
}
