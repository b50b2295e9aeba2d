/* test_netaddr.c — socket addresses and CIDR blocks as a specification: what "HOST:PORT"
 * forms are accepted, how blocks are normalised, and which peers they contain. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <sys/un.h>

#include "netaddr.h"

/* ---- helpers ---- */

static struct sockaddr_storage sa_of(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
  } else {
    assert_int_equal(inet_pton(AF_INET6, ip, &v6->sin6_addr), 1);
    v6->sin6_family = AF_INET6;
  }
  return ss;
}

static fl_cidr_t cidr(const char *text) {
  fl_cidr_t c;
  int rc = fl_cidr_parse(text, &c);
  if (rc != 0) fail_msg("%s: rc %d", text, rc);
  return c;
}

static bool contains(const char *block, const char *ip) {
  fl_cidr_t c = cidr(block);
  struct sockaddr_storage ss = sa_of(ip);
  return fl_cidr_contains(&c, (struct sockaddr *)&ss);
}

#define ASSERT_IN(block, ip) do { if (!contains(block, ip)) fail_msg("%s should contain %s", block, ip); } while (0)
#define ASSERT_NOT_IN(block, ip) do { if (contains(block, ip)) fail_msg("%s should not contain %s", block, ip); } while (0)

/* The network address of c, printed. */
static const char *net_of(const fl_cidr_t *c) {
  static char buf[64];
  assert_non_null(inet_ntop(c->family, c->bytes, buf, sizeof buf));
  return buf;
}

static void expect_addr_rejected(const char *text) {
  fl_addr_t a;
  int rc = fl_addr_parse(text, &a);
  if (rc != FL_EINVAL) fail_msg("'%s' was accepted (rc %d, text %s)", text, rc, a.text);
}

static void expect_cidr_rejected(const char *text) {
  fl_cidr_t c;
  int rc = fl_cidr_parse(text, &c);
  if (rc != FL_EINVAL) fail_msg("'%s' was accepted (rc %d)", text, rc);
}

/* ---- fl_addr_parse ---- */

static void test_an_ipv4_address_with_port_parses(void **state) {
  fl_addr_t a;
  assert_int_equal(fl_addr_parse("10.1.2.3:9001", &a), 0);
  const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a.ss;
  assert_int_equal(v4->sin_family, AF_INET);
  assert_int_equal(ntohs(v4->sin_port), 9001);
  assert_int_equal(ntohl(v4->sin_addr.s_addr), 0x0A010203);
  assert_int_equal(a.len, sizeof(struct sockaddr_in));
  assert_string_equal(a.text, "10.1.2.3:9001");
}

static void test_a_bracketed_ipv6_address_with_port_parses(void **state) {
  fl_addr_t a;
  assert_int_equal(fl_addr_parse("[::1]:8080", &a), 0);
  const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&a.ss;
  assert_int_equal(v6->sin6_family, AF_INET6);
  assert_int_equal(ntohs(v6->sin6_port), 8080);
  assert_memory_equal(&v6->sin6_addr, &in6addr_loopback, 16);
  assert_int_equal(a.len, sizeof(struct sockaddr_in6));
  assert_string_equal(a.text, "[::1]:8080");

  assert_int_equal(fl_addr_parse("[2001:db8::7]:443", &a), 0);
  assert_string_equal(a.text, "[2001:db8::7]:443");
  assert_int_equal(fl_addr_parse("[::ffff:10.0.0.1]:80", &a), 0);
  assert_int_equal(a.ss.ss_family, AF_INET6);
}

static void test_localhost_means_127_0_0_1_without_a_lookup(void **state) {
  fl_addr_t a;
  assert_int_equal(fl_addr_parse("localhost:8080", &a), 0);
  const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a.ss;
  assert_int_equal(v4->sin_family, AF_INET);
  assert_int_equal(ntohl(v4->sin_addr.s_addr), INADDR_LOOPBACK);
  assert_int_equal(ntohs(v4->sin_port), 8080);
  assert_string_equal(a.text, "127.0.0.1:8080");
}

