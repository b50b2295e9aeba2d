/* jsonscan.h — finds one top-level field of a JSON object without building a tree, so the
 * worker threads can read `user` or rewrite `model` in a request body cheaply. */
#ifndef FL_JSONSCAN_H
#define FL_JSONSCAN_H

#include "common.h"

typedef struct fl_json_span {
  size_t start, len;         /* the raw value: for a string, the bytes between the quotes */
  bool is_string;
} fl_json_span_t;

/* Looks up top-level `key` (an ASCII name, compared with each key as a JSON parser decodes it:
 * "mod\u0065l" is "model") in buf, which may start with a UTF-8 byte-order mark. Returns 0 and the
 * value's span, FL_ENOENT when absent, FL_EPARSE when buf is not a well-formed JSON object (as far
 * as the scan reaches), FL_EINVAL when it has the key twice (parsers disagree on which counts). */
int fl_json_top_field(const char *buf, size_t len, const char *key, fl_json_span_t *out);

#endif
