/* server.c — process lifecycle: load the config, start one worker thread per core (each with
 * its own loop and SO_REUSEPORT listener), run the control loop on the main thread (signals,
 * reload, admin listener) and drain on SIGTERM. */
#include "server.h"
#include "worker.h"
#include "admin.h"
#include "claim.h"
#include "cluster.h"
#include "fleet.h"
#include "alog.h"
#include "feedback.h"
#include "metrics.h"
#include "monitor.h"
#include "resources.h"
#include "resolver.h"
#include "retire.h"
#include "scrape.h"
#include "shadow.h"
#include "promql.h"
#include "geo.h"
#include "httpd.h"
#include "live.h"
#include "rollout.h"
#include "store.h"
#include "acceptance.h"
#include "outbox.h"
#include "webhook.h"
#include "proxy.h"

#include <signal.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct fl_control {
  uv_loop_t *loop;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_async_t worker_done;
  uv_timer_t drain_timer;
  uv_timer_t tick_timer;              /* per-second metrics snapshots */
  uv_timer_t republish;               /* the config prepared again: a promotion finished or undone */
  fl_metrics_src_t metrics;
  fl_pools_t **pools;                 /* each worker's, for the backend registry (retire.h) */
  fl_store_t *store;
  fl_httpd_t *admin;
  fl_worker_t *workers;
  unsigned n_workers;
  atomic_uint n_running;
  fl_conf_t *conf;                    /* the control thread's reference to the current snapshot */
  fl_claim_t listen_claims[FL_MAX_LISTENERS], admin_claim;   /* held from start until the drain (claim.h) */
  bool draining;
} fl_control_t;

static fl_control_t ctl;

/* ---- workers ---- */

static void release_claims(void) {
  for (size_t i = 0; i < FL_MAX_LISTENERS; i++) fl_claim_release(&ctl.listen_claims[i]);
  fl_claim_release(&ctl.admin_claim);
}

static void on_connection(void *worker, unsigned listener, int fd, const struct sockaddr *peer, socklen_t peer_len) {
  fl_proxy_accept(worker, listener, fd, peer, peer_len);
}

/* Control thread: uv_async_send on a worker that has left aborts the process, so ask first. */
static void wake_worker(fl_worker_t *w) {
  pthread_mutex_lock(&w->wake_lock);
  if (w->wake_open) uv_async_send(&w->wake);
  pthread_mutex_unlock(&w->wake_lock);
}

static void worker_take_conf(fl_worker_t *w) {
  fl_conf_t *next = atomic_exchange(&w->next_conf, NULL);
  if (!next) return;
  fl_conf_unref(w->conf);
  w->conf = next;
}

static void on_wake(uv_async_t *a) {
  fl_worker_t *w = a->data;
  fl_clock_tick();
  worker_take_conf(w);
  int drain = atomic_load(&w->drain);
  if (drain == 0 || w->draining) {
    if (drain == 2) goto force;
    return;
  }
  w->draining = true;
  fl_worker_close_listeners(w);
  fl_proxy_drain(w);
  fl_pool_close_all(&w->pools);
  fl_worker_maybe_stop(w);
  if (drain != 2) return;
force:                                 /* the drain deadline passed: cut what is left */
  fl_proxy_close_all(w);
}

static void *worker_main(void *arg) {
  fl_worker_t *w = arg;
  worker_take_conf(w);                 /* one published before the worker ran (a restored promotion) */
  uv_run(&w->loop, UV_RUN_DEFAULT);
  fl_pool_close_all(&w->pools);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_loop_close(&w->loop);
  atomic_fetch_sub(&ctl.n_running, 1);
  uv_async_send(&ctl.worker_done);
  return NULL;
}

/* Once a second: pooled upstream connections idle for FL_POOL_IDLE_MS (or timeouts.idle when
 * shorter) close, and spare header tables beyond one per open connection are freed, so that what
 * a burst left behind does not stay for a minute, pinning descriptors and heap pages. */
static void on_sweep(uv_timer_t *t) {
  fl_worker_t *w = t->data;
  fl_clock_tick();
  fl_worker_sync_wall(w);
  fl_pool_sweep(&w->pools, fl_now_ms(), FL_MIN(w->conf->timeouts.idle_ms, FL_POOL_IDLE_MS));
  fl_head_spares_trim(&w->heads, w->n_clients);
}

