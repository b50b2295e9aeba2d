/* shadow.h — what the mirrors showed (shadow.h): on the monitor thread each pair of answers
 * to one request (stable's, the canary's mirror) is compared (shadow_cmp.h) into the canary
 * series' running comparison, and disagreeing pairs are kept for people to read. The control
 * thread reads it for /api/v1/stats, /metrics, the diffs endpoint and a rollout's shadow phase,
 * under a mutex that no worker takes. */
#ifndef FL_SHADOW_H
#define FL_SHADOW_H

#include "metrics.h"
#include "monitor.h"
#include "shadow_cmp.h"
#include "spec.h"

/* A pair: s is stable's exchange, s->shadow the canary's answer (both borrowed). Monitor thread. */
void fl_shadow_pair(const fl_sample_t *s);

/* The canary series' comparison so far into out; false when it has none. Any thread but a worker. */
bool fl_shadow_comparison(unsigned series, fl_shadow_agg_t *out);

/* A rollout's shadow phase judged on the pairs compared since `from` (an earlier fl_shadow_comparison
 * of the same series; zeroed: since it began): true when every check holds. *report (new
 * reference) gets {"pairs", "checks": [{"metric", "value", "stable", "bound", "passed"}]}; why,
 * the failed checks in words. Pure; any thread. */
bool fl_shadow_judge(const fl_check_t *checks, size_t n, const fl_shadow_agg_t *now, const fl_shadow_agg_t *from,
                     json_t **report, char *why, size_t cap);

/* The disagreeing pairs kept for a series, newest first (an empty array when none). New reference. */
json_t *fl_shadow_diffs_of(unsigned series);

/* The series was freed (fl_metrics_register_forget): its comparison goes. Control thread. */
void fl_shadow_forget(unsigned series, void *ctx);

/* "shadow" of a variant in /api/v1/stats: the mirrors sent to it (the workers' counters, from
 * the fl_metrics_src_t in ctx) and the comparison; NULL (no key) for a series never mirrored to.
 * An fl_metrics_series_json_fn. */
json_t *fl_shadow_series_json(unsigned series, void *ctx);

/* fledge_shadow_pairs_total, fledge_shadow_agreeing_pairs_total, ... and the means: an
 * fl_metrics_expo_fn (c and ctx unused). */
void fl_shadow_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx);

/* At exit, once the monitor thread has stopped. */
void fl_shadow_shutdown(void);

#endif
