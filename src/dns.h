/* dns.h — a host name's addresses, looked up the blocking way: getaddrinfo, or, when
 * FLEDGE_HOSTS_FILE is set, that hosts file instead (tests point fledge at names they control).
 * Never called on a worker thread. */
#ifndef FL_DNS_H
#define FL_DNS_H

#include "netaddr.h"

#define FL_DNS_MAX_ADDRS 64            /* kept per name; beyond, the lowest in sort order are kept */

/* The hosts file that replaces the system's resolver (FLEDGE_HOSTS_FILE), or NULL. Any thread. */
const char *fl_dns_hosts_file(void);

/* Looks host up and writes its addresses, each with port, into out (at most cap), sorted and each
 * once; *n is their number. "localhost" is 127.0.0.1 without a lookup, as in fl_addr_parse.
 * Returns 0 (*n >= 1), FL_ENOENT (no such name, or no address for it) or FL_EIO (the lookup
 * failed: no resolver answered, a hosts file unreadable), with a message in err. Blocks for as
 * long as the resolver takes (seconds when DNS is down): any thread but a worker. */
int fl_dns_lookup(const char *host, uint16_t port, fl_addr_t *out, size_t cap, size_t *n, char *err, size_t err_cap);

#endif
