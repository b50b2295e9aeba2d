/* resources.h — what the machine and the watched processes use: CPU (total and per core), load,
 * memory and swap, disk space per mount and disk I/O, network bytes per interface, and for each
 * process named in the config (by pid file or command line) its CPU share, resident memory,
 * threads, descriptors, I/O and uptime, tied to a route's variant when the config says so.
 * Sampled from /proc and statvfs on the control thread every `resources.interval`. */
#ifndef FL_RESOURCES_H
#define FL_RESOURCES_H

#include "conf.h"
#include "http.h"

#include <jansson.h>

/* ---- parsers of /proc text, pure (unit-tested on fixtures) ---- */

typedef struct fl_meminfo {
  uint64_t total, available, free, buffers, cached, swap_total, swap_free;   /* bytes */
} fl_meminfo_t;
int fl_parse_meminfo(const char *text, fl_meminfo_t *out);          /* 0 or FL_EPARSE */

#define FL_MAX_CPUS 256
typedef struct fl_cpustat {
  unsigned n;                          /* cores; row 0 is the "cpu" total line, 1..n the cores */
  uint64_t busy[FL_MAX_CPUS + 1], total[FL_MAX_CPUS + 1];   /* jiffies */
} fl_cpustat_t;
int fl_parse_stat(const char *text, fl_cpustat_t *out);

/* /proc/PID/stat: fields after the parenthesised command (which may hold spaces and ')'). */
typedef struct fl_procstat {
  char state;
  uint64_t utime, stime, starttime;    /* jiffies */
  uint64_t threads;
} fl_procstat_t;
int fl_parse_procstat(const char *text, fl_procstat_t *out);

/* Sums "read_bytes" and "write_bytes" of /proc/PID/io. */
int fl_parse_procio(const char *text, uint64_t *read_bytes, uint64_t *write_bytes);

/* ---- the sampler ---- */

/* Starts (or, after a reload, reconfigures) sampling; the first sample is taken at once, a
 * reload keeps the schedule. Control thread. */
void fl_resources_configure(const fl_conf_t *c);

/* Takes a sample when the interval has passed (call every second). Control thread. */
void fl_resources_tick(uint64_t now_ms);

/* fledge_host_*, fledge_process_* and fledge_gpu_* families (an fl_metrics_expo_fn, metrics.h;
 * c and ctx unused); /api/v1/resources. Control thread. */
void fl_resources_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx);
json_t *fl_resources_json(void);

/* A watched process's numbers, for rollout checks (process_rss, process_cpu): the sum over the
 * processes tied to (route, variant); false when none is tied or running. */
bool fl_resources_variant(const char *route, int variant, double *rss_bytes, double *cpu_ratio);

void fl_resources_shutdown(void);

#endif
