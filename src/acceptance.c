/* acceptance.c — reads the JSONL set, sends each request with the blocking client on a worker
 * thread of its own, checks the answers, and reports through a uv_async on the control loop. */
#include "acceptance.h"
#include "client.h"
#include "conf.h"
#include "stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_bool stopping;          /* shutdown: finish the case in flight, skip the rest */

void fl_acceptance_stop_all(void) { atomic_store(&stopping, true); }

typedef struct {
  uv_async_t async;
  char route[64], path[1024], model[128];
  char *headers;                    /* the version's own request headers (secret), or NULL */
  fl_addr_t backend;
  fl_acceptance_done_fn done;
  void *ctx;
  json_t *report;
  pthread_t thread;
} job_t;

/* "choices.0.message.content": object keys and array indices separated by dots. */
static const json_t *json_path(const json_t *j, const char *path) {
  char part[128];
  while (j && *path) {
    size_t n = strcspn(path, ".");
    snprintf(part, sizeof part, "%.*s", (int)FL_MIN(n, sizeof part - 1), path);
    char *end;
    long idx = strtol(part, &end, 10);
    j = json_is_array(j) && *part && !*end ? json_array_get(j, (size_t)idx) : json_object_get(j, part);
    path += n + (path[n] == '.');
  }
  return j;
}

static const char *check_json(const json_t *want, const char *body, char *buf, size_t cap) {
  json_t *got = json_loads(body, 0, NULL);
  const char *key, *why = NULL;
  json_t *value;
  json_object_foreach((json_t *)want, key, value) {
    if (!json_equal(json_path(got, key), value)) {
      snprintf(buf, cap, "json %s differs", key);
      why = buf;
      break;
    }
  }
  json_decref(got);
  return why;
}

static const char *check_regex(const char *pattern, const char *body, char *buf, size_t cap) {
  regex_t re;
  const char *costly = fl_regex_too_costly(pattern);
  if (costly) {
    snprintf(buf, cap, "regex too costly to compile (%s)", costly);
    return buf;
  }
  if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) {
    snprintf(buf, cap, "bad regex %s", pattern);
    return buf;
  }
  int rc = regexec(&re, body, 0, NULL, 0);
  regfree(&re);
  if (rc == 0) return NULL;
  snprintf(buf, cap, "body does not match /%s/", pattern);
  return buf;
}

const char *fl_acceptance_check(const json_t *expect, int status, const char *body, double latency_ms, char *buf,
                                size_t cap) {
  const json_t *v;
  if (!json_is_object(expect)) return "\"expect\" must be an object";
  if ((v = json_object_get(expect, "status")) && !json_is_integer(v)) return "expect.status must be an integer";
  if ((v = json_object_get(expect, "max_latency_ms")) && !json_is_number(v)) return "expect.max_latency_ms must be a number";
  if ((v = json_object_get(expect, "json")) && !json_is_object(v)) return "expect.json must be an object";
  if ((v = json_object_get(expect, "regex")) && !json_is_string(v)) return "expect.regex must be a string";
  if ((v = json_object_get(expect, "status")) && json_integer_value(v) != status) {
    snprintf(buf, cap, "status %d, expected %lld", status, (long long)json_integer_value(v));
    return buf;
  }
  if ((v = json_object_get(expect, "max_latency_ms")) && latency_ms > json_number_value(v)) {
    snprintf(buf, cap, "took %.0f ms, more than %.0f", latency_ms, json_number_value(v));
    return buf;
  }
  const char *why = NULL;
  if ((v = json_object_get(expect, "json"))) why = check_json(v, body, buf, cap);
  if (!why && (v = json_object_get(expect, "regex"))) why = check_regex(json_string_value(v), body, buf, cap);
  return why;
}

/* Sends one case; returns its failure reason or NULL, and the latency. */
static const char *run_case(const job_t *job, json_t *c, double *latency_ms, char *buf, size_t cap) {
  json_t *req = json_object_get(c, "request");
  const char *method = json_string_value(json_object_get(req, "method"));
  const char *path = json_string_value(json_object_get(req, "path"));
  json_t *body = json_object_get(req, "body");
  if (body && job->model[0] && json_is_object(body)) json_object_set_new(body, "model", json_string(job->model));
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL, *answer = NULL, err[256];
  int status = 0;
  /* as long as the case allows, and a second to tell "too slow" from "no answer"; else a minute */
  json_t *max = json_object_get(json_object_get(c, "expect"), "max_latency_ms");
  int timeout_ms = json_is_number(max) && json_number_value(max) > 0 && json_number_value(max) < 3600000
                       ? (int)json_number_value(max) + 1000 : 60000;
  uint64_t t0 = fl_now_ns();
  fl_client_call_t call = {.addr = &job->backend, .method = method ? method : "POST",
                           .path = path ? path : "/v1/chat/completions", .body = text, .headers = job->headers,
                           .timeout_ms = timeout_ms};
  int rc = fl_client_fetch(&call, NULL, &status, &answer, err, sizeof err);
  *latency_ms = (fl_now_ns() - t0) / 1e6;
  free(text);
  const char *why = rc ? snprintf(buf, cap, "%s", err), buf
                       : fl_acceptance_check(json_object_get(c, "expect"), status, answer, *latency_ms, buf, cap);
  free(answer);
  return why;
}

