/* cluster.c — the Redis side of a fleet of replicas: one hiredis async connection on the control
 * thread's libuv loop (through hiredis's own libuv adapter), the leader's lease (taken with SET NX PX
 * and a fencing epoch from INCR, renewed by compare-and-extend, given up at a local deadline),
 * heartbeats, and the last view of every replica for the admin API. docs/cluster.md. */
#include "cluster.h"

#include "cluster_sub.h"
#include "common.h"
#include "metrics.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define CL_BEAT_MS 1000              /* heartbeat period */
#define CL_STALE_MS 60000            /* a replica silent this long leaves the replicas hash */
#define CL_BACKOFF_MIN_MS 100
#define CL_BACKOFF_MAX_MS 2000
#define CL_MAX_FORWARDS 64           /* changes a follower holds for the leader at once */
#define CL_FORWARD_MS 5000           /* how long one may wait for the leader's answer */
#define CL_FORWARD_MARGIN_MS 1500    /* the leader makes a change only this long before then */
#define CL_ACTIONS_BATCH 16
#define CL_POLL_MS 1000              /* the log read unasked while the notice channel is up (its
                                        fallback); every tick while it is not */

/* One state for the connection; leadership is a separate fact with its own deadline. */
typedef enum { CL_DOWN, CL_CONNECTING, CL_UP, CL_STOPPED } cl_state_t;

/* Takes the lease only when nobody holds it, drawing the epoch in the same atomic step, so an
 * epoch is spent only by the replica that leads with it. A Redis that lost its data (restarted
 * without persistence) would count from 1 again: the epoch goes past the highest this replica
 * has seen, so epochs never go back while any replica remembers one.
 * KEYS: leader, epoch; ARGV: replica, ms, highest epoch seen. */
static const char ACQUIRE_LUA[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end "
    "local e = redis.call('INCR', KEYS[2]) "
    "if e <= tonumber(ARGV[3]) then e = tonumber(ARGV[3]) + 1 redis.call('SET', KEYS[2], e) end "
    "redis.call('SET', KEYS[1], ARGV[1] .. ':' .. e, 'NX', 'PX', ARGV[2]) "
    "return e";
/* Extends the lease only while it is still ours (value = replica:epoch). KEYS: leader; ARGV: value, ms. */
static const char RENEW_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
/* Gives the lease up at a clean stop, only while it is still ours. KEYS: leader; ARGV: value. */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

static struct {
  bool enabled;
  cl_state_t state;
  uv_loop_t *loop;
  redisAsyncContext *ac;
  uv_timer_t tick, retry;
  char host[256], password[256], name[65], replica[65], admin[64];
  uint16_t port;
  uint32_t db, lease_ms, tick_ms, backoff_ms;
  uint32_t ttl_ms;                   /* the leader key's life: lease − tick, so that a dead leader's
                                        successor, trying every tick, leads within the lease */
  char key_leader[96], key_epoch[96], key_replicas[96], key_counts[96], key_seq[96], key_log[96], key_log_id[96], key_state[96];
  char channel[96];                  /* where the leader says "read the log" after each commit */
  fl_cluster_sub_t *sub;             /* this replica's subscription to it (NULL: none) */
  uint64_t errors;
  unsigned pending;                  /* commands sent, not answered */
  uint64_t last_reply_ms, connect_started_ms;
  /* the lease */
  bool leader, acquiring, renewing;
  uint64_t epoch, deadline_ms, renew_sent_ms;
  /* heartbeats and the view of the others */
  uint64_t last_beat_ms, epoch_seen;
  char config_hash[17];
  char leader_value[160];            /* the leader key's value as last read: "replica:epoch", or "" */
  json_t *replicas;                  /* replica → its last heartbeat (parsed) */
  /* the decision log: how far this replica has applied it */
  fl_cluster_hooks_t hooks;
  char log_id[33];                   /* the log's identity ("": none read yet) */
  uint64_t applied;                  /* the last record applied (its seq) */
  bool reading_log, caught_up;       /* caught_up: a leader has read the log to its end since it
                                        took the lease, and may decide */
  bool log_wanted;                   /* read the log at once: told so, or something may be missed */
  uint64_t log_read_ms;              /* when the last read was sent */
  uint64_t lead_generation;          /* bumped at each lease taken: a read sent before is stale */
  redisContext *sync;                /* the blocking connection for decisions and the join */
  /* changes asked of a follower, waiting for the leader's answer */
  struct cl_forward {
    char id[96];
    uint64_t deadline_ms;            /* monotonic */
    fl_cluster_answer_fn fn;
    void *ctx;
    bool asking;                     /* a read of the answer is under way */
  } forwards[CL_MAX_FORWARDS];
  size_t n_forwards;
  uint64_t forward_seq;
  json_t *(*act)(const json_t *change);
  bool popping;
  uint32_t sync_ms;                  /* its connect and answer timeout */
  bool sync_answered;                /* the last command there got an answer (even a refusal) */
} cl;

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void step_down(const char *why) {
  if (!cl.leader) return;
  cl.leader = false;
  cl.renewing = false;
  cl.caught_up = false;
  fl_log("cluster %s: replica %s no longer leads (epoch %" PRIu64 "): %s", cl.name, cl.replica, cl.epoch, why);
}

/* The local deadline: a leader that could not renew stops deciding when its lease would have
 * ended, whether or not it can reach Redis to learn so. */
static void check_deadline(uint64_t now) {
  if (cl.leader && now >= cl.deadline_ms) step_down("its lease ran out before it could renew it");
}

/* ---- sending and answers ---- */

static bool send_cmd(redisCallbackFn *fn, void *priv, const char *fmt, ...) {
  if (!cl.ac || cl.state == CL_DOWN) return false;
  va_list ap;
  va_start(ap, fmt);
  int rc = redisvAsyncCommand(cl.ac, fn, priv, fmt, ap);
  va_end(ap);
  if (rc != REDIS_OK) {
    cl.errors++;
    return false;
  }
  if (cl.pending++ == 0) cl.last_reply_ms = fl_now_ms();   /* the wait starts now */
  return true;
}

/* Every answer passes here first; false when there is none (the connection went) or it is an error. */
static bool answered(redisReply *r, const char *what) {
  if (cl.pending) cl.pending--;
  cl.last_reply_ms = fl_now_ms();
  if (!r || cl.state == CL_STOPPED) return false;      /* after the stop, answers change nothing */
  if (r->type != REDIS_REPLY_ERROR) return true;
  cl.errors++;
  fl_log("cluster %s: redis refused %s: %s", cl.name, what, r->str);
  return false;
}

static void on_ignore(redisAsyncContext *ac, void *reply, void *priv) { answered(reply, (const char *)priv); }

/* ---- the lease ---- */

static void log_work(uint64_t now);

static void on_acquire(redisAsyncContext *ac, void *reply, void *priv) {
  redisReply *r = reply;
  cl.acquiring = false;
  if (!answered(r, "the lease") || r->type != REDIS_REPLY_INTEGER || r->integer <= 0) return;
  uint64_t sent = (uint64_t)(uintptr_t)priv;
  cl.leader = true;
  cl.caught_up = false;                  /* it decides once it has read the log to its end */
  cl.lead_generation++;
  cl.epoch = (uint64_t)r->integer;
  cl.deadline_ms = sent + cl.ttl_ms;
  cl.renew_sent_ms = sent;
  fl_log("cluster %s: replica %s leads, epoch %" PRIu64, cl.name, cl.replica, cl.epoch);
  cl.log_wanted = true;                  /* it decides once it has read the log: read it now */
  log_work(fl_now_ms());
}

static void on_renew(redisAsyncContext *ac, void *reply, void *priv) {
  redisReply *r = reply;
  cl.renewing = false;
  if (!answered(r, "the lease's renewal") || !cl.leader) return;
  if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) cl.deadline_ms = (uint64_t)(uintptr_t)priv + cl.ttl_ms;
  else step_down("the lease is no longer its own");
}

