/**
 * The package as `npm pack` ships it, staged in a temporary folder. Tests that build, install, type-check
 * or prebuild the package work on such a copy, so that `npm test` leaves the checkout as it found it
 * (build/, dist/ and prebuilds/ included; test/helpers/tree-guard.ts checks that around the run).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { packageRoot } from '../../src/native';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** The paths `npm pack` would put in the tarball now, sorted (no lifecycle scripts run). */
export function packFiles(root = packageRoot()): string[] {
  const out = execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [pack] = JSON.parse(out) as [{ files: { path: string }[] }];
  return pack.files.map((f) => f.path).sort();
}

/**
 * Copies the packed sources (not dist/ or prebuilds/, which the checkout may or may not hold) into
 * `<into>/mlx-rerank`, links the checkout's node_modules for the build tools, and, with `dist`, builds
 * the TypeScript there with the package's own tsup config. Returns the staged package's folder.
 */
export function stagePackage(into: string, opts: { dist?: boolean } = {}): string {
  const root = packageRoot();
  const pkg = join(into, 'mlx-rerank');
  for (const file of packFiles(root)) {
    if (file.startsWith('dist/') || file.startsWith('prebuilds/')) continue;
    mkdirSync(dirname(join(pkg, file)), { recursive: true });
    cpSync(join(root, file), join(pkg, file));
  }
  symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'), 'dir');
  if (opts.dist) buildDist(join(pkg, 'dist'));
  return pkg;
}

/** Builds the TypeScript (tsup, the package's config) into `outDir` instead of the checkout's dist/. */
export function buildDist(outDir: string): void {
  const root = packageRoot();
  const tsup = join(root, 'node_modules', 'tsup', 'dist', 'cli-default.js');
  execFileSync(process.execPath, [tsup, '--out-dir', outDir], { cwd: root, stdio: 'pipe' });
}

/**
 * Environment for node-gyp (directly or through prebuildify) that builds against the headers next to
 * the running node when they are there, instead of downloading them (CI and this machine are offline).
 */
export function nodeGypEnv(): NodeJS.ProcessEnv {
  const prefix = resolve(process.execPath, '..', '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h'))
    ? { ...process.env, npm_config_nodedir: prefix }
    : { ...process.env };
}
