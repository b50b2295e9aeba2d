/* resources.c — the host and the watched processes, read from /proc and statvfs on the control
 * thread: parsers of the /proc formats (pure), a sampler keeping the last sample and the
 * previous CPU counters (usage is the difference of two samples), and their exposition. */
#include "resources.h"
#include "gpu.h"
#include "metrics.h"
#include "router.h"
#include "scrape.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROWS 64                    /* mounts, disks, interfaces kept */

/* ---- parsers ---- */

/* The number after "Key:" on its own line, in kB → bytes; missing: 0. */
static uint64_t kb_field(const char *text, const char *key) {
  size_t n = strlen(key);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, key, n) == 0 && p[n] == ':') return strtoull(p + n + 1, NULL, 10) * 1024;
  return 0;
}

int fl_parse_meminfo(const char *text, fl_meminfo_t *out) {
  *out = (fl_meminfo_t){.total = kb_field(text, "MemTotal"), .available = kb_field(text, "MemAvailable"),
                        .free = kb_field(text, "MemFree"), .buffers = kb_field(text, "Buffers"),
                        .cached = kb_field(text, "Cached"), .swap_total = kb_field(text, "SwapTotal"),
                        .swap_free = kb_field(text, "SwapFree")};
  return out->total ? 0 : FL_EPARSE;
}

/* "cpu  user nice system idle iowait irq softirq steal ..." and "cpuN ..." lines. */
int fl_parse_stat(const char *text, fl_cpustat_t *out) {
  memset(out, 0, sizeof *out);
  bool total_seen = false;
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
    if (strncmp(p, "cpu", 3) != 0) continue;
    unsigned row = 0;
    const char *q = p + 3;
    if (isdigit((unsigned char)*q)) {
      row = (unsigned)strtoul(q, (char **)&q, 10) + 1;
      if (row > FL_MAX_CPUS) continue;
    } else {
      total_seen = true;
    }
    uint64_t v[10] = {0};
    for (int i = 0; i < 10 && *q && *q != '\n'; i++) v[i] = strtoull(q, (char **)&q, 10);
    uint64_t idle = v[3] + v[4], all = 0;
    for (int i = 0; i < 8; i++) all += v[i];    /* guest time is already inside user */
    out->busy[row] = all - idle;
    out->total[row] = all;
    if (row > out->n) out->n = row;
  }
  return total_seen ? 0 : FL_EPARSE;
}

int fl_parse_procstat(const char *text, fl_procstat_t *out) {
  const char *close = strrchr(text, ')');      /* the command may itself hold ") " */
  if (!close || close[1] != ' ') return FL_EPARSE;
  const char *p = close + 2;
  memset(out, 0, sizeof *out);
  out->state = *p;
  /* fields from 3 (state) on: utime 14, stime 15, num_threads 20, starttime 22 */
  uint64_t f[23] = {0};
  int i = 3;
  for (p++; i < 22;) {
    char *end;
    uint64_t v = strtoull(p, &end, 10);
    if (end == p || (*end != ' ' && *end != '\n' && *end)) break;   /* not a number: the line is cut */
    f[++i] = v;
    p = end;
  }
  if (i < 22) return FL_EPARSE;
  out->utime = f[14], out->stime = f[15], out->threads = f[20], out->starttime = f[22];
  return 0;
}

int fl_parse_procio(const char *text, uint64_t *read_bytes, uint64_t *write_bytes) {
  const char *r = strstr(text, "\nread_bytes: "), *w = strstr(text, "\nwrite_bytes: ");
  if (!r || !w) return FL_EPARSE;
  *read_bytes = strtoull(r + 13, NULL, 10);
  *write_bytes = strtoull(w + 14, NULL, 10);
  return 0;
}

/* ---- reading ---- */

/* Reads a small file whole into buf (NUL-terminated); returns its length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t n = 0;
  ssize_t got;
  while (n + 1 < cap && (got = read(fd, buf + n, cap - 1 - n)) > 0) n += (size_t)got;
  close(fd);
  buf[n] = '\0';
  return (ssize_t)n;
}

typedef struct { char name[96], fstype[24]; uint64_t size, free, avail; } mount_t;   /* longer names are skipped */
typedef struct { char name[32]; uint64_t read, write; } io_t;

