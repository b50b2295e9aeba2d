/* test_shadow_cmp.c — what comparing a live answer with its shadow's must conclude: the same
 * answer in other clothes (ids, timestamps, event splits, 1 against 1.0) is exact, a reworded one
 * has the word-set similarity worked out by hand, classes, numbers and vectors are compared as
 * such, failed and cut answers never pass as the same; and what a route's aggregate and its ring
 * of disagreements then show. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "shadow_cmp.h"

#define assert_near(got, want)                                                                    \
  do {                                                                                            \
    double got_ = (got), want_ = (want);                                                          \
    if (!(fabs(got_ - want_) <= 1e-12)) fail_msg("%s is %.17g, not %.17g", #got, got_, want_);   \
  } while (0)
#define assert_nan(v) assert_true(isnan(v))

static fl_shadow_side_t answer(int status, const char *body) {
  return (fl_shadow_side_t){.status = status, .body = body, .len = body ? strlen(body) : 0};
}

static fl_shadow_side_t stream(const char *body) {
  return (fl_shadow_side_t){.status = 200, .body = body, .len = strlen(body), .stream = true};
}

static fl_shadow_cmp_t compare(const char *req, fl_shadow_side_t primary, fl_shadow_side_t shadow) {
  fl_shadow_cmp_t c;
  fl_shadow_compare(req, req ? strlen(req) : 0, &primary, &shadow, &c);
  assert_false(c.texts_kept);
  return c;
}

#define CHAT_REQ "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"}," \
                 "{\"role\":\"user\",\"content\":\"Where is the cat?\"}]}"

/* A chat answer as a server writes it, with the fields that change from run to run. */
#define CHAT(id, created, content)                                                                 \
  "{\"id\":\"" id "\",\"object\":\"chat.completion\",\"created\":" #created ",\"model\":\"m-v" id   \
  "\",\"system_fingerprint\":\"fp_" id "\",\"choices\":[{\"index\":0,\"message\":{\"role\":"        \
  "\"assistant\",\"content\":\"" content "\"},\"finish_reason\":\"stop\"}],\"usage\":{"            \
  "\"prompt_tokens\":9,\"completion_tokens\":" #created "}}"

/* ---- LLM answers ---- */

static void identical_chat_answers_with_other_ids_and_times_are_exact_and_agree(void **state) {
  fl_shadow_cmp_t c = compare(CHAT_REQ, answer(200, CHAT("a1", 1700000000, "The cat is on the mat.")),
                              answer(200, CHAT("b2", 1700000042, "The cat is on the mat.")));
  assert_int_equal(c.kind, FL_QK_CHAT);
  assert_true(c.status_agree);
  assert_true(c.exact);
  assert_true(c.agree);
  assert_near(c.text_similarity, 1);
  assert_near(c.length_ratio, 1);
  assert_nan(c.class_agreement);
  assert_nan(c.mean_abs_diff);
  assert_nan(c.cosine);
}

static void a_reworded_answer_has_the_jaccard_of_its_word_sets_and_its_length_ratio(void **state) {
  /* {the, cat, sat, on, mat} and {the, dog, sat, on, a, mat}: 4 shared of 7 */
  fl_shadow_cmp_t c = compare(CHAT_REQ, answer(200, CHAT("a", 1, "The cat sat on the mat.")),
                              answer(200, CHAT("b", 2, "the dog sat on a mat!")));
  assert_false(c.exact);
  assert_near(c.text_similarity, 4.0 / 7.0);
  assert_near(c.length_ratio, 21.0 / 23.0);
  assert_false(c.agree);                                   /* 0.57 < FL_SHADOW_TEXT_AGREE */
  c = compare(CHAT_REQ, answer(200, CHAT("a", 1, "Hello, World")), answer(200, CHAT("b", 2, "hello world")));
  assert_false(c.exact);                                   /* punctuation and case differ ... */
  assert_near(c.text_similarity, 1);                       /* ... the words do not */
  assert_true(c.agree);
  /* bytes >= 0x80 are letters: {日本語, テキスト} and {日本語, 文章}; lengths in characters */
  c = compare(CHAT_REQ, answer(200, CHAT("a", 1, "日本語 テキスト")), answer(200, CHAT("b", 2, "日本語 文章")));
  assert_near(c.text_similarity, 1.0 / 3.0);
  assert_near(c.length_ratio, 6.0 / 8.0);
  const char *a = "Grüße aus KÖLN", *b = "grüße AUS Köln";
  assert_near(fl_shadow_text_similarity(a, strlen(a), b, strlen(b)), 2.0 / 4.0);   /* only ASCII is lower-cased */
}

#define EV(id, delta) "data: {\"id\":\"" id "\",\"choices\":[{\"index\":0,\"delta\":" delta "}]}\n\n"
#define DONE "data: [DONE]\n\n"

