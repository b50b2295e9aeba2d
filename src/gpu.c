/* gpu.c — the NVML calls fledge makes, declared here from NVML's documented C API (the types
 * below have NVML's layout) and looked up with dlsym, so that fledge builds and runs without the
 * NVIDIA driver. */
#include "gpu.h"

#include <dlfcn.h>
#include <stdio.h>

typedef int nvml_return_t;                       /* nvmlReturn_t: 0 is NVML_SUCCESS */
typedef struct nvml_device *nvml_device_t;       /* nvmlDevice_t: an opaque handle */
typedef struct { unsigned int gpu, memory; } nvml_utilization_t;                      /* nvmlUtilization_t */
typedef struct { unsigned long long total, free, used; } nvml_memory_t;               /* nvmlMemory_t */
typedef struct {                                                                      /* nvmlMemory_v2_t */
  unsigned int version;                          /* nvmlMemory_v2: its size | 2 << 24 */
  unsigned long long total, reserved, free, used;
} nvml_memory_v2_t;
#define NVML_MEMORY_V2 ((unsigned int)(sizeof(nvml_memory_v2_t) | 2u << 24))
typedef struct { unsigned int pid; unsigned long long used; } nvml_process_v1_t;      /* nvmlProcessInfo_v1_t */
typedef struct {                                                                      /* nvmlProcessInfo_v2_t */
  unsigned int pid;
  unsigned long long used;
  unsigned int gpu_instance, compute_instance;
} nvml_process_v2_t;

#define NVML_TEMPERATURE_GPU 0

static struct {
  void *lib;
  bool up;
  nvml_return_t (*init)(void);
  nvml_return_t (*shutdown)(void);
  nvml_return_t (*count)(unsigned int *);
  nvml_return_t (*handle)(unsigned int, nvml_device_t *);
  nvml_return_t (*name)(nvml_device_t, char *, unsigned int);
  nvml_return_t (*uuid)(nvml_device_t, char *, unsigned int);
  nvml_return_t (*utilization)(nvml_device_t, nvml_utilization_t *);
  nvml_return_t (*memory)(nvml_device_t, nvml_memory_t *);
  nvml_return_t (*memory_v2)(nvml_device_t, nvml_memory_v2_t *);   /* R510+: reserved apart, as nvidia-smi */
  nvml_return_t (*temperature)(nvml_device_t, int, unsigned int *);
  nvml_return_t (*power)(nvml_device_t, unsigned int *);           /* milliwatts */
  nvml_return_t (*procs_v2)(nvml_device_t, unsigned int *, nvml_process_v2_t *);
  nvml_return_t (*procs_v1)(nvml_device_t, unsigned int *, nvml_process_v1_t *);
} nv;

/* The first of the names the library has. */
static void *symbol(const char *a, const char *b) {
  void *f = dlsym(nv.lib, a);
  return f || !b ? f : dlsym(nv.lib, b);
}