static int worker_init(fl_worker_t *w, unsigned id, fl_conf_t *conf) {
  w->id = id;
  uv_loop_init(&w->loop);
  w->loop.data = w;
  for (size_t i = 0; i < conf->n_listens; i++) {
    const fl_addr_t *a = &conf->listens[i].addr;
    fl_listener_t *l = &w->listeners[i];
    l->fd = l->spare_fd = -1;
    l->tag = (unsigned)i;
    int fd = fl_listen_socket(a, true);
    int rc = fd < 0 ? fd : fl_listener_start(l, &w->loop, fd, 1024, on_connection, w);
    if (rc < 0) {
      fprintf(stderr, "fledge: listen %s: %s\n", a->text, fd < 0 ? strerror(-fd) : uv_strerror(rc));
      if (fd >= 0) close(fd);
      return rc;
    }
    w->n_listeners = i + 1;
  }
  uv_async_init(&w->loop, &w->wake, on_wake);
  w->wake.data = w;
  pthread_mutex_init(&w->wake_lock, NULL);
  w->wake_open = true;
  uv_timer_init(&w->loop, &w->sweep);
  w->sweep.data = w;
  uv_timer_start(&w->sweep, on_sweep, 1000, 1000);
  fl_worker_sync_wall(w);
  fl_conf_ref(conf);
  w->conf = conf;
  w->metrics = calloc(1, sizeof *w->metrics);
  if (!w->metrics) return FL_ENOMEM;
  if (conf->access_log && !(w->alog = calloc(1, sizeof *w->alog))) return FL_ENOMEM;
  if (!(w->samples = calloc(1, sizeof *w->samples))) return FL_ENOMEM;
  if (getrandom(&w->rng, sizeof w->rng, 0) != sizeof w->rng) w->rng = fl_now_ns();
  w->rng ^= (uint64_t)(id + 1) * 0x9E3779B97F4A7C15ull;
  if (!w->rng) w->rng = 1;
  return 0;
}

/* ---- control: reload, drain ---- */

/* A registry is full only with what the configs still in use name: a reload's old snapshot
 * counts until its last request ends. */
static void bind_error(char *err, size_t cap, const char *path, int rc, const char *what, int max, int max2) {
  if (rc == FL_ENOMEM) snprintf(err, cap, "%s: out of memory registering %s", path, what);
  else if (max2)
    snprintf(err, cap, "%s: too many %s: at most %d and %d, counting the configs still in use", path, what, max, max2);
  else
    snprintf(err, cap, "%s: too many %s: at most %d, counting the configs still in use", path, what, max);
}

/* A loaded file's warnings, a log line each (they are said again at every load, not once). */
static void say_warnings(const char *lines) {
  for (const char *s = lines; s && *s;) {
    size_t len = strcspn(s, "\n");
    fl_log("%.*s", (int)len, s);
    s += len + (s[len] == '\n');
  }
}

/* Loads path (or, with `same_as`, that snapshot's text again: new addresses of its host names)
 * into a snapshot ready for workers: host names resolved, backends bound, GeoIP opened, and last
 * (it is the one step that changes what serves now) the live weights. A snapshot that fails
 * after binding gives its registry references back at once. */
static int prepare_conf(const char *path, const fl_conf_t *same_as, fl_conf_t **out) {
  char err[512];
  fl_conf_t *c = NULL;
  int rc = same_as ? fl_conf_reparse(same_as, &c, err, sizeof err) : fl_conf_load(path, &c, err, sizeof err);
  if (rc == 0) fl_rollouts_overlay(c);          /* finished promotions: before anything is bound */
  if (rc == 0 && !same_as) say_warnings(c->warnings);
  if (rc == 0 && c->admin_token_error) {
    snprintf(err, sizeof err, "%s", c->admin_token_error);
    rc = FL_EINVAL;
  }
  if (rc == 0) rc = fl_resolver_apply(c, err, sizeof err);
  if (rc == 0 && (rc = fl_upstream_bind(c)) != 0)
    bind_error(err, sizeof err, path, rc, "backends at once", FL_MAX_BACKENDS, 0);
  if (rc == 0 && (rc = fl_metrics_bind(c)) != 0)
    bind_error(err, sizeof err, path, rc, "metrics series (route/variant/version, route/variant/backend) at once",
               FL_MAX_SERIES, FL_MAX_BSERIES);
  if (rc == 0 && c->geoip_mmdb) rc = fl_geo_open(c->geoip_mmdb, &c->geo, err, sizeof err);
  if (rc == 0 && (rc = fl_live_bind(c)) != 0) snprintf(err, sizeof err, "%s: too many routes", path);
  if (rc != 0) {
    fprintf(stderr, "%s\n", err);
    if (c) fl_retire_now(c);
    return rc;
  }
  *out = c;
  return 0;
}