static void streams_split_differently_into_events_reassemble_to_the_same_text(void **state) {
  const char *primary = EV("p", "{\"role\":\"assistant\",\"content\":\"\"}") EV("p", "{\"content\":\"The cat \"}")
      EV("p", "{\"content\":\"is here.\"}") "data: {\"id\":\"p\",\"choices\":[{\"index\":0,\"delta\":{},"
      "\"finish_reason\":\"stop\"}]}\n\n" DONE;
  const char *shadow = ": keep-alive\n\n" EV("s", "{\"content\":\"The\"}") EV("s", "{\"content\":\" cat is\"}")
      "data: {\"id\":\"s\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"second choice\"}}]}\n\n"
      EV("s", "{\"content\":\" here.\"}") "data: {\"choices\":[],\"usage\":{\"completion_tokens\":4}}\n\n" DONE;
  fl_shadow_cmp_t c = compare(CHAT_REQ, stream(primary), stream(shadow));
  assert_int_equal(c.kind, FL_QK_CHAT);
  assert_true(c.exact);                                     /* choice 1's events are not choice 0's text */
  assert_true(c.agree);
  const char *other = EV("s", "{\"content\":\"The cat is there.\"}") DONE;
  c = compare(CHAT_REQ, stream(primary), stream(other));
  assert_false(c.exact);
  assert_near(c.text_similarity, 3.0 / 5.0);
  c = compare(NULL, stream(primary), stream(shadow));       /* no request: a stream is taken for chat */
  assert_int_equal(c.kind, FL_QK_CHAT);
  assert_true(c.exact);
}

static void tool_calls_are_compared_by_name_and_arguments_not_by_id(void **state) {
#define TOOL(id, args) "{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null," \
                       "\"tool_calls\":[{\"id\":\"" id "\",\"type\":\"function\",\"function\":{\"name\":\"weather\","   \
                       "\"arguments\":\"" args "\"}}]}}]}"
  fl_shadow_cmp_t c = compare(CHAT_REQ, answer(200, TOOL("call_1", "{\\\"city\\\":\\\"Paris\\\"}")),
                              answer(200, TOOL("call_2", "{\\\"city\\\":\\\"Paris\\\"}")));
  assert_true(c.exact);
  c = compare(CHAT_REQ, answer(200, TOOL("call_1", "{\\\"city\\\":\\\"Paris\\\"}")),
              answer(200, TOOL("call_1", "{\\\"city\\\":\\\"Rome\\\"}")));
  assert_false(c.exact);                                     /* the same empty text, another call */
  assert_near(c.text_similarity, 2.0 / 4.0);                 /* {weather, city, paris} and {weather, city, rome} */
  assert_false(c.agree);
  const char *pieces = EV("s", "{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"function\":{\"name\":\"weather\","
                               "\"arguments\":\"\"}}]}")
      EV("s", "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}")
      EV("s", "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}") DONE;
  fl_shadow_side_t p = stream(pieces), s = answer(200, TOOL("call_1", "{\\\"city\\\":\\\"Paris\\\"}"));
  fl_shadow_compare_keep(CHAT_REQ, strlen(CHAT_REQ), &p, &s, &c);
  assert_true(c.exact);                                      /* streamed in pieces or whole */
  assert_string_equal(c.primary_text, "weather({\"city\":\"Paris\"})");
  assert_string_equal(c.shadow_text, c.primary_text);
  fl_shadow_cmp_clear(&c);
  assert_null(c.primary_text);
}

static void completions_whole_and_streamed(void **state) {
  const char *req = "{\"model\":\"m\",\"prompt\":\"Say hi\",\"max_tokens\":5}";
  fl_shadow_cmp_t c = compare(req, answer(200, "{\"id\":\"1\",\"choices\":[{\"text\":\"Hi there\",\"index\":0}]}"),
                              answer(200, "{\"id\":\"2\",\"choices\":[{\"text\":\"Hi there!\",\"index\":0}]}"));
  assert_int_equal(c.kind, FL_QK_COMPLETION);
  assert_false(c.exact);
  assert_near(c.text_similarity, 1);
  assert_near(c.length_ratio, 9.0 / 8.0);
  assert_true(c.agree);
  c = compare(req, stream("data: {\"choices\":[{\"text\":\"Hi \"}]}\n\ndata: {\"choices\":[{\"text\":\"there\"}]}\n\n" DONE),
              stream("data: {\"choices\":[{\"text\":\"Hi there\"}]}\n\n" DONE));
  assert_int_equal(c.kind, FL_QK_COMPLETION);
  assert_true(c.exact);
}

/* ---- predictions ---- */

#define V1_REQ "{\"instances\":[[1,2],[3,4]]}"

