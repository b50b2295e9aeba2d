/* store.h — the state store: what must survive a crash or restart (route weights and versions,
 * rollouts, every analysis window, the audit log of events). An interface over one backend now,
 * SQLite in WAL mode (store_sqlite.c); a Redis backend for many replicas can follow behind the
 * same functions. Control thread only: calls block on disk. */
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