static void publish(fl_conf_t *c) {
  for (unsigned i = 0; i < ctl.n_workers; i++) {
    fl_worker_t *w = &ctl.workers[i];
    fl_conf_ref(c);
    fl_conf_t *stale = atomic_exchange(&w->next_conf, c);
    if (stale) fl_conf_unref(stale);
    wake_worker(w);
  }
  fl_conf_t *old = ctl.conf;
  ctl.conf = c;
  fl_admin_set_conf(c);
  if (fl_monitor_reconfigure(c) != 0) fl_log("reload: the data monitor keeps its previous settings (out of memory)");
  fl_resources_configure(c);
  if (fl_scrape_configure(c) != 0) fl_log("reload: backend metrics keep their previous targets (out of memory)");
  if (fl_promql_configure(c->prometheus_url) != 0) fl_log("reload: cannot start the query thread (out of memory)");
  fl_retire_add(old);
}

/* The workers' listening sockets were opened at start, a connection finds its TLS context by
 * its listener's index in the snapshot: a reload may change certificates, not the listeners. */
static bool same_listeners(const fl_conf_t *a, const fl_conf_t *b, char *why, size_t len) {
  if (a->n_listens != b->n_listens) {
    snprintf(why, len, "listen names %zu addresses, not %zu", a->n_listens, b->n_listens);
    return false;
  }
  for (size_t i = 0; i < a->n_listens; i++) {
    const fl_listen_t *x = &a->listens[i], *y = &b->listens[i];
    if (strcmp(x->addr.text, y->addr.text) != 0 || x->share != y->share || !x->tls != !y->tls) {
      snprintf(why, len, "listen %s (%s) would become %s (%s)", y->addr.text, y->tls ? "tls" : "plain", x->addr.text,
               x->tls ? "tls" : "plain");
      return false;
    }
  }
  return true;
}

static void reload(void) {
  fl_conf_t *c;
  if (prepare_conf(ctl.conf->path, NULL, &c) != 0) {
    fl_log("reload of %s failed; still serving the previous config", ctl.conf->path);
    return;
  }
  char why[200];
  if (!same_listeners(c, ctl.conf, why, sizeof why)) {
    fl_log("reload of %s refused: %s; the listeners change only at restart (still serving the previous config)",
           c->path, why);
    fl_conf_unref(c);
    return;
  }
  if (c->workers_wanted != ctl.n_workers || strcmp(c->admin_listen.text, ctl.conf->admin_listen.text) != 0 ||
      c->admin_listen_share != ctl.conf->admin_listen_share)
    fl_log("reload: workers and admin.listen take effect only at restart (its share too)");
  fl_rollouts_bind(c, false);
  publish(c);
  fl_fleet_set_conf(c);
  fl_retire_collect();
  fl_log("reloaded %s", c->path);
}

/* The same config text prepared and published again, as a reload's would be: a host name's
 * addresses changed (resolver.h), or a promotion finished or was undone (rollout.h). Retried
 * each second while it fails. */
static void republish(const char *why) {
  static bool failing;
  fl_conf_t *c;
  if (prepare_conf(ctl.conf->path, ctl.conf, &c) != 0) {
    if (!failing) fl_log("%s: cannot publish the config again; retrying every second", why);
    failing = true;
    return;
  }
  failing = false;
  fl_rollouts_bind(c, false);
  publish(c);
  fl_fleet_set_conf(c);
  fl_retire_collect();
  fl_log("%s: published", why);
}

static void publish_new_addresses(void) { republish("backend names: new addresses"); }

static void on_republish(uv_timer_t *t) {
  if (fl_rollouts_take_republish()) republish("running versions changed");
}