static void lease_value(char *out, size_t cap) { snprintf(out, cap, "%s:%" PRIu64, cl.replica, cl.epoch); }

static void lease_work(uint64_t now) {
  char value[96], ms[16];
  snprintf(ms, sizeof ms, "%u", cl.ttl_ms);
  void *sent = (void *)(uintptr_t)now;
  if (cl.leader && !cl.renewing && now - cl.renew_sent_ms >= cl.ttl_ms / 3) {
    lease_value(value, sizeof value);
    cl.renewing = send_cmd(on_renew, sent, "EVAL %s 1 %s %s %s", RENEW_LUA, cl.key_leader, value, ms);
    if (cl.renewing) cl.renew_sent_ms = now;
  } else if (!cl.leader && !cl.acquiring) {
    char seen[24];
    snprintf(seen, sizeof seen, "%" PRIu64, FL_MAX(cl.epoch_seen, cl.epoch));
    cl.acquiring = send_cmd(on_acquire, sent, "EVAL %s 2 %s %s %s %s %s", ACQUIRE_LUA, cl.key_leader, cl.key_epoch,
                            cl.replica, ms, seen);
  }
}

/* ---- heartbeats and the view ---- */

static void on_leader_read(redisAsyncContext *ac, void *reply, void *priv) {
  redisReply *r = reply;
  if (!answered(r, "GET leader")) return;
  if (r->type == REDIS_REPLY_STRING) snprintf(cl.leader_value, sizeof cl.leader_value, "%s", r->str);
  else cl.leader_value[0] = '\0';
  const char *colon = strrchr(cl.leader_value, ':');
  if (colon) cl.epoch_seen = FL_MAX(cl.epoch_seen, strtoull(colon + 1, NULL, 10));
}

static void on_replicas_read(redisAsyncContext *ac, void *reply, void *priv) {
  redisReply *r = reply;
  if (!answered(r, "HGETALL replicas") || r->type != REDIS_REPLY_ARRAY) return;
  json_t *all = json_object();
  uint64_t now = wall_ms();
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    const redisReply *k = r->element[i], *v = r->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    json_t *beat = json_loadb(v->str, v->len, 0, NULL);
    json_int_t at = json_integer_value(json_object_get(beat, "time_ms"));
    if (cl.leader && (!beat || (uint64_t)at + CL_STALE_MS < now)) {    /* the leader sweeps */
      send_cmd(on_ignore, "HDEL", "HDEL %s %b", cl.key_replicas, k->str, k->len);
      send_cmd(on_ignore, "HDEL", "HDEL %s %b", cl.key_counts, k->str, k->len);
    }
    else if (beat) json_object_set(all, k->str, beat);
    json_decref(beat);
  }
  json_decref(cl.replicas);
  cl.replicas = all;
}

/* The other replicas' numbers: every replica reads them, so that one that comes to lead has a
 * recent view to begin its windows from. */
static void on_counts_read(redisAsyncContext *ac, void *reply, void *priv) {
  redisReply *r = reply;
  if (!answered(r, "HGETALL counts") || r->type != REDIS_REPLY_ARRAY || !cl.hooks.remote) return;
  json_t *others = json_object();
  for (size_t i = 0; others && i + 1 < r->elements; i += 2) {
    const redisReply *k = r->element[i], *v = r->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || strcmp(k->str, cl.replica) == 0) continue;
    json_t *c = json_loadb(v->str, v->len, 0, NULL);
    if (c) json_object_set_new(others, k->str, c);
  }
  cl.hooks.remote(others);
  json_decref(others);
}

static void heartbeat(uint64_t now) {
  if (now - cl.last_beat_ms < CL_BEAT_MS) return;
  cl.last_beat_ms = now;
  json_t *beat = json_pack("{s:I, s:s, s:s, s:I, s:b, s:I, s:o}", "time_ms", (json_int_t)wall_ms(), "admin", cl.admin,
                           "config_hash", cl.config_hash, "epoch_seen", (json_int_t)cl.epoch_seen, "leader", cl.leader,
                           "log_seq", (json_int_t)cl.applied,
                           "weights", cl.hooks.weights ? cl.hooks.weights() : json_object());
  char *text = beat ? json_dumps(beat, JSON_COMPACT) : NULL;
  json_decref(beat);
  if (text) send_cmd(on_ignore, "HSET", "HSET %s %s %s", cl.key_replicas, cl.replica, text);
  free(text);
  send_cmd(on_leader_read, NULL, "GET %s", cl.key_leader);
  send_cmd(on_replicas_read, NULL, "HGETALL %s", cl.key_replicas);
  char *counts = cl.hooks.counts ? cl.hooks.counts() : NULL;
  if (counts) send_cmd(on_ignore, "HSET counts", "HSET %s %s %s", cl.key_counts, cl.replica, counts);
  free(counts);
  if (cl.hooks.remote) send_cmd(on_counts_read, NULL, "HGETALL %s", cl.key_counts);
}

