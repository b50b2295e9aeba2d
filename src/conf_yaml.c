/* conf_yaml.c — reading a libyaml document for conf.c: node access, a walker over mappings that
 * refuses unknown and duplicate keys (suggesting the nearest known one), scalar values (numbers,
 * durations, weights, addresses, CIDRs) and lists, every error as FILE:LINE:COL. */
#include "conf_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---------- parse context and error reporting ---------- */

int cy_warn(parse_ctx_t *p, const yaml_node_t *n, const char *fmt, ...) {
  char line[512];
  int off = snprintf(line, sizeof line, "%s:%zu:%zu: warning: ", p->name, n->start_mark.line + 1,
                     n->start_mark.column + 1);
  va_list ap;
  va_start(ap, fmt);
  if (off >= 0 && (size_t)off < sizeof line) vsnprintf(line + off, sizeof line - (size_t)off, fmt, ap);
  va_end(ap);
  size_t had = p->conf->warnings ? strlen(p->conf->warnings) : 0, len = strlen(line);
  char *grown = realloc(p->conf->warnings, had + len + 2);
  if (!grown) return cy_nomem(p);
  memcpy(grown + had, line, len);
  memcpy(grown + had + len, "\n", 2);
  p->conf->warnings = grown;
  return 0;
}

static void write_err(parse_ctx_t *p, size_t line, size_t col, const char *fmt, va_list ap) {
  if (!p->err || p->err_cap == 0) return;
  int off = snprintf(p->err, p->err_cap, "%s:%zu:%zu: ", p->name, line, col);
  if (off >= 0 && (size_t)off < p->err_cap) vsnprintf(p->err + off, p->err_cap - (size_t)off, fmt, ap);
}

/* Reports at a libyaml mark (0-based) as 1-based LINE:COL; always returns FL_EINVAL. */
__attribute__((format(printf, 3, 4)))
int cy_fail_mark(parse_ctx_t *p, yaml_mark_t m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  write_err(p, m.line + 1, m.column + 1, fmt, ap);
  va_end(ap);
  return FL_EINVAL;
}

__attribute__((format(printf, 3, 4)))
int cy_fail(parse_ctx_t *p, const yaml_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  write_err(p, n->start_mark.line + 1, n->start_mark.column + 1, fmt, ap);
  va_end(ap);
  return FL_EINVAL;
}

int cy_nomem(parse_ctx_t *p) {
  if (p->err && p->err_cap) snprintf(p->err, p->err_cap, "%s: out of memory", p->name);
  return FL_ENOMEM;
}

/* ---------- node access ---------- */

static yaml_node_t *node_at(parse_ctx_t *p, int index) { return yaml_document_get_node(p->doc, index); }

const char *cy_scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

