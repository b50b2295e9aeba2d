/* conf.c — turns a YAML file into a validated, immutable fl_conf_t snapshot.
 * libyaml's document API gives a node tree with positions, so every check below
 * can name the key or value at fault as FILE:LINE:COL and a person can fix it in place. */
#include "conf_int.h"
#include "spec.h"
#include "geo.h"
#include "fetch.h"
#include "sha256.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <yaml.h>

/* override_from, or its old name trusted_cidrs: one of the two. */
static int f_override(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  if (p->override_set) return cy_fail(p, v, "trusted_cidrs is the old name of override_from: give one of them");
  p->override_set = true;
  return cy_get_cidrs(p, v, &c->override_from, &c->n_override_from);
}

static int f_trusted_proxies(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  return cy_get_cidrs(p, v, &c->trusted_proxies, &c->n_trusted_proxies);
}

static unsigned online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > FL_MAX_WORKERS ? FL_MAX_WORKERS : (unsigned)n;
}

static atomic_uint pinned_workers;      /* 0 until the server runs */

void fl_conf_pin_workers(unsigned n) { atomic_store(&pinned_workers, n); }

/* Read before everything else: header_regex compiles one copy per worker. */
static int parse_workers(parse_ctx_t *p, yaml_node_t *root) {
  yaml_node_t *n = cy_map_get(p, root, "workers");
  uint64_t v;
  unsigned pinned = atomic_load(&pinned_workers);
  p->conf->workers_wanted = online_cpus();
  p->conf->workers = pinned ? pinned : p->conf->workers_wanted;
  if (!n) return 0;
  p->key = "workers";
  int rc = cy_want_scalar(p, n);
  if (rc || strcmp(cy_scalar(n), "auto") == 0) return rc;
  if (!cy_parse_u64(cy_scalar(n), &v) || v < 1 || v > FL_MAX_WORKERS)
    return cy_fail(p, n, "workers must be auto or an integer from 1 to %d, not \"%s\"", FL_MAX_WORKERS, cy_scalar(n));
  p->conf->workers_wanted = (unsigned)v;
  p->conf->workers = pinned ? pinned : p->conf->workers_wanted;
  return 0;
}

/* ---------- rules ---------- */

static int push_cond(parse_ctx_t *p, fl_rule_t *rule, fl_cond_kind_t kind, fl_cond_t **out) {
  fl_cond_t *conds = realloc(rule->conds, (rule->n_conds + 1) * sizeof *conds);
  if (!conds) return cy_nomem(p);
  rule->conds = conds;
  *out = &conds[rule->n_conds++];
  memset(*out, 0, sizeof **out);
  (*out)->kind = kind;
  return 0;
}

/* glibc's regcomp copies the pattern's tree for every repetition, so stacked or counted ones
 * ("a+++++", "(a{100}){100}") grow it exponentially: a pattern could take gigabytes (the conf
 * fuzz target found one). */
const char *fl_regex_too_costly(const char *re) {
  size_t len = strlen(re);
  unsigned repetitions = 0;
  bool after_quantifier = false, in_bracket = false;
  if (len > 512) return "longer than 512 bytes";
  for (size_t i = 0; i < len; i++) {
    char ch = re[i];
    if (in_bracket) {
      in_bracket = ch != ']' || (i > 0 && re[i - 1] == '[');
      continue;
    }
    bool quantifier = ch == '*' || ch == '+' || ch == '?' || ch == '{';
    if (quantifier && after_quantifier) return "a repetition of a repetition";
    if (ch == '{') {
      char *end;
      unsigned long a = strtoul(re + i + 1, &end, 10), b = *end == ',' ? strtoul(end + 1, &end, 10) : a;
      if (a > 100 || b > 100) return "a count over 100";
      i = (size_t)(strchr(re + i, '}') ? strchr(re + i, '}') - re : (ptrdiff_t)len - 1);
    }
    if (ch == '\\' && i + 1 < len) i++;
    if (ch == '[') in_bracket = true;
    repetitions += quantifier && ch != '?';
    after_quantifier = quantifier;
  }
  return repetitions > 16 ? "more than 16 repetitions" : NULL;
}

static int check_regex_cost(parse_ctx_t *p, yaml_node_t *n, const char *re) {
  const char *why = fl_regex_too_costly(re);
  return why ? cy_fail(p, n, "regex \"%.80s\" is too costly to compile: %s", re, why) : 0;
}

/* glibc's regexec takes a lock inside a shared regex_t, so each worker gets its own copy. */
static int compile_regex(parse_ctx_t *p, yaml_node_t *n, fl_cond_t *c) {
  unsigned workers = p->conf->workers;
  if (check_regex_cost(p, n, c->value)) return FL_EINVAL;
  regex_t *rx = calloc(workers, sizeof *rx);
  if (!rx) return cy_nomem(p);
  for (unsigned i = 0; i < workers; i++) {
    int rc = regcomp(&rx[i], c->value, REG_EXTENDED | REG_NOSUB);
    if (rc == 0) continue;
    char msg[128];
    regerror(rc, &rx[i], msg, sizeof msg);
    while (i--) regfree(&rx[i]);
    free(rx);
    return cy_fail(p, n, "bad regex \"%s\": %s", c->value, msg);
  }
  c->regex = rx;
  return 0;
}

/* header/header_regex/cookie/query: { NAME: VALUE, ... }, one condition per pair. */
static int parse_pairs(parse_ctx_t *p, yaml_node_t *map, fl_rule_t *rule, fl_cond_kind_t kind) {
  const char *what = p->key;
  bool is_header = (kind == FL_COND_HEADER || kind == FL_COND_HEADER_REGEX);
  int rc = cy_want_mapping(p, map, what);
  if (rc == 0) rc = cy_check_keys(p, map, what);
  if (rc == 0 && cy_map_len(map) == 0) rc = cy_fail(p, map, "%s must name at least one %s", what, is_header ? "header" : what);
  for (size_t i = 0; rc == 0 && i < cy_map_len(map); i++) {
    yaml_node_t *k = cy_pair_key(p, map, i), *v = cy_pair_value(p, map, i);
    fl_cond_t *c;
    if ((rc = push_cond(p, rule, kind, &c)) != 0) break;
    rc = is_header ? cy_get_header_name(p, k, &c->name) : cy_get_str(p, k, &c->name);
    if (rc == 0) rc = cy_get_str(p, v, &c->value);
    if (rc == 0 && kind == FL_COND_HEADER_REGEX) rc = compile_regex(p, v, c);
  }
  return rc;
}

static int f_cond_header(parse_ctx_t *p, yaml_node_t *v, void *rule) { return parse_pairs(p, v, rule, FL_COND_HEADER); }
static int f_cond_regex(parse_ctx_t *p, yaml_node_t *v, void *rule) { return parse_pairs(p, v, rule, FL_COND_HEADER_REGEX); }
static int f_cond_cookie(parse_ctx_t *p, yaml_node_t *v, void *rule) { return parse_pairs(p, v, rule, FL_COND_COOKIE); }
static int f_cond_query(parse_ctx_t *p, yaml_node_t *v, void *rule) { return parse_pairs(p, v, rule, FL_COND_QUERY); }

static int f_cond_cidr(parse_ctx_t *p, yaml_node_t *v, void *rule) {
  fl_cond_t *c = NULL;
  int rc = push_cond(p, rule, FL_COND_CIDR, &c);
  if (rc == 0) rc = cy_get_cidrs(p, v, &c->cidrs, &c->n_cidrs);
  if (rc == 0 && c->n_cidrs == 0) rc = cy_fail(p, v, "cidr must list at least one block");
  return rc;
}

static int check_country(parse_ctx_t *p, yaml_node_t *n, char *value) {
  if (strlen(value) != 2 || !isalpha((unsigned char)value[0]) || !isalpha((unsigned char)value[1]))
    return cy_fail(p, n, "bad country code \"%s\" (expected two letters, e.g. DE)", value);
  value[0] = (char)toupper((unsigned char)value[0]);
  value[1] = (char)toupper((unsigned char)value[1]);
  return 0;
}

static int f_cond_country(parse_ctx_t *p, yaml_node_t *v, void *rule) {
  fl_cond_t *c = NULL;
  int rc = push_cond(p, rule, FL_COND_COUNTRY, &c);
  return rc ? rc : cy_get_str_list(p, v, &c->values, &c->n_values, check_country);
}

static int f_cond_segment(parse_ctx_t *p, yaml_node_t *v, void *rule) {
  fl_cond_t *c = NULL;
  int rc = push_cond(p, rule, FL_COND_SEGMENT, &c);
  return rc ? rc : cy_get_str_list(p, v, &c->values, &c->n_values, NULL);
}

static const field_t cond_fields[] = {
  {"header", f_cond_header, 0, NULL},   {"header_regex", f_cond_regex, 0, NULL},
  {"cookie", f_cond_cookie, 0, NULL},   {"query", f_cond_query, 0, NULL},
  {"cidr", f_cond_cidr, 0, NULL},       {"country", f_cond_country, 0, NULL},
  {"segment", f_cond_segment, 0, NULL},
};
static const section_t cond_section = {"rule match", "rule condition", cond_fields, FL_ARRAY_LEN(cond_fields)};

static int f_rule_match(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_rule_t *rule = slot;
  int rc = cy_walk(p, v, &cond_section, rule);
  if (rc == 0 && rule->n_conds == 0) rc = cy_fail(p, v, "rule match needs at least one condition");
  return rc;
}

