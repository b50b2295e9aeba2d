/* upstream.c — the backend registry, outlier ejection and per-worker keep-alive pools.
 * Health lives in atomics so every worker sees an ejection at once without locks; pools are
 * per worker so taking or returning a connection never synchronises. The registry counts the
 * snapshots naming each address; one no snapshot names retires, and its id is reused only after
 * every worker's pool sweep has closed its idle connections (they point at the entry). */
#include "upstream.h"

#include "tls.h"

#include <stdlib.h>

#define FL_POOL_MAX_IDLE 128          /* idle connections kept per backend per worker */

/* Entries by id, NULL for a free id; ids below registry_len may be taken. Control thread only:
 * workers read just the entries their snapshots name, and retire_epoch. */
static fl_backend_t *registry[FL_MAX_BACKENDS];
static unsigned registry_len;
static uint64_t retirements;                  /* numbers the retirements, from 1 */
static atomic_uint_fast64_t retire_epoch;     /* the newest one, published for the sweeps */

static bool same_tls(const fl_tls_client_t *a, const fl_tls_client_t *b) {
  return a == b || (a && b && strcmp(fl_tls_client_key(a), fl_tls_client_key(b)) == 0);
}

/* The entry of an address reached this way, found (named or retiring) or added at the lowest
 * free id. An https backend keeps the TLS client of the snapshot that first named it. */
static fl_backend_t *registry_get(const fl_addr_t *addr, fl_tls_client_t *tls) {
  unsigned free_id = registry_len;
  for (unsigned i = 0; i < registry_len; i++) {
    if (!registry[i]) free_id = FL_MIN(free_id, i);
    else if (strcmp(registry[i]->addr.text, addr->text) == 0 && same_tls(registry[i]->tls, tls)) return registry[i];
  }
  if (free_id == FL_MAX_BACKENDS) return NULL;
  fl_backend_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->addr = *addr;
  b->tls = fl_tls_client_ref(tls);
  b->id = free_id;
  registry[free_id] = b;
  if (free_id == registry_len) registry_len++;
  return b;
}

static void backend_free(fl_backend_t *b) {
  if (b) fl_tls_client_unref(b->tls);
  free(b);
}

/* A retiring backend named again keeps its entry, id and health; its sweeps so far did no harm. */
static void backend_ref(fl_backend_t *b) {
  if (b->refs++ == 0) atomic_store_explicit(&b->retiring, false, memory_order_relaxed);
}

/* The flag is stored before the epoch is published: a sweep that sees the epoch sees the flag. */
static void backend_unref(fl_backend_t *b) {
  if (--b->refs > 0) return;
  b->retired_epoch = ++retirements;
  atomic_store_explicit(&b->retiring, true, memory_order_relaxed);
  atomic_store_explicit(&retire_epoch, retirements, memory_order_release);
}

static int bind_variant(fl_variant_conf_t *v) {
  if (v->n_backends == 0) return 0;
  v->bound = calloc(v->n_backends, sizeof *v->bound);
  if (!v->bound) return FL_ENOMEM;
  for (size_t i = 0; i < v->n_backends; i++) {
    if (!(v->bound[i] = registry_get(&v->backends[i], v->tls))) return FL_ELIMIT;
    backend_ref(v->bound[i]);
  }
  return 0;
}

int fl_upstream_bind(fl_conf_t *c) {
  int rc = 0;
  for (size_t r = 0; r < c->n_routes && rc == 0; r++)
    for (int v = 0; v < FL_NVARIANTS && rc == 0; v++) rc = bind_variant(&c->routes[r].variant[v]);
  return rc;
}

void fl_upstream_unbind(fl_conf_t *c) {
  for (size_t r = 0; r < c->n_routes; r++)
    for (int k = 0; k < FL_NVARIANTS; k++) {
      fl_variant_conf_t *v = &c->routes[r].variant[k];
      for (size_t i = 0; v->bound && i < v->n_backends; i++) {
        if (v->bound[i]) backend_unref(v->bound[i]);
        v->bound[i] = NULL;
      }
    }
}

unsigned fl_upstream_collect(struct fl_pools *const *pools, unsigned n) {
  uint64_t swept = UINT64_MAX;
  for (unsigned i = 0; i < n; i++)
    swept = FL_MIN(swept, (uint64_t)atomic_load_explicit(&pools[i]->swept_epoch, memory_order_acquire));
  unsigned left = 0;
  for (unsigned id = 0; id < registry_len; id++) {
    fl_backend_t *b = registry[id];
    if (!b || b->refs > 0) continue;
    if (b->retired_epoch > swept) {
      left++;
      continue;
    }
    registry[id] = NULL;
    backend_free(b);
  }
  while (registry_len > 0 && !registry[registry_len - 1]) registry_len--;
  return left;
}

unsigned fl_upstream_count(void) {
  unsigned n = 0;
  for (unsigned id = 0; id < registry_len; id++) n += registry[id] != NULL;
  return n;
}

void fl_upstream_shutdown(void) {
  for (unsigned id = 0; id < registry_len; id++) {
    backend_free(registry[id]);
    registry[id] = NULL;
  }
  registry_len = 0;
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
  atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed);
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

void fl_upconn_done(fl_pools_t *p, fl_upconn_t *u, bool reuse) {
  if (reuse && u->sock.reading && u->sock.queued == 0) {
    u->requests++;
    fl_pool_put(p, u);
  } else {
    fl_upconn_close(p, u);
  }
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

/* The epoch is read first: a backend that began retiring later may keep an idle connection
 * here, and this sweep does not count for it. */
void fl_pool_sweep(fl_pools_t *p, uint64_t now_ms, uint32_t idle_ms) {
  uint64_t epoch = atomic_load_explicit(&retire_epoch, memory_order_acquire);
  for (unsigned id = 0; id < FL_MAX_BACKENDS; id++) {
    fl_upconn_t *u = p->idle[id];
    bool retiring = u && atomic_load_explicit(&u->backend->retiring, memory_order_relaxed);
    while (u) {
      fl_upconn_t *next = u->next;
      if (retiring || now_ms - u->idle_since_ms >= idle_ms) fl_upconn_close(p, u);
      u = next;
    }
  }
  atomic_store_explicit(&p->swept_epoch, epoch, memory_order_release);
}

void fl_pool_close_all(fl_pools_t *p) {
  for (unsigned id = 0; id < FL_MAX_BACKENDS; id++)
    while (p->idle[id]) fl_upconn_close(p, p->idle[id]);
}