static void kserve_v1_labels_and_probability_rows_give_class_agreement(void **state) {
  fl_shadow_cmp_t c = compare(V1_REQ, answer(200, "{\"predictions\":[\"cat\",\"dog\"]}"),
                              answer(200, "{\"predictions\":[\"cat\",\"cat\"]}"));
  assert_int_equal(c.kind, FL_QK_KSERVE_V1);
  assert_near(c.class_agreement, 0.5);
  assert_nan(c.mean_abs_diff);                               /* labels are no numbers */
  assert_false(c.agree);
  /* rows of probabilities: the class is the largest one's index */
  c = compare(V1_REQ, answer(200, "{\"predictions\":[[0.1,0.9],[0.8,0.2]]}"),
              answer(200, "{\"predictions\":[[0.25,0.75],[0.5,0.5]]}"));
  assert_false(c.exact);
  assert_near(c.class_agreement, 1);
  assert_near(c.mean_abs_diff, (0.15 + 0.15 + 0.3 + 0.3) / 4);
  assert_true(c.agree);
  c = compare(V1_REQ, answer(200, "{\"predictions\":[[0.1,0.9],[0.8,0.2]]}"),
              answer(200, "{\"predictions\":[[0.6,0.4],[0.8,0.2]]}"));
  assert_near(c.class_agreement, 0.5);
  assert_false(c.agree);
  c = compare(V1_REQ, answer(200, "{\"predictions\":[{\"label\":\"cat\",\"score\":0.9},{\"label\":\"dog\",\"score\":0.5}]}"),
              answer(200, "{\"predictions\":[{\"label\":\"cat\",\"score\":0.7},{\"label\":\"dog\",\"score\":0.5}]}"));
  assert_near(c.class_agreement, 1);
  assert_near(c.mean_abs_diff, 0.1);
  c = compare(V1_REQ, answer(200, "{\"predictions\":[1,0]}"), answer(200, "{\"predictions\":[1]}"));
  assert_near(c.class_agreement, 0.5);                       /* a row without a partner disagrees */
}

static void numeric_predictions_give_the_mean_absolute_difference_and_compare_by_value(void **state) {
  fl_shadow_cmp_t c = compare(V1_REQ, answer(200, "{\"predictions\":[1.5,2.0,3.0]}"),
                              answer(200, "{\"predictions\":[1.0,2.5,3.0]}"));
  assert_near(c.mean_abs_diff, 1.0 / 3.0);
  assert_nan(c.class_agreement);                             /* a regression has no classes ... */
  assert_false(c.agree);                                     /* ... so only the same numbers agree */
  c = compare(V1_REQ, answer(200, "{\"predictions\":[1,2],\"model_name\":\"a\"}"),
              answer(200, "{\"model_name\":\"b\",\"predictions\":[1.0,2.0]}"));
  assert_true(c.exact);
  assert_true(c.agree);
  assert_near(c.mean_abs_diff, 0);
  c = compare(V1_REQ, answer(200, "{\"predictions\":[NaN,2.5]}"), answer(200, "{\"predictions\":[1,2]}"));
  assert_near(c.mean_abs_diff, 0.5);                         /* Python's NaN pairs with nothing */
  assert_false(c.exact);
}

static void kserve_v2_outputs_are_rows_of_their_shape(void **state) {
  const char *req = "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,2],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}";
#define V2(id, type, shape, data) "{\"id\":\"" id "\",\"model_version\":\"" id "\",\"outputs\":[{\"name\":\"y\"," \
                                  "\"shape\":" shape ",\"datatype\":\"" type "\",\"data\":" data "}]}"
  fl_shadow_cmp_t c = compare(req, answer(200, V2("1", "FP32", "[2,3]", "[0.1,0.7,0.2,0.5,0.3,0.2]")),
                              answer(200, V2("2", "FP32", "[2,3]", "[[0.2,0.6,0.2],[0.2,0.5,0.3]]")));
  assert_int_equal(c.kind, FL_QK_KSERVE_V2);
  assert_near(c.class_agreement, 0.5);                       /* argmax 1, 0 against 1, 1 */
  assert_near(c.mean_abs_diff, (0.1 + 0.1 + 0 + 0.3 + 0.2 + 0.1) / 6);
  assert_false(c.agree);
  c = compare(req, answer(200, V2("1", "BYTES", "[2]", "[\"cat\",\"dog\"]")),
              answer(200, V2("2", "BYTES", "[2]", "[\"cat\",\"dog\"]")));
  assert_true(c.exact);                                      /* another id and version, the same outputs */
  assert_near(c.class_agreement, 1);
  c = compare(req, answer(200, V2("1", "INT64", "[2,1]", "[1,0]")), answer(200, V2("1", "INT64", "[2,1]", "[1,1]")));
  assert_near(c.class_agreement, 0.5);
  assert_near(c.mean_abs_diff, 0.5);
  c = compare(NULL, answer(200, V2("1", "FP32", "[2]", "[0.5,1.5]")), answer(200, V2("1", "FP32", "[2]", "[0.5,1.5]")));
  assert_int_equal(c.kind, FL_QK_KSERVE_V2);                 /* told by the answer alone */
  assert_true(c.exact);
  assert_nan(c.class_agreement);
}

