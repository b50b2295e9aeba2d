/* tls.h — TLS for the data path, with OpenSSL 3: the contexts a TLS listener hands its
 * connections (built from certificate files when a config is loaded, one per certificate, the
 * client's server name picking among them; errors in words, naming the file), and those a
 * version's https backends are reached with (verified against the system's authorities or a
 * ca_file, by the backend's host name).
 *
 * Settings: TLS 1.2 and 1.3 only; OpenSSL's default cipher lists less anything without forward
 * secrecy or authenticated encryption; ALPN http/1.1; resumption by stateless tickets (no server
 * session cache, so no lock shared by the workers) whose keys are the process's own, so a ticket
 * outlives a reload; an unexpected EOF reads as an EOF (HTTP's own framing tells a cut answer).
 * A context is used by every worker thread (SSL_new only). */
#ifndef FL_TLS_H
#define FL_TLS_H

#include "common.h"

#include <openssl/ssl.h>

/* One certificate chain (PEM, leaf first) and its private key (PEM), as paths. */
typedef struct fl_tls_cert {
  char *cert;
  char *key;
} fl_tls_cert_t;

/* What a TLS listener serves: the first certificate is the default, another is picked when the
 * client's SNI name matches one of its names. Opaque; one reference per holder. */
typedef struct fl_tls_server fl_tls_server_t;

/* Reads and checks the certificates (key matches, names present). 0 and *out, or a negative
 * error with the reason, naming the file, in err. */
int fl_tls_server_new(const fl_tls_cert_t *certs, size_t n, fl_tls_server_t **out, char *err,
                      size_t errlen) FL_MUST_CHECK;
void fl_tls_server_free(fl_tls_server_t *srv);

/* A new connection's TLS state, server side (for fl_sock_start_tls: the handshake runs in the
 * first reads), or NULL when out of memory. It keeps what it needs of srv alive: srv may be
 * freed first. */
SSL *fl_tls_server_ssl(fl_tls_server_t *srv);

/* How a version's https backends are reached. */
typedef struct fl_tls_client_conf {
  const char *host;                 /* the name their certificates must carry, sent as SNI; an IP
                                       address is checked as one and sends no SNI */
  const char *ca_file;              /* PEM authorities to trust; NULL: the system's */
  bool insecure;                    /* insecure_skip_verify: no verification at all */
} fl_tls_client_conf_t;

/* Shared by a config snapshot's variant and the backends bound to it (upstream.h): one reference
 * per holder; any thread may make connections from it. */
typedef struct fl_tls_client fl_tls_client_t;

/* Reads the authorities (ca_file, or the system's). 0 and *out, or a negative error with the
 * reason, naming the file, in err. */
int fl_tls_client_new(const fl_tls_client_conf_t *cf, fl_tls_client_t **out, char *err,
                      size_t errlen) FL_MUST_CHECK;
fl_tls_client_t *fl_tls_client_ref(fl_tls_client_t *cl);
void fl_tls_client_unref(fl_tls_client_t *cl);

/* What tells two clients apart: the host, the authorities file as it is now (path, size and
 * time of change) and the verification. Equal keys: connections made by either are alike. */
const char *fl_tls_client_key(const fl_tls_client_t *cl);
const char *fl_tls_client_host(const fl_tls_client_t *cl);

/* A new connection's TLS state, client side, with SNI and the host check set (for
 * fl_sock_start_tls on a connecting socket: the handshake runs before the connect is told), or
 * NULL when out of memory. */
SSL *fl_tls_client_ssl(fl_tls_client_t *cl);

#endif
