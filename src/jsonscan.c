/* jsonscan.c — a bounded, allocation-free scan over the top level of a JSON object.
 * Nested values are skipped by bracket counting; only the top level is validated. */
#include "jsonscan.h"

static size_t skip_ws(const char *b, size_t n, size_t i) {
  while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) i++;
  return i;
}

/* i points at the opening quote; returns the index after the closing quote, or 0. */
static size_t skip_string(const char *b, size_t n, size_t i) {
  for (i++; i < n; i++) {
    if (b[i] == '\\') i++;
    else if (b[i] == '"') return i + 1;
    else if ((unsigned char)b[i] < 0x20) return 0;
  }
  return 0;
}

/* i points at '{' or '['; returns the index after the matching close, or 0. */
static size_t skip_container(const char *b, size_t n, size_t i) {
  size_t depth = 0;
  while (i < n) {
    char c = b[i];
    if (c == '"') {
      i = skip_string(b, n, i);
      if (!i) return 0;
      continue;
    }
    if (c == '{' || c == '[') depth++;
    else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
    i++;
  }
  return 0;
}

static size_t skip_scalar(const char *b, size_t n, size_t i) {
  size_t start = i;
  while (i < n && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' &&
         b[i] != '\n' && b[i] != '\r')
    i++;
  return i > start && i < n ? i : 0;   /* a scalar cut off by the end may be longer */
}

static size_t skip_value(const char *b, size_t n, size_t i) {
  if (i >= n) return 0;
  if (b[i] == '"') return skip_string(b, n, i);
  if (b[i] == '{' || b[i] == '[') return skip_container(b, n, i);
  return skip_scalar(b, n, i);
}

int fl_json_top_field(const char *b, size_t n, const char *key, fl_json_span_t *out) {
  size_t klen = strlen(key);
  size_t i = skip_ws(b, n, 0);
  if (i >= n || b[i] != '{') return FL_EPARSE;
  i = skip_ws(b, n, i + 1);
  if (i < n && b[i] == '}') return FL_ENOENT;
  while (i < n) {
    if (b[i] != '"') return FL_EPARSE;
    size_t kend = skip_string(b, n, i);
    if (!kend) return FL_EPARSE;
    bool match = kend - i - 2 == klen && memcmp(b + i + 1, key, klen) == 0;
    i = skip_ws(b, n, kend);
    if (i >= n || b[i] != ':') return FL_EPARSE;
    i = skip_ws(b, n, i + 1);
    size_t vend = skip_value(b, n, i);
    if (!vend) return FL_EPARSE;
    if (match) {
      out->is_string = b[i] == '"';
      out->start = out->is_string ? i + 1 : i;
      out->len = out->is_string ? vend - i - 2 : vend - i;
      return 0;
    }
    i = skip_ws(b, n, vend);
    if (i < n && b[i] == '}') return FL_ENOENT;
    if (i >= n || b[i] != ',') return FL_EPARSE;
    i = skip_ws(b, n, i + 1);
  }
  return FL_EPARSE;
}
