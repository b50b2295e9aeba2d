/* metrics.h — per route × variant and per backend numbers, kept per worker thread without locks
 * and summed by the reader: counters, status codes, histograms, tokens, finish reasons,
 * upstream failures. The control thread exports them to Prometheus (/metrics) and keeps a ring
 * of per-second snapshots for windowed rates and quantiles (/api/v1/stats). */
#ifndef FL_METRICS_H
#define FL_METRICS_H

#include "conf.h"
#include "hist.h"
#include "http.h"
#include "llm.h"
#include "window.h"

#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>

#define FL_MAX_SERIES 512          /* (route, variant, version) named by live snapshots at once */
#define FL_MAX_BSERIES 2048        /* (route, variant, backend) named by live snapshots at once */
#define FL_SERIES_NONE UINT_MAX    /* a backend_series entry not bound */

typedef enum {
  FL_UPERR_CONNECT_REFUSED, FL_UPERR_CONNECT_TIMEOUT, FL_UPERR_RESET, FL_UPERR_TIMEOUT,
  FL_UPERR_BAD_RESPONSE, FL_UPERR_TLS, FL_UPERR_COUNT
} fl_uperr_t;

typedef atomic_uint_least64_t fl_ctr_t;

/* One worker's numbers for one (route, variant, version). Single writer: its worker. */
typedef struct fl_vstats {
  fl_ctr_t codes[600];             /* requests answered, by status (499: client went away) */
  fl_ctr_t in_flight;              /* started minus finished, by this worker (may wrap per worker) */
  fl_ctr_t retries;
  fl_ctr_t request_bytes, response_bytes;
  fl_ctr_t prompt_tokens, completion_tokens;
  fl_ctr_t finish[FL_FINISH_COUNT];
  fl_ctr_t streams, streams_cut;   /* SSE answers, and those that ended without [DONE] */
  fl_hist_t duration, ttfb, ttft, itl;
} fl_vstats_t;

/* One worker's numbers for one (route, variant, backend). */
typedef struct fl_bstats {
  fl_ctr_t requests;
  fl_ctr_t errors[FL_UPERR_COUNT];
} fl_bstats_t;

/* Why a request that should have been mirrored was not (shadow.h). */
typedef enum {
  FL_SDROP_BUSY,                   /* shadow.max_in_flight mirrors were open already */
  FL_SDROP_TOO_LARGE,              /* its body is over FL_MIRROR_MAX_BODY */
  FL_SDROP_NO_BACKEND,             /* no canary backend was available */
  FL_SDROP_INCOMPLETE,             /* the client's request never arrived whole */
  FL_SDROP_COUNT
} fl_sdrop_t;

/* One worker's numbers for the mirrors sent to one canary series: the answers as for a variant
 * (none of them counts as the variant's own traffic), and the mirrors dropped and failed. */
typedef struct fl_sstats {
  fl_vstats_t v;
  fl_ctr_t dropped[FL_SDROP_COUNT];
  fl_ctr_t errors[FL_UPERR_COUNT];
} fl_sstats_t;

/* A worker's whole table; entries are allocated by the worker on first use and published with
 * a release store, so the reader sees either NULL or a fully initialised entry. The control
 * thread frees an entry (and stores NULL) only when its series is freed: no snapshot names it,
 * so no request of that worker can touch it, and the next one to take the id starts at zero. */
typedef struct fl_wmetrics {
  _Atomic(fl_vstats_t *) vs[FL_MAX_SERIES];
  _Atomic(fl_bstats_t *) bs[FL_MAX_BSERIES];
  _Atomic(fl_sstats_t *) ss[FL_MAX_SERIES];   /* mirrors, by the canary series they went to */
} fl_wmetrics_t;

