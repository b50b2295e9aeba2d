/* analysis.h — the judgement of one rollout window: canary against stable over the same time,
 * each check a one-sided test (is the canary significantly worse?) together with a bound (is it
 * worse by more than we accept?). A check fails only when both hold; too little traffic makes
 * the window inconclusive. Pure functions of the two variants' numbers (window.h) under a spec
 * (spec.h); control thread. */
#ifndef FL_ANALYSIS_H
#define FL_ANALYSIS_H

#include "monitor.h"
#include "spec.h"
#include "stats.h"
#include "window.h"
#include <jansson.h>

#define FL_FEEDBACK_MIN 10        /* feedback per variant and window below which the check is inconclusive */

typedef enum { FL_VERDICT_PASS, FL_VERDICT_FAIL, FL_VERDICT_INCONCLUSIVE } fl_verdict_t;
const char *fl_verdict_name(fl_verdict_t v);

/* Judges a window. drift[f] holds the window's drift of feature f, FL_F_COUNT of them (NULL: DRIFT
 * checks are inconclusive). Returns a new JSON object with the inputs, each check's values,
 * statistic, p-value and verdict, and the window's verdict (also written to *verdict). */
json_t *fl_analysis_run(const fl_rollout_spec_t *spec, const fl_series_snap_t *canary, const fl_series_snap_t *stable,
                        const fl_drift_t *drift, fl_verdict_t *verdict);

/* One-sided Mann–Whitney U on two histograms (values tied within a bucket, at its midpoint):
 * the test over every request of the window at the histograms' 2% resolution, not a sample. */
fl_test_t fl_analysis_mann_whitney_hist(const fl_hist_snap_t *canary, const fl_hist_snap_t *stable);

#endif
