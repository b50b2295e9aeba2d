/* fake_nvml.c — a stand-in libnvidia-ml.so for tests, built as a shared object: the NVML
 * functions fledge calls, with the signatures NVML documents, reporting two GPUs whose numbers the
 * tests know. FAKE_NVML_PIDS="PID:BYTES,..." lists the compute processes of GPU 0 (up to 300),
 * FAKE_NVML_PIDS1 those of GPU 1. FAKE_NVML_MEMORY_USED_RATIO=F (0..1) makes every GPU's memory that
 * share used (the driver's reserve within it) instead of 1 GiB per GPU index: a GPU nearly full. */
#include <stdio.h>
#include <stdlib.h>

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st { unsigned index; } *nvmlDevice_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
#define nvmlMemory_v2 ((unsigned int)(sizeof(nvmlMemory_v2_t) | 2u << 24))
#define RESERVED (512ull << 20)                 /* what the driver keeps: in v1's used, apart in v2 */
typedef struct {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

enum { NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2, NVML_ERROR_NOT_SUPPORTED = 3,
       NVML_ERROR_INSUFFICIENT_SIZE = 7, NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25 };

static int initialised;
static struct nvmlDevice_st devices[2] = {{0}, {1}};

nvmlReturn_t nvmlInit_v2(void) {
  initialised++;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
  initialised--;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
  if (!initialised) return NVML_ERROR_UNINITIALIZED;
  *count = 2;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
  if (index >= 2) return NVML_ERROR_INVALID_ARGUMENT;
  *device = &devices[index];
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
  snprintf(name, length, "Fake GPU %u", device->index);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
  snprintf(uuid, length, "GPU-fake-%u", device->index);
  return NVML_SUCCESS;
}

/* GPU 1 runs in MIG mode, where NVML has no utilisation. */
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
  if (device->index == 1) return NVML_ERROR_NOT_SUPPORTED;
  utilization->gpu = 37 + device->index;
  utilization->memory = 12;
  return NVML_SUCCESS;
}

/* What a GPU's memory holds besides the reserve: FAKE_NVML_MEMORY_USED_RATIO of it all, else
 * 1 GiB per index (GPU 0 has 1 GiB, GPU 1 2 GiB). */
static unsigned long long used_bytes(nvmlDevice_t device, unsigned long long total) {
  const char *ratio = getenv("FAKE_NVML_MEMORY_USED_RATIO");
  if (!ratio) return (device->index + 1ull) << 30;
  unsigned long long used = (unsigned long long)(strtod(ratio, NULL) * (double)total);
  return used > RESERVED ? used - RESERVED : 0;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
  memory->total = 80ull << 30;
  memory->used = used_bytes(device, memory->total) + RESERVED;
  memory->free = memory->total - memory->used;
  return NVML_SUCCESS;
}

/* FAKE_NVML_OLD_DRIVER set: a driver before R510, which has no _v2. */
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
  if (getenv("FAKE_NVML_OLD_DRIVER")) return NVML_ERROR_NOT_SUPPORTED;
  if (memory->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  memory->total = 80ull << 30;
  memory->reserved = RESERVED;
  memory->used = used_bytes(device, memory->total);
  memory->free = memory->total - memory->used - memory->reserved;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensorType, unsigned int *temp) {
  if (device->index == 1 || sensorType != 0) return NVML_ERROR_NOT_SUPPORTED;
  *temp = 55;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
  *power = 123456;                      /* milliwatts */
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *infoCount,
                                                     nvmlProcessInfo_t *infos) {
  static nvmlProcessInfo_t found[300];
  unsigned n = 0;
  const char *spec = getenv(device->index == 0 ? "FAKE_NVML_PIDS" : "FAKE_NVML_PIDS1");
  for (const char *p = spec; p && *p && n < 300;) {
    char *end;
    found[n].pid = (unsigned)strtoul(p, &end, 10);
    found[n].usedGpuMemory = *end == ':' ? strtoull(end + 1, &end, 10) : 0;
    found[n].gpuInstanceId = found[n].computeInstanceId = 0xFFFFFFFF;
    n++;
    p = *end == ',' ? end + 1 : "";
  }
  if (*infoCount < n) {
    *infoCount = n;
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  for (unsigned i = 0; i < n; i++) infos[i] = found[i];
  *infoCount = n;
  return NVML_SUCCESS;
}
