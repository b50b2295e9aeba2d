/* test_resources.c — the /proc parsers on real-shaped text: meminfo in bytes, CPU busy and total
 * time per core, a process's stat line whatever its command name holds, and its I/O bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "resources.h"

static void meminfo_is_read_in_bytes(void **state) {
  const char *text = "MemTotal:       24570008 kB\nMemFree:         1234567 kB\nMemAvailable:   20000000 kB\n"
                     "Buffers:          100000 kB\nCached:          3000000 kB\nSwapCached:            0 kB\n"
                     "SwapTotal:       2097148 kB\nSwapFree:        2097000 kB\n";
  fl_meminfo_t m;
  assert_int_equal(fl_parse_meminfo(text, &m), 0);
  assert_true(m.total == 24570008ull * 1024 && m.free == 1234567ull * 1024 && m.available == 20000000ull * 1024);
  assert_true(m.buffers == 100000ull * 1024 && m.cached == 3000000ull * 1024);   /* not SwapCached */
  assert_true(m.swap_total == 2097148ull * 1024 && m.swap_free == 2097000ull * 1024);
  assert_int_equal(fl_parse_meminfo("nothing here\n", &m), FL_EPARSE);
}

static void cpu_lines_give_busy_and_total_time_per_core(void **state) {
  const char *text = "cpu  100 5 50 800 40 1 4 0 7 0\ncpu0 60 5 30 400 20 1 4 0 7 0\ncpu1 40 0 20 400 20 0 0 0 0 0\n"
                     "intr 12345\nctxt 999\nbtime 1700000000\n";
  fl_cpustat_t s;
  assert_int_equal(fl_parse_stat(text, &s), 0);
  assert_int_equal(s.n, 2);
  assert_true(s.total[0] == 1000 && s.busy[0] == 160);        /* idle and iowait are not busy; guest is in user */
  assert_true(s.total[1] == 520 && s.busy[1] == 100);
  assert_true(s.total[2] == 480 && s.busy[2] == 60);
}

static void a_process_stat_line_is_read_past_its_command_name(void **state) {
  const char *text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 25 0 0 20 0 7 0 123456 "
                     "10000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  fl_procstat_t p;
  assert_int_equal(fl_parse_procstat(text, &p), 0);
  assert_int_equal(p.state, 'S');
  assert_int_equal(p.utime, 150);
  assert_int_equal(p.stime, 25);
  assert_int_equal(p.threads, 7);
  assert_int_equal(p.starttime, 123456);
  assert_int_equal(fl_parse_procstat("4242 (cut", &p), FL_EPARSE);
  assert_int_equal(fl_parse_procstat("4242 (short) S 1 2 3\n", &p), FL_EPARSE);
}

static void process_io_counts_storage_bytes(void **state) {
  uint64_t r, w;
  const char *text = "rchar: 100\nwchar: 200\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\n"
                     "cancelled_write_bytes: 0\n";
  assert_int_equal(fl_parse_procio(text, &r, &w), 0);
  assert_true(r == 4096 && w == 8192);
  assert_int_equal(fl_parse_procio("rchar: 1\n", &r, &w), FL_EPARSE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(meminfo_is_read_in_bytes),
      cmocka_unit_test(cpu_lines_give_busy_and_total_time_per_core),
      cmocka_unit_test(a_process_stat_line_is_read_past_its_command_name),
      cmocka_unit_test(process_io_counts_storage_bytes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
