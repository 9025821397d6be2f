// bfloat16 and int8 with AMX (Sapphire Rapids and later Xeons): C in 32 x 32 blocks held in four
// 16 x 16 accumulator tiles (tmm0-3, float32 or int32) over the whole K, fed by two A tiles (tmm4-5:
// 16 rows x 64 bytes = 32 bf16 or 64 u8 k's) and two B tiles (tmm6-7: 16 rows of k-pairs / k-quads
// of 16 columns). One tdpbf16ps is 16 x 16 x 32 multiply-adds, one tdpbusd 16 x 16 x 64.
//
// B is the packers' layout (kernels.h) with nr = 32 and K padded to 64 (kBlock): a k-pair (k-quad)
// row of a panel is 32 columns x 4 bytes = 128 bytes, so each B tile is a strided load (stride 128)
// of one half of those rows: exactly the "VNNI" layout AMX wants, no second packing. A rows are
// rounded (quantised) per call into a row-major [32][Kp] scratch, the tiles' layout.
//
// Numerics. int8: tdpbusd sums u8 x s8 products in int32 exactly, and the epilogue is the driver's
// (kernels_lowp_impl.h, mode 1: sum(q * w) - z * colSum), so the results equal the scalar kernel's
// bit for bit. bf16: tdpbf16ps treats bf16 denormals as zero and flushes float32 denormal results,
// and its summation order is the hardware's, not vdpbf16ps's, so results are float32 sums of the same
// exact products in another order (engine_check bounds them against a float64 reference).
//
// Linux only: the kernel grants the tile data state per process on request (arch_prctl
// ARCH_REQ_XCOMP_PERM); the tile configuration is per thread, loaded at each call and released at
// its end (an idle thread then carries no 8 KiB of tile state through context switches).
#include "kernels.h"

