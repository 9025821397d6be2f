# Sourced (not run) by the cpu engine's device runs, scripts/amx-device-run.sh and
# scripts/cpu-tjs-device-run.sh, from the repo root:
#   build_cpu_addon  builds the cpu-only addon, engine_check and gemm_bench with CMake + Ninja into
#                    $CPU_BUILD (default /tmp/cpu-build), and puts the addon into build/Release (where
#                    node-gyp-build looks) for this run only: whatever was there (an MLX build, for other
#                    runs) is put back on exit. CMake finds node's headers next to the `node` on PATH and
#                    node-addon-api by require().
#   print_cpu        the CPU: model, cores, caches, topology, the ISA flags the kernels use, kernel version.

CPU_BUILD=${CPU_BUILD:-/tmp/cpu-build}

build_cpu_addon() {
  cmake -S . -B "$CPU_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLX_RERANK_WITH_MLX=OFF >$CPU_BUILD-configure.log 2>&1 ||
    cat $CPU_BUILD-configure.log
  cmake --build "$CPU_BUILD" -j"$(nproc)" 2>&1 | grep -E "error|warning: |FAILED" | head -40
  if [ -f $CPU_BUILD/mlx_rerank.node ]; then
    mkdir -p build/Release
    if [ -f build/Release/mlx_rerank.node ]; then
      cp build/Release/mlx_rerank.node /tmp/amx-saved-addon.node
      trap 'cp /tmp/amx-saved-addon.node build/Release/mlx_rerank.node && echo "addon: previous build/Release/mlx_rerank.node restored"' EXIT
    else
      trap 'rm -f build/Release/mlx_rerank.node' EXIT
    fi
    cp $CPU_BUILD/mlx_rerank.node build/Release/mlx_rerank.node
    echo "addon: $CPU_BUILD/mlx_rerank.node -> build/Release/ (for this run)"
  else
    echo "addon: NOT built (node headers or node-addon-api missing?): the end-to-end benchmark will use what build/Release has"
    grep -i "node" $CPU_BUILD-configure.log
    return 1
  fi
}

print_cpu() {
  lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node|L2|L3"
  lscpu -e=CPU,CORE,SOCKET | head -20
  grep -o -w -E 'amx_[a-z0-9]+|avx512_bf16|avx512_vnni|avx_vnni|avx512f|avx512_fp16|avx2|fma' /proc/cpuinfo | sort | uniq -c
  uname -r
}
