/* test_fetch.c — specification of requests by URL (libcurl): which URLs are accepted and what
 * of them may be logged, and one request against a one-shot server on loopback, by address and
 * by a name from FLEDGE_HOSTS_FILE. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fetch.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void expect_url(const char *url, const char *hostport) {
  char hp[300] = "", why[160] = "";
  if (fl_fetch_check_url(url, hp, sizeof hp, why, sizeof why) != 0) fail_msg("%s refused: %s", url, why);
  assert_string_equal(hp, hostport);
}

static void expect_refused(const char *url, const char *reason) {
  char why[160] = "";
  assert_int_equal(fl_fetch_check_url(url, NULL, 0, why, sizeof why), FL_EINVAL);
  if (!strstr(why, reason)) fail_msg("%s: wanted \"%s\" in \"%s\"", url, reason, why);
}

static void test_http_and_https_urls_by_name_or_address_are_accepted(void **state) {
  expect_url("http://127.0.0.1:9999/hook", "127.0.0.1:9999");
  expect_url("http://localhost:8080/metrics", "localhost:8080");
  expect_url("https://hooks.example.com/fledge?token=x", "hooks.example.com:443");
  expect_url("http://vllm.default.svc.cluster.local/metrics", "vllm.default.svc.cluster.local:80");
  expect_url("http://[::1]:9001/metrics", "[::1]:9001");
  expect_refused("ftp://files.example.com/x", "the scheme must be http or https, not ftp");
  expect_refused("file:///etc/passwd", "the scheme must be http or https");
  expect_refused("hooks.example.com/x", "");
  expect_refused("http://300.1.1.1/x", "bad host");
  expect_refused("http://bad_host-.example/x", "bad host");
  expect_refused("not a url at all", "");
}

static void test_credentials_and_queries_are_not_logged(void **state) {
  char out[300];
  fl_fetch_url_for_log("https://user:secret@hooks.example.com:8443/fledge/hook?token=abc#frag", out, sizeof out);
  assert_string_equal(out, "https://hooks.example.com:8443/fledge/hook");
  fl_fetch_url_for_log("::::", out, sizeof out);
  assert_string_equal(out, "(a malformed URL)");
}

/* ---- one request against a one-shot server ---- */

typedef struct {
  int fd;
  char request[4096];
  const char *answer;
} server_t;

static void *serve_one(void *arg) {
  server_t *s = arg;
  int c = accept(s->fd, NULL, NULL);
  size_t len = 0;
  while (c >= 0 && len < sizeof s->request - 1) {
    ssize_t n = recv(c, s->request + len, sizeof s->request - 1 - len, 0);
    if (n <= 0) break;
    len += (size_t)n;
    s->request[len] = '\0';
    char *end = strstr(s->request, "\r\n\r\n");
    const char *cl = strstr(s->request, "Content-Length: ");
    if (end && (!cl || len >= (size_t)(end + 4 - s->request) + (size_t)atoi(cl + 16))) break;
  }
  if (c >= 0) {
    send(c, s->answer, strlen(s->answer), MSG_NOSIGNAL);
    close(c);
  }
  return NULL;
}

static int listen_loopback(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 4), 0);
  getsockname(fd, (struct sockaddr *)&a, &alen);
  *port = ntohs(a.sin_port);
  return fd;
}

static void test_a_post_reaches_the_server_and_its_answer_comes_back(void **state) {
  server_t s = {.answer = "HTTP/1.1 201 Created\r\nContent-Length: 5\r\nConnection: close\r\n\r\nthere"};
  int port;
  s.fd = listen_loopback(&port);
  pthread_t t;
  pthread_create(&t, NULL, serve_one, &s);
  char url[100], err[256] = "", *body = NULL;
  int status = 0;
  snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", port);
  fl_fetcher_t *f = fl_fetcher_new();
  assert_non_null(f);
  assert_int_equal(fl_fetch(f, url, "POST", "{\"event\":\"step\"}", 2000, &status, &body, err, sizeof err), 0);
  pthread_join(t, NULL);
  assert_int_equal(status, 201);
  assert_string_equal(body, "there");
  assert_non_null(strstr(s.request, "POST /hook HTTP/1.1\r\n"));
  assert_non_null(strstr(s.request, "Content-Type: application/json\r\n"));
  assert_non_null(strstr(s.request, "User-Agent: fledge/" FL_VERSION " libcurl/"));
  assert_non_null(strstr(s.request, "\r\n\r\n{\"event\":\"step\"}"));
  free(body);
  close(s.fd);
  fl_fetcher_free(f);
}

static void test_a_name_from_the_hosts_file_is_reached_at_its_address(void **state) {
  char hosts[] = "/tmp/fledge-test-fetch-XXXXXX";
  int hfd = mkstemp(hosts);
  assert_true(hfd >= 0);
  assert_int_equal(write(hfd, "127.0.0.1 hooks.test\n", 21), 21);
  close(hfd);
  setenv("FLEDGE_HOSTS_FILE", hosts, 1);
  server_t s = {.answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"};
  int port;
  s.fd = listen_loopback(&port);
  pthread_t t;
  pthread_create(&t, NULL, serve_one, &s);
  char url[100], err[256] = "";
  int status = 0;
  snprintf(url, sizeof url, "http://hooks.test:%d/metrics", port);
  fl_fetcher_t *f = fl_fetcher_new();
  assert_int_equal(fl_fetch(f, url, "GET", NULL, 2000, &status, NULL, err, sizeof err), 0);
  pthread_join(t, NULL);
  assert_int_equal(status, 200);
  assert_non_null(strstr(s.request, "GET /metrics HTTP/1.1\r\n"));
  assert_non_null(strstr(s.request, "Host: hooks.test:"));
  snprintf(url, sizeof url, "http://gone.test:%d/metrics", port);          /* not in the file */
  assert_int_equal(fl_fetch(f, url, "GET", NULL, 2000, &status, NULL, err, sizeof err), FL_EIO);
  assert_non_null(strstr(err, "cannot resolve gone.test"));
  close(s.fd);
  fl_fetcher_free(f);
  unsetenv("FLEDGE_HOSTS_FILE");
  unlink(hosts);
}

static void test_a_refused_connection_is_an_error_that_says_so(void **state) {
  int port;
  int fd = listen_loopback(&port);
  close(fd);                                            /* nothing listens there now */
  char url[100], err[256] = "", *body = (char *)0x1;
  int status = -1;
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
  fl_fetcher_t *f = fl_fetcher_new();
  assert_int_equal(fl_fetch(f, url, "GET", NULL, 2000, &status, &body, err, sizeof err), FL_EIO);
  assert_null(body);
  assert_int_equal(status, -1);
  assert_true(strlen(err) > 0);
  fl_fetcher_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_http_and_https_urls_by_name_or_address_are_accepted),
      cmocka_unit_test(test_credentials_and_queries_are_not_logged),
      cmocka_unit_test(test_a_post_reaches_the_server_and_its_answer_comes_back),
      cmocka_unit_test(test_a_name_from_the_hosts_file_is_reached_at_its_address),
      cmocka_unit_test(test_a_refused_connection_is_an_error_that_says_so),
  };
  return cmocka_run_group_tests_name("fetch", tests, NULL, NULL);
}