/* rollout.h's republish: after the current callback, never within it. */
static void republish_soon(void) { uv_timer_start(&ctl.republish, on_republish, 0, 0); }

static void signal_workers(int drain) {
  for (unsigned i = 0; i < ctl.n_workers; i++) {
    atomic_store(&ctl.workers[i].drain, drain);
    wake_worker(&ctl.workers[i]);
  }
}

static void on_drain_deadline(uv_timer_t *t) {
  fl_log("drain deadline passed; closing remaining connections");
  signal_workers(2);
}

static void start_drain(void) {
  if (ctl.draining) {
    signal_workers(2);
    return;
  }
  ctl.draining = true;
  fl_log("draining: no new connections, waiting for requests in flight");
  release_claims();                     /* a new gateway may take the addresses we are leaving */
  fl_acceptance_stop_all();
  fl_cluster_stop();                     /* the lease given up: another replica leads at once */
  if (ctl.admin) fl_httpd_close(ctl.admin);
  ctl.admin = NULL;
  signal_workers(1);
  uv_timer_start(&ctl.drain_timer, on_drain_deadline, ctl.conf->timeouts.drain_ms, 0);
}

static void save_baseline(const char *route, json_t *features, void *ctx);

/* The store's backlog is retried every second; its start and its end are said loudly. */
static void flush_store(void) {
  static bool failing;
  fl_store_health_t h;
  fl_store_health(ctl.store, &h);
  bool ok = h.backlog == 0 || fl_store_flush(ctl.store) == 0;
  if (ok && failing) fl_log("state store: writable again; every waiting write is saved");
  if (!ok && !failing)
    fl_log("state store: WRITES FAILING (%s); serving on with the state in memory, %zu writes waiting, retried "
           "every second", h.last_error, h.backlog);
  failing = !ok;
}

/* After a burst (thousands of streams ending), malloc keeps the freed memory in its arenas and
 * RSS stays high; once the free part outweighs what is in use, it goes back to the system. Every
 * 10 s on the control thread: the look and the trim take each arena's lock briefly. */
#define FL_TRIM_EVERY_TICKS 10
#define FL_TRIM_MIN_FREE (4u << 20)

static void release_memory(void) {
  static unsigned ticks;
  static size_t free_after_trim;      /* trimmed chunks still count as free: only new ones matter */
  if (++ticks % FL_TRIM_EVERY_TICKS) return;
  struct mallinfo2 mi = mallinfo2();
  free_after_trim = FL_MIN(free_after_trim, mi.fordblks);
  if (mi.fordblks > free_after_trim + FL_TRIM_MIN_FREE && mi.fordblks > mi.uordblks / 2) {
    malloc_trim(0);
    free_after_trim = mallinfo2().fordblks;
  }
}

static void on_tick(uv_timer_t *t) {
  fl_monitor_tick(ctl.conf, fl_metrics_tick(&ctl.metrics));
  fl_monitor_save_baselines(save_baseline, NULL);
  fl_resources_tick(fl_now_ms());
  fl_cluster_set_conf(ctl.conf);
  fl_fleet_set_conf(ctl.conf);
  flush_store();
  fl_outbox_pump();                       /* outcomes marked; rows the backlog just wrote sent */
  fl_rollouts_tick(ctl.conf);
  if (fl_resolver_tick(ctl.conf, fl_now_ms()) && !ctl.draining) publish_new_addresses();
  fl_retire_collect();
  release_memory();
}

static void on_signal(uv_signal_t *s, int signum) {
  if (signum == SIGHUP) reload();
  else start_drain();
}

/* Sends coalesce, so the count, not the number of wake-ups, says when all workers are done. */
static void on_worker_done(uv_async_t *a) {
  if (atomic_load(&ctl.n_running) > 0) return;
  fl_resolver_stop();
  uv_close((uv_handle_t *)&ctl.sig_term, NULL);
  uv_close((uv_handle_t *)&ctl.sig_int, NULL);
  uv_close((uv_handle_t *)&ctl.sig_hup, NULL);
  uv_close((uv_handle_t *)&ctl.worker_done, NULL);
  uv_close((uv_handle_t *)&ctl.drain_timer, NULL);
  uv_close((uv_handle_t *)&ctl.tick_timer, NULL);
  uv_close((uv_handle_t *)&ctl.republish, NULL);
}