typedef struct {
  pid_t pid;
  bool running;
  fl_procstat_t st;
  uint64_t rss, fds, read_bytes, write_bytes;
  double cpu_ratio, uptime_s;
  uint64_t prev_jiffies, prev_ms;      /* for the CPU share between two samples */
  uint64_t gpu_bytes;                  /* GPU memory of its pid, all GPUs */
  regex_t re;
  bool re_ok;
} proc_t;

static struct {
  fl_conf_t *conf;
  uint64_t next_ms;
  bool sampled;
  int64_t unix_ms;
  fl_cpustat_t cpu_prev, cpu;
  double load[3];
  fl_meminfo_t mem;
  mount_t mounts[MAX_ROWS]; size_t n_mounts;
  io_t disks[MAX_ROWS]; size_t n_disks;
  io_t nets[MAX_ROWS]; size_t n_nets;
  proc_t *procs; size_t n_procs;
  long hz;
  bool gpu_tried;
  fl_gpu_t gpus[FL_MAX_GPUS]; unsigned n_gpus;
  fl_gpu_proc_t gpu_procs[FL_MAX_GPU_PROCS]; unsigned n_gpu_procs;
} res;

static char scratch[1 << 16];

static void sample_cpu_and_memory(void) {
  res.cpu_prev = res.cpu;
  if (slurp("/proc/stat", scratch, sizeof scratch) > 0) fl_parse_stat(scratch, &res.cpu);
  if (slurp("/proc/loadavg", scratch, sizeof scratch) > 0)
    sscanf(scratch, "%lf %lf %lf", &res.load[0], &res.load[1], &res.load[2]);
  if (slurp("/proc/meminfo", scratch, sizeof scratch) > 0) fl_parse_meminfo(scratch, &res.mem);
}

/* Network and FUSE filesystems: statvfs there asks a server, and may block the control thread. */
static bool remote_fs(const char *dev, const char *type) {
  static const char *const REMOTE[] = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "9p", "glusterfs", "lustre",
                                       "afs", "sshfs"};
  if (strncmp(type, "fuse", 4) == 0 || (dev[0] == '/' && dev[1] == '/')) return true;   /* //server/share */
  for (size_t i = 0; i < FL_ARRAY_LEN(REMOTE); i++)
    if (strcmp(type, REMOTE[i]) == 0) return true;
  return false;
}

/* Real filesystems: block devices, and the overlay root of a container; never remote ones. */
static void sample_mounts(void) {
  res.n_mounts = 0;
  FILE *f = fopen("/proc/self/mounts", "re");
  char dev[256], dir[256], type[64];
  while (f && res.n_mounts < MAX_ROWS && fscanf(f, "%255s %255s %63s %*[^\n]", dev, dir, type) == 3) {
    struct statvfs vfs;
    bool real = (dev[0] == '/' || strcmp(type, "overlay") == 0) && !remote_fs(dev, type);
    bool seen = false;
    for (size_t i = 0; i < res.n_mounts; i++) seen |= strcmp(res.mounts[i].name, dir) == 0;
    if (!real || seen || strlen(dir) >= sizeof res.mounts[0].name || statvfs(dir, &vfs) != 0) continue;
    mount_t *m = &res.mounts[res.n_mounts++];
    snprintf(m->name, sizeof m->name, "%s", dir);
    snprintf(m->fstype, sizeof m->fstype, "%.23s", type);
    m->size = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    m->free = (uint64_t)vfs.f_bfree * vfs.f_frsize;
    m->avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
  }
  if (f) fclose(f);
}

