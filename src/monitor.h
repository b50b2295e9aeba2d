/* monitor.h — the data-quality monitor. Workers hand a share of their exchanges (bounded prefixes
 * of both bodies) to one monitoring thread through per-worker rings that drop and count when
 * full; the thread reads them (quality.h) into per-series counters, running statistics and
 * time-stamped samples of every distribution, and refreshes drift over a sliding window. The
 * control thread reads all of it under a mutex that no worker ever takes. */
#ifndef FL_MONITOR_H
#define FL_MONITOR_H

#include "conf.h"
#include "http.h"
#include "quality.h"
#include "stats.h"
#include "window.h"

#include <jansson.h>
#include <stdatomic.h>

#define FL_SAMPLE_RING 1024            /* samples waiting per worker; a power of two */

/* One exchange, captured on a worker. Owned by the exchange until pushed, then by the monitor. */
typedef struct fl_sample {
  unsigned series;                     /* metrics series of (route, variant, version) */
  unsigned series_gen;                 /* its generation: a sample of a series freed since is dropped */
  int status;
  bool stream, req_cut, resp_cut;
  uint64_t at_ms;                      /* monotonic, when the answer ended */
  fl_buf_t req, resp;                  /* de-chunked prefixes, at most data.max_body each */
  bool quality;                        /* counted in the data-quality numbers (sampled for them) */
  /* A mirrored request's stable exchange carries the canary's answer to the same request here,
   * compared on the monitor thread (shadow.h): then ms and ttft_ms are both sides' duration and
   * time to first token (NaN: none), and request_id the stable exchange's. */
  struct fl_sample *shadow;
  double ms, ttft_ms;
  char request_id[208];                /* FL_REQUEST_ID_MAX (feedback.h, which includes this one) */
} fl_sample_t;

typedef struct fl_sample_ring {
  atomic_uint head;                    /* written by the worker */
  atomic_uint tail;                    /* written by the monitor */
  atomic_uint_least64_t dropped;
  fl_sample_t *slot[FL_SAMPLE_RING];
} fl_sample_ring_t;

/* ---- worker side (no locks, no parsing) ---- */

/* The share of exchanges to sample now, in parts per million (set every second by the control
 * thread from data.sample and the traffic). */
uint32_t fl_monitor_rate_ppm(void);
/* How many exchanges a worker may sample in one second (auto: twice its share of 100). */
uint32_t fl_monitor_cap_per_worker(void);

/* Hands s over; false when the ring is full (then the drop is counted and s freed). */
bool fl_sample_push(fl_sample_ring_t *r, fl_sample_t *s);
void fl_sample_free(fl_sample_t *s);

/* ---- control thread ---- */

/* Who compares a mirrored pair (s->shadow set; shadow.h, a module above this one): called on the
 * monitor thread with the pair borrowed. Set before fl_monitor_start. */
typedef void fl_monitor_pair_fn(const fl_sample_t *s);
void fl_monitor_on_pair(fl_monitor_pair_fn *fn);

/* Starts the thread over n rings (owned by the caller, alive until fl_monitor_stop returns). */
int fl_monitor_start(const fl_conf_t *c, fl_sample_ring_t **rings, unsigned n, char *err, size_t err_cap);

/* A reloaded config (refusal patterns, window, routes). c was validated, so this only fails
 * when out of memory; the old settings stay then. */
int fl_monitor_reconfigure(const fl_conf_t *c);

/* Once a second: the sampling rate from data.sample and requests per second. */
void fl_monitor_tick(const fl_conf_t *c, uint64_t requests_total);

void fl_monitor_stop(void);

/* A series' data counters since start, for analysis windows (window.h). */
void fl_monitor_data(unsigned series, fl_data_snap_t *out);

/* Drift between two series over [from_ms, to_ms] (monotonic), b the reference: KS and PSI (with
 * the chi-square test of its own bins) for numbers, chi-square and Jensen–Shannon for categories,
 * for every output feature both series have (set[f]); NaN where a side has fewer than
 * FL_DRIFT_MIN values, and for every feature not set. n_a and n_b are counted either way. The
 * values are copied under the lock and compared without it. Any thread but a worker. */
#define FL_DRIFT_MIN 20
typedef struct fl_drift {
  size_t n_a, n_b;                     /* values compared on each side */
  double psi, js;
  fl_test_t ks, chi2;                  /* chi2: of the categories (with js) */
  fl_test_t psi_test;                  /* chi-square homogeneity on the PSI's bins */
  size_t psi_bins;                     /* bins the PSI used (cut points that tie merge) */
} fl_drift_t;

/* Values from elsewhere (other replicas of a cluster) compared with the series' own: per feature,
 * more[f].a joins series_a's and more[f].b series_b's (borrowed; NULL or 0: none). */
typedef struct fl_drift_more {
  const double *a, *b;
  size_t n_a, n_b;
} fl_drift_more_t;

void fl_monitor_window_drift(unsigned series_a, unsigned series_b, uint64_t from_ms, uint64_t to_ms,
                             const fl_drift_more_t *more, fl_drift_t out[FL_F_COUNT], bool set[FL_F_COUNT]);

/* Up to cap of a series' values of feature f seen since from_ms (monotonic), an even subsample
 * when there are more, with when each was seen (monotonic ms) in at_ms. Returns how many. Any
 * thread but a worker. */
size_t fl_monitor_values(unsigned series, unsigned f, uint64_t from_ms, double *values, uint64_t *at_ms, size_t cap);

/* Those that are set as {feature: {psi, ks_statistic, ...}}: what a rollout window records. New
 * reference. */
json_t *fl_monitor_drift_json(const fl_drift_t drift[FL_F_COUNT], const bool set[FL_F_COUNT]);

/* Feedback attributed to a series (feedback.h). */
void fl_monitor_feedback(unsigned series, double score);

/* The series was freed (metrics.h, fl_metrics_register_forget): what is kept for its id goes,
 * so that the next series to take the id starts afresh. Control thread. */
void fl_monitor_forget(unsigned series);

/* Baselines (baseline.h). set: installs {feature: [values]} for a route, from the state store
 * (saved true) or a file (saved false: it is saved next). save: calls save(route, features) for
 * each baseline ready but not saved yet, and marks it saved; the callback may block (the store).
 * json: a route's baseline state for /api/v1/stats. Control thread. */
int fl_monitor_set_baseline(const char *route, const json_t *features, bool saved, char *err, size_t err_cap);
void fl_monitor_save_baselines(void (*save)(const char *route, json_t *features, void *ctx), void *ctx);
json_t *fl_monitor_baseline_json(const char *route);

/* Appends the fledge_data_* and fledge_feedback_* families to b: an fl_metrics_expo_fn
 * (metrics.h); c and ctx unused. */
void fl_monitor_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx);

/* The "data" object of a variant in /api/v1/stats: counts, rates, features, drift. New reference. */
json_t *fl_monitor_series_json(unsigned series);

/* For tests and the stats CLI: total dropped samples. */
uint64_t fl_monitor_dropped(void);

#endif