size_t cy_list_len(const yaml_node_t *n) {
  return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

yaml_node_t *cy_list_item(parse_ctx_t *p, const yaml_node_t *n, size_t i) {
  return node_at(p, n->data.sequence.items.start[i]);
}

size_t cy_map_len(const yaml_node_t *n) {
  return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

yaml_node_t *cy_pair_key(parse_ctx_t *p, const yaml_node_t *n, size_t i) {
  return node_at(p, n->data.mapping.pairs.start[i].key);
}

yaml_node_t *cy_pair_value(parse_ctx_t *p, const yaml_node_t *n, size_t i) {
  return node_at(p, n->data.mapping.pairs.start[i].value);
}

/* Value of a cy_scalar key in a mapping, or NULL. */
yaml_node_t *cy_map_get(parse_ctx_t *p, const yaml_node_t *map, const char *key) {
  for (size_t i = 0; i < cy_map_len(map); i++) {
    yaml_node_t *k = cy_pair_key(p, map, i);
    if (k->type == YAML_SCALAR_NODE && strcmp(cy_scalar(k), key) == 0) return cy_pair_value(p, map, i);
  }
  return NULL;
}

/* An empty value, `~` or `null` written without quotes: "not set" for optional strings. */
static bool is_null(const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
  const char *s = cy_scalar(n);
  return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static const char *node_kind(const yaml_node_t *n) {
  return n->type == YAML_MAPPING_NODE ? "mapping" : n->type == YAML_SEQUENCE_NODE ? "list" : "value";
}

int cy_want_mapping(parse_ctx_t *p, yaml_node_t *n, const char *what) {
  return n->type == YAML_MAPPING_NODE ? 0 : cy_fail(p, n, "%s must be a mapping, not a %s", what, node_kind(n));
}

int cy_want_list(parse_ctx_t *p, yaml_node_t *n, const char *what) {
  return n->type == YAML_SEQUENCE_NODE ? 0 : cy_fail(p, n, "%s must be a list, not a %s", what, node_kind(n));
}

int cy_want_scalar(parse_ctx_t *p, yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE) return cy_fail(p, n, "%s must be a single value, not a %s", p->key, node_kind(n));
  /* A quoted "\0" would silently cut the string short everywhere it is used later. */
  if (strlen(cy_scalar(n)) != n->data.scalar.length) return cy_fail(p, n, "%s must not contain a NUL byte", p->key);
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
    unsigned d = edit_distance(cy_scalar(key), s->fields[i].key);
    if (d < best_d) best_d = d, best = s->fields[i].key;
  }
  char hint[64] = "";
  if (best) snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", best);
  if (s->noun) return cy_fail(p, key, "unknown %s \"%s\"%s", s->noun, cy_scalar(key), hint);
  return cy_fail(p, key, "unknown key \"%s\" in %s%s", cy_scalar(key), s->what, hint);
}

/* Keys must be plain strings and appear once; YAML itself would let the last one win silently. */
int cy_check_keys(parse_ctx_t *p, yaml_node_t *map, const char *what) {
  for (size_t i = 0; i < cy_map_len(map); i++) {
    yaml_node_t *k = cy_pair_key(p, map, i);
    if (k->type != YAML_SCALAR_NODE) return cy_fail(p, k, "keys in %s must be plain strings", what);
    for (size_t j = 0; j < i; j++)
      if (strcmp(cy_scalar(cy_pair_key(p, map, j)), cy_scalar(k)) == 0)
        return cy_fail(p, k, "duplicate key \"%s\" in %s", cy_scalar(k), what);
  }
  return 0;
}

static const field_t *find_field(const section_t *s, const char *key) {
  for (size_t i = 0; i < s->n_fields; i++)
    if (strcmp(s->fields[i].key, key) == 0) return &s->fields[i];
  return NULL;
}

/* Dispatches each key of `map` to its field; obj is the struct the offsets refer to. */
int cy_walk(parse_ctx_t *p, yaml_node_t *map, const section_t *s, void *obj) {
  const char *outer_key = p->key;
  int rc = cy_want_mapping(p, map, s->what);
  if (rc == 0) rc = cy_check_keys(p, map, s->what);
  for (size_t i = 0; rc == 0 && i < cy_map_len(map); i++) {
    yaml_node_t *k = cy_pair_key(p, map, i), *v = cy_pair_value(p, map, i);
    const field_t *f = find_field(s, cy_scalar(k));
    if (!f) {
      rc = unknown_key(p, k, s);
    } else {
      p->key = f->key;
      rc = f->sub ? cy_walk(p, v, f->sub, obj) : f->fn(p, v, (char *)obj + f->off);
    }
  }
  p->key = outer_key;
  return rc;
}

/* ---------- cy_scalar values ---------- */

int cy_dup_into(parse_ctx_t *p, const char *s, char **out) {
  char *copy = strdup(s);
  if (!copy) return cy_nomem(p);
  *out = copy;
  return 0;
}

int cy_get_str(parse_ctx_t *p, yaml_node_t *n, char **out) {
  int rc = cy_want_scalar(p, n);
  if (rc) return rc;
  if (!*cy_scalar(n)) return cy_fail(p, n, "%s must not be empty", p->key);
  return cy_dup_into(p, cy_scalar(n), out);
}

void cy_lower(char *s) {
  for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

bool cy_is_token(const char *s, size_t len) {
  if (len == 0) return false;
  for (size_t i = 0; i < len; i++)
    if (!isalnum((unsigned char)s[i]) && !strchr("!#$%&'*+-.^_`|~", s[i])) return false;
  return true;
}

/* Header names are compared cy_lower-cased on the request path, so store them that way. */
int cy_get_header_name(parse_ctx_t *p, yaml_node_t *n, char **out) {
  int rc = cy_get_str(p, n, out);
  if (rc) return rc;
  if (!cy_is_token(*out, strlen(*out))) return cy_fail(p, n, "bad header name \"%s\"", *out);
  cy_lower(*out);
  return 0;
}

bool cy_parse_u64(const char *s, uint64_t *out) {
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
  int rc = cy_want_scalar(p, n);
  if (rc) return rc;
  if (!cy_parse_u64(cy_scalar(n), out) || *out == 0) return cy_fail(p, n, "%s must be a positive integer, not \"%s\"", p->key, cy_scalar(n));
  if (*out > max) return cy_fail(p, n, "%s must be at most %" PRIu64, p->key, max);
  return 0;
}

/* "500ms", "10s", "2m", "1h" or bare seconds. */
static int get_duration(parse_ctx_t *p, yaml_node_t *n, uint32_t *out_ms) {
  static const struct { const char *suffix; uint64_t ms; } units[] = {
    {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
  };
  int rc = cy_want_scalar(p, n);
  if (rc) return rc;
  const char *s = cy_scalar(n);
  size_t digits = strspn(s, "0123456789");
  char number[21];
  uint64_t v;
  if (digits == 0 || digits >= sizeof number) goto bad;
  memcpy(number, s, digits);
  number[digits] = '\0';
  if (!cy_parse_u64(number, &v)) goto bad;
  for (size_t i = 0; i < FL_ARRAY_LEN(units); i++) {
    if (strcmp(s + digits, units[i].suffix) != 0) continue;
    if (v == 0) return cy_fail(p, n, "%s must be greater than zero", p->key);
    if (v > UINT32_MAX / units[i].ms) return cy_fail(p, n, "%s \"%s\" is too long", p->key, s);
    *out_ms = (uint32_t)(v * units[i].ms);
    return 0;
  }
bad:
  return cy_fail(p, n, "bad duration \"%s\" for %s (use e.g. 500ms, 10s, 2m, 1h)", s, p->key);
}

/* Percent with at most two decimals → basis points, so the router never sees floats. */
int cy_get_weight(parse_ctx_t *p, yaml_node_t *n, uint32_t *bp) {
  int rc = cy_want_scalar(p, n);
  if (rc) return rc;
  const char *s = cy_scalar(n), *c = s;
  bool negative = (*c == '-');
  if (negative) c++;
  size_t int_digits = strspn(c, "0123456789"), frac_digits = 0;
  if (int_digits == 0 || int_digits > 9) goto bad;
  uint64_t v = (uint64_t)strtoull(c, NULL, 10) * 100;
  c += int_digits;
  if (*c == '.') {
    frac_digits = strspn(++c, "0123456789");
    if (frac_digits == 0) goto bad;
    if (frac_digits > 2) return cy_fail(p, n, "%s \"%s\" has more than two decimals", p->key, s);
    v += (uint64_t)(c[0] - '0') * 10 + (frac_digits == 2 ? (uint64_t)(c[1] - '0') : 0);
    c += frac_digits;
  }
  if (*c) goto bad;
  if (v > 10000 || (negative && v > 0)) return cy_fail(p, n, "%s must be between 0 and 100, not %s", p->key, s);
  *bp = (uint32_t)v;
  return 0;
bad:
  return cy_fail(p, n, "%s must be a number between 0 and 100, not \"%s\"", p->key, s);
}

static int get_bool(parse_ctx_t *p, yaml_node_t *n, bool *out) {
  static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
  int rc = cy_want_scalar(p, n);
  if (rc) return rc;
  const char *s = cy_scalar(n);
  for (size_t i = 0; i < FL_ARRAY_LEN(yes); i++) {
    if (fl_streq_ci(s, strlen(s), yes[i])) return *out = true, 0;
    if (fl_streq_ci(s, strlen(s), no[i])) return *out = false, 0;
  }
  return cy_fail(p, n, "%s must be true or false, not \"%s\"", p->key, s);
}

int cy_get_addr(parse_ctx_t *p, yaml_node_t *n, fl_addr_t *out) {
  int rc = cy_want_scalar(p, n);
  if (rc) return rc;
  if (fl_addr_parse(cy_scalar(n), out) != 0)
    return cy_fail(p, n, "bad address \"%s\" (expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)", cy_scalar(n));
  return 0;
}

/* ---------- lists ---------- */

/* Allocates a zeroed array of n items; n == 0 leaves it NULL. */
int cy_alloc_items(parse_ctx_t *p, size_t n, size_t size, void **out) {
  *out = NULL;
  if (n == 0) return 0;
  *out = calloc(n, size);
  return *out ? 0 : cy_nomem(p);
}

int cy_get_cidrs(parse_ctx_t *p, yaml_node_t *n, fl_cidr_t **out, size_t *n_out) {
  int rc = cy_want_list(p, n, p->key);
  if (rc == 0) rc = cy_alloc_items(p, cy_list_len(n), sizeof **out, (void **)out);
  if (rc) return rc;
  *n_out = cy_list_len(n);
  for (size_t i = 0; i < *n_out; i++) {
    yaml_node_t *item = cy_list_item(p, n, i);
    if ((rc = cy_want_scalar(p, item)) != 0) return rc;
    if (fl_cidr_parse(cy_scalar(item), &(*out)[i]) != 0) return cy_fail(p, item, "bad CIDR block \"%s\"", cy_scalar(item));
  }
  return 0;
}


/* A non-empty list of strings; the array is owned by the caller's struct as soon as
 * it exists, so a failure half-way leaves nothing for this function to undo. */
int cy_get_str_list(parse_ctx_t *p, yaml_node_t *n, char ***out, size_t *n_out, item_check_fn check) {
  int rc = cy_want_list(p, n, p->key);
  if (rc) return rc;
  if (cy_list_len(n) == 0) return cy_fail(p, n, "%s must list at least one value", p->key);
  if ((rc = cy_alloc_items(p, cy_list_len(n), sizeof **out, (void **)out)) != 0) return rc;
  *n_out = cy_list_len(n);
  for (size_t i = 0; i < *n_out && rc == 0; i++) {
    yaml_node_t *item = cy_list_item(p, n, i);
    rc = cy_get_str(p, item, &(*out)[i]);
    if (rc == 0 && check) rc = check(p, item, (*out)[i]);
  }
  return rc;
}

/* ---------- top-level fields ---------- */

int cy_f_addr(parse_ctx_t *p, yaml_node_t *v, void *slot) { return cy_get_addr(p, v, slot); }
int cy_f_duration(parse_ctx_t *p, yaml_node_t *v, void *slot) { return get_duration(p, v, slot); }
int cy_f_bool(parse_ctx_t *p, yaml_node_t *v, void *slot) { return get_bool(p, v, slot); }
int cy_f_str(parse_ctx_t *p, yaml_node_t *v, void *slot) { return cy_get_str(p, v, slot); }
int cy_f_header_name(parse_ctx_t *p, yaml_node_t *v, void *slot) { return cy_get_header_name(p, v, slot); }
int cy_f_noop(parse_ctx_t *p, yaml_node_t *v, void *slot) { return 0; }

int cy_f_opt_str(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  return is_null(v) ? 0 : cy_get_str(p, v, slot);
}

/* The model name is spliced into JSON bodies as it is, so it may not need escaping. */
int cy_f_model(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  int rc = cy_f_opt_str(p, v, slot);
  const char *m = *(char **)slot;
  for (size_t i = 0; rc == 0 && m && m[i]; i++)
    if (m[i] == '"' || m[i] == '\\' || (unsigned char)m[i] < 0x20)
      rc = cy_fail(p, v, "model must not contain quotes, backslashes or control characters");
  return rc;
}

int cy_f_u32(parse_ctx_t *p, yaml_node_t *v, void *slot) {
  uint64_t n;
  int rc = get_uint(p, v, UINT32_MAX, &n);
  if (rc == 0) *(uint32_t *)slot = (uint32_t)n;
  return rc;
}

int cy_f_u64(parse_ctx_t *p, yaml_node_t *v, void *slot) { return get_uint(p, v, UINT64_MAX, slot); }
