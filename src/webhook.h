/* webhook.h — rollout notifications: JSON POSTs to http://HOST:PORT/PATH receivers, sent by a
 * thread of their own and retried with exponential backoff, so a slow or failing receiver never
 * holds up the control loop. */
#ifndef FL_WEBHOOK_H
#define FL_WEBHOOK_H

#include "netaddr.h"

#define FL_WEBHOOK_ATTEMPTS 5          /* the first try and four retries: 0.5, 1, 2, 4 s apart */

/* Parses "http://127.0.0.1:9999/hook" (numeric hosts or localhost only: no DNS lookups). */
int fl_webhook_parse_url(const char *url, fl_addr_t *addr, char *path, size_t path_cap);

/* Starts the sender thread. Returns 0 or FL_ENOMEM. */
int fl_webhooks_start(void);

/* Queues a POST of body (copied) to addr/path. Any thread; never blocks on the network. A full
 * queue (256) drops the oldest delivery and logs it. */
void fl_webhook_post(const fl_addr_t *addr, const char *path, const char *body);

/* Stops the thread: a delivery in progress ends (2 s at most), those still waiting are given up. */
void fl_webhooks_stop(void);

#endif
