/* webhook.h — rollout notifications: JSON POSTs to http:// or https:// receivers (by name or
 * address, through libcurl: fetch.h), sent by a thread of their own and retried with exponential
 * backoff, so a slow or failing receiver never holds up the control loop. The sender touches no
 * store: outcomes go back to the caller through a queue (fl_webhooks_finished). */
#ifndef FL_WEBHOOK_H
#define FL_WEBHOOK_H

#include "common.h"

#define FL_WEBHOOK_ATTEMPTS 5          /* the first try and four retries: 0.5, 1, 2, 4 s apart */

/* Starts the sender thread. Returns 0 or FL_ENOMEM. */
int fl_webhooks_start(void);

/* Queues a POST of body to url (both copied; url checked by fl_fetch_check_url). Any thread;
 * never blocks on the network. A full queue (256) drops the oldest delivery and logs it. */
void fl_webhook_post(const char *url, const char *body);

/* The same, for a delivery whose end its owner wants to hear of: ref (not 0, the outbox row)
 * comes back from fl_webhooks_finished once it is delivered or given up. A delivery dropped (a
 * full queue, the stop) is never reported: its owner still counts it as owed. */
void fl_webhook_post_ref(const char *url, const char *body, int64_t ref);

typedef struct fl_webhook_outcome {
  int64_t ref;
  bool delivered;                  /* a 2xx; false: given up after FL_WEBHOOK_ATTEMPTS */
} fl_webhook_outcome_t;

/* Moves up to cap outcomes of referenced deliveries, oldest first, into out; returns how many.
 * Any thread (the control thread drains them on its tick). */
size_t fl_webhooks_finished(fl_webhook_outcome_t *out, size_t cap);

/* Deliveries the queue takes now without dropping one. */
size_t fl_webhooks_room(void);

/* Stops the thread: a delivery in progress ends (2 s at most), those still waiting are given up
 * (and so are outcomes not taken yet: take them first). */
void fl_webhooks_stop(void);

#endif