/* ---- the decision log ----
 * KEYS[seq] counts records; KEYS[log] is a sorted set of records scored by their seq (the last
 * CL_LOG_KEEP kept); KEYS[state] maps each route to its state after the last record about it;
 * KEYS[log_id] names this log, so that a replica can tell a log it has read from one begun anew
 * (a Redis that lost its data and was seeded again). */
#define CL_LOG_KEEP 10000
#define CL_LOG_BATCH 64

/* Appends a record only while the lease and the log are the ones the leader holds: a stale
 * leader, or one that has not read a log seeded since, writes nothing. ARGV[4] is the record as
 * a JSON object without its seq, which is put first. Returns the seq, 0 (the lease is not ours)
 * or -1 (another log). The record's seq goes out on the notice channel, so every replica reads
 * it at once. KEYS: leader, seq, log, state, log_id; ARGV: lease value, route, state, record,
 * keep, log id, channel. */
static const char COMMIT_LUA[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "if redis.call('GET', KEYS[5]) ~= ARGV[6] then return -1 end "
    "local s = redis.call('INCR', KEYS[2]) "
    "redis.call('ZADD', KEYS[3], s, '{\"seq\":' .. s .. ',' .. string.sub(ARGV[4], 2)) "
    "redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[5]) - 1) "
    "redis.call('HSET', KEYS[4], ARGV[2], ARGV[3]) "
    "redis.call('PUBLISH', ARGV[7], s) "
    "return s";
/* The log's seq and id, and the records after ARGV[1] (at most ARGV[2]).
 * KEYS: seq, log, log_id. */
static const char READ_LUA[] =
    "local s = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "local id = redis.call('GET', KEYS[3]) or '' "
    "if s <= tonumber(ARGV[1]) then return {s, id} end "
    "local r = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'LIMIT', 0, tonumber(ARGV[2])) "
    "table.insert(r, 1, id) table.insert(r, 1, s) return r";
/* The log's seq and id, every route's state, and the records after ARGV[1] that it keeps: a
 * replica that cannot follow record by record starts from here. KEYS: seq, log_id, state, log. */
static const char STATE_LUA[] =
    "local s = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "return {s, redis.call('GET', KEYS[2]) or '', redis.call('HGETALL', KEYS[3]), "
    "redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[1], s)}";
/* A new log, from the leader's own state, when Redis has none (lost with its data, or never
 * begun); "new" on the notice channel. KEYS: leader, seq, log_id, state, log; ARGV: lease value,
 * new id, seq, channel, then route and state pairs. */
static const char SEED_LUA[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "redis.call('DEL', KEYS[4], KEYS[5]) "
    "redis.call('SET', KEYS[2], ARGV[3]) redis.call('SET', KEYS[3], ARGV[2]) "
    "for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end "
    "redis.call('PUBLISH', ARGV[4], 'new') "
    "return 1";

static void sync_close(void) {
  if (cl.sync) redisFree(cl.sync);
  cl.sync = NULL;
}

/* A command on the blocking connection (opened, authenticated and its database selected when
 * needed), answered within sync_ms. NULL on any failure, with the reason in err; the caller
 * frees the reply. Control thread: it waits, so it is only for decisions and the join. */
static redisReply *sync_argv(int argc, const char **argv, const size_t *lens, char *err, size_t cap) {
  struct timeval tv = {.tv_sec = cl.sync_ms / 1000, .tv_usec = (suseconds_t)(cl.sync_ms % 1000) * 1000};
  if (!cl.sync) {
    cl.sync = redisConnectWithTimeout(cl.host, cl.port, tv);
    if (!cl.sync || cl.sync->err || redisSetTimeout(cl.sync, tv) != REDIS_OK) {
      snprintf(err, cap, "redis %s:%u: %s", cl.host, (unsigned)cl.port, cl.sync ? cl.sync->errstr : "out of memory");
      sync_close();
      return NULL;
    }
    redisReply *r = cl.password[0] ? redisCommand(cl.sync, "AUTH %s", cl.password) : NULL;
    bool ok = !cl.password[0] || (r && r->type != REDIS_REPLY_ERROR);
    freeReplyObject(r);
    r = ok ? redisCommand(cl.sync, "SELECT %u", cl.db) : NULL;
    ok = r && r->type != REDIS_REPLY_ERROR;
    freeReplyObject(r);
    if (!ok) {
      snprintf(err, cap, "redis %s:%u refused AUTH or SELECT", cl.host, (unsigned)cl.port);
      sync_close();
      return NULL;
    }
  }
  redisReply *r = redisCommandArgv(cl.sync, argc, argv, lens);
  cl.sync_answered = r != NULL;
  if (!r) {
    snprintf(err, cap, "redis %s:%u: %s", cl.host, (unsigned)cl.port, cl.sync->errstr[0] ? cl.sync->errstr : "no answer");
    sync_close();
  } else if (r->type == REDIS_REPLY_ERROR) {
    snprintf(err, cap, "redis refused it: %s", r->str);
    freeReplyObject(r);
    r = NULL;
  }
  if (!r) cl.errors++;
  return r;
}

static const char *reply_str(const redisReply *r) { return r && r->type == REDIS_REPLY_STRING ? r->str : ""; }

static void set_position(const char *log_id, uint64_t seq) {
  if (log_id != cl.log_id) snprintf(cl.log_id, sizeof cl.log_id, "%s", log_id);
  cl.applied = seq;
}

/* Every route's state from Redis, adopted, after the history of the records the replica has not
 * seen (their events and windows, in order): for a replica new to this log (all it keeps), or
 * one behind what it keeps (those after its own). Returns 0 or FL_EIO. */
static int resync(char *err, size_t cap) {
  char after[24];
  snprintf(after, sizeof after, "%" PRIu64, cl.log_id[0] ? cl.applied : 0);
  const char *argv[] = {"EVAL", STATE_LUA, "4", cl.key_seq, cl.key_log_id, cl.key_state, cl.key_log, after};
  redisReply *r = sync_argv((int)FL_ARRAY_LEN(argv), argv, NULL, err, cap);
  if (!r) return FL_EIO;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 || r->element[0]->type != REDIS_REPLY_INTEGER ||
      r->element[2]->type != REDIS_REPLY_ARRAY || r->element[3]->type != REDIS_REPLY_ARRAY) {
    freeReplyObject(r);
    snprintf(err, cap, "redis answered the shared state's read with something else");
    return FL_EIO;
  }
  uint64_t seq = (uint64_t)r->element[0]->integer;
  const char *id = reply_str(r->element[1]);
  bool new_log = strcmp(id, cl.log_id) != 0;
  const redisReply *recs = r->element[3], *states = r->element[2];
  for (size_t i = 0; i < recs->elements && cl.hooks.apply; i++) {
    json_t *rec = json_loads(reply_str(recs->element[i]), 0, NULL);
    uint64_t at = (uint64_t)json_integer_value(json_object_get(rec, "seq"));
    if (rec && (new_log || at > cl.applied)) cl.hooks.apply(rec, id, at, false);
    json_decref(rec);
  }
  for (size_t i = 0; i + 1 < states->elements && cl.hooks.adopt; i += 2) {
    json_t *state = json_loads(reply_str(states->element[i + 1]), 0, NULL);
    if (state) cl.hooks.adopt(reply_str(states->element[i]), state, id, seq);
    json_decref(state);
  }
  set_position(id, seq);
  if (cl.hooks.position) cl.hooks.position(id, seq);
  fl_log("cluster %s: replica %s took every route's state from the shared log %s at record %" PRIu64
         " (%zu records' history)", cl.name, cl.replica, id, seq, recs->elements);
  freeReplyObject(r);
  return 0;
}

/* Redis has no log: the leader begins one from its own state (at the seq it had applied, so
 * the records go on from there). */
static void seed(void) {
  json_t *states = cl.hooks.states ? cl.hooks.states() : json_object();
  size_t n = 12 + 2 * json_object_size(states), k = 0;
  const char **argv = calloc(n, sizeof *argv);
  char value[96], id[33], seq[24], err[256];
  char **texts = calloc(json_object_size(states) + 1, sizeof *texts);
  if (!argv || !texts || !states) goto out;
  lease_value(value, sizeof value);
  uint8_t raw[16];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) goto out;
  for (size_t i = 0; i < sizeof raw; i++) snprintf(id + 2 * i, 3, "%02x", raw[i]);
  snprintf(seq, sizeof seq, "%" PRIu64, cl.applied);
  const char *head[] = {"EVAL", SEED_LUA, "5", cl.key_leader, cl.key_seq, cl.key_log_id, cl.key_state, cl.key_log,
                        value, id, seq, cl.channel};
  FL_BUG_ON(FL_ARRAY_LEN(head) > 12);
  for (; k < FL_ARRAY_LEN(head); k++) argv[k] = head[k];
  const char *route;
  json_t *st;
  size_t t = 0;
  json_object_foreach(states, route, st) {
    if (!(texts[t] = json_dumps(st, JSON_COMPACT))) goto out;
    argv[k++] = route;
    argv[k++] = texts[t++];
  }
  redisReply *r = sync_argv((int)k, argv, NULL, err, sizeof err);
  if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
    set_position(id, cl.applied);
    cl.caught_up = true;
    if (cl.hooks.position) cl.hooks.position(id, cl.applied);
    if (cl.hooks.leading) cl.hooks.leading();
    fl_log("cluster %s: redis had no decision log: replica %s began log %s at record %" PRIu64 " from its own state",
           cl.name, cl.replica, id, cl.applied);
  } else if (!r) {
    fl_log("cluster %s: cannot begin a decision log: %s", cl.name, err);
  }
  freeReplyObject(r);
out:
  for (size_t i = 0; texts && texts[i]; i++) free(texts[i]);
  free(texts);
  free(argv);
  json_decref(states);
}

