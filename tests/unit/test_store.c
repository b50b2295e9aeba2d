/* test_store.c — the state store as a specification: route state round trips and replaces, the
 * audit log and analysis windows come back in order, a decision is written whole or not at all,
 * state survives restarts and SIGKILL, and open errors name the file. Each test works in its own temp directory, removed afterwards. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

/* ---- a temp directory per test ---- */

typedef struct {
  char dir[64];
  char path[128]; /* dir/state.db, not created yet */
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/fl-store-XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
  *state = f;
  return 0;
}

/* Removes everything in the directory (the db and its -wal/-shm files), then the directory. */
static int teardown(void **state) {
  fixture_t *f = *state;
  DIR *d = opendir(f->dir);
  struct dirent *e;
  char p[512];
  while (d && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
    unlink(p);
  }
  if (d) closedir(d);
  int rc = rmdir(f->dir);
  free(f);
  return rc;
}

static fl_store_t *open_store(const char *path) {
  char err[512] = "";
  fl_store_t *s = NULL;
  int rc = fl_store_open(path, &s, err, sizeof err);
  if (rc != 0) fprintf(stderr, "%s\n", err);
  assert_int_equal(rc, 0);
  assert_non_null(s);
  return s;
}

static int64_t unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static fl_route_state_t full_state(const char *route, uint32_t weight_bp) {
  fl_route_state_t st = {.weight_bp = weight_bp, .config_weight_bp = 2000, .step = 3, .failures = 1,
                         .updated_ms = 1700000000123, .looks = 4};
  snprintf(st.route, sizeof st.route, "%s", route);
  snprintf(st.stable_version, sizeof st.stable_version, "llama-3-8b@v1");
  snprintf(st.canary_version, sizeof st.canary_version, "llama-3-8b@v2");
  snprintf(st.previous_stable, sizeof st.previous_stable, "llama-3-8b@v0");
  snprintf(st.rollout_state, sizeof st.rollout_state, "progressing");
  snprintf(st.spec_json, sizeof st.spec_json, "{\"steps\":[5,25,50,100],\"interval\":\"5m\"}");
  snprintf(st.pause_reason, sizeof st.pause_reason, "the config file's weight changed from 10.00 to 30.00");
  return st;
}

static void assert_state_equal(const fl_route_state_t *a, const fl_route_state_t *b) {
  assert_string_equal(a->route, b->route);
  assert_int_equal(a->weight_bp, b->weight_bp);
  assert_int_equal(a->config_weight_bp, b->config_weight_bp);
  assert_int_equal(a->looks, b->looks);
  assert_string_equal(a->stable_version, b->stable_version);
  assert_string_equal(a->canary_version, b->canary_version);
  assert_string_equal(a->previous_stable, b->previous_stable);
  assert_string_equal(a->rollout_state, b->rollout_state);
  assert_int_equal(a->step, b->step);
  assert_int_equal(a->failures, b->failures);
  assert_int_equal(a->updated_ms, b->updated_ms);
  assert_string_equal(a->spec_json, b->spec_json);
  assert_string_equal(a->pause_reason, b->pause_reason);
}

/* ---- SQLite directly, to look at the file behind the store's back ---- */

static sqlite3 *raw_open(const char *path) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  sqlite3_busy_timeout(db, 2000);
  return db;
}

