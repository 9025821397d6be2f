#!/usr/bin/env node
// Finds MLX (>= 0.30, with its CMake package config) at build time, with no flags from the user.
// binding.gyp asks:
//   --enabled        "1" when MLX was found, else "0"
//   --sources        the MLX-only sources (native/sources-mlx.txt)
//   --include-dirs   MLX's include directories
//   --libraries      the files to link (libmlx and, for static or CUDA builds, what it needs)
//   --ldflags        an rpath to MLX's library directory
//   --cflags         C++ flags MLX needs (its headers need C++20) and its compile options
//   --status         the whole result as JSON (for people)
// Where it looks, in order: MLX_DIR, CMAKE_PREFIX_PATH, `python3 -m mlx --cmake-dir` (pip's mlx ships
// headers, library and config), `brew --prefix mlx` on macOS, /usr/local, /usr, /opt/homebrew.
// MLX_RERANK_NO_MLX=1 builds without MLX even when it is there. CMake's own default search (its system
// prefixes, /opt/<name>*, the user package registry) is tried last.
// CMake is the authority on MLX's flags: a probe project (scripts/mlx-probe) runs find_package(MLX).
// Without cmake, the layout of MLX's install (prefix/include, prefix/lib) is assumed.
// The result goes to build/mlx-status.json: gyp calls this script several times in one configure, and
// the addon's backends() reads it to say why MLX is absent.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const MIN_VERSION = [0, 30, 0];
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// Tests point this elsewhere so that they never touch the real build's report.
const buildDir = process.env.MLX_RERANK_FIND_MLX_OUT ?? join(root, 'build');
const statusFile = join(buildDir, 'mlx-status.json');
const CACHE_MS = 120_000;

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
    ...opts,
  });
}

/** The folder holding MLXConfig.cmake for a prefix or config folder, or undefined. */
function configDirOf(path) {
  const candidates = [
    path,
    join(path, 'share', 'cmake', 'MLX'),
    join(path, 'lib', 'cmake', 'MLX'),
    join(path, 'lib64', 'cmake', 'MLX'),
    join(path, 'share', 'cmake', 'mlx'),
  ];
  return candidates.find((dir) => existsSync(join(dir, 'MLXConfig.cmake')));
}

/** Places to look, each with a label for the report. */
function candidates(tried) {
  const list = [];
  const env = process.env;
  if (env.MLX_DIR) list.push({ label: `MLX_DIR=${env.MLX_DIR}`, path: env.MLX_DIR });
  else tried.push('MLX_DIR unset');
  if (env.CMAKE_PREFIX_PATH) {
    for (const p of env.CMAKE_PREFIX_PATH.split(delimiter).filter(Boolean))
      list.push({ label: `CMAKE_PREFIX_PATH entry ${p}`, path: p });
  } else tried.push('CMAKE_PREFIX_PATH unset');
  for (const python of process.platform === 'win32' ? ['python'] : ['python3']) {
    try {
      const dir = run(python, ['-m', 'mlx', '--cmake-dir']).trim();
      list.push({ label: `${python} -m mlx --cmake-dir (${dir})`, path: dir });
    } catch (err) {
      const text = `${err.stderr ?? ''}`;
      tried.push(
        `${python} -m mlx: ${err.code === 'ENOENT' ? `no ${python}` : /No module named/.test(text) ? 'no module (pip install mlx)' : 'failed'}`,
      );
    }
  }
  if (process.platform === 'darwin') {
    try {
      const prefix = run('brew', ['--prefix', 'mlx']).trim();
      list.push({ label: `brew --prefix mlx (${prefix})`, path: prefix });
    } catch {
      tried.push('brew --prefix mlx: not installed (brew install mlx)');
    }
  }
  for (const p of ['/usr/local', '/usr', '/opt/homebrew']) list.push({ label: p, path: p });
  // Last, CMake's own search (its system prefixes, /opt/<name>*, the package registry).
  list.push({ label: 'CMake find_package(MLX) default search', path: undefined });
  return list;
}

function versionAtLeast(version, min) {
  const parts = version.split(/[.+-]/).map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) {
    if ((parts[i] ?? 0) !== min[i]) return (parts[i] ?? 0) > min[i];
  }
  return true;
}

/**
 * Asks CMake (find_package(MLX CONFIG)) for MLX's flags, in configDir or (undefined) wherever CMake's
 * default search finds it; undefined when cmake is missing.
 */
