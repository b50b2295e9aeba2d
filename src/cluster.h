/* cluster.h — replicas of one gateway sharing a Redis: the connection, the leader's lease with its
 * fencing epoch, heartbeats, and what the admin API and /metrics say about them (docs/cluster.md).
 * Everything here runs on the control thread's loop; nothing on the request path touches Redis. */
#ifndef FL_CLUSTER_H
#define FL_CLUSTER_H

#include "conf.h"
#include "http.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Starts the client for c->cluster (nothing when NULL): connects, then tries for the lease and
 * writes a heartbeat on a timer. The conf is not kept: the cluster settings are copied. Control
 * thread. Returns 0 or FL_ENOMEM. */
int fl_cluster_start(uv_loop_t *loop, const fl_conf_t *c);

/* The config in force, for the heartbeat's config hash (fl_conf_t.fleet_hash); called each second with the control
 * thread's snapshot (not kept). Control thread. */
void fl_cluster_set_conf(const fl_conf_t *c);

/* True when no cluster is configured, or while this replica holds the lease and its local deadline
 * has not passed; *epoch (when not NULL) gets the lease's fencing epoch (0 without a cluster).
 * Control thread. */
bool fl_cluster_is_leader(uint64_t *epoch);

/* Whether a cluster is configured (started). Control thread. */
bool fl_cluster_enabled(void);

/* Whether the connection to Redis is up (authenticated, database selected). Control thread. */
bool fl_cluster_redis_up(void);

/* GET /api/v1/cluster: the leader, each replica's last heartbeat, config hash and whether it
 * differs from the leader's. A new reference owned by the caller; NULL without a cluster.
 * Control thread. */
json_t *fl_cluster_json(void);

/* fledge_cluster_* for /metrics (metrics.c's exposition hook). Control thread. */
void fl_cluster_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx);

/* At the drain: gives the lease up when held (so another replica leads at once), closes the
 * connection and the timers. Control thread. */
void fl_cluster_stop(void);

#endif