static void raw_exec(const char *path, const char *sql) {
  sqlite3 *db = raw_open(path);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

/* The first column of the first row of sql, as text. */
static void raw_text(const char *path, const char *sql, char *out, size_t cap) {
  sqlite3 *db = raw_open(path);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
}

static long raw_long(const char *path, const char *sql) {
  char text[32];
  raw_text(path, sql, text, sizeof text);
  return atol(text);
}

/* ---- route state ---- */

static void a_route_state_round_trips_every_field(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t in = full_state("chat", 2500), out;
  assert_int_equal(fl_store_put_route(s, &in), 0);
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_state_equal(&out, &in);
  fl_store_close(s);
}

static void putting_a_route_again_replaces_its_one_row(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t first = full_state("chat", 500), second = full_state("chat", 5000), out;
  snprintf(second.rollout_state, sizeof second.rollout_state, "paused");
  second.step = 2;
  assert_int_equal(fl_store_put_route(s, &first), 0);
  assert_int_equal(fl_store_put_route(s, &second), 0);
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_state_equal(&out, &second);
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM routes"), 1);
  fl_store_close(s);
}

static void a_route_without_state_is_enoent(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t in = full_state("chat", 100), out;
  assert_int_equal(fl_store_get_route(s, "chat", &out), FL_ENOENT);
  assert_int_equal(fl_store_put_route(s, &in), 0);
  assert_int_equal(fl_store_get_route(s, "embed", &out), FL_ENOENT);
  assert_int_equal(fl_store_get_route(s, "cha", &out), FL_ENOENT);
  fl_store_close(s);
}

static void updated_ms_is_the_write_time_when_left_zero(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t in = full_state("chat", 100), out;
  in.updated_ms = 0;
  int64_t before = unix_ms();
  assert_int_equal(fl_store_put_route(s, &in), 0);
  int64_t after = unix_ms();
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_in_range(out.updated_ms, before, after);
  fl_store_close(s);
}

/* Text longer than a field (a field without its NUL, or a row written by something else) comes
 * back cut to fit and NUL-terminated; AddressSanitizer would see an overflow. */
static void long_strings_are_truncated_never_overflowed(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t in = full_state("chat", 100), out;
  memset(in.canary_version, 'c', sizeof in.canary_version); /* no NUL at all */
  assert_int_equal(fl_store_put_route(s, &in), 0);
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_int_equal(strlen(out.canary_version), sizeof out.canary_version - 1);
  raw_exec(f->path, "UPDATE routes SET stable_version = printf('%.300c', 'v'), rollout_state = 'rolled_back_by_operator',"
                    " spec_json = printf('%.20000c', 'j') WHERE route = 'chat'");
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_int_equal(strlen(out.stable_version), sizeof out.stable_version - 1);
  assert_string_equal(out.rollout_state, "rolled_back_by_");
  assert_int_equal(strlen(out.spec_json), sizeof out.spec_json - 1);
  assert_int_equal(out.spec_json[0], 'j');
  fl_store_close(s);
}

/* ---- events ---- */

static void events_come_back_in_order_filtered_and_limited(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  const char *routes[5] = {"chat", "embed", "chat", "chat", "embed"};
  json_t *details[5];
  int64_t ids[5];
  int64_t before = unix_ms();
  for (int i = 0; i < 5; i++) {
    details[i] = json_pack("{s:i, s:s, s:[i,i], s:{s:b}}", "weight", i * 1000, "why", "step", "steps", 5, 25,
                           "extra", "manual", i % 2);
    assert_int_equal(fl_store_add_event(s, routes[i], "api:ops", "weight", details[i], &ids[i]), 0);
    if (i > 0) assert_true(ids[i] > ids[i - 1]);
  }
  int64_t after = unix_ms();

  json_t *all = NULL;
  assert_int_equal(fl_store_events(s, NULL, 0, 100, &all), 0);
  assert_int_equal(json_array_size(all), 5);
  for (int i = 0; i < 5; i++) {
    json_t *e = json_array_get(all, (size_t)i);
    assert_int_equal(json_integer_value(json_object_get(e, "id")), ids[i]);
    assert_in_range(json_integer_value(json_object_get(e, "time_ms")), before, after);
    assert_string_equal(json_string_value(json_object_get(e, "route")), routes[i]);
    assert_string_equal(json_string_value(json_object_get(e, "actor")), "api:ops");
    assert_string_equal(json_string_value(json_object_get(e, "kind")), "weight");
    assert_true(json_equal(json_object_get(e, "detail"), details[i]));
  }
  json_decref(all);

  json_t *chat = NULL;
  assert_int_equal(fl_store_events(s, "chat", ids[0], 100, &chat), 0); /* after the first: 3rd and 4th */
  assert_int_equal(json_array_size(chat), 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(chat, 0), "id")), ids[2]);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(chat, 1), "id")), ids[3]);
  json_decref(chat);

  json_t *limited = NULL;
  assert_int_equal(fl_store_events(s, NULL, ids[1], 2, &limited), 0);
  assert_int_equal(json_array_size(limited), 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(limited, 0), "id")), ids[2]);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(limited, 1), "id")), ids[3]);
  json_decref(limited);

  json_t *none = NULL;
  assert_int_equal(fl_store_events(s, "chat", ids[4], 100, &none), 0);
  assert_int_equal(json_array_size(none), 0);
  json_decref(none);
  for (int i = 0; i < 5; i++) json_decref(details[i]);
  fl_store_close(s);
}

/* ---- windows ---- */

