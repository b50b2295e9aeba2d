/* router.c — route matching and the variant decision: override, rules, sticky split.
 * Everything here is a pure function of the snapshot and the request, so the same user gets
 * the same variant on every worker, after restarts and on every replica. */
#include "router.h"
#include "jsonscan.h"
#include "live.h"

#include <strings.h>

const char *fl_variant_name(fl_variant_id_t v) { return v == FL_CANARY ? "canary" : "stable"; }

/* ---- route match ---- */

static bool host_fits(const fl_route_t *r, const char *host, size_t host_len) {
  return !r->host || fl_streq_ci(host, host_len, r->host);
}

const fl_route_t *fl_router_match(const fl_conf_t *c, const char *host, size_t host_len,
                                  const char *path, size_t path_len) {
  const fl_route_t *best = NULL;
  for (size_t i = 0; i < c->n_routes; i++) {
    const fl_route_t *r = &c->routes[i];
    if (!host_fits(r, host, host_len)) continue;
    if (r->path_prefix_len > path_len || memcmp(path, r->path_prefix, r->path_prefix_len) != 0) continue;
    if (!best || r->path_prefix_len > best->path_prefix_len ||          /* the longest prefix, and on a */
        (r->path_prefix_len == best->path_prefix_len && r->host && !best->host))   /* tie the host's */
      best = r;
  }
  return best;
}

/* ---- sticky hash ---- */

/* FNV-1a over salt, a separator and the key, then the murmur3 64-bit finaliser: FNV alone
 * spreads short similar keys ("user-1", "user-2") poorly over a modulus; the finaliser fixes that. */
uint32_t fl_router_bucket(const char *salt, const char *key, size_t key_len) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char *p = salt; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
  h = (h ^ 0xFFu) * 0x100000001b3ull;
  for (size_t i = 0; i < key_len; i++) h = (h ^ (uint8_t)key[i]) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return (uint32_t)(h % FL_BUCKETS);
}

/* ---- cookies and query strings ---- */

const char *fl_cookie_get(const char *s, size_t n, const char *name, size_t *out_len) {
  size_t nlen = strlen(name), i = 0;
  while (i < n) {
    while (i < n && (s[i] == ' ' || s[i] == ';')) i++;
    size_t start = i;
    while (i < n && s[i] != ';') i++;
    const char *eq = memchr(s + start, '=', i - start);
    if (eq && (size_t)(eq - (s + start)) == nlen && memcmp(s + start, name, nlen) == 0) {
      *out_len = (size_t)(s + i - eq - 1);
      return eq + 1;
    }
  }
  return NULL;
}

const char *fl_query_get(const char *q, size_t n, const char *name, size_t *out_len) {
  size_t nlen = strlen(name), i = 0;
  while (i < n) {
    size_t start = i;
    while (i < n && q[i] != '&') i++;
    const char *eq = memchr(q + start, '=', i - start);
    size_t klen = eq ? (size_t)(eq - (q + start)) : i - start;
    if (klen == nlen && memcmp(q + start, name, nlen) == 0) {
      *out_len = eq ? (size_t)(q + i - eq - 1) : 0;
      return eq ? eq + 1 : q + i;
    }
    i++;
  }
  return NULL;
}

/* ---- rules ---- */

static bool value_in(char *const *values, size_t n, const char *v, size_t len) {
  for (size_t i = 0; i < n; i++)
    if (fl_streq_ci(v, len, values[i])) return true;
  return false;
}

static bool counted_eq(const char *v, size_t len, const char *lit) {
  return v && strlen(lit) == len && memcmp(v, lit, len) == 0;
}

static bool regex_fits(const fl_cond_t *c, const fl_req_view_t *v, const char *val, size_t len) {
  char buf[1024];
  if (!val || len >= sizeof buf) return false;
  memcpy(buf, val, len);
  buf[len] = '\0';
  return regexec(&c->regex[v->worker], buf, 0, NULL, 0) == 0;
}

static bool cond_fits(const fl_cond_t *c, const fl_route_t *r, const fl_req_view_t *v) {
  size_t len = 0;
  const char *val;
  switch (c->kind) {
  case FL_COND_HEADER:
    val = v->header(v->ctx, c->name, &len);
    return counted_eq(val, len, c->value);
  case FL_COND_HEADER_REGEX:
    val = v->header(v->ctx, c->name, &len);
    return regex_fits(c, v, val, len);
  case FL_COND_COOKIE:
    val = v->header(v->ctx, "cookie", &len);
    val = val ? fl_cookie_get(val, len, c->name, &len) : NULL;
    return counted_eq(val, len, c->value);
  case FL_COND_QUERY:
    val = fl_query_get(v->query, v->query_len, c->name, &len);
    return counted_eq(val, len, c->value);
  case FL_COND_CIDR:
    return fl_cidr_any(c->cidrs, c->n_cidrs, v->peer);
  case FL_COND_COUNTRY:
    val = v->country(v->ctx);
    return val && value_in(c->values, c->n_values, val, strlen(val));
  case FL_COND_SEGMENT:
    val = v->header(v->ctx, r->segment_header, &len);
    return val && value_in(c->values, c->n_values, val, len);
  }
  return false;
}

