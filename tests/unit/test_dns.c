/* test_dns.c — specification of blocking name lookups: a hosts file named by FLEDGE_HOSTS_FILE
 * stands in for the system's resolver, answers come sorted and each once with the port asked
 * for, and a name that has no address says so. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "dns.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char hosts_path[] = "/tmp/fledge-test-hosts-XXXXXX";

static void write_hosts(const char *text) {
  FILE *f = fopen(hosts_path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int with_hosts_file(void **state) {
  int fd = mkstemp(hosts_path);
  if (fd < 0) return -1;
  close(fd);
  setenv("FLEDGE_HOSTS_FILE", hosts_path, 1);
  return 0;
}

static int without_hosts_file(void **state) {
  unsetenv("FLEDGE_HOSTS_FILE");
  unlink(hosts_path);
  return 0;
}

static void test_every_line_naming_the_host_counts_sorted_and_once(void **state) {
  write_hosts("# test names\n"
              "10.0.0.9   model.test other.test   # the second of three\n"
              "fd00::1\tMODEL.test\n"
              "10.0.0.2 model.test\n"
              "10.0.0.9 model.test\n"
              "10.0.0.7 model.testing unrelated.test\n"
              "not-an-address model.test\n");
  fl_addr_t out[8];
  size_t n = 99;
  char err[200] = "";
  assert_int_equal(fl_dns_lookup("model.test", 8000, out, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 3);
  assert_string_equal(out[0].text, "10.0.0.2:8000");        /* IPv4 first, then by address */
  assert_string_equal(out[1].text, "10.0.0.9:8000");
  assert_string_equal(out[2].text, "[fd00::1]:8000");
  assert_int_equal(fl_dns_lookup("other.test", 1, out, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 1);
  assert_string_equal(out[0].text, "10.0.0.9:1");
}

static void test_at_most_cap_addresses_are_kept(void **state) {
  write_hosts("10.0.0.3 many.test\n10.0.0.1 many.test\n10.0.0.2 many.test\n");
  fl_addr_t out[2];
  size_t n = 0;
  char err[200];
  assert_int_equal(fl_dns_lookup("many.test", 80, out, 2, &n, err, sizeof err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(out[0].text, "10.0.0.1:80");
  assert_string_equal(out[1].text, "10.0.0.2:80");
}

static void test_a_name_not_in_the_file_has_no_address_and_the_message_says_where(void **state) {
  write_hosts("10.0.0.1 model.test\n");
  fl_addr_t out[4];
  size_t n = 7;
  char err[300] = "";
  assert_int_equal(fl_dns_lookup("gone.test", 80, out, 4, &n, err, sizeof err), FL_ENOENT);
  assert_int_equal(n, 0);
  assert_non_null(strstr(err, "gone.test is not in "));
  assert_non_null(strstr(err, hosts_path));
}

static void test_an_unreadable_hosts_file_is_a_failed_lookup_not_a_missing_name(void **state) {
  setenv("FLEDGE_HOSTS_FILE", "/nonexistent/hosts", 1);
  fl_addr_t out[4];
  size_t n;
  char err[300] = "";
  assert_int_equal(fl_dns_lookup("model.test", 80, out, 4, &n, err, sizeof err), FL_EIO);
  assert_non_null(strstr(err, "cannot read /nonexistent/hosts"));
  /* localhost needs no lookup at all: the same 127.0.0.1 as fl_addr_parse */
  assert_int_equal(fl_dns_lookup("LocalHost", 9000, out, 4, &n, err, sizeof err), 0);
  assert_int_equal(n, 1);
  assert_string_equal(out[0].text, "127.0.0.1:9000");
  setenv("FLEDGE_HOSTS_FILE", hosts_path, 1);
}

static void test_without_the_knob_the_system_resolver_answers(void **state) {
  unsetenv("FLEDGE_HOSTS_FILE");
  assert_null(fl_dns_hosts_file());
  fl_addr_t out[4];
  size_t n = 0;
  char err[300] = "";
  assert_int_equal(fl_dns_lookup("127.0.0.1", 81, out, 4, &n, err, sizeof err), 0);   /* numeric: no DNS */
  assert_int_equal(n, 1);
  assert_string_equal(out[0].text, "127.0.0.1:81");
  assert_int_not_equal(fl_dns_lookup("no-such-host.invalid", 81, out, 4, &n, err, sizeof err), 0);  /* RFC 6761 */
  assert_int_equal(n, 0);
  assert_true(strlen(err) > 0);
  setenv("FLEDGE_HOSTS_FILE", hosts_path, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_line_naming_the_host_counts_sorted_and_once),
      cmocka_unit_test(test_at_most_cap_addresses_are_kept),
      cmocka_unit_test(test_a_name_not_in_the_file_has_no_address_and_the_message_says_where),
      cmocka_unit_test(test_an_unreadable_hosts_file_is_a_failed_lookup_not_a_missing_name),
      cmocka_unit_test(test_without_the_knob_the_system_resolver_answers),
  };
  return cmocka_run_group_tests_name("dns", tests, with_hosts_file, without_hosts_file);
}