int fl_gpu_open(const char *lib, char *err, size_t err_cap) {
  if (nv.up) return 0;
  if (!(nv.lib = dlopen(lib ? lib : "libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL))) {
    snprintf(err, err_cap, "%s", dlerror());
    return FL_ENOENT;
  }
  nv.init = symbol("nvmlInit_v2", "nvmlInit");
  nv.shutdown = symbol("nvmlShutdown", NULL);
  nv.count = symbol("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
  nv.handle = symbol("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
  nv.name = symbol("nvmlDeviceGetName", NULL);
  nv.uuid = symbol("nvmlDeviceGetUUID", NULL);
  nv.utilization = symbol("nvmlDeviceGetUtilizationRates", NULL);
  nv.memory = symbol("nvmlDeviceGetMemoryInfo", NULL);
  nv.memory_v2 = symbol("nvmlDeviceGetMemoryInfo_v2", NULL);
  nv.temperature = symbol("nvmlDeviceGetTemperature", NULL);
  nv.power = symbol("nvmlDeviceGetPowerUsage", NULL);
  /* _v2 first: its entries have the one fixed layout above; some drivers' _v3 writes larger ones */
  nv.procs_v2 = symbol("nvmlDeviceGetComputeRunningProcesses_v2", NULL);
  nv.procs_v1 = nv.procs_v2 ? NULL : symbol("nvmlDeviceGetComputeRunningProcesses", NULL);
  if (!nv.init || !nv.shutdown || !nv.count || !nv.handle || !nv.memory || !nv.utilization) {
    snprintf(err, err_cap, "%s lacks the NVML functions fledge needs", lib ? lib : "libnvidia-ml.so.1");
    dlclose(nv.lib);
    nv.lib = NULL;
    return FL_ENOENT;
  }
  nvml_return_t rc = nv.init();
  if (rc != 0) {
    snprintf(err, err_cap, "nvmlInit failed with NVML error %d", rc);
    dlclose(nv.lib);
    nv.lib = NULL;
    return FL_EIO;
  }
  nv.up = true;
  return 0;
}

bool fl_gpu_available(void) { return nv.up; }

/* Appends the compute processes of one GPU to procs (NVML fills nothing when its list is longer
 * than the room given, so the room is always the whole local list). */
static void processes(nvml_device_t d, unsigned gpu, fl_gpu_proc_t *procs, unsigned *n) {
  unsigned int count = FL_MAX_GPU_PROCS;
  if (nv.procs_v2) {
    nvml_process_v2_t info[FL_MAX_GPU_PROCS];
    if (nv.procs_v2(d, &count, info) != 0) return;
    for (unsigned i = 0; i < count && *n < FL_MAX_GPU_PROCS; i++)
      if (info[i].used != ~0ull)                 /* NVML_VALUE_NOT_AVAILABLE (e.g. under MIG) */
        procs[(*n)++] = (fl_gpu_proc_t){.gpu = gpu, .pid = info[i].pid, .used_bytes = info[i].used};
  } else if (nv.procs_v1) {
    nvml_process_v1_t info[FL_MAX_GPU_PROCS];
    if (nv.procs_v1(d, &count, info) != 0) return;
    for (unsigned i = 0; i < count && *n < FL_MAX_GPU_PROCS; i++)
      if (info[i].used != ~0ull) procs[(*n)++] = (fl_gpu_proc_t){.gpu = gpu, .pid = info[i].pid, .used_bytes = info[i].used};
  }
}

/* Memory in use as nvidia-smi shows it: _v2 (used without what the driver reserves) where the
 * driver has it, else the older call. */
static bool memory(nvml_device_t d, uint64_t *used, uint64_t *total) {
  nvml_memory_v2_t m2 = {.version = NVML_MEMORY_V2};
  nvml_memory_t m = {0};
  if (nv.memory_v2 && nv.memory_v2(d, &m2) == 0) {
    *used = m2.used, *total = m2.total;
    return true;
  }
  if (nv.memory(d, &m) != 0) return false;
  *used = m.used, *total = m.total;
  return true;
}

unsigned fl_gpu_sample(fl_gpu_t *gpus, fl_gpu_proc_t *procs, unsigned *n_procs) {
  unsigned int count = 0, n = 0;
  *n_procs = 0;
  if (!nv.up || nv.count(&count) != 0) return 0;
  for (unsigned i = 0; i < count && n < FL_MAX_GPUS; i++) {
    nvml_device_t d;
    nvml_utilization_t u = {0};
    unsigned int temp = 0, mw = 0;
    if (nv.handle(i, &d) != 0) continue;
    fl_gpu_t *g = &gpus[n++];
    memset(g, 0, sizeof *g);
    g->index = i;
    if (nv.name) nv.name(d, g->name, sizeof g->name);
    if (nv.uuid) nv.uuid(d, g->uuid, sizeof g->uuid);
    g->name[sizeof g->name - 1] = g->uuid[sizeof g->uuid - 1] = '\0';
    g->has_util = nv.utilization(d, &u) == 0;     /* not under MIG, for one */
    g->util_pct = u.gpu, g->mem_util_pct = u.memory;
    g->has_memory = memory(d, &g->mem_used, &g->mem_total);
    g->has_temperature = nv.temperature && nv.temperature(d, NVML_TEMPERATURE_GPU, &temp) == 0;
    g->temperature_c = temp;
    g->has_power = nv.power && nv.power(d, &mw) == 0;
    g->power_w = mw / 1000.0;
    processes(d, i, procs, n_procs);
  }
  return n;
}

void fl_gpu_close(void) {
  if (!nv.up) return;
  nv.shutdown();
  dlclose(nv.lib);
  memset(&nv, 0, sizeof nv);
}
