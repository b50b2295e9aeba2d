/* http.c — the HTTP/1 layer under h1.c: header tables, the hop-by-hop set, reason phrases and
 * byte buffers, for the gateway, httpd and the client alike. */
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
  h->refusal = NULL;
}

/* Answers status for the reason in words (h1.c reports them). */
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
  h->url_off = h->len;
  int rc = append(h, at, len, "URL too long");
  h->url_len = rc ? 0 : (uint32_t)len;
  return rc;
}

static char lower(char c) { return (char)(c >= 'A' && c <= 'Z' ? c + 32 : c); }

/* ASCII letters of s made lower-case in place, eight bytes at a time: in each byte's low seven
 * bits, adding 0x3f sets the top bit from 'A' up and adding 0x25 from past 'Z' (no carry leaves
 * a byte); a byte with its own top bit set is no letter. The flag, moved to 0x20, is the case. */
static void lower_run(char *s, size_t n) {
  const uint64_t low7 = 0x7f7f7f7f7f7f7f7fu, top = 0x8080808080808080u;
  size_t i = 0;
  for (; n - i >= 8; i += 8) {
    uint64_t v, h;
    memcpy(&v, s + i, 8);
    h = v & low7;
    v |= ((h + 0x3f3f3f3f3f3f3f3fu) & ~(h + 0x2525252525252525u) & ~v & top) >> 2;
    memcpy(s + i, &v, 8);
  }
  for (; i < n; i++) s[i] = lower(s[i]);
}

int fl_http_head_add(fl_http_head_t *h, const char *name, size_t nlen, const char *value, size_t vlen) {
  if (h->n == h->max && !grow((void **)&h->hdrs, &h->max, h->max_limit, sizeof *h->hdrs, h->n + 1))
    return refuse(h, 431, "too many header fields");
  uint32_t off = h->len;
  if (append(h, name, nlen, "header section too large") || append(h, value, vlen, "header section too large"))
    return 431;
  lower_run(h->buf + off, nlen);
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

bool fl_http_is_event_stream(const fl_http_head_t *h) {
  size_t len;
  const char *ct = fl_http_head_get(h, "content-type", &len);
  return ct && len >= 17 && fl_streq_ci(ct, 17, "text/event-stream");
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

int fl_buf_append_grow(fl_buf_t *b, const void *data, size_t len) {
  int rc = reserve(b, len);
  if (rc || len == 0) return rc;        /* nothing to copy: data may be NULL too, when b has no memory */
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
