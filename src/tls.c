/* tls.c — OpenSSL contexts for TLS listeners and https backends. See tls.h. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* TLS 1.2 suites with forward secrecy and authenticated encryption only (1.3 has no others). */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

struct fl_tls_server {
  SSL_CTX *ctx;                     /* the default certificate's; carries the others (sni_t) */
};

/* The certificates after the first, hung on the first one's context so that they live as long
 * as any connection made from it (an SSL holds a reference to its context). */
typedef struct sni {
  size_t n;
  SSL_CTX *ctx[];
} sni_t;

static int sni_index = -1;
static pthread_once_t sni_once = PTHREAD_ONCE_INIT;

/* The session ticket keys (name, HMAC and AES keys): drawn once per process and given to every
 * listener context, so that a ticket issued before a reload still resumes after it. */
static unsigned char ticket_keys[80];
static bool ticket_keys_ok;

static void sni_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  sni_t *s = ptr;
  if (!s) return;
  for (size_t i = 0; i < s->n; i++) SSL_CTX_free(s->ctx[i]);
  free(s);
}

static void once_init(void) {
  sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_free);
  ticket_keys_ok = RAND_bytes(ticket_keys, sizeof ticket_keys) == 1;
}

/* The first error on this thread's OpenSSL queue in words (the queue is then cleared), or
 * `fallback` when it is empty. */
static const char *tls_error(char *buf, size_t len, const char *fallback) {
  unsigned long e = ERR_peek_error();
  if (!e) {
    snprintf(buf, len, "%s", fallback);
  } else {
    const char *reason = ERR_reason_error_string(e);
    if (reason) snprintf(buf, len, "%s", reason);
    else ERR_error_string_n(e, buf, len);
  }
  ERR_clear_error();
  return buf;
}

/* ALPN: http/1.1 when the client offers it; otherwise the handshake goes on without ALPN. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned inlen, void *arg) {
  static const unsigned char ours[] = "\x08http/1.1";
  unsigned char *chosen;
  if (SSL_select_next_proto(&chosen, outlen, ours, sizeof ours - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

/* SNI: the first certificate whose names match the requested one; none matching, the default. */
static int on_servername(SSL *ssl, int *alert, void *arg) {
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  SSL_CTX *first = SSL_get_SSL_CTX(ssl);
  const sni_t *s = SSL_CTX_get_ex_data(first, sni_index);
  if (!name || !s || s->n == 0) return SSL_TLSEXT_ERR_OK;   /* one certificate: nothing to choose */
  if (X509_check_host(SSL_CTX_get0_certificate(first), name, 0, 0, NULL) == 1) return SSL_TLSEXT_ERR_OK;
  for (size_t i = 0; i < s->n; i++)
    if (X509_check_host(SSL_CTX_get0_certificate(s->ctx[i]), name, 0, 0, NULL) == 1) {
      SSL_set_SSL_CTX(ssl, s->ctx[i]);
      break;
    }
  return SSL_TLSEXT_ERR_OK;
}

/* What both sides share: TLS 1.2 and up, no renegotiation or compression, an unexpected EOF as an
 * EOF, writes that may be partial and retried from another buffer (sock.c's queue), buffers given
 * back while idle, reads that take what arrived (not a record header and then its body). */
static SSL_CTX *base_ctx(const SSL_METHOD *method, uint64_t options, char *err, size_t errlen) {
  char why[256];
  SSL_CTX *ctx = SSL_CTX_new(method);
  if (!ctx) {
    snprintf(err, errlen, "tls: %s", tls_error(why, sizeof why, "out of memory"));
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION | options);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(ctx, 1);
  return ctx;
}

