/* fuzz_llm.c — the streaming LLM observer: the first byte chooses SSE or not and where the body
 * is cut into pieces; the rest is the body, fed piece by piece. */
#include "fuzz.h"

#include "llm.h"

static void on_gap(void *ctx, uint64_t gap_ns) { (void)ctx, (void)gap_ns; }

FL_FUZZ_TARGET(llm) {
  if (size < 1) return 0;
  fl_llm_t o;
  fl_llm_init(&o, data[0] & 1);
  size_t piece = (size_t)(data[0] >> 1) + 1;
  for (size_t i = 1; i < size; i += piece) fl_llm_feed(&o, (const char *)data + i, FL_MIN(piece, size - i), i, on_gap, NULL);
  return 0;
}
