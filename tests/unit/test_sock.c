/* test_sock.c — the data path's sockets as a specification, over real loopback TCP on a real
 * libuv loop: what a reader is told when bytes and a reset arrive together, that queued bytes go
 * out in order once the peer reads, that a refused connect is told by the callback, and that a
 * reset before the connect was seen is told to the reader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>

#include "sock.h"

typedef struct {
  fl_sock_t sock;
  char rbuf[4096];
  char got[1 << 16];
  size_t got_len;
  ssize_t end;              /* the error or UV_EOF that ended reading; 0: none yet */
  int connect_status;
  bool connected, closed;
  size_t sent;
} side_t;

/* A listening socket on a free loopback port. */
static int listener(struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof *addr;
  assert_int_equal(bind(fd, (struct sockaddr *)addr, len), 0);
  assert_int_equal(listen(fd, 8), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
  return fd;
}

/* A connected pair: *client is non-blocking (for fl_sock), *server blocking. */
static void tcp_pair(int *client, int *server) {
  struct sockaddr_in addr;
  int l = listener(&addr);
  *client = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int rc = connect(*client, (struct sockaddr *)&addr, sizeof addr);
  assert_true(rc == 0 || errno == EINPROGRESS);
  *server = accept(l, NULL, NULL);
  assert_true(*server >= 0);
  close(l);
}

static void on_read(fl_sock_t *s, ssize_t n, const char *data) {
  side_t *x = s->data;
  if (n < 0) {
    x->end = n;
    return;
  }
  memcpy(x->got + x->got_len, data, (size_t)n);
  x->got_len += (size_t)n;
}

static void on_sent(fl_sock_t *s, size_t n, int status) {
  side_t *x = s->data;
  if (status == 0) x->sent += n;
}

static void on_connect(fl_sock_t *s, int status) {
  side_t *x = s->data;
  x->connected = true;
  x->connect_status = status;
}

static void on_closed(fl_sock_t *s) { ((side_t *)s->data)->closed = true; }

static void open_side(uv_loop_t *loop, side_t *x, int fd) {
  x->sock.data = x;
  assert_int_equal(fl_sock_open(&x->sock, loop, fd, x->rbuf, sizeof x->rbuf), 0);
  x->sock.on_read = on_read;
  x->sock.on_sent = on_sent;
}

/* Runs the loop until done(x) or about 2 s. */
static void run_until(uv_loop_t *loop, side_t *x, bool (*done)(side_t *)) {
  for (int i = 0; i < 200 && !done(x); i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(10000);
  }
}

static bool ended(side_t *x) { return x->end != 0; }
static bool connected(side_t *x) { return x->connected; }
static bool closed(side_t *x) { return x->closed; }

static void close_side(uv_loop_t *loop, side_t *x) {
  fl_sock_close(&x->sock, on_closed);
  run_until(loop, x, closed);
  assert_true(x->closed);
}

/* A socket on a fresh loop, connected to *server (blocking, the test's end). */
static side_t *connected_side(uv_loop_t *loop, int *server) {
  int cfd;
  tcp_pair(&cfd, server);
  side_t *x = calloc(1, sizeof *x);
  assert_non_null(x);
  open_side(loop, x, cfd);
  return x;
}

/* Closes the socket, checks that the loop has nothing left, frees the side. */
static void finish(uv_loop_t *loop, side_t *x) {
  close_side(loop, x);
  assert_int_equal(uv_loop_close(loop), 0);
  free(x);
}

/* The peer's bytes and its reset are both waiting at the first wake-up (POLLIN|POLLERR): libuv
 * stops the poll then, and a socket that did not watch again would never hear of the reset. */
static void test_bytes_then_a_reset_in_one_wake_up_are_both_told(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sfd;
  side_t *x = connected_side(&loop, &sfd);
  assert_int_equal(write(sfd, "partial", 7), 7);
  usleep(20000);
  struct linger hard = {.l_onoff = 1, .l_linger = 0};
  setsockopt(sfd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  close(sfd);                                       /* RST */
  usleep(20000);
  fl_sock_read(&x->sock, true);
  run_until(&loop, x, ended);
  assert_int_equal(x->got_len, 7);
  assert_memory_equal(x->got, "partial", 7);
  assert_true(x->end == UV_ECONNRESET || x->end == UV_EOF);
  finish(&loop, x);
}

/* A peer that does not read: what the socket does not take is queued, and goes out in order,
 * all of it, once the peer reads. */
static void test_queued_bytes_go_out_in_order_once_the_peer_reads(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sfd;
  side_t *x = connected_side(&loop, &sfd);
  enum { PIECE = 65536, PIECES = 64 };              /* 4 MiB: far more than the socket buffers */
  char *piece = malloc(PIECE);
  size_t queued = 0;
  for (int i = 0; i < PIECES; i++) {
    memset(piece, 'a' + i % 26, PIECE);
    uv_buf_t b = uv_buf_init(piece, PIECE);
    ssize_t q = fl_sock_write(&x->sock, &b, 1);
    assert_true(q >= 0);
    queued += (size_t)q;
  }
  assert_true(queued > 0);
  assert_int_equal(x->sock.queued, queued);
  size_t total = 0;
  char buf[65536];
  while (total < (size_t)PIECE * PIECES) {
    uv_run(&loop, UV_RUN_NOWAIT);
    ssize_t n = recv(sfd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) {
      usleep(1000);
      continue;
    }
    for (ssize_t k = 0; k < n; k++)
      if (buf[k] != 'a' + (char)((total + (size_t)k) / PIECE % 26)) fail_msg("byte %zu out of order", total + (size_t)k);
    total += (size_t)n;
  }
  assert_int_equal(total, (size_t)PIECE * PIECES);
  assert_int_equal(x->sock.queued, 0);
  assert_int_equal(x->sent, queued);                /* the owner was told of every queued byte */
  close(sfd);
  finish(&loop, x);
  free(piece);
}

/* A port nobody listens on: the refusal comes through the callback, never from the call. */
static void test_a_refused_connect_is_told_by_the_callback(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct sockaddr_in addr;
  int l = listener(&addr);
  close(l);                                         /* the port is free again: connects are refused */
  side_t *x = calloc(1, sizeof *x);
  x->sock.data = x;
  assert_int_equal(fl_sock_connect(&x->sock, &loop, (struct sockaddr *)&addr, sizeof addr, x->rbuf, sizeof x->rbuf,
                                   on_connect),
                   0);
  assert_false(x->connected);
  run_until(&loop, x, connected);
  assert_true(x->connected);
  assert_int_equal(x->connect_status, UV_ECONNREFUSED);
  finish(&loop, x);
}

/* A backend that accepts and resets at once, before the loop looked at the connect: the connect is
 * told as made, and the reset reaches the reader, so the owner tells it as the reset it is, however
 * the timing falls (it used to be told as a refused connect when the reset came first). */
static void test_a_connection_reset_before_the_connect_is_seen_is_told_to_the_reader(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct sockaddr_in addr;
  int l = listener(&addr);
  side_t *x = calloc(1, sizeof *x);
  x->sock.data = x;
  assert_int_equal(fl_sock_connect(&x->sock, &loop, (struct sockaddr *)&addr, sizeof addr, x->rbuf, sizeof x->rbuf,
                                   on_connect),
                   0);
  x->sock.on_read = on_read;
  x->sock.on_sent = on_sent;
  int server = accept(l, NULL, NULL);
  assert_true(server >= 0);
  struct linger abortive = {.l_onoff = 1, .l_linger = 0};
  assert_int_equal(setsockopt(server, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive), 0);
  close(server);                                    /* RST, before the loop ran once */
  close(l);
  run_until(&loop, x, connected);
  assert_true(x->connected);
  assert_int_equal(x->connect_status, 0);
  fl_sock_read(&x->sock, true);
  run_until(&loop, x, ended);
  assert_int_equal(x->end, UV_ECONNRESET);
  assert_int_equal(x->got_len, 0);
  finish(&loop, x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bytes_then_a_reset_in_one_wake_up_are_both_told),
      cmocka_unit_test(test_queued_bytes_go_out_in_order_once_the_peer_reads),
      cmocka_unit_test(test_a_refused_connect_is_told_by_the_callback),
      cmocka_unit_test(test_a_connection_reset_before_the_connect_is_seen_is_told_to_the_reader),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
