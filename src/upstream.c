/* upstream.c — the backend registry, outlier ejection and per-worker keep-alive pools.
 * Health lives in atomics so every worker sees an ejection at once without locks; pools are
 * per worker so taking or returning a connection never synchronises. */
#include "upstream.h"

#include <pthread.h>
#include <stdlib.h>

#define FL_POOL_MAX_IDLE 128          /* idle connections kept per backend per worker */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static fl_backend_t *registry[FL_MAX_BACKENDS];
static unsigned registry_len;

/* Called with registry_lock held. */
static fl_backend_t *registry_get(const fl_addr_t *addr) {
  for (unsigned i = 0; i < registry_len; i++)
    if (strcmp(registry[i]->addr.text, addr->text) == 0) return registry[i];
  if (registry_len == FL_MAX_BACKENDS) return NULL;
  fl_backend_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->addr = *addr;
  b->id = registry_len;
  registry[registry_len++] = b;
  return b;
}

static int bind_variant(fl_variant_conf_t *v) {
  if (v->n_backends == 0) return 0;
  v->bound = calloc(v->n_backends, sizeof *v->bound);
  if (!v->bound) return FL_ENOMEM;
  for (size_t i = 0; i < v->n_backends; i++) {
    v->bound[i] = registry_get(&v->backends[i]);
    if (!v->bound[i]) return FL_ELIMIT;
  }
  return 0;
}

int fl_upstream_bind(fl_conf_t *c) {
  int rc = 0;
  pthread_mutex_lock(&registry_lock);
  for (size_t r = 0; r < c->n_routes && rc == 0; r++)
    for (int v = 0; v < FL_NVARIANTS && rc == 0; v++) rc = bind_variant(&c->routes[r].variant[v]);
  pthread_mutex_unlock(&registry_lock);
  return rc;
}

bool fl_backend_available(fl_backend_t *b, uint64_t now_ms) {
  return atomic_load_explicit(&b->ejected_until_ms, memory_order_relaxed) <= now_ms;
}

bool fl_backend_report(fl_backend_t *b, bool ok, uint64_t now_ms) {
  if (ok) {
    if (atomic_load_explicit(&b->fails, memory_order_relaxed)) atomic_store(&b->fails, 0);
    if (atomic_load_explicit(&b->ejections, memory_order_relaxed)) atomic_store(&b->ejections, 0);
    return false;
  }
  if (atomic_fetch_add(&b->fails, 1) + 1 != FL_EJECT_AFTER) return false;
  unsigned n = atomic_fetch_add(&b->ejections, 1);
  uint64_t ms = (uint64_t)FL_EJECT_BASE_MS << FL_MIN(n, 4u);
  atomic_store(&b->ejected_until_ms, now_ms + FL_MIN(ms, (uint64_t)FL_EJECT_MAX_MS));
  atomic_store(&b->fails, 0);
  return true;
}

fl_backend_t *fl_upstream_pick(fl_pools_t *p, const fl_variant_conf_t *v, const fl_backend_t *avoid,
                               uint64_t now_ms) {
  size_t n = v->n_backends;
  if (n == 0) return NULL;
  /* The cursor lives with the variant's first backend: good enough to rotate evenly. */
  uint32_t *cursor = &p->rr[v->bound[0]->id];
  for (size_t tries = 0; tries < n; tries++) {
    fl_backend_t *b = v->bound[(*cursor)++ % n];
    if (b != avoid && fl_backend_available(b, now_ms)) return b;
  }
  return NULL;
}

static void unlink_idle(fl_pools_t *p, fl_upconn_t *u) {
  fl_upconn_t **pp = &p->idle[u->backend->id];
  while (*pp && *pp != u) pp = &(*pp)->next;
  if (*pp) {
    *pp = u->next;
    p->n_idle[u->backend->id]--;
  }
  u->next = NULL;
}

fl_upconn_t *fl_pool_take(fl_pools_t *p, fl_backend_t *b) {
  fl_upconn_t *u = p->idle[b->id];
  if (!u) return NULL;
  p->idle[b->id] = u->next;
  p->n_idle[b->id]--;
  u->next = NULL;
  return u;
}

static void on_free(fl_sock_t *s) { free(s->data); }

void fl_upconn_close(fl_pools_t *p, fl_upconn_t *u) {
  if (u->closing) return;
  u->closing = true;
  if (!u->owner) unlink_idle(p, u);
  u->sock.data = u;
  fl_sock_close(&u->sock, on_free);
}

void fl_pool_put(fl_pools_t *p, fl_upconn_t *u) {
  u->owner = NULL;
  u->idle_since_ms = fl_now_ms();
  unsigned id = u->backend->id;
  if (p->n_idle[id] >= FL_POOL_MAX_IDLE) {
    fl_upconn_close(p, u);
    return;
  }
  u->next = p->idle[id];
  p->idle[id] = u;
  p->n_idle[id]++;
}

void fl_pool_sweep(fl_pools_t *p, uint64_t now_ms, uint32_t idle_ms) {
  for (unsigned id = 0; id < FL_MAX_BACKENDS; id++) {
    fl_upconn_t *u = p->idle[id];
    while (u) {
      fl_upconn_t *next = u->next;
      if (now_ms - u->idle_since_ms >= idle_ms) fl_upconn_close(p, u);
      u = next;
    }
  }
}

void fl_pool_close_all(fl_pools_t *p) {
  for (unsigned id = 0; id < FL_MAX_BACKENDS; id++)
    while (p->idle[id]) fl_upconn_close(p, p->idle[id]);
}
