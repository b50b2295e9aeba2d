/* conf.c — turns a YAML file into a validated, immutable fl_conf_t snapshot.
 * libyaml's document API gives a node tree with positions, so every check below
 * can name the key or value at fault as FILE:LINE:COL and a person can fix it in place. */
#include "conf.h"
#include "analysis.h"
#include "geo.h"

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

/* ---------- parse context and error reporting ---------- */

typedef struct parse_ctx {
  yaml_document_t *doc;
  const char *name;                 /* file name used in messages */
  char *err;
  size_t err_cap;
  fl_conf_t *conf;
  const char *key;                  /* key whose value is being read, for messages */
  bool trusted_set;                 /* trusted_cidrs given, even if empty */
  yaml_node_t *route_name_node;     /* where the current route's name is, for duplicates */
  yaml_node_t *canary_rule_node;    /* first rule sending to canary; checked once the whole
                                       route is read, because `canary:` may come after `rules:` */
} parse_ctx_t;

typedef int (*field_fn)(parse_ctx_t *p, yaml_node_t *val, void *slot);

typedef struct section section_t;
typedef struct field {
  const char *key;
  field_fn fn;                      /* called with obj + off ... */
  size_t off;
  const section_t *sub;             /* ... or, when set, a nested mapping filling the same obj */
} field_t;

struct section {
  const char *what;                 /* "canary", "timeouts", ... as messages name it */
  const char *noun;                 /* for unknown keys: "key" unless set */
  const field_t *fields;
  size_t n_fields;
};

static void write_err(parse_ctx_t *p, size_t line, size_t col, const char *fmt, va_list ap) {
  if (!p->err || p->err_cap == 0) return;
  int off = snprintf(p->err, p->err_cap, "%s:%zu:%zu: ", p->name, line, col);
  if (off >= 0 && (size_t)off < p->err_cap) vsnprintf(p->err + off, p->err_cap - (size_t)off, fmt, ap);
}

/* Reports at a libyaml mark (0-based) as 1-based LINE:COL; always returns FL_EINVAL. */
__attribute__((format(printf, 3, 4)))
static int fail_mark(parse_ctx_t *p, yaml_mark_t m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  write_err(p, m.line + 1, m.column + 1, fmt, ap);
  va_end(ap);
  return FL_EINVAL;
}

__attribute__((format(printf, 3, 4)))
static int fail(parse_ctx_t *p, const yaml_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  write_err(p, n->start_mark.line + 1, n->start_mark.column + 1, fmt, ap);
  va_end(ap);
  return FL_EINVAL;
}

static int nomem(parse_ctx_t *p) {
  if (p->err && p->err_cap) snprintf(p->err, p->err_cap, "%s: out of memory", p->name);
  return FL_ENOMEM;
}

/* ---------- node access ---------- */

