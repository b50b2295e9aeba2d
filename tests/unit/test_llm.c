/* test_llm.c — the response observer as a specification: what counts as a token event, usage,
 * finish_reason and [DONE] in real OpenAI-shaped streams and bodies, the same outcome however
 * the body is cut into pieces, token timing, and no harm from garbage or overlong input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "llm.h"

/* ---- observing a body ---- */

#define NOW 7000u   /* every piece is stamped with this in the cut-anywhere checks */
#define MAX_GAPS 16

typedef struct {
  bool done;
  uint32_t events;
  uint64_t first, last;
  int64_t prompt, completion;
  fl_finish_t finish;
  uint32_t gaps;             /* on_token calls */
  uint64_t gap[MAX_GAPS];
} outcome_t;

static void on_gap(void *ctx, uint64_t gap_ns) {
  outcome_t *r = ctx;
  if (r->gaps < MAX_GAPS) r->gap[r->gaps] = gap_ns;
  r->gaps++;
}

/* Feeds from a heap copy of exactly n bytes, so AddressSanitizer reports any read past a piece. */
static void feed(fl_llm_t *o, const char *p, size_t n, uint64_t now, outcome_t *r) {
  char *b = malloc(n ? n : 1);
  assert_non_null(b);
  memcpy(b, p, n);
  fl_llm_feed(o, b, n, now, on_gap, r);
  free(b);
}

static void collect(const fl_llm_t *o, outcome_t *r) {
  r->done = o->done_seen;
  r->events = o->token_events;
  r->first = o->first_token_ns;
  r->last = o->last_token_ns;
  r->prompt = o->prompt_tokens;
  r->completion = o->completion_tokens;
  r->finish = o->finish;
}

/* Pieces [0,a), [a,b), [b,len): one, two or three of them, some possibly empty. */
static outcome_t observe_cut(const char *body, size_t len, bool stream, size_t a, size_t b) {
  outcome_t r = {0};
  fl_llm_t o;
  fl_llm_init(&o, stream);
  feed(&o, body, a, NOW, &r);
  feed(&o, body + a, b - a, NOW, &r);
  feed(&o, body + b, len - b, NOW, &r);
  collect(&o, &r);
  return r;
}

static bool same(const outcome_t *x, const outcome_t *y) {
  if (x->done != y->done || x->events != y->events || x->first != y->first || x->last != y->last ||
      x->prompt != y->prompt || x->completion != y->completion || x->finish != y->finish || x->gaps != y->gaps)
    return false;
  for (uint32_t i = 0; i < x->gaps && i < MAX_GAPS; i++)
    if (x->gap[i] != y->gap[i]) return false;
  return true;
}

/* Observes body fed in one piece, then cut at every pair of offsets, and fails unless every
 * cut gives the one-piece outcome, which it returns. */
static outcome_t observe_n(const char *body, size_t len, bool stream) {
  outcome_t whole = {0};
  fl_llm_t o;
  fl_llm_init(&o, stream);
  feed(&o, body, len, NOW, &whole);
  collect(&o, &whole);
  for (size_t a = 0; a <= len; a++)
    for (size_t b = a; b <= len; b++) {
      outcome_t cut = observe_cut(body, len, stream, a, b);
      if (!same(&whole, &cut)) fail_msg("outcome differs when the body is cut at %zu and %zu", a, b);
    }
  return whole;
}

static outcome_t observe(const char *body, bool stream) { return observe_n(body, strlen(body), stream); }

/* Every raw "\n" of body becomes "\r\n" (JSON escapes such as \\n are untouched). Caller frees. */
static char *crlf(const char *body) {
  char *out = malloc(2 * strlen(body) + 1), *w = out;
  assert_non_null(out);
  for (const char *p = body; *p; p++) {
    if (*p == '\n') *w++ = '\r';
    *w++ = *p;
  }
  *w = '\0';
  return out;
}

/* ---- real shapes ---- */

#define EV(json) "data: " json "\n\n"
#define CHUNK(delta, finish) \
  EV("{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":" delta \
     ",\"finish_reason\":" finish "}]}")

static const char ROLE_EVENT[] = CHUNK("{\"role\":\"assistant\",\"content\":\"\"}", "null");
static const char USAGE_EVENT[] =
    EV("{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}");
static const char DONE_EVENT[] = "data: [DONE]\n\n";

