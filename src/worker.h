/* worker.h — one worker thread's state (its loop, listener, clients, pools, counters and rings)
 * and the one step the data path takes on it. The type lives apart from server.c, which starts
 * and drains workers, so that proxy.c and server.c both use it without including each other. */
#ifndef FL_WORKER_H
#define FL_WORKER_H

#include "conf.h"
#include "http.h"
#include "sock.h"
#include "upstream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#define FL_READ_BUF 65536

struct fl_client;

/* One worker thread. Everything in it is touched only by its own thread, except next_conf and
 * drain (written by the control thread, then `wake` is signalled). */
typedef struct fl_worker {
  unsigned id;
  uv_loop_t loop;
  fl_listener_t listeners[FL_MAX_LISTENERS];   /* conf->listens' (tag: the index), opened at start */
  size_t n_listeners;
  uv_async_t wake;
  pthread_mutex_t wake_lock;          /* wake_open: the control thread wakes only a worker still there */
  bool wake_open;
  uv_timer_t sweep;                   /* closes idle upstream connections (timeouts.idle) */
  pthread_t thread;
  fl_conf_t *conf;                    /* this worker's reference to the current snapshot */
  _Atomic(fl_conf_t *) next_conf;     /* handed over by the control thread, with a reference */
  atomic_int drain;                   /* 0 serve, 1 drain, 2 the deadline passed: cut what is left */
  bool draining;
  uint64_t rng;                       /* xorshift state */
  int64_t wall_offset_ns;             /* wall clock minus monotonic clock; the sweep refreshes it */
  struct fl_client *clients;          /* every open client connection (drain closes idle ones) */
  size_t n_clients;
  fl_pools_t pools;
  struct fl_mirror *mirrors;          /* open mirrors of requests to a canary (shadow.h) */
  unsigned n_mirrors;
  struct fl_wmetrics *metrics;        /* this worker's counters (metrics.h), read by the control thread */
  struct fl_alog_ring *alog;          /* access-log records for the log thread, or NULL (alog.h) */
  struct fl_sample_ring *samples;     /* exchanges for the data monitor, or NULL (monitor.h) */
  uint64_t sample_second;             /* the second sampled_in_second counts */
  uint32_t sampled_in_second;
  fl_buf_t scratch;                   /* response heads are built here, then written */
  fl_head_spares_t heads;             /* header tables not held by a connection right now */
  /* Corking: while one callback runs, what it writes to a client (or to a client's upstream)
   * collects here and leaves in one write at the end: one syscall per answer, not one per piece. */
  struct fl_client *cork_client, *cork_up;
  fl_buf_t cork_client_buf, cork_up_buf;
  char read_buf[FL_READ_BUF];         /* consumed within each read callback, so one per loop */
} fl_worker_t;

/* Worker thread: when the worker is draining and its last client has closed, closes its pools,
 * timers, listener and wake handle, so that its loop ends (server.c then joins the thread). */
void fl_worker_maybe_stop(fl_worker_t *w);

/* Stops accepting on every listener (new connections are refused). */
void fl_worker_close_listeners(fl_worker_t *w);

/* The wall-clock time (Unix milliseconds) of the thread's cached clock (fl_clock_ns). */
static inline uint64_t fl_worker_unix_ms(const fl_worker_t *w) {
  return (uint64_t)((int64_t)fl_clock_ns() + w->wall_offset_ns) / 1000000;
}
/* Measures the wall clock against the monotonic one (once a second: an NTP step shows soon). */
void fl_worker_sync_wall(fl_worker_t *w);

static inline uint32_t fl_worker_rand(fl_worker_t *w) {
  w->rng ^= w->rng >> 12;
  w->rng ^= w->rng << 25;
  w->rng ^= w->rng >> 27;
  return (uint32_t)((w->rng * 0x2545F4914F6CDD1Dull) >> 32);
}

#endif
