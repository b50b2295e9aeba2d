/* worker.c — the end of a worker's loop (once it drains and its last client is gone, every
 * handle it owns is closed; called by the data path and by the drain in server.c), and the
 * wall clock's offset from the monotonic one that the data path's timestamps use. */
#include "worker.h"

#include <time.h>

static void close_if_open(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void fl_worker_maybe_stop(fl_worker_t *w) {
  if (!w->draining || w->n_clients > 0) return;
  fl_pool_close_all(&w->pools);
  close_if_open((uv_handle_t *)&w->sweep);
  fl_worker_close_listeners(w);
  pthread_mutex_lock(&w->wake_lock);   /* taken once, at the end: never on the request path */
  w->wake_open = false;
  pthread_mutex_unlock(&w->wake_lock);
  close_if_open((uv_handle_t *)&w->wake);
}

void fl_worker_close_listeners(fl_worker_t *w) {
  for (size_t i = 0; i < w->n_listeners; i++) fl_listener_close(&w->listeners[i]);
}

void fl_worker_sync_wall(fl_worker_t *w) {
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  uint64_t mono = fl_now_ns();
  w->wall_offset_ns = ((int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec) - (int64_t)mono;
}