static const char CHAT_STREAM[] =
    CHUNK("{\"role\":\"assistant\",\"content\":\"\"}", "null")
    CHUNK("{\"content\":\"Hello\"}", "null")
    CHUNK("{\"content\":\" world\"}", "null")
    CHUNK("{}", "\"stop\"")
    EV("{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}")
    "data: [DONE]\n\n";

static void chat_stream_counts_content_events_usage_finish_and_done(void **state) {
  outcome_t r = observe(CHAT_STREAM, true);
  assert_int_equal(r.events, 2);          /* "Hello" and " world"; the role event is not a token */
  assert_int_equal(r.first, NOW);
  assert_int_equal(r.gaps, 1);
  assert_int_equal(r.prompt, 9);
  assert_int_equal(r.completion, 12);
  assert_int_equal(r.finish, FL_FINISH_STOP);
  assert_true(r.done);
}

/* Reasoning models think in reasoning_content (SGLang, DeepSeek) or reasoning (vLLM) deltas with
 * content null: those are generated tokens, and the first of them is the first token. */
static void reasoning_deltas_are_tokens_like_content(void **state) {
  outcome_t r = observe(CHUNK("{\"reasoning_content\":\"Let me\",\"content\":null}", "null")
                        CHUNK("{\"reasoning\":\" think\",\"content\":null}", "null")
                        CHUNK("{\"content\":\"42\"}", "\"stop\""), true);
  assert_int_equal(r.events, 3);
}

static void role_only_and_null_content_events_are_not_tokens(void **state) {
  outcome_t r = observe(ROLE_EVENT, true);
  assert_int_equal(r.events, 0);
  assert_int_equal(r.first, 0);
  r = observe(CHUNK("{\"role\":\"assistant\",\"content\":null}", "null")
              CHUNK("{\"content\":\"\"}", "null"), true);
  assert_int_equal(r.events, 0);
  assert_int_equal(r.finish, FL_FINISH_NONE);
  assert_false(r.done);
  assert_int_equal(r.prompt, -1);
}

#define TEXT_CHUNK(text, finish) \
  EV("{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"text\":" text ",\"index\":0," \
     "\"finish_reason\":" finish "}]}")

static void completions_stream_counts_text_events(void **state) {
  outcome_t r = observe(
      TEXT_CHUNK("\"Once\"", "null")
      TEXT_CHUNK("\"\"", "null")
      TEXT_CHUNK("\" upon\"", "null")
      TEXT_CHUNK("\"\"", "\"length\"")
      "data: [DONE]\n\n", true);
  assert_int_equal(r.events, 2);
  assert_int_equal(r.finish, FL_FINISH_LENGTH);
  assert_true(r.done);
}

static void tool_call_stream_counts_argument_deltas_and_finishes_with_tool_calls(void **state) {
  outcome_t r = observe(
      CHUNK("{\"role\":\"assistant\",\"content\":null,"
            "\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\","
            "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}", "null")
      CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":\"}}]}", "null")
      CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]}", "null")
      CHUNK("{}", "\"tool_calls\"")
      "data: [DONE]\n\n", true);
  assert_int_equal(r.events, 3);
  assert_int_equal(r.gaps, 2);
  assert_int_equal(r.finish, FL_FINISH_TOOL_CALLS);
  assert_true(r.done);

  r = observe(CHUNK("{\"function_call\":{\"name\":\"f\",\"arguments\":\"\"}}", "null")
              CHUNK("{\"function_call\":{\"arguments\":\"{}\"}}", "null"), true);
  assert_int_equal(r.events, 2);   /* legacy function_call: the object, then a non-empty argument string */

  r = observe(EV("{\"delta\":{\"arguments\":\"x\"}}") EV("{\"delta\":{\"arguments\":\"\"}}"), true);
  assert_int_equal(r.events, 1);   /* a non-empty arguments string counts on its own */
}

static void empty_or_null_tool_calls_are_not_tokens(void **state) {
  outcome_t r = observe(CHUNK("{\"content\":null,\"tool_calls\":[]}", "null")
                        CHUNK("{\"tool_calls\":[ ]}", "null")
                        CHUNK("{\"tool_calls\":null,\"function_call\":{}}", "null")
                        CHUNK("{\"tool_calls\":[{\"function\":{\"arguments\":\"\"}}]}", "null"), true);
  assert_int_equal(r.events, 1);   /* only the last: a non-empty array */
}

