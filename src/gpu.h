/* gpu.h — NVIDIA GPUs through NVML, loaded at run time with dlopen("libnvidia-ml.so.1"): no build
 * dependency, and a machine without the driver simply has no GPU monitoring. Per GPU its
 * utilisation, memory, temperature and power, and the GPU memory of each process on it.
 * Control thread only (NVML calls may block briefly). */
#ifndef FL_GPU_H
#define FL_GPU_H

#include "common.h"

#define FL_MAX_GPUS 16
#define FL_MAX_GPU_PROCS 256

typedef struct fl_gpu {
  unsigned index;
  char name[96], uuid[96];
  unsigned util_pct, mem_util_pct;     /* over the driver's last sample period */
  uint64_t mem_used, mem_total;        /* bytes */
  unsigned temperature_c;
  double power_w;
  bool has_util, has_memory;           /* false where NVML refused (MIG, permissions): left out */
  bool has_temperature, has_power;     /* some GPUs do not report these */
} fl_gpu_t;

typedef struct fl_gpu_proc {
  unsigned gpu, pid;
  uint64_t used_bytes;
} fl_gpu_proc_t;

/* Loads NVML from lib (NULL: "libnvidia-ml.so.1") and initialises it. 0, or FL_ENOENT (no such
 * library, or it lacks a function we need) / FL_EIO (nvmlInit failed) with the reason in err. */
int fl_gpu_open(const char *lib, char *err, size_t err_cap);
bool fl_gpu_available(void);

/* Reads every GPU (up to FL_MAX_GPUS) and its compute processes. Returns the number of GPUs. */
unsigned fl_gpu_sample(fl_gpu_t *gpus, fl_gpu_proc_t *procs, unsigned *n_procs);

void fl_gpu_close(void);

#endif
