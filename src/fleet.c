/* fleet.c — the rollouts' side of a cluster: a decision is offered to the shared log first
 * (cluster.c appends it in Redis under the leader's lease) and takes effect only once it is
 * there; every replica applies the log's records, in order, to its state store (one transaction
 * with how far it has read) and to its rollouts, so all serve the same weights and keep the same
 * history, and a new leader goes on from the same step. docs/cluster.md. */
#include "fleet.h"

#include "cluster.h"
#include "live.h"
#include "monitor.h"
#include "outbox.h"
#include "quality.h"
#include "rollout.h"

#include <sys/random.h>
#include <time.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define POSITION_KEY "cluster_log"          /* settings: "LOG-ID SEQ" */

static fl_store_t *store;
static const fl_conf_t *conf;
static const fl_metrics_src_t *metrics;
static char boot[17];                       /* this process's run, so a restart is told apart */
static int64_t boot_ms;                     /* and when it began (wall clock) */
static json_t *others;                      /* replica -> its counts as last read (not this one) */

#define STR(st, f) json_stringn((st)->f, strnlen((st)->f, sizeof (st)->f))

json_t *fl_fleet_state_json(const fl_route_state_t *st) {
  return json_pack("{s:o, s:I, s:I, s:o, s:o, s:o, s:o, s:i, s:i, s:I, s:o, s:o, s:i}", "route", STR(st, route),
                   "weight_bp", (json_int_t)st->weight_bp, "config_weight_bp", (json_int_t)st->config_weight_bp,
                   "stable_version", STR(st, stable_version), "canary_version", STR(st, canary_version),
                   "previous_stable", STR(st, previous_stable), "rollout_state", STR(st, rollout_state), "step",
                   st->step, "failures", st->failures, "updated_ms", (json_int_t)st->updated_ms, "spec_json",
                   STR(st, spec_json), "pause_reason", STR(st, pause_reason), "looks", st->looks);
}

static bool copy_str(const json_t *j, const char *key, char *out, size_t cap) {
  const char *v = json_string_value(json_object_get(j, key));
  if (!v || strlen(v) >= cap) return false;
  memcpy(out, v, strlen(v) + 1);
  return true;
}

static bool get_int(const json_t *j, const char *key, json_int_t lo, json_int_t hi, json_int_t *out) {
  json_t *v = json_object_get(j, key);
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) return false;
  *out = json_integer_value(v);
  return true;
}

int fl_fleet_state_parse(const json_t *j, fl_route_state_t *st) {
  memset(st, 0, sizeof *st);
  json_int_t w, cw, step, failures, updated, looks;
  bool ok = copy_str(j, "route", st->route, sizeof st->route) && get_int(j, "weight_bp", 0, 10000, &w) &&
            get_int(j, "config_weight_bp", 0, 10000, &cw) &&
            copy_str(j, "stable_version", st->stable_version, sizeof st->stable_version) &&
            copy_str(j, "canary_version", st->canary_version, sizeof st->canary_version) &&
            copy_str(j, "previous_stable", st->previous_stable, sizeof st->previous_stable) &&
            copy_str(j, "rollout_state", st->rollout_state, sizeof st->rollout_state) &&
            get_int(j, "step", -1, INT32_MAX, &step) && get_int(j, "failures", 0, INT32_MAX, &failures) &&
            get_int(j, "updated_ms", 0, INT64_MAX, &updated) &&
            copy_str(j, "spec_json", st->spec_json, sizeof st->spec_json) &&
            copy_str(j, "pause_reason", st->pause_reason, sizeof st->pause_reason) &&
            get_int(j, "looks", 0, INT32_MAX, &looks);
  if (!ok) return FL_EINVAL;
  st->weight_bp = (uint32_t)w;
  st->config_weight_bp = (uint32_t)cw;
  st->step = (int32_t)step;
  st->failures = (int32_t)failures;
  st->updated_ms = updated;
  st->looks = (int32_t)looks;
  return 0;
}

/* {route, replica, state, window?, events: [{actor, kind, detail, hooks}]}: what every replica
 * records. The webhooks are owed by the replica that made the decision only (`replica`): it sends
 * them from its own record, or from the log's when Redis took the record but its answer was lost. */
