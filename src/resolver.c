/* resolver.c — the names table (one entry per host name the current config names) and its
 * lookups. Only the control thread touches the table; a lookup runs on libuv's threadpool with
 * its own copy of the name and hands its result back to the control loop, which may have
 * forgotten the name by then. A change bumps the entry's generation; a snapshot whose names were
 * expanded from an older one is stale, and the server publishes a fresh one. */
#include "resolver.h"
#include "dns.h"
#include "metrics.h"
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct name {
  char host[256];
  fl_addr_t addrs[FL_DNS_MAX_ADDRS];  /* port 0; sorted (dns.c) */
  size_t n_addrs;
  bool known;                         /* a lookup found addresses once: they stay until another does */
  unsigned generation;                /* bumped when the addresses change */
  uint32_t interval_ms;               /* the shortest of the variants naming it */
  uint64_t due_ms, started_ms;
  uint32_t retry_ms;                  /* after failed lookups: 1 s, doubling up to the interval */
  bool in_flight, named;
  uint64_t failures_seen;             /* its addresses' failures (upstream.h) at the last tick */
  uint64_t resolves_ok, resolves_failed, changes;
  struct name *next;
} name_t;

typedef struct job {                  /* one lookup on the threadpool */
  uv_work_t req;
  char host[256];
  fl_addr_t addrs[FL_DNS_MAX_ADDRS];
  size_t n_addrs;
  int rc;
  char err[160];
  struct job *next;
} job_t;

static uv_loop_t *loop;
static name_t *names;
static job_t *jobs;                   /* running or waiting on the threadpool */
static unsigned n_jobs;

static name_t *find(const char *host) {
  for (name_t *n = names; n; n = n->next)
    if (strcmp(n->host, host) == 0) return n;
  return NULL;
}

static name_t *add(const char *host) {
  name_t *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  snprintf(n->host, sizeof n->host, "%s", host);
  n->next = names;
  names = n;
  return n;
}

static void addrs_text(const fl_addr_t *addrs, size_t n, char *out, size_t cap) {
  size_t len = 0;
  out[0] = '\0';
  for (size_t i = 0; i < n && len + 2 < cap; i++) {
    len += (size_t)snprintf(out + len, cap - len, "%s", i ? ", " : "");
    if (len < cap) len += fl_addr_ntop((const struct sockaddr *)&addrs[i].ss, out + len, cap - len);
  }
  if (!n) snprintf(out, cap, "none");
}

/* A lookup's outcome, on the control thread: new addresses are kept, logged and counted; after a
 * failure the last ones stay in use (a DNS outage must not empty a pool) and the name is retried. */
static void record(name_t *n, int rc, const fl_addr_t *addrs, size_t n_addrs, const char *err, uint64_t now_ms) {
  char was[600], now_text[600];
  if (rc != 0) {
    n->resolves_failed++;
    if (n->retry_ms == 0) fl_log("backend name %s: lookup failed: %s%s", n->host, err,
                                 n->known ? "; its last addresses stay in use" : "; retrying");
    n->retry_ms = n->retry_ms ? FL_MIN(n->retry_ms * 2, n->interval_ms) : FL_MIN(1000u, n->interval_ms);
    n->due_ms = now_ms + n->retry_ms;
    return;
  }
  n->resolves_ok++;
  if (n->retry_ms && n->known) fl_log("backend name %s: lookups succeed again", n->host);
  n->retry_ms = 0;
  n->due_ms = now_ms + n->interval_ms;
  bool same = n->known && n->n_addrs == n_addrs;
  for (size_t i = 0; same && i < n_addrs; i++) same = memcmp(&n->addrs[i], &addrs[i], sizeof addrs[i]) == 0;
  if (same) return;
  addrs_text(n->addrs, n->known ? n->n_addrs : 0, was, sizeof was);
  addrs_text(addrs, n_addrs, now_text, sizeof now_text);
  if (n->known) n->changes++;
  fl_log("backend name %s: %s %s (was %s)", n->host, n->known ? "addresses changed to" : "resolved to", now_text, was);
  memcpy(n->addrs, addrs, n_addrs * sizeof *addrs);
  n->n_addrs = n_addrs;
  n->known = true;
  n->generation++;
}

/* ---- lookups on the threadpool ---- */

static void run_job(uv_work_t *req) {
  job_t *j = req->data;
  j->rc = fl_dns_lookup(j->host, 0, j->addrs, FL_ARRAY_LEN(j->addrs), &j->n_addrs, j->err, sizeof j->err);
}

