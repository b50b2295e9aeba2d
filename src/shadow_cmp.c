/* shadow_cmp.c — reads both answers of a shadow pair as their kind (quality.c's kinds and SSE
 * reassembly), compares them (texts by word sets, predictions by class and value, embeddings by
 * cosine, anything else as JSON without its volatile fields), and keeps a route's aggregate and
 * last disagreements. */
#include "shadow_cmp.h"
#include "base64.h"
#include "http.h"
#include "jsonutil.h"

#include <math.h>
#include <stdlib.h>

static bool is_2xx(int status) { return status >= 200 && status < 300; }
static bool is_llm(fl_qkind_t k) { return k == FL_QK_CHAT || k == FL_QK_COMPLETION; }

/* ---- UTF-8 ---- */

/* The length of the valid UTF-8 character at s (n > 0 bytes), or 0 when it is not one (a stray
 * or missing continuation byte, an overlong form, a surrogate, past U+10FFFF) or is NUL. */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0], lo = 0x80, hi = 0xBF;
  size_t len;
  if (c < 0x80) return c != 0;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else return 0;
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  return len;
}

/* At most cap bytes of s as valid UTF-8, ending on a character boundary, NUL-terminated and
 * malloc'd (NULL on ENOMEM); a byte that is not part of a valid character becomes U+FFFD.
 * *truncated: s did not fit whole. */
static char *utf8_prefix(const char *s, size_t n, size_t cap, bool *truncated) {
  static const char REPLACEMENT[] = "\xEF\xBF\xBD";
  fl_buf_t out = {0};
  size_t i = 0;
  while (i < n) {
    size_t k = utf8_char_len((const unsigned char *)s + i, n - i);
    size_t width = k ? k : sizeof REPLACEMENT - 1;
    if (out.len + width > cap) break;
    fl_buf_append(&out, k ? s + i : REPLACEMENT, width);
    i += k ? k : 1;
  }
  *truncated = i < n;
  fl_buf_append(&out, "", 1);
  if (out.err) fl_buf_free(&out);
  return out.data;
}

static size_t utf8_chars(const char *s, size_t n) {
  size_t chars = 0;
  for (size_t i = 0; i < n; i++) chars += ((unsigned char)s[i] & 0xC0) != 0x80;
  return chars;
}

/* ---- words ---- */

