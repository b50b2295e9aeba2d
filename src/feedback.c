/* feedback.c — signed request ids and the feedback given on them.
 *
 * An id is base64url(payload || tag):
 *   1 byte format | 1 byte variant | route length, route | version length, version |
 *   6 bytes Unix ms, big-endian | 4 bytes nonce
 * Format 2 (signed now): the tag is the payload's SipHash-2-4, 8 bytes little-endian, under a
 * key derived from the feedback key. Format 1 (signed before; still verified, as ids live as long
 * as feedback may come): the first 12 bytes of the payload's HMAC-SHA-256 under the key itself.
 * The keys are set once before the workers start and only read afterwards. */
#include "feedback.h"
#include "base64.h"
#include "cluster.h"
#include "metrics.h"
#include "monitor.h"
#include "router.h"
#include "sha256.h"
#include "siphash.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#define FORMAT_HMAC 1
#define FORMAT_SIP 2
#define HMAC_TAG_LEN 12
#define SIP_TAG_LEN 8
#define PAYLOAD_MAX (1 + 1 + 1 + 63 + 1 + 63 + 6 + 4)
#define LABEL_MAX 64
#define FL_FEEDBACK_CLAIM_MS (30u * 24 * 3600 * 1000)   /* a rating of one request is claimed fleet-wide for 30 days */
#define COMMENT_MAX 2000

static fl_hmac_key_t key;
static fl_siphash_key_t sip_key;

void fl_feedback_set_key(const void *k, size_t len) {
  static const char LABEL[] = "fledge request ids: SipHash-2-4 key";
  uint8_t derived[FL_SHA256_LEN];
  fl_hmac_key_init(&key, k, len);
  fl_hmac(&key, LABEL, sizeof LABEL - 1, derived);
  fl_siphash_key_init(&sip_key, derived);
}

/* ---- ids ---- */

/* The tag of a payload in its format (payload[0]), written into tag; returns the tag's length. */
static size_t tag_of(const uint8_t *payload, size_t len, uint8_t tag[FL_SHA256_LEN]) {
  if (payload[0] == FORMAT_HMAC) {
    fl_hmac(&key, payload, len, tag);
    return HMAC_TAG_LEN;
  }
  uint64_t t = fl_siphash(&sip_key, payload, len);
  for (int i = 0; i < SIP_TAG_LEN; i++) tag[i] = (uint8_t)(t >> (8 * i));
  return SIP_TAG_LEN;
}

size_t fl_request_id_sign(char *out, const char *route, unsigned variant, const char *version, uint64_t unix_ms,
                          uint32_t nonce) {
  uint8_t buf[PAYLOAD_MAX + FL_SHA256_LEN];
  size_t rl = strlen(route), vl = strlen(version), n = 0;
  out[0] = '\0';
  if (rl > 63 || vl > 63) return 0;
  buf[n++] = FORMAT_SIP;
  buf[n++] = (uint8_t)variant;
  buf[n++] = (uint8_t)rl;
  memcpy(buf + n, route, rl), n += rl;
  buf[n++] = (uint8_t)vl;
  memcpy(buf + n, version, vl), n += vl;
  for (int i = 5; i >= 0; i--) buf[n++] = (uint8_t)(unix_ms >> (8 * i));
  for (int i = 3; i >= 0; i--) buf[n++] = (uint8_t)(nonce >> (8 * i));
  return fl_b64_encode(FL_B64_URL, buf, n + tag_of(buf, n, buf + n), out);
}

/* Constant time, so the check does not tell how much of a forged tag was right. */
static bool tag_equal(const uint8_t *a, const uint8_t *b, size_t len) {
  uint8_t diff = 0;
  for (size_t i = 0; i < len; i++) diff |= a[i] ^ b[i];
  return diff == 0;
}

