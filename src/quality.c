/* quality.c — reads one sampled exchange with jansson: the request's and the answer's shape
 * (OpenAI chat, completions and embeddings, KServe v1 and v2), sizes, finish reasons, empty,
 * refused and invalid-JSON answers, missing numbers, per-feature values and predicted classes.
 * Only the first choice of an LLM answer is read. */
#include "quality.h"
#include "base64.h"
#include "http.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- features ---- */

static const char *const FIXED_NAMES[FL_F_INPUT] = {
    [FL_F_PROMPT_CHARS] = "prompt_chars",   [FL_F_PROMPT_MESSAGES] = "prompt_messages",
    [FL_F_OUTPUT_TOKENS] = "output_tokens", [FL_F_OUTPUT_CHARS] = "output_chars",
    [FL_F_EMBEDDING_NORM] = "embedding_norm", [FL_F_FINISH] = "finish_reason", [FL_F_CLASS] = "class",
};

const char *fl_feature_name(unsigned f, char *buf, size_t cap) {
  if (f < FL_F_INPUT) return FIXED_NAMES[f];
  if (f < FL_F_OUTPUT) snprintf(buf, cap, "input_%u", f - FL_F_INPUT);
  else snprintf(buf, cap, "output_%u", f - FL_F_OUTPUT);
  return buf;
}

bool fl_feature_is_input(unsigned f) {
  return f == FL_F_PROMPT_CHARS || f == FL_F_PROMPT_MESSAGES || (f >= FL_F_INPUT && f < FL_F_OUTPUT);
}

bool fl_feature_is_category(unsigned f) { return f == FL_F_FINISH || f == FL_F_CLASS; }

int fl_feature_parse(const char *name) {
  for (unsigned f = 0; f < FL_F_INPUT; f++)
    if (strcmp(name, FIXED_NAMES[f]) == 0) return (int)f;
  static const struct { const char *prefix; unsigned base; } numbered[] = {{"input_", FL_F_INPUT}, {"output_", FL_F_OUTPUT}};
  for (size_t k = 0; k < FL_ARRAY_LEN(numbered); k++) {
    size_t n = strlen(numbered[k].prefix);
    const char *digits = name + n;
    if (strncmp(name, numbered[k].prefix, n) != 0 || !*digits || strlen(digits) > 2) continue;
    if (strspn(digits, "0123456789") != strlen(digits) || (digits[0] == '0' && digits[1])) continue;
    unsigned i = (unsigned)atoi(digits);
    if (i < FL_Q_FEATURES) return (int)(numbered[k].base + i);
  }
  return -1;
}

static const char *const KIND_NAMES[FL_QK_COUNT] = {"unknown", "chat", "completion", "embeddings", "kserve_v1",
                                                    "kserve_v2"};
const char *fl_qkind_name(fl_qkind_t k) { return (unsigned)k < FL_QK_COUNT ? KIND_NAMES[k] : "unknown"; }

/* ---- refusal patterns ---- */

static char *const DEFAULT_REFUSALS[] = {
    "\\bI('m| am) (sorry|afraid),? (but )?I (can('|no)t|won't|am unable to)",
    "\\bI (can('|no)t|won't|am unable to) (help|assist|comply|provide)",
    "\\bas an AI( language)? model\\b",
};

int fl_quality_conf_init(fl_quality_conf_t *qc, char *const *patterns, size_t n, char *err, size_t err_cap) {
  if (!patterns) patterns = DEFAULT_REFUSALS, n = FL_ARRAY_LEN(DEFAULT_REFUSALS);
  qc->n_refusals = 0;
  qc->refusals = calloc(n ? n : 1, sizeof *qc->refusals);
  if (!qc->refusals) return FL_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    int rc = regcomp(&qc->refusals[i], patterns[i], REG_EXTENDED | REG_ICASE | REG_NOSUB);
    if (rc != 0) {
      char why[128];
      regerror(rc, &qc->refusals[i], why, sizeof why);
      snprintf(err, err_cap, "refusal pattern \"%s\": %s", patterns[i], why);
      fl_quality_conf_free(qc);
      return FL_EINVAL;
    }
    qc->n_refusals++;
  }
  return 0;
}

void fl_quality_conf_free(fl_quality_conf_t *qc) {
  for (size_t i = 0; i < qc->n_refusals; i++) regfree(&qc->refusals[i]);
  free(qc->refusals);
  qc->refusals = NULL;
  qc->n_refusals = 0;
}

