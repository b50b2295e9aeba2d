/* common.c — clock and logging helpers declared in common.h. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Thread_local uint64_t fl_clock_tick_ns;

uint64_t fl_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t fl_now_ms(void) { return fl_now_ns() / 1000000u; }

void fl_log(const char *fmt, ...) {
  char line[1024];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%SZ fledge: ", &tm);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line);
}

void fl_bug(const char *file, int line, const char *what) {
  fl_log("BUG at %s:%d: %s", file, line, what);
  abort();
}

/* The knob is read once: the tests set it at start, and a decision must not pay a getenv. */
void fl_test_crash_at(const char *point, const char *kind) {
  static const char *want;
  static bool read;
  if (!read) {
    want = getenv("FLEDGE_TEST_CRASH_AT");
    read = true;
  }
  if (!want) return;
  size_t n = strlen(point);
  if (strncmp(want, point, n) != 0 || (want[n] != '\0' && want[n] != ':')) return;
  if (want[n] == ':' && (!kind || strcmp(want + n + 1, kind) != 0)) return;
  fl_log("test: FLEDGE_TEST_CRASH_AT=%s reached: exiting at once", want);
  _exit(70);
}
