#!/usr/bin/env node
// The native test driver (native/test/engine_check.cpp) under valgrind or ASan+UBSan, built with CMake
// from the same source list as the addon.
//
//   node scripts/test-native.mjs --valgrind      memcheck, leak check; AVX2 kernels (valgrind has no
//                                                AVX-512), 6 golden pairs a model + 200 header mutants
//   node scripts/test-native.mjs --asan [N]      ASan+UBSan build; golden fixtures + N mutants
//                                                (default 200000; MLX_RERANK_MUTATIONS also works)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
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
