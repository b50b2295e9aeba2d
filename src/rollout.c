/* rollout.c — the rollout state machine: idle → progressing (step i) ⇄ paused → promoted |
 * rolled_back. One entry per route that ever had a rollout or a weight set at run time. */
#include "rollout.h"
#include "acceptance.h"
#include "http.h"
#include "live.h"
#include "monitor.h"
#include "resources.h"
#include "scrape.h"
#include "router.h"
#include "redact.h"
#include "webhook.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum { RO_IDLE, RO_PROGRESSING, RO_PAUSED, RO_PROMOTED, RO_ROLLED_BACK, RO_ACCEPTANCE } ro_state_t;
static const char *const state_names[] = {"idle", "progressing", "paused", "promoted", "rolled_back", "acceptance"};

typedef struct ro {
  char route[64];
  ro_state_t state;
  fl_rollout_spec_t spec;
  int32_t step;
  uint32_t failures;
  uint64_t step_start_ms;            /* the step's evidence is what came since */
  fl_series_snap_t start_canary, start_stable;
  fl_evidence_t evidence;
  json_t *last_analysis;
  uint64_t verdicts[3];              /* windows by verdict, for metrics */
  uintptr_t generation;              /* bumped by every start: an acceptance report names its own */
  char reason[256];                  /* why it is paused (a hand, a reload); meaningful only then */
  struct ro *next;
} ro_t;

static ro_t *rollouts;
static fl_store_t *store;
static const fl_metrics_src_t *metrics;
static uv_loop_t *control_loop;
static const fl_conf_t *current_conf;      /* the snapshot the control thread serves; for callbacks */

void fl_rollouts_init(fl_store_t *s, const fl_metrics_src_t *m, uv_loop_t *loop) {
  store = s;
  metrics = m;
  control_loop = loop;
}

static ro_t *ro_get(const char *route, bool create) {
  for (ro_t *r = rollouts; r; r = r->next)
    if (strcmp(r->route, route) == 0) return r;
  if (!create) return NULL;
  ro_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  snprintf(r->route, sizeof r->route, "%s", route);
  r->step = -1;
  r->next = rollouts;
  rollouts = r;
  return r;
}

static const fl_route_t *route_of(const fl_conf_t *c, const char *name) { return fl_conf_route(c, name); }

/* ---- persistence and events ---- */

/* Persists a route's state. Every change of state or weight comes through here, so this is also
 * where the canary's hold is set: rolled back (or at its acceptance set) and at weight 0, rules
 * may not send users to it. */
static void save(const fl_route_t *rt, const ro_t *r, uint32_t weight_bp) {
  if (rt->live)
    fl_live_set_held(rt->live, r && weight_bp == 0 && (r->state == RO_ROLLED_BACK || r->state == RO_ACCEPTANCE));
  fl_route_state_t st = {.weight_bp = weight_bp, .config_weight_bp = rt->canary_weight_bp, .step = -1};
  snprintf(st.route, sizeof st.route, "%s", rt->name);
  snprintf(st.stable_version, sizeof st.stable_version, "%s", rt->variant[FL_STABLE].version);
  if (rt->has_canary) snprintf(st.canary_version, sizeof st.canary_version, "%s", rt->variant[FL_CANARY].version);
  if (r) {
    snprintf(st.rollout_state, sizeof st.rollout_state, "%s", state_names[r->state]);
    snprintf(st.pause_reason, sizeof st.pause_reason, "%s", r->state == RO_PAUSED ? r->reason : "");
    st.step = r->step;
    st.failures = (int32_t)r->failures;
    json_t *spec_json = fl_rollout_spec_json(&r->spec);
    char *spec = json_dumps(spec_json, JSON_COMPACT);
    if (spec) snprintf(st.spec_json, sizeof st.spec_json, "%s", spec);
    free(spec);
    json_decref(spec_json);
  }
  if (store && fl_store_put_route(store, &st) != 0)
    fl_log("state store: cannot save route %s: %s; serving on with the weight in memory", rt->name,
           fl_store_error(store));
}