static json_t *record_json(const fl_store_decision_t *d) {
  json_t *events = json_array();
  for (size_t i = 0; i < d->n_events; i++) {
    json_t *hooks = json_array();
    for (size_t k = 0; k < d->events[i].n_hooks; k++) json_array_append_new(hooks, json_string(d->events[i].hooks[k]));
    json_array_append_new(events, json_pack("{s:s, s:s, s:O?, s:o}", "actor", d->events[i].actor, "kind",
                                            d->events[i].kind, "detail", d->events[i].detail, "hooks", hooks));
  }
  json_t *rec = json_pack("{s:s, s:s, s:o, s:o}", "route", d->state->route, "replica", fl_cluster_replica(), "state",
                          fl_fleet_state_json(d->state), "events", events);
  if (rec && d->window)
    json_object_set_new(rec, "window", json_pack("{s:i, s:s, s:O?}", "step", d->window->step, "verdict",
                                                 d->window->verdict, "analysis", d->window->analysis));
  return rec;
}

static char position_text[64];

static const char *position_of(const char *log_id, uint64_t seq) {
  snprintf(position_text, sizeof position_text, "%s %" PRIu64, log_id, seq);
  return position_text;
}

/* The rollouts' share hook: the decision goes into the log, or it does not take effect. Each
 * event's detail names the replica that made it (the leader), so every replica's history and
 * webhooks say who decided. */
static int offer(fl_store_decision_t *d, char *err, size_t cap) {
  if (!d->state) return 0;                   /* a window alone: this replica's own record */
  if (!d->n_events && !fl_cluster_is_leader(NULL)) return 0;   /* a state written back as it is */
  for (size_t i = 0; i < d->n_events; i++)
    if (json_is_object(d->events[i].detail))
      json_object_set_new(d->events[i].detail, "replica", json_string(fl_cluster_replica()));
  json_t *rec = record_json(d);
  char *text = rec ? json_dumps(json_object_get(rec, "state"), JSON_COMPACT) : NULL;
  char *whole = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
  json_decref(rec);
  uint64_t seq = 0;
  int rc = text && whole ? fl_cluster_commit(d->state->route, text, whole, &seq, err, cap) : FL_ENOMEM;
  if (rc == FL_ENOMEM) snprintf(err, cap, "out of memory");
  free(text);
  free(whole);
  if (rc != 0) return rc;
  d->setting_key = POSITION_KEY;
  d->setting_value = position_of(fl_cluster_log_id(), seq);
  return 0;
}

static void commit_here(const fl_store_decision_t *d) {
  int rc = fl_store_commit_decision(store, d);
  if (rc != 0) fl_log("state store: cannot record a decision of the shared log (%s)%s", fl_store_error(store),
                      rc == FL_EIO ? "; kept to be written later" : "");
}

/* A record of the log: the same decision, recorded here whole (route state, window, events and
 * the position, one transaction), then taken by the rollouts; without its state, its history
 * only (the state comes whole after it). */
static void apply(json_t *rec, const char *log_id, uint64_t seq, bool with_state) {
  static fl_route_state_t st;                /* large; control thread only */
  if (fl_fleet_state_parse(json_object_get(rec, "state"), &st) != 0) {
    fl_log("cluster: record %" PRIu64 " of the shared log has no valid route state; skipped", seq);
    return;
  }
  fl_store_decision_t d = {.state = with_state ? &st : NULL, .setting_key = POSITION_KEY,
                           .setting_value = position_of(log_id, seq)};
  json_t *w = json_object_get(rec, "window");
  fl_store_window_t win = {st.route, (int32_t)json_integer_value(json_object_get(w, "step")),
                           json_string_value(json_object_get(w, "verdict")), json_object_get(w, "analysis")};
  if (json_is_object(w)) d.window = &win;
  /* ours, though the leader that made it never heard Redis take it: the webhooks are ours to send */
  const char *maker = json_string_value(json_object_get(rec, "replica"));
  bool ours = maker && strcmp(maker, fl_cluster_replica()) == 0;
  static const char *urls[FL_DECISION_EVENTS][FL_MAX_HOOKS];
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(rec, "events"), i, e) {
    if (d.n_events == FL_DECISION_EVENTS) break;
    size_t n_hooks = 0, k;
    json_t *url;
    json_array_foreach(json_object_get(e, "hooks"), k, url)
      if (ours && n_hooks < FL_MAX_HOOKS && json_is_string(url)) urls[d.n_events][n_hooks++] = json_string_value(url);
    d.events[d.n_events] = (fl_store_event_t){.route = st.route,
                                              .actor = json_string_value(json_object_get(e, "actor")),
                                              .kind = json_string_value(json_object_get(e, "kind")),
                                              .detail = json_object_get(e, "detail"),
                                              .hooks = urls[d.n_events], .n_hooks = n_hooks};
    d.n_events++;
  }
  commit_here(&d);
  if (ours) fl_outbox_pump();
  if (with_state) fl_rollouts_adopt(&st);
}

