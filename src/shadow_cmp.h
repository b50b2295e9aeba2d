/* shadow_cmp.h — compares a live (primary) answer with its shadow's answer to the same request:
 * the pair's verdict and measures, a route's running aggregate of them, and a ring of the last
 * disagreeing pairs for people to read. Parses with jansson: monitor thread only. */
#ifndef FL_SHADOW_CMP_H
#define FL_SHADOW_CMP_H

#include "quality.h"

#include <jansson.h>

/* When a pair that is not byte-for-byte the same still agrees. The verdict is meant for traffic
 * that one model answers the same way twice (temperature 0, a classifier): a new version that
 * answers like the old one passes, one that answers differently does not. */
#define FL_SHADOW_TEXT_AGREE 0.8      /* Jaccard of word sets: kernels and batching flip a word or
                                         two of a long answer; a changed answer shares far fewer */
#define FL_SHADOW_CLASS_AGREE 1.0     /* every row's class: a classifier is judged by its classes,
                                         and one flipped row is a changed prediction */
#define FL_SHADOW_COSINE_AGREE 0.99   /* float noise moves cosine in the 4th digit; another model
                                         or a changed preprocessing moves it below 0.99 */

#define FL_SHADOW_MAX_TOKENS 4096     /* words read per side: bounds the work of one comparison */

/* One side of a pair: status (0: no answer), the de-chunked body prefix (cut when the body was
 * longer than the capture), whether it was an event stream. Borrowed; body may be NULL when len
 * is 0. */
typedef struct fl_shadow_side {
  int status;
  const char *body;
  size_t len;
  bool cut;
  bool stream;
} fl_shadow_side_t;

/* What one pair showed; the measures are NaN where they do not apply (another kind, a side that
 * is not an answer of the kind: non-2xx, cut or unparsed). A cut side's text or numbers would be
 * a part of them, so a pair with one is never exact, has no measures, and disagrees: the capture
 * must hold a route's whole answers for its pairs to count. */
typedef struct fl_shadow_cmp {
  bool status_agree;           /* same status class: both 2xx, or the same status otherwise */
  bool exact;                  /* the same meaningful content (see fl_shadow_compare); never when cut */
  fl_qkind_t kind;
  double text_similarity;      /* Jaccard of the sets of lower-cased words of the two texts */
  double length_ratio;         /* shadow text chars / primary text chars; NaN if the primary's is empty */
  double class_agreement;      /* predictions: share of rows whose predicted class agrees */
  double mean_abs_diff;        /* predictions: mean |a-b| over the numbers paired by position */
  double cosine;               /* embeddings: mean cosine similarity of the vectors paired by position */
  bool agree;                  /* the verdict: status_agree && (exact || a measure past its threshold) */
  /* The two answers' texts as compared (LLM kinds; NULL for others and for a side that is not an
   * answer), NUL-terminated, only after fl_shadow_compare_keep: owned, freed by fl_shadow_cmp_clear. */
  bool texts_kept;
  char *primary_text, *shadow_text;
  size_t primary_text_len, shadow_text_len;
} fl_shadow_cmp_t;

/* Compares one pair; req is the request both sides answered (NULL, 0: unknown). The kind comes
 * from the request and then the answers (fl_quality_kind). exact compares what an answer means,
 * not its volatile fields: an LLM answer's text (the first choice's, reassembled from its events
 * when streamed) and tool calls (name and arguments); predictions, outputs and embeddings by
 * value (1 equals 1.0); other JSON whole but for top-level id, created, model,
 * system_fingerprint and usage; bodies that are not JSON byte for byte. Rows and vectors are
 * paired by position; one without a partner disagrees (class) or counts as cosine 0. out owns
 * nothing. Monitor thread. */
void fl_shadow_compare(const char *req, size_t req_len, const fl_shadow_side_t *primary,
                       const fl_shadow_side_t *shadow, fl_shadow_cmp_t *out);

/* The same, and out keeps the two texts for fl_shadow_diffs_add, which then need not parse the
 * answers again. Free them with fl_shadow_cmp_clear. */
void fl_shadow_compare_keep(const char *req, size_t req_len, const fl_shadow_side_t *primary,
                            const fl_shadow_side_t *shadow, fl_shadow_cmp_t *out);
void fl_shadow_cmp_clear(fl_shadow_cmp_t *c);

