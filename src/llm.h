/* llm.h — watches an OpenAI-style response body as it streams through, without copying it:
 * time to first token, inter-token gaps, token usage, finish_reason, streams cut before [DONE].
 * One observer per exchange, fed by the worker thread that owns it; no allocation. */
#ifndef FL_LLM_H
#define FL_LLM_H

#include "common.h"

typedef enum {
  FL_FINISH_NONE, FL_FINISH_STOP, FL_FINISH_LENGTH, FL_FINISH_CONTENT_FILTER, FL_FINISH_TOOL_CALLS,
  FL_FINISH_OTHER, FL_FINISH_COUNT
} fl_finish_t;

typedef struct fl_llm {
  /* ---- results, read by the caller after each feed and at the end ---- */
  bool is_stream;               /* the body is text/event-stream */
  bool done_seen;               /* `data: [DONE]` arrived */
  uint32_t token_events;        /* SSE events carrying non-empty content/text/tool call deltas */
  uint64_t first_token_ns;      /* when the first such event completed (0: none yet) */
  uint64_t last_token_ns;
  int64_t prompt_tokens;        /* from "usage"; -1 when the body had none */
  int64_t completion_tokens;    /* from "usage"; -1 when the body had none */
  fl_finish_t finish;           /* the last non-null finish_reason seen */
  /* ---- scanner state (private) ---- */
  uint8_t state;                /* S_* in llm.c */
  uint8_t key_id;               /* the watched key whose value comes next (K_* in llm.c) */
  bool escape;                  /* the previous string byte was a backslash */
  bool event_has_token;
  uint8_t nl_run;               /* consecutive newlines outside strings (SSE event boundary) */
  uint8_t done_match;           /* progress through "[DONE]" */
  uint8_t str_len;              /* bytes captured in str */
  uint8_t num_len;              /* digits of the number being read */
  uint32_t str_total;           /* full length of the current string (saturates) */
  int64_t num;                  /* the number being read */
  char str[24];                 /* first bytes of the current string */
} fl_llm_t;

/* is_stream: the response's Content-Type is text/event-stream. */
void fl_llm_init(fl_llm_t *o, bool is_stream);
/* The answer's completion tokens: its usage, else (a stream) the events with content; -1: unknown. */
int64_t fl_llm_completion_tokens(const fl_llm_t *o);

/* Feeds the next piece of the (de-chunked) body; now_ns stamps token events completed in it.
 * Calls on_token(ctx, gap_ns) for every token event after the first (gap since the previous). */
typedef void (*fl_llm_token_fn)(void *ctx, uint64_t gap_ns);
void fl_llm_feed(fl_llm_t *o, const char *data, size_t len, uint64_t now_ns, fl_llm_token_fn on_token, void *ctx);

const char *fl_finish_name(fl_finish_t f);   /* "stop", "length", ... "none" */

/* A finish_reason's text as one of the kinds, for every reader of answers (aliases servers use:
 * "eos" is stop, "function_call" is tool_calls; anything else is other). */
fl_finish_t fl_finish_parse(const char *s, size_t len);

#endif
