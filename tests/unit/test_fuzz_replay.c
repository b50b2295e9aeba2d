/* test_fuzz_replay.c — every input kept for the fuzz targets (tests/fuzz/corpus/NAME: seeds;
 * tests/fuzz/regression/NAME: inputs that once crashed) runs through its target without a crash,
 * a sanitizer report (make asan) or an abort. The targets are compiled in with FL_FUZZ_REPLAY. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TARGETS(X) X(conf) X(llm) X(quality) X(admin_json) X(request_id) X(http) X(prom) X(jsonscan)
#define DECLARE(name) int fl_fuzz_##name(const uint8_t *data, size_t size);
TARGETS(DECLARE)

typedef int (*target_fn)(const uint8_t *, size_t);

/* Runs every file of dir through fn; returns how many there were. */
static unsigned replay_dir(const char *dir, target_fn fn) {
  DIR *d = opendir(dir);
  unsigned n = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint8_t *copy = malloc(len ? len : 1);       /* exactly len bytes, so ASan sees any overread */
    assert_non_null(copy);
    memcpy(copy, buf, len);
    assert_int_equal(fn(copy, len), 0);
    free(copy);
    n++;
  }
  if (d) closedir(d);
  return n;
}

static void replay(const char *name, target_fn fn) {
  char dir[256];
  snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", name);
  unsigned seeds = replay_dir(dir, fn);
  snprintf(dir, sizeof dir, "tests/fuzz/regression/%s", name);
  replay_dir(dir, fn);
  if (seeds == 0) fail_msg("no seed inputs in tests/fuzz/corpus/%s", name);
}

#define TEST(name) static void every_kept_##name##_input_runs_clean(void **state) { replay(#name, fl_fuzz_##name); }
TARGETS(TEST)

#define ENTRY(name) cmocka_unit_test(every_kept_##name##_input_runs_clean),
int main(void) {
  const struct CMUnitTest tests[] = {TARGETS(ENTRY)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
