/* fuzz_request_id.c — the signed request-id decoder: any bytes as an id; and a route and version
 * taken from the input, signed and read back, which must give them again. */
#include "fuzz.h"

#include "feedback.h"

#include <stdlib.h>
#include <string.h>

FL_FUZZ_TARGET(request_id) {
  static int keyed;
  if (!keyed++) fl_feedback_set_key("fuzzing key of sixteen", 22);
  fl_request_origin_t o;
  fl_request_id_verify((const char *)data, size, &o);
  if (size < 2) return 0;
  char route[64] = "", version[64] = "", id[FL_REQUEST_ID_MAX];
  size_t rl = FL_MIN((size_t)data[0] % 64, size - 2), vl = FL_MIN((size_t)data[1] % 64, size - 2 - rl);
  memcpy(route, data + 2, rl);                 /* a NUL inside ends the name early, as in C */
  memcpy(version, data + 2 + rl, vl);
  size_t n = fl_request_id_sign(id, route, data[0] & 1, version, size, (uint32_t)size * 7u);
  if (n == 0 || fl_request_id_verify(id, n, &o) != 0 || strcmp(o.route, route) != 0 || strcmp(o.version, version) != 0 ||
      o.variant != (data[0] & 1u))
    abort();
  return 0;
}