static void notify(const ro_t *r, int64_t id, const char *actor, const char *kind, json_t *detail) {
  json_t *payload = NULL;
  for (size_t i = 0; r && i < r->spec.n_hooks; i++) {
    if (!fl_hook_wants(&r->spec.hooks[i], kind)) continue;
    if (!payload)
      payload = json_pack("{s:I, s:s, s:s, s:s, s:I, s:O}", "id", (json_int_t)id, "route", r->route, "event", kind,
                          "actor", actor, "time_ms", (json_int_t)fl_now_ms(), "detail", detail);
    char *body = json_dumps(payload, JSON_COMPACT);
    if (body) fl_webhook_post(r->spec.hooks[i].url, body);
    free(body);
  }
  json_decref(payload);
}

/* Records the event, then tells the rollout's webhooks. */
static void event_of(const ro_t *r, const char *route, const char *actor, const char *kind, json_t *detail) {
  int64_t id = 0;
  if (store && fl_store_add_event(store, route, actor, kind, detail, &id) != 0)
    fl_log("state store: cannot record event %s of %s: %s", kind, route, fl_store_error(store));
  notify(r, id, actor, kind, detail);
  json_decref(detail);
}

static void event(const char *route, const char *actor, const char *kind, json_t *detail) {
  event_of(ro_get(route, false), route, actor, kind, detail);
}

/* Persist, then apply, then explain: a decision survives a crash before it serves traffic. */
static void set_weight(const fl_route_t *rt, ro_t *r, uint32_t bp, const char *actor, const char *kind, json_t *why) {
  uint32_t before = fl_live_weight(rt);
  save(rt, r, bp);
  fl_live_set_weight(rt->live, bp);
  json_object_set_new(why, "from", json_real(before / 100.0));
  json_object_set_new(why, "to", json_real(bp / 100.0));
  fl_log("route %s: %s, canary weight %.2f -> %.2f (%s)", rt->name, kind, before / 100.0, bp / 100.0, actor);
  event_of(r, rt->name, actor, kind, why);
}

/* Pauses a progressing rollout, saying why in its state (the API, fledge status) and the log. */
static void pause_for(const fl_route_t *rt, ro_t *r, const char *actor, const char *why) {
  r->state = RO_PAUSED;
  snprintf(r->reason, sizeof r->reason, "%s", why);
  save(rt, r, fl_live_weight(rt));
  event_of(r, rt->name, actor, "paused", json_pack("{s:i, s:s}", "step", r->step, "reason", why));
}

/* A weight set from outside the rollout: the admin API, the CLI (through it), a reload of the
 * file. A rollout in progress would move it again at its next window, so it is paused first,
 * with the reason; after a rollback the outside hand takes over (no hold). Then, as every
 * decision: persisted, applied, recorded, here with its source; the pause is recorded after
 * the change that caused it. detail (stolen) tells the rest: the client, the file. */
static void outside_weight(const fl_route_t *rt, uint32_t bp, const char *source, json_t *detail, const char *why) {
  ro_t *r = ro_get(rt->name, false);
  bool pausing = r && r->state == RO_PROGRESSING;
  if (pausing) {
    r->state = RO_PAUSED;
    snprintf(r->reason, sizeof r->reason, "%s", why);
  }
  if (r && r->state == RO_ROLLED_BACK) r->state = RO_IDLE;
  json_object_set_new(detail, "source", json_string(source));
  set_weight(rt, r, bp, source, "weight", detail);
  if (pausing) event_of(r, rt->name, source, "paused", json_pack("{s:i, s:s}", "step", r->step, "reason", why));
}

/* ---- windows ---- */

/* A variant's cumulative numbers: the workers' metrics and the data monitor's counters. */
static void snapshot(const fl_route_t *rt, fl_variant_id_t id, fl_series_snap_t *out) {
  fl_metrics_series(metrics, rt->variant[id].series, out);
  fl_monitor_data(rt->variant[id].series, &out->data);
  out->has_process = fl_resources_variant(rt->name, id, &out->process_rss, &out->process_cpu);
}

/* A step's evidence starts empty: what the canary did at another weight is another question. */
static void step_begin(const fl_route_t *rt, ro_t *r) {
  r->step_start_ms = fl_now_ms();
  r->evidence = (fl_evidence_t){0};
  snapshot(rt, FL_CANARY, &r->start_canary);
  snapshot(rt, FL_STABLE, &r->start_stable);
}

