/* mock_opts.c — the options of `fledge mock`, their checks and the data built from them once
 * before the server starts. */
#include "mock_int.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ---- options ---- */

static const char mock_usage[] =
    "usage: fledge mock [options]\n"
    "A fake OpenAI-compatible / KServe model server for demos, tests and benchmarks.\n"
    "\n"
    "  --listen ADDR         address to listen on (default 127.0.0.1:9001)\n"
    "  --model NAME          model name in answers and x-mock-model (default mock-model)\n"
    "  --latency-ms N        delay before a buffered answer (default 0)\n"
    "  --jitter-ms N         add a uniform 0..N ms to every delay and to the TTFT (default 0)\n"
    "  --ttft-ms N           delay before a stream's first token (default 0)\n"
    "  --tokens-per-s N      streaming speed after the first token; 0 = no delay (default 0)\n"
    "  --output-tokens N     tokens per completion, capped by max_tokens (default 16)\n"
    "  --error-rate F        share 0..1 of model requests answered 500 (default 0)\n"
    "  --seed N              seed of the random draws and of embeddings and class labels\n"
    "                        (default: random draws, embeddings and labels seeded with 0)\n"
    "  --workers N           threads, each with its own SO_REUSEPORT listener (default 1)\n"
    "  --embedding-dim N     length of embedding vectors (default 8); float lists, or base64\n"
    "                        float32s when the request says encoding_format: base64\n"
    "Bad data, to test data-quality monitoring:\n"
    "  --output-tokens-mean N, --output-tokens-sd N\n"
    "                        draw each completion's length from this normal distribution\n"
    "                        (rounded, at least 1) instead of --output-tokens\n"
    "  --empty-rate F        share of completions with empty text\n"
    "  --truncate-rate F     share of completions cut off (finish_reason \"length\")\n"
    "  --nan-rate F          share of predictions (and embeddings) holding a bare NaN\n"
    "  --classes N           predictions are class labels 0..N-1 (default: numbers)\n"
    "  --class-skew F        share of those predictions forced to class 0\n"
    "  --kv-cache-usage F    vllm:kv_cache_usage_perc in GET /metrics (default 0.25)\n"
    "  --help                show this text\n"
    "\n"
    "Endpoints: POST /v1/chat/completions, POST /v1/completions (\"stream\": true for SSE),\n"
    "POST /v1/embeddings, GET /v1/models, POST /v1/models/NAME:predict (KServe v1), GET /health,\n"
    "GET /metrics (vllm:num_requests_running, vllm:kv_cache_usage_perc, vllm:time_to_first_token_seconds).\n"
    "Every answer carries x-mock-model, x-mock-port and x-mock-body-bytes, and echoes the\n"
    "request's x-request-id, x-forwarded-for, host, path, JSON model and user as x-mock-saw-*.\n";

enum { OPT_LISTEN = 256, OPT_MODEL, OPT_LATENCY, OPT_JITTER, OPT_TTFT, OPT_TPS, OPT_TOKENS,
       OPT_ERROR_RATE, OPT_SEED, OPT_WORKERS, OPT_DIM, OPT_TOKENS_MEAN, OPT_TOKENS_SD, OPT_EMPTY,
       OPT_TRUNCATE, OPT_NAN, OPT_CLASSES, OPT_SKEW, OPT_KV, OPT_HELP };

static const struct option mock_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},         {"model", required_argument, NULL, OPT_MODEL},
    {"latency-ms", required_argument, NULL, OPT_LATENCY},    {"jitter-ms", required_argument, NULL, OPT_JITTER},
    {"ttft-ms", required_argument, NULL, OPT_TTFT},          {"tokens-per-s", required_argument, NULL, OPT_TPS},
    {"output-tokens", required_argument, NULL, OPT_TOKENS},  {"error-rate", required_argument, NULL, OPT_ERROR_RATE},
    {"seed", required_argument, NULL, OPT_SEED},             {"workers", required_argument, NULL, OPT_WORKERS},
    {"embedding-dim", required_argument, NULL, OPT_DIM},
    {"output-tokens-mean", required_argument, NULL, OPT_TOKENS_MEAN},
    {"output-tokens-sd", required_argument, NULL, OPT_TOKENS_SD},
    {"empty-rate", required_argument, NULL, OPT_EMPTY},       {"truncate-rate", required_argument, NULL, OPT_TRUNCATE},
    {"nan-rate", required_argument, NULL, OPT_NAN},           {"classes", required_argument, NULL, OPT_CLASSES},
    {"class-skew", required_argument, NULL, OPT_SKEW},        {"kv-cache-usage", required_argument, NULL, OPT_KV},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int parse_uint(const char *opt, const char *text, uint64_t min, uint64_t max, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (text[0] < '0' || text[0] > '9' || *end || errno == ERANGE || v < min || v > max) {
    fprintf(stderr, "mock: --%s: '%s' is not a whole number from %llu to %llu\n", opt, text,
            (unsigned long long)min, (unsigned long long)max);
    return FL_EINVAL;
  }
  *out = v;
  return 0;
}

