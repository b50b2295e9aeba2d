/* write.c — try now, copy and queue the rest. */
#include "write.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#define FL_IOV_MAX 8

/* What a socket takes now, by sendmsg (a socket call: no VFS write path, as uv_try_write's writev
 * takes); 0 when it takes nothing, or a negative libuv error. */
static ssize_t try_send(uv_stream_t *s, const uv_buf_t *bufs, unsigned n) {
  uv_os_fd_t fd;
  if (n > FL_IOV_MAX || uv_fileno((const uv_handle_t *)s, &fd) != 0) return uv_try_write(s, bufs, n);
  struct iovec iov[FL_IOV_MAX];
  for (unsigned i = 0; i < n; i++) iov[i] = (struct iovec){.iov_base = bufs[i].base, .iov_len = bufs[i].len};
  struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
  ssize_t rc;
  do rc = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (rc < 0 && errno == EINTR);
  if (rc >= 0) return rc;
  return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : uv_translate_sys_error(errno);
}

ssize_t fl_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, bool try_first, void *owner, uv_write_cb cb) {
  size_t total = 0, skip = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  if (total == 0) return 0;
  if (try_first) {
    ssize_t rc = try_send(s, bufs, n);
    if (rc < 0 && rc != UV_EAGAIN) return rc;
    skip = rc > 0 ? (size_t)rc : 0;
    if (skip == total) return 0;
  }
  fl_wreq_t *wr = malloc(sizeof *wr + total - skip);
  if (!wr) return UV_ENOMEM;
  size_t off = 0;
  for (unsigned i = 0; i < n; i++) {
    size_t take = bufs[i].len;
    if (skip >= take) {
      skip -= take;
      continue;
    }
    memcpy(wr->data + off, bufs[i].base + skip, take - skip);
    off += take - skip;
    skip = 0;
  }
  wr->owner = owner;
  wr->len = off;
  uv_buf_t rest = uv_buf_init(wr->data, (unsigned)off);
  int rc = uv_write(&wr->req, s, &rest, 1, cb);
  if (rc < 0) {
    free(wr);
    return rc;
  }
  return (ssize_t)off;
}