static int control_init(void) {
  ctl.loop = uv_default_loop();
  uv_signal_init(ctl.loop, &ctl.sig_term);
  uv_signal_init(ctl.loop, &ctl.sig_int);
  uv_signal_init(ctl.loop, &ctl.sig_hup);
  uv_signal_start(&ctl.sig_term, on_signal, SIGTERM);
  uv_signal_start(&ctl.sig_int, on_signal, SIGINT);
  uv_signal_start(&ctl.sig_hup, on_signal, SIGHUP);
  uv_async_init(ctl.loop, &ctl.worker_done, on_worker_done);
  uv_timer_init(ctl.loop, &ctl.drain_timer);
  uv_timer_init(ctl.loop, &ctl.tick_timer);
  uv_timer_start(&ctl.tick_timer, on_tick, 0, 1000);
  fl_resolver_init(ctl.loop);
  fl_admin_set_conf(ctl.conf);
  fl_admin_set_metrics(&ctl.metrics);
  fl_admin_set_store(ctl.store);
  int rc = fl_admin_start(ctl.loop, &ctl.conf->admin_listen, ctl.conf->admin_listen_share, ctl.conf->timeouts.header_ms,
                          &ctl.admin);
  if (rc < 0) fprintf(stderr, "fledge: admin listen %s: %s\n", ctl.conf->admin_listen.text, uv_strerror(rc));
  return rc;
}

/* The access log is set at start: a reload may not add or move it (workers own their rings). */
static int start_access_log(void) {
  if (!ctl.conf->access_log) return 0;
  fl_alog_ring_t **rings = calloc(ctl.n_workers, sizeof *rings);
  if (!rings) return FL_ENOMEM;
  for (unsigned i = 0; i < ctl.n_workers; i++) rings[i] = ctl.workers[i].alog;
  char err[300];
  int rc = fl_alog_start(ctl.conf->access_log, rings, ctl.n_workers, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "fledge: %s\n", err);
    free(rings);
  }
  return rc;
}

static void save_baseline(const char *route, json_t *features, void *ctx) {
  char key[80], *text = json_dumps(features, JSON_COMPACT);
  snprintf(key, sizeof key, "baseline:%s", route);
  if (!text || fl_store_put_setting(ctl.store, key, text) != 0)
    fl_log("route %s: cannot save its data baseline in the state store: %s", route, fl_store_error(ctl.store));
  else fl_log("route %s: data baseline saved", route);
  free(text);
}

/* Baselines: data.baseline_file's when given (then saved to the store), else the store's. */
static int load_baselines(void) {
  char path[4096], err[300];
  json_t *file = NULL;
  json_error_t jerr;
  if (ctl.conf->data.baseline_file) {
    fl_conf_resolve(ctl.conf, ctl.conf->data.baseline_file, path, sizeof path);
    if (!(file = json_load_file(path, 0, &jerr)) || !json_is_object(json_object_get(file, "routes"))) {
      fprintf(stderr, "fledge: %s:%d: data.baseline_file: %s\n", path, jerr.line, file ? "needs a \"routes\" object" : jerr.text);
      json_decref(file);
      return FL_EINVAL;
    }
  }
  int rc = 0;
  for (size_t i = 0; i < ctl.conf->n_routes && rc == 0; i++) {
    const char *route = ctl.conf->routes[i].name;
    json_t *features = json_incref(json_object_get(json_object_get(file, "routes"), route));
    bool saved = !features;
    char key[80], *text = NULL;
    snprintf(key, sizeof key, "baseline:%s", route);
    if (!features && fl_store_get_setting(ctl.store, key, &text) == 0) features = json_loads(text, 0, &jerr);
    if (features && (rc = fl_monitor_set_baseline(route, features, saved, err, sizeof err)) != 0)
      fprintf(stderr, "fledge: route %s: data baseline from %s: %s\n", route, saved ? "the state store" : path, err);
    free(text);
    json_decref(features);
  }
  json_decref(file);
  return rc;
}

