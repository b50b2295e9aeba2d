/* admin.c — admin API handlers (JSON via jansson): health, metrics, stats, routes, and changes
 * such as a route's weight, which need the bearer token named by admin.token_env; feedback may
 * come with feedback.token_env's instead, and reads may need admin.read_token_env's. What a read
 * shows of the configuration has its secrets redacted (redact.h). */
#include "admin.h"
#include "shadow.h"
#include "cluster.h"
#include "feedback.h"
#include "resources.h"
#include "live.h"
#include "redact.h"
#include "rollout.h"
#include "router.h"
#include "ui.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static fl_conf_t *admin_conf;
static const fl_metrics_src_t *admin_metrics;

void fl_admin_set_conf(fl_conf_t *c) { admin_conf = c; }
void fl_admin_set_metrics(const fl_metrics_src_t *src) { admin_metrics = src; }

static fl_store_t *admin_store;
void fl_admin_set_store(fl_store_t *store) { admin_store = store; }

static json_t *variant_json(const fl_variant_conf_t *v) {
  json_t *backends = json_array();
  for (size_t i = 0; i < v->n_backends; i++) json_array_append_new(backends, json_string(v->backends[i].text));
  json_t *o = json_pack("{s:s, s:o}", "version", v->version, "backends", backends);
  if (v->model) json_object_set_new(o, "model", json_string(v->model));
  if (v->n_headers) {                          /* which headers the version sets; their values never */
    json_t *names = json_array();
    for (size_t i = 0; i < v->n_headers; i++) json_array_append_new(names, json_string(v->header_names[i]));
    json_object_set_new(o, "headers_set", names);
  }
  return o;
}

static json_t *route_json(const fl_route_t *r) {
  json_t *o = json_pack("{s:s, s:s, s:f, s:f, s:o}", "name", r->name, "path_prefix", r->path_prefix, "canary_weight",
                        fl_live_weight(r) / 100.0, "config_weight", r->canary_weight_bp / 100.0, "stable",
                        variant_json(&r->variant[FL_STABLE]));
  if (r->has_canary) json_object_set_new(o, "canary", variant_json(&r->variant[FL_CANARY]));
  if (r->host) json_object_set_new(o, "host", json_string(r->host));
  json_object_set_new(o, "rollout", fl_redact_json(fl_rollout_json(r->name)));   /* its spec's webhook URLs */
  return o;
}

static void respond_json(fl_httpd_req_t *req, int status, json_t *body) {
  char *text = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  /* RFC 9110: a 401 names the scheme whose credentials would do */
  const char *extra = status == 401 ? "www-authenticate: Bearer realm=\"fledge\"\r\n" : "";
  fl_httpd_respond(req, status, "application/json", extra, text, text ? strlen(text) : 0);
  free(text);
}

/* An answer being made: its status and body (owned). */
typedef struct {
  int status;
  json_t *body;
} answer_t;

static answer_t vanswer_error(int status, const char *type, const char *fmt, va_list ap) {
  char msg[400];
  vsnprintf(msg, sizeof msg, fmt, ap);
  for (char *m = msg; *m; m++)                 /* a path may carry any bytes; JSON wants UTF-8 */
    if ((unsigned char)*m < 0x20 || (unsigned char)*m > 0x7e) *m = '?';
  return (answer_t){status, json_pack("{s:{s:s, s:s}}", "error", "type", type, "message", msg)};
}

__attribute__((format(printf, 3, 4)))
static answer_t answer_error(int status, const char *type, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  answer_t a = vanswer_error(status, type, fmt, ap);
  va_end(ap);
  return a;
}

__attribute__((format(printf, 4, 5)))
static void respond_error(fl_httpd_req_t *req, int status, const char *type, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  answer_t a = vanswer_error(status, type, fmt, ap);
  va_end(ap);
  respond_json(req, a.status, a.body);
}

/* Compares in time that depends only on the expected token's length, not on where they differ. */
static bool token_equal(const char *given, size_t gl, const char *want) {
  size_t wl = strlen(want);
  unsigned char diff = (unsigned char)(gl != wl);
  for (size_t i = 0; i < wl; i++) diff |= (unsigned char)(want[i] ^ (gl ? given[i % gl] : 0));
  return diff == 0;
}