static void windows_come_back_newest_first_up_to_the_limit(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  const char *verdicts[4] = {"pass", "pass", "inconclusive", "fail"};
  json_t *analyses[4];
  int64_t ids[4], other;
  for (int i = 0; i < 4; i++) {
    analyses[i] = json_pack("{s:f, s:{s:i, s:i}}", "p_latency", 0.01 * (i + 1), "n", "stable", 900 + i, "canary",
                            100 + i);
    assert_int_equal(fl_store_add_window(s, "chat", i, verdicts[i], analyses[i], &ids[i]), 0);
    if (i == 1) assert_int_equal(fl_store_add_window(s, "embed", 0, "pass", analyses[i], &other), 0);
  }
  json_t *w = NULL;
  assert_int_equal(fl_store_windows(s, "chat", 3, &w), 0);
  assert_int_equal(json_array_size(w), 3);
  for (int k = 0; k < 3; k++) { /* newest first: windows 3, 2, 1 */
    json_t *row = json_array_get(w, (size_t)k);
    int i = 3 - k;
    assert_int_equal(json_integer_value(json_object_get(row, "id")), ids[i]);
    assert_string_equal(json_string_value(json_object_get(row, "route")), "chat");
    assert_int_equal(json_integer_value(json_object_get(row, "step")), i);
    assert_string_equal(json_string_value(json_object_get(row, "verdict")), verdicts[i]);
    assert_true(json_equal(json_object_get(row, "analysis"), analyses[i]));
    assert_true(json_integer_value(json_object_get(row, "time_ms")) > 0);
  }
  json_decref(w);
  assert_int_equal(fl_store_windows(s, "embed", 10, &w), 0);
  assert_int_equal(json_array_size(w), 1);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(w, 0), "id")), other);
  json_decref(w);
  for (int i = 0; i < 4; i++) json_decref(analyses[i]);
  fl_store_close(s);
}

/* ---- a decision: one transaction ---- */

static const char *const HOOKS[] = {"https://hooks.example/a", "http://127.0.0.1:9/b"};

/* A step decision: the route at step 1, the window that passed, the step event (owing two
 * webhooks) and a second event owing none. The JSON values are the caller's to free. */
static fl_store_decision_t step_decision(fl_route_state_t *st, fl_store_window_t *w, json_t **detail,
                                         json_t **analysis) {
  *st = full_state("chat", 5000);
  st->step = 1;
  *detail = json_pack("{s:i, s:f, s:f}", "step", 1, "from", 20.0, "to", 50.0);
  *analysis = json_pack("{s:s}", "verdict", "pass");
  *w = (fl_store_window_t){.route = "chat", .step = 0, .verdict = "pass", .analysis = *analysis};
  return (fl_store_decision_t){
      .state = st, .window = w, .n_events = 2,
      .events = {{.route = "chat", .actor = "rollout", .kind = "step", .detail = *detail, .hooks = HOOKS, .n_hooks = 2},
                 {.route = "chat", .actor = "rollout", .kind = "note", .detail = NULL}}};
}

static void a_decision_writes_state_window_events_and_their_webhooks_together(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t st, out;
  fl_store_window_t w;
  json_t *detail, *analysis, *events = NULL, *owed = NULL;
  fl_store_decision_t d = step_decision(&st, &w, &detail, &analysis);
  assert_int_equal(fl_store_commit_decision(s, &d), 0);
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_state_equal(&out, &st);
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM windows WHERE step = 0 AND verdict = 'pass'"), 1);
  assert_int_equal(fl_store_events(s, "chat", 0, 10, &events), 0);
  assert_int_equal(json_array_size(events), 2);
  json_t *step = json_array_get(events, 0);
  assert_string_equal(json_string_value(json_object_get(step, "kind")), "step");
  assert_true(json_equal(json_object_get(step, "detail"), detail));
  /* the webhooks owed name the step event, not the one after it, and carry it whole */
  assert_int_equal(fl_store_outbox_waiting(s, 0, 10, &owed), 0);
  assert_int_equal(json_array_size(owed), 2);
  for (size_t i = 0; i < 2; i++) {
    json_t *row = json_array_get(owed, i);
    assert_string_equal(json_string_value(json_object_get(row, "url")), HOOKS[i]);
    assert_true(json_equal(json_object_get(row, "event"), step));
  }
  json_decref(events);
  json_decref(owed);
  json_decref(detail);
  json_decref(analysis);
  fl_store_close(s);
}

