// GPU utilisation read from NVIDIA's management library (NVML), for the bench's time series.
// NVML is loaded at run time (dlopen), never linked: the addon must load on machines without an
// NVIDIA driver, and on macOS and Windows, where this reports "unavailable" with the reason.
#pragma once

#include <cstdint>
#include <string>

namespace mlxrerank {

struct GpuUtilization {
  bool available = false;
  std::string reason;  // why not, when !available
  unsigned index = 0;  // NVML's device index (PCI bus order, not necessarily CUDA's)
  std::string name;    // e.g. "NVIDIA H100 80GB HBM3"
  // NVML's counters: the percentage of its last sample period (1/6 s to 1 s, by device) during which a
  // kernel ran / device memory was read or written. Device-wide: every process's work counts.
  unsigned gpuPct = 0;
  unsigned memoryPct = 0;
  uint64_t memoryUsedBytes = 0;
  uint64_t memoryTotalBytes = 0;
};

// Cheap (reads counters the driver keeps) and thread-safe; never throws. The library is loaded and
// initialised on the first call and stays loaded for the life of the process.
GpuUtilization readGpuUtilization(unsigned index) noexcept;

}  // namespace mlxrerank
