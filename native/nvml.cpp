// NVML through dlopen (see nvml.h for why there is no link-time dependency).
#include "nvml.h"

#include <memory>
#include <mutex>
#include <string>

#ifdef __linux__
#include <dlfcn.h>
#endif

namespace mlxrerank {
namespace {

#ifdef __linux__

// The few NVML declarations used here, as the CUDA toolkit's nvml.h has them (the _v2 entry points
// and these layouts have been stable since NVML 5.319), so that building needs no NVIDIA header.
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
constexpr nvmlReturn_t NVML_SUCCESS = 0;
constexpr unsigned int kNameBufferSize = 96;  // NVML_DEVICE_NAME_V2_BUFFER_SIZE
constexpr const char* kLibrary = "libnvidia-ml.so.1";

// The loaded library, or why it could not be used. Written once (std::call_once), then only read.
struct Nvml {
  std::string failure;  // empty when NVML is usable
  unsigned int count = 0;
  const char* (*errorString)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*handleByIndex)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*utilizationRates)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*memoryInfo)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int) = nullptr;

  std::string error(const char* call, nvmlReturn_t r) const {
    const char* text = errorString ? errorString(r) : nullptr;
    return "NVML: " + std::string(call) + " failed: " + (text ? text : "error " + std::to_string(r));
  }
};

template <typename F>
bool resolve(void* lib, const char* symbol, F& out, std::string& failure) {
  out = reinterpret_cast<F>(dlsym(lib, symbol));
  if (!out) failure = std::string(kLibrary) + " has no " + symbol + " (NVIDIA driver too old?)";
  return out != nullptr;
}

void load(Nvml& n) {
  // RTLD_LOCAL keeps NVML's symbols out of the global namespace, where they could clash with another
  // copy that the process (CUDA, MLX) loads. The handle is never closed: NVML stays loaded and
  // initialised for the life of the process, so readings need no locking and no reference counts.
  void* lib = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    n.failure = std::string("NVML could not be loaded (no NVIDIA driver?): ") + (why ? why : kLibrary);
    return;
  }
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*deviceCount)(unsigned int*) = nullptr;
  // nvmlErrorString first: it works before nvmlInit, so that an init failure can be named.
  if (!resolve(lib, "nvmlErrorString", n.errorString, n.failure) ||
      !resolve(lib, "nvmlInit_v2", init, n.failure) ||
      !resolve(lib, "nvmlDeviceGetCount_v2", deviceCount, n.failure) ||
      !resolve(lib, "nvmlDeviceGetHandleByIndex_v2", n.handleByIndex, n.failure) ||
      !resolve(lib, "nvmlDeviceGetUtilizationRates", n.utilizationRates, n.failure) ||
      !resolve(lib, "nvmlDeviceGetMemoryInfo", n.memoryInfo, n.failure) ||
      !resolve(lib, "nvmlDeviceGetName", n.name, n.failure))
    return;
  nvmlReturn_t r = init();
  if (r != NVML_SUCCESS) {
    n.failure = n.error("nvmlInit_v2", r);
    return;
  }
  r = deviceCount(&n.count);
  if (r != NVML_SUCCESS)
    n.failure = n.error("nvmlDeviceGetCount_v2", r);
  else if (n.count == 0)
    n.failure = "NVML sees no NVIDIA GPU";
}

const Nvml& nvml() {
  static std::once_flag once;
  static const Nvml* instance = nullptr;  // never freed, like the library it points into
  std::call_once(once, [] {
    std::unique_ptr<Nvml> n(new Nvml());
    load(*n);
    instance = n.release();
  });
  return *instance;
}

void readDevice(const Nvml& n, GpuUtilization& u) {
  if (!n.failure.empty()) {
    u.reason = n.failure;
    return;
  }
  if (u.index >= n.count) {
    u.reason = "GPU index " + std::to_string(u.index) + " is out of range: NVML sees " +
               std::to_string(n.count) + " GPU(s)";
    return;
  }
  nvmlDevice_t device = nullptr;
  char name[kNameBufferSize] = {};
  nvmlUtilization_t util{};
  nvmlMemory_t memory{};
  // Each call in turn; the first that fails names the reason.
  const char* failed = nullptr;
  nvmlReturn_t r = n.handleByIndex(u.index, &device);
  if (r != NVML_SUCCESS) failed = "nvmlDeviceGetHandleByIndex_v2";
  if (!failed && (r = n.name(device, name, kNameBufferSize)) != NVML_SUCCESS) failed = "nvmlDeviceGetName";
  if (!failed && (r = n.utilizationRates(device, &util)) != NVML_SUCCESS)
    failed = "nvmlDeviceGetUtilizationRates";
  if (!failed && (r = n.memoryInfo(device, &memory)) != NVML_SUCCESS) failed = "nvmlDeviceGetMemoryInfo";
  if (failed) {
    u.reason = n.error(failed, r);
    return;
  }
  name[kNameBufferSize - 1] = '\0';
  u.name = name;
  u.gpuPct = util.gpu;
  u.memoryPct = util.memory;
  u.memoryUsedBytes = memory.used;
  u.memoryTotalBytes = memory.total;
  u.available = true;
}

#endif  // __linux__

}  // namespace

GpuUtilization readGpuUtilization(unsigned index) noexcept {
  GpuUtilization u;
  u.index = index;
  try {
#if defined(__linux__)
    readDevice(nvml(), u);
#elif defined(__APPLE__)
    u.reason = "NVML (NVIDIA's GPU management library) does not exist on macOS";
#else
    u.reason = "NVML is read on Linux only in this build";
#endif
  } catch (...) {
    // Only allocation (or call_once's thread primitives) can fail here; a later call tries again.
    GpuUtilization none;
    none.index = index;
    try {
      none.reason = "NVML could not be read (out of memory)";
    } catch (...) {
    }
    return none;
  }
  return u;
}

}  // namespace mlxrerank