/* The file refuses the decision's second statement (a trigger standing for a full disk): none of
 * it is written, the route keeps its state before the decision, and the decision waits whole in
 * the backlog, to be written whole once the file takes it. */
static void a_decision_the_file_refuses_halfway_leaves_no_row_and_waits_whole(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t before = full_state("chat", 2000), st, out;
  assert_int_equal(fl_store_put_route(s, &before), 0);
  raw_exec(f->path, "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END");
  fl_store_window_t w;
  json_t *detail, *analysis, *owed = NULL;
  fl_store_decision_t d = step_decision(&st, &w, &detail, &analysis);
  assert_int_equal(fl_store_commit_decision(s, &d), FL_EIO);
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_state_equal(&out, &before);
  assert_int_equal(raw_long(f->path, "SELECT (SELECT count(*) FROM windows) + (SELECT count(*) FROM events) + "
                                     "(SELECT count(*) FROM outbox)"), 0);
  fl_store_health_t h;
  fl_store_health(s, &h);
  assert_int_equal(h.backlog, 1);
  assert_non_null(strstr(h.last_error, "disk full"));
  assert_int_equal(fl_store_flush(s), FL_EIO);            /* still refused: still none of it */
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM windows"), 0);
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_int_equal(out.weight_bp, 2000);

  raw_exec(f->path, "DROP TRIGGER refuse");
  assert_int_equal(fl_store_flush(s), 0);
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_int_equal(out.weight_bp, 5000);
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM windows"), 1);
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM events"), 2);
  assert_int_equal(fl_store_outbox_waiting(s, 0, 10, &owed), 0);
  assert_int_equal(json_array_size(owed), 2);
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(owed, 0), "event"), "kind")),
                      "step");
  json_decref(owed);
  json_decref(detail);
  json_decref(analysis);
  fl_store_close(s);
}

/* Behind writes still waiting, a decision waits too, so the file never holds it before them. */
static void a_decision_behind_waiting_writes_waits_behind_them(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  raw_exec(f->path, "CREATE TRIGGER refuse BEFORE INSERT ON settings BEGIN SELECT RAISE(ABORT, 'no room'); END");
  assert_int_equal(fl_store_put_setting(s, "k", "v"), FL_EIO);
  fl_route_state_t st;
  fl_store_window_t w;
  json_t *detail, *analysis;
  fl_store_decision_t d = step_decision(&st, &w, &detail, &analysis);
  assert_int_equal(fl_store_commit_decision(s, &d), FL_EIO);
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM routes"), 0);
  raw_exec(f->path, "DROP TRIGGER refuse");
  assert_int_equal(fl_store_flush(s), 0);
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM routes") + raw_long(f->path, "SELECT count(*) FROM settings"),
                   2);
  json_decref(detail);
  json_decref(analysis);
  fl_store_close(s);
}

static void a_webhook_marked_done_is_owed_no_more(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t st;
  fl_store_window_t w;
  json_t *detail, *analysis, *owed = NULL;
  fl_store_decision_t d = step_decision(&st, &w, &detail, &analysis);
  assert_int_equal(fl_store_commit_decision(s, &d), 0);
  assert_int_equal(fl_store_outbox_waiting(s, 0, 10, &owed), 0);
  json_int_t first = json_integer_value(json_object_get(json_array_get(owed, 0), "id"));
  json_decref(owed);
  assert_int_equal(fl_store_outbox_done(s, first, true), 0);
  assert_int_equal(fl_store_outbox_waiting(s, 0, 10, &owed), 0);
  assert_int_equal(json_array_size(owed), 1);
  json_int_t second = json_integer_value(json_object_get(json_array_get(owed, 0), "id"));
  assert_true(second > first);
  json_decref(owed);
  assert_int_equal(fl_store_outbox_waiting(s, second, 10, &owed), 0);   /* after_id: only newer rows */
  assert_int_equal(json_array_size(owed), 0);
  json_decref(owed);
  assert_int_equal(fl_store_outbox_done(s, second, false), 0);            /* given up: done, not delivered */
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM outbox WHERE done_ms IS NOT NULL"), 2);
  assert_int_equal(raw_long(f->path, "SELECT sum(delivered) FROM outbox"), 1);
  json_decref(detail);
  json_decref(analysis);
  fl_store_close(s);
}

/* ---- durability ---- */

