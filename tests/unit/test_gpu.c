/* test_gpu.c — the NVML path against a stand-in library with NVML's signatures
 * (tests/unit/fake_nvml.c, built as build/tests/libfake-nvml.so): every GPU's numbers read in the
 * right units, processes per GPU, a missing value left out, and no library at all is no error. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "gpu.h"

static char fake_path[512];

static void without_the_library_there_is_no_gpu_monitoring(void **state) {
  char err[256] = "";
  assert_int_equal(fl_gpu_open("/nonexistent/libnvidia-ml.so.1", err, sizeof err), FL_ENOENT);
  assert_non_null(strstr(err, "nonexistent"));
  assert_false(fl_gpu_available());
  fl_gpu_t g[FL_MAX_GPUS];
  fl_gpu_proc_t p[FL_MAX_GPU_PROCS];
  unsigned np = 9;
  assert_int_equal(fl_gpu_sample(g, p, &np), 0);
  assert_int_equal(np, 0);
}

static void every_gpu_is_read_in_bytes_watts_and_percent(void **state) {
  char err[256];
  setenv("FAKE_NVML_PIDS", "4242:536870912,77:1024", 1);
  assert_int_equal(fl_gpu_open(fake_path, err, sizeof err), 0);
  assert_true(fl_gpu_available());
  fl_gpu_t g[FL_MAX_GPUS];
  fl_gpu_proc_t p[FL_MAX_GPU_PROCS];
  unsigned np;
  assert_int_equal(fl_gpu_sample(g, p, &np), 2);
  assert_string_equal(g[0].name, "Fake GPU 0");
  assert_string_equal(g[1].uuid, "GPU-fake-1");
  assert_int_equal(g[0].util_pct, 37);
  assert_int_equal(g[1].util_pct, 38);
  assert_int_equal(g[0].mem_util_pct, 12);
  assert_true(g[0].mem_total == 80ull << 30 && g[0].mem_used == 1ull << 30 && g[1].mem_used == 2ull << 30);
  assert_true(g[0].has_temperature && g[0].temperature_c == 55);
  assert_false(g[1].has_temperature);             /* not supported there: left out, not 0 */
  assert_true(g[0].has_power && g[0].power_w == 123.456);
  assert_int_equal(np, 2);
  assert_true(p[0].gpu == 0 && p[0].pid == 4242 && p[0].used_bytes == 536870912ull);
  assert_true(p[1].pid == 77 && p[1].used_bytes == 1024);
  fl_gpu_close();
  assert_false(fl_gpu_available());
}

int main(int argc, char **argv) {
  const char *dir = getenv("FLEDGE_BUILD") ? getenv("FLEDGE_BUILD") : "build";
  snprintf(fake_path, sizeof fake_path, "%s/%s/tests/libfake-nvml.so", getenv("PWD") ? getenv("PWD") : ".", dir);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(without_the_library_there_is_no_gpu_monitoring),
      cmocka_unit_test(every_gpu_is_read_in_bytes_watts_and_percent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
