/* http.c — the HTTP/1 layer on http-parser: header tables, framing checks, reason phrases and
 * parse errors in words, for the gateway, httpd and the client alike. */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define FL_HEAD_INITIAL_BYTES 2048u
#define FL_HEAD_INITIAL_HEADERS 24u

int fl_http_head_init(fl_http_head_t *h, uint32_t cap, uint32_t max) {
  memset(h, 0, sizeof *h);
  h->cap = FL_MIN(cap, FL_HEAD_INITIAL_BYTES);
  h->max = FL_MIN(max, FL_HEAD_INITIAL_HEADERS);
  h->cap_limit = cap;
  h->max_limit = max;
  h->buf = malloc(h->cap);
  h->hdrs = malloc(sizeof *h->hdrs * h->max);
  if (!h->buf || !h->hdrs) {
    fl_http_head_free(h);
    return FL_ENOMEM;
  }
  return 0;
}

int fl_http_head_take(fl_head_spares_t *s, fl_http_head_t *h, uint32_t cap, uint32_t max) {
  if (h->buf && h->cap <= cap && h->max <= max) {
    fl_http_head_reset(h);
  } else if (h->buf || s->n == 0) {
    fl_http_head_free(h);
    return fl_http_head_init(h, cap, max);
  } else {
    *h = s->spare[--s->n];
    if (h->cap > cap || h->max > max) {    /* a reload lowered the limits */
      fl_http_head_free(h);
      return fl_http_head_init(h, cap, max);
    }
  }
  h->cap_limit = cap;
  h->max_limit = max;
  return 0;
}

void fl_http_head_give(fl_head_spares_t *s, fl_http_head_t *h) {
  if (!h->buf) return;
  if (s->n < FL_HEAD_SPARES && h->cap <= FL_HEAD_INITIAL_BYTES && h->max <= FL_HEAD_INITIAL_HEADERS) {
    fl_http_head_reset(h);
    s->spare[s->n++] = *h;
    memset(h, 0, sizeof *h);
  } else {
    fl_http_head_free(h);
  }
}

void fl_head_spares_trim(fl_head_spares_t *s, size_t keep) {
  while (s->n > keep) fl_http_head_free(&s->spare[--s->n]);
}

void fl_head_spares_free(fl_head_spares_t *s) { fl_head_spares_trim(s, 0); }

/* Doubles *cap (up to limit) and the array behind *p; false when at the limit or out of memory. */
static bool grow(void **p, uint32_t *cap, uint32_t limit, size_t elem, uint32_t need) {
  if (need > limit) return false;
  uint32_t n = *cap;
  while (n < need) n = n > limit / 2 ? limit : n * 2;
  void *q = realloc(*p, (size_t)n * elem);
  if (!q) return false;
  *p = q;
  *cap = n;
  return true;
}

void fl_http_head_free(fl_http_head_t *h) {
  free(h->buf);
  free(h->hdrs);
  memset(h, 0, sizeof *h);
}

void fl_http_head_reset(fl_http_head_t *h) {
  h->len = h->n = h->url_off = h->url_len = h->n_connection = 0;
  h->in_value = false;
  h->refusal = NULL;
}

/* Answers status for the reason in words (fl_http_error_words reads them). */
static int refuse(fl_http_head_t *h, int status, const char *words) {
  h->refusal = words;
  return status;
}

static int append(fl_http_head_t *h, const char *at, size_t len, const char *too_long) {
  if (len > h->cap - h->len &&
      (len > h->cap_limit || !grow((void **)&h->buf, &h->cap, h->cap_limit, 1, h->len + (uint32_t)len)))
    return refuse(h, 431, too_long);
  memcpy(h->buf + h->len, at, len);
  h->len += (uint32_t)len;
  return 0;
}

int fl_http_head_url(fl_http_head_t *h, const char *at, size_t len) {
  if (h->url_len == 0) h->url_off = h->len;
  h->url_len += (uint32_t)len;
  return append(h, at, len, "URL too long");
}

