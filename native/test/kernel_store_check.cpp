// Checks native/cuda_kernel_store.h without a GPU or MLX: the very kernel bodies that ship
// (mlx_flash_attention.h, mlx_varlen_attention.h, mlx_fused_kernels.h) compile with NVRTC inside
// kernelSource()'s self-contained wrapper to a cubin that defines the extern "C" symbol, and the stored
// module round-trips while a tampered, foreign or linked file is refused. Run by test/kernel-store.test.ts.
//   kernel_store_check CACHE_DIR     prints "ok ..." lines, or "no nvrtc" (exit 0) when none can be opened
#define MLX_RERANK_FLASH_SOURCE_ONLY
#define MLX_RERANK_FUSED_SOURCE_ONLY
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "../cuda_kernel_store.h"
#include "../mlx_flash_attention.h"
#include "../mlx_fused_kernels.h"
#include "../mlx_varlen_attention.h"

using namespace mlxrerank;

static int failures = 0;
static void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// As cachedCudaKernel lays out our two attention kernels: qkv, offsets, blocks -> out, qkv's shape.
static std::string attentionSource(const std::string& symbol, const char* header, const char* body,
                                   const std::string& type, int d, int window) {
  std::vector<KernelParam> params = {
      {type, "qkv", true, true},  {"int32_t", "offsets", true, true},  {"int32_t", "blocks", true, true},
      {type, "out", true, false}, {"int", "qkv_shape_0", false, true}, {"int", "qkv_shape_1", false, true}};
  return kernelSource(
      symbol, header, body, params, {{"qkv", 2}},
      {"constexpr int D = " + std::to_string(d) + ";", "constexpr int HEADS = 4;",
       "using InT = " + type + ";", "constexpr int WINDOW = " + std::to_string(window) + ";"});
}

// As cachedCudaKernel lays out the fused row kernels (mlx_fused_kernels.h): their inputs, out, the one
// shape the body reads, the template constants (width, type, flags, eps's bits).
static std::string fusedSource(bool embeddings, const std::string& type, int width) {
  std::vector<KernelParam> params;
  const char* floats[] = {"word", "position", "tokenType", "gamma", "beta"};
  const char* rows[] = {"y", "bias", "residual", "gamma", "beta"};
  for (const char* n : embeddings ? floats : rows) params.push_back({type, n, true, true});
  if (embeddings)
    for (const char* n : {"ids", "positions", "types"}) params.push_back({"int32_t", n, true, true});
  params.push_back({type, "out", true, false});
  const std::string shaped = embeddings ? "ids" : "y";
  for (int d = 0; d < (embeddings ? 1 : 2); ++d)
    params.push_back({"int", shaped + "_shape_" + std::to_string(d), false, true});
  std::vector<std::string> constants = {
      std::string("constexpr int ") + (embeddings ? "E" : "H") + " = " + std::to_string(width) + ";",
      "using InT = " + type + ";"};
  if (embeddings)
    constants.insert(constants.end(), {"constexpr bool HAS_POS = true;", "constexpr bool HAS_TYPE = true;"});
  constants.push_back("constexpr int EPS_BITS = 925353388;");  // 1e-12f
  return kernelSource(embeddings ? "mlx_rerank_fused_embeddings" : "mlx_rerank_residual_norm",
                      fusedKernelsHeader(), embeddings ? fusedEmbeddingsSource() : residualNormSource(),
                      params, {{shaped, embeddings ? 1 : 2}}, constants);
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string dir = argv[1];
  Nvrtc* nvrtc = Nvrtc::get();
  if (!nvrtc) {
    std::printf("no nvrtc\n");
    return 0;
  }
  // sm_90a needs NVRTC 12 or later; an older one still proves the source compiles, for sm_90.
  const std::string arch = std::stoi(nvrtc->version()) >= 12 ? "sm_90a" : "sm_90";
  struct Case {
    const char* name;
    const char* header;
    const char* body;
    std::string type;
    int d, window;
  };
  const Case cases[] = {
      {"flash", flashAttentionHeader(), flashAttentionSource(), "__half", 64, 0},
      {"flash", flashAttentionHeader(), flashAttentionSource(), "__nv_bfloat16", 128, 8},
      {"varlen", "", varlenAttentionSource(), "__half", 64, 0},
      {"varlen", "", varlenAttentionSource(), "float", 32, 8},
  };
  std::string firstCubin, firstModule;
  const std::string symbol0 = "mlx_rerank_flash_attention";
  for (const Case& c : cases) {
    const std::string symbol = std::string("mlx_rerank_") + c.name + "_attention";
    const std::string src = attentionSource(symbol, c.header, c.body, c.type, c.d, c.window);
    std::string cubin, log;
    const bool ok = nvrtc->compile(src, arch, cubin, log);
    const std::string what = std::string(c.name) + " " + c.type + " D=" + std::to_string(c.d) +
                             " WINDOW=" + std::to_string(c.window) + " compiles for " + arch;
    check(ok && isElf(cubin) && cubin.find(symbol) != std::string::npos, what);
    if (!ok) std::printf("%s\n", log.c_str());
    if (firstCubin.empty() && ok) {
      firstCubin = cubin;
      firstModule = symbol + "_" + hex64(fnv1a64(src));
    }
  }
  if (firstCubin.empty()) return 1;
  for (const bool emb : {true, false}) {
    for (const char* type : {"__half", "__nv_bfloat16"}) {
      const std::string symbol = emb ? "mlx_rerank_fused_embeddings" : "mlx_rerank_residual_norm";
      std::string cubin, log;
      const bool ok = nvrtc->compile(fusedSource(emb, type, 384), arch, cubin, log);
      check(ok && isElf(cubin) && cubin.find(symbol) != std::string::npos,
            symbol + " " + type + " width 384 compiles for " + arch);
      if (!ok) std::printf("%s\n", log.c_str());
    }
  }

  // The store: written whole (0600), read back; anything unfit is refused, never loaded.
  check(!storedModule(dir, firstModule, symbol0), "absent module is not stored");
  check(storeModule(dir, firstModule, symbol0, firstCubin), "module stored");
  check(storedModule(dir, firstModule, symbol0), "stored module found");
  struct stat st {};
  check(stat((dir + "/" + firstModule + ".ptx").c_str(), &st) == 0 && (st.st_mode & 0777) == 0600,
        "image is private (0600)");
  check(!storedModule(dir, firstModule, "mlx_rerank_other"), "another symbol's entry is refused");
  const std::string ptx = dir + "/" + firstModule + ".ptx";
  check(writeFileAtomic(dir, firstModule + ".ptx", "not a cubin") && !storedModule(dir, firstModule, symbol0),
        "an image that is not a cubin is refused");
  check(unlink(ptx.c_str()) == 0 && writeFileAtomic(dir, "elsewhere.ptx", firstCubin) &&
            symlink((dir + "/elsewhere.ptx").c_str(), ptx.c_str()) == 0 &&
            !storedModule(dir, firstModule, symbol0),
        "a symbolic link in place of the image is refused");
  check(unlink(ptx.c_str()) == 0 && storeModule(dir, firstModule, symbol0, firstCubin) &&
            writeFileAtomic(dir, firstModule + ".txt", "x\ty\n") && !storedModule(dir, firstModule, symbol0),
        "a tampered name list is refused");
  check(failures == 0, "all");
  return failures == 0 ? 0 : 1;
}
