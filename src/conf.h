/* conf.h — the gateway's configuration: YAML file → validated, immutable snapshot.
 * A snapshot is shared by every worker and released when its last request ends. */
#ifndef FL_CONF_H
#define FL_CONF_H

#include "common.h"
#include "netaddr.h"
#include "tls.h"

#include <regex.h>
#include <stdatomic.h>

#define FL_MAX_WORKERS 64
#define FL_MAX_LISTENERS 8

/* One address the gateway serves clients on. */
typedef struct fl_listen {
  fl_addr_t addr;
  bool share;                       /* another process may serve the same address (SO_REUSEPORT,
                                       e.g. a binary upgrade); default false: a second fledge
                                       there is refused at start (claim.h) */
  fl_tls_cert_t *certs;             /* tls: the certificates (paths resolved against the config's
                                       folder), the default first; n_certs 0: plain HTTP */
  size_t n_certs;
  fl_tls_server_t *tls;             /* built from certs when the config is loaded (files read and
                                       checked then); NULL for plain HTTP */
} fl_listen_t;

typedef enum { FL_STABLE = 0, FL_CANARY = 1, FL_NVARIANTS = 2 } fl_variant_id_t;

/* Where the sticky-split user key comes from (route `user_key:` list). */
typedef enum { FL_KEY_HEADER, FL_KEY_COOKIE, FL_KEY_QUERY, FL_KEY_JSON, FL_KEY_IP } fl_key_kind_t;

typedef struct fl_key_source {
  fl_key_kind_t kind;
  char *name;                       /* header, cookie, query or JSON field name; NULL for ip */
} fl_key_source_t;

/* One condition of a rule's `match:`; a rule fits when all its conditions do. */
typedef enum {
  FL_COND_HEADER,        /* header: { NAME: VALUE }        exact, case-sensitive value */
  FL_COND_HEADER_REGEX,  /* header_regex: { NAME: REGEX }  POSIX extended, unanchored */
  FL_COND_COOKIE,        /* cookie: { NAME: VALUE } */
  FL_COND_QUERY,         /* query: { NAME: VALUE } */
  FL_COND_CIDR,          /* cidr: [10.0.0.0/8, ...]        client address */
  FL_COND_COUNTRY,       /* country: [DE, FR]              ISO 3166 alpha-2, case-insensitive */
  FL_COND_SEGMENT,       /* segment: [beta, staff]         value of the route's segment_header */
} fl_cond_kind_t;

typedef struct fl_cond {
  fl_cond_kind_t kind;
  char *name;                       /* header/cookie/query name (lower-cased for headers) */
  char *value;                      /* exact value or the regex source */
  regex_t *regex;                   /* HEADER_REGEX: one compiled copy per worker (glibc's
                                       regexec locks a shared one), conf->workers entries */
  fl_cidr_t *cidrs; size_t n_cidrs; /* CIDR */
  char **values; size_t n_values;   /* COUNTRY (upper-cased), SEGMENT */
} fl_cond_t;

typedef struct fl_rule {
  fl_cond_t *conds; size_t n_conds;
  fl_variant_id_t variant;
  unsigned line;                    /* where the rule starts in the file, for explanations */
} fl_rule_t;

struct fl_backend;                  /* upstream.h: shared health state, bound after load */

/* resolve: how the host names among backends are kept resolved (resolver.h): in the file's top
 * level, a route or a variant; each inherits what it does not say from the level above. */
typedef struct fl_resolve_conf {
  uint32_t interval_ms;             /* resolve.interval: looked up again this often, default 30 s;
                                       0 while parsing: not given at this level */
  bool lazy;                        /* resolve: lazy: a name with no address at load is no error:
                                       it is retried and served once it has one */
  bool lazy_set;                    /* while parsing: lazy was given at this level */
} fl_resolve_conf_t;

/* A backends: entry written as a host name, e.g. vllm.default.svc.cluster.local:8000. It stands
 * for every address the name has; the resolver appends them to the variant's `backends` before
 * the snapshot is bound (fl_resolver_apply), each a backend with its own health. */
typedef struct fl_backend_name {
  char *host;                       /* lower-case */
  uint16_t port;
  char *text;                       /* "host:port", for messages */
  unsigned line, column;            /* where it is written (1-based), for errors */
  size_t first, count;              /* its addresses in backends, set by fl_resolver_apply (an
                                       address another entry of the variant has is not repeated) */
  unsigned generation;              /* of the name's addresses they were taken from (resolver.c) */
} fl_backend_name_t;
struct fl_live;                     /* live.h: the weight in force, bound after load */

