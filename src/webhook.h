/* webhook.h — rollout notifications: JSON POSTs to http:// or https:// receivers (by name or
 * address, through libcurl: fetch.h), sent by a thread of their own and retried with exponential
 * backoff, so a slow or failing receiver never holds up the control loop. */
#ifndef FL_WEBHOOK_H
#define FL_WEBHOOK_H

#include "common.h"

#define FL_WEBHOOK_ATTEMPTS 5          /* the first try and four retries: 0.5, 1, 2, 4 s apart */

/* Starts the sender thread. Returns 0 or FL_ENOMEM. */
int fl_webhooks_start(void);

/* Queues a POST of body to url (both copied; url checked by fl_fetch_check_url). Any thread;
 * never blocks on the network. A full queue (256) drops the oldest delivery and logs it. */
void fl_webhook_post(const char *url, const char *body);

/* Stops the thread: a delivery in progress ends (2 s at most), those still waiting are given up. */
void fl_webhooks_stop(void);

#endif
