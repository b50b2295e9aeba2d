/* target.c — request targets: absolute-form split into authority and path, paths normalised
 * (RFC 3986 sections 6.2.2.2 and 5.2.4) before routes see them. See target.h. */
#include "target.h"

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

/* Percent-encoded unreserved characters become themselves ("%2e" is "."), so that no spelling
 * of a path escapes its normal form; an encoded '/' or '\' and a raw '\' are refused. Returns the
 * new length, or -1 with *why. */
static long decode_unreserved(char *s, size_t n, const char **why) {
  size_t out = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '\\') {
      *why = "backslash in the path";
      return -1;
    }
    int hi, lo;
    if (c == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
      unsigned char d = (unsigned char)(hi << 4 | lo);
      if (d == '/' || d == '\\') {
        *why = "encoded slash in the path";
        return -1;
      }
      if (unreserved(d)) {
        s[out++] = (char)d;
        i += 2;
        continue;
      }
    }
    s[out++] = c;
  }
  return (long)out;
}

size_t fl_path_remove_dots(char *s, size_t n) {
  if (n == 0 || s[0] != '/') return n;
  size_t in = 0, out = 0;
  while (in < n) {                        /* s[in] is the '/' that opens a segment */
    size_t seg = in + 1, end = seg;
    while (end < n && s[end] != '/') end++;
    size_t len = end - seg;
    bool last = end == n;
    if (len == 1 && s[seg] == '.') {
      if (last) s[out++] = '/';           /* "/a/." is "/a/" */
    } else if (len == 2 && s[seg] == '.' && s[seg + 1] == '.') {
      while (out > 0 && s[out - 1] != '/') out--;     /* drops the last segment kept, and its '/' */
      if (out > 0) out--;
      if (last) s[out++] = '/';
    } else {
      memmove(s + out, s + in, end - in);
      out += end - in;
    }
    in = end;
  }
  if (out == 0) s[out++] = '/';
  return out;
}

/* host, IPv4, [IPv6] with an optional :port; no user information. */
static bool valid_authority(const char *a, size_t n) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)a[i];
    if (!unreserved(c) && !strchr("%!$&'()*+,;=:[]", c)) return false;
  }
  return true;
}

/* "http://" or "https://" at the start (any case): its length, else 0. */
static size_t scheme_len(const char *u, size_t n) {
  if (n >= 7 && fl_streq_ci(u, 7, "http://")) return 7;
  if (n >= 8 && fl_streq_ci(u, 8, "https://")) return 8;
  return 0;
}

int fl_target_parse(char *url, size_t len, fl_target_t *t, const char **why) {
  *t = (fl_target_t){.path = url, .path_len = len, .query = ""};
  if (len == 1 && url[0] == '*') return 0;
  char *p = url;
  size_t n = len;
  if (n == 0 || url[0] != '/') {           /* absolute-form: scheme://authority[/path][?query] */
    size_t s = scheme_len(url, len);
    if (!s) {
      *why = "URL is neither a path nor http(s)://";
      return FL_EPARSE;
    }
    size_t a = s;
    while (a < len && url[a] != '/' && url[a] != '?') a++;
    if (!valid_authority(url + s, a - s)) {
      *why = "invalid authority in the URL";
      return FL_EPARSE;
    }
    t->authority = url + s;
    t->authority_len = a - s;
    p = url + a;
    n = len - a;
  }
  char *qm = memchr(p, '?', n);
  size_t path_n = qm ? (size_t)(qm - p) : n;
  if (qm) {
    t->query = qm + 1;
    t->query_len = n - path_n - 1;
  }
  if (path_n == 0) {
    t->path = "/";
    t->path_len = 1;
    return 0;
  }
  long d = decode_unreserved(p, path_n, why);
  if (d < 0) return FL_EPARSE;
  t->path = p;
  t->path_len = fl_path_remove_dots(p, (size_t)d);
  return 0;
}
