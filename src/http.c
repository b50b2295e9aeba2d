/* http.c — header tables and framing checks on top of http-parser. */
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

void fl_head_spares_free(fl_head_spares_t *s) {
  while (s->n) fl_http_head_free(&s->spare[--s->n]);
}

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
}

static int append(fl_http_head_t *h, const char *at, size_t len) {
  if (len > h->cap - h->len &&
      (len > h->cap_limit || !grow((void **)&h->buf, &h->cap, h->cap_limit, 1, h->len + (uint32_t)len)))
    return 431;
  memcpy(h->buf + h->len, at, len);
  h->len += (uint32_t)len;
  return 0;
}

int fl_http_head_url(fl_http_head_t *h, const char *at, size_t len) {
  if (h->url_len == 0) h->url_off = h->len;
  h->url_len += (uint32_t)len;
  return append(h, at, len);
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
    if (!is_tchar((unsigned char)at[i])) return 400;
  if (h->in_value || h->n == 0) {
    if (h->n == h->max && !grow((void **)&h->hdrs, &h->max, h->max_limit, sizeof *h->hdrs, h->n + 1)) return 431;
    fl_hdr_t *x = &h->hdrs[h->n++];
    x->name_off = h->len;
    x->name_len = 0;
    x->value_off = x->value_len = 0;
    h->in_value = false;
  }
  fl_hdr_t *x = &h->hdrs[h->n - 1];
  if (x->value_len || x->value_off) return 400;
  uint32_t off = h->len;
  int rc = append(h, at, len);
  if (rc) return rc;
  x->name_len += (uint32_t)len;
  for (uint32_t i = off; i < h->len; i++) h->buf[i] = lower(h->buf[i]);
  return 0;
}

int fl_http_head_value(fl_http_head_t *h, const char *at, size_t len) {
  if (h->n == 0) return 400;
  for (size_t i = 0; i < len; i++) {     /* control bytes smuggle line breaks into logs and backends */
    unsigned char ch = (unsigned char)at[i];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7F) return 400;
  }
  fl_hdr_t *x = &h->hdrs[h->n - 1];
  if (!h->in_value) {                   /* the name is complete now */
    x->value_off = h->len;
    x->value_len = 0;
    h->in_value = true;
    if (x->name_len == 10 && memcmp(h->buf + x->name_off, "connection", 10) == 0) h->n_connection++;
  }
  int rc = append(h, at, len);
  if (rc) return rc;
  /* fragments sit back to back, so the value runs to the end of the buffer; trailing
   * whitespace is trimmed anew each time (a later fragment may follow a space) */
  x->value_len = h->len - x->value_off;
  while (x->value_len && (h->buf[x->value_off + x->value_len - 1] == ' ' ||
                          h->buf[x->value_off + x->value_len - 1] == '\t'))
    x->value_len--;
  return 0;
}

const char *fl_http_head_get(const fl_http_head_t *h, const char *lname, size_t *len) {
  size_t nlen = strlen(lname);
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

int fl_http_check_framing(const fl_http_head_t *h) {
  unsigned n_cl = 0, n_te = 0;
  for (uint32_t i = 0; i < h->n; i++) {
    const fl_hdr_t *x = &h->hdrs[i];
    const char *v = h->buf + x->value_off;
    if (name_is(h, x, "content-length")) {
      n_cl++;
      if (x->value_len == 0) return 400;
      for (uint32_t k = 0; k < x->value_len; k++)
        if (v[k] < '0' || v[k] > '9') return 400;
    } else if (name_is(h, x, "transfer-encoding")) {
      n_te++;
      if (!fl_streq_ci(v, x->value_len, "chunked")) return 400;
    }
  }
  return (n_cl > 1 || n_te > 1 || (n_cl && n_te)) ? 400 : 0;
}

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
  return fl_buf_u64(b, us / 1000) | fl_buf_append(b, frac, sizeof frac);
}

void fl_buf_free(fl_buf_t *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

const char *fl_http_reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Payload Too Large";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}
