/* rollout.h — progressive rollouts: the canary's weight moves step by step while each window's
 * analysis passes, holds when it is inconclusive, and drops to 0 when windows fail. Every change
 * is written to the state store before it takes effect and explained in the event log.
 * Control thread only. */
#ifndef FL_ROLLOUT_H
#define FL_ROLLOUT_H

#include "analysis.h"
#include "conf.h"
#include "http.h"
#include "metrics.h"
#include "store.h"
#include <uv.h>

/* The store, metrics and loop (for acceptance reports) the rollouts use; all outlive every other
 * call here. republish (may be NULL) is called when a route's running versions change (a
 * promotion finished or undone): the caller should soon prepare the same config again (through
 * fl_rollouts_overlay) and publish it; it must not do so from within the call. */
void fl_rollouts_init(fl_store_t *store, const fl_metrics_src_t *metrics, uv_loop_t *loop, void (*republish)(void));

/* Before a snapshot is bound: each route whose promotion finished, and whose file still names the
 * promoted version as its canary and the one it replaced as stable, serves the canary's section
 * as its stable version (labels, metrics, answers say stable and its version) and has no canary;
 * the file's stable section waits in variant[FL_CANARY] for an undo (stable_promoted). */
void fl_rollouts_overlay(fl_conf_t *c);

/* Was a republish asked for since the last call? (Clears it.) At start, before any traffic. */
bool fl_rollouts_take_republish(void);

/* After a config is loaded, before it is published: the first time, weights and rollouts in
 * progress are restored from the store (a crash resumes at the same step and weight); every
 * time, a weight the file changed is applied and recorded (source "reload", pausing a rollout
 * in progress: live.h leaves it to this), and the routes' current state is written back. */
void fl_rollouts_bind(const fl_conf_t *c, bool first);

/* In a cluster, when this replica comes to lead: what its file says and the log does not yet
 * (a canary version deployed while it followed, a weight changed in the file) is decided now,
 * as a reload would. */
void fl_rollouts_rebind(void);

/* Once a second: closes windows that are due, judges them and acts. */
void fl_rollouts_tick(const fl_conf_t *c);

/* Starts a rollout of route's canary with spec (JSON, borrowed; NULL: defaults). actor names who
 * asked ("api", "config"). Returns 0, or with a message in err FL_EPARSE (the spec is not valid),
 * FL_ENOENT (no such route) or FL_EINVAL (the route's state or config does not allow it). */
int fl_rollout_start(const fl_conf_t *c, const char *route, const json_t *spec, const char *actor, char *err,
                     size_t err_cap);

/* pause | resume | promote | abort | undo. */
int fl_rollout_act(const fl_conf_t *c, const char *route, const char *action, const char *actor, char *err,
                   size_t err_cap);

/* Sets a weight by hand (the admin API; source: "api", or what the caller says it is, "cli");
 * persisted first, recorded as a "weight" event with the source and detail (stolen, may be
 * NULL: the client's address, ...); pauses a rollout in progress, saying why. */
int fl_rollout_set_weight(const fl_conf_t *c, const char *route, uint32_t weight_bp, const char *source,
                          json_t *detail, char *err, size_t err_cap);

/* In a cluster (fleet.c): every decision is offered to fn first, with the whole record (fn may
 * set its setting_key/value, written in the same transaction); one fn refuses (non-zero, the
 * reason in err) does not take effect, and the route goes back to its recorded state. */
typedef int (*fl_rollouts_share_fn)(fl_store_decision_t *d, char *err, size_t cap);
/* And the other replicas' numbers: mark notes where each stands when a step begins (a new
 * reference, kept with the step), add adds what each did since to a window and says how many
 * it added, values gives their drift values since the mark. */
typedef struct fl_rollouts_remote {
  json_t *(*mark)(const char *route, fl_variant_id_t id, const char *version);
  unsigned (*add)(const char *route, fl_variant_id_t id, const char *version, const json_t *marks,
                  fl_series_snap_t *win);
  /* their sampled values of an output feature since the mark, for drift (malloc'd into *out) */
  size_t (*values)(const char *route, fl_variant_id_t id, const char *version, unsigned feature, const json_t *marks,
                   double **out);
} fl_rollouts_remote_t;
void fl_rollouts_share(fl_rollouts_share_fn fn, const fl_rollouts_remote_t *remote);

/* A route's state decided elsewhere (a record of the cluster's log, already in the store):
 * taken as it is, weight included. A route the snapshot does not have is left to the store. */
void fl_rollouts_adopt(const fl_route_state_t *st);

/* The rollout state of a route for the API (new reference; {"state": "idle"} when none). */
json_t *fl_rollout_json(const char *route);

/* fledge_state_store_*, fledge_rollout_* and fledge_analysis_* families for /metrics: an
 * fl_metrics_expo_fn (metrics.h); ctx unused. */
void fl_rollouts_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx);

void fl_rollouts_shutdown(void);

#endif
