/* window.c — the difference of two series snapshots and the data rates read from one: pure
 * functions of window.h's types, shared by the rollout spec, the rollouts and their analysis. */
#include "window.h"

#include <stddef.h>
#include <string.h>

void fl_window_add_diff(fl_series_snap_t *acc, const fl_series_snap_t *end, const fl_series_snap_t *start) {
  acc->requests += end->requests - start->requests;
  acc->errors += end->errors - start->errors;
  acc->completion_tokens += end->completion_tokens - start->completion_tokens;
  fl_hist_snap_add_diff(&acc->duration, &end->duration, &start->duration);
  fl_hist_snap_add_diff(&acc->ttft, &end->ttft, &start->ttft);
  const uint64_t *e = (const uint64_t *)&end->data, *b = (const uint64_t *)&start->data;
  uint64_t *o = (uint64_t *)&acc->data;
  for (size_t i = 0; i < FL_DATA_COUNTERS; i++) o[i] += e[i] - b[i];
  acc->data.feedback_sum += end->data.feedback_sum - start->data.feedback_sum;
  acc->data.feedback_sumsq += end->data.feedback_sumsq - start->data.feedback_sumsq;
}

void fl_window_diff(const fl_series_snap_t *end, const fl_series_snap_t *start, fl_series_snap_t *out) {
  memset(out, 0, sizeof *out);
  out->series = end->series;
  out->series_gen = end->series_gen;
  fl_window_add_diff(out, end, start);
  out->has_process = end->has_process;         /* resources are levels: the window's end */
  out->process_rss = end->process_rss;
  out->process_cpu = end->process_cpu;           /* backend levels: set by the window's close */
}

#define RATE(name, num, den) {name, offsetof(fl_data_snap_t, num), offsetof(fl_data_snap_t, den)}
static const struct { const char *name; size_t num, den; } RATES[] = {
    RATE("nan_rate", nan, values),           RATE("inf_rate", inf, values),
    RATE("null_rate", nulls, values),        RATE("missing_input_rate", input_missing, input_values),
    RATE("empty_answer_rate", empty, answers), RATE("truncated_rate", truncated, answers),
    RATE("refusal_rate", refusals, answers), RATE("invalid_json_rate", json_invalid, json_asked),
    RATE("malformed_request_rate", malformed, samples), RATE("shape_mismatch_rate", shape_mismatch, samples),
    RATE("unparsed_rate", unparsed, samples),
};

int fl_data_rate_find(const char *name) {
  for (size_t i = 0; i < FL_ARRAY_LEN(RATES); i++)
    if (strcmp(RATES[i].name, name) == 0) return (int)i;
  return -1;
}

void fl_data_rate(const fl_data_snap_t *d, int which, uint64_t *num, uint64_t *den) {
  *num = *(const uint64_t *)((const char *)d + RATES[which].num);
  *den = *(const uint64_t *)((const char *)d + RATES[which].den);
}

unsigned fl_data_rate_count(void) { return FL_ARRAY_LEN(RATES); }

const char *fl_data_rate_name(int which) { return RATES[which].name; }
