/* alog.c — the access log thread: drains each worker's ring every few milliseconds and writes
 * one JSON object per line. Disk speed never reaches the workers: a full ring drops records. */
#include "alog.h"
#include "metrics.h"
#include "router.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static struct {
  FILE *out;
  bool own_file;
  fl_alog_ring_t **rings;
  unsigned n;
  pthread_t thread;
  atomic_bool stop;
  bool running;
  bool failing;                        /* the last flush failed (disk full...): said once a spell */
  atomic_uint_least64_t write_errors;
} alog;

bool fl_alog_push(fl_alog_ring_t *r, const fl_alog_rec_t *rec) {
  unsigned head = atomic_load_explicit(&r->head, memory_order_relaxed);
  unsigned tail = atomic_load_explicit(&r->tail, memory_order_acquire);
  if (head - tail >= FL_ALOG_RING) {
    atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return false;
  }
  r->rec[head % FL_ALOG_RING] = *rec;
  atomic_store_explicit(&r->head, head + 1, memory_order_release);
  return true;
}

/* Versions are user-written: escape quotes, backslashes and control bytes. */
static void put_escaped(FILE *f, const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
    else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
    else fputc(ch, f);
  }
}

static void write_rec(FILE *f, const fl_alog_rec_t *r) {
  char when[32];
  time_t secs = (time_t)(r->unix_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(f, "{\"time\":\"%s.%03uZ\",\"request_id\":\"%s\",\"route\":\"%s\",\"variant\":\"%s\",\"version\":\"", when,
          (unsigned)(r->unix_ms % 1000), r->request_id, r->route, fl_variant_name((fl_variant_id_t)r->variant));
  put_escaped(f, r->version);
  fprintf(f, "\",\"status\":%d,\"duration_ms\":%.3f,\"ttft_ms\":", r->status, r->duration_us / 1000.0);
  if (r->ttft_us) fprintf(f, "%.3f", r->ttft_us / 1000.0);
  else fputs("null", f);
  fprintf(f, ",\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"backend\":\"%s\",\"client\":\"%s\"}\n",
          (long long)r->prompt_tokens, (long long)r->completion_tokens, r->backend, r->client);
}

static unsigned drain(void) {
  unsigned written = 0;
  for (unsigned i = 0; i < alog.n; i++) {
    fl_alog_ring_t *r = alog.rings[i];
    unsigned tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    unsigned head = atomic_load_explicit(&r->head, memory_order_acquire);
    for (; tail != head; tail++, written++) write_rec(alog.out, &r->rec[tail % FL_ALOG_RING]);
    atomic_store_explicit(&r->tail, tail, memory_order_release);
  }
  if (written && (fflush(alog.out) != 0 || ferror(alog.out))) {
    atomic_fetch_add(&alog.write_errors, 1);
    if (!alog.failing) fl_log("access log: writes failing (%s); records are lost until they succeed", strerror(errno));
    alog.failing = true;
    clearerr(alog.out);
  } else if (written && alog.failing) {
    fl_log("access log: writing again");
    alog.failing = false;
  }
  return written;
}

void fl_alog_exposition(fl_buf_t *b, const struct fl_conf *c, void *ctx) {
  uint64_t dropped = 0;
  for (unsigned i = 0; alog.running && i < alog.n; i++) dropped += atomic_load(&alog.rings[i]->dropped);
  fl_metrics_family(b, "fledge_access_log_dropped_total", "counter",
                    "Access-log records dropped because a worker's ring was full.");
  fl_buf_printf(b, "fledge_access_log_dropped_total %llu\n", (unsigned long long)dropped);
  fl_metrics_family(b, "fledge_access_log_write_errors_total", "counter", "Access-log flushes that failed.");
  fl_buf_printf(b, "fledge_access_log_write_errors_total %llu\n", (unsigned long long)atomic_load(&alog.write_errors));
}

static void *alog_main(void *arg) {
  const struct timespec pause = {0, 20 * 1000 * 1000};
  while (!atomic_load(&alog.stop))
    if (drain() == 0) nanosleep(&pause, NULL);
  drain();
  return NULL;
}

int fl_alog_start(const char *path, fl_alog_ring_t **rings, unsigned n, char *err, size_t err_cap) {
  alog.own_file = strcmp(path, "-") != 0;
  alog.out = alog.own_file ? fopen(path, "a") : stdout;
  if (!alog.out) {
    int e = errno;
    snprintf(err, err_cap, "access_log %s: %s", path, strerror(e));
    return -e;
  }
  alog.rings = rings;
  alog.n = n;
  atomic_store(&alog.stop, false);
  if (pthread_create(&alog.thread, NULL, alog_main, NULL) != 0) {
    snprintf(err, err_cap, "access_log %s: cannot start the log thread", path);
    if (alog.own_file) fclose(alog.out);
    return FL_ENOMEM;
  }
  alog.running = true;
  return 0;
}

void fl_alog_stop(void) {
  if (!alog.running) return;
  atomic_store(&alog.stop, true);
  pthread_join(alog.thread, NULL);
  if (alog.own_file) fclose(alog.out);
  else fflush(alog.out);
  alog.running = false;
}