static inline void fl_ctr_add(fl_ctr_t *c, uint64_t v) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}
static inline uint64_t fl_ctr_get(const fl_ctr_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

/* Assigns series ids to every variant and backend of c from the process-wide registry, each a
 * reference: a label set some snapshot already names keeps its id and counters. Control thread
 * (or before workers start). Returns 0, or FL_ELIMIT when more than FL_MAX_SERIES or
 * FL_MAX_BSERIES would be named at once; then c may be partly bound (fl_metrics_unbind). */
int fl_metrics_bind(fl_conf_t *c);

/* Worker thread: the entry for a series, allocated on first use; NULL only when out of memory. */
fl_vstats_t *fl_metrics_vstats(fl_wmetrics_t *m, unsigned series);
fl_bstats_t *fl_metrics_bstats(fl_wmetrics_t *m, unsigned bseries);
fl_sstats_t *fl_metrics_sstats(fl_wmetrics_t *m, unsigned series);

/* The reader side: sums the workers' tables. Control thread. */
typedef struct fl_metrics_src {
  fl_wmetrics_t **workers;
  unsigned n_workers;
} fl_metrics_src_t;

/* Drops c's references (whatever part of c was bound; a second call does nothing). Call once no
 * request can hold c any more (fl_conf_shared false). A series no snapshot names is freed at
 * once: it leaves /metrics, every worker's counters for it are freed (src may be NULL before
 * workers run), the registered forget parts are told, and its id is free for the next new one
 * with a new generation. Control thread. */
void fl_metrics_unbind(const fl_metrics_src_t *src, fl_conf_t *c);

/* The Prometheus text exposition of everything: the gateway's own families, then those of each
 * registered part (below). A malloc'd, NUL-terminated string the caller frees. c gives the routes
 * whose weights and backend health are current. */
char *fl_metrics_exposition(const fl_metrics_src_t *src, const fl_conf_t *c);

/* Per-second sampling for windows: call once a second; keeps 5 minutes. Each sample is tagged
 * with its series' generation, so a window only ever sums samples of the series it is for: one
 * that began inside the window counts from zero at its start, and the samples of a freed series
 * are never read again (they leave the ring as it turns). Returns the requests answered so far,
 * every series summed (0 when out of memory). */
uint64_t fl_metrics_tick(const fl_metrics_src_t *src);

/* /api/v1/stats: totals and 1 m / 5 m windows per route and variant of c, then the registered
 * parts (below). New reference. */
json_t *fl_metrics_stats_json(const fl_metrics_src_t *src, const fl_conf_t *c);

/* ---- parts of the modules above this one ----
 * metrics.c never calls the modules that call it (rollout, monitor, resources, scrape, alog):
 * what they add to /metrics and /api/v1/stats is registered here, by the process at start
 * (server.c), and called in the order registered. Register before the admin listener runs and
 * workers start; the table lives until fl_metrics_shutdown. Each returns 0, or FL_ELIMIT when
 * FL_METRICS_MAX_PARTS of that kind are registered (then fn is never called). The callbacks run
 * on the control thread; ctx is theirs. */
#define FL_METRICS_MAX_PARTS 8

/* Appends a module's families to b; c as given to fl_metrics_exposition. */
typedef void fl_metrics_expo_fn(fl_buf_t *b, const fl_conf_t *c, void *ctx);
int fl_metrics_register_exposition(fl_metrics_expo_fn *fn, void *ctx);

/* The object set under `key` (a string that outlives the registration) in each variant of
 * /api/v1/stats, for its series; or in each route, for its name. New references. */
typedef json_t *fl_metrics_series_json_fn(unsigned series, void *ctx);
typedef json_t *fl_metrics_route_json_fn(const char *route, void *ctx);
int fl_metrics_register_series_json(const char *key, fl_metrics_series_json_fn *fn, void *ctx);
int fl_metrics_register_route_json(const char *key, fl_metrics_route_json_fn *fn, void *ctx);

/* Told when a series is freed (fl_metrics_unbind), after its generation changed and before its
 * id can be taken again: a module drops what it keeps for that id. */
typedef void fl_metrics_forget_fn(unsigned series, void *ctx);
int fl_metrics_register_forget(fl_metrics_forget_fn *fn, void *ctx);

/* Control thread: sums the workers' numbers of one series into out: which series it is, its
 * answers, errors, completion tokens and histograms (window.h; the other fields are left as
 * they are). */
void fl_metrics_series(const fl_metrics_src_t *src, unsigned series, fl_series_snap_t *out);

/* The registry, for modules that keep numbers per series of their own (monitor.h). Control
 * thread: `route="..",variant="..",version=".."` of a series (empty for a free id); the id of a
 * label set some live snapshot names (-1: none); whether an id is taken; the ids below
 * fl_metrics_series_count() are all that may be. */
void fl_metrics_series_labels(unsigned id, char *out, size_t cap);
int fl_metrics_series_find(const char *route, fl_variant_id_t variant, const char *version);
bool fl_metrics_series_live(unsigned id);
unsigned fl_metrics_series_count(void);

/* Any thread. The generation of an id: it changes when the id is taken and when it is freed, so
 * numbers tagged with an older one (a sample still queued) belong to no series now. */
unsigned fl_metrics_series_gen(unsigned id);
/* Copies the route of series id into out and returns true, while id still has generation gen. */
bool fl_metrics_series_route(unsigned id, unsigned gen, char *out, size_t cap);

/* The mirrors sent to a series, summed over the workers (shadow.h). Control thread. */
typedef struct fl_shadow_sum {
  uint64_t requests, answered_5xx, in_flight, prompt, completion;
  uint64_t dropped[FL_SDROP_COUNT], errors[FL_UPERR_COUNT];
  fl_hist_snap_t duration, ttft;
} fl_shadow_sum_t;
void fl_metrics_shadow_sum(const fl_metrics_src_t *src, unsigned series, fl_shadow_sum_t *out);
const char *fl_sdrop_name(fl_sdrop_t why);
const char *fl_uperr_name(fl_uperr_t kind);

/* How many series and backend series are taken now. Control thread. */
void fl_metrics_registry_size(unsigned *series, unsigned *bseries);

/* "# HELP" and "# TYPE" lines of a family; a label value escaped as the text format requires. */
void fl_metrics_escape(char *dst, size_t cap, const char *src);
void fl_metrics_family(fl_buf_t *b, const char *name, const char *type, const char *help);

/* Frees the registry, the ring and the parts table (at exit, after workers stopped). */
void fl_metrics_shutdown(void);

void fl_wmetrics_free(fl_wmetrics_t *m);

#endif
