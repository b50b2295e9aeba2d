/* fuzz_quality.c — the data-quality observer: byte 0 holds the flags (stream, status 200 or 400,
 * cut bodies), byte 1 where the input splits into request and answer. */
#include "fuzz.h"

#include "quality.h"

static void on_value(void *ctx, unsigned f, double v) { (void)ctx, (void)f, (void)v; }
static void on_label(void *ctx, const char *t, size_t n) { (void)ctx, (void)t, (void)n; }

FL_FUZZ_TARGET(quality) {
  static fl_quality_conf_t qc;
  static int ready;
  if (!ready) ready = fl_quality_conf_init(&qc, NULL, 0, NULL, 0) == 0;
  if (size < 2) return 0;
  size_t split = 2 + (size - 2) * data[1] / 255;
  fl_qsample_t s = {.req = (const char *)data + 2, .req_len = split - 2, .req_cut = data[0] & 2,
                    .resp = (const char *)data + split, .resp_len = size - split, .resp_cut = data[0] & 4,
                    .stream = data[0] & 1, .status = data[0] & 8 ? 400 : 200};
  fl_qsink_t sink = {on_value, on_label, NULL};
  fl_qobs_t o;
  fl_quality_observe(&qc, &s, &sink, &o);
  return 0;
}
