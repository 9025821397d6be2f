/**
 * valgrind memcheck over the native test driver (golden fixtures through the engine, header mutants
 * through the safetensors reader): no invalid access, no definite or indirect leak. Skipped where
 * valgrind or cmake is missing; `npm run test:asan` is the AddressSanitizer equivalent.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { packageRoot } from '../src/native';

const have = (cmd: string) => spawnSync(cmd, ['--version']).status === 0;

it.skipIf(!have('valgrind') || !have('cmake'))(
  'engine_check runs clean under valgrind',
  () => {
    const r = spawnSync(process.execPath, [join(packageRoot(), 'scripts', 'test-native.mjs'), '--valgrind'], {
      cwd: packageRoot(),
      encoding: 'utf8',
    });
    const out = `${r.stdout}\n${r.stderr}`;
    expect(out).toContain('all passed');
    expect(r.status, out.slice(-4000)).toBe(0);
  },
  400_000,
);
