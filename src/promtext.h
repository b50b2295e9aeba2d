/* promtext.h — a parser of the Prometheus text exposition format (0.0.4): the model servers'
 * own /metrics, scraped by scrape.c. Comments and HELP/TYPE lines are skipped; each sample line
 * gives a name, its labels (values unescaped: \\ \" \n) and a value (+Inf, -Inf and NaN too);
 * histogram and summary lines are samples like any other. Pure; any thread. */
#ifndef FL_PROMTEXT_H
#define FL_PROMTEXT_H

#include "common.h"

#define FL_PROM_MAX_LABELS 16

typedef struct fl_prom_label {
  char name[64];
  char value[256];
} fl_prom_label_t;

typedef void (*fl_prom_fn)(void *ctx, const char *name, const fl_prom_label_t *labels, size_t n_labels, double value);

/* Calls fn for every well-formed sample line of text; returns how many non-empty, non-comment
 * lines were malformed (skipped). Names over 127 bytes, more than FL_PROM_MAX_LABELS labels or
 * values over 255 bytes make a line malformed. */
int fl_prom_parse(const char *text, size_t len, fl_prom_fn fn, void *ctx);

#endif
