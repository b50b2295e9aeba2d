/* resolver.h — the host names among backends, kept resolved off the request path. A name is
 * looked up when a config naming it is loaded (blocking, on the control thread or in `fledge
 * check`), then every resolve.interval and soon after a failure of one of its addresses, on
 * libuv's threadpool from the control loop; workers never look anything up. When a name's
 * addresses change, the control thread publishes a fresh snapshot (the same text parsed again,
 * fl_conf_reparse) listing the new ones: workers take it as they take a reload's, and addresses
 * no longer listed retire with the snapshots that named them (retire.h). */
#ifndef FL_RESOLVER_H
#define FL_RESOLVER_H

#include "conf.h"
#include "http.h"

#include <uv.h>

#define FL_RESOLVE_SOON_MS 1000        /* after a failure, a name is looked up again this soon */
#define FL_RESOLVE_PARALLEL 2          /* lookups at once: the threadpool is shared (libuv's 4) */

/* The loop whose threadpool runs the lookups (the control loop). Control thread, once, before
 * the first fl_resolver_tick; without it (fledge check) only fl_resolver_apply's lookups run. */
void fl_resolver_init(uv_loop_t *loop);

/* Appends each host name's addresses, with its port, to its variant's backends: a name already
 * known takes what its last lookup found, a new one is looked up now (blocking). A name without
 * an address is an error, "FILE:LINE:COL: backend NAME:PORT: cannot resolve NAME: why" in err
 * and FL_EINVAL, unless its variant's resolve is lazy: then it has no backend yet, and is looked
 * up again until it has one. Returns 0, that, or FL_ENOMEM. Call on a snapshot nobody else holds
 * yet, before fl_upstream_bind. Control thread. */
int fl_resolver_apply(fl_conf_t *c, char *err, size_t err_cap);

/* Once a second with the current (bound) snapshot: forgets the names c does not name, starts the
 * lookups that are due (interval, retries, failures of the addresses since the last tick), and
 * returns true while c lists addresses older than the names' last lookups found: the caller then
 * publishes a fresh snapshot (fl_conf_reparse + fl_resolver_apply). Control thread. */
bool fl_resolver_tick(const fl_conf_t *c, uint64_t now_ms);

/* fledge_backend_resolves_total{host,result}, fledge_backend_address_changes_total{host} and
 * fledge_backend_addresses{host} (an fl_metrics_expo_fn; c and ctx unused). Control thread. */
void fl_resolver_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx);

/* Names known now. Control thread. */
unsigned fl_resolver_count(void);

/* Cancels the lookups not started yet; one already running ends by itself and is dropped. Control
 * thread, at the drain's end. */
void fl_resolver_stop(void);

/* Frees every name, once the loop has ended (or after fledge check). */
void fl_resolver_shutdown(void);

#endif
