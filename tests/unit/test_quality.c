/* test_quality.c — what the data-quality observer must read from real OpenAI and KServe shaped
 * exchanges: sizes, finish reasons, empty, refused and invalid-JSON answers, Python's bare NaN
 * and Infinity, per-feature values, predicted classes and shape mismatches; and no harm from
 * garbage. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "quality.h"

/* ---- a sink that keeps what it is told ---- */

#define MAX_SEEN 64

typedef struct {
  unsigned n;
  unsigned feature[MAX_SEEN];
  double value[MAX_SEEN];
  unsigned n_labels;
  char label[MAX_SEEN][16];
} seen_t;

static void on_value(void *ctx, unsigned f, double v) {
  seen_t *s = ctx;
  assert_true(s->n < MAX_SEEN);
  s->feature[s->n] = f;
  s->value[s->n++] = v;
}

static void on_label(void *ctx, const char *text, size_t len) {
  seen_t *s = ctx;
  assert_true(s->n_labels < MAX_SEEN && len < 16);
  memcpy(s->label[s->n_labels], text, len);
  s->label[s->n_labels++][len] = '\0';
}

/* The values reported for one feature, in order; returns how many. */
static unsigned values_of(const seen_t *s, unsigned f, double *out, unsigned cap) {
  unsigned k = 0;
  for (unsigned i = 0; i < s->n; i++)
    if (s->feature[i] == f && k < cap) out[k++] = s->value[i];
  return k;
}

static double only_value(const seen_t *s, unsigned f) {
  double v[4];
  assert_int_equal(values_of(s, f, v, 4), 1);
  return v[0];
}

static fl_quality_conf_t qc;

static int setup(void **state) { return fl_quality_conf_init(&qc, NULL, 0, NULL, 0); }
static int teardown(void **state) {
  fl_quality_conf_free(&qc);
  return 0;
}

static void observe(const char *req, const char *resp, bool stream, int status, seen_t *seen, fl_qobs_t *o) {
  memset(seen, 0, sizeof *seen);
  fl_qsink_t sink = {on_value, on_label, seen};
  fl_qsample_t s = {.req = req, .req_len = req ? strlen(req) : 0, .resp = resp, .resp_len = resp ? strlen(resp) : 0,
                    .stream = stream, .status = status};
  fl_quality_observe(&qc, &s, &sink, o);
}

#define CHAT_REQ "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"}," \
                 "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"h\\u00e9llo\"}]}]}"

/* ---- JSON with NaN ---- */

static void python_nan_and_infinity_parse_as_markers_outside_strings_only(void **state) {
  const char *text = "{\"a\":[NaN,Infinity,-Infinity,1.5],\"s\":\"NaN and Infinity\"}";
  json_t *j = fl_quality_parse(text, strlen(text));
  assert_non_null(j);
  json_t *a = json_object_get(j, "a");
  assert_int_equal(fl_quality_special(json_array_get(a, 0)), 'n');
  assert_int_equal(fl_quality_special(json_array_get(a, 1)), 'i');
  assert_int_equal(fl_quality_special(json_array_get(a, 2)), 'j');
  assert_true(json_is_real(json_array_get(a, 3)));
  assert_string_equal(json_string_value(json_object_get(j, "s")), "NaN and Infinity");
  assert_int_equal(fl_quality_special(json_object_get(j, "s")), 0);
  json_decref(j);
  assert_null(fl_quality_parse("{\"a\":NaNx}", 10));
  assert_null(fl_quality_parse("", 0));
}

/* ---- LLM ---- */

static void a_chat_answer_gives_prompt_and_answer_sizes_tokens_and_finish(void **state) {
  seen_t s;
  fl_qobs_t o;
  observe(CHAT_REQ, "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Gr\\u00fc\\u00df "
          "dich\"},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":7}}",
          false, 200, &s, &o);
  assert_int_equal(o.kind, FL_QK_CHAT);
  assert_false(o.unparsed);
  assert_true(o.answer);
  assert_false(o.empty);
  assert_int_equal(o.finish, FL_FINISH_LENGTH);
  assert_true(only_value(&s, FL_F_PROMPT_MESSAGES) == 2);
  assert_true(only_value(&s, FL_F_PROMPT_CHARS) == 9 + 5);          /* characters, not bytes */
  assert_true(only_value(&s, FL_F_OUTPUT_CHARS) == 9);
  assert_true(only_value(&s, FL_F_OUTPUT_TOKENS) == 7);
  assert_true(only_value(&s, FL_F_FINISH) == FL_FINISH_LENGTH);
}

