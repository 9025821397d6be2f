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
// Our own kernels (mx::fast::cuda_kernel, which MLX compiles in every process and never caches) go to
// the same leaf through cachedCudaKernel, below, and native/cuda_kernel_store.h.
#pragma once

#include <mlx/mlx.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "cuda_kernel_store.h"
#include "engine.h"

namespace mlxrerank {

namespace mx = mlx::core;

// A path component from a version or architecture string: no separators, no dot-dot.
inline std::string kernelCachePathPart(std::string s) {
  for (char& c : s)
    if (c == '/' || c == '\\' || c == '\0') c = '_';
  return s == "." || s == ".." || s.empty() ? "_" : s;
}

// The process-wide decision (configureKernelCache) and our kernels' counters (cachedCudaKernel).
struct KernelCacheState {
  std::mutex mutex;
  bool decided = false;
  std::string inForce;  // the folder MLX reads its JIT cache from, when we chose it ("" = not ours)
};

inline KernelCacheState& kernelCacheState() {
  static KernelCacheState* state = new KernelCacheState;  // leaked: used until the process exits
  return *state;
}

// Sets MLX_PTX_CACHE_DIR to <base>/<mlx version>-<architecture> (base: options.kernelCacheDir; none
// when the user set MLX_PTX_CACHE_DIR). Process-wide and decided once, by the first mlx engine not pinned
// to the CPU: MLX reads the variable once, at its first CUDA kernel compile, so later calls (another
// base, or none) change nothing. Leaves MLX's default when base is empty, there is no CUDA GPU, or the
// leaf cannot be made a private folder of this user. Returns the folder it set ("" = none). Like the
// engines, it reads no environment variable: src/kernel-cache.ts passes no base when MLX_PTX_CACHE_DIR
// is set.
inline std::string configureKernelCache(const EngineOptions& options) {
  if (options.device == "cpu") return "";  // no CUDA kernels: leave the decision to a GPU engine
  const std::string& base = options.kernelCacheDir;
  KernelCacheState& state = kernelCacheState();
  std::lock_guard<std::mutex> lock(state.mutex);
  std::string& inForce = state.inForce;
  if (state.decided) return inForce;
  state.decided = true;
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
  // overwrite = 1: MLX must read the folder cachedCudaKernel stores its modules in. A user's own
  // MLX_PTX_CACHE_DIR still wins: src/kernel-cache.ts passes no base then, so this line is not reached.
  if (setenv("MLX_PTX_CACHE_DIR", leaf.c_str(), 1) != 0) return inForce;
  return inForce = leaf;
}

// The folder configureKernelCache chose ("" when none: no engine yet, or MLX's own setting).
inline std::string kernelCacheFolder() {
  KernelCacheState& state = kernelCacheState();
  std::lock_guard<std::mutex> lock(state.mutex);
  return state.inForce;
}

// ---------------------------------------------------------------------------------------------------
// Our custom kernels, compiled once and then loaded from the cache folder (cuda_kernel_store.h says why
// and how). Chosen over compiling them with nvcc at addon build time because a kernel's template
// arguments (head size, heads, window, dtype) come from the model: only at run time is the instance
// known. cachedCudaKernel is a drop-in for mx::fast::cuda_kernel (same arguments, same callable):
// every custom kernel switches with a one-line change. It falls back to cuda_kernel (today's path:
// NVRTC through MLX in every process) when there is no cache folder of ours, no NVRTC library, the body
// uses what our wrapper does not provide (an input's strides or ndim), a dtype it cannot name, or the
// compile fails; `verbose` takes that path too (MLX prints the source it compiles). The cubin must be in
// the folder when MLX first evaluates the kernel, just after resolve() checked it: only this user can
// remove it (the folder is private); removed in that window, MLX takes the stand-in text for an image
// and that forward fails, and the next call stores the file again (resolve() keeps the cubin).

struct KernelCacheStats {
  int64_t compiled = 0, fromDisk = 0;  // kernel instances compiled by us / found in the folder
  int64_t failed = 0;                  // instances that fell back to cuda_kernel (compile or store failed)
  double compileMs = 0;
};

inline KernelCacheStats& kernelCacheTotals() {
  static KernelCacheStats* totals = new KernelCacheStats;  // under kernelCacheState().mutex
  return *totals;
}

// Process-wide totals so far (engines diff them around their warm-up).
inline KernelCacheStats kernelCacheStats() {
  std::lock_guard<std::mutex> lock(kernelCacheState().mutex);
  return kernelCacheTotals();
}

// The CUDA spelling of an MLX dtype in a kernel signature; "" for one we do not map (64-bit integers:
// kernelSource declares no 64-bit types, whose spelling differs between ABIs).
inline std::string cudaTypeName(mx::Dtype t) {
  if (t == mx::float32) return "float";
  if (t == mx::float16) return "__half";
  if (t == mx::bfloat16) return "__nv_bfloat16";
  if (t == mx::int32) return "int32_t";
  if (t == mx::uint32) return "uint32_t";
  if (t == mx::int16) return "int16_t";
  if (t == mx::uint16) return "uint16_t";
  if (t == mx::int8) return "int8_t";
  if (t == mx::uint8) return "uint8_t";
  if (t == mx::bool_) return "bool";
  return "";
}

// The running GPU's architecture as NVRTC names it (MLX's own choice: sm_XY, with "a" from 9.0 on).
inline std::string nvrtcArch() {
  const auto& info = mx::device_info(mx::Device::gpu);
  auto get = [&](const char* key) -> int {
    auto it = info.find(key);
    return it != info.end() && std::holds_alternative<size_t>(it->second)
               ? static_cast<int>(std::get<size_t>(it->second))
               : -1;
  };
  const int major = get("compute_capability_major"), minor = get("compute_capability_minor");
  if (major < 0 || minor < 0) return "";
  return "sm_" + std::to_string(major) + std::to_string(minor) + (major >= 9 ? "a" : "");
}

inline mx::fast::CustomKernelFunction cachedCudaKernel(
    const std::string& name, const std::vector<std::string>& inputNames,
    const std::vector<std::string>& outputNames, const std::string& source, const std::string& header = "",
    bool ensureRowContiguous = true, int sharedMemory = 0) {
  mx::fast::CustomKernelFunction plain =
      mx::fast::cuda_kernel(name, inputNames, outputNames, source, header, ensureRowContiguous, sharedMemory);
  // Per instance (template arguments, input dtypes and ranks, output dtypes): the module's stand-in
  // source for precompiled_cuda_kernel, or nullopt = take `plain`.
  struct Instance {
    std::string stand, module, cubin;  // the cubin too, to store it again should the file go missing
  };
  struct Instances {
    std::mutex mutex;
    std::map<std::string, std::optional<Instance>> known;
  };
  auto instances = std::make_shared<Instances>();
  const std::string symbol = "mlx_rerank_" + name;
  bool shapeOnly = true;  // the body reads no strides / ndim of an input (our wrapper passes shapes only)
  std::vector<bool> usesShape;
  for (const auto& n : inputNames) {
    usesShape.push_back(source.find(n + "_shape") != std::string::npos);
    if (source.find(n + "_strides") != std::string::npos || source.find(n + "_ndim") != std::string::npos)
      shapeOnly = false;
  }

  // The stand-in source of this instance, compiling and storing it first when needed; nullopt: fall back.
  auto resolve = [=](const std::vector<mx::array>& inputs, const std::vector<mx::Dtype>& outputDtypes,
                     const std::vector<std::pair<std::string, mx::fast::TemplateArg>>& targs)
      -> std::optional<std::string> {
    if (!shapeOnly || inputs.size() != inputNames.size() || outputDtypes.size() != outputNames.size())
      return std::nullopt;
    std::vector<KernelParam> params;
    std::vector<std::pair<std::string, int>> shapes;
    std::vector<std::string> constants;
    std::string key;
    for (size_t i = 0; i < inputs.size(); ++i) {
      params.push_back({cudaTypeName(inputs[i].dtype()), inputNames[i], true, true});
      key += params.back().type + ":" + std::to_string(inputs[i].ndim()) + ",";
    }
    for (size_t i = 0; i < outputDtypes.size(); ++i) {
      params.push_back({cudaTypeName(outputDtypes[i]), outputNames[i], true, false});
      key += params.back().type + ",";
    }
    for (const auto& p : params)
      if (p.type.empty()) return std::nullopt;
    // precompiled_cuda_kernel passes inputs, outputs, then the scalars: the shapes go last.
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!usesShape[i]) continue;
      shapes.emplace_back(inputNames[i], static_cast<int>(inputs[i].ndim()));
      for (int d = 0; d < static_cast<int>(inputs[i].ndim()); ++d)
        params.push_back({"int", inputNames[i] + "_shape_" + std::to_string(d), false, true});
    }
    for (const auto& [n, arg] : targs) {
      std::string c;
      if (std::holds_alternative<int>(arg))
        c = "constexpr int " + n + " = " + std::to_string(std::get<int>(arg)) + ";";
      else if (std::holds_alternative<bool>(arg))
        c = "constexpr bool " + n + " = " + (std::get<bool>(arg) ? "true;" : "false;");
      else if (auto t = cudaTypeName(std::get<mx::Dtype>(arg)); !t.empty())
        c = "using " + n + " = " + t + ";";
      else
        return std::nullopt;
      constants.push_back(c);
      key += c;
    }
    const std::string dir = kernelCacheFolder();
    std::lock_guard<std::mutex> lock(instances->mutex);
    if (auto it = instances->known.find(key); it != instances->known.end()) {
      if (!it->second) return std::nullopt;
      // MLX reads the file the first time it evaluates the instance (in this process); until then it
      // must be there. A stat a call (a microsecond) puts back a file removed since.
      struct stat st {};
      const Instance& in = *it->second;
      if (lstat((dir + "/" + in.module + ".ptx").c_str(), &st) != 0 &&
          !storeModule(dir, in.module, symbol, in.cubin))
        return std::nullopt;
      return in.stand;
    }
    std::optional<Instance>& slot = instances->known[key];  // nullopt until it works
    Nvrtc* nvrtc = Nvrtc::get();
    const std::string arch = dir.empty() || !nvrtc ? "" : nvrtcArch();
    if (arch.empty()) return std::nullopt;
    const std::string full = kernelSource(symbol, header, source, params, shapes, constants);
    // What precompiled_cuda_kernel is given as the module's "source": MLX names the module after its
    // hash, and finds the cubin stored under that name before it would ever read these words.
    const std::string stand = "mlx-rerank kernel " + symbol + " source " + hex64(fnv1a64(full)) + " bytes " +
                              std::to_string(full.size()) + " arch " + arch + " nvrtc " + nvrtc->version() +
                              " mlx " + mx::version();
    char module[64];
    std::snprintf(module, sizeof module, "_%zx", std::hash<std::string>{}(stand));  // as MLX forms it
    const std::string moduleName = symbol + module;
    KernelCacheStats& totals = kernelCacheTotals();
    std::lock_guard<std::mutex> stats(kernelCacheState().mutex);
    std::string cubin, log;
    if (storedModule(dir, moduleName, symbol, &cubin)) {
      ++totals.fromDisk;
      slot = Instance{stand, moduleName, std::move(cubin)};
      return stand;
    }
    const auto t0 = std::chrono::steady_clock::now();
    if (!nvrtc->compile(full, arch, cubin, log) || !isElf(cubin) ||
        !storeModule(dir, moduleName, symbol, cubin)) {
      ++totals.failed;
      return std::nullopt;
    }
    totals.compileMs +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ++totals.compiled;
    slot = Instance{stand, moduleName, std::move(cubin)};
    return stand;
  };

  return [=](const std::vector<mx::array>& inputs, const std::vector<mx::Shape>& outputShapes,
             const std::vector<mx::Dtype>& outputDtypes, std::tuple<int, int, int> grid,
             std::tuple<int, int, int> threadgroup,
             std::vector<std::pair<std::string, mx::fast::TemplateArg>> templateArgs,
             std::optional<float> initValue, bool verbose, mx::StreamOrDevice s) -> std::vector<mx::array> {
    std::optional<std::string> stand;
    try {
      if (!verbose) stand = resolve(inputs, outputDtypes, templateArgs);
    } catch (const std::exception&) {
      stand.reset();  // e.g. no device properties: today's path, for this call only
    }
    if (!stand)
      return plain(inputs, outputShapes, outputDtypes, grid, threadgroup, std::move(templateArgs), initValue,
                   verbose, s);
    std::vector<mx::fast::ScalarArg> scalars;
    for (size_t i = 0; i < inputs.size(); ++i)
      if (usesShape[i])
        for (int d = 0; d < static_cast<int>(inputs[i].ndim()); ++d) scalars.emplace_back(inputs[i].shape(d));
    return mx::fast::precompiled_cuda_kernel(symbol, *stand, inputs, outputShapes, outputDtypes, scalars,
                                             grid, threadgroup, sharedMemory, initValue, ensureRowContiguous,
                                             s);
  };
}

}  // namespace mlxrerank
