/* cluster.c — the Redis side of a fleet of replicas: one hiredis async connection on the control
 * thread's libuv loop (through hiredis's own libuv adapter), the leader's lease (taken with SET NX PX
 * and a fencing epoch from INCR, renewed by compare-and-extend, given up at a local deadline),
 * heartbeats, and the last view of every replica for the admin API. docs/cluster.md. */
#include "cluster.h"

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
#include <time.h>

#define CL_BEAT_MS 1000              /* heartbeat period */
#define CL_STALE_MS 60000            /* a replica silent this long leaves the replicas hash */
#define CL_BACKOFF_MIN_MS 100
#define CL_BACKOFF_MAX_MS 2000

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
  char key_leader[96], key_epoch[96], key_replicas[96];
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
  if (!r) return false;
  if (r->type != REDIS_REPLY_ERROR) return true;
  cl.errors++;
  fl_log("cluster %s: redis refused %s: %s", cl.name, what, r->str);
  return false;
}

static void on_ignore(redisAsyncContext *ac, void *reply, void *priv) { answered(reply, (const char *)priv); }

/* ---- the lease ---- */

static void on_acquire(redisAsyncContext *ac, void *reply, void *priv) {
  redisReply *r = reply;
  cl.acquiring = false;
  if (!answered(r, "the lease") || r->type != REDIS_REPLY_INTEGER || r->integer <= 0) return;
  uint64_t sent = (uint64_t)(uintptr_t)priv;
  cl.leader = true;
  cl.epoch = (uint64_t)r->integer;
  cl.deadline_ms = sent + cl.lease_ms;
  cl.renew_sent_ms = sent;
  fl_log("cluster %s: replica %s leads, epoch %" PRIu64, cl.name, cl.replica, cl.epoch);
}

static void on_renew(redisAsyncContext *ac, void *reply, void *priv) {
  redisReply *r = reply;
  cl.renewing = false;
  if (!answered(r, "the lease's renewal") || !cl.leader) return;
  if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) cl.deadline_ms = (uint64_t)(uintptr_t)priv + cl.lease_ms;
  else step_down("the lease is no longer its own");
}

static void lease_value(char *out, size_t cap) { snprintf(out, cap, "%s:%" PRIu64, cl.replica, cl.epoch); }

static void lease_work(uint64_t now) {
  char value[96], ms[16];
  snprintf(ms, sizeof ms, "%u", cl.lease_ms);
  void *sent = (void *)(uintptr_t)now;
  if (cl.leader && !cl.renewing && now - cl.renew_sent_ms >= cl.lease_ms / 3) {
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
    if (cl.leader && (!beat || (uint64_t)at + CL_STALE_MS < now))      /* the leader sweeps */
      send_cmd(on_ignore, "HDEL", "HDEL %s %b", cl.key_replicas, k->str, k->len);
    else if (beat) json_object_set(all, k->str, beat);
    json_decref(beat);
  }
  json_decref(cl.replicas);
  cl.replicas = all;
}

static void heartbeat(uint64_t now) {
  if (now - cl.last_beat_ms < CL_BEAT_MS) return;
  cl.last_beat_ms = now;
  json_t *beat = json_pack("{s:I, s:s, s:s, s:I, s:b}", "time_ms", (json_int_t)wall_ms(), "admin", cl.admin,
                           "config_hash", cl.config_hash, "epoch_seen", (json_int_t)cl.epoch_seen, "leader", cl.leader);
  char *text = beat ? json_dumps(beat, JSON_COMPACT) : NULL;
  json_decref(beat);
  if (text) send_cmd(on_ignore, "HSET", "HSET %s %s %s", cl.key_replicas, cl.replica, text);
  free(text);
  send_cmd(on_leader_read, NULL, "GET %s", cl.key_leader);
  send_cmd(on_replicas_read, NULL, "HGETALL %s", cl.key_replicas);
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
  cl.acquiring = cl.renewing = false;
  cl.errors++;
  if (was_up || cl.backoff_ms == CL_BACKOFF_MIN_MS)
    fl_log("cluster %s: redis %s:%u unreachable (%s); serving on, retrying every %u ms at most", cl.name, cl.host,
           (unsigned)cl.port, why, CL_BACKOFF_MAX_MS);
  schedule_retry();
}

/* Cuts a connection that stopped answering; hiredis calls what was pending with no reply. */
static void drop_connection(const char *why) {
  redisAsyncContext *ac = cl.ac;
  cl.ac = NULL;
  if (ac) redisAsyncFree(ac);
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
  cl.port = cc->port;
  cl.db = cc->db;
  cl.lease_ms = cc->lease_ms;
  cl.tick_ms = FL_MIN(cl.lease_ms / 6, 250);   /* a free lease is taken within a quarter second */
  cl.backoff_ms = CL_BACKOFF_MIN_MS;
  if (!(cl.replicas = json_object())) return FL_ENOMEM;
  fl_cluster_set_conf(c);
  uv_timer_init(loop, &cl.tick);
  uv_timer_init(loop, &cl.retry);
  uv_timer_start(&cl.tick, on_tick, cl.tick_ms, cl.tick_ms);
  cl.state = CL_DOWN;
  connect_now();
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
  if (epoch) *epoch = cl.leader ? cl.epoch : 0;
  return cl.leader;
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
    json_array_append_new(list, json_pack("{s:s, s:O?, s:I, s:s?, s:O?, s:b, s:b}", "replica", name, "admin",
                                          json_object_get(beat, "admin"), "heartbeat_age_ms",
                                          (json_int_t)(now > (uint64_t)at ? now - (uint64_t)at : 0), "config_hash", hash,
                                          "epoch_seen", json_object_get(beat, "epoch_seen"), "leader",
                                          leader && strcmp(name, leader) == 0, "config_differs",
                                          leader_hash && hash && strcmp(hash, leader_hash) != 0));
  }
  return json_pack("{s:s, s:s, s:b, s:b, s:I, s:s, s:o, s:o, s:I}", "name", cl.name, "replica", cl.replica, "redis_up",
                   fl_cluster_redis_up(), "leading", fl_cluster_is_leader(NULL), "epoch", (json_int_t)cl.epoch,
                   "config_hash", cl.config_hash, "leader", lead, "replicas", list, "redis_errors",
                   (json_int_t)cl.errors);
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
