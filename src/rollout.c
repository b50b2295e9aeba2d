/* rollout.c — the rollout state machine: idle → progressing (step i) ⇄ paused → promoted |
 * rolled_back. One entry per route that ever had a rollout or a weight set at run time. */
#include "rollout.h"
#include "acceptance.h"
#include "cluster.h"
#include "http.h"
#include "live.h"
#include "monitor.h"
#include "resources.h"
#include "scrape.h"
#include "shadow.h"
#include "router.h"
#include "redact.h"
#include "outbox.h"
#include "promql.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum { RO_IDLE, RO_PROGRESSING, RO_PAUSED, RO_PROMOTED, RO_ROLLED_BACK, RO_ACCEPTANCE, RO_SHADOW } ro_state_t;
static const char *const state_names[] = {"idle", "progressing", "paused", "promoted", "rolled_back", "acceptance",
                                          "shadow"};

typedef struct ro {
  char route[64];
  ro_state_t state;
  fl_rollout_spec_t spec;
  int32_t step;
  uint32_t failures;
  uint64_t step_start_ms;            /* the step's evidence is what came since */
  fl_series_snap_t start_canary, start_stable;
  json_t *marks[FL_NVARIANTS];       /* in a cluster: where the other replicas stood then */
  fl_evidence_t evidence;
  json_t *last_analysis;
  uint64_t verdicts[3];              /* windows by verdict, for metrics */
  uintptr_t generation;              /* bumped by every start: an acceptance report names its own */
  bool gate_here;                    /* its acceptance set runs on this replica (a cluster's new
                                        leader finds a gate begun by another) */
  char reason[256];                  /* why it is paused (a hand, a reload); meaningful only then */
  /* the shadow phase (RO_SHADOW): the canary's comparison when it began, and since when */
  fl_shadow_agg_t shadow_from;
  unsigned shadow_series, shadow_gen;
  uint64_t shadow_since_ms;
  bool shadow_waiting;               /* its time is up, too few pairs yet (said once) */
  char promoted_from[64];            /* a finished promotion: the stable version it replaced, */
  char promoted_to[64];              /* and the canary version serving as stable ("": none) */
  struct ro *next;
} ro_t;

static ro_t *rollouts;
static fl_store_t *store;
static const fl_metrics_src_t *metrics;
static uv_loop_t *control_loop;
static void (*republish_cb)(void);
static bool republish_wanted;
static const fl_conf_t *current_conf;      /* the snapshot the control thread serves; for callbacks */
static fl_rollouts_share_fn share;         /* a cluster's log: a decision goes there first (fleet.c) */
static const fl_rollouts_remote_t *remote; /* and the other replicas' numbers */
static char refused[256];                  /* why the last decision did not take effect ("": it did) */

void fl_rollouts_init(fl_store_t *s, const fl_metrics_src_t *m, uv_loop_t *loop, void (*republish)(void)) {
  store = s;
  metrics = m;
  control_loop = loop;
  republish_cb = republish;
}

void fl_rollouts_share(fl_rollouts_share_fn fn, const fl_rollouts_remote_t *others) {
  share = fn;
  remote = others;
}

static void republish_soon(void) {
  republish_wanted = true;
  if (republish_cb) republish_cb();
}

