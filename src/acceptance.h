/* acceptance.h — the acceptance gate of a rollout: a labelled set of requests (JSONL) replayed
 * against the canary alone before any user traffic moves, each answer checked against its
 * expectations. It runs on a thread of its own (it waits on the network) and hands its report
 * back to the control loop. */
#ifndef FL_ACCEPTANCE_H
#define FL_ACCEPTANCE_H

#include "netaddr.h"
#include <jansson.h>
#include <uv.h>

/* Called on the control loop's thread with the report (owned by the callee):
 * {"cases", "passed", "pass_rate", "latency_ms": {"p50", "max"}, "failures": [{"line", "why"}]}
 * or {"error": "..."} when the file could not be read. */
typedef void (*fl_acceptance_done_fn)(const char *route, json_t *report, void *ctx);

/* Replays every line of path against backend; `model`, when set, replaces each request's
 * JSON model the way the canary variant would. One line:
 *   {"request": {"method": "POST", "path": "/v1/chat/completions", "headers": {...}, "body": {...}},
 *    "expect": {"status": 200, "json": {"choices.0.finish_reason": "stop"}, "regex": "Paris",
 *               "max_latency_ms": 2000}}
 * Returns 0 and calls done later on loop's thread, or a negative error (done never called). */
int fl_acceptance_run(uv_loop_t *loop, const char *route, const char *path, const fl_addr_t *backend,
                      const char *model, const char *headers, fl_acceptance_done_fn done, void *ctx);

/* At shutdown: running sets stop after the case in flight (each has a 10 s timeout). */
void fl_acceptance_stop_all(void);

/* Evaluates one answer against one "expect" object; returns NULL when it passes, else a reason
 * (static or in buf). Pure; exposed for tests. */
const char *fl_acceptance_check(const json_t *expect, int status, const char *body, double latency_ms, char *buf,
                                size_t cap);

#endif
