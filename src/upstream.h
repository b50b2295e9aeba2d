/* upstream.h — backends: their shared health (passive outlier detection) and, per worker,
 * pools of idle keep-alive connections to them with round-robin choice within a variant. */
#ifndef FL_UPSTREAM_H
#define FL_UPSTREAM_H

#include "conf.h"
#include "sock.h"
#include <stdatomic.h>
#include <uv.h>

struct fl_pools;

#define FL_MAX_BACKENDS 1024           /* addresses at once: named by a live snapshot, or retiring */
#define FL_EJECT_AFTER 5               /* consecutive connect failures or 5xx */
#define FL_EJECT_BASE_MS 30000u
#define FL_EJECT_MAX_MS 300000u

/* One backend address (with https, the address and how it is reached: host and authorities),
 * shared by every worker and every snapshot that names it. Created by
 * fl_upstream_bind; its health survives reloads as long as some snapshot names it. Once none
 * does (fl_upstream_unbind) it is retiring: each worker's next pool sweep closes its idle
 * connections, then fl_upstream_collect frees it and its id is given to the next new address. */
typedef struct fl_backend {
  fl_addr_t addr;
  fl_tls_client_t *tls;               /* https: how it is reached (a reference, tls.h); NULL: plain */
  unsigned id;                        /* index for per-worker arrays, < FL_MAX_BACKENDS */
  atomic_uint fails;                  /* consecutive failures */
  atomic_uint ejections;              /* ejections since the last success: 30 s × 2^(n-1) */
  atomic_uint_fast64_t ejected_until_ms;
  atomic_uint_fast64_t failures;      /* every failure reported, never reset: the resolver looks a
                                         backend's name up again soon after one (resolver.h) */
  atomic_bool retiring;               /* no snapshot names it: pools close its idle connections */
  unsigned refs;                      /* bindings by snapshots; control thread */
  uint64_t retired_epoch;             /* when it began retiring (fl_upstream_unbind); control thread */
} fl_backend_t;

/* The registry: control thread only (or before workers start).
 * fl_upstream_bind fills every variant's `bound` array, each entry a reference on a backend;
 * an address some snapshot (or a retiring entry) already has keeps its entry and health.
 * Returns 0, FL_ENOMEM or FL_ELIMIT (more than FL_MAX_BACKENDS addresses at once); on failure
 * c may be partly bound, and fl_upstream_unbind releases what was taken. */
int fl_upstream_bind(fl_conf_t *c);
/* Drops c's references (any part of c that was bound; a second call does nothing). Call once
 * nothing can use c's backends any more: no request holds c (fl_conf_shared is false). */
void fl_upstream_unbind(fl_conf_t *c);
/* Frees the retiring backends that every one of the n pools has swept since they began
 * retiring (their idle connections are closed), so that their ids can be reused. Returns how
 * many are still retiring. */
unsigned fl_upstream_collect(struct fl_pools *const *pools, unsigned n);
/* Addresses in the registry now (named or retiring). */
unsigned fl_upstream_count(void);
/* Frees every entry, at exit once the workers have stopped. */
void fl_upstream_shutdown(void);

/* Health: any thread, lock-free. */
bool fl_backend_available(fl_backend_t *b, uint64_t now_ms);
/* ok=false for a connect failure or a 5xx; returns true when this report ejected it. */
bool fl_backend_report(fl_backend_t *b, bool ok, uint64_t now_ms);

/* An upstream connection. Owned by the worker's pool while idle, by the proxy while in use. */
typedef struct fl_upconn {
  fl_sock_t sock;                     /* reading stays on while pooled */
  fl_backend_t *backend;
  struct fl_pools *pools;             /* of the worker whose loop it lives on */
  struct fl_upconn *next;             /* pool list */
  void *owner;                        /* the proxy exchange using it; NULL when idle */
  unsigned requests;                  /* served so far: >0 means it is a reused connection */
  uint64_t idle_since_ms;             /* when it was last put in the pool */
  bool closing;
} fl_upconn_t;

/* Per-worker pools: idle connections by backend id, round-robin cursors. Worker thread only,
 * except swept_epoch, which the control thread reads (fl_upstream_collect). */
typedef struct fl_pools {
  atomic_uint_fast64_t swept_epoch;   /* the retirements this pool's last sweep had seen */
  fl_upconn_t *idle[FL_MAX_BACKENDS];
  uint16_t n_idle[FL_MAX_BACKENDS];
  uint32_t rr[FL_MAX_BACKENDS];
} fl_pools_t;

/* Next backend of the variant in round-robin order that is not ejected and is not `avoid`;
 * NULL when none is available. */
fl_backend_t *fl_upstream_pick(fl_pools_t *p, const fl_variant_conf_t *v, const fl_backend_t *avoid,
                               uint64_t now_ms);

/* An idle connection to b, or NULL. Connections keep reading while idle (starting and stopping
 * would cost two epoll_ctl calls per request); the proxy's read callback closes an idle one
 * that becomes readable, since that means the backend closed it or sent garbage. */
fl_upconn_t *fl_pool_take(fl_pools_t *p, fl_backend_t *b);

/* Returns a healthy connection to the pool; closes it instead when the pool for that backend
 * is full. */
void fl_pool_put(fl_pools_t *p, fl_upconn_t *u);

/* A connection whose exchange is over: back to the pool when reuse is allowed and it is whole
 * (reading, nothing queued that would go before the next request), else closed. */
void fl_upconn_done(fl_pools_t *p, fl_upconn_t *u, bool reuse);

/* Closes u (removing it from the pool if it is idle there) and frees it in the close callback. */
void fl_upconn_close(fl_pools_t *p, fl_upconn_t *u);

/* Closes every idle connection (drain, shutdown). */
void fl_pool_close_all(fl_pools_t *p);

#define FL_POOL_IDLE_MS 5000u           /* a pooled connection idle this long is closed */

/* Closes the connections idle for idle_ms or longer, so that descriptors and the backends'
 * slots come back when traffic stops, and every idle connection to a retiring backend; then
 * says so in swept_epoch. Worker thread, about once a second. */
void fl_pool_sweep(fl_pools_t *p, uint64_t now_ms, uint32_t idle_ms);

#endif
