/* spec.h — a rollout spec: steps, interval, checks with their bounds, webhooks, an acceptance
 * set; parsed from its JSON form (the YAML `rollout:` of a route, or the admin API's body) with
 * defaults filled in, and written back. Its own module so that conf.c validates specs at load
 * without the analysis or the rollouts. Pure functions; any thread. */
#ifndef FL_SPEC_H
#define FL_SPEC_H

#include "common.h"

#include <jansson.h>

#define FL_MAX_CHECKS 16
#define FL_MAX_STEPS 16
#define FL_MAX_HOOKS 4

typedef enum {
  FL_CHECK_ERROR_RATE,          /* share of answers with status ≥ 500 (upstream failures included) */
  FL_CHECK_LATENCY,             /* latency_pNN: total duration, quantile NN */
  FL_CHECK_TTFT,                /* ttft_pNN: time to first token, quantile NN */
  FL_CHECK_LATENCY_PER_TOKEN,   /* total duration / completion tokens, so longer answers are not penalised */
  FL_CHECK_DATA_RATE,           /* nan_rate, empty_answer_rate, ...: a data-quality share (window.h) */
  FL_CHECK_DRIFT,               /* FEATURE_psi, FEATURE_ks, FEATURE_js: canary against stable */
  FL_CHECK_FEEDBACK,            /* feedback_score: mean user score */
  FL_CHECK_PROCESS,             /* process_rss, process_cpu: the variant's watched processes now */
  FL_CHECK_BACKEND,             /* backend:FAMILY: a scraped model-server metric now (scrape.h) */
  FL_CHECK_QUERY,               /* query: a PromQL expression run against analysis.prometheus (promql.h) */
  FL_CHECK_SHADOW,              /* shadow_agreement, ...: the mirrored answers of a shadow phase (shadow.h) */
} fl_check_kind_t;

/* What a shadow check reads of the pairs compared in the phase. */
typedef enum {
  FL_SM_AGREEMENT,              /* shadow_agreement: share of pairs that agree */
  FL_SM_EXACT,                  /* shadow_exact_match: share of pairs with the same answer */
  FL_SM_SIMILARITY,             /* shadow_text_similarity: mean word overlap of text answers */
  FL_SM_STATUS,                 /* shadow_status_agreement: share of pairs with the same status class */
  FL_SM_ERROR_RATE,             /* shadow_error_rate: share of mirrors that failed (vs stable's) */
} fl_shadow_measure_t;

#define FL_QUERY_MAX 512              /* a check's PromQL, as written with its {{placeholders}} */

typedef struct fl_check {
  fl_check_kind_t kind;
  double quantile;              /* 0.5, 0.95, 0.99 ... for LATENCY and TTFT */
  char name[128];               /* as written: "latency_p99", "backend:vllm:kv_cache_usage_perc" */
  double max_increase;          /* error_rate: canary − stable at most this; NAN: no such bound */
  double max_ratio;             /* latency-like: canary / stable at most this; NAN: none */
  double max;                   /* absolute bound on the canary's value (a rate, or seconds); NAN: none */
  double max_decrease;          /* feedback_score: stable − canary at most this; NAN: none */
  double min;                   /* shadow shares and means: the canary's at least this; NAN: none */
  fl_shadow_measure_t measure;  /* SHADOW */
  int rate;                     /* DATA_RATE: fl_data_rate_find() index */
  unsigned feature;             /* DRIFT: fl_feature_t */
  char stat;                    /* DRIFT: 'p' PSI, 'k' Kolmogorov–Smirnov, 'j' Jensen–Shannon */
  char query[FL_QUERY_MAX];     /* QUERY: the expression; with {{version}} it is run once per variant
                                   and compared, else once, as the canary's value (max only) */
} fl_check_t;

/* webhooks: - { on: [started, step, promoted, rolled_back], url: https://hooks.example/fledge } */
typedef struct fl_hook {
  char url[256];                /* http:// or https://, a host name or an address (fetch.h) */
  char on[8][16];               /* event names; none: every event */
  size_t n_on;
} fl_hook_t;

typedef struct fl_rollout_spec {
  uint32_t steps_bp[FL_MAX_STEPS]; size_t n_steps;   /* canary weight at each step, increasing */
  uint32_t interval_ms;         /* how often the step's accumulated evidence is looked at */
  uint32_t max_window_ms;       /* a step without a verdict this long holds and says so; 0: 10 × interval */
  uint64_t min_requests;        /* per variant in the step's evidence before its first test */
  uint32_t max_failures;        /* failed windows before rollback */
  double confidence;            /* of the tests, default 0.95 */
  fl_check_t checks[FL_MAX_CHECKS]; size_t n_checks;
  fl_hook_t hooks[FL_MAX_HOOKS]; size_t n_hooks;
  uint32_t shadow_ms;           /* shadow.duration: the canary answers mirrored requests only, this long,
                                   before the first step; 0: no shadow phase */
  fl_check_t shadow_checks[FL_MAX_CHECKS]; size_t n_shadow_checks;   /* shadow.checks: SHADOW kind only */
  char acceptance[512];         /* JSONL replayed against the canary before the first step, or "" */
  double acceptance_min_pass;   /* share of its cases that must pass, default 1.0 */
  char bad_key[48];             /* after a failed parse: the top-level key at fault ("" for none) */
} fl_rollout_spec_t;

/* The spec's max_window in ms: as written, else 10 × interval (at most 24 h). */
uint32_t fl_spec_max_window_ms(const fl_rollout_spec_t *s);

/* Does the hook want events of this kind? ("started" also matches "rollout_started".) */
bool fl_hook_wants(const fl_hook_t *h, const char *kind);

/* From the JSON form (the same keys as the YAML in docs/rollouts.md); defaults filled in. Unknown
 * keys are errors. On error returns FL_EINVAL, a message in err and the key at fault in bad_key. */
int fl_rollout_spec_parse(const json_t *j, fl_rollout_spec_t *out, char *err, size_t err_cap);
json_t *fl_rollout_spec_json(const fl_rollout_spec_t *s);            /* new reference */

/* Does the spec have a query check (it needs analysis.prometheus)? */
bool fl_spec_has_query(const fl_rollout_spec_t *s);

/* The JSON form of a check: its metric (and query) and the bounds it has. New reference. */
json_t *fl_check_json(const fl_check_t *c);

#endif
