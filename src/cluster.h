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

/* True when no cluster is configured, or while this replica holds the lease, its local deadline
 * has not passed and it has read the decision log to its end since it took the lease; *epoch (when not NULL) gets the lease's fencing epoch (0 without a cluster).
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

/* ---- the shared decision log (docs/cluster.md) ---- */

/* What the rollouts' side (fleet.c) does with the log; each may be NULL. apply: one record (a
 * decision the leader made: {seq, route, state, window, events}), in order; with_state false:
 * only its history (events, window), the state coming whole by adopt after it; adopt: a route's
 * state taken whole (a replica new to the log, or one behind what it keeps); states: a new JSON
 * object of every route's state here, for a log begun anew; position: where the replica stands
 * (log id and seq) when neither apply nor adopt told it. Records and states are borrowed. */
typedef struct fl_cluster_hooks {
  void (*apply)(json_t *record, const char *log_id, uint64_t seq, bool with_state);
  void (*adopt)(const char *route, json_t *state, const char *log_id, uint64_t seq);
  json_t *(*states)(void);
  void (*position)(const char *log_id, uint64_t seq);
  char *(*counts)(void);              /* this replica's numbers as JSON text (malloc'd), sent with
                                         each heartbeat */
  void (*remote)(json_t *others);     /* the other replicas' numbers as last read: replica -> the
                                         parsed text of its counts (borrowed) */
  json_t *(*weights)(void);           /* the weights this replica serves, route -> percent (new
                                         reference), for its heartbeat */
  void (*leading)(void);              /* this replica leads now and has read the log to its end */
} fl_cluster_hooks_t;

/* The hooks, and how far this replica had applied the log (from its state store; "" and 0:
 * never). Control thread, before the loop runs. */
void fl_cluster_set_hooks(const fl_cluster_hooks_t *h, const char *log_id, uint64_t applied);

/* The log's id as this replica knows it ("" before any), and this replica's name. */
const char *fl_cluster_log_id(void);
const char *fl_cluster_replica(void);

/* At start, before any traffic: reads the log to its end (or every route's state) through the
 * hooks, waiting for Redis (each command at most a third of the lease, up to 1 s). 0, or FL_EIO
 * with the reason in err (the replica then starts from its own state store). Control thread. */
int fl_cluster_join(char *err, size_t cap);

/* Appends a decision to the log, fenced: only while this replica holds the lease and has read
 * the log to its end (fl_cluster_is_leader). state and record are JSON texts (record an object
 * without "seq"). Waits for Redis's answer (as long as fl_cluster_join). 0 with *seq, or
 * FL_EINVAL (not the leader) / FL_EIO (Redis did not take it; the replica steps down and reads
 * the log again before it may decide) with the reason in err. Control thread. */
int fl_cluster_commit(const char *route, const char *state, const char *record, uint64_t *seq, char *err, size_t cap);

/* ---- changes asked of any replica (docs/cluster.md) ---- */

/* The leader's answer to a forwarded change: its HTTP status and body (borrowed), or status 0 and
 * NULL when none came within 5 s (no leader, or the replica stops). */
typedef void (*fl_cluster_answer_fn)(void *ctx, int status, json_t *body);

/* A follower hands a change (a JSON object; "id" and "until_ms" are added to it, the caller keeps
 * its reference) to the leader through Redis; fn gets the answer later, exactly once, on this
 * thread, never from within this call. 0, or FL_EIO when Redis is out of reach or 64 wait already
 * (fn is not called). Control thread. */
int fl_cluster_forward(json_t *change, fl_cluster_answer_fn fn, void *ctx);

/* What the leader does with a change taken off the queue: a new {"status", "body"} object. */
void fl_cluster_set_actor(json_t *(*act)(const json_t *change));

/* A value every replica shares (NAME under the cluster's prefix): the first replica to offer
 * one sets it, every later one gets that (out, cap bytes). Waits for Redis like
 * fl_cluster_join. 0, FL_EINVAL (no cluster) or FL_EIO with the reason in err. Control thread. */
int fl_cluster_share(const char *name, const char *mine, char *out, size_t cap, char *err, size_t err_cap);

/* Claims WHAT:ID for the whole fleet for ttl_ms (once-only work, such as a rating of one
 * request): 0 when this replica is the first (or there is no cluster), FL_ELIMIT when one
 * claimed it before, FL_EIO when Redis is out of reach (err says so; nothing is claimed). Waits
 * for Redis like fl_cluster_join, only while the connection is up. Control thread. */
int fl_cluster_claim(const char *what, const char *id, uint32_t ttl_ms, char *err, size_t err_cap);

/* Gives a claim of this replica back (the work it was for failed), so that it may be done again. */
void fl_cluster_unclaim(const char *what, const char *id);

/* At the drain: gives the lease up when held (so another replica leads at once), closes the
 * connection and the timers. Control thread. */
void fl_cluster_stop(void);

#endif