static json_t *window_close(const fl_route_t *rt, ro_t *r, fl_verdict_t *v) {
  static fl_series_snap_t now_c, now_s, win_c, win_s;
  fl_drift_t drift[FL_F_COUNT];
  bool drift_set[FL_F_COUNT];
  snapshot(rt, FL_CANARY, &now_c);
  snapshot(rt, FL_STABLE, &now_s);
  fl_window_diff(&now_c, &r->start_canary, &win_c);
  fl_window_diff(&now_s, &r->start_stable, &win_s);
  for (size_t i = 0; i < r->spec.n_checks; i++) {
    const fl_check_t *k = &r->spec.checks[i];
    if (k->kind == FL_CHECK_BACKEND) {
      win_c.backend_known[i] = fl_scrape_variant_value(rt->name, FL_CANARY, k->name + 8, &win_c.backend[i]);
      win_s.backend_known[i] = fl_scrape_variant_value(rt->name, FL_STABLE, k->name + 8, &win_s.backend[i]);
    }
  }
  bool due = fl_analysis_due(&r->spec, &r->evidence, &win_c, &win_s);   /* else nothing is tested: no drift */
  memset(drift_set, 0, sizeof drift_set);
  if (due)
    fl_monitor_window_drift(rt->variant[FL_CANARY].series, rt->variant[FL_STABLE].series, r->step_start_ms,
                            fl_now_ms(), drift, drift_set);
  bool was_held = r->evidence.held;
  json_t *a = fl_analysis_run(&r->spec, &r->evidence, &win_c, &win_s, due ? drift : NULL, v);
  json_object_set_new(a, "drift", fl_monitor_drift_json(drift, drift_set));
  json_object_set_new(a, "step", json_integer(r->step));
  json_object_set_new(a, "weight", json_real(r->spec.steps_bp[r->step] / 100.0));
  r->verdicts[*v]++;
  if (store) fl_store_add_window(store, rt->name, r->step, fl_verdict_name(*v), a, NULL);
  json_decref(r->last_analysis);
  r->last_analysis = json_incref(a);
  if (r->evidence.held && !was_held)       /* said once a step: the rollout waits on more traffic */
    event_of(r, rt->name, "rollout", "held",
             json_pack("{s:i, s:O, s:O}", "step", r->step, "reason", json_object_get(a, "reason"), "analysis", a));
  return a;
}

static void failed_checks(json_t *analysis, char *out, size_t cap) {
  size_t i, n = 0;
  json_t *c;
  out[0] = '\0';
  json_array_foreach(json_object_get(analysis, "checks"), i, c) {
    if (strcmp(json_string_value(json_object_get(c, "verdict")), "fail") != 0) continue;
    n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", n ? ", " : "",
                          json_string_value(json_object_get(c, "metric")));
  }
}

static void act_on_verdict(const fl_route_t *rt, ro_t *r, fl_verdict_t v, json_t *analysis) {
  switch (fl_analysis_move(&r->spec, r->step, &r->failures, v)) {
  case FL_MOVE_PROMOTE:
    r->state = RO_PROMOTED;
    set_weight(rt, r, 10000, "rollout", "promoted", json_pack("{s:O}", "analysis", analysis));
    break;
  case FL_MOVE_NEXT:
    r->step++;
    set_weight(rt, r, r->spec.steps_bp[r->step], "rollout", "step",
               json_pack("{s:i, s:O}", "step", r->step, "analysis", analysis));
    break;
  case FL_MOVE_ROLL_BACK: {
    char why[256];
    failed_checks(analysis, why, sizeof why);
    r->state = RO_ROLLED_BACK;
    set_weight(rt, r, 0, "rollout", "rolled_back",
               json_pack("{s:s, s:O}", "reason", why[0] ? why : "failed windows", "analysis", analysis));
    break;
  }
  case FL_MOVE_STAY:
    save(rt, r, fl_live_weight(rt));       /* the failure count or the hold, remembered */
    break;
  }
}

/* A window is the difference of two snapshots of the same series: when a reload gave a variant
 * another version (another series, perhaps on a reused id) mid-window, the window starts over. */
