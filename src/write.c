/* write.c — try now, copy and queue the rest. */
#include "write.h"

#include <stdlib.h>

ssize_t fl_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, bool try_first, void *owner, uv_write_cb cb) {
  size_t total = 0, skip = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  if (total == 0) return 0;
  if (try_first) {
    int rc = uv_try_write(s, bufs, n);
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
