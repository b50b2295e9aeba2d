/* mock.c — `fledge mock`: a fake OpenAI-compatible / KServe model server. It answers chat
 * and text completions (buffered or streamed as server-sent events), embeddings, model lists
 * and KServe v1 predictions with deterministic text, after configurable delays, and fails a
 * configurable share of requests. Each worker thread runs its own loop and SO_REUSEPORT
 * listener; bodies are formatted with snprintf so that the mock is never the bottleneck. */
#include "mock.h"
#include "mock_int.h"

#include "base64.h"
#include "common.h"
#include "httpd.h"
#include "netaddr.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define MOCK_STREAM_HEADERS_CAP (MOCK_HEADERS_CAP + 32u)   /* the above plus Cache-Control */



typedef struct sb {
  char *data;
  size_t len, cap;
  bool failed;
} sb_t;

typedef struct mock_call mock_call_t;

typedef struct mock_worker {
  const mock_cfg_t *cfg;
  unsigned index;
  uv_loop_t loop;
  uv_async_t stop;
  uv_thread_t thread;
  fl_httpd_t *httpd;
  uint64_t rng, next_id;
  mock_call_t *calls;             /* answers waiting on a timer, aborted at shutdown */
  sb_t sb;                        /* scratch for bodies; httpd copies what it keeps */
} mock_worker_t;

/* An answer that waits: a delayed buffered answer or a stream between tokens. */
struct mock_call {
  uv_timer_t timer;
  mock_worker_t *w;
  fl_httpd_req_t *req;
  mock_call_t *prev, *next;
  bool timer_init, linked, chat, include_usage;
  int status;
  char *body;
  size_t body_len;
  uint32_t sent, n_tokens, prompt_tokens;
  const char *finish;
  uint64_t start_ms, ttft_ms;
  long long created;
  char id[48];
  char headers[MOCK_STREAM_HEADERS_CAP];
};

/* What a completion request asks for. */
typedef struct mock_gen {
  json_t *root;
  const char *model, *user;       /* point into root */
  bool chat, stream, include_usage;
  long long max_tokens;           /* -1 when not given */
  uint32_t prompt_tokens;
} mock_gen_t;

/* ---- string builder ---- */

static bool sb_reserve(sb_t *b, size_t extra) {
  if (b->failed) return false;
  if (b->len + extra + 1 <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->failed = true;
    return false;
  }
  b->data = p;
  b->cap = cap;
  return true;
}