static void empty_refused_and_invalid_json_answers_are_flagged(void **state) {
  seen_t s;
  fl_qobs_t o;
  observe(CHAT_REQ, "{\"choices\":[{\"message\":{\"content\":\"\"},\"finish_reason\":\"stop\"}]}", false, 200, &s, &o);
  assert_true(o.empty);
  assert_false(o.refusal);
  assert_int_equal(values_of(&s, FL_F_OUTPUT_TOKENS, NULL, 0), 0);     /* no usage: tokens unknown */
  observe(CHAT_REQ, "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"id\":\"t\"}]},"
          "\"finish_reason\":\"tool_calls\"}]}", false, 200, &s, &o);
  assert_false(o.empty);                                            /* a tool call is an answer */
  assert_int_equal(o.finish, FL_FINISH_TOOL_CALLS);
  /* but "tool_calls": null or [] and "function_call": null, as servers send, are none */
  observe(CHAT_REQ, "{\"choices\":[{\"message\":{\"content\":\"\",\"tool_calls\":[],\"function_call\":null},"
          "\"finish_reason\":\"eos\"}]}", false, 200, &s, &o);
  assert_true(o.empty);
  assert_int_equal(o.finish, FL_FINISH_STOP);
  observe(CHAT_REQ, "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"tool_calls\":null}}]}\n\n"
          "data: {\"choices\":[{\"delta\":{\"tool_calls\":null},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
          true, 200, &s, &o);
  assert_true(o.empty);
  observe(CHAT_REQ, "{\"choices\":[{\"message\":{\"content\":\"I'm sorry, but I can't help with that.\"}}]}", false,
          200, &s, &o);
  assert_true(o.refusal);
  const char *json_req = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"}}";
  observe(json_req, "{\"choices\":[{\"message\":{\"content\":\"{\\\"a\\\": 1}\"}}]}", false, 200, &s, &o);
  assert_true(o.json_asked);
  assert_false(o.json_invalid);
  observe(json_req, "{\"choices\":[{\"message\":{\"content\":\"{\\\"a\\\": 1\"}}]}", false, 200, &s, &o);
  assert_true(o.json_invalid);
  observe(CHAT_REQ, "{\"choices\":[{\"message\":{\"content\":\"not json\"}}]}", false, 200, &s, &o);
  assert_false(o.json_asked);
  assert_false(o.json_invalid);
}

static void configured_refusal_patterns_replace_the_built_in_ones(void **state) {
  fl_quality_conf_t mine;
  char *patterns[] = {"^nope\\b"}, err[200];
  assert_int_equal(fl_quality_conf_init(&mine, patterns, 1, err, sizeof err), 0);
  fl_qsample_t s = {.req = CHAT_REQ, .req_len = strlen(CHAT_REQ), .status = 200,
                    .resp = "{\"choices\":[{\"message\":{\"content\":\"NOPE, not today\"}}]}"};
  s.resp_len = strlen(s.resp);
  fl_qobs_t o;
  fl_quality_observe(&mine, &s, NULL, &o);
  assert_true(o.refusal);
  s.resp = "{\"choices\":[{\"message\":{\"content\":\"I'm sorry, but I can't.\"}}]}";
  s.resp_len = strlen(s.resp);
  fl_quality_observe(&mine, &s, NULL, &o);
  assert_false(o.refusal);
  fl_quality_conf_free(&mine);
  char *broken[] = {"(unclosed"};
  assert_int_equal(fl_quality_conf_init(&mine, broken, 1, err, sizeof err), FL_EINVAL);
  assert_non_null(strstr(err, "(unclosed"));
}

#define EV(delta) "data: {\"choices\":[{\"index\":0,\"delta\":" delta "}]}\n\n"

static void a_stream_is_reassembled_from_its_events(void **state) {
  seen_t s;
  fl_qobs_t o;
  const char *body = EV("{\"role\":\"assistant\",\"content\":\"one \"}") EV("{\"content\":\"two\"}")
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" "data: [DONE]\n\n";
  observe(CHAT_REQ, body, true, 200, &s, &o);
  assert_false(o.unparsed);
  assert_true(o.answer);
  assert_int_equal(o.finish, FL_FINISH_STOP);
  assert_true(only_value(&s, FL_F_OUTPUT_CHARS) == 7);
  assert_true(only_value(&s, FL_F_OUTPUT_TOKENS) == 2);              /* token events, without usage */
  const char *with_usage = EV("{\"content\":\"a\"}") "data: {\"choices\":[],\"usage\":{\"completion_tokens\":5}}\n\n"
                           "data: [DONE]\n\n";
  observe(CHAT_REQ, with_usage, true, 200, &s, &o);
  assert_true(only_value(&s, FL_F_OUTPUT_TOKENS) == 5);
  fl_qsample_t cut = {.req = CHAT_REQ, .req_len = strlen(CHAT_REQ), .resp = body, .resp_len = 30, .resp_cut = true,
                      .stream = true, .status = 200};
  memset(&s, 0, sizeof s);
  fl_qsink_t sink = {on_value, on_label, &s};
  fl_quality_observe(&qc, &cut, &sink, &o);
  assert_true(o.unparsed);                                          /* a cut stream's sizes would lie */
  assert_int_equal(values_of(&s, FL_F_OUTPUT_CHARS, NULL, 0), 0);
}