/* What the request's bearer token may do. Three tokens, three scopes (admin.token_env,
 * admin.read_token_env, feedback.token_env); conf.c refuses a file where two are the same. */
typedef enum { SCOPE_NONE, SCOPE_FEEDBACK, SCOPE_READ, SCOPE_ADMIN } scope_t;

static bool bearer_is(const char *given, size_t len, const char *token) {
  return token && token_equal(given, len, token);
}

static scope_t token_scope(const fl_httpd_req_t *req) {
  size_t len = 0;
  const char *h = fl_httpd_header(req, "authorization", &len);  /* the scheme is case-insensitive */
  if (!h || len < 7 || strncasecmp(h, "Bearer ", 7) != 0) return SCOPE_NONE;
  if (bearer_is(h + 7, len - 7, admin_conf->admin_token)) return SCOPE_ADMIN;
  if (bearer_is(h + 7, len - 7, admin_conf->read_token)) return SCOPE_READ;
  if (bearer_is(h + 7, len - 7, admin_conf->feedback_token)) return SCOPE_FEEDBACK;
  return SCOPE_NONE;
}

/* No token, or one we do not know: 401 (RFC 9110: credentials would help). A known token whose
 * scope does not cover the request: 403 (other credentials are needed, not better ones). */
static void refuse(fl_httpd_req_t *req, scope_t scope) {
  if (scope == SCOPE_NONE)
    respond_error(req, 401, "unauthorized", "a valid \"Authorization: Bearer TOKEN\" header is required");
  else
    respond_error(req, 403, "forbidden", "the %s token may not %s %s", scope == SCOPE_READ ? "read" : "feedback",
                  req->method, req->path);
}

/* Changes need the admin token; answers 401/403 itself and returns false. */
static bool authorized(fl_httpd_req_t *req) {
  if (!admin_conf->admin_token) {
    respond_error(req, 403, "forbidden", "the admin API is read-only: set admin.token_env to allow changes");
    return false;
  }
  scope_t scope = token_scope(req);
  if (scope != SCOPE_ADMIN) refuse(req, scope);
  return scope == SCOPE_ADMIN;
}

/* With admin.read_token_env set, nothing under /api/v1/ (nor /metrics, unless admin.public_metrics)
 * answers a client without a token, not even whether a route exists; what a token may change is
 * checked by its handler. /health stays open for load balancers. */
static bool may_enter(fl_httpd_req_t *req) {
  bool metrics = strcmp(req->path, "/metrics") == 0;
  if (!admin_conf->read_token || (metrics && admin_conf->public_metrics)) return true;
  if (!metrics && strncmp(req->path, "/api/v1/", 8) != 0) return true;
  scope_t scope = token_scope(req);
  bool feedback_post = strcmp(req->path, "/api/v1/feedback") == 0 && strcmp(req->method, "POST") == 0;
  if (scope == SCOPE_READ || scope == SCOPE_ADMIN || (scope == SCOPE_FEEDBACK && feedback_post)) return true;
  refuse(req, scope);
  return false;
}

/* The audit log's "source" of a change: what the client says it is ("cli" from fledge rollout
 * weight), a short name, else "api". Who it really was is the client address beside it. */
static bool source_of(json_t *body, char *out, size_t cap) {
  json_t *given = json_object_get(body, "source");
  if (!given) return true;                     /* out keeps "api" */
  const char *s = json_string_value(given);
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n >= cap) return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i])) return false;
  memcpy(out, s, n + 1);
  return true;
}

/* ---- changes: a weight or a rollout action, made here or handed to the cluster's leader ---- */

/* A change refused: a bad request, no such route, a state that does not allow it, or (FL_EIO) a
 * cluster's Redis that did not record it, so nothing changed. */
