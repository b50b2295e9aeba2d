/* baseline.h — the reference distribution of a route's inputs for drift: a uniform sample of each
 * input feature's values, captured from the stable variant over data.baseline_capture, or loaded
 * from data.baseline_file or the state store (where a captured one is saved). Owned by the
 * monitor (monitor.h), under its lock. */
#ifndef FL_BASELINE_H
#define FL_BASELINE_H

#include "quality.h"
#include "stats.h"

#include <jansson.h>

#define FL_BASELINE_CAP 5000       /* values kept per feature */

typedef enum { FL_BASELINE_NONE, FL_BASELINE_CAPTURING, FL_BASELINE_READY } fl_baseline_state_t;

typedef struct fl_baseline {
  char route[64];
  fl_baseline_state_t state;
  bool saved;                      /* READY and written to the state store */
  uint64_t until_ms;               /* CAPTURING: monotonic end of the capture */
  fl_reservoir_t sample[FL_F_COUNT];   /* input features only; cap 0 until a first value */
} fl_baseline_t;

const char *fl_baseline_state_name(fl_baseline_state_t s);

/* Adds a value of an input feature while capturing (algorithm R beyond FL_BASELINE_CAP). */
void fl_baseline_add(fl_baseline_t *b, unsigned feature, double v);

/* {"prompt_chars": [...], "input_0": [...]}: a new reference. */
json_t *fl_baseline_json(const fl_baseline_t *b);

/* Replaces the values with features in that form and makes b READY (saved stays as it is). On a
 * bad shape returns FL_EINVAL with the reason in err and leaves b unchanged. */
int fl_baseline_load(fl_baseline_t *b, const json_t *features, char *err, size_t err_cap);

void fl_baseline_clear(fl_baseline_t *b);   /* frees the values; state NONE */

#endif