/* /proc/diskstats: whole disks and partitions, sectors of 512 bytes; loop and ram devices skipped. */
static void sample_disks(void) {
  res.n_disks = 0;
  FILE *f = fopen("/proc/diskstats", "re");
  char name[64];
  unsigned long long rd_sectors, wr_sectors;
  while (f && res.n_disks < MAX_ROWS &&
         fscanf(f, "%*u %*u %63s %*u %*u %llu %*u %*u %*u %llu %*[^\n]", name, &rd_sectors, &wr_sectors) == 3) {
    if (strncmp(name, "loop", 4) == 0 || strncmp(name, "ram", 3) == 0 || strlen(name) >= sizeof res.disks[0].name) continue;
    io_t *d = &res.disks[res.n_disks++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->read = rd_sectors * 512;
    d->write = wr_sectors * 512;
  }
  if (f) fclose(f);
}

/* /proc/net/dev: "  eth0: rx_bytes packets errs drop fifo frame compressed multicast tx_bytes ..." */
static void sample_nets(void) {
  res.n_nets = 0;
  if (slurp("/proc/net/dev", scratch, sizeof scratch) <= 0) return;
  for (char *line = strchr(scratch, '\n'); line && res.n_nets < MAX_ROWS; line = strchr(line + 1, '\n')) {
    char *colon = strchr(line + 1, ':'), *nl = strchr(line + 1, '\n');
    if (!colon || (nl && colon > nl)) continue;
    char *name = line + 1;
    while (*name == ' ') name++;
    if ((size_t)(colon - name) >= sizeof res.nets[0].name) continue;
    io_t *n = &res.nets[res.n_nets++];
    snprintf(n->name, sizeof n->name, "%.*s", (int)(colon - name), name);
    char *p = colon + 1;
    uint64_t v[9];
    for (int i = 0; i < 9; i++) v[i] = strtoull(p, &p, 10);
    n->read = v[0];
    n->write = v[8];
  }
}

/* ---- processes ---- */

static bool cmdline_of(pid_t pid, char *out, size_t cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  ssize_t n = slurp(path, out, cap);
  if (n <= 0) return false;
  for (ssize_t i = 0; i < n; i++)
    if (out[i] == '\0') out[i] = ' ';
  while (n > 0 && out[n - 1] == ' ') out[--n] = '\0';
  return true;
}

static pid_t pid_from_file(const char *path) {
  char buf[32];
  long pid = slurp(path, buf, sizeof buf) > 0 ? strtol(buf, NULL, 10) : 0;
  return pid > 0 && pid < INT32_MAX ? (pid_t)pid : 0;
}

/* The lowest pid (other than ours) whose command line matches. */
static pid_t pid_by_cmdline(const regex_t *re) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  pid_t best = 0, self = getpid();
  char cmd[4096];
  while (d && (e = readdir(d))) {
    if (!isdigit((unsigned char)e->d_name[0])) continue;
    pid_t pid = (pid_t)atoi(e->d_name);
    if (pid == self || (best && pid > best)) continue;
    if (cmdline_of(pid, cmd, sizeof cmd) && regexec(re, cmd, 0, NULL, 0) == 0) best = pid;
  }
  if (d) closedir(d);
  return best;
}

static uint64_t count_fds(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  uint64_t n = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) n += e->d_name[0] != '.';
  if (d) closedir(d);
  return n;
}

static void sample_process(const fl_process_conf_t *pc, proc_t *p, uint64_t now_ms, double uptime_s) {
  char path[64], cmd[4096];
  pid_t pid = pc->pid_file ? pid_from_file(pc->pid_file) : p->pid;
  if (!pc->pid_file && (!pid || !cmdline_of(pid, cmd, sizeof cmd) || regexec(&p->re, cmd, 0, NULL, 0) != 0))
    pid = p->re_ok ? pid_by_cmdline(&p->re) : 0;     /* the one we had is gone (or never was) */
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  fl_procstat_t st;
  p->running = pid > 0 && slurp(path, scratch, sizeof scratch) > 0 && fl_parse_procstat(scratch, &st) == 0 && st.state != 'Z';
  if (!p->running) {
    p->pid = 0;
    return;
  }
  uint64_t jiffies = st.utime + st.stime;
  /* a share needs the same process (pid and start time: pids are reused) at both samples */
  bool same = p->pid == pid && p->st.starttime == st.starttime && p->prev_ms && now_ms > p->prev_ms;
  p->cpu_ratio = same ? (double)(jiffies - p->prev_jiffies) / (double)res.hz / ((double)(now_ms - p->prev_ms) / 1000) : 0;
  p->pid = pid, p->st = st, p->prev_jiffies = jiffies, p->prev_ms = now_ms;
  p->uptime_s = uptime_s - (double)st.starttime / (double)res.hz;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  p->rss = slurp(path, scratch, sizeof scratch) > 0 ? kb_field(scratch, "VmRSS") : 0;
  p->fds = count_fds(pid);
  snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
  if (slurp(path, scratch, sizeof scratch) <= 0 || fl_parse_procio(scratch, &p->read_bytes, &p->write_bytes) != 0)
    p->read_bytes = p->write_bytes = 0;
}