static answer_t change_error(int rc, const char *err) {
  if (rc == FL_EPARSE) return answer_error(400, "invalid_request", "%s", err);
  if (rc == FL_ENOENT) return answer_error(404, "not_found", "%s", err);
  if (rc == FL_EIO) return answer_error(503, "unavailable", "%s", err);
  return answer_error(409, "conflict", "%s", err);
}

/* {"weight": 12.5[, "source": "cli"]} */
static answer_t change_weight(const fl_route_t *r, const char *text, size_t len, const char *client) {
  json_error_t jerr;
  char source[33] = "api";
  json_t *body = json_loadb(text, len, 0, &jerr);
  json_t *w = json_object_get(body, "weight");
  double pct = json_is_number(w) ? json_number_value(w) : -1;
  double bp = round(pct * 100);
  bool source_ok = source_of(body, source, sizeof source);
  json_decref(body);
  if (pct < 0 || pct > 100 || fabs(pct * 100 - bp) > 1e-6 || !source_ok)
    return answer_error(400, "invalid_request", "body must be {\"weight\": N} with 0 <= N <= 100, two decimals at most "
                        "(and an optional \"source\": a name of at most 32 letters, digits, '.', '_' or '-')");
  if (!r->has_canary) return answer_error(409, "conflict", "route %s has no canary", r->name);
  char err[256];
  int rc = fl_rollout_set_weight(admin_conf, r->name, (uint32_t)bp, source, json_pack("{s:s}", "client", client), err,
                                 sizeof err);
  return rc ? change_error(rc, err) : (answer_t){200, route_json(r)};
}

/* A rollout started (action "", the spec as body) or steered (pause, resume, ...). */
static answer_t change_rollout(const fl_route_t *r, const char *action, const char *text, size_t len) {
  char err[256];
  int rc;
  if (!*action) {
    json_error_t jerr;
    json_t *spec = len ? json_loadb(text, len, 0, &jerr) : NULL;
    if (len && !spec) return answer_error(400, "invalid_request", "the rollout spec is not JSON: %s", jerr.text);
    rc = fl_rollout_start(admin_conf, r->name, spec, "api", err, sizeof err);
    json_decref(spec);
  } else {
    rc = fl_rollout_act(admin_conf, r->name, action, "api", err, sizeof err);
  }
  return rc ? change_error(rc, err) : (answer_t){200, route_json(r)};
}

/* A change as it travels: {"route", "change": "weight" | "rollout", "action", "body", "client"}. */
static answer_t make_change(const json_t *c) {
  const fl_route_t *r = fl_conf_route(admin_conf, json_string_value(json_object_get(c, "route")));
  const char *kind = json_string_value(json_object_get(c, "change")), *action = json_string_value(json_object_get(c, "action"));
  const char *body = json_string_value(json_object_get(c, "body")), *client = json_string_value(json_object_get(c, "client"));
  if (!r) return answer_error(404, "not_found", "no route named %s", json_string_value(json_object_get(c, "route")));
  if (!kind || !action || !body || !client) return answer_error(400, "invalid_request", "a malformed change");
  if (strcmp(kind, "weight") == 0) return change_weight(r, body, json_string_length(json_object_get(c, "body")), client);
  return change_rollout(r, action, body, json_string_length(json_object_get(c, "body")));
}

/* The leader's side of a change a follower handed on (cluster.h). */
static json_t *act_for_follower(const json_t *c) {
  answer_t a = make_change(c);
  return json_pack("{s:i, s:o}", "status", a.status, "body", a.body);
}

static void on_leader_answer(void *ctx, int status, json_t *body) {
  fl_httpd_req_t *req = ctx;
  if (status) respond_json(req, status, json_incref(body));
  else respond_error(req, 503, "unavailable", "the cluster's leader did not answer within 5 s; this replica changed "
                     "nothing (GET /api/v1/cluster names the leader)");
}

/* PUT /api/v1/routes/NAME/weight and POST /api/v1/routes/NAME/rollout[/ACTION]: made here when
 * this replica decides (no cluster, or its leader), else handed to the leader and answered with
 * the leader's answer. */