static int f_rule_variant(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_rule_t *rule = slot;
  int rc = cy_want_scalar(p, v);
  if (rc) return rc;
  if (strcmp(cy_scalar(v), "stable") == 0) {
    rule->variant = FL_STABLE;
  } else if (strcmp(cy_scalar(v), "canary") == 0) {
    rule->variant = FL_CANARY;
    if (!p->canary_rule_node) p->canary_rule_node = v;
  } else {
    return cy_fail(p, v, "variant must be stable or canary, not \"%s\"", cy_scalar(v));
  }
  return 0;
}

static const field_t rule_fields[] = {
  {"match", f_rule_match, 0, NULL},
  {"variant", f_rule_variant, 0, NULL},
};
static const section_t rule_section = {"rule", NULL, rule_fields, FL_ARRAY_LEN(rule_fields)};

static int parse_rule(parse_ctx_t *p, yaml_node_t *map, fl_rule_t *rule) {
  int rc = cy_walk(p, map, &rule_section, rule);
  if (rc) return rc;
  if (!cy_map_get(p, map, "match")) return cy_fail(p, map, "rule needs a match");
  if (!cy_map_get(p, map, "variant")) return cy_fail(p, map, "rule needs a variant (stable or canary)");
  rule->line = (unsigned)map->start_mark.line + 1;
  return 0;
}

static int f_rules(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_route_t *r = slot;
  int rc = cy_want_list(p, v, "rules");
  if (rc == 0) rc = cy_alloc_items(p, cy_list_len(v), sizeof *r->rules, (void **)&r->rules);
  if (rc) return rc;
  r->n_rules = cy_list_len(v);
  for (size_t i = 0; i < r->n_rules && rc == 0; i++) rc = parse_rule(p, cy_list_item(p, v, i), &r->rules[i]);
  return rc;
}

/* ---------- routes ---------- */

/* A backends: entry that is a host name and port: kept as written for the resolver. */
static int add_backend_name(parse_ctx_t *p, yaml_node_t *n, fl_variant_conf_t *v, const char *host, uint16_t port) {
  fl_backend_name_t *nm = &v->names[v->n_names];
  char text[300];
  snprintf(text, sizeof text, "%s:%u", host, port);
  int rc = cy_dup_into(p, host, &nm->host);
  if (rc == 0) rc = cy_dup_into(p, text, &nm->text);
  if (rc) return rc;
  v->n_names++;
  cy_lower(nm->host);
  cy_lower(nm->text);
  nm->port = port;
  nm->line = (unsigned)n->start_mark.line + 1;
  nm->column = (unsigned)n->start_mark.column + 1;
  for (size_t j = 0; j + 1 < v->n_names; j++)
    if (strcmp(v->names[j].text, nm->text) == 0) return cy_fail(p, n, "backend %s is listed twice", nm->text);
  return 0;
}

/* A backend's scheme: "https://" (TLS) or "http://" before HOST[:PORT], whose port then defaults
 * to 443 or 80 (a final "/" is allowed, no other path); none is plain HTTP, HOST:PORT. Every
 * backend of a version has the same. The rest, with its port, goes to out. */
static int backend_scheme(parse_ctx_t *p, yaml_node_t *n, fl_variant_conf_t *v, char *out, size_t cap) {
  const char *text = cy_scalar(n), *rest = text;
  bool https = strncmp(text, "https://", 8) == 0, url = https || strncmp(text, "http://", 7) == 0;
  if (url) rest = text + (https ? 8 : 7);
  size_t len = strcspn(rest, "/");
  if (rest[len] && strcmp(rest + len, "/") != 0)
    return cy_fail(p, n, "backend \"%s\": a backend is an address, without a path", text);
  const char *close = memchr(rest, ']', len), *colon = memchr(close ? close : rest, ':', len - (size_t)(close ? close - rest : 0));
  bool has_port = colon != NULL;
  if ((size_t)snprintf(out, cap, "%.*s%s", (int)len, rest, url && !has_port ? (https ? ":443" : ":80") : "") >= cap)
    return cy_fail(p, n, "backend \"%s\" is too long", text);
  if (v->n_backends + v->n_names > 0 && v->https != https)
    return cy_fail(p, n, "backend %s: the backends of one version are all https:// or all plain", text);
  v->https = https;
  return 0;
}

/* An address is one backend; a host name stands for all its addresses (resolver.h). */
static int parse_backend(parse_ctx_t *p, yaml_node_t *n, fl_variant_conf_t *v) {
  char host[256], text[300];
  uint16_t port;
  int rc = cy_want_scalar(p, n);
  if (rc == 0) rc = backend_scheme(p, n, v, text, sizeof text);
  if (rc) return rc;
  fl_addr_t *addr = &v->backends[v->n_backends];
  if (fl_addr_parse(text, addr) == 0) {
    for (size_t j = 0; j < v->n_backends; j++)        /* one address, one set of series and health */
      if (strcmp(v->backends[j].text, addr->text) == 0) return cy_fail(p, n, "backend %s is listed twice", addr->text);
    v->n_backends++;
    return 0;
  }
  if (fl_hostport_split(text, host, sizeof host, &port) == 0 && text[0] != '[' && fl_host_is_name(host))
    return add_backend_name(p, n, v, host, port);
  return cy_fail(p, n, "bad address \"%s\" (expected HOST:PORT: an address such as 127.0.0.1:8080 or [::1]:8080, "
                 "or a host name such as vllm.default.svc.cluster.local:8000, or https://HOST[:PORT])", cy_scalar(n));
}

static int f_backends(parse_ctx_t *p, yaml_node_t *n, void *slot) {
  fl_variant_conf_t *v = slot;
  int rc = cy_want_list(p, n, "backends");
  if (rc == 0 && cy_list_len(n) == 0) rc = cy_fail(p, n, "backends must list at least one address");
  if (rc == 0) rc = cy_alloc_items(p, cy_list_len(n), sizeof *v->backends, (void **)&v->backends);
  if (rc == 0) rc = cy_alloc_items(p, cy_list_len(n), sizeof *v->names, (void **)&v->names);
  for (size_t i = 0; i < cy_list_len(n) && rc == 0; i++) rc = parse_backend(p, cy_list_item(p, n, i), v);
  return rc;
}

/* resolve: lazy | {interval: 30s, lazy: true}; what a level leaves out it takes from the one above. */
static int f_resolve_lazy(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_resolve_conf_t *rc = slot;
  rc->lazy_set = true;
  return cy_f_bool(p, v, &rc->lazy);
}

static int f_resolve_interval(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = cy_f_duration(p, v, slot);
  uint32_t ms = *(uint32_t *)slot;
  if (rc == 0 && (ms < 1000 || ms > 86400000)) rc = cy_fail(p, v, "resolve.interval must be from 1s to 24h");
  return rc;
}

static const field_t resolve_fields[] = {
  {"interval", f_resolve_interval, offsetof(fl_resolve_conf_t, interval_ms), NULL},
  {"lazy", f_resolve_lazy, 0, NULL},
};
static const section_t resolve_section = {"resolve", NULL, resolve_fields, FL_ARRAY_LEN(resolve_fields)};

static int f_resolve(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_resolve_conf_t *r = slot;
  if (v->type != YAML_SCALAR_NODE) return cy_walk(p, v, &resolve_section, r);
  if (strcmp(cy_scalar(v), "lazy") != 0)
    return cy_fail(p, v, "resolve must be lazy or a mapping {interval: 30s, lazy: true}, not \"%s\"", cy_scalar(v));
  r->lazy = r->lazy_set = true;
  return 0;
}

/* Each level takes from the one above what it did not say (called once the file is read). */
static void inherit_resolve(fl_resolve_conf_t *r, const fl_resolve_conf_t *above) {
  if (!r->interval_ms) r->interval_ms = above->interval_ms;
  if (!r->lazy_set) r->lazy = above->lazy;
  r->lazy_set = true;
}

static void inherit_resolve_all(fl_conf_t *c) {
  for (size_t i = 0; i < c->n_routes; i++) {
    inherit_resolve(&c->routes[i].resolve, &c->resolve);
    for (int v = 0; v < FL_NVARIANTS; v++) inherit_resolve(&c->routes[i].variant[v].resolve, &c->routes[i].resolve);
  }
}

static int f_weight(parse_ctx_t *p, yaml_node_t *v, void *slot) { return cy_get_weight(p, v, slot); }

/* Versions label metrics and are kept in the state store: short, printable. */
static int f_version(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = cy_get_str(p, v, slot);
  const char *s = *(char **)slot;
  for (size_t i = 0; rc == 0 && s[i]; i++)
    if ((unsigned char)s[i] < 0x21 || s[i] == '"' || s[i] == '\\') rc = cy_fail(p, v, "version must be printable, without spaces or quotes");
  if (rc == 0 && strlen(s) > 63) rc = cy_fail(p, v, "version is longer than 63 characters");
  return rc;
}

/* metrics_url: one URL or a list; each an http:// or https:// URL (fetch.h). */
static int check_url(parse_ctx_t *p, yaml_node_t *n, char *value) {
  char why[160];
  if (fl_fetch_check_url(value, NULL, 0, why, sizeof why) == 0) return 0;
  return cy_fail(p, n, "metrics_url \"%s\": %s", value, why);
}

static int f_metrics_url(parse_ctx_t *p, yaml_node_t *n, void *slot) {
  fl_variant_conf_t *v = slot;
  if (n->type == YAML_SEQUENCE_NODE) return cy_get_str_list(p, n, &v->metrics_urls, &v->n_metrics_urls, check_url);
  int rc = cy_alloc_items(p, 1, sizeof *v->metrics_urls, (void **)&v->metrics_urls);
  if (rc == 0) v->n_metrics_urls = 1, rc = cy_get_str(p, n, &v->metrics_urls[0]);
  return rc ? rc : check_url(p, n, v->metrics_urls[0]);
}

/* ---------- per-version request headers ---------- */

