/* store_sqlite.c — the state store of store.h on one SQLite file in WAL mode: route state, the
 * audit log of events and every analysis window, kept across crashes and restarts.
 *
 * Every write is one transaction: a single statement in autocommit, or a rollout's decision
 * (route state, window, events and the webhooks they owe in the outbox) as one explicit
 * transaction. With WAL and synchronous=NORMAL a committed write survives the process being
 * killed (it may be lost only to a power cut before the next checkpoint). A write the file does
 * not take (disk full, read-only, I/O error) is kept as SQL in an in-memory backlog, a decision
 * as one entry with its BEGIN and COMMIT, and run again, in order, by fl_store_flush and before
 * the next write. Statements are prepared once at open and reset after each use. One fl_store_t
 * belongs to one thread (the control thread); other processes may open the same file. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* MIGRATIONS[v] takes the schema from user_version v to v + 1; append, never edit. */
static const char *const MIGRATIONS[] = {
    "CREATE TABLE routes("
    "  route TEXT PRIMARY KEY NOT NULL,"
    "  weight_bp INTEGER NOT NULL DEFAULT 0,"
    "  config_weight_bp INTEGER NOT NULL DEFAULT 0,"
    "  stable_version TEXT NOT NULL DEFAULT '',"
    "  canary_version TEXT NOT NULL DEFAULT '',"
    "  previous_stable TEXT NOT NULL DEFAULT '',"
    "  rollout_state TEXT NOT NULL DEFAULT '',"
    "  step INTEGER NOT NULL DEFAULT -1,"
    "  failures INTEGER NOT NULL DEFAULT 0,"
    "  updated_ms INTEGER NOT NULL DEFAULT 0,"
    "  spec_json TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE events("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time_ms INTEGER NOT NULL,"
    "  route TEXT,"
    "  actor TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  detail TEXT NOT NULL);"
    "CREATE INDEX events_route_id ON events(route, id);"
    "CREATE TABLE windows("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time_ms INTEGER NOT NULL,"
    "  route TEXT NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  verdict TEXT NOT NULL,"
    "  analysis TEXT NOT NULL);"
    "CREATE INDEX windows_route_id ON windows(route, id);",
    "CREATE TABLE settings(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);"
    "CREATE TABLE feedback("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time_ms INTEGER NOT NULL,"
    "  request_id TEXT NOT NULL UNIQUE,"
    "  route TEXT NOT NULL,"
    "  variant TEXT NOT NULL,"
    "  version TEXT NOT NULL,"
    "  score REAL NOT NULL,"
    "  label TEXT,"
    "  comment TEXT);",
    "ALTER TABLE routes ADD COLUMN pause_reason TEXT NOT NULL DEFAULT '';",
    /* the webhooks an event owes, written with it; done_ms stays NULL until delivered or given up */
    "CREATE TABLE outbox("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  event_id INTEGER NOT NULL REFERENCES events(id),"
    "  url TEXT NOT NULL,"
    "  done_ms INTEGER,"
    "  delivered INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX outbox_waiting ON outbox(id) WHERE done_ms IS NULL;",
    /* the looks a rollout's step has taken: its error budget goes on across a restart */
    "ALTER TABLE routes ADD COLUMN looks INTEGER NOT NULL DEFAULT 0;",
};
#define SCHEMA_VERSION ((int)FL_ARRAY_LEN(MIGRATIONS))

#define ROUTE_COLUMNS                                                                                            \
  "route, weight_bp, config_weight_bp, stable_version, canary_version, previous_stable, rollout_state, step, " \
  "failures, updated_ms, spec_json, pause_reason, looks"

enum { ST_PUT_ROUTE, ST_GET_ROUTE, ST_ADD_EVENT, ST_EVENTS_ALL, ST_EVENTS_ROUTE, ST_ADD_WINDOW, ST_WINDOWS,
       ST_GET_SETTING, ST_PUT_SETTING, ST_ADD_SETTING, ST_ADD_FEEDBACK, ST_OUTBOX_WAITING, ST_OUTBOX_DONE,
       ST_COUNT };

