/* quality.h — what one sampled request and its answer say about the data: prompt and answer
 * sizes, empty, cut-off, refused or invalid-JSON answers, NaN/Inf/null counts and per-feature
 * values of numeric models, predicted classes. Parses with jansson, so it runs on the monitor
 * thread only (monitor.h), never on a worker. Pure apart from the sink it reports values to. */
#ifndef FL_QUALITY_H
#define FL_QUALITY_H

#include "llm.h"

#include <float.h>
#include <math.h>
#include <regex.h>

struct json_t;                    /* jansson's: this header can name it without including jansson.h */

#define FL_Q_FEATURES 16          /* numeric input and output features kept per model (by position) */

/* The distributions a sample adds values to. Inputs are compared with a baseline, outputs
 * between canary and stable. FINISH and CLASS are categories: the value is the category's id. */
typedef enum {
  FL_F_PROMPT_CHARS, FL_F_PROMPT_MESSAGES,              /* inputs of LLM and embedding requests */
  FL_F_OUTPUT_TOKENS, FL_F_OUTPUT_CHARS,                /* LLM answers */
  FL_F_EMBEDDING_NORM,                                  /* per embedding vector */
  FL_F_FINISH,                                          /* category: fl_finish_t */
  FL_F_CLASS,                                           /* category: a predicted class (see sink) */
  FL_F_INPUT,                                           /* FL_F_INPUT + i: numeric input feature i */
  FL_F_OUTPUT = FL_F_INPUT + FL_Q_FEATURES,             /* FL_F_OUTPUT + i: numeric output i */
  FL_F_COUNT = FL_F_OUTPUT + FL_Q_FEATURES
} fl_feature_t;

/* "prompt_chars", ..., "input_3", "output_0"; buf holds the numbered ones. */
const char *fl_feature_name(unsigned feature, char *buf, size_t cap);

/* A value distributions keep: finite and within float range (samples are kept as floats; a
 * larger one would turn into infinity). Others count as missing, like NaN. */
static inline bool fl_float_range(double v) { return isfinite(v) && fabs(v) <= FLT_MAX; }
bool fl_feature_is_input(unsigned feature);
bool fl_feature_is_category(unsigned feature);
int fl_feature_parse(const char *name);                 /* the feature's id, or -1 */

typedef enum {
  FL_QK_UNKNOWN, FL_QK_CHAT, FL_QK_COMPLETION, FL_QK_EMBEDDINGS, FL_QK_KSERVE_V1, FL_QK_KSERVE_V2,
  FL_QK_COUNT
} fl_qkind_t;
const char *fl_qkind_name(fl_qkind_t k);

/* What one exchange showed. Counts are of this sample alone. */
typedef struct fl_qobs {
  fl_qkind_t kind;
  bool unparsed;               /* the answer (or request) was not JSON, or cut by the capture limit */
  bool malformed_request;      /* the backend answered 400 */
  /* LLM answers */
  bool answer;                 /* an LLM answer was read (status 2xx) */
  bool empty;                  /* no text and no tool call */
  bool json_asked;             /* the request asked for response_format json_object/json_schema */
  bool json_invalid;           /* ... and the answer's text is not valid JSON */
  bool refusal;                /* the text matched a refusal pattern */
  fl_finish_t finish;
  /* numbers of numeric answers (predictions, outputs, embeddings) and of their requests */
  uint64_t values, nan, inf, nulls;
  uint64_t input_values, input_missing;   /* NaN, ±Inf or null among the inputs */
  bool shape_mismatch;         /* answers ≠ inputs in number, ragged rows, or data ≠ shape */
} fl_qobs_t;

/* Where values go: value(ctx, feature, v) for every finite value of a distribution (missing
 * values are counted in fl_qobs_t, never reported here); label(ctx, text, len) for a predicted
 * class, which the caller turns into a category id and reports as a FL_F_CLASS value itself. */
typedef struct fl_qsink {
  void (*value)(void *ctx, unsigned feature, double v);
  void (*label)(void *ctx, const char *text, size_t len);
  void *ctx;
} fl_qsink_t;

/* Refusal patterns: POSIX extended regexes matched case-insensitively against answer text. */
typedef struct fl_quality_conf {
  regex_t *refusals;
  size_t n_refusals;
} fl_quality_conf_t;

/* Compiles patterns (NULL, 0: the built-in English list). On a bad pattern returns FL_EINVAL
 * with the pattern and regerror's text in err. Free with fl_quality_conf_free. */
int fl_quality_conf_init(fl_quality_conf_t *qc, char *const *patterns, size_t n, char *err, size_t err_cap);
void fl_quality_conf_free(fl_quality_conf_t *qc);

/* One captured exchange: the request and answer bodies (de-chunked prefixes, *_cut when the body
 * was longer), whether the answer is text/event-stream, and its status. */
typedef struct fl_qsample {
  const char *req; size_t req_len; bool req_cut;
  const char *resp; size_t resp_len; bool resp_cut;
  bool stream;
  int status;
} fl_qsample_t;

/* The kind of API an exchange is, from its parsed request and answer (either may be NULL), as
 * fl_quality_observe decides it: the request's fields first, then the answer's. stream: the
 * answer is an event stream, which with nothing else to go by is taken for chat. */
fl_qkind_t fl_quality_kind(const struct json_t *req, const struct json_t *resp, bool stream);

/* The text node of an LLM answer's choice (borrowed, NULL when there is none): message.content
 * of a chat answer, delta.content of a chat stream's event, text of a completion or its events. */
const struct json_t *fl_quality_choice_text(const struct json_t *choice);

/* Walks an SSE answer: calls on_event(ctx, event) with the parsed JSON (fl_quality_parse;
 * borrowed for the call) of each `data:` line, in order, up to `data: [DONE]`; lines that are not
 * JSON are skipped. cut: the body was longer than len, so a last line without its newline was
 * cut by the capture and is skipped too. Returns whether [DONE] was seen. Monitor thread. */
typedef void (*fl_qevent_fn)(void *ctx, const struct json_t *event);
bool fl_quality_stream_events(const char *body, size_t len, bool cut, fl_qevent_fn on_event, void *ctx);

/* Observes one exchange: fills out and reports values to sink. Monitor thread. */
void fl_quality_observe(const fl_quality_conf_t *qc, const fl_qsample_t *s, const fl_qsink_t *sink, fl_qobs_t *out);

/* Parses JSON that may hold the bare NaN, Infinity and -Infinity that Python servers write:
 * they become strings FL_Q_NAN / FL_Q_INF / FL_Q_NINF (fl_quality_special() tells them apart).
 * Returns a new reference or NULL. */
struct json_t *fl_quality_parse(const char *text, size_t len);

#define FL_Q_NAN "\x01NaN"
#define FL_Q_INF "\x01Inf"
#define FL_Q_NINF "\x01-Inf"
/* 0: not a special; else 'n' (NaN), 'i' (+Inf) or 'j' (−Inf). */
char fl_quality_special(const struct json_t *v);

#endif
