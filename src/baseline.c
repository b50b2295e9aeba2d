/* baseline.c — a route's input baseline: per-feature uniform samples and their JSON form. */
#include "baseline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

const char *fl_baseline_state_name(fl_baseline_state_t s) {
  return s == FL_BASELINE_CAPTURING ? "capturing" : s == FL_BASELINE_READY ? "ready" : "none";
}

void fl_baseline_add(fl_baseline_t *b, unsigned f, double v) {
  if (f >= FL_F_COUNT || !fl_feature_is_input(f) || !fl_float_range(v)) return;
  fl_reservoir_t *r = &b->sample[f];
  if (!r->cap && fl_reservoir_init(r, FL_BASELINE_CAP, f) != 0) return;
  fl_reservoir_add(r, (float)v);       /* live values are kept as floats: compare like with like */
}

json_t *fl_baseline_json(const fl_baseline_t *b) {
  json_t *o = json_object();
  char buf[32];
  for (unsigned f = 0; f < FL_F_COUNT; f++) {
    if (!b->sample[f].n) continue;
    json_t *a = json_array();
    for (size_t i = 0; i < b->sample[f].n; i++) json_array_append_new(a, json_real(b->sample[f].values[i]));
    json_object_set_new(o, fl_feature_name(f, buf, sizeof buf), a);
  }
  return o;
}

static int check_shape(const json_t *features, char *err, size_t cap) {
  const char *name;
  const json_t *list, *v;
  size_t i;
  if (!json_is_object(features)) {
    snprintf(err, cap, "a baseline is an object of feature names to lists of numbers");
    return FL_EINVAL;
  }
  json_object_foreach((json_t *)features, name, list) {
    int f = fl_feature_parse(name);
    if (f < 0 || !fl_feature_is_input((unsigned)f)) {
      snprintf(err, cap, "\"%s\" is not an input feature (prompt_chars, prompt_messages, input_0 .. input_15)", name);
      return FL_EINVAL;
    }
    if (!json_is_array(list) || json_array_size(list) > FL_BASELINE_CAP) {
      snprintf(err, cap, "\"%s\" must list at most %d numbers", name, FL_BASELINE_CAP);
      return FL_EINVAL;
    }
    json_array_foreach(list, i, v) {
      if (!json_is_number(v) || !fl_float_range(json_number_value(v))) {
        snprintf(err, cap, "\"%s\"[%zu] is not a number within float range", name, i);
        return FL_EINVAL;
      }
    }
  }
  return 0;
}

int fl_baseline_load(fl_baseline_t *b, const json_t *features, char *err, size_t err_cap) {
  int rc = check_shape(features, err, err_cap);
  if (rc) return rc;
  fl_baseline_t loaded = {.state = FL_BASELINE_READY, .saved = b->saved};
  memcpy(loaded.route, b->route, sizeof loaded.route);
  const char *name;
  const json_t *list;
  json_object_foreach((json_t *)features, name, list) {
    unsigned f = (unsigned)fl_feature_parse(name);
    size_t i;
    const json_t *v;
    if (!json_array_size(list)) continue;
    if (fl_reservoir_init(&loaded.sample[f], FL_BASELINE_CAP, f) != 0) {
      fl_baseline_clear(&loaded);
      snprintf(err, err_cap, "out of memory");
      return FL_ENOMEM;
    }
    json_array_foreach(list, i, v) fl_reservoir_add(&loaded.sample[f], (float)json_number_value(v));
  }
  fl_baseline_clear(b);
  *b = loaded;
  return 0;
}

void fl_baseline_clear(fl_baseline_t *b) {
  for (unsigned f = 0; f < FL_F_COUNT; f++) fl_reservoir_free(&b->sample[f]);
  b->state = FL_BASELINE_NONE;
}