static void state_survives_close_and_reopen(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t in = full_state("chat", 7500), out;
  json_t *detail = json_pack("{s:i}", "weight", 7500), *analysis = json_pack("{s:s}", "verdict", "pass");
  int64_t event_id, window_id;
  assert_int_equal(fl_store_put_route(s, &in), 0);
  assert_int_equal(fl_store_add_event(s, "chat", "rollout", "step", detail, &event_id), 0);
  assert_int_equal(fl_store_add_window(s, "chat", 3, "pass", analysis, &window_id), 0);
  fl_store_close(s);

  s = open_store(f->path);
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_state_equal(&out, &in);
  json_t *events = NULL, *windows = NULL;
  assert_int_equal(fl_store_events(s, "chat", 0, 10, &events), 0);
  assert_int_equal(json_array_size(events), 1);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(events, 0), "id")), event_id);
  assert_true(json_equal(json_object_get(json_array_get(events, 0), "detail"), detail));
  assert_int_equal(fl_store_windows(s, "chat", 10, &windows), 0);
  assert_int_equal(json_array_size(windows), 1);
  assert_true(json_equal(json_object_get(json_array_get(windows, 0), "analysis"), analysis));
  int64_t next_id;
  assert_int_equal(fl_store_add_event(s, "chat", "rollout", "step", detail, &next_id), 0);
  assert_true(next_id > event_id);
  json_decref(events);
  json_decref(windows);
  json_decref(detail);
  json_decref(analysis);
  fl_store_close(s);
}

static void expect_killed(pid_t pid) {
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGKILL);
}

static void a_write_survives_sigkill_without_close(void **state) {
  fixture_t *f = *state;
  fl_route_state_t in = full_state("chat", 4200), out;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) { /* the child: write, then die without closing anything */
    fl_store_t *s = NULL;
    char err[256];
    json_t *detail = json_pack("{s:i}", "weight", 4200);
    if (fl_store_open(f->path, &s, err, sizeof err) != 0 || fl_store_put_route(s, &in) != 0 ||
        fl_store_add_event(s, "chat", "api:ops", "weight", detail, NULL) != 0)
      _exit(1);
    kill(getpid(), SIGKILL);
    _exit(2);
  }
  expect_killed(pid);
  char wal[160];
  struct stat sb;
  snprintf(wal, sizeof wal, "%s-wal", f->path);
  assert_int_equal(stat(wal, &sb), 0); /* the writes are still only in the WAL: recovery is tested */
  assert_true(sb.st_size > 0);

  fl_store_t *s = open_store(f->path);
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_state_equal(&out, &in);
  json_t *events = NULL, *expect = json_pack("{s:i}", "weight", 4200);
  assert_int_equal(fl_store_events(s, "chat", 0, 10, &events), 0);
  assert_int_equal(json_array_size(events), 1);
  assert_true(json_equal(json_object_get(json_array_get(events, 0), "detail"), expect));
  json_decref(events);
  json_decref(expect);
  fl_store_close(s);
}

/* Shared with the writing child: the last sequence number whose route and event both committed. */
typedef struct {
  _Atomic int32_t acked;
  int32_t base;
} writer_shared_t;

/* The child: writes route states and events with increasing sequence numbers until killed. The
 * sequence is in step; weight_bp follows it so that a torn row would show. */
static void write_until_killed(const char *path, writer_shared_t *sh) {
  fl_store_t *s = NULL;
  char err[256];
  if (fl_store_open(path, &s, err, sizeof err) != 0) _exit(1);
  for (int32_t seq = sh->base + 1;; seq++) {
    fl_route_state_t st = full_state("chat", (uint32_t)(seq % 10001));
    st.step = seq;
    json_t *detail = json_pack("{s:i}", "seq", seq);
    if (fl_store_put_route(s, &st) != 0 || fl_store_add_event(s, "chat", "rollout", "step", detail, NULL) != 0)
      _exit(1);
    json_decref(detail);
    atomic_store(&sh->acked, seq);
  }
}

static void wait_for_first_write(pid_t pid, writer_shared_t *sh) {
  for (int waited_us = 0; atomic_load(&sh->acked) <= sh->base; waited_us += 100) {
    int status;
    assert_int_equal(waitpid(pid, &status, WNOHANG), 0); /* the child failed */
    assert_true(waited_us < 10 * 1000 * 1000);
    usleep(100);
  }
}

