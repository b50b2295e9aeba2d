/* explain.c — fledge explain: a request described by options (headers, cookies, path, host,
 * client address, body) is put through the gateway's own router (router.c) against a config
 * file, and each step of the decision is printed: the route that fits, each rule and which of
 * its conditions hold, the user key and its bucket against the weight. Nothing is served; the
 * weight is the file's unless --weight gives the one in force. */
#include "explain.h"
#include "conf.h"
#include "geo.h"
#include "router.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_HEADERS 64

/* The request as the options describe it, and what routing reads of it. */
typedef struct explain_req {
  char *names[MAX_HEADERS];          /* lower-cased copies */
  const char *values[MAX_HEADERS];
  size_t n_headers;
  char cookies[4096];                /* --cookie pairs as one Cookie header */
  const char *path, *query, *host, *ip, *body;
  size_t path_len;
  char *body_file;                   /* --body @FILE, read */
  double weight;                     /* --weight; < 0: the file's */
  char country[3];                   /* "" when unknown */
  const char *country_from;          /* where it came from, for the explanation */
  struct sockaddr_storage peer;
  bool trusted;
} explain_req_t;

static const char usage[] =
    "usage: fledge explain -c FILE [--path P] [--host H] [--header NAME=VALUE ...] [--cookie NAME=VALUE ...]\n"
    "                      [--ip A] [--country CC] [--body JSON|@FILE] [--weight N]\n\n"
    "Says which route, rule or sticky bucket would send this request to which version, and why,\n"
    "using the gateway's own router on FILE; nothing needs to run.\n\n"
    "  -c, --config FILE     the YAML config\n"
    "  -p, --path P          the request's path, with its query if any (default /)\n"
    "      --host H          the Host header (default: the one given with --header, else none)\n"
    "  -H, --header N=V      a request header (also \"N: V\"); repeat for more\n"
    "      --cookie N=V      a cookie; repeat for more\n"
    "      --ip A            the client's address (default 127.0.0.1)\n"
    "      --country CC      the client's country for country rules (default: geoip of the config)\n"
    "      --body B          the request body, for json: user keys (@FILE reads a file)\n"
    "      --weight N        the canary weight in force, when not the file's (see fledge status)\n";

/* ---- the request's readers, as router.h wants them ---- */

static const char *req_header(void *ctx, const char *lname, size_t *len) {
  const explain_req_t *q = ctx;
  if (strcmp(lname, "cookie") == 0 && q->cookies[0]) {
    *len = strlen(q->cookies);
    return q->cookies;
  }
  if (strcmp(lname, "host") == 0 && q->host) {
    *len = strlen(q->host);
    return q->host;
  }
  for (size_t i = 0; i < q->n_headers; i++)
    if (strcmp(q->names[i], lname) == 0) {
      *len = strlen(q->values[i]);
      return q->values[i];
    }
  return NULL;
}

static const char *req_country(void *ctx) {
  const explain_req_t *q = ctx;
  return q->country[0] ? q->country : NULL;
}

/* ---- options ---- */

static int add_header(explain_req_t *q, const char *arg) {
  const char *sep = strpbrk(arg, "=:");
  if (!sep || sep == arg || q->n_headers == MAX_HEADERS) {
    fprintf(stderr, "fledge explain: --header wants NAME=VALUE, not \"%s\"\n", arg);
    return 2;
  }
  char *name = strndup(arg, (size_t)(sep - arg));
  if (!name) return 1;
  for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
  const char *value = sep + 1;
  while (*sep == ':' && *value == ' ') value++;
  q->names[q->n_headers] = name;
  q->values[q->n_headers++] = value;
  return 0;
}

static int add_cookie(explain_req_t *q, const char *arg) {
  size_t used = strlen(q->cookies);
  if (!strchr(arg, '=') ||
      snprintf(q->cookies + used, sizeof q->cookies - used, "%s%s", used ? "; " : "", arg) >= (int)(sizeof q->cookies - used)) {
    fprintf(stderr, "fledge explain: --cookie wants NAME=VALUE, not \"%s\"\n", arg);
    return 2;
  }
  return 0;
}

static int read_body(explain_req_t *q, const char *arg) {
  if (arg[0] != '@') {
    q->body = arg;
    return 0;
  }
  FILE *f = fopen(arg + 1, "rb");
  size_t cap = 1 << 20, len = 0;
  q->body_file = f ? malloc(cap + 1) : NULL;
  if (q->body_file) len = fread(q->body_file, 1, cap, f);
  if (f) fclose(f);
  if (!q->body_file) {
    fprintf(stderr, "fledge explain: --body %s: cannot read it\n", arg);
    return 2;
  }
  q->body_file[len] = '\0';
  q->body = q->body_file;
  return 0;
}

