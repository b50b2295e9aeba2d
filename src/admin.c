/* admin.c — admin API handlers: GET /health and GET /api/v1/routes (JSON via jansson). */
#include "admin.h"
#include "router.h"

#include <jansson.h>
#include <stdlib.h>

static fl_conf_t *admin_conf;
static const fl_metrics_src_t *admin_metrics;

void fl_admin_set_conf(fl_conf_t *c) { admin_conf = c; }
void fl_admin_set_metrics(const fl_metrics_src_t *src) { admin_metrics = src; }

static json_t *variant_json(const fl_variant_conf_t *v) {
  json_t *backends = json_array();
  for (size_t i = 0; i < v->n_backends; i++) json_array_append_new(backends, json_string(v->backends[i].text));
  json_t *o = json_pack("{s:s, s:o}", "version", v->version, "backends", backends);
  if (v->model) json_object_set_new(o, "model", json_string(v->model));
  return o;
}

static json_t *route_json(const fl_route_t *r) {
  json_t *o = json_pack("{s:s, s:s, s:f, s:o}", "name", r->name, "path_prefix", r->path_prefix, "canary_weight",
                        r->canary_weight_bp / 100.0, "stable", variant_json(&r->variant[FL_STABLE]));
  if (r->has_canary) json_object_set_new(o, "canary", variant_json(&r->variant[FL_CANARY]));
  if (r->host) json_object_set_new(o, "host", json_string(r->host));
  return o;
}

static void respond_json(fl_httpd_req_t *req, int status, json_t *body) {
  char *text = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  fl_httpd_respond(req, status, "application/json", "", text, text ? strlen(text) : 0);
  free(text);
}

static void handle(fl_httpd_req_t *req, void *ctx) {
  if (strcmp(req->path, "/health") == 0) {
    respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
  } else if (strcmp(req->path, "/metrics") == 0) {
    char *text = fl_metrics_exposition(admin_metrics, admin_conf);
    fl_httpd_respond(req, text ? 200 : 500, "text/plain; version=0.0.4; charset=utf-8", "", text ? text : "",
                     text ? strlen(text) : 0);
    free(text);
  } else if (strcmp(req->path, "/api/v1/stats") == 0) {
    respond_json(req, 200, fl_metrics_stats_json(admin_metrics, admin_conf));
  } else if (strcmp(req->path, "/api/v1/routes") == 0 && strcmp(req->method, "GET") == 0) {
    json_t *routes = json_array();
    for (size_t i = 0; i < admin_conf->n_routes; i++) json_array_append_new(routes, route_json(&admin_conf->routes[i]));
    respond_json(req, 200, json_pack("{s:o}", "routes", routes));
  } else {
    respond_json(req, 404, json_pack("{s:{s:s, s:s}}", "error", "type", "not_found", "message", "no such admin endpoint"));
  }
}

int fl_admin_start(uv_loop_t *loop, const fl_addr_t *addr, fl_httpd_t **out) {
  fl_httpd_opts_t opts = {.reuseport = false, .max_body = 1 << 20};
  return fl_httpd_start(loop, addr, &opts, handle, NULL, out);
}