static bool word_byte(unsigned char c) {
  return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* The FNV-1a hashes of the first FL_SHADOW_MAX_TOKENS words of text, sorted and without repeats
 * (a set); returns its size. */
static size_t word_set(const char *text, size_t len, uint64_t *set) {
  size_t n = 0, i = 0;
  while (n < FL_SHADOW_MAX_TOKENS) {
    while (i < len && !word_byte((unsigned char)text[i])) i++;
    if (i == len) break;
    uint64_t h = 14695981039346656037ULL;
    for (; i < len && word_byte((unsigned char)text[i]); i++) {
      unsigned char c = (unsigned char)text[i];
      h = (h ^ (c >= 'A' && c <= 'Z' ? c + 32u : c)) * 1099511628211ULL;
    }
    set[n++] = h;
  }
  qsort(set, n, sizeof *set, cmp_u64);
  size_t unique = 0;
  for (size_t k = 0; k < n; k++)
    if (unique == 0 || set[k] != set[unique - 1]) set[unique++] = set[k];
  return unique;
}

double fl_shadow_text_similarity(const char *a, size_t a_len, const char *b, size_t b_len) {
  uint64_t *sa = malloc(2 * FL_SHADOW_MAX_TOKENS * sizeof *sa), *sb = sa + FL_SHADOW_MAX_TOKENS;
  if (!sa) return NAN;
  size_t na = word_set(a, a_len, sa), nb = word_set(b, b_len, sb), common = 0;
  for (size_t i = 0, j = 0; i < na && j < nb;) {
    if (sa[i] == sb[j]) common++, i++, j++;
    else if (sa[i] < sb[j]) i++;
    else j++;
  }
  free(sa);
  return na + nb == 0 ? 1.0 : (double)common / (double)(na + nb - common);
}

/* ---- LLM answers: text and tool calls ---- */

#define TOOL_CALLS 8                 /* tool calls of one answer that are compared */

/* An answer's tool calls by index; a stream sends each one's name and arguments in pieces. */
typedef struct {
  fl_buf_t name[TOOL_CALLS], args[TOOL_CALLS];
  size_t n;
} calls_t;

static void append_string(fl_buf_t *b, const json_t *s) {
  if (json_string_length(s)) fl_buf_append(b, json_string_value(s), json_string_length(s));
}

/* A message's content: a string, or an array of parts (strings or {"text": ...}). */
static void append_content(fl_buf_t *b, const json_t *content) {
  size_t i;
  const json_t *part;
  if (json_is_string(content)) append_string(b, content);
  json_array_foreach(content, i, part) append_string(b, json_is_string(part) ? part : json_object_get(part, "text"));
}

static void add_call(calls_t *k, size_t index, const json_t *function) {
  if (index >= TOOL_CALLS || !json_is_object(function)) return;
  append_string(&k->name[index], json_object_get(function, "name"));
  append_string(&k->args[index], json_object_get(function, "arguments"));
  k->n = FL_MAX(k->n, index + 1);
}

/* The tool calls of a message or a stream's delta; their ids differ from run to run and are left out. */
static void add_calls(calls_t *k, const json_t *message) {
  size_t i;
  const json_t *call;
  json_array_foreach(json_object_get(message, "tool_calls"), i, call) {
    const json_t *index = json_object_get(call, "index");
    add_call(k, json_is_integer(index) ? (size_t)json_integer_value(index) : i, json_object_get(call, "function"));
  }
  add_call(k, 0, json_object_get(message, "function_call"));     /* the older, single form */
}

/* Each call as a line `name(arguments)` after the text; frees k. */
static void append_calls(fl_buf_t *text, calls_t *k) {
  for (size_t i = 0; i < k->n; i++) {
    if (k->name[i].len + k->args[i].len) {
      if (text->len) fl_buf_lit(text, "\n");
      fl_buf_append(text, k->name[i].data, k->name[i].len);
      fl_buf_lit(text, "(");
      fl_buf_append(text, k->args[i].data, k->args[i].len);
      fl_buf_lit(text, ")");
    }
    fl_buf_free(&k->name[i]);
    fl_buf_free(&k->args[i]);
  }
}

/* The first choice: the one of index 0, as a stream of n > 1 choices interleaves the others. */
static const json_t *first_choice(const json_t *choices) {
  size_t i;
  const json_t *choice;
  json_array_foreach(choices, i, choice) {
    const json_t *index = json_object_get(choice, "index");
    if (!json_is_integer(index) || json_integer_value(index) == 0) return choice;
  }
  return NULL;
}

typedef struct {
  fl_buf_t *text;
  calls_t *calls;
  size_t events;
} stream_read_t;

static void stream_event(void *ctx, const json_t *event) {
  stream_read_t *r = ctx;
  const json_t *choice = first_choice(json_object_get(event, "choices"));
  r->events++;
  append_content(r->text, fl_quality_choice_text(choice));
  add_calls(r->calls, json_object_get(choice, "delta"));
}

/* ---- one side of a pair ---- */

typedef struct {
  const fl_shadow_side_t *in;
  json_t *json;                /* the parsed body; none for a 2xx stream or a cut body */
  bool answer;                 /* it is an answer of the pair's kind, read below */
  fl_buf_t text;               /* LLM kinds: the text and tool calls, NUL-terminated (not in len) */
  const json_t *content;       /* other kinds: predictions, outputs or data (in json) */
} side_t;

static void side_open(side_t *s, const fl_shadow_side_t *in) {
  memset(s, 0, sizeof *s);
  s->in = in;
  if (!in->cut && in->len && !(in->stream && is_2xx(in->status))) s->json = fl_quality_parse(in->body, in->len);
}

static void side_close(side_t *s) {
  json_decref(s->json);
  fl_buf_free(&s->text);
}

/* An LLM answer, whole or streamed: is it one? */
static bool read_llm(side_t *s) {
  calls_t calls = {0};
  bool found;
  if (s->in->stream) {
    stream_read_t r = {&s->text, &calls, 0};
    found = fl_quality_stream_events(s->in->body, s->in->len, false, stream_event, &r) || r.events;
  } else {
    const json_t *choice = first_choice(json_object_get(s->json, "choices"));
    found = choice != NULL;
    append_content(&s->text, fl_quality_choice_text(choice));
    add_calls(&calls, json_object_get(choice, "message"));
  }
  append_calls(&s->text, &calls);
  fl_buf_append(&s->text, "", 1);
  if (s->text.err) return false;
  s->text.len--;
  return found;
}

/* Only a whole 2xx answer is read as its kind: a cut one's text or numbers would be a part. */
static void side_read(side_t *s, fl_qkind_t kind) {
  static const char *const CONTENT[FL_QK_COUNT] = {
      [FL_QK_EMBEDDINGS] = "data", [FL_QK_KSERVE_V1] = "predictions", [FL_QK_KSERVE_V2] = "outputs"};
  if (s->in->cut || !is_2xx(s->in->status)) return;
  if (is_llm(kind)) {
    if (s->in->stream || s->json) s->answer = read_llm(s);
  } else if (kind < FL_QK_COUNT && CONTENT[kind]) {
    s->content = json_object_get(s->json, CONTENT[kind]);
    s->answer = json_is_array(s->content);
  }
}

/* ---- exact ---- */

/* JSON equality where numbers compare by value (jansson's json_equal tells 1 from 1.0). */
static bool same_values(const json_t *a, const json_t *b) {
  if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
  if (!a || !b || json_typeof(a) != json_typeof(b)) return false;
  size_t i;
  const char *key;
  const json_t *item;
  if (json_is_array(a)) {
    if (json_array_size(a) != json_array_size(b)) return false;
    json_array_foreach(a, i, item) if (!same_values(item, json_array_get(b, i))) return false;
    return true;
  }
  if (json_is_object(a)) {
    if (json_object_size(a) != json_object_size(b)) return false;
    json_object_foreach((json_t *)a, key, item) if (!same_values(item, json_object_get(b, key))) return false;
    return true;
  }
  return json_equal(a, b);
}

/* Fields that differ between two runs of one model on one request. */
static bool volatile_key(const char *key) {
  static const char *const KEYS[] = {"id", "created", "model", "system_fingerprint", "usage"};
  for (size_t k = 0; k < FL_ARRAY_LEN(KEYS); k++)
    if (strcmp(key, KEYS[k]) == 0) return true;
  return false;
}

/* Objects equal but for their top-level volatile fields; other values by same_values. */
static bool same_json(const json_t *a, const json_t *b) {
  if (!json_is_object(a) || !json_is_object(b)) return same_values(a, b);
  size_t kept_a = 0, kept_b = 0;
  const char *key;
  json_t *item;
  json_object_foreach((json_t *)a, key, item) {
    if (volatile_key(key)) continue;
    kept_a++;
    if (!same_values(item, json_object_get(b, key))) return false;
  }
  json_object_foreach((json_t *)b, key, item) kept_b += !volatile_key(key);
  return kept_a == kept_b;
}

static bool exact_of(const side_t *p, const side_t *s, fl_qkind_t kind) {
  if (p->in->cut || s->in->cut || p->answer != s->answer) return false;
  if (p->answer && is_llm(kind))
    return p->text.len == s->text.len && memcmp(p->text.data, s->text.data, p->text.len) == 0;
  if (p->answer) return same_values(p->content, s->content);
  if (p->json || s->json) return p->json && s->json && same_json(p->json, s->json);
  return p->in->len == s->in->len && (p->in->len == 0 || memcmp(p->in->body, s->in->body, p->in->len) == 0);
}

/* ---- predictions ---- */

typedef enum { CLASS_NONE, CLASS_LABEL, CLASS_INDEX } class_kind_t;
typedef struct {
  class_kind_t kind;
  const char *label;
  size_t len;
  long long index;
} class_t;

/* A side's predictions: every number (or other leaf) in order, and each row's class. */
typedef struct {
  const json_t **leaf;
  size_t n_leaves, leaf_cap;
  class_t *row;
  size_t n_rows, row_cap;
  bool failed;                 /* out of memory */
} table_t;

static void push_leaf(table_t *t, const json_t *v) {
  if (t->n_leaves == t->leaf_cap) {
    size_t cap = t->leaf_cap ? 2 * t->leaf_cap : 64;
    const json_t **grown = realloc(t->leaf, cap * sizeof *grown);
    if (!grown) {
      t->failed = true;
      return;
    }
    t->leaf = grown, t->leaf_cap = cap;
  }
  t->leaf[t->n_leaves++] = v;
}

static void push_row(table_t *t, class_t c) {
  if (t->n_rows == t->row_cap) {
    size_t cap = t->row_cap ? 2 * t->row_cap : 16;
    class_t *grown = realloc(t->row, cap * sizeof *grown);
    if (!grown) {
      t->failed = true;
      return;
    }
    t->row = grown, t->row_cap = cap;
  }
  t->row[t->n_rows++] = c;
}

static void push_leaves(table_t *t, const json_t *v) {
  size_t i;
  const char *key;
  json_t *item;
  if (json_is_array(v)) json_array_foreach(v, i, item) push_leaves(t, item);
  else if (json_is_object(v)) json_object_foreach((json_t *)v, key, item) push_leaves(t, item);
  else push_leaf(t, v);
}

/* A class given as such: a label, an integer, or an object's class, label or predicted_class. */
static class_t named_class(const json_t *v) {
  static const char *const KEYS[] = {"class", "label", "predicted_class"};
  if (json_is_string(v) && !fl_quality_special(v))
    return (class_t){CLASS_LABEL, json_string_value(v), json_string_length(v), 0};
  if (json_is_integer(v)) return (class_t){CLASS_INDEX, NULL, 0, (long long)json_integer_value(v)};
  for (size_t k = 0; json_is_object(v) && k < FL_ARRAY_LEN(KEYS); k++) {
    const json_t *c = json_object_get(v, KEYS[k]);
    if (json_is_string(c) || json_is_integer(c)) return named_class(c);
  }
  return (class_t){CLASS_NONE, NULL, 0, 0};
}

/* The index of the largest finite number of the leaves [from, to): scores or probabilities of
 * two or more classes; none when the row holds anything but numbers. */
static class_t argmax(const table_t *t, size_t from, size_t to) {
  class_t c = {CLASS_NONE, NULL, 0, 0};
  double top = -INFINITY;
  if (to - from < 2) return c;
  for (size_t i = from; i < to; i++) {
    const json_t *v = t->leaf[i];
    if (!json_is_number(v) && !json_is_null(v) && !fl_quality_special(v)) return (class_t){CLASS_NONE, NULL, 0, 0};
    if (json_is_number(v) && isfinite(json_number_value(v)) && json_number_value(v) > top)
      top = json_number_value(v), c = (class_t){CLASS_INDEX, NULL, 0, (long long)(i - from)};
  }
  return c;
}

static void table_v1(table_t *t, const json_t *predictions) {
  size_t i;
  const json_t *row;
  json_array_foreach(predictions, i, row) {
    size_t from = t->n_leaves;
    push_leaves(t, row);
    class_t c = named_class(row);
    push_row(t, c.kind != CLASS_NONE ? c : argmax(t, from, t->n_leaves));
  }
}

/* v2 tensors {shape [N, F...], datatype, data}: N rows of F values, the tensors one after the
 * other; BYTES tensors and integer ones of one value a row hold classes, others scores. */
static void table_v2(table_t *t, const json_t *outputs) {
  size_t i, k;
  const json_t *tensor, *dim;
  json_array_foreach(outputs, i, tensor) {
    size_t width = 1, from = t->n_leaves;
    json_array_foreach(json_object_get(tensor, "shape"), k, dim) {
      size_t d = (size_t)FL_MAX(json_integer_value(dim), 1);
      if (k > 0) width = width > SIZE_MAX / d ? SIZE_MAX : width * d;
    }
    const char *type = json_string_value(json_object_get(tensor, "datatype"));
    bool integers = type && (strncmp(type, "INT", 3) == 0 || strncmp(type, "UINT", 4) == 0);
    bool labels = type && (strcmp(type, "BYTES") == 0 || (integers && width == 1));
    push_leaves(t, json_object_get(tensor, "data"));
    for (size_t r = from, end = t->n_leaves; r < end && !t->failed; r += FL_MIN(width, end - r))
      push_row(t, labels ? named_class(t->leaf[r]) : argmax(t, r, r + FL_MIN(width, end - r)));
  }
}

static bool same_class(class_t a, class_t b) {
  if (a.kind != b.kind || a.kind == CLASS_NONE) return false;
  return a.kind == CLASS_INDEX ? a.index == b.index : a.len == b.len && memcmp(a.label, b.label, a.len) == 0;
}

/* Rows where either side has a class; one without a partner disagrees. */
static double class_share(const table_t *a, const table_t *b) {
  static const class_t NONE = {CLASS_NONE, NULL, 0, 0};
  size_t counted = 0, agreeing = 0;
  for (size_t r = 0; r < FL_MAX(a->n_rows, b->n_rows); r++) {
    class_t x = r < a->n_rows ? a->row[r] : NONE, y = r < b->n_rows ? b->row[r] : NONE;
    if (x.kind == CLASS_NONE && y.kind == CLASS_NONE) continue;
    counted++;
    agreeing += same_class(x, y);
  }
  return counted ? (double)agreeing / (double)counted : NAN;
}

static double mean_abs_diff(const table_t *a, const table_t *b) {
  double sum = 0;
  size_t n = 0;
  for (size_t i = 0; i < FL_MIN(a->n_leaves, b->n_leaves); i++) {
    double x = json_number_value(a->leaf[i]), y = json_number_value(b->leaf[i]);
    if (!json_is_number(a->leaf[i]) || !json_is_number(b->leaf[i]) || !isfinite(x - y)) continue;
    sum += fabs(x - y);
    n++;
  }
  return n ? sum / (double)n : NAN;
}

static void compare_predictions(const side_t *p, const side_t *s, fl_qkind_t kind, fl_shadow_cmp_t *out) {
  table_t a = {0}, b = {0};
  void (*fill)(table_t *, const json_t *) = kind == FL_QK_KSERVE_V1 ? table_v1 : table_v2;
  fill(&a, p->content);
  fill(&b, s->content);
  if (!a.failed && !b.failed) {
    out->class_agreement = class_share(&a, &b);
    out->mean_abs_diff = mean_abs_diff(&a, &b);
  }
  free(a.leaf), free(a.row), free(b.leaf), free(b.row);
}

/* ---- embeddings ---- */

/* An embedding as doubles: a list of numbers (others NaN) or base64 little-endian float32s
 * (OpenAI's encoding_format base64). Malloc'd; NULL when it is neither, or on ENOMEM. */
static double *vector_of(const json_t *v, size_t *dim) {
  if (json_is_array(v)) {
    double *out = malloc((json_array_size(v) ? json_array_size(v) : 1) * sizeof *out);
    for (size_t i = 0; out && i < json_array_size(v); i++) {
      const json_t *x = json_array_get(v, i);
      out[i] = json_is_number(x) ? json_number_value(x) : NAN;
    }
    *dim = json_array_size(v);
    return out;
  }
  if (!json_is_string(v)) return NULL;
  size_t cap = json_string_length(v) / 4 * 3;
  uint8_t *bytes = malloc(cap ? cap : 1);
  long got = bytes ? fl_b64_decode(FL_B64_STD, json_string_value(v), json_string_length(v), bytes, cap) : -1;
  double *out = got >= 0 && got % 4 == 0 ? malloc((got ? (size_t)got / 4 : 1) * sizeof *out) : NULL;
  for (long k = 0; out && k < got; k += 4) {
    uint32_t bits = (uint32_t)bytes[k] | (uint32_t)bytes[k + 1] << 8 | (uint32_t)bytes[k + 2] << 16 |
                    (uint32_t)bytes[k + 3] << 24;
    float f;
    memcpy(&f, &bits, sizeof f);
    out[k / 4] = f;
  }
  free(bytes);
  *dim = out ? (size_t)got / 4 : 0;
  return out;
}

/* 0 for vectors that cannot be compared (another dimension, a NaN); 1 for two zero vectors. */
static double cosine_of(const double *a, size_t da, const double *b, size_t db) {
  double dot = 0, na = 0, nb = 0;
  if (!a || !b || da != db) return 0;
  for (size_t i = 0; i < da; i++) dot += a[i] * b[i], na += a[i] * a[i], nb += b[i] * b[i];
  if (!isfinite(dot) || !isfinite(na) || !isfinite(nb)) return 0;
  if (na == 0 || nb == 0) return na == nb ? 1 : 0;
  return FL_MAX(-1.0, FL_MIN(1.0, dot / sqrt(na * nb)));
}

static void compare_embeddings(const side_t *p, const side_t *s, fl_shadow_cmp_t *out) {
  size_t np = json_array_size(p->content), ns = json_array_size(s->content);
  size_t n = FL_MAX(np, ns), both = FL_MIN(np, ns);
  double sum = 0;
  for (size_t i = 0; i < both; i++) {
    size_t da = 0, db = 0;
    double *a = vector_of(json_object_get(json_array_get(p->content, i), "embedding"), &da);
    double *b = vector_of(json_object_get(json_array_get(s->content, i), "embedding"), &db);
    sum += cosine_of(a, da, b, db);
    free(a);
    free(b);
  }
  out->cosine = n ? sum / (double)n : NAN;         /* vectors without a partner add 0 */
}

/* ---- one pair ---- */

static void measure(const side_t *p, const side_t *s, fl_shadow_cmp_t *out) {
  if (is_llm(out->kind)) {
    out->text_similarity = fl_shadow_text_similarity(p->text.data, p->text.len, s->text.data, s->text.len);
    size_t primary_chars = utf8_chars(p->text.data, p->text.len);
    out->length_ratio = primary_chars ? (double)utf8_chars(s->text.data, s->text.len) / (double)primary_chars : NAN;
  } else if (out->kind == FL_QK_EMBEDDINGS) {
    compare_embeddings(p, s, out);
  } else {
    compare_predictions(p, s, out->kind, out);
  }
}

static bool verdict(const fl_shadow_cmp_t *c) {
  return c->status_agree && (c->exact || c->text_similarity >= FL_SHADOW_TEXT_AGREE ||
                             c->class_agreement >= FL_SHADOW_CLASS_AGREE || c->cosine >= FL_SHADOW_COSINE_AGREE);
}

/* The request tells the kind; else the primary's answer, else the shadow's. */
static fl_qkind_t pair_kind(const char *req, size_t req_len, const side_t *p, const side_t *s) {
  json_t *jreq = req_len ? fl_quality_parse(req, req_len) : NULL;
  bool stream = (p->in->stream && is_2xx(p->in->status)) || (s->in->stream && is_2xx(s->in->status));
  fl_qkind_t kind = fl_quality_kind(jreq, is_2xx(p->in->status) ? p->json : NULL, stream);
  if (kind == FL_QK_UNKNOWN) kind = fl_quality_kind(jreq, is_2xx(s->in->status) ? s->json : NULL, stream);
  json_decref(jreq);
  return kind;
}

static void compare(const char *req, size_t req_len, const fl_shadow_side_t *primary, const fl_shadow_side_t *shadow,
                    fl_shadow_cmp_t *out, bool keep) {
  memset(out, 0, sizeof *out);
  out->text_similarity = out->length_ratio = out->class_agreement = out->mean_abs_diff = out->cosine = NAN;
  out->status_agree = (is_2xx(primary->status) && is_2xx(shadow->status)) || primary->status == shadow->status;
  side_t p, s;
  side_open(&p, primary);
  side_open(&s, shadow);
  out->kind = pair_kind(req, req_len, &p, &s);
  side_read(&p, out->kind);
  side_read(&s, out->kind);
  out->exact = exact_of(&p, &s, out->kind);
  if (p.answer && s.answer) measure(&p, &s, out);
  out->agree = verdict(out);
  if (keep) {
    out->texts_kept = true;
    if (p.answer && is_llm(out->kind)) {                         /* the buffers move into out */
      out->primary_text = p.text.data, out->primary_text_len = p.text.len;
      p.text = (fl_buf_t){0};
    }
    if (s.answer && is_llm(out->kind)) {
      out->shadow_text = s.text.data, out->shadow_text_len = s.text.len;
      s.text = (fl_buf_t){0};
    }
  }
  side_close(&p);
  side_close(&s);
}

void fl_shadow_compare(const char *req, size_t req_len, const fl_shadow_side_t *primary, const fl_shadow_side_t *shadow,
                       fl_shadow_cmp_t *out) {
  compare(req, req_len, primary, shadow, out, false);
}

void fl_shadow_compare_keep(const char *req, size_t req_len, const fl_shadow_side_t *primary,
                            const fl_shadow_side_t *shadow, fl_shadow_cmp_t *out) {
  compare(req, req_len, primary, shadow, out, true);
}

void fl_shadow_cmp_clear(fl_shadow_cmp_t *c) {
  free(c->primary_text);
  free(c->shadow_text);
  c->primary_text = c->shadow_text = NULL;
  c->primary_text_len = c->shadow_text_len = 0;
  c->texts_kept = false;
}

/* ---- aggregate ---- */

static bool is_error(int status) { return status == 0 || status >= 500; }

static void add_to_mean(double *sum, uint64_t *n, double v) {
  if (!isfinite(v)) return;
  *sum += v;
  (*n)++;
}

void fl_shadow_agg_add(fl_shadow_agg_t *a, const fl_shadow_cmp_t *c, int primary_status, int shadow_status,
                       double primary_ms, double shadow_ms, double primary_ttft_ms, double shadow_ttft_ms) {
  a->pairs++;
  a->status_agree += c->status_agree;
  a->exact += c->exact;
  a->agree += c->agree;
  a->primary_errors += is_error(primary_status);
  a->shadow_errors += is_error(shadow_status);
  add_to_mean(&a->sum_similarity, &a->n_text, c->text_similarity);
  add_to_mean(&a->sum_length_ratio, &a->n_length_ratio, c->length_ratio);
  add_to_mean(&a->sum_class_agreement, &a->n_class, c->class_agreement);
  add_to_mean(&a->sum_mad, &a->n_mad, c->mean_abs_diff);
  add_to_mean(&a->sum_cosine, &a->n_embed, c->cosine);
  add_to_mean(&a->sum_latency_diff_ms, &a->n_latency, shadow_ms - primary_ms);     /* NaN when either is */
  add_to_mean(&a->sum_ttft_diff_ms, &a->n_ttft, shadow_ttft_ms - primary_ttft_ms);
}

static json_t *mean_or_null(double sum, uint64_t n) { return fl_json_num(n ? sum / (double)n : NAN); }

json_t *fl_shadow_agg_json(const fl_shadow_agg_t *a) {
  uint64_t p = a->pairs;
  return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                   "pairs", (json_int_t)p, "agreement", mean_or_null((double)a->agree, p),
                   "status_agreement", mean_or_null((double)a->status_agree, p),
                   "exact_match_rate", mean_or_null((double)a->exact, p),
                   "text_similarity", mean_or_null(a->sum_similarity, a->n_text),
                   "length_ratio", mean_or_null(a->sum_length_ratio, a->n_length_ratio),
                   "class_agreement", mean_or_null(a->sum_class_agreement, a->n_class),
                   "mean_abs_diff", mean_or_null(a->sum_mad, a->n_mad),
                   "cosine", mean_or_null(a->sum_cosine, a->n_embed),
                   "latency_diff_ms", mean_or_null(a->sum_latency_diff_ms, a->n_latency),
                   "ttft_diff_ms", mean_or_null(a->sum_ttft_diff_ms, a->n_ttft),
                   "primary_error_rate", mean_or_null((double)a->primary_errors, p),
                   "shadow_error_rate", mean_or_null((double)a->shadow_errors, p));
}

