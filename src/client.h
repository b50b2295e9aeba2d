/* client.h — a small blocking HTTP/1.1 client for the command-line tools (fledge stats and the
 * like) talking to the admin listener. Never used by the gateway's threads. */
#ifndef FL_CLIENT_H
#define FL_CLIENT_H

#include "netaddr.h"

/* Sends METHOD path to addr with an optional body (and "Authorization: Bearer token" when token
 * is not NULL) and waits up to timeout_ms for the whole
 * answer. On success returns 0, the status and a malloc'd NUL-terminated body (caller frees).
 * On failure returns a negative errno or FL_EPARSE and writes a message into err. */
int fl_client_request(const fl_addr_t *addr, const char *method, const char *path, const char *body,
                      const char *token, int timeout_ms, int *status, char **out, char *err, size_t err_cap);

#endif
