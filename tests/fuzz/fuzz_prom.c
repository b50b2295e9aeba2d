/* fuzz_prom.c — the Prometheus text parser of scraped model-server metrics: any bytes. */
#include "fuzz.h"

#include "promtext.h"

static void on_sample(void *ctx, const char *name, const fl_prom_label_t *l, size_t n, double v) {
  (void)ctx, (void)name, (void)l, (void)n, (void)v;
}

FL_FUZZ_TARGET(prom) {
  fl_prom_parse((const char *)data, size, on_sample, NULL);
  return 0;
}
