/* sock.c — TCP sockets for the data path: recv, send(msg), a write queue, connects, accept4. */
#include "sock.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <unistd.h>

#define FL_IOV_MAX 16
#define FL_READS_PER_WAKE 4          /* a full buffer may mean more is waiting: read again, a few times */
#define FL_ACCEPTS_PER_WAKE 64

struct fl_sock_chunk {
  fl_sock_chunk_t *next;
  size_t len;
  char data[];
};

static void on_poll(uv_poll_t *p, int status, int events);

static int sys_error(void) { return uv_translate_sys_error(errno); }

/* The poll watches what is wanted now: reads when on, writability while connecting or queued;
 * with TLS also what an SSL call waits for, and writability as the wake-up for owed reads. */
static void update_poll(fl_sock_t *s) {
  if (s->closing) return;
  bool r = s->reading || s->tls_write_wants_read || (s->handshaking && !s->tls_hs_wants_write);
  bool w = s->connecting || (s->handshaking && s->tls_hs_wants_write) || (s->queued && !s->tls_write_wants_read) ||
           s->tls_read_wants_write || (s->tls_pending && s->reading);
  int want = (r ? UV_READABLE : 0) | (w ? UV_WRITABLE : 0);
  if (want == s->events) return;
  s->events = want;
  if (want) uv_poll_start(&s->poll, want, on_poll);
  else uv_poll_stop(&s->poll);
}

int fl_sock_open(fl_sock_t *s, uv_loop_t *loop, int fd, char *rbuf, size_t rbuf_len) {
  void *data = s->data;
  memset(s, 0, sizeof *s);
  s->data = data;
  int rc = uv_poll_init(loop, &s->poll, fd);
  if (rc < 0) return rc;
  s->poll.data = s;
  s->fd = fd;
  s->rbuf = rbuf;
  s->rbuf_len = rbuf_len;
  return 0;
}

int fl_sock_connect(fl_sock_t *s, uv_loop_t *loop, const struct sockaddr *sa, socklen_t len, char *rbuf,
                    size_t rbuf_len, fl_sock_connect_cb cb) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return sys_error();
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc;
  do rc = connect(fd, sa, len);
  while (rc < 0 && errno == EINTR);
  int err = rc < 0 && errno != EINPROGRESS ? errno : 0;
  if (err && err != ECONNREFUSED) {   /* refused is the backend's answer, told like a late one */
    close(fd);
    return uv_translate_sys_error(err);
  }
  rc = fl_sock_open(s, loop, fd, rbuf, rbuf_len);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  s->connect_error = err ? uv_translate_sys_error(err) : 0;
  s->connecting = true;              /* the callback comes from the poll: writable, or the error */
  s->on_connect = cb;
  update_poll(s);
  return 0;
}

void fl_sock_read(fl_sock_t *s, bool on) {
  s->reading = on;
  update_poll(s);
}

static void drop_queue(fl_sock_t *s) {
  while (s->queue) {
    fl_sock_chunk_t *next = s->queue->next;
    free(s->queue);
    s->queue = next;
  }
  s->queue_last = NULL;
  s->queue_sent = 0;
  s->queued = 0;
}

static void on_poll_closed(uv_handle_t *h) {
  fl_sock_t *s = h->data;
  if (s->on_close) s->on_close(s);
}

void fl_sock_close(fl_sock_t *s, fl_sock_close_cb cb) {
  if (s->closing) return;
  s->closing = true;
  s->on_close = cb;
  drop_queue(s);
  if (s->ssl) {
    if (!s->tls_reason) SSL_shutdown(s->ssl);   /* close_notify, if the socket takes it now */
    SSL_free(s->ssl);
    s->ssl = NULL;
    ERR_clear_error();
  }
  uv_close((uv_handle_t *)&s->poll, on_poll_closed);   /* stops the poll: the fd can go now */
  close(s->fd);
  s->fd = -1;
}

/* ---- TLS ---- */

void fl_sock_start_tls(fl_sock_t *s, SSL *ssl) {
  SSL_set_fd(ssl, s->fd);
  s->ssl = ssl;
}

/* An SSL call returned rc <= 0: EAGAIN with the readiness it waits for noted, 0 for the end of
 * the stream, or -1 with errno set (EPROTO: a TLS failure, in words in tls_reason). */
