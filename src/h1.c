/* h1.c — HTTP/1.x framing: the head a line at a time (each line found with memchr and checked
 * in one pass), the body by length, chunks or close. See h1.h for the contract. */
#include "h1.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum {
  S_HEAD,           /* reading the head's lines */
  S_LENGTH,         /* `remaining` bytes of a sized body */
  S_CLOSE,          /* body up to the connection's close */
  S_SIZE_FIRST,     /* a chunk-size line: its first hex digit */
  S_SIZE,           /* more hex digits, an extension or the line's end */
  S_SIZE_WS,        /* whitespace after the size: only an extension may follow */
  S_EXT,            /* a chunk extension, up to the line's end */
  S_SIZE_LF,        /* the LF after the size line's CR */
  S_DATA,           /* `remaining` bytes of a chunk */
  S_DATA_CR,        /* the CRLF after a chunk's data */
  S_DATA_LF,
  S_TRAILER_START,  /* after the last chunk: a trailer line or the blank line */
  S_TRAILER,        /* inside a trailer line (dropped) */
  S_TRAILER_LF,     /* the LF of the blank line that ends the message */
  S_END,            /* complete; FL_H1_END is returned next */
  S_DONE,           /* FL_H1_END was returned */
  S_ERROR,
};

#define MAX_CHUNK_LINE 4096u       /* a size line with its extensions */
#define MAX_TRAILERS 16384u        /* trailer section, read and dropped */

static const char *const method_names[] = {
    [FL_METHOD_NONE] = "", [FL_METHOD_GET] = "GET", [FL_METHOD_HEAD] = "HEAD", [FL_METHOD_POST] = "POST",
    [FL_METHOD_PUT] = "PUT", [FL_METHOD_DELETE] = "DELETE", [FL_METHOD_CONNECT] = "CONNECT",
    [FL_METHOD_OPTIONS] = "OPTIONS", [FL_METHOD_TRACE] = "TRACE", [FL_METHOD_PATCH] = "PATCH",
};

const char *fl_method_name(fl_method_t m) {
  return (size_t)m < FL_ARRAY_LEN(method_names) ? method_names[m] : "";
}

/* Character classes, one table: RFC 9110 token characters, and the bytes a field value or a
 * request target may hold (no control bytes; HTAB in values; obs-text allowed in both). */
enum { C_TOKEN = 1, C_VALUE = 2, C_TARGET = 4 };
static uint8_t classes[256];

static void classes_init(void) {
  for (int c = 0; c < 256; c++) {
    uint8_t k = 0;
    if ((c >= 0x20 && c != 0x7F) || c == '\t') k |= C_VALUE;
    if (c > 0x20 && c != 0x7F) k |= C_TARGET;
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c && strchr("!#$%&'*+-.^_`|~", c)))
      k |= C_TOKEN;
    classes[c] = k;
  }
}

static inline bool is(unsigned char c, uint8_t cls) { return classes[c] & cls; }

/* Is every byte of s one a field value may hold (not a control byte other than HTAB, not DEL)?
 * Sixteen bytes at a time with SSE2, then eight: (x - 0x20..) & ~x & 0x80.. is non-zero exactly
 * when some byte of x is below 0x20, and the same on x ^ 0x7f.. when one is DEL; a word with
 * either (a tab, say) is looked at byte by byte. */
static bool value_bytes(const char *s, size_t n) {
  size_t i = 0;
#ifdef __SSE2__
  const __m128i ctl = _mm_set1_epi8(0x1f), tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7f);
  for (; n - i >= 16; i += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
    __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v);
    __m128i bad = _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(v, tab), low), _mm_cmpeq_epi8(v, del));
    if (_mm_movemask_epi8(bad)) return false;
  }