static void finish_reasons_map_to_the_enum_and_null_leaves_them(void **state) {
  assert_int_equal(observe(CHUNK("{}", "\"length\""), true).finish, FL_FINISH_LENGTH);
  assert_int_equal(observe(CHUNK("{}", "\"content_filter\""), true).finish, FL_FINISH_CONTENT_FILTER);
  assert_int_equal(observe(CHUNK("{}", "\"tool_calls\""), true).finish, FL_FINISH_TOOL_CALLS);
  assert_int_equal(observe(CHUNK("{}", "\"eos_token\""), true).finish, FL_FINISH_OTHER);
  assert_int_equal(observe(CHUNK("{}", "\"eos\""), true).finish, FL_FINISH_STOP);          /* TGI's stop */
  assert_int_equal(observe(CHUNK("{}", "\"function_call\""), true).finish, FL_FINISH_TOOL_CALLS);
  assert_int_equal(fl_finish_parse("eos", 3), FL_FINISH_STOP);   /* the one mapping quality.c reads too */
  assert_int_equal(observe(CHUNK("{}", "\"\""), true).finish, FL_FINISH_OTHER);
  assert_int_equal(observe(CHUNK("{}", "\"stops\""), true).finish, FL_FINISH_OTHER);
  /* the last non-null one wins; a later null does not clear it */
  assert_int_equal(observe(CHUNK("{}", "\"length\"") CHUNK("{}", "\"stop\"") CHUNK("{}", "null"), true).finish,
                   FL_FINISH_STOP);
  assert_int_equal(observe(CHUNK("{}", "null"), true).finish, FL_FINISH_NONE);
}

/* Each tricky content string sits in front of a real finish_reason in the same chunk: if the
 * scanner lost track of where the string ends, it would miss that key or take a fake one. */
static void text_inside_content_is_never_a_key_or_done(void **state) {
  outcome_t r = observe(CHUNK("{\"content\":\"He said \\\"hi\\\"\\n\\ndata: [DONE]\\n\\n\"}", "\"length\""), true);
  assert_int_equal(r.events, 1);
  assert_int_equal(r.finish, FL_FINISH_LENGTH);
  assert_false(r.done);

  r = observe(CHUNK("{\"content\":\"\\\"finish_reason\\\":\\\"length\\\", \\\"prompt_tokens\\\":99}\"}", "\"stop\""),
              true);
  assert_int_equal(r.finish, FL_FINISH_STOP);
  assert_int_equal(r.prompt, -1);
  assert_int_equal(r.events, 1);

  r = observe(CHUNK("{\"content\":\"C:\\\\\"}", "\"content_filter\""), true);   /* ends in an escaped backslash */
  assert_int_equal(r.finish, FL_FINISH_CONTENT_FILTER);
  r = observe(CHUNK("{\"content\":\"\\\\\\\"\",\"text\":\"\"}", "\"tool_calls\""), true);   /* \\ then \" */
  assert_int_equal(r.finish, FL_FINISH_TOOL_CALLS);
  assert_int_equal(r.events, 1);

  r = observe(CHUNK("{\"content\":\"[DONE]\"}", "null") CHUNK("{\"text\":\"data: [DONE]\"}", "null"), true);
  assert_int_equal(r.events, 2);
  assert_false(r.done);
}

static void crlf_line_endings_delimit_events_like_lf(void **state) {
  char *body = crlf(CHAT_STREAM);
  outcome_t lf = observe(CHAT_STREAM, true), cr = observe(body, true);
  assert_true(same(&lf, &cr));
  assert_int_equal(cr.events, 2);
  assert_true(cr.done);
  free(body);
  body = crlf(CHUNK("{\"content\":\"a\"}", "null"));
  body[strlen(body) - 2] = '\0';   /* "\r\n\r" is not yet a blank line */
  assert_int_equal(observe(body, true).events, 0);
  free(body);
}

static void stream_cut_before_done_is_reported_and_counts_only_whole_events(void **state) {
  size_t upto_done = strlen(CHAT_STREAM) - strlen(DONE_EVENT);
  outcome_t r = observe_n(CHAT_STREAM, upto_done, true);
  assert_false(r.done);
  assert_int_equal(r.events, 2);
  assert_int_equal(r.prompt, 9);

  r = observe_n(CHAT_STREAM, upto_done - strlen(USAGE_EVENT) - 60, true);  /* inside the "stop" chunk */
  assert_false(r.done);
  assert_int_equal(r.finish, FL_FINISH_NONE);
  assert_int_equal(r.prompt, -1);

  const char partial[] = CHUNK("{\"content\":\"x\"}", "null");
  assert_int_equal(observe_n(partial, strlen(partial) - 1, true).events, 0);  /* no blank line yet */
  assert_false(observe("data: [DONE", true).done);
  assert_false(observe("data: [DO\nNE]\n\n", true).done);
  assert_true(observe("data: [[DONE]\n\n", true).done);
}