/* Headers the gateway frames or sets itself: a version may not set them. */
static bool header_reserved(const char *name) {
  static const char *const RESERVED[] = {"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                                         "proxy-connection", "te", "trailer", "upgrade", "expect", "x-forwarded-for",
                                         "x-request-id", "forwarded"};
  for (size_t i = 0; i < FL_ARRAY_LEN(RESERVED); i++)
    if (strcmp(name, RESERVED[i]) == 0) return true;
  return false;
}

static bool is_token(const char *s) {
  static const char TCHARS[] = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  return *s && strspn(s, TCHARS) == strlen(s);
}

#define HEADER_VALUE_MAX 8192

/* value with each ${env:NAME} replaced by the variable's value, into out (cap bytes). */
static int expand_env(parse_ctx_t *p, yaml_node_t *v, const char *name, const char *value, char *out, size_t cap) {
  size_t n = 0;
  const char *at;
  while ((at = strstr(value, "${env:"))) {
    const char *end = strchr(at, '}');
    if (!end) return cy_fail(p, v, "headers.%s: \"${env:\" without its closing \"}\"", name);
    char var[128];
    snprintf(var, sizeof var, "%.*s", (int)FL_MIN((size_t)(end - at - 6), sizeof var - 1), at + 6);
    const char *got = getenv(var);
    if (!got) return cy_fail(p, v, "headers.%s: environment variable %s is not set", name, var);
    n += (size_t)snprintf(out + FL_MIN(n, cap), n < cap ? cap - n : 0, "%.*s%s", (int)(at - value), value, got);
    value = end + 1;
  }
  n += (size_t)snprintf(out + FL_MIN(n, cap), n < cap ? cap - n : 0, "%s", value);
  bool control = false;                         /* RFC 9110 field values: no CTL but HTAB */
  for (size_t i = 0; n < cap && i < n; i++) control |= ((unsigned char)out[i] < 0x20 && out[i] != '\t') || out[i] == 0x7f;
  if (n >= cap || control)
    return cy_fail(p, v, "headers.%s: the value must be one line of at most %d bytes without control characters",
                   name, HEADER_VALUE_MAX);
  return 0;
}

/* Appends "name: value\r\n" to *lines (malloc'd): into a new copy, the old one wiped, so no
 * secret is left behind in freed memory. */
static int add_line(parse_ctx_t *p, char **lines, const char *name, const char *value) {
  size_t had = *lines ? strlen(*lines) : 0, more = strlen(name) + strlen(value) + 4;
  char *grown = malloc(had + more + 1);
  if (!grown) return cy_nomem(p);
  if (had) memcpy(grown, *lines, had);
  snprintf(grown + had, more + 1, "%s: %s\r\n", name, value);
  if (*lines) explicit_bzero(*lines, had);
  free(*lines);
  *lines = grown;
  return 0;
}

static int f_headers(parse_ctx_t *p, yaml_node_t *map, void *slot) {
  fl_variant_conf_t *vc = slot;
  static char value[HEADER_VALUE_MAX + 1];
  int rc = cy_want_mapping(p, map, "headers");
  size_t n = rc ? 0 : cy_map_len(map);
  if (rc == 0 && n > 16) rc = cy_fail(p, map, "headers: at most 16");
  if (rc == 0) rc = cy_alloc_items(p, n ? n : 1, sizeof *vc->header_names, (void **)&vc->header_names);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    yaml_node_t *k = cy_pair_key(p, map, i), *v = cy_pair_value(p, map, i);
    if ((rc = cy_want_scalar(p, k)) != 0 || (rc = cy_want_scalar(p, v)) != 0) break;
    const char *name = cy_scalar(k), *text = cy_scalar(v);
    char lower[65] = "";
    if (!name || strlen(name) >= sizeof lower || !is_token(name))
      rc = cy_fail(p, k, "headers: \"%s\" is not a header name", name ? name : "");
    else if (!text)
      rc = cy_fail(p, v ? v : k, "headers.%s: the value must be a string", name);
    for (size_t j = 0; rc == 0 && name[j]; j++) lower[j] = (char)tolower((unsigned char)name[j]);
    if (rc == 0 && header_reserved(lower)) rc = cy_fail(p, k, "headers: %s is set by the gateway itself", lower);
    for (size_t j = 0; rc == 0 && j < vc->n_headers; j++)
      if (strcmp(vc->header_names[j], lower) == 0) rc = cy_fail(p, k, "headers: %s twice", lower);
    if (rc == 0) rc = expand_env(p, v, lower, text, value, sizeof value);
    if (rc == 0) rc = cy_dup_into(p, lower, &vc->header_names[vc->n_headers]);
    if (rc == 0) vc->n_headers++, rc = add_line(p, &vc->headers, lower, value);
  }
  explicit_bzero(value, sizeof value);
  return rc;
}

#define VARIANT_FIELDS(id)                                                          \
  {"version", f_version, offsetof(fl_route_t, variant[id].version), NULL},          \
  {"model", cy_f_model, offsetof(fl_route_t, variant[id].model), NULL},              \
  {"backends", f_backends, offsetof(fl_route_t, variant[id]), NULL},                \
  {"metrics_url", f_metrics_url, offsetof(fl_route_t, variant[id]), NULL},          \
  {"resolve", f_resolve, offsetof(fl_route_t, variant[id].resolve), NULL},         \
  {"headers", f_headers, offsetof(fl_route_t, variant[id]), NULL},                \
  {"ca_file", cy_f_str, offsetof(fl_route_t, variant[id].ca_file), NULL},           \
  {"server_name", cy_f_str, offsetof(fl_route_t, variant[id].server_name), NULL},   \
  {"insecure_skip_verify", cy_f_bool, offsetof(fl_route_t, variant[id].insecure_skip_verify), NULL}

static const field_t stable_fields[] = {VARIANT_FIELDS(FL_STABLE)};
static const field_t canary_fields[] = {
  VARIANT_FIELDS(FL_CANARY),
  {"weight", f_weight, offsetof(fl_route_t, canary_weight_bp), NULL},
};
static const section_t stable_section = {"stable", NULL, stable_fields, FL_ARRAY_LEN(stable_fields)};
static const section_t canary_section = {"canary", NULL, canary_fields, FL_ARRAY_LEN(canary_fields)};

/* The one host a version's https backends are for: server_name, else the host they all name
 * (several addresses of one name are fine; two names need server_name), with the first one's port. */
static int https_host(parse_ctx_t *p, yaml_node_t *map, const fl_variant_conf_t *v, const char *what, char *host,
                      size_t cap, uint16_t *port) {
  char other[256];
  uint16_t other_port;
  host[0] = 0;
  for (size_t i = 0; i < v->n_names + v->n_backends; i++) {
    if (i < v->n_names) snprintf(other, sizeof other, "%s", v->names[i].host), other_port = v->names[i].port;
    else if (fl_hostport_split(v->backends[i - v->n_names].text, other, sizeof other, &other_port) != 0) continue;
    if (!host[0]) snprintf(host, cap, "%s", other), *port = other_port;
    else if (strcmp(host, other) != 0 && !v->server_name)
      return cy_fail(p, map, "%s: https backends %s and %s are different hosts: give server_name, the one name their "
                     "certificates carry", what, host, other);
  }
  if (v->server_name) snprintf(host, cap, "%s", v->server_name);
  return 0;
}

/* https backends: the TLS client that reaches them (authorities read now, so check and a reload
 * see a bad ca_file) and the Host their requests carry. */