static SSL_CTX *server_ctx(const fl_tls_cert_t *c, char *err, size_t errlen) {
  char why[256];
  SSL_CTX *ctx = base_ctx(TLS_server_method(), SSL_OP_CIPHER_SERVER_PREFERENCE, err, errlen);
  if (!ctx) return NULL;
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);   /* resumption by tickets only */
  SSL_CTX_set_num_tickets(ctx, 1);
  if (!ticket_keys_ok || SSL_CTX_set_tlsext_ticket_keys(ctx, ticket_keys, sizeof ticket_keys) != 1)
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);   /* no keys to share: no resumption, rather than per reload */
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
  const char *file = c->cert;
  bool ok = SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) == 1 &&
            SSL_CTX_use_certificate_chain_file(ctx, c->cert) == 1 &&
            (file = c->key, SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) == 1) &&
            SSL_CTX_check_private_key(ctx) == 1;
  if (!ok) {
    snprintf(err, errlen, "tls: %s: %s", file, tls_error(why, sizeof why, "unusable"));
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

int fl_tls_server_new(const fl_tls_cert_t *certs, size_t n, fl_tls_server_t **out, char *err, size_t errlen) {
  *out = NULL;
  pthread_once(&sni_once, once_init);
  if (n == 0 || sni_index < 0) {
    snprintf(err, errlen, "tls: %s", n ? "OpenSSL has no room for the certificate list" : "no certificate");
    return FL_EINVAL;
  }
  fl_tls_server_t *srv = calloc(1, sizeof *srv);
  sni_t *rest = calloc(1, sizeof *rest + (n - 1) * sizeof(SSL_CTX *));
  if (!srv || !rest) {
    free(srv), free(rest);
    snprintf(err, errlen, "tls: out of memory");
    return FL_ENOMEM;
  }
  if (!(srv->ctx = server_ctx(&certs[0], err, errlen))) {
    free(srv), free(rest);
    return FL_EINVAL;
  }
  SSL_CTX_set_ex_data(srv->ctx, sni_index, rest);   /* freed with the context from now on */
  for (size_t i = 1; i < n; i++) {
    if (!(rest->ctx[i - 1] = server_ctx(&certs[i], err, errlen))) {
      fl_tls_server_free(srv);
      return FL_EINVAL;
    }
    rest->n = i;
  }
  SSL_CTX_set_tlsext_servername_callback(srv->ctx, on_servername);
  *out = srv;
  return 0;
}

void fl_tls_server_free(fl_tls_server_t *srv) {
  if (!srv) return;
  SSL_CTX_free(srv->ctx);
  free(srv);
}

SSL *fl_tls_server_ssl(fl_tls_server_t *srv) {
  SSL *ssl = SSL_new(srv->ctx);
  if (ssl) SSL_set_accept_state(ssl);
  return ssl;
}

/* ---- https backends ---- */

struct fl_tls_client {
  atomic_uint refs;
  SSL_CTX *ctx;
  char *host;
  bool host_is_ip;                  /* checked as an address; no SNI (RFC 6066 names hosts only) */
  bool insecure;
  char key[];
};

static const unsigned char alpn_http11[] = "\x08http/1.1";

static SSL_CTX *client_ctx(const fl_tls_client_conf_t *cf, char *err, size_t errlen) {
  char why[256];
  SSL_CTX *ctx = base_ctx(TLS_client_method(), 0, err, errlen);
  if (!ctx) return NULL;
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);   /* pooled connections stand in for resumption */
  SSL_CTX_set_verify(ctx, cf->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
  bool ok = SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) == 1 &&
            SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof alpn_http11 - 1) == 0;
  const char *what = "the system's certificate authorities";
  if (ok && !cf->insecure) {
    if (cf->ca_file) what = cf->ca_file;
    ok = cf->ca_file ? SSL_CTX_load_verify_locations(ctx, cf->ca_file, NULL) == 1
                     : SSL_CTX_set_default_verify_paths(ctx) == 1;
  }
  if (!ok) {
    snprintf(err, errlen, "tls: %s: %s", what, tls_error(why, sizeof why, "unusable"));
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

int fl_tls_client_new(const fl_tls_client_conf_t *cf, fl_tls_client_t **out, char *err, size_t errlen) {
  *out = NULL;
  struct stat st = {0};
  if (cf->ca_file && stat(cf->ca_file, &st) != 0) {
    snprintf(err, errlen, "tls: %s: %s", cf->ca_file, strerror(errno));
    return FL_EINVAL;
  }
  char key[4600];
  int n = snprintf(key, sizeof key, "%s|%s:%lld:%lld.%09ld|%s", cf->host, cf->ca_file ? cf->ca_file : "-",
                   (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                   cf->insecure ? "insecure" : "verify");
  if (n < 0 || (size_t)n >= sizeof key) {
    snprintf(err, errlen, "tls: the host name or ca_file path is too long");
    return FL_EINVAL;
  }
  fl_tls_client_t *cl = calloc(1, sizeof *cl + (size_t)n + 1);
  if (!cl || !(cl->host = strdup(cf->host))) {
    free(cl);
    snprintf(err, errlen, "tls: out of memory");
    return FL_ENOMEM;
  }
  memcpy(cl->key, key, (size_t)n + 1);
  atomic_init(&cl->refs, 1);
  unsigned char ip[16];
  cl->host_is_ip = inet_pton(AF_INET, cf->host, ip) == 1 || inet_pton(AF_INET6, cf->host, ip) == 1;
  cl->insecure = cf->insecure;
  if (!(cl->ctx = client_ctx(cf, err, errlen))) {
    free(cl->host);
    free(cl);
    return FL_EINVAL;
  }
  *out = cl;
  return 0;
}

fl_tls_client_t *fl_tls_client_ref(fl_tls_client_t *cl) {
  if (cl) atomic_fetch_add_explicit(&cl->refs, 1, memory_order_relaxed);
  return cl;
}

void fl_tls_client_unref(fl_tls_client_t *cl) {
  if (!cl || atomic_fetch_sub_explicit(&cl->refs, 1, memory_order_acq_rel) != 1) return;
  SSL_CTX_free(cl->ctx);
  free(cl->host);
  free(cl);
}

const char *fl_tls_client_key(const fl_tls_client_t *cl) { return cl->key; }
const char *fl_tls_client_host(const fl_tls_client_t *cl) { return cl->host; }

SSL *fl_tls_client_ssl(fl_tls_client_t *cl) {
  SSL *ssl = SSL_new(cl->ctx);
  if (!ssl) return NULL;
  SSL_set_connect_state(ssl);
  bool ok = true;
  if (!cl->host_is_ip) ok = SSL_set_tlsext_host_name(ssl, cl->host) == 1;
  if (ok && !cl->insecure) {
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = cl->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), cl->host) == 1
                        : SSL_set1_host(ssl, cl->host) == 1;
  }
  if (!ok) {
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
  }
  return ssl;
}