static char lower(char c) { return (char)(c >= 'A' && c <= 'Z' ? c + 32 : c); }

/* RFC 9110 token characters: visible ASCII except the delimiters "(),/:;<=>?@[\]{} and DQUOTE. */
#define T1(c) [c] = true
static const bool tchar[256] = {
    T1('!'), T1('#'), T1('$'), T1('%'), T1('&'), T1('\''), T1('*'), T1('+'), T1('-'), T1('.'), T1('^'), T1('_'),
    T1('`'), T1('|'), T1('~'),
    T1('0'), T1('1'), T1('2'), T1('3'), T1('4'), T1('5'), T1('6'), T1('7'), T1('8'), T1('9'),
    T1('A'), T1('B'), T1('C'), T1('D'), T1('E'), T1('F'), T1('G'), T1('H'), T1('I'), T1('J'), T1('K'), T1('L'),
    T1('M'), T1('N'), T1('O'), T1('P'), T1('Q'), T1('R'), T1('S'), T1('T'), T1('U'), T1('V'), T1('W'), T1('X'),
    T1('Y'), T1('Z'),
    T1('a'), T1('b'), T1('c'), T1('d'), T1('e'), T1('f'), T1('g'), T1('h'), T1('i'), T1('j'), T1('k'), T1('l'),
    T1('m'), T1('n'), T1('o'), T1('p'), T1('q'), T1('r'), T1('s'), T1('t'), T1('u'), T1('v'), T1('w'), T1('x'),
    T1('y'), T1('z'),
};
#undef T1

static bool is_tchar(unsigned char c) { return tchar[c]; }

int fl_http_head_field(fl_http_head_t *h, const char *at, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!is_tchar((unsigned char)at[i])) return refuse(h, 400, "invalid header name character");
  if (h->in_value || h->n == 0) {
    if (h->n == h->max && !grow((void **)&h->hdrs, &h->max, h->max_limit, sizeof *h->hdrs, h->n + 1))
      return refuse(h, 431, "too many header fields");
    fl_hdr_t *x = &h->hdrs[h->n++];
    x->name_off = h->len;
    x->name_len = 0;
    x->value_off = x->value_len = 0;
    h->in_value = false;
  }
  fl_hdr_t *x = &h->hdrs[h->n - 1];
  if (x->value_len || x->value_off) return refuse(h, 400, "malformed header line");
  uint32_t off = h->len;
  int rc = append(h, at, len, "header section too large");
  if (rc) return rc;
  x->name_len += (uint32_t)len;
  for (uint32_t i = off; i < h->len; i++) h->buf[i] = lower(h->buf[i]);
  return 0;
}

int fl_http_head_value(fl_http_head_t *h, const char *at, size_t len) {
  if (h->n == 0) return refuse(h, 400, "header value without a name");
  for (size_t i = 0; i < len; i++) {     /* control bytes smuggle line breaks into logs and backends */
    unsigned char ch = (unsigned char)at[i];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7F) return refuse(h, 400, "invalid header value character");
  }
  fl_hdr_t *x = &h->hdrs[h->n - 1];
  if (!h->in_value) {                   /* the name is complete now */
    x->value_off = h->len;
    x->value_len = 0;
    h->in_value = true;
    if (x->name_len == 10 && memcmp(h->buf + x->name_off, "connection", 10) == 0) h->n_connection++;
  }
  int rc = append(h, at, len, "header section too large");
  if (rc) return rc;
  /* fragments sit back to back, so the value runs to the end of the buffer; trailing
   * whitespace is trimmed anew each time (a later fragment may follow a space) */
  x->value_len = h->len - x->value_off;
  while (x->value_len && (h->buf[x->value_off + x->value_len - 1] == ' ' ||
                          h->buf[x->value_off + x->value_len - 1] == '\t'))
    x->value_len--;
  return 0;
}

