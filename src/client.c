/* client.c — one request per connection (Connection: close), the answer read to EOF and framed
 * with http-parser, so chunked and Content-Length answers both work. */
#include "client.h"
#include "http.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ANSWER ((size_t)64 << 20)   /* a scrape, an acceptance case or an admin answer: never more */

typedef struct {
  fl_buf_t body;
  bool complete;
  int err;                  /* FL_ELIMIT (over MAX_ANSWER) or FL_ENOMEM: the body callback stopped */
} answer_t;

static int on_body(http_parser *p, const char *at, size_t len) {
  answer_t *a = p->data;
  a->err = a->body.len + len > MAX_ANSWER ? FL_ELIMIT : fl_buf_append(&a->body, at, len);
  return a->err ? -1 : 0;
}

static int on_complete(http_parser *p) {
  ((answer_t *)p->data)->complete = true;
  return 0;
}

/* Waits until fd is ready for events or the deadline passes (-ETIMEDOUT). */
static int wait_ready(int fd, short events, uint64_t deadline_ms) {
  uint64_t now = fl_now_ms();
  if (now >= deadline_ms) return -ETIMEDOUT;
  struct pollfd p = {.fd = fd, .events = events};
  int rc = poll(&p, 1, (int)(deadline_ms - now));
  return rc > 0 ? 0 : rc == 0 ? -ETIMEDOUT : -errno;
}

static int send_all(int fd, const char *data, size_t len, uint64_t deadline_ms) {
  while (len) {
    int rc = wait_ready(fd, POLLOUT, deadline_ms);
    if (rc) return rc;
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return -errno;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static int connect_to(const fl_addr_t *addr, uint64_t deadline_ms) {
  int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  int rc = connect(fd, (const struct sockaddr *)&addr->ss, addr->len) == 0 ? 0 : -errno;
  if (rc == -EINPROGRESS && (rc = wait_ready(fd, POLLOUT, deadline_ms)) == 0) {
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    rc = -soerr;
  }
  if (rc != 0) {
    close(fd);
    return rc;
  }
  return fd;
}

/* Reads and parses until the answer is complete or the peer closes. */
static int read_answer(int fd, http_parser *p, answer_t *a, uint64_t deadline_ms) {
  static const http_parser_settings settings = {.on_body = on_body, .on_message_complete = on_complete};
  char buf[16384];
  while (!a->complete) {
    int rc = wait_ready(fd, POLLIN, deadline_ms);
    if (rc) return rc;
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return -errno;
    size_t done = http_parser_execute(p, &settings, buf, (size_t)n);
    if (a->err) return a->err;
    if (HTTP_PARSER_ERRNO(p) != HPE_OK || (n > 0 && done != (size_t)n)) return FL_EPARSE;
    if (n == 0) break;
  }
  return a->complete ? 0 : FL_EPARSE;
}

int fl_client_request(const fl_addr_t *addr, const char *method, const char *path, const char *body,
                      const char *token, int timeout_ms, int *status, char **out, char *err, size_t err_cap) {
  uint64_t deadline_ms = fl_now_ms() + (uint64_t)timeout_ms;   /* one deadline for the whole exchange */
  int fd = connect_to(addr, deadline_ms);
  if (fd < 0) {
    snprintf(err, err_cap, "cannot connect to %s: %s", addr->text, strerror(-fd));
    return fd;
  }
  char head[1024];
  size_t blen = body ? strlen(body) : 0;
  int hlen = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n%s%s%s\r\n", method, path, addr->text, blen,
                      token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
  if (hlen < 0 || (size_t)hlen >= sizeof head) {
    close(fd);
    snprintf(err, err_cap, "request head too long");
    return FL_ELIMIT;
  }
  int rc = send_all(fd, head, (size_t)hlen, deadline_ms);
  if (rc == 0 && blen) rc = send_all(fd, body, blen, deadline_ms);
  answer_t a = {0};
  http_parser p;
  http_parser_init(&p, HTTP_RESPONSE);
  p.data = &a;
  if (rc == 0) rc = read_answer(fd, &p, &a, deadline_ms);
  close(fd);
  if (rc == 0 && fl_buf_append(&a.body, "", 1) != 0) rc = FL_ENOMEM;
  if (rc != 0) {
    bool garbled = rc == FL_EPARSE && HTTP_PARSER_ERRNO(&p) != HPE_OK;
    snprintf(err, err_cap, "%s %s on %s: %s%s", method, path, addr->text, garbled ? "malformed answer: " : "",
             garbled ? fl_http_error_words(&p, NULL) : rc == FL_EPARSE ? "incomplete answer"
             : rc == FL_ELIMIT ? "answer over 64 MiB" : rc == FL_ENOMEM ? "out of memory"
             : rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
    fl_buf_free(&a.body);
    return rc;
  }
  *status = (int)p.status_code;
  *out = a.body.data;
  return 0;
}
