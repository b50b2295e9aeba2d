/* promql.h — rollout checks on a team's own metrics: the PromQL queries the rollouts in progress
 * need are run against analysis.prometheus on a thread of their own (blocking HTTP never runs on
 * the control loop), each about once a second while it is wanted, and the last answer of each is
 * kept for the windows to read. An empty, ambiguous or failed answer is no value, with the reason. */
#ifndef FL_PROMQL_H
#define FL_PROMQL_H

#include "common.h"
#include "conf.h"
#include "spec.h"
#include "window.h"

#include <jansson.h>

/* Where queries go (analysis.prometheus: http[s]://HOST[:PORT][/PATH]; NULL: nowhere, every
 * value is missing). Starts the thread the first time. Control thread. 0 or FL_ENOMEM. */
int fl_promql_configure(const char *base_url);
void fl_promql_stop(void);

/* A check's query with its placeholders filled: {{canary}} and {{stable}} are those versions,
 * {{version}} is `version`, {{route}} the route. Returns the length, or 0 when out is too small. */
size_t fl_promql_expand(const char *tmpl, const char *route, const char *version, const char *canary,
                        const char *stable, char *out, size_t cap);

/* Keep this query answered (for 30 s after the last call). Control thread; never waits on the
 * network. */
void fl_promql_want(const char *query);

/* The query's last answer if it came within max_age_ms: 0 and *value; else FL_ENOENT with the
 * reason in why (not asked yet, no sample, several series, an error from Prometheus, no answer).
 * Control thread. */
int fl_promql_value(const char *query, uint64_t max_age_ms, double *value, char *why, size_t cap);

/* ---- a rollout's query checks (control thread) ---- */

/* Each tick of a rollout in progress: its queries (each variant's for a {{version}} one) are kept
 * answered, so that a window finds them fresh. */
void fl_promql_want_checks(const fl_route_t *rt, const fl_rollout_spec_t *spec);

/* Why each query check had no value in a window, by check index ("" when it had). */
typedef char fl_query_why_t[FL_MAX_CHECKS][240];

/* A window's query values, into the backend slots of c and s by check index (answers at most
 * 5 s old), and why any is missing. */
void fl_promql_window(const fl_route_t *rt, const fl_rollout_spec_t *spec, fl_series_snap_t *c, fl_series_snap_t *s,
                      fl_query_why_t why);

/* Each query check's entry in the window's record (analysis.checks) gets its query_error. */
void fl_promql_note(json_t *analysis, const fl_rollout_spec_t *spec, fl_query_why_t why);

#endif