static void usage_last_seen_wins(void **state) {
  outcome_t r = observe(EV("{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}")
                        EV("{\"usage\":{\"prompt_tokens\":1234567,\"completion_tokens\":0}}"), true);
  assert_int_equal(r.prompt, 1234567);
  assert_int_equal(r.completion, 0);
  r = observe(EV("{\"usage\":{\"prompt_tokens\":\"9\",\"completion_tokens\":-3}}"), true);
  assert_int_equal(r.prompt, -1);   /* not a number */
  assert_int_equal(r.completion, -1);
}

/* ---- whole JSON bodies ---- */

static void non_stream_completion_reports_usage_and_finish_without_token_events(void **state) {
  outcome_t r = observe(
      "{\n"
      "  \"id\": \"chatcmpl-1\",\n"
      "  \"object\": \"chat.completion\",\n"
      "  \"choices\": [{\n"
      "    \"index\": 0,\n"
      "    \"message\": {\"role\": \"assistant\", \"content\": \"Hi there.\\n\\nBye.\"},\n"
      "\n"
      "    \"finish_reason\": \"length\"\n"
      "  }],\n"
      "  \"usage\": {\"prompt_tokens\": 19, \"completion_tokens\" : 7, \"total_tokens\": 26,\n"
      "            \"completion_tokens_details\": {\"reasoning_tokens\": 0}}\n"
      "}\n", false);
  assert_int_equal(r.prompt, 19);
  assert_int_equal(r.completion, 7);
  assert_int_equal(r.finish, FL_FINISH_LENGTH);
  assert_int_equal(r.events, 0);
  assert_int_equal(r.gaps, 0);
  assert_false(r.done);
}

static void error_body_leaves_usage_unknown(void **state) {
  outcome_t r = observe("{\"error\":{\"message\":\"The model `m` does not exist\",\"type\":\"invalid_request_error\","
                        "\"param\":null,\"code\":\"model_not_found\"}}", false);
  assert_int_equal(r.prompt, -1);
  assert_int_equal(r.completion, -1);
  assert_int_equal(r.finish, FL_FINISH_NONE);
  assert_int_equal(r.events, 0);
}

/* Whole strings are read in place (json_strings); these shapes must read as they do a byte at a
 * time, which observe's cuts check too. */
static void json_bodies_read_in_place_the_same_as_byte_by_byte(void **state) {
  outcome_t r = observe("{\"content\":\"quoting \\\"prompt_tokens\\\":99 and \\\"finish_reason\\\":\\\"length\\\"\","
                        "\"fin\\u0069sh_reason\":\"length\",\"usage\":{\"prompt_tokens\"\n :\t 12345678901234567890,"
                        "\"completion_tokens\"  :  7},\"finish_reason\":\"a finish reason longer than any name\"}", false);
  assert_int_equal(r.prompt, -1);                  /* 20 digits: not a token count */
  assert_int_equal(r.completion, 7);
  assert_int_equal(r.finish, FL_FINISH_OTHER);    /* the escaped key is not finish_reason */
  r = observe("{\"tool_calls\": [ {\"id\":\"t\"}],\"finish_reason\" : \"tool_calls\",\"x\":\"unterminated", false);
  assert_int_equal(r.finish, FL_FINISH_TOOL_CALLS);
}

/* ---- garbage and overlong input ---- */

