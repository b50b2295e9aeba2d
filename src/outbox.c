/* outbox.c — the store's outbox, sent by the webhook thread. The store is the control thread's,
 * so the sender never touches it: this side queues rows by id and marks them done from the
 * outcomes the sender hands back (fl_webhooks_finished). */
#include "outbox.h"
#include "webhook.h"

#include <stdlib.h>

#define BATCH 64

static fl_store_t *store;
static int64_t queued_upto;          /* rows up to this id went to the sender in this run */

void fl_outbox_init(fl_store_t *s) {
  store = s;
  queued_upto = 0;
}

static void mark_finished(void) {
  fl_webhook_outcome_t done[BATCH];
  size_t n;
  while ((n = fl_webhooks_finished(done, BATCH)) > 0)
    for (size_t i = 0; i < n; i++)
      fl_store_outbox_done(store, done[i].ref, done[i].delivered);   /* a failure waits in the backlog */
}

/* What a receiver gets: the event as recorded, its id first (receivers deduplicate by it). */
static char *payload_of(const json_t *event) {
  json_t *p = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "id", json_object_get(event, "id"), "route",
                        json_object_get(event, "route"), "event", json_object_get(event, "kind"), "actor",
                        json_object_get(event, "actor"), "time_ms", json_object_get(event, "time_ms"), "detail",
                        json_object_get(event, "detail"));
  char *body = p ? json_dumps(p, JSON_COMPACT) : NULL;
  json_decref(p);
  return body;
}

/* Queues up to limit rows after queued_upto; returns how many there were, or -1 when the store
 * cannot be read (tried again at the next call). */
static int queue_batch(int limit) {
  json_t *rows = NULL, *row;
  size_t i;
  if (fl_store_outbox_waiting(store, queued_upto, limit, &rows) != 0) {
    fl_log("state store: cannot read the webhooks owed: %s", fl_store_error(store));
    return -1;
  }
  json_array_foreach(rows, i, row) {
    char *body = payload_of(json_object_get(row, "event"));
    json_int_t id = json_integer_value(json_object_get(row, "id"));
    if (body) fl_webhook_post_ref(json_string_value(json_object_get(row, "url")), body, id);
    else fl_log("webhook of outbox row %lld not sent: out of memory (owed again at the next start)", (long long)id);
    free(body);
    queued_upto = id;
  }
  int n = (int)json_array_size(rows);
  json_decref(rows);
  return n;
}

void fl_outbox_pump(void) {
  if (!store) return;
  mark_finished();
  size_t room = fl_webhooks_room();
  while (room > 0) {
    int limit = (int)FL_MIN(room, BATCH);
    int n = queue_batch(limit);
    if (n < limit) return;
    room -= (size_t)n;
  }
}

void fl_outbox_stop(void) {
  if (store) mark_finished();
  store = NULL;
}
