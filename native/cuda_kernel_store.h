// Our CUDA kernels compiled once per user, GPU architecture and source, and loaded from disk by later
// processes: the MLX-free half of the mlx engine's custom-kernel cache (mlx_kernel_cache.h holds the
// MLX half, cachedCudaKernel). Free of MLX so that native/test/kernel_store_check.cpp can test it with
// any NVRTC and no GPU.
//
// Why: mx::fast::cuda_kernel compiles with NVRTC in every process (MLX's custom_kernel.cpp asks
// get_jit_module for no disk cache), 1-3 s of a warm start on an H200. This file
//   - writes the complete CUDA source of one kernel instance (kernelSource: our own wrapper, extern "C",
//     compile-time constants first, the body of mx::fast::cuda_kernel unchanged),
//   - compiles it with NVRTC, found at run time with dlopen (the library MLX's CUDA backend has loaded
//     already; nothing to link, no build-time dependency), to a cubin for the running GPU,
//   - and stores the cubin with MLX's own file layout (<module>.ptx holding the image, <module>.txt the
//     kernel names) in the cache folder MLX reads, so that MLX's JitModule finds it there
//     (read_cached_ptx, which runs before any builder) when precompiled_cuda_kernel names the module.
// The module name is derived from a hash of the complete source, the architecture and the NVRTC and
// MLX versions: any change to the source or to a template argument names another module, so stale code
// is never loaded. Files are written whole (a temporary file, then rename) and the .txt before the .ptx,
// so a reader never sees half a file nor a .ptx without its .txt.
#pragma once

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

namespace mlxrerank {

// FNV-1a, 64 bits: a stable hash (std::hash may change between library versions) for cache keys.
inline uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

inline std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// One kernel parameter: a pointer to `type` (inputs const), or an int scalar.
struct KernelParam {
  std::string type, name;
  bool pointer = true, input = true;
};

// The complete source of one kernel instance, laid out as mx::fast::cuda_kernel lays it out (inputs,
// outputs, then the compile-time constants, then the body) but self-contained: the CUDA 16-bit types
// and the fixed-width integers up to 32 bits (the same types on every ABI, so a redeclaration by NVRTC's
// own headers agrees) instead of MLX's device headers, `extern "C"` so that the symbol is the
// name, and an input's shape (`<name>_shape[i]`, the one piece of MLX's signature our kernels use) as
// int scalars gathered into a local array. `constants` are whole declarations ("constexpr int D = 64;").
inline std::string kernelSource(const std::string& symbol, const std::string& header, const std::string& body,
                                const std::vector<KernelParam>& params,
                                const std::vector<std::pair<std::string, int>>& shapes,
                                const std::vector<std::string>& constants) {
  std::string src =
      "#include <cuda_fp16.h>\n#include <cuda_bf16.h>\n"
      "typedef signed char int8_t; typedef unsigned char uint8_t; typedef short int16_t;\n"
      "typedef unsigned short uint16_t; typedef int int32_t; typedef unsigned int uint32_t;\n";
  src += header;
  src += "\nextern \"C\" __global__ void " + symbol + "(\n";
  for (size_t i = 0; i < params.size(); ++i) {
    const KernelParam& p = params[i];
    src += "    ";
    if (p.pointer)
      src += std::string(p.input ? "const " : "") + p.type + "* " + p.name;
    else
      src += "const int " + p.name;
    src += i + 1 < params.size() ? ",\n" : ") {\n";
  }
  for (const auto& [name, ndim] : shapes) {
    src += "  const int " + name + "_shape[" + std::to_string(ndim) + "] = {";
    for (int d = 0; d < ndim; ++d) src += (d ? ", " : "") + name + "_shape_" + std::to_string(d);
    src += "};\n";
  }
  for (const auto& c : constants) src += "  " + c + "\n";
  src += body;
  src += "\n}\n";
  return src;
}

// NVRTC, loaded at run time. Null when no NVRTC library can be opened (then cuda_kernel compiles as before).
class Nvrtc {
 public:
  static Nvrtc* get() {
    static Nvrtc* nvrtc = [] {
      auto* n = new Nvrtc;  // leaked on purpose, as MLX's own singletons
      if (n->open()) return n;
      delete n;
      return static_cast<Nvrtc*>(nullptr);
    }();
    return nvrtc;
  }

  std::string version() const { return std::to_string(major_) + "." + std::to_string(minor_); }

  // Compiles `source` to a cubin for `arch` ("sm_90a"). False with `log` set on failure.
  bool compile(const std::string& source, const std::string& arch, std::string& cubin, std::string& log) {
    void* prog = nullptr;
    if (create_(&prog, source.c_str(), "mlx_rerank_kernel.cu", 0, nullptr, nullptr) != 0) {
      log = "nvrtcCreateProgram failed";
      return false;
    }
    const std::string archArg = "--gpu-architecture=" + arch;
    std::vector<const char*> args = {archArg.c_str(), "--device-as-default-execution-space", "-std=c++17"};
    for (const auto& inc : includes_) args.push_back(inc.c_str());
    const int rc = compile_(prog, static_cast<int>(args.size()), args.data());
    size_t size = 0;
    if (rc != 0) {
      logSize_(prog, &size);
      log.assign(size, '\0');
      if (size) getLog_(prog, log.data());
    } else if (cubinSize_(prog, &size) == 0 && size > 0) {
      cubin.assign(size, '\0');
      if (getCubin_(prog, cubin.data()) != 0) cubin.clear();
    }
    destroy_(&prog);
    if (rc == 0 && cubin.empty()) log = "nvrtcGetCUBIN failed";
    return rc == 0 && !cubin.empty();
  }