static int start_monitor(void) {
  static fl_sample_ring_t **rings;
  char err[200];
  if (!(rings = calloc(ctl.n_workers, sizeof *rings))) return FL_ENOMEM;
  for (unsigned i = 0; i < ctl.n_workers; i++) rings[i] = ctl.workers[i].samples;
  fl_monitor_on_pair(fl_shadow_pair);
  int rc = fl_monitor_start(ctl.conf, rings, ctl.n_workers, err, sizeof err);
  if (rc != 0) fprintf(stderr, "fledge: %s\n", err);
  return rc ? rc : load_baselines();
}

/* The state store: `state:` (a relative path is taken beside the config file) or fledge.db there. */
static int open_store(void) {
  char path[4096], err[600];
  fl_conf_resolve(ctl.conf, ctl.conf->state_path ? ctl.conf->state_path : "fledge.db", path, sizeof path);
  int rc = fl_store_open(path, &ctl.store, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "fledge: %s\n", err);
    return rc;
  }
  if (fl_cluster_start(uv_default_loop(), ctl.conf) != 0) {    /* the feedback key may be the fleet's */
    fprintf(stderr, "fledge: cluster: out of memory\n");
    return FL_ENOMEM;
  }
  rc = fl_feedback_init(ctl.conf, ctl.store, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "fledge: %s\n", err);
    return rc;
  }
  fl_outbox_init(ctl.store);              /* webhooks an earlier run owed are sent again */
  uv_timer_init(uv_default_loop(), &ctl.republish);
  fl_rollouts_init(ctl.store, &ctl.metrics, uv_default_loop(), republish_soon);
  if (fl_fleet_start(ctl.store, &ctl.metrics, ctl.conf) != 0) {
    fprintf(stderr, "fledge: cluster: no random bytes for this run's id\n");
    return FL_EIO;
  }
  fl_rollouts_bind(ctl.conf, true);
  if (fl_rollouts_take_republish()) republish("restored promotions");   /* before any traffic */
  return 0;
}

/* What the modules above metrics.c add to /metrics, in the order the exposition shows them, and
 * to each variant and route of /api/v1/stats. */
static json_t *variant_data(unsigned series, void *ctx) { return fl_monitor_series_json(series); }
static json_t *route_baseline(const char *route, void *ctx) { return fl_monitor_baseline_json(route); }
static void forget_series(unsigned series, void *ctx) { fl_monitor_forget(series); }

static int register_metrics_parts(void) {
  static fl_metrics_expo_fn *const expositions[] = {fl_rollouts_exposition, fl_monitor_exposition,
                                                    fl_resources_exposition, fl_scrape_exposition,
                                                    fl_alog_exposition, fl_resolver_exposition,
                                                    fl_cluster_exposition, fl_shadow_exposition};
  int rc = 0;
  for (size_t i = 0; i < FL_ARRAY_LEN(expositions) && rc == 0; i++)
    rc = fl_metrics_register_exposition(expositions[i], NULL);
  if (rc == 0) rc = fl_metrics_register_series_json("data", variant_data, NULL);
  if (rc == 0) rc = fl_metrics_register_route_json("baseline", route_baseline, NULL);
  if (rc == 0) rc = fl_metrics_register_forget(forget_series, NULL);
  if (rc == 0) rc = fl_metrics_register_series_json("shadow", fl_shadow_series_json, &ctl.metrics);
  if (rc == 0) rc = fl_metrics_register_forget(fl_shadow_forget, NULL);
  return rc;
}

/* Before any socket of ours binds: unless the config shares an address on purpose, nothing else
 * may listen there, or SO_REUSEPORT would split its traffic with us without a word. The claims
 * are held until the drain; a reload binds nothing, so it never meets its own claim. */
static int claim_addresses(void) {
  char err[400];
  int rc = 0;
  ctl.admin_claim = (fl_claim_t)FL_CLAIM_NONE;
  for (size_t i = 0; i < FL_MAX_LISTENERS; i++) ctl.listen_claims[i] = (fl_claim_t)FL_CLAIM_NONE;
  for (size_t i = 0; rc == 0 && i < ctl.conf->n_listens; i++)
    if (!ctl.conf->listens[i].share)
      rc = fl_claim_take(&ctl.conf->listens[i].addr, "listen", &ctl.listen_claims[i], err, sizeof err);
  if (rc == 0 && !ctl.conf->admin_listen_share)
    rc = fl_claim_take(&ctl.conf->admin_listen, "admin.listen", &ctl.admin_claim, err, sizeof err);
  if (rc != 0) fprintf(stderr, "fledge: %s\n", err);
  return rc;
}