static void job_done(uv_work_t *req, int status) {
  job_t *j = req->data;
  for (job_t **pp = &jobs; *pp; pp = &(*pp)->next)
    if (*pp == j) {
      *pp = j->next;
      break;
    }
  n_jobs--;
  name_t *n = find(j->host);          /* NULL: forgotten meanwhile */
  if (n) n->in_flight = false;
  if (n && status == 0) record(n, j->rc, j->addrs, j->n_addrs, j->err, fl_now_ms());
  free(j);
}

static void start_lookup(name_t *n, uint64_t now_ms) {
  job_t *j = calloc(1, sizeof *j);
  if (!j) return;                      /* tried again at the next tick */
  snprintf(j->host, sizeof j->host, "%s", n->host);
  j->req.data = j;
  if (uv_queue_work(loop, &j->req, run_job, job_done) != 0) {
    free(j);
    return;
  }
  j->next = jobs;
  jobs = j;
  n_jobs++;
  n->in_flight = true;
  n->started_ms = now_ms;
}

/* ---- snapshots ---- */

static bool has_addr(const fl_variant_conf_t *v, const fl_addr_t *a) {
  for (size_t i = 0; i < v->n_backends; i++)
    if (strcmp(v->backends[i].text, a->text) == 0) return true;
  return false;
}

/* Looks a name up now, blocking: a config naming it is being loaded. A failure that fails the
 * load is said by its error alone. */
static int first_lookup(name_t *n, bool lazy, char *why, size_t cap) {
  fl_addr_t *found = malloc(FL_DNS_MAX_ADDRS * sizeof *found);
  size_t n_found = 0;
  if (!found) return FL_ENOMEM;
  int rc = fl_dns_lookup(n->host, 0, found, FL_DNS_MAX_ADDRS, &n_found, why, cap);
  uint64_t now = fl_now_ms();
  n->started_ms = now;
  if (rc == 0 || lazy) record(n, rc, found, n_found, why, now);
  else n->resolves_failed++;
  free(found);
  return rc == FL_ENOMEM ? rc : 0;
}

static int expand_name(const fl_conf_t *c, fl_variant_conf_t *v, fl_backend_name_t *bn, char *err, size_t cap) {
  name_t *n = find(bn->host);
  bool met = n != NULL;
  char why[160] = "no address yet";
  if (!n && !(n = add(bn->host))) return FL_ENOMEM;
  n->interval_ms = met ? FL_MIN(n->interval_ms, v->resolve.interval_ms) : v->resolve.interval_ms;
  if (!n->known && (!met || !v->resolve.lazy) && first_lookup(n, v->resolve.lazy, why, sizeof why) != 0)
    return FL_ENOMEM;
  if (!n->known && !v->resolve.lazy) {
    snprintf(err, cap, "%s:%u:%u: backend %s: cannot resolve %s: %s (with resolve: lazy, fledge starts without it "
             "and keeps trying)", c->path, bn->line, bn->column, bn->text, bn->host, why);
    return FL_EINVAL;
  }
  fl_addr_t *more = realloc(v->backends, (v->n_backends + n->n_addrs + 1) * sizeof *more);
  if (!more) return FL_ENOMEM;
  v->backends = more;
  bn->first = v->n_backends;
  for (size_t i = 0; i < n->n_addrs; i++) {
    fl_addr_t *a = &v->backends[v->n_backends];
    fl_addr_set(a, (const struct sockaddr *)&n->addrs[i].ss, bn->port);
    if (!has_addr(v, a)) v->n_backends++;
  }
  bn->count = v->n_backends - bn->first;
  bn->generation = n->generation;
  return 0;
}

int fl_resolver_apply(fl_conf_t *c, char *err, size_t err_cap) {
  int rc = 0;
  for (size_t r = 0; r < c->n_routes && rc == 0; r++)
    for (int k = 0; k < FL_NVARIANTS && rc == 0; k++) {
      fl_variant_conf_t *v = &c->routes[r].variant[k];
      for (size_t i = 0; i < v->n_names && rc == 0; i++) rc = expand_name(c, v, &v->names[i], err, err_cap);
    }
  if (rc == FL_ENOMEM) snprintf(err, err_cap, "%s: out of memory resolving backend names", c->path);
  return rc;
}

/* ---- the tick ---- */