static void post_change(fl_httpd_req_t *req, const fl_route_t *r, const char *kind, const char *action) {
  char client[64] = "";
  if (req->peer) fl_addr_ntop(req->peer, client, sizeof client);
  json_t *c = json_pack("{s:s, s:s, s:s, s:s%, s:s}", "route", r->name, "change", kind, "action", action, "body",
                        req->body ? req->body : "", req->body_len, "client", client);
  if (!c) {
    respond_error(req, 400, "invalid_request", "the body is not UTF-8 text");
    return;
  }
  if (fl_cluster_enabled() && !fl_cluster_is_leader(NULL)) {
    if (fl_cluster_forward(c, on_leader_answer, req) != 0)
      respond_error(req, 503, "unavailable", "this replica does not lead the cluster and cannot reach its Redis to "
                    "hand the change on; nothing was changed");
  } else {
    answer_t a = make_change(c);
    respond_json(req, a.status, a.body);
  }
  json_decref(c);
}

/* One parameter of the query string (router.c's reader), copied into out; false when absent. */
static bool query_param(const char *q, const char *name, char *out, size_t cap) {
  size_t len;
  const char *v = fl_query_get(q, strlen(q), name, &len);
  if (v) snprintf(out, cap, "%.*s", (int)FL_MIN(len, cap - 1), v);
  return v != NULL;
}

static bool query_int(const char *q, const char *name, long long *v) {
  char text[32], *end;
  if (!query_param(q, name, text, sizeof text)) return true;
  *v = strtoll(text, &end, 10);
  return *text && !*end && *v >= 0;
}

/* GET /api/v1/events?route=NAME&after=ID&limit=N */
static void get_events(fl_httpd_req_t *req) {
  char route[64] = "";
  long long after = 0, limit = 100;
  query_param(req->query, "route", route, sizeof route);
  if (!query_int(req->query, "after", &after) || !query_int(req->query, "limit", &limit)) {
    respond_error(req, 400, "invalid_request", "after and limit must be whole numbers of at least 0");
    return;
  }
  json_t *events = NULL;
  if (!admin_store || fl_store_events(admin_store, route[0] ? route : NULL, after, (int)FL_MIN(FL_MAX(limit, 1), 1000),
                                      &events) != 0) {
    respond_error(req, 503, "unavailable", "the state store cannot be read");
    return;
  }
  fl_redact_json(events);        /* here, at the read: events saved by older builds hold whole URLs */
  respond_json(req, 200, json_pack("{s:o}", "events", events));
}

/* GET /api/v1/routes/NAME/windows?limit=N: the route's last analysis windows, newest first (what
 * each look found, and why), as the state store keeps them. */
static void get_windows(fl_httpd_req_t *req, const fl_route_t *r) {
  long long limit = 50;
  if (!query_int(req->query, "limit", &limit)) {
    respond_error(req, 400, "invalid_request", "limit must be a whole number of at least 0");
    return;
  }
  json_t *windows = NULL;
  if (!admin_store || fl_store_windows(admin_store, r->name, (int)FL_MIN(FL_MAX(limit, 1), 1000), &windows) != 0) {
    respond_error(req, 503, "unavailable", "the state store cannot be read");
    return;
  }
  respond_json(req, 200, json_pack("{s:o}", "windows", windows));
}

/* GET /api/v1/routes/NAME/shadow/diffs: the last disagreeing pairs of the canary's mirrors
 * (shadow.h), newest first, with the version they came from. */
static void get_shadow_diffs(fl_httpd_req_t *req, const fl_route_t *r) {
  if (!r->has_canary) {
    respond_error(req, 404, "not_found", "route %s has no canary to mirror to", r->name);
    return;
  }
  const fl_variant_conf_t *v = &r->variant[FL_CANARY];
  respond_json(req, 200, json_pack("{s:s, s:s, s:b, s:o}", "route", r->name, "version", v->version, "mirroring",
                                   r->shadow.on, "diffs", fl_shadow_diffs_of(v->series)));
}

/* 200 while serving; "degraded" while the state store refuses writes (they wait in memory) or the
 * cluster's Redis cannot be reached (the replica serves on with the weights it has). */