 private:
  bool open() {
    // The library MLX's CUDA backend loaded (RTLD_NOLOAD), else one on the loader's path.
    const char* names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"};
    for (int pass = 0; pass < 2 && !lib_; ++pass)
      for (const char* n : names)
        if ((lib_ = dlopen(n, RTLD_NOW | RTLD_LOCAL | (pass == 0 ? RTLD_NOLOAD : 0))) != nullptr) break;
    if (!lib_) return false;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib_, name));
      return fn != nullptr;
    };
    int (*versionFn)(int*, int*) = nullptr;
    if (!sym(versionFn, "nvrtcVersion") || !sym(create_, "nvrtcCreateProgram") ||
        !sym(compile_, "nvrtcCompileProgram") || !sym(logSize_, "nvrtcGetProgramLogSize") ||
        !sym(getLog_, "nvrtcGetProgramLog") || !sym(cubinSize_, "nvrtcGetCUBINSize") ||
        !sym(getCubin_, "nvrtcGetCUBIN") || !sym(destroy_, "nvrtcDestroyProgram"))
      return false;
    if (versionFn(&major_, &minor_) != 0) return false;
    // cuda_fp16.h and cuda_bf16.h: the toolkit the library belongs to (lib64/ or targets/<t>/lib/ next
    // to include/), else /usr/local/cuda, as MLX's own JIT looks by default.
    Dl_info info{};
    std::vector<std::string> dirs;
    if (dladdr(reinterpret_cast<void*>(create_), &info) && info.dli_fname) {
      std::string dir = info.dli_fname;
      dir = dir.substr(0, dir.rfind('/'));
      dirs.push_back(dir + "/../include");
      dirs.push_back(dir + "/../../include");
    }
    dirs.push_back("/usr/local/cuda/include");
    dirs.push_back("/usr/include");
    for (const auto& d : dirs) {
      struct stat st {};
      if (stat((d + "/cuda_fp16.h").c_str(), &st) == 0) {
        includes_.push_back("--include-path=" + d);
        // CUDA 13 keeps libcu++ (which its headers may include) in include/cccl; MLX adds it too.
        if (stat((d + "/cccl").c_str(), &st) == 0) includes_.push_back("--include-path=" + d + "/cccl");
        break;
      }
    }
    return true;
  }

  void* lib_ = nullptr;
  int major_ = 0, minor_ = 0;
  std::vector<std::string> includes_;
  int (*create_)(void**, const char*, const char*, int, const char* const*, const char* const*) = nullptr;
  int (*compile_)(void*, int, const char* const*) = nullptr;
  int (*logSize_)(void*, size_t*) = nullptr;
  int (*getLog_)(void*, char*) = nullptr;
  int (*cubinSize_)(void*, size_t*) = nullptr;
  int (*getCubin_)(void*, char*) = nullptr;
  int (*destroy_)(void**) = nullptr;
};

// A regular file of this user (not a symlink), read whole. False when absent or unfit.
inline bool readPrivateFile(const std::string& path, std::string& out) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  out.assign(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return got == out.size();
}

// Writes `dir/name` whole: a private temporary file in `dir`, then rename (atomic on one file system).
inline bool writeFileAtomic(const std::string& dir, const std::string& name, const std::string& data) {
  std::string tmp = dir + "/." + name + ".XXXXXX";
  const int fd = mkstemp(tmp.data());  // mode 0600
  if (fd < 0) return false;
  size_t put = 0;
  while (put < data.size()) {
    const ssize_t n = ::write(fd, data.data() + put, data.size() - put);
    if (n <= 0) break;
    put += static_cast<size_t>(n);
  }
  const bool ok =
      ::close(fd) == 0 && put == data.size() && rename(tmp.c_str(), (dir + "/" + name).c_str()) == 0;
  if (!ok) unlink(tmp.c_str());
  return ok;
}

inline bool isElf(const std::string& image) {
  return image.size() > 4 && image.compare(0, 4,
                                           "\x7f"
                                           "ELF") == 0;
}

// MLX's cache entry for `module`: the image (a cubin) in <module>.ptx, "symbol\tsymbol" in <module>.txt
// (extern "C": the lowered name is the name). True when both are there and fit (a cubin, our symbol);
// `image` then holds the cubin.
inline bool storedModule(const std::string& dir, const std::string& module, const std::string& symbol,
                         std::string* image = nullptr) {
  std::string cubin, names;
  const bool ok = readPrivateFile(dir + "/" + module + ".txt", names) &&
                  names == symbol + "\t" + symbol + "\n" &&
                  readPrivateFile(dir + "/" + module + ".ptx", cubin) && isElf(cubin);
  if (ok && image) *image = std::move(cubin);
  return ok;
}

inline bool storeModule(const std::string& dir, const std::string& module, const std::string& symbol,
                        const std::string& cubin) {
  return writeFileAtomic(dir, module + ".txt", symbol + "\t" + symbol + "\n") &&
         writeFileAtomic(dir, module + ".ptx", cubin);
}

}  // namespace mlxrerank