static int32_t check_after_crash(const char *path, int32_t acked) {
  char verdict[64];
  raw_text(path, "PRAGMA integrity_check", verdict, sizeof verdict);
  assert_string_equal(verdict, "ok");
  fl_store_t *s = open_store(path);
  fl_route_state_t out;
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  assert_in_range(out.step, acked, acked + 1); /* acknowledged, or committed just before the kill */
  assert_int_equal(out.weight_bp, (uint32_t)(out.step % 10001));
  json_t *events = NULL;
  assert_int_equal(fl_store_events(s, "chat", 0, 1000000, &events), 0);
  json_t *last = json_array_get(events, json_array_size(events) - 1);
  json_int_t last_seq = json_integer_value(json_object_get(json_object_get(last, "detail"), "seq"));
  assert_in_range(last_seq, acked, out.step);
  json_decref(events);
  fl_store_close(s);
  return out.step;
}

static void sigkill_during_writes_never_corrupts_the_store(void **state) {
  fixture_t *f = *state;
  writer_shared_t *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(sh != MAP_FAILED);
  sh->base = 0;
  for (int round = 0; round < 20; round++) {
    atomic_store(&sh->acked, sh->base);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) write_until_killed(f->path, sh);
    wait_for_first_write(pid, sh);
    usleep((useconds_t)(1000 + (round % 7) * 700)); /* 1 to 5 ms of writes in flight */
    kill(pid, SIGKILL);
    expect_killed(pid);
    sh->base = check_after_crash(f->path, atomic_load(&sh->acked));
  }
  munmap(sh, sizeof *sh);
}

/* ---- the file ---- */

static void the_file_is_in_wal_mode_with_schema_version_5(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  char mode[16];
  raw_text(f->path, "PRAGMA journal_mode", mode, sizeof mode);
  assert_string_equal(mode, "wal");
  assert_int_equal(raw_long(f->path, "PRAGMA user_version"), 5);
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                     "('routes','events','windows','events_route_id','windows_route_id',"
                                     "'settings','feedback','outbox','outbox_waiting')"),
                   9);
  fl_store_close(s);
}

static void a_version_1_file_is_migrated_keeping_its_data(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t st = {.route = "chat", .weight_bp = 2500, .step = 1};
  assert_int_equal(fl_store_put_route(s, &st), 0);
  fl_store_close(s);
  raw_exec(f->path, "DROP TABLE settings; DROP TABLE feedback; ALTER TABLE routes DROP COLUMN pause_reason; "
                    "DROP TABLE outbox; ALTER TABLE routes DROP COLUMN looks; PRAGMA user_version=1");
  s = open_store(f->path);
  assert_int_equal(raw_long(f->path, "PRAGMA user_version"), 5);
  fl_route_state_t back;
  assert_int_equal(fl_store_get_route(s, "chat", &back), 0);
  assert_int_equal(back.weight_bp, 2500);
  assert_int_equal(fl_store_put_setting(s, "k", "v"), 0);
  fl_store_close(s);
}

static void a_version_2_file_gains_the_pause_reason_keeping_its_routes(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t st = {.route = "chat", .weight_bp = 3000, .step = 0, .rollout_state = "paused"};
  assert_int_equal(fl_store_put_route(s, &st), 0);
  fl_store_close(s);
  raw_exec(f->path, "ALTER TABLE routes DROP COLUMN pause_reason; DROP TABLE outbox; ALTER TABLE routes DROP COLUMN looks; "
                    "PRAGMA user_version=2");
  s = open_store(f->path);
  assert_int_equal(raw_long(f->path, "PRAGMA user_version"), 5);
  fl_route_state_t back;
  assert_int_equal(fl_store_get_route(s, "chat", &back), 0);
  assert_int_equal(back.weight_bp, 3000);
  assert_string_equal(back.rollout_state, "paused");
  assert_string_equal(back.pause_reason, "");             /* paused by an older build: no reason known */
  snprintf(st.pause_reason, sizeof st.pause_reason, "paused by hand (api)");
  assert_int_equal(fl_store_put_route(s, &st), 0);
  assert_int_equal(fl_store_get_route(s, "chat", &back), 0);
  assert_string_equal(back.pause_reason, "paused by hand (api)");
  fl_store_close(s);
}

/* A file of the build before decisions had an outbox: its events owe no webhook (they were sent,
 * or not, by that build), and new decisions' do. */
/* A file of the build before a step's looks were kept: its routes read 0 looks, so a rollout
 * resumed from it starts its budget afresh, as that build did. */