#if defined(__x86_64__) && defined(__linux__) &&      \
    ((defined(__clang__) && __clang_major__ >= 12) || \
     (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

// GCC 12 warns about its own AVX-512 intrinsics (_mm512_undefined_*: GCC bug 105593) once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define MLXR_TARGET \
  __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,f16c,amx-tile,amx-bf16,amx-int8")))
#define MLXR_ROWS_AVX512

#include "kernels_epilogue.h"
#include "kernels_lowp_rows.h"

namespace {

using mlxrerank::cpu::AlignedBuffer;
using mlxrerank::cpu::PackedBf16;
using mlxrerank::cpu::PackedI8;

constexpr int TM = 32, TN = 32;  // the C block: 2 x 2 tiles of 16 x 16
constexpr int kKBlock = 64;      // K padding: a whole 64-byte tile row for both dtypes

// The LDTILECFG operand (palette 1): every tile 16 rows x 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t startRow = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

MLXR_TARGET void configureTiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // ldtilecfg's asm names only the first 8 bytes of its operand: keep the rest of cfg's stores
  __asm__ volatile("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}

// Per thread, grown to the largest K seen: TM rows of Kp elements.
template <typename T>
T* scratchRows(int Kp) {
  thread_local AlignedBuffer<T> buf;
  const size_t n = static_cast<size_t>(TM) * Kp;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// The four accumulators of one 32 x 32 block of C over k blocks [0, kBlocks): A rows at aStride bytes
// (tile rows 0-15 and 16-31), B pair/quad rows of 128 bytes (columns 0-15 and 16-31). Each load comes
// just before its first use, so the first product of a k block need not wait for all four loads
// (each C tile still gets its k blocks in order: the same sums).
#define MLXR_AMX_BLOCK(DP, a, aStride, b, kBlocks, aStep, bStep)                             \
  do {                                                                                       \
    _tile_zero(0);                                                                           \
    _tile_zero(1);                                                                           \
    _tile_zero(2);                                                                           \
    _tile_zero(3);                                                                           \
    for (int kb = 0; kb < (kBlocks); ++kb) {                                                 \
      const char* ak = reinterpret_cast<const char*>(a) + static_cast<size_t>(kb) * (aStep); \
      const char* bk = reinterpret_cast<const char*>(b) + static_cast<size_t>(kb) * (bStep); \
      _tile_loadd(4, ak, aStride);                                                           \
      _tile_loadd(6, bk, 128);                                                               \
      DP(0, 4, 6);                                                                           \
      _tile_loadd(7, bk + 64, 128);                                                          \
      DP(1, 4, 7);                                                                           \
      _tile_loadd(5, ak + 16 * static_cast<size_t>(aStride), aStride);                       \
      DP(2, 5, 6);                                                                           \
      DP(3, 5, 7);                                                                           \
    }                                                                                        \
  } while (0)

// The block's accumulators into 32 rows of 32 floats (or int32) ld elements apart.
MLXR_TARGET inline void storeBlock(void* out, long ld) {
  char* o = static_cast<char*>(out);
  const long stride = ld * 4;
  _tile_stored(0, o, stride);
  _tile_stored(1, o + 64, stride);
  _tile_stored(2, o + 16 * stride, stride);
  _tile_stored(3, o + 16 * stride + 64, stride);
}

MLXR_TARGET void gemmBf16(const float* A, long lda, int rows, const PackedBf16& B, float* C, long ldc,
                          Act act, const float* residual, long ldr) {
  const int K = B.K, Kp = B.Kp, N = B.N;
  const int panels = (N + TN - 1) / TN;
  uint16_t* a = scratchRows<uint16_t>(Kp);
  alignas(64) float acc[TM * TN];
  configureTiles();
  for (int m0 = 0; m0 < rows; m0 += TM) {
    const int mr = std::min(TM, rows - m0);
    for (int i = 0; i < TM; ++i) {
      uint16_t* dst = a + static_cast<size_t>(i) * Kp;
      if (i < mr) {
        bf16Row(A + static_cast<long>(m0 + i) * lda, K, dst);
        std::memset(dst + K, 0, (Kp - K) * sizeof(uint16_t));
      } else {
        std::memset(dst, 0, Kp * sizeof(uint16_t));
      }
    }
    __asm__ volatile("" ::: "memory");  // tileloadd's asm does not tell the compiler it reads a
    for (int p = 0; p < panels; ++p) {
      const uint16_t* Bp = B.panels.data() + static_cast<size_t>(p) * Kp * TN;
      MLXR_AMX_BLOCK(_tile_dpbf16ps, a, Kp * 2, Bp, Kp / 32, 64, 16 * 128);
      const int n0 = p * TN, nc = std::min(TN, N - n0);
      float* Ct = C + static_cast<long>(m0) * ldc + n0;
      if (mr == TM && nc == TN) {  // a whole block straight into C
        storeBlock(Ct, ldc);
      } else {
        storeBlock(acc, TN);
        for (int i = 0; i < mr; ++i) std::memcpy(Ct + i * ldc, acc + i * TN, nc * sizeof(float));
      }
      epilogue(Ct, ldc, mr, nc, B.bias.data() + n0, act, residual ? residual + m0 * ldr + n0 : nullptr, ldr);
    }
  }
  _tile_release();
}

MLXR_TARGET void gemmI8(const float* A, long lda, int rows, const PackedI8& B, float* C, long ldc, Act act,
                        const float* residual, long ldr) {
  const int K = B.K, Kp = B.Kp, N = B.N;
  const int panels = (N + TN - 1) / TN;
  int8_t* a = scratchRows<int8_t>(Kp);
  alignas(64) int32_t acc[TM * TN];
  float sA[TM];
  int zA[TM];
  configureTiles();
  for (int m0 = 0; m0 < rows; m0 += TM) {
    const int mr = std::min(TM, rows - m0);
    for (int i = 0; i < TM; ++i) {  // u8 codes q = v ^ 0x80 (tdpbusd: u8 x s8), zeros past K
      int8_t* dst = a + static_cast<size_t>(i) * Kp;
      if (i < mr) {
        sA[i] = quantiseRow(A + static_cast<long>(m0 + i) * lda, K, dst, &zA[i]);
        for (int k = 0; k < K; ++k) dst[k] = static_cast<int8_t>(dst[k] ^ 0x80);
        std::memset(dst + K, 0, Kp - K);
      } else {
        std::memset(dst, 0, Kp);
      }
    }
    __asm__ volatile("" ::: "memory");  // tileloadd's asm does not tell the compiler it reads a
    for (int p = 0; p < panels; ++p) {
      const int8_t* Bp = B.panels.data() + static_cast<size_t>(p) * Kp * TN;
      MLXR_AMX_BLOCK(_tile_dpbusd, a, Kp, Bp, Kp / 64, 64, 16 * 128);
      storeBlock(acc, TN);
      const int n0 = p * TN, nc = std::min(TN, N - n0);
      const float* sB = B.scale.data() + n0;
      const int32_t* cs = B.colSum.data() + n0;
      float* Ct = C + static_cast<long>(m0) * ldc + n0;
      for (int i = 0; i < mr; ++i) {
        const float s = sA[i];
        const int o = -zA[i];
        for (int j = 0; j < nc; ++j) {
          const int32_t dot = acc[i * TN + j] + o * cs[j];
          Ct[i * ldc + j] = static_cast<float>(dot) * (s * sB[j]);
        }
      }
      epilogue(Ct, ldc, mr, nc, B.bias.data() + n0, act, residual ? residual + m0 * ldr + n0 : nullptr, ldr);
    }
  }
  _tile_release();
}

const mlxrerank::cpu::LowpKernels kAmx = {"amx", TM, TN, kKBlock, gemmBf16, gemmI8};

// CPUID (AMX-BF16, AMX-TILE, AMX-INT8; AVX-512 for the row conversions), the OS's XCR0 (tile config
// and tile data state enabled) and the kernel's permission for the tile data (per process).
bool amxUsable() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!(d & (1u << 22)) || !(d & (1u << 24)) || !(d & (1u << 25))) return false;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE: xgetbv works
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & (3u << 17)) != (3u << 17)) return false;
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq"))
    return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

}  // namespace

const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAmx() {
  static const bool usable = amxUsable();
  return usable ? &kAmx : nullptr;
}
#else
const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAmx() { return nullptr; }
#endif