/* Failures of the addresses v took from bn, ever (the counters only grow). */
static uint64_t failures_of(const fl_variant_conf_t *v, const fl_backend_name_t *bn) {
  uint64_t sum = 0;
  for (size_t i = bn->first; v->bound && i < bn->first + bn->count; i++)
    sum += atomic_load_explicit(&v->bound[i]->failures, memory_order_relaxed);
  return sum;
}

/* Marks the names c names; says whether c is stale, and gathers each name's failures. */
static bool mark_named(const fl_conf_t *c) {
  bool stale = false;
  for (name_t *n = names; n; n = n->next) n->named = false;
  for (size_t r = 0; r < c->n_routes; r++)
    for (int k = 0; k < FL_NVARIANTS; k++) {
      const fl_variant_conf_t *v = &c->routes[r].variant[k];
      for (size_t i = 0; i < v->n_names; i++) {
        name_t *n = find(v->names[i].host);
        if (!n) continue;               /* a name was added by a failed reload's apply and forgotten */
        if (!n->named) n->interval_ms = v->resolve.interval_ms;
        else n->interval_ms = FL_MIN(n->interval_ms, v->resolve.interval_ms);
        n->named = true;
        stale |= v->names[i].generation != n->generation;
      }
    }
  return stale;
}

/* A name whose addresses failed since the last tick is due soon: its backend may have moved. */
static void note_failures(const fl_conf_t *c, uint64_t now_ms) {
  for (name_t *n = names; n; n = n->next) {
    uint64_t sum = 0;
    for (size_t r = 0; r < c->n_routes; r++)
      for (int k = 0; k < FL_NVARIANTS; k++) {
        const fl_variant_conf_t *v = &c->routes[r].variant[k];
        for (size_t i = 0; i < v->n_names; i++)
          if (strcmp(v->names[i].host, n->host) == 0) sum += failures_of(v, &v->names[i]);
      }
    if (sum > n->failures_seen) n->due_ms = FL_MIN(n->due_ms, FL_MAX(now_ms, n->started_ms + FL_RESOLVE_SOON_MS));
    n->failures_seen = sum;
  }
}

static void forget_unnamed(void) {
  for (name_t **pp = &names; *pp;) {
    name_t *n = *pp;
    if (n->named) {
      pp = &n->next;
      continue;
    }
    *pp = n->next;
    free(n);
  }
}

bool fl_resolver_tick(const fl_conf_t *c, uint64_t now_ms) {
  bool stale = mark_named(c);
  forget_unnamed();
  note_failures(c, now_ms);
  for (name_t *n = names; n && loop; n = n->next)
    if (!n->in_flight && n_jobs < FL_RESOLVE_PARALLEL && now_ms >= n->due_ms) start_lookup(n, now_ms);
  return stale;
}

/* ---- reading, stopping ---- */

void fl_resolver_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx) {
  if (!names) return;
  fl_metrics_family(b, "fledge_backend_resolves_total", "counter", "Lookups of the backends' host names, by result.");
  for (name_t *n = names; n; n = n->next)
    fl_buf_printf(b, "fledge_backend_resolves_total{host=\"%s\",result=\"ok\"} %llu\n"
                  "fledge_backend_resolves_total{host=\"%s\",result=\"error\"} %llu\n", n->host,
                  (unsigned long long)n->resolves_ok, n->host, (unsigned long long)n->resolves_failed);
  fl_metrics_family(b, "fledge_backend_address_changes_total", "counter",
                    "Lookups of a backend host name that found other addresses than the one before.");
  for (name_t *n = names; n; n = n->next)
    fl_buf_printf(b, "fledge_backend_address_changes_total{host=\"%s\"} %llu\n", n->host, (unsigned long long)n->changes);
  fl_metrics_family(b, "fledge_backend_addresses", "gauge", "Addresses a backend host name has now (each a backend).");
  for (name_t *n = names; n; n = n->next)
    fl_buf_printf(b, "fledge_backend_addresses{host=\"%s\"} %zu\n", n->host, n->known ? n->n_addrs : 0);
}

unsigned fl_resolver_count(void) {
  unsigned count = 0;
  for (name_t *n = names; n; n = n->next) count++;
  return count;
}

void fl_resolver_init(uv_loop_t *l) { loop = l; }

void fl_resolver_stop(void) {
  for (job_t *j = jobs; j; j = j->next) uv_cancel((uv_req_t *)&j->req);   /* job_done gets UV_ECANCELED */
  loop = NULL;                         /* no lookup starts after this */
}

void fl_resolver_shutdown(void) {
  while (names) {
    name_t *n = names;
    names = n->next;
    free(n);
  }
}