/* A route's state taken whole (no events: the log no longer has them, or never had). */
static void adopt(const char *route, json_t *state, const char *log_id, uint64_t seq) {
  static fl_route_state_t st;
  if (fl_fleet_state_parse(state, &st) != 0 || strcmp(st.route, route) != 0) {
    fl_log("cluster: the shared state of route %s is not valid; skipped", route);
    return;
  }
  commit_here(&(fl_store_decision_t){.state = &st, .setting_key = POSITION_KEY,
                                     .setting_value = position_of(log_id, seq)});
  fl_rollouts_adopt(&st);
}

/* Every route's state in the store, for a log begun anew. */
static json_t *states(void) {
  static fl_route_state_t st;
  json_t *all = json_object();
  for (size_t i = 0; conf && all && i < conf->n_routes; i++)
    if (fl_store_get_route(store, conf->routes[i].name, &st) == 0)
      json_object_set_new(all, st.route, fl_fleet_state_json(&st));
  return all;
}

static void position(const char *log_id, uint64_t seq) {
  if (fl_store_put_setting(store, POSITION_KEY, position_of(log_id, seq)) != 0)
    fl_log("state store: cannot note the position in the shared log (%s)", fl_store_error(store));
}

void fl_fleet_set_conf(const fl_conf_t *c) { conf = c; }

/* ---- counts: each replica's numbers in Redis, added up by whoever judges ---- */

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* {count, sum_us, b: [[bucket, n], ...]} with the buckets that are not empty. */
static json_t *hist_json(const fl_hist_snap_t *h) {
  json_t *b = json_array();
  for (unsigned i = 0; i < FL_HIST_BUCKETS; i++)
    if (h->bucket[i]) json_array_append_new(b, json_pack("[I,I]", (json_int_t)i, (json_int_t)h->bucket[i]));
  return json_pack("{s:I, s:I, s:o}", "count", (json_int_t)h->count, "sum_us", (json_int_t)h->sum_us, "b", b);
}

static bool hist_parse(const json_t *j, fl_hist_snap_t *h) {
  memset(h, 0, sizeof *h);
  h->count = (uint64_t)json_integer_value(json_object_get(j, "count"));
  h->sum_us = (uint64_t)json_integer_value(json_object_get(j, "sum_us"));
  size_t i;
  json_t *pair;
  json_array_foreach(json_object_get(j, "b"), i, pair) {
    json_int_t at = json_integer_value(json_array_get(pair, 0));
    if (at < 0 || at >= FL_HIST_BUCKETS) return false;
    h->bucket[at] = (uint64_t)json_integer_value(json_array_get(pair, 1));
  }
  return json_is_object(j);
}

static json_t *snap_json(const fl_series_snap_t *s) {
  json_t *data = json_array();
  const uint64_t *d = (const uint64_t *)&s->data;
  for (size_t i = 0; i < FL_DATA_COUNTERS; i++) json_array_append_new(data, json_integer((json_int_t)d[i]));
  return json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:f, s:f}", "requests", (json_int_t)s->requests, "errors",
                   (json_int_t)s->errors, "completion_tokens", (json_int_t)s->completion_tokens, "duration",
                   hist_json(&s->duration), "ttft", hist_json(&s->ttft), "data", data, "feedback_sum",
                   s->data.feedback_sum, "feedback_sumsq", s->data.feedback_sumsq);
}