int fl_request_id_verify(const char *id, size_t len, fl_request_origin_t *out) {
  uint8_t buf[PAYLOAD_MAX + HMAC_TAG_LEN], mac[FL_SHA256_LEN];
  int n = len < FL_REQUEST_ID_MAX ? (int)fl_b64_decode(FL_B64_URL, id, len, buf, sizeof buf) : -1;
  if (n < 1 || (buf[0] != FORMAT_SIP && buf[0] != FORMAT_HMAC)) return FL_EINVAL;
  size_t tag_len = buf[0] == FORMAT_SIP ? SIP_TAG_LEN : HMAC_TAG_LEN;
  if ((size_t)n < 3 + 1 + 6 + 4 + tag_len || buf[1] >= FL_NVARIANTS) return FL_EINVAL;
  size_t payload = (size_t)n - tag_len, rl = buf[2];
  if (rl > 63 || 3 + rl >= payload) return FL_EINVAL;
  size_t vl = buf[3 + rl];
  if (vl > 63 || 4 + rl + vl + 10 != payload) return FL_EINVAL;
  tag_of(buf, payload, mac);
  if (!tag_equal(mac, buf + payload, tag_len)) return FL_EPARSE;
  memcpy(out->route, buf + 3, rl);
  out->route[rl] = '\0';
  memcpy(out->version, buf + 4 + rl, vl);
  out->version[vl] = '\0';
  out->variant = buf[1];
  out->unix_ms = 0;
  for (int i = 0; i < 6; i++) out->unix_ms = out->unix_ms << 8 | buf[4 + rl + vl + i];
  return 0;
}

/* ---- the key ---- */

/* In a cluster, the key is the fleet's: the first replica to reach Redis offers its own, every
 * other takes that one and keeps it in its store, so an id signed by any replica verifies on all
 * of them, and on this one after a restart even without Redis. Without Redis at start, the store's
 * key serves (the one last shared, for a replica that ever joined). */
static void shared_key(fl_store_t *store, char **hex) {
  char shared[65], err[256];
  if (fl_cluster_share("feedback_key", *hex, shared, sizeof shared, err, sizeof err) != 0) {
    fl_log("feedback key: cannot share it through the cluster's redis (%s): this replica's own serves", err);
    return;
  }
  if (strcmp(shared, *hex) == 0 || strlen(shared) != 64 || strspn(shared, "0123456789abcdef") != 64) return;
  if (fl_store_put_setting(store, "feedback_key", shared) != 0)
    fl_log("feedback key: the fleet's could not be saved in the state store: %s", fl_store_error(store));
  char *copy = strdup(shared);
  if (!copy) return;                     /* out of memory: the store's key serves */
  free(*hex);
  *hex = copy;
}

/* The store's key: made once, kept for good (ids signed with it must verify after restarts and on
 * every gateway sharing the file), never replaced because a read failed. */
static int stored_key(fl_store_t *store, char *err, size_t err_cap) {
  char *stored = NULL, hex[2 * 32 + 1];
  uint8_t k[32];
  int rc = fl_store_get_setting(store, "feedback_key", &stored);
  if (rc == FL_ENOENT) {                  /* the first: put ours unless another gateway just did */
    if (getrandom(k, sizeof k, 0) != sizeof k) {
      snprintf(err, err_cap, "feedback key: no random bytes from the kernel");
      return FL_EIO;
    }
    for (size_t i = 0; i < sizeof k; i++) snprintf(hex + 2 * i, 3, "%02x", k[i]);
    if (fl_store_add_setting(store, "feedback_key", hex) == 0) rc = fl_store_get_setting(store, "feedback_key", &stored);
  }
  if (rc != 0) {
    snprintf(err, err_cap, "feedback key: cannot read or save it in the state store: %s", fl_store_error(store));
    return FL_EIO;
  }
  bool ok = strlen(stored) == 64 && strspn(stored, "0123456789abcdef") == 64;
  if (ok && fl_cluster_enabled()) shared_key(store, &stored);
  for (size_t i = 0; ok && i < sizeof k; i++) {
    unsigned byte;
    sscanf(stored + 2 * i, "%2x", &byte);
    k[i] = (uint8_t)byte;
  }
  free(stored);
  if (!ok) {
    snprintf(err, err_cap, "feedback key: the state store's feedback_key setting is not 64 hex digits");
    return FL_EINVAL;
  }
  fl_feedback_set_key(k, sizeof k);
  return 0;
}