int fl_http_head_add(fl_http_head_t *h, const char *name, size_t nlen, const char *value, size_t vlen) {
  if (h->n == h->max && !grow((void **)&h->hdrs, &h->max, h->max_limit, sizeof *h->hdrs, h->n + 1))
    return refuse(h, 431, "too many header fields");
  uint32_t off = h->len;
  if (append(h, name, nlen, "header section too large") || append(h, value, vlen, "header section too large"))
    return 431;
  for (uint32_t i = off; i < off + nlen; i++) h->buf[i] = lower(h->buf[i]);
  h->hdrs[h->n++] = (fl_hdr_t){.name_off = off, .name_len = (uint32_t)nlen, .value_off = off + (uint32_t)nlen,
                               .value_len = (uint32_t)vlen};
  if (nlen == 10 && memcmp(h->buf + off, "connection", 10) == 0) h->n_connection++;
  return 0;
}

const char *fl_http_head_getn(const fl_http_head_t *h, const char *lname, size_t nlen, size_t *len) {
  for (uint32_t i = 0; i < h->n; i++) {
    const fl_hdr_t *x = &h->hdrs[i];
    if (x->name_len == nlen && memcmp(h->buf + x->name_off, lname, nlen) == 0) {
      *len = x->value_len;
      return h->buf + x->value_off;
    }
  }
  return NULL;
}

static bool name_is(const fl_http_head_t *h, const fl_hdr_t *x, const char *lname) {
  size_t n = strlen(lname);
  return x->name_len == n && memcmp(h->buf + x->name_off, lname, n) == 0;
}

/* What makes a request's framing ambiguous, in words, or NULL when nothing does. */
static const char *framing_error(const fl_http_head_t *h) {
  unsigned n_cl = 0, n_te = 0;
  for (uint32_t i = 0; i < h->n; i++) {
    const fl_hdr_t *x = &h->hdrs[i];
    const char *v = h->buf + x->value_off;
    if (name_is(h, x, "content-length")) {
      n_cl++;
      if (x->value_len == 0) return "invalid Content-Length";
      for (uint32_t k = 0; k < x->value_len; k++)
        if (v[k] < '0' || v[k] > '9') return "invalid Content-Length";
    } else if (name_is(h, x, "transfer-encoding")) {
      n_te++;
      if (!fl_streq_ci(v, x->value_len, "chunked")) return "Transfer-Encoding other than chunked";
    }
  }
  if (n_cl && n_te) return "both Content-Length and Transfer-Encoding";
  if (n_cl > 1) return "more than one Content-Length";
  return n_te > 1 ? "more than one Transfer-Encoding" : NULL;
}

int fl_http_check_framing(const fl_http_head_t *h) { return framing_error(h) ? 400 : 0; }

/* Does one Connection header value list the lower-case token `name`? */
static bool lists_token(const char *v, size_t len, const char *name, size_t nlen) {
  size_t i = 0;
  while (i < len) {
    while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    size_t start = i, k = 0;
    while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t') i++;
    if (i - start != nlen) continue;
    while (k < nlen && lower(v[start + k]) == name[k]) k++;
    if (k == nlen) return true;
  }
  return false;
}

/* Is the name listed in any Connection header (there may be several lines of it)? */
static bool connection_names(const fl_http_head_t *h, const char *name, size_t nlen) {
  for (uint32_t i = 0; h->n_connection && i < h->n; i++) {
    const fl_hdr_t *x = &h->hdrs[i];
    if (x->name_len == 10 && memcmp(h->buf + x->name_off, "connection", 10) == 0 &&
        lists_token(h->buf + x->value_off, x->value_len, name, nlen))
      return true;
  }
  return false;
}

/* The headers never forwarded, by length: one memcmp at most per header. */
static bool is_hop_name(const char *n, uint32_t len) {
#define IS(lit) (memcmp(n, lit, sizeof lit - 1) == 0)
  switch (len) {
  case 2: return IS("te");
  case 7: return IS("trailer") || IS("upgrade");
  case 10: return IS("connection") || IS("keep-alive");
  case 12: return IS("x-request-id");
  case 14: return IS("content-length");
  case 15: return IS("x-forwarded-for");
  case 16: return IS("proxy-connection") || IS("x-fledge-variant") || IS("x-fledge-version");
  case 17: return IS("transfer-encoding");
  default: return false;
  }
#undef IS
}

