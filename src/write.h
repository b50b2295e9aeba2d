/* write.h — how the admin server and the mock write to a libuv stream: what the socket takes now
 * goes at once (sendmsg), only the rest is copied and queued. Any loop thread, for its own streams.
 * The data path has its own sockets (sock.h). */
#ifndef FL_WRITE_H
#define FL_WRITE_H

#include "common.h"
#include <uv.h>

/* A queued write; the completion callback gets it back and frees it with free(). */
typedef struct fl_wreq {
  uv_write_t req;
  void *owner;                  /* what the caller passed, for the callback */
  size_t len;                   /* bytes in data */
  char data[];
} fl_wreq_t;

/* Writes bufs to s. try_first must be false while earlier writes are still queued (trying now
 * would put these bytes ahead of them). Returns the number of bytes queued (0: all went out at
 * once; cb is then not called) or a negative libuv error, in which case nothing is queued. */
ssize_t fl_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, bool try_first, void *owner, uv_write_cb cb);

#endif
