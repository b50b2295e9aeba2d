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

typedef struct {
  fl_buf_t body;
  bool complete;
} answer_t;

static int on_body(http_parser *p, const char *at, size_t len) {
  return fl_buf_append(&((answer_t *)p->data)->body, at, len) ? -1 : 0;
}

static int on_complete(http_parser *p) {
  ((answer_t *)p->data)->complete = true;
  return 0;
}

static int send_all(int fd, const char *data, size_t len) {
  while (len) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -errno;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static int connect_to(const fl_addr_t *addr, int timeout_ms) {
  int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  return fd;
}

/* Reads and parses until the answer is complete or the peer closes. */
static int read_answer(int fd, http_parser *p, answer_t *a) {
  static const http_parser_settings settings = {.on_body = on_body, .on_message_complete = on_complete};
  char buf[16384];
  while (!a->complete) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    size_t done = http_parser_execute(p, &settings, buf, (size_t)n);
    if (HTTP_PARSER_ERRNO(p) != HPE_OK || (n > 0 && done != (size_t)n)) return FL_EPARSE;
    if (n == 0) break;
  }
  return a->complete ? 0 : FL_EPARSE;
}

int fl_client_request(const fl_addr_t *addr, const char *method, const char *path, const char *body,
                      const char *token, int timeout_ms, int *status, char **out, char *err, size_t err_cap) {
  int fd = connect_to(addr, timeout_ms);
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
  int rc = send_all(fd, head, (size_t)hlen);
  if (rc == 0 && blen) rc = send_all(fd, body, blen);
  answer_t a = {0};
  http_parser p;
  http_parser_init(&p, HTTP_RESPONSE);
  p.data = &a;
  if (rc == 0) rc = read_answer(fd, &p, &a);
  close(fd);
  if (rc != 0 || fl_buf_append(&a.body, "", 1) != 0) {
    snprintf(err, err_cap, "%s %s on %s: %s", method, path, addr->text,
             rc == FL_EPARSE ? "malformed or incomplete answer" : strerror(-rc));
    fl_buf_free(&a.body);
    return rc ? rc : FL_ENOMEM;
  }
  *status = (int)p.status_code;
  *out = a.body.data;
  return 0;
}
