#!/usr/bin/env node
// clang-format over native/**/*.{cpp,h}: --dry-run --Werror (npm run lint), or -i with --fix.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const fix = process.argv.includes('--fix');

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return walk(p);
    return /\.(cpp|h)$/.test(e.name) ? [p] : [];
  });
}

const files = walk(join(root, 'native')).map((f) => relative(root, f));
if (files.length === 0) process.exit(0);
const bin = join(
  root,
  'node_modules',
  '.bin',
  process.platform === 'win32' ? 'clang-format.cmd' : 'clang-format',
);
const args = fix ? ['-i', ...files] : ['--dry-run', '--Werror', ...files];
const r = spawnSync(bin, args, { cwd: root, stdio: 'inherit' });
if (r.error) {
  console.error(`clang-format could not run (${r.error.message}); run npm install.`);
  process.exit(1);
}
process.exit(r.status ?? 1);