/* False for anything this build would not count the same way (another build's data counters). */
static bool snap_parse(const json_t *j, fl_series_snap_t *s) {
  memset(s, 0, sizeof *s);
  json_t *data = json_object_get(j, "data");
  if (!json_is_object(j) || json_array_size(data) != FL_DATA_COUNTERS) return false;
  s->requests = (uint64_t)json_integer_value(json_object_get(j, "requests"));
  s->errors = (uint64_t)json_integer_value(json_object_get(j, "errors"));
  s->completion_tokens = (uint64_t)json_integer_value(json_object_get(j, "completion_tokens"));
  uint64_t *d = (uint64_t *)&s->data;
  for (size_t i = 0; i < FL_DATA_COUNTERS; i++) d[i] = (uint64_t)json_integer_value(json_array_get(data, i));
  s->data.feedback_sum = json_number_value(json_object_get(j, "feedback_sum"));
  s->data.feedback_sumsq = json_number_value(json_object_get(j, "feedback_sumsq"));
  return hist_parse(json_object_get(j, "duration"), &s->duration) && hist_parse(json_object_get(j, "ttft"), &s->ttft);
}

static const char *const VARIANT_KEY[FL_NVARIANTS] = {"stable", "canary"};

/* ---- drift values: a bounded sample of each replica's output values, gathered by every replica ---- */

#define VALUES_RECENT_MS 3000      /* each heartbeat carries the values of the last 3 s, */
#define VALUES_PER_BEAT 100        /* at most this many a feature (an even subsample) */
#define ACC_CAP 4096               /* kept per replica, route, variant, version and feature: the newest */
#define ACC_IDLE_MS 600000         /* one not fed for 10 minutes goes */

/* Output features whose values mean the same on every replica (a predicted class's id does not:
 * each process numbers the classes it meets). */
static bool shared_feature(unsigned f) { return !fl_feature_is_input(f) && f != FL_F_CLASS; }

/* {"FEATURE": [[wall ms, value], ...]} of the values seen in the last VALUES_RECENT_MS. */
static json_t *recent_values(unsigned series) {
  static double v[VALUES_PER_BEAT];
  static uint64_t at[VALUES_PER_BEAT];
  json_t *all = json_object();
  uint64_t now = fl_now_ms();
  int64_t wall = wall_ms();
  for (unsigned f = 0; all && f < FL_F_COUNT; f++) {
    if (!shared_feature(f)) continue;
    size_t n = fl_monitor_values(series, f, now > VALUES_RECENT_MS ? now - VALUES_RECENT_MS : 0, v, at, VALUES_PER_BEAT);
    if (!n) continue;
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
      json_array_append_new(list, json_pack("[I,f]", (json_int_t)(wall - (int64_t)(now - at[i])), v[i]));
    char key[8];
    snprintf(key, sizeof key, "%u", f);
    json_object_set_new(all, key, list);
  }
  return all;
}

typedef struct acc {
  char key[256];                   /* replica, route, variant, version and feature, 0x1f between */
  int64_t newest_ms, fed_ms;       /* the newest value taken (wall); when it was last fed (ours) */
  size_t n, head;                  /* a ring of the newest ACC_CAP */
  int64_t t[ACC_CAP];
  double v[ACC_CAP];
  struct acc *next;
} acc_t;

static acc_t *accs;

static acc_t *acc_get(const char *key) {
  for (acc_t *a = accs; a; a = a->next)
    if (strcmp(a->key, key) == 0) return a;
  acc_t *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  snprintf(a->key, sizeof a->key, "%s", key);
  a->newest_ms = INT64_MIN;
  a->next = accs;
  accs = a;
  return a;
}

static void acc_key(char *out, size_t cap, const char *replica, const char *route, const char *variant,
                    const char *version, const char *feature) {
  snprintf(out, cap, "%s\x1f%s\x1f%s\x1f%s\x1f%s", replica, route, variant, version, feature);
}

