/* proxy.h — the data path: a client connection's requests are routed, sent to a backend of the
 * chosen variant and its answer streamed back as it arrives. Worker thread only. */
#ifndef FL_PROXY_H
#define FL_PROXY_H

#include "worker.h"

/* Serves a connection the worker's listener accepted (fd non-blocking; owned from here on). */
void fl_proxy_accept(fl_worker_t *w, unsigned listener, int fd, const struct sockaddr *peer, socklen_t peer_len);

/* Drain: closes client connections that are between requests; the others close after their
 * current answer. */
void fl_proxy_drain(fl_worker_t *w);

/* Closes every client connection at once, answers in flight included (drain deadline). */
void fl_proxy_close_all(fl_worker_t *w);

#endif