function probeWithCmake(configDir) {
  try {
    run('cmake', ['--version']);
  } catch {
    return undefined;
  }
  const probeBuild = join(buildDir, 'mlx-probe');
  const out = join(probeBuild, 'result.json');
  rmSync(probeBuild, { recursive: true, force: true }); // no cached MLX_DIR from an earlier probe
  mkdirSync(probeBuild, { recursive: true });
  run('cmake', [
    '-S',
    join(root, 'scripts', 'mlx-probe'),
    '-B',
    probeBuild,
    ...(configDir ? [`-DMLX_DIR=${configDir}`] : []),
    `-DMLX_PROBE_OUT=${out}`,
  ]);
  return JSON.parse(readFileSync(out, 'utf8'));
}

/** Without cmake: MLX's install layout (prefix/include, prefix/lib/libmlx.*) and its version file. */
function probeFromLayout(configDir) {
  const prefix = resolve(configDir, '..', '..', '..');
  const versionFile = readFileSync(join(configDir, 'MLXConfigVersion.cmake'), 'utf8');
  const version = /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(versionFile)?.[1] ?? '0.0.0';
  const libName =
    process.platform === 'darwin' ? 'libmlx.dylib' : process.platform === 'win32' ? 'mlx.lib' : 'libmlx.so';
  const library = ['lib', 'lib64'].map((d) => join(prefix, d, libName)).find((f) => existsSync(f));
  if (!library) throw new Error(`no ${libName} under ${prefix}`);
  return {
    version,
    configDir,
    library,
    includeDirs: [join(prefix, 'include')],
    libraries: [library],
    compileOptions: [],
  };
}

function detect() {
  const tried = [];
  if (process.env.MLX_RERANK_NO_MLX === '1')
    return { found: false, tried: ['MLX_RERANK_NO_MLX=1'], reason: 'disabled by MLX_RERANK_NO_MLX=1' };
  for (const { label, path } of candidates(tried)) {
    const configDir = path === undefined ? undefined : configDirOf(path);
    if (path !== undefined && !configDir) {
      tried.push(`${label}: no MLXConfig.cmake`);
      continue;
    }
    let info;
    try {
      info = configDir
        ? (probeWithCmake(configDir) ?? probeFromLayout(configDir))
        : probeWithCmake(undefined);
      if (!info) {
        tried.push(`${label}: no cmake`);
        continue;
      }
    } catch (err) {
      const detail = `${err.stderr ?? err.message}`.split('\n').filter(Boolean).slice(-3).join(' ');
      tried.push(`${label}: MLXConfig.cmake unusable (${detail})`);
      continue;
    }
    if (!versionAtLeast(info.version, MIN_VERSION)) {
      tried.push(`${label}: MLX ${info.version} is older than ${MIN_VERSION.join('.')}`);
      continue;
    }
    tried.push(`${label}: MLX ${info.version}`);
    return { found: true, ...info, libDir: dirname(info.library), tried, from: label };
  }
  return {
    found: false,
    tried,
    reason:
      'MLX (>= 0.30 with its CMake config) was not found at build time. Install it (macOS: `brew install mlx` or ' +
      '`pip install mlx`; Linux: `pip install mlx[cpu]` or `mlx[cuda]`, or build it from source) or point MLX_DIR ' +
      'at its prefix, then rebuild (`npm rebuild mlx-rerank`).',
  };
}

function cacheKey() {
  const e = process.env;
  const parts = [e.MLX_DIR, e.CMAKE_PREFIX_PATH, e.MLX_RERANK_NO_MLX, e.PATH, process.platform, process.arch];
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

function status() {
  try {
    if (Date.now() - statSync(statusFile).mtimeMs < CACHE_MS) {
      const cached = JSON.parse(readFileSync(statusFile, 'utf8'));
      if (cached.key === cacheKey()) return cached;
    }
  } catch {}
  const result = { ...detect(), key: cacheKey(), checkedAt: new Date().toISOString() };
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(statusFile, `${JSON.stringify(result, null, 2)}\n`);
  return result;
}

function sources() {
  return readFileSync(join(root, 'native', 'sources-mlx.txt'), 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

const flag = process.argv[2] ?? '--status';
const s = status();
const words = (list) => list.join(' ');
switch (flag) {
  case '--enabled':
    process.stdout.write(s.found ? '1' : '0');
    break;
  case '--sources':
    process.stdout.write(s.found ? words(sources()) : '');
    break;
  case '--include-dirs':
    process.stdout.write(s.found ? words(s.includeDirs) : '');
    break;
  case '--libraries':
    process.stdout.write(s.found ? words(s.libraries) : '');
    break;
  case '--ldflags':
    process.stdout.write(s.found && process.platform !== 'win32' ? `-Wl,-rpath,${s.libDir}` : '');
    break;
  case '--cflags':
    process.stdout.write(s.found ? words(['-std=c++20', ...s.compileOptions]) : '');
    break;
  case '--status':
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    break;
  default:
    process.stderr.write(`find-mlx.mjs: unknown flag ${flag}\n`);
    process.exit(2);
}
