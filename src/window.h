/* window.h — what a rollout window is made of: a series' cumulative numbers at one moment
 * (answers and histograms from metrics.c, data counters from monitor.c, levels from resources.c
 * and scrape.c), the difference of two such snapshots, and the data rates read from them. Types
 * and pure functions only, so the modules that fill a snapshot and the one that judges it
 * (analysis.c) need not include each other. Any thread. */
#ifndef FL_WINDOW_H
#define FL_WINDOW_H

#include "hist.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A series' data counters since start (filled by fl_monitor_data). Every field before
 * feedback_sum is a uint64_t counter: fl_window_diff subtracts them as an array. */
typedef struct fl_data_snap {
  uint64_t samples, unparsed;
  uint64_t answers, empty, truncated, refusals, json_asked, json_invalid, malformed;
  uint64_t values, nan, inf, nulls, input_values, input_missing, shape_mismatch;
  uint64_t feedback;                   /* feedback count and score sums (feedback.h) */
  double feedback_sum, feedback_sumsq;
} fl_data_snap_t;
#define FL_DATA_COUNTERS (offsetof(fl_data_snap_t, feedback_sum) / sizeof(uint64_t))

/* A series' cumulative numbers at one moment, for analysis windows (the difference of two). */
typedef struct fl_series_snap {
  unsigned series, series_gen;     /* whose numbers (metrics.h): a window needs both ends the same */
  uint64_t requests, errors;       /* answers, and those with status ≥ 500 (upstream failures too) */
  uint64_t completion_tokens;
  fl_hist_snap_t duration, ttft;   /* filled by fl_metrics_series (metrics.h) */
  fl_data_snap_t data;             /* the data monitor's counters (filled by fl_monitor_data) */
  bool has_process;                /* watched processes tied to this variant run (resources.h); */
  double process_rss, process_cpu; /* their resident bytes and CPU share at the snapshot */
  bool backend_known[16];          /* backend:FAMILY and query checks, by check index: the value */
  double backend[16];              /* (16 = FL_MAX_CHECKS) */
} fl_series_snap_t;

/* One window's numbers of a variant: the difference of two cumulative snapshots (levels, such as
 * a process's memory, are the end's). */
void fl_window_diff(const fl_series_snap_t *end, const fl_series_snap_t *start, fl_series_snap_t *out);

/* acc += end − start for the counted parts (answers, errors, tokens, histograms, data counters),
 * start an earlier snapshot of the same cumulative series: another replica's share of a window. */
void fl_window_add_diff(fl_series_snap_t *acc, const fl_series_snap_t *end, const fl_series_snap_t *start);

/* The data rates usable as rollout checks ("nan_rate", "empty_answer_rate", ...): the index of a
 * name (-1: none), a snapshot's numerator and denominator for one, how many there are and the
 * name of each (which below the count). */
int fl_data_rate_find(const char *name);
void fl_data_rate(const fl_data_snap_t *d, int which, uint64_t *num, uint64_t *den);
unsigned fl_data_rate_count(void);
const char *fl_data_rate_name(int which);

#endif
