# Sourced (not run) by the cpu engine's device runs, scripts/amx-device-run.sh and
# scripts/cpu-tjs-device-run.sh, from the repo root:
#   build_cpu_addon  builds the cpu-only addon, engine_check and gemm_bench with CMake + Ninja into
#                    /tmp/cpu-build, and puts the addon into build/Release (where node-gyp-build looks) for
#                    this run only: whatever was there (an MLX build, for other runs) is put back on exit.
#                    CMake finds node's headers next to the `node` on PATH and node-addon-api by require().
#   print_cpu        the CPU: model, cores, caches, topology, the ISA flags the kernels use, kernel version.

build_cpu_addon() {
  cmake -S . -B /tmp/cpu-build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLX_RERANK_WITH_MLX=OFF >/tmp/cpu-build-configure.log 2>&1 ||
    cat /tmp/cpu-build-configure.log
  cmake --build /tmp/cpu-build -j"$(nproc)" 2>&1 | grep -E "error|warning: |FAILED" | head -40
  if [ -f /tmp/cpu-build/mlx_rerank.node ]; then
    mkdir -p build/Release
    if [ -f build/Release/mlx_rerank.node ]; then
      cp build/Release/mlx_rerank.node /tmp/amx-saved-addon.node
      trap 'cp /tmp/amx-saved-addon.node build/Release/mlx_rerank.node && echo "addon: previous build/Release/mlx_rerank.node restored"' EXIT
    else
      trap 'rm -f build/Release/mlx_rerank.node' EXIT
    fi
    cp /tmp/cpu-build/mlx_rerank.node build/Release/mlx_rerank.node
    echo "addon: /tmp/cpu-build/mlx_rerank.node -> build/Release/ (for this run)"
  else
    echo "addon: NOT built (node headers or node-addon-api missing?): the end-to-end benchmark will use what build/Release has"
    grep -i "node" /tmp/cpu-build-configure.log
    return 1
  fi
}

print_cpu() {
  lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node|L2|L3"
  lscpu -e=CPU,CORE,SOCKET | head -20
  grep -o -w -E 'amx_[a-z0-9]+|avx512_bf16|avx512_vnni|avx_vnni|avx512f|avx512_fp16|avx2|fma' /proc/cpuinfo | sort | uniq -c
  uname -r
}
