/* load.c — `fledge load`: requests are paced by tickets (the k-th is due at start + k/rps), taken
 * by a pool of threads each making one request at a time (so at most --concurrency are in flight
 * and a slow gateway is not flooded by a backlog); each thread counts its own answers and
 * histograms, and the main thread sums them once a second. */
#include "load.h"
#include "client.h"
#include "hist.h"

#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 1024

enum { V_STABLE, V_CANARY, V_OTHER, V_COUNT };
static const char *const variant_names[V_COUNT] = {"stable", "canary", "none"};

typedef struct {
  fl_addr_t addr;
  char path[512];
  double rps;
  unsigned users, threads;
  bool stream, quiet;
  double duration_s;                  /* 0: until a signal */
} load_opts_t;

typedef struct {                      /* one thread's counts: it writes, the main thread reads */
  pthread_t thread;
  atomic_uint_least64_t answered[V_COUNT], server_errors, failed, streamed;
  fl_hist_t latency, ttft;            /* ms of the whole answer; of a stream's first byte */
  uint64_t rng;
} worker_t;

static const load_opts_t *opts;
static worker_t *workers;
static atomic_uint_least64_t next_ticket;
static uint64_t start_ns;
static volatile sig_atomic_t stopping;

static void on_signal(int sig) { stopping = 1; }