/* ---- JSON with Python's special floats ---- */

static bool has_specials(const char *t, size_t n) { return memmem(t, n, "NaN", 3) || memmem(t, n, "Infinity", 8); }

/* Outside strings, NaN / Infinity / -Infinity become the marker strings. */
static int rewrite_specials(const char *t, size_t n, fl_buf_t *out) {
  static const struct { const char *lit; size_t len; const char *json; } SPECIAL[] = {
      {"NaN", 3, "\"\\u0001NaN\""}, {"Infinity", 8, "\"\\u0001Inf\""}, {"-Infinity", 9, "\"\\u0001-Inf\""}};
  bool in_str = false, esc = false;
  size_t from = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = t[i];
    if (in_str) {
      if (esc) esc = false;
      else if (ch == '\\') esc = true;
      else if (ch == '"') in_str = false;
      continue;
    }
    if (ch == '"') {
      in_str = true;
      continue;
    }
    for (size_t k = 0; k < FL_ARRAY_LEN(SPECIAL); k++) {
      if (n - i < SPECIAL[k].len || memcmp(t + i, SPECIAL[k].lit, SPECIAL[k].len) != 0) continue;
      if (i > from) fl_buf_append(out, t + from, i - from);
      fl_buf_str(out, SPECIAL[k].json);
      i += SPECIAL[k].len - 1;
      from = i + 1;
      break;
    }
  }
  if (n > from) fl_buf_append(out, t + from, n - from);
  return out->err;
}

json_t *fl_quality_parse(const char *text, size_t len) {
  json_error_t e;
  if (!len) return NULL;                       /* an empty body (text may then be NULL) */
  if (!has_specials(text, len)) return json_loadb(text, len, 0, &e);
  fl_buf_t out = {0};
  json_t *j = rewrite_specials(text, len, &out) == 0 && out.len ? json_loadb(out.data, out.len, 0, &e) : NULL;
  fl_buf_free(&out);
  return j;
}

char fl_quality_special(const json_t *v) {
  const char *s = json_string_value(v);
  if (!s || s[0] != '\x01') return 0;
  if (strcmp(s, FL_Q_NAN) == 0) return 'n';
  if (strcmp(s, FL_Q_INF) == 0) return 'i';
  if (strcmp(s, FL_Q_NINF) == 0) return 'j';
  return 0;
}

/* ---- helpers ---- */

typedef struct {
  const fl_quality_conf_t *qc;
  const fl_qsink_t *sink;
  fl_qobs_t *o;
  size_t n_inputs;             /* rows, embeddings inputs; SIZE_MAX: unknown */
} obs_t;

static void report(const obs_t *x, unsigned feature, double v) {
  if (x->sink && x->sink->value) x->sink->value(x->sink->ctx, feature, v);
}

static void report_label(const obs_t *x, const char *text, size_t len) {
  if (x->sink && x->sink->label) x->sink->label(x->sink->ctx, text, len);
}

static size_t utf8_chars(const char *s, size_t n) {
  size_t chars = 0;
  for (size_t i = 0; i < n; i++) chars += ((unsigned char)s[i] & 0xC0) != 0x80;
  return chars;
}

static size_t string_chars(const json_t *s) { return utf8_chars(json_string_value(s), json_string_length(s)); }

static fl_finish_t finish_of(const json_t *v) {
  return json_is_string(v) ? fl_finish_parse(json_string_value(v), json_string_length(v)) : FL_FINISH_NONE;
}

/* A tool call is there when its value is: servers send "tool_calls": null or [] in plain answers. */
static bool has_tool_call(const json_t *o) {
  return json_array_size(json_object_get(o, "tool_calls")) > 0 || json_is_object(json_object_get(o, "function_call"));
}

/* One number of an answer (is_input false) or a request: counted, reported when finite. */
static void number(const obs_t *x, const json_t *v, bool is_input, unsigned feature) {
  char special = fl_quality_special(v);
  bool missing = json_is_null(v) || special;
  if (!missing && !json_is_number(v)) return;
  if (is_input) {
    x->o->input_values++;
    x->o->input_missing += missing;
  } else {
    x->o->values++;
    x->o->nulls += json_is_null(v);
    x->o->nan += special == 'n';
    x->o->inf += special == 'i' || special == 'j';
  }
  if (!missing && feature < FL_F_COUNT) report(x, feature, json_number_value(v));
}

/* The numbers of one row (a number, a nested array or an object), features by flat position;
 * returns the row's length. */
