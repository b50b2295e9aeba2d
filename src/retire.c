/* retire.c — the snapshots a reload replaced. A snapshot is released only when the control
 * thread's reference is the last (fl_conf_shared): then no request, worker or other thread can
 * reach its backends or series, so unbinding it cannot free anything in use. Series go at once;
 * a backend waits for the workers' pool sweeps, since idle connections point at it. */
#include "retire.h"

#include <stdlib.h>

typedef struct held {
  fl_conf_t *conf;
  struct held *next;
} held_t;

static held_t *held;
static unsigned n_held;
static const fl_metrics_src_t *metrics;
static fl_pools_t *const *pools;
static unsigned n_pools;

void fl_retire_init(const fl_metrics_src_t *m, fl_pools_t *const *p, unsigned n) {
  metrics = m;
  pools = p;
  n_pools = n;
}

void fl_retire_now(fl_conf_t *c) {
  fl_metrics_unbind(metrics, c);
  fl_upstream_unbind(c);
  fl_conf_unref(c);
}

void fl_retire_add(fl_conf_t *c) {
  held_t *h = malloc(sizeof *h);
  if (!h) {                          /* its registry entries stay named for good: memory is short */
    fl_log("reload: out of memory keeping the previous config; its backends and series stay registered");
    fl_conf_unref(c);
    return;
  }
  *h = (held_t){c, held};
  held = h;
  n_held++;
}

void fl_retire_collect(void) {
  for (held_t **pp = &held; *pp;) {
    held_t *h = *pp;
    if (fl_conf_shared(h->conf)) {
      pp = &h->next;
      continue;
    }
    *pp = h->next;
    n_held--;
    fl_retire_now(h->conf);
    free(h);
  }
  fl_upstream_collect(pools, n_pools);
}

unsigned fl_retire_pending(void) { return n_held; }

void fl_retire_shutdown(void) {
  fl_retire_collect();
  while (held) {                     /* still held elsewhere (it should not be): let it go as is */
    held_t *h = held;
    held = h->next;
    fl_conf_unref(h->conf);
    free(h);
  }
  n_held = 0;
  fl_upstream_shutdown();
  pools = NULL;
  n_pools = 0;
}
