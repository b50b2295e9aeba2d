/* llm.c — a byte-at-a-time, allocation-free observer of OpenAI-style response bodies.
 * It does not parse JSON: it tracks strings (with escapes), remembers the first bytes of each,
 * treats a string followed by ':' as a key and reads the value of the few keys it watches.
 * Nesting is ignored, so it is indifferent to where a body was cut into pieces and cheap on
 * garbage; a raw newline inside a string (never valid JSON or SSE) ends it, which resyncs the
 * scanner after an unbalanced quote. */
#include "llm.h"

enum { S_OUT, S_STR, S_AFTER_STR, S_VALUE, S_NUM, S_OPEN };   /* scanner states */
enum { K_NONE, K_PROMPT, K_COMPLETION, K_FINISH, K_TEXT, K_TOOL }; /* watched keys */

#define LIT(s) s, (sizeof s - 1)
#define MAX_DIGITS 18   /* longer numbers are not token counts; they are ignored, never wrapped */

/* Bytes that end the fast run inside a string. */
static const bool STR_STOP[256] = {['"'] = true, ['\\'] = true, ['\n'] = true};

static const struct {
  const char *name;
  size_t len;
  uint8_t id;
} KEYS[] = {
    {LIT("content"), K_TEXT},          {LIT("text"), K_TEXT},
    {LIT("reasoning_content"), K_TEXT}, {LIT("reasoning"), K_TEXT},      /* thinking is generated tokens too */
    {LIT("finish_reason"), K_FINISH},  {LIT("prompt_tokens"), K_PROMPT},
    {LIT("completion_tokens"), K_COMPLETION}, {LIT("tool_calls"), K_TOOL},
    {LIT("function_call"), K_TOOL},    {LIT("arguments"), K_TOOL},
};

static const char *const FINISH_NAMES[FL_FINISH_COUNT] = {
    [FL_FINISH_NONE] = "none",
    [FL_FINISH_STOP] = "stop",
    [FL_FINISH_LENGTH] = "length",
    [FL_FINISH_CONTENT_FILTER] = "content_filter",
    [FL_FINISH_TOOL_CALLS] = "tool_calls",
    [FL_FINISH_OTHER] = "other",
};

void fl_llm_init(fl_llm_t *o, bool is_stream) {
  memset(o, 0, sizeof *o);
  o->is_stream = is_stream;
  o->prompt_tokens = -1;
  o->completion_tokens = -1;
  o->finish = FL_FINISH_NONE;
  o->state = S_OUT;
  o->key_id = K_NONE;
}

const char *fl_finish_name(fl_finish_t f) {
  return (unsigned)f < FL_FINISH_COUNT ? FINISH_NAMES[f] : "none";
}

/* Is the whole current string exactly lit? A string longer than the capture never is. */
static inline bool str_is(const fl_llm_t *o, const char *lit, size_t n) {
  return o->str_total == n && memcmp(o->str, lit, n) == 0;
}

static inline void capture(fl_llm_t *o, const uint8_t *p, size_t n) {
  if (o->str_len < sizeof o->str) {
    size_t k = FL_MIN(n, sizeof o->str - o->str_len);
    memcpy(o->str + o->str_len, p, k);
    o->str_len = (uint8_t)(o->str_len + k);
  }
  o->str_total = n > UINT32_MAX - o->str_total ? UINT32_MAX : o->str_total + (uint32_t)n;
}

static inline void reset_value(fl_llm_t *o) {
  o->state = S_OUT;
  o->key_id = K_NONE;
}

fl_finish_t fl_finish_parse(const char *s, size_t len) {
  static const struct { const char *text; fl_finish_t kind; } ALIASES[] = {
      {"eos", FL_FINISH_STOP}, {"function_call", FL_FINISH_TOOL_CALLS}};
  for (int f = FL_FINISH_STOP; f <= FL_FINISH_TOOL_CALLS; f++)
    if (strlen(FINISH_NAMES[f]) == len && memcmp(s, FINISH_NAMES[f], len) == 0) return (fl_finish_t)f;
  for (size_t i = 0; i < FL_ARRAY_LEN(ALIASES); i++)
    if (strlen(ALIASES[i].text) == len && memcmp(s, ALIASES[i].text, len) == 0) return ALIASES[i].kind;
  return FL_FINISH_OTHER;
}

static fl_finish_t finish_of(const fl_llm_t *o) {
  return o->str_total == o->str_len ? fl_finish_parse(o->str, o->str_len) : FL_FINISH_OTHER;   /* longer: other */
}

/* A closing quote: either the value of a watched key, or a key candidate. */
static void string_closed(fl_llm_t *o) {
  uint8_t key = o->key_id;
  if (key == K_NONE) {
    o->state = S_AFTER_STR;
    return;
  }
  reset_value(o);
  if (key == K_FINISH) o->finish = finish_of(o);
  else if (o->str_total > 0) o->event_has_token = true;   /* K_TEXT, K_TOOL */
}

