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

int fl_addr_parse(const char *text, fl_addr_t *out) {
  char host[48]; /* INET6_ADDRSTRLEN + 2 */
  const char *port;
  memset(out, 0, sizeof *out);
  if (text[0] == '[') {
    const char *end = strchr(text, ']');
    if (!end || end[1] != ':' || (size_t)(end - text - 1) >= sizeof host) return FL_EINVAL;
    memcpy(host, text + 1, (size_t)(end - text - 1));
    host[end - text - 1] = '\0';
    port = end + 2;
  } else {
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host || strchr(text, ':') != colon) return FL_EINVAL;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    port = colon + 1;
  }
  uint16_t p;
  if (parse_port(port, &p) != 0) return FL_EINVAL;
  if (strcmp(host, "localhost") == 0) memcpy(host, "127.0.0.1", sizeof "127.0.0.1");
  struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(p);
    out->len = sizeof *v4;
    snprintf(out->text, sizeof out->text, "%s:%u", host, p);
  } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(p);
    out->len = sizeof *v6;
    snprintf(out->text, sizeof out->text, "[%s]:%u", host, p);
  } else {
    return FL_EINVAL;
  }
  return 0;
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

size_t fl_addr_ntop(const struct sockaddr *sa, char *buf, size_t cap) {
  const void *src = sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                              : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
  if (!inet_ntop(sa->sa_family, src, buf, (socklen_t)cap)) {
    buf[0] = '\0';
    return 0;
  }
  return strlen(buf);
}