static void sb_add(sb_t *b, const char *s, size_t n) {
  if (!sb_reserve(b, n)) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void sb_adds(sb_t *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_addf(sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_addf(sb_t *b, const char *fmt, ...) {
  if (!sb_reserve(b, 256)) return;
  va_list ap, again;
  va_start(ap, fmt);
  va_copy(again, ap);
  int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
  if (n >= 0 && (size_t)n >= b->cap - b->len && sb_reserve(b, (size_t)n))
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, again);
  va_end(again);
  va_end(ap);
  if (n < 0 || b->failed) b->failed = true;
  else b->len += (size_t)n;
}

static void sb_reset(sb_t *b) {
  b->len = 0;
  b->failed = false;
}

/* ---- randomness, deterministic for a given --seed ---- */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double rng_unit(uint64_t *state) { return (double)(splitmix64(state) >> 11) * 0x1.0p-53; }

static uint64_t mock_delay(mock_worker_t *w, uint32_t base_ms) {
  uint32_t jitter = w->cfg->jitter_ms;
  return base_ms + (jitter ? splitmix64(&w->rng) % ((uint64_t)jitter + 1) : 0);
}

static bool chance(mock_worker_t *w, double share) { return share > 0 && rng_unit(&w->rng) < share; }

static bool mock_should_fail(mock_worker_t *w) { return chance(w, w->cfg->error_rate); }

/* A completion's length: --output-tokens, or a draw from the normal of --output-tokens-mean/-sd
 * (Box–Muller), rounded and kept within 1..max_tokens. */
static uint32_t draw_tokens(mock_worker_t *w) {
  const mock_cfg_t *cfg = w->cfg;
  if (cfg->tokens_sd < 0) return cfg->output_tokens;
  double u = 1 - rng_unit(&w->rng), v = rng_unit(&w->rng);
  double x = cfg->tokens_mean + cfg->tokens_sd * sqrt(-2 * log(u)) * cos(2 * M_PI * v);
  return (uint32_t)FL_MIN(FL_MAX(llround(x), 1), (long long)cfg->max_tokens);
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
  return h;
}

static uint32_t count_words(const char *s) {
  uint32_t n = 0;
  bool in_word = false;
  for (; *s; s++) {
    bool space = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v';
    if (!space && !in_word) n++;
    in_word = !space;
  }
  return n;
}

/* ---- headers every answer carries ---- */

/* Echoes a request value (at most max bytes, up to a NUL) into a header line; control bytes
 * become '?' so that nothing a client sends can start a header of its own. */
static size_t add_echo(char *out, size_t pos, size_t cap, const char *name, const char *value, size_t max) {
  if (!value) return pos;
  size_t name_len = strlen(name), len = strnlen(value, FL_MIN(max, MOCK_ECHO_MAX));
  if (pos + name_len + len + 5 > cap) return pos;
  memcpy(out + pos, name, name_len);
  pos += name_len;
  out[pos++] = ':';
  out[pos++] = ' ';
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)value[i];
    out[pos++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
  }
  out[pos++] = '\r';
  out[pos++] = '\n';
  out[pos] = '\0';
  return pos;
}

static void build_headers(const mock_worker_t *w, const fl_httpd_req_t *req, const char *saw_model,
                          const char *saw_user, char *out, size_t cap) {
  int n = snprintf(out, cap, "%sx-mock-body-bytes: %zu\r\n", w->cfg->fixed_headers, req->body_len);
  size_t pos = n > 0 && (size_t)n < cap ? (size_t)n : 0;
  out[pos] = '\0';
  size_t len = 0;
  const char *v = fl_httpd_header(req, "x-request-id", &len);
  pos = add_echo(out, pos, cap, "x-mock-saw-request-id", v, len);
  v = fl_httpd_header(req, "x-forwarded-for", &len);
  pos = add_echo(out, pos, cap, "x-mock-saw-forwarded-for", v, len);
  v = fl_httpd_header(req, "host", &len);
  pos = add_echo(out, pos, cap, "x-mock-saw-host", v, len);
  pos = add_echo(out, pos, cap, "x-mock-saw-path", req->path, SIZE_MAX);
  pos = add_echo(out, pos, cap, "x-mock-saw-model", saw_model, SIZE_MAX);
  add_echo(out, pos, cap, "x-mock-saw-user", saw_user, SIZE_MAX);
}

/* ---- answering now or later ---- */

static void on_call_closed(uv_handle_t *h) {
  mock_call_t *k = h->data;
  free(k->body);
  free(k);
}

/* What GET /metrics says, vLLM-style; shared by the workers. */
static const double TTFT_LE[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
static struct {
  atomic_long running;                 /* answers waiting on a timer or streaming */
  atomic_ulong ttft_count, ttft_bucket[8];
  atomic_ulong ttft_sum_ms;
} stats;

static void call_done(mock_call_t *k) {
  mock_worker_t *w = k->w;
  atomic_fetch_sub(&stats.running, 1);
  if (k->linked) {
    if (k->prev) k->prev->next = k->next;
    else w->calls = k->next;
    if (k->next) k->next->prev = k->prev;
    k->linked = false;
  }
  if (k->timer_init) {
    uv_close((uv_handle_t *)&k->timer, on_call_closed);
  } else {
    free(k->body);
    free(k);
  }
}

static mock_call_t *call_new(mock_worker_t *w, fl_httpd_req_t *req, const char *headers) {
  mock_call_t *k = malloc(sizeof *k);
  if (!k) return NULL;
  memset(k, 0, offsetof(mock_call_t, headers));
  k->w = w;
  k->req = req;
  snprintf(k->headers, sizeof k->headers, "%s", headers);
  atomic_fetch_add(&stats.running, 1);
  return k;
}

/* Timers are created only when an answer really waits: zero delay means no timer at all. */
static void call_wait(mock_call_t *k, uint64_t delay_ms, uv_timer_cb cb) {
  mock_worker_t *w = k->w;
  if (!k->timer_init) {
    uv_timer_init(&w->loop, &k->timer);
    k->timer.data = k;
    k->timer_init = true;
  }
  if (!k->linked) {
    k->prev = NULL;
    k->next = w->calls;
    if (w->calls) w->calls->prev = k;
    w->calls = k;
    k->linked = true;
  }
  uv_timer_start(&k->timer, cb, delay_ms, 0);
}

static void on_delayed_answer(uv_timer_t *t) {
  mock_call_t *k = t->data;
  fl_httpd_respond(k->req, k->status, "application/json", k->headers, k->body, k->body_len);
  call_done(k);
}

static void answer(mock_worker_t *w, fl_httpd_req_t *req, int status, const char *headers,
                   const char *body, size_t len, uint64_t delay_ms) {
  if (delay_ms == 0) {
    fl_httpd_respond(req, status, "application/json", headers, body, len);
    return;
  }
  mock_call_t *k = call_new(w, req, headers);
  char *copy = k ? malloc(len + 1) : NULL;
  if (!copy) {
    free(k);
    fl_httpd_respond(req, 500, "text/plain", headers, "out of memory\n", 14);
    return;
  }
  memcpy(copy, body, len);
  k->status = status;
  k->body = copy;
  k->body_len = len;
  call_wait(k, delay_ms, on_delayed_answer);
}

/* Answers at once with the OpenAI error shape; messages must be printable ASCII. */
static void send_error(mock_worker_t *w, fl_httpd_req_t *req, const char *headers, int status,
                       const char *type, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void send_error(mock_worker_t *w, fl_httpd_req_t *req, const char *headers, int status,
                       const char *type, const char *fmt, ...) {
  char msg[512], hdrs[MOCK_HEADERS_CAP];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!headers) {
    build_headers(w, req, NULL, NULL, hdrs, sizeof hdrs);
    headers = hdrs;
  }
  json_t *j = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", msg, "type", type, "param", "code");
  char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  const char *out = body ? body : "{\"error\":{\"type\":\"server_error\",\"message\":\"out of memory\"}}";
  fl_httpd_respond(req, status, "application/json", headers, out, strlen(out));
  free(body);
  json_decref(j);
}

static void send_sb(mock_worker_t *w, fl_httpd_req_t *req, const char *headers, uint64_t delay_ms) {
  if (w->sb.failed) send_error(w, req, headers, 500, "server_error", "out of memory");
  else answer(w, req, 200, headers, w->sb.data, w->sb.len, delay_ms);
}

/* ---- request bodies ---- */

static json_t *load_object(mock_worker_t *w, fl_httpd_req_t *req) {
  json_error_t je;
  json_t *root = json_loadb(req->body, req->body_len, 0, &je);
  if (!root) {
    send_error(w, req, NULL, 400, "invalid_request_error", "invalid JSON body: %s (line %d, column %d)",
               je.text, je.line, je.column);
    return NULL;
  }
  if (!json_is_object(root)) {
    json_decref(root);
    send_error(w, req, NULL, 400, "invalid_request_error", "the body must be a JSON object");
    return NULL;
  }
  return root;
}

/* Words of a message content: a string or an array of {"type":"text","text":...} parts. */
static uint32_t content_words(const json_t *content) {
  if (json_is_string(content)) return count_words(json_string_value(content));
  uint32_t n = 0;
  size_t i;
  json_t *part;
  json_array_foreach(content, i, part) {
    if (json_is_string(part)) n += count_words(json_string_value(part));
    else n += content_words(json_object_get(part, "text"));
  }
  return n;
}

/* Prompt tokens: words of the messages or the prompt; token-id arrays count one per id. */
static const char *count_prompt(mock_gen_t *g) {
  uint32_t n = 0;
  size_t i;
  json_t *item;
  if (g->chat) {
    json_t *messages = json_object_get(g->root, "messages");
    if (messages && !json_is_array(messages)) return "messages must be an array";
    json_array_foreach(messages, i, item) n += content_words(json_object_get(item, "content"));
  } else {
    json_t *prompt = json_object_get(g->root, "prompt");
    if (prompt && !json_is_string(prompt) && !json_is_array(prompt)) return "prompt must be a string or an array";
    if (json_is_string(prompt)) n = count_words(json_string_value(prompt));
    json_array_foreach(prompt, i, item) {
      if (json_is_string(item)) n += count_words(json_string_value(item));
      else if (json_is_array(item)) n += (uint32_t)json_array_size(item);
      else n++;
    }
  }
  g->prompt_tokens = n ? n : 1;
  return NULL;
}

static const char *parse_gen(mock_gen_t *g) {
  json_t *model = json_object_get(g->root, "model"), *user = json_object_get(g->root, "user");
  json_t *stream = json_object_get(g->root, "stream"), *options = json_object_get(g->root, "stream_options");
  json_t *max = json_object_get(g->root, "max_tokens");
  if (!max || json_is_null(max)) max = json_object_get(g->root, "max_completion_tokens");
  if (model && !json_is_string(model)) return "model must be a string";
  if (user && !json_is_string(user)) return "user must be a string";
  if (stream && !json_is_boolean(stream) && !json_is_null(stream)) return "stream must be a boolean";
  g->model = json_string_value(model);
  g->user = json_string_value(user);
  g->stream = json_is_true(stream);
  g->include_usage = json_is_true(json_object_get(options, "include_usage"));
  g->max_tokens = -1;
  if (max && !json_is_null(max)) {
    if (!json_is_integer(max) || json_integer_value(max) < 1) return "max_tokens must be a positive integer";
    g->max_tokens = json_integer_value(max);
  }
  return count_prompt(g);
}

/* ---- completions ---- */

static void gen_id(mock_worker_t *w, bool chat, char *out, size_t cap) {
  snprintf(out, cap, "%s-mock%x-%llx", chat ? "chatcmpl" : "cmpl", w->index, (unsigned long long)++w->next_id);
}

static void build_completion(mock_worker_t *w, const mock_gen_t *g, uint32_t n_tokens, const char *finish) {
  const mock_cfg_t *cfg = w->cfg;
  char id[48];
  gen_id(w, g->chat, id, sizeof id);
  sb_t *b = &w->sb;
  sb_reset(b);
  sb_addf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":%s,\"choices\":[{\"index\":0,", id,
          g->chat ? "chat.completion" : "text_completion", (long long)time(NULL), cfg->model_json);
  sb_adds(b, g->chat ? "\"message\":{\"role\":\"assistant\",\"content\":\"" : "\"text\":\"");
  sb_add(b, cfg->text, cfg->text_end[n_tokens]);
  sb_addf(b, "\"%s,\"logprobs\":null,\"finish_reason\":\"%s\"}],"
          "\"usage\":{\"prompt_tokens\":%u,\"completion_tokens\":%u,\"total_tokens\":%u}}",
          g->chat ? "}" : "", finish, g->prompt_tokens, n_tokens, g->prompt_tokens + n_tokens);
}

/* Opens one SSE event up to the inside of "choices":[ ... */
static void sse_open(sb_t *b, const mock_call_t *k) {
  sb_addf(b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":%s,\"choices\":[", k->id,
          k->chat ? "chat.completion.chunk" : "text_completion", k->created, k->w->cfg->model_json);
}

/* Token events and the tail are appended to the worker's scratch buffer; stream_pump sends
 * whatever is due in one write, so a fast stream costs one syscall, not one per token. */
static void add_token(mock_call_t *k) {
  const mock_cfg_t *cfg = k->w->cfg;
  sb_t *b = &k->w->sb;
  sse_open(b, k);
  if (k->chat) {
    const char *role = k->sent == 0 ? "\"role\":\"assistant\"," : "";
    sb_addf(b, "{\"index\":0,\"delta\":{%s\"content\":\"", role);
  } else {
    sb_adds(b, "{\"text\":\"");
  }
  sb_add(b, cfg->text + cfg->text_end[k->sent], cfg->text_end[k->sent + 1] - cfg->text_end[k->sent]);
  sb_addf(b, "\"%s,\"logprobs\":null,\"finish_reason\":null}]}\n\n", k->chat ? "}" : ",\"index\":0");
  k->sent++;
}

/* The final chunk with finish_reason, the usage chunk when asked for, and [DONE]. */
static void add_tail(mock_call_t *k) {
  sb_t *b = &k->w->sb;
  sse_open(b, k);
  if (k->chat) sb_addf(b, "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"%s\"}]}\n\n", k->finish);
  else sb_addf(b, "{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"%s\"}]}\n\n", k->finish);
  if (k->include_usage) {
    sse_open(b, k);
    sb_addf(b, "],\"usage\":{\"prompt_tokens\":%u,\"completion_tokens\":%u,\"total_tokens\":%u}}\n\n",
            k->prompt_tokens, k->n_tokens, k->prompt_tokens + k->n_tokens);
  }
  sb_adds(b, "data: [DONE]\n\n");
}

static void flush_events(mock_call_t *k) {
  sb_t *b = &k->w->sb;
  if (!b->failed) fl_httpd_stream_write(k->req, b->data, b->len);
  sb_reset(b);
}

/* Token i is due ttft after the start plus i token intervals; scheduling against the start
 * rather than the previous token keeps the rate exact however late a timer fires. */
static uint64_t token_due(const mock_call_t *k, uint32_t i) {
  double tps = k->w->cfg->tokens_per_s;
  return k->start_ms + k->ttft_ms + (tps > 0 ? (uint64_t)llround(i * 1000.0 / tps) : 0);
}

static void on_stream_timer(uv_timer_t *t);

static void stream_pump(mock_call_t *k) {
  uint64_t now = uv_now(&k->w->loop);
  sb_reset(&k->w->sb);
  while (k->sent < k->n_tokens && !fl_httpd_gone(k->req)) {
    uint64_t due = token_due(k, k->sent);
    if (due > now) {
      flush_events(k);
      call_wait(k, due - now, on_stream_timer);
      return;
    }
    add_token(k);
  }
  if (!fl_httpd_gone(k->req)) add_tail(k);
  flush_events(k);
  fl_httpd_stream_end(k->req);
  call_done(k);
}

static void on_stream_timer(uv_timer_t *t) { stream_pump(t->data); }

static void stream_start(mock_worker_t *w, fl_httpd_req_t *req, const char *headers, const mock_gen_t *g,
                         uint32_t n_tokens, const char *finish) {
  char hdrs[MOCK_STREAM_HEADERS_CAP];
  snprintf(hdrs, sizeof hdrs, "%.*sCache-Control: no-cache\r\n", (int)MOCK_HEADERS_CAP, headers);
  mock_call_t *k = call_new(w, req, hdrs);
  if (!k) {
    send_error(w, req, headers, 500, "server_error", "out of memory");
    return;
  }
  k->chat = g->chat;
  k->include_usage = g->include_usage;
  k->n_tokens = n_tokens;
  k->prompt_tokens = g->prompt_tokens;
  k->finish = finish;
  k->created = (long long)time(NULL);
  k->start_ms = uv_now(&w->loop);
  k->ttft_ms = mock_delay(w, w->cfg->ttft_ms);
  atomic_fetch_add(&stats.ttft_count, 1);
  atomic_fetch_add(&stats.ttft_sum_ms, k->ttft_ms);
  for (size_t i = 0; i < FL_ARRAY_LEN(TTFT_LE); i++)
    if (k->ttft_ms <= TTFT_LE[i] * 1000) atomic_fetch_add(&stats.ttft_bucket[i], 1);
  gen_id(w, g->chat, k->id, sizeof k->id);
  fl_httpd_stream_begin(req, 200, "text/event-stream", k->headers);
  stream_pump(k);
}

static void handle_generate(mock_worker_t *w, fl_httpd_req_t *req, bool chat) {
  mock_gen_t g = {.chat = chat};
  char hdrs[MOCK_HEADERS_CAP];
  g.root = load_object(w, req);
  if (!g.root) return;
  const char *err = parse_gen(&g);
  build_headers(w, req, g.model, g.user, hdrs, sizeof hdrs);
  json_decref(g.root);   /* g.model and g.user are dangling from here on */
  if (err) {
    send_error(w, req, hdrs, 400, "invalid_request_error", "%s", err);
    return;
  }
  const mock_cfg_t *cfg = w->cfg;
  if (mock_should_fail(w)) {
    answer(w, req, 500, hdrs, cfg->error_body, strlen(cfg->error_body), mock_delay(w, cfg->latency_ms));
    return;
  }
  uint32_t n_tokens = draw_tokens(w);
  const char *finish = "stop";
  if (g.max_tokens >= 0 && (uint64_t)g.max_tokens < n_tokens) {
    n_tokens = (uint32_t)g.max_tokens;
    finish = "length";
  }
  if (chance(w, cfg->empty_rate)) n_tokens = 0;
  else if (chance(w, cfg->truncate_rate)) finish = "length";
  if (g.stream) {
    stream_start(w, req, hdrs, &g, n_tokens, finish);
    return;
  }
  build_completion(w, &g, n_tokens, finish);
  send_sb(w, req, hdrs, mock_delay(w, cfg->latency_ms));
}

/* ---- embeddings and KServe predictions ---- */

static uint64_t input_hash(uint64_t h, const json_t *v) {
  if (json_is_string(v)) return fnv1a(h, json_string_value(v), json_string_length(v));
  if (json_is_integer(v)) {
    long long x = json_integer_value(v);
    return fnv1a(h, &x, sizeof x);
  }
  if (json_is_real(v)) {
    double x = json_real_value(v);
    return fnv1a(h, &x, sizeof x);
  }
  size_t i;
  json_t *item;
  json_array_foreach(v, i, item) h = input_hash(fnv1a(h, ",", 1), item);
  return h;
}

/* The vector as `encoding_format: base64` asks for it: little-endian float32s, base64. */
static void add_base64(mock_worker_t *w, const float *v, uint32_t dim) {
  uint8_t *bytes = malloc((size_t)dim * 4);
  char *text = malloc(fl_b64_encoded_len(FL_B64_STD, (size_t)dim * 4) + 1);
  if (bytes && text) {
    for (uint32_t j = 0; j < dim; j++) {
      uint32_t bits;
      memcpy(&bits, &v[j], 4);
      for (int k = 0; k < 4; k++) bytes[4 * j + (uint32_t)k] = (uint8_t)(bits >> (8 * k));
    }
    fl_b64_encode(FL_B64_STD, bytes, (size_t)dim * 4, text);
    sb_addf(&w->sb, "\"%s\"", text);
  } else {
    sb_adds(&w->sb, "null");                 /* out of memory: an answer the monitor counts as bad */
  }
  free(bytes);
  free(text);
}

/* A unit vector that depends only on the input and --seed, like a real embedding would;
 * drawn twice from the same state (norm, then values) so that no vector is kept. A float list,
 * or base64 when the request asked so (the OpenAI SDKs' default). */
static void add_embedding(mock_worker_t *w, const json_t *input, size_t index, bool base64) {
  uint32_t dim = w->cfg->embedding_dim;
  uint64_t start = input_hash(0xCBF29CE484222325ull ^ w->cfg->content_seed, input), state = start;
  double sq = 0;
  for (uint32_t j = 0; j < dim; j++) {
    double x = rng_unit(&state) * 2 - 1;
    sq += x * x;
  }
  double norm = sq > 0 ? 1 / sqrt(sq) : 0;
  state = start;
  sb_addf(&w->sb, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", index ? "," : "", index);
  bool nan = chance(w, w->cfg->nan_rate);           /* written as Python's json module would */
  float *v = malloc(sizeof *v * dim);
  if (!v) {
    sb_adds(&w->sb, "null}");
    return;
  }
  for (uint32_t j = 0; j < dim; j++) v[j] = nan && j == 0 ? NAN : (float)((rng_unit(&state) * 2 - 1) * norm);
  if (base64) {
    add_base64(w, v, dim);
  } else {
    sb_adds(&w->sb, "[");
    for (uint32_t j = 0; j < dim; j++) {
      if (isnan(v[j])) sb_adds(&w->sb, "NaN");
      else sb_addf(&w->sb, "%s%.6f", j ? "," : "", v[j]);
    }
    sb_adds(&w->sb, "]");
  }
  free(v);
  sb_adds(&w->sb, "}");
}

static uint32_t input_words(const json_t *v) {
  if (json_is_string(v)) {
    uint32_t n = count_words(json_string_value(v));
    return n ? n : 1;
  }
  return json_is_array(v) && json_array_size(v) ? (uint32_t)json_array_size(v) : 1;
}

/* "input" is one string, one token array, or an array of either. */
static const char *build_embeddings(mock_worker_t *w, const json_t *input, const json_t *format) {
  bool base64 = json_is_string(format) && strcmp(json_string_value(format), "base64") == 0;
  if (format && !base64 && !(json_is_string(format) && strcmp(json_string_value(format), "float") == 0))
    return "encoding_format must be \"float\" or \"base64\"";
  if (!json_is_string(input) && !json_is_array(input)) return "input must be a string or an array";
  bool many = json_is_array(input) && json_array_size(input) > 0 && !json_is_integer(json_array_get(input, 0));
  size_t n = many ? json_array_size(input) : 1;
  if (n > MOCK_MAX_INPUTS) return "too many inputs";
  sb_reset(&w->sb);
  sb_adds(&w->sb, "{\"object\":\"list\",\"data\":[");
  uint32_t tokens = 0;
  for (size_t i = 0; i < n; i++) {
    const json_t *item = many ? json_array_get(input, i) : input;
    if (!json_is_string(item) && !json_is_array(item)) return "each input must be a string or a token array";
    add_embedding(w, item, i, base64);
    tokens += input_words(item);
  }
  sb_addf(&w->sb, "],\"model\":%s,\"usage\":{\"prompt_tokens\":%u,\"total_tokens\":%u}}", w->cfg->model_json,
          tokens, tokens);
  return NULL;
}

static void handle_embeddings(mock_worker_t *w, fl_httpd_req_t *req) {
  char hdrs[MOCK_HEADERS_CAP];
  json_t *root = load_object(w, req);
  if (!root) return;
  json_t *model = json_object_get(root, "model");
  build_headers(w, req, json_string_value(model), NULL, hdrs, sizeof hdrs);
  const char *err = build_embeddings(w, json_object_get(root, "input"), json_object_get(root, "encoding_format"));
  if (err) {
    send_error(w, req, hdrs, 400, "invalid_request_error", "%s", err);
  } else if (mock_should_fail(w)) {
    answer(w, req, 500, hdrs, w->cfg->error_body, strlen(w->cfg->error_body), mock_delay(w, w->cfg->latency_ms));
  } else {
    send_sb(w, req, hdrs, mock_delay(w, w->cfg->latency_ms));
  }
  json_decref(root);
}

/* A stand-in model: the prediction for an instance is the sum of its numbers. */
static double instance_sum(const json_t *v) {
  if (json_is_number(v)) return json_number_value(v);
  double sum = 0;
  size_t i;
  const char *key;
  json_t *item;
  if (json_is_array(v)) json_array_foreach(v, i, item) sum += instance_sum(item);
  else if (json_is_object(v)) json_object_foreach((json_t *)v, key, item) sum += instance_sum(item);
  return sum;
}

/* A regression's number (always with a decimal point, as Python writes floats), NaN at
 * --nan-rate, or with --classes a class label that depends on the instance, skewed to 0. */
static void add_prediction(mock_worker_t *w, const json_t *instance) {
  const mock_cfg_t *cfg = w->cfg;
  if (chance(w, cfg->nan_rate)) {
    sb_adds(&w->sb, "NaN");
  } else if (cfg->classes) {
    uint64_t label = chance(w, cfg->class_skew) ? 0 : input_hash(0xCBF29CE484222325ull ^ cfg->content_seed, instance) % cfg->classes;
    sb_addf(&w->sb, "%llu", (unsigned long long)label);
  } else {
    double sum = instance_sum(instance);
    char num[40];
    snprintf(num, sizeof num, "%.17g", sum);
    if (!isfinite(sum)) sb_adds(&w->sb, "null");
    else sb_addf(&w->sb, "%s%s", num, strpbrk(num, ".e") ? "" : ".0");
  }
}

static void handle_predict(mock_worker_t *w, fl_httpd_req_t *req) {
  char hdrs[MOCK_HEADERS_CAP];
  json_t *root = load_object(w, req);
  if (!root) return;
  build_headers(w, req, NULL, NULL, hdrs, sizeof hdrs);
  json_t *instances = json_object_get(root, "instances");
  if (!json_is_array(instances)) {
    send_error(w, req, hdrs, 400, "invalid_request_error", "instances must be an array");
  } else if (mock_should_fail(w)) {
    answer(w, req, 500, hdrs, w->cfg->error_body, strlen(w->cfg->error_body), mock_delay(w, w->cfg->latency_ms));
  } else {
    sb_reset(&w->sb);
    sb_adds(&w->sb, "{\"predictions\":[");
    for (size_t i = 0; i < json_array_size(instances); i++) {
      if (i) sb_adds(&w->sb, ",");
      add_prediction(w, json_array_get(instances, i));
    }
    sb_adds(&w->sb, "]}");
    send_sb(w, req, hdrs, mock_delay(w, w->cfg->latency_ms));
  }
  json_decref(root);
}

/* ---- routing ---- */

static void answer_static(mock_worker_t *w, fl_httpd_req_t *req, const char *body) {
  char hdrs[MOCK_HEADERS_CAP];
  build_headers(w, req, NULL, NULL, hdrs, sizeof hdrs);
  fl_httpd_respond(req, 200, "application/json", hdrs, body, strlen(body));
}

static bool is_predict_path(const char *path) {
  static const char prefix[] = "/v1/models/", suffix[] = ":predict";
  size_t n = strlen(path);
  return n > sizeof prefix - 1 + sizeof suffix - 1 && strncmp(path, prefix, sizeof prefix - 1) == 0 &&
         strcmp(path + n - (sizeof suffix - 1), suffix) == 0;
}

static void not_found(mock_worker_t *w, fl_httpd_req_t *req) {
  char path[128];
  size_t i = 0;
  for (; req->path[i] && i < sizeof path - 1; i++) {
    unsigned char ch = (unsigned char)req->path[i];
    path[i] = ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\' ? '?' : (char)ch;
  }
  path[i] = '\0';
  send_error(w, req, NULL, 404, "not_found", "no route for %s %s", req->method, path);
}

static void handle_metrics(mock_worker_t *w, fl_httpd_req_t *req) {
  sb_t *b = &w->sb;
  const char *m = w->cfg->model_json;   /* a JSON string is a valid label value here: no escapes needed */
  sb_reset(b);
  sb_addf(b, "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
             "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=%s} %ld.0\n"
             "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
             "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=%s} %g\n"
             "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
             "# TYPE vllm:time_to_first_token_seconds histogram\n",
          m, (long)atomic_load(&stats.running), m, w->cfg->kv_cache_usage);
  for (size_t i = 0; i < FL_ARRAY_LEN(TTFT_LE); i++)
    sb_addf(b, "vllm:time_to_first_token_seconds_bucket{le=\"%g\",model_name=%s} %lu\n", TTFT_LE[i], m,
            atomic_load(&stats.ttft_bucket[i]));
  unsigned long count = atomic_load(&stats.ttft_count);
  sb_addf(b, "vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=%s} %lu\n"
             "vllm:time_to_first_token_seconds_sum{model_name=%s} %.3f\n"
             "vllm:time_to_first_token_seconds_count{model_name=%s} %lu\n",
          m, count, m, atomic_load(&stats.ttft_sum_ms) / 1000.0, m, count);
  char hdrs[MOCK_HEADERS_CAP];
  build_headers(w, req, NULL, NULL, hdrs, sizeof hdrs);
  if (!b->failed) fl_httpd_respond(req, 200, "text/plain; version=0.0.4", hdrs, b->data, b->len);
}

static void mock_handle(fl_httpd_req_t *req, void *ctx) {
  mock_worker_t *w = ctx;
  const char *path = req->path;
  bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
  bool post = strcmp(req->method, "POST") == 0;
  bool known = true;
  if (strcmp(path, "/health") == 0 && get) answer_static(w, req, "{\"status\":\"ok\"}");
  else if (strcmp(path, "/metrics") == 0 && get) handle_metrics(w, req);
  else if (strcmp(path, "/v1/models") == 0 && get) answer_static(w, req, w->cfg->models_body);
  else if (strcmp(path, "/v1/chat/completions") == 0 && post) handle_generate(w, req, true);
  else if (strcmp(path, "/v1/completions") == 0 && post) handle_generate(w, req, false);
  else if (strcmp(path, "/v1/embeddings") == 0 && post) handle_embeddings(w, req);
  else if (is_predict_path(path) && post) handle_predict(w, req);
  else known = false;
  if (known) return;
  bool route = strcmp(path, "/health") == 0 || strcmp(path, "/v1/models") == 0 ||
               strcmp(path, "/v1/chat/completions") == 0 || strcmp(path, "/v1/completions") == 0 ||
               strcmp(path, "/v1/embeddings") == 0 || is_predict_path(path);
  if (route) send_error(w, req, NULL, 405, "invalid_request_error", "method %s not allowed here", req->method);
  else not_found(w, req);
}

/* ---- workers and signals ---- */

static void on_worker_stop(uv_async_t *a) {
  mock_worker_t *w = a->data;
  while (w->calls) {
    mock_call_t *k = w->calls;
    uv_timer_stop(&k->timer);
    fl_httpd_abort(k->req);
    call_done(k);
  }
  fl_httpd_close(w->httpd);
  w->httpd = NULL;
  uv_close((uv_handle_t *)&w->stop, NULL);
}

static void worker_run(void *arg) {
  mock_worker_t *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* Runs the loop until every handle is closed, then releases it. */
static void worker_release(mock_worker_t *w) {
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_loop_close(&w->loop);
  free(w->sb.data);
}

static const char *error_text(int rc) {
  if (rc == FL_ENOMEM) return "out of memory";
  return rc > -1000 ? strerror(-rc) : "internal error";
}

/* Binds on the calling thread so that errors are reported before anything runs. */
static int worker_init(mock_worker_t *w, const mock_cfg_t *cfg, unsigned index) {
  w->cfg = cfg;
  w->index = index;
  w->rng = cfg->seed + 0x9E3779B97F4A7C15ull * (index + 1);
  int rc = uv_loop_init(&w->loop);
  if (rc != 0) return rc;
  uv_async_init(&w->loop, &w->stop, on_worker_stop);
  w->stop.data = w;
  fl_httpd_opts_t opts = {.reuseport = cfg->workers > 1, .max_body = 0};
  rc = fl_httpd_start(&w->loop, &cfg->addr, &opts, mock_handle, w, &w->httpd);
  if (rc != 0) {
    uv_close((uv_handle_t *)&w->stop, NULL);
    worker_release(w);
  }
  return rc;
}

typedef struct mock_main {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  mock_worker_t *workers;
  unsigned nworkers;
} mock_main_t;

static void on_signal(uv_signal_t *sig, int signum) {
  mock_main_t *m = sig->data;
  (void)signum;
  for (unsigned i = 0; i < m->nworkers; i++) uv_async_send(&m->workers[i].stop);
  uv_close((uv_handle_t *)&m->sigint, NULL);
  uv_close((uv_handle_t *)&m->sigterm, NULL);
}

static int start_workers(mock_main_t *m, const mock_cfg_t *cfg) {
  for (unsigned i = 0; i < cfg->workers; i++) {
    int rc = worker_init(&m->workers[i], cfg, i);
    if (rc != 0) {
      fprintf(stderr, "mock: cannot listen on %s: %s\n", cfg->addr.text, error_text(rc));
      return rc;
    }
    m->nworkers++;
  }
  return 0;
}

static int run_workers(mock_main_t *m) {
  unsigned started = 0;
  int rc = 0;
  for (; started < m->nworkers && rc == 0; started++)
    rc = uv_thread_create(&m->workers[started].thread, worker_run, &m->workers[started]);
  if (rc != 0) {
    started--;
    fprintf(stderr, "mock: cannot start a worker thread: %s\n", uv_strerror(rc));
    for (unsigned i = 0; i < m->nworkers; i++) uv_async_send(&m->workers[i].stop);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
  }
  uv_run(&m->loop, UV_RUN_DEFAULT);   /* until a signal (or the failure above) */
  for (unsigned i = 0; i < started; i++) uv_thread_join(&m->workers[i].thread);
  /* Workers never started still have their stop handle pending; run them here. */
  for (unsigned i = started; i < m->nworkers; i++) uv_run(&m->workers[i].loop, UV_RUN_DEFAULT);
  return rc;
}

int fl_mock_main(int argc, char **argv) {
  mock_cfg_t cfg;
  int rc = fl_mock_parse_args(argc, argv, &cfg);
  if (rc != 0) return rc == 1 ? 0 : 2;
  mock_main_t m = {0};
  int exit_code = 1;
  signal(SIGPIPE, SIG_IGN);
  m.workers = calloc(cfg.workers, sizeof *m.workers);
  if (fl_mock_prepare(&cfg) != 0 || !m.workers || uv_loop_init(&m.loop) != 0) {
    fprintf(stderr, "mock: out of memory\n");
    fl_mock_cfg_free(&cfg);
    free(m.workers);
    return 1;
  }
  /* Signals are watched before binding so that a stop during start-up is clean too. */
  uv_signal_init(&m.loop, &m.sigint);
  uv_signal_init(&m.loop, &m.sigterm);
  m.sigint.data = m.sigterm.data = &m;
  uv_signal_start(&m.sigint, on_signal, SIGINT);
  uv_signal_start(&m.sigterm, on_signal, SIGTERM);
  if (start_workers(&m, &cfg) == 0) {
    fprintf(stderr, "mock: listening on %s model %s\n", cfg.addr.text, cfg.model);
    exit_code = run_workers(&m) == 0 ? 0 : 1;
  } else {
    for (unsigned i = 0; i < m.nworkers; i++) uv_async_send(&m.workers[i].stop);
    for (unsigned i = 0; i < m.nworkers; i++) uv_run(&m.workers[i].loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&m.sigint, NULL);
    uv_close((uv_handle_t *)&m.sigterm, NULL);
    uv_run(&m.loop, UV_RUN_DEFAULT);
  }
  for (unsigned i = 0; i < m.nworkers; i++) worker_release(&m.workers[i]);
  uv_loop_close(&m.loop);
  free(m.workers);
  fl_mock_cfg_free(&cfg);
  return exit_code;
}