static const char *const STATEMENTS[ST_COUNT] = {
    [ST_PUT_ROUTE] = "INSERT OR REPLACE INTO routes(" ROUTE_COLUMNS ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
    [ST_GET_ROUTE] = "SELECT " ROUTE_COLUMNS " FROM routes WHERE route = ?1",
    [ST_ADD_EVENT] = "INSERT INTO events(time_ms, route, actor, kind, detail) VALUES(?1,?2,?3,?4,?5)",
    [ST_EVENTS_ALL] = "SELECT id, time_ms, route, actor, kind, detail FROM events WHERE id > ?1 "
                      "ORDER BY id LIMIT ?2",
    [ST_EVENTS_ROUTE] = "SELECT id, time_ms, route, actor, kind, detail FROM events WHERE route = ?3 AND id > ?1 "
                        "ORDER BY id LIMIT ?2",
    [ST_ADD_WINDOW] = "INSERT INTO windows(time_ms, route, step, verdict, analysis) VALUES(?1,?2,?3,?4,?5)",
    [ST_WINDOWS] = "SELECT id, time_ms, route, step, verdict, analysis FROM windows WHERE route = ?1 "
                   "ORDER BY id DESC LIMIT ?2",
    [ST_GET_SETTING] = "SELECT value FROM settings WHERE key = ?1",
    [ST_PUT_SETTING] = "INSERT OR REPLACE INTO settings(key, value) VALUES(?1, ?2)",
    [ST_ADD_SETTING] = "INSERT OR IGNORE INTO settings(key, value) VALUES(?1, ?2)",
    [ST_ADD_FEEDBACK] = "INSERT OR IGNORE INTO feedback(time_ms, request_id, route, variant, version, score, label, "
                        "comment) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
    [ST_OUTBOX_WAITING] = "SELECT o.id, o.url, e.id, e.time_ms, e.route, e.actor, e.kind, e.detail FROM outbox o "
                          "JOIN events e ON e.id = o.event_id WHERE o.id > ?1 AND o.done_ms IS NULL "
                          "ORDER BY o.id LIMIT ?2",
    [ST_OUTBOX_DONE] = "UPDATE outbox SET done_ms = ?2, delivered = ?3 WHERE id = ?1",
};

/* A write the file did not take (disk full, read-only, I/O error), as SQL with its values in
 * place, waiting to be run again in order. */
typedef struct pending {
  struct pending *next;
  char *sql;
} pending_t;

#define BACKLOG_MAX 100000

struct fl_store {
  sqlite3 *db;
  sqlite3_stmt *stmt[ST_COUNT];
  pending_t *backlog, **backlog_tail;
  size_t n_backlog;
  uint64_t failed_writes, dropped;     /* since open */
  char last_error[256];
};

static int64_t unix_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- opening ---- */

/* Runs a statement that returns at most one row and copies its first column as text. */
static int query_text(sqlite3 *db, const char *sql, char *out, size_t cap) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const unsigned char *text = sqlite3_column_text(st, 0);
    snprintf(out, cap, "%s", text ? (const char *)text : "");
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    snprintf(out, cap, "%s", "");
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return rc;
}

/* Applies the migrations the file lacks, in one transaction so that two processes opening a new
 * file at once do not both create the tables. */
