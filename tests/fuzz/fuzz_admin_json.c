/* fuzz_admin_json.c — the admin API's JSON bodies: a rollout spec (POST .../rollout) and a
 * feedback body (POST /api/v1/feedback, without a store). */
#include "fuzz.h"

#include "analysis.h"
#include "feedback.h"

FL_FUZZ_TARGET(admin_json) {
  json_error_t jerr;
  json_t *j = json_loadb((const char *)data, size, 0, &jerr);
  fl_rollout_spec_t spec;
  char err[256];
  if (j && fl_rollout_spec_parse(j, &spec, err, sizeof err) == 0) json_decref(fl_rollout_spec_json(&spec));
  json_decref(j);
  static int keyed;
  if (!keyed++) fl_feedback_set_key("fuzzing key of sixteen", 22);
  json_t *answer = NULL;
  fl_feedback_post(NULL, (const char *)data, size, &answer);
  json_decref(answer);
  return 0;
}