static size_t row(const obs_t *x, const json_t *v, bool is_input, size_t pos) {
  unsigned base = is_input ? FL_F_INPUT : FL_F_OUTPUT;
  size_t i;
  const char *key;
  json_t *item;
  if (json_is_array(v)) {
    json_array_foreach(v, i, item) pos = row(x, item, is_input, pos);
    return pos;
  }
  if (json_is_object(v)) {
    json_object_foreach((json_t *)v, key, item) pos = row(x, item, is_input, pos);
    return pos;
  }
  number(x, v, is_input, pos < FL_Q_FEATURES ? base + (unsigned)pos : FL_F_COUNT);
  return pos + 1;
}

/* ---- LLM requests and answers ---- */

static size_t content_chars(const json_t *content) {
  if (json_is_string(content)) return string_chars(content);
  size_t n = 0, i;
  json_t *part;
  json_array_foreach(content, i, part) n += content_chars(json_is_string(part) ? part : json_object_get(part, "text"));
  return n;
}

static void observe_llm_request(const obs_t *x, const json_t *req) {
  size_t i, chars = 0;
  json_t *item;
  if (x->o->kind == FL_QK_CHAT) {
    const json_t *messages = json_object_get(req, "messages");
    json_array_foreach(messages, i, item) chars += content_chars(json_object_get(item, "content"));
    report(x, FL_F_PROMPT_MESSAGES, (double)json_array_size(messages));
    const char *format = json_string_value(json_object_get(json_object_get(req, "response_format"), "type"));
    x->o->json_asked = format && (strcmp(format, "json_object") == 0 || strcmp(format, "json_schema") == 0);
  } else {
    const json_t *prompt = json_object_get(req, "prompt");
    if (json_is_array(prompt) && json_is_integer(json_array_get(prompt, 0))) return;   /* token ids */
    chars = content_chars(prompt);
  }
  report(x, FL_F_PROMPT_CHARS, (double)chars);
}

/* The answer's text, whole: sizes, emptiness, refusals and JSON validity. */
static void observe_text(const obs_t *x, const char *text, size_t len, bool tool_call, double tokens) {
  fl_qobs_t *o = x->o;
  o->answer = true;
  o->empty = len == 0 && !tool_call;
  report(x, FL_F_OUTPUT_CHARS, (double)utf8_chars(text, len));
  if (!isnan(tokens)) report(x, FL_F_OUTPUT_TOKENS, tokens);
  report(x, FL_F_FINISH, (double)o->finish);
  for (size_t i = 0; i < x->qc->n_refusals && len && !o->refusal; i++)
    o->refusal = regexec(&x->qc->refusals[i], text, 0, NULL, 0) == 0;
  if (o->json_asked) {
    json_error_t e;
    json_t *j = json_loadb(text, len, 0, &e);
    o->json_invalid = !json_is_object(j);
    json_decref(j);
  }
}

static double usage_tokens(const json_t *resp) {
  const json_t *t = json_object_get(json_object_get(resp, "usage"), "completion_tokens");
  return json_is_integer(t) ? (double)json_integer_value(t) : NAN;
}

const json_t *fl_quality_choice_text(const json_t *choice) {
  const json_t *message = json_object_get(choice, "message");
  if (!message) message = json_object_get(choice, "delta");
  return message ? json_object_get(message, "content") : json_object_get(choice, "text");
}

static void observe_llm_answer(const obs_t *x, const json_t *resp) {
  const json_t *choice = json_array_get(json_object_get(resp, "choices"), 0);
  if (!choice) {
    x->o->unparsed = true;
    return;
  }
  const json_t *text = fl_quality_choice_text(choice);
  bool tool = has_tool_call(json_object_get(choice, "message"));
  x->o->finish = finish_of(json_object_get(choice, "finish_reason"));
  observe_text(x, json_is_string(text) ? json_string_value(text) : "", json_string_length(text), tool, usage_tokens(resp));
}

bool fl_quality_stream_events(const char *body, size_t len, bool cut, fl_qevent_fn on_event, void *ctx) {
  bool done = false;
  if (!len) return false;                                    /* body may then be NULL */
  for (const char *p = body, *end = body + len; p < end && !done;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = nl ? nl : end;
    if (!nl && cut) break;                                   /* the capture ended mid-event */
    if (line_end - p > 5 && memcmp(p, "data:", 5) == 0) {
      const char *d = p + 5 + (p[5] == ' ');
      size_t n = (size_t)(line_end - d) - (line_end > d && line_end[-1] == '\r');
      done = n == 6 && memcmp(d, "[DONE]", 6) == 0;
      json_t *ev = done ? NULL : fl_quality_parse(d, n);
      if (ev) on_event(ctx, ev);
      json_decref(ev);
    }
    p = line_end + 1;
  }
  return done;
}

