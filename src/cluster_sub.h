/* cluster_sub.h — one Redis pub/sub channel followed on a libuv loop, for the cluster's "read the
 * log now" notices: its own hiredis async connection (a subscribed connection takes no other
 * command), AUTH, SUBSCRIBE, reconnects with backoff. Loss is fine: the caller also polls. */
#ifndef FL_CLUSTER_SUB_H
#define FL_CLUSTER_SUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fl_cluster_sub fl_cluster_sub_t;

/* A message on the channel (borrowed text, len bytes), or text NULL when the subscription has just
 * been confirmed: notices sent while it was down are lost, so the caller reads what it missed. */
typedef void (*fl_cluster_sub_fn)(void *ctx, const char *text, size_t len);

typedef struct fl_cluster_sub_opts {
  const char *host, *password;       /* password "" or NULL: no AUTH */
  uint16_t port;
  const char *channel;
  fl_cluster_sub_fn fn;
  void *ctx;
} fl_cluster_sub_opts_t;

/* Connects and subscribes; the strings are copied. *out is owned by the caller until
 * fl_cluster_sub_stop. Loop thread. 0 or FL_ENOMEM (fn is never called then). */
int fl_cluster_sub_start(uv_loop_t *loop, const fl_cluster_sub_opts_t *o, fl_cluster_sub_t **out);

/* Whether the subscription is confirmed and its connection up (NULL: false). Loop thread. */
bool fl_cluster_sub_subscribed(const fl_cluster_sub_t *s);

/* Cuts the connection and subscribes again at once (the caller's own connection found Redis
 * hung: this one may be half-open too). Loop thread. */
void fl_cluster_sub_restart(fl_cluster_sub_t *s);

/* Closes the connection; s is freed once its handles are closed; fn is not called any more.
 * NULL is a no-op. Loop thread. */
void fl_cluster_sub_stop(fl_cluster_sub_t *s);

#endif
