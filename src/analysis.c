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
  fl_hist_snap_t shifted;           /* 7 KiB of stack, not a static: any thread may judge */
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
  case FL_CHECK_SHADOW:                   /* a shadow phase's (shadow.h), never a step's */
    break;
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

/* One check at one look: its numbers, what they say (the flags only when measurable) and, when
 * inconclusive, why. */
typedef struct {
  fl_measure_t m;
  bool significant, beyond, over_max;
  fl_verdict_t verdict;
  char reason[256];
} check_look_t;

/* A check fails when the canary is over an absolute max (a drift measure: and its test agrees at
 * this look's alpha; a drift without a test is no evidence), or significantly beyond its relative
 * bound; passes when it is under the max and significantly within the relative bound (with no
 * test: within it); else it waits, saying why in c->reason. */
static fl_verdict_t judge(const fl_check_t *k, double alpha, double beta, check_look_t *c) {
  const fl_measure_t *m = &c->m;
  if (!m->measurable) {
    snprintf(c->reason, sizeof c->reason, "%s", m->reason);
    return FL_VERDICT_INCONCLUSIVE;
  }
  bool tested = !isnan(m->p_beyond), relative = !isnan(k->max_increase) || !isnan(k->max_ratio) || !isnan(k->max_decrease);
  c->significant = tested && m->p_beyond < alpha;
  c->beyond = relative && beyond_bound(k, m);
  bool above_max = !isnan(k->max) && m->canary > k->max;
  c->over_max = above_max && (k->kind != FL_CHECK_DRIFT || c->significant);
  if (c->over_max || (c->beyond && (c->significant || !tested))) return FL_VERDICT_FAIL;
  bool within = !relative || (isnan(m->p_within) ? !c->beyond : m->p_within < beta);
  if (within && !above_max) return FL_VERDICT_PASS;
  if (above_max)
    snprintf(c->reason, sizeof c->reason,
             "above its max (%g > %g) but not significantly yet: p %.3g, this look needs below %.3g", m->canary,
             k->max, m->p_beyond, alpha);
  else
    snprintf(c->reason, sizeof c->reason, "not yet shown within its bound: p %.3g, this look needs below %.3g",
             m->p_within, beta);
  return FL_VERDICT_INCONCLUSIVE;
}

/* One window closed: whether it looked and, if so, each check at that look; the verdict, and
 * whether the step is held. */
typedef struct {
  bool looking, held;
  double alpha, beta;
  check_look_t checks[FL_MAX_CHECKS];
  fl_verdict_t verdict;
} window_look_t;

/* All checks at one look: fails if one fails, passes if all pass, else waits. */
static fl_verdict_t look(const fl_rollout_spec_t *spec, const fl_series_snap_t *canary,
                         const fl_series_snap_t *stable, const fl_drift_t *drift, window_look_t *w) {
  fl_verdict_t verdict = FL_VERDICT_PASS;
  for (size_t i = 0; i < spec->n_checks; i++) {
    const fl_check_t *k = &spec->checks[i];
    check_look_t *c = &w->checks[i];
    c->m = measure(k, (unsigned)i, canary, stable, drift ? &drift[k->feature] : NULL);
    c->verdict = judge(k, w->alpha, w->beta, c);
    if (c->verdict == FL_VERDICT_FAIL) verdict = FL_VERDICT_FAIL;
    else if (c->verdict == FL_VERDICT_INCONCLUSIVE && verdict == FL_VERDICT_PASS) verdict = FL_VERDICT_INCONCLUSIVE;
  }
  return verdict;
}

static uint64_t next_look_at(const fl_evidence_t *ev) {
  return (uint64_t)ceil((double)ev->looked_at * FL_LOOK_GROWTH);
}

bool fl_analysis_due(const fl_rollout_spec_t *spec, const fl_evidence_t *ev, const fl_series_snap_t *canary,
                     const fl_series_snap_t *stable) {
  return canary->requests >= spec->min_requests && stable->requests >= spec->min_requests &&
         (ev->looks == 0 || canary->requests >= next_look_at(ev));
}

/* The judgement of a window, all of it: the evidence updated, a look when due, the verdict. The
 * window's record (its inputs, why it waits) is left to window_json, so that a window that only
 * accumulates costs a caller who wants the verdict a few comparisons. */
static void close_window(const fl_rollout_spec_t *spec, fl_evidence_t *ev, const fl_series_snap_t *canary,
                         const fl_series_snap_t *stable, const fl_drift_t *drift, window_look_t *w) {
  ev->windows++;
  w->looking = fl_analysis_due(spec, ev, canary, stable);
  w->verdict = FL_VERDICT_INCONCLUSIVE;     /* too little new traffic: never advance, never fail */
  if (w->looking) {
    ev->looks++;
    ev->looked_at = canary->requests;
    w->alpha = fl_analysis_look_alpha(spec, ev->looks);
    w->beta = fl_analysis_look_beta(spec, ev->looks);
    w->verdict = look(spec, canary, stable, drift, w);
  }
  w->held = w->verdict == FL_VERDICT_INCONCLUSIVE &&
            (uint64_t)ev->windows * spec->interval_ms >= fl_spec_max_window_ms(spec);
  ev->held |= w->held;
}

/* ---- the record of a window ---- */