/* What a stream's events add up to. */
typedef struct {
  const obs_t *x;
  fl_buf_t text;
  double tokens, events;
  bool tool;
} stream_t;

static void stream_event(void *ctx, const json_t *ev) {
  stream_t *st = ctx;
  const json_t *choice = json_array_get(json_object_get(ev, "choices"), 0);
  const json_t *piece = fl_quality_choice_text(choice);
  if (json_string_length(piece)) fl_buf_append(&st->text, json_string_value(piece), json_string_length(piece));
  st->events += json_string_length(piece) > 0;
  st->tool |= has_tool_call(json_object_get(choice, "delta"));
  if (finish_of(json_object_get(choice, "finish_reason")) != FL_FINISH_NONE)
    st->x->o->finish = finish_of(json_object_get(choice, "finish_reason"));
  if (!isnan(usage_tokens(ev))) st->tokens = usage_tokens(ev);
}

/* A stream: the text of every `data:` event, the last finish_reason, usage when sent. */
static void observe_stream(const obs_t *x, const char *body, size_t len, bool cut) {
  stream_t st = {.x = x, .tokens = NAN};
  bool done = fl_quality_stream_events(body, len, cut, stream_event, &st);
  fl_buf_append(&st.text, "", 1);
  if (st.text.err || (cut && !done)) x->o->unparsed = true;        /* sizes of a cut stream would be wrong */
  else observe_text(x, st.text.data, st.text.len - 1, st.tool, isnan(st.tokens) ? st.events : st.tokens);
  fl_buf_free(&st.text);
}

/* ---- embeddings ---- */

static void observe_embeddings_request(obs_t *x, const json_t *req) {
  const json_t *input = json_object_get(req, "input"), *item;
  size_t i;
  x->n_inputs = json_is_string(input) || json_is_integer(json_array_get(input, 0)) ? 1 : json_array_size(input);
  if (json_is_string(input)) report(x, FL_F_PROMPT_CHARS, (double)string_chars(input));
  json_array_foreach(input, i, item)
    if (json_is_string(item)) report(x, FL_F_PROMPT_CHARS, (double)string_chars(item));
}

/* A base64 embedding (`encoding_format: base64`, the OpenAI SDKs' default): little-endian
 * float32s. Counted like a float list; returns its dimension, or SIZE_MAX when it does not decode
 * (then it is no vector at all: a shape mismatch). */
static size_t base64_embedding(const obs_t *x, const char *text, size_t len, double *sq, bool *finite) {
  size_t cap = len / 4 * 3;
  uint8_t *bytes = malloc(cap ? cap : 1);
  long n = bytes ? fl_b64_decode(FL_B64_STD, text, len, bytes, cap) : -1;
  if (n < 0 || n % 4) {
    free(bytes);
    return SIZE_MAX;
  }
  for (long k = 0; k < n; k += 4) {
    uint32_t bits = (uint32_t)bytes[k] | (uint32_t)bytes[k + 1] << 8 | (uint32_t)bytes[k + 2] << 16 |
                    (uint32_t)bytes[k + 3] << 24;
    float f;
    memcpy(&f, &bits, 4);
    x->o->values++;
    x->o->nan += isnan(f) != 0;
    x->o->inf += isinf(f) != 0;
    *finite &= isfinite(f) != 0;
    if (isfinite(f)) *sq += (double)f * f;
  }
  free(bytes);
  return (size_t)n / 4;
}

/* One vector: a float list or base64; its dimension (SIZE_MAX: neither). */
static size_t embedding(const obs_t *x, const json_t *vec, double *sq, bool *finite) {
  if (json_is_string(vec)) return base64_embedding(x, json_string_value(vec), json_string_length(vec), sq, finite);
  if (!json_is_array(vec)) return SIZE_MAX;
  size_t j;
  const json_t *v;
  json_array_foreach(vec, j, v) {
    number(x, v, false, FL_F_COUNT);
    *finite &= json_is_number(v);
    if (json_is_number(v)) *sq += json_number_value(v) * json_number_value(v);
  }
  return json_array_size(vec);
}

