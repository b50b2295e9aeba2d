/* cli.c — fledge stats, status, rollout and history: each finds the admin listener (--admin, or
 * admin.listen of --config), calls the admin API and prints what came back for a person. */
#include "cli.h"
#include "client.h"
#include "conf.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  fl_addr_t admin;
  char token[256];                 /* from the config's admin.token_env (else read_token_env), or
                                      $FLEDGE_ADMIN_TOKEN */
  const char *window;              /* stats: 1m | 5m */
  const char *spec;                /* rollout start: JSON text or @FILE */
  const char *route;               /* history: only this route */
  bool json;
  bool follow;                     /* history: keep printing new events */
  long count;                      /* top: frames to show (0: until q) */
} cli_opts_t;

static const char common_help[] =
    "  -a, --admin ADDR    admin listener (default 127.0.0.1:9090)\n"
    "  -c, --config FILE   take the admin listener and token (admin.token_env) from this config\n"
    "      --json          print the API's JSON as it came\n"
    "Changes send the bearer token from the config's admin.token_env or $FLEDGE_ADMIN_TOKEN;\n"
    "without an admin token, reads send admin.read_token_env's.\n";

static int from_config(const char *path, cli_opts_t *o) {
  char err[512];
  fl_conf_t *c;
  if (fl_conf_load(path, &c, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  o->admin = c->admin_listen;
  if (c->admin_token) snprintf(o->token, sizeof o->token, "%s", c->admin_token);
  else if (c->read_token) snprintf(o->token, sizeof o->token, "%s", c->read_token);   /* enough to look */
  fl_conf_unref(c);
  return 0;
}

/* 0: run; 1: done (help printed); 2: usage error. Positional arguments stay at argv[optind..]. */
static int parse_opts(int argc, char **argv, const char *usage, cli_opts_t *o) {
  static const struct option opts[] = {
      {"admin", required_argument, NULL, 'a'}, {"config", required_argument, NULL, 'c'},
      {"window", required_argument, NULL, 'w'}, {"spec", required_argument, NULL, 's'},
      {"route", required_argument, NULL, 'r'}, {"json", no_argument, NULL, 'j'},
      {"follow", no_argument, NULL, 'f'},      {"count", required_argument, NULL, 'n'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  fl_addr_parse("127.0.0.1:9090", &o->admin);
  o->window = "1m";
  const char *env = getenv("FLEDGE_ADMIN_TOKEN");
  if (env) snprintf(o->token, sizeof o->token, "%s", env);
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "a:c:w:s:r:fn:h", opts, NULL)) != -1) {
    if (ch == 'a' && fl_addr_parse(optarg, &o->admin) != 0) {
      fprintf(stderr, "fledge: bad address \"%s\" (want HOST:PORT)\n", optarg);
      return 2;
    }
    if (ch == 'c' && from_config(optarg, o) != 0) return 2;
    if (ch == 'w') o->window = optarg;
    if (ch == 's') o->spec = optarg;
    if (ch == 'r') o->route = optarg;
    if (ch == 'j') o->json = true;
    if (ch == 'f') o->follow = true;
    if (ch == 'n' && (o->count = strtol(optarg, NULL, 10)) <= 0) {
      fprintf(stderr, "fledge: --count takes a positive number\n");
      return 2;
    }
    if (ch == 'h') {
      printf("%s%s", usage, common_help);
      return 1;
    }
    if (ch == '?') {
      fprintf(stderr, "%s%s", usage, common_help);
      return 2;
    }
  }
  return 0;
}

#define CLI_READ_TIMEOUT_MS 5000
#define CLI_CHANGE_TIMEOUT_MS 10000  /* a cluster's follower waits up to 5 s for its leader's answer
                                        (docs/cluster.md): the CLI waits longer, to print that answer */

/* Calls the API; on success returns the parsed JSON (caller decrefs), else prints why. */
static json_t *call(const cli_opts_t *o, const char *method, const char *path, const char *body, int *rc) {
  char err[512], *text = NULL;
  int status = 0;
  *rc = 1;
  int timeout_ms = strcmp(method, "GET") == 0 ? CLI_READ_TIMEOUT_MS : CLI_CHANGE_TIMEOUT_MS;
  if (fl_client_request(&o->admin, method, path, body, o->token[0] ? o->token : NULL, timeout_ms, &status, &text, err,
                        sizeof err) != 0) {
    fprintf(stderr, "fledge: %s\n", err);
    return NULL;
  }
  json_t *j = json_loads(text, 0, NULL);
  if (status != 200) {
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    fprintf(stderr, "fledge: %s %s: %d %s\n", method, path, status, msg ? msg : text);
    json_decref(j);
    j = NULL;
  } else if (!j) {
    fprintf(stderr, "fledge: %s %s: the answer is not JSON\n", method, path);
  } else {
    *rc = 0;
  }
  if (j && o->json) printf("%s\n", text);
  free(text);
  return j;
}

static double num(json_t *o, const char *a, const char *b) {
  json_t *v = json_object_get(o, a);
  if (b) v = json_object_get(v, b);
  return json_is_number(v) ? json_number_value(v) : 0.0;
}

static const char *str(json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? s : "-";
}

/* ---- stats ---- */

/* A variant's share of its route's traffic over the window, in percent (of all its requests when
 * the window saw none). */
static double observed_share(json_t *variants, json_t *v, const char *window) {
  double mine = 0, all = 0, mine_total = 0, all_total = 0;
  size_t k;
  json_t *x;
  json_array_foreach(variants, k, x) {
    double rps = num(json_object_get(json_object_get(x, "windows"), window), "rps", NULL);
    double requests = num(json_object_get(x, "totals"), "requests", NULL);
    all += rps, all_total += requests;
    if (x == v) mine = rps, mine_total = requests;
  }
  return all > 0 ? 100 * mine / all : all_total > 0 ? 100 * mine_total / all_total : 0;
}

static void print_stats_row(const char *route, double weight, json_t *variants, json_t *v, const char *window) {
  json_t *w = json_object_get(json_object_get(v, "windows"), window);
  json_t *totals = json_object_get(v, "totals");
  bool canary = strcmp(str(v, "variant"), "canary") == 0;
  printf("%-16s %-7s %-12s %7.2f %6.2f %9.2f %6.2f %9.1f %9.1f %9.1f %8.1f %6.0f %10.0f\n", route, str(v, "variant"),
         str(v, "version"), canary ? weight : 100 - weight, observed_share(variants, v, window), num(w, "rps", NULL),
         100 * num(w, "error_rate", NULL), num(w, "latency_ms", "p50"), num(w, "latency_ms", "p99"),
         num(w, "ttft_ms", "p50"), num(w, "tokens_per_s", NULL), num(totals, "in_flight", NULL),
         num(totals, "requests", NULL));
}

static void print_stats_table(json_t *root, const char *window) {
  printf("%-16s %-7s %-12s %7s %6s %9s %6s %9s %9s %9s %8s %6s %10s\n", "ROUTE", "VARIANT", "VERSION", "WEIGHT%",
         "SHARE%", "RPS", "ERR%", "P50_MS", "P99_MS", "TTFT_MS", "TOK/S", "ACTIVE", "REQUESTS");
  size_t i, k;
  json_t *r, *v;
  json_array_foreach(json_object_get(root, "routes"), i, r) {
    json_t *variants = json_object_get(r, "variants");
    json_array_foreach(variants, k, v) print_stats_row(str(r, "route"), num(r, "canary_weight", NULL), variants, v, window);
  }
  printf("(rates and percentiles over the last %s)\n", window);
}

int fl_cli_stats(int argc, char **argv) {
  cli_opts_t o = {0};
  int rc = parse_opts(argc, argv, "usage: fledge stats [-a ADDR | -c FILE] [-w 1m|5m] [--json]\n\n"
                                  "Requests per second, error rate, latency, time to first token and tokens per second\n"
                                  "of each route and variant of a running gateway.\n\n"
                                  "  -w, --window W      1m (default) or 5m\n", &o);
  if (rc) return rc == 1 ? 0 : rc;
  if (strcmp(o.window, "1m") != 0 && strcmp(o.window, "5m") != 0) {
    fprintf(stderr, "fledge stats: --window is 1m or 5m\n");
    return 2;
  }
  json_t *root = call(&o, "GET", "/api/v1/stats", NULL, &rc);
  if (root && !o.json) print_stats_table(root, o.window);
  json_decref(root);
  return rc;
}

/* ---- status ---- */

static void print_status_row(json_t *r) {
  json_t *ro = json_object_get(r, "rollout");
  json_t *win = json_object_get(ro, "windows");
  json_t *last = json_object_get(ro, "last_analysis");
  char step[16] = "-", windows[32] = "-";
  const char *state = str(ro, "state");
  bool ongoing = strcmp(state, "progressing") == 0 || strcmp(state, "paused") == 0;   /* ended: no step */
  if (ongoing && json_object_get(ro, "step") && num(ro, "step", NULL) >= 0)
    snprintf(step, sizeof step, "%.0f/%zu", num(ro, "step", NULL) + 1,
             json_array_size(json_object_get(json_object_get(ro, "spec"), "steps")));
  if (win) snprintf(windows, sizeof windows, "%.0f/%.0f/%.0f", num(win, "pass", NULL), num(win, "fail", NULL),
                    num(win, "inconclusive", NULL));
  printf("%-16s %7.2f %-10s %-10s %-12s %-6s %-14s %s\n", str(r, "name"), num(r, "canary_weight", NULL),
         str(json_object_get(r, "stable"), "version"), str(json_object_get(r, "canary"), "version"), str(ro, "state"),
         step, windows, last ? str(last, "verdict") : "-");
  const char *why = json_string_value(json_object_get(ro, "reason"));
  if (why) printf("%-16s paused because %s\n", "", why);
  const char *waits = json_string_value(json_object_get(last, "reason"));   /* an inconclusive window's */
  if (waits && strcmp(str(ro, "state"), "progressing") == 0) printf("%-16s waiting: %s\n", "", waits);
  json_t *promotion = json_object_get(ro, "promotion");
  if (promotion)
    printf("%-16s %s serves as stable, over %s in the config file: to make the file match, %s\n", "",
           str(promotion, "stable_version"), str(promotion, "previous_stable"), str(promotion, "to_match_the_file"));
}

static void print_status_table(json_t *root) {
  printf("%-16s %7s %-10s %-10s %-12s %-6s %-14s %s\n", "ROUTE", "WEIGHT%", "STABLE", "CANARY", "ROLLOUT", "STEP",
         "PASS/FAIL/INC", "LAST");
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(root, "routes"), i, r) print_status_row(r);
}