/* Applies a batch of records in order; a gap (records the log no longer keeps) means a resync.
 * Returns how many were applied, or -1 after a resync. */
static int apply_records(const redisReply *r, const char *id) {
  int n = 0;
  for (size_t i = 2; i < r->elements; i++) {
    json_t *rec = json_loads(reply_str(r->element[i]), 0, NULL);
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(rec, "seq"));
    if (seq <= cl.applied) {                      /* applied already (our own, or a read that overlapped) */
      json_decref(rec);
      continue;
    }
    if (!rec || seq != cl.applied + 1) {
      json_decref(rec);
      char err[256];
      if (resync(err, sizeof err) != 0) fl_log("cluster %s: cannot read the shared state: %s", cl.name, err);
      return -1;
    }
    if (cl.hooks.apply) cl.hooks.apply(rec, id, seq, true);
    set_position(id, seq);
    json_decref(rec);
    n++;
  }
  return n;
}

static void take_log(redisReply *r, void *priv) {
  if (!answered(r, "the decision log") || r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
      r->element[0]->type != REDIS_REPLY_INTEGER)
    return;
  uint64_t seq = (uint64_t)r->element[0]->integer;
  const char *id = reply_str(r->element[1]);
  bool fresh = (uint64_t)(uintptr_t)priv == cl.lead_generation;   /* sent since the lease was taken */
  char err[256];
  if (!id[0]) {                                  /* no log: the leader begins one */
    if (cl.leader && fresh) seed();
    return;
  }
  if (seq < cl.applied && strcmp(id, cl.log_id) == 0 && cl.leader && cl.caught_up)
    return;                                      /* read before our own commit: stale, not a loss */
  if (strcmp(id, cl.log_id) != 0 || seq < cl.applied) {
    if (resync(err, sizeof err) != 0) fl_log("cluster %s: cannot read the shared state: %s", cl.name, err);
    return;                                      /* a leader reads once more before deciding */
  }
  int applied = apply_records(r, id);
  if (applied == 0 && seq == cl.applied && cl.leader && fresh && !cl.caught_up) {
    cl.caught_up = true;
    fl_log("cluster %s: replica %s has read the decision log to record %" PRIu64 " and decides", cl.name, cl.replica,
           seq);
    if (cl.hooks.leading) cl.hooks.leading();
  }
}

static void on_log(redisAsyncContext *ac, void *reply, void *priv) {
  cl.reading_log = false;
  take_log(reply, priv);
  if (cl.log_wanted && cl.state == CL_UP) log_work(fl_now_ms());   /* told while this read was out */
}

