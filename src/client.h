/* client.h — a small blocking HTTP/1.1 client: the command-line tools talking to the admin
 * listener, and the webhook and acceptance threads. Never used on a worker or control thread. */
#ifndef FL_CLIENT_H
#define FL_CLIENT_H

#include "netaddr.h"

/* Sends METHOD path to addr with an optional body (and "Authorization: Bearer token" when token
 * is not NULL); connecting, sending and reading the whole answer must all fit in timeout_ms.
 * On success returns 0, the status and a malloc'd NUL-terminated body (caller frees). On failure
 * returns a negative errno (-ETIMEDOUT past the deadline), FL_EPARSE (a malformed answer, in
 * h1.c's words, or an incomplete one), FL_ELIMIT (an answer over 64 MiB) or FL_ENOMEM, and
 * writes a message into err. */
int fl_client_request(const fl_addr_t *addr, const char *method, const char *path, const char *body,
                      const char *token, int timeout_ms, int *status, char **out, char *err, size_t err_cap);

#endif