/* ---- embeddings ---- */

static void embeddings_give_the_mean_cosine_of_paired_vectors(void **state) {
  const char *req = "{\"model\":\"e\",\"input\":\"hello\"}";
#define EMB(vec) "{\"object\":\"list\",\"model\":\"e\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":" vec "}]}"
  fl_shadow_cmp_t c = compare(req, answer(200, EMB("[1,0]")), answer(200, EMB("[0,1]")));
  assert_int_equal(c.kind, FL_QK_EMBEDDINGS);
  assert_near(c.cosine, 0);
  assert_false(c.agree);
  c = compare(req, answer(200, EMB("[0.5,0.25,-1]")), answer(200, EMB("[0.5,0.25,-1]")));
  assert_true(c.exact);
  assert_near(c.cosine, 1);
  c = compare(req, answer(200, EMB("[1,2,3]")), answer(200, EMB("[2,4,6]")));
  assert_false(c.exact);
  assert_near(c.cosine, 1);                                  /* a scaled vector points the same way */
  assert_true(c.agree);
  c = compare(req, answer(200, EMB("\"AACAPwAAAAA=\"")), answer(200, EMB("\"AAAAQAAAAAA=\"")));   /* base64 [1,0], [2,0] */
  assert_near(c.cosine, 1);
  c = compare(req, answer(200, EMB("[1,0]")), answer(200, EMB("[1,0,0]")));
  assert_near(c.cosine, 0);                                  /* another dimension */
  c = compare(req, answer(200, EMB("[0,0]")), answer(200, EMB("[1,0]")));
  assert_near(c.cosine, 0);                                  /* a zero vector points nowhere */
  c = compare(req, answer(200, "{\"data\":[{\"embedding\":[1,0]},{\"embedding\":[1,0]}]}"),
              answer(200, "{\"data\":[{\"embedding\":[3,0]},{\"embedding\":[0,3]}]}"));
  assert_near(c.cosine, 0.5);
  assert_false(c.agree);
}

/* ---- failures, cuts, other bodies ---- */

static void a_failed_side_never_agrees_with_an_answer(void **state) {
  fl_shadow_cmp_t c = compare(CHAT_REQ, answer(500, "{\"error\":{\"message\":\"boom\"}}"),
                              answer(200, CHAT("a", 1, "The cat is here.")));
  assert_false(c.status_agree);
  assert_false(c.exact);
  assert_false(c.agree);
  assert_nan(c.text_similarity);                             /* an error is no answer to measure */
  c = compare(CHAT_REQ, answer(201, CHAT("a", 1, "x")), answer(200, CHAT("b", 2, "x")));
  assert_true(c.status_agree);                               /* both 2xx */
  assert_true(c.agree);
  c = compare(CHAT_REQ, answer(503, ""), answer(502, ""));
  assert_false(c.status_agree);
  c = compare(CHAT_REQ, answer(404, "{\"error\":\"no such model\",\"id\":\"1\"}"),
              answer(404, "{\"id\":\"2\",\"error\":\"no such model\"}"));
  assert_true(c.status_agree);
  assert_true(c.exact);                                      /* failing the same way is agreeing */
  assert_true(c.agree);
  c = compare(CHAT_REQ, answer(404, "{\"error\":\"no such model\"}"), answer(404, "{\"error\":\"gone\"}"));
  assert_false(c.agree);
}

static void cut_bodies_are_never_exact(void **state) {
  const char *body = CHAT("a", 1, "The cat is here.");
  fl_shadow_side_t p = answer(200, body), s = answer(200, body);
  p.cut = s.cut = true;
  fl_shadow_cmp_t c;
  fl_shadow_compare(CHAT_REQ, strlen(CHAT_REQ), &p, &s, &c);
  assert_false(c.exact);
  assert_false(c.agree);
  assert_nan(c.text_similarity);                             /* a part of a text says nothing of the whole */
  const char *events = EV("p", "{\"content\":\"The cat\"}") DONE;
  p = stream(events), s = stream(events);
  s.cut = true;
  fl_shadow_compare(CHAT_REQ, strlen(CHAT_REQ), &p, &s, &c);
  assert_false(c.exact);
  p = answer(200, "plain"), s = answer(200, "plain");
  p.cut = true;
  fl_shadow_compare(NULL, 0, &p, &s, &c);
  assert_false(c.exact);
}

