/* cli.c — `fledge stats`: finds the admin listener (--admin, or admin.listen of --config),
 * fetches /api/v1/stats and prints one line per route and variant. */
#include "cli.h"
#include "client.h"
#include "conf.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static const char stats_usage[] =
    "usage: fledge stats [-a ADDR | -c FILE] [-w 1m|5m] [--json]\n\n"
    "Prints requests per second, error rate, latency, time to first token and tokens per second\n"
    "for each route and variant of a running gateway, from its admin listener.\n\n"
    "  -a, --admin ADDR    admin listener (default 127.0.0.1:9090)\n"
    "  -c, --config FILE   take the admin listener from this config instead\n"
    "  -w, --window W      1m (default) or 5m\n"
    "      --json          print /api/v1/stats as it came\n";

typedef struct {
  fl_addr_t admin;
  const char *window;
  bool json;
} stats_opts_t;

static int admin_from_config(const char *path, fl_addr_t *out) {
  char err[512];
  fl_conf_t *c;
  if (fl_conf_load(path, &c, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  *out = c->admin_listen;
  fl_conf_unref(c);
  return 0;
}

/* 0: run; 1: done (help); 2: usage error. */
static int parse_opts(int argc, char **argv, stats_opts_t *o) {
  static const struct option opts[] = {{"admin", required_argument, NULL, 'a'}, {"config", required_argument, NULL, 'c'},
                                       {"window", required_argument, NULL, 'w'}, {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  fl_addr_parse("127.0.0.1:9090", &o->admin);
  o->window = "1m";
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "a:c:w:h", opts, NULL)) != -1) {
    if (ch == 'a' && fl_addr_parse(optarg, &o->admin) != 0) {
      fprintf(stderr, "fledge stats: bad address \"%s\" (want HOST:PORT)\n", optarg);
      return 2;
    } else if (ch == 'c' && admin_from_config(optarg, &o->admin) != 0) {
      return 2;
    } else if (ch == 'w') {
      if (strcmp(optarg, "1m") != 0 && strcmp(optarg, "5m") != 0) {
        fprintf(stderr, "fledge stats: --window is 1m or 5m\n");
        return 2;
      }
      o->window = optarg;
    } else if (ch == 'j') {
      o->json = true;
    } else if (ch == 'h') {
      fputs(stats_usage, stdout);
      return 1;
    } else if (ch != 'a' && ch != 'c') {
      fputs(stats_usage, stderr);
      return 2;
    }
  }
  return 0;
}

static double num(json_t *o, const char *path1, const char *path2) {
  json_t *v = json_object_get(o, path1);
  if (path2) v = json_object_get(v, path2);
  return json_is_number(v) ? json_number_value(v) : 0.0;
}

static void print_variant(const char *route, double weight, json_t *v, const char *window) {
  json_t *w = json_object_get(json_object_get(v, "windows"), window);
  json_t *totals = json_object_get(v, "totals");
  const char *variant = json_string_value(json_object_get(v, "variant"));
  printf("%-16s %-7s %-12s %6.2f %9.2f %6.2f %9.1f %9.1f %9.1f %8.1f %6.0f %10.0f\n", route, variant ? variant : "?",
         json_string_value(json_object_get(v, "version")), strcmp(variant ? variant : "", "canary") == 0 ? weight : 100 - weight,
         num(w, "rps", NULL), 100 * num(w, "error_rate", NULL), num(w, "latency_ms", "p50"), num(w, "latency_ms", "p99"),
         num(w, "ttft_ms", "p50"), num(w, "tokens_per_s", NULL), num(totals, "in_flight", NULL), num(totals, "requests", NULL));
}

static int print_table(const char *text, const char *window) {
  json_error_t jerr;
  json_t *root = json_loads(text, 0, &jerr);
  json_t *routes = json_object_get(root, "routes");
  if (!json_is_array(routes)) {
    fprintf(stderr, "fledge stats: unexpected answer: %s\n", root ? "no routes" : jerr.text);
    json_decref(root);
    return 1;
  }
  printf("%-16s %-7s %-12s %6s %9s %6s %9s %9s %9s %8s %6s %10s\n", "ROUTE", "VARIANT", "VERSION", "SHARE%", "RPS",
         "ERR%", "P50_MS", "P99_MS", "TTFT_MS", "TOK/S", "ACTIVE", "REQUESTS");
  size_t i, k;
  json_t *r, *v;
  json_array_foreach(routes, i, r) {
    json_array_foreach(json_object_get(r, "variants"), k, v)
      print_variant(json_string_value(json_object_get(r, "route")), num(r, "canary_weight", NULL), v, window);
  }
  printf("(rates and percentiles over the last %s)\n", window);
  json_decref(root);
  return 0;
}

int fl_cli_stats(int argc, char **argv) {
  stats_opts_t o = {0};
  int rc = parse_opts(argc, argv, &o);
  if (rc) return rc == 1 ? 0 : rc;
  char err[512], *body = NULL;
  int status = 0;
  if (fl_client_request(&o.admin, "GET", "/api/v1/stats", NULL, 5000, &status, &body, err, sizeof err) != 0) {
    fprintf(stderr, "fledge stats: %s\n", err);
    return 1;
  }
  if (status != 200) {
    fprintf(stderr, "fledge stats: %s answered %d: %s\n", o.admin.text, status, body);
    rc = 1;
  } else if (o.json) {
    printf("%s\n", body);
  } else {
    rc = print_table(body, o.window);
  }
  free(body);
  return rc;
}