bool fl_http_is_hop(const fl_http_head_t *h, const fl_hdr_t *x) {
  const char *name = h->buf + x->name_off;
  return is_hop_name(name, x->name_len) || connection_names(h, name, x->name_len);
}

/* Room for `more` bytes after len; records the failure in b->err. */
static int reserve(fl_buf_t *b, size_t more) {
  if (b->err) return b->err;
  if (more <= b->cap - b->len) return 0;
  if (more > SIZE_MAX / 4 - b->len) return b->err = FL_ELIMIT;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap - b->len < more) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) return b->err = FL_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int fl_buf_append(fl_buf_t *b, const void *data, size_t len) {
  int rc = reserve(b, len);
  if (rc) return rc;
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return 0;
}

int fl_buf_printf(fl_buf_t *b, const char *fmt, ...) {
  va_list ap, again;
  va_start(ap, fmt);
  va_copy(again, ap);
  int n = b->err ? 0 : vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  int rc = n < 0 ? (b->err = FL_EINVAL) : reserve(b, (size_t)n + 1);
  if (rc == 0) {
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
    b->len += (size_t)n;
  }
  va_end(again);
  return rc;
}

int fl_buf_str(fl_buf_t *b, const char *s) { return fl_buf_append(b, s, strlen(s)); }

int fl_buf_u64(fl_buf_t *b, uint64_t v) {
  char digits[20];
  size_t n = 0;
  do {
    digits[sizeof digits - ++n] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return fl_buf_append(b, digits + sizeof digits - n, n);
}

int fl_buf_ms3(fl_buf_t *b, uint64_t ns) {
  uint64_t us = ns / 1000;
  char frac[4] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10), (char)('0' + us % 10)};
  fl_buf_u64(b, us / 1000);
  return fl_buf_append(b, frac, sizeof frac);     /* the first failure sticks */
}