typedef struct fl_variant_conf {
  char *version;                    /* required, e.g. "v1" */
  char *model;                      /* NULL: the request's JSON `model` is left alone */
  fl_addr_t *backends; size_t n_backends;   /* the addresses written, then those of the names; at
                                               least one unless a name is resolved lazily */
  fl_backend_name_t *names; size_t n_names; /* host names among backends: */
  fl_resolve_conf_t resolve;                /* how they are kept resolved */
  struct fl_backend **bound;        /* n_backends entries, set by fl_upstream_bind() */
  unsigned series;                  /* metrics series of (route, variant, version): fl_metrics_bind() */
  unsigned series_gen;              /* its generation (metrics.h); 0: not bound */
  unsigned *backend_series;         /* n_backends metrics series of (route, variant, backend) */
  char **metrics_urls; size_t n_metrics_urls;   /* metrics_url: the backends' own Prometheus
                                                   endpoints, http://HOST:PORT/PATH (scrape.h) */
  char *headers;                    /* headers: "name: value\r\n" lines set on the way to this version's
                                       backends (${env:NAME} expanded at load; never shown or logged);
                                       NULL: none */
  char **header_names; size_t n_headers;   /* their names, lower-case: a client's header of the same
                                              name is replaced, not forwarded */
  /* backends: [https://HOST[:PORT], ...]: every backend of the version is reached over TLS, its
   * certificate checked for one host (the backends' own, or server_name) */
  bool https;                       /* the backends are https:// (none may be plain then) */
  char *ca_file;                    /* ca_file: the authorities to trust (resolved path); NULL: the system's */
  char *server_name;                /* server_name: the name to ask for and check; NULL: the backends' host */
  bool insecure_skip_verify;        /* insecure_skip_verify: no check at all (warned at every load) */
  fl_tls_client_t *tls;             /* built from the above at load; NULL: plain HTTP */
  char *host_line;                  /* with https: "host: NAME[:PORT]\r\n", the Host every request
                                       gets instead of the client's */
} fl_variant_conf_t;

/* shadow: a copy of a share of stable's requests also goes to the canary; its answers are read to
 * the end, compared with stable's and thrown away (shadow.h). */
typedef struct fl_shadow_conf {
  bool on;                          /* the route has a shadow section */
  uint32_t percent_bp;              /* shadow.percent × 100: the share of stable's users (by their
                                       sticky bucket) whose requests are mirrored; default 10000 */
  uint32_t max_in_flight;           /* mirrors open at once in the gateway; more are dropped, counted */
  uint32_t timeout_ms;              /* a mirror not answered in full by then is given up; default 30 s */
  uint32_t methods;                 /* 1 << fl_method_t of each method mirrored (h1.h); default GET,
                                       HEAD, OPTIONS and POST: a model route's POST is inference */
} fl_shadow_conf_t;

typedef struct fl_route {
  char *name;                       /* unique, [A-Za-z0-9_.-]+ */
  char *host;                       /* match.host; NULL = any host (compared without port) */
  char *path_prefix; size_t path_prefix_len;  /* match.path_prefix; default "/" */
  fl_key_source_t *user_key; size_t n_user_key;
  char *salt;                       /* sticky hash salt; default: the route name */
  char *segment_header;             /* default "x-user-segment" (lower-case) */
  fl_variant_conf_t variant[FL_NVARIANTS];
  uint32_t canary_weight_bp;        /* canary.weight × 100 as written in the file: 0..10000; the
                                       weight in force is fl_live_weight() */
  struct fl_live *live;             /* set by fl_live_bind() */
  fl_rule_t *rules; size_t n_rules;
  bool has_canary;                  /* false when the route has no canary section */
  bool stable_promoted;             /* a finished promotion: the file's canary serves as stable, the
                                       file's stable waits in variant[FL_CANARY] for an undo, and
                                       has_canary is false (fl_rollouts_overlay, rollout.h) */
  struct json_t *rollout_spec;      /* rollout: as JSON (validated), or NULL; starts when the
                                       canary's version changes (rollout.h) */
  fl_resolve_conf_t resolve;        /* resolve: for both variants, unless they say otherwise */
  fl_shadow_conf_t shadow;
} fl_route_t;

/* processes: a process whose resources are watched (resources.h). */
typedef struct fl_process_conf {
  char *name;                       /* required, unique: the metrics label */
  char *cmdline;                    /* POSIX extended regex over the command line (args joined by
                                       spaces), or NULL */
  char *pid_file;                   /* or a file holding its pid */
  char *route;                      /* with variant: whose resources these are; NULL: any route */
  int variant;                      /* fl_variant_id_t, or -1 */
} fl_process_conf_t;

