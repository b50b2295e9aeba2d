/* netaddr.c — parsing and matching of socket addresses and CIDR blocks. */
#include "netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

static int parse_port(const char *s, uint16_t *out) {
  if (!*s) return FL_EINVAL;
  unsigned long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return FL_EINVAL;
    v = v * 10 + (unsigned long)(*p - '0');
    if (v > 65535) return FL_EINVAL;
  }
  if (v == 0) return FL_EINVAL;
  *out = (uint16_t)v;
  return 0;
}

int fl_hostport_split(const char *text, char *host, size_t cap, uint16_t *port) {
  const char *host_start = text, *host_end, *port_text;
  if (text[0] == '[') {
    host_start = text + 1;
    host_end = strchr(text, ']');
    if (!host_end || host_end[1] != ':') return FL_EINVAL;
    port_text = host_end + 2;
  } else {
    host_end = strrchr(text, ':');
    if (!host_end || strchr(text, ':') != host_end) return FL_EINVAL;   /* IPv6 needs brackets */
    port_text = host_end + 1;
  }
  size_t len = (size_t)(host_end - host_start);
  if (len >= cap) return FL_EINVAL;
  if (parse_port(port_text, port) != 0) return FL_EINVAL;
  memcpy(host, host_start, len);
  host[len] = '\0';
  return 0;
}

int fl_addr_set(fl_addr_t *out, const struct sockaddr *sa, uint16_t port) {
  char host[INET6_ADDRSTRLEN];
  memset(out, 0, sizeof *out);
  if (sa->sa_family == AF_INET) {
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
    *v4 = *(const struct sockaddr_in *)sa;
    v4->sin_port = htons(port);
    out->len = sizeof *v4;
  } else if (sa->sa_family == AF_INET6) {
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
    *v6 = *(const struct sockaddr_in6 *)sa;
    v6->sin6_port = htons(port);
    out->len = sizeof *v6;
  } else {
    return FL_EINVAL;
  }
  fl_addr_ntop((const struct sockaddr *)&out->ss, host, sizeof host);
  snprintf(out->text, sizeof out->text, sa->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
  return 0;
}

int fl_addr_parse(const char *text, fl_addr_t *out) {
  char host[48]; /* INET6_ADDRSTRLEN + 2 */
  uint16_t p;
  union { struct sockaddr sa; struct sockaddr_in v4; struct sockaddr_in6 v6; } any;
  memset(out, 0, sizeof *out);
  memset(&any, 0, sizeof any);
  if (fl_hostport_split(text, host, sizeof host, &p) != 0) return FL_EINVAL;
  if (strcmp(host, "localhost") == 0) memcpy(host, "127.0.0.1", sizeof "127.0.0.1");
  if (inet_pton(AF_INET, host, &any.v4.sin_addr) == 1) any.sa.sa_family = AF_INET;
  else if (inet_pton(AF_INET6, host, &any.v6.sin6_addr) == 1) any.sa.sa_family = AF_INET6;
  else return FL_EINVAL;
  return fl_addr_set(out, &any.sa, p);
}

/* A label: letters, digits, '-' and '_' (service names such as _grpc), no '-' at either end. */
static bool label_ok(const char *s, size_t len) {
  if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-') return false;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
    if (!alnum && ch != '-' && ch != '_') return false;
  }
  return true;
}

bool fl_host_is_name(const char *s) {
  size_t total = strlen(s);
  if (total == 0 || total > 253) return false;
  const char *label = s, *last = s;
  for (;;) {
    const char *dot = strchr(label, '.');
    size_t len = dot ? (size_t)(dot - label) : strlen(label);
    if (!label_ok(label, len)) return false;
    last = label;
    if (!dot || dot[1] == '\0') break;    /* "svc.cluster.local.": a rooted name */
    label = dot + 1;
  }
  return strspn(last, "0123456789.") != strlen(last);
}

