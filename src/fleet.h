/* fleet.h — the rollouts of a cluster of replicas: each decision becomes a record of the shared
 * decision log before it takes effect, and every replica applies the log to its own state store
 * and rollouts (docs/cluster.md). Nothing here without `cluster:`. Control thread only. */
#ifndef FL_FLEET_H
#define FL_FLEET_H

#include "conf.h"
#include "metrics.h"
#include "store.h"

/* With c->cluster: where this replica stands in the log (from the store), the hooks into the
 * cluster (this replica's numbers, from metrics, go to Redis with each heartbeat; the others'
 * come back and are added to every window it judges) and the rollouts, then the join: the log read to its end into the store, before the
 * rollouts are bound and any traffic is taken. Redis out of reach at start is logged and the
 * replica starts from its own store (fail static). The store outlives every other call. Call
 * after fl_cluster_start. Returns 0 or FL_EIO (no random bytes for the run's id). */
int fl_fleet_start(fl_store_t *store, const fl_metrics_src_t *metrics, const fl_conf_t *c);

/* The snapshot in force (its routes are the ones a log begun anew is seeded with); not kept
 * beyond the next call. */
void fl_fleet_set_conf(const fl_conf_t *c);

/* A route state as the log carries it, and back (0, or FL_EINVAL for a malformed one). */
json_t *fl_fleet_state_json(const fl_route_state_t *st);
int fl_fleet_state_parse(const json_t *j, fl_route_state_t *st);

#endif
