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

static int hex4(const char *p) {
  int v = 0;
  for (int k = 0; k < 4; k++) {
    char c = p[k];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Is the key text b[start, end) (escapes and all, already known to end in its quote) the name
 * `key` once decoded, as a JSON parser reads it? Only ASCII names are looked up, so an escape of
 * anything else never matches. */
static bool key_is(const char *b, size_t start, size_t end, const char *key, size_t klen) {
  size_t k = 0;
  for (size_t i = start; i < end; i++, k++) {
    char c = b[i];
    if (c == '\\') {
      char e = b[++i];
      static const char SIMPLE[] = "\"\"\\\\//b\bf\fn\nr\rt\t";     /* escape letter, what it stands for */
      const char *m = e == 'u' ? NULL : memchr(SIMPLE, e, sizeof SIMPLE - 1);   /* a NUL is no escape */
      if (e == 'u') {
        int v = end - i > 4 ? hex4(b + i + 1) : -1;
        if (v < 0 || v > 0x7F) return false;
        c = (char)v;
        i += 4;
      } else if (m && (m - SIMPLE) % 2 == 0) {
        c = m[1];
      } else {
        return false;
      }
    }
    if (k >= klen || key[k] != c) return false;
  }
  return k == klen;
}

int fl_json_top_field(const char *b, size_t n, const char *key, fl_json_span_t *out) {
  size_t klen = strlen(key);
  size_t i = n >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;     /* a UTF-8 byte-order mark */
  bool found = false;
  i = skip_ws(b, n, i);
  if (i >= n || b[i] != '{') return FL_EPARSE;
  i = skip_ws(b, n, i + 1);
  if (i < n && b[i] == '}') return FL_ENOENT;
  /* After a match the scan goes on to the end: a second key of that name (plain or escaped) makes
   * the body ambiguous (Python's json keeps the last duplicate; a server would read another value).
   * A body that ends or breaks after the match keeps the match. */
  int miss = FL_EPARSE;
  while (i < n) {
    if (b[i] != '"') break;
    size_t kend = skip_string(b, n, i);
    if (!kend) break;
    bool match = key_is(b, i + 1, kend - 1, key, klen);
    if (match && found) return FL_EINVAL;
    i = skip_ws(b, n, kend);
    if (i >= n || b[i] != ':') break;
    i = skip_ws(b, n, i + 1);
    size_t vend = skip_value(b, n, i);
    if (!vend) break;
    if (match) {
      found = true;
      out->is_string = b[i] == '"';
      out->start = out->is_string ? i + 1 : i;
      out->len = out->is_string ? vend - i - 2 : vend - i;
    }
    i = skip_ws(b, n, vend);
    if (i < n && b[i] == '}') {
      miss = FL_ENOENT;
      break;
    }
    if (i >= n || b[i] != ',') break;
    i = skip_ws(b, n, i + 1);
  }
  return found ? 0 : miss;
}