static bool same_series(const fl_route_t *rt, const ro_t *r) {
  const fl_variant_conf_t *c = &rt->variant[FL_CANARY], *s = &rt->variant[FL_STABLE];
  return c->series == r->start_canary.series && c->series_gen == r->start_canary.series_gen &&
         s->series == r->start_stable.series && s->series_gen == r->start_stable.series_gen;
}

void fl_rollouts_tick(const fl_conf_t *c) {
  uint64_t now = fl_now_ms();
  current_conf = c;
  for (ro_t *r = rollouts; r; r = r->next) {
    const fl_route_t *rt = route_of(c, r->route);
    if (!rt || !rt->has_canary || r->state != RO_PROGRESSING) continue;
    if (!same_series(rt, r)) {
      fl_log("route %s: a version changed during the rollout's window: the window starts over", rt->name);
      step_begin(rt, r);
      continue;
    }
    if (now - r->step_start_ms < (uint64_t)r->evidence.windows * r->spec.interval_ms + r->spec.interval_ms) continue;
    fl_verdict_t v;
    json_t *analysis = window_close(rt, r, &v);
    act_on_verdict(rt, r, v, analysis);
    json_decref(analysis);
    if (v == FL_VERDICT_PASS) step_begin(rt, r);    /* otherwise the evidence keeps growing */
  }
}

/* ---- control ---- */

/* The event's spec is redacted: it goes to every webhook, and one receiver has no business with
 * another's token. */
static void begin_steps(const fl_route_t *rt, ro_t *r, const char *actor) {
  r->state = r->spec.steps_bp[0] == 10000 ? RO_PROMOTED : RO_PROGRESSING;   /* steps: [100] promotes at once */
  set_weight(rt, r, r->spec.steps_bp[0], actor, "rollout_started",
             json_pack("{s:s, s:o}", "canary_version", rt->variant[FL_CANARY].version, "spec",
                       fl_redact_json(fl_rollout_spec_json(&r->spec))));
  step_begin(rt, r);
}

/* The acceptance report is back (control thread): go on to the first step, or stop here. */
static void acceptance_done(const char *route, json_t *report, void *ctx) {
  ro_t *r = ro_get(route, false);
  const fl_route_t *rt = current_conf ? route_of(current_conf, route) : NULL;
  if (!r || !rt || r->state != RO_ACCEPTANCE || r->generation != (uintptr_t)ctx) {   /* a rollout since ended */
    json_decref(report);
    return;
  }
  if (json_is_true(json_object_get(report, "interrupted"))) {   /* shutdown: no verdict, it stays at the gate */
    json_decref(report);
    return;
  }
  double rate = json_number_value(json_object_get(report, "pass_rate"));
  if (json_object_get(report, "error") || rate < r->spec.acceptance_min_pass) {
    r->state = RO_ROLLED_BACK;
    set_weight(rt, r, 0, "rollout", "acceptance_failed",
               json_pack("{s:s, s:O}", "reason", "the canary failed its acceptance set", "report", report));
  } else {
    event_of(r, route, "rollout", "acceptance_passed", json_pack("{s:O}", "report", report));
    begin_steps(rt, r, "rollout");
  }
  json_decref(report);
}

static int start_acceptance(const fl_conf_t *c, const fl_route_t *rt, ro_t *r, const char *actor, char *err,
                            size_t err_cap) {
  char path[1200];
  fl_conf_resolve(c, r->spec.acceptance, path, sizeof path);
  const fl_variant_conf_t *v = &rt->variant[FL_CANARY];
  r->state = RO_ACCEPTANCE;
  set_weight(rt, r, 0, actor, "acceptance_started", json_pack("{s:s, s:s}", "canary_version", v->version, "file", path));
  if (!control_loop || !v->n_backends ||        /* none: a host name resolved lazily has no address yet */
      fl_acceptance_run(control_loop, rt->name, path, &v->backends[0], v->model, acceptance_done,
                        (void *)r->generation) != 0) {
    r->state = RO_ROLLED_BACK;
    save(rt, r, 0);
    event_of(r, rt->name, "rollout", "acceptance_failed", json_pack("{s:s}", "reason", "cannot run the acceptance set"));
    snprintf(err, err_cap, "cannot run the acceptance set %s", path);
    return FL_EIO;
  }
  return 0;
}

static int fail(char *err, size_t cap, int rc, const char *fmt, const char *what) {
  snprintf(err, cap, fmt, what);
  return rc;
}