static void garbage_is_survived_and_the_next_event_still_counts(void **state) {
  static const char body[] =
      "\x00\xff\x7f\"\\\"\\\x01:::{{[[\"\"\"\"prompt_tokens\":\n\n"      /* binary, quotes, a dangling key */
      "data: {\"content\":\"unterminated\n\n"                            /* unbalanced quote */
      "data: {\"content\":\"ok\",\"finish_reason\":\"stop\"}\n\n";
  outcome_t r = observe_n(body, sizeof body - 1, true);
  assert_int_equal(r.events, 1);
  assert_int_equal(r.finish, FL_FINISH_STOP);
  assert_int_equal(r.prompt, -1);

  /* random bytes, cut at random, change nothing but the outcome fields, and stay in range */
  unsigned seed = 12345;
  char *noise = malloc(1 << 16);
  assert_non_null(noise);
  for (int round = 0; round < 20; round++) {
    for (size_t i = 0; i < 1 << 16; i++) noise[i] = (char)(rand_r(&seed) >> 7);
    fl_llm_t o;
    outcome_t sink = {0};
    fl_llm_init(&o, round & 1);
    for (size_t at = 0; at < 1 << 16;) {
      size_t want = (size_t)rand_r(&seed) % 700, n = FL_MIN(want, (size_t)(1 << 16) - at);
      feed(&o, noise + at, n, NOW, &sink);
      at += n;
    }
    assert_true(o.prompt_tokens >= -1 && o.completion_tokens >= -1);
    assert_true((unsigned)o.finish < FL_FINISH_COUNT);
    fl_llm_feed(&o, ROLE_EVENT, strlen(ROLE_EVENT), NOW, NULL, NULL);  /* resyncs at the blank line */
    fl_llm_feed(&o, "\n\n", 2, NOW, NULL, NULL);
    uint32_t before = o.token_events;
    const char tok[] = CHUNK("{\"content\":\"x\"}", "null");
    fl_llm_feed(&o, tok, strlen(tok), NOW, NULL, NULL);   /* a NULL callback is allowed */
    assert_int_equal(o.token_events, round & 1 ? before + 1 : before);
  }
  free(noise);
}