static int tls_failed(fl_sock_t *s, int rc, bool reading) {
  int e = errno;
  switch (SSL_get_error(s->ssl, rc)) {
  case SSL_ERROR_WANT_READ:
    if (!reading) s->tls_write_wants_read = true;
    errno = EAGAIN;
    return -1;
  case SSL_ERROR_WANT_WRITE:
    if (reading) s->tls_read_wants_write = true;
    errno = EAGAIN;
    return -1;
  case SSL_ERROR_ZERO_RETURN:
    return 0;
  case SSL_ERROR_SYSCALL:
    ERR_clear_error();
    if (e == 0) return 0;           /* EOF (read) */
    errno = e;
    return -1;
  default:
    s->tls_reason = ERR_reason_error_string(ERR_peek_error());
    if (SSL_get_verify_result(s->ssl) != X509_V_OK)   /* a backend's certificate: say what is wrong with it */
      s->tls_reason = X509_verify_cert_error_string(SSL_get_verify_result(s->ssl));
    if (!s->tls_reason) s->tls_reason = "TLS protocol error";
    ERR_clear_error();
    errno = EPROTO;
    return -1;
  }
}

static ssize_t tls_recv(fl_sock_t *s) {
  errno = 0;
  int rc = SSL_read(s->ssl, s->rbuf, (int)FL_MIN(s->rbuf_len, (size_t)INT_MAX));
  return rc > 0 ? rc : tls_failed(s, rc, true);
}

/* Plaintext through SSL_write, a buffer at a time (partial writes: a record at a time). A write
 * that waits is retried from the queue with the same bytes first, as OpenSSL wants. */
static ssize_t tls_send_iov(fl_sock_t *s, const struct iovec *iov, unsigned n) {
  size_t done = 0;
  for (unsigned i = 0; i < n; i++)
    for (size_t off = 0; off < iov[i].iov_len;) {
      errno = 0;
      int rc = SSL_write(s->ssl, (const char *)iov[i].iov_base + off, (int)FL_MIN(iov[i].iov_len - off, (size_t)INT_MAX));
      if (rc <= 0) {
        if (tls_failed(s, rc, false) == 0) errno = EPIPE;
        return errno == EAGAIN ? (ssize_t)done : -1;
      }
      off += (size_t)rc;
      done += (size_t)rc;
    }
  return (ssize_t)done;
}

/* ---- writing ---- */

/* One buffer goes by send: the kernel then copies no message header and imports no vector. */
static ssize_t send_iov(fl_sock_t *s, struct iovec *iov, unsigned n) {
  struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
  ssize_t rc;
  if (s->ssl) {
    rc = tls_send_iov(s, iov, n);
    return rc >= 0 ? rc : sys_error();
  }
  do rc = n == 1 ? send(s->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT)
                 : sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (rc < 0 && errno == EINTR);
  if (rc >= 0) return rc;
  return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : sys_error();
}

/* Copies bufs past their first `skip` bytes into one chunk at the queue's end. */
static int enqueue(fl_sock_t *s, const uv_buf_t *bufs, unsigned n, size_t skip, size_t total) {
  fl_sock_chunk_t *c = malloc(sizeof *c + total - skip);
  if (!c) return UV_ENOMEM;
  c->next = NULL;
  c->len = 0;
  for (unsigned i = 0; i < n; i++) {
    size_t take = bufs[i].len;
    if (skip >= take) {
      skip -= take;
      continue;
    }
    memcpy(c->data + c->len, bufs[i].base + skip, take - skip);
    c->len += take - skip;
    skip = 0;
  }
  if (s->queue_last) s->queue_last->next = c;
  else s->queue = c;
  s->queue_last = c;
  s->queued += c->len;
  update_poll(s);
  return 0;
}