static void collect_event_text(void *ctx, const json_t *ev) {
  const json_t *piece = fl_quality_choice_text(json_array_get(json_object_get(ev, "choices"), 0));
  strncat(ctx, json_string_value(piece) ? json_string_value(piece) : "|", 63 - strlen(ctx));
}

static void stream_events_stop_at_done_and_skip_what_the_capture_cut(void **state) {
  const char *body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\n: comment\n"
                     "data: not json\n\ndata:{\"choices\":[{\"text\":\"b\"}]}\n\ndata: [DONE]\n\n"
                     "data: {\"choices\":[{\"text\":\"after\"}]}\n\n";
  char seen[64] = "";
  assert_true(fl_quality_stream_events(body, strlen(body), false, collect_event_text, seen));
  assert_string_equal(seen, "ab");                    /* comments and non-JSON lines skipped, none after [DONE] */
  const char *cut_body = "data: {\"choices\":[{\"text\":\"c\"}]}\ndata: {\"choices\":[{\"text\":\"d\"}]}";
  seen[0] = '\0';
  assert_false(fl_quality_stream_events(cut_body, strlen(cut_body), true, collect_event_text, seen));
  assert_string_equal(seen, "c");                     /* the last line may be a prefix of its event */
  seen[0] = '\0';
  assert_false(fl_quality_stream_events(cut_body, strlen(cut_body), false, collect_event_text, seen));
  assert_string_equal(seen, "cd");                    /* whole: the last line is the last event */
}

static void the_kind_comes_from_the_request_then_the_answer(void **state) {
  json_t *chat_req = json_loads(CHAT_REQ, 0, NULL), *v1 = json_loads("{\"predictions\":[1]}", 0, NULL);
  json_t *choice = json_loads("{\"choices\":[{\"text\":\"x\"}]}", 0, NULL);
  assert_int_equal(fl_quality_kind(chat_req, v1, false), FL_QK_CHAT);
  assert_int_equal(fl_quality_kind(NULL, v1, false), FL_QK_KSERVE_V1);
  assert_int_equal(fl_quality_kind(NULL, choice, false), FL_QK_COMPLETION);
  assert_int_equal(fl_quality_kind(NULL, NULL, false), FL_QK_UNKNOWN);
  assert_int_equal(fl_quality_kind(NULL, NULL, true), FL_QK_CHAT);
  json_decref(chat_req);
  json_decref(v1);
  json_decref(choice);
}

static void a_failed_answer_still_shows_its_request_and_a_400_is_a_malformed_request(void **state) {
  seen_t s;
  fl_qobs_t o;
  observe(CHAT_REQ, "{\"error\":{\"message\":\"bad\"}}", false, 400, &s, &o);
  assert_true(o.malformed_request);
  assert_false(o.answer);
  assert_false(o.unparsed);
  assert_true(only_value(&s, FL_F_PROMPT_MESSAGES) == 2);
  assert_int_equal(values_of(&s, FL_F_OUTPUT_CHARS, NULL, 0), 0);
}

/* ---- numeric models ---- */

static void kserve_v1_rows_give_features_and_missing_numbers_are_counted(void **state) {
  seen_t s;
  fl_qobs_t o;
  observe("{\"instances\":[[1,2],[3,NaN]]}", "{\"predictions\":[0.5,NaN,Infinity,null,-Infinity]}", false, 200, &s, &o);
  assert_int_equal(o.kind, FL_QK_KSERVE_V1);
  assert_int_equal(o.input_values, 4);
  assert_int_equal(o.input_missing, 1);
  assert_int_equal(o.values, 5);
  assert_int_equal(o.nan, 1);
  assert_int_equal(o.inf, 2);
  assert_int_equal(o.nulls, 1);
  assert_true(o.shape_mismatch);                                    /* 5 predictions for 2 instances */
  double v[4];
  assert_int_equal(values_of(&s, FL_F_INPUT + 0, v, 4), 2);
  assert_true(v[0] == 1 && v[1] == 3);
  assert_true(only_value(&s, FL_F_INPUT + 1) == 2);                 /* NaN is missing, not a value */
  assert_true(only_value(&s, FL_F_OUTPUT + 0) == 0.5);
  observe("{\"instances\":[[1,2],[3]]}", "{\"predictions\":[1.5,2.5]}", false, 200, &s, &o);
  assert_true(o.shape_mismatch);                                    /* ragged rows */
  observe("{\"instances\":[{\"a\":1,\"b\":2}]}", "{\"predictions\":[[0.1,0.2]]}", false, 200, &s, &o);
  assert_false(o.shape_mismatch);
  assert_true(only_value(&s, FL_F_INPUT + 1) == 2);                 /* object fields by position */
  assert_true(only_value(&s, FL_F_OUTPUT + 1) == 0.2);
}