/* Each replica as its last heartbeat says: how long ago, how far it has applied the decision log,
 * its config hash and whether that differs from the leader's, and the weights it serves. */
static void print_replicas(const json_t *c) {
  printf("%-20s %-8s %-10s %-8s %-16s %-8s %s\n", "REPLICA", "ROLE", "HEARTBEAT", "LOG", "CONFIG HASH", "CONFIG",
         "WEIGHTS");
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(c, "replicas"), i, r) {
    char age[16], weights[200] = "";
    snprintf(age, sizeof age, "%.1fs ago", num(r, "heartbeat_age_ms", NULL) / 1000);
    const char *route;
    json_t *w;
    size_t len = 0;
    json_object_foreach(json_object_get(r, "weights"), route, w)
      if (len < sizeof weights)
        len += (size_t)snprintf(weights + len, sizeof weights - len, "%s%s %.2f%%", len ? ", " : "", route,
                                json_number_value(w));
    printf("%-20s %-8s %-10s %-8.0f %-16s %-8s %s\n", str(r, "replica"),
           json_is_true(json_object_get(r, "leader")) ? "leader" : "follower", age, num(r, "log_seq", NULL),
           str(r, "config_hash"), json_is_true(json_object_get(r, "config_differs")) ? "DIFFERS" : "same", weights);
  }
}

