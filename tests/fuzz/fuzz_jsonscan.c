/* fuzz_jsonscan.c — the top-level field scan that the model rewrite and the json: user key rely
 * on, against jansson: wherever jansson reads the input as an object, the scan must find the
 * value jansson reads for "model", or say the key is absent or given twice, never another one
 * (a difference would let a client choose the model a variant's rewrite is meant to set). */
#include "fuzz.h"

#include "jsonscan.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

FL_FUZZ_TARGET(jsonscan) {
  fl_json_span_t span;
  int rc = fl_json_top_field((const char *)data, size, "model", &span);
  if (rc == 0 && (span.start > size || span.len > size - span.start)) abort();
  json_t *j = json_loadb((const char *)data, size, 0, NULL);      /* duplicates: jansson keeps the last */
  const json_t *m = json_is_object(j) ? json_object_get(j, "model") : NULL;
  if (json_is_object(j)) {
    if (rc == FL_ENOENT && m) abort();                              /* jansson reads a model we missed */
    if (rc == 0 && !m) abort();
    if (rc == 0 && span.is_string != json_is_string(m)) abort();
    if (rc == 0 && json_is_string(m) && !memchr(data + span.start, '\\', span.len) &&
        (json_string_length(m) != span.len || memcmp(json_string_value(m), data + span.start, span.len) != 0))
      abort();                                                      /* another value than jansson's */
  }
  json_decref(j);
  return 0;
}