/* ---- disagreements ---- */

/* What a person reads of a request: the last user message, the completion prompt, else the
 * start of its body. */
static char *prompt_of(fl_qkind_t kind, const char *req, size_t req_len) {
  json_t *j = is_llm(kind) && req_len ? fl_quality_parse(req, req_len) : NULL;
  fl_buf_t text = {0};
  const json_t *message, *last_user = NULL;
  size_t i;
  json_array_foreach(json_object_get(j, "messages"), i, message) {
    const char *role = json_string_value(json_object_get(message, "role"));
    if (role && strcmp(role, "user") == 0) last_user = message;
  }
  append_content(&text, last_user ? json_object_get(last_user, "content") : json_object_get(j, "prompt"));
  bool truncated;
  char *out = text.len && !text.err ? utf8_prefix(text.data, text.len, FL_SHADOW_DIFF_TEXT, &truncated)
                                    : utf8_prefix(req, req_len, FL_SHADOW_PROMPT_BODY, &truncated);
  fl_buf_free(&text);
  json_decref(j);
  return out;
}

/* An answer as a person reads it: an LLM answer's text (kept by the comparison, or read again),
 * any other answer's body. */
static char *answer_text(const fl_shadow_cmp_t *c, const char *kept, size_t kept_len, const fl_shadow_side_t *in,
                         bool *truncated) {
  if (c->texts_kept && kept) return utf8_prefix(kept, kept_len, FL_SHADOW_DIFF_TEXT, truncated);
  if (!c->texts_kept && is_llm(c->kind)) {
    side_t s;
    side_open(&s, in);
    side_read(&s, c->kind);
    bool answered = s.answer;
    char *text = answered ? utf8_prefix(s.text.data, s.text.len, FL_SHADOW_DIFF_TEXT, truncated) : NULL;
    side_close(&s);
    if (answered) return text;
  }
  char *body = utf8_prefix(in->body, in->len, FL_SHADOW_DIFF_TEXT, truncated);
  *truncated |= in->cut;
  return body;
}

