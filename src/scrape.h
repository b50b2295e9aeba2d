/* scrape.h — the model servers' own metrics: every variant's metrics_url is scraped each
 * scrape.interval on a thread of its own (blocking HTTP never runs on the control loop), parsed
 * (promtext.h), and the chosen families are kept, re-exported as fledge_backend_* with route,
 * variant and backend labels, and usable in rollout checks as "backend:FAMILY". */
#ifndef FL_SCRAPE_H
#define FL_SCRAPE_H

#include "conf.h"
#include "http.h"

#include <jansson.h>

/* Starts the thread (once) and takes c's targets; later calls take a reloaded config's. */
int fl_scrape_configure(const fl_conf_t *c);
void fl_scrape_stop(void);

/* The fledge_backend_* families (an fl_metrics_expo_fn, metrics.h; c and ctx unused); the
 * targets' state as JSON ({url, route, variant, up, ...}). */
void fl_scrape_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx);
json_t *fl_scrape_json(void);

/* The mean of the samples named `family` over the variant's reachable targets; false when none. */
bool fl_scrape_variant_value(const char *route, int variant, const char *family, double *value);

/* Is a sample of this name kept under these filters ("x*" a prefix; a histogram's _bucket, _sum
 * and _count go with its family)? */
bool fl_scrape_wanted(const char *name, char *const *families, size_t n);

#endif
