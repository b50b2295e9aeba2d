/* cluster_sub.c — the cluster's notice channel: a hiredis async connection of its own on the
 * control loop (through hiredis's libuv adapter), subscribed to one channel, handing each message
 * to its owner; reconnects from 100 ms doubling to 2 s. A notice lost (the connection down, a
 * message in flight when it went) costs only speed: the owner polls as well (docs/cluster.md). */
#include "cluster_sub.h"

#include "common.h"

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define SUB_BACKOFF_MIN_MS 100
#define SUB_BACKOFF_MAX_MS 2000

struct fl_cluster_sub {
  uv_loop_t *loop;
  redisAsyncContext *ac;             /* NULL while down */
  uv_timer_t retry;
  char host[256], password[256], channel[128];
  uint16_t port;
  uint32_t backoff_ms;
  bool subscribed;                   /* the SUBSCRIBE confirmed on the connection now up */
  bool stopped;
  bool told_down;                    /* the loss of the subscription was logged */
  fl_cluster_sub_fn fn;
  void *ctx;
};

static void on_retry(uv_timer_t *t);

static void schedule_retry(fl_cluster_sub_t *s) {
  if (s->stopped) return;
  uv_timer_start(&s->retry, on_retry, s->backoff_ms, 0);
  s->backoff_ms = FL_MIN(s->backoff_ms * 2, SUB_BACKOFF_MAX_MS);
}

/* The subscription went (or never came): said once until it is back, then tried again. */
static void went(fl_cluster_sub_t *s, const char *why) {
  s->ac = NULL;
  if (s->subscribed && !s->told_down) {
    fl_log("cluster: the notice channel %s is down (%s); the decision log is read every tick until it is back",
           s->channel, why);
    s->told_down = true;
  }
  s->subscribed = false;
  schedule_retry(s);
}

/* SUBSCRIBE's confirmation, then every message; NULL when the connection goes (on_disconnect
 * follows) or the context is freed. */
static void on_message(redisAsyncContext *ac, void *reply, void *priv) {
  fl_cluster_sub_t *s = priv;
  const redisReply *r = reply;
  if (!r || s->stopped || ac != s->ac || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
      r->element[0]->type != REDIS_REPLY_STRING)
    return;
  if (strcasecmp(r->element[0]->str, "subscribe") == 0) {
    s->subscribed = true;
    s->backoff_ms = SUB_BACKOFF_MIN_MS;
    if (s->told_down) fl_log("cluster: the notice channel %s is back", s->channel);
    s->told_down = false;
    s->fn(s->ctx, NULL, 0);
  } else if (strcasecmp(r->element[0]->str, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING) {
    s->fn(s->ctx, r->element[2]->str, r->element[2]->len);
  }
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv) {
  const redisReply *r = reply;
  if (r && r->type == REDIS_REPLY_ERROR) redisAsyncDisconnect(ac);   /* the main connection says why */
}

static void on_connect(const redisAsyncContext *ac, int status) {
  fl_cluster_sub_t *s = ac->data;
  if (ac != s->ac) return;
  if (status != REDIS_OK) {                       /* hiredis frees the context after this */
    went(s, ac->errstr[0] ? ac->errstr : "connect failed");
    return;
  }
  redisEnableKeepAlive((redisContext *)&ac->c);   /* a half-open connection is found in time */
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  fl_cluster_sub_t *s = ac->data;
  if (ac != s->ac) return;                        /* one let go of on purpose */
  went(s, status == REDIS_OK ? "closed" : ac->errstr[0] ? ac->errstr : "connection lost");
}

static void connect_now(fl_cluster_sub_t *s) {
  redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
  if (!ac || ac->err || redisLibuvAttach(ac, s->loop) != REDIS_OK) {
    if (ac) redisAsyncFree(ac);
    went(s, "cannot start a connection");
    return;
  }
  ac->data = s;
  s->ac = ac;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  /* queued at once: the first command makes hiredis watch the socket and finish the connect */
  bool sent = (!s->password[0] || redisAsyncCommand(ac, on_auth, s, "AUTH %s", s->password) == REDIS_OK) &&
              redisAsyncCommand(ac, on_message, s, "SUBSCRIBE %s", s->channel) == REDIS_OK;
  if (!sent) {
    s->ac = NULL;
    redisAsyncFree(ac);
    went(s, "cannot queue SUBSCRIBE");
  }
}

static void on_retry(uv_timer_t *t) {
  fl_cluster_sub_t *s = t->data;
  if (!s->stopped && !s->ac) connect_now(s);
}

int fl_cluster_sub_start(uv_loop_t *loop, const fl_cluster_sub_opts_t *o, fl_cluster_sub_t **out) {
  fl_cluster_sub_t *s = calloc(1, sizeof *s);
  if (!s) return FL_ENOMEM;
  s->loop = loop;
  snprintf(s->host, sizeof s->host, "%s", o->host);
  snprintf(s->password, sizeof s->password, "%s", o->password ? o->password : "");
  snprintf(s->channel, sizeof s->channel, "%s", o->channel);
  s->port = o->port;
  s->fn = o->fn;
  s->ctx = o->ctx;
  s->backoff_ms = SUB_BACKOFF_MIN_MS;
  uv_timer_init(loop, &s->retry);
  s->retry.data = s;
  connect_now(s);
  *out = s;
  return 0;
}

bool fl_cluster_sub_subscribed(const fl_cluster_sub_t *s) { return s && s->subscribed; }

/* Lets the connection go; its callbacks, called from within the free, see it is not s->ac. */
static void let_go(fl_cluster_sub_t *s) {
  redisAsyncContext *ac = s->ac;
  s->ac = NULL;
  s->subscribed = false;
  if (ac) redisAsyncFree(ac);
}

void fl_cluster_sub_restart(fl_cluster_sub_t *s) {
  if (!s || s->stopped || !s->ac) return;         /* down: its retry is due anyway */
  let_go(s);
  s->backoff_ms = SUB_BACKOFF_MIN_MS;
  connect_now(s);
}

static void on_closed(uv_handle_t *h) { free(h->data); }

void fl_cluster_sub_stop(fl_cluster_sub_t *s) {
  if (!s) return;
  s->stopped = true;
  let_go(s);
  uv_close((uv_handle_t *)&s->retry, on_closed);
}