/* Takes the values of one replica's variant it had not sent before. */
static void acc_feed(const char *replica, const char *route, const char *variant, const json_t *e) {
  const char *version = json_string_value(json_object_get(e, "version")), *feature;
  json_t *list;
  char key[256];
  json_object_foreach(json_object_get(e, "values"), feature, list) {
    acc_key(key, sizeof key, replica, route, variant, version ? version : "", feature);
    acc_t *a = acc_get(key);
    if (!a) return;
    a->fed_ms = (int64_t)fl_now_ms();
    int64_t newest = a->newest_ms;
    size_t i;
    json_t *pair;
    json_array_foreach(list, i, pair) {
      int64_t t = json_integer_value(json_array_get(pair, 0));
      if (t <= a->newest_ms) continue;            /* sent with an earlier heartbeat too */
      size_t at = (a->head + a->n) % ACC_CAP;
      a->t[at] = t;
      a->v[at] = json_number_value(json_array_get(pair, 1));
      if (a->n < ACC_CAP) a->n++;
      else a->head = (a->head + 1) % ACC_CAP;
      newest = t > newest ? t : newest;
    }
    a->newest_ms = newest;
  }
}

static void acc_sweep(void) {
  int64_t now = (int64_t)fl_now_ms();
  for (acc_t **p = &accs; *p;) {
    if (now - (*p)->fed_ms > ACC_IDLE_MS) {
      acc_t *gone = *p;
      *p = gone->next;
      free(gone);
    } else {
      p = &(*p)->next;
    }
  }
}

/* The other replicas' values of a route's variant and feature since the step's mark (malloc'd
 * into *out, the caller frees it; NULL when none). */
static size_t values(const char *route, fl_variant_id_t id, const char *version, unsigned f, const json_t *marks,
                     double **out) {
  int64_t since = json_integer_value(json_object_get(marks, "at_ms"));
  char tail[200];
  snprintf(tail, sizeof tail, "\x1f%s\x1f%s\x1f%s\x1f%u", route, VARIANT_KEY[id], version, f);
  size_t n = 0, cap = 0, tl = strlen(tail);
  *out = NULL;
  for (acc_t *a = accs; a; a = a->next) {
    size_t kl = strlen(a->key);
    if (kl < tl || strcmp(a->key + kl - tl, tail) != 0) continue;
    for (size_t i = 0; i < a->n; i++) {
      size_t at = (a->head + i) % ACC_CAP;
      if (a->t[at] < since) continue;
      if (n == cap) {
        double *grown = realloc(*out, sizeof *grown * (cap = cap ? 2 * cap : 1024));
        if (!grown) return n;
        *out = grown;
      }
      (*out)[n++] = a->v[at];
    }
  }
  return n;
}

/* This replica's cumulative numbers of every route's variants, for the heartbeat. */
static char *counts(void) {
  static fl_series_snap_t snap;
  json_t *routes = json_object();
  for (size_t i = 0; conf && routes && i < conf->n_routes; i++) {
    const fl_route_t *rt = &conf->routes[i];
    json_t *variants = json_object();
    for (int id = FL_STABLE; id < FL_NVARIANTS; id++) {
      if (id == FL_CANARY && !rt->has_canary) continue;
      memset(&snap, 0, sizeof snap);
      fl_metrics_series(metrics, rt->variant[id].series, &snap);
      fl_monitor_data(rt->variant[id].series, &snap.data);
      json_object_set_new(variants, VARIANT_KEY[id],
                          json_pack("{s:s, s:o, s:o}", "version", rt->variant[id].version, "snap", snap_json(&snap),
                                    "values", recent_values(rt->variant[id].series)));
    }
    json_object_set_new(routes, rt->name, variants);
  }
  json_t *all = json_pack("{s:s, s:I, s:o}", "boot", boot, "boot_ms", (json_int_t)boot_ms, "routes", routes);
  char *text = all ? json_dumps(all, JSON_COMPACT) : NULL;
  json_decref(all);
  return text;
}

static json_t *weights(void) {
  json_t *w = json_object();
  for (size_t i = 0; conf && w && i < conf->n_routes; i++)
    json_object_set_new(w, conf->routes[i].name, json_real(fl_live_weight(&conf->routes[i]) / 100.0));
  return w;
}

