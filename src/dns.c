/* dns.c — blocking name lookups for the resolver (resolver.c) and the URL fetcher (fetch.c).
 * The results are sorted so that two lookups of an unchanged name compare equal, whatever order
 * the resolver rotated them into. */
#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

const char *fl_dns_hosts_file(void) {
  const char *path = getenv("FLEDGE_HOSTS_FILE");
  return path && *path ? path : NULL;
}

static int addr_cmp(const void *a, const void *b) {
  const fl_addr_t *x = a, *y = b;
  if (x->ss.ss_family != y->ss.ss_family) return x->ss.ss_family == AF_INET ? -1 : 1;
  if (x->ss.ss_family == AF_INET)
    return memcmp(&((const struct sockaddr_in *)&x->ss)->sin_addr, &((const struct sockaddr_in *)&y->ss)->sin_addr, 4);
  return memcmp(&((const struct sockaddr_in6 *)&x->ss)->sin6_addr, &((const struct sockaddr_in6 *)&y->ss)->sin6_addr, 16);
}

/* Sorts the n found addresses, drops repeats and keeps at most cap; returns how many are kept. */
static size_t sort_unique(fl_addr_t *found, size_t n, fl_addr_t *out, size_t cap) {
  qsort(found, n, sizeof *found, addr_cmp);
  size_t kept = 0;
  for (size_t i = 0; i < n && kept < cap; i++)
    if (i == 0 || addr_cmp(&found[i - 1], &found[i]) != 0) out[kept++] = found[i];
  return kept;
}

/* Adds the address in text (no port) to found when it parses and there is room. */
static void add_numeric(const char *text, uint16_t port, fl_addr_t *found, size_t cap, size_t *n) {
  union { struct sockaddr sa; struct sockaddr_in v4; struct sockaddr_in6 v6; } any;
  memset(&any, 0, sizeof any);
  if (inet_pton(AF_INET, text, &any.v4.sin_addr) == 1) any.sa.sa_family = AF_INET;
  else if (inet_pton(AF_INET6, text, &any.v6.sin6_addr) == 1) any.sa.sa_family = AF_INET6;
  else return;
  if (*n < cap && fl_addr_set(&found[*n], &any.sa, port) == 0) (*n)++;
}

/* hosts(5): "ADDRESS NAME [ALIAS...]" per line, '#' to the end of a line is a comment; every line
 * naming host counts (as glibc's `multi on`). */
static int lookup_file(const char *path, const char *host, uint16_t port, fl_addr_t *found, size_t cap, size_t *n,
                       char *err, size_t err_cap) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, err_cap, "cannot read %s (FLEDGE_HOSTS_FILE): %s", path, strerror(errno));
    return FL_EIO;
  }
  char *line = NULL, *save;
  size_t line_cap = 0;
  while (getline(&line, &line_cap, f) > 0) {
    line[strcspn(line, "#\n")] = '\0';
    const char *addr = strtok_r(line, " \t\r", &save);
    for (const char *name; addr && (name = strtok_r(NULL, " \t\r", &save)) != NULL;)
      if (strcasecmp(name, host) == 0) {
        add_numeric(addr, port, found, cap, n);
        break;
      }
  }
  free(line);
  fclose(f);
  if (*n == 0) snprintf(err, err_cap, "%s is not in %s (FLEDGE_HOSTS_FILE)", host, path);
  return *n ? 0 : FL_ENOENT;
}

static int lookup_system(const char *host, uint16_t port, fl_addr_t *found, size_t cap, size_t *n, char *err,
                         size_t err_cap) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0) {
    snprintf(err, err_cap, "%s", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    return rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_ADDRFAMILY ? FL_ENOENT : FL_EIO;
  }
  for (struct addrinfo *ai = res; ai && *n < cap; ai = ai->ai_next)
    if (fl_addr_set(&found[*n], ai->ai_addr, port) == 0) (*n)++;
  freeaddrinfo(res);
  if (*n == 0) snprintf(err, err_cap, "no IPv4 or IPv6 address");
  return *n ? 0 : FL_ENOENT;
}

int fl_dns_lookup(const char *host, uint16_t port, fl_addr_t *out, size_t cap, size_t *n, char *err, size_t err_cap) {
  size_t found_cap = 4 * FL_DNS_MAX_ADDRS, n_found = 0;
  fl_addr_t *found = calloc(found_cap, sizeof *found);
  *n = 0;
  if (!found) {
    snprintf(err, err_cap, "out of memory");
    return FL_ENOMEM;
  }
  const char *file = fl_dns_hosts_file();
  int rc;
  if (strcasecmp(host, "localhost") == 0) {
    add_numeric("127.0.0.1", port, found, found_cap, &n_found);
    rc = 0;
  } else if (file) {
    rc = lookup_file(file, host, port, found, found_cap, &n_found, err, err_cap);
  } else {
    rc = lookup_system(host, port, found, found_cap, &n_found, err, err_cap);
  }
  if (rc == 0) *n = sort_unique(found, n_found, out, FL_MIN(cap, (size_t)FL_DNS_MAX_ADDRS));
  free(found);
  return rc;
}