/* Connections need descriptors: the soft limit (often 1024) goes up to the hard one. */
static void raise_fd_limit(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

int fl_server_run(const char *conf_path) {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);          /* a file-size limit makes the store's writes fail, not the process */
  raise_fd_limit();
  if (prepare_conf(conf_path, NULL, &ctl.conf) != 0 || claim_addresses() != 0) return 1;
  ctl.n_workers = ctl.conf->workers;
  fl_conf_pin_workers(ctl.n_workers);                /* a reload's regex copies are for these */
  ctl.workers = calloc(ctl.n_workers, sizeof *ctl.workers);
  if (!ctl.workers) return 1;
  ctl.metrics.n_workers = ctl.n_workers;
  ctl.metrics.workers = calloc(ctl.n_workers, sizeof *ctl.metrics.workers);
  ctl.pools = calloc(ctl.n_workers, sizeof *ctl.pools);
  if (!ctl.metrics.workers || !ctl.pools) return 1;
  for (unsigned i = 0; i < ctl.n_workers; i++) {
    if (worker_init(&ctl.workers[i], i, ctl.conf) != 0) return 1;
    ctl.metrics.workers[i] = ctl.workers[i].metrics;
    ctl.pools[i] = &ctl.workers[i].pools;
  }
  fl_retire_init(&ctl.metrics, ctl.pools, ctl.n_workers);
  if (register_metrics_parts() != 0 || fl_webhooks_start() != 0 || open_store() != 0 || start_access_log() != 0 ||
      start_monitor() != 0 || control_init() != 0)
    return 1;
  fl_resources_configure(ctl.conf);
  if (fl_scrape_configure(ctl.conf) != 0 || fl_promql_configure(ctl.conf->prometheus_url) != 0) return 1;
  atomic_store(&ctl.n_running, ctl.n_workers);
  for (unsigned i = 0; i < ctl.n_workers; i++)
    pthread_create(&ctl.workers[i].thread, NULL, worker_main, &ctl.workers[i]);
  char on[FL_MAX_LISTENERS * 80] = "";
  for (size_t i = 0, n = 0; i < ctl.conf->n_listens && n < sizeof on; i++)
    n += (size_t)snprintf(on + n, sizeof on - n, "%s%s%s", i ? ", " : "", ctl.conf->listens[i].addr.text,
                          ctl.conf->listens[i].tls ? " (TLS)" : "");
  fl_log("serving on %s (%u workers), admin on %s, %zu routes", on, ctl.n_workers,
         ctl.conf->admin_listen.text, ctl.conf->n_routes);
  uv_run(ctl.loop, UV_RUN_DEFAULT);
  for (unsigned i = 0; i < ctl.n_workers; i++) {
    pthread_join(ctl.workers[i].thread, NULL);
    fl_conf_unref(ctl.workers[i].conf);
    fl_conf_t *pending = atomic_exchange(&ctl.workers[i].next_conf, NULL);
    if (pending) fl_conf_unref(pending);
    fl_buf_free(&ctl.workers[i].scratch);
    fl_buf_free(&ctl.workers[i].cork_client_buf);
    fl_buf_free(&ctl.workers[i].cork_up_buf);
    fl_head_spares_free(&ctl.workers[i].heads);
  }
  fl_alog_stop();
  fl_monitor_stop();
  fl_shadow_shutdown();
  fl_resources_shutdown();
  fl_scrape_stop();
  fl_promql_stop();
  fl_outbox_stop();
  fl_webhooks_stop();
  fl_rollouts_shutdown();
  fl_store_close(ctl.store);
  release_claims();
  fl_retire_add(ctl.conf);            /* nobody else holds a snapshot now */
  ctl.conf = NULL;
  fl_retire_shutdown();
  fl_resolver_shutdown();
  for (unsigned i = 0; i < ctl.n_workers; i++) {
    fl_wmetrics_free(ctl.workers[i].metrics);
    free(ctl.workers[i].alog);
    free(ctl.workers[i].samples);
  }
  free(ctl.metrics.workers);
  free(ctl.pools);
  fl_metrics_shutdown();
  fl_log("stopped");
  free(ctl.workers);
  return 0;
}
