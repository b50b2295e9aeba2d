/* test_feedback.c — signed request ids as a specification: SHA-256, HMAC and SipHash against the
 * FIPS 180, RFC 4231 and SipHash paper's vectors, ids that round-trip what served the request
 * (those signed before with HMAC too), and every alteration, cut or other key refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "base64.h"
#include "feedback.h"
#include "sha256.h"
#include "siphash.h"
#include "store.h"

#include <unistd.h>

static void hex(const uint8_t *d, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void sha256_vectors(void);

/* Hashes msg fed in pieces of `piece` bytes, so block boundaries fall everywhere. */
static void sha256_hex(const void *msg, size_t len, size_t piece, char out[65]) {
  fl_sha256_t c;
  uint8_t d[FL_SHA256_LEN];
  fl_sha256_init(&c);
  for (size_t i = 0; i < len; i += piece) fl_sha256_update(&c, (const char *)msg + i, FL_MIN(piece, len - i));
  fl_sha256_final(&c, d);
  hex(d, sizeof d, out);
}

/* Both compressions, the SHA extensions' (where the CPU has them) and the portable one. */
static void sha256_matches_the_fips_180_vectors(void **state) {
  for (int hw = 1; hw >= 0; hw--) {
    fl_sha256_use_hardware(hw);
    sha256_vectors();
  }
  fl_sha256_use_hardware(true);
}