static int set_ip(explain_req_t *q, const char *ip) {
  struct sockaddr_in *v4 = (struct sockaddr_in *)&q->peer;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&q->peer;
  q->ip = ip;
  if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) v4->sin_family = AF_INET;
  else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) v6->sin6_family = AF_INET6;
  else {
    fprintf(stderr, "fledge explain: --ip wants a numeric address, not \"%s\"\n", ip);
    return 2;
  }
  return 0;
}

static int set_weight(explain_req_t *q, const char *arg) {
  char *end;
  q->weight = strtod(arg, &end);
  if (end == arg || *end || !(q->weight >= 0 && q->weight <= 100)) {
    fprintf(stderr, "fledge explain: --weight is a percentage from 0 to 100, not \"%s\"\n", arg);
    return 2;
  }
  return 0;
}

static int set_country(explain_req_t *q, const char *cc) {
  if (strlen(cc) != 2) {
    fprintf(stderr, "fledge explain: --country wants a two-letter ISO code, not \"%s\"\n", cc);
    return 2;
  }
  for (int i = 0; i < 2; i++) q->country[i] = (char)toupper((unsigned char)cc[i]);
  q->country_from = "--country";
  return 0;
}

/* 0: explain; -1: help printed; else the exit status. */
static int parse_opts(int argc, char **argv, explain_req_t *q, const char **conf_path) {
  enum { O_HOST = 256, O_COOKIE, O_IP, O_COUNTRY, O_BODY, O_WEIGHT };
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'}, {"path", required_argument, NULL, 'p'},
      {"header", required_argument, NULL, 'H'}, {"host", required_argument, NULL, O_HOST},
      {"cookie", required_argument, NULL, O_COOKIE}, {"ip", required_argument, NULL, O_IP},
      {"country", required_argument, NULL, O_COUNTRY}, {"body", required_argument, NULL, O_BODY},
      {"weight", required_argument, NULL, O_WEIGHT}, {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int ch, rc = 0;
  optind = 1;
  while (rc == 0 && (ch = getopt_long(argc, argv, "c:p:H:h", opts, NULL)) != -1) {
    if (ch == 'c') *conf_path = optarg;
    else if (ch == 'p') q->path = optarg;
    else if (ch == 'H') rc = add_header(q, optarg);
    else if (ch == O_HOST) q->host = optarg;
    else if (ch == O_COOKIE) rc = add_cookie(q, optarg);
    else if (ch == O_IP) rc = set_ip(q, optarg);
    else if (ch == O_COUNTRY) rc = set_country(q, optarg);
    else if (ch == O_BODY) rc = read_body(q, optarg);
    else if (ch == O_WEIGHT) rc = set_weight(q, optarg);
    else if (ch == 'h') {
      fputs(usage, stdout);
      return -1;
    } else {
      fputs(usage, stderr);
      return 2;
    }
  }
  if (rc == 0 && (!*conf_path || optind < argc)) {
    fputs(usage, stderr);
    rc = 2;
  }
  return rc;
}

/* ---- words for what the config says ---- */

static void print_cidr(const fl_cidr_t *c) {
  char text[INET6_ADDRSTRLEN];
  inet_ntop(c->family, c->bytes, text, sizeof text);
  printf("%s/%u", text, c->prefix);
}

static void print_list(char *const *values, size_t n) {
  for (size_t i = 0; i < n; i++) printf("%s%s", i ? ", " : "", values[i]);
}

static void print_cond(const fl_cond_t *c, const fl_route_t *r) {
  switch (c->kind) {
  case FL_COND_HEADER: printf("header %s is \"%s\"", c->name, c->value); break;
  case FL_COND_HEADER_REGEX: printf("header %s matches /%s/", c->name, c->value); break;
  case FL_COND_COOKIE: printf("cookie %s is \"%s\"", c->name, c->value); break;
  case FL_COND_QUERY: printf("query %s is \"%s\"", c->name, c->value); break;
  case FL_COND_CIDR:
    printf("client address in ");
    for (size_t i = 0; i < c->n_cidrs; i++) {
      if (i) printf(", ");
      print_cidr(&c->cidrs[i]);
    }
    break;
  case FL_COND_COUNTRY:
    printf("country in ");
    print_list(c->values, c->n_values);
    break;
  case FL_COND_SEGMENT:
    printf("segment (%s) in ", r->segment_header);
    print_list(c->values, c->n_values);
    break;
  }
}

static void print_key_source(const fl_key_source_t *k) {
  static const char *const kinds[] = {"header", "cookie", "query", "json"};
  if (k->kind == FL_KEY_IP) printf("ip");
  else printf("%s:%s", kinds[k->kind], k->name);
}

static void print_key_sources(const fl_route_t *r) {
  for (size_t i = 0; i < r->n_user_key; i++) {
    if (i) printf(", ");
    print_key_source(&r->user_key[i]);
  }
}

static void print_variant(const fl_route_t *r, fl_variant_id_t id) {
  const fl_variant_conf_t *v = &r->variant[id];
  printf("%s (version %s; backends ", fl_variant_name(id), v->version);
  for (size_t i = 0; i < v->n_backends; i++) printf("%s%s", i ? ", " : "", v->backends[i].text);
  if (v->model) printf("; model rewritten to %s", v->model);
  printf(")");
}

/* ---- the steps of a decision ---- */

/* Each rule up to the one that decided (all of them when none did), each condition with
 * whether it holds: a rule fits when all of its conditions do. */
static void explain_rules(const fl_route_t *r, const fl_req_view_t *v, const fl_decision_t *d) {
  size_t last = d->why == FL_WHY_RULE ? d->rule_index + 1 : r->n_rules;
  for (size_t i = 0; i < last; i++) {
    const fl_rule_t *rule = &r->rules[i];
    printf(i ? "          " : "rules     ");
    printf("rule %zu (line %u) to %s: ", i + 1, rule->line, fl_variant_name(rule->variant));
    for (size_t k = 0; k < rule->n_conds; k++) {
      fl_rule_t one = {.conds = &rule->conds[k], .n_conds = 1, .variant = rule->variant};
      if (k) printf(" and ");
      print_cond(&rule->conds[k], r);
      printf(fl_router_rule_fits(&one, r, v) ? " (yes)" : " (no)");
    }
    printf(fl_router_rule_fits(rule, r, v) ? ": fits\n" : ": does not fit\n");
  }
}

static void explain_bucket(const fl_route_t *r, const fl_req_view_t *v, const fl_decision_t *d) {
  char key[256];
  size_t len = 0, source = 0;
  uint32_t weight = r->canary_weight_bp;
  if (fl_router_user_key(r, v, key, sizeof key, &len, &source) == 0) {
    printf("user key  ");
    print_key_source(&r->user_key[source]);
    printf(" = \"%.*s\" (the first of ", (int)len, key);
    print_key_sources(r);
    printf(" that the request has)\n");
    printf("bucket    %u of %u: the hash of salt \"%s\" and the key; the canary takes ", d->bucket, FL_BUCKETS, r->salt);
    if (weight == 0) printf("none of them");
    else printf("buckets 0 to %u", weight - 1);
    printf(" (weight %.2f%%)\n", weight / 100.0);
    printf("decision  ");
    print_variant(r, d->variant);
    printf(", by the sticky bucket: %u is %s %u\n", d->bucket, d->variant == FL_CANARY ? "below" : "not below", weight);
    return;
  }
  printf("user key  none: the request has none of ");
  if (r->n_user_key) print_key_sources(r);
  else printf("them (the route has no user_key)");
  printf("\ndecision  canary with %.2f%%, stable with %.2f%%, drawn for each request (no key to stick to)\n",
         weight / 100.0, 100 - weight / 100.0);
  for (int id = FL_CANARY; id >= FL_STABLE; id--) {
    printf("          ");
    print_variant(r, (fl_variant_id_t)id);
    printf("\n");
  }
}

static void explain_route(const fl_route_t *r, const explain_req_t *q, const fl_req_view_t *v) {
  fl_decision_t d;
  printf("route     %s: path_prefix \"%s\", %s%s (the longest prefix that fits)\n", r->name, r->path_prefix,
         r->host ? "host " : "any host", r->host ? r->host : "");
  fl_router_decide(r, v, 0, &d);
  size_t len;
  if (d.why == FL_WHY_NO_CANARY) {
    printf("decision  ");
    print_variant(r, FL_STABLE);
    printf(": the route has no canary\n");
    return;
  }
  if (req_header((void *)q, "x-fledge-variant", &len) && d.why != FL_WHY_OVERRIDE) {
    if (q->trusted) printf("override  x-fledge-variant is neither stable nor canary: not taken\n");
    else printf("override  x-fledge-variant is not believed: %s is not in override_from\n", q->ip);
  }
  if (d.why == FL_WHY_OVERRIDE) {
    printf("decision  ");
    print_variant(r, d.variant);
    printf(", by x-fledge-variant from a trusted client (%s is in override_from)\n", q->ip);
    return;
  }
  explain_rules(r, v, &d);
  if (d.why == FL_WHY_RULE) {
    printf("decision  ");
    print_variant(r, d.variant);
    printf(", by rule %zu (line %u)\n", d.rule_index + 1, r->rules[d.rule_index].line);
    return;
  }
  explain_bucket(r, v, &d);
  printf("          (the weight is %s; a running gateway's may differ: fledge status, and --weight N here)\n",
         q->weight >= 0 ? "--weight's" : "the file's");
}

/* The client's country as the gateway finds it: a trusted edge's header, else the database. */
static void find_country(const fl_conf_t *c, explain_req_t *q) {
  size_t len = 0;
  const char *h = c->geoip_header && q->trusted ? req_header(q, c->geoip_header, &len) : NULL;
  if (q->country[0]) return;
  if (h && len == 2) {
    for (int i = 0; i < 2; i++) q->country[i] = (char)toupper((unsigned char)h[i]);
    q->country_from = c->geoip_header;
    return;
  }
  char err[300];
  fl_geo_t *geo = NULL;
  if (!c->geoip_mmdb) return;
  if (fl_geo_open(c->geoip_mmdb, &geo, err, sizeof err) != 0) {
    fprintf(stderr, "fledge explain: %s (country unknown)\n", err);
    return;
  }
  if (fl_geo_country(geo, (const struct sockaddr *)&q->peer, q->country)) q->country_from = c->geoip_mmdb;
  fl_geo_close(geo);
}

static void explain(fl_conf_t *c, explain_req_t *q) {
  const char *qm = strchr(q->path, '?');
  q->path_len = qm ? (size_t)(qm - q->path) : strlen(q->path);
  q->query = qm ? qm + 1 : "";
  q->trusted = fl_cidr_any(c->override_from, c->n_override_from, (const struct sockaddr *)&q->peer);
  find_country(c, q);
  size_t host_len = 0;
  const char *host = req_header(q, "host", &host_len);
  const char *colon = host ? memchr(host, ':', host_len) : NULL;   /* routes match the host without port */
  if (colon && host[0] != '[') host_len = (size_t)(colon - host);
  printf("request   path %.*s%s%s, host %.*s, client %s (%s), country %s%s%s%s\n", (int)q->path_len, q->path,
         *q->query ? "?" : "", q->query, host ? (int)host_len : 6, host ? host : "(none)", q->ip,
         q->trusted ? "in override_from" : "not in override_from", q->country[0] ? q->country : "unknown",
         q->country[0] ? " (from " : "", q->country[0] ? q->country_from : "", q->country[0] ? ")" : "");
  const fl_route_t *r = fl_router_match(c, host ? host : "", host ? host_len : 0, q->path, q->path_len);
  if (!r) {
    printf("route     none fits: the gateway answers 404\n");
    return;
  }
  if (q->weight >= 0) ((fl_route_t *)r)->canary_weight_bp = (uint32_t)(q->weight * 100 + 0.5);
  fl_req_view_t v = {.path = q->path, .path_len = q->path_len, .query = q->query, .query_len = strlen(q->query),
                     .peer = (const struct sockaddr *)&q->peer, .trusted = q->trusted, .worker = 0,
                     .body = q->body, .body_len = q->body ? strlen(q->body) : 0, .body_complete = q->body != NULL,
                     .has_body = q->body != NULL, .header = req_header, .country = req_country, .ctx = q};
  explain_route(r, q, &v);
}

int fl_explain_main(int argc, char **argv) {
  explain_req_t q = {.path = "/", .weight = -1};
  const char *conf_path = NULL;
  int rc = set_ip(&q, "127.0.0.1");
  if (rc == 0) rc = parse_opts(argc, argv, &q, &conf_path);
  fl_conf_t *c = NULL;
  char err[512];
  if (rc == 0 && fl_conf_load(conf_path, &c, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    rc = 1;
  }
  if (rc == 0) explain(c, &q);
  if (c) fl_conf_unref(c);
  for (size_t i = 0; i < q.n_headers; i++) free(q.names[i]);
  free(q.body_file);
  return rc < 0 ? 0 : rc;
}
