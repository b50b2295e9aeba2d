/* admin.h — the admin listener on the control thread: health, /metrics, the admin API (routes,
 * rollouts, stats, events, resources) and the built-in dashboard at / (ui.h). Control thread only. */
#ifndef FL_ADMIN_H
#define FL_ADMIN_H

#include "conf.h"
#include "httpd.h"
#include "metrics.h"
#include "store.h"

/* The snapshot the admin API describes; the caller keeps its own reference alive. */
void fl_admin_set_conf(fl_conf_t *c);

/* Where /metrics and /api/v1/stats read from; owned by the caller. */
void fl_admin_set_metrics(const fl_metrics_src_t *src);

/* The state store behind GET /api/v1/events; owned by the caller. */
void fl_admin_set_store(fl_store_t *store);

/* Starts the admin HTTP server on addr (SO_REUSEPORT when share: admin.listen.share); a client
 * silent for idle_ms (timeouts.header) is let go, with 408 when mid-request; at most 256
 * connections. *out is closed with fl_httpd_close. */
int fl_admin_start(uv_loop_t *loop, const fl_addr_t *addr, bool share, uint32_t idle_ms, fl_httpd_t **out);

#endif