static json_t *variant_inputs(const fl_series_snap_t *v) {
  return json_pack("{s:I, s:I, s:I}", "requests", (json_int_t)v->requests, "errors", (json_int_t)v->errors,
                   "completion_tokens", (json_int_t)v->completion_tokens);
}

/* One check at a look, as JSON (new reference). */
static json_t *check_json(const fl_check_t *k, const check_look_t *c, double alpha, double beta) {
  const fl_measure_t *m = &c->m;
  json_t *j = fl_check_json(k);
  json_object_set_new(j, "canary", fl_json_num(m->canary));
  json_object_set_new(j, "stable", fl_json_num(m->stable));
  json_object_set_new(j, "n_canary", json_integer((json_int_t)m->n_canary));
  json_object_set_new(j, "n_stable", json_integer((json_int_t)m->n_stable));
  json_object_set_new(j, "test", m->test ? json_string(m->test) : json_string("the bound alone"));
  json_object_set_new(j, "statistic", fl_json_num(m->statistic));
  json_object_set_new(j, "p_value", fl_json_num(m->p_beyond));
  json_object_set_new(j, "p_within", fl_json_num(m->p_within));
  json_object_set_new(j, "alpha", json_real(alpha));
  json_object_set_new(j, "beta", json_real(beta));
  if (m->measurable) {
    json_object_set_new(j, "significant", json_boolean(c->significant));
    json_object_set_new(j, "beyond_bound", json_boolean(c->beyond));
    json_object_set_new(j, "over_max", json_boolean(c->over_max));
  }
  json_object_set_new(j, "verdict", json_string(fl_verdict_name(c->verdict)));
  if (c->verdict == FL_VERDICT_INCONCLUSIVE) json_object_set_new(j, "reason", json_string(c->reason));
  return j;
}

/* Why an inconclusive window waits: the step's evidence too thin for a look, or the first check
 * (in the spec's order) that could not tell, prefixed with its name. */
static void waiting_reason(const fl_rollout_spec_t *spec, const fl_evidence_t *ev, const fl_series_snap_t *canary,
                           const fl_series_snap_t *stable, const window_look_t *w, char *reason, size_t cap) {
  reason[0] = '\0';
  if (!w->looking && (canary->requests < spec->min_requests || stable->requests < spec->min_requests))
    snprintf(reason, cap, "accumulating: %llu canary and %llu stable requests of the %llu each needs",
             (unsigned long long)canary->requests, (unsigned long long)stable->requests,
             (unsigned long long)spec->min_requests);
  else if (!w->looking)
    snprintf(reason, cap, "accumulating: the next look at %llu canary requests (%llu now)",
             (unsigned long long)next_look_at(ev), (unsigned long long)canary->requests);
  else
    for (size_t i = 0; i < spec->n_checks; i++)
      if (w->checks[i].verdict == FL_VERDICT_INCONCLUSIVE) {
        snprintf(reason, cap, "%s: %s", spec->checks[i].name, w->checks[i].reason);
        break;
      }
}

/* The window as fl_analysis_run returns it (new reference). */
static json_t *window_json(const fl_rollout_spec_t *spec, const fl_evidence_t *ev, const fl_series_snap_t *canary,
                           const fl_series_snap_t *stable, const window_look_t *w) {
  json_t *out = json_pack("{s:o, s:o, s:f}", "canary", variant_inputs(canary), "stable", variant_inputs(stable),
                          "confidence", spec->confidence);
  json_t *checks = json_array();
  if (w->looking)
    for (size_t i = 0; i < spec->n_checks; i++)
      json_array_append_new(checks, check_json(&spec->checks[i], &w->checks[i], w->alpha, w->beta));
  json_object_set_new(out, "evidence",
                      json_pack("{s:i, s:i, s:f, s:I, s:I, s:b}", "windows", (int)ev->windows, "looks", (int)ev->looks,
                                "alpha", w->looking ? w->alpha : 0.0, "canary_requests", (json_int_t)canary->requests,
                                "stable_requests", (json_int_t)stable->requests, "held", w->held));
  char reason[320];
  if (w->verdict == FL_VERDICT_INCONCLUSIVE) waiting_reason(spec, ev, canary, stable, w, reason, sizeof reason);
  if (w->held)
    json_object_set_new(out, "reason", json_sprintf("held: no verdict after %u windows (max_window %gs); %s",
                                                    ev->windows, fl_spec_max_window_ms(spec) / 1000.0, reason));
  else if (w->verdict == FL_VERDICT_INCONCLUSIVE)
    json_object_set_new(out, "reason", json_string(reason));
  json_object_set_new(out, "checks", checks);
  json_object_set_new(out, "verdict", json_string(fl_verdict_name(w->verdict)));
  return out;
}

json_t *fl_analysis_run(const fl_rollout_spec_t *spec, fl_evidence_t *ev, const fl_series_snap_t *canary,
                        const fl_series_snap_t *stable, const fl_drift_t *drift, fl_verdict_t *verdict) {
  window_look_t w;
  close_window(spec, ev, canary, stable, drift, &w);
  *verdict = w.verdict;
  return window_json(spec, ev, canary, stable, &w);
}

fl_verdict_t fl_analysis_verdict(const fl_rollout_spec_t *spec, fl_evidence_t *ev, const fl_series_snap_t *canary,
                                 const fl_series_snap_t *stable, const fl_drift_t *drift) {
  window_look_t w;
  close_window(spec, ev, canary, stable, drift, &w);
  return w.verdict;
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
