/* llm.c — a byte-at-a-time, allocation-free observer of OpenAI-style response bodies.
 * It does not parse JSON: it tracks strings (with escapes), remembers the first bytes of each,
 * treats a string followed by ':' as a key and reads the value of the few keys it watches.
 * Nesting is ignored, so it is indifferent to where a body was cut into pieces and cheap on
 * garbage; a raw newline inside a string (never valid JSON or SSE) ends it, which resyncs the
 * scanner after an unbalanced quote. */
#include "llm.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

/* The watched key a string names (K_NONE if none). Length, first and last bytes first: most
 * keys differ there, and the call to memcmp is skipped. */
static uint8_t key_of(const char *str, size_t n) {
  for (size_t k = 0; k < FL_ARRAY_LEN(KEYS); k++)
    if (KEYS[k].len == n && KEYS[k].name[0] == str[0] && KEYS[k].name[n - 1] == str[n - 1] &&
        memcmp(KEYS[k].name, str, n) == 0)
      return KEYS[k].id;
  return K_NONE;
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

/* Where the run of plain string bytes at p ends: the offset of the first '"', '\\' or '\n', or n.
 * Sixteen bytes at a time with SSE2, then eight: (x - 0x01..) & ~x & 0x80.. flags the zero
 * bytes of x, exactly for the lowest one (a borrow only reaches bytes above a zero), which is
 * the first in memory here; then one at a time. */
static size_t string_run(const uint8_t *p, size_t n) {
  size_t i = 0;
#ifdef __SSE2__
  const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), nl = _mm_set1_epi8('\n');
  for (; n - i >= 16; i += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
    __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)), _mm_cmpeq_epi8(v, nl));
    unsigned mask = (unsigned)_mm_movemask_epi8(hit);
    if (mask) return i + (size_t)__builtin_ctz(mask);
  }
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
  for (; n - i >= 8; i += 8) {
    uint64_t v, q, b, l;
    memcpy(&v, p + i, 8);
    q = v ^ (ones * '"'), b = v ^ (ones * '\\'), l = v ^ (ones * '\n');
    uint64_t hit = (((q - ones) & ~q) | ((b - ones) & ~b) | ((l - ones) & ~l)) & highs;
    if (hit) return i + (size_t)__builtin_ctzll(hit) / 8;
  }
#endif
  while (i < n && !STR_STOP[p[i]]) i++;
  return i;
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
    i += string_run(p + i, n - i);
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
  uint8_t id = o->str_total == o->str_len ? key_of(o->str, o->str_len) : K_NONE;   /* longer: none */
  if (id != K_NONE) {
    o->state = S_VALUE;
    o->key_id = id;
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

/* ---- plain JSON bodies: whole strings in view ---- */

static bool is_blank(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* The end of the string whose content starts at p[i] (the offset of its closing quote), or n
 * when it is not closed within p or holds a raw newline. *plain: no escapes in it. */
static size_t string_end(const uint8_t *p, size_t i, size_t n, bool *plain) {
  *plain = true;
  for (;;) {
    i += string_run(p + i, n - i);
    if (i == n || p[i] == '"') return i;
    if (p[i] == '\n' || n - i < 2) return n;
    *plain = false;
    i += 2;                            /* a backslash and the byte it escapes */
  }
}

/* The value of watched key `id` at p[i] (blanks skipped): the offset after what it used, or n
 * when the value runs past p (the byte scanner then reads it again from its key). */
static size_t watched_value(fl_llm_t *o, uint8_t id, const uint8_t *p, size_t i, size_t n) {
  while (i < n && is_blank(p[i])) i++;
  if (i == n) return n;
  if (id == K_PROMPT || id == K_COMPLETION) {
    size_t start = i;
    int64_t v = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
      if (i - start < MAX_DIGITS) v = v * 10 + (p[i] - '0');
    if (i == n) return n;
    if (i > start && i - start <= MAX_DIGITS) *(id == K_PROMPT ? &o->prompt_tokens : &o->completion_tokens) = v;
    return i;
  }
  if (p[i] == '"') {
    bool plain;
    size_t end = string_end(p, i + 1, n, &plain);
    if (end == n) return n;
    if (id == K_FINISH) o->finish = fl_finish_parse((const char *)p + i + 1, end - i - 1);
    else if (end > i + 1) o->event_has_token = true;        /* K_TEXT, K_TOOL */
    return end + 1;
  }
  if (id == K_TOOL && (p[i] == '[' || p[i] == '{')) {      /* a tool call counts unless empty */
    for (i++; i < n && is_blank(p[i]); i++) {}
    if (i == n) return n;
    if (p[i] != ']' && p[i] != '}') o->event_has_token = true;
  }
  return i;
}

/* A plain JSON body (the scanner outside any string): each string is found (a look at the next
 * 16 bytes, then memchr) and scanned to its end in place, keys are matched where they lie, and
 * nothing is copied. The byte scanner's result, faster. Returns the offset of the first string that does not end
 * within p (or of the key whose value does not), or n; the byte scanner goes on from there. */
static size_t json_strings(fl_llm_t *o, const uint8_t *p, size_t n) {
  size_t i = 0;
  for (;;) {
    size_t open = i, near = FL_MIN(n, i + 16);
    while (open < near && p[open] != '"') open++;            /* the next string is mostly close by */
    if (open == near) {
      const uint8_t *q = memchr(p + open, '"', n - open);
      if (!q) return n;
      open = (size_t)(q - p);
    }
    bool plain;
    size_t end = string_end(p, open + 1, n, &plain);
    if (end == n) return open;
    for (i = end + 1; i < n && is_blank(p[i]); i++) {}
    if (i == n) return open;
    if (p[i] != ':') continue;                                /* a value, not a key */
    uint8_t id = plain ? key_of((const char *)p + open + 1, end - open - 1) : K_NONE;
    if (id == K_NONE) {
      i++;
      continue;
    }
    i = watched_value(o, id, p, i + 1, n);
    if (i == n) return open;
  }
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
    if (o->state == S_OUT && !o->is_stream) {   /* a plain JSON body: only strings matter here */
      i += json_strings(o, p + i, len - i);
      if (i == len) return;
      i++;                                         /* a string that goes on past this piece */
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