static int parse_u32(const char *opt, const char *text, uint32_t min, uint32_t max, uint32_t *out) {
  uint64_t v;
  int rc = parse_uint(opt, text, min, max, &v);
  if (rc == 0) *out = (uint32_t)v;
  return rc;
}

static int parse_real(const char *opt, const char *text, double min, double max, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end || errno == ERANGE || !(v >= min && v <= max)) {
    fprintf(stderr, "mock: --%s: '%s' is not a number from %g to %g\n", opt, text, min, max);
    return FL_EINVAL;
  }
  *out = v;
  return 0;
}

static int check_model(const char *name) {
  size_t n = strlen(name);
  bool ok = n > 0 && n <= MOCK_MAX_MODEL && name[0] != ' ' && name[n - 1] != ' ';
  for (size_t i = 0; ok && i < n; i++) ok = name[i] >= 0x20 && name[i] <= 0x7e;
  if (ok) return 0;
  fprintf(stderr, "mock: --model: '%s' must be 1 to %u printable ASCII characters\n", name, MOCK_MAX_MODEL);
  return FL_EINVAL;
}

static int apply_option(mock_cfg_t *cfg, int opt, const char *arg) {
  const char *name = mock_options[opt - OPT_LISTEN].name;
  switch (opt) {
  case OPT_LISTEN:
    if (fl_addr_parse(arg, &cfg->addr) == 0) return 0;
    fprintf(stderr, "mock: --listen: '%s' is not HOST:PORT (numeric IPv4, [IPv6] or localhost)\n", arg);
    return FL_EINVAL;
  case OPT_MODEL: cfg->model = arg; return check_model(arg);
  case OPT_LATENCY: return parse_u32(name, arg, 0, MOCK_MAX_DELAY_MS, &cfg->latency_ms);
  case OPT_JITTER: return parse_u32(name, arg, 0, MOCK_MAX_DELAY_MS, &cfg->jitter_ms);
  case OPT_TTFT: return parse_u32(name, arg, 0, MOCK_MAX_DELAY_MS, &cfg->ttft_ms);
  case OPT_TPS: return parse_real(name, arg, 0, 1e6, &cfg->tokens_per_s);
  case OPT_TOKENS: return parse_u32(name, arg, 0, MOCK_MAX_TOKENS, &cfg->output_tokens);
  case OPT_ERROR_RATE: return parse_real(name, arg, 0, 1, &cfg->error_rate);
  case OPT_SEED: cfg->seeded = true; return parse_uint(name, arg, 0, UINT64_MAX, &cfg->seed);
  case OPT_WORKERS: return parse_u32(name, arg, 1, MOCK_MAX_WORKERS, &cfg->workers);
  case OPT_DIM: return parse_u32(name, arg, 1, MOCK_MAX_DIM, &cfg->embedding_dim);
  case OPT_TOKENS_MEAN: return parse_real(name, arg, 1, MOCK_MAX_TOKENS / 2, &cfg->tokens_mean);
  case OPT_TOKENS_SD: return parse_real(name, arg, 0, MOCK_MAX_TOKENS / 16, &cfg->tokens_sd);
  case OPT_EMPTY: return parse_real(name, arg, 0, 1, &cfg->empty_rate);
  case OPT_TRUNCATE: return parse_real(name, arg, 0, 1, &cfg->truncate_rate);
  case OPT_NAN: return parse_real(name, arg, 0, 1, &cfg->nan_rate);
  case OPT_CLASSES: return parse_u32(name, arg, 1, 1000000, &cfg->classes);
  case OPT_SKEW: return parse_real(name, arg, 0, 1, &cfg->class_skew);
  case OPT_KV: return parse_real(name, arg, 0, 1, &cfg->kv_cache_usage);
  default: return FL_EINVAL;
  }
}

