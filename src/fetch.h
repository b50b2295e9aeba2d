/* fetch.h — HTTP and HTTPS requests by URL through libcurl, for the webhook sender and the
 * backend-metrics scraper, each on a thread of its own: a request blocks (connect, TLS, DNS),
 * so it never runs on a worker or the control loop. Host names are looked up by libcurl, or in
 * FLEDGE_HOSTS_FILE when that is set (dns.h). */
#ifndef FL_FETCH_H
#define FL_FETCH_H

#include "common.h"

/* Can url be fetched: http:// or https://, a host (a name, an IPv4 address or [IPv6]), an
 * optional port, then a path. Writes "HOST:PORT" (the scheme's port when none is written) into
 * hostport when cap > 0, and on failure the reason into why. Returns 0 or FL_EINVAL. Any thread. */
int fl_fetch_check_url(const char *url, char *hostport, size_t cap, char *why, size_t why_cap);

/* url as it may be logged: scheme, host, port and path, without credentials, query or fragment
 * (they may hold tokens). Any thread. */
void fl_fetch_url_for_log(const char *url, char *out, size_t cap);

/* A thread's fetcher: one libcurl handle, so that connections kept alive and DNS answers are
 * reused from one request to the next. Owned by the thread that made it: fl_fetcher_free. */
typedef struct fl_fetcher fl_fetcher_t;
fl_fetcher_t *fl_fetcher_new(void);       /* NULL when out of memory */
void fl_fetcher_free(fl_fetcher_t *f);

/* One request: method (GET or POST) with a JSON body (NULL: none), all of it within timeout_ms.
 * On success returns 0, the status and, when out is not NULL, the answer's body NUL-terminated
 * (malloc'd: the caller frees). On failure returns FL_EIO (no answer: DNS, connect, TLS, a
 * timeout), FL_ELIMIT (an answer over 64 MiB) or FL_ENOMEM, with the reason in err. */
int fl_fetch(fl_fetcher_t *f, const char *url, const char *method, const char *body, uint32_t timeout_ms, int *status,
             char **out, char *err, size_t err_cap);

#endif