/* One line when the gateway is in a cluster (a 404 says it is not: nothing is printed), then its
 * replicas. */
static void print_cluster_line(const cli_opts_t *o) {
  char err[512], *text = NULL;
  int status = 0;
  if (fl_client_request(&o->admin, "GET", "/api/v1/cluster", NULL, o->token[0] ? o->token : NULL, CLI_READ_TIMEOUT_MS,
                        &status, &text, err, sizeof err) != 0 || status != 200) {
    free(text);
    return;
  }
  json_t *c = json_loads(text, 0, NULL), *leader = json_object_get(c, "leader"), *r;
  free(text);
  char differ[256] = "";
  size_t i, n_differ = 0, len = 0;
  json_array_foreach(json_object_get(c, "replicas"), i, r) {
    if (!json_is_true(json_object_get(r, "config_differs")) || len >= sizeof differ) continue;
    len += (size_t)snprintf(differ + len, sizeof differ - len, "%s%s", n_differ++ ? ", " : "", str(r, "replica"));
  }
  printf("\ncluster %s: replica %s (%s), leader %s epoch %.0f, redis %s, %zu replicas", str(c, "name"),
         str(c, "replica"), json_is_true(json_object_get(c, "leading")) ? "leader" : "follower",
         json_is_object(leader) ? str(leader, "replica") : "none", json_is_object(leader) ? num(leader, "epoch", NULL) : 0,
         json_is_true(json_object_get(c, "redis_up")) ? "up" : "DOWN", json_array_size(json_object_get(c, "replicas")));
  if (n_differ) printf(", config differs from the leader's on: %s", differ);
  printf("\n");
  print_replicas(c);
  json_decref(c);
}