static void other_bodies_compare_as_json_without_volatile_fields_or_byte_for_byte(void **state) {
  fl_shadow_cmp_t c = compare(NULL, answer(200, "plain text answer"), answer(200, "plain text answer"));
  assert_int_equal(c.kind, FL_QK_UNKNOWN);
  assert_true(c.exact);
  assert_true(c.agree);
  c = compare(NULL, answer(200, "plain text answer"), answer(200, "plain text answer "));
  assert_false(c.exact);
  assert_false(c.agree);
  assert_nan(c.text_similarity);
  c = compare(NULL, answer(200, "{\"id\":\"a\",\"created\":1,\"usage\":{\"n\":1},\"result\":{\"x\":1,\"y\":[true]}}"),
              answer(200, "{\"result\":{\"y\":[true],\"x\":1.0},\"model\":\"m2\",\"id\":\"b\",\"system_fingerprint\":\"f\"}"));
  assert_true(c.exact);
  c = compare(NULL, answer(200, "{\"id\":\"a\",\"result\":{\"x\":1}}"), answer(200, "{\"id\":\"a\",\"result\":{\"x\":2}}"));
  assert_false(c.exact);
  c = compare(NULL, answer(200, "{\"result\":1}"), answer(200, "{\"result\":1,\"extra\":0}"));
  assert_false(c.exact);
  c = compare(NULL, answer(200, "{\"result\":1}"), answer(200, "{\"result\":1"));   /* one JSON, one not */
  assert_false(c.exact);
}

static void an_empty_pair_agrees(void **state) {
  fl_shadow_cmp_t c = compare(NULL, answer(200, NULL), answer(200, ""));
  assert_true(c.exact);
  assert_true(c.agree);
  c = compare(CHAT_REQ, answer(200, CHAT("a", 1, "")), answer(200, CHAT("b", 2, "")));
  assert_true(c.exact);
  assert_near(c.text_similarity, 1);                         /* two texts without words are alike */
  assert_nan(c.length_ratio);                                /* nothing to divide by */
  c = compare(CHAT_REQ, answer(200, CHAT("a", 1, "")), answer(200, CHAT("b", 2, "Now I talk.")));
  assert_near(c.text_similarity, 0);
  assert_nan(c.length_ratio);
  assert_false(c.agree);
}

/* "w0 w1 ... w<n-1>", with x instead of w from word `from` on. */
static char *words(size_t n, size_t from) {
  size_t cap = n * 8 + 1, len = 0;
  char *s = malloc(cap);
  assert_non_null(s);
  for (size_t i = 0; i < n; i++) len += (size_t)snprintf(s + len, cap - len, "%s%c%zu", i ? " " : "", i < from ? 'w' : 'x', i);
  return s;
}

static char *chat_body(const char *text) {
  size_t cap = strlen(text) + 64;
  char *s = malloc(cap);
  assert_non_null(s);
  snprintf(s, cap, "{\"choices\":[{\"message\":{\"content\":\"%s\"}}]}", text);
  return s;
}

static void only_the_first_words_of_a_long_answer_count(void **state) {
  char *same = words(20000, 20000), *late = words(20000, FL_SHADOW_MAX_TOKENS), *early = words(20000, 4000);
  char *a = chat_body(same), *b = chat_body(late);
  fl_shadow_cmp_t c = compare(CHAT_REQ, answer(200, a), answer(200, b));
  assert_false(c.exact);                                     /* every word after the first 4,096 differs ... */
  assert_near(c.text_similarity, 1);                         /* ... and is not read */
  assert_near(c.length_ratio, 1);
  c = compare(CHAT_REQ, answer(200, a), answer(200, a));
  assert_true(c.exact);
  /* w0..w3999 shared, then 96 words of each side's own */
  assert_near(fl_shadow_text_similarity(same, strlen(same), early, strlen(early)),
              4000.0 / (2 * FL_SHADOW_MAX_TOKENS - 4000));
  free(same), free(late), free(early), free(a), free(b);
}

/* ---- aggregate ---- */