static int migrate(sqlite3 *db, char *why, size_t cap) {
  char text[32];
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
      query_text(db, "PRAGMA user_version", text, sizeof text) != SQLITE_OK) {
    snprintf(why, cap, "%s", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  int version = atoi(text);
  if (version > SCHEMA_VERSION) {
    snprintf(why, cap, "schema version %d is newer than this fledge knows (%d)", version, SCHEMA_VERSION);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  int rc = SQLITE_OK;
  for (int v = version; v < SCHEMA_VERSION && rc == SQLITE_OK; v++) rc = sqlite3_exec(db, MIGRATIONS[v], NULL, NULL, NULL);
  char set_version[48];
  snprintf(set_version, sizeof set_version, "PRAGMA user_version=%d", SCHEMA_VERSION);
  if (rc == SQLITE_OK && version < SCHEMA_VERSION) rc = sqlite3_exec(db, set_version, NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    snprintf(why, cap, "%s", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  return 0;
}

/* Connection settings, then the schema. busy_timeout comes first so that everything after it
 * waits for another process's write instead of failing at once. */
static int configure(sqlite3 *db, char *why, size_t cap) {
  if (sqlite3_db_readonly(db, "main") == 1) {
    snprintf(why, cap, "the database file is read-only");
    return -1;
  }
  char mode[16];
  if (sqlite3_exec(db, "PRAGMA busy_timeout=2000", NULL, NULL, NULL) != SQLITE_OK ||
      query_text(db, "PRAGMA journal_mode=WAL", mode, sizeof mode) != SQLITE_OK ||
      sqlite3_exec(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(why, cap, "%s", sqlite3_errmsg(db));
    return -1;
  }
  /* "memory" is what an in-memory database (":memory:") reports; nothing there to keep. */
  if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0) {
    snprintf(why, cap, "cannot use WAL journal mode (journal_mode is %s)", mode);
    return -1;
  }
  return migrate(db, why, cap);
}

static int prepare_all(fl_store_t *s, char *why, size_t cap) {
  for (int i = 0; i < ST_COUNT; i++)
    if (sqlite3_prepare_v3(s->db, STATEMENTS[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL) != SQLITE_OK) {
      snprintf(why, cap, "%s", sqlite3_errmsg(s->db));
      return -1;
    }
  return 0;
}

/* A file of the store open to other users (an older build's 0644, or a hand's chmod) is narrowed
 * to its owner's bits, and that is said: nobody else should read the key, nor keep writing. */
static void narrow(const char *name) {
  struct stat st;
  if (stat(name, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0) return;
  mode_t mode = st.st_mode & 0700;
  if (chmod(name, mode) == 0)
    fl_log("state store: %s was open to other users (mode %03o); narrowed to %03o", name,
           (unsigned)(st.st_mode & 0777), (unsigned)mode);
  else
    fl_log("state store: WARNING: %s is open to other users (mode %03o) and cannot be narrowed: %s", name,
           (unsigned)(st.st_mode & 0777), strerror(errno));
}

/* The store holds the feedback key and whole webhook URLs, so only its owner may read it. A new
 * database file is created here, 0600 whatever the umask, before SQLite opens it; SQLite creates
 * its -wal and -shm with the database's mode. Files left by an earlier run are narrowed. An
 * in-memory or URI name is left to SQLite, and so is a file that cannot be created (the error is
 * SQLite's to report, at its open). */
static void owner_only(const char *path) {
  static const char *const SUFFIXES[] = {"", "-wal", "-shm", "-journal"};
  if (!*path || strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0) return;
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    fchmod(fd, 0600);            /* a umask like 0277 would leave it unwritable */
    close(fd);
  }
  for (size_t i = 0; i < FL_ARRAY_LEN(SUFFIXES); i++) {
    char name[4096];
    if ((size_t)snprintf(name, sizeof name, "%s%s", path, SUFFIXES[i]) < sizeof name) narrow(name);
  }
}

int fl_store_open(const char *path, fl_store_t **out, char *err, size_t err_cap) {
  char why[256] = "";
  *out = NULL;
  fl_store_t *s = calloc(1, sizeof *s);
  if (!s) {
    if (err && err_cap) snprintf(err, err_cap, "%s: out of memory", path);
    return FL_ENOMEM;
  }
  s->backlog_tail = &s->backlog;
  owner_only(path);
  int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    int sys = s->db ? sqlite3_system_errno(s->db) : 0;
    snprintf(why, sizeof why, "%s%s%s%s", s->db ? sqlite3_errmsg(s->db) : "out of memory", sys ? " (" : "",
             sys ? strerror(sys) : "", sys ? ")" : "");
  }
  if (rc == SQLITE_OK && (configure(s->db, why, sizeof why) != 0 || prepare_all(s, why, sizeof why) != 0))
    rc = SQLITE_ERROR;
  if (rc != SQLITE_OK) {
    if (err && err_cap) snprintf(err, err_cap, "%s: %s", path, why);
    fl_store_close(s);
    return rc == SQLITE_NOMEM ? FL_ENOMEM : FL_EIO;
  }
  *out = s;
  return 0;
}

void fl_store_close(fl_store_t *s) {
  if (!s) return;
  fl_store_flush(s);                                  /* a last try; what is left is lost */
  if (s->n_backlog) fprintf(stderr, "fledge: state store: %zu writes could not be saved\n", s->n_backlog);
  while (s->backlog) {
    pending_t *p = s->backlog;
    s->backlog = p->next;
    sqlite3_free(p->sql);
    free(p);
  }
  for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->stmt[i]);
  sqlite3_close(s->db); /* the last connection checkpoints and removes the -wal file */
  free(s);
}

const char *fl_store_error(const fl_store_t *s) { return s ? sqlite3_errmsg(s->db) : "no store"; }

/* ---- statements ---- */

/* Binds a fixed-size field of fl_route_state_t; strnlen so that a field missing its NUL still
 * stays inside its array. */
static void bind_field(sqlite3_stmt *st, int i, const char *field, size_t cap) {
  sqlite3_bind_text(st, i, field, (int)strnlen(field, cap), SQLITE_TRANSIENT);
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *text) {
  if (text) sqlite3_bind_text(st, i, text, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(st, i);
}

static void backlog_push(fl_store_t *s, char *sql) {
  pending_t *p = sql ? malloc(sizeof *p) : NULL;
  if (!p) {
    sqlite3_free(sql);
    s->dropped++;
    return;
  }
  if (s->n_backlog == BACKLOG_MAX) {                  /* bounded: the oldest write gives way */
    pending_t *old = s->backlog;
    s->backlog = old->next;
    if (!s->backlog) s->backlog_tail = &s->backlog;
    sqlite3_free(old->sql);
    free(old);
    s->n_backlog--;
    s->dropped++;
  }
  *p = (pending_t){.sql = sql};
  *s->backlog_tail = p;
  s->backlog_tail = &p->next;
  s->n_backlog++;
}

int fl_store_flush(fl_store_t *s) {
  while (s->backlog) {
    pending_t *p = s->backlog;
    if (sqlite3_exec(s->db, p->sql, NULL, NULL, NULL) != SQLITE_OK) {
      snprintf(s->last_error, sizeof s->last_error, "%s", sqlite3_errmsg(s->db));
      if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);   /* a decision: none of it */
      return FL_EIO;
    }
    s->backlog = p->next;
    sqlite3_free(p->sql);
    free(p);
    s->n_backlog--;
  }
  s->backlog_tail = &s->backlog;
  return 0;
}

void fl_store_health(const fl_store_t *s, fl_store_health_t *out) {
  out->backlog = s->n_backlog;
  out->failed_writes = s->failed_writes;
  out->dropped = s->dropped;
  snprintf(out->last_error, sizeof out->last_error, "%s", s->last_error);
}

/* Steps a write statement to its end and resets it for the next use. A write the file does not
 * take now, or one behind others waiting, joins the backlog (keep) to be retried in order. */
static int run_write(fl_store_t *s, sqlite3_stmt *st, bool keep) {
  int rc = SQLITE_DONE;
  if (!(keep && s->backlog && fl_store_flush(s) != 0)) rc = sqlite3_step(st);
  else rc = SQLITE_FULL;                              /* still failing: queue behind the others */
  if (rc != SQLITE_DONE) {
    s->failed_writes++;
    if (rc != SQLITE_FULL || !s->backlog) snprintf(s->last_error, sizeof s->last_error, "%s", sqlite3_errmsg(s->db));
    if (keep) backlog_push(s, sqlite3_expanded_sql(st));
  }
  sqlite3_reset(st); /* keeps the error message of a failed step */
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : FL_EIO;
}

static void done_reading(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

static void copy_column(sqlite3_stmt *st, int col, char *dst, size_t cap) {
  const unsigned char *text = sqlite3_column_text(st, col);
  snprintf(dst, cap, "%s", text ? (const char *)text : "");
}

/* A TEXT column holding JSON as a new reference; text that does not parse comes back as a JSON
 * string rather than hiding the row. */
static json_t *json_column(sqlite3_stmt *st, int col) {
  const char *text = (const char *)sqlite3_column_text(st, col);
  if (!text) return json_null();
  json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
  return v ? v : json_string(text);
}

/* A borrowed JSON value as compact text (caller frees); NULL stands for an empty object. */
static char *json_text(const json_t *v) {
  return v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}");
}

static json_t *text_or_null(sqlite3_stmt *st, int col) {
  const unsigned char *text = sqlite3_column_text(st, col);
  return text ? json_string((const char *)text) : json_null();
}

/* ---- routes ---- */

int fl_store_put_route(fl_store_t *s, const fl_route_state_t *st) {
  sqlite3_stmt *q = s->stmt[ST_PUT_ROUTE];
  bind_field(q, 1, st->route, sizeof st->route);
  sqlite3_bind_int64(q, 2, st->weight_bp);
  sqlite3_bind_int64(q, 3, st->config_weight_bp);
  bind_field(q, 4, st->stable_version, sizeof st->stable_version);
  bind_field(q, 5, st->canary_version, sizeof st->canary_version);
  bind_field(q, 6, st->previous_stable, sizeof st->previous_stable);
  bind_field(q, 7, st->rollout_state, sizeof st->rollout_state);
  sqlite3_bind_int(q, 8, st->step);
  sqlite3_bind_int(q, 9, st->failures);
  sqlite3_bind_int64(q, 10, st->updated_ms ? st->updated_ms : unix_now_ms());
  bind_field(q, 11, st->spec_json, sizeof st->spec_json);
  bind_field(q, 12, st->pause_reason, sizeof st->pause_reason);
  sqlite3_bind_int(q, 13, st->looks);
  return run_write(s, q, true);
}

static void read_route(sqlite3_stmt *q, fl_route_state_t *out) {
  memset(out, 0, sizeof *out);
  copy_column(q, 0, out->route, sizeof out->route);
  out->weight_bp = (uint32_t)sqlite3_column_int64(q, 1);
  out->config_weight_bp = (uint32_t)sqlite3_column_int64(q, 2);
  copy_column(q, 3, out->stable_version, sizeof out->stable_version);
  copy_column(q, 4, out->canary_version, sizeof out->canary_version);
  copy_column(q, 5, out->previous_stable, sizeof out->previous_stable);
  copy_column(q, 6, out->rollout_state, sizeof out->rollout_state);
  out->step = sqlite3_column_int(q, 7);
  out->failures = sqlite3_column_int(q, 8);
  out->updated_ms = sqlite3_column_int64(q, 9);
  copy_column(q, 10, out->spec_json, sizeof out->spec_json);
  copy_column(q, 11, out->pause_reason, sizeof out->pause_reason);
  out->looks = sqlite3_column_int(q, 12);
}

int fl_store_get_route(fl_store_t *s, const char *route, fl_route_state_t *out) {
  sqlite3_stmt *q = s->stmt[ST_GET_ROUTE];
  sqlite3_bind_text(q, 1, route, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(q);
  if (rc == SQLITE_ROW) read_route(q, out);
  done_reading(q);
  return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FL_ENOENT : FL_EIO;
}

/* ---- events and windows ---- */

int fl_store_add_event(fl_store_t *s, const char *route, const char *actor, const char *kind, json_t *detail,
                       int64_t *id_out) {
  char *detail_text = json_text(detail);
  if (!detail_text) return FL_ENOMEM;
  sqlite3_stmt *q = s->stmt[ST_ADD_EVENT];
  sqlite3_bind_int64(q, 1, unix_now_ms());
  bind_text_or_null(q, 2, route);
  sqlite3_bind_text(q, 3, actor ? actor : "", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 4, kind ? kind : "", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 5, detail_text, -1, free);
  int rc = run_write(s, q, true);
  if (rc == 0 && id_out) *id_out = sqlite3_last_insert_rowid(s->db);
  return rc;
}

/* An event from the columns id, time_ms, route, actor, kind, detail, the first at column c. */
static json_t *event_at(sqlite3_stmt *q, int c) {
  return json_pack("{s:I, s:I, s:o, s:s, s:s, s:o}", "id", (json_int_t)sqlite3_column_int64(q, c), "time_ms",
                   (json_int_t)sqlite3_column_int64(q, c + 1), "route", text_or_null(q, c + 2), "actor",
                   (const char *)sqlite3_column_text(q, c + 3), "kind", (const char *)sqlite3_column_text(q, c + 4),
                   "detail", json_column(q, c + 5));
}

static json_t *event_row(sqlite3_stmt *q) { return event_at(q, 0); }

static json_t *window_row(sqlite3_stmt *q) {
  return json_pack("{s:I, s:I, s:o, s:i, s:s, s:o}", "id", (json_int_t)sqlite3_column_int64(q, 0), "time_ms",
                   (json_int_t)sqlite3_column_int64(q, 1), "route", text_or_null(q, 2), "step",
                   sqlite3_column_int(q, 3), "verdict", (const char *)sqlite3_column_text(q, 4), "analysis",
                   json_column(q, 5));
}

/* Steps a bound query to its end, one object per row made by make_row, into a new array. */
static int collect_rows(sqlite3_stmt *q, json_t *(*make_row)(sqlite3_stmt *), json_t **out) {
  json_t *rows = json_array();
  int rc = rows ? SQLITE_ROW : SQLITE_NOMEM, result = 0;
  while (rc == SQLITE_ROW && (rc = sqlite3_step(q)) == SQLITE_ROW)
    if (json_array_append_new(rows, make_row(q)) != 0) rc = SQLITE_NOMEM;
  if (rc != SQLITE_DONE) result = rc == SQLITE_NOMEM ? FL_ENOMEM : FL_EIO;
  done_reading(q);
  if (result != 0) json_decref(rows);
  *out = result == 0 ? rows : NULL;
  return result;
}

int fl_store_events(fl_store_t *s, const char *route, int64_t after_id, int limit, json_t **out) {
  *out = NULL;
  if (limit < 0) return FL_EINVAL;
  sqlite3_stmt *q = s->stmt[route ? ST_EVENTS_ROUTE : ST_EVENTS_ALL];
  sqlite3_bind_int64(q, 1, after_id);
  sqlite3_bind_int(q, 2, limit);
  if (route) sqlite3_bind_text(q, 3, route, -1, SQLITE_TRANSIENT);
  return collect_rows(q, event_row, out);
}

int fl_store_add_window(fl_store_t *s, const char *route, int32_t step, const char *verdict, json_t *analysis,
                        int64_t *id_out) {
  char *analysis_text = json_text(analysis);
  if (!analysis_text) return FL_ENOMEM;
  sqlite3_stmt *q = s->stmt[ST_ADD_WINDOW];
  sqlite3_bind_int64(q, 1, unix_now_ms());
  sqlite3_bind_text(q, 2, route ? route : "", -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(q, 3, step);
  sqlite3_bind_text(q, 4, verdict ? verdict : "", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 5, analysis_text, -1, free);
  int rc = run_write(s, q, true);
  if (rc == 0 && id_out) *id_out = sqlite3_last_insert_rowid(s->db);
  return rc;
}

int fl_store_windows(fl_store_t *s, const char *route, int limit, json_t **out) {
  *out = NULL;
  if (limit < 0) return FL_EINVAL;
  sqlite3_stmt *q = s->stmt[ST_WINDOWS];
  sqlite3_bind_text(q, 1, route ? route : "", -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(q, 2, limit);
  return collect_rows(q, window_row, out);
}

/* ---- decisions and their outbox ---- */

#define FIELD(st, f) (int)strnlen((st)->f, sizeof (st)->f), (st)->f

static void append_route(sqlite3_str *q, const fl_route_state_t *st) {
  sqlite3_str_appendf(q,
                      "INSERT OR REPLACE INTO routes(" ROUTE_COLUMNS ") "
                      "VALUES(%.*Q,%u,%u,%.*Q,%.*Q,%.*Q,%.*Q,%d,%d,%lld,%.*Q,%.*Q,%d);",
                      FIELD(st, route), st->weight_bp, st->config_weight_bp, FIELD(st, stable_version),
                      FIELD(st, canary_version), FIELD(st, previous_stable), FIELD(st, rollout_state), st->step,
                      st->failures, (long long)(st->updated_ms ? st->updated_ms : unix_now_ms()), FIELD(st, spec_json),
                      FIELD(st, pause_reason), st->looks);
}

static int append_window(sqlite3_str *q, const fl_store_window_t *w, int64_t now) {
  char *analysis = json_text(w->analysis);
  if (!analysis) return FL_ENOMEM;
  sqlite3_str_appendf(q, "INSERT INTO windows(time_ms, route, step, verdict, analysis) VALUES(%lld,%Q,%d,%Q,%Q);",
                      (long long)now, w->route ? w->route : "", w->step, w->verdict ? w->verdict : "", analysis);
  free(analysis);
  return 0;
}

/* The event, then an outbox row per hook naming it: the transaction holds the write lock, so the
 * newest event is this one, when run now as when run later from the backlog. */
static int append_event(sqlite3_str *q, const fl_store_event_t *e, int64_t now) {
  char *detail = json_text(e->detail);
  if (!detail) return FL_ENOMEM;
  sqlite3_str_appendf(q, "INSERT INTO events(time_ms, route, actor, kind, detail) VALUES(%lld,%Q,%Q,%Q,%Q);",
                      (long long)now, e->route, e->actor ? e->actor : "", e->kind ? e->kind : "", detail);
  free(detail);
  for (size_t i = 0; i < e->n_hooks; i++)
    sqlite3_str_appendf(q, "INSERT INTO outbox(event_id, url) SELECT max(id), %Q FROM events;", e->hooks[i]);
  return 0;
}

/* The decision as SQL with its values in place: the same text runs now or waits whole in the
 * backlog. sqlite3_str keeps its first error, so the text is checked once. */
static char *decision_sql(const fl_store_decision_t *d) {
  int64_t now = unix_now_ms();
  sqlite3_str *q = sqlite3_str_new(NULL);
  int rc = 0;
  if (d->state) append_route(q, d->state);
  if (d->window) rc = append_window(q, d->window, now);
  for (size_t i = 0; i < d->n_events && rc == 0; i++) rc = append_event(q, &d->events[i], now);
  if (d->setting_key && d->setting_value)
    sqlite3_str_appendf(q, "INSERT OR REPLACE INTO settings(key, value) VALUES(%Q,%Q);", d->setting_key,
                        d->setting_value);
  char *sql = sqlite3_str_finish(q);
  if (rc != 0 || !sql) {
    sqlite3_free(sql);
    return NULL;
  }
  return sql;
}

/* Runs the decision's text in one transaction; anything failing rolls all of it back. */
static int run_decision(fl_store_t *s, const fl_store_decision_t *d, const char *sql) {
  int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
  if (rc == SQLITE_OK) {
    if (!d->n_events) fl_test_crash_at("before_commit", NULL);
    for (size_t i = 0; i < d->n_events; i++) fl_test_crash_at("before_commit", d->events[i].kind);
    rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
  }
  if (rc == SQLITE_OK) return 0;
  snprintf(s->last_error, sizeof s->last_error, "%s", sqlite3_errmsg(s->db));
  if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return FL_EIO;
}

int fl_store_commit_decision(fl_store_t *s, const fl_store_decision_t *d) {
  char *sql = decision_sql(d);
  if (!sql) {
    s->failed_writes++;
    s->dropped++;
    snprintf(s->last_error, sizeof s->last_error, "out of memory writing a decision");
    return FL_ENOMEM;
  }
  bool behind = s->backlog && fl_store_flush(s) != 0;   /* in order: never ahead of older writes */
  if (!behind && run_decision(s, d, sql) == 0) {
    sqlite3_free(sql);
    return 0;
  }
  s->failed_writes++;
  backlog_push(s, sqlite3_mprintf("BEGIN IMMEDIATE;%sCOMMIT;", sql));
  sqlite3_free(sql);
  return FL_EIO;
}

static json_t *outbox_row(sqlite3_stmt *q) {
  return json_pack("{s:I, s:s, s:o}", "id", (json_int_t)sqlite3_column_int64(q, 0), "url",
                   (const char *)sqlite3_column_text(q, 1), "event", event_at(q, 2));
}

int fl_store_outbox_waiting(fl_store_t *s, int64_t after_id, int limit, json_t **out) {
  *out = NULL;
  if (limit < 0) return FL_EINVAL;
  sqlite3_stmt *q = s->stmt[ST_OUTBOX_WAITING];
  sqlite3_bind_int64(q, 1, after_id);
  sqlite3_bind_int(q, 2, limit);
  return collect_rows(q, outbox_row, out);
}

int fl_store_outbox_done(fl_store_t *s, int64_t id, bool delivered) {
  sqlite3_stmt *q = s->stmt[ST_OUTBOX_DONE];
  sqlite3_bind_int64(q, 1, id);
  sqlite3_bind_int64(q, 2, unix_now_ms());
  sqlite3_bind_int(q, 3, delivered);
  return run_write(s, q, true);
}

/* ---- settings and feedback ---- */

int fl_store_get_setting(fl_store_t *s, const char *key, char **out) {
  sqlite3_stmt *q = s->stmt[ST_GET_SETTING];
  sqlite3_bind_text(q, 1, key, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(q);
  *out = NULL;
  if (rc == SQLITE_ROW) {
    const char *text = (const char *)sqlite3_column_text(q, 0);
    *out = strdup(text ? text : "");
  }
  done_reading(q);
  if (rc == SQLITE_ROW) return *out ? 0 : FL_ENOMEM;
  return rc == SQLITE_DONE ? FL_ENOENT : FL_EIO;
}

int fl_store_put_setting(fl_store_t *s, const char *key, const char *value) {
  sqlite3_stmt *q = s->stmt[ST_PUT_SETTING];
  sqlite3_bind_text(q, 1, key, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 2, value, -1, SQLITE_TRANSIENT);
  return run_write(s, q, true);
}

int fl_store_add_setting(fl_store_t *s, const char *key, const char *value) {
  sqlite3_stmt *q = s->stmt[ST_ADD_SETTING];
  sqlite3_bind_text(q, 1, key, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 2, value, -1, SQLITE_TRANSIENT);
  return run_write(s, q, false);      /* not kept: the caller reads back what won */
}

int fl_store_add_feedback(fl_store_t *s, const fl_feedback_rec_t *f) {
  sqlite3_stmt *q = s->stmt[ST_ADD_FEEDBACK];
  sqlite3_bind_int64(q, 1, unix_now_ms());
  sqlite3_bind_text(q, 2, f->request_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 3, f->route, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 4, f->variant, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q, 5, f->version, -1, SQLITE_TRANSIENT);
  sqlite3_bind_double(q, 6, f->score);
  bind_text_or_null(q, 7, f->label);
  bind_text_or_null(q, 8, f->comment);
  int rc = run_write(s, q, false);    /* not kept: "rated once" needs the answer now */
  if (rc == 0 && sqlite3_changes(s->db) == 0) return FL_ELIMIT;
  return rc;
}