int fl_rollout_start(const fl_conf_t *c, const char *route, const json_t *spec, const char *actor, char *err,
                     size_t err_cap) {
  const fl_route_t *rt = route_of(c, route);
  if (!rt) return fail(err, err_cap, FL_ENOENT, "no route named %s", route);
  if (!rt->has_canary) return fail(err, err_cap, FL_EINVAL, "route %s has no canary to roll out", route);
  fl_rollout_spec_t parsed;
  if (fl_rollout_spec_parse(spec ? spec : rt->rollout_spec, &parsed, err, err_cap) != 0) return FL_EINVAL;
  ro_t *r = ro_get(route, true);
  if (!r) return fail(err, err_cap, FL_ENOMEM, "out of memory starting %s", route);
  if (r->state == RO_PROGRESSING || r->state == RO_PAUSED || r->state == RO_ACCEPTANCE)
    return fail(err, err_cap, FL_EINVAL, "route %s already has a rollout in progress", route);
  r->spec = parsed;
  r->step = 0;
  r->failures = 0;
  r->generation++;
  current_conf = c;
  if (r->spec.acceptance[0]) return start_acceptance(c, rt, r, actor, err, err_cap);
  begin_steps(rt, r, actor);
  return 0;
}

int fl_rollout_act(const fl_conf_t *c, const char *route, const char *action, const char *actor, char *err,
                   size_t err_cap) {
  const fl_route_t *rt = route_of(c, route);
  ro_t *r = ro_get(route, false);
  if (!rt) return fail(err, err_cap, FL_ENOENT, "no route named %s", route);
  static const char *const known[] = {"pause", "resume", "promote", "abort", "undo"};
  bool is_known = false;
  for (size_t i = 0; i < FL_ARRAY_LEN(known); i++) is_known |= strcmp(action, known[i]) == 0;
  if (!is_known) return fail(err, err_cap, FL_EPARSE, "unknown action \"%s\" (pause, resume, promote, abort, undo)", action);
  bool active = r && (r->state == RO_PROGRESSING || r->state == RO_PAUSED || r->state == RO_ACCEPTANCE);
  if (strcmp(action, "pause") == 0 && active && r->state == RO_PROGRESSING) {
    char why[64];
    snprintf(why, sizeof why, "paused by hand (%s)", actor);
    pause_for(rt, r, actor, why);
  } else if (strcmp(action, "resume") == 0 && active && r->state == RO_PAUSED) {
    r->state = RO_PROGRESSING;                      /* at the step's weight, whatever a hand set since */
    set_weight(rt, r, r->spec.steps_bp[r->step], actor, "resumed", json_pack("{s:i}", "step", r->step));
    step_begin(rt, r);
  } else if (strcmp(action, "promote") == 0 && active) {
    r->state = RO_PROMOTED;
    set_weight(rt, r, 10000, actor, "promoted", json_pack("{s:s}", "reason", "promoted by hand"));
  } else if (strcmp(action, "abort") == 0 && active) {
    r->state = RO_ROLLED_BACK;
    set_weight(rt, r, 0, actor, "rolled_back", json_pack("{s:s}", "reason", "aborted by hand"));
  } else if (strcmp(action, "undo") == 0 && r && r->state == RO_PROMOTED) {
    r->state = RO_ROLLED_BACK;
    set_weight(rt, r, 0, actor, "undone", json_pack("{s:s}", "reason", "promotion undone: back to stable"));
  } else {
    return fail(err, err_cap, FL_EINVAL, "cannot %s: no rollout in a state that allows it", action);
  }
  return 0;
}

int fl_rollout_set_weight(const fl_conf_t *c, const char *route, uint32_t weight_bp, const char *source,
                          json_t *detail, char *err, size_t err_cap) {
  const fl_route_t *rt = route_of(c, route);
  int rc = !rt ? fail(err, err_cap, FL_ENOENT, "no route named %s", route)
           : !rt->has_canary ? fail(err, err_cap, FL_EINVAL, "route %s has no canary", route) : 0;
  if (rc != 0) {
    json_decref(detail);
    return rc;
  }
  char why[96];
  snprintf(why, sizeof why, "the canary weight was set to %.2f%% by hand (%s)", weight_bp / 100.0, source);
  outside_weight(rt, weight_bp, source, detail ? detail : json_object(), why);
  return 0;
}