/* Reads the records after the last applied: at once when told (a notice, a lease taken, a
 * connection made) or while a new leader has not read to the end; else every CL_POLL_MS while
 * the notice channel is up, every tick while it is not. */
static void log_work(uint64_t now) {
  if (!cl.hooks.apply) {                         /* nothing to follow: leading is deciding */
    cl.caught_up = cl.leader;
    return;
  }
  if (cl.reading_log) return;
  bool now_due = cl.log_wanted || (cl.leader && !cl.caught_up);
  uint32_t every = fl_cluster_sub_subscribed(cl.sub) ? CL_POLL_MS : cl.tick_ms;
  if (!now_due && now - cl.log_read_ms + cl.tick_ms / 2 < every) return;   /* ticks are not exact */
  char after[24], batch[8];
  snprintf(after, sizeof after, "%" PRIu64, cl.applied);
  snprintf(batch, sizeof batch, "%d", CL_LOG_BATCH);
  cl.reading_log = send_cmd(on_log, (void *)(uintptr_t)cl.lead_generation, "EVAL %s 3 %s %s %s %s %s", READ_LUA,
                            cl.key_seq, cl.key_log, cl.key_log_id, after, batch);
  if (cl.reading_log) {
    cl.log_wanted = false;
    cl.log_read_ms = now;
  }
}

/* A notice on the channel: a record's seq (read unless applied already: the leader's own), "new"
 * (a log begun anew), or NULL (subscribed again: notices may have been missed). */
static void on_notice(void *ctx, const char *text, size_t len) {
  char *end;
  uint64_t seq = text ? strtoull(text, &end, 10) : 0;
  if (text && end != text && seq <= cl.applied) return;
  cl.log_wanted = true;
  if (cl.state == CL_UP) log_work(fl_now_ms());
}

int fl_cluster_commit(const char *route, const char *state, const char *record, uint64_t *seq, char *err, size_t cap) {
  if (!fl_cluster_is_leader(NULL)) {
    snprintf(err, cap, "this replica does not lead the cluster; nothing changed");
    return FL_EINVAL;
  }
  char value[96];
  lease_value(value, sizeof value);
  cl.sync_answered = false;
  char keep[16];
  snprintf(keep, sizeof keep, "%d", CL_LOG_KEEP);
  const char *argv[] = {"EVAL", COMMIT_LUA, "5", cl.key_leader, cl.key_seq, cl.key_log, cl.key_state, cl.key_log_id,
                        value, route, state, record, keep, cl.log_id, cl.channel};
  redisReply *r = sync_argv((int)FL_ARRAY_LEN(argv), argv, NULL, err, cap);
  int rc = FL_EIO;
  if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
    *seq = (uint64_t)r->integer;
    set_position(cl.log_id, *seq);
    rc = 0;
  } else if (r) {
    snprintf(err, cap, r->type == REDIS_REPLY_INTEGER && r->integer == 0
                           ? "the lease is no longer this replica's; nothing changed"
                           : "the shared decision log was begun anew; nothing changed");
  } else if (!cl.sync_answered) {              /* it may have run before the answer was lost */
    size_t n = strlen(err);
    snprintf(err + n, cap - FL_MIN(n, cap), "; the decision may still have been recorded: every replica, this "
             "one too, follows the log, so GET the route to see what holds");
  } else {
    size_t n = strlen(err);
    snprintf(err + n, cap - FL_MIN(n, cap), "; nothing changed");
  }
  freeReplyObject(r);
  if (rc != 0) step_down(err);                   /* it reads the log again before it decides */
  return rc;
}

int fl_cluster_join(char *err, size_t cap) {
  if (!cl.enabled) return 0;
  for (int rounds = 0; rounds < CL_LOG_KEEP / CL_LOG_BATCH + 2; rounds++) {
    char after[24], batch[8];
    snprintf(after, sizeof after, "%" PRIu64, cl.applied);
    snprintf(batch, sizeof batch, "%d", CL_LOG_BATCH);
    const char *argv[] = {"EVAL", READ_LUA, "3", cl.key_seq, cl.key_log, cl.key_log_id, after, batch};
    redisReply *r = sync_argv((int)FL_ARRAY_LEN(argv), argv, NULL, err, cap);
    if (!r) return FL_EIO;
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && r->element[0]->type == REDIS_REPLY_INTEGER;
    uint64_t seq = ok ? (uint64_t)r->element[0]->integer : 0;
    const char *id = ok ? reply_str(r->element[1]) : "";
    int rc = !ok ? FL_EIO : !id[0] ? 0                                     /* no log yet: ours stands */
             : strcmp(id, cl.log_id) != 0 || seq < cl.applied ? resync(err, cap)
             : seq == cl.applied ? 0 : 1;
    if (rc == 1 && apply_records(r, id) < 0) rc = 0;                  /* resynced */
    freeReplyObject(r);
    if (rc <= 0) {
      if (!ok) snprintf(err, cap, "redis answered the decision log's read with something else");
      return rc;
    }
  }
  return 0;
}

const char *fl_cluster_log_id(void) { return cl.log_id; }
const char *fl_cluster_replica(void) { return cl.replica; }

/* ---- changes through any replica: a follower queues them in Redis, the leader takes them ---- */

/* Up to ARGV[1] changes, oldest first, taken off the queue. KEYS: the queue. */
static const char POP_LUA[] =
    "local r = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1) "
    "if #r > 0 then redis.call('LTRIM', KEYS[1], #r, -1) end return r";

static void answer_key(char *out, size_t cap, const char *id) { snprintf(out, cap, "%s:answer:%s", cl.name, id); }

static void forward_done(size_t i, int status, json_t *body) {
  struct cl_forward f = cl.forwards[i];
  cl.forwards[i] = cl.forwards[--cl.n_forwards];
  f.fn(f.ctx, status, body);
}

static size_t forward_find(const char *id) {
  for (size_t i = 0; i < cl.n_forwards; i++)
    if (strcmp(cl.forwards[i].id, id) == 0) return i;
  return SIZE_MAX;
}