static void remote(json_t *all) {
  json_decref(others);
  others = json_incref(all);
  const char *name, *route, *variant;
  json_t *c, *variants, *e;
  json_object_foreach(all, name, c) {
    json_object_foreach(json_object_get(c, "routes"), route, variants) {
      json_object_foreach(variants, variant, e) acc_feed(name, route, variant, e);
    }
  }
  acc_sweep();
}

/* A replica's entry for a route's variant at this version, or NULL. */
static const json_t *entry(const json_t *c, const char *route, fl_variant_id_t id, const char *version) {
  const json_t *e = json_object_get(json_object_get(json_object_get(c, "routes"), route), VARIANT_KEY[id]);
  const char *v = json_string_value(json_object_get(e, "version"));
  return v && strcmp(v, version) == 0 ? e : NULL;
}

/* Where each other replica stands now, for a step's beginning: {at_ms, replicas: {name: {boot, snap}}}. */
static json_t *mark(const char *route, fl_variant_id_t id, const char *version) {
  json_t *marks = json_object();
  const char *name;
  json_t *c;
  json_object_foreach(others, name, c) {
    const json_t *e = entry(c, route, id, version);
    if (e)
      json_object_set_new(marks, name, json_pack("{s:O, s:O}", "boot", json_object_get(c, "boot"), "snap",
                                                 json_object_get(e, "snap")));
  }
  return json_pack("{s:I, s:o}", "at_ms", (json_int_t)wall_ms(), "replicas", marks);
}

/* Adds what each other replica did since marks to win; returns how many replicas it added. A
 * replica with no mark counts from zero only when its run began after the mark (a replica new
 * to the fleet, or one restarted): its numbers are all the window's. */
static unsigned add(const char *route, fl_variant_id_t id, const char *version, const json_t *marks,
                    fl_series_snap_t *win) {
  static fl_series_snap_t now, start;
  unsigned added = 0;
  json_int_t at_ms = json_integer_value(json_object_get(marks, "at_ms"));
  const char *name;
  json_t *c;
  json_object_foreach(others, name, c) {
    const json_t *e = entry(c, route, id, version);
    if (!e || !snap_parse(json_object_get(e, "snap"), &now)) continue;
    const json_t *m = json_object_get(json_object_get(marks, "replicas"), name);
    bool same_run = m && json_equal(json_object_get(m, "boot"), json_object_get(c, "boot"));
    if (same_run) {
      if (!snap_parse(json_object_get(m, "snap"), &start) || now.requests < start.requests) continue;
    } else if (json_integer_value(json_object_get(c, "boot_ms")) >= at_ms - 1000) {
      memset(&start, 0, sizeof start);
    } else {
      continue;                                  /* there before the mark, its start unknown */
    }
    fl_window_add_diff(win, &now, &start);
    added++;
  }
  return added;
}

int fl_fleet_start(fl_store_t *s, const fl_metrics_src_t *m, const fl_conf_t *c) {
  if (!c->cluster) return 0;
  store = s;
  metrics = m;
  conf = c;
  uint8_t raw[8];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) return FL_EIO;
  for (size_t i = 0; i < sizeof raw; i++) snprintf(boot + 2 * i, 3, "%02x", raw[i]);
  boot_ms = wall_ms();
  char id[40] = "", *saved = NULL;
  uint64_t seq = 0;
  if (fl_store_get_setting(store, POSITION_KEY, &saved) == 0 && sscanf(saved, "%39s %" SCNu64, id, &seq) != 2) {
    id[0] = '\0';
    seq = 0;
  }
  free(saved);
  static const fl_cluster_hooks_t hooks = {apply, adopt, states, position, counts, remote, weights, fl_rollouts_rebind};
  fl_cluster_set_hooks(&hooks, id, seq);
  static const fl_rollouts_remote_t others_numbers = {mark, add, values};
  fl_rollouts_share(offer, &others_numbers);
  char err[300];
  if (fl_cluster_join(err, sizeof err) != 0)
    fl_log("cluster: cannot read the shared decision log at start (%s); starting from this replica's own state",
           err);
  return 0;
}