static void test_ports_must_be_1_to_65535(void **state) {
  fl_addr_t a;
  assert_int_equal(fl_addr_parse("127.0.0.1:1", &a), 0);
  assert_int_equal(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 1);
  assert_int_equal(fl_addr_parse("127.0.0.1:65535", &a), 0);
  assert_int_equal(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 65535);
  assert_int_equal(fl_addr_parse("[::1]:65535", &a), 0);
  expect_addr_rejected("127.0.0.1:0");
  expect_addr_rejected("127.0.0.1:65536");
  expect_addr_rejected("127.0.0.1:4294967297");   /* 2^32 + 1: must not wrap to 1 */
  expect_addr_rejected("127.0.0.1:abc");
  expect_addr_rejected("127.0.0.1:80a");
  expect_addr_rejected("127.0.0.1:-1");
  expect_addr_rejected("127.0.0.1:+80");
  expect_addr_rejected("127.0.0.1: 80");
  expect_addr_rejected("[::1]:0");
  expect_addr_rejected("[::1]:65536");
  expect_addr_rejected("localhost:abc");
}

static void test_an_address_without_a_port_is_rejected(void **state) {
  expect_addr_rejected("127.0.0.1");
  expect_addr_rejected("127.0.0.1:");
  expect_addr_rejected("localhost");
  expect_addr_rejected("[::1]");
  expect_addr_rejected("[::1]:");
  expect_addr_rejected("[::1]80");
}

static void test_ipv6_without_brackets_is_rejected(void **state) {
  expect_addr_rejected("::1:80");
  expect_addr_rejected("2001:db8::1:443");
  expect_addr_rejected("::1");
}

static void test_names_and_malformed_hosts_are_rejected(void **state) {
  expect_addr_rejected("");
  expect_addr_rejected(":80");
  expect_addr_rejected("[]:80");
  expect_addr_rejected("example.com:80");
  expect_addr_rejected("LOCALHOST:80x");
  expect_addr_rejected("256.0.0.1:80");
  expect_addr_rejected("1.2.3:80");
  expect_addr_rejected("[::1:80");
  expect_addr_rejected("[zz::1]:80");
  expect_addr_rejected("[::1]]:80");
  expect_addr_rejected("[0000:0000:0000:0000:0000:0000:0000:0000:0000:0001]:80");   /* longer than any address */
}

/* ---- fl_cidr_parse ---- */

static void test_a_block_keeps_its_family_and_prefix(void **state) {
  fl_cidr_t c = cidr("10.0.0.0/8");
  assert_int_equal(c.family, AF_INET);
  assert_int_equal(c.prefix, 8);
  assert_string_equal(net_of(&c), "10.0.0.0");
  c = cidr("2001:db8::/32");
  assert_int_equal(c.family, AF_INET6);
  assert_int_equal(c.prefix, 32);
  assert_string_equal(net_of(&c), "2001:db8::");
}

static void test_prefixes_are_bounded_by_the_family(void **state) {
  assert_int_equal(cidr("0.0.0.0/0").prefix, 0);
  assert_int_equal(cidr("10.0.0.1/32").prefix, 32);
  assert_int_equal(cidr("::/0").prefix, 0);
  assert_int_equal(cidr("::1/128").prefix, 128);
  expect_cidr_rejected("10.0.0.0/33");
  expect_cidr_rejected("10.0.0.0/128");
  expect_cidr_rejected("::/129");
  expect_cidr_rejected("::/1000");
  expect_cidr_rejected("10.0.0.0/99999999999");
  expect_cidr_rejected("10.0.0.0/");
  expect_cidr_rejected("10.0.0.0/-1");
  expect_cidr_rejected("10.0.0.0/x");
  expect_cidr_rejected("10.0.0.0/8/8");
  expect_cidr_rejected("10.0.0.0/ 8");
  expect_cidr_rejected("/8");
  expect_cidr_rejected("");
  expect_cidr_rejected("10.0.0/8");
  expect_cidr_rejected("example.com/8");
}