static void the_aggregate_gives_rates_over_pairs_and_means_over_measured_pairs(void **state) {
  fl_shadow_agg_t agg = {0};
  json_t *j = fl_shadow_agg_json(&agg);
  assert_int_equal(json_integer_value(json_object_get(j, "pairs")), 0);
  assert_true(json_is_null(json_object_get(j, "agreement")));
  assert_true(json_is_null(json_object_get(j, "text_similarity")));
  json_decref(j);
  fl_shadow_cmp_t same = compare(CHAT_REQ, answer(200, CHAT("a", 1, "The cat sat on the mat.")),
                                 answer(200, CHAT("b", 2, "The cat sat on the mat.")));
  fl_shadow_cmp_t reworded = compare(CHAT_REQ, answer(200, CHAT("a", 1, "The cat sat on the mat.")),
                                     answer(200, CHAT("b", 2, "the dog sat on a mat!")));
  fl_shadow_cmp_t failed = compare(CHAT_REQ, answer(500, "oops"), answer(200, CHAT("b", 2, "x")));
  fl_shadow_cmp_t classes = compare(V1_REQ, answer(200, "{\"predictions\":[\"cat\",\"dog\"]}"),
                                    answer(200, "{\"predictions\":[\"cat\",\"cat\"]}"));
  fl_shadow_cmp_t unanswered = compare(CHAT_REQ, answer(200, CHAT("a", 1, "x")), answer(0, NULL));
  fl_shadow_agg_add(&agg, &same, 200, 200, 100, 120, 10, 15);
  fl_shadow_agg_add(&agg, &reworded, 200, 200, 100, 80, NAN, NAN);
  fl_shadow_agg_add(&agg, &failed, 500, 200, 50, 70, NAN, 7);
  fl_shadow_agg_add(&agg, &classes, 200, 200, 10, 10, NAN, NAN);
  fl_shadow_agg_add(&agg, &unanswered, 200, 0, 100, NAN, 12, NAN);
  j = fl_shadow_agg_json(&agg);
  assert_int_equal(json_integer_value(json_object_get(j, "pairs")), 5);
  assert_near(json_real_value(json_object_get(j, "agreement")), 1.0 / 5);
  assert_near(json_real_value(json_object_get(j, "status_agreement")), 3.0 / 5);
  assert_near(json_real_value(json_object_get(j, "exact_match_rate")), 1.0 / 5);
  assert_near(json_real_value(json_object_get(j, "text_similarity")), (1 + 4.0 / 7) / 2);
  assert_near(json_real_value(json_object_get(j, "length_ratio")), (1 + 21.0 / 23) / 2);
  assert_near(json_real_value(json_object_get(j, "class_agreement")), 0.5);
  assert_true(json_is_null(json_object_get(j, "mean_abs_diff")));     /* labels only */
  assert_true(json_is_null(json_object_get(j, "cosine")));
  assert_near(json_real_value(json_object_get(j, "latency_diff_ms")), (20 - 20 + 20 + 0) / 4.0);
  assert_near(json_real_value(json_object_get(j, "ttft_diff_ms")), 5);
  assert_near(json_real_value(json_object_get(j, "primary_error_rate")), 1.0 / 5);   /* the 500 */
  assert_near(json_real_value(json_object_get(j, "shadow_error_rate")), 1.0 / 5);    /* no answer */
  json_decref(j);
}

/* ---- disagreements ---- */

static void the_ring_keeps_the_newest_disagreements_newest_first(void **state) {
  fl_shadow_diffs_t d = {0};
  fl_shadow_side_t p = answer(200, CHAT("a", 1, "The cat sat on the mat.")), s = answer(200, CHAT("b", 2, "A dog."));
  fl_shadow_cmp_t c;
  fl_shadow_compare(CHAT_REQ, strlen(CHAT_REQ), &p, &s, &c);
  assert_false(c.agree);
  for (uint64_t t = 0; t < 40; t++) {
    char id[16];
    snprintf(id, sizeof id, "req-%u", (unsigned)t);
    fl_shadow_diffs_add(&d, 1000 + t, id, CHAT_REQ, strlen(CHAT_REQ), &p, &s, &c);
  }
  fl_shadow_cmp_t same;
  fl_shadow_compare(CHAT_REQ, strlen(CHAT_REQ), &p, &p, &same);
  fl_shadow_diffs_add(&d, 5000, "agreeing", CHAT_REQ, strlen(CHAT_REQ), &p, &p, &same);   /* not recorded */
  json_t *j = fl_shadow_diffs_json(&d);
  assert_int_equal(json_array_size(j), FL_SHADOW_DIFFS);
  json_t *newest = json_array_get(j, 0), *oldest = json_array_get(j, FL_SHADOW_DIFFS - 1);
  assert_int_equal(json_integer_value(json_object_get(newest, "time_ms")), 1039);
  assert_string_equal(json_string_value(json_object_get(newest, "request_id")), "req-39");
  assert_int_equal(json_integer_value(json_object_get(oldest, "time_ms")), 1000 + 40 - FL_SHADOW_DIFFS);
  assert_string_equal(json_string_value(json_object_get(newest, "kind")), "chat");
  assert_string_equal(json_string_value(json_object_get(newest, "prompt")), "Where is the cat?");
  assert_string_equal(json_string_value(json_object_get(newest, "primary")), "The cat sat on the mat.");
  assert_string_equal(json_string_value(json_object_get(newest, "shadow")), "A dog.");
  assert_near(json_real_value(json_object_get(newest, "text_similarity")), 0);
  assert_true(json_is_false(json_object_get(newest, "exact")));
  json_decref(j);
  fl_shadow_diffs_free(&d);
  j = fl_shadow_diffs_json(&d);
  assert_int_equal(json_array_size(j), 0);
  json_decref(j);
}