static void observe_embeddings(const obs_t *x, const json_t *resp) {
  const json_t *data = json_object_get(resp, "data"), *item;
  size_t i, dim = 0;
  json_array_foreach(data, i, item) {
    double sq = 0;
    bool finite = true;
    size_t d = embedding(x, json_object_get(item, "embedding"), &sq, &finite);
    if (i == 0) dim = d;
    x->o->shape_mismatch |= d != dim || d == SIZE_MAX;
    if (finite && d != SIZE_MAX) report(x, FL_F_EMBEDDING_NORM, sqrt(sq));
  }
  if (x->n_inputs != SIZE_MAX && json_array_size(data) != x->n_inputs) x->o->shape_mismatch = true;
}

/* ---- KServe ---- */

/* A predicted class: a label, an integer, an object's class field, or the top probability. */
static bool predicted_class(const obs_t *x, const json_t *p) {
  char buf[32];
  if (json_is_string(p) && !fl_quality_special(p)) {
    report_label(x, json_string_value(p), json_string_length(p));
    return true;
  }
  if (json_is_integer(p)) {
    report_label(x, buf, (size_t)snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(p)));
    return true;
  }
  static const char *const CLASS_KEYS[] = {"class", "label", "predicted_class"};
  for (size_t k = 0; json_is_object(p) && k < FL_ARRAY_LEN(CLASS_KEYS); k++) {
    const json_t *c = json_object_get(p, CLASS_KEYS[k]);
    if (c && predicted_class(x, c)) return true;
  }
  return false;
}

/* Probabilities: two or more numbers in [0, 1] adding up to 1; the class is the largest's index. */
static void top_probability(const obs_t *x, const json_t *p) {
  size_t i, best = 0;
  json_t *v;
  double sum = 0, top = -1;
  if (json_array_size(p) < 2) return;
  json_array_foreach(p, i, v) {
    double d = json_number_value(v);
    if (!json_is_number(v) || d < 0 || d > 1) return;
    sum += d;
    if (d > top) top = d, best = i;
  }
  char buf[32];
  if (fabs(sum - 1) < 1e-3) report_label(x, buf, (size_t)snprintf(buf, sizeof buf, "%zu", best));
}

/* Rows of inputs or predictions; all rows of a batch must have one length. */
static size_t rows(const obs_t *x, const json_t *list, bool is_input) {
  size_t i, width = SIZE_MAX;
  json_t *r;
  json_array_foreach(list, i, r) {
    if (!is_input && predicted_class(x, r)) continue;
    if (!is_input) top_probability(x, r);
    size_t w = row(x, r, is_input, 0);
    if (width == SIZE_MAX) width = w;
    x->o->shape_mismatch |= w != width;
  }
  return json_array_size(list);
}

static void observe_v1(const obs_t *x, const json_t *resp) {
  const json_t *pred = json_object_get(resp, "predictions");
  if (!json_is_array(pred)) {
    x->o->unparsed = true;
    return;
  }
  size_t n_out = rows(x, pred, false);
  if (x->n_inputs != SIZE_MAX && x->n_inputs != n_out) x->o->shape_mismatch = true;
}

/* KServe v2 tensors: {name, shape, datatype, data}. A tensor [N, F...] holds N rows of F
 * features, the tensors of a list side by side; BYTES tensors and integer [N] outputs are
 * class labels. data may be flat or nested. */
typedef struct {
  const obs_t *x;
  bool is_input, labels;
  size_t pos, base, width;
} flat_t;

static void flat_visit(flat_t *f, const json_t *v) {
  size_t i;
  json_t *item;
  if (json_is_array(v)) {
    json_array_foreach(v, i, item) flat_visit(f, item);
    return;
  }
  size_t col = f->base + f->pos % f->width;
  if (f->labels) predicted_class(f->x, v);
  else number(f->x, v, f->is_input, col < FL_Q_FEATURES ? (f->is_input ? FL_F_INPUT : FL_F_OUTPUT) + (unsigned)col : FL_F_COUNT);
  f->pos++;
}

