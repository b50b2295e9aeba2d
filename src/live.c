/* live.c — the registry of live route state; grows only, entries never move. */
#include "live.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define FL_MAX_LIVE 1024

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static fl_live_t *live[FL_MAX_LIVE];
static unsigned n_live;

/* Lock held. */
static fl_live_t *live_get(const char *route) {
  for (unsigned i = 0; i < n_live; i++)
    if (strcmp(live[i]->route, route) == 0) return live[i];
  if (n_live == FL_MAX_LIVE) return NULL;
  fl_live_t *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  snprintf(l->route, sizeof l->route, "%s", route);
  live[n_live++] = l;
  return l;
}

int fl_live_bind(fl_conf_t *c) {
  int rc = 0;
  pthread_mutex_lock(&live_lock);
  for (size_t i = 0; i < c->n_routes && rc == 0; i++) {
    fl_route_t *r = &c->routes[i];
    fl_live_t *l = live_get(r->name);
    if (!l) {
      rc = FL_ELIMIT;
      break;
    }
    if (!l->seen) {
      atomic_store(&l->weight_bp, r->canary_weight_bp);
      l->config_weight_bp = r->canary_weight_bp;
    }
    l->seen = true;
    r->live = l;
  }
  pthread_mutex_unlock(&live_lock);
  return rc;
}

void fl_live_set_weight(fl_live_t *l, uint32_t weight_bp) { atomic_store(&l->weight_bp, weight_bp); }

void fl_live_set_held(fl_live_t *l, bool held) { atomic_store(&l->held, held); }

void fl_live_set_shadow(fl_live_t *l, uint32_t shadow_bp) {
  atomic_store_explicit(&l->shadow_bp, shadow_bp, memory_order_relaxed);
}

void fl_live_set_file_weight(fl_live_t *l, uint32_t config_weight_bp) { l->config_weight_bp = config_weight_bp; }