static void on_answer(redisAsyncContext *ac, void *reply, void *priv) {
  redisReply *r = reply;
  char *id = priv;
  bool ok = answered(r, "an answer of the leader");
  size_t i = forward_find(id);
  free(id);
  if (i == SIZE_MAX) return;                     /* given up on meanwhile */
  cl.forwards[i].asking = false;
  if (!ok || r->type != REDIS_REPLY_STRING) return;
  json_t *a = json_loadb(r->str, r->len, 0, NULL);
  char key[192];
  answer_key(key, sizeof key, cl.forwards[i].id);
  send_cmd(on_ignore, "DEL answer", "DEL %s", key);
  int status = (int)json_integer_value(json_object_get(a, "status"));
  forward_done(i, status >= 100 && status <= 599 ? status : 502, json_object_get(a, "body"));
  json_decref(a);
}

/* Follower: the answers that came, and the waits that ran out. */
static void forward_work(uint64_t now) {
  for (size_t i = 0; i < cl.n_forwards;) {
    struct cl_forward *f = &cl.forwards[i];
    if (now >= f->deadline_ms) {
      forward_done(i, 0, NULL);
      continue;
    }
    if (!f->asking && cl.state == CL_UP) {
      char key[192], *id = strdup(f->id);
      answer_key(key, sizeof key, f->id);
      if (id && (f->asking = send_cmd(on_answer, id, "GET %s", key)) == false) free(id);
    }
    i++;
  }
}

static void on_actions(redisAsyncContext *ac, void *reply, void *priv) {
  redisReply *r = reply;
  cl.popping = false;
  if (!answered(r, "the changes queued") || r->type != REDIS_REPLY_ARRAY) return;
  int64_t now = (int64_t)wall_ms();
  for (size_t i = 0; i < r->elements; i++) {
    json_t *change = json_loads(reply_str(r->element[i]), 0, NULL);
    const char *id = json_string_value(json_object_get(change, "id"));
    json_int_t until = json_integer_value(json_object_get(change, "until_ms"));
    /* made only while its follower surely still waits (a tick and clock skew to spare); one
     * nobody waits for is dropped, never made late */
    if (id && until - CL_FORWARD_MARGIN_MS > now && cl.act && fl_cluster_is_leader(NULL)) {
      json_t *a = cl.act(change);
      char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
      char key[192];
      answer_key(key, sizeof key, id);
      if (text) send_cmd(on_ignore, "SET answer", "SET %s %s PX %u", key, text, CL_FORWARD_MS * 2);
      free(text);
      json_decref(a);
    }
    json_decref(change);
  }
}

/* Leader: the changes followers queued. */
static void actions_work(void) {
  if (cl.popping || !cl.act || !fl_cluster_is_leader(NULL)) return;
  char key[128];
  snprintf(key, sizeof key, "%s:actions", cl.name);
  cl.popping = send_cmd(on_actions, NULL, "EVAL %s 1 %s %d", POP_LUA, key, CL_ACTIONS_BATCH);
}

void fl_cluster_unclaim(const char *what, const char *id) {
  if (!cl.enabled || cl.state != CL_UP) return;
  char key[512], err[200];
  snprintf(key, sizeof key, "%s:%s:%s", cl.name, what, id);
  static const char UNCLAIM_LUA[] =
      "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
  const char *argv[] = {"EVAL", UNCLAIM_LUA, "1", key, cl.replica};
  freeReplyObject(sync_argv((int)FL_ARRAY_LEN(argv), argv, NULL, err, sizeof err));
}

void fl_cluster_set_actor(json_t *(*act)(const json_t *change)) { cl.act = act; }

int fl_cluster_forward(json_t *change, fl_cluster_answer_fn fn, void *ctx) {
  if (cl.state != CL_UP || cl.n_forwards == CL_MAX_FORWARDS) return FL_EIO;
  struct cl_forward *f = &cl.forwards[cl.n_forwards];
  snprintf(f->id, sizeof f->id, "%s-%" PRIu64 "-%" PRIu64, cl.replica, wall_ms(), ++cl.forward_seq);
  json_object_set_new(change, "id", json_string(f->id));
  json_object_set_new(change, "until_ms", json_integer((json_int_t)(wall_ms() + CL_FORWARD_MS)));
  char *text = json_dumps(change, JSON_COMPACT), key[128];
  snprintf(key, sizeof key, "%s:actions", cl.name);
  bool sent = text && send_cmd(on_ignore, "RPUSH actions", "RPUSH %s %s", key, text);
  free(text);
  if (!sent) return FL_EIO;
  f->deadline_ms = fl_now_ms() + CL_FORWARD_MS;
  f->fn = fn;
  f->ctx = ctx;
  f->asking = false;
  cl.n_forwards++;
  return 0;
}

/* ---- values shared by every replica ---- */

/* The first value offered wins and stays. KEYS: the value's key; ARGV: ours. */
static const char SHARE_LUA[] = "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])";

int fl_cluster_share(const char *name, const char *mine, char *out, size_t cap, char *err, size_t err_cap) {
  if (!cl.enabled) return FL_EINVAL;
  char key[160];
  snprintf(key, sizeof key, "%s:%s", cl.name, name);
  const char *argv[] = {"EVAL", SHARE_LUA, "1", key, mine};
  redisReply *r = sync_argv((int)FL_ARRAY_LEN(argv), argv, NULL, err, err_cap);
  int rc = FL_EIO;
  if (r && r->type == REDIS_REPLY_STRING && r->len < cap) {
    memcpy(out, r->str, r->len + 1);
    rc = 0;
  } else if (r) {
    snprintf(err, err_cap, "redis answered the shared %s with something else", name);
  }
  freeReplyObject(r);
  return rc;
}

int fl_cluster_claim(const char *what, const char *id, uint32_t ttl_ms, char *err, size_t err_cap) {
  if (!cl.enabled) return 0;
  if (cl.state != CL_UP) {
    snprintf(err, err_cap, "redis is out of reach");
    return FL_EIO;
  }
  char key[512], ttl[16];
  snprintf(key, sizeof key, "%s:%s:%s", cl.name, what, id);
  snprintf(ttl, sizeof ttl, "%u", ttl_ms);
  const char *argv[] = {"SET", key, cl.replica, "NX", "PX", ttl};
  redisReply *r = sync_argv((int)FL_ARRAY_LEN(argv), argv, NULL, err, err_cap);
  int rc = !r ? FL_EIO : r->type == REDIS_REPLY_NIL ? FL_ELIMIT : 0;
  freeReplyObject(r);
  return rc;
}

void fl_cluster_set_hooks(const fl_cluster_hooks_t *h, const char *log_id, uint64_t applied) {
  cl.hooks = *h;
  set_position(log_id, applied);
}

