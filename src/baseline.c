/* baseline.c — a route's input baseline: per-feature uniform samples and their JSON form. */
#include "baseline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

const char *fl_baseline_state_name(fl_baseline_state_t s) {
  return s == FL_BASELINE_CAPTURING ? "capturing" : s == FL_BASELINE_READY ? "ready" : "none";
}

static uint64_t next(fl_baseline_t *b) {
  if (!b->rng) b->rng = 0x9E3779B97F4A7C15ull;
  b->rng ^= b->rng << 13;
  b->rng ^= b->rng >> 7;
  b->rng ^= b->rng << 17;
  return b->rng;
}

void fl_baseline_add(fl_baseline_t *b, unsigned f, double v) {
  if (f >= FL_F_COUNT || !fl_feature_is_input(f) || !isfinite(v)) return;
  if (!b->values[f] && !(b->values[f] = malloc(sizeof(double) * FL_BASELINE_CAP))) return;
  v = (float)v;                        /* live values are kept as floats: compare like with like */
  uint64_t seen = ++b->seen[f];
  if (b->n[f] < FL_BASELINE_CAP) b->values[f][b->n[f]++] = v;
  else if (next(b) % seen < FL_BASELINE_CAP) b->values[f][next(b) % FL_BASELINE_CAP] = v;
}

json_t *fl_baseline_json(const fl_baseline_t *b) {
  json_t *o = json_object();
  char buf[32];
  for (unsigned f = 0; f < FL_F_COUNT; f++) {
    if (!b->n[f]) continue;
    json_t *a = json_array();
    for (uint32_t i = 0; i < b->n[f]; i++) json_array_append_new(a, json_real(b->values[f][i]));
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
      if (!json_is_number(v)) {
        snprintf(err, cap, "\"%s\"[%zu] is not a number", name, i);
        return FL_EINVAL;
      }
    }
  }
  return 0;
}

int fl_baseline_load(fl_baseline_t *b, const json_t *features, char *err, size_t err_cap) {
  int rc = check_shape(features, err, err_cap);
  if (rc) return rc;
  fl_baseline_t loaded = {.state = FL_BASELINE_READY, .saved = b->saved, .rng = b->rng};
  memcpy(loaded.route, b->route, sizeof loaded.route);
  const char *name;
  const json_t *list;
  json_object_foreach((json_t *)features, name, list) {
    unsigned f = (unsigned)fl_feature_parse(name);
    size_t n = json_array_size(list);
    if (!n) continue;
    if (!(loaded.values[f] = malloc(sizeof(double) * FL_BASELINE_CAP))) {
      fl_baseline_clear(&loaded);
      snprintf(err, err_cap, "out of memory");
      return FL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) loaded.values[f][i] = (float)json_number_value(json_array_get(list, i));
    loaded.n[f] = (uint32_t)n;
    loaded.seen[f] = n;
  }
  fl_baseline_clear(b);
  *b = loaded;
  return 0;
}

void fl_baseline_clear(fl_baseline_t *b) {
  for (unsigned f = 0; f < FL_F_COUNT; f++) {
    free(b->values[f]);
    b->values[f] = NULL;
    b->n[f] = 0;
    b->seen[f] = 0;
  }
  b->state = FL_BASELINE_NONE;
}
