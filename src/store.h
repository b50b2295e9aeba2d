/* store.h — the state store: what must survive a crash or restart (route weights and versions,
 * rollouts, every analysis window, the audit log of events). An interface over one backend now,
 * SQLite in WAL mode (store_sqlite.c); a Redis backend for many replicas can follow behind the
 * same functions. A rollout decision (state, window, events, the webhooks they owe) is written as
 * one transaction (fl_store_commit_decision). Control thread only: calls block on disk. */
#ifndef FL_STORE_H
#define FL_STORE_H

#include "common.h"
#include <jansson.h>

typedef struct fl_store fl_store_t;

/* The persistent state of one route. Strings are NUL-terminated and may be empty. */
typedef struct fl_route_state {
  char route[64];
  uint32_t weight_bp;              /* canary weight now, 0..10000 */
  uint32_t config_weight_bp;       /* the config file's weight when weight_bp was last set, so a
                                      later edit of the file can be told from a restart */
  char stable_version[64], canary_version[64];
  char previous_stable[64];        /* for `rollout undo` after a promotion */
  char rollout_state[16];          /* "", "progressing", "paused", "promoted", "rolled_back" */
  int32_t step;                    /* index into the rollout's steps, -1 when none */
  int32_t failures;                /* failed windows in this rollout */
  int64_t updated_ms;              /* Unix ms of the last write */
  char spec_json[8192];            /* the rollout spec as JSON, or "" */
  char pause_reason[256];          /* why a paused rollout was paused (a hand, a reload), or "" */
  int32_t looks;                   /* looks the step's evidence has had (analysis.h): a restart goes on
                                      spending the error budget from there, not from the start */
} fl_route_state_t;

/* Opens (creating when needed) the store at path; WAL mode, synchronous=NORMAL, schema created
 * or migrated. The file and its -wal and -shm are its owner's only (0600 when created; one open
 * to other users is narrowed, and that is logged). On error writes a message naming the file
 * into err. Caller owns *out. */
int fl_store_open(const char *path, fl_store_t **out, char *err, size_t err_cap);
void fl_store_close(fl_store_t *s);

/* Last error message of the store (SQLite's text), for logs. */
const char *fl_store_error(const fl_store_t *s);

/* Writes of routes, events, windows and settings that fail (disk full, read-only file) are
 * kept in memory, in order (at most 100,000; beyond, the oldest gives way and is counted), and
 * written again by fl_store_flush (0 once none is left, else FL_EIO) and before the next write.
 * The callers still get FL_EIO for the failed write. Feedback is never kept (its answer needs
 * the store). */
int fl_store_flush(fl_store_t *s);

typedef struct fl_store_health {
  size_t backlog;                   /* writes waiting */
  uint64_t failed_writes, dropped;  /* since open */
  char last_error[256];
} fl_store_health_t;
void fl_store_health(const fl_store_t *s, fl_store_health_t *out);

/* Insert or replace a route's state; sets updated_ms when 0. 0 or FL_EIO. */
int fl_store_put_route(fl_store_t *s, const fl_route_state_t *st);
/* 0, FL_ENOENT when the route has no state yet, or FL_EIO. */
int fl_store_get_route(fl_store_t *s, const char *route, fl_route_state_t *out);

/* Appends to the audit log: who (actor: "api:TOKEN-NAME", "rollout", "config", ...) did what
 * (kind: "weight", "rollout_started", "step", "promoted", "rolled_back", ...) to which route,
 * with a JSON detail object (borrowed). *id_out gets the event's id (increasing). */
int fl_store_add_event(fl_store_t *s, const char *route, const char *actor, const char *kind, json_t *detail,
                       int64_t *id_out);

/* ---- decisions: one transaction ---- */

/* An event of a decision. hooks are the webhook URLs that want it: each becomes an outbox row,
 * written in the same transaction as the event, so a webhook is owed for exactly the events that
 * were committed (fl_store_outbox_waiting). Everything borrowed. */
typedef struct fl_store_event {
  const char *route, *actor, *kind;
  json_t *detail;                  /* NULL: {} */
  const char *const *hooks;
  size_t n_hooks;
} fl_store_event_t;

/* An analysis window of a decision (as fl_store_add_window takes it). */
typedef struct fl_store_window {
  const char *route;
  int32_t step;
  const char *verdict;
  json_t *analysis;
} fl_store_window_t;

#define FL_DECISION_EVENTS 8

/* What one decision of the rollouts records; every part optional, all borrowed. */
typedef struct fl_store_decision {
  const fl_route_state_t *state;
  const fl_store_window_t *window;
  fl_store_event_t events[FL_DECISION_EVENTS];
  size_t n_events;
  const char *setting_key, *setting_value;   /* a named value written with it (NULL: none): in a
                                                cluster, how far this replica has read the decision log */
} fl_store_decision_t;

/* Writes the decision's route state, window, events and their outbox rows in one transaction:
 * all of them or none. 0 when committed. FL_EIO when the file did not take it (or other writes
 * wait before it): the decision is then kept whole, as one entry of the backlog (fl_store_flush),
 * and is committed whole or not at all later. FL_ENOMEM: not recorded and not kept (counted as
 * dropped). Test builds: FLEDGE_TEST_CRASH_AT=before_commit[:KIND] exits the process (status
 * 70) with the transaction written but not committed (common.h, fl_test_crash_at). */
int fl_store_commit_decision(fl_store_t *s, const fl_store_decision_t *d);

/* Webhooks owed: outbox rows not done yet with id > after_id, oldest first, at most limit, as a
 * new JSON array of {id, url, event: {id, time_ms, route, actor, kind, detail}}. 0, FL_ENOMEM or
 * FL_EIO. */
int fl_store_outbox_waiting(fl_store_t *s, int64_t after_id, int limit, json_t **out);

/* An outbox row is done: delivered (a 2xx) or given up after its attempts. A failed write joins
 * the backlog like any other. */
int fl_store_outbox_done(fl_store_t *s, int64_t id, bool delivered);

/* Events with id > after_id, oldest first, at most limit, optionally of one route (NULL: all),
 * as a new JSON array of {id, time_ms, route, actor, kind, detail}. */
int fl_store_events(fl_store_t *s, const char *route, int64_t after_id, int limit, json_t **out);

/* Records one analysis window of a rollout (its inputs, statistics, p-values and verdicts as a
 * JSON object, borrowed) and returns its id. */
int fl_store_add_window(fl_store_t *s, const char *route, int32_t step, const char *verdict, json_t *analysis,
                        int64_t *id_out);
/* The last `limit` windows of a route, newest first, as a new JSON array. */
int fl_store_windows(fl_store_t *s, const char *route, int limit, json_t **out);

/* Named values (the feedback key, data baselines). get: 0 and a malloc'd copy the caller frees
 * in *out, FL_ENOENT, FL_ENOMEM or FL_EIO; put: 0 or FL_EIO; add: puts only when the key has no
 * value yet (another process sharing the file may have put one first), 0 or FL_EIO. */
int fl_store_get_setting(fl_store_t *s, const char *key, char **out);
int fl_store_put_setting(fl_store_t *s, const char *key, const char *value);
int fl_store_add_setting(fl_store_t *s, const char *key, const char *value);

/* One user's feedback on one request (strings borrowed; label and comment may be NULL). */
typedef struct fl_feedback_rec {
  const char *request_id, *route, *variant, *version, *label, *comment;
  double score;
} fl_feedback_rec_t;

/* 0, FL_ELIMIT when that request was rated already (the first rating stays), or FL_EIO. */
int fl_store_add_feedback(fl_store_t *s, const fl_feedback_rec_t *f);

#endif