static void tensors(const obs_t *x, const json_t *list, bool is_input) {
  size_t t, base = 0;
  json_t *tensor;
  json_array_foreach(list, t, tensor) {
    const json_t *shape = json_object_get(tensor, "shape"), *d;
    const char *type = json_string_value(json_object_get(tensor, "datatype"));
    size_t i, total = 1, width = 1;
    json_array_foreach(shape, i, d) {
      size_t dim = (size_t)FL_MAX(json_integer_value(d), 0);
      total *= dim;
      if (i > 0) width *= dim;
    }
    flat_t f = {.x = x, .is_input = is_input, .base = base, .width = width ? width : 1};
    f.labels = !is_input && type && (strcmp(type, "BYTES") == 0 || (strncmp(type, "INT", 3) == 0 && width == 1));
    flat_visit(&f, json_object_get(tensor, "data"));
    if (json_is_array(shape) && f.pos != total) x->o->shape_mismatch = true;
    base += f.width;
  }
}

static void observe_v2(const obs_t *x, const json_t *resp) {
  const json_t *outputs = json_object_get(resp, "outputs");
  if (!json_is_array(outputs)) x->o->unparsed = true;
  else tensors(x, outputs, false);
}

/* ---- one exchange ---- */

static fl_qkind_t kind_of(const json_t *req, const json_t *resp) {
  if (json_object_get(req, "messages")) return FL_QK_CHAT;
  if (json_object_get(req, "prompt")) return FL_QK_COMPLETION;
  if (json_object_get(req, "input")) return FL_QK_EMBEDDINGS;
  if (json_object_get(req, "instances") || json_object_get(resp, "predictions")) return FL_QK_KSERVE_V1;
  if (json_object_get(req, "inputs") || json_object_get(resp, "outputs")) return FL_QK_KSERVE_V2;
  const json_t *choice = json_array_get(json_object_get(resp, "choices"), 0);
  if (json_object_get(choice, "message") || json_object_get(choice, "delta")) return FL_QK_CHAT;
  if (choice) return FL_QK_COMPLETION;
  if (json_object_get(json_array_get(json_object_get(resp, "data"), 0), "embedding")) return FL_QK_EMBEDDINGS;
  return FL_QK_UNKNOWN;
}

fl_qkind_t fl_quality_kind(const json_t *req, const json_t *resp, bool stream) {
  fl_qkind_t k = kind_of(req, resp);
  return k == FL_QK_UNKNOWN && stream ? FL_QK_CHAT : k;
}

/* The request's side, whatever the answer: inputs are compared with a baseline even when the
 * model failed on them. */
static void observe_request(obs_t *x, const json_t *req) {
  switch (x->o->kind) {
  case FL_QK_CHAT:
  case FL_QK_COMPLETION: observe_llm_request(x, req); break;
  case FL_QK_EMBEDDINGS: observe_embeddings_request(x, req); break;
  case FL_QK_KSERVE_V1:
    if (json_is_array(json_object_get(req, "instances"))) x->n_inputs = rows(x, json_object_get(req, "instances"), true);
    break;
  case FL_QK_KSERVE_V2: tensors(x, json_object_get(req, "inputs"), true); break;
  default: break;
  }
}

static void observe_answer(const obs_t *x, const json_t *resp) {
  switch (x->o->kind) {
  case FL_QK_CHAT:
  case FL_QK_COMPLETION: observe_llm_answer(x, resp); break;
  case FL_QK_EMBEDDINGS: observe_embeddings(x, resp); break;
  case FL_QK_KSERVE_V1: observe_v1(x, resp); break;
  case FL_QK_KSERVE_V2: observe_v2(x, resp); break;
  default: break;                              /* JSON of another kind: counted under kinds, not unparsed */
  }
}

void fl_quality_observe(const fl_quality_conf_t *qc, const fl_qsample_t *s, const fl_qsink_t *sink, fl_qobs_t *out) {
  memset(out, 0, sizeof *out);
  out->finish = FL_FINISH_NONE;
  out->malformed_request = s->status == 400;
  obs_t x = {.qc = qc, .sink = sink, .o = out, .n_inputs = SIZE_MAX};
  bool ok = s->status >= 200 && s->status < 300;
  json_t *req = s->req_len && !s->req_cut ? fl_quality_parse(s->req, s->req_len) : NULL;
  json_t *resp = ok && !s->stream && !s->resp_cut ? fl_quality_parse(s->resp, s->resp_len) : NULL;
  out->kind = fl_quality_kind(req, resp, s->stream);
  out->unparsed = (s->req_len && !req) || (ok && !s->stream && s->resp_len && !resp);
  if (req) observe_request(&x, req);
  if (ok && s->stream) observe_stream(&x, s->resp, s->resp_len, s->resp_cut);
  else if (resp) observe_answer(&x, resp);
  json_decref(req);
  json_decref(resp);
}