/* cluster: replicas sharing one Redis (cluster.c). Absent: the gateway runs alone. */
typedef struct fl_cluster_conf {
  char *redis;                      /* cluster.redis as written: redis://HOST[:PORT][/DB] */
  char *host;                       /* its host (an IPv4/IPv6 literal or a name) */
  uint16_t port;                    /* default 6379 */
  uint32_t db;                      /* default 0 */
  char *password_env;               /* cluster.password_env: NULL when Redis needs no AUTH */
  char *password;                   /* its value, read at load */
  char *name;                       /* cluster.name: prefix of every key, default "fledge" */
  char *replica;                    /* cluster.replica: default HOSTNAME:ADMINPORT */
  uint32_t lease_ms;                /* cluster.lease: the leader's lease, default 3s */
} fl_cluster_conf_t;

typedef struct fl_conf {
  atomic_int refs;
  char *path;                       /* the file it was loaded from */
  fl_listen_t listens[FL_MAX_LISTENERS];   /* listen: HOST:PORT, {address, share, tls}, or a list
                                       of these; default 127.0.0.1:8080 */
  size_t n_listens;
  fl_addr_t admin_listen;           /* admin.listen, same forms: default 127.0.0.1:9090 */
  bool admin_listen_share;          /* admin.listen.share: likewise (every sharer must set it) */
  char *admin_token_env;            /* admin.token_env: the environment variable holding the bearer
                                       token that changes need; NULL: the admin API is read-only */
  char *admin_token;                /* its value, read at load */
  char *read_token_env;             /* admin.read_token_env: when set, reads (GET /api/v1/..., /metrics)
                                       need this token or the admin token; NULL: reads are open */
  char *read_token;                 /* its value, read at load */
  bool public_metrics;              /* admin.public_metrics: /metrics stays open when reads need a
                                       token (scrapers that cannot send one); default false */
  char *feedback_token_env;         /* feedback.token_env: a token that may POST /api/v1/feedback and
                                       nothing else (the admin token may too); NULL: none */
  char *feedback_token;             /* its value, read at load */
  char *admin_token_error;          /* "FILE:LINE:COL: ..." when a token's variable (any of the three)
                                       is missing or too short: serve and check refuse such a file,
                                       CLI tools only read it */
  unsigned workers;                 /* the worker threads this snapshot serves on (regex copies, the
                                       connection limit's split): the running ones once pinned */
  unsigned workers_wanted;          /* workers: N | auto (= online CPUs), 1..FL_MAX_WORKERS */
  fl_cidr_t *override_from; size_t n_override_from;   /* override_from (old name trusted_cidrs): who may
                                                        force a variant with x-fledge-variant; default none */
  fl_cidr_t *trusted_proxies; size_t n_trusted_proxies; /* whose x-forwarded-for / forwarded is believed */
  char *geoip_mmdb;                 /* geoip.mmdb: path of a MaxMind database, or NULL */
  char *geoip_header;               /* geoip.header: country header set by a trusted edge (lower-case) */
  struct fl_timeouts {              /* timeouts: values like 500ms, 10s, 2m, or plain seconds */
    uint32_t connect_ms;            /* default 2000  */
    uint32_t header_ms;             /* default 10000: client request head must arrive within */
    uint32_t first_byte_ms;         /* default 60000: upstream response head after request sent */
    uint32_t idle_ms;               /* default 60000: no bytes either way (keep-alive idle too) */
    uint32_t drain_ms;              /* default 30000: SIGTERM waits this long for in-flight */
  } timeouts;
  struct {                          /* limits: */
    uint32_t header_bytes;          /* default 65536 → 431 */
    uint32_t headers;               /* default 100   → 431 */
    uint64_t body_bytes;            /* default 104857600 (100 MiB) → 413 */
    uint32_t inspect_body_bytes;    /* default 1048576: most read to find json: keys or rewrite model */
    uint32_t max_connections;       /* default 10000 client connections, split evenly over the
                                       workers; beyond it a new connection gets 503 and is closed */
  } limits;
  struct fl_geo *geo;                /* opened from geoip_mmdb by the server, NULL otherwise;
                                       closed by fl_conf_unref (geo.h) */
  bool response_headers;            /* response_headers: default true (x-fledge-variant/-version) */
  bool metrics;                     /* metrics: default true; false skips all per-request accounting */
  char *access_log;                 /* access_log: a file path, "-" for stdout, or NULL (none) */
  char *state_path;                 /* state: the SQLite state store; NULL: fledge.db beside the file */
  struct {                          /* data: the data-quality monitor (monitor.h) */
    int32_t sample_ppm;             /* data.sample: share of exchanges read, parts per million;
                                       -1 = auto (default): every one below 100 req/s, then 100 a second */
    uint32_t max_body;              /* data.max_body: bytes of each body captured, default 262144 */
    uint32_t window_ms;             /* data.window: the sliding drift window, default 5m */
    uint32_t refresh_ms;            /* data.refresh: how often its drift is computed, default 10s */
    uint32_t baseline_capture_ms;   /* data.baseline_capture: stable's inputs this long after its
                                       first request become a route's baseline, default 10m */
    char *baseline_file;            /* data.baseline_file: {"routes": {ROUTE: {FEATURE: [numbers]}}}
                                       loaded at start instead, and saved to the state store */
    char **refusals; size_t n_refusals;   /* data.refusal_patterns (POSIX ERE); none: built-in */
  } data;
  uint32_t resources_interval_ms;   /* resources.interval: host and process sampling, default 5s */
  char *nvml_library;               /* resources.nvml_library: default libnvidia-ml.so.1 (gpu.h) */
  uint32_t scrape_interval_ms;      /* scrape.interval: default 10s */
  uint32_t scrape_timeout_ms;       /* scrape.timeout: default 2s */
  char **scrape_families; size_t n_scrape_families;   /* scrape.families: names kept ("x*": prefix);
                                                         none given: a built-in list (scrape.c) */
  fl_process_conf_t *processes; size_t n_processes;
  char *feedback_key_env;           /* feedback.key_env: variable holding the request-id signing key;
                                       NULL: a key generated once and kept in the state store */
  char *prometheus_url;             /* analysis.prometheus: where query checks run (promql.h); NULL: none */
  fl_route_t *routes; size_t n_routes;
  fl_resolve_conf_t resolve;        /* resolve: default {interval: 30s, lazy: false} */
  fl_cluster_conf_t *cluster;       /* cluster: NULL when absent */
  char fleet_hash[17];              /* 16 hex digits of a SHA-256 of the document without what each
                                       replica sets for itself (listen, admin, state, workers,
                                       access_log, cluster.replica): alike across a fleet */
  char *source; size_t source_len;  /* the YAML text it was parsed from, for fl_conf_reparse */
  char *warnings;                   /* "FILE:LINE:COL: warning: ...\n" lines worth saying at every
                                       load (serve, reload, check), or NULL */
} fl_conf_t;