static uint64_t xorshift(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Sleeps until t_ns (monotonic) in slices, so a signal stops the wait within 100 ms. */
static void sleep_until(uint64_t t_ns) {
  for (uint64_t now = fl_now_ns(); now < t_ns && !stopping; now = fl_now_ns()) {
    uint64_t left = FL_MIN(t_ns - now, 100000000ull);
    struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
    nanosleep(&ts, NULL);
  }
}

static int variant_of(const char *v) {
  return strcmp(v, "stable") == 0 ? V_STABLE : strcmp(v, "canary") == 0 ? V_CANARY : V_OTHER;
}

static void one_request(worker_t *w, uint64_t ticket) {
  unsigned user = 1 + (unsigned)(xorshift(&w->rng) % opts->users);
  bool stream = opts->stream && ticket % 2 == 1;             /* every other one, so both kinds are judged */
  char body[256], headers[64], err[256];
  snprintf(body, sizeof body,
           "{\"model\":\"any\",\"user\":\"user-%u\",\"stream\":%s,\"messages\":[{\"role\":\"user\",\"content\":"
           "\"hello from user %u\"}]}", user, stream ? "true" : "false", user);
  snprintf(headers, sizeof headers, "x-user-id: user-%u\r\n", user);
  fl_client_call_t call = {.addr = &opts->addr, .method = "POST", .path = opts->path, .body = body,
                           .headers = headers, .timeout_ms = 60000};
  fl_client_answer_t ans;
  if (fl_client_exchange(&call, &ans, err, sizeof err) != 0) {
    atomic_fetch_add(&w->failed, 1);
    return;
  }
  atomic_fetch_add(&w->answered[variant_of(ans.variant)], 1);
  if (ans.status >= 500) atomic_fetch_add(&w->server_errors, 1);
  fl_hist_record(&w->latency, (uint64_t)(ans.total_ms * 1000));
  if (stream && ans.status < 300) {
    fl_hist_record(&w->ttft, (uint64_t)(ans.first_byte_ms * 1000));
    atomic_fetch_add(&w->streamed, 1);
  }
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  uint64_t end_ns = opts->duration_s > 0 ? start_ns + (uint64_t)(opts->duration_s * 1e9) : UINT64_MAX;
  while (!stopping) {
    uint64_t ticket = atomic_fetch_add(&next_ticket, 1);
    uint64_t due = start_ns + (uint64_t)((double)ticket * 1e9 / opts->rps);
    if (due >= end_ns) break;
    sleep_until(due);
    if (stopping) break;
    one_request(w, ticket);
  }
  return NULL;
}

/* ---- what the main thread sees ---- */

typedef struct {
  uint64_t answered[V_COUNT], server_errors, failed, streamed;
  fl_hist_snap_t latency, ttft;
} totals_t;

static void sum(totals_t *t) {
  memset(t, 0, sizeof *t);
  for (unsigned i = 0; i < opts->threads; i++) {
    worker_t *w = &workers[i];
    for (int v = 0; v < V_COUNT; v++) t->answered[v] += atomic_load(&w->answered[v]);
    t->server_errors += atomic_load(&w->server_errors);
    t->failed += atomic_load(&w->failed);
    t->streamed += atomic_load(&w->streamed);
    fl_hist_add_to(&w->latency, &t->latency);
    fl_hist_add_to(&w->ttft, &t->ttft);
  }
}

static uint64_t answered(const totals_t *t) { return t->answered[0] + t->answered[1] + t->answered[2]; }

/* One line: totals so far, and the last second's latency. */
static void progress(const totals_t *now, const totals_t *before, bool tty) {
  static fl_hist_snap_t second;
  memset(&second, 0, sizeof second);
  fl_hist_snap_add_diff(&second, &now->latency, &before->latency);
  double elapsed = (double)(fl_now_ns() - start_ns) / 1e9;
  fprintf(stderr, "%s%6.0fs  answered %llu (%llu/s)  5xx %llu  failed %llu  stable %llu  canary %llu  "
          "p50 %.0f ms  p99 %.0f ms%s", tty ? "\r" : "", elapsed, (unsigned long long)answered(now),
          (unsigned long long)(answered(now) - answered(before)), (unsigned long long)now->server_errors,
          (unsigned long long)now->failed, (unsigned long long)now->answered[V_STABLE],
          (unsigned long long)now->answered[V_CANARY], fl_hist_quantile(&second, 0.5) / 1000,
          fl_hist_quantile(&second, 0.99) / 1000, tty ? "\033[K" : "\n");
}

static void summary(const totals_t *t) {
  uint64_t n = answered(t);
  printf("\n%llu answered (%llu with 5xx), %llu failed without an answer, in %.1f s\n", (unsigned long long)n,
         (unsigned long long)t->server_errors, (unsigned long long)t->failed,
         (double)(fl_now_ns() - start_ns) / 1e9);
  for (int v = 0; v < V_COUNT; v++)
    if (t->answered[v])
      printf("  %-7s %8llu  %5.1f%%\n", variant_names[v], (unsigned long long)t->answered[v],
             100.0 * (double)t->answered[v] / (double)n);
  printf("  latency p50 %.1f ms, p99 %.1f ms", fl_hist_quantile(&t->latency, 0.5) / 1000,
         fl_hist_quantile(&t->latency, 0.99) / 1000);
  if (t->streamed)
    printf("; first byte of %llu streams p50 %.1f ms, p99 %.1f ms", (unsigned long long)t->streamed,
           fl_hist_quantile(&t->ttft, 0.5) / 1000, fl_hist_quantile(&t->ttft, 0.99) / 1000);
  printf("\n");
}

/* ---- options ---- */

static const char USAGE[] =
    "usage: fledge load [--url URL] [--rps N] [--users M] [--stream] [--duration D] [--concurrency C] [--quiet]\n"
    "\n"
    "Sends chat completions to a gateway at a steady rate from M users (each keeps its x-user-id and\n"
    "OpenAI `user`, so each stays on its variant), printing a progress line each second and a\n"
    "summary per variant at the end (Ctrl-C, or after --duration).\n"
    "\n"
    "  --url URL           http://ADDRESS:PORT/PATH (default http://127.0.0.1:8080/v1/chat/completions)\n"
    "  --rps N             requests per second in all (default 20)\n"
    "  --users M           distinct users (default 1000)\n"
    "  --stream            every other request asks for a streamed (SSE) answer\n"
    "  --duration D        stop after D: seconds, or 90s, 2m (default: until Ctrl-C)\n"
    "  --concurrency C     requests in flight at most (default 32)\n"
    "  --quiet             no progress line, the summary only\n"
    "\n"
    "Exit status: 0 when the gateway answered, 1 when no request got an answer, 2 on bad options.\n";

static int parse_url(const char *url, load_opts_t *o) {
  if (strncmp(url, "http://", 7) != 0) return -1;
  const char *host = url + 7, *slash = strchr(host, '/');
  char hostport[128];
  size_t len = slash ? (size_t)(slash - host) : strlen(host);
  if (len == 0 || len >= sizeof hostport) return -1;
  memcpy(hostport, host, len);
  hostport[len] = '\0';
  if (strncmp(hostport, "localhost:", 10) == 0) {       /* the one name this tool knows */
    char numeric[128];
    snprintf(numeric, sizeof numeric, "127.0.0.1:%s", hostport + 10);
    snprintf(hostport, sizeof hostport, "%s", numeric);
  }
  snprintf(o->path, sizeof o->path, "%s", slash ? slash : "/");
  return fl_addr_parse(hostport, &o->addr);
}

static int parse_duration(const char *text, double *out) {
  char *end;
  double v = strtod(text, &end);
  if (end == text || v <= 0) return -1;
  if (strcmp(end, "m") == 0) v *= 60;
  else if (strcmp(end, "h") == 0) v *= 3600;
  else if (*end && strcmp(end, "s") != 0) return -1;
  *out = v;
  return 0;
}

static int bad(const char *what) {
  fprintf(stderr, "fledge load: %s\n%s", what, USAGE);
  return 2;
}

static int parse(int argc, char **argv, load_opts_t *o) {
  static const struct option longs[] = {
      {"url", required_argument, NULL, 'u'},      {"rps", required_argument, NULL, 'r'},
      {"users", required_argument, NULL, 'n'},    {"stream", no_argument, NULL, 's'},
      {"duration", required_argument, NULL, 'd'}, {"concurrency", required_argument, NULL, 'c'},
      {"quiet", no_argument, NULL, 'q'},          {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  *o = (load_opts_t){.rps = 20, .users = 1000, .threads = 32};
  parse_url("http://127.0.0.1:8080/v1/chat/completions", o);
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    char *end = NULL;
    if (ch == 'h') {
      fputs(USAGE, stdout);
      return 1;
    }
    if (ch == 'u' && parse_url(optarg, o) != 0) return bad("--url must be http://ADDRESS:PORT/PATH");
    if (ch == 'r' && (!((o->rps = strtod(optarg, &end)) > 0) || *end || o->rps > 1e6))
      return bad("--rps must be a number above 0");
    if (ch == 'n' && ((o->users = (unsigned)strtoul(optarg, &end, 10)) == 0 || *end))
      return bad("--users must be a positive integer");
    if (ch == 'c' && ((o->threads = (unsigned)strtoul(optarg, &end, 10)) == 0 || *end || o->threads > MAX_THREADS))
      return bad("--concurrency must be 1 to 1024");
    if (ch == 'd' && parse_duration(optarg, &o->duration_s) != 0) return bad("--duration must be like 30, 90s or 2m");
    if (ch == 's') o->stream = true;
    if (ch == 'q') o->quiet = true;
    if (ch == '?') return bad("unknown option");
  }
  return optind < argc ? bad("unexpected argument") : 0;
}

int fl_load_main(int argc, char **argv) {
  static load_opts_t o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc == 1 ? 0 : rc;
  opts = &o;
  if (!(workers = calloc(o.threads, sizeof *workers))) return bad("out of memory");
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  start_ns = fl_now_ns();
  if (!o.quiet)
    fprintf(stderr, "fledge load: %g requests/s from %u users to http://%s%s%s\n", o.rps, o.users, o.addr.text, o.path,
            o.stream ? ", every other one streamed" : "");
  unsigned started = 0;
  for (; started < o.threads; started++) {
    workers[started].rng = (0x9E3779B97F4A7C15ull * (started + 1) ^ start_ns) | 1;   /* never 0 */
    if (pthread_create(&workers[started].thread, NULL, worker_main, &workers[started]) != 0) break;
  }
  o.threads = started;
  bool tty = isatty(STDERR_FILENO);
  static totals_t now, before;
  uint64_t end_ns = o.duration_s > 0 ? start_ns + (uint64_t)(o.duration_s * 1e9) : UINT64_MAX;
  for (uint64_t tick = start_ns + 1000000000ull; !stopping && fl_now_ns() < end_ns; tick += 1000000000ull) {
    sleep_until(FL_MIN(tick, end_ns));
    sum(&now);
    if (!o.quiet) progress(&now, &before, tty);
    before = now;
  }
  stopping = 1;
  for (unsigned i = 0; i < o.threads; i++) pthread_join(workers[i].thread, NULL);
  sum(&now);
  summary(&now);
  free(workers);
  return answered(&now) > 0 ? 0 : 1;
}