static bool rule_fits(const fl_rule_t *rule, const fl_route_t *r, const fl_req_view_t *v) {
  for (size_t i = 0; i < rule->n_conds; i++)
    if (!cond_fits(&rule->conds[i], r, v)) return false;
  return true;
}

/* ---- user key ---- */

/* 0: key found; FL_ENOENT: none of the sources has one; 1: the body must be read first. */
static int user_key(const fl_route_t *r, const fl_req_view_t *v, char *buf, size_t cap, size_t *out_len) {
  for (size_t i = 0; i < r->n_user_key; i++) {
    const fl_key_source_t *k = &r->user_key[i];
    const char *val = NULL;
    size_t len = 0;
    if (k->kind == FL_KEY_HEADER) {
      val = v->header(v->ctx, k->name, &len);
    } else if (k->kind == FL_KEY_COOKIE) {
      const char *ck = v->header(v->ctx, "cookie", &len);
      val = ck ? fl_cookie_get(ck, len, k->name, &len) : NULL;
    } else if (k->kind == FL_KEY_QUERY) {
      val = fl_query_get(v->query, v->query_len, k->name, &len);
    } else if (k->kind == FL_KEY_JSON) {
      if (!v->has_body) continue;
      if (!v->body) return 1;
      fl_json_span_t span;
      if (fl_json_top_field(v->body, v->body_len, k->name, &span) == 0) {
        val = v->body + span.start;
        len = span.len;
      }
    } else {
      len = fl_addr_ntop(v->peer, buf, cap);
      val = len ? buf : NULL;
    }
    if (val && len > 0) {
      if (val != buf) {
        len = FL_MIN(len, cap);
        memcpy(buf, val, len);
      }
      *out_len = len;
      return 0;
    }
  }
  return FL_ENOENT;
}

static int override_variant(const fl_req_view_t *v, fl_variant_id_t *out) {
  size_t len;
  const char *val = v->header(v->ctx, "x-fledge-variant", &len);
  if (!val || !v->trusted) return FL_ENOENT;
  if (fl_streq_ci(val, len, "canary")) *out = FL_CANARY;
  else if (fl_streq_ci(val, len, "stable")) *out = FL_STABLE;
  else return FL_ENOENT;
  return 0;
}

int fl_router_decide(const fl_route_t *r, const fl_req_view_t *v, uint32_t rand_u32, fl_decision_t *out) {
  memset(out, 0, sizeof *out);
  if (!r->has_canary) {
    out->why = FL_WHY_NO_CANARY;
    return 0;
  }
  if (override_variant(v, &out->variant) == 0) {
    out->why = FL_WHY_OVERRIDE;
    return 0;
  }
  bool held = fl_live_held(r);           /* a rolled-back canary: its rules are suspended */
  for (size_t i = 0; i < r->n_rules; i++) {
    if ((!held || r->rules[i].variant != FL_CANARY) && rule_fits(&r->rules[i], r, v)) {
      out->variant = r->rules[i].variant;
      out->why = FL_WHY_RULE;
      out->rule_index = i;
      return 0;
    }
  }
  char key[256];
  size_t key_len = 0;
  int rc = user_key(r, v, key, sizeof key, &key_len);
  if (rc == 1) return 1;
  if (rc == 0) {
    out->bucket = fl_router_bucket(r->salt, key, key_len);
    out->why = FL_WHY_STICKY;
  } else {
    out->bucket = rand_u32 % FL_BUCKETS;
    out->why = FL_WHY_RANDOM;
  }
  out->variant = fl_router_is_canary(out->bucket, fl_live_weight(r)) ? FL_CANARY : FL_STABLE;
  return 0;
}

/* ---- explanations ---- */

bool fl_router_rule_fits(const fl_rule_t *rule, const fl_route_t *r, const fl_req_view_t *v) {
  return rule_fits(rule, r, v);
}

/* One source at a time, through the decision's own reader, so that the first one giving a key
 * is known by its index. */
int fl_router_user_key(const fl_route_t *r, const fl_req_view_t *v, char *buf, size_t cap, size_t *len,
                       size_t *source) {
  fl_route_t one = *r;
  for (size_t i = 0; i < r->n_user_key; i++) {
    one.user_key = &r->user_key[i];
    one.n_user_key = 1;
    int rc = user_key(&one, v, buf, cap, len);
    if (rc != FL_ENOENT) {
      *source = i;
      return rc;
    }
  }
  return FL_ENOENT;
}