static void a_version_4_file_gains_the_looks_keeping_its_routes(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_route_state_t st = full_state("chat", 1000), back;
  assert_int_equal(fl_store_put_route(s, &st), 0);
  fl_store_close(s);
  raw_exec(f->path, "ALTER TABLE routes DROP COLUMN looks; PRAGMA user_version=4");
  s = open_store(f->path);
  assert_int_equal(raw_long(f->path, "PRAGMA user_version"), 5);
  assert_int_equal(fl_store_get_route(s, "chat", &back), 0);
  assert_int_equal(back.weight_bp, 1000);
  assert_int_equal(back.looks, 0);
  fl_store_close(s);
}

static void a_version_3_file_gains_the_outbox_keeping_its_events(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  json_t *detail = json_pack("{s:i}", "step", 0), *owed = NULL;
  assert_int_equal(fl_store_add_event(s, "chat", "api", "rollout_started", detail, NULL), 0);
  fl_store_close(s);
  raw_exec(f->path, "DROP TABLE outbox; ALTER TABLE routes DROP COLUMN looks; PRAGMA user_version=3");
  s = open_store(f->path);
  assert_int_equal(raw_long(f->path, "PRAGMA user_version"), 5);
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM events"), 1);
  assert_int_equal(fl_store_outbox_waiting(s, 0, 10, &owed), 0);
  assert_int_equal(json_array_size(owed), 0);
  json_decref(owed);
  fl_store_decision_t d = {.n_events = 1,
                           .events = {{.route = "chat", .actor = "api", .kind = "paused", .detail = detail,
                                       .hooks = HOOKS, .n_hooks = 1}}};
  assert_int_equal(fl_store_commit_decision(s, &d), 0);
  assert_int_equal(fl_store_outbox_waiting(s, 0, 10, &owed), 0);
  assert_int_equal(json_array_size(owed), 1);
  json_decref(owed);
  json_decref(detail);
  fl_store_close(s);
}

static void settings_are_kept_and_replaced(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  char *v = NULL;
  assert_int_equal(fl_store_get_setting(s, "feedback_key", &v), FL_ENOENT);
  assert_null(v);
  assert_int_equal(fl_store_put_setting(s, "feedback_key", "abc"), 0);
  assert_int_equal(fl_store_put_setting(s, "feedback_key", "def"), 0);
  fl_store_close(s);
  s = open_store(f->path);
  assert_int_equal(fl_store_get_setting(s, "feedback_key", &v), 0);
  assert_string_equal(v, "def");
  free(v);
  fl_store_close(s);
}

static void a_request_is_rated_once_and_the_first_rating_stays(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  fl_feedback_rec_t r = {.request_id = "id-1", .route = "chat", .variant = "canary", .version = "v2", .score = -1,
                         .label = "wrong", .comment = NULL};
  assert_int_equal(fl_store_add_feedback(s, &r), 0);
  r.score = 1;
  assert_int_equal(fl_store_add_feedback(s, &r), FL_ELIMIT);
  r.request_id = "id-2";
  assert_int_equal(fl_store_add_feedback(s, &r), 0);
  fl_store_close(s);
  assert_int_equal(raw_long(f->path, "SELECT count(*) FROM feedback"), 2);
  assert_int_equal(raw_long(f->path, "SELECT score FROM feedback WHERE request_id = 'id-1'"), -1);
}

static void expect_open_error(const char *path, const char *words) {
  char err[512] = "";
  fl_store_t *s = (fl_store_t *)&err; /* must be reset to NULL */
  int rc = fl_store_open(path, &s, err, sizeof err);
  assert_true(rc < 0);
  assert_null(s);
  assert_non_null(strstr(err, path));
  if (!strstr(err, words)) fail_msg("\"%s\" does not say \"%s\"", err, words);
}

static void opening_in_a_missing_directory_fails_naming_the_file(void **state) {
  fixture_t *f = *state;
  char path[192];
  snprintf(path, sizeof path, "%s/missing/state.db", f->dir);
  expect_open_error(path, "unable to open");
}

static void opening_a_file_that_is_not_a_database_fails_naming_it(void **state) {
  fixture_t *f = *state;
  FILE *fp = fopen(f->path, "wb");
  assert_non_null(fp);
  for (int i = 0; i < 4096; i++) fputc((i * 7919) & 0xff, fp);
  fclose(fp);
  expect_open_error(f->path, "not a database");
}

