/* test_base64.c — base64 as a specification: RFC 4648's test vectors in both spellings, and
 * only the canonical form decodes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base64.h"

static const char *const PLAIN[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const STD[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
static const char *const URL[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};

static void rfc_4648_vectors_round_trip_in_both_spellings(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof PLAIN / sizeof *PLAIN; i++) {
    char out[16];
    uint8_t back[16];
    size_t n = strlen(PLAIN[i]);
    assert_int_equal(fl_b64_encode(FL_B64_STD, (const uint8_t *)PLAIN[i], n, out), strlen(STD[i]));
    assert_string_equal(out, STD[i]);
    assert_int_equal(fl_b64_encoded_len(FL_B64_STD, n), strlen(STD[i]));
    assert_int_equal(fl_b64_decode(FL_B64_STD, STD[i], strlen(STD[i]), back, sizeof back), (long)n);
    assert_memory_equal(back, PLAIN[i], n);
    assert_int_equal(fl_b64_encode(FL_B64_URL, (const uint8_t *)PLAIN[i], n, out), strlen(URL[i]));
    assert_string_equal(out, URL[i]);
    assert_int_equal(fl_b64_encoded_len(FL_B64_URL, n), strlen(URL[i]));
    assert_int_equal(fl_b64_decode(FL_B64_URL, URL[i], strlen(URL[i]), back, sizeof back), (long)n);
    assert_memory_equal(back, PLAIN[i], n);
  }
}

static void the_alphabets_differ_in_two_characters(void **state) {
  (void)state;
  const uint8_t bytes[] = {0xfb, 0xff};
  char out[8];
  fl_b64_encode(FL_B64_STD, bytes, 2, out);
  assert_string_equal(out, "+/8=");
  fl_b64_encode(FL_B64_URL, bytes, 2, out);
  assert_string_equal(out, "-_8");
  uint8_t back[4];
  assert_int_equal(fl_b64_decode(FL_B64_STD, "-_8=", 4, back, sizeof back), -1);
  assert_int_equal(fl_b64_decode(FL_B64_URL, "+/8", 3, back, sizeof back), -1);
}

static void only_the_canonical_form_decodes(void **state) {
  (void)state;
  uint8_t back[16];
  assert_int_equal(fl_b64_decode(FL_B64_STD, "Zg", 2, back, sizeof back), -1);        /* padding missing */
  assert_int_equal(fl_b64_decode(FL_B64_STD, "Zh==", 4, back, sizeof back), -1);      /* unused bits set */
  assert_int_equal(fl_b64_decode(FL_B64_URL, "Zh", 2, back, sizeof back), -1);
  assert_int_equal(fl_b64_decode(FL_B64_URL, "Z", 1, back, sizeof back), -1);         /* no such length */
  assert_int_equal(fl_b64_decode(FL_B64_STD, "Zm9v Yg==", 9, back, sizeof back), -1);
  assert_int_equal(fl_b64_decode(FL_B64_STD, "Zm9vYmFy", 8, back, 5), -1);           /* over the room */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rfc_4648_vectors_round_trip_in_both_spellings),
      cmocka_unit_test(the_alphabets_differ_in_two_characters),
      cmocka_unit_test(only_the_canonical_form_decodes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