int fl_cli_status(int argc, char **argv) {
  cli_opts_t o = {0};
  int rc = parse_opts(argc, argv, "usage: fledge status [-a ADDR | -c FILE] [--json]\n\n"
                                  "Each route's canary weight, versions and rollout: state, step, windows passed/failed/\n"
                                  "inconclusive and the last window's verdict; a paused rollout's reason below its row.\n"
                                  "In a cluster, then the leader and each replica: heartbeat, log position, config hash\n"
                                  "(and whether it differs from the leader's) and the weights it serves.\n\n",
                      &o);
  if (rc) return rc == 1 ? 0 : rc;
  json_t *root = call(&o, "GET", "/api/v1/routes", NULL, &rc);
  if (root && !o.json) print_status_table(root);
  if (root && !o.json) print_cluster_line(&o);
  json_decref(root);
  return rc;
}

/* ---- rollout ---- */

static char *spec_text(const char *spec) {
  if (!spec) return NULL;
  if (spec[0] != '@') return strdup(spec);
  json_error_t jerr;
  json_t *j = json_load_file(spec + 1, 0, &jerr);
  if (!j) {
    fprintf(stderr, "fledge rollout: %s:%d:%d: %s\n", spec + 1, jerr.line, jerr.column, jerr.text);
    return NULL;
  }
  char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return text;
}

/* fledge rollout weight ROUTE PERCENT: the admin API's weight, recorded with the source "cli". */
static int set_weight(const cli_opts_t *o, const char *route, const char *percent) {
  char *end, path[256], body[96];
  double pct = strtod(percent, &end);
  if (end == percent || *end || !(pct >= 0 && pct <= 100)) {
    fprintf(stderr, "fledge rollout weight: the weight is a percentage from 0 to 100, not \"%s\"\n", percent);
    return 2;
  }
  snprintf(path, sizeof path, "/api/v1/routes/%s/weight", route);
  snprintf(body, sizeof body, "{\"weight\": %.17g, \"source\": \"cli\"}", pct);
  int rc;
  json_t *r = call(o, "PUT", path, body, &rc);
  json_t *ro = json_object_get(r, "rollout");
  const char *why = json_string_value(json_object_get(ro, "reason"));
  if (r && !o->json)
    printf("%s: canary weight %.2f%%, rollout %s%s%s%s\n", route, num(r, "canary_weight", NULL), str(ro, "state"),
           why ? " (" : "", why ? why : "", why ? ")" : "");
  json_decref(r);
  return rc;
}