static void classifiers_report_their_predicted_class(void **state) {
  seen_t s;
  fl_qobs_t o;
  observe("{\"instances\":[1,2,3,4]}",
          "{\"predictions\":[2,\"cat\",{\"label\":\"dog\",\"score\":0.9},[0.1,0.7,0.2]]}", false, 200, &s, &o);
  assert_int_equal(s.n_labels, 4);
  assert_string_equal(s.label[0], "2");
  assert_string_equal(s.label[1], "cat");
  assert_string_equal(s.label[2], "dog");
  assert_string_equal(s.label[3], "1");                             /* the most probable index */
  assert_false(o.shape_mismatch);
}

static void kserve_v2_tensors_give_features_labels_and_shape_checks(void **state) {
  seen_t s;
  fl_qobs_t o;
  observe("{\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],\"datatype\":\"FP32\",\"data\":[1,2,3,4,5,6]}]}",
          "{\"outputs\":[{\"name\":\"y\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[0.25,NaN]},"
          "{\"name\":\"c\",\"shape\":[2],\"datatype\":\"BYTES\",\"data\":[\"a\",\"b\"]}]}",
          false, 200, &s, &o);
  assert_int_equal(o.kind, FL_QK_KSERVE_V2);
  double v[4];
  assert_int_equal(values_of(&s, FL_F_INPUT + 2, v, 4), 2);
  assert_true(v[0] == 3 && v[1] == 6);                              /* column 2 of each row */
  assert_true(only_value(&s, FL_F_OUTPUT + 0) == 0.25);
  assert_int_equal(o.nan, 1);
  assert_int_equal(s.n_labels, 2);
  assert_false(o.shape_mismatch);
  observe("{\"inputs\":[{\"name\":\"x\",\"shape\":[2,2],\"datatype\":\"FP32\",\"data\":[[1,2],[3]]}]}",
          "{\"outputs\":[]}", false, 200, &s, &o);
  assert_true(o.shape_mismatch);                                    /* 3 numbers for shape [2,2] */
}

static void embeddings_give_norms_and_count_their_numbers(void **state) {
  seen_t s;
  fl_qobs_t o;
  observe("{\"input\":[\"ab\",\"cde\"]}",
          "{\"data\":[{\"embedding\":[3,4]},{\"embedding\":[0,NaN]}],\"model\":\"e\"}", false, 200, &s, &o);
  assert_int_equal(o.kind, FL_QK_EMBEDDINGS);
  assert_true(only_value(&s, FL_F_EMBEDDING_NORM) == 5);            /* the vector with a NaN has none */
  assert_int_equal(o.values, 4);
  assert_int_equal(o.nan, 1);
  double v[4];
  assert_int_equal(values_of(&s, FL_F_PROMPT_CHARS, v, 4), 2);
  assert_false(o.shape_mismatch);
  observe("{\"input\":[\"ab\",\"cde\"]}", "{\"data\":[{\"embedding\":[3,4]}]}", false, 200, &s, &o);
  assert_true(o.shape_mismatch);                                    /* one vector for two inputs */
}

static void base64_embeddings_read_as_their_float_lists_would(void **state) {
  seen_t s;
  fl_qobs_t o;
  /* [3, 4] and [0, NaN] as little-endian float32, base64 (encoding_format: base64) */
  observe("{\"input\":[\"ab\",\"cde\"],\"encoding_format\":\"base64\"}",
          "{\"data\":[{\"embedding\":\"AABAQAAAgEA=\"},{\"embedding\":\"AAAAAAAAwH8=\"}]}", false, 200, &s, &o);
  assert_int_equal(o.kind, FL_QK_EMBEDDINGS);
  assert_true(only_value(&s, FL_F_EMBEDDING_NORM) == 5);
  assert_int_equal(o.values, 4);
  assert_int_equal(o.nan, 1);
  assert_false(o.shape_mismatch);
  observe("{\"input\":[\"ab\",\"cde\"]}",
          "{\"data\":[{\"embedding\":\"AABAQAAAgEA=\"},{\"embedding\":\"AABAQAAAgEAAAAAA\"}]}", false, 200, &s, &o);
  assert_true(o.shape_mismatch);                                    /* 2 and 3 dimensions */
  observe("{\"input\":\"ab\"}", "{\"data\":[{\"embedding\":\"not base64!\"}]}", false, 200, &s, &o);
  assert_true(o.shape_mismatch);                                    /* no vector at all */
}