static void long_texts_are_cut_at_a_character_boundary_and_bad_bytes_replaced(void **state) {
  char text[1 + 2 * 1500 + 1] = "a";
  for (int i = 0; i < 1500; i++) memcpy(text + 1 + 2 * i, "\xC3\xA9", 2);          /* a, then 1,500 é */
  text[sizeof text - 1] = '\0';
  char *long_body = chat_body(text);
  fl_shadow_side_t p = answer(200, long_body), s = answer(502, "\xFF" "bad gateway");
  fl_shadow_diffs_t d = {0};
  fl_shadow_cmp_t c;
  fl_shadow_compare_keep(CHAT_REQ, strlen(CHAT_REQ), &p, &s, &c);
  assert_non_null(c.primary_text);
  assert_null(c.shadow_text);                                /* a 502 is no answer: its body is shown */
  fl_shadow_diffs_add(&d, 1, NULL, CHAT_REQ, strlen(CHAT_REQ), &p, &s, &c);
  fl_shadow_cmp_clear(&c);
  fl_shadow_compare(CHAT_REQ, strlen(CHAT_REQ), &p, &s, &c);
  fl_shadow_diffs_add(&d, 2, NULL, CHAT_REQ, strlen(CHAT_REQ), &p, &s, &c);   /* texts read again */
  json_t *j = fl_shadow_diffs_json(&d);
  for (size_t k = 0; k < 2; k++) {
    json_t *r = json_array_get(j, k);
    const char *primary = json_string_value(json_object_get(r, "primary"));
    assert_int_equal(strlen(primary), 2047);                 /* 2048 would split an é */
    assert_memory_equal(primary, text, 2047);
    assert_true(json_is_true(json_object_get(r, "primary_truncated")));
    assert_string_equal(json_string_value(json_object_get(r, "shadow")), "\xEF\xBF\xBD" "bad gateway");
    assert_true(json_is_false(json_object_get(r, "shadow_truncated")));
    assert_true(json_is_null(json_object_get(r, "request_id")));
  }
  json_decref(j);
  fl_shadow_side_t cut = answer(200, "{\"partial\":");       /* what the capture kept of a longer body */
  cut.cut = true;
  fl_shadow_compare(NULL, 0, &cut, &cut, &c);
  fl_shadow_diffs_add(&d, 3, "r", NULL, 0, &cut, &cut, &c);
  j = fl_shadow_diffs_json(&d);
  assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "primary")), "{\"partial\":");
  assert_true(json_is_true(json_object_get(json_array_get(j, 0), "primary_truncated")));
  json_decref(j);
  fl_shadow_diffs_free(&d);
  free(long_body);
}

static void the_prompt_is_the_last_user_message_the_completion_prompt_or_the_body_start(void **state) {
  fl_shadow_diffs_t d = {0};
  fl_shadow_side_t p = answer(200, "{\"choices\":[{\"text\":\"a\"}]}"), s = answer(200, "{\"choices\":[{\"text\":\"b\"}]}");
  const char *reqs[] = {
      ("{\"messages\":[{\"role\":\"user\",\"content\":\"first\"},{\"role\":\"assistant\",\"content\":\"ok\"},"
       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"second\"}]}]}"),
      "{\"prompt\":\"complete me\"}",
      "{\"instances\":[[1,2]]}"};
  for (size_t k = 0; k < 3; k++) {
    fl_shadow_cmp_t c;
    fl_shadow_compare(reqs[k], strlen(reqs[k]), &p, &s, &c);
    fl_shadow_diffs_add(&d, k, NULL, reqs[k], strlen(reqs[k]), &p, &s, &c);
  }
  json_t *j = fl_shadow_diffs_json(&d);
  assert_string_equal(json_string_value(json_object_get(json_array_get(j, 2), "prompt")), "second");
  assert_string_equal(json_string_value(json_object_get(json_array_get(j, 1), "prompt")), "complete me");
  assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "prompt")), reqs[2]);
  json_decref(j);
  char big[2000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  fl_shadow_cmp_t c;
  fl_shadow_compare(big, strlen(big), &p, &s, &c);
  fl_shadow_diffs_add(&d, 9, NULL, big, strlen(big), &p, &s, &c);
  j = fl_shadow_diffs_json(&d);
  assert_int_equal(strlen(json_string_value(json_object_get(json_array_get(j, 0), "prompt"))), FL_SHADOW_PROMPT_BODY);
  json_decref(j);
  fl_shadow_diffs_free(&d);
}

/* ---- garbage ---- */

static bool within(double v, double lo, double hi) { return isnan(v) || (v >= lo && v <= hi); }