#endif
  const uint64_t ones = 0x0101010101010101u, top = 0x8080808080808080u;
  for (; n - i >= 8; i += 8) {
    uint64_t v, d;
    memcpy(&v, s + i, 8);
    d = v ^ (ones * 0x7f);
    if (((v - ones * 0x20) & ~v & top) | ((d - ones) & ~d & top)) break;
  }
  for (; i < n; i++)
    if (!is((unsigned char)s[i], C_VALUE)) return false;
  return true;
}

void fl_h1_init(fl_h1_t *p, bool response) {
  static bool ready;
  if (!ready) {              /* idempotent: threads racing here all write the same bytes */
    classes_init();
    ready = true;
  }
  memset(p, 0, sizeof *p);
  p->response = response;
}

void fl_h1_reset(fl_h1_t *p) { fl_h1_init(p, p->response); }

bool fl_h1_done(const fl_h1_t *p) { return p->state == S_DONE; }

static fl_h1_event_t fail(fl_h1_t *p, int status, const char *words) {
  p->state = S_ERROR;
  p->error_status = status;
  p->error = words;
  return FL_H1_ERROR;
}

/* ---- the head ---- */

static fl_method_t method_of(const char *s, size_t n) {
  for (size_t m = FL_METHOD_GET; m < FL_ARRAY_LEN(method_names); m++)
    if (strlen(method_names[m]) == n && memcmp(method_names[m], s, n) == 0) return (fl_method_t)m;
  return FL_METHOD_NONE;
}

/* "HTTP/1.d" at s (8 bytes available): the minor version, or -1. */
static int version_of(const char *s) {
  if (memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9') return -1;
  return s[7] - '0';
}

static fl_h1_event_t request_line(fl_h1_t *p, fl_http_head_t *h, const char *s, size_t n) {
  size_t i = 0;
  while (i < n && is((unsigned char)s[i], C_TOKEN)) i++;
  p->method = i < n && s[i] == ' ' ? method_of(s, i) : FL_METHOD_NONE;
  if (p->method == FL_METHOD_NONE) return fail(p, 400, "unknown method");
  size_t t = ++i;
  while (i < n && is((unsigned char)s[i], C_TARGET)) i++;
  if (i == t || (i < n && s[i] != ' ')) return fail(p, 400, "invalid URL");
  if (n - i != 9 || version_of(s + i + 1) < 0) return fail(p, 400, "request line is not HTTP/1.x");
  p->minor = (uint8_t)version_of(s + i + 1);
  if (fl_http_head_url(h, s + t, i - t) != 0) return fail(p, 414, "URL too long");
  return FL_H1_MORE;
}

static fl_h1_event_t status_line(fl_h1_t *p, const char *s, size_t n) {
  if (n < 12 || version_of(s) < 0 || s[8] != ' ') return fail(p, 400, "status line is not HTTP/1.x");
  p->minor = (uint8_t)version_of(s);
  unsigned status = 0;
  for (size_t i = 9; i < 12; i++) {
    if (s[i] < '0' || s[i] > '9') return fail(p, 400, "invalid status code");
    status = status * 10 + (unsigned)(s[i] - '0');
  }
  if (status < 100 || status > 599 || (n > 12 && s[12] != ' ')) return fail(p, 400, "invalid status code");
  for (size_t i = 13; i < n; i++)
    if (!is((unsigned char)s[i], C_VALUE)) return fail(p, 400, "invalid character in the status line");
  p->status = (uint16_t)status;
  return FL_H1_MORE;
}

/* One Connection header's tokens: the ones that change the connection's fate. */
static void connection_tokens(fl_h1_t *p, const char *v, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ',' || v[i] == ' ' || v[i] == '\t')) i++;
    size_t start = i;
    while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t') i++;
    if (fl_streq_ci(v + start, i - start, "close")) p->conn_close = true;
    else if (fl_streq_ci(v + start, i - start, "keep-alive")) p->conn_keep_alive = true;
    else if (fl_streq_ci(v + start, i - start, "upgrade")) p->conn_upgrade = true;
  }
}