int fl_feedback_init(const fl_conf_t *c, fl_store_t *store, char *err, size_t err_cap) {
  if (!c->feedback_key_env) return stored_key(store, err, err_cap);
  const char *k = getenv(c->feedback_key_env);
  if (!k || strlen(k) < 16) {
    snprintf(err, err_cap, "%s: feedback.key_env: environment variable %s must hold a key of at least 16 characters",
             c->path, c->feedback_key_env);
    return FL_EINVAL;
  }
  fl_feedback_set_key(k, strlen(k));
  return 0;
}

/* ---- feedback ---- */

static int refuse(json_t **answer, int status, const char *fmt, const char *what) {
  char msg[200];
  snprintf(msg, sizeof msg, fmt, what);
  const char *type = status == 409 ? "conflict" : status == 503 ? "unavailable" : "invalid_request";
  *answer = json_pack("{s:{s:s, s:s}}", "error", "type", type, "message", msg);
  return status;
}

static const char *opt_string(const json_t *body, const char *name, size_t max, bool *bad) {
  const json_t *v = json_object_get(body, name);
  if (!v || json_is_null(v)) return NULL;
  if (!json_is_string(v) || json_string_length(v) > max) *bad = true;
  return json_string_value(v);
}

int fl_feedback_post(fl_store_t *store, const char *text, size_t len, json_t **answer) {
  json_error_t jerr;
  json_t *body = json_loadb(text, len, 0, &jerr);
  const char *id = json_string_value(json_object_get(body, "request_id"));
  const json_t *score = json_object_get(body, "score");
  bool bad = false;
  const char *label = opt_string(body, "label", LABEL_MAX, &bad), *comment = opt_string(body, "comment", COMMENT_MAX, &bad);
  fl_request_origin_t o;
  int rc = FL_EINVAL, status = 0;
  if (!json_is_object(body)) status = refuse(answer, 400, "%s", "the body must be a JSON object");
  else if (!id) status = refuse(answer, 400, "%s", "\"request_id\" (a string) is required");
  else if (!json_is_number(score) || !(fabs(json_number_value(score)) <= 1))
    status = refuse(answer, 400, "%s", "\"score\" must be a number from -1 to 1");
  else if (bad) status = refuse(answer, 400, "%s", "\"label\" (64) and \"comment\" (2000) are strings of limited length");
  else if ((rc = fl_request_id_verify(id, strlen(id), &o)) != 0)
    status = refuse(answer, 400, "%s", rc == FL_EPARSE ? "request_id is not one this gateway signed (forged or altered)"
                                                      : "request_id is malformed");
  if (status) {
    json_decref(body);
    return status;
  }
  const char *variant = fl_variant_name((fl_variant_id_t)o.variant);
  fl_feedback_rec_t rec = {.request_id = id, .route = o.route, .variant = variant, .version = o.version,
                           .label = label, .comment = comment, .score = json_number_value(score)};
  char why[256];
  rc = fl_cluster_claim("rated", id, FL_FEEDBACK_CLAIM_MS, why, sizeof why);   /* 0 without a cluster */
  if (rc == FL_EIO)
    fl_log("feedback: once-only across the fleet not checked (%s); this replica's store decides", why);
  bool claimed = rc == 0;
  if (rc != FL_ELIMIT) rc = store ? fl_store_add_feedback(store, &rec) : 0;   /* rated here before? */
  if (claimed && rc != 0 && rc != FL_ELIMIT) fl_cluster_unclaim("rated", id);   /* not kept: it may come again */
  if (rc == FL_ELIMIT) status = refuse(answer, 409, "%s", "this request was rated already");
  else if (rc != 0) status = refuse(answer, 503, "%s", "the state store cannot take the feedback now");
  if (!status) {
    int series = fl_metrics_series_find(o.route, (fl_variant_id_t)o.variant, o.version);
    if (series >= 0) fl_monitor_feedback((unsigned)series, rec.score);
    *answer = json_pack("{s:s, s:s, s:s, s:f, s:I}", "route", o.route, "variant", variant, "version", o.version,
                        "score", rec.score, "served_unix_ms", (json_int_t)o.unix_ms);
    status = 200;
  }
  json_decref(body);
  return status;
}
