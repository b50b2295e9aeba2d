/* outbox.h — the webhooks that committed events owe: the store's outbox rows handed to the
 * sender thread (webhook.h), and marked done when it reports a 2xx or gives up. Delivery is at
 * least once: a row not marked done (the process died first) is sent again after the next start,
 * with the same event id for the receiver to tell. Control thread only. */
#ifndef FL_OUTBOX_H
#define FL_OUTBOX_H

#include "store.h"

/* Every row still waiting in store (borrowed, outlives the outbox) is owed from now on; the
 * webhook sender is already running. */
void fl_outbox_init(fl_store_t *store);

/* Marks the outcomes the sender reported, then hands it the rows committed since the last call
 * (the first time: every row waiting), as many as its queue takes without dropping one; the
 * rest wait for the next call. After each decision and on every tick. */
void fl_outbox_pump(void);

/* Marks the outcomes reported so far, queues nothing more; before the sender stops. */
void fl_outbox_stop(void);

#endif
