/* sock.h — the data path's TCP sockets on a libuv loop: read with recv, written with send(msg)
 * (socket calls, not the VFS read/write path libuv's streams take), a write queue of their own,
 * non-blocking connects, and a listener that accepts with accept4. Readiness comes from a
 * uv_poll_t. A socket may carry TLS (OpenSSL on its fd): the owner then sees plaintext only.
 * Each socket belongs to one loop and is used on that loop's thread only. */
#ifndef FL_SOCK_H
#define FL_SOCK_H

#include "common.h"

#include <openssl/ssl.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct fl_sock fl_sock_t;

/* n > 0: n bytes at data, valid during the call only. n < 0: UV_EOF or an error; reading has
 * stopped. */
typedef void (*fl_sock_read_cb)(fl_sock_t *s, ssize_t n, const char *data);
/* n queued bytes went out (status 0), or sending failed (status < 0: close the socket). */
typedef void (*fl_sock_sent_cb)(fl_sock_t *s, size_t n, int status);
/* The connect finished: 0 or a negative libuv error. Never called from fl_sock_connect itself. */
typedef void (*fl_sock_connect_cb)(fl_sock_t *s, int status);
/* The socket's memory may be freed now. */
typedef void (*fl_sock_close_cb)(fl_sock_t *s);

typedef struct fl_sock_chunk fl_sock_chunk_t;

struct fl_sock {
  uv_poll_t poll;
  int fd;
  int events;                       /* what the poll watches now (UV_READABLE, UV_WRITABLE) */
  int connect_error;                /* a refusal known at once, told by the connect callback */
  int read_error;                   /* a reset that came before the connect was told: the first read's */
  bool reading, connecting, closing;
  /* TLS (fl_sock_start_tls): the other readiness an SSL call waited for, and a read owed to
   * records OpenSSL already holds (the poll cannot see them: writability wakes the loop instead). */
  bool tls_read_wants_write, tls_write_wants_read, tls_pending;
  bool handshaking;                 /* a client connection's handshake, between connect and on_connect */
  bool tls_hs_wants_write;          /* which readiness it waits for */
  SSL *ssl;                         /* NULL: plain TCP */
  const char *tls_reason;           /* OpenSSL's words for the failure a UV_EPROTO stood for */
  char *rbuf;                       /* where reads land (the worker's buffer) */
  size_t rbuf_len;
  fl_sock_chunk_t *queue, *queue_last;   /* bytes the socket did not take yet, oldest first */
  size_t queue_sent;                /* of the first chunk */
  size_t queued;                    /* bytes waiting in the queue */
  fl_sock_read_cb on_read;
  fl_sock_sent_cb on_sent;
  fl_sock_connect_cb on_connect;
  fl_sock_close_cb on_close;
  void *data;                       /* the owner's */
};

/* Takes a connected non-blocking fd (closed by fl_sock_close). Reads land in rbuf. Returns 0 or
 * a negative libuv error (then the fd is the caller's still). */
int fl_sock_open(fl_sock_t *s, uv_loop_t *loop, int fd, char *rbuf, size_t rbuf_len) FL_MUST_CHECK;

/* Opens a socket and starts connecting it to sa (TCP_NODELAY set). 0: cb follows; otherwise a
 * negative libuv error and s is not open (EMFILE, EADDRNOTAVAIL, ...: this machine's lack). */
int fl_sock_connect(fl_sock_t *s, uv_loop_t *loop, const struct sockaddr *sa, socklen_t len, char *rbuf,
                    size_t rbuf_len, fl_sock_connect_cb cb) FL_MUST_CHECK;

/* From now on the bytes read and written are TLS's plaintext, through ssl (owned by s from
 * now, freed at close, set to use s's fd). On a connecting socket (a client's ssl), the
 * handshake runs once the connection is up, and the connect callback is told when it is done:
 * its failure is the connect's status (UV_EPROTO, in words in tls_reason). Otherwise the
 * handshake runs within the reads and writes; its failure is a read or send error (UV_EPROTO). */
void fl_sock_start_tls(fl_sock_t *s, SSL *ssl);

/* Reads on or off. */
void fl_sock_read(fl_sock_t *s, bool on);

/* Sends what the socket takes now when nothing is queued, and copies the rest to the queue.
 * Returns the bytes queued (0: all went out) or a negative libuv error (nothing queued). */
ssize_t fl_sock_write(fl_sock_t *s, const uv_buf_t *bufs, unsigned n) FL_MUST_CHECK;

/* Stops everything, drops what is queued and closes the fd now; cb (may be NULL) runs from the
 * loop once the handle is closed. Safe to call twice. */
void fl_sock_close(fl_sock_t *s, fl_sock_close_cb cb);

/* A listening socket whose connections are accepted with accept4, up to a batch per wake-up. */
typedef void (*fl_accept_cb)(void *ctx, unsigned tag, int fd, const struct sockaddr *peer, socklen_t peer_len);

typedef struct fl_listener {
  uv_poll_t poll;
  uv_timer_t pause;                 /* out of descriptors without a spare: accepting waits a while */
  int fd;
  int spare_fd;                     /* given up to accept and drop a connection when out of fds */
  fl_accept_cb on_accept;
  void *ctx;
  unsigned tag;                     /* the owner's, passed to on_accept (which listener it was) */
} fl_listener_t;

/* Listens on fd (bound, non-blocking) with the backlog and starts accepting (l->tag is kept).
 * 0 or a negative libuv error. */
int fl_listener_start(fl_listener_t *l, uv_loop_t *loop, int fd, int backlog, fl_accept_cb cb,
                      void *ctx) FL_MUST_CHECK;
/* Stops accepting and closes the listening fd now (new connections are refused). */
void fl_listener_close(fl_listener_t *l);

#endif