static int variant_tls(parse_ctx_t *p, yaml_node_t *map, fl_variant_conf_t *v, const char *what) {
  if (!v->https) {
    if (v->ca_file || v->server_name || v->insecure_skip_verify)
      return cy_fail(p, map, "%s: ca_file, server_name and insecure_skip_verify are for https:// backends", what);
    return 0;
  }
  char host[256], ca[4096], err[600], value[300];
  uint16_t port = 443;
  int rc = https_host(p, map, v, what, host, sizeof host, &port);
  if (rc) return rc;
  if (v->ca_file) {
    fl_conf_resolve(p->conf, v->ca_file, ca, sizeof ca);
    free(v->ca_file);
    if (!(v->ca_file = strdup(ca))) return cy_nomem(p);
  }
  fl_tls_client_conf_t cf = {.host = host, .ca_file = v->ca_file, .insecure = v->insecure_skip_verify};
  if (fl_tls_client_new(&cf, &v->tls, err, sizeof err) != 0) return cy_fail(p, map, "%s: %s", what, err);
  bool v6 = strchr(host, ':') != NULL;
  snprintf(value, sizeof value, "%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "");
  if (port != 443) snprintf(value + strlen(value), sizeof value - strlen(value), ":%u", port);
  if (add_line(p, &v->host_line, "host", value) != 0) return FL_ENOMEM;
  yaml_node_t *insecure = cy_map_get(p, map, "insecure_skip_verify");
  if (v->insecure_skip_verify)
    return cy_warn(p, insecure ? insecure : map, "%s: insecure_skip_verify: the certificates of its https backends are not checked; anyone "
                   "between fledge and them can read and change the traffic", what);
  return 0;
}

static int parse_variant(parse_ctx_t *p, yaml_node_t *map, fl_route_t *r, fl_variant_id_t id, const section_t *s) {
  int rc = cy_walk(p, map, s, r);
  if (rc) return rc;
  if (!r->variant[id].version) return cy_fail(p, map, "%s needs a version", s->what);
  if (!r->variant[id].n_backends && !r->variant[id].n_names) return cy_fail(p, map, "%s needs at least one backend", s->what);
  char what[200];
  snprintf(what, sizeof what, "route %s %s", r->name ? r->name : "?", s->what);
  return variant_tls(p, map, &r->variant[id], what);
}

static int f_stable(parse_ctx_t *p, yaml_node_t *v, void *r) { return parse_variant(p, v, r, FL_STABLE, &stable_section); }

static int f_canary(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_route_t *r = slot;
  r->has_canary = true;
  return parse_variant(p, v, r, FL_CANARY, &canary_section);
}

static int f_route_name(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  char **name = slot;
  int rc = cy_get_str(p, v, name);
  if (rc) return rc;
  if (strspn(*name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != strlen(*name))
    return cy_fail(p, v, "bad route name \"%s\" (use letters, digits, '_', '.' and '-')", *name);
  if (strlen(*name) > 63) return cy_fail(p, v, "route name is longer than 63 characters");
  p->route_name_node = v;
  return 0;
}

static int f_path_prefix(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_route_t *r = slot;
  int rc = cy_get_str(p, v, &r->path_prefix);
  if (rc) return rc;
  if (r->path_prefix[0] != '/') return cy_fail(p, v, "path_prefix must start with \"/\", not \"%s\"", r->path_prefix);
  r->path_prefix_len = strlen(r->path_prefix);
  return 0;
}

/* Host names are case-insensitive; the router compares against a cy_lower-cased Host. */
static int f_host(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = cy_get_str(p, v, slot);
  if (rc == 0) cy_lower(*(char **)slot);
  return rc;
}

static int parse_key_source(parse_ctx_t *p, yaml_node_t *n, fl_key_source_t *k) {
  static const struct { const char *prefix; fl_key_kind_t kind; } kinds[] = {
    {"header:", FL_KEY_HEADER}, {"cookie:", FL_KEY_COOKIE}, {"query:", FL_KEY_QUERY}, {"json:", FL_KEY_JSON},
  };
  int rc = cy_want_scalar(p, n);
  if (rc) return rc;
  const char *s = cy_scalar(n);
  if (strcmp(s, "ip") == 0) return k->kind = FL_KEY_IP, 0;
  for (size_t i = 0; i < FL_ARRAY_LEN(kinds); i++) {
    size_t plen = strlen(kinds[i].prefix);
    if (strncmp(s, kinds[i].prefix, plen) != 0) continue;
    const char *name = s + plen;
    k->kind = kinds[i].kind;
    if (!*name) return cy_fail(p, n, "user_key source \"%s\" needs a name after the colon", s);
    if (k->kind == FL_KEY_HEADER && !cy_is_token(name, strlen(name))) return cy_fail(p, n, "bad header name \"%s\"", name);
    if ((rc = cy_dup_into(p, name, &k->name)) == 0 && k->kind == FL_KEY_HEADER) cy_lower(k->name);
    return rc;
  }
  return cy_fail(p, n, "unknown user_key source \"%s\" (use header:NAME, cookie:NAME, query:NAME, json:FIELD or ip)", s);
}

static int f_user_key(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_route_t *r = slot;
  int rc = cy_want_list(p, v, "user_key");
  if (rc == 0) rc = cy_alloc_items(p, cy_list_len(v), sizeof *r->user_key, (void **)&r->user_key);
  if (rc) return rc;
  r->n_user_key = cy_list_len(v);
  for (size_t i = 0; i < r->n_user_key && rc == 0; i++) rc = parse_key_source(p, cy_list_item(p, v, i), &r->user_key[i]);
  return rc;
}

static const field_t route_match_fields[] = {
  {"path_prefix", f_path_prefix, 0, NULL},
  {"host", f_host, offsetof(fl_route_t, host), NULL},
};
static const section_t route_match_section = {"route match", NULL, route_match_fields, FL_ARRAY_LEN(route_match_fields)};

/* What JSON cannot hold: a mapping key that is not a scalar (YAML's "? [a]: b"), or nesting
 * deeper than a spec ever needs. Returns the offending node, or NULL. */
static yaml_node_t *not_json(parse_ctx_t *p, yaml_node_t *n, int depth) {
  if (depth > 32) return n;
  size_t count = n->type == YAML_MAPPING_NODE ? cy_map_len(n) : n->type == YAML_SEQUENCE_NODE ? cy_list_len(n) : 0;
  for (size_t i = 0; i < count; i++) {
    yaml_node_t *bad = NULL;
    if (n->type == YAML_SEQUENCE_NODE) bad = not_json(p, cy_list_item(p, n, i), depth + 1);
    else if (cy_pair_key(p, n, i)->type != YAML_SCALAR_NODE) bad = cy_pair_key(p, n, i);
    else bad = not_json(p, cy_pair_value(p, n, i), depth + 1);
    if (bad) return bad;
  }
  return NULL;
}

/* YAML → JSON for the rollout spec (not_json() found nothing): plain scalars that read as numbers
 * or booleans become those, everything else a string; the spec's own parser then validates it. */
static json_t *yaml_json(parse_ctx_t *p, yaml_node_t *n) {
  if (n->type == YAML_MAPPING_NODE) {
    json_t *o = json_object();
    for (size_t i = 0; i < cy_map_len(n); i++)
      json_object_set_new(o, cy_scalar(cy_pair_key(p, n, i)), yaml_json(p, cy_pair_value(p, n, i)));
    return o;
  }
  if (n->type == YAML_SEQUENCE_NODE) {
    json_t *a = json_array();
    for (size_t i = 0; i < cy_list_len(n); i++) json_array_append_new(a, yaml_json(p, cy_list_item(p, n, i)));
    return a;
  }
  const char *v = cy_scalar(n);
  bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  if (plain && (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)) return json_boolean(v[0] == 't');
  if (plain && *v && strspn(v, "0123456789+-.eE") == strlen(v)) {   /* a decimal number */
    char *end;
    errno = 0;
    long long i = strtoll(v, &end, 10);
    if (!*end && errno == 0) return json_integer(i);
    double d = strtod(v, &end);
    if (!*end && isfinite(d)) return json_real(d);
  }
  return json_string(v);
}

static int f_rollout(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_route_t *r = slot;
  int rc = cy_want_mapping(p, v, "rollout");
  if (rc) return rc;
  yaml_node_t *bad = not_json(p, v, 0);
  if (bad) return cy_fail(p, bad, "rollout: keys must be plain names and nesting at most 32 deep");
  json_t *spec = yaml_json(p, v);
  fl_rollout_spec_t parsed;
  char err[256];
  if (fl_rollout_spec_parse(spec, &parsed, err, sizeof err) != 0) {
    json_decref(spec);
    const yaml_node_t *at = v;                      /* the key at fault, when there is one */
    for (size_t i = 0; i < cy_map_len(v); i++)
      if (strcmp(cy_scalar(cy_pair_key(p, v, i)), parsed.bad_key) == 0) at = cy_pair_key(p, v, i);
    return cy_fail(p, at, "rollout: %s", err);
  }
  r->rollout_spec = spec;
  return 0;
}

static const field_t route_fields[] = {
  {"rollout", f_rollout, 0, NULL},
  {"name", f_route_name, offsetof(fl_route_t, name), NULL},
  {"match", NULL, 0, &route_match_section},
  {"user_key", f_user_key, 0, NULL},
  {"salt", cy_f_str, offsetof(fl_route_t, salt), NULL},
  {"segment_header", cy_f_header_name, offsetof(fl_route_t, segment_header), NULL},
  {"stable", f_stable, 0, NULL},
  {"canary", f_canary, 0, NULL},
  {"rules", f_rules, 0, NULL},
  {"resolve", f_resolve, offsetof(fl_route_t, resolve), NULL},
  {"shadow", fl_conf_f_shadow, 0, NULL},
};
static const section_t route_section = {"route", NULL, route_fields, FL_ARRAY_LEN(route_fields)};

static int route_defaults(parse_ctx_t *p, fl_route_t *r) {
  int rc = 0;
  if (!r->path_prefix && (rc = cy_dup_into(p, "/", &r->path_prefix)) == 0) r->path_prefix_len = 1;
  if (rc == 0 && !r->salt) rc = cy_dup_into(p, r->name, &r->salt);
  if (rc == 0 && !r->segment_header) rc = cy_dup_into(p, "x-user-segment", &r->segment_header);
  return rc;
}

static int parse_route(parse_ctx_t *p, yaml_node_t *map, fl_route_t *r) {
  p->route_name_node = NULL;
  p->canary_rule_node = NULL;
  fl_conf_shadow_defaults(&r->shadow);
  int rc = cy_walk(p, map, &route_section, r);
  if (rc) return rc;
  if (!r->name) return cy_fail(p, map, "route needs a name");
  if (!r->variant[FL_STABLE].version) return cy_fail(p, map, "route \"%s\" needs a stable section", r->name);
  if (p->canary_rule_node && !r->has_canary)
    return cy_fail(p, p->canary_rule_node, "rule sends traffic to canary but route \"%s\" has no canary section", r->name);
  if (r->shadow.on && !r->has_canary)
    return cy_fail(p, map, "route \"%s\" has a shadow section but no canary to mirror to", r->name);
  return route_defaults(p, r);
}

static int f_routes(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  int rc = cy_want_list(p, v, "routes");
  if (rc == 0 && cy_list_len(v) == 0) rc = cy_fail(p, v, "routes must list at least one route");
  if (rc == 0) rc = cy_alloc_items(p, cy_list_len(v), sizeof *c->routes, (void **)&c->routes);
  if (rc) return rc;
  c->n_routes = cy_list_len(v);
  for (size_t i = 0; i < c->n_routes; i++) {
    if ((rc = parse_route(p, cy_list_item(p, v, i), &c->routes[i])) != 0) return rc;
    for (size_t j = 0; j < i; j++)
      if (strcmp(c->routes[j].name, c->routes[i].name) == 0)
        return cy_fail(p, p->route_name_node, "duplicate route name \"%s\"", c->routes[i].name);
  }
  return 0;
}

/* ---------- top level ---------- */

/* A token never sits in the file: it is read from the named environment variable. One that is
 * missing or short is kept as the file's token error (the first), which serve and check refuse
 * and the CLI tools, which may run without it, ignore. */
static int token_from_env(parse_ctx_t *p, yaml_node_t *v, const char *key, char **env, char **token) {
  int rc = cy_get_str(p, v, env);
  if (rc) return rc;
  const char *value = getenv(*env);
  if (value && strlen(value) >= 16) return cy_dup_into(p, value, token);
  if (p->conf->admin_token_error) return 0;
  char msg[512];
  snprintf(msg, sizeof msg, "%s:%zu:%zu: %s: environment variable %s must hold a token of at least 16 characters",
           p->name, v->start_mark.line + 1, v->start_mark.column + 1, key, *env);
  return cy_dup_into(p, msg, &p->conf->admin_token_error);
}

static int f_token_env(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  return token_from_env(p, v, "admin.token_env", &c->admin_token_env, &c->admin_token);
}

static int f_read_token_env(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  return token_from_env(p, v, "admin.read_token_env", &c->read_token_env, &c->read_token);
}

static int f_feedback_token_env(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  return token_from_env(p, v, "feedback.token_env", &c->feedback_token_env, &c->feedback_token);
}

/* Each token is one scope: a token shared by two would give the narrower one's holder the wider
 * scope (an app relaying feedback could promote or abort). */
static int check_tokens_differ(parse_ctx_t *p, yaml_node_t *root) {
  const fl_conf_t *c = p->conf;
  const char *const tokens[] = {c->admin_token, c->read_token, c->feedback_token};
  static const char *const sections[] = {"admin", "admin", "feedback"}, *const keys[] = {"token_env", "read_token_env",
                                                                                          "token_env"};
  for (size_t i = 0; i < FL_ARRAY_LEN(tokens); i++)
    for (size_t j = i + 1; j < FL_ARRAY_LEN(tokens); j++)
      if (tokens[i] && tokens[j] && strcmp(tokens[i], tokens[j]) == 0)
        return cy_fail(p, cy_map_get(p, cy_map_get(p, root, sections[j]), keys[j]),
                       "%s.%s and %s.%s hold the same token; each scope needs a token of its own", sections[i], keys[i],
                       sections[j], keys[j]);
  return 0;
}

/* listen: HOST:PORT, or {address: HOST:PORT, share: true, tls: {...}}, or a list of these.
 * share: another process is to serve the same address on purpose (otherwise a second gateway
 * there is refused at start). tls: {cert: F, key: F} and/or certificates: [{cert, key}, ...];
 * the first certificate is the default, SNI picks among them. */
typedef struct listen_conf {
  fl_addr_t addr;
  bool share;
  yaml_node_t *tls;
} listen_conf_t;

static int f_node(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  *(yaml_node_t **)slot = v;
  return 0;
}

static const field_t listen_fields[] = {
  {"address", cy_f_addr, offsetof(listen_conf_t, addr), NULL},
  {"share", cy_f_bool, offsetof(listen_conf_t, share), NULL},
  {"tls", f_node, offsetof(listen_conf_t, tls), NULL},
};
static const section_t listen_section = {"listen", NULL, listen_fields, FL_ARRAY_LEN(listen_fields)};

static const field_t cert_fields[] = {
  {"cert", cy_f_str, offsetof(fl_tls_cert_t, cert), NULL},
  {"key", cy_f_str, offsetof(fl_tls_cert_t, key), NULL},
};
static const section_t cert_section = {"a certificate", NULL, cert_fields, FL_ARRAY_LEN(cert_fields)};

typedef struct tls_conf {
  fl_tls_cert_t first;
  yaml_node_t *certificates;
} tls_conf_t;

static const field_t tls_fields[] = {
  {"cert", cy_f_str, offsetof(tls_conf_t, first.cert), NULL},
  {"key", cy_f_str, offsetof(tls_conf_t, first.key), NULL},
  {"certificates", f_node, offsetof(tls_conf_t, certificates), NULL},
};
static const section_t tls_section = {"listen.tls", NULL, tls_fields, FL_ARRAY_LEN(tls_fields)};

static void free_certs(fl_listen_t *l) {
  for (size_t i = 0; i < l->n_certs; i++) free(l->certs[i].cert), free(l->certs[i].key);
  free(l->certs);
  l->certs = NULL;
  l->n_certs = 0;
}

/* A certificate's paths, both given, resolved against the config's folder, into l. */
static int add_cert(parse_ctx_t *p, yaml_node_t *at, fl_listen_t *l, fl_tls_cert_t *c) {
  if (!c->cert || !c->key) return cy_fail(p, at, "a TLS certificate needs both cert and key");
  char path[2][4096];
  fl_conf_resolve(p->conf, c->cert, path[0], sizeof path[0]);
  fl_conf_resolve(p->conf, c->key, path[1], sizeof path[1]);
  fl_tls_cert_t *grown = realloc(l->certs, (l->n_certs + 1) * sizeof *grown);
  if (!grown) return cy_nomem(p);
  l->certs = grown;
  fl_tls_cert_t *dst = &l->certs[l->n_certs];
  *dst = (fl_tls_cert_t){strdup(path[0]), strdup(path[1])};
  if (!dst->cert || !dst->key) {
    free(dst->cert), free(dst->key);
    return cy_nomem(p);
  }
  l->n_certs++;
  return 0;
}

/* listen.tls: the certificates read and checked now, so that `fledge check` and a reload see a
 * missing file or a key that does not match. */
static int get_tls(parse_ctx_t *p, yaml_node_t *v, fl_listen_t *l) {
  tls_conf_t t = {0};
  int rc = cy_walk(p, v, &tls_section, &t);
  if (rc == 0 && (t.first.cert || t.first.key)) rc = add_cert(p, v, l, &t.first);
  free(t.first.cert), free(t.first.key);
  if (rc == 0 && t.certificates) rc = cy_want_list(p, t.certificates, "listen.tls.certificates");
  for (size_t i = 0; rc == 0 && t.certificates && i < cy_list_len(t.certificates); i++) {
    yaml_node_t *item = cy_list_item(p, t.certificates, i);
    fl_tls_cert_t c = {0};
    rc = cy_walk(p, item, &cert_section, &c);
    if (rc == 0) rc = add_cert(p, item, l, &c);
    free(c.cert), free(c.key);
  }
  if (rc == 0 && l->n_certs == 0) rc = cy_fail(p, v, "listen.tls needs a certificate: {cert: FILE, key: FILE}");
  char err[512];
  if (rc == 0 && fl_tls_server_new(l->certs, l->n_certs, &l->tls, err, sizeof err) != 0) rc = cy_fail(p, v, "%s", err);
  return rc;
}

static int get_listen(parse_ctx_t *p, yaml_node_t *v, fl_listen_t *l, bool tls_allowed) {
  if (v->type != YAML_MAPPING_NODE) return cy_get_addr(p, v, &l->addr);
  listen_conf_t lc = {0};
  int rc = cy_walk(p, v, &listen_section, &lc);
  if (rc == 0 && lc.addr.len == 0) rc = cy_fail(p, v, "listen needs an address: {address: HOST:PORT}");
  if (rc) return rc;
  l->addr = lc.addr;
  l->share = lc.share;
  if (!lc.tls) return 0;
  if (!tls_allowed) return cy_fail(p, lc.tls, "admin.listen does not take tls");
  return get_tls(p, lc.tls, l);
}

static int f_listen(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  c->n_listens = 0;
  if (v->type != YAML_SEQUENCE_NODE) {
    c->n_listens = 1;
    return get_listen(p, v, &c->listens[0], true);
  }
  size_t n = cy_list_len(v);
  if (n == 0 || n > FL_MAX_LISTENERS) return cy_fail(p, v, "listen takes 1 to %d addresses", FL_MAX_LISTENERS);
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *item = cy_list_item(p, v, i);
    c->n_listens = i + 1;           /* owned by c from here: freed with it whatever happens */
    int rc = get_listen(p, item, &c->listens[i], true);
    if (rc) return rc;
    for (size_t j = 0; j < i; j++)
      if (strcmp(c->listens[j].addr.text, c->listens[i].addr.text) == 0)
        return cy_fail(p, item, "listen names %s twice", c->listens[i].addr.text);
  }
  return 0;
}

static int f_admin_listen(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  fl_listen_t l = {0};
  int rc = get_listen(p, v, &l, false);
  if (rc == 0) c->admin_listen = l.addr, c->admin_listen_share = l.share;
  return rc;
}

static const field_t admin_fields[] = {{"listen", f_admin_listen, 0, NULL},
                                       {"token_env", f_token_env, 0, NULL},
                                       {"read_token_env", f_read_token_env, 0, NULL},
                                       {"public_metrics", cy_f_bool, offsetof(fl_conf_t, public_metrics), NULL}};
static const section_t admin_section = {"admin", NULL, admin_fields, FL_ARRAY_LEN(admin_fields)};

static const field_t geoip_fields[] = {
  {"mmdb", cy_f_opt_str, offsetof(fl_conf_t, geoip_mmdb), NULL},
  {"header", cy_f_header_name, offsetof(fl_conf_t, geoip_header), NULL},
};
static const section_t geoip_section = {"geoip", NULL, geoip_fields, FL_ARRAY_LEN(geoip_fields)};

static const field_t timeout_fields[] = {
  {"connect", cy_f_duration, offsetof(fl_conf_t, timeouts.connect_ms), NULL},
  {"header", cy_f_duration, offsetof(fl_conf_t, timeouts.header_ms), NULL},
  {"first_byte", cy_f_duration, offsetof(fl_conf_t, timeouts.first_byte_ms), NULL},
  {"idle", cy_f_duration, offsetof(fl_conf_t, timeouts.idle_ms), NULL},
  {"drain", cy_f_duration, offsetof(fl_conf_t, timeouts.drain_ms), NULL},
};
static const section_t timeout_section = {"timeouts", NULL, timeout_fields, FL_ARRAY_LEN(timeout_fields)};

static const field_t limit_fields[] = {
  {"header_bytes", cy_f_u32, offsetof(fl_conf_t, limits.header_bytes), NULL},
  {"headers", cy_f_u32, offsetof(fl_conf_t, limits.headers), NULL},
  {"body_bytes", cy_f_u64, offsetof(fl_conf_t, limits.body_bytes), NULL},
  {"inspect_body_bytes", cy_f_u32, offsetof(fl_conf_t, limits.inspect_body_bytes), NULL},
  {"max_connections", cy_f_u32, offsetof(fl_conf_t, limits.max_connections), NULL},
};
static const section_t limit_section = {"limits", NULL, limit_fields, FL_ARRAY_LEN(limit_fields)};

/* "auto" or a share in [0, 1]. */
static int f_sample(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = cy_want_scalar(p, v);
  if (rc) return rc;
  char *end;
  double share = strtod(cy_scalar(v), &end);
  if (strcmp(cy_scalar(v), "auto") == 0) share = -1;
  else if (end == cy_scalar(v) || *end || !(share >= 0 && share <= 1))
    return cy_fail(p, v, "data.sample must be \"auto\" or a share from 0 to 1, not \"%s\"", cy_scalar(v));
  *(int32_t *)slot = share < 0 ? -1 : (int32_t)lround(share * 1e6);
  return 0;
}

static int check_regex(parse_ctx_t *p, yaml_node_t *n, char *value) {
  regex_t re;
  if (check_regex_cost(p, n, value)) return FL_EINVAL;
  int rc = regcomp(&re, value, REG_EXTENDED | REG_ICASE | REG_NOSUB);
  if (rc == 0) {
    regfree(&re);
    return 0;
  }
  char why[128];
  regerror(rc, &re, why, sizeof why);
  return cy_fail(p, n, "bad regex \"%s\": %s", value, why);
}

static int f_refusals(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  return cy_get_str_list(p, v, &c->data.refusals, &c->data.n_refusals, check_regex);
}

static const field_t data_fields[] = {
  {"sample", f_sample, offsetof(fl_conf_t, data.sample_ppm), NULL},
  {"max_body", cy_f_u32, offsetof(fl_conf_t, data.max_body), NULL},
  {"window", cy_f_duration, offsetof(fl_conf_t, data.window_ms), NULL},
  {"refresh", cy_f_duration, offsetof(fl_conf_t, data.refresh_ms), NULL},
  {"baseline_capture", cy_f_duration, offsetof(fl_conf_t, data.baseline_capture_ms), NULL},
  {"baseline_file", cy_f_opt_str, offsetof(fl_conf_t, data.baseline_file), NULL},
  {"refusal_patterns", f_refusals, 0, NULL},
};
static const section_t data_section = {"data", NULL, data_fields, FL_ARRAY_LEN(data_fields)};

/* ---------- watched processes ---------- */

static int f_process_variant(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_process_conf_t *pc = slot;
  int rc = cy_want_scalar(p, v);
  if (rc) return rc;
  if (strcmp(cy_scalar(v), "stable") == 0) pc->variant = FL_STABLE;
  else if (strcmp(cy_scalar(v), "canary") == 0) pc->variant = FL_CANARY;
  else return cy_fail(p, v, "variant must be stable or canary, not \"%s\"", cy_scalar(v));
  return 0;
}

static int f_process_cmdline(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = cy_get_str(p, v, slot);
  return rc ? rc : check_regex(p, v, *(char **)slot);
}

static const field_t process_fields[] = {
  {"name", cy_f_str, offsetof(fl_process_conf_t, name), NULL},
  {"cmdline", f_process_cmdline, offsetof(fl_process_conf_t, cmdline), NULL},
  {"pid_file", cy_f_str, offsetof(fl_process_conf_t, pid_file), NULL},
  {"route", cy_f_str, offsetof(fl_process_conf_t, route), NULL},
  {"variant", f_process_variant, 0, NULL},
};
static const section_t process_section = {"process", NULL, process_fields, FL_ARRAY_LEN(process_fields)};

static int f_processes(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  int rc = cy_want_list(p, v, "processes");
  if (rc == 0) rc = cy_alloc_items(p, cy_list_len(v), sizeof *c->processes, (void **)&c->processes);
  if (rc) return rc;
  c->n_processes = cy_list_len(v);
  for (size_t i = 0; i < c->n_processes; i++) {
    fl_process_conf_t *pc = &c->processes[i];
    yaml_node_t *item = cy_list_item(p, v, i);
    pc->variant = -1;
    if ((rc = cy_walk(p, item, &process_section, pc)) != 0) return rc;
    if (!pc->name) return cy_fail(p, item, "each process needs a name");
    if (!pc->cmdline == !pc->pid_file) return cy_fail(p, item, "process \"%s\" needs one of cmdline or pid_file", pc->name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(c->processes[j].name, pc->name) == 0) return cy_fail(p, item, "duplicate process name \"%s\"", pc->name);
  }
  return 0;
}

static const field_t resources_fields[] = {
  {"interval", cy_f_duration, offsetof(fl_conf_t, resources_interval_ms), NULL},
  {"nvml_library", cy_f_str, offsetof(fl_conf_t, nvml_library), NULL},
};
static const section_t resources_section = {"resources", NULL, resources_fields, FL_ARRAY_LEN(resources_fields)};

static int f_scrape_families(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  return cy_get_str_list(p, v, &c->scrape_families, &c->n_scrape_families, NULL);
}

static const field_t scrape_fields[] = {
  {"interval", cy_f_duration, offsetof(fl_conf_t, scrape_interval_ms), NULL},
  {"timeout", cy_f_duration, offsetof(fl_conf_t, scrape_timeout_ms), NULL},
  {"families", f_scrape_families, 0, NULL},
};
static const section_t scrape_section = {"scrape", NULL, scrape_fields, FL_ARRAY_LEN(scrape_fields)};

static const field_t feedback_fields[] = {{"key_env", cy_f_str, offsetof(fl_conf_t, feedback_key_env), NULL},
                                          {"token_env", f_feedback_token_env, 0, NULL}};
static const section_t feedback_section = {"feedback", NULL, feedback_fields, FL_ARRAY_LEN(feedback_fields)};

static int f_prometheus(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  char why[160];
  int rc = cy_get_str(p, v, &c->prometheus_url);
  if (rc == 0 && fl_fetch_check_url(c->prometheus_url, NULL, 0, why, sizeof why) != 0)
    rc = cy_fail(p, v, "analysis.prometheus \"%s\": %s", c->prometheus_url, why);
  return rc;
}

static const field_t analysis_fields[] = {{"prometheus", f_prometheus, 0, NULL}};
static const section_t analysis_section = {"analysis", NULL, analysis_fields, FL_ARRAY_LEN(analysis_fields)};

/* ---------- cluster ---------- */

/* redis://HOST[:PORT][/DB]: a password in the URL would sit in a file that is shown and shared,
 * so it is refused; password_env names where it is. */
static int parse_redis_url(parse_ctx_t *p, yaml_node_t *v, fl_cluster_conf_t *cl) {
  const char *url = cl->redis, *h = url + 8, *end;
  if (strncmp(url, "redis://", 8) != 0) return cy_fail(p, v, "cluster.redis must be redis://HOST[:PORT][/DB], not \"%s\"", url);
  if (strchr(h, '@')) return cy_fail(p, v, "cluster.redis must not hold a password: name its variable in cluster.password_env");
  if (*h == '[') end = strchr(h, ']'), h++;
  else end = h + strcspn(h, ":/");
  if (!end || end == h) return cy_fail(p, v, "cluster.redis \"%s\" has no host", url);
  if (!(cl->host = strndup(h, (size_t)(end - h)))) return cy_nomem(p);
  const char *rest = *end == ']' ? end + 1 : end;
  uint64_t n = 6379;
  char num[16];
  if (*rest == ':') {
    size_t len = strcspn(rest + 1, "/");
    snprintf(num, sizeof num, "%.*s", (int)FL_MIN(len, sizeof num - 1), rest + 1);
    if (len >= sizeof num || !cy_parse_u64(num, &n) || n == 0 || n > 65535)
      return cy_fail(p, v, "cluster.redis \"%s\": the port must be a number from 1 to 65535", url);
    rest += 1 + len;
  }
  cl->port = (uint16_t)n;
  n = 0;
  if (*rest == '/' && rest[1] && (!cy_parse_u64(rest + 1, &n) || n > 1000000))
    return cy_fail(p, v, "cluster.redis \"%s\": the database must be a number, such as /0", url);
  if (*rest && *rest != '/') return cy_fail(p, v, "cluster.redis must be redis://HOST[:PORT][/DB], not \"%s\"", url);
  cl->db = (uint32_t)n;
  return 0;
}

static int f_cluster_redis(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_cluster_conf_t *cl = slot;
  int rc = cy_get_str(p, v, &cl->redis);
  return rc ? rc : parse_redis_url(p, v, cl);
}

/* Names go into Redis keys and JSON as they are: letters, digits and . _ - : only. */
static int f_cluster_id(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = cy_get_str(p, v, slot);
  const char *s = rc ? "" : *(char **)slot;
  size_t len = strlen(s);
  if (rc == 0 && (len == 0 || len > 64 || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-:") != len))
    rc = cy_fail(p, v, "cluster.%s must be 1 to 64 letters, digits, '.', '_', '-' or ':', not \"%s\"", p->key, s);
  return rc;
}

static int f_cluster_password_env(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_cluster_conf_t *cl = slot;
  int rc = cy_get_str(p, v, &cl->password_env);
  if (rc) return rc;
  const char *value = getenv(cl->password_env);
  if (!value || !*value)
    return cy_fail(p, v, "cluster.password_env: environment variable %s is not set or empty", cl->password_env);
  return cy_dup_into(p, value, &cl->password);
}

static int f_cluster_lease(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = cy_f_duration(p, v, slot);
  uint32_t ms = *(uint32_t *)slot;
  if (rc == 0 && (ms < 500 || ms > 300000)) rc = cy_fail(p, v, "cluster.lease must be from 500ms to 5m");
  return rc;
}

static const field_t cluster_fields[] = {
  {"redis", f_cluster_redis, 0, NULL},
  {"password_env", f_cluster_password_env, 0, NULL},
  {"name", f_cluster_id, offsetof(fl_cluster_conf_t, name), NULL},
  {"replica", f_cluster_id, offsetof(fl_cluster_conf_t, replica), NULL},
  {"lease", f_cluster_lease, offsetof(fl_cluster_conf_t, lease_ms), NULL},
};
static const section_t cluster_section = {"cluster", NULL, cluster_fields, FL_ARRAY_LEN(cluster_fields)};

/* The replica's default name: this host and the admin port, unique on one host and across hosts. */
static int default_replica(parse_ctx_t *p, fl_cluster_conf_t *cl) {
  char host[256] = "localhost", name[300];
  if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
  host[strcspn(host, ".")] = '\0';
  const char *port = strrchr(p->conf->admin_listen.text, ':');
  snprintf(name, sizeof name, "%.40s:%s", host, port ? port + 1 : "0");
  return cy_dup_into(p, name, &cl->replica);
}

static int f_cluster(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  int rc = cy_want_mapping(p, v, "cluster");
  if (rc == 0 && !(c->cluster = calloc(1, sizeof *c->cluster))) rc = cy_nomem(p);
  if (rc) return rc;
  c->cluster->lease_ms = 3000;
  rc = cy_walk(p, v, &cluster_section, c->cluster);
  if (rc == 0 && !c->cluster->redis) rc = cy_fail(p, v, "cluster needs redis: redis://HOST[:PORT][/DB]");
  if (rc == 0 && !c->cluster->name) rc = cy_dup_into(p, "fledge", &c->cluster->name);
  return rc;
}

static const field_t top_fields[] = {
  {"listen", f_listen, 0, NULL},
  {"workers", cy_f_noop, 0, NULL},  /* read first, by parse_workers */
  {"admin", NULL, 0, &admin_section},
  {"override_from", f_override, 0, NULL},
  {"trusted_cidrs", f_override, 0, NULL},
  {"trusted_proxies", f_trusted_proxies, 0, NULL},
  {"geoip", NULL, 0, &geoip_section},
  {"timeouts", NULL, 0, &timeout_section},
  {"limits", NULL, 0, &limit_section},
  {"response_headers", cy_f_bool, offsetof(fl_conf_t, response_headers), NULL},
  {"metrics", cy_f_bool, offsetof(fl_conf_t, metrics), NULL},
  {"access_log", cy_f_opt_str, offsetof(fl_conf_t, access_log), NULL},
  {"state", cy_f_opt_str, offsetof(fl_conf_t, state_path), NULL},
  {"data", NULL, 0, &data_section},
  {"feedback", NULL, 0, &feedback_section},
  {"analysis", NULL, 0, &analysis_section},
  {"resources", NULL, 0, &resources_section},
  {"processes", f_processes, 0, NULL},
  {"scrape", NULL, 0, &scrape_section},
  {"routes", f_routes, 0, NULL},
  {"resolve", f_resolve, offsetof(fl_conf_t, resolve), NULL},
  {"cluster", f_cluster, 0, NULL},
};
static const section_t top_section = {"configuration", NULL, top_fields, FL_ARRAY_LEN(top_fields)};

static void set_defaults(fl_conf_t *c) {
  fl_addr_parse("127.0.0.1:8080", &c->listens[0].addr);
  c->n_listens = 1;
  fl_addr_parse("127.0.0.1:9090", &c->admin_listen);
  c->workers = c->workers_wanted = 1;
  c->timeouts.connect_ms = 2000;
  c->timeouts.header_ms = 10000;
  c->timeouts.first_byte_ms = 60000;
  c->timeouts.idle_ms = 60000;
  c->timeouts.drain_ms = 30000;
  c->limits.header_bytes = 65536;
  c->limits.headers = 100;
  c->limits.body_bytes = 104857600;
  c->limits.inspect_body_bytes = 1048576;
  c->limits.max_connections = 10000;
  c->response_headers = true;
  c->metrics = true;
  c->data.sample_ppm = -1;
  c->data.max_body = 262144;
  c->data.window_ms = 300000;
  c->data.refresh_ms = 10000;
  c->data.baseline_capture_ms = 600000;
  c->resources_interval_ms = 5000;
  c->scrape_interval_ms = 10000;
  c->scrape_timeout_ms = 2000;
  c->resolve.interval_ms = 30000;
}

/* ---------- the fleet's hash ---------- */

static const char *const PER_REPLICA_KEYS[] = {"listen", "admin", "state", "workers", "access_log"};

static bool per_replica(const char *key, bool top, bool in_cluster) {
  if (in_cluster) return strcmp(key, "replica") == 0;
  for (size_t i = 0; top && i < FL_ARRAY_LEN(PER_REPLICA_KEYS); i++)
    if (strcmp(key, PER_REPLICA_KEYS[i]) == 0) return true;
  return false;
}

/* Scalars are length-prefixed and containers bracketed, so two documents hash alike only when
 * their trees (less the per-replica keys) are the same; formatting and comments do not count. */
static void hash_node(parse_ctx_t *p, fl_sha256_t *h, yaml_node_t *n, int depth, bool top, bool in_cluster) {
  if (!n || depth > 64) return;
  if (n->type == YAML_SCALAR_NODE) {
    uint64_t len = n->data.scalar.length;
    fl_sha256_update(h, "s", 1);
    fl_sha256_update(h, &len, sizeof len);
    fl_sha256_update(h, n->data.scalar.value, len);
  } else if (n->type == YAML_SEQUENCE_NODE) {
    fl_sha256_update(h, "[", 1);
    for (size_t i = 0; i < cy_list_len(n); i++) hash_node(p, h, cy_list_item(p, n, i), depth + 1, false, false);
    fl_sha256_update(h, "]", 1);
  } else if (n->type == YAML_MAPPING_NODE) {
    fl_sha256_update(h, "{", 1);
    for (size_t i = 0; i < cy_map_len(n); i++) {
      yaml_node_t *k = cy_pair_key(p, n, i);
      const char *key = k && k->type == YAML_SCALAR_NODE ? cy_scalar(k) : "";
      if (per_replica(key, top, in_cluster)) continue;
      hash_node(p, h, k, depth + 1, false, false);
      hash_node(p, h, cy_pair_value(p, n, i), depth + 1, false, top && strcmp(key, "cluster") == 0);
    }
    fl_sha256_update(h, "}", 1);
  }
}

static void fleet_hash(parse_ctx_t *p, yaml_node_t *root) {
  fl_sha256_t h;
  uint8_t d[FL_SHA256_LEN];
  fl_sha256_init(&h);
  hash_node(p, &h, root, 0, true, false);
  fl_sha256_final(&h, d);
  for (int i = 0; i < 8; i++) snprintf(p->conf->fleet_hash + 2 * i, 3, "%02x", d[i]);
}

/* A rollout with query checks needs analysis.prometheus; `routes:` may come first. */
static int check_query_checks(parse_ctx_t *p, yaml_node_t *root) {
  const fl_conf_t *c = p->conf;
  yaml_node_t *list = cy_map_get(p, root, "routes");
  for (size_t i = 0; i < c->n_routes && !c->prometheus_url; i++) {
    fl_rollout_spec_t spec;
    char err[256];
    if (c->routes[i].rollout_spec && fl_rollout_spec_parse(c->routes[i].rollout_spec, &spec, err, sizeof err) == 0 &&
        fl_spec_has_query(&spec))
      return cy_fail(p, cy_list_item(p, list, i), "route %s: its rollout has query checks: set analysis.prometheus "
                     "(http://HOST:PORT of the Prometheus to ask)", c->routes[i].name);
  }
  return 0;
}

/* A process's route must exist; `routes:` may come after `processes:`, so this is checked last. */
static int check_process_routes(parse_ctx_t *p, yaml_node_t *root) {
  const fl_conf_t *c = p->conf;
  yaml_node_t *list = cy_map_get(p, root, "processes");
  for (size_t i = 0; i < c->n_processes; i++) {
    const fl_process_conf_t *pc = &c->processes[i];
    if (pc->route && !fl_conf_route(c, pc->route))
      return cy_fail(p, cy_list_item(p, list, i), "process \"%s\": no route named \"%s\"", pc->name, pc->route);
  }
  return 0;
}

static int parse_root(parse_ctx_t *p, yaml_node_t *root) {
  static const yaml_mark_t start = {0, 0, 0};
  if (!root) return cy_fail_mark(p, start, "the configuration is empty; at least one route is required");
  int rc = cy_want_mapping(p, root, "the configuration");
  if (rc == 0) rc = parse_workers(p, root);
  if (rc == 0) rc = cy_walk(p, root, &top_section, p->conf);
  if (rc == 0 && p->conf->n_routes == 0) rc = cy_fail(p, root, "missing \"routes\": at least one route is required");
  if (rc == 0) rc = check_process_routes(p, root);
  if (rc == 0) rc = check_query_checks(p, root);
  if (rc == 0) rc = check_tokens_differ(p, root);
  for (size_t i = 0; rc == 0 && i < p->conf->n_listens; i++)
    if (strcmp(p->conf->listens[i].addr.text, p->conf->admin_listen.text) == 0)
      rc = cy_fail(p, root, "listen and admin.listen are the same address (%s)", p->conf->admin_listen.text);
  if (rc == 0 && p->conf->cluster && !p->conf->cluster->replica) rc = default_replica(p, p->conf->cluster);
  if (rc == 0) inherit_resolve_all(p->conf);
  if (rc == 0) fleet_hash(p, root);
  return rc;
}

/* ---------- freeing ---------- */

static void free_cond(fl_cond_t *c, unsigned workers) {
  free(c->name);
  free(c->value);
  if (c->regex) {
    for (unsigned i = 0; i < workers; i++) regfree(&c->regex[i]);
    free(c->regex);
  }
  free(c->cidrs);
  for (size_t i = 0; i < c->n_values; i++) free(c->values[i]);
  free(c->values);
}

static void free_route(fl_route_t *r, unsigned workers) {
  free(r->name);
  free(r->host);
  free(r->path_prefix);
  for (size_t i = 0; i < r->n_user_key; i++) free(r->user_key[i].name);
  free(r->user_key);
  free(r->salt);
  free(r->segment_header);
  json_decref(r->rollout_spec);
  for (int v = 0; v < FL_NVARIANTS; v++) {
    free(r->variant[v].version);
    free(r->variant[v].model);
    free(r->variant[v].backends);
    for (size_t i = 0; i < r->variant[v].n_names; i++) {
      free(r->variant[v].names[i].host);
      free(r->variant[v].names[i].text);
    }
    free(r->variant[v].names);
    free(r->variant[v].bound);
    free(r->variant[v].backend_series);
    for (size_t i = 0; i < r->variant[v].n_metrics_urls; i++) free(r->variant[v].metrics_urls[i]);
    free(r->variant[v].metrics_urls);
    if (r->variant[v].headers) explicit_bzero(r->variant[v].headers, strlen(r->variant[v].headers));
    free(r->variant[v].headers);
    for (size_t i = 0; i < r->variant[v].n_headers; i++) free(r->variant[v].header_names[i]);
    free(r->variant[v].header_names);
    free(r->variant[v].ca_file);
    free(r->variant[v].server_name);
    fl_tls_client_unref(r->variant[v].tls);
    free(r->variant[v].host_line);
  }
  for (size_t i = 0; i < r->n_rules; i++) {
    for (size_t j = 0; j < r->rules[i].n_conds; j++) free_cond(&r->rules[i].conds[j], workers);
    free(r->rules[i].conds);
  }
  free(r->rules);
}

static void conf_free(fl_conf_t *c) {
  for (size_t i = 0; i < c->n_listens; i++) {
    free_certs(&c->listens[i]);
    fl_tls_server_free(c->listens[i].tls);
  }
  for (size_t i = 0; i < c->n_routes; i++) free_route(&c->routes[i], c->workers);
  free(c->routes);
  free(c->override_from);
  free(c->trusted_proxies);
  free(c->geoip_mmdb);
  free(c->geoip_header);
  free(c->access_log);
  free(c->state_path);
  free(c->admin_token_env);
  free(c->admin_token);
  free(c->admin_token_error);
  free(c->read_token_env);
  free(c->read_token);
  free(c->feedback_token_env);
  free(c->feedback_token);
  for (size_t i = 0; i < c->data.n_refusals; i++) free(c->data.refusals[i]);
  free(c->data.refusals);
  free(c->data.baseline_file);
  free(c->nvml_library);
  for (size_t i = 0; i < c->n_scrape_families; i++) free(c->scrape_families[i]);
  free(c->scrape_families);
  for (size_t i = 0; i < c->n_processes; i++) {
    free(c->processes[i].name);
    free(c->processes[i].cmdline);
    free(c->processes[i].pid_file);
    free(c->processes[i].route);
  }
  free(c->processes);
  free(c->feedback_key_env);
  free(c->prometheus_url);
  if (c->cluster) {
    free(c->cluster->redis);
    free(c->cluster->host);
    free(c->cluster->password_env);
    free(c->cluster->password);
    free(c->cluster->name);
    free(c->cluster->replica);
    free(c->cluster);
  }
  fl_geo_close(c->geo);
  free(c->path);
  free(c->source);
  free(c->warnings);
  free(c);
}

/* ---------- entry points ---------- */

/* libyaml reports reader (encoding) errors by byte offset only; turn that into LINE:COL. */
static yaml_mark_t offset_mark(const char *yaml, size_t len, size_t offset) {
  yaml_mark_t m = {offset, 0, 0};
  for (size_t i = 0; i < offset && i < len; i++) {
    if (yaml[i] == '\n') m.line++, m.column = 0;
    else m.column++;
  }
  return m;
}

static int syntax_error(parse_ctx_t *p, const yaml_parser_t *yp, const char *yaml, size_t len) {
  if (yp->error == YAML_MEMORY_ERROR) return cy_nomem(p);
  const char *problem = yp->problem ? yp->problem : "invalid YAML";
  yaml_mark_t m = yp->problem_mark;
  if (yp->error == YAML_READER_ERROR) m = offset_mark(yaml, len, yp->problem_offset);
  if (yp->context)
    return cy_fail_mark(p, m, "%s (%s that started at %zu:%zu)", problem, yp->context, yp->context_mark.line + 1,
                     yp->context_mark.column + 1);
  return cy_fail_mark(p, m, "%s", problem);
}

/* A second document would be ignored silently; say so instead. */
static int check_single_document(parse_ctx_t *p, yaml_parser_t *yp, const char *yaml, size_t len) {
  yaml_document_t extra;
  if (!yaml_parser_load(yp, &extra)) return syntax_error(p, yp, yaml, len);
  yaml_node_t *root = yaml_document_get_root_node(&extra);
  int rc = root ? cy_fail_mark(p, root->start_mark, "only one YAML document is allowed") : 0;
  yaml_document_delete(&extra);
  return rc;
}

static int build(parse_ctx_t *p, yaml_document_t *doc, const char *source, size_t source_len, fl_conf_t **out) {
  fl_conf_t *c = calloc(1, sizeof *c);
  if (!c) return cy_nomem(p);
  atomic_init(&c->refs, 1);
  set_defaults(c);
  p->doc = doc;
  p->conf = c;
  int rc = cy_dup_into(p, p->name, &c->path);
  if (rc == 0) rc = parse_root(p, yaml_document_get_root_node(doc));
  if (rc == 0 && !(c->source = malloc(source_len + 1))) rc = cy_nomem(p);
  if (rc == 0) {
    memcpy(c->source, source, source_len);
    c->source[source_len] = '\0';
    c->source_len = source_len;
  }
  if (rc) {
    conf_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

int fl_conf_parse(const char *name, const char *yaml, size_t len, fl_conf_t **out, char *err, size_t err_cap) {
  parse_ctx_t p = {.name = name, .err = err, .err_cap = err_cap, .key = ""};
  yaml_parser_t parser;
  yaml_document_t doc;
  int rc;
  *out = NULL;
  if (err && err_cap) err[0] = '\0';
  if (!yaml_parser_initialize(&parser)) return cy_nomem(&p);
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  if (!yaml_parser_load(&parser, &doc)) {
    rc = syntax_error(&p, &parser, yaml, len);
  } else {
    rc = check_single_document(&p, &parser, yaml, len);
    if (rc == 0) rc = build(&p, &doc, yaml, len, out);
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
  return rc;
}

/* Reads the whole file; returns 0 or -errno. */
static int read_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return -errno;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  int rc = buf ? 0 : -ENOMEM;
  while (rc == 0) {
    if (n == cap) {
      char *bigger = realloc(buf, cap * 2);
      if (!bigger) { rc = -ENOMEM; break; }
      buf = bigger, cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) rc = ferror(f) ? -(errno ? errno : EIO) : 1;
  }
  fclose(f);
  if (rc < 0) {
    free(buf);
    return rc;
  }
  *out = buf;
  *len = n;
  return 0;
}

int fl_conf_load(const char *path, fl_conf_t **out, char *err, size_t err_cap) {
  char *buf = NULL;
  size_t len = 0;
  *out = NULL;
  int rc = read_file(path, &buf, &len);
  if (rc) {
    if (err && err_cap) snprintf(err, err_cap, "%s: %s", path, strerror(-rc));
    return rc;
  }
  rc = fl_conf_parse(path, buf, len, out, err, err_cap);
  free(buf);
  return rc;
}

int fl_conf_reparse(const fl_conf_t *c, fl_conf_t **out, char *err, size_t err_cap) {
  return fl_conf_parse(c->path, c->source, c->source_len, out, err, err_cap);
}

void fl_conf_ref(fl_conf_t *c) { atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed); }

void fl_conf_unref(fl_conf_t *c) {
  if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) conf_free(c);
}

bool fl_conf_shared(const fl_conf_t *c) { return atomic_load_explicit(&c->refs, memory_order_acquire) > 1; }

const fl_route_t *fl_conf_route(const fl_conf_t *c, const char *name) {
  for (size_t i = 0; c && name && i < c->n_routes; i++)
    if (strcmp(c->routes[i].name, name) == 0) return &c->routes[i];
  return NULL;
}

void fl_conf_resolve(const fl_conf_t *c, const char *path, char *out, size_t cap) {
  const char *slash = strrchr(c->path, '/');
  if (path[0] == '/' || !slash) snprintf(out, cap, "%s", path);
  else snprintf(out, cap, "%.*s%s", (int)(slash - c->path + 1), c->path, path);
}