/* Loads and validates a YAML file. On success returns 0 and a snapshot with one
 * reference owned by the caller. On failure returns FL_EINVAL (or an errno) and
 * writes "FILE:LINE:COL: message" (1-based) into err. Any thread; blocks on disk. */
int fl_conf_load(const char *path, fl_conf_t **out, char *err, size_t err_cap);

/* Same, from a string; `name` stands in for the file name in messages. */
int fl_conf_parse(const char *name, const char *yaml, size_t len, fl_conf_t **out, char *err, size_t err_cap);

/* A new snapshot from the same text as c, whatever the file says now: what a change of a host
 * name's addresses publishes (resolver.h), as fresh as a reload and without one. Returns what
 * fl_conf_parse returns. Control thread (it reads no file). */
int fl_conf_reparse(const fl_conf_t *c, fl_conf_t **out, char *err, size_t err_cap);

/* From now on, snapshots are made for n running worker threads whatever their file says (a
 * change of workers takes effect at restart). Control thread, once the workers run. */
void fl_conf_pin_workers(unsigned n);

void fl_conf_ref(fl_conf_t *c);
void fl_conf_unref(fl_conf_t *c);   /* frees at zero */
/* Whether anyone besides the caller holds a reference to c. Once false it stays false (nobody
 * else has c to take a new one), and every other holder's use of c happened before. */
bool fl_conf_shared(const fl_conf_t *c);

const fl_route_t *fl_conf_route(const fl_conf_t *c, const char *name);

/* Why a POSIX extended regex would be too costly for glibc's regcomp (a repetition of a
 * repetition, a count over 100, more than 16 repetitions, over 512 bytes), or NULL. Any thread. */
const char *fl_regex_too_costly(const char *re);

/* A path named in the file: absolute as it is, relative taken beside the config file. */
void fl_conf_resolve(const fl_conf_t *c, const char *path, char *out, size_t cap);

#endif
