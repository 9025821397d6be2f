#!/usr/bin/env bash
# The device run of issue 17 (docs/cpu-dtypes.md): build, check and benchmark the cpu engine's kernel sets
# on an AMX / AVX-512 host. Self-diagnosing: prints the CPU, the checks, GEMM GFLOP/s per kernel set
# and end-to-end pairs/s per dtype x kernel at 2 and 16 threads. Run from the repo root.
#
# Environment (all optional): BENCH_ARGS, extra arguments of both end-to-end runs (e.g. `--model DIR
# --pairs-file FILE --torch-manifest FILE`: the trained model of scripts/gpu/train_bench_reranker.py and
# its graded pairs); PAIRS_2 / PAIRS_16, the pairs of the 2- and 16-thread runs (default 200 / 640);
# SKIP_GEMM=1 leaves out gemm_bench.
set -u
BENCH_ARGS=${BENCH_ARGS:-}
PAIRS_2=${PAIRS_2:-200}
PAIRS_16=${PAIRS_16:-640}
t0=$(date +%s)
step() { echo; echo "=== $* ($(($(date +%s) - t0)) s)"; }

step build
# shellcheck source=scripts/cpu-addon-build.sh
. scripts/cpu-addon-build.sh
build_cpu_addon

step cpu
print_cpu

step engine_check
timeout 120 $CPU_BUILD/engine_check test/fixtures/models 200 >/tmp/amx-engine-check.log 2>&1
rc=$?
echo "engine_check exit $rc"
tail -40 /tmp/amx-engine-check.log
# The AMX contenders only where engine_check ran the AMX kernels without crashing (a crash there would
# cost the whole end-to-end run; numerical failures are printed above and the speed is still worth seeing).
contenders=float32@,bfloat16@avx512,bfloat16@avx512f,int8@avx512,int8@avxvnni
if [ "$rc" -lt 124 ] && ! grep -q "^skip amx" /tmp/amx-engine-check.log; then
  contenders=float32@,bfloat16@,int8@,bfloat16@avx512,bfloat16@avx512f,int8@avx512,int8@avxvnni
else
  echo "AMX not verified by engine_check: end-to-end runs without the amx contenders"
fi

if [ "${SKIP_GEMM:-0}" != 1 ]; then
  step "gemm_bench (16 cores)"
  timeout 150 taskset -c 0-15 $CPU_BUILD/gemm_bench 1,16 0.25
fi

step "end to end, 2 threads (cores 0-1)"
timeout 150 taskset -c 0-1 node scripts/cpu-dtypes-bench.mjs --threads 2 --pairs "$PAIRS_2" --rounds 3 --contenders "$contenders" $BENCH_ARGS

step "end to end, 16 threads (cores 0-15)"
timeout 150 taskset -c 0-15 node scripts/cpu-dtypes-bench.mjs --threads 16 --pairs "$PAIRS_16" --rounds 3 --contenders "$contenders" $BENCH_ARGS

step done
