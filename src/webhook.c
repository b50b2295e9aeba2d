/* webhook.c — a queue of deliveries and one sender thread. The control thread only appends
 * under a short mutex; the network is touched by the sender alone. */
#include "webhook.h"
#include "client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define QUEUE_CAP 256

typedef struct {
  fl_addr_t addr;
  char path[256];
  char *body;
  unsigned attempts;
  uint64_t due_ms;
} delivery_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  delivery_t q[QUEUE_CAP];
  unsigned head, len;
  bool stop, running;
  pthread_t thread;
} wh = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

int fl_webhook_parse_url(const char *url, fl_addr_t *addr, char *path, size_t path_cap) {
  if (strncmp(url, "http://", 7) != 0) return FL_EINVAL;
  const char *host = url + 7, *slash = strchr(host, '/');
  char hostport[80];
  size_t n = slash ? (size_t)(slash - host) : strlen(host);
  if (n == 0 || n >= sizeof hostport) return FL_EINVAL;
  memcpy(hostport, host, n);
  hostport[n] = '\0';
  if (fl_addr_parse(hostport, addr) != 0) return FL_EINVAL;
  snprintf(path, path_cap, "%s", slash ? slash : "/");
  return 0;
}

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

void fl_webhook_post(const fl_addr_t *addr, const char *path, const char *body) {
  pthread_mutex_lock(&wh.lock);
  if (wh.len == QUEUE_CAP) {
    delivery_t *old = &wh.q[wh.head];
    fl_log("webhook to %s%s dropped: the queue is full", old->addr.text, old->path);
    free(old->body);
    wh.head = (wh.head + 1) % QUEUE_CAP;
    wh.len--;
  }
  delivery_t d = {.addr = *addr, .body = strdup(body), .due_ms = fl_now_ms()};
  snprintf(d.path, sizeof d.path, "%s", path);
  enqueue_sorted(&d);
  pthread_cond_signal(&wh.wake);
  pthread_mutex_unlock(&wh.lock);
}

/* One attempt; true when the receiver answered 2xx. Runs without the lock. */
static bool deliver(delivery_t *d) {
  char err[256], *answer = NULL;
  int status = 0;
  int rc = fl_client_request(&d->addr, "POST", d->path, d->body, NULL, 2000, &status, &answer, err, sizeof err);
  free(answer);
  if (rc == 0 && status >= 200 && status < 300) return true;
  fl_log("webhook to %s%s failed (attempt %u of %d): %s", d->addr.text, d->path, d->attempts + 1,
         FL_WEBHOOK_ATTEMPTS, rc ? err : "not a 2xx answer");
  return false;
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

static void *sender(void *arg) {
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
    if (ok || ++d.attempts >= FL_WEBHOOK_ATTEMPTS || wh.stop || wh.len == QUEUE_CAP) {
      free(d.body);
      continue;
    }
    d.due_ms = fl_now_ms() + (500ull << (d.attempts - 1));   /* 0.5 s, 1 s, 2 s, 4 s */
    enqueue_sorted(&d);
  }
  while (wh.len) {
    free(wh.q[wh.head].body);
    wh.head = (wh.head + 1) % QUEUE_CAP;
    wh.len--;
  }
  pthread_mutex_unlock(&wh.lock);
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
}
