// Where MLX's CUDA backend keeps the kernels it compiles at run time (NVRTC -> cubin), so that a second
// process loads them from disk instead of compiling them again. Included by engine_mlx.cpp only.
//
// MLX reads MLX_PTX_CACHE_DIR once, at its first JIT-compiled kernel (mlx/backend/cuda/jit_module.cpp),
// and defaults to /tmp/mlx/<version>/ptx: gone after a reboot on many systems, and shared by every user of
// the machine (the first one owns it; and whoever can write there chooses the code the others load). The
// addon points it at a per-user folder instead: src/kernel-cache.ts picks and creates the base folder
// (0700, checked not to be a symlink or someone else's) and passes it as EngineOptions::kernelCacheDir;
// here, before the first mlx engine is built, it gets a leaf per MLX version and GPU architecture (a
// home folder may be shared by machines with different GPUs; a cubin is built for one architecture).
#pragma once

#include <mlx/mlx.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <string>

#include "engine.h"

namespace mlxrerank {

namespace mx = mlx::core;

// A path component from a version or architecture string: no separators, no dot-dot.
inline std::string kernelCachePathPart(std::string s) {
  for (char& c : s)
    if (c == '/' || c == '\\' || c == '\0') c = '_';
  return s == "." || s == ".." || s.empty() ? "_" : s;
}

// Sets MLX_PTX_CACHE_DIR to <base>/<mlx version>-<architecture> (base: options.kernelCacheDir) unless the
// user set it. Process-wide and decided once, by the first mlx engine not pinned to the CPU: MLX reads the
// variable once, at its first CUDA kernel compile, so later calls (another base, or none) change nothing.
// Leaves MLX's default when base is empty, there is no CUDA GPU, or the leaf cannot be made a private
// folder of this user. Returns the folder it set ("" = none). Like the engines, it reads no environment
// variable: src/kernel-cache.ts passes no base when MLX_PTX_CACHE_DIR is set.
inline std::string configureKernelCache(const EngineOptions& options) {
  if (options.device == "cpu") return "";  // no CUDA kernels: leave the decision to a GPU engine
  const std::string& base = options.kernelCacheDir;
  static std::mutex mutex;
  static bool decided = false;
  static std::string inForce;
  std::lock_guard<std::mutex> lock(mutex);
  if (decided) return inForce;
  decided = true;
  if (base.empty() || !mx::cu::is_available()) return inForce;
  std::string arch = "gpu";
  try {
    const auto& info = mx::device_info(mx::Device::gpu);
    if (auto it = info.find("architecture");
        it != info.end() && std::holds_alternative<std::string>(it->second))
      arch = std::get<std::string>(it->second);
  } catch (const std::exception&) {
    return inForce;  // no device properties: leave MLX's default rather than fail the load
  }
  const std::string leaf = base + "/" + kernelCachePathPart(std::string(mx::version()) + "-" + arch);
  if (mkdir(leaf.c_str(), 0700) != 0 && errno != EEXIST) return inForce;
  struct stat st {};
  // lstat: a symlink planted in place of the leaf is refused, not followed.
  if (lstat(leaf.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
      (st.st_mode & 022) != 0)
    return inForce;
  // overwrite = 0: an MLX_PTX_CACHE_DIR the user set stays (src/kernel-cache.ts passes no base then).
  setenv("MLX_PTX_CACHE_DIR", leaf.c_str(), 0);
  return inForce = leaf;
}

}  // namespace mlxrerank
