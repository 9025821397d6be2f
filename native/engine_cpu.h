// What the cpu engine (engine_cpu.cpp) exports besides makeCpuEngine (declared with the Engine
// interface in engine.h): facts about this machine's kernels for backends(), and the GEMM ceiling the
// benchmarks compare against.
#pragma once

#include <string>

#include "engine.h"

namespace mlxrerank {

// The float32 kernel set the cpu engine picks ("avx512", "avx2+fma", "scalar") under an ISA cap
// (EngineOptions::cpuIsa: "" = none, else "amx" | "avx512" | "avx512f" | "avxvnni" | "avx2" | "scalar";
// another value throws EngineError(Input)), and its default thread count (the logical CPUs, at most 64).
std::string cpuIsaName(const std::string& isaCap = "");
int cpuDefaultThreads();

// The kernel set that dtype ("bfloat16" | "int8") would run its GEMMs on here under the cap, e.g.
// "avx512-vnni", "avx-vnni", "avx2", "neon-dotprod", "scalar"; "" for another dtype.
std::string cpuLowpIsaName(const std::string& dtype, const std::string& isaCap = "");

// The float32 GEMM ceiling of this machine for benchmarks: GFLOP/s of C = A * B on n x n with the
// engine's own kernels (under the cap) on `threads` threads (0 = default), best sustained over `seconds`.
double cpuGemmGflops(int n, int threads, double seconds, const std::string& isaCap = "");

}  // namespace mlxrerank
