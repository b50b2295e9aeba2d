/* fetch.c — libcurl's easy interface behind fetch.h. libcurl brings what the hand-written
 * client (client.c) lacked for URLs that reach out of the host: names, TLS with certificate
 * checks, redirects refused, chunked and compressed framing done right. */
#include "fetch.h"
#include "dns.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_ANSWER ((size_t)64 << 20)      /* a scrape or a webhook's answer: never more */

struct fl_fetcher {
  CURL *curl;
  char user_agent[96];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

/* curl_global_init is not safe to run twice at once: the first fetcher of any thread does it. */
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- URLs ---- */

static bool host_ok(const char *host) {
  struct in_addr v4;
  return host[0] == '[' || inet_pton(AF_INET, host, &v4) == 1 || fl_host_is_name(host);
}

int fl_fetch_check_url(const char *url, char *hostport, size_t cap, char *why, size_t why_cap) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL;
  int rc = FL_EINVAL;
  if (!u) {
    snprintf(why, why_cap, "out of memory");
    return FL_ENOMEM;
  }
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
    snprintf(why, why_cap, "not a URL (expected http://HOST:PORT/PATH or https://...)");
  else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)
    snprintf(why, why_cap, "the scheme must be http or https, not %s", scheme);
  else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host_ok(host))
    snprintf(why, why_cap, "bad host %s", host ? host : "(none)");
  else if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
    snprintf(why, why_cap, "bad port");
  else
    rc = 0;
  if (rc == 0 && cap) snprintf(hostport, cap, "%s:%s", host, port);
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return rc;
}

void fl_fetch_url_for_log(const char *url, char *out, size_t cap) {
  CURLU *u = curl_url();
  char *clean = NULL;
  snprintf(out, cap, "(a malformed URL)");
  if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
    curl_url_set(u, CURLUPART_USER, NULL, 0);
    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    curl_url_set(u, CURLUPART_OPTIONS, NULL, 0);
    curl_url_set(u, CURLUPART_QUERY, NULL, 0);
    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
    if (curl_url_get(u, CURLUPART_URL, &clean, 0) == CURLUE_OK) snprintf(out, cap, "%s", clean);
  }
  curl_free(clean);
  curl_url_cleanup(u);
}

/* ---- requests ---- */

fl_fetcher_t *fl_fetcher_new(void) {
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK) return NULL;
  fl_fetcher_t *f = calloc(1, sizeof *f);
  if (!f || !(f->curl = curl_easy_init())) {
    free(f);
    return NULL;
  }
  snprintf(f->user_agent, sizeof f->user_agent, "fledge/%s libcurl/%s", FL_VERSION, curl_version_info(CURLVERSION_NOW)->version);
  return f;
}

void fl_fetcher_free(fl_fetcher_t *f) {
  if (!f) return;
  curl_easy_cleanup(f->curl);
  free(f);
}

typedef struct {
  char *data;
  size_t len, cap;
  bool too_big, no_memory;
} answer_t;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ctx) {
  answer_t *a = ctx;
  size_t n = size * nmemb;
  if (a->len + n > MAX_ANSWER) {
    a->too_big = true;
    return 0;                          /* libcurl stops with CURLE_WRITE_ERROR */
  }
  if (a->len + n + 1 > a->cap) {
    size_t cap = FL_MAX(a->cap * 2, a->len + n + 1);
    char *more = realloc(a->data, cap);
    if (!more) {
      a->no_memory = true;
      return 0;
    }
    a->data = more, a->cap = cap;
  }
  memcpy(a->data + a->len, ptr, n);
  a->len += n;
  a->data[a->len] = '\0';
  return n;
}

/* FLEDGE_HOSTS_FILE: the URL's host is looked up there, and libcurl is told its addresses
 * ("-HOST:PORT" first drops what an earlier request told it). Returns 0, or FL_EIO with err set. */
static int pin_addresses(const char *url, struct curl_slist **list, char *err, size_t err_cap) {
  char hostport[300], why[160], *colon;
  if (!fl_dns_hosts_file() || fl_fetch_check_url(url, hostport, sizeof hostport, why, sizeof why) != 0) return 0;
  if (hostport[0] == '[' || !(colon = strrchr(hostport, ':'))) return 0;
  *colon = '\0';
  struct in_addr v4;
  if (inet_pton(AF_INET, hostport, &v4) == 1) return 0;
  uint16_t port = (uint16_t)atoi(colon + 1);
  fl_addr_t addrs[8];
  size_t n = 0;
  if (fl_dns_lookup(hostport, port, addrs, FL_ARRAY_LEN(addrs), &n, why, sizeof why) != 0) {
    snprintf(err, err_cap, "cannot resolve %s: %s", hostport, why);
    return FL_EIO;
  }
  char entry[700], ip[64];
  int len = snprintf(entry, sizeof entry, "-%s:%u", hostport, port);
  *list = curl_slist_append(*list, entry);
  len = snprintf(entry, sizeof entry, "%s:%u:", hostport, port);
  for (size_t i = 0; i < n && len > 0 && (size_t)len < sizeof entry - 70; i++) {
    fl_addr_ntop((const struct sockaddr *)&addrs[i].ss, ip, sizeof ip);
    len += snprintf(entry + len, sizeof entry - (size_t)len, addrs[i].ss.ss_family == AF_INET6 ? "%s[%s]" : "%s%s",
                    i ? "," : "", ip);
  }
  *list = curl_slist_append(*list, entry);
  return 0;
}

static void set_request(fl_fetcher_t *f, const char *url, const char *method, const char *body, uint32_t timeout_ms,
                        struct curl_slist *headers, struct curl_slist *resolve, answer_t *a, char *curl_err) {
  CURL *c = f->curl;
  curl_easy_reset(c);                  /* settings only: connections and DNS answers stay cached */
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);               /* threads: no SIGALRM for DNS timeouts */
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(c, CURLOPT_USERAGENT, f->user_agent);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
  if (resolve) curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
  if (strcmp(method, "POST") == 0 || body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
}

int fl_fetch(fl_fetcher_t *f, const char *url, const char *method, const char *body, uint32_t timeout_ms, int *status,
             char **out, char *err, size_t err_cap) {
  struct curl_slist *headers = NULL, *resolve = NULL;
  char curl_err[CURL_ERROR_SIZE] = "";
  answer_t a = {0};
  if (out) *out = NULL;
  int rc = pin_addresses(url, &resolve, err, err_cap);
  if (rc) return rc;
  if (body) headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");     /* no 100-continue round trip for a big body */
  set_request(f, url, method, body, timeout_ms, headers, resolve, &a, curl_err);
  CURLcode cc = curl_easy_perform(f->curl);
  curl_slist_free_all(headers);
  curl_slist_free_all(resolve);
  long code = 0;
  if (cc == CURLE_OK) curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &code);
  if (cc == CURLE_OK && (a.data || (a.data = calloc(1, 1)))) {
    *status = (int)code;
    if (out) *out = a.data;
    else free(a.data);
    return 0;
  }
  free(a.data);
  rc = a.too_big ? FL_ELIMIT : (a.no_memory || cc == CURLE_OK || cc == CURLE_OUT_OF_MEMORY) ? FL_ENOMEM : FL_EIO;
  snprintf(err, err_cap, "%s", rc == FL_ELIMIT ? "answer over 64 MiB" : rc == FL_ENOMEM ? "out of memory"
                               : curl_err[0] ? curl_err : curl_easy_strerror(cc));
  return rc;
}
