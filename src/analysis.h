/* analysis.h — the judgement of a rollout step: canary against stable over the same time, on the
 * evidence accumulated since the step began. Each look at that evidence spends a share of the
 * rollout's error budget (1 − confidence), so that looking often never raises the chance of a
 * wrong verdict; at a look each check fails (the canary significantly beyond its bound), passes
 * (significantly within it) or stays inconclusive and says why. Pure functions of the two
 * variants' numbers (window.h) under a spec (spec.h), with no state of their own: the control
 * thread calls them, and the simulation from several threads at once. */
#ifndef FL_ANALYSIS_H
#define FL_ANALYSIS_H

#include "monitor.h"
#include "spec.h"
#include "stats.h"
#include "window.h"
#include <jansson.h>

#define FL_FEEDBACK_MIN 10        /* feedback per variant below which the check is inconclusive */
#define FL_LOOK_GROWTH 1.5        /* a step's next look waits until the canary has half as many requests again */

typedef enum { FL_VERDICT_PASS, FL_VERDICT_FAIL, FL_VERDICT_INCONCLUSIVE } fl_verdict_t;
const char *fl_verdict_name(fl_verdict_t v);

/* A step's evidence so far: zeroed when the step begins, updated by fl_analysis_run. */
typedef struct fl_evidence {
  uint32_t windows;               /* windows closed since the step began */
  uint32_t looks;                 /* tests run on the accumulated requests */
  uint64_t looked_at;             /* the canary's requests at the last look */
  bool held;                      /* max_window passed without a verdict (said once) */
} fl_evidence_t;

/* The error budgets of the k-th look at a step. A rollout may look at its evidence any number of
 * times; the k-th look of a step spends 6/(π²k²) of a budget, which sums to the budget over any
 * number of looks.
 * alpha: to fail a check. 1 − confidence shared equally by the checks and the steps to judge
 * (those below 100%), so that the chance that any check fails a canary within its bounds, at any
 * look of any step of the whole rollout, stays at most 1 − confidence.
 * beta: to pass a check. A canary is promoted only when every check passed at every step, so a
 * canary beyond one bound must be passed wrongly by that check at each step: 1 − confidence a
 * check and a step bounds that chance without sharing. */
double fl_analysis_look_alpha(const fl_rollout_spec_t *spec, uint32_t look);
double fl_analysis_look_beta(const fl_rollout_spec_t *spec, uint32_t look);

/* Will the next fl_analysis_run look (test), or only accumulate? Lets a caller skip measuring
 * drift for a window that will not be tested. */
bool fl_analysis_due(const fl_rollout_spec_t *spec, const fl_evidence_t *ev, const fl_series_snap_t *canary,
                     const fl_series_snap_t *stable);

/* Closes one window of a step. canary and stable hold the step's accumulated numbers (the
 * difference of the snapshots at the step's start and now); drift[f] the drift of feature f over
 * the same time, FL_F_COUNT of them (NULL: drift checks are inconclusive). Looks when each side
 * has min_requests and the canary grew by FL_LOOK_GROWTH since the last look; else the window is
 * inconclusive, saying what it waits for. Returns a new JSON object: the inputs, the evidence,
 * each check's numbers and sample sizes, test, statistic, p-values, threshold, verdict and
 * reason, and the window's verdict (also written to *verdict) with its reason. */
json_t *fl_analysis_run(const fl_rollout_spec_t *spec, fl_evidence_t *ev, const fl_series_snap_t *canary,
                        const fl_series_snap_t *stable, const fl_drift_t *drift, fl_verdict_t *verdict);

/* The same judgement as fl_analysis_run (the evidence updated alike, the same verdict) without
 * its record: for a caller that acts on verdicts alone, such as the simulation, whose millions
 * of windows would otherwise spend most of their time writing JSON that nobody reads. */
fl_verdict_t fl_analysis_verdict(const fl_rollout_spec_t *spec, fl_evidence_t *ev, const fl_series_snap_t *canary,
                                 const fl_series_snap_t *stable, const fl_drift_t *drift);

/* What a window's verdict does to a rollout at step (the state machine's rule, shared by the
 * rollouts and the simulation): a pass moves to the next step, or promotes when none is left or
 * the next is 100% (stable would have nothing left to compare with); a fail counts, and rolls
 * back at max_failures; otherwise the step stays. failures counts the failing looks since the
 * last pass (updated). */
typedef enum { FL_MOVE_STAY, FL_MOVE_NEXT, FL_MOVE_PROMOTE, FL_MOVE_ROLL_BACK } fl_move_t;
fl_move_t fl_analysis_move(const fl_rollout_spec_t *spec, int32_t step, uint32_t *failures, fl_verdict_t v);

/* One-sided Mann–Whitney U on two histograms (values tied within a bucket, at its midpoint):
 * the test over every request at the histograms' 2% resolution, not a sample. p_value: the
 * canary tends to be larger. */
fl_test_t fl_analysis_mann_whitney_hist(const fl_hist_snap_t *canary, const fl_hist_snap_t *stable);

#endif