void fl_buf_free(fl_buf_t *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

/* RFC 9110 section 15's phrases, and those of the RFCs that added the other codes a backend or
 * fledge sends (6585: 428, 429, 431, 511; 7725: 451; 8470: 425; 8297: 103; 2295, 4918, 5842:
 * 506-508). 418 keeps RFC 2324's phrase, which is what a backend sending it means; RFC 9110 only
 * reserves the code. */
static const char *const reasons[600] = {
    [100] = "Continue", [101] = "Switching Protocols", [103] = "Early Hints",
    [200] = "OK", [201] = "Created", [202] = "Accepted", [203] = "Non-Authoritative Information",
    [204] = "No Content", [205] = "Reset Content", [206] = "Partial Content",
    [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
    [304] = "Not Modified", [305] = "Use Proxy", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
    [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden",
    [404] = "Not Found", [405] = "Method Not Allowed", [406] = "Not Acceptable",
    [407] = "Proxy Authentication Required", [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone",
    [411] = "Length Required", [412] = "Precondition Failed", [413] = "Content Too Large",
    [414] = "URI Too Long", [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
    [417] = "Expectation Failed", [418] = "I'm a teapot", [421] = "Misdirected Request",
    [422] = "Unprocessable Content", [425] = "Too Early", [426] = "Upgrade Required",
    [428] = "Precondition Required", [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
    [451] = "Unavailable For Legal Reasons",
    [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
    [503] = "Service Unavailable", [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
    [506] = "Variant Also Negotiates", [507] = "Insufficient Storage", [508] = "Loop Detected",
    [511] = "Network Authentication Required",
};

const char *fl_http_reason(int status) {
  static const char *const classes[] = {"Informational", "Successful", "Redirection", "Client Error", "Server Error"};
  if (status < 100 || status >= 600) return "Unknown Status";
  return reasons[status] ? reasons[status] : classes[status / 100 - 1];
}

/* ---- parse errors in words ---- */

/* The parser's errors whose words do not depend on where it stopped. */
static const char *const parser_words[] = {
    [HPE_OK] = "no error", [HPE_PAUSED] = "no error",
    [HPE_INVALID_EOF_STATE] = "the connection closed in the middle of a message",
    [HPE_HEADER_OVERFLOW] = "header section too large",
    [HPE_CLOSED_CONNECTION] = "data after a message that closed the connection",
    [HPE_INVALID_STATUS] = "invalid status code",
    [HPE_INVALID_METHOD] = "unknown method",
    [HPE_INVALID_URL] = "invalid URL",
    [HPE_INVALID_HOST] = "invalid host in the URL",
    [HPE_INVALID_PORT] = "invalid port in the URL",
    [HPE_INVALID_PATH] = "invalid URL path",
    [HPE_INVALID_QUERY_STRING] = "invalid query string",
    [HPE_INVALID_FRAGMENT] = "invalid URL fragment",
    [HPE_LF_EXPECTED] = "line not ended by CRLF",
    [HPE_INVALID_CHUNK_SIZE] = "invalid chunk size",
    [HPE_INVALID_INTERNAL_STATE] = "malformed message",
    [HPE_STRICT] = "malformed message",
    [HPE_UNKNOWN] = "malformed message",
    [HPE_INVALID_TRANSFER_ENCODING] = "Transfer-Encoding other than chunked",
};

static bool last_header_is(const fl_http_head_t *h, const char *lname) {
  return h && h->n && name_is(h, &h->hdrs[h->n - 1], lname);
}

/* A callback refused: the table's or the framing's words, else what a request can be refused
 * for that the table does not see (the gateway's version check, an upgrade). */
static const char *refusal_words(const http_parser *p, const fl_http_head_t *h, enum http_errno e) {
  if (h && h->refusal) return h->refusal;
  if (p->type != HTTP_REQUEST) return "malformed answer";
  const char *framing = h && e == HPE_CB_headers_complete ? framing_error(h) : NULL;
  if (framing) return framing;
  if (e == HPE_CB_headers_complete && p->method == HTTP_CONNECT) return "CONNECT is not supported";
  if (e == HPE_CB_headers_complete && (p->upgrade || (p->flags & F_UPGRADE)))
    return "protocol upgrades are not supported";
  if (e == HPE_CB_header_field || e == HPE_CB_headers_complete) return "request line is not HTTP/1.x";
  return "malformed request";
}

const char *fl_http_error_words(const http_parser *p, const fl_http_head_t *h) {
  enum http_errno e = HTTP_PARSER_ERRNO(p);
  bool request = p->type == HTTP_REQUEST;
  switch (e) {
  case HPE_CB_message_begin: case HPE_CB_url: case HPE_CB_header_field: case HPE_CB_header_value:
  case HPE_CB_headers_complete: case HPE_CB_body: case HPE_CB_message_complete: case HPE_CB_status:
  case HPE_CB_chunk_header: case HPE_CB_chunk_complete:
    return refusal_words(p, h, e);
  case HPE_INVALID_VERSION: case HPE_INVALID_CONSTANT:
    return request ? "request line is not HTTP/1.x" : "status line is not HTTP/1.x";
  case HPE_INVALID_HEADER_TOKEN:      /* a name is handed over at its colon: after one, the value is at fault */
    if (!h) return "invalid header character";
    return h->n && !h->in_value ? "invalid header value character" : "invalid header name character";
  case HPE_INVALID_CONTENT_LENGTH:    /* also a chunk size that overflows, after the headers */
    return (p->flags & F_CHUNKED) && !last_header_is(h, "content-length") ? "chunk size too large"
                                                                            : "invalid Content-Length";
  case HPE_UNEXPECTED_CONTENT_LENGTH:
    return (p->flags & F_CHUNKED) || p->uses_transfer_encoding ? "both Content-Length and Transfer-Encoding"
                                                               : "more than one Content-Length";
  default:
    return (size_t)e < FL_ARRAY_LEN(parser_words) && parser_words[e] ? parser_words[e] : "malformed message";
  }
}