/* ---- restore, describe, export ---- */

static ro_state_t state_named(const char *s) {
  for (size_t i = 0; i < FL_ARRAY_LEN(state_names); i++)
    if (strcmp(s, state_names[i]) == 0) return (ro_state_t)i;
  return RO_IDLE;
}

/* The file's weight changed while the gateway was down: it wins, as at a reload, and is recorded
 * as a change from the weight in force when the gateway stopped (a new canary version is
 * recorded as superseded instead). why gets the reason, for a rollout it pauses. */
static void file_moved_while_down(const fl_route_t *rt, const fl_route_state_t *st, char *why, size_t cap) {
  snprintf(why, cap, "the config file's weight changed from %.2f%% to %.2f%% while the gateway was down",
           st->config_weight_bp / 100.0, rt->canary_weight_bp / 100.0);
  if (!rt->has_canary || st->weight_bp == rt->canary_weight_bp ||
      strcmp(st->canary_version, rt->variant[FL_CANARY].version) != 0)
    return;
  event(rt->name, "restart", "weight",
        json_pack("{s:s, s:f, s:f, s:f, s:f, s:s}", "source", "restart", "from", st->weight_bp / 100.0, "to",
                  rt->canary_weight_bp / 100.0, "file_from", st->config_weight_bp / 100.0, "file_to",
                  rt->canary_weight_bp / 100.0, "reason", why));
}

static void restore(const fl_route_t *rt, const fl_route_state_t *st) {
  bool same_file = st->config_weight_bp == rt->canary_weight_bp;
  char moved[160] = "";
  const char *pause_why = st->pause_reason;        /* paused before the restart: why it was */
  if (same_file && rt->has_canary) fl_live_set_weight(rt->live, st->weight_bp);
  if (!same_file) file_moved_while_down(rt, st, moved, sizeof moved);
  ro_state_t state = state_named(st->rollout_state);
  if (state == RO_IDLE) return;
  bool pausing = state == RO_PROGRESSING && !same_file;
  if (pausing) {                                   /* the file moved the weight off the step's */
    state = RO_PAUSED;
    pause_why = moved;
    fl_log("route %s: the file's weight changed while the gateway was down: the rollout is paused", rt->name);
  }
  if (state == RO_ACCEPTANCE) {                    /* interrupted mid-acceptance: never skip the gate */
    state = RO_ROLLED_BACK;
    event(rt->name, "rollout", "acceptance_failed",
          json_pack("{s:s}", "reason", "the gateway restarted during the acceptance set"));
  }
  json_t *spec = json_loads(st->spec_json, 0, NULL);
  ro_t *r = ro_get(rt->name, true);
  char err[256];
  if (r && fl_rollout_spec_parse(spec, &r->spec, err, sizeof err) != 0) {
    /* saved by an older build that allowed it: keep the state (a rollback's hold above all), with
     * the default spec, and let nothing progress on checks nobody wrote */
    fl_log("route %s: the saved rollout spec is no longer valid (%s); the rollout keeps its state with the "
           "default spec%s", rt->name, err, state == RO_PROGRESSING ? " and is paused" : "");
    event(rt->name, "rollout", "spec_invalid", json_pack("{s:s, s:s}", "reason", err, "spec", st->spec_json));
    fl_rollout_spec_parse(NULL, &r->spec, err, sizeof err);
    if (state == RO_PROGRESSING) {
      state = RO_PAUSED;
      pause_why = "the saved rollout spec is no longer valid";
    }
  }
  if (r && st->step >= 0 && (size_t)st->step < r->spec.n_steps) {
    r->state = state;
    r->step = st->step;
    r->failures = (uint32_t)st->failures;
    snprintf(r->reason, sizeof r->reason, "%s", pause_why);
    if (pausing) event_of(r, rt->name, "restart", "paused", json_pack("{s:i, s:s}", "step", r->step, "reason", moved));
    step_begin(rt, r);
    fl_log("route %s: rollout %s restored at step %d, weight %.2f", rt->name, state_names[state], r->step,
           fl_live_weight(rt) / 100.0);
  } else if (r && (state == RO_ROLLED_BACK || state == RO_PROMOTED)) {
    r->state = state;                              /* ended: no step to resume, the outcome stays */
  }
  json_decref(spec);
}