static void diff_free(fl_shadow_diff_t *r) {
  free(r->request_id);
  free(r->prompt);
  free(r->primary_text);
  free(r->shadow_text);
  memset(r, 0, sizeof *r);
}

void fl_shadow_diffs_add(fl_shadow_diffs_t *d, uint64_t wall_ms, const char *request_id, const char *req,
                         size_t req_len, const fl_shadow_side_t *primary, const fl_shadow_side_t *shadow,
                         const fl_shadow_cmp_t *c) {
  if (c->agree) return;
  fl_shadow_diff_t *r = &d->ring[d->next];
  diff_free(r);
  r->wall_ms = wall_ms;
  r->primary_status = primary->status;
  r->shadow_status = shadow->status;
  r->cmp = *c;
  r->cmp.texts_kept = false;
  r->cmp.primary_text = r->cmp.shadow_text = NULL;
  r->cmp.primary_text_len = r->cmp.shadow_text_len = 0;
  bool truncated;
  if (request_id) r->request_id = utf8_prefix(request_id, strlen(request_id), FL_SHADOW_PROMPT_BODY, &truncated);
  r->prompt = prompt_of(c->kind, req, req_len);
  r->primary_text = answer_text(c, c->primary_text, c->primary_text_len, primary, &r->primary_truncated);
  r->shadow_text = answer_text(c, c->shadow_text, c->shadow_text_len, shadow, &r->shadow_truncated);
  d->next = (d->next + 1) % FL_SHADOW_DIFFS;
  d->count = FL_MIN(d->count + 1, (size_t)FL_SHADOW_DIFFS);
}