static void opening_a_newer_schema_fails_naming_the_file(void **state) {
  fixture_t *f = *state;
  fl_store_close(open_store(f->path));
  raw_exec(f->path, "PRAGMA user_version=99");
  expect_open_error(f->path, "newer");
}

/* Root writes through file modes, so the read-only case can only be shown as another user. */
static void opening_a_read_only_file_fails_naming_it(void **state) {
  fixture_t *f = *state;
  if (geteuid() == 0) skip();
  fl_store_close(open_store(f->path));
  assert_int_equal(chmod(f->path, 0444), 0);
  expect_open_error(f->path, "read-only");
}

/* Another process holding the write lock longer than busy_timeout (2 s): the write waits for
 * it, then fails with FL_EIO and SQLite's message. */
static void a_write_blocked_past_the_busy_timeout_is_eio(void **state) {
  fixture_t *f = *state;
  fl_store_t *s = open_store(f->path);
  sqlite3 *other = raw_open(f->path);
  assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  fl_route_state_t in = full_state("chat", 100), out;
  int64_t start = unix_ms();
  assert_int_equal(fl_store_put_route(s, &in), FL_EIO);
  assert_true(unix_ms() - start >= 1900);
  assert_non_null(strstr(fl_store_error(s), "locked"));
  assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  assert_int_equal(fl_store_put_route(s, &in), 0); /* the statement is reusable after a failure */
  assert_int_equal(fl_store_get_route(s, "chat", &out), 0);
  fl_store_close(s);
}

static unsigned mode_of(const char *path, const char *suffix) {
  char name[256];
  struct stat st;
  snprintf(name, sizeof name, "%s%s", path, suffix);
  if (stat(name, &st) != 0) fail_msg("%s: %s", name, strerror(errno));
  return (unsigned)(st.st_mode & 0777);
}

/* The store holds the feedback key and whole webhook URLs: its files are their owner's only,
 * whatever the umask, and a file another build or a hand left open to others is narrowed. */
static void the_files_are_their_owners_only_and_a_wider_one_is_narrowed(void **state) {
  fixture_t *f = *state;
  mode_t old = umask(0);
  fl_store_t *s = open_store(f->path);
  umask(old);
  assert_int_equal(mode_of(f->path, ""), 0600);
  assert_int_equal(mode_of(f->path, "-wal"), 0600);
  assert_int_equal(mode_of(f->path, "-shm"), 0600);
  fl_store_close(s);
  assert_int_equal(chmod(f->path, 0664), 0);
  s = open_store(f->path);
  assert_int_equal(mode_of(f->path, ""), 0600);
  assert_int_equal(mode_of(f->path, "-wal"), 0600);
  fl_store_close(s);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(a_route_state_round_trips_every_field),
      T(putting_a_route_again_replaces_its_one_row),
      T(a_route_without_state_is_enoent),
      T(updated_ms_is_the_write_time_when_left_zero),
      T(long_strings_are_truncated_never_overflowed),
      T(events_come_back_in_order_filtered_and_limited),
      T(windows_come_back_newest_first_up_to_the_limit),
      T(a_decision_writes_state_window_events_and_their_webhooks_together),
      T(a_decision_the_file_refuses_halfway_leaves_no_row_and_waits_whole),
      T(a_decision_behind_waiting_writes_waits_behind_them),
      T(a_webhook_marked_done_is_owed_no_more),
      T(state_survives_close_and_reopen),
      T(a_write_survives_sigkill_without_close),
      T(sigkill_during_writes_never_corrupts_the_store),
      T(the_file_is_in_wal_mode_with_schema_version_5),
      T(the_files_are_their_owners_only_and_a_wider_one_is_narrowed),
      T(a_version_1_file_is_migrated_keeping_its_data),
      T(a_version_2_file_gains_the_pause_reason_keeping_its_routes),
      T(a_version_3_file_gains_the_outbox_keeping_its_events),
      T(a_version_4_file_gains_the_looks_keeping_its_routes),
      T(settings_are_kept_and_replaced),
      T(a_request_is_rated_once_and_the_first_rating_stays),
      T(opening_in_a_missing_directory_fails_naming_the_file),
      T(opening_a_file_that_is_not_a_database_fails_naming_it),
      T(opening_a_newer_schema_fails_naming_the_file),
      T(opening_a_read_only_file_fails_naming_it),
      T(a_write_blocked_past_the_busy_timeout_is_eio),
  };
  return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