/* ---- the connection ---- */

static void on_retry(uv_timer_t *t);

/* Backoff from 100 ms, doubling to 2 s: a restarted Redis is found again within 2 s. */
static void schedule_retry(void) {
  if (cl.state == CL_STOPPED) return;
  uv_timer_start(&cl.retry, on_retry, cl.backoff_ms, 0);
  cl.backoff_ms = FL_MIN(cl.backoff_ms * 2, CL_BACKOFF_MAX_MS);
}

static void lost(const char *why) {
  bool was_up = cl.state == CL_UP;
  cl.state = CL_DOWN;
  cl.pending = 0;
  cl.acquiring = cl.renewing = cl.reading_log = false;
  cl.errors++;
  if (was_up || cl.backoff_ms == CL_BACKOFF_MIN_MS)
    fl_log("cluster %s: redis %s:%u unreachable (%s); serving on, retrying every %u ms at most", cl.name, cl.host,
           (unsigned)cl.port, why, CL_BACKOFF_MAX_MS);
  schedule_retry();
}

/* Cuts a connection that stopped answering; hiredis calls what was pending with no reply. The
 * subscription, to the same Redis, may be half-open too: it is made again. */
static void drop_connection(const char *why) {
  redisAsyncContext *ac = cl.ac;
  cl.ac = NULL;
  if (ac) redisAsyncFree(ac);
  fl_cluster_sub_restart(cl.sub);
  if (cl.state != CL_STOPPED) lost(why);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  if (ac != cl.ac) return;                /* one we let go of ourselves */
  cl.ac = NULL;
  if (cl.state == CL_STOPPED) {
    if (!uv_is_closing((uv_handle_t *)&cl.retry)) uv_close((uv_handle_t *)&cl.retry, NULL);
    return;
  }
  lost(status == REDIS_OK ? "closed" : ac->errstr[0] ? ac->errstr : "connection lost");
}

static void on_select(redisAsyncContext *ac, void *reply, void *priv) {
  if (!answered(reply, "SELECT")) {
    if (reply && cl.ac) redisAsyncDisconnect(cl.ac);
    return;
  }
  cl.state = CL_UP;
  cl.backoff_ms = CL_BACKOFF_MIN_MS;
  cl.last_beat_ms = 0;
  cl.log_wanted = true;
  fl_log("cluster %s: connected to redis %s:%u/%u as replica %s", cl.name, cl.host, (unsigned)cl.port, cl.db, cl.replica);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv) {
  if (!answered(reply, "AUTH") && reply && cl.ac) redisAsyncDisconnect(cl.ac);
}

static void on_connect(const redisAsyncContext *ac, int status) {
  if (ac != cl.ac) return;
  if (status != REDIS_OK) {              /* hiredis frees the context after this */
    cl.ac = NULL;
    lost(ac->errstr[0] ? ac->errstr : "connect failed");
    return;
  }
}

static void connect_now(void) {
  redisAsyncContext *ac = redisAsyncConnect(cl.host, cl.port);
  if (!ac || ac->err || redisLibuvAttach(ac, cl.loop) != REDIS_OK) {
    const char *why = ac && ac->err ? ac->errstr : "cannot start a connection";
    if (ac) redisAsyncFree(ac);
    lost(why);
    return;
  }
  cl.ac = ac;
  cl.state = CL_CONNECTING;
  cl.connect_started_ms = fl_now_ms();
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  /* queued at once: the first command is what makes hiredis watch the socket and finish the
   * connect; nothing else is sent before SELECT is answered */
  if (cl.password[0]) send_cmd(on_auth, NULL, "AUTH %s", cl.password);
  send_cmd(on_select, NULL, "SELECT %u", cl.db);
}

static void on_retry(uv_timer_t *t) {
  if (cl.state == CL_STOPPED) {           /* the stop's grace ran out: cut it */
    drop_connection("stopping");
    if (!uv_is_closing((uv_handle_t *)&cl.retry)) uv_close((uv_handle_t *)&cl.retry, NULL);
    return;
  }
  if (cl.state == CL_DOWN && !cl.ac) connect_now();
}

static void on_tick(uv_timer_t *t) {
  uint64_t now = fl_now_ms();
  check_deadline(now);
  forward_work(now);
  if (cl.state == CL_CONNECTING && cl.ac && now - cl.connect_started_ms > cl.lease_ms) {
    drop_connection("no connection within the lease");
    return;
  }
  if (cl.state != CL_UP) return;
  if (cl.pending && now - cl.last_reply_ms > cl.lease_ms) {
    drop_connection("no answer within the lease");
    return;
  }
  lease_work(now);
  log_work(now);
  actions_work();
  heartbeat(now);
}

/* ---- the module's face ---- */

int fl_cluster_start(uv_loop_t *loop, const fl_conf_t *c) {
  const fl_cluster_conf_t *cc = c->cluster;
  if (!cc) return 0;
  cl.enabled = true;
  cl.loop = loop;
  snprintf(cl.host, sizeof cl.host, "%s", cc->host);
  snprintf(cl.password, sizeof cl.password, "%s", cc->password ? cc->password : "");
  snprintf(cl.name, sizeof cl.name, "%s", cc->name);
  snprintf(cl.replica, sizeof cl.replica, "%s", cc->replica);
  snprintf(cl.admin, sizeof cl.admin, "%s", c->admin_listen.text);
  snprintf(cl.key_leader, sizeof cl.key_leader, "%s:leader", cc->name);
  snprintf(cl.key_epoch, sizeof cl.key_epoch, "%s:epoch", cc->name);
  snprintf(cl.key_replicas, sizeof cl.key_replicas, "%s:replicas", cc->name);
  snprintf(cl.key_counts, sizeof cl.key_counts, "%s:counts", cc->name);
  snprintf(cl.key_seq, sizeof cl.key_seq, "%s:seq", cc->name);
  snprintf(cl.key_log, sizeof cl.key_log, "%s:log", cc->name);
  snprintf(cl.key_log_id, sizeof cl.key_log_id, "%s:log_id", cc->name);
  snprintf(cl.key_state, sizeof cl.key_state, "%s:state", cc->name);
  snprintf(cl.channel, sizeof cl.channel, "%s:decided", cc->name);
  cl.port = cc->port;
  cl.db = cc->db;
  cl.lease_ms = cc->lease_ms;
  cl.tick_ms = FL_MIN(cl.lease_ms / 6, 250);   /* a free lease is taken within a quarter second */
  cl.ttl_ms = cl.lease_ms - cl.tick_ms;
  cl.sync_ms = FL_MIN(cl.lease_ms / 3, 1000);  /* a decision waits at most this for Redis */
  cl.backoff_ms = CL_BACKOFF_MIN_MS;
  if (!(cl.replicas = json_object())) return FL_ENOMEM;
  fl_cluster_set_conf(c);
  uv_timer_init(loop, &cl.tick);
  uv_timer_init(loop, &cl.retry);
  uv_timer_start(&cl.tick, on_tick, cl.tick_ms, cl.tick_ms);
  cl.state = CL_DOWN;
  connect_now();
  fl_cluster_sub_opts_t so = {.host = cl.host, .password = cl.password, .port = cl.port, .channel = cl.channel,
                              .fn = on_notice};
  if (fl_cluster_sub_start(loop, &so, &cl.sub) != 0) fl_log("cluster %s: no notice channel (out of memory); the "
                                                           "decision log is read every tick", cl.name);
  return 0;
}