int fl_cli_rollout(int argc, char **argv) {
  static const char usage[] =
      "usage: fledge rollout start|pause|resume|promote|abort|undo ROUTE [-a ADDR | -c FILE] [--spec JSON|@FILE]\n"
      "       fledge rollout weight ROUTE PERCENT [-a ADDR | -c FILE]\n\n"
      "Starts a progressive rollout of ROUTE's canary, or steers the one in progress. --spec gives the\n"
      "rollout (steps, interval, min_requests, max_failures, confidence, checks) as JSON, inline or\n"
      "from a file; without it the defaults apply (docs/rollouts.md).\n"
      "weight sets ROUTE's canary weight by hand (0 to 100, two decimals at most); a rollout in\n"
      "progress is paused, and the change is recorded in the event log as made by \"cli\".\n\n"
      "  -s, --spec S        the rollout spec for start\n";
  cli_opts_t o = {0};
  int rc = parse_opts(argc, argv, usage, &o);
  if (rc) return rc == 1 ? 0 : rc;
  if (optind < argc && strcmp(argv[optind], "weight") == 0) {
    if (optind + 3 != argc) {
      fputs(usage, stderr);
      return 2;
    }
    return set_weight(&o, argv[optind + 1], argv[optind + 2]);
  }
  static const char *const actions[] = {"start", "pause", "resume", "promote", "abort", "undo"};
  const char *action = optind < argc ? argv[optind] : "", *route = optind + 1 < argc ? argv[optind + 1] : NULL;
  bool known = false;
  for (size_t i = 0; i < FL_ARRAY_LEN(actions); i++) known |= strcmp(action, actions[i]) == 0;
  if (!known || !route || optind + 2 != argc) {
    fputs(usage, stderr);
    return 2;
  }
  char path[256];
  bool start = strcmp(action, "start") == 0;
  snprintf(path, sizeof path, start ? "/api/v1/routes/%s/rollout" : "/api/v1/routes/%s/rollout/%s", route, action);
  char *body = start ? spec_text(o.spec) : NULL;
  if (start && o.spec && !body) return 2;
  json_t *r = call(&o, "POST", path, body, &rc);
  free(body);
  if (r && !o.json)
    printf("%s: rollout %s, canary weight %.2f%%\n", route, str(json_object_get(r, "rollout"), "state"),
           num(r, "canary_weight", NULL));
  json_decref(r);
  return rc;
}

/* ---- history ---- */

/* Whether the gateway is a replica of a cluster (its /api/v1/cluster answers). */
static bool in_cluster(const cli_opts_t *o) {
  char err[512], *text = NULL;
  int status = 0;
  bool yes = fl_client_request(&o->admin, "GET", "/api/v1/cluster", NULL, o->token[0] ? o->token : NULL,
                               CLI_READ_TIMEOUT_MS, &status, &text, err, sizeof err) == 0 && status == 200;
  free(text);
  return yes;
}

/* One event; in a cluster (replica), with the replica that made the decision ("-": none named,
 * such as events from before the cluster). */
static void print_event(json_t *e, bool replica) {
  char when[32];
  time_t secs = (time_t)(num(e, "time_ms", NULL) / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
  json_t *d = json_object_get(e, "detail");
  char change[48] = "";
  if (json_object_get(d, "to"))
    snprintf(change, sizeof change, "%.2f -> %.2f", num(d, "from", NULL), num(d, "to", NULL));
  const char *reason = json_string_value(json_object_get(d, "reason"));
  if (replica)
    printf("%s  %-12s %-12s %-8s %-16s %-16s %s\n", when, str(e, "route"), str(d, "replica"), str(e, "actor"),
           str(e, "kind"), change, reason ? reason : "");
  else
    printf("%s  %-12s %-8s %-16s %-16s %s\n", when, str(e, "route"), str(e, "actor"), str(e, "kind"), change,
           reason ? reason : "");
}

/* Prints the events after *after, a page at a time, oldest first; *after moves on. */
static int print_events_after(const cli_opts_t *o, long long *after, bool replica) {
  int rc;
  size_t got;
  do {
    char path[200];
    snprintf(path, sizeof path, "/api/v1/events?limit=1000&after=%lld%s%s", *after, o->route ? "&route=" : "",
             o->route ? o->route : "");
    json_t *root = call(o, "GET", path, NULL, &rc);
    json_t *events = json_object_get(root, "events");
    got = json_array_size(events);
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) {
      if (!o->json) print_event(e, replica);
      *after = (long long)num(e, "id", NULL);
    }
    json_decref(root);
  } while (rc == 0 && got == 1000);
  fflush(stdout);
  return rc;
}

