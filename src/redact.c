/* redact.c — URLs and credential-bearing JSON values rewritten for reads. What is hidden is
 * replaced, never dropped, so a reader still sees that a hook has a token or a path; what is kept
 * (scheme, host, port, query names) is what an operator needs to tell which receiver is meant. */
#include "redact.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ELLIPSIS "\xe2\x80\xa6"          /* U+2026 "…" in UTF-8 */

static bool is_scheme_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '+' ||
         ch == '-' || ch == '.';
}

/* Bytes a URL in running text may hold: not a space or control, nor what usually closes it. */
static bool is_url_char(char ch) {
  unsigned char u = (unsigned char)ch;
  return u > 0x20 && u != 0x7f && !strchr("\"'<>\\`", ch);
}

static const char *find_any(const char *s, const char *end, const char *set) {
  while (s < end && !strchr(set, *s)) s++;
  return s;
}

/* "a=1&b&c=3" → "a=REDACTED&REDACTED&c=REDACTED": the names say what kind of thing is there. */
static void redact_query(fl_buf_t *b, const char *q, const char *end) {
  while (q < end) {
    const char *amp = find_any(q, end, "&");
    const char *eq = find_any(q, amp, "=");
    if (eq < amp) {
      fl_buf_append(b, q, (size_t)(eq - q));
      fl_buf_lit(b, "=" FL_REDACTED);
    } else if (amp > q) {
      fl_buf_lit(b, FL_REDACTED);
    }
    if (amp < end) fl_buf_lit(b, "&");
    q = amp + (amp < end);
  }
}

void fl_redact_url(fl_buf_t *b, const char *url, size_t len) {
  const char *end = url + len;
  const char *sep = memmem(url, len, "://", 3);
  if (!sep) {
    fl_buf_lit(b, FL_REDACTED);
    return;
  }
  const char *host = sep + 3, *host_end = find_any(host, end, "/?#");
  fl_buf_append(b, url, (size_t)(host - url));
  const char *at = memrchr(host, '@', (size_t)(host_end - host));
  if (at) {                                     /* user:password@ */
    fl_buf_lit(b, FL_REDACTED "@");
    host = at + 1;
  }
  fl_buf_append(b, host, (size_t)(host_end - host));
  const char *path_end = find_any(host_end, end, "?#");
  if (path_end - host_end > 1) fl_buf_lit(b, "/" ELLIPSIS);
  else fl_buf_append(b, host_end, (size_t)(path_end - host_end));
  const char *query_end = find_any(path_end, end, "#");
  if (path_end < query_end) {                   /* starts with '?' */
    fl_buf_lit(b, "?");
    redact_query(b, path_end + 1, query_end);
  }
  if (query_end < end) fl_buf_lit(b, "#" ELLIPSIS);
}

char *fl_redact_text(const char *text) {
  fl_buf_t b = {0};
  const char *copied = text, *sep;
  while ((sep = strstr(copied, "://")) != NULL) {
    const char *start = sep;
    while (start > copied && is_scheme_char(start[-1])) start--;
    const char *stop = sep + 3;
    while (*stop && is_url_char(*stop)) stop++;
    if (start == sep) {                         /* "://" with no scheme before it: not a URL */
      fl_buf_append(&b, copied, (size_t)(stop - copied));
    } else {
      fl_buf_append(&b, copied, (size_t)(start - copied));
      fl_redact_url(&b, start, (size_t)(stop - start));
    }
    copied = stop;
  }
  fl_buf_str(&b, copied);
  fl_buf_append(&b, "", 1);                     /* the NUL, so that the result is a C string */
  if (b.err) {
    fl_buf_free(&b);
    return NULL;
  }
  return b.data;
}

static bool names_a_credential(const char *key) {
  static const char *const KEYS[] = {"authorization", "token", "password", "secret", "api_key"};
  for (size_t i = 0; i < FL_ARRAY_LEN(KEYS); i++)
    if (strcasecmp(key, KEYS[i]) == 0) return true;
  return false;
}

/* A string value with its URLs redacted; when the new text cannot be set, nothing of the old stays. */
static void redact_string(json_t *s) {
  const char *text = json_string_value(s);
  if (!strstr(text, "://")) return;
  char *safe = fl_redact_text(text);
  if (!safe || json_string_set(s, safe) != 0) json_string_set(s, FL_REDACTED);
  free(safe);
}

/* Every member of a headers object, or a credential's value, whatever its type. */
static void hide_values(json_t *j) {
  const char *key;
  json_t *v;
  void *tmp;
  if (!json_is_object(j)) return;
  json_object_foreach_safe(j, tmp, key, v) json_object_set_new(j, key, json_string(FL_REDACTED));
}

json_t *fl_redact_json(json_t *j) {
  const char *key;
  json_t *v;
  void *tmp;
  size_t i;
  if (json_is_string(j)) {
    redact_string(j);
  } else if (json_is_array(j)) {
    json_array_foreach(j, i, v) fl_redact_json(v);
  } else if (json_is_object(j)) {
    json_object_foreach_safe(j, tmp, key, v) {
      if (strcasecmp(key, "headers") == 0 && json_is_object(v)) hide_values(v);
      else if (names_a_credential(key) && !json_is_null(v)) json_object_set_new(j, key, json_string(FL_REDACTED));
      else fl_redact_json(v);
    }
  }
  return j;
}