/* ---- names and garbage ---- */

static void feature_names_round_trip(void **state) {
  char buf[32];
  for (unsigned f = 0; f < FL_F_COUNT; f++) assert_int_equal(fl_feature_parse(fl_feature_name(f, buf, sizeof buf)), f);
  assert_int_equal(fl_feature_parse("input_16"), -1);
  assert_int_equal(fl_feature_parse("input_01"), -1);
  assert_int_equal(fl_feature_parse("output_"), -1);
  assert_int_equal(fl_feature_parse("latency"), -1);
  assert_true(fl_feature_is_input(FL_F_PROMPT_CHARS) && fl_feature_is_input(FL_F_INPUT + 15));
  assert_false(fl_feature_is_input(FL_F_OUTPUT_TOKENS) || fl_feature_is_input(FL_F_OUTPUT));
  assert_true(fl_feature_is_category(FL_F_FINISH) && !fl_feature_is_category(FL_F_OUTPUT_CHARS));
}

static void garbage_and_cut_bodies_are_unparsed_never_a_crash(void **state) {
  uint64_t x = 88172645463325252ull;
  char buf[512];
  for (int round = 0; round < 3000; round++) {
    size_t n = (size_t)(round % 500);
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      static const char alphabet[] = "{}[]\",:0123456789.eE-+ NaInfity\\ntrue\nfalsdata:[DONE]";
      buf[i] = alphabet[x % (sizeof alphabet - 1)];
    }
    fl_qsample_t s = {.req = buf, .req_len = n, .resp = buf, .resp_len = n, .stream = round % 2, .status = 200,
                      .resp_cut = round % 3 == 0};
    fl_qobs_t o;
    fl_quality_observe(&qc, &s, NULL, &o);
  }
  seen_t s;
  fl_qobs_t o;
  observe(CHAT_REQ, "{\"choices\":[{\"message\":{\"content\":\"x\"}}", false, 200, &s, &o);
  assert_true(o.unparsed);
  assert_false(o.answer);
  fl_qsample_t empty = {.status = 200};              /* no bodies at all (a 204, a HEAD): NULL pointers */
  fl_quality_observe(&qc, &empty, NULL, &o);
  assert_false(o.unparsed);                          /* nothing to read is not a parse failure */
  assert_int_equal(o.kind, FL_QK_UNKNOWN);
  assert_null(fl_quality_parse(NULL, 0));
  observe(NULL, "{\"object\":\"list\",\"data\":[{\"id\":\"m\"}]}", false, 200, &s, &o);   /* GET /v1/models */
  assert_false(o.unparsed);
  assert_int_equal(o.kind, FL_QK_UNKNOWN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(python_nan_and_infinity_parse_as_markers_outside_strings_only),
      cmocka_unit_test(a_chat_answer_gives_prompt_and_answer_sizes_tokens_and_finish),
      cmocka_unit_test(empty_refused_and_invalid_json_answers_are_flagged),
      cmocka_unit_test(configured_refusal_patterns_replace_the_built_in_ones),
      cmocka_unit_test(a_stream_is_reassembled_from_its_events),
      cmocka_unit_test(stream_events_stop_at_done_and_skip_what_the_capture_cut),
      cmocka_unit_test(the_kind_comes_from_the_request_then_the_answer),
      cmocka_unit_test(a_failed_answer_still_shows_its_request_and_a_400_is_a_malformed_request),
      cmocka_unit_test(kserve_v1_rows_give_features_and_missing_numbers_are_counted),
      cmocka_unit_test(classifiers_report_their_predicted_class),
      cmocka_unit_test(kserve_v2_tensors_give_features_labels_and_shape_checks),
      cmocka_unit_test(embeddings_give_norms_and_count_their_numbers),
      cmocka_unit_test(base64_embeddings_read_as_their_float_lists_would),
      cmocka_unit_test(feature_names_round_trip),
      cmocka_unit_test(garbage_and_cut_bodies_are_unparsed_never_a_crash),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