static char *repeat(char c, size_t n) {
  char *s = malloc(n + 1);
  assert_non_null(s);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

static void overlong_strings_keys_and_numbers_are_truncated_never_matched(void **state) {
  char *x = repeat('x', 40), body[1024];   /* longer than any capture */
  snprintf(body, sizeof body,
           "data: {\"prompt_tokens%s\":5,\"completion_tokens_details_%s\":6,\"finish_reason\":\"stop%s\","
           "\"content\":\"%s\",\"usage\":{\"prompt_tokens\":12345678901234567890123,"
           "\"completion_tokens\":999999999999999999}}\n\n",
           x, x, x, x);
  outcome_t r = observe(body, true);
  assert_int_equal(r.prompt, -1);                           /* a key that only starts like one, an overflow */
  assert_int_equal(r.completion, 999999999999999999LL);   /* 18 digits still fit */
  assert_int_equal(r.finish, FL_FINISH_OTHER);
  assert_int_equal(r.events, 1);
  free(x);

  /* a 16 MiB content string in 4 KiB pieces, then a number of 100,000 digits */
  static const char head[] = "data: {\"content\":\"", tail[] = "\",\"finish_reason\":\"\"}\n\n";
  size_t big = 16u << 20;
  char *huge = repeat('y', big);
  memcpy(huge, head, strlen(head));
  memcpy(huge + big - strlen(tail), tail, strlen(tail));
  fl_llm_t o;
  fl_llm_init(&o, true);
  for (size_t at = 0; at < big; at += 4096) fl_llm_feed(&o, huge + at, FL_MIN((size_t)4096, big - at), NOW, NULL, NULL);
  assert_int_equal(o.token_events, 1);
  assert_int_equal(o.finish, FL_FINISH_OTHER);
  memset(huge, '7', 100000);
  fl_llm_feed(&o, "{\"prompt_tokens\":", 17, NOW, NULL, NULL);
  fl_llm_feed(&o, huge, 100000, NOW, NULL, NULL);
  fl_llm_feed(&o, "}", 1, NOW, NULL, NULL);
  assert_int_equal(o.prompt_tokens, -1);
  free(huge);
}

/* ---- token timing ---- */

static void token_events_are_stamped_when_they_complete_and_gaps_are_reported(void **state) {
  static const struct { const char *event; uint64_t now_ns; } events[] = {
      {CHUNK("{\"role\":\"assistant\",\"content\":\"\"}", "null"), 1000},
      {CHUNK("{\"content\":\"Hel\"}", "null"), 2000},
      {CHUNK("{\"content\":\"lo\"}", "null"), 3500},
      {CHUNK("{\"content\":\"!\"}", "null"), 7000},
      {CHUNK("{}", "\"stop\""), 8000},
      {"data: [DONE]\n\n", 9000},
  };
  /* each event fed whole, or cut into two or three pieces anywhere, all stamped with its time */
  size_t longest = 0;
  for (size_t e = 0; e < FL_ARRAY_LEN(events); e++) longest = FL_MAX(longest, strlen(events[e].event));
  for (size_t a = 0; a <= longest; a++)
    for (size_t b = a; b <= longest; b++) {
      fl_llm_t o;
      outcome_t r = {0};
      fl_llm_init(&o, true);
      for (size_t e = 0; e < FL_ARRAY_LEN(events); e++) {
        size_t n = strlen(events[e].event), ca = FL_MIN(a, n), cb = FL_MIN(b, n);
        feed(&o, events[e].event, ca, events[e].now_ns, &r);
        feed(&o, events[e].event + ca, cb - ca, events[e].now_ns, &r);
        feed(&o, events[e].event + cb, n - cb, events[e].now_ns, &r);
        if (e == 1) assert_int_equal(o.first_token_ns, 2000);
      }
      assert_int_equal(o.token_events, 3);
      assert_int_equal(o.first_token_ns, 2000);
      assert_int_equal(o.last_token_ns, 7000);
      assert_int_equal(r.gaps, 2);
      assert_int_equal(r.gap[0], 1500);
      assert_int_equal(r.gap[1], 3500);
      assert_true(o.done_seen);
    }
}

static void an_event_completes_when_its_blank_line_arrives(void **state) {
  static const char ev[] = CHUNK("{\"content\":\"a\"}", "null");
  size_t n = strlen(ev);
  fl_llm_t o;
  outcome_t r = {0};
  fl_llm_init(&o, true);
  feed(&o, ev, n - 1, 100, &r);   /* up to the first newline */
  assert_int_equal(o.token_events, 0);
  feed(&o, ev + n - 1, 1, 250, &r);
  assert_int_equal(o.token_events, 1);
  assert_int_equal(o.first_token_ns, 250);
  assert_int_equal(o.last_token_ns, 250);
  feed(&o, ev, n, 250, &r);       /* same instant: a zero gap */
  feed(&o, ev, n, 200, &r);       /* a clock that steps back never yields a huge gap */
  assert_int_equal(r.gaps, 2);
  assert_int_equal(r.gap[0], 0);
  assert_int_equal(r.gap[1], 0);
}

static void non_stream_bodies_never_produce_token_events_or_done(void **state) {
  outcome_t r = observe(CHAT_STREAM, false);
  assert_int_equal(r.events, 0);
  assert_int_equal(r.gaps, 0);
  assert_false(r.done);
  assert_int_equal(r.prompt, 9);
  assert_int_equal(r.finish, FL_FINISH_STOP);
}

static void finish_names(void **state) {
  assert_string_equal(fl_finish_name(FL_FINISH_NONE), "none");
  assert_string_equal(fl_finish_name(FL_FINISH_STOP), "stop");
  assert_string_equal(fl_finish_name(FL_FINISH_LENGTH), "length");
  assert_string_equal(fl_finish_name(FL_FINISH_CONTENT_FILTER), "content_filter");
  assert_string_equal(fl_finish_name(FL_FINISH_TOOL_CALLS), "tool_calls");
  assert_string_equal(fl_finish_name(FL_FINISH_OTHER), "other");
  assert_string_equal(fl_finish_name(FL_FINISH_COUNT), "none");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(chat_stream_counts_content_events_usage_finish_and_done),
      cmocka_unit_test(role_only_and_null_content_events_are_not_tokens),
      cmocka_unit_test(reasoning_deltas_are_tokens_like_content),
      cmocka_unit_test(completions_stream_counts_text_events),
      cmocka_unit_test(tool_call_stream_counts_argument_deltas_and_finishes_with_tool_calls),
      cmocka_unit_test(empty_or_null_tool_calls_are_not_tokens),
      cmocka_unit_test(finish_reasons_map_to_the_enum_and_null_leaves_them),
      cmocka_unit_test(text_inside_content_is_never_a_key_or_done),
      cmocka_unit_test(crlf_line_endings_delimit_events_like_lf),
      cmocka_unit_test(stream_cut_before_done_is_reported_and_counts_only_whole_events),
      cmocka_unit_test(usage_last_seen_wins),
      cmocka_unit_test(non_stream_completion_reports_usage_and_finish_without_token_events),
      cmocka_unit_test(error_body_leaves_usage_unknown),
    cmocka_unit_test(json_bodies_read_in_place_the_same_as_byte_by_byte),
      cmocka_unit_test(garbage_is_survived_and_the_next_event_still_counts),
      cmocka_unit_test(overlong_strings_keys_and_numbers_are_truncated_never_matched),
      cmocka_unit_test(token_events_are_stamped_when_they_complete_and_gaps_are_reported),
      cmocka_unit_test(an_event_completes_when_its_blank_line_arrives),
      cmocka_unit_test(non_stream_bodies_never_produce_token_events_or_done),
      cmocka_unit_test(finish_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