bool fl_rollouts_take_republish(void) {
  bool wanted = republish_wanted;
  republish_wanted = false;
  return wanted;
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

/* ---- decisions: recorded in one transaction, applied after, announced from the record ---- */

/* The decision being made about one route: the weight it sets, the events that explain it (with
 * the webhook URLs that want each, copied when the event is noted: a new rollout in the same
 * decision replaces the spec). Helpers open it and add to it, nested (a weight and the pause it
 * causes, a superseded version and the rollout of the new one); the outermost close records it
 * all in one transaction, and only then is the weight applied (decision_close). */
typedef struct {
  const char *actor, *kind;            /* borrowed: they outlive the outermost close */
  json_t *detail;
  char hooks[FL_MAX_HOOKS][sizeof ((fl_hook_t *)0)->url];
  const char *hook_ptrs[FL_MAX_HOOKS];
  size_t n_hooks;
} decided_event_t;

static struct {
  int depth;
  const fl_route_t *rt;
  bool sets_weight;
  uint32_t weight_bp;
  decided_event_t ev[FL_DECISION_EVENTS];
  size_t n_ev;
} decision;

/* An analysis window waiting for the decision it leads to: window_close holds it, the next
 * decision about its rollout records it. One at a time (the tick judges one route after
 * another); one still held when the next is closed is recorded alone. */
typedef struct {
  const ro_t *r;
  int32_t step;
  fl_verdict_t verdict;
  json_t *analysis;
} held_window_t;
static held_window_t held_window;

static void decision_open(const fl_route_t *rt) {
  if (decision.depth++ > 0) {
    FL_BUG_ON(strcmp(decision.rt->name, rt->name) != 0);     /* one route per decision */
    return;
  }
  decision.rt = rt;
  decision.sets_weight = false;
  decision.n_ev = 0;
}

/* The weight the open decision leaves in force. */
static uint32_t decided_weight(void) {
  return decision.sets_weight ? decision.weight_bp : fl_live_weight(decision.rt);
}

static void decide_weight(uint32_t bp) {
  decision.sets_weight = true;
  decision.weight_bp = bp;
}

/* The why of an event whose maker gave none, from what the detail holds, so that every event in
 * the log (fledge history's WHY) says it in words. */
static const char *text_of(const json_t *o, const char *key) {
  const char *t = json_string_value(json_object_get(o, key));
  return t ? t : "?";
}

static void default_reason(const char *actor, const char *kind, json_t *detail) {
  if (!json_is_object(detail) || json_object_get(detail, "reason")) return;
  json_t *a = json_object_get(detail, "analysis"), *ev = json_object_get(a, "evidence");
  json_t *why = NULL;
  if (strcmp(kind, "step") == 0 || (strcmp(kind, "promoted") == 0 && a))
    why = json_sprintf("every check passed on %lld canary and %lld stable requests (look %lld)",
                       (long long)json_integer_value(json_object_get(ev, "canary_requests")),
                       (long long)json_integer_value(json_object_get(ev, "stable_requests")),
                       (long long)json_integer_value(json_object_get(ev, "looks")));
  else if (strcmp(kind, "rollout_started") == 0)
    why = json_sprintf("rollout of %s started by %s", text_of(detail, "canary_version"), actor);
  else if (strcmp(kind, "resumed") == 0)
    why = json_sprintf("resumed by %s at the step's own weight", actor);
  else if (strcmp(kind, "acceptance_started") == 0)
    why = json_string("the canary answers its acceptance set before any user sees it");
  else if (strcmp(kind, "acceptance_passed") == 0)
    why = json_sprintf("the canary passed %g of its acceptance set",
                       json_number_value(json_object_get(json_object_get(detail, "report"), "pass_rate")));
  else if (strcmp(kind, "weight") == 0)
    why = json_sprintf("set by hand (%s)", text_of(detail, "source"));
  if (why) json_object_set_new(detail, "reason", why);
}

/* Adds an event (detail stolen) with the URLs of the route's webhooks that want it. */
static void decide_event(const char *actor, const char *kind, json_t *detail) {
  default_reason(actor, kind, detail);
  FL_BUG_ON(decision.n_ev == FL_DECISION_EVENTS);
  if (decision.n_ev == FL_DECISION_EVENTS) {
    fl_log("route %s: event %s left out of a decision with too many", decision.rt->name, kind);
    json_decref(detail);
    return;
  }
  const ro_t *r = ro_get(decision.rt->name, false);
  decided_event_t *e = &decision.ev[decision.n_ev++];
  e->actor = actor;
  e->kind = kind;
  e->detail = detail;
  e->n_hooks = 0;
  for (size_t i = 0; r && i < r->spec.n_hooks; i++)
    if (fl_hook_wants(&r->spec.hooks[i], kind)) {
      snprintf(e->hooks[e->n_hooks], sizeof e->hooks[0], "%s", r->spec.hooks[i].url);
      e->hook_ptrs[e->n_hooks] = e->hooks[e->n_hooks];
      e->n_hooks++;
    }
}

/* The route's state as the store keeps it, at weight_bp. */
static void route_state(const fl_route_t *rt, const ro_t *r, uint32_t weight_bp, fl_route_state_t *st) {
  *st = (fl_route_state_t){.weight_bp = weight_bp, .config_weight_bp = rt->canary_weight_bp, .step = -1};
  snprintf(st->route, sizeof st->route, "%s", rt->name);
  /* the file's versions, whatever serves now: a restart on the same file finds them as written */
  const fl_variant_conf_t *file_stable = &rt->variant[rt->stable_promoted ? FL_CANARY : FL_STABLE];
  const fl_variant_conf_t *file_canary = &rt->variant[rt->stable_promoted ? FL_STABLE : FL_CANARY];
  snprintf(st->stable_version, sizeof st->stable_version, "%s", file_stable->version);
  if (rt->has_canary || rt->stable_promoted)
    snprintf(st->canary_version, sizeof st->canary_version, "%s", file_canary->version);
  if (!r) return;
  snprintf(st->previous_stable, sizeof st->previous_stable, "%s", r->promoted_from);
  snprintf(st->rollout_state, sizeof st->rollout_state, "%s", state_names[r->state]);
  snprintf(st->pause_reason, sizeof st->pause_reason, "%s", r->state == RO_PAUSED ? r->reason : "");
  st->step = r->step;
  st->failures = (int32_t)r->failures;
  st->looks = (int32_t)r->evidence.looks;
  json_t *spec_json = fl_rollout_spec_json(&r->spec);
  char *spec = json_dumps(spec_json, JSON_COMPACT);
  if (spec) snprintf(st->spec_json, sizeof st->spec_json, "%s", spec);
  free(spec);
  json_decref(spec_json);
}

/* One transaction. A decision the file does not take now is kept whole in the store's backlog
 * and applied anyway: a rollback must not wait for a disk, and until the backlog is written a
 * crash loses the decision whole (the restart serves the state recorded before it). */
static void record(const fl_store_decision_t *d, const char *route) {
  if (!store) return;
  int rc = fl_store_commit_decision(store, d);
  if (rc == 0) return;
  fl_store_health_t h;
  fl_store_health(store, &h);
  fl_log("state store: cannot record a decision of route %s (%s); %s", route, h.last_error,
         rc == FL_EIO ? "kept whole to be written later; it applies now" : "it applies unrecorded");
}

static void release_held_window(void) {
  json_decref(held_window.analysis);
  held_window = (held_window_t){0};
}

/* A window no decision took (the route's rollout went on without one): recorded by itself. */
static void record_held_window_alone(void) {
  if (!held_window.r) return;
  fl_store_window_t w = {held_window.r->route, held_window.step, fl_verdict_name(held_window.verdict),
                         held_window.analysis};
  record(&(fl_store_decision_t){.window = &w}, held_window.r->route);
  release_held_window();
}

/* window_close hands the window over here (analysis borrowed). */
static void hold_window(const ro_t *r, fl_verdict_t v, json_t *analysis) {
  record_held_window_alone();
  held_window.r = r;
  held_window.step = r->step;
  held_window.verdict = v;
  held_window.analysis = json_incref(analysis);
}

/* Test-only crash points after the commit (common.h), for each kind of event the decision has. */
static void crash_point(const char *point) {
  if (!decision.n_ev) fl_test_crash_at(point, NULL);
  for (size_t i = 0; i < decision.n_ev; i++) fl_test_crash_at(point, decision.ev[i].kind);
}

static void adopt(const fl_route_t *rt, const fl_route_state_t *st);

/* The cluster's log did not take the decision (this replica does not lead, or Redis did not
 * answer): it does not take effect. The route goes back to its state as last recorded. */
static void decision_refused(const fl_route_t *rt) {
  static fl_route_state_t st;
  fl_log("route %s: decision not taken: %s", rt->name, refused);
  for (size_t i = 0; i < decision.n_ev; i++) json_decref(decision.ev[i].detail);
  decision.n_ev = 0;
  if (held_window.r) release_held_window();
  if (store && fl_store_get_route(store, rt->name, &st) == 0) {
    adopt(rt, &st);
  } else {
    ro_t *r = ro_get(rt->name, false);
    if (r) r->state = RO_IDLE;
  }
}

/* What the canary may see at weight 0 before its steps: held (rolled back, at its acceptance set or
 * in its shadow phase, rules may not send users to it), and mirrored requests in its shadow phase
 * (the route's shadow section's share, or all of stable's users). */
static void apply_gates(const fl_route_t *rt, ro_state_t state, uint32_t bp) {
  bool gate = state == RO_ACCEPTANCE || state == RO_SHADOW;
  fl_live_set_held(rt->live, bp == 0 && (state == RO_ROLLED_BACK || gate));
  fl_live_set_shadow(rt->live, state == RO_SHADOW ? (rt->shadow.on ? FL_MAX(rt->shadow.percent_bp, 1u) : 10000) : 0);
}

/* Records the decision (route state, held window, events and their webhooks), then applies it:
 * the weight, and the canary's hold (rolled back or at its acceptance set at weight 0, rules may
 * not send users to it); then the webhooks are sent from the record. */
static void decision_commit(void) {
  static fl_route_state_t st;                     /* large; control thread only */
  const fl_route_t *rt = decision.rt;
  const ro_t *r = ro_get(rt->name, false);
  uint32_t bp = decided_weight();
  route_state(rt, r, bp, &st);
  fl_store_decision_t d = {.state = &st, .n_events = decision.n_ev};
  fl_store_window_t w;
  if (held_window.r && held_window.r == r) {
    w = (fl_store_window_t){rt->name, held_window.step, fl_verdict_name(held_window.verdict), held_window.analysis};
    d.window = &w;
  }
  for (size_t i = 0; i < decision.n_ev; i++)
    d.events[i] = (fl_store_event_t){.route = rt->name, .actor = decision.ev[i].actor, .kind = decision.ev[i].kind,
                                     .detail = decision.ev[i].detail, .hooks = decision.ev[i].hook_ptrs,
                                     .n_hooks = decision.ev[i].n_hooks};
  if (share && share(&d, refused, sizeof refused) != 0) {
    decision_refused(rt);
    return;
  }
  record(&d, rt->name);
  if (d.window) release_held_window();
  crash_point("after_commit");
  if (rt->live) {
    apply_gates(rt, r ? r->state : RO_IDLE, bp);
    if (decision.sets_weight) fl_live_set_weight(rt->live, bp);
  }
  crash_point("after_apply");
  fl_outbox_pump();
  for (size_t i = 0; i < decision.n_ev; i++) json_decref(decision.ev[i].detail);
  decision.n_ev = 0;
}

static void decision_close(void) {
  if (--decision.depth == 0) decision_commit();
}

/* Records the route's state at weight_bp (a failure count, a hold, the file's weight). */
static void save(const fl_route_t *rt, const ro_t *r, uint32_t weight_bp) {
  decision_open(rt);
  if (weight_bp != decided_weight()) decide_weight(weight_bp);
  decision_close();
}

/* An event (detail stolen), recorded with the route's state. */
static void event(const fl_route_t *rt, const char *actor, const char *kind, json_t *detail) {
  decision_open(rt);
  decide_event(actor, kind, detail);
  decision_close();
}

/* A new weight, explained: recorded, then applied, then announced. */
static void set_weight(const fl_route_t *rt, ro_t *r, uint32_t bp, const char *actor, const char *kind, json_t *why) {
  decision_open(rt);
  uint32_t before = decided_weight();
  decide_weight(bp);
  json_object_set_new(why, "from", json_real(before / 100.0));
  json_object_set_new(why, "to", json_real(bp / 100.0));
  fl_log("route %s: %s, canary weight %.2f -> %.2f (%s)", rt->name, kind, before / 100.0, bp / 100.0, actor);
  decide_event(actor, kind, why);
  decision_close();
}

/* Pauses a progressing rollout, saying why in its state (the API, fledge status) and the log. */
static void pause_for(const fl_route_t *rt, ro_t *r, const char *actor, const char *why) {
  r->state = RO_PAUSED;
  snprintf(r->reason, sizeof r->reason, "%s", why);
  event(rt, actor, "paused", json_pack("{s:i, s:s}", "step", r->step, "reason", why));
}

/* A weight set from outside the rollout: the admin API, the CLI (through it), a reload of the
 * file. A rollout in progress would move it again at its next window, so it is paused, with the
 * reason; after a rollback the outside hand takes over (no hold). The weight (with its source)
 * and the pause after it are one decision. detail (stolen) tells the rest: the client, the file. */
static void outside_weight(const fl_route_t *rt, uint32_t bp, const char *source, json_t *detail, const char *why) {
  ro_t *r = ro_get(rt->name, false);
  bool pausing = r && r->state == RO_PROGRESSING;
  decision_open(rt);
  if (pausing) {
    r->state = RO_PAUSED;
    snprintf(r->reason, sizeof r->reason, "%s", why);
  }
  if (r && r->state == RO_ROLLED_BACK) r->state = RO_IDLE;
  json_object_set_new(detail, "source", json_string(source));
  set_weight(rt, r, bp, source, "weight", detail);
  if (pausing) decide_event(source, "paused", json_pack("{s:i, s:s}", "step", r->step, "reason", why));
  decision_close();
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
  for (int id = FL_STABLE; id < FL_NVARIANTS; id++) {
    json_decref(r->marks[id]);
    r->marks[id] = remote ? remote->mark(rt->name, (fl_variant_id_t)id, rt->variant[id].version) : NULL;
  }
}

/* Drift over the step's time: this replica's values, and in a cluster the others' sampled ones. */
static void window_drift(const fl_route_t *rt, const ro_t *r, fl_drift_t drift[FL_F_COUNT], bool set[FL_F_COUNT]) {
  static fl_drift_more_t more[FL_F_COUNT];
  memset(more, 0, sizeof more);
  for (unsigned f = 0; remote && remote->values && f < FL_F_COUNT; f++) {
    double *a = NULL, *b = NULL;
    more[f].n_a = remote->values(rt->name, FL_CANARY, rt->variant[FL_CANARY].version, f, r->marks[FL_CANARY], &a);
    more[f].n_b = remote->values(rt->name, FL_STABLE, rt->variant[FL_STABLE].version, f, r->marks[FL_STABLE], &b);
    more[f].a = a;
    more[f].b = b;
  }
  fl_monitor_window_drift(rt->variant[FL_CANARY].series, rt->variant[FL_STABLE].series, r->step_start_ms, fl_now_ms(),
                          remote && remote->values ? more : NULL, drift, set);
  for (unsigned f = 0; f < FL_F_COUNT; f++) {
    free((double *)more[f].a);
    free((double *)more[f].b);
  }
}

static json_t *window_close(const fl_route_t *rt, ro_t *r, fl_verdict_t *v) {
  static fl_series_snap_t now_c, now_s, win_c, win_s;
  fl_drift_t drift[FL_F_COUNT];
  bool drift_set[FL_F_COUNT];
  snapshot(rt, FL_CANARY, &now_c);
  snapshot(rt, FL_STABLE, &now_s);
  fl_window_diff(&now_c, &r->start_canary, &win_c);
  fl_window_diff(&now_s, &r->start_stable, &win_s);
  unsigned replicas = 1;                     /* in a cluster, the others' share of the window */
  if (remote) {
    replicas += remote->add(rt->name, FL_CANARY, rt->variant[FL_CANARY].version, r->marks[FL_CANARY], &win_c);
    remote->add(rt->name, FL_STABLE, rt->variant[FL_STABLE].version, r->marks[FL_STABLE], &win_s);
  }
  for (size_t i = 0; i < r->spec.n_checks; i++) {
    const fl_check_t *k = &r->spec.checks[i];
    if (k->kind == FL_CHECK_BACKEND) {
      win_c.backend_known[i] = fl_scrape_variant_value(rt->name, FL_CANARY, k->name + 8, &win_c.backend[i]);
      win_s.backend_known[i] = fl_scrape_variant_value(rt->name, FL_STABLE, k->name + 8, &win_s.backend[i]);
    }
  }
  static fl_query_why_t query_why;
  fl_promql_window(rt, &r->spec, &win_c, &win_s, query_why);
  bool due = fl_analysis_due(&r->spec, &r->evidence, &win_c, &win_s);   /* else nothing is tested: no drift */
  memset(drift_set, 0, sizeof drift_set);
  if (due) window_drift(rt, r, drift, drift_set);
  bool was_held = r->evidence.held;
  json_t *a = fl_analysis_run(&r->spec, &r->evidence, &win_c, &win_s, due ? drift : NULL, v);
  json_object_set_new(a, "drift", fl_monitor_drift_json(drift, drift_set));
  fl_promql_note(a, &r->spec, query_why);
  json_object_set_new(a, "step", json_integer(r->step));
  if (remote) json_object_set_new(a, "replicas", json_integer(replicas));
  json_object_set_new(a, "weight", json_real(r->spec.steps_bp[r->step] / 100.0));
  r->verdicts[*v]++;
  hold_window(r, *v, a);
  json_decref(r->last_analysis);
  r->last_analysis = json_incref(a);
  if (r->evidence.held && !was_held)       /* said once a step: the rollout waits on more traffic */
    event(rt, "rollout", "held",
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

/* Marks the promotion finished: the canary's version becomes the stable one once the snapshot is
 * prepared again (fl_rollouts_overlay); recorded with the decision that promotes. */
static void finish_promotion(const fl_route_t *rt, ro_t *r, json_t *why) {
  r->state = RO_PROMOTED;
  snprintf(r->promoted_from, sizeof r->promoted_from, "%s", rt->variant[FL_STABLE].version);
  snprintf(r->promoted_to, sizeof r->promoted_to, "%s", rt->variant[FL_CANARY].version);
  json_object_set_new(why, "stable_version", json_string(r->promoted_to));
  json_object_set_new(why, "previous_stable", json_string(r->promoted_from));
  republish_soon();
}

static void promote(const fl_route_t *rt, ro_t *r, const char *actor, json_t *why) {
  finish_promotion(rt, r, why);
  set_weight(rt, r, 10000, actor, "promoted", why);
}

static void act_on_verdict(const fl_route_t *rt, ro_t *r, fl_verdict_t v, json_t *analysis) {
  switch (fl_analysis_move(&r->spec, r->step, &r->failures, v)) {
  case FL_MOVE_PROMOTE:
    promote(rt, r, "rollout", json_pack("{s:O}", "analysis", analysis));
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

static void shadow_tick(const fl_route_t *rt, ro_t *r, uint64_t now);

void fl_rollouts_tick(const fl_conf_t *c) {
  uint64_t now = fl_now_ms();
  current_conf = c;
  if (!fl_cluster_is_leader(NULL)) return;        /* in a cluster, only the leader judges (docs/cluster.md) */
  for (ro_t *r = rollouts; r; r = r->next) {
    const fl_route_t *rt = route_of(c, r->route);
    if (rt && r->state == RO_ACCEPTANCE && !r->gate_here) {   /* its leader went: never skip the gate */
      r->state = RO_ROLLED_BACK;
      set_weight(rt, r, 0, "rollout", "acceptance_failed",
                 json_pack("{s:s}", "reason", "the cluster's leader changed during the acceptance set"));
      continue;
    }
    if (rt && rt->has_canary && r->state == RO_SHADOW) shadow_tick(rt, r, now);
    if (!rt || !rt->has_canary || r->state != RO_PROGRESSING) continue;
    fl_promql_want_checks(rt, &r->spec);
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
  json_t *why = json_pack("{s:s, s:o}", "canary_version", rt->variant[FL_CANARY].version, "spec",
                          fl_redact_json(fl_rollout_spec_json(&r->spec)));
  r->state = RO_PROGRESSING;
  if (r->spec.steps_bp[0] == 10000) finish_promotion(rt, r, why);   /* steps: [100] promotes at once */
  set_weight(rt, r, r->spec.steps_bp[0], actor, "rollout_started", why);
  step_begin(rt, r);
}

/* The shadow phase's evidence starts now: the canary series' comparison so far is subtracted. */
static void shadow_mark(const fl_route_t *rt, ro_t *r) {
  const fl_variant_conf_t *v = &rt->variant[FL_CANARY];
  r->shadow_series = v->series;
  r->shadow_gen = v->series_gen;
  if (!fl_shadow_comparison(v->series, &r->shadow_from)) memset(&r->shadow_from, 0, sizeof r->shadow_from);
  r->shadow_since_ms = fl_now_ms();
  r->shadow_waiting = false;
}

/* After the acceptance set (if any): the shadow phase (if the spec has one), else the steps. */
static void begin_judging(const fl_route_t *rt, ro_t *r, const char *actor) {
  if (!r->spec.shadow_ms) {
    begin_steps(rt, r, actor);
    return;
  }
  r->state = RO_SHADOW;
  shadow_mark(rt, r);
  set_weight(rt, r, 0, actor, "shadow_started",
             json_pack("{s:s, s:f}", "canary_version", rt->variant[FL_CANARY].version, "duration_s",
                       r->spec.shadow_ms / 1000.0));
}

/* Once a second in the shadow phase: when its time is up and enough pairs were compared, their
 * checks decide between the first step and a rollback. */
static void shadow_tick(const fl_route_t *rt, ro_t *r, uint64_t now) {
  const fl_variant_conf_t *v = &rt->variant[FL_CANARY];
  if (v->series != r->shadow_series || v->series_gen != r->shadow_gen) {
    fl_log("route %s: a version changed during the shadow phase: it starts over", rt->name);
    shadow_mark(rt, r);
    return;
  }
  if (now - r->shadow_since_ms < r->spec.shadow_ms) return;
  fl_shadow_agg_t agg = {0};
  fl_shadow_comparison(v->series, &agg);
  if (agg.pairs - r->shadow_from.pairs < r->spec.min_requests) {
    if (!r->shadow_waiting)
      fl_log("route %s: the shadow phase waits for %llu compared pairs (%llu so far)", rt->name,
             (unsigned long long)r->spec.min_requests, (unsigned long long)(agg.pairs - r->shadow_from.pairs));
    r->shadow_waiting = true;
    return;
  }
  json_t *report;
  char why[256];
  if (fl_shadow_judge(r->spec.shadow_checks, r->spec.n_shadow_checks, &agg, &r->shadow_from, &report, why, sizeof why)) {
    decision_open(rt);                             /* the phase and the first step: one decision */
    decide_event("rollout", "shadow_passed", json_pack("{s:o}", "report", report));
    begin_steps(rt, r, "rollout");
    decision_close();
  } else {
    r->state = RO_ROLLED_BACK;
    set_weight(rt, r, 0, "rollout", "shadow_failed", json_pack("{s:s, s:o}", "reason", why, "report", report));
  }
}

/* The acceptance report is back (control thread): go on to the first step, or stop here. */
static void acceptance_done(const char *route, json_t *report, void *ctx) {
  ro_t *r = ro_get(route, false);
  const fl_route_t *rt = current_conf ? route_of(current_conf, route) : NULL;
  if (r && r->generation == (uintptr_t)ctx) r->gate_here = false;
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
  } else {                                         /* the gate and the first step: one decision */
    decision_open(rt);
    decide_event("rollout", "acceptance_passed", json_pack("{s:O}", "report", report));
    begin_judging(rt, r, "rollout");
    decision_close();
  }
  json_decref(report);
}

static int start_acceptance(const fl_conf_t *c, const fl_route_t *rt, ro_t *r, const char *actor, char *err,
                            size_t err_cap) {
  char path[1200];
  fl_conf_resolve(c, r->spec.acceptance, path, sizeof path);
  const fl_variant_conf_t *v = &rt->variant[FL_CANARY];
  decision_open(rt);                              /* started, and failed at once: one decision */
  r->state = RO_ACCEPTANCE;
  r->gate_here = true;
  set_weight(rt, r, 0, actor, "acceptance_started", json_pack("{s:s, s:s}", "canary_version", v->version, "file", path));
  int rc = 0;
  if (!control_loop || !v->n_backends ||        /* none: a host name resolved lazily has no address yet */
      fl_acceptance_run(control_loop, rt->name, path, &v->backends[0], v->model, v->headers, acceptance_done,
                        (void *)r->generation) != 0) {
    r->state = RO_ROLLED_BACK;
    decide_event("rollout", "acceptance_failed", json_pack("{s:s}", "reason", "cannot run the acceptance set"));
    snprintf(err, err_cap, "cannot run the acceptance set %s", path);
    rc = FL_EIO;
  }
  decision_close();
  return rc;
}

static int fail(char *err, size_t cap, int rc, const char *fmt, const char *what) {
  snprintf(err, cap, fmt, what);
  return rc;
}

/* What an action says once its decisions are made: 0, or FL_EIO when the cluster's log did not
 * take one (nothing of it took effect). */
static int taken(char *err, size_t cap) {
  if (!refused[0]) return 0;
  return fail(err, cap, FL_EIO, "%s", refused);
}

/* In a cluster a manual action is taken by the leader only, until the shared state lets any
 * replica hand it on (docs/cluster.md). */
static int follower_refuses(char *err, size_t cap) {
  if (fl_cluster_is_leader(NULL)) return 0;
  return fail(err, cap, FL_EINVAL, "this replica %s: its admin API hands changes to the leader",
              "does not lead the cluster");
}

int fl_rollout_start(const fl_conf_t *c, const char *route, const json_t *spec, const char *actor, char *err,
                     size_t err_cap) {
  const fl_route_t *rt = route_of(c, route);
  if (!rt) return fail(err, err_cap, FL_ENOENT, "no route named %s", route);
  if (follower_refuses(err, err_cap)) return FL_EINVAL;
  fl_rollout_spec_t parsed;
  if (fl_rollout_spec_parse(spec ? spec : rt->rollout_spec, &parsed, err, err_cap) != 0) return FL_EPARSE;
  if (fl_spec_has_query(&parsed) && !c->prometheus_url)
    return fail(err, err_cap, FL_EINVAL, "route %s: the rollout has query checks but the config sets no "
                "analysis.prometheus", route);
  if (!rt->has_canary)
    return fail(err, err_cap, FL_EINVAL, rt->stable_promoted ? "route %s has no canary to roll out: its promoted "
                "canary serves as stable" : "route %s has no canary to roll out", route);
  ro_t *r = ro_get(route, true);
  if (!r) return fail(err, err_cap, FL_ENOMEM, "out of memory starting %s", route);
  if (r->state == RO_PROGRESSING || r->state == RO_PAUSED || r->state == RO_ACCEPTANCE || r->state == RO_SHADOW)
    return fail(err, err_cap, FL_EINVAL, "route %s already has a rollout in progress", route);
  r->spec = parsed;
  r->step = 0;
  r->failures = 0;
  memset(r->verdicts, 0, sizeof r->verdicts);        /* this rollout's windows, not earlier ones' */
  json_decref(r->last_analysis);                      /* nor the last one's analysis */
  r->last_analysis = NULL;
  r->generation++;
  current_conf = c;
  refused[0] = '\0';
  if (r->spec.acceptance[0]) {
    int rc = start_acceptance(c, rt, r, actor, err, err_cap);
    return rc ? rc : taken(err, err_cap);
  }
  begin_judging(rt, r, actor);
  return taken(err, err_cap);
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
  if (follower_refuses(err, err_cap)) return FL_EINVAL;
  refused[0] = '\0';
  bool active = r && (r->state == RO_PROGRESSING || r->state == RO_PAUSED || r->state == RO_ACCEPTANCE ||
                      r->state == RO_SHADOW);
  if (strcmp(action, "pause") == 0 && active && r->state == RO_PROGRESSING) {
    char why[64];
    snprintf(why, sizeof why, "paused by hand (%s)", actor);
    pause_for(rt, r, actor, why);
  } else if (strcmp(action, "resume") == 0 && active && r->state == RO_PAUSED) {
    r->state = RO_PROGRESSING;                      /* at the step's weight, whatever a hand set since */
    set_weight(rt, r, r->spec.steps_bp[r->step], actor, "resumed", json_pack("{s:i}", "step", r->step));
    step_begin(rt, r);
  } else if (strcmp(action, "promote") == 0 && active) {
    promote(rt, r, actor, json_pack("{s:s}", "reason", "promoted by hand"));
  } else if (strcmp(action, "abort") == 0 && active) {
    r->state = RO_ROLLED_BACK;
    set_weight(rt, r, 0, actor, "rolled_back", json_pack("{s:s}", "reason", "aborted by hand"));
  } else if (strcmp(action, "undo") == 0 && r && r->state == RO_PROMOTED) {
    json_t *why = json_pack("{s:s}", "reason", "promotion undone: back to stable");
    if (r->promoted_from[0]) {                     /* the file's stable serves as stable again */
      json_object_set_new(why, "stable_version", json_string(r->promoted_from));
      r->promoted_from[0] = r->promoted_to[0] = '\0';
      republish_soon();
    }
    r->state = RO_ROLLED_BACK;
    set_weight(rt, r, 0, actor, "undone", why);
  } else {
    return fail(err, err_cap, FL_EINVAL, "cannot %s: no rollout in a state that allows it", action);
  }
  return taken(err, err_cap);
}

int fl_rollout_set_weight(const fl_conf_t *c, const char *route, uint32_t weight_bp, const char *source,
                          json_t *detail, char *err, size_t err_cap) {
  const fl_route_t *rt = route_of(c, route);
  int rc = !rt ? fail(err, err_cap, FL_ENOENT, "no route named %s", route)
           : !rt->has_canary ? fail(err, err_cap, FL_EINVAL, "route %s has no canary", route)
           : follower_refuses(err, err_cap);
  if (rc != 0) {
    json_decref(detail);
    return rc;
  }
  char why[96];
  snprintf(why, sizeof why, "the canary weight was set to %.2f%% by hand (%s)", weight_bp / 100.0, source);
  refused[0] = '\0';
  outside_weight(rt, weight_bp, source, detail ? detail : json_object(), why);
  return taken(err, err_cap);
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
  event(rt, "restart", "weight",
        json_pack("{s:s, s:f, s:f, s:f, s:f, s:s}", "source", "restart", "from", st->weight_bp / 100.0, "to",
                  rt->canary_weight_bp / 100.0, "file_from", st->config_weight_bp / 100.0, "file_to",
                  rt->canary_weight_bp / 100.0, "reason", why));
}

/* A promotion that finished before the restart serves its version as stable again, as long as
 * the file still names it the canary over the same stable; a file that names it stable now
 * agrees with what ran, and one that names neither has moved on (its versions apply). */
static void restore_promotion(const fl_route_t *rt, ro_t *r, const fl_route_state_t *st) {
  if (!st->previous_stable[0]) return;
  if (rt->has_canary && strcmp(rt->variant[FL_STABLE].version, st->previous_stable) == 0 &&
      strcmp(rt->variant[FL_CANARY].version, st->canary_version) == 0) {
    snprintf(r->promoted_from, sizeof r->promoted_from, "%s", st->previous_stable);
    snprintf(r->promoted_to, sizeof r->promoted_to, "%s", st->canary_version);
    republish_soon();
  } else if (strcmp(rt->variant[FL_STABLE].version, st->canary_version) == 0) {
    fl_log("route %s: the file names %s stable now, as it ran", rt->name, st->canary_version);
  } else {
    fl_log("route %s: the file no longer names the promoted %s; its own versions apply", rt->name,
           st->canary_version);
  }
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
    event(rt, "rollout", "acceptance_failed",
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
    event(rt, "rollout", "spec_invalid", json_pack("{s:s, s:s}", "reason", err, "spec", st->spec_json));
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
    if (pausing) event(rt, "restart", "paused", json_pack("{s:i, s:s}", "step", r->step, "reason", moved));
    step_begin(rt, r);
    r->evidence.looks = (uint32_t)FL_MAX(st->looks, 0);   /* the counters start afresh, the budget goes on */
    fl_log("route %s: rollout %s restored at step %d, weight %.2f", rt->name, state_names[state], r->step,
           fl_live_weight(rt) / 100.0);
  } else if (r && (state == RO_ROLLED_BACK || state == RO_PROMOTED)) {
    r->state = state;                              /* ended: no step to resume, the outcome stays */
  }
  if (r && state == RO_PROMOTED) restore_promotion(rt, r, st);
  if (r && r->state == RO_SHADOW) {               /* the phase starts over: its pairs were in memory */
    shadow_mark(rt, r);
    save(rt, r, 0);                                /* and the canary is held and mirrored to again */
  }
  json_decref(spec);
}

/* A route's state as the cluster's log has it (fleet.c), or as last recorded after a decision
 * that did not take effect: the rollout, its spec and the weight, without events (they are the
 * record's). A step or state that changed starts its evidence afresh. */
static void adopt(const fl_route_t *rt, const fl_route_state_t *st) {
  ro_t *r = ro_get(rt->name, true);
  if (!r) return;
  ro_state_t state = state_named(st->rollout_state);
  json_t *spec = json_loads(st->spec_json, 0, NULL);
  char err[256];
  if (!spec || fl_rollout_spec_parse(spec, &r->spec, err, sizeof err) != 0) fl_rollout_spec_parse(NULL, &r->spec, err, sizeof err);
  json_decref(spec);
  bool moved = r->state != state || r->step != st->step;
  if (moved) {                               /* a gate or report of ours is no longer this rollout's */
    r->gate_here = false;
    r->generation++;
  }
  r->state = state;
  r->step = st->step;
  r->failures = (uint32_t)FL_MAX(st->failures, 0);
  snprintf(r->reason, sizeof r->reason, "%s", st->pause_reason);
  bool promoted = state == RO_PROMOTED && st->previous_stable[0];
  if (promoted != (r->promoted_from[0] != '\0') || (promoted && strcmp(r->promoted_to, st->canary_version) != 0)) {
    snprintf(r->promoted_from, sizeof r->promoted_from, "%s", promoted ? st->previous_stable : "");
    snprintf(r->promoted_to, sizeof r->promoted_to, "%s", promoted ? st->canary_version : "");
    republish_soon();
  }
  if (moved && r->step >= 0 && (size_t)r->step < r->spec.n_steps) step_begin(rt, r);
  r->evidence.looks = (uint32_t)FL_MAX(st->looks, 0);
  if (!rt->live) return;
  apply_gates(rt, state, st->weight_bp);
  fl_live_set_weight(rt->live, st->weight_bp);
}

void fl_rollouts_adopt(const fl_route_state_t *st) {
  const fl_route_t *rt = current_conf ? route_of(current_conf, st->route) : NULL;
  if (rt) adopt(rt, st);                 /* before the first bind: the store has it, restore() reads it */
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
    event(rt, "config", "superseded", why);
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

/* Each route is one decision: what the restart or the reload made of it (restored, superseded,
 * a new rollout, the file's weight) is recorded with its state, and the state of a route nothing
 * happened to is written back as it is. */
/* A finished promotion the new snapshot could not carry (fl_rollouts_overlay): the file names the
 * promoted version stable now (nothing moves), or has moved on (its versions apply). */
static void drop_promotion_the_file_left(const fl_route_t *rt) {
  ro_t *r = ro_get(rt->name, false);
  if (!r || !r->promoted_from[0] || rt->stable_promoted) return;
  if (strcmp(rt->variant[FL_STABLE].version, r->promoted_to) == 0)
    fl_log("route %s: the file names %s stable now, as it runs", rt->name, r->promoted_to);
  else
    fl_log("route %s: the file no longer names the promoted %s as its canary over %s; its own versions apply",
           rt->name, r->promoted_to, r->promoted_from);
  r->promoted_from[0] = r->promoted_to[0] = '\0';
}

void fl_rollouts_overlay(fl_conf_t *c) {
  for (size_t i = 0; i < c->n_routes; i++) {
    fl_route_t *rt = &c->routes[i];
    const ro_t *r = ro_get(rt->name, false);
    if (!r || !r->promoted_from[0] || !rt->has_canary || strcmp(rt->variant[FL_STABLE].version, r->promoted_from) != 0 ||
        strcmp(rt->variant[FL_CANARY].version, r->promoted_to) != 0)
      continue;
    fl_variant_conf_t file_stable = rt->variant[FL_STABLE];
    rt->variant[FL_STABLE] = rt->variant[FL_CANARY];
    rt->variant[FL_CANARY] = file_stable;
    rt->has_canary = false;
    rt->stable_promoted = true;
  }
}

void fl_rollouts_bind(const fl_conf_t *c, bool first) {
  current_conf = c;             /* the previous snapshot may be freed once this one is published */
  for (size_t i = 0; i < c->n_routes; i++) {
    const fl_route_t *rt = &c->routes[i];
    if (!first) drop_promotion_the_file_left(rt);
    decision_open(rt);
    bool new_canary = store && bind_stored(c, rt, first);
    if (rt->live && !new_canary && fl_live_file_moved(rt)) follow_file_weight(c, rt);
    if (rt->live) fl_live_set_file_weight(rt->live, rt->canary_weight_bp);
    decision_close();
  }
}

void fl_rollouts_rebind(void) {
  if (current_conf) fl_rollouts_bind(current_conf, false);
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
  if (r->promoted_from[0]) {                     /* what runs is not what the file says: how to agree */
    char how[320];
    snprintf(how, sizeof how, "make %s (the canary section) the route's stable section and drop the canary section, "
             "then reload; until then undo brings %s back", r->promoted_to, r->promoted_from);
    json_object_set_new(o, "promotion", json_pack("{s:s, s:s, s:b, s:s}", "stable_version", r->promoted_to,
                                                  "previous_stable", r->promoted_from, "file_differs", 1,
                                                  "to_match_the_file", how));
  }
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
  record_held_window_alone();
  while (rollouts) {
    ro_t *next = rollouts->next;
    json_decref(rollouts->last_analysis);
    json_decref(rollouts->marks[FL_STABLE]);
    json_decref(rollouts->marks[FL_CANARY]);
    free(rollouts);
    rollouts = next;
  }
}