/* A new canary version has been judged by nothing: whatever judged the old one (a rollout in
 * progress, a promotion, a rollback, a weight set by hand) ends, and it gets the weight the file
 * gives; a route with a rollout spec then starts one for it by itself. */
static bool start_if_new_canary(const fl_conf_t *c, const fl_route_t *rt, const fl_route_state_t *st, bool known) {
  if (!rt->has_canary || (known && strcmp(st->canary_version, rt->variant[FL_CANARY].version) == 0)) return false;
  ro_t *r = ro_get(rt->name, false);
  bool judged = r && r->state != RO_IDLE;
  if (r) {
    r->state = RO_IDLE;
    r->generation++;                               /* an acceptance report of the old one is ignored */
  }
  json_t *why = json_pack("{s:s, s:s}", "reason", "a new canary version was deployed", "canary_version",
                          rt->variant[FL_CANARY].version);
  if (known && fl_live_weight(rt) != rt->canary_weight_bp) {
    set_weight(rt, r, rt->canary_weight_bp, "config", "superseded", why);
  } else if (judged) {
    save(rt, r, fl_live_weight(rt));
    event_of(r, rt->name, "config", "superseded", why);
  } else {
    json_decref(why);
  }
  if (!rt->rollout_spec) return true;
  char err[256];
  if (fl_rollout_start(c, rt->name, NULL, "config", err, sizeof err) != 0)
    fl_log("route %s: cannot start the rollout of %s: %s", rt->name, rt->variant[FL_CANARY].version, err);
  return true;
}

/* A reload changed the route's weight in the file: the file wins over the weight in force (a
 * weight set at run time, a rollout's step), and the change is recorded like any other, pausing
 * a rollout in progress. A change the file made that leaves the weight in force as it was is
 * no change. */
static void follow_file_weight(const fl_conf_t *c, const fl_route_t *rt) {
  uint32_t file_was = rt->live->config_weight_bp, file_now = rt->canary_weight_bp;
  if (!rt->has_canary) fl_live_set_weight(rt->live, file_now);    /* nothing to record: no canary */
  if (!rt->has_canary || fl_live_weight(rt) == file_now) return;
  char why[160];
  snprintf(why, sizeof why, "a reload changed the config file's weight from %.2f%% to %.2f%%", file_was / 100.0,
           file_now / 100.0);
  outside_weight(rt, file_now, "reload",
                 json_pack("{s:s, s:f, s:f, s:s}", "file", c->path ? c->path : "", "file_from", file_was / 100.0,
                           "file_to", file_now / 100.0, "reason", why), why);
}

/* What the state store says of a route, and what it makes of it: restored (at start), or a new
 * canary version's rollout. True when the canary version is new (its weight is dealt with). */
static bool bind_stored(const fl_conf_t *c, const fl_route_t *rt, bool first) {
  static fl_route_state_t st;                     /* large; control thread only */
  int rc = fl_store_get_route(store, rt->name, &st);
  if (rc != 0 && rc != FL_ENOENT) {                /* unreadable is not unknown: change nothing */
    fl_log("state store: cannot read route %s: %s", rt->name, fl_store_error(store));
    return false;
  }
  if (rc == 0 && first) restore(rt, &st);
  return start_if_new_canary(c, rt, &st, rc == 0);
}

void fl_rollouts_bind(const fl_conf_t *c, bool first) {
  current_conf = c;             /* the previous snapshot may be freed once this one is published */
  for (size_t i = 0; i < c->n_routes; i++) {
    const fl_route_t *rt = &c->routes[i];
    bool new_canary = store && bind_stored(c, rt, first);
    if (!rt->live) continue;
    if (!new_canary && fl_live_file_moved(rt)) follow_file_weight(c, rt);
    fl_live_set_file_weight(rt->live, rt->canary_weight_bp);
  }
  for (size_t i = 0; i < c->n_routes; i++) save(&c->routes[i], ro_get(c->routes[i].name, false), fl_live_weight(&c->routes[i]));
}

