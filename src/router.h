/* router.h — which route and which variant serve a request: route match, override header,
 * rules, user key and the sticky weighted split. Pure functions of the snapshot and the request. */
#ifndef FL_ROUTER_H
#define FL_ROUTER_H

#include "conf.h"

#define FL_BUCKETS 10000u           /* weight resolution: basis points */

/* What routing may look at. The proxy fills it; callbacks are called lazily, only when a
 * rule or key needs them. Strings are counted, not NUL-terminated. */
typedef struct fl_req_view {
  const char *path; size_t path_len;    /* without the query */
  const char *query; size_t query_len;  /* after '?', may be empty */
  const struct sockaddr *peer;
  bool trusted;                         /* peer is in trusted_cidrs */
  unsigned worker;                      /* index of the calling worker (regex copy) */
  const char *body; size_t body_len;    /* NULL until the proxy has read the body for a json: key */
  bool body_complete;                   /* the whole body is in `body` */
  bool has_body;                        /* the request carries a body at all */
  /* header by lower-case name; NULL when absent */
  const char *(*header)(void *ctx, const char *lname, size_t *len);
  /* ISO country of the client, upper-case, NULL when unknown */
  const char *(*country)(void *ctx);
  void *ctx;
} fl_req_view_t;

typedef enum {
  FL_WHY_OVERRIDE,                      /* x-fledge-variant from a trusted client */
  FL_WHY_RULE,                          /* rules[rule_index] */
  FL_WHY_STICKY,                        /* bucket of the user key against the weight */
  FL_WHY_RANDOM,                        /* no key: weighted random */
  FL_WHY_NO_CANARY,                     /* the route has no canary */
} fl_why_t;

typedef struct fl_decision {
  fl_variant_id_t variant;
  fl_why_t why;
  size_t rule_index;
  uint32_t bucket;                      /* STICKY only */
} fl_decision_t;

/* Route for host (without port) and path: among the routes whose host fits, the one with
 * the longest path_prefix; the first of equals. NULL when none fits. */
const fl_route_t *fl_router_match(const fl_conf_t *c, const char *host, size_t host_len,
                                  const char *path, size_t path_len);

/* Chooses the variant. Returns 0, or 1 when a json: user key must be read from the body
 * first (call again with view->body set). rand_u32 is used only for FL_WHY_RANDOM. */
int fl_router_decide(const fl_route_t *r, const fl_req_view_t *v, uint32_t rand_u32, fl_decision_t *out);

/* bucket = hash(salt, key) mod FL_BUCKETS; stable across runs, hosts and versions. */
uint32_t fl_router_bucket(const char *salt, const char *key, size_t key_len);

/* The sticky rule itself: canary iff bucket < weight_bp. */
static inline bool fl_router_is_canary(uint32_t bucket, uint32_t weight_bp) { return bucket < weight_bp; }

/* Value of cookie `name` in a Cookie header, or NULL. */
const char *fl_cookie_get(const char *cookies, size_t len, const char *name, size_t *out_len);

/* Raw (not percent-decoded) value of query parameter `name`, or NULL. */
const char *fl_query_get(const char *query, size_t len, const char *name, size_t *out_len);

const char *fl_variant_name(fl_variant_id_t v);   /* "stable" / "canary" */

/* For explanations (fledge explain), by the same readers fl_router_decide uses: whether all
 * conditions of rule hold for the request, and which of r's user_key sources gives its user key
 * (*source, an index into r->user_key) with the key (at most cap bytes into buf, *len).
 * user_key returns 0, FL_ENOENT when no source has one, or 1 when a json: key needs the body. */
bool fl_router_rule_fits(const fl_rule_t *rule, const fl_route_t *r, const fl_req_view_t *v);
int fl_router_user_key(const fl_route_t *r, const fl_req_view_t *v, char *buf, size_t cap, size_t *len,
                       size_t *source);

#endif
