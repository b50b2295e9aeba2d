/* http.h — the one HTTP/1 layer, shared by the gateway (proxy.c, exchange.c), the admin and mock
 * server (httpd.c) and the blocking client (client.c): the bounded header table that h1.c fills
 * a line at a time, the hop-by-hop set, reason phrases, and buffers to write heads and chunks.
 * Nothing here is shared between threads: one table per connection, reused; any thread may call
 * these functions. */
#ifndef FL_HTTP_H
#define FL_HTTP_H

#include "common.h"

typedef struct fl_hdr {
  uint32_t name_off, name_len, value_off, value_len;   /* into fl_http_head_t.buf */
} fl_hdr_t;

typedef struct fl_http_head {
  char *buf; uint32_t len, cap;     /* URL, names and values, stored back to back */
  uint32_t cap_limit;               /* buf grows up to this; beyond it → 431 */
  fl_hdr_t *hdrs; uint32_t n, max;
  uint32_t max_limit;               /* hdrs grows up to this many; beyond it → 431 */
  uint32_t url_off, url_len;        /* the request target */
  uint32_t n_connection;            /* Connection headers seen: none (the usual case) means no header
                                       is hop-by-hop for being named in one, without a scan */
  const char *refusal;              /* why the last 431 of fl_http_head_* was answered, in words
                                       (static), or NULL; h1.c's error words then */
} fl_http_head_t;

/* Storage starts small and grows on demand up to cap bytes of text and max headers, so an idle
 * keep-alive connection costs little. Returns 0 or FL_ENOMEM. */
int fl_http_head_init(fl_http_head_t *h, uint32_t cap, uint32_t max);
void fl_http_head_free(fl_http_head_t *h);
void fl_http_head_reset(fl_http_head_t *h);

/* The request target, whole (h1.c, once per message). Returns 0, or 431 when it does not fit. */
int fl_http_head_url(fl_http_head_t *h, const char *at, size_t len);

/* A whole field at once (h1.c): the name, already checked to be a token, is stored lower-case;
 * the value, already checked and trimmed, as it is. Returns 0, or 431 when the table's limits
 * are reached (h->refusal says which). */
int fl_http_head_add(fl_http_head_t *h, const char *name, size_t nlen, const char *value, size_t vlen);

/* A worker's spare tables: a connection holds a table only while it reads or uses a head, so an
 * idle or streaming connection costs none, and a busy one costs no allocation per request. */
#define FL_HEAD_SPARES 32
typedef struct fl_head_spares {
  fl_http_head_t spare[FL_HEAD_SPARES];
  unsigned n;
} fl_head_spares_t;

/* A table for h with these limits: h's own when it has one (emptied), a spare one, or a new one.
 * Returns 0 or FL_ENOMEM. */
int fl_http_head_take(fl_head_spares_t *s, fl_http_head_t *h, uint32_t cap, uint32_t max) FL_MUST_CHECK;
/* h's table goes back to the spares (freed when they are full or it grew); h is then empty. */
void fl_http_head_give(fl_head_spares_t *s, fl_http_head_t *h);
/* Frees spares beyond `keep`: after a burst, the tables it left behind would pin the heap pages
 * around them. */
void fl_head_spares_trim(fl_head_spares_t *s, size_t keep);
void fl_head_spares_free(fl_head_spares_t *s);

/* Value of a header by lower-case name of nlen bytes (first occurrence), or NULL. Not
 * NUL-terminated. fl_http_head_get takes a C string (a literal's length folds at compile time). */
const char *fl_http_head_getn(const fl_http_head_t *h, const char *lname, size_t nlen, size_t *len);
static inline const char *fl_http_head_get(const fl_http_head_t *h, const char *lname, size_t *len) {
  return fl_http_head_getn(h, lname, strlen(lname), len);
}

static inline const char *fl_hdr_name(const fl_http_head_t *h, const fl_hdr_t *x) { return h->buf + x->name_off; }
static inline const char *fl_hdr_value(const fl_http_head_t *h, const fl_hdr_t *x) { return h->buf + x->value_off; }

/* True for headers that must not be forwarded: hop-by-hop ones, those the Connection header
 * names, and the ones the proxy sets itself. */
bool fl_http_is_hop(const fl_http_head_t *h, const fl_hdr_t *x);
/* The head's content-type is text/event-stream (an SSE answer). */
bool fl_http_is_event_stream(const fl_http_head_t *h);

/* A growable byte buffer for heads and small bodies. Its error sticks (SQLite's sqlite3_str):
 * after the first failed append every later one does nothing and returns the same error, so a
 * caller builds a whole head and checks `err` once. */
typedef struct fl_buf {
  char *data; size_t len, cap;
  int err;                          /* 0, or the first append's failure (FL_ENOMEM, FL_ELIMIT) */
} fl_buf_t;

/* 0, or the buffer's sticky error. Inline for a short piece that fits (heads are built from
 * dozens of them, literals among them, whose copies the compiler then writes in place). */
#define FL_BUF_INLINE_MAX 4096     /* longer pieces take the call: a copy that size costs more than it */
int fl_buf_append_grow(fl_buf_t *b, const void *data, size_t len);
static inline int fl_buf_append(fl_buf_t *b, const void *data, size_t len) {
  if (b->err || len > FL_BUF_INLINE_MAX || len > b->cap - b->len) return fl_buf_append_grow(b, data, len);
  if (len) memcpy(b->data + b->len, data, len);   /* data may be NULL when len is 0 */
  b->len += len;
  return 0;
}
/* Empties b and forgets its error; keeps its memory for reuse. */
static inline void fl_buf_clear(fl_buf_t *b) { b->len = 0; b->err = 0; }
int fl_buf_printf(fl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fl_buf_free(fl_buf_t *b);

/* printf-free appends for the data path (vfprintf showed up in profiles): a C string, an
 * unsigned decimal, and nanoseconds as milliseconds with three decimals ("0.137"). */
int fl_buf_str(fl_buf_t *b, const char *s);
/* A string literal, its length known at compile time. */
#define fl_buf_lit(b, lit) fl_buf_append((b), "" lit, sizeof(lit) - 1)
int fl_buf_u64(fl_buf_t *b, uint64_t v);
int fl_buf_ms3(fl_buf_t *b, uint64_t ns);

/* Reason phrase for a status code, RFC 9110's where it names one ("OK", "Unprocessable Content",
 * ...), else its class's ("Successful", "Client Error", ...), and "Unknown Status" outside
 * 100-599. The gateway writes its own status lines with it, also for a backend's answer, so every
 * client sees one spelling whatever the backend sent. Static string. */
const char *fl_http_reason(int status);

#endif