json_t *fl_rollout_json(const char *route) {
  ro_t *r = ro_get(route, false);
  if (!r) return json_pack("{s:s}", "state", "idle");
  json_t *o = json_pack("{s:s, s:i, s:i, s:o, s:{s:I, s:I, s:I}}", "state", state_names[r->state], "step", r->step,
                        "failures", (int)r->failures, "spec", fl_rollout_spec_json(&r->spec), "windows", "pass",
                        (json_int_t)r->verdicts[0], "fail", (json_int_t)r->verdicts[1], "inconclusive",
                        (json_int_t)r->verdicts[2]);
  if (r->last_analysis) json_object_set(o, "last_analysis", r->last_analysis);
  if (r->state == RO_PAUSED && r->reason[0]) json_object_set_new(o, "reason", json_string(r->reason));
  return o;
}

static void export_checks(fl_buf_t *b, const ro_t *r) {
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(r->last_analysis, "checks"), i, c) {
    const char *m = json_string_value(json_object_get(c, "metric"));
    if (json_is_number(json_object_get(c, "p_value")))
      fl_buf_printf(b, "fledge_analysis_p_value{route=\"%s\",metric=\"%s\"} %g\n", r->route, m,
                    json_number_value(json_object_get(c, "p_value")));
    fl_buf_printf(b, "fledge_analysis_canary_value{route=\"%s\",metric=\"%s\"} %g\n", r->route, m,
                  json_number_value(json_object_get(c, "canary")));
    fl_buf_printf(b, "fledge_analysis_stable_value{route=\"%s\",metric=\"%s\"} %g\n", r->route, m,
                  json_number_value(json_object_get(c, "stable")));
  }
}

void fl_rollouts_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx) {
  if (store) {
    fl_store_health_t h;
    fl_store_health(store, &h);
    fl_metrics_family(b, "fledge_state_store_backlog", "gauge", "Writes the state store did not take yet, kept to retry.");
    fl_buf_printf(b, "fledge_state_store_backlog %zu\n", h.backlog);
    fl_metrics_family(b, "fledge_state_store_failed_writes_total", "counter", "Writes the state store refused.");
    fl_buf_printf(b, "fledge_state_store_failed_writes_total %llu\n", (unsigned long long)h.failed_writes);
    fl_metrics_family(b, "fledge_state_store_dropped_writes_total", "counter",
                      "Waiting writes given up because the backlog was full (100,000): the oldest first.");
    fl_buf_printf(b, "fledge_state_store_dropped_writes_total %llu\n", (unsigned long long)h.dropped);
  }
  fl_buf_str(b, "# HELP fledge_rollout_step Step of the rollout in force (-1: none).\n"
                "# TYPE fledge_rollout_step gauge\n");
  for (const ro_t *r = rollouts; r; r = r->next)
    fl_buf_printf(b, "fledge_rollout_step{route=\"%s\",state=\"%s\"} %d\n", r->route, state_names[r->state], r->step);
  fl_buf_str(b, "# HELP fledge_analysis_windows_total Analysis windows by verdict.\n"
                "# TYPE fledge_analysis_windows_total counter\n");
  for (const ro_t *r = rollouts; r; r = r->next)
    for (int v = 0; v < 3; v++)
      fl_buf_printf(b, "fledge_analysis_windows_total{route=\"%s\",verdict=\"%s\"} %llu\n", r->route,
                    fl_verdict_name((fl_verdict_t)v), (unsigned long long)r->verdicts[v]);
  fl_buf_str(b, "# HELP fledge_analysis_p_value One-sided p-value of each check in the last window.\n"
                "# TYPE fledge_analysis_p_value gauge\n"
                "# HELP fledge_analysis_canary_value The canary's value of each check in the last window.\n"
                "# TYPE fledge_analysis_canary_value gauge\n"
                "# HELP fledge_analysis_stable_value The stable variant's value of each check in the last window.\n"
                "# TYPE fledge_analysis_stable_value gauge\n");
  for (const ro_t *r = rollouts; r; r = r->next)
    if (r->last_analysis) export_checks(b, r);
}

void fl_rollouts_shutdown(void) {
  fl_acceptance_stop_all();
  while (rollouts) {
    ro_t *next = rollouts->next;
    json_decref(rollouts->last_analysis);
    free(rollouts);
    rollouts = next;
  }
}