/* The headers that frame the message or decide the connection's fate (name lower-case). */
static fl_h1_event_t framing_field(fl_h1_t *p, const char *name, size_t nlen, const char *v, size_t vlen) {
  if (nlen == 14 && memcmp(name, "content-length", 14) == 0) {
    if (++p->n_cl > 1) return fail(p, 400, "more than one Content-Length");
    if (vlen == 0 || vlen > 18) return fail(p, 400, "invalid Content-Length");
    uint64_t cl = 0;
    for (size_t i = 0; i < vlen; i++) {
      if (v[i] < '0' || v[i] > '9') return fail(p, 400, "invalid Content-Length");
      cl = cl * 10 + (uint64_t)(v[i] - '0');
    }
    p->content_length = cl;
    p->has_length = true;
  } else if (nlen == 17 && memcmp(name, "transfer-encoding", 17) == 0) {
    if (++p->n_te > 1) return fail(p, 400, "more than one Transfer-Encoding");
    if (!fl_streq_ci(v, vlen, "chunked")) return fail(p, 400, "Transfer-Encoding other than chunked");
    p->chunked = true;
  } else if (nlen == 10 && memcmp(name, "connection", 10) == 0) {
    connection_tokens(p, v, vlen);
  } else if (nlen == 4 && memcmp(name, "host", 4) == 0) {
    if (++p->n_host > 1) return fail(p, 400, "more than one Host header");
  } else if (nlen == 7 && memcmp(name, "upgrade", 7) == 0) {
    p->has_upgrade = true;
  }
  return FL_H1_MORE;
}

