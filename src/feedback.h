/* feedback.h — signed request ids and user feedback. The id the gateway gives an exchange names
 * the route, variant and version that served it and carries a SipHash-2-4 tag, so feedback on
 * it (POST /api/v1/feedback) is attributed without a lookup table, across restarts and replicas
 * sharing the key, and a forged or altered id is refused. */
#ifndef FL_FEEDBACK_H
#define FL_FEEDBACK_H

#include "conf.h"
#include "store.h"

#include <jansson.h>

#define FL_REQUEST_ID_MAX 208          /* the longest signed id (63-byte route and version) + NUL */

/* The key: feedback.key_env's value when set (at least 16 bytes), else 32 random bytes kept in
 * the state store under "feedback_key" (created on first use). Call once at start, before the
 * workers run; on error writes a message into err. Control thread. */
int fl_feedback_init(const fl_conf_t *c, fl_store_t *store, char *err, size_t err_cap);

/* Sets the key directly (tests, tools). */
void fl_feedback_set_key(const void *key, size_t len);

/* Writes the signed id of an exchange served by (route, variant, version) at unix_ms into out
 * (FL_REQUEST_ID_MAX bytes): base64url, no padding. nonce makes ids of the same millisecond
 * differ. Any thread: no allocation, no lock. Returns the id's length (0 when names are too long). */
size_t fl_request_id_sign(char *out, const char *route, unsigned variant, const char *version, uint64_t unix_ms,
                          uint32_t nonce);

/* What a valid id says. */
typedef struct fl_request_origin {
  char route[64], version[64];
  unsigned variant;
  uint64_t unix_ms;
} fl_request_origin_t;

/* 0 and *out filled when id is well formed and its tag is right; FL_EINVAL when malformed,
 * FL_EPARSE when the tag does not match (forged or altered). */
int fl_request_id_verify(const char *id, size_t len, fl_request_origin_t *out);

/* POST /api/v1/feedback: {"request_id", "score" −1..1, optional "label", "comment"}. Attributes the
 * score to the id's series (monitor.h counters) and stores it; a request can be rated once.
 * Returns the HTTP status and a new JSON answer (the attribution, or {"error": ...}). Control
 * thread (blocks on the store). */
int fl_feedback_post(fl_store_t *store, const char *body, size_t len, json_t **answer);

#endif