int fl_mock_parse_args(int argc, char **argv, mock_cfg_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->model = "mock-model";
  cfg->kv_cache_usage = 0.25;
  cfg->output_tokens = 16;
  cfg->embedding_dim = 8;
  cfg->workers = 1;
  fl_addr_parse("127.0.0.1:9001", &cfg->addr);
  optind = 0;   /* GNU: start afresh even if getopt ran before in this process */
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, ":", mock_options, NULL)) != -1) {
    if (opt == OPT_HELP) {
      fputs(mock_usage, stdout);
      return 1;
    }
    if (opt == '?' || opt == ':') {
      const char *what = argv[optind - 1];
      fprintf(stderr, "mock: %s '%s' (see fledge mock --help)\n",
              opt == ':' ? "missing value for" : "unknown option", what);
      return FL_EINVAL;
    }
    if (apply_option(cfg, opt, optarg) != 0) return FL_EINVAL;
  }
  if (optind < argc) {
    fprintf(stderr, "mock: unexpected argument '%s' (see fledge mock --help)\n", argv[optind]);
    return FL_EINVAL;
  }
  if (cfg->class_skew > 0 && !cfg->classes) {
    fprintf(stderr, "mock: --class-skew needs --classes\n");
    return FL_EINVAL;
  }
  if (cfg->tokens_mean == 0 && cfg->tokens_sd > 0) {
    fprintf(stderr, "mock: --output-tokens-sd needs --output-tokens-mean\n");
    return FL_EINVAL;
  }
  if (cfg->tokens_mean == 0) cfg->tokens_sd = -1;   /* fixed lengths: --output-tokens */
  double longest = cfg->tokens_sd >= 0 ? cfg->tokens_mean + 6 * cfg->tokens_sd + 1 : cfg->output_tokens;
  cfg->max_tokens = (uint32_t)FL_MIN(longest, (double)MOCK_MAX_TOKENS);
  return 0;
}

/* ---- prebuilt data ---- */

static int build_text(mock_cfg_t *cfg) {
  uint32_t n = cfg->max_tokens;
  cfg->text_end = malloc(((size_t)n + 1) * sizeof *cfg->text_end);
  cfg->text = malloc((size_t)n * 12 + 1);
  if (!cfg->text_end || !cfg->text) return FL_ENOMEM;
  size_t len = 0;
  cfg->text_end[0] = 0;
  for (uint32_t i = 0; i < n; i++) {
    len += (size_t)snprintf(cfg->text + len, 13, "tok%u ", i);
    cfg->text_end[i + 1] = (uint32_t)len;
  }
  cfg->text[len] = '\0';
  return 0;
}

int fl_mock_prepare(mock_cfg_t *cfg) {
  cfg->content_seed = cfg->seeded ? cfg->seed : 0;
  if (!cfg->seeded) cfg->seed = fl_now_ns() ^ ((uint64_t)getpid() << 32);
  json_t *name = json_string(cfg->model);
  cfg->model_json = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
  json_decref(name);
  if (!cfg->model_json || build_text(cfg) != 0) return FL_ENOMEM;
  unsigned port = ntohs(cfg->addr.ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&cfg->addr.ss)->sin6_port
                                                           : ((struct sockaddr_in *)&cfg->addr.ss)->sin_port);
  snprintf(cfg->fixed_headers, sizeof cfg->fixed_headers, "x-mock-model: %s\r\nx-mock-port: %u\r\n", cfg->model,
           port);
  json_t *models = json_pack("{s:s,s:[{s:s,s:s,s:I,s:s}]}", "object", "list", "data", "id", cfg->model, "object",
                             "model", "created", (json_int_t)time(NULL), "owned_by", "fledge-mock");
  cfg->models_body = models ? json_dumps(models, JSON_COMPACT) : NULL;
  json_decref(models);
  json_t *err = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", "injected failure (--error-rate)", "type",
                          "server_error", "param", "code");
  cfg->error_body = err ? json_dumps(err, JSON_COMPACT) : NULL;
  json_decref(err);
  return cfg->models_body && cfg->error_body ? 0 : FL_ENOMEM;
}

void fl_mock_cfg_free(mock_cfg_t *cfg) {
  free(cfg->model_json);
  free(cfg->text);
  free(cfg->text_end);
  free(cfg->models_body);
  free(cfg->error_body);
}