int fl_cidr_parse(const char *text, fl_cidr_t *out) {
  char host[64];
  const char *slash = strchr(text, '/');
  size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
  if (hlen == 0 || hlen >= sizeof host) return FL_EINVAL;
  memcpy(host, text, hlen);
  host[hlen] = '\0';
  memset(out, 0, sizeof *out);
  unsigned max;
  if (inet_pton(AF_INET, host, out->bytes) == 1) {
    out->family = AF_INET;
    max = 32;
  } else if (inet_pton(AF_INET6, host, out->bytes) == 1) {
    out->family = AF_INET6;
    max = 128;
  } else {
    return FL_EINVAL;
  }
  out->prefix = max;
  if (slash) {
    const char *p = slash + 1;
    unsigned v = 0;
    if (!*p) return FL_EINVAL;
    for (; *p; p++) {
      if (*p < '0' || *p > '9' || v > max) return FL_EINVAL;
      v = v * 10 + (unsigned)(*p - '0');
    }
    if (v > max) return FL_EINVAL;
    out->prefix = v;
  }
  for (unsigned bit = out->prefix; bit < max; bit++) out->bytes[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
  return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix) {
  unsigned full = prefix / 8, rest = prefix % 8;
  if (memcmp(a, b, full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

bool fl_cidr_contains(const fl_cidr_t *c, const struct sockaddr *sa) {
  static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  const uint8_t *bytes;
  int family = sa->sa_family;
  if (family == AF_INET) {
    bytes = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
  } else if (family == AF_INET6) {
    bytes = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (c->family == AF_INET && memcmp(bytes, v4mapped, 12) == 0) {
      bytes += 12;
      family = AF_INET;
    }
  } else {
    return false;
  }
  return family == c->family && prefix_equal(bytes, c->bytes, c->prefix);
}

bool fl_cidr_any(const fl_cidr_t *blocks, size_t n, const struct sockaddr *sa) {
  for (size_t i = 0; i < n; i++)
    if (fl_cidr_contains(&blocks[i], sa)) return true;
  return false;
}

/* Dotted quad without stdio: glibc's inet_ntop formats IPv4 through sprintf, once a request. */
static size_t ntop4(const uint8_t *a, char *buf, size_t cap) {
  char tmp[16], *o = tmp;
  for (int i = 0; i < 4; i++) {
    unsigned v = a[i];
    if (v >= 100) *o++ = (char)('0' + v / 100);
    if (v >= 10) *o++ = (char)('0' + v / 10 % 10);
    *o++ = (char)('0' + v % 10);
    *o++ = i < 3 ? '.' : '\0';
  }
  size_t n = (size_t)(o - tmp) - 1;
  if (n >= cap) {
    if (cap) buf[0] = '\0';
    return 0;
  }
  memcpy(buf, tmp, n + 1);
  return n;
}

size_t fl_addr_ntop(const struct sockaddr *sa, char *buf, size_t cap) {
  if (sa->sa_family == AF_INET) return ntop4((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr, buf, cap);
  const void *src = sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                              : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
  if (!inet_ntop(sa->sa_family, src, buf, (socklen_t)cap)) {
    buf[0] = '\0';
    return 0;
  }
  return strlen(buf);
}

/* ---- the client behind proxies ---- */

/* One hop's address: "1.2.3.4", "1.2.3.4:5678", "[2001:db8::1]", "[2001:db8::1]:80" or a bare
 * "2001:db8::1" (X-Forwarded-For writes it so). Surrounding quotes and blanks are ignored. */
static bool hop_address(const char *s, size_t n, struct sockaddr_storage *out) {
  while (n && (*s == ' ' || *s == '\t' || *s == '"')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '"')) n--;
  char host[64];
  if (n && s[0] == '[') {
    const char *end = memchr(s, ']', n);
    if (!end) return false;
    s++;
    n = (size_t)(end - s);
  } else {
    const char *colon = memchr(s, ':', n);
    if (colon && !memchr(colon + 1, ':', n - (size_t)(colon + 1 - s))) n = (size_t)(colon - s);   /* v4:port */
  }
  if (n == 0 || n >= sizeof host) return false;
  memcpy(host, s, n);
  host[n] = '\0';
  memset(out, 0, sizeof *out);
  struct sockaddr_in *v4 = (struct sockaddr_in *)out;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    return true;
  }
  return false;
}

/* The "for=" parameter of one Forwarded element ("for=1.2.3.4;proto=https"). */
static bool forwarded_for(const char *s, size_t n, const char **v, size_t *vn) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ';')) i++;
    size_t start = i;
    while (i < n && s[i] != ';') i++;
    if (i - start > 4 && fl_streq_ci(s + start, 4, "for=")) {
      *v = s + start + 4;
      *vn = i - start - 4;
      return true;
    }
  }
  return false;
}

int fl_forwarded_walk(const char *v, size_t len, bool rfc7239, const fl_cidr_t *trusted, size_t n,
                      struct sockaddr_storage *hop) {
  size_t end = len;
  while (end > 0) {
    size_t start = end;
    while (start > 0 && v[start - 1] != ',') start--;
    const char *a = v + start;
    size_t an = end - start;
    bool blank = true;
    for (size_t i = 0; i < an; i++) blank = blank && (a[i] == ' ' || a[i] == '\t');
    if (!blank) {
      if (rfc7239 && !forwarded_for(a, an, &a, &an)) return -1;
      if (!hop_address(a, an, hop)) return -1;
      if (!fl_cidr_any(trusted, n, (const struct sockaddr *)hop)) return 1;
    }
    end = start ? start - 1 : 0;
  }
  return 0;
}