/* Consumes string bytes up to and including the closing quote; returns how many. */
static size_t in_string(fl_llm_t *o, const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (o->escape) {
      if (p[i] == '\n') break;
      o->escape = false;
      capture(o, p + i++, 1);
      continue;
    }
    size_t start = i;
    while (i < n && !STR_STOP[p[i]]) i++;
    capture(o, p + start, i - start);
    if (i == n) break;
    if (p[i] == '"') {
      string_closed(o);
      return i + 1;
    }
    if (p[i] == '\n') break;
    o->escape = true;
    capture(o, p + i++, 1);
  }
  if (i < n) reset_value(o);   /* a raw newline: the quote was unbalanced; it is scanned outside */
  return i;
}

static void start_string(fl_llm_t *o) {
  o->state = S_STR;
  o->escape = false;
  o->str_len = 0;
  o->str_total = 0;
}

/* The ':' after a string: if it names a watched key, its value comes next. */
static void key_seen(fl_llm_t *o) {
  reset_value(o);
  for (size_t k = 0; k < FL_ARRAY_LEN(KEYS); k++)
    if (str_is(o, KEYS[k].name, KEYS[k].len)) {
      o->state = S_VALUE;
      o->key_id = KEYS[k].id;
      return;
    }
}

/* The first byte of a watched key's value; false when the value is not one we read. */
static bool value_start(fl_llm_t *o, uint8_t c) {
  bool numeric = o->key_id == K_PROMPT || o->key_id == K_COMPLETION;
  if (c == '"' && !numeric) {
    start_string(o);
    return true;
  }
  if (c >= '0' && c <= '9' && numeric) {
    o->state = S_NUM;
    o->num = c - '0';
    o->num_len = 1;
    return true;
  }
  if ((c == '[' || c == '{') && o->key_id == K_TOOL) {
    o->state = S_OPEN;
    return true;
  }
  return false;
}

static void number_done(fl_llm_t *o) {
  if (o->num_len <= MAX_DIGITS) {
    if (o->key_id == K_PROMPT) o->prompt_tokens = o->num;
    else o->completion_tokens = o->num;
  }
  reset_value(o);
}

static void event_done(fl_llm_t *o, uint64_t now_ns, fl_llm_token_fn on_token, void *ctx) {
  if (o->event_has_token) {
    if (o->token_events++ == 0) o->first_token_ns = now_ns;
    else if (on_token) on_token(ctx, now_ns > o->last_token_ns ? now_ns - o->last_token_ns : 0);
    o->last_token_ns = now_ns;
  }
  o->event_has_token = false;
  reset_value(o);
}

/* '\r' is transparent; two '\n' in a row end an SSE event. Otherwise line breaks are whitespace. */
static void line_break(fl_llm_t *o, uint8_t c, uint64_t now_ns, fl_llm_token_fn on_token, void *ctx) {
  if (o->state == S_NUM) number_done(o);
  if (c == '\r') return;
  o->done_match = 0;
  if (o->nl_run < 2 && ++o->nl_run == 2 && o->is_stream) event_done(o, now_ns, on_token, ctx);
}

static inline void match_done(fl_llm_t *o, uint8_t c) {
  static const char DONE[] = "[DONE]";
  if (c == (uint8_t)DONE[o->done_match]) {
    if (++o->done_match == sizeof DONE - 1) {
      o->done_seen = true;
      o->done_match = 0;
    }
  } else {
    o->done_match = c == '[';
  }
}

/* One byte outside strings other than a line break. */
static inline void outside(fl_llm_t *o, uint8_t c) {
  switch (o->state) {
  case S_AFTER_STR:
    if (c == ' ' || c == '\t') return;
    if (c == ':') {
      key_seen(o);
      return;
    }
    break;
  case S_VALUE:
    if (c == ' ' || c == '\t' || value_start(o, c)) return;
    break;
  case S_NUM:
    if (c >= '0' && c <= '9') {
      if (o->num_len < MAX_DIGITS) o->num = o->num * 10 + (c - '0');
      if (o->num_len < UINT8_MAX) o->num_len++;
      return;
    }
    number_done(o);
    break;
  case S_OPEN:   /* a tool call as an object or array: it counts unless it is empty */
    if (c == ' ' || c == '\t') return;
    if (c != ']' && c != '}') o->event_has_token = true;
    break;
  }
  reset_value(o);
  if (c == '"') start_string(o);
  else if (o->is_stream) match_done(o, c);
}

int64_t fl_llm_completion_tokens(const fl_llm_t *o) {
  if (o->completion_tokens >= 0) return o->completion_tokens;
  return o->is_stream ? (int64_t)o->token_events : -1;
}

void fl_llm_feed(fl_llm_t *o, const char *data, size_t len, uint64_t now_ns, fl_llm_token_fn on_token,
                 void *ctx) {
  const uint8_t *p = (const uint8_t *)data;
  size_t i = 0;
  while (i < len) {
    if (o->state == S_STR) {
      i += in_string(o, p + i, len - i);
      continue;
    }
    if (o->state == S_OUT && !o->is_stream) {   /* a plain JSON body: only a quote matters here */
      const uint8_t *q = memchr(p + i, '"', len - i);
      if (!q) return;
      i = (size_t)(q - p) + 1;
      o->nl_run = 0;
      start_string(o);
      continue;
    }
    uint8_t c = p[i++];
    if (c == '\n' || c == '\r') {
      line_break(o, c, now_ns, on_token, ctx);
      continue;
    }
    o->nl_run = 0;
    outside(o, c);
  }
}