static fl_h1_event_t header_line(fl_h1_t *p, fl_http_head_t *h, const char *s, size_t n) {
  if (s[0] == ' ' || s[0] == '\t') return fail(p, 400, "obsolete line folding");
  size_t i = 0;
  while (i < n && is((unsigned char)s[i], C_TOKEN)) i++;
  if (i == 0 || i == n || s[i] != ':') return fail(p, 400, "invalid header name character");
  size_t nlen = i++;
  while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
  size_t v = i;
  if (!value_bytes(s + v, n - v)) return fail(p, 400, "invalid header value character");
  while (n > v && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  int st = fl_http_head_add(h, s, nlen, s + v, n - v);
  if (st) return fail(p, st, h->refusal);
  const fl_hdr_t *x = &h->hdrs[h->n - 1];
  return framing_field(p, fl_hdr_name(h, x), nlen, s + v, n - v);
}

/* The blank line: the message's framing follows from its head. */
static fl_h1_event_t head_done(fl_h1_t *p) {
  if (p->has_length && p->chunked) return fail(p, 400, "both Content-Length and Transfer-Encoding");
  p->keep_alive = p->minor >= 1 ? !p->conn_close : p->conn_keep_alive && !p->conn_close;
  if (!p->response) {
    if (p->method == FL_METHOD_CONNECT) return fail(p, 400, "CONNECT is not supported");
    if (p->minor >= 1 && p->n_host == 0)
      return fail(p, 400, "HTTP/1.1 request without a Host header");
    if (p->conn_upgrade && p->has_upgrade) return fail(p, 400, "protocol upgrades are not supported");
  }
  bool bodiless = p->response && (p->status < 200 || p->status == 204 || p->status == 304 || p->no_body);
  if (bodiless) {
    p->state = S_END;
  } else if (p->chunked) {
    p->state = S_SIZE_FIRST;
  } else if (p->has_length) {
    p->remaining = p->content_length;
    p->state = p->remaining ? S_LENGTH : S_END;
  } else if (p->response) {
    p->state = S_CLOSE;          /* an answer without framing runs to the close */
    p->keep_alive = false;
  } else {
    p->state = S_END;            /* a request without framing has no body */
  }
  return FL_H1_HEAD;
}

static fl_h1_event_t line(fl_h1_t *p, fl_http_head_t *h, const char *s, size_t n) {
  if (n && s[n - 1] == '\r') n--;
  if (!p->first_done) {      /* an empty one too: a blank line is no status line (requests skip them) */
    p->first_done = true;
    return p->response ? status_line(p, s, n) : request_line(p, h, s, n);
  }
  return n ? header_line(p, h, s, n) : head_done(p);
}

/* A request's first bytes cannot begin a method, or the unfinished line is too long already.
 * The method first: a line cut short says what the whole line would. */
static fl_h1_event_t check_partial(fl_h1_t *p, const fl_http_head_t *h, const char *s, size_t n) {
  bool first = !p->first_done;
  if (first && !p->response) {
    size_t i = 0;
    while (i < n && i < 8 && is((unsigned char)s[i], C_TOKEN)) i++;
    if (i < n && (i == 8 || s[i] != ' ')) return fail(p, 400, "unknown method");
  }
  if (p->head_bytes + n > h->cap_limit)
    return first && !p->response ? fail(p, 414, "URL too long") : fail(p, 431, "header section too large");
  return FL_H1_MORE;
}

static fl_h1_event_t feed_head(fl_h1_t *p, fl_http_head_t *h, const char *data, size_t len, size_t *used) {
  size_t off = 0;
  if (!p->line_started && !p->response) {      /* blank lines before a request are ignored */
    while (off < len && (data[off] == '\r' || data[off] == '\n')) off++;
    if (off == len) {
      *used = off;
      return FL_H1_MORE;
    }
  }
  if (off < len) p->line_started = true;
  for (;;) {
    const char *nl = memchr(data + off + p->scanned, '\n', len - off - p->scanned);
    if (!nl) {
      p->scanned = (uint32_t)(len - off);
      *used = off;
      return check_partial(p, h, data + off, len - off);
    }
    size_t n = (size_t)(nl - (data + off));
    p->scanned = 0;
    if (p->head_bytes + n + 1 > h->cap_limit) return check_partial(p, h, data + off, n + 1);
    p->head_bytes += (uint32_t)(n + 1);
    fl_h1_event_t ev = line(p, h, data + off, n);
    off += n + 1;
    if (ev != FL_H1_MORE) {
      *used = off;
      return ev;
    }
  }
}

/* ---- the body ---- */

static int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The size line is complete. */
static void size_done(fl_h1_t *p) {
  p->state = p->remaining ? S_DATA : S_TRAILER_START;
  p->trailer_bytes = 0;
}

/* One byte of chunk framing; FL_H1_MORE to go on, FL_H1_ERROR. */
static fl_h1_event_t chunk_byte(fl_h1_t *p, char c) {
  int d;
  switch (p->state) {
  case S_SIZE_FIRST:
    if ((d = hex(c)) < 0) return fail(p, 400, "invalid chunk size");
    p->remaining = (uint64_t)d;
    p->trailer_bytes = 1;             /* counts the size line's length meanwhile */
    p->state = S_SIZE;
    break;
  case S_SIZE:
    if (++p->trailer_bytes > MAX_CHUNK_LINE) return fail(p, 400, "chunk size line too long");
    if ((d = hex(c)) >= 0) {
      if (p->remaining >> 56) return fail(p, 400, "chunk size too large");
      p->remaining = p->remaining << 4 | (uint64_t)d;
    } else if (c == ';') {
      p->state = S_EXT;
    } else if (c == ' ' || c == '\t') {
      p->state = S_SIZE_WS;
    } else if (c == '\r') {
      p->state = S_SIZE_LF;
    } else if (c == '\n') {
      size_done(p);
    } else {
      return fail(p, 400, "invalid chunk size");
    }
    break;
  case S_SIZE_WS:
    if (++p->trailer_bytes > MAX_CHUNK_LINE) return fail(p, 400, "chunk size line too long");
    if (c == ';') p->state = S_EXT;
    else if (c != ' ' && c != '\t') return fail(p, 400, "invalid chunk size");
    break;
  case S_EXT:
    if (c == '\r') p->state = S_SIZE_LF;
    else if (c == '\n') size_done(p);
    else if (!is((unsigned char)c, C_VALUE)) return fail(p, 400, "invalid chunk extension");
    else if (++p->trailer_bytes > MAX_CHUNK_LINE) return fail(p, 400, "chunk size line too long");
    break;
  case S_SIZE_LF:
    if (c != '\n') return fail(p, 400, "line not ended by CRLF");
    size_done(p);
    break;
  case S_DATA_CR:
    if (c == '\r') p->state = S_DATA_LF;
    else if (c == '\n') p->state = S_SIZE_FIRST;
    else return fail(p, 400, "chunk data longer than its size");
    break;
  case S_DATA_LF:
    if (c != '\n') return fail(p, 400, "line not ended by CRLF");
    p->state = S_SIZE_FIRST;
    break;
  case S_TRAILER_START:
    if (c == '\r') p->state = S_TRAILER_LF;
    else if (c == '\n') p->state = S_END;
    else p->state = S_TRAILER;
    break;
  case S_TRAILER:
    if (++p->trailer_bytes > MAX_TRAILERS) return fail(p, 400, "trailer section too large");
    if (c == '\n') p->state = S_TRAILER_START;
    break;
  case S_TRAILER_LF:
    if (c != '\n') return fail(p, 400, "line not ended by CRLF");
    p->state = S_END;
    break;
  }
  return FL_H1_MORE;
}

static fl_h1_event_t data_span(fl_h1_t *p, const char *data, size_t len, size_t *used, const char **body,
                               size_t *body_len) {
  size_t n = p->state == S_CLOSE ? len : (size_t)FL_MIN((uint64_t)len, p->remaining);
  if (n == 0) {
    *used = 0;
    return FL_H1_MORE;
  }
  *body = data;
  *body_len = n;
  *used = n;
  if (p->state != S_CLOSE && (p->remaining -= n) == 0) p->state = p->state == S_DATA ? S_DATA_CR : S_END;
  return FL_H1_DATA;
}

fl_h1_event_t fl_h1_feed(fl_h1_t *p, fl_http_head_t *h, const char *data, size_t len, size_t *used,
                         const char **body, size_t *body_len) {
  *used = 0;
  *body_len = 0;
  switch (p->state) {
  case S_HEAD:
    return feed_head(p, h, data, len, used);
  case S_LENGTH: case S_DATA: case S_CLOSE:
    return data_span(p, data, len, used, body, body_len);
  case S_END:
    p->state = S_DONE;
    return FL_H1_END;
  case S_DONE:
    return FL_H1_END;
  case S_ERROR:
    return FL_H1_ERROR;
  }
  size_t i = 0;              /* chunk framing, a byte at a time, up to data or the end */
  while (i < len && p->state != S_DATA && p->state != S_END) {
    if (chunk_byte(p, data[i++]) == FL_H1_ERROR) return FL_H1_ERROR;
  }
  *used = i;
  if (p->state == S_END) {
    p->state = S_DONE;
    return FL_H1_END;
  }
  if (i == len) return FL_H1_MORE;
  size_t n;
  fl_h1_event_t ev = data_span(p, data + i, len - i, &n, body, body_len);
  *used = i + n;
  return ev;
}

fl_h1_event_t fl_h1_eof(fl_h1_t *p) {
  if (p->state == S_CLOSE || p->state == S_END) {
    p->state = S_DONE;
    return FL_H1_END;
  }
  if (p->state == S_DONE || (p->state == S_HEAD && !p->line_started)) return FL_H1_MORE;
  if (p->state == S_ERROR) return FL_H1_ERROR;
  return fail(p, 400, "the connection closed in the middle of a message");
}