static json_t *replay(const job_t *job) {
  FILE *f = fopen(job->path, "r");
  if (!f) return json_pack("{s:s}", "error", "cannot read the acceptance file");
  json_t *failures = json_array();
  double latencies[4096];
  size_t cases = 0, passed = 0, line_no = 0;
  char line[65536], why_buf[300];
  while (!atomic_load(&stopping) && cases < FL_ARRAY_LEN(latencies) && fgets(line, sizeof line, f)) {
    line_no++;
    if (!strchr(line, '\n') && !feof(f)) {       /* a line longer than the buffer: one failure, skip it */
      int ch;
      while ((ch = fgetc(f)) != EOF && ch != '\n') {}
      latencies[cases++] = 0;
      json_array_append_new(failures, json_pack("{s:I, s:s}", "line", (json_int_t)line_no, "why", "line over 64 KiB"));
      continue;
    }
    if (line[strspn(line, " \t\r\n")] == '\0') continue;
    json_t *c = json_loads(line, 0, NULL);
    const char *why = c ? run_case(job, c, &latencies[cases], why_buf, sizeof why_buf) : "not a JSON line";
    if (!c) latencies[cases] = 0;
    cases++;
    if (why) json_array_append_new(failures, json_pack("{s:I, s:s}", "line", (json_int_t)line_no, "why", why));
    else passed++;
    json_decref(c);
  }
  bool interrupted = atomic_load(&stopping), more = false;
  while (!interrupted && !more && fgets(line, sizeof line, f)) more = line[strspn(line, " \t\r\n")] != '\0';
  fclose(f);
  if (interrupted) {                 /* not a verdict: the rollout stays in acceptance (a restart ends it) */
    json_decref(failures);
    return json_pack("{s:s, s:b}", "error", "interrupted by shutdown", "interrupted", 1);
  }
  size_t timed = cases;              /* latencies[] holds the cases run */
  if (more) {                        /* never a pass on a set only partly run */
    cases++;
    json_array_append_new(failures, json_pack("{s:I, s:s}", "line", (json_int_t)line_no + 1, "why",
                                              "more than 4096 cases: the rest were not run"));
  }
  double max = 0;
  for (size_t i = 0; i < timed; i++) max = FL_MAX(max, latencies[i]);
  return json_pack("{s:I, s:I, s:f, s:{s:f, s:f}, s:o}", "cases", (json_int_t)cases, "passed", (json_int_t)passed,
                   "pass_rate", cases ? (double)passed / (double)cases : 0.0, "latency_ms", "p50",
                   timed ? fl_stats_quantile(latencies, timed, 0.5) : 0.0, "max", max, "failures", failures);
}

static void *job_main(void *arg) {
  job_t *job = arg;
  job->report = replay(job);
  uv_async_send(&job->async);
  return NULL;
}

static void on_closed(uv_handle_t *h) {
  job_t *job = h->data;
  if (job->headers) explicit_bzero(job->headers, strlen(job->headers));
  free(job->headers);
  free(job);
}

static void on_done(uv_async_t *a) {
  job_t *job = a->data;
  pthread_join(job->thread, NULL);
  job->done(job->route, job->report, job->ctx);
  uv_close((uv_handle_t *)&job->async, on_closed);
}

int fl_acceptance_run(uv_loop_t *loop, const char *route, const char *path, const fl_addr_t *backend,
                      const char *model, const char *headers, fl_acceptance_done_fn done, void *ctx) {
  job_t *job = calloc(1, sizeof *job);
  if (!job || (headers && !(job->headers = strdup(headers)))) {
    free(job);
    return FL_ENOMEM;
  }
  snprintf(job->route, sizeof job->route, "%s", route);
  snprintf(job->path, sizeof job->path, "%s", path);
  snprintf(job->model, sizeof job->model, "%s", model ? model : "");
  job->backend = *backend;
  job->done = done;
  job->ctx = ctx;
  uv_async_init(loop, &job->async, on_done);
  job->async.data = job;
  if (pthread_create(&job->thread, NULL, job_main, job) != 0) {
    uv_close((uv_handle_t *)&job->async, on_closed);
    return FL_ENOMEM;
  }
  return 0;
}
