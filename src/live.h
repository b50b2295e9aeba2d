/* live.h — route state that changes without a reload: the canary weight in force now. One entry
 * per route name for the life of the process, shared by every snapshot that names the route, so
 * a weight set through the admin API (or, later, by a rollout) applies to the next request on
 * every worker at once. Workers read it with one relaxed atomic load. */
#ifndef FL_LIVE_H
#define FL_LIVE_H

#include "conf.h"
#include <stdatomic.h>

typedef struct fl_live {
  char route[64];
  atomic_uint weight_bp;             /* the weight in force, 0..10000 */
  atomic_bool held;                  /* the canary was rolled back or awaits its acceptance set: rules
                                        may not send anyone to it (a trusted override still may) */
  atomic_uint shadow_bp;             /* a rollout's shadow phase mirrors this share of stable's users
                                        to the canary (0: none; the route's shadow section applies) */
  uint32_t config_weight_bp;         /* the config file's weight as last taken (control thread) */
  bool seen;                         /* a config has named this route (control thread) */
} fl_live_t;

/* Binds every route of c to its live entry. A route seen for the first time takes the file's
 * weight; otherwise the weight in force is kept: a reload does not undo a weight set at run time,
 * and a weight the file changed is not applied here but by the rollouts (fl_rollouts_bind), which
 * persist it, record it and pause a rollout it overrides (fl_live_file_moved). Control thread.
 * Returns 0, FL_ENOMEM or FL_ELIMIT. */
int fl_live_bind(fl_conf_t *c);

/* Whether r's weight in the file differs from the file's weight last taken: a reload changed it
 * and it is not applied yet. Control thread. */
static inline bool fl_live_file_moved(const fl_route_t *r) {
  return r->live && r->live->config_weight_bp != r->canary_weight_bp;
}

/* The file's weight has been dealt with (applied or superseded): later loads compare with it. */
void fl_live_set_file_weight(fl_live_t *l, uint32_t config_weight_bp);

/* The weight in force for r (its live entry's, or the snapshot's when unbound). Any thread. */
static inline uint32_t fl_live_weight(const fl_route_t *r) {
  return r->live ? atomic_load_explicit(&r->live->weight_bp, memory_order_relaxed) : r->canary_weight_bp;
}

static inline bool fl_live_held(const fl_route_t *r) {
  return r->live && atomic_load_explicit(&r->live->held, memory_order_relaxed);
}

/* The share mirrored by a rollout's shadow phase now (0: none). Any thread. */
static inline uint32_t fl_live_shadow(const fl_route_t *r) {
  return r->live ? atomic_load_explicit(&r->live->shadow_bp, memory_order_relaxed) : 0;
}

/* Sets the weight in force, and the hold. Control thread. */
void fl_live_set_weight(fl_live_t *l, uint32_t weight_bp);
void fl_live_set_held(fl_live_t *l, bool held);
void fl_live_set_shadow(fl_live_t *l, uint32_t shadow_bp);

#endif
