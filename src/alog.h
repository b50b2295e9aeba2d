/* alog.h — the access log: workers push fixed-size records into their own bounded ring (never
 * blocking; a full ring drops and counts), a log thread formats them as JSON lines and writes. */
#ifndef FL_ALOG_H
#define FL_ALOG_H

#include "common.h"
#include "http.h"
#include <stdatomic.h>

struct fl_conf;                        /* conf.h */

#define FL_ALOG_RING 4096              /* records per worker; a power of two */

typedef struct fl_alog_rec {
  uint64_t unix_ms;
  uint64_t duration_us, ttft_us;       /* ttft_us 0: no token stream */
  int64_t prompt_tokens, completion_tokens;   /* -1: unknown */
  int status;
  uint8_t variant;                     /* fl_variant_id_t */
  char request_id[208], route[64], version[64], backend[64];   /* 208: FL_REQUEST_ID_MAX */
  char client[48];                     /* the client's address (behind trusted proxies, theirs) */
} fl_alog_rec_t;

typedef struct fl_alog_ring {
  atomic_uint head;                    /* written by the worker */
  atomic_uint tail;                    /* written by the log thread */
  atomic_uint_least64_t dropped;
  fl_alog_rec_t rec[FL_ALOG_RING];
} fl_alog_ring_t;

/* Worker thread: copies rec into the ring; false (and counted) when the ring is full. */
bool fl_alog_push(fl_alog_ring_t *r, const fl_alog_rec_t *rec);

/* Opens path ("-" = stdout) for appending and starts the log thread over the n rings (owned
 * by the caller, alive until fl_alog_stop returns). On error writes a message into err. */
int fl_alog_start(const char *path, fl_alog_ring_t **rings, unsigned n, char *err, size_t err_cap);

/* Writes what is left, stops the thread and closes the file. */
void fl_alog_stop(void);

/* Appends fledge_access_log_dropped_total and fledge_access_log_write_errors_total to b (zero
 * without an access log): an fl_metrics_expo_fn (metrics.h); c and ctx unused. Control thread. */
void fl_alog_exposition(fl_buf_t *b, const struct fl_conf *c, void *ctx);

#endif
