#!/usr/bin/env node
// Compile-checks the mlx engine's CUDA kernel sources (native/mlx_varlen_attention.h and the fused row
// kernels of native/mlx_fused_kernels.h), which MLX
// compiles with NVRTC only at run time on a GPU, with nvcc and no GPU: the kernel body is wrapped the way
// mx::fast::cuda_kernel wraps it (MLX's mlx/backend/cuda/custom_kernel.cpp, build_kernel: the inputs as
// `const T* name` plus `name_shape` when the body uses it, the outputs, the template arguments as
// `constexpr int` / `using`), for every storage type, several head sizes and window 0 (global) and > 0.
//
//   node scripts/gpu/check-kernels.mjs [--arch sm_90a]
//
// Needs nvcc (PATH, $CUDA_HOME/bin or /usr/local/cuda*/bin) and MLX's sources for the real
// mlx/backend/cuda/device/utils.cuh ($MLX_SRC, default /work/mlx-src); without MLX's sources it declares
// the one type the kernel uses (Shape) itself. Without nvcc it says so and exits 0 (nothing to check).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values: args } = parseArgs({ options: { arch: { type: 'string', default: 'sm_90a' } } });

function findNvcc() {
  const which = spawnSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return which.stdout.trim();
  const dirs = [process.env.CUDA_HOME, '/usr/local/cuda'].filter(Boolean).map((d) => join(d, 'bin', 'nvcc'));
  if (existsSync('/usr/local'))
    for (const d of readdirSync('/usr/local').sort().reverse())
      if (d.startsWith('cuda-')) dirs.push(join('/usr/local', d, 'bin', 'nvcc'));
  return dirs.find((p) => existsSync(p));
}

const nvcc = findNvcc();
if (!nvcc) {
  console.log('check-kernels: skipped (no nvcc here)');
  process.exit(0);
}

// The kernel body: the one raw string literal that varlenAttentionSource() returns.
const header = readFileSync(join(root, 'native', 'mlx_varlen_attention.h'), 'utf8');
const body = /varlenAttentionSource\(\) \{\s*return R"\(([\s\S]*?)\)";/.exec(header)?.[1];
if (!body) throw new Error('mlx_varlen_attention.h: the kernel source string was not found');

const mlxSrc = process.env.MLX_SRC ?? '/work/mlx-src';
const realUtils = existsSync(join(mlxSrc, 'mlx', 'backend', 'cuda', 'device', 'utils.cuh'));
const prelude = realUtils
  ? '#include "mlx/backend/cuda/device/utils.cuh"\n#include <cooperative_groups.h>\n'
  : '#include <cuda_bf16.h>\n#include <cuda_fp16.h>\n#include <cuda/std/array>\n#include <cstdint>\n' +
    'namespace mlx::core::cu { using Shape = cuda::std::array<int32_t, 10>; }\n';

let src = `${prelude}namespace mlx::core::cu {\n`;
let n = 0;
for (const type of ['__half', '__nv_bfloat16', 'float'])
  for (const d of [8, 64, 128])
    for (const window of [0, 8]) {
      // As build_kernel writes it: inputs, their _shape when used, outputs, then the constants.
      src += `__global__ void mlx_rerank_varlen_attention_${n++}(
    const ${type}* qkv,
    const __grid_constant__ Shape qkv_shape,
    const int32_t* offsets,
    const int32_t* blocks,
    ${type}* out) {
  constexpr int D = ${d};
  constexpr int HEADS = 4;
  constexpr int WINDOW = ${window};
  using InT = ${type};
${body}
}
`;
    }
src += '}  // namespace mlx::core::cu\n';

// The fused row kernels (mlx_fused_kernels.h): the device helpers (cuda_kernel's `header`, pasted before
// MLX's namespace), then each body for both 16-bit types and float32, several row widths (MiniLM's 384,
// base 768, large 1024, ELECTRA-small's 128 embedding), with and without the position / type tables.
const fused = readFileSync(join(root, 'native', 'mlx_fused_kernels.h'), 'utf8');
const rawString = (fn) => {
  const text = new RegExp(`${fn}\\(\\) \\{\\s*return R"\\(([\\s\\S]*?)\\)";`).exec(fused)?.[1];
  if (!text) throw new Error(`mlx_fused_kernels.h: the source string of ${fn}() was not found`);
  return text;
};
const fusedHeader = rawString('fusedKernelsHeader');
const embeddingsBody = rawString('fusedEmbeddingsSource');
const residualBody = rawString('residualNormSource');
const epsBits = (eps) => new Int32Array(new Float32Array([eps]).buffer)[0];
src += `${fusedHeader}\nnamespace mlx::core::cu {\n`;
let fusedCount = 0;
for (const type of ['__half', '__nv_bfloat16', 'float'])
  for (const width of [128, 384, 768, 1024]) {
    for (const [hasPos, hasType] of [
      [true, true],
      [false, false],
      [true, false],
    ]) {
      src += `__global__ void mlx_rerank_fused_embeddings_${fusedCount++}(
    const ${type}* word,
    const ${type}* position,
    const ${type}* tokenType,
    const ${type}* gamma,
    const ${type}* beta,
    const int32_t* ids,
    const __grid_constant__ Shape ids_shape,
    const int32_t* positions,
    const int32_t* types,
    ${type}* out) {
  constexpr int E = ${width};
  using InT = ${type};
  constexpr bool HAS_POS = ${hasPos};
  constexpr bool HAS_TYPE = ${hasType};
  constexpr int EPS_BITS = ${epsBits(1e-12)};
${embeddingsBody}
}
`;
    }
    src += `__global__ void mlx_rerank_residual_norm_${fusedCount++}(
    const ${type}* y,
    const __grid_constant__ Shape y_shape,
    const ${type}* bias,
    const ${type}* residual,
    const ${type}* gamma,
    const ${type}* beta,
    ${type}* out) {
  constexpr int H = ${width};
  using InT = ${type};
  constexpr int EPS_BITS = ${epsBits(1e-5)};
${residualBody}
}
`;
  }
src += '}  // namespace mlx::core::cu\n';

const dir = mkdtempSync(join(tmpdir(), 'mlx-rerank-kernels-'));
try {
  const file = join(dir, 'varlen.cu');
  writeFileSync(file, src);
  const flags = [`-arch=${args.arch}`, '-std=c++17', '-c', file, '-o', join(dir, 'varlen.o')];
  if (realUtils) flags.push(`-I${mlxSrc}`);
  execFileSync(nvcc, flags, { stdio: 'inherit' });
  console.log(
    `check-kernels: ok (${n} instantiations of the varlen attention kernel, ${fusedCount} of the fused row ` +
      `kernels, ${args.arch}, ` +
      `${realUtils ? "MLX's device utils" : 'standalone Shape'})`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
