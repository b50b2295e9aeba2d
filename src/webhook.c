/* webhook.c — a queue of deliveries and one sender thread. The control thread only appends
 * under a short mutex; the network (libcurl, fetch.h) is touched by the sender alone. */
#include "webhook.h"
#include "fetch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define QUEUE_CAP 256

typedef struct {
  char *url;
  char *body;
  int64_t ref;                       /* its owner's outbox row, 0 for none */
  unsigned attempts;
  uint64_t due_ms;
} delivery_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  delivery_t q[QUEUE_CAP];
  unsigned head, len;
  fl_webhook_outcome_t *done;        /* outcomes of referenced deliveries, not taken yet */
  size_t n_done, cap_done;
  bool stop, running;
  pthread_t thread;
  fl_fetcher_t *fetcher;             /* the sender's */
} wh = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* Lock held. The queue stays ordered by when each delivery is due, so a retry waiting out its
 * backoff never holds up fresh events behind it. */
static void enqueue_sorted(const delivery_t *d) {
  unsigned pos = wh.len;
  while (pos > 0 && wh.q[(wh.head + pos - 1) % QUEUE_CAP].due_ms > d->due_ms) {
    wh.q[(wh.head + pos) % QUEUE_CAP] = wh.q[(wh.head + pos - 1) % QUEUE_CAP];
    pos--;
  }
  wh.q[(wh.head + pos) % QUEUE_CAP] = *d;
  wh.len++;
}

static void delivery_free(delivery_t *d) {
  free(d->url);
  free(d->body);
}

void fl_webhook_post(const char *url, const char *body) { fl_webhook_post_ref(url, body, 0); }

void fl_webhook_post_ref(const char *url, const char *body, int64_t ref) {
  char shown[300];
  delivery_t d = {.url = strdup(url), .body = strdup(body), .ref = ref, .due_ms = fl_now_ms()};
  if (!d.url || !d.body) {
    fl_fetch_url_for_log(url, shown, sizeof shown);
    fl_log("webhook to %s dropped: out of memory", shown);
    delivery_free(&d);
    return;
  }
  pthread_mutex_lock(&wh.lock);
  if (wh.len == QUEUE_CAP) {
    delivery_t *old = &wh.q[wh.head];
    fl_fetch_url_for_log(old->url, shown, sizeof shown);
    fl_log("webhook to %s dropped: the queue is full", shown);
    delivery_free(old);
    wh.head = (wh.head + 1) % QUEUE_CAP;
    wh.len--;
  }
  enqueue_sorted(&d);
  pthread_cond_signal(&wh.wake);
  pthread_mutex_unlock(&wh.lock);
}

/* One attempt; true when the receiver answered 2xx. Runs without the lock. */
static bool deliver(delivery_t *d) {
  char err[256] = "the webhook sender could not start libcurl", shown[300];
  int status = 0;
  int rc = wh.fetcher ? fl_fetch(wh.fetcher, d->url, "POST", d->body, 2000, &status, NULL, err, sizeof err) : FL_ENOMEM;
  if (rc == 0 && status >= 200 && status < 300) return true;
  if (rc == 0) snprintf(err, sizeof err, "HTTP status %d, not a 2xx answer", status);
  fl_fetch_url_for_log(d->url, shown, sizeof shown);
  fl_log("webhook to %s failed (attempt %u of %d): %s", shown, d->attempts + 1, FL_WEBHOOK_ATTEMPTS, err);
  return false;
}

/* Lock held. An outcome that cannot be kept (no memory) is lost: its row stays owed and is sent
 * again at the next start, which the receivers tell by the event id. */
static void report(const delivery_t *d, bool delivered) {
  if (!d->ref) return;
  if (wh.n_done == wh.cap_done) {
    size_t cap = wh.cap_done ? wh.cap_done * 2 : 64;
    fl_webhook_outcome_t *grown = realloc(wh.done, cap * sizeof *grown);
    if (!grown) return;
    wh.done = grown;
    wh.cap_done = cap;
  }
  wh.done[wh.n_done++] = (fl_webhook_outcome_t){.ref = d->ref, .delivered = delivered};
}