void fl_cluster_set_conf(const fl_conf_t *c) {
  if (cl.enabled) snprintf(cl.config_hash, sizeof cl.config_hash, "%s", c->fleet_hash);
}

bool fl_cluster_enabled(void) { return cl.enabled; }
bool fl_cluster_redis_up(void) { return cl.enabled && cl.state == CL_UP; }

bool fl_cluster_is_leader(uint64_t *epoch) {
  if (!cl.enabled) {
    if (epoch) *epoch = 0;
    return true;
  }
  check_deadline(fl_now_ms());
  bool deciding = cl.leader && cl.caught_up;
  if (epoch) *epoch = deciding ? cl.epoch : 0;
  return deciding;
}

/* The leader as last read from Redis: "replica:epoch", the replica's name may hold ':' itself. */
static json_t *leader_json(const char **name_out, char *buf, size_t cap) {
  snprintf(buf, cap, "%s", cl.leader_value);
  char *colon = strrchr(buf, ':');
  *name_out = NULL;
  if (!colon) return json_null();
  *colon = '\0';
  *name_out = buf;
  return json_pack("{s:s, s:I}", "replica", buf, "epoch", (json_int_t)strtoull(colon + 1, NULL, 10));
}

json_t *fl_cluster_json(void) {
  if (!cl.enabled) return NULL;
  char buf[160];
  const char *leader = NULL;
  json_t *lead = leader_json(&leader, buf, sizeof buf);
  const char *leader_hash = leader ? json_string_value(json_object_get(json_object_get(cl.replicas, leader), "config_hash")) : NULL;
  json_t *list = json_array();
  uint64_t now = wall_ms();
  const char *name;
  json_t *beat;
  json_object_foreach(cl.replicas, name, beat) {
    const char *hash = json_string_value(json_object_get(beat, "config_hash"));
    json_int_t at = json_integer_value(json_object_get(beat, "time_ms"));
    json_array_append_new(list, json_pack("{s:s, s:O?, s:I, s:s?, s:O?, s:b, s:b, s:O?, s:O?}", "replica", name,
                                          "admin", json_object_get(beat, "admin"), "heartbeat_age_ms",
                                          (json_int_t)(now > (uint64_t)at ? now - (uint64_t)at : 0), "config_hash", hash,
                                          "epoch_seen", json_object_get(beat, "epoch_seen"), "leader",
                                          leader && strcmp(name, leader) == 0, "config_differs",
                                          leader_hash && hash && strcmp(hash, leader_hash) != 0, "log_seq",
                                          json_object_get(beat, "log_seq"), "weights", json_object_get(beat, "weights")));
  }
  return json_pack("{s:s, s:s, s:b, s:b, s:b, s:I, s:s, s:o, s:o, s:I, s:{s:s, s:I}}", "name", cl.name, "replica",
                   cl.replica, "redis_up", fl_cluster_redis_up(), "subscribed", fl_cluster_sub_subscribed(cl.sub),
                   "leading", fl_cluster_is_leader(NULL), "epoch",
                   (json_int_t)cl.epoch, "config_hash", cl.config_hash, "leader", lead, "replicas", list, "redis_errors",
                   (json_int_t)cl.errors, "log", "id", cl.log_id, "seq", (json_int_t)cl.applied);
}

void fl_cluster_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx) {
  if (!cl.enabled) return;
  fl_metrics_family(b, "fledge_cluster_leader", "gauge", "1 while this replica holds the cluster's leader lease.");
  fl_buf_printf(b, "fledge_cluster_leader{replica=\"%s\"} %d\n", cl.replica, fl_cluster_is_leader(NULL) ? 1 : 0);
  fl_metrics_family(b, "fledge_cluster_redis_up", "gauge", "1 while the connection to the cluster's Redis is up.");
  fl_buf_printf(b, "fledge_cluster_redis_up %d\n", fl_cluster_redis_up() ? 1 : 0);
  fl_metrics_family(b, "fledge_cluster_redis_errors_total", "counter",
                    "Failed connects, lost connections, refused commands and answers that did not come.");
  fl_buf_printf(b, "fledge_cluster_redis_errors_total %" PRIu64 "\n", cl.errors);
}

void fl_cluster_stop(void) {
  if (!cl.enabled || cl.state == CL_STOPPED) return;
  bool up = cl.state == CL_UP;
  if (up && cl.leader) {
    char value[96];
    lease_value(value, sizeof value);
    send_cmd(on_ignore, "the lease's release", "EVAL %s 1 %s %s", RELEASE_LUA, cl.key_leader, value);
  }
  step_down("stopping");
  sync_close();
  fl_cluster_sub_stop(cl.sub);
  cl.sub = NULL;
  while (cl.n_forwards) forward_done(cl.n_forwards - 1, 0, NULL);
  cl.state = CL_STOPPED;
  uv_close((uv_handle_t *)&cl.tick, NULL);
  json_decref(cl.replicas);
  cl.replicas = NULL;
  if (!cl.ac) {
    uv_close((uv_handle_t *)&cl.retry, NULL);
    return;
  }
  redisAsyncDisconnect(cl.ac);            /* after the pending answers; cut if they do not come */
  uv_timer_start(&cl.retry, on_retry, 500, 0);
}