static void test_host_bits_are_cleared(void **state) {
  fl_cidr_t c = cidr("10.1.2.3/8");
  assert_string_equal(net_of(&c), "10.0.0.0");
  c = cidr("192.168.1.255/23");
  assert_string_equal(net_of(&c), "192.168.0.0");
  c = cidr("255.255.255.255/1");
  assert_string_equal(net_of(&c), "128.0.0.0");
  c = cidr("10.1.2.3/0");
  assert_string_equal(net_of(&c), "0.0.0.0");
  c = cidr("2001:db8:abcd:1234::ffff/36");
  assert_string_equal(net_of(&c), "2001:db8:a000::");
  c = cidr("fe80::1/10");
  assert_string_equal(net_of(&c), "fe80::");
  for (size_t i = 4; i < 16; i++) assert_int_equal(cidr("1.2.3.4/32").bytes[i], 0);
}

static void test_a_bare_address_is_a_single_host_block(void **state) {
  fl_cidr_t c = cidr("192.168.1.7");
  assert_int_equal(c.family, AF_INET);
  assert_int_equal(c.prefix, 32);
  assert_string_equal(net_of(&c), "192.168.1.7");
  c = cidr("2001:db8::42");
  assert_int_equal(c.family, AF_INET6);
  assert_int_equal(c.prefix, 128);
  assert_string_equal(net_of(&c), "2001:db8::42");
  ASSERT_IN("192.168.1.7", "192.168.1.7");
  ASSERT_NOT_IN("192.168.1.7", "192.168.1.6");
  ASSERT_IN("::1", "::1");
  ASSERT_NOT_IN("::1", "::2");
}

/* ---- fl_cidr_contains ---- */

static void test_ipv4_blocks_contain_exactly_their_range(void **state) {
  ASSERT_IN("10.0.0.0/8", "10.0.0.0");
  ASSERT_IN("10.0.0.0/8", "10.255.255.255");
  ASSERT_NOT_IN("10.0.0.0/8", "11.0.0.0");
  ASSERT_NOT_IN("10.0.0.0/8", "9.255.255.255");
  ASSERT_IN("192.168.0.0/23", "192.168.1.255");
  ASSERT_NOT_IN("192.168.0.0/23", "192.168.2.0");
  ASSERT_IN("172.16.0.0/12", "172.31.255.255");
  ASSERT_NOT_IN("172.16.0.0/12", "172.32.0.0");
  ASSERT_IN("10.1.2.3/8", "10.9.9.9");          /* host bits in the block do not matter */
}

