/* common.h — error codes, small helpers and limits shared by every fledge module.
 * Nothing here allocates or blocks; every module may include it. */
#ifndef FL_COMMON_H
#define FL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

#define FL_VERSION "0.1.0"

/* Errors are negative; 0 is success. Values below -1000 are fledge's own,
 * the others are negated errno values passed through from libc/libuv. */
enum {
  FL_EINVAL   = -1001,  /* a value that does not parse or is out of range */
  FL_ENOMEM   = -1002,
  FL_ENOENT   = -1003,  /* no such route, backend or key */
  FL_ELIMIT   = -1004,  /* a configured limit was exceeded */
  FL_EPARSE   = -1005,  /* malformed protocol input */
  FL_EIO      = -1006,
};

#define FL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define FL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Invariant checks (HAProxy's BUG_ON): built in with -DFL_CHECKS (make asan), where a broken
 * invariant stops the process with the file, line and condition; compiled out otherwise, so a
 * condition must have no side effects. */
#ifdef FL_CHECKS
#define FL_BUG_ON(cond) ((cond) ? fl_bug(__FILE__, __LINE__, #cond) : (void)0)
#else
#define FL_BUG_ON(cond) ((void)sizeof(cond))
#endif
_Noreturn void fl_bug(const char *file, int line, const char *what);

/* On what returns an error that must not be ignored. */
#define FL_MUST_CHECK __attribute__((warn_unused_result))

/* Case-insensitive comparison of a counted string with a C string. */
static inline bool fl_streq_ci(const char *s, size_t n, const char *lit) {
  size_t i = 0;
  for (; i < n && lit[i]; i++) {
    char a = s[i], b = lit[i];
    if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
    if (b >= 'A' && b <= 'Z') b = (char)(b + 32);
    if (a != b) return false;
  }
  return i == n && lit[i] == '\0';
}

/* Monotonic clock in milliseconds and nanoseconds (CLOCK_MONOTONIC). */
uint64_t fl_now_ms(void);
uint64_t fl_now_ns(void);

/* A thread's cached monotonic clock: fl_clock_tick reads the clock when an I/O callback of the
 * data path begins (sock.c, timers), and the timestamps taken within that callback share the
 * reading (fl_clock_ns): one clock read per callback rather than one per timestamp. */
extern _Thread_local uint64_t fl_clock_tick_ns;
static inline uint64_t fl_clock_tick(void) { return fl_clock_tick_ns = fl_now_ns(); }
static inline uint64_t fl_clock_ns(void) { return fl_clock_tick_ns; }
static inline uint64_t fl_clock_ms(void) { return fl_clock_tick_ns / 1000000; }

/* Print a line to stderr prefixed with the time and "fledge: ". Thread-safe (one
 * fprintf per call); never call it per request on the hot path. */
void fl_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Test only (docs/hardening.md): with FLEDGE_TEST_CRASH_AT=POINT or POINT:KIND in the
 * environment, read once, the process _exit(70)s the first time it reaches POINT while making a
 * decision that records an event of KIND (any kind when none is named). Points: before_commit
 * (store_sqlite.c), after_commit and after_apply (rollout.c). Without it, a comparison. */
void fl_test_crash_at(const char *point, const char *kind);

#endif