static json_t *diff_json(const fl_shadow_diff_t *r) {
  const fl_shadow_cmp_t *c = &r->cmp;
  return json_pack("{s:I, s:s?, s:s, s:i, s:i, s:b, s:b, s:o, s:o, s:o, s:o, s:o, s:s?, s:s?, s:s?, s:b, s:b}",
                   "time_ms", (json_int_t)r->wall_ms, "request_id", r->request_id, "kind", fl_qkind_name(c->kind),
                   "primary_status", r->primary_status, "shadow_status", r->shadow_status,
                   "status_agree", c->status_agree, "exact", c->exact,
                   "text_similarity", fl_json_num(c->text_similarity),
                   "length_ratio", fl_json_num(c->length_ratio), "class_agreement", fl_json_num(c->class_agreement),
                   "mean_abs_diff", fl_json_num(c->mean_abs_diff), "cosine", fl_json_num(c->cosine),
                   "prompt", r->prompt, "primary", r->primary_text, "shadow", r->shadow_text,
                   "primary_truncated", r->primary_truncated, "shadow_truncated", r->shadow_truncated);
}

json_t *fl_shadow_diffs_json(const fl_shadow_diffs_t *d) {
  json_t *list = json_array();
  for (size_t i = 0; list && i < d->count; i++) {
    const fl_shadow_diff_t *r = &d->ring[(d->next + FL_SHADOW_DIFFS - 1 - i) % FL_SHADOW_DIFFS];
    if (json_array_append_new(list, diff_json(r)) != 0) {
      json_decref(list);
      return NULL;
    }
  }
  return list;
}

void fl_shadow_diffs_free(fl_shadow_diffs_t *d) {
  for (size_t i = 0; i < FL_SHADOW_DIFFS; i++) diff_free(&d->ring[i]);
  d->next = d->count = 0;
}