static void cut_mutated_and_mismatched_answers_are_compared_without_harm(void **state) {
  static const char *const bodies[] = {
      CHAT("a", 1, "The cat sat."), EV("s", "{\"content\":\"The \"}") EV("s", "{\"content\":\"cat\"}") DONE,
      "{\"predictions\":[[0.1,0.9],[NaN,null],\"cat\",{\"class\":3}]}", V2("1", "FP32", "[2,3]", "[0.1,0.7,0.2,0.5,0.3,0.2]"),
      V2("1", "FP32", "[99999999999,99999999999]", "[1,2,3]"), EMB("[1,2,3]"), EMB("\"AACAPwAAAAA=\""), EMB("\"!!\""),
      "{\"choices\":[{\"message\":{\"tool_calls\":[{\"index\":-1},{\"index\":99,\"function\":{}}]}}]}",
      "\xC3", ""};
  static const char *const reqs[] = {CHAT_REQ, V1_REQ, "{\"input\":\"x\"}", "{\"inputs\":[]}", "{\"prompt\":[1,2]}", "[", NULL};
  static const int statuses[] = {200, 200, 500, 0};
  fl_shadow_diffs_t d = {0};
  fl_shadow_agg_t agg = {0};
  uint64_t x = 88172645463325252ull;
  char a[512], b[512];
  for (int round = 0; round < 3000; round++) {
    char *buf[2] = {a, b};
    fl_shadow_side_t side[2];
    for (int k = 0; k < 2; k++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const char *body = bodies[x % FL_ARRAY_LEN(bodies)];
      size_t n = strlen(body), keep = x >> 8 & 1 ? n : (size_t)(x >> 16) % (n + 1);
      memcpy(buf[k], body, n + 1);
      if (n && x >> 9 & 1) buf[k][(x >> 24) % n] = (char)(x >> 32);      /* one byte changed */
      side[k] = (fl_shadow_side_t){statuses[x >> 40 & 3], buf[k], keep, keep < n || (x >> 42 & 1), x >> 43 & 1};
    }
    const char *req = reqs[round % FL_ARRAY_LEN(reqs)];
    fl_shadow_cmp_t c;
    fl_shadow_compare_keep(req, req ? strlen(req) : 0, &side[0], &side[1], &c);
    assert_true(within(c.text_similarity, 0, 1) && within(c.class_agreement, 0, 1) && within(c.cosine, -1, 1));
    assert_true(within(c.length_ratio, 0, INFINITY) && within(c.mean_abs_diff, 0, INFINITY));
    assert_false(c.exact && (side[0].cut || side[1].cut));
    fl_shadow_agg_add(&agg, &c, side[0].status, side[1].status, 10, 12, NAN, NAN);
    fl_shadow_diffs_add(&d, (uint64_t)round, "r", req, req ? strlen(req) : 0, &side[0], &side[1], &c);
    fl_shadow_cmp_clear(&c);
  }
  json_t *j = fl_shadow_diffs_json(&d);
  char *text = json_dumps(j, 0);                             /* every kept string is valid UTF-8 */
  assert_non_null(text);
  free(text);
  json_decref(j);
  j = fl_shadow_agg_json(&agg);
  assert_int_equal(json_integer_value(json_object_get(j, "pairs")), 3000);
  json_decref(j);
  fl_shadow_diffs_free(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(identical_chat_answers_with_other_ids_and_times_are_exact_and_agree),
      cmocka_unit_test(a_reworded_answer_has_the_jaccard_of_its_word_sets_and_its_length_ratio),
      cmocka_unit_test(streams_split_differently_into_events_reassemble_to_the_same_text),
      cmocka_unit_test(tool_calls_are_compared_by_name_and_arguments_not_by_id),
      cmocka_unit_test(completions_whole_and_streamed),
      cmocka_unit_test(kserve_v1_labels_and_probability_rows_give_class_agreement),
      cmocka_unit_test(numeric_predictions_give_the_mean_absolute_difference_and_compare_by_value),
      cmocka_unit_test(kserve_v2_outputs_are_rows_of_their_shape),
      cmocka_unit_test(embeddings_give_the_mean_cosine_of_paired_vectors),
      cmocka_unit_test(a_failed_side_never_agrees_with_an_answer),
      cmocka_unit_test(cut_bodies_are_never_exact),
      cmocka_unit_test(other_bodies_compare_as_json_without_volatile_fields_or_byte_for_byte),
      cmocka_unit_test(an_empty_pair_agrees),
      cmocka_unit_test(only_the_first_words_of_a_long_answer_count),
      cmocka_unit_test(the_aggregate_gives_rates_over_pairs_and_means_over_measured_pairs),
      cmocka_unit_test(the_ring_keeps_the_newest_disagreements_newest_first),
      cmocka_unit_test(long_texts_are_cut_at_a_character_boundary_and_bad_bytes_replaced),
      cmocka_unit_test(the_prompt_is_the_last_user_message_the_completion_prompt_or_the_body_start),
      cmocka_unit_test(cut_mutated_and_mismatched_answers_are_compared_without_harm),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
