/* retire.h — the snapshots a reload replaced, held by the control thread until nothing else
 * holds them, then unbound from the backend and series registries, so that what no live
 * snapshot names is freed and its id reused. */
#ifndef FL_RETIRE_H
#define FL_RETIRE_H

#include "conf.h"
#include "metrics.h"
#include "upstream.h"

/* Control thread, before the first snapshot is retired: the workers' counters and pools, which
 * an entry's freeing must reach (both arrays owned by the caller, alive until
 * fl_retire_shutdown; n_pools may be 0, e.g. before workers run or in tests). */
void fl_retire_init(const fl_metrics_src_t *metrics, fl_pools_t *const *pools, unsigned n_pools);

/* Takes over the caller's reference to c, a snapshot no longer current: requests in flight,
 * workers that have not swapped yet and other threads may still hold it. Control thread. */
void fl_retire_add(fl_conf_t *c);

/* Releases every held snapshot that nobody else holds any more: its registry references are
 * dropped (series no snapshot names leave /metrics and are freed at once; backends retire and
 * are freed once every pool has swept), then the snapshot itself. Then frees the retired
 * backends the pools have let go of. Control thread: after each reload and once a second. */
void fl_retire_collect(void);

/* Unbinds c from both registries at once and drops the caller's reference: for a snapshot that
 * was never published (a load that failed after binding), which nobody else can hold. */
void fl_retire_now(fl_conf_t *c);

/* Snapshots held now, waiting for their last request. Control thread. */
unsigned fl_retire_pending(void);

/* At exit, once the workers and every other holder have stopped: releases whatever is still
 * held and frees the backend registry. */
void fl_retire_shutdown(void);

#endif