ssize_t fl_sock_write(fl_sock_t *s, const uv_buf_t *bufs, unsigned n) {
  if (s->closing) return UV_EPIPE;
  size_t total = 0, sent = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  if (total == 0) return 0;
  if (!s->queued && !s->connecting && n <= FL_IOV_MAX) {   /* in order: only when nothing waits */
    struct iovec iov[FL_IOV_MAX];
    for (unsigned i = 0; i < n; i++) iov[i] = (struct iovec){.iov_base = bufs[i].base, .iov_len = bufs[i].len};
    ssize_t rc = send_iov(s, iov, n);
    if (rc < 0) return rc;
    sent = (size_t)rc;
    if (sent == total) return 0;
  }
  int rc = enqueue(s, bufs, n, sent, total);
  return rc < 0 ? rc : (ssize_t)(total - sent);
}

/* Sends queued chunks while the socket takes them; tells the owner how much left, or the error. */
static void flush(fl_sock_t *s) {
  size_t done = 0;
  while (s->queue) {
    struct iovec iov[FL_IOV_MAX];
    unsigned n = 0;
    size_t want = 0;
    for (fl_sock_chunk_t *c = s->queue; c && n < FL_IOV_MAX; c = c->next, n++) {
      size_t off = c == s->queue ? s->queue_sent : 0;
      iov[n] = (struct iovec){.iov_base = c->data + off, .iov_len = c->len - off};
      want += c->len - off;
    }
    ssize_t rc = send_iov(s, iov, n);
    if (rc < 0) {
      drop_queue(s);
      update_poll(s);
      s->on_sent(s, 0, (int)rc);
      return;
    }
    size_t left = (size_t)rc;
    done += left;
    s->queued -= left;
    while (left && s->queue) {
      size_t in_first = s->queue->len - s->queue_sent;
      if (left < in_first) {
        s->queue_sent += left;
        break;
      }
      left -= in_first;
      fl_sock_chunk_t *next = s->queue->next;
      free(s->queue);
      s->queue = next;
      s->queue_sent = 0;
    }
    if (!s->queue) s->queue_last = NULL;
    if ((size_t)rc < want) break;      /* the socket is full */
  }
  update_poll(s);
  if (done) s->on_sent(s, done, 0);
}

/* ---- reading, connecting, readiness ---- */

