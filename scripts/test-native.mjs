#!/usr/bin/env node
// The native test driver (native/test/engine_check.cpp) under valgrind or ASan+UBSan, built with CMake
// from the same source list as the addon.
//
//   node scripts/test-native.mjs --valgrind      memcheck, leak check; AVX2 kernels (valgrind has no
//                                                AVX-512), 6 golden pairs a model + 200 header mutants
//   node scripts/test-native.mjs --asan [N]      ASan+UBSan build; golden fixtures + N mutants
//                                                (default 200000; MLX_RERANK_MUTATIONS also works)
//   node scripts/test-native.mjs --arm64 [N]     cross-compiled for arm64 (g++-aarch64-linux-gnu) and
//                                                run under qemu-aarch64 (Debian: qemu-user): the NEON
//                                                kernels against scalar (smmla / bfmmla must run;
//                                                QEMU_CPU=cortex-a76: dotprod only); ~1-3 min, not in
//                                                `npm test`
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const asan = process.argv.includes('--asan');
const count = process.argv.find((a) => /^\d+$/.test(a));
// Outside build/: node-gyp rebuild wipes that folder.
const buildDir = join(
  tmpdir(),
  `mlx-rerank-native-test-${createHash('sha1').update(root).digest('hex').slice(0, 8)}${asan ? '-asan' : ''}`,
);
const fixtures = join(root, 'test', 'fixtures', 'models');

function run(cmd, args, env = {}) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) {
    console.error(`${cmd}: ${r.error.message}`);
    process.exit(1);
  }
  if (r.status !== 0) process.exit(r.status ?? 1);
}

if (process.argv.includes('--arm64')) {
  const out = `${buildDir}-arm64`;
  mkdirSync(out, { recursive: true });
  const sources = readFileSync(join(root, 'native', 'sources.txt'), 'utf8')
    .split(/\r?\n/)
    .filter((f) => f && !f.startsWith('native/addon/')); // the engine's sources, as CMakeLists.txt's
  const exe = join(out, 'engine_check');
  const flags = [
    '-std=c++17',
    '-O2',
    '-ffp-contract=off',
    '-Wall',
    '-Wextra',
    '-Wno-unused-parameter',
    '-Inative',
  ];
  run('aarch64-linux-gnu-g++', [
    ...flags,
    'native/test/engine_check.cpp',
    'native/test/plan_check.cpp',
    ...sources,
    '-o',
    exe,
    '-pthread',
    '-ldl',
  ]);
  const args = ['-L', '/usr/aarch64-linux-gnu', exe, fixtures, count ?? '200'];
  console.log(`$ qemu-aarch64 ${args.join(' ')}`);
  const r = spawnSync('qemu-aarch64', args, {
    cwd: root,
    stdio: ['inherit', 'pipe', 'inherit'],
    encoding: 'utf8',
    env: { ...process.env, MLX_RERANK_CHECK_PAIRS: process.env.MLX_RERANK_CHECK_PAIRS ?? '8' },
  });
  process.stdout.write(r.stdout ?? '');
  if (r.error || r.status !== 0) process.exit(r.status || 1);
  // qemu's default cpu (max) has I8MM and BF16: the mmla kernels must have run (QEMU_CPU may pick one
  // without them, to check the dotprod fallback).
  for (const line of ['ok smmla', 'ok bfmmla'])
    if (!process.env.QEMU_CPU && !r.stdout.includes(line)) {
      console.error(`no '${line}' line: the arm64 matrix-multiply kernels did not run`);
      process.exit(1);
    }
  process.exit(0);
}

run('cmake', [
  '-S',
  root,
  '-B',
  buildDir,
  '-DCMAKE_BUILD_TYPE=RelWithDebInfo',
  `-DMLX_RERANK_SANITIZE=${asan ? 'ON' : 'OFF'}`,
]);
run('cmake', ['--build', buildDir, '--target', 'engine_check', '-j', '2']);
const driver = join(buildDir, 'engine_check');
if (!existsSync(driver)) process.exit(1);
if (asan) {
  run(driver, [fixtures, count ?? '200000'], { ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1' });
} else {
  run(
    'valgrind',
    [
      '--error-exitcode=99',
      '--leak-check=full',
      '--errors-for-leak-kinds=definite,indirect',
      '--quiet',
      driver,
      fixtures,
      count ?? '200',
    ],
    { MLX_RERANK_CPU_ISA: 'avx2', MLX_RERANK_CHECK_PAIRS: process.env.MLX_RERANK_CHECK_PAIRS ?? '6' },
  );
}