static void get_health(fl_httpd_req_t *req) {
  fl_store_health_t h = {0};
  if (admin_store) fl_store_health(admin_store, &h);
  json_t *st = json_pack("{s:b, s:I, s:I}", "writable", h.backlog == 0, "backlog", (json_int_t)h.backlog,
                         "failed_writes", (json_int_t)h.failed_writes);
  if (h.backlog) json_object_set_new(st, "error", json_string(h.last_error));
  bool redis_down = fl_cluster_enabled() && !fl_cluster_redis_up();
  json_t *answer = json_pack("{s:s, s:o}", "status", h.backlog || redis_down ? "degraded" : "ok", "state_store", st);
  if (fl_cluster_enabled())
    json_object_set_new(answer, "cluster", json_pack("{s:b, s:b}", "redis_up", !redis_down, "leading",
                                                     fl_cluster_is_leader(NULL)));
  respond_json(req, 200, answer);
}

static void get_cluster(fl_httpd_req_t *req) {
  json_t *c = fl_cluster_json();
  if (c) respond_json(req, 200, c);
  else respond_error(req, 404, "not_found", "this gateway is not in a cluster (no cluster: in its config)");
}

static void post_feedback(fl_httpd_req_t *req) {
  json_t *answer = NULL;
  int status = fl_feedback_post(admin_store, req->body, req->body_len, &answer);
  respond_json(req, status, answer);
}

static const fl_route_t *route_named(const char *name, size_t len) {
  for (size_t i = 0; i < admin_conf->n_routes; i++) {
    const fl_route_t *r = &admin_conf->routes[i];
    if (strlen(r->name) == len && memcmp(r->name, name, len) == 0) return r;
  }
  return NULL;
}

/* /api/v1/routes/NAME[/ACTION]: 404 for what is not there, 405 for a method it does not take. */
static void handle_route(fl_httpd_req_t *req, const char *rest) {
  const char *slash = strchr(rest, '/');
  size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
  const fl_route_t *r = route_named(rest, len);
  const char *action = slash ? slash + 1 : "";
  bool rollout = strncmp(action, "rollout", 7) == 0 && (action[7] == '\0' || action[7] == '/');
  bool windows = strcmp(action, "windows") == 0, diffs = strcmp(action, "shadow/diffs") == 0;
  const char *allowed = !*action || windows || diffs ? "GET" : strcmp(action, "weight") == 0 ? "PUT" : rollout ? "POST" : NULL;
  if (!r) {
    respond_error(req, 404, "not_found", "no route named %.*s", (int)FL_MIN(len, 64), rest);
  } else if (!allowed) {
    respond_error(req, 404, "not_found", "no such admin endpoint");
  } else if (strcmp(req->method, allowed) != 0) {
    respond_error(req, 405, "method_not_allowed", "%s %s is not supported (%s is)", req->method, req->path, allowed);
  } else if (!*action) {
    respond_json(req, 200, route_json(r));
  } else if (windows) {
    get_windows(req, r);
  } else if (diffs) {
    get_shadow_diffs(req, r);
  } else if (authorized(req)) {
    if (rollout) post_change(req, r, "rollout", action[7] ? action + 8 : "");
    else post_change(req, r, "weight", "");
  }
}

static void get_metrics(fl_httpd_req_t *req) {
  char *text = fl_metrics_exposition(admin_metrics, admin_conf);
  fl_httpd_respond(req, text ? 200 : 500, "text/plain; version=0.0.4; charset=utf-8", "", text ? text : "",
                   text ? strlen(text) : 0);
  free(text);
}

static void get_resources(fl_httpd_req_t *req) {
  respond_json(req, 200, fl_redact_json(fl_resources_json()));     /* the backends' metrics_url */
}
static void get_stats(fl_httpd_req_t *req) { respond_json(req, 200, fl_metrics_stats_json(admin_metrics, admin_conf)); }

