/* client.c — one request per connection (Connection: close), the answer read to EOF and framed
 * with h1.c, so chunked, Content-Length and close-delimited answers all work. */
#include "client.h"
#include "h1.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ANSWER ((size_t)64 << 20)   /* a scrape, an acceptance case or an admin answer: never more */
#define MAX_HEAD 81920u                 /* the answer's head: 80 KiB, what this client always took */
#define MAX_HEADERS 512u

typedef struct {
  fl_h1_t parser;
  fl_http_head_t head;      /* read to frame the answer; only the status and body are returned */
  fl_buf_t held;            /* a line of the head not complete yet, given again with the next bytes */
  fl_buf_t body;
  bool no_body;             /* the request was HEAD */
  bool drop_body;           /* count the body's bytes, keep none (fl_client_exchange) */
  fl_client_answer_t *seen; /* when not NULL: the head's variant and the times, from start_ns */
  uint64_t start_ns;
} answer_t;

static double ms_since(uint64_t start_ns) { return (double)(fl_now_ns() - start_ns) / 1e6; }

/* The head is in: what the caller of fl_client_exchange wants of it. */
static void note_head(answer_t *a) {
  if (!a->seen || a->parser.status < 200) return;
  size_t len;
  const char *v = fl_http_head_get(&a->head, "x-fledge-variant", &len);
  snprintf(a->seen->variant, sizeof a->seen->variant, "%.*s", v ? (int)FL_MIN(len, 15) : 0, v ? v : "");
  a->seen->head_ms = ms_since(a->start_ns);
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

/* Runs the parser over data: 1 once the answer is complete, 0 when it needs more bytes (*used
 * says how many it took), or FL_EPARSE (malformed: a.parser.error), FL_ELIMIT, FL_ENOMEM. */
static int parse(answer_t *a, const char *data, size_t len, size_t *used) {
  size_t off = 0, n, body_len;
  const char *body;
  for (;;) {
    fl_h1_event_t ev = fl_h1_feed(&a->parser, &a->head, data + off, len - off, &n, &body, &body_len);
    off += n;
    if (ev == FL_H1_HEAD) {
      note_head(a);
    } else if (ev == FL_H1_DATA) {
      if (a->seen && a->body.len == 0 && body_len && a->seen->first_byte_ms == 0)
        a->seen->first_byte_ms = ms_since(a->start_ns);
      if (a->drop_body) continue;
      if (a->body.len + body_len > MAX_ANSWER) return FL_ELIMIT;
      if (fl_buf_append(&a->body, body, body_len) != 0) return FL_ENOMEM;
    } else if (ev == FL_H1_END && a->parser.status < 200) {
      fl_h1_reset(&a->parser);              /* "100 Continue" and the like: the answer follows */
      a->parser.no_body = a->no_body;
      fl_http_head_reset(&a->head);
    } else if (ev == FL_H1_END) {
      return 1;
    } else if (ev == FL_H1_ERROR) {
      return FL_EPARSE;
    } else if (ev == FL_H1_MORE) {
      *used = off;
      return 0;
    }
  }
}

/* Bytes read: those the parser left the last time come first; what it leaves now is kept. */
static int take(answer_t *a, const char *data, size_t len) {
  if (a->held.len) {
    if (fl_buf_append(&a->held, data, len) != 0) return FL_ENOMEM;
    data = a->held.data;
    len = a->held.len;
  }
  size_t used = 0;
  int rc = parse(a, data, len, &used);
  if (rc != 0) return rc;
  if (data == a->held.data) {
    memmove(a->held.data, a->held.data + used, len - used);
    a->held.len = len - used;
    return 0;
  }
  return used < len ? fl_buf_append(&a->held, data + used, len - used) : 0;   /* held may have no memory yet */
}

/* Reads and parses until the answer is complete or the peer closes: 0 when complete. */
static int read_answer(int fd, answer_t *a, uint64_t deadline_ms) {
  char buf[16384];
  for (;;) {
    int rc = wait_ready(fd, POLLIN, deadline_ms);
    if (rc) return rc;
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return -errno;
    if (n == 0) return fl_h1_eof(&a->parser) == FL_H1_END ? 0 : FL_EPARSE;   /* an answer up to the close */
    rc = take(a, buf, (size_t)n);
    if (rc != 0) return rc < 0 ? rc : 0;
  }
}

/* One exchange: connect, send, read the answer into a (set up by the caller; freed by it). */
static int exchange(const fl_client_call_t *call, const char *token, answer_t *a, char *err, size_t err_cap) {
  uint64_t deadline_ms = fl_now_ms() + (uint64_t)call->timeout_ms;   /* one deadline for the whole exchange */
  int fd = connect_to(call->addr, deadline_ms);
  if (fd < 0) {
    snprintf(err, err_cap, "cannot connect to %s: %s", call->addr->text, strerror(-fd));
    return fd;
  }
  char head[2048];
  size_t blen = call->body ? strlen(call->body) : 0;
  int hlen = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n%s%s%s%s\r\n", call->method, call->path, call->addr->text, blen,
                      token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "",
                      call->headers ? call->headers : "");
  int rc = hlen < 0 || (size_t)hlen >= sizeof head ? FL_ELIMIT : 0;
  if (rc == 0) rc = send_all(fd, head, (size_t)hlen, deadline_ms);
  if (rc == 0 && blen) rc = send_all(fd, call->body, blen, deadline_ms);
  a->no_body = strcmp(call->method, "HEAD") == 0;
  fl_h1_init(&a->parser, true);
  a->parser.no_body = a->no_body;
  if (rc == 0 && fl_http_head_init(&a->head, MAX_HEAD, MAX_HEADERS) != 0) rc = FL_ENOMEM;
  if (rc == 0) rc = read_answer(fd, a, deadline_ms);
  close(fd);
  if (rc != 0) {
    bool garbled = rc == FL_EPARSE && a->parser.error;
    snprintf(err, err_cap, "%s %s on %s: %s%s", call->method, call->path, call->addr->text,
             garbled ? "malformed answer: " : "",
             garbled ? a->parser.error : rc == FL_EPARSE ? "incomplete answer"
             : rc == FL_ELIMIT ? "request head or answer too long" : rc == FL_ENOMEM ? "out of memory"
             : rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
  }
  return rc;
}

static void answer_free(answer_t *a) {
  fl_http_head_free(&a->head);
  fl_buf_free(&a->held);
  fl_buf_free(&a->body);
}

int fl_client_request(const fl_addr_t *addr, const char *method, const char *path, const char *body,
                      const char *token, int timeout_ms, int *status, char **out, char *err, size_t err_cap) {
  fl_client_call_t call = {.addr = addr, .method = method, .path = path, .body = body, .timeout_ms = timeout_ms};
  return fl_client_fetch(&call, token, status, out, err, err_cap);
}

int fl_client_fetch(const fl_client_call_t *call, const char *token, int *status, char **out, char *err,
                    size_t err_cap) {
  answer_t a = {0};
  int rc = exchange(call, token, &a, err, err_cap);
  if (rc == 0 && fl_buf_append(&a.body, "", 1) != 0) {
    snprintf(err, err_cap, "%s %s on %s: out of memory", call->method, call->path, call->addr->text);
    rc = FL_ENOMEM;
  }
  if (rc == 0) {
    *status = (int)a.parser.status;
    *out = a.body.data;
    a.body = (fl_buf_t){0};                 /* the caller's now */
  }
  answer_free(&a);
  return rc;
}

int fl_client_exchange(const fl_client_call_t *call, fl_client_answer_t *ans, char *err, size_t err_cap) {
  *ans = (fl_client_answer_t){0};
  answer_t a = {.drop_body = true, .seen = ans, .start_ns = fl_now_ns()};
  int rc = exchange(call, NULL, &a, err, err_cap);
  ans->status = rc == 0 ? (int)a.parser.status : 0;
  ans->total_ms = ms_since(a.start_ns);
  if (ans->first_byte_ms == 0) ans->first_byte_ms = ans->total_ms;
  answer_free(&a);
  return rc;
}