static void fill(fl_sock_t *s) {
  if (s->read_error && s->reading && !s->closing) {
    int err = s->read_error;
    s->read_error = 0;
    fl_sock_read(s, false);
    s->on_read(s, err, NULL);
    return;
  }
  for (int i = 0; i < FL_READS_PER_WAKE && s->reading && !s->closing; i++) {
    ssize_t n;
    do n = s->ssl ? tls_recv(s) : recv(s->fd, s->rbuf, s->rbuf_len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {                      /* the end, or an error: reading stops, the owner decides */
      int err = n == 0 ? UV_EOF : sys_error();
      fl_sock_read(s, false);
      s->on_read(s, err, NULL);
      return;
    }
    s->on_read(s, n, s->rbuf);
    if ((size_t)n < s->rbuf_len && !(s->ssl && SSL_has_pending(s->ssl))) return;
  }
  s->tls_pending = s->ssl && !s->closing && SSL_has_pending(s->ssl);   /* left for the next turn */
}

/* A client connection's handshake, run before its connect is told: a failure is the connect's
 * (UV_EPROTO when TLS itself failed, or the backend closed during it, in words in tls_reason). */
static void handshake(fl_sock_t *s) {
  errno = 0;
  int rc = SSL_do_handshake(s->ssl);
  int err = 0;
  if (rc != 1) {
    int e = errno, why = SSL_get_error(s->ssl, rc);
    if (why == SSL_ERROR_WANT_READ || why == SSL_ERROR_WANT_WRITE) {
      s->tls_hs_wants_write = why == SSL_ERROR_WANT_WRITE;
      update_poll(s);
      return;
    }
    errno = e;
    if (tls_failed(s, rc, false) == 0) {
      s->tls_reason = "the connection closed during the handshake";
      errno = EPROTO;
    }
    err = sys_error();
  }
  s->handshaking = false;
  update_poll(s);
  s->on_connect(s, err);
}

static void connected(fl_sock_t *s) {
  int err = s->connect_error;
  socklen_t len = sizeof err;
  if (!err && getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) err = uv_translate_sys_error(err);
  if (!err && s->ssl) {
    s->connecting = false;
    s->handshaking = true;
    handshake(s);
    return;
  }
  if (!s->ssl && (err == UV_ECONNRESET || err == UV_EPIPE)) {   /* accepted, then reset before we looked: the connect */
    s->read_error = err;                           /* worked, and the owner hears of the reset as a reader */
    err = 0;                                       /* would, whatever the timing */
  }
  s->connecting = false;
  update_poll(s);
  s->on_connect(s, err);
}

/* Either readiness may be what a TLS read or write waits for. */
static void tls_ready(fl_sock_t *s, int events) {
  bool r = events & UV_READABLE, w = events & UV_WRITABLE;
  if (s->queued && !s->closing && (s->tls_write_wants_read ? r : w)) {
    s->tls_write_wants_read = false;
    flush(s);
  }
  if (!s->closing && (r || (w && (s->tls_read_wants_write || s->tls_pending)))) {
    s->tls_read_wants_write = s->tls_pending = false;
    fill(s);
  }
}

static void on_poll(uv_poll_t *p, int status, int events) {
  fl_sock_t *s = p->data;
  fl_clock_tick();
  if (status < 0) {        /* POLLERR: libuv stopped the poll; whoever waits sees the error */
    events = s->events;
    s->events = 0;
  }
  if (s->connecting || s->handshaking) {
    if (s->connecting) connected(s);   /* which watches what is wanted next */
    else handshake(s);
    return;
  }
  if (s->ssl) {
    tls_ready(s, events);
  } else {
    if ((events & UV_WRITABLE) && s->queued && !s->closing) flush(s);
    if ((events & UV_READABLE) && !s->closing) fill(s);
  }
  update_poll(s);          /* after an error, watches again what is still wanted */
}

/* ---- listening ---- */

static void on_acceptable(uv_poll_t *p, int status, int events);
static void on_pause_over(uv_timer_t *t);

int fl_listener_start(fl_listener_t *l, uv_loop_t *loop, int fd, int backlog, fl_accept_cb cb, void *ctx) {
  if (listen(fd, backlog) != 0) return sys_error();
  int rc = uv_poll_init(loop, &l->poll, fd);
  if (rc < 0) return rc;
  uv_timer_init(loop, &l->pause);
  l->poll.data = l->pause.data = l;
  l->fd = fd;
  l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  l->on_accept = cb;
  l->ctx = ctx;
  return uv_poll_start(&l->poll, UV_READABLE, on_acceptable);
}

static void on_pause_over(uv_timer_t *t) {
  fl_listener_t *l = t->data;
  if (l->fd >= 0) uv_poll_start(&l->poll, UV_READABLE, on_acceptable);
}

/* Out of descriptors: the pending connection would wake the loop for ever. It is accepted on the
 * spare descriptor and closed at once (the client sees the close), as libuv does. The workers
 * share one descriptor table, so another thread may take the spare's number first: without a
 * spare, accepting pauses for 100 ms instead. */
static void shed_one(fl_listener_t *l) {
  if (l->spare_fd >= 0) {
    close(l->spare_fd);
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) close(fd);
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) return;
  }
  uv_poll_stop(&l->poll);
  uv_timer_start(&l->pause, on_pause_over, 100, 0);
}

static void on_acceptable(uv_poll_t *p, int status, int events) {
  fl_listener_t *l = p->data;
  fl_clock_tick();
  if (status < 0) {                    /* POLLERR: libuv stopped the poll; try again later */
    uv_timer_start(&l->pause, on_pause_over, 100, 0);
    return;
  }
  if (l->spare_fd < 0) l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  for (int i = 0; i < FL_ACCEPTS_PER_WAKE && l->fd >= 0; i++) {
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      l->on_accept(l->ctx, l->tag, fd, (struct sockaddr *)&peer, len);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EMFILE || errno == ENFILE) shed_one(l);
    return;                            /* EAGAIN: all taken; others: the next wake-up tries again */
  }
}

void fl_listener_close(fl_listener_t *l) {
  if (l->fd < 0) return;
  uv_close((uv_handle_t *)&l->poll, NULL);
  uv_close((uv_handle_t *)&l->pause, NULL);
  close(l->fd);
  l->fd = -1;
  if (l->spare_fd >= 0) close(l->spare_fd);
  l->spare_fd = -1;
}
