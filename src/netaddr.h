/* netaddr.h — socket addresses ("127.0.0.1:8080", "[::1]:80") and CIDR blocks.
 * Pure functions; safe on any thread. */
#ifndef FL_NETADDR_H
#define FL_NETADDR_H

#include "common.h"
#include <sys/socket.h>
#include <netinet/in.h>

typedef struct fl_addr {
  struct sockaddr_storage ss;
  socklen_t len;
  char text[64];               /* as written by the user, normalised: "127.0.0.1:9001" */
} fl_addr_t;

typedef struct fl_cidr {
  int family;                  /* AF_INET or AF_INET6 */
  unsigned prefix;             /* 0..32 or 0..128 */
  uint8_t bytes[16];           /* network address, host bits cleared */
} fl_cidr_t;

/* Parses "HOST:PORT" where HOST is a numeric IPv4 address, "[IPv6]" or
 * "localhost" (taken as 127.0.0.1 without a lookup). Other names are not looked up here: they
 * are FL_EINVAL, and the callers that accept names (resolver.h) split them with
 * fl_hostport_split. Returns 0 or FL_EINVAL. */
int fl_addr_parse(const char *text, fl_addr_t *out);

/* Splits "HOST:PORT" or "[IPv6]:PORT" into the host (without brackets, at most cap - 1 bytes)
 * and a port from 1 to 65535. Returns 0 or FL_EINVAL. */
int fl_hostport_split(const char *text, char *host, size_t cap, uint16_t *port);

/* Is s a host name worth a lookup: dot-separated labels of letters, digits, '-' and '_', each 1
 * to 63 bytes, not starting or ending with '-', 253 bytes at most (a final dot allowed), and
 * not a number (a name whose last label is all digits, like 1.2.3, is a mistyped address). */
bool fl_host_is_name(const char *s);

/* Fills out with the address of sa (AF_INET or AF_INET6) on port, and its text as fl_addr_parse
 * writes it ("10.0.0.5:8000", "[fd00::5]:8000"). Returns 0 or FL_EINVAL (another family). */
int fl_addr_set(fl_addr_t *out, const struct sockaddr *sa, uint16_t port);

/* Parses "10.0.0.0/8", "::1/128" or a bare address (a /32 or /128). */
int fl_cidr_parse(const char *text, fl_cidr_t *out);

/* True when sa (AF_INET or AF_INET6; v4-mapped v6 counts as v4) lies in c. */
bool fl_cidr_contains(const fl_cidr_t *c, const struct sockaddr *sa);

/* True when sa lies in any of the n blocks. */
bool fl_cidr_any(const fl_cidr_t *blocks, size_t n, const struct sockaddr *sa);

/* Walks the hops of one X-Forwarded-For value (or, rfc7239, one Forwarded value's "for="
 * parameters) from right to left, as a proxy chain adds them: returns 1 at the first hop that is
 * not in the trusted blocks (the client, in *hop), 0 when every hop is trusted (*hop is the
 * leftmost, if any: the caller goes on with an earlier header line), -1 at a hop that is not an
 * address ("unknown", "_hidden", garbage: the chain cannot be followed past it). */
int fl_forwarded_walk(const char *v, size_t len, bool rfc7239, const fl_cidr_t *trusted, size_t n,
                      struct sockaddr_storage *hop);

/* Writes the numeric address (no port) of sa into buf; returns its length. */
size_t fl_addr_ntop(const struct sockaddr *sa, char *buf, size_t cap);

#endif