static void sample(uint64_t now_ms) {
  sample_cpu_and_memory();
  sample_mounts();
  sample_disks();
  sample_nets();
  double uptime_s = 0;
  if (slurp("/proc/uptime", scratch, sizeof scratch) > 0) uptime_s = strtod(scratch, NULL);
  res.n_gpus = fl_gpu_sample(res.gpus, res.gpu_procs, &res.n_gpu_procs);
  for (size_t i = 0; i < res.n_procs; i++) {
    proc_t *p = &res.procs[i];
    sample_process(&res.conf->processes[i], p, now_ms, uptime_s);
    p->gpu_bytes = 0;
    for (unsigned g = 0; p->running && g < res.n_gpu_procs; g++)
      if (res.gpu_procs[g].pid == (unsigned)p->pid) p->gpu_bytes += res.gpu_procs[g].used_bytes;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  res.unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  res.sampled = true;
}

/* ---- control ---- */

static void free_procs(void) {
  for (size_t i = 0; i < res.n_procs; i++)
    if (res.procs[i].re_ok) regfree(&res.procs[i].re);
  free(res.procs);
  res.procs = NULL;
  res.n_procs = 0;
}

void fl_resources_configure(const fl_conf_t *c) {
  proc_t *procs = calloc(c->n_processes ? c->n_processes : 1, sizeof *procs);
  if (!procs) return;                  /* out of memory: the old settings stay */
  for (size_t i = 0; i < c->n_processes; i++) {
    const fl_process_conf_t *pc = &c->processes[i];
    procs[i].re_ok = pc->cmdline && regcomp(&procs[i].re, pc->cmdline, REG_EXTENDED | REG_NOSUB) == 0;
    for (size_t j = 0; res.conf && j < res.n_procs; j++)   /* keep all we knew of the same name */
      if (strcmp(res.conf->processes[j].name, pc->name) == 0) {
        regex_t re = procs[i].re;
        bool re_ok = procs[i].re_ok;
        procs[i] = res.procs[j];
        procs[i].re = re, procs[i].re_ok = re_ok;
      }
  }
  free_procs();
  res.procs = procs;
  res.n_procs = c->n_processes;
  fl_conf_ref((fl_conf_t *)c);
  fl_conf_unref(res.conf);
  res.conf = (fl_conf_t *)c;
  res.hz = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
  if (!res.gpu_tried) {                /* once: the library does not come and go */
    char err[300];
    res.gpu_tried = true;
    if (fl_gpu_open(c->nvml_library, err, sizeof err) != 0) fl_log("no GPU monitoring: %s", err);
  }
  /* The first sample now; a reload keeps the schedule (a sample right after the last one would
   * make every CPU share a ratio over milliseconds), shortened to the new interval if it is less. */
  uint64_t now = fl_now_ms();
  if (!res.sampled) fl_resources_tick(now);
  else res.next_ms = FL_MIN(res.next_ms, now + c->resources_interval_ms);
}

void fl_resources_tick(uint64_t now_ms) {
  if (!res.conf || now_ms < res.next_ms) return;
  sample(now_ms);
  res.next_ms = now_ms + res.conf->resources_interval_ms;
}

void fl_resources_shutdown(void) {
  free_procs();
  fl_gpu_close();
  res.gpu_tried = false;
  fl_conf_unref(res.conf);
  res.conf = NULL;
}

/* ---- reading the sample ---- */

static double cpu_ratio(unsigned row) {
  uint64_t busy = res.cpu.busy[row] - res.cpu_prev.busy[row], total = res.cpu.total[row] - res.cpu_prev.total[row];
  return total && res.cpu.total[row] >= res.cpu_prev.total[row] ? (double)busy / (double)total : 0;
}

bool fl_resources_variant(const char *route, int variant, double *rss_bytes, double *cpu) {
  bool any = false;
  *rss_bytes = *cpu = 0;
  for (size_t i = 0; res.conf && i < res.n_procs; i++) {
    const fl_process_conf_t *pc = &res.conf->processes[i];
    if (pc->variant != variant || (pc->route && strcmp(pc->route, route) != 0) || !res.procs[i].running) continue;
    *rss_bytes += (double)res.procs[i].rss;
    *cpu += res.procs[i].cpu_ratio;
    any = true;
  }
  return any;
}

/* ---- exposition ---- */

static void proc_labels(size_t i, char *out, size_t cap) {
  const fl_process_conf_t *pc = &res.conf->processes[i];
  char name[160], route[160];
  fl_metrics_escape(name, sizeof name, pc->name);
  fl_metrics_escape(route, sizeof route, pc->route ? pc->route : "");
  snprintf(out, cap, "process=\"%s\",route=\"%s\",variant=\"%s\"", name, route,
           pc->variant >= 0 ? fl_variant_name((fl_variant_id_t)pc->variant) : "");
}

static void expo_host(fl_buf_t *b) {
  fl_metrics_family(b, "fledge_host_cpu_usage_ratio", "gauge", "Share of CPU time busy between the last two samples.");
  fl_buf_printf(b, "fledge_host_cpu_usage_ratio{cpu=\"all\"} %.6f\n", cpu_ratio(0));
  for (unsigned c = 1; c <= res.cpu.n; c++) fl_buf_printf(b, "fledge_host_cpu_usage_ratio{cpu=\"%u\"} %.6f\n", c - 1, cpu_ratio(c));
  fl_metrics_family(b, "fledge_host_load", "gauge", "Load average.");
  static const char *const periods[] = {"1m", "5m", "15m"};
  for (int i = 0; i < 3; i++) fl_buf_printf(b, "fledge_host_load{period=\"%s\"} %.2f\n", periods[i], res.load[i]);
  fl_metrics_family(b, "fledge_host_memory_bytes", "gauge", "Memory (/proc/meminfo).");
  const struct { const char *kind; uint64_t v; } mem[] = {
      {"total", res.mem.total}, {"available", res.mem.available}, {"free", res.mem.free},
      {"buffers", res.mem.buffers}, {"cached", res.mem.cached}};
  for (size_t i = 0; i < FL_ARRAY_LEN(mem); i++)
    fl_buf_printf(b, "fledge_host_memory_bytes{kind=\"%s\"} %" PRIu64 "\n", mem[i].kind, mem[i].v);
  fl_metrics_family(b, "fledge_host_swap_bytes", "gauge", "Swap (/proc/meminfo).");
  fl_buf_printf(b, "fledge_host_swap_bytes{kind=\"total\"} %" PRIu64 "\nfledge_host_swap_bytes{kind=\"free\"} %" PRIu64 "\n",
                res.mem.swap_total, res.mem.swap_free);
  fl_metrics_family(b, "fledge_host_filesystem_bytes", "gauge", "Size, free and available space per mount.");
  for (size_t i = 0; i < res.n_mounts; i++) {
    char mount[200];
    fl_metrics_escape(mount, sizeof mount, res.mounts[i].name);
    const mount_t *m = &res.mounts[i];
    fl_buf_printf(b, "fledge_host_filesystem_bytes{mount=\"%s\",fstype=\"%s\",kind=\"size\"} %" PRIu64 "\n"
                     "fledge_host_filesystem_bytes{mount=\"%s\",fstype=\"%s\",kind=\"free\"} %" PRIu64 "\n"
                     "fledge_host_filesystem_bytes{mount=\"%s\",fstype=\"%s\",kind=\"available\"} %" PRIu64 "\n",
                  mount, m->fstype, m->size, mount, m->fstype, m->free, mount, m->fstype, m->avail);
  }
  fl_metrics_family(b, "fledge_host_disk_io_bytes_total", "counter", "Bytes read and written per block device.");
  for (size_t i = 0; i < res.n_disks; i++)
    fl_buf_printf(b, "fledge_host_disk_io_bytes_total{device=\"%s\",direction=\"read\"} %" PRIu64 "\n"
                     "fledge_host_disk_io_bytes_total{device=\"%s\",direction=\"write\"} %" PRIu64 "\n",
                  res.disks[i].name, res.disks[i].read, res.disks[i].name, res.disks[i].write);
  fl_metrics_family(b, "fledge_host_network_bytes_total", "counter", "Bytes received and sent per interface.");
  for (size_t i = 0; i < res.n_nets; i++)
    fl_buf_printf(b, "fledge_host_network_bytes_total{interface=\"%s\",direction=\"receive\"} %" PRIu64 "\n"
                     "fledge_host_network_bytes_total{interface=\"%s\",direction=\"transmit\"} %" PRIu64 "\n",
                  res.nets[i].name, res.nets[i].read, res.nets[i].name, res.nets[i].write);
}

static void expo_processes(fl_buf_t *b) {
  static const struct { const char *name, *type, *help; } F[] = {
      {"fledge_process_up", "gauge", "1 while the watched process runs."},
      {"fledge_process_cpu_ratio", "gauge", "CPU time per second between the last two samples (1 = one core)."},
      {"fledge_process_resident_bytes", "gauge", "Resident memory (VmRSS)."},
      {"fledge_process_threads", "gauge", "Threads."},
      {"fledge_process_open_fds", "gauge", "Open file descriptors."},
      {"fledge_process_io_read_bytes_total", "counter", "Bytes read from storage."},
      {"fledge_process_io_write_bytes_total", "counter", "Bytes written to storage."},
      {"fledge_process_uptime_seconds", "gauge", "Time since the process started."},
      {"fledge_process_gpu_memory_bytes", "gauge", "GPU memory the process holds (NVML), all GPUs."},
  };
  char lbl[400];
  for (size_t k = 0; k < FL_ARRAY_LEN(F); k++) {
    fl_metrics_family(b, F[k].name, F[k].type, F[k].help);
    for (size_t i = 0; i < res.n_procs; i++) {
      const proc_t *p = &res.procs[i];
      if (k > 0 && !p->running) continue;
      double v[] = {p->running, p->cpu_ratio, (double)p->rss, (double)p->st.threads, (double)p->fds,
                    (double)p->read_bytes, (double)p->write_bytes, p->uptime_s, (double)p->gpu_bytes};
      if (k == 8 && !fl_gpu_available()) continue;
      proc_labels(i, lbl, sizeof lbl);
      fl_buf_printf(b, "%s{%s} %.17g\n", F[k].name, lbl, v[k]);
    }
  }
}

static void expo_gpus(fl_buf_t *b) {
  fl_metrics_family(b, "fledge_gpu_available", "gauge", "1 when NVML was loaded and GPUs are watched.");
  fl_buf_printf(b, "fledge_gpu_available %d\n", fl_gpu_available());
  static const struct { const char *name, *help; } F[] = {
      {"fledge_gpu_utilization_ratio", "Share of time a kernel ran, over the driver's sample period."},
      {"fledge_gpu_memory_utilization_ratio", "Share of time device memory was read or written."},
      {"fledge_gpu_memory_used_bytes", "Device memory in use."},
      {"fledge_gpu_memory_total_bytes", "Device memory."},
      {"fledge_gpu_temperature_celsius", "Core temperature (where the GPU reports it)."},
      {"fledge_gpu_power_watts", "Power draw (where the GPU reports it)."},
  };
  for (size_t k = 0; k < FL_ARRAY_LEN(F) && res.n_gpus; k++) {
    fl_metrics_family(b, F[k].name, "gauge", F[k].help);
    for (unsigned i = 0; i < res.n_gpus; i++) {
      const fl_gpu_t *g = &res.gpus[i];
      double v[] = {g->util_pct / 100.0, g->mem_util_pct / 100.0, (double)g->mem_used, (double)g->mem_total,
                    g->temperature_c, g->power_w};
      bool known[] = {g->has_util, g->has_util, g->has_memory, g->has_memory, g->has_temperature, g->has_power};
      if (!known[k]) continue;
      char name[200], uuid[200];
      fl_metrics_escape(name, sizeof name, g->name);
      fl_metrics_escape(uuid, sizeof uuid, g->uuid);
      fl_buf_printf(b, "%s{gpu=\"%u\",name=\"%s\",uuid=\"%s\"} %.17g\n", F[k].name, g->index, name, uuid, v[k]);
    }
  }
}

void fl_resources_exposition(fl_buf_t *b, const fl_conf_t *c, void *ctx) {
  if (!res.sampled) return;
  expo_host(b);
  expo_gpus(b);
  expo_processes(b);
}

/* ---- /api/v1/resources ---- */

static json_t *io_json(const io_t *rows, size_t n, const char *a, const char *b) {
  json_t *o = json_object();
  for (size_t i = 0; i < n; i++)
    json_object_set_new(o, rows[i].name, json_pack("{s:I, s:I}", a, (json_int_t)rows[i].read, b, (json_int_t)rows[i].write));
  return o;
}

static json_t *host_json(void) {
  json_t *cores = json_array(), *mounts = json_object();
  for (unsigned c = 1; c <= res.cpu.n; c++) json_array_append_new(cores, json_real(cpu_ratio(c)));
  for (size_t i = 0; i < res.n_mounts; i++)
    json_object_set_new(mounts, res.mounts[i].name,
                        json_pack("{s:s, s:I, s:I, s:I}", "fstype", res.mounts[i].fstype, "size", (json_int_t)res.mounts[i].size,
                                  "free", (json_int_t)res.mounts[i].free, "available", (json_int_t)res.mounts[i].avail));
  const fl_meminfo_t *m = &res.mem;
  return json_pack("{s:{s:f, s:o}, s:[f,f,f], s:{s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I}, s:o, s:o, s:o}",
                   "cpu", "usage", cpu_ratio(0), "cores", cores, "load", res.load[0], res.load[1], res.load[2],
                   "memory", "total", (json_int_t)m->total, "available", (json_int_t)m->available, "free",
                   (json_int_t)m->free, "buffers", (json_int_t)m->buffers, "cached", (json_int_t)m->cached, "swap",
                   "total", (json_int_t)m->swap_total, "free", (json_int_t)m->swap_free, "filesystems", mounts,
                   "disks", io_json(res.disks, res.n_disks, "read_bytes", "write_bytes"), "network",
                   io_json(res.nets, res.n_nets, "receive_bytes", "transmit_bytes"));
}

static json_t *process_json(size_t i) {
  const fl_process_conf_t *pc = &res.conf->processes[i];
  const proc_t *p = &res.procs[i];
  json_t *o = json_pack("{s:s, s:o, s:o, s:b}", "name", pc->name, "route", pc->route ? json_string(pc->route) : json_null(),
                        "variant", pc->variant >= 0 ? json_string(fl_variant_name((fl_variant_id_t)pc->variant)) : json_null(),
                        "running", p->running);
  if (p->running && fl_gpu_available()) json_object_set_new(o, "gpu_memory_bytes", json_integer((json_int_t)p->gpu_bytes));
  if (p->running)
    json_object_update_new(o, json_pack("{s:i, s:f, s:I, s:I, s:I, s:I, s:I, s:f}", "pid", (int)p->pid, "cpu_ratio", p->cpu_ratio,
                                        "resident_bytes", (json_int_t)p->rss, "threads", (json_int_t)p->st.threads,
                                        "open_fds", (json_int_t)p->fds, "io_read_bytes", (json_int_t)p->read_bytes,
                                        "io_write_bytes", (json_int_t)p->write_bytes, "uptime_seconds", p->uptime_s));
  return o;
}

static json_t *gpus_json(void) {
  json_t *a = json_array();
  for (unsigned i = 0; i < res.n_gpus; i++) {
    const fl_gpu_t *g = &res.gpus[i];
    json_t *o = json_pack("{s:i, s:s, s:s}", "index", (int)g->index, "name", g->name, "uuid", g->uuid);
    if (g->has_util) {
      json_object_set_new(o, "utilization", json_real(g->util_pct / 100.0));
      json_object_set_new(o, "memory_utilization", json_real(g->mem_util_pct / 100.0));
    }
    if (g->has_memory) {
      json_object_set_new(o, "memory_used_bytes", json_integer((json_int_t)g->mem_used));
      json_object_set_new(o, "memory_total_bytes", json_integer((json_int_t)g->mem_total));
    }
    if (g->has_temperature) json_object_set_new(o, "temperature_celsius", json_integer(g->temperature_c));
    if (g->has_power) json_object_set_new(o, "power_watts", json_real(g->power_w));
    json_array_append_new(a, o);
  }
  return a;
}

json_t *fl_resources_json(void) {
  json_t *procs = json_array();
  for (size_t i = 0; res.conf && i < res.n_procs; i++) json_array_append_new(procs, process_json(i));
  return json_pack("{s:I, s:o, s:b, s:o, s:o, s:o}", "sampled_unix_ms", (json_int_t)res.unix_ms, "host",
                   res.sampled ? host_json() : json_object(), "gpu_available", fl_gpu_available(), "gpus", gpus_json(),
                   "processes", procs, "backend_metrics", fl_scrape_json());
}