static void test_ipv6_blocks_contain_exactly_their_range(void **state) {
  ASSERT_IN("2001:db8::/32", "2001:db8::1");
  ASSERT_IN("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
  ASSERT_NOT_IN("2001:db8::/32", "2001:db9::");
  ASSERT_IN("fe80::/10", "febf::1");
  ASSERT_NOT_IN("fe80::/10", "fec0::1");
  ASSERT_IN("::1/128", "::1");
  ASSERT_NOT_IN("::1/128", "::");
}

static void test_a_v4_mapped_ipv6_peer_matches_an_ipv4_block(void **state) {
  ASSERT_IN("10.0.0.0/8", "::ffff:10.1.2.3");
  ASSERT_IN("127.0.0.0/8", "::ffff:127.0.0.1");
  ASSERT_NOT_IN("10.0.0.0/8", "::ffff:11.0.0.1");
  ASSERT_NOT_IN("10.0.0.0/8", "::10.1.2.3");         /* v4-compatible is not v4-mapped */
  ASSERT_NOT_IN("10.0.0.0/8", "64:ff9b::a01:203");   /* nor is NAT64 */
  ASSERT_NOT_IN("::1/128", "127.0.0.1");              /* families do not mix otherwise */
  ASSERT_NOT_IN("127.0.0.1/32", "::1");
}

static void test_a_zero_prefix_contains_every_address_of_its_family(void **state) {
  ASSERT_IN("0.0.0.0/0", "1.2.3.4");
  ASSERT_IN("0.0.0.0/0", "255.255.255.255");
  ASSERT_IN("0.0.0.0/0", "::ffff:1.2.3.4");
  ASSERT_NOT_IN("0.0.0.0/0", "2001:db8::1");
  ASSERT_IN("::/0", "::1");
  ASSERT_IN("::/0", "ffff::1");
  ASSERT_NOT_IN("::/0", "1.2.3.4");
}

static void test_a_non_ip_peer_is_in_no_block(void **state) {
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  fl_cidr_t c = cidr("0.0.0.0/0");
  assert_false(fl_cidr_contains(&c, (struct sockaddr *)&un));
  c = cidr("::/0");
  assert_false(fl_cidr_contains(&c, (struct sockaddr *)&un));
}

static void test_cidr_any_is_true_when_one_block_contains_the_peer(void **state) {
  fl_cidr_t blocks[] = {cidr("10.0.0.0/8"), cidr("::1/128"), cidr("192.168.0.0/16")};
  struct sockaddr_storage a = sa_of("192.168.3.4"), b = sa_of("::1"), c = sa_of("172.16.0.1");
  assert_true(fl_cidr_any(blocks, 3, (struct sockaddr *)&a));
  assert_true(fl_cidr_any(blocks, 3, (struct sockaddr *)&b));
  assert_false(fl_cidr_any(blocks, 3, (struct sockaddr *)&c));
  assert_false(fl_cidr_any(blocks, 0, (struct sockaddr *)&a));
  assert_false(fl_cidr_any(blocks, 2, (struct sockaddr *)&a));   /* n bounds the search */
}

/* ---- fl_addr_ntop ---- */

static void test_ntop_writes_the_numeric_address_without_port(void **state) {
  char buf[64];
  fl_addr_t a;
  assert_int_equal(fl_addr_parse("10.1.2.3:9001", &a), 0);
  assert_int_equal(fl_addr_ntop((struct sockaddr *)&a.ss, buf, sizeof buf), 8);
  assert_string_equal(buf, "10.1.2.3");
  assert_int_equal(fl_addr_parse("[2001:0db8:0:0::1]:80", &a), 0);
  assert_int_equal(fl_addr_ntop((struct sockaddr *)&a.ss, buf, sizeof buf), strlen("2001:db8::1"));
  assert_string_equal(buf, "2001:db8::1");
  struct sockaddr_storage m = sa_of("::ffff:10.0.0.1");
  fl_addr_ntop((struct sockaddr *)&m, buf, sizeof buf);
  assert_string_equal(buf, "::ffff:10.0.0.1");
}

static void test_ntop_into_a_too_small_buffer_writes_an_empty_string(void **state) {
  char buf[8];
  memset(buf, 'x', sizeof buf);
  struct sockaddr_storage s = sa_of("255.255.255.255");
  assert_int_equal(fl_addr_ntop((struct sockaddr *)&s, buf, sizeof buf), 0);
  assert_string_equal(buf, "");
}

static void test_ntop_writes_every_ipv4_octet_as_inet_ntop_does(void **state) {
  for (unsigned v = 0; v < 256; v++)
    for (int pos = 0; pos < 4; pos++) {
      struct sockaddr_in sin = {.sin_family = AF_INET};
      uint8_t *a = (uint8_t *)&sin.sin_addr;
      a[0] = 1, a[1] = 20, a[2] = 255, a[3] = 9;
      a[pos] = (uint8_t)v;
      char want[INET_ADDRSTRLEN], got[INET_ADDRSTRLEN];
      assert_non_null(inet_ntop(AF_INET, &sin.sin_addr, want, sizeof want));
      assert_int_equal(fl_addr_ntop((struct sockaddr *)&sin, got, sizeof got), strlen(want));
      assert_string_equal(got, want);
    }
  char exact[8];   /* "1.2.3.4" and its NUL fill 8 bytes exactly */
  struct sockaddr_storage s = sa_of("1.2.3.4");
  assert_int_equal(fl_addr_ntop((struct sockaddr *)&s, exact, sizeof exact), 7);
  assert_string_equal(exact, "1.2.3.4");
}

/* ---- the client behind proxies ---- */

/* Walks v with 10.0.0.0/8 and ::1 trusted; the hop's address as text, "" when none was set. */
static int walk(const char *v, bool rfc7239, char *hop_text) {
  fl_cidr_t trusted[2];
  assert_int_equal(fl_cidr_parse("10.0.0.0/8", &trusted[0]), 0);
  assert_int_equal(fl_cidr_parse("::1", &trusted[1]), 0);
  struct sockaddr_storage hop = {.ss_family = AF_UNSPEC};
  int rc = fl_forwarded_walk(v, strlen(v), rfc7239, trusted, 2, &hop);
  hop_text[0] = '\0';
  if (hop.ss_family != AF_UNSPEC) fl_addr_ntop((struct sockaddr *)&hop, hop_text, 64);
  return rc;
}

static void test_the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy(void **state) {
  (void)state;
  char hop[64];
  assert_int_equal(walk("203.0.113.9", false, hop), 1);
  assert_string_equal(hop, "203.0.113.9");
  assert_int_equal(walk("198.51.100.1, 203.0.113.9, 10.1.2.3", false, hop), 1);
  assert_string_equal(hop, "203.0.113.9");                 /* not the spoofable leftmost one */
  assert_int_equal(walk(" 10.0.0.1 ,10.0.0.2,  ", false, hop), 0);
  assert_string_equal(hop, "10.0.0.1");                    /* all trusted: the leftmost */
  assert_int_equal(walk("", false, hop), 0);
  assert_string_equal(hop, "");
}

static void test_hops_may_carry_ports_and_ipv6_in_brackets_or_bare(void **state) {
  (void)state;
  char hop[64];
  assert_int_equal(walk("203.0.113.9:5555, 10.0.0.1", false, hop), 1);
  assert_string_equal(hop, "203.0.113.9");
  assert_int_equal(walk("2001:db8::7, ::1", false, hop), 1);
  assert_string_equal(hop, "2001:db8::7");
  assert_int_equal(walk("[2001:db8::8]:443", false, hop), 1);
  assert_string_equal(hop, "2001:db8::8");
}

static void test_forwarded_reads_the_for_parameters(void **state) {
  (void)state;
  char hop[64];
  assert_int_equal(walk("for=198.51.100.4;proto=https, For=\"[2001:db8::9]:80\";by=10.0.0.1, for=10.0.0.3", true, hop), 1);
  assert_string_equal(hop, "2001:db8::9");
}

static void test_a_hop_that_is_not_an_address_ends_the_walk(void **state) {
  (void)state;
  char hop[64];
  assert_int_equal(walk("203.0.113.9, unknown, 10.0.0.1", false, hop), -1);
  assert_int_equal(walk("for=_hidden, for=10.0.0.1", true, hop), -1);
  assert_int_equal(walk("by=10.0.0.1", true, hop), -1);     /* an element without for= */
}

/* ---- host names: fl_hostport_split, fl_host_is_name, fl_addr_set ---- */

static void test_host_and_port_are_split_with_the_brackets_dropped(void **state) {
  char host[64];
  uint16_t port = 0;
  assert_int_equal(fl_hostport_split("vllm.default.svc:8000", host, sizeof host, &port), 0);
  assert_string_equal(host, "vllm.default.svc");
  assert_int_equal(port, 8000);
  assert_int_equal(fl_hostport_split("[fd00::5]:443", host, sizeof host, &port), 0);
  assert_string_equal(host, "fd00::5");
  assert_int_equal(port, 443);
  assert_int_equal(fl_hostport_split("model.test", host, sizeof host, &port), FL_EINVAL);       /* no port */
  assert_int_equal(fl_hostport_split("model.test:0", host, sizeof host, &port), FL_EINVAL);
  assert_int_equal(fl_hostport_split("fd00::5:443", host, sizeof host, &port), FL_EINVAL);      /* no brackets */
  assert_int_equal(fl_hostport_split("a-rather-long-name.test:1", host, 8, &port), FL_EINVAL);  /* too long */
}

static void test_what_counts_as_a_host_name(void **state) {
  static const char *const names[] = {"localhost", "vllm-v1.default.svc.cluster.local", "model_b.test", "svc.local.",
                                      "a1", "1password.com", "x.y-z.0a"};
  static const char *const not_names[] = {"", ".", "a..b", "-a.test", "a-.test", "a b", "a/b", "1.2.3", "300.0.0.1",
                                          "10.0.0.1", "a.test..", "[::1]"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (!fl_host_is_name(names[i])) fail_msg("\"%s\" should be a host name", names[i]);
  for (size_t i = 0; i < sizeof not_names / sizeof *not_names; i++)
    if (fl_host_is_name(not_names[i])) fail_msg("\"%s\" should not be a host name", not_names[i]);
  char label64[80];
  memset(label64, 'a', 64);
  strcpy(label64 + 64, ".test");
  assert_false(fl_host_is_name(label64));              /* a label is 63 bytes at most */
  assert_true(fl_host_is_name(label64 + 1));
}

static void test_an_address_found_by_a_lookup_gets_the_port_and_the_usual_text(void **state) {
  fl_addr_t a;
  struct sockaddr_storage v4 = sa_of("10.1.2.3"), v6 = sa_of("fd00::5");
  assert_int_equal(fl_addr_set(&a, (struct sockaddr *)&v4, 8000), 0);
  assert_string_equal(a.text, "10.1.2.3:8000");
  assert_int_equal(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 8000);
  assert_int_equal(a.len, sizeof(struct sockaddr_in));
  assert_int_equal(fl_addr_set(&a, (struct sockaddr *)&v6, 443), 0);
  assert_string_equal(a.text, "[fd00::5]:443");
  assert_int_equal(a.len, sizeof(struct sockaddr_in6));
  fl_addr_t parsed;                                     /* the same text fl_addr_parse writes: one registry entry */
  assert_int_equal(fl_addr_parse("[fd00::5]:443", &parsed), 0);
  assert_string_equal(parsed.text, a.text);
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  assert_int_equal(fl_addr_set(&a, (struct sockaddr *)&un, 1), FL_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_an_ipv4_address_with_port_parses),
      cmocka_unit_test(test_a_bracketed_ipv6_address_with_port_parses),
      cmocka_unit_test(test_localhost_means_127_0_0_1_without_a_lookup),
      cmocka_unit_test(test_ports_must_be_1_to_65535),
      cmocka_unit_test(test_an_address_without_a_port_is_rejected),
      cmocka_unit_test(test_ipv6_without_brackets_is_rejected),
      cmocka_unit_test(test_names_and_malformed_hosts_are_rejected),
      cmocka_unit_test(test_a_block_keeps_its_family_and_prefix),
      cmocka_unit_test(test_prefixes_are_bounded_by_the_family),
      cmocka_unit_test(test_host_bits_are_cleared),
      cmocka_unit_test(test_a_bare_address_is_a_single_host_block),
      cmocka_unit_test(test_ipv4_blocks_contain_exactly_their_range),
      cmocka_unit_test(test_ipv6_blocks_contain_exactly_their_range),
      cmocka_unit_test(test_a_v4_mapped_ipv6_peer_matches_an_ipv4_block),
      cmocka_unit_test(test_a_zero_prefix_contains_every_address_of_its_family),
      cmocka_unit_test(test_a_non_ip_peer_is_in_no_block),
      cmocka_unit_test(test_cidr_any_is_true_when_one_block_contains_the_peer),
      cmocka_unit_test(test_ntop_writes_the_numeric_address_without_port),
      cmocka_unit_test(test_ntop_into_a_too_small_buffer_writes_an_empty_string),
      cmocka_unit_test(test_ntop_writes_every_ipv4_octet_as_inet_ntop_does),
      cmocka_unit_test(test_the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy),
      cmocka_unit_test(test_hops_may_carry_ports_and_ipv6_in_brackets_or_bare),
      cmocka_unit_test(test_forwarded_reads_the_for_parameters),
      cmocka_unit_test(test_a_hop_that_is_not_an_address_ends_the_walk),
      cmocka_unit_test(test_host_and_port_are_split_with_the_brackets_dropped),
      cmocka_unit_test(test_what_counts_as_a_host_name),
      cmocka_unit_test(test_an_address_found_by_a_lookup_gets_the_port_and_the_usual_text),
  };
  return cmocka_run_group_tests_name("netaddr", tests, NULL, NULL);
}
