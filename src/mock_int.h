/* mock_int.h — what the two halves of `fledge mock` share: the settings parsed from its options
 * (mock_opts.c) and read by the server and its answers (mock.c). Not for other modules. */
#ifndef FL_MOCK_INT_H
#define FL_MOCK_INT_H

#include "common.h"
#include "netaddr.h"

#define MOCK_MAX_DELAY_MS 3600000u
#define MOCK_MAX_TOKENS 1000000u
#define MOCK_MAX_WORKERS 256u
#define MOCK_MAX_DIM 65536u
#define MOCK_MAX_MODEL 128u
#define MOCK_MAX_INPUTS 2048u
#define MOCK_ECHO_MAX 256u        /* longest echoed header value */
#define MOCK_HEADERS_CAP 2048u    /* all extra headers of one answer */

typedef struct mock_cfg {
  fl_addr_t addr;
  const char *model;
  char *model_json;               /* the model name as a JSON string, quotes included */
  uint32_t latency_ms, jitter_ms, ttft_ms, output_tokens, embedding_dim, workers;
  double tokens_per_s, error_rate;
  /* bad data on demand: shares 0..1 of answers with a NaN, empty, cut off (finish "length") */
  double nan_rate, empty_rate, truncate_rate;
  double tokens_mean, tokens_sd;  /* tokens_sd ≥ 0: completion lengths drawn from this normal */
  uint32_t classes;               /* > 0: predictions are class labels 0..classes-1 */
  double class_skew;              /* share of predictions forced to class 0 */
  uint32_t max_tokens;            /* the longest completion text that can be drawn */
  double kv_cache_usage;          /* what GET /metrics says of vllm:kv_cache_usage_perc */
  uint64_t seed;                     /* of the random draws: --seed, else from the clock */
  uint64_t content_seed;             /* of embeddings and class labels: --seed, else 0, so that
                                        two mocks give the same answer to the same input */
  bool seeded;
  char *text;                     /* "tok0 tok1 ... " for max_tokens tokens */
  uint32_t *text_end;             /* text_end[k]: length of the first k tokens */
  char fixed_headers[256];        /* x-mock-model and x-mock-port, same on every answer */
  char *models_body, *error_body; /* prebuilt GET /v1/models and error-rate 500 bodies */
} mock_cfg_t;

/* Parses argv into cfg: 0 to run, 1 when --help was shown, FL_EINVAL after printing what is wrong. */
int fl_mock_parse_args(int argc, char **argv, mock_cfg_t *cfg);

/* Builds what every answer reuses (model name as JSON, token text, fixed bodies): 0 or FL_ENOMEM. */
int fl_mock_prepare(mock_cfg_t *cfg);
void fl_mock_cfg_free(mock_cfg_t *cfg);

#endif