static yaml_node_t *node_at(parse_ctx_t *p, int index) { return yaml_document_get_node(p->doc, index); }

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static size_t list_len(const yaml_node_t *n) {
  return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static yaml_node_t *list_item(parse_ctx_t *p, const yaml_node_t *n, size_t i) {
  return node_at(p, n->data.sequence.items.start[i]);
}

static size_t map_len(const yaml_node_t *n) {
  return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

static yaml_node_t *pair_key(parse_ctx_t *p, const yaml_node_t *n, size_t i) {
  return node_at(p, n->data.mapping.pairs.start[i].key);
}

static yaml_node_t *pair_value(parse_ctx_t *p, const yaml_node_t *n, size_t i) {
  return node_at(p, n->data.mapping.pairs.start[i].value);
}

/* Value of a scalar key in a mapping, or NULL. */
static yaml_node_t *map_get(parse_ctx_t *p, const yaml_node_t *map, const char *key) {
  for (size_t i = 0; i < map_len(map); i++) {
    yaml_node_t *k = pair_key(p, map, i);
    if (k->type == YAML_SCALAR_NODE && strcmp(scalar(k), key) == 0) return pair_value(p, map, i);
  }
  return NULL;
}

/* An empty value, `~` or `null` written without quotes: "not set" for optional strings. */
static bool is_null(const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
  const char *s = scalar(n);
  return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static const char *node_kind(const yaml_node_t *n) {
  return n->type == YAML_MAPPING_NODE ? "mapping" : n->type == YAML_SEQUENCE_NODE ? "list" : "value";
}

static int want_mapping(parse_ctx_t *p, yaml_node_t *n, const char *what) {
  return n->type == YAML_MAPPING_NODE ? 0 : fail(p, n, "%s must be a mapping, not a %s", what, node_kind(n));
}

static int want_list(parse_ctx_t *p, yaml_node_t *n, const char *what) {
  return n->type == YAML_SEQUENCE_NODE ? 0 : fail(p, n, "%s must be a list, not a %s", what, node_kind(n));
}

static int want_scalar(parse_ctx_t *p, yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE) return fail(p, n, "%s must be a single value, not a %s", p->key, node_kind(n));
  /* A quoted "\0" would silently cut the string short everywhere it is used later. */
  if (strlen(scalar(n)) != n->data.scalar.length) return fail(p, n, "%s must not contain a NUL byte", p->key);
  return 0;
}

/* ---------- mapping walker ---------- */

/* Levenshtein distance for "did you mean"; long keys are never close to ours. */
static unsigned edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned row[32];
  if (la >= 32 || lb >= 32) return UINT_MAX;
  for (size_t j = 0; j <= lb; j++) row[j] = (unsigned)j;
  for (size_t i = 1; i <= la; i++) {
    unsigned diag = row[0];
    row[0] = (unsigned)i;
    for (size_t j = 1; j <= lb; j++) {
      unsigned up = row[j];
      unsigned best = FL_MIN(row[j] + 1, row[j - 1] + 1);
      row[j] = FL_MIN(best, diag + (a[i - 1] != b[j - 1]));
      diag = up;
    }
  }
  return row[lb];
}

static int unknown_key(parse_ctx_t *p, yaml_node_t *key, const section_t *s) {
  const char *best = NULL;
  unsigned best_d = 3;
  for (size_t i = 0; i < s->n_fields; i++) {
    unsigned d = edit_distance(scalar(key), s->fields[i].key);
    if (d < best_d) best_d = d, best = s->fields[i].key;
  }
  char hint[64] = "";
  if (best) snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", best);
  if (s->noun) return fail(p, key, "unknown %s \"%s\"%s", s->noun, scalar(key), hint);
  return fail(p, key, "unknown key \"%s\" in %s%s", scalar(key), s->what, hint);
}

/* Keys must be plain strings and appear once; YAML itself would let the last one win silently. */
static int check_keys(parse_ctx_t *p, yaml_node_t *map, const char *what) {
  for (size_t i = 0; i < map_len(map); i++) {
    yaml_node_t *k = pair_key(p, map, i);
    if (k->type != YAML_SCALAR_NODE) return fail(p, k, "keys in %s must be plain strings", what);
    for (size_t j = 0; j < i; j++)
      if (strcmp(scalar(pair_key(p, map, j)), scalar(k)) == 0)
        return fail(p, k, "duplicate key \"%s\" in %s", scalar(k), what);
  }
  return 0;
}

static const field_t *find_field(const section_t *s, const char *key) {
  for (size_t i = 0; i < s->n_fields; i++)
    if (strcmp(s->fields[i].key, key) == 0) return &s->fields[i];
  return NULL;
}

/* Dispatches each key of `map` to its field; obj is the struct the offsets refer to. */
static int walk(parse_ctx_t *p, yaml_node_t *map, const section_t *s, void *obj) {
  const char *outer_key = p->key;
  int rc = want_mapping(p, map, s->what);
  if (rc == 0) rc = check_keys(p, map, s->what);
  for (size_t i = 0; rc == 0 && i < map_len(map); i++) {
    yaml_node_t *k = pair_key(p, map, i), *v = pair_value(p, map, i);
    const field_t *f = find_field(s, scalar(k));
    if (!f) {
      rc = unknown_key(p, k, s);
    } else {
      p->key = f->key;
      rc = f->sub ? walk(p, v, f->sub, obj) : f->fn(p, v, (char *)obj + f->off);
    }
  }
  p->key = outer_key;
  return rc;
}

/* ---------- scalar values ---------- */

static int dup_into(parse_ctx_t *p, const char *s, char **out) {
  char *copy = strdup(s);
  if (!copy) return nomem(p);
  *out = copy;
  return 0;
}

static int get_str(parse_ctx_t *p, yaml_node_t *n, char **out) {
  int rc = want_scalar(p, n);
  if (rc) return rc;
  if (!*scalar(n)) return fail(p, n, "%s must not be empty", p->key);
  return dup_into(p, scalar(n), out);
}

static void lower(char *s) {
  for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

static bool is_token(const char *s, size_t len) {
  if (len == 0) return false;
  for (size_t i = 0; i < len; i++)
    if (!isalnum((unsigned char)s[i]) && !strchr("!#$%&'*+-.^_`|~", s[i])) return false;
  return true;
}

/* Header names are compared lower-cased on the request path, so store them that way. */
static int get_header_name(parse_ctx_t *p, yaml_node_t *n, char **out) {
  int rc = get_str(p, n, out);
  if (rc) return rc;
  if (!is_token(*out, strlen(*out))) return fail(p, n, "bad header name \"%s\"", *out);
  lower(*out);
  return 0;
}

static bool parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (!*s) return false;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return false;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

static int get_uint(parse_ctx_t *p, yaml_node_t *n, uint64_t max, uint64_t *out) {
  int rc = want_scalar(p, n);
  if (rc) return rc;
  if (!parse_u64(scalar(n), out) || *out == 0) return fail(p, n, "%s must be a positive integer, not \"%s\"", p->key, scalar(n));
  if (*out > max) return fail(p, n, "%s must be at most %" PRIu64, p->key, max);
  return 0;
}

/* "500ms", "10s", "2m", "1h" or bare seconds. */
static int get_duration(parse_ctx_t *p, yaml_node_t *n, uint32_t *out_ms) {
  static const struct { const char *suffix; uint64_t ms; } units[] = {
    {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
  };
  int rc = want_scalar(p, n);
  if (rc) return rc;
  const char *s = scalar(n);
  size_t digits = strspn(s, "0123456789");
  char number[21];
  uint64_t v;
  if (digits == 0 || digits >= sizeof number) goto bad;
  memcpy(number, s, digits);
  number[digits] = '\0';
  if (!parse_u64(number, &v)) goto bad;
  for (size_t i = 0; i < FL_ARRAY_LEN(units); i++) {
    if (strcmp(s + digits, units[i].suffix) != 0) continue;
    if (v == 0) return fail(p, n, "%s must be greater than zero", p->key);
    if (v > UINT32_MAX / units[i].ms) return fail(p, n, "%s \"%s\" is too long", p->key, s);
    *out_ms = (uint32_t)(v * units[i].ms);
    return 0;
  }
bad:
  return fail(p, n, "bad duration \"%s\" for %s (use e.g. 500ms, 10s, 2m, 1h)", s, p->key);
}

/* Percent with at most two decimals → basis points, so the router never sees floats. */
static int get_weight(parse_ctx_t *p, yaml_node_t *n, uint32_t *bp) {
  int rc = want_scalar(p, n);
  if (rc) return rc;
  const char *s = scalar(n), *c = s;
  bool negative = (*c == '-');
  if (negative) c++;
  size_t int_digits = strspn(c, "0123456789"), frac_digits = 0;
  if (int_digits == 0 || int_digits > 9) goto bad;
  uint64_t v = (uint64_t)strtoull(c, NULL, 10) * 100;
  c += int_digits;
  if (*c == '.') {
    frac_digits = strspn(++c, "0123456789");
    if (frac_digits == 0) goto bad;
    if (frac_digits > 2) return fail(p, n, "weight \"%s\" has more than two decimals", s);
    v += (uint64_t)(c[0] - '0') * 10 + (frac_digits == 2 ? (uint64_t)(c[1] - '0') : 0);
    c += frac_digits;
  }
  if (*c) goto bad;
  if (v > 10000 || (negative && v > 0)) return fail(p, n, "weight must be between 0 and 100, not %s", s);
  *bp = (uint32_t)v;
  return 0;
bad:
  return fail(p, n, "weight must be a number between 0 and 100, not \"%s\"", s);
}

static int get_bool(parse_ctx_t *p, yaml_node_t *n, bool *out) {
  static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
  int rc = want_scalar(p, n);
  if (rc) return rc;
  const char *s = scalar(n);
  for (size_t i = 0; i < FL_ARRAY_LEN(yes); i++) {
    if (fl_streq_ci(s, strlen(s), yes[i])) return *out = true, 0;
    if (fl_streq_ci(s, strlen(s), no[i])) return *out = false, 0;
  }
  return fail(p, n, "%s must be true or false, not \"%s\"", p->key, s);
}

static int get_addr(parse_ctx_t *p, yaml_node_t *n, fl_addr_t *out) {
  int rc = want_scalar(p, n);
  if (rc) return rc;
  if (fl_addr_parse(scalar(n), out) != 0)
    return fail(p, n, "bad address \"%s\" (expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)", scalar(n));
  return 0;
}

/* ---------- lists ---------- */

/* Allocates a zeroed array of n items; n == 0 leaves it NULL. */
static int alloc_items(parse_ctx_t *p, size_t n, size_t size, void **out) {
  *out = NULL;
  if (n == 0) return 0;
  *out = calloc(n, size);
  return *out ? 0 : nomem(p);
}

static int get_cidrs(parse_ctx_t *p, yaml_node_t *n, fl_cidr_t **out, size_t *n_out) {
  int rc = want_list(p, n, p->key);
  if (rc == 0) rc = alloc_items(p, list_len(n), sizeof **out, (void **)out);
  if (rc) return rc;
  *n_out = list_len(n);
  for (size_t i = 0; i < *n_out; i++) {
    yaml_node_t *item = list_item(p, n, i);
    if ((rc = want_scalar(p, item)) != 0) return rc;
    if (fl_cidr_parse(scalar(item), &(*out)[i]) != 0) return fail(p, item, "bad CIDR block \"%s\"", scalar(item));
  }
  return 0;
}

typedef int (*item_check_fn)(parse_ctx_t *p, yaml_node_t *n, char *value);

/* A non-empty list of strings; the array is owned by the caller's struct as soon as
 * it exists, so a failure half-way leaves nothing for this function to undo. */
static int get_str_list(parse_ctx_t *p, yaml_node_t *n, char ***out, size_t *n_out, item_check_fn check) {
  int rc = want_list(p, n, p->key);
  if (rc) return rc;
  if (list_len(n) == 0) return fail(p, n, "%s must list at least one value", p->key);
  if ((rc = alloc_items(p, list_len(n), sizeof **out, (void **)out)) != 0) return rc;
  *n_out = list_len(n);
  for (size_t i = 0; i < *n_out && rc == 0; i++) {
    yaml_node_t *item = list_item(p, n, i);
    rc = get_str(p, item, &(*out)[i]);
    if (rc == 0 && check) rc = check(p, item, (*out)[i]);
  }
  return rc;
}

/* ---------- top-level fields ---------- */

static int f_addr(parse_ctx_t *p, yaml_node_t *v, void *slot) { return get_addr(p, v, slot); }
static int f_duration(parse_ctx_t *p, yaml_node_t *v, void *slot) { return get_duration(p, v, slot); }
static int f_bool(parse_ctx_t *p, yaml_node_t *v, void *slot) { return get_bool(p, v, slot); }
static int f_str(parse_ctx_t *p, yaml_node_t *v, void *slot) { return get_str(p, v, slot); }
static int f_header_name(parse_ctx_t *p, yaml_node_t *v, void *slot) { return get_header_name(p, v, slot); }
static int f_noop(parse_ctx_t *p, yaml_node_t *v, void *slot) { return 0; }

static int f_opt_str(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  return is_null(v) ? 0 : get_str(p, v, slot);
}

/* The model name is spliced into JSON bodies as it is, so it may not need escaping. */
static int f_model(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = f_opt_str(p, v, slot);
  const char *m = *(char **)slot;
  for (size_t i = 0; rc == 0 && m && m[i]; i++)
    if (m[i] == '"' || m[i] == '\\' || (unsigned char)m[i] < 0x20)
      rc = fail(p, v, "model must not contain quotes, backslashes or control characters");
  return rc;
}

static int f_u32(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  uint64_t n;
  int rc = get_uint(p, v, UINT32_MAX, &n);
  if (rc == 0) *(uint32_t *)slot = (uint32_t)n;
  return rc;
}

static int f_u64(parse_ctx_t *p, yaml_node_t *v, void *slot) { return get_uint(p, v, UINT64_MAX, slot); }

static int f_trusted(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  p->trusted_set = true;
  return get_cidrs(p, v, &c->trusted, &c->n_trusted);
}

static unsigned online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > FL_MAX_WORKERS ? FL_MAX_WORKERS : (unsigned)n;
}

/* Read before everything else: header_regex compiles one copy per worker. */
static int parse_workers(parse_ctx_t *p, yaml_node_t *root) {
  yaml_node_t *n = map_get(p, root, "workers");
  uint64_t v;
  p->conf->workers = online_cpus();
  if (!n) return 0;
  p->key = "workers";
  int rc = want_scalar(p, n);
  if (rc || strcmp(scalar(n), "auto") == 0) return rc;
  if (!parse_u64(scalar(n), &v) || v < 1 || v > FL_MAX_WORKERS)
    return fail(p, n, "workers must be auto or an integer from 1 to %d, not \"%s\"", FL_MAX_WORKERS, scalar(n));
  p->conf->workers = (unsigned)v;
  return 0;
}

/* ---------- rules ---------- */

static int push_cond(parse_ctx_t *p, fl_rule_t *rule, fl_cond_kind_t kind, fl_cond_t **out) {
  fl_cond_t *conds = realloc(rule->conds, (rule->n_conds + 1) * sizeof *conds);
  if (!conds) return nomem(p);
  rule->conds = conds;
  *out = &conds[rule->n_conds++];
  memset(*out, 0, sizeof **out);
  (*out)->kind = kind;
  return 0;
}

/* glibc's regexec takes a lock inside a shared regex_t, so each worker gets its own copy. */
static int compile_regex(parse_ctx_t *p, yaml_node_t *n, fl_cond_t *c) {
  unsigned workers = p->conf->workers;
  regex_t *rx = calloc(workers, sizeof *rx);
  if (!rx) return nomem(p);
  for (unsigned i = 0; i < workers; i++) {
    int rc = regcomp(&rx[i], c->value, REG_EXTENDED | REG_NOSUB);
    if (rc == 0) continue;
    char msg[128];
    regerror(rc, &rx[i], msg, sizeof msg);
    while (i--) regfree(&rx[i]);
    free(rx);
    return fail(p, n, "bad regex \"%s\": %s", c->value, msg);
  }
  c->regex = rx;
  return 0;
}

/* header/header_regex/cookie/query: { NAME: VALUE, ... }, one condition per pair. */
static int parse_pairs(parse_ctx_t *p, yaml_node_t *map, fl_rule_t *rule, fl_cond_kind_t kind) {
  const char *what = p->key;
  bool is_header = (kind == FL_COND_HEADER || kind == FL_COND_HEADER_REGEX);
  int rc = want_mapping(p, map, what);
  if (rc == 0) rc = check_keys(p, map, what);
  if (rc == 0 && map_len(map) == 0) rc = fail(p, map, "%s must name at least one %s", what, is_header ? "header" : what);
  for (size_t i = 0; rc == 0 && i < map_len(map); i++) {
    yaml_node_t *k = pair_key(p, map, i), *v = pair_value(p, map, i);
    fl_cond_t *c;
    if ((rc = push_cond(p, rule, kind, &c)) != 0) break;
    rc = is_header ? get_header_name(p, k, &c->name) : get_str(p, k, &c->name);
    if (rc == 0) rc = get_str(p, v, &c->value);
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
  if (rc == 0) rc = get_cidrs(p, v, &c->cidrs, &c->n_cidrs);
  if (rc == 0 && c->n_cidrs == 0) rc = fail(p, v, "cidr must list at least one block");
  return rc;
}

static int check_country(parse_ctx_t *p, yaml_node_t *n, char *value) {
  if (strlen(value) != 2 || !isalpha((unsigned char)value[0]) || !isalpha((unsigned char)value[1]))
    return fail(p, n, "bad country code \"%s\" (expected two letters, e.g. DE)", value);
  value[0] = (char)toupper((unsigned char)value[0]);
  value[1] = (char)toupper((unsigned char)value[1]);
  return 0;
}

static int f_cond_country(parse_ctx_t *p, yaml_node_t *v, void *rule) {
  fl_cond_t *c = NULL;
  int rc = push_cond(p, rule, FL_COND_COUNTRY, &c);
  return rc ? rc : get_str_list(p, v, &c->values, &c->n_values, check_country);
}

static int f_cond_segment(parse_ctx_t *p, yaml_node_t *v, void *rule) {
  fl_cond_t *c = NULL;
  int rc = push_cond(p, rule, FL_COND_SEGMENT, &c);
  return rc ? rc : get_str_list(p, v, &c->values, &c->n_values, NULL);
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
  int rc = walk(p, v, &cond_section, rule);
  if (rc == 0 && rule->n_conds == 0) rc = fail(p, v, "rule match needs at least one condition");
  return rc;
}

static int f_rule_variant(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_rule_t *rule = slot;
  int rc = want_scalar(p, v);
  if (rc) return rc;
  if (strcmp(scalar(v), "stable") == 0) {
    rule->variant = FL_STABLE;
  } else if (strcmp(scalar(v), "canary") == 0) {
    rule->variant = FL_CANARY;
    if (!p->canary_rule_node) p->canary_rule_node = v;
  } else {
    return fail(p, v, "variant must be stable or canary, not \"%s\"", scalar(v));
  }
  return 0;
}

static const field_t rule_fields[] = {
  {"match", f_rule_match, 0, NULL},
  {"variant", f_rule_variant, 0, NULL},
};
static const section_t rule_section = {"rule", NULL, rule_fields, FL_ARRAY_LEN(rule_fields)};

static int parse_rule(parse_ctx_t *p, yaml_node_t *map, fl_rule_t *rule) {
  int rc = walk(p, map, &rule_section, rule);
  if (rc) return rc;
  if (!map_get(p, map, "match")) return fail(p, map, "rule needs a match");
  if (!map_get(p, map, "variant")) return fail(p, map, "rule needs a variant (stable or canary)");
  rule->line = (unsigned)map->start_mark.line + 1;
  return 0;
}

static int f_rules(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_route_t *r = slot;
  int rc = want_list(p, v, "rules");
  if (rc == 0) rc = alloc_items(p, list_len(v), sizeof *r->rules, (void **)&r->rules);
  if (rc) return rc;
  r->n_rules = list_len(v);
  for (size_t i = 0; i < r->n_rules && rc == 0; i++) rc = parse_rule(p, list_item(p, v, i), &r->rules[i]);
  return rc;
}

/* ---------- routes ---------- */

static int f_backends(parse_ctx_t *p, yaml_node_t *n, void *slot) {
  fl_variant_conf_t *v = slot;
  int rc = want_list(p, n, "backends");
  if (rc == 0 && list_len(n) == 0) rc = fail(p, n, "backends must list at least one address");
  if (rc == 0) rc = alloc_items(p, list_len(n), sizeof *v->backends, (void **)&v->backends);
  if (rc) return rc;
  v->n_backends = list_len(n);
  for (size_t i = 0; i < v->n_backends && rc == 0; i++) rc = get_addr(p, list_item(p, n, i), &v->backends[i]);
  return rc;
}

static int f_weight(parse_ctx_t *p, yaml_node_t *v, void *slot) { return get_weight(p, v, slot); }

/* Versions label metrics and are kept in the state store: short, printable. */
static int f_version(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = get_str(p, v, slot);
  const char *s = *(char **)slot;
  for (size_t i = 0; rc == 0 && s[i]; i++)
    if ((unsigned char)s[i] < 0x21 || s[i] == '"' || s[i] == '\\') rc = fail(p, v, "version must be printable, without spaces or quotes");
  if (rc == 0 && strlen(s) > 63) rc = fail(p, v, "version is longer than 63 characters");
  return rc;
}

#define VARIANT_FIELDS(id)                                                          \
  {"version", f_version, offsetof(fl_route_t, variant[id].version), NULL},          \
  {"model", f_model, offsetof(fl_route_t, variant[id].model), NULL},              \
  {"backends", f_backends, offsetof(fl_route_t, variant[id]), NULL}

static const field_t stable_fields[] = {VARIANT_FIELDS(FL_STABLE)};
static const field_t canary_fields[] = {
  VARIANT_FIELDS(FL_CANARY),
  {"weight", f_weight, offsetof(fl_route_t, canary_weight_bp), NULL},
};
static const section_t stable_section = {"stable", NULL, stable_fields, FL_ARRAY_LEN(stable_fields)};
static const section_t canary_section = {"canary", NULL, canary_fields, FL_ARRAY_LEN(canary_fields)};

static int parse_variant(parse_ctx_t *p, yaml_node_t *map, fl_route_t *r, fl_variant_id_t id, const section_t *s) {
  int rc = walk(p, map, s, r);
  if (rc) return rc;
  if (!r->variant[id].version) return fail(p, map, "%s needs a version", s->what);
  if (!r->variant[id].n_backends) return fail(p, map, "%s needs at least one backend", s->what);
  return 0;
}

static int f_stable(parse_ctx_t *p, yaml_node_t *v, void *r) { return parse_variant(p, v, r, FL_STABLE, &stable_section); }

static int f_canary(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_route_t *r = slot;
  r->has_canary = true;
  return parse_variant(p, v, r, FL_CANARY, &canary_section);
}

static int f_route_name(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  char **name = slot;
  int rc = get_str(p, v, name);
  if (rc) return rc;
  if (strspn(*name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != strlen(*name))
    return fail(p, v, "bad route name \"%s\" (use letters, digits, '_', '.' and '-')", *name);
  if (strlen(*name) > 63) return fail(p, v, "route name is longer than 63 characters");
  p->route_name_node = v;
  return 0;
}

static int f_path_prefix(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_route_t *r = slot;
  int rc = get_str(p, v, &r->path_prefix);
  if (rc) return rc;
  if (r->path_prefix[0] != '/') return fail(p, v, "path_prefix must start with \"/\", not \"%s\"", r->path_prefix);
  r->path_prefix_len = strlen(r->path_prefix);
  return 0;
}

/* Host names are case-insensitive; the router compares against a lower-cased Host. */
static int f_host(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = get_str(p, v, slot);
  if (rc == 0) lower(*(char **)slot);
  return rc;
}

static int parse_key_source(parse_ctx_t *p, yaml_node_t *n, fl_key_source_t *k) {
  static const struct { const char *prefix; fl_key_kind_t kind; } kinds[] = {
    {"header:", FL_KEY_HEADER}, {"cookie:", FL_KEY_COOKIE}, {"query:", FL_KEY_QUERY}, {"json:", FL_KEY_JSON},
  };
  int rc = want_scalar(p, n);
  if (rc) return rc;
  const char *s = scalar(n);
  if (strcmp(s, "ip") == 0) return k->kind = FL_KEY_IP, 0;
  for (size_t i = 0; i < FL_ARRAY_LEN(kinds); i++) {
    size_t plen = strlen(kinds[i].prefix);
    if (strncmp(s, kinds[i].prefix, plen) != 0) continue;
    const char *name = s + plen;
    k->kind = kinds[i].kind;
    if (!*name) return fail(p, n, "user_key source \"%s\" needs a name after the colon", s);
    if (k->kind == FL_KEY_HEADER && !is_token(name, strlen(name))) return fail(p, n, "bad header name \"%s\"", name);
    if ((rc = dup_into(p, name, &k->name)) == 0 && k->kind == FL_KEY_HEADER) lower(k->name);
    return rc;
  }
  return fail(p, n, "unknown user_key source \"%s\" (use header:NAME, cookie:NAME, query:NAME, json:FIELD or ip)", s);
}

static int f_user_key(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_route_t *r = slot;
  int rc = want_list(p, v, "user_key");
  if (rc == 0) rc = alloc_items(p, list_len(v), sizeof *r->user_key, (void **)&r->user_key);
  if (rc) return rc;
  r->n_user_key = list_len(v);
  for (size_t i = 0; i < r->n_user_key && rc == 0; i++) rc = parse_key_source(p, list_item(p, v, i), &r->user_key[i]);
  return rc;
}

static const field_t route_match_fields[] = {
  {"path_prefix", f_path_prefix, 0, NULL},
  {"host", f_host, offsetof(fl_route_t, host), NULL},
};
static const section_t route_match_section = {"route match", NULL, route_match_fields, FL_ARRAY_LEN(route_match_fields)};

/* YAML → JSON for the rollout spec: plain scalars that read as numbers or booleans become those,
 * everything else a string; the spec's own parser then validates it. */
static json_t *yaml_json(parse_ctx_t *p, yaml_node_t *n) {
  if (n->type == YAML_MAPPING_NODE) {
    json_t *o = json_object();
    for (size_t i = 0; i < map_len(n); i++)
      json_object_set_new(o, scalar(pair_key(p, n, i)), yaml_json(p, pair_value(p, n, i)));
    return o;
  }
  if (n->type == YAML_SEQUENCE_NODE) {
    json_t *a = json_array();
    for (size_t i = 0; i < list_len(n); i++) json_array_append_new(a, yaml_json(p, list_item(p, n, i)));
    return a;
  }
  const char *v = scalar(n);
  char *end;
  double d = strtod(v, &end);
  bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  if (plain && *v && !*end) return strchr(v, '.') || strchr(v, 'e') ? json_real(d) : json_integer((json_int_t)d);
  if (plain && (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)) return json_boolean(v[0] == 't');
  return json_string(v);
}

static int f_rollout(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_route_t *r = slot;
  int rc = want_mapping(p, v, "rollout");
  if (rc) return rc;
  json_t *spec = yaml_json(p, v);
  fl_rollout_spec_t parsed;
  char err[256];
  if (fl_rollout_spec_parse(spec, &parsed, err, sizeof err) != 0) {
    json_decref(spec);
    return fail(p, v, "rollout: %s", err);
  }
  r->rollout_spec = spec;
  return 0;
}

static const field_t route_fields[] = {
  {"rollout", f_rollout, 0, NULL},
  {"name", f_route_name, offsetof(fl_route_t, name), NULL},
  {"match", NULL, 0, &route_match_section},
  {"user_key", f_user_key, 0, NULL},
  {"salt", f_str, offsetof(fl_route_t, salt), NULL},
  {"segment_header", f_header_name, offsetof(fl_route_t, segment_header), NULL},
  {"stable", f_stable, 0, NULL},
  {"canary", f_canary, 0, NULL},
  {"rules", f_rules, 0, NULL},
};
static const section_t route_section = {"route", NULL, route_fields, FL_ARRAY_LEN(route_fields)};

static int route_defaults(parse_ctx_t *p, fl_route_t *r) {
  int rc = 0;
  if (!r->path_prefix && (rc = dup_into(p, "/", &r->path_prefix)) == 0) r->path_prefix_len = 1;
  if (rc == 0 && !r->salt) rc = dup_into(p, r->name, &r->salt);
  if (rc == 0 && !r->segment_header) rc = dup_into(p, "x-user-segment", &r->segment_header);
  return rc;
}

static int parse_route(parse_ctx_t *p, yaml_node_t *map, fl_route_t *r) {
  p->route_name_node = NULL;
  p->canary_rule_node = NULL;
  int rc = walk(p, map, &route_section, r);
  if (rc) return rc;
  if (!r->name) return fail(p, map, "route needs a name");
  if (!r->variant[FL_STABLE].version) return fail(p, map, "route \"%s\" needs a stable section", r->name);
  if (p->canary_rule_node && !r->has_canary)
    return fail(p, p->canary_rule_node, "rule sends traffic to canary but route \"%s\" has no canary section", r->name);
  return route_defaults(p, r);
}

static int f_routes(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  int rc = want_list(p, v, "routes");
  if (rc == 0 && list_len(v) == 0) rc = fail(p, v, "routes must list at least one route");
  if (rc == 0) rc = alloc_items(p, list_len(v), sizeof *c->routes, (void **)&c->routes);
  if (rc) return rc;
  c->n_routes = list_len(v);
  for (size_t i = 0; i < c->n_routes; i++) {
    if ((rc = parse_route(p, list_item(p, v, i), &c->routes[i])) != 0) return rc;
    for (size_t j = 0; j < i; j++)
      if (strcmp(c->routes[j].name, c->routes[i].name) == 0)
        return fail(p, p->route_name_node, "duplicate route name \"%s\"", c->routes[i].name);
  }
  return 0;
}

/* ---------- top level ---------- */

/* The token itself never sits in the file: it is read from the named environment variable. */
static int f_token_env(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  int rc = get_str(p, v, &c->admin_token_env);
  if (rc) return rc;
  const char *token = getenv(c->admin_token_env);
  if (token && strlen(token) >= 16) return dup_into(p, token, &c->admin_token);
  char msg[512];
  snprintf(msg, sizeof msg, "%s:%zu:%zu: admin.token_env: environment variable %s must hold a token of at least 16 "
           "characters", p->name, v->start_mark.line + 1, v->start_mark.column + 1, c->admin_token_env);
  return dup_into(p, msg, &c->admin_token_error);
}

static const field_t admin_fields[] = {{"listen", f_addr, offsetof(fl_conf_t, admin_listen), NULL},
                                       {"token_env", f_token_env, 0, NULL}};
static const section_t admin_section = {"admin", NULL, admin_fields, FL_ARRAY_LEN(admin_fields)};

static const field_t geoip_fields[] = {
  {"mmdb", f_opt_str, offsetof(fl_conf_t, geoip_mmdb), NULL},
  {"header", f_header_name, offsetof(fl_conf_t, geoip_header), NULL},
};
static const section_t geoip_section = {"geoip", NULL, geoip_fields, FL_ARRAY_LEN(geoip_fields)};

static const field_t timeout_fields[] = {
  {"connect", f_duration, offsetof(fl_conf_t, timeouts.connect_ms), NULL},
  {"header", f_duration, offsetof(fl_conf_t, timeouts.header_ms), NULL},
  {"first_byte", f_duration, offsetof(fl_conf_t, timeouts.first_byte_ms), NULL},
  {"idle", f_duration, offsetof(fl_conf_t, timeouts.idle_ms), NULL},
  {"drain", f_duration, offsetof(fl_conf_t, timeouts.drain_ms), NULL},
};
static const section_t timeout_section = {"timeouts", NULL, timeout_fields, FL_ARRAY_LEN(timeout_fields)};

static const field_t limit_fields[] = {
  {"header_bytes", f_u32, offsetof(fl_conf_t, limits.header_bytes), NULL},
  {"headers", f_u32, offsetof(fl_conf_t, limits.headers), NULL},
  {"body_bytes", f_u64, offsetof(fl_conf_t, limits.body_bytes), NULL},
  {"inspect_body_bytes", f_u32, offsetof(fl_conf_t, limits.inspect_body_bytes), NULL},
};
static const section_t limit_section = {"limits", NULL, limit_fields, FL_ARRAY_LEN(limit_fields)};

/* "auto" or a share in [0, 1]. */
static int f_sample(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = want_scalar(p, v);
  if (rc) return rc;
  char *end;
  double share = strtod(scalar(v), &end);
  if (strcmp(scalar(v), "auto") == 0) share = -1;
  else if (end == scalar(v) || *end || !(share >= 0 && share <= 1))
    return fail(p, v, "data.sample must be \"auto\" or a share from 0 to 1, not \"%s\"", scalar(v));
  *(int32_t *)slot = share < 0 ? -1 : (int32_t)lround(share * 1e6);
  return 0;
}

static int check_regex(parse_ctx_t *p, yaml_node_t *n, char *value) {
  regex_t re;
  int rc = regcomp(&re, value, REG_EXTENDED | REG_ICASE | REG_NOSUB);
  if (rc == 0) {
    regfree(&re);
    return 0;
  }
  char why[128];
  regerror(rc, &re, why, sizeof why);
  return fail(p, n, "bad regex \"%s\": %s", value, why);
}

static int f_refusals(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  fl_conf_t *c = slot;
  return get_str_list(p, v, &c->data.refusals, &c->data.n_refusals, check_regex);
}

static const field_t data_fields[] = {
  {"sample", f_sample, offsetof(fl_conf_t, data.sample_ppm), NULL},
  {"max_body", f_u32, offsetof(fl_conf_t, data.max_body), NULL},
  {"window", f_duration, offsetof(fl_conf_t, data.window_ms), NULL},
  {"refresh", f_duration, offsetof(fl_conf_t, data.refresh_ms), NULL},
  {"baseline_capture", f_duration, offsetof(fl_conf_t, data.baseline_capture_ms), NULL},
  {"baseline_file", f_opt_str, offsetof(fl_conf_t, data.baseline_file), NULL},
  {"refusal_patterns", f_refusals, 0, NULL},
};
static const section_t data_section = {"data", NULL, data_fields, FL_ARRAY_LEN(data_fields)};

static const field_t feedback_fields[] = {{"key_env", f_str, offsetof(fl_conf_t, feedback_key_env), NULL}};
static const section_t feedback_section = {"feedback", NULL, feedback_fields, FL_ARRAY_LEN(feedback_fields)};

static const field_t top_fields[] = {
  {"listen", f_addr, offsetof(fl_conf_t, listen), NULL},
  {"workers", f_noop, 0, NULL},  /* read first, by parse_workers */
  {"admin", NULL, 0, &admin_section},
  {"trusted_cidrs", f_trusted, 0, NULL},
  {"geoip", NULL, 0, &geoip_section},
  {"timeouts", NULL, 0, &timeout_section},
  {"limits", NULL, 0, &limit_section},
  {"response_headers", f_bool, offsetof(fl_conf_t, response_headers), NULL},
  {"metrics", f_bool, offsetof(fl_conf_t, metrics), NULL},
  {"access_log", f_opt_str, offsetof(fl_conf_t, access_log), NULL},
  {"state", f_opt_str, offsetof(fl_conf_t, state_path), NULL},
  {"data", NULL, 0, &data_section},
  {"feedback", NULL, 0, &feedback_section},
  {"routes", f_routes, 0, NULL},
};
static const section_t top_section = {"configuration", NULL, top_fields, FL_ARRAY_LEN(top_fields)};

static void set_defaults(fl_conf_t *c) {
  fl_addr_parse("127.0.0.1:8080", &c->listen);
  fl_addr_parse("127.0.0.1:9090", &c->admin_listen);
  c->workers = 1;
  c->timeouts.connect_ms = 2000;
  c->timeouts.header_ms = 10000;
  c->timeouts.first_byte_ms = 60000;
  c->timeouts.idle_ms = 60000;
  c->timeouts.drain_ms = 30000;
  c->limits.header_bytes = 65536;
  c->limits.headers = 100;
  c->limits.body_bytes = 104857600;
  c->limits.inspect_body_bytes = 1048576;
  c->response_headers = true;
  c->metrics = true;
  c->data.sample_ppm = -1;
  c->data.max_body = 262144;
  c->data.window_ms = 300000;
  c->data.refresh_ms = 10000;
  c->data.baseline_capture_ms = 600000;
}

static int default_trusted(parse_ctx_t *p, fl_conf_t *c) {
  int rc = alloc_items(p, 2, sizeof *c->trusted, (void **)&c->trusted);
  if (rc) return rc;
  c->n_trusted = 2;
  fl_cidr_parse("127.0.0.0/8", &c->trusted[0]);
  fl_cidr_parse("::1/128", &c->trusted[1]);
  return 0;
}

static int parse_root(parse_ctx_t *p, yaml_node_t *root) {
  static const yaml_mark_t start = {0, 0, 0};
  if (!root) return fail_mark(p, start, "the configuration is empty; at least one route is required");
  int rc = want_mapping(p, root, "the configuration");
  if (rc == 0) rc = parse_workers(p, root);
  if (rc == 0) rc = walk(p, root, &top_section, p->conf);
  if (rc == 0 && p->conf->n_routes == 0) rc = fail(p, root, "missing \"routes\": at least one route is required");
  if (rc == 0 && !p->trusted_set) rc = default_trusted(p, p->conf);
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
    free(r->variant[v].bound);
    free(r->variant[v].backend_series);
  }
  for (size_t i = 0; i < r->n_rules; i++) {
    for (size_t j = 0; j < r->rules[i].n_conds; j++) free_cond(&r->rules[i].conds[j], workers);
    free(r->rules[i].conds);
  }
  free(r->rules);
}

static void conf_free(fl_conf_t *c) {
  for (size_t i = 0; i < c->n_routes; i++) free_route(&c->routes[i], c->workers);
  free(c->routes);
  free(c->trusted);
  free(c->geoip_mmdb);
  free(c->geoip_header);
  free(c->access_log);
  free(c->state_path);
  free(c->admin_token_env);
  free(c->admin_token);
  free(c->admin_token_error);
  for (size_t i = 0; i < c->data.n_refusals; i++) free(c->data.refusals[i]);
  free(c->data.refusals);
  free(c->data.baseline_file);
  free(c->feedback_key_env);
  fl_geo_close(c->geo);
  free(c->path);
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
  if (yp->error == YAML_MEMORY_ERROR) return nomem(p);
  const char *problem = yp->problem ? yp->problem : "invalid YAML";
  yaml_mark_t m = yp->problem_mark;
  if (yp->error == YAML_READER_ERROR) m = offset_mark(yaml, len, yp->problem_offset);
  if (yp->context)
    return fail_mark(p, m, "%s (%s that started at %zu:%zu)", problem, yp->context, yp->context_mark.line + 1,
                     yp->context_mark.column + 1);
  return fail_mark(p, m, "%s", problem);
}

/* A second document would be ignored silently; say so instead. */
static int check_single_document(parse_ctx_t *p, yaml_parser_t *yp, const char *yaml, size_t len) {
  yaml_document_t extra;
  if (!yaml_parser_load(yp, &extra)) return syntax_error(p, yp, yaml, len);
  yaml_node_t *root = yaml_document_get_root_node(&extra);
  int rc = root ? fail_mark(p, root->start_mark, "only one YAML document is allowed") : 0;
  yaml_document_delete(&extra);
  return rc;
}

static int build(parse_ctx_t *p, yaml_document_t *doc, fl_conf_t **out) {
  fl_conf_t *c = calloc(1, sizeof *c);
  if (!c) return nomem(p);
  atomic_init(&c->refs, 1);
  set_defaults(c);
  p->doc = doc;
  p->conf = c;
  int rc = dup_into(p, p->name, &c->path);
  if (rc == 0) rc = parse_root(p, yaml_document_get_root_node(doc));
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
  if (!yaml_parser_initialize(&parser)) return nomem(&p);
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  if (!yaml_parser_load(&parser, &doc)) {
    rc = syntax_error(&p, &parser, yaml, len);
  } else {
    rc = check_single_document(&p, &parser, yaml, len);
    if (rc == 0) rc = build(&p, &doc, out);
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

void fl_conf_ref(fl_conf_t *c) { atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed); }

void fl_conf_unref(fl_conf_t *c) {
  if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) conf_free(c);
}

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
