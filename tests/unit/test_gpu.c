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
  assert_true(g[0].has_util && g[0].util_pct == 37 && g[0].mem_util_pct == 12);
  assert_false(g[1].has_util);                    /* MIG: no utilisation, left out rather than 0 */
  /* used as nvidia-smi shows it (_v2): without the 512 MiB the driver reserves */
  assert_true(g[0].has_memory && g[0].mem_total == 80ull << 30 && g[0].mem_used == 1ull << 30);
  assert_true(g[1].mem_used == 2ull << 30);
  assert_true(g[0].has_temperature && g[0].temperature_c == 55);
  assert_false(g[1].has_temperature);             /* not supported there: left out, not 0 */
  assert_true(g[0].has_power && g[0].power_w == 123.456);
  assert_int_equal(np, 2);
  assert_true(p[0].gpu == 0 && p[0].pid == 4242 && p[0].used_bytes == 536870912ull);
  assert_true(p[1].pid == 77 && p[1].used_bytes == 1024);
  fl_gpu_close();
  assert_false(fl_gpu_available());
}

static void an_older_driver_s_memory_call_is_used_when_v2_is_missing(void **state) {
  char err[256];
  setenv("FAKE_NVML_OLD_DRIVER", "1", 1);
  assert_int_equal(fl_gpu_open(fake_path, err, sizeof err), 0);
  fl_gpu_t g[FL_MAX_GPUS];
  fl_gpu_proc_t p[FL_MAX_GPU_PROCS];
  unsigned np;
  assert_int_equal(fl_gpu_sample(g, p, &np), 2);
  assert_true(g[0].has_memory && g[0].mem_used == (1ull << 30) + (512ull << 20));
  fl_gpu_close();
  unsetenv("FAKE_NVML_OLD_DRIVER");
}

static void list_pids(const char *var, int n, int first_pid) {
  static char spec[300 * 24];
  size_t off = 0;
  spec[0] = '\0';
  for (int i = 0; i < n; i++) off += (size_t)snprintf(spec + off, sizeof spec - off, "%s%d:%d", i ? "," : "", first_pid + i, i);
  setenv(var, spec, 1);
}

/* 200 processes on GPU 0 and 100 on GPU 1: the table of 256 fills up with GPU 1's first 56. It
 * once offered NVML only the room left (56), and NVML fills nothing when its list does not fit. */
static void a_second_gpu_s_processes_are_listed_when_the_first_has_many(void **state) {
  list_pids("FAKE_NVML_PIDS", 200, 1000);
  list_pids("FAKE_NVML_PIDS1", 100, 5000);
  char err[256];
  assert_int_equal(fl_gpu_open(fake_path, err, sizeof err), 0);
  fl_gpu_t g[FL_MAX_GPUS];
  fl_gpu_proc_t p[FL_MAX_GPU_PROCS];
  unsigned np;
  fl_gpu_sample(g, p, &np);
  assert_int_equal(np, FL_MAX_GPU_PROCS);
  assert_true(p[199].gpu == 0 && p[199].pid == 1199 && p[199].used_bytes == 199);
  assert_true(p[200].gpu == 1 && p[200].pid == 5000 && p[255].pid == 5055);
  fl_gpu_close();
  unsetenv("FAKE_NVML_PIDS1");
}

int main(int argc, char **argv) {
  const char *dir = getenv("FLEDGE_BUILD") ? getenv("FLEDGE_BUILD") : "build";
  snprintf(fake_path, sizeof fake_path, "%s/%s/tests/libfake-nvml.so", getenv("PWD") ? getenv("PWD") : ".", dir);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(without_the_library_there_is_no_gpu_monitoring),
      cmocka_unit_test(every_gpu_is_read_in_bytes_watts_and_percent),
      cmocka_unit_test(an_older_driver_s_memory_call_is_used_when_v2_is_missing),
      cmocka_unit_test(a_second_gpu_s_processes_are_listed_when_the_first_has_many),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
