/* jsonutil.h — small jansson helpers for modules that answer in JSON. Header only. */
#ifndef FL_JSONUTIL_H
#define FL_JSONUTIL_H

#include <jansson.h>
#include <math.h>

/* A number, or null where JSON has none (NaN, ±Inf: json_real would fail on those). New reference. */
static inline json_t *fl_json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

#endif
