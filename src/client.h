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

/* The same exchange with more said and more learnt (the load generator): extra header lines
 * ("Name: value\r\n"..., or NULL) are sent; the answer's x-fledge-variant is copied into
 * variant, and the times to its head and to its first body byte are measured from the connect.
 * The body is read and dropped. Returns as fl_client_request. */
typedef struct fl_client_call {
  const fl_addr_t *addr;
  const char *method, *path, *body, *headers;
  int timeout_ms;
} fl_client_call_t;

typedef struct fl_client_answer {
  int status;
  char variant[16];                 /* x-fledge-variant, or "" */
  double head_ms, first_byte_ms, total_ms;
} fl_client_answer_t;

int fl_client_exchange(const fl_client_call_t *call, fl_client_answer_t *ans, char *err, size_t err_cap);

/* fl_client_request with a call's header lines: the body kept, as fl_client_request keeps it (the
 * acceptance set sends a version's own headers this way). */
int fl_client_fetch(const fl_client_call_t *call, const char *token, int *status, char **out, char *err,
                    size_t err_cap);

#endif
