/* analysis.h — the judgement of one rollout window: canary against stable over the same time,
 * each check a one-sided test (is the canary significantly worse?) together with a bound (is it
 * worse by more than we accept?). A check fails only when both hold; too little traffic makes
 * the window inconclusive. Pure functions of the two variants' numbers; control thread. */
#ifndef FL_ANALYSIS_H
#define FL_ANALYSIS_H

#include "metrics.h"
#include "netaddr.h"
#include "stats.h"
#include <jansson.h>

#define FL_MAX_CHECKS 16
#define FL_MAX_STEPS 16
#define FL_MAX_HOOKS 4

typedef enum {
  FL_CHECK_ERROR_RATE,          /* share of answers with status ≥ 500 (upstream failures included) */
  FL_CHECK_LATENCY,             /* latency_pNN: total duration, quantile NN */
  FL_CHECK_TTFT,                /* ttft_pNN: time to first token, quantile NN */
  FL_CHECK_LATENCY_PER_TOKEN,   /* total duration / completion tokens, so longer answers are not penalised */
  FL_CHECK_DATA_RATE,           /* nan_rate, empty_answer_rate, ...: a data-quality share (monitor.h) */
  FL_CHECK_DRIFT,               /* FEATURE_psi, FEATURE_ks, FEATURE_js: canary against stable */
  FL_CHECK_FEEDBACK,            /* feedback_score: mean user score */
  FL_CHECK_PROCESS,             /* process_rss, process_cpu: the variant's watched processes now */
  FL_CHECK_BACKEND,             /* backend:FAMILY: a scraped model-server metric now (scrape.h) */
} fl_check_kind_t;

typedef struct fl_check {
  fl_check_kind_t kind;
  double quantile;              /* 0.5, 0.95, 0.99 ... for LATENCY and TTFT */
  char name[128];               /* as written: "latency_p99", "backend:vllm:kv_cache_usage_perc" */
  double max_increase;          /* error_rate: canary − stable at most this; NAN: no such bound */
  double max_ratio;             /* latency-like: canary / stable at most this; NAN: none */
  double max;                   /* absolute bound on the canary's value (a rate, or seconds); NAN: none */
  double max_decrease;          /* feedback_score: stable − canary at most this; NAN: none */
  int rate;                     /* DATA_RATE: fl_data_rate_find() index */
  unsigned feature;             /* DRIFT: fl_feature_t */
  char stat;                    /* DRIFT: 'p' PSI, 'k' Kolmogorov–Smirnov, 'j' Jensen–Shannon */
} fl_check_t;

#define FL_FEEDBACK_MIN 10        /* feedback per variant and window below which the check is inconclusive */

/* webhooks: - { on: [started, step, promoted, rolled_back], url: http://127.0.0.1:9999/hook } */
typedef struct fl_hook {
  char url[256];
  fl_addr_t addr;
  char path[256];
  char on[8][16];               /* event names; none: every event */
  size_t n_on;
} fl_hook_t;

typedef struct fl_rollout_spec {
  uint32_t steps_bp[FL_MAX_STEPS]; size_t n_steps;   /* canary weight at each step, increasing */
  uint32_t interval_ms;         /* one analysis window per step */
  uint64_t min_requests;        /* per variant per window, else inconclusive */
  uint32_t max_failures;        /* failed windows before rollback */
  double confidence;            /* of the tests, default 0.95 */
  fl_check_t checks[FL_MAX_CHECKS]; size_t n_checks;
  fl_hook_t hooks[FL_MAX_HOOKS]; size_t n_hooks;
  char acceptance[512];         /* JSONL replayed against the canary before the first step, or "" */
  double acceptance_min_pass;   /* share of its cases that must pass, default 1.0 */
  char bad_key[48];             /* after a failed parse: the top-level key at fault ("" for none) */
} fl_rollout_spec_t;

/* Does the hook want events of this kind? ("started" also matches "rollout_started".) */
bool fl_hook_wants(const fl_hook_t *h, const char *kind);

/* From the JSON form (the same keys as the YAML in docs/rollouts.md); defaults filled in. Unknown
 * keys are errors. On error returns FL_EINVAL, a message in err and the key at fault in bad_key. */
int fl_rollout_spec_parse(const json_t *j, fl_rollout_spec_t *out, char *err, size_t err_cap);
json_t *fl_rollout_spec_json(const fl_rollout_spec_t *s);            /* new reference */

typedef enum { FL_VERDICT_PASS, FL_VERDICT_FAIL, FL_VERDICT_INCONCLUSIVE } fl_verdict_t;
const char *fl_verdict_name(fl_verdict_t v);

/* One window's numbers of a variant: the difference of two cumulative snapshots. */
void fl_window_diff(const fl_series_snap_t *end, const fl_series_snap_t *start, fl_series_snap_t *out);

/* Judges a window. drift[f] holds the window's drift of feature f, FL_F_COUNT of them (NULL: DRIFT
 * checks are inconclusive). Returns a new JSON object with the inputs, each check's values,
 * statistic, p-value and verdict, and the window's verdict (also written to *verdict). */
json_t *fl_analysis_run(const fl_rollout_spec_t *spec, const fl_series_snap_t *canary, const fl_series_snap_t *stable,
                        const fl_drift_t *drift, fl_verdict_t *verdict);

/* One-sided Mann–Whitney U on two histograms (values tied within a bucket, at its midpoint):
 * the test over every request of the window at the histograms' 2% resolution, not a sample. */
fl_test_t fl_analysis_mann_whitney_hist(const fl_hist_snap_t *canary, const fl_hist_snap_t *stable);

#endif