static void sha256_vectors(void) {
  char out[65];
  sha256_hex("", 0, 1, out);
  assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  sha256_hex("abc", 3, 1, out);
  assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  for (size_t piece = 1; piece <= 64; piece++) {
    sha256_hex(two_blocks, strlen(two_blocks), piece, out);
    assert_string_equal(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  }
  char *million = malloc(1000000);
  assert_non_null(million);
  memset(million, 'a', 1000000);
  sha256_hex(million, 1000000, 997, out);
  assert_string_equal(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(million);
}

static void hmac(const void *key, size_t key_len, const char *msg, char out[65]) {
  fl_hmac_key_t k;
  uint8_t d[FL_SHA256_LEN];
  fl_hmac_key_init(&k, key, key_len);
  fl_hmac(&k, msg, strlen(msg), d);
  hex(d, sizeof d, out);
}

static void hmac_vectors(void);

static void hmac_matches_the_rfc_4231_vectors(void **state) {
  for (int hw = 1; hw >= 0; hw--) {
    fl_sha256_use_hardware(hw);
    hmac_vectors();
  }
  fl_sha256_use_hardware(true);
}

static void hmac_vectors(void) {
  uint8_t key[131];
  char out[65];
  memset(key, 0x0b, 20);
  hmac(key, 20, "Hi There", out);
  assert_string_equal(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  hmac("Jefe", 4, "what do ya want for nothing?", out);
  assert_string_equal(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  memset(key, 0xaa, 131);                    /* longer than a block: hashed first */
  hmac(key, 131, "Test Using Larger Than Block-Size Key - Hash Key First", out);
  assert_string_equal(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static const char KEY[] = "a key of at least sixteen bytes";

/* The paper's example (key 00..0f, message 00..0e) and the reference vectors' first (empty). */
static void siphash_matches_the_papers_vectors(void **state) {
  uint8_t key[16], msg[64];
  for (int i = 0; i < 16; i++) key[i] = (uint8_t)i;
  for (int i = 0; i < 64; i++) msg[i] = (uint8_t)i;
  fl_siphash_key_t k;
  fl_siphash_key_init(&k, key);
  assert_true(fl_siphash(&k, msg, 0) == 0x726fdb47dd0e0e31u);
  assert_true(fl_siphash(&k, msg, 15) == 0xa129ca6149be45e5u);
  assert_true(fl_siphash(&k, msg, 16) != fl_siphash(&k, msg, 15));
}

/* An id of the first format (HMAC-SHA-256 tag, 12 bytes), signed by an earlier fledge, still
 * verifies: feedback on it may come long after. */
static void ids_signed_with_hmac_by_earlier_versions_still_verify(void **state) {
  fl_feedback_set_key(KEY, strlen(KEY));
  uint8_t buf[64] = {1, 1, 4, 'c', 'h', 'a', 't', 2, 'v', '2', 0, 0, 0, 0, 0, 42, 0, 0, 0, 7};
  size_t n = 20;
  fl_hmac_key_t hk;
  uint8_t mac[FL_SHA256_LEN];
  fl_hmac_key_init(&hk, KEY, strlen(KEY));
  fl_hmac(&hk, buf, n, mac);
  memcpy(buf + n, mac, 12);
  char id[FL_REQUEST_ID_MAX];
  size_t len = fl_b64_encode(FL_B64_URL, buf, n + 12, id);
  fl_request_origin_t o;
  assert_int_equal(fl_request_id_verify(id, len, &o), 0);
  assert_string_equal(o.route, "chat");
  assert_string_equal(o.version, "v2");
  assert_int_equal(o.unix_ms, 42);
  buf[n] ^= 1;                                   /* its tag altered */
  len = fl_b64_encode(FL_B64_URL, buf, n + 12, id);
  assert_int_equal(fl_request_id_verify(id, len, &o), FL_EPARSE);
}

static void an_id_names_the_route_variant_version_and_time_that_served(void **state) {
  fl_feedback_set_key(KEY, strlen(KEY));
  char id[FL_REQUEST_ID_MAX];
  size_t n = fl_request_id_sign(id, "chat", 1, "v2", 1790000000123ull, 77);
  assert_int_equal(n, strlen(id));
  assert_int_equal(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), n);
  fl_request_origin_t o;
  assert_int_equal(fl_request_id_verify(id, n, &o), 0);
  assert_string_equal(o.route, "chat");
  assert_string_equal(o.version, "v2");
  assert_int_equal(o.variant, 1);
  assert_int_equal(o.unix_ms, 1790000000123ull);
  char other[FL_REQUEST_ID_MAX];
  fl_request_id_sign(other, "chat", 1, "v2", 1790000000123ull, 78);
  assert_string_not_equal(id, other);        /* the nonce tells two requests of one millisecond apart */
}

static void the_longest_names_fit_and_longer_ones_are_not_signed(void **state) {
  fl_feedback_set_key(KEY, strlen(KEY));
  char route[64], version[64], id[FL_REQUEST_ID_MAX];
  memset(route, 'r', 63), route[63] = '\0';
  memset(version, 'v', 63), version[63] = '\0';
  size_t n = fl_request_id_sign(id, route, 0, version, 1, 2);
  assert_true(n > 0 && n < FL_REQUEST_ID_MAX);
  fl_request_origin_t o;
  assert_int_equal(fl_request_id_verify(id, n, &o), 0);
  assert_string_equal(o.route, route);
  char long_route[70];
  memset(long_route, 'r', 64), long_route[64] = '\0';
  assert_int_equal(fl_request_id_sign(id, long_route, 0, "v1", 1, 2), 0);
}

static void every_altered_character_is_refused(void **state) {
  fl_feedback_set_key(KEY, strlen(KEY));
  char id[FL_REQUEST_ID_MAX], bad[FL_REQUEST_ID_MAX];
  size_t n = fl_request_id_sign(id, "chat", 0, "v1", 1790000000000ull, 5);
  fl_request_origin_t o;
  static const char repl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < sizeof repl - 1; k++) {
      if (id[i] == repl[k]) continue;
      memcpy(bad, id, n + 1);
      bad[i] = repl[k];
      int rc = fl_request_id_verify(bad, n, &o);
      if (rc == 0) fail_msg("id altered at %zu to '%c' was accepted", i, repl[k]);
      assert_true(rc == FL_EPARSE || rc == FL_EINVAL);
    }
  for (size_t cut = 0; cut < n; cut++) assert_int_not_equal(fl_request_id_verify(id, cut, &o), 0);
  assert_int_equal(fl_request_id_verify("not base64!", 11, &o), FL_EINVAL);
  fl_feedback_set_key("another key of sixteen", 22);
  assert_int_equal(fl_request_id_verify(id, n, &o), FL_EPARSE);   /* another gateway's key */
}

static void feedback_bodies_are_checked_before_anything_is_counted(void **state) {
  fl_feedback_set_key(KEY, strlen(KEY));
  char id[FL_REQUEST_ID_MAX], body[512];
  fl_request_id_sign(id, "chat", 1, "v2", 1790000000000ull, 9);
  static const char *const refused[] = {
      "[]", "{\"score\": 1}", "{\"request_id\": \"%s\"}", "{\"request_id\": \"%s\", \"score\": 1.5}",
      "{\"request_id\": \"%s\", \"score\": \"1\"}", "{\"request_id\": \"%s\", \"score\": 1, \"label\": 7}",
      "{\"request_id\": \"x%s\", \"score\": 1}", "not json",
  };
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
    int n = snprintf(body, sizeof body, refused[i], id);
    json_t *answer = NULL;
    assert_int_equal(fl_feedback_post(NULL, body, (size_t)n, &answer), 400);
    assert_non_null(json_object_get(answer, "error"));
    json_decref(answer);
  }
  int n = snprintf(body, sizeof body, "{\"request_id\": \"%s\", \"score\": -0.5, \"label\": \"wrong\"}", id);
  json_t *answer = NULL;
  assert_int_equal(fl_feedback_post(NULL, body, (size_t)n, &answer), 200);
  assert_string_equal(json_string_value(json_object_get(answer, "variant")), "canary");
  assert_string_equal(json_string_value(json_object_get(answer, "version")), "v2");
  assert_true(json_real_value(json_object_get(answer, "score")) == -0.5);
  json_decref(answer);
}

/* Two gateways starting on one fresh store file agree on the key: an id the first signs, the
 * second verifies; a key already stored is never replaced, and a malformed one is an error. */
static void gateways_sharing_a_store_share_its_key_and_never_replace_it(void **state) {
  char path[] = "/tmp/fledge-feedback-key-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  unlink(path);
  fl_conf_t *conf;
  char err[256];
  static const char YAML[] = "routes:\n  - name: r\n    stable: { version: v1, backends: [127.0.0.1:9] }\n";
  assert_int_equal(fl_conf_parse("t.yaml", YAML, sizeof YAML - 1, &conf, err, sizeof err), 0);
  fl_store_t *a, *b;
  assert_int_equal(fl_store_open(path, &a, err, sizeof err), 0);
  assert_int_equal(fl_store_open(path, &b, err, sizeof err), 0);
  char id[FL_REQUEST_ID_MAX];
  fl_request_origin_t o;
  assert_int_equal(fl_feedback_init(conf, a, err, sizeof err), 0);
  size_t n = fl_request_id_sign(id, "r", 0, "v1", 1, 2);
  fl_feedback_set_key("some other key, 16+", 19);
  assert_int_equal(fl_feedback_init(conf, b, err, sizeof err), 0);
  assert_int_equal(fl_request_id_verify(id, n, &o), 0);
  assert_int_equal(fl_store_add_setting(b, "feedback_key", "0000"), 0);   /* taken: left as it is */
  assert_int_equal(fl_feedback_init(conf, a, err, sizeof err), 0);
  assert_int_equal(fl_request_id_verify(id, n, &o), 0);
  assert_int_equal(fl_store_put_setting(b, "feedback_key", "not hex"), 0);
  assert_int_equal(fl_feedback_init(conf, a, err, sizeof err), FL_EINVAL);
  assert_non_null(strstr(err, "64 hex digits"));
  fl_store_close(a);
  fl_store_close(b);
  fl_conf_unref(conf);
  unlink(path);
  char side[300];
  snprintf(side, sizeof side, "%s-wal", path);
  unlink(side);
  snprintf(side, sizeof side, "%s-shm", path);
  unlink(side);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(gateways_sharing_a_store_share_its_key_and_never_replace_it),
      cmocka_unit_test(sha256_matches_the_fips_180_vectors),
      cmocka_unit_test(hmac_matches_the_rfc_4231_vectors),
      cmocka_unit_test(siphash_matches_the_papers_vectors),
      cmocka_unit_test(ids_signed_with_hmac_by_earlier_versions_still_verify),
      cmocka_unit_test(an_id_names_the_route_variant_version_and_time_that_served),
      cmocka_unit_test(the_longest_names_fit_and_longer_ones_are_not_signed),
      cmocka_unit_test(every_altered_character_is_refused),
      cmocka_unit_test(feedback_bodies_are_checked_before_anything_is_counted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