static void get_routes(fl_httpd_req_t *req) {
  json_t *routes = json_array();
  for (size_t i = 0; i < admin_conf->n_routes; i++) json_array_append_new(routes, route_json(&admin_conf->routes[i]));
  respond_json(req, 200, json_pack("{s:o}", "routes", routes));
}

/* Feedback takes the admin token or the feedback token, so an app relaying ratings needs no more. */
static void feedback(fl_httpd_req_t *req) {
  if (!admin_conf->admin_token && !admin_conf->feedback_token) {
    respond_error(req, 403, "forbidden", "feedback needs a token: set feedback.token_env (or admin.token_env)");
    return;
  }
  scope_t scope = token_scope(req);
  if (scope == SCOPE_ADMIN || scope == SCOPE_FEEDBACK) post_feedback(req);
  else refuse(req, scope);
}

static const struct {
  const char *path, *method;
  void (*fn)(fl_httpd_req_t *req);
} ENDPOINTS[] = {
    {"/health", "GET", get_health},           {"/metrics", "GET", get_metrics},
    {"/api/v1/resources", "GET", get_resources}, {"/api/v1/stats", "GET", get_stats},
    {"/api/v1/routes", "GET", get_routes},    {"/api/v1/events", "GET", get_events},
    {"/api/v1/feedback", "POST", feedback},   {"/api/v1/cluster", "GET", get_cluster},
};

/* The dashboard's files: the page itself holds no data (it asks /api/v1/ for it, with a token
 * where one is needed), so it is served to anyone. no-cache with an ETag: a browser asks again on
 * each load and gets a 304 while the binary is the same. The page loads nothing from elsewhere. */
static void get_ui(fl_httpd_req_t *req, const fl_ui_asset_t *a) {
  char extra[320];
  snprintf(extra, sizeof extra,
           "ETag: %s\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
           "Content-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'\r\n",
           a->etag);
  size_t len = 0;
  const char *cached = fl_httpd_header(req, "if-none-match", &len);
  if (cached && fl_ui_etag_matches(cached, len, a->etag)) fl_httpd_respond(req, 304, a->content_type, extra, "", 0);
  else fl_httpd_respond(req, 200, a->content_type, extra, a->data, a->len);
}

static void handle(fl_httpd_req_t *req, void *ctx) {
  if (!may_enter(req)) return;
  if (strncmp(req->path, "/api/v1/routes/", 15) == 0) {
    handle_route(req, req->path + 15);
    return;
  }
  for (size_t i = 0; i < FL_ARRAY_LEN(ENDPOINTS); i++) {
    if (strcmp(req->path, ENDPOINTS[i].path) != 0) continue;
    bool head = strcmp(req->method, "HEAD") == 0 && strcmp(ENDPOINTS[i].method, "GET") == 0;
    if (strcmp(req->method, ENDPOINTS[i].method) == 0 || head) ENDPOINTS[i].fn(req);
    else respond_error(req, 405, "method_not_allowed", "%s %s is not supported (%s is)", req->method, req->path,
                       ENDPOINTS[i].method);
    return;
  }
  const fl_ui_asset_t *asset = fl_ui_find(req->path);
  if (asset && (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0)) get_ui(req, asset);
  else if (asset) respond_error(req, 405, "method_not_allowed", "%s %s is not supported (GET is)", req->method, req->path);
  else respond_error(req, 404, "not_found", "no such admin endpoint");
}

int fl_admin_start(uv_loop_t *loop, const fl_addr_t *addr, bool share, uint32_t idle_ms, fl_httpd_t **out) {
  /* operators and scrapers, not crowds: at most 256 connections at once, 16 from one address, the
   * last 32 for the host's own CLI and scraper; a request must arrive whole within timeouts.header
   * however slowly it trickles, as on the gateway */
  fl_httpd_opts_t opts = {.reuseport = share, .max_body = 1 << 20, .idle_ms = idle_ms, .max_conns = 256,
                          .request_ms = idle_ms, .per_client = 16, .reserve = 32};
  fl_cluster_set_actor(act_for_follower);      /* a leader takes the changes followers hand on */
  return fl_httpd_start(loop, addr, &opts, handle, NULL, out);
}