/* Jaccard similarity of the word sets of a and b: words are runs of ASCII letters and digits
 * and bytes >= 0x80 (so any UTF-8 script is words), ASCII lower-cased; the first
 * FL_SHADOW_MAX_TOKENS words of each side count. Two texts without words: 1. Any thread. */
double fl_shadow_text_similarity(const char *a, size_t a_len, const char *b, size_t b_len);

/* A route's comparisons so far. Zeroed is empty. Owned by the monitor thread. */
typedef struct fl_shadow_agg {
  uint64_t pairs, status_agree, exact, agree;
  uint64_t primary_errors, shadow_errors;      /* 5xx or status 0 (no answer) */
  uint64_t n_text, n_class, n_embed;
  double sum_similarity, sum_length_ratio, sum_class_agreement, sum_mad, sum_cosine;
  double sum_latency_diff_ms, sum_ttft_diff_ms;
  uint64_t n_ttft;
  /* each mean's own count where its measure can be missing while its group's is there: an empty
   * primary text, predictions of labels only, a latency not measured */
  uint64_t n_length_ratio, n_mad, n_latency;
} fl_shadow_agg_t;

/* Adds one pair: its comparison, both statuses, both latencies and times to first token (NaN
 * when not measured or not streamed; a pair adds a difference only when both sides have one). */
void fl_shadow_agg_add(fl_shadow_agg_t *a, const fl_shadow_cmp_t *c, int primary_status, int shadow_status,
                       double primary_ms, double shadow_ms, double primary_ttft_ms, double shadow_ttft_ms);

/* {"pairs", "agreement", "status_agreement", "exact_match_rate", "text_similarity",
 * "length_ratio", "class_agreement", "mean_abs_diff", "cosine", "latency_diff_ms" (mean
 * shadow - primary), "ttft_diff_ms", "primary_error_rate", "shadow_error_rate"}: rates over
 * pairs, means over the pairs that had the measure; null where there were none. New reference
 * (NULL on ENOMEM). */
json_t *fl_shadow_agg_json(const fl_shadow_agg_t *a);

#define FL_SHADOW_DIFFS 32            /* disagreeing pairs kept per route */
#define FL_SHADOW_DIFF_TEXT 2048      /* bytes kept of each answer's text and of the prompt */
#define FL_SHADOW_PROMPT_BODY 512     /* bytes of a request body shown when it has no prompt */

/* One disagreeing pair as people read it. Strings are owned, valid UTF-8 (an invalid byte
 * becomes U+FFFD), cut at a character boundary; NULL when absent or out of memory. */
typedef struct fl_shadow_diff {
  uint64_t wall_ms;
  char *request_id;
  int primary_status, shadow_status;
  fl_shadow_cmp_t cmp;                 /* the measures; owns no texts */
  char *prompt;                        /* last user message, completion prompt, or the body's start */
  char *primary_text, *shadow_text;    /* LLM answers' texts, other answers' bodies */
  bool primary_truncated, shadow_truncated;
} fl_shadow_diff_t;

/* The last FL_SHADOW_DIFFS disagreeing pairs. Zeroed is empty. Owned by the monitor thread. */
typedef struct fl_shadow_diffs {
  fl_shadow_diff_t ring[FL_SHADOW_DIFFS];
  size_t next, count;
} fl_shadow_diffs_t;

/* Records a pair if c (its comparison) says it disagrees (an agreeing one is ignored), replacing
 * the oldest when full; request_id may be NULL. Copies what it keeps; the texts come from c when
 * it kept them (fl_shadow_compare_keep), else from the bodies, read again. */
void fl_shadow_diffs_add(fl_shadow_diffs_t *d, uint64_t wall_ms, const char *request_id, const char *req,
                         size_t req_len, const fl_shadow_side_t *primary, const fl_shadow_side_t *shadow,
                         const fl_shadow_cmp_t *c);

/* The records newest first: [{"time_ms", "request_id", "kind", "primary_status", "shadow_status",
 * "status_agree", "exact", "text_similarity", "length_ratio", "class_agreement", "mean_abs_diff",
 * "cosine", "prompt", "primary", "shadow", "primary_truncated", "shadow_truncated"}]. New
 * reference (NULL on ENOMEM). */
json_t *fl_shadow_diffs_json(const fl_shadow_diffs_t *d);
void fl_shadow_diffs_free(fl_shadow_diffs_t *d);

#endif