int fl_cli_history(int argc, char **argv) {
  cli_opts_t o = {0};
  int rc = parse_opts(argc, argv, "usage: fledge history [-a ADDR | -c FILE] [--route ROUTE] [--follow] [--json]\n\n"
                                  "The event log: who or what changed which weight, when and why; in a cluster, also\n"
                                  "which replica (the leader of the moment) made each decision.\n\n"
                                  "  -r, --route ROUTE   only this route's events\n"
                                  "  -f, --follow        then print each new event as it comes (once a second) until stopped\n"
                                  "                      (with --json: each page of the API as it came)\n", &o);
  if (rc) return rc == 1 ? 0 : rc;
  bool replica = in_cluster(&o);
  if (!o.json && replica)
    printf("%-21s %-12s %-12s %-8s %-16s %-16s %s\n", "TIME (UTC)", "ROUTE", "REPLICA", "ACTOR", "EVENT", "WEIGHT%",
           "WHY");
  else if (!o.json)
    printf("%-21s %-12s %-8s %-16s %-16s %s\n", "TIME (UTC)", "ROUTE", "ACTOR", "EVENT", "WEIGHT%", "WHY");
  long long after = 0;
  rc = print_events_after(&o, &after, replica);
  while (o.follow && rc == 0) {
    sleep(1);
    rc = print_events_after(&o, &after, replica);
  }
  return rc;
}

/* ---- top ---- */

static struct termios saved_tty;
static bool tty_raw;
static volatile sig_atomic_t top_stop;

static void top_on_signal(int sig) { top_stop = 1; }

/* The terminal as it was: cooked, cursor shown, the main screen back. */
static void tty_restore(void) {
  if (!tty_raw) return;
  tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
  fputs("\033[?25h\033[?1049l", stdout);
  fflush(stdout);
  tty_raw = false;
}

/* Keys without Enter and no echo, on a screen of its own, so that the view leaves the terminal
 * as it found it. */
static void tty_enter(void) {
  struct termios raw;
  if (tcgetattr(STDIN_FILENO, &saved_tty) != 0) return;
  raw = saved_tty;
  raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
  raw.c_cc[VMIN] = 0;
  raw.c_cc[VTIME] = 0;
  tcsetattr(STDIN_FILENO, TCSANOW, &raw);
  tty_raw = true;
  atexit(tty_restore);
  fputs("\033[?1049h\033[?25l", stdout);
}

/* One frame: the routes and their rollouts, then each variant's numbers over the last minute. */
static int top_frame(const cli_opts_t *o, bool screen) {
  int rc;
  json_t *routes = call(o, "GET", "/api/v1/routes", NULL, &rc);
  json_t *stats = routes ? call(o, "GET", "/api/v1/stats", NULL, &rc) : NULL;
  char when[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  if (screen) fputs("\033[H\033[2J", stdout);
  printf("fledge top — %s — %s%s\n\n", o->admin.text, when, screen ? " — q quits" : "");
  if (routes && stats) {
    print_status_table(routes);
    printf("\n");
    print_stats_table(stats, "1m");
  } else {
    printf("the gateway at %s does not answer; trying again every second\n", o->admin.text);
  }
  if (!screen) printf("\n");
  fflush(stdout);
  json_decref(routes);
  json_decref(stats);
  return routes && stats ? 0 : 1;
}

/* Waits up to ms for a key: true when it is q (or a signal came). */
static bool wait_for_quit(int ms) {
  struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
  uint64_t until = fl_now_ms() + (uint64_t)ms;
  for (uint64_t now = fl_now_ms(); now < until && !top_stop; now = fl_now_ms()) {
    if (poll(&p, 1, (int)(until - now)) <= 0) continue;
    char c;
    if (read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q')) return true;
  }
  return top_stop;
}

int fl_cli_top(int argc, char **argv) {
  cli_opts_t o = {0};
  int rc = parse_opts(argc, argv, "usage: fledge top [-a ADDR | -c FILE] [--count N]\n\n"
                                  "A live view of a running gateway, refreshed every second: each route's weight and\n"
                                  "rollout (state, step, windows, what it waits for), and each variant's share, rate,\n"
                                  "errors, latency, time to first token and tokens/s. Full screen on a terminal (q\n"
                                  "quits); plain frames one after another otherwise.\n\n"
                                  "  -n, --count N       stop after N frames (default: until q or Ctrl-C)\n", &o);
  if (rc) return rc == 1 ? 0 : rc;
  bool screen = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  struct sigaction sa = {.sa_handler = top_on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  if (screen) tty_enter();
  for (long frame = 0; !top_stop && (o.count <= 0 || frame < o.count); frame++) {
    rc = top_frame(&o, screen);
    if (o.count > 0 && frame + 1 >= o.count) break;
    if (screen ? wait_for_quit(1000) : (sleep(1), top_stop)) break;
  }
  tty_restore();
  return rc;
}