size_t fl_webhooks_finished(fl_webhook_outcome_t *out, size_t cap) {
  pthread_mutex_lock(&wh.lock);
  size_t n = FL_MIN(cap, wh.n_done);
  if (n) {                             /* none reported yet: wh.done may still be NULL */
    memcpy(out, wh.done, n * sizeof *out);
    memmove(wh.done, wh.done + n, (wh.n_done - n) * sizeof *wh.done);
    wh.n_done -= n;
  }
  pthread_mutex_unlock(&wh.lock);
  return n;
}

size_t fl_webhooks_room(void) {
  pthread_mutex_lock(&wh.lock);
  size_t room = QUEUE_CAP - wh.len;
  pthread_mutex_unlock(&wh.lock);
  return room;
}

static void wait_until(uint64_t due_ms) {
  uint64_t now = fl_now_ms();
  if (due_ms <= now) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t ns = (uint64_t)ts.tv_nsec + (due_ms - now) * 1000000ull;
  ts.tv_sec += (time_t)(ns / 1000000000ull);
  ts.tv_nsec = (long)(ns % 1000000000ull);
  pthread_cond_timedwait(&wh.wake, &wh.lock, &ts);
}

static void log_given_up(const delivery_t *d) {
  char shown[300];
  fl_fetch_url_for_log(d->url, shown, sizeof shown);
  fl_log("webhook to %s given up after %d attempts", shown, FL_WEBHOOK_ATTEMPTS);
}

static void *sender(void *arg) {
  wh.fetcher = fl_fetcher_new();     /* NULL: every attempt fails, and says why */
  pthread_mutex_lock(&wh.lock);
  while (!wh.stop) {
    if (!wh.len) {
      pthread_cond_wait(&wh.wake, &wh.lock);
      continue;
    }
    delivery_t d = wh.q[wh.head];
    if (d.due_ms > fl_now_ms()) {
      wait_until(d.due_ms);
      continue;
    }
    wh.head = (wh.head + 1) % QUEUE_CAP;
    wh.len--;
    pthread_mutex_unlock(&wh.lock);
    bool ok = deliver(&d);
    pthread_mutex_lock(&wh.lock);
    if (ok || ++d.attempts >= FL_WEBHOOK_ATTEMPTS) {
      if (!ok) log_given_up(&d);
      report(&d, ok);
      delivery_free(&d);
      continue;
    }
    if (wh.stop || wh.len == QUEUE_CAP) {        /* not reported: still owed to its receiver */
      delivery_free(&d);
      continue;
    }
    d.due_ms = fl_now_ms() + (500ull << (d.attempts - 1));   /* 0.5 s, 1 s, 2 s, 4 s */
    enqueue_sorted(&d);
  }
  while (wh.len) {
    delivery_free(&wh.q[wh.head]);
    wh.head = (wh.head + 1) % QUEUE_CAP;
    wh.len--;
  }
  pthread_mutex_unlock(&wh.lock);
  fl_fetcher_free(wh.fetcher);
  wh.fetcher = NULL;
  return NULL;
}

int fl_webhooks_start(void) {
  wh.stop = false;
  if (pthread_create(&wh.thread, NULL, sender, NULL) != 0) return FL_ENOMEM;
  wh.running = true;
  return 0;
}

void fl_webhooks_stop(void) {
  if (!wh.running) return;
  pthread_mutex_lock(&wh.lock);
  wh.stop = true;
  pthread_cond_signal(&wh.wake);
  pthread_mutex_unlock(&wh.lock);
  pthread_join(wh.thread, NULL);
  wh.running = false;
  free(wh.done);                     /* outcomes not taken by now are owed again at the next start */
  wh.done = NULL;
  wh.n_done = wh.cap_done = 0;
}
